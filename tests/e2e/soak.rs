//! `berth bench soak` for a few seconds against `berth server` and a
//! simulated fleet (`berth agent --simulate`), no Docker: the command
//! seeds, loads, reports and compares with a baseline run, so it cannot
//! rot between the soaks of issue 12.

use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use super::harness::{KEY, SECRET, Up};
use super::{berth_bin, text};

/// `berth agent --simulate N`; killed when dropped.
struct Simulated(Child);

impl Drop for Simulated {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn soak(server: &Up, data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args([
            "bench",
            "soak",
            "--endpoint",
            &format!("http://{}", server.addr),
        ])
        .args([
            "--instances",
            "3",
            "--server-pid",
            &server.pid().to_string(),
        ])
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("BERTH_LOG", "warn")
        .output()
        .expect("berth bench soak runs")
}

#[test]
fn bench_soak_seeds_loads_and_compares_with_a_fresh_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    std::fs::create_dir(&data).expect("server dir");
    let server = Up::server_in(&data);
    let _fleet = Simulated(
        Command::new(berth_bin())
            .args([
                "agent",
                "--simulate",
                "3",
                "--server",
                &format!("http://{}", server.addr),
            ])
            .arg("--data-dir")
            .arg(dir.path().join("agent"))
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("BERTH_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("berth agent --simulate starts"),
    );
    let fresh = dir.path().join("fresh.json");
    let load = [
        "--describe-connections",
        "2",
        "--run-connections",
        "2",
        "--seed-connections",
        "4",
        "--window",
        "1s",
        "--block",
        "2s",
    ];
    let soaked = dir.path().join("soak.json");
    let (fresh_s, soaked_s) = (
        fresh.to_str().expect("utf-8"),
        soaked.to_str().expect("utf-8"),
    );
    let mut args = load.to_vec();
    args.extend([
        "--seed-stopped",
        "0",
        "--seed-services",
        "0",
        "--duration",
        "3s",
    ]);
    args.extend(["--summary", fresh_s]);
    let out = soak(&server, &data, &args);
    assert!(
        out.status.success(),
        "fresh run: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let mut args = load.to_vec();
    args.extend([
        "--seed-stopped",
        "45",
        "--seed-services",
        "3",
        "--duration",
        "4s",
        "--baseline",
        fresh_s,
        "--summary",
        soaked_s,
    ]);
    let out = soak(&server, &data, &args);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "soak: {stdout}\n{}",
        text(&out.stderr)
    );
    for line in [
        "seeded 3 services",
        "seeded 45 stopped tasks",
        "| whole run | RunTask |",
        "RSS: most",
        "p99 RunTask: x",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    let s: Value = serde_json::from_slice(&std::fs::read(&soaked).expect("summary")).expect("JSON");
    assert_eq!(s["seeding"]["stopped"], 45);
    for op in ["DescribeTasks", "RunTask", "StopTask"] {
        let o = &s["run"]["ops"][op];
        assert!(o["requests"].as_u64() > Some(0), "{op}: {o}");
        assert_eq!(o["errors"], 0, "{op}: {o}");
        assert!(
            s["p99_ratio"][op].as_f64() > Some(0.0),
            "{op}: {}",
            s["p99_ratio"]
        );
    }
    assert!(
        s["rss"]["last_max_mib"].as_f64() > Some(0.0),
        "{}",
        s["rss"]
    );
    assert!(
        s["blocks"].as_array().is_some_and(|b| b.len() >= 2),
        "{}",
        s["blocks"]
    );
}
