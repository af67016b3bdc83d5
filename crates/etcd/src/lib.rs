//! A small, synchronous etcd v3 client speaking the v3 API's JSON gateway over mutual TLS.
//!
//! Why not a gRPC client: the JSON gateway is part of every etcd ≥ 3.4 on the client port,
//! needs no code generation (`protoc`) and no async runtime, and covers what kubeha asks of
//! etcd: members, status, health, keys, and membership changes. Each request opens a fresh
//! TLS connection with a bounded timeout, so a dead member costs at most that timeout.

mod http;
mod types;

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
pub use types::{Health, Member, Status};

/// PEM text of the CA that signed the members' server certificates and of the client pair.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial { .. }")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The PEM material could not be used.
    #[error("invalid {what} for etcd TLS")]
    Pem {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The endpoint could not be reached in time.
    #[error("cannot reach etcd at {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    /// TLS failed (wrong CA, rejected client certificate, name mismatch).
    #[error("TLS with etcd at {endpoint} failed")]
    Tls {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    /// etcd answered with an error.
    #[error("etcd at {endpoint} answered {status} to {path}: {message}")]
    Http { endpoint: String, path: String, status: u16, message: String },
    /// The answer was not what the v3 API documents.
    #[error("unexpected answer from etcd at {endpoint} to {path}")]
    Decode {
        endpoint: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// No endpoint answered.
    #[error("no etcd endpoint answered ({tried} tried)")]
    NoEndpoint {
        tried: usize,
        #[source]
        last: Box<EtcdError>,
    },
}

/// A client for one etcd cluster.
#[derive(Clone)]
pub struct Client {
    endpoints: Vec<String>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl Client {
    /// `endpoints` are client URLs such as `https://198.18.0.11:2379`.
    pub fn new(endpoints: Vec<String>, tls: &TlsMaterial, timeout: Duration) -> Result<Self, EtcdError> {
        Ok(Client { endpoints, tls: Arc::new(http::client_config(tls)?), timeout })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn call<T: serde::de::DeserializeOwned>(&self, endpoint: &str, path: &str, body: &serde_json::Value) -> Result<T, EtcdError> {
        let text = http::post(&self.tls, endpoint, path, &body.to_string(), self.timeout)?;
        serde_json::from_str(&text).map_err(|source| EtcdError::Decode { endpoint: endpoint.into(), path: path.into(), source })
    }

    /// The first endpoint that answers.
    fn any<T>(&self, f: impl Fn(&str) -> Result<T, EtcdError>) -> Result<T, EtcdError> {
        let mut last = None;
        for e in &self.endpoints {
            match f(e) {
                Ok(v) => return Ok(v),
                Err(err) => last = Some(err),
            }
        }
        Err(match last {
            Some(l) => EtcdError::NoEndpoint { tried: self.endpoints.len(), last: Box::new(l) },
            None => EtcdError::Http { endpoint: String::new(), path: String::new(), status: 0, message: "no endpoints given".into() },
        })
    }

    /// Cluster membership as any reachable member sees it.
    pub fn member_list(&self) -> Result<Vec<Member>, EtcdError> {
        self.any(|e| {
            let r: types::MemberListResponse = self.call(e, "/v3/cluster/member/list", &serde_json::json!({}))?;
            Ok(r.members.into_iter().map(Member::from).collect())
        })
    }

    /// One member's status (leader, DB size, version, raft term).
    pub fn status(&self, endpoint: &str) -> Result<Status, EtcdError> {
        let r: types::StatusResponse = self.call(endpoint, "/v3/maintenance/status", &serde_json::json!({}))?;
        Ok(Status::from(r))
    }

    /// `etcdctl endpoint health`'s check: a linearizable read through this member.
    pub fn health(&self, endpoint: &str) -> Health {
        let started = std::time::Instant::now();
        let r: Result<serde_json::Value, _> = self.call(endpoint, "/v3/kv/range", &serde_json::json!({ "key": B64.encode("health") }));
        Health { endpoint: endpoint.to_string(), healthy: r.is_ok(), took: started.elapsed(), error: r.err().map(|e| error_chain(&e)) }
    }

    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        self.any(|e| self.call::<serde_json::Value>(e, "/v3/kv/put", &serde_json::json!({ "key": B64.encode(key), "value": B64.encode(value) })).map(|_| ()))
    }

    /// Values of every key with `prefix`.
    pub fn get_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, EtcdError> {
        let mut end = prefix.to_vec();
        if let Some(last) = end.last_mut() {
            *last = last.wrapping_add(1);
        }
        self.any(|e| {
            let r: types::RangeResponse = self.call(e, "/v3/kv/range", &serde_json::json!({ "key": B64.encode(prefix), "range_end": B64.encode(&end) }))?;
            Ok(r.kvs.into_iter().map(|kv| (B64.decode(kv.key).unwrap_or_default(), B64.decode(kv.value.unwrap_or_default()).unwrap_or_default())).collect())
        })
    }
}

/// A one-line description of an error and its causes.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
