//! Bounded waits for add-ons: Deployments available, CRDs established.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use tokio::time::Instant;

use crate::{Edge, Error, Result};

/// `None` when the rollout is complete, else what is still missing (kubectl rollout status's
/// rules).
fn deployment_pending(d: &Deployment) -> Option<String> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = d.status.as_ref() else {
        return Some("no status yet".into());
    };
    let generation = d.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Some("the controller has not seen the latest spec".into());
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        return Some(format!("{updated} of {want} replicas updated"));
    }
    if total > updated {
        return Some(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < updated {
        return Some(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    None
}

fn crd_established(c: &CustomResourceDefinition) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

impl Edge {
    /// Polls until the Deployment's rollout is complete and all its replicas are available.
    pub fn wait_deployment_available(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<()> {
        self.block(async {
            let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
            let what = format!("wait for Deployment {namespace}/{name} to be available");
            let deadline = Instant::now() + timeout;
            let mut attempt = 0;
            loop {
                let detail = match self.get_opt(&what, api.get(name)).await {
                    Ok(Some(d)) => match deployment_pending(&d) {
                        None => return Ok(()),
                        Some(why) => why,
                    },
                    Ok(None) => "it does not exist".to_string(),
                    Err(e) => format!("last error: {e}"),
                };
                if Instant::now() >= deadline {
                    return Err(Error::WaitTimeout {
                        what,
                        timeout,
                        detail,
                    });
                }
                self.sleep_until_next(attempt, deadline).await;
                attempt += 1;
            }
        })
    }

    /// Polls until the CustomResourceDefinition is Established, so objects of its kind can be
    /// created (Calico's CRDs before the `Installation`).
    pub fn wait_crd_established(&self, name: &str, timeout: Duration) -> Result<()> {
        self.block(async {
            let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
            let what = format!("wait for CustomResourceDefinition {name} to be Established");
            let deadline = Instant::now() + timeout;
            let mut attempt = 0;
            loop {
                let detail = match self.get_opt(&what, api.get(name)).await {
                    Ok(Some(c)) if crd_established(&c) => return Ok(()),
                    Ok(Some(_)) => "not Established yet".to_string(),
                    Ok(None) => "it does not exist".to_string(),
                    Err(e) => format!("last error: {e}"),
                };
                if Instant::now() >= deadline {
                    return Err(Error::WaitTimeout {
                        what,
                        timeout,
                        detail,
                    });
                }
                self.sleep_until_next(attempt, deadline).await;
                attempt += 1;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rollout_rules() {
        let d = |status: serde_json::Value| -> Deployment {
            serde_json::from_value(json!({"metadata": {"name": "coredns", "generation": 2},
                "spec": {"replicas": 2, "selector": {}, "template": {}}, "status": status}))
            .expect("deployment")
        };
        assert!(deployment_pending(&d(json!({"observedGeneration": 1}))).is_some());
        let partly = d(
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "availableReplicas": 1}),
        );
        assert_eq!(
            deployment_pending(&partly).as_deref(),
            Some("1 of 2 updated replicas available")
        );
        let done = d(
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "availableReplicas": 2}),
        );
        assert_eq!(deployment_pending(&done), None);
    }
}
