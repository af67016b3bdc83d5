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
    errln!(
        "wrote {}: edit the addresses, then run `kubeha validate -f {}`",
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Both examples are valid cluster files without warnings; the starter is too once its
    /// placeholder SSH key is replaced, and until then fails on that key alone.
    #[test]
    fn starter_and_examples_are_valid() {
        for (name, text) in [("external", super::EXTERNAL), ("stacked", super::STACKED)] {
            let l = kubeha_spec::load_str(text, Path::new(name))
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(l.warnings.is_empty(), "{name}: {:?}", l.warnings);
        }
        match kubeha_spec::load_str(super::STARTER, Path::new("starter")) {
            Err(kubeha_spec::SpecError::Invalid { problems, .. }) => {
                let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
                assert_eq!(
                    fields,
                    ["provisioning.sshAuthorizedKeys[0]"],
                    "{problems:?}"
                );
            }
            other => panic!("the starter's placeholder key must fail: {other:?}"),
        }
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnAeRlJM7T8kS/MiXlHihQstYc+t+dAQCdhw4mPU+DM ops@example";
        let replaced = super::STARTER.replace(
            "ssh-ed25519 AAAA...replace-with-your-public-key you@example",
            key,
        );
        let l = kubeha_spec::load_str(&replaced, Path::new("starter"))
            .unwrap_or_else(|e| panic!("starter with a key: {e:?}"));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }
}
