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

/// `loadBalancer.etcdPort` (the lab sets it): every etcd server certificate also names the VIP,
/// and openssl accepts it for a client dialing the VIP; the peer certificates, and the server
/// certificates of a spec without the field, do not name it.
#[test]
fn etcd_server_cert_names_the_vip_only_with_etcd_port() {
    use kubeha_pki::{LeafId, LeafKind};
    use std::net::IpAddr;
    use x509_parser::prelude::FromDer;

    let vip: IpAddr = "198.18.0.100".parse().unwrap();
    let with = example("lab.yaml", KeyAlgorithm::EcdsaP256);
    assert_eq!(with.load_balancer.as_ref().unwrap().etcd_port, Some(2379));
    let mut without = with.clone();
    without.load_balancer.as_mut().unwrap().etcd_port = None;
    let dir = tempfile::tempdir().unwrap();
    for (spec, want_vip) in [(&with, true), (&without, false)] {
        let now = now();
        let m = issue_in_memory(spec, now).unwrap();
        check_materials(spec, &m, now);
        let ca = dir.path().join("etcd-ca.crt");
        std::fs::write(&ca, &m.ca(kubeha_pki::CaId::Etcd).unwrap().cert_pem).unwrap();
        for member in ["etcd-1", "etcd-2", "etcd-3"] {
            for (kind, want) in [
                (LeafKind::EtcdServer, want_vip),
                (LeafKind::EtcdPeer, false),
            ] {
                let pem_text = &m.leaf(&LeafId::new(member, kind)).unwrap().cert_pem;
                let der = der(pem_text);
                let (_, c) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
                let (_, ips) = sans(&c);
                assert_eq!(ips.contains(&vip), want, "{member} {kind:?}: {ips:?}");
                let addr = spec.node(member).unwrap().address;
                assert_eq!(ips[0], addr, "{member} {kind:?}: its own address first");
                // openssl's host check, as a TLS client dialing the VIP performs it.
                let cert = dir.path().join(format!("{member}.crt"));
                std::fs::write(&cert, pem_text).unwrap();
                let (ok, out) = openssl(&[
                    "verify",
                    "-CAfile",
                    ca.to_str().unwrap(),
                    "-verify_ip",
                    "198.18.0.100",
                    cert.to_str().unwrap(),
                ]);
                assert_eq!(ok, want, "{member} {kind:?} -verify_ip VIP:\n{out}");
                let (ok, out) = openssl(&[
                    "verify",
                    "-CAfile",
                    ca.to_str().unwrap(),
                    "-verify_ip",
                    &addr.to_string(),
                    cert.to_str().unwrap(),
                ]);
                assert!(ok, "{member} {kind:?} -verify_ip own address:\n{out}");
            }
        }
    }
}
