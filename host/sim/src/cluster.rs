//! The simulated cluster: instance shapes with counts, zones and
//! attributes, and instances joining, draining and being lost over time.
//! From a JSON file or a compact form (docs/sim.md).

use std::collections::BTreeMap;

use berth_core::placement::{ClusterState, InstanceSpec};
use serde::Deserialize;

use crate::workload::to_ms;

/// The most instances a cluster may have at its start.
const MAX_INSTANCES: u64 = 1_000_000;

/// One shape of instance and how many of it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Shape {
    /// Events name a shape by this (default `s0`, `s1`... in file order).
    #[serde(default)]
    pub name: String,
    #[serde(default = "one")]
    pub count: u64,
    pub cpu: u32,
    pub memory: u32,
    /// `ecs.availability-zone` of its instances, round robin.
    #[serde(default)]
    pub zones: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, Option<String>>,
}

fn one() -> u64 {
    1
}

/// What happens to instances at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// `count` more instances of the shape join.
    Join,
    /// `count` instances of the shape stop taking tasks; their tasks run on
    /// to their end.
    Drain,
    /// `count` instances of the shape are lost with their tasks, which
    /// wait to be placed again (as the service scheduler replaces them).
    Lose,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventEntry {
    time: f64,
    kind: EventKind,
    shape: String,
    #[serde(default = "one")]
    count: u64,
}

/// An event, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterEvent {
    pub time_ms: u64,
    pub kind: EventKind,
    pub shape: usize,
    pub count: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    instances: Vec<Shape>,
    #[serde(default)]
    events: Vec<EventEntry>,
}

/// A cluster and its events.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSpec {
    pub shapes: Vec<Shape>,
    pub events: Vec<ClusterEvent>,
}

impl ClusterSpec {
    /// The compact form `COUNTxCPU:MEMORY[@ZONE/ZONE...]`, several joined
    /// by `,` (`90x4096:16384@a/b/c,10x16384:65536@a`), or else the path of a JSON file.
    pub fn parse(arg: &str) -> Result<ClusterSpec, String> {
        if let Some(spec) = compact(arg)? {
            return Ok(spec);
        }
        let text = std::fs::read_to_string(arg).map_err(|e| {
            format!("`{arg}` is neither COUNTxCPU:MEMORY[@ZONES] nor a readable file: {e}")
        })?;
        ClusterSpec::from_json(&text).map_err(|e| format!("{arg}: {e}"))
    }

    pub fn from_json(text: &str) -> Result<ClusterSpec, String> {
        let f: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut shapes = f.instances;
        for (i, s) in shapes.iter_mut().enumerate() {
            if s.name.is_empty() {
                s.name = format!("s{i}");
            }
        }
        let mut events = Vec::new();
        for (i, e) in f.events.iter().enumerate() {
            let shape = shapes
                .iter()
                .position(|s| s.name == e.shape)
                .ok_or_else(|| {
                    format!(
                        "events[{i}].shape: no instance shape is named `{}`",
                        e.shape
                    )
                })?;
            if e.count == 0 {
                return Err(format!("events[{i}].count: 0 changes nothing"));
            }
            events.push(ClusterEvent {
                time_ms: to_ms(&format!("events[{i}].time"), e.time)?,
                kind: e.kind,
                shape,
                count: e.count,
            });
        }
        events.sort_by_key(|e| e.time_ms);
        let spec = ClusterSpec { shapes, events };
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), String> {
        if self.shapes.is_empty() {
            return Err("instances: give at least one instance shape".into());
        }
        let mut total = 0u64;
        for (i, s) in self.shapes.iter().enumerate() {
            if s.cpu == 0 || s.memory == 0 {
                return Err(format!("instances[{i}]: cpu and memory must be above 0"));
            }
            if self.shapes[..i].iter().any(|o| o.name == s.name) {
                return Err(format!("instances[{i}].name: `{}` is used twice", s.name));
            }
            total += s.count;
        }
        if total == 0 {
            return Err("instances: every count is 0".into());
        }
        if total > MAX_INSTANCES {
            return Err(format!(
                "instances: {total} in all, more than {MAX_INSTANCES}"
            ));
        }
        Ok(())
    }

    /// Instances at the start.
    pub fn len(&self) -> u64 {
        self.shapes.iter().map(|s| s.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same cluster with only `n` of its starting instances, taken
    /// round robin over the shapes so their proportions stay (compaction).
    pub fn first(&self, n: u64) -> ClusterSpec {
        let mut counts = vec![0u64; self.shapes.len()];
        let mut left = n.min(self.len());
        let mut round = 0;
        while left > 0 {
            for (j, s) in self.shapes.iter().enumerate() {
                if left > 0 && s.count > round {
                    counts[j] += 1;
                    left -= 1;
                }
            }
            round += 1;
        }
        let mut out = self.clone();
        for (s, c) in out.shapes.iter_mut().zip(counts) {
            s.count = c;
        }
        out
    }

    /// Every zone named, sorted.
    pub fn zones(&self) -> Vec<String> {
        let mut z: Vec<String> = self.shapes.iter().flat_map(|s| s.zones.clone()).collect();
        z.sort();
        z.dedup();
        z
    }
}

/// The compact form, or None when `arg` does not look like it.
fn compact(arg: &str) -> Result<Option<ClusterSpec>, String> {
    let looks = arg.split(',').all(|g| {
        g.split_once('x')
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    if !looks {
        return Ok(None);
    }
    let mut shapes = Vec::new();
    for (i, group) in arg.split(',').enumerate() {
        let bad =
            |why: &str| format!("--cluster `{group}`: {why} (COUNTxCPU:MEMORY[@ZONE/ZONE...])");
        let (count, rest) = group.split_once('x').ok_or_else(|| bad("no x"))?;
        let (res, zones) = match rest.split_once('@') {
            Some((r, z)) => (r, z.split('/').map(str::to_owned).collect::<Vec<_>>()),
            None => (rest, Vec::new()),
        };
        if zones.iter().any(String::is_empty) {
            return Err(bad("an empty zone name"));
        }
        let (cpu, memory) = res.split_once(':').ok_or_else(|| bad("no CPU:MEMORY"))?;
        shapes.push(Shape {
            name: format!("s{i}"),
            count: count
                .parse()
                .map_err(|_| bad("the count is not a number"))?,
            cpu: cpu.parse().map_err(|_| bad("the CPU is not a number"))?,
            memory: memory
                .parse()
                .map_err(|_| bad("the memory is not a number"))?,
            zones,
            attributes: BTreeMap::new(),
        });
    }
    let spec = ClusterSpec {
        shapes,
        events: Vec::new(),
    };
    spec.check()
        .map_err(|e| format!("--cluster `{arg}`: {e}"))?;
    Ok(Some(spec))
}

/// The simulated instances as placement sees them, with each instance's
/// shape and zone.
#[derive(Debug)]
pub struct Built {
    pub state: ClusterState,
    /// Per instance: its shape.
    pub shape: Vec<u32>,
    /// Per instance: its zone's index in [`ClusterSpec::zones`] (none: `u32::MAX`).
    pub zone: Vec<u32>,
    /// Per shape: instances made so far (the next one's number in its round robin).
    made: Vec<u64>,
    zones: Vec<String>,
}

impl Built {
    pub fn new(spec: &ClusterSpec) -> Built {
        let mut b = Built {
            state: ClusterState::default(),
            shape: Vec::new(),
            zone: Vec::new(),
            made: vec![0; spec.shapes.len()],
            zones: spec.zones(),
        };
        for (j, s) in spec.shapes.iter().enumerate() {
            for _ in 0..s.count {
                b.add(spec, j);
            }
        }
        b
    }

    /// Adds one instance of shape `j`; returns its index.
    pub fn add(&mut self, spec: &ClusterSpec, j: usize) -> usize {
        let s = &spec.shapes[j];
        let n = self.state.len();
        let mut attributes: Vec<(String, Option<String>)> = s
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let zone =
            (!s.zones.is_empty()).then(|| &s.zones[(self.made[j] % s.zones.len() as u64) as usize]);
        if let Some(z) = zone {
            attributes.retain(|(k, _)| k != "ecs.availability-zone");
            attributes.push(("ecs.availability-zone".into(), Some(z.clone())));
        }
        attributes.push(("ecs.instance-type".into(), Some(s.name.clone())));
        self.made[j] += 1;
        let i = self.state.add_instance(InstanceSpec {
            arn: format!("arn:aws:ecs:sim:000000000000:container-instance/sim/{n:08x}"),
            host_id: format!("sim-{n}"),
            active: true,
            agent_connected: true,
            agent_version: Some("sim".into()),
            registered_at: n as f64,
            attributes,
            cpu: s.cpu,
            memory: s.memory,
            reserved_tcp: Vec::new(),
            reserved_udp: Vec::new(),
        });
        self.shape.push(j as u32);
        self.zone.push(
            zone.and_then(|z| self.zones.iter().position(|x| x == z))
                .map_or(u32::MAX, |p| p as u32),
        );
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compact_form_gives_shapes_and_zones_round_robin() {
        let c = ClusterSpec::parse("4x4096:16384@a/b,1x8192:32768").expect("compact");
        assert_eq!(c.len(), 5);
        assert_eq!(c.zones(), vec!["a".to_owned(), "b".to_owned()]);
        let b = Built::new(&c);
        assert_eq!(b.zone, vec![0, 1, 0, 1, u32::MAX]);
        assert_eq!(b.state.instance(4).spec.cpu, 8192);
        let e = ClusterSpec::parse("4x4096").expect_err("no memory");
        assert!(e.contains("CPU:MEMORY"), "{e}");
    }

    #[test]
    fn first_keeps_proportions_and_files_name_their_errors() {
        let c = ClusterSpec::parse("6x1:1,3x2:2").expect("compact");
        let f = c.first(5);
        assert_eq!(f.shapes[0].count + f.shapes[1].count, 5);
        assert_eq!((f.shapes[0].count, f.shapes[1].count), (3, 2));
        let e = ClusterSpec::from_json(
            r#"{"instances": [{"name": "gen", "cpu": 1, "memory": 1}],
                "events": [{"time": 5, "kind": "drain", "shape": "big"}]}"#,
        )
        .expect_err("unknown shape");
        assert!(e.contains("events[0].shape"), "{e}");
        let ok = ClusterSpec::from_json(
            r#"{"instances": [{"name": "gen", "count": 2, "cpu": 1, "memory": 1}],
                "events": [{"time": 5, "kind": "lose", "shape": "gen"}]}"#,
        )
        .expect("valid");
        assert_eq!(ok.events[0].kind, EventKind::Lose);
        assert_eq!(ok.events[0].time_ms, 5000);
    }
}
