//! `kubeha etcd snapshot restore FILE`: disaster recovery. Rebuilds every member of the
//! cluster file from one snapshot, under a new cluster token, onto whatever hosts and
//! addresses the cluster file names now (peer URLs come from the cluster file, never from the
//! snapshot).
//!
//! Order, so that a failure leaves something a human can recover from:
//! 1. the snapshot's integrity trailer is checked, and a restore tool (the `etcdutl` next to
//!    `etcd.binary`, else one on the PATH, else etcdctl 3.4's `snapshot restore`) is found on
//!    every member, before anything changes;
//! 2. etcd is stopped on every member;
//! 3. on each member the snapshot is restored into a new data dir next to the old one, the
//!    old one is renamed aside to `<data-dir>.kubeha-before-restore-<time>` and the new one
//!    renamed into place;
//! 4. the new token is recorded in the state dir's `secrets.json` (`etcdClusterToken`): every
//!    later render (`kubeha up`) passes it as `--initial-cluster-token`, so `up` keeps the
//!    restored cluster as it is instead of rewriting the flags;
//! 5. the re-rendered etcd files are uploaded, every member is started, and the etcd gate
//!    (all healthy, one leader) must pass.

use std::{path::Path, process::ExitCode, time::Duration};

use kubeha_apply::{gate, service::ServiceManager};
use kubeha_etcd::snapshot;
use kubeha_render::{Ctx, etcd as render_etcd};
use kubeha_spec::{EtcdDeployment, Spec};
use kubeha_transport::{Command, Transport, UploadFile, upload_many};

use super::Failure;
use crate::args::Global;

const UNIT: &str = "etcd.service";
const GATE_TIMEOUT: Duration = Duration::from_secs(90);

/// Finds the restore tool and the service manager; changes nothing. `$1`: the directory of
/// `etcd.binary`, whose `etcdutl` matches the server's data format best.
const PREFLIGHT: &str = r#"if [ -d /run/systemd/system ]; then echo manager=systemd; else echo manager=none; fi
if [ -x "$1/etcdutl" ]; then echo "tool=$1/etcdutl"
elif command -v etcdutl >/dev/null 2>&1; then echo tool=etcdutl
elif command -v etcdctl >/dev/null 2>&1; then echo tool=etcdctl
else echo tool=; fi"#;

/// Restores `$2` into a new data dir and swaps it in for `$1`. Arguments: data dir, snapshot,
/// name, initial cluster, token, peer URL, time stamp, directory of `etcd.binary`.
const RESTORE: &str = r#"set -u
dd=$1 snap=$2 name=$3 ic=$4 tok=$5 peer=$6 ts=$7 bin=$8
new="$dd.kubeha-restore-$ts"
old="$dd.kubeha-before-restore-$ts"
rm -rf -- "$new"
if [ -x "$bin/etcdutl" ]; then tool="$bin/etcdutl"
elif command -v etcdutl >/dev/null 2>&1; then tool=etcdutl
else tool=etcdctl; export ETCDCTL_API=3; fi
if ! out=$("$tool" snapshot restore "$snap" --name "$name" --initial-cluster "$ic" \
    --initial-cluster-token "$tok" --initial-advertise-peer-urls "$peer" --data-dir "$new" 2>&1); then
  rm -rf -- "$new"; rm -f -- "$snap"
  echo "$tool snapshot restore failed: $out" >&2; exit 1
fi
rm -f -- "$snap"
chmod 700 -- "$new" || exit 1
sync
if [ -e "$dd" ]; then mv -T -- "$dd" "$old" || { echo "cannot move $dd aside" >&2; exit 1; }; echo "aside=$old"; fi
mv -T -- "$new" "$dd" || { echo "cannot move $new to $dd" >&2; exit 1; }
sync
echo "tool=$tool""#;

/// The token a restore started at `unix_time` uses: never the spec's default, never a
/// previous restore's (unless run twice in one second).
pub(crate) fn new_token(cluster: &str, unix_time: i64) -> String {
    format!("{cluster}-etcd-restored-{unix_time}")
}

/// The time stamp in the names of the data dirs a restore leaves: `20260102T030405Z`.
pub(crate) fn stamp(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn failed(message: impl Into<String>, help: impl Into<String>) -> Failure {
    Failure::Failed {
        message: message.into(),
        help: help.into(),
    }
}

struct Member<'a> {
    name: String,
    peer_url: String,
    t: &'a dyn Transport,
    manager: ServiceManager,
}

pub(crate) fn restore(
    g: &Global,
    spec: &Spec,
    file: &Path,
    yes: bool,
) -> Result<ExitCode, Failure> {
    let check = snapshot::verify_file(file).map_err(Failure::io("read the snapshot", file))?;
    if !check.trailer_matches {
        return Err(Failure::Refused {
            message: format!(
                "{} is not an intact etcd snapshot: its sha256 integrity trailer does not match ({} bytes)",
                file.display(),
                check.size
            ),
            help: "use a file written by `kubeha etcd snapshot save` (or etcdctl snapshot save); nothing was changed".into(),
        });
    }
    let nodes = spec.etcd_members();
    if nodes.is_empty() {
        return Err(Failure::Refused {
            message: "the cluster file has no etcd members".into(),
            help: "give nodes the etcd role (or control-plane in the stacked topology)".into(),
        });
    }
    if spec.etcd.deployment != EtcdDeployment::Systemd {
        return Err(failed(
            "`kubeha etcd snapshot restore` is not implemented yet for etcd as a static pod; nothing was changed",
            "restore by hand: move the etcd manifest away on every member, `etcdutl snapshot restore` into a new data dir with the cluster's --initial-cluster, swap the data dirs, put the manifests back",
        ));
    }
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    if !yes
        && !crate::commands::confirm(&format!(
            "Replace ALL etcd data of cluster {} on {} with {}? etcd stops on every member",
            spec.name,
            names.join(", "),
            file.display()
        ))
    {
        return Err(Failure::Refused {
            message: "restore not confirmed; nothing was changed".into(),
            help: "answer y on a terminal, or pass --yes (without a terminal the answer is no)"
                .into(),
        });
    }

    let cli = |e: crate::error::CliError| failed(kubeha_etcd::error_chain(&e), "");
    let mut store = crate::commands::open_store(g, &spec.name).map_err(cli)?;
    let now = time::OffsetDateTime::now_utc();
    let pki = |e: kubeha_pki::PkiError| failed(kubeha_etcd::error_chain(&e), "");
    let (mut materials, issued) = store.ensure(spec, now).map_err(pki)?;
    crate::commands::print_pki_notices(&issued);
    let token = new_token(&spec.name, now.unix_timestamp());
    materials.secrets.etcd_cluster_token = Some(token.clone());
    let hosts =
        crate::commands::up::transports(spec, &g.state_dir.join(&spec.name)).map_err(cli)?;
    let supervisor = crate::commands::up::supervisor_binary();
    let bin_dir = Path::new(&spec.etcd.binary)
        .parent()
        .map_or_else(|| "/usr/bin".to_string(), |d| d.display().to_string());

    // ---- 1. preflight: every member reachable with a restore tool; nothing changes.
    let mut members = Vec::new();
    for n in &nodes {
        let Some(t) = hosts.get(&n.name) else {
            return Err(failed(format!("no connection for {}", n.name), ""));
        };
        let t: &dyn Transport = t.as_ref();
        let out = t
            .run(&Command::script(PREFLIGHT).arg(bin_dir.clone()).sudo())
            .map_err(|e| {
                failed(
                    format!(
                        "cannot reach {}: {}; nothing was changed",
                        n.name,
                        kubeha_etcd::error_chain(&e)
                    ),
                    "every member must be reachable to restore",
                )
            })?;
        let text = out.stdout_lossy().to_string();
        if text.lines().any(|l| l == "tool=") {
            return Err(failed(
                format!(
                    "{} has neither etcdutl nor etcdctl; nothing was changed",
                    n.name
                ),
                "install etcd's tools there (Debian: etcd-client) and run again",
            ));
        }
        let manager = if text.lines().any(|l| l == "manager=none") {
            match &supervisor {
                Some(b) => ServiceManager::Supervisor { binary: b.clone() },
                None => return Err(failed(format!("{} has no systemd", n.name), "")),
            }
        } else {
            ServiceManager::Systemd
        };
        members.push(Member {
            name: n.name.clone(),
            peer_url: Spec::etcd_peer_url(n),
            t,
            manager,
        });
    }
    let rendered: Vec<Vec<kubeha_render::HostFile>> = nodes
        .iter()
        .map(|n| {
            render_etcd::files(Ctx::new(spec, &materials), n)
                .map(|f| {
                    f.into_iter()
                        .filter(|f| {
                            [
                                render_etcd::ENV_PATH,
                                render_etcd::UNIT_PATH,
                                render_etcd::KUBEADM_CONFIG_PATH,
                            ]
                            .contains(&f.path.as_str())
                        })
                        .collect()
                })
                .map_err(|e| failed(kubeha_etcd::error_chain(&e), ""))
        })
        .collect::<Result<_, _>>()?;
    let snapshot_bytes = std::fs::read(file).map_err(Failure::io("read the snapshot", file))?;

    // ---- 2. stop etcd everywhere.
    for m in &members {
        progress!("restore: stopping etcd on {}", m.name);
        m.manager.stop(m.t, UNIT).map_err(|e| {
            failed(
                format!(
                    "cannot stop etcd on {}: {}",
                    m.name,
                    kubeha_etcd::error_chain(&e)
                ),
                "no data dir was touched; `kubeha up` starts the stopped members again",
            )
        })?;
    }

    // ---- 3. restore each member into a new data dir and swap it in, all at once.
    let ts = stamp(now);
    let data_dir = spec.etcd.data_dir.clone();
    let initial_cluster = spec.etcd_initial_cluster();
    let snap_path = format!("{data_dir}.kubeha-restore-{ts}.db");
    let results: Vec<(String, Result<String, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = members
            .iter()
            .map(|m| {
                let (snap_path, bytes) = (&snap_path, &snapshot_bytes);
                let (data_dir, ic, token, ts) = (&data_dir, &initial_cluster, &token, &ts);
                let bin_dir = &bin_dir;
                s.spawn(move || {
                    let up = [UploadFile {
                        path: snap_path,
                        content: bytes,
                        mode: 0o600,
                        owner: "root:root",
                    }];
                    upload_many(m.t, &up, Duration::from_secs(300))
                        .map_err(|e| kubeha_etcd::error_chain(&e))?;
                    let cmd = Command::script(RESTORE)
                        .args([
                            data_dir.as_str(),
                            snap_path,
                            &m.name,
                            ic,
                            token,
                            &m.peer_url,
                            ts,
                            bin_dir.as_str(),
                        ])
                        .sudo()
                        .timeout(Duration::from_secs(300));
                    m.t.run(&cmd)
                        .map(|o| o.stdout_lossy().to_string())
                        .map_err(|e| kubeha_etcd::error_chain(&e))
                })
            })
            .collect();
        members
            .iter()
            .zip(handles)
            .map(|(m, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err("the restore thread panicked".into()));
                (m.name.clone(), r)
            })
            .collect()
    });
    let mut bad = Vec::new();
    for (name, r) in &results {
        match r {
            Ok(out) => {
                let tool = out
                    .lines()
                    .find_map(|l| l.strip_prefix("tool="))
                    .unwrap_or("?");
                let aside = out
                    .lines()
                    .find_map(|l| l.strip_prefix("aside="))
                    .map_or(String::from("no old data dir"), |a| {
                        format!("old data kept at {a}")
                    });
                progress!("restore: {name}: restored with {tool}; {aside}");
            }
            Err(e) => bad.push(format!("{name}: {e}")),
        }
    }
    if !bad.is_empty() {
        return Err(failed(
            format!(
                "the restore failed on {} member(s): {}",
                bad.len(),
                bad.join("; ")
            ),
            format!(
                "etcd is stopped on every member; members that were restored hold the snapshot, old data dirs are at {data_dir}.kubeha-before-restore-{ts}; fix the cause and run the restore again"
            ),
        ));
    }

    // ---- 4. record the token, so every later render carries it.
    store.set_etcd_cluster_token(Some(&token)).map_err(pki)?;

    // ---- 5. new flags, start everything, gate.
    for (m, files) in members.iter().zip(&rendered) {
        let up: Vec<UploadFile<'_>> = files
            .iter()
            .map(|f| UploadFile {
                path: &f.path,
                content: f.content.as_bytes(),
                mode: f.mode,
                owner: &f.owner,
            })
            .collect();
        upload_many(m.t, &up, Duration::from_secs(60))
            .and_then(|()| m.manager.reload(m.t))
            .map_err(|e| {
                failed(
                    format!("{}: {}", m.name, kubeha_etcd::error_chain(&e)),
                    "run `kubeha up` to finish",
                )
            })?;
    }
    for m in &members {
        progress!("restore: starting etcd on {}", m.name);
        m.manager.start(m.t, UNIT).map_err(|e| {
            failed(
                format!(
                    "cannot start etcd on {}: {}",
                    m.name,
                    kubeha_etcd::error_chain(&e)
                ),
                "run `kubeha up` to start it",
            )
        })?;
    }
    let result = gate::etcd(spec, &materials, GATE_TIMEOUT);
    drop(store);
    if !result.passed() {
        return Err(failed(
            format!(
                "the restored members did not become healthy: {}",
                result.text()
            ),
            "see `kubeha etcd health` and the members' logs",
        ));
    }
    outln!(
        "restored {} member(s) ({}) from {} ({} bytes) under cluster token {token}; gate {}",
        members.len(),
        names.join(", "),
        file.display(),
        check.size,
        result.text()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn token_is_new_and_not_the_default() {
        let t = new_token("prod", 1_700_000_000);
        assert_eq!(t, "prod-etcd-restored-1700000000");
        assert_ne!(t, "prod-etcd");
        assert_ne!(t, new_token("prod", 1_700_000_001));
    }

    #[test]
    fn stamp_is_sortable_utc() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(stamp(t), "20231114T221320Z");
    }
}
