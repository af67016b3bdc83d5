//! `kubeha kubeconfig`: printing, and merging into a kubeconfig with kubectl as the judge.
//!
//! Every run gets `HOME` inside the sandbox and no `KUBECONFIG`, so the real `~/.kube/config`
//! is never read or written. kubectl only reads files here (`config view`), never a server.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::harness::Sandbox;

const KUBECTL: &str = "/usr/bin/kubectl";

/// A kubeconfig with two unrelated clusters, users and contexts, and keys kubeha does not know.
const TWO_CONTEXTS: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.example.invalid:6443
    certificate-authority-data: Q0E=
    tls-server-name: api.prod
    extensions:
    - name: note
      extension:
        owner: "0123"
- name: dev
  cluster:
    server: https://dev.example.invalid:443
    insecure-skip-tls-verify: true
    proxy-url: socks5://localhost:1080
contexts:
- name: prod
  context: {cluster: prod, user: prod, namespace: web}
- name: dev
  context: {cluster: dev, user: dev}
users:
- name: prod
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: ["eks", "get-token", "--cluster-name", "yes"]
      env:
      - name: AWS_PROFILE
        value: "true"
      interactiveMode: Never
- name: dev
  user:
    token: "12345"
current-context: dev
preferences: {}
"#;

const CONTEXT: &str = "stacked-admin@stacked";

fn home(sb: &Sandbox) -> PathBuf {
    let h = sb.path().join("home");
    fs::create_dir_all(&h).expect("home");
    h
}

/// `kubeha` with `HOME` in the sandbox and no `KUBECONFIG`.
fn kubeha(sb: &Sandbox) -> assert_cmd::Command {
    let mut c = sb.kubeha();
    c.env("HOME", home(sb)).env_remove("KUBECONFIG");
    c
}

/// The stacked example with its state dir: `kubeconfig` only reads credentials `render`
/// (or `up`) issued, and refuses without them.
fn with_state(sb: &Sandbox) {
    sb.example("stacked.yaml", true);
    kubeha(sb)
        .args(["render", "-f", "stacked.yaml", "--out", "issued"])
        .assert()
        .success();
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `kubectl config view --raw -o json` of one file (file-only: no server is contacted).
fn view(sb: &Sandbox, file: &Path) -> Value {
    let out = Command::new(KUBECTL)
        .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
        .arg(file)
        .env("HOME", home(sb))
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl config view {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("kubectl json")
}

/// The entry of `list` (`clusters`, `users`, `contexts`) named `name`.
fn entry<'a>(v: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    v[list].as_array()?.iter().find(|e| e["name"] == name)
}

fn backups(dir: &Path, file: &str) -> Vec<PathBuf> {
    let prefix = format!("{file}.kubeha-backup-");
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect();
    v.sort();
    v
}

/// stderr with miette's wrapping undone: one space between words.
fn flat(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn merge(sb: &Sandbox, extra: &[&str]) -> std::process::Output {
    kubeha(sb)
        .args(["kubeconfig", "-f", "stacked.yaml", "--merge"])
        .args(extra)
        .output()
        .expect("run")
}

#[test]
fn printed_kubeconfig_is_the_rendered_one_and_warns_about_the_key() {
    let sb = Sandbox::new();
    with_state(&sb);
    let out = kubeha(&sb)
        .args(["kubeconfig", "-f", "stacked.yaml"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("private key"),
        "warns on stderr"
    );
    kubeha(&sb)
        .args(["render", "-f", "stacked.yaml", "--out", "out"])
        .assert()
        .success();
    let rendered = fs::read(sb.path().join("out/_operator/admin.kubeconfig")).expect("rendered");
    assert_eq!(out.stdout, rendered, "byte for byte what `render` writes");
    let file = sb.write("printed.conf", &String::from_utf8_lossy(&out.stdout));
    let v = view(&sb, &file);
    assert_eq!(v["current-context"], CONTEXT);
    assert_eq!(
        entry(&v, "clusters", "stacked").expect("cluster")["cluster"]["server"],
        "https://10.20.0.100:6443"
    );
    assert!(entry(&v, "users", "stacked-admin").is_some());
    assert!(
        !home(&sb).join(".kube").exists(),
        "printing writes no kubeconfig"
    );
}

#[test]
fn merge_into_home_config_keeps_other_contexts_and_backs_up() {
    let sb = Sandbox::new();
    with_state(&sb);
    let kube = home(&sb).join(".kube");
    fs::create_dir_all(&kube).expect("mkdir");
    let config = kube.join("config");
    fs::write(&config, TWO_CONTEXTS).expect("write");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).expect("chmod");
    let before = view(&sb, &config);

    // No --into, no KUBECONFIG: ~/.kube/config.
    let out = merge(&sb, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "cluster stacked added, user stacked-admin added, context stacked-admin@stacked added"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("kubectl config use-context stacked-admin@stacked"),
        "{stdout}"
    );

    let after = view(&sb, &config);
    for (list, name) in [
        ("clusters", "prod"),
        ("clusters", "dev"),
        ("users", "prod"),
        ("users", "dev"),
        ("contexts", "prod"),
        ("contexts", "dev"),
    ] {
        assert_eq!(
            entry(&after, list, name),
            entry(&before, list, name),
            "{list} {name} untouched"
        );
    }
    assert_eq!(after["preferences"], before["preferences"]);
    assert_eq!(
        after["current-context"], "dev",
        "the file had a current context: kept"
    );
    let ctx = entry(&after, "contexts", CONTEXT).expect("kubeha's context");
    assert_eq!(ctx["context"]["cluster"], "stacked");
    assert_eq!(ctx["context"]["user"], "stacked-admin");
    assert_eq!(
        entry(&after, "clusters", "stacked").expect("cluster")["cluster"]["server"],
        "https://10.20.0.100:6443"
    );
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(after[list].as_array().map(Vec::len), Some(3), "{list}");
    }

    // kubectl resolves the new context to working credentials.
    let minify = Command::new(KUBECTL)
        .args([
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "json",
            "--context",
            CONTEXT,
            "--kubeconfig",
        ])
        .arg(&config)
        .env("HOME", home(&sb))
        .output()
        .expect("kubectl");
    assert!(
        minify.status.success(),
        "{}",
        String::from_utf8_lossy(&minify.stderr)
    );
    let m: Value = serde_json::from_slice(&minify.stdout).expect("json");
    assert!(
        m["users"][0]["user"]["client-key-data"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );

    assert_eq!(mode(&config), 0o600);
    let b = backups(&kube, "config");
    assert_eq!(b.len(), 1, "one backup: {b:?}");
    assert_eq!(
        fs::read_to_string(&b[0]).expect("backup"),
        TWO_CONTEXTS,
        "the backup is the previous file"
    );
    assert_eq!(mode(&b[0]), 0o600);
    let leftovers: Vec<_> = fs::read_dir(&kube)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lock") || n.contains(".kubeha-") && !n.contains("backup"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no lock or temp file left: {leftovers:?}"
    );
}

#[test]
fn re_merge_is_a_no_op() {
    let sb = Sandbox::new();
    with_state(&sb);
    let file = sb.write("config", TWO_CONTEXTS);
    assert!(merge(&sb, &["--into", "config"]).status.success());
    let bytes = fs::read(&file).expect("read");
    let mtime = fs::metadata(&file)
        .and_then(|m| m.modified())
        .expect("mtime");
    let out = merge(&sb, &["--into", "config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already up to date"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(fs::read(&file).expect("read"), bytes);
    assert_eq!(
        fs::metadata(&file)
            .and_then(|m| m.modified())
            .expect("mtime"),
        mtime,
        "not rewritten"
    );
    assert_eq!(
        backups(sb.path(), "config").len(),
        1,
        "no backup for a no-op"
    );
    let json = merge(&sb, &["--into", "config", "-o", "json"]);
    let v: Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["upToDate"], true);
}

#[test]
fn same_names_of_another_cluster_are_refused_and_the_file_is_unchanged() {
    let sb = Sandbox::new();
    with_state(&sb);
    let file = sb.write("config", TWO_CONTEXTS);
    assert!(merge(&sb, &["--into", "config"]).status.success());
    let bytes = fs::read(&file).expect("read");

    // Same cluster file, another state dir: same names and server, another CA.
    kubeha(&sb)
        .args(["--state-dir", "other-state", "render", "-f", "stacked.yaml"])
        .args(["--out", "other-out"])
        .assert()
        .success();
    let out = kubeha(&sb)
        .args([
            "--state-dir",
            "other-state",
            "kubeconfig",
            "-f",
            "stacked.yaml",
            "--merge",
            "--into",
            "config",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "refused as invalid input");
    let err = flat(&out.stderr);
    assert!(err.contains("cluster \"stacked\""), "{err}");
    assert!(err.contains("another CA"), "{err}");
    assert!(err.contains("user \"stacked-admin\""), "{err}");
    assert!(
        err.contains("kubectl config delete-cluster stacked --kubeconfig config"),
        "{err}"
    );
    assert!(err.contains("`name:` in stacked.yaml"), "{err}");
    assert_eq!(
        fs::read(&file).expect("read"),
        bytes,
        "the file is unchanged"
    );
    assert_eq!(
        backups(sb.path(), "config").len(),
        1,
        "no backup for a refused merge"
    );
    assert!(!sb.path().join("config.lock").exists());

    // A hand-written entry of the same name pointing elsewhere.
    let clash = TWO_CONTEXTS.replace("- name: dev\n  cluster:", "- name: stacked\n  cluster:");
    let file = sb.write("clash", &clash);
    let out = merge(&sb, &["--into", "clash"]);
    assert_eq!(out.status.code(), Some(2));
    let err = flat(&out.stderr);
    assert!(
        err.contains("cluster \"stacked\" points to server \"https://dev.example.invalid:443\""),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&file).expect("read"), clash);
    assert!(backups(sb.path(), "clash").is_empty());
}

#[test]
fn into_a_new_file_in_a_new_directory() {
    let sb = Sandbox::new();
    with_state(&sb);
    let target = sb.path().join("new/dir/kubeconfig");
    let out = kubeha(&sb)
        // --into wins over KUBECONFIG; --into alone implies --merge.
        .env("KUBECONFIG", sb.path().join("ignored"))
        .args(["kubeconfig", "-f", "stacked.yaml", "--into"])
        .arg(&target)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("current context: stacked-admin@stacked (the file had none)")
    );
    assert_eq!(mode(&target), 0o600);
    assert_eq!(mode(&sb.path().join("new")), 0o700);
    assert_eq!(mode(&sb.path().join("new/dir")), 0o700);
    assert!(
        backups(&sb.path().join("new/dir"), "kubeconfig").is_empty(),
        "nothing to back up"
    );
    assert!(!sb.path().join("ignored").exists());
    let v = view(&sb, &target);
    assert_eq!(v["current-context"], CONTEXT);
    assert!(entry(&v, "users", "stacked-admin").is_some());
}

#[test]
fn first_path_of_kubeconfig_env_and_home_default() {
    let sb = Sandbox::new();
    with_state(&sb);
    let first = sb.path().join("first");
    let second = sb.write("second", TWO_CONTEXTS);
    let list = std::env::join_paths([first.as_path(), second.as_path()]).expect("join");
    let out = kubeha(&sb)
        .env("KUBECONFIG", &list)
        .args(["kubeconfig", "-f", "stacked.yaml", "--merge"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(first.is_file(), "written to the first path");
    assert_eq!(
        fs::read_to_string(&second).expect("read"),
        TWO_CONTEXTS,
        "other paths untouched"
    );

    // No KUBECONFIG: ~/.kube/config, with ~/.kube created 0700.
    assert!(merge(&sb, &[]).status.success());
    let kube = home(&sb).join(".kube");
    assert_eq!(mode(&kube), 0o700);
    assert_eq!(mode(&kube.join("config")), 0o600);
    assert_eq!(view(&sb, &kube.join("config"))["current-context"], CONTEXT);
}

#[test]
fn a_renewed_admin_certificate_updates_the_user_entry() {
    let sb = Sandbox::new();
    with_state(&sb);
    let file = sb.write("config", TWO_CONTEXTS);
    assert!(merge(&sb, &["--into", "config"]).status.success());
    let old = view(&sb, &file);
    // Lose the operator's admin certificate: `render` issues a new one from the same CA
    // (`kubeconfig` itself only reads, and refuses while it is missing).
    let state = sb.path().join(".kubeha");
    let leaf: Vec<PathBuf> = crate::harness::snapshot_dir(&state)
        .into_iter()
        .map(|(p, _, _)| p)
        .filter(|p| p.to_string_lossy().contains("operator/admin.conf."))
        .collect();
    assert!(!leaf.is_empty(), "operator admin leaf in the state dir");
    for p in &leaf {
        fs::remove_file(p).expect("remove");
    }
    let refused = merge(&sb, &["--into", "config"]);
    assert_eq!(refused.status.code(), Some(1), "the leaf cannot be read");
    assert!(
        flat(&refused.stderr).contains("operator/admin.conf.crt"),
        "{}",
        flat(&refused.stderr)
    );
    assert!(
        leaf.iter().all(|p| !p.exists()),
        "kubeconfig issued nothing"
    );
    assert_eq!(
        backups(sb.path(), "config").len(),
        1,
        "the file was not touched"
    );
    kubeha(&sb)
        .args(["render", "-f", "stacked.yaml", "--out", "issued"])
        .assert()
        .success();
    let out = merge(&sb, &["--into", "config", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["user"]["change"], "updated");
    assert_eq!(v["cluster"]["change"], "unchanged");
    assert_eq!(v["context"]["change"], "unchanged");
    let new = view(&sb, &file);
    let cert = |v: &Value| {
        entry(v, "users", "stacked-admin").expect("user")["user"]["client-certificate-data"].clone()
    };
    assert_ne!(cert(&new), cert(&old));
    assert_eq!(entry(&new, "users", "prod"), entry(&old, "users", "prod"));
    assert_eq!(backups(sb.path(), "config").len(), 2);
}
