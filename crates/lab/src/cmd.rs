//! Running external programs (`ip`, `unshare`, `nsenter`, `mount`, `ssh-keygen`) with a time
//! limit, capturing their output.

use std::{
    io::Read,
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::LabError;

/// Default limit for one administrative command.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `argv` as a shell-like string for messages.
pub(crate) fn display(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains([' ', '\'', '"', '\n']) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                (*a).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `argv` with stdin closed, waiting at most `timeout`; kills it on timeout.
pub(crate) fn output(argv: &[&str], timeout: Duration, context: &str) -> Result<Output, LabError> {
    let (program, args) = argv.split_first().ok_or_else(|| LabError::Invalid {
        message: format!("{context}: empty command"),
    })?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            program: (*program).to_string(),
            context: context.to_string(),
            source,
        })?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::CommandTimeout {
                    context: context.to_string(),
                    command: display(argv),
                    seconds: timeout.as_secs(),
                });
            }
            Err(source) => {
                return Err(LabError::Spawn {
                    program: (*program).to_string(),
                    context: context.to_string(),
                    source,
                });
            }
        }
    };
    // A detached grandchild may keep a pipe open: read what is there, do not wait for it.
    let drain = Instant::now() + Duration::from_secs(1);
    let stdout = join_by(out_reader, drain);
    let stderr = join_by(err_reader, drain);
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn join_by(h: thread::JoinHandle<Vec<u8>>, deadline: Instant) -> Vec<u8> {
    while !h.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
    }
    if h.is_finished() {
        h.join().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// Runs `argv` and fails unless it exits 0; returns stdout.
pub(crate) fn run(argv: &[&str], context: &str) -> Result<String, LabError> {
    let out = output(argv, DEFAULT_TIMEOUT, context)?;
    check(argv, &out, context)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Turns a non-zero exit into [`LabError::Command`].
pub(crate) fn check(argv: &[&str], out: &Output, context: &str) -> Result<(), LabError> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(LabError::Command {
        context: context.to_string(),
        command: display(argv),
        status: out.status.to_string(),
        stderr: if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        },
    })
}

/// Runs `argv`, ignoring failure (cleanup of things that may already be gone).
pub(crate) fn quiet(argv: &[&str]) -> bool {
    output(argv, DEFAULT_TIMEOUT, "cleanup").is_ok_and(|o| o.status.success())
}
