//! Lab hosts end to end (needs root): real namespaces, overlays, sshd and SSH. Each test uses
//! its own cluster name and /24 inside 198.18.0.0/15, so they run concurrently; each removes
//! its lab on every exit path (guard) and first removes leftovers of an earlier killed run.

mod common;

use std::{fs, path::Path, time::Instant};

use common::{LabGuard, assert_gone, exec, lab_spec, root_or_skip, ssh};
use kubeha_lab::{Lab, LabError, LabOptions};

#[test]
fn two_hosts_answer_ssh_are_isolated_and_go_away() {
    if !root_or_skip("two_hosts") {
        return;
    }
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = LabGuard::new(lab_spec(
        "labtest-hosts",
        201,
        &["alpha", "beta"],
        tmp.path(),
    ));
    let report = Lab::up(&lab.spec, &lab.opts).expect("lab up");
    assert_eq!(report.hosts.len(), 2);
    assert!(
        report.hosts.iter().all(|h| h.exists && h.sshd),
        "{report:?}"
    );
    assert_eq!(report.gateway, "198.19.201.1/24");
    assert!(
        lab.key().exists() && Path::new(&format!("{}.pub", lab.key().display())).exists(),
        "lab key generated"
    );

    // Real SSH with the lab key reaches each host, and each knows its name.
    let known = tmp.path().join("known_hosts");
    for (node, addr) in [("alpha", "198.19.201.11"), ("beta", "198.19.201.12")] {
        let out = ssh(&lab.key(), &known, addr, "hostname");
        assert!(
            out.status.success(),
            "ssh {addr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), node);
    }
    let (alpha, beta) = (lab.ns("alpha"), lab.ns("beta"));

    // Own /etc, /var/lib and /run: what alpha writes, beta and the machine do not see.
    let marker = format!("kubeha-lab-test-{}", std::process::id());
    for dir in ["/etc", "/var/lib", "/run"] {
        let path = format!("{dir}/{marker}");
        assert_eq!(
            exec(&alpha, &["sh", "-c", &format!("echo alpha > {path}")]).0,
            0,
            "write {path} on alpha"
        );
        assert_eq!(exec(&alpha, &["cat", &path]).1.trim(), "alpha");
        assert_ne!(
            exec(&beta, &["test", "-e", &path]).0,
            0,
            "{path} leaked to beta"
        );
        assert!(!Path::new(&path).exists(), "{path} leaked to the machine");
    }
    // sshd's host key is the host's own, not the machine's.
    let host_key = exec(&alpha, &["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).1;
    assert_ne!(
        host_key,
        fs::read_to_string("/etc/ssh/ssh_host_ed25519_key.pub").unwrap_or_default()
    );

    // Network: eth0 with the node's address, no default route; alpha reaches beta's sshd.
    let addr = exec(&alpha, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).1;
    assert!(addr.contains("198.19.201.11/24"), "{addr}");
    assert_eq!(
        exec(&alpha, &["ip", "route", "show", "default"]).1.trim(),
        "",
        "no default route"
    );
    let (code, banner, err) = exec(
        &alpha,
        &[
            "timeout",
            "5",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/198.19.201.12/22; head -c 4 <&3",
        ],
    );
    assert_eq!(
        (code, banner.as_str()),
        (0, "SSH-"),
        "alpha reaches beta:22: {err}"
    );
    let out = ssh(
        &lab.key(),
        &known,
        "198.19.201.11",
        "ip -o link show | grep -c ': eth0'",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "sysfs/links of the host itself"
    );

    // Idempotent: a second `up` checks and changes nothing (same sshd processes).
    let pids_before: Vec<u32> = kubeha_lab::host_pids(&alpha);
    assert!(!pids_before.is_empty());
    let again = Lab::up(&lab.spec, &lab.opts).expect("second lab up");
    assert_eq!(again, report);
    assert_eq!(
        kubeha_lab::host_pids(&alpha),
        pids_before,
        "second up restarted nothing"
    );
    let status = Lab::status(&lab.spec, &lab.opts).expect("status");
    assert!(
        status.hosts.iter().all(|h| h.exists && h.sshd),
        "{status:?}"
    );

    // Down removes everything, and a second down is fine.
    let mut pids = pids_before;
    pids.extend(kubeha_lab::host_pids(&beta));
    let down = Lab::down(&lab.spec, &lab.opts).expect("lab down");
    assert_eq!(down.namespaces.len(), 2, "{down:?}");
    assert_gone(&lab.id(), &pids);
    Lab::down(&lab.spec, &lab.opts).expect("second lab down");
    let status = Lab::status(&lab.spec, &lab.opts).expect("status after down");
    assert!(status.hosts.iter().all(|h| !h.exists && !h.sshd));
    eprintln!("two_hosts: {:?}", t0.elapsed());
}

#[test]
fn down_cleans_up_after_a_crash() {
    if !root_or_skip("down_after_crash") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = LabGuard::new(lab_spec("labtest-crash", 202, &["one", "two"], tmp.path()));
    let report = Lab::up(&lab.spec, &lab.opts).expect("lab up");
    let id = lab.id();
    let mut pids = Vec::new();
    for h in &report.hosts {
        // A stray detached process, as a crashed kubeha would leave, then sshd dies.
        assert_eq!(exec(&h.namespace, &["setsid", "-f", "sleep", "300"]).0, 0);
        pids.extend(kubeha_lab::host_pids(&h.namespace));
        assert_eq!(
            exec(&h.namespace, &["sh", "-c", "kill -9 $(cat /run/sshd.pid)"]).0,
            0
        );
    }
    assert!(pids.len() >= 4, "sshd and sleep per host: {pids:?}");
    // A killed `lab up` may leave a half-made host: a namespace and a veth, no state.
    let ghost = kubeha_lab::names::namespace(&id, "ghost");
    assert!(
        std::process::Command::new("ip")
            .args(["netns", "add", &ghost])
            .status()
            .expect("ip")
            .success()
    );
    let ghost_link = kubeha_lab::names::veth(&id, "ghost");
    let ghost_peer = kubeha_lab::names::veth_peer(&id, "ghost");
    assert!(
        std::process::Command::new("ip")
            .args([
                "link",
                "add",
                &ghost_link,
                "type",
                "veth",
                "peer",
                "name",
                &ghost_peer
            ])
            .status()
            .expect("ip")
            .success()
    );
    fs::remove_file(report.data_dir.join("lab.json")).expect("state file existed");

    let status = Lab::status(&lab.spec, &lab.opts).expect("status");
    assert!(
        status.hosts.iter().all(|h| h.exists && !h.sshd),
        "sshd is dead: {status:?}"
    );
    assert!(Lab::discover(&LabOptions::default()).contains(&id));

    let down = Lab::down(&lab.spec, &lab.opts).expect("down after crash");
    assert_eq!(down.namespaces.len(), 3, "{down:?}");
    assert_gone(&id, &pids);
}

#[test]
fn up_again_repairs_a_host() {
    if !root_or_skip("repair") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = LabGuard::new(lab_spec("labtest-repair", 204, &["solo"], tmp.path()));
    Lab::up(&lab.spec, &lab.opts).expect("lab up");
    let ns = lab.ns("solo");
    assert_eq!(
        exec(&ns, &["sh", "-c", "kill -9 $(cat /run/sshd.pid)"]).0,
        0
    );
    assert_eq!(
        exec(&ns, &["ip", "link", "set", "dev", "eth0", "down"]).0,
        0
    );
    assert!(!Lab::status(&lab.spec, &lab.opts).expect("status").hosts[0].sshd);
    let report = Lab::up(&lab.spec, &lab.opts).expect("up repairs");
    assert!(report.hosts[0].sshd);
    let known = tmp.path().join("known_hosts");
    let out = ssh(&lab.key(), &known, "198.19.204.11", "hostname");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "solo");
}

#[test]
fn refuses_addresses_outside_the_lab_range() {
    let tmp = tempfile::tempdir().expect("tmp");
    let yaml = format!(
        "name: labtest-outside\ntopology: stacked\ncontrolPlaneEndpoint: 10.10.0.11:6443\n\
         ssh: {{ user: root, key: {} }}\n\
         networking: {{ nodeCidr: 10.10.0.0/24 }}\n\
         nodes:\n  - {{ name: cp-1, address: 10.10.0.11, roles: [control-plane, etcd] }}\n",
        tmp.path().join("k").display()
    );
    let spec = kubeha_spec::load_str(&yaml, Path::new("outside.yaml"))
        .expect("valid cluster file")
        .spec;
    let e = kubeha_lab::check_spec(&spec).expect_err("10.10.0.0/24 refused");
    assert!(matches!(e, LabError::AddressOutsideLab { .. }), "{e}");
    assert!(
        e.to_string().contains("10.10.0.0/24") && e.to_string().contains("198.18.0.0/15"),
        "{e}"
    );
    match Lab::up(&spec, &LabOptions::default()) {
        Err(LabError::AddressOutsideLab { .. }) | Err(LabError::NotRoot { .. }) => {}
        other => panic!("lab up must refuse: {other:?}"),
    }
    assert!(!tmp.path().join("k").exists(), "nothing was created");
    assert!(
        !Lab::discover(&LabOptions::default()).contains(&kubeha_lab::lab_id("labtest-outside"))
    );
}
