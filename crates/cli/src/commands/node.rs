//! `kubeha node add|remove|replace` and `kubeha reset`: one node at a time, driven by the
//! cluster file, always ending in a state `kubeha up` agrees with.
//!
//! Safety rules (design.md): etcd members join as learners with `existing` state and the
//! exact `--initial-cluster` (guide 003's "member count is unequal" cannot happen), a
//! removal that would lose quorum is refused with the arithmetic unless `--force`, a data
//! dir is only wiped once no started member stands for it, and a dead host never blocks:
//! every cluster-side step of a removal goes through the other members, with bounded
//! timeouts. Exit status: 0 done, 1 failed, 2 refused before anything changed.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::IsTerminal,
    process::ExitCode,
    sync::Mutex,
    time::{Duration, Instant},
};

use kubeha_apply::{
    Options, Progress, ServiceManager,
    gate::{self, GateResult},
    membership,
};
use kubeha_etcd::{Client, EtcdError, Member, error_chain};
use kubeha_pki::Materials;
use kubeha_plan::Phase;
use kubeha_render::{Ctx, HostTree, Rendered, etcd::ENV_PATH};
use kubeha_spec::{EtcdDeployment, Node, Spec};
use kubeha_transport::{
    Command, SshTransport, Transport, TransportError, UploadFile, for_each_host, upload_many,
};
use serde::Serialize;

use crate::{
    args::{Global, NodeCommand, ResetArgs},
    error::{CliError, EXIT_FAILURE},
    output::emit,
    table::Table,
};

/// Per-request bound on etcd calls: a dead member costs at most this.
const ETCD_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on the SSH probe that decides whether a host answers.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a membership change is retried while etcd says "unhealthy cluster", or while
/// the members elect a new leader (a leader lost mid-change answers nothing, or "leader
/// changed", and its followers need an election timeout or two to agree on the next one).
const RECONFIG_RETRY: Duration = Duration::from_secs(30);

type Hosts = BTreeMap<String, Box<dyn Transport>>;

/// Why a command stopped.
enum Fail {
    /// Refused before anything changed (exit 2).
    Refused { message: String, help: String },
    /// Ran and could not finish (exit 1).
    Failed { message: String, help: String },
}

fn failed(message: impl Into<String>) -> Fail {
    Fail::Failed {
        message: message.into(),
        help: String::new(),
    }
}

fn etcd_failed(doing: &str) -> impl FnOnce(EtcdError) -> Fail + '_ {
    move |e| failed(format!("cannot {doing}: {}", error_chain(&e)))
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct StepLine {
    seconds: f64,
    node: String,
    what: String,
}

/// Progress lines on stderr, also kept for the report.
struct Log {
    start: Instant,
    steps: Mutex<Vec<StepLine>>,
}

impl Log {
    fn say(&self, node: &str, what: impl Into<String>) {
        let what = what.into();
        let seconds = self.start.elapsed().as_secs_f64();
        progress!("[{seconds:>5.1}s] {node}: {what}");
        if let Ok(mut s) = self.steps.lock() {
            s.push(StepLine {
                seconds: (seconds * 10.0).round() / 10.0,
                node: node.to_string(),
                what,
            });
        }
    }

    fn steps(&self) -> Vec<StepLine> {
        self.steps.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Progress for Log {
    fn phase(&self, phase: Phase, hosts: usize) {
        self.say("up", format!("── {phase}: {hosts} host(s) to change"));
    }
    fn host(&self, phase: Phase, node: &str, message: &str) {
        self.say(node, format!("{phase}: {message}"));
    }
    fn gate(&self, phase: Phase, result: &GateResult) {
        self.say("up", format!("{phase} gate {}", result.text()));
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    command: String,
    nodes: Vec<String>,
    ok: bool,
    steps: Vec<StepLine>,
    /// What could not be cleaned (unreachable hosts), per node.
    not_cleaned: Vec<String>,
    warnings: Vec<String>,
    /// What the user does next.
    next: Vec<String>,
    seconds: f64,
}

struct Cx<'a> {
    g: &'a Global,
    spec: &'a Spec,
    source: &'a str,
    materials: Materials,
    rendered: Rendered,
    hosts: Hosts,
    log: Log,
    not_cleaned: Mutex<Vec<String>>,
    warnings: Mutex<Vec<String>>,
    next: Mutex<Vec<String>>,
}

impl Cx<'_> {
    fn tree(&self, node: &str) -> Result<&HostTree, Fail> {
        self.rendered
            .hosts
            .iter()
            .find(|t| t.node == node)
            .ok_or_else(|| failed(format!("nothing rendered for {node}")))
    }

    fn host(&self, node: &str) -> Result<&dyn Transport, Fail> {
        self.hosts
            .get(node)
            .map(|t| t.as_ref())
            .ok_or_else(|| failed(format!("no SSH transport for {node}")))
    }

    fn push(list: &Mutex<Vec<String>>, s: String) {
        if let Ok(mut l) = list.lock() {
            l.push(s);
        }
    }

    /// An etcd client over the cluster file's members other than `exclude`.
    fn etcd(&self, exclude: Option<&str>) -> Result<Client, Fail> {
        let c = gate::etcd_client(self.spec, &self.materials, ETCD_TIMEOUT).map_err(failed)?;
        let eps: Vec<String> = self
            .spec
            .etcd_members()
            .iter()
            .filter(|n| Some(n.name.as_str()) != exclude)
            .map(|n| Spec::etcd_client_url(n))
            .collect();
        if eps.is_empty() {
            return Err(Fail::Refused {
                message: "no other etcd member in the cluster file to ask".into(),
                help: String::new(),
            });
        }
        Ok(c.with_endpoints(eps))
    }

    fn converge(&self, timeout: Duration) -> Result<(), Fail> {
        self.log.say(
            "up",
            "converging every host to the cluster file (as `kubeha up`)",
        );
        let opts = Options {
            supervisor: super::up::supervisor_binary(),
            gate_timeout: timeout,
            ..Options::default()
        };
        match kubeha_apply::converge(
            self.spec,
            &self.rendered,
            &self.materials,
            &self.hosts,
            &opts,
            &self.log,
        ) {
            Ok(r) => {
                for w in r.warnings {
                    Self::push(&self.warnings, w);
                }
                self.log.say(
                    "up",
                    if r.changed {
                        "converged"
                    } else {
                        "no changes: every host already matched"
                    },
                );
                Ok(())
            }
            Err(e) => Err(Fail::Failed {
                message: format!("kubeha up failed: {}", error_chain(&e)),
                help: "fix what it names and run `kubeha up`".into(),
            }),
        }
    }
}

pub fn run(g: &Global, c: &NodeCommand) -> Result<ExitCode, CliError> {
    let (name, what) = match c {
        NodeCommand::Add { name, .. } => (name, "node add"),
        NodeCommand::Remove { name, .. } => (name, "node remove"),
        NodeCommand::Replace { name, .. } => (name, "node replace"),
    };
    if let NodeCommand::Remove {
        name,
        force,
        drain_timeout,
        dry_run: true,
        ..
    } = c
    {
        return dry_run(g, "node remove", std::slice::from_ref(name), |p| {
            plan_remove(p, name, *force, *drain_timeout)
        });
    }
    with_cx(g, what, std::slice::from_ref(name), |cx| match c {
        NodeCommand::Add {
            name,
            timeout,
            new_host_key,
        } => add(cx, name, *new_host_key, Duration::from_secs(*timeout)),
        NodeCommand::Remove {
            name,
            force,
            drain_timeout,
            kubeconfig,
            ..
        } => remove(
            cx,
            name,
            *force,
            Duration::from_secs(*drain_timeout),
            kubeconfig.as_deref(),
        ),
        NodeCommand::Replace {
            name,
            address,
            timeout,
            force,
            replaces,
            new_host_key,
        } => replace(
            cx,
            name,
            &ReplaceOptions {
                address: *address,
                force: *force,
                replaces: replaces.as_deref(),
                new_host_key: *new_host_key,
                timeout: Duration::from_secs(*timeout),
            },
        ),
    })
}

pub fn reset(g: &Global, a: &ResetArgs) -> Result<ExitCode, CliError> {
    let loaded = super::load_spec(g)?;
    let spec = &loaded.spec;
    let nodes: Vec<String> = if a.all {
        spec.nodes.iter().map(|n| n.name.clone()).collect()
    } else {
        a.nodes.clone()
    };
    if nodes.is_empty() {
        return Err(CliError::Input {
            message: "name the nodes to reset, or --all".into(),
            help: "kubeha reset wn-1 --yes".into(),
        });
    }
    if let Some(bad) = nodes.iter().find(|n| spec.node(n).is_none()) {
        return Err(CliError::Input {
            message: format!("no node {bad:?} in the cluster file"),
            help: format!(
                "nodes: {}",
                spec.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if a.dry_run {
        return dry_run(g, "reset", &nodes, |p| {
            plan_reset(p, &nodes, a.all);
            Ok(())
        });
    }
    if !a.yes {
        confirm(&nodes, &spec.etcd.data_dir)?;
    }
    with_cx(g, "reset", &nodes, |cx| reset_hosts(cx, &nodes, a.all))
}

/// What `--dry-run` prints: the steps the command would take, in order. Nothing in it was
/// done: no host was contacted and the state dir was not touched.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DryRun {
    command: String,
    nodes: Vec<String>,
    dry_run: bool,
    steps: Vec<PlannedStep>,
    warnings: Vec<String>,
    next: Vec<String>,
}

#[derive(Debug, Serialize)]
struct PlannedStep {
    node: String,
    would: String,
}

/// The offline view a dry run plans from: the cluster file and what kubeha renders for it.
struct Planner<'a> {
    spec: &'a Spec,
    source: &'a str,
    file: &'a std::path::Path,
    rendered: Rendered,
    out: DryRun,
}

impl Planner<'_> {
    fn step(&mut self, node: &str, would: impl Into<String>) {
        self.out.steps.push(PlannedStep {
            node: node.to_string(),
            would: would.into(),
        });
    }

    /// Stop the host's services, then remove kubeha's paths there (as `clean_host`).
    fn clean(&mut self, node: &str) {
        let Some(tree) = self.rendered.hosts.iter().find(|t| t.node == node) else {
            return;
        };
        let services = membership::stop_order(tree);
        let paths = membership::reset_paths(self.spec, tree);
        if !services.is_empty() {
            let s = format!("stop {} (those running)", services.join(", "));
            self.step(node, s);
        }
        let s = format!("remove {} path(s): {}", paths.len(), paths.join(" "));
        self.step(node, s);
    }
}

/// Runs `f` on an offline [`Planner`] and prints the plan. The certificates rendering needs
/// are issued into a scratch copy of the state dir, so the real one stays as it is.
fn dry_run(
    g: &Global,
    command: &str,
    nodes: &[String],
    f: impl FnOnce(&mut Planner<'_>) -> Result<(), Fail>,
) -> Result<ExitCode, CliError> {
    let loaded = super::load_spec(g)?;
    let spec = &loaded.spec;
    let rendered = {
        let (_scratch, mut store) = super::up::scratch_store(g, &spec.name)?;
        let (materials, _) = store.ensure(spec, time::OffsetDateTime::now_utc())?;
        kubeha_render::render(spec, &materials)?
    };
    let mut p = Planner {
        spec,
        source: &loaded.source,
        file: &g.file,
        rendered,
        out: DryRun {
            command: command.into(),
            nodes: nodes.to_vec(),
            dry_run: true,
            steps: vec![],
            warnings: vec![],
            next: vec![],
        },
    };
    match f(&mut p) {
        Ok(()) => {}
        Err(Fail::Refused { message, help } | Fail::Failed { message, help }) => {
            return Err(CliError::Input { message, help });
        }
    }
    let out = p.out;
    emit(g.output, &out, || dry_run_text(&out))?;
    Ok(ExitCode::SUCCESS)
}

fn dry_run_text(r: &DryRun) -> String {
    let mut t = Table::new(["STEP", "NODE", "WOULD"]);
    for (i, s) in r.steps.iter().enumerate() {
        t.row([format!("{}", i + 1), s.node.clone(), s.would.clone()]);
    }
    let mut out = t.render();
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if !r.next.is_empty() {
        out.push_str("\nnext:\n");
        for n in &r.next {
            out.push_str(&format!("  {n}\n"));
        }
    }
    out.push_str(&format!(
        "dry run of {} {}: no host was contacted and nothing changed\n",
        r.command,
        r.nodes.join(", ")
    ));
    out
}

/// `node remove --dry-run`: the steps of [`remove`], from the cluster file alone. What only
/// the hosts can tell (whether one answers, the live etcd membership) is named as a check
/// the real run makes.
fn plan_remove(p: &mut Planner<'_>, name: &str, force: bool, drain: u64) -> Result<(), Fail> {
    let spec = p.spec;
    let n = spec.node(name);
    let members: Vec<&str> = spec
        .etcd_members()
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    if n.is_none() && members.is_empty() {
        return Err(Fail::Refused {
            message: format!("no node or etcd member {name:?}"),
            help: "name a node of the cluster file or an etcd member".into(),
        });
    }
    if n.is_some() {
        p.step(
            name,
            if force {
                "check the host answers over SSH (5 s); if it does not, go on without it (--force)"
            } else {
                "check the host answers over SSH (5 s); if it does not, stop with nothing changed"
            },
        );
    }
    if let Some(n) =
        n.filter(|n| n.has(kubeha_spec::Role::ControlPlane) || n.has(kubeha_spec::Role::Worker))
    {
        p.step(
            &n.name,
            format!(
                "cordon, drain through the Eviction API (PodDisruptionBudgets respected, DaemonSet pods left; at most {drain}s) and delete the Kubernetes Node{}",
                if force {
                    "; a host that does not answer: delete its Node without waiting for its pods"
                } else {
                    ""
                }
            ),
        );
    }
    let is_etcd = n.is_none_or(|n| spec.is_etcd_member(n));
    if is_etcd {
        let others: Vec<&str> = members.iter().copied().filter(|m| *m != name).collect();
        if others.is_empty() {
            return Err(Fail::Refused {
                message: "no other etcd member in the cluster file to ask".into(),
                help: String::new(),
            });
        }
        let guard = if force {
            "removed even if that loses quorum (--force)"
        } else {
            "refused, with nothing changed, if the members left could not keep quorum"
        };
        if n.is_none() {
            // Not in the file: only the live membership knows whether such a member exists.
            p.step(
                name,
                format!(
                    "remove the etcd member named {name}, if the membership lists one, through {}; {guard}",
                    others.join(", ")
                ),
            );
            p.out.warnings.push(format!(
                "{name} is not in the cluster file: the membership is not read in a dry run"
            ));
        } else {
            let left = others.len();
            p.step(
                name,
                format!(
                    "remove its etcd member through {}: {} voters → {left}, quorum {} of {left}; {guard}",
                    others.join(", "),
                    left + 1,
                    kubeha_etcd::membership::quorum(left),
                ),
            );
            for m in &others {
                p.step(
                    m,
                    format!("drop {name} from --initial-cluster in {ENV_PATH} (no restart)"),
                );
            }
        }
    }
    if let Some(n) = n {
        p.clean(&n.name);
        for line in file_lines(p.source, name) {
            let next = format!("delete from {}: {line}", p.file.display());
            p.out.next.push(next);
        }
    }
    p.out
        .next
        .push("kubeha up   (LB backends and the etcd proxies follow the cluster file)".into());
    Ok(())
}

/// `reset --dry-run`: per host, what [`reset_hosts`] would stop and remove.
fn plan_reset(p: &mut Planner<'_>, nodes: &[String], all: bool) {
    for name in nodes {
        p.clean(name);
        if !all && p.spec.node(name).is_some_and(|n| p.spec.is_etcd_member(n)) {
            p.out.warnings.push(format!(
                "{name}: its etcd member would stay in the membership; `kubeha node remove {name}` takes it out (or `kubeha node add {name}` re-joins it)"
            ));
        }
    }
}

fn confirm(nodes: &[String], data_dir: &str) -> Result<(), CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::Input {
            message: "refusing to reset without --yes: there is no terminal to confirm on".into(),
            help: "kubeha reset … --yes".into(),
        });
    }
    let hosts = if nodes.len() == 1 {
        "1 host".to_string()
    } else {
        format!("{} hosts", nodes.len())
    };
    if super::typed_yes(&format!(
        "Reset {hosts} ({}): stop kubeha's services, delete the files kubeha wrote and the etcd data dir {data_dir}? Type yes: ",
        nodes.join(", ")
    )) {
        Ok(())
    } else {
        Err(CliError::Input {
            message: "not confirmed; nothing changed".into(),
            help: String::new(),
        })
    }
}

/// Loads, locks the state dir, issues what is missing, renders, runs `f`, prints the report.
fn with_cx(
    g: &Global,
    command: &str,
    nodes: &[String],
    f: impl FnOnce(&Cx<'_>) -> Result<(), Fail>,
) -> Result<ExitCode, CliError> {
    let start = Instant::now();
    let loaded = super::load_spec(g)?;
    let spec = &loaded.spec;
    let mut store = super::open_store(g, &spec.name)?;
    let (materials, issued) = store.ensure(spec, time::OffsetDateTime::now_utc())?;
    super::print_pki_notices(&issued);
    let rendered = kubeha_render::render(spec, &materials)?;
    let hosts = super::up::transports(spec, &g.state_dir.join(&spec.name))?;
    let cx = Cx {
        g,
        spec,
        source: &loaded.source,
        materials,
        rendered,
        hosts,
        log: Log {
            start,
            steps: Mutex::new(vec![]),
        },
        not_cleaned: Mutex::new(vec![]),
        warnings: Mutex::new(vec![]),
        next: Mutex::new(vec![]),
    };
    let r = f(&cx);
    drop(store);
    let take = |m: &Mutex<Vec<String>>| m.lock().map(|v| v.clone()).unwrap_or_default();
    let report = Report {
        command: command.into(),
        nodes: nodes.to_vec(),
        ok: r.is_ok(),
        steps: cx.log.steps(),
        not_cleaned: take(&cx.not_cleaned),
        warnings: take(&cx.warnings),
        next: take(&cx.next),
        seconds: start.elapsed().as_secs_f64(),
    };
    let (message, help) = match r {
        Ok(()) => {
            emit(cx.g.output, &report, || text(&report))?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(Fail::Refused { message, help }) => return Err(CliError::Input { message, help }),
        Err(Fail::Failed { message, help }) => (message, help),
    };
    emit(cx.g.output, &report, || text(&report))?;
    if help.is_empty() {
        errln!("{:?}", miette::miette!("{message}"));
    } else {
        errln!("{:?}", miette::miette!(help = help, "{message}"));
    }
    Ok(ExitCode::from(EXIT_FAILURE))
}

fn text(r: &Report) -> String {
    let mut t = Table::new(["TIME", "NODE", "STEP"]);
    for s in &r.steps {
        t.row([format!("{:.1}s", s.seconds), s.node.clone(), s.what.clone()]);
    }
    let mut out = t.render();
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if !r.not_cleaned.is_empty() {
        out.push_str("\nnot cleaned (the host did not answer; clean it by hand or reset it when it is back):\n");
        for n in &r.not_cleaned {
            out.push_str(&format!("  {n}\n"));
        }
    }
    if !r.next.is_empty() {
        out.push_str("\nnext:\n");
        for n in &r.next {
            out.push_str(&format!("  {n}\n"));
        }
    }
    out.push_str(&format!(
        "{} {} {} in {:.1}s\n",
        r.command,
        r.nodes.join(", "),
        if r.ok { "done" } else { "FAILED" },
        r.seconds
    ));
    out
}

fn node<'a>(cx: &'a Cx<'_>, name: &str) -> Result<&'a Node, Fail> {
    cx.spec.node(name).ok_or_else(|| Fail::Refused {
        message: format!("no node {name:?} in the cluster file"),
        help: "add it to the cluster file first, then run this again".into(),
    })
}

fn etcd_systemd(cx: &Cx<'_>, what: &str) -> Result<(), Fail> {
    if cx.spec.etcd.deployment == EtcdDeployment::Systemd {
        Ok(())
    } else {
        Err(failed(format!(
            "{what} of an etcd member is not implemented yet for etcd.deployment: static-pod (only systemd); nothing was changed"
        )))
    }
}

fn add(cx: &Cx<'_>, name: &str, new_host_key: bool, timeout: Duration) -> Result<(), Fail> {
    let n = node(cx, name)?;
    check_host_key(cx, n, new_host_key, "node add")?;
    if cx.spec.is_etcd_member(n) {
        etcd_systemd(cx, "node add")?;
        etcd_join(cx, n, false, false, timeout)?;
    }
    cx.converge(timeout)
}

/// `kubeha node replace`'s flags.
struct ReplaceOptions<'a> {
    address: Option<std::net::IpAddr>,
    force: bool,
    replaces: Option<&'a str>,
    new_host_key: bool,
    timeout: Duration,
}

fn replace(cx: &Cx<'_>, name: &str, o: &ReplaceOptions<'_>) -> Result<(), Fail> {
    let (force, timeout) = (o.force, o.timeout);
    let n = node(cx, name)?;
    if let Some(a) = o.address.filter(|a| *a != n.address) {
        return Err(Fail::Refused {
            message: format!(
                "the cluster file gives {name} the address {}, not {a}",
                n.address
            ),
            help: format!(
                "change {name}'s address to {a} in the cluster file first, then run this again"
            ),
        });
    }
    if o.replaces.is_some() && !cx.spec.is_etcd_member(n) {
        return Err(Fail::Refused {
            message: format!("--replaces names an etcd member, and {name} is not one"),
            help: format!("kubeha node replace {name}"),
        });
    }
    check_host_key(cx, n, o.new_host_key, "node replace")?;
    if cx.spec.is_etcd_member(n) {
        etcd_systemd(cx, "node replace")?;
        retire_replaced_member(cx, n, o.replaces, force)?;
        etcd_join(cx, n, true, force, timeout)?;
    } else {
        cx.log.say(
            name,
            "not an etcd member: replacing it is bringing the fresh host to the cluster file",
        );
    }
    cx.converge(timeout)
}

/// Whether etcd may take the same request moments later: no member answered, an answer was
/// cut off, or etcd says it is between leaders or refuses changes for now ("unhealthy
/// cluster"). A request that failed this way may still have been applied.
fn transient(e: &EtcdError) -> bool {
    use std::io::ErrorKind as K;
    match e {
        EtcdError::NoEndpoint { last, .. } => transient(last),
        EtcdError::Connect { .. } => true,
        EtcdError::Tls { source, .. } => matches!(
            source.kind(),
            K::TimedOut
                | K::WouldBlock
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::UnexpectedEof
                | K::BrokenPipe
        ),
        EtcdError::Http {
            status, message, ..
        } => {
            *status == 503
                || [
                    "leader changed",
                    "no leader",
                    "not leader",
                    "request timed out",
                    "server stopped",
                    "unhealthy cluster",
                    "not enough started members",
                ]
                .iter()
                .any(|m| message.contains(m))
        }
        _ => false,
    }
}

/// The membership as the other members see it, asked again (bounded) while etcd is between
/// leaders.
fn list_members(cx: &Cx<'_>, client: &Client, node: &str) -> Result<Vec<Member>, Fail> {
    change(
        cx,
        client,
        node,
        "list etcd members (no other member answered)",
        || client.member_list(),
        |_| None,
    )
}

/// A membership change through the other members, retried for at most [`RECONFIG_RETRY`]
/// while etcd is between leaders or says "unhealthy cluster". An attempt whose answer was
/// lost (the leader died with it) may have been applied: before each retry the membership is
/// read again and `applied` says whether it already shows the change, so a change is never
/// made twice (no second learner, no "member not found" for our own removal).
fn change<T>(
    cx: &Cx<'_>,
    client: &Client,
    node: &str,
    doing: &str,
    mut f: impl FnMut() -> Result<T, EtcdError>,
    applied: impl Fn(&[Member]) -> Option<T>,
) -> Result<T, Fail> {
    let start = Instant::now();
    let mut said = false;
    let mut retried = false;
    loop {
        let e = match f() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let text = error_chain(&e);
        // "already there" after a lost answer: it was our own attempt.
        if retried
            && ["peerURL exists", "ID not found", "member not found"]
                .iter()
                .any(|m| text.contains(m))
            && let Some(v) = client.member_list().ok().and_then(|ms| applied(&ms))
        {
            cx.log
                .say(node, format!("{doing}: the earlier attempt went through"));
            return Ok(v);
        }
        if !transient(&e) || start.elapsed() >= RECONFIG_RETRY {
            return Err(etcd_failed(doing)(e));
        }
        if !said {
            cx.log.say(
                node,
                format!(
                    "{doing}: {text}; retrying through the other members for at most {}s",
                    RECONFIG_RETRY.as_secs()
                ),
            );
            said = true;
        }
        retried = true;
        std::thread::sleep(Duration::from_millis(500));
        if let Some(v) = client.member_list().ok().and_then(|ms| applied(&ms)) {
            cx.log
                .say(node, format!("{doing}: went through (its answer was lost)"));
            return Ok(v);
        }
    }
}

/// Adds `peer_url` as a learner (at most once, whatever the leader does meanwhile).
fn add_learner(cx: &Cx<'_>, client: &Client, name: &str, peer_url: &str) -> Result<Member, Fail> {
    change(
        cx,
        client,
        name,
        &format!("add {name} ({peer_url}) as a learner"),
        || client.member_add(&[peer_url.to_string()], true),
        |ms| ms.iter().find(|m| same_peer(m, peer_url)).cloned(),
    )
}

/// Removes member `m`; done once the membership no longer holds its ID.
fn remove_member(
    cx: &Cx<'_>,
    client: &Client,
    node: &str,
    doing: &str,
    m: &Member,
) -> Result<(), Fail> {
    change(
        cx,
        client,
        node,
        doing,
        || client.member_remove(&m.id),
        |ms| (!ms.iter().any(|x| x.id == m.id)).then_some(()),
    )
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn same_peer(m: &Member, peer_url: &str) -> bool {
    m.peer_urls.iter().any(|u| same_url(u, peer_url))
}

/// Before touching a replacement host: its SSH host key must be the pinned one, unless the
/// operator says it is new (`--new-host-key`): then only this node's pinned key is forgotten,
/// the key the host presents now is pinned (accept-new) and its fingerprint printed.
fn check_host_key(cx: &Cx<'_>, n: &Node, repin: bool, command: &str) -> Result<(), Fail> {
    let name = n.name.as_str();
    let ssh = SshTransport::new(n, &cx.g.state_dir.join(&cx.spec.name))
        .map_err(|e| failed(error_chain(&e)))?;
    // A shared connection set up earlier (maybe to the old machine) skips the key check.
    let _ = ssh.close();
    let known_hosts = ssh.known_hosts().to_path_buf();
    if repin {
        let old = kubeha_transport::pinned_keys(&known_hosts, name).unwrap_or_default();
        let removed = kubeha_transport::forget_host_key(&known_hosts, name)
            .map_err(|e| failed(error_chain(&e)))?;
        cx.log.say(
            name,
            if removed == 0 {
                format!(
                    "no SSH host key pinned for {name} in {}",
                    known_hosts.display()
                )
            } else {
                format!(
                    "forgot the SSH host key pinned for {name} ({}) in {}",
                    old.iter()
                        .map(|k| format!("{} {}", k.key_type, k.fingerprint))
                        .collect::<Vec<_>>()
                        .join(", "),
                    known_hosts.display()
                )
            },
        );
    }
    match ssh.run(&Command::new(["true"]).timeout(PROBE_TIMEOUT)) {
        Ok(_) => {}
        Err(TransportError::HostKeyChanged { .. }) => {
            return Err(Fail::Refused {
                message: format!(
                    "the SSH host key of {name} is not the one pinned in {}: not connecting",
                    known_hosts.display()
                ),
                help: format!(
                    "if {name} is a new machine, check its key on its console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run `kubeha {command} {name} --new-host-key`: it re-pins {name}'s key only; otherwise treat this as a possible attack"
                ),
            });
        }
        Err(e) if repin => {
            return Err(failed(format!(
                "cannot reach {name} to pin its new SSH host key: {}",
                error_chain(&e)
            )));
        }
        // Unreachable and the like: the steps below say so in their own terms.
        Err(_) => {}
    }
    if repin {
        let keys = kubeha_transport::pinned_keys(&known_hosts, name)
            .map_err(|e| failed(error_chain(&e)))?;
        if keys.is_empty() {
            return Err(failed(format!(
                "ssh connected to {name} but pinned no key in {}",
                known_hosts.display()
            )));
        }
        for k in keys {
            cx.log.say(
                name,
                format!(
                    "pinned the new SSH host key of {name}: {} {}",
                    k.key_type, k.fingerprint
                ),
            );
        }
    }
    Ok(())
}

/// `node replace` under a new name: the member the node takes over from (`--replaces`, by
/// name or peer URL) leaves first, through the other members and behind the quorum guard.
/// Without `--replaces`, a node that is not a member yet while the membership holds members
/// the cluster file does not list is refused: growing the cluster beside a dead member would
/// leave that member a ghost voter.
fn retire_replaced_member(
    cx: &Cx<'_>,
    n: &Node,
    replaces: Option<&str>,
    force: bool,
) -> Result<(), Fail> {
    let name = n.name.as_str();
    let peer_url = Spec::etcd_peer_url(n);
    let client = cx.etcd(Some(name))?;
    let members = list_members(cx, &client, name)?;
    let listed = |m: &Member| {
        cx.spec
            .etcd_members()
            .iter()
            .any(|x| x.name == m.name || same_peer(m, &Spec::etcd_peer_url(x)))
    };
    let old = match replaces {
        None => {
            if membership::member_of(&members, name, Some(&peer_url)).is_some() {
                return Ok(());
            }
            let strays: Vec<String> = members
                .iter()
                .filter(|m| !listed(m))
                .map(describe_with_url)
                .collect();
            if strays.is_empty() {
                return Ok(());
            }
            return Err(Fail::Refused {
                message: format!(
                    "{name} is not an etcd member, and the membership holds {} the cluster file does not list: {}",
                    if strays.len() == 1 {
                        "a member"
                    } else {
                        "members"
                    },
                    strays.join(", ")
                ),
                help: format!(
                    "name the member {name} takes over from: `kubeha node replace {name} --replaces <name or peer URL>`; to grow the cluster instead: `kubeha node add {name}`"
                ),
            });
        }
        Some(r) => members
            .iter()
            .find(|m| m.name == r || same_peer(m, r))
            .ok_or_else(|| Fail::Refused {
                message: format!("--replaces {r}: no etcd member has that name or peer URL"),
                help: format!(
                    "members: {}",
                    members
                        .iter()
                        .map(describe_with_url)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?,
    };
    if old.name == name || same_peer(old, &peer_url) {
        // The node's own old member: the join below replaces it.
        return Ok(());
    }
    if listed(old) {
        return Err(Fail::Refused {
            message: format!(
                "{} is still in the cluster file: {name} cannot take over from it",
                describe_with_url(old)
            ),
            help: format!(
                "replace its entry in the cluster file with {name}'s, then run this again"
            ),
        });
    }
    retire_member(cx, &client, name, &members, old, force, || {})
}

/// Removes `old`, the member `name` takes over from, behind the quorum guard; `before_removal`
/// runs once the guard has allowed it (stopping a local etcd whose data is to be wiped).
fn retire_member(
    cx: &Cx<'_>,
    client: &Client,
    name: &str,
    members: &[Member],
    old: &Member,
    force: bool,
    before_removal: impl FnOnce(),
) -> Result<(), Fail> {
    let check = guard(cx, name, client, members, &old.id, force).map_err(|c| Fail::Refused {
        message: format!("refusing to remove the old member {}: {c}", describe(old)),
        help: "bring the other members back first, or pass --force to remove it anyway (the cluster then stops accepting writes until quorum is back)".into(),
    })?;
    before_removal();
    remove_member(
        cx,
        client,
        name,
        &format!("remove the old member {}", describe(old)),
        old,
    )?;
    cx.log.say(
        name,
        format!(
            "removed the old etcd member {} ({}) that {name} replaces{}",
            describe(old),
            old.peer_urls.join(","),
            check.map(|c| format!(" ({c})")).unwrap_or_default()
        ),
    );
    Ok(())
}

fn describe_with_url(m: &Member) -> String {
    format!("{} at {}", describe(m), m.peer_urls.join(","))
}

fn healthy_ids(client: &Client, members: &[Member]) -> BTreeSet<String> {
    std::thread::scope(|s| {
        let hs: Vec<_> = members
            .iter()
            .map(|m| s.spawn(move || (m.id.clone(), client.member_health(m).healthy)))
            .collect();
        hs.into_iter()
            .filter_map(|h| h.join().ok())
            .filter(|(_, ok)| *ok)
            .map(|(id, _)| id)
            .collect()
    })
}

/// The quorum guard on removing member `id`, with health asked again a few times (bounded)
/// before refusing while fewer than a quorum of voters answer (at most 3 more checks, 1 s
/// apart): right after a member dies the others serve no reads until they have elected a
/// leader, which would count them as unhealthy.
fn guard(
    cx: &Cx<'_>,
    node: &str,
    client: &Client,
    members: &[Member],
    id: &str,
    force: bool,
) -> Result<Option<kubeha_etcd::membership::QuorumCheck>, kubeha_etcd::membership::QuorumCheck> {
    let mut attempt = 0;
    loop {
        let t0 = Instant::now();
        let healthy = healthy_ids(client, members);
        cx.log.say(
            node,
            format!(
                "etcd health: {} of {} member(s) answered ({:.1}s)",
                healthy.len(),
                members.len(),
                t0.elapsed().as_secs_f64()
            ),
        );
        match membership::guard_removal(members, &healthy, id, force) {
            // Without a quorum of answering voters there may just be no leader yet.
            Err(c)
                if attempt < 3
                    && c.voters - c.unhealthy < kubeha_etcd::membership::quorum(c.voters) =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

fn describe(m: &Member) -> String {
    format!("{} ({})", kubeha_etcd::membership::label(m), m.id)
}

/// Learner add → fresh data dir → start with `existing` → promote, for member `n`.
fn etcd_join(
    cx: &Cx<'_>,
    n: &Node,
    replace: bool,
    force: bool,
    timeout: Duration,
) -> Result<(), Fail> {
    let name = n.name.as_str();
    let peer_url = Spec::etcd_peer_url(n);
    let t = cx.host(name)?;
    let tree = cx.tree(name)?;
    let o = kubeha_apply::observe(t, tree, super::up::supervisor_binary().as_deref()).map_err(|e| Fail::Failed {
        message: format!("cannot reach {name}: {}", error_chain(&e)),
        help: format!("{name} must answer over SSH to join; to take it out instead: `kubeha node remove {name} --force`"),
    })?;
    let data_dir = cx.spec.etcd.data_dir.as_str();
    let has_data = t
        .run(
            &Command::new(["test", "-d", &format!("{data_dir}/member")])
                .sudo()
                .allow_failure()
                .timeout(PROBE_TIMEOUT),
        )
        .map(|x| x.success())
        .map_err(|e| failed(error_chain(&e)))?;
    let client = cx.etcd(Some(name))?;
    let members = list_members(cx, &client, name)?;
    let plan = membership::plan_join(&members, name, &peer_url, has_data, replace).map_err(|b| Fail::Refused {
        message: format!("cannot join {name}: {b}"),
        help: "remove that member with `kubeha etcd forget` (or start its host), then run this again".into(),
    })?;
    if plan.nothing {
        cx.log.say(
            name,
            "already a voting etcd member with its data on the host; nothing to do for etcd",
        );
        return Ok(());
    }
    let mut stopped = false;
    if let Some(old) = &plan.remove {
        retire_member(cx, &client, name, &members, old, force, || {
            if plan.wipe {
                stop_unit(cx, &o.manager, t, name, "etcd.service");
                stopped = true;
            }
        })?;
    }
    if plan.wipe {
        if !stopped {
            stop_unit(cx, &o.manager, t, name, "etcd.service");
        }
        if !membership::is_safe_data_dir(data_dir) {
            return Err(failed(format!(
                "refusing to wipe the etcd data dir {data_dir:?}: not a dedicated directory"
            )));
        }
        t.run(
            &Command::new(["rm", "-rf", data_dir])
                .sudo()
                .timeout(Duration::from_secs(60)),
        )
        .map_err(|e| failed(error_chain(&e)))?;
        cx.log
            .say(name, format!("wiped the etcd data dir {data_dir}"));
    }
    if plan.add {
        let m = add_learner(cx, &client, name, &peer_url)?;
        cx.log
            .say(name, format!("added as etcd learner {} ({peer_url})", m.id));
    }
    let env = tree
        .files
        .iter()
        .find(|f| f.path == ENV_PATH)
        .ok_or_else(|| failed(format!("no {ENV_PATH} rendered for {name}")))?;
    if plan.start_existing {
        let now = list_members(cx, &client, name)?;
        let initial = kubeha_etcd::membership::initial_cluster(&now, name, &peer_url);
        let joined = membership::join_env(&env.content, &initial).ok_or_else(|| {
            failed(format!(
                "{ENV_PATH} rendered for {name} has no --initial-cluster flags"
            ))
        })?;
        let uploads: Vec<UploadFile<'_>> = tree
            .files
            .iter()
            .map(|f| UploadFile {
                path: &f.path,
                content: if f.path == ENV_PATH {
                    joined.as_bytes()
                } else {
                    f.content.as_bytes()
                },
                mode: f.mode,
                owner: &f.owner,
            })
            .collect();
        upload_many(t, &uploads, Duration::from_secs(60)).map_err(|e| failed(error_chain(&e)))?;
        o.manager.reload(t).map_err(|e| failed(error_chain(&e)))?;
        cx.log.say(name, format!("wrote {} file(s); etcd starts with --initial-cluster-state=existing --initial-cluster={initial}", uploads.len()));
        o.manager
            .start(t, "etcd.service")
            .map_err(|e| failed(format!("cannot start etcd on {name}: {}", error_chain(&e))))?;
        cx.log.say(name, "started etcd.service");
    } else if !o
        .facts
        .services
        .get("etcd.service")
        .copied()
        .unwrap_or(false)
    {
        o.manager
            .start(t, "etcd.service")
            .map_err(|e| failed(format!("cannot start etcd on {name}: {}", error_chain(&e))))?;
        cx.log
            .say(name, "started etcd.service (learner with its data)");
    }
    promote(cx, &client, name, &peer_url, timeout)?;
    // etcd reads --initial-cluster* only when its data dir is empty: the rendered file is now
    // equivalent, so it is written without a restart and `kubeha up` agrees.
    t.upload(ENV_PATH, env.content.as_bytes(), env.mode, &env.owner)
        .map_err(|e| failed(error_chain(&e)))?;
    refresh_env(cx, cx.spec, Some(name));
    Ok(())
}

fn promote(
    cx: &Cx<'_>,
    client: &Client,
    name: &str,
    peer_url: &str,
    timeout: Duration,
) -> Result<(), Fail> {
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    let mut said = false;
    while start.elapsed() < timeout {
        // Between leaders the members may not answer at all: ask again, within `timeout`.
        let members = match client.member_list() {
            Ok(m) => m,
            Err(e) if transient(&e) => {
                last = error_chain(&e);
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Err(e) => return Err(etcd_failed("list etcd members")(e)),
        };
        let Some(m) = membership::member_of(&members, name, Some(peer_url)) else {
            return Err(failed(format!(
                "{name} ({peer_url}) is no longer an etcd member"
            )));
        };
        if !m.is_learner {
            cx.log.say(
                name,
                format!(
                    "voting etcd member {} ({:.1}s)",
                    m.id,
                    start.elapsed().as_secs_f64()
                ),
            );
            return Ok(());
        }
        match client.member_promote(&m.id) {
            Ok(()) => {
                cx.log.say(
                    name,
                    format!(
                        "caught up; promoted learner {} to a voting member ({:.1}s)",
                        m.id,
                        start.elapsed().as_secs_f64()
                    ),
                );
                return Ok(());
            }
            Err(e) => {
                last = error_chain(&e);
                // Not caught up is the normal wait; anything else is worth a line, once.
                if !e.is_learner_not_ready() && !said {
                    cx.log.say(
                        name,
                        format!("promote: {last}; asking again (other members, new leader)"),
                    );
                    said = true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(Fail::Failed {
        message: format!(
            "{name} did not catch up within {}s: {last}",
            timeout.as_secs()
        ),
        help: format!(
            "it stays a learner (no vote, quorum unchanged); check its etcd log, then `kubeha etcd promote {name}`, or take it out with `kubeha node remove {name}`"
        ),
    })
}

fn stop_unit(cx: &Cx<'_>, manager: &ServiceManager, t: &dyn Transport, node: &str, unit: &str) {
    match manager.stop(t, unit) {
        Ok(()) => cx.log.say(node, format!("stopped {unit}")),
        Err(e) => cx
            .log
            .say(node, format!("stop {unit}: {}", error_chain(&e))),
    }
}

/// Writes `spec`'s etcd environment file to the other members where it differs only in the
/// `--initial-cluster*` flags (read only on a member's first start: no restart), so that a
/// grown or shrunk membership does not make `kubeha up` restart every member at once.
fn refresh_env(cx: &Cx<'_>, spec: &Spec, skip: Option<&str>) {
    let members: Vec<&Node> = spec
        .etcd_members()
        .into_iter()
        .filter(|n| Some(n.name.as_str()) != skip)
        .collect();
    let _ = for_each_host(members, 8, |n| {
        let Ok(t) = cx.host(&n.name) else {
            return Ok::<_, ()>(());
        };
        let Ok(tree) = kubeha_render::render_host(Ctx::new(spec, &cx.materials), n) else {
            return Ok(());
        };
        let Some(env) = tree.files.iter().find(|f| f.path == ENV_PATH) else {
            return Ok(());
        };
        let current = match t.read(ENV_PATH) {
            Ok(Some(c)) => String::from_utf8_lossy(&c).to_string(),
            _ => return Ok(()),
        };
        if current != env.content
            && membership::only_initial_cluster_differs(&current, &env.content)
        {
            match t.upload(ENV_PATH, env.content.as_bytes(), env.mode, &env.owner) {
                Ok(()) => cx.log.say(
                    &n.name,
                    "updated --initial-cluster in etcd.env (read only on first start: no restart)",
                ),
                Err(e) => cx.log.say(
                    &n.name,
                    format!("could not update etcd.env: {}", error_chain(&e)),
                ),
            }
        }
        Ok(())
    });
}

fn remove(
    cx: &Cx<'_>,
    name: &str,
    force: bool,
    drain_timeout: Duration,
    kubeconfig: Option<&std::path::Path>,
) -> Result<(), Fail> {
    let n = cx.spec.node(name);
    let peer_url = n.map(Spec::etcd_peer_url);
    // Does the host answer? Bounded; nothing below waits on a host that does not.
    let reachable = match n.and_then(|n| cx.hosts.get(&n.name)) {
        Some(t) => match t.run(&Command::new(["true"]).timeout(PROBE_TIMEOUT)) {
            Ok(_) => true,
            Err(e) if force => {
                cx.log.say(
                    name,
                    format!(
                        "does not answer over SSH ({}); going on without it (--force)",
                        error_chain(&e)
                    ),
                );
                false
            }
            Err(e) => {
                return Err(Fail::Refused {
                    message: format!("{name} does not answer over SSH: {}", error_chain(&e)),
                    help: format!(
                        "if it is gone for good: `kubeha node remove {name} --force` removes it from the cluster without contacting it"
                    ),
                });
            }
        },
        None => false,
    };
    // Kubernetes first: its pods leave (or, for a dead node, its Node object goes) while
    // the rest of the cluster is intact.
    if let Some(n) =
        n.filter(|n| n.has(kubeha_spec::Role::ControlPlane) || n.has(kubeha_spec::Role::Worker))
    {
        leave_kubernetes(cx, &n.name, reachable, drain_timeout, kubeconfig)?;
    }
    let is_etcd = n.is_none_or(|n| cx.spec.is_etcd_member(n));
    if is_etcd && !cx.spec.etcd_members().is_empty() {
        let client = cx.etcd(Some(name))?;
        let members = client
            .member_list()
            .map_err(etcd_failed("list etcd members (no other member answered)"))?;
        match membership::member_of(&members, name, peer_url.as_deref()) {
            Some(target) => {
                let check = guard(cx, name, &client, &members, &target.id, force).map_err(|c| Fail::Refused {
                    message: format!("refusing to remove etcd member {}: {c}", describe(target)),
                    help: "bring the unhealthy members back (or replace them) first; --force removes it anyway and the cluster stops accepting writes until quorum is back".into(),
                })?;
                remove_member(
                    cx,
                    &client,
                    name,
                    &format!("remove etcd member {}", describe(target)),
                    target,
                )?;
                cx.log.say(
                    name,
                    format!(
                        "removed etcd member {}{}",
                        describe(target),
                        check.map(|c| format!(" ({c})")).unwrap_or_default()
                    ),
                );
            }
            None => cx.log.say(
                name,
                "not an etcd member (already removed); membership unchanged",
            ),
        }
        // The remaining members' rendered flags once the node leaves the file.
        let mut future = cx.spec.clone();
        future.nodes.retain(|x| x.name != name);
        refresh_env(cx, &future, Some(name));
    } else if n.is_none() {
        return Err(Fail::Refused {
            message: format!("no node or etcd member {name:?}"),
            help: "name a node of the cluster file or an etcd member".into(),
        });
    }
    if let Some(n) = n {
        let tree = cx.tree(&n.name)?;
        if reachable {
            clean_host(cx, n, tree).map_err(failed)?;
        } else {
            Cx::push(&cx.not_cleaned, unclean_text(cx.spec, tree));
        }
        for line in file_lines(cx.source, name) {
            Cx::push(
                &cx.next,
                format!("delete from {}: {line}", cx.g.file.display()),
            );
        }
    }
    Cx::push(
        &cx.next,
        "kubeha up   (LB backends and the etcd proxies follow the cluster file)".into(),
    );
    Ok(())
}

/// Cordons, drains (a reachable node) and deletes the Kubernetes Node through the API.
///
/// An API server that does not answer is not an error: the removal goes on and a warning
/// says what is left; a drain that fails (a PodDisruptionBudget that never allows the
/// eviction, pods without a controller) stops the removal before anything else changed.
fn leave_kubernetes(
    cx: &Cx<'_>,
    name: &str,
    reachable: bool,
    drain_timeout: Duration,
    kubeconfig: Option<&std::path::Path>,
) -> Result<(), Fail> {
    let text = match kubeconfig {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| failed(format!("cannot read kubeconfig {}: {e}", p.display())))?,
        None => kubeha_render::operator::admin_kubeconfig(kubeha_render::Ctx::new(
            cx.spec,
            &cx.materials,
        ))
        .map_err(|e| failed(e.to_string()))?,
    };
    let opts = kubeha_kube::EdgeOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(3),
        ..kubeha_kube::EdgeOptions::default()
    };
    let edge = match kubeha_kube::Edge::from_kubeconfig(&text, opts) {
        Ok(e) => e,
        Err(e) => return Err(failed(format!("kubeconfig: {e}"))),
    };
    match edge.livez() {
        Ok(true) => {}
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                _ => "not live".into(),
            };
            Cx::push(
                &cx.warnings,
                format!(
                    "the Kubernetes API did not answer ({why}): Node {name} was not drained or deleted; run `kubectl delete node {name}` once it does"
                ),
            );
            return Ok(());
        }
    }
    for line in drain_and_delete(&edge, name, reachable, drain_timeout)
        .map_err(|(message, help)| Fail::Refused { message, help })?
    {
        cx.log.say(name, line);
    }
    Ok(())
}

/// The API steps of a node's removal; lines to log, or (message, help) when refused.
fn drain_and_delete(
    edge: &kubeha_kube::Edge,
    name: &str,
    reachable: bool,
    timeout: Duration,
) -> Result<Vec<String>, (String, String)> {
    let mut log = vec![];
    match edge.cordon(name) {
        Ok(()) => log.push("cordoned".to_string()),
        Err(e) if e.is_not_found() => {
            log.push("no Kubernetes Node of that name (never joined or already deleted)".into());
            return Ok(log);
        }
        Err(e) => {
            return Err((
                format!("cannot cordon Node {name}: {e}"),
                "check the API server and try again".into(),
            ));
        }
    }
    if reachable {
        let opts = kubeha_kube::DrainOptions {
            ignore_daemonsets: true,
            delete_emptydir_data: true,
            force: false,
            timeout,
            grace_period: None,
        };
        let r = edge.drain(name, &opts).map_err(|e| {
            (
                format!("draining Node {name} failed: {e}"),
                format!("the node stays cordoned and nothing else was changed; fix what blocks the drain (or raise --drain-timeout) and run `kubeha node remove {name}` again"),
            )
        })?;
        log.push(format!(
            "drained: {} pod(s) evicted, {} skipped (DaemonSet or mirror pods)",
            r.evicted.len(),
            r.skipped.len()
        ));
    } else {
        log.push("host unreachable: not drained (its pods are deleted with the Node)".into());
    }
    edge.delete_node(name).map_err(|e| {
        (
            format!("cannot delete Node {name}: {e}"),
            "run `kubectl delete node NAME` once the API server answers".into(),
        )
    })?;
    log.push("deleted the Kubernetes Node".into());
    Ok(log)
}

fn unclean_text(spec: &Spec, tree: &HostTree) -> String {
    let paths = membership::reset_paths(spec, tree);
    format!(
        "{}: services {} still configured; {} path(s) left: {}",
        tree.node,
        if tree.services.is_empty() {
            "(none)".into()
        } else {
            tree.services.join(", ")
        },
        paths.len(),
        paths.join(" ")
    )
}

/// Stops the host's services and removes kubeha's files there (guide 000's reset list).
fn clean_host(cx: &Cx<'_>, n: &Node, tree: &HostTree) -> Result<(), String> {
    let t = cx
        .host(&n.name)
        .map_err(|_| format!("no SSH transport for {}", n.name))?;
    let o = kubeha_apply::observe(t, tree, super::up::supervisor_binary().as_deref())
        .map_err(|e| format!("{}: {}", n.name, error_chain(&e)))?;
    for unit in membership::stop_order(tree) {
        if o.facts.services.get(&unit).copied().unwrap_or(false) {
            stop_unit(cx, &o.manager, t, &n.name, &unit);
        }
    }
    let paths = membership::reset_paths(cx.spec, tree);
    t.run(
        &Command::new(["rm", "-rf"])
            .args(paths.iter().cloned())
            .sudo()
            .timeout(Duration::from_secs(60)),
    )
    .map_err(|e| format!("{}: {}", n.name, error_chain(&e)))?;
    o.manager
        .reload(t)
        .map_err(|e| format!("{}: {}", n.name, error_chain(&e)))?;
    cx.log.say(
        &n.name,
        format!(
            "removed {} path(s): kubeha's files, /etc/kubernetes/pki, manifests{}",
            paths.len(),
            if paths.contains(&cx.spec.etcd.data_dir) {
                ", the etcd data dir"
            } else {
                ""
            }
        ),
    );
    Ok(())
}

/// The cluster-file lines of node `name`, numbered, for the user to delete.
fn file_lines(source: &str, name: &str) -> Vec<String> {
    let lines: Vec<&str> = source.lines().collect();
    let is_name = |l: &str| {
        let l = l
            .trim_start()
            .trim_start_matches("- ")
            .trim_start_matches('{')
            .trim_start();
        l.strip_prefix("name:").is_some_and(|r| {
            r.trim_start()
                .trim_matches(|c| c == '"' || c == '\'')
                .starts_with(name)
                && r.trim_start().trim_matches(|c| c == '"' || c == '\'')[name.len()..]
                    .starts_with([',', ' ', '}', '"', '\''])
                || r.trim().trim_matches(|c| c == '"' || c == '\'') == name
        })
    };
    let Some(i) = lines
        .iter()
        .position(|l| l.trim_start().starts_with('-') && is_name(l))
    else {
        return vec![];
    };
    let first = lines[i];
    let mut out = vec![format!("line {}: {}", i + 1, first.trim_end())];
    if !first.contains('{') {
        let indent = first.len() - first.trim_start().len();
        for (j, l) in lines.iter().enumerate().skip(i + 1) {
            let ind = l.len() - l.trim_start().len();
            if l.trim().is_empty() || ind <= indent {
                break;
            }
            out.push(format!("line {}: {}", j + 1, l.trim_end()));
        }
    }
    out
}

fn reset_hosts(cx: &Cx<'_>, nodes: &[String], all: bool) -> Result<(), Fail> {
    let selected: Vec<&Node> = nodes.iter().filter_map(|n| cx.spec.node(n)).collect();
    let results = for_each_host(selected, 16, |n| {
        let tree = cx
            .tree(&n.name)
            .map_err(|_| format!("nothing rendered for {}", n.name))?;
        clean_host(cx, n, tree)
    });
    let mut bad = Vec::new();
    for (n, r) in results {
        if let Err(e) = r {
            cx.log.say(&n.name, format!("not reset: {e}"));
            if let Ok(tree) = cx.tree(&n.name) {
                Cx::push(&cx.not_cleaned, unclean_text(cx.spec, tree));
            }
            bad.push(n.name.clone());
        } else if !all && cx.spec.is_etcd_member(n) {
            Cx::push(
                &cx.warnings,
                format!(
                    "{}: its etcd member is still in the membership; `kubeha node remove {}` takes it out (or `kubeha node add {}` re-joins it)",
                    n.name, n.name, n.name
                ),
            );
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(failed(format!(
            "{} host(s) not reset: {}",
            bad.len(),
            bad.join(", ")
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn leader_changes_and_lost_answers_are_retried_refusals_are_not() {
        let http = |status, message: &str| EtcdError::Http {
            endpoint: "https://198.18.0.11:2379".into(),
            path: "/v3/cluster/member/promote".into(),
            status,
            message: message.into(),
        };
        for m in [
            "etcdserver: leader changed",
            "etcdserver: no leader",
            "etcdserver: request timed out, possibly due to previous leader failure",
            "etcdserver: unhealthy cluster",
            "etcdserver: re-configuration failed due to not enough started members",
        ] {
            assert!(transient(&http(500, m)), "{m}");
        }
        assert!(transient(&EtcdError::NoEndpoint {
            tried: 2,
            last: Box::new(EtcdError::Connect {
                endpoint: "https://198.18.0.11:2379".into(),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            }),
        }));
        assert!(transient(&EtcdError::Tls {
            endpoint: String::new(),
            source: std::io::ErrorKind::TimedOut.into(),
        }));
        for m in [
            "etcdserver: peerURL exists",
            "etcdserver: member not found",
            "etcdserver: can only promote a learner member which is in sync with leader",
        ] {
            assert!(!transient(&http(400, m)), "{m}");
        }
        assert!(!transient(&EtcdError::Tls {
            endpoint: String::new(),
            source: std::io::ErrorKind::InvalidData.into(),
        }));
    }

    #[test]
    fn the_lines_to_delete_are_found_in_flow_and_block_style() {
        let src = "nodes:\n  - { name: etcd-1, address: 198.18.0.11, roles: [etcd] }\n  - { name: etcd-10, address: 198.18.0.20, roles: [etcd] }\n  - name: wn-1\n    address: 198.18.0.31\n    roles: [worker]\n  - name: wn-2\n    address: 198.18.0.32\n";
        assert_eq!(
            file_lines(src, "etcd-1"),
            vec!["line 2:   - { name: etcd-1, address: 198.18.0.11, roles: [etcd] }"]
        );
        assert_eq!(file_lines(src, "etcd-10").len(), 1);
        assert_eq!(
            file_lines(src, "wn-1"),
            vec![
                "line 4:   - name: wn-1",
                "line 5:     address: 198.18.0.31",
                "line 6:     roles: [worker]"
            ]
        );
        assert!(file_lines(src, "wn-9").is_empty());
    }
}

#[cfg(test)]
mod kube_tests {
    use super::drain_and_delete;
    use kubeha_kube::fake::FakeApi;
    use kubeha_kube::{Edge, EdgeOptions};
    use serde_json::json;
    use std::time::Duration;

    fn edge(fake: &FakeApi) -> Edge {
        Edge::from_kubeconfig(
            &fake.kubeconfig(),
            EdgeOptions {
                request_timeout: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(2),
                backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                ..EdgeOptions::default()
            },
        )
        .expect("fake kubeconfig")
    }

    fn node_with_pod(fake: &FakeApi) {
        fake.insert(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "wn-1"},
            "spec": {}}),
        );
        fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web", "uid": "u1", "controller": true}]},
            "spec": {"nodeName": "wn-1", "containers": [{"name": "c", "image": "x"}]}}));
    }

    #[test]
    fn a_reachable_node_is_cordoned_drained_then_deleted() {
        let fake = FakeApi::start();
        node_with_pod(&fake);
        let log = drain_and_delete(&edge(&fake), "wn-1", true, Duration::from_secs(5))
            .expect("removal goes through");
        assert!(
            log.iter().any(|l| l.contains("1 pod(s) evicted")),
            "{log:?}"
        );
        let lines: Vec<String> = fake.requests().iter().map(|r| r.line()).collect();
        let evict = lines
            .iter()
            .position(|l| l.starts_with("POST /api/v1/namespaces/default/pods/web-1/eviction"))
            .expect("evicted through the Eviction API");
        let delete = lines
            .iter()
            .position(|l| l.starts_with("DELETE /api/v1/nodes/wn-1"))
            .expect("node deleted");
        assert!(evict < delete, "drain before delete: {lines:#?}");
        assert!(fake.get("v1", "nodes", None, "wn-1").is_none());
    }

    #[test]
    fn a_dead_node_is_deleted_without_waiting_for_its_pods() {
        let fake = FakeApi::start();
        node_with_pod(&fake);
        let log = drain_and_delete(&edge(&fake), "wn-1", false, Duration::from_secs(5))
            .expect("removal goes through");
        assert!(log.iter().any(|l| l.contains("not drained")), "{log:?}");
        assert!(
            !fake
                .requests()
                .iter()
                .any(|r| r.path.ends_with("/eviction")),
            "no eviction is attempted for an unreachable node"
        );
        assert!(fake.get("v1", "nodes", None, "wn-1").is_none());
    }

    #[test]
    fn a_drain_blocked_by_a_budget_stops_before_the_node_is_deleted() {
        let fake = FakeApi::start();
        node_with_pod(&fake);
        fake.refuse_evictions(1000, "web-pdb");
        let (message, help) =
            drain_and_delete(&edge(&fake), "wn-1", true, Duration::from_millis(500))
                .expect_err("the budget never allows it");
        assert!(message.contains("web-pdb"), "{message}");
        assert!(help.contains("stays cordoned"), "{help}");
        let node = fake.get("v1", "nodes", None, "wn-1").expect("node kept");
        assert_eq!(node["spec"]["unschedulable"], true);
    }

    #[test]
    fn a_node_that_never_joined_is_fine() {
        let fake = FakeApi::start();
        let log = drain_and_delete(&edge(&fake), "wn-9", true, Duration::from_secs(1))
            .expect("nothing to do");
        assert!(log[0].contains("no Kubernetes Node"), "{log:?}");
    }
}
