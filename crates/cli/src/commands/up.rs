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
        let bars = (!quiet && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
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
            None => eprintln!("{line}"),
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

/// Builds one SSH transport per node, keyed by node name.
pub fn transports(
    spec: &kubeha_spec::Spec,
    state: &std::path::Path,
) -> Result<BTreeMap<String, Box<dyn Transport>>, CliError> {
    let mut hosts: BTreeMap<String, Box<dyn Transport>> = BTreeMap::new();
    for n in &spec.nodes {
        let t = SshTransport::new(n, state).map_err(|e| CliError::Input {
            message: e.to_string(),
            help: e.help().unwrap_or_default(),
        })?;
        hosts.insert(n.name.clone(), Box::new(t));
    }
    Ok(hosts)
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
    let scratch = tempfile::tempdir().map_err(CliError::io(
        "create temporary directory",
        std::env::temp_dir(),
    ))?;
    let mut store = if dry_run {
        copy_state(&state, &scratch.path().join(&spec.name))?;
        kubeha_pki::open(
            scratch.path(),
            &spec.name,
            kubeha_pki::StoreOptions {
                passphrase: super::passphrase(g)?,
            },
        )?
    } else {
        super::open_store(g, &spec.name)?
    };
    let (materials, issued) = store.ensure(spec, time::OffsetDateTime::now_utc())?;
    if issued.keys_generated > 0 && !dry_run {
        eprintln!(
            "pki: generated {} key(s), issued {} certificate(s)",
            issued.keys_generated,
            issued.issued.len()
        );
    }
    let rendered = kubeha_render::render(spec, &materials)?;
    let hosts = transports(spec, &state)?;
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Out<'a> {
    changed: bool,
    #[serde(flatten)]
    report: &'a Report,
    /// What was done through the Kubernetes API (absent for `plan`).
    #[serde(skip_serializing_if = "Option::is_none")]
    kubernetes: Option<&'a super::cluster::KubeOutcome>,
}

fn print(
    g: &Global,
    r: &Report,
    kube: Option<&super::cluster::KubeOutcome>,
    dry_run: bool,
    start: Instant,
) -> Result<(), CliError> {
    let total = start.elapsed().as_secs_f64();
    let out = Out {
        changed: if dry_run {
            !r.plan.is_empty()
        } else {
            r.changed
        },
        report: r,
        kubernetes: kube,
    };
    emit(g.output, &out, || {
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
