//! `berth agent --simulate N`: N container instances without Docker, for
//! measuring a server at fleet scale on one machine. Each simulated agent
//! speaks the agent protocol over HTTP as `berth agent` does, with its own
//! connections: it registers, heartbeats every `HEARTBEAT_INTERVAL`,
//! long-polls its manifest, and reports each task it is given RUNNING (and
//! each it is asked to stop STOPPED), a manifest's reports in one message.
//!
//! Every `--report-every` it prints one line of figures: instances
//! registered, tasks seen and reported RUNNING, and the assignment latency
//! (from a task's `createdAt`, stamped before RunTask answers, to the
//! agent holding it: an upper bound of "from RunTask's answer").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_client::{Credentials, RemoteControlPlane, endpoint_host};
use berth_core::arn::ArnContext;
use berth_core::model::{Resource, Task, VersionInfo};
use berth_core::status::{ContainerStatus, DesiredStatus, TaskStatus};
use berth_protocol::{
    Backoff, ContainerStateChange, ControlPlane, HEARTBEAT_INTERVAL, Heartbeat, HostFacts,
    ManifestRequest, RegisterInstance, TaskManifest, TaskStateChange, TaskStateChanges,
    builtin_attributes,
};

/// What `berth agent --simulate` was given.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// `http://HOST:PORT` of each server.
    pub servers: Vec<String>,
    /// The cluster the instances join.
    pub cluster: String,
    /// How many instances.
    pub count: u32,
    /// CPU units of each instance.
    pub cpu: i64,
    /// MiB of memory of each instance.
    pub memory_mib: i64,
    /// Instances are spread over this many zones (`sim-a`, `sim-b`, ...).
    pub zones: u32,
    /// How often to print the figures.
    pub report_every: Duration,
}

/// The figures all simulated agents add to.
#[derive(Debug, Default)]
struct Figures {
    registered: AtomicU64,
    seen: AtomicU64,
    running: AtomicU64,
    stopped: AtomicU64,
    heartbeats: AtomicU64,
    errors: AtomicU64,
    /// Assignment latencies since the last report, in microseconds.
    latencies: Mutex<Vec<u64>>,
    /// Every assignment latency of the run, in microseconds.
    all_latencies: Mutex<Vec<u64>>,
}

impl Figures {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Runs the simulated agents until SIGINT or SIGTERM.
pub fn run(opts: SimulateOptions) -> anyhow::Result<()> {
    let creds = Credentials::from_env().context(
        "berth agent signs its requests with the server's key: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    )?;
    let hosts = opts
        .servers
        .iter()
        .map(|s| endpoint_host(s).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<String>>>()?;
    // Each agent holds a long poll and a connection for its other calls.
    crate::limits::raise_open_file_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let figures = Arc::new(Figures::default());
        let started = Instant::now();
        for i in 0..opts.count {
            let plane = Arc::new(
                RemoteControlPlane::new(hosts.clone(), creds.clone())
                    .map_err(anyhow::Error::msg)?,
            );
            let sim = SimAgent::new(&opts, i, plane, Arc::clone(&figures));
            tokio::spawn(sim.run());
        }
        println!(
            "berth: simulating {} instances in cluster {} against {}",
            opts.count,
            opts.cluster,
            opts.servers.join(",")
        );
        let mut every = tokio::time::interval(opts.report_every);
        every.tick().await;
        loop {
            tokio::select! {
                _ = every.tick() => report(&figures, started),
                r = crate::up::shutdown_signal() => {
                    r?;
                    report(&figures, started);
                    println!("berth: simulation stopped");
                    return Ok(());
                }
            }
        }
    })
}

/// The `p` quantile (0 to 1) of sorted microseconds, in milliseconds.
fn quantile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// Prints one line of figures: the window's latencies (then a new window
/// starts) and the whole run's.
fn report(figures: &Figures, started: Instant) {
    let mut lat = std::mem::take(
        &mut *figures
            .latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    lat.sort_unstable();
    let mut all = figures
        .all_latencies
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    all.extend_from_slice(&lat);
    all.sort_unstable();
    println!(
        "t={:.1}s registered={} tasks_seen={} running={} stopped={} heartbeats={} errors={} \
         window: assigned={} latency_ms_p50={:.1} p99={:.1} max={:.1}; \
         run: assigned={} latency_ms_p50={:.1} p99={:.1} max={:.1}",
        started.elapsed().as_secs_f64(),
        Figures::get(&figures.registered),
        Figures::get(&figures.seen),
        Figures::get(&figures.running),
        Figures::get(&figures.stopped),
        Figures::get(&figures.heartbeats),
        Figures::get(&figures.errors),
        lat.len(),
        quantile_ms(&lat, 0.5),
        quantile_ms(&lat, 0.99),
        quantile_ms(&lat, 1.0),
        all.len(),
        quantile_ms(&all, 0.5),
        quantile_ms(&all, 0.99),
        quantile_ms(&all, 1.0),
    );
}

/// One simulated instance and its agent.
struct SimAgent {
    cluster: String,
    arn: String,
    registration: RegisterInstance,
    plane: Arc<RemoteControlPlane>,
    figures: Arc<Figures>,
    /// What this agent last reported of each task it holds.
    reported: HashMap<String, TaskStatus>,
    /// Agents of a fleet do not start (nor heartbeat) in the same
    /// millisecond: they are spread over one heartbeat interval.
    start_after: Duration,
}

impl SimAgent {
    fn new(
        opts: &SimulateOptions,
        i: u32,
        plane: Arc<RemoteControlPlane>,
        figures: Arc<Figures>,
    ) -> Self {
        let id = format!("sim{i:06}");
        let arn = ArnContext::default().container_instance(&opts.cluster, &id);
        let zone = format!(
            "sim-{}",
            char::from(b'a' + (i % opts.zones.clamp(1, 26)) as u8)
        );
        let facts = HostFacts {
            availability_zone: zone,
            instance_type: "sim".to_owned(),
            ..HostFacts::assumed()
        };
        let registration = RegisterInstance {
            cluster: opts.cluster.clone(),
            container_instance_arn: arn.clone(),
            ec2_instance_id: id,
            agent_connected: true,
            total_resources: vec![
                Resource::integer("CPU", opts.cpu),
                Resource::integer("MEMORY", opts.memory_mib),
                Resource::string_set("PORTS", Vec::new()),
                Resource::string_set("PORTS_UDP", Vec::new()),
            ],
            attributes: builtin_attributes(&facts),
            version_info: VersionInfo {
                agent_version: Some(format!("{}-simulated", env!("CARGO_PKG_VERSION"))),
                agent_hash: None,
                docker_version: None,
            },
        };
        SimAgent {
            cluster: opts.cluster.clone(),
            arn,
            registration,
            plane,
            figures,
            reported: HashMap::new(),
            start_after: HEARTBEAT_INTERVAL * i / opts.count.max(1),
        }
    }

    /// Registers (retrying with back-off), then heartbeats and follows the
    /// manifest, forever.
    async fn run(mut self) {
        tokio::time::sleep(self.start_after).await;
        let mut backoff = Backoff::default();
        while let Err(e) = self
            .plane
            .register_instance(self.registration.clone())
            .await
        {
            Figures::add(&self.figures.errors, 1);
            tracing::debug!(instance = %self.arn, "registering: {e}");
            tokio::time::sleep(backoff.next_delay()).await;
        }
        Figures::add(&self.figures.registered, 1);
        tokio::spawn(heartbeat(
            Arc::clone(&self.plane),
            self.registration.clone(),
            Arc::clone(&self.figures),
        ));
        self.follow_manifest().await;
    }

    /// Long-polls the manifest and reports what each new one asks for.
    async fn follow_manifest(&mut self) {
        let mut known = None;
        let mut backoff = Backoff::default();
        loop {
            let req = ManifestRequest {
                cluster: self.cluster.clone(),
                container_instance_arn: self.arn.clone(),
                known_sequence: known,
            };
            let manifest = match self.plane.task_manifest(req).await {
                Ok(m) => m,
                Err(e) => {
                    Figures::add(&self.figures.errors, 1);
                    tracing::debug!(instance = %self.arn, "manifest: {e}");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            if known == Some(manifest.sequence) {
                continue;
            }
            let changes = self.changes_for(&manifest);
            if !changes.is_empty() {
                let n = changes.len();
                let batch = TaskStateChanges { changes };
                if let Err(e) = self.plane.submit_task_state_changes(batch).await {
                    // Not acknowledged: asked again on the next manifest
                    // (answered at once, as the sequence is not known yet).
                    Figures::add(&self.figures.errors, 1);
                    tracing::debug!(instance = %self.arn, "reporting {n} tasks: {e}");
                    self.reported.clear();
                    tokio::time::sleep(backoff.next_delay()).await;
                    known = None;
                    continue;
                }
            }
            backoff.reset();
            known = Some(manifest.sequence);
        }
    }

    /// The reports a manifest calls for: RUNNING for a task to run that is
    /// PENDING, STOPPED for one asked to stop; each once.
    fn changes_for(&mut self, manifest: &TaskManifest) -> Vec<TaskStateChange> {
        let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        let mut changes = Vec::new();
        let mut latencies = Vec::new();
        for assigned in &manifest.tasks {
            let task = &assigned.task;
            let want = match (task.desired_status, task.last_status) {
                (_, TaskStatus::Stopped) => None,
                (DesiredStatus::Stopped, _) => Some(TaskStatus::Stopped),
                (_, TaskStatus::Pending) => Some(TaskStatus::Running),
                _ => None,
            };
            let Some(want) = want else { continue };
            let before = self.reported.insert(task.task_arn.clone(), want);
            if before == Some(want) {
                continue;
            }
            if before.is_none() && want == TaskStatus::Running {
                Figures::add(&self.figures.seen, 1);
                if let Some(created) = task.created_at {
                    latencies.push(((now - created).max(0.0) * 1e6) as u64);
                }
            }
            changes.push(state_change(&self.cluster, task, want, now));
        }
        self.reported
            .retain(|arn, _| manifest.tasks.iter().any(|t| &t.task.task_arn == arn));
        let running = changes
            .iter()
            .filter(|c| c.status == Some(TaskStatus::Running))
            .count() as u64;
        Figures::add(&self.figures.running, running);
        Figures::add(&self.figures.stopped, changes.len() as u64 - running);
        if !latencies.is_empty() {
            self.figures
                .latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(latencies);
        }
        changes
    }
}

/// A report that `task` is now `status`, with every container alike.
fn state_change(cluster: &str, task: &Task, status: TaskStatus, at: f64) -> TaskStateChange {
    let (container_status, exit_code) = match status {
        TaskStatus::Stopped => (ContainerStatus::Stopped, Some(0)),
        _ => (ContainerStatus::Running, None),
    };
    TaskStateChange {
        cluster: cluster.to_owned(),
        task: task.task_arn.clone(),
        status: Some(status),
        containers: task
            .containers
            .iter()
            .map(|c| ContainerStateChange {
                container_name: c.name.clone(),
                runtime_id: Some(format!("sim-{}", c.name)),
                status: Some(container_status),
                exit_code,
                ..ContainerStateChange::default()
            })
            .collect(),
        at,
        ..TaskStateChange::default()
    }
}

/// Heartbeats every [`HEARTBEAT_INTERVAL`]; registers again when the
/// server no longer knows the instance.
async fn heartbeat(
    plane: Arc<RemoteControlPlane>,
    registration: RegisterInstance,
    figures: Arc<Figures>,
) {
    let mut every = tokio::time::interval(HEARTBEAT_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let arn = &registration.container_instance_arn;
    loop {
        every.tick().await;
        let hb = Heartbeat {
            cluster: registration.cluster.clone(),
            container_instance_arn: arn.clone(),
            agent_connected: true,
        };
        match plane.heartbeat(hb).await {
            Ok(ack) if ack.registered => Figures::add(&figures.heartbeats, 1),
            Ok(_) => {
                if let Err(e) = plane.register_instance(registration.clone()).await {
                    Figures::add(&figures.errors, 1);
                    tracing::debug!(instance = %arn, "registering again: {e}");
                }
            }
            Err(e) => {
                Figures::add(&figures.errors, 1);
                tracing::debug!(instance = %arn, "heartbeat: {e}");
            }
        }
    }
}
