//! Running a local child process with a deadline, feeding stdin and collecting output.
//!
//! Every wait here is bounded. Pipes are read by helper threads that stream chunks over a
//! channel, so a grandchild that keeps a pipe open (a daemon, an ssh control master) cannot
//! stall the caller past the deadline or a short grace period after the child exits.

use std::{
    io::{self, Read, Write},
    os::unix::process::{CommandExt, ExitStatusExt},
    process::{self, Child, ExitStatus, Stdio},
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal, kill_process_group};

/// How long to keep reading output after the child has exited.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// Longest sleep between two looks at the child.
const MAX_POLL: Duration = Duration::from_millis(20);

/// What to kill when the deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// Only the child: for ssh, whose first invocation may fork the control master, which must
    /// survive.
    Child,
    /// The child's whole process group (the child is started as its leader): for local shells,
    /// so their descendants die too.
    Group,
}

/// A child that ran to completion.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// How a run ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Exited(Finished),
    /// Killed at the deadline; what it had written to stderr by then.
    TimedOut {
        stderr: Vec<u8>,
    },
}

enum Event {
    Out(Vec<u8>),
    Err(Vec<u8>),
    OutDone,
    ErrDone,
}

/// Spawns `cmd`, writes `stdin` (if any) and waits at most `timeout`.
pub(crate) fn run(
    mut cmd: process::Command,
    stdin: Option<Arc<Vec<u8>>>,
    timeout: Duration,
    kill: Kill,
) -> io::Result<Outcome> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if kill == Kill::Group {
        cmd.process_group(0);
    }
    let deadline = Instant::now() + timeout;
    let mut child = cmd.spawn()?;
    let (tx, rx) = mpsc::channel();
    if let Err(e) = start_io(&mut child, stdin, tx) {
        terminate(&mut child, kill);
        return Err(e);
    }

    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut open = 2;
    let mut poll = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                terminate(&mut child, kill);
                return Err(e);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            terminate(&mut child, kill);
            drain(
                &rx,
                &mut stdout,
                &mut stderr,
                &mut open,
                Instant::now() + Duration::from_millis(100),
            );
            return Ok(Outcome::TimedOut { stderr });
        }
        let wait = poll.min(deadline - now);
        if open == 0 {
            thread::sleep(wait);
        } else {
            match rx.recv_timeout(wait) {
                Ok(event) => {
                    // Output usually comes just before the exit: look again soon.
                    take(event, &mut stdout, &mut stderr, &mut open);
                    poll = Duration::from_millis(1);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = 0,
            }
        }
        poll = (poll * 2).min(MAX_POLL);
    };
    drain(
        &rx,
        &mut stdout,
        &mut stderr,
        &mut open,
        Instant::now() + DRAIN_GRACE,
    );
    Ok(Outcome::Exited(Finished {
        status: code(status),
        stdout,
        stderr,
    }))
}

fn start_io(
    child: &mut Child,
    stdin: Option<Arc<Vec<u8>>>,
    tx: mpsc::Sender<Event>,
) -> io::Result<()> {
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error means the child stopped reading; its exit status says why.
        thread::Builder::new()
            .name("kubeha-stdin".into())
            .spawn(move || {
                let _ = pipe.write_all(&data);
            })?;
    }
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        thread::Builder::new()
            .name("kubeha-stdout".into())
            .spawn(move || pump(out, &tx, Event::Out, Event::OutDone))?;
    }
    if let Some(err) = child.stderr.take() {
        thread::Builder::new()
            .name("kubeha-stderr".into())
            .spawn(move || pump(err, &tx, Event::Err, Event::ErrDone))?;
    }
    Ok(())
}

fn pump(mut pipe: impl Read, tx: &mpsc::Sender<Event>, chunk: fn(Vec<u8>) -> Event, done: Event) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if tx.send(chunk(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = tx.send(done);
}

fn take(event: Event, stdout: &mut Vec<u8>, stderr: &mut Vec<u8>, open: &mut u8) {
    match event {
        Event::Out(b) => stdout.extend_from_slice(&b),
        Event::Err(b) => stderr.extend_from_slice(&b),
        Event::OutDone | Event::ErrDone => *open = open.saturating_sub(1),
    }
}

/// Collects what is left in the pipes until both close or `until`.
fn drain(
    rx: &mpsc::Receiver<Event>,
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
    open: &mut u8,
    until: Instant,
) {
    while *open > 0 {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) => take(event, stdout, stderr, open),
            Err(_) => break,
        }
    }
}

fn terminate(child: &mut Child, kill: Kill) {
    // The child is not reaped yet, so its pid (and process group id) cannot have been reused.
    if kill == Kill::Group {
        let _ = kill_process_group(Pid::from_child(child), Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sh(script: &str) -> process::Command {
        let mut c = process::Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn collects_output_and_status() {
        let out = run(
            sh("cat; echo err >&2; exit 3"),
            Some(Arc::new(b"in".to_vec())),
            Duration::from_secs(5),
            Kill::Group,
        )
        .unwrap();
        match out {
            Outcome::Exited(f) => {
                assert_eq!(
                    (f.status, f.stdout.as_slice(), f.stderr.as_slice()),
                    (3, &b"in"[..], &b"err\n"[..])
                );
            }
            Outcome::TimedOut { .. } => panic!("timed out"),
        }
    }

    #[test]
    fn kills_the_group_at_the_deadline() {
        let start = Instant::now();
        // The grandchild `sleep` holds stdout open; the group kill must take it down too.
        let out = run(
            sh("echo started >&2; sleep 30 & sleep 30; wait"),
            None,
            Duration::from_millis(300),
            Kill::Group,
        )
        .unwrap();
        assert!(
            matches!(out, Outcome::TimedOut { ref stderr } if stderr == b"started\n"),
            "{out:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_lingering_grandchild_does_not_stall_the_caller() {
        let start = Instant::now();
        let out = run(
            sh("(sleep 5 &) ; echo done"),
            None,
            Duration::from_secs(10),
            Kill::Child,
        )
        .unwrap();
        assert!(
            matches!(out, Outcome::Exited(Finished { status: 0, ref stdout, .. }) if stdout == b"done\n"),
            "{out:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }
}
