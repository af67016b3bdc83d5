//! `kubeha bench render` times, on this machine: a fresh PKI (every key generated, on all cores),
//! the pure render, the write of the output tree, and a second run with nothing changed.
//! It also times key generation on one thread to give the per-key cost the totals rest on.

use std::{path::Path, process::ExitCode, time::Instant};

use kubeha_spec::{KeyAlgorithm, Node, Role, Spec, Ssh};
use serde::Serialize;

use crate::{
    args::{Global, KeyAlg},
    error::CliError,
    output::emit,
    table::Table,
    tree,
};

use super::{median, peak_rss_mb};

const EXAMPLE: &str = include_str!("../../../../../examples/external-etcd.yaml");

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    cluster: String,
    key_algorithm: String,
    nodes: usize,
    keys: usize,
    files: usize,
    per_key_ms_one_thread: Option<f64>,
    threads: usize,
    fresh_pki_ms: f64,
    render_ms: f64,
    write_ms: f64,
    fresh_total_ms: f64,
    unchanged_rerun_ms: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BenchReport {
    runs: usize,
    rows: Vec<Row>,
    peak_rss_mb: Option<f64>,
}

pub fn run(
    g: &Global,
    use_file: bool,
    workers: Option<usize>,
    key_algorithm: Option<KeyAlg>,
    runs: usize,
) -> Result<ExitCode, CliError> {
    let base = if use_file {
        super::super::load_spec(g)?.spec
    } else {
        kubeha_spec::load_str(EXAMPLE, Path::new("examples/external-etcd.yaml"))?.spec
    };
    let algs = match key_algorithm {
        Some(KeyAlg::Rsa2048) => vec![KeyAlgorithm::Rsa2048],
        Some(KeyAlg::EcdsaP256) => vec![KeyAlgorithm::EcdsaP256],
        None => vec![KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048],
    };
    let runs = runs.max(1);
    let mut rows = Vec::new();
    for alg in algs {
        let mut spec = base.clone();
        spec.certificates.key_algorithm = alg;
        if let Some(n) = workers {
            with_workers(&mut spec, n);
        }
        errln!(
            "bench: {} nodes, {} ({} run(s))…",
            spec.nodes.len(),
            alg.as_str(),
            runs
        );
        rows.push(measure(&spec, runs, workers.is_none())?);
    }
    let report = BenchReport {
        runs,
        rows,
        peak_rss_mb: peak_rss_mb(),
    };
    emit(g.output, &report, || human(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// Replaces the workers with `n` generated ones on a network large enough to hold them.
fn with_workers(spec: &mut Spec, n: usize) {
    spec.nodes.retain(|x| !x.has(Role::Worker));
    spec.networking.node_cidr = "10.10.0.0/16".parse().unwrap_or(spec.networking.node_cidr);
    spec.networking.pod_cidr = "10.128.0.0/9".parse().unwrap_or(spec.networking.pod_cidr);
    for i in 0..n {
        let addr = std::net::Ipv4Addr::new(10, 10, 4 + (i / 250) as u8, 1 + (i % 250) as u8);
        spec.nodes.push(Node {
            name: format!("worker-{i:04}"),
            address: addr.into(),
            roles: [Role::Worker].into(),
            ssh: Ssh {
                user: "k8sadmin".into(),
                port: 22,
                key: None,
            },
            labels: Default::default(),
            taints: vec![],
            lb_priority: None,
        });
    }
}

fn measure(spec: &Spec, runs: usize, per_key: bool) -> Result<Row, CliError> {
    let (mut pki, mut render, mut write, mut total, mut rerun) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut keys = 0;
    let mut files = 0;
    for _ in 0..runs {
        let dir = tempfile::tempdir().map_err(CliError::io(
            "create temporary directory",
            std::env::temp_dir(),
        ))?;
        let state = dir.path().join("state");
        let out = dir.path().join("out");
        let t0 = Instant::now();
        let mut store = kubeha_pki::open(&state, &spec.name, kubeha_pki::StoreOptions::default())?;
        let (materials, issued) = store.ensure(spec, time::OffsetDateTime::now_utc())?;
        let t1 = Instant::now();
        let rendered = kubeha_render::render(spec, &materials)?;
        let t2 = Instant::now();
        tree::write(&out, &spec.name, &rendered)?;
        let t3 = Instant::now();
        drop(store);
        keys = issued.keys_generated;
        files =
            rendered.hosts.iter().map(|h| h.files.len()).sum::<usize>() + rendered.operator.len();
        pki.push(t1 - t0);
        render.push(t2 - t1);
        write.push(t3 - t2);
        total.push(t3 - t0);
        // The same cluster again: nothing to issue, nothing to write.
        let t4 = Instant::now();
        let mut store = kubeha_pki::open(&state, &spec.name, kubeha_pki::StoreOptions::default())?;
        let (materials, again) = store.ensure(spec, time::OffsetDateTime::now_utc())?;
        let rendered = kubeha_render::render(spec, &materials)?;
        let (_, outcome) = tree::write(&out, &spec.name, &rendered)?;
        rerun.push(t4.elapsed());
        if again.keys_generated != 0 || outcome != tree::Outcome::Unchanged {
            return Err(CliError::Input {
                message: "a re-run with nothing changed changed something".into(),
                help: "this is a bug in kubeha".into(),
            });
        }
    }
    let per_key_ms_one_thread = if per_key && keys > 0 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .map_err(|e| CliError::Input {
                message: format!("cannot start a thread pool: {e}"),
                help: String::new(),
            })?;
        let t = Instant::now();
        pool.install(|| kubeha_pki::issue_in_memory(spec, time::OffsetDateTime::now_utc()))?;
        Some(t.elapsed().as_secs_f64() * 1000.0 / keys as f64)
    } else {
        None
    };
    Ok(Row {
        cluster: spec.name.clone(),
        key_algorithm: spec.certificates.key_algorithm.as_str().into(),
        nodes: spec.nodes.len(),
        keys,
        files,
        per_key_ms_one_thread,
        threads: rayon::current_num_threads(),
        fresh_pki_ms: median(pki),
        render_ms: median(render),
        write_ms: median(write),
        fresh_total_ms: median(total),
        unchanged_rerun_ms: median(rerun),
    })
}

fn human(r: &BenchReport) -> String {
    let mut t = Table::new([
        "NODES",
        "KEYS",
        "ALGORITHM",
        "KEY(1 THREAD)",
        "FRESH PKI",
        "RENDER",
        "WRITE",
        "FRESH TOTAL",
        "UNCHANGED RE-RUN",
        "FILES",
    ]);
    for row in &r.rows {
        t.row([
            row.nodes.to_string(),
            row.keys.to_string(),
            row.key_algorithm.clone(),
            row.per_key_ms_one_thread
                .map_or("-".into(), |v| format!("{v:.1} ms")),
            format!("{:.0} ms", row.fresh_pki_ms),
            format!("{:.0} ms", row.render_ms),
            format!("{:.0} ms", row.write_ms),
            format!("{:.0} ms", row.fresh_total_ms),
            format!("{:.0} ms", row.unchanged_rerun_ms),
            row.files.to_string(),
        ]);
    }
    format!(
        "{}medians of {} run(s) on {} thread(s); peak memory {}\n",
        t.render(),
        r.runs,
        r.rows.first().map_or(0, |x| x.threads),
        r.peak_rss_mb
            .map_or("unknown".into(), |m| format!("{m:.0} MB"))
    )
}
