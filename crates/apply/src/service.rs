//! Starting and checking services: systemd on real hosts, kubeha's own supervisor on lab
//! hosts (which have no systemd; it runs each unit's `ExecStart` from the very unit file
//! kubeha rendered).

use kubeha_transport::{Command, Transport, TransportError, shell_join};

/// How a host runs services.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ServiceManager {
    Systemd,
    /// `<binary> service start|stop|restart|reload|status <unit>` on the host.
    Supervisor {
        binary: String,
    },
}

/// Shell that prints, for each unit argument, `<unit> active|inactive`.
const SYSTEMD_STATUS: &str = r#"for u in "$@"; do if systemctl is-active --quiet "$u"; then echo "$u active"; else echo "$u inactive"; fi; done"#;
const SUPERVISOR_STATUS: &str = r#"bin=$1; shift; for u in "$@"; do if "$bin" service status "$u" >/dev/null 2>&1; then echo "$u active"; else echo "$u inactive"; fi; done"#;

impl ServiceManager {
    pub fn is_lab(&self) -> bool {
        matches!(self, ServiceManager::Supervisor { .. })
    }

    /// Status of each unit, in one remote command.
    pub fn status(
        &self,
        t: &dyn Transport,
        units: &[String],
    ) -> Result<Vec<(String, bool)>, TransportError> {
        if units.is_empty() {
            return Ok(vec![]);
        }
        let cmd = match self {
            ServiceManager::Systemd => Command::script(SYSTEMD_STATUS).args(units.iter().cloned()),
            ServiceManager::Supervisor { binary } => Command::script(SUPERVISOR_STATUS)
                .arg(binary.clone())
                .args(units.iter().cloned()),
        }
        .sudo();
        let out = t.run(&cmd)?;
        Ok(out
            .stdout_lossy()
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(u, s)| (u.to_string(), s == "active"))
            .collect())
    }

    /// Makes systemd re-read unit files (nothing to do for the supervisor).
    pub fn reload(&self, t: &dyn Transport) -> Result<(), TransportError> {
        match self {
            ServiceManager::Systemd => t
                .run(&Command::new(["systemctl", "daemon-reload"]).sudo())
                .map(|_| ()),
            ServiceManager::Supervisor { .. } => Ok(()),
        }
    }

    /// Enables and starts `unit` without waiting for it to report ready: etcd members only
    /// become ready together, so they must all be started before any is waited on.
    pub fn start(&self, t: &dyn Transport, unit: &str) -> Result<(), TransportError> {
        let cmd = match self {
            ServiceManager::Systemd => {
                Command::new(["systemctl", "enable", "--now", "--no-block", unit])
            }
            ServiceManager::Supervisor { binary } => {
                Command::new([binary.as_str(), "service", "start", unit])
            }
        };
        t.run(&cmd.sudo()).map(|_| ())
    }

    pub fn restart(&self, t: &dyn Transport, unit: &str) -> Result<(), TransportError> {
        let cmd = match self {
            ServiceManager::Systemd => Command::new(["systemctl", "restart", "--no-block", unit]),
            ServiceManager::Supervisor { binary } => {
                Command::new([binary.as_str(), "service", "restart", unit])
            }
        };
        t.run(&cmd.sudo()).map(|_| ())
    }

    /// Applies a changed config without stopping the unit: its `ExecReload` (for HAProxy,
    /// `haproxy -c` then `SIGUSR2` to the master). Waits for the reload commands, so an
    /// invalid config is an error here and the old process keeps running.
    pub fn reload_unit(&self, t: &dyn Transport, unit: &str) -> Result<(), TransportError> {
        let cmd = match self {
            ServiceManager::Systemd => Command::new(["systemctl", "reload", unit]),
            ServiceManager::Supervisor { binary } => {
                Command::new([binary.as_str(), "service", "reload", unit])
            }
        };
        t.run(&cmd.sudo()).map(|_| ())
    }

    pub fn stop(&self, t: &dyn Transport, unit: &str) -> Result<(), TransportError> {
        let cmd = match self {
            ServiceManager::Systemd => Command::new(["systemctl", "stop", unit]),
            ServiceManager::Supervisor { binary } => {
                Command::new([binary.as_str(), "service", "stop", unit])
            }
        };
        t.run(&cmd.sudo()).map(|_| ())
    }

    /// A human description, e.g. for `kubeha plan`.
    pub fn describe_start(&self, unit: &str) -> String {
        match self {
            ServiceManager::Systemd => shell_join(&["systemctl", "enable", "--now", unit]),
            ServiceManager::Supervisor { .. } => format!("kubeha service start {unit}"),
        }
    }
}

/// The binary a unit needs on the host, when kubeha cannot assume it is there.
pub fn required_binary(unit: &str) -> Option<&'static str> {
    match unit {
        "kubelet.service" => Some("kubelet"),
        "containerd.service" => Some("containerd"),
        _ => None,
    }
}
