//! berth's own client commands against a running `berth up`: services with
//! `--wait` and its progress, placement policies, logs over the API on real
//! Docker, `--output json` shapes, and the exit statuses scripts rely on.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_agent::testing::TEST_IMAGE;
use serde_json::{Value, json};

use super::harness::{KEY, SECRET, Up, docker_ready};
use super::{berth_bin, text};

/// `berth ARGS...` as a client of `up`, with its credentials in the environment.
pub(super) fn client(up: &Up) -> Command {
    let mut c = Command::new(berth_bin());
    c.env("BERTH_ENDPOINT", format!("http://{}", up.addr))
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("BERTH_LOG", "warn")
        .env_remove("BERTH_DATA_DIR");
    c
}

pub(super) fn cli(up: &Up, args: &[&str]) -> Output {
    client(up).args(args).output().expect("berth runs")
}

/// Runs and expects success; the JSON on stdout.
fn cli_json(up: &Up, args: &[&str]) -> Value {
    let out = cli(up, args);
    assert!(
        out.status.success(),
        "berth {args:?} exited {:?}: {}{}",
        out.status.code(),
        text(&out.stderr),
        text(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "berth {args:?}: stdout is not one JSON value ({e}): {}",
            text(&out.stdout)
        )
    })
}

/// Runs and expects exit status `code` with `needle` on stderr.
fn fails(up: &Up, args: &[&str], code: i32, needle: &str) -> String {
    let out = cli(up, args);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "berth {args:?}: {err}{}",
        text(&out.stdout)
    );
    assert!(
        err.contains(needle),
        "berth {args:?}: stderr lacks `{needle}`: {err}"
    );
    err
}

/// Registers a task definition from a file, through `berth register`.
fn register(up: &Up, dir: &Path, family: &str, containers: Value) -> String {
    let file = dir.join(format!("{family}.json"));
    std::fs::write(
        &file,
        json!({"family": family, "containerDefinitions": containers}).to_string(),
    )
    .expect("write");
    let v = cli_json(
        up,
        &[
            "register",
            file.to_str().expect("utf-8"),
            "--output",
            "json",
        ],
    );
    v["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("arn")
        .to_owned()
}

fn sleeper(name: &str) -> Value {
    json!({"name": name, "image": TEST_IMAGE, "memory": 16, "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]})
}

/// A task no instance can hold.
fn too_big() -> Value {
    json!([{"name": "app", "image": TEST_IMAGE, "memory": 100_000_000}])
}

/// A shipped plugin, where the project's test command builds them.
fn plugin(name: &str) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target"),
    };
    let path = target
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "plugin {} is missing; build the plugins first: cargo build --manifest-path plugins/Cargo.toml --target wasm32-wasip2 --release",
        path.display()
    );
    path
}

#[test]
fn help_documents_the_exit_statuses() {
    let out = Command::new(berth_bin())
        .arg("--help")
        .output()
        .expect("berth runs");
    let help = text(&out.stdout);
    assert!(out.status.success());
    for line in [
        "Exit status:",
        "1  the server answered with an error",
        "2  usage",
        "3  berth up could not be reached",
        "4  a --wait ended in failure",
        "5  a --wait timed out",
    ] {
        assert!(
            help.contains(line),
            "`berth --help` lacks `{line}`:\n{help}"
        );
    }
    for cmd in ["services", "policy", "logs", "run", "instances"] {
        assert!(help.contains(cmd), "`berth --help` lacks `{cmd}`:\n{help}");
    }
}

#[test]
fn exit_statuses_name_what_went_wrong() {
    let up = Up::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // 1: the server's refusal, as `berth: <ErrorCode>: <message>`.
    let err = fails(
        &up,
        &["ps", "--cluster", "nope"],
        1,
        "berth: ClusterNotFoundException: ",
    );
    assert!(err.contains("nope"), "{err}");
    fails(
        &up,
        &["services", "show", "ghost"],
        1,
        "berth: ServiceNotFoundException: service `ghost` not found in cluster `default`",
    );
    fails(
        &up,
        &["services", "scale", "ghost", "2"],
        1,
        "berth: ServiceNotFoundException: ",
    );
    fails(
        &up,
        &["services", "ls", "--cluster", "nope"],
        1,
        "berth: ClusterNotFoundException: ",
    );
    fails(
        &up,
        &["run", "no-such-family"],
        1,
        "berth: ClientException: ",
    );
    // 2: usage, from clap or from an input file.
    fails(&up, &["services", "scale", "web"], 2, "COUNT");
    fails(
        &up,
        &["services", "scale", "web", "2", "--timeout", "5"],
        2,
        "--wait",
    );
    fails(
        &up,
        &[
            "register",
            dir.path().join("missing.json").to_str().expect("utf-8"),
        ],
        2,
        "missing.json",
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").expect("write");
    fails(
        &up,
        &["register", bad.to_str().expect("utf-8")],
        2,
        "is not JSON",
    );
    fails(&up, &["services", "update", "web"], 2, "nothing to change");
    // 3: nothing listens at the endpoint.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let out = Command::new(berth_bin())
        .args(["clusters", "ls"])
        .env("BERTH_ENDPOINT", format!("http://{closed}"))
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .output()
        .expect("berth runs");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("berth up does not seem to run at http://{closed}")),
        "{}",
        text(&out.stderr)
    );

    // 5: a wait that cannot end well in time: tasks nothing can hold.
    register(&up, dir.path(), "huge", too_big());
    let err = fails(
        &up,
        &["run", "huge", "--queue", "--wait", "--timeout", "1"],
        5,
        "0 of 1 tasks RUNNING after 1s",
    );
    assert!(err.starts_with("berth: "), "{err}");
    let out = cli(
        &up,
        &[
            "services",
            "create",
            "bloat",
            "--task-definition",
            "huge",
            "--count",
            "1",
            "--wait",
            "--timeout",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("service bloat not steady after 1s"),
        "{}",
        text(&out.stderr)
    );
    // The summary still prints: the service exists and waits for room.
    assert!(text(&out.stdout).contains("bloat"), "{}", text(&out.stdout));
    // Deleting one still scaled above 0 needs --force: the server's refusal.
    fails(
        &up,
        &["services", "rm", "bloat"],
        1,
        "berth: InvalidParameterException: ",
    );
    let v = cli_json(
        &up,
        &["services", "rm", "bloat", "--force", "--output", "json"],
    );
    assert_eq!(v["service"]["status"], "DRAINING", "{v}");
}

#[test]
fn policies_install_list_activate_and_remove() {
    let up = Up::start();
    let binpack = plugin("binpack");
    let path = binpack.to_str().expect("utf-8");
    let v = cli_json(&up, &["policy", "install", path, "--output", "json"]);
    let p = &v["policy"];
    let sha = p["sha256"].as_str().expect("sha256").to_owned();
    assert_eq!(sha.len(), 64, "{v}");
    assert_eq!(p["name"], "binpack", "{v}");
    assert_eq!(
        p["size"].as_u64(),
        Some(std::fs::metadata(&binpack).expect("stat").len()),
        "{v}"
    );
    // The same bytes again: the same policy.
    let again = cli_json(&up, &["policy", "install", path, "--output", "json"]);
    assert_eq!(again["policy"]["sha256"], sha.as_str());
    let table = text(&cli(&up, &["policy", "ls"]).stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&sha[..12]) && l.contains("binpack")),
        "{table}"
    );

    let listed = cli_json(&up, &["policy", "ls", "--output", "json"]);
    assert_eq!(
        listed["policies"].as_array().expect("policies").len(),
        1,
        "{listed}"
    );
    let shown = cli_json(&up, &["policy", "show", &sha[..8], "--output", "json"]);
    assert_eq!(shown["policy"]["sha256"], sha.as_str());
    assert!(shown["policy"]["stats"]["decisions"].is_u64(), "{shown}");
    let human = text(&cli(&up, &["policy", "show", "binpack"]).stdout);
    assert!(
        human.contains(&sha) && human.contains("decisions"),
        "{human}"
    );

    let out = cli(
        &up,
        &["policy", "activate", "binpack", "--fallback", "pending"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("is active in cluster/default"),
        "{}",
        text(&out.stdout)
    );
    let listed = cli_json(&up, &["policy", "ls", "--output", "json"]);
    assert_eq!(
        listed["policies"][0]["activeIn"],
        json!(["cluster/default"]),
        "{listed}"
    );
    fails(
        &up,
        &["policy", "rm", "binpack"],
        1,
        "berth: PolicyInUseException: ",
    );
    fails(
        &up,
        &["policy", "activate", "binpack", "--fallback", "sometimes"],
        2,
        "sometimes",
    );
    fails(
        &up,
        &["policy", "activate", "nonesuch"],
        1,
        "berth: PolicyNotFoundException: ",
    );

    // run and services create name a policy with the `berth:policy` tag;
    // a service created with one is bound to it.
    let dir = tempfile::tempdir().expect("tempdir");
    register(&up, dir.path(), "cli-pol", json!([sleeper("app")]));
    fails(
        &up,
        &["run", "cli-pol", "--policy", "nonesuch"],
        1,
        "berth:policy: no installed policy `nonesuch`",
    );
    let v = cli_json(
        &up,
        &[
            "services",
            "create",
            "bound",
            "--task-definition",
            "cli-pol",
            "--count",
            "0",
            "--policy",
            "binpack",
            "--output",
            "json",
        ],
    );
    assert_eq!(v["service"]["serviceName"], "bound", "{v}");
    let listed = cli_json(&up, &["policy", "ls", "--output", "json"]);
    let active: Vec<&str> = listed["policies"][0]["activeIn"]
        .as_array()
        .expect("activeIn")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(active.contains(&"service/default/bound"), "{listed}");
    let shown = text(&cli(&up, &["services", "show", "bound"]).stdout);
    assert!(
        shown.contains(&format!(
            "placement policy binpack {} ({})",
            p["version"].as_str().expect("version"),
            &sha[..12]
        )),
        "{shown}"
    );
    let out = cli(&up, &["services", "rm", "bound"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let v = cli_json(&up, &["policy", "deactivate", "--output", "json"]);
    assert_eq!(v["scope"], "cluster/default", "{v}");
    let out = cli(&up, &["policy", "rm", &sha[..8]]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("removed binpack"),
        "{}",
        text(&out.stdout)
    );
    let listed = cli_json(&up, &["policy", "ls", "--output", "json"]);
    assert_eq!(listed["policies"], json!([]), "{listed}");

    // Not a component at all: the server says why.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm junk").expect("write");
    fails(
        &up,
        &["policy", "install", junk.to_str().expect("utf-8")],
        1,
        "berth: InvalidPolicyException: ",
    );
    fails(
        &up,
        &[
            "policy",
            "install",
            dir.path().join("none.wasm").to_str().expect("utf-8"),
        ],
        2,
        "none.wasm",
    );
}

/// Progress lines of a non-TTY `--wait`: `[   Ns] ...`.
fn progress_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.starts_with('[') && l.contains("s] "))
        .collect()
}

#[test]
fn services_roll_out_with_wait_and_progress() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let dir = tempfile::tempdir().expect("tempdir");
    register(&up, dir.path(), "cli-web", json!([sleeper("app")]));

    // Created and waited for, with one progress line per change on a pipe.
    let out = cli(
        &up,
        &[
            "services",
            "create",
            "web",
            "--task-definition",
            "cli-web",
            "--count",
            "2",
            "--min-healthy",
            "50",
            "--max-percent",
            "200",
            "--wait",
        ],
    );
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}{shown}", text(&out.stderr));
    let lines = progress_lines(&shown);
    assert!(
        lines.len() >= 2,
        "a line per change, from 0 to 2 running: {shown}"
    );
    for pair in lines.windows(2) {
        let body = |l: &str| l.split_once("s] ").map(|(_, b)| b.to_owned());
        assert_ne!(
            body(pair[0]),
            body(pair[1]),
            "a line is printed only on a change: {shown}"
        );
    }
    assert!(
        lines[0].contains("PRIMARY") && lines[0].contains("/2 running"),
        "{shown}"
    );
    let last = lines.last().expect("a line");
    assert!(
        last.contains("2/2 running, 0 pending, COMPLETED"),
        "{shown}"
    );
    assert!(!shown.contains('\r'), "no redraws on a pipe: {shown:?}");
    let summary = shown
        .lines()
        .skip_while(|l| !l.starts_with("NAME"))
        .nth(1)
        .expect("the summary row");
    assert!(
        summary.starts_with("web") && summary.contains("COMPLETED"),
        "{shown}"
    );

    // ls: a table, and JSON with the service's counts.
    let table = text(&cli(&up, &["services", "ls"]).stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("ACTIVE")),
        "{table}"
    );
    let listed = cli_json(&up, &["services", "ls", "--output", "json"]);
    let svcs = listed["services"].as_array().expect("services");
    assert_eq!(svcs.len(), 1, "{listed}");
    assert_eq!(
        (
            svcs[0]["serviceName"].as_str(),
            svcs[0]["runningCount"].as_u64(),
            svcs[0]["desiredCount"].as_u64()
        ),
        (Some("web"), Some(2), Some(2))
    );

    // Scale with --output json: stdout is the service alone, progress on stderr.
    let out = cli(
        &up,
        &[
            "services", "scale", "web", "3", "--wait", "--output", "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(
        (
            v["service"]["runningCount"].as_u64(),
            v["service"]["desiredCount"].as_u64()
        ),
        (Some(3), Some(3)),
        "{v}"
    );
    assert!(
        progress_lines(&text(&out.stderr))
            .last()
            .is_some_and(|l| l.contains("3/3 running")),
        "{}",
        text(&out.stderr)
    );

    // A forced new deployment replaces the tasks; the wait ends when the old one is gone.
    let before = v["service"]["deployments"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let v = cli_json(
        &up,
        &[
            "services",
            "update",
            "web",
            "--force-new-deployment",
            "--wait",
            "--output",
            "json",
        ],
    );
    let deployments = v["service"]["deployments"].as_array().expect("deployments");
    let primary = deployments
        .iter()
        .find(|d| d["status"] == "PRIMARY")
        .expect("primary");
    assert_ne!(primary["id"], before.as_str(), "{v}");
    assert_eq!(primary["rolloutState"], "COMPLETED", "{v}");
    assert_eq!(primary["runningCount"], 3, "{v}");
    assert!(
        deployments
            .iter()
            .all(|d| d["status"] == "PRIMARY" || d["status"] == "INACTIVE"),
        "{v}"
    );

    // show: deployments and the newest events.
    let shown = text(&cli(&up, &["services", "show", "web"]).stdout);
    assert!(
        shown.contains("DEPLOYMENT") && shown.contains(primary["id"].as_str().expect("id")),
        "{shown}"
    );
    assert!(shown.contains("has reached a steady state"), "{shown}");
    assert!(
        shown.contains("minimum healthy 50%, maximum 200%"),
        "{shown}"
    );
    let v = cli_json(&up, &["services", "show", "web", "--output", "json"]);
    assert_eq!(v["service"]["serviceName"], "web");
    assert!(
        v["service"]["events"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{v}"
    );

    // Down to 0 and removed.
    let v = cli_json(
        &up,
        &[
            "services", "scale", "web", "0", "--wait", "--output", "json",
        ],
    );
    assert_eq!(v["service"]["runningCount"], 0, "{v}");
    let out = cli(&up, &["services", "rm", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("service web is DRAINING"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn wait_fails_on_a_tripped_breaker_and_on_a_task_that_stops() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let dir = tempfile::tempdir().expect("tempdir");

    // Two tasks asked, room for one: the one started is waited for, and the
    // run still fails (exit 1) with the server's reason for the other.
    let ci = cli_json(&up, &["instances", "ls", "--output", "json"]);
    let mem = ci["containerInstances"][0]["registeredResources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "MEMORY"))
        .and_then(|r| r["integerValue"].as_u64())
        .expect("the instance's memory");
    register(
        &up,
        dir.path(),
        "cli-half",
        json!([{"name": "app", "image": TEST_IMAGE, "memory": mem * 6 / 10,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]}]),
    );
    let out = cli(
        &up,
        &[
            "run", "cli-half", "--count", "2", "--wait", "--output", "json",
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("berth: RESOURCE:MEMORY: 1 of 2 tasks not started"),
        "{err}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["tasks"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["tasks"][0]["lastStatus"], "RUNNING", "{v}");
    let out = cli(
        &up,
        &["stop", v["tasks"][0]["taskArn"].as_str().expect("arn")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A task whose image does not exist stops instead of running: exit 4 with its reason.
    register(
        &up,
        dir.path(),
        "cli-missing",
        json!([{"name": "app", "image": "berth-test/does-not-exist:1", "memory": 16}]),
    );
    let err = fails(
        &up,
        &["run", "cli-missing", "--wait", "--timeout", "120"],
        4,
        "stopped instead of running (TaskFailedToStart)",
    );
    assert!(err.contains("berth-test/does-not-exist:1"), "{err}");

    // A version that crashes trips the breaker: exit 4, naming the deployment
    // and the one rolled back to.
    register(&up, dir.path(), "cli-crash", json!([sleeper("app")]));
    let v = cli_json(
        &up,
        &[
            "services",
            "create",
            "crashy",
            "--task-definition",
            "cli-crash",
            "--circuit-breaker",
            "--wait",
            "--output",
            "json",
        ],
    );
    let good = v["service"]["deployments"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    register(
        &up,
        dir.path(),
        "cli-crash",
        json!([{"name": "app", "image": TEST_IMAGE, "memory": 16, "command": ["sh", "-c", "echo broken; exit 3"]}]),
    );
    let out = cli(
        &up,
        &[
            "services",
            "update",
            "crashy",
            "--task-definition",
            "cli-crash:2",
            "--wait",
            "--timeout",
            "300",
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}{}", text(&out.stdout));
    assert!(
        err.contains("FAILED") && err.contains(&format!("deployment {good}")),
        "{err}"
    );
    let lines = progress_lines(&text(&out.stdout)).len();
    assert!(
        lines >= 2,
        "progress while it rolled out: {}",
        text(&out.stdout)
    );
}

#[test]
fn logs_come_through_the_api() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let dir = tempfile::tempdir().expect("tempdir");
    let many = "i=0; while test $i -lt 2500; do i=$((i+1)); echo line-$i; done; echo to-stderr >&2; trap 'exit 0' TERM; while true; do sleep 0.2; done";
    let ticker =
        "i=0; trap 'exit 0' TERM; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done";
    register(
        &up,
        dir.path(),
        "cli-logs",
        json!([
            {"name": "app", "image": TEST_IMAGE, "memory": 16, "command": ["sh", "-c", many]},
            {"name": "side", "image": TEST_IMAGE, "memory": 16, "essential": false, "command": ["sh", "-c", ticker]}
        ]),
    );
    let v = cli_json(&up, &["run", "cli-logs", "--wait", "--output", "json"]);
    assert_eq!(v["tasks"][0]["lastStatus"], "RUNNING", "{v}");
    let arn = v["tasks"][0]["taskArn"].as_str().expect("arn").to_owned();
    let id = arn.rsplit('/').next().expect("id").to_owned();

    // More than a page (1000): every line once, in order, across pages.
    let deadline = Instant::now() + Duration::from_secs(60);
    let app = loop {
        let out = cli(&up, &["logs", &id, "--container", "app"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        if shown.contains("to-stderr") {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "the output never all showed: {} lines",
            shown.lines().count()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    // Docker stamps stdout and stderr as it reads each pipe: the stderr line
    // may sort before stdout lines still in their pipe, so it is checked apart.
    assert_eq!(
        app.lines().filter(|l| *l == "to-stderr").count(),
        1,
        "stderr's line once"
    );
    let want: Vec<String> = (1..=2500).map(|i| format!("line-{i}")).collect();
    let got: Vec<&str> = app.lines().filter(|l| *l != "to-stderr").collect();
    let first_diff = got.iter().zip(&want).position(|(g, w)| g != w);
    assert!(
        got.len() == want.len() && first_diff.is_none(),
        "one container's lines, unprefixed, each once: {} lines, first difference at {first_diff:?}: {:?}",
        got.len(),
        first_diff.map(|i| &got[i.saturating_sub(2)..(i + 3).min(got.len())])
    );

    // Both containers: each line says whose; JSON events carry time and container.
    let both = text(&cli(&up, &["logs", &id]).stdout);
    assert!(
        both.lines().any(|l| l == "app | line-1")
            && both.lines().any(|l| l.starts_with("side | tick-")),
        "{}",
        &both[..both.len().min(2000)]
    );
    let out = cli(
        &up,
        &[
            "logs",
            &id,
            "--container",
            "side",
            "--output",
            "json",
            "--timestamps",
        ],
    );
    let events: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event per line"))
        .collect();
    assert!(!events.is_empty(), "{}", text(&out.stderr));
    for w in events.windows(2) {
        assert!(
            w[0]["timestamp"].as_f64() <= w[1]["timestamp"].as_f64(),
            "oldest first: {w:?}"
        );
    }
    assert!(
        events.iter().all(|e| e["container"] == "side"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("tick-"))),
        "{events:?}"
    );
    // --since: from the last event's time on, not what came before.
    let t = events.last().expect("event")["timestamp"]
        .as_f64()
        .expect("time");
    let later = text(
        &cli(
            &up,
            &[
                "logs",
                &id,
                "--container",
                "side",
                "--since",
                &format!("{t}"),
            ],
        )
        .stdout,
    );
    let first_tick = events[0]["message"].as_str().expect("message");
    assert!(
        !later.lines().any(|l| l == first_tick) || events.len() == 1,
        "{later}"
    );
    assert!(
        later.lines().any(|l| l
            == events.last().expect("event")["message"]
                .as_str()
                .expect("message")),
        "{later}"
    );
    let none = cli(&up, &["logs", &id, "--since", "2999-01-01T00:00:00Z"]);
    assert!(
        none.status.success() && none.stdout.is_empty(),
        "{}",
        text(&none.stdout)
    );

    // --follow prints new lines as they come, and ends when the task stops.
    let mut follow = client(&up)
        .args([
            "logs",
            &id,
            "--container",
            "side",
            "--follow",
            "--since",
            "0s",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("berth logs");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let mut ticks = Vec::new();
    while ticks.len() < 3 {
        let l = lines
            .next()
            .expect("a line while following")
            .expect("utf-8");
        ticks.push(l[5..].parse::<u64>().expect("tick-N"));
    }
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive ticks: {ticks:?}"
    );
    let out = cli(&up, &["stop", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = follow.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "--follow did not end when the task stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");

    // What cannot be read says why.
    fails(
        &up,
        &["logs", "no-such-task"],
        1,
        "berth: ResourceNotFoundException: task `no-such-task` not found in cluster `default`",
    );
    fails(
        &up,
        &["logs", &id, "--container", "nope"],
        1,
        "no container named `nope`",
    );
    fails(
        &up,
        &["logs", &id, "--cluster", "nope"],
        1,
        "berth: ClusterNotFoundException: ",
    );
    register(&up, dir.path(), "cli-huge", too_big());
    let v = cli_json(&up, &["run", "cli-huge", "--queue", "--output", "json"]);
    let queued = v["tasks"][0]["taskArn"]
        .as_str()
        .expect("a queued task")
        .to_owned();
    fails(
        &up,
        &["logs", &queued],
        1,
        "is not placed on any container instance yet",
    );
    cli(&up, &["stop", &queued]);
}
