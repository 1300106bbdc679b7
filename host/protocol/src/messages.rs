//! The messages of the agent protocol: plain data, camelCase on the wire.

use berth_core::model::{
    Attribute, ContainerInstance, NetworkBinding, Resource, Task, TaskDefinition, VersionInfo,
};
use berth_core::status::{ContainerStatus, HealthStatus, InstanceStatus, StopCode, TaskStatus};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Registers (or refreshes) an agent's container instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterInstance {
    /// The cluster's name; created when it does not exist.
    pub cluster: String,
    /// The instance's ARN (the agent keeps its id stable across restarts).
    pub container_instance_arn: String,
    /// The host's id (`ec2InstanceId`).
    pub ec2_instance_id: String,
    /// Whether the agent reaches its container runtime.
    pub agent_connected: bool,
    /// CPU, MEMORY, PORTS (reserved), PORTS_UDP.
    pub total_resources: Vec<Resource>,
    /// The agent's own attributes ([`builtin_attributes`]); they replace
    /// those of the same names, and other (custom) attributes are kept.
    pub attributes: Vec<Attribute>,
    /// The agent's and its runtime's versions.
    pub version_info: VersionInfo,
}

/// What the agent knows of itself for [`builtin_attributes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostFacts {
    /// `ecs.os-type`, e.g. `linux`.
    pub os_type: String,
    /// `ecs.cpu-architecture` as the runtime spells it (`x86_64`, `aarch64`).
    pub cpu_architecture: String,
    /// `ecs.availability-zone`.
    pub availability_zone: String,
    /// `ecs.instance-type`.
    pub instance_type: String,
}

impl HostFacts {
    /// What berth assumes of a host that says nothing of itself: this
    /// build's architecture, Linux, zone `local`, type `berth`.
    pub fn assumed() -> HostFacts {
        HostFacts {
            os_type: "linux".to_owned(),
            cpu_architecture: std::env::consts::ARCH.to_owned(),
            availability_zone: "local".to_owned(),
            instance_type: "berth".to_owned(),
        }
    }
}

/// ECS's spelling of a CPU architecture (`aarch64` is `arm64`).
pub fn ecs_cpu_architecture(arch: &str) -> &str {
    match arch {
        "aarch64" => "arm64",
        "" => "x86_64",
        other => other,
    }
}

/// The attributes berth sets on every instance: `ecs.os-type`,
/// `ecs.cpu-architecture`, `ecs.availability-zone`, `ecs.instance-type`.
pub fn builtin_attributes(facts: &HostFacts) -> Vec<Attribute> {
    [
        ("ecs.availability-zone", facts.availability_zone.as_str()),
        ("ecs.instance-type", facts.instance_type.as_str()),
        ("ecs.os-type", facts.os_type.as_str()),
        (
            "ecs.cpu-architecture",
            ecs_cpu_architecture(&facts.cpu_architecture),
        ),
    ]
    .into_iter()
    .map(|(n, v)| Attribute {
        name: n.to_owned(),
        value: Some(v.to_owned()),
        target_type: None,
        target_id: None,
    })
    .collect()
}

/// Whether an agent is connected to its container runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The cluster's name.
    pub cluster: String,
    /// The instance.
    pub container_instance_arn: String,
    /// Whether the agent reaches its container runtime.
    pub agent_connected: bool,
}

/// The answer to a [`Heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAck {
    /// False when no such instance is recorded.
    pub registered: bool,
}

/// Deregisters an instance whose agent will not run any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetireInstance {
    /// The cluster's name.
    pub cluster: String,
    /// The instance.
    pub container_instance_arn: String,
}

/// The answer to a [`RetireInstance`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetireAck {
    /// Tasks on it that are not STOPPED; when not 0, nothing changed.
    pub live_tasks: u32,
}

/// Asks for the tasks assigned to an instance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRequest {
    /// The cluster's name.
    pub cluster: String,
    /// The instance.
    pub container_instance_arn: String,
    /// The sequence number of the manifest the agent holds. None: answer at
    /// once. Some: a long poll, answered at once when the instance's
    /// manifest is newer, else when it changes or after a while (the
    /// control plane's choice, ~20 s), with the manifest as it is then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_sequence: Option<u64>,
}

/// The tasks assigned to an instance and not yet STOPPED. A STOPPED task
/// is final and leaves the manifest: the agent removes the containers no
/// listed live task owns, so it needs no list of the instance's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskManifest {
    /// The instance.
    pub container_instance_arn: String,
    /// Rises whenever the server changes what the instance holds (a task
    /// assigned, asked to stop, stopped by the server; not the agent's own
    /// report of a start): a manifest with a lower number than one already
    /// seen is older.
    pub sequence: u64,
    /// The tasks, each with its definition.
    pub tasks: Vec<AssignedTask>,
}

impl TaskManifest {
    /// The task `arn`, if assigned.
    pub fn task(&self, arn: &str) -> Option<&AssignedTask> {
        self.tasks.iter().find(|t| t.task.task_arn == arn)
    }
}

/// One task of a [`TaskManifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedTask {
    /// The task, with its `desiredStatus`.
    pub task: Task,
    /// Its task definition (None when it does not exist any more).
    pub task_definition: Option<TaskDefinition>,
    /// The registry credentials its containers' `repositoryCredentials`
    /// name, by name, while the task is yet to start (PENDING, desired
    /// RUNNING): the agent pulls with them. A name with no stored
    /// credential is left out, and the agent fails the task saying so.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub registry_credentials: BTreeMap<String, RegistryCredential>,
}

/// A registry login stored with `berth secrets put`, as the agent pulls
/// with it. Its `Debug` leaves the password out, so no log shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCredential {
    /// The registry user.
    pub username: String,
    /// Its password or token.
    pub password: String,
}

impl std::fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A change of one container, as ECS's `SubmitContainerStateChange` (a
/// field left out is unchanged).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateChange {
    /// The container definition's name.
    pub container_name: String,
    /// Its image, for a container the task does not list yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The runtime's id of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    /// PENDING, RUNNING or STOPPED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ContainerStatus>,
    /// The exit code, once it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Why it changed (e.g. `exited with code 1`), or what it waits for
    /// (a pull's progress); empty clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The host ports bound, replacing those recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_bindings: Option<Vec<NetworkBinding>>,
    /// HEALTHY, UNHEALTHY or UNKNOWN, for a container with a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<HealthStatus>,
}

/// A change of one task and its containers, as ECS's
/// `SubmitTaskStateChange` (a field left out is unchanged).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStateChange {
    /// The cluster's name.
    pub cluster: String,
    /// The task's ARN.
    pub task: String,
    /// The task's new last status: PENDING, RUNNING, STOPPING or STOPPED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    /// With a stop code: why the agent stops the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The agent stops the task (`EssentialContainerExited`,
    /// `TaskFailedToStart`): desired STOPPED with this code and `reason`,
    /// unless it was asked to stop already (the first reason stands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<StopCode>,
    /// The task's health from its essential containers' checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<HealthStatus>,
    /// Its containers' changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerStateChange>,
    /// When the agent saw the change, epoch seconds: `startedAt`,
    /// `stoppingAt` and `stoppedAt` are set from it.
    pub at: f64,
}

/// ECS's `SubmitContainerStateChange`: one container of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitContainerStateChange {
    /// The cluster's name.
    pub cluster: String,
    /// The task's ARN.
    pub task: String,
    /// The container's change.
    #[serde(flatten)]
    pub container: ContainerStateChange,
    /// When the agent saw it, epoch seconds.
    pub at: f64,
}

/// Several tasks' state changes in one message, applied in one store
/// transaction (an agent that starts many tasks at once reports them
/// together: one round trip and one commit instead of one per task).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStateChanges {
    /// The changes, applied in order.
    pub changes: Vec<TaskStateChange>,
}

/// The answer to [`TaskStateChanges`]: per change, in order, whether it
/// changed its task (the tasks themselves are left out to keep it small).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChangesAck {
    /// False for a change already applied, out of date, or of a task that
    /// does not exist.
    pub applied: Vec<bool>,
}

/// The answer to a state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChangeAck {
    /// Whether it changed the task (false: already applied, or out of date).
    pub applied: bool,
    /// The task as recorded afterwards (None when it does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
}

/// Asks an agent for a page of a task's container logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLogsRequest {
    /// The task's ARN.
    pub task_arn: String,
    /// Only this container (by definition name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Entries from this time on (epoch microseconds, inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_micros: Option<i64>,
    /// Per container, the first `limit` entries and the rest of the last
    /// one's microsecond (so a page cut after them never splits one).
    pub limit: usize,
}

/// An agent asks for the log reads waiting for it (a long poll: answered
/// when one is queued, or empty after a while).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRequestPoll {
    /// The agent's instance.
    pub container_instance_arn: String,
}

/// One log read for an agent to answer, with the id its answer carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingLogRequest {
    /// Names the read within the instance's queue.
    pub id: u64,
    /// What to read.
    pub request: TaskLogsRequest,
}

/// The answer to a [`LogRequestPoll`]: the reads waiting (perhaps none).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRequests {
    /// Oldest first.
    pub requests: Vec<PendingLogRequest>,
}

/// An agent's answer to one [`PendingLogRequest`]: the logs, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogAnswer {
    /// The agent's instance.
    pub container_instance_arn: String,
    /// The request's id.
    pub id: u64,
    /// The logs read, when the read worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<TaskLogs>,
    /// Why the read failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::LogReadError>,
}

impl LogAnswer {
    /// The answer of a read that ended with `result`.
    pub fn new(
        container_instance_arn: String,
        id: u64,
        result: Result<TaskLogs, crate::LogReadError>,
    ) -> Self {
        let (logs, error) = match result {
            Ok(l) => (Some(l), None),
            Err(e) => (None, Some(e)),
        };
        LogAnswer {
            container_instance_arn,
            id,
            logs,
            error,
        }
    }

    /// What the read gave.
    pub fn into_result(self) -> Result<TaskLogs, crate::LogReadError> {
        match (self.logs, self.error) {
            (_, Some(e)) => Err(e),
            (Some(l), None) => Ok(l),
            (None, None) => Err(crate::LogReadError::Failed {
                message: "the agent answered with neither logs nor an error".to_owned(),
            }),
        }
    }
}

/// Each container's entries, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLogs {
    /// One per container, sorted by name.
    pub containers: Vec<ContainerLogs>,
}

/// One container's entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerLogs {
    /// The container definition's name.
    pub name: String,
    /// Its entries, oldest first.
    pub entries: Vec<LogLine>,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Epoch nanoseconds.
    pub nanos: i64,
    /// The output without its line end (stdout and stderr alike), UTF-8
    /// with invalid bytes replaced.
    pub message: String,
}

/// The instance a registration describes, for a control plane that has
/// none yet (no tasks, nothing used).
pub fn new_instance(req: &RegisterInstance, registered_at: f64) -> ContainerInstance {
    ContainerInstance {
        container_instance_arn: req.container_instance_arn.clone(),
        ec2_instance_id: req.ec2_instance_id.clone(),
        status: InstanceStatus::Active,
        agent_connected: req.agent_connected,
        running_tasks_count: 0,
        pending_tasks_count: 0,
        registered_resources: req.total_resources.clone(),
        remaining_resources: req.total_resources.clone(),
        attributes: req.attributes.clone(),
        registered_at: Some(registered_at),
        version_info: Some(req.version_info.clone()),
        version: 0,
    }
}

/// Attributes under this prefix (`ecs.capability.privileged-container`)
/// say what the agent can do; each registration says them all afresh.
pub const CAPABILITY_PREFIX: &str = "ecs.capability.";

/// Refreshes a recorded instance from a registration: resources, version,
/// `agentConnected`, and the registration's attributes (replacing those of
/// the same names, and every capability, so an agent restarted without one
/// loses it; the others are kept). The caller recomputes usage.
pub fn refresh_instance(ci: &mut ContainerInstance, req: &RegisterInstance) {
    ci.agent_connected = req.agent_connected;
    ci.registered_resources = req.total_resources.clone();
    ci.attributes.retain(|a| {
        !a.name.starts_with(CAPABILITY_PREFIX) && !req.attributes.iter().any(|e| e.name == a.name)
    });
    ci.attributes.extend(req.attributes.iter().cloned());
    ci.version_info = Some(req.version_info.clone());
}
