//! One module per command; each returns the exit status or a [`CliError`].

mod bench;
mod ca;
mod certs;
mod cluster;
mod etcd;
mod init;
mod kubeconfig;
mod lab;
mod node;
mod render;
mod service;
mod status;
mod up;
mod validate;

use std::process::ExitCode;

use clap::CommandFactory;
use kubeha_spec::Loaded;
use secrecy::SecretString;

use crate::{
    args::{Cli, Command, Global},
    error::{CliError, print_problems},
};

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => init::run(g, &a),
        Command::Validate => validate::run(g),
        Command::Render(a) => render::run(g, &a),
        Command::Ca(c) => ca::run(g, &c),
        Command::Plan(a) => up::run(g, &a, true),
        Command::Up(a) => up::run(g, &a, false),
        Command::Status => status::run(g),
        Command::Etcd(c) => etcd::run(g, &c),
        Command::Node(c) => node::run(g, &c),
        Command::Reset(a) => node::reset(g, &a),
        Command::Certs(c) => certs::run(g, &c),
        Command::Images => cluster::images(g),
        Command::Check(a) => cluster::check(g, &a),
        Command::Fix(c) => cluster::fix(g, &c),
        Command::Kubeconfig(a) => kubeconfig::run(g, &a),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "kubeha", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(b) => bench::run(g, &b),
        Command::Lab(l) => lab::run(g, &l),
        Command::Service(s) => service::run(&s),
    }
}

/// Loads the cluster file and prints its warnings to stderr.
pub fn load_spec(g: &Global) -> Result<Loaded, CliError> {
    let loaded = kubeha_spec::load(&g.file)?;
    if !loaded.warnings.is_empty() {
        print_problems(&loaded.path, Some(&loaded.source), &loaded.warnings);
    }
    Ok(loaded)
}

/// The CA passphrase from `--ca-passphrase-file` or `KUBEHA_CA_PASSPHRASE`, if any.
pub fn passphrase(g: &Global) -> Result<Option<SecretString>, CliError> {
    if let Some(p) = &g.ca_passphrase_file {
        let text = std::fs::read_to_string(p).map_err(CliError::io("read passphrase file", p))?;
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            return Err(CliError::Input {
                message: format!("passphrase file {} is empty", p.display()),
                help: "put the passphrase on the first line".into(),
            });
        }
        return Ok(Some(SecretString::from(line)));
    }
    Ok(std::env::var("KUBEHA_CA_PASSPHRASE")
        .ok()
        .filter(|s| !s.is_empty())
        .map(SecretString::from))
}

/// Opens (and locks) the cluster's state dir.
pub fn open_store(g: &Global, cluster: &str) -> Result<kubeha_pki::Store, CliError> {
    let opts = kubeha_pki::StoreOptions {
        passphrase: passphrase(g)?,
    };
    Ok(kubeha_pki::open(&g.state_dir, cluster, opts)?)
}
