//! `berth bench soak`: issue 12's soak. Against a running `berth server`
//! whose cluster has (simulated) instances, first fills the store
//! (`--seed-services` services, then `--seed-stopped` tasks run and
//! stopped), then loads it for `--duration`: DescribeTasks of recent tasks
//! on `--describe-connections`, RunTask then StopTask of the connection's
//! older tasks on `--run-connections`. Every `--window` it prints each
//! operation's requests, p50/p99/max and errors, and the server's RSS and
//! CPU; at the end, sums per `--block` and over the run, whether RSS stayed
//! flat, and with `--baseline` (the `--summary` of a run on a fresh store)
//! the p99 ratios.

mod figures;
mod load;
mod report;
mod seed;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth_client::Connection;
use clap::Args;

use super::target::{TargetArgs, block_on, register_family, server, wait_for_instances};
use figures::parse_duration;

/// Options of `berth bench soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Tasks run and stopped before the load (RunTask count=10, then
    /// StopTask of each), left STOPPED in the store.
    #[arg(long, default_value_t = 100_000)]
    seed_stopped: u64,
    /// Services created before the load.
    #[arg(long, default_value_t = 1_000)]
    seed_services: u64,
    /// desiredCount of each seeded service.
    #[arg(long, default_value_t = 1)]
    service_desired_count: u64,
    /// Connections the seeding uses.
    #[arg(long, default_value_t = 32)]
    seed_connections: usize,
    /// How long the load runs (30m, 90s, 1h).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    duration: Duration,
    /// Connections looping DescribeTasks of up to 100 recent tasks.
    #[arg(long, default_value_t = 16)]
    describe_connections: usize,
    /// Connections looping RunTask (one task) then StopTask of their oldest.
    #[arg(long, default_value_t = 32)]
    run_connections: usize,
    /// Tasks each run connection leaves running; older ones are stopped.
    #[arg(long, default_value_t = 4)]
    keep_running: usize,
    /// Length of a printed window.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    window: Duration,
    /// Windows are summed per block at the end; RSS compares the first
    /// block's most with the last block's.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    block: Duration,
    /// RSS counts as flat when the last block's most is within this ratio
    /// of the first block's.
    #[arg(long, default_value_t = 1.25)]
    rss_bound: f64,
    /// CPU units and MiB of each task.
    #[arg(long, default_value_t = 16)]
    task_cpu: u64,
    #[arg(long, default_value_t = 32)]
    task_memory: u64,
    /// The server's process id, for its CPU time and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's data directory, for the store's size.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Write the run's summary (JSON) here, e.g. a fresh store's, to give
    /// as `--baseline` to a soak.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// The `--summary` of a run on a fresh store: print p99(this)/p99(it).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Give up seeding after this long.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    seed_timeout: Duration,
}

/// The task definition family the soak runs.
const FAMILY: &str = "soak-bench";

/// Runs the soak and prints the figures.
pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    // Read it first: a bad path should not cost a seeding.
    let baseline = args
        .baseline
        .as_ref()
        .map(|p| report::read_summary(p))
        .transpose()?;
    block_on(async move {
        let (host, creds) = server(&args.target.endpoint)?;
        let mut conn = Connection::open(&host, &creds).await?;
        register_family(&mut conn, FAMILY, args.task_cpu, args.task_memory).await?;
        wait_for_instances(&mut conn, &args.target.cluster, args.target.instances).await?;
        let seeding = seed::seed(args, &host, &creds)
            .await
            .context("seeding the store")?;
        let windows = load::run(args, &host, &creds).await?;
        report::finish(args, &seeding, &windows, baseline.as_ref())
    })
}
