//! berth's domain records, shaped like ECS's JSON (camelCase names, epoch-second
//! timestamps, ARNs), so the API layer serialises them as they are.
//!
//! Optional fields are skipped when absent, as ECS omits them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

pub use crate::status::{
    ClusterStatus, ContainerStatus, DeploymentStatus, DesiredStatus, HealthStatus, InstanceStatus,
    RolloutState, ServiceStatus, StopCode, TaskDefinitionStatus, TaskStatus,
};

/// Seconds since the Unix epoch, fractional; ECS's wire format for times.
pub type Timestamp = f64;

/// Fields of a task definition's JSON that berth's model does not know,
/// kept so validation can refuse them by name instead of dropping them
/// (see `validate::unsupported`).
pub type UnknownFields = BTreeMap<String, serde_json::Value>;

/// `{key, value}` tag, as on clusters, task definitions, tasks and services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// `{name, value}` pair (container environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValuePair {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

// ---------------------------------------------------------------- clusters

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub cluster_arn: String,
    pub cluster_name: String,
    /// ACTIVE, or INACTIVE once deleted.
    pub status: ClusterStatus,
    #[serde(default)]
    pub registered_container_instances_count: u32,
    #[serde(default)]
    pub running_tasks_count: u32,
    #[serde(default)]
    pub pending_tasks_count: u32,
    #[serde(default)]
    pub active_services_count: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

// ------------------------------------------------------- task definitions

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Bridge,
    Host,
    None,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: u32,
    /// 0 or absent: a dynamic host port chosen at placement.
    pub host_port: Option<u32>,
    pub protocol: Option<Protocol>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

impl PortMapping {
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or_default()
    }
    /// The static host port this mapping reserves, if any.
    pub fn static_host_port(&self) -> Option<u32> {
        self.host_port.filter(|p| *p != 0)
    }
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// `["CMD", exe, args...]` or `["CMD-SHELL", "command line"]`.
    pub command: Vec<String>,
    pub interval: Option<u32>,
    pub timeout: Option<u32>,
    pub retries: Option<u32>,
    pub start_period: Option<u32>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

impl HealthCheck {
    pub fn interval(&self) -> u32 {
        self.interval.unwrap_or(30)
    }
    pub fn timeout(&self) -> u32 {
        self.timeout.unwrap_or(5)
    }
    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(3)
    }
    pub fn start_period(&self) -> u32 {
        self.start_period.unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DependencyCondition {
    Start,
    Complete,
    Success,
    Healthy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDependency {
    pub container_name: String,
    pub condition: DependencyCondition,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    pub source_volume: Option<String>,
    pub container_path: Option<String>,
    pub read_only: Option<bool>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFrom {
    pub source_container: Option<String>,
    pub read_only: Option<bool>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfiguration {
    pub log_driver: String,
    pub options: Option<BTreeMap<String, String>>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ulimit {
    pub name: String,
    pub soft_limit: i64,
    pub hard_limit: i64,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// The attribute an agent registers when it runs privileged containers
/// (`berth agent --allow-privileged`); a task definition with a privileged
/// container is placed only where it is.
pub const PRIVILEGED_CAPABILITY: &str = "ecs.capability.privileged-container";

/// `repositoryCredentials`: the name of a registry credential stored with
/// `berth secrets put` (ECS names a Secrets Manager secret here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryCredentials {
    pub credentials_parameter: String,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    pub name: String,
    pub image: String,
    /// Default true: an essential container that exits stops the task.
    pub essential: Option<bool>,
    /// CPU units, 1024 = one vCPU.
    pub cpu: Option<u32>,
    /// Hard memory limit, MiB.
    pub memory: Option<u32>,
    /// Soft memory limit, MiB: what placement reserves when given.
    pub memory_reservation: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<KeyValuePair>,
    pub command: Option<Vec<String>>,
    pub entry_point: Option<Vec<String>>,
    pub working_directory: Option<String>,
    pub user: Option<String>,
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ContainerDependency>,
    /// Seconds between SIGTERM and SIGKILL on stop.
    pub stop_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub docker_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_points: Vec<MountPoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<VolumeFrom>,
    pub log_configuration: Option<LogConfiguration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// Seconds a dependency may take to reach its `dependsOn` condition.
    pub start_timeout: Option<u32>,
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<HostEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search_domains: Vec<String>,
    pub readonly_root_filesystem: Option<bool>,
    pub disable_networking: Option<bool>,
    /// Keep stdin open (`docker run -i`).
    pub interactive: Option<bool>,
    /// Allocate a TTY (`docker run -t`).
    pub pseudo_terminal: Option<bool>,
    /// Placed only on instances whose agent allows privileged containers
    /// (attribute [`PRIVILEGED_CAPABILITY`]).
    pub privileged: Option<bool>,
    /// The stored registry credential to pull `image` with.
    pub repository_credentials: Option<RepositoryCredentials>,
    pub linux_parameters: Option<LinuxParameters>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system_controls: Vec<SystemControl>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// `{hostname, ipAddress}`: a line of the container's /etc/hosts.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostEntry {
    pub hostname: String,
    pub ip_address: String,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// A kernel parameter (`sysctl`) set in the container's namespaces.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemControl {
    pub namespace: Option<String>,
    pub value: Option<String>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct KernelCapabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// A host device mapped into the container.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub host_path: String,
    pub container_path: Option<String>,
    /// Any of `read`, `write`, `mknod`; all three when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// A tmpfs mount; `size` in MiB.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tmpfs {
    pub container_path: String,
    pub size: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LinuxParameters {
    pub capabilities: Option<KernelCapabilities>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// Run an init process (Docker's `--init`) as PID 1.
    pub init_process_enabled: Option<bool>,
    /// /dev/shm size, MiB.
    pub shared_memory_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<Tmpfs>,
    /// Fields berth does not know (maxSwap, swappiness); validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

impl ContainerDefinition {
    pub fn essential(&self) -> bool {
        self.essential.unwrap_or(true)
    }
    /// Memory placement reserves for this container: the soft limit when
    /// given, else the hard limit, else nothing.
    pub fn reserved_memory(&self) -> u32 {
        self.memory_reservation.or(self.memory).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementConstraintType {
    #[serde(rename = "distinctInstance")]
    DistinctInstance,
    #[serde(rename = "memberOf")]
    MemberOf,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementConstraint {
    #[serde(rename = "type")]
    pub kind: PlacementConstraintType,
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlacementStrategyType {
    Binpack,
    Spread,
    Random,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementStrategy {
    #[serde(rename = "type")]
    pub kind: PlacementStrategyType,
    pub field: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostVolumeProperties {
    pub source_path: Option<String>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    /// A bind mount of `sourcePath`; without one, a Docker volume that
    /// lives as long as the task.
    pub host: Option<HostVolumeProperties>,
    pub docker_volume_configuration: Option<DockerVolumeConfiguration>,
    /// Fields berth does not know (efsVolumeConfiguration, ...); validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VolumeScope {
    /// Created when the task starts, removed when it stops.
    #[default]
    Task,
    /// Outlives the task; found (or created, with autoprovision) by name.
    Shared,
}

/// A Docker named volume, as ECS's `dockerVolumeConfiguration`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DockerVolumeConfiguration {
    pub scope: Option<VolumeScope>,
    /// Shared scope only: create the volume when it does not exist.
    pub autoprovision: Option<bool>,
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

/// Which namespace (PID or IPC) the containers of a task use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceMode {
    /// The host's.
    Host,
    /// One shared by the task's containers.
    Task,
    /// IPC only: a private namespace without shared memory.
    None,
}

/// Network modes a request may name; `awsvpc` only to be refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestedNetworkMode {
    Bridge,
    Host,
    None,
    Awsvpc,
}

/// What RegisterTaskDefinition takes; validated into a [`TaskDefinition`].
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterTaskDefinition {
    pub family: String,
    pub container_definitions: Vec<ContainerDefinition>,
    pub network_mode: Option<RequestedNetworkMode>,
    /// Task-level CPU units, a string as in ECS ("256", or "1 vCPU").
    pub cpu: Option<String>,
    /// Task-level memory, a string as in ECS ("512", or "1 GB").
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement_constraints: Vec<PlacementConstraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    pub pid_mode: Option<NamespaceMode>,
    pub ipc_mode: Option<NamespaceMode>,
    /// EC2 or EXTERNAL (both mean a berth host); FARGATE is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires_compatibilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Fields berth does not know; validation refuses them.
    #[serde(flatten)]
    pub unknown: UnknownFields,
}

impl RegisterTaskDefinition {
    /// The network mode the task runs with (bridge when none is named;
    /// awsvpc never passes validation).
    pub fn network_mode(&self) -> NetworkMode {
        match self.network_mode {
            Some(RequestedNetworkMode::Host) => NetworkMode::Host,
            Some(RequestedNetworkMode::None) => NetworkMode::None,
            _ => NetworkMode::Bridge,
        }
    }
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    pub task_definition_arn: String,
    pub family: String,
    pub revision: u32,
    pub container_definitions: Vec<ContainerDefinition>,
    pub network_mode: NetworkMode,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement_constraints: Vec<PlacementConstraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    pub pid_mode: Option<NamespaceMode>,
    pub ipc_mode: Option<NamespaceMode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires_compatibilities: Vec<String>,
    /// ACTIVE, or INACTIVE after DeregisterTaskDefinition.
    pub status: TaskDefinitionStatus,
    pub registered_at: Option<Timestamp>,
    pub deregistered_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

// ------------------------------------------------------------------ tasks

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBinding {
    pub bind_i_p: Option<String>,
    pub container_port: u32,
    pub host_port: u32,
    pub protocol: Option<Protocol>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub container_arn: String,
    pub task_arn: Option<String>,
    pub name: String,
    pub image: String,
    pub last_status: ContainerStatus,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub health_status: Option<HealthStatus>,
    #[serde(default)]
    pub network_bindings: Vec<NetworkBinding>,
    /// The Docker container id, once created.
    pub runtime_id: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverride {
    pub name: String,
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<KeyValuePair>,
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
    pub memory_reservation: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskOverride {
    #[serde(default)]
    pub container_overrides: Vec<ContainerOverride>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub task_arn: String,
    pub cluster_arn: String,
    pub task_definition_arn: String,
    pub container_instance_arn: Option<String>,
    pub group: Option<String>,
    pub started_by: Option<String>,
    pub last_status: TaskStatus,
    pub desired_status: DesiredStatus,
    pub health_status: Option<HealthStatus>,
    pub stop_code: Option<StopCode>,
    pub stopped_reason: Option<String>,
    pub created_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub stopping_at: Option<Timestamp>,
    pub stopped_at: Option<Timestamp>,
    /// Bumped on every change, as ECS's task `version`.
    #[serde(default)]
    pub version: u64,
    /// Task-level CPU units and memory MiB reserved on the instance.
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub launch_type: Option<String>,
    #[serde(default)]
    pub containers: Vec<Container>,
    pub overrides: Option<TaskOverride>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// ECS's task attributes; berth notes here how placement went when a
    /// policy failed (`berth.policy-fallback`, `berth.policy-failure`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
}

// --------------------------------------------------------------- services

#[skip_serializing_none]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentCircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfiguration {
    pub maximum_percent: Option<u32>,
    pub minimum_healthy_percent: Option<u32>,
    pub deployment_circuit_breaker: Option<DeploymentCircuitBreaker>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub status: DeploymentStatus,
    pub task_definition: String,
    pub desired_count: u32,
    pub pending_count: u32,
    pub running_count: u32,
    pub failed_tasks: u32,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub rollout_state: Option<RolloutState>,
    pub rollout_state_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    pub id: String,
    pub created_at: Timestamp,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchedulingStrategy {
    #[default]
    Replica,
    Daemon,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub service_arn: String,
    pub service_name: String,
    pub cluster_arn: String,
    /// ACTIVE, DRAINING or INACTIVE.
    pub status: ServiceStatus,
    pub desired_count: u32,
    pub running_count: u32,
    pub pending_count: u32,
    pub task_definition: String,
    pub launch_type: Option<String>,
    pub scheduling_strategy: SchedulingStrategy,
    pub deployment_configuration: Option<DeploymentConfiguration>,
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    #[serde(default)]
    pub events: Vec<ServiceEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement_constraints: Vec<PlacementConstraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement_strategy: Vec<PlacementStrategy>,
    pub health_check_grace_period_seconds: Option<u32>,
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

// ---------------------------------------------------- container instances

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// CPU, MEMORY, PORTS or PORTS_UDP.
    pub name: String,
    /// INTEGER or STRINGSET.
    #[serde(rename = "type")]
    pub kind: String,
    pub integer_value: Option<i64>,
    pub long_value: Option<i64>,
    pub double_value: Option<f64>,
    pub string_set_value: Option<Vec<String>>,
}

impl Resource {
    pub fn integer(name: &str, value: i64) -> Self {
        Resource {
            name: name.to_owned(),
            kind: "INTEGER".to_owned(),
            integer_value: Some(value),
            long_value: None,
            double_value: None,
            string_set_value: None,
        }
    }
    pub fn string_set(name: &str, values: Vec<String>) -> Self {
        Resource {
            name: name.to_owned(),
            kind: "STRINGSET".to_owned(),
            integer_value: None,
            long_value: None,
            double_value: None,
            string_set_value: Some(values),
        }
    }
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub agent_version: Option<String>,
    pub agent_hash: Option<String>,
    pub docker_version: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInstance {
    pub container_instance_arn: String,
    /// berth: the host id.
    pub ec2_instance_id: String,
    /// ACTIVE, DRAINING or INACTIVE.
    pub status: InstanceStatus,
    pub agent_connected: bool,
    pub running_tasks_count: u32,
    pub pending_tasks_count: u32,
    pub registered_resources: Vec<Resource>,
    pub remaining_resources: Vec<Resource>,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    pub registered_at: Option<Timestamp>,
    pub version_info: Option<VersionInfo>,
    /// Bumped on every change, as ECS's instance `version`.
    #[serde(default)]
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Deserialise ECS-shaped JSON, serialise it back, and require the same JSON.
    fn round_trip<T: serde::de::DeserializeOwned + Serialize>(v: serde_json::Value) -> T {
        let parsed: T = match serde_json::from_value(v.clone()) {
            Ok(p) => p,
            Err(e) => panic!("does not parse: {e}"),
        };
        let back = serde_json::to_value(&parsed).expect("serialises");
        assert_eq!(back, v, "round trip changed the JSON");
        parsed
    }

    #[test]
    fn task_definition_round_trips() {
        let td: TaskDefinition = round_trip(json!({
            "taskDefinitionArn": "arn:aws:ecs:local:000000000000:task-definition/web:3",
            "family": "web",
            "revision": 3,
            "networkMode": "bridge",
            "cpu": "256",
            "memory": "512",
            "status": "ACTIVE",
            "registeredAt": 1700000000.5,
            "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.os-type == linux"}],
            "volumes": [{"name": "data", "host": {"sourcePath": "/srv/data"}}],
            "containerDefinitions": [{
                "name": "app",
                "image": "berth/hello:1",
                "essential": true,
                "cpu": 128,
                "memory": 256,
                "memoryReservation": 128,
                "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"},
                                 {"containerPort": 53, "hostPort": 5353, "protocol": "udp"}],
                "environment": [{"name": "MODE", "value": "prod"}],
                "command": ["/hello", "--port", "8080"],
                "entryPoint": ["/bin/sh", "-c"],
                "workingDirectory": "/srv",
                "user": "1000:1000",
                "healthCheck": {"command": ["CMD-SHELL", "wget -q -O- localhost:8080/health"],
                                "interval": 10, "timeout": 2, "retries": 3, "startPeriod": 5},
                "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
                "stopTimeout": 10,
                "dockerLabels": {"team": "web"},
                "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": false}],
                "volumesFrom": [{"sourceContainer": "init", "readOnly": true}],
                "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}},
                "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}]
            }, {
                "name": "init", "image": "berth/init:1", "essential": false, "memory": 32,
                "command": ["/init"]
            }],
            "tags": [{"key": "team", "value": "web"}]
        }));
        assert_eq!(td.container_definitions[0].reserved_memory(), 128);
        assert_eq!(td.container_definitions[1].reserved_memory(), 32);
        assert_eq!(
            td.container_definitions[0].port_mappings[0].static_host_port(),
            None
        );
        assert_eq!(
            td.container_definitions[0].port_mappings[1].protocol(),
            Protocol::Udp
        );
        assert!(!td.container_definitions[1].essential());
    }

    #[test]
    fn task_round_trips() {
        let t: Task = round_trip(json!({
            "taskArn": "arn:aws:ecs:local:000000000000:task/default/0f2b",
            "clusterArn": "arn:aws:ecs:local:000000000000:cluster/default",
            "taskDefinitionArn": "arn:aws:ecs:local:000000000000:task-definition/web:3",
            "containerInstanceArn": "arn:aws:ecs:local:000000000000:container-instance/default/9a1",
            "group": "family:web",
            "startedBy": "ecs-svc/123",
            "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED",
            "healthStatus": "UNKNOWN",
            "stopCode": "EssentialContainerExited",
            "stoppedReason": "Essential container in task exited",
            "createdAt": 1700000000.0,
            "startedAt": 1700000001.25,
            "stoppingAt": 1700000100.0,
            "stoppedAt": 1700000101.0,
            "version": 4,
            "cpu": "256",
            "memory": "512",
            "launchType": "EC2",
            "containers": [{
                "containerArn": "arn:aws:ecs:local:000000000000:container/default/0f2b/app",
                "taskArn": "arn:aws:ecs:local:000000000000:task/default/0f2b",
                "name": "app", "image": "berth/hello:1", "lastStatus": "STOPPED",
                "exitCode": 1, "reason": "exited", "healthStatus": "UNHEALTHY",
                "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 8080, "hostPort": 49153, "protocol": "tcp"}]
            }],
            "overrides": {"containerOverrides": [{"name": "app", "command": ["/hello", "-v"],
                          "environment": [{"name": "X", "value": "1"}], "memory": 300}]}
        }));
        assert_eq!(t.containers[0].network_bindings[0].host_port, 49153);
    }

    #[test]
    fn service_and_instance_round_trip() {
        round_trip::<Service>(json!({
            "serviceArn": "arn:aws:ecs:local:000000000000:service/default/web",
            "serviceName": "web",
            "clusterArn": "arn:aws:ecs:local:000000000000:cluster/default",
            "status": "ACTIVE", "desiredCount": 3, "runningCount": 2, "pendingCount": 1,
            "taskDefinition": "arn:aws:ecs:local:000000000000:task-definition/web:3",
            "launchType": "EC2",
            "schedulingStrategy": "REPLICA",
            "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100,
                "deploymentCircuitBreaker": {"enable": true, "rollback": true}},
            "deployments": [{"id": "ecs-svc/123", "status": "PRIMARY",
                "taskDefinition": "arn:aws:ecs:local:000000000000:task-definition/web:3",
                "desiredCount": 3, "pendingCount": 1, "runningCount": 2, "failedTasks": 0,
                "rolloutState": "IN_PROGRESS", "createdAt": 1700000000.0, "updatedAt": 1700000005.0}],
            "events": [{"id": "e1", "createdAt": 1700000005.0, "message": "(service web) has started 1 tasks"}],
            "placementConstraints": [{"type": "distinctInstance"}],
            "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"},
                                  {"type": "binpack", "field": "memory"}],
            "healthCheckGracePeriodSeconds": 30,
            "createdAt": 1700000000.0
        }));
        let ci: ContainerInstance = round_trip(json!({
            "containerInstanceArn": "arn:aws:ecs:local:000000000000:container-instance/default/9a1",
            "ec2InstanceId": "host-1",
            "status": "ACTIVE", "agentConnected": true,
            "runningTasksCount": 1, "pendingTasksCount": 0,
            "registeredResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 3900},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375"]},
                {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}],
            "remainingResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 1792},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 3388}],
            "attributes": [{"name": "ecs.os-type", "value": "linux"}, {"name": "gpu"}],
            "registeredAt": 1700000000.0,
            "versionInfo": {"agentVersion": "0.1.0", "dockerVersion": "20.10.24"},
            "version": 7
        }));
        assert_eq!(ci.attributes[1].value, None);
    }

    #[test]
    fn cluster_round_trips() {
        round_trip::<Cluster>(json!({
            "clusterArn": "arn:aws:ecs:local:000000000000:cluster/default",
            "clusterName": "default", "status": "ACTIVE",
            "registeredContainerInstancesCount": 1, "runningTasksCount": 2,
            "pendingTasksCount": 0, "activeServicesCount": 1,
            "tags": [{"key": "env", "value": "dev"}]
        }));
    }
}
