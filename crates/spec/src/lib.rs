//! The kubeha cluster file: one YAML document describing every node and setting.
//!
//! Loading is two steps, kept apart on purpose: [`raw`] holds what the user wrote, with the
//! line and column of every value; [`resolve`] validates it, applies defaults and yields a
//! [`Spec`], the only type the rest of kubeha sees. Every problem is collected, not just the
//! first, and each names its field and place in the file.

mod error;
pub mod grammar;
pub mod model;
pub mod raw;
pub mod resolve;
mod syntax;
mod topology;

use std::path::{Path, PathBuf};

pub use error::{Problem, Severity, SpecError};
pub use model::*;
pub use syntax::{Excerpt, excerpt};
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
        let p = syntax::translate(&e, src);
        SpecError::Syntax {
            path: path.to_path_buf(),
            line: p.line,
            column: p.column,
            offset: p.offset,
            message: p.message,
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
///
/// A file larger than any cluster file could be, or one that is not UTF-8 text, is an
/// input error located in the file (not a read error): the path and permissions are fine.
pub fn load(path: &Path) -> Result<Loaded, SpecError> {
    let read_err = |source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, syntax::MAX_FILE_BYTES as u64 + 1),
        &mut bytes,
    )
    .map_err(read_err)?;
    if bytes.len() > syntax::MAX_FILE_BYTES {
        return Err(SpecError::Syntax {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            offset: None,
            message: format!(
                "the file is larger than {} MiB; a cluster file is a few kilobytes: check that this is the cluster file",
                syntax::MAX_FILE_BYTES >> 20
            ),
        });
    }
    let src = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let (line, column, offset) = syntax::utf8_error_place(e.as_bytes(), valid);
        SpecError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            offset: Some(offset),
            message: format!(
                "the file is not UTF-8 text: byte 0x{:02X} at line {line}, column {column} is not valid UTF-8; save the file as UTF-8",
                e.as_bytes().get(valid).copied().unwrap_or_default()
            ),
        }
    })?;
    load_str(&src, path)
}
