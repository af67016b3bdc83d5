//! The lab supervisor inside a lab host (needs root): a unit written into the host's own
//! /etc/systemd/system is started, reported and stopped by `kubeha-lab-service` (the same
//! code as `kubeha service`), run through `exec_in` and over SSH.

mod common;

use std::{fs, path::Path};

use common::{LabGuard, exec, lab_spec, root_or_skip, ssh};
use kubeha_lab::Lab;

const UNIT: &str = "[Unit]\n\
Description=kubeha lab supervisor test\n\
\n\
[Service]\n\
Environment=\"SLEEP_SECS=300\" \"GREETING=hello lab\"\n\
ExecStart=/bin/sleep $SLEEP_SECS\n";

#[test]
fn supervisor_starts_and_stops_a_unit_inside_a_host() {
    if !root_or_skip("supervisor") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_kubeha-lab-service");
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = LabGuard::new(lab_spec("labtest-supervisor", 203, &["svc"], tmp.path()));
    Lab::up(&lab.spec, &lab.opts).expect("lab up");
    let ns = lab.ns("svc");
    let unit_path = "/etc/systemd/system/labtest-sleep.service";
    let write = format!("mkdir -p /etc/systemd/system && cat > {unit_path} <<'UNIT'\n{UNIT}UNIT\n");
    assert_eq!(exec(&ns, &["sh", "-c", &write]).0, 0);
    assert!(
        !Path::new(unit_path).exists(),
        "the unit is the host's, not the machine's"
    );

    let (code, out, err) = exec(&ns, &[bin, "status", "labtest-sleep.service"]);
    assert_eq!(code, 3, "inactive before start: {out}{err}");

    let (code, out, err) = exec(&ns, &[bin, "start", "labtest-sleep.service"]);
    assert_eq!(code, 0, "start: {out}{err}");
    let pid: u32 = out
        .split("pid ")
        .nth(1)
        .and_then(|s| s.trim_end_matches([')', '\n']).parse().ok())
        .expect("pid in output");
    assert_eq!(
        fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline"),
        b"/bin/sleep\x00300\x00"
    );
    let environ = fs::read(format!("/proc/{pid}/environ")).expect("environ");
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"GREETING=hello lab"),
        "Environment= reaches the service"
    );
    assert!(
        kubeha_lab::host_pids(&ns).contains(&pid),
        "the service runs inside the host"
    );
    assert_eq!(
        exec(&ns, &["cat", "/run/kubeha/labtest-sleep.service.pid"])
            .1
            .trim(),
        pid.to_string()
    );

    // Over SSH, as kubeha drives it.
    let known = tmp.path().join("known_hosts");
    let out = ssh(
        &lab.key(),
        &known,
        "198.19.203.11",
        &format!("{bin} status labtest-sleep.service"),
    );
    assert!(
        out.status.success(),
        "status over ssh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("active (pid {pid})")));

    let (code, out, err) = exec(&ns, &[bin, "stop", "labtest-sleep.service"]);
    assert_eq!(code, 0, "stop: {out}{err}");
    let state = fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    assert!(
        state
            .as_deref()
            .is_none_or(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z'))),
        "sleep is gone: {state:?}"
    );
    assert_eq!(
        exec(&ns, &[bin, "status", "labtest-sleep.service"]).0,
        3,
        "inactive after stop"
    );
    assert_eq!(
        exec(&ns, &[bin, "status", "no-such.service"]).0,
        2,
        "unknown unit"
    );
}
