//! The operator's console through the real binary: `GET /metrics` read by
//! a Prometheus text-format parser while tasks run, the audit log (`berth
//! audit`) across a restart, and `--log-format json`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use berth_agent::testing::TEST_IMAGE;
use serde_json::{Value, json};

use super::harness::{KEY, SECRET, Up, docker_ready};
use super::{berth_bin, text};

/// `GET /metrics`, parsed as Prometheus parses it.
fn scrape(up: &Up) -> prometheus_parse::Scrape {
    let addr = up
        .metrics
        .as_deref()
        .expect("berth up printed its metrics address");
    let mut s = TcpStream::connect(addr).expect("metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("headers end");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

/// The value of the sample `name` with `labels` (among others), 0 if absent.
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => {
                panic!("{name} is not a single value")
            }
        })
        .sum()
}

/// Scrapes until `ok` holds of a scrape, or panics after 60 s with the last.
fn scrape_until(
    up: &Up,
    what: &str,
    ok: impl Fn(&prometheus_parse::Scrape) -> bool,
) -> prometheus_parse::Scrape {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = scrape(up);
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {what}: {:?}",
            s.samples
                .iter()
                .filter(|x| x.metric.starts_with("berth_"))
                .map(|x| format!("{} {} {:?}", x.metric, x.labels, x.value))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn register(up: &Up, family: &str, memory: u64) {
    let defs = json!([{ "name": "app", "image": TEST_IMAGE, "memory": memory,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"] }]);
    up.aws(&[
        "register-task-definition",
        "--family",
        family,
        "--container-definitions",
        &defs.to_string(),
    ]);
}

fn run_tasks(up: &Up, family: &str, count: u32) -> Vec<String> {
    let run = up.aws(&[
        "run-task",
        "--task-definition",
        family,
        "--count",
        &count.to_string(),
    ]);
    run["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["taskArn"].as_str().expect("arn").to_owned())
        .collect()
}

#[test]
fn metrics_move_as_tasks_run_and_stop() {
    if !docker_ready() {
        return;
    }
    let up = Up::start_args(&[], &["--metrics-listen", "127.0.0.1:0"]);
    let _guard = up.guard_containers();
    let cluster = [("cluster", "default")];

    let before = scrape_until(&up, "the agent connected and heard", |s| {
        value(
            s,
            "berth_container_instances",
            &[("cluster", "default"), ("agent_connected", "true")],
        ) == 1.0
            && value(s, "berth_agent_heartbeats_total", &[]) >= 1.0
    });
    let scheduled = [("policy", "native"), ("result", "scheduled")];
    assert_eq!(
        value(&before, "berth_placement_attempts_total", &scheduled),
        0.0
    );
    assert_eq!(
        value(
            &before,
            "berth_tasks",
            &[("cluster", "default"), ("state", "RUNNING")]
        ),
        0.0
    );

    let family = format!("e2e-metrics-{}", std::process::id());
    register(&up, &family, 16);
    let arns = run_tasks(&up, &family, 2);
    assert_eq!(arns.len(), 2);
    for arn in &arns {
        up.until(arn, "RUNNING");
    }
    let running = scrape_until(&up, "two RUNNING tasks", |s| {
        value(
            s,
            "berth_tasks",
            &[("cluster", "default"), ("state", "RUNNING")],
        ) == 2.0
    });
    assert_eq!(
        value(&running, "berth_placement_attempts_total", &scheduled),
        2.0
    );
    assert_eq!(
        value(
            &running,
            "berth_placement_attempt_duration_seconds_count",
            &scheduled
        ),
        1.0,
        "one placement call placed both"
    );
    assert_eq!(
        value(&running, "berth_pending_tasks", &cluster),
        0.0,
        "nothing left PENDING"
    );
    assert!(
        value(
            &running,
            "berth_api_requests_total",
            &[("operation", "RunTask"), ("code", "Success")]
        ) >= 1.0
    );
    assert!(
        value(
            &running,
            "berth_api_request_duration_seconds_count",
            &[("operation", "RunTask")]
        ) >= 1.0
    );

    // A task no instance holds: unschedulable, and the refusal is counted by code.
    let big = format!("e2e-metrics-big-{}", std::process::id());
    register(&up, &big, 100_000_000);
    let refused = up.aws(&["run-task", "--task-definition", &big]);
    assert_eq!(
        refused["failures"][0]["reason"], "RESOURCE:MEMORY",
        "{refused}"
    );
    let bogus = up.aws_output(&["run-task", "--task-definition", "no-such-family-e2e"]);
    assert!(!bogus.status.success());
    let after = scrape(&up);
    assert_eq!(
        value(
            &after,
            "berth_placement_attempts_total",
            &[("policy", "native"), ("result", "unschedulable")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "berth_api_requests_total",
            &[("operation", "RunTask"), ("code", "ClientException")]
        ),
        1.0,
        "{}",
        text(&bogus.stderr)
    );

    for arn in &arns {
        up.aws(&["stop-task", "--task", arn]);
    }
    for arn in &arns {
        up.until(arn, "STOPPED");
    }
    scrape_until(&up, "no task RUNNING", |s| {
        value(
            s,
            "berth_tasks",
            &[("cluster", "default"), ("state", "RUNNING")],
        ) == 0.0
    });
}

/// `berth ARGS...` as a client of `up`, with its credentials.
fn berth_client(up: &Up, args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .env("BERTH_ENDPOINT", format!("http://{}", up.addr))
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("BERTH_LOG", "warn")
        .env_remove("BERTH_DATA_DIR")
        .output()
        .expect("berth runs")
}

pub(super) fn audit(up: &Up, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--output", "json"];
    all.extend_from_slice(args);
    let out = berth_client(up, &all);
    assert!(out.status.success(), "berth {all:?}: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["events"].as_array().expect("events").clone()
}

#[test]
fn the_audit_log_records_calls_and_failures_across_a_restart() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start_in(dir.path());
    let guard = up.guard_containers();
    let family = format!("e2e-audit-{}", std::process::id());
    register(&up, &family, 16);
    let arns = run_tasks(&up, &family, 1);
    let failed = up.aws_output(&["run-task", "--task-definition", "no-such-family-e2e"]);
    assert!(!failed.status.success());
    // Reads are not audited.
    up.aws(&["list-tasks"]);

    let check = |up: &Up| {
        let runs = audit(up, &["--op", "RunTask", "--since", "1h"]);
        assert_eq!(runs.len(), 2, "{runs:?}");
        let ok = &runs[0];
        assert_eq!(ok["result"], "Success", "{ok}");
        assert_eq!(ok["accessKeyId"], KEY);
        let targets: Vec<&str> = ok["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(targets.contains(&arns[0].as_str()), "{ok}");
        assert!(targets.contains(&family.as_str()), "{ok}");
        assert!(
            ok["requestId"].as_str().is_some_and(|r| r.len() == 36),
            "{ok}"
        );
        let bad = &runs[1];
        assert_eq!(bad["result"], "ClientException", "{bad}");
        assert!(
            bad["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("no-such-family-e2e")),
            "{bad}"
        );
        let all = audit(up, &[]);
        assert!(
            all.iter()
                .any(|e| e["operation"] == "RegisterTaskDefinition")
        );
        assert!(all.iter().all(|e| e["operation"] != "ListTasks"), "{all:?}");
    };
    check(&up);
    up.aws(&["stop-task", "--task", &arns[0]]);
    up.until(&arns[0], "STOPPED");
    drop(guard);
    drop(up);

    let up = Up::start_in(dir.path());
    check(&up);
    let stops = audit(&up, &["--op", "StopTask"]);
    assert_eq!(stops.len(), 1, "{stops:?}");
    // The table, for people, and a bad age named.
    let out = berth_client(&up, &["audit", "--op", "RunTask"]);
    let table = text(&out.stdout);
    assert!(
        out.status.success() && table.starts_with("TIME") && table.contains("ClientException"),
        "{table}"
    );
    let out = berth_client(&up, &["audit", "--since", "5y"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("`5y` is not an age"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn log_format_json_writes_one_object_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("berth.log");
    let data = dir.path().join("data");
    let up = Up::start_in_logging(
        &data,
        &[("BERTH_LOG", "info")],
        &["--log-format", "json"],
        &log,
    );
    // A refused call is logged (at debug) and an unknown path too; info
    // lines come from the start (the agent, the schedulers).
    let _ = up.aws_output(&["list-clusters"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let written = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = written.lines().map(str::to_owned).collect();
        if !lines.is_empty() {
            break lines;
        }
        assert!(Instant::now() < deadline, "berth up logged nothing at info");
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(up);
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
}
