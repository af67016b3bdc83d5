//! Certificate profiles: what every CA and leaf certifies, derived from the spec alone.
//!
//! This is kubeadm's `certlist.go` and kubeconfig specs restated (see
//! `shared/reference/kubeadm-facts.md` §1–2): subjects, extended key usages and SANs, with
//! DNS names de-duplicated and sorted and IP addresses de-duplicated in insertion order.
//! One addition to kubeadm: with `loadBalancer.etcdPort` set, the etcd **server** certificates
//! also name the VIP (and a DNS endpoint), since clients then reach etcd through the LB.
//! Pure functions: no keys, no time, no disk.

use std::{collections::BTreeSet, net::IpAddr};

use kubeha_spec::{EndpointHost, KeyAlgorithm, Node, Role, Spec};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ids::{CaId, LeafId, LeafKind};

/// An extended key usage kubeadm puts on its leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ExtKeyUsage {
    ServerAuth,
    ClientAuth,
}

/// Everything a leaf certificate says about its subject (its "inputs", besides the key
/// algorithm, validity and issuer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeafProfile {
    pub id: LeafId,
    pub common_name: String,
    /// Subject O; kubeadm's leaves carry at most one.
    pub organization: Option<String>,
    /// DNS SANs, de-duplicated and sorted.
    pub dns_names: Vec<String>,
    /// IP SANs, de-duplicated, first occurrence wins.
    pub ip_addresses: Vec<IpAddr>,
    /// In the order kubeadm lists them.
    pub ext_key_usages: Vec<ExtKeyUsage>,
}

impl LeafProfile {
    pub fn issuer(&self) -> CaId {
        self.id.kind.issuer()
    }

    /// A digest over what the certificate certifies and how: subject, SANs, EKUs, key
    /// algorithm, validity and the issuing CA certificate. A leaf whose fingerprint changed
    /// must be re-issued; one whose fingerprint is unchanged may be kept.
    pub fn fingerprint(
        &self,
        key_algorithm: KeyAlgorithm,
        validity_hours: u32,
        issuer_cert_der: &[u8],
    ) -> String {
        #[derive(Serialize)]
        struct Inputs<'a> {
            format: &'static str,
            profile: &'a LeafProfile,
            key_algorithm: &'static str,
            validity_hours: u32,
            issuer_sha256: String,
        }
        let inputs = Inputs {
            format: "kubeha-leaf-v1",
            profile: self,
            key_algorithm: key_algorithm.as_str(),
            validity_hours,
            issuer_sha256: hex::encode(Sha256::digest(issuer_cert_der)),
        };
        // Serializing plain structs, strings and integers cannot fail.
        let bytes = serde_json::to_vec(&inputs).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }
}

/// Leaf kinds every control plane gets, in kubeadm's creation order.
const CONTROL_PLANE_KINDS: [LeafKind; 8] = [
    LeafKind::ApiServer,
    LeafKind::ApiServerKubeletClient,
    LeafKind::FrontProxyClient,
    LeafKind::ApiServerEtcdClient,
    LeafKind::AdminConf,
    LeafKind::ControllerManagerConf,
    LeafKind::SchedulerConf,
    LeafKind::KubeletConf,
];

const ETCD_KINDS: [LeafKind; 4] = [
    LeafKind::EtcdServer,
    LeafKind::EtcdPeer,
    LeafKind::EtcdHealthcheckClient,
    LeafKind::ApiServerEtcdClient,
];

/// Which leaves the spec calls for, in node order (cluster-file order), then the operator's
/// admin client. A leaf two roles ask for (a stacked control plane's `apiserver-etcd-client`,
/// a control plane that is also a worker) appears once.
pub fn leaf_ids(spec: &Spec) -> Vec<LeafId> {
    let init = spec.init_control_plane().map(|n| n.name.as_str());
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut push = |id: LeafId| {
        if seen.insert(id.clone()) {
            out.push(id);
        }
    };
    for node in &spec.nodes {
        if node.has(Role::ControlPlane) {
            for kind in CONTROL_PLANE_KINDS {
                push(LeafId::new(&node.name, kind));
            }
            if init == Some(node.name.as_str()) {
                push(LeafId::new(&node.name, LeafKind::SuperAdminConf));
            }
        }
        if spec.is_etcd_member(node) {
            for kind in ETCD_KINDS {
                push(LeafId::new(&node.name, kind));
            }
        }
        // With TLS bootstrap a pure worker's kubelet asks the cluster for its certificate.
        let bootstraps = spec.worker_join == kubeha_spec::WorkerJoin::TlsBootstrap
            && !node.has(Role::ControlPlane);
        if node.has(Role::Worker) && !bootstraps {
            push(LeafId::new(&node.name, LeafKind::KubeletConf));
        }
    }
    push(LeafId::operator(LeafKind::AdminConf));
    out
}

/// The profile of every leaf the spec calls for (see [`leaf_ids`] for the order).
pub fn leaf_profiles(spec: &Spec) -> Vec<LeafProfile> {
    leaf_ids(spec)
        .into_iter()
        .filter_map(|id| leaf_profile(spec, id))
        .collect()
}

/// The profile of one leaf; `None` if it names a node the spec does not have.
pub fn leaf_profile(spec: &Spec, id: LeafId) -> Option<LeafProfile> {
    use ExtKeyUsage::{ClientAuth, ServerAuth};
    let node = match &id.node {
        Some(name) => Some(spec.node(name)?),
        None => None,
    };
    let node_name = node.map_or("", |n| n.name.as_str());
    let client =
        |cn: &str, o: Option<&str>| (cn.to_string(), o.map(str::to_string), vec![ClientAuth]);
    let (common_name, organization, ext_key_usages) = match id.kind {
        LeafKind::ApiServer => ("kube-apiserver".to_string(), None, vec![ServerAuth]),
        LeafKind::ApiServerKubeletClient => client(
            "kube-apiserver-kubelet-client",
            Some("kubeadm:cluster-admins"),
        ),
        LeafKind::FrontProxyClient => client("front-proxy-client", None),
        LeafKind::ApiServerEtcdClient => client("kube-apiserver-etcd-client", None),
        LeafKind::EtcdServer | LeafKind::EtcdPeer => {
            (node_name.to_string(), None, vec![ServerAuth, ClientAuth])
        }
        LeafKind::EtcdHealthcheckClient => client("kube-etcd-healthcheck-client", None),
        LeafKind::AdminConf => client("kubernetes-admin", Some("kubeadm:cluster-admins")),
        LeafKind::SuperAdminConf => client("kubernetes-super-admin", Some("system:masters")),
        LeafKind::ControllerManagerConf => client("system:kube-controller-manager", None),
        LeafKind::SchedulerConf => client("system:kube-scheduler", None),
        LeafKind::KubeletConf => client(&format!("system:node:{node_name}"), Some("system:nodes")),
    };
    let (dns_names, ip_addresses) = match (id.kind, node) {
        (LeafKind::ApiServer, Some(node)) => apiserver_sans(spec, node),
        (LeafKind::EtcdServer, Some(node)) => etcd_server_sans(spec, node),
        (LeafKind::EtcdPeer, Some(node)) => etcd_sans(node),
        // Node-bound kinds without a node make no sense.
        (LeafKind::ApiServer | LeafKind::EtcdServer | LeafKind::EtcdPeer, None) => return None,
        _ => (Vec::new(), Vec::new()),
    };
    Some(LeafProfile {
        id,
        common_name,
        organization,
        dns_names,
        ip_addresses,
        ext_key_usages,
    })
}

/// kubeadm's `GetAPIServerAltNames` for one control plane.
fn apiserver_sans(spec: &Spec, node: &Node) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = vec![
        node.name.clone(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        format!("kubernetes.default.svc.{}", spec.networking.dns_domain),
    ];
    let mut ips = vec![IpAddr::V4(spec.first_service_ip()), node.address];
    match &spec.endpoint.host {
        EndpointHost::Ip(ip) => ips.push(*ip),
        EndpointHost::Dns(name) => dns.push(name.clone()),
    }
    for san in &spec.certificates.apiserver_extra_sans {
        match san.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(san.clone()),
        }
    }
    finish_sans(dns, ips)
}

/// kubeadm's `getEtcdAltNames` (server and peer share the base set).
fn etcd_sans(node: &Node) -> (Vec<String>, Vec<IpAddr>) {
    let dns = vec![node.name.clone(), "localhost".to_string()];
    let ips = vec![
        node.address,
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    finish_sans(dns, ips)
}

/// An etcd member's server certificate: kubeadm's set, plus — only when the LB forwards etcd
/// (`loadBalancer.etcdPort`) — the VIP, and the endpoint's host when it is a DNS name, because
/// clients then dial the member through those names. Added after kubeadm's names: DNS names
/// stay a sorted set, the VIP IP comes after `::1` (first occurrence wins, as everywhere here).
/// The peer certificate never gets them: peers dial each other's own addresses.
fn etcd_server_sans(spec: &Spec, node: &Node) -> (Vec<String>, Vec<IpAddr>) {
    let (mut dns, mut ips) = etcd_sans(node);
    if let Some(lb) = spec
        .load_balancer
        .as_ref()
        .filter(|l| l.etcd_port.is_some())
    {
        ips.push(lb.vip);
        if let EndpointHost::Dns(name) = &spec.endpoint.host {
            dns.push(name.clone());
        }
    }
    finish_sans(dns, ips)
}

/// kubeadm's `RemoveDuplicateAltNames`: DNS names as a sorted set, IPs de-duplicated in order.
fn finish_sans(dns: Vec<String>, ips: Vec<IpAddr>) -> (Vec<String>, Vec<IpAddr>) {
    let dns: Vec<String> = dns
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out_ips: Vec<IpAddr> = Vec::with_capacity(ips.len());
    for ip in ips {
        if !out_ips.contains(&ip) {
            out_ips.push(ip);
        }
    }
    (dns, out_ips)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;

    fn spec(path: &str) -> Spec {
        let src = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(path),
        )
        .unwrap();
        kubeha_spec::load_str(&src, Path::new(path)).unwrap().spec
    }

    #[test]
    fn external_etcd_leaf_set() {
        let s = spec("examples/external-etcd.yaml");
        let ids = leaf_ids(&s);
        // 3 CPs × 8 + super-admin + 3 etcd × 4 + 3 workers + operator
        assert_eq!(ids.len(), 24 + 1 + 12 + 3 + 1);
        assert!(ids.contains(&LeafId::new("cp-1", LeafKind::SuperAdminConf)));
        assert!(!ids.contains(&LeafId::new("cp-2", LeafKind::SuperAdminConf)));
        assert!(ids.contains(&LeafId::new("ext-etcd-2", LeafKind::ApiServerEtcdClient)));
        assert!(!ids.contains(&LeafId::new("cp-1", LeafKind::EtcdServer)));
        assert!(!ids.iter().any(|i| i.node.as_deref() == Some("lb1")));
        assert_eq!(ids.last(), Some(&LeafId::operator(LeafKind::AdminConf)));
    }

    #[test]
    fn stacked_leaf_set_dedups() {
        let s = spec("examples/stacked.yaml");
        let ids = leaf_ids(&s);
        let m2: Vec<_> = ids
            .iter()
            .filter(|i| i.node.as_deref() == Some("master-2"))
            .collect();
        // 8 CP kinds + server, peer, healthcheck (etcd client and kubelet are shared)
        assert_eq!(m2.len(), 11);
        assert_eq!(
            ids.iter()
                .filter(|i| **i == LeafId::new("master-2", LeafKind::KubeletConf))
                .count(),
            1
        );
    }

    #[test]
    fn apiserver_sans_follow_kubeadm() {
        let s = spec("examples/external-etcd.yaml");
        let p = leaf_profile(&s, LeafId::new("cp-2", LeafKind::ApiServer)).unwrap();
        assert_eq!(p.common_name, "kube-apiserver");
        assert_eq!(
            p.dns_names,
            [
                "cp-2",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local"
            ]
        );
        let ips: Vec<String> = p.ip_addresses.iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["10.96.0.1", "10.10.0.22", "10.10.0.100"]);
        assert_eq!(p.ext_key_usages, [ExtKeyUsage::ServerAuth]);
    }

    #[test]
    fn extra_sans_and_dns_endpoint() {
        let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/stacked.yaml"))
            .unwrap()
            .replace("controlPlaneEndpoint: 10.20.0.100:6443", "controlPlaneEndpoint: api.k8s.local:6443")
            .replace(
                "  keyAlgorithm: ecdsa-p256",
                "  keyAlgorithm: ecdsa-p256\n  apiserverExtraSans: [zz.example.com, 10.20.0.11, a.example.com, 10.20.0.99]",
            );
        let s = kubeha_spec::load_str(&src, Path::new("test.yaml"))
            .unwrap()
            .spec;
        let p = leaf_profile(&s, LeafId::new("master-1", LeafKind::ApiServer)).unwrap();
        assert_eq!(
            p.dns_names,
            [
                "a.example.com",
                "api.k8s.local",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "master-1",
                "zz.example.com"
            ]
        );
        let ips: Vec<String> = p.ip_addresses.iter().map(|i| i.to_string()).collect();
        // 10.20.0.11 (node address) appears once, where it first occurred.
        assert_eq!(ips, ["10.96.0.1", "10.20.0.11", "10.20.0.99"]);
    }

    #[test]
    fn etcd_and_client_subjects() {
        let s = spec("examples/stacked.yaml");
        let p = leaf_profile(&s, LeafId::new("master-3", LeafKind::EtcdPeer)).unwrap();
        assert_eq!(p.common_name, "master-3");
        assert_eq!(p.dns_names, ["localhost", "master-3"]);
        let ips: Vec<String> = p.ip_addresses.iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["10.20.0.13", "127.0.0.1", "::1"]);
        assert_eq!(
            p.ext_key_usages,
            [ExtKeyUsage::ServerAuth, ExtKeyUsage::ClientAuth]
        );
        let k = leaf_profile(&s, LeafId::new("node-1", LeafKind::KubeletConf)).unwrap();
        assert_eq!(
            (k.common_name.as_str(), k.organization.as_deref()),
            ("system:node:node-1", Some("system:nodes"))
        );
        let c = leaf_profile(&s, LeafId::new("master-1", LeafKind::ApiServerEtcdClient)).unwrap();
        assert_eq!(
            (c.common_name.as_str(), c.organization),
            ("kube-apiserver-etcd-client", None)
        );
        assert!(c.dns_names.is_empty() && c.ip_addresses.is_empty());
        assert!(leaf_profile(&s, LeafId::new("nope", LeafKind::AdminConf)).is_none());
    }

    fn ip_strings(p: &LeafProfile) -> Vec<String> {
        p.ip_addresses.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn etcd_server_sans_carry_the_vip_only_with_etcd_port() {
        // Without etcdPort: kubeadm's set, no VIP, on server and peer alike.
        let s = spec("examples/external-etcd.yaml");
        assert_eq!(s.load_balancer.as_ref().unwrap().etcd_port, None);
        for kind in [LeafKind::EtcdServer, LeafKind::EtcdPeer] {
            let p = leaf_profile(&s, LeafId::new("ext-etcd-1", kind)).unwrap();
            assert_eq!(p.dns_names, ["ext-etcd-1", "localhost"], "{kind:?}");
            assert_eq!(
                ip_strings(&p),
                ["10.10.0.11", "127.0.0.1", "::1"],
                "{kind:?}"
            );
        }

        // The lab sets etcdPort: the server certificate names the VIP, last; the peer does not.
        let lab = spec("examples/lab.yaml");
        assert_eq!(lab.load_balancer.as_ref().unwrap().etcd_port, Some(2379));
        for m in ["etcd-1", "etcd-2", "etcd-3"] {
            let server = leaf_profile(&lab, LeafId::new(m, LeafKind::EtcdServer)).unwrap();
            let addr = lab.node(m).unwrap().address.to_string();
            assert_eq!(
                ip_strings(&server),
                [addr.as_str(), "127.0.0.1", "::1", "198.18.0.100"]
            );
            assert_eq!(server.dns_names, [m, "localhost"]);
            let peer = leaf_profile(&lab, LeafId::new(m, LeafKind::EtcdPeer)).unwrap();
            assert_eq!(ip_strings(&peer), [addr.as_str(), "127.0.0.1", "::1"]);
            assert_eq!(peer.dns_names, [m, "localhost"]);
        }
        // Nothing else changes with etcdPort: the API server's SANs are the same.
        let mut no_port = lab.clone();
        no_port.load_balancer.as_mut().unwrap().etcd_port = None;
        let api = LeafId::new("cp-1", LeafKind::ApiServer);
        assert_eq!(leaf_profile(&lab, api.clone()), leaf_profile(&no_port, api));
        let server = leaf_profile(&no_port, LeafId::new("etcd-1", LeafKind::EtcdServer)).unwrap();
        assert_eq!(ip_strings(&server), ["198.18.0.11", "127.0.0.1", "::1"]);

        // A DNS endpoint joins the sorted DNS names (the VIP still comes from loadBalancer).
        let src = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/external-etcd.yaml"),
        )
        .unwrap()
        .replace(
            "controlPlaneEndpoint: 10.10.0.100:6443",
            "controlPlaneEndpoint: api.k8s.local:6443",
        )
        .replace("  statsPort: 8404", "  statsPort: 8404\n  etcdPort: 2379");
        let s = kubeha_spec::load_str(&src, Path::new("test.yaml"))
            .unwrap()
            .spec;
        let p = leaf_profile(&s, LeafId::new("ext-etcd-2", LeafKind::EtcdServer)).unwrap();
        assert_eq!(p.dns_names, ["api.k8s.local", "ext-etcd-2", "localhost"]);
        assert_eq!(
            ip_strings(&p),
            ["10.10.0.12", "127.0.0.1", "::1", "10.10.0.100"]
        );
        let peer = leaf_profile(&s, LeafId::new("ext-etcd-2", LeafKind::EtcdPeer)).unwrap();
        assert_eq!(peer.dns_names, ["ext-etcd-2", "localhost"]);
        // Toggling etcdPort changes the server profile, so the store re-issues it.
        let before = leaf_profile(
            &spec("examples/external-etcd.yaml"),
            LeafId::new("ext-etcd-2", LeafKind::EtcdServer),
        )
        .unwrap();
        assert_ne!(
            before.fingerprint(KeyAlgorithm::EcdsaP256, 8760, b"ca"),
            p.fingerprint(KeyAlgorithm::EcdsaP256, 8760, b"ca")
        );
    }

    #[test]
    fn fingerprint_tracks_inputs() {
        let s = spec("examples/stacked.yaml");
        let p = leaf_profile(&s, LeafId::new("master-1", LeafKind::ApiServer)).unwrap();
        let a = p.fingerprint(KeyAlgorithm::EcdsaP256, 8760, b"ca");
        assert_eq!(a, p.fingerprint(KeyAlgorithm::EcdsaP256, 8760, b"ca"));
        assert_ne!(a, p.fingerprint(KeyAlgorithm::Rsa2048, 8760, b"ca"));
        assert_ne!(a, p.fingerprint(KeyAlgorithm::EcdsaP256, 100, b"ca"));
        assert_ne!(a, p.fingerprint(KeyAlgorithm::EcdsaP256, 8760, b"other ca"));
        let mut q = p.clone();
        q.ip_addresses.push(IpAddr::from([1, 2, 3, 4]));
        assert_ne!(a, q.fingerprint(KeyAlgorithm::EcdsaP256, 8760, b"ca"));
    }
}
