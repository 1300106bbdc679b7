//! What `GET /health` reports, for load balancers and systemd: the store
//! takes a write (a real one, at most once a second), this process's
//! agents are heard from, and the scheduler loops finish passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use berth_store::{CommitError, Record, Store};
use serde::{Deserialize, Serialize};

use super::liveness::Liveness;

/// The liveness loop's name among the beats.
pub const LIVENESS_LOOP: &str = "the liveness pass";
/// The loops a server runs, by the names they beat with.
const LOOPS: [&str; 3] = [
    "the queue pass",
    "the service scheduler pass",
    LIVENESS_LOOP,
];
/// A loop not heard from for this long is reported dead (the slowest loop
/// ticks every 5 s; a pass may take a while on a large store).
const LOOP_DEADLINE: Duration = Duration::from_secs(60);
/// How long a write probe's outcome is reused.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// When each loop last finished a pass.
#[derive(Debug)]
pub struct Beats {
    started: Instant,
    last: Mutex<HashMap<&'static str, Instant>>,
}

impl Default for Beats {
    fn default() -> Self {
        Beats {
            started: Instant::now(),
            last: Mutex::default(),
        }
    }
}

impl Beats {
    /// The loop `name` finished a pass now.
    pub fn beat(&self, name: &'static str) {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, Instant::now());
    }

    fn since(&self, name: &str) -> Option<Duration> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(Instant::elapsed)
    }
}

/// The record the write probe rewrites.
#[derive(Debug, Serialize, Deserialize)]
struct HealthProbe {
    at: f64,
}

impl Record for HealthProbe {
    const TABLE: &'static str = "berth_health";
    fn key(&self) -> String {
        "probe".to_owned()
    }
}

/// The answer of `GET /health`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub healthy: bool,
    pub store: StoreHealth,
    pub agents: Vec<AgentHealth>,
    pub schedulers: Vec<LoopHealth>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreHealth {
    pub writable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentHealth {
    pub container_instance_arn: String,
    pub connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heard_seconds_ago: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoopHealth {
    pub name: &'static str,
    pub alive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pass_seconds_ago: Option<f64>,
}

/// What the health check looks at.
#[derive(Debug)]
pub struct Health {
    store: Arc<Store>,
    liveness: Arc<Liveness>,
    beats: Arc<Beats>,
    /// The container instances of this process's own agents (`berth up`).
    local_agents: Vec<String>,
    last_probe: Mutex<Option<(Instant, StoreHealth)>>,
}

impl Health {
    pub fn new(
        store: Arc<Store>,
        liveness: Arc<Liveness>,
        beats: Arc<Beats>,
        local_agents: Vec<String>,
    ) -> Self {
        Health {
            store,
            liveness,
            beats,
            local_agents,
            last_probe: Mutex::new(None),
        }
    }

    /// Checks everything now (blocks on the store's write).
    pub fn check(&self) -> Report {
        let store = self.probe();
        let agents: Vec<AgentHealth> = self
            .local_agents
            .iter()
            .map(|arn| {
                let heard = self.liveness.heard_ago(arn);
                AgentHealth {
                    container_instance_arn: arn.clone(),
                    connected: heard.is_some_and(|(ago, timeout)| ago <= timeout),
                    last_heard_seconds_ago: heard.map(|(ago, _)| ago),
                }
            })
            .collect();
        let schedulers: Vec<LoopHealth> = LOOPS
            .iter()
            .map(|&name| {
                let since = self.beats.since(name);
                // Before its first pass a loop counts from the server's start.
                let quiet = since.unwrap_or_else(|| self.beats.started.elapsed());
                LoopHealth {
                    name,
                    alive: quiet <= LOOP_DEADLINE,
                    last_pass_seconds_ago: since.map(|d| d.as_secs_f64()),
                }
            })
            .collect();
        Report {
            healthy: store.writable
                && agents.iter().all(|a| a.connected)
                && schedulers.iter().all(|l| l.alive),
            store,
            agents,
            schedulers,
        }
    }

    /// A real write, at most once every [`PROBE_EVERY`].
    fn probe(&self) -> StoreHealth {
        let mut last = self
            .last_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((at, h)) = last.as_ref()
            && at.elapsed() < PROBE_EVERY
        {
            return h.clone();
        }
        let written = self
            .store
            .begin()
            .map_err(CommitError::from)
            .and_then(|mut txn| {
                txn.put(&HealthProbe { at: super::now() })?;
                txn.commit()
            });
        let h = match written {
            // Another writer got there first: the store took a write.
            Ok(_) | Err(CommitError::Conflict { .. }) => StoreHealth {
                writable: true,
                error: None,
            },
            Err(e) => StoreHealth {
                writable: false,
                error: Some(format!("the store cannot write: {e}")),
            },
        };
        *last = Some((Instant::now(), h.clone()));
        h
    }
}
