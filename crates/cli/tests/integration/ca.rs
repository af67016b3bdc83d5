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
