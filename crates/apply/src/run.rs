//! `kubeha up`'s engine: observe → preflight → plan → apply phase by phase with gates.
//!
//! Nothing here keeps state between runs: every run observes the hosts afresh and plans
//! from what it sees, so a run killed anywhere is finished by the next one, and a run on a
//! converged cluster changes nothing.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use kubeha_pki::Materials;
use kubeha_plan::{Change, Phase, Plan, Step};
use kubeha_render::{Ctx, Rendered};
use kubeha_spec::{Role, Spec};
use kubeha_transport::{
    Command, Transport, TransportError, UploadFile, for_each_host, upload_many,
};
use serde::Serialize;

use crate::{
    gate::{self, GateResult},
    observe::{Observed, facts_map, observe},
    service::required_binary,
};

/// How `converge` behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts worked on at once within a phase.
    pub parallelism: usize,
    /// Plan only: observe and plan, change nothing.
    pub dry_run: bool,
    /// The kubeha binary path on hosts without systemd (lab hosts share this machine's files).
    pub supervisor: Option<String>,
    /// Bound on each gate (etcd, load balancer, proxy).
    pub gate_timeout: Duration,
    /// Bound on the API server's `/livez` gate, where it can run.
    pub apiserver_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            parallelism: 16,
            dry_run: false,
            supervisor: None,
            gate_timeout: Duration::from_secs(60),
            apiserver_timeout: Duration::from_secs(300),
        }
    }
}

/// Receives progress as it happens (the CLI draws it).
pub trait Progress: Sync {
    fn phase(&self, phase: Phase, hosts: usize);
    fn host(&self, phase: Phase, node: &str, message: &str);
    fn gate(&self, phase: Phase, result: &GateResult);
}

/// One phase of a run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseReport {
    pub phase: Phase,
    pub hosts: Vec<String>,
    pub files_changed: usize,
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    /// `node/unit` reloaded in place (established connections kept).
    pub reloaded: Vec<String>,
    pub notes: Vec<String>,
    pub gate: Option<GateResult>,
    pub seconds: f64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub plan: Plan,
    pub observed: Vec<Observed>,
    pub warnings: Vec<String>,
    /// `node/unit: binary` for services whose program is not installed on the host: their
    /// files are written, but they are not started and their health is not verifiable.
    pub not_installed: Vec<String>,
    pub phases: Vec<PhaseReport>,
    /// True when the run changed any host.
    pub changed: bool,
    pub observe_seconds: f64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Some hosts could not be observed; nothing was changed anywhere.
    #[error("{} host(s) could not be reached; nothing was changed", .errors.len())]
    Unreachable { errors: Vec<TransportError> },
    /// Preflight found problems; nothing was changed.
    #[error("preflight failed; nothing was changed")]
    Preflight { problems: Vec<String> },
    /// A host failed while applying its step.
    #[error("{phase} on {node} failed")]
    Step {
        node: String,
        phase: Phase,
        #[source]
        source: TransportError,
    },
    /// A gate did not pass in time; later phases did not run.
    #[error("{phase} gate failed: {detail}")]
    Gate {
        phase: Phase,
        detail: String,
        report: Box<Report>,
    },
}

type Hosts<'a> = BTreeMap<String, Box<dyn Transport + 'a>>;

/// Observes, plans and (unless `dry_run`) applies.
pub fn converge(
    spec: &Spec,
    rendered: &Rendered,
    materials: &Materials,
    hosts: &Hosts<'_>,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report, ApplyError> {
    let started = Instant::now();
    // Whether something answers on the VIP: probed while the hosts are observed, because an
    // address nobody holds costs the whole connect timeout.
    let vip_probe = spec.load_balancer.as_ref().map(|lb| {
        let addr = SocketAddr::new(lb.vip, spec.endpoint.port);
        std::thread::spawn(move || gate::tcp_accepts(addr, Duration::from_millis(500)))
    });
    let trees: BTreeMap<&str, &kubeha_render::HostTree> = rendered
        .hosts
        .iter()
        .map(|t| (t.node.as_str(), t))
        .collect();
    let nodes: Vec<&str> = spec.nodes.iter().map(|n| n.name.as_str()).collect();
    let results = for_each_host(nodes, opts.parallelism, |name| {
        let t = hosts.get(*name).ok_or_else(|| TransportError::Invalid {
            host: name.to_string(),
            op: "connect".into(),
            reason: "no transport for this node".into(),
        })?;
        let tree = trees.get(*name).ok_or_else(|| TransportError::Invalid {
            host: name.to_string(),
            op: "observe".into(),
            reason: "nothing rendered for this node".into(),
        })?;
        observe(t.as_ref(), tree, opts.supervisor.as_deref())
    });
    let mut observed = Vec::new();
    let mut errors = Vec::new();
    for (_, r) in results {
        match r {
            Ok(o) => observed.push(o),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(ApplyError::Unreachable { errors });
    }
    let observe_seconds = started.elapsed().as_secs_f64();
    let vip_answers = vip_probe.is_some_and(|h| h.join().unwrap_or(false));
    let warnings = preflight(spec, &observed, vip_answers)?;
    let (effective, not_installed) = without_uninstalled(rendered, &observed);
    let plan = kubeha_plan::plan(spec, &effective, &facts_map(&observed));
    let mut report = Report {
        plan: plan.clone(),
        observed,
        warnings,
        not_installed,
        phases: vec![],
        changed: false,
        observe_seconds,
        seconds: 0.0,
    };
    if opts.dry_run {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let by_node: BTreeMap<String, Observed> = report
        .observed
        .iter()
        .map(|o| (o.node.clone(), o.clone()))
        .collect();
    for phase in Phase::ALL.into_iter().filter(|p| *p != Phase::Preflight) {
        let steps: Vec<&Step> = plan.phase(phase).collect();
        let phase_hosts = hosts_in_phase(spec, rendered, phase);
        if steps.is_empty() && phase_hosts.is_empty() {
            continue;
        }
        let t0 = Instant::now();
        progress.phase(phase, steps.len());
        let mut pr = PhaseReport {
            phase,
            hosts: steps.iter().map(|s| s.node.clone()).collect(),
            files_changed: 0,
            started: vec![],
            restarted: vec![],
            reloaded: vec![],
            notes: vec![],
            gate: None,
            seconds: 0.0,
        };
        // Control planes join one at a time, each behind its own API server's /livez
        // (kubeadm's rule); the first failure stops the joins after it.
        let control_planes = phase == Phase::ControlPlane;
        let joined_failed: std::sync::Mutex<Option<(String, String)>> = std::sync::Mutex::new(None);
        let parallelism = if control_planes { 1 } else { opts.parallelism };
        let results = for_each_host(steps.clone(), parallelism, |step| {
            if control_planes
                && let Some((node, _)) = joined_failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
            {
                return Ok(StepDone {
                    notes: vec![format!("not joined: {node} failed its /livez gate")],
                    ..StepDone::default()
                });
            }
            let t = hosts
                .get(&step.node)
                .ok_or_else(|| TransportError::Invalid {
                    host: step.node.clone(),
                    op: "apply".into(),
                    reason: "no transport".into(),
                })?;
            let o = by_node
                .get(&step.node)
                .ok_or_else(|| TransportError::Invalid {
                    host: step.node.clone(),
                    op: "apply".into(),
                    reason: "not observed".into(),
                })?;
            let done = apply_step(spec, materials, t.as_ref(), o, step, progress)?;
            if control_planes && let Some(node) = spec.node(&step.node) {
                let can_run = !o.missing.contains("kubelet");
                match gate::apiserver_local(node, t.as_ref(), can_run, opts.apiserver_timeout) {
                    GateResult::Failed(detail) => {
                        *joined_failed.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((step.node.clone(), detail));
                    }
                    GateResult::Passed(_) => {
                        progress.host(phase, &step.node, "its API server answers /livez")
                    }
                    GateResult::NotVerifiable(_) => {}
                }
            }
            Ok(done)
        });
        for (step, r) in results {
            match r {
                Ok(done) => {
                    pr.files_changed += step.files.len();
                    pr.started.extend(
                        done.started
                            .into_iter()
                            .map(|u| format!("{}/{u}", step.node)),
                    );
                    pr.restarted.extend(
                        done.restarted
                            .into_iter()
                            .map(|u| format!("{}/{u}", step.node)),
                    );
                    pr.reloaded.extend(
                        done.reloaded
                            .into_iter()
                            .map(|u| format!("{}/{u}", step.node)),
                    );
                    pr.notes.extend(
                        done.notes
                            .into_iter()
                            .map(|n| format!("{}: {n}", step.node)),
                    );
                }
                Err(source) => {
                    return Err(ApplyError::Step {
                        node: step.node.clone(),
                        phase,
                        source,
                    });
                }
            }
        }
        if let Some((node, detail)) = joined_failed
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
        {
            pr.seconds = t0.elapsed().as_secs_f64();
            report.phases.push(pr);
            report.seconds = started.elapsed().as_secs_f64();
            return Err(ApplyError::Gate {
                phase,
                detail: format!("{node}: {detail}; the control planes after it were not joined"),
                report: Box::new(report),
            });
        }
        report.changed |= pr.files_changed > 0
            || !pr.started.is_empty()
            || !pr.restarted.is_empty()
            || !pr.reloaded.is_empty();
        let gate = run_gate(spec, materials, hosts, &by_node, phase, opts);
        if let Some(g) = &gate {
            progress.gate(phase, g);
        }
        pr.gate = gate.clone();
        pr.seconds = t0.elapsed().as_secs_f64();
        report.phases.push(pr);
        if let Some(GateResult::Failed(detail)) = gate {
            report.seconds = started.elapsed().as_secs_f64();
            return Err(ApplyError::Gate {
                phase,
                detail,
                report: Box::new(report),
            });
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The render minus services whose binary the host lacks (lab hosts have no kubelet).
fn without_uninstalled(rendered: &Rendered, observed: &[Observed]) -> (Rendered, Vec<String>) {
    let mut r = rendered.clone();
    let mut skipped = Vec::new();
    for tree in &mut r.hosts {
        let Some(o) = observed.iter().find(|o| o.node == tree.node) else {
            continue;
        };
        tree.services.retain(
            |u| match required_binary(u).filter(|b| o.missing.contains(*b)) {
                Some(bin) => {
                    skipped.push(format!("{}/{u}: {bin} not installed", tree.node));
                    false
                }
                None => true,
            },
        );
    }
    (r, skipped)
}

/// Nodes whose health a phase's gate covers.
fn hosts_in_phase(spec: &Spec, rendered: &Rendered, phase: Phase) -> Vec<String> {
    let names = |f: &dyn Fn(&kubeha_spec::Node) -> bool| {
        spec.nodes
            .iter()
            .filter(|n| f(n))
            .map(|n| n.name.clone())
            .collect::<Vec<_>>()
    };
    match phase {
        Phase::Etcd => names(&|n| spec.is_etcd_member(n)),
        Phase::LoadBalancer => names(&|n| n.has(Role::Lb)),
        Phase::EtcdProxy => rendered
            .hosts
            .iter()
            .filter(|t| kubeha_plan::has_proxy(t))
            .map(|t| t.node.clone())
            .collect(),
        Phase::ControlPlane => names(&|n| n.has(Role::ControlPlane)),
        _ => vec![],
    }
}

fn run_gate(
    spec: &Spec,
    m: &Materials,
    hosts: &Hosts<'_>,
    observed: &BTreeMap<String, Observed>,
    phase: Phase,
    opts: &Options,
) -> Option<GateResult> {
    match phase {
        Phase::Etcd if !spec.etcd_members().is_empty() => {
            Some(gate::etcd(spec, m, opts.gate_timeout))
        }
        Phase::LoadBalancer if spec.load_balancer.is_some() => {
            let lbs: Vec<&dyn Transport> = spec
                .lbs()
                .iter()
                .filter_map(|n| hosts.get(&n.name))
                .map(|t| t.as_ref() as &dyn Transport)
                .collect();
            Some(gate::load_balancer(spec, &lbs, opts.gate_timeout))
        }
        Phase::EtcdProxy => {
            let proxies: Vec<&dyn Transport> = spec
                .control_planes()
                .iter()
                .filter(|n| observed.contains_key(&n.name))
                .filter_map(|n| hosts.get(&n.name))
                .map(|t| t.as_ref() as &dyn Transport)
                .collect();
            if proxies.is_empty() {
                return None;
            }
            let results = for_each_host(proxies, opts.parallelism, |t| {
                Ok::<_, ()>(gate::etcd_proxy(*t, opts.gate_timeout))
            });
            Some(combine(results.into_iter().map(|(t, r)| {
                (
                    t.host().to_string(),
                    r.unwrap_or(GateResult::Failed("internal".into())),
                )
            })))
        }
        Phase::ControlPlane => {
            let first = spec.init_control_plane()?;
            let t = hosts.get(&first.name)?;
            let can_run = observed
                .get(&first.name)
                .is_some_and(|o| !o.missing.contains("kubelet"));
            Some(gate::apiserver(
                spec,
                t.as_ref(),
                can_run,
                opts.apiserver_timeout,
            ))
        }
        Phase::Workers => {
            let missing = spec.nodes_with(Role::Worker).any(|n| {
                observed
                    .get(&n.name)
                    .is_some_and(|o| o.missing.contains("kubelet"))
            });
            missing
                .then(|| GateResult::NotVerifiable("kubelet not installed on the workers".into()))
        }
        _ => None,
    }
}

/// One result from per-host results: failed if any failed.
fn combine(results: impl Iterator<Item = (String, GateResult)>) -> GateResult {
    let (mut ok, mut bad, mut nv) = (vec![], vec![], vec![]);
    for (host, r) in results {
        match r {
            GateResult::Passed(s) => ok.push(format!("{host}: {s}")),
            GateResult::NotVerifiable(s) => nv.push(format!("{host}: {s}")),
            GateResult::Failed(s) => bad.push(format!("{host}: {s}")),
        }
    }
    if !bad.is_empty() {
        GateResult::Failed(bad.join("; "))
    } else if !nv.is_empty() {
        GateResult::NotVerifiable(nv.join("; "))
    } else {
        // "<host>: <what> (<time>)" for every host: say <what> once.
        let what = |x: &String| {
            x.split_once(": ").map_or(x.clone(), |(_, w)| {
                w.split(" (").next().unwrap_or(w).to_string()
            })
        };
        let hosts: Vec<&str> = ok.iter().filter_map(|x| x.split(": ").next()).collect();
        match ok.first().map(what) {
            Some(first) if ok.iter().all(|x| what(x) == first) => {
                GateResult::Passed(format!("{first} on {}", hosts.join(", ")))
            }
            _ => GateResult::Passed(ok.join("; ")),
        }
    }
}

#[derive(Default)]
struct StepDone {
    started: Vec<String>,
    restarted: Vec<String>,
    reloaded: Vec<String>,
    notes: Vec<String>,
}

fn apply_step(
    spec: &Spec,
    m: &Materials,
    t: &dyn Transport,
    o: &Observed,
    step: &Step,
    progress: &dyn Progress,
) -> Result<StepDone, TransportError> {
    let mut done = StepDone::default();
    let mut unit_files_changed = false;
    let mut sysctl_changed = Vec::new();
    let uploads: Vec<UploadFile<'_>> = step
        .files
        .iter()
        .filter(|f| f.change != Change::Mode)
        .map(|f| UploadFile {
            path: &f.path,
            content: f.file.content.as_bytes(),
            mode: f.file.mode,
            owner: &f.file.owner,
        })
        .collect();
    upload_many(t, &uploads, Duration::from_secs(60))?;
    for f in &step.files {
        if f.change == Change::Mode {
            t.run(&Command::new(["chmod", &format!("{:o}", f.file.mode), &f.path]).sudo())?;
            t.run(&Command::new(["chown", &f.file.owner, &f.path]).sudo())?;
        }
        unit_files_changed |= f.path.starts_with("/etc/systemd/system/")
            || f.path.starts_with("/usr/lib/systemd/system/");
        if f.path.starts_with("/etc/sysctl.d/") {
            sysctl_changed.push(f.path.clone());
        }
    }
    if !step.files.is_empty() {
        progress.host(
            step.phase,
            &step.node,
            &format!("{} file(s) written", step.files.len()),
        );
    }
    if unit_files_changed {
        o.manager.reload(t)?;
    }
    let lab = o.manager.is_lab();
    if step.phase == Phase::NodePrep && !step.files.is_empty() {
        if lab {
            done.notes.push("kernel prep (modprobe, sysctl --system, swapoff) skipped: lab hosts share this machine's kernel".into());
        } else {
            let node = spec
                .node(&step.node)
                .ok_or_else(|| TransportError::Invalid {
                    host: step.node.clone(),
                    op: "node prep".into(),
                    reason: "unknown node".into(),
                })?;
            let rendered_ctx = Ctx::new(spec, m);
            for c in kubeha_render::common::prep_commands(rendered_ctx, node) {
                t.run(&Command::new(["sh", "-c", c.as_str()]).sudo())?;
            }
        }
    } else {
        // Per-namespace settings (ip_nonlocal_bind on LBs) apply in the lab too.
        for p in &sysctl_changed {
            t.run(
                &Command::new(["sysctl", "-q", "-p", p.as_str()])
                    .sudo()
                    .allow_failure(),
            )?;
        }
    }
    let mut units: Vec<(&String, UnitAction)> = step
        .start
        .iter()
        .map(|u| (u, UnitAction::Start))
        .chain(step.restart.iter().map(|u| (u, UnitAction::Restart)))
        .chain(step.reload.iter().map(|u| (u, UnitAction::Reload)))
        .collect();
    units.sort_by_key(|(u, _)| start_order(u));
    for (unit, action) in units {
        let what = match action {
            UnitAction::Start => {
                o.manager.start(t, unit)?;
                done.started.push(unit.clone());
                "started"
            }
            UnitAction::Restart => {
                o.manager.restart(t, unit)?;
                done.restarted.push(unit.clone());
                "restarted"
            }
            UnitAction::Reload => {
                o.manager.reload_unit(t, unit)?;
                done.reloaded.push(unit.clone());
                "reloaded"
            }
        };
        progress.host(step.phase, &step.node, &format!("{what} {unit}"));
    }
    Ok(done)
}

#[derive(Debug, Clone, Copy)]
enum UnitAction {
    Start,
    Restart,
    Reload,
}

/// Start order within a host: runtime, proxy, then the rest.
fn start_order(unit: &str) -> u8 {
    match unit {
        "containerd.service" => 0,
        "kubeha-etcd-proxy.service" => 1,
        "haproxy.service" => 2,
        "keepalived.service" => 3,
        "kubelet.service" => 4,
        _ => 5,
    }
}

/// Checks that must pass before anything changes; returns warnings.
fn preflight(
    spec: &Spec,
    observed: &[Observed],
    vip_answers: bool,
) -> Result<Vec<String>, ApplyError> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for o in observed {
        let lab = o.manager.is_lab();
        if o.clock_skew_secs.abs() > 30 {
            problems.push(format!("{}: clock is {}s off this machine's; TLS and etcd need synchronised clocks (enable NTP)", o.node, o.clock_skew_secs));
        } else if o.clock_skew_secs.abs() > 2 {
            warnings.push(format!(
                "{}: clock is {}s off this machine's",
                o.node, o.clock_skew_secs
            ));
        }
        if o.swap_on && !lab {
            warnings.push(format!("{}: swap is on; node prep turns it off", o.node));
        }
        let ports = |unit: &str| -> Vec<u16> {
            match unit {
                "etcd.service" => vec![2379, 2380],
                "haproxy.service" => {
                    let mut p = vec![spec.endpoint.port];
                    p.extend(spec.load_balancer.as_ref().map(|l| l.stats_port));
                    p.extend(spec.load_balancer.as_ref().and_then(|l| l.etcd_port));
                    p
                }
                "kubeha-etcd-proxy.service" => vec![2379],
                _ => vec![],
            }
        };
        for (unit, active) in &o.facts.services {
            if *active {
                continue;
            }
            for p in ports(unit) {
                if o.listening.contains(&p) {
                    problems.push(format!("{}: port {p} is already in use, but {unit} is not running; stop whatever listens there", o.node));
                }
            }
        }
    }
    if let Some(lb) = &spec.load_balancer {
        for n in spec.lbs() {
            if !spec.networking.node_cidr.contains(&n.address) {
                problems.push(format!("{}: LB address {} is outside the VIP's subnet {}; keepalived moves the VIP within one L2 subnet", n.name, n.address, spec.networking.node_cidr));
            }
        }
        let held_by_ours = observed.iter().any(|o| o.addresses.contains(&lb.vip));
        if !held_by_ours && vip_answers {
            problems.push(format!("the VIP {} already answers on port {} but none of the cluster's LBs holds it; another machine uses this address", lb.vip, spec.endpoint.port));
        }
    }
    if problems.is_empty() {
        Ok(warnings)
    } else {
        Err(ApplyError::Preflight { problems })
    }
}

/// Units per host that the run left not running because their binary is missing.
pub fn not_verifiable(report: &Report) -> BTreeSet<String> {
    report
        .phases
        .iter()
        .flat_map(|p| p.notes.iter().cloned())
        .collect()
}
