//! `kubeha node add|remove|replace` end to end in the lab (needs root, as CI has): real etcd
//! members grown, shrunk and replaced over SSH while 1000 keys written before each scenario
//! must all still be there after. Each test has its own cluster name and /24 (198.18.30-39)
//! and tears its lab down on every exit path.
//!
//! Network rule: these tests only talk to the 198.18.x.y addresses of namespaces they made.

use std::{
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use kubeha_etcd::{Client, TlsMaterial};

use crate::harness::Sandbox;

/// `etcds` etcd members, 2 LBs with a VIP, `cps` control planes.
fn spec_text(name: &str, net: u8, etcds: &[u8], cps: usize) -> String {
    crate::labkit::cluster_text(name, net, etcds, cps, 0)
}

/// A lab whose hosts are made from `hosts_text` (every node any step of the test uses); the
/// cluster file starts as `file_text`. Torn down when it ends, also on panic.
struct Lab {
    sb: Sandbox,
    file: PathBuf,
    all: PathBuf,
    spec: kubeha_spec::Spec,
    net: u8,
}

impl Lab {
    fn up(hosts_text: &str, file_text: &str, net: u8) -> Lab {
        let sb = Sandbox::new();
        let all = sb.write("all-hosts.yaml", hosts_text);
        let file = sb.write("cluster.yaml", file_text);
        let spec = kubeha_spec::load(&all).expect("lab spec").spec;
        let _ = sb.kubeha().args(["lab", "down"]).arg(&all).output();
        let lab = Lab {
            sb,
            file,
            all,
            spec,
            net,
        };
        let out = lab
            .sb
            .kubeha()
            .args(["lab", "up"])
            .arg(&lab.all)
            .timeout(Duration::from_secs(240))
            .output()
            .expect("lab up");
        assert!(
            out.status.success(),
            "lab up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn set_file(&self, text: &str) {
        std::fs::write(&self.file, text).expect("write cluster file");
    }

    fn kubeha(&self, args: &[&str]) -> Output {
        let mut c = self.sb.kubeha();
        c.arg("-f")
            .arg(&self.file)
            .args(args)
            .timeout(Duration::from_secs(240));
        c.output().expect("run kubeha")
    }

    /// Runs kubeha with `-o json`; returns success, the JSON, and how long it took.
    fn json(&self, args: &[&str]) -> (bool, serde_json::Value, Duration) {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let t0 = Instant::now();
        let out = self.kubeha(&a);
        let took = t0.elapsed();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "{args:?}: not JSON: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), v, took)
    }

    fn ok(&self, args: &[&str]) -> (serde_json::Value, Duration) {
        let (ok, v, took) = self.json(args);
        assert!(ok, "kubeha {args:?} failed: {v:#}");
        eprintln!("kubeha {args:?}: {took:.1?}");
        for st in v["steps"].as_array().into_iter().flatten() {
            eprintln!(
                "  [{}s] {}: {}",
                st["seconds"],
                st["node"].as_str().unwrap_or(""),
                st["what"].as_str().unwrap_or("")
            );
        }
        (v, took)
    }

    fn sh(&self, node: &str, script: &str) -> Output {
        let ns = kubeha_lab::host_namespace(&self.spec, node);
        kubeha_lab::exec_in(&ns, &["sh", "-c", script]).expect("exec in lab host")
    }

    fn status(&self) -> serde_json::Value {
        self.json(&["status"]).1
    }

    /// A client over the given members with the healthcheck certificate kubeha issued.
    fn etcd(&self, members: &[u8]) -> Client {
        let pki = self
            .sb
            .path()
            .join(".kubeha")
            .join(&self.spec.name)
            .join("pki");
        let read = |p: &str| std::fs::read_to_string(pki.join(p)).expect("read pki");
        let tls = TlsMaterial {
            ca_pem: read("etcd/ca.crt"),
            cert_pem: read("nodes/etcd-1/etcd/healthcheck-client.crt"),
            key_pem: read("nodes/etcd-1/etcd/healthcheck-client.key"),
        };
        let eps = members
            .iter()
            .map(|i| format!("https://198.18.{}.1{i}:2379", self.net))
            .collect();
        Client::new(eps, &tls, Duration::from_secs(3)).expect("etcd client")
    }

    fn put_keys(&self, members: &[u8]) {
        let c = self.etcd(members);
        let t0 = Instant::now();
        for i in 0..1000 {
            c.put(
                format!("/node-test/k{i:04}").as_bytes(),
                format!("v{i}").as_bytes(),
            )
            .expect("put");
        }
        eprintln!("wrote 1000 keys in {:.1?}", t0.elapsed());
    }

    fn assert_keys(&self, members: &[u8]) {
        let kvs = self.etcd(members).get_prefix(b"/node-test/").expect("get");
        assert_eq!(kvs.len(), 1000, "all 1000 keys are still there");
        assert!(
            kvs.iter()
                .any(|(k, v)| k == b"/node-test/k0999" && v == b"v999")
        );
    }

    fn healthy(&self) -> (i64, serde_json::Value) {
        let st = self.status();
        (st["etcd"]["healthy"].as_i64().unwrap_or(-1), st)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self
            .sb
            .kubeha()
            .args(["lab", "down"])
            .arg(&self.all)
            .output();
    }
}

fn skip_unless_root() -> bool {
    if !kubeha_lab::is_root() {
        eprintln!("skipped: the lab needs root");
        return true;
    }
    false
}

fn steps_text(v: &serde_json::Value) -> String {
    v["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|x| x["what"].as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn etcd_grows_3_to_5_with_node_add_and_shrinks_back_with_node_remove() {
    if skip_unless_root() {
        return;
    }
    let (name, net) = ("e2e-node-grow", 30);
    let lab = Lab::up(
        &spec_text(name, net, &[1, 2, 3, 4, 5], 1),
        &spec_text(name, net, &[1, 2, 3], 1),
        net,
    );
    lab.ok(&["up"]);
    lab.put_keys(&[1, 2, 3]);
    lab.set_file(&spec_text(name, net, &[1, 2, 3, 4], 1));
    let (v, _) = lab.ok(&["node", "add", "etcd-4"]);
    let steps = steps_text(&v);
    assert!(
        steps.contains("added as etcd learner")
            && steps.contains("--initial-cluster-state=existing")
            && steps.contains("promoted learner"),
        "{steps}"
    );
    // The existing members' flags followed without a restart.
    assert!(steps.contains("no restart"), "{steps}");
    lab.set_file(&spec_text(name, net, &[1, 2, 3, 4, 5], 1));
    lab.ok(&["node", "add", "etcd-5"]);
    let (h, st) = lab.healthy();
    assert_eq!(h, 5, "{st:#}");
    assert_eq!(st["etcd"]["quorum"], true);
    // `up` agrees: the etcd members need nothing.
    let (ok, plan, _) = lab.json(&["plan"]);
    assert!(ok);
    let etcd_steps = plan["plan"]["steps"]
        .as_array()
        .map(|s| s.iter().filter(|x| x["phase"] == "etcd").count())
        .unwrap_or(99);
    assert_eq!(etcd_steps, 0, "{plan:#}");
    lab.assert_keys(&[4, 5]);
    // Shrink back, one at a time, quorum kept throughout.
    let (v, _) = lab.ok(&["node", "remove", "etcd-5"]);
    assert!(
        v["next"]
            .to_string()
            .contains("etcd-5, address: 198.18.30.15"),
        "{v:#}"
    );
    lab.set_file(&spec_text(name, net, &[1, 2, 3, 4], 1));
    lab.ok(&["node", "remove", "etcd-4"]);
    lab.set_file(&spec_text(name, net, &[1, 2, 3], 1));
    lab.ok(&["up"]);
    let (h, st) = lab.healthy();
    assert_eq!(h, 3, "{st:#}");
    assert_eq!(
        st["etcd"]["members"].as_array().map(Vec::len),
        Some(3),
        "{st:#}"
    );
    // The removed host was cleaned: no etcd, no data dir, no kubeha files.
    let out = lab.sh("etcd-4", "ls /var/lib/etcd /etc/kubernetes/pki /etc/etcd 2>&1; ss -ltnH | grep -q ':2379 ' && echo etcd-listens || echo no-etcd");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no-etcd") && text.matches("No such file").count() == 3,
        "{text}"
    );
    lab.assert_keys(&[1, 2, 3]);
}

#[test]
fn a_dead_member_is_replaced_at_the_same_address_and_a_quorum_breaking_removal_is_refused() {
    if skip_unless_root() {
        return;
    }
    let (name, net) = ("e2e-node-repl", 31);
    let text = spec_text(name, net, &[1, 2, 3], 1);
    let lab = Lab::up(&text, &text, net);
    lab.ok(&["up"]);
    lab.put_keys(&[1, 2, 3]);
    // The host dies: link down and its etcd killed.
    lab.sh(
        "etcd-3",
        "kill -9 $(cat /run/kubeha/etcd.service.pid); ip link set eth0 down",
    );
    // 2 of 3 healthy: removing a healthy member would leave 1 healthy of 2 voters.
    let out = lab.kubeha(&["node", "remove", "etcd-1"]);
    let err = String::from_utf8_lossy(&out.stderr)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("3 voting members, 1 unhealthy")
            && err.contains("leaves 2 voters of which 1 healthy; quorum needs 2"),
        "{err}"
    );
    // The host is back (a fresh machine at the same address would look the same), with its
    // stale data dir: replace removes the old member, wipes, re-adds as learner, promotes.
    lab.sh("etcd-3", "ip link set eth0 up");
    let (v, _) = lab.ok(&["node", "replace", "etcd-3"]);
    let steps = steps_text(&v);
    assert!(
        steps.contains("removed the old etcd member etcd-3")
            && steps.contains("wiped the etcd data dir")
            && steps.contains("promoted"),
        "{steps}"
    );
    let (h, st) = lab.healthy();
    assert_eq!(h, 3, "{st:#}");
    assert_eq!(
        st["etcd"]["members"].as_array().map(Vec::len),
        Some(3),
        "{st:#}"
    );
    lab.assert_keys(&[3]);
    lab.assert_keys(&[1, 2]);
    // A member whose data dir is gone (a re-imaged host at the same address, guide 003):
    // `node add` removes the stale member and re-adds it as a learner, never "member count
    // is unequal".
    lab.sh(
        "etcd-2",
        "kill -9 $(cat /run/kubeha/etcd.service.pid); rm -rf /var/lib/etcd",
    );
    let (v, _) = lab.ok(&["node", "add", "etcd-2"]);
    let steps = steps_text(&v);
    assert!(
        steps.contains("removed the old etcd member etcd-2") && steps.contains("promoted"),
        "{steps}"
    );
    let (h, st) = lab.healthy();
    assert_eq!(h, 3, "{st:#}");
    lab.assert_keys(&[2]);
    // `node add` of a member that is healthy with its data changes nothing in etcd.
    let (v, _) = lab.ok(&["node", "add", "etcd-1"]);
    assert!(steps_text(&v).contains("nothing to do for etcd"), "{v:#}");
    // reset --all leaves the hosts reusable: a fresh `up` builds a new cluster on them.
    let (v, _) = lab.ok(&["reset", "--all", "--yes"]);
    assert_eq!(v["notCleaned"].as_array().map(Vec::len), Some(0), "{v:#}");
    let out = lab.sh("etcd-1", "ls /var/lib/etcd /etc/kubernetes/pki /etc/etcd 2>&1; ss -ltnH | grep -q ':2379 ' && echo etcd-listens || echo no-etcd");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no-etcd") && text.matches("No such file").count() == 3,
        "{text}"
    );
    assert!(
        lab.sb
            .path()
            .join(".kubeha")
            .join(name)
            .join("pki/etcd/ca.crt")
            .exists(),
        "the state dir's CAs stay"
    );
    lab.ok(&["up"]);
    let (h, st) = lab.healthy();
    assert_eq!(h, 3, "{st:#}");
}

#[test]
fn forced_removal_of_an_unreachable_lb_and_control_plane_is_bounded_and_lists_what_is_left() {
    if skip_unless_root() {
        return;
    }
    let (name, net) = ("e2e-node-dead", 32);
    let text = spec_text(name, net, &[1, 2, 3], 2);
    let lab = Lab::up(&text, &text, net);
    lab.ok(&["up"]);
    lab.put_keys(&[1, 2, 3]);
    lab.sh("lb-2", "ip link set eth0 down");
    lab.sh("cp-2", "ip link set eth0 down");
    // Without --force an unreachable host is refused, nothing changed.
    let out = lab.kubeha(&["node", "remove", "lb-2"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in ["lb-2", "cp-2"] {
        let (v, _) = lab.ok(&["node", "remove", node, "--force"]);
        let left = v["notCleaned"].to_string();
        assert!(
            left.contains(&format!("{node}: services")) && left.contains("/etc/kubernetes/pki"),
            "{v:#}"
        );
    }
    let (h, st) = lab.healthy();
    assert_eq!(h, 3, "{st:#}");
    lab.assert_keys(&[1, 2, 3]);
}

#[test]
fn reset_without_a_terminal_or_yes_is_refused() {
    let sb = Sandbox::new();
    let file = sb.write(
        "cluster.yaml",
        &spec_text("e2e-node-reset", 33, &[1, 2, 3], 1),
    );
    let out = sb
        .kubeha()
        .arg("-f")
        .arg(&file)
        .args(["reset", "--all"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without --yes"));
}
