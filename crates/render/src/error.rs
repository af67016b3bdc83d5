//! Rendering errors. Rendering is pure, so these mean missing inputs or a bug, never I/O.

use kubeha_pki::{CaId, LeafId};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The PKI materials lack a CA this host needs.
    #[error("no {ca} certificate authority in the PKI materials")]
    MissingCa { ca: CaId },
    /// The PKI materials lack a leaf certificate this host needs.
    #[error("no certificate {leaf} in the PKI materials")]
    MissingLeaf { leaf: LeafId },
    /// Two parts of the renderer produced different content for one path on one host.
    #[error("two different files rendered for {path} on {node}")]
    Conflict { node: String, path: String },
    /// A typed object could not be serialized.
    #[error("cannot serialize {what}")]
    Serialize {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub type Result<T, E = RenderError> = std::result::Result<T, E>;
