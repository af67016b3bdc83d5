//! `kubeha status`: what the cluster looks like right now, read from the hosts and from
//! etcd's v3 API directly (mutual TLS), never from etcdctl. Changes nothing and takes no
//! lock, so it works while `kubeha up` runs.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::ExitCode,
    time::{Duration, Instant},
};

use kubeha_pki::StateView;
use kubeha_spec::{Role, Spec};
use kubeha_transport::{Command, SshTransport, Transport, for_each_host};
use serde::Serialize;

use crate::{args::Global, error::CliError, output::emit, table::Table};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusReport {
    cluster: String,
    healthy: bool,
    etcd: EtcdStatus,
    vip: Option<VipStatus>,
    haproxy: Vec<Backend>,
    certificates: Vec<CertRow>,
    nodes: Vec<NodeRow>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct EtcdStatus {
    members: Vec<MemberRow>,
    healthy: usize,
    total: usize,
    quorum: bool,
    error: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberRow {
    id: String,
    name: String,
    peer_urls: Vec<String>,
    client_urls: Vec<String>,
    is_leader: bool,
    is_learner: bool,
    version: String,
    db_size: u64,
    raft_term: u64,
    healthy: bool,
    latency_ms: f64,
    error: Option<String>,
}

#[derive(Serialize)]
struct VipStatus {
    address: String,
    holders: Vec<String>,
}

#[derive(Serialize)]
struct Backend {
    lb: String,
    proxy: String,
    server: String,
    status: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CertRow {
    file: String,
    subject: String,
    not_after: String,
    days_left: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeRow {
    name: String,
    address: String,
    roles: String,
    reachable: bool,
    latency_ms: f64,
    error: Option<String>,
}

pub fn run(g: &Global) -> Result<ExitCode, CliError> {
    let loaded = super::load_spec(g)?;
    let spec = &loaded.spec;
    let view = StateView::new(&g.state_dir, &spec.name);
    // Looking changes nothing: control sockets and first-contact host keys go to scratch.
    let scratch = super::scratch_ssh_dir(view.dir())?;
    let hosts: Vec<(String, SshTransport)> = spec
        .nodes
        .iter()
        .map(|n| {
            SshTransport::new(n, scratch.path()).map(|t| {
                (
                    n.name.clone(),
                    t.with_connect_timeout(Duration::from_secs(3)),
                )
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::Input {
            message: e.to_string(),
            help: e.help().unwrap_or_default(),
        })?;

    let nodes = reachability(spec, &hosts);
    let etcd = etcd_status(spec, &view);
    let vip = spec.load_balancer.as_ref().map(|lb| {
        let lbs: Vec<&dyn Transport> = hosts
            .iter()
            .filter(|(n, _)| spec.node(n).is_some_and(|x| x.has(Role::Lb)))
            .map(|(_, t)| t as &dyn Transport)
            .collect();
        VipStatus {
            address: lb.vip.to_string(),
            holders: kubeha_apply::gate::vip_holders(lb.vip, &lbs),
        }
    });
    super::close_all(hosts.iter().map(|(_, t)| t));
    let haproxy = haproxy_backends(spec);
    let certificates = certificates(&view);
    let healthy = etcd.quorum
        && etcd.healthy == etcd.total
        && vip.as_ref().is_none_or(|v| v.holders.len() == 1)
        && nodes.iter().all(|n| n.reachable);
    let report = StatusReport {
        cluster: spec.name.clone(),
        healthy,
        etcd,
        vip,
        haproxy,
        certificates,
        nodes,
    };
    emit(g.output, &report, || human(&report))?;
    Ok(if report.etcd.quorum {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::error::EXIT_FAILURE)
    })
}

fn reachability(spec: &Spec, hosts: &[(String, SshTransport)]) -> Vec<NodeRow> {
    let results = for_each_host(hosts.iter(), 16, |(_, t)| {
        let t0 = Instant::now();
        t.run(&Command::new(["true"]).timeout(Duration::from_secs(5)))
            .map(|_| t0.elapsed())
    });
    results
        .into_iter()
        .map(|((name, _), r)| {
            let node = spec.node(name);
            NodeRow {
                name: name.clone(),
                address: node.map_or(String::new(), |n| n.address.to_string()),
                roles: node.map_or(String::new(), |n| {
                    n.roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                }),
                reachable: r.is_ok(),
                latency_ms: r.as_ref().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
                error: r.err().map(|e| e.to_string()),
            }
        })
        .collect()
}

fn etcd_status(spec: &Spec, view: &StateView) -> EtcdStatus {
    let members = spec.etcd_members();
    let total = members.len();
    let fail = |e: String| EtcdStatus {
        total,
        error: Some(e),
        ..Default::default()
    };
    let client = match super::etcd::client_from_state(spec, view, Duration::from_secs(2)) {
        Ok(c) => c,
        Err(e) => {
            return fail(format!(
                "{} (run `kubeha up` or `kubeha render` first)",
                kubeha_etcd::error_chain(&e)
            ));
        }
    };
    let list = match client.member_list() {
        Ok(l) => l,
        Err(e) => {
            return fail(format!(
                "no member answered: {}",
                kubeha_etcd::error_chain(&e)
            ));
        }
    };
    let rows: Vec<MemberRow> = for_each_host(list, 8, |m| {
        let endpoint = m.client_urls.first().cloned().unwrap_or_default();
        let h = if endpoint.is_empty() {
            None
        } else {
            Some(client.health(&endpoint))
        };
        let st = if endpoint.is_empty() {
            None
        } else {
            client.status(&endpoint).ok()
        };
        Ok::<_, ()>(MemberRow {
            id: m.id.clone(),
            name: if m.name.is_empty() {
                "(not started)".into()
            } else {
                m.name.clone()
            },
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
            is_leader: st.as_ref().is_some_and(|s| s.is_leader),
            is_learner: m.is_learner,
            version: st.as_ref().map_or(String::new(), |s| s.version.clone()),
            db_size: st.as_ref().map_or(0, |s| s.db_size),
            raft_term: st.as_ref().map_or(0, |s| s.raft_term),
            healthy: h.as_ref().is_some_and(|h| h.healthy),
            latency_ms: h.as_ref().map_or(0.0, |h| h.took.as_secs_f64() * 1000.0),
            error: h.and_then(|h| h.error),
        })
    })
    .into_iter()
    .filter_map(|(_, r)| r.ok())
    .collect();
    let voters = rows.iter().filter(|r| !r.is_learner).count();
    let healthy = rows.iter().filter(|r| r.healthy).count();
    let healthy_voters = rows.iter().filter(|r| r.healthy && !r.is_learner).count();
    EtcdStatus {
        quorum: healthy_voters > voters / 2,
        healthy,
        total: rows.len(),
        members: rows,
        error: None,
    }
}

/// HAProxy's own view of its backends, from each LB's stats page (CSV).
fn haproxy_backends(spec: &Spec) -> Vec<Backend> {
    let Some(lb) = &spec.load_balancer else {
        return vec![];
    };
    let mut out = Vec::new();
    for n in spec.lbs() {
        let addr = SocketAddr::new(n.address, lb.stats_port);
        match http_get(addr, "/stats;csv") {
            Ok(csv) => {
                for line in csv.lines().filter(|l| !l.starts_with('#')) {
                    let f: Vec<&str> = line.split(',').collect();
                    if f.len() > 17 && f[1] != "FRONTEND" && f[1] != "BACKEND" && f[0] != "stats" {
                        out.push(Backend {
                            lb: n.name.clone(),
                            proxy: f[0].into(),
                            server: f[1].into(),
                            status: f[17].into(),
                        });
                    }
                }
            }
            Err(e) => out.push(Backend {
                lb: n.name.clone(),
                proxy: "-".into(),
                server: "-".into(),
                status: format!("stats unreachable: {e}"),
            }),
        }
    }
    out
}

fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body
        .split_once("\r\n\r\n")
        .map_or(body.clone(), |(_, b)| b.to_string()))
}

fn certificates(view: &StateView) -> Vec<CertRow> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut rows = Vec::new();
    for f in view.certificate_files() {
        let Ok(text) = std::fs::read(&f) else {
            continue;
        };
        let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&text) else {
            continue;
        };
        let Ok(cert) = pem.parse_x509() else { continue };
        let na = cert.validity().not_after.timestamp();
        rows.push(CertRow {
            file: f
                .strip_prefix(view.dir())
                .unwrap_or(&f)
                .display()
                .to_string(),
            subject: cert.subject().to_string(),
            not_after: cert.validity().not_after.to_string(),
            days_left: (na - now) / 86_400,
        });
    }
    rows
}

fn human(r: &StatusReport) -> String {
    let mut s = String::new();
    let e = &r.etcd;
    s.push_str(&format!(
        "etcd: {}/{} members healthy, quorum {}{}\n",
        e.healthy,
        e.total,
        if e.quorum { "ok" } else { "LOST" },
        e.error
            .as_ref()
            .map_or(String::new(), |x| format!(" — {x}"))
    ));
    let mut t = Table::new([
        "ID",
        "NAME",
        "PEER URLS",
        "CLIENT URLS",
        "LEADER",
        "LEARNER",
        "VERSION",
        "DB SIZE",
        "HEALTH",
        "LATENCY",
    ]);
    for m in &e.members {
        t.row([
            m.id.clone(),
            m.name.clone(),
            m.peer_urls.join(","),
            m.client_urls.join(","),
            if m.is_leader {
                "*".into()
            } else {
                String::new()
            },
            if m.is_learner {
                "yes".into()
            } else {
                "no".into()
            },
            m.version.clone(),
            format!("{} kB", m.db_size / 1024),
            if m.healthy {
                "healthy".into()
            } else {
                format!("UNHEALTHY {}", m.error.clone().unwrap_or_default())
            },
            format!("{:.1} ms", m.latency_ms),
        ]);
    }
    s.push_str(&t.render());
    if let Some(v) = &r.vip {
        s.push_str(&format!(
            "\nVIP {}: {}\n",
            v.address,
            match v.holders.len() {
                0 => "held by no LB".to_string(),
                1 => format!("held by {}", v.holders[0]),
                _ => format!(
                    "held by {} LBs at once: {}",
                    v.holders.len(),
                    v.holders.join(", ")
                ),
            }
        ));
    }
    if !r.haproxy.is_empty() {
        let mut t = Table::new(["LB", "PROXY", "SERVER", "STATUS"]);
        for b in &r.haproxy {
            t.row([
                b.lb.clone(),
                b.proxy.clone(),
                b.server.clone(),
                b.status.clone(),
            ]);
        }
        s.push('\n');
        s.push_str(&t.render());
    }
    if !r.certificates.is_empty() {
        let soonest = r.certificates.iter().min_by_key(|c| c.days_left);
        let cas: Vec<&CertRow> = r
            .certificates
            .iter()
            .filter(|c| !c.file.contains("/nodes/") && !c.file.contains("/operator/"))
            .collect();
        let soon = r.certificates.iter().filter(|c| c.days_left < 30).count();
        s.push_str(&format!(
            "\ncertificates: {} in state, {} expire within 30 days",
            r.certificates.len(),
            soon
        ));
        if let Some(c) = soonest {
            s.push_str(&format!("; soonest {} in {} days", c.file, c.days_left));
        }
        s.push('\n');
        for c in cas {
            s.push_str(&format!(
                "  {:<28} {} ({} days)\n",
                c.file, c.not_after, c.days_left
            ));
        }
    }
    let mut t = Table::new(["NODE", "ADDRESS", "ROLES", "SSH"]);
    for n in &r.nodes {
        t.row([
            n.name.clone(),
            n.address.clone(),
            n.roles.clone(),
            if n.reachable {
                format!("ok {:.0} ms", n.latency_ms)
            } else {
                format!("UNREACHABLE: {}", n.error.clone().unwrap_or_default())
            },
        ]);
    }
    s.push('\n');
    s.push_str(&t.render());
    s.push_str(&format!(
        "\ncluster {}: {}\n",
        r.cluster,
        if r.healthy { "healthy" } else { "DEGRADED" }
    ));
    s
}
