use predicates::prelude::*;

use crate::harness::Sandbox;

#[test]
fn valid_example_summarises_the_cluster() {
    let sb = Sandbox::new();
    sb.example("external-etcd.yaml", false);
    sb.kubeha()
        .args(["validate", "-f", "external-etcd.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("https://10.10.0.100:6443"))
        .stdout(predicate::str::contains("up to 256 nodes, 6 used"))
        .stdout(predicate::str::contains("ext-etcd-1"));
}

#[test]
fn json_output_is_data() {
    let sb = Sandbox::new();
    sb.example("stacked.yaml", false);
    let out = sb
        .kubeha()
        .args(["validate", "-f", "stacked.yaml", "-o", "json"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], true);
    assert_eq!(v["spec"]["topology"], "stacked");
    assert_eq!(v["capacity"]["etcdMembers"], 3);
}

#[test]
fn invalid_file_exits_2_and_points_at_the_line() {
    let sb = Sandbox::new();
    let text = std::fs::read_to_string(sb.example("external-etcd.yaml", false)).expect("read");
    sb.write(
        "bad.yaml",
        &text.replace("serviceCidr: 10.96.0.0/16", "serviceCidr: 10.244.0.0/20"),
    );
    sb.kubeha()
        .args(["validate", "-f", "bad.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("networking.serviceCidr"))
        .stderr(predicate::str::contains("overlaps pod CIDR"))
        .stderr(predicate::str::contains("line 18"))
        .stderr(predicate::str::contains("nothing was written"));
    let out = sb
        .kubeha()
        .args(["validate", "-f", "bad.yaml", "-o", "json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["field"], "networking.serviceCidr");
    assert_eq!(v["problems"][0]["line"], 18);
}

#[test]
fn unknown_field_exits_2_with_its_line() {
    let sb = Sandbox::new();
    sb.write("c.yaml", "name: x\nnodez: []\n");
    sb.kubeha()
        .args(["validate", "-f", "c.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nodez"))
        .stderr(predicate::str::contains("line 2"));
}

#[test]
fn missing_file_says_how_to_start() {
    let sb = Sandbox::new();
    sb.kubeha()
        .arg("validate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("kubeha init"));
}

/// Issue 13 (A3): `validate -o json` printed nothing on stdout for a file that does not
/// parse, a missing or binary file; every failure now prints `{"problems": [...]}` whose
/// entries carry field, line, column, message, help and severity.
#[test]
fn json_output_lists_the_problems_of_every_kind_of_bad_file() {
    let sb = Sandbox::new();
    let good = std::fs::read_to_string(sb.example("stacked.yaml", false)).expect("read");
    sb.write("malformed.yaml", "name: x\nnodes: [\n  - { name: a\n");
    sb.write("unknown.yaml", "name: x\nnodez: []\n");
    sb.write(
        "wrong-type.yaml",
        &good.replace("name: stacked", "name: [stacked]"),
    );
    sb.write("duplicate.yaml", &format!("{good}name: again\n"));
    std::fs::write(sb.path().join("binary.yaml"), b"\x00\xff\xfe\x01name").expect("write");
    sb.write(
        "invalid.yaml",
        &good.replace("serviceCidr: 10.96.0.0/12", "serviceCidr: 10.244.0.0/20"),
    );
    for (file, min_problems) in [
        ("malformed.yaml", 1),
        ("unknown.yaml", 1),
        ("wrong-type.yaml", 1),
        ("duplicate.yaml", 1),
        ("binary.yaml", 1),
        ("missing.yaml", 1),
        ("invalid.yaml", 1),
    ] {
        let out = sb
            .kubeha()
            .args(["validate", "-f", file, "-o", "json"])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{file}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{file}: stdout is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(v["valid"], false, "{file}");
        let problems = v["problems"].as_array().expect("problems is a list");
        assert!(problems.len() >= min_problems, "{file}: {v:#}");
        for p in problems {
            for key in ["field", "line", "column", "message", "help", "severity"] {
                assert!(p.get(key).is_some(), "{file}: no {key} in {p}");
            }
            assert!(
                p["help"].as_str().is_some_and(|h| !h.is_empty()),
                "{file}: {p}"
            );
        }
        assert!(
            problems.iter().any(|p| p["severity"] == "error"),
            "{file}: {v:#}"
        );
        // YAML says the same.
        let out = sb
            .kubeha()
            .args(["validate", "-f", file, "-o", "yaml"])
            .output()
            .expect("run");
        let y: serde_json::Value = serde_saphyr::from_slice(&out.stdout).expect("yaml");
        assert_eq!(y["problems"], v["problems"], "{file}");
    }
    let line = |file: &str| {
        let out = sb
            .kubeha()
            .args(["validate", "-f", file, "-o", "json"])
            .output()
            .expect("run");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        (
            v["problems"][0]["line"].as_u64(),
            v["problems"][0]["message"].clone(),
        )
    };
    assert_eq!(line("unknown.yaml").0, Some(2), "the unknown field's line");
    let (l, msg) = line("missing.yaml");
    assert_eq!(l, Some(0));
    assert!(
        msg.as_str().is_some_and(|m| m.contains("missing.yaml")),
        "{msg}"
    );
}

/// Issue 13 (A3): a valid file says `"problems": []`, not `null` and not nothing.
#[test]
fn json_output_of_a_valid_file_has_an_empty_problem_list() {
    let sb = Sandbox::new();
    sb.example("external-etcd.yaml", false);
    let out = sb
        .kubeha()
        .args(["validate", "-f", "external-etcd.yaml", "-o", "json"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let keys = crate::readonly::top_level_keys(&out.stdout);
    assert_eq!(
        keys.iter().filter(|k| *k == "problems").count(),
        1,
        "{keys:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(v["valid"], true);
}

/// Issue 13 (A2): `validity: 8000y` passed validation, then panicked while issuing and left
/// a state dir behind. Now it is refused on its field and line, before anything is written.
#[test]
fn a_validity_beyond_what_x509_can_date_is_refused_on_its_line() {
    let sb = Sandbox::new();
    let good = std::fs::read_to_string(sb.example("stacked.yaml", true)).expect("read");
    assert!(
        good.contains("certificates:\n"),
        "the example has a certificates block"
    );
    sb.write(
        "long.yaml",
        &good.replace("certificates:\n", "certificates:\n  validity: 8000y\n"),
    );
    let line = good
        .lines()
        .position(|l| l == "certificates:")
        .expect("certificates line") as u64
        + 2;
    for cmd in ["validate", "render"] {
        let out = sb
            .kubeha()
            .args([cmd, "-f", "long.yaml", "-o", "json"])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("certificates.validity"), "{err}");
        assert!(err.contains("100y"), "names the maximum: {err}");
        assert!(err.contains(&format!("line {line}")), "{err}");
    }
    assert!(!sb.path().join(".kubeha").exists(), "nothing written");
    assert!(!sb.path().join("out").exists(), "nothing written");
}
