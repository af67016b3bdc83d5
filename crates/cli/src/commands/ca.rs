//! `kubeha ca`: bring an existing CA under kubeha's management, and list what the state
//! dir holds with expiry.

use std::{collections::BTreeMap, process::ExitCode};

use kubeha_pki::CaId;
use serde::Serialize;

use super::certs::scan;
use crate::{
    args::{CaCommand, CaName, Global},
    error::{CliError, EXIT_FAILURE},
    output::emit,
    table::Table,
};

pub fn run(g: &Global, c: &CaCommand) -> Result<ExitCode, CliError> {
    match c {
        CaCommand::Import { ca, cert, key } => {
            let loaded = super::load_spec(g)?;
            let cert_pem = std::fs::read_to_string(cert).map_err(CliError::io("read", cert))?;
            let key_pem = std::fs::read_to_string(key).map_err(CliError::io("read", key))?;
            let id = match ca {
                CaName::Kubernetes => CaId::Kubernetes,
                CaName::FrontProxy => CaId::FrontProxy,
                CaName::Etcd => CaId::Etcd,
            };
            let mut store = super::open_store(g, &loaded.spec.name)?;
            store.import_ca(id, &cert_pem, &key_pem)?;
            errln!(
                "imported {} CA into {}; `kubeha render` issues leaves from it",
                id.common_name(),
                g.state_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::List => list(g),
    }
}

/// One certificate kept in the state dir.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    /// Path below `pki/` without `.crt`: `ca`, `etcd/ca`, `nodes/cp-1/apiserver`, …
    name: String,
    file: String,
    is_ca: bool,
    subject: String,
    /// The issuing CA by kubeha's name (`kubernetes`, `front-proxy`, `etcd`), `self` for a
    /// self-signed CA, else the issuer's CN.
    issuer: String,
    not_after: Option<String>,
    seconds_left: Option<i64>,
    /// kubeadm's RESIDUAL TIME: `364d`, `9y`, `expired`.
    residual: String,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListReport {
    cluster: String,
    state_dir: String,
    checked_at: String,
    certificates: Vec<Row>,
}

/// `kubeha ca list`: what `kubeadm certs check-expiration` shows, from the state dir alone.
/// Read-only: no lock is taken (it works while another run holds it) and nothing is created.
fn list(g: &Global) -> Result<ExitCode, CliError> {
    let loaded = super::load_spec(g)?;
    let view = super::existing_state(g, &loaded.spec.name)?;
    let pki = view.dir().join("pki");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Issuer CN → kubeha's name of the CA, from the CA certificates actually in state (an
    // imported CA keeps its own CN).
    let ca_names: BTreeMap<String, &'static str> = CaId::ALL
        .iter()
        .filter_map(|id| {
            let pem = view.ca_cert(*id).ok()?;
            let info = scan::first_certificate(pem.as_bytes())
                .and_then(|der| scan::cert_info(&der))
                .ok()?;
            Some((info.subject, id.name()))
        })
        .collect();
    let mut rows: Vec<Row> = view
        .certificate_files()
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&pki).unwrap_or(&path);
            let name = rel.with_extension("").display().to_string();
            let info = std::fs::read(&path)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|bytes| scan::first_certificate(&bytes))
                .and_then(|der| scan::cert_info(&der));
            match info {
                Ok(c) => Row {
                    name,
                    file: path.display().to_string(),
                    is_ca: c.is_ca,
                    issuer: if c.is_ca && c.issuer == c.subject {
                        "self".into()
                    } else {
                        ca_names
                            .get(&c.issuer)
                            .map_or_else(|| c.issuer.clone(), |n| (*n).to_string())
                    },
                    subject: c.subject,
                    not_after: Some(scan::format_time(c.not_after)),
                    seconds_left: Some(c.not_after - now),
                    residual: residual(c.not_after - now),
                    error: None,
                },
                Err(e) => Row {
                    name,
                    file: path.display().to_string(),
                    is_ca: false,
                    subject: String::new(),
                    issuer: String::new(),
                    not_after: None,
                    seconds_left: None,
                    residual: "unreadable".into(),
                    error: Some(e),
                },
            }
        })
        .collect();
    // CAs first, as kubeadm lists them after the leaves' table; then leaves by name.
    rows.sort_by(|a, b| b.is_ca.cmp(&a.is_ca).then_with(|| a.name.cmp(&b.name)));
    let unreadable = rows.iter().any(|r| r.error.is_some());
    let report = ListReport {
        cluster: loaded.spec.name.clone(),
        state_dir: view.dir().display().to_string(),
        checked_at: scan::format_time(now),
        certificates: rows,
    };
    emit(g.output, &report, || list_table(&report))?;
    Ok(if unreadable {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Time left the way kubeadm prints it: the largest whole unit (`45s`, `12m`, `5h`, `364d`,
/// `9y`), or `expired`.
fn residual(seconds: i64) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    const YEAR: i64 = 365 * DAY;
    match seconds {
        s if s <= 0 => "expired".into(),
        s if s < MINUTE => format!("{s}s"),
        s if s < HOUR => format!("{}m", s / MINUTE),
        s if s < DAY => format!("{}h", s / HOUR),
        s if s < YEAR => format!("{}d", s / DAY),
        s => format!("{}y", s / YEAR),
    }
}

fn list_table(r: &ListReport) -> String {
    let mut t = Table::new([
        "CERTIFICATE",
        "SUBJECT",
        "ISSUER",
        "EXPIRES",
        "RESIDUAL TIME",
    ]);
    for row in &r.certificates {
        t.row([
            row.name.clone(),
            row.subject.clone(),
            row.issuer.clone(),
            row.not_after.clone().unwrap_or_else(|| "-".into()),
            match &row.error {
                Some(e) => format!("unreadable: {e}"),
                None => row.residual.clone(),
            },
        ]);
    }
    let cas = r.certificates.iter().filter(|c| c.is_ca).count();
    format!(
        "{}\n{} CA(s) and {} certificate(s) in {} (as of {})\n",
        t.render(),
        cas,
        r.certificates.len() - cas,
        r.state_dir,
        r.checked_at
    )
}

#[cfg(test)]
mod tests {
    use super::residual;

    #[test]
    fn residual_takes_the_largest_whole_unit() {
        assert_eq!(residual(-5), "expired");
        assert_eq!(residual(0), "expired");
        assert_eq!(residual(59), "59s");
        assert_eq!(residual(3_599), "59m");
        assert_eq!(residual(86_399), "23h");
        assert_eq!(residual(364 * 86_400 + 86_399), "364d");
        assert_eq!(residual(10 * 365 * 86_400), "10y");
    }
}
