//! The workload: tasks arriving over virtual time, read from JSON lines
//! (docs/sim.md) or made by a generator (`generate.rs`).
//!
//! Tasks of the same shape (resources, ports, group, constraints, strategy)
//! share one [`TaskKind`], so a run compiles one placement request per kind
//! and a task is three numbers.

use std::collections::HashMap;
use std::io::BufRead;

use berth_core::model::{PlacementConstraint, PlacementStrategy, Protocol};
use berth_core::placement::{PlacementRequest, TaskSpec};
use serde::Deserialize;

/// A task that runs until the end of the simulation.
pub const FOREVER: u64 = u64::MAX;

/// The most tasks one line may repeat (`count`).
const MAX_COUNT: u32 = 100_000;

/// What tasks of one shape ask of placement.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskKind {
    pub spec: TaskSpec,
    pub constraints: Vec<PlacementConstraint>,
    /// The task's own strategy (empty: berth's default chain).
    pub strategy: Vec<PlacementStrategy>,
}

impl TaskKind {
    /// The request for this kind, with `strategy` in place of its own when given.
    pub fn request(
        &self,
        strategy: Option<&[PlacementStrategy]>,
    ) -> Result<PlacementRequest, String> {
        PlacementRequest::compile(
            self.spec.clone(),
            &[],
            &self.constraints,
            strategy.unwrap_or(&self.strategy),
        )
        .map_err(|e| e.to_string())
    }
}

/// One task: when it arrives, how long it runs once placed, and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimTask {
    /// Virtual milliseconds.
    pub arrival_ms: u64,
    /// Virtual milliseconds, or [`FOREVER`].
    pub duration_ms: u64,
    pub kind: u32,
}

/// A workload: its kinds and its tasks in arrival order.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    pub kinds: Vec<TaskKind>,
    pub tasks: Vec<SimTask>,
}

/// A bad workload line; the message names the line and the field.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct WorkloadError {
    pub line: usize,
    pub message: String,
}

/// One line of the JSON-lines format (docs/sim.md).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Line {
    time: f64,
    cpu: u32,
    memory: u32,
    duration: Option<f64>,
    group: Option<String>,
    service: Option<String>,
    family: Option<String>,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    udp_ports: Vec<u16>,
    #[serde(default)]
    dynamic_ports: u32,
    #[serde(default)]
    constraints: Vec<PlacementConstraint>,
    #[serde(default)]
    strategy: Vec<PlacementStrategy>,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

/// Virtual milliseconds of `secs` seconds, checked.
pub fn to_ms(field: &str, secs: f64) -> Result<u64, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "{field}: {secs} is not a time (seconds, 0 or more)"
        ));
    }
    let ms = (secs * 1000.0).round();
    if ms >= 1e15 {
        return Err(format!("{field}: {secs} seconds is too far off"));
    }
    Ok(ms as u64)
}

/// Builds a workload kind by kind, interning equal shapes.
#[derive(Debug, Default)]
pub struct Builder {
    workload: Workload,
    by_key: HashMap<String, u32>,
}

impl Builder {
    /// The id of `kind`, added (and checked by compiling it) when new.
    pub fn kind(&mut self, kind: TaskKind) -> Result<u32, String> {
        let key = format!(
            "{} {} {:?} {:?} {} {} {:?} {:?}",
            kind.spec.cpu,
            kind.spec.memory,
            kind.spec.static_ports,
            kind.spec.dynamic_ports,
            kind.spec.group,
            kind.spec.family,
            kind.constraints,
            kind.strategy
        );
        if let Some(&k) = self.by_key.get(&key) {
            return Ok(k);
        }
        kind.request(None)?;
        let k = self.workload.kinds.len() as u32;
        self.workload.kinds.push(kind);
        self.by_key.insert(key, k);
        Ok(k)
    }

    pub fn task(&mut self, arrival_ms: u64, duration_ms: u64, kind: u32) {
        self.workload.tasks.push(SimTask {
            arrival_ms,
            duration_ms,
            kind,
        });
    }

    /// The workload, its tasks in arrival order (stable: equal times keep
    /// the order they were given in).
    pub fn finish(mut self) -> Workload {
        self.workload.tasks.sort_by_key(|t| t.arrival_ms);
        self.workload
    }
}

/// A task kind of the common shape: a group (and its family), cpu, memory.
pub fn simple_kind(group: &str, cpu: u32, memory: u32) -> TaskKind {
    TaskKind {
        spec: TaskSpec {
            cpu,
            memory,
            static_ports: Vec::new(),
            dynamic_ports: Vec::new(),
            group: group.to_owned(),
            family: family_of(group).to_owned(),
        },
        constraints: Vec::new(),
        strategy: Vec::new(),
    }
}

fn family_of(group: &str) -> &str {
    group
        .strip_prefix("family:")
        .or_else(|| group.strip_prefix("service:"))
        .unwrap_or(group)
}

impl Workload {
    /// Reads JSON lines (blank lines and lines starting with `#` skipped).
    pub fn read(r: impl BufRead) -> Result<Workload, WorkloadError> {
        let mut b = Builder::default();
        for (n, line) in r.lines().enumerate() {
            let line_no = n + 1;
            let err = |message: String| WorkloadError {
                line: line_no,
                message,
            };
            let line = line.map_err(|e| err(e.to_string()))?;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let l: Line = serde_json::from_str(t).map_err(|e| err(e.to_string()))?;
            let (kind, arrival, duration, count) = l.into_kind().map_err(err)?;
            let k = b.kind(kind).map_err(err)?;
            for _ in 0..count {
                b.task(arrival, duration, k);
            }
        }
        Ok(b.finish())
    }

    /// Events the workload makes: an arrival per task, and an end per task
    /// that does not run forever.
    pub fn events(&self) -> u64 {
        self.tasks
            .iter()
            .map(|t| 1 + u64::from(t.duration_ms != FOREVER))
            .sum()
    }
}

impl Line {
    fn into_kind(self) -> Result<(TaskKind, u64, u64, u32), String> {
        let arrival = to_ms("time", self.time)?;
        let duration = match self.duration {
            None => FOREVER,
            Some(d) if d > 0.0 => to_ms("duration", d)?,
            Some(d) => {
                return Err(format!(
                    "duration: {d} is not above 0 (leave it out for a task that runs to the end)"
                ));
            }
        };
        if self.memory == 0 {
            return Err("memory: must be above 0 MiB".into());
        }
        if !(1..=MAX_COUNT).contains(&self.count) {
            return Err(format!("count: {} is not within 1-{MAX_COUNT}", self.count));
        }
        if self.dynamic_ports > 100 {
            return Err(format!(
                "dynamicPorts: {} is more than 100",
                self.dynamic_ports
            ));
        }
        let group = match (self.group, self.service) {
            (Some(_), Some(_)) => return Err("give group or service, not both".into()),
            (Some(g), None) if g.is_empty() => return Err("group: is empty".into()),
            (Some(g), None) => g,
            (None, Some(s)) if s.is_empty() => return Err("service: is empty".into()),
            (None, Some(s)) => format!("service:{s}"),
            (None, None) => "family:sim".into(),
        };
        let family = self.family.unwrap_or_else(|| family_of(&group).to_owned());
        let mut static_ports: Vec<(u16, Protocol)> =
            self.ports.iter().map(|&p| (p, Protocol::Tcp)).collect();
        static_ports.extend(self.udp_ports.iter().map(|&p| (p, Protocol::Udp)));
        if let Some(p) = static_ports.iter().find(|(p, _)| *p == 0) {
            return Err(format!(
                "ports: {} is not a host port (use dynamicPorts)",
                p.0
            ));
        }
        let kind = TaskKind {
            spec: TaskSpec {
                cpu: self.cpu,
                memory: self.memory,
                static_ports,
                dynamic_ports: vec![Protocol::Tcp; self.dynamic_ports as usize],
                group,
                family,
            },
            constraints: self.constraints,
            strategy: self.strategy,
        };
        Ok((kind, arrival, duration, self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> Result<Workload, WorkloadError> {
        Workload::read(s.as_bytes())
    }

    #[test]
    fn lines_become_tasks_in_arrival_order_with_shared_kinds() {
        let w = read(
            "# a comment\n\
             {\"time\": 5, \"cpu\": 256, \"memory\": 512, \"duration\": 60, \"service\": \"web\"}\n\
             \n\
             {\"time\": 1.5, \"cpu\": 256, \"memory\": 512, \"service\": \"web\", \"count\": 2}\n\
             {\"time\": 2, \"cpu\": 1024, \"memory\": 64, \"group\": \"family:batch\", \"dynamicPorts\": 1,\
              \"constraints\": [{\"type\": \"memberOf\", \"expression\": \"attribute:ecs.availability-zone == a\"}]}\n",
        )
        .expect("valid");
        assert_eq!(w.kinds.len(), 2);
        assert_eq!(w.tasks.len(), 4);
        assert_eq!(w.tasks[0].arrival_ms, 1500);
        assert_eq!(w.tasks[0].duration_ms, FOREVER);
        assert_eq!(w.tasks[2].arrival_ms, 2000);
        assert_eq!(w.tasks[3].duration_ms, 60_000);
        assert_eq!(w.kinds[0].spec.group, "service:web");
        assert_eq!(w.kinds[0].spec.family, "web");
        assert_eq!(w.events(), 5);
    }

    #[test]
    fn bad_lines_name_the_line_and_field() {
        let e = read(
            "{\"time\": 0, \"cpu\": 1, \"memory\": 1}\n{\"time\": -1, \"cpu\": 1, \"memory\": 1}",
        )
        .expect_err("negative time");
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("time: -1"), "{e}");
        let e = read("{\"time\": 0, \"cpu\": 1, \"memory\": 1, \"disk\": 3}").expect_err("unknown");
        assert!(e.to_string().contains("disk"), "{e}");
        let e =
            read("{\"time\": 0, \"cpu\": 1, \"memory\": 1, \"duration\": 0}").expect_err("zero");
        assert!(e.to_string().contains("duration"), "{e}");
        let e = read(
            "{\"time\": 0, \"cpu\": 1, \"memory\": 1, \"constraints\": [{\"type\": \"memberOf\", \"expression\": \"attribute:x ==\"}]}",
        )
        .expect_err("bad expression");
        assert!(
            e.to_string().contains("placementConstraints[0].expression"),
            "{e}"
        );
        let e =
            read("{\"time\": 0, \"cpu\": 1, \"memory\": 1, \"group\": \"g\", \"service\": \"s\"}")
                .expect_err("both");
        assert!(e.to_string().contains("not both"), "{e}");
    }
}
