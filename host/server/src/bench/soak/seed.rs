//! Filling the store before the load: services first (their tasks placed
//! and RUNNING), then tasks run and stopped until the simulated agents
//! have reported them all STOPPED.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_client::{CallError, Connection, Credentials, ECS_PREFIX};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::super::target::{ClusterCounts, cluster_counts, server_usage};
use super::{FAMILY, SoakArgs};

/// What the seeding did, for the report.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Seeding {
    pub services: u64,
    pub services_seconds: f64,
    pub stopped: u64,
    pub stopped_seconds: f64,
    /// Calls the server failed for contention or throttling, made again.
    pub retried: u64,
    /// The server's RSS and the store's size once seeded.
    pub rss_mib: Option<f64>,
    pub store_mib: Option<f64>,
}

/// Seeds the store as `args` say.
pub async fn seed(args: &SoakArgs, host: &str, creds: &Credentials) -> anyhow::Result<Seeding> {
    // Opened for each use: the server closes a connection idle for its
    // header timeout (30 s by default), and seeding can take longer.
    let watch = || Connection::open(host, creds);
    let deadline = Instant::now() + args.seed_timeout;
    let mut out = Seeding::default();
    let retried = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    if args.seed_services > 0 {
        create_services(args, host, creds, &retried).await?;
        let want = args.seed_services * args.service_desired_count;
        wait_counts(
            &mut watch().await?,
            args,
            deadline,
            "services' tasks RUNNING",
            |c| c.services >= args.seed_services && c.running >= want,
        )
        .await?;
        out.services = args.seed_services;
        out.services_seconds = start.elapsed().as_secs_f64();
        println!(
            "seeded {} services in {:.0}s",
            out.services, out.services_seconds
        );
    }
    let before = cluster_counts(&mut watch().await?, &args.target.cluster).await?;
    let start = Instant::now();
    if args.seed_stopped > 0 {
        run_and_stop(args, host, creds, &retried).await?;
        let live = before.running + before.pending;
        wait_counts(
            &mut watch().await?,
            args,
            deadline,
            "seeded tasks STOPPED",
            |c| c.running + c.pending <= live,
        )
        .await?;
        out.stopped = args.seed_stopped;
        out.stopped_seconds = start.elapsed().as_secs_f64();
        println!(
            "seeded {} stopped tasks in {:.0}s",
            out.stopped, out.stopped_seconds
        );
    }
    out.retried = retried.load(Ordering::Relaxed);
    if out.retried > 0 {
        println!(
            "seeding: {} calls retried after ServerException or ThrottlingException",
            out.retried
        );
    }
    out.rss_mib = server_usage(args.server_pid).map(|u| u.rss_mib);
    out.store_mib = store_mib(args);
    Ok(out)
}

/// The store file's size in MiB, when `--data-dir` is given.
pub fn store_mib(args: &SoakArgs) -> Option<f64> {
    let d = args.data_dir.as_ref()?;
    let m = std::fs::metadata(d.join("berth.redb")).ok()?;
    Some(m.len() as f64 / (1024.0 * 1024.0))
}

/// Polls the cluster's counts every second until `done`, printing them
/// every 10 s.
async fn wait_counts(
    watch: &mut Connection,
    args: &SoakArgs,
    deadline: Instant,
    what: &str,
    done: impl Fn(&ClusterCounts) -> bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut printed = Instant::now();
    loop {
        let c = cluster_counts(watch, &args.target.cluster).await?;
        if done(&c) {
            return Ok(());
        }
        if printed.elapsed() >= Duration::from_secs(10) {
            printed = Instant::now();
            println!(
                "waiting for {what}: {:.0}s services={} running={} pending={} server_rss_mib={}",
                start.elapsed().as_secs_f64(),
                c.services,
                c.running,
                c.pending,
                server_usage(args.server_pid).map_or("-".into(), |u| format!("{:.0}", u.rss_mib))
            );
        }
        if Instant::now() > deadline {
            bail!("gave up waiting for {what} after --seed-timeout: {c:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// CreateService `soak-NNNNN` for each seeded service, on the seeding's
/// connections.
async fn create_services(
    args: &SoakArgs,
    host: &str,
    creds: &Credentials,
    retried: &Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..args.seed_connections.max(1) {
        let mut conn = Connection::open(host, creds).await?;
        let (next, retried) = (Arc::clone(&next), Arc::clone(retried));
        let (total, cluster, desired) = (
            args.seed_services,
            args.target.cluster.clone(),
            args.service_desired_count,
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = json!({"cluster": cluster, "serviceName": format!("soak-{i:05}"),
                                  "taskDefinition": FAMILY, "desiredCount": desired});
                call(&mut conn, "CreateService", &body, &retried)
                    .await
                    .with_context(|| format!("CreateService soak-{i:05}"))?;
            }
        });
    }
    join_all(workers).await
}

/// RunTask count=10 (less for the last) then StopTask of each task, until
/// `--seed-stopped` tasks were run, printing progress every 10 s.
async fn run_and_stop(
    args: &SoakArgs,
    host: &str,
    creds: &Credentials,
    retried: &Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let claimed = Arc::new(AtomicU64::new(0));
    let stopped = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..args.seed_connections.max(1) {
        let mut conn = Connection::open(host, creds).await?;
        let (claimed, stopped, retried) = (
            Arc::clone(&claimed),
            Arc::clone(&stopped),
            Arc::clone(retried),
        );
        let (total, cluster) = (args.seed_stopped, args.target.cluster.clone());
        workers.spawn(async move {
            loop {
                let Ok(at) = claimed.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    (c < total).then(|| (c + 10).min(total))
                }) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let n = (total - at).min(10);
                let body = json!({"cluster": cluster, "taskDefinition": FAMILY, "count": n,
                                  "startedBy": "soak-seed"});
                let v = call(&mut conn, "RunTask", &body, &retried).await?;
                let arns: Vec<String> = v["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["taskArn"].as_str().map(str::to_owned))
                    .collect();
                if arns.len() as u64 != n {
                    bail!("RunTask placed {} of {n}: {}", arns.len(), v["failures"]);
                }
                for arn in arns {
                    let body = json!({"cluster": cluster, "task": arn, "reason": "soak seed"});
                    call(&mut conn, "StopTask", &body, &retried).await?;
                    stopped.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let start = Instant::now();
    let mut every = tokio::time::interval(Duration::from_secs(10));
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => println!(
                "seeding: {:.0}s {} of {} tasks run and stopped",
                start.elapsed().as_secs_f64(),
                stopped.load(Ordering::Relaxed),
                args.seed_stopped
            ),
            r = workers.join_next() => match r {
                None => return Ok(()),
                Some(r) => r.context("a seeding worker panicked")??,
            },
        }
    }
}

/// Seeding retries a call the server failed for contention or throttling
/// (up to this many times, 50 ms apart); the load counts them instead.
const RETRIES: u32 = 20;

/// `op` with `body`, made again after a `ServerException` or a
/// `ThrottlingException` (each counted in `retried`).
async fn call(
    conn: &mut Connection,
    op: &str,
    body: &Value,
    retried: &AtomicU64,
) -> Result<Value, CallError> {
    let mut left = RETRIES;
    loop {
        match conn.call(ECS_PREFIX, op, body).await {
            Err(CallError::Api { code, .. })
                if left > 0 && (code == "ServerException" || code == "ThrottlingException") =>
            {
                left -= 1;
                retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}

async fn join_all(mut workers: JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    while let Some(r) = workers.join_next().await {
        r.context("a seeding worker panicked")??;
    }
    Ok(())
}
