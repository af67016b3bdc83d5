//! `kubeha kubeconfig`: the operator's admin kubeconfig — cluster `<name>`, user
//! `<name>-admin`, context `<name>-admin@<name>`, built exactly as `kubeha render` builds
//! `_operator/admin.kubeconfig` — printed, or merged into a kubeconfig file. It is read from
//! the state dir, never issued: without state for the cluster the command refuses.
//!
//! The merge (guide 000's kubeconfig FAQ, without hand edits or renames) goes into `--into`,
//! else the first file of `$KUBECONFIG`, else `~/.kube/config`. It keeps every other entry and
//! key of the file, adds or updates kubeha's three entries, sets the current context only if
//! the file had none, and refuses to touch an entry of the same name that belongs to another
//! cluster. The previous file is saved as `<file>.kubeha-backup-<unix time>`; the new one is
//! written atomically (temp file, fsync, rename) with mode 0600, under kubectl's own lock file
//! `<file>.lock`.

mod merge;

use std::{
    ffi::OsString,
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    process::ExitCode,
};

use serde::Serialize;

use crate::{
    args::{Format, Global, KubeconfigArgs},
    error::CliError,
    output::{emit, print_stdout},
};

use merge::{Change, Config, Conflict, Ours};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MergeReport {
    file: String,
    up_to_date: bool,
    cluster: Entry,
    user: Entry,
    context: Entry,
    backup: Option<String>,
    current_context: Option<String>,
    current_context_set: bool,
}

#[derive(Debug, Serialize)]
struct Entry {
    name: String,
    change: Change,
}

pub fn run(g: &Global, a: &KubeconfigArgs) -> Result<ExitCode, CliError> {
    let loaded = super::load_spec(g)?;
    let spec = &loaded.spec;
    // Read-only on the state dir: printing (or merging) credentials must never issue new
    // ones, which no running cluster would accept.
    let text = super::admin_kubeconfig(g, spec)?;

    // `--into FILE` names a file to merge into: it implies `--merge`.
    if !a.merge && a.into.is_none() {
        print_kubeconfig(g.output, &text)?;
        errln!(
            "warning: this kubeconfig holds the private key of {}'s admin credentials; keep it mode 0600 and out of shared places",
            spec.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    let target = target(a.into.as_deref())?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let report = merge_into(&target, &text, now, &g.file)?;
    emit(g.output, &report, || human(&report))?;
    Ok(ExitCode::SUCCESS)
}

fn print_kubeconfig(format: Format, text: &str) -> Result<(), CliError> {
    match format {
        Format::Json => {
            let v: serde_json::Value =
                serde_saphyr::from_str(text).map_err(|e| CliError::Input {
                    message: format!("cannot convert the kubeconfig to JSON: {e}"),
                    help: String::new(),
                })?;
            emit(format, &v, String::new)
        }
        Format::Table | Format::Yaml => {
            print_stdout(text);
            Ok(())
        }
    }
}

/// `--into`, else the first path of `$KUBECONFIG`, else `~/.kube/config`.
fn target(into: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(p) = into {
        return Ok(p.to_path_buf());
    }
    if let Some(list) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
    {
        return Ok(first);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".kube").join("config")),
        None => Err(CliError::Input {
            message: "cannot find your kubeconfig: neither KUBECONFIG nor HOME is set".into(),
            help: "name the file with --into FILE".into(),
        }),
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A symlinked kubeconfig is written where the link points, so the link stays.
fn resolve(path: &Path) -> Result<PathBuf, CliError> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(CliError::io("follow the symlink", path))
        }
        _ => Ok(path.to_path_buf()),
    }
}

/// kubectl's lock (`<file>.lock`, created exclusively), removed when dropped.
struct Lock(PathBuf);

impl Lock {
    fn acquire(file: &Path) -> Result<Lock, CliError> {
        let lock = with_suffix(file, ".lock");
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&lock)
        {
            Ok(_) => Ok(Lock(lock)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(CliError::Input {
                message: format!(
                    "{} exists: kubectl or another kubeha is changing {}",
                    lock.display(),
                    file.display()
                ),
                help: format!(
                    "try again; if nothing else is running, the lock is stale: remove {}",
                    lock.display()
                ),
            }),
            Err(e) => Err(CliError::Io {
                action: "create the lock file",
                path: lock,
                source: e,
            }),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn merge_into(
    requested: &Path,
    ours_text: &str,
    now: i64,
    cluster_file: &Path,
) -> Result<MergeReport, CliError> {
    let internal = |e: String| CliError::Input {
        message: format!("the admin kubeconfig kubeha built cannot be read back: {e}"),
        help: "this is a bug in kubeha".into(),
    };
    let ours = Ours::from_config(&Config::parse(ours_text).map_err(internal)?).map_err(internal)?;
    let path = resolve(requested)?;
    let dir = parent_dir(&path);
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(CliError::io("create directory", dir))?;
    }
    let _lock = Lock::acquire(&path)?;
    let existing = match fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(CliError::Io {
                action: "read",
                path,
                source: e,
            });
        }
    };
    let mut doc = match &existing {
        Some(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|_| CliError::Input {
                message: format!("{} is not a text file", path.display()),
                help: "name another kubeconfig with --into FILE; nothing was changed".into(),
            })?;
            Config::parse(text).map_err(|e| CliError::Input {
                message: format!("{} is not a kubeconfig kubeha can read: {e}", path.display()),
                help: "fix the file (`kubectl config view --kubeconfig FILE` shows what kubectl makes of it) or name another with --into FILE; nothing was changed".into(),
            })?
        }
        None => Config::default(),
    };
    let merged =
        merge::merge(&mut doc, &ours).map_err(|c| conflict_error(&path, cluster_file, &c))?;
    let entry = |name: &str, change| Entry {
        name: name.to_string(),
        change,
    };
    let mut report = MergeReport {
        file: path.display().to_string(),
        up_to_date: existing.is_some() && merged.is_noop(),
        cluster: entry(&ours.cluster.name, merged.cluster),
        user: entry(&ours.user.name, merged.user),
        context: entry(&ours.context.name, merged.context),
        backup: None,
        current_context: doc.current_context.clone(),
        current_context_set: merged.current_context_set,
    };
    if report.up_to_date {
        return Ok(report);
    }
    let yaml = doc.to_yaml().map_err(|e| CliError::Input {
        message: format!("cannot encode the merged kubeconfig: {e}"),
        help: "nothing was changed".into(),
    })?;
    if let Some(bytes) = &existing {
        report.backup = Some(write_backup(&path, bytes, now)?.display().to_string());
    }
    write_atomic(&path, yaml.as_bytes())?;
    Ok(report)
}

fn conflict_error(path: &Path, cluster_file: &Path, conflicts: &[Conflict]) -> CliError {
    let mut message = format!(
        "cannot merge into {}: {} entr{} of kubeha's name{} belong{} to another cluster",
        path.display(),
        conflicts.len(),
        if conflicts.len() == 1 { "y" } else { "ies" },
        if conflicts.len() == 1 { "" } else { "s" },
        if conflicts.len() == 1 { "s" } else { "" },
    );
    for c in conflicts {
        message.push_str(&format!("\n  {} {:?} {}", c.kind, c.name, c.reason));
    }
    let file = path.display().to_string();
    let deletes: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "kubectl config delete-{} {} --kubeconfig {}",
                c.kind,
                quote(&c.name),
                quote(&file)
            )
        })
        .collect();
    CliError::Input {
        message,
        help: format!(
            "nothing was changed. Either rename this cluster (`name:` in {}) so that its entries get other names, or, if the old entries are stale, remove them and merge again:\n  {}",
            cluster_file.display(),
            deletes.join("\n  ")
        ),
    }
}

/// Shell-quotes a word for a command the user may paste.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Saves the previous content as `<file>.kubeha-backup-<now>` (mode 0600, fsynced).
fn write_backup(path: &Path, bytes: &[u8], now: i64) -> Result<PathBuf, CliError> {
    let base = with_suffix(path, &format!(".kubeha-backup-{now}"));
    let mut candidate = base.clone();
    for n in 2..100 {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&candidate)
        {
            Ok(mut f) => {
                f.write_all(bytes)
                    .and_then(|()| f.sync_all())
                    .map_err(CliError::io("write the backup", &candidate))?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                candidate = with_suffix(&base, &format!("-{n}"));
            }
            Err(e) => {
                return Err(CliError::Io {
                    action: "create the backup",
                    path: candidate,
                    source: e,
                });
            }
        }
    }
    Err(CliError::Input {
        message: format!("too many backups named {}*", base.display()),
        help: "remove old backups and try again; nothing was changed".into(),
    })
}

/// Temp file in the same directory, mode 0600, fsync, rename over `path`, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map_or_else(|| "kubeconfig".into(), |n| n.to_string_lossy().into_owned());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.kubeha-"))
        .tempfile_in(dir)
        .map_err(CliError::io("create a temporary file in", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o600))
        })
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(CliError::io("write", tmp.path()))?;
    tmp.persist(path).map_err(|e| CliError::Io {
        action: "replace",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CliError::io("sync directory", dir))?;
    Ok(())
}

fn human(r: &MergeReport) -> String {
    if r.up_to_date {
        return format!(
            "{}: already up to date (cluster {}, user {}, context {})\n",
            r.file, r.cluster.name, r.user.name, r.context.name
        );
    }
    let word = |c: Change| match c {
        Change::Added => "added",
        Change::Updated => "updated",
        Change::Unchanged => "unchanged",
    };
    let mut s = format!(
        "merged into {}: cluster {} {}, user {} {}, context {} {}\n",
        r.file,
        r.cluster.name,
        word(r.cluster.change),
        r.user.name,
        word(r.user.change),
        r.context.name,
        word(r.context.change)
    );
    if let Some(b) = &r.backup {
        s.push_str(&format!("previous file saved as {b}\n"));
    }
    if r.current_context_set {
        s.push_str(&format!(
            "current context: {} (the file had none)\n",
            r.context.name
        ));
    } else if r.current_context.as_deref() != Some(r.context.name.as_str()) {
        s.push_str(&format!(
            "current context unchanged ({}); switch with: kubectl config use-context {}\n",
            r.current_context.as_deref().unwrap_or(""),
            quote(&r.context.name)
        ));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_quotes() {
        assert_eq!(
            with_suffix(Path::new("/h/.kube/config"), ".lock"),
            PathBuf::from("/h/.kube/config.lock")
        );
        assert_eq!(parent_dir(Path::new("config")), Path::new("."));
        assert_eq!(quote("stacked-admin@stacked"), "stacked-admin@stacked");
        assert_eq!(quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn conflicts_name_the_entry_and_the_way_out() {
        let err = conflict_error(
            Path::new("/h/.kube/config"),
            Path::new("cluster.yaml"),
            &[Conflict {
                kind: "cluster",
                name: "ha".into(),
                reason: "points to server \"https://x:6443\"".into(),
            }],
        );
        let CliError::Input { message, help } = err else {
            panic!("input error")
        };
        assert!(
            message.contains("1 entry of kubeha's name belongs to another cluster"),
            "{message}"
        );
        assert!(
            message.contains("cluster \"ha\" points to server"),
            "{message}"
        );
        assert!(help.contains("`name:` in cluster.yaml"), "{help}");
        assert!(
            help.contains("kubectl config delete-cluster ha --kubeconfig /h/.kube/config"),
            "{help}"
        );
    }
}
