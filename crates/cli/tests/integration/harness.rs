//! A per-test working directory and a builder for the freshly built `kubeha` binary.

use std::{
    fs,
    path::{Path, PathBuf},
};

use assert_cmd::Command;

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `kubeha` run inside the sandbox, with environment overrides cleared.
    pub fn kubeha(&self) -> Command {
        let mut c = Command::cargo_bin("kubeha").expect("binary");
        c.current_dir(self.path())
            .env_remove("KUBEHA_FILE")
            .env_remove("KUBEHA_STATE_DIR")
            .env_remove("KUBEHA_CA_PASSPHRASE")
            .env("NO_COLOR", "1");
        c
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        fs::write(&p, text).expect("write");
        p
    }

    /// Copies a shipped example into the sandbox, optionally switching to ECDSA for speed.
    pub fn example(&self, name: &str, ecdsa: bool) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name);
        let mut text = fs::read_to_string(src).expect("example");
        if ecdsa {
            text = text.replace("keyAlgorithm: rsa-2048", "keyAlgorithm: ecdsa-p256");
        }
        self.write(name, &text)
    }
}

/// Every regular file under `dir` with its bytes, for before/after comparisons.
pub fn snapshot_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let md = fs::symlink_metadata(&p).expect("metadata");
            if md.is_dir() {
                stack.push(p);
            } else if md.is_file() {
                if p.file_name().is_some_and(|n| n == "lock") {
                    continue;
                }
                out.push((
                    p.clone(),
                    fs::read(&p).expect("read"),
                    md.permissions().mode() & 0o7777,
                ));
            }
        }
    }
    out.sort();
    out
}
