//! Many threads doing compare-and-swap read-modify-write on shared records: no lost updates, a
//! budget that is never over-committed, and every conflict reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_store::{Index, PageRequest, Record, StoreError, UpdateError};
use serde::{Deserialize, Serialize};

const THREADS: usize = 8;
const TXNS_PER_THREAD: usize = 40;
const COUNTERS: usize = 3;
const BUDGET: i64 = 100;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Counter {
    name: String,
    value: u64,
}

impl Record for Counter {
    const TABLE: &'static str = "counters";
    fn key(&self) -> String {
        self.name.clone()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Budget {
    remaining: i64,
}

impl Record for Budget {
    const TABLE: &'static str = "budget";
    fn key(&self) -> String {
        "cpu".into()
    }
}

/// One unit taken from the budget, by one transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reservation {
    id: String,
    thread: usize,
}

impl Record for Reservation {
    const TABLE: &'static str = "reservations";
    fn key(&self) -> String {
        self.id.clone()
    }
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        vec![("thread", self.thread.to_string())]
    }
}

#[derive(Default)]
struct Tally {
    attempts: AtomicU64,
    commits: AtomicU64,
    conflicts: AtomicU64,
    reserved: AtomicU64,
    per_counter: [AtomicU64; COUNTERS],
}

#[test]
fn cas_counters_and_budget_under_contention() -> anyhow::Result<()> {
    let Some((_fixture, store)) = crate::harness::open()? else {
        return Ok(());
    };
    let mut txn = store.begin()?;
    for i in 0..COUNTERS {
        txn.put(&Counter {
            name: format!("c{i}"),
            value: 0,
        })?;
    }
    txn.put(&Budget { remaining: BUDGET })?;
    txn.commit()?;

    let tally = Arc::new(Tally::default());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let tally = Arc::clone(&tally);
            std::thread::spawn(move || -> Result<(), UpdateError<StoreError>> {
                for n in 0..TXNS_PER_THREAD {
                    let counter = format!("c{}", (t + n) % COUNTERS);
                    // Large bound: the test is about correctness under contention, not giving up.
                    let out = store.update_with_attempts(10_000, |txn| {
                        tally.attempts.fetch_add(1, Ordering::Relaxed);
                        let mut c = txn
                            .get::<Counter>(&counter)?
                            .ok_or_else(|| StoreError::Backend("counter missing".into()))?
                            .value;
                        c.value += 1;
                        txn.put(&c)?;
                        let mut b = txn
                            .get::<Budget>("cpu")?
                            .ok_or_else(|| StoreError::Backend("budget missing".into()))?
                            .value;
                        if b.remaining > 0 {
                            b.remaining -= 1;
                            txn.put(&b)?;
                            txn.put(&Reservation {
                                id: format!("r-{t}-{n}"),
                                thread: t,
                            })?;
                            return Ok(true);
                        }
                        Ok(false)
                    })?;
                    tally.commits.fetch_add(1, Ordering::Relaxed);
                    tally
                        .conflicts
                        .fetch_add(u64::from(out.conflicts), Ordering::Relaxed);
                    tally
                        .reserved
                        .fetch_add(u64::from(out.value), Ordering::Relaxed);
                    tally.per_counter[(t + n) % COUNTERS].fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        match h.join() {
            Ok(r) => r?,
            Err(_) => anyhow::bail!("worker panicked"),
        }
    }

    let attempts = tally.attempts.load(Ordering::Relaxed);
    let commits = tally.commits.load(Ordering::Relaxed);
    let conflicts = tally.conflicts.load(Ordering::Relaxed);
    let reserved = tally.reserved.load(Ordering::Relaxed);
    eprintln!(
        "{THREADS} threads: {commits} commits, {conflicts} conflicts retried ({:.0}% of attempts), {reserved} reservations",
        100.0 * conflicts as f64 / attempts as f64
    );
    assert_eq!(commits, (THREADS * TXNS_PER_THREAD) as u64);
    // Every attempt either committed or was reported as a conflict: none silently lost.
    assert_eq!(attempts, commits + conflicts);

    let mut txn = store.begin()?;
    let mut total = 0;
    for i in 0..COUNTERS {
        let c = txn.get::<Counter>(&format!("c{i}"))?.expect("counter");
        let want = tally.per_counter[i].load(Ordering::Relaxed);
        assert_eq!(c.value.value, want, "counter c{i} lost updates");
        // Written once at setup plus once per increment.
        assert_eq!(c.version, want + 1);
        total += c.value.value;
    }
    assert_eq!(total, commits);

    let budget = txn.get::<Budget>("cpu")?.expect("budget").value;
    assert!(
        budget.remaining >= 0,
        "budget over-committed: {}",
        budget.remaining
    );
    assert_eq!(reserved as i64, BUDGET - budget.remaining);
    assert_eq!(reserved as i64, BUDGET.min(commits as i64));
    let stored = txn.list::<Reservation>(PageRequest::first(10_000))?;
    assert_eq!(stored.items.len() as u64, reserved);
    let mut by_thread = 0;
    for t in 0..THREADS {
        by_thread += txn
            .by_index(
                Index::<Reservation>::new("thread"),
                &t.to_string(),
                PageRequest::first(10_000),
            )?
            .items
            .len();
    }
    assert_eq!(by_thread as u64, reserved);
    assert!(store.verify_indexes()?.is_empty());
    Ok(())
}
