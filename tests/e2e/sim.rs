//! `berth sim` through the binary: the analytic case of native binpack
//! (identical tasks fill identical instances exactly; compaction finds the
//! exact minimum), determinism byte for byte, a hostile policy counted by
//! kind while its fallback carries the run, and a lost host's tasks placed
//! again.

use std::path::Path;

use serde_json::Value;

use super::policies::plugin_path;
use super::{berth, text};

fn sim(args: &[&str]) -> String {
    let mut all = vec!["sim"];
    all.extend_from_slice(args);
    let out = berth(&all);
    assert!(
        out.status.success(),
        "berth {all:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn sim_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--output", "json"]);
    serde_json::from_str(&sim(&all)).expect("berth sim --output json prints JSON")
}

fn policy<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .find(|p| p["policy"] == name)
        .unwrap_or_else(|| panic!("no policy {name} in {report}"))
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write");
    p.display().to_string()
}

#[test]
fn sim_binpack_fills_identical_instances_exactly_and_compaction_finds_the_minimum() {
    // 1024 CPU / 2048 MiB instances take exactly four 256/512 tasks each.
    let r = sim_json(&[
        "--workload",
        "synthetic:uniform:30",
        "--cluster",
        "10x1024:2048",
        "--policy",
        "native:binpack",
        "--policy",
        "native:default",
        "--compact",
    ]);
    let binpack = policy(&r, "native:binpack");
    assert_eq!(binpack["placed"], 30);
    assert_eq!(binpack["waited"], 0);
    // ceil(30 / 4) = 8 instances hold tasks: seven full, one with two.
    assert_eq!(binpack["busy_instances"]["mean"], 8.0, "{binpack}");
    assert_eq!(binpack["cpu_utilisation"]["mean"], 0.75);
    assert_eq!(binpack["smallest_cluster"], 8);
    // The default chain spreads over instances: all ten; it still fits in 8.
    let spread = policy(&r, "native:default");
    assert_eq!(spread["busy_instances"]["mean"], 10.0, "{spread}");
    assert_eq!(spread["smallest_cluster"], 8);

    // 41 tasks on 40 slots: the cluster is full to the unit, one waits.
    let r = sim_json(&[
        "--workload",
        "synthetic:uniform:41",
        "--cluster",
        "10x1024:2048",
        "--policy",
        "native:binpack",
        "--compact",
    ]);
    let b = policy(&r, "native:binpack");
    assert_eq!(b["placed"], 40);
    assert_eq!(b["unplaced_at_end"], 1);
    assert_eq!(b["cpu_utilisation"]["mean"], 1.0);
    assert_eq!(b["memory_utilisation"]["mean"], 1.0);
    assert_eq!(b["failures"]["RESOURCE:CPU"], 1, "{b}");
    assert_eq!(b["smallest_cluster"], Value::Null, "{b}");
}

#[test]
fn sim_is_deterministic_byte_for_byte_and_the_seed_matters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = plugin_path("binpack").display().to_string();
    let run = |seed: &str, chart: &str| {
        let chart = dir.path().join(chart).display().to_string();
        let out = sim(&[
            "--workload",
            "synthetic:mixed:3000",
            "--cluster",
            "20x4096:16384@a/b/c,4x16384:32768@a",
            "--policy",
            "native:binpack",
            "--policy",
            "native:spread",
            "--policy",
            &wasm,
            "--seed",
            seed,
            "--output",
            "json",
            "--chart",
            &chart,
        ]);
        (out, std::fs::read(&chart).expect("chart written"))
    };
    let (a, chart_a) = run("5", "a.svg");
    let (b, chart_b) = run("5", "b.svg");
    assert_eq!(a, b, "the same seed must give the same report");
    assert_eq!(chart_a, chart_b, "and the same chart");
    assert!(text(&chart_a).starts_with("<svg"), "an SVG");
    let (c, _) = run("6", "c.svg");
    assert_ne!(a, c, "another seed, another workload");
    let r: Value = serde_json::from_str(&a).expect("json");
    // The policy component answers as native binpack on memory does.
    let native = policy(&r, "native:binpack");
    let component = policy(&r, "binpack.wasm");
    assert_eq!(native["placed"], component["placed"]);
    assert_eq!(native["pending_s"], component["pending_s"]);
    assert_eq!(component["policy_failures"], serde_json::json!({}));
    // Latency is wall-clock time: only with --timings.
    assert!(native.get("decision_latency_us").is_none());
    // The table for people names every policy.
    let table = sim(&[
        "--workload",
        "synthetic:batch:500",
        "--cluster",
        "10x4096:16384@a/b",
        "--timings",
    ]);
    for want in [
        "native:binpack",
        "native:spread",
        "pending p50/p99",
        "decision p50/p99",
    ] {
        assert!(table.contains(want), "{want} missing:\n{table}");
    }
}

#[test]
fn sim_counts_a_hostile_policy_by_kind_and_its_fallback_carries_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = String::new();
    for i in 0..40 {
        let family = if i % 4 == 0 { "attack" } else { "web" };
        lines.push_str(&format!(
            "{{\"time\": {i}, \"cpu\": 256, \"memory\": 512, \"duration\": 30, \"family\": \"{family}\"}}\n"
        ));
    }
    let workload = write(dir.path(), "w.jsonl", &lines);
    let trap = plugin_path("hostile_trap").display().to_string();
    let r = sim_json(&[
        "--workload",
        &workload,
        "--cluster",
        "12x1024:2048",
        "--policy",
        &trap,
    ]);
    let p = policy(&r, "hostile_trap.wasm");
    assert_eq!(p["policy_failures"]["trap"], 10, "{p}");
    assert_eq!(p["fallback_decisions"], 10);
    assert_eq!(p["placed"], 40, "the fallback placed the attacks: {p}");
    assert!(
        p["policy_failure_example"]
            .as_str()
            .is_some_and(|e| e.contains("deliberate trap")),
        "{p}"
    );
    // With --fallback pending the attacks are never placed.
    let r = sim_json(&[
        "--workload",
        &workload,
        "--cluster",
        "12x1024:2048",
        "--policy",
        &trap,
        "--fallback",
        "pending",
    ]);
    let p = policy(&r, "hostile_trap.wasm");
    assert_eq!(p["unplaced_at_end"], 10, "{p}");
    assert_eq!(p["failures"]["POLICY"], 10, "{p}");
}

#[test]
fn sim_replaces_the_tasks_of_a_lost_host_and_stops_placing_on_a_drained_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = write(
        dir.path(),
        "c.json",
        r#"{"instances": [{"name": "gen", "count": 3, "cpu": 1024, "memory": 2048, "zones": ["a", "b", "c"]}],
            "events": [{"time": 10, "kind": "lose", "shape": "gen", "count": 1},
                       {"time": 20, "kind": "drain", "shape": "gen", "count": 1},
                       {"time": 30, "kind": "join", "shape": "gen", "count": 1}]}"#,
    );
    let mut lines = String::new();
    for _ in 0..6 {
        lines.push_str("{\"time\": 0, \"cpu\": 256, \"memory\": 512, \"service\": \"web\"}\n");
    }
    // Arrive while one host is lost and one drains: only one takes tasks.
    for _ in 0..4 {
        lines.push_str("{\"time\": 25, \"cpu\": 256, \"memory\": 512, \"service\": \"web\"}\n");
    }
    let workload = write(dir.path(), "w.jsonl", &lines);
    let r = sim_json(&[
        "--workload",
        &workload,
        "--cluster",
        &cluster,
        "--policy",
        "native:spread",
    ]);
    let p = policy(&r, "native:spread");
    // Spread put two on each host; the lost host's two go elsewhere.
    assert_eq!(p["lost_tasks"], 2, "{p}");
    // 6 + 2 placed again + 4 later: the late ones wait for the joining host.
    assert_eq!(p["placed"], 12, "{p}");
    assert_eq!(p["unplaced_at_end"], 0, "{p}");
    assert!(p["pending_s"]["max"].as_f64().unwrap_or(0.0) >= 5.0, "{p}");
}

#[test]
fn sim_names_what_is_wrong_with_its_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"time\": 0, \"cpu\": 1, \"memory\": 1}\n{\"time\": 1, \"cpu\": 1}\n",
    );
    let out = berth(&["sim", "--workload", &bad, "--cluster", "1x1:1"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("line 2") && err.contains("memory"), "{err}");
    let out = berth(&["sim", "--workload", "synthetic:nope", "--cluster", "1x1:1"]);
    assert!(
        text(&out.stderr).contains("uniform, batch, mixed"),
        "{}",
        text(&out.stderr)
    );
    let out = berth(&[
        "sim",
        "--workload",
        "synthetic:uniform",
        "--cluster",
        "1x1:1",
        "--policy",
        "native:best",
    ]);
    assert!(
        text(&out.stderr).contains("native:binpack"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sim_converts_a_clusterdata2019_trace_and_runs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = write(
        dir.path(),
        "instance_events.json",
        concat!(
            "{\"time\": \"1000000\", \"type\": \"0\", \"collection_id\": \"9\", \"instance_index\": \"0\", \"resource_request\": {\"cpus\": 0.125, \"memory\": 0.0625}}\n",
            "{\"time\": \"2000000\", \"type\": \"3\", \"collection_id\": \"9\", \"instance_index\": \"0\"}\n",
            "{\"time\": \"32000000\", \"type\": \"6\", \"collection_id\": \"9\", \"instance_index\": \"0\"}\n",
            "{\"time\": \"1500000\", \"type\": \"0\", \"collection_id\": \"9\", \"instance_index\": \"1\", \"resource_request\": {\"cpus\": 0.125, \"memory\": 0.0625}}\n",
        ),
    );
    let out = berth(&["sim", "convert", "--from", "clusterdata2019", &trace]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = text(&out.stdout);
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(lines.contains("\"duration\":30.0"), "{lines}");
    let workload = write(dir.path(), "w.jsonl", &lines);
    let r = sim_json(&["--workload", &workload, "--cluster", "2x16384:65536"]);
    assert_eq!(policy(&r, "native:binpack")["placed"], 2, "{r}");
}
