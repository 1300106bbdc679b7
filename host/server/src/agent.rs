//! Glue between `berth up` and the Docker agents (crate `berth-agent`):
//! they reach the control plane through the in-process implementation of
//! the agent protocol (`control::agents::LocalControlPlane`), and their
//! log-read side is registered by instance for GetTaskLogs.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use berth_agent::{Agent, AgentConfig, AgentHandle};
use berth_core::arn::ArnContext;
use berth_protocol::ControlPlane;

use crate::control::agents::{AgentLogReaders, LocalControlPlane};
use crate::control::liveness::Liveness;

/// `berth up`'s agent options.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The cluster this host's instances join (created if missing).
    pub cluster: String,
    /// The `ecs.availability-zone` of each instance, round robin (at least one).
    pub zones: Vec<String>,
    /// MiB of Docker's memory kept back from tasks.
    pub memory_reserve_mib: i64,
    /// How many agents (container instances) run on the one Docker daemon.
    pub instances: u32,
    /// Image pulls and privileged containers.
    pub runtime: crate::agent_args::AgentRuntimeArgs,
}

/// The running agents: wake them all through `notifier`, stop them with `stop`.
#[derive(Debug)]
pub struct RunningAgents {
    /// The control layer announces placed and stopping tasks here; every
    /// agent is woken (each also looks at the store every 500 ms).
    pub notifier: Arc<tokio::sync::Notify>,
    /// The agents' log-read side, by instance, for the API's GetTaskLogs.
    pub log_readers: Arc<AgentLogReaders>,
    /// The container instance of each agent, for GET /health.
    pub instances: Vec<String>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    fan_out: tokio::task::JoinHandle<()>,
}

impl RunningAgents {
    /// Stops the agent loops (containers keep running; the next `berth up` re-adopts them).
    pub async fn stop(self) {
        self.fan_out.abort();
        self.stop.send_replace(true);
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!("agent task: {e}");
            }
        }
    }
}

/// A zone must be a valid attribute value: 1-255 letters, digits, and
/// `-_./:@` (ECS's rule, minus the spaces a zone never has).
fn check_zones(zones: &[String]) -> anyhow::Result<()> {
    if zones.is_empty() {
        anyhow::bail!("--zones: give at least one zone");
    }
    for z in zones {
        let ok = !z.is_empty()
            && z.len() <= 255
            && z.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c));
        if !ok {
            anyhow::bail!(
                "--zones: `{z}` is not a zone name (1-255 letters, digits, `-`, `_`, `.`, `/`, `:`, `@`)"
            );
        }
    }
    Ok(())
}

/// Starts `opts.instances` agents on this host, each its own container
/// instance of cluster `opts.cluster` (stable ids in `data_dir`), on the
/// current runtime. When no Docker daemon answers they say so and keep
/// retrying, with the instances shown `agentConnected: false`.
pub async fn spawn(
    store: &Arc<berth_store::Store>,
    data_dir: &Path,
    opts: &AgentOptions,
    liveness: &Arc<Liveness>,
) -> anyhow::Result<RunningAgents> {
    if opts.instances == 0 {
        anyhow::bail!("--instances 0: berth up needs at least one container instance");
    }
    check_zones(&opts.zones)?;
    let plane: Arc<dyn ControlPlane> = Arc::new(
        LocalControlPlane::new(Arc::clone(store), ArnContext::default())
            .with_liveness(Arc::clone(liveness)),
    );
    let log_readers = Arc::new(AgentLogReaders::default());
    // A watch, not a Notify: it holds the stop even for an agent not yet polled.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut handles: Vec<AgentHandle> = Vec::new();
    let mut tasks = Vec::new();
    let mut instances = Vec::new();
    for index in 0..opts.instances {
        let mut cfg = AgentConfig::new(opts.cluster.as_str(), data_dir);
        cfg.index = index;
        cfg.share = opts.instances;
        cfg.availability_zone = opts.zones[index as usize % opts.zones.len()].clone();
        cfg.memory_reserve_mib = opts.memory_reserve_mib;
        opts.runtime.apply(&mut cfg);
        let agent = Agent::new(Arc::clone(&plane), cfg).context("starting the Docker agent")?;
        tracing::info!(instance = %agent.instance_arn(), index, "starting the Docker agent");
        log_readers.register(agent.instance_arn(), agent.log_reader());
        instances.push(agent.instance_arn().to_owned());
        handles.push(agent.handle());
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(agent.run(async move {
            // An error means the sender is gone: stop too.
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    // Instances of an earlier run with more agents: nobody serves them now.
    // One that holds no live task is deregistered; one that does keeps
    // berth from starting, since its containers may run on and only its
    // agent would stop them, while the remaining agents would offer the
    // whole host again (an over-commit).
    let mut index = opts.instances;
    let mut busy = Vec::new();
    while Agent::has_instance_id(data_dir, index) {
        let mut cfg = AgentConfig::new(opts.cluster.as_str(), data_dir);
        cfg.index = index;
        let agent = Agent::new(Arc::clone(&plane), cfg)
            .context("reading an earlier agent's instance id")?;
        match agent
            .retire()
            .await
            .context("deregistering an earlier agent's instance")?
        {
            0 => {
                tracing::info!(instance = %agent.instance_arn(), index, "not run now (--instances {}); deregistered", opts.instances)
            }
            n => busy.push(format!("{} ({n} tasks)", agent.instance_arn())),
        }
        index += 1;
    }
    if !busy.is_empty() {
        anyhow::bail!(
            "--instances {}: an earlier run had {index}, and these instances still hold tasks: {}. Start with --instances {index}, \
             stop or drain their tasks (berth instances drain ID; berth stop TASK) until they hold none, then start with fewer",
            opts.instances,
            busy.join(", ")
        );
    }
    // One notification from the control layer wakes every agent: it does not
    // say which instance a task went to, and a spare pass is cheap.
    let notifier = Arc::new(tokio::sync::Notify::new());
    let fan_out = {
        let n = Arc::clone(&notifier);
        tokio::spawn(async move {
            loop {
                n.notified().await;
                for h in &handles {
                    h.wake();
                }
            }
        })
    };
    Ok(RunningAgents {
        notifier,
        log_readers,
        instances,
        stop,
        tasks,
        fan_out,
    })
}
