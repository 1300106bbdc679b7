//! A hostile test policy (memory-bomb): behaves like binpack, except on tasks of
//! family `attack`, where it misbehaves. The host must fail only that
//! decision and stay healthy.
use berth_sdk::{Cluster, Info, Policy, Task, export_policy};

#[derive(Default)]
struct Hostile;

impl Policy for Hostile {
    fn info(&self) -> Info {
        Info::new("hostile-memory-bomb", "0.1.0")
    }
    fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<u32> {
        if task.family == "attack" {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Reserve without touching: grows linear memory fast, so the limit,
                // not the deadline, stops it.
                let mut v: Vec<u8> = Vec::with_capacity(16 << 20);
                v.push(1);
                hoard.push(v);
                std::hint::black_box(&hoard);
            }
        }
        cluster
            .candidates(task)
            .min_by_key(|&i| cluster.memory_free(i) - task.memory)
    }
}

export_policy!(Hostile);
