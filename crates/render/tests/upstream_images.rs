//! The OCI image archives `scripts/upstream images` builds from the Go-module binaries load
//! into a real containerd and run under runc, with no registry anywhere: every archive
//! imports into the `k8s.io` namespace (the kubelet's) under exactly the name kubeha's image
//! list gives for that component, each component's binary runs inside its image when called
//! by name (as kubeadm's static pods call it), and the pause image holds a sandbox until
//! asked to stop. Missing archives fail the test, naming the command to run.
//!
//! The test starts its own containerd (its own root, state and socket in a temporary
//! directory; cgroupfs, which is what runc uses unless told to use systemd) and removes every
//! container, cgroup and mount it made, also when an assertion fails.

mod upstream;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use kubeha_spec::{EtcdDeployment, Spec};
use upstream::{ETCD, KUBERNETES_V1_34, pin};

/// What the archives hold, as kubeha's image list names the user of each image.
const BUILT: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "pod sandbox (pause)",
];

const LAB: &str = include_str!("../../../examples/lab.yaml");
const STACKED: &str = include_str!("../../../examples/stacked.yaml");

/// Every waiting loop's bound: far above what any step takes, reached only when stuck.
const PATIENCE: Duration = Duration::from_secs(60);

/// `kubeha images -o json` restricted to the built components, for the lab cluster and for
/// the default stacked cluster with static-pod etcd (kubeadm's layout): the lab runs etcd as
/// systemd units (the built binary, not an image), so etcd's image name comes from the latter.
/// Both must agree on every other image.
fn wanted_images() -> BTreeSet<String> {
    let load = |src: &str, file: &str| -> Spec {
        match kubeha_spec::load_str(src, Path::new(file)) {
            Ok(loaded) => loaded.spec,
            Err(e) => panic!("{file}: {e:?}"),
        }
    };
    let lab = load(LAB, "examples/lab.yaml");
    let mut stacked = load(STACKED, "examples/stacked.yaml");
    stacked.etcd.deployment = EtcdDeployment::StaticPod;
    let mut by_user: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in [lab, stacked] {
        let json = serde_json::to_value(kubeha_render::images::all(&s))
            .unwrap_or_else(|e| panic!("image list as JSON: {e}"));
        for u in json.as_array().into_iter().flatten() {
            let (Some(image), Some(used_by)) = (u["image"].as_str(), u["usedBy"].as_str()) else {
                panic!("image list entry without image/usedBy: {u}");
            };
            by_user
                .entry(used_by.to_string())
                .or_default()
                .insert(image.to_string());
        }
    }
    let mut wanted = BTreeSet::new();
    for user in BUILT {
        let images = by_user
            .get(*user)
            .unwrap_or_else(|| panic!("kubeha's image list has no {user}: {by_user:#?}"));
        assert_eq!(images.len(), 1, "{user}: {images:?}");
        wanted.extend(images.iter().cloned());
    }
    wanted
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is missing: apt-get install containerd runc (scripts/setup-debian does)");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A containerd of the test's own, stopped and cleaned up on drop.
struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    /// Parent of every container's cgroup (cgroupfs), unique to this test run.
    cgroup: String,
}

impl Containerd {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kubeha-ctrd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let socket = dir.path().join("containerd.sock");
        // CRI off: this test speaks containerd's own API only, through ctr.
        let config = format!(
            "version = 2\nroot = {root:?}\nstate = {state:?}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {socket:?}\n[ttrpc]\n  address = \"{}.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            socket.display()
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("config: {e}"));
        let log = std::fs::File::create(dir.path().join("containerd.log"))
            .unwrap_or_else(|e| panic!("log: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
        let child = Command::new(tool("containerd"))
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start containerd: {e}"));
        let mut me = Containerd {
            child,
            dir,
            socket,
            cgroup: format!("kubeha-image-test-{}", std::process::id()),
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("containerd exited ({status}):\n{}", me.log());
            }
            if me.socket.exists() && me.ctr(&["version"]).status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "containerd's socket did not answer within {PATIENCE:?}:\n{}",
                me.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        me
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tool("ctr"));
        c.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io", "--timeout", "120s"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ctr: {e}"))
    }

    /// `ctr args…`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// A container id of this run: runc keeps its state under /run/containerd/runc/<namespace>
    /// whichever containerd asks, so ids must not collide with another containerd's.
    fn id(&self, name: &str) -> String {
        format!("{name}-{}", std::process::id())
    }

    fn cgroup_of(&self, id: &str) -> String {
        format!("/{}/{id}", self.cgroup)
    }

    /// The task's status column in `ctr task ls` (RUNNING, STOPPED, …), if it is listed.
    fn task_status(&self, id: &str) -> Option<String> {
        self.ok(&["task", "ls"]).lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(2).copied().unwrap_or("").to_string())
        })
    }

    fn task_pid(&self, id: &str) -> Option<u32> {
        self.ok(&["task", "ls"]).lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.first() == Some(&id) {
                f.get(1).and_then(|p| p.parse().ok())
            } else {
                None
            }
        })
    }

    /// Kills and removes every task and container left behind (a failed assertion).
    fn remove_leftovers(&self) {
        let tasks = self.ctr(&["task", "ls", "-q"]);
        for id in text(&tasks.stdout).lines().filter(|l| !l.is_empty()) {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
            let deadline = Instant::now() + PATIENCE;
            while Instant::now() < deadline
                && self.ctr(&["task", "rm", id]).status.code() != Some(0)
            {
                thread::sleep(Duration::from_millis(50));
            }
        }
        let containers = self.ctr(&["containers", "ls", "-q"]);
        for id in text(&containers.stdout).lines().filter(|l| !l.is_empty()) {
            let _ = self.ctr(&["containers", "rm", id]);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.remove_leftovers();
        // SIGTERM (our own child, not reaped yet: the pid is still its), then SIGKILL if it
        // has not gone within the bound.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Snapshots still mounted (a container not removed) would keep the directory busy.
        let prefix = self.dir.path().to_string_lossy().into_owned();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut ours: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|m| m.starts_with(&prefix))
                .collect();
            ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in ours {
                let _ = Command::new("umount").args(["-l", m]).status();
            }
        }
        // The containers' cgroups (runc removes each leaf; the parent is ours).
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let parent = h.path().join(&self.cgroup);
                if let Ok(children) = std::fs::read_dir(&parent) {
                    for c in children.flatten() {
                        if c.path().is_dir() {
                            let _ = std::fs::remove_dir(c.path());
                        }
                    }
                }
                let _ = std::fs::remove_dir(&parent);
            }
        }
    }
}

/// Runs `args` (found on the image's PATH) in a fresh container of `image`; its stdout.
fn run_in(ctrd: &Containerd, image: &str, name: &str, args: &[&str]) -> String {
    let id = ctrd.id(name);
    let cgroup = ctrd.cgroup_of(&id);
    let mut all = vec!["run", "--rm", "--cgroup", &cgroup, image, &id];
    all.extend_from_slice(args);
    ctrd.ok(&all)
}

#[test]
fn real_containerd_imports_and_runs_the_built_images() {
    // Before any daemon starts: a missing build fails here, saying what to run.
    let archives = upstream::image_archives();
    let wanted = wanted_images();
    let ctrd = Containerd::start();

    let mut imported = BTreeMap::new();
    for a in &archives {
        let path = a.path.to_string_lossy().into_owned();
        let t0 = Instant::now();
        ctrd.ok(&["images", "import", &path]);
        println!(
            "imported {} ({} bytes) in {:.2} s",
            a.image,
            a.bytes,
            t0.elapsed().as_secs_f64()
        );
        imported.insert(a.image.clone(), a);
    }

    let listed: BTreeSet<String> = ctrd
        .ok(&["images", "ls", "-q"])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(
        listed, wanted,
        "containerd's images are not the ones kubeha's image list names"
    );

    // containerd's own digest of each image is the one the builder reported.
    for line in ctrd.ok(&["images", "ls"]).lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(digest)) = (f.first(), f.get(2)) else {
            panic!("ctr images ls: {line:?}");
        };
        let archive = imported
            .get(*name)
            .unwrap_or_else(|| panic!("{name} comes from no archive"));
        assert_eq!(*digest, archive.digest, "{name}");
        assert!(
            f.contains(&"linux/amd64"),
            "{name}: platform is not linux/amd64: {line}"
        );
    }

    let image_of = |component: &str| -> String {
        let name = format!("/{component}:");
        wanted
            .iter()
            .find(|i| i.contains(&name))
            .unwrap_or_else(|| panic!("no {name} image in {wanted:?}"))
            .clone()
    };

    // Each control-plane binary is found by name on the image's PATH and is the pinned build.
    let kube = format!("Kubernetes {}", KUBERNETES_V1_34.version());
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let out = run_in(&ctrd, &image_of(c), &format!("v-{c}"), &[c, "--version"]);
        assert_eq!(out.trim(), kube, "{c} --version in its image");
    }
    let etcd_image = image_of("etcd");
    let out = run_in(&ctrd, &etcd_image, "v-etcd", &["etcd", "--version"]);
    assert_eq!(
        out.lines().next(),
        Some(format!("etcd Version: {}", pin(ETCD.key)).as_str()),
        "{out}"
    );
    for t in ["etcdctl", "etcdutl"] {
        let out = run_in(&ctrd, &etcd_image, &format!("v-{t}"), &[t, "version"]);
        assert_eq!(
            out.lines().next(),
            Some(format!("{t} version: {}", pin(ETCD.key)).as_str()),
            "{out}"
        );
    }

    // The pause image: starts as the image says (entrypoint /pause, user 65535), keeps
    // running, and ends with success on SIGTERM, as a sandbox is stopped.
    let pause = image_of("pause");
    let sandbox = ctrd.id("sandbox");
    let cgroup = ctrd.cgroup_of(&sandbox);
    let mut run = ctrd
        .ctr_command(&["run", "--rm", "--cgroup", &cgroup, &pause, &sandbox])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("ctr run: {e}"));
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(status)) = run.try_wait() {
            panic!("the pause container ended by itself ({status})");
        }
        if ctrd.task_status(&sandbox).as_deref() == Some("RUNNING") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pause not RUNNING within {PATIENCE:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let pid = ctrd
        .task_pid(&sandbox)
        .unwrap_or_else(|| panic!("no pid for the pause task"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "65535", "pause runs as 65535:\n{status}");
    assert_eq!(field("Gid:"), "65535", "pause runs as 65535:\n{status}");
    assert_eq!(
        field("NSpid:"),
        pid.to_string(),
        "NSpid first is the host pid"
    );
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/exe: {e}"));
    assert_eq!(exe, Path::new("/pause"), "the image's entrypoint runs");
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().last().unwrap_or("").to_string())
        .unwrap_or_default();
    assert_eq!(nspid, "1", "pause is PID 1 of its container:\n{status}");

    ctrd.ok(&["task", "kill", "-s", "SIGTERM", &sandbox]);
    let deadline = Instant::now() + PATIENCE;
    let exit = loop {
        if let Ok(Some(status)) = run.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = run.kill();
            panic!("pause did not stop on SIGTERM within {PATIENCE:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let out = run
        .wait_with_output()
        .unwrap_or_else(|e| panic!("ctr run: {e}"));
    assert!(
        exit.success(),
        "pause should exit 0 on SIGTERM: {exit}\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(ctrd.task_status(&sandbox), None, "--rm removed the task");
    assert_eq!(
        ctrd.ok(&["containers", "ls", "-q"]).trim(),
        "",
        "every container is gone"
    );
}

/// Kills a process (and, through `unshare --kill-child`, the namespace it holds) on drop.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn proc_status(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// The processes whose parent is `parent` (their pids), optionally only those named `comm`.
fn children_of(parent: u32, comm: Option<&str>) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            proc_status(*pid).is_some_and(|s| {
                status_field(&s, "PPid:") == parent.to_string()
                    && comm.is_none_or(|c| status_field(&s, "Name:") == c)
            })
        })
        .collect()
}

/// Polls `f` until it gives a value, within [`PATIENCE`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// As the first process of a PID namespace, the image's pause collects an orphan that exits
/// (no zombie is left) and ends with success on SIGTERM. Run on the host with `unshare`, as
/// a pod with a shared process namespace would run it.
#[test]
fn pause_reaps_orphans_as_pid_1() {
    let pause = upstream::images_dir().join("bin/pause");
    upstream::image_archives(); // a missing build fails here, saying what to run
    let mut holder = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--"])
        .arg(&pause)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("unshare: {e}"));
    let mut guard = KillOnDrop(vec![holder.id()]);
    let pid = wait_for("pause started in its namespace", || {
        children_of(holder.id(), Some("pause")).first().copied()
    });
    let ns = proc_status(pid).unwrap_or_default();
    assert!(
        status_field(&ns, "NSpid:").ends_with("\t1") || status_field(&ns, "NSpid:").ends_with(" 1"),
        "pause is PID 1 of its namespace:\n{ns}"
    );

    // A shell in pause's namespace starts a long-lived child and exits: the child is
    // orphaned, and the kernel hands it to the namespace's first process.
    let out = Command::new("nsenter")
        .args(["--target", &pid.to_string(), "--pid", "--"])
        .args(["sh", "-c", "sleep 600 >/dev/null 2>&1 </dev/null &"])
        .output()
        .unwrap_or_else(|e| panic!("nsenter: {e}"));
    assert!(out.status.success(), "nsenter: {}", text(&out.stderr));
    let orphan = wait_for("the orphan adopted by pause", || {
        children_of(pid, Some("sleep")).first().copied()
    });
    guard.0.push(orphan);
    let _ = Command::new("kill")
        .args(["-KILL", &orphan.to_string()])
        .status();
    // Reaped: gone from /proc. Not reaped: a zombie (State Z) for as long as pause lives.
    wait_for("pause reaping its orphan", || {
        match proc_status(orphan) {
            None => Some(()),
            Some(s) if status_field(&s, "PPid:") != pid.to_string() => Some(()), // pid reused
            Some(_) => None,
        }
    });

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = wait_for("pause ending on SIGTERM", || {
        holder.try_wait().ok().flatten()
    });
    guard.0.clear();
    let out = holder
        .wait_with_output()
        .unwrap_or_else(|e| panic!("unshare: {e}"));
    assert!(
        exit.success(),
        "pause should exit 0 on SIGTERM: {exit}\n{}",
        text(&out.stderr)
    );
}
