//! `kubeha render`: issue what the PKI lacks, render every host, write the tree.

use std::{process::ExitCode, time::Instant};

use serde::Serialize;

use crate::{
    args::{Global, RenderArgs},
    error::CliError,
    output::emit,
    table::Table,
    tree::{self, Manifest, Outcome},
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    out: String,
    outcome: Outcome,
    keys_generated: usize,
    certificates_issued: usize,
    certificates_reused: usize,
    seconds: f64,
    manifest: Manifest,
}

pub fn run(g: &Global, a: &RenderArgs) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let loaded = super::load_spec(g)?;
    let spec = &loaded.spec;
    // Before the state dir is touched: a refused --out must leave no new CA behind.
    tree::check_target(&a.out)?;
    let mut store = super::open_store(g, &spec.name)?;
    let (materials, issued) = store.ensure(spec, time::OffsetDateTime::now_utc())?;
    super::print_pki_notices(&issued);
    if issued.keys_generated > 0 {
        progress!(
            "pki: generated {} key(s), issued {} certificate(s), reused {}",
            issued.keys_generated,
            issued.issued.len(),
            issued.reused
        );
    }
    let rendered = kubeha_render::render(spec, &materials)?;
    let (manifest, outcome) = tree::write(&a.out, &spec.name, &rendered)?;
    drop(store);
    let report = Report {
        out: a.out.display().to_string(),
        outcome,
        keys_generated: issued.keys_generated,
        certificates_issued: issued.issued.len(),
        certificates_reused: issued.reused,
        seconds: started.elapsed().as_secs_f64(),
        manifest,
    };
    emit(g.output, &report, || human(&report))?;
    Ok(ExitCode::SUCCESS)
}

fn human(r: &Report) -> String {
    let mut t = Table::new(["HOST", "FILES", "SECRETS", "BYTES", "SERVICES"]);
    for (node, h) in &r.manifest.hosts {
        let secrets = h.files.iter().filter(|f| f.sensitive).count();
        let bytes: usize = h.files.iter().map(|f| f.size).sum();
        t.row([
            node.clone(),
            h.files.len().to_string(),
            secrets.to_string(),
            bytes.to_string(),
            h.services.join(","),
        ]);
    }
    let total: usize = r
        .manifest
        .hosts
        .values()
        .map(|h| h.files.len())
        .sum::<usize>()
        + r.manifest.operator.len();
    let verb = match r.outcome {
        Outcome::Unchanged => "unchanged",
        Outcome::Written => "written",
    };
    let out = std::path::Path::new(&r.out);
    // What this render holds, from its manifest: operator files and in-cluster bundles
    // (MetalLB only when the cluster file configures it).
    let listed = |dir: &str| -> Vec<String> {
        r.manifest
            .operator
            .iter()
            .filter_map(|f| f.path.strip_prefix(dir)?.strip_prefix('/'))
            .filter(|name| !name.contains('/'))
            .map(str::to_string)
            .collect()
    };
    let bundles: Vec<String> = listed(kubeha_render::CLUSTER_DIR)
        .iter()
        .map(|f| {
            let stem = f.strip_suffix(".yaml").unwrap_or(f);
            // `NN-<bundle>`: the number only gives the apply order.
            stem.split_once('-').map_or(stem, |(_, b)| b).to_string()
        })
        .collect();
    format!(
        "{}\n{} files {verb} to {} in {:.2}s ({} keys generated, {} certificates issued, {} reused)\noperator files: {} ({})\nin-cluster objects: {} ({}; applied by `kubeha up`)\n",
        t.render(),
        total,
        out.display(),
        r.seconds,
        r.keys_generated,
        r.certificates_issued,
        r.certificates_reused,
        out.join(kubeha_render::operator::DIR).display(),
        listed(kubeha_render::operator::DIR).join(", "),
        out.join(kubeha_render::CLUSTER_DIR).display(),
        bundles.join(", "),
    )
}
