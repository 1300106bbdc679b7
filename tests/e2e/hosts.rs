//! Several hosts on one machine: each test host is a network namespace with
//! a veth pair to the root namespace, a dockerd of its own and a `berth
//! agent`; `berth server` runs in the root namespace (`lab` makes the hosts,
//! `fleet` runs berth on them). They need root: where namespaces cannot be
//! made the tests fail saying so; `BERTH_SKIP_DOCKER=1` skips them as it
//! does every Docker test.

use std::io::Read;
use std::time::Duration;

use berth_agent::testing::TEST_IMAGE;

mod failures;
mod fleet;
pub(crate) mod lab;
mod restarts;
mod story;

use lab::{Host, hosts_ready};

/// The harness itself: two hosts, each dockerd answering on its own socket
/// and running a container of the test image, each reachable from the root
/// namespace at its own address, and gone without a trace once dropped.
#[test]
fn two_test_hosts_each_run_containers_and_are_reachable() {
    if !hosts_ready() {
        return;
    }
    let hosts = [Host::start(&[TEST_IMAGE]), Host::start(&[TEST_IMAGE])];
    let names: Vec<(String, String, std::path::PathBuf)> = hosts
        .iter()
        .map(|h| (h.netns.clone(), h.veth.clone(), h.dir.clone()))
        .collect();
    assert_ne!(hosts[0].addr, hosts[1].addr);
    for (i, h) in hosts.iter().enumerate() {
        // A published port: what the root namespace reaches is the
        // container behind the host's own dockerd.
        let reply = format!("from-host-{i}");
        h.docker(&[
            "run",
            "-d",
            "-p",
            "18080:8080",
            "--label",
            "berth.e2e=hosts",
            TEST_IMAGE,
            "sh",
            "-c",
            &format!("while true; do echo {reply} | nc -l -p 8080; done"),
        ]);
        let ps = h.docker(&["ps", "-q", "--filter", "label=berth.e2e=hosts"]);
        assert_eq!(ps.lines().count(), 1, "host {i}: {ps}");
        let got = lab::until(
            Duration::from_secs(20),
            &format!("host {i} at {}:18080", h.addr),
            || read_from(&format!("{}:18080", h.addr)).filter(|r| r.contains(&reply)),
        );
        assert_eq!(got.trim(), reply);
    }
    // The link cut, the host is unreachable; restored, reachable again.
    hosts[0].set_link(false);
    let target = format!("{}:18080", hosts[0].addr);
    assert_eq!(read_from(&target), None, "reached a cut-off host");
    hosts[0].set_link(true);
    lab::until(Duration::from_secs(20), "host 0 reachable again", || {
        read_from(&target).filter(|r| r.contains("from-host-0"))
    });
    // Each daemon is its own: neither sees the other's container, nor does
    // the root daemon see either.
    let root = lab::run("docker", &["ps", "-q", "--filter", "label=berth.e2e=hosts"]);
    assert!(root.trim().is_empty(), "the root daemon runs {root}");
    drop(hosts);
    let netns = lab::run("ip", &["netns", "list"]);
    let links = lab::run("ip", &["-o", "link"]);
    for (ns, veth, dir) in names {
        assert!(!netns.contains(&ns), "{ns} left behind: {netns}");
        assert!(!links.contains(&format!("{veth}@")), "{veth} left behind");
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

/// What a TCP server at `addr` says before it closes, if it answers.
fn read_from(addr: &str) -> Option<String> {
    let addr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
