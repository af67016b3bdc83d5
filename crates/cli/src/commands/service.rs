//! `kubeha service start|stop|restart|reload|status UNIT` (hidden): runs on a lab host, which
//! has no systemd, invoked over SSH as `<path of kubeha> service start etcd.service`. It starts the
//! unit's `ExecStart` detached, from the very unit file kubeha rendered (`reload` runs its
//! `ExecReload` lines: HAProxy checks its config, then re-executes in place); see
//! `kubeha_lab::supervisor`. It does not restart crashed services: `kubeha up` does.
//!
//! Exit status: 0 success (status: active), 1 failure, 2 unknown or unusable unit,
//! 3 status: inactive (as `systemctl is-active`).

use std::process::ExitCode;

use kubeha_lab::supervisor::{Action, Supervisor, UNIT_DIRS};

use crate::{
    args::{ServiceAction, ServiceArgs},
    error::CliError,
    output::print_stdout,
};

/// `kubeha service status` of an inactive unit.
const EXIT_INACTIVE: u8 = 3;

pub fn run(a: &ServiceArgs) -> Result<ExitCode, CliError> {
    // A host booted with systemd has this directory; lab hosts get a fresh /run without it.
    if std::path::Path::new("/run/systemd/system").exists() {
        return Err(CliError::Input {
            message:
                "this host runs systemd: `kubeha service` is only for lab hosts, which have none"
                    .into(),
            help: format!(
                "use `systemctl {} {}`",
                format!("{:?}", a.action).to_lowercase(),
                a.unit
            ),
        });
    }
    let action = match a.action {
        ServiceAction::Start => Action::Start,
        ServiceAction::Stop => Action::Stop,
        ServiceAction::Restart => Action::Restart,
        ServiceAction::Reload => Action::Reload,
        ServiceAction::Status => Action::Status,
    };
    match Supervisor::default().run(action, &a.unit) {
        Ok(st) => {
            print_stdout(&format!("{st}\n"));
            Ok(if action == Action::Status && !st.active {
                ExitCode::from(EXIT_INACTIVE)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(e) if e.is_input() => Err(CliError::Input {
            message: e.to_string(),
            help: format!("unit files are read from {}", UNIT_DIRS.join(", ")),
        }),
        Err(e) => Err(CliError::Io {
            action: "run service",
            path: a.unit.clone().into(),
            source: std::io::Error::other(e),
        }),
    }
}
