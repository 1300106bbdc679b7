//! The API's answers as the CLI reads them: envelopes around berth-core's
//! models (ECS's JSON shapes), and the policy views of berth's own
//! operations. Only what the CLI reads is here; `--output json` prints the
//! answer itself.

use std::collections::BTreeMap;

use berth_core::model::{Cluster, ContainerInstance, Service, Task, TaskDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CliError, Result};

/// Reads an answer into its model; one that does not fit is this client's
/// fault (a server of another version), not the server's refusal.
pub fn read<T: DeserializeOwned>(op: &str, v: &Value) -> Result<T> {
    T::deserialize(v).map_err(|e| {
        CliError::Local(format!(
            "{op}: the answer does not read as berth's ({e}); is the server another version?"
        ))
    })
}

/// One page of a List call: its ARNs and where the next page starts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    #[serde(
        alias = "clusterArns",
        alias = "taskArns",
        alias = "serviceArns",
        alias = "containerInstanceArns"
    )]
    pub arns: Vec<String>,
    pub next_token: Option<String>,
}

/// A resource the server could not act on or describe.
#[derive(Debug, Deserialize)]
pub struct Failure {
    pub arn: Option<String>,
    pub reason: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Clusters {
    pub clusters: Vec<Cluster>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    pub task_definition: TaskDefinition,
}

/// RunTask's and DescribeTasks' answer.
#[derive(Debug, Deserialize)]
pub struct Tasks {
    pub tasks: Vec<Task>,
    #[serde(default)]
    pub failures: Vec<Failure>,
}

#[derive(Debug, Deserialize)]
pub struct Stopped {
    pub task: Task,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instances {
    pub container_instances: Vec<ContainerInstance>,
    #[serde(default)]
    pub failures: Vec<Failure>,
}

/// CreateService's, UpdateService's and DeleteService's answer.
#[derive(Debug, Deserialize)]
pub struct OneService {
    pub service: Service,
}

#[derive(Debug, Deserialize)]
pub struct Services {
    pub services: Vec<Service>,
}

/// A placement policy as berth's policy operations show it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub world: String,
    pub size: u64,
    pub active_in: Vec<String>,
    #[serde(default)]
    pub activations: Vec<PolicyActivation>,
    #[serde(default)]
    pub parameters: Vec<PolicyParameter>,
    pub stats: PolicyStats,
    /// Newest first.
    #[serde(default)]
    pub recent_failures: Vec<PolicyFailure>,
    /// What it did as a cluster's shadow.
    #[serde(default)]
    pub shadow: Option<Shadow>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shadow {
    pub decisions: u64,
    pub agreed: u64,
    pub disagreed: u64,
    pub agreement: f64,
    pub would_fail: u64,
    pub failures: BTreeMap<String, u64>,
    pub skipped: u64,
}

#[derive(Debug, Deserialize)]
pub struct PolicyActivation {
    pub scope: String,
    pub fallback: String,
}

#[derive(Debug, Deserialize)]
pub struct PolicyFailure {
    pub kind: String,
    pub message: String,
    /// Epoch seconds.
    pub at: f64,
    pub task: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PolicyParameter {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStats {
    pub decisions: u64,
    /// Failed decisions by kind.
    pub failures: BTreeMap<String, u64>,
    pub instances_created: u64,
    pub logs_dropped: u64,
    pub latency_micros: Latency,
}

#[derive(Debug, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Deserialize)]
pub struct OnePolicy {
    pub policy: Policy,
}

#[derive(Debug, Deserialize)]
pub struct Policies {
    pub policies: Vec<Policy>,
}

#[derive(Debug, Deserialize)]
pub struct Activated {
    pub policy: Policy,
    pub scope: String,
}

#[derive(Debug, Deserialize)]
pub struct Deactivated {
    pub scope: String,
}

/// One page of GetTaskLogs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    pub events: Vec<LogEvent>,
    pub next_start_time: Option<f64>,
    pub last_status: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LogEvent {
    pub container: String,
    /// Epoch seconds.
    pub timestamp: f64,
    pub message: String,
}
