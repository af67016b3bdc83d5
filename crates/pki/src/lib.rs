//! kubeha's PKI authority.
//!
//! kubeha, not the hosts, owns every CA and issues every certificate a kubeadm cluster has,
//! with the same subjects, usages, SANs and validity (see `profile`). The state directory is
//! the cluster's memory: CAs are created once and never replaced silently; a leaf is
//! re-issued only when what it certifies changed.

pub mod ids;
pub mod materials;

pub use ids::{CaId, LeafId, LeafKind};
pub use materials::{CertPair, Materials, Secrets, ServiceAccountKeys};
