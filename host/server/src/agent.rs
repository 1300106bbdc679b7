//! Glue between `berth up` and the Docker agent (crate `berth-agent`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use berth_agent::{Agent, AgentConfig, AgentHandle};

/// `berth up`'s agent options.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `ecs.availability-zone` of this host.
    pub availability_zone: String,
    /// MiB of Docker's memory kept back from tasks.
    pub memory_reserve_mib: i64,
}

/// A running agent: wake it with `handle`, stop it with `stop`.
#[derive(Debug)]
pub struct RunningAgent {
    /// Wakes the agent: the control layer announces placed and stopping
    /// tasks on it (the agent also looks at the store every 500 ms).
    pub handle: AgentHandle,
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningAgent {
    /// Stops the agent loop (containers keep running; the next `berth up` re-adopts them).
    pub async fn stop(self) {
        self.stop.notify_one();
        if let Err(e) = self.task.await {
            tracing::warn!("agent task: {e}");
        }
    }
}

/// Starts the agent of this host, registered in the `default` cluster, on the
/// current runtime. When no Docker daemon answers it says so and keeps
/// retrying, with the instance shown `agentConnected: false`.
pub fn spawn(store: &berth_store::Store, data_dir: &Path, opts: &AgentOptions) -> anyhow::Result<RunningAgent> {
    let mut cfg = AgentConfig::new("default", data_dir);
    cfg.availability_zone = opts.availability_zone.clone();
    cfg.memory_reserve_mib = opts.memory_reserve_mib;
    berth_agent::ensure_cluster(store, &cfg.arn, &cfg.cluster).context("creating the default cluster")?;
    let agent = Agent::new(store.clone(), cfg).context("starting the Docker agent")?;
    tracing::info!(instance = %agent.instance_arn(), "starting the Docker agent");
    let handle = agent.handle();
    let stop = Arc::new(tokio::sync::Notify::new());
    let s = Arc::clone(&stop);
    let task = tokio::spawn(agent.run(async move { s.notified().await }));
    Ok(RunningAgent { handle, stop, task })
}
