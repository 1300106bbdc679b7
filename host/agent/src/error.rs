//! The agent's errors.

use berth_store::{StoreError, UpdateError};

/// What can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// Docker did not answer, or refused a request.
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A store update kept conflicting or failed.
    #[error("store update: {0}")]
    Update(String),
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
    /// Writing log output failed.
    #[error("writing logs: {0}")]
    Io(#[from] std::io::Error),
}

impl<E: std::fmt::Display> From<UpdateError<E>> for AgentError {
    fn from(e: UpdateError<E>) -> Self {
        match e {
            UpdateError::Store(s) => AgentError::Store(s),
            other => AgentError::Update(other.to_string()),
        }
    }
}
