//! The agent against the real Docker daemon, with a tiny image built locally.
//! Each test plays the control layer (places tasks on a control plane in
//! memory, `support::FakeControlPlane`), drives the agent pass by pass, and
//! removes what it created through a guard, also on failure.

mod support;

use std::sync::Arc;
use std::time::Duration;

use berth_agent::testing::{CleanupGuard, TEST_IMAGE, docker_or_skip, ensure_test_image};
use berth_agent::{Agent, AgentConfig, LABEL_INSTANCE, LABEL_TASK_ARN};
use berth_core::arn::ArnContext;
use berth_core::model::{ContainerInstance, Task, TaskDefinition};
use berth_core::status::{ContainerStatus, DesiredStatus, HealthStatus, StopCode, TaskStatus};
use berth_protocol::TaskLogsRequest;
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use serde_json::json;

struct Fixture {
    docker: Docker,
    dir: tempfile::TempDir,
    plane: Arc<support::FakeControlPlane>,
    agent: Agent,
    // Last, so containers go before the store and directory.
    _guard: CleanupGuard,
}

async fn fixture() -> Option<Fixture> {
    let docker = docker_or_skip().await?;
    ensure_test_image(&docker).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plane = Arc::new(support::FakeControlPlane::default());
    let mut cfg = AgentConfig::new("default", dir.path());
    cfg.default_stop_timeout = Duration::from_secs(5);
    let agent = Agent::new(plane.clone(), cfg).expect("agent");
    let guard = CleanupGuard::new(LABEL_INSTANCE, agent.instance_arn());
    agent.register().await.expect("register");
    Some(Fixture {
        docker,
        dir,
        plane,
        agent,
        _guard: guard,
    })
}

impl Fixture {
    /// Registers `containers` as task definition `family:1` and places a
    /// PENDING task of it on this instance, as the control layer does.
    fn run_task(&self, family: &str, containers: serde_json::Value) -> String {
        let arn = ArnContext::default();
        let td: TaskDefinition = serde_json::from_value(json!({
            "taskDefinitionArn": arn.task_definition(family, 1),
            "family": family, "revision": 1, "networkMode": "bridge", "status": "ACTIVE",
            "containerDefinitions": containers,
        }))
        .expect("task definition");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let task: Task = serde_json::from_value(json!({
            "taskArn": arn.task("default", &id),
            "clusterArn": arn.cluster("default"),
            "taskDefinitionArn": td.task_definition_arn,
            "containerInstanceArn": self.agent.instance_arn(),
            "lastStatus": "PENDING", "desiredStatus": "RUNNING",
            "createdAt": 1.0, "version": 1, "launchType": "EC2",
        }))
        .expect("task");
        let arn = task.task_arn.clone();
        self.plane.place(td, task);
        arn
    }

    fn task(&self, arn: &str) -> Task {
        self.plane.task(arn)
    }

    fn instance(&self) -> ContainerInstance {
        self.plane.instance(self.agent.instance_arn())
    }

    fn stop_task(&self, arn: &str) {
        self.plane.stop(arn);
    }

    /// Reconciles until `done(task)` holds; panics with the task after 90 s.
    async fn until(&self, arn: &str, what: &str, done: impl Fn(&Task) -> bool) -> Task {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            self.agent.reconcile_once().await.expect("reconcile");
            let t = self.task(arn);
            if done(&t) {
                return t;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "task never became {what}: {}",
                    serde_json::to_string_pretty(&t).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn containers_of(&self, task_arn: &str) -> Vec<bollard::models::ContainerSummary> {
        let mut filters = std::collections::HashMap::new();
        filters.insert("label", vec![format!("{LABEL_TASK_ARN}={task_arn}")]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker.list_containers(Some(opts)).await.expect("list")
    }
}

fn running(t: &Task) -> bool {
    t.last_status == TaskStatus::Running
}
fn stopped(t: &Task) -> bool {
    t.last_status == TaskStatus::Stopped
}

const LOOP: &str = "trap 'exit 0' TERM; while true; do sleep 0.2; done";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_with_labels_env_ports_and_stops_on_sigterm() {
    let Some(f) = fixture().await else { return };
    let arn = f.run_task(
        "web",
        json!([{ "name": "app", "image": TEST_IMAGE, "cpu": 128, "memory": 64,
                 "command": ["sh", "-c", LOOP], "environment": [{"name": "GREETING", "value": "hi"}],
                 "workingDirectory": "/bin", "dockerLabels": {"team": "web"}, "stopTimeout": 20,
                 "portMappings": [{"containerPort": 8080, "hostPort": 0}] }]),
    );
    let t = f.until(&arn, "RUNNING", running).await;
    assert!(t.started_at.is_some());
    let c = &t.containers[0];
    assert_eq!(c.last_status, ContainerStatus::Running);
    assert_eq!(
        c.network_bindings.len(),
        1,
        "one binding: {:?}",
        c.network_bindings
    );
    assert_eq!(c.network_bindings[0].container_port, 8080);
    assert!(c.network_bindings[0].host_port > 0);
    let id = c.runtime_id.clone().expect("runtime id");
    let inspect = f
        .docker
        .inspect_container(&id, None)
        .await
        .expect("inspect");
    let config = inspect.config.expect("config");
    let labels = config.labels.expect("labels");
    assert_eq!(labels.get("berth.task-arn"), Some(&arn));
    assert_eq!(
        labels.get("berth.container-name").map(String::as_str),
        Some("app")
    );
    assert_eq!(
        labels.get("berth.cluster").map(String::as_str),
        Some("arn:aws:ecs:local:000000000000:cluster/default")
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("web"));
    assert!(config.env.expect("env").contains(&"GREETING=hi".to_owned()));
    assert_eq!(config.working_dir.as_deref(), Some("/bin"));
    let hc = inspect.host_config.expect("host config");
    assert_eq!(hc.cpu_shares, Some(128));
    assert_eq!(hc.memory, Some(64 * 1024 * 1024));
    // The instance accounts for the task.
    let ci = f.instance();
    assert_eq!(ci.running_tasks_count, 1);
    let cpu = |r: &[berth_core::model::Resource]| {
        r.iter()
            .find(|r| r.name == "CPU")
            .and_then(|r| r.integer_value)
            .expect("cpu")
    };
    assert_eq!(
        cpu(&ci.registered_resources) - cpu(&ci.remaining_resources),
        128
    );
    let port = c.network_bindings[0].host_port.to_string();
    assert!(ci.remaining_resources.iter().any(|r| {
        r.name == "PORTS"
            && r.string_set_value
                .as_ref()
                .is_some_and(|v| v.contains(&port))
    }));

    f.stop_task(&arn);
    let t = f.until(&arn, "STOPPED", stopped).await;
    // The trap ran: SIGTERM, not SIGKILL.
    assert_eq!(t.containers[0].exit_code, Some(0));
    assert!(t.stopped_at.is_some() && t.stopping_at.is_some());
    assert!(f.containers_of(&arn).await.is_empty(), "containers removed");
    let ci = f.instance();
    assert_eq!(ci.running_tasks_count, 0);
    assert_eq!(
        cpu(&ci.registered_resources),
        cpu(&ci.remaining_resources),
        "resources freed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_ignoring_sigterm_is_killed_after_stop_timeout() {
    let Some(f) = fixture().await else { return };
    // PID 1 ignores SIGTERM unless it installs a handler.
    let arn = f.run_task(
        "stubborn",
        json!([{ "name": "app", "image": TEST_IMAGE, "memory": 32,
        "command": ["sleep", "600"], "stopTimeout": 1 }]),
    );
    f.until(&arn, "RUNNING", running).await;
    f.stop_task(&arn);
    let t = f.until(&arn, "STOPPED", stopped).await;
    assert_eq!(t.containers[0].exit_code, Some(137), "SIGKILL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_essential_exit_stops_the_task_and_a_non_essential_one_is_recorded() {
    let Some(f) = fixture().await else { return };
    let arn = f.run_task("exits", json!([
        { "name": "app", "image": TEST_IMAGE, "memory": 32, "command": ["sh", "-c", "sleep 2; exit 3"] },
        { "name": "side", "image": TEST_IMAGE, "memory": 32, "essential": false, "command": ["sh", "-c", "exit 5"] },
    ]));
    let t = f
        .until(&arn, "RUNNING with side stopped", |t| {
            running(t)
                && t.containers
                    .iter()
                    .any(|c| c.name == "side" && c.last_status == ContainerStatus::Stopped)
        })
        .await;
    let side = t
        .containers
        .iter()
        .find(|c| c.name == "side")
        .expect("side");
    assert_eq!(side.exit_code, Some(5));
    assert_eq!(
        t.desired_status,
        DesiredStatus::Running,
        "a non-essential exit does not stop the task"
    );
    let t = f.until(&arn, "STOPPED", stopped).await;
    assert_eq!(t.stop_code, Some(StopCode::EssentialContainerExited));
    let reason = t.stopped_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("app") && reason.contains("code 3"),
        "reason: {reason}"
    );
    let app = t.containers.iter().find(|c| c.name == "app").expect("app");
    assert_eq!(app.exit_code, Some(3));
    assert!(f.containers_of(&arn).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_on_success_orders_start_and_a_failed_init_fails_the_task() {
    let Some(f) = fixture().await else { return };
    // The app may start only after init exited 0; Docker's timestamps show the order.
    let ok = f.run_task("deps", json!([
        { "name": "init", "image": TEST_IMAGE, "memory": 32, "essential": false, "command": ["sh", "-c", "sleep 1; exit 0"] },
        { "name": "app", "image": TEST_IMAGE, "memory": 32, "command": ["sh", "-c", LOOP],
          "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}] },
    ]));
    let bad = f.run_task("deps-bad", json!([
        { "name": "init", "image": TEST_IMAGE, "memory": 32, "essential": false, "command": ["sh", "-c", "exit 4"] },
        { "name": "app", "image": TEST_IMAGE, "memory": 32, "command": ["sh", "-c", LOOP],
          "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}] },
    ]));
    let t = f.until(&ok, "RUNNING", running).await;
    let init = t
        .containers
        .iter()
        .find(|c| c.name == "init")
        .expect("init");
    assert_eq!(
        (init.last_status, init.exit_code),
        (ContainerStatus::Stopped, Some(0))
    );
    let app_id = t
        .containers
        .iter()
        .find(|c| c.name == "app")
        .and_then(|c| c.runtime_id.clone())
        .expect("app id");
    let init_id = init.runtime_id.clone().expect("init id");
    let started = f
        .docker
        .inspect_container(&app_id, None)
        .await
        .expect("app")
        .state
        .and_then(|s| s.started_at)
        .expect("app started");
    let finished = f
        .docker
        .inspect_container(&init_id, None)
        .await
        .expect("init")
        .state
        .and_then(|s| s.finished_at)
        .expect("init finished");
    // RFC 3339 in UTC with the same layout: compare the seconds part.
    assert!(
        started[..19] >= finished[..19],
        "app started {started} before init finished {finished}"
    );
    let t = f.until(&bad, "STOPPED", stopped).await;
    assert_eq!(t.stop_code, Some(StopCode::TaskFailedToStart));
    assert!(
        t.stopped_reason.as_deref().unwrap_or("").contains("init"),
        "{:?}",
        t.stopped_reason
    );
    assert!(
        f.containers_of(&bad).await.is_empty(),
        "nothing left of the failed task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_set_health_status() {
    let Some(f) = fixture().await else { return };
    let good = f.run_task("healthy", json!([{ "name": "app", "image": TEST_IMAGE, "memory": 32, "command": ["sh", "-c", LOOP],
        "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 1, "timeout": 1, "retries": 1} }]));
    let sick = f.run_task(
        "sick",
        json!([{ "name": "app", "image": TEST_IMAGE, "memory": 32, "command": ["sh", "-c", LOOP],
        "healthCheck": {"command": ["CMD", "false"], "interval": 1, "timeout": 1, "retries": 1} }]),
    );
    let t = f
        .until(&good, "HEALTHY", |t| {
            t.health_status == Some(HealthStatus::Healthy)
        })
        .await;
    assert_eq!(t.containers[0].health_status, Some(HealthStatus::Healthy));
    let t = f
        .until(&sick, "UNHEALTHY", |t| {
            t.health_status == Some(HealthStatus::Unhealthy)
        })
        .await;
    assert_eq!(t.containers[0].health_status, Some(HealthStatus::Unhealthy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_re_adopts_and_a_removed_container_stops_its_task() {
    let Some(f) = fixture().await else { return };
    let keep = f.run_task("keep", json!([{ "name": "app", "image": TEST_IMAGE, "memory": 32, "command": ["sh", "-c", LOOP] }]));
    let gone = f.run_task("gone", json!([{ "name": "app", "image": TEST_IMAGE, "memory": 32, "command": ["sh", "-c", LOOP] }]));
    let before = f.until(&keep, "RUNNING", running).await;
    f.until(&gone, "RUNNING", running).await;
    // A new agent on the same data directory: the same instance, the same containers.
    let mut cfg = AgentConfig::new("default", f.dir.path());
    cfg.default_stop_timeout = Duration::from_secs(5);
    let again = Agent::new(f.plane.clone(), cfg).expect("agent");
    assert_eq!(again.instance_arn(), f.agent.instance_arn());
    again.register().await.expect("re-register");
    for _ in 0..5 {
        again.reconcile_once().await.expect("reconcile");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = f.task(&keep);
    assert_eq!(after.last_status, TaskStatus::Running);
    assert_eq!(
        after.containers[0].runtime_id, before.containers[0].runtime_id,
        "the same container, adopted"
    );
    // Remove one behind berth's back.
    let id = f.task(&gone).containers[0].runtime_id.clone().expect("id");
    let opts = RemoveContainerOptionsBuilder::default().force(true).build();
    f.docker
        .remove_container(&id, Some(opts))
        .await
        .expect("remove");
    let t = f.until(&gone, "STOPPED", stopped).await;
    assert!(
        t.stopped_reason
            .as_deref()
            .unwrap_or("")
            .contains("removed outside berth"),
        "{:?}",
        t.stopped_reason
    );
    assert_eq!(f.task(&keep).last_status, TaskStatus::Running);
}

/// A start whose RUNNING report was not taken (the control plane could
/// not write it, or berth was killed first) is resumed by the next pass:
/// the container it started is adopted, not removed and run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_start_is_resumed_not_run_twice() {
    let Some(f) = fixture().await else { return };
    f.plane.refuse_running_reports(1);
    let arn = f.run_task("resumed", json!([{ "name": "app", "image": TEST_IMAGE, "memory": 32, "command": ["sh", "-c", LOOP] }]));
    // One pass: its start job starts the container, and its report is refused.
    f.agent.reconcile_once().await.expect("reconcile");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while f.plane.running_reports_to_refuse() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(f.task(&arn).last_status, TaskStatus::Pending);
    let first = f.containers_of(&arn).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let id = first[0].id.clone().expect("id");
    let started_at = |i: bollard::models::ContainerInspectResponse| {
        i.state.and_then(|s| s.started_at).unwrap_or_default()
    };
    let before = started_at(
        f.docker
            .inspect_container(&id, None)
            .await
            .expect("inspect"),
    );
    // The next passes resume it.
    let t = f.until(&arn, "RUNNING", running).await;
    assert_eq!(
        t.containers[0].runtime_id.as_deref(),
        Some(id.as_str()),
        "the same container"
    );
    let after = f.containers_of(&arn).await;
    assert_eq!(after.len(), 1, "{after:?}");
    let now = started_at(
        f.docker
            .inspect_container(&id, None)
            .await
            .expect("inspect"),
    );
    assert_eq!(now, before, "started once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_agent_stops_what_was_replaced_before_it_starts_anything() {
    let Some(f) = fixture().await else { return };
    let spec = json!([{ "name": "app", "image": TEST_IMAGE, "memory": 32, "stopTimeout": 2, "command": ["sh", "-c", LOOP] }]);
    let keep = f.run_task("keep", spec.clone());
    let replaced = f.run_task("replaced", spec.clone());
    let forgotten = f.run_task("forgotten", spec.clone());
    for arn in [&keep, &replaced, &forgotten] {
        f.until(arn, "RUNNING", running).await;
    }
    let kept = f.task(&keep).containers[0].runtime_id.clone();
    assert!(kept.is_some());
    // While the agent is away the control plane replaces one task elsewhere
    // (asks it to stop), collects another, and assigns a new one here.
    f.stop_task(&replaced);
    f.plane.forget(&forgotten);
    let new = f.run_task("new", spec);
    // The agent comes back on the same data directory.
    let mut cfg = AgentConfig::new("default", f.dir.path());
    cfg.default_stop_timeout = Duration::from_secs(5);
    let again = Agent::new(f.plane.clone(), cfg).expect("agent");
    assert_eq!(again.instance_arn(), f.agent.instance_arn());
    again.register().await.expect("re-register");
    again
        .reconcile_after_connect()
        .await
        .expect("the reconnect pass");
    // When that pass returns, what was replaced or collected is gone, the
    // rest adopted, and nothing new started yet.
    assert!(f.containers_of(&replaced).await.is_empty());
    assert_eq!(f.task(&replaced).last_status, TaskStatus::Stopped);
    assert!(f.containers_of(&forgotten).await.is_empty());
    assert!(
        f.containers_of(&new).await.is_empty(),
        "nothing starts before the reconnect pass is done"
    );
    assert_eq!(f.task(&new).last_status, TaskStatus::Pending);
    let k = f.task(&keep);
    assert_eq!(k.last_status, TaskStatus::Running);
    assert_eq!(
        k.containers[0].runtime_id, kept,
        "the same container, adopted"
    );
    // Then it converges as usual.
    f.until(&new, "RUNNING", running).await;
    assert_eq!(f.containers_of(&keep).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_the_task_naming_it_and_leaves_nothing() {
    let Some(f) = fixture().await else { return };
    let arn = f.run_task(
        "missing",
        json!([
            { "name": "app", "image": TEST_IMAGE, "memory": 32, "command": ["sh", "-c", LOOP] },
            { "name": "ghost", "image": "berth-test/does-not-exist:1", "memory": 32 },
        ]),
    );
    let t = f.until(&arn, "STOPPED", stopped).await;
    assert_eq!(t.stop_code, Some(StopCode::TaskFailedToStart));
    assert!(
        t.stopped_reason
            .as_deref()
            .unwrap_or("")
            .contains("berth-test/does-not-exist:1"),
        "{:?}",
        t.stopped_reason
    );
    assert!(
        f.containers_of(&arn).await.is_empty(),
        "nothing left behind"
    );
    assert_eq!(f.instance().pending_tasks_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_come_from_docker() {
    let Some(f) = fixture().await else { return };
    let arn = f.run_task(
        "logs",
        json!([{ "name": "app", "image": TEST_IMAGE, "memory": 32,
        "command": ["sh", "-c", "echo hello-from-berth; echo oops >&2; exec sleep 600"] }]),
    );
    f.until(&arn, "RUNNING", running).await;
    let id = arn.rsplit('/').next().expect("id").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut out = Vec::new();
        berth_agent::logs::task_logs(&id, Some("app"), false, &mut out)
            .await
            .expect("logs");
        let text = String::from_utf8_lossy(&out);
        if text.contains("hello-from-berth") && text.contains("oops") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "logs never showed the output: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The log-read side of the protocol reads the same output, timestamped.
    let logs = f
        .agent
        .log_reader()
        .read_task_logs(TaskLogsRequest {
            task_arn: arn.clone(),
            container: None,
            start_micros: None,
            limit: 100,
        })
        .await
        .expect("log read");
    assert_eq!(logs.containers.len(), 1);
    assert_eq!(logs.containers[0].name, "app");
    let lines: Vec<&str> = logs.containers[0]
        .entries
        .iter()
        .map(|e| e.message.as_str())
        .collect();
    assert!(lines.contains(&"hello-from-berth"), "{lines:?}");
    assert!(logs.containers[0].entries.iter().all(|e| e.nanos > 0));
    let mut out = Vec::new();
    let err = berth_agent::logs::task_logs(&id, Some("nope"), false, &mut out)
        .await
        .expect_err("no such container");
    assert!(err.to_string().contains("nope"));
}
