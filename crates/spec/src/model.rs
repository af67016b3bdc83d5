//! The resolved cluster specification: what every other part of kubeha consumes.
//!
//! Values here are validated and carry their defaults; nothing in this module parses text.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
};

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

/// A validated cluster file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Cluster name: kubeconfig entries, `--cluster-name`, etcd token and state dir derive from it.
    pub name: String,
    /// DNS suffix for node host names (`<node>.<baseDomain>`).
    pub base_domain: String,
    pub kubernetes_version: KubeVersion,
    pub etcd_version: EtcdVersion,
    pub topology: EtcdTopology,
    pub endpoint: Endpoint,
    pub nodes: Vec<Node>,
    pub networking: Networking,
    pub cni: Cni,
    pub metallb: Option<MetalLb>,
    pub load_balancer: Option<LoadBalancer>,
    pub etcd: EtcdSettings,
    pub certificates: Certificates,
    pub container_runtime: ContainerRuntime,
    pub image_repository: String,
    pub worker_join: WorkerJoin,
    pub provisioning: Provisioning,
}

/// Kubernetes release, e.g. `v1.34.2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KubeVersion {
    /// Minors whose kubeadm behaviour kubeha reproduces (config API `v1beta4`).
    pub const SUPPORTED_MINORS: std::ops::RangeInclusive<u32> = 31..=34;
    pub const DEFAULT: KubeVersion = KubeVersion {
        major: 1,
        minor: 34,
        patch: 2,
    };

    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix('v')?;
        let mut it = rest.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(KubeVersion {
            major,
            minor,
            patch,
        })
    }

    /// `v1.34` — the form the package repository path uses.
    pub fn minor_tag(&self) -> String {
        format!("v{}.{}", self.major, self.minor)
    }

    /// Default etcd release kubeadm pairs with this minor (`SupportedEtcdVersion`).
    pub fn default_etcd(&self) -> EtcdVersion {
        let (minor, patch) = match self.minor {
            0..=31 => (5, 15),
            32 => (5, 16),
            33 => (5, 21),
            _ => (6, 4),
        };
        EtcdVersion {
            major: 3,
            minor,
            patch,
        }
    }

    /// Sandbox (pause) image tag kubeadm pins for this minor.
    pub fn pause_tag(&self) -> &'static str {
        if self.minor >= 34 { "3.10.1" } else { "3.10" }
    }

    /// CoreDNS image tag kubeadm pins for this minor.
    pub fn coredns_tag(&self) -> &'static str {
        match self.minor {
            0..=32 => "v1.11.3",
            33 => "v1.12.0",
            _ => "v1.12.1",
        }
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// etcd release, e.g. `3.6.4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct EtcdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl EtcdVersion {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix('v').unwrap_or(s);
        // Accept kubeadm's image tag form `3.5.15-0` too.
        let s = s.split_once('-').map_or(s, |(v, _)| v);
        let mut it = s.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(EtcdVersion {
            major,
            minor,
            patch,
        })
    }

    /// etcd 3.6 renamed the `--experimental-*` flags; kubeadm switches on the image tag.
    pub fn uses_feature_gates(&self) -> bool {
        (self.major, self.minor) >= (3, 6)
    }

    /// Image tag as kubeadm spells it (`3.6.4-0`).
    pub fn image_tag(&self) -> String {
        format!("{self}-0")
    }
}

impl fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Where etcd runs relative to the control planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdTopology {
    /// Dedicated etcd hosts (guide 000, 001).
    External,
    /// etcd on the control-plane hosts.
    Stacked,
}

/// The API server endpoint every client and kubelet uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub host: EndpointHost,
    pub port: u16,
}

impl Endpoint {
    /// `https://host:port`, IPv6 bracketed.
    pub fn url(&self) -> String {
        match &self.host {
            EndpointHost::Ip(IpAddr::V6(ip)) => format!("https://[{ip}]:{}", self.port),
            h => format!("https://{h}:{}", self.port),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EndpointHost {
    Ip(IpAddr),
    Dns(String),
}

impl fmt::Display for EndpointHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointHost::Ip(ip) => ip.fmt(f),
            EndpointHost::Dns(d) => f.write_str(d),
        }
    }
}

/// What a node does; a node may hold several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Etcd,
    ControlPlane,
    Worker,
    Lb,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Etcd, Role::ControlPlane, Role::Worker, Role::Lb];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Etcd => "etcd",
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
            Role::Lb => "lb",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One machine of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Node name: host name, Kubernetes node name and etcd member name (lower case).
    pub name: String,
    pub address: IpAddr,
    pub roles: BTreeSet<Role>,
    pub ssh: Ssh,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// VRRP priority on LB nodes; the highest starts as MASTER.
    pub lb_priority: Option<u8>,
}

impl Node {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// How kubeha reaches a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ssh {
    pub user: String,
    pub port: u16,
    /// Private key file; `None` defers to the operator's ssh agent and config.
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    /// The subnet the nodes share (their L2 network); the VIP must lie inside it.
    pub node_cidr: IpNet,
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    pub dns_domain: String,
    /// Per-node pod range prefix length (`--node-cidr-mask-size`).
    pub node_cidr_mask_size: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cni {
    pub plugin: CniPlugin,
    /// Calico encapsulation (`VXLANCrossSubnet`, `VXLAN`, `IPIP`, `IPIPCrossSubnet`, `None`).
    pub encapsulation: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CniPlugin {
    Calico,
    Flannel,
}

/// How a worker's kubelet gets its client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WorkerJoin {
    /// kubeha issues the certificate and writes `kubelet.conf`: no token, no CSR round trip,
    /// the worker joins even before the controller-manager runs.
    Certificate,
    /// kubeadm's TLS bootstrap: `bootstrap-kubelet.conf` with the cluster's bootstrap token;
    /// the kubelet requests its certificate and the controller-manager approves and signs it.
    TlsBootstrap,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetalLb {
    /// Address ranges (`a.b.c.d-a.b.c.e`) or CIDRs handed to MetalLB's `IPAddressPool`.
    pub addresses: Vec<String>,
}

/// The HAProxy + Keepalived pair in front of the API servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    pub vip: IpAddr,
    /// Interface keepalived binds VRRP and the VIP to.
    pub interface: String,
    pub virtual_router_id: u8,
    /// HAProxy statistics page port (bound to each LB's own address).
    pub stats_port: u16,
    /// `loadBalancer.etcdPort`: when set, HAProxy also forwards `*:<port>` (TCP, TLS passed
    /// through) to every etcd member's client port 2379, so the VIP carries etcd traffic too.
    ///
    /// Made for the lab: no kube-apiserver binary exists in any registry the lab can reach, so
    /// the API frontend has no backend that could ever be up. With this port the VIP carries
    /// real etcd traffic instead, and the lab tests check that etcd still answers through the
    /// VIP after the VIP moves to the other LB. A production cluster does not need it (API
    /// servers reach etcd directly or through their local proxy).
    ///
    /// Clients still authenticate with an etcd client certificate, end to end. Because they
    /// dial the VIP, every member's etcd **server** certificate then also carries the VIP (and
    /// the endpoint's DNS name, if it is one) as a SAN; without this field it does not.
    /// Never the API port nor the stats port.
    pub etcd_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSettings {
    pub deployment: EtcdDeployment,
    pub data_dir: String,
    /// How API servers reach etcd in the external topology.
    pub apiserver_access: EtcdAccess,
    /// The etcd host that keeps `etcd/ca.key` (guide 001 step 6); the first etcd node by default.
    pub ca_host: String,
    /// Path of the etcd binary for the systemd deployment.
    pub binary: String,
    /// How the per-control-plane etcd proxy runs. Only meaningful when API servers reach an
    /// external etcd through the local proxy (`apiserverAccess: local-proxy`).
    pub local_proxy: EtcdProxyDeployment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdDeployment {
    /// A systemd unit running the etcd binary from the host.
    Systemd,
    /// A kubelet-managed static pod, as in guide 001.
    StaticPod,
}

/// `etcd.localProxy`: what runs the HAProxy on 127.0.0.1:2379 of each control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdProxyDeployment {
    /// A kubelet-managed static pod (`/etc/kubernetes/manifests/etcd-proxy.yaml`), guide 000.
    StaticPod,
    /// A systemd unit (`kubeha-etcd-proxy.service`) running the host's HAProxy: it does not
    /// need the kubelet, so it runs where no kubelet does (the lab) and starts before it.
    Systemd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdAccess {
    /// A HAProxy on each control plane at 127.0.0.1:2379 (guide 000); a static pod or a
    /// systemd unit, see [`EtcdProxyDeployment`].
    LocalProxy,
    /// `--etcd-servers` lists every member.
    Direct,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificates {
    pub key_algorithm: KeyAlgorithm,
    /// Leaf validity in hours (kubeadm: 8760h).
    pub validity_hours: u32,
    /// CA validity in hours (kubeadm: 87600h).
    pub ca_validity_hours: u32,
    /// Extra SANs on every API server certificate.
    pub apiserver_extra_sans: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    Rsa2048,
    EcdsaP256,
}

impl KeyAlgorithm {
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
        }
    }

    /// kubeadm's `encryptionAlgorithm` spelling.
    pub fn kubeadm_name(&self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "RSA-2048",
            KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerRuntime {
    /// CRI socket, e.g. `unix:///var/run/containerd/containerd.sock`.
    pub endpoint: String,
}

/// Inputs for the machine-provisioning files (cloud-init, netplan, multipass).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provisioning {
    /// Operator account created on every machine.
    pub user: String,
    /// Public keys authorised for that account.
    pub ssh_authorized_keys: Vec<String>,
    /// Interface the static address goes on (netplan).
    pub interface: String,
    pub timezone: Option<String>,
    /// Default gateway for the netplan file, if any.
    pub gateway: Option<IpAddr>,
    /// Nameservers for the netplan file.
    pub nameservers: Vec<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// upstream/versions.env: what scripts/upstream builds and kubeha's tests run.
    const PINS: &str = include_str!("../../../upstream/versions.env");

    fn pin(key: &str) -> &'static str {
        PINS.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("upstream/versions.env has no {key}="))
    }

    /// Whether a go.mod requires `module` at exactly `version` (block or single-line form).
    fn requires(go_mod: &str, module: &str, version: &str) -> bool {
        go_mod.lines().any(|l| {
            let l = l.trim().trim_start_matches("require").trim();
            let l = l.trim_end_matches("// indirect").trim_end();
            l == format!("{module} {version}")
        })
    }

    #[test]
    fn built_upstream_releases_are_the_defaults() {
        assert_eq!(pin("KUBERNETES_V1_34"), KubeVersion::DEFAULT.to_string());
        assert_eq!(pin("ETCD"), KubeVersion::DEFAULT.default_etcd().to_string());
        let previous = KubeVersion::parse(pin("KUBERNETES_V1_33"))
            .unwrap_or_else(|| panic!("KUBERNETES_V1_33 is not a version"));
        assert_eq!((previous.major, previous.minor), (1, 33));
    }

    #[test]
    fn wrapper_modules_require_the_pinned_releases() {
        let etcd = include_str!("../../../upstream/etcd-v3.6/go.mod");
        let v134 = include_str!("../../../upstream/kubernetes-v1.34/go.mod");
        let v133 = include_str!("../../../upstream/kubernetes-v1.33/go.mod");
        let etcd_version = format!("v{}", pin("ETCD"));
        for module in ["server", "etcdctl", "etcdutl", "api", "client"] {
            let module = format!("go.etcd.io/etcd/{module}/v3");
            assert!(requires(etcd, &module, &etcd_version), "{module}");
        }
        for (go_mod, key) in [(v134, "KUBERNETES_V1_34"), (v133, "KUBERNETES_V1_33")] {
            let version = pin(key);
            assert!(requires(go_mod, "k8s.io/kubernetes", version), "{key}");
            // Every staging module at the matching published v0.x release, none left behind.
            let staging = version.replacen("v1.", "v0.", 1);
            let replaces: Vec<&str> = go_mod
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("k8s.io/") && l.contains(" => "))
                .collect();
            assert!(replaces.len() >= 31, "{key}: {} replaces", replaces.len());
            for r in replaces {
                let (from, to) = r.split_once(" => ").unwrap_or_default();
                assert_eq!(to, format!("{from} {staging}"), "{key}");
            }
        }
    }
}
