//! The reconcile pass: compare the tasks the control plane assigns to this
//! instance (its task manifest) with the containers Docker has, and converge;
//! what happened goes back as task state changes.
//!
//! Task lifecycle as berth runs it: PENDING (placed, containers not yet
//! running) -> RUNNING (every container started) -> STOPPING (stop under way)
//! -> STOPPED. A task that cannot start goes PENDING -> STOPPED with stopCode
//! TaskFailedToStart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use berth_core::model::{ContainerDefinition, Task};
use berth_core::status::{ContainerStatus, DesiredStatus, HealthStatus, StopCode, TaskStatus};
use berth_protocol::{
    AssignedTask, Backoff, ContainerStateChange, ManifestRequest, ProtocolError, StateChangeAck,
    TaskManifest, TaskStateChange, apply_task_state_change,
};
use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::StopContainerOptionsBuilder;

use crate::docker::{containers_with_label, task_containers};
use crate::start::{
    Observed, definitions, ecs_health, observe, observe_stopped, remove, start_task,
};
use crate::{AgentError, Inner, LABEL_CONTAINER_NAME, LABEL_INSTANCE, LABEL_TASK_ARN, now};

/// What a pass may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Converge: start, adopt and stop, each task's work in a job of its own.
    Converge,
    /// The first pass after the agent (re)connects, before anything new
    /// starts: the containers of tasks the manifest says are stopped, or
    /// no longer lists, are removed; tasks asked to stop (perhaps replaced
    /// elsewhere while this host was away) are stopped, and the pass waits
    /// for those stops; RUNNING tasks are adopted. Nothing is started, so a
    /// task the control plane replaced never runs twice.
    Reconnect,
}

/// One pass. Start and stop work is spawned as jobs (one per task) so slow
/// containers never hold up the others; a [`Pass::Reconnect`] starts
/// nothing and waits for its stops.
pub(crate) async fn reconcile(
    inner: &Arc<Inner>,
    docker: &Docker,
    pass: Pass,
) -> Result<(), AgentError> {
    // A job running now may commit and leave `busy` while this pass still
    // works from the manifest read below, taken before that commit:
    // its task counts as busy for the whole pass, so a stale status never
    // starts (or stops) a task a second time.
    let busy_at_start: HashSet<String> =
        inner.busy.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let busy = |arn: &str| busy_at_start.contains(arn) || is_busy(inner, arn);
    let tasks = manifest(inner).await?.tasks;
    let mut by_task = containers_by_task(inner, docker).await?;
    let live: HashSet<&str> = tasks
        .iter()
        .map(|a| &a.task)
        .filter(|t| t.last_status != TaskStatus::Stopped)
        .map(|t| t.task_arn.as_str())
        .collect();
    // Containers of tasks that are stopped or unknown to the control plane: leaked, remove them.
    for (arn, cs) in &by_task {
        if live.contains(arn.as_str()) || busy(arn) {
            continue;
        }
        for c in cs {
            if let Some(id) = &c.id {
                tracing::info!(task = %arn, container = %id, "removing a container no live task owns");
                remove(docker, id).await?;
            }
        }
    }
    let mut stops = Vec::new();
    for a in tasks
        .into_iter()
        .filter(|a| a.task.last_status != TaskStatus::Stopped)
    {
        let t = &a.task;
        if busy(&t.task_arn) {
            continue;
        }
        let arn = t.task_arn.clone();
        let stop = if t.desired_status == DesiredStatus::Stopped
            || t.last_status == TaskStatus::Stopping
        {
            true
        } else if t.last_status == TaskStatus::Running {
            let cs = by_task.remove(&arn).unwrap_or_default();
            check_running(inner, docker, &a, &cs).await?
        } else {
            if pass == Pass::Converge {
                spawn_job(inner, arn, start_task(Arc::clone(inner), docker.clone(), a));
            }
            continue;
        };
        if !stop {
            continue;
        }
        match pass {
            Pass::Converge => {
                spawn_job(inner, arn, stop_task(Arc::clone(inner), docker.clone(), a));
            }
            Pass::Reconnect => stops.push(stop_task(Arc::clone(inner), docker.clone(), a)),
        }
    }
    // Only a reconnect pass collected stops: they finish before it returns.
    futures_util::future::join_all(stops).await;
    Ok(())
}

/// This instance's containers in Docker, by the task they belong to.
async fn containers_by_task(
    inner: &Inner,
    docker: &Docker,
) -> Result<HashMap<String, Vec<ContainerSummary>>, AgentError> {
    let containers = containers_with_label(docker, LABEL_INSTANCE, &inner.instance_arn).await?;
    let mut by_task: HashMap<String, Vec<ContainerSummary>> = HashMap::new();
    for c in containers {
        if let Some(arn) = c
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_TASK_ARN))
            .cloned()
        {
            by_task.entry(arn).or_default().push(c);
        }
    }
    Ok(by_task)
}

/// The tasks the control plane assigns to this instance now.
pub(crate) async fn manifest(inner: &Inner) -> Result<TaskManifest, AgentError> {
    let req = ManifestRequest {
        cluster: inner.cfg.cluster.clone(),
        container_instance_arn: inner.instance_arn.clone(),
        known_sequence: None,
    };
    Ok(inner.plane.task_manifest(req).await?)
}

/// A state change of task `arn` seen now, with nothing changed yet.
pub(crate) fn change_of(inner: &Inner, arn: &str) -> TaskStateChange {
    TaskStateChange {
        cluster: inner.cfg.cluster.clone(),
        task: arn.to_owned(),
        at: now(),
        ..TaskStateChange::default()
    }
}

/// How long a job keeps submitting a change the control plane could not
/// take (unreachable, restarting) before it leaves it to later passes.
const SUBMIT_RETRY_FOR: Duration = Duration::from_secs(600);

/// Submits a change a job made happen (a task started, failed, stopped)
/// until the control plane acknowledges it, with back-off while it cannot
/// be reached: the task stays busy meanwhile, so no pass acts on its old
/// status (a started task is not started again after a server restart).
pub(crate) async fn submit_acknowledged(
    inner: &Inner,
    change: TaskStateChange,
) -> Result<StateChangeAck, AgentError> {
    let deadline = tokio::time::Instant::now() + SUBMIT_RETRY_FOR;
    let mut backoff = Backoff::default();
    loop {
        match inner.plane.submit_task_state_change(change.clone()).await {
            Err(e @ ProtocolError::Unavailable { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(task = %change.task, "state change not acknowledged, retrying: {e}");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            r => return Ok(r?),
        }
    }
}

fn is_busy(inner: &Inner, arn: &str) -> bool {
    inner
        .busy
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(arn)
}

/// Runs `job` for task `arn` unless one already runs; wakes the loop when done.
fn spawn_job(
    inner: &Arc<Inner>,
    arn: String,
    job: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if !inner
        .busy
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(arn.clone())
    {
        return;
    }
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        job.await;
        inner
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&arn);
        inner.wake.notify_one();
    });
}

/// Task health from its essential containers that have health checks:
/// any UNHEALTHY -> UNHEALTHY, all HEALTHY -> HEALTHY, else UNKNOWN.
pub(crate) fn task_health(t: &Task, defs: &[ContainerDefinition]) -> HealthStatus {
    let mut statuses = t
        .containers
        .iter()
        .filter(|c| {
            defs.iter()
                .any(|d| d.name == c.name && d.essential() && d.health_check.is_some())
        })
        .map(|c| c.health_status.unwrap_or(HealthStatus::Unknown))
        .peekable();
    if statuses.peek().is_none() {
        return HealthStatus::Unknown;
    }
    let all: Vec<HealthStatus> = statuses.collect();
    if all.contains(&HealthStatus::Unhealthy) {
        HealthStatus::Unhealthy
    } else if all.iter().all(|s| *s == HealthStatus::Healthy) {
        HealthStatus::Healthy
    } else {
        HealthStatus::Unknown
    }
}

/// Follows a RUNNING task's containers: exits, exit codes, health, and
/// containers gone behind berth's back. Returns whether the task must stop now.
async fn check_running(
    inner: &Inner,
    docker: &Docker,
    a: &AssignedTask,
    cs: &[ContainerSummary],
) -> Result<bool, AgentError> {
    let t = &a.task;
    let defs = match definitions(t, a.task_definition.as_ref()) {
        Ok((_, d)) => d,
        Err(e) => {
            tracing::warn!(task = %t.task_arn, "{e}");
            return Ok(false);
        }
    };
    let mut seen: HashMap<String, Option<Observed>> = HashMap::new();
    for d in &defs {
        let id = cs
            .iter()
            .find(|c| c.labels.as_ref().and_then(|l| l.get(LABEL_CONTAINER_NAME)) == Some(&d.name))
            .and_then(|c| c.id.clone());
        let o = match id {
            Some(id) => observe(docker, &id).await?,
            None => None,
        };
        seen.insert(d.name.clone(), o);
    }
    let mut change = change_of(inner, &t.task_arn);
    // Still RUNNING: a change seen after the task moved on is out of date.
    change.status = Some(TaskStatus::Running);
    for d in &defs {
        if t.containers
            .iter()
            .any(|c| c.name == d.name && c.last_status == ContainerStatus::Stopped)
        {
            continue;
        }
        let mut c = ContainerStateChange {
            container_name: d.name.clone(),
            image: Some(d.image.clone()),
            ..ContainerStateChange::default()
        };
        match seen.get(&d.name).cloned().flatten() {
            None => {
                c.status = Some(ContainerStatus::Stopped);
                c.reason = Some("container removed outside berth".to_owned());
            }
            Some(o) => {
                c.health_status = o.health.as_ref().map(ecs_health);
                if o.exited {
                    c.status = Some(ContainerStatus::Stopped);
                    c.exit_code = o.exit_code;
                    c.reason = Some(o.exit_reason());
                }
            }
        }
        change.containers.push(c);
    }
    // What the task would look like, to tell whether anything changed and
    // whether an essential container is down.
    let mut updated = t.clone();
    apply_task_state_change(&mut updated, &change);
    let stop = essential_exit(&updated, &defs);
    let health = task_health(&updated, &defs);
    if stop.is_none() && updated.containers == t.containers && t.health_status == Some(health) {
        return Ok(false);
    }
    change.health_status = Some(health);
    if let Some(reason) = stop {
        // The agent stops the task; a stop asked for earlier keeps its reason.
        change.stop_code = Some(StopCode::EssentialContainerExited);
        change.reason = Some(reason);
    }
    let ack = inner.plane.submit_task_state_change(change).await?;
    Ok(ack.applied
        && ack.task.is_some_and(|t| {
            t.desired_status == DesiredStatus::Stopped && t.last_status != TaskStatus::Stopped
        }))
}

/// Why the task must stop: an essential container that is not running
/// (exited, or gone), if any.
fn essential_exit(t: &Task, defs: &[ContainerDefinition]) -> Option<String> {
    defs.iter().filter(|d| d.essential()).find_map(|d| {
        let c = t.containers.iter().find(|c| c.name == d.name)?;
        if c.last_status != ContainerStatus::Stopped {
            return None;
        }
        // ECS's OutOfMemoryError reason says more than the exit code.
        let oom = c
            .reason
            .as_deref()
            .filter(|r| r.starts_with("OutOfMemoryError"));
        Some(match c.exit_code {
            Some(_) if oom.is_some() => format!(
                "Essential container in task exited: {} {}",
                d.name,
                oom.unwrap_or_default()
            ),
            Some(code) => format!(
                "Essential container in task exited: {} exited with code {code}",
                d.name
            ),
            None => format!(
                "Essential container in task exited: {} {}",
                d.name,
                c.reason.as_deref().unwrap_or("stopped")
            ),
        })
    })
}

/// The stop job: SIGTERM, SIGKILL after the container's stopTimeout (or the
/// configured default), record exit codes, remove the containers, STOPPED.
pub(crate) async fn stop_task(inner: Arc<Inner>, docker: Docker, a: AssignedTask) {
    let arn = a.task.task_arn.clone();
    if let Err(e) = try_stop(&inner, &docker, &a).await {
        tracing::warn!(task = %arn, "stopping the task: {e}");
    }
}

async fn try_stop(inner: &Inner, docker: &Docker, a: &AssignedTask) -> Result<(), AgentError> {
    let arn = a.task.task_arn.as_str();
    let mut stopping = change_of(inner, arn);
    stopping.status = Some(TaskStatus::Stopping);
    let ack = inner.plane.submit_task_state_change(stopping).await?;
    let Some(task) = ack.task.filter(|t| t.last_status != TaskStatus::Stopped) else {
        return Ok(());
    };
    let defs = definitions(&task, a.task_definition.as_ref())
        .map(|(_, d)| d)
        .unwrap_or_default();
    let containers = task_containers(docker, &inner.instance_arn, arn).await?;
    let default_t = inner.cfg.default_stop_timeout;
    let stops = containers.iter().filter_map(|c| {
        let id = c.id.clone()?;
        let name = c
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_CONTAINER_NAME))
            .cloned()
            .unwrap_or_default();
        let grace = defs
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| d.stop_timeout)
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(default_t);
        Some(async move {
            let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
            let opts = StopContainerOptionsBuilder::default().t(t).build();
            match docker.stop_container(&id, Some(opts)).await {
                // 304: already stopped; 404: already gone.
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304 | 404,
                    ..
                }) => {}
                Err(e) => return Err(AgentError::from(e)),
            }
            let o = observe_stopped(docker, &id).await?;
            remove(docker, &id).await?;
            Ok((name, o))
        })
    });
    let results = futures_util::future::join_all(stops).await;
    let mut stopped = change_of(inner, arn);
    stopped.status = Some(TaskStatus::Stopped);
    for r in results {
        let (name, o) = r?;
        // Only the task's own containers; an exit recorded earlier (the
        // container's own) stands.
        if task.containers.iter().any(|c| c.name == name) {
            stopped.containers.push(ContainerStateChange {
                container_name: name,
                exit_code: o.and_then(|o| o.exit_code),
                ..ContainerStateChange::default()
            });
        }
    }
    submit_acknowledged(inner, stopped).await?;
    tracing::info!(task = %arn, "task stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::model::HealthCheck;
    use berth_protocol::container_entry;

    fn def(name: &str, essential: bool, health: bool) -> ContainerDefinition {
        let mut d: ContainerDefinition = serde_json::from_value(
            serde_json::json!({"name": name, "image": "i", "essential": essential}),
        )
        .expect("def");
        if health {
            d.health_check = Some(HealthCheck {
                command: vec!["CMD".into(), "true".into()],
                interval: None,
                timeout: None,
                retries: None,
                start_period: None,
                unknown: Default::default(),
            });
        }
        d
    }

    fn task(health: &[(&str, Option<HealthStatus>)]) -> Task {
        let mut t: Task = serde_json::from_value(serde_json::json!({
            "taskArn": "arn:aws:ecs:local:000000000000:task/default/t1", "clusterArn": "c", "taskDefinitionArn": "td:1",
            "lastStatus": "RUNNING", "desiredStatus": "RUNNING"})).expect("task");
        for (name, h) in health {
            container_entry(&mut t, name, "i").health_status = *h;
        }
        t
    }

    #[test]
    fn task_health_follows_essential_containers_with_checks() {
        let defs = [
            def("app", true, true),
            def("db", true, true),
            def("side", false, true),
            def("plain", true, false),
        ];
        assert_eq!(
            task_health(
                &task(&[
                    ("app", Some(HealthStatus::Healthy)),
                    ("db", Some(HealthStatus::Healthy)),
                    ("side", Some(HealthStatus::Unhealthy))
                ]),
                &defs
            ),
            HealthStatus::Healthy
        );
        assert_eq!(
            task_health(
                &task(&[
                    ("app", Some(HealthStatus::Healthy)),
                    ("db", Some(HealthStatus::Unhealthy))
                ]),
                &defs
            ),
            HealthStatus::Unhealthy
        );
        assert_eq!(
            task_health(
                &task(&[("app", Some(HealthStatus::Healthy)), ("db", None)]),
                &defs
            ),
            HealthStatus::Unknown
        );
        assert_eq!(
            task_health(&task(&[("plain", None)]), &[def("plain", true, false)]),
            HealthStatus::Unknown
        );
    }
}
