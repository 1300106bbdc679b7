//! The control plane's operations over the store: clusters, task
//! definitions, container instances and tasks, with the batch scheduler.
//!
//! No HTTP here: every operation takes a typed request and returns a typed
//! answer or a [`ControlError`] whose [`ControlError::code`] is ECS's error
//! code. Operations block on the store; async callers run them on a blocking
//! thread.

pub mod agents;
pub mod audit;
mod clusters;
pub mod down;
mod explain;
mod gauges;
pub mod health;
mod instances;
pub mod liveness;
pub mod owner;
pub mod policies;
pub mod policy_history;
mod remote_logs;
pub mod scheduler;
pub mod secrets;
pub mod service_scheduler;
pub mod services;
mod shadow;
mod stopped;
mod taskdefs;
mod tasks;
mod view;
pub use policies::{FAILURE_ATTRIBUTE, FALLBACK_ATTRIBUTE, POLICY_TAG};
pub use stopped::STOPPED_TASK_TTL;
pub use tasks::QUEUE_TAG;
pub mod types;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_core::arn::{self, ArnContext};
use berth_core::model::Cluster;
use berth_core::status::ClusterStatus;
use berth_core::validate::InvalidInput;
use berth_store::{
    Index, Page, PageRequest, Record, Store, StoreError, Txn, UpdateError, Versioned,
};

/// Why an operation refused or failed; each variant is one ECS error code,
/// and the message names the field and value at fault.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("{0}")]
    Client(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    ClusterNotFound(String),
    #[error("{0}")]
    ServiceNotFound(String),
    #[error("{0}")]
    ServiceNotActive(String),
    #[error("{0}")]
    ClusterContainsContainerInstances(String),
    #[error("{0}")]
    ClusterContainsServices(String),
    #[error("{0}")]
    ClusterContainsTasks(String),
    #[error("{0}")]
    PolicyNotFound(String),
    #[error("{0}")]
    PolicyInUse(String),
    #[error("{0}")]
    InvalidPolicy(String),
    /// The store failed, or contention outlasted the retries.
    #[error("{0}")]
    Server(String),
    /// The store cannot write its file (a full disk, an I/O error): nothing
    /// was written, and a later try can succeed once the cause is gone.
    #[error("{0}")]
    Unavailable(String),
}

impl ControlError {
    /// ECS's error code (`__type` on the wire).
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::Client(_) => "ClientException",
            ControlError::InvalidParameter(_) => "InvalidParameterException",
            ControlError::ClusterNotFound(_) => "ClusterNotFoundException",
            ControlError::ServiceNotFound(_) => "ServiceNotFoundException",
            ControlError::ServiceNotActive(_) => "ServiceNotActiveException",
            ControlError::ClusterContainsContainerInstances(_) => {
                "ClusterContainsContainerInstancesException"
            }
            ControlError::ClusterContainsServices(_) => "ClusterContainsServicesException",
            ControlError::ClusterContainsTasks(_) => "ClusterContainsTasksException",
            ControlError::PolicyNotFound(_) => "PolicyNotFoundException",
            ControlError::PolicyInUse(_) => "PolicyInUseException",
            ControlError::InvalidPolicy(_) => "InvalidPolicyException",
            ControlError::Server(_) => "ServerException",
            ControlError::Unavailable(_) => "ServiceUnavailableException",
        }
    }

    /// True for the server's own failures (HTTP 5xx), false for the caller's.
    pub fn is_server(&self) -> bool {
        matches!(self, ControlError::Server(_) | ControlError::Unavailable(_))
    }

    fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        ControlError::InvalidParameter(format!("{field}: {message}"))
    }
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        match e {
            StoreError::Io(_) => ControlError::Unavailable(format!(
                "state store: {e}; nothing was written, try again once the data directory's file system has room (GET /health says when)"
            )),
            e => ControlError::Server(format!("state store: {e}")),
        }
    }
}

impl From<InvalidInput> for ControlError {
    fn from(e: InvalidInput) -> Self {
        ControlError::InvalidParameter(e.to_string())
    }
}

impl From<UpdateError<ControlError>> for ControlError {
    fn from(e: UpdateError<ControlError>) -> Self {
        match e {
            UpdateError::Aborted(e) => e,
            UpdateError::Store(e) => e.into(),
            other => {
                tracing::warn!(error = %other, "update gave up");
                ControlError::Server(format!("too much contention, try again: {other}"))
            }
        }
    }
}

/// The control plane: the store and the ARN context. Its schedulers and
/// the agent are woken by watches of the store (`scheduler`), so nothing
/// here announces a change: committing it is enough.
#[derive(Debug)]
pub struct Control {
    store: Arc<Store>,
    arn: ArnContext,
    /// Notified when the tasks table changes (tasks placed, asked to stop),
    /// so the agent acts now rather than at its next look at the store.
    tasks_changed: Arc<tokio::sync::Notify>,
    /// Placements of this process take turns: two at once would read the
    /// same instances and all but one would conflict and retry. CAS still
    /// guards against every other writer (agents, other servers).
    placement: std::sync::Mutex<()>,
    /// RunTask calls waiting for the next group commit.
    run_queue: std::sync::Mutex<Vec<(types::RunTaskRequest, tasks::RunReply)>>,
    /// Installed placement policies (None: this server runs none).
    policies: Option<Arc<berth_policy::Registry>>,
    /// Each cluster as placement sees it, kept between placements.
    views: view::Views,
    /// How long stopped tasks stay visible before they are deleted.
    stopped_task_ttl: std::time::Duration,
    /// When stopped tasks were last collected (seconds since the epoch).
    last_collect: std::sync::Mutex<f64>,
    /// The log-read side of the agents this server reaches, by instance.
    log_readers: Arc<agents::AgentLogReaders>,
    /// Who was heard from when, told by the agents that reach this control
    /// plane over HTTP (see [`Control::agent_plane`]).
    liveness: Option<Arc<liveness::Liveness>>,
    /// When each scheduler loop last finished a pass (GET /health).
    beats: Arc<health::Beats>,
    /// Where a Shutdown through the API is told (None: refused).
    shutdown: Option<down::ShutdownAsked>,
    /// The audit log's retention and collector.
    audit: audit::AuditLog,
    /// Which work that needs one owner this server does.
    owner: owner::Owner,
}

/// Whether a minute has passed since `last` (then set to now): the
/// collectors run on a faster timer and act once a minute.
fn once_a_minute(last: &std::sync::Mutex<f64>) -> bool {
    let mut last = last
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let t = now();
    if t - *last < 60.0 {
        return false;
    }
    *last = t;
    true
}

/// Seconds since the Unix epoch, fractional.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Largest `maxResults` of a list call, and its default.
pub const MAX_RESULTS: i64 = 100;

impl Control {
    /// The control plane over `store`, minting ARNs with `arn`.
    pub fn new(store: Arc<Store>, arn: ArnContext) -> Self {
        Control {
            store,
            arn,
            tasks_changed: Arc::new(tokio::sync::Notify::new()),
            placement: std::sync::Mutex::new(()),
            run_queue: std::sync::Mutex::new(Vec::new()),
            policies: None,
            views: view::Views::default(),
            stopped_task_ttl: STOPPED_TASK_TTL,
            last_collect: std::sync::Mutex::new(0.0),
            log_readers: Arc::default(),
            liveness: None,
            beats: Arc::default(),
            shutdown: None,
            audit: audit::AuditLog::default(),
            owner: owner::Owner::Alone,
        }
    }

    /// Does only the work `owner` holds (several servers over etcd).
    pub fn with_owner(mut self, owner: owner::Owner) -> Self {
        self.owner = owner;
        self
    }

    /// This server's ownership of work.
    pub fn owner(&self) -> &owner::Owner {
        &self.owner
    }

    /// Whether this server does `work` (see [`owner`]) now.
    pub fn owns(&self, work: &str) -> bool {
        self.owner.owns(work)
    }

    /// Shutdown through the API is told on `asked` (`berth down`).
    pub fn with_shutdown(mut self, asked: down::ShutdownAsked) -> Self {
        self.shutdown = Some(asked);
        self
    }

    /// When each scheduler loop last finished a pass.
    pub fn beats(&self) -> &Arc<health::Beats> {
        &self.beats
    }

    /// Reads task logs through the agents registered in `readers`.
    pub fn with_log_readers(mut self, readers: Arc<agents::AgentLogReaders>) -> Self {
        self.log_readers = readers;
        self
    }

    /// The log-read side of the agents this server reaches, by instance.
    pub fn log_readers(&self) -> &agents::AgentLogReaders {
        &self.log_readers
    }

    /// Places through the policies of `registry` where one is active or asked for.
    pub fn with_policies(mut self, registry: Arc<berth_policy::Registry>) -> Self {
        self.policies = Some(registry);
        self
    }

    /// The agent protocol over this control plane's store, for the agents
    /// that reach it over HTTP.
    pub fn agent_plane(&self) -> agents::LocalControlPlane {
        let plane = agents::LocalControlPlane::new(Arc::clone(&self.store), self.arn.clone());
        match &self.liveness {
            Some(l) => plane.with_liveness(Arc::clone(l)),
            None => plane,
        }
    }

    /// The agents reaching this control plane over HTTP tell `liveness`
    /// (the one the server's liveness loop judges from) when they are heard.
    pub fn with_liveness(mut self, liveness: Arc<liveness::Liveness>) -> Self {
        self.liveness = Some(liveness);
        self
    }

    /// A follower of every commit to the store from now on (the console's
    /// live updates wait on it).
    pub fn watch_changes(&self) -> Result<berth_store::Watch, ControlError> {
        let from = self.store.revision()?;
        Ok(self.store.watch(&[], from))
    }

    /// The ARN context.
    pub fn arn(&self) -> &ArnContext {
        &self.arn
    }

    /// Keeps stopped tasks visible for `ttl` before they are deleted.
    pub fn with_stopped_task_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.stopped_task_ttl = ttl;
        self
    }

    /// Collects stopped tasks past their retention, at most once a minute
    /// (the batch scheduler calls this on its timer).
    pub fn collect_stopped_tasks_now_and_then(&self) -> Result<usize, ControlError> {
        if !once_a_minute(&self.last_collect) {
            return Ok(0);
        }
        self.collect_stopped_tasks(self.stopped_task_ttl)
    }

    /// Drops policy instances idle past `view::SESSION_IDLE` (the batch
    /// scheduler calls this on its timer).
    pub fn drop_idle_policy_sessions(&self) {
        let _turn = self.placement_turn();
        self.views.drop_idle_sessions();
    }

    /// Takes this process's placement turn (a poisoned lock guards no data).
    fn placement_turn(&self) -> std::sync::MutexGuard<'_, ()> {
        self.placement
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A placing transaction: `Store::update` with the placement views'
    /// lifecycle around it: begun on every attempt (views of an attempt
    /// that did not commit are dropped), the instances the placements
    /// touched written at the end, the views kept once it committed. The
    /// caller holds the placement turn.
    fn placing<R>(
        &self,
        mut f: impl FnMut(&mut Txn) -> Result<R, ControlError>,
    ) -> Result<berth_store::Updated<R>, UpdateError<ControlError>> {
        let up = self.store.update(|txn| {
            self.views.begin();
            let r = f(txn)?;
            self.views.write(txn)?;
            Ok(r)
        })?;
        self.views.commit(&self.store);
        Ok(up)
    }

    /// Wakes the agent on `notify` when the tasks table changes (the batch
    /// scheduler's loop watches it) from now on.
    pub fn with_tasks_changed(mut self, notify: Arc<tokio::sync::Notify>) -> Self {
        self.tasks_changed = notify;
        self
    }

    /// Creates the `default` cluster when it does not exist yet (or
    /// reactivates it).
    pub fn ensure_default_cluster(&self) -> Result<(), ControlError> {
        self.store
            .update(|txn| clusters::ensure_cluster(txn, &self.arn, "default"))?;
        Ok(())
    }

    /// The ACTIVE cluster named by `name_or_arn` (default `default`), read
    /// with CAS in `txn`.
    fn active_cluster(
        &self,
        txn: &mut Txn,
        name_or_arn: Option<&str>,
    ) -> Result<Cluster, ControlError> {
        let name = arn::cluster_name(name_or_arn.unwrap_or("default"));
        match txn.get::<Cluster>(name)? {
            Some(c) if c.value.status == ClusterStatus::Active => Ok(c.value),
            _ => Err(ControlError::ClusterNotFound(format!(
                "cluster `{}` not found",
                name_or_arn.unwrap_or("default")
            ))),
        }
    }
}

/// Every record of `T` with index entry `(index, value)`.
fn all_by_index<T: Record>(
    txn: &Txn,
    index: Index<T>,
    value: &str,
) -> Result<Vec<Versioned<T>>, StoreError> {
    collect_pages(|p| txn.by_index(index, value, p))
}

/// Every record of `T` whose key starts with `prefix`.
fn all_with_prefix<T: Record>(txn: &Txn, prefix: &str) -> Result<Vec<Versioned<T>>, StoreError> {
    collect_pages(|p| txn.scan_prefix::<T>(prefix, p))
}

fn collect_pages<T>(
    mut f: impl FnMut(PageRequest) -> Result<Page<T>, StoreError>,
) -> Result<Vec<Versioned<T>>, StoreError> {
    let mut out = Vec::new();
    let mut req = PageRequest::first(1000);
    loop {
        let page = f(req.clone())?;
        out.extend(page.items);
        match page.next_token {
            Some(t) => req.token = Some(t),
            None => return Ok(out),
        }
    }
}

/// One page of `items` (already in list order, each with its sort key)
/// after `token`, of at most `max_results`; and the token of the next page.
/// Tokens are the hex of the last key returned, so a page holds whatever
/// follows it even when records came or went in between.
fn paginate<T>(
    items: Vec<(String, T)>,
    token: Option<&str>,
    max_results: Option<i64>,
    descending: bool,
) -> Result<(Vec<T>, Option<String>), ControlError> {
    let max = max_results.unwrap_or(MAX_RESULTS);
    if !(1..=MAX_RESULTS).contains(&max) {
        return Err(ControlError::invalid(
            "maxResults",
            format!("{max} is out of range 1-{MAX_RESULTS}"),
        ));
    }
    let after = match token {
        None => None,
        Some(t) => Some(
            hex::decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ControlError::invalid(
                        "nextToken",
                        format!("`{t}` is not a token this server handed out"),
                    )
                })?,
        ),
    };
    let mut rest = items.into_iter().filter(|(k, _)| match &after {
        None => true,
        Some(a) if descending => k < a,
        Some(a) => k > a,
    });
    let max = max as usize;
    let mut page: Vec<(String, T)> = rest.by_ref().take(max).collect();
    let next = if rest.next().is_some() {
        page.last().map(|(k, _)| hex::encode(k))
    } else {
        None
    };
    Ok((page.drain(..).map(|(_, v)| v).collect(), next))
}

#[cfg(test)]
mod etcd_tests;
#[cfg(test)]
mod tests;
