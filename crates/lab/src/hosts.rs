//! Bringing lab hosts up, checking them and tearing them down.
//!
//! One host = a network namespace (`eth0` on the lab bridge, `lo`), a persisted mount
//! namespace (overlay `/etc` and `/var/lib` over the machine's, a fresh tmpfs `/run`, the
//! namespace's own sysfs), a UTS namespace (host name = node name) and a detached `sshd`.
//! Everything else (binaries, `/tmp`, `/home`) is the machine's.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::{IpNet, Ipv4Net};
use kubeha_spec::{EndpointHost, Spec};
use serde::{Deserialize, Serialize};

use crate::{
    LabError, cmd, keys,
    names::{self, lab_range},
    sys,
};

/// PATH given to the processes the lab starts.
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The sshd every host runs (Debian's openssh-server).
pub const SSHD: &str = "/usr/sbin/sshd";
/// The host's sshd configuration, in its private `/etc`.
pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
/// The public keys every host authorises, in its private `/etc`.
pub const AUTHORIZED_KEYS: &str = "/etc/ssh/kubeha-lab/authorized_keys";

/// Prints one progress line (node, message).
pub type Progress = dyn Fn(&str, &str) + Send + Sync;

/// How to build a lab.
#[derive(Clone)]
pub struct LabOptions {
    /// Root of the hosts' private `/etc` and `/var/lib` layers (`<root>/<lab id>/<node>/`).
    pub data_root: PathBuf,
    /// How long each host's sshd may take to answer.
    pub sshd_timeout: Duration,
    /// Called with progress lines as (node, message); node `-` is the lab as a whole.
    /// `None` is silent.
    pub progress: Option<Arc<Progress>>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            data_root: PathBuf::from(names::DATA_ROOT),
            sshd_timeout: Duration::from_secs(5),
            progress: None,
        }
    }
}

impl std::fmt::Debug for LabOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabOptions")
            .field("data_root", &self.data_root)
            .field("sshd_timeout", &self.sshd_timeout)
            .finish_non_exhaustive()
    }
}

impl LabOptions {
    fn say(&self, node: &str, msg: &str) {
        if let Some(p) = &self.progress {
            p(node, msg);
        }
    }
}

/// A lab as it is (after `up`, or as `status` found it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabReport {
    pub lab_id: String,
    pub cluster: String,
    pub bridge: String,
    /// The bridge's address with the prefix, e.g. `198.18.0.1/24`.
    pub gateway: String,
    pub data_dir: PathBuf,
    pub hosts: Vec<HostReport>,
}

/// One lab host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostReport {
    pub node: String,
    pub namespace: String,
    pub address: Ipv4Addr,
    pub ssh_port: u16,
    /// The network namespace exists.
    pub exists: bool,
    /// sshd answered with its banner.
    pub sshd: bool,
}

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownReport {
    pub lab_id: String,
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    pub processes: usize,
    pub mounts: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
}

/// Entry points; see the crate docs.
pub struct Lab;

impl Lab {
    /// Creates (or checks and repairs) one host per node of `spec`. Needs root. Idempotent:
    /// with the lab already up it only checks each host (sshd answering) and succeeds.
    pub fn up(spec: &Spec, opts: &LabOptions) -> Result<LabReport, LabError> {
        if !sys::is_root() {
            return Err(LabError::NotRoot { action: "up" });
        }
        check_spec(spec)?;
        let plan = Plan::new(spec, opts)?;
        check_tools()?;
        check_users(&plan)?;
        check_routes(&plan)?;
        let keys = ensure_user_keys(&plan, opts)?;
        ensure_host_keys(&plan, opts)?;

        make_dir(&plan.data_dir, 0o700)?;
        ensure_data_fs(&plan.data_dir)?;
        ensure_run_dir(&plan.run_dir)?;
        ensure_bridge(&plan, opts)?;
        let wanted: BTreeSet<&str> = plan.hosts.iter().map(|h| h.ns.as_str()).collect();
        for ns in sys::netns_list().into_iter().filter(|n| {
            names::parse_namespace(n).is_some_and(|(i, _)| i == plan.id)
                && !wanted.contains(n.as_str())
        }) {
            opts.say(
                "-",
                &format!("{ns} is not in the lab file any more; `kubeha lab down` removes it"),
            );
        }
        let mut started = Vec::new();
        for h in &plan.hosts {
            let pubkey = keys.get(&h.key).map(String::as_str).unwrap_or_default();
            if ensure_host(&plan, h, pubkey, opts)? {
                started.push(h);
            }
        }
        // Every sshd gets the full timeout, counted from when the last one was started.
        let deadline = Instant::now() + opts.sshd_timeout;
        for h in &plan.hosts {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(500));
            if !sys::wait_until(left, Duration::from_millis(50), || {
                sshd_answers(h.address, h.port, Duration::from_millis(300))
            }) {
                return Err(LabError::SshdNotAnswering {
                    node: h.node.clone(),
                    namespace: h.ns.clone(),
                    address: format!("{}:{}", h.address, h.port),
                    seconds: opts.sshd_timeout.as_secs(),
                    log: log_tail(&plan.host_dir(h).join("sshd.log"), 10),
                });
            }
            if started.iter().any(|s| s.node == h.node) {
                opts.say(
                    &h.node,
                    &format!("sshd answers on {}:{}", h.address, h.port),
                );
            }
        }
        let report = plan.report(&vec![(true, true); plan.hosts.len()]);
        write_state(&plan, &report)?;
        Ok(report)
    }

    /// Which hosts of `spec`'s lab exist and whether their sshd answers. Does not need root.
    pub fn status(spec: &Spec, opts: &LabOptions) -> Result<LabReport, LabError> {
        let plan = Plan::new(spec, opts)?;
        let existing: BTreeSet<String> = sys::netns_list().into_iter().collect();
        // Probe every host at once: a dead host costs its 1 s timeout, not 1 s per host.
        let states: Vec<(bool, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = plan
                .hosts
                .iter()
                .map(|h| {
                    let exists = existing.contains(&h.ns);
                    s.spawn(move || {
                        (
                            exists,
                            exists && sshd_answers(h.address, h.port, Duration::from_secs(1)),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or((false, false)))
                .collect()
        });
        Ok(plan.report(&states))
    }

    /// Removes `spec`'s lab: every process in its namespaces, the namespaces, links, mounts
    /// and directories. Works from names alone (no state file needed) and is idempotent.
    pub fn down(spec: &Spec, opts: &LabOptions) -> Result<DownReport, LabError> {
        Lab::down_id(&names::lab_id(&spec.name), opts)
    }

    /// [`Lab::down`] for a lab id.
    pub fn down_id(lab_id: &str, opts: &LabOptions) -> Result<DownReport, LabError> {
        if !sys::is_root() {
            return Err(LabError::NotRoot { action: "down" });
        }
        if !names::is_lab_id(lab_id) {
            return Err(LabError::Invalid {
                message: format!("'{lab_id}' is not a lab id (6 hex digits)"),
            });
        }
        down_lab(lab_id, opts)
    }

    /// Removes every kubeha lab found on this machine (by name prefix).
    pub fn down_all(opts: &LabOptions) -> Result<Vec<DownReport>, LabError> {
        if !sys::is_root() {
            return Err(LabError::NotRoot {
                action: "down --all",
            });
        }
        discover(opts).iter().map(|id| down_lab(id, opts)).collect()
    }

    /// Lab ids with anything left on this machine (namespaces, links, dirs, mounts).
    pub fn discover(opts: &LabOptions) -> Vec<String> {
        discover(opts).into_iter().collect()
    }
}

/// The network namespace of `node`'s lab host.
pub fn host_namespace(spec: &Spec, node: &str) -> String {
    names::namespace(&names::lab_id(&spec.name), node)
}

/// Runs `argv` inside a lab host (its network, mount and UTS namespaces), as root, with a
/// 60 s limit. The caller checks the exit status.
pub fn exec_in(namespace: &str, argv: &[&str]) -> Result<std::process::Output, LabError> {
    exec_in_timeout(namespace, argv, Duration::from_secs(60))
}

/// [`exec_in`] with an explicit time limit.
pub fn exec_in_timeout(
    namespace: &str,
    argv: &[&str],
    timeout: Duration,
) -> Result<std::process::Output, LabError> {
    let full = enter_argv(namespace)?;
    let mut all: Vec<&str> = full.iter().map(String::as_str).collect();
    all.extend_from_slice(argv);
    cmd::output(&all, timeout, &format!("run in {namespace}"))
}

/// `nsenter … --` entering a host's namespaces.
fn enter_argv(namespace: &str) -> Result<Vec<String>, LabError> {
    let (id, node) = names::parse_namespace(namespace).ok_or_else(|| LabError::NotALabHost {
        namespace: namespace.to_string(),
    })?;
    let net = names::net_handle(namespace);
    let mnt = names::mnt_handle(id, node);
    let uts = names::uts_handle(id, node);
    for (kind, p) in [("net", &net), ("mnt", &mnt), ("uts", &uts)] {
        if sys::ns_of_handle(kind, p).is_none() {
            return Err(LabError::HostDown {
                namespace: namespace.to_string(),
                missing: p.clone(),
            });
        }
    }
    Ok(vec![
        "nsenter".into(),
        format!("--net={}", net.display()),
        format!("--mount={}", mnt.display()),
        format!("--uts={}", uts.display()),
        "--".into(),
    ])
}

/// Checks the lab's network rule: the node subnet, every node address, the VIP, an IP
/// endpoint and MetalLB pools lie inside 198.18.0.0/15 (the endpoint may be loopback);
/// every node has an SSH key. Pure.
pub fn check_spec(spec: &Spec) -> Result<(), LabError> {
    let range = lab_range();
    let allowed = "198.18.0.0/15";
    let outside = |what: String, value: String| LabError::AddressOutsideLab {
        what,
        value,
        allowed,
    };
    let subnet = match spec.networking.node_cidr {
        IpNet::V4(n) if range.contains(&n) => n.trunc(),
        other => {
            return Err(outside(
                "node subnet networking.nodeCidr".into(),
                other.to_string(),
            ));
        }
    };
    if subnet.prefix_len() > 30 {
        return Err(LabError::Invalid {
            message: format!(
                "node subnet {subnet} is too small for a lab (use /30 or larger, e.g. /24)"
            ),
        });
    }
    let gateway = first_host(subnet);
    for n in &spec.nodes {
        let a = match n.address {
            IpAddr::V4(a) if range.contains(&a) => a,
            other => {
                return Err(outside(
                    format!("node {} address", n.name),
                    other.to_string(),
                ));
            }
        };
        if !subnet.contains(&a) || a == subnet.network() || a == subnet.broadcast() {
            return Err(LabError::Invalid {
                message: format!(
                    "node {} address {a} is not a host address of the node subnet {subnet}",
                    n.name
                ),
            });
        }
        if a == gateway {
            return Err(LabError::Invalid {
                message: format!(
                    "node {} address {a} is the lab bridge's address (the subnet's first address); use another",
                    n.name
                ),
            });
        }
        if n.ssh.key.as_deref().is_none_or(str::is_empty) {
            return Err(LabError::Invalid {
                message: format!(
                    "node {} has no ssh.key: the lab authorises that key on its host (set ssh.key, e.g. .kubeha/lab-key)",
                    n.name
                ),
            });
        }
    }
    if let Some(lb) = &spec.load_balancer {
        match lb.vip {
            IpAddr::V4(v) if range.contains(&v) && v != gateway => {}
            other => return Err(outside("loadBalancer.vip".into(), other.to_string())),
        }
    }
    if let EndpointHost::Ip(ip) = spec.endpoint.host {
        let ok = ip.is_loopback() || matches!(ip, IpAddr::V4(a) if range.contains(&a));
        if !ok {
            return Err(outside("controlPlaneEndpoint".into(), ip.to_string()));
        }
    }
    if let Some(m) = &spec.metallb {
        for pool in &m.addresses {
            if !pool_inside(pool, range) {
                return Err(outside("metallb pool".into(), pool.clone()));
            }
        }
    }
    Ok(())
}

fn pool_inside(pool: &str, range: Ipv4Net) -> bool {
    if let Ok(net) = pool.trim().parse::<Ipv4Net>() {
        return range.contains(&net);
    }
    let Some((a, b)) = pool.split_once('-') else {
        return false;
    };
    let (Ok(a), Ok(b)) = (a.trim().parse::<Ipv4Addr>(), b.trim().parse::<Ipv4Addr>()) else {
        return false;
    };
    range.contains(&a) && range.contains(&b)
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).saturating_add(1))
}

/// Everything derived from the spec, before touching the machine.
struct Plan {
    id: String,
    cluster: String,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    bridge: String,
    run_dir: PathBuf,
    data_dir: PathBuf,
    hosts: Vec<HostPlan>,
    etc_hosts: String,
}

struct HostPlan {
    node: String,
    ns: String,
    address: Ipv4Addr,
    port: u16,
    veth: String,
    peer: String,
    user: String,
    key: PathBuf,
    /// Where this host's sshd keys are kept between labs (lab state, next to `key`).
    host_keys: PathBuf,
}

impl Plan {
    fn new(spec: &Spec, opts: &LabOptions) -> Result<Plan, LabError> {
        let id = names::lab_id(&spec.name);
        let subnet = match spec.networking.node_cidr {
            IpNet::V4(n) => n.trunc(),
            IpNet::V6(n) => {
                return Err(LabError::AddressOutsideLab {
                    what: "node subnet networking.nodeCidr".into(),
                    value: n.to_string(),
                    allowed: "198.18.0.0/15",
                });
            }
        };
        let data_root = &opts.data_root;
        let root_str = data_root.to_string_lossy();
        if !data_root.is_absolute() || root_str.contains([',', ':', ' ', '\n', '\t', '\\']) {
            return Err(LabError::Invalid {
                message: format!(
                    "lab data root {} must be an absolute path without ',', ':', '\\' or spaces (overlayfs options)",
                    data_root.display()
                ),
            });
        }
        let mut hosts = Vec::new();
        let mut veths: BTreeMap<String, String> = BTreeMap::new();
        let mut etc_hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n\n# kubeha lab hosts\n",
        );
        for n in &spec.nodes {
            let IpAddr::V4(address) = n.address else {
                return Err(LabError::AddressOutsideLab {
                    what: format!("node {} address", n.name),
                    value: n.address.to_string(),
                    allowed: "198.18.0.0/15",
                });
            };
            let veth = names::veth(&id, &n.name);
            if let Some(other) = veths.insert(veth.clone(), n.name.clone()) {
                return Err(LabError::Invalid {
                    message: format!(
                        "nodes {other} and {} hash to the same link name {veth}; rename one of them",
                        n.name
                    ),
                });
            }
            etc_hosts.push_str(&format!("{address}\t{} {}\n", spec.fqdn(n), n.name));
            let key = expand_key(n.ssh.key.as_deref().unwrap_or_default());
            hosts.push(HostPlan {
                node: n.name.clone(),
                ns: names::namespace(&id, &n.name),
                address,
                port: n.ssh.port,
                peer: names::veth_peer(&id, &n.name),
                veth,
                user: n.ssh.user.clone(),
                host_keys: keys::host_keys_dir(&key, &spec.name, &n.name),
                key,
            });
        }
        Ok(Plan {
            bridge: names::bridge(&id),
            run_dir: names::run_dir(&id),
            data_dir: data_root.join(&id),
            gateway: first_host(subnet),
            cluster: spec.name.clone(),
            subnet,
            id,
            hosts,
            etc_hosts,
        })
    }

    fn host_dir(&self, h: &HostPlan) -> PathBuf {
        self.data_dir.join(&h.node)
    }

    /// The report, with (namespace exists, sshd answers) per host in plan order.
    fn report(&self, states: &[(bool, bool)]) -> LabReport {
        LabReport {
            lab_id: self.id.clone(),
            cluster: self.cluster.clone(),
            bridge: self.bridge.clone(),
            gateway: format!("{}/{}", self.gateway, self.subnet.prefix_len()),
            data_dir: self.data_dir.clone(),
            hosts: self
                .hosts
                .iter()
                .zip(states)
                .map(|(h, &(exists, sshd))| HostReport {
                    node: h.node.clone(),
                    namespace: h.ns.clone(),
                    address: h.address,
                    ssh_port: h.port,
                    exists,
                    sshd,
                })
                .collect(),
        }
    }
}

/// `~/x` → `$HOME/x`; anything else as written (relative to the current directory).
pub(crate) fn expand_key(key: &str) -> PathBuf {
    match (key.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(key),
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_else(|_| SAFE_PATH.to_string());
    path.split(':')
        .chain(SAFE_PATH.split(':'))
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn check_tools() -> Result<(), LabError> {
    let mut missing = Vec::new();
    for (tool, package) in [
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("setsid", "util-linux"),
        ("mount", "mount"),
        ("ssh-keygen", "openssh-client"),
    ] {
        if find_program(tool).is_none() {
            missing.push(format!("{tool} ({package})"));
        }
    }
    if !Path::new(SSHD).is_file() {
        missing.push(format!("{SSHD} (openssh-server)"));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::Invalid {
            message: format!("the lab needs these programs: {}", missing.join(", ")),
        })
    }
}

/// Lab hosts share the machine's users: the SSH user must exist here.
fn check_users(plan: &Plan) -> Result<(), LabError> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(LabError::io("read", "/etc/passwd"))?;
    let users: BTreeSet<&str> = passwd.lines().filter_map(|l| l.split(':').next()).collect();
    for h in &plan.hosts {
        if !users.contains(h.user.as_str()) {
            return Err(LabError::Invalid {
                message: format!(
                    "node {}: ssh user '{}' does not exist on this machine; lab hosts share its users (use ssh.user: root)",
                    h.node, h.user
                ),
            });
        }
    }
    Ok(())
}

/// Refuses a subnet this machine already routes elsewhere (another lab, a real network).
fn check_routes(plan: &Plan) -> Result<(), LabError> {
    let out = cmd::run(
        &["ip", "-o", "-4", "route", "show", "table", "all"],
        "list routes",
    )?;
    for line in out.lines() {
        let mut w = line.split_whitespace();
        let Some(mut dst) = w.next() else { continue };
        if matches!(dst, "local" | "broadcast" | "unicast" | "multicast") {
            dst = w.next().unwrap_or("default");
        }
        if dst == "default" {
            continue;
        }
        let net: Ipv4Net = match dst
            .parse::<Ipv4Net>()
            .or_else(|_| dst.parse::<Ipv4Addr>().map(Ipv4Net::from))
        {
            Ok(n) => n,
            Err(_) => continue,
        };
        let dev = line
            .split_whitespace()
            .skip_while(|t| *t != "dev")
            .nth(1)
            .unwrap_or("");
        let overlaps = net.contains(&plan.subnet.network()) || plan.subnet.contains(&net.network());
        if overlaps && dev != plan.bridge && dev != "lo" {
            return Err(LabError::Invalid {
                message: format!(
                    "the lab subnet {} of cluster {} overlaps {net} already routed via {dev}; give each lab its own subnet inside 198.18.0.0/15",
                    plan.subnet, plan.cluster
                ),
            });
        }
    }
    Ok(())
}

/// Creates each node's SSH key pair (ed25519) if missing; returns key path → public key line.
fn ensure_user_keys(plan: &Plan, opts: &LabOptions) -> Result<BTreeMap<PathBuf, String>, LabError> {
    let mut out = BTreeMap::new();
    for h in &plan.hosts {
        if out.contains_key(&h.key) {
            continue;
        }
        let key = &h.key;
        let key_s = key.to_string_lossy().into_owned();
        let pub_path = PathBuf::from(format!("{key_s}.pub"));
        if !key.exists() {
            if let Some(parent) = key
                .parent()
                .filter(|p| !p.as_os_str().is_empty() && !p.exists())
            {
                make_dir(parent, 0o700)?;
            }
            let comment = format!("{} {}", keys::LAB_KEY_COMMENT, plan.cluster);
            cmd::run(
                &[
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    &comment,
                    "-f",
                    &key_s,
                ],
                &format!("generate the lab key {key_s}"),
            )?;
            opts.say(&h.node, &format!("generated the lab SSH key {key_s}"));
        } else if !pub_path.exists() {
            let pubkey = cmd::run(
                &["ssh-keygen", "-y", "-f", &key_s],
                &format!("derive the public key of {key_s}"),
            )?;
            write_file(&pub_path, &pubkey, 0o644)?;
        }
        let pubkey = fs::read_to_string(&pub_path).map_err(LabError::io("read", &pub_path))?;
        out.insert(key.clone(), pubkey.trim().to_string());
    }
    Ok(out)
}

/// Makes sure lab state holds every host's sshd keys. A host that runs now (its `/etc`
/// layer exists) keeps the key it has; any other host without keys gets new ones.
fn ensure_host_keys(plan: &Plan, opts: &LabOptions) -> Result<(), LabError> {
    for h in &plan.hosts {
        let current = plan.host_dir(h).join("etc/upper");
        for (key_type, how) in keys::ensure_host_keys(&h.host_keys, &h.node, Some(&current))? {
            opts.say(
                &h.node,
                &format!(
                    "SSH host key ({key_type}) {how}; kept in {}",
                    h.host_keys.display()
                ),
            );
        }
    }
    Ok(())
}

fn make_dir(path: &Path, mode: u32) -> Result<(), LabError> {
    fs::create_dir_all(path).map_err(LabError::io("create directory", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(LabError::io("set permissions of", path))
}

fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), LabError> {
    fs::write(path, content).map_err(LabError::io("write", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(LabError::io("set permissions of", path))
}

/// overlayfs cannot use a directory on overlayfs as its upper layer (a machine that is itself
/// a container): the lab's layers then live on a tmpfs mounted on the lab's data dir.
fn ensure_data_fs(dir: &Path) -> Result<(), LabError> {
    if sys::is_mount_point(dir) {
        return Ok(());
    }
    let d = dir.to_string_lossy();
    let fs_type = cmd::run(
        &["stat", "-f", "-c", "%T", &d],
        &format!("check the file system of {d}"),
    )?;
    if fs_type.trim() == "overlayfs" {
        cmd::run(
            &[
                "mount",
                "-t",
                "tmpfs",
                "-o",
                "mode=0700",
                "kubeha-lab-data",
                &d,
            ],
            &format!("mount a tmpfs on {d} (overlayfs cannot stack on overlayfs)"),
        )?;
    }
    Ok(())
}

/// `/run/kubeha-lab/<id>`, bind-mounted on itself and private: persisted mount namespaces
/// may only be bound below a private mount.
fn ensure_run_dir(dir: &Path) -> Result<(), LabError> {
    make_dir(dir, 0o700)?;
    if !sys::is_mount_point(dir) {
        let d = dir.to_string_lossy();
        cmd::run(&["mount", "--bind", &d, &d], &format!("bind {d} on itself"))?;
    }
    let d = dir.to_string_lossy();
    cmd::run(
        &["mount", "--make-private", &d],
        &format!("make {d} private"),
    )?;
    Ok(())
}

fn ensure_bridge(plan: &Plan, opts: &LabOptions) -> Result<(), LabError> {
    let br = plan.bridge.as_str();
    let cidr = format!("{}/{}", plan.gateway, plan.subnet.prefix_len());
    if !sys::link_exists(br) {
        cmd::run(
            &["ip", "link", "add", "name", br, "type", "bridge"],
            &format!("create bridge {br}"),
        )?;
        opts.say(
            "-",
            &format!(
                "bridge {br} with {cidr} (lab {} of cluster {})",
                plan.id, plan.cluster
            ),
        );
    }
    cmd::run(
        &["ip", "addr", "replace", &cidr, "dev", br],
        &format!("address bridge {br}"),
    )?;
    cmd::run(
        &["ip", "link", "set", "dev", br, "up"],
        &format!("bring bridge {br} up"),
    )?;
    Ok(())
}

/// Creates or repairs one host; returns whether sshd had to be started.
fn ensure_host(
    plan: &Plan,
    h: &HostPlan,
    pubkey: &str,
    opts: &LabOptions,
) -> Result<bool, LabError> {
    let ns = h.ns.as_str();
    let node = h.node.as_str();
    let cx = |what: &str| format!("{node} (namespace {ns}): {what}");
    let mut created = Vec::new();

    if !sys::netns_list().iter().any(|n| n == ns) {
        cmd::run(&["ip", "netns", "add", ns], &cx("create network namespace"))?;
        created.push("namespace");
    }
    let has_eth0 = cmd::output(
        &["ip", "-n", ns, "link", "show", "dev", "eth0"],
        cmd::DEFAULT_TIMEOUT,
        "show eth0",
    )
    .is_ok_and(|o| o.status.success());
    if !has_eth0 {
        if sys::link_exists(&h.veth) {
            cmd::run(
                &["ip", "link", "del", "dev", &h.veth],
                &cx("remove a stale veth"),
            )?;
        }
        cmd::run(
            &[
                "ip", "link", "add", "name", &h.veth, "type", "veth", "peer", "name", &h.peer,
                "netns", ns,
            ],
            &cx("create veth"),
        )?;
        cmd::run(
            &[
                "ip", "-n", ns, "link", "set", "dev", &h.peer, "name", "eth0",
            ],
            &cx("rename veth to eth0"),
        )?;
        created.push("eth0");
    }
    let cidr = format!("{}/{}", h.address, plan.subnet.prefix_len());
    cmd::run(
        &["ip", "-n", ns, "addr", "replace", &cidr, "dev", "eth0"],
        &cx("address eth0"),
    )?;
    cmd::run(
        &["ip", "-n", ns, "link", "set", "dev", "eth0", "up"],
        &cx("bring eth0 up"),
    )?;
    cmd::run(
        &["ip", "-n", ns, "link", "set", "dev", "lo", "up"],
        &cx("bring lo up"),
    )?;
    if sys::link_exists(&h.veth) {
        cmd::run(
            &[
                "ip",
                "link",
                "set",
                "dev",
                &h.veth,
                "master",
                &plan.bridge,
                "up",
            ],
            &cx("attach veth to the bridge"),
        )?;
    }

    let mnt = names::mnt_handle(&plan.id, node);
    let uts = names::uts_handle(&plan.id, node);
    if sys::ns_of_handle("mnt", &mnt).is_none() || sys::ns_of_handle("uts", &uts).is_none() {
        for p in [&mnt, &uts] {
            let s = p.to_string_lossy();
            let _ = cmd::quiet(&["umount", "-l", &s]);
        }
        prepare_layers(plan, h, pubkey)?;
        create_mount_ns(plan, h, &mnt, &uts)?;
        created.push("own /etc /var/lib /run");
    }

    let started = if sshd_answers(h.address, h.port, Duration::from_millis(300)) {
        false
    } else {
        start_sshd(plan, h, &mnt, &uts)?;
        created.push("sshd (started)");
        true
    };
    if created.is_empty() {
        opts.say(node, &format!("{ns} is up ({cidr}, sshd answers)"));
    } else {
        opts.say(
            node,
            &format!("{ns} with {cidr} on eth0: made {}", created.join(", ")),
        );
    }
    Ok(started)
}

/// Writes the host's private `/etc` layer before it is mounted: host name, hosts, sshd
/// config, host keys (from lab state), authorised keys.
fn prepare_layers(plan: &Plan, h: &HostPlan, pubkey: &str) -> Result<(), LabError> {
    let dir = plan.host_dir(h);
    make_dir(&dir, 0o755)?;
    for layer in ["etc", "var-lib"] {
        // The upper dir's mode becomes the merged directory's mode.
        make_dir(&dir.join(layer).join("upper"), 0o755)?;
        make_dir(&dir.join(layer).join("work"), 0o700)?;
    }
    let etc = dir.join("etc/upper");
    write_file(&etc.join("hostname"), &format!("{}\n", h.node), 0o644)?;
    write_file(&etc.join("hosts"), &plan.etc_hosts, 0o644)?;
    make_dir(&etc.join("ssh"), 0o755)?;
    make_dir(&etc.join("ssh/kubeha-lab"), 0o755)?;
    write_file(
        &etc.join("ssh/kubeha-lab/authorized_keys"),
        &format!("{pubkey}\n"),
        0o644,
    )?;
    write_file(&etc.join("ssh/sshd_config"), &sshd_config(plan, h), 0o644)?;
    keys::install_host_keys(&h.host_keys, &etc)?;
    unlock_user(&etc, &h.user)?;
    Ok(())
}

/// sshd refuses keys for a locked account (`!` in /etc/shadow) when PAM is off; the host's
/// private shadow marks it `*` (no password, not locked) instead.
fn unlock_user(etc_upper: &Path, user: &str) -> Result<(), LabError> {
    let Ok(shadow) = fs::read_to_string("/etc/shadow") else {
        return Ok(());
    };
    let mut changed = false;
    let text: String = shadow
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(':').collect();
            if f.len() > 1 && f[0] == user && f[1].starts_with('!') {
                f[1] = "*";
                changed = true;
            }
            format!("{}\n", f.join(":"))
        })
        .collect();
    if changed {
        let dst = etc_upper.join("shadow");
        cmd::run(
            &["cp", "-p", "/etc/shadow", &dst.to_string_lossy()],
            "copy /etc/shadow into the host layer",
        )?;
        fs::write(&dst, text).map_err(LabError::io("write", &dst))?;
    }
    Ok(())
}

fn sshd_config(plan: &Plan, h: &HostPlan) -> String {
    format!(
        "# sshd of kubeha lab host {node} (lab {id}, cluster {cluster}); written by `kubeha lab up`.\n\
         Port {port}\n\
         ListenAddress {addr}:{port}\n\
         {host_keys}\
         PidFile /run/sshd.pid\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         PubkeyAuthentication yes\n\
         AuthorizedKeysFile {AUTHORIZED_KEYS}\n\
         MaxStartups 100:30:200\n\
         MaxSessions 100\n\
         X11Forwarding no\n\
         PrintMotd no\n\
         AcceptEnv LANG LC_*\n\
         # Lab hosts share this machine's /root: keep its ~/.bashrc (often slow) out of every\n\
         # command kubeha runs (bash skips it for ssh sessions when SHLVL is already 1).\n\
         SetEnv SHLVL=1\n\
         Subsystem sftp /usr/lib/openssh/sftp-server\n",
        node = h.node,
        id = plan.id,
        cluster = plan.cluster,
        port = h.port,
        addr = h.address,
        host_keys = keys::HOST_KEY_TYPES
            .iter()
            .map(|t| format!("HostKey /etc/ssh/{}\n", keys::host_key_file(t)))
            .collect::<String>(),
    )
}

/// Creates the persisted mount + UTS namespaces from inside the host's network namespace
/// (so its sysfs shows the host's links), and mounts the host's layers in them.
fn create_mount_ns(plan: &Plan, h: &HostPlan, mnt: &Path, uts: &Path) -> Result<(), LabError> {
    for p in [mnt, uts] {
        fs::write(p, "").map_err(LabError::io("create namespace handle", p))?;
    }
    let dir = plan.host_dir(h);
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    let (eu, ew, vu, vw) = (
        s(dir.join("etc/upper")),
        s(dir.join("etc/work")),
        s(dir.join("var-lib/upper")),
        s(dir.join("var-lib/work")),
    );
    let net = s(names::net_handle(&h.ns));
    let (mnt_s, uts_s) = (s(mnt.to_path_buf()), s(uts.to_path_buf()));
    let data_dir = s(plan.data_dir.clone());
    let data_root = s(plan
        .data_dir
        .parent()
        .map_or_else(|| plan.data_dir.clone(), Path::to_path_buf));
    let argv = [
        "nsenter",
        &format!("--net={net}"),
        "--",
        "unshare",
        &format!("--mount={mnt_s}"),
        &format!("--uts={uts_s}"),
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        MOUNT_SCRIPT,
        "kubeha-lab-mount",
        &h.node,
        &eu,
        &ew,
        &vu,
        &vw,
        &data_root,
        &data_dir,
    ];
    let argv: Vec<&str> = argv.iter().map(|a| a.as_ref()).collect();
    cmd::run(
        &argv,
        &format!(
            "{} (namespace {}): create /etc, /var/lib and /run",
            h.node, h.ns
        ),
    )?;
    for (kind, p) in [("mnt", mnt), ("uts", uts)] {
        if sys::ns_of_handle(kind, p).is_none() {
            return Err(LabError::HostDown {
                namespace: h.ns.clone(),
                missing: p.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Runs inside the new mount namespace: `$1` node, `$2`/`$3` /etc upper/work, `$4`/`$5`
/// /var/lib upper/work, `$6` data root, `$7` this lab's data dir. First drops the copies of
/// namespace handles (`/run/netns`, other hosts', any nsfs mount) and of other labs' data
/// mounts: they would keep those namespaces and file systems alive after their `lab down`. The
/// host's own sysfs shows its own links; the cgroup tree is carried over.
const MOUNT_SCRIPT: &str = r#"set -e
info=$(cat /proc/self/mountinfo)
printf '%s\n' "$info" | sort -r -k5,5 | while read -r _ _ _ _ mp rest; do
  case "$mp" in
    /run/netns|/run/netns/*|/run/kubeha-lab|/run/kubeha-lab/*) umount -l "$mp" 2>/dev/null || true; continue ;;
  esac
  case "$rest" in
    *" - nsfs "*) umount -l "$mp" 2>/dev/null || true; continue ;;
  esac
  case "$mp" in
    "$7"|"$7"/*) ;;
    "$6"/*) umount -l "$mp" 2>/dev/null || true ;;
  esac
done
mount -t overlay kubeha-lab-etc -o "lowerdir=/etc,upperdir=$2,workdir=$3" /etc
mount -t overlay kubeha-lab-var-lib -o "lowerdir=/var/lib,upperdir=$4,workdir=$5" /var/lib
mount -t tmpfs -o mode=0755,nosuid,nodev kubeha-lab-run /run
mkdir -p /run/sshd /run/kubeha /run/lock /run/.kubeha-lab-cgroup
chmod 0755 /run/sshd
chmod 1777 /run/lock
cg=
if mount --rbind /sys/fs/cgroup /run/.kubeha-lab-cgroup 2>/dev/null; then cg=1; fi
umount -l /sys
mount -t sysfs kubeha-lab-sys /sys
if [ -n "$cg" ]; then
  mount --move /run/.kubeha-lab-cgroup /sys/fs/cgroup 2>/dev/null || umount -l /run/.kubeha-lab-cgroup
fi
rmdir /run/.kubeha-lab-cgroup
if command -v systemd-tmpfiles >/dev/null 2>&1; then
  systemd-tmpfiles --create --prefix=/run >/dev/null 2>&1 || true
fi
printf '%s' "$1" > /proc/sys/kernel/hostname
"#;

/// Starts the host's sshd detached (own session), logging to `<host dir>/sshd.log`.
fn start_sshd(plan: &Plan, h: &HostPlan, mnt: &Path, uts: &Path) -> Result<(), LabError> {
    let log_path = plan.host_dir(h).join("sshd.log");
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(LabError::io("open", &log_path))?;
    let _ = writeln!(log, "--- kubeha lab: starting sshd of {} ---", h.node);
    let log2 = log.try_clone().map_err(LabError::io("open", &log_path))?;
    let net = names::net_handle(&h.ns);
    let mut child = Command::new("setsid")
        .args(["-f", "nsenter"])
        .arg(format!("--net={}", net.display()))
        .arg(format!("--mount={}", mnt.display()))
        .arg(format!("--uts={}", uts.display()))
        .args(["--", SSHD, "-D", "-e", "-f", SSHD_CONFIG])
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("LANG", "C.UTF-8")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|source| LabError::Spawn {
            program: "setsid".into(),
            context: format!("start sshd of {} (namespace {})", h.node, h.ns),
            source,
        })?;
    // `setsid -f` returns at once; sshd lives on in its own session.
    let ok = sys::wait_until(Duration::from_secs(5), Duration::from_millis(5), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !ok {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}

/// Whether something on `addr:port` answers with an SSH banner within `timeout`.
pub fn sshd_answers(addr: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    let sa = SocketAddr::from((addr, port));
    let Ok(mut s) = TcpStream::connect_timeout(&sa, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 4 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"SSH-")
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n  ");
    if tail.is_empty() {
        String::new()
    } else {
        format!("; {}:\n  {tail}", path.display())
    }
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("lab.json")
}

fn write_state(plan: &Plan, report: &LabReport) -> Result<(), LabError> {
    let path = state_path(&plan.data_dir);
    let json = serde_json::to_string_pretty(report).map_err(|source| LabError::State {
        path: path.clone(),
        source,
    })?;
    atomicwrites::AtomicFile::new(&path, atomicwrites::AllowOverwrite)
        .write(|f| f.write_all(json.as_bytes()))
        .map_err(|e| LabError::io("write", &path)(std::io::Error::other(e.to_string())))
}

/// Reads the state `lab up` left (informational: `down` never needs it).
pub fn read_state(lab_id: &str, opts: &LabOptions) -> Result<Option<LabReport>, LabError> {
    let path = state_path(&opts.data_root.join(lab_id));
    match fs::read_to_string(&path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|source| LabError::State { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LabError::io("read", &path)(e)),
    }
}

fn discover(opts: &LabOptions) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for ns in sys::netns_list() {
        if let Some((id, _)) = names::parse_namespace(&ns) {
            ids.insert(id.to_string());
        }
    }
    for l in sys::links() {
        if let Some(id) = names::link_lab_id(&l) {
            ids.insert(id.to_string());
        }
    }
    for root in [Path::new(names::RUN_ROOT), opts.data_root.as_path()] {
        if let Ok(rd) = fs::read_dir(root) {
            ids.extend(rd.flatten().filter_map(|e| {
                e.file_name()
                    .to_str()
                    .filter(|n| names::is_lab_id(n))
                    .map(str::to_string)
            }));
        }
        for m in sys::mounts_under(root) {
            if let Some(id) = m
                .strip_prefix(root)
                .ok()
                .and_then(|r| r.components().next())
                .and_then(|c| c.as_os_str().to_str())
                .filter(|n| names::is_lab_id(n))
            {
                ids.insert(id.to_string());
            }
        }
    }
    ids
}

fn down_lab(id: &str, opts: &LabOptions) -> Result<DownReport, LabError> {
    let mut r = DownReport {
        lab_id: id.to_string(),
        ..DownReport::default()
    };
    let nss: Vec<String> = sys::netns_list()
        .into_iter()
        .filter(|n| names::parse_namespace(n).is_some_and(|(i, _)| i == id))
        .collect();
    let run = names::run_dir(id);
    let data = opts.data_root.join(id);

    // 1. Every process in the lab's namespaces (network, mount, UTS), wherever it came from.
    let mut ns_ids: Vec<sys::NsId> = nss
        .iter()
        .filter_map(|n| sys::ns_of_handle("net", &names::net_handle(n)))
        .collect();
    if let Ok(rd) = fs::read_dir(&run) {
        for e in rd.flatten() {
            let p = e.path();
            match p.extension().and_then(|x| x.to_str()) {
                Some("mnt") => ns_ids.extend(sys::ns_of_handle("mnt", &p)),
                Some("uts") => ns_ids.extend(sys::ns_of_handle("uts", &p)),
                _ => {}
            }
        }
    }
    r.processes = sys::kill_namespace_members(&ns_ids);

    // 2. Network namespaces (their veth ends go with them), then the lab's links.
    for ns in &nss {
        if cmd::quiet(&["ip", "netns", "del", ns]) {
            r.namespaces.push(ns.clone());
        }
    }
    let mut lab_links: Vec<String> = sys::links()
        .into_iter()
        .filter(|l| names::link_lab_id(l) == Some(id))
        .collect();
    lab_links.sort_by_key(|l| l.ends_with("-br"));
    for l in lab_links {
        if cmd::quiet(&["ip", "link", "del", "dev", &l]) || !sys::link_exists(&l) {
            r.links.push(l);
        }
    }

    // 3. Namespace handles and the runtime dir; then the hosts' layers.
    r.mounts = sys::unmount_all_under(&run);
    for dir in [&run, &data] {
        if dir.exists() {
            r.mounts.extend(sys::unmount_all_under(dir));
            match fs::remove_dir_all(dir) {
                Ok(()) => r.dirs.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LabError::io("remove", dir.as_path())(e)),
            }
        }
    }

    // 4. Check: nothing of the lab may be left (the kernel frees veths asynchronously).
    let leftovers = || {
        let mut left = Vec::new();
        left.extend(
            sys::netns_list()
                .into_iter()
                .filter(|n| names::parse_namespace(n).is_some_and(|(i, _)| i == id))
                .map(|n| format!("namespace {n}")),
        );
        left.extend(
            sys::links()
                .into_iter()
                .filter(|l| names::link_lab_id(l) == Some(id))
                .map(|l| format!("link {l}")),
        );
        left.extend(
            sys::mounts_under(&run)
                .into_iter()
                .chain(sys::mounts_under(&data))
                .map(|m| format!("mount {}", m.display())),
        );
        left.extend(
            [&run, &data]
                .into_iter()
                .filter(|d| d.exists())
                .map(|d| format!("directory {}", d.display())),
        );
        left.extend(
            sys::pids_in(&ns_ids)
                .into_iter()
                .map(|p| format!("process {p}")),
        );
        left
    };
    let mut left = Vec::new();
    let clean = sys::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        left = leftovers();
        // A process that entered a namespace while the first sweep ran (a dying sshd's
        // child, a late `nsenter`) is swept again rather than reported.
        if left.iter().any(|l| l.starts_with("process ")) {
            sys::kill_namespace_members(&ns_ids);
            left = leftovers();
        }
        if left.iter().any(|l| l.starts_with("link ")) {
            for l in sys::links()
                .into_iter()
                .filter(|l| names::link_lab_id(l) == Some(id))
            {
                let _ = cmd::quiet(&["ip", "link", "del", "dev", &l]);
            }
        }
        left.is_empty()
    });
    if !clean {
        return Err(LabError::Leftovers {
            lab_id: id.to_string(),
            leftovers: left.join(", "),
        });
    }
    Ok(r)
}
