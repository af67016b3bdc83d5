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
    #[serde(default, deserialize_with = "u64_str")]
    pub revision: u64,
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
    #[serde(default, deserialize_with = "u64_str")]
    pub raft_applied_index: u64,
    #[serde(default, deserialize_with = "u64_str")]
    pub db_size_in_use: u64,
    #[serde(default)]
    pub is_learner: bool,
    #[serde(default)]
    pub errors: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MemberAddResponse {
    pub member: RawMember,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawAlarm {
    #[serde(rename = "memberID", default, deserialize_with = "u64_str")]
    pub member_id: u64,
    /// The enum's name (`NOSPACE`, `CORRUPT`), or its number from other encoders.
    #[serde(default)]
    pub alarm: serde_json::Value,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AlarmResponse {
    #[serde(default)]
    pub alarms: Vec<RawAlarm>,
}

/// One message of the snapshot stream: `{"result":{..}}`, or `{"error":{..}}` when the
/// server gives up half-way.
#[derive(Debug, Deserialize)]
pub(crate) struct SnapshotMessage<'a> {
    #[serde(borrow)]
    pub result: Option<SnapshotChunk<'a>>,
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SnapshotChunk<'a> {
    #[serde(default, alias = "remainingBytes", deserialize_with = "u64_str")]
    pub remaining_bytes: u64,
    /// Base64 has nothing to unescape, so this borrows from the message.
    #[serde(default, borrow)]
    pub blob: std::borrow::Cow<'a, str>,
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
        Member {
            id: format!("{:x}", m.id),
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        }
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
    pub raft_applied_index: u64,
    pub db_size_in_use: u64,
    /// The store revision this member had applied when it answered.
    pub revision: u64,
    pub is_learner: bool,
    /// Problems the member reports about itself (no leader, raised alarms).
    pub errors: Vec<String>,
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
            raft_applied_index: r.raft_applied_index,
            db_size_in_use: r.db_size_in_use,
            revision: r.header.revision,
            is_learner: r.is_learner,
            errors: r.errors,
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

/// An alarm raised on a member (`NOSPACE` after the quota is hit, `CORRUPT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alarm {
    /// Member ID, hex.
    pub member_id: String,
    pub alarm: String,
}

impl From<RawAlarm> for Alarm {
    fn from(a: RawAlarm) -> Self {
        let alarm = match a.alarm {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(0) => "NONE".into(),
                Some(1) => "NOSPACE".into(),
                Some(2) => "CORRUPT".into(),
                _ => n.to_string(),
            },
            // The v3 JSON encoder omits the enum's zero value.
            serde_json::Value::Null => "NONE".into(),
            other => other.to_string(),
        };
        Alarm {
            member_id: format!("{:x}", a.member_id),
            alarm,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // Answers captured from Debian's etcd 3.4.23.
    #[test]
    fn status_with_revision() {
        let text = r#"{"header":{"cluster_id":"7787459613783441930","member_id":"2402861812076439189","revision":"1","raft_term":"2"},"version":"3.4.23","dbSize":"20480","leader":"2402861812076439189","raftIndex":"4","raftTerm":"2","raftAppliedIndex":"4","dbSizeInUse":"16384"}"#;
        let s = Status::from(serde_json::from_str::<StatusResponse>(text).unwrap());
        assert_eq!(s.member_id, "2158ae16512ae695");
        assert!(s.is_leader);
        assert_eq!(
            (
                s.revision,
                s.db_size,
                s.db_size_in_use,
                s.raft_index,
                s.raft_applied_index
            ),
            (1, 20480, 16384, 4, 4)
        );
        assert!(s.errors.is_empty());
    }

    #[test]
    fn member_add_answer() {
        let text = r#"{"header":{"cluster_id":"7787459613783441930","member_id":"2402861812076439189","raft_term":"2"},"member":{"ID":"1025900482141467645","peerURLs":["http://127.0.0.26:2380"],"isLearner":true},"members":[{"ID":"1025900482141467645","peerURLs":["http://127.0.0.26:2380"],"isLearner":true},{"ID":"2402861812076439189","name":"x","peerURLs":["http://127.0.0.25:2380"],"clientURLs":["http://127.0.0.25:2379"]}]}"#;
        let m = Member::from(
            serde_json::from_str::<MemberAddResponse>(text)
                .unwrap()
                .member,
        );
        assert_eq!(m.id, format!("{:x}", 1025900482141467645u64));
        assert!(m.is_learner && m.name.is_empty() && m.client_urls.is_empty());
    }

    #[test]
    fn alarms() {
        let none: AlarmResponse = serde_json::from_str("{}").unwrap();
        assert!(none.alarms.is_empty());
        let text = r#"{"alarms":[{"memberID":"2402861812076439189","alarm":"NOSPACE"},{"memberID":"1","alarm":2}]}"#;
        let a: Vec<Alarm> = serde_json::from_str::<AlarmResponse>(text)
            .unwrap()
            .alarms
            .into_iter()
            .map(Alarm::from)
            .collect();
        assert_eq!(
            a[0],
            Alarm {
                member_id: "2158ae16512ae695".into(),
                alarm: "NOSPACE".into()
            }
        );
        assert_eq!(a[1].alarm, "CORRUPT");
    }

    #[test]
    fn snapshot_stream_messages() {
        let text = "{\"result\":{\"remaining_bytes\":\"94208\",\"blob\":\"AAEC\"}}\n{\"result\":{\"blob\":\"AAEC\"}}\n{\"error\":{\"grpc_code\":14,\"message\":\"x\"}}\n";
        let msgs: Vec<SnapshotMessage> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(
            msgs[0].result.as_ref().map(|c| c.remaining_bytes),
            Some(94208)
        );
        assert_eq!(
            msgs[1]
                .result
                .as_ref()
                .map(|c| (c.remaining_bytes, c.blob.as_ref())),
            Some((0, "AAEC"))
        );
        assert!(msgs[2].result.is_none() && msgs[2].error.is_some());
    }
}
