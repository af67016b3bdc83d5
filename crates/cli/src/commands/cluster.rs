//! The commands that talk to the Kubernetes API: the Kubernetes part of `kubeha up`,
//! `kubeha images`, `kubeha check` and `kubeha fix pod-cidr`.

use std::{path::Path, process::ExitCode, time::Duration};

use kubeha_apply::{Report, gate::GateResult};
use kubeha_kube::{
    Edge, EdgeOptions, PodCidrReport,
    bringup::{BringUp, StepReport, Timeouts},
};
use kubeha_pki::Materials;
use kubeha_plan::Phase;
use kubeha_render::{Ctx, Rendered, bootstrap, cluster_bundles};
use kubeha_spec::{Role, Spec};
use serde::Serialize;

use crate::{
    args::{CheckArgs, FixCommand, Global},
    error::CliError,
    output::emit,
    table::Table,
};

/// Where the super-admin credentials live on the first control plane.
const SUPER_ADMIN_CONF: &str = "/etc/kubernetes/super-admin.conf";

/// What `kubeha up` did through the Kubernetes API, and where the admin kubeconfig is.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeOutcome {
    #[serde(flatten)]
    pub result: KubeResult,
    /// The operator's admin kubeconfig (0600), server = the cluster's endpoint.
    pub admin_kubeconfig: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum KubeResult {
    /// The control-plane gate did not pass because no API server can run on these hosts.
    NotVerifiable {
        reason: String,
        /// Objects rendered (and shown by `kubeha render` under `_cluster/`) but not applied.
        objects: usize,
    },
    Applied {
        steps: Vec<StepReport>,
    },
}

impl KubeOutcome {
    pub fn text(&self) -> String {
        let mut s = match &self.result {
            KubeResult::NotVerifiable { reason, objects } => format!(
                "kubernetes: not verifiable ({reason}); {objects} object(s) rendered under _cluster/ by `kubeha render`, not applied\n"
            ),
            KubeResult::Applied { steps } => {
                let mut t =
                    Table::new(["STEP", "CREATED", "UPDATED", "UNCHANGED", "DETAIL", "TIME"]);
                for s in steps {
                    t.row([
                        s.step.clone(),
                        s.created.to_string(),
                        s.updated.to_string(),
                        s.unchanged.to_string(),
                        s.detail.clone(),
                        format!("{:.1}s", s.seconds),
                    ]);
                }
                t.render()
            }
        };
        s.push_str(&format!(
            "admin kubeconfig: {} (`kubeha kubeconfig --merge` adds it to ~/.kube/config)\n",
            self.admin_kubeconfig
        ));
        s
    }
}

/// Writes the admin kubeconfig into the cluster's state dir when it differs; its path.
fn write_admin_kubeconfig(state: &Path, text: &str) -> Result<String, CliError> {
    let path = state.join("admin.kubeconfig");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
        super::kubeconfig::write_atomic(&path, text.as_bytes())?;
    }
    Ok(path.display().to_string())
}

/// Runs the Kubernetes bring-up when the first control plane's gate passed.
///
/// `None` when the cluster has no control plane (etcd/LB-only files).
pub fn after_converge(
    state: &Path,
    spec: &Spec,
    rendered: &Rendered,
    materials: &Materials,
    report: &Report,
    quiet: bool,
) -> Result<Option<KubeOutcome>, CliError> {
    let Some(first) = spec.init_control_plane() else {
        return Ok(None);
    };
    let bundles = cluster_bundles(Ctx::new(spec, materials))?;
    let admin = kubeha_render::operator::admin_kubeconfig(Ctx::new(spec, materials))?;
    let admin_kubeconfig = write_admin_kubeconfig(state, &admin)?;
    let gate = report
        .phases
        .iter()
        .find(|p| p.phase == Phase::ControlPlane)
        .and_then(|p| p.gate.clone());
    match gate {
        Some(GateResult::Passed(_)) => {}
        Some(GateResult::NotVerifiable(reason)) => {
            return Ok(Some(KubeOutcome {
                result: KubeResult::NotVerifiable {
                    reason,
                    objects: bundles.iter().map(|b| b.manifests.len()).sum(),
                },
                admin_kubeconfig,
            }));
        }
        _ => return Ok(None),
    }
    let super_admin = rendered
        .hosts
        .iter()
        .find(|h| h.node == first.name)
        .and_then(|h| h.files.iter().find(|f| f.path == SUPER_ADMIN_CONF))
        .ok_or_else(|| CliError::Input {
            message: format!("no {SUPER_ADMIN_CONF} rendered for {}", first.name),
            help: "this is a bug in kubeha's rendering; please report it".into(),
        })?;
    let bootstrap_edge = Edge::from_kubeconfig(&super_admin.content, EdgeOptions::default())?;
    let admin_edge = Edge::from_kubeconfig(&admin, EdgeOptions::default())?;
    let markings = bootstrap::markings(spec);
    let b = BringUp {
        bundles: &bundles,
        markings: &markings,
        nodes: kubelet_nodes(spec),
        timeouts: Timeouts::default(),
    };
    let say = |s: &StepReport| {
        if !quiet {
            progress!(
                "kubernetes {}: {} ({} created, {} updated) {:.1}s",
                s.step,
                s.detail,
                s.created,
                s.updated,
                s.seconds
            );
        }
    };
    let steps = kubeha_kube::bringup::bring_up(&bootstrap_edge, &admin_edge, &b, &say)?;
    Ok(Some(KubeOutcome {
        result: KubeResult::Applied { steps },
        admin_kubeconfig,
    }))
}

/// Nodes that run a kubelet, with their addresses.
fn kubelet_nodes(spec: &Spec) -> Vec<(String, Vec<std::net::IpAddr>)> {
    spec.nodes
        .iter()
        .filter(|n| n.has(Role::ControlPlane) || n.has(Role::Worker))
        .map(|n| (n.name.clone(), vec![n.address]))
        .collect()
}

/// `kubeha images`.
pub fn images(g: &Global) -> Result<ExitCode, CliError> {
    let loaded = super::load_spec(g)?;
    let list = kubeha_render::images::all(&loaded.spec);
    emit(g.output, &list, || {
        let mut t = Table::new(["IMAGE", "USED BY"]);
        for i in &list {
            t.row([i.image.clone(), i.used_by.clone()]);
        }
        t.render()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The admin connection for `check`/`fix`: `--kubeconfig`, or the operator's admin
/// credentials from the state dir (server = the cluster's endpoint).
fn admin_edge(g: &Global, a: &CheckArgs, spec: &Spec) -> Result<Edge, CliError> {
    let text = match &a.kubeconfig {
        Some(path) => {
            std::fs::read_to_string(path).map_err(CliError::io("read kubeconfig", path))?
        }
        // Read-only: `check` and `fix` never issue anything.
        None => super::admin_kubeconfig(g, spec)?,
    };
    Ok(Edge::from_kubeconfig(
        &text,
        EdgeOptions {
            request_timeout: Duration::from_secs(a.timeout),
            ..EdgeOptions::default()
        },
    )?)
}

/// `kubeha check`: the cluster file's pod CIDR against every place a live cluster keeps it.
pub fn check(g: &Global, a: &CheckArgs) -> Result<ExitCode, CliError> {
    let loaded = super::load_spec(g)?;
    let spec = &loaded.spec;
    let edge = admin_edge(g, a, spec)?;
    let report = edge.pod_cidr_report(spec.networking.pod_cidr)?;
    emit(g.output, &report, || check_text(&report))?;
    Ok(if report.consistent() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::error::EXIT_FAILURE)
    })
}

fn check_text(r: &PodCidrReport) -> String {
    let mut s = r.to_string();
    if r.consistent() {
        s.push_str("pod CIDR: every source agrees\n");
    } else {
        s.push_str(
            "pod CIDR: sources disagree; `kubeha fix pod-cidr` brings the live cluster to the cluster file's value\n",
        );
    }
    s
}

/// What `kubeha fix pod-cidr` changed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FixOut {
    before: PodCidrReport,
    kubeadm_config_changed: bool,
    kube_proxy_changed: bool,
    cni: String,
    /// Nodes whose podCIDR was empty and is now set, or is left to the controller-manager.
    nodes_set: Vec<String>,
    /// Nodes with a podCIDR outside the new range: the API keeps a node's podCIDR once set,
    /// so these must be drained, deleted and re-registered (their kubelet restarted).
    nodes_to_recreate: Vec<String>,
    after: PodCidrReport,
}

/// `kubeha fix pod-cidr`: guide 000's live correction, driven by the cluster file's value.
pub fn fix(g: &Global, c: &FixCommand) -> Result<ExitCode, CliError> {
    let FixCommand::PodCidr(a) = c;
    let loaded = super::load_spec(g)?;
    let spec = &loaded.spec;
    let cidr = spec.networking.pod_cidr;
    let edge = admin_edge(g, a, spec)?;
    let before = edge.pod_cidr_report(cidr)?;
    // 1. kubeadm's record, read by joins and upgrades.
    let kubeadm_config_changed = edge.set_kubeadm_pod_subnet(cidr)?;
    // 2. The controller-manager's --cluster-cidr comes from the render: `kubeha up` updates
    //    the static pods one control plane at a time (see the note printed below).
    // 3. kube-proxy's clusterCIDR, then a rolling restart of its DaemonSet.
    let kube_proxy_changed = edge.set_kube_proxy_cluster_cidr(cidr)?;
    // 4. The CNI.
    let cni = match spec.cni.plugin {
        kubeha_spec::CniPlugin::Flannel => {
            let bundle = kubeha_render::addons::flannel::bundle(spec)?;
            let changed = kubeha_kube::bringup::apply_bundle(&edge, &bundle, Duration::from_secs(60))?
                .iter()
                .filter(|x| x.outcome != kubeha_kube::Outcome::Unchanged)
                .count();
            if changed > 0 {
                edge.restart_daemonset("kube-flannel", "kube-flannel-ds")?;
                "flannel: net-conf.json updated, DaemonSet restarted".to_string()
            } else {
                "flannel: net-conf.json already agrees".to_string()
            }
        }
        kubeha_spec::CniPlugin::Calico => "calico: an existing IP pool is not rewritten by the operator; create an IPPool for the new range and disable the old one (calicoctl), then restart workloads".to_string(),
    };
    // 5. Node pod CIDRs: empty ones are left to the controller-manager's allocator; ones
    //    outside the range cannot be changed in place.
    let mut nodes_set = vec![];
    let mut nodes_to_recreate = vec![];
    for f in before
        .findings
        .iter()
        .filter(|f| f.source.starts_with("Node "))
    {
        let node = f
            .source
            .trim_start_matches("Node ")
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        match f.verdict {
            kubeha_kube::Verdict::Disagrees | kubeha_kube::Verdict::Unreadable => {
                nodes_to_recreate.push(node)
            }
            kubeha_kube::Verdict::NotFound => nodes_set.push(node),
            kubeha_kube::Verdict::Agrees => {}
        }
    }
    let after = edge.pod_cidr_report(cidr)?;
    let out = FixOut {
        before,
        kubeadm_config_changed,
        kube_proxy_changed,
        cni,
        nodes_set,
        nodes_to_recreate,
        after,
    };
    emit(g.output, &out, || fix_text(&out))?;
    Ok(ExitCode::SUCCESS)
}

fn fix_text(o: &FixOut) -> String {
    let yes = |b: bool| if b { "updated" } else { "already agrees" };
    let mut s = format!(
        "kubeadm-config podSubnet: {}\nkube-proxy clusterCIDR: {}{}\n{}\n",
        yes(o.kubeadm_config_changed),
        yes(o.kube_proxy_changed),
        if o.kube_proxy_changed {
            " (DaemonSet restarted)"
        } else {
            ""
        },
        o.cni
    );
    s.push_str("kube-controller-manager --cluster-cidr: run `kubeha up` (static pods are re-rendered and replaced one control plane at a time)\n");
    if !o.nodes_set.is_empty() {
        s.push_str(&format!(
            "nodes without a podCIDR (the controller-manager allocates one once its flag is fixed): {}\n",
            o.nodes_set.join(", ")
        ));
    }
    if !o.nodes_to_recreate.is_empty() {
        s.push_str(&format!(
            "nodes whose podCIDR lies outside {} (a node keeps its podCIDR once set): {}\n  for each, one at a time: kubectl drain NODE --ignore-daemonsets; kubectl delete node NODE; restart its kubelet (it re-registers and gets a new range)\n",
            o.after.expected,
            o.nodes_to_recreate.join(", ")
        ));
    }
    s.push_str("\nafter:\n");
    s.push_str(&o.after.to_string());
    s
}
