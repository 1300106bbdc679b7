//! The discrete-event loop: tasks arrive, are placed through the policy
//! under test (berth's native engine or a policy component through berth's
//! policy host, its answers checked by `place_on` as on a server), run for
//! their duration in virtual time and leave; instances join, drain and are
//! lost. Nothing sleeps: time jumps from one event to the next.
//!
//! Order within one virtual millisecond: task ends, then cluster events,
//! then the queue of waiting tasks (when something freed), then arrivals.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use berth_core::model::{PlacementStrategy, Protocol};
use berth_core::placement::{ClusterState, Placement, PlacementRequest, Placer};
use berth_policy::{Fallback, LoadedPolicy, PolicyHost, PolicySession};

use crate::cluster::{Built, ClusterSpec, EventKind};
use crate::workload::{FOREVER, Workload};

/// Samples of the cluster taken over the run, evenly spaced.
pub const SAMPLES: u64 = 200;

/// Waiting tasks tried after resources free, oldest first, stop after this
/// many still do not fit (a backfill window: one large task at the head
/// does not keep every small one behind it waiting).
pub const RETRY_WINDOW: usize = 8;

/// What places the tasks.
#[derive(Clone)]
pub enum PolicyChoice {
    /// berth's native engine; `strategy` replaces each task's own (None:
    /// the task's own, or the default chain when it has none).
    Native {
        label: String,
        strategy: Option<Vec<PlacementStrategy>>,
    },
    /// A policy component through berth's policy host, with the fallback
    /// for its failed decisions (the native engine on the task's strategy).
    Wasm {
        label: String,
        host: Arc<PolicyHost>,
        policy: Arc<LoadedPolicy>,
        fallback: Fallback,
    },
}

impl std::fmt::Debug for PolicyChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl PolicyChoice {
    pub fn label(&self) -> &str {
        match self {
            PolicyChoice::Native { label, .. } | PolicyChoice::Wasm { label, .. } => label,
        }
    }
}

/// One sample of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub time_ms: u64,
    /// Reserved over the capacity of the instances up (0..1).
    pub cpu: f64,
    pub memory: f64,
    /// CPU free on instances whose free memory fits no task, over capacity;
    /// and the reverse.
    pub stranded_cpu: f64,
    pub stranded_memory: f64,
    /// (most - fewest) / mean running tasks over the zones; None with
    /// fewer than two zones or no task running.
    pub zone_imbalance: Option<f64>,
    pub pending: u64,
    /// Instances up holding at least one task.
    pub busy_instances: u64,
}

/// What one run counted; `report.rs` makes figures of it.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub decisions: u64,
    /// Placements made (a task lost with its host and placed again counts twice).
    pub placed: u64,
    /// Tasks that could not be placed when they arrived.
    pub waited: u64,
    pub unplaced_at_end: u64,
    /// Per placement, how long the task waited (0: placed on arrival).
    pub wait_ms: Vec<u64>,
    /// Why tasks could not be placed on arrival, by ECS reason.
    pub first_failures: BTreeMap<String, u64>,
    /// Failed policy decisions by kind (`trap`, `deadline`...).
    pub policy_failures: BTreeMap<String, u64>,
    /// The first failed policy decision's reason.
    pub policy_failure_example: Option<String>,
    /// Decisions the fallback made after the policy failed.
    pub fallback_decisions: u64,
    /// Tasks stopped because their instance was lost.
    pub lost_tasks: u64,
    pub samples: Vec<Sample>,
    /// Wall-clock time of each decision (not deterministic).
    pub latency_ns: Vec<u64>,
    /// No task had to wait and none was left unplaced (compaction's test);
    /// with `stop_at_first_wait` the run ends at the first that waits.
    pub fit: bool,
    /// Virtual time of the last event.
    pub end_ms: u64,
}

/// How a run goes.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub seed: u64,
    /// Ends the run at the first task that cannot be placed on arrival.
    pub stop_at_first_wait: bool,
}

struct Running {
    task: u32,
    instance: u32,
    dynamic_ports: Vec<u16>,
    /// Its instance was lost: its end event frees nothing.
    killed: bool,
    /// The slot is on the free list.
    free: bool,
}

#[derive(Clone, Copy)]
struct Waiting {
    task: u32,
    since_ms: u64,
}

enum Decider {
    Native(Placer),
    Wasm {
        session: Box<PolicySession>,
        placer: Placer,
        fallback: Fallback,
    },
}

/// Event order within a millisecond.
const END: u8 = 0;
const CLUSTER: u8 = 1;

struct Sim<'a> {
    w: &'a Workload,
    spec: &'a ClusterSpec,
    built: Built,
    reqs: Vec<PlacementRequest>,
    decider: Decider,
    running: Vec<Running>,
    free_slots: Vec<u32>,
    heap: BinaryHeap<Reverse<(u64, u8, u64)>>,
    pending: VecDeque<Waiting>,
    /// Per instance: not lost.
    up: Vec<bool>,
    cap: (u64, u64),
    used: (u64, u64),
    zone_tasks: Vec<i64>,
    /// The smallest CPU and memory any task asks (what strands resources).
    min_demand: (u32, u32),
    res: RunResult,
    opts: RunOptions,
}

/// Runs `w` on `spec` through `policy`.
pub fn run(
    w: &Workload,
    spec: &ClusterSpec,
    policy: &PolicyChoice,
    opts: RunOptions,
) -> Result<RunResult, String> {
    let strategy = match policy {
        PolicyChoice::Native { strategy, .. } => strategy.as_deref(),
        PolicyChoice::Wasm { .. } => None,
    };
    let reqs = w
        .kinds
        .iter()
        .map(|k| k.request(strategy))
        .collect::<Result<Vec<_>, _>>()?;
    let decider = match policy {
        PolicyChoice::Native { .. } => Decider::Native(Placer::new(opts.seed)),
        PolicyChoice::Wasm {
            host,
            policy,
            fallback,
            ..
        } => Decider::Wasm {
            session: Box::new(PolicySession::new(host.clone(), policy.clone())),
            placer: Placer::new(opts.seed),
            fallback: *fallback,
        },
    };
    let built = Built::new(spec);
    let n = built.state.len();
    let cap = (0..n).fold((0u64, 0u64), |(c, m), i| {
        let s = &built.state.instance(i).spec;
        (c + u64::from(s.cpu), m + u64::from(s.memory))
    });
    let min_demand = w.kinds.iter().fold((u32::MAX, u32::MAX), |(c, m), k| {
        (c.min(k.spec.cpu), m.min(k.spec.memory))
    });
    let mut sim = Sim {
        w,
        spec,
        built,
        reqs,
        decider,
        running: Vec::new(),
        free_slots: Vec::new(),
        heap: BinaryHeap::new(),
        pending: VecDeque::new(),
        up: vec![true; n],
        cap,
        used: (0, 0),
        zone_tasks: vec![0; spec.zones().len()],
        min_demand,
        res: RunResult {
            fit: true,
            ..RunResult::default()
        },
        opts,
    };
    for (k, e) in spec.events.iter().enumerate() {
        sim.heap.push(Reverse((e.time_ms, CLUSTER, k as u64)));
    }
    sim.run();
    Ok(sim.res)
}

impl Sim<'_> {
    /// The sampled span: while tasks arrive and the cluster changes (a
    /// heavy tail of durations would otherwise fill the samples with an
    /// emptying cluster long after the workload stopped).
    fn horizon(&self) -> u64 {
        let last = self.w.tasks.last().map_or(0, |t| t.arrival_ms);
        let events = self.spec.events.iter().map(|e| e.time_ms);
        events.fold(last, u64::max)
    }

    fn run(&mut self) {
        let horizon = self.horizon();
        let step = (horizon / SAMPLES).max(1);
        let mut next_sample = 0u64;
        let mut next_task = 0usize;
        loop {
            let arrival = self.w.tasks.get(next_task).map(|t| t.arrival_ms);
            let event = self.heap.peek().map(|Reverse((t, _, _))| *t);
            let now = match (arrival, event) {
                (None, None) => break,
                (Some(a), None) => a,
                (None, Some(e)) => e,
                (Some(a), Some(e)) => a.min(e),
            };
            // The cluster is as it stands on [last event, now).
            while next_sample < now && next_sample <= horizon {
                self.sample(next_sample);
                next_sample += step;
            }
            let mut freed = false;
            while let Some(&Reverse((t, order, payload))) = self.heap.peek() {
                if t != now {
                    break;
                }
                self.heap.pop();
                freed |= match order {
                    END => self.end(payload as usize),
                    _ => self.cluster_event(payload as usize, now),
                };
            }
            if freed && !self.pending.is_empty() {
                self.retry(now);
            }
            while let Some(t) = self.w.tasks.get(next_task) {
                if t.arrival_ms != now {
                    break;
                }
                let task = next_task as u32;
                next_task += 1;
                if let Err(reason) = self.try_place(task, now, now) {
                    *self.res.first_failures.entry(reason).or_default() += 1;
                    self.res.waited += 1;
                    self.res.fit = false;
                    if self.opts.stop_at_first_wait {
                        return;
                    }
                    self.pending.push_back(Waiting {
                        task,
                        since_ms: now,
                    });
                }
            }
            self.res.end_ms = now;
        }
        if next_sample <= horizon {
            self.sample(next_sample);
        }
        self.res.unplaced_at_end = self.pending.len() as u64;
        if self.res.unplaced_at_end > 0 {
            self.res.fit = false;
        }
    }

    /// Tries the oldest waiting tasks (see [`RETRY_WINDOW`]).
    fn retry(&mut self, now: u64) {
        let mut still = Vec::new();
        while still.len() < RETRY_WINDOW {
            let Some(wt) = self.pending.pop_front() else {
                break;
            };
            if self.try_place(wt.task, now, wt.since_ms).is_err() {
                still.push(wt);
            }
        }
        for wt in still.into_iter().rev() {
            self.pending.push_front(wt);
        }
    }

    /// One decision for `task`; placed, it runs from `now`.
    fn try_place(&mut self, task: u32, now: u64, since: u64) -> Result<(), String> {
        let t = self.w.tasks[task as usize];
        let k = t.kind as usize;
        let started = Instant::now();
        let placed = self.decide(k);
        self.res
            .latency_ns
            .push(started.elapsed().as_nanos() as u64);
        self.res.decisions += 1;
        let p = placed?;
        let spec = &self.reqs[k].task;
        let i = p.instance;
        self.used.0 += u64::from(spec.cpu);
        self.used.1 += u64::from(spec.memory);
        if let Some(z) = self.zone_tasks.get_mut(self.built.zone[i] as usize) {
            *z += 1;
        }
        self.res.placed += 1;
        self.res.wait_ms.push(now - since);
        let run = Running {
            task,
            instance: i as u32,
            dynamic_ports: p.dynamic_host_ports,
            killed: false,
            free: false,
        };
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.running[s as usize] = run;
                s
            }
            None => {
                self.running.push(run);
                (self.running.len() - 1) as u32
            }
        };
        if t.duration_ms != FOREVER {
            self.heap.push(Reverse((
                now.saturating_add(t.duration_ms),
                END,
                u64::from(slot),
            )));
        }
        Ok(())
    }

    /// Where a task of kind `k` goes, through the policy under test.
    fn decide(&mut self, k: usize) -> Result<Placement, String> {
        let req = &self.reqs[k];
        let state = &mut self.built.state;
        match &mut self.decider {
            Decider::Native(placer) => native(placer, state, req),
            Decider::Wasm {
                session,
                placer,
                fallback,
            } => match session.place(state, req, 1) {
                Ok(mut answers) => match answers.pop() {
                    Some(Ok(p)) => Ok(p),
                    _ => Err("POLICY".to_owned()),
                },
                Err(e) => {
                    *self
                        .res
                        .policy_failures
                        .entry(e.kind.as_str().to_owned())
                        .or_default() += 1;
                    self.res
                        .policy_failure_example
                        .get_or_insert_with(|| e.to_string());
                    self.res.fallback_decisions += 1;
                    match fallback {
                        Fallback::Native => {
                            let r = native(placer, state, req);
                            if let Ok(p) = &r {
                                session.usage_changed(p.instance);
                            }
                            r
                        }
                        Fallback::Pending => Err("POLICY".to_owned()),
                    }
                }
            },
        }
    }

    /// A task's end; true when it freed resources.
    fn end(&mut self, slot: usize) -> bool {
        self.free_slots.push(slot as u32);
        self.running[slot].free = true;
        if self.running[slot].killed {
            return false;
        }
        self.release(slot);
        true
    }

    /// Takes a running task's hold off its instance.
    fn release(&mut self, slot: usize) {
        let r = &self.running[slot];
        let i = r.instance as usize;
        let req = &self.reqs[self.w.tasks[r.task as usize].kind as usize];
        let ports = host_ports(req, &r.dynamic_ports);
        self.built.state.remove_task(i, &req.task, &ports);
        self.used.0 -= u64::from(req.task.cpu);
        self.used.1 -= u64::from(req.task.memory);
        if let Some(z) = self.zone_tasks.get_mut(self.built.zone[i] as usize) {
            *z -= 1;
        }
        if let Decider::Wasm { session, .. } = &mut self.decider {
            session.usage_changed(i);
        }
    }

    /// A join, drain or loss; true when it may let waiting tasks in.
    fn cluster_event(&mut self, k: usize, now: u64) -> bool {
        let e = self.spec.events[k];
        let of_shape: Vec<usize> = (0..self.built.state.len())
            .filter(|&i| self.built.shape[i] as usize == e.shape && self.up[i])
            .collect();
        match e.kind {
            EventKind::Join => {
                for _ in 0..e.count {
                    let i = self.built.add(self.spec, e.shape);
                    self.up.push(true);
                    let s = &self.built.state.instance(i).spec;
                    self.cap.0 += u64::from(s.cpu);
                    self.cap.1 += u64::from(s.memory);
                }
                true
            }
            EventKind::Drain => {
                let active = of_shape
                    .into_iter()
                    .filter(|&i| self.built.state.instance(i).spec.active);
                for i in active.take(e.count as usize).collect::<Vec<_>>() {
                    self.set_status(i, false, true);
                }
                false
            }
            EventKind::Lose => {
                let lost: Vec<usize> = of_shape.into_iter().take(e.count as usize).collect();
                for &i in &lost {
                    self.up[i] = false;
                    let s = &self.built.state.instance(i).spec;
                    self.cap.0 -= u64::from(s.cpu);
                    self.cap.1 -= u64::from(s.memory);
                    self.set_status(i, false, false);
                }
                for slot in 0..self.running.len() {
                    let r = &self.running[slot];
                    if r.killed || r.free || !self.lost_flag(r.instance) {
                        continue;
                    }
                    let task = r.task;
                    self.release(slot);
                    self.running[slot].killed = true;
                    if self.w.tasks[task as usize].duration_ms == FOREVER {
                        self.running[slot].free = true;
                        self.free_slots.push(slot as u32);
                    }
                    self.res.lost_tasks += 1;
                    self.pending.push_back(Waiting {
                        task,
                        since_ms: now,
                    });
                }
                !lost.is_empty()
            }
        }
    }

    /// Whether instance `i` is lost (the loop above marks them first).
    fn lost_flag(&self, i: u32) -> bool {
        !self.up[i as usize]
    }

    fn set_status(&mut self, i: usize, active: bool, connected: bool) {
        let attrs = self.built.state.instance(i).spec.attributes.clone();
        self.built
            .state
            .update_instance(i, active, connected, attrs);
        if let Decider::Wasm { session, .. } = &mut self.decider {
            session.instance_changed(i);
        }
    }

    fn sample(&mut self, time_ms: u64) {
        let st = &self.built.state;
        let (mut s_cpu, mut s_mem, mut busy) = (0u64, 0u64, 0u64);
        for i in 0..st.len() {
            if !self.up[i] {
                continue;
            }
            busy += u64::from(st.instance(i).running_tasks > 0);
            let (c, m) = (st.cpu_free(i), st.mem_free(i));
            if m < self.min_demand.1 {
                s_cpu += u64::from(c);
            }
            if c < self.min_demand.0 {
                s_mem += u64::from(m);
            }
        }
        let frac = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let zone_imbalance = if self.zone_tasks.len() < 2 {
            None
        } else {
            let total: i64 = self.zone_tasks.iter().sum();
            let most = self.zone_tasks.iter().copied().max().unwrap_or(0);
            let fewest = self.zone_tasks.iter().copied().min().unwrap_or(0);
            (total > 0)
                .then(|| (most - fewest) as f64 / (total as f64 / self.zone_tasks.len() as f64))
        };
        self.res.samples.push(Sample {
            time_ms,
            cpu: frac(self.used.0, self.cap.0),
            memory: frac(self.used.1, self.cap.1),
            stranded_cpu: frac(s_cpu, self.cap.0),
            stranded_memory: frac(s_mem, self.cap.1),
            zone_imbalance,
            pending: self.pending.len() as u64,
            busy_instances: busy,
        });
    }
}

/// The native engine's decision for one task, or its ECS reason.
fn native(
    placer: &mut Placer,
    state: &mut ClusterState,
    req: &PlacementRequest,
) -> Result<Placement, String> {
    placer
        .place(state, req, 1)
        .pop()
        .unwrap_or_else(|| Err(no_answer()))
        .map_err(|f| f.reason.reason().to_owned())
}

fn no_answer() -> berth_core::placement::PlacementFailure {
    berth_core::placement::PlacementFailure {
        reason: berth_core::placement::Check::Agent,
        eliminated: [0; 5],
        instances: 0,
    }
}

/// The host ports a task of `req` holds with these dynamic ports.
fn host_ports(req: &PlacementRequest, dynamic: &[u16]) -> Vec<(u16, Protocol)> {
    req.task
        .static_ports
        .iter()
        .copied()
        .chain(
            dynamic
                .iter()
                .copied()
                .zip(req.task.dynamic_ports.iter().copied()),
        )
        .collect()
}
