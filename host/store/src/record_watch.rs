//! Waiting for one record to change: [`RecordWatchers`], fired by each
//! commit through this process's [`crate::Store`] for the records it wrote.
//!
//! A table watch wakes every watcher at every commit, and each then asks
//! the change log what changed: with thousands of agents long-polling for
//! their own instance record, that was thousands of change-log reads per
//! commit. A record watch is woken only by a commit that wrote its record.
//! It sees commits made through this process only: a caller that must see
//! other writers too re-reads when its own wait ends.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;

/// The records someone waits on, by table and key, each with the version
/// last written.
#[derive(Debug, Default)]
pub(crate) struct RecordWatchers {
    senders: Mutex<HashMap<String, HashMap<String, watch::Sender<u64>>>>,
}

impl RecordWatchers {
    /// A watch of record `key` of `table`, woken by the next commit that
    /// writes or deletes it.
    pub(crate) fn watch(&self, table: &str, key: &str, current: Option<u64>) -> RecordWatch {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        // Starting from the version the record has now, if known: a feed
        // that reports that version late wakes nobody.
        let receiver = senders
            .entry(table.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_insert_with(|| watch::channel(current.unwrap_or(u64::MAX)).0)
            .subscribe();
        RecordWatch { receiver }
    }

    /// Wakes the watchers of each written `(table, key, version)`; a record
    /// nobody watches any more is forgotten when it is next written.
    pub(crate) fn fire<'a>(&self, written: impl Iterator<Item = (&'a str, &'a str, u64)>) {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if senders.is_empty() {
            return;
        }
        for (table, key, version) in written {
            let Some(keys) = senders.get_mut(table) else {
                continue;
            };
            let Some(tx) = keys.get(key) else {
                continue;
            };
            if tx.receiver_count() == 0 {
                keys.remove(key);
            } else {
                // Once per version: a shared store's feed reports again
                // what this process's own commit fired already.
                tx.send_if_modified(|v| std::mem::replace(v, version) != version);
            }
        }
    }
}

impl RecordWatchers {
    /// Wakes every watcher.
    pub(crate) fn fire_all(&self) {
        let senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        for tx in senders.values().flat_map(HashMap::values) {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}

/// A wait for one record's next change, from [`crate::Store::watch_record`].
#[derive(Debug)]
pub struct RecordWatch {
    receiver: watch::Receiver<u64>,
}

impl RecordWatch {
    /// Returns once a commit after the watch began (or after the previous
    /// return) wrote the record.
    pub async fn changed(&mut self) {
        // The sender lives while a receiver does, so this cannot fail
        // short of the store being dropped; then there is nothing to wait for.
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// For a backend other processes commit to ([`crate::Backend::shared`]):
/// a thread that follows the backend's change feed and fires the record
/// watches for every change, whoever committed it. It holds neither the
/// backend nor the watchers, and ends when the backend is dropped.
pub(crate) fn follow_backend(
    backend: &std::sync::Arc<dyn crate::Backend>,
    watchers: &std::sync::Arc<RecordWatchers>,
) {
    let weak_backend = std::sync::Arc::downgrade(backend);
    let weak_watchers = std::sync::Arc::downgrade(watchers);
    let mut latest = backend.subscribe();
    let mut after = *latest.borrow_and_update();
    let spawned = std::thread::Builder::new()
        .name("berth-record-watch".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
                return;
            };
            while rt.block_on(latest.changed()).is_ok() {
                let (Some(backend), Some(watchers)) =
                    (weak_backend.upgrade(), weak_watchers.upgrade())
                else {
                    return;
                };
                match backend.watch(&[], after) {
                    Ok(crate::Changes::Events { events, revision }) => {
                        watchers.fire(events.iter().map(|e| {
                            let version = match e.kind {
                                crate::ChangeKind::Put { version } => version,
                                crate::ChangeKind::Delete => 0,
                            };
                            (e.table.as_str(), e.key.as_str(), version)
                        }));
                        after = revision;
                    }
                    Ok(crate::Changes::Compacted { revision, .. }) => {
                        // What changed is lost: wake every waiter to re-read.
                        watchers.fire_all();
                        after = revision;
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the store's changes failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the thread following the store's changes");
    }
}
