//! What can go wrong reaching a host, named so an operator knows which host and what to do.

use std::{fmt, io, path::PathBuf, time::Duration};

/// Text printed by ssh or by the host, kept as an error source so that chain-walking reporters
/// print it once, below the message that names the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail(pub String);

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Detail {}

/// Why an operation on a host failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No ssh session could be set up or kept: connection refused, timed out, no route, or the
    /// connection dropped mid-command.
    #[error("cannot reach host {host} at {address}")]
    Unreachable {
        /// Node name.
        host: String,
        /// `address:port` that was dialled.
        address: String,
        /// ssh's own account of the failure.
        #[source]
        detail: Detail,
    },
    /// The host presented a key other than the one pinned on first contact; ssh refused it.
    #[error("the ssh host key of {host} no longer matches the key pinned in {}", known_hosts.display())]
    HostKeyChanged {
        /// Node name (also the name of its line in `known_hosts`).
        host: String,
        /// The known-hosts file kubeha keeps in its state directory.
        known_hosts: PathBuf,
    },
    /// The host refused every key offered for the user.
    #[error("ssh login as {user} on {host} was refused")]
    AuthFailed {
        /// Node name.
        host: String,
        /// Remote user kubeha logs in as.
        user: String,
        /// ssh's own account of the failure.
        #[source]
        detail: Detail,
    },
    /// `sudo -n` wanted a password (or a terminal) for the user.
    #[error("sudo on {host} asks {user} for a password")]
    SudoPassword {
        /// Node name.
        host: String,
        /// Remote user kubeha logs in as.
        user: String,
    },
    /// The operation did not finish in time; the local process was killed.
    #[error("{op} on {host} timed out after {}", seconds(after))]
    Timeout {
        /// Node name.
        host: String,
        /// What was running, e.g. ``command `systemctl restart etcd` `` or `upload of /etc/x`.
        op: String,
        /// The limit that was exceeded.
        after: Duration,
    },
    /// The remote command ran and failed.
    #[error("{op} on {host} failed with {}", status_text(*status))]
    CommandFailed {
        /// Node name.
        host: String,
        /// What was running (never the arguments of a sensitive command).
        op: String,
        /// Exit status; 128 + n when killed by signal n.
        status: i32,
        /// The last lines of its standard error; `None` for sensitive commands.
        #[source]
        stderr_tail: Option<Detail>,
    },
    /// A path that must be a regular file is something else (typically a directory).
    #[error("{path} on {host} is not a regular file")]
    NotAFile {
        /// Node name.
        host: String,
        /// The path on the host.
        path: String,
    },
    /// The request was refused before contacting the host (bad path, owner, mode or argv).
    #[error("refusing {op} on {host}: {reason}")]
    Invalid {
        /// Node name.
        host: String,
        /// What was asked for.
        op: String,
        /// Why it was refused.
        reason: String,
    },
    /// The host answered in a form kubeha did not expect (a missing or unusual tool).
    #[error("unexpected output from {op} on {host}")]
    Protocol {
        /// Node name.
        host: String,
        /// What was running.
        op: String,
        /// What was wrong with the output.
        #[source]
        detail: Detail,
    },
    /// A local program (ssh, sh) could not be started.
    #[error("cannot start {program} for {host}")]
    Spawn {
        /// Node name.
        host: String,
        /// The program that failed to start.
        program: String,
        #[source]
        source: io::Error,
    },
    /// kubeha's known-hosts file could not be read or rewritten.
    #[error("cannot update the host keys pinned for {host} in {}", path.display())]
    KnownHosts {
        /// Node name (the name its keys are pinned under).
        host: String,
        /// The known-hosts file.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The transport's part of the state directory could not be prepared.
    #[error("cannot prepare {} for {host}", path.display())]
    StateDir {
        /// Node name.
        host: String,
        /// The directory that could not be created or secured.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl TransportError {
    /// The node the error is about.
    pub fn host(&self) -> &str {
        match self {
            TransportError::Unreachable { host, .. }
            | TransportError::HostKeyChanged { host, .. }
            | TransportError::AuthFailed { host, .. }
            | TransportError::SudoPassword { host, .. }
            | TransportError::Timeout { host, .. }
            | TransportError::CommandFailed { host, .. }
            | TransportError::NotAFile { host, .. }
            | TransportError::Invalid { host, .. }
            | TransportError::Protocol { host, .. }
            | TransportError::Spawn { host, .. }
            | TransportError::KnownHosts { host, .. }
            | TransportError::StateDir { host, .. } => host,
        }
    }

    /// What the operator can do about it, when there is something specific to say.
    pub fn help(&self) -> Option<String> {
        match self {
            TransportError::Unreachable { address, .. } => Some(format!(
                "check that the machine is up, that sshd listens on {address} and that no firewall drops the connection"
            )),
            TransportError::HostKeyChanged { host, known_hosts } => Some(format!(
                "if {host} was reinstalled or its keys rotated, verify its new key out of band (e.g. on its console: \
                 ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then forget the old key with \
                 `ssh-keygen -R {host} -f {}` (or run `kubeha node replace {host} --new-host-key`, which \
                 re-pins that node only); otherwise treat this as a possible attack",
                known_hosts.display()
            )),
            TransportError::AuthFailed { host, user, .. } => Some(format!(
                "check nodes[].ssh.key for {host} and that its public key is in ~{user}/.ssh/authorized_keys there"
            )),
            TransportError::SudoPassword { user, .. } => Some(format!(
                "allow {user} passwordless sudo (a sudoers line `{user} ALL=(ALL) NOPASSWD: ALL`), or log in as root"
            )),
            TransportError::Timeout { .. } => Some(
                "the host may be overloaded or a command hung; run again, or raise the timeout"
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// `1s`, `1.5s`: short and stable, for messages.
fn seconds(d: &Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn status_text(status: i32) -> String {
    if status > 128 {
        format!("exit status {status} (signal {})", status - 128)
    } else {
        format!("exit status {status}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_host_and_keep_the_cause_apart() {
        let e = TransportError::Unreachable {
            host: "cp1".into(),
            address: "127.0.0.9:22".into(),
            detail: Detail("ssh: connect to host 127.0.0.9 port 22: Connection refused".into()),
        };
        assert_eq!(e.to_string(), "cannot reach host cp1 at 127.0.0.9:22");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("ssh: connect to host 127.0.0.9 port 22: Connection refused")
        );

        let e = TransportError::Timeout {
            host: "cp1".into(),
            op: "command `sleep 10`".into(),
            after: Duration::from_millis(1500),
        };
        assert_eq!(
            e.to_string(),
            "command `sleep 10` on cp1 timed out after 1.5s"
        );

        let e = TransportError::HostKeyChanged {
            host: "etcd-1".into(),
            known_hosts: "/s/known_hosts".into(),
        };
        assert_eq!(
            e.to_string(),
            "the ssh host key of etcd-1 no longer matches the key pinned in /s/known_hosts"
        );
        assert!(
            e.help()
                .is_some_and(|h| h.contains("ssh-keygen -R etcd-1 -f /s/known_hosts"))
        );
        assert_eq!(e.host(), "etcd-1");

        let e = TransportError::CommandFailed {
            host: "w1".into(),
            op: "a sensitive command".into(),
            status: 137,
            stderr_tail: None,
        };
        assert_eq!(
            e.to_string(),
            "a sensitive command on w1 failed with exit status 137 (signal 9)"
        );
        assert!(std::error::Error::source(&e).is_none());
    }
}
