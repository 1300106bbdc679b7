//! Issue 15, the policy author's second day, through the binary: policies
//! named `NAME@VERSION` (a bare name naming several refused with the
//! list), `install` printing the full sha256, failures and the fallback in
//! force shown by `policy show`/`ls`, `berth run` and `services --wait`
//! saying when the fallback placed a task or left it PENDING, statistics
//! that survive a restart and their reset, `bench placement --cluster`
//! and `--policy-log`, `berth up --zones`, the built-in attributes
//! refused by PutAttributes, `instances ls` with zones and attributes, and
//! `berth down`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_agent::testing::TEST_IMAGE;
use serde_json::{Value, json};

use super::cli::cli;
use super::harness::{Up, docker_ready};
use super::policies::plugin_path;
use super::{berth_bin, text};

/// Runs and expects success; (stdout, stderr).
pub(super) fn ok(up: &Up, args: &[&str]) -> (String, String) {
    let out = cli(up, args);
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "berth {args:?} exited {:?}: {e}{o}",
        out.status.code()
    );
    (o, e)
}

fn json_of(up: &Up, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let (o, _) = ok(up, &all);
    serde_json::from_str(&o).unwrap_or_else(|e| panic!("berth {args:?}: not JSON ({e}): {o}"))
}

/// Runs and expects exit status `code`; stderr.
fn fails(up: &Up, args: &[&str], code: i32) -> String {
    let out = cli(up, args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "berth {args:?}: {err}");
    err
}

/// The value after `sha256 ` in `install`'s answer.
fn installed_sha(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("sha256 "))
        .unwrap_or_else(|| panic!("install printed no sha256 line: {stdout}"))
        .trim()
        .to_owned()
}

/// A copy of a shipped plugin whose `info` says another version: the same
/// code, another component (another sha256).
fn another_version(plugin: &str, name: &str, from: &str, to: &str, dir: &Path) -> String {
    let mut bytes = std::fs::read(plugin_path(plugin)).expect("plugin");
    let needle = format!("{name}{from}");
    let at: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "`{needle}` once in {plugin}.wasm");
    let start = at[0] + name.len();
    bytes[start..start + to.len()].copy_from_slice(to.as_bytes());
    let path = dir.join(format!("{plugin}-{to}.wasm"));
    std::fs::write(&path, bytes).expect("write");
    path.to_str().expect("utf-8").to_owned()
}

pub(super) fn stats(up: &Up, policy: &str) -> Value {
    json_of(up, &["policy", "show", policy])["policy"].clone()
}

/// Cluster `name` with `instances` registered instances of 4 vCPU and 8
/// GiB that no agent runs (placement is all that is looked at), and the
/// task family `attack` (16 CPU units, 32 MiB) registered.
pub(super) fn agentless_cluster(up: &Up, name: &str, instances: usize, work: &Path) {
    up.aws(&["create-cluster", "--cluster-name", name]);
    let resources = r#"[{"name":"CPU","type":"INTEGER","integerValue":4096},{"name":"MEMORY","type":"INTEGER","integerValue":8192}]"#;
    for _ in 0..instances {
        up.aws(&[
            "register-container-instance",
            "--cluster",
            name,
            "--total-resources",
            resources,
        ]);
    }
    let td = work.join("attack.json");
    std::fs::write(
        &td,
        json!({"family": "attack", "containerDefinitions": [{"name": "c", "image": "x", "cpu": 16, "memory": 32}]})
            .to_string(),
    )
    .expect("write");
    ok(up, &["register", td.to_str().expect("utf-8")]);
}

#[test]
fn policies_are_named_by_version_and_their_failures_and_statistics_are_kept() {
    let data = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let mut up = Up::start_in(data.path());
    agentless_cluster(&up, "pol", 2, work.path());

    // Install prints the full sha256, as sdk/README.md says.
    let v1_path = plugin_path("binpack");
    let (out, _) = ok(
        &up,
        &["policy", "install", v1_path.to_str().expect("utf-8")],
    );
    assert!(out.contains("installed binpack@0.1.0"), "{out}");
    let v1 = installed_sha(&out);
    assert_eq!(v1.len(), 64, "{out}");
    let v2_path = another_version("binpack", "binpack", "0.1.0", "0.2.0", work.path());
    let (out, _) = ok(&up, &["policy", "install", &v2_path]);
    assert!(out.contains("installed binpack@0.2.0"), "{out}");
    let v2 = installed_sha(&out);

    // A bare name naming two versions is refused with the list, everywhere.
    let listed = format!(
        "ambiguous: binpack 0.1.0 ({}...), 0.2.0 ({}...)",
        &v1[..8],
        &v2[..8]
    );
    for args in [
        &["policy", "show", "binpack"][..],
        &["policy", "activate", "binpack", "--cluster", "pol"],
        &["policy", "rm", "binpack"],
        &["run", "attack", "--cluster", "pol", "--policy", "binpack"],
    ] {
        let err = fails(&up, args, 1);
        assert!(err.contains(&listed), "berth {args:?}: {err}");
    }
    // NAME@VERSION names one, in every command and in the API's tag.
    assert_eq!(stats(&up, "binpack@0.2.0")["sha256"], v2.as_str());
    assert_eq!(stats(&up, &v1[..8])["version"], "0.1.0");
    ok(
        &up,
        &["policy", "activate", "binpack@0.2.0", "--cluster", "pol"],
    );
    assert_eq!(
        stats(&up, "binpack@0.2.0")["activeIn"],
        json!(["cluster/pol"])
    );
    ok(
        &up,
        &[
            "run",
            "attack",
            "--cluster",
            "pol",
            "--policy",
            "binpack@0.1.0",
        ],
    );
    assert!(stats(&up, "binpack@0.1.0")["stats"]["decisions"].as_u64() >= Some(1));
    ok(&up, &["policy", "deactivate", "--cluster", "pol"]);
    let err = fails(&up, &["policy", "show", "binpack@9.9.9"], 1);
    assert!(err.contains("PolicyNotFoundException"), "{err}");
    ok(&up, &["policy", "rm", "binpack@0.1.0"]);
    // One version left: the bare name is enough again.
    assert_eq!(stats(&up, "binpack")["sha256"], v2.as_str());

    // A failing policy: `run` says the native fallback placed the task,
    // `show` and `ls` say which fallback is in force and list the failure.
    ok(
        &up,
        &[
            "policy",
            "install",
            plugin_path("hostile_trap").to_str().expect("utf-8"),
        ],
    );
    ok(
        &up,
        &["policy", "activate", "hostile-trap", "--cluster", "pol"],
    );
    let (ls, _) = ok(&up, &["policy", "ls"]);
    assert!(ls.contains("cluster/pol (fallback native)"), "{ls}");
    let (_, err) = ok(&up, &["run", "attack", "--cluster", "pol"]);
    assert!(
        err.contains("placement policy hostile-trap@0.1.0 failed (trap")
            && err.contains("placed by the native fallback"),
        "{err}"
    );
    let placed = json_of(&up, &["run", "attack", "--cluster", "pol"]);
    let attrs = &placed["tasks"][0]["attributes"];
    assert!(
        attrs.as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["name"] == "berth.policy-fallback" && a["value"] == "native")),
        "{placed}"
    );
    assert!(
        placed["tasks"][0]["containerInstanceArn"].is_string(),
        "{placed}"
    );

    ok(
        &up,
        &[
            "policy",
            "activate",
            "hostile-trap",
            "--cluster",
            "pol",
            "--fallback",
            "pending",
        ],
    );
    let (_, err) = ok(&up, &["run", "attack", "--cluster", "pol"]);
    assert!(err.contains("left PENDING"), "{err}");
    let pending = json_of(&up, &["ps", "--cluster", "pol"])["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["containerInstanceArn"].is_null())
        .expect("a task left PENDING without an instance")
        .clone();
    assert_eq!(pending["lastStatus"], "PENDING", "{pending}");
    // Stopped, so the queue stops asking the policy while we count.
    ok(
        &up,
        &[
            "stop",
            pending["taskArn"].as_str().expect("arn"),
            "--cluster",
            "pol",
        ],
    );
    let (show, _) = ok(&up, &["policy", "show", "hostile-trap"]);
    assert!(
        show.contains("cluster/pol (fallback pending)") && show.contains("last failures"),
        "{show}"
    );
    let before = stats(&up, "hostile-trap");
    let traps = before["stats"]["failures"]["trap"].as_u64().expect("traps");
    assert!(traps >= 3, "{before}");
    let failures = before["recentFailures"].as_array().expect("failures");
    assert_eq!(failures[0]["kind"], "trap", "{before}");
    assert!(failures[0]["task"].is_string(), "{before}");
    // The guest's panic, forwarded by the SDK's hook, names its message and place.
    assert!(
        failures[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("panicked at") && m.contains("deliberate trap")),
        "{before}"
    );
    assert!(show.contains("deliberate trap"), "{show}");
    assert!(
        failures[0]["at"].as_f64().is_some_and(|t| t > 1.7e9),
        "{before}"
    );

    // Statistics and failures survive a restart...
    drop(up);
    up = Up::start_in(data.path());
    let after = stats(&up, "hostile-trap");
    assert_eq!(after["stats"]["failures"], before["stats"]["failures"]);
    assert_eq!(after["stats"]["decisions"], before["stats"]["decisions"]);
    assert_eq!(after["recentFailures"], before["recentFailures"]);
    assert_eq!(after["activations"][0]["fallback"], "pending", "{after}");
    // ... until reset, which is kept too.
    let (out, _) = ok(&up, &["policy", "reset-stats", "hostile-trap@0.1.0"]);
    assert!(out.contains("reset"), "{out}");
    drop(up);
    up = Up::start_in(data.path());
    let reset = stats(&up, "hostile-trap");
    assert_eq!(reset["stats"]["decisions"], 0, "{reset}");
    assert_eq!(reset["stats"]["failures"]["trap"], 0, "{reset}");
    assert_eq!(reset["recentFailures"], json!([]), "{reset}");
}

#[test]
fn services_say_when_the_fallback_placed_and_down_stops_every_task() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let instance = up.until_any_instance();
    let work = tempfile::tempdir().expect("tempdir");
    let td = work.path().join("attack.json");
    std::fs::write(
        &td,
        json!({"family": "attack", "containerDefinitions": [{"name": "app", "image": TEST_IMAGE, "memory": 16,
            "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]}]})
        .to_string(),
    )
    .expect("write");
    ok(&up, &["register", td.to_str().expect("utf-8")]);
    ok(
        &up,
        &[
            "policy",
            "install",
            plugin_path("hostile_trap").to_str().expect("utf-8"),
        ],
    );
    ok(&up, &["policy", "activate", "hostile-trap"]);
    let (_, err) = ok(
        &up,
        &[
            "services",
            "create",
            "web",
            "--task-definition",
            "attack",
            "--count",
            "1",
            "--wait",
            "--timeout",
            "90",
        ],
    );
    assert!(
        err.contains("berth: note: (service web) placement policy hostile-trap@0.1.0 failed (trap")
            && err.contains("the native fallback placed 1 task"),
        "{err}"
    );
    ok(&up, &["run", "attack", "--wait", "--timeout", "60"]);
    // With the pending fallback the service's task waits, and --wait says why.
    ok(
        &up,
        &[
            "policy",
            "activate",
            "hostile-trap",
            "--fallback",
            "pending",
        ],
    );
    let err = fails(
        &up,
        &[
            "services",
            "create",
            "held",
            "--task-definition",
            "attack",
            "--count",
            "1",
            "--wait",
            "--timeout",
            "4",
        ],
        5,
    );
    assert!(
        err.contains(
            "berth: note: (service held) placement policy hostile-trap@0.1.0 failed (trap"
        ) && err.contains("1 task(s) left to place at the next attempt (fallback pending)"),
        "{err}"
    );
    let running = || {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=berth.container-instance={instance}"))
            .output()
            .expect("docker ps");
        text(&out.stdout).lines().count()
    };
    assert_eq!(running(), 2, "the service's task and the batch task");

    // `berth down`: the tasks' containers stopped and removed, then the server.
    let (out, _) = ok(&up, &["down"]);
    assert!(out.contains("berth: stopped"), "{out}");
    assert_eq!(running(), 0, "berth down left containers");
    let err = fails(&up, &["ps"], 3);
    assert!(!err.is_empty());
}

#[test]
fn zones_spread_local_instances_and_builtin_attributes_are_the_agents() {
    if !docker_ready() {
        return;
    }
    let up = Up::start_args(&[], &["--instances", "3", "--zones", "zone-a,zone-b"]);
    let arns = up.until_instances(3);
    let zone_of = |arn: &str| {
        up.instance(arn)["attributes"]
            .as_array()
            .expect("attributes")
            .iter()
            .find(|a| a["name"] == "ecs.availability-zone")
            .and_then(|a| a["value"].as_str().map(str::to_owned))
            .expect("zone")
    };
    let mut zones: Vec<String> = arns.iter().map(|a| zone_of(a)).collect();
    zones.sort();
    assert_eq!(zones, ["zone-a", "zone-a", "zone-b"]);

    // PutAttributes refuses the built-in attributes, as ECS does.
    let refused = up.aws_output(&[
        "put-attributes",
        "--attributes",
        &format!(
            "name=ecs.availability-zone,value=elsewhere,targetId={}",
            arns[0]
        ),
    ]);
    assert!(!refused.status.success());
    let err = text(&refused.stderr);
    assert!(
        err.contains("InvalidParameterException") && err.contains("built-in attribute"),
        "{err}"
    );
    up.aws(&[
        "put-attributes",
        "--attributes",
        &format!("name=maintenance,targetId={}", arns[0]),
    ]);
    let (table, _) = ok(&up, &["instances", "ls"]);
    let header = table.lines().next().expect("header");
    assert!(
        header.contains("ZONE") && header.contains("ATTRIBUTES"),
        "{table}"
    );
    assert_eq!(table.matches("zone-a").count(), 2, "{table}");
    assert_eq!(table.matches("zone-b").count(), 1, "{table}");
    assert!(table.contains("maintenance"), "{table}");

    // A zone that is no zone name is refused at start, named.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(berth_bin())
        .args(["up", "--listen", "127.0.0.1:0", "--zones", "a,b c"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("BERTH_LOG", "warn")
        .output()
        .expect("berth up");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("--zones: `b c`"), "{err}");
}

#[test]
fn bench_placement_drops_policy_logs_unless_asked_and_takes_a_cluster_file() {
    let work = tempfile::tempdir().expect("tempdir");
    let cluster = work.path().join("cluster.json");
    std::fs::write(
        &cluster,
        json!({
            "instances": [
                {"count": 4, "cpu": 4096, "memory": 8192, "zone": "a"},
                {"count": 2, "cpu": 4096, "memory": 8192, "zone": "b", "attributes": {"maintenance": null}}
            ],
            // The hostile plugin floods its log on tasks of this family.
            "task": {"family": "attack", "cpu": 64, "memory": 64}
        })
        .to_string(),
    )
    .expect("write");
    let flood = plugin_path("hostile_log_flood");
    let bench = |extra: &[&str], env: &[(&str, &str)]| {
        let started = Instant::now();
        let out = Command::new(berth_bin())
            .args(["bench", "placement", "--policy"])
            .arg(&flood)
            .arg("--cluster")
            .arg(&cluster)
            .args(["--seconds", "0.2", "--count", "1", "--output", "json"])
            .args(extra)
            .env_remove("BERTH_LOG")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .output()
            .expect("berth bench");
        assert!(started.elapsed() < Duration::from_secs(120));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let first: Value =
            serde_json::from_str(text(&out.stdout).lines().next().expect("a case")).expect("json");
        assert_eq!(first["instances"], 6, "{first}");
        text(&out.stderr)
    };
    let err = bench(&[], &[]);
    assert!(!err.contains("flood line"), "dropped by default: {err}");
    let log = work.path().join("policy.log");
    let err = bench(&["--policy-log", log.to_str().expect("utf-8")], &[]);
    assert!(!err.contains("flood line"), "{err}");
    let logged = std::fs::read_to_string(&log).expect("policy log");
    assert!(logged.contains("flood line"), "{logged}");
    let err = bench(&["--policy-log", "-"], &[]);
    assert!(err.contains("flood line"), "{err}");
    let err = bench(&["--policy-log", "-"], &[("RUST_LOG", "warn")]);
    assert!(!err.contains("flood line"), "RUST_LOG=warn: {err}");

    let bad = work.path().join("bad.json");
    std::fs::write(&bad, r#"{"instances": [{"cpu": 0, "memory": 1}]}"#).expect("write");
    let out = Command::new(berth_bin())
        .args(["bench", "placement", "--cluster"])
        .arg(&bad)
        .output()
        .expect("berth bench");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("instances[0]") && err.contains("bad.json"),
        "{err}"
    );
}
