//! What can go wrong building, checking or removing a lab. Every variant names the node,
//! namespace, link or path it concerns; an underlying cause is only ever in `#[source]`.

use std::path::PathBuf;

/// A lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Creating namespaces, links and mounts needs root.
    #[error("`kubeha lab {action}` needs root: it creates namespaces, links and mounts")]
    NotRoot { action: &'static str },
    /// The lab file uses an address the lab may not use.
    #[error("{what} {value} is outside the lab range {allowed}")]
    AddressOutsideLab {
        what: String,
        value: String,
        allowed: &'static str,
    },
    /// The lab file cannot be turned into lab hosts (the message says why).
    #[error("{message}")]
    Invalid { message: String },
    /// An external program could not be started.
    #[error("cannot run {program} ({context})")]
    Spawn {
        program: String,
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// An external program ran and failed.
    #[error("{context}: `{command}` failed ({status}){stderr}")]
    Command {
        context: String,
        command: String,
        status: String,
        stderr: String,
    },
    /// An external program did not finish in time (it was killed).
    #[error("{context}: `{command}` did not finish within {seconds} s")]
    CommandTimeout {
        context: String,
        command: String,
        seconds: u64,
    },
    /// Reading or writing a file or directory failed.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The lab's state file is unreadable.
    #[error("cannot decode lab state {path}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A host's sshd did not answer in time.
    #[error(
        "sshd of {node} (namespace {namespace}) does not answer on {address} within {seconds} s{log}"
    )]
    SshdNotAnswering {
        node: String,
        namespace: String,
        address: String,
        seconds: u64,
        log: String,
    },
    /// The namespace name does not belong to a kubeha lab host.
    #[error("{namespace} is not a kubeha lab host namespace (expected khl-<lab id>-<node>)")]
    NotALabHost { namespace: String },
    /// The lab host does not exist (or its mount namespace is gone).
    #[error("lab host namespace {namespace} is not up ({missing} is missing); run `kubeha lab up`")]
    HostDown { namespace: String, missing: PathBuf },
    /// After `down`, something of the lab is still there.
    #[error("lab {lab_id} is not fully removed: {leftovers}")]
    Leftovers { lab_id: String, leftovers: String },
}

impl LabError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io {
            action,
            path,
            source,
        }
    }

    /// Whether the error is the caller's input (lab file, permissions), not a failure on the way.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            LabError::NotRoot { .. }
                | LabError::AddressOutsideLab { .. }
                | LabError::Invalid { .. }
                | LabError::NotALabHost { .. }
        )
    }
}
