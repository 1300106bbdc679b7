//! Store throughput and size benchmark.
//!
//! `cargo run --release -p berth-store --example store_bench -- --tasks 100000`
//!
//! Prints a markdown table: durable single-record commits per second, 1,000-record batch commits
//! per second, index lookups, and on-disk size per 100,000 task-shaped records.

use std::time::{Duration, Instant};

use berth_store::{Index, PageRequest, Record, Store};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::{Deserialize, Serialize};

/// Shaped like an ECS task description.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Task {
    task_arn: String,
    cluster_arn: String,
    task_definition_arn: String,
    container_instance_arn: String,
    group: String,
    last_status: String,
    desired_status: String,
    health_status: String,
    launch_type: String,
    cpu: String,
    memory: String,
    started_by: String,
    version: u64,
    created_at: String,
    started_at: Option<String>,
    stopped_at: Option<String>,
    stopped_reason: Option<String>,
    containers: Vec<Container>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    container_arn: String,
    name: String,
    image: String,
    last_status: String,
    exit_code: Option<i32>,
    network_bindings: Vec<NetworkBinding>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkBinding {
    bind_ip: String,
    container_port: u16,
    host_port: u16,
    protocol: String,
}

impl Record for Task {
    const TABLE: &'static str = "tasks";
    fn key(&self) -> String {
        self.task_arn.clone()
    }
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            ("cluster", self.cluster_arn.clone()),
            ("instance", self.container_instance_arn.clone()),
            ("group", self.group.clone()),
            ("status", self.last_status.clone()),
        ]
    }
}

const ACCOUNT: &str = "arn:aws:ecs:us-east-1:123456789012";

fn hex_id(rng: &mut SmallRng) -> String {
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

fn make_task(rng: &mut SmallRng) -> Task {
    let cluster = format!("cluster-{}", rng.random_range(0..10));
    let id = hex_id(rng);
    let instance = format!("{ACCOUNT}:container-instance/{cluster}/{}", hex_id(rng));
    let service = format!("svc-{}", rng.random_range(0..200));
    let status = ["PROVISIONING", "PENDING", "RUNNING", "STOPPED"][rng.random_range(0..4)];
    let port = rng.random_range(30000..60000);
    let container = |name: &str, image: &str, cport: u16, hport: u16| Container {
        container_arn: format!("{ACCOUNT}:container/{cluster}/{id}/{}", name),
        name: name.into(),
        image: image.into(),
        last_status: status.into(),
        exit_code: None,
        network_bindings: vec![NetworkBinding {
            bind_ip: "0.0.0.0".into(),
            container_port: cport,
            host_port: hport,
            protocol: "tcp".into(),
        }],
    };
    Task {
        task_arn: format!("{ACCOUNT}:task/{cluster}/{id}"),
        cluster_arn: format!("{ACCOUNT}:cluster/{cluster}"),
        task_definition_arn: format!(
            "{ACCOUNT}:task-definition/{service}:{}",
            rng.random_range(1..20)
        ),
        container_instance_arn: instance,
        group: format!("service:{service}"),
        last_status: status.into(),
        desired_status: "RUNNING".into(),
        health_status: "HEALTHY".into(),
        launch_type: "EC2".into(),
        cpu: "256".into(),
        memory: "512".into(),
        started_by: format!("ecs-svc/{}", rng.random::<u64>()),
        version: rng.random_range(1..10),
        created_at: "2025-06-01T12:34:56.789Z".into(),
        started_at: Some("2025-06-01T12:35:02.123Z".into()),
        stopped_at: None,
        stopped_reason: None,
        containers: vec![
            container("app", "registry.local/app:1.4.2", 8080, port),
            container("sidecar", "registry.local/envoy:1.29", 9901, port + 1),
        ],
    }
}

struct Args {
    tasks: usize,
    single_secs: f64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        tasks: 100_000,
        single_secs: 3.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--tasks" => args.tasks = val()?.parse()?,
            "--single-secs" => args.single_secs = val()?.parse()?,
            other => anyhow::bail!("unknown argument {other}; use --tasks N [--single-secs S]"),
        }
    }
    anyhow::ensure!(args.tasks >= 1000, "--tasks must be at least 1000");
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let mut rng = SmallRng::seed_from_u64(42);
    let mut rows: Vec<(String, String)> = Vec::new();

    // 1. Durable single-record commits, for a fixed wall-clock budget.
    {
        let store = Store::open(dir.path().join("single.redb"))?;
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs_f64(args.single_secs) {
            let mut txn = store.begin()?;
            txn.put(&make_task(&mut rng))?;
            txn.commit()?;
            n += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        rows.push((
            "single-record commits (durable)".into(),
            format!("{:.0} txn/s ({n} in {secs:.1} s)", n as f64 / secs),
        ));
    }

    // 2. 1,000-record batches, filling the store used for the size figure.
    let path = dir.path().join("batch.redb");
    let store = Store::open(&path)?;
    let batches = args.tasks.div_ceil(1000);
    let mut sample = Vec::new();
    let start = Instant::now();
    for _ in 0..batches {
        let mut txn = store.begin()?;
        for _ in 0..1000 {
            let t = make_task(&mut rng);
            if sample.len() < 1000 && rng.random_range(0..50) == 0 {
                sample.push((t.cluster_arn.clone(), t.container_instance_arn.clone()));
            }
            txn.put(&t)?;
        }
        txn.commit()?;
    }
    let secs = start.elapsed().as_secs_f64();
    let records = batches * 1000;
    rows.push((
        "1,000-record batch commits".into(),
        format!(
            "{:.1} txn/s = {:.0} records/s ({batches} batches in {secs:.1} s)",
            batches as f64 / secs,
            records as f64 / secs
        ),
    ));

    // 3. Lookups on the full store.
    let lookups = sample.len().min(500);
    let start = Instant::now();
    for (cluster, instance) in sample.iter().take(lookups) {
        let txn = store.begin()?;
        let p = txn.by_index(
            Index::<Task>::new("instance"),
            instance,
            PageRequest::first(100),
        )?;
        anyhow::ensure!(!p.items.is_empty(), "instance index lookup found nothing");
        let p = txn.by_index(
            Index::<Task>::new("cluster"),
            cluster,
            PageRequest::first(100),
        )?;
        anyhow::ensure!(p.items.len() == 100, "cluster page short");
    }
    let secs = start.elapsed().as_secs_f64();
    rows.push((
        "index lookups (instance + 100-item cluster page)".into(),
        format!("{:.0} pairs/s", lookups as f64 / secs),
    ));

    // 4. Size on disk.
    let info = store.info()?;
    drop(store);
    let bytes = std::fs::metadata(&path)?.len();
    let per_100k = bytes as f64 * 100_000.0 / records as f64;
    let sample_json = serde_json::to_vec(&make_task(&mut rng))?.len();
    rows.push((
        format!("store size ({records} tasks, 4 indexes)"),
        format!("{:.1} MiB", bytes as f64 / 1048576.0),
    ));
    rows.push((
        "size per 100,000 tasks".into(),
        format!(
            "{:.1} MiB ({:.0} B/task; JSON value alone ~{sample_json} B)",
            per_100k / 1048576.0,
            bytes as f64 / records as f64
        ),
    ));

    // The file keeps pages freed by copy-on-write; compaction shows the live data size. (The
    // bench opens the file with redb directly: the store has no compaction API yet.)
    {
        let mut db = redb::Database::open(&path)?;
        while db.compact()? {}
    }
    let compacted = std::fs::metadata(&path)?.len();
    rows.push((
        "size per 100,000 tasks after compaction".into(),
        format!(
            "{:.1} MiB ({:.0} B/task)",
            compacted as f64 * 100_000.0 / records as f64 / 1048576.0,
            compacted as f64 / records as f64
        ),
    ));

    println!("{info}\n");
    println!("| measure | result |");
    println!("| --- | --- |");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}
