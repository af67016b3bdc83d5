//! Planning: given what each host should hold (the render) and what it holds (observed
//! facts), decide what changes, on which host, in which phase of the bring-up order.
//!
//! Pure and deterministic: the same render and facts always give the same plan, so
//! `kubeha plan` shows exactly what `kubeha up` will do, and a converged cluster plans
//! nothing.

use std::collections::{BTreeMap, BTreeSet};

use kubeha_render::{HostFile, HostTree, Rendered};
use kubeha_spec::{Node, Role, Spec};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The bring-up order (design.md): each phase ends with a health gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Preflight,
    NodePrep,
    Etcd,
    LoadBalancer,
    /// The control planes' local etcd proxy, started and gated before anything that needs it.
    EtcdProxy,
    ControlPlane,
    Workers,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Preflight,
        Phase::NodePrep,
        Phase::Etcd,
        Phase::LoadBalancer,
        Phase::EtcdProxy,
        Phase::ControlPlane,
        Phase::Workers,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Preflight => "preflight",
            Phase::NodePrep => "node-prep",
            Phase::Etcd => "etcd",
            Phase::LoadBalancer => "load-balancer",
            Phase::EtcdProxy => "etcd-proxy",
            Phase::ControlPlane => "control-plane",
            Phase::Workers => "workers",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a host has at one rendered path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedFile {
    pub sha256: String,
    pub mode: u32,
    pub owner: String,
}

/// What kubeha saw on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    /// Every rendered path: `None` when absent.
    pub files: BTreeMap<String, Option<ObservedFile>>,
    /// Units and whether they run.
    pub services: BTreeMap<String, bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Add,
    Update,
    /// Same content, wrong mode or owner.
    Mode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileAction {
    pub path: String,
    pub change: Change,
    #[serde(skip)]
    pub file: HostFile,
}

/// Everything one host does in one phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub node: String,
    pub phase: Phase,
    pub files: Vec<FileAction>,
    /// Units to (re)start because a file they read changed.
    pub restart: BTreeSet<String>,
    /// Units that are not running and should be.
    pub start: BTreeSet<String>,
}

impl Step {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.restart.is_empty() && self.start.is_empty()
    }
}

/// The ordered changes, phase by phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.iter().all(Step::is_empty)
    }

    pub fn phase(&self, p: Phase) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.phase == p)
    }

    pub fn file_changes(&self) -> usize {
        self.steps.iter().map(|s| s.files.len()).sum()
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Paths of the local etcd proxy (both deployments) and the client certificates its gate uses.
fn is_proxy_path(path: &str) -> bool {
    path.starts_with("/etc/kubernetes/etcd-proxy/")
        || path == "/etc/systemd/system/kubeha-etcd-proxy.service"
        || path == "/etc/kubernetes/manifests/etcd-proxy.yaml"
        || path == "/etc/kubernetes/pki/etcd/ca.crt"
        || path.starts_with("/etc/kubernetes/pki/apiserver-etcd-client.")
}

/// Paths the kubelet needs to run static pods.
fn is_kubelet_path(path: &str) -> bool {
    path.starts_with("/var/lib/kubelet/")
        || path.contains("kubelet.service.d/")
        || path == "/etc/kubernetes/kubelet.conf"
        || path == "/etc/kubernetes/pki/ca.crt"
}

/// True when the local etcd proxy is a static pod, so the kubelet must start with it.
pub fn has_static_proxy(tree: &HostTree) -> bool {
    tree.files
        .iter()
        .any(|f| f.path == "/etc/kubernetes/manifests/etcd-proxy.yaml")
}

/// True when the host runs a local etcd proxy at all.
pub fn has_proxy(tree: &HostTree) -> bool {
    tree.files
        .iter()
        .any(|f| f.path.starts_with("/etc/kubernetes/etcd-proxy/"))
}

/// The phase a rendered file belongs to on `node` (whose tree is `tree`).
pub fn phase_of(spec: &Spec, node: &Node, tree: &HostTree, path: &str) -> Phase {
    if node.has(Role::ControlPlane)
        && has_proxy(tree)
        && (is_proxy_path(path) || (has_static_proxy(tree) && is_kubelet_path(path)))
    {
        return Phase::EtcdProxy;
    }
    phase_of_path(spec, node, path)
}

fn phase_of_path(spec: &Spec, node: &Node, path: &str) -> Phase {
    let etcd_member = spec.is_etcd_member(node);
    if path.starts_with("/etc/modules-load.d/")
        || path == "/etc/sysctl.d/k8s.conf"
        || path.starts_with("/etc/containerd/")
        || path == "/etc/crictl.yaml"
    {
        return Phase::NodePrep;
    }
    if etcd_member
        && (path.starts_with("/etc/kubernetes/pki/etcd/")
            || path == "/etc/systemd/system/etcd.service"
            || path.starts_with("/etc/etcd/")
            || path == "/etc/kubernetes/manifests/etcd.yaml"
            || path.contains("20-etcd-service-manager")
            || path == "/etc/kubernetes/kubeadmcfg.yaml"
            || (!node.has(Role::ControlPlane)
                && (path.contains("apiserver-etcd-client")
                    || path.starts_with("/etc/systemd/system/kubelet.service.d/"))))
    {
        return Phase::Etcd;
    }
    if node.has(Role::Lb)
        && (path.starts_with("/etc/haproxy/")
            || path.starts_with("/etc/keepalived/")
            || path.starts_with("/etc/sysctl.d/"))
    {
        return Phase::LoadBalancer;
    }
    if node.has(Role::ControlPlane) {
        return Phase::ControlPlane;
    }
    if node.has(Role::Worker) {
        return Phase::Workers;
    }
    Phase::NodePrep
}

/// The unit that must restart when `path` changes, if any.
pub fn unit_for(path: &str) -> Option<&str> {
    // A unit file (or a drop-in for it) restarts the unit itself.
    if let Some(rest) = path.strip_prefix("/etc/systemd/system/") {
        let unit = rest.split('/').next().unwrap_or(rest);
        if let Some(u) = unit.strip_suffix(".d") {
            return Some(u);
        }
        if unit.ends_with(".service") {
            return Some(unit);
        }
    }
    if path.starts_with("/etc/etcd/")
        || path.starts_with("/etc/kubernetes/pki/etcd/server")
        || path.starts_with("/etc/kubernetes/pki/etcd/peer")
        || path == "/etc/kubernetes/pki/etcd/ca.crt"
    {
        return Some("etcd.service");
    }
    if path.starts_with("/etc/haproxy/") {
        return Some("haproxy.service");
    }
    if path.starts_with("/etc/keepalived/") {
        return Some("keepalived.service");
    }
    if path.starts_with("/etc/kubernetes/etcd-proxy/") {
        return Some("kubeha-etcd-proxy.service");
    }
    if path.starts_with("/etc/containerd/") {
        return Some("containerd.service");
    }
    if path.starts_with("/var/lib/kubelet/")
        || path.contains("kubelet.service.d/")
        || path == "/etc/kubernetes/kubelet.conf"
    {
        return Some("kubelet.service");
    }
    None
}

/// Plans one host: files that differ, units to restart or start, grouped by phase.
pub fn plan_host(spec: &Spec, node: &Node, tree: &HostTree, facts: &HostFacts) -> Vec<Step> {
    let mut steps: BTreeMap<Phase, Step> = BTreeMap::new();
    fn step<'a>(steps: &'a mut BTreeMap<Phase, Step>, node: &Node, phase: Phase) -> &'a mut Step {
        steps.entry(phase).or_insert_with(|| Step {
            node: node.name.clone(),
            phase,
            files: vec![],
            restart: BTreeSet::new(),
            start: BTreeSet::new(),
        })
    }
    let host_units: BTreeSet<&str> = tree.services.iter().map(String::as_str).collect();
    for f in &tree.files {
        let phase = phase_of(spec, node, tree, &f.path);
        let want = sha256_hex(f.content.as_bytes());
        let change = match facts.files.get(&f.path).and_then(Option::as_ref) {
            None => Some(Change::Add),
            Some(o) if o.sha256 != want => Some(Change::Update),
            Some(o) if o.mode != f.mode || o.owner != f.owner => Some(Change::Mode),
            Some(_) => None,
        };
        if let Some(change) = change {
            let s = step(&mut steps, node, phase);
            if change != Change::Mode
                && let Some(u) = unit_for(&f.path).filter(|u| host_units.contains(u))
            {
                s.restart.insert(u.to_string());
            }
            s.files.push(FileAction {
                path: f.path.clone(),
                change,
                file: f.clone(),
            });
        }
    }
    for unit in &tree.services {
        if !facts.services.get(unit).copied().unwrap_or(false) {
            let phase = unit_phase(spec, node, tree, unit);
            let s = step(&mut steps, node, phase);
            s.restart.remove(unit);
            s.start.insert(unit.clone());
        }
    }
    steps.into_values().filter(|s| !s.is_empty()).collect()
}

/// The phase a unit is started in on `node`.
pub fn unit_phase(spec: &Spec, node: &Node, tree: &HostTree, unit: &str) -> Phase {
    match unit {
        "kubeha-etcd-proxy.service" => Phase::EtcdProxy,
        "kubelet.service" if node.has(Role::ControlPlane) && has_static_proxy(tree) => {
            Phase::EtcdProxy
        }
        "etcd.service" => Phase::Etcd,
        "haproxy.service" | "keepalived.service" => Phase::LoadBalancer,
        "containerd.service" => Phase::NodePrep,
        "kubelet.service"
            if spec.is_etcd_member(node)
                && !node.has(Role::ControlPlane)
                && !node.has(Role::Worker) =>
        {
            Phase::Etcd
        }
        _ if node.has(Role::ControlPlane) => Phase::ControlPlane,
        _ if node.has(Role::Worker) => Phase::Workers,
        _ => Phase::NodePrep,
    }
}

/// Plans every host, ordered by phase, then by cluster-file order.
pub fn plan(spec: &Spec, rendered: &Rendered, facts: &BTreeMap<String, HostFacts>) -> Plan {
    let empty = HostFacts::default();
    let mut steps = Vec::new();
    for (node, tree) in spec.nodes.iter().zip(&rendered.hosts) {
        steps.extend(plan_host(
            spec,
            node,
            tree,
            facts.get(&node.name).unwrap_or(&empty),
        ));
    }
    let order: BTreeMap<&str, usize> = spec
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    steps.sort_by_key(|s| {
        (
            s.phase,
            order.get(s.node.as_str()).copied().unwrap_or(usize::MAX),
        )
    });
    Plan { steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        let yaml = "name: t\ncontrolPlaneEndpoint: 10.1.0.100:6443\nnetworking: {nodeCidr: 10.1.0.0/24}\nloadBalancer: {vip: 10.1.0.100}\nnodes:\n  - {name: e1, address: 10.1.0.11, roles: [etcd]}\n  - {name: lb1, address: 10.1.0.101, roles: [lb]}\n  - {name: lb2, address: 10.1.0.102, roles: [lb]}\n  - {name: c1, address: 10.1.0.21, roles: [control-plane]}\n";
        kubeha_spec::load_str(yaml, std::path::Path::new("t.yaml"))
            .expect("spec")
            .spec
    }

    fn tree(node: &str, files: Vec<HostFile>, services: &[&str]) -> HostTree {
        HostTree {
            node: node.into(),
            files,
            services: services.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn fresh_host_adds_everything_and_starts_units_in_their_phase() {
        let s = spec();
        let e1 = &s.nodes[0];
        let t = tree(
            "e1",
            vec![
                HostFile::public("/etc/systemd/system/etcd.service", "x"),
                HostFile::public("/etc/modules-load.d/k8s.conf", "overlay"),
            ],
            &["etcd.service"],
        );
        let steps = plan_host(&s, e1, &t, &HostFacts::default());
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].phase, Phase::NodePrep);
        assert_eq!(steps[1].phase, Phase::Etcd);
        assert!(steps[1].start.contains("etcd.service"));
        assert!(
            steps[1].restart.is_empty(),
            "a unit being started is not also restarted"
        );
    }

    #[test]
    fn converged_host_plans_nothing_and_a_changed_config_restarts_its_unit() {
        let s = spec();
        let lb = &s.nodes[1];
        let f = HostFile::public("/etc/haproxy/haproxy.cfg", "cfg");
        let t = tree("lb1", vec![f.clone()], &["haproxy.service"]);
        let mut facts = HostFacts::default();
        facts.files.insert(
            f.path.clone(),
            Some(ObservedFile {
                sha256: sha256_hex(b"cfg"),
                mode: 0o644,
                owner: "root:root".into(),
            }),
        );
        facts.services.insert("haproxy.service".into(), true);
        assert!(plan_host(&s, lb, &t, &facts).is_empty());
        facts.files.insert(
            f.path.clone(),
            Some(ObservedFile {
                sha256: sha256_hex(b"old"),
                mode: 0o644,
                owner: "root:root".into(),
            }),
        );
        let steps = plan_host(&s, lb, &t, &facts);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].phase, Phase::LoadBalancer);
        assert_eq!(steps[0].files[0].change, Change::Update);
        assert!(steps[0].restart.contains("haproxy.service"));
        // Mode drift alone fixes the mode without a restart.
        facts.files.insert(
            f.path.clone(),
            Some(ObservedFile {
                sha256: sha256_hex(b"cfg"),
                mode: 0o600,
                owner: "root:root".into(),
            }),
        );
        let steps = plan_host(&s, lb, &t, &facts);
        assert_eq!(steps[0].files[0].change, Change::Mode);
        assert!(steps[0].restart.is_empty());
    }

    #[test]
    fn steps_are_ordered_by_phase_then_node() {
        let s = spec();
        let trees: Vec<HostTree> = s
            .nodes
            .iter()
            .map(|n| match n.name.as_str() {
                "e1" => tree(
                    "e1",
                    vec![HostFile::public("/etc/systemd/system/etcd.service", "x")],
                    &["etcd.service"],
                ),
                "c1" => tree(
                    "c1",
                    vec![HostFile::public("/etc/kubernetes/admin.conf", "x")],
                    &[],
                ),
                other => tree(
                    other,
                    vec![HostFile::public("/etc/haproxy/haproxy.cfg", "x")],
                    &["haproxy.service"],
                ),
            })
            .collect();
        let p = plan(
            &s,
            &Rendered {
                hosts: trees,
                operator: vec![],
            },
            &BTreeMap::new(),
        );
        let order: Vec<(Phase, &str)> = p
            .steps
            .iter()
            .map(|st| (st.phase, st.node.as_str()))
            .collect();
        assert_eq!(
            order,
            vec![
                (Phase::Etcd, "e1"),
                (Phase::LoadBalancer, "lb1"),
                (Phase::LoadBalancer, "lb2"),
                (Phase::ControlPlane, "c1")
            ]
        );
    }
}
