//! Liveness over a real store, on a fake clock: agents play their part
//! through the in-process agent protocol (`LocalControlPlane`), and the
//! schedulers' passes are called by hand.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

use std::sync::Arc;

use berth_core::arn::ArnContext;
use berth_core::model::{RegisterTaskDefinition, Resource, Task, VersionInfo};
use berth_core::status::{DesiredStatus, StopCode, TaskStatus};
use berth_protocol::{
    ControlPlane, Heartbeat, HostFacts, ManifestRequest, RegisterInstance, TaskStateChange,
    builtin_attributes,
};
use serde_json::json;

use super::*;
use crate::control::Control;
use crate::control::agents::LocalControlPlane;
use crate::control::services::CreateServiceRequest;
use crate::control::types::*;

/// A clock the test sets.
#[derive(Debug)]
struct FakeClock(Mutex<f64>);

impl Clock for FakeClock {
    fn now(&self) -> f64 {
        *self.0.lock().unwrap()
    }
}

const TIMING: Timing = Timing {
    timeout: 15.0,
    grace: 30.0,
};

/// One server: the control plane, its liveness and its agents' protocol.
struct Server {
    control: Control,
    liveness: Arc<Liveness>,
    plane: LocalControlPlane,
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    clock: Arc<FakeClock>,
    server: Server,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path().join("berth.redb")).unwrap());
        let clock = Arc::new(FakeClock(Mutex::new(1000.0)));
        let server = Fixture::server_on(&store, &clock);
        server.control.ensure_default_cluster().unwrap();
        let td: RegisterTaskDefinition = serde_json::from_value(json!({
            "family": "web",
            "containerDefinitions": [{"name": "app", "image": "i", "cpu": 100, "memory": 100}],
        }))
        .unwrap();
        server.control.register_task_definition(td).unwrap();
        Fixture {
            _dir: dir,
            store,
            clock,
            server,
        }
    }

    /// A server over `store`, started at the clock's time.
    fn server_on(store: &Arc<Store>, clock: &Arc<FakeClock>) -> Server {
        let clock: Arc<dyn Clock> = Arc::clone(clock) as Arc<dyn Clock>;
        let liveness = Arc::new(Liveness::with_clock(clock, TIMING));
        Server {
            control: Control::new(Arc::clone(store), ArnContext::default()),
            plane: LocalControlPlane::new(Arc::clone(store), ArnContext::default())
                .with_liveness(Arc::clone(&liveness)),
            liveness,
        }
    }

    fn at(&self, t: f64) {
        *self.clock.0.lock().unwrap() = t;
    }

    fn pass(&self) -> PassStats {
        self.server.liveness.pass(&self.store).unwrap()
    }

    fn instance(&self, arn: &str) -> ContainerInstance {
        self.store
            .begin()
            .unwrap()
            .get::<ContainerInstance>(arn)
            .unwrap()
            .unwrap()
            .value
    }

    fn task(&self, arn: &str) -> Task {
        self.store
            .begin()
            .unwrap()
            .get::<Task>(arn)
            .unwrap()
            .unwrap()
            .value
    }

    fn run_batch_task(&self) -> Result<Task, String> {
        let run = self
            .server
            .control
            .run_task(RunTaskRequest {
                task_definition: Some("web".into()),
                ..Default::default()
            })
            .unwrap();
        match run.tasks.first() {
            Some(t) => Ok(t.clone()),
            None => Err(run.failures[0].reason.clone()),
        }
    }

    /// The service's tasks (any status), by listing them all.
    fn service_tasks(&self) -> Vec<Task> {
        let txn = self.store.begin().unwrap();
        collect_pages(|p| txn.list::<Task>(p))
            .unwrap()
            .into_iter()
            .map(|v| v.value)
            .filter(berth_core::liveness::is_service_task)
            .collect()
    }
}

fn arn_of(name: &str) -> String {
    format!("arn:aws:ecs:local:000000000000:container-instance/default/{name}")
}

async fn register(plane: &LocalControlPlane, name: &str) -> String {
    let arn = arn_of(name);
    plane
        .register_instance(RegisterInstance {
            cluster: "default".into(),
            container_instance_arn: arn.clone(),
            ec2_instance_id: format!("host-{name}"),
            agent_connected: true,
            total_resources: vec![
                Resource::integer("CPU", 1024),
                Resource::integer("MEMORY", 1024),
            ],
            attributes: builtin_attributes(&HostFacts::assumed()),
            version_info: VersionInfo::default(),
        })
        .await
        .unwrap();
    arn
}

async fn heartbeat(plane: &LocalControlPlane, arn: &str) {
    let ack = plane
        .heartbeat(Heartbeat {
            cluster: "default".into(),
            container_instance_arn: arn.into(),
            agent_connected: true,
        })
        .await
        .unwrap();
    assert!(ack.registered);
}

/// The agent reports task `arn` as `status`; whether it applied.
async fn report(plane: &LocalControlPlane, arn: &str, status: TaskStatus, at: f64) -> bool {
    plane
        .submit_task_state_change(TaskStateChange {
            cluster: "default".into(),
            task: arn.into(),
            status: Some(status),
            at,
            ..Default::default()
        })
        .await
        .unwrap()
        .applied
}

#[tokio::test]
async fn an_agent_unheard_for_the_timeout_is_disconnected_and_placement_refuses_it() {
    let f = Fixture::new();
    let a = register(&f.server.plane, "a").await;
    f.at(1014.9);
    assert_eq!(f.pass(), PassStats::default());
    assert!(f.instance(&a).agent_connected);

    f.at(1015.0);
    assert_eq!(f.pass().lost, 1);
    let ci = f.instance(&a);
    assert!(!ci.agent_connected, "{ci:?}");
    assert_eq!(f.run_batch_task().unwrap_err(), "AGENT");

    // Nothing more is due: the next passes write nothing.
    let revision = f.store.revision().unwrap();
    f.at(1030.0);
    assert_eq!(f.pass(), PassStats::default());
    assert_eq!(f.store.revision().unwrap(), revision);
}

#[tokio::test]
async fn after_the_grace_a_lost_instances_tasks_stop_and_its_service_task_is_replaced() {
    let f = Fixture::new();
    let a = register(&f.server.plane, "a").await;
    let batch = f.run_batch_task().unwrap();
    let c = &f.server.control;
    c.create_service(CreateServiceRequest {
        service_name: Some("svc".into()),
        task_definition: Some("web".into()),
        desired_count: Some(1),
        ..Default::default()
    })
    .unwrap();
    c.services_pass().unwrap();
    let first = f.service_tasks();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].container_instance_arn.as_deref(), Some(a.as_str()));
    for t in [&batch.task_arn, &first[0].task_arn] {
        assert!(report(&f.server.plane, t, TaskStatus::Running, 1001.0).await);
    }
    // A second instance, whose agent keeps talking.
    let b = register(&f.server.plane, "b").await;

    f.at(1016.0);
    heartbeat(&f.server.plane, &b).await;
    assert_eq!(f.pass().lost, 1);
    // Within the grace the lost instance's tasks stay as they were, and
    // the service has its task: nothing started.
    assert_eq!(c.services_pass().unwrap().started, 0);
    assert_eq!(f.task(&batch.task_arn).last_status, TaskStatus::Running);

    f.at(1030.0);
    heartbeat(&f.server.plane, &b).await;
    f.at(1045.9);
    heartbeat(&f.server.plane, &b).await;
    assert_eq!(f.pass(), PassStats::default(), "the grace is not over");
    assert_eq!(f.task(&batch.task_arn).last_status, TaskStatus::Running);
    // Lost at 1016, grace 30: due at 1046.
    f.at(1046.0);
    assert_eq!(f.pass().tasks_stopped, 2);

    let stopped = f.task(&batch.task_arn);
    assert_eq!(
        (stopped.last_status, stopped.desired_status),
        (TaskStatus::Stopped, DesiredStatus::Stopped)
    );
    assert_eq!(stopped.stop_code, Some(StopCode::TerminationNotice));
    assert!(
        stopped
            .stopped_reason
            .as_deref()
            .is_some_and(|r| r.contains("host-a") && r.contains("lost")),
        "{stopped:?}"
    );
    let svc_task = f.task(&first[0].task_arn);
    assert_eq!(svc_task.last_status, TaskStatus::Stopped);
    assert_eq!(
        svc_task.stop_code,
        Some(StopCode::ServiceSchedulerInitiated)
    );
    let ci = f.instance(&a);
    assert_eq!((ci.running_tasks_count, ci.pending_tasks_count), (0, 0));

    // The service scheduler replaces it on the connected instance.
    assert_eq!(c.services_pass().unwrap().started, 1);
    let live: Vec<Task> = f
        .service_tasks()
        .into_iter()
        .filter(|t| t.last_status != TaskStatus::Stopped)
        .collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].container_instance_arn.as_deref(), Some(b.as_str()));
    let svc = c
        .describe_services(crate::control::services::DescribeServicesRequest {
            services: vec!["svc".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        svc.services[0].deployments[0].failed_tasks, 0,
        "a lost host is no failure of the service's tasks"
    );
    // Settled: the next passes write nothing.
    let revision = f.store.revision().unwrap();
    f.at(1060.0);
    heartbeat(&f.server.plane, &b).await;
    assert_eq!(
        f.store.revision().unwrap(),
        revision,
        "a heartbeat that changes nothing writes nothing"
    );
    assert_eq!(f.pass(), PassStats::default());
}

#[tokio::test]
async fn a_returning_agent_is_connected_again_and_its_late_reports_leave_stopped_tasks_stopped() {
    let f = Fixture::new();
    let a = register(&f.server.plane, "a").await;
    let task = f.run_batch_task().unwrap();
    assert!(report(&f.server.plane, &task.task_arn, TaskStatus::Running, 1001.0).await);
    f.at(1020.0);
    f.pass();
    f.at(1050.0);
    assert_eq!(f.pass().tasks_stopped, 1);
    let stopped = f.task(&task.task_arn);

    // The agent is back: its manifest read alone connects the instance.
    f.at(1060.0);
    let manifest = f
        .server
        .plane
        .task_manifest(ManifestRequest {
            cluster: "default".into(),
            container_instance_arn: a.clone(),
            known_sequence: None,
        })
        .await
        .unwrap();
    assert!(f.instance(&a).agent_connected);
    assert!(
        manifest.task(&task.task_arn).is_none(),
        "STOPPED, it is no longer listed: the agent removes the containers no live task owns"
    );
    // What the agent reports of it now changes nothing: STOPPED is final.
    for status in [TaskStatus::Running, TaskStatus::Stopped] {
        assert!(!report(&f.server.plane, &task.task_arn, status, 1061.0).await);
    }
    assert_eq!(f.task(&task.task_arn), stopped);
    assert_eq!(f.pass(), PassStats::default());

    // Silent again: lost again, and a heartbeat brings it back too.
    f.at(1076.0);
    assert_eq!(f.pass().lost, 1);
    assert!(!f.instance(&a).agent_connected);
    heartbeat(&f.server.plane, &a).await;
    assert!(f.instance(&a).agent_connected);
    let presence = f
        .store
        .begin()
        .unwrap()
        .get::<AgentPresence>(&a)
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(presence.lost_at, None);
    // A task placed on it now is not stopped by the earlier loss.
    let again = f.run_batch_task().unwrap();
    f.at(1200.0);
    heartbeat(&f.server.plane, &a).await;
    assert_eq!(f.pass(), PassStats::default());
    assert_eq!(
        f.task(&again.task_arn).desired_status,
        DesiredStatus::Running
    );
}

#[tokio::test]
async fn a_restarted_server_gives_every_agent_a_full_timeout() {
    let f = Fixture::new();
    // c holds a task, and is lost before the restart, its task not yet
    // stopped when the server stops.
    let c = register(&f.server.plane, "c").await;
    let on_c = f.run_batch_task().unwrap();
    assert_eq!(on_c.container_instance_arn.as_deref(), Some(c.as_str()));
    let a = register(&f.server.plane, "a").await;
    let b = register(&f.server.plane, "b").await;
    f.at(1010.0);
    heartbeat(&f.server.plane, &a).await;
    heartbeat(&f.server.plane, &b).await;
    f.at(1015.0);
    assert_eq!(f.pass().lost, 1);
    assert!(!f.instance(&c).agent_connected);

    // The server restarts long after: every agent was silent meanwhile.
    f.at(5000.0);
    let restarted = Fixture::server_on(&f.store, &f.clock);
    let pass = || restarted.liveness.pass(&f.store).unwrap();
    for t in [5000.0, 5010.0, 5014.9] {
        f.at(t);
        assert_eq!(pass(), PassStats::default(), "at {t}");
    }
    assert!(f.instance(&a).agent_connected && f.instance(&b).agent_connected);
    assert_eq!(
        f.task(&on_c.task_arn).desired_status,
        DesiredStatus::Running
    );
    f.at(5005.0);
    heartbeat(&restarted.plane, &a).await;
    // At a full timeout: b, not heard since the start, is lost; a was
    // heard; c's grace is long over, so its task is stopped now.
    f.at(5015.0);
    assert_eq!(
        pass(),
        PassStats {
            lost: 1,
            tasks_stopped: 1
        }
    );
    assert!(f.instance(&a).agent_connected);
    assert!(!f.instance(&b).agent_connected);
    assert_eq!(f.task(&on_c.task_arn).last_status, TaskStatus::Stopped);
}

#[tokio::test]
async fn a_transition_written_twice_changes_nothing() {
    let f = Fixture::new();
    let a = register(&f.server.plane, "a").await;
    let task = f.run_batch_task().unwrap();
    // A second server over the same store, started at the same time.
    let other = Fixture::server_on(&f.store, &f.clock);
    f.at(1015.0);
    assert_eq!(f.pass().lost, 1);
    let revision = f.store.revision().unwrap();
    assert_eq!(other.liveness.pass(&f.store).unwrap().lost, 0);
    assert_eq!(f.store.revision().unwrap(), revision);
    f.at(1045.0);
    assert_eq!(f.pass().tasks_stopped, 1);
    let stopped = f.task(&task.task_arn);
    assert_eq!(other.liveness.pass(&f.store).unwrap().tasks_stopped, 0);
    assert_eq!(f.task(&task.task_arn), stopped);
    assert!(!f.instance(&a).agent_connected);
}

#[tokio::test]
async fn instances_registered_without_an_agent_are_not_judged() {
    let f = Fixture::new();
    let arn = f
        .server
        .control
        .register_container_instance(RegisterContainerInstanceRequest {
            total_resources: vec![
                Resource::integer("CPU", 1024),
                Resource::integer("MEMORY", 1024),
            ],
            ..Default::default()
        })
        .unwrap()
        .container_instance
        .container_instance_arn;
    f.at(2000.0);
    assert_eq!(f.pass(), PassStats::default());
    assert!(f.instance(&arn).agent_connected);
}

/// A server of several over one store (`Liveness::shared`).
fn shared_on(store: &Arc<Store>, clock: &Arc<FakeClock>) -> Server {
    let clock: Arc<dyn Clock> = Arc::clone(clock) as Arc<dyn Clock>;
    let liveness = Arc::new(Liveness::with_clock(clock, TIMING).shared(true));
    Server {
        control: Control::new(Arc::clone(store), ArnContext::default()),
        plane: LocalControlPlane::new(Arc::clone(store), ArnContext::default())
            .with_liveness(Arc::clone(&liveness)),
        liveness,
    }
}

#[tokio::test]
async fn servers_sharing_a_store_judge_an_agent_by_what_any_of_them_heard() {
    let f = Fixture::new();
    // The agent talks to a; b owns the judging and never hears it itself.
    let (a, b) = (shared_on(&f.store, &f.clock), shared_on(&f.store, &f.clock));
    let arn = register(&a.plane, "x").await;
    for t in [1005.0, 1010.0, 1015.0, 1020.0, 1025.0] {
        f.at(t);
        heartbeat(&a.plane, &arn).await;
        assert_eq!(
            a.liveness.pass_as(&f.store, false).unwrap(),
            PassStats::default()
        );
        assert_eq!(
            b.liveness.pass_as(&f.store, true).unwrap().lost,
            0,
            "at {t}"
        );
    }
    assert!(f.instance(&arn).agent_connected);
    // a hears no more: b judges it lost a timeout after a last heard it.
    f.at(1039.9);
    a.liveness.pass_as(&f.store, false).unwrap();
    assert_eq!(b.liveness.pass_as(&f.store, true).unwrap().lost, 0);
    f.at(1040.0);
    assert_eq!(b.liveness.pass_as(&f.store, true).unwrap().lost, 1);
    assert!(!f.instance(&arn).agent_connected);
    // It comes back through a, which did not judge it: a's next pass
    // writes it connected; b sees it back and stops nothing after the grace.
    f.at(1050.0);
    heartbeat(&a.plane, &arn).await;
    a.liveness.pass_as(&f.store, false).unwrap();
    assert!(f.instance(&arn).agent_connected);
    f.at(1080.0);
    heartbeat(&a.plane, &arn).await;
    a.liveness.pass_as(&f.store, false).unwrap();
    assert_eq!(
        b.liveness.pass_as(&f.store, true).unwrap(),
        PassStats::default()
    );
}
