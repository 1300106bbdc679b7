//! Services against the real Docker daemon through `berth up` and the AWS
//! CLI: create, a killed container replaced, scale, a rolling update within
//! its percentages at every observed state, scale to 0 and delete; an HTTP
//! service checked by its health endpoint. Services across several
//! instances are in `services/instances.rs`.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_agent::testing::{CleanupGuard, TEST_IMAGE, WEB_HEALTH_BODY, WEB_IMAGE, WEB_PORT};
use serde_json::{Value, json};

use super::harness::{Up, docker_ready, web_ready};
use super::text;

mod instances;

impl Up {
    fn service(&self, name: &str) -> Value {
        self.aws(&["describe-services", "--services", name])["services"][0].clone()
    }

    fn listed(&self, name: &str, desired: &str) -> Vec<String> {
        let l = self.aws(&[
            "list-tasks",
            "--service-name",
            name,
            "--desired-status",
            desired,
        ]);
        let mut v: Vec<String> = l["taskArns"]
            .as_array()
            .expect("taskArns")
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        v.sort();
        v
    }

    /// The service's tasks asked to stop (desired STOPPED), described.
    fn stopped_tasks(&self, name: &str) -> Vec<Value> {
        let stopped = self.listed(name, "STOPPED");
        let mut out = Vec::new();
        for chunk in stopped.chunks(100) {
            let mut args = vec!["describe-tasks", "--tasks"];
            args.extend(chunk.iter().map(String::as_str));
            out.extend(
                self.aws(&args)["tasks"]
                    .as_array()
                    .expect("tasks")
                    .iter()
                    .cloned(),
            );
        }
        out
    }

    /// The service's tasks not yet STOPPED (desired RUNNING or stopping),
    /// as of one moment: the set asked to run is listed again after the
    /// describe, and the observation retried if it changed in between.
    fn tasks(&self, name: &str) -> Vec<Value> {
        loop {
            let wanted = self.listed(name, "RUNNING");
            let mut arns = wanted.clone();
            arns.extend(self.listed(name, "STOPPED"));
            let mut out = Vec::new();
            for chunk in arns.chunks(100) {
                let mut args = vec!["describe-tasks", "--tasks"];
                args.extend(chunk.iter().map(String::as_str));
                let d = self.aws(&args);
                out.extend(
                    d["tasks"]
                        .as_array()
                        .expect("tasks")
                        .iter()
                        .filter(|t| t["lastStatus"] != "STOPPED")
                        .cloned(),
                );
            }
            if self.listed(name, "RUNNING") == wanted {
                return out;
            }
        }
    }

    /// The service's live tasks, after checking that RUNNING tasks (asked to
    /// keep running) are at least `lo` and live tasks at most `hi`.
    fn within(&self, name: &str, (lo, hi): (usize, usize)) -> Vec<Value> {
        let ts = self.tasks(name);
        let up = ts
            .iter()
            .filter(|t| t["lastStatus"] == "RUNNING" && t["desiredStatus"] == "RUNNING")
            .count();
        let seen: Vec<String> = ts
            .iter()
            .map(|t| {
                format!(
                    "{} {} {} {}",
                    t["taskDefinitionArn"],
                    t["containerInstanceArn"],
                    t["desiredStatus"],
                    t["lastStatus"]
                )
            })
            .collect();
        assert!(up >= lo, "{up} RUNNING tasks, below {lo}: {seen:#?}");
        assert!(
            ts.len() <= hi,
            "{} tasks RUNNING or PENDING, above {hi}: {seen:#?}",
            ts.len()
        );
        ts
    }

    /// Polls until the service's PRIMARY deployment is COMPLETED with
    /// `running` tasks; with `bounds`, checks at every observed state that
    /// RUNNING tasks stay at or above the lower and live tasks at or below the upper.
    fn until_steady(&self, name: &str, running: u64, bounds: Option<(usize, usize)>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(b) = bounds {
                self.within(name, b);
            }
            let s = self.service(name);
            let primary = s["deployments"]
                .as_array()
                .expect("deployments")
                .iter()
                .find(|d| d["status"] == "PRIMARY")
                .cloned();
            if primary.is_some_and(|p| p["rolloutState"] == "COMPLETED")
                && s["runningCount"] == running
                && s["deployments"]
                    .as_array()
                    .is_some_and(|d| d.iter().all(|d| d["status"] != "ACTIVE"))
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "service {name} never steady at {running}: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn containers_of(task_arn: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=berth.task-arn={task_arn}"),
        ])
        .output()
        .expect("docker ps");
    text(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn a_service_runs_survives_a_kill_scales_rolls_and_is_deleted() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    // Every container this test's berth starts, removed also on failure.
    let _guard = up.guard_containers();

    let family = format!("e2e-svc-{}", std::process::id());
    let defs = |version: &str| {
        json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16,
            "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
            "environment": [{"name": "VERSION", "value": version}] }])
        .to_string()
    };
    up.aws(&[
        "register-task-definition",
        "--family",
        &family,
        "--container-definitions",
        &defs("1"),
    ]);
    let dc = json!({"minimumHealthyPercent": 50, "maximumPercent": 150}).to_string();
    let created = up.aws(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        &family,
        "--desired-count",
        "2",
        "--deployment-configuration",
        &dc,
    ]);
    assert_eq!(created["service"]["status"], "ACTIVE", "{created}");
    let s = up.until_steady("web", 2, None);
    assert!(
        s["events"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("steady state")),
        "{s:#}"
    );
    let ts = up.tasks("web");
    assert_eq!(ts.len(), 2);
    for t in &ts {
        assert_eq!(t["group"], "service:web");
        assert!(
            t["startedBy"]
                .as_str()
                .is_some_and(|b| b.starts_with("ecs-svc/")),
            "{t}"
        );
        assert_eq!(
            containers_of(t["taskArn"].as_str().expect("arn")).len(),
            1,
            "one container for {t}"
        );
    }

    // A container killed behind berth's back: its task stops and is replaced.
    let victim = ts[0]["taskArn"].as_str().expect("arn").to_owned();
    let kill = Command::new("docker")
        .args(["kill", &containers_of(&victim)[0]])
        .output()
        .expect("docker kill");
    assert!(kill.status.success(), "{}", text(&kill.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ts = up.tasks("web");
        let running: Vec<&Value> = ts.iter().filter(|t| t["lastStatus"] == "RUNNING").collect();
        if running.len() == 2 && running.iter().all(|t| t["taskArn"] != victim.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed task was not replaced: {ts:#?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    up.aws(&["update-service", "--service", "web", "--desired-count", "3"]);
    up.until_steady("web", 3, None);

    // A rolling update: min 50% and max 150% of 3 are 2 and 4.
    let td2 = up.aws(&[
        "register-task-definition",
        "--family",
        &family,
        "--container-definitions",
        &defs("2"),
    ]);
    let td2 = td2["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("arn")
        .to_owned();
    up.aws(&[
        "update-service",
        "--service",
        "web",
        "--task-definition",
        &td2,
    ]);
    let s = up.until_steady("web", 3, Some((2, 4)));
    assert_eq!(s["taskDefinition"], td2.as_str());
    let ts = up.tasks("web");
    assert_eq!(ts.len(), 3);
    assert!(
        ts.iter().all(|t| t["taskDefinitionArn"] == td2.as_str()),
        "{ts:#?}"
    );

    // Deleting needs a scale to 0 first.
    let out = up.aws_output(&["delete-service", "--service", "web"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("InvalidParameterException"),
        "{}",
        text(&out.stderr)
    );
    up.aws(&["update-service", "--service", "web", "--desired-count", "0"]);
    up.aws(&["delete-service", "--service", "web"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = up.service("web");
        if s["status"] == "INACTIVE" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service was never deleted: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for t in &ts {
        let arn = t["taskArn"].as_str().expect("arn");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !containers_of(arn).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the container of {arn} outlived its service"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let listed = up.aws(&["list-services"]);
    assert_eq!(
        listed["serviceArns"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
}

#[test]
fn a_crashing_version_trips_the_breaker_and_rolls_back() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let family = format!("e2e-crash-{}", std::process::id());
    let defs = |script: &str| {
        json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16, "command": ["sh", "-c", script] }]).to_string()
    };
    let v1 = up.aws(&[
        "register-task-definition",
        "--family",
        &family,
        "--container-definitions",
        &defs("trap 'exit 0' TERM; while true; do sleep 0.2; done"),
    ]);
    let v1 = v1["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("arn")
        .to_owned();
    let dc = json!({"minimumHealthyPercent": 100, "maximumPercent": 200,
        "deploymentCircuitBreaker": {"enable": true, "rollback": true}})
    .to_string();
    up.aws(&[
        "create-service",
        "--service-name",
        "crashy",
        "--task-definition",
        &v1,
        "--desired-count",
        "1",
        "--deployment-configuration",
        &dc,
    ]);
    let first = up.until_steady("crashy", 1, None)["deployments"][0]["id"].clone();

    // A version whose container cannot start (its entry point is missing):
    // it never reaches RUNNING, so the old task is never stopped for it. (A
    // version that starts and then exits is RUNNING for a moment, and on a
    // busy machine the scheduler may rightly count that moment as healthy.)
    let broken = json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16,
        "entryPoint": ["/no/such/program"] }])
    .to_string();
    let v2 = up.aws(&[
        "register-task-definition",
        "--family",
        &family,
        "--container-definitions",
        &broken,
    ]);
    let v2 = v2["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("arn")
        .to_owned();
    let updated = up.aws(&[
        "update-service",
        "--service",
        "crashy",
        "--task-definition",
        &v2,
    ]);
    let second = primary_id(&updated["service"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = up.service("crashy");
        // The old task keeps serving all along (minimum 100%).
        let ts = up.tasks("crashy");
        assert!(
            ts.iter()
                .any(|t| t["taskDefinitionArn"] == v1.as_str() && t["lastStatus"] == "RUNNING"),
            "{ts:#?}"
        );
        // The failed deployment may leave the list (INACTIVE, as ECS
        // hides them) in the pass that rolls back: its event stays.
        if has_event(&s, &format!("deployment {second} deployment failed")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker never tripped: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The breaker's threshold for 1 task is 3 failed tasks of the new version.
    let d = up.stopped_tasks("crashy");
    let crashed = d
        .iter()
        .filter(|t| {
            t["taskDefinitionArn"] == v2.as_str()
                && t["stopCode"] != "ServiceSchedulerInitiated"
                && t["stopCode"] != "UserInitiated"
        })
        .count();
    assert!(
        crashed >= 3,
        "{crashed} crashed tasks of the new version: {d:#?}"
    );
    let s = up.until_steady("crashy", 1, None);
    assert_eq!(s["taskDefinition"], v1.as_str());
    let primary = s["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .find(|d| d["status"] == "PRIMARY")
        .cloned()
        .expect("primary");
    assert_eq!(
        primary["id"], first,
        "the last COMPLETED deployment is PRIMARY again"
    );
    assert!(
        s["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["message"]
                .as_str()
                .is_some_and(|m| m.contains("rolling back"))),
        "{s:#}"
    );
    up.aws(&["delete-service", "--service", "crashy", "--force"]);
}

#[test]
fn a_task_failing_its_docker_health_check_is_replaced() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let family = format!("e2e-health-{}", std::process::id());
    let defs = json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16,
        "command": ["sh", "-c", "touch /ok; trap 'exit 0' TERM; while true; do sleep 0.2; done"],
        "healthCheck": {"command": ["CMD-SHELL", "test -f /ok"], "interval": 5, "timeout": 2, "retries": 1} }])
    .to_string();
    up.aws(&[
        "register-task-definition",
        "--family",
        &family,
        "--container-definitions",
        &defs,
    ]);
    up.aws(&[
        "create-service",
        "--service-name",
        "checked",
        "--task-definition",
        &family,
        "--desired-count",
        "2",
    ]);
    // Steady means healthy here: the deployment completes only on HEALTHY tasks.
    up.until_steady("checked", 2, None);
    let ts = up.tasks("checked");
    assert!(ts.iter().all(|t| t["healthStatus"] == "HEALTHY"), "{ts:#?}");

    let victim = ts[0]["taskArn"].as_str().expect("arn").to_owned();
    let cid = containers_of(&victim)
        .pop()
        .expect("the victim's container");
    let sick = Command::new("docker")
        .args(["exec", &cid, "busybox", "rm", "/ok"])
        .output()
        .expect("docker exec");
    assert!(sick.status.success(), "{}", text(&sick.stderr));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let t = &up.aws(&["describe-tasks", "--tasks", &victim])["tasks"][0];
        let healthy: Vec<Value> = up
            .tasks("checked")
            .into_iter()
            .filter(|t| t["healthStatus"] == "HEALTHY" && t["desiredStatus"] == "RUNNING")
            .collect();
        if t["desiredStatus"] == "STOPPED" && healthy.len() == 2 {
            assert_eq!(
                t["stoppedReason"], "Task failed container health checks",
                "{t}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unhealthy task was not replaced: {t}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let s = up.service("checked");
    assert!(
        s["deployments"][0]["failedTasks"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{s:#}"
    );
    up.aws(&["delete-service", "--service", "checked", "--force"]);
}

#[test]
fn a_restart_in_the_middle_of_a_rolling_update_resumes_it() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start_in(dir.path());
    let instance = up.until_any_instance();
    let _guard = CleanupGuard::new("berth.container-instance", instance.clone());
    let family = format!("e2e-restart-{}", std::process::id());
    let defs = |version: &str| {
        json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16,
            "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
            "environment": [{"name": "VERSION", "value": version}] }])
        .to_string()
    };
    up.aws(&[
        "register-task-definition",
        "--family",
        &family,
        "--container-definitions",
        &defs("1"),
    ]);
    let dc = json!({"minimumHealthyPercent": 50, "maximumPercent": 150}).to_string();
    up.aws(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        &family,
        "--desired-count",
        "4",
        "--deployment-configuration",
        &dc,
    ]);
    up.until_steady("web", 4, None);
    let td2 = up.aws(&[
        "register-task-definition",
        "--family",
        &family,
        "--container-definitions",
        &defs("2"),
    ]);
    let td2 = td2["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("arn")
        .to_owned();
    up.aws(&[
        "update-service",
        "--service",
        "web",
        "--task-definition",
        &td2,
    ]);
    // Stop berth as soon as the update is under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ts = up.tasks("web");
        if ts.iter().any(|t| t["taskDefinitionArn"] == td2.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the update never started: {ts:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(up);
    let up = Up::start_in(dir.path());
    let s = up.until_steady("web", 4, Some((2, 6)));
    assert_eq!(s["taskDefinition"], td2.as_str());
    let ts = up.tasks("web");
    assert_eq!(ts.len(), 4);
    assert!(
        ts.iter().all(|t| t["taskDefinitionArn"] == td2.as_str()),
        "{ts:#?}"
    );
    // Exactly the service's containers run: none of the old left, none doubled.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=berth.container-instance={instance}"),
            ])
            .output()
            .expect("docker ps");
        let n = text(&out.stdout).lines().count();
        if n == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} containers run for 4 tasks");
        std::thread::sleep(Duration::from_millis(300));
    }
    up.aws(&["delete-service", "--service", "web", "--force"]);
}

/// `GET path` on 127.0.0.1:`port`, as any HTTP client on the host would:
/// the status code and the body.
fn http_get(port: u64, path: &str) -> Result<(u16, String), String> {
    let port = u16::try_from(port).map_err(|_| format!("{port} is not a port"))?;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connecting to 127.0.0.1:{port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| format!("sending to :{port}: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("reading from :{port}: {e}"))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer from :{port}: {answer:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line from :{port}: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The host port Docker chose for the task's container port `WEB_PORT`.
fn host_port(t: &Value) -> u64 {
    t["containers"][0]["networkBindings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["containerPort"] == WEB_PORT)
        .and_then(|b| b["hostPort"].as_u64())
        .unwrap_or_else(|| panic!("no host port for {WEB_PORT}: {t:#}"))
}

fn primary_id(s: &Value) -> String {
    s["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .find(|d| d["status"] == "PRIMARY")
        .and_then(|d| d["id"].as_str())
        .unwrap_or_else(|| panic!("no PRIMARY deployment: {s:#}"))
        .to_owned()
}

fn has_event(s: &Value, needle: &str) -> bool {
    s["events"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["message"].as_str().is_some_and(|m| m.contains(needle)))
}

#[test]
fn a_web_service_serves_while_healthy_and_a_version_failing_its_health_endpoint_never_completes() {
    if !web_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let family = format!("e2e-web-{}", std::process::id());
    let defs = |command: Option<&str>| {
        // httpd as PID 1 ignores SIGTERM: a short stopTimeout, then SIGKILL.
        let mut d = json!({ "name": "web", "image": WEB_IMAGE, "memory": 32, "stopTimeout": 2,
            "portMappings": [{"containerPort": WEB_PORT, "hostPort": 0}],
            "healthCheck": {"command": ["CMD-SHELL", format!("wget -q -O- http://127.0.0.1:{WEB_PORT}/health")],
                "interval": 5, "timeout": 5, "retries": 3} });
        if let Some(c) = command {
            d["command"] = json!(["sh", "-c", c]);
        }
        json!([d]).to_string()
    };
    let td = |command: Option<&str>| {
        up.aws(&[
            "register-task-definition",
            "--family",
            &family,
            "--container-definitions",
            &defs(command),
        ])["taskDefinition"]["taskDefinitionArn"]
            .as_str()
            .expect("arn")
            .to_owned()
    };
    let v1 = td(None);
    let dc = json!({"minimumHealthyPercent": 100, "maximumPercent": 200,
        "deploymentCircuitBreaker": {"enable": true, "rollback": true}})
    .to_string();
    up.aws(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        &v1,
        "--desired-count",
        "2",
        "--deployment-configuration",
        &dc,
    ]);
    // Steady needs HEALTHY tasks: the health endpoint answered inside the container.
    let first = primary_id(&up.until_steady("web", 2, None));
    let ts = up.tasks("web");
    assert_eq!(ts.len(), 2, "{ts:#?}");
    assert!(ts.iter().all(|t| t["healthStatus"] == "HEALTHY"), "{ts:#?}");
    // Each task got its own host port from Docker, and serves on it.
    let mut ports: Vec<u64> = ts.iter().map(host_port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 2, "two tasks, two host ports: {ts:#?}");
    for p in &ports {
        assert!(*p > 0, "{ts:#?}");
        assert_eq!(
            http_get(*p, "/health"),
            Ok((200, WEB_HEALTH_BODY.to_owned())),
            "task on host port {p}"
        );
    }

    // The same server without its health file: it runs, but /health is a 404.
    let v2 = td(Some(&format!(
        "rm /www/health && exec httpd -f -p {WEB_PORT} -h /www"
    )));
    let updated = up.aws(&[
        "update-service",
        "--service",
        "web",
        "--task-definition",
        &v2,
    ]);
    let second = primary_id(&updated["service"]);
    assert_ne!(first, second);
    // ECS: tasks failing their health checks are replaced and count as
    // failures for the circuit breaker; once it trips, the deployment
    // FAILED and, with rollback, the last completed one is PRIMARY again.
    // Until then the old version keeps serving (minimum 100%).
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut saw_404 = false;
    loop {
        let ts = up.tasks("web");
        let old: Vec<&Value> = ts
            .iter()
            .filter(|t| {
                t["taskDefinitionArn"] == v1.as_str()
                    && t["lastStatus"] == "RUNNING"
                    && t["desiredStatus"] == "RUNNING"
                    && t["healthStatus"] == "HEALTHY"
            })
            .collect();
        assert!(old.len() >= 2, "the old version stopped serving: {ts:#?}");
        for t in &old {
            let p = host_port(t);
            assert_eq!(
                http_get(p, "/health"),
                Ok((200, WEB_HEALTH_BODY.to_owned())),
                "old task on host port {p}"
            );
        }
        for t in ts.iter().filter(|t| t["taskDefinitionArn"] == v2.as_str()) {
            assert_ne!(
                t["healthStatus"], "HEALTHY",
                "a task of the broken version is healthy: {t:#}"
            );
            // Its server answers (it may be stopping meanwhile), without /health.
            if t["lastStatus"] == "RUNNING"
                && let Ok((status, _)) = http_get(host_port(t), "/health")
            {
                assert_eq!(status, 404, "{t:#}");
                saw_404 = true;
            }
        }
        let s = up.service("web");
        assert!(
            s["deployments"]
                .as_array()
                .expect("deployments")
                .iter()
                .all(|d| d["id"] != second.as_str() || d["rolloutState"] != "COMPLETED"),
            "the broken version's deployment completed: {s:#}"
        );
        if has_event(&s, &format!("deployment {second} deployment failed"))
            && has_event(&s, &format!("rolling back to deployment {first}"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken version's deployment never failed: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        saw_404,
        "never reached a task of the broken version to see its /health fail"
    );
    let s = up.until_steady("web", 2, None);
    assert_eq!(s["taskDefinition"], v1.as_str());
    assert_eq!(
        primary_id(&s),
        first,
        "the last COMPLETED deployment is PRIMARY again"
    );
    // The broken version's tasks failed as often as the breaker's threshold
    // (3 for 2 tasks), for their health; on a loaded machine one may fail
    // otherwise first (a start that timed out), which the breaker counts too.
    let d = up.stopped_tasks("web");
    let failed: Vec<&Value> = d
        .iter()
        .filter(|t| {
            t["taskDefinitionArn"] == v2.as_str()
                && (t["stoppedReason"] == "Task failed container health checks"
                    || t["stopCode"] != "ServiceSchedulerInitiated")
        })
        .collect();
    let sick = failed
        .iter()
        .filter(|t| t["stoppedReason"] == "Task failed container health checks")
        .count();
    assert!(
        failed.len() >= 3 && sick >= 1,
        "{} failed tasks, {sick} for failing health checks: {d:#?}",
        failed.len()
    );
    let serving: Vec<Value> = up
        .tasks("web")
        .into_iter()
        .filter(|t| t["desiredStatus"] == "RUNNING")
        .collect();
    assert_eq!(serving.len(), 2, "{serving:#?}");
    for t in serving {
        assert_eq!(t["taskDefinitionArn"], v1.as_str());
        assert_eq!(
            http_get(host_port(&t), "/health"),
            Ok((200, WEB_HEALTH_BODY.to_owned()))
        );
    }
    up.aws(&["delete-service", "--service", "web", "--force"]);
}
