//! cheapest: prefers the instance with the lowest numeric `cost` attribute
//! (instances without one, or with a non-numeric one, come last), packing by
//! memory among equally cheap ones. The native strategies cannot express it:
//! they compare attribute values only for equality, never as numbers.
use berth_sdk::{Cluster, Info, Policy, Task, export_policy};

#[derive(Default)]
struct Cheapest;

impl Policy for Cheapest {
    fn info(&self) -> Info {
        Info::new("cheapest", "0.1.0").parameter(
            "cost",
            "instance attribute read as an unsigned number; lower wins",
        )
    }
    fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<u32> {
        cluster.candidates(task).min_by_key(|&i| {
            let cost = cluster
                .attribute(i, "cost")
                .flatten()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            (cost, cluster.memory_free(i) - task.memory)
        })
    }
}

export_policy!(Cheapest);
