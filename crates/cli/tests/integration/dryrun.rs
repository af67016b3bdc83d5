//! Issue 13 (A9): `--dry-run` on `certs renew`, `node remove` and `reset` prints what would
//! be done and changes nothing: not the state dir, and no host is contacted.
//!
//! `ssh` is replaced (through PATH) by a script that only records that it was called and
//! fails, so a dry run that tried to reach a host is caught, and nothing leaves this
//! machine even then.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Output,
};

use crate::{
    harness::{Sandbox, snapshot_dir},
    readonly::tree,
};

/// A sandbox whose `ssh` records its calls in `ssh-calls` and fails like an unreachable host.
pub(crate) struct NoHosts {
    pub sb: Sandbox,
    bin: PathBuf,
}

impl NoHosts {
    pub fn new() -> Self {
        let sb = Sandbox::new();
        let bin = sb.path().join("bin");
        fs::create_dir(&bin).expect("bin dir");
        let ssh = bin.join("ssh");
        fs::write(
            &ssh,
            format!(
                "#!/bin/sh\necho \"$@\" >> '{}'\necho 'ssh: connect to host: Connection refused' >&2\nexit 255\n",
                sb.path().join("ssh-calls").display()
            ),
        )
        .expect("fake ssh");
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o755)).expect("chmod");
        NoHosts { sb, bin }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        self.sb
            .kubeha()
            .env("PATH", path)
            .args(args)
            .output()
            .expect("run")
    }

    fn state(&self, cluster: &str) -> PathBuf {
        self.sb.path().join(".kubeha").join(cluster)
    }

    fn assert_no_ssh(&self) {
        let calls = self.sb.path().join("ssh-calls");
        assert!(
            !calls.exists(),
            "a dry run ran ssh: {}",
            fs::read_to_string(&calls).unwrap_or_default()
        );
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` and asserts `state` holds the same paths, modes and bytes afterwards.
fn unchanged(state: &Path, f: impl FnOnce() -> Output) -> Output {
    let (files, paths) = (snapshot_dir(state), tree(state));
    let out = f();
    assert_eq!(snapshot_dir(state), files, "{} changed", state.display());
    assert_eq!(tree(state), paths, "{} changed", state.display());
    out
}

#[test]
fn certs_renew_dry_run_lists_the_certificates_and_changes_nothing() {
    let h = NoHosts::new();
    h.sb.example("stacked.yaml", true);
    let state = h.state("stacked");
    // Without state there is nothing to renew, and no state appears.
    let out = h.run(&["certs", "renew", "--all", "--dry-run", "-f", "stacked.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no state for cluster stacked"),
        "{out:?}"
    );
    assert!(!h.sb.path().join(".kubeha").exists());

    ok(
        &h.run(&["render", "-f", "stacked.yaml", "--out", "out"]),
        "render",
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("pki/index.json")).expect("index"))
            .expect("index json");
    let leaves: BTreeSet<String> = index["leaves"]
        .as_object()
        .expect("leaves")
        .keys()
        .cloned()
        .collect();
    assert!(leaves.len() > 10, "{leaves:?}");

    let out = unchanged(&state, || {
        h.run(&["certs", "renew", "--all", "--dry-run", "-f", "stacked.yaml"])
    });
    ok(&out, "certs renew --all --dry-run");
    let text = stdout(&out);
    // The listed certificates are exactly the leaves of the state dir, and no CA.
    let listed: BTreeSet<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("would re-issue"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(listed, leaves, "{text}");
    assert!(
        text.contains(&format!("would re-issue {} certificate(s)", leaves.len())),
        "{text}"
    );
    // Every host holding a certificate is named, etcd members first.
    let master = text.find("master-1: upload").expect(&text);
    let worker = text.find("node-1: upload").expect(&text);
    assert!(master < worker, "{text}");
    assert!(!text.contains("lb-a: upload"), "{text}");

    // One kind: only the control planes' apiserver, only on those hosts.
    let out = unchanged(&state, || {
        h.run(&[
            "certs",
            "renew",
            "apiserver",
            "--dry-run",
            "-f",
            "stacked.yaml",
        ])
    });
    ok(&out, "certs renew apiserver --dry-run");
    let text = stdout(&out);
    assert!(text.contains("would re-issue 3 certificate(s)"), "{text}");
    for m in ["master-1", "master-2", "master-3"] {
        assert!(text.contains(&format!("  {m}/apiserver\n")), "{text}");
        assert!(text.contains(&format!("{m}: upload 2 file(s)")), "{text}");
    }
    assert!(!text.contains("node-1"), "{text}");
    h.assert_no_ssh();
}

/// etcd-1..3 (external), two LBs, one control plane, one worker, on addresses no test
/// creates a namespace for: nothing may try them.
pub(crate) fn cluster(h: &NoHosts) {
    h.sb.write(
        "cluster.yaml",
        &crate::labkit::cluster_text("dry-run", 47, &[1, 2, 3], 1, 1),
    );
}

fn steps(v: &serde_json::Value) -> Vec<(String, String)> {
    v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["node"].as_str().unwrap_or_default().to_string(),
                s["would"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn node_remove_dry_run_prints_the_steps_and_changes_nothing() {
    let h = NoHosts::new();
    cluster(&h);
    let state = h.state("dry-run");
    // No state: the plan is still made, and none is created.
    let out = h.run(&["node", "remove", "etcd-3", "--dry-run", "-o", "json"]);
    ok(&out, "node remove --dry-run without state");
    assert!(!h.sb.path().join(".kubeha").exists());

    ok(&h.run(&["render", "--out", "out"]), "render");
    let out = unchanged(&state, || {
        h.run(&["node", "remove", "etcd-3", "--dry-run", "-o", "json"])
    });
    ok(&out, "node remove etcd-3 --dry-run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["dryRun"], true, "{v:#}");
    let s = steps(&v);
    let find = |node: &str, what: &str| {
        s.iter()
            .position(|(n, w)| n == node && w.contains(what))
            .unwrap_or_else(|| panic!("no step {node}: {what} in {s:#?}"))
    };
    let member = find("etcd-3", "remove its etcd member through etcd-1, etcd-2");
    assert!(
        s[member].1.contains("3 voters → 2, quorum 2 of 2"),
        "{s:#?}"
    );
    let env = find("etcd-1", "--initial-cluster");
    find("etcd-2", "--initial-cluster");
    let stop = find("etcd-3", "stop etcd");
    let paths = find("etcd-3", "path(s):");
    // Membership before the host is cleaned; the data dir goes with it.
    assert!(member < env && env < stop && stop < paths, "{s:#?}");
    assert!(s[stop].1.contains("etcd.service"), "{s:#?}");
    assert!(s[paths].1.contains("/var/lib/etcd"), "{s:#?}");
    // etcd-only: no Kubernetes Node to drain.
    assert!(!s.iter().any(|(_, w)| w.contains("drain")), "{s:#?}");
    let next = v["next"].to_string();
    assert!(
        next.contains("name: etcd-3") && next.contains("kubeha up"),
        "{next}"
    );

    // A worker: drained and its Node deleted, with the given bound; no etcd step.
    let out = unchanged(&state, || {
        h.run(&[
            "node",
            "remove",
            "wn-1",
            "--drain-timeout",
            "42",
            "--dry-run",
            "-o",
            "json",
        ])
    });
    ok(&out, "node remove wn-1 --dry-run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let s = steps(&v);
    assert!(
        s.iter()
            .any(|(n, w)| n == "wn-1" && w.contains("at most 42s")),
        "{s:#?}"
    );
    assert!(!s.iter().any(|(_, w)| w.contains("etcd member")), "{s:#?}");
    assert!(
        !s.iter().any(|(_, w)| w.contains("/var/lib/etcd")),
        "{s:#?}"
    );

    // A name that is neither a node nor can be planned is refused, nothing changed.
    h.sb.write(
        "single.yaml",
        &crate::labkit::cluster_text("dry-run", 47, &[1], 1, 0),
    );
    let out = unchanged(&state, || {
        h.run(&["node", "remove", "etcd-1", "--dry-run", "-f", "single.yaml"])
    });
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no other etcd member"),
        "{out:?}"
    );
    h.assert_no_ssh();
}

#[test]
fn reset_dry_run_needs_no_confirmation_and_changes_nothing() {
    let h = NoHosts::new();
    cluster(&h);
    let state = h.state("dry-run");
    ok(&h.run(&["render", "--out", "out"]), "render");
    // No terminal and no --yes: a real reset is refused, a dry run is not.
    let out = unchanged(&state, || {
        h.run(&["reset", "--all", "--dry-run", "-o", "json"])
    });
    ok(&out, "reset --all --dry-run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let s = steps(&v);
    for node in ["etcd-1", "etcd-2", "etcd-3", "lb-1", "lb-2", "cp-1", "wn-1"] {
        let removes: Vec<&String> = s
            .iter()
            .filter(|(n, w)| n == node && w.starts_with("remove "))
            .map(|(_, w)| w)
            .collect();
        assert_eq!(removes.len(), 1, "{node}: {s:#?}");
        assert_eq!(
            removes[0].contains("/var/lib/etcd"),
            node.starts_with("etcd-"),
            "{node}: {}",
            removes[0]
        );
    }
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{v:#}");
    // One etcd member alone: the plan warns that its membership stays.
    let out = unchanged(&state, || h.run(&["reset", "etcd-2", "--dry-run"]));
    ok(&out, "reset etcd-2 --dry-run");
    let text = stdout(&out);
    assert!(
        text.contains("warning: etcd-2: its etcd member would stay"),
        "{text}"
    );
    assert!(!text.contains("etcd-1"), "{text}");
    h.assert_no_ssh();
}
