//! Records the git commit the binary is built from (`kubeha version`), as `KUBEHA_COMMIT`.
//!
//! Never fails the build: outside a git checkout, or without `git`, the commit is
//! "unknown". Cargo reruns this script when HEAD moves (a checkout or a new commit), and
//! only then.

// Cargo reads a build script's stdout to its end: `println!` is how it is spoken to.
#![allow(clippy::disallowed_macros)]

use std::{path::PathBuf, process::Command};

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KUBEHA_COMMIT={commit}");
    // A path that does not exist would make cargo rerun this script on every build.
    let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]).map(PathBuf::from) else {
        return;
    };
    let head = git_dir.join("HEAD");
    if head.is_file() {
        println!("cargo:rerun-if-changed={}", head.display());
    }
    let reference = std::fs::read_to_string(&head).ok();
    if let Some(name) = reference
        .as_deref()
        .and_then(|h| h.trim().strip_prefix("ref: "))
    {
        for path in [git_dir.join(name), git_dir.join("packed-refs")] {
            if path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
