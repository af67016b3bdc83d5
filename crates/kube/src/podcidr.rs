//! Where a cluster keeps its pod CIDR, and the live correction of a wrong one (guide 000,
//! "fixing --pod-network-cidr"): kubeadm-config's `networking.podSubnet`, kube-proxy's
//! `clusterCIDR` (then a rollout restart), the controller manager's `--cluster-cidr` (static
//! pods, changed over SSH elsewhere), each Node's `spec.podCIDR`, and the CNI's own pool.
//!
//! Node pod CIDRs can only be set once (the API server rejects changing a non-empty
//! `spec.podCIDR`), so the guide's `kubectl patch node` works only for nodes without one; for
//! the others [`Edge::set_node_pod_cidr`] says to drain, delete the Node and restart its
//! kubelet, so that the node registers again and the controller manager allocates from the new
//! range.

use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::{Edge, Error, Result};

/// How one source's value compares with the expected pod CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// Equal to it (a node's range: inside it).
    Agrees,
    Disagrees,
    /// The source does not exist or holds no value.
    NotFound,
    /// A value is there but is not a CIDR.
    Unreadable,
}

/// One place the pod CIDR is kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CidrFinding {
    /// Object and field, e.g. `ConfigMap kube-system/kube-proxy config.conf clusterCIDR`.
    pub source: String,
    /// The value found, as written.
    pub value: Option<String>,
    pub verdict: Verdict,
}

/// Every source's idea of the pod CIDR.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PodCidrReport {
    pub expected: Ipv4Net,
    pub findings: Vec<CidrFinding>,
}

impl PodCidrReport {
    /// The findings that disagree or cannot be read.
    pub fn problems(&self) -> impl Iterator<Item = &CidrFinding> {
        self.findings
            .iter()
            .filter(|f| matches!(f.verdict, Verdict::Disagrees | Verdict::Unreadable))
    }

    /// No source disagrees with the expected CIDR.
    pub fn consistent(&self) -> bool {
        self.problems().next().is_none()
    }
}

impl std::fmt::Display for PodCidrReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "expected pod CIDR {}", self.expected)?;
        for x in &self.findings {
            let verdict = match x.verdict {
                Verdict::Agrees => "ok",
                Verdict::Disagrees => "DIFFERS",
                Verdict::NotFound => "not found",
                Verdict::Unreadable => "UNREADABLE",
            };
            writeln!(
                f,
                "  {verdict:<10} {}: {}",
                x.source,
                x.value.as_deref().unwrap_or("-")
            )?;
        }
        Ok(())
    }
}

/// What [`Edge::set_node_pod_cidr`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCidrOutcome {
    /// The node had no pod CIDR; it now has the one given.
    Set,
    /// The node already had exactly that one.
    Unchanged,
}

/// Compares a comma-separated CIDR list (dual-stack values) with the expected IPv4 CIDR.
fn judge(value: &str, expected: Ipv4Net, contained: bool) -> Verdict {
    let mut v4 = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<IpNet>() {
            Ok(IpNet::V4(n)) => v4.push(n),
            Ok(IpNet::V6(_)) => {}
            Err(_) => return Verdict::Unreadable,
        }
    }
    if v4.is_empty() {
        return Verdict::Disagrees;
    }
    let ok = |n: &Ipv4Net| {
        if contained {
            expected.contains(n)
        } else {
            *n == expected
        }
    };
    if v4.iter().all(ok) {
        Verdict::Agrees
    } else {
        Verdict::Disagrees
    }
}

fn finding(
    source: String,
    value: Option<String>,
    expected: Ipv4Net,
    contained: bool,
) -> CidrFinding {
    let verdict = match &value {
        None => Verdict::NotFound,
        Some(v) => judge(v, expected, contained),
    };
    CidrFinding {
        source,
        value,
        verdict,
    }
}

/// Replaces the IPv4 entry of a (possibly dual-stack) CIDR list, keeping the others.
fn replace_v4(list: Option<&str>, new: Ipv4Net) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut placed = false;
    for part in list.unwrap_or_default().split(',').map(str::trim) {
        match part.parse::<IpNet>() {
            Ok(IpNet::V6(_)) => out.push(part.to_string()),
            _ if !placed && !part.is_empty() => {
                out.push(new.to_string());
                placed = true;
            }
            _ => {}
        }
    }
    if !placed {
        out.insert(0, new.to_string());
    }
    out.join(",")
}

fn parse_yaml(what: &str, text: &str) -> Result<Value> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| Error::Invalid {
        what: what.to_string(),
        message: format!("not YAML: {e}"),
    })
}

fn string_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Edge {
    async fn configmap(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        self.get_opt(&format!("read ConfigMap {ns}/{name}"), api.get(name))
            .await
    }

    /// Reads every place that holds the pod CIDR and compares it with `expected`. Sources that
    /// do not exist are reported as not found, not as errors.
    pub fn pod_cidr_report(&self, expected: Ipv4Net) -> Result<PodCidrReport> {
        self.block(async {
            let mut findings = Vec::new();

            let source =
                "ConfigMap kube-system/kubeadm-config ClusterConfiguration networking.podSubnet";
            let value = match self.configmap("kube-system", "kubeadm-config").await? {
                Some(cm) => match cm.data.as_ref().and_then(|d| d.get("ClusterConfiguration")) {
                    Some(text) => string_at(&parse_yaml(source, text)?, "/networking/podSubnet"),
                    None => None,
                },
                None => None,
            };
            findings.push(finding(source.into(), value, expected, false));

            let source = "ConfigMap kube-system/kube-proxy config.conf clusterCIDR";
            let value = match self.configmap("kube-system", "kube-proxy").await? {
                Some(cm) => match cm.data.as_ref().and_then(|d| d.get("config.conf")) {
                    Some(text) => string_at(&parse_yaml(source, text)?, "/clusterCIDR"),
                    None => None,
                },
                None => None,
            };
            findings.push(finding(source.into(), value, expected, false));

            let pods: Api<Pod> = Api::namespaced(self.client.clone(), "kube-system");
            let kcm = self
                .call(
                    "list kube-controller-manager pods",
                    pods.list(&ListParams::default().labels("component=kube-controller-manager")),
                )
                .await?;
            if kcm.items.is_empty() {
                findings.push(finding(
                    "Pod kube-system/kube-controller-manager-* --cluster-cidr".into(),
                    None,
                    expected,
                    false,
                ));
            }
            for pod in &kcm.items {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let flag = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .flat_map(|c| c.command.iter().flatten().chain(c.args.iter().flatten()))
                    .find_map(|a| a.strip_prefix("--cluster-cidr=").map(str::to_string));
                findings.push(finding(
                    format!("Pod kube-system/{name} --cluster-cidr"),
                    flag,
                    expected,
                    false,
                ));
            }

            let nodes: Api<Node> = Api::all(self.client.clone());
            let list = self
                .call("list nodes", nodes.list(&ListParams::default()))
                .await?;
            for node in &list.items {
                let name = node.metadata.name.clone().unwrap_or_default();
                let spec = node.spec.as_ref();
                let cidrs = spec
                    .and_then(|s| s.pod_cidrs.clone())
                    .filter(|v| !v.is_empty())
                    .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
                    .map(|v| v.join(","));
                findings.push(finding(
                    format!("Node {name} spec.podCIDRs"),
                    cidrs,
                    expected,
                    true,
                ));
            }

            let installation = ApiResource {
                group: "operator.tigera.io".into(),
                version: "v1".into(),
                api_version: "operator.tigera.io/v1".into(),
                kind: "Installation".into(),
                plural: "installations".into(),
            };
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &installation);
            let source = "Installation default spec.calicoNetwork.ipPools";
            match self
                .get_opt("read Calico Installation default", api.get("default"))
                .await?
            {
                Some(inst) => {
                    let pools = inst
                        .data
                        .pointer("/spec/calicoNetwork/ipPools")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let v4: Vec<(usize, String)> = pools
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| string_at(p, "/cidr").map(|c| (i, c)))
                        .filter(|(_, c)| !matches!(c.parse::<IpNet>(), Ok(IpNet::V6(_))))
                        .collect();
                    if v4.is_empty() {
                        findings.push(finding(source.into(), None, expected, false));
                    }
                    for (i, cidr) in v4 {
                        findings.push(finding(
                            format!("{source}[{i}].cidr"),
                            Some(cidr),
                            expected,
                            false,
                        ));
                    }
                }
                None => findings.push(finding(source.into(), None, expected, false)),
            }

            let source = "ConfigMap kube-flannel/kube-flannel-cfg net-conf.json Network";
            let value = match self.configmap("kube-flannel", "kube-flannel-cfg").await? {
                Some(cm) => match cm.data.as_ref().and_then(|d| d.get("net-conf.json")) {
                    Some(text) => {
                        let v: Value = serde_json::from_str(text).map_err(|e| Error::Invalid {
                            what: source.into(),
                            message: format!("not JSON: {e}"),
                        })?;
                        string_at(&v, "/Network")
                    }
                    None => None,
                },
                None => None,
            };
            findings.push(finding(source.into(), value, expected, false));

            Ok(PodCidrReport { expected, findings })
        })
    }

    /// Rewrites one YAML document held in a ConfigMap key, with the live resourceVersion
    /// (retried on conflict). `edit` returns whether it changed anything.
    async fn edit_configmap_yaml(
        &self,
        ns: &str,
        name: &str,
        key: &str,
        edit: impl Fn(&mut Value) -> bool,
    ) -> Result<bool> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let what = format!("update ConfigMap {ns}/{name} key {key}");
        let attempts = self.opts.conflict_attempts.max(1);
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt - 1)).await;
            }
            let cm = self
                .call(&format!("read ConfigMap {ns}/{name}"), api.get(name))
                .await?;
            let text = cm
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .ok_or_else(|| Error::Invalid {
                    what: what.clone(),
                    message: format!(
                        "it has no key {key}; was the cluster set up by kubeadm/kubeha?"
                    ),
                })?;
            let mut doc = parse_yaml(&what, text)?;
            if !edit(&mut doc) {
                return Ok(false);
            }
            let patch = json!({
                "metadata": {"resourceVersion": cm.metadata.resource_version},
                "data": {key: kubeha_render::staticpod::emit_yaml(&doc)},
            });
            match self
                .call(
                    &what,
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
                )
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict { what, attempts })
    }

    /// Sets `networking.podSubnet` in kubeadm-config's ClusterConfiguration (the IPv4 entry of
    /// a dual-stack value), so later joins and upgrades use it. Returns whether it changed.
    pub fn set_kubeadm_pod_subnet(&self, cidr: Ipv4Net) -> Result<bool> {
        self.block(self.edit_configmap_yaml(
            "kube-system",
            "kubeadm-config",
            "ClusterConfiguration",
            |doc| set_cidr_field(doc, "networking", "podSubnet", cidr),
        ))
    }

    /// Sets kube-proxy's `clusterCIDR` and, when it changed, restarts the kube-proxy
    /// DaemonSet so the pods read it. Returns whether it changed.
    pub fn set_kube_proxy_cluster_cidr(&self, cidr: Ipv4Net) -> Result<bool> {
        let changed = self.block(self.edit_configmap_yaml(
            "kube-system",
            "kube-proxy",
            "config.conf",
            |doc| set_cidr_field(doc, "", "clusterCIDR", cidr),
        ))?;
        if changed {
            self.restart_daemonset("kube-system", "kube-proxy")?;
        }
        Ok(changed)
    }

    /// `kubectl rollout restart daemonset`: stamps the pod template so every pod is replaced.
    pub fn restart_daemonset(&self, namespace: &str, name: &str) -> Result<()> {
        self.block(async {
            let api: Api<k8s_openapi::api::apps::v1::DaemonSet> =
                Api::namespaced(self.client.clone(), namespace);
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": crate::now_rfc3339()
            }}}}});
            self.call(
                &format!("restart DaemonSet {namespace}/{name}"),
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await
            .map(|_| ())
        })
    }

    /// Gives a node without a pod CIDR the one given (the guide's `kubectl patch node`). A
    /// node that has another one cannot be changed: [`Error::PodCidrImmutable`] says what to do.
    pub fn set_node_pod_cidr(&self, node: &str, cidr: Ipv4Net) -> Result<NodeCidrOutcome> {
        self.block(async {
            let api: Api<Node> = Api::all(self.client.clone());
            let live = self
                .call(&format!("read node {node}"), api.get(node))
                .await?;
            let current = live.spec.as_ref().and_then(|s| s.pod_cidr.clone());
            match current.as_deref() {
                Some(c) if c == cidr.to_string() => return Ok(NodeCidrOutcome::Unchanged),
                Some(c) if !c.is_empty() => {
                    return Err(Error::PodCidrImmutable {
                        node: node.to_string(),
                        current: c.to_string(),
                        wanted: cidr.to_string(),
                    });
                }
                _ => {}
            }
            let patch = json!({
                "metadata": {"resourceVersion": live.metadata.resource_version},
                "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]},
            });
            self.call(
                &format!("set pod CIDR of node {node}"),
                api.patch(node, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await
            .map(|_| NodeCidrOutcome::Set)
        })
    }
}

/// Sets `section.field` (or top-level `field` when `section` is empty) to the list with its
/// IPv4 entry replaced; returns whether it changed.
fn set_cidr_field(doc: &mut Value, section: &str, field: &str, cidr: Ipv4Net) -> bool {
    let Some(root) = doc.as_object_mut() else {
        return false;
    };
    let target = if section.is_empty() {
        root
    } else {
        let s = root
            .entry(section)
            .or_insert_with(|| Value::Object(Default::default()));
        if !s.is_object() {
            *s = Value::Object(Default::default());
        }
        match s.as_object_mut() {
            Some(m) => m,
            None => return false,
        }
    };
    let old = target
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string);
    let new = replace_v4(old.as_deref(), cidr);
    if old.as_deref() == Some(new.as_str()) {
        return false;
    }
    target.insert(field.to_string(), Value::String(new));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    #[test]
    fn judging_values() {
        let e = net("10.244.0.0/16");
        assert_eq!(judge("10.244.0.0/16", e, false), Verdict::Agrees);
        assert_eq!(judge("10.244.0.0/16,fd00::/56", e, false), Verdict::Agrees);
        assert_eq!(judge("192.168.0.0/16", e, false), Verdict::Disagrees);
        assert_eq!(judge("10.244.3.0/24", e, true), Verdict::Agrees);
        assert_eq!(judge("10.245.3.0/24", e, true), Verdict::Disagrees);
        assert_eq!(judge("banana", e, false), Verdict::Unreadable);
    }

    #[test]
    fn replacing_the_v4_entry_keeps_v6() {
        let n = net("10.244.0.0/16");
        assert_eq!(
            replace_v4(Some("192.168.0.0/16,fd00::/56"), n),
            "10.244.0.0/16,fd00::/56"
        );
        assert_eq!(replace_v4(Some("fd00::/56"), n), "10.244.0.0/16,fd00::/56");
        assert_eq!(replace_v4(None, n), "10.244.0.0/16");
        let mut doc = json!({"networking": {"serviceSubnet": "10.96.0.0/12"}});
        assert!(set_cidr_field(&mut doc, "networking", "podSubnet", n));
        assert_eq!(doc["networking"]["podSubnet"], "10.244.0.0/16");
        assert!(!set_cidr_field(&mut doc, "networking", "podSubnet", n));
    }
}
