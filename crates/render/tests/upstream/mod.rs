//! Where `scripts/upstream` put the etcd and Kubernetes binaries it built from their Go
//! modules, found by the script's own convention: `$KUBEHA_UPSTREAM_CACHE` (default
//! `/var/cache/kubeha/upstream`) / `<set>-<version>-<first 12 hex of sha256(go.sum)>` / `bin`,
//! complete only with its `complete` marker. The go.sum is the one compiled into the test,
//! so a build from other pins or other dependencies is never used by mistake.

#![allow(dead_code)] // each test file uses part of it

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

pub const VERSIONS: &str = include_str!("../../../../upstream/versions.env");

/// A set of binaries built from one wrapper module.
#[derive(Debug, Clone, Copy)]
pub struct Set {
    /// The name `scripts/upstream` takes.
    pub name: &'static str,
    /// The versions.env key holding its version.
    pub key: &'static str,
    /// Prefix of the cache directory, before the version (`etcd-`v3.6.4).
    pub prefix: &'static str,
    pub go_sum: &'static [u8],
    pub binaries: &'static [&'static str],
}

pub const ETCD: Set = Set {
    name: "etcd",
    key: "ETCD",
    prefix: "etcd-",
    go_sum: include_bytes!("../../../../upstream/etcd-v3.6/go.sum"),
    binaries: &["etcd", "etcdctl", "etcdutl"],
};

const KUBERNETES_BINARIES: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubeadm",
    "kubectl",
];

pub const KUBERNETES_V1_34: Set = Set {
    name: "kubernetes-v1.34",
    key: "KUBERNETES_V1_34",
    prefix: "kubernetes-",
    go_sum: include_bytes!("../../../../upstream/kubernetes-v1.34/go.sum"),
    binaries: KUBERNETES_BINARIES,
};

pub const KUBERNETES_V1_33: Set = Set {
    name: "kubernetes-v1.33",
    key: "KUBERNETES_V1_33",
    prefix: "kubernetes-",
    go_sum: include_bytes!("../../../../upstream/kubernetes-v1.33/go.sum"),
    binaries: KUBERNETES_BINARIES,
};

/// versions.env as `scripts/upstream` reads it.
pub fn pins() -> BTreeMap<&'static str, &'static str> {
    VERSIONS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect()
}

pub fn pin(key: &str) -> &'static str {
    match pins().get(key) {
        Some(v) if !v.is_empty() => v,
        _ => panic!("upstream/versions.env has no {key}"),
    }
}

fn cache_root() -> PathBuf {
    std::env::var_os("KUBEHA_UPSTREAM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kubeha/upstream"))
}

impl Set {
    /// The release as the script spells it in directory names (`v3.6.4`, `v1.34.2`).
    pub fn version(&self) -> String {
        let v = pin(self.key);
        if v.starts_with('v') {
            v.to_string()
        } else {
            format!("v{v}")
        }
    }

    pub fn dir(&self) -> PathBuf {
        let sum = hex::encode(Sha256::digest(self.go_sum));
        cache_root().join(format!("{}{}-{}", self.prefix, self.version(), &sum[..12]))
    }

    /// The set's `bin/` directory; fails the test, saying what to run, when it was not built.
    pub fn bin_dir(&self) -> PathBuf {
        let dir = self.dir();
        if !dir.join("complete").is_file() {
            panic!(
                "{} {} is not built (no {}): run `scripts/upstream {}` first",
                self.name,
                self.version(),
                dir.join("complete").display(),
                self.name
            );
        }
        dir.join("bin")
    }

    pub fn binary(&self, name: &str) -> PathBuf {
        assert!(
            self.binaries.contains(&name),
            "{name} is not in {}",
            self.name
        );
        let path = self.bin_dir().join(name);
        assert!(
            is_executable(&path),
            "{} is missing although the build is marked complete: run `scripts/upstream {}`",
            path.display(),
            self.name
        );
        path
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// What `scripts/upstream images` hashes into the name of its output directory, in its order
/// (the script's `image_inputs`), with the files compiled into the test.
const IMAGE_INPUTS: &[(&str, &[u8])] = &[
    (
        "scripts/upstream",
        include_bytes!("../../../../scripts/upstream"),
    ),
    ("upstream/versions.env", VERSIONS.as_bytes()),
    ("upstream/etcd-v3.6/go.sum", ETCD.go_sum),
    ("upstream/kubernetes-v1.34/go.sum", KUBERNETES_V1_34.go_sum),
    (
        "upstream/ocimage/go.mod",
        include_bytes!("../../../../upstream/ocimage/go.mod"),
    ),
    (
        "upstream/ocimage/main.go",
        include_bytes!("../../../../upstream/ocimage/main.go"),
    ),
    (
        "upstream/pause/go.mod",
        include_bytes!("../../../../upstream/pause/go.mod"),
    ),
    (
        "upstream/pause/main.go",
        include_bytes!("../../../../upstream/pause/main.go"),
    ),
];

/// `images-<key>`: the key is the first 12 hex digits of the sha256 of `sha256sum`'s output
/// over [`IMAGE_INPUTS`], so archives built from other binaries or another builder are never
/// taken for these.
pub fn images_dir() -> PathBuf {
    let listing: String = IMAGE_INPUTS
        .iter()
        .map(|(path, bytes)| format!("{}  {path}\n", hex::encode(Sha256::digest(bytes))))
        .collect();
    let key = hex::encode(Sha256::digest(listing.as_bytes()));
    cache_root().join(format!("images-{}", &key[..12]))
}

/// One archive of `scripts/upstream images`, from its `images.txt`.
#[derive(Debug, Clone)]
pub struct ImageArchive {
    pub path: PathBuf,
    pub image: String,
    /// The manifest digest the builder printed.
    pub digest: String,
    pub bytes: u64,
}

/// Every archive of the complete image set; fails the test, saying what to run, when the
/// set was not built (or not completely).
pub fn image_archives() -> Vec<ImageArchive> {
    let dir = images_dir();
    let run = "run `scripts/upstream images` first";
    if !dir.join("complete").is_file() {
        panic!(
            "the image archives are not built (no {}): {run}",
            dir.join("complete").display()
        );
    }
    let list = std::fs::read_to_string(dir.join("images.txt"))
        .unwrap_or_else(|e| panic!("{}/images.txt: {e}: {run}", dir.display()));
    let archives: Vec<ImageArchive> = list
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [file, image, digest, bytes] = f[..] else {
                panic!("images.txt: bad line {line:?}: {run}");
            };
            let bytes = bytes
                .parse()
                .unwrap_or_else(|e| panic!("images.txt: size {bytes:?}: {e}"));
            let path = dir.join(file);
            let on_disk = path.metadata().map(|m| m.len()).unwrap_or(0);
            assert_eq!(on_disk, bytes, "{} is not as built: {run}", path.display());
            ImageArchive {
                path,
                image: image.to_string(),
                digest: digest.to_string(),
                bytes,
            }
        })
        .collect();
    assert!(
        !archives.is_empty(),
        "{}/images.txt is empty: {run}",
        dir.display()
    );
    archives
}
