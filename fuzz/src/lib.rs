//! The fuzzed path, shared by the libFuzzer target (`fuzz_targets/cluster_file.rs`, nightly)
//! and the corpus replay in the CLI tests (stable): cluster-file bytes → parse → validate →
//! render, all in memory.
//!
//! Rendering needs PKI material, and issuing ~40 keys per input would cost milliseconds:
//! one set is issued once for a small fixed cluster, and every leaf the fuzzed cluster asks
//! for gets a copy of the same certificate and key. Rendering only embeds them, so every
//! renderer runs; certificate issuance itself is not fuzzed.
//!
//! Beyond "no panic", the checks are promises the CLI relies on: a refused file has at least
//! one error, every problem points inside the text at a character boundary (the CLI slices
//! the source there to show it), and every rendered host file has an absolute path.

use std::{path::Path, sync::OnceLock};

use kubeha_pki::Materials;
use kubeha_spec::{Problem, Severity, SpecError};

/// How far an input got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    NotUtf8,
    /// Not YAML of the cluster file's shape.
    Syntax,
    /// YAML of the right shape with inconsistent values.
    Invalid,
    /// Valid, and rendering refused it with an error.
    RenderError,
    /// Valid and rendered.
    Rendered,
}

/// Runs `data` through parse, validation and rendering; panics when a promise is broken.
pub fn check_cluster_file(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::NotUtf8;
    };
    match kubeha_spec::load_str(text, Path::new("fuzz.yaml")) {
        Ok(loaded) => {
            assert!(
                loaded
                    .warnings
                    .iter()
                    .all(|p| p.severity == Severity::Warning),
                "an accepted file carries an error: {:?}",
                loaded.warnings
            );
            check_places(text, &loaded.warnings);
            let materials = materials_for(&loaded.spec);
            match kubeha_render::render(&loaded.spec, &materials) {
                Ok(rendered) => {
                    for host in &rendered.hosts {
                        for f in &host.files {
                            assert!(f.path.starts_with('/'), "{}: {}", host.node, f.path);
                        }
                    }
                    Outcome::Rendered
                }
                Err(_) => Outcome::RenderError,
            }
        }
        Err(SpecError::Invalid { problems, .. }) => {
            assert!(
                problems.iter().any(|p| p.severity == Severity::Error),
                "refused without an error: {problems:?}"
            );
            check_places(text, &problems);
            Outcome::Invalid
        }
        Err(SpecError::Read { path, .. }) => {
            panic!("parsing text read a file: {}", path.display())
        }
        Err(SpecError::Syntax { offset, .. }) => {
            if let Some(offset) = offset {
                check_offset(text, offset);
            }
            Outcome::Syntax
        }
        #[allow(unreachable_patterns)]
        Err(_) => Outcome::Syntax,
    }
}

fn check_offset(text: &str, offset: usize) {
    assert!(
        offset <= text.len() && text.is_char_boundary(offset),
        "offset {offset} is not a character boundary of a {}-byte text",
        text.len()
    );
}

fn check_places(text: &str, problems: &[Problem]) {
    // YAML breaks lines at "\r\n", "\n" and a lone "\r" (`str::lines` does not know the
    // last): line numbers in messages count the way the parser does.
    let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() as u64 + 1;
    for p in problems {
        assert!(!p.field.is_empty(), "problem without a field: {p:?}");
        assert!(p.line <= lines, "line {} of {lines}: {p:?}", p.line);
        if let Some(offset) = p.offset {
            check_offset(text, offset);
        }
    }
}

/// A small valid cluster, issued once.
const FIXED: &str = "\
name: fuzz
controlPlaneEndpoint: 10.1.0.100:6443
networking: { nodeCidr: 10.1.0.0/24, podCidr: 10.244.0.0/16, serviceCidr: 10.96.0.0/16 }
loadBalancer: { vip: 10.1.0.100 }
certificates: { keyAlgorithm: ecdsa-p256 }
nodes:
  - { name: e1, address: 10.1.0.11, roles: [etcd] }
  - { name: lb1, address: 10.1.0.101, roles: [lb] }
  - { name: cp1, address: 10.1.0.21, roles: [control-plane] }
";

fn fixed() -> &'static Materials {
    static FIXED_MATERIALS: OnceLock<Materials> = OnceLock::new();
    FIXED_MATERIALS.get_or_init(|| {
        let spec = kubeha_spec::load_str(FIXED, Path::new("fixed.yaml"))
            .expect("the fixed cluster is valid")
            .spec;
        let now = time::OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("a date");
        kubeha_pki::issue_in_memory(&spec, now).expect("issuing the fixed PKI")
    })
}

/// The fixed CAs and secrets, and for every leaf `spec` needs a copy of one fixed leaf.
fn materials_for(spec: &kubeha_spec::Spec) -> Materials {
    let base = fixed();
    let pair = base
        .leaves
        .values()
        .next()
        .expect("the fixed PKI has leaves")
        .clone();
    Materials {
        cas: base.cas.clone(),
        leaves: kubeha_pki::leaf_ids(spec)
            .into_iter()
            .map(|id| (id, pair.clone()))
            .collect(),
        service_account: base.service_account.clone(),
        secrets: base.secrets.clone(),
    }
}
