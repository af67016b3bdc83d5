//! CLI integration tests: one binary, one module per command.

mod harness;

mod ca;
mod cli;
mod render;
mod validate;
