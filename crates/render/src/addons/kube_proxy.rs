//! kube-proxy exactly as kubeadm's `addon/kube-proxy` phase installs it: ServiceAccount, RBAC,
//! the `kube-system/kube-proxy` ConfigMap (component config plus an in-cluster kubeconfig,
//! signed with kubeadm's content hash) and the DaemonSet.
//!
//! Two deliberate differences from a kubeadm run, both invisible in the stored objects of a
//! cluster built without an HTTP proxy: kubeadm appends the `*_proxy` variables of the shell it
//! runs in to the container env (pure rendering has no such shell), and the template's
//! `readOnly: false` on the xtables mount is left out because Go's encoder drops it
//! (`omitempty`) before the object reaches the API server anyway.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, HostPathVolumeSource,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, SecurityContext, ServiceAccount, Toleration,
    Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kubeha_spec::Spec;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::manifest::{Bundle, Manifest, Stage};
use crate::staticpod::kube_yaml;

/// Name of the ServiceAccount, ConfigMap, Role, RoleBinding and DaemonSet.
pub const NAME: &str = "kube-proxy";
/// Namespace of every namespaced object here.
pub const NAMESPACE: &str = "kube-system";
/// ConfigMap key holding the KubeProxyConfiguration.
pub const CONFIG_KEY: &str = "config.conf";
/// ConfigMap key holding the in-cluster kubeconfig.
pub const KUBECONFIG_KEY: &str = "kubeconfig.conf";
/// Where the DaemonSet mounts the ConfigMap.
pub const CONFIG_DIR: &str = "/var/lib/kube-proxy";
/// Annotation `kubeadm upgrade` compares to tell its own config from a user's edit.
pub const HASH_ANNOTATION: &str = "kubeadm.kubernetes.io/component-config.hash";
/// Group bootstrap tokens authenticate as; joining nodes read the ConfigMap with it.
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// A Go zero `metav1.Duration`, as the encoder spells it.
const ZERO: &str = "0s";

/// `kubeproxy.config.k8s.io/v1alpha1` KubeProxyConfiguration as kubeadm v1.31–v1.34 writes it:
/// every field without `omitempty` in the Go type, at its zero value unless kubeadm sets it
/// (kubeadm does not run kube-proxy's own defaulting; kube-proxy fills the zeros at start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeProxyConfiguration {
    pub api_version: String,
    pub bind_address: String,
    pub bind_address_hard_fail: bool,
    pub client_connection: ClientConnection,
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: String,
    pub config_sync_period: String,
    pub conntrack: Conntrack,
    pub detect_local: DetectLocal,
    pub detect_local_mode: String,
    pub enable_profiling: bool,
    pub healthz_bind_address: String,
    pub hostname_override: String,
    pub iptables: IpTables,
    pub ipvs: Ipvs,
    pub kind: String,
    pub logging: Logging,
    pub metrics_bind_address: String,
    pub mode: String,
    pub nftables: NfTables,
    /// `null`: a nil slice without `omitempty`.
    pub node_port_addresses: Option<Vec<String>>,
    pub oom_score_adj: Option<i32>,
    pub port_range: String,
    pub show_hidden_metrics_for_version: String,
    pub winkernel: Winkernel,
}

/// component-base `ClientConnectionConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConnection {
    pub accept_content_types: String,
    pub burst: i32,
    pub content_type: String,
    pub kubeconfig: String,
    /// A Go `float32`; kept as a JSON number so the zero prints as Go prints it (`0`, not `0.0`).
    pub qps: serde_json::Number,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conntrack {
    pub max_per_core: Option<i32>,
    pub min: Option<i32>,
    pub tcp_be_liberal: bool,
    pub tcp_close_wait_timeout: Option<String>,
    pub tcp_established_timeout: Option<String>,
    pub udp_stream_timeout: String,
    pub udp_timeout: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetectLocal {
    pub bridge_interface: String,
    pub interface_name_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpTables {
    pub localhost_node_ports: Option<bool>,
    pub masquerade_all: bool,
    pub masquerade_bit: Option<i32>,
    pub min_sync_period: String,
    pub sync_period: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ipvs {
    #[serde(rename = "excludeCIDRs")]
    pub exclude_cidrs: Option<Vec<String>>,
    pub min_sync_period: String,
    pub scheduler: String,
    #[serde(rename = "strictARP")]
    pub strict_arp: bool,
    pub sync_period: String,
    pub tcp_fin_timeout: String,
    pub tcp_timeout: String,
    pub udp_timeout: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NfTables {
    pub masquerade_all: bool,
    pub masquerade_bit: Option<i32>,
    pub min_sync_period: String,
    pub sync_period: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Winkernel {
    #[serde(rename = "enableDSR")]
    pub enable_dsr: bool,
    pub forward_health_check_vip: bool,
    pub network_name: String,
    pub root_hns_endpoint_name: String,
    pub source_vip: String,
}

/// component-base `LoggingConfiguration` with Go's zero values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    pub flush_frequency: u64,
    pub options: LoggingOptions,
    pub verbosity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingOptions {
    pub json: BufferSize,
    pub text: BufferSize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BufferSize {
    /// A `resource.QuantityValue`, serialized as the string `"0"`.
    pub info_buffer_size: String,
}

/// `<imageRepository>/kube-proxy:<kubernetesVersion>`, like the control-plane images.
pub fn image(spec: &Spec) -> String {
    spec.image("kube-proxy", &spec.kubernetes_version.to_string())
}

/// kubeadm's wildcard for the init node's address family (`0.0.0.0` or `::`).
fn bind_address(spec: &Spec) -> &'static str {
    match spec.init_control_plane().map(|n| n.address) {
        Some(IpAddr::V6(_)) => "::",
        _ => "0.0.0.0",
    }
}

/// The KubeProxyConfiguration kubeadm generates for this cluster.
pub fn config(spec: &Spec) -> KubeProxyConfiguration {
    let zero = || ZERO.to_string();
    KubeProxyConfiguration {
        api_version: "kubeproxy.config.k8s.io/v1alpha1".into(),
        bind_address: bind_address(spec).into(),
        bind_address_hard_fail: false,
        client_connection: ClientConnection {
            accept_content_types: String::new(),
            burst: 0,
            content_type: String::new(),
            kubeconfig: format!("{CONFIG_DIR}/{KUBECONFIG_KEY}"),
            qps: serde_json::Number::from(0),
        },
        cluster_cidr: spec.networking.pod_cidr.to_string(),
        config_sync_period: zero(),
        conntrack: Conntrack {
            max_per_core: None,
            min: None,
            tcp_be_liberal: false,
            tcp_close_wait_timeout: None,
            tcp_established_timeout: None,
            udp_stream_timeout: zero(),
            udp_timeout: zero(),
        },
        detect_local: DetectLocal {
            bridge_interface: String::new(),
            interface_name_prefix: String::new(),
        },
        detect_local_mode: String::new(),
        enable_profiling: false,
        healthz_bind_address: String::new(),
        hostname_override: String::new(),
        iptables: IpTables {
            localhost_node_ports: None,
            masquerade_all: false,
            masquerade_bit: None,
            min_sync_period: zero(),
            sync_period: zero(),
        },
        ipvs: Ipvs {
            exclude_cidrs: None,
            min_sync_period: zero(),
            scheduler: String::new(),
            strict_arp: false,
            sync_period: zero(),
            tcp_fin_timeout: zero(),
            tcp_timeout: zero(),
            udp_timeout: zero(),
        },
        kind: "KubeProxyConfiguration".into(),
        logging: Logging {
            flush_frequency: 0,
            options: LoggingOptions {
                json: BufferSize {
                    info_buffer_size: "0".into(),
                },
                text: BufferSize {
                    info_buffer_size: "0".into(),
                },
            },
            verbosity: 0,
        },
        metrics_bind_address: String::new(),
        mode: String::new(),
        nftables: NfTables {
            masquerade_all: false,
            masquerade_bit: None,
            min_sync_period: zero(),
            sync_period: zero(),
        },
        node_port_addresses: None,
        oom_score_adj: None,
        port_range: String::new(),
        show_hidden_metrics_for_version: String::new(),
        winkernel: Winkernel {
            enable_dsr: false,
            forward_health_check_vip: false,
            network_name: String::new(),
            root_hns_endpoint_name: String::new(),
            source_vip: String::new(),
        },
    }
}

/// The `config.conf` value: the marshalled config without its final newline (kubeadm's
/// template embeds it in a `|-` block, which strips it).
pub fn config_text(spec: &Spec) -> Result<String> {
    let text = kube_yaml("kube-proxy configuration", &config(spec))?;
    Ok(text.trim_end_matches('\n').to_string())
}

/// The `kubeconfig.conf` value: kubeadm's literal template (its key order, no final newline),
/// pointing at the control-plane endpoint and the pod's ServiceAccount credentials.
pub fn kubeconfig_text(spec: &Spec) -> String {
    let server = spec.endpoint.url();
    [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- cluster:",
        &format!("    certificate-authority: {SA_DIR}/ca.crt"),
        &format!("    server: {server}"),
        "  name: default",
        "contexts:",
        "- context:",
        "    cluster: default",
        "    namespace: default",
        "    user: default",
        "  name: default",
        "current-context: default",
        "users:",
        "- name: default",
        "  user:",
        &format!("    tokenFile: {SA_DIR}/token"),
    ]
    .join("\n")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn system_meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NAMESPACE.into()),
        ..Default::default()
    }
}

/// The signed `kube-system/kube-proxy` ConfigMap.
pub fn config_map(spec: &Spec) -> Result<ConfigMap> {
    let data = BTreeMap::from([
        (CONFIG_KEY.to_string(), config_text(spec)?),
        (KUBECONFIG_KEY.to_string(), kubeconfig_text(spec)),
    ]);
    let mut cm = ConfigMap {
        metadata: ObjectMeta {
            labels: Some(labels(&[("app", NAME)])),
            ..system_meta(NAME)
        },
        data: Some(data),
        ..Default::default()
    };
    let hash = crate::bootstrap::config_hash(&cm);
    cm.metadata.annotations = Some(labels(&[(HASH_ANNOTATION, &hash)]));
    Ok(cm)
}

/// The kube-proxy DaemonSet from kubeadm's `KubeProxyDaemonSet19` template.
pub fn daemon_set(spec: &Spec) -> DaemonSet {
    let app = labels(&[("k8s-app", NAME)]);
    let mount = |name: &str, path: &str, read_only: Option<bool>| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only,
        ..Default::default()
    };
    let host_path = |name: &str, path: &str, type_: Option<&str>| Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: type_.map(str::to_string),
        }),
        ..Default::default()
    };
    let container = Container {
        name: NAME.into(),
        image: Some(image(spec)),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec![
            "/usr/local/bin/kube-proxy".into(),
            format!("--config={CONFIG_DIR}/{CONFIG_KEY}"),
            "--hostname-override=$(NODE_NAME)".into(),
        ]),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount(NAME, CONFIG_DIR, None),
            mount("xtables-lock", "/run/xtables.lock", None),
            mount("lib-modules", "/lib/modules", Some(true)),
        ]),
        env: Some(vec![EnvVar {
            name: "NODE_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "spec.nodeName".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    DaemonSet {
        metadata: ObjectMeta {
            labels: Some(app.clone()),
            ..system_meta(NAME)
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(app.clone()),
                ..Default::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(app),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    priority_class_name: Some("system-node-critical".into()),
                    containers: vec![container],
                    host_network: Some(true),
                    service_account_name: Some(NAME.into()),
                    volumes: Some(vec![
                        Volume {
                            name: NAME.into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: NAME.into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        host_path("xtables-lock", "/run/xtables.lock", Some("FileOrCreate")),
                        host_path("lib-modules", "/lib/modules", None),
                    ]),
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }]),
                    node_selector: Some(labels(&[("kubernetes.io/os", "linux")])),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// kube-proxy's objects in apply order (kubeadm's `--print-manifest` order).
pub fn bundle(spec: &Spec) -> Result<Bundle> {
    let service_account = ServiceAccount {
        metadata: system_meta(NAME),
        ..Default::default()
    };
    let node_proxier = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("kubeadm:node-proxier".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "ClusterRole".into(),
            name: "system:node-proxier".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: NAME.into(),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        }]),
    };
    let role = Role {
        metadata: system_meta(NAME),
        rules: Some(vec![PolicyRule {
            verbs: vec!["get".into()],
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec![NAME.into()]),
            ..Default::default()
        }]),
    };
    let role_binding = RoleBinding {
        metadata: system_meta(NAME),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "Role".into(),
            name: NAME.into(),
        },
        subjects: Some(vec![Subject {
            kind: "Group".into(),
            name: BOOTSTRAP_GROUP.into(),
            ..Default::default()
        }]),
    };
    Ok(Bundle {
        name: NAME.into(),
        stage: Stage::CoreAddons,
        manifests: vec![
            Manifest::typed(&service_account)?,
            Manifest::typed(&node_proxier)?,
            Manifest::typed(&role)?,
            Manifest::typed(&role_binding)?,
            Manifest::typed(&config_map(spec)?)?,
            Manifest::typed(&daemon_set(spec))?,
        ],
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use std::io::Write;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::rbac::v1::ClusterRole;
    use serde::de::DeserializeOwned;

    use crate::provision::tests::example;

    fn round_trip<K: DeserializeOwned + Serialize>(m: &Manifest) {
        let text = m.yaml();
        let parsed: serde_json::Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: YAML does not parse: {e}\n{text}", m.id()));
        assert_eq!(
            parsed,
            m.object,
            "{}: YAML text differs from the object",
            m.id()
        );
        let typed: K = serde_json::from_value(parsed.clone())
            .unwrap_or_else(|e| panic!("{}: not a {}: {e}", m.id(), m.kind));
        let back = serde_json::to_value(&typed).expect("serialize");
        assert_eq!(
            back,
            parsed,
            "{}: fields lost in the typed round trip",
            m.id()
        );
    }

    /// YAML text → JSON → the object's k8s-openapi type → JSON: nothing added or lost.
    pub(crate) fn assert_typed_round_trip(m: &Manifest) {
        match m.kind.as_str() {
            "ServiceAccount" => round_trip::<ServiceAccount>(m),
            "ClusterRole" => round_trip::<ClusterRole>(m),
            "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(m),
            "Role" => round_trip::<Role>(m),
            "RoleBinding" => round_trip::<RoleBinding>(m),
            "ConfigMap" => round_trip::<ConfigMap>(m),
            "DaemonSet" => round_trip::<DaemonSet>(m),
            "Deployment" => round_trip::<Deployment>(m),
            "Service" => round_trip::<Service>(m),
            other => panic!("no round trip for kind {other}"),
        }
    }

    fn find<'a>(b: &'a Bundle, kind: &str) -> &'a Manifest {
        b.manifests
            .iter()
            .find(|m| m.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} in {}", b.name))
    }

    fn typed<K: DeserializeOwned>(m: &Manifest) -> K {
        serde_json::from_value(m.object.clone()).expect("typed")
    }

    #[test]
    fn bundle_shape() {
        let spec = example("external-etcd.yaml");
        let b = bundle(&spec).expect("bundle");
        assert_eq!(
            (b.name.as_str(), b.stage),
            ("kube-proxy", Stage::CoreAddons)
        );
        let ids: Vec<String> = b.manifests.iter().map(Manifest::id).collect();
        assert_eq!(
            ids,
            [
                "ServiceAccount/kube-system/kube-proxy",
                "ClusterRoleBinding/kubeadm:node-proxier",
                "Role/kube-system/kube-proxy",
                "RoleBinding/kube-system/kube-proxy",
                "ConfigMap/kube-system/kube-proxy",
                "DaemonSet/kube-system/kube-proxy",
            ]
        );
        assert!(!b.sensitive());
        for m in &b.manifests {
            assert_typed_round_trip(m);
        }
    }

    #[test]
    fn rbac_matches_kubeadm() {
        let b = bundle(&example("external-etcd.yaml")).expect("bundle");
        let crb: ClusterRoleBinding = typed(find(&b, "ClusterRoleBinding"));
        assert_eq!(
            (
                crb.role_ref.api_group.as_str(),
                crb.role_ref.kind.as_str(),
                crb.role_ref.name.as_str()
            ),
            (
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "system:node-proxier"
            )
        );
        let s = &crb.subjects.expect("subjects")[0];
        assert_eq!(
            (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()),
            ("ServiceAccount", "kube-proxy", Some("kube-system"))
        );

        let role: Role = typed(find(&b, "Role"));
        let rules = role.rules.expect("rules");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].verbs, ["get"]);
        assert_eq!(rules[0].api_groups.as_deref(), Some(&[String::new()][..]));
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["configmaps".to_string()][..])
        );
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["kube-proxy".to_string()][..])
        );

        let rb: RoleBinding = typed(find(&b, "RoleBinding"));
        assert_eq!(
            (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
            ("Role", "kube-proxy")
        );
        let s = &rb.subjects.expect("subjects")[0];
        assert_eq!(
            (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()),
            (
                "Group",
                "system:bootstrappers:kubeadm:default-node-token",
                None
            )
        );
    }

    #[test]
    fn config_has_kubeadm_values_and_go_zeros() {
        let spec = example("external-etcd.yaml");
        let c = config(&spec);
        assert_eq!(c.cluster_cidr, "10.244.0.0/16");
        assert_eq!(c.bind_address, "0.0.0.0");
        assert_eq!(
            c.client_connection.kubeconfig,
            "/var/lib/kube-proxy/kubeconfig.conf"
        );

        let text = config_text(&spec).expect("text");
        assert!(!text.ends_with('\n'), "a |- block strips the final newline");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.first(),
            Some(&"apiVersion: kubeproxy.config.k8s.io/v1alpha1")
        );
        assert_eq!(lines.last(), Some(&"  sourceVip: \"\""));
        for line in [
            "bindAddress: 0.0.0.0",
            "clusterCIDR: 10.244.0.0/16",
            "  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf",
            "  qps: 0",
            "configSyncPeriod: 0s",
            "  maxPerCore: null",
            "  excludeCIDRs: null",
            "kind: KubeProxyConfiguration",
            "mode: \"\"",
            "nodePortAddresses: null",
            "oomScoreAdj: null",
            "    json:",
            "      infoBufferSize: \"0\"",
        ] {
            assert!(lines.contains(&line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("featureGates"), "empty map is omitted");

        // Read back strictly: every key must be one the Go type knows (as far as modelled).
        let back: KubeProxyConfiguration = serde_saphyr::from_str(&text).expect("parses back");
        assert_eq!(back, c);
        let extra = format!("{text}\nsnatNodeInternalIP: true\n");
        assert!(serde_saphyr::from_str::<KubeProxyConfiguration>(&extra).is_err());

        let mut other = spec.clone();
        other.networking.pod_cidr = "192.168.0.0/16".parse().expect("cidr");
        assert_eq!(config(&other).cluster_cidr, "192.168.0.0/16");
    }

    #[test]
    fn kubeconfig_read_by_kubectl() {
        let kubectl = Path::new("/usr/bin/kubectl");
        assert!(kubectl.exists(), "needs the machine's kubectl");
        let spec = example("external-etcd.yaml");
        let text = kubeconfig_text(&spec);
        assert!(!text.ends_with('\n'));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubeconfig.conf");
        std::fs::write(&path, &text).expect("write");
        let query = "{.current-context} {.clusters[0].name} {.clusters[0].cluster.server} \
                     {.clusters[0].cluster.certificate-authority} {.contexts[0].context.namespace} \
                     {.contexts[0].context.user} {.users[0].user.tokenFile}";
        let out = Command::new(kubectl)
            .args(["config", "view", "--kubeconfig"])
            .arg(&path)
            .arg(format!("-o=jsonpath={query}"))
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "default default https://10.10.0.100:6443 \
             /var/run/secrets/kubernetes.io/serviceaccount/ca.crt default default \
             /var/run/secrets/kubernetes.io/serviceaccount/token"
        );
    }

    #[test]
    fn config_map_is_signed_like_kubeadm() {
        let spec = example("external-etcd.yaml");
        let cm = config_map(&spec).expect("configmap");
        assert_eq!(cm.metadata.labels, Some(labels(&[("app", "kube-proxy")])));
        let data = cm.data.clone().expect("data");
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["config.conf", "kubeconfig.conf"]
        );
        let annotation = cm.metadata.annotations.expect("annotations")[HASH_ANNOTATION].clone();

        // Independent check with coreutils: values concatenated in key order.
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sha256sum");
        {
            let mut stdin = child.stdin.take().expect("stdin");
            stdin
                .write_all(data["config.conf"].as_bytes())
                .expect("write");
            stdin
                .write_all(data["kubeconfig.conf"].as_bytes())
                .expect("write");
        }
        let out = child.wait_with_output().expect("sha256sum output");
        let hex = String::from_utf8_lossy(&out.stdout);
        let hex = hex.split_whitespace().next().expect("digest");
        assert_eq!(annotation, format!("sha256:{hex}"));

        // Any edit changes the signature.
        let mut other = spec.clone();
        other.endpoint.port = 8443;
        let moved = config_map(&other).expect("configmap");
        assert_ne!(
            moved.metadata.annotations.expect("annotations")[HASH_ANNOTATION],
            annotation
        );
        assert!(
            moved.data.expect("data")["kubeconfig.conf"]
                .contains("server: https://10.10.0.100:8443\n")
        );
    }

    #[test]
    fn daemon_set_matches_kubeadm_template() {
        let spec = example("external-etcd.yaml");
        let ds = daemon_set(&spec);
        let app = Some(labels(&[("k8s-app", "kube-proxy")]));
        assert_eq!(ds.metadata.labels, app);
        let s = ds.spec.expect("spec");
        assert_eq!(s.selector.match_labels, app);
        assert_eq!(
            s.update_strategy.and_then(|u| u.type_).as_deref(),
            Some("RollingUpdate")
        );
        assert_eq!(s.template.metadata.and_then(|m| m.labels), app);
        let pod = s.template.spec.expect("pod spec");
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.service_account_name.as_deref(), Some("kube-proxy"));
        assert_eq!(
            pod.node_selector,
            Some(labels(&[("kubernetes.io/os", "linux")]))
        );
        let tolerations = pod.tolerations.expect("tolerations");
        assert_eq!(tolerations.len(), 1);
        assert_eq!(tolerations[0].operator.as_deref(), Some("Exists"));
        assert_eq!(
            (tolerations[0].key.as_ref(), tolerations[0].effect.as_ref()),
            (None, None)
        );

        let volumes = pod.volumes.expect("volumes");
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["kube-proxy", "xtables-lock", "lib-modules"]);
        assert_eq!(
            volumes[0].config_map.as_ref().map(|c| c.name.as_str()),
            Some("kube-proxy")
        );
        let xt = volumes[1].host_path.as_ref().expect("hostPath");
        assert_eq!(
            (xt.path.as_str(), xt.type_.as_deref()),
            ("/run/xtables.lock", Some("FileOrCreate"))
        );
        let lm = volumes[2].host_path.as_ref().expect("hostPath");
        assert_eq!(
            (lm.path.as_str(), lm.type_.as_deref()),
            ("/lib/modules", None)
        );

        assert_eq!(pod.containers.len(), 1);
        let c = &pod.containers[0];
        assert_eq!(c.name, "kube-proxy");
        assert_eq!(
            c.image.as_deref(),
            Some("registry.k8s.io/kube-proxy:v1.34.2")
        );
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            c.command.as_deref(),
            Some(
                &[
                    "/usr/local/bin/kube-proxy".to_string(),
                    "--config=/var/lib/kube-proxy/config.conf".to_string(),
                    "--hostname-override=$(NODE_NAME)".to_string(),
                ][..]
            )
        );
        assert_eq!(
            c.security_context.as_ref().and_then(|s| s.privileged),
            Some(true)
        );
        let mounts: Vec<(&str, &str, Option<bool>)> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                ("kube-proxy", "/var/lib/kube-proxy", None),
                ("xtables-lock", "/run/xtables.lock", None),
                ("lib-modules", "/lib/modules", Some(true)),
            ]
        );
        let env = c.env.as_ref().expect("env");
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].name, "NODE_NAME");
        assert_eq!(
            env[0]
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("spec.nodeName")
        );
    }

    #[test]
    fn image_follows_version_and_repository() {
        let mut spec = example("external-etcd.yaml");
        assert_eq!(image(&spec), "registry.k8s.io/kube-proxy:v1.34.2");
        spec.kubernetes_version.minor = 31;
        spec.kubernetes_version.patch = 9;
        spec.image_repository = "mirror.example:5000/k8s".into();
        assert_eq!(image(&spec), "mirror.example:5000/k8s/kube-proxy:v1.31.9");
        let ds = daemon_set(&spec);
        let pod = ds.spec.and_then(|s| s.template.spec).expect("pod");
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some(image(&spec).as_str())
        );
    }

    #[test]
    fn snapshot_external_etcd() {
        let b = bundle(&example("external-etcd.yaml")).expect("bundle");
        insta::with_settings!({ snapshot_path => "../snapshots" }, {
            insta::assert_snapshot!("kube-proxy-external-etcd", b.yaml());
        });
    }
}
