//! Coordination through the store: a second control plane over the same
//! store (its own `Control`, sharing no wake-up with the first) commits a
//! change, and the first's schedulers act on it within a second. Their
//! safety-net timers are set far beyond that, so only the store's watch can
//! wake them in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::arn::ArnContext;
use berth_store::Store;
use serde_json::json;

use super::super::Control;
use super::super::types::TasksResponse;

/// Far beyond the one-second bound: a pass this late fails the test.
const NO_TICK: Duration = Duration::from_secs(60);

/// Requests as their JSON, so the tests do not depend on where each
/// request type lives.
fn req<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a valid request")
}

/// Two control planes over one store file.
fn two_control_planes() -> (tempfile::TempDir, Arc<Control>, Arc<Control>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("berth.redb")).expect("store opens");
    let first = Control::new(Arc::new(store.clone()), ArnContext::default());
    let second = Control::new(Arc::new(store), ArnContext::default());
    first.ensure_default_cluster().expect("default cluster");
    second
        .register_task_definition(req(json!({
            "family": "batch",
            "containerDefinitions": [
                {"name": "app", "image": "berth/hello:1", "cpu": 1024, "memory": 10}
            ],
        })))
        .expect("task definition");
    second
        .register_container_instance(req(json!({
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024},
            ],
        })))
        .expect("instance");
    (dir, Arc::new(first), Arc::new(second))
}

/// Runs `f` on a blocking thread (the control operations block on the store).
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    tokio::task::spawn_blocking(f).await.expect("no panic")
}

/// Polls `done` until it holds, or fails after `bound` since `start`.
async fn within(bound: Duration, start: Instant, what: &str, mut done: impl FnMut() -> bool) {
    loop {
        if done() {
            return;
        }
        assert!(
            start.elapsed() < bound,
            "{what} not within {bound:?} of the commit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_committed_by_another_control_plane_wakes_this_ones_queue() {
    let (_dir, first, second) = two_control_planes();
    let queued = || -> serde_json::Value {
        json!({"taskDefinition": "batch", "tags": [{"key": super::super::QUEUE_TAG, "value": "true"}]})
    };
    let running: TasksResponse = second.run_task(req(queued())).expect("run");
    let waiting: TasksResponse = second.run_task(req(queued())).expect("run");
    assert!(running.tasks[0].container_instance_arn.is_some());
    assert!(waiting.tasks[0].container_instance_arn.is_none(), "queued");
    let waiting_arn = waiting.tasks[0].task_arn.clone();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(super::run_every(Arc::clone(&first), NO_TICK, async {
        let _ = stopped.await;
    }));
    // Let the scheduler start watching before the commit it must see.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    let arn = running.tasks[0].task_arn.clone();
    let other = Arc::clone(&second);
    blocking(move || other.stop_task(req(json!({"task": arn}))))
        .await
        .expect("stop");
    within(
        Duration::from_secs(1),
        start,
        "the queued task placed",
        || {
            let d = first
                .describe_tasks(req(json!({"tasks": [waiting_arn.clone()]})))
                .expect("describe");
            d.tasks[0].container_instance_arn.is_some()
        },
    )
    .await;
    let _ = stop.send(());
    scheduler.await.expect("scheduler ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_created_by_another_control_plane_is_started_by_this_ones_scheduler() {
    let (_dir, first, second) = two_control_planes();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(super::super::service_scheduler::run_every(
        Arc::clone(&first),
        NO_TICK,
        async {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    let other = Arc::clone(&second);
    blocking(move || {
        other.create_service(req(json!({
            "serviceName": "web", "taskDefinition": "batch", "desiredCount": 1,
        })))
    })
    .await
    .expect("create service");
    within(Duration::from_secs(1), start, "the service's task", || {
        let listed = first
            .list_tasks(req(json!({"serviceName": "web"})))
            .expect("list");
        !listed.task_arns.is_empty()
    })
    .await;
    let _ = stop.send(());
    scheduler.await.expect("scheduler ends");
}

#[test]
fn a_placement_by_another_control_plane_is_seen_by_this_ones_view() {
    let (_dir, first, second) = two_control_planes();
    second
        .register_task_definition(req(json!({
            "family": "half",
            "containerDefinitions": [
                {"name": "app", "image": "berth/hello:1", "cpu": 512, "memory": 10}
            ],
        })))
        .expect("task definition");
    let run = |c: &Control| -> TasksResponse {
        c.run_task(req(json!({"taskDefinition": "half"})))
            .expect("run")
    };
    // The first keeps a view of the cluster after its placement ...
    assert_eq!(run(&first).tasks.len(), 1);
    // ... the second fills the instance ...
    assert_eq!(run(&second).tasks.len(), 1);
    // ... and the first's view knows: nothing fits.
    let full = run(&first);
    assert!(full.tasks.is_empty());
    assert_eq!(full.failures[0].reason, "RESOURCE:CPU");
}
