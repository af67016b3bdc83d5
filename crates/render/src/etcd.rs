//! etcd members: the PKI files guide 001 (step 6) lists for each host, one flag map shared by
//! both deployments (a systemd unit or kubeadm's static pod), and a `kubeadmcfg.yaml` for users
//! who would rather run `kubeadm init phase etcd local` themselves.
//!
//! `etcd/ca.key` placement: external topology — only on `spec.etcd.ca_host` (guide 001). Stacked
//! topology — on every control-plane member too, as kubeadm's shared certificates put it there:
//! those hosts already hold `apiserver-etcd-client` (full etcd access) and the Kubernetes CA key,
//! so the copy adds no exposure, and `kubeadm certs renew` / `kubeadm upgrade` keep working.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kubeha_pki::{CaId, LeafKind};
use kubeha_spec::{EtcdDeployment, EtcdTopology, EtcdVersion, Node, Role, Spec, bracket};
use serde::Serialize;

use crate::{
    Ctx, HostFile, Result,
    file::{MANIFESTS_DIR, PKI_DIR, cert_files, cert_only},
    staticpod::{self, Component, HostVolume, ProbeTarget},
};

/// etcd client port (HTTPS, client-cert auth).
pub const CLIENT_PORT: u16 = 2379;
/// etcd peer port (HTTPS, peer-cert auth).
pub const PEER_PORT: u16 = 2380;
/// Plain-HTTP metrics and health port, loopback only; the static pod's probe target.
pub const METRICS_PORT: u16 = 2381;

/// The systemd unit of the `systemd` deployment; it overrides Debian's packaged unit.
pub const UNIT_PATH: &str = "/etc/systemd/system/etcd.service";
/// Holds the flags as one variable, so a flag change needs a restart but no daemon-reload.
pub const ENV_PATH: &str = "/etc/etcd/etcd.env";
/// The variable [`ENV_PATH`] sets. Not `ETCD_*`: etcd warns about unknown `ETCD_` variables.
pub const ARGS_VAR: &str = "KUBEHA_ETCD_ARGS";
/// Guide 001's kubeadm config, for users who prefer `kubeadm init phase etcd local`.
pub const KUBEADM_CONFIG_PATH: &str = "/etc/kubernetes/kubeadmcfg.yaml";
/// Guide 001 step 1: the kubelet's config on etcd-only hosts (the guide's path, even though
/// systemd also reads `*.conf` in a drop-in dir and warns about the YAML lines).
pub const KUBELET_CONFIG_PATH: &str = "/etc/systemd/system/kubelet.service.d/kubelet.conf";
/// Guide 001 step 1: makes the kubelet a plain static-pod runner for etcd.
pub const KUBELET_DROPIN_PATH: &str =
    "/etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf";

const ETCD_PKI_DIR: &str = "/etc/kubernetes/pki/etcd";
const ADVERTISE_ANNOTATION: &str = "kubeadm.kubernetes.io/etcd.advertise-client-urls";
const KUBEADM_API: &str = "kubeadm.k8s.io/v1beta4";

/// Every file an etcd member needs; only the chosen deployment's files are included.
pub fn files(cx: Ctx<'_>, node: &Node) -> Result<Vec<HostFile>> {
    let spec = cx.spec;
    let mut flags = flags(spec, node);
    // A restored cluster (`kubeha etcd snapshot restore`) runs under the token it was
    // rebuilt with, recorded in the state dir's secrets; rendering it keeps `up` a no-op.
    if let Some(token) = &cx.materials.secrets.etcd_cluster_token {
        flags.insert("initial-cluster-token".into(), token.clone());
    }
    let mut out = pki_files(cx, node)?;
    match spec.etcd.deployment {
        EtcdDeployment::Systemd => {
            out.push(unit_file(spec, node));
            out.push(env_file(node, &flags));
        }
        EtcdDeployment::StaticPod => {
            out.push(static_pod(spec, node, &flags)?);
            if is_etcd_only(node) {
                out.extend(kubelet_service_manager(spec)?);
            }
        }
    }
    out.push(kubeadm_config(spec, node, &flags)?);
    Ok(out)
}

/// Units this member runs, in start order. A static-pod member that is not a control plane
/// runs its own kubelet (and the containerd it needs); on control planes those come from the
/// control-plane role.
pub fn services(cx: Ctx<'_>, node: &Node) -> Vec<String> {
    match cx.spec.etcd.deployment {
        EtcdDeployment::Systemd => vec!["etcd.service".into()],
        EtcdDeployment::StaticPod if is_etcd_only(node) => {
            vec!["containerd.service".into(), "kubelet.service".into()]
        }
        EtcdDeployment::StaticPod => vec![],
    }
}

/// Whether `node` receives `etcd/ca.key` (see the module docs for the rule).
pub fn keeps_ca_key(spec: &Spec, node: &Node) -> bool {
    node.name == spec.etcd.ca_host
        || (spec.topology == EtcdTopology::Stacked && node.has(Role::ControlPlane))
}

/// kubeadm's local-etcd flags for `node` (reference §3.6) plus `--initial-cluster` over every
/// member, `--initial-cluster-state=new` and the cluster token. Keys are flag names without
/// dashes; the map's order is the order kubeadm emits them in.
pub fn flags(spec: &Spec, node: &Node) -> BTreeMap<String, String> {
    let adv = bracket(node.address);
    let lo = loopback(node.address);
    let pki = |f: &str| format!("{ETCD_PKI_DIR}/{f}");
    let mut m = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    set("advertise-client-urls", Spec::etcd_client_url(node));
    set("cert-file", pki("server.crt"));
    set("client-cert-auth", "true".into());
    set("data-dir", spec.etcd.data_dir.clone());
    set("initial-advertise-peer-urls", Spec::etcd_peer_url(node));
    set("initial-cluster", spec.etcd_initial_cluster());
    set("initial-cluster-state", "new".into());
    set("initial-cluster-token", spec.etcd_cluster_token());
    set("key-file", pki("server.key"));
    set(
        "listen-client-urls",
        format!("https://{lo}:{CLIENT_PORT},https://{adv}:{CLIENT_PORT}"),
    );
    set("listen-metrics-urls", format!("http://{lo}:{METRICS_PORT}"));
    set("listen-peer-urls", Spec::etcd_peer_url(node));
    set("name", node.name.clone());
    set("peer-cert-file", pki("peer.crt"));
    set("peer-client-cert-auth", "true".into());
    set("peer-key-file", pki("peer.key"));
    set("peer-trusted-ca-file", pki("ca.crt"));
    set("snapshot-count", "10000".into());
    set("trusted-ca-file", pki("ca.crt"));
    // etcd 3.6 renamed these; kubeadm switches on the etcd version, not Kubernetes'.
    if spec.etcd_version.uses_feature_gates() {
        set("feature-gates", "InitialCorruptCheck=true".into());
        set("watch-progress-notify-interval", "5s".into());
    } else {
        set("experimental-initial-corrupt-check", "true".into());
        set("experimental-watch-progress-notify-interval", "5s".into());
    }
    m
}

/// `--name=value` arguments in kubeadm's order, the form both deployments run etcd with.
pub fn args(spec: &Spec, node: &Node) -> Vec<String> {
    staticpod::sorted_flags(&flags(spec, node))
}

fn is_etcd_only(node: &Node) -> bool {
    !node.has(Role::ControlPlane)
}

/// kubeadm listens on `127.0.0.1`, or `[::1]` when the member advertises IPv6.
fn loopback(addr: IpAddr) -> &'static str {
    if addr.is_ipv6() { "[::1]" } else { "127.0.0.1" }
}

fn pki_files(cx: Ctx<'_>, node: &Node) -> Result<Vec<HostFile>> {
    let ca = cx.ca(CaId::Etcd)?;
    let mut out = vec![cert_only(CaId::Etcd.base(), ca)];
    if keeps_ca_key(cx.spec, node) {
        out.push(HostFile::secret(
            format!("{PKI_DIR}/{}.key", CaId::Etcd.base()),
            ca.key_pem.clone(),
        ));
    }
    for kind in [
        LeafKind::EtcdServer,
        LeafKind::EtcdPeer,
        LeafKind::EtcdHealthcheckClient,
        LeafKind::ApiServerEtcdClient,
    ] {
        out.extend(cert_files(kind.base(), cx.leaf(node, kind)?));
    }
    Ok(out)
}

fn unit_file(spec: &Spec, node: &Node) -> HostFile {
    // `$VAR` unbraced: systemd splits the value on whitespace into separate arguments.
    let text = format!(
        "# etcd member {name} of cluster {cluster}, rendered by kubeha.\n\
         # Flags live in {ENV_PATH}; runs as root because the keys under {ETCD_PKI_DIR} are root's 0600.\n\
         [Unit]\n\
         Description=etcd member {name} ({cluster})\n\
         Documentation=https://etcd.io/docs/\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=notify\n\
         EnvironmentFile={ENV_PATH}\n\
         ExecStart={binary} ${ARGS_VAR}\n\
         Restart=always\n\
         RestartSec=5s\n\
         LimitNOFILE=65536\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        name = node.name,
        cluster = spec.name,
        binary = spec.etcd.binary,
    );
    HostFile::public(UNIT_PATH, text)
}

fn env_file(node: &Node, flags: &BTreeMap<String, String>) -> HostFile {
    let args = staticpod::sorted_flags(flags).join(" ");
    let text = format!(
        "# etcd flags for member {name}, rendered by kubeha (kubeadm's local-etcd set).\n\
         # After editing: systemctl restart etcd\n\
         {ARGS_VAR}={args}\n",
        name = node.name,
    );
    HostFile::public(ENV_PATH, text)
}

/// kubeadm's etcd static pod (reference §3.2, §3.7).
fn static_pod(spec: &Spec, node: &Node, flags: &BTreeMap<String, String>) -> Result<HostFile> {
    let mut command = vec!["etcd".to_string()];
    command.extend(staticpod::sorted_flags(flags));
    let c = Component {
        name: "etcd".into(),
        image: spec.image("etcd", &spec.etcd_version.image_tag()),
        command,
        // Container mounts keep this order (data, then certs); the pod's volume list is sorted.
        volumes: vec![
            HostVolume::new("etcd-data", &spec.etcd.data_dir, "DirectoryOrCreate", false),
            HostVolume::new("etcd-certs", ETCD_PKI_DIR, "DirectoryOrCreate", false),
        ],
        probe: Some(probe(spec.etcd_version, node.address)),
        cpu_request: "100m",
        memory_request: Some("100Mi"),
        annotations: BTreeMap::from([(
            ADVERTISE_ANNOTATION.to_string(),
            Spec::etcd_client_url(node),
        )]),
        tier: "control-plane",
    };
    staticpod::manifest_for(&c, spec.kubernetes_version)
}

/// `/livez` and `/readyz` exist from etcd 3.5.11 (what kubeadm v1.31+ probes); older etcd gets
/// kubeadm v1.30's `/health` probes.
fn probe(version: EtcdVersion, adv: IpAddr) -> ProbeTarget {
    let host = if adv.is_ipv6() { "::1" } else { "127.0.0.1" };
    let modern = (version.major, version.minor, version.patch) >= (3, 5, 11);
    ProbeTarget {
        host: Some(host.into()),
        port: i32::from(METRICS_PORT),
        scheme: "HTTP",
        liveness_path: if modern {
            "/livez"
        } else {
            "/health?exclude=NOSPACE&serializable=true"
        }
        .into(),
        readiness_path: modern.then(|| "/readyz".into()),
        startup_path: if modern {
            "/readyz"
        } else {
            "/health?serializable=false"
        }
        .into(),
    }
}

/// Guide 001 step 1's `KubeletConfiguration` for a kubelet that only runs static pods.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceManagerKubelet<'a> {
    api_version: &'static str,
    kind: &'static str,
    authentication: KubeletAuthn,
    authorization: KubeletAuthz,
    cgroup_driver: &'static str,
    address: &'static str,
    container_runtime_endpoint: &'a str,
    static_pod_path: &'static str,
}

#[derive(Serialize)]
struct KubeletAuthn {
    anonymous: Enabled,
    webhook: Enabled,
}

#[derive(Serialize)]
struct Enabled {
    enabled: bool,
}

#[derive(Serialize)]
struct KubeletAuthz {
    mode: &'static str,
}

fn kubelet_service_manager(spec: &Spec) -> Result<[HostFile; 2]> {
    let cfg = ServiceManagerKubelet {
        api_version: "kubelet.config.k8s.io/v1beta1",
        kind: "KubeletConfiguration",
        authentication: KubeletAuthn {
            anonymous: Enabled { enabled: false },
            webhook: Enabled { enabled: false },
        },
        authorization: KubeletAuthz {
            mode: "AlwaysAllow",
        },
        cgroup_driver: "systemd",
        address: "127.0.0.1",
        container_runtime_endpoint: &spec.container_runtime.endpoint,
        static_pod_path: MANIFESTS_DIR,
    };
    let config = format!(
        "# kubelet as etcd's service manager on an etcd-only host (kubeadm's HA etcd guide).\n{}",
        staticpod::kube_yaml("etcd-only kubelet configuration", &cfg)?
    );
    let dropin = format!(
        "# Runs the kubelet only as the static-pod manager for etcd (kubeadm's HA etcd guide).\n\
         [Service]\n\
         ExecStart=\n\
         ExecStart=/usr/bin/kubelet --config={KUBELET_CONFIG_PATH}\n\
         Restart=always\n"
    );
    Ok([
        HostFile::public(KUBELET_CONFIG_PATH, config),
        HostFile::public(KUBELET_DROPIN_PATH, dropin),
    ])
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitConfiguration<'a> {
    api_version: &'static str,
    kind: &'static str,
    node_registration: NodeRegistration<'a>,
    #[serde(rename = "localAPIEndpoint")]
    local_api_endpoint: LocalApiEndpoint,
}

#[derive(Serialize)]
struct NodeRegistration<'a> {
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LocalApiEndpoint {
    advertise_address: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterConfiguration<'a> {
    api_version: &'static str,
    kind: &'static str,
    kubernetes_version: String,
    image_repository: &'a str,
    etcd: EtcdConfig,
}

#[derive(Serialize)]
struct EtcdConfig {
    local: LocalEtcd,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LocalEtcd {
    image_tag: String,
    data_dir: String,
    #[serde(rename = "serverCertSANs")]
    server_cert_sans: Vec<String>,
    #[serde(rename = "peerCertSANs")]
    peer_cert_sans: Vec<String>,
    extra_args: Vec<Arg>,
}

/// v1beta4's list form of `extraArgs`.
#[derive(Serialize)]
struct Arg {
    name: String,
    value: String,
}

/// Guide 001 step 2's per-host config. The values come from [`flags`], so a manifest kubeadm
/// generates from it runs etcd exactly as kubeha does. `kubernetesVersion` and `imageTag` are
/// pinned so kubeadm neither looks up `stable-1` online nor picks another etcd.
fn kubeadm_config(spec: &Spec, node: &Node, flags: &BTreeMap<String, String>) -> Result<HostFile> {
    let init = InitConfiguration {
        api_version: KUBEADM_API,
        kind: "InitConfiguration",
        node_registration: NodeRegistration { name: &node.name },
        local_api_endpoint: LocalApiEndpoint {
            advertise_address: node.address.to_string(),
        },
    };
    let extra_args = [
        "initial-cluster",
        "initial-cluster-state",
        "name",
        "listen-peer-urls",
        "listen-client-urls",
        "advertise-client-urls",
        "initial-advertise-peer-urls",
        "initial-cluster-token",
    ]
    .into_iter()
    .filter_map(|k| {
        flags.get(k).map(|v| Arg {
            name: k.to_string(),
            value: v.clone(),
        })
    })
    .collect();
    let cluster = ClusterConfiguration {
        api_version: KUBEADM_API,
        kind: "ClusterConfiguration",
        kubernetes_version: spec.kubernetes_version.to_string(),
        image_repository: &spec.image_repository,
        etcd: EtcdConfig {
            local: LocalEtcd {
                image_tag: spec.etcd_version.image_tag(),
                data_dir: spec.etcd.data_dir.clone(),
                server_cert_sans: vec![node.address.to_string()],
                peer_cert_sans: vec![node.address.to_string()],
                extra_args,
            },
        },
    };
    let text = format!(
        "# kubeadm config for etcd member {name}: kubeadm init phase etcd local --config={KUBEADM_CONFIG_PATH}\n\
         # (kubeha already rendered the result; this is for users who prefer kubeadm).\n\
         {init}{cluster}",
        name = node.name,
        init = yaml_doc(staticpod::kube_yaml("kubeadm InitConfiguration", &init)?),
        cluster = yaml_doc(staticpod::kube_yaml(
            "kubeadm ClusterConfiguration",
            &cluster
        )?),
    );
    Ok(HostFile::public(KUBEADM_CONFIG_PATH, text))
}

/// One document of a multi-document YAML stream.
fn yaml_doc(text: String) -> String {
    if text.starts_with("---") {
        text
    } else {
        format!("---\n{text}")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use kubeha_pki::{CertPair, LeafId, Materials, Secrets, ServiceAccountKeys};

    use super::*;

    fn example(name: &str) -> Spec {
        let text = match name {
            "external" => include_str!("../../../examples/external-etcd.yaml"),
            _ => include_str!("../../../examples/stacked.yaml"),
        };
        match kubeha_spec::load_str(text, Path::new(name)) {
            Ok(l) => l.spec,
            Err(e) => panic!("example {name} does not load: {e:?}"),
        }
    }

    fn pair(what: &str) -> CertPair {
        CertPair {
            cert_pem: format!("-----BEGIN CERTIFICATE-----\n{what}\n-----END CERTIFICATE-----\n"),
            key_pem: format!(
                "-----BEGIN EC PRIVATE KEY-----\nSECRET-KEY-{what}\n-----END EC PRIVATE KEY-----\n"
            ),
        }
    }

    /// Placeholder PEM text for every CA and every leaf of every node: deterministic, and
    /// each key is recognisable (`SECRET-KEY-…`) so tests can check where keys land.
    fn materials(spec: &Spec) -> Materials {
        let cas = CaId::ALL.iter().map(|c| (*c, pair(c.base()))).collect();
        let leaves = spec
            .nodes
            .iter()
            .flat_map(|n| LeafKind::ALL.iter().map(|k| LeafId::new(&n.name, *k)))
            .map(|id| {
                let p = pair(&id.to_string());
                (id, p)
            })
            .collect();
        Materials {
            cas,
            leaves,
            service_account: ServiceAccountKeys {
                private_pem: pair("sa").key_pem,
                public_pem: "sa.pub".into(),
            },
            secrets: Secrets {
                keepalived_auth: "Pw4Test1".into(),
                etcd_cluster_token: None,
                bootstrap_token: None,
            },
        }
    }

    fn render(spec: &Spec, node: &str) -> Vec<HostFile> {
        let m = materials(spec);
        let node = spec.node(node).unwrap_or_else(|| panic!("no node {node}"));
        files(Ctx::new(spec, &m), node).unwrap_or_else(|e| panic!("render {}: {e}", node.name))
    }

    fn paths(files: &[HostFile]) -> Vec<&str> {
        let mut p: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        p.sort_unstable();
        p
    }

    fn get<'a>(files: &'a [HostFile], path: &str) -> &'a HostFile {
        files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no {path} in {:?}", paths(files)))
    }

    #[test]
    fn flags_are_sorted_and_complete_before_3_6() {
        let mut spec = example("external");
        spec.etcd_version = EtcdVersion {
            major: 3,
            minor: 5,
            patch: 21,
        };
        let node = spec
            .node("ext-etcd-2")
            .cloned()
            .unwrap_or_else(|| panic!("node"));
        let a = args(&spec, &node);
        // kubeadm sorts by flag name (so `--initial-cluster=` precedes `--initial-cluster-state=`).
        let names: Vec<&str> = a
            .iter()
            .map(|f| f.split('=').next().unwrap_or(""))
            .collect();
        assert!(names.is_sorted(), "{names:?}");
        assert_eq!(
            a,
            [
                "--advertise-client-urls=https://10.10.0.12:2379",
                "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
                "--client-cert-auth=true",
                "--data-dir=/var/lib/etcd",
                "--experimental-initial-corrupt-check=true",
                "--experimental-watch-progress-notify-interval=5s",
                "--initial-advertise-peer-urls=https://10.10.0.12:2380",
                "--initial-cluster=ext-etcd-1=https://10.10.0.11:2380,ext-etcd-2=https://10.10.0.12:2380,ext-etcd-3=https://10.10.0.13:2380",
                "--initial-cluster-state=new",
                "--initial-cluster-token=ha-cluster-etcd",
                "--key-file=/etc/kubernetes/pki/etcd/server.key",
                "--listen-client-urls=https://127.0.0.1:2379,https://10.10.0.12:2379",
                "--listen-metrics-urls=http://127.0.0.1:2381",
                "--listen-peer-urls=https://10.10.0.12:2380",
                "--name=ext-etcd-2",
                "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
                "--peer-client-cert-auth=true",
                "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
                "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
                "--snapshot-count=10000",
                "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
            ]
        );
    }

    #[test]
    fn etcd_3_6_uses_feature_gates() {
        let mut spec = example("external");
        spec.etcd_version = EtcdVersion {
            major: 3,
            minor: 6,
            patch: 4,
        };
        let node = spec
            .node("ext-etcd-1")
            .cloned()
            .unwrap_or_else(|| panic!("node"));
        let f = flags(&spec, &node);
        assert_eq!(
            f.get("feature-gates").map(String::as_str),
            Some("InitialCorruptCheck=true")
        );
        assert_eq!(
            f.get("watch-progress-notify-interval").map(String::as_str),
            Some("5s")
        );
        assert!(!f.keys().any(|k| k.starts_with("experimental-")), "{f:?}");
        let a = args(&spec, &node);
        let fg = a
            .iter()
            .position(|x| x.starts_with("--feature-gates="))
            .unwrap_or(usize::MAX);
        let ic = a
            .iter()
            .position(|x| x.starts_with("--initial-advertise"))
            .unwrap_or(0);
        assert!(fg < ic, "sorted: --feature-gates before --initial-*: {a:?}");
    }

    #[test]
    fn restored_cluster_token_from_secrets_replaces_the_default() {
        let spec = example("external");
        let node = spec.node("ext-etcd-2").unwrap_or_else(|| panic!("no node"));
        let text = |m: &Materials| -> String {
            files(Ctx::new(&spec, m), node)
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .map(|f| f.content.clone())
                .collect()
        };
        let mut m = materials(&spec);
        let default = format!("initial-cluster-token={}", spec.etcd_cluster_token());
        assert!(text(&m).contains(&default));
        m.secrets.etcd_cluster_token = Some("tok-restored-1".into());
        let t = text(&m);
        assert!(t.contains("initial-cluster-token=tok-restored-1"), "{t}");
        assert!(!t.contains(&default), "{t}");
    }

    #[test]
    fn ipv6_member_listens_on_ipv6_loopback() {
        let mut spec = example("external");
        spec.nodes[0].address = "fd00::11".parse().unwrap_or_else(|e| panic!("{e}"));
        let node = spec.nodes[0].clone();
        let f = flags(&spec, &node);
        assert_eq!(
            f["listen-client-urls"],
            "https://[::1]:2379,https://[fd00::11]:2379"
        );
        assert_eq!(f["listen-metrics-urls"], "http://[::1]:2381");
    }

    #[test]
    fn external_ca_key_only_on_ca_host() {
        let spec = example("external");
        assert_eq!(spec.etcd.ca_host, "ext-etcd-1");
        let pki = |n: &str| -> Vec<String> {
            render(&spec, n)
                .into_iter()
                .map(|f| f.path)
                .filter(|p| p.starts_with(PKI_DIR))
                .collect()
        };
        let mut expected: Vec<String> = [
            "apiserver-etcd-client.crt",
            "apiserver-etcd-client.key",
            "etcd/ca.crt",
            "etcd/ca.key",
            "etcd/healthcheck-client.crt",
            "etcd/healthcheck-client.key",
            "etcd/peer.crt",
            "etcd/peer.key",
            "etcd/server.crt",
            "etcd/server.key",
        ]
        .iter()
        .map(|f| format!("{PKI_DIR}/{f}"))
        .collect();
        let mut got = pki("ext-etcd-1");
        got.sort();
        assert_eq!(got, expected);
        expected.retain(|p| !p.ends_with("etcd/ca.key"));
        for n in ["ext-etcd-2", "ext-etcd-3"] {
            let mut got = pki(n);
            got.sort();
            assert_eq!(got, expected, "{n}");
        }
    }

    #[test]
    fn ca_host_setting_moves_the_ca_key() {
        let mut spec = example("external");
        spec.etcd.ca_host = "ext-etcd-3".into();
        let has_key = |n: &str| {
            render(&spec, n)
                .iter()
                .any(|f| f.path.ends_with("/etcd/ca.key"))
        };
        assert!(!has_key("ext-etcd-1"));
        assert!(!has_key("ext-etcd-2"));
        assert!(has_key("ext-etcd-3"));
    }

    #[test]
    fn stacked_control_planes_all_keep_the_ca_key() {
        let spec = example("stacked");
        for n in ["master-1", "master-2", "master-3"] {
            assert!(
                render(&spec, n)
                    .iter()
                    .any(|f| f.path.ends_with("/etcd/ca.key")),
                "{n}"
            );
        }
    }

    #[test]
    fn modes_and_sensitivity() {
        let spec = example("external");
        let m = materials(&spec);
        for f in render(&spec, "ext-etcd-1") {
            let secret = f.content.contains("PRIVATE KEY");
            assert_eq!(f.sensitive, secret, "{}", f.path);
            if f.path.ends_with(".key") {
                assert!(secret && f.mode == 0o600, "{}", f.path);
            }
            if f.path.ends_with(".crt") {
                assert_eq!(f.mode, 0o644, "{}", f.path);
            }
            assert_eq!(f.owner, "root:root");
        }
        // The right pair lands at the right path.
        let files = render(&spec, "ext-etcd-2");
        let server = m
            .leaf(&LeafId::new("ext-etcd-2", LeafKind::EtcdServer))
            .unwrap_or_else(|| panic!("leaf"));
        assert_eq!(
            get(&files, "/etc/kubernetes/pki/etcd/server.key").content,
            server.key_pem
        );
        assert_eq!(
            get(&files, "/etc/kubernetes/pki/etcd/server.crt").content,
            server.cert_pem
        );
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let spec = example("external");
        let files = render(&spec, "ext-etcd-1");
        let dbg = format!("{files:?}");
        assert!(!dbg.contains("SECRET-KEY"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert!(
            dbg.contains("BEGIN CERTIFICATE"),
            "certificates stay visible"
        );
    }

    #[test]
    fn systemd_deployment_files_and_services() {
        let spec = example("external");
        let files = render(&spec, "ext-etcd-1");
        let other: Vec<&str> = paths(&files)
            .into_iter()
            .filter(|p| !p.starts_with(PKI_DIR))
            .collect();
        assert_eq!(other, [ENV_PATH, KUBEADM_CONFIG_PATH, UNIT_PATH]);
        let m = materials(&spec);
        let node = spec.node("ext-etcd-1").unwrap_or_else(|| panic!("node"));
        assert_eq!(services(Ctx::new(&spec, &m), node), ["etcd.service"]);
        // The env file carries exactly the flag list, space separated.
        let env = &get(&files, ENV_PATH).content;
        let line = env
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{ARGS_VAR}=")))
            .unwrap_or("");
        assert_eq!(line.split(' ').collect::<Vec<_>>(), args(&spec, node));
        let unit = &get(&files, UNIT_PATH).content;
        assert!(
            unit.contains(&format!("\nExecStart=/usr/local/bin/etcd ${ARGS_VAR}\n")),
            "{unit}"
        );
        assert!(
            unit.contains(&format!("\nEnvironmentFile={ENV_PATH}\n")),
            "{unit}"
        );
    }

    #[test]
    fn static_pod_on_etcd_only_host_brings_its_kubelet() {
        let mut spec = example("external");
        spec.etcd.deployment = EtcdDeployment::StaticPod;
        let files = render(&spec, "ext-etcd-2");
        let other: Vec<&str> = paths(&files)
            .into_iter()
            .filter(|p| !p.starts_with(PKI_DIR))
            .collect();
        assert_eq!(
            other,
            [
                KUBEADM_CONFIG_PATH,
                "/etc/kubernetes/manifests/etcd.yaml",
                KUBELET_DROPIN_PATH,
                KUBELET_CONFIG_PATH
            ]
        );
        let m = materials(&spec);
        let node = spec.node("ext-etcd-2").unwrap_or_else(|| panic!("node"));
        assert_eq!(
            services(Ctx::new(&spec, &m), node),
            ["containerd.service", "kubelet.service"]
        );
        let kubelet = &get(&files, KUBELET_CONFIG_PATH).content;
        for want in [
            "kind: KubeletConfiguration",
            "mode: AlwaysAllow",
            "cgroupDriver: systemd",
            "address: 127.0.0.1\n",
            "containerRuntimeEndpoint: unix:///var/run/containerd/containerd.sock",
            "staticPodPath: /etc/kubernetes/manifests",
        ] {
            assert!(kubelet.contains(want), "{want} missing in\n{kubelet}");
        }
        let manifest = get(&files, "/etc/kubernetes/manifests/etcd.yaml");
        assert_eq!(manifest.mode, 0o600);
        assert!(
            manifest.content.contains(
                "kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.10.0.12:2379"
            )
        );
        assert!(
            manifest.content.contains("registry.k8s.io/etcd:3.6.4-0"),
            "{}",
            manifest.content
        );
    }

    #[test]
    fn static_pod_on_control_plane_has_no_kubelet_files() {
        let mut spec = example("stacked");
        spec.etcd.deployment = EtcdDeployment::StaticPod;
        let files = render(&spec, "master-2");
        assert!(
            files
                .iter()
                .any(|f| f.path == "/etc/kubernetes/manifests/etcd.yaml")
        );
        assert!(!files.iter().any(|f| f.path.contains("kubelet.service.d")));
        assert!(
            !files
                .iter()
                .any(|f| f.path == UNIT_PATH || f.path == ENV_PATH)
        );
        let m = materials(&spec);
        let node = spec.node("master-2").unwrap_or_else(|| panic!("node"));
        assert!(services(Ctx::new(&spec, &m), node).is_empty());
    }

    #[test]
    fn old_etcd_gets_health_probes() {
        let p = probe(
            EtcdVersion {
                major: 3,
                minor: 5,
                patch: 10,
            },
            "10.0.0.1".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(p.liveness_path, "/health?exclude=NOSPACE&serializable=true");
        assert_eq!(p.readiness_path, None);
        let p = probe(
            EtcdVersion {
                major: 3,
                minor: 5,
                patch: 11,
            },
            "10.0.0.1".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(
            (p.liveness_path.as_str(), p.readiness_path.as_deref()),
            ("/livez", Some("/readyz"))
        );
        assert_eq!(p.startup_path, "/readyz");
    }

    #[test]
    fn kubeadm_config_matches_the_flags() {
        let spec = example("external");
        let node = spec
            .node("ext-etcd-3")
            .cloned()
            .unwrap_or_else(|| panic!("node"));
        let files = render(&spec, "ext-etcd-3");
        let text = &get(&files, KUBEADM_CONFIG_PATH).content;
        let docs: Vec<serde_json::Value> = text
            .split("---\n")
            .skip(1)
            .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{e}\n{d}")))
            .collect();
        let [init, cluster] = docs.as_slice() else {
            panic!("two documents expected:\n{text}")
        };
        assert_eq!(init["apiVersion"], "kubeadm.k8s.io/v1beta4");
        assert_eq!(init["kind"], "InitConfiguration");
        assert_eq!(init["nodeRegistration"]["name"], "ext-etcd-3");
        assert_eq!(init["localAPIEndpoint"]["advertiseAddress"], "10.10.0.13");
        assert_eq!(cluster["kind"], "ClusterConfiguration");
        let local = &cluster["etcd"]["local"];
        assert_eq!(local["serverCertSANs"], serde_json::json!(["10.10.0.13"]));
        assert_eq!(local["peerCertSANs"], serde_json::json!(["10.10.0.13"]));
        assert_eq!(local["imageTag"], "3.6.4-0");
        let all = flags(&spec, &node);
        let args = local["extraArgs"]
            .as_array()
            .unwrap_or_else(|| panic!("extraArgs list\n{text}"));
        let names: Vec<&str> = args.iter().filter_map(|a| a["name"].as_str()).collect();
        assert_eq!(
            names,
            [
                "initial-cluster",
                "initial-cluster-state",
                "name",
                "listen-peer-urls",
                "listen-client-urls",
                "advertise-client-urls",
                "initial-advertise-peer-urls",
                "initial-cluster-token"
            ]
        );
        for a in args {
            let name = a["name"].as_str().unwrap_or("");
            assert_eq!(
                a["value"].as_str(),
                all.get(name).map(String::as_str),
                "{name}"
            );
        }
    }

    #[test]
    fn snapshot_external_systemd() {
        let spec = example("external");
        let files = render(&spec, "ext-etcd-1");
        insta::assert_snapshot!("etcd_service", get(&files, UNIT_PATH).content);
        insta::assert_snapshot!("etcd_env", get(&files, ENV_PATH).content);
        insta::assert_snapshot!("kubeadmcfg", get(&files, KUBEADM_CONFIG_PATH).content);
    }

    #[test]
    fn snapshot_external_static_pod() {
        let mut spec = example("external");
        spec.etcd.deployment = EtcdDeployment::StaticPod;
        let files = render(&spec, "ext-etcd-1");
        insta::assert_snapshot!(
            "etcd_yaml",
            get(&files, "/etc/kubernetes/manifests/etcd.yaml").content
        );
        insta::assert_snapshot!(
            "etcd_only_kubelet_conf",
            get(&files, KUBELET_CONFIG_PATH).content
        );
        insta::assert_snapshot!(
            "etcd_service_manager_dropin",
            get(&files, KUBELET_DROPIN_PATH).content
        );
    }
}
