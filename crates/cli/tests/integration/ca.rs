use std::{fs, process::Command};

use crate::harness::Sandbox;

#[test]
fn imported_etcd_ca_signs_every_etcd_certificate() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", false);
    let st = Command::new("openssl")
        .current_dir(sb.path())
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=etcd-ca",
            "-keyout",
            "my-ca.key",
            "-out",
            "my-ca.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,digitalSignature",
        ])
        .output()
        .expect("openssl");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    sb.kubeha()
        .args([
            "ca",
            "import",
            "-f",
            "stacked.yaml",
            "--ca",
            "etcd",
            "--cert",
            "my-ca.crt",
            "--key",
            "my-ca.key",
        ])
        .assert()
        .success();
    sb.kubeha()
        .args(["render", "-f", "stacked.yaml"])
        .assert()
        .success();
    let pki = sb.path().join("out/master-2/etc/kubernetes/pki");
    assert_eq!(
        fs::read(pki.join("etcd/ca.crt")).expect("ca"),
        fs::read(sb.path().join("my-ca.crt")).expect("mine")
    );
    for leaf in [
        "etcd/server.crt",
        "etcd/peer.crt",
        "etcd/healthcheck-client.crt",
        "apiserver-etcd-client.crt",
    ] {
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(sb.path().join("my-ca.crt"))
            .arg(pki.join(leaf))
            .output()
            .expect("verify");
        assert!(
            out.status.success(),
            "{leaf}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A second, different CA is refused: kubeha never replaces a CA silently.
    let st = Command::new("openssl")
        .current_dir(sb.path())
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=etcd-ca",
            "-keyout",
            "other.key",
            "-out",
            "other.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,digitalSignature",
        ])
        .output()
        .expect("openssl");
    assert!(st.status.success());
    sb.kubeha()
        .args([
            "ca",
            "import",
            "-f",
            "stacked.yaml",
            "--ca",
            "etcd",
            "--cert",
            "other.crt",
            "--key",
            "other.key",
        ])
        .assert()
        .failure();
}

/// Issue 13 (A7): `kubeha ca list` printed "not yet". It lists every CA and leaf in the state
/// dir with subject, issuing CA, expiry and time left, as JSON too, without writing anything.
#[test]
fn ca_list_shows_every_certificate_in_the_state_dir() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", true);
    // No state: refused, and none created.
    sb.kubeha()
        .args(["ca", "list", "-f", "stacked.yaml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no state for cluster stacked"));
    assert!(!sb.path().join(".kubeha").exists());

    sb.kubeha()
        .args(["render", "-f", "stacked.yaml"])
        .assert()
        .success();
    let state = sb.path().join(".kubeha");
    let on_disk = crate::readonly::tree(&state)
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "crt"))
        .count();
    let out = crate::readonly::unchanged(&state, "ca list", || {
        sb.kubeha()
            .args(["ca", "list", "-f", "stacked.yaml", "-o", "json"])
            .output()
            .expect("run")
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let certs = v["certificates"].as_array().expect("list");
    assert_eq!(certs.len(), on_disk, "one row per certificate file");
    let row = |name: &str| {
        certs
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v:#}"))
    };
    let ca = row("ca");
    assert_eq!(ca["isCa"], true);
    assert_eq!(ca["subject"], "kubernetes");
    assert_eq!(ca["issuer"], "self");
    // kubeadm's 10-year CA: 10y in the second it was issued, 9y after.
    assert!(
        ca["residual"] == "9y" || ca["residual"] == "10y",
        "{}",
        ca["residual"]
    );
    let etcd_server = row("nodes/master-1/etcd/server");
    assert_eq!(etcd_server["issuer"], "etcd");
    assert_eq!(etcd_server["subject"], "master-1");
    assert!(
        etcd_server["residual"] == "364d" || etcd_server["residual"] == "1y",
        "{}",
        etcd_server["residual"]
    );
    assert_eq!(
        row("nodes/master-1/front-proxy-client")["issuer"],
        "front-proxy"
    );
    let admin = row("operator/admin.conf");
    assert_eq!(admin["issuer"], "kubernetes");
    let left = admin["secondsLeft"].as_i64().expect("seconds");
    // Issued by `render` above, 365 days of validity (whole seconds, so at most 365 days).
    assert!(
        (365 * 86_400 - 600..=365 * 86_400).contains(&left),
        "{left}"
    );
    assert_eq!(certs.iter().filter(|c| c["isCa"] == true).count(), 3);
    assert!(certs.iter().take(3).all(|c| c["isCa"] == true), "CAs first");
    // The table says the same, with kubeadm's columns.
    let out = sb
        .kubeha()
        .args(["ca", "list", "-f", "stacked.yaml"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("RESIDUAL TIME"), "{text}");
    assert!(text.contains("3 CA(s) and"), "{text}");
}
