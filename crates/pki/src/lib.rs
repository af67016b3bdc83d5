//! kubeha's PKI authority.
//!
//! kubeha, not the hosts, owns every CA and issues every certificate a kubeadm cluster has,
//! with the same subjects, usages, SANs and validity (see [`profile`]). The state directory is
//! the cluster's memory: CAs are created once and never replaced silently; a leaf is
//! re-issued only when what it certifies changed.
//!
//! - [`issue_in_memory`]: every CA, leaf, the service-account key pair and the secrets for a
//!   spec, in memory (tests, dry runs).
//! - [`open`] + [`Store::ensure`]: the same, persisted in the state directory and reused across
//!   runs (layout and rules in [`store`]).
//! - [`leaf_profiles`]: the pure "which certificate says what" table both build on.

mod check;
mod der;
pub mod error;
pub mod ids;
mod issue;
mod keys;
pub mod materials;
pub mod profile;
pub mod store;

pub use error::PkiError;
pub use ids::{CaId, LeafId, LeafKind};
pub use issue::{BACKDATE, issue_in_memory};
pub use materials::{BootstrapToken, CertPair, Materials, Secrets, ServiceAccountKeys};
pub use profile::{ExtKeyUsage, LeafProfile, leaf_ids, leaf_profile, leaf_profiles};
pub use store::{IssueReason, IssueReport, StateView, Store, StoreOptions, open};
