//! The Kubernetes API edge.
//!
//! The rest of kubeha is synchronous: [`Edge`] owns a small current-thread tokio runtime and
//! exposes blocking calls. Every request has a deadline ([`EdgeOptions::request_timeout`]) and
//! every wait is bounded by the caller's timeout. Do not call it from inside another tokio
//! runtime.

mod apply;
pub mod bringup;
mod csr;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
mod nodes;
mod podcidr;
mod wait;

use std::future::Future;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

pub use apply::{APPLIED_HASH_ANNOTATION, Applied, Outcome, desired_hash};
pub use csr::{CsrReport, KUBELET_SERVING_SIGNER, check_serving_csr};
pub use error::{Error, Result};
pub use nodes::{DrainOptions, DrainReport, NodeMarking, NodesReady};
pub use podcidr::{CidrFinding, NodeCidrOutcome, PodCidrReport, Verdict};

/// Timeouts and retry bounds of the API edge.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// Deadline of one HTTP request, connection included.
    pub request_timeout: Duration,
    /// Deadline of the TCP/TLS connection alone.
    pub connect_timeout: Duration,
    /// How often a write that meets a 409 is re-read and retried before giving up.
    pub conflict_attempts: u32,
    /// First pause between polls and conflict retries; doubled up to `max_backoff`.
    pub backoff: Duration,
    /// Longest pause between polls.
    pub max_backoff: Duration,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        EdgeOptions {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            conflict_attempts: 5,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A connection to one cluster's API server.
pub struct Edge {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    opts: EdgeOptions,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// Connects with a kubeconfig's current context (kubeha's admin.conf or super-admin.conf).
    ///
    /// Proxy environment variables are ignored: kubeha reaches its API servers directly; a
    /// `proxy-url` written in the kubeconfig itself is kept.
    pub fn from_kubeconfig(yaml: &str, opts: EdgeOptions) -> Result<Edge> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(e.to_string()))?;
        let kubeconfig =
            Kubeconfig::from_yaml(yaml).map_err(|e| Error::Kubeconfig(e.to_string()))?;
        let client = rt.block_on(async {
            let current = kubeconfig.current_context.clone();
            let proxy_in_file = kubeconfig
                .contexts
                .iter()
                .find(|c| Some(&c.name) == current.as_ref())
                .and_then(|c| c.context.as_ref())
                .and_then(|c| kubeconfig.clusters.iter().find(|k| k.name == c.cluster))
                .and_then(|k| k.cluster.as_ref())
                .is_some_and(|k| k.proxy_url.is_some());
            let mut config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| Error::Kubeconfig(e.to_string()))?;
            if !proxy_in_file {
                config.proxy_url = None;
            }
            // kube's own retry of 429/503/504 would hide PDB refusals and stretch deadlines;
            // every retry here is bounded by kubeha itself.
            config.default_retry = false;
            config.connect_timeout = Some(opts.connect_timeout);
            config.read_timeout = Some(opts.request_timeout);
            config.write_timeout = Some(opts.request_timeout);
            kube::Client::try_from(config).map_err(|e| Error::Kubeconfig(e.to_string()))
        })?;
        Ok(Edge { rt, client, opts })
    }

    /// The options in force.
    pub fn options(&self) -> &EdgeOptions {
        &self.opts
    }

    /// Whether the API server reports itself live (`GET /livez` answers 200).
    ///
    /// A server that answers with another status is `Ok(false)`; one that cannot be reached
    /// is an error.
    pub fn livez(&self) -> Result<bool> {
        self.block(async {
            let req = http::Request::get("/livez")
                .body(Vec::new())
                .map_err(|e| Error::Runtime(e.to_string()))?;
            match self.call("GET /livez", self.client.request_text(req)).await {
                Ok(_) => Ok(true),
                Err(Error::Api { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    fn block<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// One request, bounded by the request timeout, its error naming `what`.
    async fn call<T>(&self, what: &str, fut: impl Future<Output = kube::Result<T>>) -> Result<T> {
        self.call_raw(what, fut)
            .await?
            .map_err(|e| Error::from_kube(what, e))
    }

    /// As `call`, but hands back kube's own error for callers that read its details.
    async fn call_raw<T>(
        &self,
        what: &str,
        fut: impl Future<Output = kube::Result<T>>,
    ) -> Result<kube::Result<T>> {
        tokio::time::timeout(self.opts.request_timeout, fut)
            .await
            .map_err(|_| Error::RequestTimeout {
                what: what.to_string(),
                timeout: self.opts.request_timeout,
            })
    }

    /// `None` for 404.
    async fn get_opt<T>(
        &self,
        what: &str,
        fut: impl Future<Output = kube::Result<T>>,
    ) -> Result<Option<T>> {
        match self.call(what, fut).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Pause before retry number `attempt` (0-based), doubling up to the maximum.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(16);
        self.opts
            .backoff
            .saturating_mul(factor)
            .min(self.opts.max_backoff)
    }
}

/// Now, as Kubernetes writes timestamps.
pub(crate) fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
