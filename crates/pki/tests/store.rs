//! The state directory: idempotence, targeted re-issue, refusal to write over corrupt state,
//! locking, passphrase-encrypted CA keys and CA import.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use common::*;
use kubeha_pki::{CaId, IssueReason, LeafId, LeafKind, PkiError, Store, StoreOptions};
use kubeha_spec::{KeyAlgorithm, Spec};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use time::Duration;

const CLUSTER: &str = "stacked";

fn stacked() -> Spec {
    example("stacked.yaml", KeyAlgorithm::EcdsaP256)
}

fn opts(pass: Option<&str>) -> StoreOptions {
    StoreOptions {
        passphrase: pass.map(|p| SecretString::from(p.to_string())),
    }
}

/// `kubeha_pki::open` with a tiny scrypt work factor: dev-build scrypt is slow.
fn open(root: &Path, cluster: &str, opts: StoreOptions) -> Result<Store, PkiError> {
    let mut store = kubeha_pki::open(root, cluster, opts)?;
    store.set_scrypt_work_factor(4);
    Ok(store)
}

/// Every file under `dir`: relative path → (sha256, mode).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
            if e.file_type().unwrap().is_dir() {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    ("<dir>".to_string(), mode),
                );
                stack.push(p);
            } else {
                let hash = hex::encode(Sha256::digest(std::fs::read(&p).unwrap()));
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), (hash, mode));
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn issued_ids(r: &kubeha_pki::IssueReport) -> Vec<LeafId> {
    let mut v: Vec<LeafId> = r.issued.iter().map(|(id, _)| id.clone()).collect();
    v.sort();
    v
}

#[test]
fn first_run_creates_everything_and_a_rerun_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let spec = stacked();
    let now = now();
    let (m1, r1) = {
        let mut store = open(root.path(), CLUSTER, opts(None)).unwrap();
        store.ensure(&spec, now).unwrap()
    };
    check_materials(&spec, &m1, now);
    assert_eq!(r1.cas_created, CaId::ALL.to_vec());
    assert!(r1.service_account_created && r1.secrets_created);
    assert_eq!(r1.issued.len(), m1.leaves.len());
    assert!(r1.issued.iter().all(|(_, why)| *why == IssueReason::New));
    assert_eq!(r1.keys_generated, 3 + m1.leaves.len() + 1);

    let store = open(root.path(), CLUSTER, opts(None)).unwrap();
    let dir = store.dir().to_path_buf();
    // Modes: dirs 0700, certs 0644, keys / index / secrets / sa.pub 0600.
    for (rel, (hash, m)) in snapshot(&dir) {
        let name = rel.to_string_lossy().to_string();
        let want = if hash == "<dir>" {
            0o700
        } else if name.ends_with(".crt") {
            0o644
        } else {
            0o600
        };
        assert_eq!(m, want, "{name}");
    }
    assert_eq!(mode(&dir), 0o700);
    // Files on disk verify with openssl against the CA files on disk.
    for id in m1.leaves.keys() {
        let ca = store.ca_cert_path(id.kind.issuer());
        let (ok, out) = openssl(&[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            store.leaf_cert_path(id).to_str().unwrap(),
        ]);
        assert!(ok, "{id}: {out}");
        assert_eq!(
            std::fs::read_to_string(store.leaf_key_path(id)).unwrap(),
            m1.leaf(id).unwrap().key_pem
        );
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.index_path()).unwrap()).unwrap();
    assert_eq!(index["version"], 1);
    let (ok, out) = openssl(&[
        "ec",
        "-noout",
        "-in",
        store.ca_key_path(CaId::Etcd).to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    drop(store);

    let before = snapshot(&dir);
    let mut store = open(root.path(), CLUSTER, opts(None)).unwrap();
    let (m2, r2) = store.ensure(&spec, now + Duration::hours(1)).unwrap();
    assert_eq!(r2.keys_generated, 0);
    assert!(r2.is_noop(), "{:?}", r2.files_written);
    assert!(r2.issued.is_empty() && r2.cas_created.is_empty());
    assert_eq!(r2.reused, m1.leaves.len());
    assert_eq!(snapshot(&dir), before);
    assert_eq!(m2.cas, m1.cas);
    assert_eq!(m2.leaves, m1.leaves);
    assert_eq!(m2.service_account, m1.service_account);
    assert_eq!(m2.secrets, m1.secrets);
}

#[test]
fn changing_a_node_address_reissues_only_that_nodes_affected_leaves() {
    let root = tempfile::tempdir().unwrap();
    let mut store = open(root.path(), CLUSTER, opts(None)).unwrap();
    let t0 = now();
    let (m1, _) = store.ensure(&stacked(), t0).unwrap();
    let src = example_src("stacked.yaml").replace("address: 10.20.0.12", "address: 10.20.0.42");
    let spec = spec_from(&src, KeyAlgorithm::EcdsaP256);
    let (m2, r) = store.ensure(&spec, now()).unwrap();
    let want = vec![
        LeafId::new("master-2", LeafKind::ApiServer),
        LeafId::new("master-2", LeafKind::EtcdServer),
        LeafId::new("master-2", LeafKind::EtcdPeer),
    ];
    assert_eq!(issued_ids(&r), want);
    assert!(r.issued.iter().all(|(_, why)| *why == IssueReason::Changed));
    assert_eq!(r.keys_generated, 3);
    for (id, pair) in &m2.leaves {
        assert_eq!(want.contains(id), pair != m1.leaf(id).unwrap(), "{id}");
    }
    check_materials_between(&spec, &m2, t0, now());
}

#[test]
fn changing_validity_reissues_leaves_but_keeps_cas() {
    let root = tempfile::tempdir().unwrap();
    let mut store = open(root.path(), CLUSTER, opts(None)).unwrap();
    let mut spec = stacked();
    spec.nodes
        .retain(|n| n.name == "master-1" || n.name == "node-1");
    let (m1, _) = store.ensure(&spec, now()).unwrap();
    spec.certificates.validity_hours = 24 * 90;
    let (m2, r) = store.ensure(&spec, now()).unwrap();
    assert_eq!(r.issued.len(), m1.leaves.len());
    assert_eq!(r.cas_reused, CaId::ALL.to_vec());
    assert_eq!(m2.cas, m1.cas);
    assert_eq!(m2.service_account, m1.service_account);
}

#[test]
fn leaves_expiring_within_30_days_are_renewed() {
    let root = tempfile::tempdir().unwrap();
    let mut store = open(root.path(), CLUSTER, opts(None)).unwrap();
    let spec = stacked();
    let t0 = now();
    let (m1, _) = store.ensure(&spec, t0).unwrap();
    let (_, r) = store.ensure(&spec, t0 + Duration::days(300)).unwrap();
    assert!(r.issued.is_empty());
    let later = t0 + Duration::days(340);
    let (m2, r) = store.ensure(&spec, later).unwrap();
    assert_eq!(r.issued.len(), m1.leaves.len());
    assert!(
        r.issued
            .iter()
            .all(|(_, why)| *why == IssueReason::Expiring)
    );
    assert!(r.cas_created.is_empty() && r.cas_expiring.is_empty());
    check_materials_between(&spec, &m2, t0, later);
}

#[test]
fn removed_nodes_are_reported_stale_and_kept() {
    let root = tempfile::tempdir().unwrap();
    let mut store = open(root.path(), CLUSTER, opts(None)).unwrap();
    let mut spec = stacked();
    store.ensure(&spec, now()).unwrap();
    spec.nodes.retain(|n| n.name != "node-1");
    let (m, r) = store.ensure(&spec, now()).unwrap();
    assert_eq!(r.stale, vec![LeafId::new("node-1", LeafKind::KubeletConf)]);
    assert!(r.issued.is_empty());
    assert!(
        m.leaf(&LeafId::new("node-1", LeafKind::KubeletConf))
            .is_none()
    );
    assert!(
        store
            .leaf_cert_path(&LeafId::new("node-1", LeafKind::KubeletConf))
            .exists()
    );
}

/// Runs `ensure` on a damaged state with a pending change and checks the error and that not
/// one byte changed.
fn assert_refused(store: &mut Store, damage: impl FnOnce(&Store)) -> PkiError {
    damage(store);
    let before = snapshot(store.dir());
    // A pending change, so a careless implementation would write something.
    let src = example_src("stacked.yaml").replace("address: 10.20.0.12", "address: 10.20.0.43");
    let err = store
        .ensure(&spec_from(&src, KeyAlgorithm::EcdsaP256), now())
        .unwrap_err();
    assert_eq!(snapshot(store.dir()), before, "state changed after {err}");
    err
}

fn fresh_store(root: &Path) -> Store {
    let mut store = open(root, CLUSTER, opts(None)).unwrap();
    store.ensure(&stacked(), now()).unwrap();
    store
}

#[test]
fn a_truncated_leaf_certificate_is_refused_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    let mut store = fresh_store(root.path());
    let id = LeafId::new("master-1", LeafKind::FrontProxyClient);
    let path = store.leaf_cert_path(&id);
    let err = assert_refused(&mut store, |_| {
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    });
    assert!(
        matches!(&err, PkiError::CorruptCertificate { path: p, .. } if *p == path),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(path.to_str().unwrap()) && msg.contains("delete it"),
        "{msg}"
    );
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut store = fresh_store(root.path());
    let id = LeafId::new("master-3", LeafKind::EtcdPeer);
    let key = store.leaf_key_path(&id);
    let other = store.leaf_key_path(&LeafId::new("master-3", LeafKind::EtcdServer));
    let err = assert_refused(&mut store, |_| {
        std::fs::copy(&other, &key).map(|_| ()).unwrap()
    });
    assert!(
        matches!(&err, PkiError::KeyMismatch { key: k, .. } if *k == key),
        "{err:?}"
    );
    assert!(err.to_string().contains(key.to_str().unwrap()));
}

#[test]
fn a_leaf_from_another_ca_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut store = fresh_store(root.path());
    let foreign = kubeha_pki::issue_in_memory(&stacked(), now()).unwrap();
    let id = LeafId::new("node-1", LeafKind::KubeletConf);
    let (cert, key) = (store.leaf_cert_path(&id), store.leaf_key_path(&id));
    let err = assert_refused(&mut store, |_| {
        std::fs::write(&cert, &foreign.leaf(&id).unwrap().cert_pem).unwrap();
        std::fs::write(&key, &foreign.leaf(&id).unwrap().key_pem).unwrap();
    });
    assert!(
        matches!(&err, PkiError::NotSignedByCa { path, .. } if *path == cert),
        "{err:?}"
    );
}

#[test]
fn a_corrupt_or_half_missing_ca_is_never_regenerated() {
    let root = tempfile::tempdir().unwrap();
    let mut store = fresh_store(root.path());
    let ca = store.ca_cert_path(CaId::FrontProxy);
    let err = assert_refused(&mut store, |_| {
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap()
    });
    assert!(
        matches!(&err, PkiError::CorruptCertificate { path, .. } if *path == ca),
        "{err:?}"
    );
    assert!(err.to_string().contains("never replaces a CA"));

    let root = tempfile::tempdir().unwrap();
    let mut store = fresh_store(root.path());
    let key = store.ca_key_path(CaId::Etcd);
    let err = assert_refused(&mut store, |_| std::fs::remove_file(&key).unwrap());
    assert!(
        matches!(&err, PkiError::CaIncomplete { missing, .. } if *missing == key),
        "{err:?}"
    );

    let root = tempfile::tempdir().unwrap();
    let mut store = fresh_store(root.path());
    let key = store.ca_key_path(CaId::Kubernetes);
    let other = store.ca_key_path(CaId::Etcd);
    let err = assert_refused(&mut store, |_| {
        std::fs::copy(&other, &key).map(|_| ()).unwrap()
    });
    assert!(
        matches!(&err, PkiError::KeyMismatch { key: k, .. } if *k == key),
        "{err:?}"
    );
}

#[test]
fn a_corrupt_index_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut store = fresh_store(root.path());
    let index = store.index_path();
    let err = assert_refused(&mut store, |_| {
        std::fs::write(&index, "{\"version\": 1, \"leaves\": {").unwrap()
    });
    assert!(
        matches!(&err, PkiError::CorruptStateFile { path, .. } if *path == index),
        "{err:?}"
    );
}

/// A lost `index.json` is rebuilt from the certificates on disk: nothing is re-issued, the
/// rebuilt index is byte-identical, and the next run is a no-op.
#[test]
fn a_deleted_index_is_rebuilt_from_the_certificates_on_disk() {
    let root = tempfile::tempdir().unwrap();
    let mut store = open(root.path(), CLUSTER, opts(None)).unwrap();
    let spec = stacked();
    let (m1, _) = store.ensure(&spec, now()).unwrap();
    let index = store.index_path();
    let original = std::fs::read(&index).unwrap();
    let before = snapshot(store.dir());
    std::fs::remove_file(&index).unwrap();

    let (m2, r) = store.ensure(&spec, now()).unwrap();
    assert!(r.issued.is_empty(), "{:?}", r.issued);
    assert_eq!(r.keys_generated, 0);
    assert_eq!(r.reused, m1.leaves.len());
    let mut rebuilt = r.index_rebuilt.clone();
    rebuilt.sort();
    let mut all: Vec<LeafId> = m1.leaves.keys().cloned().collect();
    all.sort();
    assert_eq!(rebuilt, all);
    assert_eq!(r.files_written, vec![index.clone()]);
    assert_eq!(std::fs::read(&index).unwrap(), original);
    assert_eq!(snapshot(store.dir()), before);
    assert_eq!(m2.leaves, m1.leaves);
    assert!(
        r.notices()
            .iter()
            .any(|n| n.contains("rebuilt it from the certificates on disk")),
        "{:?}",
        r.notices()
    );

    let (_, again) = store.ensure(&spec, now()).unwrap();
    assert!(
        again.is_noop() && again.index_rebuilt.is_empty(),
        "{again:?}"
    );
}

/// Without an index, a leaf is kept only if it certifies what the spec asks for now.
#[test]
fn a_deleted_index_still_reissues_leaves_that_no_longer_match() {
    let root = tempfile::tempdir().unwrap();
    let mut store = open(root.path(), CLUSTER, opts(None)).unwrap();
    let (m1, _) = store.ensure(&stacked(), now()).unwrap();
    std::fs::remove_file(store.index_path()).unwrap();
    let src = example_src("stacked.yaml").replace("address: 10.20.0.12", "address: 10.20.0.42");
    let spec = spec_from(&src, KeyAlgorithm::EcdsaP256);
    let (_, r) = store.ensure(&spec, now()).unwrap();
    let want = vec![
        LeafId::new("master-2", LeafKind::ApiServer),
        LeafId::new("master-2", LeafKind::EtcdServer),
        LeafId::new("master-2", LeafKind::EtcdPeer),
    ];
    assert_eq!(issued_ids(&r), want);
    assert!(r.issued.iter().all(|(_, why)| *why == IssueReason::Changed));
    assert_eq!(r.index_rebuilt.len(), m1.leaves.len() - want.len());

    // A different validity shows in every certificate's dates: all are re-issued.
    std::fs::remove_file(store.index_path()).unwrap();
    let mut longer = spec.clone();
    longer.certificates.validity_hours = 24 * 90;
    let (_, r) = store.ensure(&longer, now()).unwrap();
    assert_eq!(r.issued.len(), m1.leaves.len());
    assert!(r.index_rebuilt.is_empty(), "{:?}", r.index_rebuilt);
}

/// A private key others can read is named, set back to 0600, and nothing is re-issued.
#[test]
fn a_key_file_readable_by_others_is_reported_and_set_to_0600() {
    let root = tempfile::tempdir().unwrap();
    let mut store = fresh_store(root.path());
    let leaf_key = store.leaf_key_path(&LeafId::new("master-1", LeafKind::ApiServer));
    let ca_key = store.ca_key_path(CaId::Etcd);
    let secrets = store.secrets_path();
    for (path, m) in [(&leaf_key, 0o644), (&ca_key, 0o640), (&secrets, 0o604)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let (_, r) = store.ensure(&stacked(), now()).unwrap();
    let mut want = vec![
        (leaf_key.clone(), 0o644),
        (ca_key.clone(), 0o640),
        (secrets.clone(), 0o604),
    ];
    want.sort();
    assert_eq!(r.modes_corrected, want);
    assert!(r.issued.is_empty() && r.files_written.is_empty(), "{r:?}");
    assert!(!r.is_noop());
    for path in [&leaf_key, &ca_key, &secrets] {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    let notices = r.notices();
    assert!(
        notices
            .iter()
            .any(|n| n.contains(leaf_key.to_str().unwrap()) && n.contains("0644")),
        "{notices:?}"
    );
    let (_, again) = store.ensure(&stacked(), now()).unwrap();
    assert!(again.is_noop(), "{again:?}");
}

#[test]
fn a_second_open_is_refused_while_the_first_holds_the_lock() {
    let root = tempfile::tempdir().unwrap();
    let first = open(root.path(), CLUSTER, opts(None)).unwrap();
    let start = std::time::Instant::now();
    let err = open(root.path(), CLUSTER, opts(None)).unwrap_err();
    assert!(start.elapsed() >= std::time::Duration::from_millis(1500));
    let lock = first.dir().join("lock");
    assert!(
        matches!(&err, PkiError::Locked { path } if *path == lock),
        "{err:?}"
    );
    assert!(err.to_string().contains("another kubeha run"));
    drop(first);
    open(root.path(), CLUSTER, opts(None)).unwrap();
}

#[test]
fn encrypted_ca_keys_round_trip_and_need_the_passphrase() {
    let root = tempfile::tempdir().unwrap();
    let spec = stacked();
    let (m1, _) = open(root.path(), CLUSTER, opts(Some("correct horse")))
        .unwrap()
        .ensure(&spec, now())
        .unwrap();
    let dir = root.path().join(CLUSTER);
    for id in CaId::ALL {
        let age = dir.join("pki").join(format!("{}.key.age", id.base()));
        assert!(
            std::fs::read(&age)
                .unwrap()
                .starts_with(b"age-encryption.org/v1")
        );
        assert!(!dir.join("pki").join(format!("{}.key", id.base())).exists());
        assert_eq!(mode(&age), 0o600);
    }
    let (m2, r) = open(root.path(), CLUSTER, opts(Some("correct horse")))
        .unwrap()
        .ensure(&spec, now())
        .unwrap();
    assert!(r.is_noop());
    assert_eq!(m2.cas, m1.cas);

    let err = open(root.path(), CLUSTER, opts(Some("wrong")))
        .unwrap()
        .ensure(&spec, now())
        .unwrap_err();
    assert!(matches!(&err, PkiError::Decrypt { .. }), "{err:?}");
    assert!(err.to_string().contains("wrong CA passphrase"));
}

#[test]
fn a_missing_passphrase_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let spec = stacked();
    open(root.path(), CLUSTER, opts(Some("pw")))
        .unwrap()
        .ensure(&spec, now())
        .unwrap();
    let mut store = open(root.path(), CLUSTER, opts(None)).unwrap();
    let before = snapshot(store.dir());
    let err = store.ensure(&spec, now()).unwrap_err();
    assert!(
        matches!(&err, PkiError::PassphraseRequired { path } if path.extension().unwrap() == "age"),
        "{err:?}"
    );
    assert!(err.to_string().contains("passphrase"));
    assert_eq!(snapshot(store.dir()), before);
}

#[test]
fn plain_ca_keys_are_encrypted_when_a_passphrase_is_given() {
    let root = tempfile::tempdir().unwrap();
    let spec = stacked();
    let (m1, _) = open(root.path(), CLUSTER, opts(None))
        .unwrap()
        .ensure(&spec, now())
        .unwrap();
    let mut store = open(root.path(), CLUSTER, opts(Some("pw"))).unwrap();
    let (m2, r) = store.ensure(&spec, now()).unwrap();
    assert_eq!(r.cas_encrypted, CaId::ALL.to_vec());
    assert_eq!(r.keys_generated, 0);
    assert_eq!(m2.cas, m1.cas);
    for id in CaId::ALL {
        assert!(!store.ca_key_path(id).exists() && store.ca_key_age_path(id).exists());
    }
    let (_, r) = store.ensure(&spec, now()).unwrap();
    assert!(r.is_noop());
}

/// A CA made by openssl, key in PKCS#8 (`PRIVATE KEY`), as an operator would bring it.
fn openssl_ca(dir: &Path, cn: &str) -> (String, String) {
    let (k, c) = (dir.join(format!("{cn}.key")), dir.join(format!("{cn}.crt")));
    let (ok, out) = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        k.to_str().unwrap(),
        "-out",
        c.to_str().unwrap(),
        "-subj",
        &format!("/O=Example/CN={cn}"),
        "-days",
        "365",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
    ]);
    assert!(ok, "{out}");
    (
        std::fs::read_to_string(c).unwrap(),
        std::fs::read_to_string(k).unwrap(),
    )
}

#[test]
fn an_imported_ca_signs_the_leaves() {
    let root = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_ca(tmp.path(), "my-root");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let mut store = open(root.path(), CLUSTER, opts(None)).unwrap();

    // Not a CA / wrong key are refused, nothing written.
    let m = kubeha_pki::issue_in_memory(&stacked(), now()).unwrap();
    let leaf = m
        .leaf(&LeafId::new("master-1", LeafKind::ApiServer))
        .unwrap();
    let err = store
        .import_ca(CaId::Kubernetes, &leaf.cert_pem, &leaf.key_pem)
        .unwrap_err();
    assert!(matches!(err, PkiError::ImportRejected { .. }), "{err:?}");
    let err = store
        .import_ca(CaId::Kubernetes, &cert, &m.ca(CaId::Etcd).unwrap().key_pem)
        .unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
    assert!(!store.ca_cert_path(CaId::Kubernetes).exists());

    store.import_ca(CaId::Kubernetes, &cert, &key).unwrap();
    let stored_key = std::fs::read_to_string(store.ca_key_path(CaId::Kubernetes)).unwrap();
    assert!(
        stored_key.starts_with("-----BEGIN EC PRIVATE KEY-----"),
        "stored as kubeadm writes it"
    );
    store.import_ca(CaId::Kubernetes, &cert, &key).unwrap(); // same CA again: fine

    let (m, r) = store.ensure(&stacked(), now()).unwrap();
    assert_eq!(r.cas_created, vec![CaId::FrontProxy, CaId::Etcd]);
    assert_eq!(m.ca(CaId::Kubernetes).unwrap().cert_pem, cert);
    let ca_file = tmp.path().join("my-root.crt");
    for (id, _) in m
        .leaves
        .iter()
        .filter(|(id, _)| id.kind.issuer() == CaId::Kubernetes)
    {
        let (ok, out) = openssl(&[
            "verify",
            "-CAfile",
            ca_file.to_str().unwrap(),
            store.leaf_cert_path(id).to_str().unwrap(),
        ]);
        assert!(ok, "{id}: {out}");
    }

    let (other, other_key) = openssl_ca(tmp.path(), "other-root");
    let err = store
        .import_ca(CaId::Kubernetes, &other, &other_key)
        .unwrap_err();
    let ca_path = store.ca_cert_path(CaId::Kubernetes);
    assert!(
        matches!(&err, PkiError::CaExists { path, .. } if *path == ca_path),
        "{err:?}"
    );
    assert!(err.to_string().contains(ca_path.to_str().unwrap()));
}

#[test]
fn rsa_state_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let mut spec = example("stacked.yaml", KeyAlgorithm::Rsa2048);
    spec.nodes.retain(|n| n.name == "master-1");
    let now = now();
    let mut store = open(root.path(), CLUSTER, opts(None)).unwrap();
    let (m, _) = store.ensure(&spec, now).unwrap();
    check_materials(&spec, &m, now);
    for path in [
        store.ca_key_path(CaId::Kubernetes),
        store.sa_key_path(),
        store.leaf_key_path(&LeafId::new("master-1", LeafKind::ApiServer)),
    ] {
        let (ok, out) = openssl(&["rsa", "-check", "-noout", "-in", path.to_str().unwrap()]);
        assert!(
            ok && out.contains("RSA key ok"),
            "{}: {out}",
            path.display()
        );
    }
    let (_, r) = store.ensure(&spec, now).unwrap();
    assert!(r.is_noop() && r.keys_generated == 0);
}

/// `cargo test -p kubeha-pki --test store -- --ignored --nocapture timings`
#[test]
#[ignore]
fn timings() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
        let root = tempfile::tempdir().unwrap();
        let spec = example("external-etcd.yaml", alg);
        let mut store = open(root.path(), "ha-cluster", opts(None)).unwrap();
        let t = std::time::Instant::now();
        let (_, r) = store.ensure(&spec, now()).unwrap();
        let first = t.elapsed();
        let t = std::time::Instant::now();
        let (_, r2) = store.ensure(&spec, now()).unwrap();
        let again = t.elapsed();
        assert!(r2.is_noop());
        eprintln!(
            "ensure(external-etcd, {}): first run {first:?} ({} keys, {} files), no-op re-run {again:?}",
            alg.as_str(),
            r.keys_generated,
            r.files_written.len()
        );
    }
}
