//! `berth bench placement --cluster FILE`: a cluster shaped like the
//! author's own (instances with their CPU, memory, zone and attributes, and
//! what they already hold), and optionally the task placed on it, read
//! from JSON:
//!
//! ```json
//! {
//!   "instances": [
//!     {"count": 40, "cpu": 4096, "memory": 16384, "zone": "a",
//!      "attributes": {"tier": "gold"}, "cpuUsed": 1024, "memoryUsed": 2048},
//!     {"count": 2, "cpu": 4096, "memory": 16384, "zone": "b",
//!      "attributes": {"maintenance": null}}
//!   ],
//!   "task": {"family": "web", "cpu": 256, "memory": 512,
//!            "placementConstraints": [{"type": "memberOf",
//!                                      "expression": "attribute:maintenance !exists"}]}
//! }
//! ```
//!
//! `count` repeats an entry (default 1); `zone` is the instance's
//! `ecs.availability-zone`; an attribute whose value is null is a bare
//! attribute. `task` defaults to family `web`, 256 CPU units and 512 MiB,
//! no constraints.

use anyhow::{Context, bail};
use berth_core::model::{PlacementConstraint, PlacementStrategy, Protocol};
use berth_core::placement::{ClusterState, InstanceSpec, PlacementRequest, TaskSpec};
use serde::Deserialize;

/// The most instances a file may describe.
const MAX_INSTANCES: u64 = 100_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterFile {
    instances: Vec<InstanceEntry>,
    #[serde(default)]
    task: TaskEntry,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InstanceEntry {
    #[serde(default = "one")]
    count: u64,
    cpu: u32,
    memory: u32,
    zone: Option<String>,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, Option<String>>,
    #[serde(default)]
    cpu_used: u32,
    #[serde(default)]
    memory_used: u32,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TaskEntry {
    family: String,
    cpu: u32,
    memory: u32,
    #[serde(default)]
    placement_constraints: Vec<PlacementConstraint>,
}

impl Default for TaskEntry {
    fn default() -> Self {
        TaskEntry {
            family: "web".into(),
            cpu: 256,
            memory: 512,
            placement_constraints: Vec::new(),
        }
    }
}

impl ClusterFile {
    /// Reads and checks `path`; errors name the file and the field.
    pub fn load(path: &std::path::Path) -> anyhow::Result<ClusterFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--cluster {}", path.display()))?;
        let file: ClusterFile = serde_json::from_str(&text)
            .with_context(|| format!("--cluster {}: not a cluster description", path.display()))?;
        file.check()
            .with_context(|| format!("--cluster {}", path.display()))?;
        Ok(file)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.instances.is_empty() {
            bail!("instances: give at least one instance");
        }
        let mut total = 0u64;
        for (i, e) in self.instances.iter().enumerate() {
            if e.count == 0 {
                bail!("instances[{i}].count: 0 describes no instance");
            }
            if e.cpu == 0 || e.memory == 0 {
                bail!("instances[{i}]: cpu and memory must be above 0");
            }
            if e.cpu_used > e.cpu || e.memory_used > e.memory {
                bail!("instances[{i}]: cpuUsed and memoryUsed must be within cpu and memory");
            }
            total += e.count;
        }
        if total > MAX_INSTANCES {
            bail!("instances: {total} in all, more than {MAX_INSTANCES}");
        }
        Ok(())
    }

    /// How many instances the file describes.
    pub fn len(&self) -> usize {
        self.instances.iter().map(|e| e.count as usize).sum()
    }

    /// The cluster as placement sees it.
    pub fn state(&self) -> ClusterState {
        let mut state = ClusterState::default();
        let mut n = 0usize;
        for e in &self.instances {
            for _ in 0..e.count {
                let mut attributes: Vec<(String, Option<String>)> = e
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if let Some(z) = &e.zone {
                    attributes.retain(|(k, _)| k != "ecs.availability-zone");
                    attributes.push(("ecs.availability-zone".into(), Some(z.clone())));
                }
                let idx = state.add_instance(InstanceSpec {
                    arn: format!("arn:aws:ecs:local:000000000000:container-instance/bench/{n:08x}"),
                    host_id: format!("host-{n}"),
                    active: true,
                    agent_connected: true,
                    agent_version: Some("0.1.0".into()),
                    registered_at: 1_700_000_000.0 + n as f64,
                    attributes,
                    cpu: e.cpu,
                    memory: e.memory,
                    reserved_tcp: vec![22],
                    reserved_udp: vec![],
                });
                if e.cpu_used > 0 || e.memory_used > 0 {
                    let used = TaskSpec {
                        cpu: e.cpu_used,
                        memory: e.memory_used,
                        static_ports: vec![],
                        dynamic_ports: vec![],
                        group: "family:filler".into(),
                        family: "filler".into(),
                    };
                    state.add_task(idx, &used, &[]);
                }
                n += 1;
            }
        }
        state
    }

    /// The request for the file's task with `strategies`.
    pub fn request(&self, strategies: &[PlacementStrategy]) -> anyhow::Result<PlacementRequest> {
        let t = &self.task;
        let task = TaskSpec {
            cpu: t.cpu,
            memory: t.memory,
            static_ports: vec![],
            dynamic_ports: vec![Protocol::Tcp],
            group: format!("service:{}", t.family),
            family: t.family.clone(),
        };
        PlacementRequest::compile(task, &[], &t.placement_constraints, strategies)
            .map_err(|e| anyhow::anyhow!("--cluster: task: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> anyhow::Result<ClusterFile> {
        let f: ClusterFile = serde_json::from_value(v)?;
        f.check()?;
        Ok(f)
    }

    #[test]
    fn a_file_describes_instances_zones_attributes_and_the_task() {
        let f = parse(serde_json::json!({
            "instances": [
                {"count": 3, "cpu": 2048, "memory": 4096, "zone": "a", "attributes": {"tier": "gold"}},
                {"cpu": 1024, "memory": 2048, "zone": "b", "attributes": {"maintenance": null}, "memoryUsed": 2048}
            ],
            "task": {"family": "api", "cpu": 128, "memory": 256,
                     "placementConstraints": [{"type": "memberOf", "expression": "attribute:maintenance !exists"}]}
        }))
        .expect("valid");
        assert_eq!(f.len(), 4);
        let state = f.state();
        assert_eq!(state.len(), 4);
        let req = f.request(&[]).expect("compiles");
        assert_eq!(req.task.family, "api");
    }

    #[test]
    fn bad_files_name_the_field() {
        let e =
            parse(serde_json::json!({"instances": [{"cpu": 0, "memory": 1}]})).expect_err("bad");
        assert!(e.to_string().contains("instances[0]"), "{e}");
        let e = parse(serde_json::json!({"instances": [{"cpu": 1, "memory": 1, "cpuUsed": 2}]}))
            .expect_err("bad");
        assert!(e.to_string().contains("cpuUsed"), "{e}");
        let e = parse(serde_json::json!({"instances": [{"cpu": 1, "memory": 1, "disk": 2}]}))
            .expect_err("bad");
        assert!(e.to_string().contains("disk"), "{e}");
        let e = parse(serde_json::json!({"instances": []})).expect_err("bad");
        assert!(e.to_string().contains("at least one"), "{e}");
    }
}
