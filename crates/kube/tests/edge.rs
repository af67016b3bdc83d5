//! The API edge against the in-process fake API server.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Taint};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubeha_kube::fake::FakeApi;
use kubeha_kube::{
    APPLIED_HASH_ANNOTATION, DrainOptions, Edge, EdgeOptions, Error, NodeCidrOutcome, NodeMarking,
    Outcome, Verdict, desired_hash,
};
use kubeha_render::Manifest;
use serde_json::{Value, json};

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
    .expect("kubeconfig of the fake server loads")
}

fn lines(fake: &FakeApi) -> Vec<String> {
    fake.requests().iter().map(|r| r.line()).collect()
}

fn configmap(ns: &str, name: &str, data: &[(&str, &str)]) -> Manifest {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    Manifest::typed(&cm).expect("configmap manifest")
}

fn bundle() -> Vec<Manifest> {
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some("kubeadm:get-nodes".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["nodes".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
        ..Default::default()
    };
    let installation = Manifest::custom(
        "installations",
        json!({"apiVersion": "operator.tigera.io/v1", "kind": "Installation",
            "metadata": {"name": "default"},
            "spec": {"calicoNetwork": {"ipPools": [{"cidr": "10.244.0.0/16"}]}}}),
    )
    .expect("installation");
    vec![
        Manifest::typed(&role).expect("role manifest"),
        configmap(
            "kube-system",
            "kubeadm-config",
            &[("ClusterConfiguration", "a: 1\n")],
        ),
        installation,
    ]
}

#[test]
fn apply_creates_in_order_then_is_idempotent_then_updates_once() {
    let fake = FakeApi::start();
    let edge = edge(&fake);
    let manifests = bundle();

    let applied = edge.apply(&manifests).expect("apply on an empty server");
    assert!(
        applied.iter().all(|a| a.outcome == Outcome::Created),
        "{applied:?}"
    );
    assert_eq!(
        applied.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        [
            "ClusterRole/kubeadm:get-nodes",
            "ConfigMap/kube-system/kubeadm-config",
            "Installation/default"
        ]
    );
    assert_eq!(
        lines(&fake),
        [
            "GET /apis/rbac.authorization.k8s.io/v1/clusterroles/kubeadm:get-nodes",
            "POST /apis/rbac.authorization.k8s.io/v1/clusterroles",
            "GET /api/v1/namespaces/kube-system/configmaps/kubeadm-config",
            "POST /api/v1/namespaces/kube-system/configmaps",
            "GET /apis/operator.tigera.io/v1/installations/default",
            "POST /apis/operator.tigera.io/v1/installations",
        ]
    );
    let stored = fake
        .get("v1", "configmaps", Some("kube-system"), "kubeadm-config")
        .expect("configmap stored");
    assert_eq!(
        stored["metadata"]["annotations"][APPLIED_HASH_ANNOTATION],
        json!(desired_hash(&manifests[1].object))
    );

    // Again: only reads.
    fake.clear_requests();
    let applied = edge.apply(&manifests).expect("second apply");
    assert!(
        applied.iter().all(|a| a.outcome == Outcome::Unchanged),
        "{applied:?}"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|r| r.method == "GET"),
        "{:?}",
        lines(&fake)
    );

    // One object changed: one PUT carrying the live resourceVersion, others' labels kept.
    fake.update(
        "v1",
        "configmaps",
        Some("kube-system"),
        "kubeadm-config",
        |o| {
            o["metadata"]["labels"] = json!({"someone": "else"});
        },
    );
    let live_rv = fake
        .get("v1", "configmaps", Some("kube-system"), "kubeadm-config")
        .expect("stored")["metadata"]["resourceVersion"]
        .clone();
    let mut changed = bundle();
    changed[1] = configmap(
        "kube-system",
        "kubeadm-config",
        &[("ClusterConfiguration", "a: 2\n")],
    );
    fake.clear_requests();
    let applied = edge.apply(&changed).expect("apply a change");
    assert_eq!(
        applied.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [Outcome::Unchanged, Outcome::Updated, Outcome::Unchanged]
    );
    let writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        writes[0].line(),
        "PUT /api/v1/namespaces/kube-system/configmaps/kubeadm-config"
    );
    assert_eq!(writes[0].json()["metadata"]["resourceVersion"], live_rv);
    let stored = fake
        .get("v1", "configmaps", Some("kube-system"), "kubeadm-config")
        .expect("stored");
    assert_eq!(stored["data"]["ClusterConfiguration"], "a: 2\n");
    assert_eq!(stored["metadata"]["labels"]["someone"], "else");
    assert_eq!(
        stored["metadata"]["annotations"][APPLIED_HASH_ANNOTATION],
        json!(desired_hash(&changed[1].object))
    );
}

#[test]
fn conflicts_are_retried_then_given_up() {
    let fake = FakeApi::start();
    let edge = edge(&fake);
    edge.apply(&[configmap("default", "c", &[("k", "1")])])
        .expect("create");

    fake.inject_conflicts(2);
    fake.clear_requests();
    let applied = edge
        .apply(&[configmap("default", "c", &[("k", "2")])])
        .expect("retried through two conflicts");
    assert_eq!(applied[0].outcome, Outcome::Updated);
    let path = "/api/v1/namespaces/default/configmaps/c";
    let expected: Vec<String> = ["GET", "PUT", "GET", "PUT", "GET", "PUT"]
        .iter()
        .map(|m| format!("{m} {path}"))
        .collect();
    assert_eq!(lines(&fake), expected);

    fake.inject_conflicts(100);
    fake.clear_requests();
    let err = edge
        .apply(&[configmap("default", "c", &[("k", "3")])])
        .expect_err("conflicts forever");
    assert!(
        matches!(err, Error::Conflict { attempts: 5, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("ConfigMap/default/c") && msg.contains("5 attempts"),
        "{msg}"
    );
    let puts = fake.requests().iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, 5);
    let stored = fake
        .get("v1", "configmaps", Some("default"), "c")
        .expect("stored");
    assert_eq!(
        stored["data"]["k"], "2",
        "the refused update was not stored"
    );
}

fn node(name: &str, ready: bool, extra: Value) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "spec": {}, "status": {"conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    if let (Some(n), Some(extra)) = (n.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            n.insert(k.clone(), v.clone());
        }
    }
    n
}

#[test]
fn mark_node_keeps_taints_and_adds_control_plane_once() {
    let fake = FakeApi::start();
    let edge = edge(&fake);
    fake.insert(node(
        "cp-1",
        true,
        json!({"metadata": {"name": "cp-1", "labels": {"kubernetes.io/hostname": "cp-1"}},
            "spec": {"taints": [{"key": "example.com/dedicated", "value": "db", "effect": "NoSchedule"}]}}),
    ));
    let marking = NodeMarking {
        node: "cp-1".into(),
        labels: BTreeMap::from([
            (
                "node-role.kubernetes.io/control-plane".into(),
                String::new(),
            ),
            (
                "node.kubernetes.io/exclude-from-external-load-balancers".into(),
                String::new(),
            ),
        ]),
        taints: vec![Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        }],
    };
    assert!(edge.mark_node(&marking).expect("mark"));
    assert!(
        !edge.mark_node(&marking).expect("mark again"),
        "nothing left to change"
    );
    assert_eq!(
        lines(&fake),
        [
            "GET /api/v1/nodes/cp-1",
            "PATCH /api/v1/nodes/cp-1",
            "GET /api/v1/nodes/cp-1"
        ]
    );
    let n = fake.get("v1", "nodes", None, "cp-1").expect("node");
    let taints: Vec<String> = n["spec"]["taints"]
        .as_array()
        .expect("taints")
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        taints,
        [
            "example.com/dedicated:NoSchedule",
            "node-role.kubernetes.io/control-plane:NoSchedule"
        ]
    );
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "cp-1");
    assert_eq!(
        n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
        ""
    );
}

#[test]
fn wait_nodes_ready_reports_at_the_deadline() {
    let fake = FakeApi::start();
    let edge = edge(&fake);
    fake.insert(node("cp-1", true, json!({})));
    fake.insert(node("cp-2", false, json!({})));
    let names: Vec<String> = ["cp-1", "cp-2", "cp-3"].map(String::from).to_vec();
    // Returning at all is the check that the wait is bounded; nextest ends a hung test.
    let err = edge
        .wait_nodes_ready(&names, Duration::from_millis(300))
        .expect_err("cp-2 is NotReady, cp-3 missing");
    let Error::NodesNotReady { report, .. } = &err else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(report.ready, ["cp-1"]);
    assert_eq!(report.not_ready, ["cp-2"]);
    assert_eq!(report.missing, ["cp-3"]);
    assert!(err.to_string().contains("NotReady: cp-2"), "{err}");
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.line() == "GET /api/v1/nodes")
    );

    fake.update("v1", "nodes", None, "cp-2", |n| {
        n["status"]["conditions"][0]["status"] = json!("True");
    });
    let ok = edge
        .wait_nodes_ready(&names[..2], Duration::from_secs(2))
        .expect("both Ready");
    assert_eq!(ok.ready, ["cp-1", "cp-2"]);
}

fn pod(ns: &str, name: &str, node: &str, extra: Value) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running"}});
    merge(&mut p, &extra);
    p
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn owned_by(kind: &str) -> Value {
    json!({"metadata": {"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": kind, "name": "owner", "uid": "u", "controller": true}]}})
}

fn drain_fixture(fake: &FakeApi) {
    fake.insert(node("w-1", true, json!({})));
    fake.insert(pod(
        "kube-system",
        "kube-apiserver-w-1",
        "w-1",
        json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "abc"}}}),
    ));
    fake.insert(pod(
        "kube-system",
        "kube-proxy-abcde",
        "w-1",
        owned_by("DaemonSet"),
    ));
    let mut web = pod("default", "web-1", "w-1", owned_by("ReplicaSet"));
    merge(
        &mut web,
        &json!({"spec": {"volumes": [{"name": "tmp", "emptyDir": {}}]}}),
    );
    fake.insert(web);
    fake.insert(pod("default", "web-2", "w-2", owned_by("ReplicaSet")));
}

#[test]
fn drain_skips_mirror_and_daemonset_pods_and_retries_pdb_refusals() {
    let fake = FakeApi::start();
    let edge = edge(&fake);
    drain_fixture(&fake);
    fake.refuse_evictions(2, "web-pdb");
    let report = edge
        .drain(
            "w-1",
            &DrainOptions {
                ignore_daemonsets: true,
                delete_emptydir_data: true,
                force: false,
                timeout: Duration::from_secs(5),
                grace_period: Some(Duration::from_secs(30)),
            },
        )
        .expect("drain succeeds once the budget allows");
    assert_eq!(report.evicted, ["default/web-1"]);
    let skipped: Vec<&str> = report.skipped.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        skipped,
        [
            "kube-system/kube-apiserver-w-1",
            "kube-system/kube-proxy-abcde"
        ]
    );
    let eviction = "POST /api/v1/namespaces/default/pods/web-1/eviction";
    assert_eq!(
        lines(&fake),
        [
            "PATCH /api/v1/nodes/w-1",
            "GET /api/v1/pods",
            eviction,
            eviction,
            eviction,
            "GET /api/v1/namespaces/default/pods/web-1"
        ]
    );
    let requests = fake.requests();
    assert_eq!(requests[0].json(), json!({"spec": {"unschedulable": true}}));
    assert!(
        requests[1]
            .query
            .contains("fieldSelector=spec.nodeName%3Dw-1"),
        "{}",
        requests[1].query
    );
    let body = requests[2].json();
    assert_eq!(
        (body["apiVersion"].as_str(), body["kind"].as_str()),
        (Some("policy/v1"), Some("Eviction"))
    );
    assert_eq!(body["deleteOptions"]["gracePeriodSeconds"], 30);
    assert!(fake.get("v1", "pods", Some("default"), "web-1").is_none());
    assert!(
        fake.get("v1", "pods", Some("default"), "web-2").is_some(),
        "other node untouched"
    );
    assert!(
        fake.get("v1", "pods", Some("kube-system"), "kube-proxy-abcde")
            .is_some()
    );
    assert_eq!(
        fake.get("v1", "nodes", None, "w-1").expect("node")["spec"]["unschedulable"],
        true
    );
}

#[test]
fn drain_refuses_without_flags_and_names_the_blocked_pod() {
    let fake = FakeApi::start();
    let edge = edge(&fake);
    drain_fixture(&fake);
    let strict = DrainOptions {
        ignore_daemonsets: false,
        delete_emptydir_data: false,
        force: false,
        timeout: Duration::from_secs(2),
        grace_period: None,
    };
    let err = edge.drain("w-1", &strict).expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("kube-system/kube-proxy-abcde is managed by a DaemonSet"),
        "{msg}"
    );
    assert!(msg.contains("default/web-1 uses emptyDir"), "{msg}");
    assert!(
        !msg.contains("kube-apiserver-w-1"),
        "mirror pods are never a reason: {msg}"
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| !r.path.ends_with("/eviction")),
        "nothing evicted when refusing"
    );

    fake.refuse_evictions(10_000, "web-pdb");
    let err = edge
        .drain(
            "w-1",
            &DrainOptions {
                timeout: Duration::from_millis(300),
                ..DrainOptions::default()
            },
        )
        .expect_err("the budget never allows it");
    let Error::EvictionBlocked { pod, pdb, .. } = &err else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!((pod.as_str(), pdb.as_str()), ("default/web-1", "web-pdb"));
    assert!(err.to_string().contains("default/web-1"));
    assert!(fake.get("v1", "pods", Some("default"), "web-1").is_some());
}

#[test]
fn delete_node_tolerates_absence() {
    let fake = FakeApi::start();
    let edge = edge(&fake);
    fake.insert(node("w-9", true, json!({})));
    edge.delete_node("w-9").expect("delete");
    edge.delete_node("w-9").expect("already gone is fine");
    assert_eq!(
        lines(&fake),
        ["DELETE /api/v1/nodes/w-9", "DELETE /api/v1/nodes/w-9"]
    );
    assert!(fake.get("v1", "nodes", None, "w-9").is_none());
}

fn serving_csr(cn: &str, dns: &[&str], ips: &[IpAddr]) -> String {
    let mut params =
        rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    for ip in ips {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "system:nodes");
    dn.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().expect("key");
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn csr_object(name: &str, user: &str, signer: &str, pem: &str) -> Value {
    use base64::Engine;
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer, "username": user,
            "usages": ["digital signature", "server auth"]}})
}

#[test]
fn serving_csrs_of_known_nodes_only_are_approved() {
    let fake = FakeApi::start();
    let edge = edge(&fake);
    let cp1: IpAddr = "198.18.0.11".parse().expect("ip");
    let cp2: IpAddr = "198.18.0.12".parse().expect("ip");
    let serving = "kubernetes.io/kubelet-serving";
    fake.insert(csr_object(
        "csr-good",
        "system:node:cp-1",
        serving,
        &serving_csr("system:node:cp-1", &["cp-1"], &[cp1]),
    ));
    fake.insert(csr_object(
        "csr-wrong-san",
        "system:node:cp-2",
        serving,
        &serving_csr(
            "system:node:cp-2",
            &["cp-2"],
            &[cp2, "198.18.0.99".parse().expect("ip")],
        ),
    ));
    fake.insert(csr_object(
        "csr-unknown",
        "system:node:cp-9",
        serving,
        &serving_csr("system:node:cp-9", &["cp-9"], &[]),
    ));
    fake.insert(csr_object(
        "csr-cn-mismatch",
        "system:node:cp-2",
        serving,
        &serving_csr("system:node:cp-1", &["cp-1"], &[cp1]),
    ));
    fake.insert(csr_object(
        "csr-client",
        "system:node:cp-1",
        "kubernetes.io/kube-apiserver-client-kubelet",
        &serving_csr("system:node:cp-1", &["cp-1"], &[cp1]),
    ));
    let known = [
        ("cp-1".to_string(), vec![cp1]),
        ("cp-2".to_string(), vec![cp2]),
    ];
    let report = edge.approve_serving_csrs(&known).expect("approve");
    assert_eq!(
        report.approved,
        [("csr-good".to_string(), "cp-1".to_string())]
    );
    let pending: BTreeMap<&str, &str> = report
        .left_pending
        .iter()
        .map(|(n, w)| (n.as_str(), w.as_str()))
        .collect();
    assert_eq!(pending.len(), 3, "{pending:?}");
    assert!(
        pending["csr-wrong-san"].contains("198.18.0.99"),
        "{pending:?}"
    );
    assert!(pending["csr-unknown"].contains("cp-9"), "{pending:?}");
    assert!(pending["csr-cn-mismatch"].contains("CN"), "{pending:?}");
    assert_eq!(
        lines(&fake),
        [
            "GET /apis/certificates.k8s.io/v1/certificatesigningrequests",
            "PUT /apis/certificates.k8s.io/v1/certificatesigningrequests/csr-good/approval"
        ]
    );
    let good = fake
        .get(
            "certificates.k8s.io/v1",
            "certificatesigningrequests",
            None,
            "csr-good",
        )
        .expect("csr");
    assert_eq!(good["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(good["status"]["conditions"][0]["status"], "True");
    for name in ["csr-wrong-san", "csr-unknown", "csr-client"] {
        let c = fake
            .get(
                "certificates.k8s.io/v1",
                "certificatesigningrequests",
                None,
                name,
            )
            .expect("csr");
        assert!(c["status"].is_null(), "{name} must stay pending");
    }
}

fn pod_cidr_fixture(fake: &FakeApi) {
    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {"ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  dnsDomain: cluster.local\n  podSubnet: 10.244.0.0/16\n  serviceSubnet: 10.96.0.0/12\n"}}));
    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nbindAddress: 0.0.0.0\nclusterCIDR: 192.168.0.0/16\nmode: iptables\n"}}));
    fake.insert(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
            "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}}, "spec": {"containers": []}}}}));
    fake.insert(pod(
        "kube-system",
        "kube-controller-manager-cp-1",
        "cp-1",
        json!({"metadata": {"labels": {"component": "kube-controller-manager"}},
            "spec": {"containers": [{"name": "kube-controller-manager", "image": "x",
                "command": ["kube-controller-manager", "--allocate-node-cidrs=true",
                    "--cluster-cidr=10.244.0.0/16"]}]}}),
    ));
    fake.insert(node(
        "cp-1",
        true,
        json!({"spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}}),
    ));
    fake.insert(node(
        "cp-2",
        true,
        json!({"spec": {"podCIDR": "192.168.1.0/24", "podCIDRs": ["192.168.1.0/24"]}}),
    ));
    fake.insert(node("w-1", true, json!({})));
    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
        "data": {"net-conf.json": "{\n  \"Network\": \"10.244.0.0/16\",\n  \"Backend\": {\"Type\": \"vxlan\"}\n}\n"}}));
}

#[test]
fn pod_cidr_report_finds_disagreements_and_fixes_apply() {
    let fake = FakeApi::start();
    let edge = edge(&fake);
    pod_cidr_fixture(&fake);
    let expected = "10.244.0.0/16".parse().expect("cidr");
    let report = edge.pod_cidr_report(expected).expect("report");
    let by_source: BTreeMap<&str, (Option<&str>, Verdict)> = report
        .findings
        .iter()
        .map(|f| (f.source.as_str(), (f.value.as_deref(), f.verdict)))
        .collect();
    assert_eq!(
        by_source["ConfigMap kube-system/kube-proxy config.conf clusterCIDR"],
        (Some("192.168.0.0/16"), Verdict::Disagrees)
    );
    assert_eq!(
        by_source["ConfigMap kube-system/kubeadm-config ClusterConfiguration networking.podSubnet"],
        (Some("10.244.0.0/16"), Verdict::Agrees)
    );
    assert_eq!(
        by_source["Pod kube-system/kube-controller-manager-cp-1 --cluster-cidr"],
        (Some("10.244.0.0/16"), Verdict::Agrees)
    );
    assert_eq!(
        by_source["Node cp-1 spec.podCIDRs"],
        (Some("10.244.0.0/24"), Verdict::Agrees)
    );
    assert_eq!(
        by_source["Node cp-2 spec.podCIDRs"],
        (Some("192.168.1.0/24"), Verdict::Disagrees)
    );
    assert_eq!(
        by_source["Node w-1 spec.podCIDRs"],
        (None, Verdict::NotFound)
    );
    assert_eq!(
        by_source["Installation default spec.calicoNetwork.ipPools"],
        (None, Verdict::NotFound)
    );
    assert_eq!(
        by_source["ConfigMap kube-flannel/kube-flannel-cfg net-conf.json Network"],
        (Some("10.244.0.0/16"), Verdict::Agrees)
    );
    assert!(!report.consistent());
    assert_eq!(report.problems().count(), 2);
    let kcm = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/namespaces/kube-system/pods")
        .expect("kcm pods listed");
    assert!(
        kcm.query
            .contains("labelSelector=component%3Dkube-controller-manager"),
        "{}",
        kcm.query
    );

    // The fixes.
    fake.clear_requests();
    assert!(
        edge.set_kube_proxy_cluster_cidr(expected)
            .expect("fix kube-proxy")
    );
    assert_eq!(
        lines(&fake),
        [
            "GET /api/v1/namespaces/kube-system/configmaps/kube-proxy",
            "PATCH /api/v1/namespaces/kube-system/configmaps/kube-proxy",
            "PATCH /apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy",
        ]
    );
    let ds = fake
        .get("apps/v1", "daemonsets", Some("kube-system"), "kube-proxy")
        .expect("ds");
    assert!(
        ds["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')),
        "{ds}"
    );
    assert!(
        !edge
            .set_kubeadm_pod_subnet(expected)
            .expect("already right")
    );
    assert!(
        !edge
            .set_kube_proxy_cluster_cidr(expected)
            .expect("now right")
    );
    let report = edge.pod_cidr_report(expected).expect("report");
    let problems: Vec<&str> = report.problems().map(|f| f.source.as_str()).collect();
    assert_eq!(problems, ["Node cp-2 spec.podCIDRs"]);

    let err = edge
        .set_node_pod_cidr("cp-2", "10.244.1.0/24".parse().expect("cidr"))
        .expect_err("podCIDR is set once");
    assert!(matches!(err, Error::PodCidrImmutable { .. }), "{err:?}");
    assert!(err.to_string().contains("delete its Node object"), "{err}");
    assert_eq!(
        edge.set_node_pod_cidr("w-1", "10.244.2.0/24".parse().expect("cidr"))
            .expect("empty podCIDR can be set"),
        NodeCidrOutcome::Set
    );
    let w1 = fake.get("v1", "nodes", None, "w-1").expect("node");
    assert_eq!(w1["spec"]["podCIDRs"], json!(["10.244.2.0/24"]));
}

#[test]
fn kubeadm_pod_subnet_is_rewritten_in_place() {
    let fake = FakeApi::start();
    let edge = edge(&fake);
    pod_cidr_fixture(&fake);
    let other = "10.32.0.0/12".parse().expect("cidr");
    assert!(edge.set_kubeadm_pod_subnet(other).expect("set"));
    let cm = fake
        .get("v1", "configmaps", Some("kube-system"), "kubeadm-config")
        .expect("cm");
    let text = cm["data"]["ClusterConfiguration"].as_str().expect("text");
    assert!(text.contains("podSubnet: 10.32.0.0/12"), "{text}");
    assert!(
        text.contains("serviceSubnet: 10.96.0.0/12"),
        "other fields kept: {text}"
    );
    assert!(text.contains("kind: ClusterConfiguration"), "{text}");
}

#[test]
fn livez_and_waits() {
    let fake = FakeApi::start();
    let edge = edge(&fake);
    assert!(edge.livez().expect("livez"));
    fake.set_livez(false);
    assert!(!edge.livez().expect("livez answers 500"));
    assert_eq!(lines(&fake), ["GET /livez", "GET /livez"]);

    fake.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system"},
        "spec": {"replicas": 2, "selector": {}, "template": {}},
        "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}}));
    let err = edge
        .wait_deployment_available("kube-system", "coredns", Duration::from_millis(200))
        .expect_err("one replica short");
    assert!(
        err.to_string()
            .contains("1 of 2 updated replicas available"),
        "{err}"
    );
    fake.update(
        "apps/v1",
        "deployments",
        Some("kube-system"),
        "coredns",
        |d| {
            d["status"]["availableReplicas"] = json!(2);
        },
    );
    edge.wait_deployment_available("kube-system", "coredns", Duration::from_secs(2))
        .expect("available");

    let crd = "installations.operator.tigera.io";
    let err = edge
        .wait_crd_established(crd, Duration::from_millis(200))
        .expect_err("absent");
    assert!(err.to_string().contains("does not exist"), "{err}");
    fake.insert(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd},
        "spec": {"group": "operator.tigera.io", "names": {"kind": "Installation", "plural": "installations"},
            "scope": "Cluster", "versions": []},
        "status": {"conditions": [{"type": "Established", "status": "True"}]}}));
    edge.wait_crd_established(crd, Duration::from_secs(2))
        .expect("established");

    drop(fake);
    let err = edge.livez().expect_err("server gone");
    assert!(
        matches!(err, Error::Transport { .. } | Error::RequestTimeout { .. }),
        "{err:?}"
    );
}
