//! The second half of a step: with what placement did, the deployments'
//! counts, a DAEMON service's desired count, the end of a rollout and of a
//! deletion.

use crate::arn;
use crate::deployment::TaskCounts;
use crate::model::{SchedulingStrategy, Service};
use crate::status::{DeploymentStatus, RolloutState, ServiceStatus};

use super::{MAX_DEPLOYMENTS, Plan, SchedulerState, task_list};

/// What the scheduler's placement did with a plan's [`super::Starts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placed {
    /// The ARNs of the tasks started, in order.
    pub started: Vec<String>,
    /// The starts that did not happen, in order: one event each.
    pub unplaced: Vec<Unplaced>,
    /// DAEMON: instances of the plan that the service's placement
    /// constraints rule out; they do not count towards its desired count.
    pub ineligible: u32,
}

/// Why a start did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unplaced {
    /// REPLICA: no instance met the task's requirements.
    NoInstance { reason: String },
    /// REPLICA: the start failed otherwise (say the task definition).
    Failed { error: String },
    /// DAEMON: the instance could not take the task.
    OnInstance { instance: String, reason: String },
}

impl Unplaced {
    fn event(&self, name: &str) -> String {
        match self {
            Unplaced::NoInstance { reason } => format!(
                "(service {name}) was unable to place a task because no container instance met all of its requirements. Reason: {reason}"
            ),
            Unplaced::Failed { error } => {
                format!("(service {name}) was unable to start tasks: {error}")
            }
            Unplaced::OnInstance { instance, reason } => format!(
                "(service {name}) was unable to place a task on {instance}. Reason: {reason}"
            ),
        }
    }
}

/// A whole step: what to commit once the stops and starts are made.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The service after the step: counts, deployments, status. Its events
    /// are the ones it had; the new ones are in `events`.
    pub service: Service,
    pub state: SchedulerState,
    /// New events, oldest first.
    pub events: Vec<String>,
    pub started: usize,
    pub stopped: usize,
}

/// A live task kept by the plan, as the counts need it.
#[derive(Debug, Clone)]
pub(super) struct Kept {
    pub deployment: Option<String>,
    pub running: bool,
    pub primary: bool,
}

/// What the plan learned that the second half needs.
#[derive(Debug, Clone)]
pub(super) struct Rest {
    pub now: f64,
    pub desired: u32,
    pub primary_id: Option<String>,
    /// The PRIMARY deployment's live tasks before the step.
    pub primary: TaskCounts,
    /// Some task of the PRIMARY deployment has run for less than
    /// [`super::STEADY_AFTER`]: too soon to call the rollout done.
    pub settling: bool,
    /// ACTIVE instances.
    pub active: usize,
    /// Tasks asked to stop before this step and not yet STOPPED.
    pub stopping: usize,
    /// Live tasks the plan does not stop.
    pub still: Vec<Kept>,
}

impl Plan {
    /// The step, given what placement did with [`Plan::starts`].
    pub fn finish(self, placed: &Placed) -> Step {
        let Plan {
            stops,
            service: mut s,
            state,
            mut events,
            rest,
            ..
        } = self;
        let name = s.service_name.clone();
        let t = rest.now;
        let mut desired = rest.desired;
        if s.scheduling_strategy == SchedulingStrategy::Daemon && s.status == ServiceStatus::Active
        {
            desired = u32::try_from(rest.active)
                .unwrap_or(u32::MAX)
                .saturating_sub(placed.ineligible);
            s.desired_count = desired;
        }
        events.extend(placed.unplaced.iter().map(|u| u.event(&name)));
        if !placed.started.is_empty() {
            let ids: Vec<String> = placed
                .started
                .iter()
                .map(|a| arn::last_segment(a).to_owned())
                .collect();
            events.push(format!(
                "(service {name}) has started {} tasks: {}.",
                ids.len(),
                task_list(&ids)
            ));
        }
        count(&mut s, &rest, placed.started.len());
        let quiet = placed.started.is_empty() && stops.is_empty();
        let old_left = rest.still.iter().any(|x| !x.primary);
        let mut steady = false;
        if let Some(p) = s
            .deployments
            .iter_mut()
            .find(|d| d.status == DeploymentStatus::Primary)
        {
            p.desired_count = desired;
            if p.rollout_state == Some(RolloutState::InProgress)
                && rest.primary.healthy == desired
                && rest.primary.total() == desired
                && !old_left
                && !rest.settling
                && quiet
            {
                p.rollout_state = Some(RolloutState::Completed);
                p.rollout_state_reason = Some("ECS deployment completed.".into());
                p.updated_at = t;
                steady = true;
            }
        }
        if steady {
            for d in &mut s.deployments {
                if d.status == DeploymentStatus::Active {
                    d.status = DeploymentStatus::Inactive;
                    d.updated_at = t;
                }
            }
            let id = s
                .deployments
                .iter()
                .find(|d| d.status == DeploymentStatus::Primary)
                .map(|d| d.id.clone())
                .unwrap_or_default();
            events.push(format!(
                "(service {name}) deployment {id} deployment completed."
            ));
            events.push(format!("(service {name}) has reached a steady state."));
        }
        while s.deployments.len() > MAX_DEPLOYMENTS {
            match s
                .deployments
                .iter()
                .rposition(|d| d.status == DeploymentStatus::Inactive)
            {
                Some(i) => {
                    s.deployments.remove(i);
                }
                None => break,
            }
        }
        // INACTIVE once every task has really stopped.
        if s.status == ServiceStatus::Draining
            && rest.still.is_empty()
            && quiet
            && rest.stopping == 0
        {
            s.status = ServiceStatus::Inactive;
            for d in &mut s.deployments {
                d.status = DeploymentStatus::Inactive;
            }
            events.push(format!("(service {name}) has been deleted."));
        }
        Step {
            service: s,
            state,
            events,
            started: placed.started.len(),
            stopped: stops.len(),
        }
    }
}

/// Each deployment's running and pending counts (the new tasks pending in
/// the PRIMARY one), and the service's sums.
fn count(s: &mut Service, rest: &Rest, started: usize) {
    let started = u32::try_from(started).unwrap_or(u32::MAX);
    let (mut running, mut pending) = (0u32, 0u32);
    for d in &mut s.deployments {
        let mine = || {
            rest.still
                .iter()
                .filter(|x| x.deployment.as_ref() == Some(&d.id))
        };
        let r = u32::try_from(mine().filter(|x| x.running).count()).unwrap_or(u32::MAX);
        let mut p = u32::try_from(mine().count()).unwrap_or(u32::MAX) - r;
        if Some(&d.id) == rest.primary_id.as_ref() {
            p += started;
        }
        running += r;
        pending += p;
        if d.running_count != r || d.pending_count != p {
            d.running_count = r;
            d.pending_count = p;
            d.updated_at = rest.now;
        }
    }
    s.running_count = running;
    s.pending_count = pending;
}
