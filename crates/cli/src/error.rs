//! What can go wrong at the command line, the exit status of each, and how it is shown.
//!
//! Exit status is a contract: 0 success (`ExitCode::SUCCESS`), 1 failure, 2 invalid input.

use std::{path::PathBuf, process::ExitCode};

use kubeha_spec::{Problem, Severity, SpecError};
use miette::{Diagnostic, NamedSource, SourceSpan};

/// Something failed while doing the work (I/O, state dir, rendering).
pub const EXIT_FAILURE: u8 = 1;
/// The input was wrong (cluster file, flags, arguments); nothing was changed.
pub const EXIT_INVALID_INPUT: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("state directory")]
    Pki(#[from] kubeha_pki::PkiError),
    #[error("rendering failed")]
    Render(#[from] kubeha_render::RenderError),
    /// Converging hosts failed (unreachable host, preflight, a step or a gate).
    #[error(transparent)]
    Apply(#[from] kubeha_apply::ApplyError),
    /// A Kubernetes API request or wait failed.
    #[error(transparent)]
    Kube(#[from] kubeha_kube::Error),
    /// Reading or writing a file failed.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A path the user named is unusable; `help` says why and what to do.
    #[error("{message}")]
    Input { message: String, help: String },
}

impl CliError {
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> CliError {
        let path = path.into();
        move |source| CliError::Io {
            action,
            path,
            source,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Spec(SpecError::Read { .. }) | CliError::Spec(_) | CliError::Input { .. } => {
                EXIT_INVALID_INPUT
            }
            _ => EXIT_FAILURE,
        })
    }
}

/// One cluster-file problem shown with the offending line.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
struct ProblemReport {
    field: String,
    message: String,
    severity: miette::Severity,
    help: Option<String>,
    src: Option<NamedSource<String>>,
    span: Option<SourceSpan>,
}

impl Diagnostic for ProblemReport {
    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.src.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.span?;
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(Some("here".into()), span),
        )))
    }
}

/// Prints cluster-file problems (errors and warnings) with source snippets to stderr.
pub fn print_problems(path: &std::path::Path, src: Option<&str>, problems: &[Problem]) {
    for p in problems {
        let (src_named, span) = match (src, p.offset) {
            (Some(s), Some(off)) if off <= s.len() => {
                // Only the lines around the problem, cut to a sane width: one enormous
                // line must not flood the terminal.
                let e = kubeha_spec::excerpt(s, off);
                (
                    Some(NamedSource::new(path.display().to_string(), e.text)),
                    Some(SourceSpan::new(e.offset.into(), e.len)),
                )
            }
            _ => (None, None),
        };
        let location = if p.line > 0 {
            format!(" (line {}, column {})", p.line, p.column)
        } else {
            String::new()
        };
        let report = ProblemReport {
            field: p.field.clone(),
            message: format!("{}{location}", p.message),
            severity: match p.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            },
            help: p.help.clone(),
            src: src_named,
            span,
        };
        errln!("{:?}", miette::Report::new(report));
    }
}

/// Every reason a cluster file cannot be used, as problems with field, place, message and
/// help: what `report` shows on stderr and `validate -o json` prints on stdout.
pub fn spec_problems(err: &SpecError) -> Vec<Problem> {
    match err {
        SpecError::Invalid { problems, .. } => problems.clone(),
        SpecError::Syntax {
            line,
            column,
            offset,
            message,
            ..
        } => vec![Problem {
            severity: Severity::Error,
            field: "syntax".into(),
            line: *line,
            column: *column,
            offset: *offset,
            message: message.clone(),
            help: Some(
                "fix the YAML at this place; `kubeha init` writes a commented example of every field"
                    .into(),
            ),
        }],
        SpecError::Read { path, source } => {
            let (message, help) = match source.kind() {
                std::io::ErrorKind::NotFound => (
                    format!("cluster file {} does not exist", path.display()),
                    "create one with `kubeha init`, or name it with -f FILE",
                ),
                std::io::ErrorKind::InvalidData => (
                    format!("cluster file {} is not UTF-8 text", path.display()),
                    "name the YAML cluster file with -f FILE",
                ),
                _ => (
                    format!("cannot read cluster file {}: {source}", path.display()),
                    "check the path and its permissions",
                ),
            };
            vec![Problem {
                severity: Severity::Error,
                field: "file".into(),
                line: 0,
                column: 0,
                offset: None,
                message,
                help: Some(help.into()),
            }]
        }
    }
}

/// Shows an error to the user on stderr.
pub fn report(err: CliError) {
    match err {
        CliError::Spec(SpecError::Invalid { path, problems }) => {
            let src = std::fs::read_to_string(&path).ok();
            print_problems(&path, src.as_deref(), &problems);
            let n = problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .count();
            errln!("{}: {n} error(s); nothing was written", path.display());
        }
        CliError::Spec(e @ SpecError::Syntax { .. }) => {
            if let SpecError::Syntax { path, .. } = &e {
                let src = std::fs::read_to_string(path).ok();
                print_problems(path, src.as_deref(), &spec_problems(&e));
                errln!("{}: nothing was written", path.display());
            }
        }
        CliError::Spec(e @ SpecError::Read { .. }) => {
            for p in spec_problems(&e) {
                errln!(
                    "{:?}",
                    miette::miette!(help = p.help.unwrap_or_default(), "{}", p.message)
                );
            }
        }
        CliError::Apply(e) => report_apply(e),
        CliError::Input { message, help } => {
            errln!("{:?}", miette::miette!(help = help, "{message}"));
        }
        other => {
            let mut msg = other.to_string();
            let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&other);
            while let Some(e) = cur {
                msg.push_str(&format!("\n  caused by: {e}"));
                cur = e.source();
            }
            errln!("Error: {msg}");
        }
    }
}

fn report_apply(e: kubeha_apply::ApplyError) {
    use kubeha_apply::ApplyError;
    match e {
        ApplyError::Unreachable { errors } => {
            for err in &errors {
                let mut msg = err.to_string();
                let mut cur = std::error::Error::source(err);
                while let Some(c) = cur {
                    msg.push_str(&format!(": {c}"));
                    cur = c.source();
                }
                let help = err
                    .help()
                    .unwrap_or_else(|| "check that the host is up and reachable over SSH".into());
                errln!("{:?}", miette::miette!(help = help, "{msg}"));
            }
            errln!(
                "{} host(s) could not be reached; nothing was changed on any host",
                errors.len()
            );
        }
        ApplyError::Preflight { problems } => {
            for p in &problems {
                errln!("  × preflight: {p}");
            }
            errln!(
                "preflight failed ({} problem(s)); nothing was changed",
                problems.len()
            );
        }
        ApplyError::Gate { phase, detail, .. } => {
            errln!(
                "{:?}",
                miette::miette!(
                    help = "fix the cause and run `kubeha up` again: it continues from what the hosts hold",
                    "{phase} gate failed: {detail}"
                )
            );
        }
        ApplyError::Step {
            node,
            phase,
            source,
        } => {
            let help = source.help().unwrap_or_else(|| {
                "fix the cause and run `kubeha up` again; hosts never hold half-written files"
                    .into()
            });
            errln!(
                "{:?}",
                miette::miette!(
                    help = help,
                    "{phase} on {node} failed: {}",
                    kubeha_etcd::error_chain(&source)
                )
            );
        }
    }
}
