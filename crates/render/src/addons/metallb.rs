//! MetalLB in layer-2 mode: upstream's native install (`metallb-native.yaml`, FRR left out)
//! for [`METALLB_VERSION`], embedded and typed, plus the address pool from the spec.
//!
//! What is applied, in this order, and why:
//!
//! 1. Namespace `metallb-system` (pod-security `privileged`: the speaker uses the host network
//!    and `NET_RAW` to answer ARP).
//! 2. The nine `metallb.io` CRDs. They are structural stubs (`x-kubernetes-preserve-unknown-fields`
//!    under `spec` and `status`) rather than upstream's ~70 KB of schema: kubeha writes only
//!    the two objects of step 6 and fills every field that upstream's schema would default
//!    (`autoAssign`, `avoidBuggyIPs`); validation of user objects is still done by MetalLB's
//!    admission webhook. `bgppeers` keeps both served versions and the conversion webhook.
//! 3. Service accounts `controller` and `speaker` and upstream's Roles, ClusterRoles and
//!    bindings.
//! 4. ConfigMap `metallb-excludel2`, the empty Secret `metallb-webhook-cert`, Service
//!    `metallb-webhook-service`. The controller's certificate rotator writes the serving
//!    certificate into that Secret and the CA into the webhook configuration and the
//!    `bgppeers` conversion webhook; the controller pod mounts the Secret, so it must exist
//!    first. kubeha never sets `data` or `caBundle`, so a server-side re-apply leaves what the
//!    rotator wrote alone.
//! 5. Deployment `controller`, DaemonSet `speaker`, ValidatingWebhookConfiguration. The
//!    memberlist key Secret (`metallb-memberlist`) is not shipped: the controller creates it
//!    (`METALLB_ML_SECRET_NAME`), and speaker pods start once it exists.
//! 6. `IPAddressPool kubeha` with the spec's addresses and `L2Advertisement kubeha` for it.
//!    The webhook fails closed, so these are accepted only once the controller serves it:
//!    the apply edge retries them until then.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference as AdmissionServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction,
    Namespace, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, Secret, SecretVolumeSource,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubeha_spec::Spec;
use serde_json::json;

use super::build::{env, field_env, labels};
use crate::addons::calico::{open_crd, rule};
use crate::error::Result;
use crate::images::mirror;
use crate::manifest::{Bundle, Manifest, Stage};

/// MetalLB release (controller and speaker images).
pub const METALLB_VERSION: &str = "v0.15.3";

const NAMESPACE: &str = "metallb-system";
const WEBHOOK_SERVICE: &str = "metallb-webhook-service";
const WEBHOOK_SECRET: &str = "metallb-webhook-cert";
const WEBHOOK_CONFIG: &str = "metallb-webhook-configuration";
const MEMBERLIST: &str = "metallb-memberlist";
const EXCLUDE_L2: &str = "metallb-excludel2";
/// Name of the pool and of the advertisement kubeha manages.
pub const POOL: &str = "kubeha";

/// `(kind, plural)` of every CRD in the native manifest.
const CRDS: [(&str, &str); 9] = [
    ("BFDProfile", "bfdprofiles"),
    ("BGPAdvertisement", "bgpadvertisements"),
    ("BGPPeer", "bgppeers"),
    ("Community", "communities"),
    ("ConfigurationState", "configurationstates"),
    ("IPAddressPool", "ipaddresspools"),
    ("L2Advertisement", "l2advertisements"),
    ("ServiceBGPStatus", "servicebgpstatuses"),
    ("ServiceL2Status", "servicel2statuses"),
];

fn image(spec: &Spec, component: &str) -> String {
    mirror(
        spec,
        &format!("quay.io/metallb/{component}:{METALLB_VERSION}"),
    )
}

/// The controller and speaker images, mapped through the spec's mirror.
pub fn images(spec: &Spec) -> Vec<String> {
    vec![image(spec, "controller"), image(spec, "speaker")]
}

/// MetalLB and the spec's pool; `None` when the spec has no `metallb` section.
pub fn bundle(spec: &Spec) -> Result<Option<Bundle>> {
    let Some(lb) = &spec.metallb else {
        return Ok(None);
    };
    let mut manifests = vec![Manifest::typed(&namespace())?];
    for crd in crds() {
        manifests.push(Manifest::typed(&crd)?);
    }
    manifests.extend([
        Manifest::typed(&service_account("controller"))?,
        Manifest::typed(&service_account("speaker"))?,
        Manifest::typed(&controller_role())?,
        Manifest::typed(&pod_lister_role())?,
        Manifest::typed(&controller_cluster_role())?,
        Manifest::typed(&speaker_cluster_role())?,
        Manifest::typed(&role_binding("controller", &["controller"]))?,
        Manifest::typed(&role_binding("pod-lister", &["controller", "speaker"]))?,
        Manifest::typed(&cluster_role_binding("controller"))?,
        Manifest::typed(&cluster_role_binding("speaker"))?,
        Manifest::typed(&exclude_l2())?,
        Manifest::typed(&webhook_secret())?,
        Manifest::typed(&webhook_service())?,
        Manifest::typed(&controller(spec))?,
        Manifest::typed(&speaker(spec))?,
        Manifest::typed(&webhook_configuration())?,
        Manifest::custom("ipaddresspools", pool(&lb.addresses))?,
        Manifest::custom("l2advertisements", l2_advertisement())?,
    ]);
    Ok(Some(Bundle {
        name: "metallb".into(),
        stage: Stage::LoadBalancer,
        manifests,
    }))
}

const APP: (&str, &str) = ("app", "metallb");

/// Name and labels, in `metallb-system` when `namespaced`.
fn meta(name: &str, namespaced: bool, pairs: &[(&str, &str)]) -> ObjectMeta {
    super::build::meta(name, namespaced.then_some(NAMESPACE), pairs)
}

fn namespace() -> Namespace {
    Namespace {
        metadata: meta(
            NAMESPACE,
            false,
            &[
                ("pod-security.kubernetes.io/audit", "privileged"),
                ("pod-security.kubernetes.io/enforce", "privileged"),
                ("pod-security.kubernetes.io/warn", "privileged"),
            ],
        ),
        ..Default::default()
    }
}

fn crds() -> Vec<apiext::CustomResourceDefinition> {
    CRDS.iter()
        .map(|(kind, plural)| {
            if *plural == "bgppeers" {
                let mut crd = open_crd(
                    "metallb.io",
                    kind,
                    plural,
                    true,
                    &[("v1beta1", false), ("v1beta2", true)],
                );
                crd.spec.conversion = Some(apiext::CustomResourceConversion {
                    strategy: "Webhook".into(),
                    webhook: Some(apiext::WebhookConversion {
                        client_config: Some(apiext::WebhookClientConfig {
                            service: Some(apiext::ServiceReference {
                                name: WEBHOOK_SERVICE.into(),
                                namespace: NAMESPACE.into(),
                                path: Some("/convert".into()),
                                port: None,
                            }),
                            ..Default::default()
                        }),
                        conversion_review_versions: vec!["v1".into()],
                    }),
                });
                crd
            } else {
                open_crd("metallb.io", kind, plural, true, &[("v1beta1", true)])
            }
        })
        .collect()
}

fn service_account(name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(name, true, &[APP]),
        ..Default::default()
    }
}

const RW: [&str; 3] = ["get", "list", "watch"];
const ALL: [&str; 7] = [
    "create", "delete", "get", "list", "patch", "update", "watch",
];

fn mlb(resources: &[&str], verbs: &[&str]) -> PolicyRule {
    rule(&["metallb.io"], resources, &[], verbs)
}

fn controller_role() -> Role {
    Role {
        metadata: meta("controller", true, &[APP]),
        rules: Some(vec![
            rule(&[""], &["secrets"], &[], &ALL),
            rule(&[""], &["secrets"], &[MEMBERLIST], &["list"]),
            rule(&["apps"], &["deployments"], &["controller"], &["get"]),
            mlb(&["bgppeers"], &["get", "list"]),
            mlb(&["bfdprofiles"], &RW),
            mlb(&["ipaddresspools"], &RW),
            mlb(&["ipaddresspools/status"], &["update"]),
            mlb(&["bgpadvertisements"], &RW),
            mlb(&["l2advertisements"], &RW),
            mlb(&["communities"], &RW),
        ]),
    }
}

fn pod_lister_role() -> Role {
    Role {
        metadata: meta("pod-lister", true, &[APP]),
        rules: Some(vec![
            rule(&[""], &["pods"], &[], &["list", "get"]),
            rule(&[""], &["secrets"], &[], &RW),
            rule(&[""], &["configmaps"], &[], &RW),
            mlb(&["bfdprofiles"], &RW),
            mlb(&["bgppeers"], &RW),
            mlb(&["l2advertisements"], &RW),
            mlb(&["bgpadvertisements"], &RW),
            mlb(&["ipaddresspools"], &RW),
            mlb(&["communities"], &RW),
            mlb(&["servicebgpstatuses", "servicebgpstatuses/status"], &["*"]),
        ]),
    }
}

fn controller_cluster_role() -> ClusterRole {
    let own_crds: Vec<String> = CRDS
        .iter()
        .filter(|(_, p)| !p.starts_with("service"))
        .map(|(_, p)| format!("{p}.metallb.io"))
        .collect();
    let own_crds: Vec<&str> = own_crds.iter().map(String::as_str).collect();
    let admission = ["admissionregistration.k8s.io"];
    let vwc = ["validatingwebhookconfigurations"];
    let crd = ["apiextensions.k8s.io"];
    let crds = ["customresourcedefinitions"];
    ClusterRole {
        metadata: meta("metallb-system:controller", false, &[APP]),
        rules: Some(vec![
            rule(&[""], &["services", "namespaces"], &[], &RW),
            rule(&[""], &["nodes"], &[], &["list"]),
            rule(&[""], &["services/status"], &[], &["update"]),
            rule(&[""], &["events"], &[], &["create", "patch"]),
            rule(&admission, &vwc, &[WEBHOOK_CONFIG], &ALL),
            rule(&admission, &vwc, &[], &["list", "watch"]),
            rule(&crd, &crds, &own_crds, &ALL),
            rule(&crd, &crds, &[], &["list", "watch"]),
            mlb(&["configurationstates"], &ALL),
            mlb(&["configurationstates/status"], &["get", "patch", "update"]),
        ]),
        ..Default::default()
    }
}

fn speaker_cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta("metallb-system:speaker", false, &[APP]),
        rules: Some(vec![
            rule(
                &[""],
                &["services", "endpoints", "nodes", "namespaces"],
                &[],
                &RW,
            ),
            rule(&["discovery.k8s.io"], &["endpointslices"], &[], &RW),
            rule(&[""], &["events"], &[], &["create", "patch"]),
            mlb(
                &[
                    "servicel2statuses",
                    "servicel2statuses/status",
                    "configurationstates",
                    "configurationstates/status",
                ],
                &["*"],
            ),
        ]),
        ..Default::default()
    }
}

fn subject(sa: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: sa.into(),
        namespace: Some(NAMESPACE.into()),
        ..Default::default()
    }
}

fn role_binding(role: &str, accounts: &[&str]) -> RoleBinding {
    RoleBinding {
        metadata: meta(role, true, &[APP]),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: role.into(),
        },
        subjects: Some(accounts.iter().map(|a| subject(a)).collect()),
    }
}

fn cluster_role_binding(account: &str) -> ClusterRoleBinding {
    let name = format!("metallb-system:{account}");
    ClusterRoleBinding {
        metadata: meta(&name, false, &[APP]),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name,
        },
        subjects: Some(vec![subject(account)]),
    }
}

fn exclude_l2() -> ConfigMap {
    // Interfaces the speaker never answers ARP on: container, bridge and tunnel devices.
    let data = "announcedInterfacesToExclude: [\"^docker.*\", \"^cbr.*\", \"^dummy.*\", \
                \"^virbr.*\", \"^lxcbr.*\", \"^veth.*\", \"^lo$\", \"^cali.*\", \"^tunl.*\", \
                \"^flannel.*\", \"^kube-ipvs.*\", \"^cni.*\", \"^nodelocaldns.*\"]\n";
    ConfigMap {
        metadata: meta(EXCLUDE_L2, true, &[]),
        data: Some(BTreeMap::from([(
            "excludel2.yaml".to_string(),
            data.to_string(),
        )])),
        ..Default::default()
    }
}

fn webhook_secret() -> Secret {
    Secret {
        metadata: meta(WEBHOOK_SECRET, true, &[]),
        ..Default::default()
    }
}

fn webhook_service() -> Service {
    Service {
        metadata: meta(WEBHOOK_SERVICE, true, &[]),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 443,
                target_port: Some(IntOrString::Int(9443)),
                ..Default::default()
            }]),
            selector: labels(&[("component", "controller")]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn port(name: &str, number: i32, protocol: Option<&str>) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: protocol.map(str::to_string),
        ..Default::default()
    }
}

fn metrics_probe() -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/metrics".into()),
            port: IntOrString::String("monitoring".into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(10),
        period_seconds: Some(10),
        timeout_seconds: Some(1),
        success_threshold: Some(1),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

fn read_only(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

fn component(name: &str) -> [(&'static str, &str); 2] {
    [APP, ("component", name)]
}

fn template_meta(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        labels: labels(&component(name)),
        annotations: labels(&[
            ("prometheus.io/port", "7472"),
            ("prometheus.io/scrape", "true"),
        ]),
        ..Default::default()
    })
}

fn controller(spec: &Spec) -> Deployment {
    let container = Container {
        name: "controller".into(),
        image: Some(image(spec, "controller")),
        args: Some(vec![
            "--port=7472".into(),
            "--log-level=info".into(),
            "--tls-min-version=VersionTLS12".into(),
        ]),
        env: Some(vec![
            field_env("METALLB_POD_NAME", "metadata.name"),
            env("METALLB_ML_SECRET_NAME", MEMBERLIST),
            env("METALLB_DEPLOYMENT", "controller"),
        ]),
        ports: Some(vec![
            port("monitoring", 7472, None),
            port("webhook-server", 9443, Some("TCP")),
        ]),
        liveness_probe: Some(metrics_probe()),
        readiness_probe: Some(metrics_probe()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["all".into()]),
                ..Default::default()
            }),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        volume_mounts: Some(vec![read_only(
            "cert",
            "/tmp/k8s-webhook-server/serving-certs",
        )]),
        ..Default::default()
    };
    Deployment {
        metadata: meta("controller", true, &component("controller")),
        spec: Some(DeploymentSpec {
            revision_history_limit: Some(3),
            selector: LabelSelector {
                match_labels: labels(&component("controller")),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: template_meta("controller"),
                spec: Some(PodSpec {
                    containers: vec![container],
                    node_selector: labels(&[("kubernetes.io/os", "linux")]),
                    security_context: Some(PodSecurityContext {
                        fs_group: Some(65534),
                        run_as_non_root: Some(true),
                        run_as_user: Some(65534),
                        ..Default::default()
                    }),
                    service_account_name: Some("controller".into()),
                    termination_grace_period_seconds: Some(0),
                    volumes: Some(vec![Volume {
                        name: "cert".into(),
                        secret: Some(SecretVolumeSource {
                            default_mode: Some(420),
                            secret_name: Some(WEBHOOK_SECRET.into()),
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

fn speaker(spec: &Spec) -> DaemonSet {
    let container = Container {
        name: "speaker".into(),
        image: Some(image(spec, "speaker")),
        args: Some(vec!["--port=7472".into(), "--log-level=info".into()]),
        env: Some(vec![
            field_env("METALLB_NODE_NAME", "spec.nodeName"),
            field_env("METALLB_POD_NAME", "metadata.name"),
            field_env("METALLB_HOST", "status.hostIP"),
            field_env("METALLB_ML_BIND_ADDR", "status.podIP"),
            env("METALLB_ML_LABELS", "app=metallb,component=speaker"),
            env("METALLB_ML_SECRET_KEY_PATH", "/etc/ml_secret_key"),
        ]),
        ports: Some(vec![
            port("monitoring", 7472, None),
            port("memberlist-tcp", 7946, None),
            port("memberlist-udp", 7946, Some("UDP")),
        ]),
        liveness_probe: Some(metrics_probe()),
        readiness_probe: Some(metrics_probe()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            read_only("memberlist", "/etc/ml_secret_key"),
            read_only(EXCLUDE_L2, "/etc/metallb"),
        ]),
        ..Default::default()
    };
    let toleration = |key: &str| Toleration {
        effect: Some("NoSchedule".into()),
        key: Some(key.into()),
        operator: Some("Exists".into()),
        ..Default::default()
    };
    DaemonSet {
        metadata: meta("speaker", true, &component("speaker")),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: labels(&component("speaker")),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: template_meta("speaker"),
                spec: Some(PodSpec {
                    containers: vec![container],
                    host_network: Some(true),
                    node_selector: labels(&[("kubernetes.io/os", "linux")]),
                    service_account_name: Some("speaker".into()),
                    termination_grace_period_seconds: Some(2),
                    tolerations: Some(vec![
                        toleration("node-role.kubernetes.io/master"),
                        toleration("node-role.kubernetes.io/control-plane"),
                    ]),
                    volumes: Some(vec![
                        Volume {
                            name: "memberlist".into(),
                            secret: Some(SecretVolumeSource {
                                default_mode: Some(420),
                                secret_name: Some(MEMBERLIST.into()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        Volume {
                            name: EXCLUDE_L2.into(),
                            config_map: Some(ConfigMapVolumeSource {
                                default_mode: Some(256),
                                name: EXCLUDE_L2.into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn webhook_configuration() -> ValidatingWebhookConfiguration {
    // (webhook name, version, resource, path suffix, operations)
    let hooks: [(&str, &str, &str, &str, [&str; 2]); 6] = [
        (
            "bgppeersvalidationwebhook",
            "v1beta2",
            "bgppeers",
            "bgppeer",
            ["CREATE", "UPDATE"],
        ),
        (
            "bfdprofilevalidationwebhook",
            "v1beta1",
            "bfdprofiles",
            "bfdprofile",
            ["CREATE", "DELETE"],
        ),
        (
            "bgpadvertisementvalidationwebhook",
            "v1beta1",
            "bgpadvertisements",
            "bgpadvertisement",
            ["CREATE", "UPDATE"],
        ),
        (
            "communityvalidationwebhook",
            "v1beta1",
            "communities",
            "community",
            ["CREATE", "UPDATE"],
        ),
        (
            "ipaddresspoolvalidationwebhook",
            "v1beta1",
            "ipaddresspools",
            "ipaddresspool",
            ["CREATE", "UPDATE"],
        ),
        (
            "l2advertisementvalidationwebhook",
            "v1beta1",
            "l2advertisements",
            "l2advertisement",
            ["CREATE", "UPDATE"],
        ),
    ];
    ValidatingWebhookConfiguration {
        metadata: meta(WEBHOOK_CONFIG, false, &[]),
        webhooks: Some(
            hooks
                .iter()
                .map(|(name, version, resource, suffix, ops)| ValidatingWebhook {
                    admission_review_versions: vec!["v1".into()],
                    client_config: WebhookClientConfig {
                        ca_bundle: None::<ByteString>,
                        service: Some(AdmissionServiceReference {
                            name: WEBHOOK_SERVICE.into(),
                            namespace: NAMESPACE.into(),
                            path: Some(format!("/validate-metallb-io-{version}-{suffix}")),
                            port: None,
                        }),
                        url: None,
                    },
                    failure_policy: Some("Fail".into()),
                    name: format!("{name}.metallb.io"),
                    rules: Some(vec![RuleWithOperations {
                        api_groups: Some(vec!["metallb.io".into()]),
                        api_versions: Some(vec![(*version).into()]),
                        operations: Some(ops.iter().map(|o| (*o).to_string()).collect()),
                        resources: Some(vec![(*resource).into()]),
                        ..Default::default()
                    }]),
                    side_effects: "None".into(),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

fn pool(addresses: &[String]) -> serde_json::Value {
    json!({
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": POOL, "namespace": NAMESPACE},
        // autoAssign/avoidBuggyIPs are upstream's schema defaults, written out because the
        // stub CRD does not default them.
        "spec": {"addresses": addresses, "autoAssign": true, "avoidBuggyIPs": false},
    })
}

fn l2_advertisement() -> serde_json::Value {
    json!({
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": POOL, "namespace": NAMESPACE},
        "spec": {"ipAddressPools": [POOL]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addons::calico::tests::{allows, assert_builtins_round_trip};
    use crate::provision::tests::example;

    fn spec() -> Spec {
        let spec = example("external-etcd.yaml");
        assert!(spec.metallb.is_some(), "the example sets metallb");
        spec
    }

    fn find<'a>(b: &'a Bundle, kind: &str, name: &str) -> &'a Manifest {
        b.manifests
            .iter()
            .find(|m| m.kind == kind && m.name == name)
            .unwrap_or_else(|| panic!("{kind}/{name} in the bundle"))
    }

    fn rules_of(b: &Bundle, kind: &str, name: &str) -> Vec<PolicyRule> {
        let v = find(b, kind, name).object["rules"].clone();
        serde_json::from_value(v).expect("rules")
    }

    #[test]
    fn no_metallb_section_no_bundle() {
        let mut spec = spec();
        spec.metallb = None;
        assert!(bundle(&spec).expect("renders").is_none());
    }

    #[test]
    fn pool_and_advertisement_carry_the_spec_addresses() {
        let mut spec = spec();
        spec.metallb = Some(kubeha_spec::MetalLb {
            addresses: vec!["10.10.0.200-10.10.0.220".into(), "10.10.1.0/28".into()],
        });
        let b = bundle(&spec).expect("renders").expect("metallb set");
        assert_eq!((b.name.as_str(), b.stage), ("metallb", Stage::LoadBalancer));
        let pool = find(&b, "IPAddressPool", POOL);
        assert_eq!(
            (pool.plural.as_str(), pool.namespace.as_deref()),
            ("ipaddresspools", Some(NAMESPACE))
        );
        assert_eq!(
            pool.object["spec"]["addresses"],
            json!(["10.10.0.200-10.10.0.220", "10.10.1.0/28"])
        );
        let l2 = find(&b, "L2Advertisement", POOL);
        assert_eq!(l2.plural, "l2advertisements");
        assert_eq!(l2.object["spec"]["ipAddressPools"], json!([POOL]));
        // The CRDs come before the objects that need them, and the pool comes last.
        let pos = |kind: &str, name: &str| {
            b.manifests
                .iter()
                .position(|m| m.kind == kind && m.name == name)
                .expect("present")
        };
        assert!(
            pos("CustomResourceDefinition", "ipaddresspools.metallb.io")
                < pos("IPAddressPool", POOL)
        );
        assert!(pos("ValidatingWebhookConfiguration", WEBHOOK_CONFIG) < pos("IPAddressPool", POOL));
        assert!(pos("Secret", WEBHOOK_SECRET) < pos("Deployment", "controller"));
    }

    #[test]
    fn crds_are_namespaced_stubs_with_bgppeer_conversion() {
        let b = bundle(&spec()).expect("renders").expect("metallb set");
        let crds: Vec<&Manifest> = b
            .manifests
            .iter()
            .filter(|m| m.kind == "CustomResourceDefinition")
            .collect();
        assert_eq!(crds.len(), CRDS.len());
        for c in &crds {
            assert_eq!(c.object["spec"]["scope"], "Namespaced", "{}", c.name);
            assert_eq!(c.object["spec"]["group"], "metallb.io");
        }
        let peers = find(&b, "CustomResourceDefinition", "bgppeers.metallb.io");
        let versions = peers.object["spec"]["versions"]
            .as_array()
            .expect("versions");
        let storage: Vec<&str> = versions
            .iter()
            .filter(|v| v["storage"] == true)
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(storage, ["v1beta2"]);
        let svc = &peers.object["spec"]["conversion"]["webhook"]["clientConfig"]["service"];
        assert_eq!(svc["name"], WEBHOOK_SERVICE);
    }

    #[test]
    fn rbac_covers_what_the_components_manage() {
        let b = bundle(&spec()).expect("renders").expect("metallb set");
        let ctl = rules_of(&b, "ClusterRole", "metallb-system:controller");
        // Assigns addresses to services and reports it.
        assert!(allows(&ctl, "", "services", None, "watch"));
        assert!(allows(&ctl, "", "services/status", None, "update"));
        // Cert rotator: caBundle into its webhook configuration and the bgppeers conversion.
        let vwc = (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
        );
        assert!(allows(&ctl, vwc.0, vwc.1, Some(WEBHOOK_CONFIG), "update"));
        assert!(!allows(&ctl, vwc.0, vwc.1, Some("someone-else"), "update"));
        let crd = ("apiextensions.k8s.io", "customresourcedefinitions");
        assert!(allows(
            &ctl,
            crd.0,
            crd.1,
            Some("bgppeers.metallb.io"),
            "patch"
        ));
        let ctl_ns = rules_of(&b, "Role", "controller");
        // Creates the memberlist key and fills the webhook certificate.
        assert!(allows(&ctl_ns, "", "secrets", None, "create"));
        assert!(allows(
            &ctl_ns,
            "",
            "secrets",
            Some(WEBHOOK_SECRET),
            "update"
        ));
        assert!(allows(
            &ctl_ns,
            "metallb.io",
            "ipaddresspools",
            None,
            "watch"
        ));
        let spk = rules_of(&b, "ClusterRole", "metallb-system:speaker");
        assert!(allows(&spk, "", "nodes", None, "list"));
        assert!(allows(
            &spk,
            "discovery.k8s.io",
            "endpointslices",
            None,
            "watch"
        ));
        assert!(allows(
            &spk,
            "metallb.io",
            "servicel2statuses",
            None,
            "create"
        ));
        let spk_ns = rules_of(&b, "Role", "pod-lister");
        assert!(allows(
            &spk_ns,
            "metallb.io",
            "l2advertisements",
            None,
            "list"
        ));
        assert!(allows(&spk_ns, "", "secrets", Some(MEMBERLIST), "get"));
        let binding = find(&b, "RoleBinding", "pod-lister");
        assert!(
            binding.object["subjects"]
                .as_array()
                .expect("subjects")
                .iter()
                .any(|s| s["name"] == "speaker")
        );
    }

    #[test]
    fn workloads_share_the_memberlist_secret_and_webhook_cert() {
        let b = bundle(&spec()).expect("renders").expect("metallb set");
        let dep: Deployment =
            serde_json::from_value(find(&b, "Deployment", "controller").object.clone())
                .expect("deployment");
        let pod = dep.spec.and_then(|s| s.template.spec).expect("pod");
        let env = pod.containers[0].env.clone().expect("env");
        let ml = env
            .iter()
            .find(|e| e.name == "METALLB_ML_SECRET_NAME")
            .and_then(|e| e.value.clone());
        assert_eq!(ml.as_deref(), Some(MEMBERLIST));
        let cert = pod.volumes.expect("volumes")[0]
            .secret
            .clone()
            .expect("secret volume");
        assert_eq!(cert.secret_name.as_deref(), Some(WEBHOOK_SECRET));

        let ds: DaemonSet = serde_json::from_value(find(&b, "DaemonSet", "speaker").object.clone())
            .expect("daemonset");
        let pod = ds.spec.and_then(|s| s.template.spec).expect("pod");
        assert_eq!(pod.host_network, Some(true));
        let secret = pod
            .volumes
            .expect("volumes")
            .into_iter()
            .find_map(|v| v.secret)
            .expect("memberlist volume");
        assert_eq!(secret.secret_name.as_deref(), Some(MEMBERLIST));
        // The webhook Service reaches the controller pod's webhook port.
        let svc = &find(&b, "Service", WEBHOOK_SERVICE).object["spec"];
        assert_eq!(svc["selector"]["component"], "controller");
        assert_eq!(svc["ports"][0]["targetPort"], 9443);
        let hooks = &find(&b, "ValidatingWebhookConfiguration", WEBHOOK_CONFIG).object["webhooks"];
        let pool_hook = hooks
            .as_array()
            .expect("webhooks")
            .iter()
            .find(|h| h["rules"][0]["resources"][0] == "ipaddresspools")
            .expect("pool webhook");
        assert_eq!(
            pool_hook["clientConfig"]["service"]["path"],
            "/validate-metallb-io-v1beta1-ipaddresspool"
        );
        assert!(
            pool_hook["clientConfig"].get("caBundle").is_none(),
            "left to the rotator"
        );
    }

    #[test]
    fn images_are_pinned_and_mirrored() {
        let mut spec = spec();
        assert_eq!(
            images(&spec),
            [
                format!("quay.io/metallb/controller:{METALLB_VERSION}"),
                format!("quay.io/metallb/speaker:{METALLB_VERSION}"),
            ]
        );
        spec.image_repository = "mirror.example".into();
        let want = images(&spec);
        assert_eq!(
            want[1],
            format!("mirror.example/metallb/speaker:{METALLB_VERSION}")
        );
        let b = bundle(&spec).expect("renders").expect("metallb set");
        let used: Vec<&str> = [("Deployment", "controller"), ("DaemonSet", "speaker")]
            .iter()
            .filter_map(|(k, n)| {
                find(&b, k, n).object["spec"]["template"]["spec"]["containers"][0]["image"].as_str()
            })
            .collect();
        assert_eq!(used, want);
    }

    #[test]
    fn every_object_round_trips_through_its_type() {
        let b = bundle(&spec()).expect("renders").expect("metallb set");
        assert_builtins_round_trip(&b);
        assert!(b.sensitive(), "the webhook Secret marks the bundle");
    }

    #[test]
    fn snapshot_external_etcd() {
        let b = bundle(&spec()).expect("renders").expect("metallb set");
        // Snapshots of the whole crate live in src/snapshots.
        insta::with_settings!({ snapshot_path => "../snapshots" }, {
            insta::assert_snapshot!("metallb.yaml", b.yaml());
        });
    }
}
