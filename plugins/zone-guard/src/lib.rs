//! zone-guard: the policy of sdk/README.md's walk-through, written the
//! plain way (candidates, one attribute lookup per candidate):
//!
//! - never on an instance with the attribute `maintenance`;
//! - the task group balanced over `ecs.availability-zone` (the zone running
//!   the fewest tasks of the group);
//! - then the instance with the most free memory (ties to the lowest id).
use std::cmp::Reverse;

use berth_sdk::{Cluster, Info, Level, Policy, Task, export_policy, log};

const ZONE: &str = "ecs.availability-zone";
const MAINTENANCE: &str = "maintenance";

#[derive(Default)]
pub struct ZoneGuard;

impl Policy for ZoneGuard {
    fn info(&self) -> Info {
        Info::new("zone-guard", "0.1.0")
    }

    fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<u32> {
        // Tasks of this group per zone, for every instance.
        let zones = cluster.spread_by(ZONE, task.group);
        cluster
            .candidates(task)
            .filter(|&i| cluster.attribute(i, MAINTENANCE).is_none())
            .min_by_key(|&i| (zones.count(i), Reverse(cluster.memory_free(i))))
    }

    fn explain(&mut self, cluster: &Cluster, task: &Task) -> String {
        // Name the instances held back, so the operator can act on them.
        let held: Vec<String> = cluster
            .candidates(task)
            .filter(|&i| cluster.attribute(i, MAINTENANCE).is_some())
            .filter_map(|i| cluster.instance_name(i))
            .take(5)
            .collect();
        if held.is_empty() {
            return "no instance fits".to_owned();
        }
        let why = format!("only instances under maintenance fit: {}", held.join(", "));
        log(Level::Info, &why);
        why
    }
}

export_policy!(ZoneGuard);

#[cfg(test)]
mod tests {
    use berth_sdk::{Cluster, InstanceSpec, Policy};

    use super::ZoneGuard;

    // The test sdk/README.md shows.
    #[test]
    fn skips_maintenance_then_balances_zones_then_takes_the_most_memory() {
        let mut cluster = Cluster::builder()
            .instance(
                InstanceSpec::new("a-1", 4096, 8192)
                    .zone("a")
                    .tasks("service:web", 2),
            )
            .instance(
                InstanceSpec::new("b-1", 4096, 8192)
                    .zone("b")
                    .tasks("service:web", 1),
            )
            .instance(
                InstanceSpec::new("c-1", 4096, 16384)
                    .zone("c")
                    .attribute("maintenance", None),
            )
            .instance(InstanceSpec::new("c-2", 4096, 1024).zone("c"))
            .build();
        let task = cluster.task("service:web", 256, 512); // group, cpu, memory
        assert_eq!(ZoneGuard.choose(&cluster, &task), Some(3)); // c-2
        cluster.reserve(3, &task); // as the SDK does after each answer
        assert_eq!(ZoneGuard.choose(&cluster, &task), Some(1)); // b-1
    }

    #[test]
    fn most_free_memory_breaks_ties_within_a_zone_then_the_lowest_id() {
        let cluster = Cluster::builder()
            .instance(
                InstanceSpec::new("a-1", 4096, 16384)
                    .zone("a")
                    .tasks("service:web", 1),
            )
            .instance(InstanceSpec::new("b-1", 4096, 8192).zone("b").used(0, 4096))
            .instance(InstanceSpec::new("b-2", 4096, 8192).zone("b"))
            .instance(InstanceSpec::new("b-3", 4096, 8192).zone("b"))
            .build();
        let task = cluster.task("service:web", 256, 512);
        assert_eq!(ZoneGuard.choose(&cluster, &task), Some(2));
        // A task only a-1 can hold goes there, balance or not.
        let big = cluster.task("service:web", 256, 12288);
        assert_eq!(ZoneGuard.choose(&cluster, &big), Some(0));
    }

    #[test]
    fn answers_none_when_only_maintenance_instances_fit_and_names_them() {
        let cluster = Cluster::builder()
            .instance(
                InstanceSpec::new("m-1", 4096, 8192)
                    .zone("a")
                    .attribute("maintenance", Some("2026-12-01")),
            )
            .instance(InstanceSpec::new("s-1", 4096, 256).zone("b"))
            .build();
        let task = cluster.task("service:web", 256, 512);
        assert_eq!(ZoneGuard.choose(&cluster, &task), None);
        assert_eq!(
            ZoneGuard.explain(&cluster, &task),
            "only instances under maintenance fit: m-1"
        );
    }
}
