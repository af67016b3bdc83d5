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
