use predicates::prelude::*;

use crate::harness::Sandbox;

#[test]
fn valid_example_summarises_the_cluster() {
    let sb = Sandbox::new();
    sb.example("external-etcd.yaml", false);
    sb.kubeha()
        .args(["validate", "-f", "external-etcd.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("https://10.10.0.100:6443"))
        .stdout(predicate::str::contains("up to 256 nodes, 6 used"))
        .stdout(predicate::str::contains("ext-etcd-1"));
}

#[test]
fn json_output_is_data() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", false);
    let out = sb
        .kubeha()
        .args(["validate", "-f", "stacked.yaml", "-o", "json"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], true);
    assert_eq!(v["spec"]["topology"], "stacked");
    assert_eq!(v["capacity"]["etcdMembers"], 3);
}

#[test]
fn invalid_file_exits_2_and_points_at_the_line() {
    let sb = Sandbox::new();
    let text = std::fs::read_to_string(sb.example("external-etcd.yaml", false)).expect("read");
    sb.write(
        "bad.yaml",
        &text.replace("serviceCidr: 10.96.0.0/16", "serviceCidr: 10.244.0.0/20"),
    );
    sb.kubeha()
        .args(["validate", "-f", "bad.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("networking.serviceCidr"))
        .stderr(predicate::str::contains("overlaps pod CIDR"))
        .stderr(predicate::str::contains("line 18"))
        .stderr(predicate::str::contains("nothing was written"));
    let out = sb
        .kubeha()
        .args(["validate", "-f", "bad.yaml", "-o", "json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["field"], "networking.serviceCidr");
    assert_eq!(v["problems"][0]["line"], 18);
}

#[test]
fn unknown_field_exits_2_with_its_line() {
    let sb = Sandbox::new();
    sb.write("c.yaml", "name: x\nnodez: []\n");
    sb.kubeha()
        .args(["validate", "-f", "c.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nodez"))
        .stderr(predicate::str::contains("line 2"));
}

#[test]
fn missing_file_says_how_to_start() {
    let sb = Sandbox::new();
    sb.kubeha()
        .arg("validate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("kubeha init"));
}
