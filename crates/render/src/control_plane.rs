//! A control-plane node as `kubeadm init` / `kubeadm join --control-plane` leave it: the PKI
//! set, the kubeconfigs, the static pods for kube-apiserver, kube-controller-manager and
//! kube-scheduler, the kubelet's files — and, with external etcd reached through the local
//! proxy, the HAProxy on 127.0.0.1:2379 (guide 000): a static pod by default, or with
//! `etcd.localProxy: systemd` the unit `kubeha-etcd-proxy.service` running the host's HAProxy
//! (no kubelet needed, so it can be started and gated before the kubelet; the lab, which has no
//! kubelet, runs it this way). Both read the same `haproxy.cfg`.
//!
//! CA-trust volumes: kubeadm mounts `/etc/ssl/certs` plus whichever of five distro CA
//! directories exist on the host when it runs. Rendering cannot look, so kubeha mounts the
//! three that exist on Debian and Ubuntu (`/etc/ca-certificates`, `/usr/share/ca-certificates`,
//! `/usr/local/share/ca-certificates`) — exactly what kubeadm writes on those hosts — and not
//! the RHEL-only `/etc/pki/*`.

use std::collections::BTreeMap;

use kubeha_pki::{CaId, LeafKind};
use kubeha_spec::{
    EtcdAccess, EtcdProxyDeployment, EtcdTopology, KubeVersion, Node, Spec, bracket,
};
use sha2::{Digest, Sha256};

use crate::{
    Ctx, HostFile, Result, common,
    file::{KUBERNETES_DIR, PKI_DIR, cert_files, cert_only},
    kubeconfig, kubelet,
    staticpod::{self, Component, HostVolume, ProbeTarget, sorted_flags},
};

/// The etcd proxy image: HAProxy 3.2 (LTS), pinned.
pub const ETCD_PROXY_IMAGE: &str = "docker.io/library/haproxy:3.2.8-alpine";
/// Host directory of the proxy's config, mounted read-only into the pod.
pub const ETCD_PROXY_DIR: &str = "/etc/kubernetes/etcd-proxy";
pub const ETCD_PROXY_CONFIG: &str = "/etc/kubernetes/etcd-proxy/haproxy.cfg";
/// Annotation carrying the config's SHA-256, so a config change changes the manifest and the
/// kubelet restarts the pod.
pub const ETCD_PROXY_HASH_ANNOTATION: &str = "kubeha.io/etcd-proxy-config-sha256";
/// The static pod of `etcd.localProxy: static-pod`.
pub const ETCD_PROXY_MANIFEST: &str = "/etc/kubernetes/manifests/etcd-proxy.yaml";
/// The unit of `etcd.localProxy: systemd`.
pub const ETCD_PROXY_SERVICE: &str = "kubeha-etcd-proxy.service";
pub const ETCD_PROXY_UNIT_PATH: &str = "/etc/systemd/system/kubeha-etcd-proxy.service";
/// Debian's HAProxy binary (package `haproxy`), which the unit runs.
pub const ETCD_PROXY_BINARY: &str = "/usr/sbin/haproxy";
pub const ETCD_PROXY_PIDFILE: &str = "/run/kubeha-etcd-proxy.pid";

const APISERVER_ADVERTISE_ANNOTATION: &str =
    "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint";

fn pki(path: &str) -> String {
    format!("{PKI_DIR}/{path}")
}

/// Everything one control plane needs (plus its kubelet's files).
pub fn files(cx: Ctx<'_>, node: &Node) -> Result<Vec<HostFile>> {
    let mut files = pki_files(cx, node)?;
    files.extend(kubeconfig_files(cx, node)?);
    let version = cx.spec.kubernetes_version;
    for c in [apiserver(cx, node), controller_manager(cx), scheduler(cx)] {
        files.push(staticpod::manifest_for(&c, version)?);
    }
    if uses_etcd_proxy(cx.spec) {
        let cfg = etcd_proxy_config(cx, node);
        match cx.spec.etcd.local_proxy {
            EtcdProxyDeployment::StaticPod => {
                files.push(staticpod::manifest_for(&etcd_proxy(&cfg), version)?)
            }
            EtcdProxyDeployment::Systemd => files.push(etcd_proxy_unit(cx.spec, node)),
        }
        files.push(HostFile::public(ETCD_PROXY_CONFIG, cfg));
    }
    files.extend(kubelet::files(cx, node)?);
    files.push(common::crictl_file(cx));
    Ok(files)
}

/// The kubeadm PKI of a control plane. `etcd/ca.key` only in the stacked topology (kubeadm
/// copies it to every stacked control plane; with external etcd no control plane holds it).
pub fn pki_files(cx: Ctx<'_>, node: &Node) -> Result<Vec<HostFile>> {
    let mut files = Vec::new();
    files.extend(cert_files(
        CaId::Kubernetes.base(),
        cx.ca(CaId::Kubernetes)?,
    ));
    files.extend(cert_files(
        CaId::FrontProxy.base(),
        cx.ca(CaId::FrontProxy)?,
    ));
    let etcd_ca = cx.ca(CaId::Etcd)?;
    match cx.spec.topology {
        EtcdTopology::Stacked => files.extend(cert_files(CaId::Etcd.base(), etcd_ca)),
        EtcdTopology::External => files.push(cert_only(CaId::Etcd.base(), etcd_ca)),
    }
    let sa = &cx.materials.service_account;
    files.push(HostFile::secret(pki("sa.key"), sa.private_pem.clone()));
    // kubeadm writes the public key with its key writer: 0600.
    files.push(HostFile::with_mode(
        pki("sa.pub"),
        0o600,
        sa.public_pem.clone(),
    ));
    for kind in [
        LeafKind::ApiServer,
        LeafKind::ApiServerKubeletClient,
        LeafKind::FrontProxyClient,
        LeafKind::ApiServerEtcdClient,
    ] {
        files.extend(cert_files(kind.base(), cx.leaf(node, kind)?));
    }
    Ok(files)
}

/// admin.conf, controller-manager.conf, scheduler.conf, kubelet.conf; super-admin.conf on the
/// init node only (kubeadm writes it at init, never on join).
pub fn kubeconfig_files(cx: Ctx<'_>, node: &Node) -> Result<Vec<HostFile>> {
    let mut kinds = vec![LeafKind::AdminConf];
    if cx
        .spec
        .init_control_plane()
        .is_some_and(|n| n.name == node.name)
    {
        kinds.push(LeafKind::SuperAdminConf);
    }
    kinds.extend([
        LeafKind::ControllerManagerConf,
        LeafKind::SchedulerConf,
        LeafKind::KubeletConf,
    ]);
    kinds
        .into_iter()
        .map(|k| kubeconfig::node_file(cx, node, k))
        .collect()
}

/// External etcd reached through the per-node HAProxy on 127.0.0.1:2379.
pub fn uses_etcd_proxy(spec: &Spec) -> bool {
    spec.topology == EtcdTopology::External && spec.etcd.apiserver_access == EtcdAccess::LocalProxy
}

/// The local etcd proxy runs as [`ETCD_PROXY_SERVICE`] (not as a static pod).
pub fn uses_systemd_etcd_proxy(spec: &Spec) -> bool {
    uses_etcd_proxy(spec) && spec.etcd.local_proxy == EtcdProxyDeployment::Systemd
}

/// Units a control plane runs besides containerd and the kubelet, in start order: the systemd
/// etcd proxy, which design.md's bring-up starts and gates before the kubelet.
pub fn services(spec: &Spec) -> Vec<String> {
    if uses_systemd_etcd_proxy(spec) {
        vec![ETCD_PROXY_SERVICE.into()]
    } else {
        vec![]
    }
}

/// `--etcd-servers`: the local member (stacked), the local proxy, or every member.
pub fn etcd_servers(spec: &Spec, node: &Node) -> String {
    match (spec.topology, spec.etcd.apiserver_access) {
        (EtcdTopology::Stacked, _) if node.address.is_ipv6() => "https://[::1]:2379".into(),
        (EtcdTopology::Stacked, _) | (EtcdTopology::External, EtcdAccess::LocalProxy) => {
            "https://127.0.0.1:2379".into()
        }
        (EtcdTopology::External, EtcdAccess::Direct) => spec.etcd_client_urls(),
    }
}

fn flag_map(pairs: impl IntoIterator<Item = (&'static str, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn command(binary: &str, flags: &BTreeMap<String, String>) -> Vec<String> {
    let mut cmd = vec![binary.to_string()];
    cmd.extend(sorted_flags(flags));
    cmd
}

/// `/etc/ssl/certs` and the Debian/Ubuntu CA directories (see the module docs).
fn ca_volumes() -> Vec<HostVolume> {
    vec![
        HostVolume::new("ca-certs", "/etc/ssl/certs", "DirectoryOrCreate", true),
        HostVolume::new(
            "etc-ca-certificates",
            "/etc/ca-certificates",
            "DirectoryOrCreate",
            true,
        ),
        HostVolume::new(
            "usr-local-share-ca-certificates",
            "/usr/local/share/ca-certificates",
            "DirectoryOrCreate",
            true,
        ),
        HostVolume::new(
            "usr-share-ca-certificates",
            "/usr/share/ca-certificates",
            "DirectoryOrCreate",
            true,
        ),
    ]
}

fn sorted(mut v: Vec<HostVolume>) -> Vec<HostVolume> {
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// kube-apiserver flags (reference §3.3).
pub fn apiserver_flags(spec: &Spec, node: &Node) -> BTreeMap<String, String> {
    flag_map([
        ("advertise-address", node.address.to_string()),
        ("allow-privileged", "true".into()),
        ("authorization-mode", "Node,RBAC".into()),
        ("client-ca-file", pki("ca.crt")),
        ("enable-admission-plugins", "NodeRestriction".into()),
        ("enable-bootstrap-token-auth", "true".into()),
        ("etcd-cafile", pki("etcd/ca.crt")),
        ("etcd-certfile", pki("apiserver-etcd-client.crt")),
        ("etcd-keyfile", pki("apiserver-etcd-client.key")),
        ("etcd-servers", etcd_servers(spec, node)),
        (
            "kubelet-client-certificate",
            pki("apiserver-kubelet-client.crt"),
        ),
        ("kubelet-client-key", pki("apiserver-kubelet-client.key")),
        (
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname".into(),
        ),
        ("proxy-client-cert-file", pki("front-proxy-client.crt")),
        ("proxy-client-key-file", pki("front-proxy-client.key")),
        ("requestheader-allowed-names", "front-proxy-client".into()),
        ("requestheader-client-ca-file", pki("front-proxy-ca.crt")),
        (
            "requestheader-extra-headers-prefix",
            "X-Remote-Extra-".into(),
        ),
        ("requestheader-group-headers", "X-Remote-Group".into()),
        ("requestheader-username-headers", "X-Remote-User".into()),
        ("secure-port", kubeconfig::APISERVER_PORT.to_string()),
        (
            "service-account-issuer",
            format!(
                "https://kubernetes.default.svc.{}",
                spec.networking.dns_domain
            ),
        ),
        ("service-account-key-file", pki("sa.pub")),
        ("service-account-signing-key-file", pki("sa.key")),
        (
            "service-cluster-ip-range",
            spec.networking.service_cidr.to_string(),
        ),
        ("tls-cert-file", pki("apiserver.crt")),
        ("tls-private-key-file", pki("apiserver.key")),
    ])
}

/// The kube-apiserver static pod: probes on the advertise address, not loopback.
pub fn apiserver(cx: Ctx<'_>, node: &Node) -> Component {
    let spec = cx.spec;
    let mut volumes = ca_volumes();
    volumes.push(HostVolume::new(
        "k8s-certs",
        PKI_DIR,
        "DirectoryOrCreate",
        true,
    ));
    Component {
        name: "kube-apiserver".into(),
        image: spec.image("kube-apiserver", &spec.kubernetes_version.to_string()),
        command: command("kube-apiserver", &apiserver_flags(spec, node)),
        volumes: sorted(volumes),
        probe: Some(ProbeTarget {
            host: Some(node.address.to_string()),
            port: i32::from(kubeconfig::APISERVER_PORT),
            scheme: "HTTPS",
            liveness_path: "/livez".into(),
            readiness_path: Some("/readyz".into()),
            startup_path: "/livez".into(),
        }),
        cpu_request: "250m",
        memory_request: None,
        annotations: BTreeMap::from([(
            APISERVER_ADVERTISE_ANNOTATION.to_string(),
            format!("{}:{}", bracket(node.address), kubeconfig::APISERVER_PORT),
        )]),
        tier: "control-plane",
    }
}

/// kube-controller-manager flags (reference §3.4); kubeha always has a pod CIDR.
pub fn controller_manager_flags(spec: &Spec) -> BTreeMap<String, String> {
    let conf = format!("{KUBERNETES_DIR}/controller-manager.conf");
    let mut flags = flag_map([
        ("allocate-node-cidrs", "true".into()),
        ("authentication-kubeconfig", conf.clone()),
        ("authorization-kubeconfig", conf.clone()),
        ("bind-address", "127.0.0.1".into()),
        ("client-ca-file", pki("ca.crt")),
        ("cluster-cidr", spec.networking.pod_cidr.to_string()),
        ("cluster-name", spec.name.clone()),
        ("cluster-signing-cert-file", pki("ca.crt")),
        ("cluster-signing-key-file", pki("ca.key")),
        ("controllers", "*,bootstrapsigner,tokencleaner".into()),
        ("kubeconfig", conf),
        ("leader-elect", "true".into()),
        ("requestheader-client-ca-file", pki("front-proxy-ca.crt")),
        ("root-ca-file", pki("ca.crt")),
        ("service-account-private-key-file", pki("sa.key")),
        (
            "service-cluster-ip-range",
            spec.networking.service_cidr.to_string(),
        ),
        ("use-service-account-credentials", "true".into()),
    ]);
    if spec.networking.node_cidr_mask_size != 24 {
        flags.insert(
            "node-cidr-mask-size".into(),
            spec.networking.node_cidr_mask_size.to_string(),
        );
    }
    flags
}

/// The kube-controller-manager static pod; it signs kubelet client certificates with `ca.key`
/// (rotation), so it mounts the whole pki dir.
pub fn controller_manager(cx: Ctx<'_>) -> Component {
    let spec = cx.spec;
    let mut volumes = ca_volumes();
    volumes.extend([
        HostVolume::new(
            "flexvolume-dir",
            "/usr/libexec/kubernetes/kubelet-plugins/volume/exec",
            "DirectoryOrCreate",
            false,
        ),
        HostVolume::new("k8s-certs", PKI_DIR, "DirectoryOrCreate", true),
        HostVolume::new(
            "kubeconfig",
            &format!("{KUBERNETES_DIR}/controller-manager.conf"),
            "FileOrCreate",
            true,
        ),
    ]);
    Component {
        name: "kube-controller-manager".into(),
        image: spec.image(
            "kube-controller-manager",
            &spec.kubernetes_version.to_string(),
        ),
        command: command("kube-controller-manager", &controller_manager_flags(spec)),
        volumes: sorted(volumes),
        probe: Some(ProbeTarget {
            host: Some("127.0.0.1".into()),
            port: 10257,
            scheme: "HTTPS",
            liveness_path: "/healthz".into(),
            readiness_path: None,
            startup_path: "/healthz".into(),
        }),
        cpu_request: "200m",
        memory_request: None,
        annotations: BTreeMap::new(),
        tier: "control-plane",
    }
}

/// kube-scheduler flags (reference §3.5).
pub fn scheduler_flags() -> BTreeMap<String, String> {
    let conf = format!("{KUBERNETES_DIR}/scheduler.conf");
    flag_map([
        ("authentication-kubeconfig", conf.clone()),
        ("authorization-kubeconfig", conf.clone()),
        ("bind-address", "127.0.0.1".into()),
        ("kubeconfig", conf),
        ("leader-elect", "true".into()),
    ])
}

/// Scheduler probes: `/healthz` up to v1.31, then `/livez` + `/readyz` (kubernetes#126945,
/// v1.32; reference §3.2 still shows `/healthz`).
fn scheduler_probe(version: KubeVersion) -> ProbeTarget {
    let modern = version.minor >= 32;
    ProbeTarget {
        host: Some("127.0.0.1".into()),
        port: 10259,
        scheme: "HTTPS",
        liveness_path: if modern { "/livez" } else { "/healthz" }.into(),
        readiness_path: modern.then(|| "/readyz".to_string()),
        startup_path: if modern { "/livez" } else { "/healthz" }.into(),
    }
}

/// The kube-scheduler static pod; it needs nothing but its kubeconfig.
pub fn scheduler(cx: Ctx<'_>) -> Component {
    let spec = cx.spec;
    Component {
        name: "kube-scheduler".into(),
        image: spec.image("kube-scheduler", &spec.kubernetes_version.to_string()),
        command: command("kube-scheduler", &scheduler_flags()),
        volumes: vec![HostVolume::new(
            "kubeconfig",
            &format!("{KUBERNETES_DIR}/scheduler.conf"),
            "FileOrCreate",
            true,
        )],
        probe: Some(scheduler_probe(spec.kubernetes_version)),
        cpu_request: "100m",
        memory_request: None,
        annotations: BTreeMap::new(),
        tier: "control-plane",
    }
}

/// `/etc/kubernetes/etcd-proxy/haproxy.cfg`: TCP passthrough from 127.0.0.1:2379 to every
/// member. TLS is end to end: the apiserver verifies the member's certificate for 127.0.0.1,
/// which kubeadm's etcd server certificates carry.
///
/// Differences from guide 000's file, on purpose: logs go to stdout (no `/dev/log` in the
/// container, no `user`/`group`: the image already runs as `haproxy`); client/server timeouts
/// of 1h so idle watch streams are not cut (the apiserver's etcd client also pings every 30s);
/// sessions to a member marked down are closed so the apiserver reconnects to a live one; a
/// new connection a restarting member refuses is retried on another (`option redispatch`).
///
/// The systemd unit ([`etcd_proxy_unit`]) reads this very file: stdout goes to the journal
/// there (or to the lab supervisor's log), and HAProxy stays root, as the unit starts it.
pub fn etcd_proxy_config(cx: Ctx<'_>, node: &Node) -> String {
    let mut servers = String::new();
    for m in cx.spec.etcd_members() {
        let addr = if m.address.is_ipv6() {
            format!("ipv6@{}", m.address)
        } else {
            m.address.to_string()
        };
        servers.push_str(&format!(
            "    server {} {addr}:2379 check inter 2000 rise 2 fall 3\n",
            m.name
        ));
    }
    format!(
        "# Written by kubeha: local etcd proxy on {node} for kube-apiserver (--etcd-servers=https://127.0.0.1:2379).
global
    log stdout format raw local0

defaults
    log global
    mode tcp
    option tcplog
    option dontlognull
    option redispatch
    retries 3
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend etcd-local
    bind 127.0.0.1:2379
    description \"Local proxy for the etcd cluster\"
    default_backend etcd-cluster

backend etcd-cluster
    option tcp-check
    balance roundrobin
    default-server on-marked-down shutdown-sessions
{servers}",
        node = node.name,
    )
}

/// The etcd proxy static pod. The config directory (not the file) is mounted, so an atomic
/// replace of the file is seen by a restarted container; the config hash annotation makes the
/// kubelet restart it when the config changes.
pub fn etcd_proxy(config: &str) -> Component {
    let hash = hex::encode(Sha256::digest(config.as_bytes()));
    Component {
        name: "etcd-proxy".into(),
        image: ETCD_PROXY_IMAGE.into(),
        command: [
            "haproxy",
            "-W",
            "-db",
            "-f",
            "/usr/local/etc/haproxy/haproxy.cfg",
        ]
        .map(String::from)
        .into(),
        volumes: vec![HostVolume {
            name: "etcd-proxy-config".into(),
            host_path: ETCD_PROXY_DIR.into(),
            mount_path: "/usr/local/etc/haproxy".into(),
            kind: "DirectoryOrCreate".into(),
            read_only: true,
        }],
        probe: None,
        cpu_request: "100m",
        memory_request: Some("100Mi"),
        annotations: BTreeMap::from([(ETCD_PROXY_HASH_ANNOTATION.to_string(), hash)]),
        tier: "control-plane",
    }
}

/// `kubeha-etcd-proxy.service` (`etcd.localProxy: systemd`): the host's HAProxy in
/// master-worker mode with systemd notification (`-Ws`, `Type=notify`, as Debian's own
/// `haproxy.service` runs it), so "started" means the proxy is listening. `Before=kubelet.service`
/// keeps the boot order of design.md's bring-up (proxy first, then the API server's kubelet);
/// restarts never give up, since the API server cannot reach etcd without it. No shell: the
/// command line is exactly what runs, in systemd and in the lab supervisor alike.
pub fn etcd_proxy_unit(spec: &Spec, node: &Node) -> HostFile {
    let text = format!(
        "# Local etcd proxy of control plane {name} (cluster {cluster}), rendered by kubeha.\n\
         # 127.0.0.1:2379 -> every etcd member; config in {ETCD_PROXY_CONFIG}.\n\
         [Unit]\n\
         Description=kubeha local etcd proxy on {name} ({cluster})\n\
         Documentation=man:haproxy(1)\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         Before=kubelet.service\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n\
         Type=notify\n\
         ExecStart={ETCD_PROXY_BINARY} -Ws -f {ETCD_PROXY_CONFIG} -p {ETCD_PROXY_PIDFILE}\n\
         ExecReload={ETCD_PROXY_BINARY} -Ws -f {ETCD_PROXY_CONFIG} -c -q\n\
         ExecReload=/bin/kill -USR2 $MAINPID\n\
         KillMode=mixed\n\
         SuccessExitStatus=143\n\
         Restart=always\n\
         RestartSec=2s\n\
         NoNewPrivileges=true\n\
         ProtectSystem=full\n\
         ProtectHome=true\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        name = node.name,
        cluster = spec.name,
    );
    HostFile::public(ETCD_PROXY_UNIT_PATH, text)
}

/// Example specs with real (ECDSA) certificates, issued once per test binary.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::{path::Path, sync::OnceLock};

    use kubeha_pki::Materials;
    use kubeha_spec::{KeyAlgorithm, KubeVersion, Spec};

    pub(crate) struct Fixture {
        pub spec: Spec,
        pub materials: Materials,
    }

    impl Fixture {
        pub fn cx(&self) -> crate::Ctx<'_> {
            crate::Ctx::new(&self.spec, &self.materials)
        }

        pub fn node(&self, name: &str) -> &kubeha_spec::Node {
            self.spec
                .node(name)
                .unwrap_or_else(|| panic!("no node {name}"))
        }

        /// The same cluster at another minor (the materials do not depend on it).
        pub fn at_minor(&self, minor: u32) -> Spec {
            let mut spec = self.spec.clone();
            spec.kubernetes_version = KubeVersion {
                major: 1,
                minor,
                patch: 0,
            };
            spec
        }
    }

    pub(crate) fn load(file: &str) -> Spec {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(file);
        kubeha_spec::load(&path)
            .unwrap_or_else(|e| panic!("{file}: {e:?}"))
            .spec
    }

    fn issue(mut spec: Spec) -> Fixture {
        spec.certificates.key_algorithm = KeyAlgorithm::EcdsaP256;
        let materials =
            kubeha_pki::issue_in_memory(&spec, time::OffsetDateTime::now_utc()).expect("issue");
        Fixture { spec, materials }
    }

    /// `examples/external-etcd.yaml` (guide 000: external etcd, local proxy), ECDSA.
    pub(crate) fn external() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| issue(load("external-etcd.yaml")))
    }

    /// `examples/stacked.yaml`.
    pub(crate) fn stacked() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| issue(load("stacked.yaml")))
    }

    /// `examples/lab.yaml` (external etcd, `localProxy: systemd`, `etcdPort: 2379`).
    pub(crate) fn lab() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| issue(load("lab.yaml")))
    }
}

#[cfg(test)]
mod tests {
    use kubeha_spec::{EtcdAccess, EtcdProxyDeployment, KubeVersion, Role};

    use super::{fixtures::*, *};
    use crate::Ctx;

    fn find<'a>(files: &'a [HostFile], path: &str) -> &'a HostFile {
        files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no {path}"))
    }

    fn has(files: &[HostFile], path: &str) -> bool {
        files.iter().any(|f| f.path == path)
    }

    fn flags_of(c: &Component) -> &[String] {
        &c.command[1..]
    }

    fn redact_data(text: &str) -> String {
        text.lines()
            .map(|l| match l.split_once(':') {
                Some((k, _)) if k.trim_end().ends_with("-data") => format!("{k}: [redacted]"),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    #[test]
    fn flags_are_sorted_and_unique() {
        let f = external();
        let node = f.node("cp-1");
        for c in [
            apiserver(f.cx(), node),
            controller_manager(f.cx()),
            scheduler(f.cx()),
        ] {
            let names: Vec<&str> = flags_of(&c)
                .iter()
                .map(|a| a.split_once('=').map_or(a.as_str(), |(n, _)| n))
                .collect();
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(names, sorted, "{}", c.name);
            assert!(flags_of(&c).iter().all(|a| a.starts_with("--")));
        }
    }

    #[test]
    fn etcd_servers_follow_topology_and_access() {
        let ext = external();
        let cp = ext.node("cp-2");
        assert_eq!(etcd_servers(&ext.spec, cp), "https://127.0.0.1:2379");
        let mut direct = ext.spec.clone();
        direct.etcd.apiserver_access = EtcdAccess::Direct;
        assert_eq!(
            etcd_servers(&direct, cp),
            "https://10.10.0.11:2379,https://10.10.0.12:2379,https://10.10.0.13:2379"
        );
        assert!(apiserver(Ctx::new(&direct, &ext.materials), cp)
            .command
            .contains(&"--etcd-servers=https://10.10.0.11:2379,https://10.10.0.12:2379,https://10.10.0.13:2379".to_string()));
        let st = stacked();
        assert_eq!(
            etcd_servers(&st.spec, st.node("master-3")),
            "https://127.0.0.1:2379"
        );
    }

    #[test]
    fn etcd_proxy_only_for_external_local_proxy() {
        let ext = external();
        let cp = ext.node("cp-1");
        let files = files(ext.cx(), cp).expect("files");
        let cfg = &find(&files, ETCD_PROXY_CONFIG).content;
        assert!(cfg.contains("    bind 127.0.0.1:2379\n"));
        assert!(cfg.contains("    balance roundrobin\n"));
        for (name, addr) in [
            ("ext-etcd-1", "10.10.0.11"),
            ("ext-etcd-2", "10.10.0.12"),
            ("ext-etcd-3", "10.10.0.13"),
        ] {
            assert!(
                cfg.contains(&format!(
                    "    server {name} {addr}:2379 check inter 2000 rise 2 fall 3\n"
                )),
                "{cfg}"
            );
        }
        let pod = &find(&files, "/etc/kubernetes/manifests/etcd-proxy.yaml").content;
        assert!(pod.contains("hostNetwork: true"));
        assert!(pod.contains(&format!("image: {ETCD_PROXY_IMAGE}")));
        assert!(pod.contains("mountPath: /usr/local/etc/haproxy\n"));

        let mut direct = ext.spec.clone();
        direct.etcd.apiserver_access = EtcdAccess::Direct;
        let files = super::files(Ctx::new(&direct, &ext.materials), cp).expect("files");
        assert!(!has(&files, ETCD_PROXY_CONFIG));
        assert!(!has(&files, "/etc/kubernetes/manifests/etcd-proxy.yaml"));
        let st = stacked();
        let files = super::files(st.cx(), st.node("master-1")).expect("files");
        assert!(!files.iter().any(|f| f.path.contains("etcd-proxy")));
    }

    /// `haproxy -c` only parses the file: nothing binds, nothing is contacted.
    #[test]
    fn etcd_proxy_config_passes_haproxy_check() {
        let haproxy = Path::new("/usr/sbin/haproxy");
        if !haproxy.exists() {
            eprintln!("skipping: no {}", haproxy.display());
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut checked = 0;
        // The static pod's config (external example) and the systemd unit's (the lab): the
        // file the unit's ExecStart names is the one rendered at that path.
        for (label, f) in [("external", external()), ("lab", lab())] {
            for cp in f.spec.control_planes() {
                let files = files(f.cx(), cp).expect("files");
                let cfg = &find(&files, ETCD_PROXY_CONFIG).content;
                assert_eq!(*cfg, etcd_proxy_config(f.cx(), cp));
                let path = dir.path().join(format!("{label}-{}.cfg", cp.name));
                std::fs::write(&path, cfg).expect("write");
                let out = std::process::Command::new(haproxy)
                    .arg("-c")
                    .arg("-f")
                    .arg(&path)
                    .output()
                    .expect("haproxy -c");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(out.status.success(), "{label} {}: {text}", cp.name);
                assert!(
                    !text.contains("WARNING") && !text.contains("ALERT"),
                    "haproxy -c warns on {label} {}: {text}",
                    cp.name
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 6);
        // The check can fail: a broken file is rejected.
        let bad = dir.path().join("bad.cfg");
        std::fs::write(
            &bad,
            "frontend x\n    bind 127.0.0.1:2379\n    bogus_keyword 1\n",
        )
        .expect("write");
        let out = std::process::Command::new(haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&bad)
            .output()
            .expect("haproxy -c");
        assert!(!out.status.success(), "haproxy -c accepted a bad config");
    }

    fn with_local_proxy(base: &Spec, mode: EtcdProxyDeployment) -> Spec {
        let mut spec = base.clone();
        spec.etcd.local_proxy = mode;
        spec
    }

    #[test]
    fn systemd_etcd_proxy_is_a_unit_instead_of_a_static_pod() {
        let ext = external();
        let cp = ext.node("cp-1");
        assert_eq!(ext.spec.etcd.local_proxy, EtcdProxyDeployment::StaticPod);
        let pod_files = files(ext.cx(), cp).expect("files");
        assert!(has(&pod_files, ETCD_PROXY_MANIFEST));
        assert!(!has(&pod_files, ETCD_PROXY_UNIT_PATH));
        assert!(services(&ext.spec).is_empty());

        let sd = with_local_proxy(&ext.spec, EtcdProxyDeployment::Systemd);
        let sd_files = files(Ctx::new(&sd, &ext.materials), cp).expect("files");
        assert!(!has(&sd_files, ETCD_PROXY_MANIFEST));
        let unit = find(&sd_files, ETCD_PROXY_UNIT_PATH);
        assert_eq!(
            (unit.mode, unit.owner.as_str(), unit.sensitive),
            (0o644, "root:root", false)
        );
        // The same haproxy.cfg either way.
        assert_eq!(
            find(&sd_files, ETCD_PROXY_CONFIG),
            find(&pod_files, ETCD_PROXY_CONFIG)
        );
        // Nothing else differs: same paths but the manifest/unit swap.
        let paths = |fs: &[HostFile]| -> Vec<String> {
            fs.iter()
                .map(|f| f.path.clone())
                .filter(|p| p != ETCD_PROXY_MANIFEST && p != ETCD_PROXY_UNIT_PATH)
                .collect()
        };
        assert_eq!(paths(&sd_files), paths(&pod_files));
        assert_eq!(services(&sd), [ETCD_PROXY_SERVICE]);

        // Direct access or the stacked topology: no proxy at all, whatever localProxy says.
        let mut direct = with_local_proxy(&ext.spec, EtcdProxyDeployment::Systemd);
        direct.etcd.apiserver_access = EtcdAccess::Direct;
        let files_direct = files(Ctx::new(&direct, &ext.materials), cp).expect("files");
        assert!(!files_direct.iter().any(|f| f.path.contains("etcd-proxy")));
        assert!(services(&direct).is_empty());
        let st = stacked();
        let st_sd = with_local_proxy(&st.spec, EtcdProxyDeployment::Systemd);
        let files_st = files(Ctx::new(&st_sd, &st.materials), st.node("master-1")).expect("files");
        assert!(!files_st.iter().any(|f| f.path.contains("etcd-proxy")));
        assert!(services(&st_sd).is_empty());
    }

    #[test]
    fn systemd_etcd_proxy_unit_runs_haproxy_without_a_shell() {
        let f = lab();
        let unit = etcd_proxy_unit(&f.spec, f.node("cp-2")).content;
        let lines: Vec<&str> = unit.lines().collect();
        let exec: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with("ExecStart="))
            .collect();
        assert_eq!(
            exec,
            [
                &"ExecStart=/usr/sbin/haproxy -Ws -f /etc/kubernetes/etcd-proxy/haproxy.cfg -p /run/kubeha-etcd-proxy.pid"
            ]
        );
        for want in [
            "[Unit]",
            "After=network-online.target",
            "Wants=network-online.target",
            "Before=kubelet.service",
            "[Service]",
            "Type=notify",
            "Restart=always",
            "[Install]",
            "WantedBy=multi-user.target",
        ] {
            assert!(lines.contains(&want), "{want} in\n{unit}");
        }
        assert!(
            !unit.contains("sh -c") && !unit.contains("/bin/sh"),
            "{unit}"
        );
        assert!(unit.contains("control plane cp-2 (cluster lab)"), "{unit}");
    }

    /// `systemd-analyze verify` parses the unit as systemd would (offline: nothing starts).
    #[test]
    fn systemd_etcd_proxy_unit_passes_systemd_analyze() {
        let analyze = Path::new("/usr/bin/systemd-analyze");
        if !analyze.exists() {
            eprintln!("skipping: no {}", analyze.display());
            return;
        }
        let f = lab();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(ETCD_PROXY_SERVICE);
        std::fs::write(&path, etcd_proxy_unit(&f.spec, f.node("cp-1")).content).expect("write");
        let out = std::process::Command::new(analyze)
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect("systemd-analyze verify");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(
            !text.contains(&format!("{}:", path.display())),
            "systemd-analyze complains:\n{text}"
        );
        // The check can fail: an unknown key is reported with the file's path.
        std::fs::write(
            &path,
            "[Service]\nExecStart=/usr/sbin/haproxy -v\nBogusKey=1\n",
        )
        .expect("write");
        let out = std::process::Command::new(analyze)
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect("systemd-analyze verify");
        assert!(String::from_utf8_lossy(&out.stderr).contains("BogusKey"));
    }

    #[test]
    fn lab_control_planes_start_the_systemd_proxy_before_the_kubelet() {
        let f = lab();
        assert_eq!(f.spec.etcd.local_proxy, EtcdProxyDeployment::Systemd);
        for node in &f.spec.nodes {
            let tree = crate::render_host(f.cx(), node).expect("render");
            let has_unit = tree.files.iter().any(|x| x.path == ETCD_PROXY_UNIT_PATH);
            assert!(
                !tree.files.iter().any(|x| x.path == ETCD_PROXY_MANIFEST),
                "{}",
                node.name
            );
            if node.has(Role::ControlPlane) {
                assert!(has_unit, "{}", node.name);
                assert!(tree.files.iter().any(|x| x.path == ETCD_PROXY_CONFIG));
                assert_eq!(
                    tree.services,
                    [ETCD_PROXY_SERVICE, "containerd.service", "kubelet.service"],
                    "{}",
                    node.name
                );
            } else {
                assert!(!has_unit, "{}", node.name);
                assert!(
                    !tree.services.iter().any(|s| s == ETCD_PROXY_SERVICE),
                    "{}",
                    node.name
                );
            }
        }
        // The static-pod proxy adds no service: the kubelet runs it.
        let ext = external();
        let tree = crate::render_host(ext.cx(), ext.node("cp-1")).expect("render");
        assert_eq!(tree.services, ["containerd.service", "kubelet.service"]);
        let sd = with_local_proxy(&ext.spec, EtcdProxyDeployment::Systemd);
        let tree =
            crate::render_host(Ctx::new(&sd, &ext.materials), ext.node("cp-1")).expect("render");
        let pos = |s: &str| tree.services.iter().position(|x| x == s).expect(s);
        assert!(
            pos(ETCD_PROXY_SERVICE) < pos("kubelet.service"),
            "{:?}",
            tree.services
        );
    }

    #[test]
    fn super_admin_only_on_init_node() {
        for f in [external(), stacked()] {
            let init = f.spec.init_control_plane().expect("init").name.clone();
            for cp in f.spec.control_planes() {
                let files = files(f.cx(), cp).expect("files");
                assert_eq!(
                    has(&files, "/etc/kubernetes/super-admin.conf"),
                    cp.name == init,
                    "{}",
                    cp.name
                );
                for conf in [
                    "admin.conf",
                    "controller-manager.conf",
                    "scheduler.conf",
                    "kubelet.conf",
                ] {
                    let file = find(&files, &format!("/etc/kubernetes/{conf}"));
                    assert_eq!(file.mode, 0o600);
                    assert!(file.sensitive);
                }
            }
        }
    }

    #[test]
    fn etcd_ca_key_only_on_stacked_control_planes() {
        let ext = external();
        for cp in ext.spec.control_planes() {
            let files = files(ext.cx(), cp).expect("files");
            assert!(has(&files, "/etc/kubernetes/pki/etcd/ca.crt"));
            assert!(
                !has(&files, "/etc/kubernetes/pki/etcd/ca.key"),
                "{}",
                cp.name
            );
            assert!(has(&files, "/etc/kubernetes/pki/apiserver-etcd-client.key"));
        }
        let st = stacked();
        for cp in st.spec.control_planes() {
            let files = files(st.cx(), cp).expect("files");
            assert_eq!(find(&files, "/etc/kubernetes/pki/etcd/ca.key").mode, 0o600);
        }
    }

    #[test]
    fn pki_modes_match_kubeadm() {
        let f = external();
        let files = pki_files(f.cx(), f.node("cp-1")).expect("files");
        assert_eq!(find(&files, "/etc/kubernetes/pki/sa.pub").mode, 0o600);
        assert_eq!(find(&files, "/etc/kubernetes/pki/sa.key").mode, 0o600);
        for f in &files {
            let want = if f.path.ends_with(".crt") {
                0o644
            } else {
                0o600
            };
            assert_eq!(f.mode, want, "{}", f.path);
        }
        let names: Vec<&str> = files
            .iter()
            .map(|f| f.path.trim_start_matches("/etc/kubernetes/pki/"))
            .collect();
        for want in [
            "ca.crt",
            "ca.key",
            "front-proxy-ca.crt",
            "front-proxy-ca.key",
            "sa.key",
            "sa.pub",
            "apiserver.crt",
            "apiserver.key",
            "apiserver-kubelet-client.crt",
            "apiserver-kubelet-client.key",
            "front-proxy-client.crt",
            "front-proxy-client.key",
            "apiserver-etcd-client.crt",
            "apiserver-etcd-client.key",
            "etcd/ca.crt",
        ] {
            assert!(names.contains(&want), "missing {want}");
        }
        assert_eq!(names.len(), 15);
    }

    #[test]
    fn kubelet_conf_server_by_version() {
        let f = external();
        let cp = f.node("cp-2");
        let wn = f.node("wn-1");
        let server = |minor: u32, node: &kubeha_spec::Node| {
            let spec = f.at_minor(minor);
            kubeconfig::server_for(Ctx::new(&spec, &f.materials), node, LeafKind::KubeletConf)
        };
        assert_eq!(server(31, cp), "https://10.10.0.100:6443");
        assert_eq!(server(32, cp), "https://10.10.0.100:6443");
        assert_eq!(server(33, cp), "https://10.10.0.22:6443");
        assert_eq!(server(34, cp), "https://10.10.0.22:6443");
        for minor in 31..=34 {
            assert_eq!(server(minor, wn), "https://10.10.0.100:6443");
        }
        let cx = f.cx();
        assert_eq!(
            kubeconfig::server_for(cx, cp, LeafKind::ControllerManagerConf),
            "https://10.10.0.22:6443"
        );
        assert_eq!(
            kubeconfig::server_for(cx, cp, LeafKind::SchedulerConf),
            "https://10.10.0.22:6443"
        );
        assert_eq!(
            kubeconfig::server_for(cx, cp, LeafKind::AdminConf),
            "https://10.10.0.100:6443"
        );
        assert_eq!(
            kubeconfig::server_for(cx, cp, LeafKind::SuperAdminConf),
            "https://10.10.0.100:6443"
        );
    }

    #[test]
    fn apiserver_probes_and_annotation_use_advertise_address() {
        let f = external();
        let files = files(f.cx(), f.node("cp-3")).expect("files");
        let text = &find(&files, "/etc/kubernetes/manifests/kube-apiserver.yaml").content;
        assert!(text.contains(
            "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.10.0.23:6443\n"
        ));
        assert_eq!(text.matches("host: 10.10.0.23\n").count(), 3);
        assert!(text.contains("    - --advertise-address=10.10.0.23\n"));
        assert!(text.contains("    - --secure-port=6443\n"));
        assert!(text.contains("    - --service-cluster-ip-range=10.96.0.0/16\n"));
        let kcm = &find(
            &files,
            "/etc/kubernetes/manifests/kube-controller-manager.yaml",
        )
        .content;
        assert!(kcm.contains("    - --cluster-name=ha-cluster\n"));
        assert!(kcm.contains("    - --cluster-cidr=10.244.0.0/16\n"));
        assert!(!kcm.contains("node-cidr-mask-size"));
    }

    #[test]
    fn node_cidr_mask_only_when_not_24() {
        let mut spec = external().spec.clone();
        spec.networking.node_cidr_mask_size = 25;
        assert_eq!(
            controller_manager_flags(&spec)
                .get("node-cidr-mask-size")
                .map(String::as_str),
            Some("25")
        );
    }

    #[test]
    fn scheduler_probe_paths_by_version() {
        let f = external();
        let old = scheduler(Ctx::new(&f.at_minor(31), &f.materials))
            .probe
            .expect("probe");
        assert_eq!(
            (old.liveness_path.as_str(), old.readiness_path.as_deref()),
            ("/healthz", None)
        );
        let new = scheduler(f.cx()).probe.expect("probe");
        assert_eq!(
            (new.liveness_path.as_str(), new.readiness_path.as_deref()),
            ("/livez", Some("/readyz"))
        );
    }

    /// Every manifest from every control plane, each minor, both topologies.
    fn all_manifests() -> Vec<(String, HostFile)> {
        let mut out = vec![];
        for f in [external(), stacked()] {
            for minor in 31..=34 {
                let spec = f.at_minor(minor);
                let cx = Ctx::new(&spec, &f.materials);
                for cp in spec.control_planes() {
                    for file in files(cx, cp).expect("files") {
                        if file.path.starts_with("/etc/kubernetes/manifests/") {
                            out.push((format!("{} v1.{minor} {}", spec.name, cp.name), file));
                        }
                    }
                }
            }
        }
        out
    }

    fn strip_nulls(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|_, x| !x.is_null());
                m.values_mut().for_each(strip_nulls);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }

    fn assert_pod_round_trips(label: &str, text: &str) {
        let mut original: serde_json::Value =
            serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{label}: not YAML: {e}"));
        // `creationTimestamp: null` (≤ v1.32) is the zero time, not an unknown field.
        strip_nulls(&mut original);
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(original.clone())
            .unwrap_or_else(|e| panic!("{label}: not a Pod: {e}"));
        let back = serde_json::to_value(&pod).expect("serialize");
        assert_eq!(back, original, "{label}: fields lost in the Pod round trip");
    }

    #[test]
    fn static_pods_round_trip_through_k8s_openapi() {
        let manifests = all_manifests();
        assert!(manifests.len() > 40);
        for (label, file) in &manifests {
            assert_eq!(file.mode, 0o600);
            assert_pod_round_trips(&format!("{label} {}", file.path), &file.content);
        }
    }

    #[test]
    fn rendered_hosts_merge_without_conflict_and_round_trip() {
        for f in [external(), stacked(), lab()] {
            for node in &f.spec.nodes {
                let tree = crate::render_host(f.cx(), node)
                    .unwrap_or_else(|e| panic!("{}: {e}", node.name));
                for file in tree
                    .files
                    .iter()
                    .filter(|x| x.path.starts_with("/etc/kubernetes/manifests/"))
                {
                    assert_pod_round_trips(&format!("{} {}", node.name, file.path), &file.content);
                }
            }
        }
    }

    #[test]
    fn workers_never_get_a_ca_key() {
        for f in [external(), stacked()] {
            for node in f
                .spec
                .nodes
                .iter()
                .filter(|n| n.has(Role::Worker) && !n.has(Role::ControlPlane))
            {
                let tree = crate::render_host(f.cx(), node).expect("render");
                let keys: Vec<&str> = tree
                    .files
                    .iter()
                    .map(|x| x.path.as_str())
                    .filter(|p| p.starts_with("/etc/kubernetes/pki/"))
                    .collect();
                assert_eq!(keys, ["/etc/kubernetes/pki/ca.crt"], "{}", node.name);
                assert!(
                    !tree
                        .files
                        .iter()
                        .any(|x| x.content.contains("PRIVATE KEY") && !x.path.ends_with(".conf"))
                );
            }
        }
    }

    #[test]
    fn kubeconfigs_read_by_kubectl() {
        let kubectl = Path::new("/usr/bin/kubectl");
        assert!(
            kubectl.exists(),
            "the kubeconfig check needs the machine's kubectl at {}",
            kubectl.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for f in [external(), stacked()] {
            let init = f.spec.init_control_plane().expect("init");
            let worker = f
                .spec
                .nodes
                .iter()
                .find(|n| n.has(Role::Worker) && !n.has(Role::ControlPlane))
                .expect("worker");
            let mut confs: Vec<(HostFile, &kubeha_spec::Node)> = files(f.cx(), init)
                .expect("files")
                .into_iter()
                .filter(|x| x.path.ends_with(".conf") && x.path.starts_with("/etc/kubernetes/"))
                .map(|x| (x, init))
                .collect();
            confs.extend(
                crate::worker::files(f.cx(), worker)
                    .expect("files")
                    .into_iter()
                    .filter(|x| x.path == "/etc/kubernetes/kubelet.conf")
                    .map(|x| (x, worker)),
            );
            assert_eq!(confs.len(), 6);
            for (file, node) in confs {
                let base = file.path.trim_start_matches("/etc/kubernetes/");
                let kind = LeafKind::ALL
                    .into_iter()
                    .find(|k| k.base() == base)
                    .expect("kind");
                let user = kubeconfig::client_user(kind, node).expect("user");
                let server = kubeconfig::server_for(f.cx(), node, kind);
                let context = format!("{user}@{}", f.spec.name);
                let path = dir
                    .path()
                    .join(format!("{}-{}-{base}", f.spec.name, node.name));
                std::fs::write(&path, &file.content).expect("write");

                let out = std::process::Command::new(kubectl)
                    .args(["config", "view", "--kubeconfig"])
                    .arg(&path)
                    .args(["-o", "json"])
                    .output()
                    .expect("kubectl config view");
                assert!(
                    out.status.success(),
                    "{base}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
                assert_eq!(v["clusters"][0]["name"], f.spec.name.as_str(), "{base}");
                assert_eq!(
                    v["clusters"][0]["cluster"]["server"],
                    server.as_str(),
                    "{base}"
                );
                assert_eq!(v["users"][0]["name"], user.as_str(), "{base}");
                assert_eq!(v["contexts"][0]["name"], context.as_str(), "{base}");
                assert_eq!(
                    v["contexts"][0]["context"]["cluster"],
                    f.spec.name.as_str(),
                    "{base}"
                );
                assert_eq!(v["contexts"][0]["context"]["user"], user.as_str(), "{base}");
                assert_eq!(v["current-context"], context.as_str(), "{base}");

                let out = std::process::Command::new(kubectl)
                    .args(["config", "get-contexts", "--kubeconfig"])
                    .arg(&path)
                    .output()
                    .expect("kubectl config get-contexts");
                assert!(
                    out.status.success(),
                    "{base}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let table = String::from_utf8_lossy(&out.stdout);
                let row: Vec<&str> = table
                    .lines()
                    .nth(1)
                    .expect("one context")
                    .split_whitespace()
                    .collect();
                assert_eq!(
                    row,
                    ["*", context.as_str(), f.spec.name.as_str(), user.as_str()],
                    "{base}: {table}"
                );
            }
        }
    }

    #[test]
    fn snapshots() {
        let f = external();
        let files = files(f.cx(), f.node("cp-1")).expect("files");
        let get = |p: &str| find(&files, p).content.clone();
        insta::assert_snapshot!(
            "kube-apiserver.yaml",
            get("/etc/kubernetes/manifests/kube-apiserver.yaml")
        );
        insta::assert_snapshot!(
            "kube-controller-manager.yaml",
            get("/etc/kubernetes/manifests/kube-controller-manager.yaml")
        );
        insta::assert_snapshot!(
            "kube-scheduler.yaml",
            get("/etc/kubernetes/manifests/kube-scheduler.yaml")
        );
        insta::assert_snapshot!(
            "etcd-proxy.yaml",
            get("/etc/kubernetes/manifests/etcd-proxy.yaml")
        );
        insta::assert_snapshot!("etcd-proxy-haproxy.cfg", get(ETCD_PROXY_CONFIG));
        let lab = lab();
        let lab_files = super::files(lab.cx(), lab.node("cp-1")).expect("files");
        insta::assert_snapshot!(
            "kubeha-etcd-proxy.service",
            find(&lab_files, ETCD_PROXY_UNIT_PATH).content.clone()
        );
        insta::assert_snapshot!("kubelet-config.yaml", get(kubelet::CONFIG_PATH));
        insta::assert_snapshot!(
            "admin.conf",
            redact_data(&get("/etc/kubernetes/admin.conf"))
        );
        let common = common::files(f.cx(), f.node("cp-1")).expect("files");
        insta::assert_snapshot!(
            "containerd-config.toml",
            find(&common, common::CONTAINERD_CONFIG_PATH)
                .content
                .clone()
        );
        let old = f.at_minor(31);
        let old_files = super::files(Ctx::new(&old, &f.materials), f.node("cp-1")).expect("files");
        insta::assert_snapshot!(
            "kube-scheduler-v1.31.yaml",
            find(&old_files, "/etc/kubernetes/manifests/kube-scheduler.yaml")
                .content
                .clone()
        );
    }

    #[test]
    fn versions_cover_supported_range() {
        assert_eq!(KubeVersion::SUPPORTED_MINORS, 31..=34);
    }

    use std::path::Path;
}
