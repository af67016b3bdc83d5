//! Flannel, as upstream's `kube-flannel.yml` for [`FLANNEL_VERSION`] installs it, embedded and
//! typed. Applied in order: namespace (pod-security `privileged`: flanneld needs the host
//! network and `NET_ADMIN`), service account and RBAC, the `kube-flannel-cfg` ConfigMap
//! (`Network` is the spec's pod CIDR, VXLAN backend), then the DaemonSet, whose init
//! containers copy the `flannel` CNI binary into `/opt/cni/bin` and the CNI config into
//! `/etc/cni/net.d` before flanneld starts.
//!
//! flanneld runs with `--kube-subnet-mgr`: each node's subnet is the `spec.podCIDR` the
//! controller manager allocates (`--allocate-node-cidrs`, `--node-cidr-mask-size`), so the
//! per-node mask lives there, not in `net-conf.json`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EnvVar, Namespace,
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    PodTemplateSpec, ResourceRequirements, SecurityContext, ServiceAccount, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kubeha_spec::Spec;
use serde_json::json;

use super::build::{field_env, host_path, labels};
use crate::addons::calico::rule;
use crate::error::{RenderError, Result};
use crate::images::mirror;
use crate::manifest::{Bundle, Manifest, Stage};

/// flanneld release (upstream's latest `kube-flannel.yml` in the v0.27 line).
pub const FLANNEL_VERSION: &str = "v0.27.4";
/// The flannel CNI plugin image that `kube-flannel.yml` [`FLANNEL_VERSION`] installs.
pub const FLANNEL_CNI_PLUGIN_VERSION: &str = "v1.8.0-flannel1";

const NAMESPACE: &str = "kube-flannel";
const NAME: &str = "flannel";
const CONFIG: &str = "kube-flannel-cfg";

fn flannel_image(spec: &Spec) -> String {
    mirror(
        spec,
        &format!("ghcr.io/flannel-io/flannel:{FLANNEL_VERSION}"),
    )
}

fn plugin_image(spec: &Spec) -> String {
    mirror(
        spec,
        &format!("ghcr.io/flannel-io/flannel-cni-plugin:{FLANNEL_CNI_PLUGIN_VERSION}"),
    )
}

/// flanneld and the CNI plugin installer, mapped through the spec's mirror.
pub fn images(spec: &Spec) -> Vec<String> {
    vec![flannel_image(spec), plugin_image(spec)]
}

/// Flannel's namespace, RBAC, config and DaemonSet.
pub fn bundle(spec: &Spec) -> Result<Bundle> {
    let manifests = vec![
        Manifest::typed(&namespace())?,
        Manifest::typed(&service_account())?,
        Manifest::typed(&cluster_role())?,
        Manifest::typed(&cluster_role_binding())?,
        Manifest::typed(&config_map(spec)?)?,
        Manifest::typed(&daemon_set(spec))?,
    ];
    Ok(Bundle {
        name: "flannel".into(),
        stage: Stage::Cni,
        manifests,
    })
}

const POD_LABELS: [(&str, &str); 3] = [("app", NAME), ("k8s-app", NAME), ("tier", "node")];

fn meta(name: &str, namespace: Option<&str>, pairs: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_string),
        labels: labels(pairs),
        ..Default::default()
    }
}

fn namespace() -> Namespace {
    Namespace {
        metadata: meta(
            NAMESPACE,
            None,
            &[
                ("k8s-app", NAME),
                ("pod-security.kubernetes.io/enforce", "privileged"),
            ],
        ),
        ..Default::default()
    }
}

fn service_account() -> ServiceAccount {
    ServiceAccount {
        metadata: meta(NAME, Some(NAMESPACE), &[("k8s-app", NAME)]),
        ..Default::default()
    }
}

fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta(NAME, None, &[("k8s-app", NAME)]),
        rules: Some(vec![
            rule(&[""], &["pods"], &[], &["get"]),
            rule(&[""], &["nodes"], &[], &["get", "list", "watch"]),
            rule(&[""], &["nodes/status"], &[], &["patch"]),
        ]),
        ..Default::default()
    }
}

fn cluster_role_binding() -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(NAME, None, &[("k8s-app", NAME)]),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: NAME.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: NAME.into(),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        }]),
    }
}

fn pretty(what: &str, value: &serde_json::Value) -> Result<String> {
    let mut s = serde_json::to_string_pretty(value).map_err(|e| RenderError::Serialize {
        what: what.into(),
        source: Box::new(e),
    })?;
    s.push('\n');
    Ok(s)
}

fn config_map(spec: &Spec) -> Result<ConfigMap> {
    let cni = json!({
        "name": "cbr0",
        "cniVersion": "0.3.1",
        "plugins": [
            {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    });
    let net = json!({
        "Network": spec.networking.pod_cidr.to_string(),
        "EnableNFTables": false,
        "Backend": {"Type": "vxlan"},
    });
    Ok(ConfigMap {
        metadata: meta(CONFIG, Some(NAMESPACE), &POD_LABELS),
        data: Some(BTreeMap::from([
            (
                "cni-conf.json".to_string(),
                pretty("flannel cni-conf.json", &cni)?,
            ),
            (
                "net-conf.json".to_string(),
                pretty("flannel net-conf.json", &net)?,
            ),
        ])),
        ..Default::default()
    })
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn copy_container(
    name: &str,
    image: String,
    from: &str,
    to: &str,
    mounts: Vec<VolumeMount>,
) -> Container {
    Container {
        name: name.into(),
        image: Some(image),
        command: Some(vec!["cp".into()]),
        args: Some(vec!["-f".into(), from.into(), to.into()]),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn daemon_set(spec: &Spec) -> DaemonSet {
    let flanneld = Container {
        name: "kube-flannel".into(),
        image: Some(flannel_image(spec)),
        command: Some(vec!["/opt/bin/flanneld".into()]),
        args: Some(vec!["--ip-masq".into(), "--kube-subnet-mgr".into()]),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            EnvVar {
                name: "EVENT_QUEUE_DEPTH".into(),
                value: Some("5000".into()),
                ..Default::default()
            },
            EnvVar {
                name: "CONT_WHEN_CACHE_NOT_READY".into(),
                value: Some("false".into()),
                ..Default::default()
            },
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("100m".into())),
                ("memory".to_string(), Quantity("50Mi".into())),
            ])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount("run", "/run/flannel"),
            mount("flannel-cfg", "/etc/kube-flannel/"),
            mount("xtables-lock", "/run/xtables.lock"),
        ]),
        ..Default::default()
    };
    let init = vec![
        copy_container(
            "install-cni-plugin",
            plugin_image(spec),
            "/flannel",
            "/opt/cni/bin/flannel",
            vec![mount("cni-plugin", "/opt/cni/bin")],
        ),
        copy_container(
            "install-cni",
            flannel_image(spec),
            "/etc/kube-flannel/cni-conf.json",
            "/etc/cni/net.d/10-flannel.conflist",
            vec![
                mount("cni", "/etc/cni/net.d"),
                mount("flannel-cfg", "/etc/kube-flannel/"),
            ],
        ),
    ];
    DaemonSet {
        metadata: meta("kube-flannel-ds", Some(NAMESPACE), &POD_LABELS),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: labels(&[("app", NAME), ("k8s-app", NAME)]),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(&POD_LABELS),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    affinity: Some(Affinity {
                        node_affinity: Some(NodeAffinity {
                            required_during_scheduling_ignored_during_execution: Some(
                                NodeSelector {
                                    node_selector_terms: vec![NodeSelectorTerm {
                                        match_expressions: Some(vec![NodeSelectorRequirement {
                                            key: "kubernetes.io/os".into(),
                                            operator: "In".into(),
                                            values: Some(vec!["linux".into()]),
                                        }]),
                                        ..Default::default()
                                    }],
                                },
                            ),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![flanneld],
                    host_network: Some(true),
                    init_containers: Some(init),
                    priority_class_name: Some("system-node-critical".into()),
                    service_account_name: Some(NAME.into()),
                    tolerations: Some(vec![Toleration {
                        effect: Some("NoSchedule".into()),
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }]),
                    volumes: Some(vec![
                        host_path("run", "/run/flannel", None),
                        host_path("cni-plugin", "/opt/cni/bin", None),
                        host_path("cni", "/etc/cni/net.d", None),
                        Volume {
                            name: "flannel-cfg".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: CONFIG.into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        host_path("xtables-lock", "/run/xtables.lock", Some("FileOrCreate")),
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addons::calico::tests::{allows, assert_builtins_round_trip};
    use crate::provision::tests::example;

    fn spec() -> Spec {
        let mut spec = example("external-etcd.yaml");
        spec.cni.plugin = kubeha_spec::CniPlugin::Flannel;
        spec
    }

    fn object<'a>(b: &'a Bundle, kind: &str) -> &'a serde_json::Value {
        &b.manifests
            .iter()
            .find(|m| m.kind == kind)
            .unwrap_or_else(|| panic!("{kind} in the bundle"))
            .object
    }

    #[test]
    fn net_conf_uses_the_pod_cidr_and_vxlan() {
        let mut spec = spec();
        spec.networking.pod_cidr = "10.77.0.0/16".parse().expect("cidr");
        let b = bundle(&spec).expect("renders");
        assert_eq!((b.name.as_str(), b.stage), ("flannel", Stage::Cni));
        let cm: ConfigMap = serde_json::from_value(object(&b, "ConfigMap").clone()).expect("cm");
        assert_eq!(cm.metadata.name.as_deref(), Some(CONFIG));
        let data = cm.data.expect("data");
        let net: serde_json::Value =
            serde_json::from_str(&data["net-conf.json"]).expect("net-conf.json is JSON");
        assert_eq!(net["Network"], "10.77.0.0/16");
        assert_eq!(net["Backend"]["Type"], "vxlan");
        let cni: serde_json::Value =
            serde_json::from_str(&data["cni-conf.json"]).expect("cni-conf.json is JSON");
        assert_eq!(cni["plugins"][0]["type"], "flannel");
        assert_eq!(cni["plugins"][1]["type"], "portmap");
    }

    #[test]
    fn daemon_set_installs_the_plugin_then_the_config() {
        let b = bundle(&spec()).expect("renders");
        let ds: DaemonSet = serde_json::from_value(object(&b, "DaemonSet").clone()).expect("ds");
        let pod = ds.spec.and_then(|s| s.template.spec).expect("pod");
        assert_eq!(pod.host_network, Some(true));
        let init = pod.init_containers.expect("init containers");
        let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["install-cni-plugin", "install-cni"]);
        assert_eq!(
            init[1]
                .args
                .as_deref()
                .and_then(|a| a.last())
                .map(String::as_str),
            Some("/etc/cni/net.d/10-flannel.conflist")
        );
        assert_eq!(
            pod.containers[0].args.as_deref(),
            Some(&["--ip-masq".to_string(), "--kube-subnet-mgr".to_string()][..])
        );
        let ns = object(&b, "Namespace");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "privileged"
        );
        // flanneld reads nodes' podCIDR and writes its annotations to node status.
        let role: ClusterRole =
            serde_json::from_value(object(&b, "ClusterRole").clone()).expect("role");
        let rules = role.rules.expect("rules");
        assert!(allows(&rules, "", "nodes", None, "watch"));
        assert!(allows(&rules, "", "nodes/status", None, "patch"));
        assert!(allows(&rules, "", "pods", None, "get"));
        assert!(!allows(&rules, "", "nodes", None, "delete"));
    }

    #[test]
    fn images_are_pinned_and_mirrored() {
        let mut spec = spec();
        assert_eq!(
            images(&spec),
            [
                format!("ghcr.io/flannel-io/flannel:{FLANNEL_VERSION}"),
                format!("ghcr.io/flannel-io/flannel-cni-plugin:{FLANNEL_CNI_PLUGIN_VERSION}"),
            ]
        );
        spec.image_repository = "mirror.example/k8s".into();
        let want = images(&spec);
        assert_eq!(
            want[0],
            format!("mirror.example/k8s/flannel-io/flannel:{FLANNEL_VERSION}")
        );
        let b = bundle(&spec).expect("renders");
        let ds: DaemonSet = serde_json::from_value(object(&b, "DaemonSet").clone()).expect("ds");
        let pod = ds.spec.and_then(|s| s.template.spec).expect("pod");
        let mut used: Vec<String> = pod
            .init_containers
            .unwrap_or_default()
            .into_iter()
            .chain(pod.containers)
            .filter_map(|c| c.image)
            .collect();
        used.sort();
        used.dedup();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(used, want_sorted, "the pod pulls exactly the listed images");
    }

    #[test]
    fn every_object_round_trips_through_its_type() {
        assert_builtins_round_trip(&bundle(&spec()).expect("renders"));
    }

    #[test]
    fn snapshot_external_etcd() {
        let b = bundle(&spec()).expect("renders");
        // Snapshots of the whole crate live in src/snapshots.
        insta::with_settings!({ snapshot_path => "../snapshots" }, {
            insta::assert_snapshot!("flannel.yaml", b.yaml());
        });
    }
}
