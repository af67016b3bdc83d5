//! The objects `kubeadm init` creates in the cluster once the first API server answers, in
//! the order it creates them, plus the node labels and taints of its mark-control-plane phase.
//!
//! Order (kubeadm's init phases): the `kubeadm:cluster-admins` binding (created as soon as
//! kubeadm has a client), upload-config (`kubeadm-config`, then `kubelet-config`, each with its
//! reader Role and RoleBinding), bootstrap-token (the token Secret, the node-bootstrap RBAC,
//! `cluster-info` and its anonymous reader Role). kube-proxy's and CoreDNS's objects belong to
//! their add-on bundles; `kubeadm:kubeadm-certs` is not created because kubeha never uploads
//! certificates.
//!
//! Two deliberate additions to what kubeadm itself writes:
//! - `cluster-info` already carries the `jws-kubeconfig-<token-id>` signature. In a kubeadm
//!   cluster KCM's bootstrapsigner adds it a moment later; it computes the very same bytes (the
//!   HMAC is deterministic), so applying it up front makes `kubeadm join` work immediately and
//!   the signer finds nothing to change.
//! - RBAC subjects of kind `User`/`Group` carry `apiGroup: rbac.authorization.k8s.io`, which
//!   the API server fills in anyway: the rendered object equals the stored one.

use std::collections::BTreeMap;

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use hmac::{Hmac, Mac};
use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{ConfigMap, Secret, Taint},
        rbac::v1::{
            ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
        },
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kubeha_pki::{BootstrapToken, CaId};
use kubeha_spec::{EndpointHost, EtcdTopology, Node, Role as NodeRole, Spec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    Bundle, Ctx, Manifest, Stage,
    control_plane::etcd_servers,
    error::{RenderError, Result},
    file::PKI_DIR,
    kubeconfig::{NamedCluster, NamedContext, NamedUser, Preferences},
    kubelet,
    staticpod::kube_yaml,
};

/// The group every kubeadm node bootstrap token authenticates as (besides `system:bootstrappers`).
pub const NODE_BOOTSTRAP_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// The group of every kubelet client certificate.
pub const NODES_GROUP: &str = "system:nodes";
/// admin.conf's group; bound to `cluster-admin` before anything else.
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";
/// `kube-system/kubeadm-config`, read by `kubeadm join` and `kubeadm upgrade`.
pub const KUBEADM_CONFIG: &str = "kubeadm-config";
/// Its only key.
pub const CLUSTER_CONFIGURATION_KEY: &str = "ClusterConfiguration";
/// `kube-system/kubelet-config`: unversioned name in every minor kubeha supports.
pub const KUBELET_CONFIG: &str = "kubelet-config";
/// Its only key.
pub const KUBELET_CONFIG_KEY: &str = "kubelet";
/// `kube-public/cluster-info`: the CA and endpoint a joining node discovers anonymously.
pub const CLUSTER_INFO: &str = "cluster-info";
/// Content hash kubeadm puts on component-config ConfigMaps it generated; `kubeadm upgrade`
/// compares it to tell user edits from its own output.
pub const CONFIG_HASH_ANNOTATION: &str = "kubeadm.kubernetes.io/component-config.hash";
/// The token Secret's `description`.
pub const TOKEN_DESCRIPTION: &str = "kubeha bootstrap token";
/// Secret type the API server's token authenticator and KCM's controllers look for.
pub const TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// kubeadm's control-plane role label and taint key.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// Keeps control planes out of external load balancers' backends.
pub const EXCLUDE_FROM_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

const KUBEADM_API: &str = "kubeadm.k8s.io/v1beta4";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const KUBE_SYSTEM: &str = "kube-system";
const KUBE_PUBLIC: &str = "kube-public";

/// The Bootstrap-stage bundle: every object above, in kubeadm's creation order.
///
/// Needs the bootstrap token from the PKI secrets (the store makes one).
pub fn bundle(cx: Ctx<'_>) -> Result<Bundle> {
    let token = cx
        .materials
        .secrets
        .bootstrap_token
        .as_ref()
        .ok_or_else(|| RenderError::Serialize {
            what: "the bootstrap token Secret".into(),
            source: "the PKI secrets hold no bootstrap token (the state dir makes one)".into(),
        })?;
    let bootstrappers = || group(NODE_BOOTSTRAP_GROUP);
    let nodes = || group(NODES_GROUP);
    let manifests = vec![
        // The client kubeadm builds first ensures this binding.
        Manifest::typed(&cluster_role_binding(
            "kubeadm:cluster-admins",
            "cluster-admin",
            vec![group(CLUSTER_ADMINS_GROUP)],
        ))?,
        // upload-config/kubeadm
        Manifest::typed(&kubeadm_config_map(cx.spec)?)?,
        Manifest::typed(&get_role(
            KUBE_SYSTEM,
            "kubeadm:nodes-kubeadm-config",
            "configmaps",
            KUBEADM_CONFIG,
        ))?,
        Manifest::typed(&role_binding(
            KUBE_SYSTEM,
            "kubeadm:nodes-kubeadm-config",
            vec![bootstrappers(), nodes()],
        ))?,
        // upload-config/kubelet
        Manifest::typed(&kubelet_config_map(cx)?)?,
        Manifest::typed(&get_role(
            KUBE_SYSTEM,
            "kubeadm:kubelet-config",
            "configmaps",
            KUBELET_CONFIG,
        ))?,
        Manifest::typed(&role_binding(
            KUBE_SYSTEM,
            "kubeadm:kubelet-config",
            vec![nodes(), bootstrappers()],
        ))?,
        // bootstrap-token
        Manifest::typed(&token_secret(token))?,
        Manifest::typed(&ClusterRole {
            metadata: meta("kubeadm:get-nodes", None),
            rules: Some(vec![get_rule("nodes", None)]),
            ..Default::default()
        })?,
        Manifest::typed(&cluster_role_binding(
            "kubeadm:get-nodes",
            "kubeadm:get-nodes",
            vec![bootstrappers()],
        ))?,
        Manifest::typed(&cluster_role_binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            vec![bootstrappers()],
        ))?,
        Manifest::typed(&cluster_role_binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![bootstrappers()],
        ))?,
        Manifest::typed(&cluster_role_binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![nodes()],
        ))?,
        Manifest::typed(&cluster_info(cx, token)?)?,
        Manifest::typed(&get_role(
            KUBE_PUBLIC,
            "kubeadm:bootstrap-signer-clusterinfo",
            "configmaps",
            CLUSTER_INFO,
        ))?,
        Manifest::typed(&role_binding(
            KUBE_PUBLIC,
            "kubeadm:bootstrap-signer-clusterinfo",
            vec![Subject {
                api_group: Some(RBAC_GROUP.into()),
                kind: "User".into(),
                name: "system:anonymous".into(),
                namespace: None,
            }],
        ))?,
    ];
    Ok(Bundle {
        name: "bootstrap".into(),
        stage: Stage::Bootstrap,
        manifests,
    })
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_string),
        ..Default::default()
    }
}

fn group(name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.into()),
        kind: "Group".into(),
        name: name.into(),
        namespace: None,
    }
}

fn get_rule(resource: &str, name: Option<&str>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec![resource.into()]),
        resource_names: name.map(|n| vec![n.to_string()]),
        verbs: vec!["get".into()],
        non_resource_urls: None,
    }
}

fn cluster_role_binding(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(subjects),
    }
}

/// A Role allowing `get` on one named object.
fn get_role(namespace: &str, name: &str, resource: &str, object: &str) -> Role {
    Role {
        metadata: meta(name, Some(namespace)),
        rules: Some(vec![get_rule(resource, Some(object))]),
    }
}

/// A RoleBinding to the Role of the same name, as kubeadm names them.
fn role_binding(namespace: &str, name: &str, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, Some(namespace)),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "Role".into(),
            name: name.into(),
        },
        subjects: Some(subjects),
    }
}

// ---- kubeadm-config -------------------------------------------------------------------------

/// kubeadm's `ClusterConfiguration` (`kubeadm.k8s.io/v1beta4`), limited to the fields kubeadm
/// writes for a cluster like kubeha's. Go's `omitempty` is mirrored; the YAML keys come out
/// sorted, as kubeadm's encoder writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfiguration {
    pub api_version: String,
    pub kind: String,
    pub etcd: Etcd,
    pub networking: Networking,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
    /// `host:port` of the load-balanced API endpoint (IPv6 bracketed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub control_plane_endpoint: String,
    pub api_server: ApiServer,
    pub controller_manager: ControlPlaneComponent,
    pub scheduler: ControlPlaneComponent,
    pub dns: Dns,
    pub proxy: Proxy,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub certificates_dir: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_repository: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_gates: BTreeMap<String, bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    /// `RSA-2048`, `ECDSA-P256`…
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub encryption_algorithm: String,
    /// A Go `time.Duration` string (`8760h0m0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_validity_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_validity_period: Option<String>,
}

/// `local` (stacked) or `external`; exactly one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Etcd {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalEtcd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalEtcd>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalEtcd {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_repository: String,
    /// Set only when the etcd release differs from kubeadm's default for the minor.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_tag: String,
    /// Always written (no `omitempty` in kubeadm's type).
    pub data_dir: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<Arg>,
    #[serde(
        rename = "serverCertSANs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub server_cert_sans: Vec<String>,
    #[serde(
        rename = "peerCertSANs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub peer_cert_sans: Vec<String>,
}

/// Every field is written (none is `omitempty` in kubeadm's type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEtcd {
    pub endpoints: Vec<String>,
    #[serde(rename = "caFile")]
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subnet: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_subnet: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dns_domain: String,
}

/// v1beta4's list form of `extraArgs` (duplicates allowed, order kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneComponent {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<Arg>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiServer {
    #[serde(flatten)]
    pub component: ControlPlaneComponent,
    #[serde(rename = "certSANs", default, skip_serializing_if = "Vec::is_empty")]
    pub cert_sans: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_repository: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_tag: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proxy {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// Go's `time.Duration` string for whole hours (`8760h0m0s`).
fn go_hours(hours: u32) -> String {
    format!("{hours}h0m0s")
}

/// `host:port` of the spec's endpoint, as kubeadm's `controlPlaneEndpoint`.
fn endpoint_host_port(spec: &Spec) -> String {
    let url = spec.endpoint.url();
    url.strip_prefix("https://").unwrap_or(&url).to_string()
}

/// The cluster's `ClusterConfiguration` with kubeadm's defaults filled in, describing what the
/// rendered static pods run:
/// - external etcd: `endpoints` = the API servers' `--etcd-servers` (the local proxy
///   `https://127.0.0.1:2379`, or every member) and the client files they use;
/// - stacked etcd: `local` with the data dir, the etcd image tag when it is not kubeadm's
///   default for the minor, and the VIP (plus a DNS endpoint) as extra server SANs when the
///   load balancer forwards etcd (`loadBalancer.etcdPort`);
/// - `certSANs`: the spec's extra API server SANs; KCM's `node-cidr-mask-size` when it is not
///   KCM's default of 24 (the only flag kubeha adds to kubeadm's set).
pub fn cluster_configuration(spec: &Spec) -> ClusterConfiguration {
    let etcd = match spec.topology {
        EtcdTopology::External => {
            // The flag does not depend on the node in the external topology.
            let servers = spec
                .control_planes()
                .first()
                .map(|n| etcd_servers(spec, n))
                .unwrap_or_else(|| spec.etcd_client_urls());
            Etcd {
                local: None,
                external: Some(ExternalEtcd {
                    endpoints: servers.split(',').map(str::to_string).collect(),
                    ca_file: format!("{PKI_DIR}/etcd/ca.crt"),
                    cert_file: format!("{PKI_DIR}/apiserver-etcd-client.crt"),
                    key_file: format!("{PKI_DIR}/apiserver-etcd-client.key"),
                }),
            }
        }
        EtcdTopology::Stacked => {
            let mut server_cert_sans = Vec::new();
            if let Some(lb) = spec
                .load_balancer
                .as_ref()
                .filter(|l| l.etcd_port.is_some())
            {
                server_cert_sans.push(lb.vip.to_string());
                if let EndpointHost::Dns(name) = &spec.endpoint.host {
                    server_cert_sans.push(name.clone());
                }
            }
            let image_tag = if spec.etcd_version == spec.kubernetes_version.default_etcd() {
                String::new()
            } else {
                spec.etcd_version.image_tag()
            };
            Etcd {
                local: Some(LocalEtcd {
                    image_repository: String::new(),
                    image_tag,
                    data_dir: spec.etcd.data_dir.clone(),
                    extra_args: Vec::new(),
                    server_cert_sans,
                    peer_cert_sans: Vec::new(),
                }),
                external: None,
            }
        }
    };
    let mut controller_manager = ControlPlaneComponent::default();
    if spec.networking.node_cidr_mask_size != 24 {
        controller_manager.extra_args.push(Arg {
            name: "node-cidr-mask-size".into(),
            value: spec.networking.node_cidr_mask_size.to_string(),
        });
    }
    ClusterConfiguration {
        api_version: KUBEADM_API.into(),
        kind: "ClusterConfiguration".into(),
        etcd,
        networking: Networking {
            service_subnet: spec.networking.service_cidr.to_string(),
            pod_subnet: spec.networking.pod_cidr.to_string(),
            dns_domain: spec.networking.dns_domain.clone(),
        },
        kubernetes_version: spec.kubernetes_version.to_string(),
        control_plane_endpoint: endpoint_host_port(spec),
        api_server: ApiServer {
            component: ControlPlaneComponent::default(),
            cert_sans: spec.certificates.apiserver_extra_sans.clone(),
        },
        controller_manager,
        scheduler: ControlPlaneComponent::default(),
        dns: Dns::default(),
        proxy: Proxy::default(),
        certificates_dir: PKI_DIR.into(),
        image_repository: spec.image_repository.clone(),
        feature_gates: BTreeMap::new(),
        cluster_name: spec.name.clone(),
        encryption_algorithm: spec.certificates.key_algorithm.kubeadm_name().into(),
        certificate_validity_period: Some(go_hours(spec.certificates.validity_hours)),
        ca_certificate_validity_period: Some(go_hours(spec.certificates.ca_validity_hours)),
    }
}

/// `kube-system/kubeadm-config`: the `ClusterConfiguration` only (no `ClusterStatus`).
pub fn kubeadm_config_map(spec: &Spec) -> Result<ConfigMap> {
    let text = kube_yaml("ClusterConfiguration", &cluster_configuration(spec))?;
    Ok(ConfigMap {
        metadata: meta(KUBEADM_CONFIG, Some(KUBE_SYSTEM)),
        data: Some(BTreeMap::from([(CLUSTER_CONFIGURATION_KEY.into(), text)])),
        ..Default::default()
    })
}

// ---- kubelet-config -------------------------------------------------------------------------

/// kubeadm's `ChecksumForConfigMap`: SHA-256 over the `data` values in key order, then the
/// `binaryData` values in key order, as `sha256:<hex>`.
pub fn config_hash(cm: &ConfigMap) -> String {
    let mut hash = Sha256::new();
    // BTreeMap iterates in key order, which is Go's sort.Strings order for these keys.
    for value in cm.data.iter().flat_map(|d| d.values()) {
        hash.update(value.as_bytes());
    }
    for value in cm.binary_data.iter().flat_map(|d| d.values()) {
        hash.update(&value.0);
    }
    format!("sha256:{}", hex::encode(hash.finalize()))
}

/// `kube-system/kubelet-config`: the cluster-wide KubeletConfiguration with its hash.
///
/// Same text as a node's `config.yaml` except `containerRuntimeEndpoint`, which is empty: from
/// v1.34 kubeadm merges the socket in from the node's `instance-config.yaml` only when writing
/// the node's file, never into the ConfigMap.
pub fn kubelet_config_map(cx: Ctx<'_>) -> Result<ConfigMap> {
    let mut config = kubelet::config(cx);
    config.container_runtime_endpoint = String::new();
    let text = kube_yaml("kubelet configuration", &config)?;
    let mut cm = ConfigMap {
        metadata: meta(KUBELET_CONFIG, Some(KUBE_SYSTEM)),
        data: Some(BTreeMap::from([(KUBELET_CONFIG_KEY.into(), text)])),
        ..Default::default()
    };
    let hash = config_hash(&cm);
    cm.metadata.annotations = Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.into(), hash)]));
    Ok(cm)
}

// ---- the token and cluster-info -------------------------------------------------------------

/// `kube-system/bootstrap-token-<id>` with kubeadm's default usages and group.
///
/// Written as `data` (base64 bytes), not `stringData`: `stringData` is write-only and the API
/// returns `data`, so only this form can be compared with the live object.
pub fn token_secret(token: &BootstrapToken) -> Secret {
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let data = BTreeMap::from([
        ("auth-extra-groups".to_string(), bytes(NODE_BOOTSTRAP_GROUP)),
        ("description".to_string(), bytes(TOKEN_DESCRIPTION)),
        ("expiration".to_string(), bytes(&token.expires)),
        ("token-id".to_string(), bytes(&token.id)),
        ("token-secret".to_string(), bytes(&token.secret)),
        ("usage-bootstrap-authentication".to_string(), bytes("true")),
        ("usage-bootstrap-signing".to_string(), bytes("true")),
    ]);
    Secret {
        metadata: meta(&format!("bootstrap-token-{}", token.id), Some(KUBE_SYSTEM)),
        type_: Some(TOKEN_SECRET_TYPE.into()),
        data: Some(data),
        ..Default::default()
    }
}

/// The kubeconfig of `cluster-info`, as client-go writes kubeadm's: one cluster named `""`
/// (admin.conf's, so the endpoint URL and the cluster CA), `contexts: null`, `users: null`,
/// `current-context: ""`; `preferences: {}` up to v1.33 only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfoKubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<NamedCluster>,
    pub contexts: Option<Vec<NamedContext>>,
    #[serde(rename = "current-context")]
    pub current_context: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferences: Option<Preferences>,
    pub users: Option<Vec<NamedUser>>,
}

/// The `kubeconfig` text of `kube-public/cluster-info` (also the JWS payload).
pub fn cluster_info_kubeconfig(cx: Ctx<'_>) -> Result<String> {
    let ca = cx.ca(CaId::Kubernetes)?;
    let k = ClusterInfoKubeconfig {
        api_version: "v1".into(),
        kind: "Config".into(),
        clusters: vec![NamedCluster {
            name: String::new(),
            cluster: crate::kubeconfig::Cluster {
                certificate_authority_data: STANDARD.encode(&ca.cert_pem),
                server: cx.spec.endpoint.url(),
            },
        }],
        contexts: None,
        current_context: String::new(),
        preferences: (cx.spec.kubernetes_version.minor <= 33).then_some(Preferences {}),
        users: None,
    };
    kube_yaml("cluster-info kubeconfig", &k)
}

/// The protected header `cluster-bootstrap/token/jws` produces: go-jose's sorted JSON of the
/// algorithm and the token id as `kid`.
pub fn jws_header(token_id: &str) -> String {
    let header = BTreeMap::from([("alg", "HS256"), ("kid", token_id)]);
    serde_json::to_string(&header).unwrap_or_default()
}

/// A detached JWS (RFC 7515 appendix F) over `payload`, HS256 keyed with the token secret:
/// `<header>..<signature>`, base64url without padding, as KCM's bootstrapsigner stores it.
///
/// Kubernetes zero-pads secrets shorter than 32 bytes before signing; HMAC zero-pads every key
/// to its block size anyway, so the signature over the plain secret is identical.
pub fn detached_jws(payload: &str, token_id: &str, token_secret: &str) -> Result<String> {
    let header = URL_SAFE_NO_PAD.encode(jws_header(token_id));
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let mut mac = Hmac::<Sha256>::new_from_slice(token_secret.as_bytes()).map_err(|e| {
        RenderError::Serialize {
            what: "the cluster-info signature".into(),
            source: Box::new(e),
        }
    })?;
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{header}..{signature}"))
}

/// `kube-public/cluster-info`: the kubeconfig and its signature by `token`.
pub fn cluster_info(cx: Ctx<'_>, token: &BootstrapToken) -> Result<ConfigMap> {
    let kubeconfig = cluster_info_kubeconfig(cx)?;
    let jws = detached_jws(&kubeconfig, &token.id, &token.secret)?;
    Ok(ConfigMap {
        metadata: meta(CLUSTER_INFO, Some(KUBE_PUBLIC)),
        data: Some(BTreeMap::from([
            (format!("jws-kubeconfig-{}", token.id), jws),
            ("kubeconfig".to_string(), kubeconfig),
        ])),
        ..Default::default()
    })
}

// ---- node marking ---------------------------------------------------------------------------

/// Labels and taints to put on a Node through the API once it has registered.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeMarking {
    pub node: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
    Taint {
        effect: effect.into(),
        key: key.into(),
        time_added: None,
        value: value.map(str::to_string),
    }
}

/// What each Kubernetes node needs beyond what its kubelet sets itself, nodes with nothing to
/// add left out.
///
/// Control planes: kubeadm's mark-control-plane labels, the `control-plane:NoSchedule` taint
/// unless the node is also a worker, and all of the spec's labels and taints (their kubelets
/// get no `--node-labels`/`--register-with-taints`). Pure workers: only the spec labels the
/// kubelet may not set on itself; their other labels and their taints come from the kubelet
/// flags ([`kubelet::flags`]).
pub fn markings(spec: &Spec) -> Vec<NodeMarking> {
    spec.kube_nodes()
        .into_iter()
        .map(marking)
        .filter(|m| !m.labels.is_empty() || !m.taints.is_empty())
        .collect()
}

fn marking(node: &Node) -> NodeMarking {
    let control_plane = node.has(NodeRole::ControlPlane);
    let mut labels = BTreeMap::new();
    let mut taints = Vec::new();
    if control_plane {
        labels.insert(CONTROL_PLANE_LABEL.to_string(), String::new());
        labels.insert(EXCLUDE_FROM_LB_LABEL.to_string(), String::new());
        if !node.has(NodeRole::Worker) {
            taints.push(taint(CONTROL_PLANE_LABEL, None, "NoSchedule"));
        }
    }
    for (k, v) in &node.labels {
        if control_plane || !kubelet::kubelet_may_self_label(k) {
            labels.insert(k.clone(), v.clone());
        }
    }
    if control_plane {
        for t in &node.taints {
            let t = taint(&t.key, t.value.as_deref(), t.effect.as_str());
            // A node has one taint per key and effect.
            if !taints
                .iter()
                .any(|x: &Taint| x.key == t.key && x.effect == t.effect)
            {
                taints.push(t);
            }
        }
    }
    NodeMarking {
        node: node.name.clone(),
        labels,
        taints,
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write, process::Command};

    use kubeha_pki::{Materials, Secrets};

    use super::*;
    use crate::provision::tests::{example, fake_materials};

    const TOKEN_ID: &str = "abcdef";
    const TOKEN_SECRET: &str = "0123456789abcdef";

    fn token() -> BootstrapToken {
        BootstrapToken {
            id: TOKEN_ID.into(),
            secret: TOKEN_SECRET.into(),
            expires: "2030-01-02T03:04:05Z".into(),
        }
    }

    fn materials() -> Materials {
        let mut m = fake_materials();
        m.secrets = Secrets {
            bootstrap_token: Some(token()),
            ..m.secrets
        };
        m
    }

    fn external() -> Spec {
        example("external-etcd.yaml")
    }

    fn find<'a>(b: &'a Bundle, kind: &str, name: &str) -> &'a Manifest {
        b.manifests
            .iter()
            .find(|m| m.kind == kind && m.name == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    fn typed<T: serde::de::DeserializeOwned>(m: &Manifest) -> T {
        serde_json::from_value(m.object.clone()).unwrap_or_else(|e| panic!("{}: {e}", m.id()))
    }

    fn group_subject(name: &str) -> (String, String, Option<String>) {
        ("Group".into(), name.into(), None)
    }

    fn subjects(s: &Option<Vec<Subject>>) -> Vec<(String, String, Option<String>)> {
        s.iter()
            .flatten()
            .map(|s| {
                assert_eq!(s.api_group.as_deref(), Some(RBAC_GROUP));
                (s.kind.clone(), s.name.clone(), s.namespace.clone())
            })
            .collect()
    }

    #[test]
    fn objects_come_in_kubeadms_order() {
        let spec = external();
        let m = materials();
        let b = bundle(Ctx::new(&spec, &m)).expect("bundle");
        assert_eq!((b.name.as_str(), b.stage), ("bootstrap", Stage::Bootstrap));
        let ids: Vec<String> = b.manifests.iter().map(Manifest::id).collect();
        assert_eq!(
            ids,
            [
                "ClusterRoleBinding/kubeadm:cluster-admins",
                "ConfigMap/kube-system/kubeadm-config",
                "Role/kube-system/kubeadm:nodes-kubeadm-config",
                "RoleBinding/kube-system/kubeadm:nodes-kubeadm-config",
                "ConfigMap/kube-system/kubelet-config",
                "Role/kube-system/kubeadm:kubelet-config",
                "RoleBinding/kube-system/kubeadm:kubelet-config",
                "Secret/kube-system/bootstrap-token-abcdef",
                "ClusterRole/kubeadm:get-nodes",
                "ClusterRoleBinding/kubeadm:get-nodes",
                "ClusterRoleBinding/kubeadm:kubelet-bootstrap",
                "ClusterRoleBinding/kubeadm:node-autoapprove-bootstrap",
                "ClusterRoleBinding/kubeadm:node-autoapprove-certificate-rotation",
                "ConfigMap/kube-public/cluster-info",
                "Role/kube-public/kubeadm:bootstrap-signer-clusterinfo",
                "RoleBinding/kube-public/kubeadm:bootstrap-signer-clusterinfo",
            ]
        );
        assert!(b.sensitive(), "the token Secret makes the bundle sensitive");
        let sensitive: Vec<&str> = b
            .manifests
            .iter()
            .filter(|m| m.sensitive)
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(sensitive, ["bootstrap-token-abcdef"]);
        // Nothing kube-proxy's, CoreDNS's or upload-certs'.
        for m in &b.manifests {
            assert!(
                !m.name.contains("proxy")
                    && !m.name.contains("coredns")
                    && !m.name.contains("certs"),
                "{}",
                m.id()
            );
        }
    }

    #[test]
    fn a_missing_token_is_an_error() {
        let spec = external();
        let m = fake_materials();
        assert!(bundle(Ctx::new(&spec, &m)).is_err());
    }

    #[test]
    fn cluster_role_bindings_match_kubeadm() {
        let spec = external();
        let m = materials();
        let b = bundle(Ctx::new(&spec, &m)).expect("bundle");
        let bootstrappers = group_subject("system:bootstrappers:kubeadm:default-node-token");
        for (name, role, subject) in [
            (
                "kubeadm:cluster-admins",
                "cluster-admin",
                group_subject("kubeadm:cluster-admins"),
            ),
            (
                "kubeadm:get-nodes",
                "kubeadm:get-nodes",
                bootstrappers.clone(),
            ),
            (
                "kubeadm:kubelet-bootstrap",
                "system:node-bootstrapper",
                bootstrappers.clone(),
            ),
            (
                "kubeadm:node-autoapprove-bootstrap",
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                bootstrappers.clone(),
            ),
            (
                "kubeadm:node-autoapprove-certificate-rotation",
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                group_subject("system:nodes"),
            ),
        ] {
            let crb: ClusterRoleBinding = typed(find(&b, "ClusterRoleBinding", name));
            assert_eq!(
                (
                    crb.role_ref.api_group.as_str(),
                    crb.role_ref.kind.as_str(),
                    crb.role_ref.name.as_str()
                ),
                ("rbac.authorization.k8s.io", "ClusterRole", role),
                "{name}"
            );
            assert_eq!(subjects(&crb.subjects), vec![subject], "{name}");
        }
        let cr: ClusterRole = typed(find(&b, "ClusterRole", "kubeadm:get-nodes"));
        let rules = cr.rules.expect("rules");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].verbs, ["get"]);
        assert_eq!(rules[0].api_groups.as_deref(), Some(&[String::new()][..]));
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["nodes".to_string()][..])
        );
        assert_eq!(rules[0].resource_names, None);
    }

    #[test]
    fn roles_and_role_bindings_match_kubeadm() {
        let spec = external();
        let m = materials();
        let b = bundle(Ctx::new(&spec, &m)).expect("bundle");
        let bootstrappers = group_subject("system:bootstrappers:kubeadm:default-node-token");
        let nodes = group_subject("system:nodes");
        for (ns, name, object, subj) in [
            (
                "kube-system",
                "kubeadm:nodes-kubeadm-config",
                "kubeadm-config",
                vec![bootstrappers.clone(), nodes.clone()],
            ),
            (
                "kube-system",
                "kubeadm:kubelet-config",
                "kubelet-config",
                vec![nodes.clone(), bootstrappers.clone()],
            ),
            (
                "kube-public",
                "kubeadm:bootstrap-signer-clusterinfo",
                "cluster-info",
                vec![("User".into(), "system:anonymous".into(), None)],
            ),
        ] {
            let role_m = find(&b, "Role", name);
            assert_eq!(role_m.namespace.as_deref(), Some(ns));
            let role: Role = typed(role_m);
            let rules = role.rules.expect("rules");
            assert_eq!(rules.len(), 1, "{name}");
            assert_eq!(rules[0].verbs, ["get"]);
            assert_eq!(rules[0].api_groups.as_deref(), Some(&[String::new()][..]));
            assert_eq!(
                rules[0].resources.as_deref(),
                Some(&["configmaps".to_string()][..])
            );
            assert_eq!(
                rules[0].resource_names.as_deref(),
                Some(&[object.to_string()][..])
            );
            let rb_m = find(&b, "RoleBinding", name);
            assert_eq!(rb_m.namespace.as_deref(), Some(ns));
            let rb: RoleBinding = typed(rb_m);
            assert_eq!(
                (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
                ("Role", name)
            );
            assert_eq!(subjects(&rb.subjects), subj, "{name}");
        }
    }

    #[test]
    fn every_object_round_trips_through_its_type() {
        fn check<T>(m: &Manifest)
        where
            T: serde::Serialize + serde::de::DeserializeOwned,
        {
            let back: T = typed(m);
            let again = serde_json::to_value(&back).expect("serialize");
            assert_eq!(again, m.object, "{} lost or changed fields", m.id());
        }
        for spec in [external(), example("stacked.yaml")] {
            let m = materials();
            let b = bundle(Ctx::new(&spec, &m)).expect("bundle");
            for man in &b.manifests {
                match man.kind.as_str() {
                    "ConfigMap" => check::<ConfigMap>(man),
                    "Secret" => check::<Secret>(man),
                    "Role" => check::<Role>(man),
                    "RoleBinding" => check::<RoleBinding>(man),
                    "ClusterRole" => check::<ClusterRole>(man),
                    "ClusterRoleBinding" => check::<ClusterRoleBinding>(man),
                    other => panic!("unexpected kind {other}"),
                }
            }
        }
    }

    #[test]
    fn token_secret_holds_kubeadms_keys() {
        let s = token_secret(&token());
        assert_eq!(s.metadata.name.as_deref(), Some("bootstrap-token-abcdef"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(s.type_.as_deref(), Some("bootstrap.kubernetes.io/token"));
        let data: BTreeMap<&str, String> = s
            .data
            .as_ref()
            .expect("data")
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8(v.0.clone()).expect("utf8")))
            .collect();
        let want: BTreeMap<&str, String> = [
            (
                "auth-extra-groups",
                "system:bootstrappers:kubeadm:default-node-token",
            ),
            ("description", "kubeha bootstrap token"),
            ("expiration", "2030-01-02T03:04:05Z"),
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
            ("usage-bootstrap-signing", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
        assert_eq!(data, want);
        // On the wire: base64 `data`, no `stringData`.
        let m = Manifest::typed(&s).expect("manifest");
        assert_eq!(m.object["data"]["token-id"], STANDARD.encode("abcdef"));
        assert!(m.object.get("stringData").is_none());
        assert!(m.sensitive);
    }

    #[test]
    fn kubeadm_config_for_external_etcd() {
        let spec = external();
        let c = cluster_configuration(&spec);
        let ext = c.etcd.external.as_ref().expect("external");
        assert!(c.etcd.local.is_none());
        assert_eq!(ext.endpoints, ["https://127.0.0.1:2379"]);
        assert_eq!(ext.ca_file, "/etc/kubernetes/pki/etcd/ca.crt");
        assert_eq!(
            ext.cert_file,
            "/etc/kubernetes/pki/apiserver-etcd-client.crt"
        );
        assert_eq!(
            ext.key_file,
            "/etc/kubernetes/pki/apiserver-etcd-client.key"
        );

        let text = kube_yaml("cc", &c).expect("yaml");
        assert_eq!(
            text,
            "apiServer: {}
apiVersion: kubeadm.k8s.io/v1beta4
caCertificateValidityPeriod: 87600h0m0s
certificateValidityPeriod: 8760h0m0s
certificatesDir: /etc/kubernetes/pki
clusterName: ha-cluster
controlPlaneEndpoint: 10.10.0.100:6443
controllerManager: {}
dns: {}
encryptionAlgorithm: RSA-2048
etcd:
  external:
    caFile: /etc/kubernetes/pki/etcd/ca.crt
    certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt
    endpoints:
    - https://127.0.0.1:2379
    keyFile: /etc/kubernetes/pki/apiserver-etcd-client.key
imageRepository: registry.k8s.io
kind: ClusterConfiguration
kubernetesVersion: v1.34.2
networking:
  dnsDomain: cluster.local
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/16
proxy: {}
scheduler: {}
"
        );
        let back: ClusterConfiguration = serde_saphyr::from_str(&text).expect("parse");
        assert_eq!(back, c);
    }

    #[test]
    fn kubeadm_config_agrees_with_the_static_pods() {
        use crate::control_plane::{apiserver_flags, controller_manager_flags};
        // Direct access: every member, as --etcd-servers lists them.
        let mut spec = external();
        spec.etcd.apiserver_access = kubeha_spec::EtcdAccess::Direct;
        spec.networking.node_cidr_mask_size = 26;
        spec.certificates.apiserver_extra_sans = vec!["api.example.org".into(), "10.9.9.9".into()];
        spec.certificates.key_algorithm = kubeha_spec::KeyAlgorithm::EcdsaP256;
        spec.certificates.validity_hours = 24 * 90;
        let c = cluster_configuration(&spec);
        let cp = spec.node("cp-2").expect("cp-2");
        let flags = apiserver_flags(&spec, cp);
        let ext = c.etcd.external.as_ref().expect("external");
        assert_eq!(ext.endpoints.join(","), flags["etcd-servers"]);
        assert_eq!(ext.ca_file, flags["etcd-cafile"]);
        assert_eq!(ext.cert_file, flags["etcd-certfile"]);
        assert_eq!(ext.key_file, flags["etcd-keyfile"]);
        assert_eq!(ext.endpoints.len(), 3);
        assert_eq!(
            c.networking.service_subnet,
            flags["service-cluster-ip-range"]
        );
        let kcm = controller_manager_flags(&spec);
        assert_eq!(c.networking.pod_subnet, kcm["cluster-cidr"]);
        assert_eq!(c.cluster_name, kcm["cluster-name"]);
        assert_eq!(
            c.controller_manager.extra_args,
            [Arg {
                name: "node-cidr-mask-size".into(),
                value: kcm["node-cidr-mask-size"].clone()
            }]
        );
        assert_eq!(
            flags["service-account-issuer"],
            format!("https://kubernetes.default.svc.{}", c.networking.dns_domain)
        );
        assert_eq!(c.api_server.cert_sans, ["api.example.org", "10.9.9.9"]);
        assert_eq!(c.encryption_algorithm, "ECDSA-P256");
        assert_eq!(c.certificate_validity_period.as_deref(), Some("2160h0m0s"));
        let text = kube_yaml("cc", &c).expect("yaml");
        assert!(
            text.contains("apiServer:\n  certSANs:\n  - api.example.org\n  - 10.9.9.9\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "controllerManager:\n  extraArgs:\n  - name: node-cidr-mask-size\n    value: \"26\"\n"
            ),
            "{text}"
        );
        // Images: kubeadm derives `<imageRepository>/kube-apiserver:<kubernetesVersion>`.
        let api = crate::control_plane::apiserver(Ctx::new(&spec, &fake_materials()), cp);
        assert_eq!(
            api.image,
            format!(
                "{}/kube-apiserver:{}",
                c.image_repository, c.kubernetes_version
            )
        );
    }

    #[test]
    fn kubeadm_config_for_stacked_etcd() {
        let mut spec = example("stacked.yaml");
        let c = cluster_configuration(&spec);
        assert!(c.etcd.external.is_none());
        let local = c.etcd.local.as_ref().expect("local");
        assert_eq!(local.data_dir, spec.etcd.data_dir);
        assert_eq!(local.image_tag, "", "default etcd for the minor");
        assert!(local.server_cert_sans.is_empty());
        let text = kube_yaml("cc", &c).expect("yaml");
        assert!(
            text.contains(&format!(
                "etcd:\n  local:\n    dataDir: {}\n",
                spec.etcd.data_dir
            )),
            "{text}"
        );
        assert!(text.contains("controlPlaneEndpoint: "), "{text}");
        // Another etcd release: pinned, as the static pod's image tag.
        spec.etcd_version = kubeha_spec::EtcdVersion {
            major: 3,
            minor: 5,
            patch: 21,
        };
        let c = cluster_configuration(&spec);
        assert_eq!(c.etcd.local.expect("local").image_tag, "3.5.21-0");
    }

    #[test]
    fn kubeadm_config_map_holds_only_the_cluster_configuration() {
        let spec = external();
        let cm = kubeadm_config_map(&spec).expect("cm");
        assert_eq!(cm.metadata.name.as_deref(), Some("kubeadm-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
        let data = cm.data.expect("data");
        assert_eq!(data.keys().collect::<Vec<_>>(), ["ClusterConfiguration"]);
        assert!(
            data["ClusterConfiguration"]
                .starts_with("apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta4\n")
        );
    }

    #[test]
    fn kubelet_config_map_is_hashed_like_kubeadm() {
        let spec = external();
        let m = materials();
        let cx = Ctx::new(&spec, &m);
        let cm = kubelet_config_map(cx).expect("cm");
        assert_eq!(cm.metadata.name.as_deref(), Some("kubelet-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
        let text = &cm.data.as_ref().expect("data")["kubelet"];
        // The node file, minus the node-local CRI socket.
        let node_file = kubelet::config_yaml(cx).expect("yaml");
        assert_eq!(
            *text,
            node_file.replace(
                "containerRuntimeEndpoint: unix:///var/run/containerd/containerd.sock\n",
                "containerRuntimeEndpoint: \"\"\n"
            )
        );
        assert_ne!(
            *text, node_file,
            "v1.34 puts the socket in the node file only"
        );
        // sha256 over the single value, checked with an independent implementation.
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(text.as_bytes()).expect("write");
        let out = Command::new("sha256sum")
            .arg(f.path())
            .output()
            .expect("sha256sum");
        let hex = String::from_utf8(out.stdout).expect("utf8");
        let want = format!("sha256:{}", hex.split_whitespace().next().expect("hash"));
        let annotations = cm.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(
            annotations["kubeadm.kubernetes.io/component-config.hash"],
            want
        );
        // Several keys: values concatenated in key order.
        let two = ConfigMap {
            data: Some(BTreeMap::from([
                ("b".to_string(), "2".to_string()),
                ("a".to_string(), "1".to_string()),
            ])),
            ..Default::default()
        };
        assert_eq!(
            config_hash(&two),
            format!("sha256:{}", hex::encode(Sha256::digest(b"12")))
        );
    }

    #[test]
    fn jws_header_is_what_kubernetes_writes() {
        // The example in Kubernetes' bootstrap-token docs: `eyJhbGciOiJIUzI1NiIsImtpZCI6IjA3NDAxYiJ9..`.
        assert_eq!(
            URL_SAFE_NO_PAD.encode(jws_header("07401b")),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6IjA3NDAxYiJ9"
        );
    }

    /// The signature, recomputed by the openssl CLI over `header.payload`.
    #[test]
    fn cluster_info_signature_verifies_with_openssl() {
        let spec = external();
        let m = materials();
        let cm = cluster_info(Ctx::new(&spec, &m), &token()).expect("cluster-info");
        let data = cm.data.expect("data");
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["jws-kubeconfig-abcdef", "kubeconfig"]
        );
        let jws = &data["jws-kubeconfig-abcdef"];
        let (header, signature) = jws.split_once("..").expect("detached form");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).expect("b64"),
            br#"{"alg":"HS256","kid":"abcdef"}"#
        );
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(&data["kubeconfig"]));
        let mut child = Command::new("openssl")
            .args([
                "dgst",
                "-sha256",
                "-mac",
                "HMAC",
                "-macopt",
                &format!("key:{TOKEN_SECRET}"),
                "-binary",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("openssl output");
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), 32);
        assert_eq!(signature, URL_SAFE_NO_PAD.encode(&out.stdout));
        // Kubernetes zero-pads the key to 32 bytes: the same MAC.
        let padded = format!("hexkey:{}{}", hex::encode(TOKEN_SECRET), "00".repeat(16));
        let out = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "printf '%s' \"$1\" | openssl dgst -sha256 -mac HMAC -macopt {padded} -binary"
                ),
                "sh",
                &input,
            ])
            .output()
            .expect("openssl");
        assert_eq!(signature, URL_SAFE_NO_PAD.encode(&out.stdout));
        // Another secret, another signature.
        let other = detached_jws(&data["kubeconfig"], TOKEN_ID, "fedcba9876543210").expect("jws");
        assert_ne!(&other, jws);
    }

    #[test]
    fn cluster_info_kubeconfig_reads_with_kubectl() {
        let spec = external();
        let m = materials();
        let text = cluster_info_kubeconfig(Ctx::new(&spec, &m)).expect("kubeconfig");
        assert_eq!(
            text,
            format!(
                "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {}
    server: https://10.10.0.100:6443
  name: \"\"
contexts: null
current-context: \"\"
kind: Config
users: null
",
                STANDARD.encode(&m.cas[&CaId::Kubernetes].cert_pem)
            )
        );
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(text.as_bytes()).expect("write");
        let out = Command::new("kubectl")
            .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
            .arg(f.path())
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let clusters = v["clusters"].as_array().expect("clusters");
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0]["name"], "");
        assert_eq!(clusters[0]["cluster"]["server"], "https://10.10.0.100:6443");
        assert_eq!(
            clusters[0]["cluster"]["certificate-authority-data"],
            STANDARD.encode(&m.cas[&CaId::Kubernetes].cert_pem)
        );
        assert!(v["users"].as_array().is_none_or(|u| u.is_empty()));
        assert!(v["contexts"].as_array().is_none_or(|c| c.is_empty()));
        // v1.33 and older still write `preferences: {}`.
        let mut older = spec.clone();
        older.kubernetes_version.minor = 33;
        let text = cluster_info_kubeconfig(Ctx::new(&older, &m)).expect("kubeconfig");
        assert!(
            text.contains("kind: Config\npreferences: {}\nusers: null\n"),
            "{text}"
        );
    }

    #[test]
    fn markings_follow_roles_and_the_kubelets_own_labels() {
        let mut spec = external();
        let node = |spec: &Spec, name: &str| -> usize {
            spec.nodes
                .iter()
                .position(|n| n.name == name)
                .expect("node")
        };
        let cp3 = node(&spec, "cp-3");
        spec.nodes[cp3].roles.insert(NodeRole::Worker);
        spec.nodes[cp3]
            .labels
            .insert("topology.kubernetes.io/zone".into(), "a".into());
        let cp1 = node(&spec, "cp-1");
        spec.nodes[cp1].taints.push(kubeha_spec::Taint {
            key: "dedicated".into(),
            value: Some("infra".into()),
            effect: kubeha_spec::TaintEffect::NoExecute,
        });
        let wn1 = node(&spec, "wn-1");
        spec.nodes[wn1]
            .labels
            .insert("node-role.kubernetes.io/worker".into(), String::new());
        spec.nodes[wn1].labels.insert("team".into(), "a".into());
        spec.nodes[wn1].taints.push(kubeha_spec::Taint {
            key: "gpu".into(),
            value: None,
            effect: kubeha_spec::TaintEffect::NoSchedule,
        });

        let marks = markings(&spec);
        let by: BTreeMap<&str, &NodeMarking> = marks.iter().map(|m| (m.node.as_str(), m)).collect();
        assert_eq!(
            by.keys().copied().collect::<Vec<_>>(),
            ["cp-1", "cp-2", "cp-3", "wn-1"],
            "etcd/lb hosts are no Nodes; wn-2/wn-3 need nothing beyond their kubelet flags"
        );
        let cp_labels = BTreeMap::from([
            (
                "node-role.kubernetes.io/control-plane".to_string(),
                String::new(),
            ),
            (
                "node.kubernetes.io/exclude-from-external-load-balancers".to_string(),
                String::new(),
            ),
        ]);
        let cp_taint = taint("node-role.kubernetes.io/control-plane", None, "NoSchedule");
        assert_eq!(by["cp-2"].labels, cp_labels);
        assert_eq!(by["cp-2"].taints, std::slice::from_ref(&cp_taint));
        assert_eq!(
            by["cp-1"].taints,
            [cp_taint, taint("dedicated", Some("infra"), "NoExecute")]
        );
        // Also a worker: no taint; its own labels go through the API (no --node-labels on CPs).
        assert!(by["cp-3"].taints.is_empty());
        assert_eq!(by["cp-3"].labels["topology.kubernetes.io/zone"], "a");
        assert_eq!(by["cp-3"].labels.len(), 3);
        // Worker: only what its kubelet may not set; its taints are registered by the kubelet.
        assert_eq!(
            by["wn-1"].labels,
            BTreeMap::from([("node-role.kubernetes.io/worker".to_string(), String::new())])
        );
        assert!(by["wn-1"].taints.is_empty());
        let m = materials();
        let flags = kubelet::flags(Ctx::new(&spec, &m), &spec.nodes[wn1]);
        assert_eq!(flags["node-labels"], "team=a");
        assert_eq!(flags["register-with-taints"], "gpu:NoSchedule");
    }

    #[test]
    fn snapshot_external_etcd() {
        let spec = external();
        let m = materials();
        let b = bundle(Ctx::new(&spec, &m)).expect("bundle");
        insta::with_settings!({ filters => vec![
            (r"certificate-authority-data: \S+", "certificate-authority-data: [ca]"),
            (r"jws-kubeconfig-abcdef: \S+", "jws-kubeconfig-abcdef: [jws]"),
            (r"token-secret: \S+", "token-secret: [secret]"),
        ] }, {
            insta::assert_snapshot!("bootstrap_external_etcd", b.yaml());
        });
    }
}
