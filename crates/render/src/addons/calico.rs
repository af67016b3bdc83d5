//! Calico through the Tigera operator, embedded and typed (no download at run time).
//!
//! What is applied, in this order, and why:
//!
//! 1. Namespace `tigera-operator` (pod-security `privileged`: the operator runs on the host
//!    network and mounts `/var/lib/calico`).
//! 2. ServiceAccount, ClusterRoles `tigera-operator` and `tigera-operator-secrets`, their
//!    ClusterRoleBinding and RoleBinding: the rules of upstream's `tigera-operator.yaml`
//!    (v3.31 line), so the operator can act the moment it starts.
//! 3. The two CustomResourceDefinitions kubeha itself creates objects of,
//!    `installations.operator.tigera.io` and `apiservers.operator.tigera.io`, so the API server
//!    accepts the `Installation` and `APIServer` in step 5 without waiting for the operator.
//!    They are structural stubs (`x-kubernetes-preserve-unknown-fields` under `spec` and
//!    `status`), not upstream's multi-megabyte schemas: the operator runs with
//!    `-manage-crds=true`, which makes it create every other Calico and operator CRD at start
//!    (tigera/operator#3610, in every operator since v1.37) and then update all of them,
//!    these two included, to the full schema it embeds. Applying them again must therefore
//!    not take the schema back (create when absent, or server-side apply without force).
//! 4. Deployment `tigera-operator` (host network, tolerates every taint: it must run before
//!    any pod network exists).
//! 5. `Installation default` (one IPv4 pool on the spec's pod CIDR, the spec's
//!    encapsulation, `/26` blocks, NAT outgoing; `registry` when a mirror is configured) and
//!    `APIServer default`, as upstream's `custom-resources.yaml` does. Upstream's quickstart
//!    also creates `Goldmane` and `Whisker` (flow logs and their UI); kubeha leaves those out,
//!    pod networking does not need them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, EnvFromSource, EnvVar, EnvVarSource, HostPathVolumeSource,
    Namespace, ObjectFieldSelector, PodSpec, PodTemplateSpec, ServiceAccount, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceSubresourceStatus, CustomResourceSubresources,
    CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kubeha_spec::Spec;
use serde_json::json;

use super::build::{env, labels, meta};
use crate::error::Result;
use crate::images::{DEFAULT_REPOSITORY, mirror};
use crate::manifest::{Bundle, Manifest, Stage};

/// Calico release the operator below installs (docs.tigera.io component versions: 3.31.3).
pub const CALICO_VERSION: &str = "v3.31.3";
/// The tigera/operator release that ships Calico [`CALICO_VERSION`].
pub const TIGERA_OPERATOR_VERSION: &str = "v1.40.3";

const NAMESPACE: &str = "tigera-operator";
const OPERATOR: &str = "tigera-operator";
const SECRETS_ROLE: &str = "tigera-operator-secrets";

/// Calico images the operator deploys for an `Installation` plus an `APIServer` on a
/// self-managed Linux cluster (operator v1.40 pulls them from quay.io by default).
const CALICO_COMPONENTS: [&str; 8] = [
    "node",
    "cni",
    "kube-controllers",
    "typha",
    "pod2daemon-flexvol",
    "csi",
    "node-driver-registrar",
    "apiserver",
];

fn operator_upstream() -> String {
    format!("quay.io/tigera/operator:{TIGERA_OPERATOR_VERSION}")
}

/// The operator image and every image it will pull, mapped through the spec's mirror.
pub fn images(spec: &Spec) -> Vec<String> {
    let mut out = vec![mirror(spec, &operator_upstream())];
    out.extend(
        CALICO_COMPONENTS
            .iter()
            .map(|c| mirror(spec, &format!("quay.io/calico/{c}:{CALICO_VERSION}"))),
    );
    out
}

/// The operator, its RBAC, the CRDs kubeha's own objects need, and the `Installation`.
pub fn bundle(spec: &Spec) -> Result<Bundle> {
    let manifests = vec![
        Manifest::typed(&namespace())?,
        Manifest::typed(&service_account())?,
        Manifest::typed(&secrets_cluster_role())?,
        Manifest::typed(&cluster_role())?,
        Manifest::typed(&cluster_role_binding())?,
        Manifest::typed(&secrets_role_binding())?,
        Manifest::typed(&stub_crd("Installation", "installations"))?,
        Manifest::typed(&stub_crd("APIServer", "apiservers"))?,
        Manifest::typed(&deployment(spec))?,
        Manifest::custom("installations", installation(spec))?,
        Manifest::custom("apiservers", api_server())?,
    ];
    Ok(Bundle {
        name: "calico".into(),
        stage: Stage::Cni,
        manifests,
    })
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

/// An RBAC rule; `names` empty means every object of those resources.
pub(crate) fn rule(
    groups: &[&str],
    resources: &[&str],
    names: &[&str],
    verbs: &[&str],
) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        resource_names: if names.is_empty() {
            None
        } else {
            Some(strings(names))
        },
        verbs: strings(verbs),
        ..Default::default()
    }
}

/// A CRD whose schema accepts any `spec` and `status`: enough for the API server to store and
/// serve objects before the component's own controller (or nobody) validates them.
///
/// `versions` lists `(name, storage)`; every version is served.
pub(crate) fn open_crd(
    group: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    versions: &[(&str, bool)],
) -> CustomResourceDefinition {
    let open = JSONSchemaProps {
        type_: Some("object".into()),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..Default::default()
    };
    let schema = JSONSchemaProps {
        type_: Some("object".into()),
        properties: Some(BTreeMap::from([
            (
                "apiVersion".to_string(),
                JSONSchemaProps {
                    type_: Some("string".into()),
                    ..Default::default()
                },
            ),
            (
                "kind".to_string(),
                JSONSchemaProps {
                    type_: Some("string".into()),
                    ..Default::default()
                },
            ),
            (
                "metadata".to_string(),
                JSONSchemaProps {
                    type_: Some("object".into()),
                    ..Default::default()
                },
            ),
            ("spec".to_string(), open.clone()),
            ("status".to_string(), open),
        ])),
        ..Default::default()
    };
    CustomResourceDefinition {
        metadata: meta(&format!("{plural}.{group}"), None, &[]),
        spec: CustomResourceDefinitionSpec {
            group: group.into(),
            names: CustomResourceDefinitionNames {
                kind: kind.into(),
                list_kind: Some(format!("{kind}List")),
                plural: plural.into(),
                singular: Some(kind.to_lowercase()),
                ..Default::default()
            },
            scope: if namespaced { "Namespaced" } else { "Cluster" }.into(),
            versions: versions
                .iter()
                .map(|(name, storage)| CustomResourceDefinitionVersion {
                    name: (*name).into(),
                    served: true,
                    storage: *storage,
                    schema: Some(CustomResourceValidation {
                        open_api_v3_schema: Some(schema.clone()),
                    }),
                    subresources: Some(CustomResourceSubresources {
                        status: Some(CustomResourceSubresourceStatus(json!({}))),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn stub_crd(kind: &str, plural: &str) -> CustomResourceDefinition {
    open_crd("operator.tigera.io", kind, plural, false, &[("v1", true)])
}

fn namespace() -> Namespace {
    Namespace {
        metadata: meta(
            NAMESPACE,
            None,
            &[
                ("name", NAMESPACE),
                ("pod-security.kubernetes.io/enforce", "privileged"),
            ],
        ),
        ..Default::default()
    }
}

fn service_account() -> ServiceAccount {
    ServiceAccount {
        metadata: meta(OPERATOR, Some(NAMESPACE), &[("k8s-app", OPERATOR)]),
        ..Default::default()
    }
}

fn secrets_cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta(SECRETS_ROLE, None, &[("k8s-app", OPERATOR)]),
        rules: Some(vec![rule(
            &[""],
            &["secrets"],
            &[],
            &["create", "update", "delete"],
        )]),
        ..Default::default()
    }
}

const CALICO_CRD_KINDS: [&str; 22] = [
    "bgpconfigurations",
    "bgpfilters",
    "bgppeers",
    "blockaffinities",
    "caliconodestatuses",
    "clusterinformations",
    "felixconfigurations",
    "globalnetworkpolicies",
    "stagedglobalnetworkpolicies",
    "globalnetworksets",
    "hostendpoints",
    "ipamblocks",
    "ipamconfigs",
    "ipamhandles",
    "ippools",
    "ipreservations",
    "kubecontrollersconfigurations",
    "networkpolicies",
    "stagednetworkpolicies",
    "stagedkubernetesnetworkpolicies",
    "networksets",
    "tiers",
];

const OPERATOR_KINDS: [&str; 8] = [
    "apiservers",
    "gatewayapis",
    "imagesets",
    "installations",
    "tigerastatuses",
    "whiskers",
    "goldmanes",
    "managementclusterconnections",
];

const GATEWAY_CRDS: [&str; 20] = [
    "backendlbpolicies.gateway.networking.k8s.io",
    "backendtlspolicies.gateway.networking.k8s.io",
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "grpcroutes.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "referencegrants.gateway.networking.k8s.io",
    "tcproutes.gateway.networking.k8s.io",
    "tlsroutes.gateway.networking.k8s.io",
    "udproutes.gateway.networking.k8s.io",
    "xbackendtrafficpolicies.gateway.networking.x-k8s.io",
    "xlistenersets.gateway.networking.x-k8s.io",
    "backends.gateway.envoyproxy.io",
    "backendtrafficpolicies.gateway.envoyproxy.io",
    "clienttrafficpolicies.gateway.envoyproxy.io",
    "envoyextensionpolicies.gateway.envoyproxy.io",
    "envoypatchpolicies.gateway.envoyproxy.io",
    "envoyproxies.gateway.envoyproxy.io",
    "httproutefilters.gateway.envoyproxy.io",
    "securitypolicies.gateway.envoyproxy.io",
];

/// The operator's rules as upstream's v3.31 `tigera-operator.yaml` grants them (non-OpenShift).
fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn operator_rules() -> Vec<PolicyRule> {
    const CRUDW: [&str; 6] = ["create", "get", "list", "update", "delete", "watch"];
    const RW: [&str; 3] = ["get", "list", "watch"];
    let crd = ["apiextensions.k8s.io"];
    let crds = ["customresourcedefinitions"];
    let named = |suffix: &str, kinds: &[&str]| -> Vec<String> {
        kinds.iter().map(|k| format!("{k}.{suffix}")).collect()
    };
    let v1_names = named("crd.projectcalico.org", &CALICO_CRD_KINDS);
    let v3_kinds: Vec<&str> = CALICO_CRD_KINDS
        .iter()
        .map(|k| {
            if *k == "ipamconfigs" {
                "ipamconfigurations"
            } else {
                k
            }
        })
        .collect();
    let v3_names = named("projectcalico.org", &v3_kinds);
    let op_names = named("operator.tigera.io", &OPERATOR_KINDS);
    let mut operator_resources = vec![];
    for (kind, status) in [
        ("apiservers", true),
        ("gatewayapis", false),
        ("goldmanes", true),
        ("imagesets", false),
        ("installations", true),
        ("managementclusterconnections", true),
        ("tigerastatuses", true),
        ("whiskers", true),
    ] {
        operator_resources.push(kind.to_string());
        if kind != "imagesets" {
            operator_resources.push(format!("{kind}/finalizers"));
        }
        if status {
            operator_resources.push(format!("{kind}/status"));
        }
    }
    vec![
        rule(&crd, &crds, &[], &["get", "list", "watch", "create"]),
        rule(&crd, &crds, &refs(&v1_names), &["update"]),
        rule(&crd, &crds, &refs(&v3_names), &["update"]),
        rule(&crd, &crds, &refs(&op_names), &["update"]),
        rule(
            &crd,
            &crds,
            &["clusternetworkpolicies.policy.networking.k8s.io"],
            &["update", "delete"],
        ),
        rule(
            &[""],
            &[
                "namespaces",
                "pods",
                "podtemplates",
                "services",
                "endpoints",
                "events",
                "configmaps",
                "serviceaccounts",
            ],
            &[],
            &CRUDW,
        ),
        rule(
            &[""],
            &["resourcequotas", "secrets"],
            &[],
            &["list", "get", "watch"],
        ),
        rule(
            &[""],
            &["resourcequotas"],
            &["calico-critical-pods", "tigera-critical-pods"],
            &CRUDW,
        ),
        rule(&[""], &["nodes"], &[], &["get", "patch", "list", "watch"]),
        rule(
            &["authentication.k8s.io"],
            &["tokenreviews"],
            &[],
            &["create"],
        ),
        rule(
            &["rbac.authorization.k8s.io"],
            &[
                "clusterroles",
                "clusterrolebindings",
                "rolebindings",
                "roles",
            ],
            &[],
            &[
                "create", "get", "list", "update", "delete", "watch", "bind", "escalate",
            ],
        ),
        rule(
            &["apps"],
            &["deployments", "daemonsets", "statefulsets"],
            &[],
            &[
                "create", "get", "list", "patch", "update", "delete", "watch",
            ],
        ),
        rule(
            &["apps"],
            &["deployments/finalizers"],
            &[OPERATOR],
            &["update"],
        ),
        rule(
            &["operator.tigera.io"],
            &refs(&operator_resources),
            &[],
            &["get", "list", "update", "patch", "watch"],
        ),
        rule(
            &["operator.tigera.io"],
            &["tigerastatuses"],
            &[],
            &["create", "delete"],
        ),
        rule(
            &["operator.tigera.io"],
            &["installations", "apiservers", "whiskers", "goldmanes"],
            &[],
            &["delete"],
        ),
        rule(
            &["networking.k8s.io"],
            &["networkpolicies"],
            &[],
            &["create", "update", "delete", "get", "list", "watch"],
        ),
        rule(
            &["crd.projectcalico.org", "projectcalico.org"],
            &["felixconfigurations", "ippools"],
            &[],
            &["create", "patch", "list", "get", "watch"],
        ),
        rule(
            &["crd.projectcalico.org", "projectcalico.org"],
            &[
                "kubecontrollersconfigurations",
                "bgpconfigurations",
                "clusterinformations",
            ],
            &[],
            &RW,
        ),
        rule(
            &["projectcalico.org"],
            &["ippools"],
            &[],
            &[
                "create", "update", "delete", "patch", "get", "list", "watch",
            ],
        ),
        rule(
            &["projectcalico.org"],
            &["ipamconfigurations", "clusterinformations"],
            &[],
            &RW,
        ),
        rule(&["scheduling.k8s.io"], &["priorityclasses"], &[], &CRUDW),
        rule(&["policy"], &["poddisruptionbudgets"], &[], &CRUDW),
        rule(
            &["apiregistration.k8s.io"],
            &["apiservices"],
            &[],
            &["list", "watch", "create", "update"],
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], &[], &RW),
        rule(
            &["admissionregistration.k8s.io"],
            &["mutatingwebhookconfigurations"],
            &[],
            &["create", "delete", "get", "list", "watch"],
        ),
        rule(
            &["admissionregistration.k8s.io"],
            &["mutatingwebhookconfigurations"],
            &["envoy-gateway-topology-injector.tigera-gateway"],
            &["update"],
        ),
        rule(&["coordination.k8s.io"], &["leases"], &[], &CRUDW),
        rule(
            &["storage.k8s.io"],
            &["csidrivers"],
            &[],
            &["list", "watch", "update", "get", "create", "delete"],
        ),
        rule(
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
            &[],
            &["list", "watch"],
        ),
        rule(
            &["admissionregistration.k8s.io"],
            &["validatingwebhookconfigurations"],
            &[],
            &["create", "update", "delete", "get", "list", "watch"],
        ),
        rule(&["policy"], &["podsecuritypolicies"], &[OPERATOR], &["use"]),
        rule(
            &["policy"],
            &["podsecuritypolicies"],
            &[],
            &["get", "list", "watch", "create", "update", "delete"],
        ),
        rule(
            &["projectcalico.org"],
            &["tier.networkpolicies", "tier.globalnetworkpolicies"],
            &["allow-tigera.*"],
            &["list", "watch", "get", "create", "update", "delete"],
        ),
        rule(
            &["projectcalico.org"],
            &["tiers"],
            &["allow-tigera"],
            &["get", "delete", "update"],
        ),
        rule(
            &["projectcalico.org"],
            &["tiers"],
            &[],
            &["create", "list", "watch"],
        ),
        rule(&crd, &crds, &GATEWAY_CRDS, &["update"]),
        rule(
            &["gateway.networking.k8s.io"],
            &["gatewayclasses"],
            &[],
            &["create", "update", "delete", "list", "get", "watch"],
        ),
        rule(
            &["gateway.envoyproxy.io"],
            &["envoyproxies"],
            &[],
            &["create", "update", "delete", "list", "get", "watch"],
        ),
        rule(&["batch"], &["jobs"], &[], &["create", "list", "watch"]),
        rule(
            &["batch"],
            &["jobs"],
            &["tigera-gateway-api-gateway-helm-certgen"],
            &["update"],
        ),
        rule(
            &["kubevirt.io"],
            &["virtualmachineinstancemigrations"],
            &[],
            &RW,
        ),
    ]
}

fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta(OPERATOR, None, &[("k8s-app", OPERATOR)]),
        rules: Some(operator_rules()),
        ..Default::default()
    }
}

fn operator_subject() -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: OPERATOR.into(),
        namespace: Some(NAMESPACE.into()),
        ..Default::default()
    }
}

fn cluster_role_ref(name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "ClusterRole".into(),
        name: name.into(),
    }
}

fn cluster_role_binding() -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(OPERATOR, None, &[("k8s-app", OPERATOR)]),
        role_ref: cluster_role_ref(OPERATOR),
        subjects: Some(vec![operator_subject()]),
    }
}

fn secrets_role_binding() -> RoleBinding {
    RoleBinding {
        metadata: meta(SECRETS_ROLE, Some(NAMESPACE), &[("k8s-app", OPERATOR)]),
        role_ref: cluster_role_ref(SECRETS_ROLE),
        subjects: Some(vec![operator_subject()]),
    }
}

fn deployment(spec: &Spec) -> Deployment {
    let pod_labels = labels(&[("name", OPERATOR), ("k8s-app", OPERATOR)]);
    let container = Container {
        name: OPERATOR.into(),
        image: Some(mirror(spec, &operator_upstream())),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["operator".into()]),
        // The operator creates and keeps every Calico CRD itself (see the module comment).
        args: Some(vec!["-manage-crds=true".into()]),
        volume_mounts: Some(vec![VolumeMount {
            name: "var-lib-calico".into(),
            mount_path: "/var/lib/calico".into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        env: Some(vec![
            env("WATCH_NAMESPACE", ""),
            EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            env("OPERATOR_NAME", OPERATOR),
            env(
                "TIGERA_OPERATOR_INIT_IMAGE_VERSION",
                TIGERA_OPERATOR_VERSION,
            ),
        ]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: "kubernetes-services-endpoint".into(),
                optional: Some(true),
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let toleration = |effect: &str| Toleration {
        effect: Some(effect.into()),
        operator: Some("Exists".into()),
        ..Default::default()
    };
    Deployment {
        metadata: meta(OPERATOR, Some(NAMESPACE), &[("k8s-app", OPERATOR)]),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: labels(&[("name", OPERATOR)]),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: pod_labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    node_selector: labels(&[("kubernetes.io/os", "linux")]),
                    tolerations: Some(vec![toleration("NoExecute"), toleration("NoSchedule")]),
                    service_account_name: Some(OPERATOR.into()),
                    termination_grace_period_seconds: Some(60),
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "var-lib-calico".into(),
                        host_path: Some(HostPathVolumeSource {
                            path: "/var/lib/calico".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `Installation` the operator turns into calico-node, typha, kube-controllers, CSI.
///
/// With a mirror, `registry` is the mirror (the operator appends the image path
/// `calico/<name>:<tag>`), which is exactly where [`mirror`] maps each upstream image; the
/// default `imagePath` (`calico`) therefore stays.
fn installation(spec: &Spec) -> serde_json::Value {
    let mut body = json!({
        "calicoNetwork": {
            "ipPools": [{
                "name": "default-ipv4-ippool",
                "blockSize": 26,
                "cidr": spec.networking.pod_cidr.to_string(),
                "encapsulation": spec.cni.encapsulation,
                "natOutgoing": "Enabled",
                "nodeSelector": "all()",
            }],
        },
    });
    if spec.image_repository != DEFAULT_REPOSITORY {
        body["registry"] = json!(format!("{}/", spec.image_repository));
    }
    json!({
        "apiVersion": "operator.tigera.io/v1",
        "kind": "Installation",
        "metadata": {"name": "default"},
        "spec": body,
    })
}

fn api_server() -> serde_json::Value {
    json!({
        "apiVersion": "operator.tigera.io/v1",
        "kind": "APIServer",
        "metadata": {"name": "default"},
        "spec": {},
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::provision::tests::example;

    /// Serializes, deserializes as `K`, serializes again: equal only if `K` knows every field.
    pub(crate) fn assert_round_trip<K>(m: &Manifest)
    where
        K: serde::de::DeserializeOwned + serde::Serialize,
    {
        let typed: K = serde_json::from_value(m.object.clone())
            .unwrap_or_else(|e| panic!("{} does not parse as its type: {e}", m.id()));
        let again = serde_json::to_value(&typed).expect("serializes");
        assert_eq!(
            again,
            m.object,
            "{} lost or changed fields in a round trip",
            m.id()
        );
    }

    /// Every built-in kind used by the add-on bundles, checked through its k8s-openapi type.
    pub(crate) fn assert_builtins_round_trip(bundle: &Bundle) {
        use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
        use k8s_openapi::api::apps::v1::DaemonSet;
        use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
        use k8s_openapi::api::rbac::v1::Role;
        for m in &bundle.manifests {
            match m.kind.as_str() {
                "Namespace" => assert_round_trip::<Namespace>(m),
                "ServiceAccount" => assert_round_trip::<ServiceAccount>(m),
                "ClusterRole" => assert_round_trip::<ClusterRole>(m),
                "ClusterRoleBinding" => assert_round_trip::<ClusterRoleBinding>(m),
                "Role" => assert_round_trip::<Role>(m),
                "RoleBinding" => assert_round_trip::<RoleBinding>(m),
                "CustomResourceDefinition" => assert_round_trip::<CustomResourceDefinition>(m),
                "Deployment" => assert_round_trip::<Deployment>(m),
                "DaemonSet" => assert_round_trip::<DaemonSet>(m),
                "ConfigMap" => assert_round_trip::<ConfigMap>(m),
                "Secret" => assert_round_trip::<Secret>(m),
                "Service" => assert_round_trip::<Service>(m),
                "ValidatingWebhookConfiguration" => {
                    assert_round_trip::<ValidatingWebhookConfiguration>(m)
                }
                _ => {
                    // A custom resource: the API server needs these three.
                    assert!(m.object["apiVersion"].is_string(), "{}", m.id());
                    assert!(m.object["kind"].is_string(), "{}", m.id());
                    assert!(m.object["metadata"]["name"].is_string(), "{}", m.id());
                    assert!(
                        m.api_version.contains('/'),
                        "custom resources live in a group"
                    );
                }
            }
        }
    }

    /// Whether `rules` let `verb` on `group`/`resource` (optionally one object by name).
    pub(crate) fn allows(
        rules: &[PolicyRule],
        group: &str,
        resource: &str,
        name: Option<&str>,
        verb: &str,
    ) -> bool {
        let has = |v: &Option<Vec<String>>, x: &str| {
            v.as_ref()
                .is_some_and(|v| v.iter().any(|s| s == x || s == "*"))
        };
        rules.iter().any(|r| {
            has(&r.api_groups, group)
                && has(&r.resources, resource)
                && r.verbs.iter().any(|v| v == verb || v == "*")
                && match (&r.resource_names, name) {
                    (None, _) => true,
                    (Some(names), Some(n)) => names.iter().any(|x| x == n),
                    (Some(_), None) => false,
                }
        })
    }

    fn find<'a>(bundle: &'a Bundle, kind: &str, name: &str) -> &'a Manifest {
        bundle
            .manifests
            .iter()
            .find(|m| m.kind == kind && m.name == name)
            .unwrap_or_else(|| panic!("{kind}/{name} in the bundle"))
    }

    #[test]
    fn installation_carries_the_pod_cidr_and_encapsulation() {
        let mut spec = example("external-etcd.yaml");
        spec.networking.pod_cidr = "10.123.0.0/16".parse().expect("cidr");
        spec.cni.encapsulation = "IPIP".into();
        let b = bundle(&spec).expect("renders");
        assert_eq!((b.name.as_str(), b.stage), ("calico", Stage::Cni));
        let inst = find(&b, "Installation", "default");
        assert_eq!(inst.plural, "installations");
        assert_eq!(inst.namespace, None);
        let pool = &inst.object["spec"]["calicoNetwork"]["ipPools"][0];
        assert_eq!(pool["cidr"], "10.123.0.0/16");
        assert_eq!(pool["encapsulation"], "IPIP");
        assert_eq!(pool["blockSize"], 26);
        assert_eq!(pool["natOutgoing"], "Enabled");
        assert_eq!(pool["nodeSelector"], "all()");
        assert!(
            inst.object["spec"].get("registry").is_none(),
            "no mirror, no registry"
        );
        // Upstream's quickstart creates an APIServer too.
        assert_eq!(find(&b, "APIServer", "default").object["spec"], json!({}));
    }

    #[test]
    fn crds_for_our_objects_come_before_them() {
        let b = bundle(&example("external-etcd.yaml")).expect("renders");
        let pos = |kind: &str, name: &str| {
            b.manifests
                .iter()
                .position(|m| m.kind == kind && m.name == name)
                .unwrap_or_else(|| panic!("{kind}/{name}"))
        };
        let crd = pos(
            "CustomResourceDefinition",
            "installations.operator.tigera.io",
        );
        assert!(crd < pos("Installation", "default"));
        assert!(
            pos("CustomResourceDefinition", "apiservers.operator.tigera.io")
                < pos("APIServer", "default")
        );
        assert!(pos("Namespace", NAMESPACE) < pos("Deployment", OPERATOR));
        let crd = &b.manifests[crd].object;
        assert_eq!(crd["spec"]["scope"], "Cluster");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(
            schema["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
    }

    #[test]
    fn operator_manages_crds_and_may_do_its_job() {
        let b = bundle(&example("external-etcd.yaml")).expect("renders");
        let dep: Deployment =
            serde_json::from_value(find(&b, "Deployment", OPERATOR).object.clone())
                .expect("deployment");
        let pod = dep.spec.and_then(|s| s.template.spec).expect("pod spec");
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.service_account_name.as_deref(), Some(OPERATOR));
        let c = &pod.containers[0];
        assert_eq!(
            c.args.as_deref(),
            Some(&["-manage-crds=true".to_string()][..])
        );
        let rules: ClusterRole =
            serde_json::from_value(find(&b, "ClusterRole", OPERATOR).object.clone()).expect("role");
        let rules = rules.rules.expect("rules");
        // -manage-crds: create every CRD, update the ones it owns (our stubs included).
        let crd = ("apiextensions.k8s.io", "customresourcedefinitions");
        assert!(allows(&rules, crd.0, crd.1, None, "create"));
        for name in [
            "installations.operator.tigera.io",
            "ippools.crd.projectcalico.org",
        ] {
            assert!(allows(&rules, crd.0, crd.1, Some(name), "update"), "{name}");
        }
        assert!(!allows(
            &rules,
            crd.0,
            crd.1,
            Some("gateways.example.com"),
            "update"
        ));
        // What it deploys and reads.
        assert!(allows(&rules, "apps", "daemonsets", None, "create"));
        assert!(allows(
            &rules,
            "operator.tigera.io",
            "installations/status",
            None,
            "update"
        ));
        assert!(allows(
            &rules,
            "coordination.k8s.io",
            "leases",
            None,
            "update"
        ));
        assert!(allows(
            &rules,
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
            "escalate"
        ));
        let secrets: ClusterRole =
            serde_json::from_value(find(&b, "ClusterRole", SECRETS_ROLE).object.clone())
                .expect("secrets role");
        assert!(allows(
            &secrets.rules.expect("rules"),
            "",
            "secrets",
            None,
            "create"
        ));
        let binding = find(&b, "ClusterRoleBinding", OPERATOR);
        assert_eq!(binding.object["subjects"][0]["namespace"], NAMESPACE);
    }

    #[test]
    fn images_are_pinned_and_mirrored() {
        let mut spec = example("external-etcd.yaml");
        let upstream = images(&spec);
        assert_eq!(
            upstream[0],
            format!("quay.io/tigera/operator:{TIGERA_OPERATOR_VERSION}")
        );
        for c in [
            "node",
            "cni",
            "typha",
            "kube-controllers",
            "csi",
            "apiserver",
        ] {
            let want = format!("quay.io/calico/{c}:{CALICO_VERSION}");
            assert!(upstream.contains(&want), "{want} in {upstream:?}");
        }
        assert!(
            upstream[1..]
                .iter()
                .all(|i| i.ends_with(&format!(":{CALICO_VERSION}"))),
            "every Calico image carries the pinned tag: {upstream:?}"
        );

        spec.image_repository = "registry.example.com/k8s".into();
        let mirrored = images(&spec);
        assert_eq!(mirrored.len(), upstream.len());
        assert!(
            mirrored
                .iter()
                .all(|i| i.starts_with("registry.example.com/k8s/")),
            "{mirrored:?}"
        );
        let b = bundle(&spec).expect("renders");
        let dep = find(&b, "Deployment", OPERATOR);
        assert_eq!(
            dep.object["spec"]["template"]["spec"]["containers"][0]["image"],
            mirrored[0].as_str()
        );
        // The operator composes <registry><imagePath>/<name>:<tag>: that must be our mirror.
        let inst = find(&b, "Installation", "default");
        let registry = inst.object["spec"]["registry"].as_str().expect("registry");
        let node = format!("{registry}calico/node:{CALICO_VERSION}");
        assert!(mirrored.contains(&node), "{node} in {mirrored:?}");
    }

    #[test]
    fn every_object_round_trips_through_its_type() {
        let b = bundle(&example("external-etcd.yaml")).expect("renders");
        assert_builtins_round_trip(&b);
        assert!(!b.sensitive());
    }

    #[test]
    fn snapshot_external_etcd() {
        let b = bundle(&example("external-etcd.yaml")).expect("renders");
        // Snapshots of the whole crate live in src/snapshots.
        insta::with_settings!({ snapshot_path => "../snapshots" }, {
            insta::assert_snapshot!("calico.yaml", b.yaml());
        });
    }
}
