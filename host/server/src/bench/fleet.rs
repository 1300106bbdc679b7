//! `berth bench fleet`: Nomad's C1M on one machine. Against a running
//! `berth server` whose cluster has (simulated) instances, places
//! `--tasks` tasks with RunTask `--count` at a time on `--connections`
//! connections, then waits until the cluster counts them all RUNNING (as
//! their agents report), printing progress every second. With
//! `--server-pid` it also reports the server's CPU time and RSS, and with
//! `--data-dir` the store's size. With `--also URL,...` the connections are
//! spread over several servers (sharing a store on etcd), and with
//! `--metrics URL,...` (their `--metrics-listen`) it reports the store's
//! commit conflicts counted by all of them during the run.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_client::{Connection, ECS_PREFIX};
use clap::Args;
use serde_json::{Value, json};

use super::target::{
    ClusterCounts, TargetArgs, block_on, cluster_counts, register_family, server, server_usage,
    wait_for_instances,
};

/// Options of `berth bench fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// How many tasks to place.
    #[arg(long, default_value_t = 1_000_000)]
    tasks: u64,
    /// Tasks per RunTask (ECS allows 1 to 10).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10))]
    count: u64,
    /// Concurrent RunTask connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// CPU units and MiB of each task.
    #[arg(long, default_value_t = 64)]
    task_cpu: u64,
    #[arg(long, default_value_t = 128)]
    task_memory: u64,
    /// Give up waiting for RUNNING after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// The server's process id, for its CPU time and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's data directory, for the store's size.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// More servers over the same store, `http://HOST:PORT`: the RunTask
    /// connections go round robin over `--endpoint` and these.
    #[arg(long, value_delimiter = ',')]
    also: Vec<String>,
    /// Each server's metrics address (`HOST:PORT` of its
    /// `--metrics-listen`), to count the commit conflicts of the run.
    #[arg(long, value_delimiter = ',')]
    metrics: Vec<String>,
}

/// The commit conflicts the servers at `addrs` counted so far (their
/// `berth_store_commit_conflicts_total`).
fn conflicts(addrs: &[String]) -> anyhow::Result<f64> {
    use std::io::{Read, Write};
    let mut sum = 0.0;
    for addr in addrs {
        let mut s =
            std::net::TcpStream::connect(addr).with_context(|| format!("metrics at {addr}"))?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        sum += body
            .lines()
            .find_map(|l| l.strip_prefix("berth_store_commit_conflicts_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .with_context(|| format!("{addr}: no berth_store_commit_conflicts_total"))?;
    }
    Ok(sum)
}

/// RunTask calls made: latencies, tasks placed, failures.
#[derive(Debug, Default)]
struct Placed {
    tasks: AtomicU64,
    failures: AtomicU64,
}

/// Runs the bench and prints the figures.
pub fn run(args: &FleetArgs) -> anyhow::Result<()> {
    block_on(run_async(args))
}

async fn run_async(args: &FleetArgs) -> anyhow::Result<()> {
    let (host, creds) = server(&args.target.endpoint)?;
    let mut watch = Connection::open(&host, &creds).await?;
    let family = "fleet-bench";
    register_family(&mut watch, family, args.task_cpu, args.task_memory).await?;
    wait_for_instances(&mut watch, &args.target.cluster, args.target.instances).await?;
    let running_before = cluster_counts(&mut watch, &args.target.cluster)
        .await?
        .running;
    let usage_before = server_usage(args.server_pid);
    let conflicts_before = conflicts(&args.metrics)?;
    let mut hosts = vec![host.clone()];
    for e in &args.also {
        hosts.push(server(e)?.0);
    }
    let start = Instant::now();
    let to_claim = Arc::new(AtomicU64::new(args.tasks));
    let placed = Arc::new(Placed::default());
    let body = json!({"cluster": args.target.cluster, "taskDefinition": family});
    let mut workers = Vec::new();
    for i in 0..args.connections.max(1) {
        let mut conn = Connection::open(&hosts[i % hosts.len()], &creds).await?;
        let (to_claim, placed, body, count) = (
            Arc::clone(&to_claim),
            Arc::clone(&placed),
            body.clone(),
            args.count,
        );
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let Ok(left) = to_claim.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                    l.checked_sub(count.min(l)).filter(|_| l > 0)
                }) else {
                    return Ok::<_, anyhow::Error>((lat, Instant::now()));
                };
                let n = count.min(left);
                let mut body = body.clone();
                body["count"] = json!(n);
                let t = Instant::now();
                let v: Value = conn.call(ECS_PREFIX, "RunTask", &body).await?;
                lat.push(t.elapsed());
                let got = v["tasks"].as_array().map_or(0, Vec::len) as u64;
                placed.tasks.fetch_add(got, Ordering::Relaxed);
                if got < n {
                    placed.failures.fetch_add(n - got, Ordering::Relaxed);
                    bail!("RunTask placed {got} of {n}: {}", v["failures"]);
                }
            }
        }));
    }
    let mut placed_at = None;
    let mut peak_rss: f64 = 0.0;
    let target = running_before + args.tasks;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let running = loop {
        tick.tick().await;
        let ClusterCounts {
            running, pending, ..
        } = cluster_counts(&mut watch, &args.target.cluster).await?;
        let done = placed.tasks.load(Ordering::Relaxed);
        let usage = server_usage(args.server_pid);
        if let Some(u) = usage {
            peak_rss = peak_rss.max(u.rss_mib);
        }
        let t = start.elapsed().as_secs_f64();
        println!(
            "t={t:.0}s placed={done} running={} pending={pending} server_rss_mib={}",
            running - running_before,
            usage.map_or("-".to_owned(), |u| format!("{:.0}", u.rss_mib))
        );
        if placed_at.is_none() && workers.iter().all(tokio::task::JoinHandle::is_finished) {
            placed_at = Some(t);
        }
        if running >= target {
            break running;
        }
        if t > args.timeout as f64 {
            bail!(
                "after {t:.0}s only {} of {} tasks RUNNING",
                running - running_before,
                args.tasks
            );
        }
    };
    let all_running = start.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    let mut last = start;
    for w in workers {
        let (l, end) = w.await.context("a RunTask worker panicked")??;
        lat.extend(l);
        last = last.max(end);
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let cpu = match (usage_before, server_usage(args.server_pid)) {
        (Some(a), Some(b)) => json!(b.cpu_seconds - a.cpu_seconds),
        _ => Value::Null,
    };
    let conflicts = conflicts(&args.metrics)? - conflicts_before;
    let placed_s = (last - start).as_secs_f64();
    let store_mib = args.data_dir.as_ref().and_then(|d| {
        std::fs::metadata(d.join("berth.redb"))
            .ok()
            .map(|m| m.len() as f64 / (1024.0 * 1024.0))
    });
    println!(
        "{}",
        json!({"tasks": args.tasks, "running": running - running_before,
               "placed_seconds": placed_at, "all_running_seconds": all_running,
               "run_task_calls": lat.len(), "run_task_p50_ms": pct(0.5), "run_task_p99_ms": pct(0.99),
               "run_tasks_per_second": lat.len() as f64 / placed_s.max(1e-9),
               "servers": hosts.len(),
               "commit_conflicts": (!args.metrics.is_empty()).then_some(conflicts),
               "conflicts_per_run_task": (!args.metrics.is_empty()).then(|| conflicts / (lat.len().max(1) as f64)),
               "server_cpu_seconds": cpu, "server_peak_rss_mib": peak_rss, "store_mib": store_mib})
    );
    Ok(())
}
