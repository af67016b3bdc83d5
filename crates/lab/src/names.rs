//! Names and paths of a lab's pieces, all derived from the cluster name so that labs of
//! different clusters never collide and leftovers can be found by prefix after a crash.
//!
//! | piece | name | example |
//! |---|---|---|
//! | lab id | 6 hex of sha256(`kubeha-lab:` + cluster) | `3f9a1c` |
//! | network namespace | `khl-<id>-<node>` | `khl-3f9a1c-cp-1` |
//! | bridge | `khl<id>-br` | `khl3f9a1c-br` |
//! | veth, root end | `khl<id>-<5 hex of sha256(node)>` | `khl3f9a1c-0b1e2` |
//! | veth, host end | `khl<id>p<5 hex>` until renamed `eth0` | `khl3f9a1cp0b1e2` |
//! | runtime dir | `/run/kubeha-lab/<id>/` (mount + UTS namespace handles) | |
//! | data dir | `<data root>/<id>/<node>/` (`/etc`, `/var/lib` upper dirs, sshd log) | |
//! | state file | `<data root>/<id>/lab.json` (informational; `down` works without it) | |
//!
//! The data root defaults to `/var/lib/kubeha-lab`. Inside a host: `/etc` and `/var/lib` are
//! overlays on the machine's, `/run` a fresh tmpfs, sshd's config `/etc/ssh/sshd_config`,
//! its host key `/etc/ssh/ssh_host_ed25519_key` (a copy of the one kept in lab state, see
//! [`crate::keys`]), the authorised key `/etc/ssh/kubeha-lab/authorized_keys`.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

/// Every name of every lab starts with this.
pub const PREFIX: &str = "khl";
/// Runtime handles (persisted mount and UTS namespaces) live under here, one dir per lab.
pub const RUN_ROOT: &str = "/run/kubeha-lab";
/// Default root of the lab hosts' private `/etc` and `/var/lib` layers.
pub const DATA_ROOT: &str = "/var/lib/kubeha-lab";
/// Where `ip netns` keeps network namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// The only addresses a lab may use besides loopback: 198.18.0.0/15 (RFC 2544, network testing).
pub fn lab_range() -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15)
}

/// The lab id of a cluster: 6 hex characters of sha256(`kubeha-lab:` + name).
pub fn lab_id(cluster: &str) -> String {
    short_hash(&format!("kubeha-lab:{cluster}"), 6)
}

fn short_hash(s: &str, n: usize) -> String {
    let mut h = hex::encode(Sha256::digest(s.as_bytes()));
    h.truncate(n);
    h
}

/// Whether `s` looks like a lab id (6 lower-case hex digits).
pub fn is_lab_id(s: &str) -> bool {
    s.len() == 6
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Network namespace of a lab host.
pub fn namespace(lab_id: &str, node: &str) -> String {
    format!("{PREFIX}-{lab_id}-{node}")
}

/// Splits a host namespace name into lab id and node name.
pub fn parse_namespace(ns: &str) -> Option<(&str, &str)> {
    let rest = ns.strip_prefix(PREFIX)?.strip_prefix('-')?;
    let (id, node) = (rest.get(..6)?, rest.get(6..)?.strip_prefix('-')?);
    (is_lab_id(id) && !node.is_empty()).then_some((id, node))
}

/// The lab's bridge in the root namespace.
pub fn bridge(lab_id: &str) -> String {
    format!("{PREFIX}{lab_id}-br")
}

/// Root-side veth name of a host (≤ 15 characters).
pub fn veth(lab_id: &str, node: &str) -> String {
    format!("{PREFIX}{lab_id}-{}", short_hash(node, 5))
}

/// Temporary name of the host side of the veth, before it is moved and renamed `eth0`.
pub fn veth_peer(lab_id: &str, node: &str) -> String {
    format!("{PREFIX}{lab_id}p{}", short_hash(node, 5))
}

/// The lab id a link name belongs to, if it is a lab link.
pub fn link_lab_id(link: &str) -> Option<&str> {
    let id = link.strip_prefix(PREFIX)?.get(..6)?;
    let next = link.as_bytes().get(PREFIX.len() + 6).copied();
    (is_lab_id(id) && matches!(next, Some(b'-' | b'p'))).then_some(id)
}

/// `/run/kubeha-lab/<id>`.
pub fn run_dir(lab_id: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(lab_id)
}

/// Handle of a host's persisted mount namespace.
pub fn mnt_handle(lab_id: &str, node: &str) -> PathBuf {
    run_dir(lab_id).join(format!("{node}.mnt"))
}

/// Handle of a host's persisted UTS namespace.
pub fn uts_handle(lab_id: &str, node: &str) -> PathBuf {
    run_dir(lab_id).join(format!("{node}.uts"))
}

/// Handle of a host's network namespace.
pub fn net_handle(ns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_parse_back() {
        let id = lab_id("lab");
        assert!(is_lab_id(&id));
        assert_ne!(id, lab_id("lab2"));
        let node = "a-very-long-node-name-that-is-still-a-dns-label";
        assert!(veth(&id, node).len() <= 15);
        assert!(veth_peer(&id, node).len() <= 15);
        assert!(bridge(&id).len() <= 15);
        let ns = namespace(&id, node);
        assert_eq!(parse_namespace(&ns), Some((id.as_str(), node)));
        assert_eq!(parse_namespace("khl-zz-x"), None);
        assert_eq!(parse_namespace("other"), None);
        assert_eq!(link_lab_id(&bridge(&id)), Some(id.as_str()));
        assert_eq!(link_lab_id(&veth(&id, node)), Some(id.as_str()));
        assert_eq!(link_lab_id(&veth_peer(&id, node)), Some(id.as_str()));
        assert_eq!(link_lab_id("eth0"), None);
        assert_eq!(link_lab_id("khlabcdefx"), None);
    }
}
