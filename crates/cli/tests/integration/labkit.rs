//! The lab test kit: cluster files on a /24 of 198.18.0.0/15, a lab brought up for one test
//! and torn down when it ends (also on panic), and the tools the lab tests share.
//!
//! Network rule: tests only talk to the 198.18.x.y addresses of namespaces they made.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use crate::harness::Sandbox;

/// The lab's etcd: the 3.6.4 build `scripts/upstream etcd` makes, through its stable link
/// (lab hosts see /var/cache as the machine does).
pub const LAB_ETCD: &str = "/var/cache/kubeha/upstream/etcd-v3.6.4/bin/etcd";

/// A lab cluster: etcd members `etcd-<i>` for each `i` of `etcds`, 2 LBs with a VIP, `cps`
/// control planes and `workers` workers, all on 198.18.`net`.0/24.
pub fn cluster_text(name: &str, net: u8, etcds: &[u8], cps: usize, workers: usize) -> String {
    let mut nodes = String::new();
    for i in etcds {
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
    for i in 1..=cps {
        nodes.push_str(&format!(
            "  - {{ name: cp-{i}, address: 198.18.{net}.2{i}, roles: [control-plane] }}\n"
        ));
    }
    for i in 1..=workers {
        nodes.push_str(&format!(
            "  - {{ name: wn-{i}, address: 198.18.{net}.3{i}, roles: [worker] }}\n"
        ));
    }
    format!(
        "name: {name}
kubernetesVersion: v1.34.2
etcdVersion: 3.6.4
topology: external
controlPlaneEndpoint: 198.18.{net}.100:6443
ssh: {{ user: root, key: lab-key }}
networking: {{ nodeCidr: 198.18.{net}.0/24, podCidr: 198.19.0.0/16, serviceCidr: 198.18.128.0/20 }}
loadBalancer: {{ vip: 198.18.{net}.100, interface: eth0, virtualRouterId: {net}, etcdPort: 2379 }}
etcd: {{ deployment: systemd, apiserverAccess: local-proxy, localProxy: systemd, binary: {LAB_ETCD} }}
certificates: {{ keyAlgorithm: ecdsa-p256 }}
nodes:
{nodes}"
    )
}

/// The smallest lab `kubeha up` converges: one etcd member and one control plane (no LBs;
/// the endpoint is the control plane), on 198.18.`net`.0/24.
pub fn two_host_text(name: &str, net: u8) -> String {
    format!(
        "name: {name}
kubernetesVersion: v1.34.2
etcdVersion: 3.6.4
topology: external
controlPlaneEndpoint: 198.18.{net}.21:6443
ssh: {{ user: root, key: lab-key }}
networking: {{ nodeCidr: 198.18.{net}.0/24, podCidr: 198.19.0.0/16, serviceCidr: 198.18.128.0/20 }}
etcd: {{ deployment: systemd, apiserverAccess: local-proxy, localProxy: systemd, binary: {LAB_ETCD} }}
certificates: {{ keyAlgorithm: ecdsa-p256 }}
nodes:
  - {{ name: etcd-1, address: 198.18.{net}.11, roles: [etcd] }}
  - {{ name: cp-1, address: 198.18.{net}.21, roles: [control-plane] }}
"
    )
}

/// A lab brought up for one test and torn down when it ends, also on panic.
pub struct Lab {
    pub sb: Sandbox,
    pub file: PathBuf,
    pub spec: kubeha_spec::Spec,
}

impl Lab {
    /// Three etcd members, two LBs, `cps` control planes, `workers` workers.
    pub fn up(name: &str, net: u8, cps: usize, workers: usize) -> Lab {
        Lab::up_text(&cluster_text(name, net, &[1, 2, 3], cps, workers))
    }

    /// A lab of the cluster file `text`.
    pub fn up_text(text: &str) -> Lab {
        assert!(
            Path::new(LAB_ETCD).is_file(),
            "{LAB_ETCD} is missing: run `scripts/upstream etcd` first"
        );
        let sb = Sandbox::new();
        let file = sb.write("cluster.yaml", text);
        let spec = kubeha_spec::load(&file).expect("lab spec").spec;
        // Leftovers of a killed earlier run of this test go first.
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

    pub fn kubeha(&self, args: &[&str]) -> Output {
        let mut c = self.sb.kubeha();
        c.arg("-f")
            .arg(&self.file)
            .args(args)
            .timeout(Duration::from_secs(240));
        c.output().expect("run kubeha")
    }

    pub fn json(&self, args: &[&str]) -> (bool, serde_json::Value) {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.kubeha(&a);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "{args:?}: not JSON: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), v)
    }

    pub fn up_ok(&self) -> serde_json::Value {
        let (ok, v) = self.json(&["up"]);
        assert!(ok, "kubeha up failed: {v:#}");
        v
    }

    pub fn ns(&self, node: &str) -> String {
        kubeha_lab::host_namespace(&self.spec, node)
    }

    /// Runs a shell command inside a lab host.
    pub fn sh(&self, node: &str, script: &str) -> Output {
        kubeha_lab::exec_in(&self.ns(node), &["sh", "-c", script]).expect("exec in lab host")
    }

    pub fn pki(&self) -> PathBuf {
        self.sb
            .path()
            .join(".kubeha")
            .join(&self.spec.name)
            .join("pki")
    }

    pub fn status(&self) -> serde_json::Value {
        self.json(&["status"]).1
    }
}

impl Lab {
    /// Runs kubeha, asserts success, returns stdout and stderr.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubeha(args);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubeha {args:?}: {text}");
        text
    }
    /// Runs kubeha with `-o json` and asserts success.
    pub fn json_ok(&self, args: &[&str]) -> serde_json::Value {
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
    pub fn client(&self) -> kubeha_etcd::Client {
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

/// Debian's own etcdctl (3.4, a v3 API client older than the lab's 3.6 server) with kubeha's
/// certificates: an independent client agrees with kubeha.
pub fn etcdctl(pki: &Path, endpoints: &str, args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--cacert={}", pki.join("etcd/ca.crt").display()))
        .arg(format!(
            "--cert={}",
            pki.join("nodes/etcd-1/etcd/healthcheck-client.crt")
                .display()
        ))
        .arg(format!(
            "--key={}",
            pki.join("nodes/etcd-1/etcd/healthcheck-client.key")
                .display()
        ))
        .arg("--command-timeout=5s")
        .args(args)
        .output()
        .expect("etcdctl")
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
