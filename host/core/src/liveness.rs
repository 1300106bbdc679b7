//! Liveness of agents, as pure rules: when the server judges an agent lost
//! from the last time it heard from it, and what then becomes of the tasks
//! of the lost instance. No clock and no IO here: the server's liveness
//! loop (`control/liveness.rs`) brings the times and writes the results.
//!
//! The timeline of one agent that goes silent at `h`:
//! - `h + timeout`: the instance is lost (`agentConnected: false`; placement
//!   skips it with the AGENT reason);
//! - `h + timeout + grace`: its tasks not yet STOPPED are STOPPED, with a
//!   reason saying the host was lost; the service scheduler replaces the
//!   service tasks on connected instances.
//!
//! A server that starts judges nothing before a full timeout has passed
//! since its start: until then it has not had the chance to hear anyone.

use crate::model::Task;
use crate::status::{ContainerStatus, DesiredStatus, StopCode, TaskStatus};

/// The server's agent timeout by default, in seconds: an agent not heard
/// from for this long is lost (three heartbeat intervals of 5 s).
pub const DEFAULT_AGENT_TIMEOUT_SECS: u64 = 15;

/// How long a lost instance's tasks are kept by default, in seconds, after
/// the instance was judged lost and before they are STOPPED.
pub const DEFAULT_LOST_TASK_GRACE_SECS: u64 = 30;

/// The stop code of a lost instance's service tasks: the service scheduler
/// replaces them, and they do not count as failures of their deployment.
pub const LOST_SERVICE_TASK_STOP_CODE: StopCode = StopCode::ServiceSchedulerInitiated;

/// The stop code of a lost instance's other (batch) tasks: ECS's word for a
/// task stopped because its host is going away.
pub const LOST_TASK_STOP_CODE: StopCode = StopCode::TerminationNotice;

/// The timeout and the grace, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Silence after which an agent is lost.
    pub timeout: f64,
    /// Time after the loss before its tasks are STOPPED.
    pub grace: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            timeout: DEFAULT_AGENT_TIMEOUT_SECS as f64,
            grace: DEFAULT_LOST_TASK_GRACE_SECS as f64,
        }
    }
}

/// What the server knows of one agent-served instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Presence {
    /// When the agent was last heard from (seconds since the epoch); `None`
    /// when not since the server started.
    pub heard: Option<f64>,
    /// When the instance was judged lost; `None` while it is not.
    pub lost_at: Option<f64>,
    /// The lost instance's tasks were STOPPED already.
    pub settled: bool,
}

/// What a liveness pass does about one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: heard recently, or judged already and nothing is due.
    Nothing,
    /// Judge it lost now: `agentConnected: false`.
    Lose,
    /// Its grace is over: STOP its tasks.
    StopTasks,
}

/// What is due for `p` at `now`, on a server that started at `started`.
pub fn judge(p: &Presence, now: f64, started: f64, timing: &Timing) -> Verdict {
    let judging_from = started + timing.timeout;
    if now < judging_from {
        return Verdict::Nothing;
    }
    match p.lost_at {
        None if now - p.heard.unwrap_or(started) >= timing.timeout => Verdict::Lose,
        None => Verdict::Nothing,
        // Heard since the loss: it is coming back (its instance is being
        // written connected again), nothing of it is to stop.
        Some(at) if p.heard.is_some_and(|h| h >= at) => Verdict::Nothing,
        Some(_) if p.settled => Verdict::Nothing,
        // Lost before this server started: the grace counts from the loss,
        // and no earlier than when this server may judge at all.
        Some(at) if now >= (at + timing.grace).max(judging_from) => Verdict::StopTasks,
        Some(_) => Verdict::Nothing,
    }
}

/// Whether `task` is a service's (its group is `service:NAME`).
pub fn is_service_task(task: &Task) -> bool {
    task.group
        .as_deref()
        .is_some_and(|g| g.starts_with("service:"))
}

/// The stoppedReason of a task of the lost instance whose host is `host`.
pub fn lost_reason(host: &str) -> String {
    format!("Host {host} was lost: its agent stopped reporting to the control plane")
}

/// Stops `task` of a lost instance at `now`: desired and last STOPPED,
/// every container STOPPED, with [`lost_reason`] and the stop code of its
/// kind ([`LOST_SERVICE_TASK_STOP_CODE`], [`LOST_TASK_STOP_CODE`]). A task
/// already asked to stop keeps the code and reason of that request (it was
/// waiting for the agent, which is gone). A STOPPED task is final: false,
/// nothing changed; otherwise true and the task's version is bumped.
pub fn stop_lost_task(task: &mut Task, host: &str, now: f64) -> bool {
    if task.last_status == TaskStatus::Stopped {
        return false;
    }
    if task.desired_status != DesiredStatus::Stopped || task.stop_code.is_none() {
        let code = if is_service_task(task) {
            LOST_SERVICE_TASK_STOP_CODE
        } else {
            LOST_TASK_STOP_CODE
        };
        task.stop_code = Some(code);
        task.stopped_reason = Some(lost_reason(host));
    }
    task.desired_status = DesiredStatus::Stopped;
    task.last_status = TaskStatus::Stopped;
    task.stopping_at.get_or_insert(now);
    task.stopped_at = Some(now);
    for c in &mut task.containers {
        c.last_status = ContainerStatus::Stopped;
    }
    task.version += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        timeout: 15.0,
        grace: 30.0,
    };

    fn heard_at(h: f64) -> Presence {
        Presence {
            heard: Some(h),
            lost_at: None,
            settled: false,
        }
    }

    #[test]
    fn silence_for_the_timeout_loses_the_agent_and_the_grace_stops_its_tasks() {
        let p = heard_at(100.0);
        assert_eq!(judge(&p, 114.9, 0.0, &T), Verdict::Nothing);
        assert_eq!(judge(&p, 115.0, 0.0, &T), Verdict::Lose);
        let lost = Presence {
            lost_at: Some(115.0),
            ..p
        };
        assert_eq!(judge(&lost, 144.9, 0.0, &T), Verdict::Nothing);
        assert_eq!(judge(&lost, 145.0, 0.0, &T), Verdict::StopTasks);
        let settled = Presence {
            settled: true,
            ..lost
        };
        assert_eq!(judge(&settled, 1000.0, 0.0, &T), Verdict::Nothing);
        // Heard again after the loss, its write not yet done: nothing to stop.
        let back = Presence {
            heard: Some(140.0),
            ..lost
        };
        assert_eq!(judge(&back, 1000.0, 0.0, &T), Verdict::Nothing);
    }

    #[test]
    fn a_server_judges_nothing_before_a_full_timeout_after_its_start() {
        // Unheard since the start, and lost long before it.
        let unheard = Presence {
            heard: None,
            lost_at: None,
            settled: false,
        };
        let long_lost = Presence {
            heard: None,
            lost_at: Some(10.0),
            settled: false,
        };
        for now in [1000.0, 1010.0, 1014.9] {
            assert_eq!(judge(&unheard, now, 1000.0, &T), Verdict::Nothing);
            assert_eq!(judge(&long_lost, now, 1000.0, &T), Verdict::Nothing);
        }
        assert_eq!(judge(&unheard, 1015.0, 1000.0, &T), Verdict::Lose);
        // Its grace ran out long ago: due as soon as judging begins.
        assert_eq!(judge(&long_lost, 1015.0, 1000.0, &T), Verdict::StopTasks);
    }

    fn task(group: Option<&str>) -> Task {
        serde_json::from_value(serde_json::json!({
            "taskArn": "arn:aws:ecs:local:000000000000:task/default/t1",
            "clusterArn": "arn:aws:ecs:local:000000000000:cluster/default",
            "taskDefinitionArn": "arn:aws:ecs:local:000000000000:task-definition/web:1",
            "group": group,
            "lastStatus": "RUNNING",
            "desiredStatus": "RUNNING",
            "version": 3,
            "containers": [{"containerArn": "c", "name": "app", "image": "i", "lastStatus": "RUNNING"}]
        }))
        .expect("task")
    }

    #[test]
    fn a_lost_instances_tasks_stop_with_the_code_of_their_kind() {
        let mut svc = task(Some("service:web"));
        assert!(stop_lost_task(&mut svc, "i-1", 50.0));
        assert_eq!(
            (svc.last_status, svc.desired_status),
            (TaskStatus::Stopped, DesiredStatus::Stopped)
        );
        assert_eq!(svc.stop_code, Some(StopCode::ServiceSchedulerInitiated));
        assert!(
            svc.stopped_reason
                .as_deref()
                .is_some_and(|r| r.contains("i-1") && r.contains("lost")),
            "{svc:?}"
        );
        assert_eq!((svc.stopped_at, svc.version), (Some(50.0), 4));
        assert_eq!(svc.containers[0].last_status, ContainerStatus::Stopped);
        // STOPPED is final: a second pass changes nothing.
        assert!(!stop_lost_task(&mut svc, "i-1", 60.0));
        assert_eq!((svc.stopped_at, svc.version), (Some(50.0), 4));

        let mut batch = task(Some("family:web"));
        assert!(stop_lost_task(&mut batch, "i-1", 50.0));
        assert_eq!(batch.stop_code, Some(StopCode::TerminationNotice));

        // A stop asked for before the loss keeps its code and reason.
        let mut asked = task(None);
        asked.desired_status = DesiredStatus::Stopped;
        asked.stop_code = Some(StopCode::UserInitiated);
        asked.stopped_reason = Some("by hand".into());
        asked.stopping_at = Some(40.0);
        assert!(stop_lost_task(&mut asked, "i-1", 50.0));
        assert_eq!(asked.stop_code, Some(StopCode::UserInitiated));
        assert_eq!(asked.stopped_reason.as_deref(), Some("by hand"));
        assert_eq!(
            (asked.stopping_at, asked.stopped_at),
            (Some(40.0), Some(50.0))
        );
    }
}
