//! `berth bench placement`: placement decisions per second on a synthetic
//! cluster, natively and through a policy component.

use std::time::{Duration, Instant};

use anyhow::bail;
use berth_core::placement::{ClusterState, PlacementRequest, Placer, synthetic};
use clap::Args;
use serde::Serialize;

use super::Output;

#[derive(Debug, Args)]
pub struct PlacementArgs {
    /// Cluster sizes to measure (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000])]
    instances: Vec<usize>,
    /// Strategy chains: binpack, spread, random, spread-binpack, default
    /// (default: spread-binpack; with --policy, the chain named like the
    /// policy, else binpack).
    #[arg(long, value_delimiter = ',')]
    strategy: Vec<String>,
    /// Also place through this policy component (a .wasm built for
    /// wasm32-wasip2), on the same cluster and tasks as the native cases.
    #[arg(long)]
    policy: Option<std::path::PathBuf>,
    /// With --policy: where the policy's log lines go, a file (appended
    /// to) or `-` for stderr; dropped when not given. `BERTH_LOG` or
    /// `RUST_LOG` (e.g. `warn`) filters them either way.
    #[arg(long, value_name = "FILE|-", requires = "policy")]
    pub policy_log: Option<std::path::PathBuf>,
    /// Place on the cluster this JSON file describes (instances with CPU,
    /// memory, zone and attributes, and the task; see docs/benchmarks.md)
    /// instead of the synthetic ones of --instances.
    #[arg(long, value_name = "FILE", conflicts_with = "instances")]
    cluster: Option<std::path::PathBuf>,
    /// With --policy: give each policy case a `ratio` (its time per decision
    /// over the native strategy's of the same case).
    #[arg(long, requires = "policy")]
    compare: bool,
    /// Tasks per placement call (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 10])]
    count: Vec<usize>,
    /// Time spent measuring each case.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Seed of the synthetic cluster and of random placement.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// One measured case; the JSON line scripts compare.
#[derive(Debug, Serialize)]
struct PlacementCase<'a> {
    instances: usize,
    strategy: &'a str,
    count: usize,
    decisions: u64,
    seconds: f64,
    decisions_per_sec: f64,
    ns_per_decision: f64,
    failures: u64,
    /// Policy cases with --compare: time per decision over the native one.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<f64>,
    /// Policy cases: a fresh instance created and fully synced, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    cold_start_ms: Option<f64>,
}

pub fn run(args: &PlacementArgs) -> anyhow::Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number, not {}", args.seconds);
    }
    let policy = match &args.policy {
        Some(path) => Some(load_policy(path)?),
        None => None,
    };
    let mut names = args.strategy.clone();
    if names.is_empty() {
        let mirrored = policy
            .as_ref()
            .map(|(_, p, _)| p.name.clone())
            .filter(|n| synthetic::strategy_chain(n).is_some());
        names.push(mirrored.unwrap_or_else(|| {
            if policy.is_some() {
                "binpack"
            } else {
                "spread-binpack"
            }
            .to_owned()
        }));
    }
    let mut chains = Vec::new();
    for name in &names {
        match synthetic::strategy_chain(name) {
            Some(c) => chains.push((name.as_str(), c)),
            None => bail!(
                "--strategy {name}: not one of {}",
                synthetic::STRATEGY_CHAINS.join(", ")
            ),
        }
    }
    let file = match &args.cluster {
        Some(path) => Some(super::cluster_file::ClusterFile::load(path)?),
        None => None,
    };
    if let Some(c) = args.count.iter().find(|c| **c == 0 || **c > 10) {
        bail!("--count {c}: RunTask places 1 to 10 tasks per call");
    }
    let budget = Duration::from_secs_f64(args.seconds);
    if args.output == Output::Table {
        println!(
            "{:>9}  {:<15} {:>5}  {:>14}  {:>12}  {:>8}  {:>6}  {:>8}",
            "instances",
            "strategy",
            "count",
            "decisions/s",
            "ns/decision",
            "failures",
            "ratio",
            "cold ms"
        );
    }
    let sizes = match &file {
        Some(f) => vec![f.len()],
        None => args.instances.clone(),
    };
    for n in sizes {
        let mut state = match &file {
            Some(f) => f.state(),
            None => synthetic::cluster(n, args.seed),
        };
        for (name, chain) in &chains {
            let req = match &file {
                Some(f) => f.request(chain)?,
                None => synthetic::request(chain),
            };
            for &count in &args.count {
                let mut placer = Placer::new(args.seed);
                // Warm the per-state caches (constraint results, value columns) first.
                placer.place(&mut state.clone(), &req, count);
                let mut native = Tally::default();
                let mut wasm = match &policy {
                    Some((file, p, host)) => Some((file, PolicyRun::start(host, p, &state)?)),
                    None => None,
                };
                // Native and policy take turns in short slices on the same
                // cluster, so both see the same load on a shared machine and
                // the ratio compares like with like.
                loop {
                    let native_due = native.spent < budget;
                    let wasm_due = wasm.as_ref().is_some_and(|(_, w)| w.tally.spent < budget);
                    if !native_due && !wasm_due {
                        break;
                    }
                    if native_due {
                        native_slice(&mut placer, &mut state, &req, count, &mut native);
                    }
                    if let Some((_, w)) = wasm.as_mut()
                        && wasm_due
                    {
                        w.slice(&mut state, &req, count);
                    }
                }
                let case = native.case(n, name, count);
                print_case(args.output, &case)?;
                if let Some((file, w)) = wasm {
                    let mut pc = w.tally.case(n, file, count);
                    pc.cold_start_ms = Some(w.cold.as_secs_f64() * 1e3);
                    if args.compare {
                        pc.ratio = Some(pc.ns_per_decision / case.ns_per_decision);
                    }
                    print_case(args.output, &pc)?;
                }
            }
        }
    }
    Ok(())
}

/// Length of one turn of a side of a case.
const SLICE: Duration = Duration::from_millis(20);

/// What one side of a case (native or policy) did so far.
#[derive(Debug, Default)]
struct Tally {
    decisions: u64,
    failures: u64,
    /// Time inside placement calls only.
    spent: Duration,
}

impl Tally {
    fn case<'a>(&self, instances: usize, strategy: &'a str, count: usize) -> PlacementCase<'a> {
        let secs = self.spent.as_secs_f64();
        PlacementCase {
            instances,
            strategy,
            count,
            decisions: self.decisions,
            seconds: secs,
            decisions_per_sec: self.decisions as f64 / secs,
            ns_per_decision: secs * 1e9 / self.decisions as f64,
            failures: self.failures,
            ratio: None,
            cold_start_ms: None,
        }
    }
}

/// One slice of native placements; every placed task is freed again so
/// every call sees the same cluster.
fn native_slice(
    placer: &mut Placer,
    state: &mut ClusterState,
    req: &PlacementRequest,
    count: usize,
    tally: &mut Tally,
) {
    let end = tally.spent + SLICE;
    while tally.spent < end {
        let t0 = Instant::now();
        let out = placer.place(state, req, count);
        tally.spent += t0.elapsed();
        tally.decisions += out.len() as u64;
        for p in out {
            match p {
                Ok(p) => {
                    let ports: Vec<_> = p
                        .dynamic_host_ports
                        .iter()
                        .map(|&port| (port, berth_core::model::Protocol::Tcp))
                        .collect();
                    state.remove_task(p.instance, &req.task, &ports);
                }
                Err(_) => tally.failures += 1,
            }
        }
    }
}

fn print_case(output: Output, case: &PlacementCase<'_>) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string(case)?),
        Output::Table => println!(
            "{:>9}  {:<15} {:>5}  {:>14.0}  {:>12.0}  {:>8}  {:>6}  {:>8}",
            case.instances,
            case.strategy,
            case.count,
            case.decisions_per_sec,
            case.ns_per_decision,
            case.failures,
            case.ratio.map_or(String::new(), |r| format!("{r:.2}")),
            case.cold_start_ms
                .map_or(String::new(), |c| format!("{c:.1}")),
        ),
    }
    Ok(())
}

type Policy = (
    String,
    std::sync::Arc<berth_policy::LoadedPolicy>,
    std::sync::Arc<berth_policy::PolicyHost>,
);

fn load_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("--policy {}", path.display()))?;
    let host = std::sync::Arc::new(
        berth_policy::PolicyHost::new(berth_policy::HostConfig::default())
            .context("policy host")?,
    );
    let compiled = host
        .compile(&bytes)
        .with_context(|| format!("--policy {}", path.display()))?;
    let loaded = berth_policy::LoadedPolicy::from_compiled(&host, compiled)
        .map_err(|e| anyhow::anyhow!("--policy {}: {e}", path.display()))?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    Ok((name, std::sync::Arc::new(loaded), host))
}

/// The policy side of a case: a session on the same cluster and tasks as
/// the native side. Freed tasks reach the policy's mirror as usage changes
/// with the next decision, so their cost is part of the figure.
struct PolicyRun {
    session: berth_policy::PolicySession,
    /// A fresh instance created and fully synced.
    cold: Duration,
    tally: Tally,
}

impl PolicyRun {
    fn start(
        host: &std::sync::Arc<berth_policy::PolicyHost>,
        policy: &std::sync::Arc<berth_policy::LoadedPolicy>,
        state: &ClusterState,
    ) -> anyhow::Result<PolicyRun> {
        use anyhow::Context;
        let mut session = berth_policy::PolicySession::new(host.clone(), policy.clone());
        let t0 = Instant::now();
        session.warm_up(state).context("policy cold start")?;
        Ok(PolicyRun {
            session,
            cold: t0.elapsed(),
            tally: Tally::default(),
        })
    }

    fn slice(&mut self, state: &mut ClusterState, req: &PlacementRequest, count: usize) {
        let tally = &mut self.tally;
        let end = tally.spent + SLICE;
        while tally.spent < end {
            let t0 = Instant::now();
            let out = match self.session.place(state, req, count) {
                Ok(out) => out,
                // Counted, like the native failures; the session starts afresh.
                Err(_) => {
                    tally.spent += t0.elapsed();
                    tally.decisions += count as u64;
                    tally.failures += count as u64;
                    continue;
                }
            };
            tally.spent += t0.elapsed();
            tally.decisions += out.len() as u64;
            for p in out {
                match p {
                    Ok(p) => {
                        state.remove_task(
                            p.instance,
                            &req.task,
                            &berth_policy::host_ports(req, &p),
                        );
                        self.session.usage_changed(p.instance);
                    }
                    Err(_) => tally.failures += 1,
                }
            }
        }
    }
}
