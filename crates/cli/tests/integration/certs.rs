//! `kubeha certs check`'s scan against a rendered cluster: the very scan code the command runs
//! over SSH, here through a `LocalTransport` with each node's render directory as its root.

use std::{fs, path::Path, time::Instant};

use kubeha_transport::{LocalTransport, Transport, for_each_host};

use crate::harness::Sandbox;

#[path = "../../src/commands/certs/scan.rs"]
#[allow(dead_code)]
mod scan;

use scan::{FoundCert, Standing};

const DAY: i64 = 86_400;
const NODES: [&str; 6] = ["lb-a", "lb-b", "master-1", "master-2", "master-3", "node-1"];

fn render(sb: &Sandbox) -> std::path::PathBuf {
    sb.example("stacked.yaml", false);
    let out = sb
        .kubeha()
        .args(["render", "-f", "stacked.yaml", "--out", "out"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sb.path().join("out")
}

fn find<'a>(found: &'a [FoundCert], path: &str, user: Option<&str>) -> &'a FoundCert {
    found
        .iter()
        .find(|f| f.path == path && f.user.as_deref() == user)
        .unwrap_or_else(|| {
            panic!(
                "{path} {user:?} not found in {:?}",
                found.iter().map(|f| (&f.path, &f.user)).collect::<Vec<_>>()
            )
        })
}

fn scan_all(out: &Path) -> Vec<(&'static str, Vec<FoundCert>)> {
    let started = Instant::now();
    let hosts: Vec<(&str, LocalTransport)> = NODES
        .iter()
        .map(|n| (*n, LocalTransport::new(*n)))
        .collect();
    let results = for_each_host(hosts, NODES.len(), |(n, t)| {
        let root = out.join(n);
        scan::scan(t as &dyn Transport, &root.to_string_lossy())
    });
    eprintln!("scanned {} hosts in {:?}", NODES.len(), started.elapsed());
    results
        .into_iter()
        .map(|((n, _), r)| (n, r.unwrap_or_else(|e| panic!("{n}: {e}"))))
        .collect()
}

#[test]
fn scan_reads_every_certificate_of_a_rendered_cluster() {
    let sb = Sandbox::new();
    let out = render(&sb);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let all = scan_all(&out);
    let host = |n: &str| &all.iter().find(|(h, _)| *h == n).expect("host").1;

    let m1 = host("master-1");
    for (path, subject, issuer, ca) in [
        (
            "/etc/kubernetes/pki/ca.crt",
            "kubernetes",
            "kubernetes",
            true,
        ),
        (
            "/etc/kubernetes/pki/apiserver.crt",
            "kube-apiserver",
            "kubernetes",
            false,
        ),
        (
            "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
            "kube-apiserver-kubelet-client",
            "kubernetes",
            false,
        ),
        (
            "/etc/kubernetes/pki/front-proxy-client.crt",
            "front-proxy-client",
            "front-proxy-ca",
            false,
        ),
        (
            "/etc/kubernetes/pki/etcd/ca.crt",
            "etcd-ca",
            "etcd-ca",
            true,
        ),
        (
            "/etc/kubernetes/pki/etcd/server.crt",
            "master-1",
            "etcd-ca",
            false,
        ),
    ] {
        let c = find(m1, path, None)
            .cert
            .as_ref()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            (c.subject.as_str(), c.issuer.as_str(), c.is_ca),
            (subject, issuer, ca),
            "{path}"
        );
    }
    // Client certificates embedded in kubeconfigs, per user.
    for (file, user) in [
        ("/etc/kubernetes/admin.conf", "kubernetes-admin"),
        ("/etc/kubernetes/super-admin.conf", "kubernetes-super-admin"),
        (
            "/etc/kubernetes/controller-manager.conf",
            "system:kube-controller-manager",
        ),
        ("/etc/kubernetes/scheduler.conf", "system:kube-scheduler"),
        ("/etc/kubernetes/kubelet.conf", "system:node:master-1"),
    ] {
        let c = find(m1, file, Some(user))
            .cert
            .as_ref()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(c.subject, user, "{file}");
        assert_eq!(c.issuer, "kubernetes", "{file}");
    }
    // Every file on every host parses; leaves have about a year, CAs about ten.
    for (h, found) in &all {
        for f in found {
            let c = f
                .cert
                .as_ref()
                .unwrap_or_else(|e| panic!("{h} {}: {e}", f.path));
            let days = scan::days_left(c.not_after, now);
            if c.is_ca {
                assert!((3640..=3651).contains(&days), "{h} {} {days}", f.path);
            } else {
                assert!((360..=366).contains(&days), "{h} {} {days}", f.path);
            }
            assert_eq!(scan::standing(c.not_after, now, 30), Standing::Ok);
            // With an injected "now" a year and a bit later: leaves expired, CAs fine.
            let later = scan::standing(c.not_after, now + 370 * DAY, 30);
            assert_eq!(
                later,
                if c.is_ca {
                    Standing::Ok
                } else {
                    Standing::Expired
                },
                "{h} {}",
                f.path
            );
        }
    }
    // A worker has its kubelet.conf and the cluster CA; load balancers hold no certificate.
    let w = host("node-1");
    find(w, "/etc/kubernetes/pki/ca.crt", None);
    find(
        w,
        "/etc/kubernetes/kubelet.conf",
        Some("system:node:node-1"),
    );
    assert!(host("lb-a").is_empty(), "{:?}", host("lb-a"));
}

#[test]
fn kubelet_files_are_read_without_private_keys_and_bad_files_are_reported() {
    let sb = Sandbox::new();
    let out = render(&sb);
    let node = out.join("master-2");
    let pki = node.join("etc/kubernetes/pki");
    let cert = fs::read_to_string(pki.join("apiserver.crt")).expect("cert");
    let key = fs::read_to_string(pki.join("apiserver.key")).expect("key");
    assert!(key.contains("PRIVATE KEY"));
    // The kubelet's rotated client certificate: cert + key in one file, behind a symlink.
    let kubelet = node.join("var/lib/kubelet/pki");
    fs::create_dir_all(&kubelet).expect("mkdir");
    fs::write(
        kubelet.join("kubelet-client-2025-01-01-00-00-00.pem"),
        format!("{cert}{key}"),
    )
    .expect("write");
    std::os::unix::fs::symlink(
        "kubelet-client-2025-01-01-00-00-00.pem",
        kubelet.join("kubelet-client-current.pem"),
    )
    .expect("symlink");
    fs::write(kubelet.join("kubelet.crt"), &cert).expect("write");
    fs::write(pki.join("broken.crt"), "not a certificate\n").expect("write");

    let t = LocalTransport::new("master-2");
    let root = node.to_string_lossy().into_owned();
    let raw = scan::read_files(&t, &root).expect("read");
    for (path, content) in &raw {
        let text = String::from_utf8_lossy(content.as_ref().expect("readable"));
        assert!(
            !text.contains("PRIVATE KEY"),
            "{path}: a private key left the host"
        );
        assert!(
            !text.contains("client-key-data"),
            "{path}: a client key left the host"
        );
        assert!(
            path.starts_with("/etc/kubernetes/") || path.starts_with("/var/lib/kubelet/pki/"),
            "{path}"
        );
    }
    // The .key files and the rotated file behind the symlink are not read on their own.
    assert!(
        raw.iter()
            .all(|(p, _)| !p.ends_with(".key") && !p.contains("2025")),
        "{:?}",
        raw.iter().map(|r| &r.0).collect::<Vec<_>>()
    );

    let found = scan::scan(&t, &root).expect("scan");
    for path in [
        "/var/lib/kubelet/pki/kubelet-client-current.pem",
        "/var/lib/kubelet/pki/kubelet.crt",
    ] {
        let c = find(&found, path, None)
            .cert
            .as_ref()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(c.subject, "kube-apiserver", "{path}");
    }
    let broken = find(&found, "/etc/kubernetes/pki/broken.crt", None);
    assert!(broken.cert.is_err(), "reported, not a crash");
    // Sorted by path.
    let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
}
