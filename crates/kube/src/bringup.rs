//! The Kubernetes part of `kubeha up`, after the first API server answers: kubeadm's
//! bootstrap objects, kube-proxy and CoreDNS, the pod network, node marking, serving-CSR
//! approval, then waits for every node `Ready` and CoreDNS available, and MetalLB last.
//!
//! Every step is idempotent (apply compares a hash and writes only what differs), every wait
//! is bounded, so a re-run after a failure or timeout finishes the job.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use kubeha_render::{Bundle, Manifest, Stage};
use serde::Serialize;

use crate::{Applied, Edge, Error, NodeMarking, Outcome, Result};

/// What the bring-up needs besides the connection.
#[derive(Debug, Clone)]
pub struct BringUp<'a> {
    /// Every bundle, in apply order (`kubeha_render::cluster_bundles`).
    pub bundles: &'a [Bundle],
    /// Labels and taints per node (`kubeha_render::bootstrap::markings`).
    pub markings: &'a [NodeMarking],
    /// Nodes that run a kubelet and must become Ready, with their addresses (for serving-CSR
    /// approval: only these names and addresses are approved).
    pub nodes: Vec<(String, Vec<IpAddr>)>,
    pub timeouts: Timeouts,
}

/// Bounds of the waits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The API server's `/livez`.
    pub livez: Duration,
    /// A CRD becoming Established; a webhook-guarded object being accepted.
    pub crd: Duration,
    /// Every node Ready.
    pub nodes_ready: Duration,
    /// CoreDNS (and MetalLB's controller) available.
    pub addons: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            livez: Duration::from_secs(300),
            crd: Duration::from_secs(120),
            nodes_ready: Duration::from_secs(600),
            addons: Duration::from_secs(300),
        }
    }
}

/// One step of the bring-up.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    pub step: String,
    pub detail: String,
    /// Objects created / updated / unchanged by this step.
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub seconds: f64,
}

/// Receives one line per step as it finishes.
pub trait Progress {
    fn step(&self, report: &StepReport);
}

impl<F: Fn(&StepReport)> Progress for F {
    fn step(&self, report: &StepReport) {
        self(report)
    }
}

/// Runs the bring-up; credentials able to create RBAC before `kubeadm:cluster-admins` exists
/// (super-admin.conf) are needed for the bootstrap stage, `admin` for the rest may be the same.
pub fn bring_up(
    bootstrap: &Edge,
    admin: &Edge,
    b: &BringUp<'_>,
    progress: &dyn Progress,
) -> Result<Vec<StepReport>> {
    let mut out = Vec::new();
    let mut record = |r: StepReport| {
        progress.step(&r);
        out.push(r);
    };

    let t = Instant::now();
    wait_livez(bootstrap, b.timeouts.livez)?;
    record(step("livez", "the API server answers /livez", &[], t));

    for bundle in b.bundles.iter().filter(|x| x.stage == Stage::Bootstrap) {
        let t = Instant::now();
        let applied = apply_bundle(bootstrap, bundle, b.timeouts.crd)?;
        record(step(
            &bundle.name,
            "kubeadm's RBAC, configs, token, cluster-info",
            &applied,
            t,
        ));
    }
    for bundle in b
        .bundles
        .iter()
        .filter(|x| matches!(x.stage, Stage::CoreAddons | Stage::Cni))
    {
        let t = Instant::now();
        let applied = apply_bundle(admin, bundle, b.timeouts.crd)?;
        record(step(&bundle.name, "applied", &applied, t));
    }

    let names: Vec<String> = b.nodes.iter().map(|(n, _)| n.clone()).collect();
    let t = Instant::now();
    let ready = wait_ready_approving(admin, &b.nodes, &names, b.timeouts.nodes_ready)?;
    record(step(
        "nodes",
        &format!("{} node(s) Ready", ready.len()),
        &[],
        t,
    ));

    let t = Instant::now();
    let mut changed = 0;
    for m in b.markings {
        if admin.mark_node(m)? {
            changed += 1;
        }
    }
    record(step(
        "node-marking",
        &format!("{changed} of {} node(s) labelled/tainted", b.markings.len()),
        &[],
        t,
    ));

    let t = Instant::now();
    admin.wait_deployment_available("kube-system", "coredns", b.timeouts.addons)?;
    record(step("coredns", "CoreDNS available", &[], t));

    for bundle in b.bundles.iter().filter(|x| x.stage == Stage::LoadBalancer) {
        let t = Instant::now();
        let applied = apply_bundle(admin, bundle, b.timeouts.crd)?;
        record(step(&bundle.name, "applied", &applied, t));
    }
    Ok(out)
}

fn step(name: &str, detail: &str, applied: &[Applied], t: Instant) -> StepReport {
    let count = |o: Outcome| applied.iter().filter(|a| a.outcome == o).count();
    StepReport {
        step: name.to_string(),
        detail: detail.to_string(),
        created: count(Outcome::Created),
        updated: count(Outcome::Updated),
        unchanged: count(Outcome::Unchanged),
        seconds: t.elapsed().as_secs_f64(),
    }
}

fn wait_livez(edge: &Edge, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match edge.livez() {
            Ok(true) => return Ok(()),
            Ok(false) => "answers, but not live".to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::WaitTimeout {
                what: "wait for the API server's /livez".into(),
                timeout,
                detail: last,
            });
        }
        std::thread::sleep(Duration::from_millis(500).min(timeout));
    }
}

/// Waits for Ready nodes, approving their kubelet serving CSRs meanwhile (kubelets that ask
/// for one keep retrying until it is signed).
fn wait_ready_approving(
    edge: &Edge,
    known: &[(String, Vec<IpAddr>)],
    names: &[String],
    timeout: Duration,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    let slice = Duration::from_secs(5);
    loop {
        edge.approve_serving_csrs(known)?;
        let left = deadline.saturating_duration_since(Instant::now());
        match edge.wait_nodes_ready(names, slice.min(left)) {
            Ok(r) => return Ok(r.ready),
            Err(Error::NodesNotReady { .. }) if Instant::now() < deadline => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Applies a bundle in order; before a custom resource whose CRD the same bundle defines, waits
/// for that CRD to be Established; an object refused by a webhook that is not serving yet
/// (MetalLB guards its pools with one) is retried until `timeout`.
pub fn apply_bundle(edge: &Edge, bundle: &Bundle, timeout: Duration) -> Result<Vec<Applied>> {
    let crds: BTreeMap<(String, String), String> = bundle
        .manifests
        .iter()
        .filter(|m| m.kind == "CustomResourceDefinition")
        .filter_map(|m| {
            let group = m.object["spec"]["group"].as_str()?;
            let plural = m.object["spec"]["names"]["plural"].as_str()?;
            Some(((group.to_string(), plural.to_string()), m.name.clone()))
        })
        .collect();
    let mut established = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(bundle.manifests.len());
    for m in &bundle.manifests {
        if let Some(crd) = crds.get(&(m.group().to_string(), m.plural.clone()))
            && established.insert(crd.clone())
        {
            edge.wait_crd_established(crd, timeout)?;
        }
        out.extend(apply_retrying_webhooks(edge, m, timeout)?);
    }
    Ok(out)
}

fn apply_retrying_webhooks(edge: &Edge, m: &Manifest, timeout: Duration) -> Result<Vec<Applied>> {
    let deadline = Instant::now() + timeout;
    loop {
        match edge.apply(std::slice::from_ref(m)) {
            Err(e) if webhook_not_ready(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_secs(1).min(timeout));
            }
            other => return other,
        }
    }
}

/// The API server's answer when an admission webhook's service has no ready endpoint yet.
fn webhook_not_ready(e: &Error) -> bool {
    matches!(e, Error::Api { code, message, .. }
        if *code >= 500 && message.contains("failed calling webhook"))
}
