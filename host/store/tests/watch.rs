//! The store-wide revision and the watch of changes: order, start revision, table filter,
//! compaction, persistence, and waiters woken by commits from other handles.

// A fuzz build (docs/fuzzing.md) instruments every crate; linking the fuzzer
// here gives this test binary the coverage symbols it then needs.
#[cfg(fuzzing)]
extern crate bolero as _;

use std::sync::Arc;
use std::time::Duration;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Service {
    name: String,
}

impl Record for Service {
    const TABLE: &'static str = "services";
    fn key(&self) -> String {
        self.name.clone()
    }
}

fn task(arn: &str, status: &str) -> Task {
    Task {
        arn: arn.into(),
        status: status.into(),
    }
}

fn open() -> anyhow::Result<(tempfile::TempDir, Store)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("berth.redb"))?;
    Ok((dir, store))
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
fn every_write_commit_raises_the_revision_and_only_those() -> anyhow::Result<()> {
    let (_dir, store) = open()?;
    assert_eq!(store.revision()?, 0);
    put(&store, &task("a", "PENDING"))?;
    assert_eq!(store.revision()?, 1);
    // Two records in one commit: one revision.
    store.update(|txn| {
        txn.put(&task("b", "PENDING"))?;
        txn.put(&Service { name: "web".into() })
    })?;
    assert_eq!(store.revision()?, 2);
    // A read-only commit writes nothing.
    let mut txn = store.begin()?;
    txn.get::<Task>("a")?;
    txn.commit()?;
    assert_eq!(store.revision()?, 2);
    assert_eq!(store.begin()?.revision()?, 2);
    Ok(())
}

#[test]
fn changes_come_in_order_after_the_start_revision_for_the_tables_asked() -> anyhow::Result<()> {
    let (_dir, store) = open()?;
    put(&store, &task("a", "PENDING"))?; // 1
    store.update(|txn| {
        txn.put(&task("b", "PENDING"))?;
        txn.put(&Service { name: "web".into() })
    })?; // 2
    put(&store, &task("a", "RUNNING"))?; // 3
    store.update(|txn| txn.delete::<Task>("b"))?; // 4

    let put_v = |version| ChangeKind::Put { version };
    let t = |s: &str| s.to_owned();
    assert_eq!(
        events(store.changes(&["tasks"], 0)?),
        vec![
            (1, t("tasks"), t("a"), put_v(1)),
            (2, t("tasks"), t("b"), put_v(1)),
            (3, t("tasks"), t("a"), put_v(2)),
            (4, t("tasks"), t("b"), ChangeKind::Delete),
        ]
    );
    assert_eq!(
        events(store.changes(&["tasks"], 2)?),
        vec![
            (3, t("tasks"), t("a"), put_v(2)),
            (4, t("tasks"), t("b"), ChangeKind::Delete),
        ]
    );
    assert_eq!(
        events(store.changes(&["services"], 0)?),
        vec![(2, t("services"), t("web"), put_v(1))]
    );
    // No table named: every table, a commit's changes in key order.
    let all = events(store.changes(&[], 1)?);
    assert_eq!(
        all.iter()
            .map(|(r, tb, k, _)| (*r, tb.as_str(), k.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (2, "services", "web"),
            (2, "tasks", "b"),
            (3, "tasks", "a"),
            (4, "tasks", "b")
        ]
    );
    // Up to date: nothing, and the answer says where it stands.
    assert_eq!(
        store.changes(&["tasks"], 4)?,
        Changes::Events {
            events: Vec::new(),
            revision: 4
        }
    );
    Ok(())
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

#[tokio::test]
async fn a_waiter_is_woken_by_a_commit_from_another_handle_on_another_thread() -> anyhow::Result<()>
{
    let (_dir, store) = open()?;
    put(&store, &task("a", "PENDING"))?;
    let from = store.revision()?;
    let mut w = store.watch(&["tasks"], from);
    let waiter = tokio::spawn(async move { w.next().await });

    let other = store.clone();
    std::thread::spawn(move || -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(100));
        // A commit to another table does not wake a watch of tasks ...
        other.update(|txn| txn.put(&Service { name: "web".into() }))?;
        std::thread::sleep(Duration::from_millis(100));
        // ... this one does.
        other.update(|txn| txn.put(&task("a", "STOPPED")))?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("committer panicked"))??;

    let got = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert_eq!(
        events(got),
        vec![(
            3,
            "tasks".to_owned(),
            "a".to_owned(),
            ChangeKind::Put { version: 2 }
        )]
    );
    Ok(())
}

#[tokio::test]
async fn a_waiter_sleeps_until_a_commit_lands() -> anyhow::Result<()> {
    let (_dir, store) = open()?;
    let mut w = store.watch(&["tasks"], store.revision()?);
    // Nothing committed: the wait does not return.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), w.next())
            .await
            .is_err()
    );
    let other = store.clone();
    let committer = tokio::task::spawn_blocking(move || put(&other, &task("a", "PENDING")));
    let got = tokio::time::timeout(Duration::from_secs(5), w.next()).await??;
    committer.await??;
    assert_eq!(events(got).len(), 1);
    assert_eq!(w.revision(), 1);
    Ok(())
}

#[test]
fn concurrent_committers_each_get_their_own_revision() -> anyhow::Result<()> {
    let (_dir, store) = open()?;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                for i in 0..10 {
                    put(&store, &task(&format!("t{t}-{i}"), "PENDING"))?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("panicked"))??;
    }
    assert_eq!(store.revision()?, 40);
    let revs: Vec<u64> = events(store.changes(&["tasks"], 0)?)
        .into_iter()
        .map(|(r, ..)| r)
        .collect();
    assert_eq!(revs, (1..=40).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn a_record_watch_wakes_only_for_its_record() -> anyhow::Result<()> {
    let (_dir, store) = open()?;
    put(&store, &task("t1", "PENDING"))?;
    let mut watch = store.watch_record::<Task>("t1");
    let wait = Duration::from_millis(300);
    // Other records, and the same key in another table, do not wake it.
    put(&store, &task("t2", "PENDING"))?;
    store.update(|txn| txn.put(&Service { name: "t1".into() }))?;
    assert!(tokio::time::timeout(wait, watch.changed()).await.is_err());
    // A write of the record does, also one landing before the wait begins.
    put(&store, &task("t1", "RUNNING"))?;
    tokio::time::timeout(wait, watch.changed()).await?;
    assert!(tokio::time::timeout(wait, watch.changed()).await.is_err());
    // So does its deletion, from another handle of the same store.
    let other = store.clone();
    let deleter = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(50));
        other.update(|txn| txn.delete::<Task>("t1"))
    });
    tokio::time::timeout(Duration::from_secs(5), watch.changed()).await?;
    assert!(deleter.await??.value);
    Ok(())
}
