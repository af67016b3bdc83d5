//! Issue 13 (A2): a closed pipe must never make kubeha panic (exit 101).
//!
//! The reading end is closed before kubeha starts, so its very first write fails with EPIPE:
//! the outcome does not depend on how fast either side runs. A closed stdout ends kubeha
//! quietly with status 0 (the reader had enough, as with `| head -1`); a closed stderr is
//! ignored and the command keeps its own status.

use std::process::{Command, Output, Stdio};

use crate::harness::Sandbox;

/// A pipe whose reading end is already closed.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer.into()
}

/// The std `Command` (assert_cmd's cannot take arbitrary stdio), set up as the harness does.
fn kubeha(sb: &Sandbox, args: &[&str]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("kubeha"));
    c.current_dir(sb.path())
        .env_remove("KUBEHA_FILE")
        .env_remove("KUBEHA_STATE_DIR")
        .env_remove("KUBEHA_CA_PASSPHRASE")
        .env("NO_COLOR", "1")
        .args(args)
        .stdin(Stdio::null());
    c
}

fn no_panic(what: &str, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{what} panicked: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

/// `kubeha … | head -1` for every command that prints data without hosts.
#[test]
fn a_closed_stdout_ends_quietly_with_status_0() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", true);
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml", "--out", "out"])
        .assert()
        .success();
    for args in [
        &["completions", "bash"][..],
        &["completions", "zsh"],
        &["--help"],
        &["render", "--help"],
        &["--version"],
        &["validate", "-f", "stacked.yaml"],
        &["validate", "-f", "stacked.yaml", "-o", "json"],
        &["images", "-f", "stacked.yaml", "-o", "yaml"],
        &["kubeconfig", "-f", "stacked.yaml"],
        &["ca", "list", "-f", "stacked.yaml"],
        &["render", "-f", "stacked.yaml", "--out", "out"],
    ] {
        let out = kubeha(&sb, args)
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .expect("run");
        no_panic(&format!("{args:?} with stdout closed"), &out);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
    }
}

/// `kubeha validate -f bad.yaml 2>&1 | true`: stdout and stderr closed, the status still
/// says the file is invalid.
#[test]
fn a_closed_stderr_keeps_the_commands_own_status() {
    let sb = Sandbox::new();
    sb.write("bad.yaml", "name: x\nnodez: []\n");
    for (args, code) in [
        (&["validate", "-f", "bad.yaml"][..], 2),
        (&["validate", "-f", "missing.yaml"], 2),
        (&["validate", "--no-such-flag"], 2),
        (&["plan", "-f", "bad.yaml"], 2),
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = kubeha(&sb, args)
            .stdout(writer.try_clone().expect("clone"))
            .stderr(writer)
            .output()
            .expect("run");
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked");
        assert_eq!(out.status.code(), Some(code), "{args:?}");
    }
}
