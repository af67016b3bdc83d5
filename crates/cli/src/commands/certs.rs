//! `kubeha certs check`: the certificates actually on each host, read over SSH in parallel
//! (one remote command per host, see [`scan`]), with expiry per host and file.
//!
//! Exit status: 0 when every certificate has at least `--warn-days` days left, 1 when one has
//! fewer, is expired or unreadable, or a host could not be checked.

mod renew;
pub(crate) mod scan;

use std::{process::ExitCode, time::Duration};

use kubeha_pki::StateView;
use kubeha_transport::{SshTransport, Transport, TransportError, for_each_host};
use serde::Serialize;

use crate::{
    args::{CertsCommand, Global},
    error::{CliError, EXIT_FAILURE},
    output::emit,
    table::Table,
};

use scan::{FoundCert, Standing};

/// Time allowed to set up each SSH connection: a dead host costs this much, not more.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Hosts read at once.
const MAX_PARALLEL: usize = 64;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    cluster: String,
    warn_days: i64,
    checked_at: String,
    hosts: Vec<HostRow>,
    summary: Summary,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HostRow {
    host: String,
    address: String,
    reachable: bool,
    error: Option<String>,
    certificates: Vec<CertRow>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CertRow {
    path: String,
    /// For a kubeconfig: the user entry the certificate is embedded under.
    kubeconfig_user: Option<String>,
    subject: String,
    issuer: String,
    is_ca: bool,
    not_after: Option<String>,
    days_left: Option<i64>,
    /// `ok`, `warn`, `expired` or `unreadable`.
    status: String,
    error: Option<String>,
    #[serde(skip)]
    standing: Standing,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    hosts: usize,
    unreachable: usize,
    certificates: usize,
    ok: usize,
    warn: usize,
    expired: usize,
    unreadable: usize,
    soonest: Option<Soonest>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Soonest {
    host: String,
    path: String,
    kubeconfig_user: Option<String>,
    days_left: i64,
}

impl Summary {
    fn all_good(&self) -> bool {
        self.unreachable == 0 && self.warn == 0 && self.expired == 0 && self.unreadable == 0
    }
}

pub fn run(g: &Global, c: &CertsCommand) -> Result<ExitCode, CliError> {
    let warn_days = match c {
        CertsCommand::Check { warn_days } => warn_days,
        CertsCommand::Renew {
            all,
            names,
            dry_run,
        } => return renew::run(g, *all, names, *dry_run),
    };
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
                    n.address.to_string(),
                    t.with_connect_timeout(CONNECT_TIMEOUT),
                )
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::Input {
            message: e.to_string(),
            help: e.help().unwrap_or_default(),
        })?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let parallel = hosts.len().clamp(1, MAX_PARALLEL);
    let scanned = for_each_host(hosts, parallel, |(_, t)| scan::scan(t, ""));
    super::close_all(scanned.iter().map(|((_, t), _)| t));
    let rows: Vec<HostRow> = scanned
        .into_iter()
        .map(|((address, t), r)| host_row(t.host(), &address, r, now, *warn_days))
        .collect();
    let report = report(&spec.name, rows, now, *warn_days);
    emit(g.output, &report, || human(&report))?;
    Ok(if report.summary.all_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

/// An error and its causes on one line (ssh's own words are a source of the transport error).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn host_row(
    host: &str,
    address: &str,
    scanned: Result<Vec<FoundCert>, TransportError>,
    now: i64,
    warn_days: i64,
) -> HostRow {
    match scanned {
        Ok(found) => HostRow {
            host: host.to_string(),
            address: address.to_string(),
            reachable: true,
            error: None,
            certificates: found
                .into_iter()
                .map(|f| cert_row(f, now, warn_days))
                .collect(),
        },
        Err(e) => HostRow {
            host: host.to_string(),
            address: address.to_string(),
            reachable: false,
            error: Some(chain(&e)),
            certificates: Vec::new(),
        },
    }
}

fn cert_row(f: FoundCert, now: i64, warn_days: i64) -> CertRow {
    match f.cert {
        Ok(c) => {
            let standing = scan::standing(c.not_after, now, warn_days);
            CertRow {
                path: f.path,
                kubeconfig_user: f.user,
                subject: c.subject,
                issuer: c.issuer,
                is_ca: c.is_ca,
                not_after: Some(scan::format_time(c.not_after)),
                days_left: Some(scan::days_left(c.not_after, now)),
                status: standing.as_str().to_ascii_lowercase(),
                error: None,
                standing,
            }
        }
        Err(e) => CertRow {
            path: f.path,
            kubeconfig_user: f.user,
            subject: String::new(),
            issuer: String::new(),
            is_ca: false,
            not_after: None,
            days_left: None,
            status: "unreadable".into(),
            error: Some(e),
            standing: Standing::Unreadable,
        },
    }
}

fn report(cluster: &str, hosts: Vec<HostRow>, now: i64, warn_days: i64) -> Report {
    let mut s = Summary {
        hosts: hosts.len(),
        ..Summary::default()
    };
    for h in &hosts {
        if !h.reachable {
            s.unreachable += 1;
        }
        for c in &h.certificates {
            s.certificates += 1;
            match c.standing {
                Standing::Ok => s.ok += 1,
                Standing::Warn => s.warn += 1,
                Standing::Expired => s.expired += 1,
                Standing::Unreadable => s.unreadable += 1,
            }
            if let Some(d) = c.days_left
                && s.soonest.as_ref().is_none_or(|x| d < x.days_left)
            {
                s.soonest = Some(Soonest {
                    host: h.host.clone(),
                    path: c.path.clone(),
                    kubeconfig_user: c.kubeconfig_user.clone(),
                    days_left: d,
                });
            }
        }
    }
    Report {
        cluster: cluster.to_string(),
        warn_days,
        checked_at: scan::format_time(now),
        hosts,
        summary: s,
    }
}

fn file_label(path: &str, user: Option<&str>) -> String {
    match user {
        Some(u) => format!("{path} ({u})"),
        None => path.to_string(),
    }
}

fn human(r: &Report) -> String {
    let mut t = Table::new([
        "HOST",
        "FILE",
        "SUBJECT",
        "ISSUER",
        "NOT AFTER",
        "DAYS LEFT",
        "STATUS",
    ]);
    let mut notes = String::new();
    for h in &r.hosts {
        if !h.reachable {
            notes.push_str(&format!(
                "{}: UNREACHABLE, not checked: {}\n",
                h.host,
                h.error.as_deref().unwrap_or("unknown error")
            ));
            continue;
        }
        if h.certificates.is_empty() {
            notes.push_str(&format!("{}: no certificates found\n", h.host));
        }
        for c in &h.certificates {
            let file = file_label(&c.path, c.kubeconfig_user.as_deref());
            match &c.error {
                Some(e) => t.row([
                    h.host.clone(),
                    file,
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    format!("UNREADABLE: {e}"),
                ]),
                None => t.row([
                    h.host.clone(),
                    file,
                    if c.is_ca {
                        format!("{} (CA)", c.subject)
                    } else {
                        c.subject.clone()
                    },
                    c.issuer.clone(),
                    c.not_after.clone().unwrap_or_default(),
                    c.days_left.map_or(String::new(), |d| d.to_string()),
                    c.standing.as_str().to_string(),
                ]),
            }
        }
    }
    let s = &r.summary;
    let mut out = String::new();
    if s.certificates > 0 {
        out.push_str(&t.render());
    }
    if !notes.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&notes);
    }
    let checked = s.hosts - s.unreachable;
    out.push_str(&format!(
        "\n{} certificate(s) on {checked} of {} host(s): {} ok, {} WARN (< {} days), {} EXPIRED",
        s.certificates, s.hosts, s.ok, s.warn, r.warn_days, s.expired
    ));
    if s.unreadable > 0 {
        out.push_str(&format!(", {} UNREADABLE", s.unreadable));
    }
    if s.unreachable > 0 {
        out.push_str(&format!("; {} host(s) UNREACHABLE", s.unreachable));
    }
    if let Some(x) = &s.soonest {
        let when = if x.days_left < 0 {
            format!("expired {} day(s) ago", -x.days_left)
        } else {
            format!("expires in {} day(s)", x.days_left)
        };
        out.push_str(&format!(
            "; soonest: {} {} {when}",
            x.host,
            file_label(&x.path, x.kubeconfig_user.as_deref())
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kubeha_transport::Detail;

    use super::*;
    use scan::CertInfo;

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn found(path: &str, user: Option<&str>, days: i64) -> FoundCert {
        FoundCert {
            path: path.into(),
            user: user.map(Into::into),
            cert: Ok(CertInfo {
                subject: "kube-apiserver".into(),
                issuer: "kubernetes".into(),
                not_after: NOW + days * DAY + 60,
                is_ca: false,
            }),
        }
    }

    fn unreachable(host: &str) -> TransportError {
        TransportError::Unreachable {
            host: host.into(),
            address: "10.0.0.9:22".into(),
            detail: Detail("ssh: connect to host 10.0.0.9 port 22: Connection refused".into()),
        }
    }

    #[test]
    fn all_fresh_is_success() {
        let rows = vec![host_row(
            "cp-1",
            "10.0.0.1",
            Ok(vec![found("/etc/kubernetes/pki/apiserver.crt", None, 364)]),
            NOW,
            30,
        )];
        let r = report("c", rows, NOW, 30);
        assert!(r.summary.all_good());
        assert_eq!(r.summary.ok, 1);
        let text = human(&r);
        assert!(text.contains("/etc/kubernetes/pki/apiserver.crt"), "{text}");
        assert!(text.contains("364"), "{text}");
        assert!(
            text.contains(
                "1 certificate(s) on 1 of 1 host(s): 1 ok, 0 WARN (< 30 days), 0 EXPIRED"
            ),
            "{text}"
        );
    }

    #[test]
    fn warn_expired_unreadable_and_unreachable_fail_and_are_named() {
        let rows = vec![
            host_row(
                "cp-1",
                "10.0.0.1",
                Ok(vec![
                    found("/etc/kubernetes/pki/apiserver.crt", None, 10),
                    found("/etc/kubernetes/admin.conf", Some("kubernetes-admin"), -3),
                    FoundCert {
                        path: "/etc/kubernetes/pki/broken.crt".into(),
                        user: None,
                        cert: Err("no certificate in the file".into()),
                    },
                ]),
                NOW,
                30,
            ),
            host_row("lb1", "10.0.0.2", Ok(vec![]), NOW, 30),
            host_row("wn-1", "10.0.0.9", Err(unreachable("wn-1")), NOW, 30),
        ];
        let r = report("c", rows, NOW, 30);
        let s = &r.summary;
        assert!(!s.all_good());
        assert_eq!(
            (s.warn, s.expired, s.unreadable, s.unreachable),
            (1, 1, 1, 1)
        );
        let soonest = s.soonest.as_ref().unwrap();
        assert_eq!((soonest.host.as_str(), soonest.days_left), ("cp-1", -3));
        let text = human(&r);
        assert!(text.contains("WARN"), "{text}");
        assert!(
            text.contains("/etc/kubernetes/admin.conf (kubernetes-admin)"),
            "{text}"
        );
        assert!(text.contains("EXPIRED"), "{text}");
        assert!(
            text.contains("UNREADABLE: no certificate in the file"),
            "{text}"
        );
        assert!(text.contains("lb1: no certificates found"), "{text}");
        assert!(text.contains("wn-1: UNREACHABLE, not checked: cannot reach host wn-1 at 10.0.0.9:22: ssh: connect"), "{text}");
        assert!(
            text.contains(
                "soonest: cp-1 /etc/kubernetes/admin.conf (kubernetes-admin) expired 3 day(s) ago"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["hosts"][0]["certificates"][1]["status"], "expired");
        assert_eq!(
            json["hosts"][0]["certificates"][1]["kubeconfigUser"],
            "kubernetes-admin"
        );
        assert_eq!(json["hosts"][0]["certificates"][0]["status"], "warn");
        assert_eq!(json["hosts"][2]["reachable"], false);
        assert_eq!(json["summary"]["unreachable"], 1);
    }
}
