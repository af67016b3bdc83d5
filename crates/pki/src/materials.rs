//! What the PKI authority hands to rendering: PEM text for every CA, leaf and the
//! service-account key pair, plus the generated secrets kept in state.

use std::collections::BTreeMap;

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::error::PkiError;
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
    /// kubeadm's node bootstrap token: joins nodes and signs `kube-public/cluster-info`.
    /// Renewed by the store shortly before it expires.
    pub bootstrap_token: Option<BootstrapToken>,
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

/// A kubeadm bootstrap token `<id>.<secret>` (`^[a-z0-9]{6}\.[a-z0-9]{16}$`).
///
/// The id is public (it names the `bootstrap-token-<id>` Secret and the `cluster-info`
/// signature); the secret is not.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// 6 characters of `[a-z0-9]`.
    pub id: String,
    /// 16 characters of `[a-z0-9]`.
    pub secret: String,
    /// When the API server stops accepting it: RFC 3339 in UTC, `2006-01-02T15:04:05Z`, as
    /// kubeadm writes the Secret's `expiration`.
    pub expires: String,
}

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// kubeadm's token alphabet (`cluster-bootstrap/token/util`).
const TOKEN_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// Bytes at or above this are discarded: 252 = 7 × 36 keeps every character equally likely.
const TOKEN_REJECT_FROM: u8 = 252;

impl BootstrapToken {
    /// kubeadm's default token TTL.
    pub const TTL: Duration = Duration::hours(24);
    /// A token expiring within this window is replaced, so a join never races its expiry.
    pub const RENEW_BEFORE: Duration = Duration::hours(1);
    pub const ID_LEN: usize = 6;
    pub const SECRET_LEN: usize = 16;

    /// A fresh random token valid for [`Self::TTL`] from `now`.
    pub fn generate(now: OffsetDateTime) -> Result<Self, PkiError> {
        let mut chars = String::with_capacity(Self::ID_LEN + Self::SECRET_LEN);
        while chars.len() < Self::ID_LEN + Self::SECRET_LEN {
            let mut buf = [0u8; 32];
            aws_lc_rs::rand::fill(&mut buf).map_err(|_| PkiError::Random {
                what: "a bootstrap token",
            })?;
            push_token_chars(&buf, &mut chars, Self::ID_LEN + Self::SECRET_LEN);
        }
        let (id, secret) = chars.split_at(Self::ID_LEN);
        Ok(BootstrapToken {
            id: id.to_string(),
            secret: secret.to_string(),
            expires: format_rfc3339(now + Self::TTL),
        })
    }

    /// `<id>.<secret>`, what `kubeadm join --token` takes. Sensitive.
    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The expiry as a time; `None` when `expires` is not in the form [`Self::generate`] writes.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        parse_rfc3339(&self.expires)
    }

    /// True when the token expires within [`Self::RENEW_BEFORE`] of `now` (or already has).
    pub fn needs_renewal(&self, now: OffsetDateTime) -> bool {
        self.expires_at()
            .is_none_or(|t| t - now < Self::RENEW_BEFORE)
    }

    /// Whether id, secret and expiry have kubeadm's shape.
    pub fn is_well_formed(&self) -> bool {
        let ok =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| TOKEN_ALPHABET.contains(&b));
        ok(&self.id, Self::ID_LEN)
            && ok(&self.secret, Self::SECRET_LEN)
            && self.expires_at().is_some()
    }
}

/// Appends characters drawn from `random` to `out` until it holds `len`: bytes below 252 map
/// onto the 36-character alphabet by remainder, larger ones are skipped.
pub(crate) fn push_token_chars(random: &[u8], out: &mut String, len: usize) {
    for b in random.iter().filter(|b| **b < TOKEN_REJECT_FROM) {
        if out.len() >= len {
            return;
        }
        out.push(char::from(TOKEN_ALPHABET[usize::from(b % 36)]));
    }
}

/// `2006-01-02T15:04:05Z`: Go's `time.RFC3339` for a UTC time with whole seconds.
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Reads exactly the form [`format_rfc3339`] writes.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        let part = s.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(num(0, 4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(5, 7)?).ok()?).ok()?;
    let day = u8::try_from(num(8, 10)?).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(
        u8::try_from(num(11, 13)?).ok()?,
        u8::try_from(num(14, 16)?).ok()?,
        u8::try_from(num(17, 19)?).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        parse_rfc3339(s).expect("valid time")
    }

    #[test]
    fn generated_tokens_have_kubeadms_format() {
        let now = at("2025-03-04T05:06:07Z");
        let mut ids = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let t = BootstrapToken::generate(now).expect("random");
            assert!(t.is_well_formed(), "{t:?}");
            let token = t.token();
            let (id, secret) = token.split_once('.').expect("dot");
            assert_eq!((id.len(), secret.len()), (6, 16));
            assert!(
                token
                    .bytes()
                    .all(|b| b == b'.' || b.is_ascii_digit() || b.is_ascii_lowercase()),
                "{token}"
            );
            assert_eq!(t.expires, "2025-03-05T05:06:07Z");
            ids.insert(t.id);
        }
        assert!(ids.len() > 45, "ids repeat too often: {}", ids.len());
    }

    #[test]
    fn rejection_sampling_maps_onto_the_alphabet() {
        let mut out = String::new();
        let bytes: Vec<u8> = (0..=255).collect();
        push_token_chars(&bytes, &mut out, 1000);
        // 252 usable bytes, each character exactly 7 times; 252..=255 skipped.
        assert_eq!(out.len(), 252);
        for c in TOKEN_ALPHABET {
            assert_eq!(
                out.bytes().filter(|b| b == c).count(),
                7,
                "{}",
                char::from(*c)
            );
        }
        assert!(out.starts_with("0123456789abcdefghijklmnopqrstuvwxyz0"));
        assert!(out.ends_with('z'), "251 % 36 = 35");
        let mut out = String::new();
        push_token_chars(&[252, 253, 254, 255, 35, 36, 71], &mut out, 2);
        assert_eq!(
            out, "z0",
            "rejected bytes are skipped, the length is capped"
        );
    }

    #[test]
    fn renewal_window() {
        let now = at("2025-01-01T00:00:00Z");
        let t = BootstrapToken::generate(now).expect("random");
        assert!(!t.needs_renewal(now));
        assert!(!t.needs_renewal(now + Duration::hours(22)));
        assert!(t.needs_renewal(now + Duration::hours(23) + Duration::seconds(1)));
        assert!(t.needs_renewal(now + Duration::hours(30)));
        let broken = BootstrapToken {
            expires: "tomorrow".into(),
            ..t
        };
        assert!(broken.needs_renewal(now) && !broken.is_well_formed());
    }

    #[test]
    fn rfc3339_round_trip() {
        for s in [
            "2025-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "2024-02-29T12:00:00Z",
        ] {
            assert_eq!(format_rfc3339(at(s)), s);
        }
        for bad in [
            "2025-01-01 00:00:00Z",
            "2025-01-01T00:00:00+00:00",
            "2025-02-30T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "2025-1-01T00:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn debug_redacts_the_secret() {
        let t = BootstrapToken {
            id: "abcdef".into(),
            secret: "0123456789abcdef".into(),
            expires: "2025-01-01T00:00:00Z".into(),
        };
        let text = format!("{t:?}");
        assert!(
            text.contains("abcdef") && !text.contains("0123456789abcdef"),
            "{text}"
        );
    }
}
