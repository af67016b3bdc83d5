//! The `kubeha` binary. It only parses arguments, runs one command and turns the outcome
//! into an exit status; the work lives in the library crates (`kubeha-spec`, `kubeha-pki`,
//! `kubeha-render`).

// First: its printing macros are used by every module below.
#[macro_use]
mod output;
mod args;
mod commands;
mod error;
mod table;
mod tree;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::parse();
    output::set_verbosity(cli.global.quiet, cli.global.verbose);
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let code = err.exit_code();
            error::report(err);
            code
        }
    }
}
