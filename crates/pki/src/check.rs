//! Reading certificates back: parse, is-a-CA, key match, signed-by and expiry checks.
//!
//! Used on everything loaded from the state dir or handed to `import_ca`, before anything
//! is trusted or written.

use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

use crate::keys::{self, Key};

/// The DER of a PEM text holding exactly one parseable `CERTIFICATE`.
pub(crate) fn cert_der(text: &str) -> Option<Vec<u8>> {
    let blocks = pem::parse_many(text).ok()?;
    let [block] = blocks.as_slice() else {
        return None;
    };
    if block.tag() != keys::PEM_CERTIFICATE {
        return None;
    }
    let (rest, _) = X509Certificate::from_der(block.contents()).ok()?;
    rest.is_empty().then(|| block.contents().to_vec())
}

/// Runs `f` on a certificate already known to parse (see [`cert_der`]).
fn with<T>(der: &[u8], f: impl FnOnce(&X509Certificate<'_>) -> T) -> Option<T> {
    X509Certificate::from_der(der).ok().map(|(_, c)| f(&c))
}

/// BasicConstraints CA:TRUE.
pub(crate) fn is_ca(der: &[u8]) -> bool {
    with(
        der,
        |c| matches!(c.basic_constraints(), Ok(Some(bc)) if bc.value.ca),
    )
    .unwrap_or(false)
}

/// Whether rcgen can take the certificate's subject as an issuer name (one attribute per RDN).
pub(crate) fn simple_subject(der: &[u8]) -> bool {
    with(der, |c| {
        c.subject().iter().all(|rdn| rdn.iter().count() == 1)
    })
    .unwrap_or(false)
}

/// Whether `key` is the private half of the certificate's public key.
pub(crate) fn key_matches(der: &[u8], key: &Key) -> bool {
    with(der, |c| {
        c.public_key().subject_public_key.data.as_ref() == keys::public_key_bits(&key.pair)
    })
    .unwrap_or(false)
}

/// Whether `leaf` names `ca` as issuer and carries a valid signature by its key.
pub(crate) fn signed_by(leaf: &[u8], ca: &[u8]) -> bool {
    let Some(Some(ok)) = with(ca, |ca| {
        with(leaf, |leaf| {
            leaf.issuer().as_raw() == ca.subject().as_raw()
                && leaf.verify_signature(Some(ca.public_key())).is_ok()
        })
    }) else {
        return false;
    };
    ok
}

/// The certificate's NotAfter.
pub(crate) fn not_after(der: &[u8]) -> Option<OffsetDateTime> {
    with(der, |c| c.validity().not_after.to_datetime())
}

/// Whether the leaf certificate `der` certifies exactly what `p` asks for with `alg` and
/// `validity_hours`: subject CN and O, DNS and IP SANs, extended key usages, the key's
/// algorithm and size, and the validity span kubeha gives leaves (plus the backdate). This is
/// everything the index fingerprint records besides the issuing CA, which
/// [`signed_by`] checks; so a lost index can be rebuilt from the certificates themselves.
pub(crate) fn certifies(
    der: &[u8],
    p: &crate::profile::LeafProfile,
    alg: kubeha_spec::KeyAlgorithm,
    validity_hours: u32,
) -> bool {
    use std::net::IpAddr;

    use x509_parser::{extensions::GeneralName, public_key::PublicKey};

    use crate::profile::ExtKeyUsage;

    with(der, |c| {
        let text =
            |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().ok().map(str::to_string);
        let cns: Vec<Option<String>> = c.subject().iter_common_name().map(text).collect();
        let orgs: Vec<Option<String>> = c.subject().iter_organization().map(text).collect();
        let subject_ok = cns == [Some(p.common_name.clone())]
            && orgs
                == p.organization
                    .iter()
                    .map(|o| Some(o.clone()))
                    .collect::<Vec<_>>();

        let (mut dns, mut ips) = (Vec::new(), Vec::new());
        match c.subject_alternative_name() {
            Ok(Some(san)) => {
                for name in &san.value.general_names {
                    match name {
                        GeneralName::DNSName(d) => dns.push(d.to_string()),
                        GeneralName::IPAddress(b) => match b.len() {
                            4 => {
                                ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()))
                            }
                            16 => {
                                ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()))
                            }
                            _ => return false,
                        },
                        _ => return false,
                    }
                }
            }
            Ok(None) => {}
            Err(_) => return false,
        }
        let sans_ok = dns == p.dns_names && ips == p.ip_addresses;

        let eku_ok = match c.extended_key_usage() {
            Ok(Some(e)) => {
                let e = e.value;
                e.server_auth == p.ext_key_usages.contains(&ExtKeyUsage::ServerAuth)
                    && e.client_auth == p.ext_key_usages.contains(&ExtKeyUsage::ClientAuth)
                    && !(e.any
                        || e.code_signing
                        || e.email_protection
                        || e.time_stamping
                        || e.ocsp_signing)
                    && e.other.is_empty()
            }
            _ => false,
        };

        let key_ok = match (c.public_key().parsed(), alg) {
            (Ok(PublicKey::RSA(k)), kubeha_spec::KeyAlgorithm::Rsa2048) => k.key_size() == 2048,
            (Ok(PublicKey::EC(k)), kubeha_spec::KeyAlgorithm::EcdsaP256) => k.key_size() == 256,
            _ => false,
        };

        let v = c.validity();
        let span = v.not_after.to_datetime() - v.not_before.to_datetime();
        let validity_ok =
            span == time::Duration::hours(validity_hours.into()) + crate::issue::BACKDATE;

        subject_ok && sans_ok && eku_ok && key_ok && validity_ok
    })
    .unwrap_or(false)
}
