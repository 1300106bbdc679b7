//! `berth up`: start everything on one machine. This is where the server is
//! composed: the store, the policy registry, the control plane, the
//! schedulers and the agents are built here and handed to what runs them;
//! the API only serves what it is given.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_core::arn::ArnContext;

use crate::api::{self, Api};
use crate::control::Control;
use crate::control::health::Health;
use crate::control::liveness::Liveness;
use crate::control::owner::Owner;
use crate::credentials::{self, Credentials, Source};
use crate::obs_args::ObsArgs;
use crate::store_args::StoreArgs;
use crate::store_cmd::StoreLocation;

/// `$XDG_DATA_HOME/berth`, else `~/.local/share/berth`, else `./berth-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("berth");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/share/berth"),
        None => PathBuf::from("berth-data"),
    }
}

/// Creates `data_dir` if needed, private to its owner: it holds the store
/// (task definitions' environment) and the credentials file (the secret key).
pub fn private_dir(data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making data directory {} private", data_dir.display()))
}

/// Opens (or creates) the store at `location` and reports it; None when
/// `check` asks to stop there. Over etcd, also this server's ownership of
/// the work that needs one owner.
fn open_store(
    location: &StoreLocation,
    data_dir: &Path,
    opts: StoreArgs,
    check: bool,
) -> anyhow::Result<Option<(Arc<berth_store::Store>, Owner)>> {
    private_dir(data_dir)?;
    let (store, etcd) = crate::store_cmd::open(location, data_dir, opts)?;
    let info = store.info().context("reading the store")?;
    println!("berth {}: {info}", env!("CARGO_PKG_VERSION"));
    if check {
        return Ok(None);
    }
    let owner = match etcd {
        None => Owner::Alone,
        Some(backend) => {
            let id = format!("server-{}", uuid::Uuid::new_v4().simple());
            println!("berth: {id} shares the store; work with one owner goes through etcd leases");
            Owner::Leases(berth_store_etcd::lease::Ownership::start(
                &backend,
                &id,
                berth_store_etcd::lease::DEFAULT_TTL,
            ))
        }
    };
    Ok(Some((Arc::new(store), owner)))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// `berth up`: opens (or creates) the store in `data_dir` and reports it;
/// then runs the server with this host's agents in process until SIGINT or
/// SIGTERM, unless `check` asks to exit at once.
// One parameter per group of `berth up`'s flags, as main.rs reads them.
#[allow(clippy::too_many_arguments)]
pub fn run(
    data_dir: &Path,
    opts: StoreArgs,
    check: bool,
    listen: SocketAddr,
    agent: &crate::agent::AgentOptions,
    liveness: berth_core::liveness::Timing,
    limits: api::Limits,
    obs: ObsArgs,
) -> anyhow::Result<()> {
    let Some((store, owner)) = open_store(&StoreLocation::DataDir, data_dir, opts, check)? else {
        return Ok(());
    };
    let rt = runtime()?;
    // Who was heard from when: the agents tell it, the liveness loop judges.
    let liveness = Arc::new(Liveness::new(liveness));
    // The Docker agents of this host; without a daemon they keep retrying.
    let agents = rt.block_on(crate::agent::spawn(&store, data_dir, agent, &liveness))?;
    // The control layer wakes the agents when it places or stops tasks.
    let server = Server {
        store: Arc::clone(&store),
        data_dir,
        tasks_changed: Arc::clone(&agents.notifier),
        log_readers: Arc::clone(&agents.log_readers),
        stopped_task_ttl: opts.stopped_task_ttl(),
        liveness,
        serves_remote_agents: false,
        limits,
        local_agents: agents.instances.clone(),
        obs,
        owner,
    };
    rt.block_on(server.run(listen, async {
        if let Err(e) = shutdown_signal().await {
            tracing::error!(error = %e, "waiting for a signal failed; stopping");
        }
    }))?;
    rt.block_on(agents.stop());
    drop(store);
    println!("berth: stopped");
    Ok(())
}

/// `berth server`: the control plane (API, schedulers, policies, the agent
/// protocol's endpoints) without an agent of its own; `berth agent` on each
/// host joins it over HTTP. Runs until SIGINT or SIGTERM.
pub fn run_server(
    location: &StoreLocation,
    data_dir: &Path,
    opts: StoreArgs,
    listen: SocketAddr,
    liveness: berth_core::liveness::Timing,
    limits: api::Limits,
    obs: ObsArgs,
) -> anyhow::Result<()> {
    let Some((store, owner)) = open_store(location, data_dir, opts, false)? else {
        return Ok(());
    };
    let shared = matches!(owner, Owner::Leases(_));
    let rt = runtime()?;
    let server = Server {
        store: Arc::clone(&store),
        data_dir,
        // Remote agents follow their manifests by long poll (woken by the
        // store's watch), so nobody listens here.
        tasks_changed: Arc::new(tokio::sync::Notify::new()),
        log_readers: Arc::default(),
        stopped_task_ttl: opts.stopped_task_ttl(),
        // The remote agents' messages, through the API's agent endpoints.
        liveness: Arc::new(Liveness::new(liveness).shared(shared)),
        serves_remote_agents: true,
        limits,
        // Remote agents are the fleet's, not this process's health.
        local_agents: Vec::new(),
        obs,
        owner,
    };
    rt.block_on(server.run(listen, async {
        if let Err(e) = shutdown_signal().await {
            tracing::error!(error = %e, "waiting for a signal failed; stopping");
        }
    }))?;
    drop(store);
    println!("berth: stopped");
    Ok(())
}

/// What the server is built from; [`Server::run`] builds and runs it.
struct Server<'a> {
    store: Arc<berth_store::Store>,
    data_dir: &'a Path,
    tasks_changed: Arc<tokio::sync::Notify>,
    log_readers: Arc<crate::control::agents::AgentLogReaders>,
    stopped_task_ttl: Duration,
    liveness: Arc<Liveness>,
    /// `berth server`: say how agents join.
    serves_remote_agents: bool,
    limits: api::Limits,
    /// The container instances of this process's agents (GET /health).
    local_agents: Vec<String>,
    /// `--metrics-listen`, `--audit-retention`.
    obs: ObsArgs,
    /// Which work that needs one owner this server does.
    owner: Owner,
}

impl Server<'_> {
    /// Builds the control plane (credentials, the policy registry, the
    /// `default` cluster), serves the API on `listen` with the schedulers
    /// beside it, until `shutdown` resolves.
    async fn run(
        self,
        listen: SocketAddr,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (credentials, source) = credentials::load(self.data_dir)?;
        // `berth down` (Shutdown through the API) ends the serving as a
        // signal does, and may ask for this host's tasks to be stopped.
        let (asked, mut down) = tokio::sync::watch::channel(None);
        let control = self.control(asked).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener
            .local_addr()
            .context("reading the listening address")?;
        // Poll the shutdown future once so its signal handlers are installed
        // before the "running" line: whoever reads it may signal at once.
        let mut shutdown = Box::pin(shutdown);
        if poll_once(shutdown.as_mut()).await {
            return Ok(());
        }
        let metrics = self.spawn_metrics(&control).await?;
        announce(
            addr,
            &credentials,
            source,
            self.data_dir,
            &control.arn().region,
        );
        if self.serves_remote_agents {
            println!(
                "berth: hosts join with (the same two variables set): berth agent --server http://{addr} [--cluster C]"
            );
            let _ = std::io::stdout().flush();
        }
        // Taken by whichever stops them first: `berth down` (before its
        // tasks are stopped, so no scheduler replaces them) or the end of
        // serving.
        let schedulers = Arc::new(tokio::sync::Mutex::new(Some(Schedulers::spawn(
            &control,
            &self.liveness,
            &self.store,
        ))));
        // `berth down` with its tasks: the schedulers stop, then this host's
        // tasks, while the API still answers (so `berth down`, polling
        // until it does not, returns once they are stopped); then serving ends.
        let shutdown = {
            let schedulers = Arc::clone(&schedulers);
            let control = Arc::clone(&control);
            let instances = self.local_agents.clone();
            async move {
                tokio::select! {
                    () = shutdown => {}
                    _ = down.wait_for(Option::is_some) => {}
                }
                if *down.borrow() == Some(true) {
                    if let Some(s) = schedulers.lock().await.take() {
                        s.stop().await;
                    }
                    stop_local_tasks(&control, &instances).await;
                }
            }
        };
        let health = Arc::new(Health::new(
            Arc::clone(&self.store),
            Arc::clone(&self.liveness),
            Arc::clone(control.beats()),
            self.local_agents.clone(),
        ));
        let api = Arc::new(
            Api::new(Arc::clone(&control), credentials)
                .with_limits(self.limits.clone())
                .with_health(health),
        );
        let streams = Arc::clone(&api);
        let shutdown = async move {
            shutdown.await;
            streams.stop_streams();
        };
        let served = api::serve(api::router(api), listener, &self.limits, shutdown).await;
        if let Some((stop, task)) = metrics {
            let _ = stop.send(());
            let _ = task.await;
        }
        if let Some(s) = schedulers.lock().await.take() {
            s.stop().await;
        }
        served
    }

    /// `--metrics-listen`: serves GET /metrics beside the API (until the
    /// sender is used or dropped), and says where.
    async fn spawn_metrics(
        &self,
        control: &Arc<Control>,
    ) -> anyhow::Result<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
    > {
        let Some(listen) = self.obs.metrics_listen else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening for metrics on {listen}"))?;
        let addr = listener
            .local_addr()
            .context("reading the metrics address")?;
        println!("berth: metrics on http://{addr}/metrics");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(api::serve_metrics(Arc::clone(control), listener, async {
            let _ = stopped.await;
        }));
        let task = tokio::spawn(async move {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "serving metrics failed"),
                Err(e) => tracing::error!(error = %e, "the metrics server panicked"),
            }
        });
        Ok(Some((stop, task)))
    }

    /// The control plane over the store, with the installed policies, and
    /// the `default` cluster made sure of.
    async fn control(
        &self,
        asked: crate::control::down::ShutdownAsked,
    ) -> anyhow::Result<Arc<Control>> {
        // The policy registry loads (and compiles) every installed policy.
        let policies = {
            let store = Arc::clone(&self.store);
            let config = berth_policy::HostConfig {
                cache_dir: Some(self.data_dir.join("policy-cache")),
                ..berth_policy::HostConfig::default()
            };
            tokio::task::spawn_blocking(move || -> anyhow::Result<berth_policy::Registry> {
                let host = Arc::new(
                    berth_policy::PolicyHost::new(config).context("starting the policy engine")?,
                );
                berth_policy::Registry::open(host, (*store).clone())
                    .context("loading the installed placement policies")
            })
            .await
            .context("loading the placement policies")??
        };
        let control = Arc::new(
            Control::new(Arc::clone(&self.store), ArnContext::default())
                .with_tasks_changed(Arc::clone(&self.tasks_changed))
                .with_log_readers(Arc::clone(&self.log_readers))
                .with_policies(Arc::new(policies))
                .with_stopped_task_ttl(self.stopped_task_ttl)
                .with_audit_retention(self.obs.audit_retention)
                .with_liveness(Arc::clone(&self.liveness))
                .with_owner(self.owner.clone())
                .with_shutdown(asked),
        );
        let c = Arc::clone(&control);
        tokio::task::spawn_blocking(move || c.ensure_default_cluster())
            .await
            .context("creating the default cluster")?
            .context("creating the default cluster")?;
        Ok(control)
    }
}

/// The "running" lines: where the API is, and the key to call it with.
/// The secret is printed only when berth created it; one from the
/// environment or the file is only pointed at, so a log of every start
/// does not hold it.
fn announce(
    addr: SocketAddr,
    credentials: &Credentials,
    source: Source,
    data_dir: &Path,
    region: &str,
) {
    println!("berth: running; ECS API on http://{addr}; stop with Ctrl-C");
    let file = data_dir.join(berth_client::CREDENTIALS_FILE);
    let (from, secret) = match source {
        Source::Environment => (
            "from BERTH_ACCESS_KEY_ID and BERTH_SECRET_ACCESS_KEY".to_owned(),
            "  export AWS_SECRET_ACCESS_KEY=\"$BERTH_SECRET_ACCESS_KEY\"".to_owned(),
        ),
        Source::Created => (
            format!("created in {}", file.display()),
            format!(
                "  export AWS_SECRET_ACCESS_KEY={}",
                credentials.secret_access_key
            ),
        ),
        Source::File => (
            format!("from {}", file.display()),
            format!(
                "  (the secret access key is secret_access_key in {}; berth prints it only when it creates it)",
                file.display()
            ),
        ),
    };
    println!("berth: credentials {from}; to use the AWS CLI or boto3:");
    println!("  export AWS_ACCESS_KEY_ID={}", credentials.access_key_id);
    println!("{secret}");
    println!("  export AWS_DEFAULT_REGION={region}");
    println!("  aws ecs --endpoint-url http://{addr} list-clusters");
    let _ = std::io::stdout().flush();
}

/// The batch and service schedulers and the liveness loop, running until
/// [`Schedulers::stop`].
struct Schedulers {
    stop: tokio::sync::watch::Sender<bool>,
    batch: tokio::task::JoinHandle<()>,
    services: tokio::task::JoinHandle<()>,
    liveness: tokio::task::JoinHandle<()>,
    policy_stats: tokio::task::JoinHandle<()>,
}

/// `berth down`: asks every task of this host's agents to stop, again
/// while any is left (a RunTask may land meanwhile), and waits (the agents,
/// still running, stop and remove their containers) until none is left or
/// [`DOWN_WAIT`] has passed.
async fn stop_local_tasks(control: &Arc<Control>, instances: &[String]) {
    let deadline = tokio::time::Instant::now() + DOWN_WAIT;
    let mut told = false;
    loop {
        let (c, i) = (Arc::clone(control), instances.to_vec());
        let asked = tokio::task::spawn_blocking(move || c.stop_instance_tasks(&i)).await;
        match asked {
            Ok(Ok(n)) if !told => {
                println!("berth: stopping {n} task(s) of this host");
                let _ = std::io::stdout().flush();
                told = true;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "stopping this host's tasks failed"),
            Err(e) => tracing::error!(error = %e, "stopping this host's tasks panicked"),
        }
        let (c, i) = (Arc::clone(control), instances.to_vec());
        match tokio::task::spawn_blocking(move || c.live_tasks_on(&i)).await {
            Ok(Ok(t)) if t.is_empty() => return,
            Ok(Ok(t)) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(
                    left = t.len(),
                    "tasks still stopping after {}s; leaving them to the next start",
                    DOWN_WAIT.as_secs()
                );
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading this host's tasks failed");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading this host's tasks panicked");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How long `berth down` waits for this host's tasks to stop: a container's
/// `stopTimeout` is at most 120 s (ECS's bound), and tasks stop at once.
const DOWN_WAIT: Duration = Duration::from_secs(150);

/// How often the policies' statistics are written to the store: decisions
/// only count in memory, so a crash loses at most this much of them.
const POLICY_STATS_FLUSH: Duration = Duration::from_secs(5);

/// Writes the policies' statistics every [`POLICY_STATS_FLUSH`], and once
/// more when stopped.
async fn flush_policy_stats(control: Arc<Control>, stopped: impl Future<Output = ()>) {
    let flush = || {
        let c = Arc::clone(&control);
        async move {
            if let Err(e) = tokio::task::spawn_blocking(move || c.flush_policy_stats()).await {
                tracing::error!(error = %e, "writing the policies' statistics panicked");
            }
        }
    };
    let mut stopped = std::pin::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => break,
            () = tokio::time::sleep(POLICY_STATS_FLUSH) => flush().await,
        }
    }
    flush().await;
}

impl Schedulers {
    fn spawn(
        control: &Arc<Control>,
        liveness: &Arc<Liveness>,
        store: &Arc<berth_store::Store>,
    ) -> Self {
        // A watch, not a Notify: a scheduler busy when stop is sent still
        // sees it when it next waits.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let batch = tokio::spawn(crate::control::scheduler::run(
            Arc::clone(control),
            until_stopped(),
        ));
        let services = tokio::spawn(crate::control::service_scheduler::run(
            Arc::clone(control),
            until_stopped(),
        ));
        let liveness = tokio::spawn(crate::control::liveness::run(
            Arc::clone(liveness),
            Arc::clone(store),
            Arc::clone(control.beats()),
            control.owner().clone(),
            until_stopped(),
        ));
        let policy_stats = tokio::spawn(flush_policy_stats(Arc::clone(control), until_stopped()));
        Schedulers {
            stop,
            batch,
            services,
            liveness,
            policy_stats,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.liveness.await {
            tracing::error!(error = %e, "the liveness loop panicked");
        }
        if let Err(e) = self.services.await {
            tracing::error!(error = %e, "the service scheduler panicked");
        }
        if let Err(e) = self.batch.await {
            tracing::error!(error = %e, "the batch scheduler panicked");
        }
        if let Err(e) = self.policy_stats.await {
            tracing::error!(error = %e, "the policy statistics flush panicked");
        }
    }
}

/// Polls `f` once: true when it completed.
async fn poll_once(f: std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
    tokio::select! {
        biased;
        () = f => true,
        () = std::future::ready(()) => false,
    }
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
