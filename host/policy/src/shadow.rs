//! Shadow mode: a candidate policy asked every live decision of a cluster,
//! its answers checked by the native engine and counted, never committed.
//!
//! The placement path only copies the view as it stood before the live
//! decision and offers it, with the live answer, to a worker thread
//! ([`ShadowWorker::offer`], which never blocks: when the worker is still
//! busy with earlier decisions the offer is counted as skipped). The
//! worker asks the candidate on its own copy, so a shadow that traps,
//! loops to its deadline or answers nonsense never delays or changes a
//! live placement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use berth_core::placement::{ClusterState, PlacementRequest};
use serde::Serialize;

use crate::error::FailureKind;
use crate::host::PolicyHost;
use crate::session::{LoadedPolicy, PolicySession};

/// Decisions waiting for the worker at most; more are skipped.
const QUEUE: usize = 16;

/// What a shadow did, per candidate.
#[derive(Debug, Default)]
pub struct ShadowStats {
    decisions: AtomicU64,
    agreed: AtomicU64,
    disagreed: AtomicU64,
    would_fail: AtomicU64,
    failures: [AtomicU64; 5],
    skipped: AtomicU64,
}

/// A snapshot of [`ShadowStats`], as `berth policy show` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowSnapshot {
    /// Live decisions the candidate was asked (tasks, one per placement).
    pub decisions: u64,
    /// Tasks it placed where the live decision did (or left unplaced as it did).
    pub agreed: u64,
    pub disagreed: u64,
    /// agreed / decisions (0 before the first).
    pub agreement: f64,
    /// Tasks the live decision placed and the candidate would not have.
    pub would_fail: u64,
    /// Failed decisions of the candidate by kind (each fails all its tasks).
    pub failures: Vec<(FailureKind, u64)>,
    /// Live decisions not offered because the worker was still busy.
    pub skipped: u64,
}

impl ShadowStats {
    pub fn snapshot(&self) -> ShadowSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let decisions = get(&self.decisions);
        ShadowSnapshot {
            decisions,
            agreed: get(&self.agreed),
            disagreed: get(&self.disagreed),
            agreement: if decisions == 0 {
                0.0
            } else {
                get(&self.agreed) as f64 / decisions as f64
            },
            would_fail: get(&self.would_fail),
            failures: FailureKind::ALL
                .iter()
                .map(|&k| (k, get(&self.failures[k as usize])))
                .collect(),
            skipped: get(&self.skipped),
        }
    }
}

/// One live decision offered to a shadow.
struct Job {
    policy: Arc<LoadedPolicy>,
    stats: Arc<ShadowStats>,
    /// The view as it stood before the live decision (the worker's own copy).
    state: ClusterState,
    req: PlacementRequest,
    /// Per task, the instance the live decision placed it on.
    live: Vec<Option<usize>>,
}

/// The worker thread and what it counts, per candidate sha256.
pub(crate) struct ShadowWorker {
    host: Arc<PolicyHost>,
    sender: Mutex<Option<SyncSender<Job>>>,
    stats: Mutex<HashMap<String, Arc<ShadowStats>>>,
}

impl ShadowWorker {
    pub(crate) fn new(host: Arc<PolicyHost>) -> ShadowWorker {
        ShadowWorker {
            host,
            sender: Mutex::new(None),
            stats: Mutex::default(),
        }
    }

    /// The counters of candidate `sha256` (made on first use).
    pub(crate) fn stats(&self, sha256: &str) -> Arc<ShadowStats> {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        s.entry(sha256.to_owned()).or_default().clone()
    }

    /// The counters of candidate `sha256`, when it ever shadowed.
    pub(crate) fn snapshot(&self, sha256: &str) -> Option<ShadowSnapshot> {
        let s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        s.get(sha256).map(|s| s.snapshot())
    }

    /// Offers a live decision to the shadow; never waits.
    pub(crate) fn offer(
        &self,
        policy: Arc<LoadedPolicy>,
        state: ClusterState,
        req: PlacementRequest,
        live: Vec<Option<usize>>,
    ) {
        let stats = self.stats(&policy.compiled.sha256);
        let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let tx = sender.get_or_insert_with(|| {
            let (tx, rx) = sync_channel(QUEUE);
            let host = self.host.clone();
            // The thread ends when the registry (the sender) is dropped.
            std::thread::Builder::new()
                .name("berth-shadow".into())
                .spawn(move || work(&host, &rx))
                .map(|_| ())
                .unwrap_or_else(|e| tracing::warn!(error = %e, "shadow worker did not start"));
            tx
        });
        let job = Job {
            policy,
            stats: stats.clone(),
            state,
            req,
            live,
        };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
                *sender = None;
            }
        }
    }
}

/// The worker: one warm session per candidate, kept in step with each
/// decision's copy of the view by what changed since the previous copy
/// (so a shadow's latency is a warm decision's, as the live policy's is).
fn work(host: &Arc<PolicyHost>, rx: &Receiver<Job>) {
    let mut sessions: HashMap<String, (PolicySession, ClusterState)> = HashMap::new();
    while let Ok(mut job) = rx.recv() {
        let sha = job.policy.compiled.sha256.clone();
        match sessions.get_mut(&sha) {
            Some((session, prev)) if Arc::ptr_eq(session.policy(), &job.policy) => {
                announce_changes(session, prev, &job.state);
            }
            _ => {
                let session = PolicySession::new(host.clone(), job.policy.clone());
                sessions.insert(sha.clone(), (session, ClusterState::default()));
            }
        }
        let Some((session, prev)) = sessions.get_mut(&sha) else {
            continue;
        };
        let count = job.live.len();
        let s = &job.stats;
        s.decisions.fetch_add(count as u64, Ordering::Relaxed);
        let answered = session.place(&mut job.state, &job.req, count);
        // The session's mirror now holds this copy with its own answers.
        *prev = job.state;
        match answered {
            Ok(answers) => {
                for (a, live) in answers.iter().zip(&job.live) {
                    let shadow = a.as_ref().ok().map(|p| p.instance);
                    if shadow == *live {
                        s.agreed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        s.disagreed.fetch_add(1, Ordering::Relaxed);
                        if shadow.is_none() {
                            s.would_fail.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Err(e) => {
                s.failures[e.kind as usize].fetch_add(1, Ordering::Relaxed);
                s.disagreed.fetch_add(count as u64, Ordering::Relaxed);
                let placed = job.live.iter().filter(|l| l.is_some()).count();
                s.would_fail.fetch_add(placed as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Tells `session` (whose mirror holds `prev`) what differs in `next`:
/// instances whose status or attributes changed in full, those whose
/// usage changed as usage; a different number of instances (the view was
/// rebuilt) starts it afresh.
fn announce_changes(session: &mut PolicySession, prev: &ClusterState, next: &ClusterState) {
    if prev.len() != next.len() {
        session.resync();
        return;
    }
    for i in 0..next.len() {
        let (a, b) = (prev.instance(i), next.instance(i));
        if a.spec != b.spec {
            session.instance_changed(i);
        } else if prev.cpu_free(i) != next.cpu_free(i)
            || prev.mem_free(i) != next.mem_free(i)
            || a.running_tasks != b.running_tasks
            || a.ports != b.ports
        {
            session.usage_changed(i);
        }
    }
}
