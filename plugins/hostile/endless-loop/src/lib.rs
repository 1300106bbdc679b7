//! A hostile test policy (endless-loop): behaves like binpack, except on tasks of
//! family `attack`, where it misbehaves. The host must fail only that
//! decision and stay healthy.
use berth_sdk::{Cluster, Info, Policy, Task, export_policy};

#[derive(Default)]
struct Hostile;

impl Policy for Hostile {
    fn info(&self) -> Info {
        Info::new("hostile-endless-loop", "0.1.0")
    }
    fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<u32> {
        if task.family == "attack" {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        cluster
            .candidates(task)
            .min_by_key(|&i| cluster.memory_free(i) - task.memory)
    }
}

export_policy!(Hostile);
