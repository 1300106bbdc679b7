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
