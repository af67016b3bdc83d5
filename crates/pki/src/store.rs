//! The state directory: the cluster's PKI memory between runs.
//!
//! Default location `./.kubeha/<cluster>/`. Layout (format version [`STATE_VERSION`]):
//!
//! ```text
//! <cluster>/                       0700
//!   lock                           held (flock) while a kubeha run uses the dir
//!   secrets.json                   0600  generated once: {"version":1,"keepalivedAuth":"…"},
//!                                        plus the bootstrap token, renewed when it nears expiry
//!   pki/                           0700
//!     index.json                   0600  format version + a fingerprint per issued leaf
//!     ca.crt  ca.key               Kubernetes CA   (ca.key.age when passphrase-encrypted)
//!     front-proxy-ca.crt  front-proxy-ca.key      (…key.age)
//!     etcd/ca.crt  etcd/ca.key                    (…key.age)
//!     sa.key  sa.pub               service-account key pair (sa.pub written 0600, as kubeadm)
//!     nodes/<node>/<base>.crt|.key leaves; <base> is LeafKind::base(): apiserver,
//!                                  etcd/server, admin.conf, kubelet.conf, …
//!     operator/admin.conf.crt|.key the operator's own admin client certificate
//! ```
//!
//! Certificates are 0644, keys, the index and secrets 0600, directories 0700. Every write is
//! atomic (temp file + fsync + rename + directory fsync). [`Store::ensure`] reads and checks
//! everything first and writes only when all of it is sound: a corrupt file is an error that
//! names it, never a silent regeneration, and a CA is never replaced.
//!
//! `index.json` only caches what each leaf certifies: when it is lost, each leaf on disk that
//! verifies against its CA and key and certifies exactly what the spec asks for is recorded
//! again (reported in [`IssueReport::index_rebuilt`]), instead of re-issuing every leaf and
//! redeploying every host. A key or `secrets.json` that others could read is set back to 0600
//! and named in [`IssueReport::modes_corrected`].
//!
//! CA keys may be encrypted at rest with a passphrase (age, scrypt recipient), stored as
//! `<base>.key.age` and readable with the `age`/`rage` CLI in an emergency. When a passphrase is
//! given and a CA key is still plain, `ensure` encrypts it (writes `.key.age`, then removes the
//! plain `.key`). Once a key is encrypted, every run needs the passphrase. The service-account
//! key and leaf keys stay plain (0600): hosts need them as they are.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration as StdDuration, Instant},
};

use kubeha_spec::Spec;
use rayon::prelude::*;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::{
    check,
    error::{CA_ADVICE, INDEX_ADVICE, LEAF_ADVICE, PkiError, SA_ADVICE, SECRETS_ADVICE},
    ids::{CaId, LeafId, LeafKind},
    issue::{self, Signer},
    keys::{self, Key},
    materials::{BootstrapToken, CertPair, Materials, Secrets},
    profile::{LeafProfile, leaf_profiles},
};

/// On-disk format version written to `pki/index.json` and `secrets.json`.
pub const STATE_VERSION: u32 = 1;

/// A leaf expiring within this window is re-issued.
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// How long [`open`] waits for another run to release the lock.
const LOCK_WAIT: StdDuration = StdDuration::from_secs(2);

/// scrypt work factor (N = 2^16, 64 MiB) for new encrypted CA keys: ~0.2 s per key in a
/// release build; the three CA keys are decrypted in parallel on every run.
pub const DEFAULT_SCRYPT_LOG_N: u8 = 16;

/// Accepted scrypt work factor when decrypting (age's CLI defaults to ~1 s, N ≈ 2^18–2^20).
const MAX_SCRYPT_LOG_N: u8 = 22;

const MODE_DIR: u32 = 0o700;
const MODE_CERT: u32 = 0o644;
const MODE_SECRET: u32 = 0o600;

/// How to open the state dir.
#[derive(Default)]
pub struct StoreOptions {
    /// Passphrase protecting CA keys at rest; `None` keeps them plain (0600).
    pub passphrase: Option<SecretString>,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// An open, locked state directory. The lock is released when the `Store` is dropped.
pub struct Store {
    dir: PathBuf,
    _lock: File,
    opts: StoreOptions,
    /// Built on first use: age calibrates scrypt when making these.
    identity: OnceLock<age::scrypt::Identity>,
    recipient: OnceLock<age::scrypt::Recipient>,
    scrypt_log_n: u8,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Why a leaf was (re-)issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueReason {
    /// Nothing was there.
    New,
    /// Its subject, SANs, usages, key algorithm, validity or issuing CA changed (or the index
    /// has no record of them).
    Changed,
    /// It expires within [`RENEW_BEFORE`].
    Expiring,
    /// Only one of certificate and key was there.
    Incomplete,
    /// Asked for (`kubeha certs renew`).
    Forced,
}

/// What [`Store::ensure`] did: for progress output, logs and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueReport {
    pub cas_created: Vec<CaId>,
    pub cas_reused: Vec<CaId>,
    /// Plain CA keys encrypted with the passphrase during this run.
    pub cas_encrypted: Vec<CaId>,
    /// CAs whose certificate expires within [`RENEW_BEFORE`]; kubeha never renews a CA itself.
    pub cas_expiring: Vec<CaId>,
    /// Leaves (re-)issued in this run, and why.
    pub issued: Vec<(LeafId, IssueReason)>,
    /// How many leaves were kept as they were.
    pub reused: usize,
    /// Leaves in state the spec no longer asks for (a removed node); kept, not deleted.
    pub stale: Vec<LeafId>,
    pub service_account_created: bool,
    pub secrets_created: bool,
    /// A new bootstrap token was made: none was recorded, or the recorded one expires within
    /// [`BootstrapToken::RENEW_BEFORE`].
    pub bootstrap_token_issued: bool,
    /// Private keys generated in this run (CAs, leaves, service account).
    pub keys_generated: usize,
    /// Files written, plus plain CA keys removed after encryption.
    pub files_written: Vec<PathBuf>,
    /// Leaves kept although `index.json` had no record of them (it was deleted or lost): the
    /// certificate on disk verified against its CA and key and certifies exactly what the
    /// spec asks for, so its record was rebuilt instead of re-issuing it.
    pub index_rebuilt: Vec<LeafId>,
    /// Private files (keys, secrets) that others could read, set back to 0600: each path
    /// with the mode it had.
    pub modes_corrected: Vec<(PathBuf, u32)>,
}

impl IssueReport {
    /// True when the run changed nothing on disk.
    pub fn is_noop(&self) -> bool {
        self.files_written.is_empty() && self.modes_corrected.is_empty()
    }

    /// What the operator should hear about beyond the counts: corrected file modes (each
    /// file named) and a rebuilt index.
    pub fn notices(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .modes_corrected
            .iter()
            .map(|(path, mode)| {
                format!(
                    "{} had mode {mode:04o}, readable by others; set it to 0600 (check who could read it)",
                    path.display()
                )
            })
            .collect();
        if !self.index_rebuilt.is_empty() {
            out.push(format!(
                "the certificate index had no record of {} certificate(s); rebuilt it from the certificates on disk (each verified against its CA, key and the cluster file)",
                self.index_rebuilt.len()
            ));
        }
        out
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    version: u32,
    /// Keyed by the leaf's display name (`cp-1/apiserver`, `operator/admin.conf`).
    leaves: BTreeMap<String, IndexEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    node: Option<String>,
    kind: LeafKind,
    fingerprint: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretsFile {
    version: u32,
    keepalived_auth: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etcd_cluster_token: Option<String>,
    /// Absent in state dirs written before kubeha made tokens; `ensure` then adds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bootstrap_token: Option<TokenFile>,
}

impl SecretsFile {
    fn new(secrets: &Secrets) -> Self {
        SecretsFile {
            version: STATE_VERSION,
            keepalived_auth: secrets.keepalived_auth.clone(),
            etcd_cluster_token: secrets.etcd_cluster_token.clone(),
            bootstrap_token: secrets.bootstrap_token.as_ref().map(|t| TokenFile {
                id: t.id.clone(),
                secret: t.secret.clone(),
                expires: t.expires.clone(),
            }),
        }
    }
}

/// The bootstrap token in `secrets.json`; a malformed one makes the file corrupt.
#[derive(Serialize, Deserialize)]
#[serde(try_from = "RawTokenFile")]
struct TokenFile {
    id: String,
    secret: String,
    expires: String,
}

#[derive(Deserialize)]
struct RawTokenFile {
    id: String,
    secret: String,
    expires: String,
}

impl TryFrom<RawTokenFile> for TokenFile {
    type Error = &'static str;

    fn try_from(raw: RawTokenFile) -> Result<Self, Self::Error> {
        let token = BootstrapToken {
            id: raw.id,
            secret: raw.secret,
            expires: raw.expires,
        };
        if !token.is_well_formed() {
            return Err(
                "bootstrapToken must hold id [a-z0-9]{6}, secret [a-z0-9]{16} and expires YYYY-MM-DDThh:mm:ssZ",
            );
        }
        Ok(TokenFile {
            id: token.id,
            secret: token.secret,
            expires: token.expires,
        })
    }
}

/// Opens (creating if needed) the state dir `<state_root>/<cluster>` and takes its lock.
///
/// Fails with [`PkiError::Locked`] if another run holds the lock for more than ~2 s.
pub fn open(state_root: &Path, cluster: &str, opts: StoreOptions) -> Result<Store, PkiError> {
    if !is_safe_name(cluster) {
        return Err(PkiError::InvalidName {
            what: "cluster name",
            name: cluster.to_string(),
        });
    }
    let dir = state_root.join(cluster);
    create_dirs(&dir)?;
    let lock_path = dir.join("lock");
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(MODE_SECRET)
        .open(&lock_path)
        .map_err(|source| PkiError::Write {
            path: lock_path.clone(),
            source,
        })?;
    let start = Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(StdDuration::from_millis(100));
            }
            Err(fs::TryLockError::WouldBlock) => return Err(PkiError::Locked { path: lock_path }),
            Err(fs::TryLockError::Error(source)) => {
                return Err(PkiError::Write {
                    path: lock_path,
                    source,
                });
            }
        }
    }
    Ok(Store {
        dir,
        _lock: lock,
        opts,
        identity: OnceLock::new(),
        recipient: OnceLock::new(),
        scrypt_log_n: DEFAULT_SCRYPT_LOG_N,
    })
}

/// A path component that stays inside its parent.
fn is_safe_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0'])
}

/// Creates `dir` and missing parents at 0700, fsyncing each parent so a new directory
/// survives a crash together with the files written into it.
fn create_dirs(dir: &Path) -> Result<(), PkiError> {
    create_dirs_with(dir, true)
}

/// [`create_dirs`], leaving the fsync of parents to the caller when `sync` is false (a
/// batch that ends with `syncfs`).
fn create_dirs_with(dir: &Path, sync: bool) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    };
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        create_dirs_with(parent, sync)?;
    }
    match fs::DirBuilder::new().mode(MODE_DIR).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(err(e)),
    }
    if !sync {
        return Ok(());
    }
    let parent = parent.unwrap_or(Path::new("."));
    File::open(parent).and_then(|d| d.sync_all()).map_err(err)
}

/// `Ok(None)` when the file does not exist.
fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, PkiError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Atomically replaces `path` with `bytes` (temp + fsync + rename + dir fsync) at `mode`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        create_dirs(parent)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(mode);
    atomicwrites::AtomicFile::new(path, atomicwrites::OverwriteBehavior::AllowOverwrite)
        .write_with_options(|f| f.write_all(bytes), options)
        .map_err(|e| match e {
            atomicwrites::Error::Internal(e) | atomicwrites::Error::User(e) => err(e),
        })?;
    // The temp file's mode is subject to the umask; make the final mode exact.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)
}

/// Many files made durable together: every file is written to a temp name beside its
/// target, one `syncfs` makes them durable, then each is renamed into place (in the order
/// given: the index last) and a second `syncfs` makes the renames durable. Each target is
/// always either its old content or its complete new content, as with [`write_atomic`],
/// but a thousand files cost two flushes instead of two thousand.
struct Batch {
    files: Vec<(PathBuf, Vec<u8>, u32)>,
}

impl Batch {
    fn new() -> Self {
        Batch { files: Vec::new() }
    }

    fn add(&mut self, path: PathBuf, bytes: &[u8], mode: u32) {
        self.files.push((path, bytes.to_vec(), mode));
    }

    fn temp_of(path: &Path) -> PathBuf {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        path.with_file_name(format!(".{name}.kubeha-tmp"))
    }

    /// Writes everything; returns the paths written, in order.
    fn commit(self, root: &Path) -> Result<Vec<PathBuf>, PkiError> {
        if self.files.is_empty() {
            return Ok(vec![]);
        }
        let result = self.stage_and_rename(root);
        if result.is_err() {
            for (path, _, _) in &self.files {
                let _ = fs::remove_file(Self::temp_of(path));
            }
        }
        result
    }

    fn stage_and_rename(&self, root: &Path) -> Result<Vec<PathBuf>, PkiError> {
        for (path, bytes, mode) in &self.files {
            let err = |source| PkiError::Write {
                path: path.clone(),
                source,
            };
            if let Some(parent) = path.parent() {
                create_dirs_with(parent, false)?;
            }
            let tmp = Self::temp_of(path);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(*mode)
                .open(&tmp)
                .map_err(err)?;
            f.write_all(bytes).map_err(err)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(*mode)).map_err(err)?;
        }
        sync_fs(root)?;
        let mut written = Vec::with_capacity(self.files.len());
        for (path, _, _) in &self.files {
            fs::rename(Self::temp_of(path), path).map_err(|source| PkiError::Write {
                path: path.clone(),
                source,
            })?;
            written.push(path.clone());
        }
        sync_fs(root)?;
        Ok(written)
    }
}

/// Flushes the filesystem holding `dir` (data and metadata) in one call.
fn sync_fs(dir: &Path) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    };
    let d = File::open(dir).map_err(err)?;
    rustix::fs::syncfs(&d).map_err(|e| err(io::Error::from(e)))
}

/// Removes `path` and fsyncs its directory.
fn remove_synced(path: &Path) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    fs::remove_file(path).map_err(err)?;
    if let Some(parent) = path.parent() {
        File::open(parent).and_then(|d| d.sync_all()).map_err(err)?;
    }
    Ok(())
}

fn utf8(bytes: Vec<u8>, corrupt: impl FnOnce() -> PkiError) -> Result<String, PkiError> {
    String::from_utf8(bytes).map_err(|_| corrupt())
}

/// A CA read from state and checked.
struct LoadedCa {
    id: CaId,
    cert_pem: String,
    cert_der: Vec<u8>,
    key: Key,
    /// The key is still plain on disk while a passphrase is set: encrypt it.
    needs_encryption: bool,
    /// A plain key left next to the encrypted one (an interrupted encryption): remove it.
    plain_leftover: bool,
}

/// A leaf read from state and checked.
struct LoadedLeaf {
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: String,
}

enum LeafPlan {
    Reuse(LoadedLeaf),
    Issue(IssueReason),
}

impl Store {
    /// Sets the scrypt work factor (N = 2^`log_n`, 1..=22) for keys encrypted from now on;
    /// the default is [`DEFAULT_SCRYPT_LOG_N`]. Tests lower it to stay fast.
    pub fn set_scrypt_work_factor(&mut self, log_n: u8) {
        self.scrypt_log_n = log_n.clamp(1, MAX_SCRYPT_LOG_N);
        self.recipient = OnceLock::new();
    }

    /// `<state_root>/<cluster>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }

    pub fn index_path(&self) -> PathBuf {
        self.pki_dir().join("index.json")
    }

    pub fn secrets_path(&self) -> PathBuf {
        self.dir.join("secrets.json")
    }

    pub fn ca_cert_path(&self, id: CaId) -> PathBuf {
        self.pki_dir().join(format!("{}.crt", id.base()))
    }

    /// The plain CA key path (`ca.key`).
    pub fn ca_key_path(&self, id: CaId) -> PathBuf {
        self.pki_dir().join(format!("{}.key", id.base()))
    }

    /// The encrypted CA key path (`ca.key.age`).
    pub fn ca_key_age_path(&self, id: CaId) -> PathBuf {
        self.pki_dir().join(format!("{}.key.age", id.base()))
    }

    pub fn sa_key_path(&self) -> PathBuf {
        self.pki_dir().join("sa.key")
    }

    pub fn sa_pub_path(&self) -> PathBuf {
        self.pki_dir().join("sa.pub")
    }

    fn leaf_base(&self, id: &LeafId) -> PathBuf {
        let owner = match &id.node {
            Some(node) => self.pki_dir().join("nodes").join(node),
            None => self.pki_dir().join("operator"),
        };
        owner.join(id.kind.base())
    }

    pub fn leaf_cert_path(&self, id: &LeafId) -> PathBuf {
        with_ext(self.leaf_base(id), "crt")
    }

    pub fn leaf_key_path(&self, id: &LeafId) -> PathBuf {
        with_ext(self.leaf_base(id), "key")
    }

    /// Brings the state dir in line with `spec` as of `now` and returns every material.
    ///
    /// Loads and checks everything; creates missing CAs (never replaces one); issues missing
    /// leaves and re-issues a leaf only when its inputs changed or it expires within
    /// [`RENEW_BEFORE`]; keeps the service-account key and secrets once made, except the
    /// bootstrap token, replaced when missing or within [`BootstrapToken::RENEW_BEFORE`] of
    /// expiry. Nothing is written unless every existing file checks out.
    pub fn ensure(
        &mut self,
        spec: &Spec,
        now: OffsetDateTime,
    ) -> Result<(Materials, IssueReport), PkiError> {
        self.ensure_with(spec, now, &|_| false)
    }

    /// [`Store::ensure`], and also re-issues every existing leaf `force` picks (reason
    /// [`IssueReason::Forced`]) with a fresh key. CAs are never re-issued.
    pub fn ensure_with(
        &mut self,
        spec: &Spec,
        now: OffsetDateTime,
        force: &dyn Fn(&LeafId) -> bool,
    ) -> Result<(Materials, IssueReport), PkiError> {
        let now = issue::normalize(now);
        let certs = &spec.certificates;
        let alg = certs.key_algorithm;
        let mut report = IssueReport::default();

        // ---- 1. read and check everything; no writes.
        let profiles = leaf_profiles(spec);
        if let Some(node) = profiles
            .iter()
            .filter_map(|p| p.id.node.as_ref())
            .find(|n| !is_safe_name(n))
        {
            return Err(PkiError::InvalidName {
                what: "node name",
                name: node.clone(),
            });
        }
        let mut index = self.load_index()?;
        let loose = self.loose_private_files()?;
        let loaded_cas = self.load_cas()?;
        let sa_existing = self.load_service_account()?;
        let secrets_existing = self.load_secrets()?;
        let mut plans = Vec::with_capacity(profiles.len());
        for p in &profiles {
            let ca = loaded_cas.get(&p.issuer());
            let plan = match self.load_leaf(p, ca)? {
                None => LeafPlan::Issue(IssueReason::New),
                Some(Err(())) => LeafPlan::Issue(IssueReason::Incomplete),
                Some(Ok(leaf)) => {
                    // A leaf can only load if its CA exists (it must verify against it).
                    let ca_der = ca.map_or(&[][..], |c| c.cert_der.as_slice());
                    let fingerprint = p.fingerprint(alg, certs.validity_hours, ca_der);
                    let recorded = index
                        .leaves
                        .get(&p.id.to_string())
                        .map(|e| e.fingerprint.clone());
                    // No record (a lost index): the certificate itself says what it
                    // certifies; if that is what the spec asks for, record it again rather
                    // than re-issue every leaf and redeploy every host.
                    let rebuilt = recorded.is_none()
                        && check::certifies(&leaf.cert_der, p, alg, certs.validity_hours);
                    if rebuilt {
                        index.leaves.insert(
                            p.id.to_string(),
                            IndexEntry {
                                node: p.id.node.clone(),
                                kind: p.id.kind,
                                fingerprint: fingerprint.clone(),
                            },
                        );
                        report.index_rebuilt.push(p.id.clone());
                    }
                    let expiring =
                        check::not_after(&leaf.cert_der).is_none_or(|t| t - now < RENEW_BEFORE);
                    if recorded.as_deref() != Some(fingerprint.as_str()) && !rebuilt {
                        LeafPlan::Issue(IssueReason::Changed)
                    } else if expiring {
                        LeafPlan::Issue(IssueReason::Expiring)
                    } else if force(&p.id) {
                        LeafPlan::Issue(IssueReason::Forced)
                    } else {
                        LeafPlan::Reuse(leaf)
                    }
                }
            };
            plans.push(plan);
        }
        let wanted: BTreeSet<String> = profiles.iter().map(|p| p.id.to_string()).collect();
        for entry in index
            .leaves
            .iter()
            .filter(|(k, _)| !wanted.contains(*k))
            .map(|(_, e)| e)
        {
            report.stale.push(LeafId {
                node: entry.node.clone(),
                kind: entry.kind,
            });
        }

        // ---- 2. generate every missing key in one parallel batch.
        let missing_cas: Vec<CaId> = CaId::ALL
            .into_iter()
            .filter(|id| !loaded_cas.contains_key(id))
            .collect();
        let mut names: Vec<String> = missing_cas
            .iter()
            .map(|c| format!("the {} CA", c.name()))
            .collect();
        let to_issue: Vec<usize> = plans
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, LeafPlan::Issue(_)))
            .map(|(i, _)| i)
            .collect();
        names.extend(to_issue.iter().map(|i| profiles[*i].id.to_string()));
        if sa_existing.is_none() {
            names.push("the service-account key".to_string());
        }
        let mut generated = issue::generate_keys(alg, &names)?.into_iter();
        report.keys_generated = names.len();
        let mut take = || generated.next().ok_or(PkiError::Random { what: "keys" });

        // ---- 3. make everything in memory.
        let mut cas: BTreeMap<CaId, LoadedCa> = loaded_cas;
        for id in &missing_cas {
            let key = take()?;
            let cert_pem = issue::new_ca_cert(*id, &key, now, certs.ca_validity_hours)?;
            let cert_der = check::cert_der(&cert_pem).unwrap_or_default();
            cas.insert(
                *id,
                LoadedCa {
                    id: *id,
                    cert_pem,
                    cert_der,
                    key,
                    needs_encryption: self.opts.passphrase.is_some(),
                    plain_leftover: false,
                },
            );
        }
        for ca in cas.values() {
            if !missing_cas.contains(&ca.id) {
                report.cas_reused.push(ca.id);
            }
            if check::not_after(&ca.cert_der).is_none_or(|t| t - now < RENEW_BEFORE) {
                report.cas_expiring.push(ca.id);
            }
        }
        report.cas_created = missing_cas.clone();
        let leaf_keys: Vec<(usize, Key)> = to_issue
            .iter()
            .map(|i| Ok((*i, take()?)))
            .collect::<Result<_, PkiError>>()?;
        let sa_key = match sa_existing {
            Some(k) => k,
            None => {
                report.service_account_created = true;
                take()?
            }
        };
        let signers = cas
            .values()
            .map(|ca| Signer::new(ca.id, &ca.cert_pem, &ca.key))
            .collect::<Result<Vec<_>, _>>()?;
        let issued: Vec<(usize, String, String)> = leaf_keys
            .par_iter()
            .map(|(i, key)| {
                let p = &profiles[*i];
                let signer = Signer::pick(&signers, p)?;
                let cert_pem = issue::sign_leaf(p, key, signer, now, certs.validity_hours)?;
                Ok((*i, cert_pem, key.pem.clone()))
            })
            .collect::<Result<_, PkiError>>()?;
        drop(signers);
        // Encrypt CA keys that need it before touching the disk.
        let encrypted: BTreeMap<CaId, Vec<u8>> = match &self.opts.passphrase {
            Some(pass) => cas
                .values()
                .filter(|c| c.needs_encryption)
                .map(|c| {
                    Ok((
                        c.id,
                        self.encrypt(pass, c.key.pem.as_bytes(), &self.ca_key_age_path(c.id))?,
                    ))
                })
                .collect::<Result<_, PkiError>>()?,
            None => BTreeMap::new(),
        };
        let mut secrets = match secrets_existing {
            Some(s) => s,
            None => {
                report.secrets_created = true;
                report.bootstrap_token_issued = true;
                issue::new_secrets(now)?
            }
        };
        if secrets
            .bootstrap_token
            .as_ref()
            .is_none_or(|t| t.needs_renewal(now))
        {
            secrets.bootstrap_token = Some(BootstrapToken::generate(now)?);
            report.bootstrap_token_issued = true;
        }

        // ---- 4. write: CAs, service account, leaves, secrets, index last.
        let mut batch = Batch::new();
        let mut write = |path: PathBuf, bytes: &[u8], mode: u32| -> Result<(), PkiError> {
            batch.add(path, bytes, mode);
            Ok(())
        };
        let mut removed = Vec::new();
        for ca in cas.values() {
            let created = missing_cas.contains(&ca.id);
            if let Some(bytes) = encrypted.get(&ca.id) {
                write(self.ca_key_age_path(ca.id), bytes, MODE_SECRET)?;
                if !created {
                    report.cas_encrypted.push(ca.id);
                }
            } else if created {
                write(self.ca_key_path(ca.id), ca.key.pem.as_bytes(), MODE_SECRET)?;
            }
            if created {
                write(self.ca_cert_path(ca.id), ca.cert_pem.as_bytes(), MODE_CERT)?;
            }
            if (encrypted.contains_key(&ca.id) && !created) || ca.plain_leftover {
                // Removed only after the encrypted copy is durable (below).
                removed.push(self.ca_key_path(ca.id));
            }
        }
        let sa_pub = keys::public_key_pem(&sa_key.pair);
        if report.service_account_created {
            write(self.sa_key_path(), sa_key.pem.as_bytes(), MODE_SECRET)?;
            write(self.sa_pub_path(), sa_pub.as_bytes(), MODE_SECRET)?;
        }
        let mut leaves = BTreeMap::new();
        for (i, cert_pem, key_pem) in issued {
            let p = &profiles[i];
            write(self.leaf_key_path(&p.id), key_pem.as_bytes(), MODE_SECRET)?;
            write(self.leaf_cert_path(&p.id), cert_pem.as_bytes(), MODE_CERT)?;
            let ca_der = cas
                .get(&p.issuer())
                .map_or(&[][..], |c| c.cert_der.as_slice());
            index.leaves.insert(
                p.id.to_string(),
                IndexEntry {
                    node: p.id.node.clone(),
                    kind: p.id.kind,
                    fingerprint: p.fingerprint(alg, certs.validity_hours, ca_der),
                },
            );
            if let LeafPlan::Issue(reason) = plans[i] {
                report.issued.push((p.id.clone(), reason));
            }
            leaves.insert(p.id.clone(), CertPair { cert_pem, key_pem });
        }
        for (p, plan) in profiles.iter().zip(plans) {
            if let LeafPlan::Reuse(leaf) = plan {
                report.reused += 1;
                leaves.insert(
                    p.id.clone(),
                    CertPair {
                        cert_pem: leaf.cert_pem,
                        key_pem: leaf.key_pem,
                    },
                );
            }
        }
        if report.secrets_created || report.bootstrap_token_issued {
            let json = Zeroizing::new(to_json(&SecretsFile::new(&secrets)));
            write(self.secrets_path(), json.as_bytes(), MODE_SECRET)?;
        }
        index.version = STATE_VERSION;
        let index_json = to_json(&index);
        let index_path = self.index_path();
        if read_opt(&index_path)?.as_deref() != Some(index_json.as_bytes()) {
            write(index_path, index_json.as_bytes(), MODE_SECRET)?;
        }
        let mut written = batch.commit(&self.dir)?;
        for plain in &removed {
            remove_synced(plain)?;
        }
        written.extend(removed);
        report.files_written = written;
        for (path, _) in &loose {
            match fs::set_permissions(path, fs::Permissions::from_mode(MODE_SECRET)) {
                Ok(()) => {}
                // Removed above (a plain CA key after encryption): nothing left to protect.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(PkiError::Write {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        report.modes_corrected = loose;

        let materials = Materials {
            cas: cas
                .into_values()
                .map(|c| {
                    (
                        c.id,
                        CertPair {
                            cert_pem: c.cert_pem,
                            key_pem: c.key.pem,
                        },
                    )
                })
                .collect(),
            leaves,
            service_account: issue::service_account(&sa_key),
            secrets,
        };
        Ok((materials, report))
    }

    /// Puts an existing CA (guide 001: "if you already have a CA") into state, so `ensure`
    /// issues leaves from it. Refuses anything that is not a CA, a key that does not match,
    /// and a *different* CA already in state. Importing the same CA again is a no-op.
    pub fn import_ca(&mut self, id: CaId, cert_pem: &str, key_pem: &str) -> Result<(), PkiError> {
        let reject = |problem| PkiError::ImportRejected { ca: id, problem };
        let der = check::cert_der(cert_pem)
            .ok_or_else(|| reject("the certificate is not a single PEM X.509 certificate"))?;
        if !check::is_ca(&der) {
            return Err(reject(
                "the certificate is not a CA (BasicConstraints CA:TRUE missing)",
            ));
        }
        if !check::simple_subject(&der) {
            return Err(reject(
                "the certificate subject has multi-valued RDNs, which kubeha cannot sign with",
            ));
        }
        if check::not_after(&der).is_none_or(|t| t <= OffsetDateTime::now_utc()) {
            return Err(reject("the certificate has expired"));
        }
        let key = keys::parse_private_key(key_pem)
            .ok_or_else(|| reject("the key is not a usable PEM private key"))?;
        if !check::key_matches(&der, &key) {
            return Err(reject("the key does not belong to the certificate"));
        }
        let cert_path = self.ca_cert_path(id);
        if let Some(existing) = self.load_ca(id)? {
            if existing.cert_der == der {
                return Ok(());
            }
            return Err(PkiError::CaExists {
                ca: id,
                path: cert_path,
            });
        }
        let key_pem =
            keys::to_kubeadm_pem(&key).ok_or_else(|| reject("the key type is not supported"))?;
        let cert_pem = keys::pem_encode(keys::PEM_CERTIFICATE, &der);
        match &self.opts.passphrase {
            Some(pass) => {
                let path = self.ca_key_age_path(id);
                let bytes = self.encrypt(pass, key_pem.as_bytes(), &path)?;
                write_atomic(&path, &bytes, MODE_SECRET)?;
            }
            None => write_atomic(&self.ca_key_path(id), key_pem.as_bytes(), MODE_SECRET)?,
        }
        write_atomic(&cert_path, cert_pem.as_bytes(), MODE_CERT)
    }

    fn encrypt(
        &self,
        pass: &SecretString,
        plaintext: &[u8],
        path: &Path,
    ) -> Result<Vec<u8>, PkiError> {
        let recipient = self.recipient.get_or_init(|| {
            let mut r = age::scrypt::Recipient::new(pass.clone());
            r.set_work_factor(self.scrypt_log_n);
            r
        });
        age::encrypt(recipient, plaintext).map_err(|e| PkiError::Encrypt {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Private files (`*.key`, `*.key.age`, `secrets.json`) whose mode lets anyone but the
    /// owner read or write them, with that mode. Symlinks are not followed.
    fn loose_private_files(&self) -> Result<Vec<(PathBuf, u32)>, PkiError> {
        let mut out = Vec::new();
        let mut check = |path: PathBuf| -> Result<(), PkiError> {
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_file() => {
                    let mode = m.permissions().mode() & 0o7777;
                    if mode & 0o077 != 0 {
                        out.push((path, mode));
                    }
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(PkiError::Read { path, source }),
            }
        };
        check(self.secrets_path())?;
        let mut dirs = vec![self.pki_dir()];
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(PkiError::Read { path: dir, source }),
            };
            for entry in entries {
                let entry = entry.map_err(|source| PkiError::Read {
                    path: dir.clone(),
                    source,
                })?;
                let path = entry.path();
                let kind = entry.file_type().map_err(|source| PkiError::Read {
                    path: path.clone(),
                    source,
                })?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if kind.is_dir() {
                    dirs.push(path);
                } else if name.ends_with(".key") || name.ends_with(".key.age") {
                    check(path)?;
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn load_index(&self) -> Result<Index, PkiError> {
        let path = self.index_path();
        let Some(bytes) = read_opt(&path)? else {
            return Ok(Index {
                version: STATE_VERSION,
                leaves: BTreeMap::new(),
            });
        };
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|source| PkiError::CorruptStateFile {
                path: path.clone(),
                advice: INDEX_ADVICE,
                source,
            })?;
        if index.version > STATE_VERSION {
            return Err(PkiError::UnsupportedStateVersion {
                path,
                found: index.version,
                supported: STATE_VERSION,
            });
        }
        Ok(index)
    }

    /// Records etcd's `--initial-cluster-token` in `secrets.json` (atomically), so every
    /// later render uses it instead of the spec's default; `None` goes back to the default.
    /// The secrets must exist (run [`Store::ensure`] first).
    pub fn set_etcd_cluster_token(&mut self, token: Option<&str>) -> Result<(), PkiError> {
        let path = self.secrets_path();
        let Some(mut secrets) = self.load_secrets()? else {
            return Err(PkiError::Read {
                path,
                source: io::Error::new(io::ErrorKind::NotFound, "no secrets yet"),
            });
        };
        secrets.etcd_cluster_token = token.map(str::to_string);
        let json = Zeroizing::new(to_json(&SecretsFile::new(&secrets)));
        write_atomic(&path, json.as_bytes(), MODE_SECRET)
    }

    fn load_secrets(&self) -> Result<Option<Secrets>, PkiError> {
        let path = self.secrets_path();
        let Some(bytes) = read_opt(&path)?.map(Zeroizing::new) else {
            return Ok(None);
        };
        let file: SecretsFile =
            serde_json::from_slice(&bytes).map_err(|source| PkiError::CorruptStateFile {
                path: path.clone(),
                advice: SECRETS_ADVICE,
                source,
            })?;
        if file.version > STATE_VERSION {
            return Err(PkiError::UnsupportedStateVersion {
                path,
                found: file.version,
                supported: STATE_VERSION,
            });
        }
        Ok(Some(Secrets {
            keepalived_auth: file.keepalived_auth,
            etcd_cluster_token: file.etcd_cluster_token,
            bootstrap_token: file.bootstrap_token.map(|t| BootstrapToken {
                id: t.id,
                secret: t.secret,
                expires: t.expires,
            }),
        }))
    }

    /// Every CA present in state, checked; CA keys are decrypted in parallel.
    fn load_cas(&self) -> Result<BTreeMap<CaId, LoadedCa>, PkiError> {
        CaId::ALL
            .par_iter()
            .map(|id| self.load_ca(*id))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.into_iter().flatten().map(|c| (c.id, c)).collect())
    }

    fn load_ca(&self, id: CaId) -> Result<Option<LoadedCa>, PkiError> {
        let cert_path = self.ca_cert_path(id);
        let plain_path = self.ca_key_path(id);
        let age_path = self.ca_key_age_path(id);
        let cert = read_opt(&cert_path)?;
        let age_bytes = read_opt(&age_path)?;
        let plain = read_opt(&plain_path)?.map(Zeroizing::new);
        let key_path = if age_bytes.is_some() {
            &age_path
        } else {
            &plain_path
        };
        let cert = match (cert, age_bytes.is_some() || plain.is_some()) {
            (None, false) => return Ok(None),
            (Some(c), true) => c,
            (Some(_), false) => {
                return Err(PkiError::CaIncomplete {
                    present: cert_path,
                    missing: plain_path,
                });
            }
            (None, true) => {
                return Err(PkiError::CaIncomplete {
                    present: key_path.clone(),
                    missing: cert_path,
                });
            }
        };
        let corrupt_cert = || PkiError::CorruptCertificate {
            path: cert_path.clone(),
            advice: CA_ADVICE,
        };
        let cert_pem = utf8(cert, corrupt_cert)?;
        let cert_der = check::cert_der(&cert_pem).ok_or_else(corrupt_cert)?;
        if !check::is_ca(&cert_der) {
            return Err(PkiError::NotACa {
                path: cert_path,
                advice: CA_ADVICE,
            });
        }
        let corrupt_key = |path: &Path| PkiError::CorruptKey {
            path: path.to_path_buf(),
            advice: CA_ADVICE,
        };
        let (key_text, needs_encryption, plain_leftover) = match (age_bytes, plain) {
            (Some(ciphertext), plain) => {
                let Some(pass) = &self.opts.passphrase else {
                    return Err(PkiError::PassphraseRequired { path: age_path });
                };
                let identity = self.identity.get_or_init(|| {
                    let mut i = age::scrypt::Identity::new(pass.clone());
                    i.set_max_work_factor(MAX_SCRYPT_LOG_N);
                    i
                });
                let text = age::decrypt(identity, &ciphertext).map_err(|e| PkiError::Decrypt {
                    path: age_path.clone(),
                    source: Box::new(e),
                })?;
                (Zeroizing::new(text), false, plain.is_some())
            }
            (None, Some(plain)) => (plain, self.opts.passphrase.is_some(), false),
            (None, None) => {
                return Err(PkiError::CaIncomplete {
                    present: cert_path,
                    missing: plain_path,
                });
            }
        };
        let key_text = std::str::from_utf8(&key_text).map_err(|_| corrupt_key(key_path))?;
        let key = keys::parse_private_key(key_text).ok_or_else(|| corrupt_key(key_path))?;
        if !check::key_matches(&cert_der, &key) {
            return Err(PkiError::KeyMismatch {
                key: key_path.clone(),
                cert: cert_path,
                advice: CA_ADVICE,
            });
        }
        if !check::simple_subject(&cert_der) {
            return Err(PkiError::CaSubjectUnsupported {
                path: cert_path,
                advice: CA_ADVICE,
            });
        }
        Ok(Some(LoadedCa {
            id,
            cert_pem,
            cert_der,
            key,
            needs_encryption,
            plain_leftover,
        }))
    }

    /// The service-account key, if present; `sa.pub` must be its public half.
    fn load_service_account(&self) -> Result<Option<Key>, PkiError> {
        let key_path = self.sa_key_path();
        let pub_path = self.sa_pub_path();
        let key = read_opt(&key_path)?.map(Zeroizing::new);
        let public = read_opt(&pub_path)?;
        let (key, public) = match (key, public) {
            (None, None) => return Ok(None),
            (Some(k), Some(p)) => (k, p),
            (Some(_), None) => {
                return Err(PkiError::SaIncomplete {
                    present: key_path,
                    missing: pub_path,
                });
            }
            (None, Some(_)) => {
                return Err(PkiError::SaIncomplete {
                    present: pub_path,
                    missing: key_path,
                });
            }
        };
        let corrupt = || PkiError::CorruptKey {
            path: key_path.clone(),
            advice: SA_ADVICE,
        };
        let text = std::str::from_utf8(&key).map_err(|_| corrupt())?;
        let key = keys::parse_private_key(text).ok_or_else(corrupt)?;
        if public != keys::public_key_pem(&key.pair).as_bytes() {
            return Err(PkiError::KeyMismatch {
                key: key_path,
                cert: pub_path,
                advice: SA_ADVICE,
            });
        }
        Ok(Some(key))
    }

    /// `None`: nothing there. `Some(Err(()))`: only one half there (re-issue). `Some(Ok)`:
    /// both there and sound. Corrupt files are errors.
    fn load_leaf(
        &self,
        p: &LeafProfile,
        ca: Option<&LoadedCa>,
    ) -> Result<Option<Result<LoadedLeaf, ()>>, PkiError> {
        let cert_path = self.leaf_cert_path(&p.id);
        let key_path = self.leaf_key_path(&p.id);
        let (cert, key) = match (
            read_opt(&cert_path)?,
            read_opt(&key_path)?.map(Zeroizing::new),
        ) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            _ => return Ok(Some(Err(()))),
        };
        let corrupt_cert = || PkiError::CorruptCertificate {
            path: cert_path.clone(),
            advice: LEAF_ADVICE,
        };
        let cert_pem = utf8(cert, corrupt_cert)?;
        let cert_der = check::cert_der(&cert_pem).ok_or_else(corrupt_cert)?;
        let corrupt_key = || PkiError::CorruptKey {
            path: key_path.clone(),
            advice: LEAF_ADVICE,
        };
        let key_pem = std::str::from_utf8(&key).map_err(|_| corrupt_key())?;
        let parsed = keys::parse_private_key(key_pem).ok_or_else(corrupt_key)?;
        if !check::key_matches(&cert_der, &parsed) {
            return Err(PkiError::KeyMismatch {
                key: key_path,
                cert: cert_path,
                advice: LEAF_ADVICE,
            });
        }
        if !ca.is_some_and(|ca| check::signed_by(&cert_der, &ca.cert_der)) {
            return Err(PkiError::NotSignedByCa {
                path: cert_path,
                leaf: p.id.clone(),
                ca: p.issuer(),
            });
        }
        Ok(Some(Ok(LoadedLeaf {
            cert_pem,
            cert_der,
            key_pem: key_pem.to_string(),
        })))
    }
}

fn with_ext(base: PathBuf, ext: &str) -> PathBuf {
    let mut s = base.into_os_string();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Pretty JSON with a trailing newline; serializing these plain structs cannot fail.
fn to_json<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn safe_names() {
        assert!(is_safe_name("ha-cluster"));
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn leaf_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "c", StoreOptions::default()).unwrap();
        let p = store.pki_dir();
        assert_eq!(
            store.leaf_cert_path(&LeafId::new("cp-1", LeafKind::EtcdServer)),
            p.join("nodes/cp-1/etcd/server.crt")
        );
        assert_eq!(
            store.leaf_key_path(&LeafId::new("cp-1", LeafKind::KubeletConf)),
            p.join("nodes/cp-1/kubelet.conf.key")
        );
        assert_eq!(
            store.leaf_cert_path(&LeafId::operator(LeafKind::AdminConf)),
            p.join("operator/admin.conf.crt")
        );
        assert_eq!(store.ca_key_age_path(CaId::Etcd), p.join("etcd/ca.key.age"));
    }

    /// The stacked example cut down to one control plane, ECDSA: quick to issue.
    fn small_spec() -> Spec {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/stacked.yaml");
        let mut spec = kubeha_spec::load(&path).unwrap().spec;
        spec.nodes.retain(|n| n.name == "master-1");
        spec.certificates.key_algorithm = kubeha_spec::KeyAlgorithm::EcdsaP256;
        spec
    }

    fn t0() -> OffsetDateTime {
        crate::materials::parse_rfc3339("2030-06-01T12:00:00Z").unwrap()
    }

    fn secrets_json(store: &Store) -> serde_json::Value {
        serde_json::from_slice(&fs::read(store.secrets_path()).unwrap()).unwrap()
    }

    #[test]
    fn bootstrap_token_is_made_with_the_secrets_and_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c", StoreOptions::default()).unwrap();
        let (m, r) = store.ensure(&small_spec(), t0()).unwrap();
        assert!(r.secrets_created && r.bootstrap_token_issued);
        let token = m.secrets.bootstrap_token.clone().unwrap();
        assert!(token.is_well_formed(), "{token:?}");
        assert_eq!(token.expires, "2030-06-02T12:00:00Z");
        let json = secrets_json(&store);
        assert_eq!(json["bootstrapToken"]["id"], token.id.as_str());
        assert_eq!(json["bootstrapToken"]["secret"], token.secret.as_str());
        assert_eq!(json["bootstrapToken"]["expires"], token.expires.as_str());
        assert_eq!(
            fs::metadata(store.secrets_path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    #[test]
    fn bootstrap_token_is_kept_until_it_nears_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c", StoreOptions::default()).unwrap();
        let spec = small_spec();
        let (m1, _) = store.ensure(&spec, t0()).unwrap();
        let before = fs::read(store.secrets_path()).unwrap();

        let (m2, r) = store.ensure(&spec, t0() + Duration::hours(22)).unwrap();
        assert!(!r.bootstrap_token_issued && r.is_noop(), "{r:?}");
        assert_eq!(m2.secrets, m1.secrets);
        assert_eq!(fs::read(store.secrets_path()).unwrap(), before);

        let later = t0() + Duration::hours(23) + Duration::minutes(30);
        let (m3, r) = store.ensure(&spec, later).unwrap();
        assert!(r.bootstrap_token_issued && !r.secrets_created);
        assert_eq!(r.files_written, vec![store.secrets_path()]);
        let (old, new) = (
            m1.secrets.bootstrap_token.unwrap(),
            m3.secrets.bootstrap_token.clone().unwrap(),
        );
        assert_ne!(old.token(), new.token());
        assert_eq!(new.expires, "2030-06-03T11:30:00Z");
        assert_eq!(m3.secrets.keepalived_auth, m1.secrets.keepalived_auth);
        assert_eq!(
            secrets_json(&store)["bootstrapToken"]["id"],
            new.id.as_str()
        );

        // An expired token is replaced too.
        let (m4, r) = store.ensure(&spec, later + Duration::days(3)).unwrap();
        assert!(r.bootstrap_token_issued);
        assert_ne!(m4.secrets.bootstrap_token, m3.secrets.bootstrap_token);
    }

    #[test]
    fn secrets_without_a_token_still_load_and_get_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), "c", StoreOptions::default()).unwrap();
        let spec = small_spec();
        store.ensure(&spec, t0()).unwrap();
        // What kubeha wrote before it made tokens.
        let old = r#"{"version":1,"keepalivedAuth":"Ab3dEf7h","etcdClusterToken":"c-restored"}"#;
        fs::write(store.secrets_path(), old).unwrap();
        let loaded = store.load_secrets().unwrap().unwrap();
        assert_eq!(loaded.keepalived_auth, "Ab3dEf7h");
        assert_eq!(loaded.bootstrap_token, None);

        let (m, r) = store.ensure(&spec, t0()).unwrap();
        assert!(r.bootstrap_token_issued && !r.secrets_created);
        assert_eq!(m.secrets.keepalived_auth, "Ab3dEf7h");
        assert_eq!(m.secrets.etcd_cluster_token.as_deref(), Some("c-restored"));
        let json = secrets_json(&store);
        assert_eq!(json["etcdClusterToken"], "c-restored");
        assert!(json["bootstrapToken"]["secret"].as_str().unwrap().len() == 16);

        // Setting the etcd token keeps the bootstrap token.
        store.set_etcd_cluster_token(None).unwrap();
        let again = store.load_secrets().unwrap().unwrap();
        assert_eq!(again.bootstrap_token, m.secrets.bootstrap_token);
        assert_eq!(again.etcd_cluster_token, None);
    }

    #[test]
    fn a_malformed_token_makes_secrets_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "c", StoreOptions::default()).unwrap();
        for token in [
            r#"{"id":"ABCDEF","secret":"0123456789abcdef","expires":"2030-01-01T00:00:00Z"}"#,
            r#"{"id":"abcdef","secret":"0123456789abcde","expires":"2030-01-01T00:00:00Z"}"#,
            r#"{"id":"abcdef","secret":"0123456789abcdef","expires":"soon"}"#,
        ] {
            let text = format!(r#"{{"version":1,"keepalivedAuth":"x","bootstrapToken":{token}}}"#);
            fs::write(store.secrets_path(), text).unwrap();
            let err = store.load_secrets().unwrap_err();
            assert!(matches!(err, PkiError::CorruptStateFile { .. }), "{err:?}");
        }
    }
}

/// Read-only access to a state dir, without the lock: for commands that only look
/// (`kubeha status`, `kubeha certs`), so that they work while another run holds the lock.
#[derive(Debug, Clone)]
pub struct StateView {
    dir: PathBuf,
}

impl StateView {
    pub fn new(state_root: &Path, cluster: &str) -> Self {
        StateView {
            dir: state_root.join(cluster),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    fn read(path: PathBuf) -> Result<String, PkiError> {
        fs::read_to_string(&path).map_err(|source| PkiError::Read { path, source })
    }

    /// A CA certificate (PEM).
    pub fn ca_cert(&self, id: CaId) -> Result<String, PkiError> {
        Self::read(self.pki().join(format!("{}.crt", id.base())))
    }

    /// A leaf certificate and its key (PEM).
    pub fn leaf(&self, id: &LeafId) -> Result<CertPair, PkiError> {
        let owner = match &id.node {
            Some(node) => self.pki().join("nodes").join(node),
            None => self.pki().join("operator"),
        };
        let base = owner.join(id.kind.base());
        Ok(CertPair {
            cert_pem: Self::read(with_ext(base.clone(), "crt"))?,
            key_pem: Self::read(with_ext(base, "key"))?,
        })
    }

    /// Every certificate file in the state dir, sorted.
    pub fn certificate_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.pki()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "crt") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }
}
