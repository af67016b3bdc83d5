//! The operator's own files, cluster-wide, under `_operator/` in the output dir: the admin
//! kubeconfig, and three documents that instantiate guide 000's diagrams and tables and
//! design.md's bring-up order for this very cluster (names and addresses from the spec).

use std::fmt::Write as _;

use kubeha_pki::{CaId, LeafKind};
use kubeha_spec::{
    CniPlugin, EndpointHost, EtcdAccess, EtcdDeployment, EtcdTopology, Node, Role, Spec,
};

use crate::{Ctx, HostFile, Result, provision};

/// Directory of the operator files inside the output dir.
pub const DIR: &str = "_operator";

/// Every cluster-level operator file.
pub fn files(cx: Ctx<'_>) -> Result<Vec<HostFile>> {
    let spec = cx.spec;
    Ok(vec![
        HostFile::secret(format!("{DIR}/admin.kubeconfig"), admin_kubeconfig(cx)?),
        HostFile::public(format!("{DIR}/topology.md"), topology_md(spec)),
        HostFile::public(format!("{DIR}/addresses.md"), addresses_md(spec)),
        HostFile::public(format!("{DIR}/bring-up.md"), bring_up_md(spec)),
    ])
}

/// kubeconfig user of the operator's admin credentials: `<cluster>-admin`.
pub fn admin_user(spec: &Spec) -> String {
    format!("{}-admin", spec.name)
}

/// The operator's admin kubeconfig: cluster `<name>`, user `<name>-admin`, context
/// `<name>-admin@<name>`. Not kubeadm's fixed `kubernetes`/`kubernetes-admin`: merged into
/// `~/.kube/config` next to other clusters it collides with nothing (guide 000's kubeconfig
/// FAQ). The user entry's name is local to the file; the certificate keeps kubeadm's CN.
pub fn admin_kubeconfig(cx: Ctx<'_>) -> Result<String> {
    let spec = cx.spec;
    crate::kubeconfig::kubeconfig(
        &spec.name,
        &spec.endpoint.url(),
        &cx.ca(CaId::Kubernetes)?.cert_pem,
        &admin_user(spec),
        cx.operator_leaf(LeafKind::AdminConf)?,
    )
}

// ---------------------------------------------------------------------------------------------
// Shared wording

/// What a node does, in words, including stacked etcd membership it has without the role.
fn role_words(spec: &Spec, node: &Node) -> Vec<&'static str> {
    let mut words = vec![];
    if node.has(Role::ControlPlane) {
        words.push("control plane");
    }
    if spec.is_etcd_member(node) {
        words.push("etcd");
    }
    if node.has(Role::Worker) {
        words.push("worker");
    }
    if node.has(Role::Lb) {
        words.push("HAProxy + Keepalived");
    }
    words
}

fn cni_name(spec: &Spec) -> &'static str {
    match spec.cni.plugin {
        CniPlugin::Calico => "Calico",
        CniPlugin::Flannel => "Flannel",
    }
}

fn names(nodes: &[&Node]) -> String {
    if nodes.is_empty() {
        return "none".into();
    }
    nodes
        .iter()
        .map(|n| format!("`{}`", n.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether API servers reach etcd through the per-control-plane proxy on 127.0.0.1:2379.
fn uses_local_proxy(spec: &Spec) -> bool {
    spec.topology == EtcdTopology::External && spec.etcd.apiserver_access == EtcdAccess::LocalProxy
}

fn etcd_deployment_words(spec: &Spec) -> &'static str {
    match spec.etcd.deployment {
        EtcdDeployment::Systemd => "systemd unit `etcd.service`",
        EtcdDeployment::StaticPod => "kubelet static pod",
    }
}

fn lbs_in_priority_order(spec: &Spec) -> Vec<&Node> {
    let mut lbs = spec.lbs();
    // Stable: equal priorities keep file order, as lb_master() does.
    lbs.sort_by_key(|n| std::cmp::Reverse(spec.lb_priority(n)));
    lbs
}

// ---------------------------------------------------------------------------------------------
// topology.md

/// Mermaid node id: node names are DNS labels, so `-` → `_` is injective, and the prefix keeps
/// names like `end` from reading as keywords.
fn mermaid_id(node: &Node) -> String {
    format!("n_{}", node.name.replace('-', "_"))
}

fn mermaid_node(spec: &Spec, node: &Node) -> String {
    format!(
        "{}(\"{}<br/>{}<br/>{}\")",
        mermaid_id(node),
        node.name,
        role_words(spec, node).join(" + "),
        node.address
    )
}

/// Every pair once: the members talk to each other.
fn mesh(out: &mut String, nodes: &[&Node]) {
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            let _ = writeln!(out, "{} <--> {}", mermaid_id(a), mermaid_id(b));
        }
    }
}

/// The Mermaid `graph TB` of guide 000, for this cluster. Each node sits in one subgraph, by
/// its main role (control plane, then etcd, then load balancer, then worker); in the stacked
/// topology etcd is inside the control-plane nodes.
pub fn mermaid(spec: &Spec) -> String {
    let cps: Vec<&Node> = spec.control_planes();
    let etcd_only: Vec<&Node> = spec
        .etcd_members()
        .into_iter()
        .filter(|n| !n.has(Role::ControlPlane))
        .collect();
    let lbs: Vec<&Node> = spec
        .lbs()
        .into_iter()
        .filter(|n| !n.has(Role::ControlPlane) && !spec.is_etcd_member(n))
        .collect();
    let workers: Vec<&Node> = spec
        .nodes_with(Role::Worker)
        .filter(|n| !n.has(Role::ControlPlane))
        .collect();
    let cp_workers: Vec<&Node> = spec
        .nodes_with(Role::Worker)
        .filter(|n| n.has(Role::ControlPlane))
        .collect();
    let stacked_etcd = cps.iter().any(|n| spec.is_etcd_member(n));

    let mut m = String::from("graph TB\n");
    let _ = writeln!(m, "subgraph C [Control plane and etcd]\ndirection TB");
    if !cps.is_empty() {
        let title = if stacked_etcd {
            "Control plane nodes with stacked etcd"
        } else {
            "Control plane nodes"
        };
        let _ = writeln!(m, "subgraph CP [{title}]\ndirection LR");
        for n in &cps {
            let _ = writeln!(m, "{}", mermaid_node(spec, n));
        }
        mesh(&mut m, &cps);
        m.push_str("end\n");
    }
    if !etcd_only.is_empty() {
        m.push_str("subgraph E [etcd cluster]\ndirection LR\n");
        for n in &etcd_only {
            let _ = writeln!(m, "{}", mermaid_node(spec, n));
        }
        mesh(&mut m, &etcd_only);
        m.push_str("end\n");
    }
    let front = if lbs.is_empty() {
        // No HAProxy pair: whatever the endpoint points at fronts the API servers.
        let _ = writeln!(m, "API(\"API endpoint<br/>{}\")", spec.endpoint.url());
        "API"
    } else {
        let title = match &spec.load_balancer {
            Some(lb) => format!("Keepalived VIP<br/>{}", lb.vip),
            None => "API load balancers".to_string(),
        };
        let _ = writeln!(m, "subgraph HA [\"{title}\"]\ndirection LR");
        for n in &lbs {
            let _ = writeln!(m, "{}", mermaid_node(spec, n));
        }
        for pair in lbs.windows(2) {
            let _ = writeln!(
                m,
                "{} <-->|VRRP| {}",
                mermaid_id(pair[0]),
                mermaid_id(pair[1])
            );
        }
        m.push_str("end\n");
        "HA"
    };
    if !cps.is_empty() {
        let _ = writeln!(m, "CP <--> {front}");
        if !etcd_only.is_empty() {
            m.push_str("E <--> CP\n");
        }
    }
    m.push_str("end\n");

    if !workers.is_empty() {
        m.push_str("subgraph W [Worker nodes]\ndirection LR\n");
        for n in &workers {
            let _ = writeln!(m, "{}", mermaid_node(spec, n));
        }
        m.push_str("end\n");
    }
    // Where pods run: the worker group and control planes that also take workloads.
    let mut pod_hosts: Vec<String> = vec![];
    if !workers.is_empty() {
        pod_hosts.push("W".into());
    }
    pod_hosts.extend(cp_workers.iter().map(|n| mermaid_id(n)));
    if pod_hosts.is_empty() && !cps.is_empty() {
        pod_hosts.push("CP".into());
    }
    let enc = match spec.cni.plugin {
        CniPlugin::Calico => format!(" {}", spec.cni.encapsulation),
        CniPlugin::Flannel => String::new(),
    };
    let _ = writeln!(
        m,
        "{front} --> PN(\"{} CNI{enc}<br/>pods {}\")",
        cni_name(spec),
        spec.networking.pod_cidr
    );
    for h in &pod_hosts {
        let _ = writeln!(m, "PN --> {h}");
    }
    if let Some(pool) = &spec.metallb {
        let _ = writeln!(m, "WLB(\"MetalLB<br/>{}\")", pool.addresses.join("<br/>"));
        for h in &pod_hosts {
            let _ = writeln!(m, "{h} --> WLB");
        }
        m.push_str("WLB <--> U(Users)\n");
    }
    m
}

/// `topology.md`: a short summary and the Mermaid diagram.
pub fn topology_md(spec: &Spec) -> String {
    let mut s = format!("# `{}`: topology\n\n", spec.name);
    let members = spec.etcd_members();
    let etcd = match spec.topology {
        EtcdTopology::External => {
            let access = if uses_local_proxy(spec) {
                "API servers reach it through a local HAProxy on 127.0.0.1:2379 on each control plane"
            } else {
                "API servers list every member in `--etcd-servers`"
            };
            format!(
                "external, {} members ({}); {access}",
                members.len(),
                etcd_deployment_words(spec)
            )
        }
        EtcdTopology::Stacked => {
            format!(
                "stacked on the control planes, {} members ({})",
                members.len(),
                etcd_deployment_words(spec)
            )
        }
    };
    let _ = writeln!(s, "- etcd: {etcd}");
    let _ = writeln!(
        s,
        "- API endpoint: {}{}",
        spec.endpoint.url(),
        vip_words(spec)
    );
    let _ = writeln!(s, "- control planes: {}", names(&spec.control_planes()));
    let workers: Vec<&Node> = spec.nodes_with(Role::Worker).collect();
    let _ = writeln!(s, "- nodes running workloads: {}", names(&workers));
    let _ = writeln!(
        s,
        "- CNI: {} (pods {})",
        cni_name(spec),
        spec.networking.pod_cidr
    );
    if let Some(pool) = &spec.metallb {
        let _ = writeln!(s, "- MetalLB pool: {}", pool.addresses.join(", "));
    }
    let _ = write!(s, "\n```mermaid\n{}```\n", mermaid(spec));
    s
}

fn vip_words(spec: &Spec) -> String {
    match (&spec.load_balancer, spec.lb_master()) {
        (Some(lb), Some(master)) => {
            let lbs = lbs_in_priority_order(spec);
            let holders = lbs
                .iter()
                .map(|n| {
                    let state = if n.name == master.name {
                        "MASTER"
                    } else {
                        "BACKUP"
                    };
                    format!("`{}` {state} {}", n.name, spec.lb_priority(n))
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                " (Keepalived VIP {} on {}: {holders})",
                lb.vip, lb.interface
            )
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// addresses.md

/// `addresses.md`: guide 000's IP address plan for this cluster, and an `/etc/hosts` block.
pub fn addresses_md(spec: &Spec) -> String {
    let net = &spec.networking;
    let mut s = format!("# `{}`: address plan\n\n## Nodes\n\n", spec.name);
    s.push_str("| node | address | roles | FQDN |\n|---|---|---|---|\n");
    for n in &spec.nodes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            n.name,
            n.address,
            role_words(spec, n).join(", "),
            spec.fqdn(n)
        );
    }
    if let Some(lb) = &spec.load_balancer {
        let _ = writeln!(
            s,
            "| (VIP) | {} | API endpoint, Keepalived on {} | — |",
            lb.vip,
            names(&spec.lbs())
        );
    }

    s.push_str("\n## Networks\n\n| what | value |\n|---|---|\n");
    let _ = writeln!(s, "| node network | {} |", net.node_cidr);
    if let Some(gw) = spec.provisioning.gateway {
        let _ = writeln!(s, "| gateway | {gw} |");
    }
    if !spec.provisioning.nameservers.is_empty() {
        let ns = spec
            .provisioning
            .nameservers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(s, "| nameservers | {ns} |");
    }
    let _ = writeln!(s, "| API endpoint | {} |", spec.endpoint.url());
    if let Some(lb) = &spec.load_balancer {
        let _ = writeln!(
            s,
            "| Keepalived VIP | {} (interface {}, virtual router id {}) |",
            lb.vip, lb.interface, lb.virtual_router_id
        );
    }
    let _ = writeln!(s, "| pod CIDR | {} |", net.pod_cidr);
    let _ = writeln!(s, "| per-node pod range | /{} |", net.node_cidr_mask_size);
    let _ = writeln!(s, "| service CIDR | {} |", net.service_cidr);
    let _ = writeln!(s, "| `kubernetes` Service | {} |", spec.first_service_ip());
    let _ = writeln!(
        s,
        "| cluster DNS Service | {} (`{}`) |",
        spec.dns_service_ip(),
        net.dns_domain
    );
    if let Some(pool) = &spec.metallb {
        let _ = writeln!(s, "| MetalLB pool | {} |", pool.addresses.join(", "));
    }

    let capacity = spec.pod_cidr_node_capacity();
    let kubelets = spec.kube_nodes().len();
    let _ = writeln!(
        s,
        "\nThe pod CIDR {} holds **{capacity} nodes** at /{} per node; this cluster has {kubelets} \
         Kubernetes nodes.",
        net.pod_cidr, net.node_cidr_mask_size
    );

    s.push_str("\n## /etc/hosts\n\nFor the operator's machine and the nodes:\n\n```\n");
    let _ = writeln!(s, "# {}", spec.name);
    for n in &spec.nodes {
        let _ = writeln!(s, "{} {} {}", n.address, spec.fqdn(n), n.name);
    }
    match (&spec.endpoint.host, &spec.load_balancer) {
        // The endpoint name must resolve to the VIP; an IP endpoint needs no entry.
        (EndpointHost::Dns(name), Some(lb)) => {
            let _ = writeln!(s, "{} {name}", lb.vip);
        }
        (EndpointHost::Dns(name), None) => {
            let _ = writeln!(
                s,
                "# {name}: the API endpoint; point it at your load balancer"
            );
        }
        (EndpointHost::Ip(_), _) => {}
    }
    s.push_str("```\n");
    s
}

// ---------------------------------------------------------------------------------------------
// bring-up.md

/// Ports a node must find free in preflight.
fn ports(spec: &Spec, node: &Node) -> Vec<u16> {
    let mut p = vec![];
    if spec.is_etcd_member(node) {
        // Client, peer, and kubeadm's metrics listener on 127.0.0.1.
        p.extend([2379, 2380, 2381]);
    }
    if node.has(Role::ControlPlane) {
        p.extend([6443, 10250, 10257, 10259]);
        if uses_local_proxy(spec) {
            p.push(2379);
        }
    }
    if node.has(Role::Worker) || provision::runs_kubelet(spec, node) {
        p.push(10250);
    }
    if node.has(Role::Lb) {
        p.push(spec.endpoint.port);
        if let Some(lb) = &spec.load_balancer {
            p.push(lb.stats_port);
        }
    }
    p.sort_unstable();
    p.dedup();
    p
}

/// `bring-up.md`: design.md's bring-up order with this cluster's nodes, and the gate that must
/// hold before each next phase.
pub fn bring_up_md(spec: &Spec) -> String {
    let mut s = format!("# `{}`: bring-up order\n\n", spec.name);
    s.push_str(
        "Each phase starts only when the gate of the one before holds. Within a phase, nodes \
         are handled in parallel unless the phase says otherwise.\n",
    );

    // 0. preflight
    s.push_str("\n## 0. Preflight — every node\n\n| node | SSH | ports that must be free |\n|---|---|---|\n");
    for n in &spec.nodes {
        let ports = ports(spec, n)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "| {} | `{}@{}:{}` | {ports} |",
            n.name, n.ssh.user, n.address, n.ssh.port
        );
    }
    let _ = writeln!(
        s,
        "\nAlso: sudo without a password, a supported OS, swap, kernel modules, clock skew, and no \
         overlap between the node network {}, the pod CIDR {} and the service CIDR {}.\n\n\
         **Gate:** every check passes on every node.",
        spec.networking.node_cidr, spec.networking.pod_cidr, spec.networking.service_cidr
    );

    // 1. node prep
    s.push_str("\n## 1. Node preparation — every node\n\n");
    s.push_str("Kernel modules `overlay` and `br_netfilter`, sysctl, swap off, then packages:\n\n");
    s.push_str("| node | packages | services |\n|---|---|---|\n");
    for n in &spec.nodes {
        let pkgs = provision::package_names(spec, n).join(", ");
        let units = provision::services(spec, n).join(", ");
        let _ = writeln!(s, "| {} | {pkgs} | {units} |", n.name);
    }
    let kubelet_nodes: Vec<&Node> = spec
        .nodes
        .iter()
        .filter(|n| provision::runs_kubelet(spec, n))
        .collect();
    let _ = writeln!(
        s,
        "\n**Gate:** swap off and modules loaded everywhere; containerd active on {}.",
        names(&kubelet_nodes)
    );

    // 2. etcd
    let members = spec.etcd_members();
    let _ = writeln!(s, "\n## 2. etcd — {}\n", names(&members));
    if spec.topology == EtcdTopology::Stacked {
        s.push_str("Stacked topology: the members are the control-plane hosts.\n\n");
    }
    let _ = writeln!(
        s,
        "All members start at once as a {}, with `--initial-cluster-state=new`, \
         `--initial-cluster-token={}` and\n\n```\n--initial-cluster={}\n```\n\n\
         Members added later join one at a time: as a learner with `existing` state, promoted \
         once caught up.\n\n\
         **Gate:** every member reports healthy over TLS at its client URL ({}), and there is \
         exactly one leader.",
        etcd_deployment_words(spec),
        spec.etcd_cluster_token(),
        spec.etcd_initial_cluster(),
        members
            .iter()
            .map(|n| Spec::etcd_client_url(n))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // 3. API load balancer
    let lbs = lbs_in_priority_order(spec);
    let _ = writeln!(s, "\n## 3. API load balancer — {}\n", names(&lbs));
    match (&spec.load_balancer, lbs.is_empty()) {
        (Some(lb), false) => {
            for (i, n) in lbs.iter().enumerate() {
                let state = if i == 0 { "MASTER" } else { "BACKUP" };
                let _ = writeln!(
                    s,
                    "- `{}`: Keepalived {state}, priority {}",
                    n.name,
                    spec.lb_priority(n)
                );
            }
            let _ = writeln!(
                s,
                "\nHAProxy on each listens on :{} and forwards to {}; Keepalived moves the VIP {} \
                 on `{}` (virtual router id {}). Up before any control plane.\n\n\
                 **Gate:** exactly one LB holds {}, and {}:{} accepts TCP connections.",
                spec.endpoint.port,
                spec.control_planes()
                    .iter()
                    .map(|n| format!("{}:6443", n.address))
                    .collect::<Vec<_>>()
                    .join(", "),
                lb.vip,
                lb.interface,
                lb.virtual_router_id,
                lb.vip,
                lb.vip,
                spec.endpoint.port
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "No load balancer in the cluster file: {} must already reach the control planes.\n\n\
                 **Gate:** the endpoint accepts TCP connections.",
                spec.endpoint.url()
            );
        }
    }

    // 4. first control plane
    let cps = spec.control_planes();
    if let Some(first) = spec.init_control_plane() {
        let _ = writeln!(
            s,
            "\n## 4. First control plane — `{}` ({})\n",
            first.name, first.address
        );
        if uses_local_proxy(spec) {
            let how = match spec.etcd.local_proxy {
                kubeha_spec::EtcdProxyDeployment::Systemd => {
                    "systemd unit `kubeha-etcd-proxy.service`"
                }
                kubeha_spec::EtcdProxyDeployment::StaticPod => "static pod",
            };
            let _ = writeln!(
                s,
                "1. The local etcd proxy ({how}: 127.0.0.1:2379 → every member), **started and \
                 gated first**: TLS health through 127.0.0.1:2379 with `apiserver-etcd-client`."
            );
            s.push_str("2. PKI under /etc/kubernetes/pki and the kubeconfigs (admin, super-admin, controller-manager, scheduler, kubelet).\n");
        } else if spec.topology == EtcdTopology::Stacked {
            s.push_str("1. PKI under /etc/kubernetes/pki and the kubeconfigs (admin, super-admin, controller-manager, scheduler, kubelet).\n");
            s.push_str("2. The local etcd member is already up (phase 2).\n");
        } else {
            s.push_str("1. PKI under /etc/kubernetes/pki and the kubeconfigs (admin, super-admin, controller-manager, scheduler, kubelet).\n");
            s.push_str("2. etcd reachable from this host: TLS health of every member.\n");
        }
        s.push_str(
            "3. Static pods kube-apiserver, kube-controller-manager, kube-scheduler; kubelet.\n",
        );
        let _ = writeln!(
            s,
            "\n**Gate:** `{}/livez` answers ok through the endpoint.",
            spec.endpoint.url()
        );
    }

    // 5. cluster objects
    let _ = writeln!(
        s,
        "\n## 5. Cluster objects and CNI — through the endpoint\n\n\
         RBAC, `cluster-info` in kube-public, the kubeadm and kubelet ConfigMaps, a bootstrap \
         token, kube-proxy (cluster CIDR {}), CoreDNS (Service {}, domain `{}`), then {} for the \
         pod CIDR {}.\n\n\
         **Gate:** CoreDNS and the CNI pods are ready; the first control plane is Ready.",
        spec.networking.pod_cidr,
        spec.dns_service_ip(),
        spec.networking.dns_domain,
        cni_name(spec),
        spec.networking.pod_cidr
    );

    // 6. other control planes
    let others: Vec<&Node> = cps.iter().skip(1).copied().collect();
    let _ = writeln!(
        s,
        "\n## 6. Other control planes, one at a time — {}\n",
        names(&others)
    );
    if others.is_empty() {
        s.push_str("None: this cluster has a single control plane.\n");
    } else {
        let proxy = if uses_local_proxy(spec) {
            ", the local etcd proxy gated first"
        } else {
            ""
        };
        for (i, n) in others.iter().enumerate() {
            let _ = writeln!(
                s,
                "{}. `{}` ({}): files{proxy}, static pods, kubelet; gate: `https://{}/livez`",
                i + 1,
                n.name,
                n.address,
                std::net::SocketAddr::new(n.address, crate::kubeconfig::APISERVER_PORT)
            );
        }
        s.push_str("\n**Gate after each:** its own API server's `/livez` (above) answers ok and the node is Ready.\n");
    }

    // 7. workers
    let workers: Vec<&Node> = spec
        .nodes_with(Role::Worker)
        .filter(|n| !n.has(Role::ControlPlane))
        .collect();
    let _ = writeln!(s, "\n## 7. Workers, in parallel — {}\n", names(&workers));
    if workers.is_empty() {
        s.push_str("None: only control planes run workloads.\n");
    } else {
        let _ = writeln!(
            s,
            "Each joins with its kubelet kubeconfig pointing at {}.\n",
            spec.endpoint.url()
        );
        s.push_str("**Gate:** every worker is Ready.\n");
    }
    let cp_workers: Vec<&Node> = spec
        .nodes_with(Role::Worker)
        .filter(|n| n.has(Role::ControlPlane))
        .collect();
    if !cp_workers.is_empty() {
        let _ = writeln!(
            s,
            "\nControl planes that also run workloads: {}.",
            names(&cp_workers)
        );
    }

    // 8. MetalLB and add-ons
    s.push_str("\n## 8. MetalLB and add-ons\n\n");
    match &spec.metallb {
        Some(pool) => {
            let _ = writeln!(
                s,
                "MetalLB with an `IPAddressPool` of {} and an L2 advertisement.\n\n\
                 **Gate:** the MetalLB controller and every speaker are ready; the pool exists.",
                pool.addresses.join(", ")
            );
        }
        None => s.push_str("No MetalLB pool in the cluster file.\n"),
    }

    s.push_str(
        "\n## In the lab\n\n`kubeha lab` runs phases 0–3 with real etcd, HAProxy and Keepalived. \
         Phases 4–8 need a kubelet and an API server, which the lab cannot run: they are checked \
         by rendering only.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::provision::tests::{example, fake_materials};

    fn every_file_ends_with_newline(spec: &Spec) {
        for text in [topology_md(spec), addresses_md(spec), bring_up_md(spec)] {
            assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{text}");
        }
    }

    #[test]
    fn files_are_under_the_operator_dir() {
        let spec = example("external-etcd.yaml");
        let m = fake_materials();
        let out = files(Ctx::new(&spec, &m)).expect("operator files");
        let paths: Vec<&str> = out.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "_operator/admin.kubeconfig",
                "_operator/topology.md",
                "_operator/addresses.md",
                "_operator/bring-up.md"
            ]
        );
        assert_eq!(out[0].mode, 0o600);
        assert!(out[0].sensitive);
        every_file_ends_with_newline(&spec);
        every_file_ends_with_newline(&example("stacked.yaml"));
    }

    #[test]
    fn admin_kubeconfig_is_named_after_the_cluster() {
        let spec = example("external-etcd.yaml");
        let m = fake_materials();
        let text = admin_kubeconfig(Ctx::new(&spec, &m)).expect("kubeconfig");
        let v: Value = serde_saphyr::from_str(&text).expect("kubeconfig is YAML");
        assert_eq!(v["clusters"][0]["name"], "ha-cluster");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://10.10.0.100:6443"
        );
        assert_eq!(v["users"][0]["name"], "ha-cluster-admin");
        let ctx = &v["contexts"][0];
        assert_eq!(ctx["context"]["cluster"], "ha-cluster");
        assert_eq!(ctx["context"]["user"], "ha-cluster-admin");
        assert_eq!(ctx["name"], "ha-cluster-admin@ha-cluster");
        assert_eq!(v["current-context"], "ha-cluster-admin@ha-cluster");
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD
            .decode(
                v["clusters"][0]["cluster"]["certificate-authority-data"]
                    .as_str()
                    .expect("ca data"),
            )
            .expect("base64");
        assert_eq!(ca, m.ca(CaId::Kubernetes).expect("ca").cert_pem.as_bytes());
    }

    #[test]
    fn mermaid_contains_every_node() {
        for ex in ["external-etcd.yaml", "stacked.yaml"] {
            let spec = example(ex);
            let text = mermaid(&spec);
            assert!(text.starts_with("graph TB\n"));
            for n in &spec.nodes {
                let line = format!("{}(\"{}<br/>", mermaid_id(n), n.name);
                assert_eq!(
                    text.matches(&line).count(),
                    1,
                    "{ex}: {} defined once in\n{text}",
                    n.name
                );
                assert!(text.contains(&n.address.to_string()), "{ex}: {}", n.address);
            }
            // Balanced subgraphs.
            let opens = text.lines().filter(|l| l.starts_with("subgraph ")).count();
            let ends = text.lines().filter(|l| *l == "end").count();
            assert_eq!(opens, ends, "{text}");
        }
    }

    #[test]
    fn stacked_etcd_sits_inside_the_control_planes() {
        let spec = example("stacked.yaml");
        let text = mermaid(&spec);
        assert!(!text.contains("subgraph E "), "{text}");
        assert!(text.contains("Control plane nodes with stacked etcd"));
        assert!(text.contains("master-1<br/>control plane + etcd<br/>"));
        assert!(text.contains("master-2<br/>control plane + etcd + worker<br/>"));
        // The external topology keeps its own etcd subgraph.
        let ext = mermaid(&example("external-etcd.yaml"));
        assert!(ext.contains("subgraph E [etcd cluster]"));
        assert!(ext.contains("E <--> CP"));
        assert!(ext.contains("Keepalived VIP<br/>10.10.0.100"));
    }

    #[test]
    fn addresses_list_the_node_capacity_and_service_addresses() {
        let spec = example("external-etcd.yaml");
        let text = addresses_md(&spec);
        assert_eq!(spec.pod_cidr_node_capacity(), 256);
        assert!(
            text.contains("holds **256 nodes** at /24 per node"),
            "{text}"
        );
        assert!(text.contains("| `kubernetes` Service | 10.96.0.1 |"));
        assert!(text.contains("| cluster DNS Service | 10.96.0.10 (`cluster.local`) |"));
        assert!(text.contains("| MetalLB pool | 10.10.0.200-10.10.0.220 |"));
        for n in &spec.nodes {
            assert!(
                text.contains(&format!(
                    "\n{} {}.k8s.local {}\n",
                    n.address, n.name, n.name
                )),
                "{}",
                n.name
            );
        }
    }

    #[test]
    fn bring_up_names_the_nodes_of_each_phase() {
        let spec = example("external-etcd.yaml");
        let text = bring_up_md(&spec);
        assert!(text.contains("## 2. etcd — `ext-etcd-1`, `ext-etcd-2`, `ext-etcd-3`"));
        assert!(text.contains("- `lb1`: Keepalived MASTER, priority 101"));
        assert!(text.contains("- `lb2`: Keepalived BACKUP, priority 100"));
        assert!(text.contains("## 4. First control plane — `cp-1` (10.10.0.21)"));
        assert!(text.contains("**started and gated first**"));
        assert!(text.contains("## 6. Other control planes, one at a time — `cp-2`, `cp-3`"));
        assert!(text.contains("## 7. Workers, in parallel — `wn-1`, `wn-2`, `wn-3`"));
        let stacked = bring_up_md(&example("stacked.yaml"));
        assert!(stacked.contains("Stacked topology: the members are the control-plane hosts."));
        assert!(!stacked.contains("gated first"));
        assert!(stacked.contains("No MetalLB pool"));
    }

    /// The whole render with real certificates: the operator leaf exists, and every node has
    /// its provisioning files next to the cluster-level ones.
    #[test]
    fn render_emits_operator_and_provisioning_files() {
        let mut spec = example("external-etcd.yaml");
        spec.certificates.key_algorithm = kubeha_spec::KeyAlgorithm::EcdsaP256;
        let m = kubeha_pki::issue_in_memory(&spec, time::OffsetDateTime::now_utc()).expect("PKI");
        let out = crate::render(&spec, &m).expect("render");
        let paths: Vec<&str> = out.operator.iter().map(|f| f.path.as_str()).collect();
        for p in [
            "admin.kubeconfig",
            "topology.md",
            "addresses.md",
            "bring-up.md",
        ] {
            assert!(paths.contains(&format!("_operator/{p}").as_str()), "{p}");
        }
        for n in &spec.nodes {
            for p in ["user-data.yaml", "60-static-ip.yaml", "multipass.sh"] {
                assert!(
                    paths.contains(&format!("_provision/{}/{p}", n.name).as_str()),
                    "{} {p}",
                    n.name
                );
            }
        }
        let admin = &out.operator[0];
        let v: Value = serde_saphyr::from_str(&admin.content).expect("kubeconfig");
        use base64::Engine as _;
        let cert = base64::engine::general_purpose::STANDARD
            .decode(
                v["users"][0]["user"]["client-certificate-data"]
                    .as_str()
                    .expect("cert"),
            )
            .expect("base64");
        let leaf = m
            .leaf(&kubeha_pki::LeafId::operator(LeafKind::AdminConf))
            .expect("operator admin leaf");
        assert_eq!(cert, leaf.cert_pem.as_bytes());
    }

    #[test]
    fn snapshots() {
        let ext = example("external-etcd.yaml");
        insta::assert_snapshot!("topology_external", topology_md(&ext));
        insta::assert_snapshot!("addresses_external", addresses_md(&ext));
        insta::assert_snapshot!("bring_up_external", bring_up_md(&ext));
        let stacked = example("stacked.yaml");
        insta::assert_snapshot!("topology_stacked", topology_md(&stacked));
        insta::assert_snapshot!("bring_up_stacked", bring_up_md(&stacked));
    }
}
