//! Crash test: a writer process is SIGKILLed at random moments; after every kill the store must
//! hold every acknowledged commit (and nothing half-applied) with consistent indexes.
//!
//! The test binary re-executes itself as the writer: `child_writer`, an ignored test the parent
//! runs with `--ignored --exact` and `BERTH_STORE_CRASH_CHILD_DB` set. Set `BERTH_STORE_CRASH_SEED`
//! to replay a run.

// A fuzz build (docs/fuzzing.md) instruments every crate; linking the fuzzer
// here gives this test binary the coverage symbols it then needs.
#[cfg(fuzzing)]
extern crate bolero as _;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_store::{Index, PageRequest, Record, Store};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::{Deserialize, Serialize};

const CHILD_ENV: &str = "BERTH_STORE_CRASH_CHILD_DB";
const SEED_ENV: &str = "BERTH_STORE_CRASH_SEED";
const KILLS: usize = 30;
const ITEMS: u32 = 40;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u32,
    group: String,
    state: String,
    op: u64,
}

impl Record for Item {
    const TABLE: &'static str = "items";
    fn key(&self) -> String {
        item_key(self.id)
    }
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        vec![("group", self.group.clone()), ("state", self.state.clone())]
    }
}

/// The number of the last committed operation, written in the same transaction as it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Progress {
    op: u64,
}

impl Record for Progress {
    const TABLE: &'static str = "progress";
    fn key(&self) -> String {
        "p".into()
    }
}

fn item_key(id: u32) -> String {
    format!("item-{id:03}")
}

enum Action {
    Put(Item),
    Delete(u32),
}

/// What operation `op` does: a pure function of `op`, so the parent can replay it.
fn plan(op: u64) -> Vec<Action> {
    let mut rng = SmallRng::seed_from_u64(op.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let action = |rng: &mut SmallRng, id: u32| {
        if rng.random_range(0..4) == 0 {
            Action::Delete(id)
        } else {
            Action::Put(Item {
                id,
                group: format!("g{}", rng.random_range(0..5)),
                state: ["PENDING", "RUNNING", "STOPPED"][rng.random_range(0..3)].into(),
                op,
            })
        }
    };
    let batch = match rng.random_range(0..10) {
        0..7 => 1,
        _ => rng.random_range(2..25),
    };
    // Distinct ids: a commit bumps each record's version once however often it was written.
    let start = rng.random_range(0..ITEMS);
    let step = [1, 3, 7][rng.random_range(0..3)];
    (0..batch)
        .map(|i| action(&mut rng, (start + i * step) % ITEMS))
        .collect()
}

/// The writer the crash test runs as its child and kills. Ignored, so a
/// plain test run neither runs it nor counts it as a pass; the parent runs it
/// with `--ignored --exact`.
#[test]
#[ignore = "the child process of acknowledged_writes_survive_sigkill"]
fn child_writer() -> anyhow::Result<()> {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        anyhow::bail!(
            "{CHILD_ENV} is not set: this test is the crash test's child, not a test of its own"
        );
    };
    let store = Store::open(&path)?;
    let first = store
        .begin()?
        .get::<Progress>("p")?
        .map_or(0, |p| p.value.op)
        + 1;
    let deadline = Instant::now() + Duration::from_secs(20);
    for op in first.. {
        if Instant::now() > deadline {
            break; // The parent should have killed us long ago.
        }
        let mut txn = store.begin()?;
        for a in plan(op) {
            match a {
                Action::Put(item) => txn.put(&item)?,
                Action::Delete(id) => {
                    txn.delete::<Item>(&item_key(id))?;
                }
            }
        }
        txn.put(&Progress { op })?;
        txn.commit()?;
        println!("ack {op}");
    }
    Ok(())
}

/// key -> (version, item), as the store should hold it.
type Model = BTreeMap<String, (u64, Item)>;

fn apply(model: &mut Model, op: u64) {
    for a in plan(op) {
        match a {
            Action::Put(item) => {
                let key = item.key();
                let version = model.get(&key).map_or(0, |(v, _)| *v) + 1;
                model.insert(key, (version, item));
            }
            Action::Delete(id) => {
                model.remove(&item_key(id));
            }
        }
    }
}

fn stored_items(store: &Store) -> anyhow::Result<Model> {
    let txn = store.begin()?;
    let mut out = Model::new();
    let mut req = PageRequest::first(7);
    loop {
        let page = txn.list::<Item>(req.clone())?;
        for v in page.items {
            out.insert(v.value.key(), (v.version, v.value));
        }
        match page.next_token {
            Some(t) => req.token = Some(t),
            None => return Ok(out),
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() -> anyhow::Result<()> {
    let seed = match std::env::var(SEED_ENV) {
        Ok(s) => s.parse()?,
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64,
    };
    eprintln!("crash test seed {seed} (set {SEED_ENV} to replay)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe()?;

    let mut model = Model::new();
    let mut applied = 0u64; // ops folded into `model`
    let mut acked = 0u64;
    let mut mid_stream_kills = 0;
    let mut unacked_landed = 0;
    let started = Instant::now();

    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print "test child_writer ... " before the first ack on its line.
                let ack = line.rfind("ack ").map(|i| &line[i + 4..]);
                if let Some(n) = ack.and_then(|n| n.trim().parse::<u64>().ok())
                    && tx.send(n).is_err()
                {
                    break;
                }
            }
        });

        // Kill either after a random time (possibly while opening/recovering) or right after
        // a random number of acks (mid-stream, just after a commit returned).
        let mut round_acks = Vec::new();
        if rng.random_bool(0.5) {
            let wait = Duration::from_millis(rng.random_range(0..150));
            let until = Instant::now() + wait;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(n) => round_acks.push(n),
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        } else {
            let want = rng.random_range(1..40);
            while round_acks.len() < want {
                match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(n) => round_acks.push(n),
                    Err(e) => anyhow::bail!("round {round}: child stopped acking: {e}"),
                }
            }
        }
        child.kill()?; // SIGKILL
        let status = child.wait()?;
        anyhow::ensure!(
            !status.success(),
            "round {round}: child exited on its own: {status}"
        );
        if reader.join().is_err() {
            anyhow::bail!("reader thread panicked");
        }
        round_acks.extend(rx.try_iter());
        if let Some(&n) = round_acks.iter().max() {
            anyhow::ensure!(n > acked, "acks must increase");
            acked = n;
            mid_stream_kills += 1;
        }

        let store = Store::open(&path)?;
        let progress = store
            .begin()?
            .get::<Progress>("p")?
            .map_or(0, |p| p.value.op);
        // Every ack is durable; at most one commit can have landed without its ack printed.
        anyhow::ensure!(
            progress == acked || progress == acked + 1,
            "round {round}: store has op {progress}, last ack was {acked} (seed {seed})"
        );
        unacked_landed += usize::from(progress > acked);
        acked = progress;
        while applied < progress {
            applied += 1;
            apply(&mut model, applied);
        }
        let stored = stored_items(&store)?;
        anyhow::ensure!(
            stored == model,
            "round {round}: store differs from replayed ops 1..={progress} (seed {seed})"
        );
        let problems = store.verify_indexes()?;
        anyhow::ensure!(
            problems.is_empty(),
            "round {round}: index problems: {problems:?}"
        );
        // Spot-check an index lookup against the model.
        let txn = store.begin()?;
        let g = format!("g{}", rng.random_range(0..5));
        let by_group = txn.by_index(Index::<Item>::new("group"), &g, PageRequest::first(1000))?;
        let expected: Vec<&String> = model
            .iter()
            .filter(|(_, (_, i))| i.group == g)
            .map(|(k, _)| k)
            .collect();
        let got: Vec<String> = by_group.items.iter().map(|v| v.value.key()).collect();
        anyhow::ensure!(
            got.iter().eq(expected.into_iter()),
            "round {round}: group index differs"
        );
    }
    eprintln!(
        "{KILLS} kills ({mid_stream_kills} after acks, {unacked_landed} with a commit durable but \
         unacked), {acked} ops committed, {} items, {:?}",
        model.len(),
        started.elapsed()
    );
    anyhow::ensure!(acked > 0, "the writer never committed anything");
    anyhow::ensure!(
        mid_stream_kills >= KILLS / 4,
        "too few kills landed mid-stream"
    );
    Ok(())
}
