//! [`LocalTransport`]: this machine as a host, for tests, fakes and the lab supervisor.

use std::{collections::BTreeMap, process, time::Duration};

use crate::{
    Command, FileFacts, Output, Transport, TransportError,
    exec::{self, Kill},
    files,
    invoke::{self, Login},
};

/// Runs commands on this machine through `sh -c`, with the same quoting, sudo, timeout, file
/// and error semantics as [`crate::SshTransport`].
///
/// On timeout the command's whole process group is killed. Known gap: as a non-root user with
/// `sudo`, only `sudo` itself can be killed, not the root process it started.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    name: String,
    user: String,
    needs_sudo: bool,
    file_timeout: Duration,
}

impl LocalTransport {
    /// A transport that calls this machine `name` in results and errors.
    pub fn new(name: impl Into<String>) -> Self {
        let root = rustix::process::geteuid().is_root();
        let user = if root {
            "root".to_string()
        } else {
            std::env::var("USER").unwrap_or_else(|_| "the current user".into())
        };
        LocalTransport {
            name: name.into(),
            user,
            needs_sudo: !root,
            file_timeout: crate::DEFAULT_FILE_TIMEOUT,
        }
    }

    /// Time limit for `read` and `stat_files`, and the base of the upload limit.
    pub fn with_file_timeout(mut self, timeout: Duration) -> Self {
        self.file_timeout = timeout;
        self
    }

    fn login(&self) -> Login<'_> {
        Login {
            host: &self.name,
            user: &self.user,
            needs_sudo: self.needs_sudo,
        }
    }
}

impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.name
    }

    fn run(&self, cmd: &Command) -> Result<Output, TransportError> {
        invoke::validate(&self.name, cmd)?;
        let login = self.login();
        // Run through the same quoted line ssh would send, so both paths exercise the quoting.
        let line = invoke::shell_line(cmd, &login, false);
        let mut child = process::Command::new("sh");
        child.arg("-c").arg(line);
        let outcome = exec::run(child, cmd.stdin_shared(), cmd.get_timeout(), Kill::Group)
            .map_err(|source| TransportError::Spawn {
                host: self.name.clone(),
                program: "sh".into(),
                source,
            })?;
        invoke::interpret(cmd, &login, None, outcome)
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
