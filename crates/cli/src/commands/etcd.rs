//! `kubeha etcd …`: membership, health, snapshots and defragmentation over etcd's v3 API
//! (mutual TLS with the state dir's etcd CA and healthcheck-client pair), never etcdctl.
//!
//! Safety rules (design.md, "Rules that keep data safe"): a removal that would lose quorum
//! is refused with the arithmetic unless `--force`; members are added as learners with the
//! exact `--initial-cluster`; an add that would fail with "member count is unequal" (another
//! member added and never started) is refused. Exit status: 0 done, 1 failed, 2 refused
//! before anything changed (bad argument or a safety rule).

mod change;
mod maintain;
mod restore;
mod show;

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use kubeha_etcd::{
    Alarm, Client, EtcdError, Health, Member, Status, TlsMaterial, error_chain,
    membership::{self, Flag},
};
use kubeha_pki::{CaId, LeafId, LeafKind, StateView};
use kubeha_spec::Spec;

use crate::{
    args::{EtcdCommand, Global, SnapshotCommand},
    error::{CliError, EXIT_FAILURE},
};

/// Per-request timeout for ordinary calls; a dead member costs at most this.
const TIMEOUT: Duration = Duration::from_secs(3);
/// How long a membership change is retried while etcd answers "unhealthy cluster".
const RECONFIG_RETRY: Duration = Duration::from_secs(15);

pub fn run(g: &Global, c: &EtcdCommand) -> Result<ExitCode, CliError> {
    let loaded = super::load_spec(g)?;
    let spec = &loaded.spec;
    let r = match c {
        EtcdCommand::Members => show::members(g, spec),
        EtcdCommand::Health => show::health(g, spec),
        EtcdCommand::Add { node } => change::add(g, spec, node),
        EtcdCommand::Remove { member, force } => change::remove(g, spec, member, *force),
        EtcdCommand::Promote { member } => change::promote(g, spec, member),
        EtcdCommand::Forget { member, yes } => change::forget(g, spec, member.as_deref(), *yes),
        EtcdCommand::Snapshot(SnapshotCommand::Save { file }) => {
            maintain::snapshot_save(g, spec, file)
        }
        EtcdCommand::Snapshot(SnapshotCommand::Restore { file, yes }) => {
            restore::restore(g, spec, file, *yes)
        }
        EtcdCommand::Defrag => maintain::defrag(g, spec),
    };
    finish(r)
}

/// Why an `etcd` command stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Refused before anything changed: a bad argument or a safety rule (exit 2).
    #[error("{message}")]
    Refused { message: String, help: String },
    /// The command ran and could not finish (exit 1).
    #[error("{message}")]
    Failed { message: String, help: String },
    /// etcd could not be asked, or refused (exit 1).
    #[error("cannot {doing}")]
    Etcd {
        doing: String,
        help: String,
        #[source]
        source: Box<EtcdError>,
    },
    /// The client certificate is not in the state dir.
    #[error("cannot read the etcd client certificate for {node} from the state dir {dir}")]
    State {
        node: String,
        dir: PathBuf,
        #[source]
        source: Box<kubeha_pki::PkiError>,
    },
    /// A local file could not be read or written.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Failure {
    pub(crate) fn etcd(doing: impl Into<String>) -> impl FnOnce(EtcdError) -> Failure {
        let doing = doing.into();
        move |source| {
            let help = if source.is_unhealthy_cluster() {
                "etcd's own reconfiguration check refused: a member has been connected for less than 5 s, or the change would leave fewer connected voters than a quorum; check `kubeha etcd health`".into()
            } else {
                String::new()
            };
            Failure::Etcd {
                doing,
                help,
                source: Box::new(source),
            }
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Failure {
        let path = path.into();
        move |source| Failure::Io {
            action,
            path,
            source,
        }
    }
}

/// Refusals become [`CliError::Input`] (exit 2); failures are shown here and exit 1.
fn finish(r: Result<ExitCode, Failure>) -> Result<ExitCode, CliError> {
    let (text, help) = match r {
        Ok(code) => return Ok(code),
        Err(Failure::Refused { message, help }) => return Err(CliError::Input { message, help }),
        Err(Failure::Io {
            action,
            path,
            source,
        }) => {
            return Err(CliError::Io {
                action,
                path,
                source,
            });
        }
        Err(e @ Failure::State { .. }) => (
            error_chain(&e),
            "run `kubeha up` or `kubeha render` with this cluster file and --state-dir first"
                .to_string(),
        ),
        Err(Failure::Failed { message, help }) => (message, help),
        Err(e @ Failure::Etcd { .. }) => {
            let help = match &e {
                Failure::Etcd { help, .. } => help.clone(),
                _ => String::new(),
            };
            (error_chain(&e), help)
        }
    };
    if help.is_empty() {
        errln!("{:?}", miette::miette!("{text}"));
    } else {
        errln!("{:?}", miette::miette!(help = help, "{text}"));
    }
    Ok(ExitCode::from(EXIT_FAILURE))
}

/// An etcd client for the cluster file's members, authenticating with the state dir's etcd
/// CA and the healthcheck-client pair of the first member (as `kubeha status` does).
pub(crate) fn client_from_state(
    spec: &Spec,
    view: &StateView,
    timeout: Duration,
) -> Result<Client, Failure> {
    let members = spec.etcd_members();
    let Some(first) = members.first() else {
        return Err(Failure::Refused {
            message: "the cluster file has no etcd members".into(),
            help: "give nodes the etcd role (or control-plane in the stacked topology)".into(),
        });
    };
    let state = |source| Failure::State {
        node: first.name.clone(),
        dir: view.dir().to_path_buf(),
        source: Box::new(source),
    };
    let ca_pem = view.ca_cert(CaId::Etcd).map_err(state)?;
    let pair = view
        .leaf(&LeafId::new(&first.name, LeafKind::EtcdHealthcheckClient))
        .map_err(state)?;
    let tls = TlsMaterial {
        ca_pem,
        cert_pem: pair.cert_pem,
        key_pem: pair.key_pem,
    };
    let endpoints = members.iter().map(|n| Spec::etcd_client_url(n)).collect();
    Client::new(endpoints, &tls, timeout).map_err(Failure::etcd("set up TLS for etcd"))
}

/// One member as observed now.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub member: Member,
    /// First client URL; empty for a member that never started.
    pub endpoint: String,
    pub health: Health,
    pub status: Option<Status>,
    pub flags: Vec<Flag>,
}

impl Observed {
    pub fn label(&self) -> String {
        membership::label(&self.member)
    }

    /// `etcd-b (8e9e05c52164694d)`.
    pub fn describe(&self) -> String {
        if self.member.name.is_empty() {
            format!("member {} (never started)", self.member.id)
        } else {
            format!("{} ({})", self.member.name, self.member.id)
        }
    }

    pub fn is_ghost(&self) -> bool {
        self.flags.iter().any(Flag::is_ghost)
    }
}

/// Every member with its health, status and flags, plus the alarms.
pub(crate) struct Census {
    pub members: Vec<Observed>,
    /// Hex ID of the leader most members name.
    pub leader: Option<String>,
    pub alarms: Result<Vec<Alarm>, String>,
}

impl Census {
    /// Lists the members through `client` and asks each one for health and status, all at
    /// once; at most one timeout long when members are down. Returns the client with its
    /// endpoints reordered: the leader first, then healthy voters, then the rest.
    pub fn take(client: Client, spec: &Spec) -> Result<(Client, Census), Failure> {
        let list = client
            .member_list()
            .map_err(Failure::etcd("list etcd members (no member answered)"))?;
        let cluster_peers: Vec<String> = spec
            .etcd_members()
            .iter()
            .map(|n| Spec::etcd_peer_url(n))
            .collect();
        let observed: Vec<(Member, Health, Option<Status>)> = std::thread::scope(|s| {
            let handles: Vec<_> = list
                .into_iter()
                .map(|m| {
                    let client = &client;
                    s.spawn(move || {
                        let health = client.member_health(&m);
                        let status = m.client_urls.first().and_then(|e| client.status(e).ok());
                        (m, health, status)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        // The leader most members name; its raft index is what learners are measured by.
        let mut votes: std::collections::BTreeMap<&str, usize> = Default::default();
        for (_, _, s) in &observed {
            if let Some(s) = s.as_ref().filter(|s| s.leader_id != "0") {
                *votes.entry(s.leader_id.as_str()).or_default() += 1;
            }
        }
        let leader = votes
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(l, _)| l.to_string());
        let leader_index = observed
            .iter()
            .find(|(m, _, _)| Some(&m.id) == leader.as_ref())
            .and_then(|(_, _, s)| s.as_ref())
            .map(|s| s.raft_index);
        let mut members: Vec<Observed> = observed
            .into_iter()
            .map(|(member, health, status)| Observed {
                endpoint: member.client_urls.first().cloned().unwrap_or_default(),
                flags: membership::flags(&member, status.as_ref(), leader_index, &cluster_peers),
                member,
                health,
                status,
            })
            .collect();
        // Cluster-file order first, then the rest by name; as `kubeha status` lists nodes.
        let position = |o: &Observed| {
            cluster_peers
                .iter()
                .position(|p| o.member.peer_urls.iter().any(|u| u == p))
                .unwrap_or(usize::MAX)
        };
        members.sort_by(|a, b| {
            (
                position(a),
                a.member.name.is_empty(),
                &a.member.name,
                &a.member.id,
            )
                .cmp(&(
                    position(b),
                    b.member.name.is_empty(),
                    &b.member.name,
                    &b.member.id,
                ))
        });
        let alarms = client.alarms().map_err(|e| error_chain(&e));
        // Later calls go to the leader first, then healthy members, then the rest.
        let mut endpoints: Vec<String> = Vec::new();
        let mut push = |e: &str| {
            if !e.is_empty() && !endpoints.iter().any(|x| x == e) {
                endpoints.push(e.to_string());
            }
        };
        for o in members
            .iter()
            .filter(|o| Some(&o.member.id) == leader.as_ref() && o.health.healthy)
        {
            push(&o.endpoint);
        }
        for o in members
            .iter()
            .filter(|o| o.health.healthy && !o.member.is_learner)
        {
            push(&o.endpoint);
        }
        for e in client
            .endpoints()
            .iter()
            .chain(members.iter().map(|o| &o.endpoint))
        {
            push(e);
        }
        Ok((
            client.with_endpoints(endpoints),
            Census {
                members,
                leader,
                alarms,
            },
        ))
    }

    pub fn list(&self) -> Vec<Member> {
        self.members.iter().map(|o| o.member.clone()).collect()
    }

    pub fn healthy_ids(&self) -> BTreeSet<String> {
        self.members
            .iter()
            .filter(|o| o.health.healthy)
            .map(|o| o.member.id.clone())
            .collect()
    }

    pub fn voters(&self) -> usize {
        self.members.iter().filter(|o| !o.member.is_learner).count()
    }

    pub fn healthy_voters(&self) -> usize {
        self.members
            .iter()
            .filter(|o| !o.member.is_learner && o.health.healthy)
            .count()
    }

    pub fn has_quorum(&self) -> bool {
        self.healthy_voters() >= membership::quorum(self.voters())
    }

    /// The member a user named: by member name, hex ID, or the cluster-file node whose peer
    /// URL it has (which also finds a member that never started and so has no name).
    pub fn resolve(&self, spec: &Spec, arg: &str) -> Result<&Observed, Failure> {
        let by_name: Vec<&Observed> = self
            .members
            .iter()
            .filter(|o| o.member.name == arg)
            .collect();
        if let [one] = by_name[..] {
            return Ok(one);
        }
        let hex = arg.trim_start_matches("0x").to_ascii_lowercase();
        if let Some(o) = self.members.iter().find(|o| o.member.id == hex) {
            return Ok(o);
        }
        if let Some(node) = spec.node(arg) {
            let url = Spec::etcd_peer_url(node);
            if let Some(o) = self
                .members
                .iter()
                .find(|o| o.member.peer_urls.iter().any(|u| u == &url))
            {
                return Ok(o);
            }
        }
        let known: Vec<String> = self
            .members
            .iter()
            .map(|o| {
                if o.member.name.is_empty() {
                    o.member.id.clone()
                } else {
                    format!("{} ({})", o.member.name, o.member.id)
                }
            })
            .collect();
        Err(Failure::Refused {
            message: if by_name.len() > 1 {
                format!("{} members are named {arg:?}", by_name.len())
            } else {
                format!("no etcd member is named {arg:?} or has that ID")
            },
            help: format!("members: {}; name one by its hex ID", known.join(", ")),
        })
    }
}

/// Connects with the state dir's certificates and takes a [`Census`].
pub(crate) fn survey(g: &Global, spec: &Spec) -> Result<(Client, Census), Failure> {
    let view = StateView::new(&g.state_dir, &spec.name);
    let client = client_from_state(spec, &view, TIMEOUT)?;
    Census::take(client, spec)
}

/// Runs a membership change. When `retry`, repeats it for up to [`RECONFIG_RETRY`] while
/// etcd answers "unhealthy cluster": with quorum intact per our own guard, that is etcd's
/// rule that every member be connected for 5 s, which passes by itself.
pub(crate) fn reconfigure<T>(
    doing: &str,
    retry: bool,
    mut f: impl FnMut() -> Result<T, EtcdError>,
) -> Result<T, Failure> {
    let start = Instant::now();
    let mut said = false;
    loop {
        match f() {
            Err(e) if retry && e.is_unhealthy_cluster() && start.elapsed() < RECONFIG_RETRY => {
                if !said {
                    progress!(
                        "etcd says \"unhealthy cluster\" (a member connected less than 5 s ago); retrying for up to {}s…",
                        RECONFIG_RETRY.as_secs()
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            other => return other.map_err(Failure::etcd(doing)),
        }
    }
}

/// Sizes as etcdctl prints them (SI units).
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[i])
    } else {
        format!("{v:.0} {}", UNITS[i])
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_etcdctl() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(20_480), "20 kB");
        assert_eq!(human_bytes(114_720), "115 kB");
        assert_eq!(human_bytes(3_300_000), "3.3 MB");
        assert_eq!(human_bytes(2_000_000_000), "2.0 GB");
    }

    pub(super) fn observed(id: &str, name: &str, ip: u8, learner: bool, healthy: bool) -> Observed {
        let member = Member {
            id: id.into(),
            name: name.into(),
            peer_urls: vec![format!("https://198.18.0.{ip}:2380")],
            client_urls: if name.is_empty() {
                vec![]
            } else {
                vec![format!("https://198.18.0.{ip}:2379")]
            },
            is_learner: learner,
        };
        Observed {
            endpoint: member.client_urls.first().cloned().unwrap_or_default(),
            health: Health {
                endpoint: String::new(),
                healthy,
                took: Duration::from_millis(2),
                error: None,
            },
            status: None,
            flags: vec![],
            member,
        }
    }

    pub(super) fn test_spec() -> Spec {
        let text = "name: t\nkubernetesVersion: v1.34.2\ntopology: external\nnetworking: { nodeCidr: 198.18.0.0/24, podCidr: 10.244.0.0/16, serviceCidr: 10.96.0.0/16 }\nnodes:\n  - { name: etcd-1, address: 198.18.0.11, roles: [etcd] }\n  - { name: etcd-2, address: 198.18.0.12, roles: [etcd] }\n  - { name: etcd-3, address: 198.18.0.13, roles: [etcd] }\n  - { name: etcd-4, address: 198.18.0.14, roles: [etcd] }\n  - { name: cp-1, address: 198.18.0.21, roles: [control-plane] }\n";
        match kubeha_spec::load_str(text, std::path::Path::new("t.yaml")) {
            Ok(l) => l.spec,
            Err(e) => panic!("{e:?}"),
        }
    }

    pub(super) fn census(members: Vec<Observed>) -> Census {
        Census {
            members,
            leader: Some("a1".into()),
            alarms: Ok(vec![]),
        }
    }

    #[test]
    fn members_are_found_by_name_id_or_node() {
        let spec = test_spec();
        let s = census(vec![
            observed("a1", "etcd-1", 11, false, true),
            observed("b2", "etcd-2", 12, false, true),
            observed("d4", "", 14, true, false),
        ]);
        assert_eq!(
            s.resolve(&spec, "etcd-2").map(|o| o.member.id.clone()).ok(),
            Some("b2".into())
        );
        assert_eq!(
            s.resolve(&spec, "0xA1").map(|o| o.member.id.clone()).ok(),
            Some("a1".into())
        );
        // The never-started learner has no name; its node name finds it by peer URL.
        assert_eq!(
            s.resolve(&spec, "etcd-4").map(|o| o.member.id.clone()).ok(),
            Some("d4".into())
        );
        match s.resolve(&spec, "etcd-9") {
            Err(Failure::Refused { message, help }) => {
                assert!(message.contains("etcd-9"), "{message}");
                assert!(
                    help.contains("etcd-1 (a1)") && help.contains("d4"),
                    "{help}"
                );
            }
            _ => panic!("etcd-9 should not resolve"),
        }
        assert_eq!(
            (s.voters(), s.healthy_voters(), s.has_quorum()),
            (2, 2, true)
        );
    }
}
