//! The certificates a host actually holds, read in one remote command, and what they say.
//!
//! Read: every `*.crt` under `/etc/kubernetes/pki` (recursive), the kubelet's own
//! `/var/lib/kubelet/pki/kubelet.crt` and `kubelet-client-current.pem` (kubeadm's
//! `certs check-expiration` skips both), and every `/etc/kubernetes/*.conf` kubeconfig, whose
//! embedded `client-certificate-data` is checked per user. Private keys never leave the host:
//! the remote script drops `client-key-data` lines and PEM private-key blocks before printing.
//!
//! Everything takes a path prefix (`root`), `""` on a real host, so the same scan runs against
//! a rendered tree (`out/<node>`) through a `LocalTransport`.
//!
//! This file depends only on external crates: the CLI's integration tests include it as is.

use std::time::Duration;

use kubeha_transport::{Command, Transport, TransportError};
use serde::Deserialize;
use x509_parser::{pem::Pem, x509::X509Name};

/// How long the one remote command may take.
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(20);

/// Lists the files (`$2` is the root prefix), then prints each as `\n<marker> <path>\n` and its
/// content without private keys; a file that cannot be read ends with `\n<marker>-failed\n`.
/// `find` also lists symlinks; `[ -f ]` keeps what resolves to a regular file.
const SCRIPT: &str = r#"m=$1 r=$2
{
  if [ -d "$r/etc/kubernetes/pki" ]; then
    find "$r/etc/kubernetes/pki" -name '*.crt' \( -type f -o -type l \)
  fi
  for f in "$r"/etc/kubernetes/*.conf "$r/var/lib/kubelet/pki/kubelet.crt" "$r/var/lib/kubelet/pki/kubelet-client-current.pem"; do
    printf '%s\n' "$f"
  done
} | while IFS= read -r f; do
  [ -f "$f" ] || continue
  printf '\n%s %s\n' "$m" "$f"
  sed -e '/^[[:space:]]*client-key-data:/d' \
      -e '/-----BEGIN[A-Z ]*PRIVATE KEY-----/,/-----END[A-Z ]*PRIVATE KEY-----/d' -- "$f" \
    || printf '\n%s-failed\n' "$m"
done
"#;

/// What one certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject CN (the whole subject when it has no CN).
    pub subject: String,
    /// Issuer CN (the whole issuer when it has no CN).
    pub issuer: String,
    /// Unix time of `notAfter`.
    pub not_after: i64,
    pub is_ca: bool,
}

/// One certificate found on a host, or why a file that should hold one could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCert {
    /// Path on the host (without the root prefix).
    pub path: String,
    /// For a kubeconfig: the `users[].name` the certificate is embedded under.
    pub user: Option<String>,
    pub cert: Result<CertInfo, String>,
}

/// How a certificate stands against the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    Ok,
    Warn,
    Expired,
    Unreadable,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Ok => "ok",
            Standing::Warn => "WARN",
            Standing::Expired => "EXPIRED",
            Standing::Unreadable => "UNREADABLE",
        }
    }
}

/// Whole days from `now` until `not_after`, rounded down (negative once expired).
pub fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(86_400)
}

/// Expired at or after `not_after`; WARN when fewer than `warn_days` whole days are left.
pub fn standing(not_after: i64, now: i64, warn_days: i64) -> Standing {
    if not_after <= now {
        Standing::Expired
    } else if days_left(not_after, now) < warn_days {
        Standing::Warn
    } else {
        Standing::Ok
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format_time(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("@{unix}"),
    }
}

/// Reads every certificate file of the host under `root` (`""` for the host itself) in one
/// command and returns what they hold, sorted by path.
pub fn scan(t: &dyn Transport, root: &str) -> Result<Vec<FoundCert>, TransportError> {
    let mut found = Vec::new();
    for (path, content) in read_files(t, root)? {
        match content {
            Ok(bytes) => found.extend(certificates_in(&path, &bytes)),
            Err(e) => found.push(FoundCert {
                path,
                user: None,
                cert: Err(e),
            }),
        }
    }
    Ok(found)
}

/// The files [`scan`] reads, as the host printed them (private keys already removed), with
/// paths relative to `root`, sorted.
pub fn read_files(t: &dyn Transport, root: &str) -> Result<Vec<RawFile>, TransportError> {
    let marker = marker();
    let root = root.trim_end_matches('/');
    let cmd = Command::script(SCRIPT)
        .args([marker.as_str(), root])
        .sudo()
        .timeout(SCAN_TIMEOUT);
    let out = t.run(&cmd)?;
    let mut files: Vec<RawFile> = split_files(&out.stdout, &marker)
        .into_iter()
        .map(|(path, content)| {
            let path = path.strip_prefix(root).unwrap_or(&path).to_string();
            (path, content)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// A file's path and content, or why the host could not read it.
pub type RawFile = (String, Result<Vec<u8>, String>);

/// A separator no certificate or kubeconfig holds by chance: fresh per scan.
fn marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("--kubeha-certs-{:x}-{:x}", nanos, std::process::id())
}

/// Splits the script's output into `(path, content)`; content is `Err` when the host could not
/// read the file.
pub fn split_files(stdout: &[u8], marker: &str) -> Vec<RawFile> {
    let sep = format!("\n{marker} ");
    let failed = format!("\n{marker}-failed\n");
    let mut out = Vec::new();
    let mut parts = split_bytes(stdout, sep.as_bytes());
    // Everything before the first separator is not a file (normally empty).
    parts.next();
    for part in parts {
        let (path, content) = match part.iter().position(|&b| b == b'\n') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &[][..]),
        };
        let path = String::from_utf8_lossy(path).into_owned();
        let content = if content.ends_with(failed.as_bytes()) {
            Err("the host could not read the file".to_string())
        } else {
            Ok(content.to_vec())
        };
        out.push((path, content));
    }
    out
}

fn split_bytes<'a>(hay: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(hay);
    std::iter::from_fn(move || {
        let cur = rest?;
        match cur.windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                rest = Some(&cur[i + sep.len()..]);
                Some(&cur[..i])
            }
            None => {
                rest = None;
                Some(cur)
            }
        }
    })
}

/// The certificates one file holds: the first `CERTIFICATE` block of a PEM file, or every
/// embedded `client-certificate-data` of a kubeconfig (`*.conf`).
pub fn certificates_in(path: &str, bytes: &[u8]) -> Vec<FoundCert> {
    if path.ends_with(".conf") {
        return match kubeconfig_client_certs(bytes) {
            Ok(users) => users
                .into_iter()
                .map(|(user, cert)| FoundCert {
                    path: path.to_string(),
                    user: Some(user),
                    cert,
                })
                .collect(),
            Err(e) => vec![FoundCert {
                path: path.to_string(),
                user: None,
                cert: Err(e),
            }],
        };
    }
    vec![FoundCert {
        path: path.to_string(),
        user: None,
        cert: first_certificate(bytes).and_then(|der| cert_info(&der)),
    }]
}

#[derive(Deserialize)]
struct KubeconfigUsers {
    #[serde(default)]
    users: Option<Vec<KubeconfigUser>>,
}

#[derive(Deserialize)]
struct KubeconfigUser {
    name: String,
    #[serde(default)]
    user: Option<UserCreds>,
}

#[derive(Deserialize)]
struct UserCreds {
    #[serde(rename = "client-certificate-data", default)]
    client_certificate_data: Option<String>,
}

/// A kubeconfig user's name and what its embedded client certificate says.
pub type UserCert = (String, Result<CertInfo, String>);

/// Per user of a kubeconfig with an embedded client certificate: its name and what the
/// certificate says. Users with a certificate file (the kubelet's after rotation), a token or
/// an exec plugin have nothing embedded and are left out.
pub fn kubeconfig_client_certs(bytes: &[u8]) -> Result<Vec<UserCert>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the kubeconfig is not UTF-8".to_string())?;
    let doc: KubeconfigUsers = serde_saphyr::from_str(text).map_err(|e| {
        // The first line says where and what; the rest quotes the file.
        let e = e.to_string();
        format!("not a kubeconfig: {}", e.lines().next().unwrap_or(""))
    })?;
    Ok(doc
        .users
        .unwrap_or_default()
        .into_iter()
        .filter_map(|u| {
            let data = u.user?.client_certificate_data?;
            let cert = decode_base64(&data)
                .ok_or_else(|| "client-certificate-data is not base64".to_string())
                .and_then(|pem| first_certificate(&pem))
                .and_then(|der| cert_info(&der));
            Some((u.name, cert))
        })
        .collect())
}

/// The DER of the first `CERTIFICATE` block of PEM text (other blocks are skipped).
pub fn first_certificate(pem: &[u8]) -> Result<Vec<u8>, String> {
    for block in Pem::iter_from_buffer(pem) {
        match block {
            Ok(p) if p.label == "CERTIFICATE" => return Ok(p.contents),
            Ok(_) => {}
            Err(e) => return Err(format!("bad PEM: {e}")),
        }
    }
    Err("no certificate in the file".to_string())
}

/// Subject, issuer, expiry of a DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, c) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(CertInfo {
        subject: common_name(c.subject()),
        issuer: common_name(c.issuer()),
        not_after: c.validity().not_after.timestamp(),
        is_ca: c.is_ca(),
    })
}

fn common_name(name: &X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map_or_else(|| name.to_string(), str::to_string)
}

/// Standard base64 (`+/`, padded or not), ignoring whitespace; `None` if it is not base64.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(compact).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn days_left_rounds_down_and_goes_negative() {
        let now = 1_700_000_000;
        assert_eq!(days_left(now + 30 * DAY, now), 30);
        assert_eq!(days_left(now + 30 * DAY - 1, now), 29);
        assert_eq!(days_left(now + 1, now), 0);
        assert_eq!(days_left(now, now), 0);
        assert_eq!(days_left(now - 1, now), -1);
        assert_eq!(days_left(now - DAY - 1, now), -2);
    }

    #[test]
    fn standing_against_the_threshold() {
        let now = 1_700_000_000;
        assert_eq!(standing(now + 30 * DAY, now, 30), Standing::Ok);
        assert_eq!(standing(now + 30 * DAY - 1, now, 30), Standing::Warn);
        assert_eq!(standing(now + 1, now, 30), Standing::Warn);
        assert_eq!(standing(now, now, 30), Standing::Expired);
        assert_eq!(standing(now - 10 * DAY, now, 30), Standing::Expired);
        assert_eq!(standing(now + DAY, now, 0), Standing::Ok);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn base64_decodes_padded_unpadded_and_wrapped() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVs\nbG8h").unwrap(), b"hello!");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("Q0E=").unwrap(), b"CA");
        assert!(decode_base64("aGVsbG8=x").is_none(), "data after padding");
        assert!(decode_base64("a").is_none(), "one char is no byte");
        assert!(
            decode_base64("a-b_").is_none(),
            "URL alphabet is not accepted"
        );
    }

    #[test]
    fn split_finds_files_and_failures() {
        let m = "--kubeha-certs-1";
        let out = format!(
            "\n{m} /etc/kubernetes/pki/ca.crt\nPEM1\n\n{m} /etc/kubernetes/admin.conf\nA: b\n\n{m} /etc/kubernetes/x.conf\n\n{m}-failed\n\n{m} /empty.crt\n"
        );
        let files = split_files(out.as_bytes(), m);
        assert_eq!(files.len(), 4);
        assert_eq!(files[0].0, "/etc/kubernetes/pki/ca.crt");
        assert_eq!(files[0].1.as_deref().unwrap(), b"PEM1\n");
        assert_eq!(files[1].1.as_deref().unwrap(), b"A: b\n");
        assert_eq!(files[2].0, "/etc/kubernetes/x.conf");
        assert!(files[2].1.is_err());
        assert_eq!(files[3].1.as_deref().unwrap(), b"");
        assert!(split_files(b"", m).is_empty());
    }

    #[test]
    fn a_file_without_a_certificate_is_unreadable_not_a_crash() {
        let found = certificates_in("/etc/kubernetes/pki/x.crt", b"garbage\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].cert.is_err());
        let found = certificates_in("/etc/kubernetes/admin.conf", b"users: [unclosed");
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .cert
                .as_ref()
                .unwrap_err()
                .contains("not a kubeconfig")
        );
    }

    #[test]
    fn kubeconfig_users_without_embedded_certificates_are_skipped() {
        let text = "apiVersion: v1\nkind: Config\nusers:\n- name: tok\n  user:\n    token: abc\n- name: file\n  user:\n    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n- name: bad\n  user:\n    client-certificate-data: '!!!'\n";
        let users = kubeconfig_client_certs(text.as_bytes()).unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].0, "bad");
        assert!(users[0].1.as_ref().unwrap_err().contains("base64"));
        assert!(
            kubeconfig_client_certs(b"users: null\n")
                .unwrap()
                .is_empty()
        );
    }
}
