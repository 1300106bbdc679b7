//! follow: applies the caller's own strategy, read from `task.strategy`, as
//! berth's native engine does: each strategy in turn keeps the candidates
//! with the least key, ties to the lowest id. Supports `binpack` on `cpu` or
//! `memory` and `spread` on `instanceId` or `attribute:<name>`; an unknown
//! strategy leaves the task unplaced. A test policy: it shows the strategy
//! (and family) reach the policy intact whatever the host interns.
use berth_sdk::{Cluster, Info, Policy, Task, export_policy};

#[derive(Default)]
struct Follow;

impl Policy for Follow {
    fn info(&self) -> Info {
        Info::new("follow", "0.1.0").parameter(
            "strategy",
            "binpack:cpu|memory, spread:instanceId|attribute:<name>, in order",
        )
    }
    fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<u32> {
        let mut cands: Vec<u32> = cluster.candidates(task).collect();
        for (kind, field) in &task.strategy {
            let key: Box<dyn Fn(u32) -> u32 + '_> = match (kind.as_str(), field.as_str()) {
                ("binpack", "cpu") => Box::new(|i| cluster.cpu_free(i) - task.cpu),
                ("binpack", "memory") => Box::new(|i| cluster.memory_free(i) - task.memory),
                ("spread", "instanceId") => Box::new(|i| cluster.group_count(task.group, i)),
                ("spread", f) if f.starts_with("attribute:") => {
                    let name = &f["attribute:".len()..];
                    Box::new(move |i| cluster.spread_count(name, task.group, i))
                }
                _ => return None,
            };
            let least = cands.iter().map(|&i| key(i)).min()?;
            cands.retain(|&i| key(i) == least);
        }
        cands.first().copied()
    }
}

export_policy!(Follow);
