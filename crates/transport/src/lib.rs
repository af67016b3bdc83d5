//! How kubeha reaches hosts: run a command, upload a file atomically, read a file, and gather
//! file facts in one round trip.
//!
//! [`Transport`] is the seam the planner is written against, so it can be tested with fakes.
//! [`SshTransport`] is the real thing (system `ssh`, host keys pinned in the state directory, one
//! shared connection per node); [`LocalTransport`] runs the same commands on this machine.
//! [`for_each_host`] runs a phase across hosts with bounded parallelism.
//!
//! Everything is synchronous and every wait is bounded: each command has a timeout after which
//! the local process is killed, and on the host a `timeout` wrapper reaps what a dropped session
//! left behind.
//!
//! ```no_run
//! use kubeha_transport::{Command, SshTransport, Transport};
//! # fn demo(node: &kubeha_spec::Node) -> Result<(), kubeha_transport::TransportError> {
//! let host = SshTransport::new(node, std::path::Path::new("/var/lib/kubeha/demo"))?;
//! let out = host.run(&Command::new(["uname", "-r"]))?;
//! host.upload("/etc/kubernetes/kubelet.conf", b"...", 0o600, "root:root")?;
//! # let _ = out; Ok(()) }
//! ```

mod command;
mod error;
mod exec;
mod files;
mod invoke;
mod known_hosts;
mod local;
mod parallel;
mod ssh;
mod watch;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

pub use command::{Command, DEFAULT_TIMEOUT, Output, shell_join, shell_quote};
pub use error::{Detail, TransportError};
pub use files::{FileFacts, UploadFile, sha256_hex, upload_many};
pub use known_hosts::{PinnedKey, fingerprint, forget_host_key, pinned_keys};
pub use local::LocalTransport;
pub use parallel::{DEFAULT_PARALLELISM, for_each_host};
pub use ssh::SshTransport;
pub use watch::{CommandEvent, watch_commands};

/// Time limit for reading and stating files, and the base of the upload limit (which adds a
/// second per MiB).
pub const DEFAULT_FILE_TIMEOUT: Duration = Duration::from_secs(60);

/// One host kubeha can act on.
///
/// File operations run as root (through `sudo -n` when the login user is not root): the files
/// kubeha manages are system files.
pub trait Transport: Send + Sync {
    /// The node name, as used in errors and results.
    fn host(&self) -> &str;

    /// Runs `cmd` and returns its output; a non-zero exit is [`TransportError::CommandFailed`]
    /// unless the command allows failure.
    fn run(&self, cmd: &Command) -> Result<Output, TransportError>;

    /// Writes `content` to the absolute `path` with `mode` and `owner` (`user` or `user:group`),
    /// creating missing parent directories with mode 0755.
    ///
    /// Atomic on the host: the content goes to a temp file in the same directory (mode 0600
    /// while written), is checked against its SHA-256, fsynced, given its mode and owner, then
    /// renamed over `path`. Readers see the old file or the whole new one, never a part, even
    /// if the connection drops mid-upload.
    fn upload(
        &self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
    ) -> Result<(), TransportError>;

    /// The content of the file at `path`, or `None` if nothing is there.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, TransportError>;

    /// Facts about many files in one remote command; paths where nothing exists are left out
    /// of the map, and a path holding something other than a regular file is an error.
    fn stat_files(&self, paths: &[String]) -> Result<BTreeMap<String, FileFacts>, TransportError>;
}

macro_rules! forward {
    ($($ty:ty),*) => {$(
        impl<T: Transport + ?Sized> Transport for $ty {
            fn host(&self) -> &str {
                (**self).host()
            }
            fn run(&self, cmd: &Command) -> Result<Output, TransportError> {
                (**self).run(cmd)
            }
            fn upload(&self, path: &str, content: &[u8], mode: u32, owner: &str) -> Result<(), TransportError> {
                (**self).upload(path, content, mode, owner)
            }
            fn read(&self, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
                (**self).read(path)
            }
            fn stat_files(&self, paths: &[String]) -> Result<BTreeMap<String, FileFacts>, TransportError> {
                (**self).stat_files(paths)
            }
        }
    )*};
}

// So the planner can hold `Box<dyn Transport>`, `Arc<dyn Transport>` or borrow, as it likes.
forward!(&T, Box<T>, Arc<T>);
