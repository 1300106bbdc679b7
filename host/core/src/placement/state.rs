//! The placement view of a cluster: every instance's free resources, ports in
//! use and attributes, plus dense per-group task counts and caches that keep
//! the placement loop on plain numbers.

// Fx hashing: these maps are looked up on every placement call with keys
// berth itself produced, so a fast non-DoS-resistant hash is right.
use rustc_hash::FxHashMap as HashMap;

use crate::model::{NetworkMode, Protocol, TaskDefinition, TaskOverride};
use crate::query::{Expr, QueryTarget};
use crate::validate::{parse_task_cpu, parse_task_memory};

use super::{Check, Constraint, PlacementRequest, protocol_index};

/// Host ports handed out for dynamic mappings, as the ECS agent's default.
pub const DEFAULT_EPHEMERAL_PORTS: (u16, u16) = (49153, 65535);

/// A stable 16-bit hash (FNV-1a) of an instance ARN.
fn port_seed(arn: &str) -> u16 {
    let h = arn.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) as u16
}

/// A set of ports, kept sorted: instances use few ports, so a sorted vector
/// is smaller and faster than a 64 Ki-bit map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSet(Vec<u16>);

impl PortSet {
    pub fn contains(&self, p: u16) -> bool {
        self.0.binary_search(&p).is_ok()
    }
    /// Adds `p`; false when it was already there.
    pub fn insert(&mut self, p: u16) -> bool {
        match self.0.binary_search(&p) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, p);
                true
            }
        }
    }
    pub fn remove(&mut self, p: u16) -> bool {
        match self.0.binary_search(&p) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }
    /// How many ports of `lo..=hi` are in the set.
    pub fn count_in(&self, lo: u16, hi: u16) -> usize {
        let a = self.0.partition_point(|&p| p < lo);
        let b = self.0.partition_point(|&p| p <= hi);
        b - a
    }
    /// The lowest free port of `start..=hi`, else of `lo..start`.
    pub fn free_from(&self, lo: u16, hi: u16, start: u16) -> Option<u16> {
        let start = start.clamp(lo, hi);
        self.first_free(start, hi).or_else(|| {
            if start > lo {
                self.first_free(lo, start - 1)
            } else {
                None
            }
        })
    }
    /// The lowest port of `lo..=hi` not in the set.
    pub fn first_free(&self, lo: u16, hi: u16) -> Option<u16> {
        let mut want = lo;
        for &p in &self.0[self.0.partition_point(|&p| p < lo)..] {
            if p > want {
                break;
            }
            if p == want {
                if want == hi {
                    return None;
                }
                want += 1;
            }
        }
        (want <= hi).then_some(want)
    }
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().copied()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What placement needs to know of a container instance when it is added.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    pub arn: String,
    /// `ec2InstanceId`: the host.
    pub host_id: String,
    /// status ACTIVE (not DRAINING or INACTIVE).
    pub active: bool,
    pub agent_connected: bool,
    pub agent_version: Option<String>,
    pub registered_at: f64,
    pub attributes: Vec<(String, Option<String>)>,
    pub cpu: u32,
    pub memory: u32,
    /// Ports the host keeps for itself (ECS's PORTS and PORTS_UDP resources).
    pub reserved_tcp: Vec<u16>,
    pub reserved_udp: Vec<u16>,
}

/// One instance as placement sees it, less the columns the hot loop reads
/// (free CPU and memory, schedulability), which [`ClusterState`] keeps apart.
#[derive(Debug, Clone)]
pub struct InstanceState {
    pub spec: InstanceSpec,
    /// Host ports in use, TCP then UDP.
    pub ports: [PortSet; 2],
    pub running_tasks: u32,
    /// Where the next search for a free ephemeral port starts, TCP then
    /// UDP. First a hash of the instance's ARN, so instances sharing one
    /// host (several agents, or several berths on one Docker daemon) rarely
    /// hand out the same port; then just past the port last handed out, as
    /// the ECS agent does, so a port freed by a task that failed to bind it
    /// (something outside berth listens there) is not handed straight back.
    pub port_next: [u16; 2],
}

impl InstanceState {
    /// The value of attribute `name`: None when absent, Some(None) when set without a value.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        let attrs = &self.spec.attributes;
        attrs
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| attrs[i].1.as_deref())
    }
}

/// A task's demand on an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// CPU units reserved.
    pub cpu: u32,
    /// Memory MiB reserved.
    pub memory: u32,
    /// Host ports the task claims as given.
    pub static_ports: Vec<(u16, Protocol)>,
    /// One entry per mapping whose host port placement picks.
    pub dynamic_ports: Vec<Protocol>,
    /// The task group (`family:web`, `service:api`).
    pub group: String,
    /// The task definition's family (what policies see as the task's
    /// family; empty when unknown, as for tasks loaded from the store).
    pub family: String,
}

impl TaskSpec {
    /// The demand of a task of `td` with `overrides`: task-level cpu and
    /// memory when given, else the containers' sums, where a container
    /// reserves its memoryReservation, else its memory.
    pub fn from_definition(
        td: &TaskDefinition,
        overrides: Option<&TaskOverride>,
        group: impl Into<String>,
    ) -> TaskSpec {
        let mut cpu = 0u32;
        let mut memory = 0u32;
        let mut static_ports = Vec::new();
        let mut dynamic_ports = Vec::new();
        for d in &td.container_definitions {
            let o = overrides.and_then(|o| o.container_overrides.iter().find(|c| c.name == d.name));
            cpu = cpu.saturating_add(o.and_then(|o| o.cpu).or(d.cpu).unwrap_or(0));
            let soft = o
                .and_then(|o| o.memory_reservation)
                .or(d.memory_reservation);
            let hard = o.and_then(|o| o.memory).or(d.memory);
            memory = memory.saturating_add(soft.or(hard).unwrap_or(0));
            for pm in &d.port_mappings {
                let host = match td.network_mode {
                    NetworkMode::Host => Some(pm.container_port),
                    NetworkMode::Bridge => pm.static_host_port(),
                    NetworkMode::None => continue,
                };
                match host.and_then(|p| u16::try_from(p).ok()) {
                    Some(p) => static_ports.push((p, pm.protocol())),
                    None => dynamic_ports.push(pm.protocol()),
                }
            }
        }
        if let Some(c) = td.cpu.as_deref().and_then(parse_task_cpu) {
            cpu = c;
        }
        if let Some(m) = td.memory.as_deref().and_then(parse_task_memory) {
            memory = m;
        }
        TaskSpec {
            cpu,
            memory,
            static_ports,
            dynamic_ports,
            group: group.into(),
            family: td.family.clone(),
        }
    }
}

/// Ports one task needs, per call.
#[derive(Debug, Clone, Copy)]
pub(super) struct PortDemand {
    pub(super) any: bool,
    /// Dynamic ports needed from the ephemeral range, TCP then UDP.
    ephemeral: [usize; 2],
}

/// A column of interned values, one per instance.
#[derive(Debug, Clone)]
struct ValueColumn {
    of_instance: Vec<u32>,
    ids: HashMap<Option<String>, u32>,
}

/// The cluster as placement sees it. Build it from a store snapshot (or keep
/// one current with deltas), then place against it.
#[derive(Debug, Clone)]
pub struct ClusterState {
    instances: Vec<InstanceState>,
    // Hot columns, one entry per instance: the placement loop reads these
    // and nothing else for most instances, so they are kept dense.
    /// ACTIVE with a connected agent.
    schedulable: Vec<bool>,
    cpu_free: Vec<u32>,
    mem_free: Vec<u32>,
    /// Ports in use inside the ephemeral range, TCP then UDP.
    ephemeral_used: [Vec<u16>; 2],
    by_arn: HashMap<String, usize>,
    ephemeral: (u16, u16),
    group_ids: HashMap<String, usize>,
    group_names: Vec<String>,
    /// Per group, its desired-RUNNING task count on each instance.
    group_counts: Vec<Vec<u32>>,
    /// Results of static memberOf expressions per instance, by source text.
    static_slots: HashMap<String, usize>,
    /// Conjunctions of schedulability and static results, by their slots.
    combined_slots: HashMap<Vec<usize>, usize>,
    static_results: Vec<Vec<bool>>,
    /// Interned spread values by attribute name (None: the host id).
    column_slots: HashMap<Option<String>, usize>,
    columns: Vec<ValueColumn>,
    /// Per (value column, group): the group's task count per value, kept
    /// current as tasks come and go, so spread costs nothing per call.
    value_counts: Vec<(usize, usize, Vec<u32>)>,
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState::new(DEFAULT_EPHEMERAL_PORTS)
    }
}

impl ClusterState {
    pub fn new(ephemeral: (u16, u16)) -> Self {
        ClusterState {
            instances: Vec::new(),
            schedulable: Vec::new(),
            cpu_free: Vec::new(),
            mem_free: Vec::new(),
            ephemeral_used: [Vec::new(), Vec::new()],
            by_arn: HashMap::default(),
            ephemeral,
            group_ids: HashMap::default(),
            group_names: Vec::new(),
            group_counts: Vec::new(),
            static_slots: HashMap::default(),
            combined_slots: HashMap::default(),
            static_results: Vec::new(),
            column_slots: HashMap::default(),
            columns: Vec::new(),
            value_counts: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
    pub fn instance(&self, i: usize) -> &InstanceState {
        &self.instances[i]
    }
    pub fn instances(&self) -> &[InstanceState] {
        &self.instances
    }
    pub fn index_of(&self, arn: &str) -> Option<usize> {
        self.by_arn.get(arn).copied()
    }
    pub fn ephemeral_ports(&self) -> (u16, u16) {
        self.ephemeral
    }
    /// CPU units not reserved on instance `i`.
    pub fn cpu_free(&self, i: usize) -> u32 {
        self.cpu_free[i]
    }
    /// Memory MiB not reserved on instance `i`.
    pub fn mem_free(&self, i: usize) -> u32 {
        self.mem_free[i]
    }

    fn in_ephemeral(&self, p: u16) -> bool {
        (self.ephemeral.0..=self.ephemeral.1).contains(&p)
    }

    /// Marks port `p` used on instance `i`, keeping the ephemeral count.
    fn take_port(&mut self, i: usize, p: u16, proto: Protocol) {
        let k = protocol_index(proto);
        if self.instances[i].ports[k].insert(p) && self.in_ephemeral(p) {
            self.ephemeral_used[k][i] += 1;
        }
    }

    fn free_port(&mut self, i: usize, p: u16, proto: Protocol) {
        let k = protocol_index(proto);
        if self.instances[i].ports[k].remove(p) && self.in_ephemeral(p) {
            self.ephemeral_used[k][i] -= 1;
        }
    }

    /// Adds an instance with nothing running; returns its index.
    pub fn add_instance(&mut self, mut spec: InstanceSpec) -> usize {
        spec.attributes.sort_by(|a, b| a.0.cmp(&b.0));
        spec.attributes.dedup_by(|a, b| a.0 == b.0);
        let idx = self.instances.len();
        self.by_arn.insert(spec.arn.clone(), idx);
        self.schedulable.push(spec.active && spec.agent_connected);
        self.cpu_free.push(spec.cpu);
        self.mem_free.push(spec.memory);
        self.ephemeral_used[0].push(0);
        self.ephemeral_used[1].push(0);
        let reserved: Vec<(u16, Protocol)> =
            (spec.reserved_tcp.iter().map(|&p| (p, Protocol::Tcp)))
                .chain(spec.reserved_udp.iter().map(|&p| (p, Protocol::Udp)))
                .collect();
        let (lo, hi) = self.ephemeral;
        let start = lo + (port_seed(&spec.arn) % (hi - lo).saturating_add(1).max(1));
        self.instances.push(InstanceState {
            ports: [PortSet::default(), PortSet::default()],
            running_tasks: 0,
            port_next: [start; 2],
            spec,
        });
        for (p, proto) in reserved {
            self.take_port(idx, p, proto);
        }
        for col in &mut self.group_counts {
            col.push(0);
        }
        self.invalidate();
        idx
    }

    /// Replaces an instance's status, agent state and attributes (its
    /// resources stay as they are).
    pub fn update_instance(
        &mut self,
        i: usize,
        active: bool,
        agent_connected: bool,
        mut attributes: Vec<(String, Option<String>)>,
    ) {
        attributes.sort_by(|a, b| a.0.cmp(&b.0));
        attributes.dedup_by(|a, b| a.0 == b.0);
        let s = &mut self.instances[i].spec;
        s.active = active;
        s.agent_connected = agent_connected;
        s.attributes = attributes;
        self.schedulable[i] = active && agent_connected;
        self.invalidate();
    }

    /// Cached per-instance results depend on status and attributes.
    fn invalidate(&mut self) {
        self.static_slots.clear();
        self.combined_slots.clear();
        self.static_results.clear();
        self.column_slots.clear();
        self.columns.clear();
        self.value_counts.clear();
    }

    /// Counts one more (or one fewer) task of group `gid` on instance `i`.
    fn count_task(&mut self, i: usize, gid: usize, delta: i32) {
        let c = &mut self.group_counts[gid][i];
        // Removing a task the instance does not hold changes nothing, so
        // the per-value counts below stay equal to the sums of these.
        if delta < 0 && *c == 0 {
            return;
        }
        *c = c.saturating_add_signed(delta);
        for (col, g, counts) in &mut self.value_counts {
            if *g == gid {
                let v = self.columns[*col].of_instance[i] as usize;
                counts[v] = counts[v].saturating_add_signed(delta);
            }
        }
    }

    /// The slot counting group `gid`'s tasks per value of column `col`.
    pub(super) fn value_counts_slot(&mut self, col: usize, gid: usize) -> usize {
        if let Some(s) = self
            .value_counts
            .iter()
            .position(|(c, g, _)| *c == col && *g == gid)
        {
            return s;
        }
        let mut counts = vec![0u32; self.columns[col].ids.len()];
        for (&v, &n) in self.columns[col]
            .of_instance
            .iter()
            .zip(&self.group_counts[gid])
        {
            counts[v as usize] += n;
        }
        self.value_counts.push((col, gid, counts));
        self.value_counts.len() - 1
    }

    pub(super) fn value_counts(&self, slot: usize) -> &[u32] {
        &self.value_counts[slot].2
    }

    /// The dense id of a task group, creating its count column.
    pub fn group_id(&mut self, group: &str) -> usize {
        if let Some(&g) = self.group_ids.get(group) {
            return g;
        }
        let g = self.group_names.len();
        self.group_ids.insert(group.to_owned(), g);
        self.group_names.push(group.to_owned());
        self.group_counts.push(vec![0; self.instances.len()]);
        g
    }

    /// The group's task count on each instance.
    pub fn group_counts(&self, gid: usize) -> &[u32] {
        &self.group_counts[gid]
    }

    /// How many tasks of `group` run on instance `i`.
    pub fn group_count(&self, group: &str, i: usize) -> u32 {
        self.group_ids
            .get(group)
            .map_or(0, |&g| self.group_counts[g][i])
    }

    /// Records a task already on instance `i` with the host ports it holds.
    /// Used when building the state from the store. Resources saturate at
    /// zero, so a store that over-committed (it never should) still loads.
    pub fn add_task(&mut self, i: usize, task: &TaskSpec, host_ports: &[(u16, Protocol)]) {
        let gid = self.group_id(&task.group);
        self.cpu_free[i] = self.cpu_free[i].saturating_sub(task.cpu);
        self.mem_free[i] = self.mem_free[i].saturating_sub(task.memory);
        for &(p, proto) in host_ports {
            self.take_port(i, p, proto);
        }
        self.instances[i].running_tasks += 1;
        self.count_task(i, gid, 1);
    }

    /// Frees what a task on instance `i` held (it stopped).
    pub fn remove_task(&mut self, i: usize, task: &TaskSpec, host_ports: &[(u16, Protocol)]) {
        let spec = &self.instances[i].spec;
        self.cpu_free[i] = self.cpu_free[i].saturating_add(task.cpu).min(spec.cpu);
        self.mem_free[i] = self.mem_free[i]
            .saturating_add(task.memory)
            .min(spec.memory);
        for &(p, proto) in host_ports {
            self.free_port(i, p, proto);
        }
        let inst = &mut self.instances[i];
        inst.running_tasks = inst.running_tasks.saturating_sub(1);
        if let Some(&g) = self.group_ids.get(&task.group) {
            self.count_task(i, g, -1);
        }
    }

    /// Reserves a checked placement: resources, static ports, and free
    /// ephemeral ports for the dynamic mappings (searched from the
    /// instance's `port_next`, which then moves past them), which it returns.
    pub(super) fn reserve(&mut self, i: usize, task: &TaskSpec, gid: usize) -> Vec<u16> {
        let (lo, hi) = self.ephemeral;
        self.cpu_free[i] -= task.cpu;
        self.mem_free[i] -= task.memory;
        for &(p, proto) in &task.static_ports {
            self.take_port(i, p, proto);
        }
        let mut chosen = Vec::with_capacity(task.dynamic_ports.len());
        for &proto in &task.dynamic_ports {
            // check_at made sure enough are free.
            let pi = protocol_index(proto);
            let inst = &self.instances[i];
            if let Some(p) = inst.ports[pi].free_from(lo, hi, inst.port_next[pi]) {
                self.take_port(i, p, proto);
                self.instances[i].port_next[pi] = if p >= hi { lo } else { p + 1 };
                chosen.push(p);
            }
        }
        self.instances[i].running_tasks += 1;
        self.count_task(i, gid, 1);
        chosen
    }

    /// Runs every check of the pipeline on instance `i`; the first that fails is returned.
    #[inline]
    pub(super) fn check_at(
        &self,
        i: usize,
        req: &PlacementRequest,
        demand: &PortDemand,
        group_counts: &[u32],
        cached: &[Option<usize>],
    ) -> Result<(), Check> {
        let t = &req.task;
        if !self.schedulable[i] {
            return Err(Check::Agent);
        }
        if self.cpu_free[i] < t.cpu {
            return Err(Check::Cpu);
        }
        if self.mem_free[i] < t.memory {
            return Err(Check::Memory);
        }
        if self.check_rest(i, req, demand, group_counts, cached) {
            return Ok(());
        }
        // Which of the remaining checks failed, in pipeline order.
        if demand.any && !self.ports_fit(i, &req.task, demand) {
            return Err(Check::Ports);
        }
        Err(Check::Attribute)
    }

    /// The dense columns the placement loop filters on: free CPU, free
    /// memory, and ephemeral ports used (TCP, UDP).
    pub(super) fn hot_columns(&self) -> (&[u32], &[u32], &[u16], &[u16]) {
        (
            &self.cpu_free,
            &self.mem_free,
            &self.ephemeral_used[0],
            &self.ephemeral_used[1],
        )
    }

    /// The most ephemeral ports (TCP, UDP) an instance may already use for
    /// the task's dynamic ports to fit; None when the demand is more than
    /// the whole range holds, so no instance fits.
    pub(super) fn ephemeral_limits(&self, demand: &PortDemand) -> Option<(u16, u16)> {
        let size = usize::from(self.ephemeral.1 - self.ephemeral.0) + 1;
        let limit = |need: usize| -> Option<u16> {
            if need == 0 {
                return Some(u16::MAX);
            }
            size.checked_sub(need)
                .map(|l| u16::try_from(l).unwrap_or(u16::MAX))
        };
        Some((limit(demand.ephemeral[0])?, limit(demand.ephemeral[1])?))
    }

    /// The checks after CPU and memory: ports and the constraints (static
    /// ones from their cached results).
    #[inline]
    pub(super) fn check_rest(
        &self,
        i: usize,
        req: &PlacementRequest,
        demand: &PortDemand,
        group_counts: &[u32],
        cached: &[Option<usize>],
    ) -> bool {
        if demand.any && !self.ports_fit(i, &req.task, demand) {
            return false;
        }
        req.constraints
            .iter()
            .zip(cached)
            .all(|(c, slot)| match (c, slot) {
                (Constraint::DistinctInstance, _) => group_counts[i] == 0,
                (Constraint::MemberOf { .. }, Some(s)) => self.static_results[*s][i],
                (Constraint::MemberOf { expr, .. }, None) => {
                    expr.eval(&InstanceRef { state: self, i })
                }
            })
    }

    fn ports_fit(&self, i: usize, t: &TaskSpec, demand: &PortDemand) -> bool {
        let inst = &self.instances[i];
        if t.static_ports
            .iter()
            .any(|&(p, proto)| inst.ports[protocol_index(proto)].contains(p))
        {
            return false;
        }
        // The same limits the placement loop filters on.
        self.ephemeral_limits(demand).is_some_and(|(tcp, udp)| {
            self.ephemeral_used[0][i] <= tcp && self.ephemeral_used[1][i] <= udp
        })
    }

    /// One cached column standing for schedulability (ACTIVE, agent
    /// connected) and all of a request's static constraints.
    pub(super) fn combined_mask(&mut self, cached: &[Option<usize>]) -> usize {
        let slots: Vec<usize> = cached.iter().flatten().copied().collect();
        if let Some(&s) = self.combined_slots.get(&slots) {
            return s;
        }
        let all: Vec<bool> = (0..self.instances.len())
            .map(|i| self.schedulable[i] && slots.iter().all(|&s| self.static_results[s][i]))
            .collect();
        let s = self.static_results.len();
        self.static_results.push(all);
        self.combined_slots.insert(slots, s);
        s
    }

    pub(super) fn static_mask(&self, slot: usize) -> &[bool] {
        &self.static_results[slot]
    }

    /// What a task asks of the port columns, worked out once per call.
    pub(super) fn port_demand(&self, t: &TaskSpec) -> PortDemand {
        let (mut need, mut own) = ([0usize; 2], [0usize; 2]);
        for &proto in &t.dynamic_ports {
            need[protocol_index(proto)] += 1;
        }
        for &(p, proto) in &t.static_ports {
            if self.in_ephemeral(p) {
                own[protocol_index(proto)] += 1;
            }
        }
        // The task's own static ports inside the range take room there too.
        let ephemeral = [0, 1].map(|k| if need[k] > 0 { need[k] + own[k] } else { 0 });
        PortDemand {
            any: !t.static_ports.is_empty() || !t.dynamic_ports.is_empty(),
            ephemeral,
        }
    }

    /// The cache slot holding `expr`'s result on every instance; `expr` must
    /// be static (not depend on tasks), which is what makes caching sound.
    pub(super) fn static_constraint(&mut self, source: &str, expr: &Expr) -> usize {
        if let Some(&s) = self.static_slots.get(source) {
            return s;
        }
        let results: Vec<bool> = (0..self.instances.len())
            .map(|i| expr.eval(&InstanceRef { state: self, i }))
            .collect();
        let s = self.static_results.len();
        self.static_results.push(results);
        self.static_slots.insert(source.to_owned(), s);
        s
    }

    /// A column interning each instance's value of attribute `name` (None:
    /// the host id). A missing attribute is a value of its own, so instances
    /// without it are balanced as one more group.
    pub(super) fn value_column(&mut self, name: Option<&String>) -> usize {
        let key = name.cloned();
        if let Some(&c) = self.column_slots.get(&key) {
            return c;
        }
        let mut ids: HashMap<Option<String>, u32> = HashMap::default();
        let of_instance = self
            .instances
            .iter()
            .map(|inst| {
                let v = match name {
                    Some(n) => inst.attribute(n).map(|v| v.unwrap_or("").to_owned()),
                    None => Some(inst.spec.host_id.clone()),
                };
                let next = ids.len() as u32;
                *ids.entry(v).or_insert(next)
            })
            .collect();
        let c = self.columns.len();
        self.columns.push(ValueColumn { of_instance, ids });
        self.column_slots.insert(key, c);
        c
    }

    pub(super) fn column(&self, c: usize) -> &[u32] {
        &self.columns[c].of_instance
    }
}

/// Instance `i` seen by the cluster query language.
struct InstanceRef<'a> {
    state: &'a ClusterState,
    i: usize,
}

impl QueryTarget for InstanceRef<'_> {
    fn agent_connected(&self) -> bool {
        self.state.instances[self.i].spec.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.state.instances[self.i].spec.agent_version.as_deref()
    }
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.state.instances[self.i].attribute(name)
    }
    fn ec2_instance_id(&self) -> &str {
        &self.state.instances[self.i].spec.host_id
    }
    fn registered_at(&self) -> f64 {
        self.state.instances[self.i].spec.registered_at
    }
    fn running_tasks_count(&self) -> u32 {
        self.state.instances[self.i].running_tasks
    }
    fn any_task_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.state
            .group_counts
            .iter()
            .zip(&self.state.group_names)
            .any(|(col, name)| col[self.i] > 0 && f(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_set_first_free_skips_used() {
        let mut s = PortSet::default();
        for p in [10, 11, 13, 20] {
            s.insert(p);
        }
        assert_eq!(s.first_free(10, 20), Some(12));
        assert_eq!(s.first_free(13, 13), None);
        assert_eq!(s.first_free(14, 19), Some(14));
        assert_eq!(s.count_in(10, 13), 3);
        s.insert(12);
        assert_eq!(s.first_free(10, 13), None);
        assert_eq!(s.first_free(10, 65535), Some(14));
        let mut full = PortSet::default();
        full.insert(65535);
        assert_eq!(full.first_free(65535, 65535), None);
        // From a start, wrapping to the low end.
        assert_eq!(s.free_from(10, 20, 15), Some(15));
        let mut t = PortSet::default();
        for p in 15..=20 {
            t.insert(p);
        }
        assert_eq!(t.free_from(10, 20, 15), Some(10));
        assert_eq!(t.free_from(15, 20, 15), None);
    }
}
