//! CLI integration tests: one binary, one module per command.

mod harness;

mod ca;
mod cli;
mod lab;
mod render;
mod validate;
