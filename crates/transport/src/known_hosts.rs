//! kubeha's known-hosts file: forgetting the key pinned for one node (a replacement machine
//! at that node's name) and reading back the key that is pinned now.
//!
//! Entries are under the node name ([`SshTransport`](crate::SshTransport) sets `HostKeyAlias`
//! and `HashKnownHosts=no`), so one node's lines can be found without touching any other
//! byte of the file. `@revoked` and `@cert-authority` lines and hashed entries are never
//! changed: a revocation or a CA the operator put there outlives a machine swap.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD},
};
use sha2::{Digest, Sha256};

use crate::TransportError;

/// A host key pinned for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKey {
    /// Key type as written in the file (`ssh-ed25519`, `ecdsa-sha2-nistp256`, …).
    pub key_type: String,
    /// `SHA256:<base64>`, the form `ssh-keygen -lf` and sshd's console print.
    pub fingerprint: String,
}

/// Removes the keys pinned for `alias` from `known_hosts`, atomically (a temp file in the same
/// directory renamed over it, mode kept). Every other line stays byte for byte; on a line that
/// also names other hosts only `alias` is taken out of its host list. Returns how many lines
/// named `alias`; a missing file is zero and is not created.
pub fn forget_host_key(known_hosts: &Path, alias: &str) -> Result<usize, TransportError> {
    let err = |source| TransportError::KnownHosts {
        host: alias.to_string(),
        path: known_hosts.to_path_buf(),
        source,
    };
    let text = match fs::read(known_hosts) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(err(e)),
    };
    let (kept, removed) = without_alias(&text, alias);
    if removed == 0 {
        return Ok(0);
    }
    let mode = fs::metadata(known_hosts)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    replace_file(known_hosts, &kept, mode).map_err(err)?;
    Ok(removed)
}

/// The keys pinned for `alias` now (plain lines only), with their SHA-256 fingerprints.
pub fn pinned_keys(known_hosts: &Path, alias: &str) -> Result<Vec<PinnedKey>, TransportError> {
    let text = match fs::read(known_hosts) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(source) => {
            return Err(TransportError::KnownHosts {
                host: alias.to_string(),
                path: known_hosts.to_path_buf(),
                source,
            });
        }
    };
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| {
            let e = Entry::parse(l)?;
            if !e.names(alias) {
                return None;
            }
            let mut f = e.rest.split_whitespace();
            let key_type = f.next()?.to_string();
            let blob = STANDARD.decode(f.next()?).ok()?;
            Some(PinnedKey {
                key_type,
                fingerprint: fingerprint(&blob),
            })
        })
        .collect())
}

/// OpenSSH's SHA-256 fingerprint of a public key blob.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// A plain (unmarked, unhashed) known-hosts line: its host list and everything after it.
struct Entry<'a> {
    hosts: &'a str,
    /// From the whitespace after the host list to the end of the line (terminator excluded).
    rest: &'a str,
}

impl<'a> Entry<'a> {
    fn parse(line: &'a str) -> Option<Entry<'a>> {
        let body = line.trim_start_matches([' ', '\t']);
        if body.is_empty() || body.starts_with('#') || body.starts_with('@') {
            return None;
        }
        let end = body.find([' ', '\t'])?;
        let hosts = &body[..end];
        if hosts.starts_with('|') {
            return None;
        }
        Some(Entry {
            hosts,
            rest: &body[end..],
        })
    }

    /// ssh compares host names without regard to ASCII case.
    fn names(&self, alias: &str) -> bool {
        self.hosts.split(',').any(|h| h.eq_ignore_ascii_case(alias))
    }
}

/// The file without `alias`'s entries, and how many lines named it. Pure: the unit under test.
fn without_alias(text: &[u8], alias: &str) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(text.len());
    let mut removed = 0;
    for raw in text.split_inclusive(|b| *b == b'\n') {
        let (line, end) = split_terminator(raw);
        let Some(entry) = std::str::from_utf8(line).ok().and_then(Entry::parse) else {
            out.extend_from_slice(raw);
            continue;
        };
        if !entry.names(alias) {
            out.extend_from_slice(raw);
            continue;
        }
        removed += 1;
        let others: Vec<&str> = entry
            .hosts
            .split(',')
            .filter(|h| !h.eq_ignore_ascii_case(alias))
            .collect();
        if !others.is_empty() {
            out.extend_from_slice(others.join(",").as_bytes());
            out.extend_from_slice(entry.rest.as_bytes());
            out.extend_from_slice(end);
        }
    }
    (out, removed)
}

fn split_terminator(raw: &[u8]) -> (&[u8], &[u8]) {
    let n = if raw.ends_with(b"\r\n") {
        2
    } else if raw.ends_with(b"\n") {
        1
    } else {
        0
    };
    raw.split_at(raw.len() - n)
}

/// Writes `content` to a new file next to `path`, syncs it and renames it over `path`.
fn replace_file(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "known_hosts".into());
    let tmp: PathBuf = dir.join(format!(".{name}.kubeha-{}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    let r = write();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6hW0m5E1sMb4M0cM1f5oQmZ0X1zD3o9mE6cW1f3aQh";

    #[test]
    fn only_the_aliases_lines_go_and_every_other_byte_stays() {
        let text = format!(
            "# pinned by kubeha\netcd-1 {ED}\r\netcd-3 {ED} old machine\n\n  etcd-30 {ED}\n@revoked etcd-3 {ED}\n|1|c2FsdA==|aGFzaA== {ED}\netcd-2,ETCD-3,lb-1 {ED}\nEtcd-3\t{ED}\nlb-2 {ED}"
        );
        let (out, n) = without_alias(text.as_bytes(), "etcd-3");
        assert_eq!(n, 3);
        let want = format!(
            "# pinned by kubeha\netcd-1 {ED}\r\n\n  etcd-30 {ED}\n@revoked etcd-3 {ED}\n|1|c2FsdA==|aGFzaA== {ED}\netcd-2,lb-1 {ED}\nlb-2 {ED}"
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
        // Nothing named: the very same bytes.
        let (same, n) = without_alias(text.as_bytes(), "cp-9");
        assert_eq!((same.as_slice(), n), (text.as_bytes(), 0));
    }

    #[test]
    fn forgetting_rewrites_the_file_in_place_keeping_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        fs::write(&kh, format!("etcd-1 {ED}\netcd-2 {ED}\n")).unwrap();
        fs::set_permissions(&kh, fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(forget_host_key(&kh, "etcd-2").unwrap(), 1);
        assert_eq!(fs::read_to_string(&kh).unwrap(), format!("etcd-1 {ED}\n"));
        assert_eq!(
            fs::metadata(&kh).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(forget_host_key(&kh, "etcd-2").unwrap(), 0);
        // No temp file left behind, and a missing file is not created.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(forget_host_key(&dir.path().join("none"), "x").unwrap(), 0);
        assert!(!dir.path().join("none").exists());
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status();
        let Ok(st) = st else {
            eprintln!("skipped: no ssh-keygen");
            return;
        };
        assert!(st.success());
        let public = fs::read_to_string(key.with_extension("pub")).unwrap();
        let mut f = public.split_whitespace();
        let (ty, blob) = (f.next().unwrap(), f.next().unwrap());
        let kh = dir.path().join("known_hosts");
        fs::write(&kh, format!("lb-1 {ED}\nnode-7 {ty} {blob}\n")).unwrap();
        let got = pinned_keys(&kh, "node-7").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].key_type, "ssh-ed25519");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let want = text.split_whitespace().nth(1).unwrap();
        assert!(want.starts_with("SHA256:"), "{text}");
        assert_eq!(got[0].fingerprint, want);
    }
}
