//! Machine provisioning for one node: the cloud-init user-data, the netplan static address
//! and the `multipass launch` script of guide 000.
//!
//! The user-data carries every file the node's host tree holds (`write_files`, base64 so PEM and
//! YAML survive byte for byte), so a machine launched from it boots with its final files in
//! place; `kubeha up` later finds nothing to change. Everything lands under
//! `_provision/<node>/` in the output dir (relative paths; node names are DNS labels, so the
//! underscore never clashes with a node's own directory).

use std::{collections::BTreeMap, path::Path};

use base64::Engine as _;
use kubeha_spec::{EtcdDeployment, Node, Role, Spec};
use serde::Serialize;

use crate::{Ctx, HostFile, Result, control_plane, error::RenderError, file::to_yaml};

/// Ubuntu release multipass boots (its image alias); the guides are written against 24.04.
pub const IMAGE: &str = "24.04";
/// Multipass's extra NIC with a manually assigned address, bridged to the host's `en0`
/// (guide 000, macOS). Edit the script for another host interface.
pub const MULTIPASS_NETWORK: &str = "name=en0,mode=manual";
/// Where the static address goes on the node.
pub const NETPLAN_PATH: &str = "/etc/netplan/60-static-ip.yaml";
/// The keyring the Kubernetes apt source is signed with (fetched in `bootcmd`).
pub const KUBERNETES_KEYRING: &str = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg";

/// Directory of a node's provisioning files inside the output dir.
pub fn dir(node: &Node) -> String {
    format!("_provision/{}", node.name)
}

/// The provisioning files of `node`; `host_files` is its rendered host tree.
pub fn files(cx: Ctx<'_>, node: &Node, host_files: &[HostFile]) -> Result<Vec<HostFile>> {
    let dir = dir(node);
    let netplan = netplan(cx.spec, node)?;
    let user_data = user_data(cx.spec, node, host_files, &netplan)?;
    Ok(vec![
        HostFile::with_mode(format!("{dir}/60-static-ip.yaml"), 0o600, netplan),
        HostFile::with_mode(
            format!("{dir}/multipass.sh"),
            0o755,
            multipass_script(cx.spec, node),
        ),
        HostFile::secret(format!("{dir}/user-data.yaml"), user_data),
    ])
}

// ---------------------------------------------------------------------------------------------
// Machine sizes

/// A VM's size as `multipass launch` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSize {
    pub cpus: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
}

impl VmSize {
    /// Guide 000's table of VM parameters, per role.
    pub const ETCD: VmSize = VmSize {
        cpus: 2,
        memory_mib: 2048,
        disk_gib: 5,
    };
    pub const CONTROL_PLANE: VmSize = VmSize {
        cpus: 2,
        memory_mib: 2560,
        disk_gib: 8,
    };
    pub const WORKER: VmSize = VmSize {
        cpus: 2,
        memory_mib: 2048,
        disk_gib: 10,
    };
    pub const LB: VmSize = VmSize {
        cpus: 1,
        memory_mib: 1024,
        disk_gib: 5,
    };

    /// Each dimension the larger of the two: a multi-role node must fit all of its roles.
    pub fn max(self, other: VmSize) -> VmSize {
        VmSize {
            cpus: self.cpus.max(other.cpus),
            memory_mib: self.memory_mib.max(other.memory_mib),
            disk_gib: self.disk_gib.max(other.disk_gib),
        }
    }

    /// `2G`, `2.5G` (as the guide writes it) or `1536M`.
    pub fn memory_arg(&self) -> String {
        let m = u64::from(self.memory_mib);
        if m.is_multiple_of(1024) {
            format!("{}G", m / 1024)
        } else if (m * 10).is_multiple_of(1024) {
            format!("{}.{}G", m / 1024, (m % 1024) * 10 / 1024)
        } else {
            format!("{m}M")
        }
    }
}

/// The size of `node`: the largest of each dimension over its roles (a stacked control plane
/// counts as an etcd member even without the `etcd` role).
pub fn vm_size(spec: &Spec, node: &Node) -> VmSize {
    let mut size = VmSize::LB; // the smallest machine of the table
    if spec.is_etcd_member(node) {
        size = size.max(VmSize::ETCD);
    }
    if node.has(Role::ControlPlane) {
        size = size.max(VmSize::CONTROL_PLANE);
    }
    if node.has(Role::Worker) {
        size = size.max(VmSize::WORKER);
    }
    size
}

/// `multipass.sh`: launches the VM from the user-data next to it.
pub fn multipass_script(spec: &Spec, node: &Node) -> String {
    let size = vm_size(spec, node);
    let roles = node
        .roles
        .iter()
        .map(Role::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "#!/bin/sh\n\
         # Launches {name} ({roles}) with guide 000's VM size for its roles.\n\
         # The user-data next to this script holds private keys: keep this directory private.\n\
         set -eu\n\
         cd \"$(dirname \"$0\")\"\n\
         multipass launch --name {name} \\\n  \
         --cpus {cpus} --memory {memory} --disk {disk}G \\\n  \
         --network {network} \\\n  \
         --cloud-init user-data.yaml \\\n  \
         {image}\n",
        name = node.name,
        cpus = size.cpus,
        memory = size.memory_arg(),
        disk = size.disk_gib,
        network = MULTIPASS_NETWORK,
        image = IMAGE,
    )
}

// ---------------------------------------------------------------------------------------------
// netplan

#[derive(Debug, Serialize)]
struct Netplan {
    network: NetplanNetwork,
}

#[derive(Debug, Serialize)]
struct NetplanNetwork {
    version: u8,
    ethernets: BTreeMap<String, Ethernet>,
}

#[derive(Debug, Serialize)]
struct Ethernet {
    addresses: Vec<String>,
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Nameservers>,
}

#[derive(Debug, Serialize)]
struct Route {
    to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct Nameservers {
    addresses: Vec<String>,
}

/// The netplan file giving `node` its static address on the node network.
///
/// The scope-link route to the node CIDR is guide 000's: on multipass the NIC with the static
/// address is the second one, and the route keeps node-to-node traffic on it.
pub fn netplan(spec: &Spec, node: &Node) -> Result<String> {
    let cidr = spec.networking.node_cidr;
    let prov = &spec.provisioning;
    let mut routes = vec![Route {
        to: cidr.trunc().to_string(),
        via: None,
        scope: Some("link"),
    }];
    if let Some(gw) = prov.gateway {
        routes.push(Route {
            to: "default".into(),
            via: Some(gw.to_string()),
            scope: None,
        });
    }
    let nameservers = (!prov.nameservers.is_empty()).then(|| Nameservers {
        addresses: prov.nameservers.iter().map(ToString::to_string).collect(),
    });
    let eth = Ethernet {
        addresses: vec![format!("{}/{}", node.address, cidr.prefix_len())],
        routes,
        nameservers,
    };
    let doc = Netplan {
        network: NetplanNetwork {
            version: 2,
            ethernets: BTreeMap::from([(prov.interface.clone(), eth)]),
        },
    };
    to_yaml("netplan static address", &doc)
}

// ---------------------------------------------------------------------------------------------
// cloud-init

#[derive(Debug, Serialize)]
struct CloudConfig<'a> {
    hostname: &'a str,
    fqdn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<&'a str>,
    users: Vec<UserEntry<'a>>,
    ssh_pwauth: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bootcmd: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apt: Option<Apt>,
    package_update: bool,
    package_upgrade: bool,
    packages: Vec<Package>,
    write_files: Vec<WriteFile>,
    runcmd: Vec<String>,
}

/// An entry of `users`: the image's default user, or one described in full.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum UserEntry<'a> {
    Named(&'static str),
    User(User<'a>),
}

#[derive(Debug, Serialize)]
struct User<'a> {
    name: &'a str,
    sudo: &'static str,
    groups: String,
    shell: &'static str,
    lock_passwd: bool,
    /// cloud-init's schema rejects an empty list.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ssh_authorized_keys: &'a [String],
}

#[derive(Debug, Serialize)]
struct Apt {
    sources: BTreeMap<String, AptSource>,
}

#[derive(Debug, Serialize)]
struct AptSource {
    source: String,
}

/// A package name, or `[name, version]` (cloud-init installs `name=version`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Package {
    Name(&'static str),
    Pinned([String; 2]),
}

#[derive(Debug, Serialize)]
struct WriteFile {
    path: String,
    permissions: String,
    owner: String,
    encoding: &'static str,
    content: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    defer: bool,
}

impl WriteFile {
    fn of(f: &HostFile) -> WriteFile {
        WriteFile {
            path: f.path.clone(),
            permissions: format!("{:04o}", f.mode),
            owner: f.owner.clone(),
            encoding: "b64",
            content: base64::engine::general_purpose::STANDARD.encode(f.content.as_bytes()),
            defer: deferred(f),
        }
    }
}

/// Whether a file must be written after the packages are installed (cloud-init's `defer`).
///
/// `write_files` runs before `packages`, which suits files in /etc: packages keep an existing
/// conffile (cloud-init runs apt with `--force-confold`) and start their services with it. Two
/// kinds must wait: files owned by an account a package creates (the owner does not exist
/// yet), and files under /usr (outside /usr/local) that a package ships and dpkg would
/// overwrite, such as kubeadm's kubelet drop-in. The services restart after both (`runcmd`).
pub fn deferred(f: &HostFile) -> bool {
    let root_owned = matches!(f.owner.as_str(), "root" | "root:root");
    let package_area = f.path.starts_with("/usr/") && !f.path.starts_with("/usr/local/");
    !root_owned || package_area
}

/// Whether `node` runs a kubelet: control planes, workers, and etcd members whose etcd is a
/// kubelet-managed static pod.
pub fn runs_kubelet(spec: &Spec, node: &Node) -> bool {
    node.has(Role::ControlPlane)
        || node.has(Role::Worker)
        || (spec.is_etcd_member(node) && spec.etcd.deployment == EtcdDeployment::StaticPod)
}

/// The Kubernetes packages `node` installs from pkgs.k8s.io, all held after installation.
fn kube_packages(spec: &Spec, node: &Node) -> Vec<&'static str> {
    if !runs_kubelet(spec, node) {
        return vec![];
    }
    let mut pkgs = vec!["kubelet"];
    if node.has(Role::ControlPlane) || node.has(Role::Worker) {
        // kubeha does kubeadm's work, but `kubeadm reset`/`certs check-expiration` stay handy.
        pkgs.push("kubeadm");
    }
    if node.has(Role::ControlPlane) {
        pkgs.push("kubectl");
    }
    pkgs
}

/// [`control_plane::ETCD_PROXY_SERVICE`] without its `.service` suffix.
const ETCD_PROXY_UNIT: &str = "kubeha-etcd-proxy";

/// Whether `node` is a control plane whose local etcd proxy is the systemd unit
/// `kubeha-etcd-proxy.service` (it runs the `haproxy` package's binary).
pub fn runs_systemd_etcd_proxy(spec: &Spec, node: &Node) -> bool {
    node.has(Role::ControlPlane) && control_plane::uses_systemd_etcd_proxy(spec)
}

/// systemd units `node` runs, in start order.
pub fn services(spec: &Spec, node: &Node) -> Vec<&'static str> {
    let mut units = vec![];
    if spec.is_etcd_member(node) && spec.etcd.deployment == EtcdDeployment::Systemd {
        units.push("etcd");
    }
    if node.has(Role::Lb) {
        units.extend(["haproxy", "keepalived"]);
    }
    if runs_systemd_etcd_proxy(spec, node) {
        // Before the kubelet: the proxy must be up before the API server's static pod.
        units.push(ETCD_PROXY_UNIT);
    }
    if runs_kubelet(spec, node) {
        units.extend(["containerd", "kubelet"]);
    }
    units
}

fn packages(spec: &Spec, node: &Node, kube: &[&'static str]) -> Vec<Package> {
    let mut pkgs = vec![Package::Name("ca-certificates"), Package::Name("curl")];
    if runs_kubelet(spec, node) {
        // gnupg dearmors the repository key; conntrack and socat are what kubelet and
        // kube-proxy expect on a node (guide 004, "node basics").
        pkgs.extend(["gnupg", "containerd", "conntrack", "socat"].map(Package::Name));
        // `<version>-*`: pkgs.k8s.io appends a packaging revision; the glob pins the exact
        // release the spec names, so the kubelet never runs ahead of the API server.
        let v = spec.kubernetes_version;
        let version = format!("{}.{}.{}-*", v.major, v.minor, v.patch);
        pkgs.extend(
            kube.iter()
                .map(|p| Package::Pinned([(*p).to_string(), version.clone()])),
        );
    }
    if spec.is_etcd_member(node)
        && spec.etcd.deployment == EtcdDeployment::Systemd
        && spec.etcd.binary == DISTRO_ETCD
    {
        // Debian/Ubuntu's etcd-server provides /usr/bin/etcd; etcd-client gives etcdctl.
        pkgs.extend(["etcd-server", "etcd-client"].map(Package::Name));
    }
    if node.has(Role::Lb) {
        pkgs.extend(["haproxy", "keepalived"].map(Package::Name));
    } else if runs_systemd_etcd_proxy(spec, node) {
        pkgs.push(Package::Name("haproxy"));
    }
    pkgs
}

/// What `node` installs, as `apt-get install` arguments (pinned packages as `name=version`).
pub fn package_names(spec: &Spec, node: &Node) -> Vec<String> {
    packages(spec, node, &kube_packages(spec, node))
        .into_iter()
        .map(|p| match p {
            Package::Name(n) => n.to_string(),
            Package::Pinned([n, v]) => format!("{n}={v}"),
        })
        .collect()
}

/// Where the distribution's `etcd-server` package puts etcd; any other `etcd.binary` is
/// fetched from the etcd release of `etcdVersion`, because distributions ship older etcd
/// than the flags kubeadm's etcd versions take (Ubuntu 24.04: 3.4).
pub const DISTRO_ETCD: &str = "/usr/bin/etcd";

/// The command that installs the official etcd release next to `etcd.binary`, if needed.
pub fn etcd_fetch_command(spec: &Spec, node: &Node) -> Option<String> {
    if !spec.is_etcd_member(node)
        || spec.etcd.deployment != EtcdDeployment::Systemd
        || spec.etcd.binary == DISTRO_ETCD
    {
        return None;
    }
    let dir = Path::new(&spec.etcd.binary)
        .parent()
        .map_or("/usr/local/bin".to_string(), |d| d.display().to_string());
    let v = spec.etcd_version;
    let name = format!("etcd-v{v}-linux-amd64");
    Some(format!(
        "curl -fsSL https://github.com/etcd-io/etcd/releases/download/v{v}/{name}.tar.gz | tar -xz -C {dir} --strip-components=1 {name}/etcd {name}/etcdctl {name}/etcdutl"
    ))
}

/// Units a package starts that `node` does not use, stopped and disabled in `runcmd`: on a
/// control plane with the systemd etcd proxy, the `haproxy` package's own `haproxy.service`
/// (kubeha-etcd-proxy.service runs the binary with its own config instead).
fn unused_units(spec: &Spec, node: &Node) -> Vec<&'static str> {
    if runs_systemd_etcd_proxy(spec, node) && !node.has(Role::Lb) {
        vec!["haproxy"]
    } else {
        vec![]
    }
}

fn runcmd(units: &[&str], unused: &[&str], kube: &[&str], fetch: Option<String>) -> Vec<String> {
    let mut cmds: Vec<String> = [
        "modprobe overlay",
        "modprobe br_netfilter",
        "sysctl --system",
        "netplan apply",
        "swapoff -a",
        "sed -i '/ swap / s/^/#/' /etc/fstab",
    ]
    .map(String::from)
    .to_vec();
    if !kube.is_empty() {
        cmds.push(format!("apt-mark hold {}", kube.join(" ")));
    }
    cmds.extend(fetch);
    if !unused.is_empty() {
        cmds.push(format!("systemctl disable --now {}", unused.join(" ")));
    }
    cmds.push("systemctl daemon-reload".into());
    if !units.is_empty() {
        let units = units.join(" ");
        cmds.push(format!("systemctl enable {units}"));
        // Not `enable --now`: packages start their services while installing, before
        // `sysctl --system` and `netplan apply` ran; a restart picks up the final state.
        cmds.push(format!("systemctl restart {units}"));
    }
    cmds
}

/// The `#cloud-config` user-data of `node`: its user, packages, every host file and the
/// node-prep commands.
pub fn user_data(
    spec: &Spec,
    node: &Node,
    host_files: &[HostFile],
    netplan: &str,
) -> Result<String> {
    let prov = &spec.provisioning;
    let kubelet = runs_kubelet(spec, node);
    let kube = kube_packages(spec, node);
    let units = services(spec, node);

    let mut groups = vec!["sudo", "users"];
    if kubelet {
        // Guide 000: lets the user run crictl against a containerd socket owned by that group.
        groups.push("containerd");
    }
    let user = User {
        name: &prov.user,
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        groups: groups.join(","),
        shell: "/bin/bash",
        // Keys only: the account has no password, sudo needs none.
        lock_passwd: true,
        ssh_authorized_keys: &prov.ssh_authorized_keys,
    };

    let (bootcmd, apt) = if kubelet {
        let repo = format!(
            "https://pkgs.k8s.io/core:/stable:/{}/deb/",
            spec.kubernetes_version.minor_tag()
        );
        // bootcmd runs on every boot: fetch the key only once.
        let fetch = format!(
            "test -s {KUBERNETES_KEYRING} || curl -fsSL {repo}Release.key | gpg --batch --yes --dearmor -o {KUBERNETES_KEYRING}"
        );
        let source = AptSource {
            source: format!("deb [signed-by={KUBERNETES_KEYRING}] {repo} /"),
        };
        (
            vec!["mkdir -p /etc/apt/keyrings".to_string(), fetch],
            Some(Apt {
                sources: BTreeMap::from([("kubernetes.list".to_string(), source)]),
            }),
        )
    } else {
        (vec![], None)
    };

    let netplan_file = HostFile::with_mode(NETPLAN_PATH, 0o600, netplan);
    let mut write_files = Vec::with_capacity(host_files.len() + 1);
    for f in host_files {
        let same = |a: &HostFile, b: &HostFile| {
            (a.mode, &a.owner, &a.content) == (b.mode, &b.owner, &b.content)
        };
        if f.path == NETPLAN_PATH && !same(f, &netplan_file) {
            return Err(RenderError::Conflict {
                node: node.name.clone(),
                path: f.path.clone(),
            });
        }
        if f.path != NETPLAN_PATH {
            write_files.push(WriteFile::of(f));
        }
    }
    write_files.push(WriteFile::of(&netplan_file));

    let doc = CloudConfig {
        hostname: &node.name,
        fqdn: spec.fqdn(node),
        timezone: prov.timezone.as_deref(),
        // `default` keeps the image's own user, which `multipass shell` logs in as.
        users: vec![UserEntry::Named("default"), UserEntry::User(user)],
        ssh_pwauth: false,
        bootcmd,
        apt,
        package_update: true,
        package_upgrade: true,
        packages: packages(spec, node, &kube),
        write_files,
        runcmd: runcmd(
            &units,
            &unused_units(spec, node),
            &kube,
            etcd_fetch_command(spec, node),
        ),
    };
    Ok(format!(
        "#cloud-config\n{}",
        to_yaml("cloud-init user-data", &doc)?
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{collections::BTreeMap, path::Path};

    use base64::Engine as _;
    use kubeha_pki::{CaId, CertPair, LeafId, LeafKind, Materials, Secrets, ServiceAccountKeys};
    use kubeha_spec::{KeyAlgorithm, Node, Spec};
    use serde_json::Value;

    use super::*;

    /// A spec from `examples/`.
    pub(crate) fn example(name: &str) -> Spec {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name);
        kubeha_spec::load(&path).expect("example loads").spec
    }

    pub(crate) fn node<'a>(spec: &'a Spec, name: &str) -> &'a Node {
        spec.node(name).expect("node in example")
    }

    /// Stand-in PEM text: enough for pure rendering, never parsed as a certificate.
    pub(crate) fn fake_materials() -> Materials {
        let pair = |n: &str| CertPair {
            cert_pem: format!("-----BEGIN CERTIFICATE-----\n{n}\n-----END CERTIFICATE-----\n"),
            key_pem: format!("-----BEGIN EC PRIVATE KEY-----\n{n}\n-----END EC PRIVATE KEY-----\n"),
        };
        Materials {
            cas: CaId::ALL.iter().map(|c| (*c, pair(c.base()))).collect(),
            leaves: BTreeMap::from([(
                LeafId::operator(LeafKind::AdminConf),
                pair("operator-admin"),
            )]),
            service_account: ServiceAccountKeys {
                private_pem: "sa-key".into(),
                public_pem: "sa-pub".into(),
            },
            secrets: Secrets {
                keepalived_auth: "secret00".into(),
                etcd_cluster_token: None,
                bootstrap_token: None,
            },
        }
    }

    /// Host files covering the cases write_files must keep: PEM, multi-line YAML, an
    /// executable, a non-root owner, trailing whitespace and non-ASCII text.
    fn sample_host_files() -> Vec<HostFile> {
        let mut etcd_owned = HostFile::secret(
            "/var/lib/etcd-owned/key.pem",
            "-----BEGIN KEY-----\nAAAA\n-----END KEY-----\n",
        );
        etcd_owned.owner = "etcd:etcd".into();
        vec![
            HostFile::public(
                "/etc/kubernetes/pki/ca.crt",
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            ),
            HostFile::secret(
                "/etc/kubernetes/pki/apiserver.key",
                "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n",
            ),
            HostFile::with_mode(
                "/usr/local/bin/kubelet-start.sh",
                0o755,
                "#!/bin/sh\necho 'Запуск'  \n",
            ),
            HostFile::public(
                "/etc/sysctl.d/k8s.conf",
                "net.ipv4.ip_forward = 1\nkey: \"value\" # not yaml\n\n",
            ),
            etcd_owned,
        ]
    }

    /// The user-data as a YAML value, checking the `#cloud-config` header on the way.
    pub(crate) fn parse_user_data(text: &str) -> Value {
        let body = text
            .strip_prefix("#cloud-config\n")
            .expect("#cloud-config header");
        serde_saphyr::from_str(body).expect("user-data is YAML")
    }

    fn strings(v: &Value) -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|p| match p {
                Value::String(s) => s.clone(),
                Value::Array(a) => format!(
                    "{}={}",
                    a[0].as_str().expect("name"),
                    a[1].as_str().expect("version")
                ),
                other => panic!("unexpected {other}"),
            })
            .collect()
    }

    /// Asserts that `write_files` holds exactly `host_files` plus the netplan file, byte for
    /// byte, with their permissions and owners.
    pub(crate) fn assert_write_files(doc: &Value, host_files: &[HostFile], netplan: &str) {
        let entries = doc["write_files"].as_array().expect("write_files");
        let mut expected: Vec<HostFile> = host_files.to_vec();
        expected.push(HostFile::with_mode(NETPLAN_PATH, 0o600, netplan));
        assert_eq!(entries.len(), expected.len());
        for f in &expected {
            let e = entries
                .iter()
                .find(|e| e["path"] == f.path.as_str())
                .unwrap_or_else(|| panic!("{} missing", f.path));
            assert_eq!(e["encoding"], "b64");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(e["content"].as_str().expect("content"))
                .expect("base64");
            assert_eq!(bytes, f.content.as_bytes(), "{}", f.path);
            assert_eq!(
                e["permissions"],
                format!("{:04o}", f.mode).as_str(),
                "{}",
                f.path
            );
            assert_eq!(e["owner"], f.owner.as_str());
            assert_eq!(e.get("defer").is_some(), deferred(f), "{}", f.path);
        }
    }

    fn user_data_of(spec: &Spec, name: &str, host_files: &[HostFile]) -> (Value, String) {
        let n = node(spec, name);
        let netplan = netplan(spec, n).expect("netplan");
        let text = user_data(spec, n, host_files, &netplan).expect("user-data");
        (parse_user_data(&text), text)
    }

    #[test]
    fn vm_sizes_follow_guide_000_per_role() {
        let ext = example("external-etcd.yaml");
        assert_eq!(vm_size(&ext, node(&ext, "ext-etcd-1")), VmSize::ETCD);
        assert_eq!(vm_size(&ext, node(&ext, "cp-1")), VmSize::CONTROL_PLANE);
        assert_eq!(vm_size(&ext, node(&ext, "wn-3")), VmSize::WORKER);
        assert_eq!(vm_size(&ext, node(&ext, "lb2")), VmSize::LB);
        let stacked = example("stacked.yaml");
        // control plane + etcd: the control plane's size covers both.
        assert_eq!(
            vm_size(&stacked, node(&stacked, "master-1")),
            VmSize {
                cpus: 2,
                memory_mib: 2560,
                disk_gib: 8
            }
        );
        // + worker: the worker's disk.
        assert_eq!(
            vm_size(&stacked, node(&stacked, "master-2")),
            VmSize {
                cpus: 2,
                memory_mib: 2560,
                disk_gib: 10
            }
        );
        assert_eq!(vm_size(&stacked, node(&stacked, "lb-a")), VmSize::LB);
    }

    #[test]
    fn memory_is_written_as_the_guide_does() {
        assert_eq!(VmSize::CONTROL_PLANE.memory_arg(), "2.5G");
        assert_eq!(VmSize::ETCD.memory_arg(), "2G");
        assert_eq!(
            VmSize {
                cpus: 1,
                memory_mib: 1500,
                disk_gib: 1
            }
            .memory_arg(),
            "1500M"
        );
    }

    #[test]
    fn multipass_script_launches_with_the_role_size() {
        let spec = example("external-etcd.yaml");
        for (name, args) in [
            ("ext-etcd-2", "--cpus 2 --memory 2G --disk 5G"),
            ("cp-2", "--cpus 2 --memory 2.5G --disk 8G"),
            ("wn-1", "--cpus 2 --memory 2G --disk 10G"),
            ("lb1", "--cpus 1 --memory 1G --disk 5G"),
        ] {
            let script = multipass_script(&spec, node(&spec, name));
            assert!(script.starts_with("#!/bin/sh\n"), "{script}");
            assert!(script.contains("\nset -eu\n"));
            assert!(
                script.contains(&format!("multipass launch --name {name} \\\n")),
                "{script}"
            );
            assert!(script.contains(args), "{name}: {script}");
            assert!(script.contains("--network name=en0,mode=manual"));
            assert!(script.contains("--cloud-init user-data.yaml"));
            assert!(script.trim_end().ends_with(IMAGE));
        }
        insta::assert_snapshot!(
            "multipass_cp_1",
            multipass_script(&spec, node(&spec, "cp-1"))
        );
    }

    #[test]
    fn netplan_parses_back_with_address_and_prefix() {
        let spec = example("external-etcd.yaml");
        let text = netplan(&spec, node(&spec, "cp-1")).expect("netplan");
        let v: Value = serde_saphyr::from_str(&text).expect("netplan is YAML");
        assert_eq!(v["network"]["version"], 2);
        let eth = &v["network"]["ethernets"]["enp0s2"];
        assert_eq!(eth["addresses"], serde_json::json!(["10.10.0.21/24"]));
        assert_eq!(
            eth["routes"],
            serde_json::json!([{ "to": "10.10.0.0/24", "scope": "link" }])
        );
        assert!(eth.get("nameservers").is_none());
        insta::assert_snapshot!("netplan_cp_1", text);

        let stacked = example("stacked.yaml");
        let v: Value =
            serde_saphyr::from_str(&netplan(&stacked, node(&stacked, "node-1")).expect("netplan"))
                .expect("YAML");
        assert_eq!(
            v["network"]["ethernets"][&stacked.provisioning.interface]["addresses"][0],
            "10.20.0.21/24"
        );
    }

    #[test]
    fn netplan_adds_gateway_and_nameservers_when_set() {
        let mut spec = example("external-etcd.yaml");
        spec.provisioning.gateway = Some("10.10.0.1".parse().expect("ip"));
        spec.provisioning.nameservers = vec![
            "10.10.0.1".parse().expect("ip"),
            "9.9.9.9".parse().expect("ip"),
        ];
        let v: Value =
            serde_saphyr::from_str(&netplan(&spec, node(&spec, "wn-2")).expect("netplan"))
                .expect("YAML");
        let eth = &v["network"]["ethernets"]["enp0s2"];
        assert_eq!(
            eth["routes"][1],
            serde_json::json!({ "to": "default", "via": "10.10.0.1" })
        );
        assert_eq!(
            eth["nameservers"]["addresses"],
            serde_json::json!(["10.10.0.1", "9.9.9.9"])
        );
    }

    #[test]
    fn write_files_hold_every_host_file_byte_for_byte() {
        let spec = example("external-etcd.yaml");
        let files = sample_host_files();
        let (doc, _) = user_data_of(&spec, "cp-1", &files);
        let netplan = netplan(&spec, node(&spec, "cp-1")).expect("netplan");
        assert_write_files(&doc, &files, &netplan);
        let np = doc["write_files"]
            .as_array()
            .expect("array")
            .iter()
            .find(|e| e["path"] == NETPLAN_PATH)
            .cloned();
        assert_eq!(np.expect("netplan entry")["permissions"], "0600");
    }

    #[test]
    fn files_packages_would_clobber_or_chown_wrongly_are_deferred() {
        let mut etcd_owned = HostFile::public("/etc/etcd/x", "");
        etcd_owned.owner = "etcd:etcd".into();
        assert!(deferred(&etcd_owned));
        assert!(deferred(&HostFile::public(
            "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
            ""
        )));
        assert!(!deferred(&HostFile::with_mode(
            "/usr/local/bin/x",
            0o755,
            ""
        )));
        assert!(!deferred(&HostFile::public("/etc/haproxy/haproxy.cfg", "")));
        assert!(!deferred(&HostFile::secret(
            "/etc/kubernetes/pki/ca.key",
            ""
        )));
    }

    #[test]
    fn netplan_in_host_files_is_not_duplicated_but_a_different_one_conflicts() {
        let spec = example("external-etcd.yaml");
        let n = node(&spec, "wn-1");
        let np = netplan(&spec, n).expect("netplan");
        let same = vec![HostFile::with_mode(NETPLAN_PATH, 0o600, np.clone())];
        let doc = parse_user_data(&user_data(&spec, n, &same, &np).expect("user-data"));
        assert_eq!(doc["write_files"].as_array().expect("array").len(), 1);
        let other = vec![HostFile::with_mode(NETPLAN_PATH, 0o600, "network: {}\n")];
        assert!(matches!(
            user_data(&spec, n, &other, &np),
            Err(RenderError::Conflict { .. })
        ));
    }

    #[test]
    fn user_is_the_provisioning_user_with_passwordless_sudo() {
        let spec = example("external-etcd.yaml");
        let (doc, _) = user_data_of(&spec, "cp-1", &[]);
        assert_eq!(doc["users"][0], "default");
        let u = &doc["users"][1];
        assert_eq!(u["name"], spec.provisioning.user.as_str());
        assert_eq!(u["sudo"], "ALL=(ALL) NOPASSWD:ALL");
        assert_eq!(u["groups"], "sudo,users,containerd");
        assert_eq!(u["shell"], "/bin/bash");
        assert_eq!(u["lock_passwd"], true);
        assert_eq!(
            u["ssh_authorized_keys"],
            serde_json::json!(spec.provisioning.ssh_authorized_keys)
        );
        assert_eq!(doc["timezone"], "Europe/Kyiv");
        assert_eq!(doc["hostname"], "cp-1");
        assert_eq!(doc["fqdn"], "cp-1.k8s.local");
        assert_eq!(doc["package_update"], true);
        let (lb, _) = user_data_of(&spec, "lb1", &[]);
        assert_eq!(lb["users"][1]["groups"], "sudo,users");
        let stacked = example("stacked.yaml");
        let (doc, _) = user_data_of(&stacked, "master-1", &[]);
        assert!(doc.get("timezone").is_none());
    }

    #[test]
    fn kubernetes_repository_only_where_a_kubelet_runs() {
        let spec = example("external-etcd.yaml");
        let source = "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.34/deb/ /";
        for name in ["cp-1", "wn-1"] {
            let (doc, _) = user_data_of(&spec, name, &[]);
            assert_eq!(doc["apt"]["sources"]["kubernetes.list"]["source"], source);
            let boot = strings(&doc["bootcmd"]).join("\n");
            assert!(
                boot.contains("https://pkgs.k8s.io/core:/stable:/v1.34/deb/Release.key"),
                "{boot}"
            );
            assert!(
                boot.contains("--dearmor -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg"),
                "{boot}"
            );
        }
        for name in ["ext-etcd-1", "lb1"] {
            let (doc, _) = user_data_of(&spec, name, &[]);
            assert!(doc.get("apt").is_none(), "{name}");
            assert!(doc.get("bootcmd").is_none(), "{name}");
        }
        // etcd as kubelet static pods: the etcd hosts need the repository too.
        let mut sp = spec.clone();
        sp.etcd.deployment = EtcdDeployment::StaticPod;
        let (doc, _) = user_data_of(&sp, "ext-etcd-1", &[]);
        assert_eq!(doc["apt"]["sources"]["kubernetes.list"]["source"], source);
    }

    #[test]
    fn packages_runcmd_and_services_per_role() {
        let spec = example("external-etcd.yaml");
        let pkgs = |n: &str| strings(&user_data_of(&spec, n, &[]).0["packages"]);
        let run = |n: &str| strings(&user_data_of(&spec, n, &[]).0["runcmd"]);

        let cp = pkgs("cp-1");
        for p in [
            "containerd",
            "kubelet=1.34.2-*",
            "kubeadm=1.34.2-*",
            "kubectl=1.34.2-*",
        ] {
            assert!(cp.contains(&p.to_string()), "{p} in {cp:?}");
        }
        assert!(
            !cp.iter()
                .any(|p| p.starts_with("haproxy") || p.starts_with("etcd"))
        );
        let wn = pkgs("wn-1");
        assert!(wn.contains(&"kubelet=1.34.2-*".to_string()));
        assert!(!wn.iter().any(|p| p.starts_with("kubectl")), "{wn:?}");
        let etcd = pkgs("ext-etcd-1");
        // The default etcd binary is the official release for etcdVersion, not the distro's.
        assert!(!etcd.contains(&"etcd-server".to_string()), "{etcd:?}");
        let fetch = run("ext-etcd-1");
        assert!(
            fetch.iter().any(|c| c
                .contains("releases/download/v3.6.4/etcd-v3.6.4-linux-amd64.tar.gz")
                && c.contains("-C /usr/local/bin")),
            "{fetch:?}"
        );
        let mut distro = spec.clone();
        distro.etcd.binary = DISTRO_ETCD.into();
        let etcd_distro = strings(&user_data_of(&distro, "ext-etcd-1", &[]).0["packages"]);
        assert!(
            etcd_distro.contains(&"etcd-server".to_string()),
            "{etcd_distro:?}"
        );
        assert!(
            !etcd
                .iter()
                .any(|p| p.starts_with("kube") || p == "containerd"),
            "{etcd:?}"
        );
        let lb = pkgs("lb1");
        assert!(lb.contains(&"haproxy".to_string()) && lb.contains(&"keepalived".to_string()));
        assert!(!lb.iter().any(|p| p.starts_with("kube")));

        let common = [
            "modprobe overlay",
            "modprobe br_netfilter",
            "sysctl --system",
            "swapoff -a",
            "netplan apply",
            "systemctl daemon-reload",
        ];
        for n in ["cp-1", "wn-1", "ext-etcd-1", "lb1"] {
            let r = run(n);
            for c in common {
                assert!(r.contains(&c.to_string()), "{n}: {c} in {r:?}");
            }
            assert!(
                r.iter()
                    .any(|c| c.contains("/etc/fstab") && c.contains("swap"))
            );
        }
        assert!(run("cp-1").contains(&"apt-mark hold kubelet kubeadm kubectl".to_string()));
        assert!(run("wn-1").contains(&"apt-mark hold kubelet kubeadm".to_string()));
        assert!(!run("lb1").iter().any(|c| c.starts_with("apt-mark")));
        assert!(run("cp-1").contains(&"systemctl enable containerd kubelet".to_string()));
        assert!(run("ext-etcd-1").contains(&"systemctl restart etcd".to_string()));
        assert!(run("lb1").contains(&"systemctl restart haproxy keepalived".to_string()));

        // A stacked control plane that is also a worker and an etcd member.
        let stacked = example("stacked.yaml");
        let m2 = node(&stacked, "master-2");
        assert_eq!(services(&stacked, m2), ["etcd", "containerd", "kubelet"]);
        let mut sp = stacked.clone();
        sp.etcd.deployment = EtcdDeployment::StaticPod;
        assert_eq!(
            services(&sp, node(&sp, "master-2")),
            ["containerd", "kubelet"]
        );
        let etcd_static =
            strings(&user_data_of(&spec_with_static_pod_etcd(), "ext-etcd-2", &[]).0["packages"]);
        assert!(
            etcd_static.contains(&"kubelet=1.34.2-*".to_string()),
            "{etcd_static:?}"
        );
        assert!(
            !etcd_static
                .iter()
                .any(|p| p.starts_with("kubeadm") || p.starts_with("etcd-server"))
        );
    }

    #[test]
    fn systemd_etcd_proxy_brings_haproxy_and_its_unit_to_control_planes() {
        use kubeha_spec::{EtcdAccess, EtcdProxyDeployment};
        let lab = example("lab.yaml");
        assert_eq!(lab.etcd.local_proxy, EtcdProxyDeployment::Systemd);
        let pkgs = |spec: &Spec, n: &str| strings(&user_data_of(spec, n, &[]).0["packages"]);
        let run = |spec: &Spec, n: &str| strings(&user_data_of(spec, n, &[]).0["runcmd"]);

        for cp in ["cp-1", "cp-2", "cp-3"] {
            let n = node(&lab, cp);
            assert!(runs_systemd_etcd_proxy(&lab, n));
            assert_eq!(
                services(&lab, n),
                ["kubeha-etcd-proxy", "containerd", "kubelet"]
            );
            let p = pkgs(&lab, cp);
            assert_eq!(p.iter().filter(|p| *p == "haproxy").count(), 1, "{p:?}");
            assert!(!p.iter().any(|p| p == "keepalived"), "{p:?}");
            let r = run(&lab, cp);
            // The package's own haproxy.service is not used on a control plane.
            let disable = r
                .iter()
                .position(|c| c == "systemctl disable --now haproxy")
                .unwrap_or_else(|| panic!("{r:?}"));
            let enable = r
                .iter()
                .position(|c| c == "systemctl enable kubeha-etcd-proxy containerd kubelet")
                .unwrap_or_else(|| panic!("{r:?}"));
            let reload = r
                .iter()
                .position(|c| c == "systemctl daemon-reload")
                .unwrap_or_else(|| panic!("{r:?}"));
            assert!(disable < reload && reload < enable, "{r:?}");
            assert!(
                r.contains(&"systemctl restart kubeha-etcd-proxy containerd kubelet".to_string()),
                "{r:?}"
            );
        }
        // Other roles: unchanged.
        assert_eq!(
            services(&lab, node(&lab, "lb-1")),
            ["haproxy", "keepalived"]
        );
        assert!(!run(&lab, "lb-1").iter().any(|c| c.contains("disable")));
        assert_eq!(
            services(&lab, node(&lab, "wn-1")),
            ["containerd", "kubelet"]
        );
        assert!(!pkgs(&lab, "wn-1").contains(&"haproxy".to_string()));
        assert_eq!(services(&lab, node(&lab, "etcd-1")), ["etcd"]);

        // The static-pod proxy (the default) needs no host package and no unit.
        let ext = example("external-etcd.yaml");
        let cp = node(&ext, "cp-1");
        assert!(!runs_systemd_etcd_proxy(&ext, cp));
        assert_eq!(services(&ext, cp), ["containerd", "kubelet"]);
        assert!(!pkgs(&ext, "cp-1").iter().any(|p| p.starts_with("haproxy")));
        assert!(!run(&ext, "cp-1").iter().any(|c| c.contains("haproxy")));
        // Nor does direct access, whatever localProxy says.
        let mut direct = lab.clone();
        direct.etcd.apiserver_access = EtcdAccess::Direct;
        assert!(!runs_systemd_etcd_proxy(&direct, node(&direct, "cp-1")));
        assert!(!pkgs(&direct, "cp-1").contains(&"haproxy".to_string()));
        assert_eq!(
            format!("{ETCD_PROXY_UNIT}.service"),
            control_plane::ETCD_PROXY_SERVICE
        );
    }

    fn spec_with_static_pod_etcd() -> Spec {
        let mut spec = example("external-etcd.yaml");
        spec.etcd.deployment = EtcdDeployment::StaticPod;
        spec
    }

    #[test]
    fn files_are_under_the_node_provision_dir_with_their_modes() {
        let spec = example("external-etcd.yaml");
        let m = fake_materials();
        let out = files(Ctx::new(&spec, &m), node(&spec, "lb1"), &[]).expect("files");
        let by_path: BTreeMap<_, _> = out.iter().map(|f| (f.path.as_str(), f)).collect();
        assert_eq!(
            by_path.keys().copied().collect::<Vec<_>>(),
            [
                "_provision/lb1/60-static-ip.yaml",
                "_provision/lb1/multipass.sh",
                "_provision/lb1/user-data.yaml",
            ]
        );
        assert_eq!(by_path["_provision/lb1/user-data.yaml"].mode, 0o600);
        assert!(by_path["_provision/lb1/user-data.yaml"].sensitive);
        assert_eq!(by_path["_provision/lb1/multipass.sh"].mode, 0o755);
        assert_eq!(by_path["_provision/lb1/60-static-ip.yaml"].mode, 0o600);
        assert!(
            by_path["_provision/lb1/user-data.yaml"]
                .content
                .starts_with("#cloud-config\n")
        );
    }

    /// Base64 never contains a space, so a value is one token, possibly folded onto the next
    /// line (`>-`) by the serializer.
    #[test]
    fn user_data_snapshot_with_contents_masked() {
        let spec = example("external-etcd.yaml");
        let (_, text) = user_data_of(&spec, "cp-1", &sample_host_files());
        insta::with_settings!({ filters => vec![(r"(?m)^(\s*content:) (?:>-\n\s*)?\S+$", "$1 [masked]")] }, {
            insta::assert_snapshot!("user_data_cp_1_masked", text);
        });
    }

    /// Real host trees with real (ECDSA, for speed) certificates for both examples.
    /// Also checks that [`services`] agrees with the host tree's own service list.
    fn rendered_with_real_pki(example_name: &str) -> Vec<(String, Vec<HostFile>, Vec<HostFile>)> {
        let mut spec = example(example_name);
        spec.certificates.key_algorithm = KeyAlgorithm::EcdsaP256;
        let materials = kubeha_pki::issue_in_memory(&spec, time::OffsetDateTime::now_utc())
            .expect("PKI issues");
        let cx = Ctx::new(&spec, &materials);
        spec.nodes
            .iter()
            .map(|n| {
                let tree = crate::render_host(cx, n).expect("host renders");
                let units: Vec<String> = services(&spec, n)
                    .iter()
                    .map(|u| format!("{u}.service"))
                    .collect();
                assert_eq!(units, tree.services, "{example_name} {}", n.name);
                let prov = files(cx, n, &tree.files).expect("provisioning renders");
                (n.name.clone(), tree.files, prov)
            })
            .collect()
    }

    #[test]
    fn real_host_files_round_trip_through_write_files() {
        for ex in ["external-etcd.yaml", "stacked.yaml", "lab.yaml"] {
            for (name, host_files, prov) in rendered_with_real_pki(ex) {
                let get = |suffix: &str| {
                    prov.iter()
                        .find(|f| f.path.ends_with(suffix))
                        .unwrap_or_else(|| panic!("{name}: {suffix}"))
                };
                let doc = parse_user_data(&get("/user-data.yaml").content);
                assert_write_files(&doc, &host_files, &get("/60-static-ip.yaml").content);
            }
        }
    }

    /// `cloud-init schema` (Debian's cloud-init 22.4) accepts every rendered user-data.
    #[test]
    fn cloud_init_schema_accepts_every_user_data() {
        let bin = ["/usr/bin/cloud-init", "/usr/local/bin/cloud-init"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let bin = bin.expect("cloud-init is not installed: run scripts/setup-debian");
        let dir = tempfile::tempdir().expect("tempdir");
        // The synthetic files add what real trees may lack: a deferred, non-root-owned file.
        let spec = example("external-etcd.yaml");
        let (_, sample) = user_data_of(&spec, "cp-1", &sample_host_files());
        let mut docs = vec![("sample".to_string(), "cp-1".to_string(), sample)];
        for ex in ["external-etcd.yaml", "stacked.yaml", "lab.yaml"] {
            for (name, _, prov) in rendered_with_real_pki(ex) {
                let ud = prov
                    .iter()
                    .find(|f| f.path.ends_with("/user-data.yaml"))
                    .expect("user-data");
                docs.push((ex.to_string(), name, ud.content.clone()));
            }
        }
        for (ex, name, content) in docs {
            let path = dir.path().join(format!("{ex}-{name}.yaml"));
            std::fs::write(&path, &content).expect("write user-data");
            let out = std::process::Command::new(bin)
                .args(["schema", "-c"])
                .arg(&path)
                .output()
                .expect("cloud-init runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{ex} {name}: {stdout}{stderr}");
            assert!(
                stdout.contains("Valid cloud-config"),
                "{ex} {name}: {stdout}{stderr}"
            );
        }
    }
}
