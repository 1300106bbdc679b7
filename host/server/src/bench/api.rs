//! `berth bench api`: a load tool for a running `berth up`. Keeps
//! `--connections` HTTP/1.1 connections busy with signed requests for
//! `--seconds`, and reports requests per second and latency percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_client::{Connection, Credentials, ECS_PREFIX};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// DescribeTasks of one task.
    DescribeTasks,
    /// RunTask of one tiny task (placement and commit included).
    RunTask,
}

/// Options of `berth bench api`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    #[arg(long, env = "BERTH_ENDPOINT", default_value = "http://127.0.0.1:7171")]
    endpoint: String,
    #[arg(long, value_enum, default_value_t = Op::DescribeTasks)]
    op: Op,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// One JSON object for scripts.
    #[arg(long)]
    json: bool,
}

/// One kept-alive connection calling ECS operations.
struct Conn(Connection);

impl Conn {
    async fn open(host: &str, creds: &Credentials) -> anyhow::Result<Conn> {
        Ok(Conn(Connection::open(host, creds).await?))
    }

    async fn call(&mut self, op: &str, body: &Value) -> anyhow::Result<Value> {
        self.0
            .call(ECS_PREFIX, op, body)
            .await
            .with_context(|| op.to_owned())
    }
}

/// Runs the load and prints the figures.
pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: &LoadArgs) -> anyhow::Result<()> {
    let host = args
        .endpoint
        .strip_prefix("http://")
        .context("--endpoint: only http:// is supported")?
        .trim_end_matches('/')
        .to_owned();
    let creds = Credentials::from_env()
        .context("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the key `berth up` printed")?;
    // A cluster of its own with room for every task the run can start.
    let mut setup = Conn::open(&host, &creds).await?;
    let cluster = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    setup
        .call("CreateCluster", &json!({"clusterName": cluster}))
        .await?;
    for _ in 0..4 {
        setup
            .call(
                "RegisterContainerInstance",
                &json!({"cluster": cluster, "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 1_000_000_000},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 1_000_000_000}]}),
            )
            .await?;
    }
    setup
        .call("RegisterTaskDefinition", &json!({"family": cluster, "containerDefinitions": [{"name": "c", "image": "bench", "cpu": 1, "memory": 6}]}))
        .await?;
    let first = setup
        .call(
            "RunTask",
            &json!({"cluster": cluster, "taskDefinition": cluster}),
        )
        .await?;
    let task = first["tasks"][0]["taskArn"]
        .as_str()
        .context("the setup task was not placed")?
        .to_owned();
    let body = match args.op {
        Op::DescribeTasks => (
            "DescribeTasks",
            json!({"cluster": cluster, "tasks": [task]}),
        ),
        Op::RunTask => (
            "RunTask",
            json!({"cluster": cluster, "taskDefinition": cluster}),
        ),
    };
    let body = Arc::new(body);
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut workers = Vec::new();
    for _ in 0..args.connections.max(1) {
        let mut conn = Conn::open(&host, &creds).await?;
        let body = Arc::clone(&body);
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match conn.call(body.0, &body.1).await {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let start = Instant::now();
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.context("a load worker panicked")?;
        lat.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64().max(args.seconds);
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let rps = lat.len() as f64 / secs;
    let op = body.0;
    if args.json {
        println!(
            "{}",
            json!({"op": op, "connections": args.connections, "seconds": secs, "requests": lat.len(), "errors": errors,
                   "requests_per_sec": rps, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0)})
        );
    } else {
        println!("op             connections  requests   req/s     p50 ms  p99 ms  max ms  errors");
        println!(
            "{op:<14} {:>11}  {:>8}  {rps:>8.0}  {:>6.2}  {:>6.2}  {:>6.2}  {errors}",
            args.connections,
            lat.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
    }
    Ok(())
}
