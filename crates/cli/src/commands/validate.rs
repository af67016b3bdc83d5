//! `kubeha validate`: check the cluster file and summarise what it describes.

use std::process::ExitCode;

use kubeha_spec::{Problem, Role, Spec};
use serde::Serialize;

use crate::{
    args::{Format, Global},
    error::{CliError, spec_problems},
    output::{emit, kv_table},
    table::Table,
};

#[derive(Serialize)]
struct Summary<'a> {
    valid: bool,
    file: String,
    /// Every finding, errors and warnings, each with its field, place, message and help:
    /// the same list whether the file is valid (warnings only, often `[]`) or not.
    problems: &'a [Problem],
    warnings: &'a [Problem],
    spec: &'a Spec,
    capacity: Capacity,
}

/// What scripts get on stdout when the file cannot be used, whatever the reason (unreadable,
/// not YAML, unknown field, wrong type, inconsistent values).
#[derive(Serialize)]
struct Invalid<'a> {
    valid: bool,
    file: String,
    problems: &'a [Problem],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Capacity {
    kube_nodes: usize,
    max_nodes_for_pod_cidr: u64,
    etcd_members: usize,
    etcd_failures_tolerated: usize,
}

pub fn run(g: &Global) -> Result<ExitCode, CliError> {
    let loaded = match super::load_spec(g) {
        Ok(l) => l,
        Err(CliError::Spec(e)) if g.output != Format::Table => {
            // Scripts get the problems on stdout as data, and still exit 2.
            emit(
                g.output,
                &Invalid {
                    valid: false,
                    file: g.file.display().to_string(),
                    problems: &spec_problems(&e),
                },
                String::new,
            )?;
            return Err(CliError::Spec(e));
        }
        Err(e) => return Err(e),
    };
    let spec = &loaded.spec;
    let members = spec.etcd_members().len();
    let summary = Summary {
        valid: true,
        file: loaded.path.display().to_string(),
        problems: &loaded.warnings,
        warnings: &loaded.warnings,
        spec,
        capacity: Capacity {
            kube_nodes: spec.kube_nodes().len(),
            max_nodes_for_pod_cidr: spec.pod_cidr_node_capacity(),
            etcd_members: members,
            etcd_failures_tolerated: members.saturating_sub(1) / 2,
        },
    };
    emit(g.output, &summary, || human(&summary))?;
    Ok(ExitCode::SUCCESS)
}

fn human(s: &Summary<'_>) -> String {
    let spec = s.spec;
    let mut out = format!("{} is valid ({} warning(s))\n\n", s.file, s.warnings.len());
    out.push_str(&kv_table(&[
        ("cluster", spec.name.clone()),
        ("kubernetes", spec.kubernetes_version.to_string()),
        (
            "etcd",
            format!(
                "{} ({:?}, {} members, tolerates {} failure(s))",
                spec.etcd_version,
                spec.topology,
                s.capacity.etcd_members,
                s.capacity.etcd_failures_tolerated
            )
            .to_lowercase(),
        ),
        ("endpoint", spec.endpoint.url()),
        (
            "vip",
            spec.load_balancer.as_ref().map_or("-".into(), |l| {
                format!(
                    "{} on {} (VRRP id {})",
                    l.vip, l.interface, l.virtual_router_id
                )
            }),
        ),
        (
            "pods",
            format!(
                "{} (/{} per node: up to {} nodes, {} used)",
                spec.networking.pod_cidr,
                spec.networking.node_cidr_mask_size,
                s.capacity.max_nodes_for_pod_cidr,
                s.capacity.kube_nodes
            ),
        ),
        (
            "services",
            format!(
                "{} (kubernetes {}, dns {})",
                spec.networking.service_cidr,
                spec.first_service_ip(),
                spec.dns_service_ip()
            ),
        ),
        ("cni", format!("{:?}", spec.cni.plugin).to_lowercase()),
        ("keys", spec.certificates.key_algorithm.as_str().to_string()),
    ]));
    out.push('\n');
    let mut t = Table::new(["NODE", "ADDRESS", "ROLES", "SSH"]);
    for n in &spec.nodes {
        let mut roles: Vec<&str> = n.roles.iter().map(Role::as_str).collect();
        if spec.topology == kubeha_spec::EtcdTopology::Stacked
            && n.has(Role::ControlPlane)
            && !n.has(Role::Etcd)
        {
            roles.push("etcd");
        }
        t.row([
            n.name.clone(),
            n.address.to_string(),
            roles.join(","),
            format!("{}@{}:{}", n.ssh.user, n.address, n.ssh.port),
        ]);
    }
    out.push_str(&t.render());
    out
}
