//! End to end in the lab: real sshd, etcd, HAProxy and Keepalived in network namespaces on
//! this machine (needs root, as CI has). Each test has its own cluster name and its own /24
//! in 198.18.0.0/15, and tears its lab down on every exit path.
//!
//! Network rule: these tests only talk to the 198.18.x.y addresses of namespaces they made.

use std::{fs, process::Command, time::Duration};

use crate::labkit::{Lab, etcdctl, two_host_text, wait_until};

#[test]
fn lab_up_converges_status_is_healthy_and_a_rerun_changes_nothing() {
    let lab = Lab::up("e2e-up", 10, 2, 1);
    let r = lab.up_ok();
    assert_eq!(r["changed"], true);
    let st = lab.status();
    assert_eq!(st["etcd"]["healthy"], 3, "{st:#}");
    assert_eq!(st["etcd"]["quorum"], true);
    assert_eq!(
        st["vip"]["holders"].as_array().map(Vec::len),
        Some(1),
        "{st:#}"
    );
    assert_eq!(
        st["vip"]["holders"][0], "lb-1",
        "the higher priority LB holds the VIP"
    );
    assert!(
        st["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .all(|n| n["reachable"] == true)
    );
    assert_eq!(
        st["etcd"]["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter(|m| m["isLeader"] == true)
            .count(),
        1
    );
    // Every member is the built 3.6.4 the cluster file names.
    let versions: Vec<&str> = st["etcd"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["version"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(versions, ["3.6.4"; 3], "{st:#}");
    // Debian's own etcdctl (3.4) agrees, with the certificates kubeha issued.
    let eps = "https://198.18.10.11:2379,https://198.18.10.12:2379,https://198.18.10.13:2379";
    let out = etcdctl(&lab.pki(), eps, &["endpoint", "health"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("is healthy").count(), 3, "{text}");
    // The control planes reach etcd through their local proxy (the gate checked it too).
    let proxy = lab.sh("cp-1", "curl -sS --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/apiserver-etcd-client.crt --key /etc/kubernetes/pki/apiserver-etcd-client.key https://127.0.0.1:2379/health");
    assert!(
        String::from_utf8_lossy(&proxy.stdout).contains("\"health\":\"true\""),
        "{proxy:?}"
    );
    // Nothing changed: nothing to do, and `plan` agrees.
    let again = lab.up_ok();
    assert_eq!(again["changed"], false, "{again:#}");
    let (ok, plan) = lab.json(&["plan"]);
    assert!(ok);
    assert_eq!(
        plan["plan"]["steps"].as_array().map(Vec::len),
        Some(0),
        "{plan:#}"
    );
}

#[test]
fn vip_moves_when_haproxy_dies_and_etcd_still_answers_through_it() {
    let lab = Lab::up("e2e-vip", 11, 1, 0);
    lab.up_ok();
    let st = lab.status();
    let holder = st["vip"]["holders"][0]
        .as_str()
        .expect("holder")
        .to_string();
    let other = if holder == "lb-1" { "lb-2" } else { "lb-1" };
    let kill = lab.sh(&holder, "kill -9 $(cat /run/kubeha/haproxy.service.pid)");
    assert!(kill.status.success(), "{kill:?}");
    // A generous bound: the failover time itself is measured by `kubeha bench up`.
    let took = wait_until(Duration::from_secs(60), || {
        let holds = |n: &str| {
            String::from_utf8_lossy(&lab.sh(n, "ip -o addr show dev eth0").stdout)
                .contains("198.18.11.100/")
        };
        holds(other) && !holds(&holder)
    });
    let took = took.expect("the VIP moved to the other LB");
    eprintln!("VIP moved from {holder} to {other} in {took:.1?}");
    let out = etcdctl(
        &lab.pki(),
        "https://198.18.11.100:2379",
        &["endpoint", "health"],
    );
    assert!(
        out.status.success(),
        "etcd through the VIP: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `up` puts HAProxy back.
    let r = lab.up_ok();
    assert_eq!(r["changed"], true);
    let restarted = lab.sh(
        &holder,
        "test -d /proc/$(cat /run/kubeha/haproxy.service.pid)",
    );
    assert!(restarted.status.success());
}

#[test]
fn a_stopped_member_shows_as_unhealthy_with_quorum_and_up_restores_it() {
    let lab = Lab::up("e2e-member", 12, 1, 0);
    lab.up_ok();
    let kill = lab.sh("etcd-2", "kill -9 $(cat /run/kubeha/etcd.service.pid)");
    assert!(kill.status.success(), "{kill:?}");
    // If the killed member led, the others need an election before reads succeed again.
    let mut st = lab.status();
    wait_until(Duration::from_secs(15), || {
        st = lab.status();
        st["etcd"]["healthy"] == 2
    });
    assert_eq!(st["etcd"]["healthy"], 2, "{st:#}");
    assert_eq!(st["etcd"]["total"], 3);
    assert_eq!(st["etcd"]["quorum"], true);
    assert_eq!(st["healthy"], false);
    let r = lab.up_ok();
    let started: Vec<String> = r["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .flat_map(|p| p["started"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    assert_eq!(
        started,
        vec!["etcd-2/etcd.service".to_string()],
        "only the stopped member is started: {r:#}"
    );
    let st = lab.status();
    assert_eq!(st["etcd"]["healthy"], 3, "{st:#}");
}

#[test]
fn an_interrupted_up_is_finished_by_the_next() {
    let lab = Lab::up("e2e-kill", 13, 1, 0);
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("kubeha"));
    c.current_dir(lab.sb.path())
        .arg("-f")
        .arg(&lab.file)
        .arg("up")
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn up");
    // Kill it once etcd is being brought up.
    let mut stderr = child.stderr.take().expect("stderr");
    let watcher = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&buf).contains("etcd etcd-") {
                return true;
            }
        }
        false
    });
    let saw = watcher.join().unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    assert!(saw, "up reached the etcd phase before it was killed");
    let r = lab.up_ok();
    assert_eq!(r["changed"], true);
    let st = lab.status();
    assert_eq!(st["etcd"]["healthy"], 3, "{st:#}");
    assert_eq!(lab.up_ok()["changed"], false);
}

#[test]
fn a_changed_host_key_is_refused_and_an_unreachable_host_is_named() {
    let lab = Lab::up("e2e-keys", 14, 1, 0);
    lab.up_ok();
    // A host whose key differs from the one pinned on first contact.
    let kh = lab
        .sb
        .path()
        .join(".kubeha")
        .join(&lab.spec.name)
        .join("known_hosts");
    let text = std::fs::read_to_string(&kh).expect("known_hosts");
    let other_key = text
        .lines()
        .find(|l| l.starts_with("etcd-2 "))
        .and_then(|l| l.split_once(' '))
        .map(|(_, k)| k.to_string())
        .expect("etcd-2 key");
    let forged: String = text
        .lines()
        .map(|l| {
            if l.starts_with("lb-2 ") {
                format!("lb-2 {other_key}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&kh, forged).expect("write");
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "rm -f {}/ssh/* 2>/dev/null",
            kh.parent().expect("dir").display()
        ))
        .status();
    let out = lab.kubeha(&["up"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lb-2") && err.to_lowercase().contains("host key"),
        "{err}"
    );
    std::fs::write(&kh, text).expect("restore");

    // An unreachable host: named, and nothing changes anywhere.
    let down = lab.sh("cp-1", "ip link set eth0 down");
    assert!(down.status.success());
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "rm -f {}/ssh/* 2>/dev/null",
            kh.parent().expect("dir").display()
        ))
        .status();
    let before = lab.sh("etcd-1", "sha256sum /etc/etcd/etcd.env");
    let out = lab.kubeha(&["up"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cp-1") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(
        lab.sh("etcd-1", "sha256sum /etc/etcd/etcd.env").stdout,
        before.stdout
    );
    let st = lab.status();
    assert_eq!(
        st["etcd"]["healthy"], 3,
        "the rest of the cluster is unharmed: {st:#}"
    );
}

/// `lab down` + `lab up` re-creates hosts with the SSH host keys kept in lab state: `kubeha up`
/// converges them again and `known_hosts` stays byte for byte. A host whose keys were removed
/// from lab state comes back as a new machine, and `kubeha up` refuses it by name.
#[test]
fn a_re_created_lab_keeps_its_host_keys_and_a_host_without_them_is_refused() {
    let lab = Lab::up_text(&two_host_text("e2e-rekey", 15));
    lab.up_ok();
    let kh = lab
        .sb
        .path()
        .join(".kubeha")
        .join(&lab.spec.name)
        .join("known_hosts");
    let pinned = fs::read(&kh).expect("known_hosts");
    let text = String::from_utf8_lossy(&pinned).to_string();
    for node in ["etcd-1", "cp-1"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{node} "))),
            "{node} pinned: {text}"
        );
    }

    // `lab down` removes the hosts, keeps their keys, and says so.
    let said = lab.ok(&["lab", "down"]);
    assert!(
        said.contains("lab-hostkeys/e2e-rekey") && said.contains("lab down --purge"),
        "{said}"
    );
    assert_eq!(host_states(&lab), vec![(false, false); 2]);
    lab.ok(&["lab", "up"]);
    let r = lab.up_ok();
    assert_eq!(r["changed"], true, "the re-created hosts were empty: {r:#}");
    assert_eq!(
        fs::read(&kh).expect("known_hosts"),
        pinned,
        "known_hosts is unchanged"
    );
    assert_eq!(lab.status()["etcd"]["healthy"], 1);

    // cp-1's keys removed by hand: a changed machine, refused; etcd-1 is still itself.
    let cp_keys = lab.sb.path().join("lab-hostkeys/e2e-rekey/cp-1");
    assert!(cp_keys.join("ssh_host_ed25519_key").is_file());
    fs::remove_dir_all(&cp_keys).expect("remove cp-1's keys");
    lab.ok(&["lab", "down"]);
    lab.ok(&["lab", "up"]);
    let out = lab.kubeha(&["up"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("host key of cp-1"), "{err}");
    assert!(!err.contains("host key of etcd-1"), "{err}");
    assert_eq!(
        fs::read(&kh).expect("known_hosts"),
        pinned,
        "nothing re-pinned"
    );
}

/// `lab down` keeps the lab's keys and state dir; `--purge` removes them, but without a
/// terminal only with `--yes` (refused before anything is touched).
#[test]
fn lab_down_purge_removes_keys_and_state_only_when_confirmed() {
    let lab = Lab::up_text(&two_host_text("e2e-purge", 16));
    let root = lab.sb.path();
    lab.ok(&["render", "--out", "out"]);
    let state = root.join(".kubeha/e2e-purge");
    let kept = [
        state.join("pki/ca.crt"),
        root.join("lab-hostkeys/e2e-purge/cp-1/ssh_host_ed25519_key"),
        root.join("lab-key"),
        root.join("lab-key.pub"),
    ];
    for p in &kept {
        assert!(p.is_file(), "{}", p.display());
    }

    let out = lab
        .sb
        .kubeha()
        .arg("-f")
        .arg(&lab.file)
        .args(["lab", "down", "--purge"])
        .write_stdin("yes\n")
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run kubeha");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--purge --yes"), "{err}");
    assert_eq!(
        host_states(&lab),
        vec![(true, true); 2],
        "the lab is untouched"
    );
    for p in &kept {
        assert!(p.is_file(), "{}", p.display());
    }

    let said = lab.ok(&["lab", "down", "--purge", "--yes"]);
    assert_eq!(host_states(&lab), vec![(false, false); 2]);
    for p in [&state, &root.join("lab-hostkeys"), &kept[2], &kept[3]] {
        assert!(!p.exists(), "{} is left; {said}", p.display());
    }
    assert!(said.contains("removed"), "{said}");
}

/// (namespace exists, sshd answers) per host, from `kubeha lab status`.
fn host_states(lab: &Lab) -> Vec<(bool, bool)> {
    let v = lab.json_ok(&["lab", "status"]);
    v["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| (h["exists"] == true, h["sshd"] == true))
        .collect()
}
