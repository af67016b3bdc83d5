//! Membership changes: `add` (as a learner, printing the exact flags the new member needs),
//! `remove` (behind the quorum guard), `promote`, and `forget` (ghost members).

use std::process::ExitCode;

use kubeha_etcd::membership::{self, AddBlocked, AddPlan, QuorumCheck};
use kubeha_spec::Spec;
use serde::Serialize;

use super::{Census, Failure, Observed, reconfigure, survey};
use crate::{args::Global, output::emit};

fn emit_or_fail<T: Serialize>(
    g: &Global,
    value: &T,
    human: impl FnOnce() -> String,
) -> Result<(), Failure> {
    emit(g.output, value, human).map_err(|e| Failure::Failed {
        message: e.to_string(),
        help: String::new(),
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AddReport {
    node: String,
    id: String,
    peer_url: String,
    is_learner: bool,
    /// False when an earlier run had added it already (or it is a started member).
    added: bool,
    started: bool,
    initial_cluster: Option<String>,
    initial_cluster_state: Option<String>,
    /// The flags that replace the rendered `--initial-cluster*` flags on the new member.
    flags: Vec<String>,
    next: Vec<String>,
}

pub(crate) fn add(g: &Global, spec: &Spec, node_name: &str) -> Result<ExitCode, Failure> {
    let etcd_names = || {
        spec.etcd_members()
            .iter()
            .map(|n| n.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(node) = spec.node(node_name) else {
        return Err(Failure::Refused {
            message: format!("no node {node_name:?} in the cluster file"),
            help: format!(
                "add it to the cluster file with the etcd role first; etcd members there: {}",
                etcd_names()
            ),
        });
    };
    if !spec.is_etcd_member(node) {
        return Err(Failure::Refused {
            message: format!("node {node_name} is not an etcd member in the cluster file"),
            help: format!(
                "give it the etcd role (or control-plane in the stacked topology); etcd members: {}",
                etcd_names()
            ),
        });
    }
    let peer_url = Spec::etcd_peer_url(node);
    let (client, census) = survey(g, spec)?;
    let plan = membership::plan_add(&census.list(), &node.name, &peer_url).map_err(|b| {
        let help = match &b {
            AddBlocked::OtherUnstarted { id, .. } => format!("start that member, or remove it with `kubeha etcd forget {id}`, then add {node_name} again"),
            AddBlocked::NameTaken { .. } | AddBlocked::UrlTaken { .. } => format!(
                "to replace it: `kubeha etcd remove` the old member, stop etcd on {node_name} and wipe its data dir ({}), then `kubeha etcd add {node_name}`",
                spec.etcd.data_dir
            ),
        };
        Failure::Refused { message: format!("cannot add {node_name}: {b}"), help }
    })?;
    let (id, is_learner, initial_cluster, added) = match plan {
        AddPlan::AlreadyMember { id, is_learner } => {
            let r = AddReport {
                node: node.name.clone(),
                id: id.clone(),
                peer_url,
                is_learner,
                added: false,
                started: true,
                initial_cluster: None,
                initial_cluster_state: None,
                flags: vec![],
                next: if is_learner {
                    vec![format!("kubeha etcd promote {node_name}")]
                } else {
                    vec![]
                },
            };
            emit_or_fail(g, &r, || {
                let role = if is_learner {
                    "a learner; promote it with `kubeha etcd promote` once caught up"
                } else {
                    "a voting member"
                };
                format!("{node_name} is already a started member ({id}), {role}; nothing changed\n")
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        AddPlan::AlreadyAdded {
            id,
            is_learner,
            initial_cluster,
        } => {
            errln!("{node_name} was added earlier ({id}) and has not started yet; nothing changed");
            (id, is_learner, initial_cluster, false)
        }
        AddPlan::Add { initial_cluster } => {
            // etcd's strict reconfiguration check refuses any add, learners included, unless
            // every voting member is connected: say so now rather than after retries.
            let down: Vec<String> = census
                .members
                .iter()
                .filter(|o| !o.member.is_learner && !o.health.healthy)
                .map(|o| o.describe())
                .collect();
            if !down.is_empty() {
                return Err(Failure::Refused {
                    message: format!(
                        "cannot add {node_name} while {} {} down: etcd accepts a new member only when every voting member is connected",
                        down.join(", "),
                        if down.len() == 1 { "is" } else { "are" }
                    ),
                    help: "bring it back, or remove it first if it is gone for good (`kubeha etcd remove`; for a member that never started, `kubeha etcd forget`), then add again".into(),
                });
            }
            let m = reconfigure(
                &format!("add {node_name} ({peer_url}) as a learner"),
                true,
                || client.member_add(std::slice::from_ref(&peer_url), true),
            )?;
            (m.id, m.is_learner, initial_cluster, true)
        }
    };
    let flags = vec![
        format!("--name={}", node.name),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster={initial_cluster}"),
        "--initial-cluster-state=existing".to_string(),
    ];
    let r = AddReport {
        node: node.name.clone(),
        id: id.clone(),
        peer_url: peer_url.clone(),
        is_learner,
        added,
        started: false,
        initial_cluster: Some(initial_cluster),
        initial_cluster_state: Some("existing".into()),
        next: vec![
            format!(
                "start etcd on {} with an empty data dir ({}) and the flags above",
                node.name, spec.etcd.data_dir
            ),
            "kubeha etcd members   (until the learner is no longer flagged as behind)".into(),
            format!("kubeha etcd promote {}", node.name),
        ],
        flags,
    };
    emit_or_fail(g, &r, || {
        let mut s = String::new();
        if r.added {
            s.push_str(&format!(
                "added {} as learner {} (peer URL {})\n\n",
                r.node, r.id, r.peer_url
            ));
        } else {
            s.push_str(&format!(
                "{} is registered as {} {} (peer URL {}) and has not started\n\n",
                r.node,
                if r.is_learner {
                    "learner"
                } else {
                    "voting member"
                },
                r.id,
                r.peer_url
            ));
        }
        s.push_str(&format!(
            "Start etcd on {} with an empty data dir ({}) and these flags instead of the rendered\n--initial-cluster and --initial-cluster-state=new:\n\n",
            r.node, spec.etcd.data_dir
        ));
        for f in &r.flags {
            s.push_str(&format!("  {f}\n"));
        }
        s.push_str(&format!(
            "\nkubeha does not start it for you yet (orchestration of adds comes later). Once it runs,\n`kubeha etcd members` shows whether it has caught up; then `kubeha etcd promote {}`.\nTo cancel instead: `kubeha etcd forget {}`.\n",
            r.node, r.id
        ));
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RemoveReport {
    id: String,
    name: String,
    check: QuorumCheck,
    forced: bool,
}

fn check_for(census: &Census, target: &Observed) -> Result<QuorumCheck, Failure> {
    membership::check_removal(&census.list(), &census.healthy_ids(), &target.member.id).ok_or_else(
        || Failure::Failed {
            message: format!("{} vanished from the member list", target.describe()),
            help: String::new(),
        },
    )
}

pub(crate) fn remove(g: &Global, spec: &Spec, arg: &str, force: bool) -> Result<ExitCode, Failure> {
    let (client, census) = survey(g, spec)?;
    let target = census.resolve(spec, arg)?;
    let check = check_for(&census, target)?;
    if !check.keeps_quorum {
        if !force {
            return Err(Failure::Refused {
                message: format!("refusing to remove {}: {check}", target.describe()),
                help: "bring the unhealthy members back (or remove them first: removing a dead member improves the arithmetic); --force removes anyway and risks the cluster's quorum".into(),
            });
        }
        errln!(
            "warning: removing {} anyway (--force): {check}",
            target.describe()
        );
    }
    let doing = format!("remove {}", target.describe());
    // Ask another member than the one leaving, so its answer is not cut off by its exit.
    let others: Vec<String> = client
        .endpoints()
        .iter()
        .filter(|e| **e != target.endpoint)
        .cloned()
        .collect();
    let client = if others.is_empty() {
        client
    } else {
        client.with_endpoints(others)
    };
    reconfigure(&doing, check.keeps_quorum, || {
        client.member_remove(&target.member.id)
    })?;
    let r = RemoveReport {
        id: target.member.id.clone(),
        name: target.member.name.clone(),
        check,
        forced: force,
    };
    emit_or_fail(g, &r, || {
        format!(
            "removed {} ({})\n\nThe removed etcd stops by itself. Before that host may join again, wipe its data dir\n({}) and add it back with `kubeha etcd add NODE` (state existing, exact --initial-cluster).\n",
            target.describe(),
            r.check,
            spec.etcd.data_dir
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PromoteReport {
    id: String,
    name: String,
    promoted: bool,
}

pub(crate) fn promote(g: &Global, spec: &Spec, arg: &str) -> Result<ExitCode, Failure> {
    let (client, census) = survey(g, spec)?;
    let target = census.resolve(spec, arg)?;
    if !target.member.is_learner {
        let r = PromoteReport {
            id: target.member.id.clone(),
            name: target.member.name.clone(),
            promoted: false,
        };
        emit_or_fail(g, &r, || {
            format!(
                "{} is already a voting member; nothing changed\n",
                target.describe()
            )
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if target.member.name.is_empty() {
        return Err(Failure::Failed {
            message: format!("learner {} has never started, so it cannot have caught up", target.member.id),
            help: "start etcd on its host with the flags `kubeha etcd add NODE` prints (run it again to see them), then promote".into(),
        });
    }
    let progress = || {
        let leader = census
            .leader
            .as_ref()
            .and_then(|l| census.members.iter().find(|o| &o.member.id == l))
            .and_then(|o| o.status.as_ref());
        match (target.status.as_ref(), leader) {
            (Some(t), Some(l)) => format!(
                " (its raft index {} of the leader's {})",
                t.raft_index, l.raft_index
            ),
            (None, _) => " (it does not answer)".into(),
            _ => String::new(),
        }
    };
    match client.member_promote(&target.member.id) {
        Ok(()) => {}
        Err(e) if e.is_learner_not_ready() => {
            let etcd_says = match &e {
                kubeha_etcd::EtcdError::Http { message, .. } => message.clone(),
                other => kubeha_etcd::error_chain(other),
            };
            return Err(Failure::Failed {
                message: format!(
                    "etcd refused to promote {}: the learner has not caught up with the leader yet{} — etcd says \"{etcd_says}\"",
                    target.describe(),
                    progress()
                ),
                help: format!(
                    "wait until `kubeha etcd members` no longer flags it as behind, then run `kubeha etcd promote {arg}` again"
                ),
            });
        }
        Err(e) => return Err(Failure::etcd(format!("promote {}", target.describe()))(e)),
    }
    let r = PromoteReport {
        id: target.member.id.clone(),
        name: target.member.name.clone(),
        promoted: true,
    };
    emit_or_fail(g, &r, || {
        format!("promoted {} to a voting member\n", target.describe())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ForgetReport {
    removed: Vec<Forgotten>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Forgotten {
    id: String,
    name: String,
    why: Vec<String>,
    check: QuorumCheck,
}

/// The ghosts to remove, in a safe order: learners, then never-started voters, then the rest.
fn ghosts<'a>(
    census: &'a Census,
    spec: &Spec,
    arg: Option<&str>,
) -> Result<Vec<&'a Observed>, Failure> {
    if let Some(arg) = arg {
        let o = census.resolve(spec, arg)?;
        if !o.is_ghost() {
            return Err(Failure::Refused {
                message: format!(
                    "{} is not a ghost: it started, answers, and its peer URL is in the cluster file",
                    o.describe()
                ),
                help: format!("to remove a live member use `kubeha etcd remove {arg}`"),
            });
        }
        return Ok(vec![o]);
    }
    let mut g: Vec<&Observed> = census.members.iter().filter(|o| o.is_ghost()).collect();
    g.sort_by_key(|o| {
        (
            !o.member.is_learner,
            !o.member.name.is_empty(),
            o.health.healthy,
        )
    });
    Ok(g)
}

pub(crate) fn forget(
    g: &Global,
    spec: &Spec,
    arg: Option<&str>,
    yes: bool,
) -> Result<ExitCode, Failure> {
    let (client, census) = survey(g, spec)?;
    let targets = ghosts(&census, spec, arg)?;
    if targets.is_empty() {
        emit_or_fail(g, &ForgetReport { removed: vec![] }, || {
            "no ghost members; nothing changed\n".into()
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let ids: Vec<String> = targets.iter().map(|o| o.member.id.clone()).collect();
    let checks = membership::check_removals(&census.list(), &census.healthy_ids(), &ids);
    if let Some(bad) = checks.iter().find(|c| !c.keeps_quorum) {
        return Err(Failure::Refused {
            message: format!("refusing to forget: {bad}"),
            help: "bring members back first; `kubeha etcd remove --force` exists for a deliberate exception".into(),
        });
    }
    errln!("ghost members to remove:");
    for (o, c) in targets.iter().zip(&checks) {
        let why: Vec<String> = o
            .flags
            .iter()
            .filter(|f| f.is_ghost())
            .map(ToString::to_string)
            .collect();
        errln!("  {}: {}\n    {c}", o.describe(), why.join("; "));
    }
    if !yes && !crate::commands::confirm(&format!("Remove {} member(s)?", targets.len())) {
        return Err(Failure::Failed {
            message: "not confirmed; nothing was removed".into(),
            help: "answer y on a terminal, or pass --yes (without a terminal the answer is no)"
                .into(),
        });
    }
    let mut removed = Vec::new();
    for (o, check) in targets.into_iter().zip(checks) {
        reconfigure(&format!("remove {}", o.describe()), true, || {
            client.member_remove(&o.member.id)
        })?;
        errln!("removed {}", o.describe());
        removed.push(Forgotten {
            id: o.member.id.clone(),
            name: o.member.name.clone(),
            why: o
                .flags
                .iter()
                .filter(|f| f.is_ghost())
                .map(ToString::to_string)
                .collect(),
            check,
        });
    }
    let r = ForgetReport { removed };
    emit_or_fail(g, &r, || {
        format!("removed {} ghost member(s)\n", r.removed.len())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kubeha_etcd::membership::Flag;

    use super::{super::tests::*, *};

    #[test]
    fn ghosts_in_a_safe_order_and_named_ones_must_be_ghosts() {
        let spec = test_spec();
        let mut c = census(vec![
            observed("a1", "etcd-1", 11, false, true),
            observed("b2", "etcd-2", 12, false, true),
            observed("c3", "old-host", 99, false, true),
            observed("e5", "", 14, false, false),
            observed("f6", "", 15, true, false),
        ]);
        c.members[2].flags = vec![Flag::NotInClusterFile];
        c.members[3].flags = vec![Flag::NeverStarted];
        c.members[4].flags = vec![Flag::NeverStarted, Flag::NotInClusterFile];
        let order: Vec<String> = ghosts(&c, &spec, None)
            .unwrap_or_default()
            .iter()
            .map(|o| o.member.id.clone())
            .collect();
        assert_eq!(order, ["f6", "e5", "c3"]);
        // 4 voters, 3 healthy (one never started): each removal in turn keeps quorum.
        let checks = membership::check_removals(&c.list(), &c.healthy_ids(), &order);
        assert!(checks.iter().all(|c| c.keeps_quorum), "{checks:?}");
        assert_eq!(
            checks[1].to_string(),
            "4 voting members, 1 unhealthy: removing e5 (never started) leaves 3 voters of which 3 healthy; quorum needs 2"
        );
        // Without quorum nothing can be committed, not even forgetting a learner.
        c.members[2].health.healthy = false;
        let checks = membership::check_removals(&c.list(), &c.healthy_ids(), &order);
        assert!(!checks[0].keeps_quorum, "{}", checks[0]);
        assert!(matches!(
            ghosts(&c, &spec, Some("etcd-1")),
            Err(Failure::Refused { .. })
        ));
        assert_eq!(
            ghosts(&c, &spec, Some("etcd-4"))
                .map(|v| v[0].member.id.clone())
                .ok(),
            Some("e5".into())
        );
    }
}
