//! `kubeha certs renew [--all | NAME…]`: re-issues leaf certificates (never a CA) with fresh
//! keys, pushes them and restarts their consumers without losing etcd quorum or the VIP.
//!
//! NAME is a leaf kind (`apiserver`, `etcd/server`, `admin.conf`: on every node that has it)
//! or `NODE/KIND` (`etcd-2/etcd/peer`). Rollout: etcd members one at a time — upload the
//! member's changed files, restart etcd, wait for the etcd gate (every member healthy, one
//! leader) before the next; then `kubeha_apply::converge` with parallelism 1 for the rest
//! (control planes' proxy, kubelet …; load balancers hold no certificates).

use std::{collections::BTreeSet, process::ExitCode, time::Duration};

use kubeha_apply::{Options, gate, service::ServiceManager};
use kubeha_pki::{LeafId, LeafKind, Materials};
use kubeha_render::{HostFile, Rendered};
use kubeha_spec::Spec;
use kubeha_transport::{Command, Transport, UploadFile, upload_many};

use crate::{args::Global, error::CliError};

const GATE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the user asked to renew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selector {
    All,
    /// `(node, kind base)`; `None` node = every node.
    Some(Vec<(Option<String>, String)>),
}

impl Selector {
    pub(crate) fn parse(spec: &Spec, all: bool, names: &[String]) -> Result<Selector, String> {
        if all {
            if !names.is_empty() {
                return Err("give either --all or names, not both".into());
            }
            return Ok(Selector::All);
        }
        if names.is_empty() {
            return Err("name the certificates to renew, or pass --all".into());
        }
        let kinds: Vec<&str> = LeafKind::ALL.iter().map(LeafKind::base).collect();
        let mut out = Vec::new();
        for n in names {
            let n = n.trim_end_matches(".crt");
            let (node, kind) = match n.split_once('/') {
                Some((node, rest)) if spec.node(node).is_some() => (Some(node.to_string()), rest),
                _ => (None, n),
            };
            if !kinds.contains(&kind) {
                return Err(format!(
                    "unknown certificate {n:?}: CAs are never renewed here; leaves are {}, optionally as NODE/NAME",
                    kinds.join(", ")
                ));
            }
            out.push((node, kind.to_string()));
        }
        Ok(Selector::Some(out))
    }

    pub(crate) fn matches(&self, id: &LeafId) -> bool {
        match self {
            Selector::All => true,
            Selector::Some(v) => v.iter().any(|(node, kind)| {
                id.kind.base() == kind && node.as_ref().is_none_or(|n| id.node.as_ref() == Some(n))
            }),
        }
    }
}

/// Per host, the rendered files that differ between two renders.
pub(crate) fn changed_files<'a>(
    old: &Rendered,
    new: &'a Rendered,
) -> Vec<(String, Vec<&'a HostFile>)> {
    new.hosts
        .iter()
        .map(|h| {
            let before = old.hosts.iter().find(|o| o.node == h.node);
            let files = h
                .files
                .iter()
                .filter(|f| before.is_none_or(|b| !b.files.iter().any(|o| o == *f)))
                .collect();
            (h.node.clone(), files)
        })
        .filter(|(_, f): &(String, Vec<&HostFile>)| !f.is_empty())
        .collect()
}

fn input(message: String) -> CliError {
    CliError::Input {
        message,
        help: "e.g. `kubeha certs renew etcd/server apiserver` or `kubeha certs renew --all`"
            .into(),
    }
}

pub(crate) fn run(
    g: &Global,
    all: bool,
    names: &[String],
    dry_run: bool,
) -> Result<ExitCode, CliError> {
    let loaded = crate::commands::load_spec(g)?;
    let spec = &loaded.spec;
    let selector = Selector::parse(spec, all, names).map_err(input)?;
    if dry_run {
        return plan(g, spec, &selector);
    }
    let mut store = crate::commands::open_store(g, &spec.name)?;
    let now = time::OffsetDateTime::now_utc();
    let (before, issued) = store.ensure(spec, now)?;
    crate::commands::print_pki_notices(&issued);
    let (materials, report) = store.ensure_with(spec, now, &|id| selector.matches(id))?;
    if report.issued.is_empty() {
        return Err(input("no certificate matched; nothing was renewed".into()));
    }
    progress!("renew: re-issued {} certificate(s)", report.issued.len());
    let old = kubeha_render::render(spec, &before)?;
    let new = kubeha_render::render(spec, &materials)?;
    let hosts = crate::commands::up::transports(spec, &g.state_dir.join(&spec.name))?;
    let changed = changed_files(&old, &new);
    let supervisor = crate::commands::up::supervisor_binary();

    // ---- etcd members, one at a time, behind the etcd gate.
    for n in spec.etcd_members() {
        let Some((_, files)) = changed.iter().find(|(h, _)| *h == n.name) else {
            continue;
        };
        let Some(t) = hosts.get(&n.name) else {
            continue;
        };
        let t: &dyn Transport = t.as_ref();
        roll_etcd_member(t, &n.name, files, supervisor.as_deref(), spec, &materials)?;
    }
    // ---- everything else: converge, one host at a time.
    let opts = Options {
        parallelism: 1,
        supervisor,
        gate_timeout: GATE_TIMEOUT,
        ..Options::default()
    };
    let r = kubeha_apply::converge(spec, &new, &materials, &hosts, &opts, &Quiet)?;
    drop(store);
    let renewed: BTreeSet<String> = report.issued.iter().map(|(id, _)| id.to_string()).collect();
    outln!(
        "renewed {} certificate(s) ({}); {} phase(s) converged",
        renewed.len(),
        renewed.into_iter().collect::<Vec<_>>().join(", "),
        r.phases.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `certs renew --dry-run`: the certificates that would be re-issued and, in rollout order,
/// the hosts that would receive new files. Issues into a scratch copy of the state dir and
/// contacts no host, so nothing changes anywhere.
fn plan(g: &Global, spec: &Spec, selector: &Selector) -> Result<ExitCode, CliError> {
    // Without state there is nothing to renew: a scratch run would only invent a new CA.
    crate::commands::existing_state(g, &spec.name)?;
    let (_scratch, mut store) = crate::commands::up::scratch_store(g, &spec.name)?;
    let now = time::OffsetDateTime::now_utc();
    let (before, _) = store.ensure(spec, now)?;
    let (materials, report) = store.ensure_with(spec, now, &|id| selector.matches(id))?;
    if report.issued.is_empty() {
        return Err(input(
            "no certificate matched; nothing would be renewed".into(),
        ));
    }
    let renewed: BTreeSet<String> = report.issued.iter().map(|(id, _)| id.to_string()).collect();
    let old = kubeha_render::render(spec, &before)?;
    let new = kubeha_render::render(spec, &materials)?;
    let changed = changed_files(&old, &new);
    let mut text = format!(
        "dry run: nothing was issued, uploaded or restarted\n\nwould re-issue {} certificate(s) with new keys (CAs stay):\n",
        renewed.len()
    );
    for id in &renewed {
        text.push_str(&format!("  {id}\n"));
    }
    text.push_str("\nthen, one host at a time:\n");
    let mut step = 0;
    let mut line = |text: &mut String, node: &str, files: &[&HostFile], then: &str| {
        step += 1;
        text.push_str(&format!(
            "  {step}. {node}: upload {} file(s), {then}\n",
            files.len()
        ));
        for f in files {
            text.push_str(&format!("       {}\n", f.path));
        }
    };
    let members: Vec<&str> = spec
        .etcd_members()
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    for name in &members {
        if let Some((node, files)) = changed.iter().find(|(h, _)| h == name) {
            line(
                &mut text,
                node,
                files,
                "restart etcd, wait until every member is healthy with one leader",
            );
        }
    }
    for (node, files) in changed
        .iter()
        .filter(|(h, _)| !members.contains(&h.as_str()))
    {
        line(
            &mut text,
            node,
            files,
            "restart or reload what uses them (as `kubeha up`)",
        );
    }
    if step == 0 {
        text.push_str("  (no host holds these certificates)\n");
    }
    outln!("{}", text.trim_end());
    Ok(ExitCode::SUCCESS)
}

struct Quiet;
impl kubeha_apply::Progress for Quiet {
    fn phase(&self, _: kubeha_plan::Phase, _: usize) {}
    fn host(&self, phase: kubeha_plan::Phase, node: &str, message: &str) {
        progress!("renew: {phase} {node}: {message}");
    }
    fn gate(&self, _: kubeha_plan::Phase, _: &kubeha_apply::gate::GateResult) {}
}

fn roll_etcd_member(
    t: &dyn Transport,
    name: &str,
    files: &[&HostFile],
    supervisor: Option<&str>,
    spec: &Spec,
    materials: &Materials,
) -> Result<(), CliError> {
    let fail = |what: String| {
        CliError::Input { message: format!("{name}: {what}"), help: "the members already restarted hold the new certificates; fix the cause and run `kubeha certs renew` again".into() }
    };
    let out = t
        .run(&Command::script(
            "if [ -d /run/systemd/system ]; then echo systemd; else echo none; fi",
        ))
        .map_err(|e| fail(kubeha_etcd::error_chain(&e)))?;
    let manager = match (out.stdout_lossy().trim(), supervisor) {
        ("none", Some(b)) => ServiceManager::Supervisor {
            binary: b.to_string(),
        },
        _ => ServiceManager::Systemd,
    };
    let up: Vec<UploadFile<'_>> = files
        .iter()
        .map(|f| UploadFile {
            path: &f.path,
            content: f.content.as_bytes(),
            mode: f.mode,
            owner: &f.owner,
        })
        .collect();
    upload_many(t, &up, Duration::from_secs(60)).map_err(|e| fail(kubeha_etcd::error_chain(&e)))?;
    progress!(
        "renew: etcd {name}: restarting with {} new file(s)",
        files.len()
    );
    manager
        .restart(t, "etcd.service")
        .map_err(|e| fail(kubeha_etcd::error_chain(&e)))?;
    // The restart does not block: give the member a moment to go down before gating.
    std::thread::sleep(Duration::from_millis(500));
    let g = gate::etcd(spec, materials, GATE_TIMEOUT);
    progress!("renew: etcd {name}: gate {}", g.text());
    if !g.passed() {
        return Err(fail(format!(
            "etcd did not become healthy after the restart: {}",
            g.text()
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        let text = include_str!("../../../../../examples/external-etcd.yaml");
        kubeha_spec::load_str(text, std::path::Path::new("x.yaml"))
            .unwrap()
            .spec
    }

    #[test]
    fn names_match_kinds_everywhere_or_on_one_node() {
        let spec = spec();
        let node = spec.etcd_members()[1].name.clone();
        let s = Selector::parse(
            &spec,
            false,
            &["apiserver".into(), format!("{node}/etcd/peer")],
        )
        .unwrap();
        assert!(s.matches(&LeafId::new("cp-x", LeafKind::ApiServer)));
        assert!(s.matches(&LeafId::new(&node, LeafKind::EtcdPeer)));
        assert!(!s.matches(&LeafId::new("other", LeafKind::EtcdPeer)));
        assert!(!s.matches(&LeafId::new(&node, LeafKind::EtcdServer)));
        let s = Selector::parse(&spec, false, &["etcd/server.crt".into()]).unwrap();
        assert!(s.matches(&LeafId::new("any", LeafKind::EtcdServer)));
        assert!(
            Selector::parse(&spec, true, &[])
                .unwrap()
                .matches(&LeafId::operator(LeafKind::AdminConf))
        );
    }

    #[test]
    fn cas_unknown_names_and_ambiguous_asks_are_refused() {
        let spec = spec();
        assert!(
            Selector::parse(&spec, false, &["ca".into()])
                .unwrap_err()
                .contains("CAs are never renewed")
        );
        assert!(Selector::parse(&spec, false, &["etcd/ca".into()]).is_err());
        assert!(Selector::parse(&spec, false, &[]).is_err());
        assert!(Selector::parse(&spec, true, &["apiserver".into()]).is_err());
    }
}
