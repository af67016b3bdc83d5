//! The cluster file exactly as written, with source locations for every value that
//! validation may complain about. [`crate::resolve`] turns it into a [`crate::Spec`].

use std::fmt;

use serde::{Deserialize, Deserializer, de};
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

/// A number as written. Numbers are read as text and checked in [`crate::resolve`], so a
/// bad one is reported with its field, place and allowed range, together with every other
/// problem, instead of stopping the parse.
pub type Num = S<String>;

/// A node's labels in file order, each key and value with its place in the file (a plain
/// map would lose where each one was written). An empty value (`key:`) is `None`.
#[derive(Debug, Default)]
pub struct RawLabels(pub Vec<(S<String>, S<Option<String>>)>);

impl<'de> Deserialize<'de> for RawLabels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawLabels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<RawLabels, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(RawLabels(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSpec {
    pub name: S<String>,
    #[serde(default)]
    pub base_domain: Option<S<String>>,
    #[serde(default)]
    pub kubernetes_version: Option<S<String>>,
    #[serde(default)]
    pub etcd_version: Option<S<String>>,
    #[serde(default)]
    pub topology: Option<S<String>>,
    #[serde(default)]
    pub control_plane_endpoint: Option<S<String>>,
    #[serde(default)]
    pub ssh: Option<RawSsh>,
    #[serde(default)]
    pub networking: Option<RawNetworking>,
    #[serde(default)]
    pub cni: Option<RawCni>,
    #[serde(default)]
    pub metallb: Option<RawMetalLb>,
    #[serde(default)]
    pub load_balancer: Option<RawLoadBalancer>,
    #[serde(default)]
    pub etcd: Option<RawEtcd>,
    #[serde(default)]
    pub certificates: Option<RawCertificates>,
    #[serde(default)]
    pub container_runtime: Option<RawContainerRuntime>,
    #[serde(default)]
    pub image_repository: Option<S<String>>,
    #[serde(default)]
    pub worker_join: Option<S<String>>,
    #[serde(default)]
    pub provisioning: Option<RawProvisioning>,
    pub nodes: S<Vec<RawNode>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSsh {
    #[serde(default)]
    pub user: Option<S<String>>,
    #[serde(default)]
    pub port: Option<Num>,
    #[serde(default)]
    pub key: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawNode {
    pub name: S<String>,
    pub address: S<String>,
    pub roles: S<Vec<S<String>>>,
    #[serde(default)]
    pub ssh: Option<RawSsh>,
    #[serde(default)]
    pub labels: RawLabels,
    #[serde(default)]
    pub taints: Vec<RawTaint>,
    #[serde(default)]
    pub lb_priority: Option<Num>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTaint {
    pub key: S<String>,
    #[serde(default)]
    pub value: Option<S<String>>,
    pub effect: S<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawNetworking {
    #[serde(default)]
    pub node_cidr: Option<S<String>>,
    #[serde(default)]
    pub pod_cidr: Option<S<String>>,
    #[serde(default)]
    pub service_cidr: Option<S<String>>,
    #[serde(default)]
    pub dns_domain: Option<S<String>>,
    #[serde(default)]
    pub node_cidr_mask_size: Option<Num>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawCni {
    #[serde(default)]
    pub plugin: Option<S<String>>,
    #[serde(default)]
    pub encapsulation: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMetalLb {
    pub addresses: S<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLoadBalancer {
    #[serde(default)]
    pub vip: Option<S<String>>,
    #[serde(default)]
    pub interface: Option<S<String>>,
    #[serde(default)]
    pub virtual_router_id: Option<Num>,
    #[serde(default)]
    pub stats_port: Option<Num>,
    #[serde(default)]
    pub etcd_port: Option<Num>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawEtcd {
    #[serde(default)]
    pub deployment: Option<S<String>>,
    #[serde(default)]
    pub data_dir: Option<S<String>>,
    #[serde(default)]
    pub apiserver_access: Option<S<String>>,
    #[serde(default)]
    pub ca_host: Option<S<String>>,
    #[serde(default)]
    pub binary: Option<S<String>>,
    #[serde(default)]
    pub local_proxy: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawCertificates {
    #[serde(default)]
    pub key_algorithm: Option<S<String>>,
    #[serde(default)]
    pub validity: Option<S<String>>,
    #[serde(default)]
    pub ca_validity: Option<S<String>>,
    #[serde(default)]
    pub apiserver_extra_sans: Vec<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawContainerRuntime {
    #[serde(default)]
    pub endpoint: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawProvisioning {
    #[serde(default)]
    pub user: Option<S<String>>,
    #[serde(default)]
    pub ssh_authorized_keys: Vec<S<String>>,
    #[serde(default)]
    pub interface: Option<S<String>>,
    #[serde(default)]
    pub timezone: Option<S<String>>,
    #[serde(default)]
    pub gateway: Option<S<String>>,
    #[serde(default)]
    pub nameservers: Vec<S<String>>,
}
