//! `kubeha version`: what this binary is, and which releases it deploys when the cluster
//! file does not say otherwise.

use std::process::ExitCode;

use kubeha_render::addons::{calico, flannel, metallb};
use kubeha_spec::KubeVersion;
use serde::Serialize;

use crate::{
    args::Global,
    error::CliError,
    output::{emit, kv_table},
};

/// The commit the binary was built from (`build.rs`), "unknown" outside a checkout.
pub const COMMIT: &str = env!("KUBEHA_COMMIT");

/// `kubeha --version`: the crate version and the commit.
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("KUBEHA_COMMIT"), ")");

/// What `kubeha version` prints. Defaults only: a cluster file may pin another Kubernetes
/// release, and etcd, CoreDNS and pause then follow that release.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    pub version: String,
    pub commit: String,
    pub kubernetes: String,
    pub etcd: String,
    pub coredns: String,
    pub pause: String,
    pub kube_proxy: String,
    pub calico: String,
    pub tigera_operator: String,
    pub flannel: String,
    pub flannel_cni_plugin: String,
    pub metallb: String,
}

pub fn versions() -> Versions {
    let kube = KubeVersion::DEFAULT;
    Versions {
        version: env!("CARGO_PKG_VERSION").into(),
        commit: COMMIT.into(),
        kubernetes: kube.to_string(),
        etcd: kube.default_etcd().to_string(),
        coredns: kube.coredns_tag().into(),
        pause: kube.pause_tag().into(),
        // kube-proxy ships with Kubernetes and carries its version.
        kube_proxy: kube.to_string(),
        calico: calico::CALICO_VERSION.into(),
        tigera_operator: calico::TIGERA_OPERATOR_VERSION.into(),
        flannel: flannel::FLANNEL_VERSION.into(),
        flannel_cni_plugin: flannel::FLANNEL_CNI_PLUGIN_VERSION.into(),
        metallb: metallb::METALLB_VERSION.into(),
    }
}

/// `kubeha version`. Reads no file: it answers before there is a cluster.
pub fn run(g: &Global) -> Result<ExitCode, CliError> {
    let v = versions();
    emit(g.output, &v, || {
        let mut text = kv_table(&[("kubeha", v.version.clone()), ("commit", v.commit.clone())]);
        text.push_str("\nDeployed by default:\n");
        text.push_str(&kv_table(&[
            ("Kubernetes", v.kubernetes.clone()),
            ("etcd", v.etcd.clone()),
            ("CoreDNS", v.coredns.clone()),
            ("pause", v.pause.clone()),
            ("kube-proxy", v.kube_proxy.clone()),
            ("Calico", v.calico.clone()),
            ("Tigera operator", v.tigera_operator.clone()),
            ("Flannel", v.flannel.clone()),
            ("Flannel CNI plugin", v.flannel_cni_plugin.clone()),
            ("MetalLB", v.metallb.clone()),
        ]));
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_ones_rendering_uses() {
        let v = versions();
        let kube = KubeVersion::DEFAULT;
        assert_eq!(v.kubernetes, kube.to_string());
        assert_eq!(v.etcd, kube.default_etcd().to_string());
        assert_eq!(v.metallb, metallb::METALLB_VERSION);
        assert!(!v.commit.is_empty());
        assert_eq!(LONG_VERSION, format!("{} ({})", v.version, v.commit));
    }
}
