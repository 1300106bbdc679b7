//! What the benches against a running `berth server` share: the runtime,
//! the endpoint and key, a cluster's counts, and the server process's CPU
//! time and RSS from /proc.

use std::time::Duration;

use anyhow::Context;
use berth_client::{Connection, Credentials, ECS_PREFIX, endpoint_host};
use serde_json::json;

/// The server a bench runs against and the cluster it uses (flattened into
/// each bench's options).
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    #[arg(long, env = "BERTH_ENDPOINT", default_value = "http://127.0.0.1:7171")]
    pub endpoint: String,
    /// The cluster (its instances must be registered already, e.g. by
    /// `berth agent --simulate N`).
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Wait until this many instances are registered before starting.
    #[arg(long, default_value_t = 0)]
    pub instances: u64,
}

/// Runs `fut` on a fresh multi-threaded runtime.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(fut: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(fut)
}

/// The server at `endpoint` (`http://HOST:PORT`): where to connect, and the
/// key (from the environment) to sign with.
pub fn server(endpoint: &str) -> anyhow::Result<(String, Credentials)> {
    let host = endpoint_host(endpoint).map_err(anyhow::Error::msg)?;
    let creds = Credentials::from_env()
        .context("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the server's key")?;
    Ok((host, creds))
}

/// A process's CPU time so far and its resident memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// User and system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set size in MiB.
    pub rss_mib: f64,
}

/// The server's usage, from /proc (None without a pid, or once it is gone).
pub fn server_usage(pid: Option<u32>) -> Option<Usage> {
    let pid = pid?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: utime is the
    // 14th field of the line, stime the 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    // USER_HZ is 100 on Linux.
    Some(Usage {
        cpu_seconds: ticks / 100.0,
        rss_mib: rss_kib / 1024.0,
    })
}

/// A cluster's counts as DescribeClusters gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    pub registered: u64,
    pub running: u64,
    pub pending: u64,
    pub services: u64,
}

/// `cluster`'s counts.
pub async fn cluster_counts(conn: &mut Connection, cluster: &str) -> anyhow::Result<ClusterCounts> {
    let v = conn
        .call(
            ECS_PREFIX,
            "DescribeClusters",
            &json!({"clusters": [cluster]}),
        )
        .await?;
    let c = &v["clusters"][0];
    let n = |f: &str| c[f].as_u64().unwrap_or(0);
    Ok(ClusterCounts {
        registered: n("registeredContainerInstancesCount"),
        running: n("runningTasksCount"),
        pending: n("pendingTasksCount"),
        services: n("activeServicesCount"),
    })
}

/// Waits until `cluster` has at least `instances` registered; how many it has.
pub async fn wait_for_instances(
    conn: &mut Connection,
    cluster: &str,
    instances: u64,
) -> anyhow::Result<u64> {
    loop {
        let registered = cluster_counts(conn, cluster).await?.registered;
        if registered >= instances {
            println!("instances registered: {registered}");
            return Ok(registered);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Registers the bench's task definition: one container of `cpu` units and
/// `memory` MiB (nothing runs it but simulated agents).
pub async fn register_family(
    conn: &mut Connection,
    family: &str,
    cpu: u64,
    memory: u64,
) -> anyhow::Result<()> {
    conn.call(
        ECS_PREFIX,
        "RegisterTaskDefinition",
        &json!({"family": family, "containerDefinitions": [
            {"name": "c", "image": family, "cpu": cpu, "memory": memory}]}),
    )
    .await?;
    Ok(())
}
