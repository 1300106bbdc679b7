//! The service scheduler over a real store with fake instances: the
//! agent's part (tasks reaching RUNNING or STOPPED) is played by hand.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::arn::ArnContext;
use berth_core::deployment;
use berth_core::model::{
    ContainerInstance, DeploymentCircuitBreaker, PlacementConstraint, RegisterTaskDefinition,
    Resource, Tag, Task,
};
use berth_core::reconcile::unable_to_start;
use berth_core::status::{
    DeploymentStatus, DesiredStatus, HealthStatus, RolloutState, ServiceStatus, StopCode,
    TaskStatus,
};
use berth_store::Store;
use berth_store::tables::{TASKS_BY_GROUP, in_cluster};
use serde_json::json;

use super::super::tasks::recount;
use super::super::types::*;
use super::scheduler::PassStats;
use super::*;

fn control() -> (tempfile::TempDir, Control) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("berth.redb")).unwrap();
    let c = Control::new(Arc::new(store), ArnContext::default());
    c.ensure_default_cluster().unwrap();
    (dir, c)
}

fn register(c: &Control, family: &str, image: &str) -> String {
    let td: RegisterTaskDefinition = serde_json::from_value(json!({
        "family": family,
        "containerDefinitions": [{"name": "app", "image": image, "cpu": 100, "memory": 100}],
    }))
    .unwrap();
    c.register_task_definition(td)
        .unwrap()
        .task_definition
        .task_definition_arn
}

fn instance(c: &Control) -> String {
    c.register_container_instance(RegisterContainerInstanceRequest {
        total_resources: vec![
            Resource::integer("CPU", 1024),
            Resource::integer("MEMORY", 1024),
        ],
        ..Default::default()
    })
    .unwrap()
    .container_instance
    .container_instance_arn
}

fn create(
    c: &Control,
    name: &str,
    td: &str,
    desired: i64,
    dc: Option<DeploymentConfiguration>,
) -> Service {
    c.create_service(CreateServiceRequest {
        service_name: Some(name.into()),
        task_definition: Some(td.into()),
        desired_count: Some(desired),
        deployment_configuration: dc,
        ..Default::default()
    })
    .unwrap()
    .service
}

/// The stored service, with the INACTIVE deployments DescribeServices hides.
fn describe(c: &Control, name: &str) -> Service {
    let arn = c.service_arn_of("default", name);
    c.store
        .begin()
        .unwrap()
        .get::<Service>(&arn)
        .unwrap()
        .unwrap()
        .value
}

fn tasks(c: &Control, name: &str) -> Vec<Task> {
    let txn = c.store.begin().unwrap();
    let cluster = c.arn.cluster("default");
    all_by_index(&txn, TASKS_BY_GROUP, &in_cluster(&cluster, &group_of(name)))
        .unwrap()
        .into_iter()
        .map(|t| t.value)
        .collect()
}

/// The agent's part: tasks whose image is `crash` stop before RUNNING,
/// others start; tasks asked to stop stop.
fn agent(c: &Control) {
    c.store
        .update(|txn| -> Result<(), ControlError> {
            let all = super::super::collect_pages(|p| txn.list::<Task>(p))?;
            for t in all {
                let mut t = t.value;
                let t0 = now();
                if t.desired_status == DesiredStatus::Running
                    && t.last_status == TaskStatus::Pending
                {
                    if t.containers.iter().any(|c| c.image == "crash") {
                        t.last_status = TaskStatus::Stopped;
                        t.desired_status = DesiredStatus::Stopped;
                        t.stop_code = Some(StopCode::TaskFailedToStart);
                        t.stopped_reason = Some("CannotStartContainerError".into());
                        t.stopped_at = Some(t0);
                    } else {
                        t.last_status = TaskStatus::Running;
                        // Backdated so the rollout may complete at once.
                        t.started_at = Some(t0 - berth_core::reconcile::STEADY_AFTER);
                    }
                } else if t.desired_status == DesiredStatus::Stopped
                    && t.last_status != TaskStatus::Stopped
                {
                    t.last_status = TaskStatus::Stopped;
                    t.stopped_at = Some(t0);
                } else {
                    continue;
                }
                t.version += 1;
                txn.put(&t)?;
                if let Some(ci) = &t.container_instance_arn
                    && let Some(ci) = txn.get::<ContainerInstance>(ci)?
                {
                    let ci = recount(txn, ci.value)?;
                    txn.put(&ci)?;
                }
            }
            Ok(())
        })
        .unwrap();
}

/// RUNNING tasks asked to stay, and every task not yet STOPPED.
fn observe(c: &Control, name: &str) -> (u32, u32) {
    let ts = tasks(c, name);
    let running = ts
        .iter()
        .filter(|t| {
            t.last_status == TaskStatus::Running && t.desired_status == DesiredStatus::Running
        })
        .count();
    let busy = ts
        .iter()
        .filter(|t| t.last_status != TaskStatus::Stopped)
        .count();
    (running as u32, busy as u32)
}

/// Scheduler and agent in turns until the primary deployment completes,
/// checking the bounds at every observed state.
fn converge(c: &Control, name: &str, bounds: Option<(u32, u32)>) -> Service {
    for _ in 0..40 {
        c.services_pass().unwrap();
        if let Some((lo, hi)) = bounds {
            let (running, busy) = observe(c, name);
            assert!(running >= lo, "{running} running healthy tasks, below {lo}");
            assert!(busy <= hi, "{busy} tasks running or pending, above {hi}");
        }
        agent(c);
        if let Some((lo, hi)) = bounds {
            let (running, busy) = observe(c, name);
            assert!(
                running >= lo && busy <= hi,
                "after the agent: {running} running, {busy} busy; bounds {lo}-{hi}"
            );
        }
        let s = describe(c, name);
        if s.deployments.iter().any(|d| {
            d.status == DeploymentStatus::Primary
                && d.rollout_state == Some(RolloutState::Completed)
        }) {
            return s;
        }
    }
    panic!("service {name} did not converge: {:#?}", describe(c, name));
}

#[test]
fn create_describe_list_update_delete_with_ecs_errors() {
    let (_d, c) = control();
    let td = register(&c, "web", "busybox");
    for n in ["a", "b", "c"] {
        let s = create(&c, n, &td, 0, None);
        assert_eq!(s.status, ServiceStatus::Active);
        assert_eq!(s.deployments.len(), 1);
        assert_eq!(s.deployments[0].status, DeploymentStatus::Primary);
        assert!(s.deployments[0].id.starts_with("ecs-svc/"));
    }
    let again = c.create_service(CreateServiceRequest {
        service_name: Some("a".into()),
        task_definition: Some(td.clone()),
        desired_count: Some(1),
        ..Default::default()
    });
    assert!(matches!(again, Err(ControlError::InvalidParameter(m)) if m.contains("serviceName")));
    let bad = c.create_service(CreateServiceRequest {
        service_name: Some("x".into()),
        task_definition: Some(td.clone()),
        ..Default::default()
    });
    assert!(matches!(bad, Err(ControlError::InvalidParameter(m)) if m.starts_with("desiredCount")));
    let bad = c.create_service(CreateServiceRequest {
        service_name: Some("x".into()),
        task_definition: Some(td.clone()),
        desired_count: Some(1),
        deployment_configuration: Some(DeploymentConfiguration {
            maximum_percent: Some(50),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(
        matches!(bad, Err(ControlError::InvalidParameter(m)) if m.starts_with("deploymentConfiguration.maximumPercent"))
    );

    let d = c
        .describe_services(DescribeServicesRequest {
            services: vec!["a".into(), "nope".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(d.services.len(), 1);
    assert_eq!(d.failures[0].reason, "MISSING");
    assert!(
        d.failures[0]
            .arn
            .as_deref()
            .unwrap()
            .ends_with("service/default/nope")
    );
    let eleven = (0..11).map(|i| i.to_string()).collect();
    assert!(matches!(
        c.describe_services(DescribeServicesRequest {
            services: eleven,
            ..Default::default()
        }),
        Err(ControlError::InvalidParameter(_))
    ));

    let p1 = c
        .list_services(ListServicesRequest {
            max_results: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p1.service_arns.len(), 2);
    let p2 = c
        .list_services(ListServicesRequest {
            max_results: Some(2),
            next_token: p1.next_token,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p2.service_arns.len(), 1);
    assert!(p2.next_token.is_none());

    let missing = c.update_service(UpdateServiceRequest {
        service: Some("nope".into()),
        desired_count: Some(1),
        ..Default::default()
    });
    assert!(matches!(missing, Err(ControlError::ServiceNotFound(_))));
    c.update_service(UpdateServiceRequest {
        service: Some("a".into()),
        desired_count: Some(2),
        ..Default::default()
    })
    .unwrap();
    let refused = c.delete_service(DeleteServiceRequest {
        service: Some("a".into()),
        ..Default::default()
    });
    assert!(matches!(refused, Err(ControlError::InvalidParameter(_))));
    let cl = c.delete_cluster(ClusterRequest {
        cluster: Some("default".into()),
    });
    assert!(matches!(cl, Err(ControlError::ClusterContainsServices(_))));
    let s = c
        .delete_service(DeleteServiceRequest {
            service: Some("a".into()),
            force: Some(true),
            ..Default::default()
        })
        .unwrap()
        .service;
    assert_eq!(s.status, ServiceStatus::Draining);
    let late = c.update_service(UpdateServiceRequest {
        service: Some("a".into()),
        desired_count: Some(1),
        ..Default::default()
    });
    assert!(matches!(late, Err(ControlError::ServiceNotActive(_))));
    c.services_pass().unwrap();
    assert_eq!(describe(&c, "a").status, ServiceStatus::Inactive);
    let left = c.list_services(ListServicesRequest::default()).unwrap();
    assert_eq!(left.service_arns.len(), 2);
}

#[test]
fn scales_out_and_in_and_replaces_a_stopped_task() {
    let (_d, c) = control();
    instance(&c);
    instance(&c);
    let td = register(&c, "web", "busybox");
    create(&c, "web", &td, 3, None);
    let s = converge(&c, "web", None);
    assert_eq!((s.running_count, s.pending_count), (3, 0));
    assert!(
        s.events[0].message.contains("steady state"),
        "{:?}",
        s.events
    );
    let ts = tasks(&c, "web");
    assert!(
        ts.iter()
            .all(|t| t.started_by.as_deref() == Some(s.deployments[0].id.as_str()))
    );

    c.update_service(UpdateServiceRequest {
        service: Some("web".into()),
        desired_count: Some(5),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(converge(&c, "web", None).running_count, 5);
    c.update_service(UpdateServiceRequest {
        service: Some("web".into()),
        desired_count: Some(1),
        ..Default::default()
    })
    .unwrap();
    let s = converge(&c, "web", None);
    assert_eq!(s.running_count, 1);
    let stopped: Vec<Task> = tasks(&c, "web")
        .into_iter()
        .filter(|t| t.desired_status == DesiredStatus::Stopped)
        .collect();
    assert_eq!(stopped.len(), 4);
    assert!(
        stopped
            .iter()
            .all(|t| t.stop_code == Some(StopCode::ServiceSchedulerInitiated))
    );

    // The container dies: the scheduler starts another.
    let victim = tasks(&c, "web")
        .into_iter()
        .find(|t| t.desired_status == DesiredStatus::Running)
        .unwrap();
    c.store
        .update(|txn| -> Result<(), ControlError> {
            let mut t = txn.get::<Task>(&victim.task_arn)?.unwrap().value;
            t.last_status = TaskStatus::Stopped;
            t.desired_status = DesiredStatus::Stopped;
            t.stop_code = Some(StopCode::EssentialContainerExited);
            t.stopped_at = Some(now());
            txn.put(&t)?;
            Ok(())
        })
        .unwrap();
    c.services_pass().unwrap();
    agent(&c);
    let live: Vec<Task> = tasks(&c, "web")
        .into_iter()
        .filter(|t| t.last_status == TaskStatus::Running)
        .collect();
    assert_eq!(live.len(), 1);
    assert_ne!(live[0].task_arn, victim.task_arn);
    assert_eq!(describe(&c, "web").deployments[0].failed_tasks, 1);
}

#[test]
fn a_rolling_update_keeps_the_percentages_at_every_step() {
    for (min, max) in [(50, 150), (100, 200), (0, 100), (75, 125)] {
        let (_d, c) = control();
        instance(&c);
        instance(&c);
        let v1 = register(&c, "web", "busybox");
        let dc = DeploymentConfiguration {
            minimum_healthy_percent: Some(min),
            maximum_percent: Some(max),
            deployment_circuit_breaker: None,
        };
        create(&c, "web", &v1, 4, Some(dc));
        converge(&c, "web", None);
        let v2 = register(&c, "web", "busybox:2");
        let s = c
            .update_service(UpdateServiceRequest {
                service: Some("web".into()),
                task_definition: Some(v2.clone()),
                ..Default::default()
            })
            .unwrap()
            .service;
        assert_eq!(s.deployments.len(), 2);
        assert_eq!(s.deployments[1].status, DeploymentStatus::Active);
        let (lo, hi) = deployment::bounds(4, min, max);
        let s = converge(&c, "web", Some((lo, hi)));
        assert_eq!(s.task_definition, v2);
        assert_eq!(s.deployments[1].status, DeploymentStatus::Inactive);
        // DescribeServices shows only the PRIMARY one now, as ECS does.
        let shown = c
            .describe_services(DescribeServicesRequest {
                services: vec!["web".into()],
                ..Default::default()
            })
            .unwrap()
            .services
            .remove(0);
        assert_eq!(shown.deployments.len(), 1, "{:#?}", shown.deployments);
        assert_eq!(shown.deployments[0].status, DeploymentStatus::Primary);
        let live: Vec<Task> = tasks(&c, "web")
            .into_iter()
            .filter(|t| t.last_status == TaskStatus::Running)
            .collect();
        assert_eq!(live.len(), 4, "min {min} max {max}");
        assert!(live.iter().all(|t| t.task_definition_arn == v2));
    }
}

#[test]
fn the_circuit_breaker_rolls_back_after_backing_off() {
    let (_d, c) = control();
    instance(&c);
    let v1 = register(&c, "web", "busybox");
    let dc = DeploymentConfiguration {
        minimum_healthy_percent: Some(100),
        maximum_percent: Some(200),
        deployment_circuit_breaker: Some(DeploymentCircuitBreaker {
            enable: true,
            rollback: true,
        }),
    };
    create(&c, "web", &v1, 2, Some(dc));
    let first = converge(&c, "web", None).deployments[0].id.clone();
    let v2 = register(&c, "web", "crash");
    c.update_service(UpdateServiceRequest {
        service: Some("web".into()),
        task_definition: Some(v2),
        ..Default::default()
    })
    .unwrap();
    let mut saw_backoff = false;
    for _ in 0..40 {
        c.services_pass().unwrap();
        let (running, _) = observe(&c, "web");
        assert!(running >= 2, "the old tasks must keep running: {running}");
        agent(&c);
        let s = describe(&c, "web");
        saw_backoff |= s.events.iter().any(|e| e.message == unable_to_start("web"));
        if s.deployments
            .iter()
            .any(|d| d.rollout_state == Some(RolloutState::Failed))
        {
            break;
        }
        // Time passes: the back-off is over.
        c.store
            .update(|txn| -> Result<(), ControlError> {
                let mut st = txn.get::<ServiceState>(&s.service_arn)?.unwrap().value;
                st.last_start_failure_at = 0.0;
                txn.put(&st)?;
                Ok(())
            })
            .unwrap();
    }
    assert!(
        saw_backoff,
        "no back-off event: {:#?}",
        describe(&c, "web").events
    );
    let s = describe(&c, "web");
    let failed = s
        .deployments
        .iter()
        .find(|d| d.rollout_state == Some(RolloutState::Failed))
        .expect("the breaker tripped");
    // Two start at once, so two fail at once: the breaker trips on the pass that reaches the threshold.
    assert!(
        (3..=4).contains(&failed.failed_tasks),
        "{}",
        failed.failed_tasks
    );
    assert_eq!(
        s.deployments
            .iter()
            .find(|d| d.status == DeploymentStatus::Primary)
            .unwrap()
            .id,
        first
    );
    let s = converge(&c, "web", Some((2, 4)));
    assert_eq!(s.task_definition, v1);
    // No flood: each message appears once in a row.
    assert!(s.events.windows(2).all(|w| w[0].message != w[1].message));
    assert!(s.events.len() <= MAX_EVENTS);
}

#[test]
fn draining_an_instance_moves_service_tasks_within_the_percentages() {
    let (_d, c) = control();
    let a = instance(&c);
    instance(&c);
    let td = register(&c, "web", "busybox");
    let dc = DeploymentConfiguration {
        minimum_healthy_percent: Some(50),
        maximum_percent: Some(100),
        deployment_circuit_breaker: None,
    };
    create(&c, "web", &td, 4, Some(dc));
    converge(&c, "web", None);
    c.update_container_instances_state(UpdateContainerInstancesStateRequest {
        container_instances: vec![a.clone()],
        status: Some("DRAINING".into()),
        ..Default::default()
    })
    .unwrap();
    for _ in 0..20 {
        c.services_pass().unwrap();
        let (running, busy) = observe(&c, "web");
        assert!(running >= 2 && busy <= 4, "{running} running, {busy} busy");
        agent(&c);
    }
    let live: Vec<Task> = tasks(&c, "web")
        .into_iter()
        .filter(|t| t.last_status == TaskStatus::Running)
        .collect();
    assert_eq!(live.len(), 4);
    assert!(
        live.iter()
            .all(|t| t.container_instance_arn.as_deref() != Some(a.as_str()))
    );
}

/// Whether any instance holds more than it registered, from the tasks
/// asked to run on it (what placement counts).
fn over_committed(c: &Control) -> Option<String> {
    let txn = c.store.begin().unwrap();
    for ci in super::super::collect_pages(|p| txn.list::<ContainerInstance>(p)).unwrap() {
        let ci = ci.value;
        let tasks = super::super::instances::tasks_on(&txn, &ci.container_instance_arn).unwrap();
        let sum = |f: fn(&Task) -> Option<&String>| -> i64 {
            tasks
                .iter()
                .map(|t| f(t).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0))
                .sum()
        };
        let (cpu, mem) = (sum(|t| t.cpu.as_ref()), sum(|t| t.memory.as_ref()));
        let reg =
            |n| super::super::instances::integer_resource(&ci.registered_resources, n).unwrap_or(0);
        if cpu > reg("CPU") || mem > reg("MEMORY") {
            return Some(format!(
                "{} holds cpu {cpu} memory {mem}",
                ci.container_instance_arn
            ));
        }
    }
    None
}

/// Invariant 2: the service scheduler of one server, RunTask and
/// StartTask of another, and the agent all write the same nearly full
/// cluster at once with compare-and-swap; no instance is ever
/// over-committed, no call is lost to contention, and the service still
/// reaches its count. Prints the service scheduler's conflict rate.
#[test]
fn concurrent_schedulers_never_over_commit_and_retry_conflicts() {
    let (_d, a) = control();
    let b = Control::new(Arc::clone(&a.store), ArnContext::default());
    let instances: Vec<String> = (0..3).map(|_| instance(&a)).collect();
    let td = register(&a, "web", "busybox");
    register(&a, "batch", "busybox");
    // 30 slots of 100 CPU: the service takes 12, the batch work fights for the rest.
    create(&a, "web", &td, 12, None);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stats = std::sync::Mutex::new(PassStats::default());
    std::thread::scope(|scope| {
        let services = scope.spawn(|| {
            for _ in 0..60 {
                let p = a.services_pass().unwrap();
                let mut s = stats.lock().unwrap();
                s.commits += p.commits;
                s.conflicts += p.conflicts;
                s.failed += p.failed;
                assert_eq!(over_committed(&a), None);
            }
        });
        let runner = scope.spawn(|| {
            let mut placed = 0;
            for i in 0..60 {
                // Every other call queues what does not fit, for the batch scheduler.
                let tags = if i % 2 == 0 {
                    vec![Tag {
                        key: crate::control::QUEUE_TAG.into(),
                        value: "true".into(),
                    }]
                } else {
                    Vec::new()
                };
                let r = b.run_task(RunTaskRequest {
                    task_definition: Some("batch".into()),
                    count: Some(3),
                    tags,
                    ..Default::default()
                });
                let r = r.unwrap_or_else(|e| panic!("RunTask {i} lost: {e}"));
                placed += r.tasks.len();
                assert_eq!(over_committed(&b), None);
            }
            placed
        });
        let queue = scope.spawn(|| {
            for i in 0..60 {
                b.place_queued()
                    .unwrap_or_else(|e| panic!("queue pass {i} lost: {e}"));
                assert_eq!(over_committed(&b), None);
            }
        });
        let starter = scope.spawn(|| {
            for i in 0..60 {
                let r = b.start_task(StartTaskRequest {
                    task_definition: Some("batch".into()),
                    container_instances: vec![instances[i % 3].clone()],
                    ..Default::default()
                });
                r.unwrap_or_else(|e| panic!("StartTask {i} lost: {e}"));
                assert_eq!(over_committed(&b), None);
            }
        });
        // The agent: runs what is placed, and batch tasks finish.
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                agent(&a);
                let batch: Vec<Task> = {
                    let txn = a.store.begin().unwrap();
                    all_by_index(
                        &txn,
                        TASKS_BY_GROUP,
                        &in_cluster(&a.arn.cluster("default"), "family:batch"),
                    )
                    .unwrap()
                    .into_iter()
                    .map(|t| t.value)
                    .filter(|t| {
                        t.desired_status == DesiredStatus::Running
                            && t.last_status == TaskStatus::Running
                    })
                    .collect()
                };
                for t in batch.iter().take(2) {
                    let _ = a.stop_task(StopTaskRequest {
                        task: Some(t.task_arn.clone()),
                        ..Default::default()
                    });
                }
            }
        });
        services.join().unwrap();
        let placed = runner.join().unwrap();
        starter.join().unwrap();
        queue.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(placed > 0, "RunTask never placed anything");
    });
    let s = stats.into_inner().unwrap();
    let rate = f64::from(s.conflicts) / f64::from(s.commits.max(1));
    println!(
        "service scheduler: {} commits, {} conflicts retried ({rate:.3} per commit), {} failed",
        s.commits, s.conflicts, s.failed
    );
    assert_eq!(s.failed, 0, "a service step gave up on contention");
    // The batch work finishes; the service gets its 12.
    let left: Vec<Task> = {
        let txn = a.store.begin().unwrap();
        all_by_index(
            &txn,
            TASKS_BY_GROUP,
            &in_cluster(&a.arn.cluster("default"), "family:batch"),
        )
        .unwrap()
        .into_iter()
        .map(|t| t.value)
        .filter(|t| t.desired_status == DesiredStatus::Running)
        .collect()
    };
    for t in left {
        a.stop_task(StopTaskRequest {
            task: Some(t.task_arn),
            ..Default::default()
        })
        .unwrap();
    }
    let done = converge(&a, "web", None);
    assert_eq!(done.running_count, 12);
    assert_eq!(over_committed(&a), None);
}

/// The scheduler keeps nothing in memory: a new server over the same
/// store in the middle of a rolling update carries it on within bounds.
#[test]
fn a_restart_in_the_middle_of_a_deployment_resumes_it() {
    let (_d, c) = control();
    instance(&c);
    let v1 = register(&c, "web", "busybox");
    let dc = DeploymentConfiguration {
        minimum_healthy_percent: Some(50),
        maximum_percent: Some(150),
        deployment_circuit_breaker: None,
    };
    create(&c, "web", &v1, 4, Some(dc));
    converge(&c, "web", None);
    let v2 = register(&c, "web", "busybox:2");
    c.update_service(UpdateServiceRequest {
        service: Some("web".into()),
        task_definition: Some(v2.clone()),
        ..Default::default()
    })
    .unwrap();
    c.services_pass().unwrap();
    agent(&c);
    let mid = describe(&c, "web");
    assert_eq!(
        mid.deployments[0].rollout_state,
        Some(RolloutState::InProgress)
    );
    let live: Vec<Task> = tasks(&c, "web")
        .into_iter()
        .filter(|t| t.last_status == TaskStatus::Running)
        .collect();
    let new = live.iter().filter(|t| t.task_definition_arn == v2).count();
    assert!(
        new > 0 && new < live.len(),
        "the update is half way: {new} of {} on v2",
        live.len()
    );
    let again = Control::new(Arc::clone(&c.store), ArnContext::default());
    drop(c);
    let s = converge(&again, "web", Some((2, 6)));
    assert_eq!(s.task_definition, v2);
    assert_eq!(
        s.deployments
            .iter()
            .filter(|d| d.status == DeploymentStatus::Primary)
            .count(),
        1
    );
}

fn instance_with_role(c: &Control, role: &str) -> String {
    c.register_container_instance(RegisterContainerInstanceRequest {
        total_resources: vec![
            Resource::integer("CPU", 1024),
            Resource::integer("MEMORY", 1024),
        ],
        attributes: vec![berth_core::model::Attribute {
            name: "role".into(),
            value: Some(role.into()),
            target_type: None,
            target_id: None,
        }],
        ..Default::default()
    })
    .unwrap()
    .container_instance
    .container_instance_arn
}

/// Live tasks of the service per instance.
fn per_instance(c: &Control, name: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in tasks(c, name)
        .into_iter()
        .filter(|t| t.desired_status == DesiredStatus::Running)
    {
        *m.entry(t.container_instance_arn.unwrap_or_default())
            .or_insert(0) += 1;
    }
    m
}

#[test]
fn one_pass_placing_on_several_instances_counts_each_task_once() {
    let (_d, c) = control();
    let all: Vec<String> = (0..3).map(|_| instance_with_role(&c, "web")).collect();
    let td = register(&c, "agent", "busybox");
    c.create_service(CreateServiceRequest {
        service_name: Some("d".into()),
        task_definition: Some(td),
        scheduling_strategy: Some(SchedulingStrategy::Daemon),
        ..Default::default()
    })
    .unwrap();
    // One pass, one transaction, three placements (no agent runs them).
    c.services_pass().unwrap();
    let d = c
        .describe_container_instances(DescribeContainerInstancesRequest {
            container_instances: all.clone(),
            ..Default::default()
        })
        .unwrap();
    for ci in &d.container_instances {
        assert_eq!(
            (ci.pending_tasks_count, ci.running_tasks_count),
            (1, 0),
            "{}",
            ci.container_instance_arn
        );
    }
}

#[test]
fn a_daemon_runs_one_task_on_every_matching_active_instance() {
    let (_d, c) = control();
    let web1 = instance_with_role(&c, "web");
    let web2 = instance_with_role(&c, "web");
    let db = instance_with_role(&c, "db");
    let td = register(&c, "agent", "busybox");
    let refused = c.create_service(CreateServiceRequest {
        service_name: Some("d".into()),
        task_definition: Some(td.clone()),
        desired_count: Some(1),
        scheduling_strategy: Some(SchedulingStrategy::Daemon),
        ..Default::default()
    });
    assert!(
        matches!(refused, Err(ControlError::InvalidParameter(m)) if m.starts_with("desiredCount"))
    );
    let constraint: PlacementConstraint =
        serde_json::from_value(json!({"type": "memberOf", "expression": "attribute:role == web"}))
            .unwrap();
    c.create_service(CreateServiceRequest {
        service_name: Some("d".into()),
        task_definition: Some(td),
        scheduling_strategy: Some(SchedulingStrategy::Daemon),
        placement_constraints: vec![constraint],
        ..Default::default()
    })
    .unwrap();
    let s = converge(&c, "d", None);
    assert_eq!(s.desired_count, 2);
    let m = per_instance(&c, "d");
    assert_eq!(
        m,
        BTreeMap::from([(web1.clone(), 1), (web2.clone(), 1)]),
        "not on {db}"
    );

    // A new matching instance gets one; a drained one loses its task.
    let web3 = instance_with_role(&c, "web");
    c.update_container_instances_state(UpdateContainerInstancesStateRequest {
        container_instances: vec![web1.clone()],
        status: Some("DRAINING".into()),
        ..Default::default()
    })
    .unwrap();
    for _ in 0..5 {
        c.services_pass().unwrap();
        agent(&c);
    }
    assert_eq!(
        per_instance(&c, "d"),
        BTreeMap::from([(web2.clone(), 1), (web3.clone(), 1)])
    );
    assert_eq!(describe(&c, "d").desired_count, 2);

    // A new revision replaces each task in place, never two on one instance.
    let v2 = register(&c, "agent", "busybox:2");
    c.update_service(UpdateServiceRequest {
        service: Some("d".into()),
        task_definition: Some(v2.clone()),
        ..Default::default()
    })
    .unwrap();
    for _ in 0..10 {
        c.services_pass().unwrap();
        assert!(per_instance(&c, "d").values().all(|n| *n == 1));
        agent(&c);
    }
    let s = describe(&c, "d");
    assert_eq!(
        s.deployments[0].rollout_state,
        Some(RolloutState::Completed),
        "{:#?}",
        s.deployments
    );
    let live: Vec<Task> = tasks(&c, "d")
        .into_iter()
        .filter(|t| t.last_status == TaskStatus::Running)
        .collect();
    assert_eq!(live.len(), 2);
    assert!(live.iter().all(|t| t.task_definition_arn == v2));
}

#[test]
fn a_task_failing_its_health_check_is_replaced_and_counted() {
    let (_d, c) = control();
    instance(&c);
    let td = register(&c, "web", "busybox");
    create(&c, "web", &td, 2, None);
    converge(&c, "web", None);
    let sick = tasks(&c, "web").remove(0);
    c.store
        .update(|txn| -> Result<(), ControlError> {
            let mut t = txn.get::<Task>(&sick.task_arn)?.unwrap().value;
            t.health_status = Some(HealthStatus::Unhealthy);
            txn.put(&t)?;
            Ok(())
        })
        .unwrap();
    c.services_pass().unwrap();
    let t = tasks(&c, "web")
        .into_iter()
        .find(|t| t.task_arn == sick.task_arn)
        .unwrap();
    assert_eq!(t.desired_status, DesiredStatus::Stopped);
    assert_eq!(
        t.stopped_reason.as_deref(),
        Some("Task failed container health checks")
    );
    agent(&c);
    c.services_pass().unwrap();
    agent(&c);
    c.services_pass().unwrap();
    let s = describe(&c, "web");
    assert_eq!(s.running_count, 2);
    assert_eq!(s.deployments[0].failed_tasks, 1);
}
