//! The kubelet's files on every node that joins Kubernetes, as kubeadm and the packages leave
//! them: `/var/lib/kubelet/config.yaml`, `kubeadm-flags.env`, `instance-config.yaml` (v1.34) and
//! the packaged systemd drop-in.
//!
//! `config.yaml` carries the fields kubeadm forces or defaults plus the zero values Go's encoder
//! writes (`0s` durations, empty structs), so the file matches a kubeadm node line for line.
//! `resolvConf` assumes systemd-resolved is active (Ubuntu, what kubeha provisions); kubeadm
//! decides this on the host, which pure rendering cannot see ([`config_for`] takes it as input).

use std::collections::BTreeMap;

use kubeha_spec::{KubeVersion, Node, Role, Taint};
use serde::{Deserialize, Serialize};

use crate::{
    Ctx,
    error::Result,
    file::{HostFile, PKI_DIR},
    staticpod::kube_yaml,
};

pub const CONFIG_PATH: &str = "/var/lib/kubelet/config.yaml";
pub const FLAGS_PATH: &str = "/var/lib/kubelet/kubeadm-flags.env";
pub const INSTANCE_CONFIG_PATH: &str = "/var/lib/kubelet/instance-config.yaml";
/// Where the pkgs.k8s.io `kubeadm` package installs its drop-in.
pub const DROP_IN_PATH: &str = "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf";
/// systemd-resolved's upstream resolver list; kubeadm sets it when resolved is active so pods
/// do not inherit the 127.0.0.53 stub (which CoreDNS would forward to itself).
pub const RESOLVED_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// The drop-in exactly as the Debian package ships it (kubeadm never writes it).
pub const DROP_IN: &str = r#"# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"#;

/// A Go zero `metav1.Duration`, as the encoder spells it.
const ZERO: &str = "0s";

/// `kubelet.config.k8s.io/v1beta1` KubeletConfiguration: the fields kubeadm's file contains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration {
    pub api_version: String,
    pub kind: String,
    pub authentication: Authentication,
    pub authorization: Authorization,
    pub cgroup_driver: String,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// Empty (the flag carries it) up to v1.33; the socket from v1.34 (instance config patch).
    pub container_runtime_endpoint: String,
    pub cpu_manager_reconcile_period: String,
    /// v1.32+ (KEP-4603 added the struct; Go writes it empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_loop_back_off: Option<Empty>,
    pub eviction_pressure_transition_period: String,
    pub file_check_frequency: String,
    pub healthz_bind_address: String,
    pub healthz_port: u16,
    pub http_check_frequency: String,
    #[serde(rename = "imageMaximumGCAge")]
    pub image_maximum_gc_age: String,
    #[serde(rename = "imageMinimumGCAge")]
    pub image_minimum_gc_age: String,
    pub logging: Logging,
    pub memory_swap: Empty,
    pub node_status_report_frequency: String,
    pub node_status_update_frequency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<String>,
    pub rotate_certificates: bool,
    pub runtime_request_timeout: String,
    pub shutdown_grace_period: String,
    pub shutdown_grace_period_critical_pods: String,
    pub static_pod_path: String,
    pub streaming_connection_idle_timeout: String,
    pub sync_frequency: String,
    pub volume_stats_agg_period: String,
}

/// An empty struct the Go encoder writes as `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    pub anonymous: Enabled,
    pub webhook: AuthnWebhook,
    pub x509: X509,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthnWebhook {
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509 {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub mode: String,
    pub webhook: AuthzWebhook,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzWebhook {
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: String,
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Logging {
    pub flush_frequency: u32,
    pub options: LoggingOptions,
    pub verbosity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggingOptions {
    pub json: BufferSize,
    pub text: BufferSize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BufferSize {
    /// A `resource.QuantityValue`, serialized as the string `"0"`.
    pub info_buffer_size: String,
}

/// v1.34 moved the CRI socket out of the flags into `instance-config.yaml`
/// (`NodeLocalCRISocket`, beta and on by default).
pub fn uses_instance_config(version: KubeVersion) -> bool {
    version.minor >= 34
}

/// kubeadm's KubeletConfiguration for this cluster, with `resolvConf` as given.
pub fn config_for(cx: Ctx<'_>, resolv_conf: Option<&str>) -> KubeletConfiguration {
    let spec = cx.spec;
    let version = spec.kubernetes_version;
    let zero = || ZERO.to_string();
    KubeletConfiguration {
        api_version: "kubelet.config.k8s.io/v1beta1".into(),
        kind: "KubeletConfiguration".into(),
        authentication: Authentication {
            anonymous: Enabled { enabled: false },
            webhook: AuthnWebhook {
                cache_ttl: zero(),
                enabled: true,
            },
            x509: X509 {
                client_ca_file: format!("{PKI_DIR}/ca.crt"),
            },
        },
        authorization: Authorization {
            mode: "Webhook".into(),
            webhook: AuthzWebhook {
                cache_authorized_ttl: zero(),
                cache_unauthorized_ttl: zero(),
            },
        },
        cgroup_driver: "systemd".into(),
        cluster_dns: vec![spec.dns_service_ip().to_string()],
        cluster_domain: spec.networking.dns_domain.clone(),
        container_runtime_endpoint: if uses_instance_config(version) {
            spec.container_runtime.endpoint.clone()
        } else {
            String::new()
        },
        cpu_manager_reconcile_period: zero(),
        crash_loop_back_off: (version.minor >= 32).then_some(Empty {}),
        eviction_pressure_transition_period: zero(),
        file_check_frequency: zero(),
        healthz_bind_address: "127.0.0.1".into(),
        healthz_port: 10248,
        http_check_frequency: zero(),
        image_maximum_gc_age: zero(),
        image_minimum_gc_age: zero(),
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
        memory_swap: Empty {},
        node_status_report_frequency: zero(),
        node_status_update_frequency: zero(),
        resolv_conf: resolv_conf.map(str::to_string),
        rotate_certificates: true,
        runtime_request_timeout: zero(),
        shutdown_grace_period: zero(),
        shutdown_grace_period_critical_pods: zero(),
        static_pod_path: crate::file::MANIFESTS_DIR.into(),
        streaming_connection_idle_timeout: zero(),
        sync_frequency: zero(),
        volume_stats_agg_period: zero(),
    }
}

/// The cluster's KubeletConfiguration, assuming systemd-resolved on the node.
pub fn config(cx: Ctx<'_>) -> KubeletConfiguration {
    config_for(cx, Some(RESOLVED_RESOLV_CONF))
}

/// `/var/lib/kubelet/config.yaml` text.
pub fn config_yaml(cx: Ctx<'_>) -> Result<String> {
    kube_yaml("kubelet configuration", &config(cx))
}

/// Labels the kubelet may set on its own Node (`--node-labels`); anything else under
/// `kubernetes.io`/`k8s.io` makes it refuse to start and must be applied through the API.
pub fn kubelet_may_self_label(key: &str) -> bool {
    const ALLOWED: &[&str] = &[
        "kubernetes.io/hostname",
        "kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "node.kubernetes.io/instance-type",
    ];
    if ALLOWED.contains(&key) {
        return true;
    }
    let Some((namespace, _)) = key.split_once('/') else {
        return true;
    };
    let under = |ns: &str| namespace == ns || namespace.ends_with(&format!(".{ns}"));
    if under("kubelet.kubernetes.io") || under("node.kubernetes.io") {
        return true;
    }
    !(under("kubernetes.io") || under("k8s.io"))
}

fn taint_arg(t: &Taint) -> String {
    match &t.value {
        Some(v) => format!("{}={}:{}", t.key, v, t.effect.as_str()),
        None => format!("{}:{}", t.key, t.effect.as_str()),
    }
}

/// The kubelet flags kubeadm would write for this node, by name.
///
/// Pure workers also get `--node-labels` (the labels the kubelet may set itself) and
/// `--register-with-taints` (what kubeadm does for joining workers with taints). Control-plane
/// labels and taints go through the API after the node registers, as kubeadm's
/// mark-control-plane phase does.
pub fn flags(cx: Ctx<'_>, node: &Node) -> BTreeMap<String, String> {
    let spec = cx.spec;
    let mut flags = BTreeMap::new();
    if !uses_instance_config(spec.kubernetes_version) {
        flags.insert(
            "container-runtime-endpoint".to_string(),
            spec.container_runtime.endpoint.clone(),
        );
    }
    flags.insert("pod-infra-container-image".to_string(), spec.pause_image());
    if !node.has(Role::ControlPlane) {
        let labels: Vec<String> = node
            .labels
            .iter()
            .filter(|(k, _)| kubelet_may_self_label(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !labels.is_empty() {
            flags.insert("node-labels".to_string(), labels.join(","));
        }
        if !node.taints.is_empty() {
            let taints: Vec<String> = node.taints.iter().map(taint_arg).collect();
            flags.insert("register-with-taints".to_string(), taints.join(","));
        }
    }
    flags
}

/// `/var/lib/kubelet/kubeadm-flags.env` text: one `KUBELET_KUBEADM_ARGS="..."` line, sorted.
pub fn flags_env(cx: Ctx<'_>, node: &Node) -> String {
    let args: Vec<String> = flags(cx, node)
        .iter()
        .map(|(k, v)| format!("--{k}={v}"))
        .collect();
    format!("KUBELET_KUBEADM_ARGS=\"{}\"\n", args.join(" "))
}

/// `/var/lib/kubelet/instance-config.yaml` text (kubeadm writes it with Go's `%q`).
pub fn instance_config(cx: Ctx<'_>) -> String {
    format!(
        "containerRuntimeEndpoint: {:?}\n",
        cx.spec.container_runtime.endpoint
    )
}

/// Every kubelet file of a node that joins Kubernetes (kubelet.conf aside, see `kubeconfig`).
pub fn files(cx: Ctx<'_>, node: &Node) -> Result<Vec<HostFile>> {
    let mut files = vec![
        HostFile::public(CONFIG_PATH, config_yaml(cx)?),
        HostFile::public(FLAGS_PATH, flags_env(cx, node)),
        HostFile::public(DROP_IN_PATH, DROP_IN),
    ];
    if uses_instance_config(cx.spec.kubernetes_version) {
        files.push(HostFile::public(INSTANCE_CONFIG_PATH, instance_config(cx)));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::{
        Ctx,
        control_plane::fixtures::{external, stacked},
    };

    #[test]
    fn flags_env_by_version_and_role() {
        let f = external();
        let cp = f.node("cp-1");
        assert_eq!(
            flags_env(f.cx(), cp),
            "KUBELET_KUBEADM_ARGS=\"--pod-infra-container-image=registry.k8s.io/pause:3.10.1\"\n"
        );
        let old = f.at_minor(33);
        assert_eq!(
            flags_env(Ctx::new(&old, &f.materials), cp),
            "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.10\"\n"
        );
        assert_eq!(
            flags_env(f.cx(), f.node("wn-3")),
            "KUBELET_KUBEADM_ARGS=\"--node-labels=node.kubernetes.io/pool=general --pod-infra-container-image=registry.k8s.io/pause:3.10.1\"\n"
        );
        let st = stacked();
        assert_eq!(
            flags_env(st.cx(), st.node("node-1")),
            "KUBELET_KUBEADM_ARGS=\"--pod-infra-container-image=registry.k8s.io/pause:3.10.1 --register-with-taints=dedicated=batch:NoSchedule\"\n"
        );
        // Control planes (also those with the worker role) are labelled and tainted through the API.
        assert!(!flags_env(st.cx(), st.node("master-2")).contains("register-with-taints"));
    }

    #[test]
    fn files_by_version() {
        let f = external();
        let node = f.node("wn-1");
        let files = files(f.cx(), node).expect("files");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [CONFIG_PATH, FLAGS_PATH, DROP_IN_PATH, INSTANCE_CONFIG_PATH]
        );
        assert!(files.iter().all(|f| f.mode == 0o644));
        assert_eq!(
            files[3].content,
            "containerRuntimeEndpoint: \"unix:///var/run/containerd/containerd.sock\"\n"
        );
        assert!(
            files[2]
                .content
                .contains("EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n")
        );

        let old = f.at_minor(31);
        let cx = Ctx::new(&old, &f.materials);
        let files = super::files(cx, node).expect("files");
        assert!(!files.iter().any(|f| f.path == INSTANCE_CONFIG_PATH));
        let text = &files[0].content;
        assert!(text.contains("containerRuntimeEndpoint: \"\"\n"), "{text}");
        assert!(!text.contains("crashLoopBackOff"));
        let back: KubeletConfiguration = serde_saphyr::from_str(text).expect("parse");
        assert_eq!(back, config(cx));
    }

    #[test]
    fn config_has_kubeadm_forced_fields() {
        let f = stacked();
        let c = config(f.cx());
        assert_eq!(c.cluster_dns, ["10.96.0.10"]);
        assert_eq!(c.cluster_domain, "cluster.local");
        assert_eq!(
            c.authentication.x509.client_ca_file,
            "/etc/kubernetes/pki/ca.crt"
        );
        assert!(!c.authentication.anonymous.enabled);
        assert!(c.authentication.webhook.enabled);
        assert_eq!(c.authorization.mode, "Webhook");
        assert_eq!(
            (c.healthz_bind_address.as_str(), c.healthz_port),
            ("127.0.0.1", 10248)
        );
        assert!(c.rotate_certificates);
        assert_eq!(c.cgroup_driver, "systemd");
        assert_eq!(c.static_pod_path, "/etc/kubernetes/manifests");
        assert_eq!(
            c.container_runtime_endpoint,
            "unix:///var/run/containerd/containerd.sock"
        );
    }

    #[test]
    fn self_labels() {
        assert!(kubelet_may_self_label("node.kubernetes.io/pool"));
        assert!(kubelet_may_self_label("example.com/team"));
        assert!(kubelet_may_self_label("plain"));
        assert!(kubelet_may_self_label("topology.kubernetes.io/zone"));
        assert!(!kubelet_may_self_label("node-role.kubernetes.io/worker"));
        assert!(!kubelet_may_self_label("foo.k8s.io/x"));
    }

    #[test]
    fn go_quoting_of_instance_config() {
        // Rust's `{:?}` and Go's `%q` agree on a plain socket URL.
        assert_eq!(
            format!("{:?}", "unix:///run/containerd/containerd.sock"),
            "\"unix:///run/containerd/containerd.sock\""
        );
    }
}
