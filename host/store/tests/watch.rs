//! The watch of changes on redb alone: its change log's compaction and its
//! persistence (the rest is in the conformance suite, on both backends).

// A fuzz build (docs/fuzzing.md) instruments every crate; linking the fuzzer
// here gives this test binary the coverage symbols it then needs.
#[cfg(fuzzing)]
extern crate bolero as _;

use std::sync::Arc;

use berth_store::{Change, ChangeKind, Changes, Record, RedbBackend, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    arn: String,
    status: String,
}

impl Record for Task {
    const TABLE: &'static str = "tasks";
    fn key(&self) -> String {
        self.arn.clone()
    }
}

fn task(arn: &str, status: &str) -> Task {
    Task {
        arn: arn.into(),
        status: status.into(),
    }
}

fn put(store: &Store, t: &Task) -> anyhow::Result<()> {
    store.update(|txn| txn.put(t))?;
    Ok(())
}

fn events(c: Changes) -> Vec<(u64, String, String, ChangeKind)> {
    match c {
        Changes::Events { events, .. } => events
            .into_iter()
            .map(
                |Change {
                     revision,
                     table,
                     key,
                     kind,
                 }| (revision, table, key, kind),
            )
            .collect(),
        Changes::Compacted { .. } => panic!("unexpected compaction: {c:?}"),
    }
}

#[test]
fn a_start_older_than_the_kept_history_is_told_to_relist() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let backend = RedbBackend::open(dir.path().join("berth.redb"))?.with_change_log_len(3);
    let store = Store::with_backend(Arc::new(backend));
    for i in 0..6 {
        put(&store, &task(&format!("t{i}"), "PENDING"))?;
    }
    // Revisions 4..=6 are kept, so starts from 3 on are answered.
    assert_eq!(
        store.changes(&["tasks"], 2)?,
        Changes::Compacted {
            compacted: 3,
            revision: 6
        }
    );
    assert_eq!(
        events(store.changes(&["tasks"], 3)?)
            .into_iter()
            .map(|(r, ..)| r)
            .collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    // A watch that fell behind gets the answer once and carries on from the latest revision.
    let mut w = store.watch(&["tasks"], 0);
    assert!(matches!(w.poll()?, Changes::Compacted { revision: 6, .. }));
    assert_eq!(w.revision(), 6);
    put(&store, &task("t9", "PENDING"))?;
    assert_eq!(events(w.poll()?).len(), 1);
    Ok(())
}

#[test]
fn the_revision_and_the_history_survive_reopening() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("berth.redb");
    {
        let store = Store::open(&path)?;
        put(&store, &task("a", "PENDING"))?;
        put(&store, &task("a", "RUNNING"))?;
    }
    let store = Store::open(&path)?;
    assert_eq!(store.revision()?, 2);
    assert_eq!(events(store.changes(&["tasks"], 1)?).len(), 1);
    put(&store, &task("b", "PENDING"))?;
    assert_eq!(store.revision()?, 3);
    Ok(())
}
