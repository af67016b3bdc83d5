//! The lab's SSH identities, kept between labs: each host's sshd host keys live in lab state
//! next to the lab key, so a host that `lab up` re-creates presents the key `kubeha up`
//! pinned on first contact. A host whose keys were removed from lab state gets new ones and
//! is refused by `kubeha up`, like any machine whose identity changed.
//!
//! | what | where |
//! |---|---|
//! | host keys of a lab | `<lab key dir>/lab-hostkeys/<cluster>/` (0700) |
//! | one host's keys | `…/<cluster>/<node>/ssh_host_<type>_key[.pub]` (dir 0700, files 0600) |
//!
//! Where keys live ([`host_keys_dir`], [`ensure_host_keys`]) and putting them into a host
//! ([`install_host_keys`], which only needs the host's `/etc`) are separate, so a host built
//! another way (a container's root file system) takes the same keys.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use kubeha_spec::Spec;
use serde::Serialize;

use crate::{LabError, cmd};

/// Host key types a lab host's sshd serves (each a `HostKey` line of its config).
pub const HOST_KEY_TYPES: &[&str] = &["ed25519"];

/// Directory next to the lab key that holds every lab's host keys.
pub const HOST_KEYS_DIR: &str = "lab-hostkeys";

/// Comment `lab up` gives the lab keys it generates; only such a key is ever purged.
pub const LAB_KEY_COMMENT: &str = "kubeha-lab";

/// File name of a host key of `key_type` (as in a host's `/etc/ssh`).
pub fn host_key_file(key_type: &str) -> String {
    format!("ssh_host_{key_type}_key")
}

/// `<lab key dir>/lab-hostkeys/<cluster>`: the host keys of one lab.
pub fn lab_host_keys_dir(lab_key: &Path, cluster: &str) -> PathBuf {
    lab_key
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .join(HOST_KEYS_DIR)
        .join(cluster)
}

/// `<lab key dir>/lab-hostkeys/<cluster>/<node>`: the host keys of one lab host.
pub fn host_keys_dir(lab_key: &Path, cluster: &str, node: &str) -> PathBuf {
    lab_host_keys_dir(lab_key, cluster).join(node)
}

/// Makes sure `dir` holds a complete key pair of every [`HOST_KEY_TYPES`] for `node`: a
/// missing one is taken from `current_etc` (the `/etc` of the host as it runs now, so that
/// its identity is kept) or else generated. Returns what was generated or taken, as
/// (key type, `"generated"` or `"taken from the running host"`).
pub fn ensure_host_keys(
    dir: &Path,
    node: &str,
    current_etc: Option<&Path>,
) -> Result<Vec<(&'static str, &'static str)>, LabError> {
    make_private_dirs(dir)?;
    let mut done = Vec::new();
    for &t in HOST_KEY_TYPES {
        let private = dir.join(host_key_file(t));
        let public = dir.join(format!("{}.pub", host_key_file(t)));
        if private.is_file() {
            if !public.is_file() {
                let derived = derive_public(&private)?;
                write_atomic(&public, derived.as_bytes(), 0o600)?;
            }
            continue;
        }
        let current = current_etc
            .map(|etc| etc.join("ssh").join(host_key_file(t)))
            .filter(|p| p.is_file());
        if let Some(current) = current {
            let key = fs::read(&current).map_err(LabError::io("read", &current))?;
            let public_line = derive_public(&current)?;
            // The public half first: a private key present means a complete pair.
            write_atomic(&public, public_line.as_bytes(), 0o600)?;
            write_atomic(&private, &key, 0o600)?;
            done.push((t, "taken from the running host"));
        } else {
            generate(dir, t, node)?;
            done.push((t, "generated"));
        }
    }
    sync_dir(dir)?;
    Ok(done)
}

/// Copies the host keys in `dir` into `<etc>/ssh/` (private 0600, public 0644, each written
/// atomically). `etc` is the host's `/etc` as seen from this machine.
pub fn install_host_keys(dir: &Path, etc: &Path) -> Result<(), LabError> {
    let ssh = etc.join("ssh");
    fs::create_dir_all(&ssh).map_err(LabError::io("create directory", &ssh))?;
    for &t in HOST_KEY_TYPES {
        for (name, mode) in [
            (host_key_file(t), 0o600),
            (format!("{}.pub", host_key_file(t)), 0o644),
        ] {
            let src = dir.join(&name);
            let bytes = fs::read(&src).map_err(LabError::io("read", &src))?;
            write_atomic(&ssh.join(&name), &bytes, mode)?;
        }
    }
    sync_dir(&ssh)
}

/// A lab's keys in lab state, as `lab down` leaves them and `lab down --purge` removes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabKeys {
    /// `<lab key dir>/lab-hostkeys/<cluster>` directories that exist.
    pub host_keys: Vec<PathBuf>,
    /// Lab keys (private key paths) that `lab up` made and no other lab's hosts use.
    pub lab_keys: Vec<PathBuf>,
    /// Lab keys that stay even with `--purge`, with the reason.
    pub shared: Vec<(PathBuf, String)>,
}

impl LabKeys {
    /// Whether there is anything to remove.
    pub fn is_empty(&self) -> bool {
        self.host_keys.is_empty() && self.lab_keys.is_empty()
    }
}

/// The keys `spec`'s lab keeps in lab state. Reads only.
pub fn lab_keys(spec: &Spec) -> LabKeys {
    let mut out = LabKeys::default();
    let mut seen = std::collections::BTreeSet::new();
    for n in &spec.nodes {
        let Some(key) = n.ssh.key.as_deref().filter(|k| !k.is_empty()) else {
            continue;
        };
        let key = crate::hosts::expand_key(key);
        if !seen.insert(key.clone()) {
            continue;
        }
        let hk = lab_host_keys_dir(&key, &spec.name);
        if hk.is_dir() {
            out.host_keys.push(hk.clone());
        }
        if !key.exists() {
            continue;
        }
        let pub_path = PathBuf::from(format!("{}.pub", key.display()));
        let made_by_lab = fs::read_to_string(&pub_path).is_ok_and(|s| {
            s.split_whitespace()
                .nth(2)
                .is_some_and(|c| c == LAB_KEY_COMMENT)
        });
        if !made_by_lab {
            out.shared.push((
                key,
                format!(
                    "not made by `kubeha lab up` (its .pub lacks the comment '{LAB_KEY_COMMENT} …')"
                ),
            ));
            continue;
        }
        let others: Vec<String> = hk
            .parent()
            .and_then(|p| fs::read_dir(p).ok())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|c| *c != spec.name)
            .collect();
        if others.is_empty() {
            out.lab_keys.push(key);
        } else {
            out.shared
                .push((key, format!("the labs of {} use it too", others.join(", "))));
        }
    }
    out
}

/// Removes what [`lab_keys`] found: each lab's host key directory, each lab key with its
/// `.pub`, and a `lab-hostkeys` directory left empty. Returns the paths removed.
pub fn purge_keys(keys: &LabKeys) -> Result<Vec<PathBuf>, LabError> {
    let mut removed = Vec::new();
    for dir in &keys.host_keys {
        match fs::remove_dir_all(dir) {
            Ok(()) => removed.push(dir.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io("remove", dir.as_path())(e)),
        }
        // `lab-hostkeys` itself goes once no lab's keys are left in it.
        if let Some(root) = dir.parent()
            && fs::remove_dir(root).is_ok()
        {
            removed.push(root.to_path_buf());
        }
    }
    for key in &keys.lab_keys {
        for p in [key.clone(), PathBuf::from(format!("{}.pub", key.display()))] {
            match fs::remove_file(&p) {
                Ok(()) => removed.push(p),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LabError::io("remove", p)(e)),
            }
        }
    }
    Ok(removed)
}

/// `ssh-keygen` into a private scratch dir inside `dir`, then both halves renamed into place
/// (public first): a crash leaves either no private key (regenerated next time) or a pair.
fn generate(dir: &Path, key_type: &str, node: &str) -> Result<(), LabError> {
    let scratch = dir.join(format!(".new-{key_type}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    make_private_dirs(&scratch)?;
    let result = (|| {
        let tmp = scratch.join("key");
        let tmp_s = tmp.to_string_lossy().into_owned();
        let comment = format!("root@{node}");
        cmd::run(
            &[
                "ssh-keygen",
                "-q",
                "-t",
                key_type,
                "-N",
                "",
                "-C",
                &comment,
                "-f",
                &tmp_s,
            ],
            &format!("{node}: generate the sshd host key ({key_type})"),
        )?;
        let tmp_pub = scratch.join("key.pub");
        for p in [&tmp, &tmp_pub] {
            set_mode(p, 0o600)?;
            fs::File::open(p)
                .and_then(|f| f.sync_all())
                .map_err(LabError::io("sync", p.as_path()))?;
        }
        let public = dir.join(format!("{}.pub", host_key_file(key_type)));
        let private = dir.join(host_key_file(key_type));
        fs::rename(&tmp_pub, &public).map_err(LabError::io("rename into place", &public))?;
        fs::rename(&tmp, &private).map_err(LabError::io("rename into place", &private))?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// The public key line of a private key file.
fn derive_public(private: &Path) -> Result<String, LabError> {
    let p = private.to_string_lossy();
    let line = cmd::run(
        &["ssh-keygen", "-y", "-f", &p],
        &format!("derive the public key of {p}"),
    )?;
    Ok(format!("{}\n", line.trim()))
}

/// Creates `dir` and any missing parents 0700 (existing parents are left as they are), and
/// makes `dir` itself 0700.
fn make_private_dirs(dir: &Path) -> Result<(), LabError> {
    let mut missing = Vec::new();
    let mut p = dir;
    while !p.as_os_str().is_empty() && !p.exists() {
        missing.push(p);
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(LabError::io("create directory", d)(e)),
        }
    }
    set_mode(dir, 0o700)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(LabError::io("set permissions of", path))
}

/// Temp file in the same directory (created with `mode`, never wider), fsync, rename.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LabError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(LabError::io("write", path)(e));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), LabError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(LabError::io("sync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_ssh_keygen() -> bool {
        std::process::Command::new("ssh-keygen")
            .arg("-?")
            .output()
            .is_ok()
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn paths_sit_next_to_the_lab_key() {
        let key = Path::new(".kubeha/lab-key");
        assert_eq!(
            host_keys_dir(key, "lab", "cp-1"),
            Path::new(".kubeha/lab-hostkeys/lab/cp-1")
        );
        assert_eq!(
            lab_host_keys_dir(Path::new("lab-key"), "x"),
            Path::new("lab-hostkeys/x")
        );
        assert_eq!(host_key_file("ed25519"), "ssh_host_ed25519_key");
    }

    #[test]
    fn keys_are_generated_once_private_and_installed_as_they_are() {
        if !have_ssh_keygen() {
            eprintln!("skipping: ssh-keygen (openssh-client) is not installed");
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let key = tmp.path().join("state/lab-key");
        let dir = host_keys_dir(&key, "c", "n1");
        let made = ensure_host_keys(&dir, "n1", None).expect("generate");
        assert_eq!(made, vec![("ed25519", "generated")]);
        let private = dir.join("ssh_host_ed25519_key");
        let public = dir.join("ssh_host_ed25519_key.pub");
        let first = fs::read(&private).expect("private");
        for d in [
            tmp.path().join("state/lab-hostkeys"),
            tmp.path().join("state/lab-hostkeys/c"),
            dir.clone(),
        ] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&public), 0o600);
        // No scratch left behind.
        let names: Vec<String> = fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        // Again: nothing new; a lost .pub is derived from the private key.
        let pub_text = fs::read_to_string(&public).expect("pub");
        fs::remove_file(&public).expect("rm pub");
        assert!(
            ensure_host_keys(&dir, "n1", None)
                .expect("again")
                .is_empty()
        );
        assert_eq!(fs::read(&private).expect("private"), first);
        let derived = fs::read_to_string(&public).expect("pub");
        assert_eq!(
            derived.split_whitespace().take(2).collect::<Vec<_>>(),
            pub_text.split_whitespace().take(2).collect::<Vec<_>>()
        );

        // Installed into a host's /etc byte for byte, with sshd's modes.
        let etc = tmp.path().join("host/etc");
        install_host_keys(&dir, &etc).expect("install");
        let installed = etc.join("ssh/ssh_host_ed25519_key");
        assert_eq!(fs::read(&installed).expect("installed"), first);
        assert_eq!(mode(&installed), 0o600);
        assert_eq!(mode(&etc.join("ssh/ssh_host_ed25519_key.pub")), 0o644);

        // Removed by hand: a new identity, and a host that already runs keeps its own.
        fs::remove_dir_all(&dir).expect("rm");
        ensure_host_keys(&dir, "n1", None).expect("regenerate");
        assert_ne!(fs::read(&private).expect("private"), first);
        fs::remove_dir_all(&dir).expect("rm");
        let made = ensure_host_keys(&dir, "n1", Some(&etc)).expect("adopt");
        assert_eq!(made, vec![("ed25519", "taken from the running host")]);
        assert_eq!(fs::read(&private).expect("private"), first);
        assert_eq!(mode(&private), 0o600);
    }

    #[test]
    fn purge_takes_only_this_labs_keys_and_a_lab_key_nobody_else_uses() {
        let tmp = tempfile::tempdir().expect("tmp");
        let key = tmp.path().join("lab-key");
        let yaml = |name: &str| {
            format!(
                "name: {name}\nkubernetesVersion: v1.34.2\ntopology: stacked\n\
                 controlPlaneEndpoint: 198.18.9.11:6443\n\
                 ssh: {{ user: root, key: {} }}\n\
                 networking: {{ nodeCidr: 198.18.9.0/24 }}\n\
                 nodes:\n  - {{ name: a, address: 198.18.9.11, roles: [control-plane, etcd] }}\n",
                key.display()
            )
        };
        let spec = |name: &str| {
            kubeha_spec::load_str(&yaml(name), Path::new("t.yaml"))
                .expect("valid")
                .spec
        };
        let (one, two) = (spec("one"), spec("two"));
        fs::write(&key, "private").expect("key");
        fs::write(
            format!("{}.pub", key.display()),
            format!("ssh-ed25519 AAAA {LAB_KEY_COMMENT} one\n"),
        )
        .expect("pub");
        for c in ["one", "two"] {
            fs::create_dir_all(host_keys_dir(&key, c, "a")).expect("dir");
        }
        // Another lab still uses the key: only this lab's host keys go.
        let k = lab_keys(&one);
        assert_eq!(k.host_keys, vec![lab_host_keys_dir(&key, "one")]);
        assert!(k.lab_keys.is_empty());
        assert!(k.shared[0].1.contains("two"), "{k:?}");
        purge_keys(&k).expect("purge");
        assert!(!lab_host_keys_dir(&key, "one").exists());
        assert!(lab_host_keys_dir(&key, "two").exists() && key.exists());
        // The last lab: its host keys, the lab key and the empty lab-hostkeys dir go.
        let k = lab_keys(&two);
        assert_eq!(k.lab_keys, vec![key.clone()]);
        let removed = purge_keys(&k).expect("purge");
        assert_eq!(removed.len(), 4, "{removed:?}");
        assert!(!key.exists() && !tmp.path().join(HOST_KEYS_DIR).exists());

        // A key the lab did not make (a user's own) is never removed.
        fs::write(&key, "private").expect("key");
        fs::write(
            format!("{}.pub", key.display()),
            "ssh-ed25519 AAAA me@laptop\n",
        )
        .expect("pub");
        let k = lab_keys(&one);
        assert!(k.lab_keys.is_empty() && k.is_empty());
        assert!(k.shared[0].1.contains("not made"), "{k:?}");
    }
}
