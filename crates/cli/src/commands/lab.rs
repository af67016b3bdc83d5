//! `kubeha lab up|down|status`: lab hosts (network + mount namespaces with their own sshd)
//! on this machine, one per node of a lab cluster file. The work is in `kubeha-lab`.

use std::{io::Write, path::Path, process::ExitCode, sync::Arc};

use kubeha_lab::{DownReport, Lab, LabError, LabOptions, LabReport};
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
        LabCommand::Down { cluster_file, all } => down(g, cluster_file.as_deref(), *all),
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
    };
    super::load_spec(&global)
}

fn options() -> LabOptions {
    LabOptions {
        // Progress goes to stderr; a closed stderr must not stop a half-built lab.
        progress: Some(Arc::new(|node: &str, msg: &str| {
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

fn down(g: &Global, file: Option<&Path>, all: bool) -> Result<ExitCode, CliError> {
    let opts = options();
    let reports: Vec<DownReport> = if all {
        Lab::down_all(&opts).map_err(lab_error(
            "remove the labs found under",
            Path::new(kubeha_lab::names::RUN_ROOT),
        ))?
    } else {
        let loaded = load(g, file)?;
        vec![Lab::down(&loaded.spec, &opts).map_err(lab_error("remove the lab of", &loaded.path))?]
    };
    emit(g.output, &reports, || down_table(&reports))?;
    Ok(ExitCode::SUCCESS)
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
