//! The service reconciler: one step of the service scheduler as a pure
//! function, in the shape of Nomad's cluster reconciler. [`plan`] reads a
//! service, the scheduler's memory of it, its tasks, the cluster's instances
//! and the time, and says what to stop (with reasons), what to start (per
//! deployment; for DAEMON, on which instances), the deployment changes found
//! so far (failed tasks, the circuit breaker and its rollback), the events
//! and the scheduler's new memory. The scheduler carries out the stops and
//! the starts (placement is IO) and hands what placement did to
//! [`Plan::finish`], which counts the deployments, completes a rollout, ends
//! a deletion and returns the [`Step`] to commit.
//!
//! Nothing here reads a store or a clock: the same input gives the same step.
//!
//! The phases, in order (each its own function below): account for tasks
//! that stopped since the last step (failed tasks, the restart back-off);
//! trip the circuit breaker; count the live tasks per deployment and ask
//! [`deployment::plan`] for a step within the percentages (tasks on DRAINING
//! instances count as an old deployment's, so they are replaced within the
//! same percentages); gate the starts on the back-off; choose the stops.

mod finish;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::arn;
use crate::deployment::{self, TaskCounts};
use crate::model::{SchedulingStrategy, Service, Task};
use crate::status::{
    DeploymentStatus, DesiredStatus, HealthStatus, RolloutState, ServiceStatus, StopCode,
    TaskStatus,
};

pub use finish::{Placed, Step, Unplaced};

/// The stop code of every task the service scheduler stops.
pub const STOP_CODE: StopCode = StopCode::ServiceSchedulerInitiated;
/// Deployments kept per service (INACTIVE ones beyond are dropped, oldest first).
pub const MAX_DEPLOYMENTS: usize = 10;
/// How long a stopped task stays remembered as counted.
pub const SEEN_FOR: f64 = 3600.0;
/// How long every task of a deployment must have been RUNNING before the
/// deployment is COMPLETED: a container that exits at once is reported
/// RUNNING first, and its exit must have time to arrive before the rollout
/// is called done (Nomad's `min_healthy_time` plays this part).
pub const STEADY_AFTER: f64 = 5.0;

/// The restart back-off's event.
pub fn unable_to_start(name: &str) -> String {
    format!("(service {name}) is unable to consistently start tasks successfully.")
}

/// The task group of a service's tasks.
pub fn group_of(name: &str) -> String {
    format!("service:{name}")
}

/// `(minimumHealthyPercent, maximumPercent)` of a service, with ECS's defaults.
pub fn percents(s: &Service) -> (u32, u32) {
    let dc = s.deployment_configuration.clone().unwrap_or_default();
    let (min, max) = match s.scheduling_strategy {
        // ECS's DAEMON defaults: stop before start, never above one per instance.
        SchedulingStrategy::Daemon => (0, 100),
        SchedulingStrategy::Replica => (
            deployment::DEFAULT_MINIMUM_HEALTHY_PERCENT,
            deployment::DEFAULT_MAXIMUM_PERCENT,
        ),
    };
    (
        dc.minimum_healthy_percent.unwrap_or(min),
        dc.maximum_percent.unwrap_or(max),
    )
}

/// The scheduler's memory of a service between steps: which stopped tasks
/// it already accounted for, and the run of tasks that never reached RUNNING.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerState {
    pub service_arn: String,
    /// Stopped tasks already counted, with their stop time (pruned after an hour).
    pub seen_stopped: BTreeMap<String, f64>,
    /// Consecutive tasks that stopped before ever RUNNING.
    pub start_failures: u32,
    pub last_start_failure_at: f64,
}

/// A container instance of the service's cluster, as the reconciler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub arn: String,
    /// ACTIVE; any other status (DRAINING) takes no new task and has its
    /// tasks replaced.
    pub active: bool,
}

/// What one step reads.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub service: &'a Service,
    pub state: &'a SchedulerState,
    /// Every task of the service's group, stopped ones included.
    pub tasks: &'a [Task],
    /// The cluster's instances, in the store's order.
    pub instances: &'a [Instance],
    /// Seconds since the epoch.
    pub now: f64,
}

/// A task to stop, with the reason it is given (its stop code is [`STOP_CODE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub task_arn: String,
    pub reason: String,
}

/// The tasks to start, all of the PRIMARY deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Starts {
    None,
    /// `count` tasks placed by the service's placement.
    Replica {
        deployment_id: String,
        task_definition: String,
        count: u32,
    },
    /// One task on each of these instances, as the instance allows.
    Daemon {
        deployment_id: String,
        task_definition: String,
        instances: Vec<String>,
    },
}

/// The first half of a step: what to stop and start. The scheduler carries
/// it out, then calls [`Plan::finish`] with what placement did.
#[derive(Debug, Clone)]
pub struct Plan {
    pub stops: Vec<Stop>,
    pub starts: Starts,
    /// The service with the failed tasks counted and the breaker applied.
    pub service: Service,
    pub state: SchedulerState,
    /// New events, oldest first.
    pub events: Vec<String>,
    rest: finish::Rest,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Pending,
    Unhealthy,
    Healthy,
}

/// How the step sees a task: which deployment side, and how useful.
struct Census<'a> {
    primary_id: Option<String>,
    grace: f64,
    draining: BTreeSet<&'a str>,
    now: f64,
}

impl Census<'_> {
    fn kind(&self, x: &Task) -> Kind {
        if x.last_status != TaskStatus::Running {
            return Kind::Pending;
        }
        let has_check = x.containers.iter().any(|c| c.health_status.is_some());
        let healthy = if has_check {
            x.health_status == Some(HealthStatus::Healthy)
        } else {
            x.started_at.is_some_and(|a| self.now >= a + self.grace)
        };
        if healthy {
            Kind::Healthy
        } else {
            Kind::Unhealthy
        }
    }

    /// The live tasks of the PRIMARY deployment, and the others.
    fn count(&self, live: &[&Task]) -> (TaskCounts, TaskCounts) {
        let (mut primary, mut old) = (TaskCounts::default(), TaskCounts::default());
        for x in live {
            let c = if self.is_primary(x) {
                &mut primary
            } else {
                &mut old
            };
            match self.kind(x) {
                Kind::Pending => c.pending += 1,
                Kind::Unhealthy => c.unhealthy += 1,
                Kind::Healthy => c.healthy += 1,
            }
        }
        (primary, old)
    }

    /// A task of the PRIMARY deployment on an instance that keeps it.
    fn is_primary(&self, x: &Task) -> bool {
        self.primary_id.is_some()
            && x.started_by == self.primary_id
            && !x
                .container_instance_arn
                .as_ref()
                .is_some_and(|c| self.draining.contains(c.as_str()))
    }
}

/// The first half of one step of the service scheduler.
pub fn plan(input: &Input<'_>) -> Plan {
    let t = input.now;
    let mut s = input.service.clone();
    let mut state = input.state.clone();
    let mut events = Vec::new();
    account_stopped(&mut s, &mut state, input.tasks, t, &mut events);
    let desired = if s.status == ServiceStatus::Active {
        s.desired_count
    } else {
        0
    };
    trip_breaker(&mut s, &mut state, desired, t, &mut events);

    // Count the live tasks per deployment.
    let census = Census {
        primary_id: s
            .deployments
            .iter()
            .find(|d| d.status == DeploymentStatus::Primary)
            .map(|d| d.id.clone()),
        grace: f64::from(s.health_check_grace_period_seconds.unwrap_or(0)),
        draining: input
            .instances
            .iter()
            .filter(|c| !c.active)
            .map(|c| c.arn.as_str())
            .collect(),
        now: t,
    };
    let active: Vec<&str> = input
        .instances
        .iter()
        .filter(|c| c.active)
        .map(|c| c.arn.as_str())
        .collect();
    let live: Vec<&Task> = input
        .tasks
        .iter()
        .filter(|x| {
            x.desired_status == DesiredStatus::Running && x.last_status != TaskStatus::Stopped
        })
        .collect();
    let (primary, old) = census.count(&live);
    let (min_pct, max_pct) = percents(&s);
    let mut step = deployment::plan(desired, min_pct, max_pct, primary, old);
    // Tasks still stopping hold their place under the upper bound too:
    // no start until the room is really free.
    let stopping = input
        .tasks
        .iter()
        .filter(|x| {
            x.desired_status == DesiredStatus::Stopped && x.last_status != TaskStatus::Stopped
        })
        .count();
    let upper = deployment::bounds(desired, min_pct, max_pct).1.max(desired);
    let busy = primary.total() + old.total() + u32::try_from(stopping).unwrap_or(u32::MAX);
    step.start = step.start.min(upper.saturating_sub(busy));
    let daemon = s.scheduling_strategy == SchedulingStrategy::Daemon;
    let blocked = s.deployments.iter().any(|d| {
        d.status == DeploymentStatus::Primary && d.rollout_state == Some(RolloutState::Failed)
    }) || census.primary_id.is_none()
        || s.status != ServiceStatus::Active;
    let held = !blocked && (step.start > 0 || daemon) && backing_off(&state, t);
    if held && state.start_failures >= 2 {
        events.push(unable_to_start(&s.service_name));
    }
    let may_start = !blocked && !held;
    if !may_start {
        step.start = 0;
    }

    let to_stop = if daemon {
        daemon_stops(&live, &active, &census)
    } else {
        replica_stops(&s, &live, &census, step)
    };
    let stops = with_sick(&mut s, to_stop, &live, &census);
    if !stops.is_empty() {
        let ids: Vec<String> = stops
            .iter()
            .map(|x| arn::last_segment(&x.task_arn).to_owned())
            .collect();
        events.push(format!(
            "(service {}) has stopped {} running tasks: {}.",
            s.service_name,
            ids.len(),
            task_list(&ids)
        ));
    }

    let starts = match &census.primary_id {
        Some(pid) if daemon => Starts::Daemon {
            deployment_id: pid.clone(),
            task_definition: s.task_definition.clone(),
            instances: if may_start {
                daemon_starts(input.tasks, &live, &active, &stops)
            } else {
                Vec::new()
            },
        },
        Some(pid) if step.start > 0 => Starts::Replica {
            deployment_id: pid.clone(),
            task_definition: task_definition_of(&s, pid),
            count: step.start,
        },
        _ => Starts::None,
    };
    let stopped: BTreeSet<&str> = stops.iter().map(|x| x.task_arn.as_str()).collect();
    let rest = finish::Rest {
        now: t,
        desired,
        primary_id: census.primary_id.clone(),
        primary,
        settling: live.iter().any(|x| {
            census.is_primary(x)
                && x.last_status == TaskStatus::Running
                && x.started_at.is_none_or(|a| t < a + STEADY_AFTER)
        }),
        active: active.len(),
        stopping,
        still: live
            .iter()
            .filter(|x| !stopped.contains(x.task_arn.as_str()))
            .map(|x| finish::Kept {
                deployment: x.started_by.clone(),
                running: x.last_status == TaskStatus::Running,
                primary: census.is_primary(x),
            })
            .collect(),
    };
    Plan {
        stops,
        starts,
        service: s,
        state,
        events,
        rest,
    }
}

/// Tasks that stopped since the last step: failed tasks of their deployment,
/// and the run of tasks that never reached RUNNING (the restart back-off).
fn account_stopped(
    s: &mut Service,
    state: &mut SchedulerState,
    tasks: &[Task],
    t: f64,
    events: &mut Vec<String>,
) {
    state.seen_stopped.retain(|_, at| *at > t - SEEN_FOR);
    for task in tasks {
        if task.last_status != TaskStatus::Stopped
            || state.seen_stopped.contains_key(&task.task_arn)
        {
            continue;
        }
        let at = task.stopped_at.unwrap_or(t);
        // Tasks of an earlier service of the same name are not this one's.
        if at <= t - SEEN_FOR || at < s.created_at.unwrap_or(0.0) {
            continue;
        }
        state.seen_stopped.insert(task.task_arn.clone(), at);
        if matches!(
            task.stop_code,
            Some(StopCode::ServiceSchedulerInitiated | StopCode::UserInitiated)
        ) {
            continue;
        }
        if let Some(d) = s
            .deployments
            .iter_mut()
            .find(|d| Some(&d.id) == task.started_by.as_ref())
        {
            d.failed_tasks += 1;
            d.updated_at = t;
        }
        if task.started_at.is_none() {
            state.start_failures += 1;
            state.last_start_failure_at = state.last_start_failure_at.max(at);
        } else {
            state.start_failures = 0;
        }
        let id = arn::last_segment(&task.task_arn);
        events.push(format!(
            "(service {}) has stopped 1 running tasks: (task {id}). Reason: {}",
            s.service_name,
            task.stopped_reason.as_deref().unwrap_or("unknown")
        ));
    }
    // A task that got to RUNNING since the last failure ends the run.
    if tasks.iter().any(|x| {
        x.started_at
            .is_some_and(|a| a > state.last_start_failure_at)
            && x.last_status != TaskStatus::Stopped
    }) {
        state.start_failures = 0;
    }
}

/// The circuit breaker: an IN_PROGRESS PRIMARY deployment with as many
/// failed tasks as [`deployment::circuit_breaker_threshold`] fails, and with
/// rollback the last COMPLETED deployment becomes PRIMARY again.
fn trip_breaker(
    s: &mut Service,
    state: &mut SchedulerState,
    desired: u32,
    t: f64,
    events: &mut Vec<String>,
) {
    let name = s.service_name.clone();
    let breaker = s
        .deployment_configuration
        .as_ref()
        .and_then(|c| c.deployment_circuit_breaker)
        .filter(|b| b.enable);
    let Some(b) = breaker else { return };
    let Some(pi) = s
        .deployments
        .iter()
        .position(|d| d.status == DeploymentStatus::Primary)
    else {
        return;
    };
    if s.deployments[pi].rollout_state != Some(RolloutState::InProgress)
        || s.deployments[pi].failed_tasks < deployment::circuit_breaker_threshold(desired)
    {
        return;
    }
    let id = s.deployments[pi].id.clone();
    s.deployments[pi].rollout_state = Some(RolloutState::Failed);
    s.deployments[pi].rollout_state_reason =
        Some("ECS deployment circuit breaker: tasks failed to start.".into());
    s.deployments[pi].updated_at = t;
    events.push(format!(
        "(service {name}) deployment {id} deployment failed: tasks failed to start."
    ));
    let back = s
        .deployments
        .iter()
        .enumerate()
        .filter(|(i, d)| *i != pi && d.rollout_state == Some(RolloutState::Completed))
        .max_by(|a, b| a.1.created_at.total_cmp(&b.1.created_at))
        .map(|(i, _)| i);
    if b.rollback
        && let Some(bi) = back
    {
        s.deployments[pi].status = DeploymentStatus::Active;
        let d = &mut s.deployments[bi];
        d.status = DeploymentStatus::Primary;
        d.rollout_state = Some(RolloutState::InProgress);
        d.rollout_state_reason = Some(format!(
            "ECS deployment circuit breaker: rolling back to deploymentId {}.",
            d.id
        ));
        d.failed_tasks = 0;
        d.desired_count = desired;
        d.updated_at = t;
        s.task_definition = d.task_definition.clone();
        let to = d.id.clone();
        events.push(format!("(service {name}) rolling back to deployment {to}."));
        state.start_failures = 0;
    }
}

/// Whether the restart back-off holds starts back: after tasks that
/// stopped before ever RUNNING, until [`deployment::restart_delay`] passed.
fn backing_off(state: &SchedulerState, t: f64) -> bool {
    state.start_failures > 0
        && t < state.last_start_failure_at
            + deployment::restart_delay(state.start_failures).as_secs_f64()
}

/// A REPLICA service's stops: least useful first, oldest deployments first.
fn replica_stops<'a>(
    s: &Service,
    live: &[&'a Task],
    census: &Census<'_>,
    step: deployment::Step,
) -> Vec<&'a Task> {
    let created = |d: Option<&String>| {
        s.deployments
            .iter()
            .find(|x| Some(&x.id) == d)
            .map_or(0.0, |x| x.created_at)
    };
    let mut to_stop: Vec<&Task> = Vec::new();
    for (primary_side, counts) in [(true, step.stop_primary), (false, step.stop_old)] {
        for (k, n) in [
            (Kind::Pending, counts.pending),
            (Kind::Unhealthy, counts.unhealthy),
            (Kind::Healthy, counts.healthy),
        ] {
            let mut c: Vec<&Task> = live
                .iter()
                .copied()
                .filter(|x| census.is_primary(x) == primary_side && census.kind(x) == k)
                .collect();
            c.sort_by(|a, b| {
                created(a.started_by.as_ref())
                    .total_cmp(&created(b.started_by.as_ref()))
                    .then_with(|| a.task_arn.cmp(&b.task_arn))
            });
            to_stop.extend(c.into_iter().take(n as usize));
        }
    }
    to_stop
}

/// A DAEMON service's stops: tasks off ACTIVE instances, tasks of older
/// deployments (DAEMON rolls stop-first, as ECS's 0%/100% default), and any
/// second task on one instance.
fn daemon_stops<'a>(live: &[&'a Task], active: &[&str], census: &Census<'_>) -> Vec<&'a Task> {
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for x in live {
        let on_active = x
            .container_instance_arn
            .as_deref()
            .filter(|c| active.contains(c));
        match on_active {
            Some(ci) if census.is_primary(x) && kept.insert(ci) => {}
            _ => out.push(*x),
        }
    }
    out
}

/// The stops with their reasons, adding the tasks failing their health
/// check past the grace period: such a task serves nobody, so it is
/// replaced, and counts as a failed task of its deployment.
fn with_sick<'a>(
    s: &mut Service,
    mut to_stop: Vec<&'a Task>,
    live: &[&'a Task],
    census: &Census<'_>,
) -> Vec<Stop> {
    let scaling = format!(
        "Scaling activity initiated by (deployment {})",
        census.primary_id.as_deref().unwrap_or("none")
    );
    let mut stops: Vec<Stop> = to_stop
        .iter()
        .map(|x| Stop {
            task_arn: x.task_arn.clone(),
            reason: scaling.clone(),
        })
        .collect();
    for x in live {
        if x.last_status == TaskStatus::Running
            && x.health_status == Some(HealthStatus::Unhealthy)
            && x.started_at.is_some_and(|a| census.now >= a + census.grace)
            && !to_stop.iter().any(|y| y.task_arn == x.task_arn)
        {
            to_stop.push(x);
            stops.push(Stop {
                task_arn: x.task_arn.clone(),
                reason: "Task failed container health checks".to_owned(),
            });
            if let Some(d) = s
                .deployments
                .iter_mut()
                .find(|d| d.id.as_str() == x.started_by.as_deref().unwrap_or_default())
            {
                d.failed_tasks += 1;
                d.updated_at = census.now;
            }
        }
    }
    stops
}

/// The ACTIVE instances a DAEMON service lacks a task on: none kept there,
/// none leaving.
fn daemon_starts(tasks: &[Task], live: &[&Task], active: &[&str], stops: &[Stop]) -> Vec<String> {
    let stopping = |x: &Task| stops.iter().any(|y| y.task_arn == x.task_arn);
    let mut out = Vec::new();
    for ci in active {
        let on = |x: &Task| x.container_instance_arn.as_deref() == Some(ci);
        let kept = live.iter().any(|x| on(x) && !stopping(x));
        let leaving = live.iter().any(|x| on(x) && stopping(x))
            || tasks.iter().any(|x| {
                on(x)
                    && x.desired_status == DesiredStatus::Stopped
                    && x.last_status != TaskStatus::Stopped
            });
        if !(kept || leaving) {
            out.push((*ci).to_owned());
        }
    }
    out
}

/// The task definition of a service's deployment.
fn task_definition_of(s: &Service, deployment_id: &str) -> String {
    s.deployments
        .iter()
        .find(|d| d.id == deployment_id)
        .map(|d| d.task_definition.clone())
        .unwrap_or_default()
}

/// `(task a) (task b)` for an event.
fn task_list(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("(task {i})"))
        .collect::<Vec<_>>()
        .join(" ")
}
