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
pub mod version;

use std::process::ExitCode;

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
            // Into memory first: clap_complete panics when its writer fails (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut crate::args::command(), "kubeha", &mut script);
            crate::output::print_stdout(&String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(b) => bench::run(g, &b),
        Command::Lab(l) => lab::run(g, &l),
        Command::Service(s) => service::run(&s),
        Command::Version => version::run(g),
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

/// The cluster's state dir for a command that only reads it. Refused when the cluster has
/// none: a command meant to look must not create one, let alone issue a new CA whose
/// credentials no running cluster accepts.
pub fn existing_state(g: &Global, cluster: &str) -> Result<kubeha_pki::StateView, CliError> {
    let view = kubeha_pki::StateView::new(&g.state_dir, cluster);
    if !view.dir().join("pki").is_dir() {
        return Err(CliError::Input {
            message: format!(
                "no state for cluster {cluster}: {} does not exist",
                view.dir().join("pki").display()
            ),
            help: "run `kubeha render --out DIR` or `kubeha up` first (they issue the cluster's certificates), or name the state dir that holds them with --state-dir".into(),
        });
    }
    Ok(view)
}

/// The operator's admin kubeconfig from the state dir, built exactly as `kubeha render`
/// builds `_operator/admin.kubeconfig`, without issuing, locking or writing anything.
pub fn admin_kubeconfig(g: &Global, spec: &kubeha_spec::Spec) -> Result<String, CliError> {
    let view = existing_state(g, &spec.name)?;
    let ca = view.ca_cert(kubeha_pki::CaId::Kubernetes)?;
    let client = view.leaf(&kubeha_pki::LeafId::operator(
        kubeha_pki::LeafKind::AdminConf,
    ))?;
    Ok(kubeha_render::kubeconfig::kubeconfig(
        &spec.name,
        &spec.endpoint.url(),
        &ca,
        &kubeha_render::operator::admin_user(spec),
        &client,
    )?)
}

/// A private scratch directory standing in for the state dir of SSH transports used by a
/// command that only looks (`plan`, `status`, `certs check`): the control sockets, and a
/// host key pinned on first contact, go there and vanish with it. The host keys already
/// pinned in the state dir are copied in, so a changed key is still refused.
pub fn scratch_ssh_dir(state: &std::path::Path) -> Result<tempfile::TempDir, CliError> {
    let dir = tempfile::Builder::new()
        .prefix("kubeha-look-")
        .tempdir()
        .map_err(CliError::io(
            "create temporary directory",
            std::env::temp_dir(),
        ))?;
    let pinned = state.join("known_hosts");
    if pinned.is_file() {
        std::fs::copy(&pinned, dir.path().join("known_hosts"))
            .map_err(CliError::io("copy", &pinned))?;
    }
    Ok(dir)
}

/// Ends the shared SSH connections of transports whose control sockets live in a scratch
/// directory about to be removed (else each master lingers until `ControlPersist` ends).
pub fn close_all<'a>(hosts: impl IntoIterator<Item = &'a kubeha_transport::SshTransport>) {
    for t in hosts {
        let _ = t.close();
    }
}

/// Opens (and locks) the cluster's state dir.
/// Asks `question [y/N]` on the terminal; without one (or on end of input) the answer is no.
pub fn confirm(question: &str) -> bool {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return false;
    }
    matches!(
        answer(&format!("{question} [y/N] ")).as_deref(),
        Some("y" | "Y" | "yes" | "YES" | "Yes")
    )
}

/// Whether the user types the whole word `yes` at `prompt`: what a step that cannot be undone
/// asks for. The caller has made sure stdin is a terminal.
pub fn typed_yes(prompt: &str) -> bool {
    answer(prompt).as_deref() == Some("yes")
}

/// Prints `prompt` on stderr and reads one line from stdin, trimmed; `None` on end of input.
fn answer(prompt: &str) -> Option<String> {
    use std::io::BufRead;
    errprint!("{prompt}");
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

/// Tells the operator what the PKI store corrected on its own (loose key modes, a rebuilt
/// index): such a repair is never silent.
pub fn print_pki_notices(report: &kubeha_pki::IssueReport) {
    for n in report.notices() {
        errln!("pki: warning: {n}");
    }
}

pub fn open_store(g: &Global, cluster: &str) -> Result<kubeha_pki::Store, CliError> {
    let opts = kubeha_pki::StoreOptions {
        passphrase: passphrase(g)?,
    };
    Ok(kubeha_pki::open(&g.state_dir, cluster, opts)?)
}
