//! Small views of the machine's state read from `/proc` and `ip`: mounts, links, namespace
//! members, and signalling processes.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use crate::cmd;

/// Whether the effective user is root (read from `/proc/self/status`).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("Uid:"))?;
        line.split_whitespace().nth(2).map(|euid| euid == "0")
    }) == Some(true)
}

/// Decodes the octal escapes (`\040`) of `/proc/self/mountinfo` paths.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every mount point of this process's mount namespace, in mount order.
pub fn mount_points() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .collect()
}

pub fn is_mount_point(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    v.dedup();
    v
}

/// Unmounts every mount at or below `dir` (lazily if busy); returns what was unmounted.
pub fn unmount_all_under(dir: &Path) -> Vec<PathBuf> {
    let mut done = Vec::new();
    // Stacked mounts on one point need one umount each; bounded.
    for _ in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            break;
        }
        for m in mounts {
            let p = m.to_string_lossy().into_owned();
            if cmd::quiet(&["umount", &p]) || cmd::quiet(&["umount", "-l", &p]) {
                done.push(m);
            }
        }
    }
    done
}

/// Names of the links in this network namespace (`ip -o link show`).
pub fn links() -> Vec<String> {
    let out = cmd::output(
        &["ip", "-o", "link", "show"],
        cmd::DEFAULT_TIMEOUT,
        "list links",
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).trim().to_string())
        .collect()
}

pub fn link_exists(name: &str) -> bool {
    cmd::output(
        &["ip", "link", "show", "dev", name],
        cmd::DEFAULT_TIMEOUT,
        "show link",
    )
    .is_ok_and(|o| o.status.success())
}

/// Names from `ip netns list` (first word of each line).
pub fn netns_list() -> Vec<String> {
    let out = cmd::output(
        &["ip", "netns", "list"],
        cmd::DEFAULT_TIMEOUT,
        "list network namespaces",
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A namespace identity: (kind, inode), e.g. ("net", 4026532290).
pub type NsId = (&'static str, u64);

/// The namespace a handle file (`/run/netns/x`, a persisted mount namespace) refers to, if
/// it is a live namespace handle (on nsfs), not a plain file.
pub fn ns_of_handle(kind: &'static str, path: &Path) -> Option<NsId> {
    let nsfs_dev = fs::metadata("/proc/self/ns/net").ok()?.dev();
    let md = fs::metadata(path).ok()?;
    (md.dev() == nsfs_dev).then_some((kind, md.ino()))
}

fn pid_ns(pid: &str, kind: &str) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    let s = link.to_string_lossy();
    s.strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Process state letter from `/proc/<pid>/stat` (`Z` zombie), `None` if gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    proc_state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes that are in any of `namespaces` (this process excluded).
pub fn pids_in(namespaces: &[NsId]) -> BTreeSet<u32> {
    let me = std::process::id();
    let mut out = BTreeSet::new();
    if namespaces.is_empty() {
        return out;
    }
    for pid in all_pids() {
        if pid == me || !alive(pid) {
            continue;
        }
        let p = pid.to_string();
        if namespaces
            .iter()
            .any(|(kind, ino)| pid_ns(&p, kind) == Some(*ino))
        {
            out.insert(pid);
        }
    }
    out
}

/// Live members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let mut f = rest.split(' ');
            let state = f.next().unwrap_or("");
            let pgrp = f.nth(1).and_then(|s| s.parse::<u32>().ok());
            pgrp == Some(pgid) && state != "Z" && state != "X"
        })
        .collect()
}

/// Sends `signal` (`TERM`, `KILL`) to `targets` (pids, or `-pgid` for a group); ignores failures.
pub fn signal(signal: &str, targets: &[String]) {
    if targets.is_empty() {
        return;
    }
    let mut argv = vec!["kill", "-s", signal, "--"];
    argv.extend(targets.iter().map(String::as_str));
    let _ = cmd::output(&argv, cmd::DEFAULT_TIMEOUT, "signal processes");
}

/// Waits until `done()` holds or `limit` passes; returns whether it holds.
pub fn wait_until(limit: Duration, step: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(step);
    }
}

/// Terminates every process in `namespaces`: SIGTERM, up to 2 s, then SIGKILL. Repeats while
/// new members appear (a dying sshd may still fork), within a bound. Returns how many were
/// signalled.
pub fn kill_namespace_members(namespaces: &[NsId]) -> usize {
    let mut seen = BTreeSet::new();
    for round in 0..4 {
        let pids = pids_in(namespaces);
        if pids.is_empty() {
            break;
        }
        seen.extend(pids.iter().copied());
        let targets: Vec<String> = pids.iter().map(u32::to_string).collect();
        signal(if round == 0 { "TERM" } else { "KILL" }, &targets);
        let limit = if round == 0 {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(3)
        };
        wait_until(limit, Duration::from_millis(20), || {
            pids.iter().all(|p| !alive(*p))
        });
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/x\\"), "/x\\");
    }

    #[test]
    fn sees_itself() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(!mount_points().is_empty());
    }
}
