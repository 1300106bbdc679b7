//! The soak's figures as plain values, with no IO: latency histograms,
//! one window's record of each operation, their sums over blocks of
//! windows, and the two judgments (p99 against a fresh store's, RSS flat).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The operations the soak times, in the order it prints them.
pub const OPS: [&str; 3] = ["DescribeTasks", "RunTask", "StopTask"];

/// Values below this are counted exactly; above, 64 buckets per power of
/// two (under 1.6% error), so a histogram costs at most a few KiB.
const EXACT: u64 = 128;
const PER_OCTAVE: u64 = 64;

/// Latencies in microseconds, in log-linear buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

fn bucket(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let octave = u64::from(63 - v.leading_zeros()); // 7 and up
    let m = v >> (octave - 6); // 64..=127
    (EXACT + (octave - 7) * PER_OCTAVE + (m - PER_OCTAVE)) as usize
}

/// The middle of bucket `i`.
fn bucket_value(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let k = i - EXACT;
    let shift = k / PER_OCTAVE + 1;
    let m = k % PER_OCTAVE + PER_OCTAVE;
    (m << shift) + ((1u64 << shift) - 1) / 2
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn record_us(&mut self, us: u64) {
        let b = bucket(us);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.n += 1;
        self.max = self.max.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// The `p` quantile (0 to 1) in milliseconds: the value of rank
    /// ceil(p n), as the bucket's middle (never above the maximum seen).
    pub fn quantile_ms(&self, p: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let rank = ((p * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_value(i).min(self.max) as f64 / 1000.0;
            }
        }
        self.max as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.max as f64 / 1000.0
    }
}

/// One operation's calls in a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpRecord {
    /// Latencies of the calls answered without an error.
    pub latency: Histogram,
    /// Failed calls by error code (`ThrottlingException` among them).
    pub errors: BTreeMap<String, u64>,
}

impl OpRecord {
    pub fn merge(&mut self, other: &OpRecord) {
        self.latency.merge(&other.latency);
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
    }

    /// Failed calls other than throttling.
    pub fn errors(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(c, _)| c.as_str() != THROTTLED)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn throttled(&self) -> u64 {
        self.errors.get(THROTTLED).copied().unwrap_or(0)
    }
}

/// The code of a call refused by the API's rate limit.
pub const THROTTLED: &str = "ThrottlingException";

/// What one window (or a sum of windows) recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Seconds from the start of the load to the start of the window.
    pub start: f64,
    pub seconds: f64,
    /// Each operation's record, by name.
    pub ops: BTreeMap<&'static str, OpRecord>,
    /// The server's RSS sampled during the window (MiB): least, most, last.
    pub rss_min: Option<f64>,
    pub rss_max: Option<f64>,
    pub rss_last: Option<f64>,
    /// The server's CPU seconds spent in the window.
    pub cpu_seconds: Option<f64>,
}

fn add(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

impl Window {
    pub fn op(&mut self, op: &'static str) -> &mut OpRecord {
        self.ops.entry(op).or_default()
    }

    pub fn sample_rss(&mut self, mib: f64) {
        self.rss_min = Some(self.rss_min.map_or(mib, |m| m.min(mib)));
        self.rss_max = Some(self.rss_max.map_or(mib, |m| m.max(mib)));
        self.rss_last = Some(mib);
    }

    /// `later` added to this window: the span covers both.
    pub fn merge(&mut self, later: &Window) {
        if self.seconds == 0.0 && self.ops.is_empty() {
            self.start = later.start;
        }
        self.seconds += later.seconds;
        for (op, r) in &later.ops {
            self.op(op).merge(r);
        }
        self.rss_min = add(self.rss_min, later.rss_min, f64::min);
        self.rss_max = add(self.rss_max, later.rss_max, f64::max);
        self.rss_last = later.rss_last.or(self.rss_last);
        self.cpu_seconds = add(self.cpu_seconds, later.cpu_seconds, |a, b| a + b);
    }

    /// The server's CPU over the window, in percent of one core.
    pub fn cpu_percent(&self) -> Option<f64> {
        self.cpu_seconds
            .filter(|_| self.seconds > 0.0)
            .map(|c| 100.0 * c / self.seconds)
    }

    /// The figures of `op` for the summary.
    pub fn op_summary(&self, op: &str) -> OpSummary {
        let r = self.ops.get(op).cloned().unwrap_or_default();
        OpSummary {
            requests: r.latency.count(),
            per_second: if self.seconds > 0.0 {
                r.latency.count() as f64 / self.seconds
            } else {
                0.0
            },
            p50_ms: r.latency.quantile_ms(0.5),
            p99_ms: r.latency.quantile_ms(0.99),
            max_ms: r.latency.max_ms(),
            errors: r.errors(),
            throttled: r.throttled(),
            error_codes: r.errors,
        }
    }
}

/// Consecutive windows summed `per` at a time (the last block may hold fewer).
pub fn blocks(windows: &[Window], per: usize) -> Vec<Window> {
    windows
        .chunks(per.max(1))
        .map(|c| {
            let mut sum = Window::default();
            for w in c {
                sum.merge(w);
            }
            sum
        })
        .collect()
}

/// One operation over a span, as the summary prints and saves it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpSummary {
    pub requests: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    pub throttled: u64,
    pub error_codes: BTreeMap<String, u64>,
}

/// Whether the server's memory stayed flat: the most RSS of the last
/// `span` windows against the most of the first `span` (after seeding).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RssTrend {
    pub first_max_mib: f64,
    pub last_max_mib: f64,
    pub ratio: f64,
    /// The ratio allowed.
    pub bound: f64,
    pub flat: bool,
}

/// The RSS judgment over `windows` (in order), comparing the first and the
/// last `span` of them; None without samples in both.
pub fn rss_trend(windows: &[Window], span: usize, bound: f64) -> Option<RssTrend> {
    let span = span.clamp(1, windows.len().max(1));
    let most = |ws: &[Window]| ws.iter().filter_map(|w| w.rss_max).reduce(f64::max);
    let first = most(windows.get(..span)?)?;
    let last = most(windows.get(windows.len() - span..)?)?;
    let ratio = if first > 0.0 { last / first } else { 1.0 };
    Some(RssTrend {
        first_max_mib: first,
        last_max_mib: last,
        ratio,
        bound,
        flat: ratio <= bound,
    })
}

/// `p99(now) / p99(fresh)` of each operation timed in both (and with a
/// fresh p99 above 0).
pub fn p99_ratios(
    now: &BTreeMap<String, OpSummary>,
    fresh: &BTreeMap<String, OpSummary>,
) -> BTreeMap<String, f64> {
    now.iter()
        .filter_map(|(op, s)| {
            let f = fresh.get(op)?;
            (f.p99_ms > 0.0 && s.requests > 0).then(|| (op.clone(), s.p99_ms / f.p99_ms))
        })
        .collect()
}

/// `30m`, `90s`, `1h`, `2.5m` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "`{s}`: give a number with s, m or h (30m, 90s, 1h)"
            ));
        }
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && (v * scale).is_finite() && v * scale <= 7.0 * 86_400.0 => {
            Ok(Duration::from_secs_f64(v * scale))
        }
        _ => Err(format!(
            "`{s}` is not a duration above 0 (at most 7 days): give 30m, 90s or 1h"
        )),
    }
}

#[cfg(test)]
mod tests;
