//! Services across the instances of `berth up --instances N`: draining an
//! instance, two agents on one daemon keeping to their own containers, and
//! fewer instances refused while the extra ones hold tasks. A child of
//! `services` so it shares that module's helpers as they are.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_agent::testing::{CleanupGuard, TEST_IMAGE};
use serde_json::{Value, json};

use super::containers_of;
use crate::harness::{Up, docker_ready};
use crate::{berth, text};

/// `berth up --instances N`-style setup: the N instances, each with a guard
/// removing its containers, and a task definition `PREFIX-PID` of a shell
/// loop without port mappings (the instances share the host's ports).
fn instances_and_sleeper(
    up: &Up,
    n: usize,
    prefix: &str,
) -> (Vec<String>, Vec<CleanupGuard>, String) {
    let instances = up.until_instances(n);
    let guards = instances
        .iter()
        .map(|i| CleanupGuard::new("berth.container-instance", i.clone()))
        .collect();
    let family = format!("{prefix}-{}", std::process::id());
    let defs = json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"] }])
    .to_string();
    up.aws(&[
        "register-task-definition",
        "--family",
        &family,
        "--container-definitions",
        &defs,
    ]);
    (instances, guards, family)
}

#[test]
fn draining_an_instance_moves_its_service_tasks_within_the_percentages() {
    if !docker_ready() {
        return;
    }
    let up = Up::start_args(&[], &["--instances", "2"]);
    let (instances, _guards, family) = instances_and_sleeper(&up, 2, "e2e-drain");
    // Each of the two shares the one daemon's CPU and memory.
    let cpu = |i: &str| {
        up.instance(i)["registeredResources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == "CPU")
            .and_then(|r| r["integerValue"].as_i64())
            .expect("CPU")
    };
    assert_eq!(cpu(&instances[0]), cpu(&instances[1]));
    let dc = json!({"minimumHealthyPercent": 50, "maximumPercent": 150}).to_string();
    up.aws(&[
        "create-service",
        "--service-name",
        "spread",
        "--task-definition",
        &family,
        "--desired-count",
        "4",
        "--deployment-configuration",
        &dc,
    ]);
    up.until_steady("spread", 4, None);
    let on = |ts: &[Value], i: &str| ts.iter().filter(|t| t["containerInstanceArn"] == i).count();
    let ts = up.tasks("spread");
    // The default strategy spreads over instances.
    assert_eq!(
        (on(&ts, &instances[0]), on(&ts, &instances[1])),
        (2, 2),
        "{ts:#?}"
    );
    let (drained, other) = (&instances[0], &instances[1]);
    let moved: Vec<String> = ts
        .iter()
        .filter(|t| t["containerInstanceArn"] == drained.as_str())
        .map(|t| t["taskArn"].as_str().expect("arn").to_owned())
        .collect();

    let out = up.aws(&[
        "update-container-instances-state",
        "--container-instances",
        drained,
        "--status",
        "DRAINING",
    ]);
    assert_eq!(out["containerInstances"][0]["status"], "DRAINING", "{out}");
    // 50% and 150% of 4: at least 2 RUNNING, at most 6 live, at every observed state.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ts = up.within("spread", (2, 6));
        let running_on_other = ts
            .iter()
            .filter(|t| {
                t["containerInstanceArn"] == other.as_str()
                    && t["lastStatus"] == "RUNNING"
                    && t["desiredStatus"] == "RUNNING"
            })
            .count();
        if on(&ts, drained) == 0 && running_on_other == 4 && ts.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drained instance's tasks never moved: {ts:#?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for arn in &moved {
        let t = up.task(arn);
        assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
        assert_eq!(t["stopCode"], "ServiceSchedulerInitiated", "{t:#}");
    }
    let d = up.instance(drained);
    assert_eq!(
        (
            d["status"].as_str(),
            d["runningTasksCount"].as_u64(),
            d["pendingTasksCount"].as_u64()
        ),
        (Some("DRAINING"), Some(0), Some(0)),
        "{d:#}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=berth.container-instance={drained}"),
            ])
            .output()
            .expect("docker ps");
        if text(&out.stdout).trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "containers left on the drained instance: {}",
            text(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // A draining instance takes no new placements either.
    let run = up.aws(&["run-task", "--task-definition", &family, "--count", "2"]);
    let placed: Vec<&Value> = run["tasks"].as_array().expect("tasks").iter().collect();
    assert_eq!(placed.len(), 2, "{run:#}");
    assert!(
        placed
            .iter()
            .all(|t| t["containerInstanceArn"] == other.as_str()),
        "{run:#}"
    );
    for t in placed {
        up.aws(&["stop-task", "--task", t["taskArn"].as_str().expect("arn")]);
    }
    up.aws(&["delete-service", "--service", "spread", "--force"]);
}

#[test]
fn two_agents_on_one_daemon_keep_to_their_own_containers() {
    if !docker_ready() {
        return;
    }
    let bad = berth(&["up", "--check", "--instances", "0"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--instances"),
        "{}",
        text(&bad.stderr)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start_in_with(dir.path(), &[("BERTH_INSTANCES", "2")], &[]);
    let (instances, _guards, family) = instances_and_sleeper(&up, 2, "e2e-own");
    let tasks: Vec<String> = instances
        .iter()
        .map(|i| {
            let s = up.aws(&[
                "start-task",
                "--task-definition",
                &family,
                "--container-instances",
                i,
            ]);
            s["tasks"][0]["taskArn"]
                .as_str()
                .unwrap_or_else(|| panic!("start-task on {i}: {s}"))
                .to_owned()
        })
        .collect();
    for (t, i) in tasks.iter().zip(&instances) {
        assert_eq!(up.until(t, "RUNNING")["containerInstanceArn"], i.as_str());
        let cs = containers_of(t);
        assert_eq!(cs.len(), 1, "{t}");
        let label = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{index .Config.Labels \"berth.container-instance\"}}",
                &cs[0],
            ])
            .output()
            .expect("docker inspect");
        assert_eq!(
            text(&label.stdout).trim(),
            i.as_str(),
            "the container is labelled with its own instance"
        );
    }

    // Containers no live task owns: one labelled as each agent's (each must
    // remove its own), and one of an instance of another berth (nobody's here).
    let foreign = format!("{}-elsewhere", instances[0]);
    let _foreign_guard = CleanupGuard::new("berth.container-instance", foreign.clone());
    // Created only for the agents' own: an agent may remove one before
    // `docker run` could start it.
    let plant = |owner: &str, what: &str| {
        let verb: &[&str] = if owner == foreign {
            &["run", "-d"]
        } else {
            &["create"]
        };
        let out = Command::new("docker")
            .args(verb)
            .args([
                "--label",
                &format!("berth.container-instance={owner}"),
                "--label",
                &format!(
                    "berth.task-arn=arn:aws:ecs:local:000000000000:task/default/{what}-{}",
                    std::process::id()
                ),
                "--label",
                "berth.container-name=app",
                TEST_IMAGE,
                "sleep",
                "600",
            ])
            .output()
            .expect("docker run");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    };
    let leaked: Vec<String> = instances
        .iter()
        .enumerate()
        .map(|(n, i)| plant(i, &format!("leaked{n}")))
        .collect();
    let elsewhere = plant(&foreign, "elsewhere");
    let exists = |id: &str| {
        Command::new("docker")
            .args(["inspect", id])
            .output()
            .expect("docker inspect")
            .status
            .success()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while leaked.iter().any(|id| exists(id)) {
        assert!(
            Instant::now() < deadline,
            "an agent left a leaked container of its own"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both agents have passed over their containers since: the other
    // berth's container and each agent's task are untouched.
    assert!(
        exists(&elsewhere),
        "an agent removed a container that is not its own"
    );
    for t in &tasks {
        assert_eq!(up.task(t)["lastStatus"], "RUNNING");
        assert_eq!(containers_of(t).len(), 1, "{t}");
    }

    // Stopping one agent's task leaves the other's running.
    up.aws(&["stop-task", "--task", &tasks[0]]);
    up.until(&tasks[0], "STOPPED");
    assert!(containers_of(&tasks[0]).is_empty());
    let t = up.task(&tasks[1]);
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    assert_eq!(containers_of(&tasks[1]).len(), 1);
    assert!(exists(&elsewhere));
    up.aws(&["stop-task", "--task", &tasks[1]]);
    up.until(&tasks[1], "STOPPED");

    // Restarted with one agent, the first instance comes back and the
    // second, which nobody serves now and which holds no live task, is
    // deregistered: no placements.
    let first_id = std::fs::read_to_string(dir.path().join("agent-instance-id"))
        .expect("the first agent's id");
    let first = instances
        .iter()
        .find(|i| i.ends_with(first_id.trim()))
        .expect("the first agent's instance")
        .clone();
    let second = instances
        .iter()
        .find(|i| **i != first)
        .expect("the second instance")
        .clone();
    drop(up);
    let up = Up::start_in_with(dir.path(), &[], &["--instances", "1"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = (up.instance(&first), up.instance(&second));
        if a["agentConnected"] == true && b["agentConnected"] == false && b["status"] == "INACTIVE"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after a restart with --instances 1: {a:#} {b:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = up.aws(&["run-task", "--task-definition", &family, "--count", "2"]);
    let placed = run["tasks"].as_array().expect("tasks");
    assert_eq!(placed.len(), 2, "{run:#}");
    for t in placed {
        assert_eq!(t["containerInstanceArn"], first.as_str(), "{run:#}");
        up.aws(&["stop-task", "--task", t["taskArn"].as_str().expect("arn")]);
    }
}

#[test]
fn fewer_instances_are_refused_while_the_extra_ones_hold_tasks() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start_in_with(dir.path(), &[], &["--instances", "2"]);
    let (instances, _guards, family) = instances_and_sleeper(&up, 2, "e2e-fewer");
    let first_id = std::fs::read_to_string(dir.path().join("agent-instance-id"))
        .expect("the first agent's id");
    let second = instances
        .iter()
        .find(|i| !i.ends_with(first_id.trim()))
        .expect("the second instance")
        .clone();
    let started = up.aws(&[
        "start-task",
        "--task-definition",
        &family,
        "--container-instances",
        &second,
    ]);
    let task = started["tasks"][0]["taskArn"]
        .as_str()
        .expect("started on the second instance")
        .to_owned();
    up.until(&task, "RUNNING");
    drop(up);

    // One agent now would leave the second instance's container running
    // unmanaged while the first offered the whole host: refused, naming why.
    let mut child = Command::new(crate::berth_bin())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--instances",
            "1",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("BERTH_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("berth up starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth up --instances 1 kept running with tasks on the second instance");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(!status.success());
    assert!(
        err.contains("still hold tasks") && err.contains(&second) && err.contains("--instances 2"),
        "{err}"
    );

    // Once its task stopped, the second instance is deregistered.
    let up = Up::start_in_with(dir.path(), &[], &["--instances", "2"]);
    up.aws(&["stop-task", "--task", &task]);
    up.until(&task, "STOPPED");
    drop(up);
    let up = Up::start_in_with(dir.path(), &[], &["--instances", "1"]);
    assert_eq!(up.instance(&second)["status"], "INACTIVE");
    assert!(
        !dir.path().join("agent-instance-id-1").exists(),
        "its id is forgotten"
    );
}
