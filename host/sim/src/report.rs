//! Figures of a run, policies side by side: a table for people, JSON for
//! scripts. Everything here is a function of virtual time and the seed
//! (byte for byte the same on every run), except the decision latency,
//! which is wall-clock time and is reported only when asked for.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::engine::RunResult;

/// p50 and p99 of something.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pct {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Mean and p99 over the samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub p99: f64,
}

/// One policy's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    pub decisions: u64,
    pub placed: u64,
    /// Tasks that could not be placed when they arrived, and why.
    pub waited: u64,
    pub failures: BTreeMap<String, u64>,
    pub unplaced_at_end: u64,
    /// Seconds from arrival (or loss of the host) to placement, over placements.
    pub pending_s: Pct,
    /// Fractions of the capacity of the instances up.
    pub cpu_utilisation: Spread,
    pub memory_utilisation: Spread,
    /// CPU free where no task's memory fits, and the reverse (fractions of capacity).
    pub stranded_cpu: Spread,
    pub stranded_memory: Spread,
    /// Instances holding at least one task (what packing saves).
    pub busy_instances: Spread,
    /// (most - fewest) / mean running tasks per zone; None with fewer than two zones.
    pub zone_imbalance: Option<Spread>,
    /// Failed policy decisions by kind.
    pub policy_failures: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_failure_example: Option<String>,
    pub fallback_decisions: u64,
    pub lost_tasks: u64,
    /// The fewest starting instances the workload fits in (no task waits),
    /// by bisection; only with compaction asked for (None there: not even
    /// the whole cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smallest_cluster: Option<Option<u64>>,
    /// Wall-clock microseconds per decision; only when timings are asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_latency_us: Option<Pct>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub workload: String,
    pub tasks: u64,
    pub events: u64,
    pub cluster: String,
    pub instances: u64,
    pub zones: Vec<String>,
    pub seed: u64,
    pub policies: Vec<PolicyReport>,
}

/// Rounded so the JSON reads well and stays the same across platforms' printing.
fn r4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn pct_of(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn pct(mut v: Vec<u64>, scale: f64) -> Pct {
    v.sort_unstable();
    Pct {
        p50: r4(pct_of(&v, 0.5) as f64 / scale),
        p99: r4(pct_of(&v, 0.99) as f64 / scale),
        max: r4(v.last().copied().unwrap_or(0) as f64 / scale),
    }
}

fn spread(mut v: Vec<f64>) -> Spread {
    if v.is_empty() {
        return Spread {
            mean: 0.0,
            p99: 0.0,
        };
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.sort_by(f64::total_cmp);
    let p99 = v[((v.len() - 1) as f64 * 0.99).round() as usize];
    Spread {
        mean: r4(mean),
        p99: r4(p99),
    }
}

impl PolicyReport {
    pub fn new(policy: &str, r: &RunResult, timings: bool) -> PolicyReport {
        let s = &r.samples;
        let zones: Vec<f64> = s.iter().filter_map(|x| x.zone_imbalance).collect();
        PolicyReport {
            policy: policy.to_owned(),
            decisions: r.decisions,
            placed: r.placed,
            waited: r.waited,
            failures: r.first_failures.clone(),
            unplaced_at_end: r.unplaced_at_end,
            pending_s: pct(r.wait_ms.clone(), 1000.0),
            cpu_utilisation: spread(s.iter().map(|x| x.cpu).collect()),
            memory_utilisation: spread(s.iter().map(|x| x.memory).collect()),
            stranded_cpu: spread(s.iter().map(|x| x.stranded_cpu).collect()),
            stranded_memory: spread(s.iter().map(|x| x.stranded_memory).collect()),
            busy_instances: spread(s.iter().map(|x| x.busy_instances as f64).collect()),
            zone_imbalance: (!zones.is_empty()).then(|| spread(zones)),
            policy_failures: r.policy_failures.clone(),
            policy_failure_example: r.policy_failure_example.clone(),
            fallback_decisions: r.fallback_decisions,
            lost_tasks: r.lost_tasks,
            smallest_cluster: None,
            decision_latency_us: timings.then(|| pct(r.latency_ns.clone(), 1000.0)),
        }
    }
}

fn pc(x: f64) -> String {
    format!("{:.1}", x * 100.0)
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    /// The table for people: one column per policy.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "berth sim: {} ({} tasks, {} events) on {} ({} instances{}), seed {}",
            self.workload,
            self.tasks,
            self.events,
            self.cluster,
            self.instances,
            if self.zones.is_empty() {
                String::new()
            } else {
                format!(", zones {}", self.zones.join("/"))
            },
            self.seed
        );
        type Row = (&'static str, fn(&PolicyReport) -> String);
        let rows: [Row; 16] = [
            ("decisions", |p| p.decisions.to_string()),
            ("placed", |p| p.placed.to_string()),
            ("waited on arrival", |p| p.waited.to_string()),
            ("  why", |p| counts(&p.failures)),
            ("unplaced at end", |p| p.unplaced_at_end.to_string()),
            ("pending p50/p99 s", |p| {
                format!("{}/{}", p.pending_s.p50, p.pending_s.p99)
            }),
            ("cpu used mean/p99 %", |p| {
                format!(
                    "{}/{}",
                    pc(p.cpu_utilisation.mean),
                    pc(p.cpu_utilisation.p99)
                )
            }),
            ("mem used mean/p99 %", |p| {
                format!(
                    "{}/{}",
                    pc(p.memory_utilisation.mean),
                    pc(p.memory_utilisation.p99)
                )
            }),
            ("stranded cpu/mem %", |p| {
                format!("{}/{}", pc(p.stranded_cpu.mean), pc(p.stranded_memory.mean))
            }),
            ("busy instances mean/p99", |p| {
                format!("{:.1}/{}", p.busy_instances.mean, p.busy_instances.p99)
            }),
            ("zone imbalance mean/p99", |p| {
                p.zone_imbalance
                    .map_or("-".into(), |z| format!("{:.2}/{:.2}", z.mean, z.p99))
            }),
            ("policy failures", |p| counts(&p.policy_failures)),
            ("fallback decisions", |p| p.fallback_decisions.to_string()),
            ("tasks lost with hosts", |p| p.lost_tasks.to_string()),
            ("smallest cluster", |p| match p.smallest_cluster {
                None => "-".into(),
                Some(None) => "does not fit".into(),
                Some(Some(n)) => format!("{n} instances"),
            }),
            ("decision p50/p99 us", |p| {
                p.decision_latency_us
                    .map_or("-".into(), |l| format!("{:.1}/{:.1}", l.p50, l.p99))
            }),
        ];
        let cells: Vec<Vec<String>> = self
            .policies
            .iter()
            .map(|p| rows.iter().map(|(_, f)| f(p)).collect())
            .collect();
        let label_w = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let widths: Vec<usize> = self
            .policies
            .iter()
            .zip(&cells)
            .map(|(p, c)| {
                c.iter()
                    .map(String::len)
                    .max()
                    .unwrap_or(0)
                    .max(p.policy.len())
            })
            .collect();
        let _ = write!(out, "{:label_w$}", "");
        for (p, w) in self.policies.iter().zip(&widths) {
            let _ = write!(out, "  {:>w$}", p.policy);
        }
        out.push('\n');
        for (r, (label, _)) in rows.iter().enumerate() {
            let _ = write!(out, "{label:label_w$}");
            for (c, w) in cells.iter().zip(&widths) {
                let _ = write!(out, "  {:>w$}", c[r]);
            }
            out.push('\n');
        }
        for p in &self.policies {
            if let Some(e) = &p.policy_failure_example {
                let _ = writeln!(out, "{}: first policy failure: {e}", p.policy);
            }
        }
        out
    }
}
