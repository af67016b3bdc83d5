//! The one error type of the PKI authority.
//!
//! Every variant names what it is about (a file, a CA, a leaf) so the operator knows where to
//! look; the underlying cause, when there is one, is kept in `source` and never repeated in the
//! message.

use std::path::PathBuf;

use crate::ids::{CaId, LeafId};

/// What went wrong while generating, loading, checking or storing PKI material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The crypto library could not generate a key pair.
    #[error("could not generate a {algorithm} key for {what}")]
    KeyGeneration {
        what: String,
        algorithm: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed while making {what}")]
    Random { what: &'static str },

    /// A validity so long that the certificate's end date cannot be written in X.509.
    #[error(
        "the validity of {hours}h asked for {what} ends after the year 9999, the last an X.509 date can hold"
    )]
    ValidityTooLong { what: String, hours: u32 },

    /// Building or signing a certificate failed.
    #[error("could not sign the certificate for {what}")]
    Signing {
        what: String,
        #[source]
        source: rcgen::Error,
    },

    /// A leaf's issuing CA is not available (an internal ordering mistake).
    #[error("the {} CA needed for {leaf} is not available", .ca.name())]
    MissingCa { ca: CaId, leaf: LeafId },

    /// A cluster or node name cannot be used as a directory name.
    #[error("{what} '{name}' cannot be used as a directory name in the state dir")]
    InvalidName { what: &'static str, name: String },

    /// Another process holds the state directory lock.
    #[error(
        "state directory lock {path} is held: another kubeha run is probably using this state dir; wait for it to finish and retry"
    )]
    Locked { path: PathBuf },

    /// A file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file or directory could not be written.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A certificate file is not a PEM `CERTIFICATE` holding a parseable X.509 certificate.
    #[error("{path} is not a valid PEM certificate (truncated or corrupt); {advice}")]
    CorruptCertificate { path: PathBuf, advice: &'static str },

    /// A private key file is not a PEM private key kubeha can use.
    #[error(
        "{path} is not a valid PEM private key (truncated, corrupt or an unsupported algorithm); {advice}"
    )]
    CorruptKey { path: PathBuf, advice: &'static str },

    /// A private key does not belong to the certificate next to it.
    #[error("private key {key} does not match certificate {cert}; {advice}")]
    KeyMismatch {
        key: PathBuf,
        cert: PathBuf,
        advice: &'static str,
    },

    /// A leaf certificate in state was not signed by the CA it belongs to.
    #[error(
        "{path} ({leaf}) is not signed by the current {} CA; delete it and its key to have kubeha issue a new one, or restore the CA it was signed with",
        .ca.name()
    )]
    NotSignedByCa {
        path: PathBuf,
        leaf: LeafId,
        ca: CaId,
    },

    /// A certificate that must be a CA is not one.
    #[error("{path} is not a CA certificate (BasicConstraints CA:TRUE missing); {advice}")]
    NotACa { path: PathBuf, advice: &'static str },

    /// A CA whose subject rcgen cannot copy into the leaves' issuer field.
    #[error(
        "{path} has a multi-valued subject name (several attributes in one RDN), which kubeha cannot issue from; {advice}"
    )]
    CaSubjectUnsupported { path: PathBuf, advice: &'static str },

    /// A CA certificate exists without its private key (or the key without the certificate).
    #[error(
        "{present} exists but {missing} does not; kubeha never replaces a CA: restore the missing file from a backup"
    )]
    CaIncomplete { present: PathBuf, missing: PathBuf },

    /// One half of the service-account key pair is missing.
    #[error(
        "{present} exists but {missing} does not; restore the missing file from a backup, or delete both to have kubeha make a new pair (every service-account token becomes invalid)"
    )]
    SaIncomplete { present: PathBuf, missing: PathBuf },

    /// `import_ca` was given a CA while a different one is already in state.
    #[error(
        "a different {} CA already exists at {path}; kubeha never replaces a CA: remove the state dir by hand if you really mean to start over",
        .ca.name()
    )]
    CaExists { ca: CaId, path: PathBuf },

    /// A CA handed to `import_ca` is unusable.
    #[error("the {} CA to import is not usable: {problem}", .ca.name())]
    ImportRejected { ca: CaId, problem: &'static str },

    /// The CA key is encrypted but no passphrase was given.
    #[error(
        "{path} is encrypted; pass the CA passphrase (kubeha reads it from --ca-passphrase-file or the KUBEHA_CA_PASSPHRASE environment variable)"
    )]
    PassphraseRequired { path: PathBuf },

    /// The CA key could not be decrypted with the given passphrase.
    #[error("cannot decrypt {path}: wrong CA passphrase or a corrupt file")]
    Decrypt {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The CA key could not be encrypted.
    #[error("cannot encrypt the CA key for {path}")]
    Encrypt {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A JSON state file (index, secrets) cannot be parsed.
    #[error("{path} is corrupt; {advice}")]
    CorruptStateFile {
        path: PathBuf,
        advice: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// The state was written by a newer kubeha.
    #[error(
        "{path} has state format version {found}, this kubeha understands up to {supported}; use a newer kubeha"
    )]
    UnsupportedStateVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

/// Advice for a damaged CA file: never regenerate silently.
pub(crate) const CA_ADVICE: &str = "restore it from a backup; kubeha never replaces a CA because every certificate signed by it would stop working";

/// Advice for a damaged leaf file: it can be re-issued.
pub(crate) const LEAF_ADVICE: &str =
    "delete it and its key (or certificate) to have kubeha issue a new pair on the next run";

/// Advice for a damaged service-account key.
pub(crate) const SA_ADVICE: &str = "restore it from a backup; a new key invalidates every service-account token, delete sa.key and sa.pub only if that is acceptable";

/// Advice for a damaged `index.json`.
pub(crate) const INDEX_ADVICE: &str = "restore it from a backup, or delete it: the next run rebuilds it from the certificates on disk and re-issues only those that no longer match the cluster file";

/// Advice for a damaged `secrets.json`.
pub(crate) const SECRETS_ADVICE: &str = "restore it from a backup, or delete it to have kubeha generate new secrets (hosts then need a re-deploy)";
