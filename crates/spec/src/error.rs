//! Errors and diagnostics for loading a cluster file.

use std::path::PathBuf;

use serde::Serialize;

/// How bad a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about the cluster file, pointing at the field and its place in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// Dotted path of the field, e.g. `nodes[2].address`.
    pub field: String,
    /// 1-based line, 0 when the field is absent from the file.
    pub line: u64,
    pub column: u64,
    /// Byte offset of the value in the file, when known.
    pub offset: Option<usize>,
    pub message: String,
    /// What to change to fix it.
    pub help: Option<String>,
}

/// Why a cluster file could not be loaded. Nothing is ever written when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read cluster file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML of the expected shape (syntax, unknown field, wrong type).
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: u64,
        column: u64,
        offset: Option<usize>,
        message: String,
    },
    /// The file parsed, but its values are inconsistent.
    #[error("{path}: {} error(s) in the cluster file", .problems.iter().filter(|p| p.severity == Severity::Error).count())]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}
