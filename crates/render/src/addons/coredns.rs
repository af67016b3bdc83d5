//! CoreDNS exactly as kubeadm's `addon/coredns` phase installs it: ServiceAccount, the
//! `system:coredns` ClusterRole and binding, the `coredns` ConfigMap (Corefile), the `coredns`
//! Deployment and the `kube-dns` Service at the 10th address of the service CIDR.
//!
//! kubeadm's Service template also carries `resourceVersion: "0"` so its own create-or-update
//! can PUT it; it is left out here because an applied object must not pin a resource version.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    HTTPGetAction, KeyToPath, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    Toleration, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubeha_spec::{KubeVersion, Spec};

use crate::error::Result;
use crate::images::mirror;
use crate::manifest::{Bundle, Manifest, Stage};

/// Name of the Deployment, ConfigMap and ServiceAccount.
pub const NAME: &str = "coredns";
/// Name of the DNS Service (kept from kube-dns days so clients keep working).
pub const SERVICE_NAME: &str = "kube-dns";
/// Name of the ClusterRole and its binding.
pub const CLUSTER_ROLE: &str = "system:coredns";
pub const NAMESPACE: &str = "kube-system";
/// Label key and value selecting the DNS pods.
pub const APP_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// kubeadm's replica count on a fresh cluster.
pub const REPLICAS: i32 = 2;
/// Taint key kubeadm puts on control planes; CoreDNS tolerates it.
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const CONFIG_DIR: &str = "/etc/coredns";
const VOLUME: &str = "config-volume";

/// `registry.k8s.io/coredns/coredns:<tag>` with kubeadm's tag for this minor (v1.11.3 for
/// v1.31–v1.32, v1.12.0 for v1.33, v1.12.1 for v1.34), moved to the mirror if one is set.
pub fn image(spec: &Spec) -> String {
    let tag = spec.kubernetes_version.coredns_tag();
    mirror(spec, &format!("registry.k8s.io/coredns/coredns:{tag}"))
}

/// v1.32 (kubernetes#128359) stopped caching answers for the cluster domain.
pub fn disables_cluster_cache(version: KubeVersion) -> bool {
    version.minor >= 32
}

/// The Corefile kubeadm writes, byte for byte.
pub fn corefile(spec: &Spec) -> String {
    let domain = &spec.networking.dns_domain;
    let cache = if disables_cluster_cache(spec.kubernetes_version) && !domain.is_empty() {
        format!(
            "    cache 30 {{\n       disable success {domain}\n       disable denial {domain}\n    }}\n"
        )
    } else {
        "    cache 30\n".to_string()
    };
    format!(
        ".:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    forward . /etc/resolv.conf {{
       max_concurrent 1000
    }}
{cache}    loop
    reload
    loadbalance
}}
"
    )
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
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

fn app() -> BTreeMap<String, String> {
    map(&[APP_LABEL])
}

/// The `coredns` ConfigMap.
pub fn config_map(spec: &Spec) -> ConfigMap {
    ConfigMap {
        metadata: system_meta(NAME),
        data: Some(map(&[("Corefile", &corefile(spec))])),
        ..Default::default()
    }
}

/// The `system:coredns` ClusterRole: read what the kubernetes plugin serves.
pub fn cluster_role() -> ClusterRole {
    let strings = |xs: &[&str]| Some(xs.iter().map(|x| x.to_string()).collect());
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(CLUSTER_ROLE.into()),
            ..Default::default()
        },
        rules: Some(vec![
            PolicyRule {
                api_groups: strings(&[""]),
                resources: strings(&["endpoints", "services", "pods", "namespaces"]),
                verbs: vec!["list".into(), "watch".into()],
                ..Default::default()
            },
            PolicyRule {
                api_groups: strings(&["discovery.k8s.io"]),
                resources: strings(&["endpointslices"]),
                verbs: vec!["list".into(), "watch".into()],
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// The CoreDNS Deployment from kubeadm's `CoreDNSDeployment` template.
pub fn deployment(spec: &Spec) -> Deployment {
    let port = |number: i32, name: &str, protocol: &str| ContainerPort {
        container_port: number,
        name: Some(name.into()),
        protocol: Some(protocol.into()),
        ..Default::default()
    };
    let http_get = |path: &str, port: &str| HTTPGetAction {
        path: Some(path.into()),
        port: IntOrString::String(port.into()),
        scheme: Some("HTTP".into()),
        ..Default::default()
    };
    let quantity = |q: &str| Quantity(q.into());
    let container = Container {
        name: NAME.into(),
        image: Some(image(spec)),
        image_pull_policy: Some("IfNotPresent".into()),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), quantity("170Mi"))])),
            requests: Some(BTreeMap::from([
                ("cpu".into(), quantity("100m")),
                ("memory".into(), quantity("70Mi")),
            ])),
            ..Default::default()
        }),
        args: Some(vec!["-conf".into(), format!("{CONFIG_DIR}/Corefile")]),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME.into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ports: Some(vec![
            port(53, "dns", "UDP"),
            port(53, "dns-tcp", "TCP"),
            port(9153, "metrics", "TCP"),
            port(8080, "liveness-probe", "TCP"),
            port(8181, "readiness-probe", "TCP"),
        ]),
        liveness_probe: Some(Probe {
            http_get: Some(http_get("/health", "liveness-probe")),
            initial_delay_seconds: Some(60),
            timeout_seconds: Some(5),
            success_threshold: Some(1),
            failure_threshold: Some(5),
            ..Default::default()
        }),
        readiness_probe: Some(Probe {
            http_get: Some(http_get("/ready", "readiness-probe")),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_BIND_SERVICE".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let anti_affinity = WeightedPodAffinityTerm {
        weight: 100,
        pod_affinity_term: PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: APP_LABEL.0.into(),
                    operator: "In".into(),
                    values: Some(vec![APP_LABEL.1.into()]),
                }]),
                ..Default::default()
            }),
            topology_key: "kubernetes.io/hostname".into(),
            ..Default::default()
        },
    };
    Deployment {
        metadata: ObjectMeta {
            labels: Some(app()),
            ..system_meta(NAME)
        },
        spec: Some(DeploymentSpec {
            replicas: Some(REPLICAS),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(1)),
                    ..Default::default()
                }),
            }),
            selector: LabelSelector {
                match_labels: Some(app()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(app()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    priority_class_name: Some("system-cluster-critical".into()),
                    service_account_name: Some(NAME.into()),
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(vec![
                                anti_affinity,
                            ]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    tolerations: Some(vec![
                        Toleration {
                            key: Some("CriticalAddonsOnly".into()),
                            operator: Some("Exists".into()),
                            ..Default::default()
                        },
                        Toleration {
                            key: Some(CONTROL_PLANE_TAINT.into()),
                            effect: Some("NoSchedule".into()),
                            ..Default::default()
                        },
                    ]),
                    node_selector: Some(map(&[("kubernetes.io/os", "linux")])),
                    containers: vec![container],
                    dns_policy: Some("Default".into()),
                    volumes: Some(vec![Volume {
                        name: VOLUME.into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: NAME.into(),
                            items: Some(vec![KeyToPath {
                                key: "Corefile".into(),
                                path: "Corefile".into(),
                                ..Default::default()
                            }]),
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

/// The `kube-system/kube-dns` Service at the cluster DNS address.
pub fn service(spec: &Spec) -> Service {
    let port = |name: &str, number: i32, protocol: &str| ServicePort {
        name: Some(name.into()),
        port: number,
        protocol: Some(protocol.into()),
        target_port: Some(IntOrString::Int(number)),
        ..Default::default()
    };
    Service {
        metadata: ObjectMeta {
            labels: Some(map(&[
                APP_LABEL,
                ("kubernetes.io/cluster-service", "true"),
                ("kubernetes.io/name", "CoreDNS"),
            ])),
            annotations: Some(map(&[
                ("prometheus.io/port", "9153"),
                ("prometheus.io/scrape", "true"),
            ])),
            ..system_meta(SERVICE_NAME)
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(spec.dns_service_ip().to_string()),
            ports: Some(vec![
                port("dns", 53, "UDP"),
                port("dns-tcp", 53, "TCP"),
                port("metrics", 9153, "TCP"),
            ]),
            selector: Some(app()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// CoreDNS's objects in apply order: identity and RBAC, config, workload, Service.
pub fn bundle(spec: &Spec) -> Result<Bundle> {
    let service_account = ServiceAccount {
        metadata: system_meta(NAME),
        ..Default::default()
    };
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(CLUSTER_ROLE.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "ClusterRole".into(),
            name: CLUSTER_ROLE.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: NAME.into(),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        }]),
    };
    Ok(Bundle {
        name: NAME.into(),
        stage: Stage::CoreAddons,
        manifests: vec![
            Manifest::typed(&service_account)?,
            Manifest::typed(&cluster_role())?,
            Manifest::typed(&binding)?,
            Manifest::typed(&config_map(spec))?,
            Manifest::typed(&deployment(spec))?,
            Manifest::typed(&service(spec))?,
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::Ipv4Addr;

    use crate::addons::kube_proxy::tests::assert_typed_round_trip;
    use crate::provision::tests::example;

    fn at_minor(minor: u32) -> Spec {
        let mut spec = example("external-etcd.yaml");
        spec.kubernetes_version = KubeVersion {
            major: 1,
            minor,
            patch: 0,
        };
        spec
    }

    const COREFILE_131: &str = ".:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
";

    #[test]
    fn corefile_by_version() {
        assert_eq!(corefile(&at_minor(31)), COREFILE_131);
        let with_block = COREFILE_131.replace(
            "    cache 30\n",
            "    cache 30 {\n       disable success cluster.local\n       disable denial cluster.local\n    }\n",
        );
        for minor in [32, 33, 34] {
            assert_eq!(corefile(&at_minor(minor)), with_block, "v1.{minor}");
        }
        let mut custom = at_minor(34);
        custom.networking.dns_domain = "k8s.internal".into();
        let text = corefile(&custom);
        assert!(text.contains("    kubernetes k8s.internal in-addr.arpa ip6.arpa {\n"));
        assert!(
            text.contains(
                "       disable success k8s.internal\n       disable denial k8s.internal\n"
            )
        );
        assert!(!text.contains("cluster.local"));
    }

    #[test]
    fn bundle_shape_and_round_trip() {
        let spec = example("external-etcd.yaml");
        let b = bundle(&spec).expect("bundle");
        assert_eq!((b.name.as_str(), b.stage), ("coredns", Stage::CoreAddons));
        let ids: Vec<String> = b.manifests.iter().map(Manifest::id).collect();
        assert_eq!(
            ids,
            [
                "ServiceAccount/kube-system/coredns",
                "ClusterRole/system:coredns",
                "ClusterRoleBinding/system:coredns",
                "ConfigMap/kube-system/coredns",
                "Deployment/kube-system/coredns",
                "Service/kube-system/kube-dns",
            ]
        );
        for m in &b.manifests {
            assert_typed_round_trip(m);
        }
        // The Corefile travels as a literal block and comes back unchanged.
        let cm = &b.manifests[3];
        let parsed: serde_json::Value = serde_saphyr::from_str(&cm.yaml()).expect("yaml");
        assert_eq!(parsed["data"]["Corefile"], corefile(&spec));
    }

    #[test]
    fn rbac_matches_kubeadm() {
        let rules = cluster_role().rules.expect("rules");
        let flat: Vec<(Vec<String>, Vec<String>, Vec<String>)> = rules
            .into_iter()
            .map(|r| {
                (
                    r.api_groups.unwrap_or_default(),
                    r.resources.unwrap_or_default(),
                    r.verbs,
                )
            })
            .collect();
        let s = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            flat,
            [
                (
                    s(&[""]),
                    s(&["endpoints", "services", "pods", "namespaces"]),
                    s(&["list", "watch"])
                ),
                (
                    s(&["discovery.k8s.io"]),
                    s(&["endpointslices"]),
                    s(&["list", "watch"])
                ),
            ]
        );
        let b = bundle(&example("external-etcd.yaml")).expect("bundle");
        let crb: ClusterRoleBinding =
            serde_json::from_value(b.manifests[2].object.clone()).expect("crb");
        assert_eq!(crb.role_ref.name, "system:coredns");
        assert_eq!(crb.role_ref.kind, "ClusterRole");
        let subject = &crb.subjects.expect("subjects")[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", "coredns", Some("kube-system"))
        );
    }

    #[test]
    fn deployment_matches_kubeadm_template() {
        let spec = example("external-etcd.yaml");
        let d = deployment(&spec);
        let app = Some(map(&[("k8s-app", "kube-dns")]));
        assert_eq!(d.metadata.labels, app);
        let s = d.spec.expect("spec");
        assert_eq!(s.replicas, Some(2));
        let strategy = s.strategy.expect("strategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(
            strategy.rolling_update.and_then(|r| r.max_unavailable),
            Some(IntOrString::Int(1))
        );
        assert_eq!(s.selector.match_labels, app);
        assert_eq!(s.template.metadata.and_then(|m| m.labels), app);
        let pod = s.template.spec.expect("pod");
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-cluster-critical")
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("coredns"));
        assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
        assert_eq!(
            pod.node_selector,
            Some(map(&[("kubernetes.io/os", "linux")]))
        );
        let tolerations: Vec<(Option<String>, Option<String>, Option<String>)> = pod
            .tolerations
            .expect("tolerations")
            .into_iter()
            .map(|t| (t.key, t.operator, t.effect))
            .collect();
        assert_eq!(
            tolerations,
            [
                (
                    Some("CriticalAddonsOnly".into()),
                    Some("Exists".into()),
                    None
                ),
                (
                    Some("node-role.kubernetes.io/control-plane".into()),
                    None,
                    Some("NoSchedule".into())
                ),
            ]
        );
        let preferred = pod
            .affinity
            .and_then(|a| a.pod_anti_affinity)
            .and_then(|p| p.preferred_during_scheduling_ignored_during_execution)
            .expect("anti-affinity");
        assert_eq!(preferred.len(), 1);
        assert_eq!(preferred[0].weight, 100);
        assert_eq!(
            preferred[0].pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );
        let expr = &preferred[0]
            .pod_affinity_term
            .label_selector
            .as_ref()
            .and_then(|l| l.match_expressions.as_ref())
            .expect("expressions")[0];
        assert_eq!(
            (
                expr.key.as_str(),
                expr.operator.as_str(),
                expr.values.as_deref()
            ),
            ("k8s-app", "In", Some(&["kube-dns".to_string()][..]))
        );
        let volume = &pod.volumes.expect("volumes")[0];
        let cm = volume.config_map.as_ref().expect("configMap volume");
        assert_eq!(
            (volume.name.as_str(), cm.name.as_str()),
            ("config-volume", "coredns")
        );
        let items = cm.items.as_ref().expect("items");
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("Corefile", "Corefile")
        );

        let c = &pod.containers[0];
        assert_eq!(c.name, "coredns");
        assert_eq!(
            c.image.as_deref(),
            Some("registry.k8s.io/coredns/coredns:v1.12.1")
        );
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            c.args.as_deref(),
            Some(&["-conf".to_string(), "/etc/coredns/Corefile".to_string()][..])
        );
        let res = c.resources.as_ref().expect("resources");
        let q = |m: &Option<BTreeMap<String, Quantity>>| -> Vec<(String, String)> {
            m.iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect()
        };
        assert_eq!(
            q(&res.limits),
            [("memory".to_string(), "170Mi".to_string())]
        );
        assert_eq!(
            q(&res.requests),
            [
                ("cpu".to_string(), "100m".to_string()),
                ("memory".to_string(), "70Mi".to_string())
            ]
        );
        let ports: Vec<(i32, Option<&str>, Option<&str>)> = c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.container_port, p.name.as_deref(), p.protocol.as_deref()))
            .collect();
        assert_eq!(
            ports,
            [
                (53, Some("dns"), Some("UDP")),
                (53, Some("dns-tcp"), Some("TCP")),
                (9153, Some("metrics"), Some("TCP")),
                (8080, Some("liveness-probe"), Some("TCP")),
                (8181, Some("readiness-probe"), Some("TCP")),
            ]
        );
        let live = c.liveness_probe.as_ref().expect("liveness");
        let get = live.http_get.as_ref().expect("httpGet");
        assert_eq!(
            (get.path.as_deref(), &get.port, get.scheme.as_deref()),
            (
                Some("/health"),
                &IntOrString::String("liveness-probe".into()),
                Some("HTTP")
            )
        );
        assert_eq!(
            (
                live.initial_delay_seconds,
                live.timeout_seconds,
                live.success_threshold,
                live.failure_threshold
            ),
            (Some(60), Some(5), Some(1), Some(5))
        );
        let ready = c.readiness_probe.as_ref().expect("readiness");
        let get = ready.http_get.as_ref().expect("httpGet");
        assert_eq!(
            (get.path.as_deref(), &get.port, get.scheme.as_deref()),
            (
                Some("/ready"),
                &IntOrString::String("readiness-probe".into()),
                Some("HTTP")
            )
        );
        assert_eq!(ready.initial_delay_seconds, None);
        let sc = c.security_context.as_ref().expect("securityContext");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        let caps = sc.capabilities.as_ref().expect("capabilities");
        assert_eq!(
            caps.add.as_deref(),
            Some(&["NET_BIND_SERVICE".to_string()][..])
        );
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
        let mount = &c.volume_mounts.as_ref().expect("mounts")[0];
        assert_eq!(
            (
                mount.name.as_str(),
                mount.mount_path.as_str(),
                mount.read_only
            ),
            ("config-volume", "/etc/coredns", Some(true))
        );
    }

    #[test]
    fn service_sits_at_tenth_address() {
        let spec = example("external-etcd.yaml");
        let svc = service(&spec);
        assert_eq!(svc.metadata.name.as_deref(), Some("kube-dns"));
        assert_eq!(
            svc.metadata.labels,
            Some(map(&[
                ("k8s-app", "kube-dns"),
                ("kubernetes.io/cluster-service", "true"),
                ("kubernetes.io/name", "CoreDNS"),
            ]))
        );
        assert_eq!(
            svc.metadata.annotations,
            Some(map(&[
                ("prometheus.io/port", "9153"),
                ("prometheus.io/scrape", "true")
            ]))
        );
        let s = svc.spec.expect("spec");
        assert_eq!(s.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert_eq!(s.selector, Some(map(&[("k8s-app", "kube-dns")])));
        type Row<'a> = (
            Option<&'a str>,
            i32,
            Option<&'a str>,
            Option<&'a IntOrString>,
        );
        let ports: Vec<Row> = s
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.as_deref(),
                    p.port,
                    p.protocol.as_deref(),
                    p.target_port.as_ref(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                (Some("dns"), 53, Some("UDP"), Some(&IntOrString::Int(53))),
                (
                    Some("dns-tcp"),
                    53,
                    Some("TCP"),
                    Some(&IntOrString::Int(53))
                ),
                (
                    Some("metrics"),
                    9153,
                    Some("TCP"),
                    Some(&IntOrString::Int(9153))
                ),
            ]
        );

        // Another CIDR: network address + 10, computed here independently.
        let mut other = spec.clone();
        other.networking.service_cidr = "10.87.116.64/26".parse().expect("cidr");
        let base = u32::from(Ipv4Addr::new(10, 87, 116, 64));
        let want = Ipv4Addr::from(base + 10).to_string();
        assert_eq!(service(&other).spec.and_then(|s| s.cluster_ip), Some(want));
    }

    #[test]
    fn image_by_minor_and_mirror() {
        let tags: Vec<String> = (31..=34).map(|m| image(&at_minor(m))).collect();
        assert_eq!(
            tags,
            [
                "registry.k8s.io/coredns/coredns:v1.11.3",
                "registry.k8s.io/coredns/coredns:v1.11.3",
                "registry.k8s.io/coredns/coredns:v1.12.0",
                "registry.k8s.io/coredns/coredns:v1.12.1",
            ]
        );
        let mut spec = at_minor(34);
        spec.image_repository = "mirror.example/k8s".into();
        assert_eq!(image(&spec), "mirror.example/k8s/coredns:v1.12.1");
        let pod = deployment(&spec)
            .spec
            .and_then(|s| s.template.spec)
            .expect("pod");
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("mirror.example/k8s/coredns:v1.12.1")
        );
    }

    #[test]
    fn snapshot_external_etcd() {
        let b = bundle(&example("external-etcd.yaml")).expect("bundle");
        insta::with_settings!({ snapshot_path => "../snapshots" }, {
            insta::assert_snapshot!("coredns-external-etcd", b.yaml());
        });
    }
}
