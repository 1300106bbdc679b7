//! `berth server` and `berth agent` as two processes on loopback, with the
//! real Docker: the agent protocol over HTTP end to end (registration with
//! attributes, a task run through the AWS CLI, its logs through `berth
//! logs`, a `kill -9` of the agent re-adopting rather than restarting, and
//! a wrong key refused).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_agent::testing::{CleanupGuard, TEST_IMAGE};
use serde_json::Value;

use super::harness::{KEY, SECRET, Up, aws_env, docker_ready};
use super::{berth_bin, text};

const CLUSTER: &str = "remote-e2e";

/// `berth agent` against `server`; SIGTERM when dropped.
struct AgentProcess {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl AgentProcess {
    fn start(server: &str, dir: &Path, secret: &str, args: &[&str]) -> AgentProcess {
        let mut child = Command::new(berth_bin())
            .args(["agent", "--server", &format!("http://{server}")])
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("BERTH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berth agent starts");
        let (tx, stderr) = mpsc::channel();
        let lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        AgentProcess { child, stderr }
    }

    /// The first line of its log containing all of `words`, within 30 s.
    fn said(&self, words: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(l) if words.iter().all(|w| l.contains(w)) => return l,
                Ok(l) => seen.push(l),
                Err(_) => break,
            }
        }
        panic!("berth agent never said {words:?}; it said: {seen:#?}");
    }

    /// `kill -9`.
    fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The cluster's one container instance, once registered and connected.
fn until_instance(server: &Up) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = server.aws(&["list-container-instances", "--cluster", CLUSTER]);
        if let Some(arn) = listed["containerInstanceArns"][0].as_str() {
            let ci = server.aws(&[
                "describe-container-instances",
                "--cluster",
                CLUSTER,
                "--container-instances",
                arn,
            ])["containerInstances"][0]
                .clone();
            if ci["agentConnected"] == true {
                return ci;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the agent never registered: {listed}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn task(server: &Up, arn: &str) -> Value {
    server.aws(&["describe-tasks", "--cluster", CLUSTER, "--tasks", arn])["tasks"][0].clone()
}

fn until_status(server: &Up, arn: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let t = task(server, arn);
        if t["lastStatus"] == status {
            return t;
        }
        assert!(Instant::now() < deadline, "task never {status}: {t}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Docker's ids of the containers of task `arn`, running or not.
fn containers_of(arn: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter"])
        .arg(format!("label=berth.task-arn={arn}"))
        .output()
        .expect("docker ps");
    text(&out.stdout).lines().map(str::to_owned).collect()
}

fn attribute<'a>(ci: &'a Value, name: &str) -> Option<&'a str> {
    ci["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)?["value"]
        .as_str()
}

#[test]
fn a_server_and_an_agent_in_two_processes_run_a_task_and_read_its_logs() {
    if !docker_ready() {
        return;
    }
    let server_dir = tempfile::tempdir().expect("tempdir");
    let agent_dir = tempfile::tempdir().expect("tempdir");
    let server = Up::server_in(server_dir.path());
    let agent_args = [
        "--cluster",
        CLUSTER,
        "--availability-zone",
        "zone-b",
        "--attribute",
        "disk=ssd",
    ];
    let mut agent = AgentProcess::start(&server.addr, agent_dir.path(), SECRET, &agent_args);
    let ci = until_instance(&server);
    let instance = ci["containerInstanceArn"].as_str().expect("arn").to_owned();
    let _guard = CleanupGuard::new("berth.container-instance", instance.clone());
    assert_eq!(
        attribute(&ci, "ecs.availability-zone"),
        Some("zone-b"),
        "{ci}"
    );
    assert_eq!(attribute(&ci, "disk"), Some("ssd"), "{ci}");

    let defs = serde_json::json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16, "stopTimeout": 2,
        "command": ["sh", "-c", "echo hello-from-the-agent; trap 'exit 0' TERM; while true; do sleep 0.2; done"] }]);
    server.aws(&[
        "register-task-definition",
        "--family",
        "remote-e2e",
        "--container-definitions",
        &defs.to_string(),
    ]);
    // Placed by a constraint on the agent's own attribute.
    let run = server.aws(&[
        "run-task",
        "--cluster",
        CLUSTER,
        "--task-definition",
        "remote-e2e",
        "--placement-constraints",
        "type=memberOf,expression=attribute:disk == ssd",
    ]);
    let arn = run["tasks"][0]["taskArn"]
        .as_str()
        .unwrap_or_else(|| panic!("{run}"))
        .to_owned();
    let running = until_status(&server, &arn, "RUNNING");
    assert_eq!(running["containerInstanceArn"], instance.as_str());
    let container = containers_of(&arn);
    assert_eq!(container.len(), 1, "{container:?}");

    // The logs come from the agent's host, through the agent.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = aws_env(&mut Command::new(berth_bin()), KEY, SECRET)
            .args(["logs", "--endpoint", &format!("http://{}", server.addr)])
            .args(["--cluster", CLUSTER, &arn])
            .env("BERTH_LOG", "warn")
            .output()
            .expect("berth logs");
        if text(&out.stdout).contains("hello-from-the-agent") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "berth logs: {} {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // kill -9 and start again: the same instance, the same container.
    agent.kill_hard();
    let agent = AgentProcess::start(&server.addr, agent_dir.path(), SECRET, &agent_args);
    let again = until_instance(&server);
    assert_eq!(again["containerInstanceArn"], instance.as_str());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(task(&server, &arn)["lastStatus"], "RUNNING");
    assert_eq!(containers_of(&arn), container, "re-adopted, not restarted");
    let state = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Running}}",
            &container[0],
        ])
        .output()
        .expect("docker inspect");
    assert_eq!(text(&state.stdout).trim(), "0 true");

    server.aws(&["stop-task", "--cluster", CLUSTER, "--task", &arn]);
    until_status(&server, &arn, "STOPPED");
    assert!(containers_of(&arn).is_empty());
    drop(agent);
}

#[test]
fn an_agent_with_a_wrong_key_is_refused() {
    let server_dir = tempfile::tempdir().expect("tempdir");
    let agent_dir = tempfile::tempdir().expect("tempdir");
    let server = Up::server_in(server_dir.path());
    let agent = AgentProcess::start(&server.addr, agent_dir.path(), "not-the-secret", &[]);
    // Without Docker the agent still registers its instance (disconnected);
    // with the wrong key the server refuses either way.
    let line = agent.said(&["403"]);
    assert!(line.contains("InvalidSignatureException"), "{line}");
    let listed = server.aws(&["list-container-instances"]);
    assert_eq!(
        listed["containerInstanceArns"],
        serde_json::json!([]),
        "{listed}"
    );
}

#[test]
fn up_puts_the_local_host_in_the_cluster_it_is_given() {
    if !docker_ready() {
        return;
    }
    let up = Up::start_args(&[], &["--cluster", "team-x"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = up.aws(&["list-container-instances", "--cluster", "team-x"]);
        if listed["containerInstanceArns"][0].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "no instance in team-x: {listed}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let default = up.aws(&["list-container-instances"]);
    assert_eq!(
        default["containerInstanceArns"],
        serde_json::json!([]),
        "{default}"
    );
}
