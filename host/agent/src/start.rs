//! Starting a task: one container per container definition, started in
//! `dependsOn` order; on failure nothing is left behind.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_core::model::{
    ContainerDefinition, DependencyCondition, NetworkBinding, Protocol, Task, TaskDefinition,
};
use berth_core::status::{ContainerStatus, DesiredStatus, HealthStatus, StopCode, TaskStatus};
use berth_protocol::{AssignedTask, ContainerStateChange, apply_task_state_change};
use bollard::Docker;
use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};

use crate::container_config::{OOM_REASON, TaskSpec, container_config, docker_name};
use crate::converge::{change_of, manifest};
use crate::docker::{is_not_found, task_containers};
use crate::{
    AgentError, Inner, LABEL_CONTAINER_NAME, LABEL_INSTANCE, LABEL_TASK_ARN, images, task_volumes,
};

/// How long a start may wait for its dependency conditions.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a pull's progress is written to its container's `reason`.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What Docker says about one container.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    pub exited: bool,
    pub exit_code: Option<i64>,
    /// healthy / unhealthy / starting, when the container has a health check.
    pub health: Option<HealthStatusEnum>,
    pub bindings: Vec<NetworkBinding>,
    /// The kernel killed it at its memory limit.
    pub oom_killed: bool,
}

impl Observed {
    /// Why the container stopped, as ECS words it.
    pub(crate) fn exit_reason(&self) -> String {
        if self.oom_killed {
            return OOM_REASON.to_owned();
        }
        let code = self
            .exit_code
            .map_or("unknown".to_owned(), |c| c.to_string());
        format!("exited with code {code}")
    }
}

/// Inspects a container; `Ok(None)` when it does not exist.
pub(crate) async fn observe(docker: &Docker, id: &str) -> Result<Option<Observed>, AgentError> {
    observe_once(docker, id, true).await
}

/// [`observe`] for a container the agent itself has just stopped: how it
/// ended is known, so there is no waiting for an OOM mark.
pub(crate) async fn observe_stopped(
    docker: &Docker,
    id: &str,
) -> Result<Option<Observed>, AgentError> {
    observe_once(docker, id, false).await
}

/// How long a container with a memory limit that died of SIGKILL (137) is
/// still shown running while Docker may yet mark it `OOMKilled`: Docker
/// records the kernel's OOM kill from its own event, which can land after
/// the exit (seconds later on a busy host). The agent's passes look again
/// meanwhile; nothing waits.
const OOM_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// Whether a container that exited at `finished_at` (Docker's RFC 3339
/// time) with `code` may still be marked OOM-killed at `now`.
fn oom_may_follow(
    code: Option<i64>,
    memory_limit: Option<i64>,
    finished_at: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    if code != Some(137) || memory_limit.unwrap_or(0) <= 0 {
        return false;
    }
    let Some(at) = finished_at.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return false;
    };
    // A finish time in the future (a daemon's clock ahead) is no reason to wait.
    let age = now.signed_duration_since(at);
    age >= chrono::TimeDelta::zero() && age < OOM_GRACE
}

async fn observe_once(
    docker: &Docker,
    id: &str,
    wait_for_oom: bool,
) -> Result<Option<Observed>, AgentError> {
    let c = match docker.inspect_container(id, None).await {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Taken after the answer: a container that died while it was asked
    // (a finish time later than a clock read before) still gets its grace.
    let oom_grace_from = wait_for_oom.then(chrono::Utc::now);
    let state = c.state.unwrap_or_default();
    let oom_killed = state.oom_killed.unwrap_or(false);
    let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
    let exited = matches!(
        status,
        ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD
    ) && (oom_killed
        || !oom_grace_from.is_some_and(|now| {
            oom_may_follow(
                state.exit_code,
                c.host_config.as_ref().and_then(|h| h.memory),
                state.finished_at.as_deref(),
                now,
            )
        }));
    let mut bindings = Vec::new();
    for (key, binds) in c.network_settings.and_then(|n| n.ports).unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u32>() else {
            continue;
        };
        for b in binds.unwrap_or_default() {
            // Docker lists IPv4 and IPv6 bindings of one port; ECS shows one.
            let ip = b.host_ip.unwrap_or_default();
            if ip.contains(':') {
                continue;
            }
            if let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse().ok()) {
                bindings.push(NetworkBinding {
                    bind_i_p: Some(if ip.is_empty() {
                        "0.0.0.0".to_owned()
                    } else {
                        ip
                    }),
                    container_port,
                    host_port,
                    protocol: Some(if proto == "udp" {
                        Protocol::Udp
                    } else {
                        Protocol::Tcp
                    }),
                });
            }
        }
    }
    bindings.sort_by_key(|b| (b.container_port, b.host_port));
    Ok(Some(Observed {
        exited,
        exit_code: if exited { state.exit_code } else { None },
        health: state
            .health
            .and_then(|h| h.status)
            .filter(|s| !matches!(s, HealthStatusEnum::EMPTY | HealthStatusEnum::NONE)),
        bindings,
        oom_killed,
    }))
}

/// ECS's spelling of a Docker health status.
pub(crate) fn ecs_health(h: &HealthStatusEnum) -> HealthStatus {
    match h {
        HealthStatusEnum::HEALTHY => HealthStatus::Healthy,
        HealthStatusEnum::UNHEALTHY => HealthStatus::Unhealthy,
        _ => HealthStatus::Unknown,
    }
}

/// The task's definition (as the manifest gave it) and its container
/// definitions with the task's overrides applied.
pub(crate) fn definitions(
    task: &Task,
    td: Option<&TaskDefinition>,
) -> Result<(TaskDefinition, Vec<ContainerDefinition>), String> {
    let td = td.cloned().ok_or_else(|| {
        format!(
            "task definition {} does not exist",
            task.task_definition_arn
        )
    })?;
    let mut defs = td.container_definitions.clone();
    if let Some(o) = &task.overrides {
        for d in &mut defs {
            if let Some(o) = o.container_overrides.iter().find(|o| o.name == d.name) {
                if o.command.is_some() {
                    d.command = o.command.clone();
                }
                for kv in &o.environment {
                    d.environment.retain(|e| e.name != kv.name);
                    d.environment.push(kv.clone());
                }
                d.cpu = o.cpu.or(d.cpu);
                d.memory = o.memory.or(d.memory);
                d.memory_reservation = o.memory_reservation.or(d.memory_reservation);
            }
        }
    }
    Ok((td, defs))
}

/// Gets the image of `d` as the agent's pull behaviour says, with the
/// registry credential it names, showing the pull's progress in the
/// container's `reason` (DescribeTasks) every [`PROGRESS_EVERY`].
async fn pull_for(
    inner: &Inner,
    docker: &Docker,
    a: &AssignedTask,
    d: &ContainerDefinition,
) -> Result<(), StartError> {
    // The host's own `docker login` serves containers that name none.
    let host_login;
    let credential = match &d.repository_credentials {
        None => {
            host_login = crate::docker_config::host_credential(&d.image);
            host_login.as_ref()
        }
        Some(rc) => Some(
            a.registry_credentials
                .get(&rc.credentials_parameter)
                .ok_or_else(|| {
                    StartError::Failed(format!(
                        "CannotPullContainerError: image {} of container {}: no registry credential named `{}` is stored (berth secrets put {} --username USER --password-stdin)",
                        d.image, d.name, rc.credentials_parameter, rc.credentials_parameter
                    ))
                })?,
        ),
    };
    let pull = images::Pull {
        image: &d.image,
        behavior: inner.cfg.image_pull_behavior,
        timeout: inner.cfg.image_pull_timeout,
        credential,
        pulled: &inner.pulled,
    };
    let (tx, mut rx) = tokio::sync::watch::channel(String::new());
    let show = |reason: String| {
        let mut change = change_of(inner, &a.task.task_arn);
        change.containers.push(ContainerStateChange {
            container_name: d.name.clone(),
            image: Some(d.image.clone()),
            reason: Some(reason),
            ..ContainerStateChange::default()
        });
        change
    };
    let report = async {
        while rx.changed().await.is_ok() {
            let line = rx.borrow_and_update().clone();
            if let Err(e) = inner.plane.submit_task_state_change(show(line)).await {
                tracing::debug!(task = %a.task.task_arn, "pull progress not recorded: {e}");
            }
            tokio::time::sleep(PROGRESS_EVERY).await;
        }
        std::future::pending::<()>().await;
    };
    let mut send = |line: String| {
        tx.send_replace(line);
    };
    let result = tokio::select! {
        r = images::ensure_image(docker, &pull, &mut send) => r,
        () = report => Ok(()),
    };
    if let Err(why) = result {
        // The failed container says why too, as ECS's does.
        if let Err(e) = inner
            .plane
            .submit_task_state_change(show(why.clone()))
            .await
        {
            tracing::debug!(task = %a.task.task_arn, "pull failure not recorded on the container: {e}");
        }
        return Err(StartError::Failed(why));
    }
    Ok(())
}

/// Removes every container of `task_arn` this agent owns (force, with anonymous volumes).
pub(crate) async fn remove_task_containers(
    inner: &Inner,
    docker: &Docker,
    task_arn: &str,
) -> Result<(), AgentError> {
    for c in task_containers(docker, &inner.instance_arn, task_arn).await? {
        if let Some(id) = c.id {
            remove(docker, &id).await?;
        }
    }
    Ok(())
}

/// Removes container `id` (force, with anonymous volumes), then the
/// task-scoped volumes of its task that no container uses any more.
pub(crate) async fn remove(docker: &Docker, id: &str) -> Result<(), AgentError> {
    let owner = match docker.inspect_container(id, None).await {
        Ok(c) => c.config.and_then(|c| c.labels).and_then(|l| {
            Some((
                l.get(LABEL_INSTANCE)?.clone(),
                l.get(LABEL_TASK_ARN)?.clone(),
            ))
        }),
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(opts)).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        // 409: removal already in progress.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some((instance, task)) = owner {
        task_volumes::remove_unused(docker, &instance, &task).await?;
    }
    Ok(())
}

/// One started container: its definition's name, Docker id, what Docker said last.
#[derive(Debug)]
struct Started {
    name: String,
    id: String,
    seen: Observed,
    /// When it was started, for its `startTimeout`.
    since: tokio::time::Instant,
}

/// Why a start failed: `Failed` stops the task (TaskFailedToStart), `Abandoned`
/// means the task was stopped meanwhile, `Docker` means Docker went away.
#[derive(Debug)]
enum StartError {
    Failed(String),
    Abandoned,
    Docker(AgentError),
}

impl From<AgentError> for StartError {
    fn from(e: AgentError) -> Self {
        StartError::Docker(e)
    }
}

/// The start job of one task. Runs outside the reconcile pass.
pub(crate) async fn start_task(inner: Arc<Inner>, docker: Docker, a: AssignedTask) {
    let task = &a.task;
    let arn = task.task_arn.clone();
    match try_start(&inner, &docker, &a).await {
        Ok(started) => {
            if let Err(e) = commit_running(&inner, &a, &started).await {
                tracing::warn!(task = %arn, "recording the started task: {e}");
            }
        }
        Err(StartError::Abandoned) => {
            tracing::info!(task = %arn, "task stopped while starting");
        }
        Err(StartError::Failed(reason)) => {
            tracing::info!(task = %arn, "task failed to start: {reason}");
            if let Err(e) = remove_task_containers(&inner, &docker, &arn).await {
                tracing::warn!(task = %arn, "removing the containers of a failed start: {e}");
                return;
            }
            if let Err(e) = commit_failed(&inner, &arn, &reason).await {
                tracing::warn!(task = %arn, "recording the failed start: {e}");
            }
        }
        Err(StartError::Docker(e)) => {
            // Leave the task PENDING; the next pass (once Docker answers) cleans up and retries.
            tracing::warn!(task = %arn, "starting the task: {e}");
        }
    }
}

async fn try_start(
    inner: &Inner,
    docker: &Docker,
    a: &AssignedTask,
) -> Result<Vec<Started>, StartError> {
    let task = &a.task;
    let (td, defs) = definitions(task, a.task_definition.as_ref()).map_err(StartError::Failed)?;
    // An interrupted start (berth killed, Docker gone, the report not
    // taken) is resumed: what it started is adopted, never run twice.
    let earlier = earlier_start(inner, docker, &task.task_arn, &defs).await?;
    if !inner.cfg.allow_privileged
        && let Some(d) = defs.iter().find(|d| d.privileged == Some(true))
    {
        // Placement keeps such tasks off this instance; one placed before
        // the agent lost the option is refused here.
        return Err(StartError::Failed(format!(
            "CannotCreateContainerError: container {} is privileged and this agent was not started with --allow-privileged",
            d.name
        )));
    }
    for d in defs.iter().filter(|d| !earlier.contains_key(&d.name)) {
        pull_for(inner, docker, a, d).await?;
    }
    task_volumes::prepare(docker, &inner.instance_arn, &task.task_arn, &td)
        .await
        .map_err(StartError::Failed)?;
    let order = creation_order(&defs);
    let spec = TaskSpec {
        task,
        td: &td,
        instance_arn: &inner.instance_arn,
        namespace_holder: order.first().map_or("", |&i| defs[i].name.as_str()),
    };
    let mut ids = HashMap::new();
    for d in order
        .iter()
        .map(|&i| &defs[i])
        .filter(|d| !earlier.contains_key(&d.name))
    {
        let opts = CreateContainerOptionsBuilder::default()
            .name(&docker_name(&task.task_arn, &d.name))
            .build();
        let body = container_config(&spec, d);
        match docker.create_container(Some(opts), body).await {
            Ok(r) => {
                ids.insert(d.name.clone(), r.id);
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            }) if status_code < 500 => {
                return Err(StartError::Failed(format!(
                    "CannotCreateContainerError: container {}: {message}",
                    d.name
                )));
            }
            Err(e) => return Err(StartError::Docker(e.into())),
        }
    }
    // Start in dependsOn order: each round starts every container whose
    // conditions hold, then waits a little and looks again.
    let mut started: Vec<Started> = Vec::new();
    for (name, id) in earlier {
        let seen = observe(docker, &id).await?.unwrap_or(Observed {
            exited: true,
            ..Default::default()
        });
        started.push(Started {
            name,
            id,
            seen,
            since: tokio::time::Instant::now(),
        });
    }
    let deadline = tokio::time::Instant::now() + DEPENDENCY_TIMEOUT;
    let mut rounds = 0u64;
    while started.len() < defs.len() {
        for s in &mut started {
            if !s.seen.exited {
                s.seen = observe(docker, &s.id).await?.unwrap_or(Observed {
                    exited: true,
                    ..Default::default()
                });
            }
        }
        let mut progressed = false;
        for d in &defs {
            if started.iter().any(|s| s.name == d.name) {
                continue;
            }
            if !dependencies_met(&defs, &started, d)? {
                continue;
            }
            let id = ids.get(&d.name).cloned().unwrap_or_default();
            match docker.start_container(&id, None).await {
                Ok(()) => {}
                Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                    return Err(StartError::Failed(format!(
                        "CannotStartContainerError: container {}: {message}",
                        d.name
                    )));
                }
                Err(e) => return Err(StartError::Docker(e.into())),
            }
            let seen = observe(docker, &id).await?.unwrap_or_default();
            started.push(Started {
                name: d.name.clone(),
                id,
                seen,
                since: tokio::time::Instant::now(),
            });
            progressed = true;
        }
        if started.len() == defs.len() {
            break;
        }
        if !progressed {
            if tokio::time::Instant::now() > deadline {
                return Err(StartError::Failed(
                    "dependsOn conditions were not met in time".to_owned(),
                ));
            }
            rounds += 1;
            // Every second or so, give up if the task was stopped meanwhile.
            if rounds.is_multiple_of(10) && stop_requested(inner, &task.task_arn).await {
                remove_task_containers(inner, docker, &task.task_arn).await?;
                return Err(StartError::Abandoned);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(started)
}

/// What an earlier attempt at starting `task_arn` left: the containers
/// Docker started (running or exited since), by container name, which this
/// attempt takes as started; it must not run them a second time. The rest
/// (created and never started, or of no container of `defs`) is removed,
/// to be created afresh.
async fn earlier_start(
    inner: &Inner,
    docker: &Docker,
    task_arn: &str,
    defs: &[ContainerDefinition],
) -> Result<HashMap<String, String>, AgentError> {
    let mut started = HashMap::new();
    for c in task_containers(docker, &inner.instance_arn, task_arn).await? {
        let Some(id) = c.id else { continue };
        let name = c
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_CONTAINER_NAME))
            .filter(|n| defs.iter().any(|d| &d.name == *n))
            .cloned();
        let ran = match docker.inspect_container(&id, None).await {
            // Docker's zero time until a container first starts.
            Ok(i) => i
                .state
                .and_then(|s| s.started_at)
                .is_some_and(|t| !t.starts_with("0001-")),
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        match name {
            Some(n) if ran && !started.contains_key(&n) => {
                tracing::info!(task = %task_arn, container = %id, "adopting a container an interrupted start started");
                started.insert(n, id);
            }
            _ => remove(docker, &id).await?,
        }
    }
    Ok(started)
}

/// Whether the `dependsOn` conditions of `d` hold among the `started`
/// containers; an error when one can no longer hold (or took longer than
/// its container's startTimeout).
fn dependencies_met(
    defs: &[ContainerDefinition],
    started: &[Started],
    d: &ContainerDefinition,
) -> Result<bool, StartError> {
    for dep in &d.depends_on {
        let Some(s) = started.iter().find(|s| s.name == dep.container_name) else {
            return Ok(false);
        };
        let code = s.seen.exit_code.unwrap_or(-1);
        let ok = match dep.condition {
            DependencyCondition::Start => true,
            DependencyCondition::Complete => s.seen.exited,
            DependencyCondition::Success if s.seen.exited && code != 0 => {
                return Err(StartError::Failed(format!(
                    "dependency {} of container {} exited with code {code}; SUCCESS required",
                    dep.container_name, d.name
                )));
            }
            DependencyCondition::Success => s.seen.exited,
            DependencyCondition::Healthy if s.seen.exited => {
                return Err(StartError::Failed(format!(
                    "dependency {} of container {} exited (code {code}) before it was HEALTHY",
                    dep.container_name, d.name
                )));
            }
            DependencyCondition::Healthy => {
                matches!(s.seen.health, Some(HealthStatusEnum::HEALTHY))
            }
        };
        if !ok {
            let limit = defs
                .iter()
                .find(|t| t.name == dep.container_name)
                .and_then(|t| t.start_timeout);
            if let Some(limit) = limit
                && s.since.elapsed() > Duration::from_secs(u64::from(limit))
            {
                return Err(StartError::Failed(format!(
                    "dependency {} of container {} did not reach {:?} within its startTimeout of {limit} s",
                    dep.container_name, d.name, dep.condition
                )));
            }
            return Ok(false);
        }
    }
    Ok(true)
}

/// The order to create containers in: each after the containers it takes
/// volumes from (Docker resolves `volumesFrom` at creation), else as defined.
fn creation_order(defs: &[ContainerDefinition]) -> Vec<usize> {
    let mut order: Vec<usize> = Vec::with_capacity(defs.len());
    while order.len() < defs.len() {
        let before = order.len();
        for (i, d) in defs.iter().enumerate() {
            if order.contains(&i) {
                continue;
            }
            let sources_done = d.volumes_from.iter().all(|v| {
                defs.iter()
                    .position(|s| Some(s.name.as_str()) == v.source_container.as_deref())
                    .is_none_or(|k| order.contains(&k))
            });
            if sources_done {
                order.push(i);
            }
        }
        if order.len() == before {
            // A volumesFrom cycle: Docker will name it; keep the rest in order.
            order.extend(
                (0..defs.len())
                    .filter(|i| !order.contains(i))
                    .collect::<Vec<_>>(),
            );
        }
    }
    order
}

/// Whether the control plane asks the task to stop (or knows it no more);
/// false when it cannot tell now.
async fn stop_requested(inner: &Inner, task_arn: &str) -> bool {
    match manifest(inner).await {
        Ok(m) => m
            .task(task_arn)
            .is_none_or(|a| a.task.desired_status == DesiredStatus::Stopped),
        Err(_) => false,
    }
}

/// The started containers as a RUNNING task state change, its health from
/// the essential containers' checks.
fn running_change(
    inner: &Inner,
    a: &AssignedTask,
    defs: &[ContainerDefinition],
    started: &[Started],
) -> berth_protocol::TaskStateChange {
    let mut change = change_of(inner, &a.task.task_arn);
    change.status = Some(TaskStatus::Running);
    for s in started {
        let image = defs
            .iter()
            .find(|d| d.name == s.name)
            .map(|d| d.image.clone())
            .or_else(|| {
                a.task
                    .containers
                    .iter()
                    .find(|c| c.name == s.name)
                    .map(|c| c.image.clone())
            });
        let exited = s.seen.exited;
        change.containers.push(ContainerStateChange {
            container_name: s.name.clone(),
            image,
            runtime_id: Some(s.id.clone()),
            status: Some(if exited {
                ContainerStatus::Stopped
            } else {
                ContainerStatus::Running
            }),
            exit_code: if exited { s.seen.exit_code } else { None },
            // Empty clears what the pull showed there.
            reason: Some(if exited {
                s.seen.exit_reason()
            } else {
                String::new()
            }),
            network_bindings: Some(s.seen.bindings.clone()),
            health_status: s.seen.health.as_ref().map(ecs_health),
        });
    }
    // The health of the task as it will be once the change applies.
    let mut after = a.task.clone();
    apply_task_state_change(&mut after, &change);
    change.health_status = Some(crate::converge::task_health(&after, defs));
    change
}

async fn commit_running(
    inner: &Inner,
    a: &AssignedTask,
    started: &[Started],
) -> Result<(), AgentError> {
    let defs = definitions(&a.task, a.task_definition.as_ref())
        .map(|(_, d)| d)
        .unwrap_or_default();
    let change = running_change(inner, a, &defs, started);
    crate::converge::submit_acknowledged(inner, change).await?;
    Ok(())
}

async fn commit_failed(inner: &Inner, task_arn: &str, reason: &str) -> Result<(), AgentError> {
    let mut change = change_of(inner, task_arn);
    change.status = Some(TaskStatus::Stopped);
    change.stop_code = Some(StopCode::TaskFailedToStart);
    change.reason = Some(reason.to_owned());
    crate::converge::submit_acknowledged(inner, change).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sigkilled_container_with_a_memory_limit_waits_briefly_for_docker_s_oom_mark() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T01:00:10Z")
            .expect("a time")
            .to_utc();
        let at = |t: &str| Some(format!("2026-12-02T01:00:{t}Z"));
        let just = at("09.5");
        // Killed half a second ago with a limit: Docker may still mark it.
        assert!(oom_may_follow(
            Some(137),
            Some(16 << 20),
            just.as_deref(),
            now
        ));
        // Past the grace, or any other exit, or no limit: reported as it is.
        assert!(!oom_may_follow(
            Some(137),
            Some(16 << 20),
            at("04").as_deref(),
            now
        ));
        assert!(!oom_may_follow(
            Some(1),
            Some(16 << 20),
            just.as_deref(),
            now
        ));
        assert!(!oom_may_follow(Some(137), None, just.as_deref(), now));
        assert!(!oom_may_follow(Some(137), Some(0), just.as_deref(), now));
        // Docker's zero time (never finished), garbage, or a clock ahead of ours.
        assert!(!oom_may_follow(
            Some(137),
            Some(1),
            Some("0001-01-01T00:00:00Z"),
            now
        ));
        assert!(!oom_may_follow(Some(137), Some(1), Some("soon"), now));
        assert!(!oom_may_follow(
            Some(137),
            Some(1),
            at("30").as_deref(),
            now
        ));
    }
}
