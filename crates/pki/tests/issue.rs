//! `issue_in_memory`: every certificate follows kubeadm's rules and verifies with openssl.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kubeha_pki::issue_in_memory;
use kubeha_spec::KeyAlgorithm;

#[test]
fn ecdsa_stacked_materials_follow_kubeadm() {
    let spec = example("stacked.yaml", KeyAlgorithm::EcdsaP256);
    let now = now();
    let m = issue_in_memory(&spec, now).unwrap();
    check_materials(&spec, &m, now);
    let dir = tempfile::tempdir().unwrap();
    openssl_verify_all(&m, dir.path());
    openssl_check_key(
        &m.service_account.private_pem,
        KeyAlgorithm::EcdsaP256,
        dir.path(),
    );
    for pair in m.cas.values().chain(m.leaves.values()).take(5) {
        openssl_check_key(&pair.key_pem, KeyAlgorithm::EcdsaP256, dir.path());
    }
}

#[test]
fn rsa_materials_follow_kubeadm() {
    // RSA keygen is ~100-200 ms a key in dev builds: a small spec keeps this quick.
    let mut spec = example("stacked.yaml", KeyAlgorithm::Rsa2048);
    spec.nodes
        .retain(|n| n.name == "master-1" || n.name == "node-1");
    let now = now();
    let m = issue_in_memory(&spec, now).unwrap();
    check_materials(&spec, &m, now);
    let dir = tempfile::tempdir().unwrap();
    openssl_verify_all(&m, dir.path());
    openssl_check_key(
        &m.service_account.private_pem,
        KeyAlgorithm::Rsa2048,
        dir.path(),
    );
    for pair in m.cas.values().chain(m.leaves.values()).take(3) {
        openssl_check_key(&pair.key_pem, KeyAlgorithm::Rsa2048, dir.path());
    }
}

/// `cargo test -p kubeha-pki --release --test issue -- --ignored --nocapture timings`
#[test]
#[ignore]
fn timings() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
        let spec = example("external-etcd.yaml", alg);
        let now = now();
        let t = std::time::Instant::now();
        let m = issue_in_memory(&spec, now).unwrap();
        let took = t.elapsed();
        check_materials(&spec, &m, now);
        eprintln!(
            "issue_in_memory(external-etcd, {}): {took:?} for {} keys",
            alg.as_str(),
            m.leaves.len() + 4
        );
    }
}

#[test]
fn external_etcd_spec_gets_every_leaf() {
    let spec = example("external-etcd.yaml", KeyAlgorithm::EcdsaP256);
    let now = now();
    let m = issue_in_memory(&spec, now).unwrap();
    assert_eq!(m.leaves.len(), 41);
    check_materials(&spec, &m, now);
    openssl_verify_all(&m, tempfile::tempdir().unwrap().path());
}
