//! The soak's load: DescribeTasks and RunTask/StopTask workers on their
//! own kept-alive connections until the deadline, every call timed into
//! the current window; a reporter closes a window every `--window`,
//! sampling the server's RSS every second and its CPU per window.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_client::{CallError, Connection, Credentials, ECS_PREFIX};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::super::target::server_usage;
use super::figures::{OPS, Window};
use super::{FAMILY, SoakArgs, report};

/// A call not answered within this long counts as an error (`Timeout`),
/// and its connection is replaced.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How many recent task ARNs DescribeTasks picks from (its maximum).
const RECENT: usize = 100;

/// What the workers share: the window being filled, and the most recent
/// tasks run.
struct Shared {
    host: String,
    creds: Credentials,
    cluster: String,
    window: Mutex<Window>,
    recent: Mutex<VecDeque<String>>,
    deadline: Instant,
}

impl Shared {
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, arn: String) {
        let mut r = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if r.len() == RECENT {
            r.pop_front();
        }
        r.push_back(arn);
    }

    fn recent(&self) -> Vec<String> {
        let r = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        r.iter().cloned().collect()
    }

    /// `op` with `body` on `conn` (reopened when closed), timed; the
    /// answer, or None when it failed (counted by code).
    async fn call(
        &self,
        conn: &mut Option<Connection>,
        op: &'static str,
        body: &Value,
    ) -> Option<Value> {
        if !conn.as_ref().is_some_and(Connection::is_open) {
            match Connection::open(&self.host, &self.creds).await {
                Ok(c) => *conn = Some(c),
                Err(_) => {
                    *conn = None;
                    self.failed(op, "Unreachable");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return None;
                }
            }
        }
        let c = conn.as_mut()?;
        let t = Instant::now();
        let r = tokio::time::timeout(CALL_TIMEOUT, c.call(ECS_PREFIX, op, body)).await;
        let code = match r {
            Ok(Ok(v)) => {
                self.window().op(op).latency.record(t.elapsed());
                return Some(v);
            }
            Ok(Err(CallError::Api { code, .. })) => code,
            Ok(Err(e)) => {
                *conn = None;
                match e {
                    CallError::Timeout(_) => "Timeout".into(),
                    CallError::Request(_) => "Request".into(),
                    _ => "Unreachable".into(),
                }
            }
            Err(_) => {
                *conn = None;
                "Timeout".into()
            }
        };
        self.failed(op, &code);
        None
    }

    fn failed(&self, op: &'static str, code: &str) {
        *self
            .window()
            .op(op)
            .errors
            .entry(code.to_owned())
            .or_default() += 1;
    }
}

/// Runs the load for `--duration`; the windows it recorded, in order.
pub async fn run(args: &SoakArgs, host: &str, creds: &Credentials) -> anyhow::Result<Vec<Window>> {
    let shared = Arc::new(Shared {
        host: host.to_owned(),
        creds: creds.clone(),
        cluster: args.target.cluster.clone(),
        window: Mutex::new(Window::default()),
        recent: Mutex::new(VecDeque::new()),
        deadline: Instant::now() + args.duration,
    });
    let mut workers = JoinSet::new();
    for _ in 0..args.run_connections {
        let conn = Some(Connection::open(host, creds).await?);
        workers.spawn(run_worker(Arc::clone(&shared), conn, args.keep_running));
    }
    for _ in 0..args.describe_connections {
        let conn = Some(Connection::open(host, creds).await?);
        workers.spawn(describe_worker(Arc::clone(&shared), conn));
    }
    println!(
        "load: {} DescribeTasks and {} RunTask/StopTask connections for {:.0}s",
        args.describe_connections,
        args.run_connections,
        args.duration.as_secs_f64()
    );
    report::window_header();
    let windows = reporter(args, &shared).await;
    while let Some(r) = workers.join_next().await {
        r.context("a load worker panicked")?;
    }
    Ok(windows)
}

/// RunTask of one task, then StopTask of this connection's oldest tasks
/// beyond `keep`, until the deadline; its tasks left running are stopped
/// at the end (not timed).
async fn run_worker(shared: Arc<Shared>, mut conn: Option<Connection>, keep: usize) {
    let run = json!({"cluster": shared.cluster, "taskDefinition": FAMILY, "startedBy": "soak"});
    let mut mine: VecDeque<String> = VecDeque::new();
    while Instant::now() < shared.deadline {
        if let Some(v) = shared.call(&mut conn, "RunTask", &run).await {
            for t in v["tasks"].as_array().into_iter().flatten() {
                if let Some(arn) = t["taskArn"].as_str() {
                    mine.push_back(arn.to_owned());
                    shared.remember(arn.to_owned());
                }
            }
        }
        while mine.len() > keep && Instant::now() < shared.deadline {
            let Some(arn) = mine.front() else { break };
            let stop = json!({"cluster": shared.cluster, "task": arn, "reason": "soak"});
            if shared.call(&mut conn, "StopTask", &stop).await.is_none() {
                break;
            }
            mine.pop_front();
        }
    }
    for arn in mine {
        if let Some(c) = conn.as_mut() {
            let stop = json!({"cluster": shared.cluster, "task": arn, "reason": "soak ended"});
            let _ = c.call(ECS_PREFIX, "StopTask", &stop).await;
        }
    }
}

/// DescribeTasks of the (up to 100) most recent tasks run, until the deadline.
async fn describe_worker(shared: Arc<Shared>, mut conn: Option<Connection>) {
    while Instant::now() < shared.deadline {
        let tasks = shared.recent();
        if tasks.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let body = json!({"cluster": shared.cluster, "tasks": tasks});
        shared.call(&mut conn, "DescribeTasks", &body).await;
    }
}

/// Samples the server's RSS every second and closes a window every
/// `--window` until the deadline, printing each; the windows.
async fn reporter(args: &SoakArgs, shared: &Shared) -> Vec<Window> {
    let start = Instant::now();
    let mut windows = Vec::new();
    let mut usage_at = server_usage(args.server_pid);
    let mut window_start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let usage = server_usage(args.server_pid);
        if let Some(u) = usage {
            shared.window().sample_rss(u.rss_mib);
        }
        let ended = Instant::now() >= shared.deadline;
        if window_start.elapsed() < args.window && !ended {
            continue;
        }
        let mut w = std::mem::take(&mut *shared.window());
        w.start = window_start.duration_since(start).as_secs_f64();
        w.seconds = window_start.elapsed().as_secs_f64();
        w.cpu_seconds = match (usage_at, usage) {
            (Some(a), Some(b)) => Some(b.cpu_seconds - a.cpu_seconds),
            _ => None,
        };
        usage_at = usage;
        window_start = Instant::now();
        for op in OPS {
            w.op(op);
        }
        report::print_window(&w);
        // A last sliver of a window (under a fifth) would only add noise.
        if !ended || w.seconds >= args.window.as_secs_f64() / 5.0 || windows.is_empty() {
            windows.push(w);
        }
        if ended {
            return windows;
        }
    }
}
