//! Work across hosts through the AWS CLI: a service spread over three hosts
//! by zone, and the whole story (register, run-task, logs from another host,
//! services, a rolling update, scale to zero, delete) over two hosts.

use std::process::Command;
use std::time::Duration;

use berth_agent::testing::TEST_IMAGE;
use serde_json::json;

use super::failures::SPREAD_BY_ZONE;
use super::fleet::{Fleet, arns, running_containers};
use super::lab::{hosts_ready, until};
use crate::{berth_bin, text};

/// Three hosts in three zones: each instance shows its zone and attribute,
/// the query language finds a zone's host, and six tasks of a service
/// spread by zone run two on each host's dockerd.
#[test]
fn a_service_spreads_over_three_hosts_by_zone() {
    if !hosts_ready() {
        return;
    }
    let cluster = format!("spread-{}", std::process::id());
    let zones = ["zone-a", "zone-b", "zone-c"];
    let fleet = Fleet::start(&[], &cluster, &zones);
    let instances = fleet.instance_arns();
    let described = fleet.instances();
    for (i, zone) in zones.iter().enumerate() {
        let ci = described
            .iter()
            .find(|ci| ci["containerInstanceArn"] == instances[i].as_str())
            .expect("registered");
        let attrs = ci["attributes"].as_array().expect("attributes");
        assert!(
            attrs
                .iter()
                .any(|a| a["name"] == "ecs.availability-zone" && a["value"] == *zone),
            "{ci:#}"
        );
        let query = format!("attribute:ecs.availability-zone == {zone}");
        let found = fleet.aws(&["list-container-instances", "--filter", &query]);
        assert_eq!(
            arns(&found, "containerInstanceArns"),
            vec![instances[i].clone()],
            "{query}"
        );
    }
    let family = format!("e2e-spread-{}", std::process::id());
    fleet.register_sleeper(&family, 16);
    fleet.aws(&[
        "create-service",
        "--service-name",
        "spread",
        "--task-definition",
        &family,
        "--desired-count",
        "6",
        "--placement-strategy",
        SPREAD_BY_ZONE,
    ]);
    let tasks = fleet.until_running("spread", 6, Duration::from_secs(90), |_| true);
    let per_host: Vec<usize> = (0..zones.len())
        .map(|i| {
            tasks
                .iter()
                .filter(|t| t["containerInstanceArn"] == instances[i].as_str())
                .count()
        })
        .collect();
    assert_eq!(per_host, vec![2, 2, 2], "tasks per zone");
    assert_eq!(
        fleet.container_counts(),
        vec![2, 2, 2],
        "containers per host"
    );
    for (i, host) in fleet.hosts.iter().enumerate() {
        for c in running_containers(host) {
            let t = tasks.iter().find(|t| t["taskArn"] == c.task_arn.as_str());
            let t = t.unwrap_or_else(|| panic!("host {i} runs {c:?}, not a task of the service"));
            assert_eq!(t["containerInstanceArn"], instances[i].as_str());
        }
    }
}

/// The AWS CLI against a server with two agents on two hosts.
#[test]
fn the_aws_cli_story_runs_across_two_hosts() {
    if !hosts_ready() {
        return;
    }
    let cluster = format!("story-{}", std::process::id());
    let fleet = Fleet::start(&[], &cluster, &["zone-a", "zone-b"]);
    let family = format!("e2e-story-{}", std::process::id());
    let defs = |greeting: &str| {
        json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16, "stopTimeout": 2,
            "command": ["sh", "-c", "echo hello-$GREETING; trap 'exit 0' TERM; while true; do sleep 0.2; done"],
            "environment": [{"name": "GREETING", "value": greeting}] }])
        .to_string()
    };
    let register = |greeting: &str| {
        fleet.server.aws(&[
            "register-task-definition",
            "--family",
            &family,
            "--container-definitions",
            &defs(greeting),
        ])["taskDefinition"]["taskDefinitionArn"]
            .as_str()
            .expect("taskDefinitionArn")
            .to_owned()
    };
    let v1 = register("one");

    // run-task, one on each host.
    let run = fleet.aws(&[
        "run-task",
        "--task-definition",
        &v1,
        "--count",
        "2",
        "--placement-strategy",
        "type=spread,field=instanceId",
    ]);
    let ran: Vec<String> = run["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["taskArn"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ran.len(), 2, "{run}");
    until(Duration::from_secs(60), "both tasks RUNNING", || {
        let ts = fleet.describe_tasks(&ran);
        ts.iter()
            .all(|t| t["lastStatus"] == "RUNNING")
            .then_some(())
    });
    assert_eq!(fleet.container_counts(), vec![1, 1]);
    for arn in &ran {
        assert_logs_contain(&fleet, arn, "hello-one");
    }
    for arn in &ran {
        fleet.aws(&["stop-task", "--task", arn]);
    }
    until(Duration::from_secs(60), "both tasks STOPPED", || {
        let ts = fleet.describe_tasks(&ran);
        ts.iter()
            .all(|t| t["lastStatus"] == "STOPPED")
            .then_some(())
    });
    until(Duration::from_secs(30), "their containers gone", || {
        (fleet.container_counts() == vec![0, 0]).then_some(())
    });

    // A service over both hosts, a rolling update, scale to zero, delete.
    fleet.aws(&[
        "create-service",
        "--service-name",
        "story",
        "--task-definition",
        &v1,
        "--desired-count",
        "2",
        "--placement-strategy",
        "type=spread,field=instanceId",
    ]);
    fleet.until_running("story", 2, Duration::from_secs(60), |t| {
        t["taskDefinitionArn"] == v1.as_str()
    });
    assert_eq!(fleet.container_counts(), vec![1, 1]);
    let v2 = register("two");
    fleet.aws(&[
        "update-service",
        "--service",
        "story",
        "--task-definition",
        &v2,
    ]);
    let updated = fleet.until_running("story", 2, Duration::from_secs(90), |t| {
        t["taskDefinitionArn"] == v2.as_str()
    });
    until(
        Duration::from_secs(30),
        "the old version's containers gone",
        || {
            let on_hosts = fleet.containers().into_iter().flatten();
            let arns: Vec<String> = on_hosts.map(|c| c.task_arn).collect();
            let new = |a: &String| updated.iter().any(|t| t["taskArn"] == a.as_str());
            (arns.len() == 2 && arns.iter().all(new)).then_some(())
        },
    );
    for t in &updated {
        assert_logs_contain(&fleet, t["taskArn"].as_str().expect("arn"), "hello-two");
    }
    fleet.aws(&[
        "update-service",
        "--service",
        "story",
        "--desired-count",
        "0",
    ]);
    until(
        Duration::from_secs(60),
        "the service scaled to zero",
        || {
            let done =
                fleet.running_tasks("story").is_empty() && fleet.container_counts() == vec![0, 0];
            done.then_some(())
        },
    );
    fleet.aws(&["delete-service", "--service", "story"]);
    until(Duration::from_secs(30), "the service deleted", || {
        let s = fleet.service("story");
        (s.is_null() || s["status"] != "ACTIVE").then_some(())
    });
}

/// `berth logs TASK` through the server (GetTaskLogs, served by the task's
/// agent on its host) shows `needle` within 20 s.
fn assert_logs_contain(fleet: &Fleet, task_arn: &str, needle: &str) {
    until(
        Duration::from_secs(20),
        &format!("{needle} in the logs of {task_arn}"),
        || {
            let out = Command::new(berth_bin())
                .args(["logs", "--cluster", &fleet.cluster, task_arn])
                .env(
                    "BERTH_ENDPOINT",
                    format!("http://127.0.0.1:{}", fleet.server.port),
                )
                .env("AWS_ACCESS_KEY_ID", &fleet.server.key)
                .env("AWS_SECRET_ACCESS_KEY", &fleet.server.secret)
                .env("BERTH_LOG", "warn")
                .output()
                .expect("berth runs");
            text(&out.stdout).contains(needle).then_some(())
        },
    );
}
