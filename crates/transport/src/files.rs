//! Files on a host: atomic upload, read, and batched facts, built on [`Transport::run`].
//!
//! Each operation is one constant POSIX `sh` script with the path and other data passed as
//! positional arguments, run as root. The scripts need only coreutils (`mktemp`, `dd`,
//! `sha256sum`, `stat`, `sync`).

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Command, Output, Transport, TransportError, command::shell_quote, error::Detail};

/// What kubeha needs to know about a regular file to decide whether to write it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFacts {
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
    /// `user:group` by name.
    pub owner: String,
    /// Size in bytes.
    pub size: u64,
}

impl FileFacts {
    /// The facts a file with this content, mode and owner would have (for fakes and plans).
    pub fn of(content: &[u8], mode: u32, owner: &str) -> Self {
        FileFacts {
            sha256: sha256_hex(content),
            mode: mode & 0o7777,
            owner: owner.to_string(),
            size: content.len() as u64,
        }
    }

    /// Whether writing `content` with `mode` and `owner` would change nothing. An `owner`
    /// without `:group` compares only the user.
    pub fn matches(&self, content: &[u8], mode: u32, owner: &str) -> bool {
        let owner_matches = if owner.contains(':') {
            self.owner == owner
        } else {
            self.owner.split(':').next() == Some(owner)
        };
        owner_matches
            && self.mode == mode & 0o7777
            && self.size == content.len() as u64
            && self.sha256 == sha256_hex(content)
    }
}

/// Lower-case hex SHA-256, the form [`FileFacts::sha256`] uses.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Exit status of the scripts when the path is a directory or another non-regular file.
const NOT_A_FILE: i32 = 65;
/// Exit status of the read script when the path does not exist.
const ABSENT: i32 = 44;

/// Receives `<sha256>\n<content>` on stdin and writes it to `$1` with mode `$3`, owner `$4`
/// via a temp file in `$2` (the parent directory), so that `$1` is only ever the old file or
/// the complete new one. If the connection drops, the checksum does not match, and the temp
/// file is removed instead of renamed. The temp name is hidden and has no extension, so
/// directory loaders (kubelet's static pod manifests, `*.conf` directories) skip it.
const UPLOAD: &str = r#"set -u
path=$1 dir=$2 mode=$3 owner=$4
if [ -d "$path" ]; then echo "$path is a directory" >&2; exit 65; fi
[ -d "$dir" ] || (umask 022 && mkdir -p -- "$dir") || exit 1
umask 077
tmp=$(mktemp "$dir/.kubeha-upload.XXXXXXXXXX") || exit 1
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
IFS= read -r want || { echo "no checksum on stdin" >&2; exit 1; }
dd of="$tmp" bs=65536 conv=fsync status=none || exit 1
got=$(sha256sum <"$tmp") || exit 1
if [ "${got%% *}" != "$want" ]; then
  echo "content of $path arrived incomplete (connection lost?); the file was left unchanged" >&2
  exit 1
fi
chown -- "$owner" "$tmp" || exit 1
chmod -- "$mode" "$tmp" || exit 1
mv -f -- "$tmp" "$path" || exit 1
sync -- "$dir" 2>/dev/null || true
"#;

const READ: &str = r#"if [ -d "$1" ]; then exit 65; fi
if [ -e "$1" ]; then exec cat -- "$1"; fi
exit 44
"#;

/// For each argument prints `F` (regular file), `O` (something else) or `A` (absent), then
/// `--`, then `stat` and `sha256sum` lines for the regular files, in argument order.
const STAT: &str = r#"for p do
  shift
  if [ -f "$p" ]; then echo F; set -- "$@" "$p"
  elif [ -e "$p" ]; then echo O
  else echo A; fi
done
echo --
[ $# -gt 0 ] || exit 0
stat -L -c '%a %s %U:%G' -- "$@" || exit 1
sha256sum -- "$@" || exit 1
"#;

/// How much quoted path text one `stat_files` command carries: the remote shell receives the
/// whole line as one argument, which Linux caps at 128 KiB.
const STAT_BATCH_BYTES: usize = 96 * 1024;

/// Uploads through `t.run`; see [`Transport::upload`].
pub(crate) fn upload<T: Transport + ?Sized>(
    t: &T,
    path: &str,
    content: &[u8],
    mode: u32,
    owner: &str,
    timeout: Duration,
) -> Result<(), TransportError> {
    let op = format!("upload of {path}");
    let dir = check_path(t.host(), &op, path)?;
    check_owner(t.host(), &op, owner)?;
    if mode > 0o7777 {
        return Err(invalid(
            t.host(),
            &op,
            format!("mode {mode:o} is not a permission mode"),
        ));
    }
    let mut stdin = Vec::with_capacity(65 + content.len());
    stdin.extend_from_slice(sha256_hex(content).as_bytes());
    stdin.push(b'\n');
    stdin.extend_from_slice(content);
    let cmd = Command::script(UPLOAD)
        .args([path, dir, &format!("{mode:04o}"), owner])
        .stdin(stdin)
        .sudo()
        .timeout(timeout + per_mib(content.len()))
        .allow_failure();
    let out = t.run(&cmd).map_err(|e| rename_op(e, &op))?;
    match out.status {
        0 => Ok(()),
        NOT_A_FILE => Err(TransportError::NotAFile {
            host: t.host().to_string(),
            path: path.to_string(),
        }),
        _ => Err(failed(t.host(), op, &out)),
    }
}

/// Reads through `t.run`; see [`Transport::read`].
pub(crate) fn read<T: Transport + ?Sized>(
    t: &T,
    path: &str,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, TransportError> {
    let op = format!("read of {path}");
    check_path(t.host(), &op, path)?;
    let cmd = Command::script(READ)
        .arg(path)
        .sudo()
        .timeout(timeout)
        .allow_failure();
    let out = t.run(&cmd).map_err(|e| rename_op(e, &op))?;
    match out.status {
        0 => Ok(Some(out.stdout)),
        ABSENT => Ok(None),
        NOT_A_FILE => Err(TransportError::NotAFile {
            host: t.host().to_string(),
            path: path.to_string(),
        }),
        _ => Err(failed(t.host(), op, &out)),
    }
}

/// Stats through `t.run`; see [`Transport::stat_files`].
pub(crate) fn stat_files<T: Transport + ?Sized>(
    t: &T,
    paths: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, FileFacts>, TransportError> {
    let op = format!("stat of {} files", paths.len());
    for p in paths {
        check_path(t.host(), &op, p)?;
    }
    let mut facts = BTreeMap::new();
    let mut batch: Vec<&str> = Vec::new();
    let mut bytes = 0;
    for p in paths {
        let len = shell_quote(p).len() + 1;
        if !batch.is_empty() && bytes + len > STAT_BATCH_BYTES {
            stat_batch(t, &op, &batch, timeout, &mut facts)?;
            batch.clear();
            bytes = 0;
        }
        batch.push(p);
        bytes += len;
    }
    if !batch.is_empty() {
        stat_batch(t, &op, &batch, timeout, &mut facts)?;
    }
    Ok(facts)
}

fn stat_batch<T: Transport + ?Sized>(
    t: &T,
    op: &str,
    paths: &[&str],
    timeout: Duration,
    facts: &mut BTreeMap<String, FileFacts>,
) -> Result<(), TransportError> {
    let cmd = Command::script(STAT)
        .args(paths.iter().copied())
        .sudo()
        .timeout(timeout)
        .allow_failure();
    let out = t.run(&cmd).map_err(|e| rename_op(e, op))?;
    if out.status != 0 {
        return Err(failed(t.host(), op.to_string(), &out));
    }
    let protocol = |what: String| TransportError::Protocol {
        host: t.host().to_string(),
        op: op.to_string(),
        detail: Detail(what),
    };
    let text = out.stdout_lossy();
    let mut lines = text.lines();
    let mut regular = Vec::new();
    for path in paths {
        match lines.next() {
            Some("F") => regular.push(*path),
            Some("O") => {
                return Err(TransportError::NotAFile {
                    host: t.host().to_string(),
                    path: path.to_string(),
                });
            }
            Some("A") => {}
            other => {
                return Err(protocol(format!(
                    "expected a kind for {path}, got {other:?}"
                )));
            }
        }
    }
    if lines.next() != Some("--") {
        return Err(protocol("missing separator".to_string()));
    }
    let stats: Vec<&str> = lines.by_ref().take(regular.len()).collect();
    let sums: Vec<&str> = lines.by_ref().take(regular.len()).collect();
    if stats.len() != regular.len() || sums.len() != regular.len() {
        return Err(protocol(format!(
            "expected {} stat and checksum lines",
            regular.len()
        )));
    }
    for ((path, stat), sum) in regular.into_iter().zip(stats).zip(sums) {
        let mut fields = stat.splitn(3, ' ');
        let (Some(mode), Some(size), Some(owner)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(protocol(format!("bad stat line for {path}: {stat:?}")));
        };
        let (Ok(mode), Ok(size)) = (u32::from_str_radix(mode, 8), size.parse::<u64>()) else {
            return Err(protocol(format!("bad stat line for {path}: {stat:?}")));
        };
        // sha256sum marks lines whose file name needed escaping with a leading backslash.
        let sum = sum.strip_prefix('\\').unwrap_or(sum);
        let sha256 = sum
            .get(..64)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase);
        let Some(sha256) = sha256 else {
            return Err(protocol(format!("bad checksum line for {path}")));
        };
        facts.insert(
            path.to_string(),
            FileFacts {
                sha256,
                mode,
                owner: owner.to_string(),
                size,
            },
        );
    }
    Ok(())
}

/// Returns the parent directory of an absolute, normalised file path.
fn check_path<'a>(host: &str, op: &str, path: &'a str) -> Result<&'a str, TransportError> {
    let reason = if !path.starts_with('/') {
        "the path is not absolute"
    } else if path.ends_with('/') {
        "the path names a directory"
    } else if path.contains('\0') {
        "the path contains a NUL byte"
    } else if path
        .split('/')
        .skip(1)
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        "the path is not normalised (empty, `.` or `..` component)"
    } else {
        let dir = path
            .rsplit_once('/')
            .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
        return Ok(dir);
    };
    Err(invalid(host, op, reason.to_string()))
}

fn check_owner(host: &str, op: &str, owner: &str) -> Result<(), TransportError> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with('-')
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let ok = match owner.split_once(':') {
        Some((user, group)) => name_ok(user) && name_ok(group),
        None => name_ok(owner),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            host,
            op,
            format!("owner {owner:?} is not `user` or `user:group`"),
        ))
    }
}

fn invalid(host: &str, op: &str, reason: String) -> TransportError {
    TransportError::Invalid {
        host: host.to_string(),
        op: op.to_string(),
        reason,
    }
}

/// Errors from `run` name the script; name the file operation instead.
fn rename_op(err: TransportError, op: &str) -> TransportError {
    match err {
        TransportError::Timeout { host, after, .. } => TransportError::Timeout {
            host,
            op: op.to_string(),
            after,
        },
        TransportError::Invalid { host, reason, .. } => TransportError::Invalid {
            host,
            op: op.to_string(),
            reason,
        },
        other => other,
    }
}

fn failed(host: &str, op: String, out: &Output) -> TransportError {
    // The scripts' stderr is their own messages and tool errors, never file content.
    TransportError::CommandFailed {
        host: host.to_string(),
        op,
        status: out.status,
        stderr_tail: crate::invoke::tail(&out.stderr),
    }
}

/// Extra time for big files: one second per MiB, so a slow link is not mistaken for a hang.
fn per_mib(len: usize) -> Duration {
    Duration::from_secs((len as u64).div_ceil(1 << 20))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_normal() {
        assert_eq!(
            check_path("h", "op", "/etc/kubernetes/admin.conf").unwrap(),
            "/etc/kubernetes"
        );
        assert_eq!(check_path("h", "op", "/x").unwrap(), "/");
        for bad in [
            "etc/x",
            "/etc/",
            "/etc//x",
            "/etc/../x",
            "/etc/./x",
            "",
            "/",
        ] {
            assert!(check_path("h", "op", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn owners_are_names() {
        for ok in [
            "root",
            "root:root",
            "etcd:etcd",
            "1000:1000",
            "kube-apiserver:kube",
        ] {
            assert!(check_owner("h", "op", ok).is_ok(), "{ok}");
        }
        for bad in ["", ":", "root:", "-R", "a b", "root:root:x", "$(id)"] {
            assert!(check_owner("h", "op", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn facts_match_content_mode_and_owner() {
        let f = FileFacts::of(b"hello", 0o100644, "root:root");
        assert_eq!(f.mode, 0o644);
        assert_eq!(
            f.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(f.matches(b"hello", 0o644, "root:root"));
        assert!(f.matches(b"hello", 0o644, "root"));
        assert!(!f.matches(b"hello", 0o600, "root:root"));
        assert!(!f.matches(b"hellO", 0o644, "root:root"));
        assert!(!f.matches(b"hello", 0o644, "etcd"));
    }
}

/// One file of an [`upload_many`] batch.
#[derive(Clone)]
pub struct UploadFile<'a> {
    pub path: &'a str,
    pub content: &'a [u8],
    pub mode: u32,
    pub owner: &'a str,
}

/// Reads records from stdin — a header line `<sha256> <size> <mode> <owner>`, the path on
/// the next line, then exactly `<size>` content bytes — and installs each file the way
/// [`UPLOAD`] does (temp file in the same directory, checksum, fsync, mode, owner, rename).
/// A stream cut anywhere leaves every target either old or complete.
const UPLOAD_MANY: &str = r#"set -u
umask 077
tmp=
trap 'if [ -n "$tmp" ]; then rm -f -- "$tmp"; fi' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
while IFS= read -r hdr; do
  if [ "$hdr" = "END" ]; then exit 0; fi
  set -- $hdr
  want=$1 size=$2 mode=$3 owner=$4
  IFS= read -r path || { echo "upload stream ended early" >&2; exit 1; }
  dir=${path%/*}
  [ -n "$dir" ] || dir=/
  if [ -d "$path" ]; then echo "$path is a directory" >&2; exit 65; fi
  [ -d "$dir" ] || (umask 022 && mkdir -p -- "$dir") || exit 1
  tmp=$(mktemp "$dir/.kubeha-upload.XXXXXXXXXX") || exit 1
  if [ "$size" -gt 0 ]; then
    dd of="$tmp" bs=65536 count="$size" iflag=count_bytes,fullblock conv=fsync status=none || exit 1
  fi
  got=$(sha256sum <"$tmp") || exit 1
  if [ "${got%% *}" != "$want" ]; then
    echo "content of $path arrived incomplete (connection lost?); the file was left unchanged" >&2
    exit 1
  fi
  chown -- "$owner" "$tmp" || exit 1
  chmod -- "$mode" "$tmp" || exit 1
  mv -f -- "$tmp" "$path" || exit 1
  tmp=
  sync -- "$dir" 2>/dev/null || true
done
echo "upload stream ended early" >&2
exit 1
"#;

/// Uploads many files in one remote command (one round trip instead of one per file),
/// each atomically as [`Transport::upload`] does.
pub fn upload_many<T: Transport + ?Sized>(
    t: &T,
    files: &[UploadFile<'_>],
    timeout: Duration,
) -> Result<(), TransportError> {
    if files.is_empty() {
        return Ok(());
    }
    let op = format!("upload of {} file(s)", files.len());
    let mut stdin = Vec::new();
    let mut total = 0;
    for f in files {
        let fop = format!("upload of {}", f.path);
        check_path(t.host(), &fop, f.path)?;
        check_owner(t.host(), &fop, f.owner)?;
        if f.mode > 0o7777 || f.path.contains('\n') || f.owner.contains(char::is_whitespace) {
            return Err(invalid(
                t.host(),
                &fop,
                "unusable mode, path or owner".to_string(),
            ));
        }
        stdin.extend_from_slice(
            format!(
                "{} {} {:04o} {}\n{}\n",
                sha256_hex(f.content),
                f.content.len(),
                f.mode,
                f.owner,
                f.path
            )
            .as_bytes(),
        );
        stdin.extend_from_slice(f.content);
        total += f.content.len();
    }
    stdin.extend_from_slice(b"END\n");
    let cmd = Command::script(UPLOAD_MANY)
        .stdin(stdin)
        .sudo()
        .timeout(timeout + per_mib(total))
        .allow_failure();
    let out = t.run(&cmd).map_err(|e| rename_op(e, &op))?;
    match out.status {
        0 => Ok(()),
        _ => Err(failed(t.host(), op, &out)),
    }
}
