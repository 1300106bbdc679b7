//! How a state change applies to a task record: the same rule for every
//! implementation of the control plane.

use berth_core::arn::{self, ArnContext};
use berth_core::model::{Container, Task};
use berth_core::status::{ContainerStatus, DesiredStatus, TaskStatus};

use crate::{ContainerStateChange, TaskStateChange};

/// Where a last status sits in the lifecycle: PENDING 0, RUNNING 1,
/// STOPPING 2, STOPPED 3. A task only moves forward.
pub fn status_rank(status: TaskStatus) -> u8 {
    match status {
        TaskStatus::Pending => 0,
        TaskStatus::Running => 1,
        TaskStatus::Stopping => 2,
        TaskStatus::Stopped => 3,
    }
}

/// Applies `change` to `task`; true when it changed anything (and then
/// the task's `version` is bumped once). The rules, which make submitting
/// the same change twice harmless:
/// - a STOPPED task is final, and a change whose status is behind the
///   task's (RUNNING for a task already STOPPING) is out of date: neither
///   changes anything;
/// - a stop code stops the task (desired STOPPED, the code, the reason)
///   unless it was asked to stop already;
/// - RUNNING sets `startedAt` when the task comes to it; STOPPING sets
///   `stoppingAt` once; STOPPED sets `stoppedAt`, desired STOPPED, and
///   every container STOPPED;
/// - a container that is STOPPED keeps its recorded exit; only a missing
///   exit code is filled in.
pub fn apply_task_state_change(task: &mut Task, change: &TaskStateChange) -> bool {
    if task.last_status == TaskStatus::Stopped {
        return false;
    }
    if change
        .status
        .is_some_and(|s| status_rank(s) < status_rank(task.last_status))
    {
        return false;
    }
    let before = task.clone();
    for c in &change.containers {
        apply_container(task, c);
    }
    if let Some(h) = &change.health_status {
        task.health_status = Some(*h);
    }
    if let Some(code) = change.stop_code
        && task.desired_status != DesiredStatus::Stopped
    {
        task.desired_status = DesiredStatus::Stopped;
        task.stop_code = Some(code);
        task.stopped_reason = change.reason.clone();
        task.stopping_at.get_or_insert(change.at);
    }
    if let Some(status) = change.status
        && status != task.last_status
    {
        match status {
            TaskStatus::Running => task.started_at = Some(change.at),
            TaskStatus::Stopping => {
                task.stopping_at.get_or_insert(change.at);
            }
            TaskStatus::Stopped => {
                task.desired_status = DesiredStatus::Stopped;
                task.stopping_at.get_or_insert(change.at);
                task.stopped_at = Some(change.at);
                for c in &mut task.containers {
                    c.last_status = ContainerStatus::Stopped;
                }
            }
            TaskStatus::Pending => {}
        }
        task.last_status = status;
    }
    let changed = *task != before;
    if changed {
        task.version += 1;
    }
    changed
}

fn apply_container(task: &mut Task, change: &ContainerStateChange) {
    let image = change.image.as_deref().unwrap_or("");
    let c = container_entry(task, &change.container_name, image);
    if c.last_status == ContainerStatus::Stopped {
        if c.exit_code.is_none() {
            c.exit_code = change.exit_code;
        }
        return;
    }
    if let Some(id) = &change.runtime_id {
        c.runtime_id = Some(id.clone());
    }
    if let Some(b) = &change.network_bindings {
        c.network_bindings = b.clone();
    }
    if let Some(h) = &change.health_status {
        c.health_status = Some(*h);
    }
    if let Some(code) = change.exit_code {
        c.exit_code = Some(code);
    }
    if let Some(r) = &change.reason {
        c.reason = (!r.is_empty()).then(|| r.clone());
    }
    if let Some(s) = change.status {
        c.last_status = s;
    }
}

/// The task's container record for `name`, created (PENDING, its ARN in
/// the region and account of the task's own) when the task lists none.
pub fn container_entry<'a>(task: &'a mut Task, name: &str, image: &str) -> &'a mut Container {
    let pos = match task.containers.iter().position(|c| c.name == name) {
        Some(p) => p,
        None => {
            let cluster = arn::cluster_name(&task.cluster_arn).to_owned();
            let task_id = arn::last_segment(&task.task_arn).to_owned();
            let prefix = task.task_arn.split(":task/").next().unwrap_or("");
            let container_arn = if prefix.is_empty() || !task.task_arn.contains(":task/") {
                ArnContext::default().container(&cluster, &task_id, name)
            } else {
                format!("{prefix}:container/{cluster}/{task_id}/{name}")
            };
            task.containers.push(Container {
                container_arn,
                task_arn: Some(task.task_arn.clone()),
                name: name.to_owned(),
                image: image.to_owned(),
                last_status: ContainerStatus::Pending,
                exit_code: None,
                reason: None,
                health_status: None,
                network_bindings: Vec::new(),
                runtime_id: None,
            });
            task.containers.len() - 1
        }
    };
    &mut task.containers[pos]
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::status::{HealthStatus, StopCode};
    use serde_json::json;

    fn task(last: &str, desired: &str) -> Task {
        serde_json::from_value(json!({
            "taskArn": "arn:aws:ecs:eu-west-1:123:task/prod/t1", "clusterArn": "arn:aws:ecs:eu-west-1:123:cluster/prod",
            "taskDefinitionArn": "web:1", "lastStatus": last, "desiredStatus": desired, "version": 3
        }))
        .expect("task")
    }

    fn started(at: f64) -> TaskStateChange {
        TaskStateChange {
            cluster: "prod".into(),
            task: "arn:aws:ecs:eu-west-1:123:task/prod/t1".into(),
            status: Some(TaskStatus::Running),
            health_status: Some(HealthStatus::Unknown),
            containers: vec![ContainerStateChange {
                container_name: "app".into(),
                image: Some("busybox".into()),
                runtime_id: Some("abc".into()),
                status: Some(ContainerStatus::Running),
                ..Default::default()
            }],
            at,
            ..Default::default()
        }
    }

    #[test]
    fn the_same_change_twice_applies_once() {
        let mut t = task("PENDING", "RUNNING");
        assert!(apply_task_state_change(&mut t, &started(10.0)));
        assert_eq!(t.version, 4);
        assert_eq!(t.started_at, Some(10.0));
        assert_eq!(
            t.containers[0].container_arn,
            "arn:aws:ecs:eu-west-1:123:container/prod/t1/app"
        );
        let once = t.clone();
        assert!(!apply_task_state_change(&mut t, &started(11.0)));
        assert_eq!(t, once, "a resubmitted change changes nothing");
    }

    #[test]
    fn out_of_date_and_final_changes_are_dropped() {
        let mut t = task("STOPPING", "STOPPED");
        assert!(!apply_task_state_change(&mut t, &started(1.0)));
        let stopped = TaskStateChange {
            status: Some(TaskStatus::Stopped),
            containers: vec![ContainerStateChange {
                container_name: "app".into(),
                exit_code: Some(0),
                ..Default::default()
            }],
            at: 5.0,
            ..started(0.0)
        };
        assert!(apply_task_state_change(&mut t, &stopped));
        assert_eq!(
            (t.last_status, t.stopped_at),
            (TaskStatus::Stopped, Some(5.0))
        );
        assert_eq!(t.containers[0].last_status, ContainerStatus::Stopped);
        assert_eq!(t.containers[0].exit_code, Some(0));
        let again = TaskStateChange { at: 9.0, ..stopped };
        assert!(!apply_task_state_change(&mut t, &again), "STOPPED is final");
    }

    #[test]
    fn the_first_stop_reason_stands_and_a_recorded_exit_is_kept() {
        let mut t = task("RUNNING", "RUNNING");
        let essential = TaskStateChange {
            stop_code: Some(StopCode::EssentialContainerExited),
            reason: Some("app exited with code 3".into()),
            status: Some(TaskStatus::Running),
            containers: vec![ContainerStateChange {
                container_name: "app".into(),
                status: Some(ContainerStatus::Stopped),
                exit_code: Some(3),
                ..Default::default()
            }],
            at: 2.0,
            ..started(0.0)
        };
        assert!(apply_task_state_change(&mut t, &essential));
        assert_eq!(t.desired_status, DesiredStatus::Stopped);
        assert_eq!(t.stopping_at, Some(2.0));
        let failed = TaskStateChange {
            stop_code: Some(StopCode::TaskFailedToStart),
            reason: Some("other".into()),
            status: Some(TaskStatus::Stopped),
            containers: vec![ContainerStateChange {
                container_name: "app".into(),
                exit_code: Some(137),
                ..Default::default()
            }],
            at: 4.0,
            ..started(0.0)
        };
        assert!(apply_task_state_change(&mut t, &failed));
        assert_eq!(t.stop_code, Some(StopCode::EssentialContainerExited));
        assert_eq!(t.stopped_reason.as_deref(), Some("app exited with code 3"));
        assert_eq!(t.containers[0].exit_code, Some(3), "the first exit stands");
        assert_eq!(t.stopping_at, Some(2.0));
    }

    #[test]
    fn messages_survive_json() {
        let change = started(1.5);
        let json = serde_json::to_string(&change).expect("to json");
        assert!(json.contains("\"containerName\":\"app\""), "{json}");
        let back: TaskStateChange = serde_json::from_str(&json).expect("from json");
        assert_eq!(back, change);
        let err = crate::LogReadError::NoSuchContainer {
            task: "t".into(),
            name: "x".into(),
        };
        let back: crate::LogReadError =
            serde_json::from_str(&serde_json::to_string(&err).expect("to json"))
                .expect("from json");
        assert_eq!(back, err);
    }
}
