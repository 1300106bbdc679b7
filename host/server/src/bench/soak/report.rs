//! Printing the soak's figures, and its summary (JSON) written for a later
//! run to compare against.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::SoakArgs;
use super::figures::{OPS, OpSummary, RssTrend, THROTTLED, Window, blocks, p99_ratios, rss_trend};
use super::seed::{Seeding, store_mib};

/// One span of the run (a block, or the whole run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Span {
    pub start_minute: f64,
    pub minutes: f64,
    pub ops: BTreeMap<String, OpSummary>,
    pub rss_max_mib: Option<f64>,
    pub rss_last_mib: Option<f64>,
    pub cpu_percent: Option<f64>,
}

impl Span {
    fn of(w: &Window) -> Span {
        Span {
            start_minute: w.start / 60.0,
            minutes: w.seconds / 60.0,
            ops: OPS
                .iter()
                .map(|op| ((*op).to_owned(), w.op_summary(op)))
                .collect(),
            rss_max_mib: w.rss_max,
            rss_last_mib: w.rss_last,
            cpu_percent: w.cpu_percent(),
        }
    }
}

/// What a run leaves for the next to compare with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub seeding: Seeding,
    pub run: Span,
    pub blocks: Vec<Span>,
    pub rss: Option<RssTrend>,
    pub store_mib_end: Option<f64>,
    /// p99 of this run over the baseline's, per operation.
    pub p99_ratio: BTreeMap<String, f64>,
}

pub fn read_summary(path: &Path) -> anyhow::Result<Summary> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a `berth bench soak --summary`", path.display()))
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

pub fn window_header() {
    let ops: Vec<String> = OPS
        .iter()
        .map(|op| format!("{op} req/s p50 p99 max (ms)"))
        .collect();
    println!(
        "min | {} | errors throttled | rss MiB | cpu %",
        ops.join(" | ")
    );
}

/// One window's line.
pub fn print_window(w: &Window) {
    let ops: Vec<String> = OPS
        .iter()
        .map(|op| {
            let s = w.op_summary(op);
            format!(
                "{:.0} {:.2} {:.2} {:.1}",
                s.per_second, s.p50_ms, s.p99_ms, s.max_ms
            )
        })
        .collect();
    let (mut errors, mut throttled) = (BTreeMap::<String, u64>::new(), 0);
    for r in w.ops.values() {
        throttled += r.throttled();
        for (c, n) in r.errors.iter().filter(|(c, _)| c.as_str() != THROTTLED) {
            *errors.entry(c.clone()).or_default() += n;
        }
    }
    println!(
        "{:>5.1} | {} | {errors:?} {throttled} | {} | {}",
        (w.start + w.seconds) / 60.0,
        ops.join(" | "),
        opt(w.rss_max),
        opt(w.cpu_percent())
    );
}

/// A span's rows of the Markdown table.
fn print_span(label: &str, s: &Span) {
    for (op, o) in &s.ops {
        let codes: Vec<String> = o
            .error_codes
            .iter()
            .filter(|(c, _)| c.as_str() != THROTTLED)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        println!(
            "| {label} | {op} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} | {} / {} | {} |",
            o.requests,
            o.per_second,
            o.p50_ms,
            o.p99_ms,
            o.max_ms,
            if codes.is_empty() {
                "0".into()
            } else {
                codes.join(", ")
            },
            o.throttled,
            opt(s.rss_max_mib),
            opt(s.rss_last_mib),
            opt(s.cpu_percent)
        );
    }
}

/// Prints the blocks, the whole run, the RSS judgment and the ratios to
/// the baseline; writes `--summary`.
pub fn finish(
    args: &SoakArgs,
    seeding: &Seeding,
    windows: &[Window],
    baseline: Option<&Summary>,
) -> anyhow::Result<()> {
    let per = (args.block.as_secs_f64() / args.window.as_secs_f64())
        .round()
        .max(1.0) as usize;
    let block_spans: Vec<Span> = blocks(windows, per).iter().map(Span::of).collect();
    let mut whole = Window::default();
    windows.iter().for_each(|w| whole.merge(w));
    let run = Span::of(&whole);
    println!();
    println!(
        "| minutes | op | requests | req/s | p50 ms | p99 ms | max ms | errors | throttled | RSS MiB most / last | server CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for b in &block_spans {
        let label = format!("{:.0}-{:.0}", b.start_minute, b.start_minute + b.minutes);
        print_span(&label, b);
    }
    print_span("whole run", &run);
    let rss = rss_trend(windows, per, args.rss_bound);
    let span = per.min(windows.len());
    match &rss {
        Some(t) => println!(
            "\nRSS: most {:.0} MiB in the first {span} windows, {:.0} MiB in the last {span}: x{:.2}, {} (bound x{:.2}); {:.0} MiB once seeded",
            t.first_max_mib,
            t.last_max_mib,
            t.ratio,
            if t.flat { "flat" } else { "NOT flat" },
            t.bound,
            seeding.rss_mib.unwrap_or(f64::NAN)
        ),
        None => println!("\nRSS: not sampled (give --server-pid)"),
    }
    let store_end = store_mib(args);
    if let Some(s) = store_end {
        println!(
            "store: {:.0} MiB once seeded, {s:.0} MiB at the end",
            seeding.store_mib.unwrap_or(f64::NAN)
        );
    }
    let p99_ratio = baseline
        .map(|b| p99_ratios(&run.ops, &b.run.ops))
        .unwrap_or_default();
    for (op, r) in &p99_ratio {
        println!(
            "p99 {op}: x{r:.2} of the fresh store's ({})",
            if *r <= 2.0 {
                "within 2x"
            } else {
                "NOT within 2x"
            }
        );
    }
    let summary = Summary {
        seeding: seeding.clone(),
        run,
        blocks: block_spans,
        rss,
        store_mib_end: store_end,
        p99_ratio,
    };
    println!("{}", serde_json::to_string(&summary)?);
    if let Some(p) = &args.summary {
        std::fs::write(p, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
