//! Test hosts on this machine. A host is a network namespace joined to the
//! root namespace by a veth pair (root end `10.231.N.1/24`, the host's
//! `eth0` `10.231.N.2/24`, no default route: it reaches nothing but the root
//! end) with a dockerd of its own (data root, exec root, pidfile and socket
//! in the host's directory; its `docker0` lives in the namespace, on
//! `10.232.N.1/24`, so the root daemon's bridge is untouched).
//!
//! Slot N is claimed by creating `/tmp/berth-e2e-hosts/slot-N` (mkdir is
//! atomic), so test processes running at once never share a name or a
//! subnet. Everything a slot holds is taken down when its [`Host`] drops,
//! also on a panic; slots whose owning process is gone (a run that was
//! killed) are swept before the first slot is claimed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Where slots (and the servers' directories) are kept.
pub const ROOT_DIR: &str = "/tmp/berth-e2e-hosts";
/// Highest slot number: the subnets are 10.231.1.0/24 to 10.231.200.0/24.
const MAX_SLOT: u32 = 200;

/// The multi-host tests should run: they do unless `BERTH_SKIP_DOCKER=1`
/// (as every Docker test). When they should and this process cannot make
/// network namespaces, this panics saying so: they are never skipped
/// silently.
pub fn hosts_ready() -> bool {
    if !crate::harness::docker_ready() {
        return false;
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "the multi-host tests make network namespaces (ip netns) and start dockerd: \
         they need root (.ci/run runs as root); set BERTH_SKIP_DOCKER=1 to skip them on purpose"
    );
    for tool in ["ip", "nsenter", "dockerd", "docker"] {
        assert!(
            try_run("sh", &["-c", &format!("command -v {tool}")]).is_ok(),
            "the multi-host tests need `{tool}` (iproute2, util-linux, docker.io; .ci/run installs them)"
        );
    }
    true
}

/// Polls `f` every 200 ms until it returns `Some`, for at most `limit`;
/// then panics with `what` and the last value `describe` gives.
pub fn until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `program args`; its stdout, or its stderr as the error.
pub fn try_run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// Runs `program args`, panicking with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    try_run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// One test host: namespace, veth pair, dockerd, and the process the test
/// runs in it (a `berth agent`).
#[derive(Debug)]
pub struct Host {
    pub n: u32,
    pub dir: PathBuf,
    /// The namespace's name, `berth-e2e-N`.
    pub netns: String,
    /// The veth's root end, `be2e-N`; setting it down cuts the host off.
    pub veth: String,
    /// The host's address, inside its namespace.
    pub addr: String,
    /// The root end's address: how the host reaches the root namespace.
    pub gateway: String,
    dockerd: Option<Child>,
    agent: Option<Child>,
}

impl Host {
    /// A host with its network and a dockerd that answers and holds `images`
    /// (copied from the root daemon).
    pub fn start(images: &[&str]) -> Host {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep);
        let n = claim_slot();
        let mut host = Host {
            n,
            dir: slot_dir(n),
            netns: netns_name(n),
            veth: format!("be2e-{n}"),
            addr: format!("10.231.{n}.2"),
            gateway: format!("10.231.{n}.1"),
            dockerd: None,
            agent: None,
        };
        host.make_network();
        host.start_dockerd();
        for image in images {
            host.load_image(image);
        }
        host
    }

    fn make_network(&self) {
        let (ns, veth) = (self.netns.as_str(), self.veth.as_str());
        if let Err(e) = try_run("ip", &["netns", "add", ns]) {
            panic!(
                "cannot make a network namespace for a test host ({e}); \
                 the multi-host tests need root and iproute2"
            );
        }
        run(
            "ip",
            &[
                "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        );
        run(
            "ip",
            &["addr", "add", &format!("{}/24", self.gateway), "dev", veth],
        );
        run("ip", &["link", "set", veth, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", ns];
            all.extend_from_slice(args);
            run("ip", &all);
        };
        inside(&["addr", "add", &format!("{}/24", self.addr), "dev", "eth0"]);
        inside(&["link", "set", "eth0", "up"]);
        inside(&["link", "set", "lo", "up"]);
    }

    /// The socket of this host's dockerd, as a `DOCKER_HOST` / `-H` value.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    fn start_dockerd(&mut self) {
        let d = &self.dir;
        let log = std::fs::File::create(d.join("dockerd.log")).expect("dockerd log");
        // nsenter, not `ip netns exec`: the latter remounts /sys, and dockerd
        // then finds no devices cgroup.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("dockerd")
            .arg("--data-root")
            .arg(d.join("docker-data"))
            .arg("--exec-root")
            .arg(d.join("docker-exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(self.docker_host())
            .args(["--bip", &format!("10.232.{}.1/24", self.n)])
            // Its containers in a cgroup of their own, found by the sweep.
            .args(["--cgroup-parent", &format!("/{}", self.netns)])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        self.dockerd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.try_docker(&["version"]).is_err() {
            if let Some(Some(status)) = self.dockerd.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "dockerd of host {} exited ({status}): {}",
                    self.n,
                    self.log_tail("dockerd.log")
                );
            }
            assert!(
                Instant::now() < deadline,
                "dockerd of host {} never answered: {}",
                self.n,
                self.log_tail("dockerd.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `kill -9` of dockerd; it is started again (same data, same socket)
    /// after `down`, and answers when this returns.
    pub fn kill_and_restart_dockerd(&mut self, down: Duration) {
        if let Some(mut dockerd) = self.dockerd.take() {
            let _ = dockerd.kill();
            let _ = dockerd.wait();
        }
        self.stop_lingering_containerd();
        std::thread::sleep(down);
        self.start_dockerd();
    }

    /// Stops the containerd the killed dockerd started, if it lingers (TERM,
    /// then KILL after 10 s), and removes its pidfile: a dockerd started
    /// while that pidfile names a process, even a dead one its new parent
    /// has not reaped yet, waits for it in vain and exits. Its shims, and
    /// so the containers, are left to the next dockerd.
    fn stop_lingering_containerd(&self) {
        let pidfile = self.dir.join("docker-exec/containerd/containerd.pid");
        if let Some(pid) = pid_in(&pidfile) {
            stop_pid(pid, Duration::from_secs(10));
        }
        let _ = std::fs::remove_file(&pidfile);
    }

    /// `docker save IMAGE` from the root daemon into this host's dockerd.
    fn load_image(&self, image: &str) {
        let mut save = Command::new("docker")
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker save starts");
        let load = Command::new("docker")
            .args(["-H", &self.docker_host(), "load", "-q"])
            .stdin(save.stdout.take().expect("save's stdout"))
            .output()
            .expect("docker load runs");
        let saved = save.wait().expect("docker save ends");
        assert!(
            saved.success() && load.status.success(),
            "loading {image} into host {}: {}",
            self.n,
            String::from_utf8_lossy(&load.stderr)
        );
    }

    /// `docker -H <this host's socket> ARGS`.
    pub fn try_docker(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-H".to_owned(), self.docker_host()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        try_run("docker", &all)
    }

    pub fn docker(&self, args: &[&str]) -> String {
        self.try_docker(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The last lines of a log in the host's directory, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Starts `program args` inside the namespace as the host's agent
    /// process, its output in `agent.log` (appended across restarts).
    pub fn start_agent(&mut self, program: &Path, args: &[String], env: &[(&str, &str)]) {
        assert!(self.agent.is_none(), "host {} runs an agent", self.n);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .expect("agent log");
        let _ = writeln!(log, "--- start: {args:?}");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the agent starts");
        std::fs::write(self.dir.join("agent.pid"), child.id().to_string()).expect("agent.pid");
        self.agent = Some(child);
    }

    /// `kill -9` of the agent (nothing of it runs after this returns).
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("agent.pid"));
    }

    /// Cuts the host off (`ip link set be2e-N down`) or restores its link.
    pub fn set_link(&self, up: bool) {
        run(
            "ip",
            &["link", "set", &self.veth, if up { "up" } else { "down" }],
        );
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill_agent();
        if let Some(mut dockerd) = self.dockerd.take() {
            remove_containers(&self.docker_host());
            signal(dockerd.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(15);
            while dockerd.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = dockerd.kill();
            let _ = dockerd.wait();
        }
        teardown(self.n);
    }
}

fn slot_dir(n: u32) -> PathBuf {
    Path::new(ROOT_DIR).join(format!("slot-{n}"))
}

fn netns_name(n: u32) -> String {
    format!("berth-e2e-{n}")
}

/// Claims the lowest free slot for this process.
fn claim_slot() -> u32 {
    std::fs::create_dir_all(ROOT_DIR).expect("the hosts' directory");
    for n in 1..=MAX_SLOT {
        match std::fs::create_dir(slot_dir(n)) {
            Ok(()) => {
                claim(&slot_dir(n));
                return n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("claiming {}: {e}", slot_dir(n).display()),
        }
    }
    panic!("all {MAX_SLOT} test host slots in {ROOT_DIR} are taken");
}

/// Marks `dir` as this process's.
pub fn claim(dir: &Path) {
    std::fs::write(dir.join("owner"), std::process::id().to_string()).expect("owner file");
}

/// Whether the process that claimed `dir` is gone. A directory without an
/// owner yet is given a minute (its owner is between mkdir and write).
pub fn abandoned(dir: &Path) -> bool {
    match std::fs::read_to_string(dir.join("owner")) {
        Ok(pid) => pid.trim().parse().map(|p: u32| !alive(p)).unwrap_or(true),
        Err(_) => std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(60)),
    }
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

pub fn signal(pid: u32, sig: &str) {
    let _ = try_run("kill", &["-s", sig, &pid.to_string()]);
}

/// The pid in `file`, if it names a live process.
pub fn pid_in(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|p| alive(*p))
}

/// TERM, then KILL after `grace`, and wait until `pid` is gone.
pub fn stop_pid(pid: u32, grace: Duration) {
    signal(pid, "TERM");
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        signal(pid, "KILL");
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Force-removes every container of the dockerd at `docker_host`, if it answers.
fn remove_containers(docker_host: &str) {
    let Ok(ids) = try_run("timeout", &["20", "docker", "-H", docker_host, "ps", "-aq"]) else {
        return;
    };
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["60", "docker", "-H", docker_host, "rm", "-f", "-v"];
        args.extend(ids);
        if let Err(e) = try_run("timeout", &args) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Takes down whatever slot `n` still holds, whoever made it: the agent, the
/// containers, dockerd, every other process in the namespace or the
/// containers' cgroup, mounts, the veth pair, the namespace, the directory.
/// Idempotent; errors are reported, not raised (it runs in Drop).
fn teardown(n: u32) {
    let dir = slot_dir(n);
    let ns = netns_name(n);
    if let Some(pid) = pid_in(&dir.join("agent.pid")) {
        signal(pid, "KILL");
    }
    remove_containers(&format!("unix://{}", dir.join("docker.sock").display()));
    if let Some(pid) = pid_in(&dir.join("docker.pid")) {
        stop_pid(pid, Duration::from_secs(15));
    }
    let mut left: Vec<u32> = try_run("ip", &["netns", "pids", &ns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    left.extend(cgroup_pids(&ns));
    for pid in left {
        signal(pid, "KILL");
    }
    unmount_under(&dir);
    let _ = try_run("ip", &["link", "del", &format!("be2e-{n}")]);
    let _ = try_run("ip", &["netns", "del", &ns]);
    remove_cgroups(&ns);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        eprintln!("cleanup: removing {}: {e}", dir.display());
    }
}

/// The cgroup directories named `name` (dockerd's `--cgroup-parent`), under
/// every controller of cgroup v1 or at the top of cgroup v2.
fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(name)];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(entries.flatten().map(|e| e.path().join(name)));
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// Every process in the cgroups named `name`, at any depth.
fn cgroup_pids(name: &str) -> Vec<u32> {
    fn walk(dir: &Path, out: &mut Vec<u32>) {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(
                procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    for d in cgroup_dirs(name) {
        walk(&d, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Removes the (now empty) cgroups named `name`, deepest first.
fn remove_cgroups(name: &str) {
    fn remove(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for d in cgroup_dirs(name) {
        remove(&d);
    }
}

/// Lazily unmounts every mount at or under `dir` (a dockerd killed
/// without its shutdown leaves its overlay and netns mounts), deepest first.
fn unmount_under(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = try_run("umount", &["-l", &p]);
    }
}

/// Takes down what runs killed before they could clean up left behind:
/// slots whose owner is gone, namespaces named like a slot without one, and
/// servers' directories whose owner is gone (see `fleet`).
fn sweep() {
    let Ok(entries) = std::fs::read_dir(ROOT_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if !abandoned(&path) {
            continue;
        }
        if let Some(n) = name.strip_prefix("slot-").and_then(|n| n.parse().ok()) {
            eprintln!("sweeping test host slot {n}, left by an earlier run");
            teardown(n);
        } else if name.starts_with("server-") {
            eprintln!("sweeping {name}, left by an earlier run");
            if let Some(pid) = pid_in(&path.join("server.pid")) {
                stop_pid(pid, Duration::from_secs(5));
            }
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    for ns in try_run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
    {
        let name = ns.split_whitespace().next().unwrap_or_default();
        if let Some(n) = name.strip_prefix("berth-e2e-").and_then(|n| n.parse().ok())
            && !slot_dir(n).exists()
        {
            teardown(n);
        }
    }
}
