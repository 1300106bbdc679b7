//! A hostile test policy (bad-id): behaves like binpack, except on tasks of
//! family `attack`, where it misbehaves. The host must fail only that
//! decision and stay healthy.
use berth_sdk::{Cluster, Info, Policy, Task, export_policy};

#[derive(Default)]
struct Hostile;

impl Policy for Hostile {
    fn info(&self) -> Info {
        Info::new("hostile-bad-id", "0.1.0")
    }
    fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<u32> {
        if task.family == "attack" {
            return Some(cluster.len() as u32 + 1000);
        }
        cluster
            .candidates(task)
            .min_by_key(|&i| cluster.memory_free(i) - task.memory)
    }
}

export_policy!(Hostile);
