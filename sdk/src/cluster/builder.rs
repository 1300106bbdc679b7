//! [`ClusterBuilder`]: a [`Cluster`] made by hand, so a policy's `choose`
//! can be unit-tested with plain `cargo test` (a native build, no wasmtime).

use super::Cluster;
use crate::{GroupId, Task};

/// One instance for [`ClusterBuilder::instance`].
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    name: String,
    cpu: u32,
    memory: u32,
    used: (u32, u32),
    schedulable: bool,
    attributes: Vec<(String, Option<String>)>,
    tasks: Vec<(String, u32)>,
    ports: Vec<(u16, bool)>,
}

impl InstanceSpec {
    /// An ACTIVE instance named `name` (its container instance id) with
    /// `cpu` units and `memory` MiB registered, all free.
    pub fn new(name: &str, cpu: u32, memory: u32) -> Self {
        InstanceSpec {
            name: name.to_owned(),
            cpu,
            memory,
            used: (0, 0),
            schedulable: true,
            attributes: Vec::new(),
            tasks: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// Its availability zone (the attribute `ecs.availability-zone`).
    pub fn zone(self, zone: &str) -> Self {
        self.attribute("ecs.availability-zone", Some(zone))
    }

    /// An attribute, with a value or bare (`None`); set again, it is replaced.
    pub fn attribute(mut self, name: &str, value: Option<&str>) -> Self {
        self.attributes.retain(|(n, _)| n != name);
        self.attributes
            .push((name.to_owned(), value.map(str::to_owned)));
        self
    }

    /// `count` tasks of `group` (e.g. `service:web`) running there; they
    /// hold no resources (see [`InstanceSpec::used`]).
    pub fn tasks(mut self, group: &str, count: u32) -> Self {
        self.tasks.push((group.to_owned(), count));
        self
    }

    /// CPU units and memory MiB already reserved by its tasks.
    pub fn used(mut self, cpu: u32, memory: u32) -> Self {
        self.used = (cpu, memory);
        self
    }

    /// A host port already in use (`udp` false: TCP).
    pub fn port(mut self, port: u16, udp: bool) -> Self {
        self.ports.push((port, udp));
        self
    }

    /// Not schedulable (DRAINING, or its agent disconnected).
    pub fn unschedulable(mut self) -> Self {
        self.schedulable = false;
        self
    }
}

/// Builds a [`Cluster`] for a test; instances get ids in the order added.
///
/// ```
/// use berth_sdk::{Cluster, InstanceSpec};
///
/// let cluster = Cluster::builder()
///     .instance(InstanceSpec::new("a1", 2048, 4096).zone("a").tasks("service:web", 1))
///     .instance(InstanceSpec::new("b1", 2048, 4096).zone("b").attribute("maintenance", None))
///     .build();
/// let task = cluster.task("service:web", 256, 512);
/// assert_eq!(cluster.candidates(&task).collect::<Vec<_>>(), [0, 1]);
/// assert_eq!(cluster.attribute(1, "maintenance"), Some(None));
/// assert_eq!(cluster.instance_name(1).as_deref(), Some("b1"));
/// ```
#[derive(Debug, Default)]
pub struct ClusterBuilder {
    instances: Vec<InstanceSpec>,
    groups: Vec<String>,
}

impl ClusterBuilder {
    /// Adds an instance (its id is the number added before it).
    pub fn instance(mut self, spec: InstanceSpec) -> Self {
        self.instances.push(spec);
        self
    }

    /// Defines a group no instance runs tasks of yet.
    pub fn group(mut self, name: &str) -> Self {
        if !self.groups.iter().any(|g| g == name) {
            self.groups.push(name.to_owned());
        }
        self
    }

    /// The cluster, as the SDK's mirror would hold it.
    pub fn build(mut self) -> Cluster {
        let mut c = Cluster::default();
        for spec in &self.instances {
            for (g, _) in &spec.tasks {
                if !self.groups.contains(g) {
                    self.groups.push(g.clone());
                }
            }
        }
        let n = self.instances.len();
        if n > 0 {
            c.grow_to(n - 1);
        }
        for (g, name) in self.groups.iter().enumerate() {
            c.define_group(g as u32, name.clone(), vec![0; n]);
        }
        for (i, spec) in self.instances.iter().enumerate() {
            c.schedulable[i] = spec.schedulable;
            c.cpu_total[i] = spec.cpu;
            c.memory_total[i] = spec.memory;
            c.cpu_free[i] = spec.cpu.saturating_sub(spec.used.0);
            c.memory_free[i] = spec.memory.saturating_sub(spec.used.1);
            // berth's default ephemeral range, 49153-65535, all free.
            c.eph_tcp_free[i] = 16_383;
            c.eph_udp_free[i] = 16_383;
            for &(p, udp) in &spec.ports {
                if udp {
                    c.udp_ports[i].push(p);
                } else {
                    c.tcp_ports[i].push(p);
                }
            }
            let mut running = 0;
            for (g, count) in &spec.tasks {
                let gid = self.groups.iter().position(|x| x == g).unwrap_or(0);
                c.group_counts[gid][i] += count;
                running += count;
            }
            c.running[i] = running;
            for (name, value) in &spec.attributes {
                let id = match c.attribute_ids.get(name) {
                    Some(&id) => id,
                    None => {
                        let id = c.attribute_names.len() as u32;
                        c.define_attribute(id, name.clone());
                        id
                    }
                };
                let col = &mut c.columns[id as usize];
                col.ids[i] = col.intern(value.as_deref());
            }
        }
        c.names = self.instances.into_iter().map(|s| s.name).collect();
        c.invalidate_values();
        c
    }
}

impl Cluster {
    /// A task of `group` needing `cpu` units and `memory` MiB, no ports and
    /// no constraints: what a test hands to `choose`. The group is found
    /// by name (define it with the builder if no instance runs it).
    pub fn task(&self, group: &str, cpu: u32, memory: u32) -> Task {
        let mut t = Task::new(cpu, memory);
        t.group = self.group_id(group).unwrap_or(GroupId::MAX);
        t
    }
}

impl Task {
    /// A task needing `cpu` units and `memory` MiB, in group 0, with no
    /// ports, filter or strategy.
    pub fn new(cpu: u32, memory: u32) -> Self {
        Task {
            cpu,
            memory,
            static_ports: Vec::new(),
            dynamic_tcp: 0,
            dynamic_udp: 0,
            group: 0,
            family: String::new(),
            distinct_instance: false,
            filter: None,
            strategy: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster::builder()
            .instance(
                InstanceSpec::new("a1", 1024, 2048)
                    .zone("a")
                    .tasks("service:web", 2),
            )
            .instance(InstanceSpec::new("a2", 1024, 2048).zone("a").used(1000, 0))
            .instance(
                InstanceSpec::new("b1", 1024, 4096)
                    .zone("b")
                    .attribute("maintenance", None)
                    .tasks("service:web", 1),
            )
            .instance(InstanceSpec::new("c1", 1024, 4096).unschedulable())
            .group("service:api")
            .build()
    }

    #[test]
    fn a_built_cluster_answers_like_the_mirror() {
        let c = cluster();
        assert_eq!(c.len(), 4);
        let web = c.group_id("service:web").expect("web");
        assert_eq!(c.group_count(web, 0), 2);
        assert_eq!(c.running_tasks(2), 1);
        assert_eq!(c.cpu_free(1), 24);
        assert_eq!(c.attribute(0, "ecs.availability-zone"), Some(Some("a")));
        assert_eq!(c.attribute(2, "maintenance"), Some(None));
        assert_eq!(c.attribute(0, "maintenance"), None);
        assert_eq!(c.attribute(0, "nothing"), None);
        assert_eq!(c.instance_name(3).as_deref(), Some("c1"));
        assert_eq!(c.instance_name(4), None);
        let t = c.task("service:web", 256, 512);
        assert_eq!(c.candidates(&t).collect::<Vec<_>>(), [0, 2]);
        let zones = c.spread_by("ecs.availability-zone", web);
        assert_eq!([0, 1, 2, 3].map(|i| zones.count(i)), [2, 2, 1, 0]);
        drop(zones);
        let mut counts = c.value_counts("ecs.availability-zone", web);
        counts.sort();
        assert_eq!(
            counts,
            [(None, 0), (Some("a".into()), 2), (Some("b".into()), 1)]
        );
        assert_eq!(
            c.task("service:api", 1, 1).group,
            c.group_id("service:api").expect("api")
        );
        assert_ne!(c.group_id("service:api"), Some(web));
    }

    #[test]
    fn attribute_lookups_stay_exact_whatever_names_are_asked_in_turn() {
        // Names of every length around the cache's 8- and 16-byte edges,
        // asked for in turn from strings built afresh (same addresses,
        // other contents), present and absent.
        let names: Vec<String> = (1..=24).map(|n| "x".repeat(n - 1) + "y").collect();
        let mut b = Cluster::builder();
        for (i, n) in names.iter().enumerate() {
            b = b.instance(InstanceSpec::new("i", 1, 1).attribute(n, Some(&i.to_string())));
        }
        let c = b.build();
        for round in 0..3 {
            for (i, _) in names.iter().enumerate() {
                for (j, n) in names.iter().enumerate() {
                    let asked = n.as_str().to_owned();
                    let want = (i == j).then(|| i.to_string());
                    assert_eq!(
                        c.attribute(i as u32, &asked).map(|v| v.map(str::to_owned)),
                        want.map(Some),
                        "round {round}: instance {i}, name {asked}"
                    );
                    let absent = format!("{n}z");
                    assert_eq!(c.attribute(i as u32, &absent), None);
                }
            }
        }
    }

    #[test]
    fn reserving_updates_candidates_and_spread_counts() {
        let mut c = cluster();
        let web = c.group_id("service:web").expect("web");
        let mut t = c.task("service:web", 1000, 512);
        t.distinct_instance = true;
        assert_eq!(c.candidates(&t).collect::<Vec<_>>(), Vec::<u32>::new());
        let t = c.task("service:web", 1000, 512);
        assert_eq!(c.spread_count("ecs.availability-zone", web, 0), 2);
        c.reserve(0, &t);
        assert_eq!(c.candidates(&t).collect::<Vec<_>>(), [2]);
        assert_eq!(c.spread_count("ecs.availability-zone", web, 1), 3);
        assert_eq!(c.group_count(web, 0), 3);
        c.reserve(2, &t);
        assert_eq!(c.candidates(&t).count(), 0);
        assert_eq!(c.spread_count("ecs.availability-zone", web, 2), 2);
    }
}
