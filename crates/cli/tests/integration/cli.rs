use predicates::prelude::*;

use crate::harness::Sandbox;

#[test]
fn help_teaches_with_examples() {
    let sb = Sandbox::new();
    sb.kubeha()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:"))
        .stdout(predicate::str::contains("Exit status"));
    sb.kubeha()
        .args(["render", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("manifest.json"));
}

#[test]
fn bad_flag_exits_2() {
    let sb = Sandbox::new();
    sb.kubeha()
        .args(["validate", "--no-such-flag"])
        .assert()
        .code(2);
}

#[test]
fn completions_for_bash() {
    let sb = Sandbox::new();
    sb.kubeha()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("kubeha"));
}

#[test]
fn init_writes_a_valid_starter_and_never_overwrites() {
    let sb = Sandbox::new();
    sb.kubeha().arg("init").assert().success();
    let text = std::fs::read_to_string(sb.path().join("cluster.yaml")).expect("starter");
    assert!(text.contains("# "), "starter is commented");
    sb.kubeha().arg("validate").assert().success();
    sb.kubeha()
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--force"));
    sb.kubeha()
        .args(["init", "--example", "stacked", "--force"])
        .assert()
        .success();
    sb.kubeha()
        .arg("validate")
        .assert()
        .success()
        .stdout(predicate::str::contains("stacked"));
}
