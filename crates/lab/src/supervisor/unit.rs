//! The part of systemd's unit file format the lab supervisor runs: `[Service]` `ExecStart`,
//! `ExecStartPre`, `ExecReload`, `Environment`, `EnvironmentFile`, `WorkingDirectory`, `User`, `Group`,
//! `LimitNOFILE`, `RuntimeDirectory`, `KillMode`, `Type`; `[Unit]` path conditions;
//! drop-ins; `%` specifiers; `$VAR` / `${VAR}` expansion as systemd does it
//! (systemd.service(5) "Command lines", systemd.exec(5) "Environment").

use std::collections::BTreeMap;

/// A command line of `ExecStart=` / `ExecStartPre=` / `ExecReload=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecLine {
    /// `-`: a failing exit status is ignored.
    pub ignore_failure: bool,
    /// `@`: the second word is `argv[0]` (the lab runs the program with its path as `argv[0]`).
    pub custom_argv0: bool,
    /// `:`: no environment variable expansion.
    pub no_env_expansion: bool,
    /// `+`: runs with full privileges (ignores `User=`/`Group=`).
    pub privileged: bool,
    /// Words after unquoting and `%` specifiers, before `$VAR` expansion; the first is the
    /// program (with `@`, the second word is the `argv[0]` and is dropped).
    pub words: Vec<String>,
}

/// `EnvironmentFile=`: `-` makes a missing file fine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileRef {
    pub path: String,
    pub optional: bool,
}

/// A `[Unit]` path condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `ConditionPathExists`, `ConditionFileNotEmpty`, `ConditionPathIsDirectory`.
    pub kind: String,
    pub path: String,
    /// `!`: the condition is negated.
    pub negate: bool,
    /// `|`: a triggering condition (at least one of those must hold).
    pub trigger: bool,
}

/// The settings the supervisor uses, after the unit file and its drop-ins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceConfig {
    pub service_type: Option<String>,
    /// Every `ExecStart=` line after resets; the supervisor runs the first.
    pub exec_start: Vec<ExecLine>,
    pub exec_start_pre: Vec<ExecLine>,
    /// `ExecReload=` lines, run in order by a reload (`$MAINPID` is the main process).
    pub exec_reload: Vec<ExecLine>,
    /// `Environment=` assignments in order (a later one wins).
    pub environment: Vec<(String, String)>,
    pub environment_files: Vec<EnvFileRef>,
    pub working_directory: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub limit_nofile: Option<String>,
    pub runtime_directory: Vec<String>,
    pub kill_mode: Option<String>,
    pub conditions: Vec<Condition>,
}

/// What `%` specifiers expand to.
#[derive(Debug, Clone)]
pub struct Specifiers {
    /// Full unit name, e.g. `etcd.service`, `getty@tty1.service`.
    pub unit: String,
    pub hostname: String,
}

impl Specifiers {
    fn expand(&self, s: &str) -> Result<String, String> {
        let (stem, _suffix) = self.unit.rsplit_once('.').unwrap_or((&self.unit, ""));
        let (prefix, instance) = match stem.split_once('@') {
            Some((p, i)) => (p, i),
            None => (stem, ""),
        };
        let mut out = String::with_capacity(s.len());
        let mut it = s.chars();
        while let Some(c) = it.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(spec) = it.next() else {
                return Err("a lone '%' at the end (write %% for a percent sign)".into());
            };
            match spec {
                '%' => out.push('%'),
                'n' => out.push_str(&self.unit),
                'N' => out.push_str(stem),
                'p' => out.push_str(prefix),
                'i' | 'I' => out.push_str(instance),
                'H' => out.push_str(&self.hostname),
                'l' => out.push_str(self.hostname.split('.').next().unwrap_or(&self.hostname)),
                'h' => out.push_str("/root"),
                'u' => out.push_str("root"),
                'U' => out.push('0'),
                't' => out.push_str("/run"),
                'S' => out.push_str("/var/lib"),
                'C' => out.push_str("/var/cache"),
                'L' => out.push_str("/var/log"),
                'E' => out.push_str("/etc"),
                'T' => out.push_str("/tmp"),
                'V' => out.push_str("/var/tmp"),
                other => return Err(format!("unsupported specifier %{other}")),
            }
        }
        Ok(out)
    }
}

/// A problem in a unit file at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseProblem {
    pub line: usize,
    pub message: String,
}

/// `(section, key, value, line)` of every assignment, with continuation lines joined.
pub fn assignments(text: &str) -> Result<Vec<(String, String, String, usize)>, ParseProblem> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let line_no = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.starts_with('[') {
            let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
                return Err(ParseProblem {
                    line: line_no,
                    message: format!("malformed section header '{trimmed}'"),
                });
            };
            section = name.to_string();
            continue;
        }
        // A trailing backslash continues the line (systemd joins with a space); comment
        // lines inside a continuation are skipped.
        let mut logical = trimmed.to_string();
        while logical.ends_with('\\') {
            logical.pop();
            logical.push(' ');
            match lines.next() {
                Some((_, next)) => {
                    let n = next.trim();
                    if n.starts_with('#') || n.starts_with(';') {
                        continue;
                    }
                    logical.push_str(n);
                }
                None => break,
            }
        }
        let Some((k, v)) = logical.split_once('=') else {
            return Err(ParseProblem {
                line: line_no,
                message: format!("expected KEY=VALUE, found '{logical}'"),
            });
        };
        out.push((
            section.clone(),
            k.trim().to_string(),
            v.trim().to_string(),
            line_no,
        ));
    }
    Ok(out)
}

/// Applies one file's assignments on top of `cfg` (the unit file first, then each drop-in).
pub fn apply(cfg: &mut ServiceConfig, text: &str, sp: &Specifiers) -> Result<(), ParseProblem> {
    for (section, key, value, line) in assignments(text)? {
        let err = |message: String| ParseProblem {
            line,
            message: format!("{key}=: {message}"),
        };
        let pf = |s: &str| sp.expand(s).map_err(err);
        match (section.as_str(), key.as_str()) {
            ("Service", "ExecStart") if value.is_empty() => cfg.exec_start.clear(),
            ("Service", "ExecStart") => cfg.exec_start.push(parse_exec(&value, sp).map_err(err)?),
            ("Service", "ExecStartPre") if value.is_empty() => cfg.exec_start_pre.clear(),
            ("Service", "ExecStartPre") => cfg
                .exec_start_pre
                .push(parse_exec(&value, sp).map_err(err)?),
            ("Service", "ExecReload") if value.is_empty() => cfg.exec_reload.clear(),
            ("Service", "ExecReload") => cfg.exec_reload.push(parse_exec(&value, sp).map_err(err)?),
            ("Service", "Environment") if value.is_empty() => cfg.environment.clear(),
            ("Service", "Environment") => {
                for word in split_words(&value, true).map_err(err)? {
                    let word = pf(&word)?;
                    let Some((k, v)) = word.split_once('=') else {
                        return Err(err(format!("'{word}' is not NAME=VALUE")));
                    };
                    if !valid_env_name(k) {
                        return Err(err(format!("'{k}' is not a valid variable name")));
                    }
                    cfg.environment.push((k.to_string(), v.to_string()));
                }
            }
            ("Service", "EnvironmentFile") if value.is_empty() => cfg.environment_files.clear(),
            ("Service", "EnvironmentFile") => {
                let (optional, path) = match value.strip_prefix('-') {
                    Some(p) => (true, p.trim()),
                    None => (false, value.as_str()),
                };
                cfg.environment_files.push(EnvFileRef {
                    path: pf(path)?,
                    optional,
                });
            }
            ("Service", "WorkingDirectory") => {
                cfg.working_directory = (!value.is_empty()).then(|| pf(&value)).transpose()?
            }
            ("Service", "Type") => cfg.service_type = (!value.is_empty()).then(|| value.clone()),
            ("Service", "User") => {
                cfg.user = (!value.is_empty()).then(|| pf(&value)).transpose()?
            }
            ("Service", "Group") => {
                cfg.group = (!value.is_empty()).then(|| pf(&value)).transpose()?
            }
            ("Service", "LimitNOFILE") => {
                cfg.limit_nofile = (!value.is_empty()).then(|| value.clone())
            }
            ("Service", "KillMode") => cfg.kill_mode = (!value.is_empty()).then(|| value.clone()),
            ("Service", "RuntimeDirectory") if value.is_empty() => cfg.runtime_directory.clear(),
            ("Service", "RuntimeDirectory") => {
                for w in value.split_whitespace() {
                    cfg.runtime_directory.push(pf(w)?);
                }
            }
            ("Unit", k) if k.starts_with("Condition") && value.is_empty() => cfg.conditions.clear(),
            (
                "Unit",
                k @ ("ConditionPathExists" | "ConditionFileNotEmpty" | "ConditionPathIsDirectory"),
            ) => {
                let mut v = value.as_str();
                let trigger = v.starts_with('|');
                v = v.trim_start_matches('|');
                let negate = v.starts_with('!');
                v = v.trim_start_matches('!');
                cfg.conditions.push(Condition {
                    kind: k.to_string(),
                    path: pf(v)?,
                    negate,
                    trigger,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses a command line: prefixes, words, specifiers.
fn parse_exec(value: &str, sp: &Specifiers) -> Result<ExecLine, String> {
    let mut line = ExecLine {
        ignore_failure: false,
        custom_argv0: false,
        no_env_expansion: false,
        privileged: false,
        words: Vec::new(),
    };
    let mut rest = value.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("!!") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix(['-', '@', ':', '+', '!', '|']) {
            match rest.as_bytes()[0] {
                b'-' => line.ignore_failure = true,
                b'@' => line.custom_argv0 = true,
                b':' => line.no_env_expansion = true,
                b'+' => line.privileged = true,
                _ => {}
            }
            rest = r;
        } else {
            break;
        }
    }
    let mut words: Vec<String> = split_words(rest, true)?
        .iter()
        .map(|w| sp.expand(w))
        .collect::<Result<_, _>>()?;
    if line.custom_argv0 && words.len() >= 2 {
        words.remove(1);
    }
    if words.is_empty() {
        return Err("no command".into());
    }
    if !words[0].starts_with('/') && words[0].contains('/') {
        return Err(format!(
            "'{}' must be an absolute path or a bare name",
            words[0]
        ));
    }
    line.words = words;
    Ok(line)
}

/// Splits on whitespace, honouring "double" and 'single' quotes; with `cunescape`, C escapes
/// (`\n`, `\t`, `\\`, `\"`, `\s`, `\xHH`, `\NNN`) are decoded.
pub fn split_words(s: &str, cunescape: bool) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                in_word = true;
                let Some(n) = chars.next() else {
                    cur.push('\\');
                    break;
                };
                if !cunescape {
                    cur.push(n);
                    continue;
                }
                match n {
                    'n' => cur.push('\n'),
                    't' => cur.push('\t'),
                    'r' => cur.push('\r'),
                    'a' => cur.push('\x07'),
                    'b' => cur.push('\x08'),
                    'f' => cur.push('\x0c'),
                    'v' => cur.push('\x0b'),
                    's' => cur.push(' '),
                    'x' => {
                        let h: String =
                            [chars.next(), chars.next()].into_iter().flatten().collect();
                        let v =
                            u8::from_str_radix(&h, 16).map_err(|_| format!("bad escape \\x{h}"))?;
                        cur.push(char::from(v));
                    }
                    '0'..='7' => {
                        let mut o = String::from(n);
                        for _ in 0..2 {
                            match chars.peek() {
                                Some(d @ '0'..='7') => {
                                    o.push(*d);
                                    chars.next();
                                }
                                _ => break,
                            }
                        }
                        let v =
                            u8::from_str_radix(&o, 8).map_err(|_| format!("bad escape \\{o}"))?;
                        cur.push(char::from(v));
                    }
                    other => cur.push(other),
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                in_word = true;
                quote = Some(c);
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

pub fn valid_env_name(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Parses an `EnvironmentFile=` file: `KEY=VALUE` lines, `#`/`;` comments, single or double
/// quoted values, backslash continuation. Invalid lines are skipped, as systemd does.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let mut logical = line.trim_start().to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with(';') {
            continue;
        }
        // Continuation (outside quotes, the common case): join with the next line.
        while logical.ends_with('\\') && !logical.ends_with("\\\\") {
            logical.pop();
            match lines.next() {
                Some(n) => logical.push_str(n),
                None => break,
            }
        }
        let Some((k, v)) = logical.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if !valid_env_name(k) {
            continue;
        }
        let v = v.trim();
        let value = if let Some(inner) = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .filter(|_| v.len() >= 2)
        {
            let mut s = String::new();
            let mut it = inner.chars();
            while let Some(c) = it.next() {
                if c == '\\' {
                    match it.next() {
                        Some(n @ ('"' | '\\' | '`' | '$')) => s.push(n),
                        Some('n') => s.push('\n'),
                        Some(n) => {
                            s.push('\\');
                            s.push(n);
                        }
                        None => s.push('\\'),
                    }
                } else {
                    s.push(c);
                }
            }
            s
        } else if let Some(inner) = v
            .strip_prefix('\'')
            .and_then(|x| x.strip_suffix('\''))
            .filter(|_| v.len() >= 2)
        {
            inner.to_string()
        } else {
            v.to_string()
        };
        out.push((k.to_string(), value));
    }
    out
}

/// Expands `$VAR` (a whole word: split at whitespace into zero or more words), `${VAR}`
/// (anywhere: exactly its value) and `$$` (a dollar sign), as systemd does for command lines.
pub fn expand_argv(words: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for w in words {
        if let Some(name) = w.strip_prefix('$').filter(|n| valid_env_name(n)) {
            if let Some(v) = env.get(name) {
                out.extend(
                    split_words(v, false)
                        .unwrap_or_else(|_| v.split_whitespace().map(str::to_string).collect()),
                );
            }
            continue;
        }
        out.push(expand_braced(w, env));
    }
    out
}

fn expand_braced(w: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(w.len());
    let mut rest = w;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some((name, tail)) = after
            .strip_prefix('{')
            .and_then(|a| a.split_once('}'))
            .filter(|(n, _)| valid_env_name(n))
        {
            out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(unit: &str) -> Specifiers {
        Specifiers {
            unit: unit.into(),
            hostname: "etcd-1".into(),
        }
    }

    fn load(unit: &str, texts: &[&str]) -> ServiceConfig {
        let mut cfg = ServiceConfig::default();
        for t in texts {
            apply(&mut cfg, t, &sp(unit)).expect("parses");
        }
        cfg
    }

    fn env_map(cfg: &ServiceConfig, files: &[&str]) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = cfg.environment.iter().cloned().collect();
        for f in files {
            m.extend(parse_env_file(f));
        }
        m
    }

    #[test]
    fn debian_haproxy_unit() {
        let cfg = load(
            "haproxy.service",
            &[include_str!("fixtures/haproxy.service")],
        );
        assert_eq!(cfg.service_type.as_deref(), Some("notify"));
        assert_eq!(cfg.kill_mode.as_deref(), Some("mixed"));
        assert_eq!(
            cfg.environment_files,
            vec![
                EnvFileRef {
                    path: "/etc/default/haproxy".into(),
                    optional: true
                },
                EnvFileRef {
                    path: "/etc/sysconfig/haproxy".into(),
                    optional: true
                }
            ]
        );
        assert_eq!(cfg.exec_start.len(), 1);
        let env = env_map(&cfg, &[include_str!("fixtures/default-haproxy")]);
        // Reload: check the config, then SIGUSR2 to the master (master-worker mode, -Ws).
        let mut with_pid = env.clone();
        with_pid.insert("MAINPID".into(), "4242".into());
        let reload: Vec<Vec<String>> = cfg
            .exec_reload
            .iter()
            .map(|l| expand_argv(&l.words, &with_pid))
            .collect();
        assert_eq!(
            reload,
            [
                vec![
                    "/usr/sbin/haproxy",
                    "-Ws",
                    "-f",
                    "/etc/haproxy/haproxy.cfg",
                    "-c",
                    "-q",
                    "-S",
                    "/run/haproxy-master.sock"
                ],
                vec!["/bin/kill", "-USR2", "4242"]
            ]
        );
        assert_eq!(
            expand_argv(&cfg.exec_start[0].words, &env),
            [
                "/usr/sbin/haproxy",
                "-Ws",
                "-f",
                "/etc/haproxy/haproxy.cfg",
                "-p",
                "/run/haproxy.pid",
                "-S",
                "/run/haproxy-master.sock"
            ]
        );
        // The defaults file may override CONFIG and add options.
        let env = env_map(
            &cfg,
            &["CONFIG=\"/etc/haproxy/lab.cfg\"\nEXTRAOPTS=\"-de -m 16\"\n"],
        );
        assert_eq!(
            expand_argv(&cfg.exec_start[0].words, &env),
            [
                "/usr/sbin/haproxy",
                "-Ws",
                "-f",
                "/etc/haproxy/lab.cfg",
                "-p",
                "/run/haproxy.pid",
                "-de",
                "-m",
                "16"
            ]
        );
    }

    #[test]
    fn debian_keepalived_unit() {
        let cfg = load(
            "keepalived.service",
            &[include_str!("fixtures/keepalived.service")],
        );
        assert_eq!(
            cfg.conditions,
            vec![Condition {
                kind: "ConditionFileNotEmpty".into(),
                path: "/etc/keepalived/keepalived.conf".into(),
                negate: false,
                trigger: false
            }]
        );
        let env = env_map(&cfg, &[include_str!("fixtures/default-keepalived")]);
        assert_eq!(env.get("DAEMON_ARGS").map(String::as_str), Some(""));
        assert_eq!(cfg.exec_reload.len(), 1);
        assert_eq!(cfg.exec_reload[0].words, ["/bin/kill", "-HUP", "$MAINPID"]);
        assert_eq!(
            expand_argv(&cfg.exec_start[0].words, &env),
            ["/usr/sbin/keepalived", "--dont-fork"]
        );
        // Without the defaults file the variable is unset: zero words as well.
        assert_eq!(
            expand_argv(&cfg.exec_start[0].words, &BTreeMap::new()),
            ["/usr/sbin/keepalived", "--dont-fork"]
        );
    }

    #[test]
    fn debian_etcd_unit_specifiers() {
        let cfg = load(
            "etcd.service",
            &[include_str!("fixtures/debian-etcd.service")],
        );
        assert_eq!(cfg.user.as_deref(), Some("etcd"));
        assert_eq!(cfg.limit_nofile.as_deref(), Some("65536"));
        let env = env_map(&cfg, &[]);
        assert_eq!(
            env.get("ETCD_NAME").map(String::as_str),
            Some("etcd-1"),
            "%H"
        );
        assert_eq!(
            cfg.environment_files,
            vec![EnvFileRef {
                path: "/etc/default/etcd".into(),
                optional: true
            }],
            "%p"
        );
        // The commented-out ExecStart is not taken.
        assert_eq!(
            expand_argv(&cfg.exec_start[0].words, &env),
            ["/usr/bin/etcd"]
        );
    }

    #[test]
    fn kubeha_etcd_unit_overrides_debian() {
        let cfg = load(
            "etcd.service",
            &[include_str!("fixtures/kubeha-etcd.service")],
        );
        assert_eq!(
            cfg.environment_files,
            vec![EnvFileRef {
                path: "/etc/etcd/etcd.env".into(),
                optional: false
            }]
        );
        let env = env_map(&cfg, &[include_str!("fixtures/etcd.env")]);
        let argv = expand_argv(&cfg.exec_start[0].words, &env);
        assert_eq!(argv[0], "/usr/bin/etcd");
        assert!(argv.contains(&"--name=etcd-1".to_string()), "{argv:?}");
        assert!(argv.contains(&"--initial-cluster=etcd-1=https://198.18.0.11:2380,etcd-2=https://198.18.0.12:2380".to_string()), "{argv:?}");
        assert_eq!(argv.len(), 6, "the binary and five flags: {argv:?}");
    }

    #[test]
    fn dropin_resets_exec_start_and_environment() {
        let dropin = "[Service]\nExecStart=\nExecStart=/usr/bin/etcd --name ${NAME}-x $ARGS\nEnvironment=\nEnvironment=NAME=override ARGS=\"--a --b\"\n";
        let cfg = load(
            "etcd.service",
            &[include_str!("fixtures/debian-etcd.service"), dropin],
        );
        assert_eq!(cfg.exec_start.len(), 1);
        let env = env_map(&cfg, &[]);
        assert_eq!(
            env.len(),
            2,
            "Environment= reset the unit's assignments: {env:?}"
        );
        assert_eq!(
            expand_argv(&cfg.exec_start[0].words, &env),
            ["/usr/bin/etcd", "--name", "override-x", "--a", "--b"]
        );
    }

    #[test]
    fn environment_quoting_and_prefixes() {
        let unit = "[Service]\n\
                    Environment=\"A=hello world\" B=2 'C=x y'\n\
                    Environment=D=%n\n\
                    ExecStartPre=-/bin/mkdir -p /run/x\n\
                    ExecStart=@/usr/bin/sleep sleeper \"${A}\" $B $$HOME $UNSET \\\n  ${UNSET}end\n";
        let cfg = load("demo.service", &[unit]);
        let env = env_map(&cfg, &[]);
        assert_eq!(env["A"], "hello world");
        assert_eq!(env["C"], "x y");
        assert_eq!(env["D"], "demo.service");
        assert!(cfg.exec_start_pre[0].ignore_failure);
        let l = &cfg.exec_start[0];
        assert!(l.custom_argv0);
        assert_eq!(
            expand_argv(&l.words, &env),
            ["/usr/bin/sleep", "hello world", "2", "$HOME", "end"]
        );
    }

    #[test]
    fn env_file_format() {
        let text = "# comment\n; also\nA=1\n  B = two words  \nC=\"quoted \\\"x\\\" $y\"\nD='single $z'\nE=con\\\ntinued\nbad line\n1X=no\n";
        let m: BTreeMap<_, _> = parse_env_file(text).into_iter().collect();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "quoted \"x\" $y");
        assert_eq!(m["D"], "single $z");
        assert_eq!(m["E"], "continued");
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn errors_name_the_line() {
        let mut cfg = ServiceConfig::default();
        let e = apply(
            &mut cfg,
            "[Service]\nExecStart=/bin/true\nEnvironment=NOEQUALS\n",
            &sp("x.service"),
        )
        .expect_err("refused");
        assert_eq!(e.line, 3);
        let e = apply(
            &mut cfg,
            "[Service]\nExecStart=/bin/sleep \"1\n",
            &sp("x.service"),
        )
        .expect_err("refused");
        assert!(e.message.contains("unterminated"), "{e:?}");
        let e = apply(
            &mut cfg,
            "[Service]\nExecStart=/bin/echo %z\n",
            &sp("x.service"),
        )
        .expect_err("refused");
        assert!(e.message.contains("%z"), "{e:?}");
    }

    #[test]
    fn template_specifiers() {
        let s = Specifiers {
            unit: "getty@tty1.service".into(),
            hostname: "h.example".into(),
        };
        assert_eq!(
            s.expand("%n %N %p %i %H %l %%").as_deref(),
            Ok("getty@tty1.service getty@tty1 getty tty1 h.example h %")
        );
    }
}
