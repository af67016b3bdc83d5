//! Lab hosts on one machine: each node of a lab cluster file becomes a host made of Linux
//! namespaces — its own network (an `eth0` on the lab bridge), its own `/etc`, `/var/lib` and
//! `/run`, its own host name and its own `sshd` — so kubeha reaches it over real SSH exactly
//! as it would reach a VM. Hosts have no systemd: [`supervisor`] runs services from the unit
//! files kubeha renders (`kubeha service start etcd.service`).
//!
//! ```no_run
//! # fn main() -> Result<(), kubeha_lab::LabError> {
//! let spec = kubeha_spec::load("examples/lab.yaml".as_ref()).expect("lab file").spec;
//! let opts = kubeha_lab::LabOptions::default();
//! let report = kubeha_lab::Lab::up(&spec, &opts)?; // as root; idempotent
//! let ns = kubeha_lab::host_namespace(&spec, "cp-1");
//! let out = kubeha_lab::exec_in(&ns, &["hostname"])?;
//! assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cp-1");
//! kubeha_lab::Lab::down(&spec, &opts)?; // also after a crash; idempotent
//! # let _ = report; Ok(()) }
//! ```
//!
//! Network rule: a lab only uses 198.18.0.0/15 and loopback ([`check_spec`] refuses anything
//! else); hosts get no default route and no NAT. Names are in [`names`]. Each host's SSH
//! host keys are kept in lab state next to the lab key ([`keys`]), so a host that `lab up`
//! re-creates is the same host to `kubeha up`.

mod cmd;
mod error;
mod hosts;
pub mod keys;
pub mod names;
pub mod supervisor;
mod sys;

pub use error::LabError;
pub use hosts::{
    AUTHORIZED_KEYS, DownReport, HostReport, Lab, LabOptions, LabReport, Progress, SSHD,
    SSHD_CONFIG, check_spec, exec_in, exec_in_timeout, host_namespace, read_state, sshd_answers,
};
pub use keys::{LabKeys, lab_keys, purge_keys};
pub use names::lab_id;

/// Whether this process runs as root (the lab needs it to create namespaces and mounts).
pub fn is_root() -> bool {
    sys::is_root()
}

/// Every process (pid) currently inside a lab host's network or mount namespace.
pub fn host_pids(namespace: &str) -> Vec<u32> {
    let mut ids = Vec::new();
    ids.extend(sys::ns_of_handle("net", &names::net_handle(namespace)));
    if let Some((id, node)) = names::parse_namespace(namespace) {
        ids.extend(sys::ns_of_handle("mnt", &names::mnt_handle(id, node)));
    }
    sys::pids_in(&ids).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_lab_example_is_a_valid_lab() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lab.yaml");
        let loaded = kubeha_spec::load(&path).expect("examples/lab.yaml loads");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        check_spec(&loaded.spec).expect("examples/lab.yaml obeys the lab's network rule");
        assert_eq!(loaded.spec.nodes.len(), 10);
    }
}
