//! The store-wide revision and the watch of changes: order, start revision,
//! table filter, and waiters woken by commits from other handles. Revisions
//! are counted from where the store stood when the test began (etcd's start
//! above 0).

use std::time::Duration;

use berth_store::{Change, ChangeKind, Changes, Record, Store};
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

use crate::harness::open;

fn put(store: &Store, t: &Task) -> anyhow::Result<()> {
    store.update(|txn| txn.put(t))?;
    Ok(())
}

pub(crate) fn events(c: Changes) -> Vec<(u64, String, String, ChangeKind)> {
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
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let r0 = store.revision()?;
    put(&store, &task("a", "PENDING"))?;
    assert_eq!(store.revision()?, r0 + 1);
    // Two records in one commit: one revision.
    store.update(|txn| {
        txn.put(&task("b", "PENDING"))?;
        txn.put(&Service { name: "web".into() })
    })?;
    assert_eq!(store.revision()?, r0 + 2);
    // A read-only commit writes nothing.
    let mut txn = store.begin()?;
    txn.get::<Task>("a")?;
    txn.commit()?;
    assert_eq!(store.revision()?, r0 + 2);
    assert_eq!(store.begin()?.revision()?, r0 + 2);
    Ok(())
}

#[test]
fn changes_come_in_order_after_the_start_revision_for_the_tables_asked() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let r0 = store.revision()?;
    put(&store, &task("a", "PENDING"))?; // 1
    store.update(|txn| {
        txn.put(&task("b", "PENDING"))?;
        txn.put(&Service { name: "web".into() })
    })?; // 2
    put(&store, &task("a", "RUNNING"))?; // 3
    store.update(|txn| txn.delete::<Task>("b"))?; // 4

    let put_v = |version| ChangeKind::Put { version };
    let t = |s: &str| s.to_owned();
    let r = |n: u64| r0 + n;
    assert_eq!(
        events(store.changes(&["tasks"], r0)?),
        vec![
            (r(1), t("tasks"), t("a"), put_v(1)),
            (r(2), t("tasks"), t("b"), put_v(1)),
            (r(3), t("tasks"), t("a"), put_v(2)),
            (r(4), t("tasks"), t("b"), ChangeKind::Delete),
        ]
    );
    assert_eq!(
        events(store.changes(&["tasks"], r(2))?),
        vec![
            (r(3), t("tasks"), t("a"), put_v(2)),
            (r(4), t("tasks"), t("b"), ChangeKind::Delete),
        ]
    );
    assert_eq!(
        events(store.changes(&["services"], r0)?),
        vec![(r(2), t("services"), t("web"), put_v(1))]
    );
    // No table named: every table, a commit's changes in key order.
    let all = events(store.changes(&[], r(1))?);
    assert_eq!(
        all.iter()
            .map(|(rev, tb, k, _)| (*rev, tb.as_str(), k.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (r(2), "services", "web"),
            (r(2), "tasks", "b"),
            (r(3), "tasks", "a"),
            (r(4), "tasks", "b")
        ]
    );
    // Up to date: nothing, and the answer says where it stands.
    assert_eq!(
        store.changes(&["tasks"], r(4))?,
        Changes::Events {
            events: Vec::new(),
            revision: r(4)
        }
    );
    Ok(())
}

#[tokio::test]
async fn a_waiter_is_woken_by_a_commit_from_another_handle_on_another_thread() -> anyhow::Result<()>
{
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    put(&store, &task("a", "PENDING"))?;
    let from = store.revision()?;
    let r0 = from - 1;
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
            r0 + 3,
            "tasks".to_owned(),
            "a".to_owned(),
            ChangeKind::Put { version: 2 }
        )]
    );
    Ok(())
}

#[tokio::test]
async fn a_waiter_sleeps_until_a_commit_lands() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let r0 = store.revision()?;
    let mut w = store.watch(&["tasks"], r0);
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
    assert_eq!(w.revision(), r0 + 1);
    Ok(())
}

#[test]
fn concurrent_committers_each_get_their_own_revision() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let r0 = store.revision()?;
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
    assert_eq!(store.revision()?, r0 + 40);
    let revs: Vec<u64> = events(store.changes(&["tasks"], r0)?)
        .into_iter()
        .map(|(r, ..)| r)
        .collect();
    assert_eq!(revs, (r0 + 1..=r0 + 40).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn a_record_watch_wakes_only_for_its_record() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
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
