//! How the SDK keeps the [`Cluster`] mirror current: the host's syncs and
//! changes, and the policy's own placements. Every change drops the cached
//! candidate list (`touch`); attribute columns are kept current in place,
//! spread counts too where that is cheap, else dropped and rebuilt on use.

use super::{ABSENT, BARE, Cluster, Column, FIRST_VALUE};
use crate::{GroupId, InstanceId, Task};

use crate::wit;

impl Cluster {
    /// Attributes changed: spread counts are rebuilt when next used.
    pub(crate) fn invalidate_values(&mut self) {
        self.spread.get_mut().clear();
        self.touch();
    }

    /// Gives instance `u` exactly the attributes `attrs` (interned names),
    /// in every column.
    pub(crate) fn set_instance_attributes<'a>(
        &mut self,
        u: usize,
        attrs: impl IntoIterator<Item = (u32, Option<&'a str>)>,
    ) {
        let n = self.len();
        if u >= n {
            return;
        }
        for col in &mut self.columns {
            col.ids[u] = ABSENT;
        }
        for (a, value) in attrs {
            let a = a as usize;
            if self.columns.len() <= a {
                self.columns.resize_with(a + 1, || Column {
                    ids: vec![ABSENT; n],
                    values: Vec::new(),
                });
            }
            let col = &mut self.columns[a];
            col.ids[u] = col.intern(value);
        }
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
            let Some(col) = columns.get(s.attr as usize) else {
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
        for c in &mut self.columns {
            c.ids.resize(n, ABSENT);
        }
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
        self.set_instance_attributes(
            u,
            inst.attributes.iter().map(|a| (a.name, a.value.as_deref())),
        );
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
        let n = self.len();
        if self.columns.len() <= id as usize {
            self.columns.resize_with(id as usize + 1, || Column {
                ids: vec![ABSENT; n],
                values: Vec::new(),
            });
        }
        self.attribute_ids.insert(name.clone(), id);
        self.forget_names();
        self.attribute_names[id as usize] = name;
        self.invalidate_values();
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn set_attributes(&mut self, entries: Vec<(u32, Vec<(u32, Option<String>)>)>) {
        for (i, attrs) in entries {
            self.set_instance_attributes(i as usize, attrs.iter().map(|(a, v)| (*a, v.as_deref())));
        }
        self.invalidate_values();
    }

    /// Contract 0.3.0's bulk form: attribute `attr` on every instance.
    /// An id naming no value reads as absent.
    pub(crate) fn set_attribute_column(
        &mut self,
        attr: u32,
        values: Vec<String>,
        mut ids: Vec<u32>,
    ) {
        let limit = FIRST_VALUE + values.len() as u32;
        for v in &mut ids {
            if *v >= limit {
                *v = ABSENT;
            }
        }
        ids.resize(self.len(), ABSENT);
        let a = attr as usize;
        if self.columns.len() <= a {
            self.columns.resize_with(a + 1, Column::default);
        }
        self.columns[a] = Column { ids, values };
        self.invalidate_values();
    }

    /// Contract 0.3.0's bulk form of `set_ports`: instance `i`'s ports are
    /// `tcp[tcp_offsets[i]..tcp_offsets[i + 1]]`, and the same for UDP. A
    /// range out of bounds reads as no ports.
    pub(crate) fn set_ports_flat(
        &mut self,
        tcp_offsets: &[u32],
        tcp: &[u16],
        udp_offsets: &[u32],
        udp: &[u16],
    ) {
        self.touch();
        let slice = |offsets: &[u32], flat: &'_ [u16], i: usize| -> Vec<u16> {
            let (Some(&lo), Some(&hi)) = (offsets.get(i), offsets.get(i + 1)) else {
                return Vec::new();
            };
            flat.get(lo as usize..hi as usize)
                .map_or_else(Vec::new, <[u16]>::to_vec)
        };
        for i in 0..self.len() {
            self.tcp_ports[i] = slice(tcp_offsets, tcp, i);
            self.udp_ports[i] = slice(udp_offsets, udp, i);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(n: usize) -> wit::ClusterColumns {
        wit::ClusterColumns {
            schedulable: vec![1; n],
            cpu_total: vec![1024; n],
            memory_total: vec![2048; n],
            cpu_free: vec![1024; n],
            memory_free: vec![2048; n],
            ephemeral_tcp_free: vec![100; n],
            ephemeral_udp_free: vec![100; n],
            running_tasks: vec![0; n],
        }
    }

    /// Four instances: zones a, b, a and none; `gpu` bare on 1; TCP port 80
    /// on 0 and 2, UDP 53 on 3. Once through 0.1.0's lists, once in bulk.
    fn both() -> [Cluster; 2] {
        let mut lists = Cluster::default();
        let mut bulk = Cluster::default();
        for c in [&mut lists, &mut bulk] {
            c.sync_full(columns(4));
            c.define_attribute(0, "ecs.availability-zone".into());
            c.define_attribute(1, "gpu".into());
        }
        let zone = |z: &str| (0, Some(z.to_owned()));
        lists.set_attributes(vec![
            (0, vec![zone("a")]),
            (1, vec![zone("b"), (1, None)]),
            (2, vec![zone("a")]),
            (3, vec![]),
        ]);
        lists.set_ports(vec![
            (0, vec![80], vec![]),
            (2, vec![80], vec![]),
            (3, vec![], vec![53]),
        ]);
        bulk.set_attribute_column(0, vec!["a".into(), "b".into()], vec![2, 3, 2, 0]);
        bulk.set_attribute_column(1, vec![], vec![0, 1, 0, 0]);
        bulk.set_ports_flat(&[0, 1, 1, 2, 2], &[80, 80], &[0, 0, 0, 0, 1], &[53]);
        [lists, bulk]
    }

    fn view(c: &Cluster) -> Vec<Vec<(String, Option<String>)>> {
        (0..c.len() as u32)
            .map(|i| {
                c.attributes(i)
                    .map(|(n, v)| (n.to_owned(), v.map(str::to_owned)))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn bulk_columns_and_flat_ports_mirror_what_the_lists_give() {
        let [lists, bulk] = both();
        assert_eq!(view(&bulk), view(&lists));
        assert_eq!(bulk.attribute(1, "gpu"), Some(None));
        assert_eq!(bulk.attribute(3, "ecs.availability-zone"), None);
        assert_eq!(bulk.attribute(2, "ecs.availability-zone"), Some(Some("a")));
        let mut t = Task::new(1, 1);
        t.static_ports = vec![(80, false)];
        assert_eq!(bulk.candidates(&t).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(lists.candidates(&t).collect::<Vec<_>>(), [1, 3]);
        t.static_ports = vec![(53, true)];
        assert_eq!(bulk.candidates(&t).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(
            bulk.value_counts("ecs.availability-zone", 0),
            lists.value_counts("ecs.availability-zone", 0)
        );
    }

    #[test]
    fn bad_ids_and_offsets_read_as_absent() {
        let mut c = Cluster::default();
        c.sync_full(columns(3));
        c.define_attribute(0, "zone".into());
        // Id 3 names no value; the list is one short.
        c.set_attribute_column(0, vec!["a".into()], vec![2, 3]);
        assert_eq!(view(&c)[0], [("zone".to_owned(), Some("a".to_owned()))]);
        assert!(view(&c)[1].is_empty() && view(&c)[2].is_empty());
        // Offsets past the list, and too few of them.
        c.set_ports_flat(&[0, 5, 6], &[80], &[0], &[]);
        assert_eq!(c.tcp_ports, [Vec::<u16>::new(), vec![], vec![]]);
    }

    #[test]
    fn an_upsert_after_a_bulk_sync_keeps_the_columns_current() {
        for mut c in both() {
            let inst = wit::Instance {
                id: 1,
                schedulable: true,
                cpu_total: 1024,
                memory_total: 2048,
                cpu_free: 1024,
                memory_free: 2048,
                tcp_ports: vec![],
                udp_ports: vec![],
                ephemeral_tcp_free: 100,
                ephemeral_udp_free: 100,
                running_tasks: 0,
                attributes: vec![wit::Attribute {
                    name: 0,
                    value: Some("c".into()),
                }],
            };
            c.upsert(inst, vec![(0, 2)]);
            assert_eq!(c.attribute(1, "gpu"), None);
            assert_eq!(c.attribute(1, "ecs.availability-zone"), Some(Some("c")));
            // Zone b has no instance left: it is not listed.
            assert_eq!(
                c.value_counts("ecs.availability-zone", 0),
                [
                    (None, 0),
                    (Some("a".to_owned()), 0),
                    (Some("c".to_owned()), 2)
                ]
            );
        }
    }
}
