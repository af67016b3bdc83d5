use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Command};

use predicates::prelude::*;

use crate::harness::{Sandbox, snapshot_dir};

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn openssl_verify(ca: &Path, cert: &Path) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl verify {}: {}",
        cert.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    snapshot_dir(dir)
        .into_iter()
        .map(|(p, _, _)| p)
        .find(|p| p.ends_with(name))
}

#[test]
fn render_writes_every_host_tree_with_modes_and_a_manifest() {
    let sb = Sandbox::new();
    sb.example("external-etcd.yaml", true);
    let out = sb
        .kubeha()
        .args([
            "render",
            "-f",
            "external-etcd.yaml",
            "--out",
            "out",
            "-o",
            "json",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("PRIVATE KEY"), "no key material on stdout");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["outcome"], "written");
    assert!(report["keysGenerated"].as_u64().unwrap_or(0) > 30);

    let o = sb.path().join("out");
    let pki = |node: &str, f: &str| o.join(node).join("etc/kubernetes/pki").join(f);
    // Control plane: the kubeadm PKI set, keys 0600, sa.pub 0600 like kubeadm.
    for f in [
        "ca.crt",
        "ca.key",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "sa.key",
        "sa.pub",
        "apiserver.crt",
        "apiserver.key",
        "apiserver-kubelet-client.crt",
        "front-proxy-client.crt",
        "apiserver-etcd-client.crt",
        "etcd/ca.crt",
    ] {
        assert!(pki("cp-1", f).is_file(), "cp-1 lacks {f}");
    }
    assert_eq!(mode(&pki("cp-1", "apiserver.key")), 0o600);
    assert_eq!(mode(&pki("cp-1", "sa.pub")), 0o600);
    assert_eq!(mode(&pki("cp-1", "apiserver.crt")), 0o644);
    // External topology: the etcd CA key stays on the CA host only.
    assert!(
        !pki("cp-1", "etcd/ca.key").exists(),
        "control plane must not get etcd/ca.key"
    );
    assert!(
        pki("ext-etcd-1", "etcd/ca.key").is_file(),
        "the etcd CA host keeps etcd/ca.key"
    );
    assert!(
        !pki("ext-etcd-2", "etcd/ca.key").exists(),
        "other etcd members must not get etcd/ca.key"
    );
    // Workers get no CA key at all.
    assert!(!pki("wn-1", "ca.key").exists());
    assert!(
        o.join("cp-1/etc/kubernetes/super-admin.conf").is_file(),
        "init node has super-admin.conf"
    );
    assert!(
        !o.join("cp-2/etc/kubernetes/super-admin.conf").exists(),
        "only the init node has super-admin.conf"
    );
    assert!(o.join("lb1/etc/haproxy/haproxy.cfg").is_file());

    // Chains verify with the real openssl.
    openssl_verify(&pki("cp-1", "ca.crt"), &pki("cp-1", "apiserver.crt"));
    openssl_verify(
        &pki("cp-1", "front-proxy-ca.crt"),
        &pki("cp-1", "front-proxy-client.crt"),
    );
    openssl_verify(
        &pki("cp-1", "etcd/ca.crt"),
        &pki("cp-1", "apiserver-etcd-client.crt"),
    );
    openssl_verify(
        &pki("ext-etcd-2", "etcd/ca.crt"),
        &pki("ext-etcd-2", "etcd/server.crt"),
    );

    // The manifest lists every file with mode and hash.
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(o.join("manifest.json")).expect("manifest"))
            .expect("json");
    let files = m["hosts"]["cp-1"]["files"].as_array().expect("files");
    let key = files
        .iter()
        .find(|f| f["path"] == "/etc/kubernetes/pki/apiserver.key")
        .expect("listed");
    assert_eq!(key["mode"], "0600");
    assert_eq!(key["owner"], "root:root");
    assert_eq!(key["sensitive"], true);

    // The state dir keeps keys private.
    let state = sb.path().join(".kubeha");
    for (p, _, m) in snapshot_dir(&state) {
        let name = p.to_string_lossy();
        if name.ends_with(".key") || name.contains("secret") {
            assert_eq!(m, 0o600, "{name}");
        }
    }
}

#[test]
fn re_render_with_nothing_changed_writes_nothing() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", false);
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml"])
        .assert()
        .success();
    let before_out = snapshot_dir(&sb.path().join("out"));
    let before_state = snapshot_dir(&sb.path().join(".kubeha"));
    let out = sb
        .kubeha()
        .args(["render", "-f", "stacked.yaml", "-o", "json"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["outcome"], "unchanged");
    assert_eq!(r["keysGenerated"], 0);
    assert_eq!(snapshot_dir(&sb.path().join("out")), before_out);
    assert_eq!(snapshot_dir(&sb.path().join(".kubeha")), before_state);
}

#[test]
fn changing_one_address_reissues_only_what_depends_on_it() {
    let sb = Sandbox::new();
    let f = sb.example("stacked.yaml", false);
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml"])
        .assert()
        .success();
    let ca_before = fs::read(sb.path().join("out/master-1/etc/kubernetes/pki/ca.crt")).expect("ca");
    let w_before =
        fs::read(sb.path().join("out/node-1/etc/kubernetes/kubelet.conf")).expect("kubelet.conf");
    let text = fs::read_to_string(&f)
        .expect("read")
        .replace("10.20.0.13", "10.20.0.14");
    fs::write(&f, text).expect("write");
    let out = sb
        .kubeha()
        .args(["render", "-f", "stacked.yaml", "-o", "json"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let keys = r["keysGenerated"].as_u64().unwrap_or(0);
    assert!(
        keys > 0 && keys < 10,
        "only master-3's address-bearing certs are re-issued, got {keys}"
    );
    assert_eq!(
        fs::read(sb.path().join("out/master-1/etc/kubernetes/pki/ca.crt")).expect("ca"),
        ca_before,
        "CA never regenerated"
    );
    assert_eq!(
        fs::read(sb.path().join("out/node-1/etc/kubernetes/kubelet.conf")).expect("kubelet.conf"),
        w_before,
        "unrelated node untouched"
    );
}

#[test]
fn corrupt_state_names_the_file_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", false);
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml"])
        .assert()
        .success();
    let state = sb.path().join(".kubeha");
    let cert = find(&state, "apiserver.crt").expect("an apiserver cert in state");
    let text = fs::read(&cert).expect("read");
    fs::write(&cert, &text[..text.len() / 2]).expect("truncate");
    let before_state = snapshot_dir(&state);
    let before_out = snapshot_dir(&sb.path().join("out"));
    let name = cert
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(name));
    assert_eq!(snapshot_dir(&state), before_state, "state untouched");
    assert_eq!(
        snapshot_dir(&sb.path().join("out")),
        before_out,
        "output untouched"
    );
}

#[test]
fn key_not_matching_its_cert_is_refused() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", false);
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml"])
        .assert()
        .success();
    let state = sb.path().join(".kubeha");
    let a = find(&state, "front-proxy-client.key").expect("key a");
    let b = find(&state, "apiserver-kubelet-client.key").expect("key b");
    fs::copy(&b, &a).expect("swap key");
    let before = snapshot_dir(&state);
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("front-proxy-client"));
    assert_eq!(snapshot_dir(&state), before);
}

#[test]
fn output_dir_with_foreign_files_is_refused() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", false);
    fs::create_dir(sb.path().join("mine")).expect("mkdir");
    sb.write("mine/notes.txt", "keep me");
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml", "--out", "mine"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not an earlier kubeha render"));
    assert_eq!(
        fs::read_to_string(sb.path().join("mine/notes.txt")).expect("kept"),
        "keep me"
    );
}

#[test]
fn operator_kubeconfig_is_read_by_kubectl() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", false);
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml"])
        .assert()
        .success();
    let kc = sb.path().join("out/_operator/admin.kubeconfig");
    assert_eq!(mode(&kc), 0o600);
    let out = Command::new("kubectl")
        .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
        .arg(&kc)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        v["clusters"][0]["cluster"]["server"],
        "https://10.20.0.100:6443"
    );
    let ctx = v["current-context"].as_str().expect("context");
    assert!(
        ctx.contains("stacked"),
        "context named after the cluster: {ctx}"
    );
}

#[test]
fn a_run_is_refused_while_another_holds_the_state_lock() {
    let sb = Sandbox::new();
    sb.example("external-etcd.yaml", true);
    sb.kubeha()
        .args(["render", "-f", "external-etcd.yaml"])
        .assert()
        .success();
    let state = sb.path().join(".kubeha/ha-cluster");
    let before = snapshot_dir(&state);
    assert!(!before.is_empty());

    // Hold the very lock kubeha takes, from this process: kubeha waits its bounded ~2 s,
    // then refuses, whatever the speed of the machine.
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(state.join("lock"))
        .expect("lock file");
    lock.try_lock().expect("take the state lock");
    let out = sb
        .kubeha()
        .args(["render", "-f", "external-etcd.yaml", "--out", "out2"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "refused while locked");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lock") && err.contains("another kubeha run"),
        "{err}"
    );
    assert_eq!(
        snapshot_dir(&state),
        before,
        "nothing in the state dir changed"
    );
    assert!(!sb.path().join("out2").exists(), "no output written");

    // The same run succeeds once the lock is released.
    drop(lock);
    sb.kubeha()
        .args(["render", "-f", "external-etcd.yaml", "--out", "out2"])
        .assert()
        .success();
    assert!(sb.path().join("out2/manifest.json").exists());
}

#[test]
fn a_loose_key_mode_is_corrected_and_named_on_stderr() {
    let sb = Sandbox::new();
    sb.example("external-etcd.yaml", true);
    sb.kubeha()
        .args(["render", "-f", "external-etcd.yaml"])
        .assert()
        .success();
    let key = find(&sb.path().join(".kubeha/ha-cluster"), "sa.key").expect("sa.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = sb
        .kubeha()
        .args(["render", "-f", "external-etcd.yaml", "--out", "out2"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pki/sa.key had mode 0644") && err.contains("0600"),
        "{err}"
    );
    assert_eq!(mode(&key), 0o600);
}
