//! `kubeha up`'s Kubernetes sequence with the real rendered bundles against the fake API
//! server; a thread stands in for the controllers (CRDs Established, Deployments available,
//! Nodes Ready).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kubeha_kube::bringup::{BringUp, StepReport, Timeouts, bring_up};
use kubeha_kube::fake::FakeApi;
use kubeha_kube::{Edge, EdgeOptions};
use kubeha_render::{Ctx, Stage, bootstrap, cluster_bundles};
use serde_json::json;

fn spec() -> kubeha_spec::Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/external-etcd.yaml");
    let mut spec = kubeha_spec::load(&path).expect("example loads").spec;
    spec.certificates.key_algorithm = kubeha_spec::KeyAlgorithm::EcdsaP256;
    spec
}

fn edge(fake: &FakeApi) -> Edge {
    Edge::from_kubeconfig(
        &fake.kubeconfig(),
        EdgeOptions {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            conflict_attempts: 5,
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(40),
        },
    )
    .expect("kubeconfig loads")
}

/// Plays the controllers until dropped.
struct Controllers {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Controllers {
    fn start(fake: Arc<FakeApi>, nodes: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            for n in &nodes {
                fake.insert(json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}},
                    "spec": {},
                    "status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
            }
            // Bounded: at most 30 s of simulated controllers.
            for _ in 0..1500 {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                fake.update_all(
                    "apiextensions.k8s.io/v1",
                    "customresourcedefinitions",
                    |o| {
                        o["status"] =
                            json!({"conditions": [{"type": "Established", "status": "True"}]});
                    },
                );
                fake.update_all("apps/v1", "deployments", |o| {
                    let r = o["spec"]["replicas"].as_i64().unwrap_or(1);
                    let generation = o["metadata"]["generation"].as_i64().unwrap_or(1);
                    o["status"] = json!({"observedGeneration": generation, "replicas": r,
                        "updatedReplicas": r, "readyReplicas": r, "availableReplicas": r,
                        "conditions": [{"type": "Available", "status": "True"}]});
                });
                // Nodes turn Ready once a CNI DaemonSet exists.
                let cni = fake
                    .get(
                        "apps/v1",
                        "daemonsets",
                        Some("calico-system"),
                        "calico-node",
                    )
                    .is_some()
                    || fake
                        .get("operator.tigera.io/v1", "installations", None, "default")
                        .is_some();
                if cni {
                    fake.update_all("v1", "nodes", |o| {
                        o["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Controllers {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn bring_up_applies_everything_in_order_behind_its_waits_and_a_rerun_writes_nothing() {
    let spec = spec();
    let materials =
        kubeha_pki::issue_in_memory(&spec, time::OffsetDateTime::now_utc()).expect("pki");
    let cx = Ctx::new(&spec, &materials);
    let bundles = cluster_bundles(cx).expect("bundles");
    let markings = bootstrap::markings(&spec);
    let nodes: Vec<(String, Vec<std::net::IpAddr>)> = spec
        .nodes
        .iter()
        .filter(|n| n.has(kubeha_spec::Role::ControlPlane) || n.has(kubeha_spec::Role::Worker))
        .map(|n| (n.name.clone(), vec![n.address]))
        .collect();
    let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();

    let fake = Arc::new(FakeApi::start());
    let _controllers = Controllers::start(fake.clone(), names.clone());
    let e = edge(&fake);
    let b = BringUp {
        bundles: &bundles,
        markings: &markings,
        nodes,
        timeouts: Timeouts {
            livez: Duration::from_secs(5),
            crd: Duration::from_secs(10),
            nodes_ready: Duration::from_secs(20),
            addons: Duration::from_secs(10),
        },
    };
    let seen = std::sync::Mutex::new(Vec::<String>::new());
    let progress = |r: &StepReport| seen.lock().expect("lock").push(r.step.clone());
    let steps = bring_up(&e, &e, &b, &progress).expect("bring-up succeeds");

    // Steps in kubeadm's order, MetalLB last.
    let order: Vec<&str> = steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        order,
        [
            "livez",
            "bootstrap",
            "kube-proxy",
            "coredns",
            "calico",
            "nodes",
            "node-marking",
            "coredns",
            "metallb"
        ]
    );
    assert_eq!(
        *seen.lock().expect("lock"),
        order,
        "progress saw every step"
    );

    // Every object of every bundle was created, in the bundle's order.
    let posts: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && !r.path.ends_with("/approval"))
        .map(|r| r.path.clone())
        .collect();
    let total: usize = bundles.iter().map(|b| b.manifests.len()).sum();
    assert_eq!(posts.len(), total, "one create per object: {posts:#?}");
    for bundle in &bundles {
        for m in &bundle.manifests {
            let stored = fake.get(&m.api_version, &m.plural, m.namespace.as_deref(), &m.name);
            assert!(stored.is_some(), "{} was created", m.id());
        }
    }
    // The Installation was created only after its CRD was read back Established.
    let lines: Vec<String> = fake.requests().iter().map(|r| r.line()).collect();
    let crd_get = lines
        .iter()
        .position(|l| {
            l.starts_with("GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/installations.operator.tigera.io")
        })
        .expect("the CRD was waited for");
    let install_post = lines
        .iter()
        .position(|l| l.starts_with("POST /apis/operator.tigera.io/v1/installations"))
        .expect("installation created");
    assert!(crd_get < install_post);
    // The bootstrap stage precedes every add-on; MetalLB's pool comes after CoreDNS is available.
    let first_addon = lines
        .iter()
        .position(|l| l.contains("/daemonsets"))
        .expect("kube-proxy applied");
    let cluster_info = lines
        .iter()
        .position(|l| l.starts_with("POST /api/v1/namespaces/kube-public/configmaps"))
        .expect("cluster-info created");
    assert!(cluster_info < first_addon);
    // Control planes are tainted, the spec's labels placed.
    let cp = fake
        .get("v1", "nodes", None, "cp-1")
        .expect("cp-1 registered");
    assert_eq!(
        cp["spec"]["taints"][0]["key"],
        "node-role.kubernetes.io/control-plane"
    );
    assert_eq!(
        cp["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
        ""
    );
    let pool = fake
        .get(
            "metallb.io/v1beta1",
            "ipaddresspools",
            Some("metallb-system"),
            "kubeha",
        )
        .expect("pool created");
    assert_eq!(
        pool["spec"]["addresses"][0],
        spec.metallb.as_ref().expect("metallb").addresses[0]
    );

    // A second run writes nothing.
    fake.clear_requests();
    let again = bring_up(&e, &e, &b, &|_: &StepReport| {}).expect("re-run succeeds");
    let writes: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| r.line())
        .collect();
    assert!(writes.is_empty(), "a re-run writes nothing: {writes:#?}");
    assert!(again.iter().all(|s| s.created == 0 && s.updated == 0));
    assert!(bundles.iter().any(|b| b.stage == Stage::LoadBalancer));
}

#[test]
fn bring_up_gives_up_when_the_api_server_never_answers() {
    let fake = FakeApi::start();
    fake.set_livez(false);
    let e = edge(&fake);
    let b = BringUp {
        bundles: &[],
        markings: &[],
        nodes: vec![],
        timeouts: Timeouts {
            livez: Duration::from_millis(600),
            ..Timeouts::default()
        },
    };
    let err = bring_up(&e, &e, &b, &|_: &StepReport| {}).expect_err("never live");
    let text = err.to_string();
    assert!(text.contains("/livez"), "{text}");
    assert!(
        fake.requests().iter().all(|r| r.method == "GET"),
        "nothing is written before the API server is live"
    );
}
