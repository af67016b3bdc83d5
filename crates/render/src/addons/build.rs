//! Small object builders the add-on modules share.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{EnvVar, EnvVarSource, HostPathVolumeSource, ObjectFieldSelector, Volume},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

/// A label (or annotation) map from pairs; `Some` even when empty.
pub(crate) fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    )
}

/// Name, namespace and labels; no `labels` key at all when there are none.
pub(crate) fn meta(name: &str, namespace: Option<&str>, pairs: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_string),
        labels: if pairs.is_empty() {
            None
        } else {
            labels(pairs)
        },
        ..Default::default()
    }
}

/// A literal environment variable.
pub(crate) fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// An environment variable from the pod's own fields (downward API).
pub(crate) fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A hostPath volume.
pub(crate) fn host_path(name: &str, path: &str, type_: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: type_.map(str::to_string),
        }),
        ..Default::default()
    }
}
