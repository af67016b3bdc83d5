//! Facts from each host: what is at every rendered path, which services run, and the few
//! system facts preflight and the gates need — in three remote commands per host.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use kubeha_plan::{HostFacts, ObservedFile};
use kubeha_render::HostTree;
use kubeha_transport::{Command, Transport, TransportError};
use serde::Serialize;

use crate::service::{ServiceManager, required_binary};

/// Everything kubeha learned about one host.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    pub node: String,
    pub manager: ServiceManager,
    pub facts: HostFacts,
    /// Binaries the host's units need but that are not installed.
    pub missing: BTreeSet<String>,
    /// Host clock minus ours, in seconds.
    pub clock_skew_secs: i64,
    pub swap_on: bool,
    /// TCP ports something listens on.
    pub listening: BTreeSet<u16>,
    /// Addresses configured on the host's interfaces.
    pub addresses: BTreeSet<IpAddr>,
    #[serde(skip)]
    pub took: Duration,
}

const PROBE: &str = r#"
if [ -d /run/systemd/system ]; then echo manager=systemd; else echo manager=none; fi
echo now=$(date +%s)
for b in kubelet containerd kube-apiserver curl; do command -v "$b" >/dev/null 2>&1 && echo have=$b; done
if [ -n "$(tail -n +2 /proc/swaps 2>/dev/null)" ]; then echo swap=on; fi
ss -ltnH 2>/dev/null | awk '{print "listen=" $4}'
ip -o addr show 2>/dev/null | awk '{print "addr=" $4}'
"#;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Observes one host. `supervisor` is the kubeha binary path used on hosts without systemd.
pub fn observe(
    t: &dyn Transport,
    tree: &HostTree,
    supervisor: Option<&str>,
) -> Result<Observed, TransportError> {
    let started = Instant::now();
    let probe = t.run(
        &Command::script(PROBE)
            .sudo()
            .timeout(Duration::from_secs(20)),
    )?;
    let mut manager = ServiceManager::Systemd;
    let mut have = BTreeSet::new();
    let (mut skew, mut swap_on) = (0, false);
    let (mut listening, mut addresses) = (BTreeSet::new(), BTreeSet::new());
    for line in probe.stdout_lossy().lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "manager" if v == "none" => match supervisor {
                Some(bin) => {
                    manager = ServiceManager::Supervisor {
                        binary: bin.to_string(),
                    }
                }
                None => {
                    return Err(TransportError::Invalid {
                        host: t.host().to_string(),
                        op: "detect the service manager".into(),
                        reason: "the host does not run systemd".into(),
                    });
                }
            },
            "now" => skew = v.trim().parse::<i64>().map_or(0, |h| h - now_secs()),
            "have" => {
                have.insert(v.to_string());
            }
            "swap" => swap_on = true,
            "listen" => {
                if let Some(p) = v.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) {
                    listening.insert(p);
                }
            }
            "addr" => {
                if let Some(ip) = v.split('/').next().and_then(|a| a.parse().ok()) {
                    addresses.insert(ip);
                }
            }
            _ => {}
        }
    }
    let paths: Vec<String> = tree.files.iter().map(|f| f.path.clone()).collect();
    let stats = t.stat_files(&paths)?;
    let mut facts = HostFacts::default();
    for p in paths {
        let o = stats.get(&p).map(|f| ObservedFile {
            sha256: f.sha256.clone(),
            mode: f.mode,
            owner: f.owner.clone(),
        });
        facts.files.insert(p, o);
    }
    for (unit, active) in manager.status(t, &tree.services)? {
        facts.services.insert(unit, active);
    }
    let missing = tree
        .services
        .iter()
        .filter_map(|u| required_binary(u))
        .filter(|b| !have.contains(*b))
        .map(str::to_string)
        .collect();
    Ok(Observed {
        node: t.host().to_string(),
        manager,
        facts,
        missing,
        clock_skew_secs: skew,
        swap_on,
        listening,
        addresses,
        took: started.elapsed(),
    })
}

/// Facts keyed by node, the form the planner takes.
pub fn facts_map(observed: &[Observed]) -> BTreeMap<String, HostFacts> {
    observed
        .iter()
        .map(|o| (o.node.clone(), o.facts.clone()))
        .collect()
}
