//! `kubeha bench day2`: the day-2 targets measured in a lab of the `examples/lab.yaml` shape
//! (cluster `bench-day2` on 198.18.60.0/24, so it never meets `lab` or a test's lab).
//!
//! The commands timed are this binary run as a child on a scratch cluster file and state dir,
//! so the numbers are what a user sees, process start included. Order: `kubeha up` without
//! `wn-2`, then `node add wn-2` (removed again between runs), `certs check` cold and warm, and
//! last the destructive one, `node replace` of a killed etcd member. Every wait is bounded; a
//! guard removes the lab on every way out, errors included.

use std::{
    cell::Cell,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use kubeha_etcd::{Client, TlsMaterial};
use kubeha_lab::{Lab, LabOptions};
use kubeha_spec::Spec;
use kubeha_transport::{SshTransport, for_each_host};
use serde::Serialize;

use super::lab::{
    FAN_PARALLELISM, LAB, LAB_PATH, LabGuard, connections, failure, file_given, lab_error,
    median_f64, remove_leftovers, require_root, scratch_dir, secs, verdict,
};
use crate::{args::Global, error::CliError, output::emit, table::Table};

const NAME: &str = "bench-day2";
const PREFIX: &str = "198.18.60.";
/// The worker left out of the first `up` and added by `node add`.
const ADDED: &str = "wn-2";
const ETCD: [&str; 3] = ["etcd-3", "etcd-2", "etcd-1"];
const REPLACE_TARGET_SECONDS: f64 = 15.0;
const ADD_TARGET_SECONDS: f64 = 5.0;
const CERTS_TARGET_SECONDS: f64 = 1.0;
/// Bounds on the children and waits: generous, a slow run is reported, a hung one fails.
const UP_LIMIT: Duration = Duration::from_secs(300);
const COMMAND_LIMIT: Duration = Duration::from_secs(180);
const HEALTH_LIMIT: Duration = Duration::from_secs(60);
/// Pause between replacements: etcd refuses a member add ("unhealthy cluster") until every
/// member has been connected for 5 s, and a member replaced seconds ago would otherwise slow
/// the next run. Dead hosts are independent events, not back to back.
const SETTLE: Duration = Duration::from_secs(6);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    /// What the run worked on, e.g. `etcd-3 (leader)`.
    subject: String,
    /// The measured value compared with the target.
    seconds: f64,
    /// The child's wall time (process start to exit).
    command_seconds: f64,
    /// The time the command reports itself (`seconds` of its JSON report), if it does.
    kubeha_seconds: Option<f64>,
    /// `node replace`: when a watcher polling etcd every 100 ms first saw all members healthy
    /// while the command still ran (it goes on to converge every host after that).
    first_healthy_seconds: Option<f64>,
    /// The command's own step lines (`node add|replace`), to see where the time went.
    steps: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Series {
    name: &'static str,
    measures: &'static str,
    target_seconds: f64,
    median_seconds: f64,
    min_seconds: f64,
    max_seconds: f64,
    verdict: &'static str,
    runs: Vec<Run>,
}

impl Series {
    fn new(
        name: &'static str,
        measures: &'static str,
        target_seconds: f64,
        runs: Vec<Run>,
    ) -> Self {
        let v: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
        let median_seconds = median_f64(v.clone());
        Series {
            name,
            measures,
            target_seconds,
            median_seconds,
            min_seconds: v.iter().copied().reduce(f64::min).unwrap_or(0.0),
            max_seconds: v.iter().copied().reduce(f64::max).unwrap_or(0.0),
            verdict: verdict(median_seconds, target_seconds),
            runs,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Day2Bench {
    cluster: &'static str,
    subnet: String,
    hosts: usize,
    cpus: usize,
    /// `/proc/loadavg` (1, 5, 15 min) when the measuring started and when it ended.
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
    lab_up_seconds: f64,
    /// `kubeha up` of the cluster without `wn-2`, from empty hosts.
    up_seconds: f64,
    series: Vec<Series>,
    lab_down_seconds: f64,
}

fn load_average() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The lab example renamed onto its own /24 and key; without `wn-2` unless `with_added`.
fn cluster_text(key: &str, with_added: bool) -> String {
    let text = LAB
        .replacen("\nname: lab\n", &format!("\nname: {NAME}\n"), 1)
        .replace("198.18.0.", PREFIX)
        .replace("virtualRouterId: 51", "virtualRouterId: 60")
        .replace("key: .kubeha/lab-key", &format!("key: {key}"));
    if with_added {
        return text;
    }
    text.lines()
        .filter(|l| !l.contains(&format!("name: {ADDED},")))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Parses `text` and checks that the renaming took: our name, our /24, our key, `hosts` nodes.
fn checked_spec(text: &str, key: &str, hosts: usize) -> Result<Spec, CliError> {
    let spec = kubeha_spec::load_str(text, Path::new(LAB_PATH))?.spec;
    if spec.name != NAME
        || spec.nodes.len() != hosts
        || spec.nodes.iter().any(|n| {
            !n.address.to_string().starts_with(PREFIX) || n.ssh.key.as_deref() != Some(key)
        })
    {
        return Err(failure(
            "derive the day-2 lab from",
            LAB_PATH,
            format!(
                "expected {hosts} nodes of cluster {NAME} on {PREFIX}0/24 with the scratch key"
            ),
        ));
    }
    kubeha_lab::check_spec(&spec).map_err(lab_error("check the lab of", NAME))?;
    Ok(spec)
}

/// This binary as a child on the bench's cluster file and state dir. Output goes to files,
/// not pipes: an SSH control master the child leaves behind could hold a pipe open.
struct Kubeha {
    exe: PathBuf,
    file: PathBuf,
    state: PathBuf,
    logs: PathBuf,
    n: Cell<usize>,
}

/// A child that succeeded: its wall time and its JSON report.
struct Ran {
    wall: f64,
    report: serde_json::Value,
}

impl Ran {
    fn own_seconds(&self) -> Option<f64> {
        self.report
            .get("seconds")
            .and_then(serde_json::Value::as_f64)
    }

    fn steps(&self) -> Vec<String> {
        self.report["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                format!(
                    "[{}s] {}: {}",
                    x["seconds"],
                    x["node"].as_str().unwrap_or_default(),
                    x["what"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Kubeha {
    fn run(&self, args: &[&str], limit: Duration) -> Result<Ran, CliError> {
        let what = format!("kubeha {}", args.join(" "));
        let n = self.n.get();
        self.n.set(n + 1);
        let out_path = self.logs.join(format!("{n:03}.out"));
        let err_path = self.logs.join(format!("{n:03}.err"));
        let create = |p: &Path| std::fs::File::create(p).map_err(CliError::io("create", p));
        let (out, err) = (create(&out_path)?, create(&err_path)?);
        let t = Instant::now();
        let mut child = std::process::Command::new(&self.exe)
            .arg("-f")
            .arg(&self.file)
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .args(["-o", "json"])
            .env("NO_COLOR", "1")
            .env_remove("KUBEHA_CA_PASSPHRASE")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(CliError::io("run", &self.exe))?;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if t.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Err(e) => return Err(failure("wait for", &what, e.to_string())),
            }
        };
        let wall = secs(t.elapsed());
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        let tail = || {
            let e = std::fs::read_to_string(&err_path).unwrap_or_default();
            let lines: Vec<&str> = e.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        };
        match status {
            None => Err(failure(
                "finish",
                &what,
                format!("still running after {limit:?}; killed. stderr:\n{}", tail()),
            )),
            Some(s) if !s.success() => Err(failure(
                "run",
                &what,
                format!("{s} after {wall:.1}s. stderr:\n{}", tail()),
            )),
            Some(_) => {
                let report = serde_json::from_str(&stdout).map_err(|e| {
                    failure("read the JSON report of", &what, format!("{e}: {stdout}"))
                })?;
                Ok(Ran { wall, report })
            }
        }
    }
}

/// Ends every SSH control connection, so the next command connects afresh (cold).
fn close_all(conns: &[SshTransport]) {
    for_each_host(conns, FAN_PARALLELISM, |c| c.close());
}

/// Runs `script` in `node`'s lab host; fails on a non-zero exit.
fn sh(spec: &Spec, node: &str, script: &str) -> Result<(), CliError> {
    let ns = kubeha_lab::host_namespace(spec, node);
    let out = kubeha_lab::exec_in_timeout(&ns, &["sh", "-c", script], Duration::from_secs(30))
        .map_err(lab_error("run a command in a host of", NAME))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failure(
            "run a command in",
            node,
            format!(
                "`{script}`: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ))
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// An etcd client with the healthcheck certificate `up` issued into the scratch state dir.
fn etcd_client(spec: &Spec, state: &Path) -> Result<Client, CliError> {
    let pki = state.join(NAME).join("pki");
    let read = |p: &str| {
        let path = pki.join(p);
        std::fs::read_to_string(&path).map_err(CliError::io("read", path))
    };
    let tls = TlsMaterial {
        ca_pem: read("etcd/ca.crt")?,
        cert_pem: read("nodes/etcd-1/etcd/healthcheck-client.crt")?,
        key_pem: read("nodes/etcd-1/etcd/healthcheck-client.key")?,
    };
    let eps = spec
        .etcd_members()
        .iter()
        .map(|n| Spec::etcd_client_url(n))
        .collect();
    Client::new(eps, &tls, Duration::from_secs(1))
        .map_err(|e| failure("connect to etcd of", NAME, kubeha_etcd::error_chain(&e)))
}

/// Every member named, voting and healthy, and as many as the cluster file has.
fn all_healthy(c: &Client, want: usize) -> bool {
    let Ok(ms) = c.member_list() else {
        return false;
    };
    ms.len() == want
        && ms.iter().all(|m| {
            !m.is_learner
                && !m.name.is_empty()
                && m.client_urls.first().is_some_and(|u| c.health(u).healthy)
        })
}

pub fn run(g: &Global, runs: usize) -> Result<ExitCode, CliError> {
    require_root("day2")?;
    if file_given(g) {
        errln!("bench: day2 always measures its own lab ({NAME}); -f is not used");
    }
    let runs = runs.max(1);
    let scratch = scratch_dir()?;
    let key_path = scratch.path().join("lab-key");
    let key = key_path
        .to_str()
        .ok_or_else(|| {
            failure(
                "use the scratch key",
                &key_path.display().to_string(),
                "the temp path is not UTF-8",
            )
        })?
        .to_string();
    let full = cluster_text(&key, true);
    let short = cluster_text(&key, false);
    let spec = checked_spec(&full, &key, 10)?;
    checked_spec(&short, &key, 9)?;
    let file = scratch.path().join("cluster.yaml");
    let write = |text: &str| std::fs::write(&file, text).map_err(CliError::io("write", &file));
    let logs = scratch.path().join("logs");
    std::fs::create_dir_all(&logs).map_err(CliError::io("create", &logs))?;
    let kubeha = Kubeha {
        exe: std::env::current_exe().map_err(CliError::io("find", "the kubeha binary"))?,
        file: file.clone(),
        state: scratch.path().join("state"),
        logs,
        n: Cell::new(0),
    };
    let load_before = load_average();
    errln!(
        "bench: lab {NAME} ({} hosts, {PREFIX}0/24), {runs} run(s) each; load average {}; scratch in {}",
        spec.nodes.len(),
        load_text(load_before),
        scratch.path().display()
    );

    let lab_opts = LabOptions::default();
    remove_leftovers(&spec, &lab_opts)?;
    let mut guard = LabGuard::new(&spec, &lab_opts);
    let t = Instant::now();
    Lab::up(&spec, &lab_opts).map_err(lab_error("bring up the lab of", NAME))?;
    let lab_up_seconds = secs(t.elapsed());
    let conns = connections(&spec, &kubeha.state.join(NAME))?;
    guard.conns = conns.clone();
    errln!("bench: lab up in {lab_up_seconds:.2}s; kubeha up without {ADDED}");

    write(&short)?;
    let up = kubeha.run(&["up"], UP_LIMIT)?;
    errln!("bench: kubeha up (9 hosts, from empty) in {:.2}s", up.wall);

    // Adding a worker: the file gains it, `node add` converges it. Between runs it is removed
    // again (`node remove` cleans the host) so every run adds to a host kubeha never set up.
    let mut adds = Vec::new();
    for i in 0..runs {
        write(&full)?;
        close_all(&conns);
        let r = kubeha.run(&["node", "add", ADDED], COMMAND_LIMIT)?;
        errln!(
            "bench: node add {ADDED} #{}: {:.2}s (kubeha {})",
            i + 1,
            r.wall,
            opt_s(r.own_seconds())
        );
        adds.push(Run {
            subject: ADDED.into(),
            seconds: r.own_seconds().unwrap_or(r.wall),
            command_seconds: r.wall,
            kubeha_seconds: r.own_seconds(),
            first_healthy_seconds: None,
            steps: r.steps(),
        });
        if i + 1 < runs {
            kubeha.run(&["node", "remove", ADDED], COMMAND_LIMIT)?;
            write(&short)?;
        }
    }

    // certs check over all 10 hosts: cold (no control connection), then warm right after.
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for i in 0..runs {
        close_all(&conns);
        for (ssh, into) in [("cold", &mut cold), ("warm", &mut warm)] {
            let r = kubeha.run(&["certs", "check"], COMMAND_LIMIT)?;
            let summary = &r.report["summary"];
            if summary["hosts"].as_u64() != Some(spec.nodes.len() as u64)
                || summary["unreachable"].as_u64() != Some(0)
            {
                return Err(failure(
                    "check the certs check report of",
                    NAME,
                    format!(
                        "expected all {} hosts reachable: {summary}",
                        spec.nodes.len()
                    ),
                ));
            }
            errln!(
                "bench: certs check #{} ({ssh}): {:.3}s, {} certificates",
                i + 1,
                r.wall,
                summary["certificates"]
            );
            into.push(Run {
                subject: format!("{} hosts, {ssh} ssh", spec.nodes.len()),
                seconds: r.wall,
                command_seconds: r.wall,
                kubeha_seconds: None,
                first_healthy_seconds: None,
                steps: Vec::new(),
            });
        }
    }

    // Replacing a dead member: its host dies (etcd killed, link down); a fresh host comes back
    // at the same address with an empty data dir; `node replace` until 3/3 healthy again.
    let client = etcd_client(&spec, &kubeha.state)?;
    let members = spec.etcd_members().len();
    let mut replaces = Vec::new();
    for i in 0..runs {
        let node = ETCD[i % ETCD.len()];
        if !wait_until(HEALTH_LIMIT, || all_healthy(&client, members)) {
            return Err(failure(
                "wait for healthy etcd in",
                NAME,
                format!("not {members}/{members} healthy within {HEALTH_LIMIT:?}"),
            ));
        }
        if i > 0 {
            std::thread::sleep(SETTLE);
        }
        let n = spec
            .node(node)
            .ok_or_else(|| failure("find", node, "not in the cluster file"))?;
        let url = Spec::etcd_client_url(n);
        let leader = client.status(&url).is_ok_and(|s| s.is_leader);
        sh(
            &spec,
            node,
            "kill -9 $(cat /run/kubeha/etcd.service.pid); ip link set eth0 down",
        )?;
        if !wait_until(Duration::from_secs(15), || !client.health(&url).healthy) {
            return Err(failure("kill etcd on", node, "it still answers healthy"));
        }
        sh(&spec, node, "rm -rf /var/lib/etcd; ip link set eth0 up")?;
        let addr = match n.address {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => {
                return Err(failure("reach", node, "lab hosts are IPv4"));
            }
        };
        if !wait_until(Duration::from_secs(30), || {
            kubeha_lab::sshd_answers(addr, n.ssh.port, Duration::from_millis(300))
        }) {
            return Err(failure("reach", node, "sshd does not answer after link up"));
        }
        close_all(&conns);
        let t = Instant::now();
        let done = AtomicBool::new(false);
        let (r, first_healthy_seconds) = std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    if all_healthy(&client, members) {
                        return Some(secs(t.elapsed()));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                None
            });
            let r = kubeha.run(&["node", "replace", node], COMMAND_LIMIT);
            done.store(true, Ordering::Relaxed);
            (r, watcher.join().ok().flatten())
        });
        let r = r?;
        if !wait_until(HEALTH_LIMIT, || all_healthy(&client, members)) {
            return Err(failure(
                "wait for healthy etcd after replacing",
                node,
                format!(
                    "not {members}/{members} healthy within {HEALTH_LIMIT:?} after the command"
                ),
            ));
        }
        let healthy = secs(t.elapsed());
        // Only a real replacement counts: the old member removed, the new one promoted.
        let steps = r.steps();
        let said = |w: &str| steps.iter().any(|s| s.contains(w));
        if !(said("removed the old etcd member") && said("promoted")) {
            return Err(failure(
                "check the steps of replacing",
                node,
                format!("no member removed and promoted:\n{}", steps.join("\n")),
            ));
        }
        errln!(
            "bench: node replace {node}{} #{}: {:.2}s, {members}/{members} healthy at {healthy:.2}s (first seen at {})",
            if leader { " (leader)" } else { "" },
            i + 1,
            r.wall,
            opt_s(first_healthy_seconds)
        );
        replaces.push(Run {
            subject: format!("{node}{}", if leader { " (leader)" } else { "" }),
            seconds: healthy,
            command_seconds: r.wall,
            kubeha_seconds: r.own_seconds(),
            first_healthy_seconds,
            steps,
        });
    }

    let load_after = load_average();
    let lab_down_seconds = guard.down()?;
    let report = Day2Bench {
        cluster: NAME,
        subnet: format!("{PREFIX}0/24"),
        hosts: spec.nodes.len(),
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        load_before,
        load_after,
        lab_up_seconds,
        up_seconds: up.wall,
        series: vec![
            Series::new(
                "node replace (dead etcd member)",
                "from the command's start until 3/3 members healthy",
                REPLACE_TARGET_SECONDS,
                replaces,
            ),
            Series::new(
                "node add (worker)",
                "the time `node add` reports for itself (cold ssh)",
                ADD_TARGET_SECONDS,
                adds,
            ),
            Series::new(
                "certs check, cold ssh",
                "wall time, 10 hosts, new SSH connections",
                CERTS_TARGET_SECONDS,
                cold,
            ),
            Series::new(
                "certs check, warm ssh",
                "wall time, 10 hosts, control connections open",
                CERTS_TARGET_SECONDS,
                warm,
            ),
        ],
        lab_down_seconds,
    };
    emit(g.output, &report, || text(&report))?;
    Ok(ExitCode::SUCCESS)
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}s"))
}

fn load_text(l: Option<[f64; 3]>) -> String {
    l.map_or("-".into(), |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"))
}

fn text(r: &Day2Bench) -> String {
    let mut s = format!(
        "bench day2: lab {} — {} hosts on {}, {} CPU(s); load average {} before, {} after\n",
        r.cluster,
        r.hosts,
        r.subnet,
        r.cpus,
        load_text(r.load_before),
        load_text(r.load_after)
    );
    s.push_str(&format!(
        "lab up {:.2}s, kubeha up (9 hosts, from empty) {:.2}s, lab down {:.2}s\n\n",
        r.lab_up_seconds, r.up_seconds, r.lab_down_seconds
    ));
    let mut t = Table::new(["MEASUREMENT", "RUNS", "MEDIAN", "MIN", "MAX", "TARGET", ""]);
    for x in &r.series {
        t.row([
            x.name.to_string(),
            x.runs.len().to_string(),
            format!("{:.2}s", x.median_seconds),
            format!("{:.2}s", x.min_seconds),
            format!("{:.2}s", x.max_seconds),
            format!("≤ {:.0}s", x.target_seconds),
            x.verdict.to_string(),
        ]);
    }
    s.push_str(&t.render());
    s.push('\n');
    let mut t = Table::new([
        "MEASUREMENT",
        "#",
        "ON",
        "MEASURED",
        "COMMAND",
        "KUBEHA",
        "3/3 FIRST SEEN",
    ]);
    for x in &r.series {
        for (i, run) in x.runs.iter().enumerate() {
            t.row([
                x.name.to_string(),
                (i + 1).to_string(),
                run.subject.clone(),
                format!("{:.2}s", run.seconds),
                format!("{:.2}s", run.command_seconds),
                opt_s(run.kubeha_seconds),
                opt_s(run.first_healthy_seconds),
            ]);
        }
    }
    s.push_str(&t.render());
    for x in &r.series {
        s.push_str(&format!("{}: {}\n", x.name, x.measures));
    }
    s.push_str(
        "COMMAND: the child process's wall time; KUBEHA: the time the command reports itself; 3/3 FIRST SEEN: all etcd members healthy, seen by a watcher while `node replace` still ran (it then converges every host)\n",
    );
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_day2_lab_is_the_example_renamed_onto_its_own_subnet() {
        let full = checked_spec(&cluster_text("/tmp/k", true), "/tmp/k", 10).unwrap();
        let short = checked_spec(&cluster_text("/tmp/k", false), "/tmp/k", 9).unwrap();
        assert!(full.node(ADDED).is_some());
        assert!(short.node(ADDED).is_none());
        assert_eq!(full.etcd_members().len(), 3);
        for n in ETCD {
            assert!(full.node(n).is_some_and(|x| full.is_etcd_member(x)));
        }
    }
}
