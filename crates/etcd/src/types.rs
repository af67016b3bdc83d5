//! The v3 API's JSON shapes (64-bit integers arrive as strings) and kubeha's views of them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

fn u64_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        N(u64),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(0),
        Some(N::N(n)) => Ok(n),
        Some(N::S(s)) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct Header {
    #[serde(default, deserialize_with = "u64_str")]
    pub member_id: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawMember {
    #[serde(rename = "ID", default, deserialize_with = "u64_str")]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MemberListResponse {
    #[serde(default)]
    pub members: Vec<RawMember>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub version: String,
    #[serde(default, deserialize_with = "u64_str")]
    pub db_size: u64,
    #[serde(default, deserialize_with = "u64_str")]
    pub leader: u64,
    #[serde(default, deserialize_with = "u64_str")]
    pub raft_term: u64,
    #[serde(default, deserialize_with = "u64_str")]
    pub raft_index: u64,
    #[serde(default)]
    pub is_learner: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Kv {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RangeResponse {
    #[serde(default)]
    pub kvs: Vec<Kv>,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Member ID, hex as etcdctl prints it.
    pub id: String,
    /// Empty for a member that was added but never started.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl From<RawMember> for Member {
    fn from(m: RawMember) -> Self {
        Member { id: format!("{:x}", m.id), name: m.name, peer_urls: m.peer_urls, client_urls: m.client_urls, is_learner: m.is_learner }
    }
}

/// One member's view of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub member_id: String,
    pub leader_id: String,
    pub is_leader: bool,
    pub version: String,
    pub db_size: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub is_learner: bool,
}

impl From<StatusResponse> for Status {
    fn from(r: StatusResponse) -> Self {
        Status {
            member_id: format!("{:x}", r.header.member_id),
            leader_id: format!("{:x}", r.leader),
            is_leader: r.leader != 0 && r.leader == r.header.member_id,
            version: r.version,
            db_size: r.db_size,
            raft_term: r.raft_term,
            raft_index: r.raft_index,
            is_learner: r.is_learner,
        }
    }
}

/// The outcome of a health check against one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub endpoint: String,
    pub healthy: bool,
    #[serde(serialize_with = "ms")]
    pub took: Duration,
    pub error: Option<String>,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}
