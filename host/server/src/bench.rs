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
    /// Strategy chains: binpack, spread, random, spread-binpack, default.
    #[arg(long, value_delimiter = ',', default_values_t = ["spread-binpack".to_owned()])]
    strategy: Vec<String>,
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
}

pub fn placement(args: &PlacementArgs) -> anyhow::Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number, not {}", args.seconds);
    }
    let mut chains = Vec::new();
    for name in &args.strategy {
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
        println!("{:>9}  {:<15} {:>5}  {:>14}  {:>12}  {:>8}", "instances", "strategy", "count", "decisions/s", "ns/decision", "failures");
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
                };
                match args.output {
                    Output::Json => println!("{}", serde_json::to_string(&case)?),
                    Output::Table => println!(
                        "{:>9}  {:<15} {:>5}  {:>14.0}  {:>12.0}  {:>8}",
                        case.instances, case.strategy, case.count, case.decisions_per_sec, case.ns_per_decision, case.failures
                    ),
                }
            }
        }
    }
    Ok(())
}
