//! What the PKI authority hands to rendering: PEM text for every CA, leaf and the
//! service-account key pair, plus the generated secrets kept in state.

use std::collections::BTreeMap;

use crate::ids::{CaId, LeafId};

/// A certificate and its private key, PEM-encoded exactly as kubeadm writes them
/// (`CERTIFICATE`; `RSA PRIVATE KEY` PKCS#1 or `EC PRIVATE KEY` SEC1).
#[derive(Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The service-account signing key pair (`sa.key` PKCS#1/SEC1, `sa.pub` PKIX `PUBLIC KEY`).
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccountKeys {
    pub private_pem: String,
    pub public_pem: String,
}

impl std::fmt::Debug for ServiceAccountKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKeys")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

/// Secrets generated once per cluster and kept in the state dir; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    /// Keepalived `auth_pass` (VRRP PASS authentication uses at most 8 characters).
    pub keepalived_auth: String,
    /// etcd's `--initial-cluster-token` when it is not the spec's default: set by
    /// `kubeha etcd snapshot restore`, which rebuilds the cluster under a new token.
    pub etcd_cluster_token: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

/// Everything rendering needs from the PKI authority.
#[derive(Debug, Clone)]
pub struct Materials {
    pub cas: BTreeMap<CaId, CertPair>,
    pub leaves: BTreeMap<LeafId, CertPair>,
    pub service_account: ServiceAccountKeys,
    pub secrets: Secrets,
}

impl Materials {
    pub fn ca(&self, id: CaId) -> Option<&CertPair> {
        self.cas.get(&id)
    }

    pub fn leaf(&self, id: &LeafId) -> Option<&CertPair> {
        self.leaves.get(id)
    }
}
