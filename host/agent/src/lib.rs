//! berth's Docker agent: the only crate that talks to Docker (through bollard).
//!
//! An [`Agent`] registers this host as a container instance of a cluster and
//! converges Docker to the tasks the control plane assigns to that instance:
//! it creates and starts their containers, follows them through Docker's
//! event stream and a reconcile timer, and stops and removes them when a
//! task's desired status becomes STOPPED. It reaches the control plane only
//! through `berth_protocol::ControlPlane` (registration, heartbeat, the task
//! manifest, task state changes) and writes no store itself; it answers log
//! reads as a `berth_protocol::TaskLogReader` ([`Agent::log_reader`]).
//!
//! Containers carry labels (`berth.task-arn`, `berth.cluster`,
//! `berth.container-name`, `berth.container-instance`), so after any restart
//! the agent re-adopts them from Docker alone.

mod container_config;
mod converge;
mod docker;
mod docker_config;
mod error;
mod images;
pub mod logs;
mod register;
mod session;
mod start;
mod task_volumes;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::arn::ArnContext;
use berth_core::model::Attribute;
use berth_protocol::{Backoff, ControlPlane, TaskLogReader};
use tokio::sync::Notify;

pub use error::AgentError;
pub use images::ImagePullBehavior;

/// Label naming the task a container belongs to.
pub const LABEL_TASK_ARN: &str = "berth.task-arn";
/// Label naming the cluster of the task.
pub const LABEL_CLUSTER: &str = "berth.cluster";
/// Label naming the container definition the container runs.
pub const LABEL_CONTAINER_NAME: &str = "berth.container-name";
/// Label naming the container instance (agent) that owns the container, so
/// several agents sharing one daemon (tests) never touch each other's.
pub const LABEL_INSTANCE: &str = "berth.container-instance";

/// How often a connected agent heartbeats by default.
pub const HEARTBEAT_INTERVAL: Duration = berth_protocol::HEARTBEAT_INTERVAL;

/// How the agent registers and behaves.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Cluster name to register in.
    pub cluster: String,
    /// Where the stable instance id is kept (`agent-instance-id`, or
    /// `agent-instance-id-<index>` for the agents after the first).
    pub data_dir: PathBuf,
    /// Which of the agents sharing this data directory this one is (0 for
    /// the first); each index is its own container instance.
    pub index: u32,
    /// How many agents share this Docker daemon: each offers this share of
    /// the engine's CPU and memory, so together they never offer more than
    /// the host has.
    pub share: u32,
    /// Region and account for the ARNs the agent mints.
    pub arn: ArnContext,
    /// `ecs.availability-zone` attribute.
    pub availability_zone: String,
    /// `ecs.instance-type` attribute.
    pub instance_type: String,
    /// Custom attributes of this host (`--attribute K=V`), registered with
    /// the built-in ones.
    pub attributes: Vec<Attribute>,
    /// The Docker daemon (`unix:///PATH` or `tcp://HOST:PORT`); None: the
    /// local one (`DOCKER_HOST`, else the default socket).
    pub docker_host: Option<String>,
    /// How often the connected agent tells the control plane it is alive.
    pub heartbeat_interval: Duration,
    /// MiB of the engine's memory not offered to tasks.
    pub memory_reserve_mib: i64,
    /// Host ports never offered to tasks (ECS reserves 22, 2375, 2376, 51678, 51679).
    pub reserved_ports: Vec<u16>,
    /// How often the agent reconciles even when no Docker event or wake-up came.
    pub reconcile_interval: Duration,
    /// SIGTERM-to-SIGKILL grace when a container definition sets no `stopTimeout` (ECS: 30 s).
    pub default_stop_timeout: Duration,
    /// When images are pulled (`--image-pull-behavior`).
    pub image_pull_behavior: ImagePullBehavior,
    /// How long one image's pull may take before the task fails (`--image-pull-timeout`).
    pub image_pull_timeout: Duration,
    /// Whether privileged containers run here (`--allow-privileged`): the
    /// instance then registers the attribute `ecs.capability.privileged-container`.
    pub allow_privileged: bool,
}

/// How long a pull may take by default: big images on slow links.
pub const DEFAULT_IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(1800);

impl AgentConfig {
    /// Defaults for `cluster`, keeping the instance id in `data_dir`.
    pub fn new(cluster: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            cluster: cluster.into(),
            data_dir: data_dir.into(),
            index: 0,
            share: 1,
            arn: ArnContext::default(),
            availability_zone: "local".to_owned(),
            instance_type: "local".to_owned(),
            attributes: Vec::new(),
            docker_host: None,
            heartbeat_interval: HEARTBEAT_INTERVAL,
            memory_reserve_mib: 0,
            reserved_ports: vec![22, 2375, 2376, 51678, 51679],
            reconcile_interval: Duration::from_millis(500),
            default_stop_timeout: Duration::from_secs(30),
            image_pull_behavior: ImagePullBehavior::default(),
            image_pull_timeout: DEFAULT_IMAGE_PULL_TIMEOUT,
            allow_privileged: false,
        }
    }
}

/// A cheap handle to wake the agent, e.g. after RunTask or StopTask wrote the store.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    wake: Arc<Notify>,
    instance_arn: String,
}

impl AgentHandle {
    /// Makes the agent reconcile now instead of at its next timer tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
    /// The notification [`wake`](Self::wake) fires, for a caller that
    /// announces changes on a `Notify` of its own choosing.
    pub fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }
    /// The ARN of the container instance this agent registered.
    pub fn instance_arn(&self) -> &str {
        &self.instance_arn
    }
}

/// The agent of one host. See the crate docs.
#[derive(Debug, Clone)]
pub struct Agent {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    /// How the agent reaches the control plane.
    pub(crate) plane: Arc<dyn ControlPlane>,
    pub(crate) cfg: AgentConfig,
    pub(crate) instance_id: String,
    pub(crate) instance_arn: String,
    pub(crate) cluster_arn: String,
    pub(crate) wake: Arc<Notify>,
    /// Tasks with a start or stop job in flight; the reconciler leaves them alone.
    pub(crate) busy: Mutex<HashSet<String>>,
    /// Images this agent pulled since it started (`once`).
    pub(crate) pulled: Mutex<HashSet<String>>,
}

impl Agent {
    /// An agent reporting to `plane`; reads (or creates) the stable instance
    /// id in the data directory, so a restart re-registers the same instance.
    pub fn new(plane: Arc<dyn ControlPlane>, cfg: AgentConfig) -> Result<Agent, AgentError> {
        let instance_id = register::instance_id(&cfg.data_dir, cfg.index)?;
        let instance_arn = cfg.arn.container_instance(&cfg.cluster, &instance_id);
        let cluster_arn = cfg.arn.cluster(&cfg.cluster);
        Ok(Agent {
            inner: Arc::new(Inner {
                plane,
                cfg,
                instance_id,
                instance_arn,
                cluster_arn,
                wake: Arc::new(Notify::new()),
                busy: Mutex::new(HashSet::new()),
                pulled: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// A handle that wakes this agent.
    pub fn handle(&self) -> AgentHandle {
        AgentHandle {
            wake: Arc::clone(&self.inner.wake),
            instance_arn: self.inner.instance_arn.clone(),
        }
    }

    /// Shows this agent's instance `agentConnected: false` without running
    /// it, so nothing is placed on it: for an instance of an earlier
    /// `berth up` with more agents than this one runs.
    pub async fn set_disconnected(&self) -> Result<(), AgentError> {
        register::set_disconnected(&self.inner).await
    }

    /// Retires this agent's instance without running it: deregistered
    /// (INACTIVE) and its id forgotten when it holds no task that is not
    /// STOPPED; otherwise left as it is. Returns how many such tasks it holds.
    pub async fn retire(&self) -> Result<u32, AgentError> {
        register::retire(&self.inner).await
    }

    /// Whether agent `index` has an instance id in `data_dir` (it ran before).
    pub fn has_instance_id(data_dir: &std::path::Path, index: u32) -> bool {
        register::id_file(data_dir, index).exists()
    }

    /// This agent's container instance ARN.
    pub fn instance_arn(&self) -> &str {
        &self.inner.instance_arn
    }

    /// The cluster ARN this agent registers in.
    pub fn cluster_arn(&self) -> &str {
        &self.inner.cluster_arn
    }

    /// This agent's side of log reads: the server asks it for the logs of
    /// the tasks of its instance (read from this host's Docker).
    pub fn log_reader(&self) -> Arc<dyn TaskLogReader> {
        Arc::new(logs::DockerLogReader {
            docker_host: self.inner.cfg.docker_host.clone(),
        })
    }

    /// Runs until `shutdown` resolves: connects to Docker, registers, and
    /// converges on every Docker event, wake-up, manifest change and timer
    /// tick. When Docker does not answer the instance is shown
    /// `agentConnected: false`; when Docker or the control plane is lost the
    /// agent reconnects with back-off (250 ms doubling to 2 min, full
    /// jitter; reset once registered) and, before starting anything, stops
    /// what the control plane no longer wants here ([`Agent::reconcile_after_connect`]).
    /// Containers keep running when the agent stops; the next agent re-adopts them.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            () = self.run_forever() => {}
        }
    }

    async fn run_forever(&self) {
        let mut backoff = Backoff::default();
        let mut said_unreachable = false;
        loop {
            let docker = match docker::connect(self.inner.cfg.docker_host.as_deref()).await {
                Ok(d) => d,
                Err(e) => {
                    if !said_unreachable {
                        tracing::warn!(
                            "no Docker daemon answers ({e}); the instance stays agentConnected=false, retrying with back-off"
                        );
                        said_unreachable = true;
                    }
                    if let Err(e) = register::set_disconnected(&self.inner).await {
                        tracing::warn!("marking the instance disconnected: {e}");
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            said_unreachable = false;
            match self.connected(&docker, &mut backoff).await {
                Ok(()) => {}
                Err(e @ AgentError::Control(_)) => {
                    tracing::warn!("{e}; reconnecting with back-off");
                }
                Err(e) => {
                    tracing::warn!("agent lost Docker: {e}");
                    if let Err(e) = register::set_disconnected(&self.inner).await {
                        tracing::warn!("marking the instance disconnected: {e}");
                    }
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Registers, reconciles against the manifest, then converges until
    /// Docker stops answering or the control plane cannot be reached.
    async fn connected(
        &self,
        docker: &bollard::Docker,
        backoff: &mut Backoff,
    ) -> Result<(), AgentError> {
        register::register(&self.inner, docker).await?;
        backoff.reset();
        tracing::info!(instance = %self.inner.instance_arn, "agent registered");
        converge::reconcile(&self.inner, docker, converge::Pass::Reconnect).await?;
        let _events = session::AbortOnDrop(tokio::spawn(docker::follow_events(
            docker.clone(),
            self.inner.instance_arn.clone(),
            Arc::clone(&self.inner.wake),
        )));
        let _manifest = session::AbortOnDrop(tokio::spawn(session::watch_manifest(Arc::clone(
            &self.inner,
        ))));
        session::converge_until_lost(&self.inner, docker).await
    }

    /// Connects to Docker and registers once (for tests and tools that drive
    /// [`Agent::reconcile_once`] themselves).
    pub async fn register(&self) -> Result<(), AgentError> {
        let docker = docker::connect(self.inner.cfg.docker_host.as_deref()).await?;
        register::register(&self.inner, &docker).await
    }

    /// The pass an agent makes when it (re)connects, before it starts
    /// anything: removes the containers of tasks the control plane says are
    /// stopped or no longer lists, stops (and waits for) the tasks it asks
    /// to stop, and adopts the RUNNING ones. Tasks to start wait for the
    /// next [`Agent::reconcile_once`].
    pub async fn reconcile_after_connect(&self) -> Result<(), AgentError> {
        let docker = docker::connect(self.inner.cfg.docker_host.as_deref()).await?;
        if let Err(e) = docker.ping().await {
            return Err(AgentError::Docker(e));
        }
        converge::reconcile(&self.inner, &docker, converge::Pass::Reconnect).await
    }

    /// One reconcile pass; start and stop work it decides on runs in spawned
    /// jobs, so call it repeatedly to make progress.
    pub async fn reconcile_once(&self) -> Result<(), AgentError> {
        let docker = docker::connect(self.inner.cfg.docker_host.as_deref()).await?;
        session::reconcile_with(&self.inner, &docker).await
    }
}

/// Seconds since the Unix epoch, as ECS timestamps are.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
