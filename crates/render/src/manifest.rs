//! One Kubernetes object kubeha applies through the API, in a form the API edge can send
//! without knowing its type: typed `k8s-openapi` objects (and the few custom resources) are
//! turned into JSON here, together with what the edge needs to address them.

use serde::Serialize;

use crate::error::{RenderError, Result};
use crate::staticpod::emit_yaml;

/// An object to create or update in the cluster.
#[derive(Clone, PartialEq)]
pub struct Manifest {
    /// `v1`, `apps/v1`, `operator.tigera.io/v1`…
    pub api_version: String,
    pub kind: String,
    /// The resource's URL segment: `configmaps`, `clusterrolebindings`…
    pub plural: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
    /// The whole object (apiVersion, kind, metadata, …) as the API server receives it.
    pub object: serde_json::Value,
    /// Holds a secret (bootstrap token): never print, write 0600.
    pub sensitive: bool,
    /// Create when absent, never update: CRDs kubeha ships as structural stubs whose owner
    /// (the Tigera operator) replaces them with full schemas, which a re-apply must not undo.
    pub create_only: bool,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("api_version", &self.api_version)
            .field("kind", &self.kind)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Manifest {
    /// A typed built-in object; apiVersion, kind, plural and scope come from its type.
    pub fn typed<K>(object: &K) -> Result<Self>
    where
        K: k8s_openapi::Resource<Scope: 'static>
            + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
            + Serialize,
    {
        let meta = object.metadata();
        let name = meta.name.clone().unwrap_or_default();
        let namespaced = std::any::TypeId::of::<K::Scope>()
            == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>();
        let mut value = serde_json::to_value(object).map_err(|e| RenderError::Serialize {
            what: format!("{} {name}", K::KIND),
            source: Box::new(e),
        })?;
        // k8s-openapi's Serialize already writes apiVersion/kind; keep them first-class anyway.
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), K::API_VERSION.into());
            map.insert("kind".into(), K::KIND.into());
        }
        Ok(Manifest {
            api_version: K::API_VERSION.to_string(),
            kind: K::KIND.to_string(),
            plural: K::URL_PATH_SEGMENT.to_string(),
            namespace: if namespaced {
                meta.namespace.clone()
            } else {
                None
            },
            name,
            object: value,
            sensitive: K::KIND == "Secret",
            create_only: K::KIND == "CustomResourceDefinition",
        })
    }

    /// A custom resource (Calico `Installation`, MetalLB `IPAddressPool`…): no Rust type, so
    /// the caller names its plural and scope. `object` must hold apiVersion, kind and metadata.
    pub fn custom(plural: &str, object: serde_json::Value) -> Result<Self> {
        let field = |k: &str| object.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let meta = |k: &str| {
            object
                .get("metadata")
                .and_then(|m| m.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let (Some(api_version), Some(kind), Some(name)) =
            (field("apiVersion"), field("kind"), meta("name"))
        else {
            return Err(RenderError::Serialize {
                what: format!("custom resource {plural}"),
                source: "apiVersion, kind and metadata.name are required".into(),
            });
        };
        Ok(Manifest {
            api_version,
            kind,
            plural: plural.to_string(),
            namespace: meta("namespace"),
            name,
            object,
            sensitive: false,
            create_only: false,
        })
    }

    /// API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    /// API version without the group (`v1`).
    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or(self.api_version.as_str(), |(_, v)| v)
    }

    /// `kind/namespace/name` for messages.
    pub fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }

    /// The object as YAML in Kubernetes' own style.
    pub fn yaml(&self) -> String {
        emit_yaml(&self.object)
    }
}

/// When a bundle is applied during `kubeha up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Right after the first API server answers: RBAC, configs, tokens, cluster-info. Applied
    /// with super-admin credentials (admin.conf has no rights before `kubeadm:cluster-admins`).
    Bootstrap,
    /// kube-proxy and CoreDNS.
    CoreAddons,
    /// The pod network.
    Cni,
    /// MetalLB, once nodes are Ready.
    LoadBalancer,
}

/// A named group of objects applied together, in order.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// File-friendly name: `bootstrap`, `kube-proxy`, `coredns`, `calico`, `flannel`, `metallb`.
    pub name: String,
    pub stage: Stage,
    pub manifests: Vec<Manifest>,
}

impl Bundle {
    /// The bundle as one multi-document YAML file.
    pub fn yaml(&self) -> String {
        let mut out = String::new();
        for m in &self.manifests {
            out.push_str("---\n");
            out.push_str(&m.yaml());
        }
        out
    }

    /// Whether any object holds a secret.
    pub fn sensitive(&self) -> bool {
        self.manifests.iter().any(|m| m.sensitive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::api::rbac::v1::ClusterRole;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn typed_objects_carry_their_address() {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("kubeadm-config".into()),
                namespace: Some("kube-system".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let m = Manifest::typed(&cm).expect("serializes");
        assert_eq!(
            (
                m.api_version.as_str(),
                m.plural.as_str(),
                m.group(),
                m.version()
            ),
            ("v1", "configmaps", "", "v1")
        );
        assert_eq!(m.namespace.as_deref(), Some("kube-system"));
        assert_eq!(m.object["kind"], "ConfigMap");

        let cr = ClusterRole {
            metadata: ObjectMeta {
                name: Some("kubeadm:get-nodes".into()),
                namespace: Some("ignored".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let m = Manifest::typed(&cr).expect("serializes");
        assert_eq!(m.group(), "rbac.authorization.k8s.io");
        assert_eq!(
            m.namespace, None,
            "cluster-scoped objects have no namespace"
        );
        assert_eq!(m.id(), "ClusterRole/kubeadm:get-nodes");
    }

    #[test]
    fn custom_resources_need_kind_and_name() {
        let ok = Manifest::custom(
            "ipaddresspools",
            serde_json::json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                "metadata": {"name": "default", "namespace": "metallb-system"}}),
        )
        .expect("valid");
        assert_eq!(ok.group(), "metallb.io");
        assert_eq!(ok.namespace.as_deref(), Some("metallb-system"));
        assert!(Manifest::custom("x", serde_json::json!({"kind": "X"})).is_err());
    }
}
