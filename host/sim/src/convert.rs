//! `berth sim convert --from clusterdata2019 FILE`: Google's ClusterData
//! 2019 trace (its `instance_events` table, exported as JSON lines as
//! BigQuery writes them: 64-bit integers as strings or numbers) into
//! berth sim's workload lines.
//!
//! A task is an instance of the trace (`collection_id`, `instance_index`):
//! it arrives at its first SUBMIT, runs from its SCHEDULE to the first
//! EVICT, FAIL, FINISH, KILL or LOST after it (none: to the end), and asks
//! its `resource_request` (the trace's units: a fraction of the largest
//! machine) times the given scale. Tasks of one collection are one group
//! (`family:c<collection_id>`). Times are microseconds in the trace (0:
//! before it began); seconds from the first event here.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde::Deserialize;
use serde_json::Value;

/// The largest machine of the trace in berth's units.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// CPU units of a `cpus` of 1.0.
    pub cpu: f64,
    /// MiB of a `memory` of 1.0.
    pub memory: f64,
}

impl Default for Scale {
    fn default() -> Self {
        Scale {
            cpu: 16_384.0,
            memory: 65_536.0,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Event {
    time: Value,
    #[serde(rename = "type")]
    kind: Value,
    collection_id: Value,
    #[serde(default)]
    instance_index: Value,
    #[serde(default)]
    resource_request: Option<Request>,
}

#[derive(Debug, Deserialize)]
struct Request {
    #[serde(default)]
    cpus: Option<f64>,
    #[serde(default)]
    memory: Option<f64>,
}

/// What the trace says of one task so far.
#[derive(Debug, Default)]
struct Task {
    submit: Option<u64>,
    schedule: Option<u64>,
    end: Option<u64>,
    cpus: f64,
    memory: f64,
}

/// The trace's event types (its integers, or their names).
fn event_type(v: &Value) -> Option<u8> {
    const NAMES: [&str; 11] = [
        "SUBMIT",
        "QUEUE",
        "ENABLE",
        "SCHEDULE",
        "EVICT",
        "FAIL",
        "FINISH",
        "KILL",
        "LOST",
        "UPDATE_PENDING",
        "UPDATE_RUNNING",
    ];
    match v {
        Value::String(s) => NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|p| p as u8)
            .or_else(|| s.parse().ok()),
        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        _ => None,
    }
    .filter(|t| *t <= 10)
}

/// An INT64 as BigQuery exports it (a string) or as a number.
fn int(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// The trace's "after the end" time.
const AFTER_END: u64 = i64::MAX as u64;

/// Converts; returns how many tasks were written. Errors name the line.
pub fn clusterdata2019(r: impl BufRead, mut out: impl Write, scale: Scale) -> Result<u64, String> {
    let mut tasks: BTreeMap<(u64, u64), Task> = BTreeMap::new();
    for (n, line) in r.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}", n + 1);
        let line = line.map_err(|e| at(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Event = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        let time = int(&e.time)
            .ok_or_else(|| at(format!("time: {} is not a time in microseconds", e.time)))?;
        let kind = event_type(&e.kind).ok_or_else(|| {
            at(format!(
                "type: {} is not an event type (0-10 or SUBMIT...)",
                e.kind
            ))
        })?;
        let collection = int(&e.collection_id)
            .ok_or_else(|| at(format!("collection_id: {} is not an id", e.collection_id)))?;
        let index = int(&e.instance_index).unwrap_or(0);
        let t = tasks.entry((collection, index)).or_default();
        if let Some(req) = &e.resource_request {
            t.cpus = req.cpus.unwrap_or(t.cpus);
            t.memory = req.memory.unwrap_or(t.memory);
        }
        match kind {
            0 => {
                t.submit.get_or_insert(time);
            }
            3 if t.schedule.is_none() => t.schedule = Some(time),
            4..=8 if t.schedule.is_some() && t.end.is_none() => t.end = Some(time),
            _ => {}
        }
    }
    let start = tasks
        .values()
        .filter_map(|t| t.submit.or(t.schedule))
        .filter(|&t| t > 0)
        .min()
        .unwrap_or(0);
    let mut lines: Vec<(u64, String)> = Vec::new();
    for ((collection, _), t) in &tasks {
        let Some(arrival) = t.submit.or(t.schedule) else {
            continue;
        };
        let memory = (t.memory * scale.memory).round().max(1.0) as u64;
        let cpu = (t.cpus * scale.cpu).round() as u64;
        let secs = |us: u64| us.saturating_sub(start) as f64 / 1e6;
        let mut line = serde_json::json!({
            "time": secs(arrival),
            "cpu": cpu,
            "memory": memory,
            "group": format!("family:c{collection}"),
        });
        if let (Some(s), Some(e)) = (t.schedule, t.end)
            && e != AFTER_END
            && e > s
        {
            line["duration"] = serde_json::json!((e - s) as f64 / 1e6);
        }
        lines.push((arrival, line.to_string()));
    }
    lines.sort_by_key(|(a, _)| *a);
    for (_, l) in &lines {
        writeln!(out, "{l}").map_err(|e| e.to_string())?;
    }
    Ok(lines.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{FOREVER, Workload};

    /// A few lines in the trace's shape: two tasks of one job, one of
    /// another, a task that never finishes, events out of order.
    const TRACE: &str = r#"
{"time": "600000000", "type": "0", "collection_id": "42", "instance_index": "0", "machine_id": null, "resource_request": {"cpus": 0.0625, "memory": 0.03125}, "priority": 200}
{"time": "601000000", "type": 3, "collection_id": "42", "instance_index": "0", "machine_id": "17"}
{"time": "661000000", "type": "FINISH", "collection_id": "42", "instance_index": "0"}
{"time": "600500000", "type": "0", "collection_id": "42", "instance_index": "1", "resource_request": {"cpus": 0.125, "memory": 0.0625}}
{"time": "602000000", "type": "3", "collection_id": "42", "instance_index": "1"}
{"time": "902000000", "type": "7", "collection_id": "42", "instance_index": "1"}
{"time": "0", "type": "3", "collection_id": "7", "instance_index": "3", "resource_request": {"cpus": 0.5, "memory": 0.25}}
"#;

    #[test]
    fn instance_events_become_workload_lines() {
        let mut out = Vec::new();
        let n = clusterdata2019(TRACE.as_bytes(), &mut out, Scale::default()).expect("converts");
        assert_eq!(n, 3);
        let w = Workload::read(out.as_slice()).expect("berth sim reads it");
        assert_eq!(w.tasks.len(), 3);
        // The task scheduled before the trace began arrives at 0 and never ends.
        let first = w.tasks[0];
        assert_eq!((first.arrival_ms, first.duration_ms), (0, FOREVER));
        assert_eq!(w.kinds[first.kind as usize].spec.cpu, 8192);
        assert_eq!(w.kinds[first.kind as usize].spec.group, "family:c7");
        // Submitted at 600 s (the first event), ran 601 s -> 661 s.
        let a = w.tasks[1];
        assert_eq!((a.arrival_ms, a.duration_ms), (0, 60_000));
        assert_eq!(w.kinds[a.kind as usize].spec.memory, 2048);
        let b = w.tasks[2];
        assert_eq!((b.arrival_ms, b.duration_ms), (500, 300_000));
        assert_eq!(w.kinds[b.kind as usize].spec.cpu, 2048);
    }

    #[test]
    fn bad_events_name_the_line_and_field() {
        let e = clusterdata2019(
            "{\"time\": \"1\", \"type\": \"BOGUS\", \"collection_id\": \"1\"}".as_bytes(),
            Vec::new(),
            Scale::default(),
        )
        .expect_err("bad type");
        assert!(e.contains("line 1: type"), "{e}");
        let e = clusterdata2019("{\"type\": 0}".as_bytes(), Vec::new(), Scale::default())
            .expect_err("no time");
        assert!(e.contains("line 1") && e.contains("time"), "{e}");
    }
}
