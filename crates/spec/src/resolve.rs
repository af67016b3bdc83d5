//! Turns a [`RawSpec`] into a validated [`Spec`], applying defaults and collecting every
//! problem (not just the first) with its field path and location.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    str::FromStr,
};

use ipnet::{IpNet, Ipv4Net};

use crate::{
    error::{Problem, Severity},
    grammar::{self, is_dns_label, is_dns_subdomain, shown},
    model::*,
    raw::*,
};

/// Defaults that apply when the cluster file is silent.
pub mod defaults {
    pub const BASE_DOMAIN: &str = "k8s.local";
    pub const API_PORT: u16 = 6443;
    pub const SSH_USER: &str = "k8sadmin";
    pub const SSH_PORT: u16 = 22;
    pub const POD_CIDR: &str = "10.244.0.0/16";
    pub const SERVICE_CIDR: &str = "10.96.0.0/12";
    pub const DNS_DOMAIN: &str = "cluster.local";
    pub const NODE_CIDR_MASK: u8 = 24;
    pub const CALICO_ENCAPSULATION: &str = "VXLANCrossSubnet";
    pub const LB_INTERFACE: &str = "eth0";
    pub const VRRP_ROUTER_ID: u8 = 51;
    pub const LB_STATS_PORT: u16 = 8404;
    pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";
    /// The official release binary (fetched at provisioning): distributions ship older etcd.
    pub const ETCD_BINARY: &str = "/usr/local/bin/etcd";
    pub const LEAF_VALIDITY_HOURS: u32 = 8760;
    pub const CA_VALIDITY_HOURS: u32 = 87600;
    /// The longest certificate lifetime accepted: 100 years. X.509 dates end with the year
    /// 9999, and a lifetime beyond that cannot be issued at all.
    pub const MAX_VALIDITY_HOURS: u32 = 100 * 365 * 24;
    pub const CRI_ENDPOINT: &str = "unix:///var/run/containerd/containerd.sock";
    pub const IMAGE_REPOSITORY: &str = "registry.k8s.io";
    pub const NETPLAN_INTERFACE: &str = "enp0s2";
}

struct Ctx<'a> {
    src: &'a str,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn push<T>(
        &mut self,
        sev: Severity,
        field: impl Into<String>,
        at: Option<&S<T>>,
        msg: String,
        help: Option<String>,
    ) {
        let (line, column, offset) = match at {
            Some(s) => {
                let loc = s.referenced;
                let off = loc
                    .span()
                    .byte_offset()
                    .map(|o| o as usize)
                    .or_else(|| offset_of(self.src, loc.line(), loc.column()));
                (loc.line(), loc.column(), off)
            }
            None => (0, 0, None),
        };
        self.problems.push(Problem {
            severity: sev,
            field: field.into(),
            line,
            column,
            offset,
            message: msg,
            help,
        });
    }

    fn err<T>(
        &mut self,
        field: impl Into<String>,
        at: Option<&S<T>>,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        let help = help.into();
        let help = (!help.is_empty()).then_some(help);
        self.push(Severity::Error, field, at, msg.into(), help);
    }

    fn warn<T>(
        &mut self,
        field: impl Into<String>,
        at: Option<&S<T>>,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        let help = help.into();
        let help = (!help.is_empty()).then_some(help);
        self.push(Severity::Warning, field, at, msg.into(), help);
    }
}

/// Byte offset of a 1-based line/column (columns counted in characters).
pub(crate) fn offset_of(src: &str, line: u64, column: u64) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let mut start = 0usize;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let col = column.saturating_sub(1) as usize;
            let within = l.char_indices().nth(col).map_or(l.len(), |(b, _)| b);
            return Some(start + within);
        }
        start += l.len();
    }
    None
}

fn parse_hours(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix('h') {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 24)
    } else if let Some(n) = s.strip_suffix('y') {
        (n, 24 * 365)
    } else {
        return None;
    };
    num.parse::<u32>()
        .ok()?
        .checked_mul(mult)
        .filter(|h| *h > 0)
}

/// Parses `host`, `host:port`, `[v6]:port`.
fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let s = s.trim();
    if s.contains("://") {
        return Err("give host and port only, without a scheme".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or("unclosed '[' in IPv6 endpoint")?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p),
            None if tail.is_empty() => None,
            None => return Err("expected ':port' after ']'".into()),
        };
        (h, port)
    } else if s.matches(':').count() == 1 {
        let (h, p) = s.split_once(':').ok_or("bad endpoint")?;
        (h, Some(p))
    } else {
        (s, None)
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("port '{}' is not a number from 1 to 65535", shown(p)))?,
        None => defaults::API_PORT,
    };
    if port == 0 {
        return Err("port 0 is not usable".into());
    }
    let host = if let Ok(ip) = IpAddr::from_str(host) {
        EndpointHost::Ip(ip)
    } else if is_dns_subdomain(host) {
        EndpointHost::Dns(host.to_string())
    } else {
        return Err(format!(
            "'{}' is neither an IP address nor a lower-case DNS name",
            shown(host)
        ));
    };
    Ok(Endpoint { host, port })
}

/// Parses a MetalLB entry: CIDR or `first-last`; returns the inclusive address range.
fn parse_pool(s: &str) -> Option<(IpAddr, IpAddr)> {
    if let Ok(net) = IpNet::from_str(s.trim()) {
        return Some((net.network(), net.broadcast()));
    }
    let (a, b) = s.split_once('-')?;
    let a = IpAddr::from_str(a.trim()).ok()?;
    let b = IpAddr::from_str(b.trim()).ok()?;
    (a.is_ipv4() == b.is_ipv4() && a <= b).then_some((a, b))
}

fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn opt_str(v: &Option<S<String>>) -> Option<&str> {
    v.as_ref().map(|s| s.value.as_str())
}

/// A whole number written at `v`, reported (with the allowed range) when it is not one
/// from `lo` to `hi`.
fn number(cx: &mut Ctx<'_>, field: &str, v: &Num, lo: u64, hi: u64, help: &str) -> Option<u64> {
    match v.value.trim().parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Some(n),
        Ok(n) => {
            cx.err(
                field,
                Some(v),
                format!("{n} is out of range: {field} is a whole number from {lo} to {hi}"),
                help,
            );
            None
        }
        Err(_) => {
            cx.err(
                field,
                Some(v),
                format!(
                    "'{}' is not a whole number: {field} is one from {lo} to {hi}",
                    shown(&v.value)
                ),
                help,
            );
            None
        }
    }
}

/// A TCP port written at `v`: 1 to 65535.
fn port(cx: &mut Ctx<'_>, field: &str, v: &Num, example: u16) -> Option<u16> {
    let help = format!("use a TCP port from 1 to 65535, e.g. {example}");
    match v.value.trim().parse::<u64>() {
        Ok(0) => {
            cx.err(field, Some(v), "port 0 is not usable", help);
            None
        }
        Ok(n) if n <= u64::from(u16::MAX) => u16::try_from(n).ok(),
        _ => {
            cx.err(
                field,
                Some(v),
                format!(
                    "'{}' is not a TCP port: {field} is a whole number from 1 to 65535",
                    shown(&v.value)
                ),
                help,
            );
            None
        }
    }
}

/// The SSH user (a login name on the host, and the account cloud-init creates) and the key
/// path (an argument of the operator's `ssh`).
fn check_ssh_words(cx: &mut Ctx<'_>, prefix: &str, s: &RawSsh) {
    if let Some(u) = &s.user
        && let Err(why) = grammar::user_name(&u.value)
    {
        cx.err(
            format!("{prefix}.user"),
            Some(u),
            format!("'{}' is not a user name: {why}", shown(&u.value)),
            "write a login name: a lower-case letter or '_', then lower-case letters, digits, '_' or '-', at most 32 characters, e.g. k8sadmin",
        );
    }
    if let Some(k) = &s.key
        && (k.value.trim().is_empty() || k.value.chars().any(char::is_control))
    {
        cx.err(
            format!("{prefix}.key"),
            Some(k),
            format!("'{}' is not a usable key file path", shown(&k.value)),
            "write the path of the private key file, e.g. ~/.ssh/id_ed25519, or remove the line to use your ssh agent",
        );
    }
}

/// Whether `ip` is the network or broadcast address of `net` (which hosts cannot use).
fn subnet_edge(net: &IpNet, ip: IpAddr) -> Option<&'static str> {
    match net {
        IpNet::V4(n) if n.prefix_len() <= 30 => {
            if ip == IpAddr::V4(n.network()) {
                Some("network address")
            } else if ip == IpAddr::V4(n.broadcast()) {
                Some("broadcast address")
            } else {
                None
            }
        }
        IpNet::V6(n) if n.prefix_len() <= 126 && ip == IpAddr::V6(n.network()) => {
            Some("subnet-router anycast address")
        }
        _ => None,
    }
}

/// Ports kubeha's services bind on `node` whatever the cluster file says (restated from
/// what rendering writes: etcd flags, static pods, kubelet and kube-proxy defaults).
fn fixed_ports(
    node: &Node,
    etcd_member: bool,
    etcd_static_pod: bool,
    local_proxy: bool,
) -> Vec<(u16, &'static str)> {
    let mut p = Vec::new();
    if etcd_member {
        p.extend([
            (2379, "etcd's client port"),
            (2380, "etcd's peer port"),
            (2381, "etcd's metrics port"),
        ]);
    }
    if node.has(Role::ControlPlane) {
        p.extend([
            (6443, "kube-apiserver's port"),
            (10257, "kube-controller-manager's port"),
            (10259, "kube-scheduler's port"),
        ]);
        if local_proxy {
            p.push((2379, "the local etcd proxy's port"));
        }
    }
    let kubelet =
        node.has(Role::ControlPlane) || node.has(Role::Worker) || (etcd_member && etcd_static_pod);
    if kubelet {
        p.extend([
            (10250, "the kubelet's port"),
            (10248, "the kubelet's health port"),
        ]);
    }
    if node.has(Role::ControlPlane) || node.has(Role::Worker) {
        p.extend([
            (10249, "kube-proxy's metrics port"),
            (10256, "kube-proxy's health port"),
        ]);
    }
    p
}

/// Resolves and validates. Returns the spec when there is no error, plus every problem found.
pub fn resolve(raw: &RawSpec, src: &str) -> (Option<Spec>, Vec<Problem>) {
    let mut cx = Ctx {
        src,
        problems: Vec::new(),
    };
    let spec = resolve_inner(raw, &mut cx);
    let has_error = cx.problems.iter().any(|p| p.severity == Severity::Error);
    (if has_error { None } else { spec }, cx.problems)
}

fn resolve_inner(raw: &RawSpec, cx: &mut Ctx<'_>) -> Option<Spec> {
    // --- identity and versions
    let name = raw.name.value.clone();
    if !is_dns_label(&name) {
        cx.err(
            "name",
            Some(&raw.name),
            format!("cluster name '{}' is not a DNS label", shown(&name)),
            "use lower-case letters, digits and '-', at most 63 characters, e.g. 'prod-ha'",
        );
    }
    let base_domain = opt_str(&raw.base_domain)
        .unwrap_or(defaults::BASE_DOMAIN)
        .to_string();
    if !is_dns_subdomain(&base_domain) {
        cx.err(
            "baseDomain",
            raw.base_domain.as_ref(),
            format!("'{}' is not a DNS domain", shown(&base_domain)),
            "use lower-case labels separated by dots, e.g. 'k8s.local'",
        );
    }
    let kubernetes_version = match &raw.kubernetes_version {
        None => KubeVersion::DEFAULT,
        Some(v) => match KubeVersion::parse(&v.value) {
            Some(k) if k.major == 1 && KubeVersion::SUPPORTED_MINORS.contains(&k.minor) => k,
            _ => {
                cx.err("kubernetesVersion", Some(v), format!("unsupported Kubernetes version '{}'", shown(&v.value)),
                    format!("write it as vMAJOR.MINOR.PATCH with a supported minor: v1.{}.x to v1.{}.x (default {})",
                        KubeVersion::SUPPORTED_MINORS.start(), KubeVersion::SUPPORTED_MINORS.end(), KubeVersion::DEFAULT));
                KubeVersion::DEFAULT
            }
        },
    };
    let etcd_version = match &raw.etcd_version {
        None => kubernetes_version.default_etcd(),
        Some(v) => match EtcdVersion::parse(&v.value) {
            Some(e) if e.major == 3 && e.minor >= 4 => e,
            _ => {
                cx.err(
                    "etcdVersion",
                    Some(v),
                    format!("unsupported etcd version '{}'", shown(&v.value)),
                    format!(
                        "use 3.4.x, 3.5.x or 3.6.x; {} pairs with {}",
                        kubernetes_version.default_etcd(),
                        kubernetes_version
                    ),
                );
                kubernetes_version.default_etcd()
            }
        },
    };

    // --- nodes
    let ssh_default = raw.ssh.as_ref();
    let default_user = ssh_default
        .and_then(|s| opt_str(&s.user))
        .unwrap_or(defaults::SSH_USER)
        .to_string();
    let default_port = ssh_default
        .and_then(|s| s.port.as_ref())
        .and_then(|p| port(cx, "ssh.port", p, defaults::SSH_PORT))
        .unwrap_or(defaults::SSH_PORT);
    let default_key = ssh_default
        .and_then(|s| opt_str(&s.key))
        .map(str::to_string);
    if let Some(s) = ssh_default {
        check_ssh_words(cx, "ssh", s);
    }
    // Where each node's SSH port comes from, for port clashes found later.
    let mut ssh_port_at: Vec<(String, Option<&Num>)> = Vec::new();

    let mut nodes = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut addrs: BTreeMap<IpAddr, usize> = BTreeMap::new();
    if raw.nodes.value.is_empty() {
        cx.err(
            "nodes",
            Some(&raw.nodes),
            "the cluster has no nodes",
            "list at least one node with name, address and roles",
        );
    }
    for (i, rn) in raw.nodes.value.iter().enumerate() {
        let f = |k: &str| format!("nodes[{i}].{k}");
        let nname = rn.name.value.clone();
        if !is_dns_label(&nname) {
            cx.err(f("name"), Some(&rn.name), format!("node name '{}' is not a lower-case DNS label", shown(&nname)), "use lower-case letters, digits and '-' (it becomes the host name, the Kubernetes node name and the etcd member name)");
        } else if nname.len() + 1 + base_domain.len() > 253 {
            cx.err(
                f("name"),
                Some(&rn.name),
                format!(
                    "the host name {nname}.{} is longer than 253 characters",
                    shown(&base_domain)
                ),
                "shorten the node name or baseDomain",
            );
        }
        if let Some(j) = names.insert(nname.clone(), i) {
            cx.err(
                f("name"),
                Some(&rn.name),
                format!("node name '{}' is also used by nodes[{j}]", shown(&nname)),
                "give every node a unique name",
            );
        }
        let address = match IpAddr::from_str(rn.address.value.trim()) {
            Ok(a) => {
                if let Some(j) = addrs.insert(a, i) {
                    cx.err(
                        f("address"),
                        Some(&rn.address),
                        format!("address {a} is also used by nodes[{j}]"),
                        "give every node its own address",
                    );
                }
                if a.is_loopback() || a.is_unspecified() || a.is_multicast() {
                    cx.err(
                        f("address"),
                        Some(&rn.address),
                        format!("{a} cannot be a node address"),
                        "use the address other nodes reach this node at",
                    );
                }
                a
            }
            Err(_) => {
                cx.err(
                    f("address"),
                    Some(&rn.address),
                    format!("'{}' is not an IP address", shown(&rn.address.value)),
                    "write the node's IPv4 or IPv6 address, e.g. 10.10.0.21",
                );
                IpAddr::from([0, 0, 0, 0])
            }
        };
        let mut roles = BTreeSet::new();
        for (k, r) in rn.roles.value.iter().enumerate() {
            let role = match r.value.as_str() {
                "etcd" => Role::Etcd,
                "control-plane" | "controlplane" | "master" => Role::ControlPlane,
                "worker" => Role::Worker,
                "lb" | "loadbalancer" => Role::Lb,
                other => {
                    cx.err(
                        format!("nodes[{i}].roles[{k}]"),
                        Some(r),
                        format!("unknown role '{}'", shown(other)),
                        "roles are: etcd, control-plane, worker, lb",
                    );
                    continue;
                }
            };
            if !roles.insert(role) {
                cx.warn(
                    format!("nodes[{i}].roles[{k}]"),
                    Some(r),
                    format!("role '{role}' is listed twice"),
                    "",
                );
            }
        }
        if rn.roles.value.is_empty() {
            cx.err(
                f("roles"),
                Some(&rn.roles),
                format!("node '{nname}' has no roles"),
                "give it at least one of: etcd, control-plane, worker, lb",
            );
        }
        if roles.contains(&Role::Lb) && roles.contains(&Role::ControlPlane) {
            cx.err(f("roles"), Some(&rn.roles), format!("node '{nname}' is both lb and control-plane: HAProxy and kube-apiserver would both bind port 6443"), "put the load balancers on their own nodes");
        }
        let ssh = rn.ssh.as_ref();
        if let Some(s) = ssh {
            check_ssh_words(cx, &f("ssh"), s);
        }
        let own_port = ssh.and_then(|s| s.port.as_ref());
        ssh_port_at.push(match own_port {
            Some(p) => (f("ssh.port"), Some(p)),
            None => ("ssh.port".into(), ssh_default.and_then(|s| s.port.as_ref())),
        });
        let node_ssh = Ssh {
            user: ssh
                .and_then(|s| opt_str(&s.user))
                .map(str::to_string)
                .unwrap_or_else(|| default_user.clone()),
            port: own_port
                .and_then(|p| port(cx, &f("ssh.port"), p, defaults::SSH_PORT))
                .unwrap_or(default_port),
            key: ssh
                .and_then(|s| opt_str(&s.key))
                .map(str::to_string)
                .or_else(|| default_key.clone()),
        };
        let mut taints = Vec::new();
        for (k, t) in rn.taints.iter().enumerate() {
            let effect = match t.effect.value.as_str() {
                "NoSchedule" => TaintEffect::NoSchedule,
                "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
                "NoExecute" => TaintEffect::NoExecute,
                other => {
                    cx.err(
                        format!("nodes[{i}].taints[{k}].effect"),
                        Some(&t.effect),
                        format!("unknown taint effect '{}'", shown(other)),
                        "use NoSchedule, PreferNoSchedule or NoExecute",
                    );
                    TaintEffect::NoSchedule
                }
            };
            if let Err(why) = grammar::qualified_name(&t.key.value) {
                cx.err(
                    format!("nodes[{i}].taints[{k}].key"),
                    Some(&t.key),
                    format!("taint key '{}' is not a Kubernetes qualified name: {why}", shown(&t.key.value)),
                    "write [prefix/]name: the optional prefix a lower-case DNS subdomain, the name at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, e.g. dedicated or example.com/gpu",
                );
            }
            if let Some(v) = &t.value
                && let Err(why) = grammar::label_value(&v.value)
            {
                cx.err(
                    format!("nodes[{i}].taints[{k}].value"),
                    Some(v),
                    format!("taint value '{}' is not valid: {why}", shown(&v.value)),
                    "use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (or leave it out)",
                );
            }
            taints.push(Taint {
                key: t.key.value.clone(),
                value: t.value.as_ref().map(|v| v.value.clone()),
                effect,
            });
        }
        let mut labels = BTreeMap::new();
        for (key, value) in &rn.labels.0 {
            if let Err(why) = grammar::qualified_name(&key.value) {
                cx.err(
                    f("labels"),
                    Some(key),
                    format!("label key '{}' is not a Kubernetes label key: {why}", shown(&key.value)),
                    "write [prefix/]name: the optional prefix a lower-case DNS subdomain, the name at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, e.g. node.kubernetes.io/pool",
                );
            }
            let v = value.value.clone().unwrap_or_default();
            if let Err(why) = grammar::label_value(&v) {
                cx.err(
                    format!("nodes[{i}].labels.{}", shown(&key.value)),
                    Some(value),
                    format!("label value '{}' is not a Kubernetes label value: {why}", shown(&v)),
                    "use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, or an empty value",
                );
            }
            labels.insert(key.value.clone(), v);
        }
        let lb_priority = rn
            .lb_priority
            .as_ref()
            .and_then(|p| {
                number(
                    cx,
                    &f("lbPriority"),
                    p,
                    1,
                    254,
                    "use e.g. 101 for the preferred LB and 100 for the other",
                )
            })
            .and_then(|p| u8::try_from(p).ok());
        if let Some(p) = &rn.lb_priority
            && !roles.contains(&Role::Lb)
        {
            cx.warn(
                f("lbPriority"),
                Some(p),
                format!("lbPriority is ignored: node '{nname}' has no lb role"),
                "remove it, or add the lb role",
            );
        }
        nodes.push(Node {
            name: nname,
            address,
            roles,
            ssh: node_ssh,
            labels,
            taints,
            lb_priority,
        });
    }

    // --- topology
    let has_pure_etcd = nodes
        .iter()
        .any(|n| n.has(Role::Etcd) && !n.has(Role::ControlPlane));
    let topology = match &raw.topology {
        None => {
            if has_pure_etcd || nodes.iter().all(|n| !n.has(Role::ControlPlane)) {
                EtcdTopology::External
            } else {
                EtcdTopology::Stacked
            }
        }
        Some(t) => match t.value.as_str() {
            "external" => EtcdTopology::External,
            "stacked" => EtcdTopology::Stacked,
            other => {
                cx.err("topology", Some(t), format!("unknown topology '{}'", shown(other)), "use 'external' (dedicated etcd nodes) or 'stacked' (etcd on the control planes)");
                EtcdTopology::External
            }
        },
    };
    let cps: Vec<&Node> = nodes.iter().filter(|n| n.has(Role::ControlPlane)).collect();
    let lbs: Vec<&Node> = nodes.iter().filter(|n| n.has(Role::Lb)).collect();
    if cps.is_empty() && !nodes.is_empty() {
        cx.err(
            "nodes",
            Some(&raw.nodes),
            "no node has the control-plane role",
            "give at least one node (three for HA) the control-plane role",
        );
    }
    let etcd_count = match topology {
        EtcdTopology::External => {
            for (i, n) in nodes.iter().enumerate() {
                if n.has(Role::Etcd) && n.has(Role::ControlPlane) {
                    cx.err(
                        format!("nodes[{i}].roles"),
                        Some(&raw.nodes.value[i].roles),
                        format!(
                            "node '{}' is etcd and control-plane, but the topology is external",
                            n.name
                        ),
                        "set 'topology: stacked', or move etcd to dedicated nodes",
                    );
                }
            }
            nodes.iter().filter(|n| n.has(Role::Etcd)).count()
        }
        EtcdTopology::Stacked => {
            for (i, n) in nodes.iter().enumerate() {
                if n.has(Role::Etcd) && !n.has(Role::ControlPlane) {
                    cx.err(format!("nodes[{i}].roles"), Some(&raw.nodes.value[i].roles), format!("node '{}' has the etcd role without control-plane, but the topology is stacked", n.name), "in the stacked topology etcd runs on every control plane: remove the etcd role here, or set 'topology: external'");
                }
            }
            cps.len()
        }
    };
    if etcd_count == 0 && !nodes.is_empty() {
        cx.err("nodes", Some(&raw.nodes), "no etcd member", "give three (or five) nodes the etcd role, or use 'topology: stacked' with control planes");
    } else if etcd_count % 2 == 0 && etcd_count > 0 {
        // Point at the last member: the one that made the count even.
        let member_idx: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| match topology {
                EtcdTopology::External => n.has(Role::Etcd),
                EtcdTopology::Stacked => n.has(Role::ControlPlane),
            })
            .map(|(i, _)| i)
            .collect();
        let names: Vec<&str> = member_idx.iter().map(|i| nodes[*i].name.as_str()).collect();
        let last = member_idx.last().copied().unwrap_or_default();
        cx.warn(
            format!("nodes[{last}].roles"),
            Some(&raw.nodes.value[last].roles),
            format!("{etcd_count} etcd members ({}): an even count tolerates no more failures than {} members", names.join(", "), etcd_count - 1),
            format!("use {} or {} members", etcd_count - 1, etcd_count + 1),
        );
    }

    // --- networking
    let rnet = raw.networking.as_ref();
    let parse_v4net =
        |cx: &mut Ctx<'_>, field: &str, v: Option<&S<String>>, default: &str| -> Ipv4Net {
            match v {
                None => default.parse().unwrap_or_default(),
                Some(s) => match Ipv4Net::from_str(s.value.trim()) {
                    Ok(n) if n.network() == n.addr() => n,
                    Ok(n) => {
                        cx.err(
                            field,
                            Some(s),
                            format!("'{}' has host bits set", shown(&s.value)),
                            format!("write the network address: {}", n.trunc()),
                        );
                        n.trunc()
                    }
                    Err(_) => {
                        let help = if IpNet::from_str(s.value.trim()).is_ok() {
                            "only IPv4 is supported for this range"
                        } else {
                            "write a CIDR like 10.244.0.0/16"
                        };
                        cx.err(
                            field,
                            Some(s),
                            format!("'{}' is not an IPv4 CIDR", shown(&s.value)),
                            help,
                        );
                        default.parse().unwrap_or_default()
                    }
                },
            }
        };
    let pod_cidr = parse_v4net(
        cx,
        "networking.podCidr",
        rnet.and_then(|n| n.pod_cidr.as_ref()),
        defaults::POD_CIDR,
    );
    let service_cidr = parse_v4net(
        cx,
        "networking.serviceCidr",
        rnet.and_then(|n| n.service_cidr.as_ref()),
        defaults::SERVICE_CIDR,
    );
    let node_cidr = match rnet.and_then(|n| n.node_cidr.as_ref()) {
        Some(s) => match IpNet::from_str(s.value.trim()) {
            Ok(n) => n.trunc(),
            Err(_) => {
                cx.err(
                    "networking.nodeCidr",
                    Some(s),
                    format!("'{}' is not a CIDR", shown(&s.value)),
                    "write the subnet the nodes share, e.g. 10.10.0.0/24",
                );
                IpNet::default()
            }
        },
        None => nodes.first().map_or(IpNet::default(), |n| match n.address {
            IpAddr::V4(_) => IpNet::new(n.address, 24)
                .map(|x| x.trunc())
                .unwrap_or_default(),
            IpAddr::V6(_) => IpNet::new(n.address, 64)
                .map(|x| x.trunc())
                .unwrap_or_default(),
        }),
    };
    for (i, n) in nodes.iter().enumerate() {
        if let Some(edge) = subnet_edge(&node_cidr, n.address) {
            cx.err(
                format!("nodes[{i}].address"),
                Some(&raw.nodes.value[i].address),
                format!("{} is the {edge} of the node subnet {node_cidr}", n.address),
                "hosts cannot use it: give the node another address in the subnet",
            );
        }
        if !node_cidr.contains(&n.address) && !n.address.is_unspecified() {
            cx.warn(
                format!("nodes[{i}].address"),
                Some(&raw.nodes.value[i].address),
                format!("{} is outside networking.nodeCidr {node_cidr}", n.address),
                "set networking.nodeCidr to the subnet the nodes share",
            );
        }
    }
    let dns_domain = rnet
        .and_then(|n| opt_str(&n.dns_domain))
        .unwrap_or(defaults::DNS_DOMAIN)
        .to_string();
    if !is_dns_subdomain(&dns_domain) {
        cx.err(
            "networking.dnsDomain",
            rnet.and_then(|n| n.dns_domain.as_ref()),
            format!("'{}' is not a DNS domain", shown(&dns_domain)),
            "the default is cluster.local",
        );
    }
    let mask_field = rnet.and_then(|n| n.node_cidr_mask_size.as_ref());
    let node_cidr_mask_size = mask_field
        .and_then(|m| {
            number(
                cx,
                "networking.nodeCidrMaskSize",
                m,
                1,
                30,
                "the default 24 gives each node 254 pod addresses",
            )
        })
        .and_then(|m| u8::try_from(m).ok())
        .unwrap_or(defaults::NODE_CIDR_MASK);
    let pod_field = rnet.and_then(|n| n.pod_cidr.as_ref());
    if pod_cidr.prefix_len() > 28 {
        cx.err(
            "networking.podCidr",
            pod_field,
            format!(
                "pod CIDR {pod_cidr} holds {} addresses, too few for even one node's pods",
                1u64 << (32 - u32::from(pod_cidr.prefix_len()))
            ),
            format!(
                "use a prefix from /8 to /{node_cidr_mask_size} (one node's range is a /{node_cidr_mask_size}), e.g. 10.244.0.0/16"
            ),
        );
    } else if node_cidr_mask_size < pod_cidr.prefix_len() {
        match mask_field {
            Some(m) => cx.err(
                "networking.nodeCidrMaskSize",
                Some(m),
                format!(
                    "per-node mask /{node_cidr_mask_size} is larger than the pod CIDR {pod_cidr}"
                ),
                format!(
                    "use a value from {} to 30 (default 24: 254 pods per node), or widen networking.podCidr",
                    pod_cidr.prefix_len()
                ),
            ),
            None => cx.err(
                "networking.podCidr",
                pod_field,
                format!(
                    "pod CIDR {pod_cidr} is smaller than one node's pod range (/{node_cidr_mask_size}, the default networking.nodeCidrMaskSize)"
                ),
                format!(
                    "use a pod CIDR from /8 to /{node_cidr_mask_size}, e.g. 10.244.0.0/16, or set networking.nodeCidrMaskSize between {} and 30",
                    pod_cidr.prefix_len()
                ),
            ),
        }
    }
    if service_cidr.prefix_len() > 28 {
        cx.err(
            "networking.serviceCidr",
            rnet.and_then(|n| n.service_cidr.as_ref()),
            format!("service CIDR {service_cidr} is too small: the cluster DNS Service takes its 10th address"),
            "use a prefix from /12 to /28, e.g. 10.96.0.0/12",
        );
    }
    if service_cidr.prefix_len() < 12 {
        cx.err(
            "networking.serviceCidr",
            rnet.and_then(|n| n.service_cidr.as_ref()),
            format!("service CIDR {service_cidr} is larger than kube-apiserver accepts"),
            "use a prefix of /12 or longer, e.g. 10.96.0.0/12",
        );
    }
    let (pod_n, svc_n) = (IpNet::V4(pod_cidr), IpNet::V4(service_cidr));
    if nets_overlap(&pod_n, &svc_n) {
        cx.err(
            "networking.serviceCidr",
            rnet.and_then(|n| n.service_cidr.as_ref()),
            format!("service CIDR {service_cidr} overlaps pod CIDR {pod_cidr}"),
            "choose disjoint ranges, e.g. pods 10.244.0.0/16 and services 10.96.0.0/16",
        );
    }
    if nets_overlap(&pod_n, &node_cidr) {
        cx.err("networking.podCidr", rnet.and_then(|n| n.pod_cidr.as_ref()), format!("pod CIDR {pod_cidr} overlaps the node network {node_cidr}"), "pick a pod range the nodes do not use, e.g. 10.244.0.0/16 (forgetting this is guide 000's most painful fix)");
    }
    if nets_overlap(&svc_n, &node_cidr) {
        cx.err(
            "networking.serviceCidr",
            rnet.and_then(|n| n.service_cidr.as_ref()),
            format!("service CIDR {service_cidr} overlaps the node network {node_cidr}"),
            "pick a service range the nodes do not use, e.g. 10.96.0.0/16",
        );
    }
    let kube_nodes = nodes
        .iter()
        .filter(|n| n.has(Role::ControlPlane) || n.has(Role::Worker))
        .count() as u64;
    if node_cidr_mask_size >= pod_cidr.prefix_len() {
        let cap = 1u64 << u32::from(node_cidr_mask_size - pod_cidr.prefix_len()).min(63);
        if kube_nodes > cap {
            cx.err("networking.podCidr", rnet.and_then(|n| n.pod_cidr.as_ref()), format!("pod CIDR {pod_cidr} at a per-node /{node_cidr_mask_size} holds {cap} nodes, but the cluster has {kube_nodes}"),
                format!("widen the pod CIDR (a /{} allows {} nodes at /{node_cidr_mask_size}) or raise nodeCidrMaskSize", pod_cidr.prefix_len().saturating_sub(1), cap * 2));
        }
    }

    // --- load balancer and endpoint
    let rlb = raw.load_balancer.as_ref();
    let vip = match rlb.and_then(|l| l.vip.as_ref()) {
        Some(v) => match IpAddr::from_str(v.value.trim()) {
            Ok(ip) => {
                if let Some(n) = nodes.iter().find(|n| n.address == ip) {
                    cx.err(
                        "loadBalancer.vip",
                        Some(v),
                        format!("VIP {ip} is node '{}''s own address", n.name),
                        "pick an unused address in the nodes' subnet for the VIP",
                    );
                }
                if !node_cidr.contains(&ip) {
                    cx.err("loadBalancer.vip", Some(v), format!("VIP {ip} is outside the nodes' subnet {node_cidr}"), "keepalived moves the VIP within one L2 subnet: pick an address inside networking.nodeCidr");
                } else if let Some(edge) = subnet_edge(&node_cidr, ip) {
                    cx.err(
                        "loadBalancer.vip",
                        Some(v),
                        format!("VIP {ip} is the {edge} of the node subnet {node_cidr}"),
                        "pick an unused host address in the nodes' subnet for the VIP",
                    );
                }
                if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
                    cx.err(
                        "loadBalancer.vip",
                        Some(v),
                        format!("{ip} cannot be a VIP"),
                        "pick an unused address in the nodes' subnet for the VIP",
                    );
                }
                Some(ip)
            }
            Err(_) => {
                cx.err(
                    "loadBalancer.vip",
                    Some(v),
                    format!("'{}' is not an IP address", shown(&v.value)),
                    "write the virtual IP, e.g. 10.10.0.100",
                );
                None
            }
        },
        None => None,
    };
    if !lbs.is_empty() && vip.is_none() && rlb.and_then(|l| l.vip.as_ref()).is_none() {
        let at = lbs
            .first()
            .and_then(|n| nodes.iter().position(|x| x.name == n.name))
            .map(|i| &raw.nodes.value[i].roles);
        cx.err(
            "loadBalancer.vip",
            at,
            format!("{} node(s) have the lb role but no VIP is set", lbs.len()),
            "add 'loadBalancer: {vip: <unused address in the node subnet>}'",
        );
    }
    if lbs.is_empty() && rlb.and_then(|l| l.vip.as_ref()).is_some() {
        cx.err(
            "loadBalancer.vip",
            rlb.and_then(|l| l.vip.as_ref()),
            "a VIP is set but no node has the lb role",
            "give two nodes the lb role, or remove loadBalancer",
        );
    }
    if lbs.len() == 1 {
        cx.warn(
            "nodes",
            Some(&raw.nodes),
            "a single lb node is a single point of failure",
            "add a second lb node so keepalived can move the VIP",
        );
    }
    let endpoint = match &raw.control_plane_endpoint {
        Some(e) => match parse_endpoint(&e.value) {
            Ok(ep) => {
                if let (Some(v), EndpointHost::Ip(ip)) = (vip, &ep.host)
                    && *ip != v
                {
                    cx.err(
                        "controlPlaneEndpoint",
                        Some(e),
                        format!("endpoint {ip} differs from loadBalancer.vip {v}"),
                        "the endpoint must be the VIP (or a DNS name resolving to it)",
                    );
                }
                ep
            }
            Err(why) => {
                cx.err(
                    "controlPlaneEndpoint",
                    Some(e),
                    format!("bad endpoint '{}': {why}", shown(&e.value)),
                    "write HOST:PORT, e.g. 10.10.0.100:6443 or api.example.com:6443",
                );
                Endpoint {
                    host: EndpointHost::Dns("invalid".into()),
                    port: defaults::API_PORT,
                }
            }
        },
        None => match (vip, cps.as_slice()) {
            (Some(v), _) => Endpoint {
                host: EndpointHost::Ip(v),
                port: defaults::API_PORT,
            },
            (None, [one]) => Endpoint {
                host: EndpointHost::Ip(one.address),
                port: defaults::API_PORT,
            },
            (None, []) => Endpoint {
                host: EndpointHost::Dns("invalid".into()),
                port: defaults::API_PORT,
            },
            (None, many) => {
                cx.err::<()>("controlPlaneEndpoint", None, format!("{} control planes but no endpoint in front of them", many.len()), "set controlPlaneEndpoint to a VIP or DNS name (and add lb nodes with loadBalancer.vip), e.g. 'controlPlaneEndpoint: 10.10.0.100:6443'");
                Endpoint {
                    host: EndpointHost::Dns("invalid".into()),
                    port: defaults::API_PORT,
                }
            }
        },
    };
    if let Some(i) = rlb.and_then(|l| l.interface.as_ref())
        && let Err(why) = grammar::interface(&i.value)
    {
        cx.err(
            "loadBalancer.interface",
            Some(i),
            format!("'{}' is not a network interface name: {why}", shown(&i.value)),
            "write the LB hosts' interface on the node network as `ip link` shows it, e.g. eth0 or enp0s2 (at most 15 letters, digits, '_', '.' or '-')",
        );
    }
    let virtual_router_id = rlb
        .and_then(|l| l.virtual_router_id.as_ref())
        .and_then(|v| {
            number(
                cx,
                "loadBalancer.virtualRouterId",
                v,
                1,
                255,
                "both LBs share it; other VRRP groups on the subnet must use another id",
            )
        })
        .and_then(|v| u8::try_from(v).ok())
        .unwrap_or(defaults::VRRP_ROUTER_ID);
    let stats_field = rlb.and_then(|l| l.stats_port.as_ref());
    let stats_port = stats_field
        .and_then(|v| port(cx, "loadBalancer.statsPort", v, defaults::LB_STATS_PORT))
        .unwrap_or(defaults::LB_STATS_PORT);
    let etcd_port_field = rlb.and_then(|l| l.etcd_port.as_ref());
    let etcd_port = etcd_port_field.and_then(|v| port(cx, "loadBalancer.etcdPort", v, 2379));
    let load_balancer = vip.map(|vip| LoadBalancer {
        vip,
        interface: rlb
            .and_then(|l| opt_str(&l.interface))
            .unwrap_or(defaults::LB_INTERFACE)
            .to_string(),
        virtual_router_id,
        stats_port,
        etcd_port,
    });
    if let (Some(p), Some(port)) = (etcd_port_field, etcd_port) {
        let field = "loadBalancer.etcdPort";
        if rlb.and_then(|l| l.vip.as_ref()).is_none() {
            cx.err(
                field,
                Some(p),
                "etcdPort is set but there is no load balancer (no loadBalancer.vip)",
                "set loadBalancer.vip and give two nodes the lb role, or remove etcdPort",
            );
        }
        if port == endpoint.port {
            cx.err(field, Some(p), format!("etcdPort {port} is also the API port (the controlPlaneEndpoint port)"), "HAProxy binds both frontends on every address of the LB: pick another port, e.g. 2379");
        } else if port == stats_port {
            cx.err(
                field,
                Some(p),
                format!("etcdPort {port} is also loadBalancer.statsPort"),
                format!("pick another port, e.g. 2379 (the stats page is on {stats_port})"),
            );
        } else if let Some(n) = lbs.iter().find(|n| n.ssh.port == port) {
            cx.err(
                field,
                Some(p),
                format!("etcdPort {port} is the SSH port of lb node '{}'", n.name),
                "HAProxy could not bind it next to sshd: pick another port, e.g. 2379",
            );
        } else if let Some(n) = lbs
            .iter()
            .find(|n| n.has(Role::Etcd))
            .filter(|_| (2379..=2381).contains(&port))
        {
            cx.err(
                field,
                Some(p),
                format!(
                    "lb node '{}' is also an etcd member, whose etcd listens on port {port}",
                    n.name
                ),
                "pick a port etcd does not use (not 2379-2381), or move etcd off the lb nodes",
            );
        }
    }

    // --- ports: what sshd, HAProxy and the fixed listeners of each node's services bind
    let etcd_member = |n: &Node| match topology {
        EtcdTopology::External => n.has(Role::Etcd),
        EtcdTopology::Stacked => n.has(Role::ControlPlane),
    };
    let etcd_static_pod = raw
        .etcd
        .as_ref()
        .and_then(|e| e.deployment.as_ref())
        .is_some_and(|d| d.value == "static-pod");
    let local_proxy = topology == EtcdTopology::External
        && raw
            .etcd
            .as_ref()
            .and_then(|e| e.apiserver_access.as_ref())
            .is_none_or(|a| a.value == "local-proxy");
    let (mut api_reported, mut stats_reported) = (false, false);
    for (i, n) in nodes.iter().enumerate() {
        let fixed = fixed_ports(n, etcd_member(n), etcd_static_pod, local_proxy);
        let (field, at) = &ssh_port_at[i];
        if let Some((_, what)) = fixed.iter().find(|(p, _)| *p == n.ssh.port) {
            cx.err(
                field.as_str(),
                *at,
                format!(
                    "SSH port {} of node '{}' is also {what} there",
                    n.ssh.port, n.name
                ),
                "sshd already holds that port, so the service could not start: run sshd on another port and write it here",
            );
        }
        if !n.has(Role::Lb) {
            continue;
        }
        let ep = raw.control_plane_endpoint.as_ref();
        if api_reported {
            // Said once for all LBs.
        } else if n.ssh.port == endpoint.port {
            api_reported = true;
            cx.err(
                "controlPlaneEndpoint",
                ep,
                format!(
                    "API port {} is the SSH port of lb node '{}'",
                    endpoint.port, n.name
                ),
                "HAProxy binds the API port on every address of the LB: use another port, e.g. 6443",
            );
        } else if let Some((_, what)) = fixed.iter().find(|(p, _)| *p == endpoint.port) {
            api_reported = true;
            cx.err(
                "controlPlaneEndpoint",
                ep,
                format!(
                    "API port {} is also {what} on lb node '{}'",
                    endpoint.port, n.name
                ),
                "HAProxy binds the API port on every address of the LB: use another port, e.g. 6443",
            );
        }
        let clash = if stats_reported || rlb.and_then(|l| l.vip.as_ref()).is_none() {
            None
        } else if stats_port == endpoint.port {
            Some(format!(
                "statsPort {stats_port} is also the API port (the controlPlaneEndpoint port)"
            ))
        } else if stats_port == n.ssh.port {
            Some(format!(
                "statsPort {stats_port} is the SSH port of lb node '{}'",
                n.name
            ))
        } else {
            fixed
                .iter()
                .find(|(p, _)| *p == stats_port)
                .map(|(_, what)| {
                    format!(
                        "statsPort {stats_port} is also {what} on lb node '{}'",
                        n.name
                    )
                })
        };
        if let Some(msg) = clash {
            cx.err(
                "loadBalancer.statsPort",
                stats_field,
                msg,
                format!(
                    "HAProxy binds the stats page on each LB's own address: pick a free port, e.g. {}",
                    defaults::LB_STATS_PORT
                ),
            );
            stats_reported = true;
        }
    }

    // --- CNI, MetalLB
    let rcni = raw.cni.as_ref();
    let plugin = match rcni.and_then(|c| c.plugin.as_ref()) {
        None => CniPlugin::Calico,
        Some(p) => match p.value.as_str() {
            "calico" => CniPlugin::Calico,
            "flannel" => CniPlugin::Flannel,
            other => {
                cx.err(
                    "cni.plugin",
                    Some(p),
                    format!("unknown CNI '{}'", shown(other)),
                    "use 'calico' or 'flannel'",
                );
                CniPlugin::Calico
            }
        },
    };
    let encapsulation = match rcni.and_then(|c| c.encapsulation.as_ref()) {
        None => defaults::CALICO_ENCAPSULATION.to_string(),
        Some(e) => {
            const OK: [&str; 5] = [
                "VXLANCrossSubnet",
                "VXLAN",
                "IPIP",
                "IPIPCrossSubnet",
                "None",
            ];
            if !OK.contains(&e.value.as_str()) {
                cx.err(
                    "cni.encapsulation",
                    Some(e),
                    format!("unknown encapsulation '{}'", shown(&e.value)),
                    format!("use one of {}", OK.join(", ")),
                );
            }
            e.value.clone()
        }
    };
    let worker_join = match raw.worker_join.as_ref() {
        None => WorkerJoin::Certificate,
        Some(j) => match j.value.as_str() {
            "certificate" => WorkerJoin::Certificate,
            "tlsBootstrap" => WorkerJoin::TlsBootstrap,
            other => {
                cx.err(
                    "workerJoin",
                    Some(j),
                    format!("unknown worker join method '{}'", shown(other)),
                    "use 'certificate' (kubeha issues each kubelet's client certificate) or 'tlsBootstrap' (kubeadm's bootstrap token and CSR)",
                );
                WorkerJoin::Certificate
            }
        },
    };
    let metallb = raw.metallb.as_ref().map(|m| {
        let mut addresses = Vec::new();
        for (k, a) in m.addresses.value.iter().enumerate() {
            let field = format!("metallb.addresses[{k}]");
            match parse_pool(&a.value) {
                None => cx.err(
                    &field,
                    Some(a),
                    format!("'{}' is neither a CIDR nor a FIRST-LAST range", shown(&a.value)),
                    "write e.g. 10.10.0.200-10.10.0.220 or 10.10.0.240/28",
                ),
                Some((lo, hi)) => {
                    // Written the way MetalLB parses it: no spaces, a CIDR without host bits.
                    addresses.push(match IpNet::from_str(a.value.trim()) {
                        Ok(net) => net.trunc().to_string(),
                        Err(_) => format!("{lo}-{hi}"),
                    });
                    if !node_cidr.contains(&lo) || !node_cidr.contains(&hi) {
                        cx.warn(
                            &field,
                            Some(a),
                            format!(
                                "pool {} is not inside the nodes' subnet {node_cidr}",
                                shown(&a.value)
                            ),
                            "MetalLB's L2 mode answers ARP only on the nodes' own segment: use addresses of networking.nodeCidr that no host uses, unless your routers send this range to the nodes",
                        );
                    }
                    let inside = |ip: IpAddr| ip >= lo && ip <= hi;
                    if let Some(n) = nodes.iter().find(|n| inside(n.address)) {
                        cx.err(
                            &field,
                            Some(a),
                            format!(
                                "pool {} contains node '{}''s address {}",
                                shown(&a.value), n.name, n.address
                            ),
                            "MetalLB would hand out a node's address: pick a free range",
                        );
                    }
                    if let Some(v) = vip.filter(|v| inside(*v)) {
                        cx.err(
                            &field,
                            Some(a),
                            format!("pool {} contains the VIP {v}", shown(&a.value)),
                            "keep the VIP out of the MetalLB pool",
                        );
                    }
                    if pod_n.contains(&lo) || svc_n.contains(&lo) {
                        cx.err(
                            &field,
                            Some(a),
                            format!("pool {} lies in the pod or service CIDR", shown(&a.value)),
                            "MetalLB addresses must be on the node network",
                        );
                    }
                }
            }
        }
        if m.addresses.value.is_empty() {
            cx.err(
                "metallb.addresses",
                Some(&m.addresses),
                "MetalLB pool is empty",
                "give at least one range, or remove the metallb section",
            );
        }
        MetalLb { addresses }
    });

    // --- etcd
    let retcd = raw.etcd.as_ref();
    let deployment = match retcd.and_then(|e| e.deployment.as_ref()) {
        None => EtcdDeployment::Systemd,
        Some(d) => match d.value.as_str() {
            "systemd" => EtcdDeployment::Systemd,
            "static-pod" => EtcdDeployment::StaticPod,
            other => {
                cx.err(
                    "etcd.deployment",
                    Some(d),
                    format!("unknown etcd deployment '{}'", shown(other)),
                    "use 'systemd' or 'static-pod'",
                );
                EtcdDeployment::Systemd
            }
        },
    };
    let apiserver_access = match retcd.and_then(|e| e.apiserver_access.as_ref()) {
        None => {
            if topology == EtcdTopology::External {
                EtcdAccess::LocalProxy
            } else {
                EtcdAccess::Direct
            }
        }
        Some(a) => match a.value.as_str() {
            "local-proxy" => {
                if topology == EtcdTopology::Stacked {
                    cx.err("etcd.apiserverAccess", Some(a), "local-proxy needs the external topology", "stacked control planes reach their own etcd on 127.0.0.1: remove this field");
                }
                EtcdAccess::LocalProxy
            }
            "direct" => EtcdAccess::Direct,
            other => {
                cx.err(
                    "etcd.apiserverAccess",
                    Some(a),
                    format!("unknown access mode '{}'", shown(other)),
                    "use 'local-proxy' or 'direct'",
                );
                EtcdAccess::Direct
            }
        },
    };
    let local_proxy = match retcd.and_then(|e| e.local_proxy.as_ref()) {
        None => EtcdProxyDeployment::StaticPod,
        Some(p) => {
            let mode = match p.value.as_str() {
                "static-pod" => Some(EtcdProxyDeployment::StaticPod),
                "systemd" => Some(EtcdProxyDeployment::Systemd),
                other => {
                    cx.err("etcd.localProxy", Some(p), format!("unknown local proxy deployment '{}'", shown(other)), "use 'static-pod' (the default: a kubelet static pod) or 'systemd' (a kubeha-etcd-proxy.service unit)");
                    None
                }
            };
            if mode.is_some() {
                if topology != EtcdTopology::External {
                    cx.err("etcd.localProxy", Some(p), "etcd.localProxy needs the external topology", "stacked control planes reach their own etcd member on 127.0.0.1 and run no proxy: remove etcd.localProxy");
                } else if apiserver_access != EtcdAccess::LocalProxy {
                    cx.err("etcd.localProxy", Some(p), "etcd.localProxy is set, but API servers reach etcd directly (etcd.apiserverAccess: direct)", "remove etcd.localProxy, or set 'etcd.apiserverAccess: local-proxy'");
                }
            }
            mode.unwrap_or(EtcdProxyDeployment::StaticPod)
        }
    };
    let members: Vec<&Node> = match topology {
        EtcdTopology::External => nodes.iter().filter(|n| n.has(Role::Etcd)).collect(),
        EtcdTopology::Stacked => cps.clone(),
    };
    let ca_host = match retcd.and_then(|e| e.ca_host.as_ref()) {
        Some(h) => {
            if !members.iter().any(|m| m.name == h.value) {
                cx.err("etcd.caHost", Some(h), format!("'{}' is not an etcd member", shown(&h.value)), "name the etcd node that keeps etcd/ca.key, or remove the field (default: the first etcd node)");
            }
            h.value.clone()
        }
        None => members.first().map(|m| m.name.clone()).unwrap_or_default(),
    };
    let etcd = EtcdSettings {
        deployment,
        data_dir: retcd
            .and_then(|e| opt_str(&e.data_dir))
            .unwrap_or(defaults::ETCD_DATA_DIR)
            .to_string(),
        apiserver_access,
        ca_host,
        binary: retcd
            .and_then(|e| opt_str(&e.binary))
            .unwrap_or(defaults::ETCD_BINARY)
            .to_string(),
        local_proxy,
    };
    if let Some(v) = retcd.and_then(|e| e.data_dir.as_ref())
        && let Err(why) = grammar::data_dir(&v.value)
    {
        cx.err(
            "etcd.dataDir",
            Some(v),
            why,
            "give etcd a directory of its own, written as an absolute path without '..', spaces or a trailing '/', e.g. /var/lib/etcd",
        );
    }
    if let Some(v) = retcd.and_then(|e| e.binary.as_ref())
        && let Err(why) = grammar::binary_path(&v.value)
    {
        cx.err(
            "etcd.binary",
            Some(v),
            why,
            "write the absolute path of the etcd program, e.g. /usr/local/bin/etcd",
        );
    }

    // --- certificates
    let rc = raw.certificates.as_ref();
    let key_algorithm = match rc.and_then(|c| c.key_algorithm.as_ref()) {
        None => KeyAlgorithm::Rsa2048,
        Some(k) => {
            match k.value.to_ascii_lowercase().as_str() {
                "rsa-2048" => KeyAlgorithm::Rsa2048,
                "ecdsa-p256" => KeyAlgorithm::EcdsaP256,
                _ => {
                    cx.err("certificates.keyAlgorithm", Some(k), format!("unsupported key algorithm '{}'", shown(&k.value)), "use 'rsa-2048' (kubeadm's default) or 'ecdsa-p256' (much faster to generate)");
                    KeyAlgorithm::Rsa2048
                }
            }
        }
    };
    // `None` when the value is wrong (and reported): then no rule compares it.
    let hours = |cx: &mut Ctx<'_>, field: &str, v: Option<&S<String>>, default: u32| match v {
        None => Some(default),
        Some(s) => match parse_hours(&s.value) {
            None => {
                cx.err(
                    field,
                    Some(s),
                    format!("'{}' is not a duration", shown(&s.value)),
                    "write hours, days or years: 8760h, 365d, 1y",
                );
                None
            }
            Some(h) if h > defaults::MAX_VALIDITY_HOURS => {
                cx.err(
                    field,
                    Some(s),
                    format!(
                        "'{}' is longer than the maximum validity, 100y ({}h)",
                        s.value,
                        defaults::MAX_VALIDITY_HOURS
                    ),
                    "write 100y or less: X.509 dates end with the year 9999",
                );
                None
            }
            Some(h) => Some(h),
        },
    };
    let validity = hours(
        cx,
        "certificates.validity",
        rc.and_then(|c| c.validity.as_ref()),
        defaults::LEAF_VALIDITY_HOURS,
    );
    let ca_validity = hours(
        cx,
        "certificates.caValidity",
        rc.and_then(|c| c.ca_validity.as_ref()),
        defaults::CA_VALIDITY_HOURS,
    );
    if let (Some(leaf), Some(ca)) = (validity, ca_validity)
        && leaf > ca
    {
        cx.err(
            "certificates.validity",
            rc.and_then(|c| c.validity.as_ref()),
            "leaf certificates would outlive their CA",
            "keep certificates.validity at or below certificates.caValidity",
        );
    }
    let validity_hours = validity.unwrap_or(defaults::LEAF_VALIDITY_HOURS);
    let ca_validity_hours = ca_validity.unwrap_or(defaults::CA_VALIDITY_HOURS);
    let mut apiserver_extra_sans = Vec::new();
    for (k, s) in rc
        .map(|c| c.apiserver_extra_sans.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let v = s.value.trim();
        let ok = IpAddr::from_str(v).is_ok()
            || is_dns_subdomain(v)
            || v.strip_prefix("*.").is_some_and(is_dns_subdomain);
        if ok {
            apiserver_extra_sans.push(v.to_string());
        } else {
            cx.err(
                format!("certificates.apiserverExtraSans[{k}]"),
                Some(s),
                format!("'{}' is neither an IP address nor a DNS name", shown(v)),
                "kubeadm would drop it silently; fix or remove it",
            );
        }
    }

    // --- runtime, images, provisioning
    let cri = raw
        .container_runtime
        .as_ref()
        .and_then(|c| c.endpoint.as_ref());
    let container_runtime = ContainerRuntime {
        endpoint: cri.map_or(defaults::CRI_ENDPOINT.to_string(), |c| c.value.clone()),
    };
    if let Some(c) = cri {
        let why = match c.value.strip_prefix("unix://") {
            None => Some("it does not start with unix://".to_string()),
            Some(path) => grammar::host_path(path).err(),
        };
        if let Some(why) = why {
            cx.err(
                "containerRuntime.endpoint",
                Some(c),
                format!("'{}' is not a unix socket URL: {why}", shown(&c.value)),
                "write unix:// and the socket's absolute path, e.g. unix:///var/run/containerd/containerd.sock",
            );
        }
    }
    let image_repository = opt_str(&raw.image_repository)
        .unwrap_or(defaults::IMAGE_REPOSITORY)
        .trim_end_matches('/')
        .to_string();
    if let Err(why) = grammar::image_repository(&image_repository) {
        cx.err(
            "imageRepository",
            raw.image_repository.as_ref(),
            format!("'{}' is not an image repository: {why}", shown(&image_repository)),
            "write a registry host with an optional port and path, e.g. registry.k8s.io or registry.example.com:5000/k8s",
        );
    }
    let rp = raw.provisioning.as_ref();
    let gateway =
        rp.and_then(|p| p.gateway.as_ref())
            .and_then(|g| match IpAddr::from_str(&g.value) {
                Ok(ip) => Some(ip),
                Err(_) => {
                    cx.err(
                        "provisioning.gateway",
                        Some(g),
                        format!("'{}' is not an IP address", shown(&g.value)),
                        "write the router's address on the node network, e.g. 10.10.0.1",
                    );
                    None
                }
            });
    let mut nameservers = Vec::new();
    for (k, s) in rp
        .map(|p| p.nameservers.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match IpAddr::from_str(&s.value) {
            Ok(ip) => nameservers.push(ip),
            Err(_) => cx.err(
                format!("provisioning.nameservers[{k}]"),
                Some(s),
                format!("'{}' is not an IP address", shown(&s.value)),
                "write a DNS server's IP address, e.g. 10.10.0.1",
            ),
        }
    }
    if let Some((g, ip)) = rp.and_then(|p| p.gateway.as_ref()).zip(gateway) {
        if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
            cx.err(
                "provisioning.gateway",
                Some(g),
                format!("{ip} cannot be a gateway"),
                "write the router's address on the node network, e.g. 10.10.0.1",
            );
        } else if let Some(edge) = subnet_edge(&node_cidr, ip) {
            cx.err(
                "provisioning.gateway",
                Some(g),
                format!("gateway {ip} is the {edge} of the node subnet {node_cidr}"),
                "write the router's address on the node network, e.g. 10.10.0.1",
            );
        } else if !node_cidr.contains(&ip) {
            cx.warn(
                "provisioning.gateway",
                Some(g),
                format!("gateway {ip} is outside the nodes' subnet {node_cidr}"),
                "netplan's default route needs a gateway the node reaches directly: use the router's address on networking.nodeCidr",
            );
        }
    }
    if let Some(u) = rp.and_then(|p| p.user.as_ref())
        && let Err(why) = grammar::user_name(&u.value)
    {
        cx.err(
            "provisioning.user",
            Some(u),
            format!("'{}' is not a user name: {why}", shown(&u.value)),
            "write a login name: a lower-case letter or '_', then lower-case letters, digits, '_' or '-', at most 32 characters, e.g. k8sadmin",
        );
    }
    if let Some(i) = rp.and_then(|p| p.interface.as_ref())
        && let Err(why) = grammar::interface(&i.value)
    {
        cx.err(
            "provisioning.interface",
            Some(i),
            format!("'{}' is not a network interface name: {why}", shown(&i.value)),
            "write the machines' interface on the node network as `ip link` shows it, e.g. enp0s2 (at most 15 letters, digits, '_', '.' or '-')",
        );
    }
    if let Some(t) = rp.and_then(|p| p.timezone.as_ref())
        && let Err(why) = grammar::time_zone(&t.value)
    {
        cx.err(
            "provisioning.timezone",
            Some(t),
            why,
            "write an IANA zone name such as Europe/Kyiv, America/New_York or UTC (see /usr/share/zoneinfo)",
        );
    }
    for (k, key) in rp
        .map(|p| p.ssh_authorized_keys.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if let Err(why) = grammar::ssh_public_key(key.value.trim()) {
            cx.err(
                format!("provisioning.sshAuthorizedKeys[{k}]"),
                Some(key),
                format!("not an SSH public key: {why}"),
                "paste one line of your public key file (e.g. the content of ~/.ssh/id_ed25519.pub: 'ssh-ed25519 AAAA… you@host'); a placeholder must be replaced",
            );
        }
    }
    let provisioning = Provisioning {
        user: rp
            .and_then(|p| opt_str(&p.user))
            .map_or(default_user.clone(), str::to_string),
        ssh_authorized_keys: rp
            .map(|p| {
                p.ssh_authorized_keys
                    .iter()
                    .map(|k| k.value.trim().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        interface: rp.and_then(|p| opt_str(&p.interface)).map_or_else(
            || {
                load_balancer
                    .as_ref()
                    .map_or(defaults::NETPLAN_INTERFACE.to_string(), |l| {
                        l.interface.clone()
                    })
            },
            str::to_string,
        ),
        timezone: rp.and_then(|p| p.timezone.as_ref().map(|t| t.value.clone())),
        gateway,
        nameservers,
    };

    Some(Spec {
        name,
        base_domain,
        kubernetes_version,
        etcd_version,
        topology,
        endpoint,
        nodes,
        networking: Networking {
            node_cidr,
            pod_cidr,
            service_cidr,
            dns_domain,
            node_cidr_mask_size,
        },
        cni: Cni {
            plugin,
            encapsulation,
        },
        metallb,
        load_balancer,
        etcd,
        certificates: Certificates {
            key_algorithm,
            validity_hours,
            ca_validity_hours,
            apiserver_extra_sans,
        },
        container_runtime,
        image_repository,
        worker_join,
        provisioning,
    })
}
