//! Day-2 scenarios in the lab (needs root, as CI has): the etcd leader killed while a new
//! member is still a learner, a dead member replaced by a machine at a new address under a new
//! name, and a replacement machine's new SSH host key re-pinned. 1000 keys are written before
//! each scenario and must all be there after. Own cluster names and /24s (198.18.56-58.x);
//! each lab is torn down on every exit path (the kit's guard).
//!
//! Network rule: these tests only talk to the 198.18.x.y addresses of namespaces they made.

use std::{
    path::PathBuf,
    process::{Child, Output, Stdio},
    time::{Duration, Instant},
};

use kubeha_etcd::{Client, Member, TlsMaterial};

use crate::labkit::{Lab, cluster_text, wait_until};

fn skip_unless_root() -> bool {
    if !kubeha_lab::is_root() {
        eprintln!("skipped: the lab needs root");
        return true;
    }
    false
}

/// A client over members `etcd-<i>` with the healthcheck certificate kubeha issued.
fn etcd(lab: &Lab, net: u8, members: &[u8]) -> Client {
    let pki = lab.pki();
    let read = |p: &str| std::fs::read_to_string(pki.join(p)).expect("read pki");
    let tls = TlsMaterial {
        ca_pem: read("etcd/ca.crt"),
        cert_pem: read("nodes/etcd-1/etcd/healthcheck-client.crt"),
        key_pem: read("nodes/etcd-1/etcd/healthcheck-client.key"),
    };
    let eps = members
        .iter()
        .map(|i| format!("https://198.18.{net}.1{i}:2379"))
        .collect();
    Client::new(eps, &tls, Duration::from_secs(3)).expect("etcd client")
}

fn put_keys(c: &Client) {
    let t0 = Instant::now();
    for i in 0..1000 {
        c.put(
            format!("/daytwo/k{i:04}").as_bytes(),
            format!("v{i}").as_bytes(),
        )
        .expect("put");
    }
    eprintln!("wrote 1000 keys in {:.1?}", t0.elapsed());
}

fn assert_keys(c: &Client) {
    let kvs = c.get_prefix(b"/daytwo/").expect("get");
    assert_eq!(kvs.len(), 1000, "all 1000 keys are still there");
    for (i, (k, v)) in kvs.iter().enumerate() {
        assert_eq!(k, format!("/daytwo/k{i:04}").as_bytes());
        assert_eq!(v, format!("v{i}").as_bytes());
    }
}

/// Makes the lab hosts of `text` (the ones missing are created; `lab up` is idempotent).
fn lab_hosts(lab: &Lab, text: &str) {
    let hosts = lab.sb.write("hosts.yaml", text);
    let out = lab
        .sb
        .kubeha()
        .args(["lab", "up"])
        .arg(&hosts)
        .timeout(Duration::from_secs(240))
        .output()
        .expect("lab up");
    assert!(
        out.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_file(lab: &Lab, text: &str) {
    std::fs::write(&lab.file, text).expect("write cluster file");
}

fn text_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// stderr with miette's frame and line breaks flattened, for `contains` checks.
fn flat(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn steps_text(v: &serde_json::Value) -> String {
    v["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|x| {
                    format!(
                        "[{}s] {}: {}",
                        x["seconds"],
                        x["node"].as_str().unwrap_or(""),
                        x["what"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Runs kubeha with `-o json`, asserts success, returns the report.
fn json_ok(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = lab.kubeha(&a);
    assert!(out.status.success(), "kubeha {args:?}: {}", text_of(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    eprintln!("kubeha {args:?}:\n{}", steps_text(&v));
    v
}

/// The membership as `c` sees it, asked until a member answers (bounded).
fn members(c: &Client) -> Vec<Member> {
    let mut got = None;
    wait_until(Duration::from_secs(30), || {
        got = c.member_list().ok();
        got.is_some()
    });
    got.expect("some etcd member answers member list")
}

/// Every member started, named and voting, exactly `names`; no ghost (unstarted) member.
fn assert_voters(c: &Client, names: &[&str]) -> Vec<Member> {
    let ms = members(c);
    let mut got: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
    got.sort_unstable();
    assert_eq!(got, names, "{ms:#?}");
    assert!(ms.iter().all(|m| !m.is_learner), "{ms:#?}");
    ms
}

/// `up` succeeds, and a second `up` finds nothing to change.
fn assert_converged(lab: &Lab) {
    lab.up_ok();
    let again = lab.up_ok();
    assert_eq!(again["changed"], false, "{again:#}");
}

/// A kubeha run in the background, killed if the test ends first.
struct Background(Option<Child>);

impl Background {
    fn spawn(lab: &Lab, args: &[&str]) -> Background {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("kubeha"));
        c.current_dir(lab.sb.path())
            .env_remove("KUBEHA_FILE")
            .env_remove("KUBEHA_STATE_DIR")
            .env_remove("KUBEHA_CA_PASSPHRASE")
            .env("NO_COLOR", "1")
            .arg("-f")
            .arg(&lab.file)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Background(Some(c.spawn().expect("spawn kubeha")))
    }

    fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits (bounded) for it to end; kills it at the limit.
    fn finish(&mut self, limit: Duration) -> Output {
        let ended = wait_until(limit, || !self.running());
        let mut child = self.0.take().expect("child");
        if ended.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().expect("wait");
        assert!(ended.is_some(), "still running after {limit:?}: {out:?}");
        out
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn known_hosts(lab: &Lab) -> PathBuf {
    lab.sb
        .path()
        .join(".kubeha")
        .join(&lab.spec.name)
        .join("known_hosts")
}

#[test]
fn the_etcd_leader_dies_while_a_new_member_is_a_learner_and_the_add_still_ends_clean() {
    if skip_unless_root() {
        return;
    }
    let (name, net) = ("e2e-d2-leader", 56);
    let lab = Lab::up(name, net, 1, 0);
    lab.up_ok();
    let four = cluster_text(name, net, &[1, 2, 3, 4], 1, 0);
    lab_hosts(&lab, &four);
    let c = etcd(&lab, net, &[1, 2, 3]);
    put_keys(&c);
    set_file(&lab, &four);
    let new_peer = format!("https://198.18.{net}.14:2380");
    let mut add = Background::spawn(&lab, &["node", "add", "etcd-4", "-o", "json"]);
    // Wait for the learner; the add ending first is a failure of the test's premise.
    let mut learner = None;
    let seen = wait_until(Duration::from_secs(180), || {
        learner = c
            .member_list()
            .ok()
            .and_then(|ms| ms.into_iter().find(|m| m.peer_urls.contains(&new_peer)));
        learner.is_some() || !add.running()
    });
    let learner = learner.unwrap_or_else(|| {
        panic!(
            "no learner for {new_peer} ({seen:?}): {:?}",
            add.finish(Duration::from_secs(5))
        )
    });
    assert!(learner.is_learner, "seen first as a voter: {learner:?}");
    // Kill the leader's etcd (the supervisor does not restart it).
    let leader = (1..=3)
        .find(|i| {
            c.status(&format!("https://198.18.{net}.1{i}:2379"))
                .is_ok_and(|s| s.is_leader)
        })
        .expect("a leader");
    let killed_at = Instant::now();
    let out = lab.sh(
        &format!("etcd-{leader}"),
        "kill -9 $(cat /run/kubeha/etcd.service.pid) && echo killed",
    );
    assert!(text_of(&out).contains("killed"), "{out:?}");
    let still_learner = c
        .member_list()
        .ok()
        .and_then(|ms| ms.into_iter().find(|m| m.peer_urls.contains(&new_peer)))
        .map(|m| m.is_learner);
    eprintln!("killed leader etcd-{leader}; new member a learner then: {still_learner:?}");
    let out = add.finish(Duration::from_secs(300));
    eprintln!(
        "node add ended {:.1?} after the kill: {}",
        killed_at.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        let steps = steps_text(&v);
        assert!(
            steps.contains("promoted") || steps.contains("voting etcd member"),
            "{steps}"
        );
    } else {
        // A clean failure names what went wrong, and a re-run completes it.
        let err = flat(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("etcd-4") || err.contains("etcd"), "{err}");
        let up = lab.kubeha(&["up"]);
        eprintln!("up after the failed add: {}", text_of(&up));
        json_ok(&lab, &["node", "add", "etcd-4"]);
    }
    let ms = assert_voters(&c, &["etcd-1", "etcd-2", "etcd-3", "etcd-4"]);
    assert!(
        ms.iter()
            .any(|m| m.name == "etcd-4" && m.peer_urls == [new_peer.clone()]),
        "{ms:#?}"
    );
    let st = lab.status();
    assert_eq!(st["etcd"]["healthy"], 4, "{st:#}");
    assert_eq!(st["etcd"]["quorum"], true, "{st:#}");
    assert_keys(&etcd(&lab, net, &[4]));
    assert_keys(&c);
    assert_converged(&lab);
    let st = lab.status();
    assert_eq!(st["etcd"]["healthy"], 4, "{st:#}");
}

#[test]
fn a_dead_member_is_replaced_by_a_new_machine_at_a_new_address() {
    if skip_unless_root() {
        return;
    }
    let (name, net) = ("e2e-d2-newaddr", 57);
    let lab = Lab::up(name, net, 1, 0);
    lab.up_ok();
    let c = etcd(&lab, net, &[1, 2, 3]);
    put_keys(&c);
    let old_id = members(&c)
        .into_iter()
        .find(|m| m.name == "etcd-3")
        .expect("etcd-3")
        .id;
    // etcd-3's host dies: link down, etcd killed.
    lab.sh(
        "etcd-3",
        "kill -9 $(cat /run/kubeha/etcd.service.pid); ip link set eth0 down",
    );
    // A new machine etcd-4 at 198.18.57.14 takes its place in the cluster file. (`lab up`
    // of a file without etcd-3: it would otherwise bring etcd-3's link back up.)
    let replaced = cluster_text(name, net, &[1, 2, 4], 1, 0);
    lab_hosts(&lab, &replaced);
    set_file(&lab, &replaced);
    // Not saying which member it replaces: refused, naming the stray member, nothing changed.
    let out = lab.kubeha(&["node", "replace", "etcd-4"]);
    let err = flat(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("etcd-3") && err.contains("--replaces") && err.contains(&old_id),
        "{err}"
    );
    assert_eq!(members(&c).len(), 3);
    // By the old member's peer URL.
    let old_peer = format!("https://198.18.{net}.13:2380");
    let v = json_ok(
        &lab,
        &["node", "replace", "etcd-4", "--replaces", &old_peer],
    );
    let steps = steps_text(&v);
    assert!(
        steps.contains("removed the old etcd member etcd-3")
            && steps.contains("added as etcd learner")
            && steps.contains("promoted"),
        "{steps}"
    );
    let c = etcd(&lab, net, &[1, 2, 4]);
    let ms = assert_voters(&c, &["etcd-1", "etcd-2", "etcd-4"]);
    assert!(
        ms.iter()
            .all(|m| m.id != old_id && !m.peer_urls.contains(&old_peer)),
        "{ms:#?}"
    );
    assert!(
        ms.iter().any(|m| m.name == "etcd-4"
            && m.peer_urls == [format!("https://198.18.{net}.14:2380")]),
        "{ms:#?}"
    );
    let st = lab.status();
    assert_eq!(st["etcd"]["healthy"], 3, "{st:#}");
    assert_eq!(st["etcd"]["quorum"], true, "{st:#}");
    assert_keys(&etcd(&lab, net, &[4]));
    assert_keys(&c);
    assert_converged(&lab);
    // The LBs' etcd frontends and the control plane's local proxy follow the new address.
    for (node, cfg) in [
        ("lb-1", "/etc/haproxy/haproxy.cfg"),
        ("lb-2", "/etc/haproxy/haproxy.cfg"),
        ("cp-1", "/etc/kubernetes/etcd-proxy/haproxy.cfg"),
    ] {
        let text = text_of(&lab.sh(node, &format!("cat {cfg}")));
        assert!(
            text.contains(&format!("198.18.{net}.14:2379"))
                && !text.contains(&format!("198.18.{net}.13:")),
            "{node} {cfg}:\n{text}"
        );
    }
}

/// Gives the host a new sshd host key (as a reinstalled machine has) and returns its
/// fingerprint, read with `ssh-keygen -lf` on the host.
fn new_host_key(lab: &Lab, node: &str, address: &str) -> String {
    let out = lab.sh(
        node,
        &format!(
            "set -e; rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub; \
             ssh-keygen -q -t ed25519 -N '' -C root@{node} -f /etc/ssh/ssh_host_ed25519_key; \
             kill -HUP $(cat /run/sshd.pid); ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
        ),
    );
    assert!(out.status.success(), "{}", text_of(&out));
    let fp = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string();
    assert!(fp.starts_with("SHA256:"), "{fp}");
    // sshd re-executes on SIGHUP: wait until it answers again.
    let addr = address.parse().expect("address");
    assert!(
        wait_until(Duration::from_secs(30), || kubeha_lab::sshd_answers(
            addr,
            22,
            Duration::from_millis(500)
        ))
        .is_some(),
        "sshd of {node} answers again"
    );
    fp
}

#[test]
fn a_replacement_machines_new_host_key_is_refused_then_re_pinned_with_new_host_key() {
    if skip_unless_root() {
        return;
    }
    let (name, net) = ("e2e-d2-hostkey", 58);
    let lab = Lab::up(name, net, 1, 0);
    lab.up_ok();
    let c = etcd(&lab, net, &[1, 2, 3]);
    put_keys(&c);
    let kh = known_hosts(&lab);
    let before = std::fs::read_to_string(&kh).expect("known_hosts");
    let old_line = before
        .lines()
        .find(|l| l.starts_with("etcd-2 "))
        .expect("etcd-2 pinned")
        .to_string();
    // etcd-2 is reinstalled: new sshd host key, no etcd data.
    lab.sh(
        "etcd-2",
        "kill -9 $(cat /run/kubeha/etcd.service.pid); rm -rf /var/lib/etcd",
    );
    let fp = new_host_key(&lab, "etcd-2", &format!("198.18.{net}.12"));
    let out = lab.kubeha(&["node", "replace", "etcd-2"]);
    let err = flat(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("etcd-2")
            && err.contains("host key")
            && err.contains("kubeha node replace etcd-2 --new-host-key"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&kh).expect("known_hosts"),
        before,
        "refused: known_hosts untouched"
    );
    assert!(members(&c).iter().any(|m| m.name == "etcd-2"));
    let v = json_ok(&lab, &["node", "replace", "etcd-2", "--new-host-key"]);
    let steps = steps_text(&v);
    assert!(
        steps.contains(&format!(
            "pinned the new SSH host key of etcd-2: ssh-ed25519 {fp}"
        )) && steps.contains("forgot the SSH host key pinned for etcd-2")
            && steps.contains("promoted"),
        "{steps}"
    );
    // Only etcd-2's line changed; every other line is the same, byte for byte, in order.
    let after = std::fs::read_to_string(&kh).expect("known_hosts");
    let others = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("etcd-2 "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&after), others(&before));
    let new_lines: Vec<&str> = after.lines().filter(|l| l.starts_with("etcd-2 ")).collect();
    assert_eq!(new_lines.len(), 1, "{after}");
    assert_ne!(new_lines[0], old_line);
    let pinned = kubeha_transport::pinned_keys(&kh, "etcd-2").expect("read");
    assert_eq!(pinned.len(), 1);
    assert_eq!(pinned[0].fingerprint, fp);
    let st = lab.status();
    assert_eq!(st["etcd"]["healthy"], 3, "{st:#}");
    assert_keys(&etcd(&lab, net, &[2]));
    // `node add` of a node pinned before: same refusal naming its own flag, then re-pinned;
    // its etcd member is healthy with its data, so etcd is left alone.
    let fp1 = new_host_key(&lab, "etcd-1", &format!("198.18.{net}.11"));
    let out = lab.kubeha(&["node", "add", "etcd-1"]);
    let err = flat(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("kubeha node add etcd-1 --new-host-key"),
        "{err}"
    );
    let v = json_ok(&lab, &["node", "add", "etcd-1", "--new-host-key"]);
    let steps = steps_text(&v);
    assert!(
        steps.contains(&format!(
            "pinned the new SSH host key of etcd-1: ssh-ed25519 {fp1}"
        )) && steps.contains("nothing to do for etcd"),
        "{steps}"
    );
    assert_keys(&c);
    assert_converged(&lab);
}
