//! spread: the instance whose availability zone runs the fewest tasks of the
//! group, ties to the lowest id; the same answers as berth's native `spread`
//! on `attribute:ecs.availability-zone`.
use berth_sdk::{Cluster, Info, Policy, Task, export_policy};

const ZONE: &str = "ecs.availability-zone";

#[derive(Default)]
struct Spread;

impl Policy for Spread {
    fn info(&self) -> Info {
        Info::new("spread", "0.1.0")
    }
    fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<u32> {
        let zone = cluster.spread_by(ZONE, task.group);
        cluster.least(task, |i| zone.count(i))
    }
}

export_policy!(Spread);
