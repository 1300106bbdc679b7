//! A hostile test policy (log-flood): behaves like binpack, except on tasks of
//! family `attack`, where it misbehaves. The host must fail only that
//! decision and stay healthy.
use berth_sdk::{export_policy, Cluster, Info, Policy, Task};

#[derive(Default)]
struct Hostile;

impl Policy for Hostile {
    fn info(&self) -> Info {
        Info::new("hostile-log-flood", "0.1.0")
    }
    fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<u32> {
        if task.family == "attack" {
            for i in 0..1_000_000u32 {
                berth_sdk::log(berth_sdk::Level::Info, &format!("flood line {i}"));
            }
        }
        cluster.candidates(task).min_by_key(|&i| cluster.memory_free(i) - task.memory)
    }
}

export_policy!(Hostile);
