//! The agent's errors.

use berth_protocol::ProtocolError;

/// What can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// Docker did not answer, or refused a request.
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// A Docker host given in a form berth does not read.
    #[error("docker host {0}: give unix:///PATH or tcp://HOST:PORT")]
    DockerHost(String),
    /// The control plane refused or could not be reached.
    #[error("control plane: {0}")]
    Control(#[from] ProtocolError),
    /// The instance id file in the data directory could not be read or written.
    #[error("instance id file {path}: {source}")]
    InstanceId {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No task matches what `berth logs` was given.
    #[error("no containers of task {0} found in Docker")]
    NoSuchTask(String),
    /// The task has no container of that name.
    #[error("task {task} has no container named {name}")]
    NoSuchContainer {
        /// The task.
        task: String,
        /// The name asked for.
        name: String,
    },
    /// The container's log driver keeps no log Docker can read back.
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
    /// Writing log output failed.
    #[error("writing logs: {0}")]
    Io(#[from] std::io::Error),
}

impl AgentError {
    /// Whether the control plane could not be reached (or could not answer
    /// now): the agent's session ends and it reconnects with back-off.
    pub fn is_control_unavailable(&self) -> bool {
        matches!(self, AgentError::Control(ProtocolError::Unavailable { .. }))
    }
}
