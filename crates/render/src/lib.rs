//! Pure rendering: from a [`Spec`] and the PKI [`Materials`], every file each host needs,
//! byte for byte, at its final path, plus the operator's own files.
//!
//! Nothing here touches the disk, the network or the clock. `kubeha render` writes the result
//! to a directory; later, `kubeha up` uploads the very same bytes.

pub mod addons;
pub mod bootstrap;
pub mod common;
pub mod control_plane;
pub mod error;
pub mod etcd;
pub mod file;
pub mod images;
pub mod kubeconfig;
pub mod kubelet;
pub mod lb;
pub mod manifest;
pub mod operator;
pub mod provision;
pub mod staticpod;
pub mod worker;

use std::collections::BTreeMap;

use kubeha_pki::{CaId, CertPair, LeafId, LeafKind, Materials};
use kubeha_spec::{Node, Role, Spec};

pub use error::{RenderError, Result};
pub use file::HostFile;
pub use manifest::{Bundle, Manifest, Stage};

/// Inputs every renderer reads.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub spec: &'a Spec,
    pub materials: &'a Materials,
}

impl<'a> Ctx<'a> {
    pub fn new(spec: &'a Spec, materials: &'a Materials) -> Self {
        Ctx { spec, materials }
    }

    pub fn ca(&self, id: CaId) -> Result<&'a CertPair> {
        self.materials
            .ca(id)
            .ok_or(RenderError::MissingCa { ca: id })
    }

    pub fn leaf(&self, node: &Node, kind: LeafKind) -> Result<&'a CertPair> {
        let id = LeafId::new(&node.name, kind);
        self.materials
            .leaf(&id)
            .ok_or(RenderError::MissingLeaf { leaf: id })
    }

    pub fn operator_leaf(&self, kind: LeafKind) -> Result<&'a CertPair> {
        let id = LeafId::operator(kind);
        self.materials
            .leaf(&id)
            .ok_or(RenderError::MissingLeaf { leaf: id })
    }
}

/// Everything one host receives, sorted by path, and the services it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTree {
    pub node: String,
    pub files: Vec<HostFile>,
    /// systemd units this host runs, in start order (e.g. `etcd.service`).
    pub services: Vec<String>,
}

/// The whole rendered cluster.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// One tree per node, in cluster-file order.
    pub hosts: Vec<HostTree>,
    /// Files for the operator (kubeconfig, diagrams, provisioning), relative paths.
    pub operator: Vec<HostFile>,
}

/// Renders every host and the operator files.
pub fn render(spec: &Spec, materials: &Materials) -> Result<Rendered> {
    let cx = Ctx::new(spec, materials);
    let mut hosts = Vec::with_capacity(spec.nodes.len());
    for node in &spec.nodes {
        hosts.push(render_host(cx, node)?);
    }
    let mut operator = operator::files(cx)?;
    for (node, tree) in spec.nodes.iter().zip(&hosts) {
        operator.extend(provision::files(cx, node, &tree.files)?);
    }
    for (i, bundle) in cluster_bundles(cx)?.iter().enumerate() {
        let path = format!("{CLUSTER_DIR}/{:02}-{}.yaml", i + 1, bundle.name);
        operator.push(if bundle.sensitive() {
            HostFile::secret(path, bundle.yaml())
        } else {
            HostFile::public(path, bundle.yaml())
        });
    }
    Ok(Rendered { hosts, operator })
}

/// Directory of the in-cluster objects inside the output dir (one YAML file per bundle).
pub const CLUSTER_DIR: &str = "_cluster";

/// Every object `kubeha up` creates through the Kubernetes API, in the order it applies
/// them: kubeadm's bootstrap objects, kube-proxy, CoreDNS, the CNI, MetalLB.
pub fn cluster_bundles(cx: Ctx<'_>) -> Result<Vec<Bundle>> {
    let spec = cx.spec;
    let mut bundles = vec![
        bootstrap::bundle(cx)?,
        addons::kube_proxy::bundle(spec)?,
        addons::coredns::bundle(spec)?,
        match spec.cni.plugin {
            kubeha_spec::CniPlugin::Calico => addons::calico::bundle(spec)?,
            kubeha_spec::CniPlugin::Flannel => addons::flannel::bundle(spec)?,
        },
    ];
    bundles.extend(addons::metallb::bundle(spec)?);
    Ok(bundles)
}

/// Renders one host: the union of what its roles need, merged by path.
pub fn render_host(cx: Ctx<'_>, node: &Node) -> Result<HostTree> {
    let mut parts: Vec<HostFile> = common::files(cx, node)?;
    let mut services = vec![];
    if cx.spec.is_etcd_member(node) {
        parts.extend(etcd::files(cx, node)?);
        services.extend(etcd::services(cx, node));
    }
    if node.has(Role::Lb) {
        parts.extend(lb::files(cx, node)?);
        services.extend(lb::services());
    }
    if node.has(Role::ControlPlane) {
        parts.extend(control_plane::files(cx, node)?);
        // The systemd etcd proxy goes before containerd and the kubelet: the bring-up starts
        // and gates it before the API server's static pod.
        services.extend(control_plane::services(cx.spec));
    }
    if node.has(Role::Worker) && !node.has(Role::ControlPlane) {
        parts.extend(worker::files(cx, node)?);
    }
    if node.has(Role::ControlPlane) || node.has(Role::Worker) {
        services.push("containerd.service".into());
        services.push("kubelet.service".into());
    }
    let mut by_path: BTreeMap<String, HostFile> = BTreeMap::new();
    for f in parts {
        match by_path.get(&f.path) {
            Some(existing) if *existing != f => {
                return Err(RenderError::Conflict {
                    node: node.name.clone(),
                    path: f.path,
                });
            }
            _ => {
                by_path.insert(f.path.clone(), f);
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    services.retain(|s| seen.insert(s.clone()));
    Ok(HostTree {
        node: node.name.clone(),
        files: by_path.into_values().collect(),
        services,
    })
}
