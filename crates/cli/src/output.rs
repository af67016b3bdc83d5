//! Printing data to stdout in the format the user asked for.

use serde::Serialize;

use crate::{args::Format, error::CliError, table::Table};

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

/// Writes to stdout; a closed pipe (`| head`) ends quietly.
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
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
