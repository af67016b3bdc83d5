//! SshTransport against a real sshd.

use std::{
    fs,
    net::Ipv4Addr,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use kubeha_transport::{
    Command, FileFacts, SshTransport, Transport, TransportError, for_each_host,
};
use rustix::process::{Pid, Signal, kill_process};

use crate::harness::{Sshd, children_of, free_port, ms};

#[test]
fn run_returns_output_and_pins_the_host_key_on_first_contact() {
    let sshd = Sshd::start(Ipv4Addr::new(127, 0, 0, 101));
    let t = sshd.transport("node-run");
    let known_hosts = sshd.state_dir().join("known_hosts");
    assert!(!known_hosts.exists());

    let start = Instant::now();
    let out = t.run(&Command::script("echo out; echo err >&2")).unwrap();
    let first = start.elapsed();
    assert_eq!(
        (
            out.status,
            out.stdout_lossy().as_ref(),
            out.stderr_lossy().as_ref()
        ),
        (0, "out\n", "err\n")
    );

    // First contact pinned the server's key under the node's name.
    let pinned = fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(
        pinned.trim(),
        format!("node-run {}", sshd.host_key()),
        "{pinned}"
    );

    let start = Instant::now();
    t.run(&Command::new(["true"])).unwrap();
    let reused = start.elapsed();
    println!(
        "ssh timings: first command (connect + run) {}, command on the shared connection {}",
        ms(first),
        ms(reused)
    );

    // Arguments arrive exactly as given, whatever the remote shell would make of them.
    let nasty = [
        "two words",
        "it's",
        "$(id)",
        "`id`",
        "a\nb",
        "*",
        "~",
        "#x",
        "A=b",
        "-n",
        "ünï ✓",
        "",
    ];
    let out = t
        .run(&Command::new(["printf", "%s\\0"]).args(nasty))
        .unwrap();
    let text = out.stdout_lossy();
    let got: Vec<&str> = text.split('\0').collect();
    assert_eq!(&got[..nasty.len()], &nasty[..]);

    // Stdin reaches the command.
    let out = t
        .run(&Command::new(["wc", "-c"]).stdin(vec![7u8; 100_000]))
        .unwrap();
    assert_eq!(out.stdout_lossy().trim(), "100000");

    // A failing command names the host and keeps its stderr.
    let err = t
        .run(&Command::script("echo nope >&2; exit 3"))
        .unwrap_err();
    match &err {
        TransportError::CommandFailed {
            host,
            status: 3,
            stderr_tail: Some(tail),
            ..
        } => {
            assert_eq!(host, "node-run");
            assert_eq!(tail.0, "nope");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t.run(&Command::new(["false"]).allow_failure())
            .unwrap()
            .status,
        1
    );

    // Sensitive commands keep argv and stderr out of the error.
    let err = t
        .run(
            &Command::script("echo hunter2 >&2; exit 4")
                .arg("hunter2")
                .sensitive(),
        )
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(
            err,
            TransportError::CommandFailed {
                status: 4,
                stderr_tail: None,
                ..
            }
        ),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");

    // A key the server does not know is refused as an authentication failure.
    let other = tempfile::tempdir_in(sshd.dir.path()).unwrap();
    let key = other.path().join("stranger");
    let keygen = process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let mut node = sshd.node("node-run");
    node.ssh.key = Some(key.display().to_string());
    let stranger = SshTransport::new(&node, &other.path().join("state")).unwrap();
    match stranger.run(&Command::new(["true"])).unwrap_err() {
        TransportError::AuthFailed { host, user, .. } => assert_eq!(
            (host.as_str(), user.as_str()),
            ("node-run", sshd.user.as_str())
        ),
        other => panic!("{other:?}"),
    }
    t.close().unwrap();
}

#[test]
fn upload_writes_exact_bytes_mode_and_owner_and_read_returns_them() {
    let sshd = Sshd::start(Ipv4Addr::new(127, 0, 0, 102));
    let t = sshd.transport("node-up");
    let root = sshd.path("files");
    let target = root.join("a/b/c/kubelet.conf");
    let target_s = target.to_str().unwrap();
    let content: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    // `nobody` exists on Debian; fall back to root elsewhere.
    let owner = if group_exists("nogroup") {
        "nobody:nogroup"
    } else {
        "root:root"
    };

    t.upload(target_s, &content, 0o640, owner).unwrap();
    assert_eq!(fs::read(&target).unwrap(), content);
    let meta = fs::metadata(&target).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(
        format!("{}:{}", user_name(meta.uid()), group_name(meta.gid())),
        owner
    );
    for dir in ["a", "a/b", "a/b/c"] {
        let mode = fs::metadata(root.join(dir)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "{dir}");
    }
    assert_eq!(t.read(target_s).unwrap(), Some(content.clone()));
    assert_eq!(
        t.read(root.join("a/missing").to_str().unwrap()).unwrap(),
        None
    );

    // Overwrite with different content and mode; empty content works too.
    t.upload(target_s, b"", 0o600, "root:root").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"");
    assert_eq!(
        fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    assert_no_temp_files(&root.join("a/b/c"));

    // A directory at the target is refused, not written into.
    match t
        .upload(root.join("a/b").to_str().unwrap(), b"x", 0o644, "root")
        .unwrap_err()
    {
        TransportError::NotAFile { host, path } => assert_eq!(
            (host.as_str(), path.as_str()),
            ("node-up", root.join("a/b").to_str().unwrap())
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        t.upload("relative/path", b"x", 0o644, "root"),
        Err(TransportError::Invalid { .. })
    ));

    // Twenty small files, one after another, on the shared connection.
    let start = Instant::now();
    for i in 0..20 {
        let p = root.join(format!("many/file-{i}.yaml"));
        t.upload(
            p.to_str().unwrap(),
            format!("i: {i}\n").as_bytes(),
            0o644,
            "root:root",
        )
        .unwrap();
    }
    let sequential = start.elapsed();
    let paths: Vec<String> = (0..20)
        .map(|i| {
            root.join(format!("par/file-{i}.yaml"))
                .display()
                .to_string()
        })
        .collect();
    let start = Instant::now();
    let results = for_each_host(paths.iter(), 4, |p| {
        t.upload(p, b"x: 1\n", 0o644, "root:root")
    });
    let parallel = start.elapsed();
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    println!(
        "ssh timings: 20 small uploads sequential {}, with parallelism 4 {}",
        ms(sequential),
        ms(parallel)
    );
    t.close().unwrap();
}

#[test]
fn a_concurrent_reader_never_sees_partial_content() {
    let sshd = Sshd::start(Ipv4Addr::new(127, 0, 0, 103));
    let t = sshd.transport("node-race");
    let target = sshd.path("race/big.bin");
    let target_s = target.to_str().unwrap().to_string();
    const SIZE: usize = 4 << 20;
    let versions = [vec![b'a'; SIZE], vec![b'b'; SIZE]];
    t.run(&Command::new(["true"])).unwrap();
    let start = Instant::now();
    t.upload(
        sshd.path("race/alone.bin").to_str().unwrap(),
        &versions[0],
        0o644,
        "root:root",
    )
    .unwrap();
    println!(
        "ssh timings: one 4 MiB upload without a competing reader {}",
        ms(start.elapsed())
    );
    let done = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let seen_complete = AtomicUsize::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                match fs::read(&target) {
                    Ok(bytes) => {
                        let whole = bytes.len() == SIZE
                            && (bytes.iter().all(|b| *b == b'a')
                                || bytes.iter().all(|b| *b == b'b'));
                        assert!(
                            whole,
                            "reader saw {} bytes of mixed or partial content",
                            bytes.len()
                        );
                        seen_complete.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        });
        t.run(&Command::new(["true"])).unwrap();
        let start = Instant::now();
        for round in 0..6 {
            t.upload(&target_s, &versions[round % 2], 0o644, "root:root")
                .unwrap();
        }
        println!("ssh timings: 6 uploads of 4 MiB {}", ms(start.elapsed()));
        done.store(true, Ordering::Relaxed);
    });
    println!(
        "reader: {} reads, {} of complete content",
        reads.load(Ordering::Relaxed),
        seen_complete.load(Ordering::Relaxed)
    );
    assert!(seen_complete.load(Ordering::Relaxed) > 0);
    assert_eq!(fs::read(&target).unwrap(), versions[1]);
    assert_no_temp_files(target.parent().unwrap());
    t.close().unwrap();
}

#[test]
fn killing_the_client_mid_upload_leaves_the_old_file() {
    let sshd = Sshd::start(Ipv4Addr::new(127, 0, 0, 104));
    let t = sshd.transport("node-kill");
    let dir = sshd.path("kill");
    let target = dir.join("admin.conf");
    let target_s = target.to_str().unwrap().to_string();
    t.upload(&target_s, b"old\n", 0o600, "root:root").unwrap();
    let big = vec![b'n'; 128 << 20];

    let (result, killed) = thread::scope(|s| {
        let upload = s.spawn(|| t.upload(&target_s, &big, 0o600, "root:root"));
        // Wait until the host is writing the temp file, then kill our ssh client.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut killed = None;
        while killed.is_none() && Instant::now() < deadline && !upload.is_finished() {
            if temp_files(&dir)
                .iter()
                .any(|p| fs::metadata(p).is_ok_and(|m| m.len() > 0))
            {
                for pid in children_of(process::id()) {
                    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let is_ssh = cmdline
                        .split(|b| *b == 0)
                        .next()
                        .is_some_and(|a| a.ends_with(b"ssh"));
                    if is_ssh && contains(&cmdline, target_s.as_bytes()) {
                        let _ = kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL);
                        killed = Some(pid);
                    }
                }
            }
            assert_eq!(fs::read(&target).unwrap(), b"old\n");
            thread::sleep(Duration::from_millis(1));
        }
        (upload.join().unwrap(), killed)
    });
    assert!(
        killed.is_some(),
        "never caught the upload in flight: {result:?}"
    );
    let err = result.unwrap_err();
    println!("upload error after the kill: {err}");
    assert_eq!(err.host(), "node-kill");
    assert_eq!(fs::read(&target).unwrap(), b"old\n");
    // The host notices the short content and removes its temp file.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !temp_files(&dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "temp files left behind: {:?}",
            temp_files(&dir)
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    // The shared connection survived; the next upload goes through.
    t.upload(&target_s, b"new\n", 0o600, "root:root").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"new\n");
    t.close().unwrap();
}

#[test]
fn stat_files_reports_a_hundred_paths_in_one_call() {
    let sshd = Sshd::start(Ipv4Addr::new(127, 0, 0, 105));
    let t = sshd.transport("node-stat");
    let root = sshd.path("stat");
    fs::create_dir_all(&root).unwrap();
    let mut paths = Vec::new();
    let mut want = std::collections::BTreeMap::new();
    for i in 0..100 {
        // Odd names on purpose: sha256sum escapes backslashes and newlines in its output.
        let name = match i % 10 {
            3 => format!("with space {i}"),
            4 => format!("back\\slash-{i}"),
            5 => format!("new\nline-{i}"),
            _ => format!("f{i}"),
        };
        let p = root.join(name);
        if i % 4 != 0 {
            let content = format!("content {i}\n").repeat(i);
            let mode = [0o644, 0o600, 0o755][i % 3];
            fs::write(&p, &content).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            want.insert(
                p.display().to_string(),
                FileFacts::of(content.as_bytes(), mode, "root:root"),
            );
        }
        paths.push(p.display().to_string());
    }
    t.run(&Command::new(["true"])).unwrap();
    let execs = sshd.exec_count();
    let start = Instant::now();
    let facts = t.stat_files(&paths).unwrap();
    println!(
        "ssh timings: stat_files of 100 paths {}",
        ms(start.elapsed())
    );
    assert_eq!(
        sshd.exec_count() - execs,
        1,
        "stat_files must be one remote command"
    );
    assert_eq!(facts.len(), 75);
    assert_eq!(facts, want);

    // A directory where a file is expected is an error naming the path.
    let dir = root.display().to_string();
    match t.stat_files(&[paths[1].clone(), dir.clone()]).unwrap_err() {
        TransportError::NotAFile { path, .. } => assert_eq!(path, dir),
        other => panic!("{other:?}"),
    }
    assert!(t.stat_files(&[]).unwrap().is_empty());
    t.close().unwrap();
}

#[test]
fn a_changed_host_key_is_refused_naming_the_host() {
    let mut sshd = Sshd::start(Ipv4Addr::new(127, 0, 0, 106));
    let t = sshd.transport("node-hk");
    t.run(&Command::new(["true"])).unwrap();
    let known_hosts = sshd.state_dir().join("known_hosts");
    let pinned = fs::read_to_string(&known_hosts).unwrap();

    // A shared connection would skip the check; close it as a new run would find it.
    t.close().unwrap();
    sshd.replace_host_key();
    let err = t.run(&Command::new(["true"])).unwrap_err();
    println!("error: {err}\nhelp: {}", err.help().unwrap_or_default());
    match &err {
        TransportError::HostKeyChanged {
            host,
            known_hosts: kh,
        } => {
            assert_eq!(host, "node-hk");
            assert_eq!(kh, &known_hosts);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fs::read_to_string(&known_hosts).unwrap(),
        pinned,
        "the pinned key must not change"
    );

    // Following the help: forget the old key, and the next contact pins the new one.
    let status = process::Command::new("ssh-keygen")
        .args(["-q", "-R", "node-hk", "-f"])
        .arg(&known_hosts)
        .stdout(process::Stdio::null())
        .stderr(process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(err.help().unwrap().contains(&format!(
        "ssh-keygen -R node-hk -f {}",
        known_hosts.display()
    )));
    t.run(&Command::new(["true"])).unwrap();
    assert!(
        fs::read_to_string(&known_hosts)
            .unwrap()
            .contains(&sshd.host_key())
    );
    t.close().unwrap();
}

#[test]
fn a_closed_port_is_unreachable_quickly() {
    let addr = Ipv4Addr::new(127, 0, 0, 107);
    let port = free_port(addr);
    let state = tempfile::tempdir().unwrap();
    let node = kubeha_spec::Node {
        name: "node-down".into(),
        address: addr.into(),
        roles: Default::default(),
        ssh: kubeha_spec::Ssh {
            user: "root".into(),
            port,
            key: None,
        },
        labels: Default::default(),
        taints: Vec::new(),
        lb_priority: None,
    };
    let t = SshTransport::new(&node, state.path())
        .unwrap()
        .with_connect_timeout(Duration::from_secs(3));
    let start = Instant::now();
    let err = t.run(&Command::new(["true"])).unwrap_err();
    let took = start.elapsed();
    println!("unreachable after {}: {err}", ms(took));
    match &err {
        TransportError::Unreachable {
            host,
            address,
            detail,
        } => {
            assert_eq!(host, "node-down");
            assert_eq!(address, &format!("{addr}:{port}"));
            assert!(detail.0.contains("Connection refused"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_hung_command_times_out_and_the_connection_survives() {
    let sshd = Sshd::start(Ipv4Addr::new(127, 0, 0, 108));
    let t = sshd.transport("node-slow");
    t.run(&Command::new(["true"])).unwrap();
    // The command would run 30 s: returning before then proves it was cut off.
    let start = Instant::now();
    let err = t
        .run(&Command::new(["sleep", "30"]).timeout(Duration::from_secs(1)))
        .unwrap_err();
    let took = start.elapsed();
    match &err {
        TransportError::Timeout { host, op, after } => {
            assert_eq!(
                (host.as_str(), op.as_str(), *after),
                ("node-slow", "command `sleep 30`", Duration::from_secs(1))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(took < Duration::from_secs(30), "{took:?}");
    let out = t.run(&Command::new(["echo", "still here"])).unwrap();
    assert_eq!(out.stdout_lossy(), "still here\n");
    t.close().unwrap();
}

#[test]
fn for_each_host_over_ssh_keeps_input_order() {
    let sshd = Sshd::start(Ipv4Addr::new(127, 0, 0, 109));
    let t = sshd.transport("node-par");
    t.run(&Command::new(["true"])).unwrap();
    let start = Instant::now();
    let results = for_each_host(0..20u32, 4, |i| {
        // Earlier items sleep longer, so completion order differs from input order.
        let pause = format!("0.{:02}", 20 - i);
        t.run(&Command::script("sleep \"$1\"; echo \"$2\"").args([pause, i.to_string()]))
    });
    println!(
        "ssh timings: 20 commands with parallelism 4 {}",
        ms(start.elapsed())
    );
    for (n, (i, r)) in results.into_iter().enumerate() {
        assert_eq!(i as usize, n);
        assert_eq!(r.unwrap().stdout_lossy().trim(), i.to_string());
    }
    t.close().unwrap();
}

fn temp_files(dir: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(".kubeha-upload."))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn assert_no_temp_files(dir: &Path) {
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn group_exists(name: &str) -> bool {
    fs::read_to_string("/etc/group")
        .is_ok_and(|g| g.lines().any(|l| l.split(':').next() == Some(name)))
}

fn user_name(uid: u32) -> String {
    id_name("/etc/passwd", uid)
}

fn group_name(gid: u32) -> String {
    id_name("/etc/group", gid)
}

fn id_name(file: &str, id: u32) -> String {
    let text = fs::read_to_string(file).unwrap();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == id.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| id.to_string())
}

/// `kubeha -v`: the watcher sees every command with its host, exit status and duration, a
/// sensitive one without its words, and a failed connection without an exit status.
#[test]
fn the_command_watcher_sees_each_command_and_never_a_sensitive_ones_words() {
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<(String, String, Option<i32>)>> = Mutex::new(Vec::new());
    fn record(e: &kubeha_transport::CommandEvent<'_>) {
        // Other tests of this process may run commands too: only this test's hosts count.
        if e.host.starts_with("watched-") {
            SEEN.lock()
                .unwrap()
                .push((e.host.to_string(), e.command.clone(), e.status));
        }
    }
    assert!(kubeha_transport::watch_commands(record));
    assert!(!kubeha_transport::watch_commands(record), "set once");

    let sshd = Sshd::start(Ipv4Addr::new(127, 0, 0, 110));
    let t = sshd.transport("watched-up");
    t.run(&Command::new(["true"])).unwrap();
    t.run(&Command::new(["sh", "-c", "exit 3"]).allow_failure())
        .unwrap();
    t.run(&Command::new(["echo", "s3cret-token"]).sensitive())
        .unwrap();
    // Nothing listens on this port: the connection fails, there is no exit status.
    let mut node = sshd.node("watched-down");
    node.ssh.port = free_port(Ipv4Addr::new(127, 0, 0, 110));
    let down = SshTransport::new(&node, &sshd.path("state-down"))
        .unwrap()
        .with_connect_timeout(Duration::from_secs(5));
    assert!(down.run(&Command::new(["true"])).is_err());

    let seen = SEEN.lock().unwrap().clone();
    let up: Vec<_> = seen.iter().filter(|(h, ..)| h == "watched-up").collect();
    // The first command may be preceded by the transport's own (host key, control socket).
    let last3: Vec<_> = up.iter().rev().take(3).rev().collect();
    assert_eq!(last3.len(), 3, "{seen:?}");
    assert!(
        last3[0].1.contains("true") && last3[0].2 == Some(0),
        "{seen:?}"
    );
    assert!(
        last3[1].1.contains("exit 3") && last3[1].2 == Some(3),
        "{seen:?}"
    );
    assert_eq!(last3[2].2, Some(0), "{seen:?}");
    assert!(
        !seen.iter().any(|(_, c, _)| c.contains("s3cret")),
        "a sensitive command's words were shown: {seen:?}"
    );
    let down: Vec<_> = seen.iter().filter(|(h, ..)| h == "watched-down").collect();
    assert_eq!(down.len(), 1, "{seen:?}");
    assert_eq!(down[0].2, None, "{seen:?}");
}
