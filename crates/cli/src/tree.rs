//! Writing a rendered cluster to a directory, replaced as a whole so that a reader never
//! sees half of one render and half of another.
//!
//! Layout: `<out>/<node>/<absolute path on the host>`, `<out>/_operator/…`,
//! `<out>/_provision/<node>/…`, `<out>/_cluster/NN-<bundle>.yaml`, and `<out>/manifest.json` listing mode, owner, size and
//! sha256 of every file. The manifest also marks the directory as kubeha's, so that a
//! directory holding anything else is never replaced.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use kubeha_render::{HostFile, Rendered};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::CliError;

const MARKER: &str = "kubeha-render/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub cluster: String,
    pub hosts: BTreeMap<String, HostEntry>,
    pub operator: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub services: Vec<String>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub mode: String,
    pub owner: String,
    pub size: usize,
    pub sha256: String,
    pub sensitive: bool,
}

impl FileEntry {
    fn of(f: &HostFile) -> Self {
        FileEntry {
            path: f.path.clone(),
            mode: format!("{:04o}", f.mode),
            owner: f.owner.clone(),
            size: f.content.len(),
            sha256: hex::encode(Sha256::digest(f.content.as_bytes())),
            sensitive: f.sensitive,
        }
    }
}

/// The manifest describing a render, without writing anything.
pub fn manifest(cluster: &str, r: &Rendered) -> Manifest {
    Manifest {
        format: MARKER.into(),
        cluster: cluster.into(),
        hosts: r
            .hosts
            .iter()
            .map(|h| {
                (
                    h.node.clone(),
                    HostEntry {
                        services: h.services.clone(),
                        files: h.files.iter().map(FileEntry::of).collect(),
                    },
                )
            })
            .collect(),
        operator: r.operator.iter().map(FileEntry::of).collect(),
    }
}

/// What [`write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The directory already held exactly this render; nothing was written.
    Unchanged,
    Written,
}

fn host_path(out: &Path, node: &str, abs: &str) -> PathBuf {
    out.join(node).join(abs.trim_start_matches('/'))
}

/// True when `out` holds exactly the files `m` describes.
fn matches_on_disk(out: &Path, m: &Manifest) -> bool {
    let Ok(old) = fs::read(out.join("manifest.json")) else {
        return false;
    };
    let Ok(old) = serde_json::from_slice::<Manifest>(&old) else {
        return false;
    };
    if old != *m {
        return false;
    }
    let check = |p: PathBuf, e: &FileEntry| -> bool {
        match fs::read(&p) {
            Ok(b) => b.len() == e.size && hex::encode(Sha256::digest(&b)) == e.sha256,
            Err(_) => false,
        }
    };
    m.hosts.iter().all(|(node, h)| {
        h.files
            .iter()
            .all(|e| check(host_path(out, node, &e.path), e))
    }) && m.operator.iter().all(|e| check(out.join(&e.path), e))
}

fn write_file(path: &Path, f: &HostFile) -> Result<(), CliError> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(CliError::io("create directory", dir))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(f.mode)
        .open(path)
        .map_err(CliError::io("create", path))?;
    file.write_all(f.content.as_bytes())
        .map_err(CliError::io("write", path))?;
    // The umask may have cleared bits the host file needs (e.g. 0755 scripts).
    fs::set_permissions(path, fs::Permissions::from_mode(f.mode))
        .map_err(CliError::io("set permissions on", path))?;
    Ok(())
}

/// Refuses an output directory kubeha must not replace: one that exists, is not empty and
/// holds no earlier kubeha render. `kubeha render` asks this before issuing anything.
pub fn check_target(out: &Path) -> Result<(), CliError> {
    if out.exists() && !out.is_dir() {
        return Err(CliError::Input {
            message: format!("{} exists and is not a directory", out.display()),
            help: "name an empty or new directory with --out".into(),
        });
    }
    if out.exists() && !is_ours(out) && !is_empty(out)? {
        return Err(CliError::Input {
            message: format!("{} exists and is not an earlier kubeha render", out.display()),
            help: "name an empty or new directory with --out; kubeha replaces its output directory as a whole".into(),
        });
    }
    Ok(())
}

fn is_ours(out: &Path) -> bool {
    fs::read(out.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        .is_some_and(|old| old.format == MARKER)
}

fn is_empty(out: &Path) -> Result<bool, CliError> {
    Ok(fs::read_dir(out)
        .map_err(CliError::io("read", out))?
        .next()
        .is_none())
}

/// Writes the render to `out`, replacing an earlier render there as a whole.
pub fn write(out: &Path, cluster: &str, r: &Rendered) -> Result<(Manifest, Outcome), CliError> {
    let m = manifest(cluster, r);
    check_target(out)?;
    if is_ours(out) && matches_on_disk(out, &m) {
        return Ok((m, Outcome::Unchanged));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let staging = parent.join(format!(".{name}.kubeha-new-{}", std::process::id()));
    let retired = parent.join(format!(".{name}.kubeha-old-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&staging)
        .map_err(CliError::io("create directory", &staging))?;
    let result = (|| {
        for h in &r.hosts {
            for f in &h.files {
                write_file(&host_path(&staging, &h.node, &f.path), f)?;
            }
        }
        for f in &r.operator {
            write_file(&staging.join(&f.path), f)?;
        }
        let mut json = serde_json::to_string_pretty(&m).map_err(|e| CliError::Input {
            message: format!("cannot encode manifest: {e}"),
            help: String::new(),
        })?;
        json.push('\n');
        write_file(
            &staging.join("manifest.json"),
            &HostFile::public("manifest.json", json),
        )?;
        if out.exists() {
            fs::rename(out, &retired).map_err(CliError::io("move aside", out))?;
        }
        fs::rename(&staging, out).map_err(CliError::io("move into place", out))?;
        let _ = fs::remove_dir_all(&retired);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
        if !out.exists() && retired.exists() {
            let _ = fs::rename(&retired, out);
        }
    }
    result.map(|()| (m, Outcome::Written))
}
