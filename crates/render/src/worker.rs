//! A pure worker (no control-plane role): the kubelet's files, a `kubelet.conf` with a client
//! certificate kubeha issued (no bootstrap token, no CSR round trip), the cluster CA the kubelet
//! verifies clients with, and crictl's config. No CA key, no other PKI.

use kubeha_pki::{CaId, LeafKind};
use kubeha_spec::{Node, WorkerJoin};

use crate::{Ctx, HostFile, RenderError, Result, common, file::cert_only, kubeconfig, kubelet};

/// Everything a pure worker needs; a control plane that also works gets `control_plane::files`.
///
/// With `workerJoin: tlsBootstrap` the worker gets `bootstrap-kubelet.conf` (the cluster's
/// bootstrap token) instead of a `kubelet.conf` with an issued certificate.
pub fn files(cx: Ctx<'_>, node: &Node) -> Result<Vec<HostFile>> {
    let mut files = kubelet::files(cx, node)?;
    match cx.spec.worker_join {
        WorkerJoin::Certificate => {
            files.push(kubeconfig::node_file(cx, node, LeafKind::KubeletConf)?)
        }
        WorkerJoin::TlsBootstrap => {
            let token = cx
                .materials
                .secrets
                .bootstrap_token
                .as_ref()
                .ok_or_else(|| RenderError::Serialize {
                    what: format!("bootstrap-kubelet.conf for {}", node.name),
                    source: "the state dir holds no bootstrap token".into(),
                })?;
            files.push(kubeconfig::bootstrap_kubelet_conf(cx, &token.token())?);
        }
    }
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
    fn a_tls_bootstrap_worker_gets_the_token_not_a_certificate() {
        let f = external();
        let mut spec = f.spec.clone();
        spec.worker_join = WorkerJoin::TlsBootstrap;
        let cx = Ctx::new(&spec, &f.materials);
        let files = files(cx, f.node("wn-2")).expect("files");
        assert!(
            !files
                .iter()
                .any(|x| x.path == "/etc/kubernetes/kubelet.conf")
        );
        let conf = files
            .iter()
            .find(|x| x.path == kubeconfig::BOOTSTRAP_KUBELET_CONF)
            .expect("bootstrap-kubelet.conf");
        assert_eq!(conf.mode, 0o600);
        let token = f
            .materials
            .secrets
            .bootstrap_token
            .as_ref()
            .expect("fixture has a token")
            .token();
        // kubectl reads it: cluster `kubernetes` whatever the cluster's name, token user.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bootstrap-kubelet.conf");
        std::fs::write(&path, &conf.content).expect("write");
        let out = std::process::Command::new("kubectl")
            .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
            .arg(&path)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v["clusters"][0]["name"], "kubernetes");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://10.10.0.100:6443"
        );
        assert_eq!(v["users"][0]["name"], "tls-bootstrap-token-user");
        assert_eq!(v["users"][0]["user"]["token"], token.as_str());
        assert_eq!(v["current-context"], "tls-bootstrap-token-user@kubernetes");
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
