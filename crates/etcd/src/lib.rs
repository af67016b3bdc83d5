//! A small, synchronous etcd v3 client speaking the v3 API's JSON gateway over mutual TLS.
//!
//! Why not a gRPC client: the JSON gateway is part of every etcd ≥ 3.4 on the client port,
//! needs no code generation (`protoc`) and no async runtime, and covers what kubeha asks of
//! etcd: members, status, health, keys, membership changes, defragmentation and snapshots.
//! Each request opens a fresh TLS connection with a bounded timeout, so a dead member costs
//! at most that timeout. Member IDs are uint64 on the wire (as JSON strings) and hex here,
//! as etcdctl prints them. [`membership`] holds the pure decisions (quorum guard, ghosts).

mod http;
pub mod membership;
pub mod snapshot;
mod types;

use std::{
    io::{BufRead, Write},
    sync::Arc,
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
pub use snapshot::SnapshotCheck;
pub use types::{Alarm, Health, Member, Status};

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
    Http {
        endpoint: String,
        path: String,
        status: u16,
        message: String,
    },
    /// The answer was not what the v3 API documents.
    #[error("unexpected answer from etcd at {endpoint} to {path}")]
    Decode {
        endpoint: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A member ID that is not the hex form etcdctl prints.
    #[error("{id:?} is not a member ID (hex, as `kubeha etcd members` shows it)")]
    BadMemberId { id: String },
    /// The snapshot stream from this endpoint broke off or failed its integrity check.
    #[error("snapshot from etcd at {endpoint} is unusable: {problem}")]
    Snapshot { endpoint: String, problem: String },
    /// Reading the snapshot stream failed part-way.
    #[error("reading the snapshot stream from etcd at {endpoint} failed")]
    SnapshotRead {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing the snapshot out failed.
    #[error("writing the snapshot from etcd at {endpoint} failed")]
    SnapshotWrite {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    /// No endpoint answered.
    #[error("no etcd endpoint answered ({tried} tried)")]
    NoEndpoint {
        tried: usize,
        #[source]
        last: Box<EtcdError>,
    },
}

impl EtcdError {
    /// etcd's strict reconfiguration check refused a membership change because some member
    /// has not been connected for 5 s (`etcdserver: unhealthy cluster`). Nothing changed;
    /// the same request can succeed moments later.
    pub fn is_unhealthy_cluster(&self) -> bool {
        match self {
            EtcdError::Http {
                status: 503,
                message,
                ..
            } => message.contains("unhealthy cluster"),
            EtcdError::NoEndpoint { last, .. } => last.is_unhealthy_cluster(),
            _ => false,
        }
    }

    /// etcd refused to promote a learner that has not caught up with the leader.
    pub fn is_learner_not_ready(&self) -> bool {
        match self {
            EtcdError::Http { message, .. } => message.contains("in sync with leader"),
            EtcdError::NoEndpoint { last, .. } => last.is_learner_not_ready(),
            _ => false,
        }
    }
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A client for one etcd cluster.
#[derive(Clone)]
pub struct Client {
    endpoints: Vec<String>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl Client {
    /// `endpoints` are client URLs such as `https://198.18.0.11:2379`.
    pub fn new(
        endpoints: Vec<String>,
        tls: &TlsMaterial,
        timeout: Duration,
    ) -> Result<Self, EtcdError> {
        Ok(Client {
            endpoints,
            tls: Arc::new(http::client_config(tls)?),
            timeout,
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The same client asking `endpoints`, in that order (e.g. healthy members first).
    pub fn with_endpoints(&self, endpoints: Vec<String>) -> Self {
        Client {
            endpoints,
            ..self.clone()
        }
    }

    /// The same client with another per-request timeout (defragmentation blocks a member
    /// for as long as it rewrites its database).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Client {
            timeout,
            ..self.clone()
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn call<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, EtcdError> {
        let text = http::post(&self.tls, endpoint, path, &body.to_string(), self.timeout)?;
        serde_json::from_str(&text).map_err(|source| EtcdError::Decode {
            endpoint: endpoint.into(),
            path: path.into(),
            source,
        })
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
            Some(l) => EtcdError::NoEndpoint {
                tried: self.endpoints.len(),
                last: Box::new(l),
            },
            None => EtcdError::Http {
                endpoint: String::new(),
                path: String::new(),
                status: 0,
                message: "no endpoints given".into(),
            },
        })
    }

    /// For changes: the first endpoint that can be connected to. Any answer, or a failure
    /// after the request may have gone out, ends the search, so a change is sent once.
    fn first_reachable<T>(&self, f: impl Fn(&str) -> Result<T, EtcdError>) -> Result<T, EtcdError> {
        let mut last = None;
        for e in &self.endpoints {
            match f(e) {
                Err(err @ EtcdError::Connect { .. }) => last = Some(err),
                other => return other,
            }
        }
        Err(match last {
            Some(l) => EtcdError::NoEndpoint {
                tried: self.endpoints.len(),
                last: Box::new(l),
            },
            None => EtcdError::Http {
                endpoint: String::new(),
                path: String::new(),
                status: 0,
                message: "no endpoints given".into(),
            },
        })
    }

    /// Cluster membership as any reachable member sees it.
    pub fn member_list(&self) -> Result<Vec<Member>, EtcdError> {
        self.any(|e| {
            let r: types::MemberListResponse =
                self.call(e, "/v3/cluster/member/list", &serde_json::json!({}))?;
            Ok(r.members.into_iter().map(Member::from).collect())
        })
    }

    /// One member's status (leader, DB size, version, raft term).
    pub fn status(&self, endpoint: &str) -> Result<Status, EtcdError> {
        let r: types::StatusResponse =
            self.call(endpoint, "/v3/maintenance/status", &serde_json::json!({}))?;
        Ok(Status::from(r))
    }

    /// `etcdctl endpoint health`'s check: a linearizable read through this member.
    pub fn health(&self, endpoint: &str) -> Health {
        let started = std::time::Instant::now();
        let r: Result<serde_json::Value, _> = self.call(
            endpoint,
            "/v3/kv/range",
            &serde_json::json!({ "key": B64.encode("health") }),
        );
        Health {
            endpoint: endpoint.to_string(),
            healthy: r.is_ok(),
            took: started.elapsed(),
            error: r.err().map(|e| error_chain(&e)),
        }
    }

    /// A learner serves no linearizable reads, so its check is a serializable read: the
    /// member answers from its own store.
    pub fn learner_health(&self, endpoint: &str) -> Health {
        let started = std::time::Instant::now();
        let r: Result<serde_json::Value, _> = self.call(
            endpoint,
            "/v3/kv/range",
            &serde_json::json!({ "key": B64.encode("health"), "serializable": true }),
        );
        Health {
            endpoint: endpoint.to_string(),
            healthy: r.is_ok(),
            took: started.elapsed(),
            error: r.err().map(|e| error_chain(&e)),
        }
    }

    /// The check that fits the member: [`Client::health`] for a voter, [`Client::learner_health`]
    /// for a learner; a member without client URLs (never started) is unhealthy.
    pub fn member_health(&self, m: &Member) -> Health {
        match m.client_urls.first() {
            None => Health {
                endpoint: String::new(),
                healthy: false,
                took: Duration::ZERO,
                error: Some("never started: no client URL".into()),
            },
            Some(e) if m.is_learner => self.learner_health(e),
            Some(e) => self.health(e),
        }
    }

    /// Adds a member with these peer URLs (as a learner when `is_learner`). The new member
    /// has no name and no client URLs until an etcd starts with its peer URL.
    pub fn member_add(&self, peer_urls: &[String], is_learner: bool) -> Result<Member, EtcdError> {
        let body = serde_json::json!({ "peerURLs": peer_urls, "isLearner": is_learner });
        self.first_reachable(|e| {
            let r: types::MemberAddResponse = self.call(e, "/v3/cluster/member/add", &body)?;
            Ok(Member::from(r.member))
        })
    }

    /// Removes the member with this hex ID.
    pub fn member_remove(&self, id: &str) -> Result<(), EtcdError> {
        let body = serde_json::json!({ "ID": parse_id(id)?.to_string() });
        self.first_reachable(|e| {
            self.call::<serde_json::Value>(e, "/v3/cluster/member/remove", &body)
                .map(|_| ())
        })
    }

    /// Promotes the learner with this hex ID to a voting member. etcd refuses (HTTP 412,
    /// "can only promote a learner member which is in sync with leader") until it caught up.
    pub fn member_promote(&self, id: &str) -> Result<(), EtcdError> {
        let body = serde_json::json!({ "ID": parse_id(id)?.to_string() });
        self.first_reachable(|e| {
            self.call::<serde_json::Value>(e, "/v3/cluster/member/promote", &body)
                .map(|_| ())
        })
    }

    /// Defragments one member's database. The member serves nothing while it runs.
    pub fn defragment(&self, endpoint: &str) -> Result<(), EtcdError> {
        self.call::<serde_json::Value>(
            endpoint,
            "/v3/maintenance/defragment",
            &serde_json::json!({}),
        )
        .map(|_| ())
    }

    /// Alarms raised anywhere in the cluster.
    pub fn alarms(&self) -> Result<Vec<Alarm>, EtcdError> {
        self.any(|e| {
            let r: types::AlarmResponse = self.call(
                e,
                "/v3/maintenance/alarm",
                &serde_json::json!({ "action": "GET" }),
            )?;
            Ok(r.alarms
                .into_iter()
                .map(Alarm::from)
                .filter(|a| a.alarm != "NONE")
                .collect())
        })
    }

    /// Streams a snapshot of `endpoint`'s database to `out`, trailer included (the file
    /// `etcdctl snapshot save` writes), holding one message in memory at a time. Fails when
    /// the stream breaks off or its SHA-256 trailer does not match ([`snapshot`]).
    pub fn snapshot(
        &self,
        endpoint: &str,
        out: &mut dyn Write,
    ) -> Result<SnapshotCheck, EtcdError> {
        let path = "/v3/maintenance/snapshot";
        let body = http::post_stream(&self.tls, endpoint, path, "{}", self.timeout)?;
        let mut reader = std::io::BufReader::with_capacity(256 * 1024, body);
        let mut verifier = snapshot::Verifier::new();
        let mut last_remaining = None;
        let bad = |problem: String| EtcdError::Snapshot {
            endpoint: endpoint.into(),
            problem,
        };
        // The gateway writes one JSON message per line; a message holds at most 32 KiB of data
        // (about 44 KiB of base64), so a line past MAX_MESSAGE means something else is wrong.
        const MAX_MESSAGE: u64 = 16 << 20;
        let mut line = Vec::with_capacity(64 * 1024);
        let mut blob = Vec::with_capacity(48 * 1024);
        loop {
            line.clear();
            let n = std::io::Read::take(&mut reader, MAX_MESSAGE)
                .read_until(b'\n', &mut line)
                .map_err(|source| EtcdError::SnapshotRead {
                    endpoint: endpoint.into(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            if line.last() != Some(&b'\n') && n as u64 == MAX_MESSAGE {
                return Err(bad(format!("a message is longer than {MAX_MESSAGE} bytes")));
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let msg: types::SnapshotMessage =
                serde_json::from_slice(&line).map_err(|source| EtcdError::Decode {
                    endpoint: endpoint.into(),
                    path: path.into(),
                    source,
                })?;
            if let Some(err) = msg.error {
                let text = err
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map_or_else(|| err.to_string(), str::to_string);
                return Err(bad(format!("the member stopped the stream: {text}")));
            }
            let Some(chunk) = msg.result else { continue };
            blob.clear();
            B64.decode_vec(chunk.blob.as_bytes(), &mut blob)
                .map_err(|e| bad(format!("a chunk is not base64 ({e})")))?;
            out.write_all(&blob)
                .map_err(|source| EtcdError::SnapshotWrite {
                    endpoint: endpoint.into(),
                    source,
                })?;
            verifier.update(&blob);
            last_remaining = Some(chunk.remaining_bytes);
        }
        out.flush().map_err(|source| EtcdError::SnapshotWrite {
            endpoint: endpoint.into(),
            source,
        })?;
        let check = verifier.finish();
        match last_remaining {
            None => Err(bad("the stream was empty".into())),
            Some(n) if n > 0 => Err(bad(format!(
                "the stream ended with {n} bytes still to come"
            ))),
            _ if !check.is_valid() => Err(bad(format!(
                "its SHA-256 trailer does not match the {} bytes before it (trailer {}, computed {})",
                check.size.saturating_sub(snapshot::TRAILER_LEN as u64),
                check.trailer,
                check.content_sha256
            ))),
            _ => Ok(check),
        }
    }

    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        self.any(|e| {
            self.call::<serde_json::Value>(
                e,
                "/v3/kv/put",
                &serde_json::json!({ "key": B64.encode(key), "value": B64.encode(value) }),
            )
            .map(|_| ())
        })
    }

    /// Values of every key with `prefix`.
    pub fn get_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, EtcdError> {
        let mut end = prefix.to_vec();
        if let Some(last) = end.last_mut() {
            *last = last.wrapping_add(1);
        }
        self.any(|e| {
            let r: types::RangeResponse = self.call(
                e,
                "/v3/kv/range",
                &serde_json::json!({ "key": B64.encode(prefix), "range_end": B64.encode(&end) }),
            )?;
            Ok(r.kvs
                .into_iter()
                .map(|kv| {
                    (
                        B64.decode(kv.key).unwrap_or_default(),
                        B64.decode(kv.value.unwrap_or_default()).unwrap_or_default(),
                    )
                })
                .collect())
        })
    }
}

/// A member's hex ID as the uint64 the API takes.
pub fn parse_id(id: &str) -> Result<u64, EtcdError> {
    let hex = id.trim().trim_start_matches("0x");
    u64::from_str_radix(hex, 16).map_err(|_| EtcdError::BadMemberId { id: id.into() })
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
