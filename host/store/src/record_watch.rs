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
    pub(crate) fn watch(&self, table: &str, key: &str) -> RecordWatch {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = senders
            .entry(table.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_insert_with(|| watch::channel(0).0)
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
                tx.send_replace(version);
            }
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
