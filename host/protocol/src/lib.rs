//! What a berth agent and the control plane say to each other.
//!
//! Two traits, one per direction, and the messages they carry:
//! - [`ControlPlane`]: what an agent needs of the control plane. It
//!   registers its container instance and reports whether it is connected
//!   (heartbeat), reads the tasks assigned to it (a [`TaskManifest`] with a
//!   rising sequence number), and submits task and container state changes
//!   in the shape of ECS's `SubmitTaskStateChange` and
//!   `SubmitContainerStateChange`.
//! - [`TaskLogReader`]: the reverse direction, which the agent answers: the
//!   server reads a task's container logs from the agent of its instance.
//!
//! Every message is a plain serde type (camelCase, as ECS's wire) so the
//! same messages travel in-process (`berth up`) and over HTTP (`berth
//! agent`, through `berth_client::RemoteControlPlane`). This crate does no IO; how a state change applies to a task record
//! is here too ([`apply_task_state_change`]), so every implementation of the
//! control plane applies it the same way.
//!
//! The traits use the `async-trait` crate rather than native `async fn` in
//! traits: an agent holds whichever control plane it was given at run time
//! (`Arc<dyn ControlPlane>`: in-process or over HTTP), and the server
//! keeps the log readers of many agents in one map (`Arc<dyn
//! TaskLogReader>`); native async trait methods are not dyn-compatible.
//! Their futures are `Send`, so both sides run on a multi-threaded runtime.

mod apply;
mod backoff;
mod messages;

pub use apply::{apply_task_state_change, container_entry, status_rank};
pub use backoff::{BACKOFF_MAX, BACKOFF_MIN, Backoff};
pub use messages::*;

use async_trait::async_trait;

/// How often an agent sends a [`Heartbeat`] (`ControlPlane::heartbeat`),
/// whatever else it says meanwhile. The server judges an agent it has not
/// heard from for its timeout (`berth server --agent-timeout`, 15 s by
/// default: three intervals) lost; any message of the agent (heartbeat,
/// registration, manifest read, state change) counts as hearing from it.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the control plane did not do what an agent asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
#[non_exhaustive]
pub enum ProtocolError {
    /// The request names something the control plane refuses (an unknown
    /// instance, an invalid registration).
    #[error("refused: {message}")]
    Refused {
        /// Why.
        message: String,
    },
    /// The control plane could not do it now (its store failed, contention,
    /// or it cannot be reached); the agent tries again on its next pass.
    #[error("control plane unavailable: {message}")]
    Unavailable {
        /// Why.
        message: String,
    },
}

/// What an agent needs of the control plane. Every method is idempotent:
/// an agent that lost an answer asks again.
#[async_trait]
pub trait ControlPlane: Send + Sync + std::fmt::Debug {
    /// Registers the instance (created, or refreshed when it exists: its
    /// resources, the agent's attributes, version, `agentConnected`), after
    /// making sure its cluster exists. Returns the instance as recorded.
    async fn register_instance(
        &self,
        req: RegisterInstance,
    ) -> Result<berth_core::model::ContainerInstance, ProtocolError>;

    /// Records whether the agent is connected to its container runtime;
    /// sent every [`HEARTBEAT_INTERVAL`], it also tells the server the
    /// agent is alive. `registered: false` in the answer means no such instance is recorded
    /// (the agent registers it).
    async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatAck, ProtocolError>;

    /// Deregisters an instance whose agent will not run any more, unless it
    /// still holds tasks that are not STOPPED (then nothing changes).
    async fn retire_instance(&self, req: RetireInstance) -> Result<RetireAck, ProtocolError>;

    /// The tasks assigned to the instance, with their desired status and
    /// task definitions; with `known_sequence`, a long poll (see
    /// [`ManifestRequest`]).
    async fn task_manifest(&self, req: ManifestRequest) -> Result<TaskManifest, ProtocolError>;

    /// Applies a task's state change (and its containers') as
    /// [`apply_task_state_change`] says; submitting the same change again
    /// changes nothing. The answer carries the task as recorded afterwards.
    async fn submit_task_state_change(
        &self,
        change: TaskStateChange,
    ) -> Result<StateChangeAck, ProtocolError>;

    /// Several tasks' state changes, each as
    /// [`ControlPlane::submit_task_state_change`] would apply it; a control
    /// plane may apply them together (the in-process one does, in one
    /// transaction).
    async fn submit_task_state_changes(
        &self,
        batch: TaskStateChanges,
    ) -> Result<StateChangesAck, ProtocolError> {
        let mut applied = Vec::with_capacity(batch.changes.len());
        for change in batch.changes {
            applied.push(self.submit_task_state_change(change).await?.applied);
        }
        Ok(StateChangesAck { applied })
    }

    /// One container's state change (ECS's `SubmitContainerStateChange`):
    /// a task state change with that container only.
    async fn submit_container_state_change(
        &self,
        change: SubmitContainerStateChange,
    ) -> Result<StateChangeAck, ProtocolError> {
        self.submit_task_state_change(TaskStateChange {
            cluster: change.cluster,
            task: change.task,
            at: change.at,
            containers: vec![change.container],
            ..TaskStateChange::default()
        })
        .await
    }
}

/// Why a log read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
#[non_exhaustive]
pub enum LogReadError {
    /// The agent has no container of the task (not created yet, or removed).
    #[error("no containers of task {task} found in Docker")]
    NoSuchTask {
        /// The task asked for.
        task: String,
    },
    /// The task has no container of that name.
    #[error("task {task} has no container named {name}")]
    NoSuchContainer {
        /// The task.
        task: String,
        /// The name asked for.
        name: String,
    },
    /// The container logs to a driver whose log the runtime cannot read
    /// back (syslog, none): its logs are where that driver sends them.
    #[error(
        "container {name} of task {task} logs to the {driver} log driver, not one berth reads (json-file, local): its logs are where {driver} sends them"
    )]
    LogsElsewhere {
        /// The task.
        task: String,
        /// The container's name in the task definition.
        name: String,
        /// Its log driver.
        driver: String,
    },
    /// Reading failed (the runtime did not answer, an unreadable entry).
    #[error("{message}")]
    Failed {
        /// Why.
        message: String,
    },
}

/// The log-read side, which an agent answers: the server asks the agent of
/// a task's instance for its containers' logs.
#[async_trait]
pub trait TaskLogReader: Send + Sync + std::fmt::Debug {
    /// A page of each container's log (see [`TaskLogsRequest`]).
    async fn read_task_logs(&self, req: TaskLogsRequest) -> Result<TaskLogs, LogReadError>;
}
