//! Lab end to end for `kubeha etcd snapshot restore` and `kubeha certs renew` (needs root, as
//! CI has). Own cluster names and /24s (198.18.40-49.x); only those addresses are used.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::labkit::Lab;

#[test]
fn restore_rebuilds_every_member_from_a_snapshot_and_up_keeps_it() {
    let t0 = Instant::now();
    let lab = Lab::up("e2e-restore", 40, 1, 0);
    assert_eq!(lab.json_ok(&["up"])["changed"], true);
    let c = lab.client();
    for i in 0..1000 {
        c.put(
            format!("/restore/{i:04}").as_bytes(),
            format!("v{i}").as_bytes(),
        )
        .expect("put");
    }
    let snap = lab.sb.path().join("snap.db");
    lab.ok(&["etcd", "snapshot", "save", snap.to_str().expect("path")]);
    // Without --yes and without a terminal: refused, nothing touched.
    let out = lab.kubeha(&["etcd", "snapshot", "restore", snap.to_str().expect("path")]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Disaster: every member's process and data are gone.
    for n in ["etcd-1", "etcd-2", "etcd-3"] {
        let o = lab.sh(n, "kill -9 $(cat /run/kubeha/etcd.service.pid) 2>/dev/null; rm -rf /var/lib/etcd; echo ok");
        assert!(o.status.success(), "{o:?}");
    }
    let t1 = Instant::now();
    let text = lab.ok(&[
        "etcd",
        "snapshot",
        "restore",
        "--yes",
        snap.to_str().expect("path"),
    ]);
    eprintln!("restore took {:.1?}: {text}", t1.elapsed());
    let kvs = lab.client().get_prefix(b"/restore/").expect("get");
    assert_eq!(kvs.len(), 1000);
    let st = lab.json_ok(&["status"]);
    assert_eq!(st["etcd"]["healthy"], 3, "{st:#}");
    assert_eq!(st["etcd"]["quorum"], true);
    // The rendered flags carry the new token: `up` changes nothing and keeps the data.
    let again = lab.json_ok(&["up"]);
    assert_eq!(again["changed"], false, "{again:#}");
    assert_eq!(
        lab.client().get_prefix(b"/restore/").expect("get").len(),
        1000
    );
    let env = lab.sh("etcd-2", "cat /etc/etcd/etcd.env");
    assert!(
        String::from_utf8_lossy(&env.stdout)
            .contains("initial-cluster-token=e2e-restore-etcd-restored-"),
        "{env:?}"
    );
    eprintln!("restore test total {:.1?}", t0.elapsed());
}

#[test]
fn certs_renew_all_rolls_etcd_without_losing_quorum_and_up_is_a_noop() {
    let t0 = Instant::now();
    let lab = Lab::up("e2e-renew", 41, 1, 0);
    assert_eq!(lab.json_ok(&["up"])["changed"], true);
    let serial = |n: &str| {
        let o = lab.sh(
            n,
            "openssl x509 -noout -serial -in /etc/kubernetes/pki/etcd/server.crt",
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let before: Vec<String> = ["etcd-1", "etcd-2", "etcd-3"]
        .iter()
        .map(|n| serial(n))
        .collect();
    let apiserver_before = lab
        .sh(
            "cp-1",
            "openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver-etcd-client.crt",
        )
        .stdout;
    let stop = Arc::new(AtomicBool::new(false));
    let (polls, lost) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let c = lab.client();
    let poller = {
        let (stop, polls, lost) = (stop.clone(), polls.clone(), lost.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                // A failure: no member answers healthy (etcd through a healthy member failed),
                // or fewer than a quorum do.
                let healthy = c.endpoints().iter().filter(|e| c.health(e).healthy).count();
                polls.fetch_add(1, Ordering::SeqCst);
                if healthy < 2 {
                    lost.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // etcd through the VIP (HAProxy on the LBs, `loadBalancer.etcdPort`) polled alongside:
    // the VIP must keep serving while members restart one by one.
    let (vip_polls, vip_lost) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let vip_poller = {
        let (stop, polls, lost) = (stop.clone(), vip_polls.clone(), vip_lost.clone());
        let p = lab.pki();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).expect("pki file");
        let tls = kubeha_etcd::TlsMaterial {
            ca_pem: read("etcd/ca.crt"),
            cert_pem: read("nodes/etcd-1/etcd/healthcheck-client.crt"),
            key_pem: read("nodes/etcd-1/etcd/healthcheck-client.key"),
        };
        let vip = format!(
            "https://{}:2379",
            lab.spec.load_balancer.as_ref().expect("lb").vip
        );
        let c = kubeha_etcd::Client::new(vec![vip.clone()], &tls, Duration::from_secs(2))
            .expect("client through the VIP");
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                polls.fetch_add(1, Ordering::SeqCst);
                if !c.health(&vip).healthy {
                    lost.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let t1 = Instant::now();
    let text = lab.ok(&["certs", "renew", "--all"]);
    let took = t1.elapsed();
    stop.store(true, Ordering::SeqCst);
    poller.join().expect("poller");
    vip_poller.join().expect("VIP poller");
    eprintln!(
        "through the VIP: {} polls, {} failed",
        vip_polls.load(Ordering::SeqCst),
        vip_lost.load(Ordering::SeqCst)
    );
    assert!(vip_polls.load(Ordering::SeqCst) > 5);
    assert_eq!(
        vip_lost.load(Ordering::SeqCst),
        0,
        "etcd through the VIP failed during the renewal"
    );
    eprintln!(
        "renew took {took:.1?}, {} polls: {text}",
        polls.load(Ordering::SeqCst)
    );
    assert!(polls.load(Ordering::SeqCst) > 5);
    assert_eq!(
        lost.load(Ordering::SeqCst),
        0,
        "etcd lost quorum during the renewal"
    );
    for (n, b) in ["etcd-1", "etcd-2", "etcd-3"].iter().zip(&before) {
        assert_ne!(&serial(n), b, "{n}: serial unchanged");
    }
    assert_ne!(
        lab.sh(
            "cp-1",
            "openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver-etcd-client.crt"
        )
        .stdout,
        apiserver_before
    );
    let again = lab.json_ok(&["up"]);
    assert_eq!(again["changed"], false, "{again:#}");
    let st = lab.json_ok(&["status"]);
    assert_eq!(st["etcd"]["healthy"], 3, "{st:#}");
    eprintln!("renew test total {:.1?}", t0.elapsed());
}
