//! Who does what: the views of a [`Spec`] that rendering, planning and PKI ask for.
//!
//! Everything here is derived; nothing is stored twice.

use std::net::{IpAddr, Ipv4Addr};

use crate::model::{EtcdTopology, Node, Role, Spec};

impl Spec {
    /// Nodes holding `role`, in cluster-file order.
    pub fn nodes_with(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.has(role))
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// etcd members: the `etcd` role, or every control plane in the stacked topology.
    pub fn etcd_members(&self) -> Vec<&Node> {
        match self.topology {
            EtcdTopology::External => self.nodes_with(Role::Etcd).collect(),
            EtcdTopology::Stacked => self
                .nodes
                .iter()
                .filter(|n| n.has(Role::Etcd) || n.has(Role::ControlPlane))
                .collect(),
        }
    }

    pub fn is_etcd_member(&self, node: &Node) -> bool {
        self.etcd_members().iter().any(|m| m.name == node.name)
    }

    pub fn control_planes(&self) -> Vec<&Node> {
        self.nodes_with(Role::ControlPlane).collect()
    }

    /// The control plane that runs `kubeadm init`'s part: the first one listed.
    pub fn init_control_plane(&self) -> Option<&Node> {
        self.nodes_with(Role::ControlPlane).next()
    }

    /// Nodes that run a kubelet and join Kubernetes (control planes and workers).
    pub fn kube_nodes(&self) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.has(Role::ControlPlane) || n.has(Role::Worker))
            .collect()
    }

    pub fn lbs(&self) -> Vec<&Node> {
        self.nodes_with(Role::Lb).collect()
    }

    /// VRRP priority of an LB node: explicit, else 101 for the first LB and 100 below it.
    pub fn lb_priority(&self, node: &Node) -> u8 {
        if let Some(p) = node.lb_priority {
            return p;
        }
        let idx = self
            .lbs()
            .iter()
            .position(|n| n.name == node.name)
            .unwrap_or(0);
        101u8.saturating_sub(idx.min(100) as u8)
    }

    /// The LB that starts as keepalived MASTER: the highest priority, first listed on ties.
    pub fn lb_master(&self) -> Option<&Node> {
        let lbs = self.lbs();
        let mut best: Option<&Node> = None;
        for n in lbs {
            if best.is_none_or(|b| self.lb_priority(n) > self.lb_priority(b)) {
                best = Some(n);
            }
        }
        best
    }

    /// `https://<addr>:2380` for a member.
    pub fn etcd_peer_url(node: &Node) -> String {
        format!("https://{}:2380", bracket(node.address))
    }

    /// `https://<addr>:2379` for a member.
    pub fn etcd_client_url(node: &Node) -> String {
        format!("https://{}:2379", bracket(node.address))
    }

    /// `name=peerURL,...` over every member, in cluster-file order.
    pub fn etcd_initial_cluster(&self) -> String {
        self.etcd_members()
            .iter()
            .map(|n| format!("{}={}", n.name, Self::etcd_peer_url(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every member's client URL, comma-joined (`--etcd-servers` without the local proxy).
    pub fn etcd_client_urls(&self) -> String {
        self.etcd_members()
            .iter()
            .map(|n| Self::etcd_client_url(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A stable per-cluster token for `--initial-cluster-token`.
    pub fn etcd_cluster_token(&self) -> String {
        format!("{}-etcd", self.name)
    }

    /// First usable address of the service CIDR: the `kubernetes` Service and an apiserver SAN.
    pub fn first_service_ip(&self) -> Ipv4Addr {
        nth_addr(self.networking.service_cidr.network(), 1)
    }

    /// The 10th address of the service CIDR: the cluster DNS Service.
    pub fn dns_service_ip(&self) -> Ipv4Addr {
        nth_addr(self.networking.service_cidr.network(), 10)
    }

    /// How many nodes the pod CIDR can hold at the per-node mask.
    pub fn pod_cidr_node_capacity(&self) -> u64 {
        let bits = u32::from(self.networking.node_cidr_mask_size)
            .saturating_sub(u32::from(self.networking.pod_cidr.prefix_len()));
        1u64 << bits.min(63)
    }

    /// Fully qualified host name (`<node>.<baseDomain>`).
    pub fn fqdn(&self, node: &Node) -> String {
        format!("{}.{}", node.name, self.base_domain)
    }

    /// Image reference under the configured repository.
    pub fn image(&self, name: &str, tag: &str) -> String {
        format!("{}/{}:{}", self.image_repository, name, tag)
    }

    pub fn pause_image(&self) -> String {
        self.image("pause", self.kubernetes_version.pause_tag())
    }
}

fn nth_addr(base: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base).wrapping_add(n))
}

/// An address as it goes into a URL (IPv6 bracketed).
pub fn bracket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}
