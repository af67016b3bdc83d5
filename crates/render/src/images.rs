//! Every container image a cluster needs, and the one rule that maps an upstream image onto
//! the spec's `imageRepository` (for air-gapped mirrors).

use kubeha_spec::Spec;

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
    let path = path.strip_prefix("coredns/coredns:").map_or_else(
        || path.to_string(),
        |tag| format!("coredns:{tag}"),
    );
    format!("{}/{}", spec.image_repository, path)
}
