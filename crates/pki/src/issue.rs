//! Making certificates: CA self-signing, leaf signing, keys in parallel, secrets.
//!
//! Certificates mirror Go's `crypto/x509` as kubeadm drives it: subject `O` before `CN`
//! (PrintableString where the characters allow it), extensions in Go's order, a subject key
//! identifier (SHA-1 of the key) on CAs only, an authority key identifier on leaves, serials
//! uniformly random in `[1, 2^63−1)` and `NotBefore` backdated five minutes.

use std::collections::BTreeMap;

use kubeha_spec::{KeyAlgorithm, Spec};
use rayon::prelude::*;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, IsCa, SerialNumber,
};
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::{
    der,
    error::PkiError,
    ids::CaId,
    keys::{self, Key},
    materials::{BootstrapToken, CertPair, Materials, Secrets, ServiceAccountKeys},
    profile::{ExtKeyUsage, LeafProfile, leaf_profiles},
};

/// kubeadm's `CertificateBackdate`.
pub const BACKDATE: Duration = Duration::minutes(5);

/// `now` as certificates record it: UTC, whole seconds.
pub(crate) fn normalize(now: OffsetDateTime) -> OffsetDateTime {
    let utc = now.to_offset(UtcOffset::UTC);
    utc.replace_nanosecond(0).unwrap_or(utc)
}

/// Generates one key per entry of `what` (names used in errors), using every core.
pub(crate) fn generate_keys(alg: KeyAlgorithm, what: &[String]) -> Result<Vec<Key>, PkiError> {
    what.par_iter().map(|w| keys::generate(alg, w)).collect()
}

/// A uniformly random serial in `[1, 2^63−1)`, minimal big-endian bytes.
pub(crate) fn random_serial() -> Result<SerialNumber, PkiError> {
    const BOUND: u64 = (1 << 63) - 2; // values 0..BOUND, then +1
    loop {
        let mut buf = [0u8; 8];
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| PkiError::Random {
            what: "a serial number",
        })?;
        let v = u64::from_be_bytes(buf) >> 1; // 63 random bits
        if v < BOUND {
            let serial = (v + 1).to_be_bytes();
            let skip = serial.iter().take_while(|b| **b == 0).count();
            return Ok(SerialNumber::from_slice(&serial[skip..]));
        }
    }
}

/// Subject with `O` (if any) before `CN`, as Go orders a `pkix.Name`.
fn subject(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let value = |s: &str| match rcgen::string::PrintableString::try_from(s) {
        Ok(p) => DnValue::PrintableString(p),
        Err(_) => DnValue::Utf8String(s.to_string()),
    };
    let mut dn = DistinguishedName::new();
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, value(o));
    }
    dn.push(DnType::CommonName, value(common_name));
    dn
}

fn extension(oid: &[u64], critical: bool, content: Vec<u8>) -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(oid, content);
    ext.set_criticality(critical);
    ext
}

/// `now + hours`, or an error (never a panic) past what an X.509 `GeneralizedTime` holds
/// (year 9999). The cluster file's validation caps lifetimes well below that; this guards
/// every other caller.
fn not_after(now: OffsetDateTime, hours: u32, what: &str) -> Result<OffsetDateTime, PkiError> {
    now.checked_add(Duration::hours(hours.into()))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| PkiError::ValidityTooLong {
            what: what.to_string(),
            hours,
        })
}

/// Parameters with nothing rcgen would add on its own: every extension is ours.
fn base_params(
    dn: DistinguishedName,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::NoCa;
    params.use_authority_key_identifier_extension = false;
    Ok(params)
}

/// A self-signed CA certificate for `id` (CN only, `DNS:<CN>`, CA:TRUE, no EKU).
pub(crate) fn new_ca_cert(
    id: CaId,
    key: &Key,
    now: OffsetDateTime,
    validity_hours: u32,
) -> Result<String, PkiError> {
    let now = normalize(now);
    let cn = id.common_name();
    let until = not_after(now, validity_hours, &format!("the {} CA", id.name()))?;
    let mut params = base_params(subject(cn, None), now - BACKDATE, until)?;
    params.custom_extensions = vec![
        extension(der::oid::KEY_USAGE, true, der::key_usage(&[0, 2, 5])),
        extension(
            der::oid::BASIC_CONSTRAINTS,
            true,
            der::basic_constraints(true),
        ),
        extension(
            der::oid::SUBJECT_KEY_ID,
            false,
            der::tlv(
                der::TAG_OCTET_STRING,
                &keys::key_id(keys::public_key_bits(&key.pair)),
            ),
        ),
        extension(
            der::oid::SUBJECT_ALT_NAME,
            false,
            der::subject_alt_name(&[cn.to_string()], &[]),
        ),
    ];
    let cert = params
        .self_signed(&key.pair)
        .map_err(|source| PkiError::Signing {
            what: format!("the {} CA", id.name()),
            source,
        })?;
    Ok(keys::pem_encode(keys::PEM_CERTIFICATE, cert.der()))
}

/// A CA that can sign: its name, subject key identifier and key.
pub(crate) struct Signer<'a> {
    id: CaId,
    issuer: rcgen::Issuer<'a, &'a rcgen::KeyPair>,
    key_id: Option<Vec<u8>>,
}

impl<'a> Signer<'a> {
    /// `cert_pem` must already be known to parse; `key` must match it.
    pub(crate) fn new(id: CaId, cert_pem: &str, key: &'a Key) -> Result<Self, PkiError> {
        let err = |source| PkiError::Signing {
            what: format!("the {} CA (reading its certificate)", id.name()),
            source,
        };
        let block =
            pem::parse(cert_pem).map_err(|_| err(rcgen::Error::CouldNotParseCertificate))?;
        let (_, cert) = x509_parser::parse_x509_certificate(block.contents())
            .map_err(|_| err(rcgen::Error::CouldNotParseCertificate))?;
        // Go copies the parent's SubjectKeyId into the leaf's AuthorityKeyId, and writes none
        // when the parent has none.
        let key_id = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            });
        let issuer = rcgen::Issuer::from_ca_cert_der(&block.contents().to_vec().into(), &key.pair)
            .map_err(err)?;
        Ok(Signer { id, issuer, key_id })
    }

    /// The signer for `profile`'s issuer among `signers`.
    pub(crate) fn pick<'s>(
        signers: &'s [Signer<'a>],
        profile: &LeafProfile,
    ) -> Result<&'s Signer<'a>, PkiError> {
        signers
            .iter()
            .find(|s| s.id == profile.issuer())
            .ok_or(PkiError::MissingCa {
                ca: profile.issuer(),
                leaf: profile.id.clone(),
            })
    }
}

/// Signs the leaf described by `profile` for `key`.
pub(crate) fn sign_leaf(
    profile: &LeafProfile,
    key: &Key,
    signer: &Signer<'_>,
    now: OffsetDateTime,
    validity_hours: u32,
) -> Result<String, PkiError> {
    let now = normalize(now);
    let until = not_after(now, validity_hours, &profile.id.to_string())?;
    let mut params = base_params(
        subject(&profile.common_name, profile.organization.as_deref()),
        now - BACKDATE,
        until,
    )?;
    let ekus: Vec<u8> = profile
        .ext_key_usages
        .iter()
        .flat_map(|u| match u {
            ExtKeyUsage::ServerAuth => der::oid::SERVER_AUTH,
            ExtKeyUsage::ClientAuth => der::oid::CLIENT_AUTH,
        })
        .copied()
        .collect();
    let mut exts = vec![
        extension(der::oid::KEY_USAGE, true, der::key_usage(&[0, 2])),
        extension(
            der::oid::EXT_KEY_USAGE,
            false,
            der::tlv(der::TAG_SEQUENCE, &ekus),
        ),
        extension(
            der::oid::BASIC_CONSTRAINTS,
            true,
            der::basic_constraints(false),
        ),
    ];
    if let Some(kid) = &signer.key_id {
        exts.push(extension(
            der::oid::AUTHORITY_KEY_ID,
            false,
            der::authority_key_id(kid),
        ));
    }
    if !profile.dns_names.is_empty() || !profile.ip_addresses.is_empty() {
        exts.push(extension(
            der::oid::SUBJECT_ALT_NAME,
            false,
            der::subject_alt_name(&profile.dns_names, &profile.ip_addresses),
        ));
    }
    params.custom_extensions = exts;
    debug_assert_eq!(profile.issuer(), signer.id);
    let cert = params
        .signed_by(&key.pair, &signer.issuer)
        .map_err(|source| PkiError::Signing {
            what: profile.id.to_string(),
            source,
        })?;
    Ok(keys::pem_encode(keys::PEM_CERTIFICATE, cert.der()))
}

/// The service-account key pair from its private key.
pub(crate) fn service_account(key: &Key) -> ServiceAccountKeys {
    ServiceAccountKeys {
        private_pem: key.pem.clone(),
        public_pem: keys::public_key_pem(&key.pair),
    }
}

/// Fresh cluster secrets from the OS random number generator; the bootstrap token is valid
/// from `now`.
pub(crate) fn new_secrets(now: OffsetDateTime) -> Result<Secrets, PkiError> {
    Ok(Secrets {
        keepalived_auth: random_alnum(8)?,
        etcd_cluster_token: None,
        bootstrap_token: Some(BootstrapToken::generate(now)?),
    })
}

/// `len` characters drawn uniformly from `[A-Za-z0-9]`.
pub(crate) fn random_alnum(len: usize) -> Result<String, PkiError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut buf = [0u8; 32];
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| PkiError::Random { what: "a secret" })?;
        // 248 = 4 × 62: rejecting larger bytes keeps the draw uniform.
        for b in buf.into_iter().filter(|b| *b < 248) {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    Ok(out)
}

/// Generates every CA, leaf, the service-account key pair and the secrets for `spec`, in
/// memory, as of `now`. Nothing touches the disk: this is what tests and renderers use when
/// they need real certificates; [`crate::store::Store::ensure`] is the persistent variant.
pub fn issue_in_memory(spec: &Spec, now: OffsetDateTime) -> Result<Materials, PkiError> {
    let certs = &spec.certificates;
    let alg = certs.key_algorithm;
    let profiles = leaf_profiles(spec);

    // One parallel batch: CAs, leaves, then sa.key.
    let mut names: Vec<String> = CaId::ALL
        .iter()
        .map(|c| format!("the {} CA", c.name()))
        .collect();
    names.extend(profiles.iter().map(|p| p.id.to_string()));
    names.push("the service-account key".to_string());
    let mut generated = generate_keys(alg, &names)?.into_iter();
    let mut take = || generated.next().ok_or(PkiError::Random { what: "keys" });

    let mut ca_keys = Vec::with_capacity(3);
    let mut cas = BTreeMap::new();
    for id in CaId::ALL {
        let key = take()?;
        let cert_pem = new_ca_cert(id, &key, now, certs.ca_validity_hours)?;
        ca_keys.push((id, cert_pem, key));
    }
    let leaf_keys: Vec<Key> = profiles.iter().map(|_| take()).collect::<Result<_, _>>()?;
    let sa_key = take()?;

    let signers = ca_keys
        .iter()
        .map(|(id, cert_pem, key)| Signer::new(*id, cert_pem, key))
        .collect::<Result<Vec<_>, _>>()?;
    let leaves = profiles
        .par_iter()
        .zip(leaf_keys.par_iter())
        .map(|(profile, key)| {
            let signer = Signer::pick(&signers, profile)?;
            let cert_pem = sign_leaf(profile, key, signer, now, certs.validity_hours)?;
            Ok((
                profile.id.clone(),
                CertPair {
                    cert_pem,
                    key_pem: key.pem.clone(),
                },
            ))
        })
        .collect::<Result<BTreeMap<_, _>, PkiError>>()?;
    for (id, cert_pem, key) in &ca_keys {
        cas.insert(
            *id,
            CertPair {
                cert_pem: cert_pem.clone(),
                key_pem: key.pem.clone(),
            },
        );
    }

    Ok(Materials {
        cas,
        leaves,
        service_account: service_account(&sa_key),
        secrets: new_secrets(now)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A validity past year 9999 was a panic inside `time`'s `+`; now it is an error.
    #[test]
    fn validity_past_year_9999_is_an_error_not_a_panic() {
        let key = keys::generate(KeyAlgorithm::EcdsaP256, "test").expect("key");
        let now = OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("2026");
        let eight_thousand_years = 8000 * 365 * 24;
        for hours in [eight_thousand_years, u32::MAX] {
            let err = new_ca_cert(CaId::Etcd, &key, now, hours).expect_err("too long");
            assert!(
                matches!(err, PkiError::ValidityTooLong { hours: h, .. } if h == hours),
                "{err:?}"
            );
        }
        // A century still fits, and ends where it should.
        let pem = new_ca_cert(CaId::Etcd, &key, now, 100 * 365 * 24).expect("100y");
        let der = crate::check::cert_der(&pem).expect("parses");
        let end = crate::check::not_after(&der).expect("notAfter");
        assert_eq!(end, now + Duration::hours(100 * 365 * 24));
    }
}
