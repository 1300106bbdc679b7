use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

#[test]
fn small_latencies_are_exact_and_quantiles_take_the_ceiling_rank() {
    let mut h = Histogram::default();
    for us in 1..=100 {
        h.record_us(us);
    }
    assert_eq!(h.count(), 100);
    assert_eq!(h.quantile_ms(0.5), 0.050);
    assert_eq!(h.quantile_ms(0.99), 0.099);
    assert_eq!(h.quantile_ms(1.0), 0.100);
    assert_eq!(h.max_ms(), 0.100);
    assert_eq!(Histogram::default().quantile_ms(0.99), 0.0);
}

#[test]
fn one_slow_call_in_a_hundred_is_the_p99_not_the_p50() {
    let mut h = Histogram::default();
    for _ in 0..98 {
        h.record(Duration::from_millis(1));
    }
    h.record(Duration::from_millis(250));
    h.record(Duration::from_millis(900));
    let p50 = h.quantile_ms(0.5);
    assert!((p50 - 1.0).abs() < 0.02, "{p50}");
    let p99 = h.quantile_ms(0.99);
    assert!((p99 - 250.0).abs() < 250.0 * 0.016, "{p99}");
    assert_eq!(h.max_ms(), 900.0);
}

proptest! {
    /// Every value lands in a bucket whose middle is within 1.6% of it,
    /// and buckets keep the values' order.
    #[test]
    fn buckets_are_close_and_ordered(a in 0u64..10_000_000_000, b in 0u64..10_000_000_000) {
        let mid = bucket_value(bucket(a)) as f64;
        prop_assert!((mid - a as f64).abs() <= (a as f64 * 0.016).max(0.0), "{a} -> {mid}");
        if a <= b {
            prop_assert!(bucket(a) <= bucket(b));
        }
    }

    /// Merging histograms is the histogram of all the values.
    #[test]
    fn merge_is_recording_both(xs in prop::collection::vec(0u64..5_000_000, 0..200),
                               ys in prop::collection::vec(0u64..5_000_000, 0..200)) {
        let (mut a, mut b, mut all) = (Histogram::default(), Histogram::default(), Histogram::default());
        xs.iter().for_each(|&x| { a.record_us(x); all.record_us(x); });
        ys.iter().for_each(|&y| { b.record_us(y); all.record_us(y); });
        a.merge(&b);
        prop_assert_eq!(a, all);
    }
}

fn window(start: f64, rss: f64, calls: &[(&'static str, u64)], errors: &[(&str, u64)]) -> Window {
    let mut w = Window {
        start,
        seconds: 60.0,
        cpu_seconds: Some(30.0),
        ..Window::default()
    };
    w.sample_rss(rss - 10.0);
    w.sample_rss(rss);
    for &(op, ms) in calls {
        w.op(op).latency.record(Duration::from_millis(ms));
    }
    for &(code, n) in errors {
        *w.op("RunTask").errors.entry(code.to_owned()).or_default() += n;
    }
    w
}

#[test]
fn blocks_sum_windows_and_keep_throttling_apart() {
    let ws = vec![
        window(
            0.0,
            100.0,
            &[("RunTask", 2), ("RunTask", 4)],
            &[(THROTTLED, 3)],
        ),
        window(60.0, 120.0, &[("RunTask", 8)], &[("ServerException", 1)]),
        window(120.0, 110.0, &[("DescribeTasks", 1)], &[]),
    ];
    let b = blocks(&ws, 2);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].start, 0.0);
    assert_eq!(b[0].seconds, 120.0);
    assert_eq!(b[1].start, 120.0);
    assert_eq!(b[0].rss_max, Some(120.0));
    assert_eq!(b[0].rss_min, Some(90.0));
    assert_eq!(b[0].rss_last, Some(120.0));
    assert_eq!(b[0].cpu_percent(), Some(50.0));
    let run = b[0].op_summary("RunTask");
    assert_eq!(run.requests, 3);
    assert_eq!(run.per_second, 3.0 / 120.0);
    assert_eq!(run.errors, 1);
    assert_eq!(run.throttled, 3);
    assert!((run.max_ms - 8.0).abs() < 1e-9);
    assert_eq!(b[1].op_summary("RunTask").requests, 0);
}

#[test]
fn rss_is_flat_within_the_bound_of_the_first_span() {
    let at = |rss: &[f64]| -> Vec<Window> {
        rss.iter()
            .enumerate()
            .map(|(i, &r)| window(i as f64 * 60.0, r, &[], &[]))
            .collect()
    };
    let flat = rss_trend(&at(&[200.0, 260.0, 250.0, 240.0, 255.0, 250.0]), 2, 1.25).unwrap();
    assert_eq!(flat.first_max_mib, 260.0);
    assert_eq!(flat.last_max_mib, 255.0);
    assert!(flat.flat);
    let growing = rss_trend(&at(&[200.0, 210.0, 300.0, 400.0, 500.0, 600.0]), 2, 1.25).unwrap();
    assert!(!growing.flat);
    assert!((growing.ratio - 600.0 / 210.0).abs() < 1e-9);
    // Fewer windows than the span: the same windows on both sides.
    assert!(rss_trend(&at(&[300.0]), 10, 1.25).unwrap().flat);
    assert_eq!(rss_trend(&[], 10, 1.25), None);
    assert_eq!(rss_trend(&[Window::default()], 1, 1.25), None);
}

#[test]
fn p99_ratios_compare_the_operations_timed_in_both_runs() {
    let s = |p99: f64, requests: u64| OpSummary {
        p99_ms: p99,
        requests,
        ..OpSummary::default()
    };
    let now: BTreeMap<String, OpSummary> = [
        ("RunTask".into(), s(30.0, 10)),
        ("StopTask".into(), s(5.0, 10)),
        ("DescribeTasks".into(), s(4.0, 0)),
    ]
    .into();
    let fresh: BTreeMap<String, OpSummary> = [
        ("RunTask".into(), s(20.0, 10)),
        ("DescribeTasks".into(), s(2.0, 10)),
    ]
    .into();
    let r = p99_ratios(&now, &fresh);
    assert_eq!(r.len(), 1);
    assert_eq!(r["RunTask"], 1.5);
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("2.5m"), Ok(Duration::from_secs(150)));
    assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    for bad in ["", "0", "-3m", "3d", "m", "1e9h"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}
