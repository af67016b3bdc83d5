//! Integration tests: one binary (link time matters on small CI machines) with a real `sshd`
//! per test on its own 127.0.0.x address, and the local transport.
//!
//! Network rule: these tests only ever connect to 127.0.0.0/8.
#![allow(clippy::unwrap_used)]

mod harness;
mod local;
mod ssh;
