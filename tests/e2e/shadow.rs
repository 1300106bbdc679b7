//! Shadow mode through the binary (issue 17): a candidate shadowing a
//! cluster is asked every live decision and changes none, `policy show`
//! counts what it would have done, and `policy promote` makes it the
//! cluster's policy and ends the shadow.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::cli::cli;
use super::harness::{Up, docker_ready};
use super::policies::plugin_path;
use super::second_day::{agentless_cluster, ok, stats};
use super::text;

/// `berth run FAMILY --count 3` in cluster `sh`: every task placed, and
/// nothing said about a policy (the live decision is native binpack's).
fn run_three(up: &Up) {
    let out = cli(
        up,
        &[
            "run",
            "attack",
            "--cluster",
            "sh",
            "--count",
            "3",
            "--output",
            "json",
        ],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "run: {err}");
    assert!(
        !err.contains("policy"),
        "a shadow showed in a live run: {err}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let tasks = v["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 3, "{v}");
    for t in tasks {
        assert!(t["containerInstanceArn"].is_string(), "not placed: {t}");
        let attrs = t["attributes"].as_array().into_iter().flatten();
        assert!(
            !attrs
                .into_iter()
                .any(|a| a["name"] == "berth.policy-fallback"),
            "{t}"
        );
    }
}

/// The shadow's figures once it has answered (or skipped) `offers` runs
/// of three tasks: its worker runs after the live decision returned.
fn shadow_after(up: &Up, policy: &str, offers: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sh = stats(up, policy)["shadow"].clone();
        let answered =
            sh["decisions"].as_u64().unwrap_or(0) / 3 + sh["skipped"].as_u64().unwrap_or(0);
        if answered >= offers {
            return sh;
        }
        assert!(
            Instant::now() < deadline,
            "the shadow answered {answered} of {offers} decisions: {sh}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_shadow_is_asked_every_decision_changes_none_and_is_promoted() {
    if !docker_ready() {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let up = Up::start_in(data.path());
    agentless_cluster(&up, "sh", 3, work.path());

    // A shadow that traps on every decision (hostile-trap panics on the
    // family `attack`): every live run places all its tasks natively.
    let trap = plugin_path("hostile_trap");
    ok(&up, &["policy", "install", trap.to_str().expect("utf-8")]);
    let (out, _) = ok(
        &up,
        &["policy", "shadow", "hostile-trap", "--cluster", "sh"],
    );
    assert!(out.contains("shadows shadow/cluster/sh"), "{out}");
    for _ in 0..4 {
        run_three(&up);
    }
    let sh = shadow_after(&up, "hostile-trap", 4);
    assert_eq!(sh["agreed"], 0, "{sh}");
    assert!(sh["failures"]["trap"].as_u64().unwrap_or(0) >= 1, "{sh}");
    assert_eq!(
        sh["disagreed"], sh["decisions"],
        "every decision it was asked failed: {sh}"
    );

    // A shadow that places every task is promoted: the cluster then
    // places through it.
    let binpack = plugin_path("binpack");
    ok(
        &up,
        &["policy", "install", binpack.to_str().expect("utf-8")],
    );
    ok(&up, &["policy", "shadow", "binpack", "--cluster", "sh"]);
    for _ in 0..2 {
        run_three(&up);
    }
    let sh = shadow_after(&up, "binpack", 2);
    // It answers every decision and places every task; whether it picks
    // the same instance as the live strategy depends on how that breaks
    // ties (at random, for instances alike).
    let n = |k: &str| sh[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(n("agreed") + n("disagreed"), n("decisions"), "{sh}");
    assert_eq!(n("wouldFail"), 0, "{sh}");
    let failed: u64 = sh["failures"]
        .as_object()
        .expect("failures")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(failed, 0, "{sh}");
    let (out, _) = ok(&up, &["policy", "promote", "binpack", "--cluster", "sh"]);
    assert!(
        out.contains("is active in cluster/sh; its shadow ended"),
        "{out}"
    );
    let (ls, _) = ok(&up, &["policy", "ls"]);
    assert!(!ls.contains("shadow/cluster/sh"), "{ls}");
    assert!(ls.contains("cluster/sh"), "{ls}");
    let before = stats(&up, "binpack")["stats"]["decisions"]
        .as_u64()
        .unwrap_or(0);
    run_three(&up);
    let after = stats(&up, "binpack")["stats"]["decisions"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        after > before,
        "binpack decided nothing once promoted ({before} -> {after})"
    );
}
