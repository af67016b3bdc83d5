//! Every validation rule of the cluster file: each bad input names its field and line.

use std::path::Path;

use kubeha_spec::{Problem, Severity, SpecError, load_str};

const BASE: &str = "\
name: demo
controlPlaneEndpoint: 10.1.0.100:6443
networking:
  nodeCidr: 10.1.0.0/24
  podCidr: 10.244.0.0/16
  serviceCidr: 10.96.0.0/16
loadBalancer:
  vip: 10.1.0.100
nodes:
  - { name: e1, address: 10.1.0.11, roles: [etcd] }
  - { name: e2, address: 10.1.0.12, roles: [etcd] }
  - { name: e3, address: 10.1.0.13, roles: [etcd] }
  - { name: lb1, address: 10.1.0.101, roles: [lb] }
  - { name: lb2, address: 10.1.0.102, roles: [lb] }
  - { name: cp1, address: 10.1.0.21, roles: [control-plane] }
  - { name: cp2, address: 10.1.0.22, roles: [control-plane] }
  - { name: w1, address: 10.1.0.31, roles: [worker] }
";

fn problems(yaml: &str) -> Vec<Problem> {
    match load_str(yaml, Path::new("cluster.yaml")) {
        Ok(l) => l.warnings,
        Err(SpecError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("expected validation problems, got {e:?}"),
    }
}

fn errors(yaml: &str) -> Vec<Problem> {
    problems(yaml)
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .collect()
}

/// Asserts exactly one error on `field`, at `line`, whose message contains `needle`.
fn one_error(yaml: &str, field: &str, line: u64, needle: &str) {
    let errs = errors(yaml);
    let hit: Vec<_> = errs.iter().filter(|p| p.field == field).collect();
    assert_eq!(hit.len(), 1, "expected one error on {field}, got {errs:#?}");
    assert_eq!(hit[0].line, line, "line of {field}: {:#?}", hit[0]);
    assert!(
        hit[0].message.contains(needle),
        "message {:?} lacks {needle:?}",
        hit[0].message
    );
    assert!(hit[0].help.is_some(), "error on {field} says how to fix it");
}

#[test]
fn base_is_valid() {
    let l = load_str(BASE, Path::new("c.yaml")).expect("valid");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(l.spec.etcd_members().len(), 3);
    assert_eq!(l.spec.endpoint.url(), "https://10.1.0.100:6443");
}

fn syntax(yaml: &str) -> (u64, String) {
    match load_str(yaml, Path::new("cluster.yaml")) {
        Err(SpecError::Syntax { line, message, .. }) => (line, message),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn malformed_yaml_names_the_line() {
    let (line, _) = syntax("name: demo\nnodes: [\n  - a: b\n");
    assert!(line >= 2, "line {line}");
}

#[test]
fn unknown_field_is_rejected_with_its_line() {
    let (line, msg) = syntax(&BASE.replace("  podCidr:", "  podCIDR:"));
    assert_eq!(line, 5);
    assert!(msg.contains("podCIDR"), "{msg}");
}

#[test]
fn wrong_type_is_rejected_with_its_line() {
    let yaml = BASE.replace(
        "  vip: 10.1.0.100",
        "  vip: 10.1.0.100\n  virtualRouterId: many",
    );
    let (line, _) = syntax(&yaml);
    assert_eq!(line, 9);
}

#[test]
fn bad_cidr() {
    one_error(
        &BASE.replace("10.244.0.0/16", "10.244.0.0/33"),
        "networking.podCidr",
        5,
        "not an IPv4 CIDR",
    );
    one_error(
        &BASE.replace("10.244.0.0/16", "10.244.1.0/16"),
        "networking.podCidr",
        5,
        "host bits",
    );
}

#[test]
fn overlapping_networks() {
    one_error(
        &BASE.replace("10.96.0.0/16", "10.244.128.0/17"),
        "networking.serviceCidr",
        6,
        "overlaps pod CIDR",
    );
    one_error(
        &BASE.replace("10.244.0.0/16", "10.1.0.0/16"),
        "networking.podCidr",
        5,
        "overlaps the node network",
    );
}

#[test]
fn vip_equal_to_node_or_outside_subnet() {
    let same = BASE
        .replace("vip: 10.1.0.100", "vip: 10.1.0.21")
        .replace("10.1.0.100:6443", "10.1.0.21:6443");
    one_error(&same, "loadBalancer.vip", 8, "own address");
    let outside = BASE
        .replace("vip: 10.1.0.100", "vip: 10.9.0.100")
        .replace("10.1.0.100:6443", "10.9.0.100:6443");
    one_error(&outside, "loadBalancer.vip", 8, "outside the nodes' subnet");
}

#[test]
fn endpoint_must_match_vip() {
    one_error(
        &BASE.replace("10.1.0.100:6443", "10.1.0.99:6443"),
        "controlPlaneEndpoint",
        2,
        "differs from loadBalancer.vip",
    );
}

#[test]
fn duplicate_names_and_addresses() {
    one_error(
        &BASE.replace("name: e2", "name: e1"),
        "nodes[1].name",
        11,
        "also used by nodes[0]",
    );
    one_error(
        &BASE.replace("address: 10.1.0.12", "address: 10.1.0.11"),
        "nodes[1].address",
        11,
        "also used by nodes[0]",
    );
}

#[test]
fn no_etcd_member() {
    // Without dedicated etcd nodes the default topology is stacked; ask for external.
    let yaml: String = BASE
        .lines()
        .filter(|l| !l.contains("roles: [etcd]"))
        .map(|l| format!("{l}\n"))
        .collect();
    let errs = errors(&format!("topology: external\n{yaml}"));
    assert!(
        errs.iter()
            .any(|p| p.field == "nodes" && p.message.contains("no etcd member") && p.line >= 10),
        "{errs:#?}"
    );
}

#[test]
fn even_etcd_count_is_a_warning() {
    let yaml = BASE.replace("  - { name: e3, address: 10.1.0.13, roles: [etcd] }\n", "");
    let l = load_str(&yaml, Path::new("c.yaml")).expect("valid with a warning");
    let w = l
        .warnings
        .iter()
        .find(|p| p.field == "nodes")
        .expect("warning");
    assert_eq!(w.severity, Severity::Warning);
    assert!(w.message.contains("2 etcd members"), "{}", w.message);
}

#[test]
fn several_control_planes_need_an_endpoint() {
    let yaml: String = BASE
        .lines()
        .filter(|l| {
            !l.contains("controlPlaneEndpoint")
                && !l.contains("roles: [lb]")
                && !l.starts_with("loadBalancer")
                && !l.contains("vip:")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let errs = errors(&yaml);
    assert!(
        errs.iter()
            .any(|p| p.field == "controlPlaneEndpoint" && p.message.contains("2 control planes")),
        "{errs:#?}"
    );
}

#[test]
fn lb_role_without_vip() {
    let yaml: String = BASE
        .lines()
        .filter(|l| !l.starts_with("loadBalancer") && !l.contains("vip:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let errs = errors(&yaml);
    let e = errs
        .iter()
        .find(|p| p.field == "loadBalancer.vip")
        .expect("error");
    assert!(e.message.contains("no VIP"), "{}", e.message);
    assert_eq!(e.line, 11, "points at the first lb node's roles");
}

#[test]
fn unsupported_versions() {
    one_error(
        &format!("kubernetesVersion: v1.12.0\n{BASE}"),
        "kubernetesVersion",
        1,
        "unsupported Kubernetes version",
    );
    one_error(
        &format!("kubernetesVersion: 1.34\n{BASE}"),
        "kubernetesVersion",
        1,
        "unsupported Kubernetes version",
    );
    one_error(
        &format!("etcdVersion: 2.3.8\n{BASE}"),
        "etcdVersion",
        1,
        "unsupported etcd version",
    );
}

#[test]
fn pod_cidr_too_small_says_how_many_nodes_fit() {
    // 3 kube nodes fit in a /22 at /24 (4 nodes): no error.
    let yaml = BASE.replace(
        "podCidr: 10.244.0.0/16",
        "podCidr: 10.244.0.0/22\n  nodeCidrMaskSize: 24",
    );
    assert!(errors(&yaml).is_empty());
    let yaml = BASE.replace("podCidr: 10.244.0.0/16", "podCidr: 10.244.0.0/23");
    let errs = errors(&yaml);
    let e = errs
        .iter()
        .find(|p| p.field == "networking.podCidr")
        .expect("error");
    assert!(
        e.message.contains("holds 2 nodes, but the cluster has 3"),
        "{}",
        e.message
    );
    assert!(
        e.help.as_deref().unwrap_or("").contains("allows 4 nodes"),
        "{:?}",
        e.help
    );
}

#[test]
fn several_roles_on_one_node_are_allowed() {
    let yaml = BASE.replace(
        "{ name: cp2, address: 10.1.0.22, roles: [control-plane] }",
        "{ name: cp2, address: 10.1.0.22, roles: [control-plane, worker] }",
    );
    assert!(errors(&yaml).is_empty());
    let stacked = "\
name: s
topology: stacked
nodes:
  - { name: m1, address: 10.2.0.11, roles: [control-plane, etcd] }
";
    let l = load_str(stacked, Path::new("c.yaml")).expect("single stacked control plane");
    assert_eq!(l.spec.etcd_members().len(), 1);
    assert_eq!(l.spec.endpoint.url(), "https://10.2.0.11:6443");
}

#[test]
fn etcd_on_control_plane_needs_stacked() {
    let yaml = BASE.replace(
        "{ name: cp1, address: 10.1.0.21, roles: [control-plane] }",
        "{ name: cp1, address: 10.1.0.21, roles: [control-plane, etcd] }",
    );
    let yaml = format!("topology: external\n{yaml}");
    let errs = errors(&yaml);
    assert!(
        errs.iter()
            .any(|p| p.field == "nodes[5].roles" && p.message.contains("topology is external")),
        "{errs:#?}"
    );
}

#[test]
fn unknown_role_and_bad_address() {
    one_error(
        &BASE.replace("roles: [worker]", "roles: [wrker]"),
        "nodes[7].roles[0]",
        17,
        "unknown role",
    );
    one_error(
        &BASE.replace("address: 10.1.0.31", "address: 10.1.0.310"),
        "nodes[7].address",
        17,
        "not an IP address",
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let yaml = BASE
        .replace("10.244.0.0/16", "bogus")
        .replace("name: e2", "name: E2");
    let errs = errors(&yaml);
    assert!(errs.len() >= 2, "{errs:#?}");
}

#[test]
fn offsets_point_into_the_source() {
    let yaml = BASE.replace("10.244.0.0/16", "10.244.0.0/33");
    let errs = errors(&yaml);
    let e = &errs[0];
    let off = e.offset.expect("offset");
    assert!(
        yaml[off..].starts_with("10.244.0.0/33"),
        "{:?}",
        &yaml[off..off + 10]
    );
}

#[test]
fn etcd_local_proxy_defaults_to_static_pod() {
    use kubeha_spec::EtcdProxyDeployment;
    let l = load_str(BASE, Path::new("c.yaml")).expect("valid");
    assert_eq!(l.spec.etcd.local_proxy, EtcdProxyDeployment::StaticPod);
    for (value, want) in [
        ("static-pod", EtcdProxyDeployment::StaticPod),
        ("systemd", EtcdProxyDeployment::Systemd),
    ] {
        let yaml = format!("etcd:\n  apiserverAccess: local-proxy\n  localProxy: {value}\n{BASE}");
        let l = load_str(&yaml, Path::new("c.yaml")).unwrap_or_else(|e| panic!("{value}: {e:?}"));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(l.spec.etcd.local_proxy, want);
    }
}

#[test]
fn etcd_local_proxy_unknown_value() {
    one_error(
        &format!("etcd:\n  localProxy: docker\n{BASE}"),
        "etcd.localProxy",
        2,
        "unknown local proxy deployment 'docker'",
    );
}

#[test]
fn etcd_local_proxy_only_with_external_local_proxy_access() {
    let direct = format!("etcd:\n  apiserverAccess: direct\n  localProxy: systemd\n{BASE}");
    one_error(&direct, "etcd.localProxy", 3, "reach etcd directly");
    let errs = errors(&direct);
    assert_eq!(errs[0].column, 15, "column of the value: {:#?}", errs[0]);
    assert!(
        errs[0]
            .help
            .as_deref()
            .unwrap_or("")
            .contains("apiserverAccess: local-proxy"),
        "{:?}",
        errs[0].help
    );
    let stacked = "\
name: s
topology: stacked
etcd:
  localProxy: static-pod
nodes:
  - { name: m1, address: 10.2.0.11, roles: [control-plane, etcd] }
";
    one_error(stacked, "etcd.localProxy", 4, "needs the external topology");
}

#[test]
fn etcd_port_is_optional_and_parsed() {
    let l = load_str(BASE, Path::new("c.yaml")).expect("valid");
    assert_eq!(l.spec.load_balancer.as_ref().expect("lb").etcd_port, None);
    let yaml = BASE.replace(
        "  vip: 10.1.0.100\n",
        "  vip: 10.1.0.100\n  etcdPort: 2379\n",
    );
    let l = load_str(&yaml, Path::new("c.yaml")).expect("valid");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(
        l.spec.load_balancer.as_ref().expect("lb").etcd_port,
        Some(2379)
    );
}

#[test]
fn etcd_port_must_not_clash_with_the_lb_ports() {
    let with = |extra: &str| {
        BASE.replace(
            "  vip: 10.1.0.100\n",
            &format!("  vip: 10.1.0.100\n{extra}"),
        )
    };
    one_error(
        &with("  etcdPort: 6443\n"),
        "loadBalancer.etcdPort",
        9,
        "API port",
    );
    // The API port is the endpoint's, not always 6443.
    let api_8443 = with("  etcdPort: 8443\n").replace("10.1.0.100:6443", "10.1.0.100:8443");
    one_error(&api_8443, "loadBalancer.etcdPort", 9, "API port");
    one_error(
        &with("  etcdPort: 8404\n"),
        "loadBalancer.etcdPort",
        9,
        "statsPort",
    );
    one_error(
        &with("  statsPort: 9000\n  etcdPort: 9000\n"),
        "loadBalancer.etcdPort",
        10,
        "statsPort",
    );
    one_error(
        &with("  etcdPort: 0\n"),
        "loadBalancer.etcdPort",
        9,
        "port 0",
    );
    one_error(
        &with("  etcdPort: 22\n"),
        "loadBalancer.etcdPort",
        9,
        "SSH port of lb node 'lb1'",
    );
    let errs = errors(&with("  etcdPort: 6443\n"));
    assert_eq!(errs[0].column, 13, "column of the value: {:#?}", errs[0]);
}

#[test]
fn etcd_port_needs_a_load_balancer_and_no_etcd_on_the_lbs() {
    let no_lb: String = BASE
        .lines()
        .filter(|l| {
            !l.contains("roles: [lb]")
                && !l.contains("vip:")
                && !l.starts_with("loadBalancer")
                && !l.starts_with("controlPlaneEndpoint")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let no_lb = format!(
        "controlPlaneEndpoint: api.example.com:6443\nloadBalancer:\n  etcdPort: 2379\n{no_lb}"
    );
    one_error(&no_lb, "loadBalancer.etcdPort", 3, "no load balancer");
    let lb_etcd = BASE
        .replace(
            "  vip: 10.1.0.100\n",
            "  vip: 10.1.0.100\n  etcdPort: 2379\n",
        )
        .replace(
            "roles: [lb] }\n  - { name: lb2",
            "roles: [lb, etcd] }\n  - { name: lb2",
        );
    one_error(
        &lb_etcd,
        "loadBalancer.etcdPort",
        9,
        "lb node 'lb1' is also an etcd member",
    );
    // Another port is fine there.
    assert!(errors(&lb_etcd.replace("etcdPort: 2379", "etcdPort: 12379")).is_empty());
}

#[test]
fn worker_join_defaults_to_issued_certificates() {
    use kubeha_spec::WorkerJoin;
    let l = load_str(BASE, Path::new("c.yaml")).expect("valid");
    assert_eq!(l.spec.worker_join, WorkerJoin::Certificate);
    let l = load_str(
        &format!("workerJoin: tlsBootstrap\n{BASE}"),
        Path::new("c.yaml"),
    )
    .expect("valid");
    assert_eq!(l.spec.worker_join, WorkerJoin::TlsBootstrap);
    one_error(
        &format!("workerJoin: token\n{BASE}"),
        "workerJoin",
        1,
        "unknown worker join method 'token'",
    );
}
