//! The reconciler driven step by step over a world of plain values: the
//! scheduler's part (stops and starts) and the agent's part (tasks reaching
//! RUNNING or STOPPED) are played by hand, as the server's tests do over a
//! store.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::model::{Deployment, DeploymentCircuitBreaker, DeploymentConfiguration};
use crate::status::{
    DeploymentStatus, DesiredStatus, RolloutState, ServiceStatus, StopCode, TaskStatus,
};

const CLUSTER: &str = "arn:aws:ecs:local:000000000000:cluster/default";

fn deployment(
    id: &str,
    status: DeploymentStatus,
    rollout: RolloutState,
    desired: u32,
    created: f64,
) -> Deployment {
    Deployment {
        id: id.into(),
        status,
        task_definition: format!("arn:aws:ecs:local:000000000000:task-definition/{id}:1"),
        desired_count: desired,
        pending_count: 0,
        running_count: 0,
        failed_tasks: 0,
        rollout_state: Some(rollout),
        rollout_state_reason: None,
        created_at: created,
        updated_at: created,
    }
}

fn service(desired: u32, dc: DeploymentConfiguration, deployments: Vec<Deployment>) -> Service {
    let mut s: Service = serde_json::from_value(json!({
        "serviceArn": "arn:aws:ecs:local:000000000000:service/default/web",
        "serviceName": "web",
        "clusterArn": CLUSTER,
        "status": "ACTIVE",
        "desiredCount": desired,
        "runningCount": 0,
        "pendingCount": 0,
        "taskDefinition": deployments[0].task_definition,
        "schedulingStrategy": "REPLICA",
        "createdAt": 0.0,
    }))
    .unwrap();
    s.deployment_configuration = Some(dc);
    s.deployments = deployments;
    s
}

fn task(
    n: u32,
    deployment: &str,
    instance: Option<&str>,
    last: &str,
    started: Option<f64>,
) -> Task {
    serde_json::from_value(json!({
        "taskArn": format!("arn:aws:ecs:local:000000000000:task/default/t{n:04}"),
        "clusterArn": CLUSTER,
        "taskDefinitionArn": format!("arn:aws:ecs:local:000000000000:task-definition/{deployment}:1"),
        "containerInstanceArn": instance,
        "group": "service:web",
        "startedBy": deployment,
        "lastStatus": last,
        "desiredStatus": "RUNNING",
        "startedAt": started,
    }))
    .unwrap()
}

/// A service, its tasks and instances, and a clock.
struct World {
    service: Service,
    state: SchedulerState,
    tasks: Vec<Task>,
    instances: Vec<Instance>,
    now: f64,
    next: u32,
    /// Tasks of this deployment stop before RUNNING.
    crashing: Option<String>,
}

impl World {
    fn new(service: Service, instances: &[&str]) -> World {
        World {
            state: SchedulerState {
                service_arn: service.service_arn.clone(),
                ..SchedulerState::default()
            },
            service,
            tasks: Vec::new(),
            instances: instances
                .iter()
                .map(|a| Instance {
                    arn: (*a).to_owned(),
                    active: true,
                })
                .collect(),
            now: 100.0,
            next: 0,
            crashing: None,
        }
    }

    /// `n` healthy RUNNING tasks of `deployment` on `instance`.
    fn running(&mut self, n: u32, deployment: &str, instance: &str) {
        for _ in 0..n {
            self.next += 1;
            let t = task(self.next, deployment, Some(instance), "RUNNING", Some(1.0));
            self.tasks.push(t);
        }
    }

    fn plan(&self) -> Plan {
        plan(&Input {
            service: &self.service,
            state: &self.state,
            tasks: &self.tasks,
            instances: &self.instances,
            now: self.now,
        })
    }

    /// One step, with the scheduler's part: stops as the server makes them,
    /// starts spread over the ACTIVE instances, which take any task.
    fn step(&mut self) -> Step {
        let plan = self.plan();
        for stop in &plan.stops {
            let x = self
                .tasks
                .iter_mut()
                .find(|x| x.task_arn == stop.task_arn)
                .unwrap();
            x.desired_status = DesiredStatus::Stopped;
            x.stop_code = Some(STOP_CODE);
            x.stopped_reason = Some(stop.reason.clone());
            if x.container_instance_arn.is_none() {
                x.last_status = TaskStatus::Stopped;
                x.stopped_at = Some(self.now);
            }
        }
        let active: Vec<String> = self
            .instances
            .iter()
            .filter(|c| c.active)
            .map(|c| c.arn.clone())
            .collect();
        let mut placed = Placed::default();
        let mut start = |w: &mut World, deployment: &str, on: &str| {
            w.next += 1;
            let t = task(w.next, deployment, Some(on), "PENDING", None);
            placed.started.push(t.task_arn.clone());
            w.tasks.push(t);
        };
        match &plan.starts {
            Starts::Replica {
                deployment_id,
                count,
                ..
            } => {
                for i in 0..*count as usize {
                    let Some(on) = active.get(i % active.len().max(1)) else {
                        break;
                    };
                    start(self, deployment_id, on);
                }
            }
            Starts::Daemon {
                deployment_id,
                instances,
                ..
            } => {
                for on in instances {
                    start(self, deployment_id, on);
                }
            }
            Starts::None => {}
        }
        if matches!(plan.starts, Starts::Replica { count, .. } if count > 0) && active.is_empty() {
            placed.unplaced.push(Unplaced::NoInstance {
                reason: "RESOURCE:CPU".into(),
            });
        }
        let step = plan.finish(&placed);
        self.service = step.service.clone();
        self.state = step.state.clone();
        step
    }

    /// The agent's part, and time enough for any back-off to pass.
    fn time_passes(&mut self) {
        self.now += 400.0;
        for x in &mut self.tasks {
            if x.desired_status == DesiredStatus::Running && x.last_status == TaskStatus::Pending {
                if x.started_by == self.crashing {
                    x.last_status = TaskStatus::Stopped;
                    x.desired_status = DesiredStatus::Stopped;
                    x.stop_code = Some(StopCode::TaskFailedToStart);
                    x.stopped_at = Some(self.now - 1.0);
                } else {
                    x.last_status = TaskStatus::Running;
                    // Started long enough ago to count as settled.
                    x.started_at = Some(self.now - 1.0 - STEADY_AFTER);
                }
            } else if x.desired_status == DesiredStatus::Stopped
                && x.last_status != TaskStatus::Stopped
            {
                x.last_status = TaskStatus::Stopped;
                x.stopped_at = Some(self.now - 1.0);
            }
        }
    }

    /// RUNNING tasks asked to stay, and every task not yet STOPPED (those
    /// stopping hold their place under the upper bound).
    fn observe(&self) -> (u32, u32) {
        let healthy = self
            .tasks
            .iter()
            .filter(|x| {
                x.last_status == TaskStatus::Running && x.desired_status == DesiredStatus::Running
            })
            .count();
        let busy = self
            .tasks
            .iter()
            .filter(|x| x.last_status != TaskStatus::Stopped)
            .count();
        (healthy as u32, busy as u32)
    }

    fn deployment(&self, id: &str) -> &Deployment {
        self.service
            .deployments
            .iter()
            .find(|d| d.id == id)
            .unwrap()
    }

    /// Steps until the PRIMARY deployment completes, checking after each
    /// that the counts stayed within the bounds or did not move away from
    /// them. Whether it completed.
    fn converge(&mut self, lower: u32, upper: u32) -> Result<bool, TestCaseError> {
        for _ in 0..60 {
            let before = self.observe();
            self.step();
            let (healthy, busy) = self.observe();
            prop_assert!(
                healthy >= lower.min(before.0),
                "{healthy} healthy, below {lower} (was {})",
                before.0
            );
            prop_assert!(
                busy <= upper.max(before.1),
                "{busy} running or pending, above {upper} (was {})",
                before.1
            );
            self.time_passes();
            let done = self.service.deployments.iter().any(|d| {
                d.status == DeploymentStatus::Primary
                    && d.rollout_state == Some(RolloutState::Completed)
            });
            if done {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn percents_dc(min: u32, max: u32) -> DeploymentConfiguration {
    DeploymentConfiguration {
        maximum_percent: Some(max),
        minimum_healthy_percent: Some(min),
        deployment_circuit_breaker: None,
    }
}

#[test]
fn a_rollout_completes_only_once_its_tasks_have_run_a_while() {
    let s = service(
        1,
        percents_dc(100, 200),
        vec![deployment(
            "d1",
            DeploymentStatus::Primary,
            RolloutState::InProgress,
            1,
            1.0,
        )],
    );
    let mut w = World::new(s, &["ci-a"]);
    assert_eq!(w.step().started, 1);
    // RUNNING just now: a container that exits at once looks like this
    // until its exit is reported.
    w.tasks[0].last_status = TaskStatus::Running;
    w.tasks[0].started_at = Some(w.now);
    w.now += STEADY_AFTER - 0.5;
    w.step();
    assert_eq!(
        w.deployment("d1").rollout_state,
        Some(RolloutState::InProgress)
    );
    w.now += 1.0;
    let step = w.step();
    assert_eq!(
        w.deployment("d1").rollout_state,
        Some(RolloutState::Completed)
    );
    assert!(
        step.events.iter().any(|e| e.contains("steady state")),
        "{:?}",
        step.events
    );
}

#[test]
fn a_new_service_starts_its_tasks_and_completes() {
    let s = service(
        3,
        percents_dc(100, 200),
        vec![deployment(
            "d1",
            DeploymentStatus::Primary,
            RolloutState::InProgress,
            3,
            1.0,
        )],
    );
    let mut w = World::new(s, &["ci-a"]);
    let step = w.step();
    assert_eq!(step.started, 3);
    assert_eq!(w.service.pending_count, 3);
    assert!(step.events[0].starts_with("(service web) has started 3 tasks: (task t0001)"));
    w.time_passes();
    let step = w.step();
    assert_eq!((step.started, step.stopped), (0, 0));
    assert_eq!(w.service.running_count, 3);
    assert_eq!(
        w.deployment("d1").rollout_state,
        Some(RolloutState::Completed)
    );
    assert_eq!(
        step.events,
        [
            "(service web) deployment d1 deployment completed.",
            "(service web) has reached a steady state."
        ]
    );
}

#[test]
fn nothing_changes_for_a_steady_service() {
    let mut s = service(
        2,
        percents_dc(100, 200),
        vec![deployment(
            "d1",
            DeploymentStatus::Primary,
            RolloutState::Completed,
            2,
            1.0,
        )],
    );
    s.running_count = 2;
    s.deployments[0].running_count = 2;
    let mut w = World::new(s.clone(), &["ci-a"]);
    w.running(2, "d1", "ci-a");
    let step = w.step();
    assert_eq!(step.service, s);
    assert!(step.events.is_empty());
    assert_eq!(step.state, w.state);
}

#[test]
fn a_deleted_service_stops_its_tasks_then_is_inactive() {
    let mut s = service(
        2,
        percents_dc(100, 200),
        vec![deployment(
            "d1",
            DeploymentStatus::Primary,
            RolloutState::Completed,
            2,
            1.0,
        )],
    );
    s.status = ServiceStatus::Draining;
    let mut w = World::new(s, &["ci-a"]);
    w.running(2, "d1", "ci-a");
    let plan = w.plan();
    assert_eq!(plan.stops.len(), 2);
    assert_eq!(
        plan.stops[0].reason,
        "Scaling activity initiated by (deployment d1)"
    );
    w.step();
    assert_eq!(
        w.service.status,
        ServiceStatus::Draining,
        "its tasks are still stopping"
    );
    w.time_passes();
    let step = w.step();
    assert_eq!(w.service.status, ServiceStatus::Inactive);
    assert_eq!(step.events, ["(service web) has been deleted."]);
}

#[test]
fn the_back_off_holds_starts_after_failed_starts() {
    let s = service(
        1,
        percents_dc(100, 200),
        vec![deployment(
            "d1",
            DeploymentStatus::Primary,
            RolloutState::InProgress,
            1,
            1.0,
        )],
    );
    let mut w = World::new(s, &["ci-a"]);
    w.crashing = Some("d1".into());
    w.step();
    w.time_passes();
    // The task failed just now: the first delay (5 s) is not over.
    w.now = w.tasks[0].stopped_at.unwrap() + 1.0;
    let plan = w.plan();
    assert_eq!(plan.starts, Starts::None);
    assert_eq!(plan.state.start_failures, 1);
    assert_eq!(plan.service.deployments[0].failed_tasks, 1);
    w.now += 10.0;
    assert!(matches!(w.plan().starts, Starts::Replica { count: 1, .. }));
}

#[test]
fn a_daemon_starts_one_task_per_active_instance() {
    let mut s = service(
        0,
        DeploymentConfiguration::default(),
        vec![deployment(
            "d1",
            DeploymentStatus::Primary,
            RolloutState::InProgress,
            0,
            1.0,
        )],
    );
    s.scheduling_strategy = SchedulingStrategy::Daemon;
    let mut w = World::new(s, &["ci-a", "ci-b", "ci-c"]);
    w.instances[2].active = false;
    w.running(2, "d1", "ci-a");
    let plan = w.plan();
    assert_eq!(plan.stops.len(), 1, "a second task on one instance goes");
    let Starts::Daemon { instances, .. } = &plan.starts else {
        panic!("{:?}", plan.starts)
    };
    assert_eq!(instances, &["ci-b".to_owned()]);
    let step = plan.finish(&Placed {
        ineligible: 1,
        ..Placed::default()
    });
    assert_eq!(step.service.desired_count, 1, "ci-b is ruled out");
}

fn arb_percents() -> impl Strategy<Value = (u32, u32)> {
    (0u32..=100, 100u32..=200)
}

proptest! {
    /// A rolling update from an old deployment keeps the running counts
    /// within minimumHealthyPercent and maximumPercent at every step, and
    /// completes with only the new deployment's tasks.
    #[test]
    fn a_rolling_update_keeps_the_bounds(
        desired in 1u32..8,
        old_n in 0u32..10,
        (min, max) in arb_percents(),
    ) {
        let s = service(desired, percents_dc(min, max), vec![
            deployment("d2", DeploymentStatus::Primary, RolloutState::InProgress, desired, 2.0),
            deployment("d1", DeploymentStatus::Active, RolloutState::Completed, desired, 1.0),
        ]);
        let mut w = World::new(s, &["ci-a", "ci-b"]);
        w.running(old_n, "d1", "ci-a");
        let (lower, upper) = deployment::bounds(desired, min, max);
        let done = w.converge(lower, upper.max(desired))?;
        if upper > desired || lower < desired || old_n == 0 {
            prop_assert!(done, "no completion: {:#?}", w.service);
            let live: Vec<&Task> = w.tasks.iter().filter(|x| x.last_status != TaskStatus::Stopped).collect();
            prop_assert_eq!(live.len() as u32, desired);
            prop_assert!(live.iter().all(|x| x.started_by.as_deref() == Some("d2")));
            prop_assert_eq!(w.deployment("d1").status, DeploymentStatus::Inactive);
        }
    }

    /// Tasks on a DRAINING instance are replaced on the others within the
    /// percentages.
    #[test]
    fn a_draining_instance_is_emptied_within_the_bounds(
        desired in 1u32..8,
        (min, max) in arb_percents(),
    ) {
        let s = service(desired, percents_dc(min, max), vec![
            deployment("d1", DeploymentStatus::Primary, RolloutState::Completed, desired, 1.0),
        ]);
        let mut w = World::new(s, &["ci-a", "ci-b"]);
        w.running(desired, "d1", "ci-a");
        w.instances[0].active = false;
        let (lower, upper) = deployment::bounds(desired, min, max);
        for _ in 0..30 {
            let before = w.observe();
            w.step();
            let (healthy, busy) = w.observe();
            prop_assert!(healthy >= lower.min(before.0), "{} healthy, below {}", healthy, lower);
            prop_assert!(busy <= upper.max(desired).max(before.1), "{} busy, above {}", busy, upper);
            w.time_passes();
        }
        if upper > desired || lower < desired {
            let on = |ci: &str| w.tasks.iter()
                .filter(|x| x.last_status != TaskStatus::Stopped && x.container_instance_arn.as_deref() == Some(ci))
                .count() as u32;
            prop_assert_eq!(on("ci-a"), 0);
            prop_assert_eq!(on("ci-b"), desired);
        }
    }

    /// Failed tasks counted in one step trip the breaker exactly when the
    /// deployment's failed tasks reach the threshold; with rollback the last
    /// completed deployment is PRIMARY again.
    #[test]
    fn the_breaker_trips_exactly_at_its_threshold(
        desired in 1u32..40,
        before in 0u32..25,
        failing in 0u32..6,
        rollback: bool,
    ) {
        let dc = DeploymentConfiguration {
            deployment_circuit_breaker: Some(DeploymentCircuitBreaker { enable: true, rollback }),
            ..DeploymentConfiguration::default()
        };
        let mut d2 = deployment("d2", DeploymentStatus::Primary, RolloutState::InProgress, desired, 2.0);
        d2.failed_tasks = before;
        let s = service(desired, dc, vec![d2, deployment("d1", DeploymentStatus::Active, RolloutState::Completed, desired, 1.0)]);
        let mut w = World::new(s, &["ci-a"]);
        w.running(desired, "d1", "ci-a");
        for _ in 0..failing {
            w.next += 1;
            let mut t = task(w.next, "d2", Some("ci-a"), "STOPPED", None);
            t.desired_status = DesiredStatus::Stopped;
            t.stop_code = Some(StopCode::TaskFailedToStart);
            t.stopped_at = Some(w.now - 1.0);
            w.tasks.push(t);
        }
        let plan = w.plan();
        let d2 = plan.service.deployments.iter().find(|d| d.id == "d2").unwrap();
        let d1 = plan.service.deployments.iter().find(|d| d.id == "d1").unwrap();
        prop_assert_eq!(d2.failed_tasks, before + failing);
        let tripped = before + failing >= deployment::circuit_breaker_threshold(desired);
        prop_assert_eq!(d2.rollout_state == Some(RolloutState::Failed), tripped);
        prop_assert_eq!(d1.status == DeploymentStatus::Primary, tripped && rollback);
        if tripped && !rollback {
            prop_assert_eq!(&plan.starts, &Starts::None);
        }
    }

    /// A deployment whose every task crashes: at every step its rollout is
    /// FAILED exactly when its failed tasks reached the threshold.
    #[test]
    fn a_crashing_deployment_fails_at_the_threshold(desired in 1u32..12, rollback: bool) {
        let dc = DeploymentConfiguration {
            deployment_circuit_breaker: Some(DeploymentCircuitBreaker { enable: true, rollback }),
            maximum_percent: Some(200),
            minimum_healthy_percent: Some(100),
        };
        let s = service(desired, dc, vec![
            deployment("d2", DeploymentStatus::Primary, RolloutState::InProgress, desired, 2.0),
            deployment("d1", DeploymentStatus::Active, RolloutState::Completed, desired, 1.0),
        ]);
        let mut w = World::new(s, &["ci-a"]);
        w.running(desired, "d1", "ci-a");
        w.crashing = Some("d2".into());
        let threshold = deployment::circuit_breaker_threshold(desired);
        for _ in 0..30 {
            w.step();
            let d2 = w.deployment("d2");
            prop_assert_eq!(
                d2.rollout_state == Some(RolloutState::Failed),
                d2.failed_tasks >= threshold,
                "failed {} of {}", d2.failed_tasks, threshold
            );
            w.time_passes();
        }
        prop_assert_eq!(w.deployment("d2").rollout_state, Some(RolloutState::Failed));
        let (healthy, _) = w.observe();
        prop_assert_eq!(healthy, desired, "the old tasks kept running");
    }
}
