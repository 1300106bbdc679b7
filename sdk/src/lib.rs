//! # berth-sdk: placement policies for berth in plain Rust
//!
//! A placement policy chooses the container instance a task runs on. berth
//! runs it as a sandboxed WebAssembly component (world
//! `berth:placement/placement-policy@0.1.0`). This crate hides the generated
//! bindings: you implement [`Policy`] over a [`Cluster`] view whose mirror
//! the SDK keeps current, and export it with [`export_policy!`].
//!
//! The SDK applies each of your placements to its mirror (resources, ports,
//! group counts) before the next task of a batch is chosen, and the host
//! checks every answer before it counts, so a policy only has to choose.
//!
//! ## A complete policy
//!
//! ```no_run
//! use berth_sdk::{export_policy, Cluster, Info, Policy, Task};
//!
//! /// Least memory left after placing, like ECS's `binpack` on memory.
//! #[derive(Default)]
//! struct Binpack;
//!
//! impl Policy for Binpack {
//!     fn info(&self) -> Info {
//!         Info::new("binpack", "0.1.0")
//!     }
//!     fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<u32> {
//!         // The candidate with the least memory left; ties to the lowest id.
//!         cluster.least(task, |i| cluster.memory_free(i).saturating_sub(task.memory))
//!     }
//! }
//!
//! export_policy!(Binpack);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` in a crate
//! with `crate-type = ["cdylib"]`; the `.wasm` file is the component.
//!
//! [`Cluster::least`] breaks ties to the lowest instance id, as berth's
//! native strategies do; [`Cluster::candidates`] lists the instances a task
//! fits on for policies that need more than one key.

#[doc(hidden)]
pub mod bindings;

use std::cell::{Ref, RefCell};
use std::collections::HashMap as StdHashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};

/// Fixed-key hashing: `RandomState` would import `wasi:random`, which the
/// host does not grant (and determinism is wanted anyway).
type HashMap<K, V> = StdHashMap<K, V, BuildHasherDefault<DefaultHasher>>;

use bindings::berth::placement::logger;
use bindings::berth::placement::types as wit;

/// Dense id of a container instance, `0..cluster.len()`.
pub type InstanceId = u32;
/// Dense id of a task group.
pub type GroupId = u32;

/// The hot loop of [`Cluster::candidates`]: on wasm, 16 instances at a time
/// with wasm SIMD (every wasm32-wasip2 host berth supports has SIMD; wasm
/// validation, not the CPU, decides, so this is safe), written out because
/// the compiler's own vectorisation of the plain loop does 4 at a time.
/// `F`/`G`: whether the filter and the distinctInstance group counts apply,
/// as constants so each combination gets its own straight loop.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(target_family = "wasm", target_feature(enable = "simd128"))]
fn fill_fits<const F: bool, const G: bool>(
    fits: &mut [u8],
    sched: &[bool],
    cpu: &[u32],
    mem: &[u32],
    etcp: &[u32],
    eudp: &[u32],
    filter: &[u8],
    groups: &[u32],
    need: (u32, u32, u32, u32),
) -> usize {
    let mut n = fits
        .len()
        .min(sched.len())
        .min(cpu.len())
        .min(mem.len())
        .min(etcp.len())
        .min(eudp.len());
    if F {
        n = n.min(filter.len());
    }
    if G {
        n = n.min(groups.len());
    }
    let (fits, sched, cpu, mem, etcp, eudp) = (
        &mut fits[..n],
        &sched[..n],
        &cpu[..n],
        &mem[..n],
        &etcp[..n],
        &eudp[..n],
    );
    let (filter, groups) = (
        if F { &filter[..n] } else { filter },
        if G { &groups[..n] } else { groups },
    );
    let (c, m, t, u) = need;
    #[cfg(target_family = "wasm")]
    let done = {
        use core::arch::wasm32::*;
        let full = n - n % 16;
        let (cv, mv, tv, uv, zero) = (
            u32x4_splat(c),
            u32x4_splat(m),
            u32x4_splat(t),
            u32x4_splat(u),
            u32x4_splat(0),
        );
        // Macros, not closures: a closure would not inherit `simd128` and
        // would stay a call.
        macro_rules! ld {
            ($col:expr, $j:expr) => {
                u32x4($col[$j], $col[$j + 1], $col[$j + 2], $col[$j + 3])
            };
        }
        macro_rules! bytes {
            ($b:expr) => {{
                let b = $b;
                u8x16(
                    b[0] as u8,
                    b[1] as u8,
                    b[2] as u8,
                    b[3] as u8,
                    b[4] as u8,
                    b[5] as u8,
                    b[6] as u8,
                    b[7] as u8,
                    b[8] as u8,
                    b[9] as u8,
                    b[10] as u8,
                    b[11] as u8,
                    b[12] as u8,
                    b[13] as u8,
                    b[14] as u8,
                    b[15] as u8,
                )
            }};
        }
        // All-ones lanes where instances j..j+4 fit.
        macro_rules! quad {
            ($j:expr) => {{
                let j = $j;
                let ok = v128_and(
                    v128_and(u32x4_ge(ld!(cpu, j), cv), u32x4_ge(ld!(mem, j), mv)),
                    v128_and(u32x4_ge(ld!(etcp, j), tv), u32x4_ge(ld!(eudp, j), uv)),
                );
                if G {
                    v128_and(ok, u32x4_eq(ld!(groups, j), zero))
                } else {
                    ok
                }
            }};
        }
        let mut i = 0;
        while i < full {
            // One byte per lane (the masks are all-ones or zero), 16 instances.
            let lo = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>(
                quad!(i),
                quad!(i + 4),
            );
            let hi = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>(
                quad!(i + 8),
                quad!(i + 12),
            );
            let mut ok = i64x2_shuffle::<0, 2>(lo, hi);
            // `sched` bytes are 0 or 1, so the result is too.
            ok = v128_and(ok, bytes!(&sched[i..i + 16]));
            if F {
                ok = v128_andnot(ok, i8x16_eq(bytes!(&filter[i..i + 16]), zero));
            }
            fits[i..i + 8].copy_from_slice(&u64x2_extract_lane::<0>(ok).to_le_bytes());
            fits[i + 8..i + 16].copy_from_slice(&u64x2_extract_lane::<1>(ok).to_le_bytes());
            i += 16;
        }
        full
    };
    #[cfg(not(target_family = "wasm"))]
    let done = 0;
    for i in done..n {
        let mut ok = u8::from(sched[i])
            & u8::from(cpu[i] >= c)
            & u8::from(mem[i] >= m)
            & u8::from(etcp[i] >= t)
            & u8::from(eudp[i] >= u);
        if F {
            ok &= u8::from(filter[i] != 0);
        }
        if G {
            ok &= u8::from(groups[i] == 0);
        }
        fits[i] = ok;
    }
    n
}

/// The loop of [`Cluster::least`]: key and id packed in one `u64` (key
/// high), so the least candidate, ties to the lowest id, is the running
/// minimum of one number. Non-candidates weigh `u32::MAX`; when that is the
/// least, every candidate has that key and the first one wins.
#[cfg_attr(target_family = "wasm", target_feature(enable = "simd128"))]
fn least_of(fits: &[u8], key: impl Fn(InstanceId) -> u32) -> Option<InstanceId> {
    let mut best = u64::MAX;
    let step = |i: usize, ok: u8| {
        let k = if ok != 0 {
            key(i as InstanceId)
        } else {
            u32::MAX
        };
        (u64::from(k) << 32) | i as u64
    };
    let chunks = fits.chunks_exact(8);
    let tail = fits.len() - chunks.remainder().len();
    // Eight at a time: one loop check (and one epoch check) per eight.
    for (c, f) in chunks.enumerate() {
        for (j, &ok) in f.iter().enumerate() {
            best = best.min(step(c * 8 + j, ok));
        }
    }
    for (i, &ok) in fits.iter().enumerate().skip(tail) {
        best = best.min(step(i, ok));
    }
    if best >> 32 != u64::from(u32::MAX) {
        return Some(best as u32);
    }
    fits.iter().position(|&f| f != 0).map(|i| i as InstanceId)
}

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

/// What a policy says about itself.
#[derive(Debug, Clone)]
pub struct Info {
    /// The policy's name.
    pub name: String,
    /// The policy's version.
    pub version: String,
    /// Parameters the policy understands, with a description each.
    pub parameters: Vec<(String, String)>,
}

impl Info {
    /// An info with no parameters.
    pub fn new(name: &str, version: &str) -> Self {
        Info {
            name: name.to_owned(),
            version: version.to_owned(),
            parameters: Vec::new(),
        }
    }

    /// Adds a documented parameter.
    pub fn parameter(mut self, name: &str, description: &str) -> Self {
        self.parameters
            .push((name.to_owned(), description.to_owned()));
        self
    }
}

/// One task to place.
#[derive(Debug, Clone)]
pub struct Task {
    /// CPU units it reserves.
    pub cpu: u32,
    /// Memory MiB it reserves.
    pub memory: u32,
    /// Fixed host ports it needs, `(port, udp)`.
    pub static_ports: Vec<(u16, bool)>,
    /// Dynamic TCP ports it needs (the host picks the numbers).
    pub dynamic_tcp: u32,
    /// Dynamic UDP ports it needs.
    pub dynamic_udp: u32,
    /// Its task group.
    pub group: GroupId,
    /// Its task definition family.
    pub family: String,
    /// distinctInstance: at most one task of the group per instance.
    pub distinct_instance: bool,
    /// The host-computed filter of its static constraints, if any.
    pub filter: Option<u32>,
    /// The caller's strategy parameters, `(type, field)` in ECS form.
    pub strategy: Vec<(String, String)>,
}

/// A placement policy. One value lives per policy instance; the host may
/// drop an instance at any time and start a fresh one, so keep no state
/// that a fresh instance could not rebuild from the cluster.
pub trait Policy: Default + 'static {
    /// Name, version and parameters.
    fn info(&self) -> Info;

    /// The instance for `task`, or `None` when none is suitable. Return only
    /// instances for which [`Cluster::fits`] holds, or the host rejects the
    /// answer and counts it against the policy.
    fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<InstanceId>;
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

    fn invalidate_values(&mut self) {
        self.value_columns.get_mut().clear();
        self.value_counts.get_mut().clear();
    }

    fn ensure_group(&mut self, g: GroupId) {
        while self.group_counts.len() <= g as usize {
            self.group_counts.push(vec![0; self.len()]);
            self.group_names.push(String::new());
        }
    }

    /// Reserves `task` on `i` in the mirror, as the host will.
    fn apply(&mut self, i: InstanceId, task: &Task) {
        let u = i as usize;
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
        self.group_counts[task.group as usize][u] += 1;
        let cols = self.value_columns.get_mut();
        for ((attr, g), counts) in self.value_counts.get_mut().iter_mut() {
            if *g == task.group
                && let Some((col, _)) = cols.get(attr)
            {
                counts[col[u] as usize] += 1;
            }
        }
        let _ = cols;
    }

    fn sync_full(&mut self, c: wit::ClusterColumns) {
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

    fn update_usage(&mut self, u: wit::Usage) {
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
    }

    fn set_group_count(&mut self, g: GroupId, id: InstanceId, count: u32) {
        let i = id as usize;
        if i >= self.len() {
            return;
        }
        self.ensure_group(g);
        let old = std::mem::replace(&mut self.group_counts[g as usize][i], count);
        if old == count {
            return;
        }
        // Keep the spread caches current instead of dropping them.
        let cols = self.value_columns.get_mut();
        for ((attr, cg), counts) in self.value_counts.get_mut().iter_mut() {
            if *cg == g
                && let Some((col, _)) = cols.get(attr)
            {
                let v = &mut counts[col[i] as usize];
                *v = (*v + count).saturating_sub(old);
            }
        }
    }

    fn upsert(&mut self, inst: wit::Instance, groups: Vec<(u32, u32)>) {
        let u = inst.id as usize;
        if u >= self.len() {
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
}

/// The runtime behind [`export_policy!`]; not for direct use.
#[doc(hidden)]
pub mod rt {
    use super::*;
    use bindings::exports::berth::placement::policy as exp;

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
            State {
                cluster: Cluster::default(),
                policy: P::default(),
                families: Vec::new(),
                strategies: Vec::new(),
                task: Task {
                    cpu: 0,
                    memory: 0,
                    static_ports: Vec::new(),
                    dynamic_tcp: 0,
                    dynamic_udp: 0,
                    group: 0,
                    family: String::new(),
                    distinct_instance: false,
                    filter: None,
                    strategy: Vec::new(),
                },
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
            let c = &mut self.cluster;
            while c.attribute_names.len() <= id as usize {
                c.attribute_names.push(String::new());
            }
            c.attribute_ids.insert(name.clone(), id);
            c.attribute_names[id as usize] = name;
            c.invalidate_values();
        }
        #[allow(clippy::type_complexity)]
        pub fn set_attributes(&mut self, entries: Vec<(u32, Vec<(u32, Option<String>)>)>) {
            for (i, attrs) in entries {
                if let Some(slot) = self.cluster.attributes.get_mut(i as usize) {
                    *slot = attrs;
                }
            }
            self.cluster.invalidate_values();
        }
        pub fn set_ports(&mut self, entries: Vec<(u32, Vec<u16>, Vec<u16>)>) {
            for (i, tcp, udp) in entries {
                let u = i as usize;
                if u < self.cluster.len() {
                    self.cluster.tcp_ports[u] = tcp;
                    self.cluster.udp_ports[u] = udp;
                }
            }
        }
        pub fn define_group(&mut self, id: u32, name: String, mut counts: Vec<u32>) {
            let c = &mut self.cluster;
            c.ensure_group(id);
            counts.resize(c.len(), 0);
            c.group_names[id as usize] = name;
            c.group_counts[id as usize] = counts;
            c.invalidate_values();
        }
        pub fn define_filter(&mut self, id: u32, mut members: Vec<u8>) {
            let c = &mut self.cluster;
            while c.filters.len() <= id as usize {
                c.filters.push(Vec::new());
            }
            members.resize(c.len(), 0);
            c.filters[id as usize] = members;
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
            if let Some(s) = self.cluster.schedulable.get_mut(id as usize) {
                *s = false;
            }
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
                        self.cluster.apply(i, task);
                        wit::Decision::Placed(i)
                    }
                    // Out of range: passed on for the host to reject.
                    Some(i) => wit::Decision::Placed(i),
                    None => wit::Decision::Unplaceable("no instance fits".to_owned()),
                })
                .collect()
        }
    }

    pub use exp::Guest;
    pub use wit::{Change, ClusterColumns, Decision, Instance, PolicyInfo, Task as WitTask};
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy)]
pub enum Level {
    /// Diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Odd but carrying on.
    Warn,
    /// Something failed.
    Error,
}

/// Logs one line through the host (rate-limited there).
pub fn log(level: Level, message: &str) {
    let l = match level {
        Level::Debug => logger::Level::Debug,
        Level::Info => logger::Level::Info,
        Level::Warn => logger::Level::Warn,
        Level::Error => logger::Level::Error,
    };
    logger::log(l, message);
}

/// Exports a [`Policy`] type (which must implement `Default`) as the
/// component's `berth:placement/policy` interface. Use once per crate.
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        thread_local! {
            static __BERTH_STATE: ::std::cell::RefCell<$crate::rt::State<$ty>> = ::std::cell::RefCell::new(::std::default::Default::default());
        }
        struct __BerthExport;
        impl $crate::rt::Guest for __BerthExport {
            fn info() -> $crate::rt::PolicyInfo {
                __BERTH_STATE.with_borrow(|s| s.info())
            }
            fn sync_full(columns: $crate::rt::ClusterColumns) {
                __BERTH_STATE.with_borrow_mut(|s| s.sync_full(columns))
            }
            fn define_attribute(id: u32, name: ::std::string::String) {
                __BERTH_STATE.with_borrow_mut(|s| s.define_attribute(id, name))
            }
            fn set_attributes(entries: ::std::vec::Vec<(u32, ::std::vec::Vec<(u32, ::std::option::Option<::std::string::String>)>)>) {
                __BERTH_STATE.with_borrow_mut(|s| s.set_attributes(entries))
            }
            fn set_ports(entries: ::std::vec::Vec<(u32, ::std::vec::Vec<u16>, ::std::vec::Vec<u16>)>) {
                __BERTH_STATE.with_borrow_mut(|s| s.set_ports(entries))
            }
            fn define_group(id: u32, name: ::std::string::String, counts: ::std::vec::Vec<u32>) {
                __BERTH_STATE.with_borrow_mut(|s| s.define_group(id, name, counts))
            }
            fn define_filter(id: u32, members: ::std::vec::Vec<u8>) {
                __BERTH_STATE.with_borrow_mut(|s| s.define_filter(id, members))
            }
            fn upsert(inst: $crate::rt::Instance, groups: ::std::vec::Vec<(u32, u32)>) {
                __BERTH_STATE.with_borrow_mut(|s| s.upsert(inst, groups))
            }
            fn define_family(id: u32, name: ::std::string::String) {
                __BERTH_STATE.with_borrow_mut(|s| s.define_family(id, name))
            }
            fn define_strategy(id: u32, pairs: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) {
                __BERTH_STATE.with_borrow_mut(|s| s.define_strategy(id, pairs))
            }
            fn remove(id: u32) {
                __BERTH_STATE.with_borrow_mut(|s| s.remove(id))
            }
            fn place(changes: ::std::vec::Vec<$crate::rt::Change>, task: $crate::rt::WitTask, count: u32) -> ::std::vec::Vec<$crate::rt::Decision> {
                __BERTH_STATE.with_borrow_mut(|s| s.place(changes, task, count))
            }
        }
        $crate::bindings::export_placement_policy!(__BerthExport with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition [`least_of`] must agree with.
    fn least_naive(fits: &[u8], key: impl Fn(InstanceId) -> u32) -> Option<InstanceId> {
        (0..fits.len() as InstanceId)
            .filter(|&i| fits[i as usize] != 0)
            .min_by_key(|&i| (key(i), i))
    }

    #[test]
    fn least_of_agrees_with_the_plain_definition() {
        // A small LCG: the SDK has no dependencies beyond wit-bindgen.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        };
        for round in 0..2000 {
            let n = next(70) as usize;
            let density = next(4);
            let fits: Vec<u8> = (0..n).map(|_| u8::from(next(4) < density)).collect();
            // Few distinct keys, so ties are common; u32::MAX included.
            let spread = [1, 3, 1000][next(3) as usize];
            let column: Vec<u32> = (0..n)
                .map(|_| {
                    if next(10) == 0 {
                        u32::MAX
                    } else {
                        next(spread) as u32
                    }
                })
                .collect();
            let key = |i: InstanceId| column[i as usize];
            assert_eq!(
                least_of(&fits, key),
                least_naive(&fits, key),
                "round {round}: fits {fits:?} keys {column:?}"
            );
        }
    }
}
