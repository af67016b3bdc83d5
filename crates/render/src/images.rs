//! Every container image a cluster needs, and the one rule that maps an upstream image onto
//! the spec's `imageRepository` (for air-gapped mirrors).

use kubeha_spec::{CniPlugin, EtcdDeployment, EtcdProxyDeployment, Spec};
use serde::Serialize;

use crate::{addons, control_plane};

/// kubeadm's default registry; with it every image keeps its upstream name.
pub const DEFAULT_REPOSITORY: &str = "registry.k8s.io";

/// The image to run for `upstream` (a full reference such as `quay.io/tigera/operator:v1.38.7`).
///
/// With the default repository the upstream reference is returned unchanged. With a mirror,
/// the registry host is replaced by the mirror and the rest of the path kept
/// (`quay.io/tigera/operator:v1.38.7` → `mirror.example/tigera/operator:v1.38.7`), except
/// CoreDNS, which kubeadm moves to `<mirror>/coredns:<tag>` (no `coredns/` sub-path).
pub fn mirror(spec: &Spec, upstream: &str) -> String {
    if spec.image_repository == DEFAULT_REPOSITORY {
        return upstream.to_string();
    }
    let path = match upstream.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') => rest,
        _ => upstream,
    };
    let path = path
        .strip_prefix("coredns/coredns:")
        .map_or_else(|| path.to_string(), |tag| format!("coredns:{tag}"));
    format!("{}/{}", spec.image_repository, path)
}

/// One image the cluster runs and what runs it (`kubeha images`, mirror preparation).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageUse {
    pub image: String,
    /// The components using it, comma-separated when several share the image.
    pub used_by: String,
}

/// Every image the spec's cluster pulls, each once, sorted by reference.
///
/// etcd's image only when members run as static pods (a systemd member runs the host's
/// binary); the etcd proxy image only for the static-pod local proxy in front of external
/// etcd; the CNI's and MetalLB's as configured.
pub fn all(spec: &Spec) -> Vec<ImageUse> {
    let version = spec.kubernetes_version.to_string();
    let mut uses: Vec<(String, String)> = Vec::new();
    let mut add = |image: String, used_by: &str| uses.push((image, used_by.to_string()));
    for component in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        add(spec.image(component, &version), component);
    }
    add(addons::kube_proxy::image(spec), "kube-proxy");
    add(spec.pause_image(), "pod sandbox (pause)");
    if spec.etcd.deployment == EtcdDeployment::StaticPod {
        add(spec.image("etcd", &spec.etcd_version.image_tag()), "etcd");
    }
    if control_plane::uses_etcd_proxy(spec)
        && spec.etcd.local_proxy == EtcdProxyDeployment::StaticPod
    {
        add(mirror(spec, control_plane::ETCD_PROXY_IMAGE), "etcd-proxy");
    }
    add(addons::coredns::image(spec), "coredns");
    let (cni, cni_images) = match spec.cni.plugin {
        CniPlugin::Calico => ("calico", addons::calico::images(spec)),
        CniPlugin::Flannel => ("flannel", addons::flannel::images(spec)),
    };
    for image in cni_images {
        add(image, cni);
    }
    if spec.metallb.is_some() {
        for image in addons::metallb::images(spec) {
            add(image, "metallb");
        }
    }
    let mut by_image: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (image, used_by) in uses {
        let users = by_image.entry(image).or_default();
        if !users.contains(&used_by) {
            users.push(used_by);
        }
    }
    by_image
        .into_iter()
        .map(|(image, users)| ImageUse {
            image,
            used_by: users.join(", "),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::tests::example;

    fn images(spec: &Spec) -> Vec<String> {
        all(spec).into_iter().map(|u| u.image).collect()
    }

    #[test]
    fn external_etcd_example_needs_these_images() {
        let spec = example("external-etcd.yaml");
        let list = all(&spec);
        let names = images(&spec);
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "sorted, each once");
        for want in [
            "registry.k8s.io/kube-apiserver:v1.34.2",
            "registry.k8s.io/kube-controller-manager:v1.34.2",
            "registry.k8s.io/kube-scheduler:v1.34.2",
            "registry.k8s.io/kube-proxy:v1.34.2",
            "registry.k8s.io/pause:3.10.1",
            "registry.k8s.io/coredns/coredns:v1.12.1",
            control_plane::ETCD_PROXY_IMAGE,
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing: {names:#?}"
            );
        }
        // Members run as systemd units here: no etcd image.
        assert!(!names.iter().any(|n| n.contains("/etcd:")), "{names:#?}");
        for i in addons::calico::images(&spec)
            .into_iter()
            .chain(addons::metallb::images(&spec))
        {
            assert!(names.contains(&i), "{i}");
        }
        assert!(
            addons::flannel::images(&spec)
                .iter()
                .all(|i| !names.contains(i))
        );
        let used_by = |image: &str| {
            list.iter()
                .find(|u| u.image == image)
                .map(|u| u.used_by.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            used_by("registry.k8s.io/pause:3.10.1"),
            "pod sandbox (pause)"
        );
        assert_eq!(used_by(control_plane::ETCD_PROXY_IMAGE), "etcd-proxy");
    }

    #[test]
    fn static_pod_etcd_flannel_and_no_metallb() {
        let mut spec = example("stacked.yaml");
        spec.etcd.deployment = EtcdDeployment::StaticPod;
        spec.cni.plugin = CniPlugin::Flannel;
        spec.metallb = None;
        let names = images(&spec);
        let etcd = spec.image("etcd", &spec.etcd_version.image_tag());
        assert!(names.contains(&etcd), "{names:#?}");
        assert!(
            !names.iter().any(|n| n.contains("haproxy")),
            "stacked: no proxy"
        );
        for i in addons::flannel::images(&spec) {
            assert!(names.contains(&i), "{i}");
        }
        for i in addons::calico::images(&spec)
            .into_iter()
            .chain(addons::metallb::images(&spec))
        {
            assert!(!names.contains(&i), "{i}");
        }
    }

    #[test]
    fn a_mirror_prefixes_every_image() {
        for file in ["external-etcd.yaml", "stacked.yaml", "lab.yaml"] {
            let mut spec = example(file);
            spec.image_repository = "mirror.example:5000/k8s".into();
            spec.etcd.deployment = EtcdDeployment::StaticPod;
            let list = all(&spec);
            assert!(list.len() > 8, "{file}: {list:#?}");
            for u in &list {
                assert!(
                    u.image.starts_with("mirror.example:5000/k8s/"),
                    "{file}: {} ({}) bypasses the mirror",
                    u.image,
                    u.used_by
                );
            }
            assert!(
                list.iter()
                    .any(|u| u.image.starts_with("mirror.example:5000/k8s/coredns:")),
                "{file}: kubeadm drops the coredns/ path segment"
            );
        }
    }
}
