//! Helpers for the lab tests: a small lab cluster file per test, a guard that removes the lab
//! on every exit path, bounded `ssh`, and checks that nothing of a lab is left.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use kubeha_lab::{Lab, LabOptions, names};
use kubeha_spec::Spec;

/// Lab tests need root; without it they say so and pass (CI runs them as root).
pub fn root_or_skip(test: &str) -> bool {
    if kubeha_lab::is_root() {
        return true;
    }
    eprintln!("skipping {test}: the lab needs root");
    false
}

/// A lab of `nodes` hosts in `198.19.<octet>.0/24`, named `cluster`, with its key in `dir`.
pub fn lab_spec(cluster: &str, octet: u8, nodes: &[&str], dir: &Path) -> Spec {
    let key = dir.join("lab-key");
    let mut yaml = format!(
        "name: {cluster}\n\
         kubernetesVersion: v1.34.2\n\
         etcdVersion: 3.6.4\n\
         topology: stacked\n\
         controlPlaneEndpoint: 198.19.{octet}.11:6443\n\
         ssh: {{ user: root, key: {key} }}\n\
         networking: {{ nodeCidr: 198.19.{octet}.0/24, podCidr: 198.18.64.0/18, serviceCidr: 198.18.32.0/20 }}\n\
         etcd: {{ binary: /var/cache/kubeha/upstream/etcd-v3.6.4/bin/etcd }}\n\
         certificates: {{ keyAlgorithm: ecdsa-p256 }}\n\
         provisioning: {{ interface: eth0 }}\n\
         nodes:\n",
        key = key.display()
    );
    for (i, n) in nodes.iter().enumerate() {
        let roles = if i == 0 {
            "[control-plane, etcd]"
        } else {
            "[worker]"
        };
        yaml.push_str(&format!(
            "  - {{ name: {n}, address: 198.19.{octet}.{}, roles: {roles} }}\n",
            11 + i
        ));
    }
    kubeha_spec::load_str(&yaml, Path::new("lab-test.yaml"))
        .expect("test lab file is valid")
        .spec
}

/// Removes the lab when dropped (test end, failure, panic).
pub struct LabGuard {
    pub spec: Spec,
    pub opts: LabOptions,
}

impl LabGuard {
    /// Removes leftovers of an earlier (killed) run first.
    pub fn new(spec: Spec) -> LabGuard {
        let opts = LabOptions::default();
        Lab::down(&spec, &opts).expect("clean leftovers of an earlier run");
        LabGuard { spec, opts }
    }

    pub fn id(&self) -> String {
        kubeha_lab::lab_id(&self.spec.name)
    }

    pub fn ns(&self, node: &str) -> String {
        kubeha_lab::host_namespace(&self.spec, node)
    }

    pub fn key(&self) -> PathBuf {
        PathBuf::from(self.spec.nodes[0].ssh.key.clone().expect("key"))
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(e) = Lab::down(&self.spec, &self.opts) {
            eprintln!("lab down in guard failed: {e}");
        }
    }
}

/// Runs `cmd` inside the host `ns` and returns (exit code, stdout, stderr).
pub fn exec(ns: &str, argv: &[&str]) -> (i32, String, String) {
    let out = kubeha_lab::exec_in_timeout(ns, argv, Duration::from_secs(20)).expect("exec_in");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ssh root@addr command` with the lab key, a fresh known_hosts, batch mode, bounded.
pub fn ssh(key: &Path, known_hosts: &Path, addr: &str, command: &str) -> Output {
    let mut child = Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("root@{addr}"))
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ssh");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait ssh").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("ssh output")
}

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .expect("run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts nothing of lab `id` is left: namespaces, links, mounts, directories, processes.
pub fn assert_gone(id: &str, pids: &[u32]) {
    let netns = run(&["ip", "netns", "list"]);
    assert!(
        !netns.contains(&format!("khl-{id}-")),
        "namespaces left: {netns}"
    );
    let links = run(&["ip", "-o", "link", "show"]);
    assert!(!links.contains(&format!("khl{id}")), "links left: {links}");
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    let run_dir = names::run_dir(id);
    let data_dir = Path::new(names::DATA_ROOT).join(id);
    for dir in [&run_dir, &data_dir] {
        assert!(
            !mounts.contains(&dir.display().to_string()),
            "mounts left under {}: {mounts}",
            dir.display()
        );
        assert!(!dir.exists(), "directory left: {}", dir.display());
    }
    for pid in pids {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let zombie = state
            .as_deref()
            .and_then(|s| s.rsplit_once(") "))
            .is_some_and(|(_, r)| r.starts_with('Z'));
        assert!(
            state.is_none() || zombie,
            "process {pid} still runs: {state:?}"
        );
    }
    assert!(
        !Lab::discover(&LabOptions::default()).contains(&id.to_string()),
        "lab {id} still discoverable"
    );
}
