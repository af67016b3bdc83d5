//! The kubeadm static-pod skeleton, shared by every control-plane component, etcd and the
//! local etcd proxy: typed `k8s-openapi` objects, serialized as kubeadm's codec would.
//!
//! kubeadm writes objects through `sigs.k8s.io/yaml` (JSON, then go-yaml v2): keys sorted
//! alphabetically, sequences not indented under their key, strings quoted only where a YAML 1.1
//! reader would take them for something else. [`kube_yaml`] reproduces that style so that a
//! rendered manifest, kubeconfig or kubelet config reads like the file kubeadm leaves on a node.
//! The shape also follows the Kubernetes minor ([`PodStyle`]): `creationTimestamp: null` up to
//! v1.32, named `probe-port` probes from v1.34.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Container, ContainerPort, HTTPGetAction, HostPathVolumeSource, Pod, PodSecurityContext,
        PodSpec, PodStatus, Probe, ResourceRequirements, SeccompProfile, Volume, VolumeMount,
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::ObjectMeta, util::intstr::IntOrString,
    },
};
use kubeha_spec::KubeVersion;
use serde::Serialize;

use crate::{
    error::{RenderError, Result},
    file::{HostFile, MANIFESTS_DIR},
};

/// A hostPath volume and where the container sees it.
#[derive(Debug, Clone)]
pub struct HostVolume {
    pub name: String,
    pub host_path: String,
    pub mount_path: String,
    /// `DirectoryOrCreate`, `FileOrCreate`, `File`, …
    pub kind: String,
    pub read_only: bool,
}

impl HostVolume {
    /// The usual case: the container sees the host path at the same path.
    pub fn new(name: &str, path: &str, kind: &str, read_only: bool) -> Self {
        HostVolume {
            name: name.into(),
            host_path: path.into(),
            mount_path: path.into(),
            kind: kind.into(),
            read_only,
        }
    }
}

/// An HTTP(S) probe target.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    pub host: Option<String>,
    pub port: i32,
    pub scheme: &'static str,
    pub liveness_path: String,
    pub readiness_path: Option<String>,
    pub startup_path: String,
}

/// What differs between static pods; the rest is kubeadm's fixed skeleton.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub image: String,
    /// Binary, then `--flag=value` arguments (see [`sorted_flags`]).
    pub command: Vec<String>,
    pub volumes: Vec<HostVolume>,
    pub probe: Option<ProbeTarget>,
    pub cpu_request: &'static str,
    pub memory_request: Option<&'static str>,
    pub annotations: BTreeMap<String, String>,
    /// `tier` label; kubeadm uses `control-plane` for all of its pods.
    pub tier: &'static str,
}

/// `--name=value` flags sorted by name then value, as kubeadm emits them.
pub fn sorted_flags(flags: &BTreeMap<String, String>) -> Vec<String> {
    flags.iter().map(|(k, v)| format!("--{k}={v}")).collect()
}

/// Startup-probe failure threshold for kubeadm's default 4m health-check timeout.
pub const STARTUP_FAILURE_THRESHOLD: i32 = 24;

/// Name of the container port the probes point at from v1.34 (kubernetes#132776).
pub const PROBE_PORT_NAME: &str = "probe-port";

/// The parts of a static-pod file that changed between the minors kubeha reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodStyle {
    /// v1.34+: probes use the named port `probe-port`, declared under the container's `ports`.
    pub named_probe_port: bool,
    /// ≤ v1.32: `metadata.creationTimestamp: null` (apimachinery omits the zero time since
    /// v1.33, kubernetes#130989).
    pub null_creation_timestamp: bool,
}

impl PodStyle {
    /// The style kubeadm of minor `v.minor` writes.
    pub fn for_version(v: KubeVersion) -> Self {
        PodStyle {
            named_probe_port: v.minor >= 34,
            null_creation_timestamp: v.minor <= 32,
        }
    }
}

fn http_probe(
    t: &ProbeTarget,
    port: &IntOrString,
    path: &str,
    delay: i32,
    period: i32,
    failures: i32,
) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            host: t.host.clone(),
            path: Some(path.to_string()),
            port: port.clone(),
            scheme: Some(t.scheme.to_string()),
            ..Default::default()
        }),
        initial_delay_seconds: (delay > 0).then_some(delay),
        period_seconds: Some(period),
        timeout_seconds: Some(15),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// Builds the typed Pod as kubeadm of the default Kubernetes minor would.
pub fn pod(c: &Component) -> Pod {
    pod_for(c, KubeVersion::DEFAULT)
}

/// Builds the typed Pod as kubeadm of `version` would.
pub fn pod_for(c: &Component, version: KubeVersion) -> Pod {
    let style = PodStyle::for_version(version);
    let mut volumes = c.volumes.clone();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    let mounts = c
        .volumes
        .iter()
        .map(|v| VolumeMount {
            name: v.name.clone(),
            mount_path: v.mount_path.clone(),
            read_only: v.read_only.then_some(true),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let mut requests = BTreeMap::new();
    requests.insert("cpu".to_string(), Quantity(c.cpu_request.to_string()));
    if let Some(m) = c.memory_request {
        requests.insert("memory".to_string(), Quantity(m.to_string()));
    }
    let (liveness, readiness, startup, ports) = match &c.probe {
        Some(t) => {
            let (port, ports) = if style.named_probe_port {
                let declared = ContainerPort {
                    container_port: t.port,
                    name: Some(PROBE_PORT_NAME.to_string()),
                    protocol: Some("TCP".to_string()),
                    ..Default::default()
                };
                (
                    IntOrString::String(PROBE_PORT_NAME.to_string()),
                    Some(vec![declared]),
                )
            } else {
                (IntOrString::Int(t.port), None)
            };
            (
                Some(http_probe(t, &port, &t.liveness_path, 10, 10, 8)),
                t.readiness_path
                    .as_ref()
                    .map(|p| http_probe(t, &port, p, 0, 1, 3)),
                Some(http_probe(
                    t,
                    &port,
                    &t.startup_path,
                    10,
                    10,
                    STARTUP_FAILURE_THRESHOLD,
                )),
                ports,
            )
        }
        None => (None, None, None, None),
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(c.name.clone()),
            namespace: Some("kube-system".into()),
            labels: Some(BTreeMap::from([
                ("component".to_string(), c.name.clone()),
                ("tier".to_string(), c.tier.to_string()),
            ])),
            annotations: (!c.annotations.is_empty()).then(|| c.annotations.clone()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: c.name.clone(),
                image: Some(c.image.clone()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: (!c.command.is_empty()).then(|| c.command.clone()),
                liveness_probe: liveness,
                readiness_probe: readiness,
                startup_probe: startup,
                ports,
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                }),
                volume_mounts: (!mounts.is_empty()).then_some(mounts),
                ..Default::default()
            }],
            host_network: Some(true),
            priority: Some(2_000_001_000),
            priority_class_name: Some("system-node-critical".into()),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            volumes: Some(
                volumes
                    .iter()
                    .map(|v| Volume {
                        name: v.name.clone(),
                        host_path: Some(HostPathVolumeSource {
                            path: v.host_path.clone(),
                            type_: Some(v.kind.clone()),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        // Go's encoder writes the empty status struct as `status: {}`.
        status: Some(PodStatus::default()),
    }
}

/// The manifest file `/etc/kubernetes/manifests/<name>.yaml` (0600, as kubeadm writes it), in
/// the shape of the default Kubernetes minor. Prefer [`manifest_for`] with the cluster's version.
pub fn manifest(c: &Component) -> Result<HostFile> {
    manifest_for(c, KubeVersion::DEFAULT)
}

/// The manifest file `/etc/kubernetes/manifests/<name>.yaml` (0600), as kubeadm of `version`
/// writes it.
pub fn manifest_for(c: &Component, version: KubeVersion) -> Result<HostFile> {
    let what = format!("static pod {}", c.name);
    let mut value = to_value(&what, &pod_for(c, version))?;
    if PodStyle::for_version(version).null_creation_timestamp
        && let Some(meta) = value
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut)
    {
        meta.insert("creationTimestamp".into(), serde_json::Value::Null);
    }
    Ok(HostFile::with_mode(
        format!("{MANIFESTS_DIR}/{}.yaml", c.name),
        0o600,
        emit_yaml(&value),
    ))
}

fn to_value<T: Serialize>(what: &str, value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| RenderError::Serialize {
        what: what.to_string(),
        source: Box::new(e),
    })
}

/// YAML text of any serializable value in the style of Kubernetes' own encoder (go-yaml v2
/// behind `sigs.k8s.io/yaml`): what kubeadm writes for manifests, kubeconfigs and configs.
pub fn kube_yaml<T: Serialize>(what: &str, value: &T) -> Result<String> {
    Ok(emit_yaml(&to_value(what, value)?))
}

/// Emits a JSON value as go-yaml v2 would after `sigs.k8s.io/yaml`'s JSON round trip.
///
/// Not reproduced: go-yaml folds plain strings that contain spaces past column 80; no value
/// kubeha renders through this has such a string.
pub fn emit_yaml(value: &serde_json::Value) -> String {
    let mut out = String::new();
    match value {
        serde_json::Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0, false),
        serde_json::Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0, false),
        other => {
            write_inline(&mut out, other, 0);
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn is_block(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(m) => !m.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::String(s) => s.contains('\n') && literal_allowed(s),
        _ => false,
    }
}

/// A block mapping at `indent`; with `inline_first` the first key follows a `- ` already written.
fn write_map(
    out: &mut String,
    m: &serde_json::Map<String, serde_json::Value>,
    indent: usize,
    inline_first: bool,
) {
    let mut entries: Vec<_> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 || !inline_first {
            pad(out, indent);
        }
        out.push_str(&scalar_text(k));
        out.push(':');
        match v {
            serde_json::Value::Object(child) if !child.is_empty() => {
                out.push('\n');
                write_map(out, child, indent + 2, false);
            }
            serde_json::Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_seq(out, items, indent, false);
            }
            serde_json::Value::String(s) if is_block(v) => write_literal(out, s, indent + 2),
            other => {
                out.push(' ');
                write_inline(out, other, indent);
                out.push('\n');
            }
        }
    }
}

/// A block sequence whose dashes sit at `indent` (go-yaml does not indent a sequence under its key).
fn write_seq(out: &mut String, items: &[serde_json::Value], indent: usize, inline_first: bool) {
    for (i, v) in items.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(out, indent);
        }
        out.push_str("- ");
        match v {
            serde_json::Value::Object(child) if !child.is_empty() => {
                write_map(out, child, indent + 2, true)
            }
            serde_json::Value::Array(inner) if !inner.is_empty() => {
                write_seq(out, inner, indent + 2, true)
            }
            serde_json::Value::String(s) if is_block(v) => {
                // Drop the space after the dash: `-` then ` |`.
                out.pop();
                write_literal(out, s, indent + 2);
            }
            other => {
                write_inline(out, other, indent);
                out.push('\n');
            }
        }
    }
}

fn write_inline(out: &mut String, v: &serde_json::Value, _indent: usize) {
    match v {
        serde_json::Value::Null => out.push_str("null"),
        serde_json::Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        serde_json::Value::Number(n) => out.push_str(&n.to_string()),
        serde_json::Value::String(s) => out.push_str(&scalar_text(s)),
        serde_json::Value::Array(_) => out.push_str("[]"),
        serde_json::Value::Object(_) => out.push_str("{}"),
    }
}

/// ` |`, `|-` or `|+` and the lines of `s` at `indent` (the indicator follows the key or dash).
fn write_literal(out: &mut String, s: &str, indent: usize) {
    let trailing = s.len() - s.trim_end_matches('\n').len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let indicator = if s.starts_with(' ') { "2" } else { "" };
    out.push_str(&format!(" |{indicator}{chomp}\n"));
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// True when a multi-line string can be a literal block (no trailing spaces, only printable).
fn literal_allowed(s: &str) -> bool {
    s.chars().all(|c| c == '\n' || printable(c))
        && !s.split('\n').any(|l| l.ends_with(' '))
        && !s.contains(" \n")
}

/// libyaml's printable set (tab is not in it).
fn printable(c: char) -> bool {
    matches!(c as u32, 0x0A | 0x20..=0x7E | 0x85 | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
        && c != '\u{FEFF}'
}

/// A single-line scalar: plain when go-yaml would write it plain, else quoted as go-yaml would.
fn scalar_text(s: &str) -> String {
    if s.contains('\n') && literal_allowed(s) {
        // Only reachable for keys; go-yaml would also double-quote a multi-line key.
        return double_quoted(s);
    }
    if resolves_to_non_string(s) {
        return double_quoted(s);
    }
    match analyze(s) {
        Allowed::Plain => s.to_string(),
        Allowed::Single => format!("'{}'", s.replace('\'', "''")),
        Allowed::Double => double_quoted(s),
    }
}

enum Allowed {
    Plain,
    Single,
    Double,
}

/// libyaml's `yaml_emitter_analyze_scalar`, block context.
fn analyze(s: &str) -> Allowed {
    if s.is_empty() {
        return Allowed::Single;
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let mut special = false;
    let (mut leading_space, mut trailing_space, mut line_breaks) = (false, false, false);
    let mut preceded_by_ws = true;
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_by_ws = next.is_none_or(|n| n == ' ' || n == '\t' || n == '\n' || n == '\r');
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' if followed_by_ws => block_indicators = true,
                '-' if followed_by_ws => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => block_indicators = true,
                '#' if preceded_by_ws => block_indicators = true,
                _ => {}
            }
        }
        if !printable(c) {
            special = true;
        }
        if c == '\n' {
            line_breaks = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i + 1 == chars.len() {
                trailing_space = true;
            }
        }
        preceded_by_ws = c == ' ' || c == '\t' || c == '\n';
    }
    if special {
        return Allowed::Double;
    }
    if leading_space || trailing_space || line_breaks || block_indicators {
        return Allowed::Single;
    }
    Allowed::Plain
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0B' => out.push_str("\\v"),
            '\x0C' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\x1B' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{A0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if !printable(c) => {
                let n = c as u32;
                if n <= 0xFF {
                    out.push_str(&format!("\\x{n:02X}"));
                } else if n <= 0xFFFF {
                    out.push_str(&format!("\\u{n:04X}"));
                } else {
                    out.push_str(&format!("\\U{n:08X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// go-yaml v2's `resolve`: would this text, written plain, read back as null, bool, number,
/// timestamp or merge key? Such strings are double-quoted (`"0"`, `"true"`, `"1.2"`).
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true",
        "True", "TRUE", "n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE",
        ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let Some(first) = s.chars().next() else {
        return true;
    };
    if !(first.is_ascii_digit() || matches!(first, '+' | '-' | '.')) {
        return false;
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    is_go_int(&plain)
        || is_yaml_float(s)
        || is_base60_float(s)
        || (first.is_ascii_digit() && is_timestamp(s))
}

/// `strconv.ParseInt(s, 0, 64)` syntax (sign, then 0x / 0o / 0b / leading-0 octal / decimal).
fn is_go_int(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let all = |t: &str, f: fn(char) -> bool| !t.is_empty() && t.chars().all(f);
    if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        return all(h, |c| c.is_ascii_hexdigit());
    }
    if let Some(o) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
        return all(o, |c| ('0'..='7').contains(&c));
    }
    if let Some(b) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
        return all(b, |c| c == '0' || c == '1');
    }
    if body.len() > 1 && body.starts_with('0') {
        return all(body, |c| ('0'..='7').contains(&c));
    }
    all(body, |c| c.is_ascii_digit())
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$` (go-yaml quotes YAML 1.1 base-60 floats).
fn is_base60_float(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (main, frac) = match body.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (body, None),
    };
    if frac.is_some_and(|f| !f.chars().all(|c| c.is_ascii_digit() || c == '_')) {
        return false;
    }
    let mut parts = main.split(':');
    let head = parts.next().unwrap_or("");
    if !head.starts_with(|c: char| c.is_ascii_digit())
        || !head.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return false;
    }
    let mut groups = 0;
    for p in parts {
        let ok = match p.as_bytes() {
            [d] => d.is_ascii_digit(),
            [a, d] => (b'0'..=b'5').contains(a) && d.is_ascii_digit(),
            _ => false,
        };
        if !ok {
            return false;
        }
        groups += 1;
    }
    groups > 0
}

/// Starts like a YAML timestamp (`2006-1-2`, optionally followed by a time).
fn is_timestamp(s: &str) -> bool {
    let date = s.split(['T', 't', ' ']).next().unwrap_or("");
    let mut it = date.split('-');
    let (Some(y), Some(m), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return false;
    };
    let num = |t: &str, lo: usize, hi: usize| {
        t.len() >= lo && t.len() <= hi && t.chars().all(|c| c.is_ascii_digit())
    };
    num(y, 4, 4) && num(m, 1, 2) && num(d, 1, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe_component() -> Component {
        Component {
            name: "kube-scheduler".into(),
            image: "registry.k8s.io/kube-scheduler:v1.34.2".into(),
            command: vec!["kube-scheduler".into(), "--bind-address=127.0.0.1".into()],
            volumes: vec![HostVolume::new(
                "kubeconfig",
                "/etc/kubernetes/scheduler.conf",
                "FileOrCreate",
                true,
            )],
            probe: Some(ProbeTarget {
                host: Some("127.0.0.1".into()),
                port: 10259,
                scheme: "HTTPS",
                liveness_path: "/livez".into(),
                readiness_path: Some("/readyz".into()),
                startup_path: "/livez".into(),
            }),
            cpu_request: "100m",
            memory_request: None,
            annotations: BTreeMap::new(),
            tier: "control-plane",
        }
    }

    #[test]
    fn scalars_are_quoted_like_go_yaml() {
        let cases = [
            ("10.96.0.10", "10.96.0.10"),
            ("0", "\"0\""),
            ("0s", "0s"),
            ("true", "\"true\""),
            ("on", "\"on\""),
            ("n", "\"n\""),
            ("1.2", "\"1.2\""),
            ("3.10.1", "3.10.1"),
            ("", "\"\""),
            ("*,bootstrapsigner", "'*,bootstrapsigner'"),
            (
                "--controllers=*,bootstrapsigner,tokencleaner",
                "--controllers=*,bootstrapsigner,tokencleaner",
            ),
            ("a: b", "'a: b'"),
            ("x #y", "'x #y'"),
            ("- x", "'- x'"),
            ("12:30", "\"12:30\""),
            ("10.10.0.21:6443", "10.10.0.21:6443"),
            ("system:node:cp-1@ha", "system:node:cp-1@ha"),
            ("0x1F", "\"0x1F\""),
            ("2024-01-02", "\"2024-01-02\""),
            ("250m", "250m"),
            ("it's", "it's"),
            ("'q", "'''q'"),
            ("tab\there", "\"tab\\there\""),
        ];
        for (input, want) in cases {
            assert_eq!(scalar_text(input), want, "scalar {input:?}");
        }
    }

    #[test]
    fn layout_matches_kubernetes_encoder() {
        let v = serde_json::json!({
            "b": [{"y": 1, "x": ["p", "q"]}, "s"],
            "a": {"z": {}, "w": []},
            "c": [["n1", "n2"]],
            "d": "line1\nline2\n",
        });
        let want = "a:\n  w: []\n  z: {}\nb:\n- x:\n  - p\n  - q\n  \"y\": 1\n- s\nc:\n- - n1\n  - n2\nd: |\n  line1\n  line2\n";
        assert_eq!(emit_yaml(&v), want);
    }

    #[test]
    fn emitted_yaml_reads_back_identically() {
        let v = serde_json::json!({"a": ["0", "true", "", "x: y", "#c", "10.0.0.1", 5, null, false, "multi\nline"], "b": {"k": "v"}});
        let text = emit_yaml(&v);
        let back: serde_json::Value = serde_saphyr::from_str(&text).expect("parse back");
        assert_eq!(back, v, "{text}");
    }

    #[test]
    fn v134_probes_use_named_port_and_no_creation_timestamp() {
        let c = probe_component();
        let new = manifest_for(
            &c,
            KubeVersion {
                major: 1,
                minor: 34,
                patch: 2,
            },
        )
        .expect("manifest");
        assert!(new.content.contains("port: probe-port"), "{}", new.content);
        assert!(new.content.contains(
            "ports:\n    - containerPort: 10259\n      name: probe-port\n      protocol: TCP\n"
        ));
        assert!(!new.content.contains("creationTimestamp"));
        assert!(new.content.ends_with("status: {}\n"));
        let old = manifest_for(
            &c,
            KubeVersion {
                major: 1,
                minor: 32,
                patch: 0,
            },
        )
        .expect("manifest");
        assert!(old.content.contains("port: 10259"));
        assert!(!old.content.contains("probe-port"));
        assert!(old.content.contains("  creationTimestamp: null\n"));
        let v133 = manifest_for(
            &c,
            KubeVersion {
                major: 1,
                minor: 33,
                patch: 0,
            },
        )
        .expect("manifest");
        assert!(!v133.content.contains("creationTimestamp"));
        assert_eq!(new.mode, 0o600);
        assert_eq!(new.path, "/etc/kubernetes/manifests/kube-scheduler.yaml");
    }

    #[test]
    fn flags_sort_by_name() {
        let flags = BTreeMap::from([
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
        ]);
        assert_eq!(sorted_flags(&flags), ["--a=1", "--b=2"]);
    }
}
