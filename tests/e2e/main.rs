//! End-to-end tests: they start the real `berth` binary, as a user would.

// A fuzz build (docs/fuzzing.md) instruments every crate; linking the fuzzer
// here gives this test binary the coverage symbols it then needs.
#[cfg(fuzzing)]
extern crate bolero as _;

mod api;
mod chaos;
mod cli;
mod console;
mod console_ui;
mod docker;
mod etcd;
mod explain;
mod full_disk;
mod harness;
mod hostile;
mod hosts;
mod house_style;
mod policies;
mod registry;
mod remote;
mod second_day;
mod services;
mod shadow;
mod sim;
mod soak;
mod story;
mod taskdefs;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `berth` binary cargo built for these tests.
fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

fn berth(args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .env("BERTH_LOG", "warn")
        .output()
        .expect("berth runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_lists_the_commands() {
    let out = berth(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in ["up", "bench"] {
        assert!(help.contains(cmd), "`berth --help` lacks `{cmd}`:\n{help}");
    }
}

#[test]
fn up_creates_then_reopens_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let first = berth(&["up", "--check", "--data-dir", data]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let first = text(&first.stdout);
    assert!(first.contains("(created, schema 1)"), "{first}");
    let second = text(&berth(&["up", "--check", "--data-dir", data]).stdout);
    assert!(second.contains("(opened, schema 1)"), "{second}");
    // The page cache's bound is the operator's: any size opens the store,
    // none at all is refused by name.
    let small = berth(&["up", "--check", "--data-dir", data, "--store-cache", "4"]);
    assert!(small.status.success(), "{}", text(&small.stderr));
    let none = berth(&["up", "--check", "--data-dir", data, "--store-cache", "0"]);
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("--store-cache"),
        "{}",
        text(&none.stderr)
    );
    // Private: the directory to its owner, the store file too.
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    let data = std::path::Path::new(data);
    assert_eq!(mode(data), 0o700);
    assert_eq!(mode(&data.join("berth.redb")), 0o600);
}

#[test]
fn up_runs_until_sigterm_and_holds_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let mut child = Command::new(berth_bin())
        .args(["up", "--data-dir", data, "--listen", "127.0.0.1:0"])
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth up starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = lines
        .by_ref()
        .take(2)
        .map(|l| l.expect("line"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(ready.contains("running"), "{ready}");

    // A second server on the same data directory is refused, not let in to corrupt it.
    let other = berth(&["up", "--check", "--data-dir", data]);
    assert!(
        !other.status.success(),
        "a second berth opened a store in use"
    );
    let err = text(&other.stderr);
    assert!(err.contains("opening the store at"), "{err}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "berth up did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "berth up exited with {status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[test]
fn up_names_a_bad_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let out = berth(&["up", "--check", "--data-dir", file.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("creating data directory {}", file.display())),
        "{err}"
    );
}

#[test]
fn bench_placement_prints_json_cases() {
    let out = berth(&[
        "bench",
        "placement",
        "--instances",
        "300",
        "--strategy",
        "binpack,spread-binpack",
        "--seconds",
        "0.05",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cases: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(cases.len(), 4, "two strategies times counts 1 and 10");
    for c in &cases {
        assert_eq!(c["instances"], 300);
        assert!(
            c["decisions_per_sec"].as_f64().is_some_and(|d| d > 0.0),
            "{c}"
        );
        assert_eq!(c["failures"], 0, "the synthetic cluster has room: {c}");
    }
    let counts: Vec<u64> = cases.iter().filter_map(|c| c["count"].as_u64()).collect();
    assert_eq!(counts, vec![1, 10, 1, 10]);
}

#[test]
fn bench_placement_compares_the_zone_guard_plugin_with_native_spread() {
    let policy = policies::plugin_path("zone_guard");
    let out = berth(&[
        "bench",
        "placement",
        "--instances",
        "300",
        "--strategy",
        "spread",
        "--count",
        "1",
        "--seconds",
        "0.05",
        "--output",
        "json",
        "--policy",
        policy.to_str().expect("utf-8 path"),
        "--compare",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cases: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(cases.len(), 2, "native spread, then the policy: {cases:?}");
    assert_eq!(cases[0]["strategy"], "spread");
    let p = &cases[1];
    assert_eq!(p["strategy"], "zone_guard.wasm", "{p}");
    // Figures are the bench's to record, not the test's to judge (wall
    // time on a shared machine); that they are there is.
    assert!(p["ratio"].as_f64().is_some_and(|r| r > 0.0), "{p}");
    assert!(p["cold_start_ms"].as_f64().is_some_and(|c| c > 0.0), "{p}");
    assert!(p["decisions"].as_u64().is_some_and(|d| d > 0), "{p}");
}

#[test]
fn bench_rejects_unknown_strategy() {
    let out = berth(&["bench", "placement", "--strategy", "cheapest"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--strategy cheapest: not one of"),
        "{}",
        text(&out.stderr)
    );
}
