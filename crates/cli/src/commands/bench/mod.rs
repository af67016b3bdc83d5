//! `kubeha bench`: kubeha measuring itself, so that speed claims are reproducible.
//!
//! - `bench render` ([`render`]): fresh PKI, pure render, write, and an unchanged re-run.
//! - `bench up` and `bench fanout` ([`lab`]): real SSH to lab hosts on this machine (root).
//! - `bench day2` ([`day2`]): node replace, node add and certs check in a lab (root).

mod day2;
mod lab;
mod render;

use std::{process::ExitCode, time::Duration};

use crate::{
    args::{BenchArgs, BenchWhat, Global},
    error::CliError,
};

pub fn run(g: &Global, b: &BenchArgs) -> Result<ExitCode, CliError> {
    match &b.what {
        BenchWhat::Render {
            use_file,
            workers,
            key_algorithm,
            runs,
        } => render::run(g, *use_file, *workers, *key_algorithm, *runs),
        BenchWhat::Up {
            parallelism,
            gate_timeout,
            warm_runs,
        } => lab::up(
            g,
            *parallelism,
            Duration::from_secs(*gate_timeout),
            *warm_runs,
        ),
        BenchWhat::Fanout { hosts } => lab::fanout(g, hosts),
        BenchWhat::Day2 { runs } => day2::run(g, *runs),
    }
}

/// Median of durations, in milliseconds (0 for none).
fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Peak resident memory of this process (`VmHWM`), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
