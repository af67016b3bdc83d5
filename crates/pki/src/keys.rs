//! Key pairs: generation with aws-lc, and PEM in the exact encodings kubeadm writes
//! (`RSA PRIVATE KEY` PKCS#1, `EC PRIVATE KEY` SEC1 with curve parameters, `PUBLIC KEY` PKIX).

use aws_lc_rs::encoding::AsDer;
use kubeha_spec::KeyAlgorithm;
use rcgen::PublicKeyData;
use zeroize::Zeroizing;

use crate::{der, error::PkiError};

pub(crate) const PEM_CERTIFICATE: &str = "CERTIFICATE";
pub(crate) const PEM_RSA_KEY: &str = "RSA PRIVATE KEY";
pub(crate) const PEM_EC_KEY: &str = "EC PRIVATE KEY";
pub(crate) const PEM_PKCS8_KEY: &str = "PRIVATE KEY";
pub(crate) const PEM_PUBLIC_KEY: &str = "PUBLIC KEY";

/// A freshly generated or loaded key: the signer and its PEM text as kubeadm writes it.
pub(crate) struct Key {
    pub pair: rcgen::KeyPair,
    pub pem: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key { .. }")
    }
}

/// PEM with LF line endings and 64-character lines, as Go's `encoding/pem` writes it.
pub(crate) fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Generates one key of `alg`. `what` only names the key in an error.
pub(crate) fn generate(alg: KeyAlgorithm, what: &str) -> Result<Key, PkiError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| PkiError::KeyGeneration {
        what: what.to_string(),
        algorithm: alg.as_str(),
        source,
    };
    let (der, tag) = match alg {
        KeyAlgorithm::Rsa2048 => {
            let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|e| err(Box::new(e)))?;
            let pkcs8 = kp.as_der().map_err(|e| err(Box::new(e)))?;
            let inner = der::pkcs8_inner_key(pkcs8.as_ref())
                .ok_or_else(|| err("aws-lc returned a malformed PKCS#8 document".into()))?;
            (Zeroizing::new(inner.to_vec()), PEM_RSA_KEY)
        }
        KeyAlgorithm::EcdsaP256 => {
            let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            )
            .map_err(|e| err(Box::new(e)))?;
            let sec1 = kp.private_key().as_der().map_err(|e| err(Box::new(e)))?;
            (Zeroizing::new(sec1.as_ref().to_vec()), PEM_EC_KEY)
        }
    };
    let pair = rcgen::KeyPair::try_from(der.as_slice()).map_err(|e| err(Box::new(e)))?;
    Ok(Key {
        pair,
        pem: pem_encode(tag, &der),
    })
}

/// Parses a private key PEM (`RSA PRIVATE KEY`, `EC PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
/// `None` when it is not a usable key.
pub(crate) fn parse_private_key(text: &str) -> Option<Key> {
    let block = pem::parse(text).ok()?;
    let tag = block.tag();
    if ![PEM_RSA_KEY, PEM_EC_KEY, PEM_PKCS8_KEY].contains(&tag) {
        return None;
    }
    let pair = rcgen::KeyPair::try_from(block.contents()).ok()?;
    let is_rsa = is_rsa(&pair);
    // A PKCS#1 body under an EC label (or the reverse) is not what kubeadm writes.
    if (tag == PEM_RSA_KEY && !is_rsa) || (tag == PEM_EC_KEY && is_rsa) {
        return None;
    }
    Some(Key {
        pair,
        pem: text.to_string(),
    })
}

pub(crate) fn is_rsa(pair: &rcgen::KeyPair) -> bool {
    pair.algorithm() == &rcgen::PKCS_RSA_SHA256
}

/// `sa.pub`: the PKIX SubjectPublicKeyInfo as a `PUBLIC KEY` block.
pub(crate) fn public_key_pem(pair: &rcgen::KeyPair) -> String {
    pem_encode(PEM_PUBLIC_KEY, &pair.subject_public_key_info())
}

/// The subjectPublicKey BIT STRING contents of a key (RSAPublicKey DER or EC point).
pub(crate) fn public_key_bits(pair: &rcgen::KeyPair) -> &[u8] {
    pair.der_bytes()
}

/// Subject key identifier as Go's `crypto/x509` (Go ≤ 1.24, which builds Kubernetes
/// v1.31–v1.34) computes it: SHA-1 over the subjectPublicKey bits.
pub(crate) fn key_id(public_key_bits: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        public_key_bits,
    )
    .as_ref()
    .to_vec()
}

/// The key as kubeadm writes it: `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1 with
/// curve parameters), converting from PKCS#8 when needed. `None` for other key types.
pub(crate) fn to_kubeadm_pem(key: &Key) -> Option<String> {
    let block = pem::parse(&key.pem).ok()?;
    match block.tag() {
        PEM_RSA_KEY | PEM_EC_KEY => Some(pem_encode(block.tag(), block.contents())),
        PEM_PKCS8_KEY if is_rsa(&key.pair) => {
            let inner = Zeroizing::new(der::pkcs8_inner_key(block.contents())?.to_vec());
            Some(pem_encode(PEM_RSA_KEY, &inner))
        }
        PEM_PKCS8_KEY => {
            use aws_lc_rs::signature::{
                ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
            };
            let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, block.contents())
                .or_else(|_| {
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, block.contents())
                })
                .ok()?;
            let sec1 = kp.private_key().as_der().ok()?;
            Some(pem_encode(PEM_EC_KEY, sec1.as_ref()))
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `sa.pub` must be exactly what `openssl pkey -pubout` derives from `sa.key`, and the
    /// private key must be what `openssl rsa -check` / `openssl ec` accept.
    #[test]
    fn pem_forms_match_openssl() {
        let dir = tempfile::tempdir().unwrap();
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
            let key = generate(alg, "test").unwrap();
            let path = dir.path().join("k.pem");
            std::fs::write(&path, &key.pem).unwrap();
            let run = |args: &[&str]| {
                let out = std::process::Command::new("/usr/bin/openssl")
                    .args(args)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8(out.stdout).unwrap()
            };
            let p = path.to_str().unwrap();
            assert_eq!(
                run(&["pkey", "-in", p, "-pubout"]),
                public_key_pem(&key.pair),
                "{alg:?}"
            );
            match alg {
                KeyAlgorithm::Rsa2048 => {
                    assert!(key.pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
                    run(&["rsa", "-check", "-noout", "-in", p]);
                    // PKCS#1 round trip through openssl is byte-identical.
                    assert_eq!(run(&["rsa", "-in", p, "-traditional"]), key.pem);
                }
                KeyAlgorithm::EcdsaP256 => {
                    assert!(key.pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
                    assert!(
                        run(&["ec", "-noout", "-text", "-in", p]).contains("ASN1 OID: prime256v1")
                    );
                    // SEC1 with the curve OID and public key, as openssl writes it.
                    assert_eq!(run(&["ec", "-in", p]), key.pem);
                }
            }
            let parsed = parse_private_key(&key.pem).unwrap();
            assert_eq!(public_key_bits(&parsed.pair), public_key_bits(&key.pair));
            assert_eq!(to_kubeadm_pem(&parsed).unwrap(), key.pem);
            // PKCS#8 (`PRIVATE KEY`, what `openssl pkey` writes) converts back to kubeadm's form.
            let pkcs8 = run(&["pkey", "-in", p]);
            assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
            assert_eq!(
                to_kubeadm_pem(&parse_private_key(&pkcs8).unwrap()).unwrap(),
                key.pem
            );
        }
    }
}
