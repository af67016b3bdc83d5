//! Commands that only look must leave the state dir exactly as they found it — every path,
//! directory, mode and byte — and must not create one for a cluster that has none.
//!
//! Here without hosts: `validate`, `images`, `kubeconfig`, `ca list`, a refused `render`.
//! `plan`, `status` and `certs check` need hosts; `lab_readonly` checks them against a lab.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Output,
};

use predicates::prelude::*;
use sha2::{Digest, Sha256};

use crate::{harness::Sandbox, labkit::Lab};

/// What a tree holds: every path below `root` (directories too, the lock file too), with its
/// kind, mode and, for a file, the sha256 of its bytes. Empty when `root` does not exist.
pub fn tree(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.expect("dir entry").path();
            let md = fs::symlink_metadata(&p).expect("metadata");
            let mode = md.permissions().mode() & 0o7777;
            let what = if md.is_dir() {
                stack.push(p.clone());
                format!("dir {mode:o}")
            } else if md.is_file() {
                let bytes = fs::read(&p).expect("read");
                format!("file {mode:o} {}", hex::encode(Sha256::digest(&bytes)))
            } else {
                format!("other {mode:o}")
            };
            out.push((
                p.strip_prefix(root).expect("below root").to_path_buf(),
                what,
            ));
        }
    }
    out.sort();
    out
}

/// Runs `run` and asserts the tree at `state` is the same afterwards; returns its output.
pub fn unchanged(state: &Path, what: &str, run: impl FnOnce() -> Output) -> Output {
    let before = (state.exists(), tree(state));
    let out = run();
    assert_eq!(
        (state.exists(), tree(state)),
        before,
        "{what} changed {}:\n{}",
        state.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `kubeha ARGS` in the sandbox, asserting that `state` is left as it was.
fn leaves_state_alone(sb: &Sandbox, state: &Path, args: &[&str]) -> Output {
    unchanged(state, &format!("kubeha {args:?}"), || {
        sb.kubeha().args(args).output().expect("run")
    })
}

/// The keys of the top-level JSON object in `text`, duplicates kept: a `Value` would keep
/// only the last of two equal keys, which is how a duplicate hides.
pub fn top_level_keys(text: &[u8]) -> Vec<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(k);
            }
            Ok(keys)
        }
    }
    serde_json::Deserializer::from_slice(text)
        .deserialize_map(Keys)
        .expect("a JSON object")
}

/// Issue 13 (A5): `kubeha kubeconfig` without state made a new CA and ~40 keys and printed
/// credentials no cluster accepts.
#[test]
fn kubeconfig_without_state_refuses_and_writes_nothing() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", true);
    for extra in [&[][..], &["--merge", "--into", "merged"][..]] {
        let out = sb
            .kubeha()
            .args(["kubeconfig", "-f", "stacked.yaml"])
            .args(extra)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert!(out.stdout.is_empty(), "prints no kubeconfig");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no state for cluster stacked"), "{err}");
        assert!(err.contains("kubeha render"), "says what to run: {err}");
    }
    assert!(!sb.path().join(".kubeha").exists(), "no state dir created");
    assert!(!sb.path().join("merged").exists(), "nothing merged");
}

/// Issue 13 (A5): `render --out <foreign dir>` refused only after issuing the whole PKI.
#[test]
fn render_into_a_foreign_directory_is_refused_before_issuing_anything() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", true);
    sb.write("notes.txt", "mine");
    fs::create_dir(sb.path().join("mine")).expect("dir");
    sb.write("mine/keep.txt", "keep");
    for out_dir in ["mine", "notes.txt"] {
        sb.kubeha()
            .args(["render", "-f", "stacked.yaml", "--out", out_dir])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(out_dir));
    }
    assert!(!sb.path().join(".kubeha").exists(), "no state dir created");
    assert_eq!(
        fs::read_to_string(sb.path().join("mine/keep.txt")).expect("kept"),
        "keep"
    );
    // With state present, the refusal changes none of it either.
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml", "--out", "out"])
        .assert()
        .success();
    let state = sb.path().join(".kubeha");
    let out = leaves_state_alone(
        &sb,
        &state,
        &["render", "-f", "stacked.yaml", "--out", "mine"],
    );
    assert_eq!(out.status.code(), Some(2));
}

/// Issue 13 (A5): every command that only looks leaves an existing state dir as it was, and
/// creates none where there is none.
#[test]
fn looking_commands_leave_the_state_dir_alone() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", true);
    let state = sb.path().join(".kubeha");
    let looking: [&[&str]; 6] = [
        &["validate", "-f", "stacked.yaml"],
        &["validate", "-f", "stacked.yaml", "-o", "json"],
        &["images", "-f", "stacked.yaml"],
        &["kubeconfig", "-f", "stacked.yaml"],
        &["kubeconfig", "-f", "stacked.yaml", "-o", "json"],
        &["ca", "list", "-f", "stacked.yaml"],
    ];
    // No state: nothing may appear.
    for args in looking {
        leaves_state_alone(&sb, &state, args);
    }
    assert!(
        !state.exists(),
        "a looking command created {}",
        state.display()
    );
    // With state (and a pinned host key, as `up` leaves): nothing may change.
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml", "--out", "out"])
        .assert()
        .success();
    fs::write(
        state.join("stacked/known_hosts"),
        "master-1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAMPL\n",
    )
    .expect("known_hosts");
    let before = tree(&state);
    assert!(
        before.iter().any(|(p, _)| p.ends_with("pki/ca.crt")),
        "{before:?}"
    );
    for args in looking {
        let out = leaves_state_alone(&sb, &state, args);
        assert!(
            out.status.success(),
            "kubeha {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Issue 13 (A5, A3): `plan` created `<state>/<cluster>/ssh/` (and pinned host keys on first
/// contact) although it changes nothing, and `status` and `certs check` did the same; `plan
/// -o json` carried `changed` twice. Checked on a lab (needs root): first without state, then
/// with the state `render` leaves.
#[test]
fn lab_plan_status_and_certs_check_leave_the_state_dir_alone() {
    let lab = Lab::up("e2e-look", 15, 1, 0);
    let state = lab.sb.path().join(".kubeha").join("e2e-look");
    let run = |args: &[&str]| unchanged(&state, &format!("kubeha {args:?}"), || lab.kubeha(args));

    let plan = run(&["plan", "-o", "json"]);
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let keys = top_level_keys(&plan.stdout);
    assert_eq!(
        keys.iter().filter(|k| *k == "changed").count(),
        1,
        "{keys:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    let steps = v["plan"]["steps"].as_array().map_or(0, Vec::len);
    assert!(steps > 0, "empty hosts need every file: {v:#}");
    assert_eq!(
        v["changed"], true,
        "a plan with {steps} steps changes something"
    );
    run(&["status", "-o", "json"]);
    run(&["certs", "check"]);

    let out = lab.kubeha(&["render", "--out", "out"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(state.join("pki/ca.crt").is_file());
    for args in [
        &["plan", "-o", "json"][..],
        &["status", "-o", "json"],
        &["certs", "check"],
        &["kubeconfig"],
        &["ca", "list", "-o", "json"],
    ] {
        run(args);
    }
}
