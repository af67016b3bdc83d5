//! Errors of the API edge: each names the object involved and what to do next.

use std::time::Duration;

/// Result of every API edge call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to the API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig: {0}; check the admin kubeconfig kubeha wrote for this cluster")]
    Kubeconfig(String),
    #[error("cannot start the API client: {0}")]
    Runtime(String),
    #[error("{what}: the API server answered {code} {reason}: {message}")]
    Api {
        what: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error(
        "{what}: no answer from the API server within {timeout:?}; check that it is up and reachable"
    )]
    RequestTimeout { what: String, timeout: Duration },
    #[error("{what}: cannot talk to the API server: {source}; check that it is up and reachable")]
    Transport {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "{what}: still conflicting after {attempts} attempts (something else keeps changing it); run the command again"
    )]
    Conflict { what: String, attempts: u32 },
    #[error("{what}: not done after {timeout:?}: {detail}")]
    WaitTimeout {
        what: String,
        timeout: Duration,
        detail: String,
    },
    #[error("nodes not Ready after {timeout:?}: {report}")]
    NodesNotReady {
        report: crate::NodesReady,
        timeout: Duration,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("drain {node}: refused: {reasons}", reasons = reasons.join("; "))]
    DrainRefused { node: String, reasons: Vec<String> },
    #[error(
        "drain {node}: evicting pod {pod} is still refused by PodDisruptionBudget {pdb} after {timeout:?}; scale the workload up or relax the budget, then drain again"
    )]
    EvictionBlocked {
        node: String,
        pod: String,
        pdb: String,
        timeout: Duration,
    },
    #[error(
        "node {node}: spec.podCIDR is {current} and cannot be changed to {wanted} (the API server only allows setting it once); drain the node, delete its Node object and restart its kubelet so it registers again and gets a range from the new cluster CIDR"
    )]
    PodCidrImmutable {
        node: String,
        current: String,
        wanted: String,
    },
}

impl Error {
    /// HTTP status code of an API answer, if this is one.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The API answered 404.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    pub(crate) fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    /// Turns a kube client error into one naming `what`.
    pub(crate) fn from_kube(what: &str, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => Error::Api {
                what: what.to_string(),
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            },
            other => Error::Transport {
                what: what.to_string(),
                source: other,
            },
        }
    }
}
