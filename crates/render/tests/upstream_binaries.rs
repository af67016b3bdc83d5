//! Every binary `scripts/upstream` built from the Go modules reports the release pinned in
//! upstream/versions.env, with the version stamping upstream's own build applies (without it
//! Kubernetes binaries call themselves `v0.0.0-master`, and kubeadm's and the kubelet's
//! version-skew checks misfire). A missing build fails, naming the command to run.

mod upstream;

use std::{path::Path, process::Command};

use serde_json::Value;
use upstream::{ETCD, KUBERNETES_V1_33, KUBERNETES_V1_34, Set, pin};

/// Runs `bin args…` with an empty environment and returns its stdout; it must succeed.
fn run(bin: &Path, args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", home.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?}: {}\n{stdout}{}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// The `clientVersion` object of `kubeadm version -o json` / `kubectl version --client -o
/// json`: kubeadm reads component-base's stamp, kubectl client-go's; both must carry the pins.
fn check_version_info(set: &Set, tool: &str, info: &Value) -> String {
    let version = set.version();
    let minor = version
        .strip_prefix("v1.")
        .and_then(|r| r.split('.').next())
        .unwrap_or_else(|| panic!("{version} is not a 1.x release"));
    let field = |k: &str| {
        info.get(k)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{tool}: no {k} in {info}"))
            .to_string()
    };
    assert_eq!(field("gitVersion"), version, "{tool}: {info}");
    assert_eq!(field("major"), "1", "{tool}: {info}");
    assert_eq!(field("minor"), minor, "{tool}: {info}");
    let commit = upstream::pins()
        .get(format!("{}_COMMIT", set.key).as_str())
        .copied()
        .unwrap_or("");
    assert_eq!(field("gitCommit"), commit, "{tool}: {info}");
    assert_eq!(field("gitTreeState"), "clean", "{tool}: {info}");
    let date = field("buildDate");
    assert!(is_utc_timestamp(&date), "{tool}: buildDate {date:?}");
    date
}

/// `2025-11-11T19:00:37Z`, the form upstream stamps.
fn is_utc_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn check_kubernetes(set: &Set) {
    let version = set.version();
    let expected = format!("Kubernetes {version}");
    for name in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
    ] {
        let out = run(&set.binary(name), &["--version"]);
        assert_eq!(out.trim(), expected, "{name} --version");
    }

    let kubeadm = set.binary("kubeadm");
    assert_eq!(run(&kubeadm, &["version", "-o", "short"]).trim(), version);
    let adm = json(&run(&kubeadm, &["version", "-o", "json"]));
    let adm_date = check_version_info(set, "kubeadm", &adm["clientVersion"]);

    let kubectl = set.binary("kubectl");
    let text = run(&kubectl, &["version", "--client"]);
    assert_eq!(
        text.lines().next(),
        Some(format!("Client Version: {version}").as_str()),
        "kubectl version --client:\n{text}"
    );
    let ctl = json(&run(&kubectl, &["version", "--client", "-o", "json"]));
    let ctl_date = check_version_info(set, "kubectl", &ctl["clientVersion"]);
    assert_eq!(adm_date, ctl_date, "one build date for the whole set");
}

#[test]
fn etcd_binaries_print_the_pinned_version() {
    let version = pin(ETCD.key);
    let out = run(&ETCD.binary("etcd"), &["--version"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("etcd Version: {version}").as_str()),
        "{out}"
    );
    assert!(
        lines.contains(&format!("Git SHA: {}", pin("ETCD_GIT_SHA")).as_str()),
        "{out}"
    );
    for tool in ["etcdctl", "etcdutl"] {
        let out = run(&ETCD.binary(tool), &["version"]);
        assert_eq!(
            out.lines().next(),
            Some(format!("{tool} version: {version}").as_str()),
            "{out}"
        );
    }
}

#[test]
fn kubernetes_v1_34_binaries_print_the_pinned_version() {
    check_kubernetes(&KUBERNETES_V1_34);
}

#[test]
#[ignore = "built only by `scripts/upstream all` (or `scripts/upstream kubernetes-v1.33`)"]
fn kubernetes_v1_33_binaries_print_the_pinned_version() {
    check_kubernetes(&KUBERNETES_V1_33);
}
