//! `kubeha etcd members` and `kubeha etcd health`: what `etcdctl member list`, `endpoint
//! status` and `endpoint health` show, in one table, with ghost members pointed out.

use std::process::ExitCode;

use kubeha_etcd::{Alarm, membership::Flag};
use kubeha_spec::Spec;
use serde::Serialize;

use super::{Census, Failure, human_bytes, ms, survey};
use crate::{args::Global, error::EXIT_FAILURE, output::emit, table::Table};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MembersReport {
    pub members: Vec<MemberRow>,
    /// Hex ID.
    pub leader: Option<String>,
    pub voters: usize,
    pub healthy_voters: usize,
    pub learners: usize,
    /// Healthy voters needed.
    pub quorum: usize,
    pub has_quorum: bool,
    /// Hex IDs of the members `kubeha etcd forget` would remove.
    pub ghosts: Vec<String>,
    pub alarms: Vec<Alarm>,
    pub alarms_error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberRow {
    pub id: String,
    pub name: String,
    pub started: bool,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_leader: bool,
    pub is_learner: bool,
    pub version: Option<String>,
    pub db_size: Option<u64>,
    pub db_size_in_use: Option<u64>,
    pub raft_term: Option<u64>,
    pub raft_index: Option<u64>,
    pub raft_applied_index: Option<u64>,
    pub revision: Option<u64>,
    pub errors: Vec<String>,
    pub healthy: bool,
    pub took_ms: f64,
    pub error: Option<String>,
    pub flags: Vec<Flag>,
}

pub(crate) fn report(c: &Census) -> MembersReport {
    let members: Vec<MemberRow> = c
        .members
        .iter()
        .map(|o| {
            let s = o.status.as_ref();
            MemberRow {
                id: o.member.id.clone(),
                name: o.member.name.clone(),
                started: !o.member.name.is_empty(),
                peer_urls: o.member.peer_urls.clone(),
                client_urls: o.member.client_urls.clone(),
                is_leader: c.leader.as_ref() == Some(&o.member.id),
                is_learner: o.member.is_learner,
                version: s.map(|s| s.version.clone()),
                db_size: s.map(|s| s.db_size),
                db_size_in_use: s.map(|s| s.db_size_in_use),
                raft_term: s.map(|s| s.raft_term),
                raft_index: s.map(|s| s.raft_index),
                raft_applied_index: s.map(|s| s.raft_applied_index),
                revision: s.map(|s| s.revision),
                errors: s.map(|s| s.errors.clone()).unwrap_or_default(),
                healthy: o.health.healthy,
                took_ms: ms(o.health.took),
                error: o.health.error.clone(),
                flags: o.flags.clone(),
            }
        })
        .collect();
    let voters = c.voters();
    MembersReport {
        leader: c.leader.clone(),
        voters,
        healthy_voters: c.healthy_voters(),
        learners: c.members.len() - voters,
        quorum: kubeha_etcd::membership::quorum(voters),
        has_quorum: c.has_quorum(),
        ghosts: c
            .members
            .iter()
            .filter(|o| o.is_ghost())
            .map(|o| o.member.id.clone())
            .collect(),
        alarms: c.alarms.clone().unwrap_or_default(),
        alarms_error: c.alarms.clone().err(),
        members,
    }
}

pub(crate) fn members(g: &Global, spec: &Spec) -> Result<ExitCode, Failure> {
    let (_, census) = survey(g, spec)?;
    let r = report(&census);
    emit(g.output, &r, || members_table(&r)).map_err(|e| Failure::Failed {
        message: e.to_string(),
        help: String::new(),
    })?;
    Ok(if r.has_quorum {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn display_name(r: &MemberRow) -> String {
    if r.started {
        r.name.clone()
    } else {
        "(never started)".into()
    }
}

pub(crate) fn members_table(r: &MembersReport) -> String {
    let mut t = Table::new([
        "ID",
        "NAME",
        "PEER URL",
        "CLIENT URL",
        "LEADER",
        "LEARNER",
        "VERSION",
        "DB SIZE",
        "RAFT TERM",
        "RAFT INDEX",
        "HEALTH",
    ]);
    for m in &r.members {
        t.row([
            m.id.clone(),
            display_name(m),
            m.peer_urls.join(","),
            if m.client_urls.is_empty() {
                "-".into()
            } else {
                m.client_urls.join(",")
            },
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
            opt(m.version.clone()),
            opt(m.db_size.map(human_bytes)),
            opt(m.raft_term),
            opt(m.raft_index),
            if m.healthy {
                format!("healthy {:.1} ms", m.took_ms)
            } else {
                "UNHEALTHY".into()
            },
        ]);
    }
    let mut s = t.render();
    let leader = r
        .leader
        .as_ref()
        .and_then(|id| r.members.iter().find(|m| &m.id == id))
        .map_or_else(
            || "none".to_string(),
            |m| format!("{} ({})", display_name(m), m.id),
        );
    s.push_str(&format!(
        "\n{} voting, {} healthy: quorum {} ({} needed); {} learner(s); leader {leader}\n",
        r.voters,
        r.healthy_voters,
        if r.has_quorum { "ok" } else { "LOST" },
        r.quorum,
        r.learners
    ));
    for m in r.members.iter().filter(|m| !m.healthy && m.started) {
        s.push_str(&format!(
            "  {} unhealthy: {}\n",
            display_name(m),
            m.error.clone().unwrap_or_default()
        ));
    }
    for m in r.members.iter().filter(|m| !m.errors.is_empty()) {
        s.push_str(&format!(
            "  {} reports: {}\n",
            display_name(m),
            m.errors.join("; ")
        ));
    }
    let flagged: Vec<&MemberRow> = r.members.iter().filter(|m| !m.flags.is_empty()).collect();
    if !flagged.is_empty() {
        s.push_str("\nflags:\n");
        for m in flagged {
            let what: Vec<String> = m.flags.iter().map(ToString::to_string).collect();
            s.push_str(&format!(
                "  {} {}: {}\n",
                m.id,
                display_name(m),
                what.join("; ")
            ));
        }
        if !r.ghosts.is_empty() {
            s.push_str(&format!(
                "{} ghost member(s): `kubeha etcd forget` removes them (quorum permitting); a learner catching up is not one\n",
                r.ghosts.len()
            ));
        }
    }
    for a in &r.alarms {
        let who = r
            .members
            .iter()
            .find(|m| m.id == a.member_id)
            .map_or_else(|| a.member_id.clone(), display_name);
        s.push_str(&format!("alarm {} on {who}\n", a.alarm));
    }
    if let Some(e) = &r.alarms_error {
        s.push_str(&format!("alarms could not be read: {e}\n"));
    }
    s
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthRow {
    endpoint: String,
    id: String,
    name: String,
    is_learner: bool,
    healthy: bool,
    took_ms: f64,
    error: Option<String>,
}

/// Exit 1 when any member is unhealthy, as `etcdctl endpoint health` does.
pub(crate) fn health(g: &Global, spec: &Spec) -> Result<ExitCode, Failure> {
    let (_, census) = survey(g, spec)?;
    let rows: Vec<HealthRow> = census
        .members
        .iter()
        .map(|o| HealthRow {
            endpoint: o.endpoint.clone(),
            id: o.member.id.clone(),
            name: o.member.name.clone(),
            is_learner: o.member.is_learner,
            healthy: o.health.healthy,
            took_ms: ms(o.health.took),
            error: o.health.error.clone(),
        })
        .collect();
    emit(g.output, &rows, || health_table(&rows)).map_err(|e| Failure::Failed {
        message: e.to_string(),
        help: String::new(),
    })?;
    Ok(if rows.iter().all(|r| r.healthy) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

fn health_table(rows: &[HealthRow]) -> String {
    let mut t = Table::new(["ENDPOINT", "NAME", "HEALTH", "TOOK", "ERROR"]);
    for r in rows {
        t.row([
            if r.endpoint.is_empty() {
                "-".into()
            } else {
                r.endpoint.clone()
            },
            match (r.name.is_empty(), r.is_learner) {
                (true, _) => format!("{} (never started)", r.id),
                (false, true) => format!("{} (learner)", r.name),
                (false, false) => r.name.clone(),
            },
            r.healthy.to_string(),
            format!("{:.1} ms", r.took_ms),
            r.error.clone().unwrap_or_default(),
        ]);
    }
    t.render()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{super::tests::*, *};

    #[test]
    fn table_points_out_ghosts_and_quorum() {
        let mut c = census(vec![
            observed("a1", "etcd-1", 11, false, true),
            observed("b2", "etcd-2", 12, false, false),
            observed("e5", "", 15, false, false),
        ]);
        c.members[2].flags = vec![Flag::NeverStarted, Flag::NotInClusterFile];
        let r = report(&c);
        assert_eq!(
            (r.voters, r.healthy_voters, r.quorum, r.has_quorum),
            (3, 1, 2, false)
        );
        assert_eq!(r.ghosts, vec!["e5".to_string()]);
        let t = members_table(&r);
        assert!(
            t.contains("3 voting, 1 healthy: quorum LOST (2 needed)"),
            "{t}"
        );
        assert!(t.contains("e5 (never started): added but never started; peer URL matches no node of the cluster file"), "{t}");
        assert!(t.contains("1 ghost member(s)"), "{t}");
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(json["members"][2]["flags"][0]["kind"], "never-started");
        assert_eq!(json["members"][0]["isLeader"], true);
    }
}
