//! A pure worker (no control-plane role): the kubelet's files, a `kubelet.conf` with a client
//! certificate kubeha issued (no bootstrap token, no CSR round trip), the cluster CA the kubelet
//! verifies clients with, and crictl's config. No CA key, no other PKI.

use kubeha_pki::{CaId, LeafKind};
use kubeha_spec::Node;

use crate::{Ctx, HostFile, Result, common, file::cert_only, kubeconfig, kubelet};

/// Everything a pure worker needs; a control plane that also works gets `control_plane::files`.
pub fn files(cx: Ctx<'_>, node: &Node) -> Result<Vec<HostFile>> {
    let mut files = kubelet::files(cx, node)?;
    files.push(kubeconfig::node_file(cx, node, LeafKind::KubeletConf)?);
    files.push(cert_only(CaId::Kubernetes.base(), cx.ca(CaId::Kubernetes)?));
    files.push(common::crictl_file(cx));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_plane::fixtures::{external, stacked};

    #[test]
    fn a_worker_gets_kubelet_files_kubeconfig_ca_cert_and_crictl() {
        let f = external();
        let files = files(f.cx(), f.node("wn-2")).expect("files");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                kubelet::CONFIG_PATH,
                kubelet::FLAGS_PATH,
                kubelet::DROP_IN_PATH,
                kubelet::INSTANCE_CONFIG_PATH,
                "/etc/kubernetes/kubelet.conf",
                "/etc/kubernetes/pki/ca.crt",
                common::CRICTL_PATH,
            ]
        );
        let conf = &files[4];
        assert_eq!(conf.mode, 0o600);
        assert!(
            conf.content
                .contains("    server: https://10.10.0.100:6443\n")
        );
        assert!(conf.content.contains("- name: system:node:wn-2\n"));
        assert_eq!(
            files[5].content,
            f.cx().ca(CaId::Kubernetes).expect("ca").cert_pem
        );
    }

    #[test]
    fn worker_kubelet_conf_uses_the_endpoint_at_every_version() {
        let f = stacked();
        for minor in 31..=34 {
            let spec = f.at_minor(minor);
            let files = files(Ctx::new(&spec, &f.materials), f.node("node-1")).expect("files");
            let conf = files
                .iter()
                .find(|x| x.path == "/etc/kubernetes/kubelet.conf")
                .expect("kubelet.conf");
            assert!(
                conf.content.contains("server: https://10.20.0.100:6443\n"),
                "v1.{minor}"
            );
        }
    }
}
