//! `kubeha plan` and `kubeha up`: observe every host, plan, and (for `up`) apply phase by
//! phase behind health gates.

use std::{collections::BTreeMap, process::ExitCode, sync::Mutex, time::Instant};

use kubeha_apply::{Options, Progress, Report, gate::GateResult};
use kubeha_plan::Phase;
use kubeha_transport::{SshTransport, Transport};
use serde::Serialize;

use crate::{
    args::{Format, Global, UpArgs},
    error::CliError,
    output::emit,
    table::Table,
};

/// Progress on stderr: on a terminal, a spinner per phase whose message follows the hosts;
/// otherwise (CI, pipes, logs) one timestamped line per event.
struct Lines {
    start: Instant,
    quiet: bool,
    bars: Option<indicatif::MultiProgress>,
    current: Mutex<Option<indicatif::ProgressBar>>,
}

impl Lines {
    fn new(start: Instant, quiet: bool) -> Self {
        use std::io::IsTerminal;
        let quiet = quiet || crate::output::quiet();
        // Under -v the SSH command lines would tear through the bars: plain lines instead.
        let bars = (!quiet && !crate::output::verbose() && std::io::stderr().is_terminal())
            .then(indicatif::MultiProgress::new);
        Lines {
            start,
            quiet,
            bars,
            current: Mutex::new(None),
        }
    }

    fn say(&self, text: &str) {
        if self.quiet {
            return;
        }
        let line = format!("[{:>5.1}s] {text}", self.start.elapsed().as_secs_f64());
        match &self.bars {
            Some(m) => {
                let _ = m.println(line);
            }
            None => progress!("{line}"),
        }
    }
}

impl Lines {
    /// Stops a spinner left running by a phase without a gate.
    fn finish(&self) {
        if let Some(bar) = self.current.lock().ok().and_then(|mut c| c.take()) {
            bar.finish_with_message("done");
        }
    }
}

impl Progress for Lines {
    fn phase(&self, phase: Phase, hosts: usize) {
        match &self.bars {
            Some(m) => {
                let bar = m.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {prefix:<14} {elapsed:>4} {wide_msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.set_prefix(phase.to_string());
                bar.set_message(format!("{hosts} host(s) to change"));
                bar.enable_steady_tick(std::time::Duration::from_millis(100));
                if let Some(prev) = self
                    .current
                    .lock()
                    .ok()
                    .and_then(|mut cur| cur.replace(bar))
                {
                    prev.finish_with_message("done");
                }
            }
            None => self.say(&format!("── {phase}: {hosts} host(s) to change")),
        }
    }
    fn host(&self, phase: Phase, node: &str, message: &str) {
        match self.current.lock().ok().and_then(|c| c.clone()) {
            Some(bar) if self.bars.is_some() => bar.set_message(format!("{node}: {message}")),
            _ => self.say(&format!("   {phase} {node}: {message}")),
        }
    }
    fn gate(&self, phase: Phase, result: &GateResult) {
        match self.current.lock().ok().and_then(|mut c| c.take()) {
            Some(bar) if self.bars.is_some() => {
                bar.finish_with_message(format!("gate {}", result.text()))
            }
            _ => self.say(&format!("   {phase} gate {}", result.text())),
        }
    }
}

/// One SSH transport per node, in cluster-file order; `state` holds the pinned host keys and
/// the control sockets.
pub fn ssh_transports(
    spec: &kubeha_spec::Spec,
    state: &std::path::Path,
) -> Result<Vec<SshTransport>, CliError> {
    spec.nodes
        .iter()
        .map(|n| {
            SshTransport::new(n, state).map_err(|e| CliError::Input {
                message: e.to_string(),
                help: e.help().unwrap_or_default(),
            })
        })
        .collect()
}

/// The transports keyed by node name, as `converge` takes them.
fn boxed(ssh: &[SshTransport]) -> BTreeMap<String, Box<dyn Transport>> {
    ssh.iter()
        .map(|t| {
            (
                t.host().to_string(),
                Box::new(t.clone()) as Box<dyn Transport>,
            )
        })
        .collect()
}

/// Builds one SSH transport per node, keyed by node name.
pub fn transports(
    spec: &kubeha_spec::Spec,
    state: &std::path::Path,
) -> Result<BTreeMap<String, Box<dyn Transport>>, CliError> {
    Ok(boxed(&ssh_transports(spec, state)?))
}

/// The kubeha binary, for hosts without systemd (lab hosts share this machine's files).
pub fn supervisor_binary() -> Option<String> {
    std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
}

pub fn run(g: &Global, a: &UpArgs, dry_run: bool) -> Result<ExitCode, CliError> {
    let start = Instant::now();
    let loaded = super::load_spec(g)?;
    let spec = &loaded.spec;
    let state = g.state_dir.join(&spec.name);
    // `up` holds the state dir's lock for the whole run; `plan` changes nothing, not even the
    // state dir: it issues what is missing in a scratch copy.
    let (scratch, mut store) = if dry_run {
        let (dir, store) = scratch_store(g, &spec.name)?;
        (Some(dir), store)
    } else {
        (None, super::open_store(g, &spec.name)?)
    };
    let (materials, issued) = store.ensure(spec, time::OffsetDateTime::now_utc())?;
    if !dry_run {
        super::print_pki_notices(&issued);
    }
    if issued.keys_generated > 0 && !dry_run {
        progress!(
            "pki: generated {} key(s), issued {} certificate(s)",
            issued.keys_generated,
            issued.issued.len()
        );
    }
    let rendered = kubeha_render::render(spec, &materials)?;
    // `plan` reaches the hosts from the scratch copy (pinned keys included), so that not even
    // an SSH control socket or a first-contact host key lands in the state dir.
    let ssh_state = scratch
        .as_ref()
        .map_or_else(|| state.clone(), |d| d.path().join(&spec.name));
    let ssh = ssh_transports(spec, &ssh_state)?;
    let hosts = boxed(&ssh);
    let opts = Options {
        parallelism: a.parallelism.max(1),
        dry_run,
        supervisor: supervisor_binary(),
        gate_timeout: std::time::Duration::from_secs(a.gate_timeout),
        ..Options::default()
    };
    let progress = Lines::new(start, dry_run || g.output != Format::Table);
    let result = kubeha_apply::converge(spec, &rendered, &materials, &hosts, &opts, &progress);
    progress.finish();
    if dry_run {
        super::close_all(&ssh);
    }
    drop(store);
    let report = match result {
        Ok(r) => r,
        Err(kubeha_apply::ApplyError::Gate {
            phase,
            detail,
            report,
        }) => {
            let _ = print(g, &report, None, dry_run, start);
            return Err(kubeha_apply::ApplyError::Gate {
                phase,
                detail,
                report,
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    // The Kubernetes API part, once the first control plane answers through the VIP.
    let kube = if dry_run {
        None
    } else {
        match super::cluster::after_converge(
            &state,
            spec,
            &rendered,
            &materials,
            &report,
            g.output != Format::Table,
        ) {
            Ok(k) => k,
            Err(e) => {
                let _ = print(g, &report, None, dry_run, start);
                return Err(e);
            }
        }
    };
    print(g, &report, kube.as_ref(), dry_run, start)?;
    Ok(ExitCode::SUCCESS)
}

/// The report as data. `changed` appears once: for `plan` it means "would change" (a plan
/// changes nothing itself), for `up` that the run changed a host. The apply report's own
/// `changed` is not flattened in, since two keys of one name make JSON readers disagree.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Out<'a> {
    changed: bool,
    plan: &'a kubeha_plan::Plan,
    observed: &'a [kubeha_apply::Observed],
    warnings: &'a [String],
    not_installed: &'a [String],
    phases: &'a [kubeha_apply::run::PhaseReport],
    observe_seconds: f64,
    seconds: f64,
    /// What was done through the Kubernetes API (absent for `plan`).
    #[serde(skip_serializing_if = "Option::is_none")]
    kubernetes: Option<&'a super::cluster::KubeOutcome>,
}

impl<'a> Out<'a> {
    fn new(r: &'a Report, kube: Option<&'a super::cluster::KubeOutcome>, dry_run: bool) -> Self {
        Out {
            changed: if dry_run {
                !r.plan.is_empty()
            } else {
                r.changed
            },
            plan: &r.plan,
            observed: &r.observed,
            warnings: &r.warnings,
            not_installed: &r.not_installed,
            phases: &r.phases,
            observe_seconds: r.observe_seconds,
            seconds: r.seconds,
            kubernetes: kube,
        }
    }
}

fn print(
    g: &Global,
    r: &Report,
    kube: Option<&super::cluster::KubeOutcome>,
    dry_run: bool,
    start: Instant,
) -> Result<(), CliError> {
    let total = start.elapsed().as_secs_f64();
    emit(g.output, &Out::new(r, kube, dry_run), || {
        if dry_run {
            plan_text(r)
        } else {
            let mut text = up_text(r, total);
            if let Some(k) = kube {
                text.push_str(&k.text());
            }
            text
        }
    })
}

fn plan_text(r: &Report) -> String {
    let mut s = String::new();
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    s.push_str(&not_installed_text(&r.not_installed));
    if r.plan.is_empty() {
        s.push_str("No changes: every host holds the rendered files and runs its services.\n");
        return s;
    }
    let mut t = Table::new(["PHASE", "HOST", "CHANGE", "WHAT"]);
    for step in &r.plan.steps {
        for f in &step.files {
            t.row([
                step.phase.to_string(),
                step.node.clone(),
                format!("{:?}", f.change).to_lowercase(),
                f.path.clone(),
            ]);
        }
        for u in &step.restart {
            t.row([
                step.phase.to_string(),
                step.node.clone(),
                "restart".into(),
                u.clone(),
            ]);
        }
        for u in &step.reload {
            t.row([
                step.phase.to_string(),
                step.node.clone(),
                "reload".into(),
                u.clone(),
            ]);
        }
        for u in &step.start {
            t.row([
                step.phase.to_string(),
                step.node.clone(),
                "start".into(),
                u.clone(),
            ]);
        }
    }
    s.push_str(&t.render());
    s.push_str(&format!(
        "\n{} file change(s) on {} host(s); run `kubeha up` to apply\n",
        r.plan.file_changes(),
        r.plan
            .steps
            .iter()
            .map(|x| &x.node)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    ));
    s
}

fn up_text(r: &Report, total: f64) -> String {
    let mut t = Table::new([
        "PHASE",
        "HOSTS",
        "FILES",
        "STARTED",
        "RESTARTED",
        "RELOADED",
        "GATE",
        "TIME",
    ]);
    for p in &r.phases {
        t.row([
            p.phase.to_string(),
            p.hosts.len().to_string(),
            p.files_changed.to_string(),
            p.started.len().to_string(),
            p.restarted.len().to_string(),
            p.reloaded.len().to_string(),
            p.gate.as_ref().map_or("-".into(), GateResult::text),
            format!("{:.1}s", p.seconds),
        ]);
    }
    let mut s = t.render();
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    // Notes say the same thing for many hosts: one line per message.
    let mut grouped: std::collections::BTreeMap<&str, Vec<&str>> =
        std::collections::BTreeMap::new();
    for n in r.phases.iter().flat_map(|p| p.notes.iter()) {
        if let Some((node, msg)) = n.split_once(": ") {
            grouped.entry(msg).or_default().push(node);
        }
    }
    for (msg, nodes) in grouped {
        s.push_str(&format!("note: {msg} ({})\n", nodes.join(", ")));
    }
    s.push_str(&not_installed_text(&r.not_installed));
    if r.changed {
        s.push_str(&format!(
            "converged in {total:.1}s (observing {:.2}s)\n",
            r.observe_seconds
        ));
    } else {
        s.push_str(&format!(
            "no changes: the cluster already matches ({total:.2}s)\n"
        ));
    }
    s
}

/// A PKI store over a scratch copy of the cluster's state dir, for commands that show what
/// they would do (`--dry-run`): whatever it issues vanishes with the returned directory, and
/// the real state dir is neither locked nor written.
pub(crate) fn scratch_store(
    g: &Global,
    cluster: &str,
) -> Result<(tempfile::TempDir, kubeha_pki::Store), CliError> {
    let scratch = tempfile::tempdir().map_err(CliError::io(
        "create temporary directory",
        std::env::temp_dir(),
    ))?;
    copy_state(&g.state_dir.join(cluster), &scratch.path().join(cluster))?;
    let store = kubeha_pki::open(
        scratch.path(),
        cluster,
        kubeha_pki::StoreOptions {
            passphrase: super::passphrase(g)?,
        },
    )?;
    Ok((scratch, store))
}

/// Copies the PKI and secrets of a state dir (not its lock or SSH sockets).
fn copy_state(from: &std::path::Path, to: &std::path::Path) -> Result<(), CliError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(to)
        .map_err(CliError::io("create directory", to))?;
    if !from.exists() {
        return Ok(());
    }
    let mut stack = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((src, dst)) = stack.pop() {
        for e in std::fs::read_dir(&src)
            .map_err(CliError::io("read", &src))?
            .flatten()
        {
            let name = e.file_name();
            if name == "lock" || name == "ssh" {
                continue;
            }
            let (s, d) = (e.path(), dst.join(&name));
            if s.is_dir() {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&d)
                    .map_err(CliError::io("create directory", &d))?;
                stack.push((s, d));
            } else if s.is_file() {
                std::fs::copy(&s, &d).map_err(CliError::io("copy", &s))?;
            }
        }
    }
    Ok(())
}

/// `node/unit: program not installed` entries, one line per unit.
fn not_installed_text(entries: &[String]) -> String {
    let mut by_unit: std::collections::BTreeMap<&str, Vec<&str>> =
        std::collections::BTreeMap::new();
    for e in entries {
        if let Some((node, rest)) = e.split_once('/') {
            by_unit.entry(rest).or_default().push(node);
        }
    }
    by_unit
        .into_iter()
        .map(|(what, nodes)| {
            format!(
                "not verifiable: {what} on {}: not started\n",
                nodes.join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use kubeha_plan::{Phase, Plan, Step};

    use super::*;

    fn report(steps: usize) -> Report {
        let step = Step {
            node: "cp-1".into(),
            phase: Phase::ControlPlane,
            files: vec![],
            restart: BTreeSet::from(["kubelet.service".to_string()]),
            reload: BTreeSet::new(),
            start: BTreeSet::new(),
        };
        Report {
            plan: Plan {
                steps: vec![step; steps],
            },
            observed: vec![],
            warnings: vec![],
            not_installed: vec![],
            phases: vec![],
            // A plan applies nothing: the apply report's own flag stays false.
            changed: false,
            observe_seconds: 0.0,
            seconds: 0.0,
        }
    }

    /// Issue 13 (A3): `plan -o json` had `changed` twice, and a reader keeping the last one
    /// read `false` for a 40-change plan.
    #[test]
    fn plan_data_has_one_changed_key_saying_whether_there_is_work() {
        for (steps, want) in [(40, true), (0, false)] {
            let r = report(steps);
            let json = serde_json::to_string_pretty(&Out::new(&r, None, true)).expect("json");
            assert_eq!(json.matches("\"changed\"").count(), 1, "{json}");
            let v: serde_json::Value = serde_json::from_str(&json).expect("parses");
            assert_eq!(v["changed"], want);
            assert_eq!(v["plan"]["steps"].as_array().map(Vec::len), Some(steps));
            let yaml = serde_saphyr::to_string(&Out::new(&r, None, true)).expect("yaml");
            assert_eq!(
                yaml.lines().filter(|l| l.starts_with("changed:")).count(),
                1,
                "{yaml}"
            );
        }
        // `up` reports what the run did.
        let mut r = report(3);
        r.changed = true;
        let v = serde_json::to_value(Out::new(&r, None, false)).expect("json");
        assert_eq!(v["changed"], true);
    }
}
