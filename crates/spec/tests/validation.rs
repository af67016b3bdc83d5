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
    problems(yaml).into_iter().filter(|p| p.severity == Severity::Error).collect()
}

/// Asserts exactly one error on `field`, at `line`, whose message contains `needle`.
fn one_error(yaml: &str, field: &str, line: u64, needle: &str) {
    let errs = errors(yaml);
    let hit: Vec<_> = errs.iter().filter(|p| p.field == field).collect();
    assert_eq!(hit.len(), 1, "expected one error on {field}, got {errs:#?}");
    assert_eq!(hit[0].line, line, "line of {field}: {:#?}", hit[0]);
    assert!(hit[0].message.contains(needle), "message {:?} lacks {needle:?}", hit[0].message);
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
    let yaml = BASE.replace("  vip: 10.1.0.100", "  vip: 10.1.0.100\n  virtualRouterId: many");
    let (line, _) = syntax(&yaml);
    assert_eq!(line, 9);
}

#[test]
fn bad_cidr() {
    one_error(&BASE.replace("10.244.0.0/16", "10.244.0.0/33"), "networking.podCidr", 5, "not an IPv4 CIDR");
    one_error(&BASE.replace("10.244.0.0/16", "10.244.1.0/16"), "networking.podCidr", 5, "host bits");
}

#[test]
fn overlapping_networks() {
    one_error(&BASE.replace("10.96.0.0/16", "10.244.128.0/17"), "networking.serviceCidr", 6, "overlaps pod CIDR");
    one_error(&BASE.replace("10.244.0.0/16", "10.1.0.0/16"), "networking.podCidr", 5, "overlaps the node network");
}

#[test]
fn vip_equal_to_node_or_outside_subnet() {
    let same = BASE.replace("vip: 10.1.0.100", "vip: 10.1.0.21").replace("10.1.0.100:6443", "10.1.0.21:6443");
    one_error(&same, "loadBalancer.vip", 8, "own address");
    let outside = BASE.replace("vip: 10.1.0.100", "vip: 10.9.0.100").replace("10.1.0.100:6443", "10.9.0.100:6443");
    one_error(&outside, "loadBalancer.vip", 8, "outside the nodes' subnet");
}

#[test]
fn endpoint_must_match_vip() {
    one_error(&BASE.replace("10.1.0.100:6443", "10.1.0.99:6443"), "controlPlaneEndpoint", 2, "differs from loadBalancer.vip");
}

#[test]
fn duplicate_names_and_addresses() {
    one_error(&BASE.replace("name: e2", "name: e1"), "nodes[1].name", 11, "also used by nodes[0]");
    one_error(&BASE.replace("address: 10.1.0.12", "address: 10.1.0.11"), "nodes[1].address", 11, "also used by nodes[0]");
}

#[test]
fn no_etcd_member() {
    // Without dedicated etcd nodes the default topology is stacked; ask for external.
    let yaml: String = BASE.lines().filter(|l| !l.contains("roles: [etcd]")).map(|l| format!("{l}\n")).collect();
    let errs = errors(&format!("topology: external\n{yaml}"));
    assert!(errs.iter().any(|p| p.field == "nodes" && p.message.contains("no etcd member") && p.line >= 10), "{errs:#?}");
}

#[test]
fn even_etcd_count_is_a_warning() {
    let yaml = BASE.replace("  - { name: e3, address: 10.1.0.13, roles: [etcd] }\n", "");
    let l = load_str(&yaml, Path::new("c.yaml")).expect("valid with a warning");
    let w = l.warnings.iter().find(|p| p.field == "nodes").expect("warning");
    assert_eq!(w.severity, Severity::Warning);
    assert!(w.message.contains("2 etcd members"), "{}", w.message);
}

#[test]
fn several_control_planes_need_an_endpoint() {
    let yaml: String = BASE
        .lines()
        .filter(|l| !l.contains("controlPlaneEndpoint") && !l.contains("roles: [lb]") && !l.starts_with("loadBalancer") && !l.contains("vip:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let errs = errors(&yaml);
    assert!(errs.iter().any(|p| p.field == "controlPlaneEndpoint" && p.message.contains("2 control planes")), "{errs:#?}");
}

#[test]
fn lb_role_without_vip() {
    let yaml: String = BASE.lines().filter(|l| !l.starts_with("loadBalancer") && !l.contains("vip:")).map(|l| format!("{l}\n")).collect();
    let errs = errors(&yaml);
    let e = errs.iter().find(|p| p.field == "loadBalancer.vip").expect("error");
    assert!(e.message.contains("no VIP"), "{}", e.message);
    assert_eq!(e.line, 11, "points at the first lb node's roles");
}

#[test]
fn unsupported_versions() {
    one_error(&format!("kubernetesVersion: v1.12.0\n{BASE}"), "kubernetesVersion", 1, "unsupported Kubernetes version");
    one_error(&format!("kubernetesVersion: 1.34\n{BASE}"), "kubernetesVersion", 1, "unsupported Kubernetes version");
    one_error(&format!("etcdVersion: 2.3.8\n{BASE}"), "etcdVersion", 1, "unsupported etcd version");
}

#[test]
fn pod_cidr_too_small_says_how_many_nodes_fit() {
    // 3 kube nodes fit in a /22 at /24 (4 nodes): no error.
    let yaml = BASE.replace("podCidr: 10.244.0.0/16", "podCidr: 10.244.0.0/22\n  nodeCidrMaskSize: 24");
    assert!(errors(&yaml).is_empty());
    let yaml = BASE.replace("podCidr: 10.244.0.0/16", "podCidr: 10.244.0.0/23");
    let errs = errors(&yaml);
    let e = errs.iter().find(|p| p.field == "networking.podCidr").expect("error");
    assert!(e.message.contains("holds 2 nodes, but the cluster has 3"), "{}", e.message);
    assert!(e.help.as_deref().unwrap_or("").contains("allows 4 nodes"), "{:?}", e.help);
}

#[test]
fn several_roles_on_one_node_are_allowed() {
    let yaml = BASE.replace("{ name: cp2, address: 10.1.0.22, roles: [control-plane] }", "{ name: cp2, address: 10.1.0.22, roles: [control-plane, worker] }");
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
    let yaml = BASE.replace("{ name: cp1, address: 10.1.0.21, roles: [control-plane] }", "{ name: cp1, address: 10.1.0.21, roles: [control-plane, etcd] }");
    let yaml = format!("topology: external\n{yaml}");
    let errs = errors(&yaml);
    assert!(errs.iter().any(|p| p.field == "nodes[5].roles" && p.message.contains("topology is external")), "{errs:#?}");
}

#[test]
fn unknown_role_and_bad_address() {
    one_error(&BASE.replace("roles: [worker]", "roles: [wrker]"), "nodes[7].roles[0]", 17, "unknown role");
    one_error(&BASE.replace("address: 10.1.0.31", "address: 10.1.0.310"), "nodes[7].address", 17, "not an IP address");
}

#[test]
fn all_problems_are_reported_at_once() {
    let yaml = BASE.replace("10.244.0.0/16", "bogus").replace("name: e2", "name: E2");
    let errs = errors(&yaml);
    assert!(errs.len() >= 2, "{errs:#?}");
}

#[test]
fn offsets_point_into_the_source() {
    let yaml = BASE.replace("10.244.0.0/16", "10.244.0.0/33");
    let errs = errors(&yaml);
    let e = &errs[0];
    let off = e.offset.expect("offset");
    assert!(yaml[off..].starts_with("10.244.0.0/33"), "{:?}", &yaml[off..off + 10]);
}
