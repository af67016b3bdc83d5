//! `kubeha images`, `kubeha check`, `kubeha fix pod-cidr` and `kubeha render`'s `_cluster/`
//! output. The API commands run against the in-process fake API server on 127.0.0.1 (no real
//! Kubernetes API server exists on this machine).

use std::{fs, path::Path, process::Output};

use kubeha_kube::fake::FakeApi;
use serde_json::{Value, json};

use crate::harness::Sandbox;

/// `kubeha ARGS FILE [--kubeconfig K]` in the sandbox (the cluster file follows `-f`).
fn kubeha(sb: &Sandbox, args: &[&str], file: &Path, kubeconfig: Option<&Path>) -> Output {
    let mut c = sb.kubeha();
    c.args(args).arg(file);
    if let Some(k) = kubeconfig {
        c.arg("--kubeconfig").arg(k);
    }
    c.output().expect("runs")
}

#[test]
fn images_lists_every_image_and_follows_a_mirror() {
    let sb = Sandbox::new();
    let file = sb.example("external-etcd.yaml", true);
    let out = kubeha(&sb, &["images", "-o", "json", "-f"], &file, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let images: Vec<&str> = list.iter().filter_map(|i| i["image"].as_str()).collect();
    for want in [
        "registry.k8s.io/kube-apiserver:v",
        "registry.k8s.io/kube-proxy:v",
        "registry.k8s.io/coredns/coredns:v",
        "registry.k8s.io/pause:",
        "quay.io/tigera/operator:v",
        "quay.io/metallb/controller:v",
    ] {
        assert!(
            images.iter().any(|i| i.starts_with(want)),
            "{want} missing from {images:#?}"
        );
    }
    assert!(
        list.iter()
            .all(|i| !i["usedBy"].as_str().unwrap_or("").is_empty()),
        "every image names what runs it: {list:#?}"
    );

    let text = fs::read_to_string(&file).expect("read").replace(
        "imageRepository: registry.k8s.io",
        "imageRepository: mirror.example.invalid/k8s",
    );
    let mirrored = if text.contains("mirror.example.invalid") {
        text
    } else {
        format!("imageRepository: mirror.example.invalid/k8s\n{text}")
    };
    let file = sb.write("mirror.yaml", &mirrored);
    let out = kubeha(&sb, &["images", "-o", "json", "-f"], &file, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert!(list.len() >= images.len() - 1, "same images, mirrored");
    for i in &list {
        let image = i["image"].as_str().expect("image");
        assert!(
            image.starts_with("mirror.example.invalid/k8s/"),
            "{image} does not come from the mirror"
        );
    }
}

#[test]
fn render_writes_every_in_cluster_object_in_apply_order() {
    let sb = Sandbox::new();
    let file = sb.example("external-etcd.yaml", true);
    let out_dir = sb.path().join("out");
    sb.kubeha()
        .args(["render", "-f"])
        .arg(&file)
        .arg("--out")
        .arg(&out_dir)
        .assert()
        .success();
    let mut names: Vec<String> = fs::read_dir(out_dir.join("_cluster"))
        .expect("_cluster/ written")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "01-bootstrap.yaml",
            "02-kube-proxy.yaml",
            "03-coredns.yaml",
            "04-calico.yaml",
            "05-metallb.yaml"
        ]
    );
    use std::os::unix::fs::PermissionsExt;
    let bootstrap = out_dir.join("_cluster/01-bootstrap.yaml");
    let mode = fs::metadata(&bootstrap).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the bootstrap token is a secret");
    let text = fs::read_to_string(&bootstrap).expect("read");
    assert!(text.contains("name: kubeadm-config\n"));
    assert!(text.contains("type: bootstrap.kubernetes.io/token\n"));
    assert!(text.contains("jws-kubeconfig-"));
    let coredns = fs::read_to_string(out_dir.join("_cluster/03-coredns.yaml")).expect("read");
    assert!(
        coredns.contains("clusterIP: 10.96.0.10\n"),
        "kube-dns at the 10th address"
    );
}

/// A live cluster as the fake API holds it: kubeadm-config and kube-proxy with `cidr`, one
/// node with `node_cidr`, a Flannel config with `cidr`.
fn live_cluster(fake: &FakeApi, cidr: &str, node_cidr: Option<&str>) {
    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {"ClusterConfiguration": format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: {cidr}\n  serviceSubnet: 10.96.0.0/16\n")}}));
    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": format!(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclusterCIDR: {cidr}\n"),
            "kubeconfig.conf": "x"}}));
    fake.insert(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
            "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}},
                "spec": {"containers": [{"name": "kube-proxy", "image": "x"}]}}}}));
    let mut node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "wn-1"},
        "spec": {}});
    if let Some(c) = node_cidr {
        node["spec"] = json!({"podCIDR": c, "podCIDRs": [c]});
    }
    fake.insert(node);
}

#[test]
fn check_finds_a_pod_cidr_disagreement_and_fix_corrects_the_live_cluster() {
    let sb = Sandbox::new();
    let file = sb.example("external-etcd.yaml", true);
    let fake = FakeApi::start();
    let kubeconfig = sb.write("fake.kubeconfig", &fake.kubeconfig());
    // Installed with the wrong range (guide 000's FAQ: --pod-network-cidr forgotten).
    live_cluster(&fake, "192.168.0.0/16", None);

    let check = |sb: &Sandbox| kubeha(sb, &["check", "-o", "json", "-f"], &file, Some(&kubeconfig));
    let out = check(&sb);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["expected"], "10.244.0.0/16");
    let differs: Vec<&str> = r["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["verdict"] == "disagrees")
        .filter_map(|f| f["source"].as_str())
        .collect();
    assert!(
        differs.iter().any(|s| s.contains("kubeadm-config")),
        "{differs:?}"
    );
    assert!(
        differs.iter().any(|s| s.contains("kube-proxy")),
        "{differs:?}"
    );
    // The table names the command that fixes it.
    let out = kubeha(&sb, &["check", "-f"], &file, Some(&kubeconfig));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DIFFERS"), "{text}");
    assert!(text.contains("kubeha fix pod-cidr"), "{text}");

    let out = kubeha(
        &sb,
        &["fix", "pod-cidr", "-o", "json", "-f"],
        &file,
        Some(&kubeconfig),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["kubeadmConfigChanged"], true);
    assert_eq!(r["kubeProxyChanged"], true);
    assert_eq!(
        r["nodesSet"],
        json!(["wn-1"]),
        "an empty podCIDR is left to the allocator"
    );
    let cm = fake
        .get("v1", "configmaps", Some("kube-system"), "kube-proxy")
        .expect("kube-proxy config");
    assert!(
        cm["data"]["config.conf"]
            .as_str()
            .expect("config")
            .contains("clusterCIDR: 10.244.0.0/16"),
        "{cm}"
    );
    let ds = fake
        .get("apps/v1", "daemonsets", Some("kube-system"), "kube-proxy")
        .expect("daemonset");
    assert!(
        ds["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "kube-proxy restarted: {ds}"
    );
    // Everything the API holds now agrees (the node waits for the allocator).
    let out = check(&sb);
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    let still: Vec<&Value> = r["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["verdict"] == "disagrees")
        .collect();
    assert!(still.is_empty(), "{still:#?}");
    // A re-run changes nothing.
    fake.clear_requests();
    let out = kubeha(
        &sb,
        &["fix", "pod-cidr", "-o", "json", "-f"],
        &file,
        Some(&kubeconfig),
    );
    assert!(out.status.success());
    let writes: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| r.line())
        .collect();
    assert!(writes.is_empty(), "{writes:#?}");
}

#[test]
fn fix_lists_nodes_whose_pod_cidr_cannot_change_in_place() {
    let sb = Sandbox::new();
    let file = sb.example("external-etcd.yaml", true);
    let fake = FakeApi::start();
    let kubeconfig = sb.write("fake.kubeconfig", &fake.kubeconfig());
    live_cluster(&fake, "10.244.0.0/16", Some("192.168.3.0/24"));
    let out = kubeha(&sb, &["fix", "pod-cidr", "-f"], &file, Some(&kubeconfig));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("wn-1"), "{text}");
    assert!(text.contains("kubectl drain NODE"), "{text}");
}

#[test]
fn check_against_an_api_server_that_does_not_answer_fails_clearly() {
    let sb = Sandbox::new();
    let file = sb.example("external-etcd.yaml", true);
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let kubeconfig = sb.write(
        "dead.kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    );
    let out = kubeha(
        &sb,
        &["check", "--timeout", "3", "-f"],
        &file,
        Some(&kubeconfig),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kubeadm-config") || err.contains("127.0.0.1"),
        "{err}"
    );
}
