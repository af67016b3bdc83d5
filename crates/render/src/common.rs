//! Files every node gets (kernel modules, sysctls) and, on nodes that run a kubelet, the
//! container runtime's: containerd's config and crictl's. Also the node-prep commands that go
//! with them (guide 000's cloud-init `runcmd`), which provisioning and `kubeha up` run.
//!
//! `/etc/containerd/config.toml` is written whole (not `containerd config default` + `sed`):
//! config format `version = 2`, which containerd 1.7 reads natively and containerd 2.x reads
//! and migrates in memory, so one file serves Ubuntu's 1.7 packages and 2.x installs alike.

use std::fmt::Write as _;

use kubeha_spec::{EtcdDeployment, Node, Role};

use crate::{Ctx, HostFile, Result};

pub const MODULES_PATH: &str = "/etc/modules-load.d/k8s.conf";
pub const SYSCTL_PATH: &str = "/etc/sysctl.d/k8s.conf";
pub const CONTAINERD_CONFIG_PATH: &str = "/etc/containerd/config.toml";
pub const CRICTL_PATH: &str = "/etc/crictl.yaml";

/// Kernel modules the container runtime and bridged pod traffic need, loaded at boot.
pub const MODULES: &str = "overlay\nbr_netfilter\n";

/// Bridged traffic through iptables, and forwarding for pod and service traffic.
pub const SYSCTLS: &str = "net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward = 1\n";

/// Comments out active swap lines in `/etc/fstab`; idempotent (a commented line stays as is).
pub const FSTAB_SWAP_OFF: &str =
    r"sed -i -E 's@^([^#].*[[:space:]]swap[[:space:]].*)$@#\1@' /etc/fstab";

/// Nodes with a kubelet: Kubernetes nodes, and etcd members run as kubelet static pods.
pub fn runs_kubelet(cx: Ctx<'_>, node: &Node) -> bool {
    node.has(Role::ControlPlane)
        || node.has(Role::Worker)
        || (cx.spec.etcd.deployment == EtcdDeployment::StaticPod && cx.spec.is_etcd_member(node))
}

/// Every node: modules and sysctls; kubelet nodes also containerd's and crictl's config.
pub fn files(cx: Ctx<'_>, node: &Node) -> Result<Vec<HostFile>> {
    let mut files = vec![
        HostFile::public(MODULES_PATH, MODULES),
        HostFile::public(SYSCTL_PATH, SYSCTLS),
    ];
    if runs_kubelet(cx, node) {
        files.push(HostFile::public(
            CONTAINERD_CONFIG_PATH,
            containerd_config(cx),
        ));
        files.push(crictl_file(cx));
    }
    Ok(files)
}

/// The commands that prepare a node, in order; each is safe to run again.
///
/// Swap goes off where a kubelet runs (it refuses swap by default) and on etcd members
/// (swapping stalls heartbeats).
pub fn prep_commands(cx: Ctx<'_>, node: &Node) -> Vec<String> {
    let mut cmds: Vec<String> = [
        "modprobe overlay",
        "modprobe br_netfilter",
        "sysctl --system",
    ]
    .map(String::from)
    .into();
    if runs_kubelet(cx, node) || cx.spec.is_etcd_member(node) {
        cmds.push("swapoff -a".into());
        cmds.push(FSTAB_SWAP_OFF.into());
    }
    cmds
}

/// `/etc/crictl.yaml`: crictl talks to the kubelet's runtime socket.
pub fn crictl_file(cx: Ctx<'_>) -> HostFile {
    let ep = &cx.spec.container_runtime.endpoint;
    HostFile::public(
        CRICTL_PATH,
        format!("runtime-endpoint: {ep}\nimage-endpoint: {ep}\ntimeout: 10\ndebug: false\n"),
    )
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `/etc/containerd/config.toml`: a complete version-2 config for the kubelet's CRI.
///
/// - `disabled_plugins = []`: Docker's `containerd.io` package ships `["cri"]`, which leaves the
///   kubelet with no runtime;
/// - runc through the systemd cgroup driver, matching the kubelet's `cgroupDriver: systemd`;
/// - the sandbox image kubeadm pins for this minor (the kubelet's `--pod-infra-container-image`),
///   so the runtime neither pulls another pause image nor garbage-collects this one;
/// - the gRPC socket is the path of the spec's CRI endpoint (the default endpoint's
///   `/var/run` is a symlink to `/run`, containerd's own default).
pub fn containerd_config(cx: Ctx<'_>) -> String {
    let endpoint = &cx.spec.container_runtime.endpoint;
    let socket = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Written by kubeha. containerd config format 2: containerd 1.7 and 2.x."
    );
    let _ = writeln!(t, "version = 2");
    let _ = writeln!(t, "disabled_plugins = []");
    let _ = writeln!(t);
    let _ = writeln!(t, "[grpc]");
    let _ = writeln!(t, "  address = {}", toml_str(socket));
    let _ = writeln!(t);
    let _ = writeln!(t, "[plugins]");
    let _ = writeln!(t);
    let _ = writeln!(t, "  [{cri}]");
    let _ = writeln!(
        t,
        "    sandbox_image = {}",
        toml_str(&cx.spec.pause_image())
    );
    let _ = writeln!(t);
    let _ = writeln!(t, "    [{cri}.cni]");
    let _ = writeln!(t, "      bin_dir = \"/opt/cni/bin\"");
    let _ = writeln!(t, "      conf_dir = \"/etc/cni/net.d\"");
    let _ = writeln!(t);
    let _ = writeln!(t, "    [{cri}.containerd]");
    let _ = writeln!(t, "      default_runtime_name = \"runc\"");
    let _ = writeln!(t);
    let _ = writeln!(t, "      [{cri}.containerd.runtimes.runc]");
    let _ = writeln!(t, "        runtime_type = \"io.containerd.runc.v2\"");
    let _ = writeln!(t);
    let _ = writeln!(t, "        [{cri}.containerd.runtimes.runc.options]");
    let _ = writeln!(t, "          SystemdCgroup = true");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    use kubeha_spec::EtcdDeployment;

    use crate::control_plane::fixtures::{external, stacked};

    fn paths(files: &[HostFile]) -> Vec<&str> {
        files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn every_node_gets_modules_and_sysctls_kubelet_nodes_get_the_runtime() {
        let f = external();
        for name in ["lb1", "ext-etcd-1"] {
            assert_eq!(
                paths(&files(f.cx(), f.node(name)).expect("files")),
                [MODULES_PATH, SYSCTL_PATH],
                "{name}"
            );
        }
        for name in ["cp-1", "wn-3"] {
            let files = files(f.cx(), f.node(name)).expect("files");
            assert_eq!(
                paths(&files),
                [
                    MODULES_PATH,
                    SYSCTL_PATH,
                    CONTAINERD_CONFIG_PATH,
                    CRICTL_PATH
                ],
                "{name}"
            );
        }
        let files = files(f.cx(), f.node("wn-1")).expect("files");
        assert_eq!(files[0].content, "overlay\nbr_netfilter\n");
        assert!(files[1].content.contains("net.ipv4.ip_forward = 1\n"));
        assert!(files.iter().all(|f| f.mode == 0o644 && !f.sensitive));
        let crictl = &files[3].content;
        assert_eq!(
            crictl,
            "runtime-endpoint: unix:///var/run/containerd/containerd.sock\nimage-endpoint: unix:///var/run/containerd/containerd.sock\ntimeout: 10\ndebug: false\n"
        );
    }

    #[test]
    fn static_pod_etcd_hosts_run_a_kubelet() {
        let f = external();
        let mut spec = f.spec.clone();
        spec.etcd.deployment = EtcdDeployment::StaticPod;
        let cx = Ctx::new(&spec, &f.materials);
        assert!(runs_kubelet(cx, f.node("ext-etcd-2")));
        assert!(
            paths(&files(cx, f.node("ext-etcd-2")).expect("files"))
                .contains(&CONTAINERD_CONFIG_PATH)
        );
        assert!(!runs_kubelet(cx, f.node("lb2")));
    }

    #[test]
    fn containerd_config_has_systemd_cgroup_and_pause_image() {
        let f = stacked();
        let text = containerd_config(f.cx());
        assert!(text.contains("version = 2\n"));
        assert!(text.contains("          SystemdCgroup = true\n"));
        assert!(text.contains("    sandbox_image = \"registry.k8s.io/pause:3.10.1\"\n"));
        let mut spec = f.spec.clone();
        spec.kubernetes_version.minor = 33;
        spec.container_runtime.endpoint = "unix:///run/containerd/containerd.sock".into();
        let text = containerd_config(Ctx::new(&spec, &f.materials));
        assert!(text.contains("sandbox_image = \"registry.k8s.io/pause:3.10\"\n"));
        assert!(text.contains("  address = \"/run/containerd/containerd.sock\"\n"));
    }

    #[test]
    fn prep_commands_by_role() {
        let f = external();
        let base = [
            "modprobe overlay",
            "modprobe br_netfilter",
            "sysctl --system",
        ];
        assert_eq!(prep_commands(f.cx(), f.node("lb1")), base);
        for name in ["ext-etcd-1", "cp-1", "wn-1"] {
            let cmds = prep_commands(f.cx(), f.node(name));
            assert_eq!(cmds[..3], base, "{name}");
            assert_eq!(cmds[3], "swapoff -a");
            assert_eq!(cmds[4], FSTAB_SWAP_OFF);
        }
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_str("x\u{1}"), "\"x\\u0001\"");
    }
}
