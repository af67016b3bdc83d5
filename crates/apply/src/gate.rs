//! Health gates: the condition that must hold before the next phase starts. Every gate is
//! bounded in time and says what it saw when it gives up.

use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use kubeha_etcd::{Client, TlsMaterial};
use kubeha_pki::{CaId, LeafId, LeafKind, Materials};
use kubeha_spec::Spec;
use kubeha_transport::{Command, Transport};
use serde::Serialize;

/// How a gate ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "detail")]
pub enum GateResult {
    Passed(String),
    /// The condition cannot be checked on these hosts (e.g. no kube-apiserver binary).
    NotVerifiable(String),
    Failed(String),
}

impl GateResult {
    pub fn passed(&self) -> bool {
        !matches!(self, GateResult::Failed(_))
    }

    pub fn text(&self) -> String {
        match self {
            GateResult::Passed(s) => format!("ok: {s}"),
            GateResult::NotVerifiable(s) => format!("not verifiable: {s}"),
            GateResult::Failed(s) => format!("FAILED: {s}"),
        }
    }
}

/// Polls `check` every `every` until it returns `Ok` or `timeout` passes.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<(T, Duration), String> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return Ok((v, start.elapsed())),
            Err(why) if start.elapsed() >= timeout => {
                return Err(format!("{why} (gave up after {:.0?})", timeout));
            }
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// An etcd client for the cluster's members, authenticating as a healthcheck client.
pub fn etcd_client(spec: &Spec, m: &Materials, timeout: Duration) -> Result<Client, String> {
    let members = spec.etcd_members();
    let first = members.first().ok_or("the cluster has no etcd member")?;
    let ca = m.ca(CaId::Etcd).ok_or("no etcd CA in the PKI")?;
    let client = m
        .leaf(&LeafId::new(&first.name, LeafKind::EtcdHealthcheckClient))
        .ok_or("no etcd healthcheck-client certificate in the PKI")?;
    let tls = TlsMaterial {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: client.cert_pem.clone(),
        key_pem: client.key_pem.clone(),
    };
    let endpoints = members.iter().map(|n| Spec::etcd_client_url(n)).collect();
    Client::new(endpoints, &tls, timeout).map_err(|e| kubeha_etcd::error_chain(&e))
}

/// Every member healthy and all agreeing on one leader.
pub fn etcd(spec: &Spec, m: &Materials, timeout: Duration) -> GateResult {
    let client = match etcd_client(spec, m, Duration::from_secs(2)) {
        Ok(c) => c,
        Err(e) => return GateResult::Failed(e),
    };
    let n = client.endpoints().len();
    let r = poll(timeout, Duration::from_millis(200), || {
        let mut leaders = std::collections::BTreeSet::new();
        let mut sick = Vec::new();
        for e in client.endpoints() {
            let h = client.health(e);
            if !h.healthy {
                sick.push(format!("{e}: {}", h.error.unwrap_or_default()));
                continue;
            }
            match client.status(e) {
                Ok(s) => {
                    leaders.insert(s.leader_id);
                }
                Err(err) => sick.push(format!("{e}: {}", kubeha_etcd::error_chain(&err))),
            }
        }
        if !sick.is_empty() {
            return Err(format!(
                "{} of {n} members unhealthy: {}",
                sick.len(),
                sick.join("; ")
            ));
        }
        if leaders.len() != 1 || leaders.contains("0") {
            return Err(format!("members disagree on the leader: {leaders:?}"));
        }
        Ok(leaders.into_iter().next().unwrap_or_default())
    });
    match r {
        Ok((leader, took)) => GateResult::Passed(format!(
            "{n}/{n} members healthy, leader {leader} ({took:.1?})"
        )),
        Err(e) => GateResult::Failed(e),
    }
}

/// Which LBs hold the VIP right now.
pub fn vip_holders(vip: IpAddr, lbs: &[&dyn Transport]) -> Vec<String> {
    let cmd = Command::new(["ip", "-o", "addr", "show"]).timeout(Duration::from_secs(5));
    lbs.iter()
        .filter(|t| {
            t.run(&cmd)
                .map(|o| {
                    o.stdout_lossy()
                        .split_whitespace()
                        .any(|w| w.split('/').next() == Some(&vip.to_string()))
                })
                .unwrap_or(false)
        })
        .map(|t| t.host().to_string())
        .collect()
}

pub fn tcp_accepts(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout).is_ok()
}

/// Exactly one LB holds the VIP and the API port accepts connections on it.
pub fn load_balancer(spec: &Spec, lbs: &[&dyn Transport], timeout: Duration) -> GateResult {
    let Some(lb) = &spec.load_balancer else {
        return GateResult::NotVerifiable("no load balancer in the cluster file".into());
    };
    let addr = SocketAddr::new(lb.vip, spec.endpoint.port);
    let r = poll(timeout, Duration::from_millis(200), || {
        let holders = vip_holders(lb.vip, lbs);
        if holders.len() != 1 {
            return Err(format!(
                "{} LB(s) hold the VIP {}: {holders:?}",
                holders.len(),
                lb.vip
            ));
        }
        if !tcp_accepts(addr, Duration::from_secs(1)) {
            return Err(format!("{addr} does not accept connections"));
        }
        Ok(holders[0].clone())
    });
    match r {
        Ok((holder, took)) => GateResult::Passed(format!(
            "{holder} holds {} and {addr} accepts ({took:.1?})",
            lb.vip
        )),
        Err(e) => GateResult::Failed(e),
    }
}

const PROXY_HEALTH: &str = "curl -sS --max-time 3 --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/apiserver-etcd-client.crt --key /etc/kubernetes/pki/apiserver-etcd-client.key https://127.0.0.1:2379/health";

/// Guide 000's check: etcd answers healthy through the host's local proxy, with the API
/// server's own client certificate.
pub fn etcd_proxy(t: &dyn Transport, timeout: Duration) -> GateResult {
    let cmd = Command::script(PROXY_HEALTH)
        .sudo()
        .allow_failure()
        .timeout(Duration::from_secs(10));
    let r = poll(timeout, Duration::from_millis(300), || {
        let out = t.run(&cmd).map_err(|e| e.to_string())?;
        let text = out.stdout_lossy();
        if out.success() && text.contains("\"health\":\"true\"") {
            Ok(())
        } else {
            Err(format!(
                "127.0.0.1:2379 on {} answered: {}{}",
                t.host(),
                text.trim(),
                out.stderr_lossy().trim()
            ))
        }
    });
    match r {
        Ok(((), took)) => {
            GateResult::Passed(format!("etcd healthy through 127.0.0.1:2379 ({took:.1?})"))
        }
        Err(e) => GateResult::Failed(e),
    }
}

/// `/livez` through the endpoint, where kube-apiserver can run at all.
pub fn apiserver(spec: &Spec, t: &dyn Transport, can_run: bool, timeout: Duration) -> GateResult {
    livez(&spec.endpoint.url(), t, can_run, timeout)
}

/// One control plane's own API server: `/livez` at its advertise address, asked on the host
/// itself. A control plane joins only after the previous one passed this (kubeadm's rule).
pub fn apiserver_local(
    node: &kubeha_spec::Node,
    t: &dyn Transport,
    can_run: bool,
    timeout: Duration,
) -> GateResult {
    livez(
        &format!("https://{}:6443", kubeha_spec::bracket(node.address)),
        t,
        can_run,
        timeout,
    )
}

fn livez(base: &str, t: &dyn Transport, can_run: bool, timeout: Duration) -> GateResult {
    if !can_run {
        return GateResult::NotVerifiable(
            "kube-apiserver not installed (no kubelet to run its static pod)".into(),
        );
    }
    let url = format!("{base}/livez");
    let cmd = Command::new(["curl", "-sk", "--max-time", "3", url.as_str()])
        .allow_failure()
        .timeout(Duration::from_secs(10));
    let r = poll(timeout, Duration::from_secs(1), || {
        let out = t.run(&cmd).map_err(|e| e.to_string())?;
        if out.stdout_lossy().trim() == "ok" {
            Ok(())
        } else {
            Err(format!("{url} answered {:?}", out.stdout_lossy().trim()))
        }
    });
    match r {
        Ok(((), took)) => GateResult::Passed(format!("{url} ok ({took:.1?})")),
        Err(e) => GateResult::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubeha_transport::LocalTransport;
    use std::process::{Child, Command as Proc, Stdio};

    /// `openssl s_server -HTTP` on 127.0.0.61: serves files of `dir` as raw HTTP responses.
    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn serve(dir: &std::path::Path, port: u16) -> Server {
        let ok = Proc::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=livez-test",
                "-days",
                "1",
                "-keyout",
                "k.pem",
                "-out",
                "c.pem",
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(ok.success());
        let child = Proc::new("openssl")
            .args([
                "s_server", "-quiet", "-HTTP", "-cert", "c.pem", "-key", "k.pem", "-accept",
            ])
            .arg(format!("127.0.0.61:{port}"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s_server starts");
        // Bounded wait for the listener.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.61", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Server(child)
    }

    #[test]
    fn livez_passes_only_on_ok_from_the_server_asked_on_the_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.61:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let _server = serve(dir.path(), port);
        let base = format!("https://127.0.0.61:{port}");
        let t = LocalTransport::new("cp-1");

        std::fs::write(
            dir.path().join("livez"),
            "HTTP/1.0 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n[-]etcd failed\n",
        )
        .expect("write");
        match livez(&base, &t, true, Duration::from_millis(1500)) {
            GateResult::Failed(detail) => assert!(detail.contains("etcd failed"), "{detail}"),
            other => panic!("an unhealthy API server passed: {other:?}"),
        }

        std::fs::write(
            dir.path().join("livez"),
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok",
        )
        .expect("write");
        match livez(&base, &t, true, Duration::from_secs(10)) {
            GateResult::Passed(s) => assert!(s.contains(&format!("{base}/livez ok")), "{s}"),
            other => panic!("a live API server failed: {other:?}"),
        }

        assert!(matches!(
            livez(&base, &t, false, Duration::from_secs(1)),
            GateResult::NotVerifiable(_)
        ));
    }
}
