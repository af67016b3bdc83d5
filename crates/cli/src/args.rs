//! Command-line arguments: what the user typed, before any file is read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  kubeha init                       write a commented ./cluster.yaml to edit
  kubeha validate -f cluster.yaml   check it; every problem names its field and line
  kubeha render --out out/          issue certificates and write every host's files
  kubeha -v up                      also print every SSH command with its host and duration
  kubeha completions bash > /etc/bash_completion.d/kubeha

Exit status: 0 success, 1 failure, 2 invalid input (cluster file, flags).";

/// Build and keep highly-available Kubernetes clusters on machines you own.
///
/// One cluster file describes every node (etcd, load balancers, control planes, workers);
/// kubeha is the PKI authority and renders, byte for byte, every file each host needs.
#[derive(Debug, Parser)]
#[command(name = "kubeha", version = crate::commands::version::LONG_VERSION, about, long_about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands.
#[derive(Debug, Args)]
pub struct Global {
    /// The cluster file.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        default_value = "cluster.yaml",
        env = "KUBEHA_FILE"
    )]
    pub file: PathBuf,
    /// The state directory: PKI, secrets and lock, one subdirectory per cluster.
    ///
    /// One run at a time per cluster: a run that finds the lock held waits up to 2 s for it,
    /// then refuses (exit 1) without changing anything.
    #[arg(
        long,
        global = true,
        default_value = ".kubeha",
        env = "KUBEHA_STATE_DIR"
    )]
    pub state_dir: PathBuf,
    /// Print no progress lines on stderr; errors and warnings are still printed.
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more on stderr: every command run over SSH, with its host, exit status and
    /// duration (a sensitive command's words are left out, its input always).
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
    /// `-o`, on the commands listed in [`WITH_OUTPUT`] (filled in by [`parse`]).
    #[arg(skip)]
    pub output: Format,
    /// `--ca-passphrase-file`, on the commands listed in [`WITH_PASSPHRASE`] (filled in by
    /// [`parse`]).
    #[arg(skip)]
    pub ca_passphrase_file: Option<PathBuf>,
}

/// The commands that print data `-o` can shape, by path below `kubeha`.
pub const WITH_OUTPUT: &[&[&str]] = &[
    &["validate"],
    &["render"],
    &["plan"],
    &["up"],
    &["status"],
    &["images"],
    &["check"],
    &["fix", "pod-cidr"],
    &["kubeconfig"],
    &["ca", "list"],
    &["certs", "check"],
    &["etcd", "members"],
    &["etcd", "health"],
    &["etcd", "add"],
    &["etcd", "remove"],
    &["etcd", "promote"],
    &["etcd", "forget"],
    &["etcd", "defrag"],
    &["etcd", "snapshot", "save"],
    &["node", "add"],
    &["node", "remove"],
    &["node", "replace"],
    &["reset"],
    &["lab", "up"],
    &["lab", "down"],
    &["lab", "status"],
    &["bench", "render"],
    &["bench", "up"],
    &["bench", "fanout"],
    &["bench", "day2"],
    &["version"],
];

/// The commands that read or write CA keys, where an encrypted CA key needs its passphrase.
pub const WITH_PASSPHRASE: &[&[&str]] = &[
    &["render"],
    &["plan"],
    &["up"],
    &["ca", "import"],
    &["certs", "renew"],
    &["etcd", "snapshot", "restore"],
    &["node", "add"],
    &["node", "remove"],
    &["node", "replace"],
    &["reset"],
];

fn output_arg() -> clap::Arg {
    clap::Arg::new("output")
        .short('o')
        .long("output")
        .help("Output format for data printed to stdout")
        .value_parser(clap::builder::EnumValueParser::<Format>::new())
        .default_value("table")
}

fn passphrase_arg() -> clap::Arg {
    clap::Arg::new("ca_passphrase_file")
        .long("ca-passphrase-file")
        .value_name("FILE")
        .help("File holding the passphrase that encrypts CA keys at rest (or set KUBEHA_CA_PASSPHRASE)")
        .value_parser(clap::value_parser!(PathBuf))
}

/// Adds `arg` to the subcommand at `path`.
fn with_arg(cmd: clap::Command, path: &[&str], arg: clap::Arg) -> clap::Command {
    match path.split_first() {
        None => cmd.arg(arg),
        Some((first, rest)) => cmd.mut_subcommand(*first, |sub| with_arg(sub, rest, arg)),
    }
}

/// The command line as clap sees it: the derived commands, plus `-o` and
/// `--ca-passphrase-file` only where they have an effect (a flag offered where it does
/// nothing misleads).
pub fn command() -> clap::Command {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    for path in WITH_OUTPUT {
        cmd = with_arg(cmd, path, output_arg());
    }
    for path in WITH_PASSPHRASE {
        cmd = with_arg(cmd, path, passphrase_arg());
    }
    cmd
}

/// Parses the command line (exiting with clap's message and status 2 on a bad one).
pub fn parse() -> Cli {
    from_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

/// The derived options, plus `-o` and `--ca-passphrase-file` from the command that has them.
fn from_matches(matches: &clap::ArgMatches) -> Result<Cli, clap::Error> {
    let mut cli = <Cli as clap::FromArgMatches>::from_arg_matches(matches)?;
    let mut leaf = matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    if let Ok(Some(f)) = leaf.try_get_one::<Format>("output") {
        cli.global.output = *f;
    }
    if let Ok(Some(p)) = leaf.try_get_one::<PathBuf>("ca_passphrase_file") {
        cli.global.ca_passphrase_file = Some(p.clone());
    }
    Ok(cli)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter cluster file.
    #[command(
        after_help = "Example:\n  kubeha init -f cluster.yaml\n  kubeha init --example external-etcd -f ha.yaml"
    )]
    Init(InitArgs),
    /// Check the cluster file and print what it describes.
    #[command(
        after_help = "Example:\n  kubeha validate -f examples/external-etcd.yaml\n  kubeha validate -o json | jq .problems"
    )]
    Validate,
    /// Issue certificates (kept in the state dir) and write every host's files to a directory.
    #[command(after_help = "\
Example:
  kubeha render -f examples/external-etcd.yaml --out out/
  ls out/cp-1/etc/kubernetes/manifests

Layout: out/<node>/... mirrors each host's filesystem; out/manifest.json lists mode, owner
and sha256 of every file; out/_operator/ holds the admin kubeconfig, topology, address plan
and bring-up order; out/_provision/<node>/ holds cloud-init user-data, netplan and the
multipass command; out/_cluster/ holds every object `kubeha up` creates through the
Kubernetes API (kubeadm's bootstrap objects, kube-proxy, CoreDNS, the CNI, MetalLB), one
YAML file per bundle in apply order. Private keys and the bootstrap token are written 0600.")]
    Render(RenderArgs),
    /// Show what `kubeha up` would change on each host, phase by phase; change nothing.
    #[command(
        after_help = "Example:\n  kubeha plan -f cluster.yaml\n  kubeha plan -o json | jq '.plan.steps[] | {node, phase, files: [.files[].path]}'"
    )]
    Plan(UpArgs),
    /// Bring every host to the rendered state, phase by phase, each behind a health gate.
    #[command(after_help = "\
Example:
  kubeha up -f cluster.yaml
  kubeha up -f examples/lab.yaml      (after `kubeha lab up examples/lab.yaml`)

Order: preflight, node prep, etcd (all members at once; gate: all healthy, one leader),
load balancers (gate: exactly one holds the VIP and the API port accepts), the control
planes' local etcd proxy (gate: etcd healthy through 127.0.0.1:2379), control planes
(gate: /livez through the VIP where kube-apiserver can run), workers. Re-running with
nothing changed changes nothing; a run killed anywhere is finished by the next one.")]
    Up(UpArgs),
    /// Health of the cluster: etcd members, the VIP, HAProxy backends, certificates, nodes.
    #[command(
        after_help = "Example:\n  kubeha status -f examples/lab.yaml\n  kubeha status -o json | jq .etcd.members"
    )]
    Status,
    /// Add, remove or replace one node, driven by the cluster file.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Stop kubeha's services on hosts and remove what kubeha put there (not the state dir).
    #[command(after_help = "\
Example:
  kubeha reset wn-1 --yes
  kubeha reset --all --yes
  kubeha reset --all --dry-run     (the services and paths per host; contact no host, change nothing)")]
    Reset(ResetArgs),
    /// etcd membership, health, snapshots and maintenance over the v3 API (mutual TLS).
    #[command(subcommand)]
    Etcd(EtcdCommand),
    /// Certificates on the hosts: expiry per host and file.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Every container image the cluster needs (for air-gapped mirrors), with its user.
    #[command(after_help = "\
Example:
  kubeha images -f cluster.yaml
  kubeha images -o json | jq -r '.[].image' | xargs -n1 crictl pull

With `imageRepository: mirror.example/k8s` in the cluster file every image (Kubernetes',
CoreDNS, the CNI's, MetalLB's) is taken from the mirror under the same path, and this list
shows exactly what the mirror must hold.")]
    Images,
    /// Compare the live cluster with the cluster file where they must agree (the pod CIDR).
    #[command(after_help = "\
Example:
  kubeha check -f cluster.yaml
  kubeha check --kubeconfig ~/.kube/config -o json | jq '.findings[] | select(.verdict != \"agrees\")'

Reads kubeadm-config (podSubnet), kube-proxy's clusterCIDR, the controller-managers'
--cluster-cidr, every node's podCIDR and the CNI's pool (Calico's Installation or Flannel's
net-conf.json). Exit 1 when any of them disagrees with the cluster file.")]
    Check(CheckArgs),
    /// Correct a live cluster whose configuration disagrees with the cluster file.
    #[command(subcommand)]
    Fix(FixCommand),
    /// Print the admin kubeconfig (named after the cluster), or merge it into yours.
    #[command(
        after_help = "Example:\n  kubeha kubeconfig > admin.conf\n  kubeha kubeconfig --merge     (into $KUBECONFIG's first file or ~/.kube/config, with a backup)"
    )]
    Kubeconfig(KubeconfigArgs),
    /// Certificate authority operations.
    #[command(subcommand)]
    Ca(CaCommand),
    /// kubeha's version and commit, and the releases it deploys by default.
    #[command(after_help = "\
Example:
  kubeha version
  kubeha version -o json | jq -r .kubernetes

Kubernetes, etcd, CoreDNS, pause and kube-proxy are the defaults when the cluster file sets
no `kubernetesVersion` (etcd, CoreDNS and pause then follow the chosen release); Calico, the
Tigera operator, Flannel and MetalLB are pinned in this binary.")]
    Version,
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  kubeha completions bash > /etc/bash_completion.d/kubeha\n  kubeha completions zsh > \"${fpath[1]}/_kubeha\""
    )]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// A local lab of real hosts (network + mount namespaces with sshd) on this machine.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Run a service from its systemd unit file on a host without systemd (lab hosts).
    #[command(
        hide = true,
        after_help = "Example:\n  kubeha service start etcd.service     (on a lab host, as `kubeha up` runs it)"
    )]
    Service(ServiceArgs),
    /// Measure kubeha's own speed (PKI issuance, rendering, re-rendering).
    #[command(
        after_help = "Example:\n  kubeha bench render\n  kubeha bench render --workers 1000 --key-algorithm ecdsa-p256 -o json\n  sudo kubeha bench day2 --runs 3"
    )]
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Start from a shipped example instead of the minimal starter.
    #[arg(long, value_enum)]
    pub example: Option<Example>,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Example {
    /// Guide 000's topology: 3 etcd, 2 LBs with a VIP, 3 control planes, 3 workers.
    ExternalEtcd,
    /// etcd on the control planes.
    Stacked,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Output directory (replaced as a whole; must be empty or an earlier render).
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Import an existing CA certificate and key instead of letting kubeha create one.
    #[command(
        after_help = "Example:\n  kubeha ca import --ca etcd --cert /etc/kubernetes/pki/etcd/ca.crt --key /etc/kubernetes/pki/etcd/ca.key"
    )]
    Import {
        /// Which CA: kubernetes, front-proxy or etcd.
        #[arg(long, value_enum)]
        ca: CaName,
        /// The CA's certificate (PEM).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The CA's private key (PEM, not encrypted).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// List the CAs and certificates kept in the state dir, with issuer and expiry (offline).
    ///
    /// Like `kubeadm certs check-expiration`, from the state dir alone: nothing is contacted,
    /// locked or written. `kubeha certs check` reads what the hosts actually hold.
    #[command(
        after_help = "Example:\n  kubeha ca list -f cluster.yaml\n  kubeha ca list -o json | jq -r '.certificates[] | [.name, .notAfter] | @tsv'"
    )]
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CaName {
    Kubernetes,
    FrontProxy,
    Etcd,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Fresh PKI + render of a cluster, then a no-change re-render.
    #[command(
        after_help = "Example:\n  kubeha bench render\n  kubeha bench render --workers 1000 --key-algorithm ecdsa-p256 -o json"
    )]
    Render {
        /// Cluster to measure: the shipped external-etcd example unless -f names a file.
        #[arg(long)]
        use_file: bool,
        /// Replace the example's workers with this many (e.g. 1000).
        #[arg(long)]
        workers: Option<usize>,
        /// Key algorithm for the run (default: both, one after the other).
        #[arg(long, value_enum)]
        key_algorithm: Option<KeyAlg>,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Lab up, one converge from empty hosts, then no-op re-runs (warm and cold SSH); needs root.
    ///
    /// Uses the shipped examples/lab.yaml (embedded) unless -f names a lab file. If a lab
    /// named `lab` is already up on this machine, a renamed copy (`bench-lab`,
    /// 198.18.250.0/24) is measured instead. State dir and lab key are scratch (a temp dir);
    /// the lab is removed at the end, also when the run fails.
    #[command(
        after_help = "Example:\n  sudo kubeha bench up\n  sudo kubeha bench up -f my-lab.yaml -o json"
    )]
    Up {
        /// Hosts worked on at once within a phase.
        #[arg(long, default_value_t = 16)]
        parallelism: usize,
        /// Seconds each health gate may take.
        #[arg(long, default_value_t = 60)]
        gate_timeout: u64,
        /// No-op runs with warm SSH connections; the median is reported.
        #[arg(long, default_value_t = 3)]
        warm_runs: usize,
    },
    /// SSH fan-out: first contact, upload and one command on N bare lab hosts; needs root.
    ///
    /// Per N: a lab of N hosts on 198.18.200-203.0/24 (cluster `fanout-N`); 20 files of 2 KiB
    /// uploaded to every host in one batch, then `sha256sum` of them checked against what was
    /// sent; cold (first contact) and again warm, with 16 hosts at once and with all N.
    #[command(
        after_help = "Example:\n  sudo kubeha bench fanout\n  sudo kubeha bench fanout --hosts 5,50 -o json"
    )]
    Fanout {
        /// Lab sizes to measure, comma-separated (at most 4, each 1..=240).
        #[arg(long, value_delimiter = ',', default_value = "5,10,25,50")]
        hosts: Vec<usize>,
    },
    /// Day-2 targets in a 10-host lab: replace a dead etcd member, add a worker, certs check
    /// (cold and warm SSH); needs root.
    ///
    /// Lab `bench-day2` on 198.18.60.0/24 (the examples/lab.yaml shape). Each command is this
    /// binary run as a child on a scratch cluster file and state dir. The replaced member's
    /// host is killed (etcd killed, link down) and comes back at the same address with an
    /// empty data dir. The lab is removed at the end, also when the run fails.
    #[command(
        after_help = "Example:\n  sudo kubeha bench day2\n  sudo kubeha bench day2 --runs 5 -o json"
    )]
    Day2 {
        /// Runs of each measurement; median, min and max are reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlg {
    Rsa2048,
    EcdsaP256,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create one lab host per node of a lab cluster file (needs root).
    ///
    /// Each host's SSH host keys are generated once and kept next to the lab key
    /// (`lab-hostkeys/<cluster>/<node>/`), so a host re-created after `lab down` presents the
    /// key `kubeha up` pinned. On a lab that is up it only checks each host.
    #[command(
        after_help = "Example:\n  kubeha lab up examples/lab.yaml\n  ssh -i .kubeha/lab-key root@198.18.0.11 hostname"
    )]
    Up {
        /// Lab cluster file (addresses in 198.18.0.0/15); defaults to -f.
        #[arg(value_name = "FILE")]
        cluster_file: Option<std::path::PathBuf>,
    },
    /// Remove every namespace, link, process and directory of a lab, also after a crash.
    ///
    /// The lab's keys and the cluster's state dir stay, so that the next `lab up` brings back
    /// the same hosts (same SSH host keys) and `kubeha up` recognises them: the lab key, the
    /// hosts' SSH keys (`lab-hostkeys/<cluster>/` next to the lab key) and
    /// `<state-dir>/<cluster>/` (CAs, secrets, known_hosts). `--purge` removes those too.
    #[command(after_help = "\
Example:
  kubeha lab down examples/lab.yaml                 the next `lab up` is the same lab
  kubeha lab down --purge examples/lab.yaml         also its keys and .kubeha/lab/ (asks)
  kubeha lab down --purge --yes examples/lab.yaml   the same, without asking (scripts)
  kubeha lab down --all

--purge removes the hosts' SSH keys of this lab, the lab key when `lab up` made it and no other
lab's hosts use it, and the cluster's state dir: the CAs and every certificate go, and the next
`lab up` + `kubeha up` build a new cluster with new host keys.")]
    Down {
        /// Lab cluster file; defaults to -f.
        #[arg(value_name = "FILE")]
        cluster_file: Option<std::path::PathBuf>,
        /// Remove every kubeha lab found on this machine (keys and state dirs stay).
        #[arg(long, conflicts_with = "purge")]
        all: bool,
        /// Also remove the lab's keys and the cluster's state dir (<state-dir>/<cluster>).
        #[arg(long)]
        purge: bool,
        /// With --purge: do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(long, requires = "purge")]
        yes: bool,
    },
    /// List lab hosts and whether their sshd answers.
    #[command(
        after_help = "Example:\n  kubeha lab status examples/lab.yaml\n  kubeha lab status -o json examples/lab.yaml"
    )]
    Status {
        /// Lab cluster file; defaults to -f.
        #[arg(value_name = "FILE")]
        cluster_file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// What to do with the unit.
    #[arg(value_enum)]
    pub action: ServiceAction,
    /// Unit name, e.g. etcd.service.
    pub unit: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceAction {
    Start,
    Stop,
    Restart,
    /// Apply a changed config in place (the unit's ExecReload=).
    Reload,
    Status,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Hosts worked on at once within a phase.
    #[arg(long, default_value_t = 16)]
    pub parallelism: usize,
    /// Seconds each health gate may take before the run stops.
    #[arg(long, default_value_t = 60)]
    pub gate_timeout: u64,
}

/// How `check` and `fix` reach the API server.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Kubeconfig to use instead of the operator's admin credentials from the state dir.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Seconds each API request may take.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum FixCommand {
    /// Bring the live pod CIDR to the cluster file's `networking.podCidr` (guide 000's fix).
    #[command(after_help = "\
Example:
  (edit networking.podCidr in cluster.yaml)
  kubeha fix pod-cidr -f cluster.yaml
  kubeha up -f cluster.yaml          (controller-manager --cluster-cidr, one control plane at a time)
  kubeha check -f cluster.yaml

Updates kubeadm-config's podSubnet, kube-proxy's clusterCIDR (then restarts kube-proxy),
Flannel's net-conf.json (then restarts Flannel). Nodes without a podCIDR get one from the
controller-manager once its flag is fixed; a node whose podCIDR lies outside the new range
keeps it until it is drained, deleted and re-registered: those are listed. Calico pools are
not rewritten (the operator keeps existing pools): the steps are printed.")]
    PodCidr(CheckArgs),
}

#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// Members with health, leader, learner state and DB size; flags ghost members.
    #[command(
        after_help = "Example:\n  kubeha etcd members -f cluster.yaml\n  kubeha etcd members -o json | jq '.members[] | {name, isLeader, isLearner, flags}'"
    )]
    Members,
    /// Health and latency of every member.
    #[command(
        after_help = "Example:\n  kubeha etcd health -f cluster.yaml\n  kubeha etcd health -o json | jq '.[] | select(.healthy | not)'"
    )]
    Health,
    /// Add a member as a learner (its host must be in the cluster file).
    #[command(
        after_help = "Example:\n  kubeha etcd add etcd-4     (after adding etcd-4 to the cluster file; `kubeha node add etcd-4` also starts it)"
    )]
    Add {
        /// Node name from the cluster file.
        node: String,
    },
    /// Remove a member (refused when it would lose quorum, unless --force).
    #[command(
        after_help = "Example:\n  kubeha etcd remove etcd-3\n  kubeha etcd remove 8e9e05c52164694d --force   (quorum is already lost)"
    )]
    Remove {
        /// Member name or hex ID.
        member: String,
        /// Remove even if the remaining members cannot form a quorum.
        #[arg(long)]
        force: bool,
    },
    /// Promote a learner to a voting member.
    #[command(
        after_help = "Example:\n  kubeha etcd promote etcd-4\n  kubeha etcd promote 8e9e05c52164694d"
    )]
    Promote {
        /// Member name or hex ID.
        member: String,
    },
    /// Remove ghost members: never started, or whose host is gone from the cluster file.
    #[command(
        after_help = "Example:\n  kubeha etcd forget              (every ghost member, after asking)\n  kubeha etcd forget etcd-4 --yes"
    )]
    Forget {
        /// Member name or hex ID; all ghosts when omitted.
        member: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Save or restore snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Defragment every member, one at a time.
    #[command(
        after_help = "Example:\n  kubeha etcd defrag -f cluster.yaml\n  kubeha etcd defrag -o json"
    )]
    Defrag,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stream a snapshot from a healthy member to FILE and verify it.
    #[command(
        after_help = "Example:\n  kubeha etcd snapshot save backup.db\n  jq . backup.db.json       (revision, size, sha256)"
    )]
    Save {
        /// Where to write the snapshot; FILE.json beside it records revision, size and sha256.
        #[arg(id = "snapshot_file", value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Rebuild the cluster from FILE on the hosts of the cluster file.
    #[command(
        after_help = "Example:\n  kubeha etcd snapshot restore backup.db --yes\n  kubeha etcd snapshot restore backup.db -f moved.yaml --yes   (onto other hosts or addresses)"
    )]
    Restore {
        // Not `file`: that id is the global `-f FILE` (the cluster file).
        /// A snapshot written by `kubeha etcd snapshot save` (or `etcdctl snapshot save`).
        #[arg(id = "snapshot_file", value_name = "FILE")]
        file: std::path::PathBuf,
        /// Do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Read the certificates on every host and print expiry per host and file.
    #[command(
        after_help = "Example:\n  kubeha certs check -f cluster.yaml\n  kubeha certs check --warn-days 60 -o json | jq '.hosts[].certificates[] | select(.status != \"ok\")'"
    )]
    Check {
        /// Warn below this many days.
        #[arg(long, default_value_t = 30)]
        warn_days: i64,
    },
    /// Re-issue leaf certificates (never a CA), push them and restart their consumers one
    /// host at a time (etcd members behind the etcd health gate).
    #[command(after_help = "\
Example:
  kubeha certs renew --all
  kubeha certs renew apiserver etcd-2/etcd/peer
  kubeha certs renew --all --dry-run     (list what would be re-issued and where; change nothing)")]
    Renew {
        /// Every leaf certificate.
        #[arg(long)]
        all: bool,
        /// `KIND` (apiserver, etcd/server, admin.conf …) on every node, or `NODE/KIND`.
        names: Vec<String>,
        /// Print the certificates that would be re-issued and the hosts that would get new
        /// files, in rollout order; issue nothing, contact no host, leave the state dir as it is.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// Merge into $KUBECONFIG's first file or ~/.kube/config instead of printing.
    #[arg(long)]
    pub merge: bool,
    /// The kubeconfig file to merge into (overrides $KUBECONFIG and ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub into: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Bring a node that is in the cluster file into the cluster (etcd: learner, then promoted).
    #[command(
        after_help = "Example:\n  kubeha node add etcd-4                  (after adding etcd-4 to the cluster file)\n  kubeha node add wn-3 --new-host-key     (a reinstalled machine under a known name)"
    )]
    Add {
        /// Node name from the cluster file.
        name: String,
        /// Bound in seconds on the new etcd member catching up, and on each gate.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// The machine is new under a name seen before: forget the SSH host key pinned for
        /// this node (only), pin the one it presents now and print its fingerprint.
        #[arg(long)]
        new_host_key: bool,
    },
    /// Take a node out: Kubernetes first (cordon, drain, delete the Node), then etcd
    /// membership (quorum guard), then its services and files.
    #[command(after_help = "\
Example:
  kubeha node remove wn-2
  kubeha node remove wn-2 --force          (wn-2 is dead: nothing waits on it)
  kubeha node remove etcd-3 --dry-run      (print the steps; contact no host, change nothing)")]
    Remove {
        /// Node name (still in the cluster file) or etcd member name.
        name: String,
        /// Remove even when quorum would be lost or the host does not answer (a dead node is
        /// cordoned and its Node deleted without waiting for its pods).
        #[arg(long)]
        force: bool,
        /// Seconds the drain may take (evictions respect PodDisruptionBudgets).
        #[arg(long, default_value_t = 300)]
        drain_timeout: u64,
        /// Kubeconfig for the drain instead of the operator's admin credentials.
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Print the steps the removal would take (drain, etcd membership with the quorum
        /// arithmetic, services, paths); contact no host and change nothing, not even the
        /// state dir.
        #[arg(long)]
        dry_run: bool,
    },
    /// Replace a dead etcd member at the same or a new address (update the file first).
    #[command(
        after_help = "Example:\n  kubeha node replace etcd-2                       (same address, new machine)\n  kubeha node replace etcd-5 --replaces etcd-2     (new name and address in the file)"
    )]
    Replace {
        /// Node name from the cluster file.
        name: String,
        /// The address the cluster file now gives the node (checked against the file).
        #[arg(long)]
        address: Option<std::net::IpAddr>,
        /// Bound in seconds on the new etcd member catching up, and on each gate.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Replace even when removing the old member would lose quorum.
        #[arg(long)]
        force: bool,
        /// The etcd member this node takes over from when its name changed too: the old
        /// member's name or peer URL (`https://<old address>:2380`).
        #[arg(long, value_name = "NAME|PEER-URL")]
        replaces: Option<String>,
        /// The replacement machine has a new SSH host key: forget the key pinned for this
        /// node (only), pin the one it presents now and print its fingerprint.
        #[arg(long)]
        new_host_key: bool,
    },
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Nodes to reset.
    pub nodes: Vec<String>,
    /// Every node of the cluster file.
    #[arg(long, conflicts_with = "nodes")]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Print, per host, the services that would be stopped and the paths that would be
    /// removed; contact no host and change nothing (no confirmation needed).
    #[arg(long)]
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command without subcommands, with its path, below `cmd`.
    fn leaves(cmd: &clap::Command, path: &mut Vec<String>, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            // clap's own `help` subcommand explains the others.
            if sub.get_name() == "help" {
                continue;
            }
            path.push(sub.get_name().to_string());
            if sub.has_subcommands() {
                leaves(sub, path, out);
            } else {
                out.push((path.join(" "), sub.clone()));
            }
            path.pop();
        }
    }

    fn all_leaves() -> Vec<(String, clap::Command)> {
        let mut cmd = command();
        cmd.build();
        let mut out = Vec::new();
        leaves(&cmd, &mut vec![], &mut out);
        out
    }

    /// Issue 13 (A8): 16 of 35 commands had no example in their own `--help`, and some
    /// arguments had no description. Checked on clap's own model so that it cannot regress.
    #[test]
    fn every_command_has_an_example_and_every_argument_a_description() {
        let leaves = all_leaves();
        assert!(leaves.len() >= 35, "{} commands", leaves.len());
        let mut missing = Vec::new();
        for (path, cmd) in &leaves {
            let after = [cmd.get_after_help(), cmd.get_after_long_help()]
                .into_iter()
                .flatten()
                .map(|h| h.to_string())
                .collect::<String>();
            // "Example:" followed by at least one command line.
            let example = after.split_once("Example:").is_some_and(|(_, rest)| {
                rest.lines()
                    .take_while(|l| l.starts_with("  ") || l.is_empty())
                    .any(|l| l.contains("kubeha "))
            });
            if !example {
                missing.push(format!("{path}: no example"));
            }
            for arg in cmd.get_arguments() {
                let help = [arg.get_help(), arg.get_long_help()]
                    .into_iter()
                    .flatten()
                    .map(|h| h.to_string())
                    .collect::<String>();
                if help.trim().is_empty() {
                    missing.push(format!("{path}: argument {} undescribed", arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }

    /// Issue 13 (A8): `-o` and `--ca-passphrase-file` were offered where they do nothing.
    #[test]
    fn output_and_passphrase_flags_appear_only_where_they_work() {
        let leaves = all_leaves();
        let has = |path: &str, id: &str| {
            let (_, cmd) = leaves
                .iter()
                .find(|(p, _)| p == path)
                .unwrap_or_else(|| panic!("no command {path}"));
            cmd.get_arguments().any(|a| a.get_id() == id)
        };
        for (path, cmd) in &leaves {
            let listed = |list: &[&[&str]]| list.iter().any(|p| p.join(" ") == *path);
            let args: Vec<&str> = cmd.get_arguments().map(|a| a.get_id().as_str()).collect();
            assert_eq!(
                args.contains(&"output"),
                listed(WITH_OUTPUT),
                "{path}: -o offered where it does nothing, or missing"
            );
            assert_eq!(
                args.contains(&"ca_passphrase_file"),
                listed(WITH_PASSPHRASE),
                "{path}"
            );
        }
        assert!(has("validate", "output") && has("ca list", "output"));
        assert!(!has("init", "output") && !has("completions", "output"));
        assert!(!has("ca import", "output") && has("ca import", "ca_passphrase_file"));
        assert!(!has("kubeconfig", "ca_passphrase_file"));
        assert!(has("etcd snapshot save", "output") && !has("etcd snapshot restore", "output"));
    }

    #[test]
    fn parses_output_and_passphrase_into_the_global_options() {
        let parse = |args: &[&str]| {
            from_matches(&command().try_get_matches_from(args).expect("parses")).expect("cli")
        };
        assert_eq!(
            parse(&["kubeha", "etcd", "members", "-o", "json"])
                .global
                .output,
            Format::Json
        );
        assert_eq!(parse(&["kubeha", "validate"]).global.output, Format::Table);
        let render = parse(&["kubeha", "render", "--ca-passphrase-file", "pw"]);
        assert_eq!(render.global.ca_passphrase_file, Some(PathBuf::from("pw")));
        let err = command()
            .try_get_matches_from(["kubeha", "init", "-o", "json"])
            .expect_err("init prints no data");
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn the_command_line_model_is_consistent() {
        command().debug_assert();
    }
}
