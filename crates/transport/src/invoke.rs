//! What both transports share: the shell line a host runs for a [`Command`], and how the outcome
//! of running it becomes an [`Output`] or a [`TransportError`].

use std::path::Path;

use crate::{
    Command, Output, TransportError,
    command::shell_join,
    error::Detail,
    exec::{Finished, Outcome},
};

/// Extra time the host-side `timeout` gives a command beyond the local deadline. The local
/// deadline is the one that counts; this only reaps what a dropped session left running.
const REAP_AFTER_SECS: u64 = 5;

/// Who runs the command, for sudo and error messages.
pub(crate) struct Login<'a> {
    pub host: &'a str,
    pub user: &'a str,
    /// Whether `sudo -n` is needed for root.
    pub needs_sudo: bool,
}

/// For ssh: where failures of ssh itself point.
pub(crate) struct SshSide<'a> {
    /// `address:port`.
    pub address: &'a str,
    pub known_hosts: &'a Path,
}

/// Refuses commands that cannot be run faithfully.
pub(crate) fn validate(host: &str, cmd: &Command) -> Result<(), TransportError> {
    let reason = if cmd.get_argv().is_empty() {
        Some("the command is empty")
    } else if cmd.get_argv().iter().any(|w| w.contains('\0')) {
        Some("an argument contains a NUL byte")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(TransportError::Invalid {
            host: host.to_string(),
            op: cmd.describe(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

/// The line the host's shell runs: `[sudo -n --] [timeout -k 5 N] argv...`, every word quoted.
pub(crate) fn shell_line(cmd: &Command, login: &Login<'_>, reaper: bool) -> String {
    let mut words: Vec<String> = Vec::with_capacity(cmd.get_argv().len() + 7);
    if cmd.is_sudo() && login.needs_sudo {
        words.extend(["sudo", "-n", "--"].map(String::from));
    }
    if reaper {
        let secs = cmd.get_timeout().as_secs()
            + u64::from(cmd.get_timeout().subsec_nanos() > 0)
            + REAP_AFTER_SECS;
        words.extend([
            "timeout".to_string(),
            "-k".to_string(),
            REAP_AFTER_SECS.to_string(),
            secs.to_string(),
        ]);
    }
    words.extend(cmd.get_argv().iter().cloned());
    shell_join(&words)
}

/// Turns a finished (or killed) run into the caller's result.
pub(crate) fn interpret(
    cmd: &Command,
    login: &Login<'_>,
    ssh: Option<&SshSide<'_>>,
    outcome: Outcome,
) -> Result<Output, TransportError> {
    let host = login.host.to_string();
    let Finished {
        status,
        stdout,
        stderr,
    } = match outcome {
        Outcome::Exited(f) => f,
        Outcome::TimedOut { stderr } => {
            // A dead connection can also run into the deadline; say so when ssh told us.
            if let Some(ssh) = ssh
                && let Some(err) = ssh_failure(&host, login.user, ssh, &stderr)
            {
                return Err(err);
            }
            return Err(TransportError::Timeout {
                host,
                op: cmd.describe(),
                after: cmd.get_timeout(),
            });
        }
    };
    if let Some(ssh) = ssh
        && status == 255
        && let Some(err) = ssh_failure(&host, login.user, ssh, &stderr)
    {
        return Err(err);
    }
    if status == 1 && cmd.is_sudo() && login.needs_sudo && sudo_wants_password(&stderr) {
        return Err(TransportError::SudoPassword {
            host,
            user: login.user.to_string(),
        });
    }
    if status != 0 && cmd.is_checked() {
        let stderr_tail = if cmd.is_sensitive() {
            None
        } else {
            tail(&stderr)
        };
        return Err(TransportError::CommandFailed {
            host,
            op: cmd.describe(),
            status,
            stderr_tail,
        });
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// How ssh itself (not the remote command) failed, recognised from what it printed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SshFailure {
    HostKeyChanged,
    AuthFailed(String),
    Unreachable(String),
}

pub(crate) fn classify(stderr: &str) -> Option<SshFailure> {
    const HOST_KEY: [&str; 3] = [
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
        "Host key verification failed",
        "POSSIBLE DNS SPOOFING DETECTED",
    ];
    const AUTH: [&str; 2] = ["Permission denied (", "Too many authentication failures"];
    const UNREACHABLE: [&str; 15] = [
        "Connection refused",
        "Connection timed out",
        "Operation timed out",
        "No route to host",
        "Network is unreachable",
        "Host is down",
        "Could not resolve hostname",
        "Name or service not known",
        "Connection closed by",
        "Connection reset by",
        "kex_exchange_identification",
        "banner exchange",
        "not responding",
        "Broken pipe",
        "Connection to ",
    ];
    if HOST_KEY.iter().any(|p| stderr.contains(p)) {
        return Some(SshFailure::HostKeyChanged);
    }
    let line_with = |pats: &[&str]| {
        stderr
            .lines()
            .rev()
            .find(|l| pats.iter().any(|p| l.contains(p)))
            .map(|l| l.trim().to_string())
    };
    if let Some(line) = line_with(&AUTH) {
        return Some(SshFailure::AuthFailed(line));
    }
    line_with(&UNREACHABLE).map(SshFailure::Unreachable)
}

fn ssh_failure(host: &str, user: &str, ssh: &SshSide<'_>, stderr: &[u8]) -> Option<TransportError> {
    let text = String::from_utf8_lossy(stderr);
    Some(match classify(&text)? {
        SshFailure::HostKeyChanged => TransportError::HostKeyChanged {
            host: host.to_string(),
            known_hosts: ssh.known_hosts.to_path_buf(),
        },
        SshFailure::AuthFailed(line) => TransportError::AuthFailed {
            host: host.to_string(),
            user: user.to_string(),
            detail: Detail(line),
        },
        SshFailure::Unreachable(line) => TransportError::Unreachable {
            host: host.to_string(),
            address: ssh.address.to_string(),
            detail: Detail(line),
        },
    })
}

fn sudo_wants_password(stderr: &[u8]) -> bool {
    let text = String::from_utf8_lossy(stderr);
    [
        "sudo: a password is required",
        "sudo: a terminal is required",
        "sudo: no tty present",
    ]
    .iter()
    .any(|p| text.contains(p))
}

/// The last lines of stderr, at most 20 lines and about 2 KB, for error messages.
pub(crate) fn tail(stderr: &[u8]) -> Option<Detail> {
    const LINES: usize = 20;
    const BYTES: usize = 2048;
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim_end();
    if text.is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(LINES)..].join("\n");
    if out.len() > BYTES {
        let mut cut = out.len() - BYTES;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = format!("...{}", &out[cut..]);
    }
    Some(Detail(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn recognises_what_ssh_prints() {
        let changed = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
            @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
            @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
            Host key for cp1 has changed and you have requested strict checking.\n\
            Host key verification failed.\n";
        assert_eq!(classify(changed), Some(SshFailure::HostKeyChanged));
        assert_eq!(
            classify("Host key verification failed.\r\n"),
            Some(SshFailure::HostKeyChanged)
        );
        assert_eq!(
            classify("ssh: connect to host 127.0.0.9 port 1: Connection refused\r\n"),
            Some(SshFailure::Unreachable(
                "ssh: connect to host 127.0.0.9 port 1: Connection refused".into()
            ))
        );
        assert!(matches!(
            classify("Timeout, server 10.0.0.1 not responding.\n"),
            Some(SshFailure::Unreachable(_))
        ));
        assert_eq!(
            classify("root@127.0.0.9: Permission denied (publickey).\n"),
            Some(SshFailure::AuthFailed(
                "root@127.0.0.9: Permission denied (publickey).".into()
            ))
        );
        assert_eq!(
            classify("ls: cannot access '/x': No such file or directory\n"),
            None
        );
    }

    #[test]
    fn lines_wrap_sudo_and_the_reaper_around_argv() {
        let login = Login {
            host: "n1",
            user: "ops",
            needs_sudo: true,
        };
        let cmd = Command::new(["cat", "/etc/a b"])
            .sudo()
            .timeout(Duration::from_millis(1500));
        assert_eq!(
            shell_line(&cmd, &login, true),
            "sudo -n -- timeout -k 5 7 cat '/etc/a b'"
        );
        assert_eq!(shell_line(&cmd, &login, false), "sudo -n -- cat '/etc/a b'");
        let root = Login {
            host: "n1",
            user: "root",
            needs_sudo: false,
        };
        assert_eq!(shell_line(&cmd, &root, false), "cat '/etc/a b'");
        assert_eq!(shell_line(&Command::new(["true"]), &login, false), "true");
    }

    #[test]
    fn failures_keep_stderr_unless_sensitive() {
        let login = Login {
            host: "n1",
            user: "root",
            needs_sudo: false,
        };
        let done = |status, stderr: &[u8]| {
            Outcome::Exited(Finished {
                status,
                stdout: Vec::new(),
                stderr: stderr.to_vec(),
            })
        };
        let err =
            interpret(&Command::new(["false"]), &login, None, done(1, b"boom\n")).unwrap_err();
        assert!(
            matches!(&err, TransportError::CommandFailed { status: 1, stderr_tail: Some(d), .. } if d.0 == "boom"),
            "{err:?}"
        );
        let err = interpret(
            &Command::new(["false"]).sensitive(),
            &login,
            None,
            done(1, b"secret\n"),
        )
        .unwrap_err();
        assert!(
            matches!(
                &err,
                TransportError::CommandFailed {
                    stderr_tail: None,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!format!("{err:?}").contains("secret"));
        let out = interpret(
            &Command::new(["false"]).allow_failure(),
            &login,
            None,
            done(1, b""),
        )
        .unwrap();
        assert_eq!(out.status, 1);
    }

    #[test]
    fn tail_keeps_the_end() {
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail(long.as_bytes()).unwrap().0;
        assert!(t.starts_with("line 80\n") && t.ends_with("line 99"), "{t}");
        assert!(tail(b"  \n").is_none());
    }
}
