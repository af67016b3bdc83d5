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

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
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
            .map_err(|_| format!("port '{p}' is not a number from 1 to 65535"))?,
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
            "'{host}' is neither an IP address nor a lower-case DNS name"
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
            format!("cluster name '{name}' is not a DNS label"),
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
            format!("'{base_domain}' is not a DNS domain"),
            "use lower-case labels separated by dots, e.g. 'k8s.local'",
        );
    }
    let kubernetes_version = match &raw.kubernetes_version {
        None => KubeVersion::DEFAULT,
        Some(v) => match KubeVersion::parse(&v.value) {
            Some(k) if k.major == 1 && KubeVersion::SUPPORTED_MINORS.contains(&k.minor) => k,
            _ => {
                cx.err("kubernetesVersion", Some(v), format!("unsupported Kubernetes version '{}'", v.value),
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
                    format!("unsupported etcd version '{}'", v.value),
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
        .and_then(|s| s.port.as_ref().map(|p| p.value))
        .unwrap_or(defaults::SSH_PORT);
    let default_key = ssh_default
        .and_then(|s| opt_str(&s.key))
        .map(str::to_string);

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
            cx.err(f("name"), Some(&rn.name), format!("node name '{nname}' is not a lower-case DNS label"), "use lower-case letters, digits and '-' (it becomes the host name, the Kubernetes node name and the etcd member name)");
        }
        if let Some(j) = names.insert(nname.clone(), i) {
            cx.err(
                f("name"),
                Some(&rn.name),
                format!("node name '{nname}' is also used by nodes[{j}]"),
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
                    format!("'{}' is not an IP address", rn.address.value),
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
                        format!("unknown role '{other}'"),
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
        let node_ssh = Ssh {
            user: ssh
                .and_then(|s| opt_str(&s.user))
                .map(str::to_string)
                .unwrap_or_else(|| default_user.clone()),
            port: ssh
                .and_then(|s| s.port.as_ref().map(|p| p.value))
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
                        format!("unknown taint effect '{other}'"),
                        "use NoSchedule, PreferNoSchedule or NoExecute",
                    );
                    TaintEffect::NoSchedule
                }
            };
            taints.push(Taint {
                key: t.key.value.clone(),
                value: t.value.clone(),
                effect,
            });
        }
        if let Some(p) = &rn.lb_priority {
            if !roles.contains(&Role::Lb) {
                cx.warn(
                    f("lbPriority"),
                    Some(p),
                    format!("lbPriority is ignored: node '{nname}' has no lb role"),
                    "remove it, or add the lb role",
                );
            }
            if p.value == 0 || p.value == 255 {
                cx.err(
                    f("lbPriority"),
                    Some(p),
                    "VRRP priority must be between 1 and 254",
                    "use e.g. 101 for the preferred LB and 100 for the other",
                );
            }
        }
        nodes.push(Node {
            name: nname,
            address,
            roles,
            ssh: node_ssh,
            labels: rn.labels.clone(),
            taints,
            lb_priority: rn.lb_priority.as_ref().map(|p| p.value),
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
                cx.err("topology", Some(t), format!("unknown topology '{other}'"), "use 'external' (dedicated etcd nodes) or 'stacked' (etcd on the control planes)");
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
        cx.warn("nodes", Some(&raw.nodes), format!("{etcd_count} etcd members: an even count tolerates no more failures than {} members", etcd_count - 1), format!("use {} or {} members", etcd_count - 1, etcd_count + 1));
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
                            format!("'{}' has host bits set", s.value),
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
                            format!("'{}' is not an IPv4 CIDR", s.value),
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
                    format!("'{}' is not a CIDR", s.value),
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
            format!("'{dns_domain}' is not a DNS domain"),
            "the default is cluster.local",
        );
    }
    let mask_field = rnet.and_then(|n| n.node_cidr_mask_size.as_ref());
    let node_cidr_mask_size = mask_field.map_or(defaults::NODE_CIDR_MASK, |m| m.value);
    if node_cidr_mask_size < pod_cidr.prefix_len() || node_cidr_mask_size > 30 {
        cx.err(
            "networking.nodeCidrMaskSize",
            mask_field,
            format!("per-node mask /{node_cidr_mask_size} does not fit the pod CIDR {pod_cidr}"),
            format!(
                "use a value between {} and 30 (default 24: 254 pods per node)",
                pod_cidr.prefix_len()
            ),
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
                }
                Some(ip)
            }
            Err(_) => {
                cx.err(
                    "loadBalancer.vip",
                    Some(v),
                    format!("'{}' is not an IP address", v.value),
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
                    format!("bad endpoint '{}': {why}", e.value),
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
    let load_balancer = vip.map(|vip| LoadBalancer {
        vip,
        interface: rlb
            .and_then(|l| opt_str(&l.interface))
            .unwrap_or(defaults::LB_INTERFACE)
            .to_string(),
        virtual_router_id: rlb
            .and_then(|l| l.virtual_router_id.as_ref().map(|v| v.value))
            .unwrap_or(defaults::VRRP_ROUTER_ID),
        stats_port: rlb
            .and_then(|l| l.stats_port.as_ref().map(|v| v.value))
            .unwrap_or(defaults::LB_STATS_PORT),
        etcd_port: rlb.and_then(|l| l.etcd_port.as_ref().map(|v| v.value)),
    });
    if let Some(p) = rlb.and_then(|l| l.etcd_port.as_ref()) {
        let port = p.value;
        let stats_port = rlb
            .and_then(|l| l.stats_port.as_ref().map(|v| v.value))
            .unwrap_or(defaults::LB_STATS_PORT);
        let field = "loadBalancer.etcdPort";
        if rlb.and_then(|l| l.vip.as_ref()).is_none() {
            cx.err(
                field,
                Some(p),
                "etcdPort is set but there is no load balancer (no loadBalancer.vip)",
                "set loadBalancer.vip and give two nodes the lb role, or remove etcdPort",
            );
        }
        if port == 0 {
            cx.err(
                field,
                Some(p),
                "port 0 is not usable",
                "use a free TCP port, e.g. 2379",
            );
        } else if port == endpoint.port {
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
    if let Some(v) = rlb.and_then(|l| l.virtual_router_id.as_ref())
        && v.value == 0
    {
        cx.err(
            "loadBalancer.virtualRouterId",
            Some(v),
            "VRRP router id must be 1-255",
            "both LBs share it; other VRRP groups on the subnet must use another id",
        );
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
                    format!("unknown CNI '{other}'"),
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
                    format!("unknown encapsulation '{}'", e.value),
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
                    format!("unknown worker join method '{other}'"),
                    "use 'certificate' (kubeha issues each kubelet's client certificate) or 'tlsBootstrap' (kubeadm's bootstrap token and CSR)",
                );
                WorkerJoin::Certificate
            }
        },
    };
    let metallb = raw.metallb.as_ref().map(|m| {
        for (k, a) in m.addresses.value.iter().enumerate() {
            let field = format!("metallb.addresses[{k}]");
            match parse_pool(&a.value) {
                None => cx.err(
                    &field,
                    Some(a),
                    format!("'{}' is neither a CIDR nor a FIRST-LAST range", a.value),
                    "write e.g. 10.10.0.200-10.10.0.220 or 10.10.0.240/28",
                ),
                Some((lo, hi)) => {
                    let inside = |ip: IpAddr| ip >= lo && ip <= hi;
                    if let Some(n) = nodes.iter().find(|n| inside(n.address)) {
                        cx.err(
                            &field,
                            Some(a),
                            format!(
                                "pool {} contains node '{}''s address {}",
                                a.value, n.name, n.address
                            ),
                            "MetalLB would hand out a node's address: pick a free range",
                        );
                    }
                    if let Some(v) = vip.filter(|v| inside(*v)) {
                        cx.err(
                            &field,
                            Some(a),
                            format!("pool {} contains the VIP {v}", a.value),
                            "keep the VIP out of the MetalLB pool",
                        );
                    }
                    if pod_n.contains(&lo) || svc_n.contains(&lo) {
                        cx.err(
                            &field,
                            Some(a),
                            format!("pool {} lies in the pod or service CIDR", a.value),
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
        MetalLb {
            addresses: m
                .addresses
                .value
                .iter()
                .map(|a| a.value.trim().to_string())
                .collect(),
        }
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
                    format!("unknown etcd deployment '{other}'"),
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
                    format!("unknown access mode '{other}'"),
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
                    cx.err("etcd.localProxy", Some(p), format!("unknown local proxy deployment '{other}'"), "use 'static-pod' (the default: a kubelet static pod) or 'systemd' (a kubeha-etcd-proxy.service unit)");
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
                cx.err("etcd.caHost", Some(h), format!("'{}' is not an etcd member", h.value), "name the etcd node that keeps etcd/ca.key, or remove the field (default: the first etcd node)");
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
    for (field, v) in [
        ("etcd.dataDir", retcd.and_then(|e| e.data_dir.as_ref())),
        ("etcd.binary", retcd.and_then(|e| e.binary.as_ref())),
    ] {
        if let Some(v) = v
            && !v.value.starts_with('/')
        {
            cx.err(
                field,
                Some(v),
                format!("'{}' is not an absolute path", v.value),
                "write a path starting with '/'",
            );
        }
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
                    cx.err("certificates.keyAlgorithm", Some(k), format!("unsupported key algorithm '{}'", k.value), "use 'rsa-2048' (kubeadm's default) or 'ecdsa-p256' (much faster to generate)");
                    KeyAlgorithm::Rsa2048
                }
            }
        }
    };
    let hours = |cx: &mut Ctx<'_>, field: &str, v: Option<&S<String>>, default: u32| match v {
        None => default,
        Some(s) => parse_hours(&s.value).unwrap_or_else(|| {
            cx.err(
                field,
                Some(s),
                format!("'{}' is not a duration", s.value),
                "write hours, days or years: 8760h, 365d, 1y",
            );
            default
        }),
    };
    let validity_hours = hours(
        cx,
        "certificates.validity",
        rc.and_then(|c| c.validity.as_ref()),
        defaults::LEAF_VALIDITY_HOURS,
    );
    let ca_validity_hours = hours(
        cx,
        "certificates.caValidity",
        rc.and_then(|c| c.ca_validity.as_ref()),
        defaults::CA_VALIDITY_HOURS,
    );
    if validity_hours > ca_validity_hours {
        cx.err(
            "certificates.validity",
            rc.and_then(|c| c.validity.as_ref()),
            "leaf certificates would outlive their CA",
            "keep certificates.validity at or below certificates.caValidity",
        );
    }
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
                format!("'{v}' is neither an IP address nor a DNS name"),
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
    if let Some(c) = cri
        && !c.value.starts_with("unix:///")
    {
        cx.err(
            "containerRuntime.endpoint",
            Some(c),
            format!("'{}' is not a unix socket URL", c.value),
            "write e.g. unix:///var/run/containerd/containerd.sock",
        );
    }
    let image_repository = opt_str(&raw.image_repository)
        .unwrap_or(defaults::IMAGE_REPOSITORY)
        .trim_end_matches('/')
        .to_string();
    if image_repository.is_empty() || image_repository.contains(char::is_whitespace) {
        cx.err(
            "imageRepository",
            raw.image_repository.as_ref(),
            "image repository is empty or has spaces",
            "write e.g. registry.k8s.io or registry.example.com/k8s",
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
                        format!("'{}' is not an IP address", g.value),
                        "",
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
                format!("'{}' is not an IP address", s.value),
                "",
            ),
        }
    }
    let provisioning = Provisioning {
        user: rp
            .and_then(|p| opt_str(&p.user))
            .map_or(default_user.clone(), str::to_string),
        ssh_authorized_keys: rp
            .map(|p| p.ssh_authorized_keys.clone())
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
        timezone: rp.and_then(|p| p.timezone.clone()),
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
