//! The API load-balancer pair (guide 000): HAProxy in front of every kube-apiserver, Keepalived
//! moving the VIP to whichever LB has a working HAProxy, and the sysctl that lets HAProxy bind
//! an address it does not hold yet.
//!
//! Choices, for the record:
//! - Backend health: an HTTPS `GET /readyz` (TLS unverified, no client certificate), as in
//!   kubeadm's HA guide. It sees an API server that accepts TLS but cannot serve (etcd lost),
//!   which a bare TLS handshake would not. It relies on anonymous access to `/readyz`, which
//!   kubeadm's defaults allow (`system:public-info-viewer`).
//! - Keepalived health: a TCP connect to the API frontend on `127.0.0.1` with bash's
//!   `/dev/tcp` (bash is Essential on Debian; nothing to install). Unlike `killall -0` or
//!   `pidof`, it checks the HAProxy of this host's network namespace, and checks that it
//!   accepts connections, not merely that a process exists. A failing check puts the instance
//!   in FAULT, releasing the VIP whatever the priority gap; no `weight` arithmetic.
//! - VRRP goes unicast to the other LBs when they share the VIP's address family: it also works
//!   where multicast is filtered (many VPS networks).
//! - `option redispatch` with `retries 3` (kubeadm's HA considerations: redispatch, 1 retry):
//!   a new connection to a backend that refuses it (restarting for a certificate renewal, not
//!   yet marked down by the 2-s checks) is retried on another backend instead of failing.
//! - The frontend binds `*:<endpoint port>`: HAProxy starts whether or not this LB holds the
//!   VIP (an LB is never a control plane, so the port is free).
//! - With `loadBalancer.etcdPort`, a second TCP frontend `etcd` on `*:<etcdPort>` forwards to
//!   every etcd member's client port 2379, TLS passed through (clients present their etcd
//!   client certificate to the member, end to end). Backend health is a TCP connect: the
//!   members require a client certificate for anything over TLS, which the LB does not hold.
//!   Made for the lab, where no API server can run: the VIP carries real etcd traffic instead,
//!   and the lab tests check etcd still answers through the VIP after the VIP moves.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use kubeha_spec::{LoadBalancer, Node, Spec, bracket};

use crate::{Ctx, HostFile, RenderError, Result, etcd::CLIENT_PORT as ETCD_CLIENT_PORT};

/// Debian's packaged unit reads this file; same text on every LB but the stats address.
pub const HAPROXY_CFG_PATH: &str = "/etc/haproxy/haproxy.cfg";
/// Holds the VRRP password: rendered as a secret (0600, redacted in Debug output).
pub const KEEPALIVED_CONF_PATH: &str = "/etc/keepalived/keepalived.conf";
/// Applied by `sysctl --system` during node prep, before HAProxy starts.
pub const SYSCTL_PATH: &str = "/etc/sysctl.d/99-kubeha-lb.conf";
/// Where every kube-apiserver listens (kubeadm's `bindPort`).
pub const APISERVER_PORT: u16 = 6443;

/// Every file an LB node needs. Empty when the spec has no `loadBalancer` (validation rejects
/// LB nodes without one, so this does not happen for a loaded spec).
pub fn files(cx: Ctx<'_>, node: &Node) -> Result<Vec<HostFile>> {
    let Some(lb) = cx.spec.load_balancer.as_ref() else {
        return Ok(vec![]);
    };
    let haproxy = haproxy_cfg(cx.spec, node).map_err(|e| fmt_error("haproxy.cfg", e))?;
    let keepalived = keepalived_conf(cx.spec, lb, node, &cx.materials.secrets.keepalived_auth)
        .map_err(|e| fmt_error("keepalived.conf", e))?;
    Ok(vec![
        HostFile::public(HAPROXY_CFG_PATH, haproxy),
        HostFile::secret(KEEPALIVED_CONF_PATH, keepalived),
        HostFile::public(SYSCTL_PATH, sysctl_conf(lb.vip)),
    ])
}

/// Units an LB runs, in start order: HAProxy first, so Keepalived's check can pass.
pub fn services() -> Vec<String> {
    vec!["haproxy.service".into(), "keepalived.service".into()]
}

/// `MASTER` on the spec's [`Spec::lb_master`], `BACKUP` elsewhere. The priority decides the
/// election; the state only says how each node starts.
pub fn vrrp_state(spec: &Spec, node: &Node) -> &'static str {
    if spec.lb_master().is_some_and(|m| m.name == node.name) {
        "MASTER"
    } else {
        "BACKUP"
    }
}

fn fmt_error(what: &str, e: fmt::Error) -> RenderError {
    RenderError::Serialize {
        what: what.to_string(),
        source: Box::new(e),
    }
}

/// HAProxy's `bind` spelling of "every address, port N" for the VIP's family.
fn bind_any(vip: Option<IpAddr>, port: u16) -> String {
    match vip {
        Some(IpAddr::V6(_)) => format!(":::{port} v4v6"),
        _ => format!("*:{port}"),
    }
}

/// `/etc/haproxy/haproxy.cfg` for `node` (guide 000's, with the health checks above).
pub fn haproxy_cfg(spec: &Spec, node: &Node) -> Result<String, fmt::Error> {
    let vip = spec.load_balancer.as_ref().map(|l| l.vip);
    let stats_port = spec.load_balancer.as_ref().map_or(8404, |l| l.stats_port);
    let mut s = String::new();
    writeln!(
        s,
        "# HAProxy for the Kubernetes API of cluster {} on {}, rendered by kubeha.",
        spec.name, node.name
    )?;
    s.push_str(
        "global\n    log /dev/log local0\n    user haproxy\n    group haproxy\n    daemon\n    \
         stats socket /run/haproxy/admin.sock mode 660 level admin\n    stats timeout 30s\n\n\
         defaults\n    log global\n    mode tcp\n    option tcplog\n    option dontlognull\n    \
         option redispatch\n    retries 3\n    \
         timeout connect 5s\n    timeout client 50s\n    timeout server 50s\n    timeout check 5s\n\n",
    );
    long_lived_tcp(
        &mut s,
        "k8s-api",
        &bind_any(vip, spec.endpoint.port),
        "watches",
    )?;
    writeln!(
        s,
        "    # ready API servers only: HTTPS GET /readyz (anonymous, certificate not verified)"
    )?;
    writeln!(s, "    option httpchk")?;
    writeln!(s, "    http-check send meth GET uri /readyz")?;
    writeln!(s, "    http-check expect status 200")?;
    writeln!(
        s,
        "    default-server check check-ssl verify none inter 2s fall 3 rise 2"
    )?;
    for cp in spec.control_planes() {
        writeln!(
            s,
            "    server {} {}:{APISERVER_PORT}",
            cp.name,
            bracket(cp.address)
        )?;
    }
    writeln!(s)?;
    if let Some(port) = spec.load_balancer.as_ref().and_then(|l| l.etcd_port) {
        etcd_frontend(&mut s, spec, vip, port)?;
    }
    writeln!(s, "listen stats")?;
    writeln!(
        s,
        "    # this LB's own address only, never the VIP or every interface"
    )?;
    writeln!(s, "    bind {}:{stats_port}", bracket(node.address))?;
    writeln!(s, "    mode http")?;
    writeln!(s, "    option httplog")?;
    writeln!(s, "    stats enable")?;
    writeln!(s, "    stats uri /stats")?;
    writeln!(s, "    stats refresh 10s")?;
    Ok(s)
}

/// A TCP frontend `<name>` on `bind` and the head of its backend `<name>-backend`, with the
/// 2 h timeouts that long-lived watches need; the caller adds checks and servers.
fn long_lived_tcp(s: &mut String, name: &str, bind: &str, what: &str) -> Result<(), fmt::Error> {
    writeln!(s, "frontend {name}")?;
    writeln!(s, "    bind {bind}")?;
    writeln!(s, "    # {what} stay open for a long time")?;
    writeln!(s, "    timeout client 2h")?;
    writeln!(s, "    default_backend {name}-backend")?;
    writeln!(s)?;
    writeln!(s, "backend {name}-backend")?;
    writeln!(s, "    balance roundrobin")?;
    writeln!(s, "    timeout server 2h")
}

/// `loadBalancer.etcdPort`'s frontend and backend (see the module docs), then a blank line.
fn etcd_frontend(
    s: &mut String,
    spec: &Spec,
    vip: Option<IpAddr>,
    port: u16,
) -> Result<(), fmt::Error> {
    long_lived_tcp(s, "etcd", &bind_any(vip, port), "etcd watches")?;
    writeln!(
        s,
        "    # TLS passes through: a member is up when its client port accepts connections"
    )?;
    writeln!(s, "    option tcp-check")?;
    writeln!(s, "    tcp-check connect")?;
    writeln!(
        s,
        "    default-server check inter 2s fall 3 rise 2 on-marked-down shutdown-sessions"
    )?;
    for m in spec.etcd_members() {
        writeln!(
            s,
            "    server {} {}:{ETCD_CLIENT_PORT}",
            m.name,
            bracket(m.address)
        )?;
    }
    writeln!(s)?;
    Ok(())
}

/// `/etc/keepalived/keepalived.conf` for `node`; `auth` is the shared VRRP password.
pub fn keepalived_conf(
    spec: &Spec,
    lb: &LoadBalancer,
    node: &Node,
    auth: &str,
) -> Result<String, fmt::Error> {
    let iface = &lb.interface;
    let prefix = spec.networking.node_cidr.prefix_len();
    let peers: Vec<&Node> = spec
        .lbs()
        .into_iter()
        .filter(|n| n.name != node.name && n.address.is_ipv4() == lb.vip.is_ipv4())
        .collect();
    let unicast = !peers.is_empty() && node.address.is_ipv4() == lb.vip.is_ipv4();
    let mut s = String::new();
    writeln!(
        s,
        "# Keepalived for cluster {} on {}: holds VIP {} while HAProxy accepts connections.",
        spec.name, node.name, lb.vip
    )?;
    writeln!(s, "# Rendered by kubeha; holds the VRRP password (0600).")?;
    writeln!(s, "global_defs {{")?;
    writeln!(s, "    router_id {}", node.name)?;
    writeln!(s, "    enable_script_security")?;
    writeln!(s, "    script_user root")?;
    writeln!(s, "}}")?;
    writeln!(s)?;
    writeln!(
        s,
        "# Fails unless this host's HAProxy accepts connections on the API frontend."
    )?;
    writeln!(s, "vrrp_script check_haproxy {{")?;
    writeln!(
        s,
        "    script \"/bin/bash -c '</dev/tcp/127.0.0.1/{}'\"",
        spec.endpoint.port
    )?;
    writeln!(s, "    interval 2")?;
    writeln!(s, "    timeout 2")?;
    writeln!(s, "    fall 2")?;
    writeln!(s, "    rise 2")?;
    writeln!(s, "}}")?;
    writeln!(s)?;
    writeln!(s, "vrrp_instance VI_1 {{")?;
    writeln!(s, "    state {}", vrrp_state(spec, node))?;
    writeln!(s, "    interface {iface}")?;
    writeln!(s, "    virtual_router_id {}", lb.virtual_router_id)?;
    writeln!(s, "    priority {}", spec.lb_priority(node))?;
    writeln!(s, "    advert_int 1")?;
    if unicast {
        writeln!(s, "    unicast_src_ip {}", node.address)?;
        writeln!(s, "    unicast_peer {{")?;
        for p in &peers {
            writeln!(s, "        {}", p.address)?;
        }
        writeln!(s, "    }}")?;
    }
    writeln!(s, "    authentication {{")?;
    writeln!(s, "        auth_type PASS")?;
    writeln!(s, "        auth_pass {auth}")?;
    writeln!(s, "    }}")?;
    writeln!(s, "    virtual_ipaddress {{")?;
    writeln!(s, "        {}/{prefix} dev {iface}", lb.vip)?;
    writeln!(s, "    }}")?;
    writeln!(s, "    track_script {{")?;
    writeln!(s, "        check_haproxy")?;
    writeln!(s, "    }}")?;
    writeln!(s, "}}")?;
    Ok(s)
}

fn sysctl_conf(vip: IpAddr) -> String {
    let mut s = String::from(
        "# Lets HAProxy bind the VIP before Keepalived brings it up (guide 000). Rendered by kubeha.\n\
         net.ipv4.ip_nonlocal_bind = 1\n",
    );
    if vip.is_ipv6() {
        s.push_str("net.ipv6.ip_nonlocal_bind = 1\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::Path, process::Command};

    use kubeha_pki::{Materials, Secrets, ServiceAccountKeys};

    use super::*;

    const AUTH: &str = "Xq7Zp2Lk";

    fn example(name: &str) -> Spec {
        let text = match name {
            "external" => include_str!("../../../examples/external-etcd.yaml"),
            "lab" => include_str!("../../../examples/lab.yaml"),
            _ => include_str!("../../../examples/stacked.yaml"),
        };
        match kubeha_spec::load_str(text, Path::new(name)) {
            Ok(l) => l.spec,
            Err(e) => panic!("example {name} does not load: {e:?}"),
        }
    }

    fn materials() -> Materials {
        Materials {
            cas: BTreeMap::new(),
            leaves: BTreeMap::new(),
            service_account: ServiceAccountKeys {
                private_pem: String::new(),
                public_pem: String::new(),
            },
            secrets: Secrets {
                keepalived_auth: AUTH.into(),
                etcd_cluster_token: None,
                bootstrap_token: None,
            },
        }
    }

    fn render(spec: &Spec, node: &str) -> Vec<HostFile> {
        let m = materials();
        let node = spec.node(node).unwrap_or_else(|| panic!("no node {node}"));
        files(Ctx::new(spec, &m), node).unwrap_or_else(|e| panic!("render {}: {e}", node.name))
    }

    fn get<'a>(files: &'a [HostFile], path: &str) -> &'a str {
        &files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no {path}"))
            .content
    }

    fn line_with<'a>(text: &'a str, key: &str) -> &'a str {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
    }

    #[test]
    fn master_backup_and_priority() {
        let spec = example("external");
        let k1 = render(&spec, "lb1");
        let k2 = render(&spec, "lb2");
        let (k1, k2) = (
            get(&k1, KEEPALIVED_CONF_PATH),
            get(&k2, KEEPALIVED_CONF_PATH),
        );
        assert_eq!(line_with(k1, "state "), "state MASTER");
        assert_eq!(line_with(k1, "priority "), "priority 101");
        assert_eq!(line_with(k2, "state "), "state BACKUP");
        assert_eq!(line_with(k2, "priority "), "priority 100");
        assert_eq!(line_with(k1, "interface "), "interface enp0s2");
        assert_eq!(line_with(k1, "virtual_router_id "), "virtual_router_id 51");
        assert_eq!(line_with(k1, "10.10.0.100/"), "10.10.0.100/24 dev enp0s2");
        assert_eq!(
            line_with(k1, "unicast_src_ip "),
            "unicast_src_ip 10.10.0.101"
        );
        assert!(
            k1.contains("unicast_peer {\n        10.10.0.102\n    }"),
            "{k1}"
        );
    }

    #[test]
    fn explicit_priority_decides_the_master() {
        let mut spec = example("stacked");
        // Default priorities: first listed LB is MASTER.
        assert_eq!(vrrp_state(&spec, &spec.nodes[0]), "MASTER");
        assert_eq!(vrrp_state(&spec, &spec.nodes[1]), "BACKUP");
        spec.nodes[1].lb_priority = Some(150);
        let (a, b) = (spec.nodes[0].clone(), spec.nodes[1].clone());
        assert_eq!(
            (vrrp_state(&spec, &a), spec.lb_priority(&a)),
            ("BACKUP", 101)
        );
        assert_eq!(
            (vrrp_state(&spec, &b), spec.lb_priority(&b)),
            ("MASTER", 150)
        );
        let conf = get(&render(&spec, "lb-b"), KEEPALIVED_CONF_PATH).to_string();
        assert_eq!(line_with(&conf, "state "), "state MASTER");
        assert_eq!(line_with(&conf, "priority "), "priority 150");
    }

    #[test]
    fn stats_bound_to_own_address_and_backends_are_control_planes() {
        let spec = example("stacked");
        for (lb, addr) in [("lb-a", "10.20.0.2"), ("lb-b", "10.20.0.3")] {
            let files = render(&spec, lb);
            let cfg = get(&files, HAPROXY_CFG_PATH);
            let stats = cfg
                .split("listen stats")
                .nth(1)
                .unwrap_or_else(|| panic!("no stats in\n{cfg}"));
            assert_eq!(line_with(stats, "bind "), format!("bind {addr}:8404"));
            assert!(!stats.contains("*:"), "{stats}");
            assert_eq!(line_with(stats, "stats uri"), "stats uri /stats");
            assert_eq!(line_with(cfg, "bind "), "bind *:6443");
            let servers: Vec<&str> = cfg
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("server "))
                .collect();
            assert_eq!(
                servers,
                [
                    "server master-1 10.20.0.11:6443",
                    "server master-2 10.20.0.12:6443",
                    "server master-3 10.20.0.13:6443"
                ]
            );
        }
    }

    #[test]
    fn files_modes_and_services() {
        let spec = example("external");
        let files = render(&spec, "lb2");
        let meta: Vec<(&str, u32, bool)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.mode, f.sensitive))
            .collect();
        assert_eq!(
            meta,
            [
                (HAPROXY_CFG_PATH, 0o644, false),
                (KEEPALIVED_CONF_PATH, 0o600, true),
                (SYSCTL_PATH, 0o644, false)
            ]
        );
        assert!(get(&files, SYSCTL_PATH).contains("\nnet.ipv4.ip_nonlocal_bind = 1\n"));
        assert_eq!(services(), ["haproxy.service", "keepalived.service"]);
    }

    #[test]
    fn secret_never_in_debug_output() {
        let spec = example("external");
        let files = render(&spec, "lb1");
        assert!(get(&files, KEEPALIVED_CONF_PATH).contains(&format!("auth_pass {AUTH}\n")));
        let dbg = format!("{files:?} {:?}", materials());
        assert!(!dbg.contains(AUTH), "{dbg}");
    }

    /// The `frontend etcd` .. next blank line of a rendered haproxy.cfg, and its backend.
    fn etcd_sections(cfg: &str) -> Option<(&str, &str)> {
        let front = cfg.split("\nfrontend etcd\n").nth(1)?;
        let front = front.split("\n\n").next()?;
        let back = cfg.split("\nbackend etcd-backend\n").nth(1)?;
        let back = back.split("\n\n").next()?;
        Some((front, back))
    }

    #[test]
    fn etcd_frontend_only_with_etcd_port() {
        for name in ["external", "stacked"] {
            let spec = example(name);
            assert_eq!(spec.load_balancer.as_ref().and_then(|l| l.etcd_port), None);
            for lb in spec.lbs() {
                let cfg = get(&render(&spec, &lb.name), HAPROXY_CFG_PATH).to_string();
                assert!(etcd_sections(&cfg).is_none(), "{name} {}:\n{cfg}", lb.name);
                assert!(!cfg.contains(":2379"), "{cfg}");
            }
        }
        let spec = example("lab");
        assert_eq!(
            spec.load_balancer.as_ref().and_then(|l| l.etcd_port),
            Some(2379)
        );
        for (lb, addr) in [("lb-1", "198.18.0.101"), ("lb-2", "198.18.0.102")] {
            let cfg = get(&render(&spec, lb), HAPROXY_CFG_PATH).to_string();
            let (front, back) =
                etcd_sections(&cfg).unwrap_or_else(|| panic!("no etcd frontend in\n{cfg}"));
            assert_eq!(line_with(front, "bind "), "bind *:2379");
            assert_eq!(line_with(front, "timeout client"), "timeout client 2h");
            assert_eq!(
                line_with(front, "default_backend"),
                "default_backend etcd-backend"
            );
            assert_eq!(line_with(back, "balance"), "balance roundrobin");
            assert_eq!(line_with(back, "timeout server"), "timeout server 2h");
            assert_eq!(line_with(back, "option "), "option tcp-check");
            assert!(
                line_with(back, "default-server").contains("check inter 2s fall 3 rise 2"),
                "{back}"
            );
            let servers: Vec<&str> = back
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("server "))
                .collect();
            assert_eq!(
                servers,
                [
                    "server etcd-1 198.18.0.11:2379",
                    "server etcd-2 198.18.0.12:2379",
                    "server etcd-3 198.18.0.13:2379"
                ]
            );
            // The API frontend and the stats page are untouched.
            assert!(cfg.contains("frontend k8s-api\n    bind *:6443\n"), "{cfg}");
            let stats = cfg.split("listen stats").nth(1).unwrap_or_default();
            assert_eq!(line_with(stats, "bind "), format!("bind {addr}:8404"));
        }
        // Another port, and the stacked topology (members are the control planes).
        let mut stacked = example("stacked");
        if let Some(l) = stacked.load_balancer.as_mut() {
            l.etcd_port = Some(12379);
        }
        let cfg = get(&render(&stacked, "lb-a"), HAPROXY_CFG_PATH).to_string();
        let (front, back) = etcd_sections(&cfg).unwrap_or_else(|| panic!("{cfg}"));
        assert_eq!(line_with(front, "bind "), "bind *:12379");
        assert_eq!(
            line_with(back, "server "),
            "server master-1 10.20.0.11:2379"
        );
    }

    // --- the real tools ------------------------------------------------------------------

    fn tool(path: &str) -> &str {
        assert!(
            Path::new(path).exists(),
            "{path} is not installed (apt-get install haproxy keepalived)"
        );
        path
    }

    fn run(cmd: &mut Command) -> (bool, String) {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn haproxy_check(dir: &Path, name: &str, text: &str) -> (bool, String) {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("write {file:?}: {e}"));
        run(Command::new(tool("/usr/sbin/haproxy"))
            .arg("-c")
            .arg("-f")
            .arg(&file))
    }

    /// keepalived's config test rejects interfaces this machine lacks and loopback: check the
    /// rendered file with a real interface of this machine substituted for the spec's.
    /// Nothing is sent anywhere: `--config-test` only parses.
    fn local_interface() -> String {
        let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
            .unwrap_or_else(|e| panic!("/sys/class/net: {e}"))
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n != "lo")
            .collect();
        names.sort();
        names
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("keepalived --config-test needs a non-loopback interface"))
    }

    fn keepalived_check(dir: &Path, name: &str, text: &str) -> (bool, String) {
        let file = dir.join(name);
        // keepalived skips a missing `-f` file and passes: make sure it is there.
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("write {file:?}: {e}"));
        assert!(file.is_file());
        run(Command::new(tool("/usr/sbin/keepalived"))
            .arg("--config-test")
            .arg("-f")
            .arg(&file))
    }

    #[test]
    fn real_tools_accept_every_rendered_config() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let iface = local_interface();
        let mut checked = 0;
        let mut with_etcd_frontend = 0;
        for example_name in ["external", "stacked", "lab"] {
            let spec = example(example_name);
            for lb in spec.lbs() {
                let files = render(&spec, &lb.name);
                let tag = format!("{example_name}-{}", lb.name);
                let cfg = get(&files, HAPROXY_CFG_PATH);
                if cfg.contains("\nfrontend etcd\n") {
                    with_etcd_frontend += 1;
                }
                let (ok, out) = haproxy_check(dir.path(), &format!("{tag}.cfg"), cfg);
                assert!(ok, "haproxy -c rejects {tag}:\n{out}");
                assert!(
                    !out.contains("WARNING") && !out.contains("ALERT"),
                    "haproxy -c warns on {tag}:\n{out}"
                );
                let spec_iface = &spec
                    .load_balancer
                    .as_ref()
                    .unwrap_or_else(|| panic!("lb"))
                    .interface;
                let conf = get(&files, KEEPALIVED_CONF_PATH)
                    .replace(&format!(" {spec_iface}\n"), &format!(" {iface}\n"));
                let (ok, out) = keepalived_check(dir.path(), &format!("{tag}.conf"), &conf);
                assert!(ok, "keepalived --config-test rejects {tag}:\n{out}\n{conf}");
                checked += 1;
            }
        }
        assert_eq!(checked, 6);
        // The lab's two LBs carry the etcd frontend (loadBalancer.etcdPort).
        assert_eq!(with_etcd_frontend, 2);
        // The checks can fail: a broken file is rejected by both tools.
        let (ok, _) = haproxy_check(
            dir.path(),
            "bad.cfg",
            "frontend x\n    bind *:6443\n    bogus_keyword 1\n",
        );
        assert!(!ok, "haproxy -c accepted a bad config");
        let spec = example("external");
        let good = get(&render(&spec, "lb1"), KEEPALIVED_CONF_PATH)
            .replace(" enp0s2\n", &format!(" {iface}\n"));
        let (ok, _) = keepalived_check(
            dir.path(),
            "bad.conf",
            &good.replace("auth_type PASS", "auth_type BOGUS"),
        );
        assert!(!ok, "keepalived --config-test accepted a bad config");
    }

    #[test]
    fn snapshots_external() {
        let spec = example("external");
        let lb1 = render(&spec, "lb1");
        insta::assert_snapshot!("haproxy_cfg_lb1", get(&lb1, HAPROXY_CFG_PATH));
        let masked = get(&lb1, KEEPALIVED_CONF_PATH).replace(AUTH, "<keepalived-auth>");
        insta::assert_snapshot!("keepalived_conf_lb1", masked);
        let lb2 = render(&spec, "lb2");
        insta::assert_snapshot!(
            "keepalived_conf_lb2",
            get(&lb2, KEEPALIVED_CONF_PATH).replace(AUTH, "<keepalived-auth>")
        );
        insta::assert_snapshot!("sysctl_lb", get(&lb2, SYSCTL_PATH));
    }

    #[test]
    fn snapshot_lab_with_etcd_frontend() {
        let spec = example("lab");
        let lb1 = render(&spec, "lb-1");
        insta::assert_snapshot!("haproxy_cfg_lab_lb1", get(&lb1, HAPROXY_CFG_PATH));
    }
}
