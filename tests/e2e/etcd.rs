//! berth on etcd through the binary: two `berth server --store etcd://`
//! sharing one store (what one creates the other answers; a simulated
//! fleet given both URLs runs tasks placed through either), and `berth
//! store export` / `import` moving a store from redb to etcd and back.
//! The etcd members are started here, on loopback; without the `etcd`
//! binary these tests fail unless `BERTH_SKIP_ETCD=1` is set on purpose.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_store_etcd::testing::{Cluster, skip};
use serde_json::Value;

use super::harness::{KEY, SECRET, Up};
use super::{berth, berth_bin, text};

/// `berth agent --simulate N` given every server; killed when dropped.
struct Fleet(Child);

impl Fleet {
    fn start(servers: &[&Up], n: usize, cluster: &str, dir: &Path) -> Fleet {
        let urls: Vec<String> = servers
            .iter()
            .map(|s| format!("http://{}", s.addr))
            .collect();
        Fleet(
            Command::new(berth_bin())
                .args(["agent", "--simulate", &n.to_string(), "--cluster", cluster])
                .args(["--server", &urls.join(",")])
                .arg("--data-dir")
                .arg(dir)
                .env("AWS_ACCESS_KEY_ID", KEY)
                .env("AWS_SECRET_ACCESS_KEY", SECRET)
                .env("BERTH_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("berth agent --simulate starts"),
        )
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn etcd(n: usize) -> Option<Cluster> {
    if skip() {
        return None;
    }
    Some(Cluster::start(n).unwrap_or_else(|e| panic!("{e}")))
}

fn store_flag(cluster: &Cluster, prefix: &str) -> String {
    cluster.url(prefix).to_string()
}

/// Waits until `f` answers Some, within `secs`.
fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} not within {secs}s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn statuses(up: &Up, cluster: &str, arns: &[String]) -> Vec<String> {
    let mut args = vec!["describe-tasks", "--cluster", cluster, "--tasks"];
    args.extend(arns.iter().map(String::as_str));
    up.aws(&args)["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| t["lastStatus"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_servers_on_one_etcd_share_the_store_and_the_fleet() {
    let Some(members) = etcd(1) else { return };
    let store = store_flag(&members, "/e2e-two");
    let dir = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).expect("a");
    std::fs::create_dir_all(&b_dir).expect("b");
    let a = Up::server_with(&a_dir, &[], &["--store", &store]);
    let b = Up::server_with(&b_dir, &[], &["--store", &store]);

    a.aws(&["create-cluster", "--cluster-name", "shared"]);
    let seen = b.aws(&["describe-clusters", "--clusters", "shared"]);
    assert_eq!(seen["clusters"][0]["status"], "ACTIVE", "{seen}");
    b.aws(&[
        "register-task-definition",
        "--family",
        "sleep",
        "--container-definitions",
        r#"[{"name":"main","image":"busybox","cpu":128,"memory":64,"essential":true}]"#,
    ]);

    let _fleet = Fleet::start(&[&a, &b], 2, "shared", &dir.path().join("fleet"));
    until(30, "both instances registered", || {
        let n =
            a.aws(&["list-container-instances", "--cluster", "shared"])["containerInstanceArns"]
                .as_array()
                .map_or(0, Vec::len);
        (n == 2).then_some(())
    });
    // Placed through either server, run by the fleet, seen by both.
    let mut arns = Vec::new();
    for up in [&a, &b] {
        let run = up.aws(&[
            "run-task",
            "--cluster",
            "shared",
            "--task-definition",
            "sleep",
            "--count",
            "3",
        ]);
        let tasks = run["tasks"].as_array().cloned().unwrap_or_default();
        assert_eq!(tasks.len(), 3, "{run}");
        arns.extend(
            tasks
                .iter()
                .filter_map(|t| t["taskArn"].as_str().map(str::to_owned)),
        );
    }
    until(30, "every task RUNNING, as both servers see it", || {
        let all_running = |up: &Up| statuses(up, "shared", &arns).iter().all(|s| s == "RUNNING");
        (all_running(&a) && all_running(&b)).then_some(())
    });
}

fn export(args: &[&str], file: &Path) -> String {
    let mut all = vec!["store", "export", file.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    let out = berth(&all);
    assert!(out.status.success(), "berth {all:?}: {}", text(&out.stderr));
    std::fs::read_to_string(file).expect("export written")
}

#[test]
fn a_store_moves_from_redb_to_etcd_and_back() {
    let Some(members) = etcd(1) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let redb_dir = dir.path().join("redb");
    std::fs::create_dir_all(&redb_dir).expect("dir");
    {
        let up = Up::server_with(&redb_dir, &[], &[]);
        up.aws(&["create-cluster", "--cluster-name", "moved"]);
        up.aws(&[
            "register-task-definition",
            "--family",
            "web",
            "--container-definitions",
            r#"[{"name":"web","image":"busybox","memory":64,"essential":true}]"#,
        ]);
    }
    let data_dir = redb_dir.to_str().expect("utf-8");
    let first = export(
        &["--data-dir", data_dir],
        &dir.path().join("from-redb.jsonl"),
    );
    assert!(first.lines().count() > 2, "{first}");

    // Into etcd; a server on it answers with what redb held.
    let store = store_flag(&members, "/e2e-moved");
    let out = berth(&[
        "store",
        "import",
        &dir.path().join("from-redb.jsonl").to_string_lossy(),
        "--store",
        &store,
    ]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("imported"),
        "{}",
        text(&out.stdout)
    );
    // A second import into the same (no longer empty) store is refused.
    let again = berth(&[
        "store",
        "import",
        &dir.path().join("from-redb.jsonl").to_string_lossy(),
        "--store",
        &store,
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("only into an empty store"),
        "{}",
        text(&again.stderr)
    );
    {
        let etcd_dir = dir.path().join("etcd-server");
        std::fs::create_dir_all(&etcd_dir).expect("dir");
        let up = Up::server_with(&etcd_dir, &[], &["--store", &store]);
        let c = up.aws(&["describe-clusters", "--clusters", "moved"]);
        assert_eq!(c["clusters"][0]["status"], "ACTIVE", "{c}");
        let td = up.aws(&["describe-task-definition", "--task-definition", "web:1"]);
        assert_eq!(td["taskDefinition"]["family"], "web", "{td}");
    }
    // And back, into a fresh redb: the same records.
    let second = export(&["--store", &store], &dir.path().join("from-etcd.jsonl"));
    let back_dir = dir.path().join("back");
    let out = berth(&[
        "store",
        "import",
        &dir.path().join("from-etcd.jsonl").to_string_lossy(),
        "--data-dir",
        &back_dir.to_string_lossy(),
    ]);
    assert!(out.status.success(), "import back: {}", text(&out.stderr));
    let third = export(
        &["--data-dir", &back_dir.to_string_lossy()],
        &dir.path().join("back.jsonl"),
    );
    let records = |s: &str| -> Vec<Value> {
        s.lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    };
    // The server on etcd may have written records of its own (its health
    // probe); every record of the redb store came back unchanged.
    let (r1, r3) = (records(&first), records(&third));
    for r in &r1 {
        if r["table"] == "berth_health" {
            continue;
        }
        assert!(r3.contains(r), "lost on the way: {r}");
    }
    assert_eq!(records(&second), r3);
}

#[test]
fn a_bad_store_url_is_refused_naming_it() {
    let out = berth(&[
        "server",
        "--store",
        "etcd://nohost",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("etcd://nohost") && err.contains("no :port"),
        "{err}"
    );
}

/// The service `web` of cluster `roll` as `up` describes it.
fn service(up: &Up) -> Value {
    up.aws(&[
        "describe-services",
        "--cluster",
        "roll",
        "--services",
        "web",
    ])["services"][0]
        .clone()
}

#[test]
fn a_rolling_deployment_goes_on_when_its_server_is_killed() {
    let Some(members) = etcd(3) else { return };
    let store = store_flag(&members, "/e2e-kill");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut servers: Vec<(std::path::PathBuf, Up)> = (0..3)
        .map(|i| {
            let d = dir.path().join(format!("s{i}"));
            std::fs::create_dir_all(&d).expect("dir");
            let up = Up::server_with(
                &d,
                &[("BERTH_LOG", "info")],
                &["--store", &store, "--log-format", "json"],
            );
            (d, up)
        })
        .collect();
    let a = &servers[0].1;
    a.aws(&["create-cluster", "--cluster-name", "roll"]);
    for cpu in ["128", "256"] {
        let defs = format!(
            r#"[{{"name":"main","image":"busybox","cpu":{cpu},"memory":64,"essential":true}}]"#
        );
        a.aws(&[
            "register-task-definition",
            "--family",
            "sleep",
            "--container-definitions",
            &defs,
        ]);
    }
    let ups: Vec<&Up> = servers.iter().map(|(_, u)| u).collect();
    let _fleet = Fleet::start(&ups, 3, "roll", &dir.path().join("fleet"));
    until(30, "three instances", || {
        let n = a.aws(&["list-container-instances", "--cluster", "roll"])["containerInstanceArns"]
            .as_array()
            .map_or(0, Vec::len);
        (n == 3).then_some(())
    });
    a.aws(&[
        "create-service",
        "--cluster",
        "roll",
        "--service-name",
        "web",
        "--task-definition",
        "sleep:1",
        "--desired-count",
        "6",
    ]);
    until(60, "the first deployment steady", || {
        let s = service(a);
        (s["runningCount"] == 6 && s["deployments"].as_array().map_or(0, Vec::len) == 1)
            .then_some(())
    });
    // The server owning the service scheduler's passes, from its log.
    let owner = until(30, "an owner of the services", || {
        servers.iter().position(|(d, _)| {
            std::fs::read_to_string(d.join("server.log")).is_ok_and(|log| {
                log.lines()
                    .rfind(|l| l.contains(r#""work":"services""#) || l.contains("lease lost"))
                    .is_some_and(|l| l.contains("this server owns the work now"))
            })
        })
    });
    servers[owner].1.aws(&[
        "update-service",
        "--cluster",
        "roll",
        "--service",
        "web",
        "--task-definition",
        "sleep:2",
    ]);
    // Mid-deployment: the owner is killed.
    until(30, "the deployment under way", || {
        let s = service(&servers[(owner + 1) % 3].1);
        (s["deployments"].as_array().map_or(0, Vec::len) == 2).then_some(())
    });
    servers[owner].1.kill_hard();
    let survivor = &servers[(owner + 1) % 3].1;
    // Another server takes the work over (the lease's TTL is 10 s) and
    // completes the deployment.
    until(90, "the deployment completed by another server", || {
        let s = service(survivor);
        let deployments = s["deployments"].as_array().cloned().unwrap_or_default();
        (deployments.len() == 1
            && s["runningCount"] == 6
            && deployments[0]["taskDefinition"]
                .as_str()
                .is_some_and(|t| t.ends_with("sleep:2")))
        .then_some(())
    });
    let tasks = survivor.aws(&["list-tasks", "--cluster", "roll", "--service-name", "web"]);
    assert_eq!(
        tasks["taskArns"].as_array().map_or(0, Vec::len),
        6,
        "{tasks}"
    );
    servers.clear();
}
