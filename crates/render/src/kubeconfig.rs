//! Kubeconfig files with embedded credentials, named and addressed the way kubeadm does it.
//!
//! Naming (kubeadm): cluster entry = cluster name, user entry = the client certificate's CN,
//! context = `<user>@<cluster>`. kubeha sets kubeadm's `clusterName` to the spec's `name`, so
//! these entries, KCM's `--cluster-name` and the operator's kubeconfig all agree.
//!
//! Unlike kubeadm, kubeha issues every node's `kubelet.conf` client certificate itself (no TLS
//! bootstrap), so every node gets the init-node shape: embedded certificate and key, kubeadm's
//! names. The kubelet still rotates the certificate (`rotateCertificates: true`) into
//! `/var/lib/kubelet/pki`.

use base64::{Engine, engine::general_purpose::STANDARD};
use kubeha_pki::{CertPair, LeafKind};
use kubeha_spec::{KubeVersion, Node, Role, bracket};
use serde::{Deserialize, Serialize};

use crate::{
    Ctx,
    error::Result,
    file::{HostFile, KUBERNETES_DIR},
    staticpod::kube_yaml,
};

/// The port every kube-apiserver listens on (kubeadm's `localAPIEndpoint.bindPort`).
pub const APISERVER_PORT: u16 = 6443;

/// `clientcmd/api/v1.Config`, limited to what kubeadm writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<NamedCluster>,
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    pub current_context: String,
    /// Always `{}` up to v1.33; client-go v1.34 deprecated the field and stopped writing it
    /// empty (kubernetes#131741), so kubeadm v1.34 files have no `preferences` key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferences: Option<Preferences>,
    pub users: Vec<NamedUser>,
}

/// The empty `preferences: {}` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {}

/// A `clusters[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

/// Where the API server is and the CA that vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// Base64 of the CA certificate PEM.
    #[serde(rename = "certificate-authority-data")]
    pub certificate_authority_data: String,
    pub server: String,
}

/// A `contexts[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: Context,
}

/// Which user talks to which cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    pub user: String,
}

/// A `users[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

/// Embedded client credentials (kubeadm never references files here, except after kubelet-finalize).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Base64 of the client certificate PEM.
    #[serde(
        rename = "client-certificate-data",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub client_certificate_data: String,
    /// Base64 of the client key PEM.
    #[serde(
        rename = "client-key-data",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub client_key_data: String,
    /// A bearer token instead of a certificate (`bootstrap-kubelet.conf`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
}

impl Kubeconfig {
    /// One cluster, one user, one context `<user>@<cluster>`, selected; CA and client embedded.
    pub fn embedded(
        cluster: &str,
        server: &str,
        ca_pem: &str,
        user: &str,
        client: &CertPair,
    ) -> Self {
        let context = format!("{user}@{cluster}");
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: cluster.into(),
                cluster: Cluster {
                    certificate_authority_data: STANDARD.encode(ca_pem),
                    server: server.into(),
                },
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: Context {
                    cluster: cluster.into(),
                    user: user.into(),
                },
            }],
            current_context: context,
            preferences: Some(Preferences {}),
            users: vec![NamedUser {
                name: user.into(),
                user: User {
                    client_certificate_data: STANDARD.encode(&client.cert_pem),
                    client_key_data: STANDARD.encode(&client.key_pem),
                    token: String::new(),
                },
            }],
        }
    }

    /// Drops or keeps `preferences: {}` as kubeadm of `version` does.
    pub fn for_version(mut self, version: KubeVersion) -> Self {
        self.preferences = (version.minor <= 33).then_some(Preferences {});
        self
    }

    /// The file text, in Kubernetes' YAML style.
    pub fn to_yaml(&self) -> Result<String> {
        kube_yaml("kubeconfig", self)
    }
}

/// Kubeconfig text with the CA and client credentials embedded, kubeadm-named.
///
/// `user` must be the client certificate's CN (kubeadm names the user entry after it).
/// Writes `preferences: {}`, which every kubectl accepts.
pub fn kubeconfig(
    cluster: &str,
    server: &str,
    ca_pem: &str,
    user: &str,
    client: &CertPair,
) -> Result<String> {
    Kubeconfig::embedded(cluster, server, ca_pem, user, client).to_yaml()
}

/// `https://<advertise address>:6443`: kubeadm's "local API endpoint" (not 127.0.0.1).
pub fn local_url(node: &Node) -> String {
    format!("https://{}:{APISERVER_PORT}", bracket(node.address))
}

/// The client certificate CN kubeadm uses for a kubeconfig kind, which is also the user name.
pub fn client_user(kind: LeafKind, node: &Node) -> Option<String> {
    Some(match kind {
        LeafKind::AdminConf => "kubernetes-admin".into(),
        LeafKind::SuperAdminConf => "kubernetes-super-admin".into(),
        LeafKind::ControllerManagerConf => "system:kube-controller-manager".into(),
        LeafKind::SchedulerConf => "system:kube-scheduler".into(),
        LeafKind::KubeletConf => format!("system:node:{}", node.name),
        _ => return None,
    })
}

/// Whether the kubelet of a control plane talks to its own API server (kubeadm's
/// `ControlPlaneKubeletLocalMode`: alpha and off in v1.31–v1.32, on by default from v1.33).
pub fn kubelet_local_mode(version: KubeVersion) -> bool {
    version.minor >= 33
}

/// The `server` of a node's kubeconfig of `kind`, as kubeadm picks it.
pub fn server_for(cx: Ctx<'_>, node: &Node, kind: LeafKind) -> String {
    match kind {
        LeafKind::ControllerManagerConf | LeafKind::SchedulerConf => local_url(node),
        LeafKind::KubeletConf
            if node.has(Role::ControlPlane) && kubelet_local_mode(cx.spec.kubernetes_version) =>
        {
            local_url(node)
        }
        _ => cx.spec.endpoint.url(),
    }
}

/// Where a TLS-bootstrapping kubelet finds its token; it writes `kubelet.conf` itself.
pub const BOOTSTRAP_KUBELET_CONF: &str = "/etc/kubernetes/bootstrap-kubelet.conf";

/// `bootstrap-kubelet.conf` as kubeadm join writes it: cluster always named `kubernetes`
/// (whatever the cluster name), user `tls-bootstrap-token-user` with the bootstrap token,
/// server = the control-plane endpoint.
pub fn bootstrap_kubelet_conf(cx: Ctx<'_>, token: &str) -> Result<HostFile> {
    const CLUSTER: &str = "kubernetes";
    const USER: &str = "tls-bootstrap-token-user";
    let ca = cx.ca(kubeha_pki::CaId::Kubernetes)?;
    let context = format!("{USER}@{CLUSTER}");
    let conf = Kubeconfig {
        api_version: "v1".into(),
        kind: "Config".into(),
        clusters: vec![NamedCluster {
            name: CLUSTER.into(),
            cluster: Cluster {
                certificate_authority_data: STANDARD.encode(&ca.cert_pem),
                server: cx.spec.endpoint.url(),
            },
        }],
        contexts: vec![NamedContext {
            name: context.clone(),
            context: Context {
                cluster: CLUSTER.into(),
                user: USER.into(),
            },
        }],
        current_context: context,
        preferences: Some(Preferences {}),
        users: vec![NamedUser {
            name: USER.into(),
            user: User {
                client_certificate_data: String::new(),
                client_key_data: String::new(),
                token: token.into(),
            },
        }],
    }
    .for_version(cx.spec.kubernetes_version);
    Ok(HostFile::secret(BOOTSTRAP_KUBELET_CONF, conf.to_yaml()?))
}

/// `/etc/kubernetes/<kind>.conf` for `node` (0600): its own client certificate of `kind`.
pub fn node_file(cx: Ctx<'_>, node: &Node, kind: LeafKind) -> Result<HostFile> {
    let client = cx.leaf(node, kind)?;
    let ca = cx.ca(kubeha_pki::CaId::Kubernetes)?;
    let user = client_user(kind, node).unwrap_or_else(|| kind.base().to_string());
    let text = Kubeconfig::embedded(
        &cx.spec.name,
        &server_for(cx, node, kind),
        &ca.cert_pem,
        &user,
        client,
    )
    .for_version(cx.spec.kubernetes_version)
    .to_yaml()?;
    Ok(HostFile::secret(
        format!("{KUBERNETES_DIR}/{}", kind.base()),
        text,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> CertPair {
        CertPair {
            cert_pem: "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n".into(),
            key_pem: "KEY".into(),
        }
    }

    #[test]
    fn layout_matches_kubeadm() {
        let text = kubeconfig(
            "ha",
            "https://10.0.0.1:6443",
            "CA",
            "kubernetes-admin",
            &pair(),
        )
        .expect("yaml");
        let want = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://10.0.0.1:6443\n  name: ha\ncontexts:\n- context:\n    cluster: ha\n    user: kubernetes-admin\n  name: kubernetes-admin@ha\ncurrent-context: kubernetes-admin@ha\nkind: Config\npreferences: {}\nusers:\n- name: kubernetes-admin\n  user:\n";
        assert!(text.starts_with(want), "{text}");
        assert!(text.contains("    client-key-data: S0VZ\n"));
    }

    #[test]
    fn preferences_follow_version() {
        let v = |minor| KubeVersion {
            major: 1,
            minor,
            patch: 0,
        };
        let k = Kubeconfig::embedded("c", "s", "ca", "u", &pair());
        assert!(
            k.clone()
                .for_version(v(33))
                .to_yaml()
                .expect("yaml")
                .contains("preferences: {}")
        );
        assert!(
            !k.for_version(v(34))
                .to_yaml()
                .expect("yaml")
                .contains("preferences")
        );
    }

    #[test]
    fn node_files_are_named_and_addressed_like_kubeadm() {
        let f = crate::control_plane::fixtures::stacked();
        let node = f.node("master-2");
        for (kind, user, server) in [
            (
                LeafKind::AdminConf,
                "kubernetes-admin",
                "https://10.20.0.100:6443",
            ),
            (
                LeafKind::SuperAdminConf,
                "kubernetes-super-admin",
                "https://10.20.0.100:6443",
            ),
            (
                LeafKind::ControllerManagerConf,
                "system:kube-controller-manager",
                "https://10.20.0.12:6443",
            ),
            (
                LeafKind::SchedulerConf,
                "system:kube-scheduler",
                "https://10.20.0.12:6443",
            ),
            (
                LeafKind::KubeletConf,
                "system:node:master-2",
                "https://10.20.0.12:6443",
            ),
        ] {
            let file = match node_file(f.cx(), node, kind) {
                Ok(file) => file,
                // super-admin.conf exists for the init node (master-1) only.
                Err(_) if kind == LeafKind::SuperAdminConf => continue,
                Err(e) => panic!("{kind:?}: {e}"),
            };
            assert_eq!(file.path, format!("/etc/kubernetes/{}", kind.base()));
            assert_eq!(file.mode, 0o600);
            let k: Kubeconfig = serde_saphyr::from_str(&file.content).expect("parse");
            assert_eq!(k.clusters[0].name, "stacked");
            assert_eq!(k.clusters[0].cluster.server, server);
            assert_eq!(k.users[0].name, user);
            assert_eq!(k.current_context, format!("{user}@stacked"));
            assert_eq!(k.preferences, None, "v1.34 writes no preferences");
            let client = f.cx().leaf(node, kind).expect("leaf");
            assert_eq!(
                STANDARD
                    .decode(&k.users[0].user.client_key_data)
                    .expect("b64"),
                client.key_pem.as_bytes()
            );
        }
    }

    #[test]
    fn round_trips_through_serde() {
        let k = Kubeconfig::embedded(
            "c",
            "https://[fd00::1]:6443",
            "ca",
            "system:node:n1",
            &pair(),
        );
        let back: Kubeconfig = serde_saphyr::from_str(&k.to_yaml().expect("yaml")).expect("parse");
        assert_eq!(back, k);
    }
}
