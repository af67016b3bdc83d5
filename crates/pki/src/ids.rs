//! Names of every certificate kubeha issues, and where each lands under `/etc/kubernetes/pki`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The three certificate authorities of a kubeadm cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaId {
    /// `ca` — signs API server, kubelet and kubeconfig client certificates.
    Kubernetes,
    /// `front-proxy-ca` — signs the aggregation-layer client certificate.
    FrontProxy,
    /// `etcd/ca` — signs every etcd server, peer and client certificate.
    Etcd,
}

impl CaId {
    pub const ALL: [CaId; 3] = [CaId::Kubernetes, CaId::FrontProxy, CaId::Etcd];

    /// Path relative to the pki dir, without extension (`etcd/ca`).
    pub fn base(&self) -> &'static str {
        match self {
            CaId::Kubernetes => "ca",
            CaId::FrontProxy => "front-proxy-ca",
            CaId::Etcd => "etcd/ca",
        }
    }

    /// How messages name the CA: `kubernetes`, `front-proxy`, `etcd`.
    pub fn name(&self) -> &'static str {
        match self {
            CaId::Kubernetes => "kubernetes",
            CaId::FrontProxy => "front-proxy",
            CaId::Etcd => "etcd",
        }
    }

    /// Subject CN (also the CA's single DNS SAN, as kubeadm does).
    pub fn common_name(&self) -> &'static str {
        match self {
            CaId::Kubernetes => "kubernetes",
            CaId::FrontProxy => "front-proxy-ca",
            CaId::Etcd => "etcd-ca",
        }
    }
}

impl fmt::Display for CaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base())
    }
}

/// Every kind of leaf certificate, including the client certificates embedded in kubeconfigs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeafKind {
    ApiServer,
    ApiServerKubeletClient,
    FrontProxyClient,
    ApiServerEtcdClient,
    EtcdServer,
    EtcdPeer,
    EtcdHealthcheckClient,
    /// `admin.conf` (`kubernetes-admin`, `kubeadm:cluster-admins`).
    AdminConf,
    /// `super-admin.conf` (`kubernetes-super-admin`, `system:masters`), init node only.
    SuperAdminConf,
    ControllerManagerConf,
    SchedulerConf,
    /// `kubelet.conf` client (`system:node:<name>`, `system:nodes`).
    KubeletConf,
}

impl LeafKind {
    pub const ALL: [LeafKind; 12] = [
        LeafKind::ApiServer,
        LeafKind::ApiServerKubeletClient,
        LeafKind::FrontProxyClient,
        LeafKind::ApiServerEtcdClient,
        LeafKind::EtcdServer,
        LeafKind::EtcdPeer,
        LeafKind::EtcdHealthcheckClient,
        LeafKind::AdminConf,
        LeafKind::SuperAdminConf,
        LeafKind::ControllerManagerConf,
        LeafKind::SchedulerConf,
        LeafKind::KubeletConf,
    ];

    /// File base relative to the pki dir for certificates that live there; for kubeconfig
    /// clients, the kubeconfig file name under `/etc/kubernetes`.
    pub fn base(&self) -> &'static str {
        match self {
            LeafKind::ApiServer => "apiserver",
            LeafKind::ApiServerKubeletClient => "apiserver-kubelet-client",
            LeafKind::FrontProxyClient => "front-proxy-client",
            LeafKind::ApiServerEtcdClient => "apiserver-etcd-client",
            LeafKind::EtcdServer => "etcd/server",
            LeafKind::EtcdPeer => "etcd/peer",
            LeafKind::EtcdHealthcheckClient => "etcd/healthcheck-client",
            LeafKind::AdminConf => "admin.conf",
            LeafKind::SuperAdminConf => "super-admin.conf",
            LeafKind::ControllerManagerConf => "controller-manager.conf",
            LeafKind::SchedulerConf => "scheduler.conf",
            LeafKind::KubeletConf => "kubelet.conf",
        }
    }

    /// True for the client certificates that are embedded in a kubeconfig, not written as files.
    pub fn is_kubeconfig(&self) -> bool {
        matches!(
            self,
            LeafKind::AdminConf
                | LeafKind::SuperAdminConf
                | LeafKind::ControllerManagerConf
                | LeafKind::SchedulerConf
                | LeafKind::KubeletConf
        )
    }

    pub fn issuer(&self) -> CaId {
        match self {
            LeafKind::FrontProxyClient => CaId::FrontProxy,
            LeafKind::ApiServerEtcdClient
            | LeafKind::EtcdServer
            | LeafKind::EtcdPeer
            | LeafKind::EtcdHealthcheckClient => CaId::Etcd,
            _ => CaId::Kubernetes,
        }
    }
}

/// One issued leaf: its kind and owner. `node: None` is the operator's own copy
/// (the admin kubeconfig kubeha writes for the user).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeafId {
    pub node: Option<String>,
    pub kind: LeafKind,
}

impl LeafId {
    pub fn new(node: &str, kind: LeafKind) -> Self {
        LeafId {
            node: Some(node.to_string()),
            kind,
        }
    }

    pub fn operator(kind: LeafKind) -> Self {
        LeafId { node: None, kind }
    }
}

impl fmt::Display for LeafId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(n) => write!(f, "{n}/{}", self.kind.base()),
            None => write!(f, "operator/{}", self.kind.base()),
        }
    }
}
