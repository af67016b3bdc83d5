//! Approval of kubelet serving-certificate requests (`serverTLSBootstrap: true` leaves them to
//! the cluster operator; kube-controller-manager never approves them).
//!
//! The API server has already checked each CSR's signature when it was created, so only its
//! identity and names are checked here.

use std::net::IpAddr;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, PostParams};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

use crate::{Edge, Error, Result};

/// Signer of kubelet serving certificates.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// What [`Edge::approve_serving_csrs`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CsrReport {
    /// CSR name and the node it was approved for.
    pub approved: Vec<(String, String)>,
    /// Pending kubelet-serving CSRs left alone, with why.
    pub left_pending: Vec<(String, String)>,
}

/// Decides whether a kubelet-serving CSR may be approved: the requester must be
/// `system:node:<name>` of a known node, the subject `CN=system:node:<name>, O=system:nodes`,
/// and every subject alternative name that node's name or one of its addresses (at least one,
/// no e-mail or URI names). Returns the node name, or why not.
pub fn check_serving_csr(
    username: &str,
    request_pem: &[u8],
    known: &[(String, Vec<IpAddr>)],
) -> Result<String, String> {
    let node = username
        .strip_prefix("system:node:")
        .ok_or_else(|| format!("requested by {username}, not by a node"))?;
    let (_, addresses) = known
        .iter()
        .find(|(n, _)| n == node)
        .ok_or_else(|| format!("node {node} is not one of this cluster's nodes"))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(request_pem)
        .map_err(|e| format!("request is not PEM: {e}"))?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(format!(
            "request is a PEM {}, not a CERTIFICATE REQUEST",
            pem.label
        ));
    }
    let (_, csr) = X509CertificationRequest::from_der(&pem.contents)
        .map_err(|e| format!("request does not parse: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let cns: Vec<&str> = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    if cns != [username] {
        return Err(format!("subject CN {cns:?} is not {username}"));
    }
    let orgs: Vec<&str> = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect();
    if orgs != ["system:nodes"] {
        return Err(format!("subject O {orgs:?} is not [system:nodes]"));
    }
    let mut names = 0;
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else {
            continue;
        };
        for name in &san.general_names {
            names += 1;
            match name {
                GeneralName::DNSName(d) if *d == node => {}
                GeneralName::DNSName(d) => {
                    return Err(format!("DNS name {d} is not the node's name {node}"));
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).map(IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*bytes).map(IpAddr::from).ok(),
                        _ => None,
                    }
                    .ok_or_else(|| "malformed IP address name".to_string())?;
                    if !addresses.contains(&ip) {
                        return Err(format!("IP address {ip} is not one of node {node}'s"));
                    }
                }
                other => {
                    return Err(format!(
                        "name {other:?} is not allowed in a serving certificate"
                    ));
                }
            }
        }
    }
    if names == 0 {
        return Err("no DNS or IP names requested".into());
    }
    Ok(node.to_string())
}

fn is_pending(csr: &CertificateSigningRequest) -> bool {
    !csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Approved" || c.type_ == "Denied")
        })
}

impl Edge {
    /// Approves the pending kubelet-serving CSRs that [`check_serving_csr`] accepts; leaves
    /// the others pending and reports them.
    pub fn approve_serving_csrs(&self, known: &[(String, Vec<IpAddr>)]) -> Result<CsrReport> {
        self.block(async {
            let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
            let list = self
                .call(
                    "list certificate signing requests",
                    api.list(&ListParams::default()),
                )
                .await?;
            let mut report = CsrReport::default();
            for csr in list.items {
                let name = csr.metadata.name.clone().unwrap_or_default();
                if csr.spec.signer_name != KUBELET_SERVING_SIGNER || !is_pending(&csr) {
                    continue;
                }
                let username = csr.spec.username.clone().unwrap_or_default();
                match check_serving_csr(&username, &csr.spec.request.0, known) {
                    Ok(node) => {
                        self.approve(&api, csr).await?;
                        report.approved.push((name, node));
                    }
                    Err(why) => report.left_pending.push((name, why)),
                }
            }
            Ok(report)
        })
    }

    /// Adds the Approved condition through the approval subresource (as `kubectl certificate
    /// approve`), re-reading on conflict.
    async fn approve(
        &self,
        api: &Api<CertificateSigningRequest>,
        mut csr: CertificateSigningRequest,
    ) -> Result<()> {
        let name = csr.metadata.name.clone().unwrap_or_default();
        let what = format!("approve CSR {name}");
        let attempts = self.opts.conflict_attempts.max(1);
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt - 1)).await;
                csr = self
                    .call(&format!("read CSR {name}"), api.get(&name))
                    .await?;
                if !is_pending(&csr) {
                    return Ok(());
                }
            }
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let status = csr.status.get_or_insert_with(Default::default);
            status.conditions.get_or_insert_with(Vec::new).push(
                CertificateSigningRequestCondition {
                    type_: "Approved".into(),
                    status: "True".into(),
                    reason: Some("KubehaApprove".into()),
                    message: Some(
                        "kubeha: requester, subject and names match a node of the cluster".into(),
                    ),
                    last_update_time: Some(now.clone()),
                    last_transition_time: Some(now),
                },
            );
            match self
                .call(
                    &what,
                    api.replace_subresource("approval", &name, &PostParams::default(), &csr),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict { what, attempts })
    }
}
