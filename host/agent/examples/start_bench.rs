//! Starting and stopping 10 tasks of a tiny image through the agent, against
//! `docker run -d` / `docker stop` + `docker rm` ten times in sequence, in the
//! same run. Prints both times and their ratio (berth / docker) per round.
//!
//! `cargo run --release -p berth-agent --example start_bench [ROUNDS]`
//!
//! The agent reports to the tests' control plane in memory, so the times
//! are the agent's and Docker's, without the store.

// Shared with the tests, which use more of it.
#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_agent::testing::{CleanupGuard, TEST_IMAGE, docker_or_skip, ensure_test_image};
use berth_agent::{Agent, AgentConfig, LABEL_INSTANCE};
use berth_core::arn::ArnContext;
use berth_core::model::{Task, TaskDefinition};
use berth_core::status::TaskStatus;
use serde_json::json;
use support::FakeControlPlane;

const N: usize = 10;
const LOOP: &str = "trap 'exit 0' TERM; while true; do sleep 0.2; done";

fn count(plane: &FakeControlPlane, arns: &[String], status: TaskStatus) -> usize {
    arns.iter()
        .filter(|a| plane.task(a).last_status == status)
        .count()
}

async fn wait_all(plane: &FakeControlPlane, arns: &[String], status: TaskStatus) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(plane, arns, status) < arns.len() {
        assert!(Instant::now() < deadline, "tasks never all {status}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let Some(d) = docker_or_skip().await else {
        return;
    };
    ensure_test_image(&d).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plane = Arc::new(FakeControlPlane::default());
    let agent = Agent::new(plane.clone(), AgentConfig::new("default", dir.path())).expect("agent");
    let _guard = CleanupGuard::new(LABEL_INSTANCE, agent.instance_arn());
    let bench_label = format!("berth.bench={}", std::process::id());
    let _guard2 = CleanupGuard::new("berth.bench", std::process::id().to_string());
    let handle = agent.handle();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(agent.clone().run(async {
        let _ = stop_rx.await;
    }));
    // Let the agent register.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let arn = ArnContext::default();
    let td: TaskDefinition = serde_json::from_value(json!({
        "taskDefinitionArn": arn.task_definition("bench", 1), "family": "bench", "revision": 1,
        "networkMode": "bridge", "status": "ACTIVE",
        "containerDefinitions": [{"name": "app", "image": TEST_IMAGE, "memory": 16, "command": ["sh", "-c", LOOP]}],
    }))
    .expect("td");

    println!(
        "round  berth_start_ms  docker_start_ms  start_ratio  berth_stop_ms  docker_stop_ms  stop_ratio"
    );
    for round in 1..=rounds {
        // berth: N tasks written at once (as RunTask count=N does), then woken.
        let tasks: Vec<Task> = (0..N)
            .map(|_| {
                serde_json::from_value(json!({
                    "taskArn": arn.task("default", &uuid::Uuid::new_v4().simple().to_string()),
                    "clusterArn": arn.cluster("default"), "taskDefinitionArn": td.task_definition_arn,
                    "containerInstanceArn": agent.instance_arn(), "lastStatus": "PENDING",
                    "desiredStatus": "RUNNING", "version": 1, "memory": "16",
                }))
                .expect("task")
            })
            .collect();
        let arns: Vec<String> = tasks.iter().map(|t| t.task_arn.clone()).collect();
        let t0 = Instant::now();
        for t in tasks {
            plane.place(td.clone(), t);
        }
        handle.wake();
        wait_all(&plane, &arns, TaskStatus::Running).await;
        let berth_start = t0.elapsed();

        let t0 = Instant::now();
        for a in &arns {
            plane.stop(a);
        }
        handle.wake();
        wait_all(&plane, &arns, TaskStatus::Stopped).await;
        let berth_stop = t0.elapsed();

        // docker: the same containers, one CLI call after the other.
        let t0 = Instant::now();
        let ids: Vec<String> = (0..N)
            .map(|_| {
                docker(&[
                    "run",
                    "-d",
                    "--label",
                    &bench_label,
                    "--memory",
                    "16m",
                    TEST_IMAGE,
                    "sh",
                    "-c",
                    LOOP,
                ])
            })
            .collect();
        let docker_start = t0.elapsed();
        let t0 = Instant::now();
        for id in &ids {
            docker(&["stop", id]);
            docker(&["rm", id]);
        }
        let docker_stop = t0.elapsed();

        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{round:>5}  {:>14.0}  {:>15.0}  {:>11.2}  {:>13.0}  {:>14.0}  {:>10.2}",
            ms(berth_start),
            ms(docker_start),
            ms(berth_start) / ms(docker_start),
            ms(berth_stop),
            ms(docker_stop),
            ms(berth_stop) / ms(docker_stop)
        );
    }
    let _ = stop_tx.send(());
    let _ = running.await;
}
