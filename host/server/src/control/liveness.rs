//! Liveness of agents, server side: when each agent was last heard from,
//! kept in memory ([`Liveness`]: 5,000 agents heartbeating every 5 s would
//! be 1,000 store writes a second for nothing), and the loop ([`run`]) that
//! writes only the transitions, each in a CAS transaction:
//! - an agent not heard from for the timeout is lost: its instance is
//!   written `agentConnected: false` (placement then skips it with the
//!   AGENT reason) and its [`AgentPresence`] records when;
//! - once the grace has passed too, the lost instance's tasks not yet
//!   STOPPED are STOPPED (`berth_core::liveness::stop_lost_task`), so the
//!   service scheduler replaces the service tasks elsewhere;
//! - the next message of the agent (heartbeat, registration, manifest
//!   read, state change: `LocalControlPlane` calls [`Liveness::heard`] and
//!   [`come_back`]) connects the instance again.
//!
//! The rules and timings are `berth_core::liveness`'s. Written twice (two
//! servers over one store, a retried transaction) a transition changes
//! nothing the second time: the first loss time stands, a STOPPED task is
//! final. A server that starts judges nothing for a full timeout.
//!
//! Only instances whose agents speak the agent protocol are judged: an
//! [`AgentPresence`] record marks them (written at the first message of
//! each agent a server hears). Instances registered through the API's
//! RegisterContainerInstance with no agent behind them are left alone.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_core::liveness::{Presence, Timing, Verdict, judge, stop_lost_task};
use berth_core::model::ContainerInstance;
use berth_core::status::InstanceStatus;
use berth_store::{Record, Store, Txn};
use serde::{Deserialize, Serialize};

use super::tasks::recount;
use super::{ControlError, collect_pages};

/// How often the liveness loop looks (a pass with nothing due touches
/// neither the store nor anything else).
pub const TICK: Duration = Duration::from_secs(1);

/// Where the liveness rules read the time: the system clock, or a test's.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now(&self) -> f64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        super::now()
    }
}

/// An instance served by an agent through the agent protocol, and whether
/// the server judged it lost (when). Stored, so a restarted server knows
/// which instances to judge and which were lost already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPresence {
    pub container_instance_arn: String,
    /// When the instance was judged lost (seconds since the epoch); `None`
    /// while its agent is heard from.
    #[serde(default)]
    pub lost_at: Option<f64>,
    /// When a server last heard from its agent, written every third of the
    /// timeout by servers sharing a store on etcd (an agent talks to one
    /// of them; the one judging may be another), as Kubernetes' nodes
    /// renew their leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heard_at: Option<f64>,
}

impl Record for AgentPresence {
    const TABLE: &'static str = "berth_agent_presence";
    fn key(&self) -> String {
        self.container_instance_arn.clone()
    }
}

/// What one liveness pass wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Instances judged lost.
    pub lost: usize,
    /// Tasks of lost instances STOPPED.
    pub tasks_stopped: usize,
}

/// When each agent was last heard from, in memory, with the timing.
#[derive(Debug)]
pub struct Liveness {
    clock: Arc<dyn Clock>,
    timing: Timing,
    /// When this server started (judging begins a timeout later).
    started: f64,
    agents: Mutex<HashMap<String, Presence>>,
    /// The stored presences were read (once, when judging begins).
    loaded: Mutex<bool>,
    /// Several servers share the store: hearing is written to it (`heard_at`)
    /// and read back before judging.
    shared: bool,
    /// The `heard_at` this server last wrote, by instance.
    written: Mutex<HashMap<String, f64>>,
}

impl Liveness {
    /// Liveness on the system clock, started now.
    pub fn new(timing: Timing) -> Self {
        Liveness::with_clock(Arc::new(SystemClock), timing)
    }

    /// Liveness on `clock`, started at its present time.
    pub fn with_clock(clock: Arc<dyn Clock>, timing: Timing) -> Self {
        Liveness {
            started: clock.now(),
            clock,
            timing,
            agents: Mutex::default(),
            loaded: Mutex::new(false),
            shared: false,
            written: Mutex::default(),
        }
    }

    /// For a server sharing its store with others (see `heard_at`).
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    fn agents(&self) -> std::sync::MutexGuard<'_, HashMap<String, Presence>> {
        self.agents.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The agent of instance `arn` was heard from now. True when its
    /// instance may be recorded lost (judged so, or not heard since this
    /// server started): then the caller writes it back with [`come_back`]
    /// and, once that committed, calls [`Liveness::came_back`].
    pub fn heard(&self, arn: &str) -> bool {
        let now = self.clock.now();
        let mut agents = self.agents();
        match agents.get_mut(arn) {
            Some(p) => {
                p.heard = Some(now);
                p.lost_at.is_some()
            }
            None => {
                agents.insert(
                    arn.to_owned(),
                    Presence {
                        heard: Some(now),
                        lost_at: None,
                        settled: false,
                    },
                );
                true
            }
        }
    }

    /// Seconds since the agent of `arn` was last heard from, and the
    /// timeout after which it is judged lost; None if never heard.
    pub fn heard_ago(&self, arn: &str) -> Option<(f64, f64)> {
        let now = self.clock.now();
        let heard = self.agents().get(arn).and_then(|p| p.heard)?;
        Some((now - heard, self.timing.timeout))
    }

    /// [`come_back`] for `arn` committed: it is not lost any more.
    pub fn came_back(&self, arn: &str) {
        if let Some(p) = self.agents().get_mut(arn) {
            p.lost_at = None;
            p.settled = false;
        }
    }

    /// One pass at the clock's time: judges every agent and writes what is
    /// due (see the module's doc).
    #[cfg(test)]
    pub fn pass(&self, store: &Store) -> Result<PassStats, ControlError> {
        self.pass_as(store, true)
    }

    /// A pass of a server that `judges` or not (another server owns the
    /// judging): a shared store is told what this server heard either way.
    pub fn pass_as(&self, store: &Store, judges: bool) -> Result<PassStats, ControlError> {
        let now = self.clock.now();
        let mut stats = PassStats::default();
        if self.shared {
            self.write_heard(store)?;
        }
        if !judges || now < self.started + self.timing.timeout {
            return Ok(stats);
        }
        if self.shared {
            self.read_heard(store)?;
        } else {
            self.load(store)?;
        }
        let due: Vec<(String, Verdict)> = self
            .agents()
            .iter()
            .map(|(arn, p)| (arn, judge(p, now, self.started, &self.timing)))
            .filter(|(_, v)| *v != Verdict::Nothing)
            .map(|(arn, v)| (arn.clone(), v))
            .collect();
        for (arn, verdict) in due {
            let done = match verdict {
                Verdict::Lose => self.lose(store, &arn, now).map(|lost| {
                    stats.lost += usize::from(lost);
                }),
                Verdict::StopTasks => self.stop_tasks(store, &arn, now).map(|n| {
                    stats.tasks_stopped += n;
                }),
                Verdict::Nothing => Ok(()),
            };
            // One instance's failure does not hold back the others; the
            // next pass tries it again.
            if let Err(e) = done {
                tracing::warn!(instance = %arn, error = %e, "liveness: writing a transition failed");
            }
        }
        Ok(stats)
    }

    /// Reads the stored presences once: agents of instances this server
    /// has not heard from yet are judged too (from its start).
    fn load(&self, store: &Store) -> Result<(), ControlError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if *loaded {
            return Ok(());
        }
        let stored = {
            let txn = store.begin()?;
            collect_pages(|p| txn.list::<AgentPresence>(p))?
        };
        let mut agents = self.agents();
        for p in stored {
            agents
                .entry(p.value.container_instance_arn)
                .or_insert(Presence {
                    heard: None,
                    lost_at: p.value.lost_at,
                    settled: false,
                });
        }
        *loaded = true;
        Ok(())
    }

    /// Writes `heard_at` of the agents this server heard from since it
    /// last wrote theirs, at most every third of the timeout each.
    fn write_heard(&self, store: &Store) -> Result<(), ControlError> {
        let every = self.timing.timeout / 3.0;
        let due: Vec<(String, f64)> = {
            let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            self.agents()
                .iter()
                .filter_map(|(arn, p)| {
                    let heard = p.heard?;
                    let last = written.get(arn).copied().unwrap_or(f64::MIN);
                    (heard - last >= every).then(|| (arn.clone(), heard))
                })
                .collect()
        };
        for chunk in due.chunks(store.records_per_txn().min(100)) {
            store.update(|txn| -> Result<(), ControlError> {
                for (arn, heard) in chunk {
                    let Some(mut p) = txn.get::<AgentPresence>(arn)?.map(|v| v.value) else {
                        continue; // its first message writes it
                    };
                    if p.lost_at.is_some() {
                        // Judged lost by another server, heard here since.
                        come_back(txn, arn, None)?;
                        p.lost_at = None;
                    } else if p.heard_at.is_some_and(|h| h >= *heard) {
                        continue;
                    }
                    p.heard_at = Some(p.heard_at.map_or(*heard, |h| h.max(*heard)));
                    txn.put(&p)?;
                }
                Ok(())
            })?;
            let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            written.extend(chunk.iter().cloned());
        }
        Ok(())
    }

    /// Merges what every server wrote of its agents (`heard_at`, and a
    /// return through another server) into what this one judges.
    fn read_heard(&self, store: &Store) -> Result<(), ControlError> {
        let stored = {
            let txn = store.begin()?;
            collect_pages(|p| txn.list::<AgentPresence>(p))?
        };
        let mut agents = self.agents();
        for p in stored {
            let p = p.value;
            let e = agents.entry(p.container_instance_arn).or_insert(Presence {
                heard: None,
                lost_at: p.lost_at,
                settled: false,
            });
            if let Some(h) = p.heard_at
                && e.heard.is_none_or(|x| x < h)
            {
                e.heard = Some(h);
            }
            if p.lost_at.is_none() && e.lost_at.is_some() {
                e.lost_at = None; // came back, through another server
                e.settled = false;
            }
        }
        Ok(())
    }

    /// Still due to be judged lost at `now` (not heard since the pass looked).
    fn still_silent(&self, arn: &str, now: f64) -> bool {
        self.agents().get(arn).is_some_and(|p| {
            p.lost_at.is_none() && now - p.heard.unwrap_or(self.started) >= self.timing.timeout
        })
    }

    /// Writes instance `arn` lost; true when this pass wrote it (false when
    /// it was heard meanwhile, or another server wrote it first).
    fn lose(&self, store: &Store, arn: &str, now: f64) -> Result<bool, ControlError> {
        let up = store.update(|txn| -> Result<Judged, ControlError> {
            if !self.still_silent(arn, now) {
                return Ok(Judged::Heard);
            }
            let Some(mut ci) = live_instance(txn, arn)? else {
                return Ok(Judged::Gone);
            };
            let mut presence = txn
                .get::<AgentPresence>(arn)?
                .map_or_else(|| AgentPresence::new(arn), |v| v.value);
            // Heard by another server meanwhile (a shared store).
            if presence
                .heard_at
                .is_some_and(|h| now - h < self.timing.timeout)
            {
                return Ok(Judged::Heard);
            }
            let mut wrote = false;
            // Judged lost already (by another server): that time stands.
            if presence.lost_at.is_none() {
                presence.lost_at = Some(now);
                txn.put(&presence)?;
                wrote = true;
            }
            if ci.agent_connected {
                ci.agent_connected = false;
                ci.version += 1;
                txn.put(&ci)?;
                wrote = true;
            }
            Ok(Judged::Lost {
                at: presence.lost_at.unwrap_or(now),
                wrote,
            })
        })?;
        let mut agents = self.agents();
        match up.value {
            // Gone, or deregistered: nothing to judge any more.
            Judged::Gone => {
                agents.remove(arn);
                Ok(false)
            }
            Judged::Heard => Ok(false),
            Judged::Lost { at, wrote } => {
                if let Some(p) = agents.get_mut(arn) {
                    p.lost_at = Some(at);
                }
                if wrote {
                    tracing::warn!(
                        instance = %arn,
                        timeout_secs = self.timing.timeout,
                        "agent not heard from within the timeout: instance disconnected"
                    );
                }
                Ok(wrote)
            }
        }
    }

    /// STOPs the tasks of lost instance `arn`; how many.
    fn stop_tasks(&self, store: &Store, arn: &str, now: f64) -> Result<usize, ControlError> {
        let up = store.update(|txn| -> Result<Option<usize>, ControlError> {
            // The store is the judge: an agent that came back (here or
            // through another server) keeps its tasks.
            let lost = txn
                .get::<AgentPresence>(arn)?
                .is_some_and(|p| p.value.lost_at.is_some());
            let heard_since = self
                .agents()
                .get(arn)
                .is_some_and(|p| matches!((p.heard, p.lost_at), (Some(h), Some(at)) if h >= at));
            if !lost || heard_since {
                return Ok(Some(0));
            }
            let Some(ci) = txn.get::<ContainerInstance>(arn)?.map(|v| v.value) else {
                return Ok(None);
            };
            let host = if ci.ec2_instance_id.is_empty() {
                berth_core::arn::last_segment(arn).to_owned()
            } else {
                ci.ec2_instance_id.clone()
            };
            let mut stopped = 0;
            for mut task in super::agents::tasks_of(txn, arn)? {
                if stop_lost_task(&mut task, &host, now) {
                    txn.put(&task)?;
                    stopped += 1;
                }
            }
            if stopped > 0 {
                let mut ci = recount(txn, ci)?;
                ci.version += 1;
                txn.put(&ci)?;
            }
            Ok(Some(stopped))
        })?;
        let mut agents = self.agents();
        match up.value {
            None => {
                agents.remove(arn);
                Ok(0)
            }
            Some(n) => {
                if let Some(p) = agents.get_mut(arn) {
                    p.settled = p.lost_at.is_some();
                }
                if n > 0 {
                    tracing::warn!(
                        instance = %arn,
                        tasks = n,
                        grace_secs = self.timing.grace,
                        "instance lost past its grace: its tasks are STOPPED"
                    );
                }
                Ok(n)
            }
        }
    }
}

/// What [`Liveness::lose`] found.
enum Judged {
    /// Heard from since the pass looked.
    Heard,
    /// The instance is gone or INACTIVE.
    Gone,
    /// Lost since `at`; `wrote`: by this transaction.
    Lost { at: f64, wrote: bool },
}

impl AgentPresence {
    fn new(arn: &str) -> Self {
        AgentPresence {
            container_instance_arn: arn.to_owned(),
            lost_at: None,
            heard_at: None,
        }
    }
}

/// The instance `arn` unless it is gone or INACTIVE (then its presence
/// record goes too: nothing is judged of it any more).
fn live_instance(txn: &mut Txn, arn: &str) -> Result<Option<ContainerInstance>, ControlError> {
    match txn.get::<ContainerInstance>(arn)? {
        Some(ci) if ci.value.status != InstanceStatus::Inactive => Ok(Some(ci.value)),
        _ => {
            txn.delete::<AgentPresence>(arn)?;
            Ok(None)
        }
    }
}

/// In `txn`: the agent of instance `arn` was heard from. Its presence is
/// recorded when it was not yet (so a restarted server judges it too), and
/// when it was judged lost, that is cleared and the instance written
/// connected again: `reported` when the message says whether the agent
/// reaches its runtime (heartbeat), else true (an agent that reads its
/// manifest or reports a task converges, which it does only while it
/// reaches its runtime; its next heartbeat says otherwise if need be).
/// True when it wrote anything.
pub(super) fn come_back(
    txn: &mut Txn,
    arn: &str,
    reported: Option<bool>,
) -> Result<bool, ControlError> {
    let presence = txn.get::<AgentPresence>(arn)?.map(|v| v.value);
    let was_lost = match presence {
        Some(p) if p.lost_at.is_none() => return Ok(false),
        Some(_) => true,
        None => false,
    };
    let Some(mut ci) = live_instance_or_none(txn, arn)? else {
        return Ok(false);
    };
    txn.put(&AgentPresence::new(arn))?;
    if was_lost {
        let connected = reported.unwrap_or(true);
        if ci.agent_connected != connected {
            ci.agent_connected = connected;
            ci.version += 1;
            txn.put(&ci)?;
        }
        tracing::info!(instance = %arn, "agent heard from again: instance connected");
    }
    Ok(true)
}

/// The instance `arn` unless it is gone or INACTIVE (nothing written).
fn live_instance_or_none(
    txn: &mut Txn,
    arn: &str,
) -> Result<Option<ContainerInstance>, ControlError> {
    Ok(txn
        .get::<ContainerInstance>(arn)?
        .map(|v| v.value)
        .filter(|ci| ci.status != InstanceStatus::Inactive))
}

/// Runs a liveness pass every [`TICK`] on a blocking thread until
/// `shutdown` resolves; a failed pass is logged and the next one comes.
/// Each pass that ends beats `beats` (for GET /health).
pub async fn run(
    liveness: Arc<Liveness>,
    store: Arc<Store>,
    beats: Arc<super::health::Beats>,
    owner: super::owner::Owner,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let (l, s) = (Arc::clone(&liveness), Arc::clone(&store));
        let judges = owner.owns(super::owner::LIVENESS);
        match tokio::task::spawn_blocking(move || l.pass_as(&s, judges)).await {
            Ok(Ok(_)) => beats.beat(super::health::LIVENESS_LOOP),
            Ok(Err(e)) => {
                beats.beat(super::health::LIVENESS_LOOP);
                tracing::warn!(error = %e, "liveness pass failed");
            }
            Err(e) => tracing::error!(error = %e, "liveness pass panicked"),
        }
    }
}

#[cfg(test)]
mod tests;
