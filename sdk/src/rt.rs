use super::*;
use bindings::exports::berth::placement0_1_0::policy as exp;

/// The mirror and the policy value of this component instance.
pub struct State<P> {
    cluster: Cluster,
    policy: P,
    families: Vec<String>,
    strategies: Vec<Vec<(String, String)>>,
    /// The task handed to the policy, reused: its family and strategy
    /// are copied in only when their ids change.
    task: Task,
    task_ids: Option<(u32, u32)>,
}

impl<P: Policy> Default for State<P> {
    fn default() -> Self {
        // The first call into a fresh instance builds the state: from then
        // on a panic's message and location reach the host before the trap.
        crate::logging::forward_panics();
        State {
            cluster: Cluster::default(),
            policy: P::default(),
            families: Vec::new(),
            strategies: Vec::new(),
            task: Task::new(0, 0),
            task_ids: None,
        }
    }
}

impl<P: Policy> State<P> {
    pub fn info(&self) -> wit::PolicyInfo {
        let i = self.policy.info();
        wit::PolicyInfo {
            name: i.name,
            version: i.version,
            parameters: i.parameters,
        }
    }
    pub fn sync_full(&mut self, c: wit::ClusterColumns) {
        self.cluster.sync_full(c);
    }
    pub fn define_attribute(&mut self, id: u32, name: String) {
        self.cluster.define_attribute(id, name);
    }
    #[allow(clippy::type_complexity)]
    pub fn set_attributes(&mut self, entries: Vec<(u32, Vec<(u32, Option<String>)>)>) {
        self.cluster.set_attributes(entries);
    }
    pub fn set_ports(&mut self, entries: Vec<(u32, Vec<u16>, Vec<u16>)>) {
        self.cluster.set_ports(entries);
    }
    pub fn set_attribute_column(&mut self, attribute: u32, values: Vec<String>, ids: Vec<u32>) {
        self.cluster.set_attribute_column(attribute, values, ids);
    }
    pub fn set_ports_flat(
        &mut self,
        tcp_offsets: Vec<u32>,
        tcp: Vec<u16>,
        udp_offsets: Vec<u32>,
        udp: Vec<u16>,
    ) {
        self.cluster
            .set_ports_flat(&tcp_offsets, &tcp, &udp_offsets, &udp);
    }
    pub fn define_group(&mut self, id: u32, name: String, counts: Vec<u32>) {
        self.cluster.define_group(id, name, counts);
    }
    pub fn define_filter(&mut self, id: u32, members: Vec<u8>) {
        self.cluster.define_filter(id, members);
    }
    pub fn upsert(&mut self, inst: wit::Instance, groups: Vec<(u32, u32)>) {
        self.cluster.upsert(inst, groups);
    }
    pub fn define_family(&mut self, id: u32, name: String) {
        let slot = id as usize;
        if self.families.len() <= slot {
            self.families.resize(slot + 1, String::new());
        }
        self.families[slot] = name;
        self.task_ids = None;
    }
    pub fn define_strategy(&mut self, id: u32, pairs: Vec<(String, String)>) {
        let slot = id as usize;
        if self.strategies.len() <= slot {
            self.strategies.resize(slot + 1, Vec::new());
        }
        self.strategies[slot] = pairs;
        self.task_ids = None;
    }
    pub fn remove(&mut self, id: u32) {
        self.cluster.remove(id);
    }
    pub fn place(
        &mut self,
        changes: Vec<wit::Change>,
        t: wit::Task,
        count: u32,
    ) -> Vec<wit::Decision> {
        for c in changes {
            match c {
                wit::Change::Usage(u) => self.cluster.update_usage(u),
                wit::Change::GroupCount(c) => {
                    self.cluster.set_group_count(c.group, c.instance, c.count)
                }
            }
        }
        let task = &mut self.task;
        task.cpu = t.cpu;
        task.memory = t.memory;
        task.static_ports.clear();
        task.static_ports
            .extend(t.static_ports.iter().map(|p| (p.port, p.udp)));
        task.dynamic_tcp = t.dynamic_tcp;
        task.dynamic_udp = t.dynamic_udp;
        task.group = t.group;
        task.distinct_instance = t.distinct_instance;
        task.filter = t.filter;
        if self.task_ids != Some((t.family, t.strategy)) {
            // An id never defined reads as empty.
            task.family.clone_from(
                self.families
                    .get(t.family as usize)
                    .unwrap_or(&String::new()),
            );
            task.strategy.clone_from(
                self.strategies
                    .get(t.strategy as usize)
                    .unwrap_or(&Vec::new()),
            );
            self.task_ids = Some((t.family, t.strategy));
        }
        let task = &self.task;
        self.cluster.ensure_group(task.group);
        (0..count)
            .map(|_| match self.policy.choose(&self.cluster, task) {
                Some(i) if (i as usize) < self.cluster.len() => {
                    self.cluster.reserve(i, task);
                    wit::Decision::Placed(i)
                }
                // Out of range: passed on for the host to reject.
                Some(i) => wit::Decision::Placed(i),
                None => wit::Decision::Unplaceable(self.policy.explain(&self.cluster, task)),
            })
            .collect()
    }
}

pub use bindings::exports::berth::placement0_3_0::bulk::Guest as BulkGuest;
pub use exp::Guest;
pub use wit::{Change, ClusterColumns, Decision, Instance, PolicyInfo, Task as WitTask};
