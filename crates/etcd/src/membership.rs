//! Pure decisions about membership changes: does a removal keep quorum, which members are
//! ghosts, and what a new member must start with. No I/O: callers pass what they observed.

use std::{collections::BTreeSet, fmt};

use serde::Serialize;

use crate::{Member, Status};

/// Healthy voters a cluster of `voters` voting members needs: ⌊n/2⌋+1.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// How a member is named to users: its name, or its hex ID when it never started.
pub fn label(m: &Member) -> String {
    if m.name.is_empty() {
        format!("{} (never started)", m.id)
    } else {
        m.name.clone()
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The arithmetic of removing one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuorumCheck {
    /// The member removed, as [`label`] names it.
    pub member: String,
    pub id: String,
    pub is_learner: bool,
    /// Voting members before the removal.
    pub voters: usize,
    /// Unhealthy voting members before the removal.
    pub unhealthy: usize,
    pub voters_after: usize,
    pub healthy_after: usize,
    /// ⌊voters_after/2⌋+1.
    pub quorum_after: usize,
    pub keeps_quorum: bool,
}

impl fmt::Display for QuorumCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let before = format!(
            "{}, {} unhealthy",
            plural(self.voters, "voting member", "voting members"),
            self.unhealthy
        );
        if self.is_learner {
            write!(
                f,
                "{before}: removing learner {} leaves the {} of which {} healthy; quorum needs {}",
                self.member,
                plural(self.voters_after, "voter", "voters"),
                self.healthy_after,
                self.quorum_after
            )
        } else {
            write!(
                f,
                "{before}: removing {} leaves {} of which {} healthy; quorum needs {}",
                self.member,
                plural(self.voters_after, "voter", "voters"),
                self.healthy_after,
                self.quorum_after
            )
        }
    }
}

/// Whether removing the member with hex ID `target` keeps a quorum of healthy voters.
/// `healthy` holds the hex IDs of members that answered a health check. `None` when no
/// member has that ID.
///
/// Removing a learner changes no vote, but the cluster still needs quorum to commit it.
pub fn check_removal(
    members: &[Member],
    healthy: &BTreeSet<String>,
    target: &str,
) -> Option<QuorumCheck> {
    let t = members.iter().find(|m| m.id == target)?;
    let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
    let unhealthy = voters.iter().filter(|m| !healthy.contains(&m.id)).count();
    let after: Vec<&&Member> = voters.iter().filter(|m| m.id != t.id).collect();
    let healthy_after = after.iter().filter(|m| healthy.contains(&m.id)).count();
    let quorum_after = quorum(after.len());
    Some(QuorumCheck {
        member: label(t),
        id: t.id.clone(),
        is_learner: t.is_learner,
        voters: voters.len(),
        unhealthy,
        voters_after: after.len(),
        healthy_after,
        quorum_after,
        keeps_quorum: healthy_after >= quorum_after,
    })
}

/// [`check_removal`] for several members removed one after another, each check seeing the
/// membership the earlier removals leave. Unknown IDs are skipped.
pub fn check_removals(
    members: &[Member],
    healthy: &BTreeSet<String>,
    targets: &[String],
) -> Vec<QuorumCheck> {
    let mut left: Vec<Member> = members.to_vec();
    let mut out = Vec::new();
    for t in targets {
        if let Some(c) = check_removal(&left, healthy, t) {
            left.retain(|m| &m.id != t);
            out.push(c);
        }
    }
    out
}

/// Something odd about a member that `kubeha etcd members` points out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Flag {
    /// Added (`member add`) but no etcd ever started with its peer URL: it has no name.
    NeverStarted,
    /// A started learner that does not answer.
    LearnerUnreachable,
    /// A learner whose raft index is below 90% of the leader's (etcd's own promote rule).
    #[serde(rename_all = "camelCase")]
    LearnerBehind {
        learner_index: u64,
        leader_index: u64,
    },
    /// No node of the cluster file has this peer URL.
    NotInClusterFile,
}

impl Flag {
    /// A ghost is a member `kubeha etcd forget` removes: it holds a place in the membership
    /// (and, as a voter, in the quorum) but no live etcd of the cluster file stands behind it.
    /// A learner that is merely catching up is not one.
    pub fn is_ghost(&self) -> bool {
        !matches!(self, Flag::LearnerBehind { .. })
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flag::NeverStarted => f.write_str("added but never started"),
            Flag::LearnerUnreachable => f.write_str("learner does not answer"),
            Flag::LearnerBehind {
                learner_index,
                leader_index,
            } => {
                write!(
                    f,
                    "learner not caught up (raft index {learner_index} of the leader's {leader_index})"
                )
            }
            Flag::NotInClusterFile => f.write_str("peer URL matches no node of the cluster file"),
        }
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// etcd's own readiness rule for promoting a learner: its progress is at least 90% of the
/// leader's. Here it is applied to the raft indexes the members report in their status.
pub fn caught_up(learner_index: u64, leader_index: u64) -> bool {
    u128::from(learner_index) * 10 >= u128::from(leader_index) * 9
}

/// The flags of one member. `status` is the member's own answer (None when it did not
/// answer), `leader_index` the leader's raft index, `cluster_peer_urls` the peer URLs of the
/// cluster file's etcd members.
pub fn flags(
    m: &Member,
    status: Option<&Status>,
    leader_index: Option<u64>,
    cluster_peer_urls: &[String],
) -> Vec<Flag> {
    let mut out = Vec::new();
    if m.name.is_empty() {
        out.push(Flag::NeverStarted);
    } else if m.is_learner {
        match (status, leader_index) {
            (None, _) => out.push(Flag::LearnerUnreachable),
            (Some(s), Some(leader)) if !caught_up(s.raft_index, leader) => {
                out.push(Flag::LearnerBehind {
                    learner_index: s.raft_index,
                    leader_index: leader,
                })
            }
            _ => {}
        }
    }
    if !m
        .peer_urls
        .iter()
        .any(|u| cluster_peer_urls.iter().any(|c| same_url(u, c)))
    {
        out.push(Flag::NotInClusterFile);
    }
    out
}

/// What adding the member `name` at `peer_url` comes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum AddPlan {
    /// Add it; it must then start with this `--initial-cluster` and state `existing`.
    #[serde(rename_all = "camelCase")]
    Add { initial_cluster: String },
    /// An earlier `add` registered it and it has not started yet: start it with this.
    #[serde(rename_all = "camelCase")]
    AlreadyAdded {
        id: String,
        is_learner: bool,
        initial_cluster: String,
    },
    /// It is a started member already: nothing to do.
    #[serde(rename_all = "camelCase")]
    AlreadyMember { id: String, is_learner: bool },
}

/// Why a member cannot be added now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddBlocked {
    #[error(
        "member {id} ({peer_urls}) was added but never started: a new member's --initial-cluster would have to list it too, and etcd refuses to start a member whose list differs from the cluster's (\"member count is unequal\")"
    )]
    OtherUnstarted { id: String, peer_urls: String },
    #[error("a member named {name} ({id}) already exists with peer URL {peer_urls}, not {wanted}")]
    NameTaken {
        name: String,
        id: String,
        peer_urls: String,
        wanted: String,
    },
    #[error("peer URL {peer_url} already belongs to member {name} ({id})")]
    UrlTaken {
        peer_url: String,
        name: String,
        id: String,
    },
}

/// `name=peerURL` for every started member (other than the one at `peer_url`) sorted by
/// name, then the new member: the `--initial-cluster` a member joining with state
/// `existing` needs (etcd compares it with the cluster's own list, order aside).
pub fn initial_cluster(members: &[Member], name: &str, peer_url: &str) -> String {
    let mut parts: Vec<(&str, &str)> = Vec::new();
    for m in members {
        if m.name.is_empty() || m.peer_urls.iter().any(|u| same_url(u, peer_url)) {
            continue;
        }
        parts.extend(m.peer_urls.iter().map(|u| (m.name.as_str(), u.as_str())));
    }
    parts.sort();
    parts.push((name, peer_url));
    parts
        .iter()
        .map(|(n, u)| format!("{n}={u}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Decides what `kubeha etcd add` does for `name` at `peer_url` given the current members.
pub fn plan_add(members: &[Member], name: &str, peer_url: &str) -> Result<AddPlan, AddBlocked> {
    let urls = |m: &Member| m.peer_urls.join(",");
    let at_url = members
        .iter()
        .find(|m| m.peer_urls.iter().any(|u| same_url(u, peer_url)));
    if let Some(m) = at_url {
        if m.name.is_empty() {
            if let Some(other) = members.iter().find(|o| o.name.is_empty() && o.id != m.id) {
                return Err(AddBlocked::OtherUnstarted {
                    id: other.id.clone(),
                    peer_urls: urls(other),
                });
            }
            return Ok(AddPlan::AlreadyAdded {
                id: m.id.clone(),
                is_learner: m.is_learner,
                initial_cluster: initial_cluster(members, name, peer_url),
            });
        }
        if m.name == name {
            return Ok(AddPlan::AlreadyMember {
                id: m.id.clone(),
                is_learner: m.is_learner,
            });
        }
        return Err(AddBlocked::UrlTaken {
            peer_url: peer_url.into(),
            name: m.name.clone(),
            id: m.id.clone(),
        });
    }
    if let Some(m) = members.iter().find(|m| m.name == name) {
        return Err(AddBlocked::NameTaken {
            name: name.into(),
            id: m.id.clone(),
            peer_urls: urls(m),
            wanted: peer_url.into(),
        });
    }
    if let Some(other) = members.iter().find(|o| o.name.is_empty()) {
        return Err(AddBlocked::OtherUnstarted {
            id: other.id.clone(),
            peer_urls: urls(other),
        });
    }
    Ok(AddPlan::Add {
        initial_cluster: initial_cluster(members, name, peer_url),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member(id: &str, name: &str, ip: u8, learner: bool) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            peer_urls: vec![format!("https://198.18.0.{ip}:2380")],
            client_urls: if name.is_empty() {
                vec![]
            } else {
                vec![format!("https://198.18.0.{ip}:2379")]
            },
            is_learner: learner,
        }
    }

    fn three() -> Vec<Member> {
        vec![
            member("a1", "etcd-1", 11, false),
            member("b2", "etcd-2", 12, false),
            member("c3", "etcd-3", 13, false),
        ]
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn quorum_sizes() {
        assert_eq!(
            [0, 1, 2, 3, 4, 5, 6, 7].map(quorum),
            [1, 1, 2, 2, 3, 3, 4, 4]
        );
    }

    #[test]
    fn removal_on_a_degraded_cluster_is_refused_with_the_arithmetic() {
        let c = check_removal(&three(), &set(&["a1", "b2"]), "b2").unwrap();
        assert!(!c.keeps_quorum);
        assert_eq!(
            c.to_string(),
            "3 voting members, 1 unhealthy: removing etcd-2 leaves 2 voters of which 1 healthy; quorum needs 2"
        );
        // Removing the dead one is what repairs the cluster.
        let c = check_removal(&three(), &set(&["a1", "b2"]), "c3").unwrap();
        assert!(c.keeps_quorum, "{c}");
        assert_eq!(
            c.to_string(),
            "3 voting members, 1 unhealthy: removing etcd-3 leaves 2 voters of which 2 healthy; quorum needs 2"
        );
    }

    #[test]
    fn removal_on_a_healthy_cluster() {
        let all = set(&["a1", "b2", "c3"]);
        assert!(check_removal(&three(), &all, "a1").unwrap().keeps_quorum);
        assert!(check_removal(&three(), &all, "zz").is_none());
        // 2 voters left alone: removing one leaves 1 of 1.
        let two = &three()[..2];
        assert!(check_removal(two, &all, "a1").unwrap().keeps_quorum);
        // The last voter can never go.
        let c = check_removal(&three()[..1], &all, "a1").unwrap();
        assert!(!c.keeps_quorum);
        assert_eq!(
            c.to_string(),
            "1 voting member, 0 unhealthy: removing etcd-1 leaves 0 voters of which 0 healthy; quorum needs 1"
        );
    }

    #[test]
    fn four_voters_one_down() {
        let mut m = three();
        m.push(member("d4", "etcd-4", 14, false));
        let healthy = set(&["a1", "b2", "d4"]);
        // 4 voters need 3; after removing a healthy one, 3 voters need 2 and 2 are healthy.
        let c = check_removal(&m, &healthy, "a1").unwrap();
        assert!(c.keeps_quorum);
        assert_eq!(
            (
                c.voters,
                c.unhealthy,
                c.voters_after,
                c.healthy_after,
                c.quorum_after
            ),
            (4, 1, 3, 2, 2)
        );
        // Two removals in a row: the second one sees the first.
        let cs = check_removals(&m, &healthy, &["a1".into(), "b2".into()]);
        assert!(cs[0].keeps_quorum);
        assert!(!cs[1].keeps_quorum, "{}", cs[1]);
    }

    #[test]
    fn learners_do_not_vote() {
        let mut m = three();
        m.push(member("d4", "etcd-4", 14, true));
        let c = check_removal(&m, &set(&["a1", "b2", "c3"]), "d4").unwrap();
        assert!(c.keeps_quorum && c.is_learner);
        assert_eq!(
            c.to_string(),
            "3 voting members, 0 unhealthy: removing learner etcd-4 leaves the 3 voters of which 3 healthy; quorum needs 2"
        );
        // A learner's health does not count toward quorum.
        let c = check_removal(&m, &set(&["a1", "d4"]), "b2").unwrap();
        assert_eq!(
            (c.voters, c.unhealthy, c.healthy_after, c.keeps_quorum),
            (3, 2, 1, false)
        );
        // Without quorum even a learner cannot be removed.
        assert!(!check_removal(&m, &set(&["a1"]), "d4").unwrap().keeps_quorum);
    }

    #[test]
    fn unstarted_voter_counts_as_unhealthy() {
        // Guide 000: `member add` of a 4th voter that never starts; 3 of 4 healthy.
        let mut m = three();
        m.push(member("e5", "", 15, false));
        let healthy = set(&["a1", "b2", "c3"]);
        let forget = check_removal(&m, &healthy, "e5").unwrap();
        assert!(forget.keeps_quorum);
        assert_eq!(
            forget.to_string(),
            "4 voting members, 1 unhealthy: removing e5 (never started) leaves 3 voters of which 3 healthy; quorum needs 2"
        );
    }

    fn status(raft_index: u64) -> Status {
        Status {
            member_id: String::new(),
            leader_id: String::new(),
            is_leader: false,
            version: "3.4.23".into(),
            db_size: 0,
            raft_term: 2,
            raft_index,
            raft_applied_index: raft_index,
            db_size_in_use: 0,
            revision: 1,
            is_learner: true,
            errors: vec![],
        }
    }

    #[test]
    fn ghost_flags() {
        let cluster: Vec<String> = (11..=14)
            .map(|i| format!("https://198.18.0.{i}:2380"))
            .collect();
        let fine = member("a1", "etcd-1", 11, false);
        assert!(flags(&fine, Some(&status(10)), Some(10), &cluster).is_empty());
        // A voter that is down is unhealthy, not a ghost.
        assert!(flags(&fine, None, Some(10), &cluster).is_empty());

        let unstarted = member("e5", "", 14, true);
        assert_eq!(
            flags(&unstarted, None, Some(10), &cluster),
            vec![Flag::NeverStarted]
        );

        let behind = member("d4", "etcd-4", 14, true);
        let f = flags(&behind, Some(&status(50)), Some(100), &cluster);
        assert_eq!(
            f,
            vec![Flag::LearnerBehind {
                learner_index: 50,
                leader_index: 100
            }]
        );
        assert!(!f[0].is_ghost());
        assert!(flags(&behind, Some(&status(95)), Some(100), &cluster).is_empty());
        assert_eq!(
            flags(&behind, None, Some(100), &cluster),
            vec![Flag::LearnerUnreachable]
        );

        let gone = member("f6", "etcd-9", 19, false);
        let f = flags(&gone, Some(&status(10)), Some(10), &cluster);
        assert_eq!(f, vec![Flag::NotInClusterFile]);
        assert!(f[0].is_ghost());
        let gone_unstarted = member("f7", "", 20, false);
        assert_eq!(
            flags(&gone_unstarted, None, None, &cluster),
            vec![Flag::NeverStarted, Flag::NotInClusterFile]
        );
        // URLs compare without a trailing slash and case-insensitively.
        let mut slash = member("a1", "etcd-1", 11, false);
        slash.peer_urls = vec!["HTTPS://198.18.0.11:2380/".into()];
        assert!(flags(&slash, Some(&status(1)), Some(1), &cluster).is_empty());
    }

    #[test]
    fn caught_up_is_ninety_percent() {
        assert!(caught_up(90, 100) && caught_up(100, 100) && caught_up(0, 0));
        assert!(!caught_up(89, 100) && !caught_up(0, 5));
        assert!(caught_up(u64::MAX, u64::MAX));
    }

    #[test]
    fn adding_a_member() {
        let url = "https://198.18.0.14:2380";
        let plan = plan_add(&three(), "etcd-4", url).unwrap();
        assert_eq!(
            plan,
            AddPlan::Add {
                initial_cluster: "etcd-1=https://198.18.0.11:2380,etcd-2=https://198.18.0.12:2380,etcd-3=https://198.18.0.13:2380,etcd-4=https://198.18.0.14:2380".into()
            }
        );

        // Run again after the add: the member is registered, not started; same flags.
        let mut after = three();
        after.insert(1, member("d4", "", 14, true));
        match plan_add(&after, "etcd-4", url).unwrap() {
            AddPlan::AlreadyAdded {
                id,
                is_learner,
                initial_cluster,
            } => {
                assert_eq!((id.as_str(), is_learner), ("d4", true));
                assert_eq!(
                    initial_cluster,
                    "etcd-1=https://198.18.0.11:2380,etcd-2=https://198.18.0.12:2380,etcd-3=https://198.18.0.13:2380,etcd-4=https://198.18.0.14:2380"
                );
            }
            other => panic!("{other:?}"),
        }

        // Started: nothing to do.
        let mut started = three();
        started.push(member("d4", "etcd-4", 14, true));
        assert_eq!(
            plan_add(&started, "etcd-4", url).unwrap(),
            AddPlan::AlreadyMember {
                id: "d4".into(),
                is_learner: true
            }
        );
    }

    #[test]
    fn adds_that_would_fail_to_start_are_blocked() {
        // Another member added and never started: "member count is unequal" waiting to happen.
        let mut m = three();
        m.push(member("e5", "", 15, false));
        let err = plan_add(&m, "etcd-4", "https://198.18.0.14:2380").unwrap_err();
        assert!(
            matches!(&err, AddBlocked::OtherUnstarted { id, .. } if id == "e5"),
            "{err}"
        );
        assert!(err.to_string().contains("member count is unequal"));

        // Same name at another address (a re-addressed host): remove the old member first.
        let err = plan_add(&three(), "etcd-2", "https://198.18.0.22:2380").unwrap_err();
        assert!(matches!(err, AddBlocked::NameTaken { .. }), "{err}");

        // The address belongs to another started member.
        let err = plan_add(&three(), "etcd-9", "https://198.18.0.12:2380").unwrap_err();
        assert_eq!(
            err,
            AddBlocked::UrlTaken {
                peer_url: "https://198.18.0.12:2380".into(),
                name: "etcd-2".into(),
                id: "b2".into()
            }
        );
    }
}
