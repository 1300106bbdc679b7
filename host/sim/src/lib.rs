//! # berth-sim: `berth sim`, placement policies tried on a workload first
//!
//! A discrete-event simulation in virtual time (nothing sleeps): tasks of a
//! workload ([`workload`], JSON lines or a generator of [`generate`]) arrive
//! at a simulated cluster ([`cluster`]: instance shapes, zones, attributes,
//! instances joining, draining and lost), are placed, run their duration
//! and leave. Placement goes through berth's real engine: the same
//! `ClusterState`, `Placer` and, for a policy component, the same
//! `PolicySession` (mirror, deltas, deadline, memory limit, every answer
//! checked by `place_on`) and native fallback as the server; there is no
//! second implementation of any of it here.
//!
//! [`simulate`] runs each policy on the same workload and cluster and gives
//! a [`report::Report`] (policies side by side) and the runs' samples for
//! [`chart::draw`]. The same seed gives the same report, byte for byte;
//! decision latency is wall-clock time and is reported only on request.

pub mod chart;
pub mod cluster;
pub mod compact;
pub mod convert;
pub mod engine;
pub mod generate;
pub mod report;
pub mod workload;

use std::sync::Arc;

use berth_core::placement::synthetic;
use berth_policy::{Fallback, LoadedPolicy, PolicyHost};

pub use cluster::ClusterSpec;
pub use engine::{PolicyChoice, RunOptions, RunResult};
pub use report::{PolicyReport, Report};
pub use workload::Workload;

/// What to simulate.
#[derive(Debug)]
pub struct SimConfig {
    /// How the workload was given (`synthetic:batch:1000`, a path).
    pub workload_name: String,
    pub workload: Workload,
    pub cluster_name: String,
    pub cluster: ClusterSpec,
    pub policies: Vec<PolicyChoice>,
    pub seed: u64,
    /// Also find each policy's smallest cluster (several runs each).
    pub compact: bool,
    /// Report wall-clock decision latency (the report then differs run to run).
    pub timings: bool,
}

/// Runs every policy; the report and each run's result, in policy order.
pub fn simulate(cfg: &SimConfig) -> Result<(Report, Vec<RunResult>), String> {
    let mut reports = Vec::new();
    let mut runs = Vec::new();
    for p in &cfg.policies {
        let opts = RunOptions {
            seed: cfg.seed,
            stop_at_first_wait: false,
        };
        let r = engine::run(&cfg.workload, &cfg.cluster, p, opts)
            .map_err(|e| format!("{}: {e}", p.label()))?;
        let mut rep = PolicyReport::new(p.label(), &r, cfg.timings);
        if cfg.compact {
            rep.smallest_cluster = Some(compact::smallest_cluster(
                &cfg.workload,
                &cfg.cluster,
                p,
                cfg.seed,
            )?);
        }
        reports.push(rep);
        runs.push(r);
    }
    let report = Report {
        workload: cfg.workload_name.clone(),
        tasks: cfg.workload.tasks.len() as u64,
        events: cfg.workload.events(),
        cluster: cfg.cluster_name.clone(),
        instances: cfg.cluster.len(),
        zones: cfg.cluster.zones(),
        seed: cfg.seed,
        policies: reports,
    };
    Ok((report, runs))
}

/// `native:NAME` (a chain of `berth bench placement`: binpack, spread,
/// random, spread-binpack, default), `native` (each task's own strategy),
/// or the path of a policy component, loaded into `host`.
pub fn policy_choice(
    arg: &str,
    host: &dyn Fn() -> Result<Arc<PolicyHost>, String>,
    fallback: Fallback,
) -> Result<PolicyChoice, String> {
    if arg == "native" {
        return Ok(PolicyChoice::Native {
            label: arg.to_owned(),
            strategy: None,
        });
    }
    if let Some(name) = arg.strip_prefix("native:") {
        let strategy = synthetic::strategy_chain(name).ok_or_else(|| {
            format!(
                "--policy {arg}: not one of native, native:{}",
                synthetic::STRATEGY_CHAINS.join(", native:")
            )
        })?;
        return Ok(PolicyChoice::Native {
            label: arg.to_owned(),
            strategy: Some(strategy),
        });
    }
    let bytes = std::fs::read(arg).map_err(|e| {
        format!("--policy {arg}: not native[:CHAIN] and not a readable policy component: {e}")
    })?;
    let host = host()?;
    let compiled = host
        .compile(&bytes)
        .map_err(|e| format!("--policy {arg}: {e}"))?;
    let policy =
        LoadedPolicy::from_compiled(&host, compiled).map_err(|e| format!("--policy {arg}: {e}"))?;
    let file = std::path::Path::new(arg)
        .file_name()
        .map_or_else(|| arg.to_owned(), |f| f.to_string_lossy().into_owned());
    Ok(PolicyChoice::Wasm {
        label: file,
        host,
        policy: Arc::new(policy),
        fallback,
    })
}
