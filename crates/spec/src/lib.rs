//! The kubeha cluster file: one YAML document describing every node and setting.
//!
//! Loading is two steps, kept apart on purpose: [`raw`] holds what the user wrote, with the
//! line and column of every value; [`resolve`] validates it, applies defaults and yields a
//! [`Spec`], the only type the rest of kubeha sees. Every problem is collected, not just the
//! first, and each names its field and place in the file.

mod error;
pub mod model;
pub mod raw;
pub mod resolve;
mod topology;

use std::path::{Path, PathBuf};

pub use error::{Problem, Severity, SpecError};
pub use model::*;
pub use topology::bracket;

/// A successfully loaded cluster file and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Spec,
    pub warnings: Vec<Problem>,
    pub source: String,
    pub path: PathBuf,
}

/// Parses and validates cluster-file text. `path` is only used in messages.
pub fn load_str(src: &str, path: &Path) -> Result<Loaded, SpecError> {
    let raw: raw::RawSpec = serde_saphyr::from_str(src).map_err(|e| {
        let loc = e.location();
        let (line, column) = loc.map_or((0, 0), |l| (l.line(), l.column()));
        let offset = loc
            .and_then(|l| l.span().byte_offset().map(|o| o as usize))
            .or_else(|| resolve::offset_of(src, line, column));
        SpecError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            offset,
            message: syntax_message(&e),
        }
    })?;
    let (spec, problems) = resolve::resolve(&raw, src);
    match spec {
        Some(spec) => Ok(Loaded {
            spec,
            warnings: problems,
            source: src.to_string(),
            path: path.to_path_buf(),
        }),
        None => Err(SpecError::Invalid {
            path: path.to_path_buf(),
            problems,
        }),
    }
}

/// Reads, parses and validates a cluster file.
pub fn load(path: &Path) -> Result<Loaded, SpecError> {
    let src = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&src, path)
}

/// The first line of serde-saphyr's message, without its own location suffix.
fn syntax_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("invalid YAML").trim();
    first.split(" at line ").next().unwrap_or(first).to_string()
}
