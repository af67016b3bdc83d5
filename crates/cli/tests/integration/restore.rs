//! Lab end to end for `kubeha etcd snapshot restore` and `kubeha certs renew` (needs root, as
//! CI has). Own cluster names and /24s (198.18.40-49.x); only those addresses are used.

use std::{
    path::PathBuf,
    process::Output,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::harness::Sandbox;

fn lab_spec(name: &str, net: u8) -> String {
    let mut nodes = String::new();
    for i in 1..=3 {
        nodes.push_str(&format!(
            "  - {{ name: etcd-{i}, address: 198.18.{net}.1{i}, roles: [etcd] }}\n"
        ));
    }
    nodes.push_str(&format!(
        "  - {{ name: lb-1, address: 198.18.{net}.101, roles: [lb], lbPriority: 101 }}\n"
    ));
    nodes.push_str(&format!(
        "  - {{ name: lb-2, address: 198.18.{net}.102, roles: [lb], lbPriority: 100 }}\n"
    ));
    nodes.push_str(&format!(
        "  - {{ name: cp-1, address: 198.18.{net}.21, roles: [control-plane] }}\n"
    ));
    format!(
        "name: {name}
kubernetesVersion: v1.34.2
etcdVersion: 3.4.23
topology: external
controlPlaneEndpoint: 198.18.{net}.100:6443
ssh: {{ user: root, key: lab-key }}
networking: {{ nodeCidr: 198.18.{net}.0/24, podCidr: 198.19.0.0/16, serviceCidr: 198.18.128.0/20 }}
loadBalancer: {{ vip: 198.18.{net}.100, interface: eth0, virtualRouterId: {net}, etcdPort: 2379 }}
etcd: {{ deployment: systemd, apiserverAccess: local-proxy, localProxy: systemd, binary: /usr/bin/etcd }}
certificates: {{ keyAlgorithm: ecdsa-p256 }}
nodes:
{nodes}"
    )
}

struct Lab {
    sb: Sandbox,
    file: PathBuf,
    spec: kubeha_spec::Spec,
}

impl Lab {
    fn up(name: &str, net: u8) -> Lab {
        let sb = Sandbox::new();
        let file = sb.write("cluster.yaml", &lab_spec(name, net));
        let spec = kubeha_spec::load(&file).expect("lab spec").spec;
        let _ = sb.kubeha().args(["lab", "down"]).arg(&file).output();
        let lab = Lab { sb, file, spec };
        let out = lab.kubeha(&["lab", "up"]);
        assert!(
            out.status.success(),
            "lab up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn kubeha(&self, args: &[&str]) -> Output {
        let mut c = self.sb.kubeha();
        c.arg("-f")
            .arg(&self.file)
            .args(args)
            .timeout(Duration::from_secs(240));
        c.output().expect("run kubeha")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubeha(args);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubeha {args:?}: {text}");
        text
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.kubeha(&a);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    fn sh(&self, node: &str, script: &str) -> Output {
        let ns = kubeha_lab::host_namespace(&self.spec, node);
        kubeha_lab::exec_in(&ns, &["sh", "-c", script]).expect("exec in lab host")
    }

    fn pki(&self) -> PathBuf {
        self.sb
            .path()
            .join(".kubeha")
            .join(&self.spec.name)
            .join("pki")
    }

    /// A client for every member with the healthcheck cert from the state dir.
    fn client(&self) -> kubeha_etcd::Client {
        let p = self.pki();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).expect("pki file");
        let tls = kubeha_etcd::TlsMaterial {
            ca_pem: read("etcd/ca.crt"),
            cert_pem: read("nodes/etcd-1/etcd/healthcheck-client.crt"),
            key_pem: read("nodes/etcd-1/etcd/healthcheck-client.key"),
        };
        let eps = self
            .spec
            .etcd_members()
            .iter()
            .map(|n| kubeha_spec::Spec::etcd_client_url(n))
            .collect();
        kubeha_etcd::Client::new(eps, &tls, Duration::from_secs(2)).expect("client")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self
            .sb
            .kubeha()
            .args(["lab", "down"])
            .arg(&self.file)
            .output();
    }
}

#[test]
fn restore_rebuilds_every_member_from_a_snapshot_and_up_keeps_it() {
    let t0 = Instant::now();
    let lab = Lab::up("e2e-restore", 40);
    assert_eq!(lab.json(&["up"])["changed"], true);
    let c = lab.client();
    for i in 0..1000 {
        c.put(
            format!("/restore/{i:04}").as_bytes(),
            format!("v{i}").as_bytes(),
        )
        .expect("put");
    }
    let snap = lab.sb.path().join("snap.db");
    lab.ok(&["etcd", "snapshot", "save", snap.to_str().expect("path")]);
    // Without --yes and without a terminal: refused, nothing touched.
    let out = lab.kubeha(&["etcd", "snapshot", "restore", snap.to_str().expect("path")]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Disaster: every member's process and data are gone.
    for n in ["etcd-1", "etcd-2", "etcd-3"] {
        let o = lab.sh(n, "kill -9 $(cat /run/kubeha/etcd.service.pid) 2>/dev/null; rm -rf /var/lib/etcd; echo ok");
        assert!(o.status.success(), "{o:?}");
    }
    let t1 = Instant::now();
    let text = lab.ok(&[
        "etcd",
        "snapshot",
        "restore",
        "--yes",
        snap.to_str().expect("path"),
    ]);
    eprintln!("restore took {:.1?}: {text}", t1.elapsed());
    let kvs = lab.client().get_prefix(b"/restore/").expect("get");
    assert_eq!(kvs.len(), 1000);
    let st = lab.json(&["status"]);
    assert_eq!(st["etcd"]["healthy"], 3, "{st:#}");
    assert_eq!(st["etcd"]["quorum"], true);
    // The rendered flags carry the new token: `up` changes nothing and keeps the data.
    let again = lab.json(&["up"]);
    assert_eq!(again["changed"], false, "{again:#}");
    assert_eq!(
        lab.client().get_prefix(b"/restore/").expect("get").len(),
        1000
    );
    let env = lab.sh("etcd-2", "cat /etc/etcd/etcd.env");
    assert!(
        String::from_utf8_lossy(&env.stdout)
            .contains("initial-cluster-token=e2e-restore-etcd-restored-"),
        "{env:?}"
    );
    eprintln!("restore test total {:.1?}", t0.elapsed());
}

#[test]
fn certs_renew_all_rolls_etcd_without_losing_quorum_and_up_is_a_noop() {
    let t0 = Instant::now();
    let lab = Lab::up("e2e-renew", 41);
    assert_eq!(lab.json(&["up"])["changed"], true);
    let serial = |n: &str| {
        let o = lab.sh(
            n,
            "openssl x509 -noout -serial -in /etc/kubernetes/pki/etcd/server.crt",
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let before: Vec<String> = ["etcd-1", "etcd-2", "etcd-3"]
        .iter()
        .map(|n| serial(n))
        .collect();
    let apiserver_before = lab
        .sh(
            "cp-1",
            "openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver-etcd-client.crt",
        )
        .stdout;
    let stop = Arc::new(AtomicBool::new(false));
    let (polls, lost) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let c = lab.client();
    let poller = {
        let (stop, polls, lost) = (stop.clone(), polls.clone(), lost.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                // A failure: no member answers healthy (etcd through a healthy member failed),
                // or fewer than a quorum do.
                let healthy = c.endpoints().iter().filter(|e| c.health(e).healthy).count();
                polls.fetch_add(1, Ordering::SeqCst);
                if healthy < 2 {
                    lost.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let t1 = Instant::now();
    let text = lab.ok(&["certs", "renew", "--all"]);
    let took = t1.elapsed();
    stop.store(true, Ordering::SeqCst);
    poller.join().expect("poller");
    eprintln!(
        "renew took {took:.1?}, {} polls: {text}",
        polls.load(Ordering::SeqCst)
    );
    assert!(polls.load(Ordering::SeqCst) > 5);
    assert_eq!(
        lost.load(Ordering::SeqCst),
        0,
        "etcd lost quorum during the renewal"
    );
    for (n, b) in ["etcd-1", "etcd-2", "etcd-3"].iter().zip(&before) {
        assert_ne!(&serial(n), b, "{n}: serial unchanged");
    }
    assert_ne!(
        lab.sh(
            "cp-1",
            "openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver-etcd-client.crt"
        )
        .stdout,
        apiserver_before
    );
    let again = lab.json(&["up"]);
    assert_eq!(again["changed"], false, "{again:#}");
    let st = lab.json(&["status"]);
    assert_eq!(st["etcd"]["healthy"], 3, "{st:#}");
    eprintln!("renew test total {:.1?}", t0.elapsed());
}
