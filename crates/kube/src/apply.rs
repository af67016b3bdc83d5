//! Idempotent create-or-update of rendered objects (kubeadm's `CreateOrUpdate*`, made
//! idempotent with a hash annotation).
//!
//! Ownership choice: kubeha owns every object it renders, so an update replaces the object's
//! content (spec, data, rules…) with the rendered one. Kept from the live object: labels and
//! annotations kubeha does not set (others' metadata, e.g. `deployment.kubernetes.io/revision`),
//! `ownerReferences` and `finalizers` when kubeha sets none, and for ConfigMaps the
//! `jws-kubeconfig-*` data keys the bootstrap signer adds to `cluster-info` (dropping them would
//! break joins until the signer re-signs).

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kubeha_render::Manifest;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Edge, Error, Result};

/// Annotation holding the sha256 of the rendered object last applied.
pub const APPLIED_HASH_ANNOTATION: &str = "kubeha.io/applied-hash";

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    /// The live object carries the same applied hash: nothing was written.
    Unchanged,
}

/// One applied object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `Kind/namespace/name` ([`Manifest::id`]).
    pub id: String,
    pub outcome: Outcome,
}

/// sha256 (hex) of an object in a canonical form (keys sorted, no whitespace), ignoring any
/// applied-hash annotation it already carries.
pub fn desired_hash(object: &Value) -> String {
    let mut object = object.clone();
    if let Some(ann) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        ann.remove(APPLIED_HASH_ANNOTATION);
        if ann.is_empty()
            && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
    let mut text = String::new();
    canonical(&object, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The rendered object with its applied-hash annotation.
fn with_hash(object: &Value, hash: &str) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        let meta = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            let ann = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(ann) = ann.as_object_mut() {
                ann.insert(APPLIED_HASH_ANNOTATION.into(), Value::String(hash.into()));
            }
        }
    }
    object
}

/// The body of a PUT: the rendered object plus what is kept from the live one (see the module
/// documentation) and the live resourceVersion.
pub(crate) fn update_body(desired: &Value, live: &Value) -> Value {
    let mut body = desired.clone();
    let Some(map) = body.as_object_mut() else {
        return body;
    };
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(meta) = meta.as_object_mut() {
        for key in ["labels", "annotations"] {
            if let Some(Value::Object(live_map)) = live.pointer(&format!("/metadata/{key}")) {
                let entry = meta
                    .entry(key)
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(mine) = entry.as_object_mut() {
                    for (k, v) in live_map {
                        if !mine.contains_key(k) {
                            mine.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        for key in ["ownerReferences", "finalizers"] {
            if !meta.contains_key(key)
                && let Some(v) = live.pointer(&format!("/metadata/{key}"))
            {
                meta.insert(key.into(), v.clone());
            }
        }
        if let Some(rv) = live.pointer("/metadata/resourceVersion") {
            meta.insert("resourceVersion".into(), rv.clone());
        }
    }
    if desired.get("kind").and_then(Value::as_str) == Some("ConfigMap")
        && let Some(Value::Object(live_data)) = live.get("data")
    {
        let data = map
            .entry("data")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(data) = data.as_object_mut() {
            for (k, v) in live_data {
                if k.starts_with("jws-kubeconfig-") && !data.contains_key(k) {
                    data.insert(k.clone(), v.clone());
                }
            }
        }
    }
    body
}

pub(crate) fn api_resource(m: &Manifest) -> ApiResource {
    ApiResource {
        group: m.group().to_string(),
        version: m.version().to_string(),
        api_version: m.api_version.clone(),
        kind: m.kind.clone(),
        plural: m.plural.clone(),
    }
}

impl Edge {
    /// Creates or updates each object in order, stopping at the first failure.
    ///
    /// GET; absent → POST (an AlreadyExists race is retried as an update); present → PUT with
    /// the live resourceVersion only when its applied hash differs. A 409 on the PUT re-reads
    /// and retries, at most [`crate::EdgeOptions::conflict_attempts`] times.
    pub fn apply(&self, manifests: &[Manifest]) -> Result<Vec<Applied>> {
        self.block(async {
            let mut out = Vec::with_capacity(manifests.len());
            for m in manifests {
                let outcome = self.apply_one(m).await?;
                out.push(Applied {
                    id: m.id(),
                    outcome,
                });
            }
            Ok(out)
        })
    }

    async fn apply_one(&self, m: &Manifest) -> Result<Outcome> {
        let ar = api_resource(m);
        let api: Api<DynamicObject> = match &m.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let id = m.id();
        let hash = desired_hash(&m.object);
        let desired = with_hash(&m.object, &hash);
        let attempts = self.opts.conflict_attempts.max(1);
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt - 1)).await;
            }
            let live = self
                .get_opt(&format!("read {id}"), api.get(&m.name))
                .await?;
            match live {
                None => {
                    let obj = to_dynamic(&id, &desired)?;
                    match self
                        .call(
                            &format!("create {id}"),
                            api.create(&PostParams::default(), &obj),
                        )
                        .await
                    {
                        Ok(_) => return Ok(Outcome::Created),
                        // Created by someone else meanwhile: read it and update.
                        Err(e) if e.is_conflict() => continue,
                        Err(e) => return Err(e),
                    }
                }
                // Owned by someone else once it exists (a CRD the operator rewrites).
                Some(_) if m.create_only => return Ok(Outcome::Unchanged),
                Some(live) => {
                    let current = live
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(APPLIED_HASH_ANNOTATION));
                    if current == Some(&hash) {
                        return Ok(Outcome::Unchanged);
                    }
                    let live_json = serde_json::to_value(&live).map_err(|e| Error::Invalid {
                        what: id.clone(),
                        message: format!("live object does not serialize: {e}"),
                    })?;
                    let obj = to_dynamic(&id, &update_body(&desired, &live_json))?;
                    match self
                        .call(
                            &format!("update {id}"),
                            api.replace(&m.name, &PostParams::default(), &obj),
                        )
                        .await
                    {
                        Ok(_) => return Ok(Outcome::Updated),
                        Err(e) if e.is_conflict() => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(Error::Conflict {
            what: format!("apply {id}"),
            attempts,
        })
    }
}

fn to_dynamic(id: &str, v: &Value) -> Result<DynamicObject> {
    serde_json::from_value(v.clone()).map_err(|e| Error::Invalid {
        what: id.to_string(),
        message: format!("rendered object is not a Kubernetes object: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_ignores_key_order_and_its_own_annotation() {
        let a =
            json!({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1", "b": "2"}});
        let b =
            json!({"data": {"b": "2", "a": "1"}, "metadata": {"name": "x"}, "kind": "ConfigMap"});
        assert_eq!(desired_hash(&a), desired_hash(&b));
        let annotated = with_hash(&a, &desired_hash(&a));
        assert_eq!(desired_hash(&annotated), desired_hash(&a));
        let c =
            json!({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1", "b": "3"}});
        assert_ne!(desired_hash(&a), desired_hash(&c));
    }

    #[test]
    fn update_keeps_others_metadata_and_signer_keys() {
        let desired = json!({"kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "labels": {"mine": "new"}},
            "data": {"kubeconfig": "new"}});
        let live = json!({"kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "resourceVersion": "42",
                "labels": {"mine": "old", "theirs": "x"}, "annotations": {"a": "b"}},
            "data": {"kubeconfig": "old", "jws-kubeconfig-abcdef": "sig", "stale": "y"}});
        let body = update_body(&desired, &live);
        assert_eq!(body["metadata"]["resourceVersion"], "42");
        assert_eq!(
            body["metadata"]["labels"],
            json!({"mine": "new", "theirs": "x"})
        );
        assert_eq!(body["metadata"]["annotations"], json!({"a": "b"}));
        assert_eq!(
            body["data"],
            json!({"kubeconfig": "new", "jws-kubeconfig-abcdef": "sig"}),
            "content is kubeha's; only the signer's keys survive"
        );
    }
}
