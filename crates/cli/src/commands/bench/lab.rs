//! `kubeha bench up` and `kubeha bench fanout`: real SSH to lab hosts on this machine (root).
//!
//! `bench up` brings up a lab (the shipped `examples/lab.yaml` unless `-f` names one), runs one
//! converge from empty hosts, then no-op converges with warm SSH connections and one after
//! closing them (cold), and checks that the no-op runs changed nothing. `bench fanout` times
//! first contact + a batched upload + one command on N bare hosts, then the same warm.
//!
//! Both use a scratch state dir and a scratch lab key in a temp dir (never the user's
//! `.kubeha`), and a guard removes the lab on every way out of the function, errors included.
//! A process killed by a signal cannot run the guard; the next run removes the leftovers first.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use kubeha_apply::{Options, Progress, Report, gate::GateResult};
use kubeha_lab::{Lab, LabError, LabOptions};
use kubeha_plan::Phase;
use kubeha_spec::{EndpointHost, Node, Role, Spec, Ssh};
use kubeha_transport::{
    Command, SshTransport, Transport, TransportError, UploadFile, for_each_host, sha256_hex,
    upload_many,
};
use serde::Serialize;

use crate::{args::Global, error::CliError, output::emit, table::Table};

pub(super) const LAB: &str = include_str!("../../../../../examples/lab.yaml");
pub(super) const LAB_PATH: &str = "examples/lab.yaml";
/// The renamed copy measured when a lab named `lab` is already up on this machine.
const RENAMED_NAME: &str = "bench-lab";
const RENAMED_PREFIX: &str = "198.18.250.";
/// Targets printed beside the numbers.
const HEALTHY_TARGET_SECONDS: f64 = 15.0;
const NOOP_TARGET_SECONDS: f64 = 1.0;
/// keepalived elects a master after about 3 advert intervals; kubeha renders `advert_int 1`.
const VRRP_EXPECTED_SECONDS: f64 = 3.0;

/// Fan-out: files per host, bytes per file, where they go.
const FAN_FILES: usize = 20;
const FAN_FILE_BYTES: usize = 2048;
const FAN_DIR: &str = "/var/lib/kubeha-bench";
/// Fan-out labs use 198.18.<FAN_NET0 + i>.0/24, one per size.
const FAN_NET0: u8 = 200;
const FAN_MAX_SIZES: usize = 4;
const FAN_MAX_HOSTS: usize = 240;
pub(super) const FAN_PARALLELISM: usize = 16;

// ───────────────────────────── shared ─────────────────────────────

pub(super) fn require_root(what: &str) -> Result<(), CliError> {
    if kubeha_lab::is_root() {
        return Ok(());
    }
    Err(CliError::Input {
        message: format!(
            "`kubeha bench {what}` needs root: it builds a lab of namespaces with their own sshd"
        ),
        help: format!("run it with sudo: sudo kubeha bench {what}"),
    })
}

/// A failure while measuring (exit 1), naming what it concerns.
pub(super) fn failure(action: &'static str, what: &str, detail: impl Into<String>) -> CliError {
    CliError::Io {
        action,
        path: PathBuf::from(what),
        source: std::io::Error::other(detail.into()),
    }
}

pub(super) fn lab_error(action: &'static str, cluster: &str) -> impl FnOnce(LabError) -> CliError {
    let cluster = cluster.to_string();
    move |e| {
        if e.is_input() {
            CliError::Input {
                message: e.to_string(),
                help: "a lab only uses 198.18.0.0/15 and needs root; start from examples/lab.yaml"
                    .into(),
            }
        } else {
            CliError::Io {
                action,
                path: PathBuf::from(cluster),
                source: std::io::Error::other(e),
            }
        }
    }
}

fn transport_error(e: TransportError) -> CliError {
    CliError::Input {
        message: e.to_string(),
        help: e.help().unwrap_or_default(),
    }
}

pub(super) fn scratch_dir() -> Result<tempfile::TempDir, CliError> {
    tempfile::Builder::new()
        .prefix("kubeha-bench-")
        .tempdir()
        .map_err(CliError::io(
            "create temporary directory",
            std::env::temp_dir(),
        ))
}

/// Removes whatever is left of `spec`'s lab (an earlier run killed by a signal); says so.
pub(super) fn remove_leftovers(spec: &Spec, opts: &LabOptions) -> Result<(), CliError> {
    let id = kubeha_lab::lab_id(&spec.name);
    if Lab::discover(opts).contains(&id) {
        errln!("bench: removing what is left of lab {} ({id})", spec.name);
        Lab::down(spec, opts).map_err(lab_error("remove the leftovers of lab", &spec.name))?;
    }
    Ok(())
}

/// Removes the lab when dropped unless [`LabGuard::down`] already did; closes the SSH
/// control connections first so no client lingers on a vanished host.
pub(super) struct LabGuard<'a> {
    spec: &'a Spec,
    opts: &'a LabOptions,
    pub(super) conns: Vec<SshTransport>,
    armed: bool,
}

impl<'a> LabGuard<'a> {
    pub(super) fn new(spec: &'a Spec, opts: &'a LabOptions) -> Self {
        LabGuard {
            spec,
            opts,
            conns: Vec::new(),
            armed: true,
        }
    }

    fn close(&mut self) {
        let conns = std::mem::take(&mut self.conns);
        for_each_host(conns, FAN_PARALLELISM, |c| c.close());
    }

    /// Removes the lab now; returns the seconds it took.
    pub(super) fn down(mut self) -> Result<f64, CliError> {
        self.armed = false;
        self.close();
        let t = Instant::now();
        Lab::down(self.spec, self.opts).map_err(lab_error("remove the lab of", &self.spec.name))?;
        Ok(t.elapsed().as_secs_f64())
    }
}

impl Drop for LabGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.close();
        match Lab::down(self.spec, self.opts) {
            Ok(_) => errln!("bench: lab {} removed", self.spec.name),
            Err(e) => errln!(
                "bench: could not remove lab {}: {e}; run `sudo kubeha lab down --all`",
                self.spec.name
            ),
        }
    }
}

/// One SSH transport per node, all keeping their state in `state`.
pub(super) fn connections(spec: &Spec, state: &Path) -> Result<Vec<SshTransport>, CliError> {
    spec.nodes
        .iter()
        .map(|n| SshTransport::new(n, state).map_err(transport_error))
        .collect()
}

pub(super) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub(super) fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub(super) fn verdict(value: f64, target: f64) -> &'static str {
    if value <= target { "met" } else { "MISSED" }
}

// ───────────────────────────── bench up ─────────────────────────────

/// Whether the user named a cluster file (`-f`, `--file` or `KUBEHA_FILE`): the global flag
/// has a default, so its value alone cannot tell.
pub(super) fn file_given(g: &Global) -> bool {
    g.file != Path::new("cluster.yaml")
        || std::env::args_os().skip(1).any(|a| {
            let a = a.to_string_lossy();
            a == "--file"
                || a.starts_with("--file=")
                || (a.starts_with("-f") && !a.starts_with("--"))
        })
}

/// The lab to measure, with every node's key moved to `key`. Returns the spec and where it
/// came from.
fn up_spec(g: &Global, key: &Path) -> Result<(Spec, String), CliError> {
    let (mut spec, origin) = if file_given(g) {
        (
            super::super::load_spec(g)?.spec,
            g.file.display().to_string(),
        )
    } else {
        let spec = kubeha_spec::load_str(LAB, Path::new(LAB_PATH))?.spec;
        let taken = Lab::discover(&LabOptions::default()).contains(&kubeha_lab::lab_id(&spec.name));
        if taken {
            errln!(
                "bench: a lab named `{}` is up on this machine (not ours); measuring a renamed copy `{RENAMED_NAME}` on {RENAMED_PREFIX}0/24",
                spec.name
            );
            let text = LAB
                .replacen(
                    &format!("\nname: {}\n", spec.name),
                    &format!("\nname: {RENAMED_NAME}\n"),
                    1,
                )
                .replace("198.18.0.", RENAMED_PREFIX);
            let renamed = kubeha_spec::load_str(&text, Path::new(LAB_PATH))?.spec;
            if renamed.name != RENAMED_NAME
                || renamed
                    .nodes
                    .iter()
                    .any(|n| !n.address.to_string().starts_with(RENAMED_PREFIX))
            {
                return Err(failure(
                    "rename the embedded lab file",
                    LAB_PATH,
                    "the renamed copy still uses the name or subnet of `lab`",
                ));
            }
            (
                renamed,
                format!("{LAB_PATH} (embedded, renamed {RENAMED_NAME}, {RENAMED_PREFIX}0/24)"),
            )
        } else {
            (spec, format!("{LAB_PATH} (embedded)"))
        }
    };
    let key = key
        .to_str()
        .ok_or_else(|| {
            failure(
                "use the scratch key",
                &key.display().to_string(),
                "the temp path is not UTF-8",
            )
        })?
        .to_string();
    for n in &mut spec.nodes {
        n.ssh.key = Some(key.clone());
    }
    kubeha_lab::check_spec(&spec).map_err(lab_error("check the lab of", &spec.name))?;
    Ok((spec, origin))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Phase,
    Host,
    Gate,
}

struct Event {
    at: Instant,
    phase: Phase,
    kind: Kind,
    /// The host of a host event, and whether it reports a unit (re)started.
    node: Option<String>,
    starts_unit: bool,
    gate: Option<GateResult>,
}

/// Records every progress event with its time (and prints them, for the first run).
struct Recorder {
    start: Instant,
    print: bool,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn new(start: Instant, print: bool) -> Self {
        Recorder {
            start,
            print,
            events: Mutex::new(Vec::new()),
        }
    }

    fn push(
        &self,
        phase: Phase,
        kind: Kind,
        node: Option<(&str, &str)>,
        gate: Option<GateResult>,
        text: String,
    ) {
        let at = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if self.print {
            errln!("[{:>5.1}s] {text}", (at - self.start).as_secs_f64());
        }
        events.push(Event {
            at,
            phase,
            kind,
            node: node.map(|(n, _)| n.to_string()),
            starts_unit: node
                .is_some_and(|(_, m)| m.starts_with("started ") || m.starts_with("restarted ")),
            gate,
        });
    }

    fn into_events(self) -> Vec<Event> {
        self.events
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Progress for Recorder {
    fn phase(&self, phase: Phase, hosts: usize) {
        self.push(
            phase,
            Kind::Phase,
            None,
            None,
            format!("── {phase}: {hosts} host(s) to change"),
        );
    }
    fn host(&self, phase: Phase, node: &str, message: &str) {
        self.push(
            phase,
            Kind::Host,
            Some((node, message)),
            None,
            format!("   {phase} {node}: {message}"),
        );
    }
    fn gate(&self, phase: Phase, result: &GateResult) {
        self.push(
            phase,
            Kind::Gate,
            None,
            Some(result.clone()),
            format!("   {phase} gate {}", result.text()),
        );
    }
}

/// When `phase`'s gate passed, and how long it ran: from the phase's last step event (the
/// gate starts once every host of the phase is done) to the gate's result.
fn gate_timing(events: &[Event], phase: Phase) -> Option<(Instant, f64)> {
    let gate = events.iter().find(|e| {
        e.phase == phase && e.kind == Kind::Gate && e.gate.as_ref().is_some_and(GateResult::passed)
    })?;
    let last_work = events
        .iter()
        .filter(|e| e.phase == phase && e.kind != Kind::Gate)
        .map(|e| e.at)
        .max()?;
    Some((gate.at, secs(gate.at.saturating_duration_since(last_work))))
}

/// Time a phase spent starting units, on its slowest host: from the host's first event
/// (files written) to its last unit start. In the lab each start includes the supervisor's
/// 1 s grace period (the unit must stay up that long).
fn start_timing(events: &[Event], phase: Phase) -> Option<f64> {
    let mut per_host: BTreeMap<&str, (Instant, Option<Instant>)> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.phase == phase && e.kind == Kind::Host)
    {
        let Some(node) = e.node.as_deref() else {
            continue;
        };
        let entry = per_host.entry(node).or_insert((e.at, None));
        if e.starts_unit {
            entry.1 = Some(e.at);
        }
    }
    per_host
        .values()
        .filter_map(|(first, last)| last.map(|l| secs(l.saturating_duration_since(*first))))
        .reduce(f64::max)
}

/// The wait a gate reports itself: its text ends in `(<Duration as {:.1?}>)`, the time it
/// polled until the condition held.
fn gate_wait(g: &GateResult) -> Option<f64> {
    let GateResult::Passed(text) = g else {
        return None;
    };
    let inner = text.strip_suffix(')')?;
    let inner = &inner[inner.rfind('(')? + 1..];
    let split = inner.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = inner.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" => 1e-6,
        "ns" => 1e-9,
        _ => return None,
    };
    Some(v * scale)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhaseRow {
    phase: String,
    hosts: usize,
    files: usize,
    started: usize,
    seconds: f64,
    gate: Option<String>,
    /// The wait the gate reports (polling until the condition held).
    gate_wait_seconds: Option<f64>,
    /// The gate from start to result as seen from outside (includes client setup).
    gate_seconds: Option<f64>,
    /// Starting units on the slowest host (lab: includes the supervisor's 1 s grace per unit).
    start_seconds: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FirstRun {
    seconds: f64,
    observe_seconds: f64,
    phases: Vec<PhaseRow>,
    /// From the end of observing to the first phase: preflight (which probes the VIP and
    /// waits out its 0.5 s connect timeout while nothing holds it yet) and planning.
    preflight_plan_seconds: Option<f64>,
    /// Since the start of the converge.
    etcd_gate_passed_at_seconds: Option<f64>,
    lb_gate_passed_at_seconds: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NoopRun {
    /// `warm` (control connections up) or `cold` (closed before the run).
    ssh: &'static str,
    seconds: f64,
    observe_seconds: f64,
    /// The phases' own time (their gates; nothing was applied).
    gates_seconds: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpBench {
    cluster: String,
    source: String,
    hosts: usize,
    parallelism: usize,
    lab_up_seconds: f64,
    pki_render_seconds: f64,
    first_run: FirstRun,
    /// From the start of `Lab::up` until the etcd gate and the LB gate had both passed.
    healthy_etcd_and_vip_seconds: Option<f64>,
    healthy_target_seconds: f64,
    etcd_gate_wait_seconds: Option<f64>,
    lb_gate_wait_seconds: Option<f64>,
    vrrp_expected_seconds: f64,
    noop_runs: Vec<NoopRun>,
    noop_warm_median_seconds: f64,
    noop_cold_seconds: f64,
    noop_target_seconds: f64,
    lab_down_seconds: f64,
}

pub fn up(
    g: &Global,
    parallelism: usize,
    gate_timeout: Duration,
    warm_runs: usize,
) -> Result<ExitCode, CliError> {
    require_root("up")?;
    let scratch = scratch_dir()?;
    let (spec, source) = up_spec(g, &scratch.path().join("lab-key"))?;
    let lab_opts = LabOptions::default();
    let parallelism = parallelism.max(1);
    errln!(
        "bench: lab {} ({} hosts) from {source}; scratch state in {}",
        spec.name,
        spec.nodes.len(),
        scratch.path().display()
    );
    remove_leftovers(&spec, &lab_opts)?;

    let mut guard = LabGuard::new(&spec, &lab_opts);
    let t_lab = Instant::now();
    Lab::up(&spec, &lab_opts).map_err(lab_error("bring up the lab of", &spec.name))?;
    let lab_up_seconds = secs(t_lab.elapsed());
    errln!("bench: lab up in {lab_up_seconds:.2}s");

    let t_pki = Instant::now();
    let state_root = scratch.path().join("state");
    let mut store = kubeha_pki::open(&state_root, &spec.name, kubeha_pki::StoreOptions::default())?;
    let (materials, _) = store.ensure(&spec, time::OffsetDateTime::now_utc())?;
    let rendered = kubeha_render::render(&spec, &materials)?;
    drop(store);
    let pki_render_seconds = secs(t_pki.elapsed());

    let conns = connections(&spec, &state_root.join(&spec.name))?;
    guard.conns = conns.clone();
    let hosts: BTreeMap<String, Box<dyn Transport>> = conns
        .iter()
        .map(|t| {
            (
                t.host().to_string(),
                Box::new(t.clone()) as Box<dyn Transport>,
            )
        })
        .collect();
    let opts = Options {
        parallelism,
        supervisor: super::super::up::supervisor_binary(),
        gate_timeout,
        ..Options::default()
    };

    // One converge from empty hosts.
    let t_first = Instant::now();
    let recorder = Recorder::new(t_lab, true);
    let first = kubeha_apply::converge(&spec, &rendered, &materials, &hosts, &opts, &recorder)?;
    let first_seconds = secs(t_first.elapsed());
    let events = recorder.into_events();
    if !first.changed {
        return Err(failure(
            "measure the first run on",
            &spec.name,
            "the first run changed nothing: the hosts were not empty",
        ));
    }
    let etcd = gate_timing(&events, Phase::Etcd);
    let lb = gate_timing(&events, Phase::LoadBalancer);
    let gate_of = |p: Phase| {
        first
            .phases
            .iter()
            .find(|r| r.phase == p)
            .and_then(|r| r.gate.as_ref())
            .and_then(gate_wait)
    };
    let phases = first
        .phases
        .iter()
        .map(|p| PhaseRow {
            phase: p.phase.to_string(),
            hosts: p.hosts.len(),
            files: p.files_changed,
            started: p.started.len() + p.restarted.len() + p.reloaded.len(),
            seconds: p.seconds,
            gate: p.gate.as_ref().map(GateResult::text),
            gate_wait_seconds: p.gate.as_ref().and_then(gate_wait),
            gate_seconds: gate_timing(&events, p.phase).map(|(_, s)| s),
            start_seconds: start_timing(&events, p.phase),
        })
        .collect();
    let healthy = match (etcd, lb) {
        (Some((e, _)), Some((l, _))) => Some(secs(e.max(l) - t_lab)),
        _ => None,
    };
    let first_run = FirstRun {
        seconds: first_seconds,
        observe_seconds: first.observe_seconds,
        preflight_plan_seconds: events
            .iter()
            .find(|e| e.kind == Kind::Phase)
            .map(|e| secs(e.at.saturating_duration_since(t_first)) - first.observe_seconds),
        phases,
        etcd_gate_passed_at_seconds: etcd.map(|(at, _)| secs(at - t_first)),
        lb_gate_passed_at_seconds: lb.map(|(at, _)| secs(at - t_first)),
    };

    // No-op runs: warm (control connections from the runs before), then cold.
    let mut noop_runs = Vec::new();
    for _ in 0..warm_runs.max(1) {
        noop_runs.push(noop(&spec, &rendered, &materials, &hosts, &opts, "warm")?);
    }
    for_each_host(&conns, FAN_PARALLELISM, |c| c.close());
    noop_runs.push(noop(&spec, &rendered, &materials, &hosts, &opts, "cold")?);
    let noop_warm_median_seconds = median_f64(
        noop_runs
            .iter()
            .filter(|r| r.ssh == "warm")
            .map(|r| r.seconds)
            .collect(),
    );
    let noop_cold_seconds = noop_runs
        .iter()
        .filter(|r| r.ssh == "cold")
        .map(|r| r.seconds)
        .sum();

    drop(hosts);
    let lab_down_seconds = guard.down()?;
    let report = UpBench {
        cluster: spec.name.clone(),
        source,
        hosts: spec.nodes.len(),
        parallelism,
        lab_up_seconds,
        pki_render_seconds,
        etcd_gate_wait_seconds: gate_of(Phase::Etcd),
        lb_gate_wait_seconds: gate_of(Phase::LoadBalancer),
        first_run,
        healthy_etcd_and_vip_seconds: healthy,
        healthy_target_seconds: HEALTHY_TARGET_SECONDS,
        vrrp_expected_seconds: VRRP_EXPECTED_SECONDS,
        noop_runs,
        noop_warm_median_seconds,
        noop_cold_seconds,
        noop_target_seconds: NOOP_TARGET_SECONDS,
        lab_down_seconds,
    };
    emit(g.output, &report, || up_text(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// One converge that must change nothing.
fn noop(
    spec: &Spec,
    rendered: &kubeha_render::Rendered,
    materials: &kubeha_pki::Materials,
    hosts: &BTreeMap<String, Box<dyn Transport>>,
    opts: &Options,
    ssh: &'static str,
) -> Result<NoopRun, CliError> {
    let recorder = Recorder::new(Instant::now(), false);
    let t = Instant::now();
    let r: Report = kubeha_apply::converge(spec, rendered, materials, hosts, opts, &recorder)?;
    let seconds = secs(t.elapsed());
    if r.changed || !r.plan.is_empty() {
        let what: Vec<String> = r
            .plan
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{} {}: {} file(s), start {:?}, restart {:?}",
                    s.phase,
                    s.node,
                    s.files.len(),
                    s.start,
                    s.restart
                )
            })
            .collect();
        return Err(failure(
            "verify the no-op run on",
            &spec.name,
            format!(
                "a run with nothing to do changed something ({ssh} ssh): {}",
                what.join("; ")
            ),
        ));
    }
    Ok(NoopRun {
        ssh,
        seconds,
        observe_seconds: r.observe_seconds,
        gates_seconds: r.phases.iter().map(|p| p.seconds).sum(),
    })
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}s"))
}

fn up_text(r: &UpBench) -> String {
    let mut s = format!(
        "bench up: lab {} — {} hosts from {}, parallelism {}\n\n",
        r.cluster, r.hosts, r.source, r.parallelism
    );
    let mut t = Table::new([
        "PHASE",
        "HOSTS",
        "FILES",
        "STARTED",
        "TIME",
        "UNIT STARTS",
        "GATE WAIT",
        "GATE",
    ]);
    for p in &r.first_run.phases {
        t.row([
            p.phase.clone(),
            p.hosts.to_string(),
            p.files.to_string(),
            p.started.to_string(),
            format!("{:.2}s", p.seconds),
            opt_s(p.start_seconds),
            opt_s(p.gate_wait_seconds),
            p.gate.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    s.push_str(&t.render());
    s.push('\n');
    let mut t = Table::new(["STEP", "TIME", "TARGET", ""]);
    t.row([
        "lab up".to_string(),
        format!("{:.2}s", r.lab_up_seconds),
        String::new(),
        String::new(),
    ]);
    t.row([
        "pki + render".to_string(),
        format!("{:.2}s", r.pki_render_seconds),
        String::new(),
        String::new(),
    ]);
    t.row([
        "first converge (from empty hosts)".to_string(),
        format!("{:.2}s", r.first_run.seconds),
        String::new(),
        format!("observe {:.2}s", r.first_run.observe_seconds),
    ]);
    t.row([
        "  etcd gate passed after".to_string(),
        opt_s(r.first_run.etcd_gate_passed_at_seconds),
        String::new(),
        "since converge start".into(),
    ]);
    t.row([
        "  LB gate passed after".to_string(),
        opt_s(r.first_run.lb_gate_passed_at_seconds),
        String::new(),
        "since converge start".into(),
    ]);
    t.row([
        "lab up → healthy etcd + VIP".to_string(),
        opt_s(r.healthy_etcd_and_vip_seconds),
        format!("≤ {:.0}s", r.healthy_target_seconds),
        r.healthy_etcd_and_vip_seconds
            .map_or("-", |v| verdict(v, r.healthy_target_seconds))
            .into(),
    ]);
    t.row([
        "  inherent: etcd gate wait".to_string(),
        opt_s(r.etcd_gate_wait_seconds),
        String::new(),
        "members healthy + one leader".into(),
    ]);
    t.row([
        "  inherent: LB gate wait".to_string(),
        opt_s(r.lb_gate_wait_seconds),
        String::new(),
        format!(
            "VRRP election, ~3 × advert_int 1s ≈ {:.0}s",
            r.vrrp_expected_seconds
        ),
    ]);
    for (i, n) in r.noop_runs.iter().enumerate() {
        t.row([
            format!("no-op up #{} ({} ssh)", i + 1, n.ssh),
            format!("{:.2}s", n.seconds),
            String::new(),
            format!(
                "observe {:.2}s, gates {:.2}s",
                n.observe_seconds, n.gates_seconds
            ),
        ]);
    }
    t.row([
        "no-op up, warm ssh (median)".to_string(),
        format!("{:.2}s", r.noop_warm_median_seconds),
        format!("≤ {:.0}s", r.noop_target_seconds),
        verdict(r.noop_warm_median_seconds, r.noop_target_seconds).into(),
    ]);
    t.row([
        "no-op up, cold ssh".to_string(),
        format!("{:.2}s", r.noop_cold_seconds),
        format!("≤ {:.0}s", r.noop_target_seconds),
        verdict(r.noop_cold_seconds, r.noop_target_seconds).into(),
    ]);
    t.row([
        "lab down".to_string(),
        format!("{:.2}s", r.lab_down_seconds),
        String::new(),
        String::new(),
    ]);
    s.push_str(&t.render());
    if r.healthy_etcd_and_vip_seconds.is_some() {
        let phase = |name: &str| r.first_run.phases.iter().find(|p| p.phase == name);
        let mut parts = vec![
            format!("lab up {:.2}", r.lab_up_seconds),
            format!("pki+render {:.2}", r.pki_render_seconds),
            format!("observe (first contact) {:.2}", r.first_run.observe_seconds),
            format!(
                "preflight+plan {}",
                r.first_run
                    .preflight_plan_seconds
                    .map_or("-".into(), |v| format!("{v:.2}"))
            ),
        ];
        for name in ["node-prep", "etcd", "load-balancer"] {
            if let Some(p) = phase(name) {
                let mut detail = Vec::new();
                if let Some(v) = p.start_seconds {
                    detail.push(format!("unit starts {v:.2}"));
                }
                if let Some(v) = p.gate_wait_seconds {
                    detail.push(format!("gate wait {v:.2}"));
                }
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", detail.join(", "))
                };
                parts.push(format!("{name} {:.2}{detail}", p.seconds));
            }
        }
        s.push_str(&format!(
            "healthy etcd + VIP = {} (seconds)\n",
            parts.join(" + ")
        ));
        s.push_str("unit starts: the lab supervisor waits 1 s after each start to see the unit stay up (systemd hosts do not)\n");
    }
    s.push_str("no-op runs changed nothing (checked: no plan step, nothing started or written)\n");
    s
}

// ───────────────────────────── bench fanout ─────────────────────────────

/// `n` bare hosts (workers) at 198.18.<net>.<10+i> on a /24 of their own, cluster `fanout-<n>`,
/// built from the lab example without validation (no etcd, no LB: nothing but sshd).
fn fanout_spec(base: &Spec, n: usize, net: u8, key: &str) -> Result<Spec, CliError> {
    let mut spec = base.clone();
    spec.name = format!("fanout-{n}");
    spec.networking.node_cidr = format!("198.18.{net}.0/24")
        .parse()
        .map_err(|e| failure("build the fan-out lab", &spec.name, format!("{e}")))?;
    spec.load_balancer = None;
    spec.metallb = None;
    spec.endpoint.host = EndpointHost::Ip(Ipv4Addr::new(198, 18, net, 250).into());
    spec.nodes = (0..n)
        .map(|i| Node {
            name: format!("wn-{i:03}"),
            address: Ipv4Addr::new(198, 18, net, 10 + i as u8).into(),
            roles: [Role::Worker].into(),
            ssh: Ssh {
                user: "root".into(),
                port: 22,
                key: Some(key.to_string()),
            },
            labels: Default::default(),
            taints: vec![],
            lb_priority: None,
        })
        .collect();
    kubeha_lab::check_spec(&spec).map_err(lab_error("check the lab of", &spec.name))?;
    Ok(spec)
}

/// One file to upload: path and content.
type Payload = (String, Vec<u8>);

/// `FAN_FILE_BYTES` of text that differ per seed.
fn content(seed: &str) -> Vec<u8> {
    let mut out = String::with_capacity(FAN_FILE_BYTES + 64);
    let mut h = sha256_hex(seed.as_bytes());
    while out.len() < FAN_FILE_BYTES {
        out.push_str(&h);
        h = sha256_hex(h.as_bytes());
    }
    out.truncate(FAN_FILE_BYTES);
    out.into_bytes()
}

/// Uploads `FAN_FILES` files to every host in one batch each and runs `sha256sum` on them,
/// `parallelism` hosts at once; checks every digest. Returns the wall-clock seconds.
fn fan_round(
    cluster: &str,
    conns: &[SshTransport],
    parallelism: usize,
    tag: &str,
) -> Result<Round, CliError> {
    let payloads: Vec<Vec<Payload>> = conns
        .iter()
        .map(|t| {
            (0..FAN_FILES)
                .map(|j| {
                    (
                        format!("{FAN_DIR}/file-{j:02}"),
                        content(&format!("{cluster}/{tag}/{}/{j}", t.host())),
                    )
                })
                .collect()
        })
        .collect();
    let expected: Vec<String> = payloads
        .iter()
        .map(|fs| {
            fs.iter()
                .map(|(p, c)| format!("{}  {p}\n", sha256_hex(c)))
                .collect()
        })
        .collect();
    let items: Vec<(&SshTransport, &Vec<Payload>)> = conns.iter().zip(&payloads).collect();
    let cpu0 = cpu_sample();
    let t = Instant::now();
    let results = for_each_host(items, parallelism, |(t, files)| {
        let t0 = Instant::now();
        let uploads: Vec<UploadFile<'_>> = files
            .iter()
            .map(|(path, c)| UploadFile {
                path,
                content: c,
                mode: 0o644,
                owner: "root:root",
            })
            .collect();
        upload_many(*t, &uploads, Duration::from_secs(60))?;
        let t1 = Instant::now();
        let out =
            t.run(&Command::new(["sha256sum"]).args(files.iter().map(|(p, _)| p.as_str())))?;
        Ok::<_, TransportError>((out.stdout_lossy().into_owned(), t1 - t0, t1.elapsed()))
    });
    let seconds = secs(t.elapsed());
    let cpu_busy_pct = cpu0.zip(cpu_sample()).and_then(|((b0, t0), (b1, t1))| {
        (t1 > t0).then(|| 100.0 * b1.saturating_sub(b0) as f64 / (t1 - t0) as f64)
    });
    let mut bad = Vec::new();
    let (mut uploads, mut commands) = (Vec::new(), Vec::new());
    for (((t, _), r), want) in results.iter().zip(&expected) {
        match r {
            Ok((got, up, cmd)) if got == want => {
                uploads.push(*up);
                commands.push(*cmd);
            }
            Ok((got, _, _)) => bad.push(format!(
                "{}: sha256sum of the uploaded files differs: {}",
                t.host(),
                got.trim()
            )),
            Err(e) => bad.push(format!("{}: {}", t.host(), kubeha_etcd::error_chain(e))),
        }
    }
    if !bad.is_empty() {
        return Err(failure(
            "fan out to lab",
            cluster,
            format!(
                "{} of {} host(s) failed ({tag}): {}",
                bad.len(),
                conns.len(),
                bad.join("; ")
            ),
        ));
    }
    Ok(Round {
        seconds,
        upload_ms: super::median(uploads),
        command_ms: super::median(commands),
        cpu_busy_pct,
    })
}

/// One fan-out round: wall time, per-host medians, and how busy this machine's CPUs were.
struct Round {
    seconds: f64,
    upload_ms: f64,
    command_ms: f64,
    cpu_busy_pct: Option<f64>,
}

/// (busy, total) jiffies of all CPUs from `/proc/stat`; busy excludes idle and iowait.
fn cpu_sample() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FanRow {
    hosts: usize,
    cluster: String,
    /// `16` or `N`: the parallelism asked for; `at_once` is what it meant for this lab.
    series: &'static str,
    at_once: usize,
    lab_up_seconds: f64,
    cold_seconds: f64,
    warm_seconds: f64,
    cold_ms_per_host: f64,
    warm_ms_per_host: f64,
    /// This row's time over the smallest lab's in the same series.
    cold_growth: f64,
    warm_growth: f64,
    /// Per-host medians: the batched upload (cold: includes connecting and pinning the host
    /// key) and the `sha256sum` command.
    cold_upload_ms: f64,
    cold_command_ms: f64,
    warm_upload_ms: f64,
    warm_command_ms: f64,
    /// This machine's CPUs busy during the round (all processes: the lab's sshd and shells
    /// run on the same CPUs as kubeha's ssh clients).
    cold_cpu_busy_pct: Option<f64>,
    warm_cpu_busy_pct: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FanBench {
    files_per_host: usize,
    bytes_per_file: usize,
    rows: Vec<FanRow>,
    lab_down_seconds: Vec<f64>,
}

pub fn fanout(g: &Global, sizes: &[usize]) -> Result<ExitCode, CliError> {
    require_root("fanout")?;
    let bad_sizes = || CliError::Input {
        message: format!(
            "--hosts {sizes:?}: give 1 to {FAN_MAX_SIZES} distinct sizes, each 1..={FAN_MAX_HOSTS}"
        ),
        help: "e.g. --hosts 5,10,25,50".into(),
    };
    let mut distinct = sizes.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if sizes.is_empty()
        || sizes.len() > FAN_MAX_SIZES
        || distinct.len() != sizes.len()
        || sizes.iter().any(|n| !(1..=FAN_MAX_HOSTS).contains(n))
    {
        return Err(bad_sizes());
    }
    let base = kubeha_spec::load_str(LAB, Path::new(LAB_PATH))?.spec;
    let scratch = scratch_dir()?;
    let key = scratch.path().join("lab-key");
    let key = key
        .to_str()
        .ok_or_else(|| {
            failure(
                "use the scratch key",
                &key.display().to_string(),
                "the temp path is not UTF-8",
            )
        })?
        .to_string();
    let lab_opts = LabOptions::default();
    let mut rows = Vec::new();
    let mut downs = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let spec = fanout_spec(&base, n, FAN_NET0 + i as u8, &key)?;
        remove_leftovers(&spec, &lab_opts)?;
        let mut guard = LabGuard::new(&spec, &lab_opts);
        let t = Instant::now();
        Lab::up(&spec, &lab_opts).map_err(lab_error("bring up the lab of", &spec.name))?;
        let lab_up_seconds = secs(t.elapsed());
        errln!(
            "bench: lab {} ({n} hosts, 198.18.{}.0/24) up in {lab_up_seconds:.2}s",
            spec.name,
            FAN_NET0 + i as u8
        );
        for (series, p) in [("16", FAN_PARALLELISM), ("N", n)] {
            // A state dir of its own: no pinned host key, no control socket, true first contact.
            let conns = connections(
                &spec,
                &scratch.path().join(format!("state-{}-{series}", spec.name)),
            )?;
            guard.conns.extend(conns.iter().cloned());
            let cold = fan_round(&spec.name, &conns, p, &format!("{series}-cold"))?;
            let warm = fan_round(&spec.name, &conns, p, &format!("{series}-warm"))?;
            guard.close();
            errln!(
                "bench: {n} hosts, {} at once: cold {:.2}s, warm {:.2}s",
                p.min(n),
                cold.seconds,
                warm.seconds
            );
            rows.push(FanRow {
                hosts: n,
                cluster: spec.name.clone(),
                series,
                at_once: p.min(n),
                lab_up_seconds,
                cold_seconds: cold.seconds,
                warm_seconds: warm.seconds,
                cold_ms_per_host: cold.seconds * 1000.0 / n as f64,
                warm_ms_per_host: warm.seconds * 1000.0 / n as f64,
                cold_growth: 1.0,
                warm_growth: 1.0,
                cold_upload_ms: cold.upload_ms,
                cold_command_ms: cold.command_ms,
                warm_upload_ms: warm.upload_ms,
                warm_command_ms: warm.command_ms,
                cold_cpu_busy_pct: cold.cpu_busy_pct,
                warm_cpu_busy_pct: warm.cpu_busy_pct,
            });
        }
        downs.push(guard.down()?);
    }
    for series in ["16", "N"] {
        let Some((c0, w0)) = rows
            .iter()
            .filter(|r| r.series == series)
            .min_by_key(|r| r.hosts)
            .map(|r| (r.cold_seconds, r.warm_seconds))
        else {
            continue;
        };
        for r in rows.iter_mut().filter(|r| r.series == series) {
            r.cold_growth = r.cold_seconds / c0;
            r.warm_growth = r.warm_seconds / w0;
        }
    }
    let report = FanBench {
        files_per_host: FAN_FILES,
        bytes_per_file: FAN_FILE_BYTES,
        rows,
        lab_down_seconds: downs,
    };
    emit(g.output, &report, || fan_text(&report))?;
    Ok(ExitCode::SUCCESS)
}

fn fan_text(r: &FanBench) -> String {
    let mut t = Table::new([
        "HOSTS",
        "PARALLELISM",
        "AT ONCE",
        "LAB UP",
        "COLD",
        "WARM",
        "COLD/HOST",
        "WARM/HOST",
        "COLD GROWTH",
        "WARM GROWTH",
    ]);
    for row in &r.rows {
        t.row([
            row.hosts.to_string(),
            row.series.to_string(),
            row.at_once.to_string(),
            format!("{:.2}s", row.lab_up_seconds),
            format!("{:.2}s", row.cold_seconds),
            format!("{:.2}s", row.warm_seconds),
            format!("{:.1} ms", row.cold_ms_per_host),
            format!("{:.1} ms", row.warm_ms_per_host),
            format!("×{:.2}", row.cold_growth),
            format!("×{:.2}", row.warm_growth),
        ]);
    }
    let mut s = t.render();
    s.push('\n');
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}%"));
    let mut t = Table::new([
        "HOSTS",
        "PARALLELISM",
        "COLD UPLOAD (MEDIAN/HOST)",
        "COLD SHA256SUM",
        "WARM UPLOAD",
        "WARM SHA256SUM",
        "CPU BUSY COLD",
        "CPU BUSY WARM",
    ]);
    for row in &r.rows {
        t.row([
            row.hosts.to_string(),
            row.series.to_string(),
            format!("{:.0} ms", row.cold_upload_ms),
            format!("{:.0} ms", row.cold_command_ms),
            format!("{:.0} ms", row.warm_upload_ms),
            format!("{:.0} ms", row.warm_command_ms),
            pct(row.cold_cpu_busy_pct),
            pct(row.warm_cpu_busy_pct),
        ]);
    }
    s.push_str(&t.render());
    s.push_str(&format!(
        "CPU busy: all of this machine's {} CPU(s), every process (the lab hosts' sshd and shells share them with kubeha)\n",
        std::thread::available_parallelism().map_or(0, usize::from)
    ));
    s.push_str(&format!(
        "per host: {} files of {} bytes in one upload + one `sha256sum` (every digest checked); cold = first contact (new host key, new control connection), warm = the same again\n",
        r.files_per_host, r.bytes_per_file
    ));
    for series in ["16", "N"] {
        let of: Vec<&FanRow> = r.rows.iter().filter(|x| x.series == series).collect();
        if let (Some(a), Some(b)) = (
            of.iter().min_by_key(|x| x.hosts),
            of.iter().max_by_key(|x| x.hosts),
        ) && a.hosts != b.hosts
        {
            s.push_str(&format!(
                "parallelism {series}: {} → {} hosts (×{:.1}): cold ×{:.2} ({:.2}s → {:.2}s), warm ×{:.2} ({:.2}s → {:.2}s)\n",
                a.hosts,
                b.hosts,
                b.hosts as f64 / a.hosts as f64,
                b.cold_growth / a.cold_growth,
                a.cold_seconds,
                b.cold_seconds,
                b.warm_growth / a.warm_growth,
                a.warm_seconds,
                b.warm_seconds
            ));
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gate_wait_reads_the_duration_a_gate_reports() {
        let ok = |s: &str| GateResult::Passed(s.into());
        assert_eq!(
            gate_wait(&ok("3/3 members healthy, leader ab (1.1s)")),
            Some(1.1)
        );
        let ms = gate_wait(&ok("cp-1: etcd healthy through 127.0.0.1:2379 (60.4ms)")).unwrap();
        assert!((ms - 0.0604).abs() < 1e-9);
        assert_eq!(gate_wait(&ok("lb-1 holds 198.18.0.100 (0ns)")), Some(0.0));
        assert_eq!(gate_wait(&ok("no duration")), None);
        assert_eq!(gate_wait(&GateResult::Failed("x (1.0s)".into())), None);
    }

    #[test]
    fn fanout_labs_obey_the_lab_network_rule() {
        let base = kubeha_spec::load_str(LAB, Path::new(LAB_PATH))
            .unwrap()
            .spec;
        for (i, n) in [5, 10, 25, 50, FAN_MAX_HOSTS].into_iter().enumerate() {
            let spec = fanout_spec(&base, n, FAN_NET0 + i as u8, "/tmp/k").unwrap();
            assert_eq!(spec.nodes.len(), n);
            assert_eq!(spec.name, format!("fanout-{n}"));
            assert!(spec.nodes.iter().all(|x| {
                x.address
                    .to_string()
                    .starts_with(&format!("198.18.{}.", FAN_NET0 + i as u8))
            }));
        }
    }

    #[test]
    fn renamed_lab_copy_moves_name_and_subnet() {
        let text = LAB
            .replacen("\nname: lab\n", &format!("\nname: {RENAMED_NAME}\n"), 1)
            .replace("198.18.0.", RENAMED_PREFIX);
        let spec = kubeha_spec::load_str(&text, Path::new(LAB_PATH))
            .unwrap()
            .spec;
        assert_eq!(spec.name, RENAMED_NAME);
        assert!(
            spec.nodes
                .iter()
                .all(|n| n.address.to_string().starts_with(RENAMED_PREFIX))
        );
        kubeha_lab::check_spec(&spec).unwrap();
    }

    #[test]
    fn content_is_the_size_asked_and_differs_per_seed() {
        assert_eq!(content("a").len(), FAN_FILE_BYTES);
        assert_ne!(content("a"), content("b"));
    }
}
