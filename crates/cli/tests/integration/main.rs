//! CLI integration tests: one binary, one module per command.

mod harness;

mod ca;
mod certs;
mod cli;
mod cluster;
mod daytwo;
mod kubeconfig;
mod lab;
mod labkit;
mod node;
mod reload;
mod render;
mod restore;
mod validate;
