//! The lab's stand-in for systemd (lab hosts have none): `kubeha service start|stop|restart|
//! reload|status <unit>` runs a service from its unit file, so the lab runs the very units kubeha
//! renders (and Debian's `haproxy.service`, `keepalived.service`).
//!
//! - The unit is looked up in `/etc/systemd/system`, `/run/systemd/system`, `/lib/systemd/system`,
//!   `/usr/lib/systemd/system` (first found; a link to `/dev/null` is masked), then drop-ins
//!   `<unit>.d/*.conf` from all of them (by file name; an earlier dir masks the same name).
//! - Start: `[Unit]` path conditions (a failed one skips the start and succeeds, as systemd
//!   does), `Environment=` then `EnvironmentFile=` (these win), `RuntimeDirectory=`,
//!   `ExecStartPre=`, then the first `ExecStart=` runs detached in its own session (`setsid`),
//!   stdout and stderr appended to `/run/kubeha/<unit>.log`, pid in `/run/kubeha/<unit>.pid`.
//!   If it exits within the grace period (1 s) the start fails with the log's tail.
//! - Stop: SIGTERM (the process group, or the main process for `KillMode=mixed|process`),
//!   up to 5 s, then SIGKILL. Status: active when the pid is alive and runs the unit's program.
//! - Reload: as `systemctl reload`, only for an active unit with `ExecReload=`: its lines run
//!   in order with `$MAINPID` set to the main process, each bounded (60 s); the first failing
//!   one (without `-`) fails the reload, with its output, and the running process is left as
//!   it was. For HAProxy (`-Ws`, master-worker) that is `haproxy -c` then `SIGUSR2` to the
//!   master, which re-executes itself in place (same pid) with new workers, while the old
//!   workers finish their established connections. The main process must still be alive
//!   after the grace period. (HAProxy's reload sets its stdout non-blocking with `F_SETFL`,
//!   clearing `O_APPEND` on the shared log: its later output may overwrite the supervisor's
//!   `-- kubeha service: … --` lines written after the reload.)
//! - Not supervised: a service that dies stays dead (lab tests kill services on purpose;
//!   `kubeha up` starts them again). `Restart=`, `Type=forking|oneshot`, sandboxing and
//!   cgroups are not implemented; `Type=notify` services start like `simple`.

pub mod unit;

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::sys;
pub use unit::{Condition, EnvFileRef, ExecLine, ServiceConfig};

/// Where systemd looks for units, highest priority first.
pub const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];
/// Pid and log files of supervised services.
pub const RUN_DIR: &str = "/run/kubeha";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Bound on each `ExecStartPre=` / `ExecReload=` command.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// A supervisor failure; each names the unit (and file) concerned.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("invalid unit name '{unit}' (expected e.g. etcd.service)")]
    BadName { unit: String },
    #[error("unit {unit} not found in {dirs}")]
    NotFound { unit: String, dirs: String },
    #[error("unit {unit} is masked ({path})")]
    Masked { unit: String, path: PathBuf },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("unit {unit} ({path}) has no ExecStart=")]
    NoExecStart { unit: String, path: PathBuf },
    #[error(
        "unit {unit}: Type={kind} is not supported by the lab supervisor (simple, exec, notify and idle are)"
    )]
    UnsupportedType { unit: String, kind: String },
    #[error("unit {unit}: environment file {path} cannot be read")]
    EnvFile {
        unit: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unit {unit}: unknown {what} '{name}'")]
    UnknownUser {
        unit: String,
        what: &'static str,
        name: String,
    },
    #[error("unit {unit}: working directory {path} does not exist")]
    WorkingDirectory { unit: String, path: PathBuf },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unit {unit}: cannot run {program}")]
    Spawn {
        unit: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unit {unit}: ExecStartPre `{command}` failed ({status})")]
    PreFailed {
        unit: String,
        command: String,
        status: String,
    },
    #[error("unit {unit}: ExecStartPre `{command}` did not finish within {seconds} s")]
    PreTimeout {
        unit: String,
        command: String,
        seconds: u64,
    },
    #[error(
        "unit {unit}: `{command}` exited right after start ({status}); last lines of {log}:\n{tail}"
    )]
    Exited {
        unit: String,
        command: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("unit {unit}: process {pid} survived SIGKILL")]
    StopFailed { unit: String, pid: u32 },
    #[error("unit {unit} ({path}) has no ExecReload=: it cannot be reloaded, only restarted")]
    NoExecReload { unit: String, path: PathBuf },
    #[error("unit {unit} is not active: nothing to reload (start it instead)")]
    NotActive { unit: String },
    #[error(
        "unit {unit}: reload refused: ExecReload `{command}` failed ({status}); the running process (pid {pid}) keeps its previous configuration{output}"
    )]
    ReloadFailed {
        unit: String,
        command: String,
        status: String,
        pid: u32,
        /// The command's output, as `:\n<lines>`, or empty.
        output: String,
    },
    #[error("unit {unit}: ExecReload `{command}` did not finish within {seconds} s")]
    ReloadTimeout {
        unit: String,
        command: String,
        seconds: u64,
    },
    #[error(
        "unit {unit}: the main process (pid {pid}) exited during the reload; last lines of {log}:\n{tail}"
    )]
    ReloadExited {
        unit: String,
        pid: u32,
        log: PathBuf,
        tail: String,
    },
}

impl SupervisorError {
    /// The caller named a unit that does not exist or cannot be used as written.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            SupervisorError::BadName { .. }
                | SupervisorError::NotFound { .. }
                | SupervisorError::Masked { .. }
                | SupervisorError::Parse { .. }
                | SupervisorError::NoExecStart { .. }
                | SupervisorError::NoExecReload { .. }
                | SupervisorError::UnsupportedType { .. }
        )
    }
}

fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> SupervisorError {
    let path = path.into();
    move |source| SupervisorError::Io {
        action,
        path,
        source,
    }
}

/// What to do with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
    /// Apply a changed config without stopping the service (`ExecReload=`).
    Reload,
    Status,
}

/// A unit file with its drop-ins applied.
#[derive(Debug, Clone)]
pub struct Unit {
    pub name: String,
    pub path: PathBuf,
    pub dropins: Vec<PathBuf>,
    pub config: ServiceConfig,
}

/// A service's state as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub unit: String,
    pub active: bool,
    pub pid: Option<u32>,
    pub log: PathBuf,
    /// Why nothing happened, e.g. "already active", "condition failed: …".
    pub note: Option<String>,
}

impl std::fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) if self.active => write!(f, "{}: active (pid {pid})", self.unit)?,
            _ => write!(f, "{}: inactive", self.unit)?,
        }
        if let Some(n) = &self.note {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

/// Runs services from unit files. [`Supervisor::default`] uses the system paths.
#[derive(Debug, Clone)]
pub struct Supervisor {
    pub unit_dirs: Vec<PathBuf>,
    pub run_dir: PathBuf,
    /// How long a started service must survive to count as started.
    pub start_grace: Duration,
    /// How long a stopping service gets after SIGTERM.
    pub stop_timeout: Duration,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            unit_dirs: UNIT_DIRS.iter().map(PathBuf::from).collect(),
            run_dir: PathBuf::from(RUN_DIR),
            start_grace: Duration::from_millis(400),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// `etcd` → `etcd.service`; refuses paths.
pub fn unit_name(unit: &str) -> Result<String, SupervisorError> {
    let bad = unit.is_empty()
        || unit.contains('/')
        || unit.starts_with('.')
        || unit.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad {
        return Err(SupervisorError::BadName {
            unit: unit.to_string(),
        });
    }
    Ok(if unit.contains('.') {
        unit.to_string()
    } else {
        format!("{unit}.service")
    })
}

impl Supervisor {
    pub fn run(&self, action: Action, unit: &str) -> Result<ServiceStatus, SupervisorError> {
        match action {
            Action::Start => self.start(unit),
            Action::Stop => self.stop(unit),
            Action::Restart => self.restart(unit),
            Action::Reload => self.reload(unit),
            Action::Status => self.status(unit),
        }
    }

    /// Finds and parses `unit` and its drop-ins.
    pub fn load(&self, unit: &str) -> Result<Unit, SupervisorError> {
        let name = unit_name(unit)?;
        // A template instance `a@b.service` falls back to `a@.service`.
        let template = name.split_once('@').and_then(|(p, rest)| {
            rest.rsplit_once('.')
                .map(|(_, suffix)| format!("{p}@.{suffix}"))
        });
        let mut candidates = vec![name.clone()];
        candidates.extend(template.clone());
        let path = candidates
            .iter()
            .find_map(|c| {
                self.unit_dirs
                    .iter()
                    .map(|d| d.join(c))
                    .find(|p| p.symlink_metadata().is_ok())
            })
            .ok_or_else(|| SupervisorError::NotFound {
                unit: name.clone(),
                dirs: self
                    .unit_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let masked = fs::canonicalize(&path).is_ok_and(|p| p == Path::new("/dev/null"))
            || fs::metadata(&path).is_ok_and(|m| m.len() == 0);
        if masked {
            return Err(SupervisorError::Masked { unit: name, path });
        }
        let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
        for c in &candidates {
            for d in &self.unit_dirs {
                let Ok(rd) = fs::read_dir(d.join(format!("{c}.d"))) else {
                    continue;
                };
                for e in rd.flatten() {
                    let file = e.file_name().to_string_lossy().into_owned();
                    if file.ends_with(".conf") {
                        dropins.entry(file).or_insert_with(|| e.path());
                    }
                }
            }
        }
        let sp = unit::Specifiers {
            unit: name.clone(),
            hostname: hostname(),
        };
        let mut config = ServiceConfig::default();
        let dropins: Vec<PathBuf> = dropins.into_values().collect();
        for p in std::iter::once(&path).chain(&dropins) {
            let text = fs::read_to_string(p).map_err(io_err("read", p))?;
            unit::apply(&mut config, &text, &sp).map_err(|e| SupervisorError::Parse {
                path: p.clone(),
                line: e.line,
                message: e.message,
            })?;
        }
        Ok(Unit {
            name,
            path,
            dropins,
            config,
        })
    }

    fn pid_path(&self, unit: &str) -> PathBuf {
        self.run_dir.join(format!("{unit}.pid"))
    }
    fn cmd_path(&self, unit: &str) -> PathBuf {
        self.run_dir.join(format!("{unit}.cmd"))
    }
    fn log_path(&self, unit: &str) -> PathBuf {
        self.run_dir.join(format!("{unit}.log"))
    }

    /// The recorded pid, if that process is alive and still runs the program started.
    fn running_pid(&self, unit: &str) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.pid_path(unit))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if !sys::alive(pid) {
            return None;
        }
        let expected = fs::read_to_string(self.cmd_path(unit)).ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv0 = cmdline
            .split(|b| *b == 0)
            .next()
            .map(|a| String::from_utf8_lossy(a).into_owned())?;
        let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
        (base(&argv0) == base(expected.trim())).then_some(pid)
    }

    fn clear_pid(&self, unit: &str) {
        let _ = fs::remove_file(self.pid_path(unit));
        let _ = fs::remove_file(self.cmd_path(unit));
    }

    /// Active when the recorded process is alive and runs the unit's program.
    pub fn status(&self, unit: &str) -> Result<ServiceStatus, SupervisorError> {
        let name = unit_name(unit)?;
        let pid = self.running_pid(&name);
        if pid.is_none() && !self.pid_path(&name).exists() {
            // Unknown units are an error, as for systemctl; known but stopped are inactive.
            self.load(&name)?;
        }
        Ok(ServiceStatus {
            active: pid.is_some(),
            pid,
            log: self.log_path(&name),
            note: None,
            unit: name,
        })
    }

    /// Starts the unit unless it is already active.
    pub fn start(&self, unit: &str) -> Result<ServiceStatus, SupervisorError> {
        let u = self.load(unit)?;
        let name = u.name.clone();
        let log = self.log_path(&name);
        if let Some(pid) = self.running_pid(&name) {
            return Ok(ServiceStatus {
                unit: name,
                active: true,
                pid: Some(pid),
                log,
                note: Some("already active".into()),
            });
        }
        let cfg = &u.config;
        if let Some(kind) = cfg.service_type.as_deref().filter(|t| {
            !matches!(
                *t,
                "simple" | "exec" | "notify" | "notify-reload" | "idle" | "dbus"
            )
        }) {
            return Err(SupervisorError::UnsupportedType {
                unit: name,
                kind: kind.to_string(),
            });
        }
        let main = cfg
            .exec_start
            .first()
            .ok_or_else(|| SupervisorError::NoExecStart {
                unit: name.clone(),
                path: u.path.clone(),
            })?;
        if let Some(failed) = failed_condition(&cfg.conditions) {
            return Ok(ServiceStatus {
                unit: name,
                active: false,
                pid: None,
                log,
                note: Some(format!("condition failed: {failed}; not started")),
            });
        }
        let env = self.environment(&u)?;
        let creds = credentials(&u)?;
        let cwd = working_directory(&u)?;
        fs::create_dir_all(&self.run_dir).map_err(io_err("create", &self.run_dir))?;
        for d in &cfg.runtime_directory {
            let p = Path::new("/run").join(d);
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o755));
            if let Some(c) = &creds {
                let _ = std::os::unix::fs::chown(&p, c.uid, Some(c.gid));
            }
        }
        let mut logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_err("open", &log))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let _ = writeln!(
            logf,
            "-- kubeha service: starting {name} (unix time {now}) --"
        );

        for pre in &cfg.exec_start_pre {
            self.run_pre(&name, pre, &env, creds.as_ref(), &cwd, &logf)?;
        }

        let argv = if main.no_env_expansion {
            main.words.clone()
        } else {
            unit::expand_argv(&main.words, &env)
        };
        let program = resolve_program(&argv[0], &env);
        // setsid (own session) → prlimit (as root) → setpriv (User=/Group=) → the program:
        // each execs the next, so the pid is the service's.
        let mut c = Command::new("setsid");
        if let Some(n) = &cfg.limit_nofile {
            let (n, note) = nofile_limit(n);
            if let Some(note) = note {
                let _ = writeln!(logf, "-- kubeha service: {note} --");
            }
            c.args(["prlimit", &format!("--nofile={n}"), "--"]);
        }
        if !main.privileged {
            c.args(setpriv_args(creds.as_ref()));
        }
        c.arg(&program).args(&argv[1..]);
        self.prepare(&mut c, &env, &cwd, &logf, &log)?;
        let mut child = c.spawn().map_err(|source| SupervisorError::Spawn {
            unit: name.clone(),
            program: "setsid".into(),
            source,
        })?;
        let pid = child.id();
        write_small(&self.pid_path(&name), &format!("{pid}\n"))?;
        write_small(&self.cmd_path(&name), &format!("{program}\n"))?;

        let deadline = Instant::now() + self.start_grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.clear_pid(&name);
                return Err(SupervisorError::Exited {
                    unit: name,
                    command: argv.join(" "),
                    status: status.to_string(),
                    tail: tail(&log, 20),
                    log,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(ServiceStatus {
            unit: name,
            active: true,
            pid: Some(pid),
            log,
            note: None,
        })
    }

    fn prepare(
        &self,
        c: &mut Command,
        env: &BTreeMap<String, String>,
        cwd: &Path,
        logf: &fs::File,
        log: &Path,
    ) -> Result<(), SupervisorError> {
        let out = logf.try_clone().map_err(io_err("open", log))?;
        let err = logf.try_clone().map_err(io_err("open", log))?;
        c.env_clear()
            .envs(env)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        Ok(())
    }

    fn run_pre(
        &self,
        unit: &str,
        pre: &ExecLine,
        env: &BTreeMap<String, String>,
        creds: Option<&Credentials>,
        cwd: &Path,
        logf: &fs::File,
    ) -> Result<(), SupervisorError> {
        let argv = if pre.no_env_expansion {
            pre.words.clone()
        } else {
            unit::expand_argv(&pre.words, env)
        };
        let command = argv.join(" ");
        let status = match self.run_control(unit, pre, &argv, env, creds, cwd, logf) {
            // As systemd: a `-` line that cannot even be started (`-/sbin/modprobe overlay`
            // on a machine without kmod) is a failure like any other, and ignored.
            Err(SupervisorError::Spawn { source, .. }) if pre.ignore_failure => {
                let mut log = logf;
                let _ = writeln!(
                    log,
                    "kubeha service: ExecStartPre `{command}` could not be started ({source}); ignored ('-')"
                );
                return Ok(());
            }
            Err(e) => return Err(e),
            Ok(Some(status)) => status,
            Ok(None) => {
                return Err(SupervisorError::PreTimeout {
                    unit: unit.to_string(),
                    command,
                    seconds: CONTROL_TIMEOUT.as_secs(),
                });
            }
        };
        if !status.success() && !pre.ignore_failure {
            return Err(SupervisorError::PreFailed {
                unit: unit.to_string(),
                command,
                status: status.to_string(),
            });
        }
        Ok(())
    }

    /// Runs a control command (`ExecStartPre=`, `ExecReload=`) to its end, output to the
    /// unit's log; `None` when it did not finish within [`CONTROL_TIMEOUT`] (it is killed).
    #[allow(clippy::too_many_arguments)]
    fn run_control(
        &self,
        unit: &str,
        pre: &ExecLine,
        argv: &[String],
        env: &BTreeMap<String, String>,
        creds: Option<&Credentials>,
        cwd: &Path,
        logf: &fs::File,
    ) -> Result<Option<std::process::ExitStatus>, SupervisorError> {
        let program = resolve_program(&argv[0], env);
        let wrap = if pre.privileged {
            Vec::new()
        } else {
            setpriv_args(creds)
        };
        let mut c = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        c.args(&argv[1..]);
        self.prepare(&mut c, env, cwd, logf, &self.log_path(unit))?;
        let mut child = c.spawn().map_err(|source| SupervisorError::Spawn {
            unit: unit.to_string(),
            program: argv[0].clone(),
            source,
        })?;
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return Ok(Some(s)),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(None);
                }
            }
        }
    }

    /// `PATH`, then `Environment=`, then `EnvironmentFile=` (later wins).
    fn environment(&self, u: &Unit) -> Result<BTreeMap<String, String>, SupervisorError> {
        let mut env = BTreeMap::from([("PATH".to_string(), DEFAULT_PATH.to_string())]);
        env.extend(u.config.environment.iter().cloned());
        for f in &u.config.environment_files {
            let path = PathBuf::from(&f.path);
            match fs::read_to_string(&path) {
                Ok(text) => env.extend(unit::parse_env_file(&text)),
                Err(e) if f.optional && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(SupervisorError::EnvFile {
                        unit: u.name.clone(),
                        path,
                        source,
                    });
                }
            }
        }
        Ok(env)
    }

    /// Stops the unit: SIGTERM, up to `stop_timeout`, then SIGKILL.
    pub fn stop(&self, unit: &str) -> Result<ServiceStatus, SupervisorError> {
        let name = unit_name(unit)?;
        let log = self.log_path(&name);
        let Some(pid) = self.running_pid(&name) else {
            if !self.pid_path(&name).exists() {
                self.load(&name)?;
            }
            self.clear_pid(&name);
            return Ok(ServiceStatus {
                unit: name,
                active: false,
                pid: None,
                log,
                note: Some("already inactive".into()),
            });
        };
        let kill_mode = self
            .load(&name)
            .ok()
            .and_then(|u| u.config.kill_mode)
            .unwrap_or_else(|| "control-group".into());
        let group = format!("-{pid}");
        let main_only = matches!(kill_mode.as_str(), "mixed" | "process" | "none");
        sys::signal(
            "TERM",
            &if main_only {
                vec![pid.to_string()]
            } else {
                vec![group.clone(), pid.to_string()]
            },
        );
        let all_gone =
            |pid: u32| !sys::alive(pid) && (main_only || sys::group_members(pid).is_empty());
        if !sys::wait_until(self.stop_timeout, Duration::from_millis(20), || {
            all_gone(pid)
        }) {
            sys::signal("KILL", &[group.clone(), pid.to_string()]);
        }
        // The rest of the group goes with the main process (KillMode=mixed, control-group).
        if kill_mode != "none" && kill_mode != "process" && !sys::group_members(pid).is_empty() {
            sys::signal("KILL", &[group]);
        }
        if !sys::wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
            !sys::alive(pid)
        }) {
            return Err(SupervisorError::StopFailed { unit: name, pid });
        }
        self.clear_pid(&name);
        if let Ok(mut f) = fs::OpenOptions::new().append(true).open(&log) {
            let _ = writeln!(f, "-- kubeha service: stopped {name} (pid {pid}) --");
        }
        Ok(ServiceStatus {
            unit: name,
            active: false,
            pid: None,
            log,
            note: None,
        })
    }

    pub fn restart(&self, unit: &str) -> Result<ServiceStatus, SupervisorError> {
        self.stop(unit)?;
        self.start(unit)
    }

    /// Runs the unit's `ExecReload=` lines against the running main process; see the module
    /// docs. A failed line leaves the service running as it was and says why.
    pub fn reload(&self, unit: &str) -> Result<ServiceStatus, SupervisorError> {
        let u = self.load(unit)?;
        let name = u.name.clone();
        let log = self.log_path(&name);
        if u.config.exec_reload.is_empty() {
            return Err(SupervisorError::NoExecReload {
                unit: name,
                path: u.path.clone(),
            });
        }
        let Some(pid) = self.running_pid(&name) else {
            return Err(SupervisorError::NotActive { unit: name });
        };
        let mut env = self.environment(&u)?;
        env.insert("MAINPID".into(), pid.to_string());
        let creds = credentials(&u)?;
        let cwd = working_directory(&u)?;
        let mut logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_err("open", &log))?;
        let _ = writeln!(logf, "-- kubeha service: reloading {name} (pid {pid}) --");
        for line in &u.config.exec_reload {
            let argv = if line.no_env_expansion {
                line.words.clone()
            } else {
                unit::expand_argv(&line.words, &env)
            };
            let command = argv.join(" ");
            let from = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let Some(status) =
                self.run_control(&name, line, &argv, &env, creds.as_ref(), &cwd, &logf)?
            else {
                return Err(SupervisorError::ReloadTimeout {
                    unit: name,
                    command,
                    seconds: CONTROL_TIMEOUT.as_secs(),
                });
            };
            if status.success() || line.ignore_failure {
                continue;
            }
            let mut output = read_from(&log, from);
            // `haproxy -c -q` (Debian's ExecReload) fails without a word: check again
            // without -q, which only parses the file, to say what is wrong with it.
            if output.trim().is_empty() && is_quiet_haproxy_check(&argv) {
                let loud: Vec<String> = argv.iter().filter(|a| *a != "-q").cloned().collect();
                let from = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
                let _ = self.run_control(&name, line, &loud, &env, creds.as_ref(), &cwd, &logf)?;
                output = read_from(&log, from);
            }
            let _ = writeln!(
                logf,
                "-- kubeha service: reload of {name} refused ({status}); pid {pid} kept --"
            );
            let output = output.trim_end();
            return Err(SupervisorError::ReloadFailed {
                unit: name,
                command,
                status: status.to_string(),
                pid,
                output: if output.is_empty() {
                    String::new()
                } else {
                    format!(":\n{output}")
                },
            });
        }
        // The reload is asynchronous (a signal): the main process must survive it.
        thread::sleep(self.start_grace);
        if self.running_pid(&name) != Some(pid) {
            return Err(SupervisorError::ReloadExited {
                unit: name,
                pid,
                tail: tail(&log, 20),
                log,
            });
        }
        let _ = writeln!(logf, "-- kubeha service: reloaded {name} (pid {pid}) --");
        Ok(ServiceStatus {
            unit: name,
            active: true,
            pid: Some(pid),
            log,
            note: Some("reloaded".into()),
        })
    }
}

/// `haproxy … -c … -q …`: a quiet configuration check.
fn is_quiet_haproxy_check(argv: &[String]) -> bool {
    let program = argv.first().map(|p| p.rsplit('/').next().unwrap_or(p));
    program == Some("haproxy") && argv.iter().any(|a| a == "-c") && argv.iter().any(|a| a == "-q")
}

/// What a log file got from byte `from` on.
fn read_from(path: &Path, from: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The first condition that fails, as `Key=value`, or `None` when the unit may start.
fn failed_condition(conds: &[Condition]) -> Option<String> {
    let holds = |c: &Condition| {
        let p = Path::new(&c.path);
        let v = match c.kind.as_str() {
            "ConditionPathExists" => p.exists(),
            "ConditionFileNotEmpty" => fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0),
            "ConditionPathIsDirectory" => p.is_dir(),
            _ => true,
        };
        v != c.negate
    };
    let show = |c: &Condition| format!("{}={}{}", c.kind, if c.negate { "!" } else { "" }, c.path);
    if let Some(c) = conds.iter().filter(|c| !c.trigger).find(|c| !holds(c)) {
        return Some(show(c));
    }
    let triggers: Vec<&Condition> = conds.iter().filter(|c| c.trigger).collect();
    if !triggers.is_empty() && !triggers.iter().any(|c| holds(c)) {
        return Some(
            triggers
                .iter()
                .map(|c| show(c))
                .collect::<Vec<_>>()
                .join(" | "),
        );
    }
    None
}

/// Who a service runs as (`User=`, `Group=`); root when neither is set.
#[derive(Debug, Clone)]
struct Credentials {
    user: Option<String>,
    uid: Option<u32>,
    group: String,
    gid: u32,
}

fn credentials(u: &Unit) -> Result<Option<Credentials>, SupervisorError> {
    let unknown = |what: &'static str, name: &str| SupervisorError::UnknownUser {
        unit: u.name.clone(),
        what,
        name: name.to_string(),
    };
    let user = match &u.config.user {
        Some(user) => Some((
            user.clone(),
            lookup_id("/etc/passwd", user).ok_or_else(|| unknown("user", user))?,
        )),
        None => None,
    };
    let (group, gid) = match (&u.config.group, &user) {
        (Some(g), _) => (
            g.clone(),
            lookup_id("/etc/group", g)
                .ok_or_else(|| unknown("group", g))?
                .0,
        ),
        (None, Some((_, (_, primary)))) => (primary.to_string(), *primary),
        (None, None) => return Ok(None),
    };
    Ok(Some(Credentials {
        uid: user.as_ref().map(|(_, (uid, _))| *uid),
        user: user.map(|(name, _)| name),
        group,
        gid,
    }))
}

/// `setpriv … --` switching to the service's user and group (util-linux; execs in place).
fn setpriv_args(creds: Option<&Credentials>) -> Vec<String> {
    let Some(c) = creds else { return Vec::new() };
    let mut v = vec!["setpriv".to_string()];
    if let Some(user) = &c.user {
        v.push(format!("--reuid={user}"));
    }
    v.push(format!("--regid={}", c.group));
    v.push(if c.user.is_some() {
        "--init-groups".into()
    } else {
        "--clear-groups".into()
    });
    v.push("--".into());
    v
}

/// (id, primary gid) of a name or number in a passwd/group-format file.
fn lookup_id(file: &str, name: &str) -> Option<(u32, u32)> {
    if let Ok(n) = name.parse::<u32>() {
        return Some((n, n));
    }
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name)).then(|| {
            Some((
                f.get(2)?.parse().ok()?,
                f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0),
            ))
        })?
    })
}

fn working_directory(u: &Unit) -> Result<PathBuf, SupervisorError> {
    let Some(wd) = &u.config.working_directory else {
        return Ok(PathBuf::from("/"));
    };
    let (optional, wd) = match wd.strip_prefix('-') {
        Some(w) => (true, w),
        None => (false, wd.as_str()),
    };
    let p = if wd == "~" {
        PathBuf::from("/root")
    } else {
        PathBuf::from(wd)
    };
    match (p.is_dir(), optional) {
        (true, _) => Ok(p),
        (false, true) => Ok(PathBuf::from("/")),
        (false, false) => Err(SupervisorError::WorkingDirectory {
            unit: u.name.clone(),
            path: p,
        }),
    }
}

/// `LimitNOFILE=` as prlimit's `soft:hard`. Without CAP_SYS_RESOURCE (some sandboxes) the
/// hard limit cannot be raised: the values are lowered to it, with a note for the log.
fn nofile_limit(value: &str) -> (String, Option<String>) {
    let parse = |s: &str| {
        if s == "infinity" || s == "unlimited" {
            Some(u64::MAX)
        } else {
            s.parse::<u64>().ok()
        }
    };
    let (soft, hard) = value.split_once(':').unwrap_or((value, value));
    let (Some(soft), Some(hard)) = (parse(soft), parse(hard)) else {
        return (value.replace("infinity", "unlimited"), None);
    };
    let show = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    const CAP_SYS_RESOURCE: u32 = 24;
    let current_hard = fs::read_to_string("/proc/self/limits").ok().and_then(|l| {
        l.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(4).and_then(parse))
    });
    match current_hard {
        Some(cur) if cap_eff & (1 << CAP_SYS_RESOURCE) == 0 && hard > cur => {
            let (s, h) = (soft.min(cur), cur);
            (
                format!("{}:{}", show(s), show(h)),
                Some(format!(
                    "LimitNOFILE={value} lowered to {} (no CAP_SYS_RESOURCE to raise the hard limit)",
                    show(h)
                )),
            )
        }
        _ => (format!("{}:{}", show(soft), show(hard)), None),
    }
}

/// A bare program name is searched in the service's PATH, as systemd does.
fn resolve_program(program: &str, env: &BTreeMap<String, String>) -> String {
    if program.starts_with('/') {
        return program.to_string();
    }
    let path = env.get("PATH").map(String::as_str).unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.to_string())
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn write_small(path: &Path, content: &str) -> Result<(), SupervisorError> {
    atomicwrites::AtomicFile::new(path, atomicwrites::AllowOverwrite)
        .write(|f| f.write_all(content.as_bytes()))
        .map_err(|e| SupervisorError::Io {
            action: "write",
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A supervisor over temp dirs: units in `<tmp>/units`, state in `<tmp>/run`.
    fn sup(tmp: &Path) -> Supervisor {
        Supervisor {
            unit_dirs: vec![tmp.join("etc"), tmp.join("lib")],
            run_dir: tmp.join("run"),
            start_grace: Duration::from_millis(300),
            stop_timeout: Duration::from_secs(2),
        }
    }

    fn write(p: &Path, text: &str) {
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    }

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("etcd").ok().as_deref(), Some("etcd.service"));
        assert_eq!(
            unit_name("etcd.service").ok().as_deref(),
            Some("etcd.service")
        );
        assert!(unit_name("../x.service").is_err());
        assert!(unit_name("").is_err());
    }

    #[test]
    fn lookup_precedence_and_dropins() {
        let t = tempfile::tempdir().expect("tmp");
        let s = sup(t.path());
        write(
            &t.path().join("lib/demo.service"),
            "[Service]\nExecStart=/bin/false\n",
        );
        write(
            &t.path().join("etc/demo.service"),
            "[Service]\nExecStart=/bin/sleep 5\nEnvironment=A=1\n",
        );
        write(
            &t.path().join("lib/demo.service.d/10-x.conf"),
            "[Service]\nEnvironment=B=lib\n",
        );
        write(
            &t.path().join("etc/demo.service.d/10-x.conf"),
            "[Service]\nEnvironment=B=etc\n",
        );
        write(
            &t.path().join("lib/demo.service.d/20-y.conf"),
            "[Service]\nExecStart=\nExecStart=/bin/sleep 6\n",
        );
        let u = s.load("demo").expect("load");
        assert_eq!(u.path, t.path().join("etc/demo.service"));
        assert_eq!(
            u.dropins,
            vec![
                t.path().join("etc/demo.service.d/10-x.conf"),
                t.path().join("lib/demo.service.d/20-y.conf")
            ]
        );
        assert_eq!(u.config.exec_start.len(), 1);
        assert_eq!(u.config.exec_start[0].words, ["/bin/sleep", "6"]);
        assert_eq!(
            u.config.environment,
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "etc".to_string())
            ]
        );
        assert!(matches!(
            s.load("nope"),
            Err(SupervisorError::NotFound { .. })
        ));
        write(&t.path().join("etc/masked.service"), "");
        assert!(matches!(
            s.load("masked"),
            Err(SupervisorError::Masked { .. })
        ));
    }

    #[test]
    fn start_status_stop_a_process() {
        let t = tempfile::tempdir().expect("tmp");
        let s = sup(t.path());
        let envf = t.path().join("env");
        write(&envf, "SECS=\"30\"\n");
        write(
            &t.path().join("etc/sleeper.service"),
            &format!(
                "[Service]\nEnvironment=SECS=1 WORD=x\nEnvironmentFile={}\nExecStart=/bin/sleep $SECS\n",
                envf.display()
            ),
        );
        let st = s.start("sleeper.service").expect("start");
        assert!(st.active, "{st}");
        let pid = st.pid.expect("pid");
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        assert_eq!(
            cmdline, b"/bin/sleep\x0030\x00",
            "EnvironmentFile= wins over Environment="
        );
        assert_eq!(
            s.start("sleeper").expect("again").note.as_deref(),
            Some("already active")
        );
        assert!(s.status("sleeper").expect("status").active);
        let st = s.stop("sleeper").expect("stop");
        assert!(!st.active);
        assert!(!sys::alive(pid));
        assert!(!s.status("sleeper").expect("status").active);
        assert_eq!(
            s.stop("sleeper").expect("stop again").note.as_deref(),
            Some("already inactive")
        );
    }

    #[test]
    fn start_failure_shows_the_log() {
        let t = tempfile::tempdir().expect("tmp");
        let s = sup(t.path());
        write(
            &t.path().join("etc/bad.service"),
            "[Service]\nExecStart=/bin/sh -c \"echo broken config >&2; exit 3\"\n",
        );
        let e = s.start("bad").expect_err("fails");
        let msg = e.to_string();
        assert!(
            msg.contains("exit status: 3") && msg.contains("broken config"),
            "{msg}"
        );
        assert!(!s.status("bad").expect("status").active);
    }

    #[test]
    fn a_missing_optional_exec_start_pre_is_ignored_and_a_required_one_fails() {
        let t = tempfile::tempdir().expect("tmp");
        let s = sup(t.path());
        write(
            &t.path().join("etc/opt.service"),
            "[Service]\nExecStartPre=-/nonexistent/modprobe overlay\nExecStart=/bin/sleep 30\n",
        );
        let st = s
            .start("opt")
            .expect("started despite the missing '-' program");
        assert!(st.active, "{st}");
        s.stop("opt").expect("stop");
        write(
            &t.path().join("etc/req.service"),
            "[Service]\nExecStartPre=/nonexistent/modprobe overlay\nExecStart=/bin/sleep 30\n",
        );
        let e = s
            .start("req")
            .expect_err("a required ExecStartPre that cannot run");
        assert!(e.to_string().contains("/nonexistent/modprobe"), "{e}");
        assert!(!s.status("req").expect("status").active);
    }

    #[test]
    fn conditions_skip_the_start() {
        let t = tempfile::tempdir().expect("tmp");
        let s = sup(t.path());
        write(
            &t.path().join("etc/cond.service"),
            "[Unit]\nConditionFileNotEmpty=/nonexistent/keepalived.conf\n[Service]\nExecStart=/bin/sleep 30\n",
        );
        let st = s.start("cond").expect("skipped, not failed");
        assert!(!st.active);
        assert!(
            st.note
                .as_deref()
                .is_some_and(|n| n.contains("ConditionFileNotEmpty")),
            "{st}"
        );
    }

    #[test]
    fn reload_runs_exec_reload_against_the_main_process() {
        let t = tempfile::tempdir().expect("tmp");
        let s = sup(t.path());
        let mark = t.path().join("reloaded");
        write(
            &t.path().join("etc/hup.service"),
            &format!(
                "[Service]\nExecStart=/bin/sh -c \"trap 'echo hup >> {m}' HUP; while :; do sleep 0.1; done\"\nExecReload=/bin/kill -HUP $MAINPID\n",
                m = mark.display()
            ),
        );
        assert!(
            matches!(s.reload("hup"), Err(SupervisorError::NotActive { .. })),
            "an inactive unit is not reloaded"
        );
        let pid = s.start("hup").expect("start").pid.expect("pid");
        let st = s.reload("hup").expect("reload");
        assert_eq!((st.pid, st.note.as_deref()), (Some(pid), Some("reloaded")));
        assert!(
            sys::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
                fs::read_to_string(&mark).is_ok_and(|m| m == "hup\n")
            }),
            "the main process got SIGHUP"
        );
        assert_eq!(s.status("hup").expect("status").pid, Some(pid));
        s.stop("hup").expect("stop");
        write(
            &t.path().join("etc/plain.service"),
            "[Service]\nExecStart=/bin/sleep 30\n",
        );
        let e = s.reload("plain").expect_err("no ExecReload");
        assert!(
            matches!(e, SupervisorError::NoExecReload { .. }) && e.is_input(),
            "{e}"
        );
    }

    #[test]
    fn a_failed_reload_line_stops_the_reload_and_keeps_the_process() {
        let t = tempfile::tempdir().expect("tmp");
        let s = sup(t.path());
        write(
            &t.path().join("etc/strict.service"),
            "[Service]\nExecStart=/bin/sleep 30\n\
             ExecReload=-/bin/false\n\
             ExecReload=/bin/sh -c \"echo config is broken >&2; exit 4\"\n\
             ExecReload=/bin/kill -TERM $MAINPID\n",
        );
        let pid = s.start("strict").expect("start").pid.expect("pid");
        let e = s.reload("strict").expect_err("refused");
        let msg = e.to_string();
        assert!(
            matches!(e, SupervisorError::ReloadFailed { .. })
                && msg.contains("exit status: 4")
                && msg.contains("config is broken")
                && msg.contains(&format!("pid {pid}")),
            "{msg}"
        );
        // The line after the failed one (kill -TERM) did not run.
        thread::sleep(Duration::from_millis(300));
        assert_eq!(s.status("strict").expect("status").pid, Some(pid));
        s.stop("strict").expect("stop");
    }

    /// A free port on 127.0.0.1 (bound, then released).
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }

    /// Debian's HAProxy in master-worker mode under the supervisor: a reload keeps the
    /// master's pid and an established connection through the old worker; a broken config
    /// is refused with HAProxy's own words and the old process keeps serving.
    #[test]
    fn haproxy_reload_keeps_established_connections_and_refuses_a_broken_config() {
        use std::io::{BufRead, BufReader, Read};
        use std::net::{TcpListener, TcpStream};
        let haproxy = Path::new("/usr/sbin/haproxy");
        assert!(
            haproxy.exists(),
            "{} is not installed (apt-get install haproxy)",
            haproxy.display()
        );
        let t = tempfile::tempdir().expect("tmp");
        let s = sup(t.path());
        // Backend: echoes each line with its own tag, so a reply says which server answered.
        let backend = |tag: &'static str| {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind backend");
            let port = l.local_addr().expect("addr").port();
            thread::spawn(move || {
                for c in l.incoming().flatten() {
                    thread::spawn(move || {
                        let mut w = c.try_clone().expect("clone");
                        for line in BufReader::new(c).lines().map_while(Result::ok) {
                            if w.write_all(format!("{tag}:{line}\n").as_bytes()).is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            port
        };
        let (b1, b2) = (backend("one"), backend("two"));
        let front = free_port();
        let cfg = t.path().join("haproxy.cfg");
        let config = |servers: &[(&str, u16)]| {
            let mut c = format!(
                "global\n    log stdout format raw local0\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\nfrontend f\n    bind 127.0.0.1:{front}\n    default_backend b\nbackend b\n    balance roundrobin\n"
            );
            for (n, p) in servers {
                c.push_str(&format!("    server {n} 127.0.0.1:{p}\n"));
            }
            c
        };
        fs::write(&cfg, config(&[("s1", b1)])).expect("cfg");
        write(
            &t.path().join("etc/hap.service"),
            &format!(
                "[Service]\nType=notify\nEnvironment=\"CONFIG={cfg}\"\n\
                 ExecStart={hp} -Ws -f $CONFIG\n\
                 ExecReload={hp} -Ws -f $CONFIG -c -q\n\
                 ExecReload=/bin/kill -USR2 $MAINPID\nKillMode=mixed\n",
                cfg = cfg.display(),
                hp = haproxy.display()
            ),
        );
        let master = s.start("hap").expect("start haproxy").pid.expect("pid");
        let connect = || {
            let mut last = None;
            for _ in 0..50 {
                match TcpStream::connect(("127.0.0.1", front)) {
                    Ok(c) => return c,
                    Err(e) => last = Some(e),
                }
                thread::sleep(Duration::from_millis(100));
            }
            panic!("haproxy does not accept on {front}: {last:?}");
        };
        let ask = |c: &mut TcpStream, r: &mut BufReader<TcpStream>, what: &str| {
            c.write_all(format!("{what}\n").as_bytes()).expect("send");
            let mut line = String::new();
            r.read_line(&mut line).expect("reply");
            line.trim_end().to_string()
        };
        let mut old = connect();
        old.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut old_r = BufReader::new(old.try_clone().expect("clone"));
        assert_eq!(ask(&mut old, &mut old_r, "before"), "one:before");

        // A second server: reloaded, same master, the old connection still answers.
        fs::write(&cfg, config(&[("s1", b1), ("s2", b2)])).expect("cfg");
        let st = s.reload("hap").expect("reload");
        assert_eq!(st.pid, Some(master));
        assert_eq!(ask(&mut old, &mut old_r, "after"), "one:after");
        // New connections see the new config: round robin reaches the new server.
        let tags: Vec<String> = (0..4)
            .map(|i| {
                let mut c = connect();
                c.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut r = BufReader::new(c.try_clone().expect("clone"));
                ask(&mut c, &mut r, &format!("n{i}"))
            })
            .collect();
        assert!(
            tags.iter().any(|t| t.starts_with("two:")),
            "the new server is in the running config: {tags:?}"
        );

        // A broken config is refused with HAProxy's alert; the running one keeps serving.
        fs::write(&cfg, "global\n    no_such_keyword 1\n").expect("cfg");
        let e = s.reload("hap").expect_err("refused");
        let msg = e.to_string();
        assert!(
            matches!(e, SupervisorError::ReloadFailed { .. })
                && msg.contains("no_such_keyword")
                && msg.contains(&format!("pid {master}")),
            "{msg}"
        );
        assert_eq!(s.status("hap").expect("status").pid, Some(master));
        assert_eq!(ask(&mut old, &mut old_r, "still"), "one:still");
        let mut c = connect();
        c.write_all(b"fresh\n").expect("send");
        let mut buf = [0u8; 4];
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        c.read_exact(&mut buf).expect("reply from the old config");
        drop((old, old_r, c));
        s.stop("hap").expect("stop");
        assert!(!sys::alive(master));
    }

    #[test]
    fn missing_environment_file() {
        let t = tempfile::tempdir().expect("tmp");
        let s = sup(t.path());
        write(
            &t.path().join("etc/e.service"),
            "[Service]\nEnvironmentFile=/nonexistent/env\nExecStart=/bin/sleep 30\n",
        );
        assert!(matches!(s.start("e"), Err(SupervisorError::EnvFile { .. })));
        write(
            &t.path().join("etc/f.service"),
            "[Service]\nEnvironmentFile=-/nonexistent/env\nExecStart=/bin/true\n",
        );
        assert!(
            matches!(s.start("f"), Err(SupervisorError::Exited { .. })),
            "true exits at once"
        );
    }
}
