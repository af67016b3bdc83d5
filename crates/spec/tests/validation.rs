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
    // A list where a single value belongs.
    let yaml = BASE.replace("  vip: 10.1.0.100", "  vip: [10.1.0.100]");
    let (line, msg) = syntax(&yaml);
    assert_eq!(line, 8);
    assert!(
        msg.starts_with("loadBalancer.vip: expected a single value"),
        "{msg}"
    );
    no_internals(&msg);
    // A word where a number belongs is a located validation error, not a parse stop.
    one_error(
        &BASE.replace(
            "  vip: 10.1.0.100",
            "  vip: 10.1.0.100\n  virtualRouterId: many",
        ),
        "loadBalancer.virtualRouterId",
        9,
        "'many' is not a whole number",
    );
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
        .find(|p| p.message.contains("etcd members"))
        .expect("warning");
    assert_eq!(w.severity, Severity::Warning);
    assert!(
        w.message.contains("2 etcd members (e1, e2)"),
        "{}",
        w.message
    );
    // It points at the last etcd member (line 11), not at the first node or an LB.
    assert_eq!((w.field.as_str(), w.line), ("nodes[1].roles", 11), "{w:#?}");
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

/// A lifetime past what X.509 can date passed validation and panicked while issuing.
#[test]
fn validity_beyond_the_maximum_is_refused_on_its_field() {
    let leaf = format!("{BASE}certificates:\n  validity: 8000y\n");
    one_error(
        &leaf,
        "certificates.validity",
        19,
        "maximum validity, 100y (876000h)",
    );
    let ca = format!("{BASE}certificates:\n  caValidity: 8000y\n");
    one_error(
        &ca,
        "certificates.caValidity",
        19,
        "maximum validity, 100y (876000h)",
    );
    // Only the over-long value is reported, not also "would outlive their CA".
    let both = format!("{BASE}certificates:\n  validity: 200y\n  caValidity: 100y\n");
    one_error(&both, "certificates.validity", 19, "maximum validity");
    assert_eq!(errors(&both).len(), 1, "{:#?}", errors(&both));
    // The maximum itself is fine, and the older rule still holds below it.
    let max = format!("{BASE}certificates:\n  validity: 100y\n  caValidity: 876000h\n");
    assert!(errors(&max).is_empty(), "{:#?}", errors(&max));
    let outlive = format!("{BASE}certificates:\n  validity: 20y\n");
    one_error(&outlive, "certificates.validity", 19, "outlive their CA");
}

// ---- every value that reaches a host file or command line is checked against its grammar

/// `BASE` with `extra` inserted after the `loadBalancer.vip` line (line 9 onwards).
fn with_lb(extra: &str) -> String {
    BASE.replace(
        "  vip: 10.1.0.100\n",
        &format!("  vip: 10.1.0.100\n{extra}"),
    )
}

/// `BASE` with a `provisioning:` section first (its fields from line 2 on).
fn with_provisioning(fields: &str) -> String {
    format!("provisioning:\n{fields}{BASE}")
}

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnAeRlJM7T8kS/MiXlHihQstYc+t+dAQCdhw4mPU+DM ops@example";

#[test]
fn interface_names_follow_linux_rules() {
    one_error(
        &with_lb("  interface: \"eth0; reboot\"\n"),
        "loadBalancer.interface",
        9,
        "not a network interface name",
    );
    one_error(
        &with_lb("  interface: enp0s31f6-too-long\n"),
        "loadBalancer.interface",
        9,
        "at most 15",
    );
    one_error(
        &with_provisioning("  interface: eth0:1\n"),
        "provisioning.interface",
        2,
        "':'",
    );
    assert!(errors(&with_lb("  interface: eth0.100\n")).is_empty());
}

#[test]
fn ssh_and_provisioning_users_are_login_names() {
    let yaml = format!("ssh:\n  user: \"root; rm -rf /\"\n{BASE}");
    one_error(&yaml, "ssh.user", 2, "not a user name");
    let yaml = BASE.replace(
        "{ name: w1, address: 10.1.0.31, roles: [worker] }",
        "{ name: w1, address: 10.1.0.31, roles: [worker], ssh: { user: Admin } }",
    );
    one_error(&yaml, "nodes[7].ssh.user", 17, "lower-case letter");
    one_error(
        &with_provisioning("  user: \"ops$(id)\"\n"),
        "provisioning.user",
        2,
        "'$'",
    );
    assert!(errors(&format!("ssh:\n  user: k8s_admin-2\n{BASE}")).is_empty());
}

#[test]
fn labels_and_taints_follow_kubernetes_grammar() {
    let node = |extra: &str| {
        BASE.replace(
            "  - { name: w1, address: 10.1.0.31, roles: [worker] }\n",
            &format!("  - name: w1\n    address: 10.1.0.31\n    roles: [worker]\n{extra}"),
        )
    };
    one_error(
        &node("    labels:\n      \"bad key!\": x\n"),
        "nodes[7].labels",
        21,
        "label key 'bad key!'",
    );
    one_error(
        &node("    labels:\n      team: \"a b\"\n"),
        "nodes[7].labels.team",
        21,
        "label value 'a b'",
    );
    one_error(
        &node("    taints:\n      - { key: \"gpu=1\", effect: NoSchedule }\n"),
        "nodes[7].taints[0].key",
        21,
        "not a Kubernetes qualified name",
    );
    one_error(
        &node("    taints:\n      - { key: gpu, value: \"-x\", effect: NoSchedule }\n"),
        "nodes[7].taints[0].value",
        21,
        "must start and end",
    );
    one_error(
        &node("    taints:\n      - { key: gpu, effect: NoPlacement }\n"),
        "nodes[7].taints[0].effect",
        21,
        "unknown taint effect",
    );
    // Valid keys, a prefix, an empty value.
    let ok = node(
        "    labels:\n      example.com/pool: general\n      edge: \"\"\n    taints:\n      - { key: example.com/gpu, value: a.b_c-1, effect: NoExecute }\n",
    );
    let l = load_str(&ok, Path::new("c.yaml")).expect("valid");
    let w1 = l.spec.node("w1").expect("w1");
    assert_eq!(w1.labels["example.com/pool"], "general");
    assert_eq!(w1.labels["edge"], "");
    assert_eq!(w1.taints[0].value.as_deref(), Some("a.b_c-1"));
}

#[test]
fn stats_port_must_not_clash_with_what_the_lb_binds() {
    one_error(
        &with_lb("  statsPort: 6443\n"),
        "loadBalancer.statsPort",
        9,
        "also the API port",
    );
    one_error(
        &with_lb("  statsPort: 22\n"),
        "loadBalancer.statsPort",
        9,
        "SSH port of lb node 'lb1'",
    );
    one_error(
        &with_lb("  statsPort: 0\n"),
        "loadBalancer.statsPort",
        9,
        "port 0",
    );
    one_error(
        &with_lb("  statsPort: 70000\n"),
        "loadBalancer.statsPort",
        9,
        "'70000' is not a TCP port",
    );
    // An lb that is also a worker runs a kubelet on 10250.
    let yaml = with_lb("  statsPort: 10250\n").replace(
        "{ name: lb2, address: 10.1.0.102, roles: [lb] }",
        "{ name: lb2, address: 10.1.0.102, roles: [lb, worker] }",
    );
    one_error(
        &yaml,
        "loadBalancer.statsPort",
        9,
        "the kubelet's port on lb node 'lb2'",
    );
    assert!(errors(&with_lb("  statsPort: 9000\n")).is_empty());
}

#[test]
fn ssh_ports_are_checked() {
    one_error(&format!("ssh:\n  port: 0\n{BASE}"), "ssh.port", 2, "port 0");
    one_error(
        &format!("ssh:\n  port: -1\n{BASE}"),
        "ssh.port",
        2,
        "'-1' is not a TCP port",
    );
    // sshd on an etcd member's peer port: etcd could not start there.
    let yaml = BASE.replace(
        "{ name: e2, address: 10.1.0.12, roles: [etcd] }",
        "{ name: e2, address: 10.1.0.12, roles: [etcd], ssh: { port: 2380 } }",
    );
    one_error(&yaml, "nodes[1].ssh.port", 11, "etcd's peer port");
    // The cluster-wide port, inherited by every node, blames the ssh.port line.
    let errs = errors(&format!("ssh:\n  port: 10250\n{BASE}"));
    assert!(
        errs.iter()
            .all(|e| e.field == "ssh.port" && e.line == 2 && e.message.contains("kubelet")),
        "{errs:#?}"
    );
    assert_eq!(errs.len(), 3, "cp1, cp2, w1: {errs:#?}");
    // The API port on an LB is HAProxy's.
    one_error(
        &BASE.replace("10.1.0.100:6443", "10.1.0.100:22"),
        "controlPlaneEndpoint",
        2,
        "SSH port of lb node",
    );
}

#[test]
fn subnet_network_and_broadcast_addresses_are_refused() {
    let vip = |a: &str| {
        BASE.replace("vip: 10.1.0.100", &format!("vip: {a}"))
            .replace("10.1.0.100:6443", &format!("{a}:6443"))
    };
    one_error(&vip("10.1.0.0"), "loadBalancer.vip", 8, "network address");
    one_error(
        &vip("10.1.0.255"),
        "loadBalancer.vip",
        8,
        "broadcast address",
    );
    one_error(
        &BASE.replace("address: 10.1.0.31", "address: 10.1.0.255"),
        "nodes[7].address",
        17,
        "broadcast address of the node subnet 10.1.0.0/24",
    );
}

#[test]
fn etcd_data_dir_is_a_dedicated_absolute_path() {
    for bad in [
        "/",
        "/etc",
        "/usr",
        "/var/lib",
        "/var",
        "/root",
        "/home",
        "/boot",
        "/var/lib/../..",
        "/var/lib/etcd/",
        "\"/var/lib/et cd\"",
        "var/lib/etcd",
        "/run/etcd",
        "/etcd",
    ] {
        let yaml = format!("etcd:\n  dataDir: {bad}\n{BASE}");
        let errs = errors(&yaml);
        let e = errs
            .iter()
            .find(|p| p.field == "etcd.dataDir")
            .unwrap_or_else(|| panic!("{bad}: {errs:#?}"));
        assert_eq!(e.line, 2, "{bad}");
        assert!(e.help.as_deref().unwrap_or("").contains("/var/lib/etcd"));
    }
    for ok in ["/var/lib/etcd", "/data/etcd", "/srv/etcd-1"] {
        let yaml = format!("etcd:\n  dataDir: {ok}\n{BASE}");
        assert!(errors(&yaml).is_empty(), "{ok}");
    }
    one_error(
        &format!("etcd:\n  binary: \"/usr/bin/etcd --force-new-cluster\"\n{BASE}"),
        "etcd.binary",
        2,
        "a space",
    );
}

#[test]
fn runtime_endpoint_and_image_repository_follow_their_grammar() {
    one_error(
        &format!(
            "containerRuntime:\n  endpoint: \"unix:///run/containerd/c.sock --debug\"\n{BASE}"
        ),
        "containerRuntime.endpoint",
        2,
        "not a unix socket URL",
    );
    one_error(
        &format!("imageRepository: \"registry.example.com/K8s;x\"\n{BASE}"),
        "imageRepository",
        1,
        "not an image repository",
    );
    let l = load_str(
        &format!("imageRepository: registry.example.com:5000/k8s/\n{BASE}"),
        Path::new("c.yaml"),
    )
    .expect("valid");
    assert_eq!(l.spec.image_repository, "registry.example.com:5000/k8s");
}

#[test]
fn metallb_pool_outside_the_node_subnet_is_a_warning() {
    let yaml = format!(
        "metallb:\n  addresses: [10.9.0.10-10.9.0.20, \" 10.1.0.200 - 10.1.0.210 \"]\n{BASE}"
    );
    let l = load_str(&yaml, Path::new("c.yaml")).expect("a warning, not an error");
    let w: Vec<_> = l
        .warnings
        .iter()
        .filter(|p| p.field.starts_with("metallb"))
        .collect();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(
        (w[0].field.as_str(), w[0].line),
        ("metallb.addresses[0]", 2)
    );
    assert!(
        w[0].message
            .contains("not inside the nodes' subnet 10.1.0.0/24")
    );
    // Written for MetalLB without the spaces.
    assert_eq!(
        l.spec.metallb.expect("pool").addresses,
        ["10.9.0.10-10.9.0.20", "10.1.0.200-10.1.0.210"]
    );
}

#[test]
fn time_zone_must_be_an_iana_name() {
    one_error(
        &with_provisioning("  timezone: Mars/Olympus_Mons\n"),
        "provisioning.timezone",
        2,
        "not an IANA time zone name",
    );
    one_error(
        &with_provisioning("  timezone: \"Europe/Kyiv; reboot\"\n"),
        "provisioning.timezone",
        2,
        "not a location",
    );
    for ok in ["UTC", "Europe/Kyiv", "America/Argentina/Buenos_Aires"] {
        assert!(
            errors(&with_provisioning(&format!("  timezone: {ok}\n"))).is_empty(),
            "{ok}"
        );
    }
}

#[test]
fn authorized_keys_must_be_public_keys() {
    let keys = |k: &str| with_provisioning(&format!("  sshAuthorizedKeys:\n    - {k}\n"));
    // The placeholder `kubeha init` writes fails until it is replaced.
    let placeholder = "ssh-ed25519 AAAA...replace-with-your-public-key you@example";
    one_error(
        &keys(placeholder),
        "provisioning.sshAuthorizedKeys[0]",
        3,
        "not an SSH public key",
    );
    one_error(
        &keys(
            "\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnAeRlJM7T8kS/MiXlHihQstYc+t+dAQCdhw4mPU+DM\\nssh-rsa x\"",
        ),
        "provisioning.sshAuthorizedKeys[0]",
        3,
        "one key per list entry",
    );
    one_error(
        &keys("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAnAeRlJM7T8kS/MiXlHihQstYc+t+dAQCdhw4mPU+DM"),
        "provisioning.sshAuthorizedKeys[0]",
        3,
        "'ssh-ed25519' key, but the entry says ssh-rsa",
    );
    let l = load_str(&keys(ED25519), Path::new("c.yaml")).expect("valid key");
    assert_eq!(l.spec.provisioning.ssh_authorized_keys, [ED25519]);
}

#[test]
fn service_cidr_must_hold_the_dns_address() {
    one_error(
        &BASE.replace("10.96.0.0/16", "10.96.0.0/29"),
        "networking.serviceCidr",
        6,
        "10th address",
    );
}

// ---- YAML-level errors are told in kubeha's words, with field, line and range

/// Internal phrases of the YAML library that must never reach the user.
const INTERNAL: [&str; 10] = [
    "invalid u16",
    "invalid u8",
    "Option<",
    "DuplicateKeyPolicy",
    "from_str_multiple",
    "budget breached",
    "Nodes {",
    "deserialize",
    "struct Raw",
    "check the path and its permissions",
];

fn no_internals(msg: &str) {
    for phrase in INTERNAL {
        assert!(!msg.contains(phrase), "{phrase:?} leaked: {msg}");
    }
}

#[test]
fn numbers_out_of_range_name_field_line_and_range_all_at_once() {
    let yaml = with_lb("  statsPort: 70000\n  virtualRouterId: 300\n").replace(
        "{ name: lb1, address: 10.1.0.101, roles: [lb] }",
        "{ name: lb1, address: 10.1.0.101, roles: [lb], lbPriority: 255 }",
    );
    let errs = errors(&yaml);
    let want = [
        (
            "loadBalancer.statsPort",
            9,
            "'70000' is not a TCP port",
            "from 1 to 65535",
        ),
        (
            "loadBalancer.virtualRouterId",
            10,
            "300 is out of range",
            "1 to 255",
        ),
        ("nodes[3].lbPriority", 15, "255 is out of range", "1 to 254"),
    ];
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    for (field, line, what, range) in want {
        let e = errs
            .iter()
            .find(|e| e.field == field)
            .unwrap_or_else(|| panic!("{field}: {errs:#?}"));
        assert_eq!(e.line, line, "{e:#?}");
        assert!(
            e.message.contains(what) && e.message.contains(range),
            "{e:#?}"
        );
        no_internals(&e.message);
    }
    let errs = errors(&BASE.replace(
        "serviceCidr: 10.96.0.0/16",
        "serviceCidr: 10.96.0.0/16\n  nodeCidrMaskSize: 300",
    ));
    assert!(
        errs.iter().any(|e| e.field == "networking.nodeCidrMaskSize"
            && e.line == 7
            && e.message.contains("from 1 to 30")),
        "{errs:#?}"
    );
}

#[test]
fn an_empty_value_is_named_not_a_rust_type() {
    let (line, msg) = syntax(&BASE.replace("name: demo", "name:"));
    assert_eq!(line, 1);
    assert!(msg.contains("name is empty"), "{msg}");
    no_internals(&msg);
    let (line, msg) = syntax(&BASE.replace("address: 10.1.0.12,", "address: ,"));
    assert_eq!(line, 11);
    assert!(msg.contains("nodes[1].address is empty"), "{msg}");
    no_internals(&msg);
}

#[test]
fn a_duplicate_key_names_the_key_and_line() {
    let (line, msg) = syntax(&BASE.replace(
        "  podCidr: 10.244.0.0/16\n",
        "  podCidr: 10.244.0.0/16\n  podCidr: 10.245.0.0/16\n",
    ));
    assert_eq!(line, 6);
    assert!(
        msg.starts_with("networking.podCidr is given twice"),
        "{msg}"
    );
    no_internals(&msg);
}

#[test]
fn several_documents_are_refused_in_plain_words() {
    let (_, msg) = syntax(&format!("{BASE}---\nname: other\n"));
    assert!(msg.contains("more than one YAML document"), "{msg}");
    no_internals(&msg);
}

#[test]
fn unknown_field_suggests_the_spelling() {
    let (line, msg) = syntax(&BASE.replace("  podCidr:", "  podCIDR:"));
    assert_eq!(line, 5);
    assert!(
        msg.contains("unknown field 'podCIDR' in 'networking'; did you mean 'podCidr'?"),
        "{msg}"
    );
    no_internals(&msg);
}

#[test]
fn a_huge_document_is_refused_in_plain_words() {
    let mut yaml = BASE.to_string();
    yaml.push_str("metallb:\n  addresses:\n");
    for _ in 0..250_001 {
        yaml.push_str("    - x\n");
    }
    let (_, msg) = syntax(&yaml);
    assert!(msg.contains("not a cluster file"), "{msg}");
    no_internals(&msg);
}

#[test]
fn a_file_that_is_not_utf8_names_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.yaml");
    let mut bytes = BASE.as_bytes().to_vec();
    let at = BASE.find("demo").expect("name") + 2;
    bytes.insert(at, 0xff);
    std::fs::write(&path, &bytes).expect("write");
    match kubeha_spec::load(&path) {
        Err(SpecError::Syntax {
            line,
            column,
            message,
            ..
        }) => {
            assert_eq!((line, column), (1, 9), "{message}");
            assert!(message.contains("not UTF-8 text: byte 0xFF"), "{message}");
            no_internals(&message);
        }
        other => panic!("expected a located error, got {other:?}"),
    }
}

#[test]
fn echoed_values_are_cut_to_a_sane_width() {
    let long = "x".repeat(40_000);
    let errs = errors(&BASE.replace("name: demo", &format!("name: {long}")));
    let e = errs.iter().find(|e| e.field == "name").expect("name error");
    assert!(e.message.len() < 200, "{} bytes", e.message.len());
    assert!(e.message.contains('…'), "{}", e.message);
    let (_, msg) = syntax(&format!("{long}: 1\n{BASE}"));
    assert!(msg.len() < 400, "{} bytes: {}", msg.len(), &msg[..200]);
}

#[test]
fn a_pod_cidr_too_small_for_one_node_is_located_with_a_range() {
    let errs = errors(&BASE.replace("10.244.0.0/16", "10.244.0.0/30"));
    let e = errs
        .iter()
        .find(|e| e.field == "networking.podCidr")
        .unwrap_or_else(|| panic!("{errs:#?}"));
    assert_eq!(e.line, 5);
    assert!(e.message.contains("10.244.0.0/30"), "{e:#?}");
    assert!(
        e.help.as_deref().unwrap_or("").contains("from /8 to /24"),
        "{e:#?}"
    );
    assert!(
        errs.iter().all(|e| e.line > 0),
        "every error has a line: {errs:#?}"
    );
    // A /26 with the default per-node /24: no nonsense range like "between 26 and 24".
    let errs = errors(&BASE.replace("10.244.0.0/16", "10.244.0.0/26"));
    let e = errs
        .iter()
        .find(|e| e.field == "networking.podCidr")
        .unwrap_or_else(|| panic!("{errs:#?}"));
    assert_eq!(e.line, 5);
    assert!(
        e.message.contains("smaller than one node's pod range"),
        "{e:#?}"
    );
}
