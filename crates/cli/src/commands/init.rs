//! `kubeha init`: a commented starter cluster file.

use std::{fs, io::Write, process::ExitCode};

use crate::{
    args::{Example, Global, InitArgs},
    error::CliError,
};

const STARTER: &str = include_str!("../../assets/starter.yaml");
const EXTERNAL: &str = include_str!("../../../../examples/external-etcd.yaml");
const STACKED: &str = include_str!("../../../../examples/stacked.yaml");

pub fn run(g: &Global, a: &InitArgs) -> Result<ExitCode, CliError> {
    let text = match a.example {
        None => STARTER,
        Some(Example::ExternalEtcd) => EXTERNAL,
        Some(Example::Stacked) => STACKED,
    };
    let path = &g.file;
    let mut opts = fs::OpenOptions::new();
    opts.write(true);
    if a.force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CliError::Input {
                message: format!("{} already exists", path.display()),
                help: "pass --force to overwrite it, or choose another path with -f".into(),
            });
        }
        Err(e) => return Err(CliError::io("create", path)(e)),
    };
    f.write_all(text.as_bytes())
        .map_err(CliError::io("write", path))?;
    eprintln!(
        "wrote {}: edit the addresses, then run `kubeha validate -f {}`",
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The starter and both examples are valid cluster files without warnings.
    #[test]
    fn starter_and_examples_are_valid() {
        for (name, text) in [
            ("starter", super::STARTER),
            ("external", super::EXTERNAL),
            ("stacked", super::STACKED),
        ] {
            let l = kubeha_spec::load_str(text, Path::new(name))
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(l.warnings.is_empty(), "{name}: {:?}", l.warnings);
        }
    }
}
