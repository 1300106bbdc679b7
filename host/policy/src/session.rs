//! A policy session: one live instance of a policy kept in sync with one
//! [`ClusterState`], and the decisions made through it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::model::Protocol;
use berth_core::placement::{
    ClusterState, Constraint, InstanceState, Placement, PlacementRequest, Strategy, place_on,
};
use berth_core::query::QueryTarget;
use rustc_hash::FxHashMap;
use wasmtime::{Store, Trap};

use crate::bindings::PlacementPolicy;
use crate::bindings::berth::placement0_1_0::types as wit;
use crate::bindings::exports::berth::placement0_1_0::policy::Guest as PolicyExports;
use crate::error::{DecisionError, FailureKind};
use crate::host::{CompiledPolicy, PolicyHost, StoreData, TICK};

/// Latency samples kept per policy for percentiles.
const LATENCY_SAMPLES: usize = 4096;

/// Counters of one policy version.
#[derive(Debug, Default)]
pub struct PolicyStats {
    decisions: AtomicU64,
    failures: [AtomicU64; 5],
    instances_created: AtomicU64,
    latencies_ns: Mutex<(Vec<u64>, usize)>,
}

/// A snapshot of [`PolicyStats`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Decisions asked of the policy (a batch counts once).
    pub decisions: u64,
    /// Failed decisions by kind (`trap`, `deadline`, `memory-limit`, `invalid-answer`, `instantiate`).
    pub failures: Vec<(FailureKind, u64)>,
    /// Policy instances created (each fresh one is fully synced).
    pub instances_created: u64,
    /// Log lines the host dropped over the rate limit.
    pub logs_dropped: u64,
    /// Decision latency percentiles over recent decisions, in microseconds: p50, p90, p99, max.
    pub latency_us: [f64; 4],
}

impl PolicyStats {
    fn record(&self, took: Duration, failure: Option<FailureKind>) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
        if let Some(k) = failure {
            self.failures[k as usize].fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut l) = self.latencies_ns.lock() {
            let (samples, next) = &mut *l;
            let ns = took.as_nanos() as u64;
            if samples.len() < LATENCY_SAMPLES {
                samples.push(ns);
            } else {
                samples[*next] = ns;
            }
            *next = (*next + 1) % LATENCY_SAMPLES;
        }
    }

    /// Failures of one kind so far.
    pub fn failures(&self, kind: FailureKind) -> u64 {
        self.failures[kind as usize].load(Ordering::Relaxed)
    }

    fn snapshot(&self, logs_dropped: u64) -> StatsSnapshot {
        let mut lat = self
            .latencies_ns
            .lock()
            .map(|l| l.0.clone())
            .unwrap_or_default();
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() - 1) as f64 * p).round() as usize;
            lat[i] as f64 / 1000.0
        };
        StatsSnapshot {
            decisions: self.decisions.load(Ordering::Relaxed),
            failures: FailureKind::ALL
                .iter()
                .map(|&k| (k, self.failures(k)))
                .collect(),
            instances_created: self.instances_created.load(Ordering::Relaxed),
            logs_dropped,
            latency_us: [pct(0.5), pct(0.9), pct(0.99), pct(1.0)],
        }
    }
}

/// One installed policy version, compiled, with its info and counters.
/// Shared by every session that runs it.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The checked component.
    pub compiled: CompiledPolicy,
    /// The policy's own name (from its `info`).
    pub name: String,
    /// The policy's own version.
    pub version: String,
    /// Parameters it documents.
    pub parameters: Vec<(String, String)>,
    /// Counters.
    pub stats: PolicyStats,
    pub(crate) logs_dropped: Arc<AtomicU64>,
    pub(crate) label: Arc<str>,
}

impl LoadedPolicy {
    /// Instantiates the component once to read its info (the registry does
    /// this on install; tests and benchmarks may use it directly).
    pub fn from_compiled(
        host: &PolicyHost,
        compiled: CompiledPolicy,
    ) -> Result<LoadedPolicy, String> {
        let logs_dropped = Arc::new(AtomicU64::new(0));
        let label: Arc<str> = Arc::from(&compiled.sha256[..12]);
        let mut store = new_store(host, logs_dropped.clone(), label.clone());
        // Instantiating and asking for info happens once, at install and at
        // start, often while the machine is busy compiling: it gets a budget
        // of its own, not a decision's deadline (a policy that loops here is
        // still stopped).
        store.set_epoch_deadline(deadline_ticks(LOAD_DEADLINE.max(host.config.deadline)));
        let instance = compiled
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|e| format!("{e:#}"))?;
        let bindings = PlacementPolicy::new(&mut store, &instance).map_err(|e| format!("{e:#}"))?;
        if let Some(bulk) = &compiled.bulk_exports {
            sync::check_bulk(&instance, &mut store, bulk)
                .map_err(|e| format!("{}: {e:#}", crate::host::BULK_EXPORT))?;
        }
        let info = bindings
            .berth_placement0_1_0_policy()
            .call_info(&mut store)
            .map_err(|e| format!("{e:#}"))?;
        Ok(LoadedPolicy {
            compiled,
            name: info.name,
            version: info.version,
            parameters: info.parameters,
            stats: PolicyStats::default(),
            logs_dropped,
            label,
        })
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats
            .snapshot(self.logs_dropped.load(Ordering::Relaxed))
    }
}

fn new_store(host: &PolicyHost, logs_dropped: Arc<AtomicU64>, label: Arc<str>) -> Store<StoreData> {
    let mut store = Store::new(
        &host.engine,
        StoreData::new(&host.config, logs_dropped, label),
    );
    store.limiter(|d| d as &mut dyn wasmtime::ResourceLimiter);
    store
}

/// The budget of loading a policy (instantiation and `info`).
const LOAD_DEADLINE: Duration = Duration::from_secs(2);

fn deadline_ticks(d: Duration) -> u64 {
    (d.as_nanos() / TICK.as_nanos()).max(1) as u64 + 1
}

/// What one decision gave, per task: a checked placement (already reserved
/// in the [`ClusterState`]) or the policy's reason for not placing it.
pub type Answers = Vec<Result<Placement, String>>;

struct Live {
    store: Store<StoreData>,
    bindings: PlacementPolicy,
}

/// A policy instance bound to one [`ClusterState`] and the bookkeeping of
/// what its mirror holds. Placements made through [`PolicySession::place`]
/// are applied on both sides; any other change to the state must be
/// announced with [`PolicySession::instance_changed`] (or
/// [`PolicySession::resync`]) before the next decision.
///
/// A failed decision discards the instance; the next one starts a fresh
/// instance and syncs it fully.
pub struct PolicySession {
    host: Arc<PolicyHost>,
    policy: Arc<LoadedPolicy>,
    live: Option<Live>,
    /// Instances in the mirror.
    synced: usize,
    dirty: Vec<usize>,
    /// Instances whose tasks changed (only their usage).
    usage_dirty: Vec<usize>,
    groups: FxHashMap<String, u32>,
    attributes: FxHashMap<String, u32>,
    /// Static-constraint filters by their joined sources.
    filters: FxHashMap<String, u32>,
    families: FxHashMap<String, u32>,
    /// Strategies by their text (`type field` lines).
    strategies: FxHashMap<String, u32>,
    /// Per instance, the static ports (outside the ephemeral range) the
    /// mirror holds, `(tcp, udp)`; None when unknown (a placement added
    /// some), so the next usage change sends them.
    ports_sent: Vec<Option<(Vec<u16>, Vec<u16>)>>,
    /// Reused to build lookup keys without allocating per decision.
    key: String,
    /// Keep the policy's log lines of each decision (see [`PolicySession::capture_logs`]).
    capture: bool,
    captured: Vec<String>,
}

impl std::fmt::Debug for PolicySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySession")
            .field("policy", &self.policy.compiled.sha256)
            .field("live", &self.live.is_some())
            .finish()
    }
}

/// Static constraints are evaluated on what the core's instance record holds.
struct Target<'a>(&'a InstanceState);

impl QueryTarget for Target<'_> {
    fn agent_connected(&self) -> bool {
        self.0.spec.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.0.spec.agent_version.as_deref()
    }
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.0.attribute(name)
    }
    fn ec2_instance_id(&self) -> &str {
        &self.0.spec.host_id
    }
    fn registered_at(&self) -> f64 {
        self.0.spec.registered_at
    }
    fn running_tasks_count(&self) -> u32 {
        self.0.running_tasks
    }
    // Only static expressions become filters; they never ask this.
    fn any_task_group(&self, _f: &mut dyn FnMut(&str) -> bool) -> bool {
        false
    }
}

impl PolicySession {
    /// A session for `policy`; the instance is created on the first decision.
    pub fn new(host: Arc<PolicyHost>, policy: Arc<LoadedPolicy>) -> Self {
        PolicySession {
            host,
            policy,
            live: None,
            synced: 0,
            dirty: Vec::new(),
            usage_dirty: Vec::new(),
            groups: FxHashMap::default(),
            attributes: FxHashMap::default(),
            filters: FxHashMap::default(),
            families: FxHashMap::default(),
            strategies: FxHashMap::default(),
            ports_sent: Vec::new(),
            key: String::new(),
            capture: false,
            captured: Vec::new(),
        }
    }

    /// From now on, keeps the lines the policy logs during each decision
    /// (within the per-call budget) for [`PolicySession::take_logs`]: why
    /// a decision was made, in the policy's own words.
    pub fn capture_logs(&mut self) {
        self.capture = true;
    }

    /// The lines the policy logged during the last decision, when capturing.
    pub fn take_logs(&mut self) -> Vec<String> {
        std::mem::take(&mut self.captured)
    }

    /// The policy version this session runs.
    pub fn policy(&self) -> &Arc<LoadedPolicy> {
        &self.policy
    }

    /// Whether a live, synced instance is ready.
    pub fn is_warm(&self) -> bool {
        self.live.is_some()
    }

    /// Announces that instance `i` of the state changed (or was added)
    /// outside this session; it is sent to the mirror before the next decision.
    pub fn instance_changed(&mut self, i: usize) {
        self.dirty.push(i);
    }

    /// Announces that tasks started or stopped on instance `i` outside this
    /// session (its status and attributes unchanged): the cheap delta.
    pub fn usage_changed(&mut self, i: usize) {
        self.usage_dirty.push(i);
    }

    /// Drops the instance: the next decision starts a fresh one, fully synced.
    pub fn resync(&mut self) {
        self.live = None;
    }

    /// Creates and fully syncs an instance now (otherwise the first decision does).
    pub fn warm_up(&mut self, state: &ClusterState) -> Result<(), DecisionError> {
        if self.live.is_none() {
            self.start(state)
                .map_err(|(kind, reason)| self.fail(kind, reason))?;
        }
        Ok(())
    }

    fn fail(&mut self, kind: FailureKind, reason: String) -> DecisionError {
        // A trap poisons the store; every failure starts afresh.
        self.live = None;
        tracing::warn!(policy = %self.policy.compiled.sha256, kind = kind.as_str(), %reason, "policy decision failed");
        DecisionError {
            policy: self.policy.compiled.sha256.clone(),
            kind,
            reason,
        }
    }

    /// Asks the policy for `count` tasks of `req` and checks every answer
    /// with the native engine ([`place_on`]), which reserves it in `state`.
    /// Any trap, deadline, memory limit or invalid answer fails the whole
    /// decision (reservations made for it are undone), discards the
    /// instance and is counted.
    pub fn place(
        &mut self,
        state: &mut ClusterState,
        req: &PlacementRequest,
        count: usize,
    ) -> Result<Answers, DecisionError> {
        let t0 = Instant::now();
        let r = self.try_place(state, req, count);
        let took = t0.elapsed();
        match r {
            Ok(a) => {
                self.policy.stats.record(took, None);
                Ok(a)
            }
            Err((kind, reason)) => {
                self.policy.stats.record(took, Some(kind));
                Err(self.fail(kind, reason))
            }
        }
    }

    fn classify(
        &self,
        e: &wasmtime::Error,
        store: &Store<StoreData>,
        what: &str,
    ) -> (FailureKind, String) {
        if store.data().memory_exceeded {
            return (
                FailureKind::MemoryLimit,
                format!(
                    "{what}: grew past the memory limit of {} bytes",
                    store.data().memory_limit
                ),
            );
        }
        // The SDK's panic hook reported the panic before the trap: the
        // message and location are the useful part of the reason.
        let panic = match &store.data().panic {
            Some(p) => format!(": {p}"),
            None => String::new(),
        };
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => (
                FailureKind::Deadline,
                format!(
                    "{what}: ran past its deadline of {:?}",
                    self.host.config.deadline
                ),
            ),
            Some(t) => (FailureKind::Trap, format!("{what}: trapped: {t}{panic}")),
            None => (FailureKind::Trap, format!("{what}: {e:#}{panic}")),
        }
    }

    fn start(&mut self, state: &ClusterState) -> Result<(), (FailureKind, String)> {
        self.live = None;
        self.groups.clear();
        self.attributes.clear();
        self.filters.clear();
        self.families.clear();
        self.strategies.clear();
        self.ports_sent.clear();
        self.dirty.clear();
        self.usage_dirty.clear();
        let mut store = new_store(
            &self.host,
            self.policy.logs_dropped.clone(),
            self.policy.label.clone(),
        );
        // The full sync may take longer than a decision at 10k instances.
        store.set_epoch_deadline(deadline_ticks(
            self.host.config.deadline.max(Duration::from_millis(200)),
        ));
        let instance = self
            .policy
            .compiled
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .and_then(|i| Ok((PlacementPolicy::new(&mut store, &i)?, i)));
        let (bindings, instance) = match instance {
            Ok(b) => b,
            Err(e) => {
                let (k, r) = self.classify(&e, &store, "instantiate");
                return Err((
                    if k == FailureKind::Trap {
                        FailureKind::Instantiate
                    } else {
                        k
                    },
                    r,
                ));
            }
        };
        self.policy
            .stats
            .instances_created
            .fetch_add(1, Ordering::Relaxed);
        let r = self.full_sync(&mut store, &instance, &bindings, state);
        if let Err(e) = r {
            return Err(self.classify(&e, &store, "full sync"));
        }
        self.live = Some(Live { store, bindings });
        Ok(())
    }

    fn intern_attributes(
        &mut self,
        inst: &InstanceState,
        new_names: &mut Vec<(u32, String)>,
    ) -> Vec<(u32, Option<String>)> {
        inst.spec
            .attributes
            .iter()
            .map(|(name, value)| {
                let next = self.attributes.len() as u32;
                let id = *self.attributes.entry(name.clone()).or_insert_with(|| {
                    new_names.push((next, name.clone()));
                    next
                });
                (id, value.clone())
            })
            .collect()
    }

    fn try_place(
        &mut self,
        state: &mut ClusterState,
        req: &PlacementRequest,
        count: usize,
    ) -> Result<Answers, (FailureKind, String)> {
        if self.live.is_none() || state.len() < self.synced {
            self.start(state)?;
        }
        // Instances added to the state since the sync count as changed.
        for i in self.synced..state.len() {
            self.dirty.push(i);
        }
        let deadline = deadline_ticks(self.host.config.deadline);
        let budget = self.host.config.log_lines_per_call;
        let Some(mut live) = self.live.take() else {
            return Err((FailureKind::Instantiate, "no live instance".into()));
        };
        live.store.set_epoch_deadline(deadline);
        live.store.data_mut().log_budget = budget;
        live.store.data_mut().panic = None;
        live.store.data_mut().captured = self.capture.then(Vec::new);
        let r = self.call(&mut live, state, req, count);
        self.captured = live.store.data_mut().captured.take().unwrap_or_default();
        // Reservations of a failed decision are undone by the caller path below.
        match r {
            Ok(decisions) => {
                self.live = Some(live);
                check_answers(&mut self.ports_sent, state, req, count, decisions)
            }
            Err(e) => Err(self.classify(&e, &live.store, "place")),
        }
    }

    /// Brings the mirror up to date and asks for the decision.
    fn call(
        &mut self,
        live: &mut Live,
        state: &ClusterState,
        req: &PlacementRequest,
        count: usize,
    ) -> wasmtime::Result<Vec<wit::Decision>> {
        let p = live.bindings.berth_placement0_1_0_policy();
        let store = &mut live.store;
        if !self.dirty.is_empty() {
            self.sync_dirty(p, store, state)?;
        }
        // The usage changes ride on the `place` call below.
        let changes = self.usage_changes(state);
        let group = self.group_id(p, store, state, &req.task.group)?;
        let filter = self.filter_id(p, store, state, req)?;
        let family = self.family_id(p, store, req)?;
        let strategy = self.strategy_id(p, store, req)?;
        let task = wit_task(req, group, family, filter, strategy);
        p.call_place(
            &mut *store,
            &changes,
            &task,
            u32::try_from(count).unwrap_or(u32::MAX),
        )
    }

    /// Sends the instances marked changed in full (attributes, ports,
    /// resources, group counts), and any instances added since the sync.
    fn sync_dirty(
        &mut self,
        p: &PolicyExports,
        store: &mut Store<StoreData>,
        state: &ClusterState,
    ) -> wasmtime::Result<()> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let (lo, hi) = state.ephemeral_ports();
        let range = u32::from(hi - lo) + 1;
        for i in dirty.into_iter().filter(|&i| i < state.len()) {
            let inst = state.instance(i);
            let mut new_names = Vec::new();
            let attrs = self.intern_attributes(inst, &mut new_names);
            for (id, name) in &new_names {
                p.call_define_attribute(&mut *store, *id, name)?;
            }
            if self.policy.compiled.uses_names {
                store.data_mut().names.set(i, instance_name(inst));
            }
            let (tcp, udp) = static_ports(inst, lo, hi);
            if self.ports_sent.len() <= i {
                self.ports_sent.resize(i + 1, None);
            }
            self.ports_sent[i] = Some((tcp.clone(), udp.clone()));
            let record = wit::Instance {
                id: i as u32,
                schedulable: inst.spec.active && inst.spec.agent_connected,
                cpu_total: inst.spec.cpu,
                memory_total: inst.spec.memory,
                cpu_free: state.cpu_free(i),
                memory_free: state.mem_free(i),
                tcp_ports: tcp,
                udp_ports: udp,
                ephemeral_tcp_free: range.saturating_sub(inst.ports[0].count_in(lo, hi) as u32),
                ephemeral_udp_free: range.saturating_sub(inst.ports[1].count_in(lo, hi) as u32),
                running_tasks: inst.running_tasks,
                attributes: attrs
                    .into_iter()
                    .map(|(name, value)| wit::Attribute { name, value })
                    .collect(),
            };
            let groups: Vec<(u32, u32)> = self
                .groups
                .iter()
                .map(|(g, &id)| (id, state.group_count(g, i)))
                .collect();
            p.call_upsert(&mut *store, &record, &groups)?;
        }
        self.synced = state.len();
        // Attributes may have changed: filters are recomputed on use.
        self.filters.clear();
        Ok(())
    }

    /// The usage of the instances whose tasks changed, and their group
    /// counts, as changes for the next `place` call.
    fn usage_changes(&mut self, state: &ClusterState) -> Vec<wit::Change> {
        let mut changes = Vec::new();
        let mut dirty = std::mem::take(&mut self.usage_dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let (lo, hi) = state.ephemeral_ports();
        let range = u32::from(hi - lo) + 1;
        changes.reserve(dirty.len() * (1 + self.groups.len()));
        for i in dirty.into_iter().filter(|&i| i < self.synced) {
            let inst = state.instance(i);
            // Static ports cross only when they differ from the mirror's.
            let unchanged =
                self.ports_sent
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|(tcp, udp)| {
                        static_iter(&inst.ports[0], lo, hi).eq(tcp.iter().copied())
                            && static_iter(&inst.ports[1], lo, hi).eq(udp.iter().copied())
                    });
            let ports = if unchanged {
                None
            } else {
                let (tcp, udp) = static_ports(inst, lo, hi);
                if let Some(slot) = self.ports_sent.get_mut(i) {
                    *slot = Some((tcp.clone(), udp.clone()));
                }
                Some((tcp, udp))
            };
            changes.push(wit::Change::Usage(wit::Usage {
                id: i as u32,
                cpu_free: state.cpu_free(i),
                memory_free: state.mem_free(i),
                ephemeral_tcp_free: range.saturating_sub(inst.ports[0].count_in(lo, hi) as u32),
                ephemeral_udp_free: range.saturating_sub(inst.ports[1].count_in(lo, hi) as u32),
                running_tasks: inst.running_tasks,
                ports,
            }));
            for (g, &id) in &self.groups {
                changes.push(wit::Change::GroupCount(wit::GroupCount {
                    group: id,
                    instance: i as u32,
                    count: state.group_count(g, i),
                }));
            }
        }
        changes
    }

    /// The policy's id of task group `name`, defined on first use with its
    /// count on every instance.
    fn group_id(
        &mut self,
        p: &PolicyExports,
        store: &mut Store<StoreData>,
        state: &ClusterState,
        name: &str,
    ) -> wasmtime::Result<u32> {
        Ok(match self.groups.get(name) {
            Some(&g) => g,
            None => {
                let g = self.groups.len() as u32;
                let counts: Vec<u32> = (0..state.len())
                    .map(|i| state.group_count(name, i))
                    .collect();
                p.call_define_group(&mut *store, g, name, &counts)?;
                self.groups.insert(name.to_owned(), g);
                g
            }
        })
    }

    /// The filter of the request's static constraints (membership computed
    /// here, once per distinct set of sources), or None when it has none.
    fn filter_id(
        &mut self,
        p: &PolicyExports,
        store: &mut Store<StoreData>,
        state: &ClusterState,
        req: &PlacementRequest,
    ) -> wasmtime::Result<Option<u32>> {
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        for c in &req.constraints {
            if let Constraint::MemberOf { source, expr } = c
                && expr.is_static()
            {
                key.push_str(source);
                key.push('\n');
            }
        }
        let filter = if key.is_empty() {
            None
        } else if let Some(&f) = self.filters.get(&key) {
            Some(f)
        } else {
            let f = self.filters.len() as u32;
            let members: Vec<u8> = state
                .instances()
                .iter()
                .map(|inst| {
                    let ok = req.constraints.iter().all(|c| match c {
                        Constraint::MemberOf { expr, .. } if expr.is_static() => {
                            expr.eval(&Target(inst))
                        }
                        _ => true,
                    });
                    u8::from(ok)
                })
                .collect();
            p.call_define_filter(&mut *store, f, &members)?;
            self.filters.insert(key.clone(), f);
            Some(f)
        };
        self.key = key;
        Ok(filter)
    }

    /// The policy's id of the request's family, defined on first use.
    fn family_id(
        &mut self,
        p: &PolicyExports,
        store: &mut Store<StoreData>,
        req: &PlacementRequest,
    ) -> wasmtime::Result<u32> {
        let family_name = if req.task.family.is_empty() {
            family_of(&req.task.group)
        } else {
            req.task.family.as_str()
        };
        Ok(match self.families.get(family_name) {
            Some(&f) => f,
            None => {
                let f = self.families.len() as u32;
                p.call_define_family(&mut *store, f, family_name)?;
                self.families.insert(family_name.to_owned(), f);
                f
            }
        })
    }

    /// The policy's id of the request's strategies, defined on first use.
    fn strategy_id(
        &mut self,
        p: &PolicyExports,
        store: &mut Store<StoreData>,
        req: &PlacementRequest,
    ) -> wasmtime::Result<u32> {
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        for s in &req.strategies {
            let (kind, prefix, field) = strategy_parts(s);
            for part in [kind, " ", prefix, field, "\n"] {
                key.push_str(part);
            }
        }
        let strategy = match self.strategies.get(&key) {
            Some(&s) => s,
            None => {
                let s = self.strategies.len() as u32;
                let pairs: Vec<(String, String)> = req
                    .strategies
                    .iter()
                    .map(|s| {
                        let (kind, prefix, field) = strategy_parts(s);
                        (kind.to_owned(), format!("{prefix}{field}"))
                    })
                    .collect();
                p.call_define_strategy(&mut *store, s, &pairs)?;
                self.strategies.insert(key.clone(), s);
                s
            }
        };
        self.key = key;
        Ok(strategy)
    }
}

/// Invariant 3: every answer is checked by the native engine before it counts.
/// A rejected answer leaves `state` as it found it.
fn check_answers(
    ports_sent: &mut [Option<(Vec<u16>, Vec<u16>)>],
    state: &mut ClusterState,
    req: &PlacementRequest,
    count: usize,
    decisions: Vec<wit::Decision>,
) -> Result<Answers, (FailureKind, String)> {
    if decisions.len() != count {
        return Err((
            FailureKind::InvalidAnswer,
            format!("{} answers for {count} tasks", decisions.len()),
        ));
    }
    let mut out: Answers = Vec::with_capacity(count);
    for (k, d) in decisions.into_iter().enumerate() {
        let bad = match d {
            wit::Decision::Unplaceable(why) => {
                out.push(Err(why.chars().take(256).collect()));
                continue;
            }
            wit::Decision::Placed(i) if i as usize >= state.len() => {
                format!(
                    "task {k}: instance id {i} out of range (the cluster has {})",
                    state.len()
                )
            }
            wit::Decision::Placed(i) => match place_on(state, req, i as usize) {
                Ok(p) => {
                    // The mirror added the static ports its own way; resend on the next change.
                    if !req.task.static_ports.is_empty()
                        && let Some(slot) = ports_sent.get_mut(p.instance)
                    {
                        *slot = None;
                    }
                    out.push(Ok(p));
                    continue;
                }
                Err(c) => format!("task {k}: instance {i} fails {}", c.reason()),
            },
        };
        // Undo what this decision reserved, then fail it.
        for p in out.iter().flatten() {
            state.remove_task(p.instance, &req.task, &host_ports(req, p));
        }
        return Err((FailureKind::InvalidAnswer, bad));
    }
    Ok(out)
}

/// The host ports a placed task holds.
pub fn host_ports(req: &PlacementRequest, p: &Placement) -> Vec<(u16, Protocol)> {
    req.task
        .static_ports
        .iter()
        .copied()
        .chain(
            p.dynamic_host_ports
                .iter()
                .copied()
                .zip(req.task.dynamic_ports.iter().copied()),
        )
        .collect()
}

/// The task as the policy sees it, with the ids of its group, family,
/// filter and strategies.
fn wit_task(
    req: &PlacementRequest,
    group: u32,
    family: u32,
    filter: Option<u32>,
    strategy: u32,
) -> wit::Task {
    let (mut dynamic_tcp, mut dynamic_udp) = (0, 0);
    for p in &req.task.dynamic_ports {
        match p {
            Protocol::Tcp => dynamic_tcp += 1,
            Protocol::Udp => dynamic_udp += 1,
        }
    }
    wit::Task {
        cpu: req.task.cpu,
        memory: req.task.memory,
        static_ports: req
            .task
            .static_ports
            .iter()
            .map(|&(port, proto)| wit::StaticPort {
                port,
                udp: proto == Protocol::Udp,
            })
            .collect(),
        dynamic_tcp,
        dynamic_udp,
        group,
        family,
        distinct_instance: req
            .constraints
            .iter()
            .any(|c| matches!(c, Constraint::DistinctInstance)),
        filter,
        strategy,
    }
}

/// The ports of `set` outside the ephemeral range `lo..=hi` (static ports).
fn static_iter(
    set: &berth_core::placement::PortSet,
    lo: u16,
    hi: u16,
) -> impl Iterator<Item = u16> + '_ {
    set.iter().filter(move |p| !(lo..=hi).contains(p))
}

pub(crate) fn static_ports(inst: &InstanceState, lo: u16, hi: u16) -> (Vec<u16>, Vec<u16>) {
    (
        static_iter(&inst.ports[0], lo, hi).collect(),
        static_iter(&inst.ports[1], lo, hi).collect(),
    )
}

/// The container instance id of an instance: the last part of its ARN.
pub(crate) fn instance_name(inst: &InstanceState) -> &str {
    berth_core::arn::last_segment(&inst.spec.arn)
}

/// The family a group names, for requests that carry none.
fn family_of(group: &str) -> &str {
    group.strip_prefix("family:").unwrap_or(group)
}

/// A strategy in ECS form: its type, and its field as prefix and rest
/// (`attribute:` and the attribute name), so keys need no allocation.
fn strategy_parts(s: &Strategy) -> (&'static str, &'static str, &str) {
    use berth_core::placement::{BinpackField, SpreadField};
    match s {
        Strategy::Binpack(BinpackField::Cpu) => ("binpack", "", "cpu"),
        Strategy::Binpack(BinpackField::Memory) => ("binpack", "", "memory"),
        Strategy::Spread(SpreadField::InstanceId) => ("spread", "", "instanceId"),
        Strategy::Spread(SpreadField::Host) => ("spread", "", "host"),
        Strategy::Spread(SpreadField::Attribute(a)) => ("spread", "attribute:", a),
        Strategy::Random => ("random", "", ""),
    }
}

#[cfg(test)]
mod fuzz;
mod sync;
