//! The shipped examples load without errors.
use std::path::Path;

#[test]
fn shipped_examples_load() {
    for f in ["external-etcd.yaml", "stacked.yaml"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(f);
        let l = kubeha_spec::load(&p).unwrap_or_else(|e| panic!("{f}: {e:?}"));
        assert!(l.warnings.is_empty(), "{f}: {:?}", l.warnings);
    }
}
