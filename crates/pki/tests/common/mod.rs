//! Shared helpers for the PKI integration tests: specs, file dumps and certificate checks.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use kubeha_pki::{CaId, ExtKeyUsage, LeafId, Materials, leaf_profiles};
use kubeha_spec::{KeyAlgorithm, Spec};
use time::{Duration, OffsetDateTime};
use x509_parser::{
    certificate::X509Certificate,
    extensions::{GeneralName, ParsedExtension},
    prelude::FromDer,
};

pub fn example_src(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name),
    )
    .unwrap()
}

/// An example spec with the key algorithm forced to `alg`.
pub fn example(name: &str, alg: KeyAlgorithm) -> Spec {
    spec_from(&example_src(name), alg)
}

pub fn spec_from(src: &str, alg: KeyAlgorithm) -> Spec {
    let mut spec = kubeha_spec::load_str(src, Path::new("test.yaml"))
        .unwrap()
        .spec;
    spec.certificates.key_algorithm = alg;
    spec
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

pub fn der(pem_text: &str) -> Vec<u8> {
    let block = pem::parse(pem_text).unwrap();
    assert_eq!(block.tag(), "CERTIFICATE");
    block.contents().to_vec()
}

pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Writes every cert/key of `m` under `dir` (`ca-<n>.crt`, `leaf-<n>.crt` …) and returns the
/// paths: CA certs by id, and (leaf id, cert path, key path).
/// Paths written by [`dump`]: CA certs by id, and (leaf id, cert path, key path).
pub type Dumped = (BTreeMap<CaId, PathBuf>, Vec<(LeafId, PathBuf, PathBuf)>);

pub fn dump(m: &Materials, dir: &Path) -> Dumped {
    let mut cas = BTreeMap::new();
    for (i, (id, pair)) in m.cas.iter().enumerate() {
        let c = dir.join(format!("ca-{i}.crt"));
        std::fs::write(&c, &pair.cert_pem).unwrap();
        std::fs::write(dir.join(format!("ca-{i}.key")), &pair.key_pem).unwrap();
        cas.insert(*id, c);
    }
    let mut leaves = Vec::new();
    for (i, (id, pair)) in m.leaves.iter().enumerate() {
        let c = dir.join(format!("leaf-{i}.crt"));
        let k = dir.join(format!("leaf-{i}.key"));
        std::fs::write(&c, &pair.cert_pem).unwrap();
        std::fs::write(&k, &pair.key_pem).unwrap();
        leaves.push((id.clone(), c, k));
    }
    (cas, leaves)
}

/// `openssl verify` every leaf against its CA (one call per CA).
pub fn openssl_verify_all(m: &Materials, dir: &Path) {
    let (cas, leaves) = dump(m, dir);
    for (ca, ca_path) in &cas {
        let files: Vec<&PathBuf> = leaves
            .iter()
            .filter(|(id, _, _)| id.kind.issuer() == *ca)
            .map(|(_, c, _)| c)
            .collect();
        assert!(!files.is_empty());
        let mut args = vec!["verify", "-CAfile", ca_path.to_str().unwrap()];
        args.extend(files.iter().map(|p| p.to_str().unwrap()));
        let (ok, out) = openssl(&args);
        assert!(ok, "openssl verify against {ca} failed:\n{out}");
        assert_eq!(out.matches(": OK").count(), files.len(), "{out}");
    }
}

/// Checks private key files with openssl (`rsa -check` or `ec`), and the labels.
pub fn openssl_check_key(pem_text: &str, alg: KeyAlgorithm, dir: &Path) {
    let p = dir.join("check.key");
    std::fs::write(&p, pem_text).unwrap();
    let path = p.to_str().unwrap();
    match alg {
        KeyAlgorithm::Rsa2048 => {
            assert!(pem_text.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
            let (ok, out) = openssl(&["rsa", "-check", "-noout", "-in", path]);
            assert!(ok && out.contains("RSA key ok"), "{out}");
        }
        KeyAlgorithm::EcdsaP256 => {
            assert!(pem_text.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
            let (ok, out) = openssl(&["ec", "-noout", "-text", "-in", path]);
            assert!(ok && out.contains("prime256v1"), "{out}");
        }
    }
    assert!(pem_text.ends_with("-----\n"));
}

fn cn_and_o(c: &X509Certificate<'_>) -> (String, Vec<String>, Vec<String>) {
    let cn = c
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    let o = c
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    // Attribute types in order (O before CN, as Go writes them).
    let order = c
        .subject()
        .iter_attributes()
        .map(|a| a.attr_type().to_id_string())
        .collect();
    assert_eq!(cn.len(), 1);
    (cn[0].clone(), o, order)
}

pub fn sans(c: &X509Certificate<'_>) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Some(san) = c.subject_alternative_name().unwrap() {
        assert!(!san.critical);
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ips.push(match b.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                    16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                    _ => panic!("bad ip"),
                }),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
    }
    (dns, ips)
}

fn ski(c: &X509Certificate<'_>) -> Option<Vec<u8>> {
    c.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

fn aki(c: &X509Certificate<'_>) -> Option<Vec<u8>> {
    c.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(k) => {
                Some(k.key_identifier.as_ref().unwrap().0.to_vec())
            }
            _ => None,
        })
}

fn ext_order(c: &X509Certificate<'_>) -> Vec<String> {
    c.extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .collect()
}

/// Asserts every rule of the brief on every certificate of `m` (issued at `now`).
pub fn check_materials(spec: &Spec, m: &Materials, now: OffsetDateTime) {
    check_materials_between(spec, m, now, now);
}

/// Asserts that `issued` (NotBefore + 5 min) lies in `[from, to]` and that NotAfter is exactly
/// `validity` after it.
fn check_validity(
    c: &X509Certificate<'_>,
    from: OffsetDateTime,
    to: OffsetDateTime,
    hours: u32,
    what: &str,
) {
    let issued = c.validity().not_before.to_datetime() + Duration::minutes(5);
    assert!(
        issued >= from && issued <= to,
        "{what}: issued {issued}, expected within [{from}, {to}]"
    );
    assert_eq!(
        c.validity().not_after.to_datetime(),
        issued + Duration::hours(hours.into()),
        "{what}"
    );
}

/// [`check_materials`] for materials issued over several runs between `from` and `to`.
pub fn check_materials_between(
    spec: &Spec,
    m: &Materials,
    from: OffsetDateTime,
    to: OffsetDateTime,
) {
    let certs = &spec.certificates;
    let mut ca_skis = BTreeMap::new();
    for id in CaId::ALL {
        let pair = m.ca(id).unwrap();
        let der = der(&pair.cert_pem);
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        let (cn, o, _) = cn_and_o(&c);
        assert_eq!(cn, id.common_name());
        assert!(o.is_empty());
        assert_eq!(c.subject(), c.issuer());
        assert_eq!(sans(&c), (vec![id.common_name().to_string()], vec![]));
        let ku = c.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert_eq!(
            ku.value.flags, 0b10_0101,
            "{id}: digitalSignature+keyEncipherment+keyCertSign"
        );
        let bc = c.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
        assert!(c.extended_key_usage().unwrap().is_none());
        assert!(aki(&c).is_none());
        // Go's order for a self-signed CA: KU, BC, SKID, SAN.
        assert_eq!(
            ext_order(&c),
            ["2.5.29.15", "2.5.29.19", "2.5.29.14", "2.5.29.17"]
        );
        check_validity(&c, from, to, certs.ca_validity_hours, id.base());
        check_serial(&c);
        c.verify_signature(None).unwrap();
        ca_skis.insert(id, ski(&c).unwrap());
    }
    let profiles = leaf_profiles(spec);
    assert_eq!(profiles.len(), m.leaves.len());
    for p in &profiles {
        let pair = m.leaf(&p.id).unwrap_or_else(|| panic!("missing {}", p.id));
        let der = der(&pair.cert_pem);
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        let what = p.id.to_string();
        let (cn, o, order) = cn_and_o(&c);
        assert_eq!(cn, p.common_name, "{what}");
        assert_eq!(
            o,
            p.organization.iter().cloned().collect::<Vec<_>>(),
            "{what}"
        );
        if !o.is_empty() {
            assert_eq!(order, ["2.5.4.10", "2.5.4.3"], "{what}");
        }
        let ku = c.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert_eq!(
            ku.value.flags, 0b101,
            "{what}: digitalSignature+keyEncipherment"
        );
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        let want_server = p.ext_key_usages.contains(&ExtKeyUsage::ServerAuth);
        let want_client = p.ext_key_usages.contains(&ExtKeyUsage::ClientAuth);
        assert_eq!(
            (eku.server_auth, eku.client_auth),
            (want_server, want_client),
            "{what}"
        );
        assert!(!eku.any && !eku.code_signing && !eku.email_protection && eku.other.is_empty());
        let bc = c.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && !bc.value.ca, "{what}");
        assert!(ski(&c).is_none(), "{what}: Go writes no SKID on leaves");
        assert_eq!(aki(&c).as_ref(), ca_skis.get(&p.issuer()), "{what}");
        let (dns, ips) = sans(&c);
        assert_eq!(dns, p.dns_names, "{what}");
        assert_eq!(ips, p.ip_addresses, "{what}");
        let mut want_order = vec!["2.5.29.15", "2.5.29.37", "2.5.29.19", "2.5.29.35"];
        if !dns.is_empty() || !ips.is_empty() {
            want_order.push("2.5.29.17");
        }
        assert_eq!(ext_order(&c), want_order, "{what}");
        check_validity(&c, from, to, certs.validity_hours, &what);
        check_serial(&c);
        let ca_der = self::der(&m.ca(p.issuer()).unwrap().cert_pem);
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        assert_eq!(c.issuer(), ca.subject());
        c.verify_signature(Some(ca.public_key())).unwrap();
        let sig = c.signature_algorithm.algorithm.to_id_string();
        let want_sig = match certs.key_algorithm {
            KeyAlgorithm::Rsa2048 => "1.2.840.113549.1.1.11",
            KeyAlgorithm::EcdsaP256 => "1.2.840.10045.4.3.2",
        };
        assert_eq!(sig, want_sig);
        let label = match certs.key_algorithm {
            KeyAlgorithm::Rsa2048 => "RSA PRIVATE KEY",
            KeyAlgorithm::EcdsaP256 => "EC PRIVATE KEY",
        };
        assert_eq!(pem::parse(&pair.key_pem).unwrap().tag(), label, "{what}");
    }
    let sa = pem::parse(&m.service_account.public_pem).unwrap();
    assert_eq!(sa.tag(), "PUBLIC KEY");
    assert_eq!(m.secrets.keepalived_auth.len(), 8);
    assert!(
        m.secrets
            .keepalived_auth
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
    );
}

fn check_serial(c: &X509Certificate<'_>) {
    let s = c.tbs_certificate.raw_serial();
    assert!(
        !s.is_empty() && s.len() <= 8 && s[0] & 0x80 == 0,
        "serial {s:02x?}"
    );
    let mut v: u64 = 0;
    for b in s {
        v = (v << 8) | u64::from(*b);
    }
    assert!((1..(1 << 63) - 1).contains(&v));
}
