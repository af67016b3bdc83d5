//! `kubeha etcd snapshot save` (streamed, fsynced, verified, renamed into place, with a
//! JSON sidecar) and `kubeha etcd defrag` (one member at a time, healthy in between).

use std::{
    ffi::OsString,
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use kubeha_etcd::{Client, snapshot};
use kubeha_spec::Spec;
use serde::Serialize;

use super::{Census, Failure, Observed, human_bytes, ms, survey};
use crate::{
    args::Global,
    output::{emit, kv_table},
    table::Table,
};

/// Each read of the snapshot stream may wait this long (not the whole transfer).
const SNAPSHOT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Defragmenting a large database takes a while; the member answers when done.
const DEFRAG_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a member may take to answer health checks again after defragmentation.
const SETTLE: Duration = Duration::from_secs(60);

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(dir: &Path) -> Result<(), Failure> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Failure::io("fsync directory", dir))
}

/// Removes a partly written file unless disarmed.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Failure> {
    let tmp = with_suffix(path, ".part");
    let mut guard = Partial(Some(tmp.clone()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(Failure::io("create", &tmp))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(Failure::io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(Failure::io("rename into place", path))?;
    guard.0 = None;
    sync_dir(&parent_dir(path))
}

/// `2026-11-22T01:10:32Z`.
fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
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

/// The sidecar `FILE.json` and what `snapshot save` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotRecord {
    file: String,
    cluster: String,
    /// Bytes, the 32-byte trailer included.
    size: u64,
    /// SHA-256 of the whole file (`sha256sum FILE`).
    sha256: String,
    /// The member's store revision just before the snapshot began; the snapshot holds at
    /// least this revision.
    revision: u64,
    member: String,
    member_id: String,
    endpoint: String,
    etcd_version: String,
    taken_at: String,
    took_ms: f64,
    /// etcd's own integrity trailer: SHA-256 of the bytes before it, checked after fsync.
    trailer_sha256: String,
    trailer_verified: bool,
}

/// The leader when it is healthy, else any healthy voter.
fn snapshot_source(c: &Census) -> Option<&Observed> {
    let usable = |o: &&Observed| o.health.healthy && !o.member.is_learner && !o.endpoint.is_empty();
    c.members
        .iter()
        .filter(usable)
        .find(|o| c.leader.as_ref() == Some(&o.member.id))
        .or_else(|| c.members.iter().find(usable))
}

pub(crate) fn snapshot_save(g: &Global, spec: &Spec, file: &Path) -> Result<ExitCode, Failure> {
    if file.is_dir() {
        return Err(Failure::Refused {
            message: format!("{} is a directory", file.display()),
            help: "name the snapshot file, e.g. backups/etcd-$(date +%F).db".into(),
        });
    }
    let dir = parent_dir(file);
    if !dir.is_dir() {
        return Err(Failure::Refused {
            message: format!("directory {} does not exist", dir.display()),
            help: "create it first".into(),
        });
    }
    let (client, census) = survey(g, spec)?;
    let Some(src) = snapshot_source(&census) else {
        return Err(Failure::Failed {
            message: "no healthy voting member to take a snapshot from".into(),
            help: "check `kubeha etcd health`".into(),
        });
    };
    let before = client.status(&src.endpoint).map_err(Failure::etcd(format!(
        "read the status of {}",
        src.describe()
    )))?;
    let part = with_suffix(file, ".part");
    let mut guard = Partial(Some(part.clone()));
    let started = Instant::now();
    let taken_at = rfc3339(time::OffsetDateTime::now_utc());
    // Snapshots hold every Secret of the cluster: owner-only from the first byte.
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&part)
        .map_err(Failure::io("create", &part))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let streamed = client
        .with_timeout(SNAPSHOT_READ_TIMEOUT)
        .snapshot(&src.endpoint, &mut w)
        .map_err(Failure::etcd(format!(
            "take a snapshot from {}",
            src.describe()
        )))?;
    let f = w.into_inner().map_err(|e| Failure::Io {
        action: "write",
        path: part.clone(),
        source: e.into_error(),
    })?;
    f.sync_all().map_err(Failure::io("fsync", &part))?;
    drop(f);
    // Read back what reached the disk before it may replace anything.
    let check = snapshot::verify_file(&part).map_err(Failure::io("read back", &part))?;
    if !check.is_valid() || check != streamed {
        return Err(Failure::Failed {
            message: format!(
                "the snapshot written to {} does not verify: {} bytes, trailer {} vs content SHA-256 {} (the stream had {} bytes, {})",
                part.display(),
                check.size,
                check.trailer,
                check.content_sha256,
                streamed.size,
                streamed.sha256
            ),
            help: "check the disk and free space, then try again; nothing was replaced".into(),
        });
    }
    fs::rename(&part, file).map_err(Failure::io("rename into place", file))?;
    guard.0 = None;
    sync_dir(&dir)?;
    let size = fs::metadata(file).map_err(Failure::io("stat", file))?.len();
    if size == 0 || size != check.size {
        return Err(Failure::Failed {
            message: format!(
                "{} has {size} bytes after the rename, expected {}",
                file.display(),
                check.size
            ),
            help: String::new(),
        });
    }
    let record = SnapshotRecord {
        file: file.display().to_string(),
        cluster: spec.name.clone(),
        size,
        sha256: check.sha256.clone(),
        revision: before.revision,
        member: src.label(),
        member_id: src.member.id.clone(),
        endpoint: src.endpoint.clone(),
        etcd_version: before.version.clone(),
        taken_at,
        took_ms: ms(started.elapsed()),
        trailer_sha256: check.trailer.clone(),
        trailer_verified: true,
    };
    let sidecar = with_suffix(file, ".json");
    let mut json = serde_json::to_vec_pretty(&record).map_err(|e| Failure::Failed {
        message: format!("cannot encode {}: {e}", sidecar.display()),
        help: String::new(),
    })?;
    json.push(b'\n');
    write_atomic(&sidecar, &json, 0o644)?;
    emit(g.output, &record, || {
        let mut s = kv_table(&[
            ("snapshot", record.file.clone()),
            (
                "size",
                format!("{} ({} bytes)", human_bytes(record.size), record.size),
            ),
            ("sha256", record.sha256.clone()),
            (
                "revision",
                format!(
                    "{} (at least; read just before the snapshot)",
                    record.revision
                ),
            ),
            (
                "from",
                format!(
                    "{} {} (etcd {})",
                    record.member, record.endpoint, record.etcd_version
                ),
            ),
            (
                "integrity",
                "etcd's SHA-256 trailer matches the content".into(),
            ),
            ("took", format!("{:.0} ms", record.took_ms)),
        ]);
        s.push_str(&format!("recorded in {}\n", sidecar.display()));
        s
    })
    .map_err(|e| Failure::Failed {
        message: e.to_string(),
        help: String::new(),
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DefragRow {
    member: String,
    id: String,
    endpoint: String,
    db_size_before: u64,
    db_size_after: u64,
    took_ms: f64,
}

/// Polls until every voter answers health checks; the error names those that do not.
fn wait_all_healthy(client: &Client, c: &Census, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let sick: Vec<String> = c
            .members
            .iter()
            .filter(|o| !o.member.is_learner || !o.endpoint.is_empty())
            .filter(|o| !client.member_health(&o.member).healthy)
            .map(|o| o.label())
            .collect();
        if sick.is_empty() {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(sick.join(", "));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub(crate) fn defrag(g: &Global, spec: &Spec) -> Result<ExitCode, Failure> {
    let (client, census) = survey(g, spec)?;
    let sick: Vec<String> = census
        .members
        .iter()
        .filter(|o| !o.health.healthy && (!o.member.is_learner || !o.endpoint.is_empty()))
        .map(|o| o.describe())
        .collect();
    if !sick.is_empty() {
        return Err(Failure::Refused {
            message: format!("refusing to defragment while {} {} unhealthy: each member stops serving while it is defragmented, so with one already down the cluster could lose quorum", sick.join(", "), if sick.len() == 1 { "is" } else { "are" }),
            help: "bring them back, or remove members that are gone for good (`kubeha etcd remove`, or `kubeha etcd forget` for ghosts), then run defrag again".into(),
        });
    }
    // Followers first, the leader last: one leader change at most.
    let mut order: Vec<&Observed> = census
        .members
        .iter()
        .filter(|o| !o.endpoint.is_empty())
        .collect();
    order.sort_by_key(|o| census.leader.as_ref() == Some(&o.member.id));
    let long = client.with_timeout(DEFRAG_TIMEOUT);
    let mut rows = Vec::new();
    for o in order {
        let before = client.status(&o.endpoint).map(|s| s.db_size).unwrap_or(0);
        progress!("defragmenting {} ({}) …", o.describe(), human_bytes(before));
        let t = Instant::now();
        long.defragment(&o.endpoint)
            .map_err(Failure::etcd(format!("defragment {}", o.describe())))?;
        let took = t.elapsed();
        wait_all_healthy(&client, &census, SETTLE).map_err(|sick| Failure::Failed {
            message: format!("after defragmenting {}, {sick} did not answer health checks within {}s; stopped before the next member", o.describe(), SETTLE.as_secs()),
            help: "check `kubeha etcd health`".into(),
        })?;
        let after = client.status(&o.endpoint).map(|s| s.db_size).unwrap_or(0);
        rows.push(DefragRow {
            member: o.label(),
            id: o.member.id.clone(),
            endpoint: o.endpoint.clone(),
            db_size_before: before,
            db_size_after: after,
            took_ms: ms(took),
        });
    }
    emit(g.output, &rows, || {
        let mut t = Table::new(["MEMBER", "ENDPOINT", "DB SIZE BEFORE", "AFTER", "TOOK"]);
        for r in &rows {
            t.row([r.member.clone(), r.endpoint.clone(), human_bytes(r.db_size_before), human_bytes(r.db_size_after), format!("{:.0} ms", r.took_ms)]);
        }
        let mut s = t.render();
        if let Ok(alarms) = &census.alarms {
            for a in alarms.iter().filter(|a| a.alarm == "NOSPACE") {
                s.push_str(&format!("alarm NOSPACE is still raised on {}: defragmentation frees space but does not disarm it\n", a.member_id));
            }
        }
        s
    })
    .map_err(|e| Failure::Failed { message: e.to_string(), help: String::new() })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{super::tests::*, *};

    #[test]
    fn snapshot_comes_from_the_healthy_leader_else_a_healthy_voter() {
        let c = census(vec![
            observed("a1", "etcd-1", 11, false, true),
            observed("b2", "etcd-2", 12, false, true),
            observed("d4", "etcd-4", 14, true, true),
        ]);
        assert_eq!(
            snapshot_source(&c).map(|o| o.member.id.as_str()),
            Some("a1")
        );
        let c = census(vec![
            observed("a1", "etcd-1", 11, false, false),
            observed("d4", "etcd-4", 14, true, true),
            observed("b2", "etcd-2", 12, false, true),
        ]);
        assert_eq!(
            snapshot_source(&c).map(|o| o.member.id.as_str()),
            Some("b2")
        );
        let c = census(vec![
            observed("a1", "etcd-1", 11, false, false),
            observed("d4", "etcd-4", 14, true, true),
        ]);
        assert!(snapshot_source(&c).is_none());
    }

    #[test]
    fn part_and_sidecar_names() {
        assert_eq!(
            with_suffix(Path::new("backups/etcd.db"), ".part"),
            PathBuf::from("backups/etcd.db.part")
        );
        assert_eq!(
            with_suffix(Path::new("etcd.db"), ".json"),
            PathBuf::from("etcd.db.json")
        );
        assert_eq!(parent_dir(Path::new("etcd.db")), PathBuf::from("."));
    }

    #[test]
    fn timestamps() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_795_309_832)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        assert_eq!(rfc3339(t), "2026-11-22T01:10:32Z");
    }
}
