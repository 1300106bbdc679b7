//! How the SDK keeps the [`Cluster`] mirror current: the host's syncs and
//! changes, and the policy's own placements. Every change drops the cached
//! candidate list (`touch`); attribute columns and spread counts are kept
//! current in place where that is cheap, else dropped and rebuilt on use.

use std::cell::OnceCell;

use super::{ABSENT, BARE, Cluster};
use crate::{GroupId, InstanceId, Task};

use crate::wit;

impl Cluster {
    /// Attributes changed wholesale: columns and spread counts are rebuilt
    /// when next used.
    pub(crate) fn invalidate_values(&mut self) {
        for c in &mut self.columns {
            *c = OnceCell::new();
        }
        self.spread.get_mut().clear();
        self.touch();
    }

    pub(crate) fn ensure_group(&mut self, g: GroupId) {
        while self.group_counts.len() <= g as usize {
            self.group_counts.push(vec![0; self.len()]);
            self.group_names.push(String::new());
        }
    }

    /// Reserves `task` on `i` in the mirror, as the host will. Public for
    /// tests that place several tasks in a row on a built cluster.
    pub fn reserve(&mut self, i: InstanceId, task: &Task) {
        let u = i as usize;
        if u >= self.len() {
            return;
        }
        self.cpu_free[u] = self.cpu_free[u].saturating_sub(task.cpu);
        self.memory_free[u] = self.memory_free[u].saturating_sub(task.memory);
        self.eph_tcp_free[u] = self.eph_tcp_free[u].saturating_sub(task.dynamic_tcp);
        self.eph_udp_free[u] = self.eph_udp_free[u].saturating_sub(task.dynamic_udp);
        for &(p, udp) in &task.static_ports {
            let used = if udp {
                &mut self.udp_ports[u]
            } else {
                &mut self.tcp_ports[u]
            };
            used.push(p);
        }
        self.running[u] += 1;
        self.ensure_group(task.group);
        let old = self.group_counts[task.group as usize][u];
        self.group_counts[task.group as usize][u] = old + 1;
        self.adjust_spread(task.group, u, old, old + 1);
        self.refit(u);
    }

    /// Moves the spread counts of `g` for instance `u` from `old` to `new`.
    fn adjust_spread(&mut self, g: GroupId, u: usize, old: u32, new: u32) {
        let columns = &self.columns;
        for s in self.spread.get_mut().iter_mut().filter(|s| s.group == g) {
            let Some(col) = columns.get(s.attr as usize).and_then(OnceCell::get) else {
                continue;
            };
            let v = col.ids.get(u).copied().unwrap_or(ABSENT);
            // Absent and bare share one count, kept in both slots.
            let slots: &[u32] = if v <= BARE { &[ABSENT, BARE] } else { &[v] };
            for &k in slots {
                let c = &mut s.counts[k as usize];
                *c = (*c + new).saturating_sub(old);
            }
        }
    }

    pub(crate) fn sync_full(&mut self, c: wit::ClusterColumns) {
        let n = c.cpu_free.len();
        *self = Cluster {
            schedulable: c.schedulable.iter().map(|&s| s != 0).collect(),
            cpu_total: c.cpu_total,
            memory_total: c.memory_total,
            cpu_free: c.cpu_free,
            memory_free: c.memory_free,
            eph_tcp_free: c.ephemeral_tcp_free,
            eph_udp_free: c.ephemeral_udp_free,
            running: c.running_tasks,
            tcp_ports: vec![Vec::new(); n],
            udp_ports: vec![Vec::new(); n],
            attributes: vec![Vec::new(); n],
            ..Cluster::default()
        };
    }

    pub(crate) fn update_usage(&mut self, u: wit::Usage) {
        let i = u.id as usize;
        if i >= self.len() {
            return;
        }
        self.cpu_free[i] = u.cpu_free;
        self.memory_free[i] = u.memory_free;
        self.eph_tcp_free[i] = u.ephemeral_tcp_free;
        self.eph_udp_free[i] = u.ephemeral_udp_free;
        self.running[i] = u.running_tasks;
        if let Some((tcp, udp)) = u.ports {
            self.tcp_ports[i] = tcp;
            self.udp_ports[i] = udp;
        }
        self.refit(i);
    }

    pub(crate) fn set_group_count(&mut self, g: GroupId, id: InstanceId, count: u32) {
        let i = id as usize;
        if i >= self.len() {
            return;
        }
        if g as usize >= self.group_counts.len() {
            // A new group: the cached key may name it.
            self.touch();
        }
        self.ensure_group(g);
        let old = std::mem::replace(&mut self.group_counts[g as usize][i], count);
        if old != count {
            // Keep the spread counts and candidates current instead of
            // dropping them.
            self.adjust_spread(g, i, old, count);
            self.refit(i);
        }
    }

    /// Makes room for instance `u` in every column.
    pub(crate) fn grow_to(&mut self, u: usize) {
        if u < self.len() {
            return;
        }
        let n = u + 1;
        self.schedulable.resize(n, false);
        self.cpu_total.resize(n, 0);
        self.memory_total.resize(n, 0);
        self.cpu_free.resize(n, 0);
        self.memory_free.resize(n, 0);
        self.eph_tcp_free.resize(n, 0);
        self.eph_udp_free.resize(n, 0);
        self.running.resize(n, 0);
        self.tcp_ports.resize(n, Vec::new());
        self.udp_ports.resize(n, Vec::new());
        self.attributes.resize(n, Vec::new());
        for g in &mut self.group_counts {
            g.resize(n, 0);
        }
        for f in &mut self.filters {
            f.resize(n, 0);
        }
    }

    pub(crate) fn upsert(&mut self, inst: wit::Instance, groups: Vec<(u32, u32)>) {
        let u = inst.id as usize;
        self.grow_to(u);
        self.schedulable[u] = inst.schedulable;
        self.cpu_total[u] = inst.cpu_total;
        self.memory_total[u] = inst.memory_total;
        self.cpu_free[u] = inst.cpu_free;
        self.memory_free[u] = inst.memory_free;
        self.eph_tcp_free[u] = inst.ephemeral_tcp_free;
        self.eph_udp_free[u] = inst.ephemeral_udp_free;
        self.running[u] = inst.running_tasks;
        self.tcp_ports[u] = inst.tcp_ports;
        self.udp_ports[u] = inst.udp_ports;
        self.attributes[u] = inst
            .attributes
            .into_iter()
            .map(|a| (a.name, a.value))
            .collect();
        for g in &mut self.group_counts {
            g[u] = 0;
        }
        for (g, count) in groups {
            self.ensure_group(g);
            self.group_counts[g as usize][u] = count;
        }
        self.invalidate_values();
    }

    pub(crate) fn define_attribute(&mut self, id: u32, name: String) {
        while self.attribute_names.len() <= id as usize {
            self.attribute_names.push(String::new());
        }
        if self.columns.len() <= id as usize {
            self.columns.resize_with(id as usize + 1, OnceCell::new);
        }
        self.attribute_ids.insert(name.clone(), id);
        self.forget_names();
        self.attribute_names[id as usize] = name;
        self.invalidate_values();
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn set_attributes(&mut self, entries: Vec<(u32, Vec<(u32, Option<String>)>)>) {
        for (i, attrs) in entries {
            if let Some(slot) = self.attributes.get_mut(i as usize) {
                *slot = attrs;
            }
        }
        self.invalidate_values();
    }

    pub(crate) fn set_ports(&mut self, entries: Vec<(u32, Vec<u16>, Vec<u16>)>) {
        self.touch();
        for (i, tcp, udp) in entries {
            let u = i as usize;
            if u < self.len() {
                self.tcp_ports[u] = tcp;
                self.udp_ports[u] = udp;
            }
        }
    }

    pub(crate) fn define_group(&mut self, id: u32, name: String, mut counts: Vec<u32>) {
        self.ensure_group(id);
        counts.resize(self.len(), 0);
        self.group_names[id as usize] = name;
        self.group_counts[id as usize] = counts;
        self.spread.get_mut().retain(|s| s.group != id);
        self.touch();
    }

    pub(crate) fn define_filter(&mut self, id: u32, mut members: Vec<u8>) {
        while self.filters.len() <= id as usize {
            self.filters.push(Vec::new());
        }
        members.resize(self.len(), 0);
        self.filters[id as usize] = members;
        self.touch();
    }

    /// Marks instance `id` unschedulable.
    pub(crate) fn remove(&mut self, id: u32) {
        if let Some(s) = self.schedulable.get_mut(id as usize) {
            *s = false;
        }
        self.touch();
    }
}
