//! What to run on a host, what came back, and the one place argv is quoted for a shell.
//!
//! ssh hands the remote side a single string that the login shell parses, so every word must be
//! quoted. Quoting happens only in [`shell_quote`]/[`shell_join`]; the rest of kubeha builds argv
//! vectors, or a constant script with user data passed as positional arguments
//! ([`Command::script`]), and never concatenates user data into shell text.

use std::{borrow::Cow, fmt, sync::Arc, time::Duration};

/// How long a command may run unless it says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// A program and its arguments to run on a host.
///
/// `argv[0]` is exec'd (through `timeout`, and `sudo` when asked), so it must be a program, not
/// a shell builtin; use [`Command::script`] for shell logic. Secrets belong in stdin: argv is
/// visible in process listings on both machines, even for sensitive commands.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    argv: Vec<String>,
    stdin: Option<Arc<Vec<u8>>>,
    sudo: bool,
    timeout: Duration,
    sensitive: bool,
    check: bool,
}

impl Command {
    /// A command from its argv; runs unprivileged, with [`DEFAULT_TIMEOUT`], and a non-zero exit
    /// is an error.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Command {
            argv: argv.into_iter().map(Into::into).collect(),
            stdin: None,
            sudo: false,
            timeout: DEFAULT_TIMEOUT,
            sensitive: false,
            check: true,
        }
    }

    /// `sh -c SCRIPT sh ARGS...`: `script` must be constant text; data goes in through
    /// [`Command::arg`] and is read as `"$1"`, `"$2"`, ... so it is never parsed as shell.
    pub fn script(script: &str) -> Self {
        Command::new(["sh", "-c", script, "sh"])
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.argv.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Bytes fed to the command's standard input (closed after them). Without this, stdin is
    /// empty.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(Arc::new(bytes.into()));
        self
    }

    /// Runs as root: prefixed with `sudo -n` when the login user is not root.
    pub fn sudo(mut self) -> Self {
        self.sudo = true;
        self
    }

    /// Kills the command (and fails with [`crate::TransportError::Timeout`]) after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keeps argv, stdin and stderr out of `Debug` output and error messages.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Returns the [`Output`] for any exit status instead of failing on a non-zero one.
    /// Connection failures are still errors.
    pub fn allow_failure(mut self) -> Self {
        self.check = false;
        self
    }

    /// The program and its arguments.
    pub fn get_argv(&self) -> &[String] {
        &self.argv
    }

    /// The bytes for standard input, if any.
    pub fn get_stdin(&self) -> Option<&[u8]> {
        self.stdin.as_deref().map(Vec::as_slice)
    }

    pub(crate) fn stdin_shared(&self) -> Option<Arc<Vec<u8>>> {
        self.stdin.clone()
    }

    /// Whether root is asked for.
    pub fn is_sudo(&self) -> bool {
        self.sudo
    }

    /// The time limit.
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether argv, stdin and stderr must stay out of logs and errors.
    pub fn is_sensitive(&self) -> bool {
        self.sensitive
    }

    /// Whether a non-zero exit is an error.
    pub fn is_checked(&self) -> bool {
        self.check
    }

    /// How errors name this command: the quoted argv, shortened, or nothing of it when
    /// sensitive.
    pub fn describe(&self) -> String {
        const MAX: usize = 120;
        if self.sensitive {
            return "a sensitive command".to_string();
        }
        let line = shell_join(&self.argv);
        if line.chars().count() <= MAX {
            format!("command `{line}`")
        } else {
            let short: String = line.chars().take(MAX).collect();
            format!("command `{short}...`")
        }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Command");
        if self.sensitive {
            d.field("argv", &format_args!("<{} words hidden>", self.argv.len()));
        } else {
            d.field("argv", &self.argv);
        }
        // Stdin is never shown: it is where secrets travel, even for commands not marked.
        match &self.stdin {
            Some(bytes) => d.field("stdin", &format_args!("<{} bytes>", bytes.len())),
            None => d.field("stdin", &format_args!("None")),
        };
        d.field("sudo", &self.sudo)
            .field("timeout", &self.timeout)
            .field("sensitive", &self.sensitive)
            .field("check", &self.check)
            .finish()
    }
}

/// What a finished command produced.
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit status; 128 + n when killed by signal n.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// Standard error as text (invalid UTF-8 replaced).
    pub fn stderr_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

impl fmt::Debug for Output {
    // Sizes only: output of a sensitive command (a key read back, a token) is a secret too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout", &format_args!("<{} bytes>", self.stdout.len()))
            .field("stderr", &format_args!("<{} bytes>", self.stderr.len()))
            .finish()
    }
}

/// Quotes one word for a POSIX shell: unchanged when it has only characters no shell treats
/// specially, otherwise in single quotes with each `'` written as `'\''`.
pub fn shell_quote(word: &str) -> Cow<'_, str> {
    // `=` is left out on purpose: an unquoted `A=b` in command position is an assignment.
    let plain = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b',' | b'+' | b'@' | b'%'
                )
        });
    if plain {
        Cow::Borrowed(word)
    } else {
        let mut out = String::with_capacity(word.len() + 2);
        out.push('\'');
        for c in word.chars() {
            if c == '\'' {
                out.push_str("'\\''");
            } else {
                out.push(c);
            }
        }
        out.push('\'');
        Cow::Owned(out)
    }
}

/// Quotes every word and joins them with spaces: the line a remote shell turns back into
/// exactly `words`.
pub fn shell_join<S: AsRef<str>>(words: &[S]) -> String {
    let mut line = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(&shell_quote(w.as_ref()));
    }
    line
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_through_sh() {
        let nasty = [
            "plain",
            "",
            "two words",
            "it's",
            "'",
            "''",
            "\"double\"",
            "$HOME",
            "$(id)",
            "`id`",
            "a\nb",
            "tab\there",
            "*",
            "~",
            "#comment",
            "a;b&c|d>e<f",
            "A=b",
            "-n",
            "back\\slash",
            "ünïcødé ✓",
            "!event",
            "{a,b}",
        ];
        let mut argv = vec!["printf", "%s\\0"];
        argv.extend(nasty);
        let line = shell_join(&argv);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}");
        let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        let want: Vec<&[u8]> = nasty
            .iter()
            .map(|s| s.as_bytes())
            .chain([&b""[..]])
            .collect();
        assert_eq!(got, want, "{line}");
    }

    #[test]
    fn quoting_leaves_plain_words_alone() {
        assert_eq!(
            shell_quote("/etc/kubernetes/pki/ca.crt"),
            "/etc/kubernetes/pki/ca.crt"
        );
        assert_eq!(shell_quote("root:root"), "root:root");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("A=b"), "'A=b'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn debug_hides_sensitive_argv_and_all_stdin() {
        let cmd = Command::new(["etcdctl", "--password", "hunter2"])
            .stdin("s3cret")
            .sensitive();
        let shown = format!("{cmd:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("etcdctl"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(cmd.describe(), "a sensitive command");

        let cmd = Command::new(["cat"]).stdin("not shown either");
        let shown = format!("{cmd:?}");
        assert!(
            shown.contains("\"cat\"") && !shown.contains("not shown"),
            "{shown}"
        );
        assert_eq!(cmd.describe(), "command `cat`");
    }

    #[test]
    fn describe_shortens_long_commands() {
        let cmd = Command::new(["echo".to_string(), "x".repeat(500)]);
        let d = cmd.describe();
        assert!(d.len() < 140 && d.ends_with("...`"), "{d}");
    }
}
