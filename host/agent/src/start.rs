//! Starting a task: one container per container definition, started in
//! `dependsOn` order; on failure nothing is left behind.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_core::model::{
    ContainerDefinition, DependencyCondition, NetworkBinding, NetworkMode, Protocol, Task,
    TaskDefinition,
};
use berth_core::status::{ContainerStatus, DesiredStatus, HealthStatus, StopCode, TaskStatus};
use berth_protocol::{AssignedTask, ContainerStateChange, apply_task_state_change};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, HealthConfig, HealthStatusEnum, HostConfig,
    PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use crate::converge::{change_of, manifest};
use crate::docker::{is_not_found, task_containers};
use crate::{
    AgentError, Inner, LABEL_CLUSTER, LABEL_CONTAINER_NAME, LABEL_INSTANCE, LABEL_TASK_ARN,
};

/// How long a start may wait for its dependency conditions.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long pulling a missing image may take before the task fails.
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

/// What Docker says about one container.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    pub exited: bool,
    pub exit_code: Option<i64>,
    /// healthy / unhealthy / starting, when the container has a health check.
    pub health: Option<HealthStatusEnum>,
    pub bindings: Vec<NetworkBinding>,
}

/// Inspects a container; `Ok(None)` when it does not exist.
pub(crate) async fn observe(docker: &Docker, id: &str) -> Result<Option<Observed>, AgentError> {
    let c = match docker.inspect_container(id, None).await {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let state = c.state.unwrap_or_default();
    let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
    let exited = matches!(
        status,
        ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD
    );
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

/// The task's id (the last part of its ARN).
fn task_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

/// Docker's name for a task's container.
fn docker_name(task_arn: &str, name: &str) -> String {
    format!("berth-{}-{name}", task_id(task_arn))
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

/// Makes sure `image` is present, pulling it when it is not; the error names the image.
async fn ensure_image(docker: &Docker, image: &str) -> Result<(), String> {
    match docker.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(format!("CannotInspectImage: {image}: {e}")),
    }
    let (name, tag) = match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (image, "latest"),
    };
    let opts = CreateImageOptionsBuilder::default()
        .from_image(name)
        .tag(tag)
        .build();
    let pull = async {
        let mut s = docker.create_image(Some(opts), None, None);
        while let Some(r) = s.next().await {
            r?;
        }
        Ok::<(), bollard::errors::Error>(())
    };
    match tokio::time::timeout(PULL_TIMEOUT, pull).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "CannotPullContainerError: image {image} is not present locally and could not be pulled: {e}"
        )),
        Err(_) => Err(format!(
            "CannotPullContainerError: image {image} is not present locally and pulling it timed out"
        )),
    }
}

fn secs_to_ns(s: Option<u32>) -> Option<i64> {
    s.map(|s| i64::from(s) * 1_000_000_000)
}

/// Docker's create body for one container definition.
fn create_body(
    inner: &Inner,
    task: &Task,
    td: &TaskDefinition,
    d: &ContainerDefinition,
) -> ContainerCreateBody {
    let mut labels: HashMap<String, String> = d
        .docker_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_TASK_ARN.to_owned(), task.task_arn.clone());
    labels.insert(LABEL_CLUSTER.to_owned(), task.cluster_arn.clone());
    labels.insert(LABEL_CONTAINER_NAME.to_owned(), d.name.clone());
    labels.insert(LABEL_INSTANCE.to_owned(), inner.instance_arn.clone());
    let recorded: Vec<&NetworkBinding> = task
        .containers
        .iter()
        .filter(|c| c.name == d.name)
        .flat_map(|c| c.network_bindings.iter())
        .collect();
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for pm in &d.port_mappings {
        let proto = match pm.protocol() {
            Protocol::Udp => "udp",
            _ => "tcp",
        };
        let key = format!("{}/{proto}", pm.container_port);
        exposed.push(key.clone());
        if td.network_mode != NetworkMode::Bridge {
            continue;
        }
        // Static port, else the one the control layer recorded, else Docker picks
        // (and the agent records what it picked).
        let host = pm.static_host_port().or_else(|| {
            recorded
                .iter()
                .find(|b| {
                    b.container_port == pm.container_port
                        && b.protocol.unwrap_or_default() == pm.protocol()
                })
                .map(|b| b.host_port)
        });
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: None,
                host_port: Some(host.map(|p| p.to_string()).unwrap_or_default()),
            });
    }
    let healthcheck = d.health_check.as_ref().map(|h| HealthConfig {
        test: Some(h.command.clone()),
        interval: secs_to_ns(h.interval),
        timeout: secs_to_ns(h.timeout),
        retries: h.retries.map(i64::from),
        start_period: secs_to_ns(h.start_period),
        ..Default::default()
    });
    let mib = |m: Option<u32>| m.map(|m| i64::from(m) * 1024 * 1024);
    let network_mode = match td.network_mode {
        NetworkMode::Bridge => "bridge",
        NetworkMode::Host => "host",
        NetworkMode::None => "none",
    };
    ContainerCreateBody {
        image: Some(d.image.clone()),
        cmd: d.command.clone(),
        entrypoint: d.entry_point.clone(),
        env: Some(
            d.environment
                .iter()
                .map(|kv| format!("{}={}", kv.name, kv.value))
                .collect(),
        ),
        working_dir: d.working_directory.clone(),
        user: d.user.clone(),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        healthcheck,
        stop_timeout: d.stop_timeout.map(i64::from),
        host_config: Some(HostConfig {
            // Docker refuses shares below 2.
            cpu_shares: d.cpu.filter(|c| *c > 0).map(|c| i64::from(c.max(2))),
            memory: mib(d.memory),
            memory_reservation: mib(d.memory_reservation),
            port_bindings: Some(bindings),
            network_mode: Some(network_mode.to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
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

pub(crate) async fn remove(docker: &Docker, id: &str) -> Result<(), AgentError> {
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // 409: removal already in progress.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One started container: its definition's name, Docker id, what Docker said last.
#[derive(Debug)]
struct Started {
    name: String,
    id: String,
    seen: Observed,
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
    // Leftovers of an interrupted start go first, so a retry starts clean.
    remove_task_containers(inner, docker, &task.task_arn).await?;
    for d in &defs {
        ensure_image(docker, &d.image)
            .await
            .map_err(StartError::Failed)?;
    }
    let mut ids = HashMap::new();
    for d in &defs {
        let opts = CreateContainerOptionsBuilder::default()
            .name(&docker_name(&task.task_arn, &d.name))
            .build();
        let body = create_body(inner, task, &td, d);
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
            let mut ready = true;
            for dep in &d.depends_on {
                let Some(s) = started.iter().find(|s| s.name == dep.container_name) else {
                    ready = false;
                    break;
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
                    ready = false;
                    break;
                }
            }
            if !ready {
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
            reason: None,
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
