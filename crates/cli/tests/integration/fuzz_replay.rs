//! The fuzz target's function (`fuzz/src/lib.rs`: parse → validate → render) run on stable
//! over the committed seed corpus, so that CI exercises the fuzzed path without nightly. A
//! crash input the fuzzer finds goes into `fuzz/seeds/cluster_file/` with its fix, and this
//! replay keeps it fixed.

use std::{fs, path::Path};

#[path = "../../../../fuzz/src/lib.rs"]
mod cluster_file;

use cluster_file::{Outcome, check_cluster_file};

/// Every file of `fuzz/seeds/cluster_file/`, sorted, with its outcome.
fn replay() -> Vec<(String, Outcome)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/cluster_file");
    let mut files: Vec<_> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, check_cluster_file(&fs::read(&p).expect("read")))
        })
        .collect()
}

#[test]
fn seed_corpus_replays_and_the_examples_render() {
    let seen = replay();
    assert!(seen.len() >= 6, "{seen:?}");
    for example in ["external-etcd.yaml", "lab.yaml", "stacked.yaml"] {
        assert!(
            seen.contains(&(example.to_string(), Outcome::Rendered)),
            "{example}: {seen:?}"
        );
    }
    assert!(seen.contains(&("invalid-values.yaml".into(), Outcome::Invalid)));
    assert!(seen.contains(&("truncated.yaml".into(), Outcome::Syntax)));
    // Found by the fuzzer: lone "\r" line breaks, which YAML counts as lines (the replay's
    // own line check was wrong, not kubeha).
    assert!(seen.contains(&("lone-carriage-returns.yaml".into(), Outcome::Invalid)));
    // Issue 13 (A2): issuing this one panicked; validation now refuses it.
    assert!(seen.contains(&("validity-8000y.yaml".into(), Outcome::Invalid)));
}
