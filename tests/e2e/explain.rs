//! `berth run --explain`: per instance, the check that eliminated it or its
//! strategy keys, through berth's ExplainPlacement on a running `berth up`;
//! and RunTask's failure detail naming each instance's eliminating check.

use serde_json::{Value, json};

use super::cli::{cli, client};
use super::harness::{Up, docker_ready};
use super::text;
use berth_agent::testing::TEST_IMAGE;

fn register(up: &Up, dir: &std::path::Path, td: Value) {
    let file = dir.join("td.json");
    std::fs::write(&file, td.to_string()).expect("write");
    let out = cli(up, &["register", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The explanation's verdict for `arn`.
fn verdict<'a>(e: &'a Value, arn: &str) -> &'a Value {
    e["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["containerInstanceArn"] == arn)
        .unwrap_or_else(|| panic!("{arn} not explained: {e}"))
}

#[test]
fn run_explain_names_the_eliminating_check_for_each_instance() {
    if !docker_ready() {
        return;
    }
    let up = Up::start_args(&[], &["--instances", "2", "--zones", "a,b"]);
    let arns = up.until_instances(2);
    let zone = |arn: &str| {
        up.instance(arn)["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == "ecs.availability-zone")
            .and_then(|a| a["value"].as_str().map(str::to_owned))
            .expect("zone")
    };
    let (in_a, in_b) = if zone(&arns[0]) == "a" {
        (arns[0].clone(), arns[1].clone())
    } else {
        (arns[1].clone(), arns[0].clone())
    };
    let dir = tempfile::tempdir().expect("tempdir");
    register(
        &up,
        dir.path(),
        json!({"family": "ex-zone",
               "containerDefinitions": [{"name": "app", "image": TEST_IMAGE, "memory": 16,
                                         "command": ["sh", "-c", "sleep 60"]}],
               "placementConstraints": [{"type": "memberOf",
                                         "expression": "attribute:ecs.availability-zone == a"}]}),
    );
    // One instance fails the constraint; the other is the candidate, and
    // the decision goes there.
    let out = client(&up)
        .args(["run", "ex-zone", "--explain", "--output", "json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let e = &v["explanation"];
    assert_eq!(verdict(e, &in_b)["eliminatedBy"], "ATTRIBUTE", "{e}");
    assert!(verdict(e, &in_a)["keys"].is_array(), "{e}");
    assert_eq!(e["policy"], "native");
    assert_eq!(
        e["decisions"][0]["containerInstanceArn"],
        in_a.as_str(),
        "{e}"
    );
    assert_eq!(v["tasks"][0]["containerInstanceArn"], in_a.as_str(), "{v}");

    // Too big for either: both eliminated by memory, in the table for people.
    register(
        &up,
        dir.path(),
        json!({"family": "ex-huge",
               "containerDefinitions": [{"name": "app", "image": TEST_IMAGE, "memory": 100_000_000}]}),
    );
    let out = cli(&up, &["run", "ex-huge", "--explain"]);
    assert!(!out.status.success());
    let table = text(&out.stdout);
    for arn in &arns {
        let id = arn.rsplit('/').next().expect("id");
        let line = table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not in:\n{table}"));
        assert!(line.contains("eliminated by RESOURCE:MEMORY"), "{line}");
    }
    assert!(
        table.contains("task 1: not placed: RESOURCE:MEMORY"),
        "{table}"
    );

    // RunTask itself (no explanation asked): its failure's detail names
    // each instance with the check that eliminated it.
    let v = up.aws(&["run-task", "--task-definition", "ex-huge"]);
    assert_eq!(v["tasks"].as_array().map(Vec::len), Some(0), "{v}");
    let detail = v["failures"][0]["detail"].as_str().expect("detail");
    assert_eq!(v["failures"][0]["reason"], "RESOURCE:MEMORY", "{v}");
    for arn in &arns {
        let id = arn.rsplit('/').next().expect("id");
        assert!(
            detail.contains(&format!("{id} RESOURCE:MEMORY")),
            "{id} not in {detail}"
        );
    }
}
