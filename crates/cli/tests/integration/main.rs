//! CLI integration tests: one binary, one module per command.

// Tests print progress freely; the binary itself may not (see crates/cli/clippy.toml).
#![allow(clippy::disallowed_macros)]

mod harness;

mod ca;
mod certs;
mod cli;
mod cluster;
mod daytwo;
mod dryrun;
mod fuzz_replay;
mod kubeconfig;
mod lab;
mod labkit;
mod node;
mod pipes;
mod readonly;
mod reload;
mod render;
mod restore;
mod validate;
