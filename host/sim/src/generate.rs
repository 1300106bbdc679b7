//! Synthetic workloads, reproducible from a seed: `synthetic:NAME[:TASKS]`.
//!
//! - `uniform`: TASKS identical tasks (256 CPU units, 512 MiB) arriving at
//!   time 0 and running to the end: the analytic case.
//! - `batch`: Poisson arrivals of tasks whose sizes mix small and large
//!   (most small, a few large, CPU-heavy and memory-heavy ones among them)
//!   and whose durations are heavy-tailed (Pareto, shape 1.3: most run
//!   seconds to minutes, a few for hours), in the shape published cluster
//!   traces (Google's, Alibaba's) show; the arrival rate is set so the
//!   reservations come to about 70% of the cluster's memory or CPU by the
//!   end of the arrival window.
//! - `mixed`: long-running services (with replicas, placed in the first
//!   minute: a tenth of the tasks, or fewer when they come to 30% of the
//!   cluster) under `batch` churn (about 45%).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::workload::{Builder, FOREVER, Workload, simple_kind};

pub const NAMES: [&str; 3] = ["uniform", "batch", "mixed"];

/// Default task count.
const DEFAULT_TASKS: u64 = 10_000;
const MAX_TASKS: u64 = 50_000_000;

/// (CPU units, MiB, weight): mostly small; CPU-heavy and memory-heavy shapes.
const SIZES: [(u32, u32, u32); 8] = [
    (128, 256, 30),
    (256, 512, 25),
    (512, 1024, 15),
    (256, 2048, 10),
    (1024, 1024, 8),
    (1024, 4096, 7),
    (2048, 8192, 4),
    (4096, 4096, 1),
];

/// Pareto shape and scale (seconds) of batch durations, and their cap.
const PARETO_SHAPE: f64 = 1.3;
const PARETO_SCALE_S: f64 = 20.0;
const MAX_DURATION_S: f64 = 86_400.0;

/// Families batch tasks belong to (their groups, for spread).
const FAMILIES: u32 = 20;

/// Parses `NAME[:TASKS]` (after `synthetic:`).
pub fn parse(spec: &str) -> Result<(&str, u64), String> {
    let (name, tasks) = match spec.split_once(':') {
        Some((n, t)) => (
            n,
            t.parse::<u64>()
                .map_err(|_| format!("synthetic:{spec}: `{t}` is not a task count"))?,
        ),
        None => (spec, DEFAULT_TASKS),
    };
    if !NAMES.contains(&name) {
        return Err(format!("synthetic:{name}: not one of {}", NAMES.join(", ")));
    }
    if tasks == 0 || tasks > MAX_TASKS {
        return Err(format!("synthetic:{spec}: give 1 to {MAX_TASKS} tasks"));
    }
    Ok((name, tasks))
}

/// The workload `NAME[:TASKS]` for a cluster of this capacity (CPU units, MiB).
pub fn generate(spec: &str, capacity: (u64, u64), seed: u64) -> Result<Workload, String> {
    let (name, tasks) = parse(spec)?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut b = Builder::default();
    match name {
        "uniform" => {
            let k = b.kind(simple_kind("family:uniform", 256, 512))?;
            for _ in 0..tasks {
                b.task(0, FOREVER, k);
            }
        }
        "batch" => batch(&mut b, &mut rng, tasks, capacity, 0.7, 0)?,
        _ => {
            let (services, used) = services_part(&mut b, &mut rng, (tasks / 10).max(1), capacity)?;
            let left = (
                capacity.0.saturating_sub(used.0),
                capacity.1.saturating_sub(used.1),
            );
            let scale = |part: u64, all: u64| {
                if all == 0 {
                    0.0
                } else {
                    part as f64 / all as f64
                }
            };
            // What is left for batch, as a share of what the services left.
            let share = 0.45
                / scale(left.1, capacity.1)
                    .max(scale(left.0, capacity.0))
                    .max(0.1);
            batch(
                &mut b,
                &mut rng,
                tasks - services,
                left,
                share.min(0.9),
                60_000,
            )?;
        }
    }
    Ok(b.finish())
}

fn pick_size(rng: &mut SmallRng) -> (u32, u32) {
    let total: u32 = SIZES.iter().map(|s| s.2).sum();
    let mut x = rng.random_range(0..total);
    for &(c, m, w) in &SIZES {
        if x < w {
            return (c, m);
        }
        x -= w;
    }
    (SIZES[0].0, SIZES[0].1)
}

/// A Pareto draw by inverse transform, capped; in milliseconds (at least 1).
fn pareto_ms(rng: &mut SmallRng) -> u64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let s = (PARETO_SCALE_S / u.powf(1.0 / PARETO_SHAPE)).min(MAX_DURATION_S);
    ((s * 1000.0).round() as u64).max(1)
}

/// Exponential inter-arrival time in ms for `rate` per ms.
fn exp_ms(rng: &mut SmallRng, rate: f64) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    -u.ln() / rate
}

/// `n` batch tasks from `start_ms`, at a rate that reserves `load` of `capacity`.
fn batch(
    b: &mut Builder,
    rng: &mut SmallRng,
    n: u64,
    capacity: (u64, u64),
    load: f64,
    start_ms: u64,
) -> Result<(), String> {
    let drawn: Vec<(u32, u32, u64, u32)> = (0..n)
        .map(|_| {
            let (c, m) = pick_size(rng);
            (c, m, pareto_ms(rng), rng.random_range(0..FAMILIES))
        })
        .collect();
    // Little's law: reserved = rate * mean(size * duration), durations cut
    // at the arrival window (rate and window settle in a few rounds), so
    // the load is reached by the window's end.
    let per_task = |window: f64| {
        let (mut cpu_ms, mut mem_ms) = (0f64, 0f64);
        for &(c, m, d, _) in &drawn {
            cpu_ms += f64::from(c) * (d as f64).min(window);
            mem_ms += f64::from(m) * (d as f64).min(window);
        }
        (cpu_ms / capacity.0.max(1) as f64).max(mem_ms / capacity.1.max(1) as f64) / n.max(1) as f64
    };
    let mut rate = 1.0;
    let mut window = f64::INFINITY;
    for _ in 0..4 {
        let p = per_task(window);
        rate = if p > 0.0 { load / p } else { 1.0 };
        window = n as f64 / rate;
    }
    let mut t = start_ms as f64;
    for (c, m, d, fam) in drawn {
        t += exp_ms(rng, rate);
        let k = b.kind(simple_kind(&format!("family:batch-{fam}"), c, m))?;
        b.task(t.round() as u64, d, k);
    }
    Ok(())
}

/// Up to `n` service tasks (replicas of services of a few sizes) arriving
/// in the first minute, running to the end, until they reserve 30% of the
/// cluster's CPU or memory; how many, and what they reserve.
fn services_part(
    b: &mut Builder,
    rng: &mut SmallRng,
    n: u64,
    capacity: (u64, u64),
) -> Result<(u64, (u64, u64)), String> {
    let mut used = (0u64, 0u64);
    let mut made = 0;
    let mut s = 0;
    let full = |used: (u64, u64)| used.0 * 10 >= capacity.0 * 3 || used.1 * 10 >= capacity.1 * 3;
    while made < n && !full(used) {
        let (c, m) = pick_size(rng);
        let replicas = rng.random_range(2..=12u64).min(n - made);
        let k = b.kind(simple_kind(&format!("service:svc-{s}"), c, m))?;
        for _ in 0..replicas {
            b.task(rng.random_range(0..60_000), FOREVER, k);
            used.0 += u64::from(c);
            used.1 += u64::from(m);
        }
        made += replicas;
        s += 1;
    }
    Ok((made, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_reproducible_and_heavy_tailed() {
        let cap = (100 * 4096, 100 * 16384);
        let a = generate("batch:5000", cap, 7).expect("batch");
        let b = generate("batch:5000", cap, 7).expect("batch");
        assert_eq!(a.tasks, b.tasks);
        assert_eq!(a.tasks.len(), 5000);
        let mut d: Vec<u64> = a.tasks.iter().map(|t| t.duration_ms).collect();
        d.sort_unstable();
        let (median, p99) = (d[d.len() / 2], d[d.len() * 99 / 100]);
        // Heavy tail: the 99th percentile is far above the median.
        assert!(p99 > 10 * median, "median {median} p99 {p99}");
        let m = generate("mixed:1000", cap, 7).expect("mixed");
        assert_eq!(m.tasks.len(), 1000);
        assert!(m.tasks.iter().any(|t| t.duration_ms == FOREVER));
        assert!(parse("nope").is_err());
        assert!(parse("batch:x").is_err());
    }
}
