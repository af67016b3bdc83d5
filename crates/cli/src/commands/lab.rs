//! `kubeha lab up|down|status`: lab hosts (network + mount namespaces with their own sshd)
//! on this machine, one per node of a lab cluster file. The work is in `kubeha-lab`.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use kubeha_lab::{DownReport, Lab, LabError, LabKeys, LabOptions, LabReport};
use kubeha_spec::Loaded;

use crate::{
    args::{Global, LabCommand},
    error::CliError,
    output::emit,
    table::Table,
};

pub fn run(g: &Global, c: &LabCommand) -> Result<ExitCode, CliError> {
    match c {
        LabCommand::Up { cluster_file } => up(g, cluster_file.as_deref()),
        LabCommand::Down {
            cluster_file,
            all,
            purge,
            yes,
        } => {
            if *all {
                down_all(g)
            } else {
                down(g, cluster_file.as_deref(), *purge, *yes)
            }
        }
        LabCommand::Status { cluster_file } => status(g, cluster_file.as_deref()),
    }
}

/// Loads the lab file: the positional FILE, else `-f`.
fn load(g: &Global, file: Option<&Path>) -> Result<Loaded, CliError> {
    let global = Global {
        file: file.map_or_else(|| g.file.clone(), Path::to_path_buf),
        state_dir: g.state_dir.clone(),
        output: g.output,
        ca_passphrase_file: g.ca_passphrase_file.clone(),
        quiet: g.quiet,
        verbose: g.verbose,
    };
    super::load_spec(&global)
}

fn options() -> LabOptions {
    LabOptions {
        // Progress goes to stderr; a closed stderr must not stop a half-built lab.
        progress: Some(Arc::new(|node: &str, msg: &str| {
            if crate::output::quiet() {
                return;
            }
            let line = if node == "-" {
                format!("lab: {msg}\n")
            } else {
                format!("{node}: {msg}\n")
            };
            let _ = std::io::stderr().write_all(line.as_bytes());
        })),
        ..LabOptions::default()
    }
}

/// Input problems (not root, addresses outside the lab range) exit 2; failures exit 1.
fn lab_error(action: &'static str, path: &Path) -> impl FnOnce(LabError) -> CliError {
    let path = path.to_path_buf();
    move |e| {
        let help = match &e {
            LabError::NotRoot { .. } => {
                "run it with sudo; the lab creates namespaces, links and mounts".to_string()
            }
            LabError::AddressOutsideLab { .. } => {
                "a lab only uses 198.18.0.0/15 (and loopback); start from examples/lab.yaml"
                    .to_string()
            }
            LabError::Leftovers { .. } => {
                "run `kubeha lab down --all` again; `ip netns pids` shows what holds a namespace"
                    .to_string()
            }
            _ => String::new(),
        };
        if e.is_input() {
            CliError::Input {
                message: e.to_string(),
                help,
            }
        } else {
            CliError::Io {
                action,
                path,
                source: std::io::Error::other(e),
            }
        }
    }
}

fn up(g: &Global, file: Option<&Path>) -> Result<ExitCode, CliError> {
    let loaded = load(g, file)?;
    let spec = &loaded.spec;
    let opts = options();
    let report = Lab::up(spec, &opts).map_err(lab_error("bring up the lab of", &loaded.path))?;
    emit(g.output, &report, || hosts_table(&report))?;
    if let Some(h) = report.hosts.first() {
        let key = h.node.as_str();
        let node = spec.node(key);
        let (user, keyfile) = node.map_or(("root".to_string(), String::new()), |n| {
            (n.ssh.user.clone(), n.ssh.key.clone().unwrap_or_default())
        });
        let line = format!(
            "lab {} of cluster {} is up: bridge {} ({}); try: ssh -i {keyfile} {user}@{} hostname\n",
            report.lab_id, report.cluster, report.bridge, report.gateway, h.address
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    Ok(ExitCode::SUCCESS)
}

fn status(g: &Global, file: Option<&Path>) -> Result<ExitCode, CliError> {
    let loaded = load(g, file)?;
    let report = Lab::status(&loaded.spec, &LabOptions::default())
        .map_err(lab_error("check the lab of", &loaded.path))?;
    emit(g.output, &report, || hosts_table(&report))?;
    Ok(ExitCode::SUCCESS)
}

fn down_all(g: &Global) -> Result<ExitCode, CliError> {
    let reports = Lab::down_all(&options()).map_err(lab_error(
        "remove the labs found under",
        Path::new(kubeha_lab::names::RUN_ROOT),
    ))?;
    emit(g.output, &reports, || down_table(&reports))?;
    if !reports.is_empty() {
        say("lab keys and state dirs stay; `kubeha lab down --purge FILE` removes one lab's");
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes the lab's hosts; with `purge` also its keys and the cluster's state dir, which
/// otherwise stay so that the next `lab up` brings back hosts `kubeha up` recognises.
fn down(g: &Global, file: Option<&Path>, purge: bool, yes: bool) -> Result<ExitCode, CliError> {
    let loaded = load(g, file)?;
    let spec = &loaded.spec;
    let keys = kubeha_lab::lab_keys(spec);
    let state = g.state_dir.join(&spec.name);
    let state = state.is_dir().then_some(state);
    let again = again_command(g, &loaded.path);
    if purge {
        if !kubeha_lab::is_root() {
            return Err(lab_error("remove the lab of", &loaded.path)(
                LabError::NotRoot { action: "down" },
            ));
        }
        if !yes {
            confirm_purge(&spec.name, &keys, state.as_deref(), &again)?;
        }
    }
    // Taken before anything is removed: a run using the state dir makes the purge wait for
    // nothing and refuse at once, with the lab still up.
    let _lock = match (&state, purge) {
        (Some(dir), true) => lock_state(dir)?,
        _ => None,
    };
    let opts = options();
    let report = Lab::down(spec, &opts).map_err(lab_error("remove the lab of", &loaded.path))?;
    let mut removed: Vec<PathBuf> = Vec::new();
    if purge {
        if let Some(dir) = &state {
            std::fs::remove_dir_all(dir).map_err(CliError::io("remove the state dir", dir))?;
            removed.push(dir.clone());
        }
        removed.extend(
            kubeha_lab::purge_keys(&keys)
                .map_err(lab_error("remove the keys of the lab of", &loaded.path))?,
        );
    }
    let reports = vec![report];
    emit(g.output, &reports, || down_table(&reports))?;
    if purge {
        if !removed.is_empty() {
            say(&format!("removed {}", list(&removed)));
        }
        for (key, why) in &keys.shared {
            say(&format!("kept the lab key {}: {why}", key.display()));
        }
    } else {
        let kept = kept(&keys, state.as_deref());
        if !kept.is_empty() {
            say(&format!(
                "kept for the next `lab up` (same hosts, same SSH host keys, so `kubeha up` recognises them): {}",
                kept.join(", ")
            ));
            say(&format!("remove them too with: {again}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What stays after a plain `lab down`, described for the operator.
fn kept(keys: &LabKeys, state: Option<&Path>) -> Vec<String> {
    let mut out: Vec<String> = keys
        .lab_keys
        .iter()
        .chain(keys.shared.iter().map(|(k, _)| k))
        .map(|k| format!("the lab key {}", k.display()))
        .collect();
    out.extend(
        keys.host_keys
            .iter()
            .map(|d| format!("the hosts' SSH keys {}", d.display())),
    );
    out.extend(state.map(|d| {
        format!(
            "the cluster's state dir {} (CAs, certificates, known_hosts)",
            d.display()
        )
    }));
    out
}

/// `kubeha [--state-dir D] lab down --purge FILE`, to print back to the operator.
fn again_command(g: &Global, file: &Path) -> String {
    let state = if g.state_dir == Path::new(".kubeha") {
        String::new()
    } else {
        format!(" --state-dir {}", g.state_dir.display())
    };
    format!("kubeha{state} lab down --purge {}", file.display())
}

/// Asks on the terminal; without one the purge is refused (`--yes` is the way in scripts).
fn confirm_purge(
    cluster: &str,
    keys: &LabKeys,
    state: Option<&Path>,
    again: &str,
) -> Result<(), CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::Input {
            message: "refusing to purge without --yes: there is no terminal to confirm on; nothing changed".into(),
            help: again.replacen(" --purge", " --purge --yes", 1),
        });
    }
    let mut what: Vec<String> = keys
        .host_keys
        .iter()
        .map(|d| format!("  {}  (the hosts' SSH keys)", d.display()))
        .collect();
    what.extend(
        keys.lab_keys
            .iter()
            .map(|k| format!("  {k}, {k}.pub  (the lab key)", k = k.display())),
    );
    what.extend(state.map(|d| {
        format!(
            "  {}  (the cluster's state dir: CAs, certificates, secrets, known_hosts)",
            d.display()
        )
    }));
    if what.is_empty() {
        what.push("  (no keys or state dir found: only the hosts)".into());
    }
    if super::typed_yes(&format!(
        "Remove the lab hosts of cluster {cluster}, and also:\n{}\nThe next `lab up` + `kubeha up` build a new cluster with new host keys. Type yes: ",
        what.join("\n")
    )) {
        Ok(())
    } else {
        Err(CliError::Input {
            message: "not confirmed; nothing changed".into(),
            help: format!(
                "`{}` removes only the hosts and keeps the keys and the state dir",
                again.replacen(" --purge", "", 1)
            ),
        })
    }
}

/// Holds the state dir's lock (as every run takes it) while the dir is removed; a run that
/// holds it now makes the purge refuse.
fn lock_state(dir: &Path) -> Result<Option<std::fs::File>, CliError> {
    let path = dir.join("lock");
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CliError::io("open", &path)(e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::Input {
            message: format!(
                "another kubeha run holds {}; nothing changed",
                path.display()
            ),
            help: "wait for it to finish, then purge again".into(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(CliError::io("lock", &path)(e)),
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One `lab: …` line on stderr; a closed stderr is not an error.
fn say(msg: &str) {
    progress!("lab: {msg}");
}

fn hosts_table(r: &LabReport) -> String {
    let mut t = Table::new(["NODE", "NAMESPACE", "ADDRESS", "SSHD"]);
    for h in &r.hosts {
        let sshd = match (h.exists, h.sshd) {
            (true, true) => "ok".to_string(),
            (true, false) => "not answering".to_string(),
            (false, _) => "no host".to_string(),
        };
        t.row([
            h.node.clone(),
            h.namespace.clone(),
            format!("{}:{}", h.address, h.ssh_port),
            sshd,
        ]);
    }
    t.render()
}

fn down_table(reports: &[DownReport]) -> String {
    if reports.is_empty() {
        return "no lab found\n".into();
    }
    let mut t = Table::new(["LAB", "NAMESPACES", "LINKS", "PROCESSES", "MOUNTS", "DIRS"]);
    for r in reports {
        t.row([
            r.lab_id.clone(),
            r.namespaces.len().to_string(),
            r.links.len().to_string(),
            r.processes.to_string(),
            r.mounts.len().to_string(),
            r.dirs.len().to_string(),
        ]);
    }
    t.render()
}
