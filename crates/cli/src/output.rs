//! Printing: data to stdout in the format the user asked for, diagnostics to stderr.
//!
//! Nothing here panics on a closed pipe (`kubeha … | head -1`, `2>&1 | true`): std's
//! `println!`/`eprintln!` do, so the binary uses `outln!`, `errln!` and `errprint!`
//! instead (`clippy.toml` forbids the std macros in this crate).
//!
//! A closed stdout ends the program at once with status 0, as ripgrep and nextest do: the
//! reader decided it had read enough, which is not kubeha failing, and a Rust program never
//! dies of SIGPIPE (std ignores the signal), so the shell's 141 convention does not apply.
//! A failed write to stderr is ignored and the command finishes with its own status: stderr
//! only carries progress and diagnostics, and stopping a half-done `kubeha up` because a log
//! reader went away, or turning a failed `validate` into a success, would be worse.

use std::{
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
};

use serde::Serialize;

use crate::{
    args::Format,
    error::{CliError, EXIT_FAILURE},
    table::Table,
};

/// `println!` that ends quietly (status 0) when stdout is a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::print_stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that ignores a closed or failing stderr.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::print_stderr(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// A progress line on stderr (`errln!`), left out under `-q`: errors and warnings use
/// `errln!` and are always printed.
macro_rules! progress {
    ($($arg:tt)*) => {
        if !$crate::output::quiet() {
            $crate::output::print_stderr(&format!("{}\n", format_args!($($arg)*)))
        }
    };
}

/// `eprint!` (a prompt, no newline) that ignores a closed or failing stderr.
macro_rules! errprint {
    ($($arg:tt)*) => {
        $crate::output::print_stderr(&format!($($arg)*))
    };
}

static QUIET: AtomicBool = AtomicBool::new(false);
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Sets `-q` and `-v` for the whole run, before any command starts. With `-v`, every
/// command run over SSH is printed with its host, exit status and duration.
pub fn set_verbosity(quiet: bool, verbose: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
    VERBOSE.store(verbose, Ordering::Relaxed);
    if verbose {
        kubeha_transport::watch_commands(print_command);
    }
}

/// Whether progress lines are left out (`-q`).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether more detail is asked for (`-v`).
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

fn print_command(e: &kubeha_transport::CommandEvent<'_>) {
    let status = e
        .status
        .map_or_else(|| "no exit status".to_string(), |s| format!("exit {s}"));
    // A script spans lines: one line per command here.
    let command = e.command.split_whitespace().collect::<Vec<_>>().join(" ");
    print_stderr(&format!(
        "ssh {}: {command} → {status} in {:.2}s\n",
        e.host,
        e.elapsed.as_secs_f64()
    ));
}

/// Prints `value` as JSON or YAML, or calls `table` for the human form.
pub fn emit<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<(), CliError> {
    let text = match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(value).map_err(|e| CliError::Input {
                message: format!("cannot encode output as JSON: {e}"),
                help: String::new(),
            })?;
            s.push('\n');
            s
        }
        Format::Yaml => serde_saphyr::to_string(value).map_err(|e| CliError::Input {
            message: format!("cannot encode output as YAML: {e}"),
            help: String::new(),
        })?,
        Format::Table => table(),
    };
    print_stdout(&text);
    Ok(())
}

/// Writes to stdout. A closed pipe ends the program quietly with status 0; any other write
/// error (a full disk behind `>`) ends it with status 1, saying so on stderr.
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        print_stderr(&format!("kubeha: cannot write to standard output: {e}\n"));
        std::process::exit(i32::from(EXIT_FAILURE));
    }
}

/// Writes to stderr; a failure is ignored (see the module docs).
pub fn print_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

pub fn kv_table(rows: &[(&str, String)]) -> String {
    let mut t = Table::new(["", ""]);
    for (k, v) in rows {
        t.row([format!("{k}:"), v.clone()]);
    }
    t.render()
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect()
}
