//! binpack: the instance with the least memory left after placing, ties to
//! the lowest id; the same answers as berth's native `binpack` on memory.
use berth_sdk::{Cluster, Info, Policy, Task, export_policy};

#[derive(Default)]
struct Binpack;

impl Policy for Binpack {
    fn info(&self) -> Info {
        Info::new("binpack", "0.1.0")
    }
    fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<u32> {
        cluster.least(task, |i| cluster.memory_free(i).saturating_sub(task.memory))
    }
}

export_policy!(Binpack);
