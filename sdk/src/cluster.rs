//! The policy's view of the cluster: [`Cluster`] and its spread keys.
//!
//! Written so the plain style is fast: `attribute(i, name)` reads an
//! interned column (the name is matched against the last few looked up,
//! no hashing), `candidates(task)` fills reused buffers and hands back the
//! same list while nothing changed, and nothing calls the host.

use std::cell::{Cell, Ref, RefCell};

use crate::scan::{fill_fits, least_of};
use crate::{GroupId, HashMap, InstanceId, Task};

mod builder;
mod mirror;

pub use builder::{ClusterBuilder, InstanceSpec};

/// Per-instance spread keys from [`Cluster::spread_by`].
#[derive(Debug)]
pub enum Spread<'a> {
    /// No instance has the attribute: one value holds the whole group.
    Uniform(u32),
    /// Each instance's value id, and the group's task count per value id.
    Values {
        /// Value id per instance.
        column: &'a [u32],
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

/// One attribute's value on every instance, interned; `ids` has an entry
/// per instance.
#[derive(Debug, Default, Clone)]
pub(crate) struct Column {
    /// Per instance: [`ABSENT`], [`BARE`], or `FIRST_VALUE + k` for `values[k]`.
    pub(crate) ids: Vec<u32>,
    pub(crate) values: Vec<String>,
}

pub(crate) const ABSENT: u32 = 0;
pub(crate) const BARE: u32 = 1;
pub(crate) const FIRST_VALUE: u32 = 2;

impl Column {
    /// The id of `value` in this column, added when new.
    pub(crate) fn intern(&mut self, value: Option<&str>) -> u32 {
        let Some(v) = value else { return BARE };
        // Attributes have few distinct values (zones, types): a short scan
        // costs less than hashing.
        match self
            .values
            .iter()
            .position(|x| same(x.as_bytes(), v.as_bytes()))
        {
            Some(k) => FIRST_VALUE + k as u32,
            None => {
                self.values.push(v.to_owned());
                FIRST_VALUE + self.values.len() as u32 - 1
            }
        }
    }

    #[inline]
    pub(crate) fn get(&self, i: InstanceId) -> Option<Option<&str>> {
        match self.ids.get(i as usize).copied().unwrap_or(ABSENT) {
            ABSENT => None,
            BARE => Some(None),
            v => Some(Some(self.values[(v - FIRST_VALUE) as usize].as_str())),
        }
    }
}

/// Per (attribute, group): the group's tasks per value id of the column.
/// Instances without the attribute and with it bare share one count, kept
/// in both `ABSENT` and `BARE`, so a lookup is one read.
#[derive(Debug)]
pub(crate) struct SpreadCounts {
    pub(crate) attr: u32,
    pub(crate) group: GroupId,
    pub(crate) counts: Vec<u32>,
}

/// What the cached candidate list was computed for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CandidatesKey {
    cpu: u32,
    memory: u32,
    dynamic: (u32, u32),
    group: GroupId,
    distinct: bool,
    filter: Option<u32>,
    static_ports: Vec<(u16, bool)>,
}

impl CandidatesKey {
    fn matches(&self, t: &Task) -> bool {
        self.cpu == t.cpu
            && self.memory == t.memory
            && self.dynamic == (t.dynamic_tcp, t.dynamic_udp)
            && self.group == t.group
            && self.distinct == t.distinct_instance
            && self.filter == t.filter
            && self.static_ports == t.static_ports
    }
    fn of(t: &Task) -> Self {
        CandidatesKey {
            cpu: t.cpu,
            memory: t.memory,
            dynamic: (t.dynamic_tcp, t.dynamic_udp),
            group: t.group,
            distinct: t.distinct_instance,
            filter: t.filter,
            static_ports: t.static_ports.clone(),
        }
    }
}

/// The fits mask and candidate list of one task, kept current instance by
/// instance as placements and usage changes arrive, so a decision whose
/// task is the last one's (a batch, a service's tasks) computes neither.
#[derive(Debug, Default)]
pub(crate) struct CandidateCache {
    /// What they are for; None: nothing cached.
    key: Option<CandidatesKey>,
    mask: Vec<u8>,
    list: Vec<InstanceId>,
}

/// A short name looked up: its length and first and last eight bytes
/// (together, the whole name), and its attribute id.
#[derive(Debug, Clone, Copy)]
struct Seen {
    words: (usize, u64, u64),
    id: Option<u32>,
}

/// A name of up to 16 bytes as its length and two words that hold all of
/// it; None for a longer one.
#[inline]
fn short_words(b: &[u8]) -> Option<(usize, u64, u64)> {
    let n = b.len();
    if n > 16 {
        return None;
    }
    let word = |at: usize| {
        b.get(at..)
            .and_then(|t| t.first_chunk::<8>())
            .map_or(0, |w| u64::from_le_bytes(*w))
    };
    if n >= 8 {
        return Some((n, word(0), word(n - 8)));
    }
    let mut head = 0u64;
    for (k, &x) in b.iter().enumerate() {
        head |= u64::from(x) << (8 * k);
    }
    Some((n, head, 0))
}

/// Names [`Cluster::attribute`] remembers.
const RECENT: usize = 4;

/// The policy's mirror of the cluster, kept current by the SDK (or built
/// with [`ClusterBuilder`] in a test).
#[derive(Debug, Default)]
pub struct Cluster {
    pub(crate) schedulable: Vec<bool>,
    pub(crate) cpu_total: Vec<u32>,
    pub(crate) memory_total: Vec<u32>,
    pub(crate) cpu_free: Vec<u32>,
    pub(crate) memory_free: Vec<u32>,
    pub(crate) eph_tcp_free: Vec<u32>,
    pub(crate) eph_udp_free: Vec<u32>,
    pub(crate) running: Vec<u32>,
    pub(crate) tcp_ports: Vec<Vec<u16>>,
    pub(crate) udp_ports: Vec<Vec<u16>>,
    pub(crate) attribute_names: Vec<String>,
    pub(crate) attribute_ids: HashMap<String, u32>,
    pub(crate) group_names: Vec<String>,
    pub(crate) group_counts: Vec<Vec<u32>>,
    pub(crate) filters: Vec<Vec<u8>>,
    /// Instance names given by a [`ClusterBuilder`]; in a component the
    /// host answers instead.
    pub(crate) names: Vec<String>,
    /// Per attribute id, its value on every instance: the mirror's only
    /// copy of the attributes (the host sends them as columns).
    pub(crate) columns: Vec<Column>,
    /// Names of up to 16 bytes looked up last, most recent first, and
    /// their ids (None: no such attribute); cleared when names change.
    seen: [Cell<Option<Seen>>; RECENT],
    /// Longer names looked up last, the same way.
    recent: RefCell<Vec<(Box<str>, Option<u32>)>>,
    /// Spread counts in use, kept current by placements and changes.
    pub(crate) spread: RefCell<Vec<SpreadCounts>>,
    /// The fits mask of [`Cluster::least`], reused so a decision allocates
    /// nothing.
    scratch: RefCell<Vec<u8>>,
    /// The candidates of the last task asked about, kept current as the
    /// mirror changes (see [`Cluster::refit`]).
    pub(crate) candidates: RefCell<CandidateCache>,
}

/// Byte equality for short names and values, a word at a time (the
/// `memcmp` of wasm32 goes byte by byte).
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    let word = |s: &[u8], at: usize| {
        s.get(at..)
            .and_then(|t| t.first_chunk::<8>())
            .map(|w| u64::from_le_bytes(*w))
    };
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    // The last word, overlapping the one before when n is not a multiple of 8.
    word(a, n - 8) == word(b, n - 8)
}

impl Cluster {
    /// Starts a cluster for a test: see [`ClusterBuilder`].
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

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
    #[inline]
    pub fn cpu_free(&self, i: InstanceId) -> u32 {
        self.cpu_free[i as usize]
    }

    /// Memory MiB not reserved.
    #[inline]
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

    /// The instance's container instance id (the last part of its ARN),
    /// for log lines: answers still name instances by dense id. In a
    /// component this asks the host (a call and a string copy; keep it out
    /// of loops); `None` for an id out of range.
    pub fn instance_name(&self, i: InstanceId) -> Option<String> {
        if let Some(n) = self.names.get(i as usize) {
            return Some(n.clone());
        }
        if (i as usize) >= self.len() {
            return None;
        }
        host_instance_name(i)
    }

    /// The id of attribute `name`, through the names looked up last
    /// (found or not: a guard such as `maintenance` is often on no instance
    /// at all): a loop asking for the same few names compares two words
    /// per call (names up to 16 bytes) instead of hashing the name.
    #[inline]
    fn attribute_id(&self, name: &str) -> Option<u32> {
        let b = name.as_bytes();
        if let Some(words) = short_words(b) {
            for c in &self.seen {
                if let Some(s) = c.get()
                    && s.words == words
                {
                    return s.id;
                }
            }
        } else if let Ok(recent) = self.recent.try_borrow() {
            for (n, id) in recent.iter() {
                if same(n.as_bytes(), b) {
                    return *id;
                }
            }
        }
        self.attribute_id_slow(name)
    }

    #[inline(never)]
    fn attribute_id_slow(&self, name: &str) -> Option<u32> {
        let id = self.attribute_ids.get(name).copied();
        match short_words(name.as_bytes()) {
            Some(words) => {
                // Most recent first.
                let mut next = Some(Seen { words, id });
                for c in &self.seen {
                    next = c.replace(next);
                }
            }
            None => {
                if let Ok(mut recent) = self.recent.try_borrow_mut() {
                    if recent.len() == RECENT {
                        recent.pop();
                    }
                    recent.insert(0, (name.into(), id));
                }
            }
        }
        id
    }

    /// Forgets the names looked up: attribute names changed.
    pub(crate) fn forget_names(&mut self) {
        self.recent.get_mut().clear();
        for c in &self.seen {
            c.set(None);
        }
    }

    /// The column of attribute `attr`.
    #[inline]
    pub(crate) fn column(&self, attr: u32) -> Option<&Column> {
        self.columns.get(attr as usize)
    }

    /// The value of attribute `name` on `i`: `None` when absent,
    /// `Some(None)` when present without a value. Reads an interned
    /// column: cheap enough to call per candidate.
    #[inline]
    pub fn attribute(&self, i: InstanceId, name: &str) -> Option<Option<&str>> {
        self.column(self.attribute_id(name)?)?.get(i)
    }

    /// Whether instance `i` has attribute `name` (with or without a value).
    #[inline]
    pub fn has_attribute(&self, i: InstanceId, name: &str) -> bool {
        self.attribute(i, name).is_some()
    }

    /// Every attribute of `i` as `(name, value)`, in the order their
    /// names were defined.
    pub fn attributes(&self, i: InstanceId) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.columns.iter().enumerate().filter_map(move |(a, col)| {
            let value = col.get(i)?;
            let name = self.attribute_names.get(a).map_or("", String::as_str);
            Some((name, value))
        })
    }

    /// Tasks of `group` running on `i`.
    #[inline]
    pub fn group_count(&self, group: GroupId, i: InstanceId) -> u32 {
        self.group_counts
            .get(group as usize)
            .map_or(0, |c| c[i as usize])
    }

    /// The name of a group, e.g. `service:web`.
    pub fn group_name(&self, group: GroupId) -> Option<&str> {
        self.group_names.get(group as usize).map(String::as_str)
    }

    /// The id of the group named `name`, once the host (or the builder)
    /// defined it.
    pub fn group_id(&self, name: &str) -> Option<GroupId> {
        self.group_names
            .iter()
            .position(|n| n == name)
            .map(|g| g as GroupId)
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
    /// branch-free pass over dense columns, then a compaction, then the
    /// rare static-port check. The list is computed once per task and
    /// mirror state: asking again before anything changed costs nothing,
    /// and the buffers are reused, so a decision allocates nothing.
    pub fn candidates(&self, task: &Task) -> Candidates<'_> {
        if self.cache_for(task)
            && let Ok(r) = self.candidates.try_borrow()
        {
            return Candidates {
                list: List::Shared(Ref::map(r, |c| &c.list[..])),
                pos: 0,
            };
        }
        // The cache is being iterated for another task: compute one apart.
        let mut mask = Vec::new();
        let mut list = Vec::new();
        self.fill_mask(task, &mut mask);
        compact(&mask, &mut list);
        Candidates {
            list: List::Owned(list),
            pos: 0,
        }
    }

    /// Makes the candidate cache hold `task`'s candidates; false when it
    /// is borrowed and holds another task's.
    fn cache_for(&self, task: &Task) -> bool {
        if let Ok(c) = self.candidates.try_borrow()
            && c.key.as_ref().is_some_and(|k| k.matches(task))
        {
            return true;
        }
        let Ok(mut c) = self.candidates.try_borrow_mut() else {
            return false;
        };
        let c = &mut *c;
        self.fill_mask(task, &mut c.mask);
        compact(&c.mask, &mut c.list);
        c.key = Some(CandidatesKey::of(task));
        true
    }

    /// The candidate with the least `key`, ties to the lowest id: what the
    /// native binpack and spread do. One pass over the instances, no list
    /// of candidates built, so prefer it to `candidates().min_by_key()`.
    /// `key` is called only for instances the task fits on.
    pub fn least(&self, task: &Task, key: impl Fn(InstanceId) -> u32) -> Option<InstanceId> {
        // The cached mask when it is this task's (no pass over the columns).
        if self.cache_for(task)
            && let Ok(c) = self.candidates.try_borrow()
        {
            return least_of(&c.mask, key);
        }
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
        self.spread_by(name, group).count(i)
    }

    /// The spread key of `group` over attribute `name` for every instance,
    /// looked up once per decision: `spread.count(i)` is two array reads.
    pub fn spread_by(&self, name: &str, group: GroupId) -> Spread<'_> {
        let uniform = || {
            Spread::Uniform(
                self.group_counts
                    .get(group as usize)
                    .map_or(0, |c| c.iter().sum()),
            )
        };
        let Some(attr) = self.attribute_id(name) else {
            return uniform();
        };
        let Some(col) = self.column(attr) else {
            return uniform();
        };
        let k = self.ensure_counts(attr, group, col);
        Spread::Values {
            column: &col.ids,
            counts: Ref::map(self.spread.borrow(), |s| &s[k].counts[..]),
        }
    }

    /// Per-value task counts of `group` over attribute `name`, as
    /// `(value, count)` in the order values were first seen (`None`:
    /// instances without the attribute, or with it bare). Every value some
    /// instance has is listed, with 0 when no task of the group runs there.
    pub fn value_counts(&self, name: &str, group: GroupId) -> Vec<(Option<String>, u32)> {
        let total = || {
            self.group_counts
                .get(group as usize)
                .map_or(0, |c| c.iter().sum())
        };
        let Some(col) = self.attribute_id(name).and_then(|a| self.column(a)) else {
            return vec![(None, total())];
        };
        let attr = self.attribute_id(name).unwrap_or(0);
        let k = self.ensure_counts(attr, group, col);
        let spread = self.spread.borrow();
        let counts = &spread[k].counts;
        // A value an upsert took from its last instance is not listed.
        let mut held = vec![false; FIRST_VALUE as usize + col.values.len()];
        for &v in &col.ids {
            if let Some(h) = held.get_mut(v as usize) {
                *h = true;
            }
        }
        let mut out = Vec::with_capacity(col.values.len() + 1);
        if held[ABSENT as usize] || held[BARE as usize] {
            out.push((None, counts[ABSENT as usize]));
        }
        for (v, value) in col.values.iter().enumerate() {
            if held[FIRST_VALUE as usize + v] {
                out.push((Some(value.clone()), counts[FIRST_VALUE as usize + v]));
            }
        }
        out
    }

    /// The index in `self.spread` of the counts of (`attr`, `group`),
    /// computed when first asked.
    fn ensure_counts(&self, attr: u32, group: GroupId, col: &Column) -> usize {
        let mut spread = self.spread.borrow_mut();
        if let Some(k) = spread
            .iter()
            .position(|s| s.attr == attr && s.group == group)
        {
            return k;
        }
        let mut counts = vec![0u32; FIRST_VALUE as usize + col.values.len()];
        if let Some(gc) = self.group_counts.get(group as usize) {
            for (&v, &n) in col.ids.iter().zip(gc) {
                counts[v as usize] += n;
            }
        }
        let none = counts[ABSENT as usize] + counts[BARE as usize];
        counts[ABSENT as usize] = none;
        counts[BARE as usize] = none;
        spread.push(SpreadCounts {
            attr,
            group,
            counts,
        });
        spread.len() - 1
    }

    /// Drops the cached candidate list: the mirror changed wholesale.
    #[inline]
    pub(crate) fn touch(&mut self) {
        self.candidates.get_mut().key = None;
    }

    /// Instance `u` changed (usage, group counts, a placement): its entry
    /// in the candidate cache is checked again, the rest stays.
    pub(crate) fn refit(&mut self, u: usize) {
        let ok = {
            let c = self.candidates.borrow();
            match &c.key {
                Some(k) if u < self.len() => self.fits_key(u, k),
                _ => return,
            }
        };
        let c = self.candidates.get_mut();
        let Some(m) = c.mask.get_mut(u) else {
            c.key = None;
            return;
        };
        if (*m != 0) == ok {
            return;
        }
        *m = u8::from(ok);
        let id = u as InstanceId;
        match (c.list.binary_search(&id), ok) {
            (Err(pos), true) => c.list.insert(pos, id),
            (Ok(pos), false) => {
                c.list.remove(pos);
            }
            _ => {}
        }
    }

    /// [`Cluster::fits`] for the task a cache key describes.
    fn fits_key(&self, u: usize, k: &CandidatesKey) -> bool {
        self.schedulable[u]
            && self.cpu_free[u] >= k.cpu
            && self.memory_free[u] >= k.memory
            && self.eph_tcp_free[u] >= k.dynamic.0
            && self.eph_udp_free[u] >= k.dynamic.1
            && k.filter.is_none_or(|f| {
                self.filters
                    .get(f as usize)
                    .is_some_and(|m| m.get(u).is_some_and(|&x| x != 0))
            })
            && (!k.distinct || self.group_count(k.group, u as InstanceId) == 0)
            && k.static_ports.iter().all(|&(p, udp)| {
                let used = if udp {
                    &self.udp_ports[u]
                } else {
                    &self.tcp_ports[u]
                };
                !used.contains(&p)
            })
    }
}

/// The ids where `mask` is set, into `list`, without a branch per instance.
fn compact(mask: &[u8], list: &mut Vec<InstanceId>) {
    list.clear();
    list.resize(mask.len(), 0);
    let mut len = 0;
    for (i, &ok) in mask.iter().enumerate() {
        list[len] = i as InstanceId;
        len += usize::from(ok != 0);
    }
    list.truncate(len);
}

#[cfg(target_family = "wasm")]
fn host_instance_name(i: InstanceId) -> Option<String> {
    crate::bindings::berth::placement0_2_0::names::instance_name(i)
}

#[cfg(not(target_family = "wasm"))]
fn host_instance_name(_i: InstanceId) -> Option<String> {
    None
}

enum List<'a> {
    Shared(Ref<'a, [InstanceId]>),
    Owned(Vec<InstanceId>),
}

/// The instances a task fits on, in id order, from [`Cluster::candidates`].
pub struct Candidates<'a> {
    list: List<'a>,
    pos: usize,
}

impl std::fmt::Debug for Candidates<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.rest()).finish()
    }
}

impl Candidates<'_> {
    #[inline]
    fn rest(&self) -> &[InstanceId] {
        let all: &[InstanceId] = match &self.list {
            List::Shared(r) => r,
            List::Owned(v) => v,
        };
        all.get(self.pos..).unwrap_or(&[])
    }
}

impl Iterator for Candidates<'_> {
    type Item = InstanceId;

    #[inline]
    fn next(&mut self) -> Option<InstanceId> {
        let v = *self.rest().first()?;
        self.pos += 1;
        Some(v)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.rest().len();
        (n, Some(n))
    }

    // Internal iteration over the slice: `filter`, `min_by_key`, `max_by_key`
    // and `for_each` chains run as one tight loop.
    #[inline]
    fn fold<B, F: FnMut(B, InstanceId) -> B>(self, init: B, f: F) -> B {
        self.rest().iter().copied().fold(init, f)
    }
}

impl ExactSizeIterator for Candidates<'_> {}
