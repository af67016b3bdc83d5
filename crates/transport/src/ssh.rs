//! [`SshTransport`]: a node reached with the system `ssh` client.
//!
//! The system client is used on purpose: it honours the operator's agent and `~/.ssh/config`,
//! and its host-key checking is the reference implementation. kubeha adds three things on the
//! command line: its own known-hosts file (keys pinned on first contact, under the node's name),
//! one shared connection per node (`ControlMaster`), and non-interactive, bounded behaviour.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs,
    net::{IpAddr, SocketAddr},
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process,
    time::Duration,
};

use kubeha_spec::Node;
use sha2::{Digest, Sha256};

use crate::{
    Command, FileFacts, Output, Transport, TransportError,
    exec::{self, Kill, Outcome},
    files,
    invoke::{self, Login, SshSide},
};

/// How long an idle shared connection stays up after the last command: long enough that an
/// immediate re-run reuses it, short enough not to linger.
const CONTROL_PERSIST: &str = "60s";
/// Longest control socket path ssh can bind: `sun_path` is 108 bytes with the NUL, and ssh binds
/// a temporary name 17 bytes longer than the final one first.
const MAX_SOCKET_PATH: usize = 107 - 17;
/// `%C`: the hex SHA-1 ssh makes of local host, remote host, port and user.
const CONTROL_NAME_LEN: usize = 40;

/// A node reached over ssh, with its host key pinned in the state directory.
///
/// All commands to the node share one connection, set up by the first command and kept for
/// 60 s after the last. The host key is checked when a connection is set up, so [`close`]
/// before a check that must see the current key. sshd allows 10 sessions per connection by
/// default (`MaxSessions`): keep concurrent commands per node below that.
///
/// [`close`]: SshTransport::close
#[derive(Debug, Clone)]
pub struct SshTransport {
    name: String,
    address: IpAddr,
    port: u16,
    user: String,
    key: Option<PathBuf>,
    known_hosts: PathBuf,
    /// `ControlPath` value, `%`-escaped for ssh, ending in `%C` or a hash.
    control_path: String,
    connect_timeout: Duration,
    file_timeout: Duration,
}

impl SshTransport {
    /// Prepares to reach `node`; nothing is contacted yet. Creates `<state_dir>/ssh` (0700) for
    /// the control sockets; host keys are pinned in `<state_dir>/known_hosts`.
    pub fn new(node: &Node, state_dir: &Path) -> Result<Self, TransportError> {
        let host = &node.name;
        let control_dir = state_dir.join("ssh");
        private_dir(host, &control_dir)?;
        let control_path =
            if control_dir.as_os_str().len() + 1 + CONTROL_NAME_LEN <= MAX_SOCKET_PATH {
                format!("{}/%C", ssh_path(&control_dir))
            } else {
                // A deep state directory cannot hold a Unix socket; use a private directory in /tmp,
                // named per state directory and node so two clusters never share a connection.
                let euid = rustix::process::geteuid().as_raw();
                let dir = std::env::temp_dir().join(format!("kubeha-ssh-{euid}"));
                private_dir(host, &dir)?;
                let mut h = Sha256::new();
                h.update(state_dir.as_os_str().as_encoded_bytes());
                h.update([0]);
                h.update(format!(
                    "{}@{}:{}",
                    node.ssh.user, node.address, node.ssh.port
                ));
                format!("{}/{}", ssh_path(&dir), &hex::encode(h.finalize())[..16])
            };
        Ok(SshTransport {
            name: node.name.clone(),
            address: node.address,
            port: node.ssh.port,
            user: node.ssh.user.clone(),
            key: node.ssh.key.as_ref().map(PathBuf::from),
            known_hosts: state_dir.join("known_hosts"),
            control_path,
            connect_timeout: Duration::from_secs(10),
            file_timeout: crate::DEFAULT_FILE_TIMEOUT,
        })
    }

    /// Time allowed to set up a new connection (ssh's `ConnectTimeout`, whole seconds, at
    /// least 1).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time limit for `read` and `stat_files`, and the base of the upload limit.
    pub fn with_file_timeout(mut self, timeout: Duration) -> Self {
        self.file_timeout = timeout;
        self
    }

    /// The known-hosts file this transport pins host keys in.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// Ends the shared connection, if one is up. Later commands open a new one, which checks
    /// the host key again.
    pub fn close(&self) -> Result<(), TransportError> {
        let mut cmd = process::Command::new("ssh");
        cmd.args(["-O", "exit"])
            .args(self.options())
            .arg("--")
            .arg(self.address.to_string());
        // Not running (no socket, stale socket) is fine: there is nothing to close.
        exec::run(cmd, None, Duration::from_secs(10), Kill::Child).map_err(|source| {
            TransportError::Spawn {
                host: self.name.clone(),
                program: "ssh".into(),
                source,
            }
        })?;
        Ok(())
    }

    fn login(&self) -> Login<'_> {
        Login {
            host: &self.name,
            user: &self.user,
            needs_sudo: self.user != "root",
        }
    }

    fn address_text(&self) -> String {
        SocketAddr::new(self.address, self.port).to_string()
    }

    /// Everything but the destination and the command.
    fn options(&self) -> Vec<OsString> {
        let connect = self.connect_timeout.as_secs().max(1);
        let mut args: Vec<OsString> = Vec::with_capacity(48);
        let mut opt = |o: String| {
            args.push("-o".into());
            args.push(o.into());
        };
        opt("BatchMode=yes".into());
        opt(format!("ConnectTimeout={connect}"));
        opt("ServerAliveInterval=10".into());
        opt("ServerAliveCountMax=3".into());
        opt("ControlMaster=auto".into());
        opt(format!("ControlPath={}", self.control_path));
        opt(format!("ControlPersist={CONTROL_PERSIST}"));
        opt(format!(
            "UserKnownHostsFile={}",
            ssh_path(&self.known_hosts)
        ));
        opt("GlobalKnownHostsFile=/dev/null".into());
        // accept-new pins an unknown key and refuses a changed one; never `no`.
        opt("StrictHostKeyChecking=accept-new".into());
        opt(format!("HostKeyAlias={}", self.name));
        opt("CheckHostIP=no".into());
        // Readable node names in known_hosts, so the operator can find the line to remove.
        opt("HashKnownHosts=no".into());
        opt("UpdateHostKeys=no".into());
        opt("ClearAllForwardings=yes".into());
        opt("ForwardAgent=no".into());
        opt("ForwardX11=no".into());
        opt("PermitLocalCommand=no".into());
        opt("RequestTTY=no".into());
        opt("LogLevel=ERROR".into());
        if let Some(key) = &self.key {
            opt("IdentitiesOnly=yes".into());
            opt(format!("IdentityFile={}", ssh_path(key)));
        }
        args.extend([
            "-p".into(),
            self.port.to_string().into(),
            "-l".into(),
            self.user.clone().into(),
        ]);
        args
    }
}

impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.name
    }

    fn run(&self, cmd: &Command) -> Result<Output, TransportError> {
        let started = std::time::Instant::now();
        let result = self.run_once(cmd);
        crate::watch::notify(&crate::watch::CommandEvent {
            host: &self.name,
            command: cmd.describe(),
            status: result.as_ref().ok().map(|o| o.status),
            elapsed: started.elapsed(),
        });
        result
    }

    fn upload(
        &self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
    ) -> Result<(), TransportError> {
        files::upload(self, path, content, mode, owner, self.file_timeout)
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
        files::read(self, path, self.file_timeout)
    }

    fn stat_files(&self, paths: &[String]) -> Result<BTreeMap<String, FileFacts>, TransportError> {
        files::stat_files(self, paths, self.file_timeout)
    }
}

impl SshTransport {
    /// One command over ssh, unwatched.
    fn run_once(&self, cmd: &Command) -> Result<Output, TransportError> {
        invoke::validate(&self.name, cmd)?;
        let login = self.login();
        let line = invoke::shell_line(cmd, &login, true);
        let mut ssh = process::Command::new("ssh");
        ssh.args(self.options())
            .arg("--")
            .arg(self.address.to_string())
            .arg(line);
        let outcome: Outcome = exec::run(ssh, cmd.stdin_shared(), cmd.get_timeout(), Kill::Child)
            .map_err(|source| TransportError::Spawn {
            host: self.name.clone(),
            program: "ssh".into(),
            source,
        })?;
        let address = self.address_text();
        let side = SshSide {
            address: &address,
            known_hosts: &self.known_hosts,
        };
        invoke::interpret(cmd, &login, Some(&side), outcome)
    }
}

/// Creates `dir` (and parents) owned by us with mode 0700, or checks that an existing one is.
fn private_dir(host: &str, dir: &Path) -> Result<(), TransportError> {
    let err = |source| TransportError::StateDir {
        host: host.to_string(),
        path: dir.to_path_buf(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let meta = fs::symlink_metadata(dir).map_err(err)?;
    if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(err(std::io::Error::other(
            "not a directory owned by the current user",
        )));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// A path as an ssh option value: `%` doubled (ssh expands `%` tokens in these options) and
/// double-quoted when it holds characters ssh's option parser splits or unescapes.
fn ssh_path(path: &Path) -> String {
    let text = path.to_string_lossy().replace('%', "%%");
    if text
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '#'))
    {
        let mut quoted = String::from("\"");
        for c in text.chars() {
            if matches!(c, '"' | '\\') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    } else {
        text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn option_paths_are_escaped_for_ssh() {
        assert_eq!(
            ssh_path(Path::new("/var/lib/kubeha/known_hosts")),
            "/var/lib/kubeha/known_hosts"
        );
        assert_eq!(ssh_path(Path::new("/tmp/100%/x")), "/tmp/100%%/x");
        assert_eq!(ssh_path(Path::new("/home/J Doe/s")), "\"/home/J Doe/s\"");
        assert_eq!(ssh_path(Path::new("/a\"b")), "\"/a\\\"b\"");
    }
}
