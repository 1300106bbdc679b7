//! The binary with Docker: `berth up` without a daemon, and `berth logs`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use berth_agent::testing::{CleanupGuard, TEST_IMAGE, docker_or_skip, ensure_test_image};

use super::{berth, berth_bin, text};

/// Builds the test image; `false` when Docker tests are skipped on purpose.
fn docker_ready() -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        match docker_or_skip().await {
            Some(d) => {
                ensure_test_image(&d).await;
                true
            }
            None => false,
        }
    })
}

#[test]
fn up_without_docker_says_so_and_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let mut child = Command::new(berth_bin())
        .args(["up", "--data-dir", data, "--listen", "127.0.0.1:0"])
        .env("DOCKER_HOST", format!("unix://{}/no-docker.sock", dir.path().display()))
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth up starts");
    // Signals are handled once the "running" line is out.
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = out.by_ref().map_while(Result::ok).find(|l| l.contains("running"));
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
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().expect("wait");
    let said = said.expect("berth up said nothing about Docker");
    assert!(said.contains("no Docker daemon answers"), "{said}");
    assert!(still_running, "berth up must keep running without Docker");
    assert!(status.success(), "berth up exited with {status}");
}

#[test]
fn logs_prints_a_tasks_output() {
    if !docker_ready() {
        return;
    }
    let id = format!("e2e{}", std::process::id());
    let arn = format!("arn:aws:ecs:local:000000000000:task/default/{id}");
    let _guard = CleanupGuard::new("berth.task-arn", arn.clone());
    let out = Command::new("docker")
        .args(["run", "-d", "--label", &format!("berth.task-arn={arn}"), "--label", "berth.container-name=app", TEST_IMAGE])
        .args(["sh", "-c", "echo line-one; echo line-two >&2"])
        .output()
        .expect("docker runs");
    assert!(out.status.success(), "docker run: {}", text(&out.stderr));
    let cid = text(&out.stdout).trim().to_owned();
    let _ = Command::new("docker").args(["wait", &cid]).output();
    let by_id = berth(&["logs", &id]);
    assert!(by_id.status.success(), "{}", text(&by_id.stderr));
    let shown = text(&by_id.stdout);
    assert!(shown.contains("line-one") && shown.contains("line-two"), "{shown}");
    let by_arn = berth(&["logs", &arn, "--container", "app"]);
    assert!(text(&by_arn.stdout).contains("line-one"), "{}", text(&by_arn.stderr));
    let missing = berth(&["logs", &arn, "--container", "nope"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no container named nope"), "{}", text(&missing.stderr));
    let unknown = berth(&["logs", "no-such-task"]);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("no-such-task"), "{}", text(&unknown.stderr));
}

/// `berth up` on a free port with the real Docker; SIGTERM when dropped.
struct Up {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Up {
    fn start() -> Up {
        Up::start_with(&[])
    }

    fn start_with(env: &[(&str, &str)]) -> Up {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(berth_bin())
            .envs(env.iter().copied())
            .args(["up", "--listen", "127.0.0.1:0", "--availability-zone", "e2e-zone", "--data-dir"])
            .arg(dir.path())
            .env("BERTH_ACCESS_KEY_ID", "AKIDE2EDOCKER")
            .env("BERTH_SECRET_ACCESS_KEY", "e2e-docker-secret")
            .env("BERTH_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("berth up starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("berth up ended before it listened");
            };
            if let Some(rest) = line.split("http://").nth(1).filter(|_| line.contains("running")) {
                break rest.split(';').next().expect("address").trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Up { child, addr, _dir: dir }
    }

    /// `aws ecs OP ARGS...` against this server, its JSON answer.
    fn aws(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new("aws")
            .args(["ecs", "--endpoint-url", &format!("http://{}", self.addr), "--output", "json"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "AKIDE2EDOCKER")
            .env("AWS_SECRET_ACCESS_KEY", "e2e-docker-secret")
            .env("AWS_DEFAULT_REGION", "local")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap_or_else(|e| panic!("cannot run the AWS CLI ({e}); .ci/run installs it"));
        assert!(out.status.success(), "aws ecs {args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn task(&self, arn: &str) -> serde_json::Value {
        self.aws(&["describe-tasks", "--tasks", arn])["tasks"][0].clone()
    }

    fn until(&self, arn: &str, status: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let t = self.task(arn);
            if t["lastStatus"] == status {
                return t;
            }
            assert!(std::time::Instant::now() < deadline, "task never {status}: {t}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

#[test]
fn run_task_through_the_api_runs_real_containers() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    // Containers go first (the guard drops last-declared first).
    let instances = up.aws(&["list-container-instances"]);
    let instance = instances["containerInstanceArns"][0].as_str().expect("the agent registered this host").to_owned();
    let _guard = CleanupGuard::new("berth.container-instance", instance.clone());
    let ci = &up.aws(&["describe-container-instances", "--container-instances", &instance])["containerInstances"][0];
    assert_eq!(ci["agentConnected"], true, "{ci}");
    assert!(ci["attributes"].as_array().expect("attributes").iter().any(|a| a["name"] == "ecs.availability-zone" && a["value"] == "e2e-zone"), "{ci}");

    let family = format!("e2e-docker-{}", std::process::id());
    let defs = serde_json::json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16,
        "command": ["sh", "-c", "echo started-$GREETING; trap 'exit 0' TERM; while true; do sleep 0.2; done"],
        "environment": [{"name": "GREETING", "value": "e2e"}],
        "portMappings": [{"containerPort": 8080, "hostPort": 0}] }]);
    up.aws(&["register-task-definition", "--family", &family, "--container-definitions", &defs.to_string()]);
    let run = up.aws(&["run-task", "--task-definition", &family, "--count", "2"]);
    let arns: Vec<String> = run["tasks"].as_array().expect("tasks").iter().map(|t| t["taskArn"].as_str().expect("arn").to_owned()).collect();
    assert_eq!(arns.len(), 2, "{run}");
    for arn in &arns {
        let t = up.until(arn, "RUNNING");
        let b = &t["containers"][0]["networkBindings"][0];
        assert!(b["hostPort"].as_u64().is_some_and(|p| p > 0), "{t}");
        let out = Command::new("docker").args(["ps", "-q", "--filter", &format!("label=berth.task-arn={arn}")]).output().expect("docker ps");
        assert_eq!(text(&out.stdout).lines().count(), 1, "one running container for {arn}");
    }
    let id = arns[0].rsplit('/').next().expect("id");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let logs = berth(&["logs", id]);
        if text(&logs.stdout).contains("started-e2e") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "logs: {} {}", text(&logs.stdout), text(&logs.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
    up.aws(&["stop-task", "--task", &arns[0]]);
    let t = up.until(&arns[0], "STOPPED");
    assert_eq!(t["containers"][0]["exitCode"], 0, "stopped by SIGTERM: {t}");
    let out = Command::new("docker").args(["ps", "-aq", "--filter", &format!("label=berth.task-arn={}", arns[0])]).output().expect("docker ps");
    assert!(text(&out.stdout).trim().is_empty(), "the stopped task's container is removed");
    let ci = &up.aws(&["describe-container-instances", "--container-instances", &instance])["containerInstances"][0];
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
            let ci = &up.aws(&["describe-container-instances", "--container-instances", arn])["containerInstances"][0];
            if !ci.is_null() {
                assert_eq!(ci["agentConnected"], false, "{ci}");
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no container instance was recorded");
        std::thread::sleep(Duration::from_millis(200));
    }
}
