//! Pure decisions for `kubeha node add|remove|replace` and `kubeha reset`: what an etcd join
//! must do given the membership and the host's data dir, whether a removal keeps quorum,
//! the flags a joining member starts with, and which paths a reset removes. No I/O.

use std::collections::BTreeSet;

use kubeha_etcd::{
    Member,
    membership::{QuorumCheck, check_removal, initial_cluster},
};
use kubeha_render::HostTree;
use kubeha_spec::Spec;
use serde::Serialize;

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// What bringing member `name` (peer URL `peer_url`) into the cluster takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinPlan {
    /// A started member standing for this node that must go first (by ID): its host's data
    /// dir is gone, or the node is being replaced.
    pub remove: Option<Member>,
    /// `member add --learner` is needed (no unstarted member holds the peer URL yet).
    pub add: bool,
    /// Stop etcd and empty the data dir before starting: the host joins from nothing.
    pub wipe: bool,
    /// Start with `--initial-cluster-state=existing` and the exact initial cluster.
    pub start_existing: bool,
    /// Already a started voting member whose data is on the host: nothing to do for etcd.
    pub nothing: bool,
}

/// Why a join cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinBlocked {
    #[error(
        "member {id} ({peer_urls}) was added but never started; a new member's --initial-cluster would have to list it, and etcd refuses a list that differs from the membership (\"member count is unequal\")"
    )]
    OtherUnstarted { id: String, peer_urls: String },
    #[error("peer URL {peer_url} belongs to member {name} ({id}), not {wanted}")]
    UrlTaken {
        peer_url: String,
        name: String,
        id: String,
        wanted: String,
    },
}

/// Decides an etcd join. `data_present`: the host's data dir holds a member (`member/`);
/// `replace`: the user asked to replace the node (its old member goes whatever its state).
pub fn plan_join(
    members: &[Member],
    name: &str,
    peer_url: &str,
    data_present: bool,
    replace: bool,
) -> Result<JoinPlan, JoinBlocked> {
    let at_url = members
        .iter()
        .find(|m| m.peer_urls.iter().any(|u| same_url(u, peer_url)));
    if let Some(m) = at_url.filter(|m| !m.name.is_empty() && m.name != name) {
        return Err(JoinBlocked::UrlTaken {
            peer_url: peer_url.into(),
            name: m.name.clone(),
            id: m.id.clone(),
            wanted: name.into(),
        });
    }
    // The started member that stands for this node: same name (maybe at an old address) or
    // same peer URL.
    let started = members.iter().find(|m| {
        !m.name.is_empty() && (m.name == name || m.peer_urls.iter().any(|u| same_url(u, peer_url)))
    });
    let unstarted_here = at_url.filter(|m| m.name.is_empty());
    if let Some(other) = members
        .iter()
        .find(|m| m.name.is_empty() && Some(m.id.as_str()) != unstarted_here.map(|u| u.id.as_str()))
    {
        return Err(JoinBlocked::OtherUnstarted {
            id: other.id.clone(),
            peer_urls: other.peer_urls.join(","),
        });
    }
    let mut plan = JoinPlan {
        remove: None,
        add: false,
        wipe: true,
        start_existing: true,
        nothing: false,
    };
    match started {
        Some(m) if !replace && data_present && same_peer(m, peer_url) => {
            // A live member (voter or learner) with its data: keep it. A learner is then only
            // started and promoted.
            plan.wipe = false;
            plan.start_existing = false;
            plan.nothing = !m.is_learner;
        }
        Some(m) => {
            plan.remove = Some(m.clone());
            plan.add = true;
        }
        None => plan.add = unstarted_here.is_none(),
    }
    Ok(plan)
}

fn same_peer(m: &Member, peer_url: &str) -> bool {
    m.peer_urls.iter().any(|u| same_url(u, peer_url))
}

/// The membership after `plan` is carried out (the added member has no name yet), and the
/// exact `--initial-cluster` the joining member must start with.
pub fn join_initial_cluster(
    members: &[Member],
    plan: &JoinPlan,
    name: &str,
    peer_url: &str,
) -> String {
    let after: Vec<Member> = members
        .iter()
        .filter(|m| plan.remove.as_ref().is_none_or(|r| r.id != m.id))
        .cloned()
        .collect();
    initial_cluster(&after, name, peer_url)
}

/// The quorum arithmetic of removing member `id`; `Err` (with the same arithmetic) when it
/// would lose quorum and `force` is not set.
pub fn guard_removal(
    members: &[Member],
    healthy: &BTreeSet<String>,
    id: &str,
    force: bool,
) -> Result<Option<QuorumCheck>, QuorumCheck> {
    match check_removal(members, healthy, id) {
        Some(c) if !c.keeps_quorum && !force => Err(c),
        other => Ok(other),
    }
}

/// The member that stands for node `name` at `peer_url`: by peer URL first, then by name.
pub fn member_of<'a>(
    members: &'a [Member],
    name: &str,
    peer_url: Option<&str>,
) -> Option<&'a Member> {
    peer_url
        .and_then(|p| {
            members
                .iter()
                .find(|m| m.peer_urls.iter().any(|u| same_url(u, p)))
        })
        .or_else(|| members.iter().find(|m| m.name == name))
}

/// The rendered etcd environment file with the joining flags: `--initial-cluster` replaced
/// by `initial_cluster` and `--initial-cluster-state=existing`. `None` when the text does not
/// hold both flags (it was not rendered by kubeha).
pub fn join_env(rendered: &str, initial_cluster: &str) -> Option<String> {
    let (mut cluster, mut state) = (false, false);
    let out: Vec<String> = rendered
        .lines()
        .map(|line| {
            line.split(' ')
                .map(|w| {
                    let (prefix, word) = match w.split_once('=') {
                        Some((p, rest)) if !p.starts_with("--") && rest.starts_with("--") => {
                            (format!("{p}="), rest)
                        }
                        _ => (String::new(), w),
                    };
                    if word.starts_with("--initial-cluster=") {
                        cluster = true;
                        format!("{prefix}--initial-cluster={initial_cluster}")
                    } else if word.starts_with("--initial-cluster-state=") {
                        state = true;
                        format!("{prefix}--initial-cluster-state=existing")
                    } else {
                        w.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (cluster && state).then(|| {
        let mut s = out.join("\n");
        if rendered.ends_with('\n') {
            s.push('\n');
        }
        s
    })
}

/// Whether two etcd environment files differ only in `--initial-cluster*` flags, which etcd
/// reads only when its data dir is empty: such a change is written without a restart.
pub fn only_initial_cluster_differs(a: &str, b: &str) -> bool {
    let strip = |s: &str| -> Vec<String> {
        s.split([' ', '\n'])
            .map(|w| {
                w.rsplit_once("=--")
                    .map_or(w.to_string(), |(_, r)| format!("--{r}"))
            })
            .filter(|w| {
                !w.starts_with("--initial-cluster=") && !w.starts_with("--initial-cluster-state=")
            })
            .collect()
    };
    strip(a) == strip(b)
}

/// Directories a reset removes on every host besides the rendered files.
const RESET_DIRS: [&str; 4] = [
    "/etc/kubernetes/pki",
    "/etc/kubernetes/manifests",
    "/etc/kubernetes/etcd-proxy",
    "/etc/etcd",
];

/// What a reset removes from the host of `tree` (guide 000's reset list): every file kubeha
/// rendered there, the PKI and manifest dirs, and the etcd data dir of an etcd member.
pub fn reset_paths(spec: &Spec, tree: &HostTree) -> Vec<String> {
    let mut out: BTreeSet<String> = tree.files.iter().map(|f| f.path.clone()).collect();
    out.extend(RESET_DIRS.iter().map(|d| d.to_string()));
    if spec
        .node(&tree.node)
        .is_some_and(|n| spec.is_etcd_member(n))
        && is_safe_data_dir(&spec.etcd.data_dir)
    {
        out.insert(spec.etcd.data_dir.clone());
    }
    out.into_iter().collect()
}

/// A data dir that can be removed with `rm -rf` without taking a system dir with it.
pub fn is_safe_data_dir(dir: &str) -> bool {
    let d = dir.trim_end_matches('/');
    d.starts_with('/')
        && d.split('/').filter(|p| !p.is_empty()).count() >= 2
        && !d.contains("..")
        && !["/var/lib", "/usr/lib", "/etc/kubernetes"].contains(&d)
}

/// Services to stop before the files go: the reverse of the start order.
pub fn stop_order(tree: &HostTree) -> Vec<String> {
    tree.services.iter().rev().cloned().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(id: &str, name: &str, ip: u8, learner: bool) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            peer_urls: vec![format!("https://198.18.0.{ip}:2380")],
            client_urls: vec![],
            is_learner: learner,
        }
    }

    fn three() -> Vec<Member> {
        vec![
            m("a1", "etcd-1", 11, false),
            m("b2", "etcd-2", 12, false),
            m("c3", "etcd-3", 13, false),
        ]
    }

    const URL4: &str = "https://198.18.0.14:2380";
    const URL3: &str = "https://198.18.0.13:2380";

    #[test]
    fn a_new_member_is_added_as_learner_with_existing_state() {
        let p = plan_join(&three(), "etcd-4", URL4, false, false).unwrap();
        assert_eq!(
            p,
            JoinPlan {
                remove: None,
                add: true,
                wipe: true,
                start_existing: true,
                nothing: false
            }
        );
        assert_eq!(
            join_initial_cluster(&three(), &p, "etcd-4", URL4),
            "etcd-1=https://198.18.0.11:2380,etcd-2=https://198.18.0.12:2380,etcd-3=https://198.18.0.13:2380,etcd-4=https://198.18.0.14:2380"
        );
    }

    #[test]
    fn an_added_but_unstarted_member_is_only_started() {
        let mut ms = three();
        ms.push(m("d4", "", 14, true));
        let p = plan_join(&ms, "etcd-4", URL4, false, false).unwrap();
        assert!(!p.add && p.remove.is_none() && p.wipe && p.start_existing);
        // The initial cluster lists the started members and the new one exactly once.
        assert_eq!(
            join_initial_cluster(&ms, &p, "etcd-4", URL4)
                .matches("etcd-4=")
                .count(),
            1
        );
    }

    #[test]
    fn another_unstarted_member_blocks_the_join() {
        let mut ms = three();
        ms.push(m("e5", "", 15, true));
        assert!(matches!(
            plan_join(&ms, "etcd-4", URL4, false, false),
            Err(JoinBlocked::OtherUnstarted { .. })
        ));
    }

    #[test]
    fn a_live_member_with_data_is_left_alone_and_a_learner_is_only_promoted() {
        let p = plan_join(&three(), "etcd-3", URL3, true, false).unwrap();
        assert!(p.nothing && !p.wipe && !p.add && p.remove.is_none());
        let mut ms = three();
        ms.push(m("d4", "etcd-4", 14, true));
        let p = plan_join(&ms, "etcd-4", URL4, true, false).unwrap();
        assert!(!p.nothing && !p.wipe && !p.add);
    }

    #[test]
    fn a_member_whose_data_dir_is_fresh_is_removed_and_readded() {
        // Guide 003: re-adding at the same address. Never start with `new` against a
        // membership that already holds the URL: remove → wipe → add existing.
        let p = plan_join(&three(), "etcd-3", URL3, false, false).unwrap();
        assert_eq!(p.remove.as_ref().map(|r| r.id.as_str()), Some("c3"));
        assert!(p.add && p.wipe && p.start_existing);
        let ic = join_initial_cluster(&three(), &p, "etcd-3", URL3);
        assert_eq!(
            ic,
            "etcd-1=https://198.18.0.11:2380,etcd-2=https://198.18.0.12:2380,etcd-3=https://198.18.0.13:2380"
        );
    }

    #[test]
    fn replace_removes_the_old_member_even_with_data_and_at_a_new_address() {
        let p = plan_join(&three(), "etcd-3", URL3, true, true).unwrap();
        assert_eq!(p.remove.as_ref().map(|r| r.id.as_str()), Some("c3"));
        let new_url = "https://198.18.0.23:2380";
        let p = plan_join(&three(), "etcd-3", new_url, false, true).unwrap();
        assert_eq!(p.remove.as_ref().map(|r| r.id.as_str()), Some("c3"));
        let ic = join_initial_cluster(&three(), &p, "etcd-3", new_url);
        assert!(
            !ic.contains("198.18.0.13") && ic.ends_with("etcd-3=https://198.18.0.23:2380"),
            "{ic}"
        );
    }

    #[test]
    fn a_peer_url_held_by_another_name_is_refused() {
        assert!(matches!(
            plan_join(&three(), "etcd-9", URL3, false, false),
            Err(JoinBlocked::UrlTaken { .. })
        ));
    }

    #[test]
    fn removal_is_guarded_by_quorum_unless_forced() {
        let ms = three();
        let healthy: BTreeSet<String> = ["a1", "b2"].iter().map(|s| s.to_string()).collect();
        // Removing the dead one keeps 2 of 2.
        assert!(
            guard_removal(&ms, &healthy, "c3", false)
                .unwrap()
                .unwrap()
                .keeps_quorum
        );
        // Removing a healthy one leaves 1 healthy of 2 voters: quorum needs 2.
        let c = guard_removal(&ms, &healthy, "a1", false).unwrap_err();
        assert_eq!((c.voters_after, c.healthy_after, c.quorum_after), (2, 1, 2));
        assert!(c.to_string().contains("quorum needs 2"), "{c}");
        assert!(guard_removal(&ms, &healthy, "a1", true).is_ok());
        assert_eq!(guard_removal(&ms, &healthy, "zz", false), Ok(None));
    }

    #[test]
    fn members_are_found_by_peer_url_then_name() {
        let ms = three();
        assert_eq!(
            member_of(&ms, "x", Some(URL3)).map(|m| m.id.as_str()),
            Some("c3")
        );
        assert_eq!(
            member_of(&ms, "etcd-2", Some(URL4)).map(|m| m.id.as_str()),
            Some("b2")
        );
        assert_eq!(member_of(&ms, "etcd-9", None), None);
    }

    const ENV: &str = "# etcd flags\n# After editing: systemctl restart etcd\nKUBEHA_ETCD_ARGS=--data-dir=/var/lib/etcd --initial-cluster=etcd-1=https://a:2380,etcd-2=https://b:2380 --initial-cluster-state=new --name=etcd-2\n";

    #[test]
    fn join_env_swaps_only_the_initial_cluster_flags() {
        let j = join_env(
            ENV,
            "etcd-1=https://a:2380,etcd-2=https://b:2380,etcd-9=https://c:2380",
        )
        .unwrap();
        assert!(j.contains("KUBEHA_ETCD_ARGS=--data-dir=/var/lib/etcd --initial-cluster=etcd-1=https://a:2380,etcd-2=https://b:2380,etcd-9=https://c:2380 --initial-cluster-state=existing --name=etcd-2\n"), "{j}");
        assert!(j.starts_with("# etcd flags\n"));
        assert!(only_initial_cluster_differs(ENV, &j));
        assert_eq!(join_env("KUBEHA_ETCD_ARGS=--name=x\n", "a=b"), None);
    }

    #[test]
    fn other_flag_changes_are_not_written_silently() {
        let other = ENV.replace("--name=etcd-2", "--name=etcd-3");
        assert!(!only_initial_cluster_differs(ENV, &other));
        let first_flag = ENV.replace("ARGS=--data-dir=/var/lib/etcd", "ARGS=--data-dir=/srv/etcd");
        assert!(!only_initial_cluster_differs(ENV, &first_flag));
        assert!(only_initial_cluster_differs(ENV, ENV));
    }

    #[test]
    fn data_dirs_removed_by_reset_are_never_system_dirs() {
        assert!(is_safe_data_dir("/var/lib/etcd"));
        assert!(is_safe_data_dir("/srv/etcd/data/"));
        for bad in [
            "/",
            "/var",
            "/var/lib",
            "/var/lib/",
            "etcd",
            "/var/lib/../..",
            "/etc/kubernetes",
        ] {
            assert!(!is_safe_data_dir(bad), "{bad}");
        }
    }
}
