//! The policy's view of the cluster: [`Cluster`] and its spread keys.

use std::cell::{Ref, RefCell};

use crate::scan::{fill_fits, least_of};
use crate::{GroupId, HashMap, InstanceId, Task};

mod mirror;

/// Per-instance spread keys from [`Cluster::spread_by`].
#[derive(Debug)]
pub enum Spread<'a> {
    /// No instance has the attribute: one value holds the whole group.
    Uniform(u32),
    /// Each instance's value id, and the group's task count per value id.
    Values {
        /// Value id per instance.
        column: Ref<'a, [u32]>,
        /// Task count per value id.
        counts: Ref<'a, [u32]>,
    },
}

impl Spread<'_> {
    /// Tasks of the group on instances sharing `i`'s value.
    #[inline]
    pub fn count(&self, i: InstanceId) -> u32 {
        match self {
            Spread::Uniform(n) => *n,
            Spread::Values { column, counts } => counts[column[i as usize] as usize],
        }
    }
}
/// The policy's mirror of the cluster, kept current by the SDK.
#[derive(Debug, Default)]
pub struct Cluster {
    schedulable: Vec<bool>,
    cpu_total: Vec<u32>,
    memory_total: Vec<u32>,
    cpu_free: Vec<u32>,
    memory_free: Vec<u32>,
    eph_tcp_free: Vec<u32>,
    eph_udp_free: Vec<u32>,
    running: Vec<u32>,
    tcp_ports: Vec<Vec<u16>>,
    udp_ports: Vec<Vec<u16>>,
    attributes: Vec<Vec<(u32, Option<String>)>>,
    attribute_names: Vec<String>,
    attribute_ids: HashMap<String, u32>,
    group_names: Vec<String>,
    group_counts: Vec<Vec<u32>>,
    filters: Vec<Vec<u8>>,
    /// Per attribute id, each instance's value interned (built lazily).
    value_columns: RefCell<HashMap<u32, (Vec<u32>, usize)>>,
    /// Per (attribute id, group): the group's task count per value id.
    value_counts: RefCell<HashMap<(u32, GroupId), Vec<u32>>>,
    /// The fits mask of [`Cluster::least`], reused so a decision allocates
    /// nothing.
    scratch: RefCell<Vec<u8>>,
}

impl Cluster {
    /// Number of instances (ids are `0..len`).
    pub fn len(&self) -> usize {
        self.cpu_free.len()
    }

    /// True when the cluster has no instances.
    pub fn is_empty(&self) -> bool {
        self.cpu_free.is_empty()
    }

    /// ACTIVE with a connected agent.
    pub fn schedulable(&self, i: InstanceId) -> bool {
        self.schedulable[i as usize]
    }

    /// Registered CPU units.
    pub fn cpu_total(&self, i: InstanceId) -> u32 {
        self.cpu_total[i as usize]
    }

    /// Registered memory MiB.
    pub fn memory_total(&self, i: InstanceId) -> u32 {
        self.memory_total[i as usize]
    }

    /// CPU units not reserved.
    pub fn cpu_free(&self, i: InstanceId) -> u32 {
        self.cpu_free[i as usize]
    }

    /// Memory MiB not reserved.
    pub fn memory_free(&self, i: InstanceId) -> u32 {
        self.memory_free[i as usize]
    }

    /// Tasks running on the instance.
    pub fn running_tasks(&self, i: InstanceId) -> u32 {
        self.running[i as usize]
    }

    /// `(cpu, memory)` left on `i` after placing `task` there, or `None`
    /// when it does not fit.
    pub fn remaining(&self, i: InstanceId, task: &Task) -> Option<(u32, u32)> {
        let i = i as usize;
        Some((
            self.cpu_free[i].checked_sub(task.cpu)?,
            self.memory_free[i].checked_sub(task.memory)?,
        ))
    }

    /// The value of attribute `name` on `i`: `None` when absent,
    /// `Some(None)` when present without a value.
    pub fn attribute(&self, i: InstanceId, name: &str) -> Option<Option<&str>> {
        let id = *self.attribute_ids.get(name)?;
        let attrs = &self.attributes[i as usize];
        attrs
            .iter()
            .find(|(a, _)| *a == id)
            .map(|(_, v)| v.as_deref())
    }

    /// Tasks of `group` running on `i`.
    pub fn group_count(&self, group: GroupId, i: InstanceId) -> u32 {
        self.group_counts
            .get(group as usize)
            .map_or(0, |c| c[i as usize])
    }

    /// The name of a group, e.g. `service:web`.
    pub fn group_name(&self, group: GroupId) -> Option<&str> {
        self.group_names.get(group as usize).map(String::as_str)
    }

    /// Whether `task` may run on `i`: schedulable, in the task's filter,
    /// CPU, memory and ports free, distinctInstance respected. The host
    /// checks the same before it accepts an answer.
    #[inline]
    pub fn fits(&self, i: InstanceId, task: &Task) -> bool {
        let u = i as usize;
        self.schedulable[u]
            && self.cpu_free[u] >= task.cpu
            && self.memory_free[u] >= task.memory
            && self.eph_tcp_free[u] >= task.dynamic_tcp
            && self.eph_udp_free[u] >= task.dynamic_udp
            && task
                .filter
                .is_none_or(|f| self.filters.get(f as usize).is_some_and(|m| m[u] != 0))
            && (!task.distinct_instance || self.group_count(task.group, i) == 0)
            && task.static_ports.iter().all(|&(p, udp)| {
                let used = if udp {
                    &self.udp_ports[u]
                } else {
                    &self.tcp_ports[u]
                };
                !used.contains(&p)
            })
    }

    /// The instances `task` fits on, in id order: the same checks as
    /// [`Cluster::fits`], done like the native engine does them: one
    /// branch-free pass over dense columns (which the compiler can
    /// vectorise), then a compaction, then the rare static-port check.
    pub fn candidates(&self, task: &Task) -> std::vec::IntoIter<InstanceId> {
        let n = self.len();
        let fits = self.fits_mask(task);
        let mut out = vec![0 as InstanceId; n];
        let mut len = 0;
        for (i, &ok) in fits.iter().enumerate() {
            out[len] = i as InstanceId;
            len += usize::from(ok);
        }
        out.truncate(len);
        out.into_iter()
    }

    /// The candidate with the least `key`, ties to the lowest id: what the
    /// native binpack and spread do. One pass over the instances, no list
    /// of candidates built, so prefer it to `candidates().min_by_key()`.
    /// `key` is called only for instances the task fits on.
    pub fn least(&self, task: &Task, key: impl Fn(InstanceId) -> u32) -> Option<InstanceId> {
        // A `key` that calls `least` again gets a buffer of its own.
        let mut fresh = Vec::new();
        let mut scratch = self.scratch.try_borrow_mut();
        let fits = match scratch.as_deref_mut() {
            Ok(s) => s,
            Err(_) => &mut fresh,
        };
        self.fill_mask(task, fits);
        least_of(fits, key)
    }

    /// 1 for each instance `task` fits on ([`Cluster::fits`] for all at once).
    pub fn fits_mask(&self, task: &Task) -> Vec<u8> {
        let mut fits = Vec::new();
        self.fill_mask(task, &mut fits);
        fits
    }

    /// [`Cluster::fits_mask`] into `fits`, reusing its allocation.
    fn fill_mask(&self, task: &Task, fits: &mut Vec<u8>) {
        let n = self.len();
        // Every byte of `fits[..n]` is written below.
        fits.resize(n, 0);
        fits.truncate(n);
        let (sched, cpu, mem, etcp, eudp) = (
            &self.schedulable[..n],
            &self.cpu_free[..n],
            &self.memory_free[..n],
            &self.eph_tcp_free[..n],
            &self.eph_udp_free[..n],
        );
        let (c, m, t, u) = (task.cpu, task.memory, task.dynamic_tcp, task.dynamic_udp);
        let need = (c, m, t, u);
        let filter: Option<&[u8]> = match task.filter {
            // An unknown filter admits nothing.
            Some(f) => Some(self.filters.get(f as usize).map_or(&[][..], |v| &v[..])),
            None => None,
        };
        let groups: Option<&[u32]> = if task.distinct_instance {
            self.group_counts.get(task.group as usize).map(|g| &g[..])
        } else {
            None
        };
        let covered = match (filter, groups) {
            (None, None) => {
                fill_fits::<false, false>(fits, sched, cpu, mem, etcp, eudp, &[], &[], need)
            }
            (Some(f), None) => {
                fill_fits::<true, false>(fits, sched, cpu, mem, etcp, eudp, f, &[], need)
            }
            (None, Some(g)) => {
                fill_fits::<false, true>(fits, sched, cpu, mem, etcp, eudp, &[], g, need)
            }
            (Some(f), Some(g)) => {
                fill_fits::<true, true>(fits, sched, cpu, mem, etcp, eudp, f, g, need)
            }
        };
        // A shorter column (never sent so) admits nothing past its end.
        fits[covered..].fill(0);
        if !task.static_ports.is_empty() {
            for (i, x) in fits.iter_mut().enumerate() {
                if *x != 0 {
                    let free = task.static_ports.iter().all(|&(p, udp)| {
                        let used = if udp {
                            &self.udp_ports[i]
                        } else {
                            &self.tcp_ports[i]
                        };
                        !used.contains(&p)
                    });
                    *x = u8::from(free);
                }
            }
        }
    }

    /// For spread: how many tasks of `group` run on instances sharing
    /// `i`'s value of attribute `name` (instances without the attribute
    /// share one value). Kept current incrementally, so it is cheap per call.
    pub fn spread_count(&self, name: &str, group: GroupId, i: InstanceId) -> u32 {
        let Some(&attr) = self.attribute_ids.get(name) else {
            // Nobody has the attribute: one value holds the whole group.
            return self
                .group_counts
                .get(group as usize)
                .map_or(0, |c| c.iter().sum());
        };
        self.ensure_counts(attr, group);
        let cols = self.value_columns.borrow();
        let counts = self.value_counts.borrow();
        let v = cols[&attr].0[i as usize];
        counts[&(attr, group)][v as usize]
    }

    /// The spread key of `group` over attribute `name` for every instance,
    /// looked up once per decision: `spread.count(i)` is two array reads.
    pub fn spread_by(&self, name: &str, group: GroupId) -> Spread<'_> {
        match self.attribute_ids.get(name) {
            None => Spread::Uniform(
                self.group_counts
                    .get(group as usize)
                    .map_or(0, |c| c.iter().sum()),
            ),
            Some(&attr) => {
                self.ensure_counts(attr, group);
                let column = Ref::map(self.value_columns.borrow(), |c| {
                    c.get(&attr).map_or(&[][..], |x| &x.0[..])
                });
                let counts = Ref::map(self.value_counts.borrow(), |c| {
                    c.get(&(attr, group)).map_or(&[][..], |x| &x[..])
                });
                Spread::Values { column, counts }
            }
        }
    }

    /// Per-value task counts of `group` over attribute `name`, as
    /// `(value, count)` (None: instances without the attribute).
    pub fn value_counts(&self, name: &str, group: GroupId) -> Vec<(Option<String>, u32)> {
        let mut out: HashMap<Option<String>, u32> = HashMap::default();
        for i in 0..self.len() as u32 {
            *out.entry(self.attribute(i, name).flatten().map(str::to_owned))
                .or_default() += self.group_count(group, i);
        }
        out.into_iter().collect()
    }

    fn ensure_counts(&self, attr: u32, group: GroupId) {
        let mut cols = self.value_columns.borrow_mut();
        let (col, nvalues) = cols.entry(attr).or_insert_with(|| {
            let mut ids: HashMap<Option<&str>, u32> = HashMap::default();
            let col: Vec<u32> = self
                .attributes
                .iter()
                .map(|attrs| {
                    let v = attrs
                        .iter()
                        .find(|(a, _)| *a == attr)
                        .and_then(|(_, v)| v.as_deref());
                    let next = ids.len() as u32;
                    *ids.entry(v).or_insert(next)
                })
                .collect();
            (col, ids.len())
        });
        self.value_counts
            .borrow_mut()
            .entry((attr, group))
            .or_insert_with(|| {
                let mut counts = vec![0u32; *nvalues];
                if let Some(gc) = self.group_counts.get(group as usize) {
                    for (&v, &n) in col.iter().zip(gc) {
                        counts[v as usize] += n;
                    }
                }
                counts
            });
    }
}
