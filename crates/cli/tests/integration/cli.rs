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

/// Issue 13 (A9): `kubeha version` names the binary and the releases it deploys, the same
/// ones the renderer pins.
#[test]
fn version_reports_the_releases_the_renderer_deploys() {
    use kubeha_render::addons::{calico, flannel, metallb};
    use kubeha_spec::KubeVersion;
    let sb = Sandbox::new();
    let out = sb
        .kubeha()
        .args(["version", "-o", "json"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let kube = KubeVersion::DEFAULT;
    let want = [
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("kubernetes", kube.to_string()),
        ("etcd", kube.default_etcd().to_string()),
        ("coredns", kube.coredns_tag().to_string()),
        ("pause", kube.pause_tag().to_string()),
        ("kubeProxy", kube.to_string()),
        ("calico", calico::CALICO_VERSION.to_string()),
        (
            "tigeraOperator",
            calico::TIGERA_OPERATOR_VERSION.to_string(),
        ),
        ("flannel", flannel::FLANNEL_VERSION.to_string()),
        (
            "flannelCniPlugin",
            flannel::FLANNEL_CNI_PLUGIN_VERSION.to_string(),
        ),
        ("metallb", metallb::METALLB_VERSION.to_string()),
    ];
    for (key, value) in &want {
        assert_eq!(v[key].as_str(), Some(value.as_str()), "{key} in {v}");
    }
    let commit = v["commit"].as_str().expect("commit");
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    // `--version` carries the same version and commit.
    let short = sb.kubeha().arg("--version").output().expect("run");
    assert!(short.status.success());
    assert_eq!(
        String::from_utf8_lossy(&short.stdout).trim(),
        format!("kubeha {} ({commit})", env!("CARGO_PKG_VERSION"))
    );
    // The table names each default too.
    let table = sb.kubeha().arg("version").output().expect("run");
    let text = String::from_utf8_lossy(&table.stdout);
    for (_, value) in &want {
        assert!(
            text.contains(value.as_str()),
            "{value} missing from\n{text}"
        );
    }
}

/// Issue 13 (A9): `-q` leaves out progress lines but never an error; `-v` shows each SSH
/// command with its host and how it ended. `ssh` is a stand-in that fails like an
/// unreachable host, so nothing leaves this machine.
#[test]
fn quiet_drops_progress_and_verbose_shows_each_ssh_command() {
    let h = crate::dryrun::NoHosts::new();
    crate::dryrun::cluster(&h);
    let out = h.run(&["render", "--out", "out"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pki: generated"),
        "{out:?}"
    );
    // A second state dir, so that keys are generated again: -q prints nothing of it.
    let out = h.run(&["-q", "render", "--out", "out2", "--state-dir", "quiet"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{out:?}");
    assert!(h.sb.path().join("quiet/dry-run/pki/ca.crt").exists());
    // Errors still are printed.
    h.sb.write("bad.yaml", "name: x\nnodez: []\n");
    let out = h.run(&["-q", "validate", "-f", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nodez"),
        "{out:?}"
    );
    assert!(
        !h.run(&["-q", "-v", "version"]).status.success(),
        "-q and -v exclude each other"
    );

    // -v: one line per host tried, naming it, the command and that it never ran.
    let out = h.run(&["-v", "certs", "check"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for node in ["etcd-1", "etcd-2", "etcd-3", "lb-1", "lb-2", "cp-1", "wn-1"] {
        assert!(
            err.lines().any(
                |l| l.starts_with(&format!("ssh {node}: ")) && l.contains("no exit status in ")
            ),
            "{node} missing from\n{err}"
        );
    }
    // Without -v, no such lines.
    let out = h.run(&["certs", "check"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("ssh etcd-1: "),
        "{out:?}"
    );
}
