//! Work with one owner through etcd leases, on a three-member cluster: a
//! second server takes the work over when the first one's member is
//! frozen (the first is cut off from etcd), and at no sampled moment do
//! both own it. Without the `etcd` binary this fails unless
//! `BERTH_SKIP_ETCD=1` is set on purpose.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_store_etcd::lease::Ownership;
use berth_store_etcd::testing::{Cluster, skip};
use berth_store_etcd::{EtcdBackend, EtcdUrl};

/// A backend talking to member `i` alone.
fn backend_on(cluster: &Cluster, i: usize) -> EtcdBackend {
    let url = EtcdUrl {
        endpoints: vec![cluster.members[i].client.clone()],
        prefix: "/berth-lease".into(),
    };
    EtcdBackend::open(&url).expect("etcd store opens")
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn a_server_cut_off_from_etcd_stops_owning_before_another_starts() {
    if skip() {
        return;
    }
    let cluster = Cluster::start(3).expect("etcd");
    let ttl = Duration::from_secs(3);
    let (b0, b1) = (backend_on(&cluster, 0), backend_on(&cluster, 1));
    let first = Ownership::start(&b0, "first", ttl);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !first.owns("work") {
        assert!(
            Instant::now() < deadline,
            "the first server never owned the work"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = Ownership::start(&b1, "second", ttl);
    // Both campaign; the first holds it.
    for _ in 0..40 {
        assert!(first.owns("work") && !second.owns("work"));
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first server's member freezes: the server is cut off from etcd.
    let pid = cluster.members[0].pid().expect("member 0 runs");
    signal(pid, "-STOP");
    let cut = Instant::now();
    let mut first_stopped = None;
    let mut second_started = None;
    while cut.elapsed() < Duration::from_secs(30) && second_started.is_none() {
        let (a, b) = (first.owns("work"), second.owns("work"));
        assert!(
            !(a && b),
            "two owners at once, {:?} after the cut",
            cut.elapsed()
        );
        if !a && first_stopped.is_none() {
            first_stopped = Some(cut.elapsed());
        }
        if b {
            second_started = Some(cut.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(pid, "-CONT");
    let (stopped, started) = (
        first_stopped.expect("the cut-off server stopped owning"),
        second_started.expect("another server took the work over"),
    );
    assert!(
        stopped < started,
        "stopped at {stopped:?}, taken at {started:?}"
    );
    assert!(
        started < ttl * 4,
        "taken over {started:?} after the cut, TTL {ttl:?}"
    );
    eprintln!("cut-off owner stopped after {stopped:?}; work taken over after {started:?}");
}
