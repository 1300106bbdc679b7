//! The store's change feed on etcd: one watch stream over every record key
//! of the store, from the revision the backend opened at, kept in memory as
//! the last commits' changes. [`Backend::watch`](berth_store::Backend::watch)
//! answers from it without a round trip; a start older than what is kept
//! (the process started later, or fell behind a compaction) is told to
//! relist ([`Changes::Compacted`]), as etcd tells its own watchers.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use berth_store::{Change, ChangeKind, Changes};
use etcd_client::{Client, EventType, WatchOptions};

use crate::keys::Keys;

/// How many commits the feed keeps.
pub(crate) const KEPT_COMMITS: usize = 4096;

#[derive(Debug)]
pub(crate) struct Feed {
    state: Mutex<State>,
    grew: Condvar,
    latest: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug)]
struct State {
    /// Each commit's changes to records, oldest first.
    log: VecDeque<(u64, Vec<Change>)>,
    /// The history is complete after this revision.
    floor: u64,
    /// Every change up to here has been received.
    latest: u64,
}

impl Feed {
    pub(crate) fn new(start: u64) -> Feed {
        Feed {
            state: Mutex::new(State {
                log: VecDeque::new(),
                floor: start,
                latest: start,
            }),
            grew: Condvar::new(),
            latest: tokio::sync::watch::Sender::new(start),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.latest.subscribe()
    }

    pub(crate) fn latest(&self) -> u64 {
        self.lock().latest
    }

    /// Waits (at most `timeout`) until the feed has received `revision`.
    pub(crate) fn wait_for(&self, revision: u64, timeout: Duration) {
        let state = self.lock();
        let _ = self
            .grew
            .wait_timeout_while(state, timeout, |s| s.latest < revision);
    }

    pub(crate) fn changes(&self, tables: &[&str], after: u64) -> Changes {
        let s = self.lock();
        if after < s.floor {
            return Changes::Compacted {
                compacted: s.floor,
                revision: s.latest,
            };
        }
        let events = s
            .log
            .iter()
            .filter(|(rev, _)| *rev > after)
            .flat_map(|(_, changes)| changes)
            .filter(|c| tables.is_empty() || tables.contains(&c.table.as_str()))
            .cloned()
            .collect();
        Changes::Events {
            events,
            revision: s.latest.max(after),
        }
    }

    fn push(&self, revision: u64, mut changes: Vec<Change>) {
        changes.sort_by(|a, b| (&a.table, &a.key).cmp(&(&b.table, &b.key)));
        {
            let mut s = self.lock();
            if revision <= s.latest {
                return; // seen already (a watch restarted from an earlier revision)
            }
            s.log.push_back((revision, changes));
            while s.log.len() > KEPT_COMMITS {
                if let Some((r, _)) = s.log.pop_front() {
                    s.floor = r;
                }
            }
            s.latest = revision;
        }
        self.grew.notify_all();
        self.latest.send_replace(revision);
    }

    /// The history before `revision` is lost: starts before it relist.
    fn lost_history(&self, revision: u64) {
        {
            let mut s = self.lock();
            s.log.clear();
            s.floor = revision;
            s.latest = s.latest.max(revision);
        }
        self.grew.notify_all();
        self.latest.send_replace(revision);
    }
}

/// Follows the store's record keys from the feed's latest revision for as
/// long as the backend's runtime lives, reconnecting after errors.
pub(crate) async fn follow(client: Client, keys: Keys, feed: Arc<Feed>) {
    let mut delay = Duration::from_millis(100);
    loop {
        match follow_once(&client, &keys, &feed).await {
            Ok(()) => delay = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "etcd watch interrupted; watching again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn follow_once(client: &Client, keys: &Keys, feed: &Feed) -> Result<(), etcd_client::Error> {
    let from = feed.latest() + 1;
    let opts = WatchOptions::new()
        .with_prefix()
        .with_progress_notify()
        .with_start_revision(i64::try_from(from).unwrap_or(i64::MAX));
    let mut stream = client
        .watch_client()
        .watch(keys.records(), Some(opts))
        .await?;
    while let Some(resp) = stream.message().await? {
        if resp.compact_revision() > 0 {
            // Fell behind a compaction: what changed meanwhile is gone.
            let now = resp.header().map_or(0, |h| h.revision());
            let now = u64::try_from(now.max(resp.compact_revision())).unwrap_or(0);
            tracing::warn!(
                now,
                "the etcd watch fell behind a compaction; watchers relist"
            );
            feed.lost_history(now);
            return Ok(());
        }
        if resp.canceled() {
            return Err(etcd_client::Error::WatchError(format!(
                "canceled: {}",
                resp.cancel_reason()
            )));
        }
        let mut batch: Option<(u64, Vec<Change>)> = None;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let Some((table, key)) = keys.parse_record(kv.key()) else {
                continue;
            };
            let revision = u64::try_from(kv.mod_revision()).unwrap_or(0);
            let kind = match ev.event_type() {
                EventType::Put => ChangeKind::Put {
                    version: u64::try_from(kv.version()).unwrap_or(0),
                },
                EventType::Delete => ChangeKind::Delete,
            };
            let change = Change {
                revision,
                table: table.to_owned(),
                key: key.to_owned(),
                kind,
            };
            match &mut batch {
                Some((r, changes)) if *r == revision => changes.push(change),
                _ => {
                    if let Some((r, changes)) = batch.take() {
                        feed.push(r, changes);
                    }
                    batch = Some((revision, vec![change]));
                }
            }
        }
        if let Some((r, changes)) = batch {
            feed.push(r, changes);
        }
    }
    Err(etcd_client::Error::WatchError(
        "the watch stream ended".to_owned(),
    ))
}
