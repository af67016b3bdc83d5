//! HAProxy follows etcd membership by reloading, not restarting, in the lab (needs root, as
//! CI has): an etcd watch streamed through the VIP's etcd frontend before `kubeha node add`
//! grows the cluster must still deliver events after it, from the same HAProxy master.
//! Own cluster name and /24 (198.18.50.x); the lab is torn down on every exit path.
//!
//! Network rule: this test only talks to the 198.18.50.y addresses of namespaces it made.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use base64::Engine as _;

use crate::{
    harness::Sandbox,
    labkit::{Lab, cluster_text, etcdctl, wait_until},
};

const NET: u8 = 50;

fn skip_unless_root() -> bool {
    if !kubeha_lab::is_root() {
        eprintln!("skipped: the lab needs root");
        return true;
    }
    false
}

/// A lab made from a cluster file with etcd members 1-4 (so etcd-4's host exists), whose
/// cluster file then lists members 1-3 only. Torn down when it ends, also on panic.
fn lab_with_a_spare_member(name: &str) -> Lab {
    let sb = Sandbox::new();
    let all = cluster_text(name, NET, &[1, 2, 3, 4], 1, 0);
    let file = sb.write("cluster.yaml", &all);
    let spec = kubeha_spec::load(&file).expect("lab spec").spec;
    let _ = sb.kubeha().args(["lab", "down"]).arg(&file).output();
    // The guard exists before anything is made: `lab down` goes by the cluster name.
    let lab = Lab { sb, file, spec };
    lab.ok(&["lab", "up"]);
    set_members(&lab, &[1, 2, 3]);
    lab
}

fn set_members(lab: &Lab, etcds: &[u8]) {
    std::fs::write(&lab.file, cluster_text(&lab.spec.name, NET, etcds, 1, 0))
        .expect("write cluster file");
}

/// `curl -N` streaming an etcd v3 watch (the JSON gateway, `POST /v3/watch`) of `key`
/// through `endpoint`, one JSON message a line on the channel. Killed on drop.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn open(lab: &Lab, endpoint: &str, key: &str) -> Watch {
        let pki = lab.pki();
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = format!(r#"{{"create_request":{{"key":"{}"}}}}"#, b64.encode(key));
        let mut child = Command::new("curl")
            .args(["-sS", "-N", "--max-time", "600", "-X", "POST"])
            .arg("--cacert")
            .arg(pki.join("etcd/ca.crt"))
            .arg("--cert")
            .arg(pki.join("nodes/etcd-1/etcd/healthcheck-client.crt"))
            .arg("--key")
            .arg(pki.join("nodes/etcd-1/etcd/healthcheck-client.key"))
            .arg(format!("{endpoint}/v3/watch"))
            .args(["-d", &body])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl");
        let out = child.stdout.take().expect("curl stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// Waits (bounded) for a message with `needle` in it; the messages seen on the way.
    fn expect(&self, needle: &str, limit: Duration) -> Result<String, Vec<String>> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Ok(l),
                Ok(l) => seen.push(l),
                Err(_) => break,
            }
        }
        Err(seen)
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `what` of every step `node` reported, one a line.
fn steps_of(v: &serde_json::Value, node: &str) -> String {
    v["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["node"] == node)
        .filter_map(|s| s["what"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The supervisor's pid of `unit` on `node`, how often its log says it was started (the
/// supervisor's marker) and reloaded (HAProxy's own "Reloading HAProxy": HAProxy's reload
/// makes its stdout non-blocking with F_SETFL, which clears O_APPEND on the shared log, so
/// the etcd proxy's `log stdout` lines overwrite markers the supervisor appends later),
/// and the log.
fn unit_state(lab: &Lab, node: &str, unit: &str) -> (u32, usize, usize, String) {
    let pid = lab.sh(node, &format!("cat /run/kubeha/{unit}.pid"));
    let pid: u32 = String::from_utf8_lossy(&pid.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{node}: no pid for {unit}"));
    let alive = lab.sh(node, &format!("test -d /proc/{pid}"));
    assert!(alive.status.success(), "{node}: {unit} pid {pid} is dead");
    let log = lab.sh(node, &format!("cat /run/kubeha/{unit}.log"));
    let log = String::from_utf8_lossy(&log.stdout).to_string();
    let started = log.matches(&format!("starting {unit}")).count();
    let reloaded = log.matches("Reloading HAProxy").count();
    (pid, started, reloaded, log)
}

#[test]
fn node_add_reloads_haproxy_and_an_etcd_watch_through_the_vip_survives() {
    if skip_unless_root() {
        return;
    }
    let lab = lab_with_a_spare_member("e2e-reload");
    lab.ok(&["up"]);
    let st = lab.status();
    let holder = st["vip"]["holders"][0]
        .as_str()
        .unwrap_or_else(|| panic!("nobody holds the VIP: {st:#}"))
        .to_string();
    let members = format!("https://198.18.{NET}.11:2379");
    let put = |v: &str| {
        let out = etcdctl(&lab.pki(), &members, &["put", "/reload/k", v]);
        assert!(
            out.status.success(),
            "put {v}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    // A watch through the VIP's etcd frontend, live before the change.
    let vip = format!("https://198.18.{NET}.100:2379");
    let mut watch = Watch::open(&lab, &vip, "/reload/k");
    watch
        .expect("\"created\":true", Duration::from_secs(20))
        .unwrap_or_else(|seen| panic!("the watch through the VIP was not created: {seen:?}"));
    put("before");
    watch
        .expect(&b64("before"), Duration::from_secs(20))
        .unwrap_or_else(|seen| panic!("no event before the reload: {seen:?}"));
    let lb_before = unit_state(&lab, &holder, "haproxy.service");
    let proxy_before = unit_state(&lab, "cp-1", "kubeha-etcd-proxy.service");

    // etcd-4 joins: every LB's etcd backend and cp-1's etcd proxy gain a server.
    set_members(&lab, &[1, 2, 3, 4]);
    let out = lab.json_ok(&["node", "add", "etcd-4"]);
    for lb in ["lb-1", "lb-2"] {
        let steps = steps_of(&out, lb);
        assert!(
            steps.contains("reloaded haproxy.service") && !steps.contains("restarted"),
            "{lb}: {steps}"
        );
    }
    let steps = steps_of(&out, "cp-1");
    assert!(
        steps.contains("reloaded kubeha-etcd-proxy.service") && !steps.contains("restarted"),
        "cp-1: {steps}"
    );

    // The same masters, started once, reloaded once more.
    let lb_after = unit_state(&lab, &holder, "haproxy.service");
    assert_eq!(lb_after.0, lb_before.0, "HAProxy's master pid on {holder}");
    assert_eq!(
        (lb_after.1, lb_after.2),
        (1, lb_before.2 + 1),
        "{holder}: {}",
        lb_after.3
    );
    let proxy_after = unit_state(&lab, "cp-1", "kubeha-etcd-proxy.service");
    assert_eq!(proxy_after.0, proxy_before.0, "cp-1's etcd proxy pid");
    assert_eq!(
        (proxy_after.1, proxy_after.2),
        (1, proxy_before.2 + 1),
        "cp-1: {}",
        proxy_after.3
    );

    // The watch opened before the reload, on the same connection, sees a key put after it.
    assert!(watch.alive(), "curl's watch stream ended");
    put("after");
    watch
        .expect(&b64("after"), Duration::from_secs(20))
        .unwrap_or_else(|seen| panic!("no event after the reload: {seen:?}"));
    assert!(watch.alive(), "curl's watch stream ended");

    // The running config (the stats page of the VIP holder's new worker) has etcd-4.
    let stats_port = lab
        .spec
        .load_balancer
        .as_ref()
        .map(|l| l.stats_port)
        .expect("load balancer");
    let addr = lab
        .spec
        .node(&holder)
        .map(|n| n.address)
        .expect("holder node");
    let mut csv = String::new();
    let found = wait_until(Duration::from_secs(10), || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://{addr}:{stats_port}/stats;csv"))
            .output()
            .expect("curl stats");
        csv = String::from_utf8_lossy(&out.stdout).to_string();
        csv.lines().any(|l| l.starts_with("etcd-backend,etcd-4,"))
    });
    assert!(found.is_some(), "etcd-4 not in the running config:\n{csv}");

    // The new member answers through cp-1's reloaded proxy too, and `up` has nothing to do.
    let proxy = lab.sh("cp-1", "curl -sS --max-time 5 --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/apiserver-etcd-client.crt --key /etc/kubernetes/pki/apiserver-etcd-client.key https://127.0.0.1:2379/health");
    assert!(
        String::from_utf8_lossy(&proxy.stdout).contains("\"health\":\"true\""),
        "{proxy:?}"
    );
    let again = lab.json_ok(&["up"]);
    assert_eq!(again["changed"], false, "{again:#}");
}

/// Samples every 50 ms whether `node` holds the VIP ("1") or not ("0") until
/// `/run/kubeha/stop-sampling` exists (at most 60 s). Returns once sampling has begun.
fn sample_vip(lab: &Lab, node: &str, vip: &str) -> std::thread::JoinHandle<String> {
    let ns = lab.ns(node);
    lab.sh(node, "rm -f /run/kubeha/stop-sampling /run/kubeha/sampling");
    let script = format!(
        "touch /run/kubeha/sampling; i=0; while [ ! -e /run/kubeha/stop-sampling ] && [ $i -lt 1200 ]; do ip -o addr show dev eth0 | grep -q ' {vip}/' && printf 1 || printf 0; i=$((i+1)); sleep 0.05; done"
    );
    let handle = std::thread::spawn(move || {
        let out = kubeha_lab::exec_in_timeout(&ns, &["sh", "-c", &script], Duration::from_secs(90))
            .expect("sample the VIP");
        String::from_utf8_lossy(&out.stdout).to_string()
    });
    let started = wait_until(Duration::from_secs(30), || {
        lab.sh(node, "test -e /run/kubeha/sampling")
            .status
            .success()
    });
    assert!(started.is_some(), "{node}: VIP sampling did not start");
    handle
}

#[test]
fn a_changed_keepalived_conf_is_reloaded_and_the_master_keeps_the_vip() {
    if skip_unless_root() {
        return;
    }
    let (name, net) = ("e2e-reload-ka", 51);
    let sb = Sandbox::new();
    let text = cluster_text(name, net, &[1, 2, 3], 1, 0);
    let file = sb.write("cluster.yaml", &text);
    let spec = kubeha_spec::load(&file).expect("lab spec").spec;
    let _ = sb.kubeha().args(["lab", "down"]).arg(&file).output();
    let lab = Lab { sb, file, spec };
    lab.ok(&["lab", "up"]);
    lab.up_ok();
    let vip = format!("198.18.{net}.100");
    let holds = |n: &str| {
        String::from_utf8_lossy(&lab.sh(n, "ip -o addr show dev eth0").stdout)
            .contains(&format!(" {vip}/"))
    };
    // lb-1 has the higher priority: it is the MASTER once the election settled.
    assert!(
        wait_until(Duration::from_secs(20), || holds("lb-1") && !holds("lb-2")).is_some(),
        "lb-1 does not hold the VIP alone"
    );
    let pid = |n: &str| {
        String::from_utf8_lossy(&lab.sh(n, "cat /run/kubeha/keepalived.service.pid").stdout)
            .trim()
            .to_string()
    };
    let before = (pid("lb-1"), pid("lb-2"));

    // New priorities change both LBs' keepalived.conf (and nothing else).
    std::fs::write(
        &lab.file,
        text.replace("lbPriority: 101", "lbPriority: 120")
            .replace("lbPriority: 100", "lbPriority: 110"),
    )
    .expect("write cluster file");
    let (s1, s2) = (
        sample_vip(&lab, "lb-1", &vip),
        sample_vip(&lab, "lb-2", &vip),
    );
    let v = lab.up_ok();
    // An observation window, not a synchronisation: a lost election would show within
    // 3 advert intervals (3 s), so sampling goes on that long after `up`.
    std::thread::sleep(Duration::from_secs(4));
    for n in ["lb-1", "lb-2"] {
        lab.sh(n, "touch /run/kubeha/stop-sampling");
    }
    let (m, b) = (
        s1.join().expect("lb-1 samples"),
        s2.join().expect("lb-2 samples"),
    );
    let lb = v["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["phase"] == "load-balancer")
        .unwrap_or_else(|| panic!("no load-balancer phase: {v:#}"));
    let mut reloaded: Vec<&str> = lb["reloaded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str())
        .collect();
    reloaded.sort();
    assert_eq!(
        reloaded,
        ["lb-1/keepalived.service", "lb-2/keepalived.service"],
        "{lb:#}"
    );
    assert_eq!(lb["restarted"].as_array().map(Vec::len), Some(0), "{lb:#}");
    assert_eq!(
        (pid("lb-1"), pid("lb-2")),
        before,
        "keepalived was not restarted"
    );
    assert!(m.len() > 40 && b.len() > 40, "too few samples: {m} / {b}");
    assert!(
        !m.contains('0') && !b.contains('1'),
        "the VIP moved during the reload (1 = held):\nlb-1 {m}\nlb-2 {b}"
    );
    // The running keepalived took the new priority (its SIGUSR1 data dump; /tmp is shared).
    let dump = lab.sh(
        "lb-1",
        "rm -f /tmp/keepalived.data; kill -USR1 $(cat /run/kubeha/keepalived.service.pid); \
         for i in $(seq 1 50); do [ -s /tmp/keepalived.data ] && break; sleep 0.1; done; \
         sleep 0.2; grep -E '^ *(Priority|State) = ' /tmp/keepalived.data; rm -f /tmp/keepalived.data",
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("Priority = 120") && dump.contains("State = MASTER"),
        "{dump}"
    );
}
