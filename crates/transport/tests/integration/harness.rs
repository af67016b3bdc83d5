//! A throwaway `sshd` for one test: its own host key, an authorized client key, a free port on
//! a loopback address the test chooses, and a guard that kills it (and its connections) and
//! removes its files however the test ends.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{self, Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use kubeha_spec::{Node, Ssh};
use kubeha_transport::SshTransport;
use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use tempfile::TempDir;

/// How long sshd gets to start accepting.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Sshd {
    pub dir: TempDir,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub user: String,
    child: Option<Child>,
}

impl Sshd {
    /// Starts sshd on `addr` (a 127.0.0.x address unique to the calling test).
    pub fn start(addr: Ipv4Addr) -> Sshd {
        assert!(addr.is_loopback(), "tests may only use 127.0.0.0/8");
        let dir = tempfile::Builder::new()
            .prefix("kh-sshd")
            .tempdir()
            .unwrap();
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("client_key"));
        fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        // sshd refuses to start without its privilege separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        let port = free_port(addr);
        let d = dir.path().display();
        let config = format!(
            "ListenAddress {addr}:{port}\n\
             HostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UseDNS no\n\
             PrintMotd no\n\
             MaxSessions 32\n\
             MaxStartups 64\n\
             LogLevel DEBUG1\n\
             SetEnv SHLVL=1\n"
        );
        fs::write(dir.path().join("sshd_config"), config).unwrap();
        let user = String::from_utf8(
            process::Command::new("id")
                .arg("-un")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string();
        let mut sshd = Sshd {
            dir,
            addr,
            port,
            user,
            child: None,
        };
        sshd.spawn();
        sshd
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The state directory a transport to this sshd uses.
    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    pub fn node(&self, name: &str) -> Node {
        Node {
            name: name.to_string(),
            address: IpAddr::V4(self.addr),
            roles: BTreeSet::new(),
            ssh: Ssh {
                user: self.user.clone(),
                port: self.port,
                key: Some(self.path("client_key").display().to_string()),
            },
            labels: BTreeMap::new(),
            taints: Vec::new(),
            lb_priority: None,
        }
    }

    pub fn transport(&self, name: &str) -> SshTransport {
        SshTransport::new(&self.node(name), &self.state_dir())
            .unwrap()
            .with_connect_timeout(Duration::from_secs(5))
    }

    /// The server's public host key as `type base64`.
    pub fn host_key(&self) -> String {
        let text = fs::read_to_string(self.path("host_key.pub")).unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// How many commands sshd has been asked to run so far (from its debug log).
    pub fn exec_count(&self) -> usize {
        let log = fs::read_to_string(self.path("sshd.log")).unwrap_or_default();
        log.lines().filter(|l| l.contains("req exec")).count()
    }

    /// Stops sshd, gives it a new host key and starts it again on the same address and port.
    pub fn replace_host_key(&mut self) {
        self.stop();
        fs::remove_file(self.path("host_key")).unwrap();
        fs::remove_file(self.path("host_key.pub")).unwrap();
        keygen(&self.path("host_key"));
        self.spawn();
    }

    fn spawn(&mut self) {
        // `-E` rather than `-e`: with `-e`, debug lines of a session leak into its stderr.
        let mut cmd = process::Command::new("/usr/sbin/sshd");
        cmd.arg("-D")
            .arg("-E")
            .arg(self.path("sshd.log"))
            .arg("-f")
            .arg(self.path("sshd_config"));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so the guard can kill it without touching the test runner.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.child = Some(
            cmd.spawn()
                .expect("start /usr/sbin/sshd (apt-get install openssh-server)"),
        );
        let target = SocketAddr::new(IpAddr::V4(self.addr), self.port);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "sshd exited with {status}: {}",
                    fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not accept on {target} within {START_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills sshd and every connection it serves.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // Per-connection sshd processes start their own sessions; find them before the
        // listener dies and they are re-parented.
        let connections = children_of(pid);
        let _ = kill_process_group(Pid::from_child(&child), Signal::KILL);
        let _ = child.kill();
        let _ = child.wait();
        for c in connections {
            if let Some(p) = Pid::from_raw(c as i32) {
                let _ = kill_process(p, Signal::KILL);
            }
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keygen(path: &Path) {
    let status = process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kubeha-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen failed");
}

/// A port nothing listens on at `addr` right now.
pub fn free_port(addr: Ipv4Addr) -> u16 {
    TcpListener::bind((addr, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Direct children of `pid`, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces; fields resume after `)`.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
            == Some(pid)
        {
            out.push(child);
        }
    }
    out
}

/// Milliseconds, for timing prints.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
