//! Placement policies through the API of a running `berth up`: install
//! (and the refusals), list, describe, activate per cluster, per service
//! and per RunTask call, the fallbacks when a policy fails, removal, and a
//! swap under a stream of RunTask calls that fails none of them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use serde_json::{Value, json};

use super::api::{SECRET, Server, repo_root};

const BERTH: &str = "Berth_20261125";
const BUILD: &str =
    "cargo build --manifest-path plugins/Cargo.toml --target wasm32-wasip2 --release --locked";

/// A shipped plugin's component, as the project's test command builds it.
pub(crate) fn plugin_path(name: &str) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("plugins/target"),
    };
    let path = target
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "plugin {} is missing; build the plugins first: {BUILD}",
        path.display()
    );
    path
}

impl Server {
    /// One of berth's own operations; (HTTP status, JSON answer).
    fn berth(&self, op: &str, body: Value) -> (u16, Value) {
        self.signed(
            &format!("{BERTH}.{op}"),
            body.to_string().as_bytes(),
            0,
            SECRET,
        )
    }

    fn berth_ok(&self, op: &str, body: Value) -> Value {
        let (s, v) = self.berth(op, body);
        assert_eq!(s, 200, "{op}: {v}");
        v
    }

    fn install(&self, bytes: &[u8]) -> (u16, Value) {
        self.berth(
            "InstallPolicy",
            json!({"wasm": base64::engine::general_purpose::STANDARD.encode(bytes)}),
        )
    }

    fn install_plugin(&self, name: &str) -> String {
        let (s, v) = self.install(&std::fs::read(plugin_path(name)).expect("plugin"));
        assert_eq!(s, 200, "install {name}: {v}");
        // Files are named with underscores, policies with hyphens.
        assert_eq!(v["policy"]["name"], name.replace('_', "-"), "{v}");
        v["policy"]["sha256"].as_str().expect("sha256").to_owned()
    }

    /// An instance of `cluster` with a `cost` attribute.
    fn instance_costing(&self, cluster: &str, cost: u32) -> String {
        let v = self.ok(
            "RegisterContainerInstance",
            json!({"cluster": cluster, "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 8192}],
                "attributes": [{"name": "cost", "value": cost.to_string()}]}),
        );
        v["containerInstance"]["containerInstanceArn"]
            .as_str()
            .expect("arn")
            .to_owned()
    }

    fn run(&self, cluster: &str, tags: Value) -> Value {
        self.run_of("tiny", cluster, tags)
    }

    fn run_of(&self, family: &str, cluster: &str, tags: Value) -> Value {
        self.ok(
            "RunTask",
            json!({"cluster": cluster, "taskDefinition": family, "tags": tags}),
        )
    }
}

fn placed_on(run: &Value) -> String {
    run["tasks"][0]["containerInstanceArn"]
        .as_str()
        .unwrap_or_else(|| panic!("not placed: {run}"))
        .to_owned()
}

fn failures(policy: &Value, kind: &str) -> u64 {
    policy["stats"]["failures"][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("no {kind} counter in {policy}"))
}

fn setup(s: &Server) -> (String, String) {
    s.ok("CreateCluster", json!({"clusterName": "pol"}));
    s.ok("RegisterTaskDefinition", json!({"family": "tiny", "containerDefinitions": [{"name": "c", "image": "x", "cpu": 16, "memory": 32}]}));
    let dear = s.instance_costing("pol", 9);
    let cheap = s.instance_costing("pol", 2);
    s.instance_costing("pol", 5);
    (dear, cheap)
}

#[test]
fn policies_install_activate_place_fall_back_and_remove() {
    let s = Server::start();
    let (_, cheap) = setup(&s);

    // Refusals name what was wrong and install nothing.
    let (st, v) = s.install(b"not wasm at all");
    assert_eq!(
        (st, v["__type"].as_str()),
        (400, Some("InvalidPolicyException")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("not WebAssembly")),
        "{v}"
    );
    let (st, v) = s.install(b"\0asm\x01\0\0\0");
    assert_eq!(v["__type"], "InvalidPolicyException", "{st} {v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("core WebAssembly module")),
        "{v}"
    );
    let (_, v) = s.install(&std::fs::read(plugin_path("hostile_wrong_world")).expect("plugin"));
    assert_eq!(v["__type"], "InvalidPolicyException", "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("world")),
        "{v}"
    );
    let (_, v) = s.berth("InstallPolicy", json!({"wasm": "@@@"}));
    assert_eq!(v["__type"], "InvalidParameterException", "{v}");
    assert_eq!(s.berth_ok("ListPolicies", json!({}))["policies"], json!([]));

    let cheapest = s.install_plugin("cheapest");
    assert_eq!(
        s.install_plugin("cheapest"),
        cheapest,
        "installing twice is a no-op"
    );
    s.install_plugin("binpack");
    let listed = s.berth_ok("ListPolicies", json!({}));
    let names: Vec<&str> = listed["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["binpack", "cheapest"]);
    let d = s.berth_ok("DescribePolicy", json!({"policy": &cheapest[..12]}));
    assert_eq!(
        d["policy"]["world"],
        "berth:placement/placement-policy@0.3.0"
    );
    assert_eq!(d["policy"]["parameters"][0]["name"], "cost");
    let (_, v) = s.berth("DescribePolicy", json!({"policy": "nope"}));
    assert_eq!(v["__type"], "PolicyNotFoundException", "{v}");

    // Per call: the tag picks the policy; the cheapest instance wins.
    assert_eq!(
        placed_on(&s.run("pol", json!([{"key": "berth:policy", "value": "cheapest"}]))),
        cheap
    );
    let (_, v) = s.ecs("RunTask", json!({"cluster": "pol", "taskDefinition": "tiny", "tags": [{"key": "berth:policy", "value": "nope"}]}));
    assert_eq!(v["__type"], "InvalidParameterException", "{v}");

    // Per cluster.
    let a = s.berth_ok(
        "ActivatePolicy",
        json!({"policy": "cheapest", "cluster": "pol"}),
    );
    assert_eq!(a["scope"], "cluster/pol");
    for _ in 0..3 {
        assert_eq!(placed_on(&s.run("pol", json!([]))), cheap);
    }
    let d = s.berth_ok("DescribePolicy", json!({"policy": "cheapest"}));
    assert!(d["policy"]["stats"]["decisions"].as_u64() >= Some(4), "{d}");
    assert_eq!(d["policy"]["activeIn"], json!(["cluster/pol"]));
    // A warm instance serves decision after decision.
    assert_eq!(d["policy"]["stats"]["instancesCreated"], 1, "{d}");
    let (_, v) = s.berth("DeletePolicy", json!({"policy": "cheapest"}));
    assert_eq!(v["__type"], "PolicyInUseException", "{v}");
    let (_, v) = s.berth(
        "ActivatePolicy",
        json!({"policy": "cheapest", "cluster": "nope"}),
    );
    assert_eq!(v["__type"], "ClusterNotFoundException", "{v}");
    let (_, v) = s.berth(
        "ActivatePolicy",
        json!({"policy": "cheapest", "cluster": "pol", "fallback": "maybe"}),
    );
    assert_eq!(v["__type"], "InvalidParameterException", "{v}");

    // A policy that traps (on tasks of family `attack`): with the native
    // fallback the task is placed anyway...
    s.ok("RegisterTaskDefinition", json!({"family": "attack", "containerDefinitions": [{"name": "c", "image": "x", "cpu": 16, "memory": 32}]}));
    s.install_plugin("hostile_trap");
    s.berth_ok(
        "ActivatePolicy",
        json!({"policy": "hostile-trap", "cluster": "pol", "fallback": "native"}),
    );
    let r = s.run_of("attack", "pol", json!([]));
    placed_on(&r);
    let d = s.berth_ok("DescribePolicy", json!({"policy": "hostile-trap"}));
    assert!(failures(&d["policy"], "trap") >= 1, "{d}");
    // ...with the pending fallback it waits PENDING in the queue.
    s.berth_ok(
        "ActivatePolicy",
        json!({"policy": "hostile-trap", "cluster": "pol", "fallback": "pending"}),
    );
    let r = s.run_of("attack", "pol", json!([]));
    assert_eq!(r["failures"], json!([]), "{r}");
    assert_eq!(r["tasks"][0]["lastStatus"], "PENDING");
    assert!(
        r["tasks"][0]["containerInstanceArn"].is_null(),
        "queued, not placed: {r}"
    );
    // Back on a sane policy, the batch scheduler places the queued task.
    s.berth_ok(
        "ActivatePolicy",
        json!({"policy": "cheapest", "cluster": "pol"}),
    );
    let arn = r["tasks"][0]["taskArn"].as_str().expect("arn").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let d = s.ok("DescribeTasks", json!({"cluster": "pol", "tasks": [&arn]}));
        if let Some(ci) = d["tasks"][0]["containerInstanceArn"].as_str() {
            assert_eq!(
                ci, cheap,
                "the queued task is placed by the cluster's policy"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queued task was never placed: {d}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Removal.
    assert_eq!(
        s.berth_ok("DeactivatePolicy", json!({"cluster": "pol"}))["scope"],
        "cluster/pol"
    );
    let gone = s.berth_ok("DeletePolicy", json!({"policy": "cheapest"}));
    assert_eq!(gone["policy"]["sha256"], cheapest.as_str());
    let (_, v) = s.berth("DescribePolicy", json!({"policy": cheapest}));
    assert_eq!(v["__type"], "PolicyNotFoundException", "{v}");
}

#[test]
fn a_service_names_its_policy_with_a_tag() {
    let s = Server::start();
    let (_, cheap) = setup(&s);
    s.install_plugin("cheapest");
    let (_, v) = s.ecs(
        "CreateService",
        json!({"cluster": "pol", "serviceName": "bad", "taskDefinition": "tiny", "desiredCount": 1,
               "tags": [{"key": "berth:policy", "value": "nope"}]}),
    );
    assert_eq!(v["__type"], "InvalidParameterException", "{v}");
    s.ok(
        "CreateService",
        json!({"cluster": "pol", "serviceName": "web", "taskDefinition": "tiny", "desiredCount": 3,
               "tags": [{"key": "berth:policy", "value": "cheapest"}]}),
    );
    let d = s.berth_ok("DescribePolicy", json!({"policy": "cheapest"}));
    assert_eq!(d["policy"]["activeIn"], json!(["service/pol/web"]));
    // No agent runs these instances: the tasks stay PENDING, but placed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let tasks = loop {
        let l = s.ok("ListTasks", json!({"cluster": "pol", "serviceName": "web"}));
        let arns = l["taskArns"].as_array().cloned().unwrap_or_default();
        if arns.len() == 3 {
            break s.ok("DescribeTasks", json!({"cluster": "pol", "tasks": arns}))["tasks"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service never started 3 tasks: {l}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    for t in tasks.as_array().expect("tasks") {
        assert_eq!(t["containerInstanceArn"], cheap.as_str(), "{t}");
    }
    // Deleting the service unbinds its policy, which may then go.
    s.ok(
        "UpdateService",
        json!({"cluster": "pol", "service": "web", "desiredCount": 0}),
    );
    s.ok("DeleteService", json!({"cluster": "pol", "service": "web"}));
    s.berth_ok("DeletePolicy", json!({"policy": "cheapest"}));

    // A service's policy sees its tasks' family (the task definition's, not
    // the service group): hostile-trap traps on family `attack`, and the
    // native fallback still places the task.
    s.ok("RegisterTaskDefinition", json!({"family": "attack", "containerDefinitions": [{"name": "c", "image": "x", "cpu": 16, "memory": 32}]}));
    s.install_plugin("hostile_trap");
    s.ok(
        "CreateService",
        json!({"cluster": "pol", "serviceName": "atk", "taskDefinition": "attack", "desiredCount": 1,
               "tags": [{"key": "berth:policy", "value": "hostile-trap"}]}),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let d = s.berth_ok("DescribePolicy", json!({"policy": "hostile-trap"}));
        let placed = s.ok("ListTasks", json!({"cluster": "pol", "serviceName": "atk"}))["taskArns"]
            .as_array()
            .map_or(0, Vec::len);
        if failures(&d["policy"], "trap") >= 1 && placed == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never saw family `attack`: {d}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn swapping_policies_under_a_stream_of_run_tasks_fails_none() {
    let s = Server::start();
    setup(&s);
    s.install_plugin("binpack");
    s.install_plugin("spread");
    s.berth_ok(
        "ActivatePolicy",
        json!({"policy": "binpack", "cluster": "pol"}),
    );
    let done = AtomicBool::new(false);
    let (placed, swaps) = std::thread::scope(|scope| {
        let runner = scope.spawn(|| {
            let mut placed = 0;
            while !done.load(Ordering::Relaxed) {
                let r = s.run("pol", json!([]));
                assert_eq!(
                    r["failures"],
                    json!([]),
                    "a decision failed during a swap: {r}"
                );
                placed_on(&r);
                placed += 1;
                // Keep the cluster from filling up.
                s.ok(
                    "StopTask",
                    json!({"cluster": "pol", "task": r["tasks"][0]["taskArn"]}),
                );
            }
            placed
        });
        let mut swaps = 0;
        for i in 0..20 {
            let p = if i % 2 == 0 { "spread" } else { "binpack" };
            s.berth_ok("ActivatePolicy", json!({"policy": p, "cluster": "pol"}));
            swaps += 1;
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        done.store(true, Ordering::Relaxed);
        (runner.join().expect("runner"), swaps)
    });
    assert!(
        placed > 0 && swaps == 20,
        "{placed} placements over {swaps} swaps"
    );
    for name in ["binpack", "spread"] {
        let d = s.berth_ok("DescribePolicy", json!({"policy": name}));
        for kind in [
            "trap",
            "deadline",
            "memory-limit",
            "invalid-answer",
            "instantiate",
        ] {
            assert_eq!(failures(&d["policy"], kind), 0, "{name}: {d}");
        }
    }
}

#[test]
fn policies_and_their_bindings_survive_a_restart_and_load_from_the_disk_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cheap = {
        let s = Server::start_in(dir.path());
        let (_, cheap) = setup(&s);
        s.install_plugin("cheapest");
        s.berth_ok(
            "ActivatePolicy",
            json!({"policy": "cheapest", "cluster": "pol"}),
        );
        cheap
    };
    let cached: Vec<String> = std::fs::read_dir(dir.path().join("policy-cache"))
        .expect("the compiled component is cached")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(
        cached[0].ends_with(".cwasm") && cached[0].contains("wasmtime48"),
        "{cached:?}"
    );
    // A cache file that is not what the engine wrote is refused and replaced.
    let path = dir.path().join("policy-cache").join(&cached[0]);
    std::fs::write(&path, b"garbage").expect("overwrite");
    let s = Server::start_in(dir.path());
    let d = s.berth_ok("DescribePolicy", json!({"policy": "cheapest"}));
    assert_eq!(d["policy"]["activeIn"], json!(["cluster/pol"]));
    assert_eq!(placed_on(&s.run("pol", json!([]))), cheap);
    assert!(
        std::fs::metadata(&path).expect("cache file").len() > 1000,
        "the bad cache file was replaced"
    );
}

#[test]
fn zone_guard_keeps_off_maintenance_and_names_the_instances_it_held_back() {
    let s = Server::start();
    s.ok("CreateCluster", json!({"clusterName": "zg"}));
    s.ok("RegisterTaskDefinition", json!({"family": "tiny", "containerDefinitions": [{"name": "c", "image": "x", "cpu": 16, "memory": 32}]}));
    s.ok("RegisterTaskDefinition", json!({"family": "big", "containerDefinitions": [{"name": "c", "image": "x", "cpu": 16, "memory": 6000}]}));
    let register = |memory: u32, attributes: Value| {
        let v = s.ok(
            "RegisterContainerInstance",
            json!({"cluster": "zg", "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": memory}],
                "attributes": attributes}),
        );
        v["containerInstance"]["containerInstanceArn"]
            .as_str()
            .expect("arn")
            .to_owned()
    };
    // The instance under maintenance has the most memory: a policy that
    // ignored the attribute would take it.
    let held = register(16384, json!([{"name": "maintenance"}]));
    let free = register(4096, json!([]));
    s.install_plugin("zone_guard");
    s.berth_ok(
        "ActivatePolicy",
        json!({"policy": "zone-guard", "cluster": "zg", "fallback": "pending"}),
    );
    for _ in 0..3 {
        let r = s.run_of("tiny", "zg", json!([]));
        assert_eq!(placed_on(&r), free, "{r}");
    }
    // Only the maintenance instance has room: the task is refused with the
    // policy's reason, which names it by its container instance id (the
    // policy asked the host for the name through the `names` import).
    let r = s.run_of("big", "zg", json!([]));
    assert_eq!(r["tasks"], json!([]), "{r}");
    let id = held.rsplit('/').next().expect("id");
    assert_eq!(r["failures"][0]["reason"], "POLICY", "{r}");
    assert_eq!(
        r["failures"][0]["detail"],
        format!("policy zone-guard: only instances under maintenance fit: {id}"),
        "{r}"
    );
}
