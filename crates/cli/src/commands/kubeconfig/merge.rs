//! Merging kubeha's three kubeconfig entries into a user's kubeconfig, pure.
//!
//! The document is typed only where kubeha reads or writes it; every other key, at every
//! level, is kept verbatim in `extra`, so entries kubeha does not own come out as they went in.
//!
//! An entry of kubeha's name is taken as kubeha's own only when it is this very cluster:
//! - cluster: same `server` and same `certificate-authority-data` (decoded);
//! - user: an embedded client certificate signed by this cluster's CA (a renewed one is
//!   replaced, anything else is a conflict);
//! - context: same cluster and user names.
//!
//! Anything else is a conflict: the merge is refused and the file left alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::commands::certs::scan::{decode_base64, first_certificate};

type Extra = BTreeMap<String, Value>;

/// `null` (which kubectl writes for empty lists) as the default value.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A kubeconfig file (`clientcmd/api/v1.Config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub clusters: Vec<NamedCluster>,
    #[serde(default, deserialize_with = "null_default")]
    pub contexts: Vec<NamedContext>,
    #[serde(default, deserialize_with = "null_default")]
    pub users: Vec<NamedUser>,
    #[serde(
        rename = "current-context",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub current_context: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub cluster: ClusterBody,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(
        rename = "certificate-authority-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_authority_data: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub context: ContextBody,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub user: UserBody,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserBody {
    #[serde(
        rename = "client-certificate-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_certificate_data: Option<String>,
    #[serde(
        rename = "client-key-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_key_data: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Config {
    /// Parses kubeconfig text; a file with nothing but comments and blank lines is an empty
    /// config.
    pub fn parse(text: &str) -> Result<Config, String> {
        let blank = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        if blank {
            return Ok(Config::default());
        }
        // Only the first line: the rest quotes the file, which may hold keys.
        serde_saphyr::from_str(text).map_err(|e| first_line(&e.to_string()))
    }

    /// The text kubectl would write for it (go-yaml style, keys sorted).
    pub fn to_yaml(&self) -> Result<String, String> {
        let v = serde_json::to_value(self).map_err(|e| e.to_string())?;
        Ok(kubeha_render::staticpod::emit_yaml(&v))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// What happened to one of kubeha's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Updated,
    Unchanged,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub cluster: Change,
    pub user: Change,
    pub context: Change,
    /// The file had no current context and now has kubeha's.
    pub current_context_set: bool,
}

impl Merged {
    pub fn is_noop(&self) -> bool {
        self.cluster == Change::Unchanged
            && self.user == Change::Unchanged
            && self.context == Change::Unchanged
            && !self.current_context_set
    }
}

/// An entry of kubeha's name that belongs to something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `cluster`, `user` or `context`.
    pub kind: &'static str,
    pub name: String,
    pub reason: String,
}

/// kubeha's three entries, taken from its own one-cluster kubeconfig.
#[derive(Debug, Clone)]
pub struct Ours {
    pub cluster: NamedCluster,
    pub user: NamedUser,
    pub context: NamedContext,
}

impl Ours {
    pub fn from_config(c: &Config) -> Result<Ours, String> {
        match (
            c.clusters.as_slice(),
            c.users.as_slice(),
            c.contexts.as_slice(),
        ) {
            ([cluster], [user], [context]) => Ok(Ours {
                cluster: cluster.clone(),
                user: user.clone(),
                context: context.clone(),
            }),
            _ => Err("the admin kubeconfig must hold one cluster, user and context".into()),
        }
    }
}

fn b64_eq(a: &str, b: &str) -> bool {
    match (decode_base64(a), decode_base64(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.split_whitespace().eq(b.split_whitespace()),
    }
}

/// Whether the base64 PEM client certificate `cert_b64` is signed by the CA in `ca_b64`.
fn signed_by(cert_b64: &str, ca_b64: &str) -> bool {
    let der = |b64: &str| decode_base64(b64).and_then(|pem| first_certificate(&pem).ok());
    let (Some(cert), Some(ca)) = (der(cert_b64), der(ca_b64)) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(&cert),
        x509_parser::parse_x509_certificate(&ca),
    ) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Adds or updates kubeha's entries in `doc`; every other entry is left as it is. Sets the
/// current context only when `doc` has none. On any conflict nothing is changed.
pub fn merge(doc: &mut Config, ours: &Ours) -> Result<Merged, Vec<Conflict>> {
    let mut conflicts = Vec::new();
    let ca = ours
        .cluster
        .cluster
        .certificate_authority_data
        .as_deref()
        .unwrap_or("");
    let server = ours.cluster.cluster.server.as_deref().unwrap_or("");

    // Check everything first: a refused merge changes nothing.
    let mut cluster = Change::Added;
    for c in doc.clusters.iter().filter(|c| c.name == ours.cluster.name) {
        cluster = Change::Unchanged;
        let theirs = c.cluster.server.as_deref().unwrap_or("");
        if theirs != server {
            conflicts.push(Conflict {
                kind: "cluster",
                name: c.name.clone(),
                reason: format!("points to server {theirs:?}, this cluster's endpoint is {server}"),
            });
        } else {
            match c.cluster.certificate_authority_data.as_deref() {
                Some(data) if b64_eq(data, ca) => {}
                Some(_) => conflicts.push(Conflict {
                    kind: "cluster",
                    name: c.name.clone(),
                    reason: format!(
                        "has the same server {server} but another CA certificate (another cluster at that address, or a re-created CA)"
                    ),
                }),
                None => conflicts.push(Conflict {
                    kind: "cluster",
                    name: c.name.clone(),
                    reason: "has no embedded CA certificate (certificate-authority-data) to compare with this cluster's".into(),
                }),
            }
        }
    }

    let mut user = Change::Added;
    for u in doc.users.iter().filter(|u| u.name == ours.user.name) {
        let same = u.user.client_certificate_data == ours.user.user.client_certificate_data
            && u.user.client_key_data == ours.user.user.client_key_data;
        if same {
            if user == Change::Added {
                user = Change::Unchanged;
            }
            continue;
        }
        match u.user.client_certificate_data.as_deref() {
            Some(cert) if signed_by(cert, ca) => user = Change::Updated,
            Some(_) => conflicts.push(Conflict {
                kind: "user",
                name: u.name.clone(),
                reason: "holds a client certificate not signed by this cluster's CA".into(),
            }),
            None => conflicts.push(Conflict {
                kind: "user",
                name: u.name.clone(),
                reason:
                    "holds credentials other than an embedded client certificate of this cluster"
                        .into(),
            }),
        }
    }

    let mut context = Change::Added;
    let want_cluster = ours.context.context.cluster.as_deref();
    let want_user = ours.context.context.user.as_deref();
    for c in doc.contexts.iter().filter(|c| c.name == ours.context.name) {
        context = Change::Unchanged;
        let (cl, us) = (c.context.cluster.as_deref(), c.context.user.as_deref());
        if cl != want_cluster || us != want_user {
            conflicts.push(Conflict {
                kind: "context",
                name: c.name.clone(),
                reason: format!(
                    "uses cluster {:?} and user {:?}, not {:?} and {:?}",
                    cl.unwrap_or(""),
                    us.unwrap_or(""),
                    want_cluster.unwrap_or(""),
                    want_user.unwrap_or("")
                ),
            });
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }

    if cluster == Change::Added {
        doc.clusters.push(ours.cluster.clone());
    }
    match user {
        Change::Added => doc.users.push(ours.user.clone()),
        Change::Updated => {
            for u in doc.users.iter_mut().filter(|u| u.name == ours.user.name) {
                u.user.client_certificate_data = ours.user.user.client_certificate_data.clone();
                u.user.client_key_data = ours.user.user.client_key_data.clone();
                // Files would compete with the embedded data (kubectl refuses both).
                u.user.extra.remove("client-certificate");
                u.user.extra.remove("client-key");
            }
        }
        Change::Unchanged => {}
    }
    if context == Change::Added {
        doc.contexts.push(ours.context.clone());
    }
    let current_context_set = doc.current_context.as_deref().is_none_or(str::is_empty);
    if current_context_set {
        doc.current_context = Some(ours.context.name.clone());
    }
    if doc.api_version.is_none() {
        doc.api_version = Some("v1".into());
    }
    if doc.kind.is_none() {
        doc.kind = Some("Config".into());
    }
    Ok(Merged {
        cluster,
        user,
        context,
        current_context_set,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ours() -> Ours {
        let text = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://10.0.0.1:6443\n  name: ha\ncontexts:\n- context:\n    cluster: ha\n    user: ha-admin\n  name: ha-admin@ha\ncurrent-context: ha-admin@ha\nkind: Config\npreferences: {}\nusers:\n- name: ha-admin\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";
        Ours::from_config(&Config::parse(text).unwrap()).unwrap()
    }

    const OTHER: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod:6443\n    insecure-skip-tls-verify: true\n    extensions:\n    - name: x\n      extension: {a: [1, 2]}\ncontexts:\n- name: prod\n  context: {cluster: prod, user: prod, namespace: web}\nusers:\n- name: prod\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n      args: [eks, get-token]\n      env: null\ncurrent-context: prod\npreferences: {colors: true}\nx-custom: keep me\n";

    #[test]
    fn unknown_keys_survive_a_round_trip() {
        let doc = Config::parse(OTHER).unwrap();
        assert_eq!(doc.extra["x-custom"], "keep me");
        assert_eq!(
            doc.clusters[0].cluster.extra["insecure-skip-tls-verify"],
            true
        );
        let back = Config::parse(&doc.to_yaml().unwrap()).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn adds_three_entries_and_keeps_the_current_context() {
        let mut doc = Config::parse(OTHER).unwrap();
        let before = doc.clone();
        let m = merge(&mut doc, &ours()).unwrap();
        assert_eq!(
            (m.cluster, m.user, m.context),
            (Change::Added, Change::Added, Change::Added)
        );
        assert!(!m.current_context_set);
        assert_eq!(doc.current_context.as_deref(), Some("prod"));
        assert_eq!(doc.clusters[0], before.clusters[0]);
        assert_eq!(doc.users[0], before.users[0]);
        assert_eq!(doc.contexts[0], before.contexts[0]);
        assert_eq!(doc.extra, before.extra);
        assert_eq!(doc.clusters.len(), 2);
        // Again: nothing to do.
        let again = merge(&mut doc, &ours()).unwrap();
        assert!(again.is_noop(), "{again:?}");
    }

    #[test]
    fn empty_and_null_files_get_the_current_context() {
        for text in [
            "",
            "# nothing\n",
            "apiVersion: v1\nkind: Config\nclusters: null\nusers: null\ncontexts: null\ncurrent-context: \"\"\n",
        ] {
            let mut doc = Config::parse(text).unwrap();
            let m = merge(&mut doc, &ours()).unwrap();
            assert!(m.current_context_set, "{text:?}");
            assert_eq!(doc.current_context.as_deref(), Some("ha-admin@ha"));
            assert_eq!(doc.api_version.as_deref(), Some("v1"));
        }
    }

    #[test]
    fn same_names_of_another_cluster_are_conflicts() {
        let base = Config::parse("").unwrap();
        let o = ours();
        // Another server.
        let mut doc = base.clone();
        let mut c = o.cluster.clone();
        c.cluster.server = Some("https://10.9.9.9:6443".into());
        doc.clusters.push(c);
        let before = doc.clone();
        let err = merge(&mut doc, &o).unwrap_err();
        assert_eq!(err[0].kind, "cluster");
        assert!(err[0].reason.contains("10.9.9.9"), "{err:?}");
        assert_eq!(doc, before, "a refused merge changes nothing");
        // Same server, another CA.
        let mut doc = base.clone();
        let mut c = o.cluster.clone();
        c.cluster.certificate_authority_data = Some("T1RIRVI=".into());
        doc.clusters.push(c);
        assert!(
            merge(&mut doc, &o).unwrap_err()[0]
                .reason
                .contains("another CA")
        );
        // Context pointing elsewhere; user with a token.
        let mut doc = base.clone();
        let mut ctx = o.context.clone();
        ctx.context.cluster = Some("prod".into());
        doc.contexts.push(ctx);
        let mut u = o.user.clone();
        u.user = UserBody {
            extra: [("token".to_string(), Value::from("t"))].into(),
            ..UserBody::default()
        };
        doc.users.push(u);
        let err = merge(&mut doc, &o).unwrap_err();
        let kinds: Vec<&str> = err.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, ["user", "context"]);
        // A user certificate that does not verify against the CA.
        let mut doc = base;
        let mut u = o.user.clone();
        u.user.client_certificate_data = Some("T1RIRVI=".into());
        doc.users.push(u);
        assert!(
            merge(&mut doc, &o).unwrap_err()[0]
                .reason
                .contains("not signed")
        );
    }

    #[test]
    fn base64_compares_decoded() {
        assert!(b64_eq("Q0E=", "Q0E"));
        assert!(b64_eq("Q0\nE=", "Q0E="));
        assert!(!b64_eq("Q0E=", "Q0I="));
    }
}
