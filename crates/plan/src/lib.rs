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
    /// Running units whose changed files a reload applies without dropping established
    /// connections (HAProxy's backends); never also in `restart` or `start`.
    pub reload: BTreeSet<String>,
    /// Units that are not running and should be.
    pub start: BTreeSet<String>,
}

impl Step {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.restart.is_empty()
            && self.reload.is_empty()
            && self.start.is_empty()
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

/// How a unit takes in a changed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Apply {
    /// Stop and start: established connections are dropped.
    Restart,
    /// `systemctl reload` (the unit's `ExecReload`): the running service re-reads it.
    Reload,
}

/// What a change of `path` does to its unit, if it has one.
///
/// HAProxy configs (the LBs' `haproxy.cfg`, the control planes' etcd-proxy config) reload:
/// both units run HAProxy in master-worker mode (`-Ws`) with `ExecReload` = `haproxy -c`
/// then `SIGUSR2` to the master, which starts new workers on the new config while the old
/// ones finish their established connections (etcd watches, API watches); an invalid config
/// fails the reload and the old one keeps serving.
///
/// `keepalived.conf` reloads too (`SIGHUP`): keepalived diffs the new config against the
/// running VRRP instance (kubeha renders one, `VI_1`, whose name never changes) and keeps
/// its state, so the MASTER keeps the VIP, while a restart moves the VIP away and back
/// (shutdown sends priority 0). Checked in the lab with keepalived 2.2.7: a new priority
/// and unicast peer were applied and the VIP never left the MASTER (`tests/integration/
/// reload.rs`).
///
/// A unit file or a drop-in always restarts: a new command line needs a new process.
pub fn apply_for(path: &str) -> Option<(&str, Apply)> {
    let unit = unit_for(path)?;
    let reloads = path.starts_with("/etc/haproxy/")
        || path.starts_with(ETCD_PROXY_DIR)
        || path.starts_with("/etc/keepalived/");
    Some((
        unit,
        if reloads {
            Apply::Reload
        } else {
            Apply::Restart
        },
    ))
}

/// The etcd proxy's config directory (the unit file itself lives elsewhere).
const ETCD_PROXY_DIR: &str = "/etc/kubernetes/etcd-proxy/";

/// Plans one host: files that differ, units to restart, reload or start, grouped by phase.
pub fn plan_host(spec: &Spec, node: &Node, tree: &HostTree, facts: &HostFacts) -> Vec<Step> {
    let mut steps: BTreeMap<Phase, Step> = BTreeMap::new();
    fn step<'a>(steps: &'a mut BTreeMap<Phase, Step>, node: &Node, phase: Phase) -> &'a mut Step {
        steps.entry(phase).or_insert_with(|| Step {
            node: node.name.clone(),
            phase,
            files: vec![],
            restart: BTreeSet::new(),
            reload: BTreeSet::new(),
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
                && let Some((u, how)) = apply_for(&f.path).filter(|(u, _)| host_units.contains(u))
            {
                match how {
                    Apply::Restart => s.restart.insert(u.to_string()),
                    Apply::Reload => s.reload.insert(u.to_string()),
                };
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
            s.reload.remove(unit);
            s.start.insert(unit.clone());
        }
    }
    // A restart (a changed unit file) applies the changed config as well.
    for s in steps.values_mut() {
        let restarted = s.restart.clone();
        s.reload.retain(|u| !restarted.contains(u));
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
    fn converged_host_plans_nothing_and_a_changed_haproxy_config_reloads_its_unit() {
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
        assert!(steps[0].reload.contains("haproxy.service"));
        assert!(steps[0].restart.is_empty(), "a reload keeps connections");
        // Mode drift alone fixes the mode without a restart or reload.
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
        assert!(steps[0].restart.is_empty() && steps[0].reload.is_empty());
    }

    fn observed(content: &str) -> Option<ObservedFile> {
        Some(ObservedFile {
            sha256: sha256_hex(content.as_bytes()),
            mode: 0o644,
            owner: "root:root".into(),
        })
    }

    #[test]
    fn apply_for_maps_each_config_to_its_unit_and_how() {
        let cases = [
            ("/etc/haproxy/haproxy.cfg", "haproxy.service", Apply::Reload),
            (
                "/etc/kubernetes/etcd-proxy/haproxy.cfg",
                "kubeha-etcd-proxy.service",
                Apply::Reload,
            ),
            (
                "/etc/systemd/system/kubeha-etcd-proxy.service",
                "kubeha-etcd-proxy.service",
                Apply::Restart,
            ),
            (
                "/etc/systemd/system/haproxy.service.d/10-kubeha.conf",
                "haproxy.service",
                Apply::Restart,
            ),
            (
                "/etc/keepalived/keepalived.conf",
                "keepalived.service",
                Apply::Reload,
            ),
            ("/etc/etcd/etcd.env", "etcd.service", Apply::Restart),
            (
                "/etc/containerd/config.toml",
                "containerd.service",
                Apply::Restart,
            ),
        ];
        for (path, unit, how) in cases {
            assert_eq!(apply_for(path), Some((unit, how)), "{path}");
        }
        assert_eq!(apply_for("/etc/kubernetes/admin.conf"), None);
    }

    #[test]
    fn proxy_config_reloads_but_a_changed_unit_file_restarts_and_a_stopped_unit_starts() {
        let s = spec();
        let c1 = &s.nodes[3];
        let cfg = HostFile::public("/etc/kubernetes/etcd-proxy/haproxy.cfg", "new");
        let unit = HostFile::public("/etc/systemd/system/kubeha-etcd-proxy.service", "unit");
        let t = tree(
            "c1",
            vec![cfg.clone(), unit.clone()],
            &["kubeha-etcd-proxy.service"],
        );
        let mut facts = HostFacts::default();
        facts.files.insert(cfg.path.clone(), observed("old"));
        facts.files.insert(unit.path.clone(), observed("unit"));
        facts
            .services
            .insert("kubeha-etcd-proxy.service".into(), true);
        // Only the config changed: a reload, in the etcd-proxy phase.
        let steps = plan_host(&s, c1, &t, &facts);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].phase, Phase::EtcdProxy);
        assert_eq!(
            steps[0].reload.iter().collect::<Vec<_>>(),
            ["kubeha-etcd-proxy.service"]
        );
        assert!(steps[0].restart.is_empty());
        // The unit file changed too: one restart, no reload on top.
        facts.files.insert(unit.path.clone(), observed("old unit"));
        let steps = plan_host(&s, c1, &t, &facts);
        assert_eq!(
            steps[0].restart.iter().collect::<Vec<_>>(),
            ["kubeha-etcd-proxy.service"]
        );
        assert!(steps[0].reload.is_empty(), "{:?}", steps[0]);
        // Not running: a start, neither reload nor restart.
        facts.files.insert(unit.path.clone(), observed("unit"));
        facts
            .services
            .insert("kubeha-etcd-proxy.service".into(), false);
        let steps = plan_host(&s, c1, &t, &facts);
        assert!(steps[0].start.contains("kubeha-etcd-proxy.service"));
        assert!(steps[0].reload.is_empty() && steps[0].restart.is_empty());
    }

    #[test]
    fn lb_configs_reload_and_only_units_the_host_runs() {
        let s = spec();
        let lb = &s.nodes[1];
        let h = HostFile::public("/etc/haproxy/haproxy.cfg", "h2");
        let k = HostFile::secret("/etc/keepalived/keepalived.conf", "k2");
        let t = tree(
            "lb1",
            vec![h.clone(), k.clone()],
            &["haproxy.service", "keepalived.service"],
        );
        let mut facts = HostFacts::default();
        facts.files.insert(h.path.clone(), observed("h1"));
        facts.files.insert(k.path.clone(), observed("k1"));
        facts.services.insert("haproxy.service".into(), true);
        facts.services.insert("keepalived.service".into(), true);
        let steps = plan_host(&s, lb, &t, &facts);
        assert_eq!(steps.len(), 1);
        assert_eq!(
            steps[0].reload.iter().collect::<Vec<_>>(),
            ["haproxy.service", "keepalived.service"]
        );
        assert!(steps[0].restart.is_empty());
        // A unit the host does not run is neither reloaded nor restarted.
        let t = tree("lb1", vec![h.clone()], &[]);
        let steps = plan_host(&s, lb, &t, &facts);
        assert!(steps[0].reload.is_empty() && steps[0].restart.is_empty());
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
