//! `berth bench`: berth's speed measured by berth, so operators can compare
//! machines and (later) policies in one run.

use std::time::{Duration, Instant};

use anyhow::bail;
use berth_core::placement::{Placer, synthetic};
use clap::Args;
use serde::Serialize;

use crate::Output;

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

pub fn placement(args: &PlacementArgs) -> anyhow::Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number, not {}", args.seconds);
    }
    let policy = match &args.policy {
        Some(path) => Some(load_policy(path)?),
        None => None,
    };
    let mut names = args.strategy.clone();
    if names.is_empty() {
        let mirrored = policy.as_ref().map(|(_, p, _)| p.name.clone()).filter(|n| synthetic::strategy_chain(n).is_some());
        names.push(mirrored.unwrap_or_else(|| if policy.is_some() { "binpack" } else { "spread-binpack" }.to_owned()));
    }
    let mut chains = Vec::new();
    for name in &names {
        match synthetic::strategy_chain(name) {
            Some(c) => chains.push((name.as_str(), c)),
            None => bail!("--strategy {name}: not one of {}", synthetic::STRATEGY_CHAINS.join(", ")),
        }
    }
    if let Some(c) = args.count.iter().find(|c| **c == 0 || **c > 10) {
        bail!("--count {c}: RunTask places 1 to 10 tasks per call");
    }
    let budget = Duration::from_secs_f64(args.seconds);
    if args.output == Output::Table {
        println!(
            "{:>9}  {:<15} {:>5}  {:>14}  {:>12}  {:>8}  {:>6}  {:>8}",
            "instances", "strategy", "count", "decisions/s", "ns/decision", "failures", "ratio", "cold ms"
        );
    }
    for &n in &args.instances {
        let mut state = synthetic::cluster(n, args.seed);
        for (name, chain) in &chains {
            let req = synthetic::request(chain);
            for &count in &args.count {
                let mut placer = Placer::new(args.seed);
                let (mut decisions, mut failures) = (0u64, 0u64);
                let mut spent = Duration::ZERO;
                // Warm the per-state caches (constraint results, value columns) first.
                placer.place(&mut state.clone(), &req, count);
                while spent < budget {
                    let t0 = Instant::now();
                    let out = placer.place(&mut state, &req, count);
                    spent += t0.elapsed();
                    decisions += out.len() as u64;
                    // Free what was placed so every call sees the same cluster.
                    for p in out {
                        match p {
                            Ok(p) => {
                                let ports: Vec<_> = p.dynamic_host_ports.iter().map(|&port| (port, berth_core::model::Protocol::Tcp)).collect();
                                state.remove_task(p.instance, &req.task, &ports);
                            }
                            Err(_) => failures += 1,
                        }
                    }
                }
                let secs = spent.as_secs_f64();
                let case = PlacementCase {
                    instances: n,
                    strategy: name,
                    count,
                    decisions,
                    seconds: secs,
                    decisions_per_sec: decisions as f64 / secs,
                    ns_per_decision: secs * 1e9 / decisions as f64,
                    failures,
                    ratio: None,
                    cold_start_ms: None,
                };
                print_case(args.output, &case)?;
                if let Some((file, p, host)) = &policy {
                    let mut pc = bench_policy(host, p, &mut state, &req, count, budget)?;
                    pc.instances = n;
                    pc.strategy = file;
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
            case.cold_start_ms.map_or(String::new(), |c| format!("{c:.1}")),
        ),
    }
    Ok(())
}

type Policy = (String, std::sync::Arc<berth_policy::LoadedPolicy>, std::sync::Arc<berth_policy::PolicyHost>);

fn load_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("--policy {}", path.display()))?;
    let host = std::sync::Arc::new(berth_policy::PolicyHost::new(berth_policy::HostConfig::default()).context("policy host")?);
    let compiled = host.compile(&bytes).with_context(|| format!("--policy {}", path.display()))?;
    let loaded = berth_policy::LoadedPolicy::from_compiled(&host, compiled)
        .map_err(|e| anyhow::anyhow!("--policy {}: {e}", path.display()))?;
    let name = path.file_name().map_or_else(|| path.display().to_string(), |f| f.to_string_lossy().into_owned());
    Ok((name, std::sync::Arc::new(loaded), host))
}

/// The same loop as the native cases, through a policy session. Freed
/// tasks reach the policy's mirror as usage deltas on the next decision,
/// so their cost is part of the figure.
fn bench_policy<'a>(
    host: &std::sync::Arc<berth_policy::PolicyHost>,
    policy: &std::sync::Arc<berth_policy::LoadedPolicy>,
    state: &mut berth_core::placement::ClusterState,
    req: &berth_core::placement::PlacementRequest,
    count: usize,
    budget: Duration,
) -> anyhow::Result<PlacementCase<'a>> {
    use anyhow::Context;
    let mut session = berth_policy::PolicySession::new(host.clone(), policy.clone());
    let t0 = Instant::now();
    session.warm_up(state).context("policy cold start")?;
    let cold = t0.elapsed();
    let (mut decisions, mut failures) = (0u64, 0u64);
    let mut spent = Duration::ZERO;
    while spent < budget {
        let t0 = Instant::now();
        let out = match session.place(state, req, count) {
            Ok(out) => out,
            // Counted, like the native failures; the session starts afresh.
            Err(_) => {
                spent += t0.elapsed();
                decisions += count as u64;
                failures += count as u64;
                continue;
            }
        };
        spent += t0.elapsed();
        decisions += out.len() as u64;
        for p in out {
            match p {
                Ok(p) => {
                    state.remove_task(p.instance, &req.task, &berth_policy::host_ports(req, &p));
                    session.usage_changed(p.instance);
                }
                Err(_) => failures += 1,
            }
        }
    }
    let secs = spent.as_secs_f64();
    Ok(PlacementCase {
        instances: 0,
        strategy: "",
        count,
        decisions,
        seconds: secs,
        decisions_per_sec: decisions as f64 / secs,
        ns_per_decision: secs * 1e9 / decisions as f64,
        failures,
        ratio: None,
        cold_start_ms: Some(cold.as_secs_f64() * 1e3),
    })
}
