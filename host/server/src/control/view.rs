//! What placement sees of a cluster, kept in memory between placements and
//! checked against the store at each one.
//!
//! Reading every task of a cluster for each RunTask was what limited its
//! rate. Every change to what an instance holds (a task placed, stopped or
//! started) rewrites that instance's record in the same transaction, so the
//! record's store version says whether the view of it is still true: a
//! placement re-reads the cluster's instance records (with CAS, as before)
//! and reloads the tasks of only those whose version moved. A view is taken
//! out for one transaction and put back only when it committed, so a
//! conflict or an error never leaves reservations that did not happen.
//! The check is against the store, so it needs no in-process invalidation:
//! a placement committed by another control plane over the same store
//! rewrote the instance's record, and the next placement here reloads it.
//!
//! The view also holds the live policy sessions of the cluster: their
//! mirrors follow the view's state by deltas, so a warm policy instance
//! serves decision after decision, and one idle for [`SESSION_IDLE`] is dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::model::{ContainerInstance, Protocol, Resource};
use berth_core::placement::{
    Check, ClusterState, InstanceSpec, Placement, PlacementRequest, TaskSpec, place_on,
};
use berth_core::status::InstanceStatus;
use berth_core::usage::{self, integer_resource};
use berth_policy::{Fallback, LoadedPolicy, PolicyHost, PolicySession};
use berth_store::tables::{INSTANCES_BY_CLUSTER, instance_cluster_arn};
use berth_store::{Changes, Record, Store, Txn};

use super::instances::tasks_on;
use super::{ControlError, all_by_index};

/// A policy session unused this long is dropped (its instance freed).
pub const SESSION_IDLE: Duration = Duration::from_secs(60);

/// A task's hold on an instance, as added to the state.
type Held = (TaskSpec, Vec<(u16, Protocol)>);

/// One cluster as placement sees it.
pub(super) struct ClusterView {
    pub cluster_arn: String,
    pub state: ClusterState,
    /// Aligned with the state's instance indexes.
    pub instances: Vec<ContainerInstance>,
    /// Store version of each instance record as last read or written.
    versions: Vec<u64>,
    /// The store revision the view is current at: the change log after it
    /// says which instance records to read again.
    revision: u64,
    /// Instances to read again whatever the log says (their placements
    /// did not commit, or a commit wrote them differently).
    stale: BTreeSet<usize>,
    /// What each instance's tasks hold, to take back out when it is reloaded.
    held: Vec<Vec<Held>>,
    /// Instances placed on in this transaction: how many tasks, and the
    /// record's pending count before the first of them.
    pub touched: BTreeMap<usize, (u32, u32)>,
    /// Live policy sessions by policy sha256, with their last use.
    sessions: HashMap<String, (PolicySession, Instant)>,
}

impl std::fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterView")
            .field("instances", &self.instances.len())
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

pub(super) use berth_core::usage::ports_of;

fn spec_of(ci: &ContainerInstance) -> InstanceSpec {
    let reg = &ci.registered_resources;
    InstanceSpec {
        arn: ci.container_instance_arn.clone(),
        host_id: ci.ec2_instance_id.clone(),
        active: ci.status == InstanceStatus::Active,
        agent_connected: ci.agent_connected,
        agent_version: ci
            .version_info
            .as_ref()
            .and_then(|v| v.agent_version.clone()),
        registered_at: ci.registered_at.unwrap_or(0.0),
        attributes: ci
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.value.clone()))
            .collect(),
        cpu: u32::try_from(integer_resource(reg, "CPU").unwrap_or(0)).unwrap_or(0),
        memory: u32::try_from(integer_resource(reg, "MEMORY").unwrap_or(0)).unwrap_or(0),
        reserved_tcp: ports_of(reg, "PORTS"),
        reserved_udp: ports_of(reg, "PORTS_UDP"),
    }
}

/// What the tasks on an instance hold (`berth_core::usage`'s rule: what
/// each reserved at placement, while desired RUNNING).
fn held_on(txn: &Txn, instance_arn: &str) -> Result<Vec<Held>, ControlError> {
    Ok(tasks_on(txn, instance_arn)?
        .iter()
        .filter(|t| usage::holds_resources(t))
        .map(|t| {
            let hold = usage::task_hold(t);
            let spec = TaskSpec {
                cpu: hold.cpu,
                memory: hold.memory,
                static_ports: Vec::new(),
                dynamic_ports: Vec::new(),
                group: t.group.clone().unwrap_or_default(),
                // Only what a task holds matters here.
                family: String::new(),
            };
            (spec, hold.ports)
        })
        .collect())
}

impl ClusterView {
    /// Reads the cluster's instances (each with CAS in `txn`) and every
    /// task they hold.
    fn build(txn: &mut Txn, cluster_arn: &str) -> Result<ClusterView, ControlError> {
        let mut view = ClusterView {
            cluster_arn: cluster_arn.to_owned(),
            state: ClusterState::default(),
            instances: Vec::new(),
            versions: Vec::new(),
            revision: txn.revision()?,
            stale: BTreeSet::new(),
            held: Vec::new(),
            touched: BTreeMap::new(),
            sessions: HashMap::new(),
        };
        for (version, ci) in read_instances(txn, cluster_arn)? {
            let i = view.state.add_instance(spec_of(&ci));
            let held = held_on(txn, &ci.container_instance_arn)?;
            for (spec, ports) in &held {
                view.state.add_task(i, spec, ports);
            }
            view.instances.push(ci);
            view.versions.push(version);
            view.held.push(held);
        }
        Ok(view)
    }

    /// Brings a kept view up to date with `txn`'s snapshot: only the
    /// instances whose records changed since the view's revision (the
    /// store's change log says which) are read again; an instance joining
    /// or leaving the cluster, or a log compacted past the view's
    /// revision, rebuilds it. Nothing read here joins the read set:
    /// placement checks only the instances it places on
    /// ([`ClusterView::write_touched`]), so a report from an agent of
    /// another instance does not make a RunTask conflict.
    fn refresh(
        mut self,
        txn: &mut Txn,
        store: &Store,
        cluster_arn: &str,
    ) -> Result<ClusterView, ControlError> {
        let snapshot = txn.revision()?;
        let mut changed: BTreeSet<usize> = std::mem::take(&mut self.stale);
        match store.changes(&[ContainerInstance::TABLE], self.revision)? {
            Changes::Compacted { .. } => return self.rebuild(txn, cluster_arn),
            Changes::Events { events, .. } => {
                for e in events.iter().filter(|e| e.revision <= snapshot) {
                    match self.state.index_of(&e.key) {
                        Some(i) => {
                            changed.insert(i);
                        }
                        None if instance_cluster_arn(&e.key) == cluster_arn => {
                            return self.rebuild(txn, cluster_arn);
                        }
                        None => {}
                    }
                }
            }
        }
        for i in changed {
            let arn = self.instances[i].container_instance_arn.clone();
            let Some(ci) = txn.peek::<ContainerInstance>(&arn)? else {
                return self.rebuild(txn, cluster_arn);
            };
            if ci.value.status == InstanceStatus::Inactive {
                return self.rebuild(txn, cluster_arn);
            }
            if ci.version == self.versions[i] {
                continue;
            }
            if !self.reload(txn, i, ci.version, ci.value)? {
                return self.rebuild(txn, cluster_arn);
            }
        }
        self.revision = snapshot;
        Ok(self)
    }

    /// Reads again what instance `i` holds, from its record `ci` at
    /// `version`; false when its registered resources changed (something
    /// unusual: the caller starts over).
    fn reload(
        &mut self,
        txn: &Txn,
        i: usize,
        version: u64,
        ci: ContainerInstance,
    ) -> Result<bool, ControlError> {
        let spec = spec_of(&ci);
        let old = &self.state.instance(i).spec;
        let resources_same = (old.cpu, old.memory, &old.reserved_tcp, &old.reserved_udp)
            == (
                spec.cpu,
                spec.memory,
                &spec.reserved_tcp,
                &spec.reserved_udp,
            );
        if !resources_same {
            return Ok(false);
        }
        if holds_same(&self.instances[i], &ci) {
            // Only its counts, status, connection or attributes moved (a
            // task reported RUNNING, a heartbeat): what its tasks hold is
            // as the view has it, so they are not read again.
            self.state
                .update_instance(i, spec.active, spec.agent_connected, spec.attributes);
            self.instances[i] = ci;
            self.versions[i] = version;
            for (s, _) in self.sessions.values_mut() {
                s.instance_changed(i);
            }
            return Ok(true);
        }
        for (spec, ports) in std::mem::take(&mut self.held[i]) {
            self.state.remove_task(i, &spec, &ports);
        }
        self.state
            .update_instance(i, spec.active, spec.agent_connected, spec.attributes);
        let held = held_on(txn, &ci.container_instance_arn)?;
        for (spec, ports) in &held {
            self.state.add_task(i, spec, ports);
        }
        self.held[i] = held;
        self.instances[i] = ci;
        self.versions[i] = version;
        for (s, _) in self.sessions.values_mut() {
            s.instance_changed(i);
        }
        Ok(true)
    }

    /// A transaction's attempt that placed on this view did not commit:
    /// what it placed is taken back by reading those instances again.
    fn abandon_attempt(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        self.stale.extend(touched.into_keys());
    }

    /// Builds the view afresh, keeping its policy sessions: they mirror
    /// instance indexes, so they start over (fully synced) on the new state.
    fn rebuild(mut self, txn: &mut Txn, cluster_arn: &str) -> Result<ClusterView, ControlError> {
        let mut fresh = ClusterView::build(txn, cluster_arn)?;
        for (s, _) in self.sessions.values_mut() {
            s.resync();
        }
        fresh.sessions = self.sessions;
        Ok(fresh)
    }

    /// Records a placement made on the state (by any means) so the instance
    /// record is written back and the other sessions hear of it.
    pub fn placed(&mut self, req: &PlacementRequest, p: &Placement, by_session: Option<&str>) {
        let ports = berth_policy::host_ports(req, p);
        self.held[p.instance].push((req.task.clone(), ports));
        let before = self.instances[p.instance].pending_tasks_count;
        self.touched.entry(p.instance).or_insert((0, before)).0 += 1;
        for (sha, (s, _)) in &mut self.sessions {
            if Some(sha.as_str()) != by_session {
                s.usage_changed(p.instance);
            }
        }
    }

    /// Places one task of `req` on the instance `arn` if it passes every
    /// check (`place_on`) and records it; None when `arn` is not an
    /// instance of the cluster.
    pub fn place_on_arn(
        &mut self,
        req: &PlacementRequest,
        arn: &str,
    ) -> Option<Result<Placement, Check>> {
        let i = self.state.index_of(arn)?;
        let placed = place_on(&mut self.state, req, i);
        if let Ok(p) = &placed {
            self.placed(req, p, None);
        }
        Some(placed)
    }

    /// Places `count` tasks through `policy`'s warm session of this
    /// cluster (created and fully synced when there is none). `Err` when
    /// the policy failed the decision (counted and logged by the session).
    pub fn place_with_policy(
        &mut self,
        host: &Arc<PolicyHost>,
        policy: &Arc<LoadedPolicy>,
        req: &PlacementRequest,
        count: usize,
    ) -> Result<Vec<Result<Placement, String>>, berth_policy::DecisionError> {
        let sha = policy.compiled.sha256.clone();
        let now = Instant::now();
        let (session, used) = self.sessions.entry(sha.clone()).or_insert_with(|| {
            (
                PolicySession::new(Arc::clone(host), Arc::clone(policy)),
                now,
            )
        });
        *used = now;
        let answers = session.place(&mut self.state, req, count)?;
        for p in answers.iter().flatten() {
            self.placed(req, p, Some(&sha));
        }
        Ok(answers)
    }

    /// Writes the touched instances back: remaining resources straight from
    /// the state (exact: it holds every task's demand), the new tasks as
    /// pending. The view keeps what it wrote.
    pub fn write_touched(&mut self, txn: &mut Txn) -> Result<(), ControlError> {
        // May run more than once in a transaction (several placements):
        // each time it writes the whole count from the record as read.
        for (&i, &(n, before)) in &self.touched {
            let inst = self.state.instance(i);
            let strs =
                |s: &berth_core::placement::PortSet| s.iter().map(|p| p.to_string()).collect();
            let remaining = vec![
                Resource::integer("CPU", i64::from(self.state.cpu_free(i))),
                Resource::integer("MEMORY", i64::from(self.state.mem_free(i))),
                Resource::string_set("PORTS", strs(&inst.ports[0])),
                Resource::string_set("PORTS_UDP", strs(&inst.ports[1])),
            ];
            let ci = &mut self.instances[i];
            // The one check placement needs: the instance placed on is
            // still as the view read it.
            txn.expect_version::<ContainerInstance>(&ci.container_instance_arn, self.versions[i])?;
            ci.remaining_resources = remaining;
            ci.pending_tasks_count = before.saturating_add(n);
            ci.version += 1;
            txn.put(&*ci)?;
        }
        Ok(())
    }

    /// After the commit: the records it wrote are read back, and the view
    /// trusts a record's new version only when the record is exactly what
    /// the view wrote (code later in the same transaction may have written
    /// it again, knowing more); otherwise that instance reloads next time.
    fn committed(&mut self, store: &berth_store::Store) {
        let mut txn = store.begin().ok();
        for &i in self.touched.keys() {
            let arn = &self.instances[i].container_instance_arn;
            let read = txn
                .as_mut()
                .and_then(|t| t.get::<ContainerInstance>(arn).ok().flatten());
            match read {
                Some(r) if same_record(&r.value, &self.instances[i]) => {
                    self.versions[i] = r.version
                }
                _ => {
                    self.stale.insert(i);
                }
            }
        }
        self.touched.clear();
    }
}

/// Whether two readings of an instance record say its tasks hold the same:
/// every change to what they hold raises the record's `version` (the
/// manifest's sequence) and moves its remaining resources or its count of
/// holding tasks; a task reported RUNNING moves neither.
fn holds_same(a: &ContainerInstance, b: &ContainerInstance) -> bool {
    let holding =
        |c: &ContainerInstance| u64::from(c.running_tasks_count) + u64::from(c.pending_tasks_count);
    a.version == b.version
        && a.remaining_resources == b.remaining_resources
        && holding(a) == holding(b)
}

fn same_record(a: &ContainerInstance, b: &ContainerInstance) -> bool {
    matches!((serde_json::to_value(a), serde_json::to_value(b)), (Ok(x), Ok(y)) if x == y)
}

/// The cluster's instances that are not INACTIVE, in a stable order, with
/// their store versions (not in the read set: see [`ClusterView::refresh`]).
fn read_instances(
    txn: &mut Txn,
    cluster_arn: &str,
) -> Result<Vec<(u64, ContainerInstance)>, ControlError> {
    Ok(all_by_index(txn, INSTANCES_BY_CLUSTER, cluster_arn)?
        .into_iter()
        .filter(|c| c.value.status != InstanceStatus::Inactive)
        .map(|c| (c.version, c.value))
        .collect())
}

/// The views of every cluster. A placing transaction (always under this
/// process's placement turn, so one at a time; `Control::placing` frames
/// it) begins with [`Views::begin`], takes views, gives them back with
/// [`Views::lend`] (several placements in one transaction share a view),
/// writes with [`Views::write`], and after its commit calls [`Views::commit`].
#[derive(Debug, Default)]
pub(super) struct Views {
    kept: std::sync::Mutex<HashMap<String, ClusterView>>,
    /// Views in use by the current transaction.
    lent: std::sync::Mutex<HashMap<String, ClusterView>>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Views {
    /// Starts a transaction's attempt: views left from an attempt that did
    /// not commit hold reservations that never happened, and are dropped.
    pub fn begin(&self) {
        // Kept rather than dropped: reading back the few instances the
        // attempt placed on is far cheaper than building the view anew.
        let left: Vec<(String, ClusterView)> = lock(&self.lent).drain().collect();
        let mut kept = lock(&self.kept);
        for (arn, mut v) in left {
            v.abandon_attempt();
            kept.insert(arn, v);
        }
    }

    /// The cluster's view, current as of `txn`.
    pub fn take(
        &self,
        txn: &mut Txn,
        store: &Store,
        cluster_arn: &str,
    ) -> Result<ClusterView, ControlError> {
        if let Some(v) = lock(&self.lent).remove(cluster_arn) {
            return Ok(v);
        }
        let kept = lock(&self.kept).remove(cluster_arn);
        match kept {
            Some(v) => v.refresh(txn, store, cluster_arn),
            None => ClusterView::build(txn, cluster_arn),
        }
    }

    /// Returns a view to the current transaction.
    pub fn lend(&self, cluster_arn: &str, view: ClusterView) {
        lock(&self.lent).insert(cluster_arn.to_owned(), view);
    }

    /// Writes the instances the transaction's placements touched.
    pub fn write(&self, txn: &mut Txn) -> Result<(), ControlError> {
        for v in lock(&self.lent).values_mut() {
            v.write_touched(txn)?;
        }
        Ok(())
    }

    /// Drops the policy sessions of kept views idle past [`SESSION_IDLE`].
    pub fn drop_idle_sessions(&self) {
        let now = Instant::now();
        for v in lock(&self.kept).values_mut() {
            v.sessions
                .retain(|_, (_, used)| now.duration_since(*used) < SESSION_IDLE);
        }
    }

    /// The transaction committed to `store`: its views are kept.
    pub fn commit(&self, store: &berth_store::Store) {
        let lent: Vec<(String, ClusterView)> = lock(&self.lent).drain().collect();
        let views: Vec<(String, ClusterView)> = lent
            .into_iter()
            .map(|(arn, mut v)| {
                v.committed(store);
                (arn, v)
            })
            .collect();
        lock(&self.kept).extend(views);
    }
}

/// Which policy places, and what happens when it fails.
pub(super) type ChosenPolicy = Option<(Arc<LoadedPolicy>, Fallback)>;
