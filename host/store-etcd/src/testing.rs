//! etcd members for tests: started on free loopback ports with a temporary
//! data directory, killed when dropped. Tests that need etcd fail when the
//! `etcd` binary is missing, unless `BERTH_SKIP_ETCD=1` is set on purpose
//! (then [`skip`] says so and they return early); `.ci/run` installs
//! Debian's `etcd-server` and never sets it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::EtcdUrl;

/// Whether the etcd tests are skipped on purpose (`BERTH_SKIP_ETCD=1`).
pub fn skip() -> bool {
    let skip = std::env::var("BERTH_SKIP_ETCD").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("BERTH_SKIP_ETCD=1: skipping a test that needs etcd");
    }
    skip
}

/// One etcd member process.
#[derive(Debug)]
pub struct Member {
    child: Option<Child>,
    /// The member's client address, `127.0.0.1:PORT`.
    pub client: String,
    name: String,
    peer: String,
    _dir: tempfile::TempDir,
}

impl Member {
    /// Kills the member (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of etcd members on loopback.
#[derive(Debug)]
pub struct Cluster {
    /// The members, in the order started.
    pub members: Vec<Member>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Starts `n` members with etcd's default limits and waits until every
    /// one answers its health check.
    pub fn start(n: usize) -> Result<Cluster, String> {
        Self::start_with(n, &[])
    }

    /// [`Cluster::start`] with extra flags for every member.
    pub fn start_with(n: usize, flags: &[&str]) -> Result<Cluster, String> {
        let mut specs = Vec::new();
        for i in 0..n {
            let client = free_port().map_err(|e| e.to_string())?;
            let peer = free_port().map_err(|e| e.to_string())?;
            specs.push((
                format!("m{i}"),
                format!("127.0.0.1:{client}"),
                format!("127.0.0.1:{peer}"),
            ));
        }
        let initial: Vec<String> = specs
            .iter()
            .map(|(name, _, peer)| format!("{name}=http://{peer}"))
            .collect();
        let initial = initial.join(",");
        let token = format!("berth-test-{}", std::process::id());
        let mut members = Vec::new();
        for (name, client, peer) in specs {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let child = Command::new("etcd")
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.path())
                .args(["--listen-client-urls", &format!("http://{client}")])
                .args(["--advertise-client-urls", &format!("http://{client}")])
                .args(["--listen-peer-urls", &format!("http://{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(["--logger", "zap", "--log-level", "error"])
                .args(flags)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| {
                    format!(
                        "cannot start etcd ({e}): install Debian's etcd-server (.ci/run does), \
                         or set BERTH_SKIP_ETCD=1 to skip the etcd tests on purpose"
                    )
                })?;
            members.push(Member {
                child: Some(child),
                client,
                name,
                peer,
                _dir: dir,
            });
        }
        let cluster = Cluster { members };
        for m in &cluster.members {
            wait_healthy(&m.client, Duration::from_secs(30))?;
        }
        Ok(cluster)
    }

    /// `etcd://` URL of every member, with `prefix`.
    pub fn url(&self, prefix: &str) -> EtcdUrl {
        EtcdUrl {
            endpoints: self.members.iter().map(|m| m.client.clone()).collect(),
            prefix: prefix.to_owned(),
        }
    }

    /// The member names and peer URLs (for logs).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={} (peer {})", m.name, m.client, m.peer))
            .collect();
        parts.join(", ")
    }
}

/// Waits until the member at `addr` says `"health":"true"`.
fn wait_healthy(addr: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match health(addr) {
            Ok(body) if body.contains("\"health\":\"true\"") => return Ok(()),
            Ok(body) => last = body,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "etcd member {addr} not healthy within {within:?}: {last}"
    ))
}

fn health(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
