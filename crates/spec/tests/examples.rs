//! The shipped examples load without errors.
use std::path::Path;

#[test]
fn shipped_examples_load() {
    for f in ["external-etcd.yaml", "stacked.yaml", "lab.yaml"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(f);
        let l = kubeha_spec::load(&p).unwrap_or_else(|e| panic!("{f}: {e:?}"));
        assert!(l.warnings.is_empty(), "{f}: {:?}", l.warnings);
    }
}

/// The lab runs the local etcd proxy as a systemd unit (it has no kubelet) and forwards etcd
/// through the VIP (it has no API server); the other examples keep the defaults.
#[test]
fn lab_example_uses_the_systemd_proxy_and_the_etcd_frontend() {
    use kubeha_spec::EtcdProxyDeployment;
    let load = |f: &str| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(f);
        kubeha_spec::load(&p)
            .unwrap_or_else(|e| panic!("{f}: {e:?}"))
            .spec
    };
    let lab = load("lab.yaml");
    assert_eq!(lab.etcd.local_proxy, EtcdProxyDeployment::Systemd);
    assert_eq!(
        lab.load_balancer.as_ref().and_then(|l| l.etcd_port),
        Some(2379)
    );
    for f in ["external-etcd.yaml", "stacked.yaml"] {
        let s = load(f);
        assert_eq!(s.etcd.local_proxy, EtcdProxyDeployment::StaticPod, "{f}");
        assert_eq!(
            s.load_balancer.as_ref().and_then(|l| l.etcd_port),
            None,
            "{f}"
        );
    }
}
