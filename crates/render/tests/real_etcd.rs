//! A real three-member TLS etcd cluster, run from the very files kubeha renders.
//!
//! Three members on 127.0.0.11-13 (Linux routes all of 127/8 to `lo`), certificates from
//! `kubeha_pki::issue_in_memory`, each member's files written under a temp dir, and the etcd
//! release kubeha pairs with its default Kubernetes (built from the Go modules by
//! `scripts/upstream etcd`) started the way systemd would start the rendered unit: `ExecStart`
//! with `$VAR` expanded from the unit's `EnvironmentFile`. Only paths (the binary's, the
//! certificates', the data dir's and two loopback listeners, see [`start`]) are changed. Then
//! the same release's `etcdctl` must find every endpoint healthy and three started members,
//! and Debian's older `etcdctl` must list the same members. Only 127.0.0.0/8 is ever
//! contacted.

mod upstream;

use std::{
    collections::BTreeMap,
    fs,
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use kubeha_render::{Ctx, HostFile, etcd};
use kubeha_spec::{Node, Spec};

/// Debian's etcdctl (3.4): kubeha's lab and operators may well use an older client.
const DEBIAN_ETCDCTL: &str = "/usr/bin/etcdctl";
const WAIT: Duration = Duration::from_secs(20);

/// etcd's version and binary are left to the defaults: the release kubeadm pairs with
/// Kubernetes v1.34 (3.6, its renamed flags) at `/usr/local/bin/etcd`, which [`start`]
/// replaces with the built one. Validation rightly refuses loopback node addresses, so the
/// file uses 198.18.0.x (never contacted) and [`spec`] moves the etcd members to
/// 127.0.0.11-13 afterwards.
const SPEC: &str = r#"
name: real-etcd
kubernetesVersion: v1.34.2
topology: external
networking:
  nodeCidr: 198.18.0.0/24
  podCidr: 10.244.0.0/16
  serviceCidr: 10.96.0.0/16
certificates:
  keyAlgorithm: ecdsa-p256
nodes:
  - { name: etcd-a, address: 198.18.0.11, roles: [etcd] }
  - { name: etcd-b, address: 198.18.0.12, roles: [etcd] }
  - { name: etcd-c, address: 198.18.0.13, roles: [etcd] }
  - { name: cp-1, address: 198.18.0.21, roles: [control-plane] }
"#;

/// Kills every member and removes the temp dir on every exit path, panics included.
struct Cluster {
    members: Vec<(String, Child)>,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.members {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `dir` is removed when the field drops, after the processes are gone.
    }
}

impl Cluster {
    fn root(&self, node: &str) -> PathBuf {
        self.dir.path().join(node)
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.members {
            let log = fs::read_to_string(self.root(name).join("etcd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            out.push_str(&format!("--- {name} (last lines)\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Panics with the logs if a member has exited.
    fn assert_running(&mut self) {
        let mut dead = vec![];
        for (name, child) in &mut self.members {
            if let Ok(Some(status)) = child.try_wait() {
                dead.push(format!("{name} exited: {status}"));
            }
        }
        if !dead.is_empty() {
            panic!("{}\n{}", dead.join("\n"), self.logs());
        }
    }
}

fn spec() -> Spec {
    let mut spec = match kubeha_spec::load_str(SPEC, Path::new("real-etcd.yaml")) {
        Ok(l) => l.spec,
        Err(e) => panic!("test spec does not load: {e:?}"),
    };
    for (node, last) in spec.nodes.iter_mut().zip([11u8, 12, 13]) {
        assert!(node.roles.contains(&kubeha_spec::Role::Etcd));
        node.address = std::net::IpAddr::from([127, 0, 0, last]);
    }
    spec
}

fn file<'a>(files: &'a [HostFile], path: &str) -> &'a HostFile {
    files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} was not rendered"))
}

/// Writes a host's files below `root` with their rendered modes.
fn write_tree(root: &Path, files: &[HostFile]) {
    for f in files {
        let target = root.join(f.path.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
        }
        fs::write(&target, &f.content).unwrap_or_else(|e| panic!("write {target:?}: {e}"));
        fs::set_permissions(&target, fs::Permissions::from_mode(f.mode))
            .unwrap_or_else(|e| panic!("chmod {target:?}: {e}"));
    }
}

/// The `Key=value` lines of a unit's `[Service]` section.
fn service_key<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in the unit:\n{unit}"))
}

/// systemd's reading of an `EnvironmentFile`: `KEY=VALUE` lines, `#` comments.
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// systemd's expansion of `ExecStart`: `$VAR` splits into words, `${VAR}` stays one word.
fn expand(exec: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut argv = vec![];
    for word in exec.split_whitespace() {
        if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            argv.push(env.get(name).cloned().unwrap_or_default());
        } else if let Some(name) = word.strip_prefix('$') {
            let value = env
                .get(name)
                .unwrap_or_else(|| panic!("${name} is not set by the EnvironmentFile"));
            argv.extend(value.split_whitespace().map(str::to_string));
        } else {
            argv.push(word.to_string());
        }
    }
    argv
}

/// Replaces `from` with `to` in the value of `--flag=`, insisting that it was there.
fn substitute(argv: &mut [String], flag: &str, from: &str, to: &str) {
    let prefix = format!("--{flag}=");
    let arg = argv
        .iter_mut()
        .find(|a| a.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in the rendered flags"));
    assert!(arg.contains(from), "{arg} does not contain {from}");
    *arg = arg.replace(from, to);
}

fn assert_ports_free(members: &[&Node]) {
    for m in members {
        for port in [etcd::CLIENT_PORT, etcd::PEER_PORT, etcd::METRICS_PORT] {
            if let Err(e) = TcpListener::bind((m.address, port)) {
                panic!(
                    "{}:{port} is busy ({e}); this test needs ports 2379-2381 free on 127.0.0.11-13",
                    m.address
                );
            }
        }
    }
}

/// Starts one member from its rendered unit and env file, with the built `etcd`.
fn start(root: &Path, spec: &Spec, node: &Node, files: &[HostFile], etcd_bin: &Path) -> Child {
    let unit = &file(files, etcd::UNIT_PATH).content;
    let env_path = service_key(unit, "EnvironmentFile");
    // Read the env file back from the written tree, as systemd would from the host.
    let env_text = fs::read_to_string(root.join(env_path.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("{env_path}: {e}"));
    let env = parse_env(&env_text);
    let mut argv = expand(service_key(unit, "ExecStart"), &env);
    assert_eq!(argv[0], spec.etcd.binary, "the unit runs spec.etcd.binary");
    assert_eq!(
        argv[1..],
        etcd::args(spec, node)[..],
        "the unit runs exactly the rendered flags"
    );
    argv[0] = etcd_bin.to_string_lossy().into_owned();

    // Paths: the host's /etc/kubernetes/pki and data dir live under this member's root.
    let pki = root.join("etc/kubernetes/pki");
    for flag in [
        "cert-file",
        "key-file",
        "peer-cert-file",
        "peer-key-file",
        "peer-trusted-ca-file",
        "trusted-ca-file",
    ] {
        substitute(
            &mut argv,
            flag,
            "/etc/kubernetes/pki",
            &pki.to_string_lossy(),
        );
    }
    let data = root.join("data");
    substitute(
        &mut argv,
        "data-dir",
        &spec.etcd.data_dir,
        &data.to_string_lossy(),
    );
    // One machine, three members: 127.0.0.1:2379 and 127.0.0.1:2381 can be bound only once.
    // The client loopback listener is dropped (each member's own 127.0.0.x is loopback already)
    // and the metrics listener moves to the member's own address.
    substitute(
        &mut argv,
        "listen-client-urls",
        &format!("https://127.0.0.1:{},", etcd::CLIENT_PORT),
        "",
    );
    substitute(
        &mut argv,
        "listen-metrics-urls",
        "127.0.0.1",
        &node.address.to_string(),
    );

    let log = fs::File::create(root.join("etcd.log")).unwrap_or_else(|e| panic!("log file: {e}"));
    let log2 = log.try_clone().unwrap_or_else(|e| panic!("log file: {e}"));
    Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(&env)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", argv[0]))
}

fn etcdctl(tool: &Path, cluster: &Cluster, spec: &Spec, first: &str, args: &[&str]) -> Output {
    let pki = cluster.root(first).join("etc/kubernetes/pki");
    Command::new(tool)
        .env_clear()
        .arg(format!("--endpoints={}", spec.etcd_client_urls()))
        .arg(format!("--cacert={}", pki.join("etcd/ca.crt").display()))
        .arg(format!(
            "--cert={}",
            pki.join("etcd/healthcheck-client.crt").display()
        ))
        .arg(format!(
            "--key={}",
            pki.join("etcd/healthcheck-client.key").display()
        ))
        .args(["--dial-timeout=2s", "--command-timeout=3s"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `member list -w simple` as (name, status, peer URL, client URL) per member, sorted.
fn member_list(out: &Output) -> Vec<[String; 4]> {
    assert!(out.status.success(), "member list failed:\n{}", text(out));
    let list = String::from_utf8_lossy(&out.stdout);
    let mut rows: Vec<[String; 4]> = list
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(", ").collect();
            assert!(f.len() >= 5, "unexpected member line: {line}\n{list}");
            [f[2], f[1], f[3], f[4]].map(str::to_string)
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn three_member_cluster_from_rendered_files() {
    let etcd_bin = upstream::ETCD.binary("etcd");
    let etcdctl_bin = upstream::ETCD.binary("etcdctl");
    assert!(
        Path::new(DEBIAN_ETCDCTL).exists(),
        "{DEBIAN_ETCDCTL} is missing: apt-get install etcd-client (scripts/setup-debian)"
    );
    let spec = spec();
    // The defaults pick the built release and its flags (3.6 renamed the --experimental-*).
    assert_eq!(spec.etcd_version.to_string(), upstream::pin("ETCD"));
    let members = spec.etcd_members();
    assert_eq!(members.len(), 3);
    assert_ports_free(&members);

    let materials = kubeha_pki::issue_in_memory(&spec, time::OffsetDateTime::now_utc())
        .unwrap_or_else(|e| panic!("PKI: {e}"));
    let cx = Ctx::new(&spec, &materials);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut cluster = Cluster {
        members: vec![],
        dir,
    };

    let rendered: Vec<(&Node, Vec<HostFile>)> = members
        .iter()
        .map(|n| {
            (
                *n,
                etcd::files(cx, n).unwrap_or_else(|e| panic!("render {}: {e}", n.name)),
            )
        })
        .collect();
    for (node, files) in &rendered {
        write_tree(&cluster.root(&node.name), files);
    }
    for (node, files) in &rendered {
        let args = etcd::args(&spec, node);
        assert!(
            args.contains(&"--feature-gates=InitialCorruptCheck=true".to_string())
                && !args.iter().any(|a| a.starts_with("--experimental-")),
            "{args:?}"
        );
        let child = start(&cluster.root(&node.name), &spec, node, files, &etcd_bin);
        cluster.members.push((node.name.clone(), child));
    }

    // Every endpoint healthy, within a bounded wait.
    let first = members[0].name.clone();
    let deadline = Instant::now() + WAIT;
    let health = loop {
        cluster.assert_running();
        let out = etcdctl(
            &etcdctl_bin,
            &cluster,
            &spec,
            &first,
            &["endpoint", "health"],
        );
        let healthy = text(&out).matches("is healthy").count();
        if out.status.success() && healthy == 3 {
            break text(&out);
        }
        if Instant::now() > deadline {
            panic!(
                "etcd not healthy within {WAIT:?}:\n{}\n{}",
                text(&out),
                cluster.logs()
            );
        }
        thread::sleep(Duration::from_millis(300));
    };
    for m in &members {
        assert!(
            health.contains(&format!("{} is healthy", Spec::etcd_client_url(m))),
            "{health}"
        );
    }

    // Three started members, named and addressed as rendered.
    let list = member_list(&etcdctl(
        &etcdctl_bin,
        &cluster,
        &spec,
        &first,
        &["member", "list", "-w", "simple"],
    ));
    let mut expected: Vec<[String; 4]> = members
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                "started".to_string(),
                Spec::etcd_peer_url(m),
                Spec::etcd_client_url(m),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(list, expected);

    // Debian's 3.4 client sees the same cluster.
    let debian = member_list(&etcdctl(
        Path::new(DEBIAN_ETCDCTL),
        &cluster,
        &spec,
        &first,
        &["member", "list", "-w", "simple"],
    ));
    assert_eq!(debian, expected, "{DEBIAN_ETCDCTL} disagrees");
    cluster.assert_running();
}
