//! Forced re-issue (`Store::ensure_with`, for `kubeha certs renew`) and the etcd cluster token
//! kept in `secrets.json` (`Store::set_etcd_cluster_token`, for `kubeha etcd snapshot restore`).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kubeha_pki::{IssueReason, LeafKind, StoreOptions};
use kubeha_spec::KeyAlgorithm;

fn open(root: &std::path::Path) -> kubeha_pki::Store {
    let mut s = kubeha_pki::open(root, "stacked", StoreOptions { passphrase: None }).unwrap();
    s.set_scrypt_work_factor(4);
    s
}

#[test]
fn ensure_with_reissues_exactly_the_forced_leaves_and_never_a_ca() {
    let root = tempfile::tempdir().unwrap();
    let spec = example("stacked.yaml", KeyAlgorithm::EcdsaP256);
    let now = now();
    let (m1, _) = open(root.path()).ensure(&spec, now).unwrap();
    let (m2, r) = open(root.path())
        .ensure_with(&spec, now, &|id| id.kind == LeafKind::EtcdServer)
        .unwrap();
    assert!(r.cas_created.is_empty());
    assert_eq!(m1.cas, m2.cas);
    assert!(!r.issued.is_empty());
    for (id, why) in &r.issued {
        assert_eq!(id.kind, LeafKind::EtcdServer);
        assert_eq!(*why, IssueReason::Forced);
        assert_ne!(m1.leaf(id).unwrap().cert_pem, m2.leaf(id).unwrap().cert_pem);
        assert_ne!(m1.leaf(id).unwrap().key_pem, m2.leaf(id).unwrap().key_pem);
    }
    for (id, pair) in &m2.leaves {
        if id.kind != LeafKind::EtcdServer {
            assert_eq!(m1.leaf(id).unwrap(), pair, "{id}");
        }
    }
    // The renewed leaves are then ordinary: a plain ensure reuses them.
    let (m3, r3) = open(root.path()).ensure(&spec, now).unwrap();
    assert!(r3.issued.is_empty());
    assert_eq!(m2.leaves, m3.leaves);
}

#[test]
fn etcd_cluster_token_is_kept_in_secrets_and_survives_ensure() {
    let root = tempfile::tempdir().unwrap();
    let spec = example("stacked.yaml", KeyAlgorithm::EcdsaP256);
    let now = now();
    let (m1, _) = open(root.path()).ensure(&spec, now).unwrap();
    assert_eq!(m1.secrets.etcd_cluster_token, None);
    let mut store = open(root.path());
    store
        .set_etcd_cluster_token(Some("stacked-etcd-r1"))
        .unwrap();
    let (m2, r) = store.ensure(&spec, now).unwrap();
    drop(store);
    assert!(r.issued.is_empty() && !r.secrets_created);
    assert_eq!(
        m2.secrets.etcd_cluster_token.as_deref(),
        Some("stacked-etcd-r1")
    );
    assert_eq!(m2.secrets.keepalived_auth, m1.secrets.keepalived_auth);
    let mut store = open(root.path());
    store.set_etcd_cluster_token(None).unwrap();
    let (m3, _) = store.ensure(&spec, now).unwrap();
    assert_eq!(m3.secrets.etcd_cluster_token, None);
}

#[test]
fn setting_a_token_before_any_secrets_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    assert!(open(root.path()).set_etcd_cluster_token(Some("x")).is_err());
}
