//! The policy registry: installed components stored content-addressed in
//! berth's store, their activation per cluster and per service, and the
//! atomic swap of the active version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwapOption;
use berth_core::placement::{ClusterState, Placement, PlacementRequest, Placer};
use berth_store::{Changes, Index, PageRequest, Record, Store, Txn, Watch};
use serde::{Deserialize, Serialize};

use crate::error::{DecisionError, InstallError, RegistryError};
use crate::host::PolicyHost;
use crate::session::{LoadedPolicy, PolicySession, StatsSnapshot};
use crate::shadow::{ShadowSnapshot, ShadowWorker};
use crate::stats::{FailureRecord, Kept, PolicyStatsRecord};

/// An installed policy component, keyed by the sha256 of its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Hex sha256 of the component: its id.
    pub sha256: String,
    /// The policy's own name.
    pub name: String,
    /// The policy's own version.
    pub version: String,
    /// The WIT world it implements.
    pub world: String,
    /// Component size in bytes.
    pub size: usize,
    /// How many `policy_chunks` records hold the component (`blobs.rs`);
    /// 0 in a record of an older berth, which holds it in `wasm_hex`.
    #[serde(default)]
    pub chunks: u32,
    /// The whole component, hex-encoded, as older berths stored it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wasm_hex: String,
}

impl Record for PolicyRecord {
    const TABLE: &'static str = "policies";
    fn key(&self) -> String {
        self.sha256.clone()
    }
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        vec![(POLICIES_BY_NAME.name(), self.name.clone())]
    }
}

/// Where a policy is active.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every placement in a cluster without a more specific binding.
    Cluster(String),
    /// One service of a cluster.
    Service {
        /// The cluster.
        cluster: String,
        /// The service.
        service: String,
    },
}

impl Scope {
    /// The binding's key in the store.
    pub fn key(&self) -> String {
        match self {
            Scope::Cluster(c) => format!("cluster/{c}"),
            Scope::Service { cluster, service } => format!("service/{cluster}/{service}"),
        }
    }
}

/// Policies by name.
const POLICIES_BY_NAME: Index<PolicyRecord> = Index::new("name");
/// Bindings by the sha256 of the policy they activate.
const BINDINGS_BY_POLICY: Index<PolicyBinding> = Index::new("policy");

/// An activation, stored so it survives restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyBinding {
    /// [`Scope::key`].
    pub scope: String,
    /// The active policy.
    pub sha256: String,
    /// What happens to tasks when it fails a decision.
    #[serde(default)]
    pub fallback: Fallback,
}

impl Record for PolicyBinding {
    const TABLE: &'static str = "policy_bindings";
    fn key(&self) -> String {
        self.scope.clone()
    }
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        vec![(BINDINGS_BY_POLICY.name(), self.sha256.clone())]
    }
}

/// What `show` reports of one policy.
#[derive(Debug, Clone, Serialize)]
pub struct PolicySummary {
    /// Hex sha256, the id.
    pub sha256: String,
    /// The policy's name.
    pub name: String,
    /// The policy's version.
    pub version: String,
    /// The world it implements.
    pub world: String,
    /// Size in bytes.
    pub size: usize,
    /// Scopes where it is active.
    pub active_in: Vec<String>,
    /// The fallback in force in each of those scopes, in the same order.
    pub fallbacks: Vec<Fallback>,
    /// The parameters it documents: (name, description).
    pub parameters: Vec<(String, String)>,
    /// Counters: what the store held when this process loaded it, plus
    /// what it counted since (see [`Registry::flush_stats`]).
    pub stats: StatsSnapshot,
    /// The last failed decisions, oldest first.
    pub recent_failures: Vec<FailureRecord>,
    /// What it did as a shadow, when it shadowed in this process.
    pub shadow: Option<ShadowSnapshot>,
}

/// A version as numbers where it has them (`0.10.0` after `0.9.0`), so the
/// list of an ambiguous name reads in version order.
fn version_key(v: &str) -> Vec<(u64, &str)> {
    v.split(['.', '-', '+'])
        .map(|part| (part.parse().unwrap_or(u64::MAX), part))
        .collect()
}

/// What to do with tasks when the policy fails a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// Place them with berth's native strategies of the request.
    #[default]
    Native,
    /// Leave them PENDING for the next round.
    Pending,
}

/// The outcome of one decision through [`PolicyRunner::decide`].
#[derive(Debug)]
pub struct Decision {
    /// Per task: where it goes (reserved in the state), or why it stays PENDING.
    pub answers: Vec<Result<Placement, String>>,
    /// The policy version that decided (None: no policy active).
    pub policy: Option<String>,
    /// When the policy failed: why; the answers then come from the fallback.
    pub failure: Option<DecisionError>,
}

/// The registry of installed policies.
pub struct Registry {
    host: Arc<PolicyHost>,
    store: Store,
    loaded: RwLock<HashMap<String, Arc<LoadedPolicy>>>,
    /// The active version per scope key; swapped atomically.
    active: RwLock<HashMap<String, Arc<ArcSwapOption<LoadedPolicy>>>>,
    /// The fallback per scope key (absent: [`Fallback::Native`]).
    fallbacks: RwLock<HashMap<String, Fallback>>,
    /// Stored totals and the last failures, per loaded policy's sha256.
    kept: Mutex<HashMap<String, Kept>>,
    /// The watch of the policies and bindings tables, up to where this
    /// process has applied them.
    following: Mutex<Watch>,
    /// Shadow candidates' decisions, off the placement path.
    shadows: ShadowWorker,
}

/// The binding key of a cluster's shadow (beside `cluster/NAME`).
fn shadow_key(cluster: &str) -> String {
    format!("shadow/{}", Scope::Cluster(cluster.into()).key())
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

fn store_err(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Store(e.to_string())
}

impl Registry {
    /// Opens the registry over `store`, loading every installed policy and
    /// every binding (so activations survive restart), then following the
    /// store: what another process installs or activates over the same
    /// store takes effect here at the next decision.
    pub fn open(host: Arc<PolicyHost>, store: Store) -> Result<Registry, RegistryError> {
        let txn = store.begin().map_err(store_err)?;
        let from = txn.revision().map_err(store_err)?;
        let following = store.watch(&[PolicyRecord::TABLE, PolicyBinding::TABLE], from);
        let reg = Registry {
            shadows: ShadowWorker::new(host.clone()),
            host,
            store,
            loaded: RwLock::default(),
            active: RwLock::default(),
            fallbacks: RwLock::default(),
            kept: Mutex::default(),
            following: Mutex::new(following),
        };
        reg.load_all(&txn)?;
        Ok(reg)
    }

    /// Loads every installed policy and applies every binding as `txn`
    /// reads them; scopes without a binding there go back to native.
    fn load_all(&self, txn: &Txn) -> Result<(), RegistryError> {
        let mut page = PageRequest::first(256);
        loop {
            let p = txn.list::<PolicyRecord>(page.clone()).map_err(store_err)?;
            for rec in p.items {
                if !self.is_loaded(&rec.value.sha256) {
                    self.load(&crate::blobs::read_component(txn, &rec.value)?)?;
                }
            }
            match p.next_token {
                Some(t) => page.token = Some(t),
                None => break,
            }
        }
        let mut bound = Vec::new();
        let mut page = PageRequest::first(256);
        loop {
            let p = txn.list::<PolicyBinding>(page.clone()).map_err(store_err)?;
            for b in p.items {
                bound.push(b.value.scope.clone());
                self.apply_binding(&b.value.scope, Some(&b.value))?;
            }
            match p.next_token {
                Some(t) => page.token = Some(t),
                None => break,
            }
        }
        let known: Vec<String> = match self.active.read() {
            Ok(a) => a.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for scope in known.iter().filter(|k| !bound.contains(k)) {
            self.apply_binding(scope, None)?;
        }
        Ok(())
    }

    /// Makes this process's view of one scope what the store holds.
    fn apply_binding(
        &self,
        scope_key: &str,
        binding: Option<&PolicyBinding>,
    ) -> Result<(), RegistryError> {
        let Some(b) = binding else {
            self.slot(scope_key).store(None);
            return Ok(());
        };
        // A binding whose policy is gone (a remove racing an activate)
        // must not keep berth from starting: that scope falls back to the
        // native strategies, and says so.
        let policy = match self.get(&b.sha256) {
            Ok(p) => p,
            Err(RegistryError::NotFound(_)) => {
                tracing::warn!(scope = %b.scope, policy = %b.sha256, "binding to a policy that is not installed; ignored");
                self.slot(scope_key).store(None);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.set_fallback(scope_key, b.fallback);
        self.slot(scope_key).store(Some(policy));
        Ok(())
    }

    /// Applies what was committed to the policies and their bindings since
    /// the last look, by this process or any other over the store. Cheap
    /// when nothing was committed at all; called at each decision.
    pub fn follow_store(&self) -> Result<(), RegistryError> {
        let mut following = self.following.lock().map_err(store_err)?;
        let changes = following.poll().map_err(store_err)?;
        let events = match changes {
            Changes::Events { events, .. } => events,
            Changes::Compacted { .. } => {
                let txn = self.store.begin().map_err(store_err)?;
                return self.load_all(&txn);
            }
        };
        if events.is_empty() {
            return Ok(());
        }
        // Apply each changed record as it is now: the latest state wins.
        let mut txn = self.store.begin().map_err(store_err)?;
        for e in events.iter().filter(|e| e.table == PolicyRecord::TABLE) {
            match txn.get::<PolicyRecord>(&e.key).map_err(store_err)? {
                Some(rec) if !self.is_loaded(&e.key) => {
                    self.load(&crate::blobs::read_component(&txn, &rec.value)?)?;
                }
                Some(_) => {}
                None => {
                    self.loaded.write().map_err(store_err)?.remove(&e.key);
                }
            }
        }
        for e in events.iter().filter(|e| e.table == PolicyBinding::TABLE) {
            let b = txn.get::<PolicyBinding>(&e.key).map_err(store_err)?;
            self.apply_binding(&e.key, b.as_ref().map(|b| &b.value))?;
        }
        Ok(())
    }

    /// [`Registry::follow_store`] where a failure must not stop a decision:
    /// it is logged, and what this process knows stands.
    fn follow_store_or_log(&self) {
        if let Err(e) = self.follow_store() {
            tracing::warn!(error = %e, "reading policy changes from the store failed");
        }
    }

    fn is_loaded(&self, sha256: &str) -> bool {
        self.loaded.read().is_ok_and(|l| l.contains_key(sha256))
    }

    /// The engine host.
    pub fn host(&self) -> &Arc<PolicyHost> {
        &self.host
    }

    fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedPolicy>, RegistryError> {
        let compiled = self.host.compile(bytes)?;
        if let Some(p) = self.loaded.read().map_err(store_err)?.get(&compiled.sha256) {
            return Ok(p.clone());
        }
        let loaded = Arc::new(
            LoadedPolicy::from_compiled(&self.host, compiled).map_err(InstallError::Info)?,
        );
        let stored = self
            .store
            .begin()
            .and_then(|mut txn| txn.get::<PolicyStatsRecord>(&loaded.compiled.sha256))
            .map_err(store_err)?
            .map(|v| v.value);
        self.kept.lock().map_err(store_err)?.insert(
            loaded.compiled.sha256.clone(),
            Kept::new(stored, &loaded.stats()),
        );
        self.loaded
            .write()
            .map_err(store_err)?
            .insert(loaded.compiled.sha256.clone(), loaded.clone());
        Ok(loaded)
    }

    /// Checks, compiles and stores a component; returns its id (sha256).
    /// Installing the same bytes twice is a no-op.
    pub fn install(&self, bytes: &[u8]) -> Result<String, RegistryError> {
        let p = self.load(bytes)?;
        let sha256 = p.compiled.sha256.clone();
        let chunks = crate::blobs::write_chunks(&self.store, &sha256, bytes).map_err(store_err)?;
        let rec = PolicyRecord {
            sha256,
            name: p.name.clone(),
            version: p.version.clone(),
            world: p.compiled.world.to_owned(),
            size: p.compiled.size,
            chunks,
            wasm_hex: String::new(),
        };
        self.store
            .update(|txn| {
                // Installed already (the same bytes): keep that record.
                if txn.get::<PolicyRecord>(&rec.sha256)?.is_none() {
                    txn.put(&rec)?;
                }
                Ok::<_, berth_store::StoreError>(())
            })
            .map_err(store_err)?;
        tracing::info!(sha256 = %rec.sha256, name = %rec.name, size = rec.size, "policy installed");
        Ok(rec.sha256)
    }

    /// A loaded policy by id (sha256, or a unique prefix of at least 8
    /// characters), by `NAME@VERSION`, or by a bare name when exactly one
    /// version of that name is installed. A name (or prefix) matching
    /// several is refused with the list, never guessed.
    pub fn get(&self, id_or_name: &str) -> Result<Arc<LoadedPolicy>, RegistryError> {
        let loaded = self.loaded.read().map_err(store_err)?;
        if let Some(p) = loaded.get(id_or_name) {
            return Ok(p.clone());
        }
        let by_version = id_or_name.split_once('@');
        let mut matches: Vec<&Arc<LoadedPolicy>> = loaded
            .values()
            .filter(|p| match by_version {
                Some((name, version)) => p.name == name && p.version == version,
                None => {
                    p.name == id_or_name
                        || (id_or_name.len() >= 8 && p.compiled.sha256.starts_with(id_or_name))
                }
            })
            .collect();
        match matches.as_slice() {
            [] => Err(RegistryError::NotFound(id_or_name.to_owned())),
            [one] => Ok((*one).clone()),
            _ => {
                matches.sort_by(|a, b| {
                    (&a.name, version_key(&a.version), &a.compiled.sha256).cmp(&(
                        &b.name,
                        version_key(&b.version),
                        &b.compiled.sha256,
                    ))
                });
                Err(RegistryError::Ambiguous {
                    given: id_or_name.to_owned(),
                    candidates: matches
                        .iter()
                        .map(|p| (p.name.clone(), p.version.clone(), p.compiled.sha256.clone()))
                        .collect(),
                })
            }
        }
    }

    fn slot(&self, scope_key: &str) -> Arc<ArcSwapOption<LoadedPolicy>> {
        if let Ok(a) = self.active.read()
            && let Some(s) = a.get(scope_key)
        {
            return s.clone();
        }
        match self.active.write() {
            Ok(mut a) => a.entry(scope_key.to_owned()).or_default().clone(),
            // A poisoned lock only means a panic elsewhere; a fresh slot is safe.
            Err(_) => Arc::default(),
        }
    }

    fn scopes_of(&self, sha256: &str) -> Vec<String> {
        let Ok(a) = self.active.read() else {
            return Vec::new();
        };
        let mut v: Vec<String> = a
            .iter()
            .filter(|(_, s)| {
                s.load()
                    .as_ref()
                    .is_some_and(|p| p.compiled.sha256 == sha256)
            })
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    /// Every installed policy.
    pub fn list(&self) -> Vec<PolicySummary> {
        self.follow_store_or_log();
        let Ok(loaded) = self.loaded.read() else {
            return Vec::new();
        };
        let mut v: Vec<PolicySummary> = loaded.values().map(|p| self.summary(p)).collect();
        v.sort_by(|a, b| (&a.name, &a.sha256).cmp(&(&b.name, &b.sha256)));
        v
    }

    fn summary(&self, p: &LoadedPolicy) -> PolicySummary {
        let live = p.stats();
        let (stats, recent_failures) = match self.kept.lock() {
            Ok(k) => match k.get(&p.compiled.sha256) {
                Some(k) => (k.total(&live), k.recent()),
                None => (live, Vec::new()),
            },
            Err(_) => (live, Vec::new()),
        };
        let active_in = self.scopes_of(&p.compiled.sha256);
        PolicySummary {
            sha256: p.compiled.sha256.clone(),
            name: p.name.clone(),
            version: p.version.clone(),
            world: p.compiled.world.to_owned(),
            size: p.compiled.size,
            fallbacks: active_in.iter().map(|s| self.fallback_of(s)).collect(),
            active_in,
            parameters: p.parameters.clone(),
            stats,
            recent_failures,
            shadow: self.shadows.snapshot(&p.compiled.sha256),
        }
    }

    /// Keeps a failed decision of policy `sha256` among its last failures
    /// (the counters count it already), with the first task it was for.
    pub fn record_failure(&self, e: &DecisionError, task: Option<&str>) {
        if let Ok(mut k) = self.kept.lock()
            && let Some(k) = k.get_mut(&e.policy)
        {
            k.push_failure(FailureRecord::new(e, task));
        }
    }

    /// Writes every policy's totals that changed since the last flush, in
    /// one transaction. Decisions never write the store themselves (a
    /// decision is microseconds, a commit an fsync): the server calls this
    /// every few seconds and when it stops, so a crash loses at most that.
    pub fn flush_stats(&self) -> Result<usize, RegistryError> {
        let policies: Vec<Arc<LoadedPolicy>> = match self.loaded.read() {
            Ok(l) => l.values().cloned().collect(),
            Err(_) => return Ok(0),
        };
        // (mine, what this process last wrote, the live counters it is from)
        let changed: Vec<(PolicyStatsRecord, Option<PolicyStatsRecord>, StatsSnapshot)> = {
            let kept = self.kept.lock().map_err(store_err)?;
            policies
                .iter()
                .filter_map(|p| {
                    let k = kept.get(&p.compiled.sha256)?;
                    let live = p.stats();
                    let rec = k.record(&p.compiled.sha256, &live);
                    k.stale(&rec)
                        .then(|| (rec, k.last_written().cloned(), live))
                })
                .collect()
        };
        if changed.is_empty() {
            return Ok(0);
        }
        // Added to what the store holds: other servers count too.
        let merged = self
            .store
            .update(|txn| {
                let mut out = Vec::with_capacity(changed.len());
                for (mine, written, _) in &changed {
                    let current = txn.get::<PolicyStatsRecord>(&mine.sha256)?.map(|v| v.value);
                    let rec = crate::stats::merge(current.as_ref(), written.as_ref(), mine);
                    txn.put(&rec)?;
                    out.push(rec);
                }
                Ok::<_, berth_store::StoreError>(out)
            })
            .map_err(store_err)?
            .value;
        let mut kept = self.kept.lock().map_err(store_err)?;
        for (rec, (_, _, live)) in merged.into_iter().zip(&changed) {
            if let Some(k) = kept.get_mut(&rec.sha256) {
                k.rebase(rec, live);
            }
        }
        Ok(changed.len())
    }

    /// Sets a policy's counters and failures back to nothing, in the store
    /// at once; returns it as it is now.
    pub fn reset_stats(&self, id_or_name: &str) -> Result<PolicySummary, RegistryError> {
        self.follow_store_or_log();
        let p = self.get(id_or_name)?;
        let sha = p.compiled.sha256.clone();
        let rec = {
            let mut kept = self.kept.lock().map_err(store_err)?;
            let live = p.stats();
            let k = kept
                .entry(sha.clone())
                .or_insert_with(|| Kept::new(None, &live));
            k.reset(&live);
            k.record(&sha, &live)
        };
        self.store.update(|txn| txn.put(&rec)).map_err(store_err)?;
        if let Ok(mut kept) = self.kept.lock()
            && let Some(k) = kept.get_mut(&sha)
        {
            k.written(rec);
        }
        Ok(self.summary(&p))
    }

    /// One policy with its counters.
    pub fn show(&self, id_or_name: &str) -> Result<PolicySummary, RegistryError> {
        self.follow_store_or_log();
        let p = self.get(id_or_name)?;
        Ok(self.summary(&p))
    }

    /// Makes a policy the active one of `scope`, in the store and at once in
    /// this process: decisions in flight finish on the version they started.
    pub fn activate(&self, scope: &Scope, id_or_name: &str) -> Result<(), RegistryError> {
        self.activate_with(scope, id_or_name, Fallback::Native)
            .map(|_| ())
    }

    /// [`Registry::activate`] with the fallback for the policy's failed
    /// decisions; returns the policy activated.
    pub fn activate_with(
        &self,
        scope: &Scope,
        id_or_name: &str,
        fallback: Fallback,
    ) -> Result<Arc<LoadedPolicy>, RegistryError> {
        let p = self.get(id_or_name)?;
        let b = PolicyBinding {
            scope: scope.key(),
            sha256: p.compiled.sha256.clone(),
            fallback,
        };
        self.store.update(|txn| txn.put(&b)).map_err(store_err)?;
        self.set_fallback(&b.scope, fallback);
        self.slot(&b.scope).store(Some(p.clone()));
        Ok(p)
    }

    /// Buffers in `txn` the binding that makes `policy` the active one of
    /// `scope`, so it commits with whatever else `txn` writes (CreateService
    /// with its policy tag). This process applies it at its next decision
    /// after the commit, as every other process over the store does.
    pub fn bind_in(
        &self,
        txn: &mut Txn,
        scope: &Scope,
        policy: &LoadedPolicy,
        fallback: Fallback,
    ) -> Result<(), RegistryError> {
        txn.put(&PolicyBinding {
            scope: scope.key(),
            sha256: policy.compiled.sha256.clone(),
            fallback,
        })
        .map_err(store_err)
    }

    fn set_fallback(&self, scope_key: &str, fallback: Fallback) {
        if let Ok(mut f) = self.fallbacks.write() {
            f.insert(scope_key.to_owned(), fallback);
        }
    }

    fn fallback_of(&self, scope_key: &str) -> Fallback {
        self.fallbacks
            .read()
            .ok()
            .and_then(|f| f.get(scope_key).copied())
            .unwrap_or_default()
    }

    /// Makes a policy the shadow of `cluster`: asked every live decision
    /// there, its answers checked and counted, never committed (stored, so
    /// it survives restart; one shadow per cluster).
    pub fn shadow(
        &self,
        cluster: &str,
        id_or_name: &str,
    ) -> Result<Arc<LoadedPolicy>, RegistryError> {
        let p = self.get(id_or_name)?;
        let b = PolicyBinding {
            scope: shadow_key(cluster),
            sha256: p.compiled.sha256.clone(),
            fallback: Fallback::Native,
        };
        self.store.update(|txn| txn.put(&b)).map_err(store_err)?;
        self.shadows.stats(&p.compiled.sha256);
        self.slot(&b.scope).store(Some(p.clone()));
        Ok(p)
    }

    /// The shadow of `cluster`, if it has one.
    pub fn shadow_of(&self, cluster: &str) -> Option<Arc<LoadedPolicy>> {
        self.slot(&shadow_key(cluster)).load_full()
    }

    /// Offers a live decision to `policy`, the shadow: `state` is the view
    /// as it stood before the decision, `live` where each task went.
    /// Returns at once (see `shadow.rs`).
    pub fn offer_shadow(
        &self,
        policy: Arc<LoadedPolicy>,
        state: ClusterState,
        req: PlacementRequest,
        live: Vec<Option<usize>>,
    ) {
        self.shadows.offer(policy, state, req, live);
    }

    /// Makes the shadow (or any policy) the active one of `cluster` and
    /// ends the cluster's shadow, in one transaction: the next decision
    /// is the candidate's.
    pub fn promote(
        &self,
        cluster: &str,
        id_or_name: &str,
        fallback: Fallback,
    ) -> Result<Arc<LoadedPolicy>, RegistryError> {
        let p = self.get(id_or_name)?;
        let b = PolicyBinding {
            scope: Scope::Cluster(cluster.into()).key(),
            sha256: p.compiled.sha256.clone(),
            fallback,
        };
        let shadow = shadow_key(cluster);
        self.store
            .update(|txn| {
                txn.put(&b)?;
                txn.delete::<PolicyBinding>(&shadow)?;
                Ok::<(), berth_store::StoreError>(())
            })
            .map_err(store_err)?;
        self.set_fallback(&b.scope, fallback);
        self.slot(&b.scope).store(Some(p.clone()));
        self.slot(&shadow).store(None);
        Ok(p)
    }

    /// Removes the binding of `scope` (native strategies apply again).
    pub fn deactivate(&self, scope: &Scope) -> Result<(), RegistryError> {
        let key = scope.key();
        self.store
            .update(|txn| txn.delete::<PolicyBinding>(&key))
            .map_err(store_err)?;
        self.slot(&key).store(None);
        Ok(())
    }

    /// Removes an installed policy; refused while it is active anywhere.
    pub fn remove(&self, id_or_name: &str) -> Result<(), RegistryError> {
        self.follow_store_or_log();
        let p = self.get(id_or_name)?;
        let sha = p.compiled.sha256.clone();
        let scopes = self.scopes_of(&sha);
        if !scopes.is_empty() {
            return Err(RegistryError::InUse {
                policy: sha,
                scopes,
            });
        }
        self.store
            .update(|txn| {
                let bound = txn.by_index(BINDINGS_BY_POLICY, &sha, PageRequest::first(1))?;
                if !bound.items.is_empty() {
                    return Ok(false);
                }
                if let Some(rec) = txn.get::<PolicyRecord>(&sha)? {
                    crate::blobs::delete_chunks(txn, &rec.value)?;
                }
                txn.delete::<PolicyRecord>(&sha)?;
                txn.delete::<PolicyStatsRecord>(&sha)?;
                Ok::<bool, berth_store::StoreError>(true)
            })
            .map_err(store_err)
            .and_then(|u| {
                if u.value {
                    Ok(())
                } else {
                    Err(RegistryError::InUse {
                        policy: sha.clone(),
                        scopes: vec!["a stored binding".into()],
                    })
                }
            })?;
        self.loaded.write().map_err(store_err)?.remove(&sha);
        self.kept.lock().map_err(store_err)?.remove(&sha);
        Ok(())
    }

    /// The policy that decides for a placement: the RunTask call's own
    /// choice, else the service's binding, else the cluster's.
    pub fn resolve(
        &self,
        cluster: &str,
        service: Option<&str>,
        call: Option<&str>,
    ) -> Result<Option<Arc<LoadedPolicy>>, RegistryError> {
        Ok(self
            .resolve_with_fallback(cluster, service, call)?
            .map(|(p, _)| p))
    }

    /// [`Registry::resolve`] with the fallback of the scope that decided
    /// (a RunTask call's own choice falls back to the native strategies).
    pub fn resolve_with_fallback(
        &self,
        cluster: &str,
        service: Option<&str>,
        call: Option<&str>,
    ) -> Result<Option<(Arc<LoadedPolicy>, Fallback)>, RegistryError> {
        self.follow_store_or_log();
        if let Some(c) = call {
            return self.get(c).map(|p| Some((p, Fallback::Native)));
        }
        if let Some(s) = service {
            let key = Scope::Service {
                cluster: cluster.into(),
                service: s.into(),
            }
            .key();
            if let Some(p) = self.slot(&key).load_full() {
                return Ok(Some((p, self.fallback_of(&key))));
            }
        }
        let key = Scope::Cluster(cluster.into()).key();
        Ok(self
            .slot(&key)
            .load_full()
            .map(|p| (p, self.fallback_of(&key))))
    }

    /// A runner following the active policy of a scope (as this registry
    /// knows it: [`Registry::follow_store`] brings in other processes'
    /// activations).
    pub fn runner(&self, scope: &Scope, fallback: Fallback) -> PolicyRunner {
        self.follow_store_or_log();
        PolicyRunner {
            host: self.host.clone(),
            slot: self.slot(&scope.key()),
            session: None,
            fallback,
            placer: Placer::new(0),
        }
    }
}

/// Places through whatever policy is active in one scope, following swaps:
/// a swap takes effect at the next decision, which starts a fresh session
/// (fully synced) on the new version, while a decision already running
/// finishes on the old one.
pub struct PolicyRunner {
    host: Arc<PolicyHost>,
    slot: Arc<ArcSwapOption<LoadedPolicy>>,
    session: Option<PolicySession>,
    fallback: Fallback,
    placer: Placer,
}

impl std::fmt::Debug for PolicyRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRunner")
            .field("session", &self.session)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl PolicyRunner {
    /// Forwards a change of instance `i` to the live session.
    pub fn instance_changed(&mut self, i: usize) {
        if let Some(s) = &mut self.session {
            s.instance_changed(i);
        }
    }

    /// Forwards a usage change (tasks started or stopped) of instance `i`.
    pub fn usage_changed(&mut self, i: usize) {
        if let Some(s) = &mut self.session {
            s.usage_changed(i);
        }
    }

    /// Places `count` tasks: through the active policy when there is one,
    /// else (or when it fails) per the fallback.
    pub fn decide(
        &mut self,
        state: &mut ClusterState,
        req: &PlacementRequest,
        count: usize,
    ) -> Decision {
        let active = self.slot.load_full();
        let Some(policy) = active else {
            self.session = None;
            return Decision {
                answers: self.native(state, req, count),
                policy: None,
                failure: None,
            };
        };
        let same = self
            .session
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s.policy(), &policy));
        if !same {
            self.session = Some(PolicySession::new(self.host.clone(), policy.clone()));
        }
        let sha = Some(policy.compiled.sha256.clone());
        let Some(session) = self.session.as_mut() else {
            return Decision {
                answers: self.native(state, req, count),
                policy: None,
                failure: None,
            };
        };
        match session.place(state, req, count) {
            Ok(answers) => Decision {
                answers,
                policy: sha,
                failure: None,
            },
            Err(e) => {
                let answers = match self.fallback {
                    Fallback::Native => self.native(state, req, count),
                    Fallback::Pending => (0..count)
                        .map(|_| Err(format!("policy failed: {e}")))
                        .collect(),
                };
                Decision {
                    answers,
                    policy: sha,
                    failure: Some(e),
                }
            }
        }
    }

    fn native(
        &mut self,
        state: &mut ClusterState,
        req: &PlacementRequest,
        count: usize,
    ) -> Vec<Result<Placement, String>> {
        self.placer
            .place(state, req, count)
            .into_iter()
            .map(|r| r.map_err(|f| f.to_string()))
            .collect()
    }
}
