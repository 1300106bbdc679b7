//! What the registry keeps of each policy beyond one process's counters:
//! the totals in the store (`policy_stats`), so decisions, failures and
//! latency survive a restart, and the last failures with their reasons,
//! so `berth policy show` says why a policy failed without the server's log.
//!
//! The live counters ([`crate::PolicyStats`]) count from the moment this
//! process loaded the policy; the total is what the store held then plus
//! what was counted since. Decisions never write the store: the server
//! calls [`crate::Registry::flush_stats`] every few seconds and at shutdown.
//! Several servers over one store each add what they counted since their
//! last write to what the store holds ([`merge`]), in a CAS transaction,
//! so no server's counts overwrite another's.

use std::collections::{BTreeMap, VecDeque};

use berth_store::Record;
use serde::{Deserialize, Serialize};

use crate::error::{DecisionError, FailureKind};
use crate::session::StatsSnapshot;

/// How many of a policy's failures `show` lists.
pub const RECENT_FAILURES: usize = 10;
/// A failure's message is cut here: a policy chooses what it panics with.
const MESSAGE_LIMIT: usize = 1024;

/// One failed decision, as `berth policy show` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// What went wrong.
    pub kind: FailureKind,
    /// The reason (trap message, the rejected answer, ...).
    pub message: String,
    /// When, in epoch seconds.
    pub at: f64,
    /// The first task the decision was for, when one was minted.
    pub task: Option<String>,
}

impl FailureRecord {
    /// A record of `e` now.
    pub fn new(e: &DecisionError, task: Option<&str>) -> FailureRecord {
        let mut message = e.reason.clone();
        if message.len() > MESSAGE_LIMIT {
            let mut cut = MESSAGE_LIMIT;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64 / 1000.0);
        FailureRecord {
            kind: e.kind,
            message,
            at,
            task: task.map(str::to_owned),
        }
    }
}

/// A policy's totals as stored, keyed by its sha256.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatsRecord {
    /// The policy.
    pub sha256: String,
    /// Decisions asked of it.
    pub decisions: u64,
    /// Failed decisions by kind (`trap`, `deadline`, ...).
    pub failures: BTreeMap<String, u64>,
    /// Instances created.
    pub instances_created: u64,
    /// Log lines dropped over the rate limit.
    pub logs_dropped: u64,
    /// The latest latency percentiles, microseconds: p50, p90, p99, max.
    pub latency_us: [f64; 4],
    /// The last failures, oldest first.
    pub recent_failures: Vec<FailureRecord>,
}

impl Record for PolicyStatsRecord {
    const TABLE: &'static str = "policy_stats";
    fn key(&self) -> String {
        self.sha256.clone()
    }
}

/// The counters that add up.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counters {
    decisions: u64,
    failures: [u64; FailureKind::ALL.len()],
    instances_created: u64,
    logs_dropped: u64,
}

impl Counters {
    fn of_live(s: &StatsSnapshot) -> Counters {
        let mut failures = [0; FailureKind::ALL.len()];
        for (k, n) in &s.failures {
            failures[*k as usize] = *n;
        }
        Counters {
            decisions: s.decisions,
            failures,
            instances_created: s.instances_created,
            logs_dropped: s.logs_dropped,
        }
    }

    fn of_record(r: &PolicyStatsRecord) -> Counters {
        let mut failures = [0; FailureKind::ALL.len()];
        for k in FailureKind::ALL {
            failures[k as usize] = r.failures.get(k.as_str()).copied().unwrap_or(0);
        }
        Counters {
            decisions: r.decisions,
            failures,
            instances_created: r.instances_created,
            logs_dropped: r.logs_dropped,
        }
    }
}

/// What the registry keeps of one loaded policy.
#[derive(Debug)]
pub(crate) struct Kept {
    /// The totals before `zero` (from the store, or nothing after a reset).
    base: Counters,
    /// The live counters when `base` was taken.
    zero: Counters,
    /// The stored latency, shown until this process has measured some.
    latency_us: [f64; 4],
    recent: VecDeque<FailureRecord>,
    /// What the store holds, as far as this process wrote or read it.
    written: Option<PolicyStatsRecord>,
}

impl Kept {
    /// From the stored record (if any) and the live counters now.
    pub(crate) fn new(stored: Option<PolicyStatsRecord>, live: &StatsSnapshot) -> Kept {
        let base = stored.as_ref().map(Counters::of_record).unwrap_or_default();
        Kept {
            base,
            zero: Counters::of_live(live),
            latency_us: stored.as_ref().map_or([0.0; 4], |r| r.latency_us),
            recent: stored
                .as_ref()
                .map(|r| r.recent_failures.iter().cloned().collect())
                .unwrap_or_default(),
            written: stored,
        }
    }

    /// The totals: what was stored plus what this process counted since.
    pub(crate) fn total(&self, live: &StatsSnapshot) -> StatsSnapshot {
        let now = Counters::of_live(live);
        let add = |base: u64, now: u64, zero: u64| base + now.saturating_sub(zero);
        let measured = now.decisions > self.zero.decisions;
        StatsSnapshot {
            decisions: add(self.base.decisions, now.decisions, self.zero.decisions),
            failures: FailureKind::ALL
                .iter()
                .map(|&k| {
                    let i = k as usize;
                    (
                        k,
                        add(
                            self.base.failures[i],
                            now.failures[i],
                            self.zero.failures[i],
                        ),
                    )
                })
                .collect(),
            instances_created: add(
                self.base.instances_created,
                now.instances_created,
                self.zero.instances_created,
            ),
            logs_dropped: add(
                self.base.logs_dropped,
                now.logs_dropped,
                self.zero.logs_dropped,
            ),
            latency_us: if measured {
                live.latency_us
            } else {
                self.latency_us
            },
        }
    }

    /// The last failures, oldest first.
    pub(crate) fn recent(&self) -> Vec<FailureRecord> {
        self.recent.iter().cloned().collect()
    }

    pub(crate) fn push_failure(&mut self, f: FailureRecord) {
        if self.recent.len() == RECENT_FAILURES {
            self.recent.pop_front();
        }
        self.recent.push_back(f);
    }

    /// The record the store should hold now.
    pub(crate) fn record(&self, sha256: &str, live: &StatsSnapshot) -> PolicyStatsRecord {
        let t = self.total(live);
        PolicyStatsRecord {
            sha256: sha256.to_owned(),
            decisions: t.decisions,
            failures: t
                .failures
                .iter()
                .map(|(k, n)| (k.as_str().to_owned(), *n))
                .collect(),
            instances_created: t.instances_created,
            logs_dropped: t.logs_dropped,
            latency_us: t.latency_us,
            recent_failures: self.recent(),
        }
    }

    /// Whether the store holds something else than `rec`.
    pub(crate) fn stale(&self, rec: &PolicyStatsRecord) -> bool {
        self.written.as_ref() != Some(rec)
    }

    pub(crate) fn written(&mut self, rec: PolicyStatsRecord) {
        self.written = Some(rec);
    }

    /// What the store holds now is `rec` (merged with this process's
    /// counts): the totals go on from it.
    pub(crate) fn rebase(&mut self, rec: PolicyStatsRecord, live: &StatsSnapshot) {
        self.base = Counters::of_record(&rec);
        self.zero = Counters::of_live(live);
        self.latency_us = rec.latency_us;
        self.recent = rec.recent_failures.iter().cloned().collect();
        self.written = Some(rec);
    }

    /// What this process last wrote (or read) of the policy.
    pub(crate) fn last_written(&self) -> Option<&PolicyStatsRecord> {
        self.written.as_ref()
    }

    /// Counting starts again from nothing.
    pub(crate) fn reset(&mut self, live: &StatsSnapshot) {
        self.base = Counters::default();
        self.zero = Counters::of_live(live);
        self.latency_us = [0.0; 4];
        self.recent.clear();
    }
}

/// The record to store: what the store holds now (`current`, perhaps
/// written by another server meanwhile) plus what this process counted
/// since it last wrote (`mine` less `written`); the latest latency, and the
/// newest failures of both.
pub(crate) fn merge(
    current: Option<&PolicyStatsRecord>,
    written: Option<&PolicyStatsRecord>,
    mine: &PolicyStatsRecord,
) -> PolicyStatsRecord {
    let zero = PolicyStatsRecord::default();
    let (cur, old) = (current.unwrap_or(&zero), written.unwrap_or(&zero));
    let add = |c: u64, m: u64, o: u64| c + m.saturating_sub(o);
    let mut failures = cur.failures.clone();
    for (k, m) in &mine.failures {
        let o = old.failures.get(k).copied().unwrap_or(0);
        *failures.entry(k.clone()).or_insert(0) += m.saturating_sub(o);
    }
    let mut recent: Vec<FailureRecord> = cur.recent_failures.clone();
    for f in &mine.recent_failures {
        if !old.recent_failures.contains(f) && !recent.contains(f) {
            recent.push(f.clone());
        }
    }
    recent.sort_by(|a, b| a.at.total_cmp(&b.at));
    let skip = recent.len().saturating_sub(RECENT_FAILURES);
    PolicyStatsRecord {
        sha256: mine.sha256.clone(),
        decisions: add(cur.decisions, mine.decisions, old.decisions),
        failures,
        instances_created: add(
            cur.instances_created,
            mine.instances_created,
            old.instances_created,
        ),
        logs_dropped: add(cur.logs_dropped, mine.logs_dropped, old.logs_dropped),
        latency_us: mine.latency_us,
        recent_failures: recent.into_iter().skip(skip).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(decisions: u64, traps: u64) -> StatsSnapshot {
        StatsSnapshot {
            decisions,
            failures: FailureKind::ALL
                .iter()
                .map(|&k| (k, if k == FailureKind::Trap { traps } else { 0 }))
                .collect(),
            instances_created: 1,
            logs_dropped: 0,
            latency_us: [1.0, 2.0, 3.0, 4.0],
        }
    }

    #[test]
    fn totals_add_the_stored_counts_to_what_was_counted_since_the_load() {
        let stored = PolicyStatsRecord {
            sha256: "s".into(),
            decisions: 100,
            failures: [("trap".to_owned(), 7)].into(),
            latency_us: [9.0; 4],
            ..PolicyStatsRecord::default()
        };
        let mut k = Kept::new(Some(stored), &live(0, 0));
        // Nothing measured yet: the stored latency stands.
        assert_eq!(k.total(&live(0, 0)).latency_us, [9.0; 4]);
        let t = k.total(&live(5, 1));
        assert_eq!(t.decisions, 105);
        assert_eq!(t.failures[FailureKind::Trap as usize].1, 8);
        assert_eq!(t.latency_us, [1.0, 2.0, 3.0, 4.0]);
        k.reset(&live(5, 1));
        assert_eq!(k.total(&live(6, 1)).decisions, 1);
        assert_eq!(k.record("s", &live(5, 1)).failures["trap"], 0);
    }

    #[test]
    fn the_failure_ring_keeps_the_last_ten() {
        let mut k = Kept::new(None, &live(0, 0));
        let e = DecisionError {
            policy: "s".into(),
            kind: FailureKind::Trap,
            reason: "x".repeat(5000),
        };
        for i in 0..15 {
            k.push_failure(FailureRecord::new(&e, Some(&format!("task-{i}"))));
        }
        let r = k.recent();
        assert_eq!(r.len(), RECENT_FAILURES);
        assert_eq!(r[0].task.as_deref(), Some("task-5"));
        assert!(r[0].message.len() <= MESSAGE_LIMIT + 3);
    }

    #[test]
    fn two_servers_add_their_counts_rather_than_overwrite_them() {
        // Server a loaded nothing and counted 5 decisions, 1 trap; it wrote.
        let mut a = Kept::new(None, &live(0, 0));
        let a_rec = a.record("s", &live(5, 1));
        let stored = merge(None, a.last_written(), &a_rec);
        a.rebase(stored.clone(), &live(5, 1));
        assert_eq!((stored.decisions, stored.failures["trap"]), (5, 1));
        // Server b loaded nothing either, counted 3 and 0; the store has a's.
        let b = Kept::new(None, &live(0, 0));
        let b_rec = b.record("s", &live(3, 0));
        let stored = merge(Some(&stored), b.last_written(), &b_rec);
        assert_eq!((stored.decisions, stored.failures["trap"]), (8, 1));
        // a counts 2 more: only those are added to what b left.
        let a_rec = a.record("s", &live(7, 1));
        assert_eq!(a_rec.decisions, 7);
        let stored = merge(Some(&stored), a.last_written(), &a_rec);
        assert_eq!(stored.decisions, 10);
    }
}
