//! CRUD, versions, index maintenance, pagination and commit conflicts through the public API.

use berth_store::{CommitError, Index, PageRequest, Record, Store, StoreError, UpdateError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    arn: String,
    cluster: String,
    status: String,
    tags: Vec<String>,
}

impl Record for Task {
    const TABLE: &'static str = "tasks";
    fn key(&self) -> String {
        self.arn.clone()
    }
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("cluster", self.cluster.clone()),
            ("status", self.status.clone()),
        ];
        v.extend(self.tags.iter().map(|t| ("tag", t.clone())));
        v
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    id: String,
    text: String,
}

impl Record for Note {
    const TABLE: &'static str = "notes";
    fn key(&self) -> String {
        self.id.clone()
    }
}

fn task(n: u32, cluster: &str, status: &str) -> Task {
    Task {
        arn: format!("arn:task/{n:04}"),
        cluster: cluster.into(),
        status: status.into(),
        tags: Vec::new(),
    }
}

use crate::harness::{fixture, open};

fn keys(page: &berth_store::Page<Task>) -> Vec<String> {
    page.items.iter().map(|v| v.value.arn.clone()).collect()
}

fn all_by_index(store: &Store, index: &'static str, value: &str) -> anyhow::Result<Vec<String>> {
    let txn = store.begin()?;
    Ok(keys(&txn.by_index(
        Index::<Task>::new(index),
        value,
        PageRequest::first(1000),
    )?))
}

#[test]
fn crud_and_versions() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let mut txn = store.begin()?;
    assert!(txn.get::<Task>("arn:task/0001")?.is_none());
    txn.put(&task(1, "c1", "PENDING"))?;
    // Reads see the transaction's own writes, with the version the commit will give.
    let own = txn
        .get::<Task>("arn:task/0001")?
        .expect("own write visible");
    assert_eq!(own.version, 1);
    let info = txn.commit()?;
    assert_eq!(info.version_of::<Task>("arn:task/0001"), Some(1));

    let mut txn = store.begin()?;
    let mut t = txn.get::<Task>("arn:task/0001")?.expect("present");
    assert_eq!(t.version, 1);
    t.value.status = "RUNNING".into();
    txn.put(&t.value)?;
    assert_eq!(txn.commit()?.version_of::<Task>("arn:task/0001"), Some(2));

    let mut txn = store.begin()?;
    let t = txn.get::<Task>("arn:task/0001")?.expect("present");
    assert_eq!((t.version, t.value.status.as_str()), (2, "RUNNING"));
    assert!(txn.delete::<Task>("arn:task/0001")?);
    assert!(
        txn.get::<Task>("arn:task/0001")?.is_none(),
        "own delete visible"
    );
    assert!(!txn.delete::<Task>("arn:task/0001")?);
    assert_eq!(txn.commit()?.version_of::<Task>("arn:task/0001"), Some(0));

    assert!(store.begin()?.get::<Task>("arn:task/0001")?.is_none());
    // Re-creating a deleted record starts over at version 1.
    let mut txn = store.begin()?;
    txn.put(&task(1, "c1", "PENDING"))?;
    assert_eq!(txn.commit()?.version_of::<Task>("arn:task/0001"), Some(1));
    assert!(store.verify_indexes()?.is_empty());
    Ok(())
}

#[test]
fn dropped_txn_writes_nothing() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let mut txn = store.begin()?;
    txn.put(&task(1, "c1", "PENDING"))?;
    drop(txn);
    assert!(store.begin()?.get::<Task>("arn:task/0001")?.is_none());
    assert!(store.info()?.record_counts.values().all(|n| *n == 0));
    Ok(())
}

#[test]
fn indexes_follow_updates_and_deletes() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let mut txn = store.begin()?;
    for n in 0..6 {
        let mut t = task(n, if n % 2 == 0 { "even" } else { "odd" }, "PENDING");
        if n < 2 {
            t.tags = vec!["a".into(), "b".into()];
        }
        txn.put(&t)?;
    }
    txn.commit()?;
    assert_eq!(all_by_index(&store, "cluster", "even")?.len(), 3);
    assert_eq!(all_by_index(&store, "status", "PENDING")?.len(), 6);
    assert_eq!(
        all_by_index(&store, "tag", "b")?,
        ["arn:task/0000", "arn:task/0001"]
    );

    // Move a task between clusters, change a status, drop tags, delete one.
    let mut txn = store.begin()?;
    let mut t0 = txn.get::<Task>("arn:task/0000")?.expect("t0").value;
    t0.cluster = "odd".into();
    t0.status = "RUNNING".into();
    t0.tags = vec!["b".into()];
    txn.put(&t0)?;
    txn.delete::<Task>("arn:task/0003")?;
    // The transaction's own index view is already updated.
    let own = txn.by_index(
        Index::<Task>::new("cluster"),
        "odd",
        PageRequest::first(100),
    )?;
    assert_eq!(
        keys(&own),
        ["arn:task/0000", "arn:task/0001", "arn:task/0005"]
    );
    txn.commit()?;

    assert_eq!(
        all_by_index(&store, "cluster", "even")?,
        ["arn:task/0002", "arn:task/0004"]
    );
    assert_eq!(
        all_by_index(&store, "cluster", "odd")?,
        ["arn:task/0000", "arn:task/0001", "arn:task/0005"]
    );
    assert_eq!(
        all_by_index(&store, "status", "RUNNING")?,
        ["arn:task/0000"]
    );
    assert_eq!(all_by_index(&store, "status", "PENDING")?.len(), 4);
    assert_eq!(all_by_index(&store, "tag", "a")?, ["arn:task/0001"]);
    assert!(all_by_index(&store, "cluster", "nope")?.is_empty());
    assert!(store.verify_indexes()?.is_empty());

    let info = store.info()?;
    assert_eq!(info.record_counts.get("tasks"), Some(&5));
    assert!(info.created);
    assert!(info.to_string().contains("tasks=5"), "{info}");
    Ok(())
}

#[test]
fn pagination_with_tokens() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let mut txn = store.begin()?;
    for n in 0..25 {
        txn.put(&task(
            n,
            if n % 5 == 0 { "five" } else { "other" },
            "PENDING",
        ))?;
    }
    txn.put(&Note {
        id: "n".into(),
        text: "other table".into(),
    })?;
    txn.commit()?;

    let txn = store.begin()?;
    let mut seen = Vec::new();
    let mut req = PageRequest::first(10);
    let mut pages = 0;
    loop {
        let page = txn.list::<Task>(req.clone())?;
        pages += 1;
        assert!(page.items.len() <= 10);
        seen.extend(keys(&page));
        match page.next_token {
            Some(t) => req.token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|n| format!("arn:task/{n:04}")).collect();
    assert_eq!(seen, expected);

    // An exact multiple of the limit ends without an empty trailing page.
    let page = txn.by_index(Index::<Task>::new("cluster"), "five", PageRequest::first(5))?;
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.next_token, None);

    let p1 = txn.by_index(Index::<Task>::new("cluster"), "five", PageRequest::first(2))?;
    assert_eq!(keys(&p1), ["arn:task/0000", "arn:task/0005"]);
    let p2 = txn.by_index(
        Index::<Task>::new("cluster"),
        "five",
        PageRequest {
            token: p1.next_token.clone(),
            limit: 2,
        },
    )?;
    assert_eq!(keys(&p2), ["arn:task/0010", "arn:task/0015"]);

    let pre = txn.scan_prefix::<Task>("arn:task/001", PageRequest::first(4))?;
    assert_eq!(pre.items.len(), 4);
    let rest = txn.scan_prefix::<Task>(
        "arn:task/001",
        PageRequest {
            token: pre.next_token,
            limit: 100,
        },
    )?;
    assert_eq!(rest.items.len(), 6);
    assert_eq!(rest.next_token, None);
    Ok(())
}

#[test]
fn pages_merge_buffered_writes() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let mut txn = store.begin()?;
    for n in 0..10 {
        txn.put(&task(n * 2, "c", "PENDING"))?;
    }
    txn.commit()?;

    let mut txn = store.begin()?;
    txn.delete::<Task>("arn:task/0000")?;
    txn.delete::<Task>("arn:task/0002")?;
    txn.put(&task(1, "c", "PENDING"))?;
    txn.put(&task(99, "c", "PENDING"))?;
    let mut seen = Vec::new();
    let mut req = PageRequest::first(3);
    loop {
        let page = txn.by_index(Index::<Task>::new("cluster"), "c", req.clone())?;
        seen.extend(keys(&page));
        let Some(t) = page.next_token else { break };
        req.token = Some(t);
    }
    let mut expected: Vec<String> = [1, 4, 6, 8, 10, 12, 14, 16, 18, 99]
        .iter()
        .map(|n| format!("arn:task/{n:04}"))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    Ok(())
}

#[test]
fn malformed_token_is_an_error() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let txn = store.begin()?;
    for bad in ["not hex!", "abc", "ff", ""] {
        let req = PageRequest {
            token: Some(bad.into()),
            limit: 10,
        };
        let err = txn.list::<Task>(req.clone()).expect_err("bad token");
        assert!(matches!(err, StoreError::InvalidPageToken { .. }), "{err}");
        assert!(err.to_string().contains("malformed page token"), "{err}");
        assert!(
            txn.by_index(Index::<Task>::new("cluster"), "c", req)
                .is_err()
        );
    }
    assert!(matches!(
        txn.list::<Task>(PageRequest::first(0)),
        Err(StoreError::InvalidPageRequest(_))
    ));
    Ok(())
}

#[test]
fn invalid_keys_are_refused() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let mut txn = store.begin()?;
    assert!(matches!(
        txn.put(&task(1, "bad\0cluster", "x")),
        Err(StoreError::InvalidKey { .. })
    ));
    let mut t = task(1, "c", "x");
    t.arn = String::new();
    assert!(matches!(txn.put(&t), Err(StoreError::InvalidKey { .. })));
    Ok(())
}

#[test]
fn concurrent_writers_conflict_and_nothing_is_written() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let mut txn = store.begin()?;
    txn.put(&task(1, "c", "PENDING"))?;
    txn.commit()?;

    let mut a = store.begin()?;
    let mut b = store.begin()?;
    let mut ta = a.get::<Task>("arn:task/0001")?.expect("a").value;
    let mut tb = b.get::<Task>("arn:task/0001")?.expect("b").value;
    ta.status = "A".into();
    tb.status = "B".into();
    a.put(&ta)?;
    b.put(&tb)?;
    // b also inserts a key that a creates concurrently: that is a conflict too.
    a.put(&task(2, "c", "A"))?;
    b.put(&task(2, "c", "B"))?;
    b.put(&task(3, "c", "B"))?;
    a.commit()?;
    let err = b.commit().expect_err("must conflict");
    let CommitError::Conflict { changed } = &err else {
        panic!("expected conflict, got {err}");
    };
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert_eq!(
        (
            changed[0].key.as_str(),
            changed[0].read_version,
            changed[0].current_version
        ),
        ("arn:task/0001", 1, 2)
    );
    assert_eq!(
        (
            changed[1].key.as_str(),
            changed[1].read_version,
            changed[1].current_version
        ),
        ("arn:task/0002", 0, 1)
    );
    let msg = err.to_string();
    assert!(
        msg.contains("tasks/arn:task/0001") && msg.contains("tasks/arn:task/0002"),
        "{msg}"
    );

    let mut check = store.begin()?;
    assert_eq!(
        check.get::<Task>("arn:task/0001")?.expect("1").value.status,
        "A"
    );
    assert_eq!(
        check.get::<Task>("arn:task/0002")?.expect("2").value.status,
        "A"
    );
    assert!(
        check.get::<Task>("arn:task/0003")?.is_none(),
        "b wrote nothing"
    );
    assert!(store.verify_indexes()?.is_empty());
    Ok(())
}

#[test]
fn read_only_txn_detects_stale_reads() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let mut reader = store.begin()?;
    assert!(reader.get::<Note>("x")?.is_none());
    let mut w = store.begin()?;
    w.put(&Note {
        id: "x".into(),
        text: "hi".into(),
    })?;
    w.commit()?;
    assert!(matches!(reader.commit(), Err(CommitError::Conflict { .. })));
    Ok(())
}

#[test]
fn update_retries_conflicts_and_reports_them() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let mut interfered = false;
    let out = store.update(|txn| -> Result<u32, StoreError> {
        let n = txn
            .get::<Note>("n")?
            .map_or(0, |v| v.value.text.len() as u32);
        if !interfered {
            // Another writer sneaks in between our read and our commit, once.
            interfered = true;
            let mut other = store.begin()?;
            other.put(&Note {
                id: "n".into(),
                text: "x".into(),
            })?;
            other
                .commit()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        txn.put(&Note {
            id: "n".into(),
            text: "y".repeat(n as usize + 1),
        })?;
        Ok(n)
    })?;
    assert_eq!(out.conflicts, 1);
    assert_eq!(out.value, 1);
    assert_eq!(out.commit.version_of::<Note>("n"), Some(2));

    let aborted = store.update(|_txn| Err::<(), _>("nope"));
    assert!(matches!(aborted, Err(UpdateError::Aborted("nope"))));

    // A closure that always loses hits the bound.
    let res = store.update_with_attempts(3, |txn| -> Result<(), StoreError> {
        txn.get::<Note>("n")?;
        let mut other = store.begin()?;
        other.put(&Note {
            id: "n".into(),
            text: "z".into(),
        })?;
        other
            .commit()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        txn.put(&Note {
            id: "n".into(),
            text: "mine".into(),
        })
    });
    match res {
        Err(UpdateError::TooManyConflicts { attempts, last }) => {
            assert_eq!(attempts, 3);
            assert_eq!(last.len(), 1);
        }
        other => panic!("expected TooManyConflicts, got {other:?}"),
    }
    // Counted for the metrics: the first update's conflict and retry, then
    // three conflicts, two retries and a give-up; a clone shares the counts.
    assert_eq!(
        store.clone().commit_counts(),
        berth_store::CommitCounts {
            conflicts: 4,
            retries: 3,
            gave_up: 1,
        }
    );
    Ok(())
}

#[test]
fn reopen_keeps_data_and_reports_counts() -> anyhow::Result<()> {
    let Some(fixture) = fixture()? else {
        return Ok(());
    };
    {
        let store = fixture.open()?;
        let mut txn = store.begin()?;
        for n in 0..3 {
            txn.put(&task(n, "c", "PENDING"))?;
        }
        txn.commit()?;
    }
    let store = fixture.open()?;
    let info = store.info()?;
    assert!(!info.created);
    assert_eq!(info.schema_version, berth_store::SCHEMA_VERSION);
    assert_eq!(info.path, fixture.location());
    assert_eq!(info.record_counts.get("tasks"), Some(&3));
    assert_eq!(all_by_index(&store, "cluster", "c")?.len(), 3);
    Ok(())
}

#[test]
fn counts_by_index_match_the_records_with_and_without_own_writes() -> anyhow::Result<()> {
    let Some((_dir, store)) = open()? else {
        return Ok(());
    };
    let cluster = Index::<Task>::new("cluster");
    let mut txn = store.begin()?;
    for n in 0..7 {
        txn.put(&task(n, if n < 4 { "a" } else { "b" }, "PENDING"))?;
    }
    // Before the commit: counted from the transaction's own writes.
    assert_eq!(txn.count_by_index(cluster, "a")?, 4);
    txn.commit()?;

    let txn = store.begin()?;
    assert_eq!(txn.count_by_index(cluster, "a")?, 4);
    assert_eq!(txn.count_by_index(cluster, "b")?, 3);
    // A value that is a prefix of another's is not counted with it.
    assert_eq!(txn.count_by_index(cluster, "")?, 0);
    assert_eq!(
        txn.count_by_index(Index::<Task>::new("status"), "PENDING")?,
        7
    );
    assert_eq!(txn.count_by_index(Index::<Task>::new("nothing"), "a")?, 0);

    // A transaction that moved one and deleted one counts what it would commit.
    let mut txn = store.begin()?;
    let mut t0 = txn.get::<Task>("arn:task/0000")?.expect("t0").value;
    t0.cluster = "b".into();
    txn.put(&t0)?;
    txn.delete::<Task>("arn:task/0001")?;
    assert_eq!(txn.count_by_index(cluster, "a")?, 2);
    assert_eq!(txn.count_by_index(cluster, "b")?, 4);
    txn.commit()?;
    assert_eq!(store.begin()?.count_by_index(cluster, "a")?, 2);
    Ok(())
}
