//! The binary with Docker: `berth up` without a daemon, and `berth logs`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use berth_agent::testing::{CleanupGuard, TEST_IMAGE};

use super::harness::{Up, docker_ready};
use super::{berth, berth_bin, text};

#[test]
fn up_without_docker_says_so_and_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let mut child = Command::new(berth_bin())
        .args(["up", "--data-dir", data, "--listen", "127.0.0.1:0"])
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no-docker.sock", dir.path().display()),
        )
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth up starts");
    // Signals are handled once the "running" line is out.
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = out
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("running"));
    assert!(ready.is_some(), "berth up never said it runs");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let said = rx.recv_timeout(Duration::from_secs(30));
    let still_running = child.try_wait().expect("wait").is_none();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    let said = said.expect("berth up said nothing about Docker");
    assert!(said.contains("no Docker daemon answers"), "{said}");
    assert!(still_running, "berth up must keep running without Docker");
    assert!(status.success(), "berth up exited with {status}");
}

#[test]
/// `berth logs --docker`: straight from Docker, without a `berth up`.
fn logs_prints_a_tasks_output() {
    if !docker_ready() {
        return;
    }
    let id = format!("e2e{}", std::process::id());
    let arn = format!("arn:aws:ecs:local:000000000000:task/default/{id}");
    let _guard = CleanupGuard::new("berth.task-arn", arn.clone());
    let out = Command::new("docker")
        .args([
            "run",
            "-d",
            "--label",
            &format!("berth.task-arn={arn}"),
            "--label",
            "berth.container-name=app",
            TEST_IMAGE,
        ])
        .args(["sh", "-c", "echo line-one; echo line-two >&2"])
        .output()
        .expect("docker runs");
    assert!(out.status.success(), "docker run: {}", text(&out.stderr));
    let cid = text(&out.stdout).trim().to_owned();
    let _ = Command::new("docker").args(["wait", &cid]).output();
    let by_id = berth(&["logs", "--docker", &id]);
    assert!(by_id.status.success(), "{}", text(&by_id.stderr));
    let shown = text(&by_id.stdout);
    assert!(
        shown.contains("line-one") && shown.contains("line-two"),
        "{shown}"
    );
    let by_arn = berth(&["logs", "--docker", &arn, "--container", "app"]);
    assert!(
        text(&by_arn.stdout).contains("line-one"),
        "{}",
        text(&by_arn.stderr)
    );
    let missing = berth(&["logs", "--docker", &arn, "--container", "nope"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("no container named nope"),
        "{}",
        text(&missing.stderr)
    );
    let unknown = berth(&["logs", "--docker", "no-such-task"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no-such-task"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn run_task_through_the_api_runs_real_containers() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    // Containers go first (the guard drops last-declared first).
    let instances = up.aws(&["list-container-instances"]);
    let instance = instances["containerInstanceArns"][0]
        .as_str()
        .expect("the agent registered this host")
        .to_owned();
    let _guard = CleanupGuard::new("berth.container-instance", instance.clone());
    let ci = &up.aws(&[
        "describe-container-instances",
        "--container-instances",
        &instance,
    ])["containerInstances"][0];
    assert_eq!(ci["agentConnected"], true, "{ci}");
    assert!(
        ci["attributes"]
            .as_array()
            .expect("attributes")
            .iter()
            .any(|a| a["name"] == "ecs.availability-zone" && a["value"] == "e2e-zone"),
        "{ci}"
    );

    let family = format!("e2e-docker-{}", std::process::id());
    let defs = serde_json::json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16,
        "command": ["sh", "-c", "echo started-$GREETING; trap 'exit 0' TERM; while true; do sleep 0.2; done"],
        "environment": [{"name": "GREETING", "value": "e2e"}],
        "portMappings": [{"containerPort": 8080, "hostPort": 0}] }]);
    up.aws(&[
        "register-task-definition",
        "--family",
        &family,
        "--container-definitions",
        &defs.to_string(),
    ]);
    let run = up.aws(&["run-task", "--task-definition", &family, "--count", "2"]);
    let arns: Vec<String> = run["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["taskArn"].as_str().expect("arn").to_owned())
        .collect();
    assert_eq!(arns.len(), 2, "{run}");
    for arn in &arns {
        let t = up.until(arn, "RUNNING");
        let b = &t["containers"][0]["networkBindings"][0];
        assert!(b["hostPort"].as_u64().is_some_and(|p| p > 0), "{t}");
        let out = Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=berth.task-arn={arn}"),
            ])
            .output()
            .expect("docker ps");
        assert_eq!(
            text(&out.stdout).lines().count(),
            1,
            "one running container for {arn}"
        );
    }
    let id = arns[0].rsplit('/').next().expect("id");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Through the API of this `berth up` (GetTaskLogs).
        let logs = Command::new(super::berth_bin())
            .args(["logs", id])
            .env("BERTH_ENDPOINT", format!("http://{}", up.addr))
            .env("AWS_ACCESS_KEY_ID", super::harness::KEY)
            .env("AWS_SECRET_ACCESS_KEY", super::harness::SECRET)
            .env("BERTH_LOG", "warn")
            .output()
            .expect("berth runs");
        if text(&logs.stdout).contains("started-e2e") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "logs: {} {}",
            text(&logs.stdout),
            text(&logs.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    up.aws(&["stop-task", "--task", &arns[0]]);
    let t = up.until(&arns[0], "STOPPED");
    assert_eq!(t["containers"][0]["exitCode"], 0, "stopped by SIGTERM: {t}");
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.task-arn={}", arns[0]),
        ])
        .output()
        .expect("docker ps");
    assert!(
        text(&out.stdout).trim().is_empty(),
        "the stopped task's container is removed"
    );
    let ci = &up.aws(&[
        "describe-container-instances",
        "--container-instances",
        &instance,
    ])["containerInstances"][0];
    assert_eq!(ci["runningTasksCount"], 1, "{ci}");
    up.aws(&["stop-task", "--task", &arns[1]]);
    up.until(&arns[1], "STOPPED");
}

#[test]
fn without_docker_the_instance_shows_the_agent_disconnected() {
    let up = Up::start_with(&[("DOCKER_HOST", "unix:///nonexistent/berth-e2e-docker.sock")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // The agent writes the instance record once it has tried Docker.
        let list = up.aws(&["list-container-instances"]);
        if let Some(arn) = list["containerInstanceArns"][0].as_str() {
            let ci = &up.aws(&["describe-container-instances", "--container-instances", arn])["containerInstances"]
                [0];
            if !ci.is_null() {
                assert_eq!(ci["agentConnected"], false, "{ci}");
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no container instance was recorded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A stand-in for the Docker daemon's socket that the test can take away
/// and give back: it forwards each connection to the real daemon. Stopping it
/// is, to the agent, the daemon stopping (connections cut, socket gone);
/// restarting dockerd itself would disturb the other tests sharing it.
struct DockerOutage {
    path: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::os::unix::net::UnixStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl DockerOutage {
    const DAEMON: &'static str = "/var/run/docker.sock";

    fn serve(path: &std::path::Path) -> DockerOutage {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::Ordering;
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the proxy socket");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::<UnixStream>::new()));
        let (stop2, open2) = (stop.clone(), open.clone());
        let accept = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(e) => panic!("proxy accept: {e}"),
                };
                let _ = client.set_nonblocking(false);
                let Ok(daemon) = UnixStream::connect(DockerOutage::DAEMON) else {
                    continue;
                };
                let mut registry = open2.lock().expect("lock");
                for s in [&client, &daemon] {
                    registry.push(s.try_clone().expect("clone"));
                }
                drop(registry);
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        daemon.try_clone().expect("clone"),
                    ),
                    (daemon, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        DockerOutage {
            path: path.to_owned(),
            stop,
            open,
            accept: Some(accept),
        }
    }

    /// The daemon "stops": no new connections, every open one cut.
    fn cut(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for s in self.open.lock().expect("lock").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for DockerOutage {
    fn drop(&mut self) {
        self.cut();
    }
}

impl Up {
    fn until_connected(&self, arn: &str, connected: bool) -> serde_json::Value {
        // The agent retries with back-off up to 2 minutes; an outage of a
        // few seconds is noticed within its next attempt.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let ci = self.instance(arn);
            if ci["agentConnected"] == connected {
                return ci;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "agentConnected never became {connected}: {ci}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_docker_outage_is_reported_and_converges_when_docker_returns() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("docker.sock");
    let mut outage = DockerOutage::serve(&sock);
    let up = Up::start_with(&[("DOCKER_HOST", &format!("unix://{}", sock.display()))]);
    let instance = up.until_any_instance();
    let _guard = CleanupGuard::new("berth.container-instance", instance.clone());
    up.until_connected(&instance, true);

    let family = format!("e2e-outage-{}", std::process::id());
    let defs = serde_json::json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16, "stopTimeout": 2,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"] }]);
    up.aws(&[
        "register-task-definition",
        "--family",
        &family,
        "--container-definitions",
        &defs.to_string(),
    ]);
    let run = up.aws(&["run-task", "--task-definition", &family]);
    let arn = run["tasks"][0]["taskArn"]
        .as_str()
        .expect("a task")
        .to_owned();
    up.until(&arn, "RUNNING");

    // Docker goes away: the instance says so, and the task is not reported
    // stopped, since its container (on the real daemon) still runs.
    outage.cut();
    up.until_connected(&instance, false);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        up.task(&arn)["lastStatus"],
        "RUNNING",
        "a task must not be reported stopped while Docker is unreachable"
    );
    let ps = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=berth.task-arn={arn}"),
        ])
        .output()
        .expect("docker ps");
    assert_eq!(
        text(&ps.stdout).lines().count(),
        1,
        "the container kept running"
    );

    // A stop asked for during the outage is carried out once Docker is back.
    up.aws(&["stop-task", "--task", &arn]);
    let _outage = DockerOutage::serve(&sock);
    up.until_connected(&instance, true);
    let t = up.until(&arn, "STOPPED");
    assert_eq!(
        t["containers"][0]["exitCode"], 0,
        "stopped by SIGTERM once Docker returned: {t}"
    );
    let ps = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.task-arn={arn}"),
        ])
        .output()
        .expect("docker ps");
    assert!(
        text(&ps.stdout).trim().is_empty(),
        "the stopped task's container is removed"
    );
}

/// Liveness through the binary. While the agent converges, its manifest
/// reads keep it heard: its task runs on well past `--agent-timeout` and
/// `--lost-task-grace`. With Docker gone the agent only heartbeats between
/// its reconnection attempts, seconds apart, longer than a 2 s timeout: the
/// instance is lost, and after the grace its task is STOPPED saying the
/// host was lost (the container, which the agent cannot reach, still runs).
/// When the agent returns, the task stays STOPPED and its container is
/// removed, not restarted.
#[test]
fn a_silent_agents_task_is_stopped_after_the_grace_and_its_container_removed_on_return() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("docker.sock");
    let mut outage = DockerOutage::serve(&sock);
    let up = Up::start_args(
        &[("DOCKER_HOST", &format!("unix://{}", sock.display()))],
        &["--agent-timeout", "2", "--lost-task-grace", "2"],
    );
    let instance = up.until_any_instance();
    let _guard = CleanupGuard::new("berth.container-instance", instance.clone());
    up.until_connected(&instance, true);
    let family = format!("e2e-lost-{}", std::process::id());
    let defs = serde_json::json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16, "stopTimeout": 2,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"] }]);
    up.aws(&[
        "register-task-definition",
        "--family",
        &family,
        "--container-definitions",
        &defs.to_string(),
    ]);
    let run = up.aws(&["run-task", "--task-definition", &family]);
    let arn = run["tasks"][0]["taskArn"]
        .as_str()
        .expect("a task")
        .to_owned();
    up.until(&arn, "RUNNING");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        up.task(&arn)["lastStatus"],
        "RUNNING",
        "a heard agent keeps its task"
    );
    assert_eq!(up.instance(&instance)["agentConnected"], true);

    outage.cut();
    let t = up.until(&arn, "STOPPED");
    assert_eq!(t["desiredStatus"], "STOPPED", "{t}");
    assert_eq!(t["stopCode"], "TerminationNotice", "{t}");
    assert!(
        t["stoppedReason"]
            .as_str()
            .is_some_and(|r| r.contains("was lost")),
        "{t}"
    );
    let containers = |all: bool| {
        let mut args = vec!["ps", "-q"];
        if all {
            args.push("-a");
        }
        let filter = format!("label=berth.task-arn={arn}");
        args.extend(["--filter", &filter]);
        let out = Command::new("docker")
            .args(&args)
            .output()
            .expect("docker ps");
        text(&out.stdout).lines().count()
    };
    assert_eq!(
        containers(false),
        1,
        "its container still runs, out of the agent's reach"
    );

    let _back = DockerOutage::serve(&sock);
    up.until_connected(&instance, true);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while containers(true) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the returning agent never removed the lost task's container"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = up.task(&arn);
    assert_eq!(
        (&after["lastStatus"], &after["stoppedReason"]),
        (&t["lastStatus"], &t["stoppedReason"]),
        "STOPPED is final"
    );
}
