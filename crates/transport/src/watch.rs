//! An optional process-wide watcher of every command run over SSH (`kubeha -v`): the host,
//! the command as errors name it (nothing of a sensitive one's words, never its input), how
//! it ended and how long it took.

use std::{sync::OnceLock, time::Duration};

/// One finished command, as the watcher sees it.
#[derive(Debug)]
pub struct CommandEvent<'a> {
    /// The node name the transport was made for.
    pub host: &'a str,
    /// [`crate::Command::describe`]: shortened, and without argv for a sensitive command.
    pub command: String,
    /// The exit status, or `None` when there is none (ssh could not start, the connection
    /// failed or the time limit ended it).
    pub status: Option<i32>,
    pub elapsed: Duration,
}

static WATCHER: OnceLock<fn(&CommandEvent<'_>)> = OnceLock::new();

/// Installs the watcher. Only the first call has an effect; returns whether this one did.
pub fn watch_commands(watcher: fn(&CommandEvent<'_>)) -> bool {
    WATCHER.set(watcher).is_ok()
}

pub(crate) fn notify(event: &CommandEvent<'_>) {
    if let Some(w) = WATCHER.get() {
        w(event);
    }
}
