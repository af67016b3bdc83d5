//! The client against a real etcd: Debian's `/usr/bin/etcd` (3.4.x), three members on
//! 127.0.0.21-23 started from the files kubeha renders (as `crates/render/tests/real_etcd.rs`
//! does, on other addresses so both can run at once), certificates from
//! `kubeha_pki::issue_in_memory`. A fourth member on 127.0.0.24 joins as a learner with the
//! `--initial-cluster` that `membership::plan_add` computes and is promoted once caught up.
//! Then snapshot (trailer and `etcdctl snapshot status`), defragmentation, and the quorum
//! guard on a cluster with a member killed. Every process and temp dir is removed on every
//! exit path by [`Cluster`]'s `Drop`; every wait is bounded. Only 127.0.0.0/8 is contacted.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Write,
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use kubeha_etcd::{
    Client, EtcdError, Member, TlsMaterial,
    membership::{self, AddPlan},
    snapshot,
};
use kubeha_pki::{CaId, LeafId, LeafKind};
use kubeha_render::{Ctx, HostFile, etcd};
use kubeha_spec::{Node, Spec};

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";
const WAIT: Duration = Duration::from_secs(30);

/// Validation refuses loopback node addresses, so the file uses 198.18.0.x (never
/// contacted) and [`spec`] moves the members to 127.0.0.21-24 afterwards. etcd-d is the
/// member added later; the first three start without it.
const SPEC: &str = r#"
name: real-cluster
kubernetesVersion: v1.34.2
etcdVersion: 3.4.23
etcd: { binary: /usr/bin/etcd }
topology: external
networking:
  nodeCidr: 198.18.0.0/24
  podCidr: 10.244.0.0/16
  serviceCidr: 10.96.0.0/16
certificates:
  keyAlgorithm: ecdsa-p256
nodes:
  - { name: etcd-a, address: 198.18.0.21, roles: [etcd] }
  - { name: etcd-b, address: 198.18.0.22, roles: [etcd] }
  - { name: etcd-c, address: 198.18.0.23, roles: [etcd] }
  - { name: etcd-d, address: 198.18.0.24, roles: [etcd] }
  - { name: cp-1, address: 198.18.0.31, roles: [control-plane] }
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
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            out.push_str(&format!("--- {name} (last lines)\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn child(&mut self, name: &str) -> &mut Child {
        match self.members.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => c,
            None => panic!("{name} was never started"),
        }
    }

    fn kill(&mut self, name: &str) {
        let c = self.child(name);
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Polls `check` every 200 ms until it passes; panics with the logs after `limit`.
    fn wait<T>(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut() -> Result<T, String>,
    ) -> T {
        let start = Instant::now();
        loop {
            match check() {
                Ok(v) => {
                    eprintln!("  {what}: {:.2?}", start.elapsed());
                    return v;
                }
                Err(why) if start.elapsed() > limit => {
                    panic!("{what}: not within {limit:?}: {why}\n{}", self.logs())
                }
                Err(_) => thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

fn spec() -> Spec {
    let mut spec = match kubeha_spec::load_str(SPEC, Path::new("real-cluster.yaml")) {
        Ok(l) => l.spec,
        Err(e) => panic!("test spec does not load: {e:?}"),
    };
    for (node, last) in spec.nodes.iter_mut().zip([21u8, 22, 23, 24]) {
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

fn service_key<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in the unit:\n{unit}"))
}

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

fn flag<'a>(argv: &'a mut [String], flag: &str) -> &'a mut String {
    let prefix = format!("--{flag}=");
    argv.iter_mut()
        .find(|a| a.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in the rendered flags"))
}

/// Replaces `from` with `to` in the value of `--flag=`, insisting that it was there.
fn substitute(argv: &mut [String], name: &str, from: &str, to: &str) {
    let arg = flag(argv, name);
    assert!(arg.contains(from), "{arg} does not contain {from}");
    *arg = arg.replace(from, to);
}

fn set(argv: &mut [String], name: &str, value: &str) {
    *flag(argv, name) = format!("--{name}={value}");
}

fn assert_ports_free(members: &[&Node]) {
    for m in members {
        for port in [etcd::CLIENT_PORT, etcd::PEER_PORT, etcd::METRICS_PORT] {
            if let Err(e) = TcpListener::bind((m.address, port)) {
                panic!(
                    "{}:{port} is busy ({e}); this test needs ports 2379-2381 free on 127.0.0.21-24",
                    m.address
                );
            }
        }
    }
}

/// Starts one member from its rendered unit with `--initial-cluster` and its state set.
fn start(
    root: &Path,
    spec: &Spec,
    node: &Node,
    files: &[HostFile],
    initial_cluster: &str,
    state: &str,
) -> Child {
    let unit = &file(files, etcd::UNIT_PATH).content;
    let env_path = service_key(unit, "EnvironmentFile");
    let env_text = fs::read_to_string(root.join(env_path.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("{env_path}: {e}"));
    let env = parse_env(&env_text);
    let mut argv = expand(service_key(unit, "ExecStart"), &env);
    assert_eq!(argv[0], ETCD, "the unit runs spec.etcd.binary");
    assert_eq!(
        argv[1..],
        etcd::args(spec, node)[..],
        "the unit runs exactly the rendered flags"
    );

    let pki = root.join("etc/kubernetes/pki");
    for f in [
        "cert-file",
        "key-file",
        "peer-cert-file",
        "peer-key-file",
        "peer-trusted-ca-file",
        "trusted-ca-file",
    ] {
        substitute(&mut argv, f, "/etc/kubernetes/pki", &pki.to_string_lossy());
    }
    substitute(
        &mut argv,
        "data-dir",
        &spec.etcd.data_dir,
        &root.join("data").to_string_lossy(),
    );
    // One machine, several members: 127.0.0.1:2379/2381 can be bound once only.
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
    set(&mut argv, "initial-cluster", initial_cluster);
    set(&mut argv, "initial-cluster-state", state);

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

fn by_name<'a>(members: &'a [Member], name: &str) -> &'a Member {
    members
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no member {name} in {members:?}"))
}

/// Ok, or the refusal text when etcd's strict reconfiguration check says "unhealthy cluster"
/// (a member connected less than 5 s ago; nothing changed); panics on any other error.
fn retry_unhealthy<T>(what: &str, r: Result<T, EtcdError>) -> Result<T, String> {
    r.map_err(|e| {
        if e.is_unhealthy_cluster() {
            e.to_string()
        } else {
            panic!("{what}: {}", kubeha_etcd::error_chain(&e))
        }
    })
}

fn healthy_ids(client: &Client, members: &[Member]) -> BTreeSet<String> {
    members
        .iter()
        .filter(|m| client.member_health(m).healthy)
        .map(|m| m.id.clone())
        .collect()
}

#[test]
fn membership_snapshot_defrag_and_quorum_guard_on_a_real_cluster() {
    for tool in [ETCD, ETCDCTL] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: apt-get install etcd-server etcd-client"
        );
    }
    let t0 = Instant::now();
    let spec = spec();
    let nodes = spec.etcd_members();
    assert_eq!(nodes.len(), 4);
    assert_ports_free(&nodes);
    let (first3, newcomer) = (&nodes[..3], nodes[3]);

    let materials = kubeha_pki::issue_in_memory(&spec, time::OffsetDateTime::now_utc())
        .unwrap_or_else(|e| panic!("PKI: {e}"));
    let cx = Ctx::new(&spec, &materials);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut cluster = Cluster {
        members: vec![],
        dir,
    };
    let rendered: Vec<(&Node, Vec<HostFile>)> = nodes
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

    // The client authenticates as kubeha does: healthcheck-client of the first member.
    let ca = materials
        .ca(CaId::Etcd)
        .unwrap_or_else(|| panic!("no etcd CA"));
    let pair = materials
        .leaf(&LeafId::new(
            &nodes[0].name,
            LeafKind::EtcdHealthcheckClient,
        ))
        .unwrap_or_else(|| panic!("no healthcheck-client"));
    let tls = TlsMaterial {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: pair.cert_pem.clone(),
        key_pem: pair.key_pem.clone(),
    };
    let endpoints: Vec<String> = nodes.iter().map(|n| Spec::etcd_client_url(n)).collect();
    let client = Client::new(endpoints, &tls, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("client: {e}"));
    let peer = |n: &Node| Spec::etcd_peer_url(n);
    let cluster_peers: Vec<String> = nodes.iter().map(|n| peer(n)).collect();

    // 1. Three members, started together.
    eprintln!("timings:");
    let initial3 = first3
        .iter()
        .map(|n| format!("{}={}", n.name, peer(n)))
        .collect::<Vec<_>>()
        .join(",");
    for (node, files) in &rendered[..3] {
        let child = start(
            &cluster.root(&node.name),
            &spec,
            node,
            files,
            &initial3,
            "new",
        );
        cluster.members.push((node.name.clone(), child));
    }
    let leader = cluster.wait("3 members healthy with one leader", WAIT, || {
        let mut leaders = BTreeSet::new();
        for n in first3 {
            let e = Spec::etcd_client_url(n);
            let h = client.health(&e);
            if !h.healthy {
                return Err(format!("{e}: {}", h.error.unwrap_or_default()));
            }
            let s = client
                .status(&e)
                .map_err(|e| kubeha_etcd::error_chain(&e))?;
            leaders.insert(s.leader_id);
        }
        match leaders.len() {
            1 if !leaders.contains("0") => Ok(leaders.into_iter().next().unwrap_or_default()),
            _ => Err(format!("leaders {leaders:?}")),
        }
    });

    // 2. Member list and status.
    let members = client
        .member_list()
        .unwrap_or_else(|e| panic!("member list: {e}"));
    assert_eq!(members.len(), 3, "{members:?}");
    for n in first3 {
        let m = by_name(&members, &n.name);
        assert_eq!(m.peer_urls, vec![peer(n)]);
        assert_eq!(m.client_urls, vec![Spec::etcd_client_url(n)]);
        assert!(!m.is_learner);
        assert_eq!(
            m.id,
            format!(
                "{:x}",
                kubeha_etcd::parse_id(&m.id).unwrap_or_else(|e| panic!("{e}"))
            )
        );
    }
    let statuses: Vec<_> = first3
        .iter()
        .map(|n| {
            client
                .status(&Spec::etcd_client_url(n))
                .unwrap_or_else(|e| panic!("status: {e}"))
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| s.is_leader).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| s.leader_id == leader
            && s.version == "3.4.23"
            && s.revision >= 1
            && s.errors.is_empty()),
        "{statuses:?}"
    );
    let leader_index = statuses.iter().map(|s| s.raft_index).max();
    for (m, s) in members
        .iter()
        .map(|m| (m, statuses.iter().find(|s| s.member_id == m.id)))
    {
        assert!(s.is_some(), "no status for {}", m.id);
        assert_eq!(
            membership::flags(m, s, leader_index, &cluster_peers),
            vec![],
            "{m:?}"
        );
    }
    assert_eq!(
        client.alarms().unwrap_or_else(|e| panic!("alarms: {e}")),
        vec![]
    );

    // 3. 1000 keys in, 1000 keys out.
    let t = Instant::now();
    for i in 0..1000 {
        client
            .put(
                format!("/kubeha-test/key-{i:04}").as_bytes(),
                format!("value-{i}").as_bytes(),
            )
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
    }
    let put_took = t.elapsed();
    let t = Instant::now();
    let kvs = client
        .get_prefix(b"/kubeha-test/")
        .unwrap_or_else(|e| panic!("get_prefix: {e}"));
    eprintln!(
        "  1000 puts: {put_took:.2?}; get_prefix of 1000: {:.2?}",
        t.elapsed()
    );
    assert_eq!(kvs.len(), 1000);
    for (i, (k, v)) in kvs.iter().enumerate() {
        assert_eq!(k, format!("/kubeha-test/key-{i:04}").as_bytes());
        assert_eq!(v, format!("value-{i}").as_bytes());
    }

    // 4. Add etcd-d as a learner with the printed --initial-cluster.
    let peer_d = peer(newcomer);
    let AddPlan::Add { initial_cluster } =
        membership::plan_add(&members, &newcomer.name, &peer_d).unwrap_or_else(|e| panic!("{e}"))
    else {
        panic!("etcd-d should be a plain add")
    };
    assert_eq!(initial_cluster, format!("{initial3},etcd-d={peer_d}"));
    // etcd refuses changes until every member has been connected for 5 s ("unhealthy
    // cluster", its strict reconfiguration check); the refusal changes nothing, so retry.
    let added = cluster.wait("member add etcd-d as learner", WAIT, || {
        retry_unhealthy(
            "member add",
            client.member_add(std::slice::from_ref(&peer_d), true),
        )
    });
    assert!(
        added.is_learner && added.name.is_empty() && added.peer_urls == vec![peer_d.clone()],
        "{added:?}"
    );
    let members = client
        .member_list()
        .unwrap_or_else(|e| panic!("member list: {e}"));
    assert_eq!(members.len(), 4);
    let ghost = members
        .iter()
        .find(|m| m.id == added.id)
        .unwrap_or_else(|| panic!("added member not listed"));
    assert_eq!(
        membership::flags(ghost, None, leader_index, &cluster_peers),
        vec![membership::Flag::NeverStarted]
    );
    // Running `add` again finds it registered and prints the same flags.
    assert_eq!(
        membership::plan_add(&members, &newcomer.name, &peer_d),
        Ok(AddPlan::AlreadyAdded {
            id: added.id.clone(),
            is_learner: true,
            initial_cluster: initial_cluster.clone()
        })
    );
    // A learner that never started cannot be promoted; etcd says why.
    match client.member_promote(&added.id) {
        Err(e @ EtcdError::Http { status: 412, .. }) => assert!(e.is_learner_not_ready(), "{e}"),
        other => panic!("promote of an unstarted learner: {other:?}"),
    }

    let files_d = &rendered[3].1;
    let child = start(
        &cluster.root(&newcomer.name),
        &spec,
        newcomer,
        files_d,
        &initial_cluster,
        "existing",
    );
    cluster.members.push((newcomer.name.clone(), child));
    let endpoint_d = Spec::etcd_client_url(newcomer);
    cluster.wait("learner etcd-d started and caught up", WAIT, || {
        let ms = client.member_list().map_err(|e| e.to_string())?;
        let d = ms.iter().find(|m| m.id == added.id).ok_or("gone")?;
        if d.name != newcomer.name {
            return Err(format!("not started yet: {d:?}"));
        }
        let h = client.member_health(d);
        if !h.healthy {
            return Err(format!("learner health: {:?}", h.error));
        }
        let leader_s = client
            .status(&Spec::etcd_client_url(first3[0]))
            .map_err(|e| e.to_string())?;
        let s = client.status(&endpoint_d).map_err(|e| e.to_string())?;
        if !s.is_learner || !membership::caught_up(s.raft_index, leader_s.raft_index) {
            return Err(format!(
                "behind: {} of {}",
                s.raft_index, leader_s.raft_index
            ));
        }
        Ok(())
    });
    cluster.wait("promote etcd-d", WAIT, || {
        client
            .member_promote(&added.id)
            .map_err(|e| kubeha_etcd::error_chain(&e))
    });
    let members = client
        .member_list()
        .unwrap_or_else(|e| panic!("member list: {e}"));
    let d = by_name(&members, &newcomer.name);
    assert!(
        !d.is_learner && d.id == added.id && d.client_urls == vec![endpoint_d.clone()],
        "{d:?}"
    );
    cluster.wait("etcd-d serves linearizable reads as a voter", WAIT, || {
        let h = client.health(&endpoint_d);
        if h.healthy {
            Ok(())
        } else {
            Err(format!("{:?}", h.error))
        }
    });
    let kvs_d = client
        .with_endpoints(vec![endpoint_d.clone()])
        .get_prefix(b"/kubeha-test/")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kvs_d.len(), 1000, "the new member holds the data");

    // 5. Snapshot from the leader: trailer verified while streaming and again from the file.
    let leader_ep = first3
        .iter()
        .map(|n| Spec::etcd_client_url(n))
        .find(|e| client.status(e).is_ok_and(|s| s.is_leader))
        .unwrap_or_else(|| Spec::etcd_client_url(first3[0]));
    let before = client
        .status(&leader_ep)
        .unwrap_or_else(|e| panic!("status: {e}"));
    let snap_path = cluster.dir.path().join("snapshot.db");
    let t = Instant::now();
    let streamed = {
        let f = fs::File::create(&snap_path).unwrap_or_else(|e| panic!("{e}"));
        let mut w = std::io::BufWriter::new(f);
        let c = client
            .snapshot(&leader_ep, &mut w)
            .unwrap_or_else(|e| panic!("snapshot: {}", kubeha_etcd::error_chain(&e)));
        w.flush().unwrap_or_else(|e| panic!("{e}"));
        c
    };
    eprintln!("  snapshot of {} bytes: {:.2?}", streamed.size, t.elapsed());
    assert!(streamed.is_valid(), "{streamed:?}");
    let on_disk = snapshot::verify_file(&snap_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(on_disk, streamed);
    assert_eq!(
        on_disk.size,
        fs::metadata(&snap_path).map(|m| m.len()).unwrap_or(0)
    );
    assert!(on_disk.size > 1000 * 20, "{on_disk:?}");
    let out = Command::new(ETCDCTL)
        .env_clear()
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&snap_path)
        .output()
        .unwrap_or_else(|e| panic!("{ETCDCTL}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "etcdctl snapshot status failed:\n{text}"
    );
    let st: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(
        st["revision"].as_u64().unwrap_or(0) >= before.revision,
        "{text} vs revision {}",
        before.revision
    );
    assert!(st["totalKey"].as_u64().unwrap_or(0) >= 1000, "{text}");
    // A flipped byte is caught.
    let mut bytes = fs::read(&snap_path).unwrap_or_else(|e| panic!("{e}"));
    bytes[4096] ^= 0x55;
    let bad_path = cluster.dir.path().join("bad.db");
    fs::write(&bad_path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !snapshot::verify_file(&bad_path)
            .unwrap_or_else(|e| panic!("{e}"))
            .trailer_matches
    );

    // 6. Defragment every member, one at a time, healthy in between.
    for n in &nodes {
        let e = Spec::etcd_client_url(n);
        let size = client.status(&e).map(|s| s.db_size).unwrap_or(0);
        let t = Instant::now();
        client
            .with_timeout(Duration::from_secs(60))
            .defragment(&e)
            .unwrap_or_else(|err| panic!("defrag {e}: {err}"));
        let took = t.elapsed();
        cluster.wait(
            &format!(
                "{} healthy after defrag ({size} bytes before, defrag {took:.2?})",
                n.name
            ),
            WAIT,
            || {
                let h = client.health(&e);
                if h.healthy {
                    Ok(())
                } else {
                    Err(format!("{:?}", h.error))
                }
            },
        );
    }

    // 7. Degrade: kill etcd-c. The guard allows removing the added member (4 voters, 1 down)...
    cluster.kill("etcd-c");
    let members = client
        .member_list()
        .unwrap_or_else(|e| panic!("member list: {e}"));
    let healthy = cluster.wait("etcd-c seen unhealthy", WAIT, || {
        let h = healthy_ids(&client, &members);
        if h.len() == 3 {
            Ok(h)
        } else {
            Err(format!("healthy {h:?}"))
        }
    });
    let c = membership::check_removal(&members, &healthy, &added.id)
        .unwrap_or_else(|| panic!("etcd-d not found"));
    assert!(c.keeps_quorum, "{c}");
    assert_eq!(
        c.to_string(),
        "4 voting members, 1 unhealthy: removing etcd-d leaves 3 voters of which 2 healthy; quorum needs 2"
    );
    cluster.wait("member remove etcd-d", WAIT, || {
        retry_unhealthy("member remove", client.member_remove(&added.id))
    });
    let t = Instant::now();
    while !matches!(cluster.child("etcd-d").try_wait(), Ok(Some(_))) {
        assert!(
            t.elapsed() < WAIT,
            "removed etcd-d still runs after {WAIT:?}\n{}",
            cluster.logs()
        );
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("  removed etcd-d shut itself down: {:.2?}", t.elapsed());

    // ...and then refuses removing a healthy member, with the arithmetic.
    let members = client
        .member_list()
        .unwrap_or_else(|e| panic!("member list: {e}"));
    assert_eq!(members.len(), 3);
    // Removing etcd-d may have removed the leader: wait out the election.
    let healthy = cluster.wait("etcd-a and etcd-b healthy after the removal", WAIT, || {
        let h = healthy_ids(&client, &members);
        if h.len() == 2 {
            Ok(h)
        } else {
            Err(format!("healthy {h:?}"))
        }
    });
    let a = by_name(&members, "etcd-a");
    let refused = membership::check_removal(&members, &healthy, &a.id)
        .unwrap_or_else(|| panic!("etcd-a not found"));
    assert!(!refused.keeps_quorum);
    assert_eq!(
        refused.to_string(),
        "3 voting members, 1 unhealthy: removing etcd-a leaves 2 voters of which 1 healthy; quorum needs 2"
    );
    let dead = by_name(&members, "etcd-c");
    assert!(
        membership::check_removal(&members, &healthy, &dead.id)
            .unwrap_or_else(|| panic!("etcd-c"))
            .keeps_quorum
    );
    // The degraded cluster still takes writes.
    client
        .put(b"/kubeha-test/after", b"degraded")
        .unwrap_or_else(|e| panic!("put on 2 of 3: {e}"));
    eprintln!("  whole test: {:.2?}", t0.elapsed());
}
