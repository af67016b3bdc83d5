//! `kubeha ca`: bring an existing CA under kubeha's management.

use std::process::ExitCode;

use kubeha_pki::CaId;

use crate::{
    args::{CaCommand, CaName, Global},
    error::CliError,
};

pub fn run(g: &Global, c: &CaCommand) -> Result<ExitCode, CliError> {
    match c {
        CaCommand::Import { ca, cert, key } => {
            let loaded = super::load_spec(g)?;
            let cert_pem = std::fs::read_to_string(cert).map_err(CliError::io("read", cert))?;
            let key_pem = std::fs::read_to_string(key).map_err(CliError::io("read", key))?;
            let id = match ca {
                CaName::Kubernetes => CaId::Kubernetes,
                CaName::FrontProxy => CaId::FrontProxy,
                CaName::Etcd => CaId::Etcd,
            };
            let mut store = super::open_store(g, &loaded.spec.name)?;
            store.import_ca(id, &cert_pem, &key_pem)?;
            eprintln!(
                "imported {} CA into {}; `kubeha render` issues leaves from it",
                id.common_name(),
                g.state_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::List => Err(CliError::Input {
            message: "not yet".into(),
            help: String::new(),
        }),
    }
}
