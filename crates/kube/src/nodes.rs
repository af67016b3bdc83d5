//! Node marking, readiness, cordon/drain and removal.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::time::Instant;

use crate::{Edge, Error, Result};

/// Labels and taints a node must carry (kubeadm's mark-control-plane phase); rendered purely
/// by `kubeha_render::bootstrap::markings`.
pub use kubeha_render::bootstrap::NodeMarking;

/// Readiness of the nodes waited for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodesReady {
    pub ready: Vec<String>,
    /// Registered, but their Ready condition is not True.
    pub not_ready: Vec<String>,
    /// No Node object with that name.
    pub missing: Vec<String>,
}

impl NodesReady {
    pub fn all_ready(&self) -> bool {
        self.not_ready.is_empty() && self.missing.is_empty()
    }
}

impl std::fmt::Display for NodesReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "NotReady: {}; missing: {}; Ready: {}",
            list(&self.not_ready),
            list(&self.missing),
            list(&self.ready)
        )
    }
}

/// How to drain a node (kubectl drain's flags of the same names).
#[derive(Debug, Clone)]
pub struct DrainOptions {
    /// Skip DaemonSet-managed pods instead of refusing the drain.
    pub ignore_daemonsets: bool,
    /// Evict pods with emptyDir volumes (their data is lost) instead of refusing.
    pub delete_emptydir_data: bool,
    /// Evict pods no controller manages (they are not recreated) instead of refusing.
    pub force: bool,
    /// Bound of the whole drain: evictions refused by a PodDisruptionBudget are retried until
    /// then, and the evicted pods must be gone by then.
    pub timeout: Duration,
    /// Grace period given to evicted pods; `None` uses each pod's own.
    pub grace_period: Option<Duration>,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            ignore_daemonsets: true,
            delete_emptydir_data: true,
            force: false,
            timeout: Duration::from_secs(300),
            grace_period: None,
        }
    }
}

/// What a drain did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DrainReport {
    /// `namespace/name` of the pods evicted.
    pub evicted: Vec<String>,
    /// `namespace/name` and why each was left alone (mirror pod, DaemonSet, finished).
    pub skipped: Vec<(String, String)>,
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_id(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Pulls the PDB name out of an eviction refusal: the API server names it in a
/// `DisruptionBudget` cause ("The disruption budget NAME needs …").
fn pdb_from_status(s: &kube::core::Status) -> String {
    let causes = s
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    for c in causes {
        if let Some(rest) = c.message.strip_prefix("The disruption budget ")
            && let Some(name) = rest.split_whitespace().next()
        {
            return name.to_string();
        }
    }
    if s.message.is_empty() {
        "(unnamed)".to_string()
    } else {
        format!("(unnamed: {})", s.message)
    }
}

impl Edge {
    /// Merges labels and adds the missing taints, keeping every existing taint (a taint is
    /// present when key and effect match, as kubeadm checks). Returns whether anything changed.
    pub fn mark_node(&self, m: &NodeMarking) -> Result<bool> {
        self.block(async {
            let api: Api<Node> = Api::all(self.client.clone());
            let what = format!("mark node {}", m.node);
            let attempts = self.opts.conflict_attempts.max(1);
            for attempt in 0..attempts {
                if attempt > 0 {
                    tokio::time::sleep(self.backoff(attempt - 1)).await;
                }
                let node = self
                    .call(&format!("read node {}", m.node), api.get(&m.node))
                    .await?;
                let live_labels = node.metadata.labels.clone().unwrap_or_default();
                let labels: BTreeMap<&String, &String> = m
                    .labels
                    .iter()
                    .filter(|(k, v)| live_labels.get(*k) != Some(*v))
                    .collect();
                let mut taints = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.clone())
                    .unwrap_or_default();
                let before = taints.len();
                for t in &m.taints {
                    if !taints
                        .iter()
                        .any(|x| x.key == t.key && x.effect == t.effect)
                    {
                        taints.push(t.clone());
                    }
                }
                if labels.is_empty() && taints.len() == before {
                    return Ok(false);
                }
                let mut patch = json!({"metadata": {
                    "resourceVersion": node.metadata.resource_version.clone().unwrap_or_default()
                }});
                if !labels.is_empty() {
                    patch["metadata"]["labels"] = json!(labels);
                }
                if taints.len() != before {
                    patch["spec"] = json!({ "taints": taints });
                }
                match self
                    .call(
                        &what,
                        api.patch(&m.node, &PatchParams::default(), &Patch::Merge(&patch)),
                    )
                    .await
                {
                    Ok(_) => return Ok(true),
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(Error::Conflict { what, attempts })
        })
    }

    /// Polls until every named node is Ready, or fails at `timeout` with which ones are
    /// NotReady or missing. Errors while polling (an API server restarting) are retried until
    /// the deadline.
    pub fn wait_nodes_ready(&self, names: &[String], timeout: Duration) -> Result<NodesReady> {
        self.block(async {
            let api: Api<Node> = Api::all(self.client.clone());
            let deadline = Instant::now() + timeout;
            let mut attempt = 0;
            loop {
                match self
                    .call("list nodes", api.list(&ListParams::default()))
                    .await
                {
                    Ok(list) => {
                        let mut report = NodesReady::default();
                        for name in names {
                            match list
                                .items
                                .iter()
                                .find(|n| n.metadata.name.as_ref() == Some(name))
                            {
                                Some(n) if is_ready(n) => report.ready.push(name.clone()),
                                Some(_) => report.not_ready.push(name.clone()),
                                None => report.missing.push(name.clone()),
                            }
                        }
                        if report.all_ready() {
                            return Ok(report);
                        }
                        if Instant::now() >= deadline {
                            return Err(Error::NodesNotReady { report, timeout });
                        }
                    }
                    Err(e) => {
                        if Instant::now() >= deadline {
                            return Err(Error::WaitTimeout {
                                what: "wait for nodes Ready".into(),
                                timeout,
                                detail: format!("last error: {e}"),
                            });
                        }
                    }
                }
                self.sleep_until_next(attempt, deadline).await;
                attempt += 1;
            }
        })
    }

    /// Sleeps the backoff for `attempt`, but not past the deadline.
    pub(crate) async fn sleep_until_next(&self, attempt: u32, deadline: Instant) {
        let pause = self.backoff(attempt);
        let wake = (Instant::now() + pause).min(deadline);
        tokio::time::sleep_until(wake).await;
    }

    /// Marks the node unschedulable.
    pub fn cordon(&self, node: &str) -> Result<()> {
        self.block(self.cordon_async(node))
    }

    async fn cordon_async(&self, node: &str) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"spec": {"unschedulable": true}});
        self.call(
            &format!("cordon node {node}"),
            api.patch(node, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .map(|_| ())
    }

    /// Cordons the node, then evicts its pods through the Eviction API as `kubectl drain`
    /// does, and waits until they are gone. Refuses (before evicting anything) when a pod
    /// needs a flag it was not given.
    pub fn drain(&self, node: &str, opts: &DrainOptions) -> Result<DrainReport> {
        self.block(async {
            let deadline = Instant::now() + opts.timeout;
            self.cordon_async(node).await?;
            let pods: Api<Pod> = Api::all(self.client.clone());
            let list = self
                .call(
                    &format!("list pods on node {node}"),
                    pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))),
                )
                .await?;
            let mut report = DrainReport::default();
            let mut refusals = Vec::new();
            let mut to_evict = Vec::new();
            for pod in list.items {
                let id = pod_id(&pod);
                let annotations = pod.metadata.annotations.clone().unwrap_or_default();
                if annotations.contains_key("kubernetes.io/config.mirror") {
                    report.skipped.push((id, "mirror (static) pod".into()));
                    continue;
                }
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                let finished = matches!(phase, Some("Succeeded") | Some("Failed"));
                let owner = pod
                    .metadata
                    .owner_references
                    .as_ref()
                    .and_then(|o| o.iter().find(|r| r.controller == Some(true)));
                if owner.is_some_and(|o| o.kind == "DaemonSet") {
                    if opts.ignore_daemonsets {
                        report.skipped.push((id, "managed by a DaemonSet".into()));
                    } else {
                        refusals.push(format!(
                            "pod {id} is managed by a DaemonSet (drain with ignore_daemonsets)"
                        ));
                    }
                    continue;
                }
                if owner.is_none() && !finished && !opts.force {
                    refusals.push(format!(
                        "pod {id} is not managed by a controller and would not come back (drain with force)"
                    ));
                    continue;
                }
                let empty_dir = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.volumes.as_ref())
                    .is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some()));
                if empty_dir && !finished && !opts.delete_emptydir_data {
                    refusals.push(format!(
                        "pod {id} uses emptyDir storage that eviction deletes (drain with delete_emptydir_data)"
                    ));
                    continue;
                }
                to_evict.push(pod);
            }
            if !refusals.is_empty() {
                return Err(Error::DrainRefused {
                    node: node.to_string(),
                    reasons: refusals,
                });
            }
            self.evict_all(node, &to_evict, opts, deadline).await?;
            report.evicted = to_evict.iter().map(pod_id).collect();
            self.wait_pods_gone(node, &to_evict, opts.timeout, deadline)
                .await?;
            Ok(report)
        })
    }

    /// Evicts every pod, retrying the ones a PodDisruptionBudget protects until the deadline.
    async fn evict_all(
        &self,
        node: &str,
        pods: &[Pod],
        opts: &DrainOptions,
        deadline: Instant,
    ) -> Result<()> {
        let mut pending: Vec<&Pod> = pods.iter().collect();
        let mut attempt = 0;
        loop {
            let mut blocked = Vec::new();
            for pod in pending {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                let mut body = json!({
                    "apiVersion": "policy/v1",
                    "kind": "Eviction",
                    "metadata": {"name": name, "namespace": ns},
                });
                if let Some(g) = opts.grace_period {
                    body["deleteOptions"] = json!({"gracePeriodSeconds": g.as_secs()});
                }
                let what = format!("evict pod {ns}/{name} from node {node}");
                let answer = self
                    .call_raw(
                        &what,
                        api.create_subresource::<_, kube::core::Status>(
                            "eviction",
                            &name,
                            &PostParams::default(),
                            &body,
                        ),
                    )
                    .await?;
                match answer {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(kube::Error::Api(s)) if s.code == 429 => {
                        blocked.push((pod, pdb_from_status(&s)));
                    }
                    Err(e) => return Err(Error::from_kube(&what, e)),
                }
            }
            let Some((first, pdb)) = blocked.first() else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(Error::EvictionBlocked {
                    node: node.to_string(),
                    pod: pod_id(first),
                    pdb: pdb.clone(),
                    timeout: opts.timeout,
                });
            }
            pending = blocked.into_iter().map(|(p, _)| p).collect();
            self.sleep_until_next(attempt, deadline).await;
            attempt += 1;
        }
    }

    /// Waits until each evicted pod is gone (404, or replaced by a pod with another uid).
    async fn wait_pods_gone(
        &self,
        node: &str,
        pods: &[Pod],
        timeout: Duration,
        deadline: Instant,
    ) -> Result<()> {
        let mut remaining: Vec<&Pod> = pods.iter().collect();
        let mut attempt = 0;
        loop {
            let mut still = Vec::new();
            for pod in remaining {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                let live = self
                    .get_opt(&format!("read pod {ns}/{name}"), api.get(&name))
                    .await?;
                if live.is_some_and(|l| l.metadata.uid == pod.metadata.uid) {
                    still.push(pod);
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::WaitTimeout {
                    what: format!("drain {node}"),
                    timeout,
                    detail: format!(
                        "evicted pods still present: {}",
                        still
                            .iter()
                            .map(|p| pod_id(p))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            remaining = still;
            self.sleep_until_next(attempt, deadline).await;
            attempt += 1;
        }
    }

    /// Deletes the Node object; one that is already gone is fine.
    pub fn delete_node(&self, node: &str) -> Result<()> {
        self.block(async {
            let api: Api<Node> = Api::all(self.client.clone());
            match self
                .call(
                    &format!("delete node {node}"),
                    api.delete(node, &DeleteParams::default()),
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdb_name_comes_from_the_cause() {
        let s: kube::core::Status = serde_json::from_value(json!({
            "code": 429, "reason": "TooManyRequests",
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "details": {"causes": [{"reason": "DisruptionBudget",
                "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}]}
        }))
        .expect("status");
        assert_eq!(pdb_from_status(&s), "web-pdb");
    }
}
