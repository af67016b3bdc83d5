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
    // Its placeholder SSH key fails validation until it is replaced.
    sb.kubeha()
        .arg("validate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "provisioning.sshAuthorizedKeys[0]",
        ));
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnAeRlJM7T8kS/MiXlHihQstYc+t+dAQCdhw4mPU+DM ops@example";
    std::fs::write(
        sb.path().join("cluster.yaml"),
        text.replace(
            "ssh-ed25519 AAAA...replace-with-your-public-key you@example",
            key,
        ),
    )
    .expect("write");
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

/// Issue 13 (A8): the summary printed `out//_operator/` and listed MetalLB for a cluster
/// without it.
#[test]
fn render_summary_joins_paths_and_lists_only_what_was_rendered() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", true);
    let out = sb
        .kubeha()
        .args(["render", "-f", "stacked.yaml", "--out", "out/"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("//"), "{text}");
    assert!(
        text.contains("operator files: out/_operator (admin.kubeconfig, "),
        "{text}"
    );
    let objects = text
        .lines()
        .find(|l| l.starts_with("in-cluster objects: out/_cluster ("))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(objects.contains("flannel"), "{objects}");
    assert!(!objects.to_lowercase().contains("metallb"), "{objects}");
    // The external example configures MetalLB: then it is listed.
    sb.example("external-etcd.yaml", true);
    let out = sb
        .kubeha()
        .args(["render", "-f", "external-etcd.yaml", "--out", "ext"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("metallb"), "{text}");
    // bring-up.md names each control plane's own API server address, not a placeholder.
    let bring_up =
        std::fs::read_to_string(sb.path().join("ext/_operator/bring-up.md")).expect("bring-up.md");
    assert!(!bring_up.contains("<address>"), "{bring_up}");
    assert!(
        bring_up.contains("`https://10.10.0.22:6443/livez`"),
        "{bring_up}"
    );
}
