//! LocalTransport: the same file and command semantics on this machine, no sshd needed.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

use kubeha_transport::{Command, FileFacts, LocalTransport, Transport, TransportError};

#[test]
fn local_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let t = LocalTransport::new("here");
    let p = dir.path().join("x/y/z.conf");
    let ps = p.display().to_string();
    assert_eq!(t.read(&ps).unwrap(), None);
    let owner = if rustix::process::geteuid().is_root() {
        "root:root".to_string()
    } else {
        current_owner(dir.path())
    };
    t.upload(&ps, b"hello\n", 0o600, &owner).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"hello\n");
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    assert_eq!(t.read(&ps).unwrap().as_deref(), Some(&b"hello\n"[..]));
    let facts = t
        .stat_files(&[ps.clone(), dir.path().join("absent").display().to_string()])
        .unwrap();
    assert_eq!(facts.len(), 1);
    assert!(facts[&ps].matches(b"hello\n", 0o600, &owner), "{facts:?}");
    assert_eq!(facts[&ps], FileFacts::of(b"hello\n", 0o600, &owner));
}

#[test]
fn local_commands_fail_and_time_out_like_remote_ones() {
    let t = LocalTransport::new("here");
    let out = t
        .run(&Command::new(["sh", "-c", "printf '%s' \"$0\"", "a b'c"]))
        .unwrap();
    assert_eq!(out.stdout_lossy(), "a b'c");
    match t
        .run(&Command::new(["sh", "-c", "echo bad >&2; exit 2"]))
        .unwrap_err()
    {
        TransportError::CommandFailed {
            host,
            status,
            stderr_tail,
            ..
        } => {
            assert_eq!(
                (host.as_str(), status, stderr_tail.map(|d| d.0)),
                ("here", 2, Some("bad".to_string()))
            );
        }
        other => panic!("{other:?}"),
    }
    // The command would run 30 s: returning before then proves it was cut off.
    let start = Instant::now();
    let err = t
        .run(&Command::new(["sleep", "30"]).timeout(Duration::from_millis(500)))
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Timeout { ref host, .. } if host == "here"),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(matches!(
        t.run(&Command::new(Vec::<String>::new())),
        Err(TransportError::Invalid { .. })
    ));
}

fn current_owner(dir: &std::path::Path) -> String {
    let out = std::process::Command::new("stat")
        .args(["-c", "%U:%G"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Many files in one command: every file lands whole, with its mode, in new directories too.
#[test]
fn upload_many_installs_every_file_in_one_command() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let t = LocalTransport::new("here");
    let root = dir.path().display().to_string();
    let big = vec![7u8; 300_000];
    let paths = [
        format!("{root}/a.conf"),
        format!("{root}/deep/er/b.key"),
        format!("{root}/empty"),
    ];
    let files = [
        kubeha_transport::UploadFile {
            path: &paths[0],
            content: b"one\n",
            mode: 0o644,
            owner: "root:root",
        },
        kubeha_transport::UploadFile {
            path: &paths[1],
            content: &big,
            mode: 0o600,
            owner: "root",
        },
        kubeha_transport::UploadFile {
            path: &paths[2],
            content: b"",
            mode: 0o640,
            owner: "root:root",
        },
    ];
    kubeha_transport::upload_many(&t, &files, std::time::Duration::from_secs(30)).unwrap();
    assert_eq!(std::fs::read(&paths[0]).unwrap(), b"one\n");
    assert_eq!(std::fs::read(&paths[1]).unwrap(), big);
    assert_eq!(std::fs::read(&paths[2]).unwrap(), b"");
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        (mode(&paths[0]), mode(&paths[1]), mode(&paths[2])),
        (0o644, 0o600, 0o640)
    );
    // Overwriting keeps the atomic semantics and leaves no temp files behind.
    let again = [kubeha_transport::UploadFile {
        path: &paths[0],
        content: b"two\n",
        mode: 0o644,
        owner: "root:root",
    }];
    kubeha_transport::upload_many(&t, &again, std::time::Duration::from_secs(30)).unwrap();
    assert_eq!(std::fs::read(&paths[0]).unwrap(), b"two\n");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".kubeha"))
        .collect();
    assert!(leftovers.is_empty());
}
