//! The typed front: [`Store`] and its optimistic transactions [`Txn`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::backend::{Backend, Changes, NewRecord, ReadEntry, Snapshot, WriteOp};
use crate::codec::{self, RawRecord};
use crate::error::{CommitError, OpenError, StoreError, UpdateError};
use crate::record_watch::{RecordWatch, RecordWatchers};
use crate::redb_backend::RedbBackend;
use crate::{Index, Record, Versioned};

/// How many times [`Store::update`] runs its closure before giving up on conflicts.
pub const DEFAULT_UPDATE_ATTEMPTS: u32 = 32;

/// Handle to the store. Cheap to clone; clones share one backend.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    watchers: Arc<RecordWatchers>,
    stats: Arc<CommitStats>,
}

/// Commit conflicts and retries since the store was opened, shared by its
/// clones: counted where they happen, read by the server's metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    conflicts: AtomicU64,
    retries: AtomicU64,
    gave_up: AtomicU64,
}

/// A reading of [`CommitStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// Commits refused because something they read had changed.
    pub conflicts: u64,
    /// Attempts [`Store::update`] made again after a conflict.
    pub retries: u64,
    /// [`Store::update`]s that ran out of attempts.
    pub gave_up: u64,
}

/// What [`Store::info`] reports, for `berth up` to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// Where the data lives.
    pub path: PathBuf,
    /// Schema version in force.
    pub schema_version: u32,
    /// Whether opening created a new store.
    pub created: bool,
    /// Schema version found before migrations ran, if any ran.
    pub migrated_from: Option<u32>,
    /// Records per record table (tables never written are absent).
    pub record_counts: BTreeMap<String, u64>,
}

impl fmt::Display for StoreInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match (self.created, self.migrated_from) {
            (true, _) => "created".to_owned(),
            (false, Some(v)) => format!("opened, migrated from schema {v}"),
            (false, None) => "opened".to_owned(),
        };
        write!(
            f,
            "store {} ({how}, schema {})",
            self.path.display(),
            self.schema_version
        )?;
        if self.record_counts.is_empty() {
            return write!(f, ": empty");
        }
        let counts: Vec<String> = self
            .record_counts
            .iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect();
        write!(f, ": {}", counts.join(", "))
    }
}

/// Where a page starts and how many items it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// `next_token` of the previous page; `None` for the first page.
    pub token: Option<String>,
    /// Maximum number of items (at least 1).
    pub limit: usize,
}

impl PageRequest {
    /// The first page of up to `limit` items.
    pub fn first(limit: usize) -> Self {
        PageRequest { token: None, limit }
    }

    /// A page of up to `limit` items whose keys come after `key`.
    pub fn after(key: &str, limit: usize) -> Self {
        PageRequest {
            token: Some(codec::encode_token(key)),
            limit,
        }
    }
}

/// One page of records in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The records.
    pub items: Vec<Versioned<T>>,
    /// Token for the next page; `None` when this page is the last.
    pub next_token: Option<String>,
}

/// The new version of one written record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenRecord {
    /// Record table.
    pub table: String,
    /// Primary key.
    pub key: String,
    /// New version; 0 when the record was deleted.
    pub version: u64,
}

/// What a successful commit wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// Every write, in key order.
    pub written: Vec<WrittenRecord>,
}

impl CommitInfo {
    /// New version of `T`'s record `key` if this commit wrote it (0 for a delete).
    pub fn version_of<T: Record>(&self, key: &str) -> Option<u64> {
        self.written
            .iter()
            .find(|w| w.table == T::TABLE && w.key == key)
            .map(|w| w.version)
    }
}

/// Result of [`Store::update`].
#[derive(Debug, Clone)]
pub struct Updated<R> {
    /// What the closure returned on the attempt that committed.
    pub value: R,
    /// What that commit wrote.
    pub commit: CommitInfo,
    /// How many earlier attempts conflicted and were retried.
    pub conflicts: u32,
}

impl Store {
    /// Creates or opens the redb store at `path` (schema checked and migrated).
    pub fn open(path: impl AsRef<Path>) -> Result<Store, OpenError> {
        Ok(Store::with_backend(Arc::new(RedbBackend::open(path)?)))
    }

    /// [`Store::open`] with redb's page cache bounded to `cache_bytes`.
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Store, OpenError> {
        Ok(Store::with_backend(Arc::new(RedbBackend::open_with_cache(
            path,
            cache_bytes,
        )?)))
    }

    /// A store over any backend.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Store {
        let watchers = Arc::default();
        if backend.shared() {
            crate::record_watch::follow_backend(&backend, &watchers);
        }
        Store {
            backend,
            watchers,
            stats: Arc::default(),
        }
    }

    /// How many records, each with its index entries (up to 7), one
    /// transaction may write: unbounded on redb; on etcd, what its
    /// `--max-txn-ops` leaves room for (a write is one operation, and one
    /// per index entry that changes). Work done in batches (collectors,
    /// grouped RunTasks, a service's starts) stays within it.
    pub fn records_per_txn(&self) -> usize {
        self.backend
            .max_txn_ops()
            .map_or(usize::MAX, |n| (n / 8).max(1))
    }

    /// The backend under this store.
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Commit conflicts and [`Store::update`]'s retries so far.
    pub fn commit_counts(&self) -> CommitCounts {
        CommitCounts {
            conflicts: self.stats.conflicts.load(Ordering::Relaxed),
            retries: self.stats.retries.load(Ordering::Relaxed),
            gave_up: self.stats.gave_up.load(Ordering::Relaxed),
        }
    }

    /// What was opened, with current record counts.
    pub fn info(&self) -> Result<StoreInfo, StoreError> {
        let r = self.backend.open_report();
        Ok(StoreInfo {
            path: r.path,
            schema_version: r.schema_version,
            created: r.created,
            migrated_from: r.migrated_from,
            record_counts: self.backend.table_counts()?,
        })
    }

    /// Starts a transaction on a snapshot of the latest committed state.
    ///
    /// Keep transactions short: an open snapshot stops the engine reusing pages freed since.
    pub fn begin(&self) -> Result<Txn, StoreError> {
        Ok(Txn {
            backend: Arc::clone(&self.backend),
            watchers: Arc::clone(&self.watchers),
            stats: Arc::clone(&self.stats),
            snap: self.backend.snapshot()?,
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
        })
    }

    /// Runs `f` in a transaction and commits it, retrying on a fresh snapshot after each conflict,
    /// up to [`DEFAULT_UPDATE_ATTEMPTS`] attempts. `f` may run several times: keep side effects
    /// out of it.
    pub fn update<R, E, F>(&self, f: F) -> Result<Updated<R>, UpdateError<E>>
    where
        F: FnMut(&mut Txn) -> Result<R, E>,
    {
        self.update_with_attempts(DEFAULT_UPDATE_ATTEMPTS, f)
    }

    /// [`Store::update`] with an explicit attempt bound (at least one attempt is made).
    pub fn update_with_attempts<R, E, F>(
        &self,
        max_attempts: u32,
        mut f: F,
    ) -> Result<Updated<R>, UpdateError<E>>
    where
        F: FnMut(&mut Txn) -> Result<R, E>,
    {
        let mut conflicts = 0u32;
        let mut rng: Option<SmallRng> = None;
        loop {
            let mut txn = self.begin().map_err(UpdateError::Store)?;
            let value = f(&mut txn).map_err(UpdateError::Aborted)?;
            match txn.commit() {
                Ok(commit) => {
                    return Ok(Updated {
                        value,
                        commit,
                        conflicts,
                    });
                }
                Err(CommitError::Conflict { changed }) => {
                    conflicts += 1;
                    if conflicts >= max_attempts {
                        self.stats.gave_up.fetch_add(1, Ordering::Relaxed);
                        return Err(UpdateError::TooManyConflicts {
                            attempts: conflicts,
                            last: changed,
                        });
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    // Jittered, growing backoff so contending writers stop colliding in lockstep.
                    let rng = rng.get_or_insert_with(seeded_rng);
                    let cap_us = 50u64 << conflicts.min(8);
                    std::thread::sleep(Duration::from_micros(rng.random_range(0..cap_us)));
                }
                Err(CommitError::Store(e)) => return Err(UpdateError::Store(e)),
            }
        }
    }

    /// Discrepancies between every record table and its index entries (empty when consistent).
    pub fn verify_indexes(&self) -> Result<Vec<String>, StoreError> {
        self.backend.verify_indexes()
    }

    /// The revision of the latest commit (every write commit raises it by one; 0 before the
    /// first).
    pub fn revision(&self) -> Result<u64, StoreError> {
        self.backend.revision()
    }

    /// Without waiting: the changes to `tables` (every table when empty) after revision `after`
    /// ([`Backend::watch`]).
    pub fn changes(&self, tables: &[&str], after: u64) -> Result<Changes, StoreError> {
        self.backend.watch(tables, after)
    }

    /// Follows the changes to `tables` (every table when empty) committed after revision
    /// `after`, by any handle over this store. To see every change to some records, read them
    /// in a transaction and watch from [`Txn::revision`].
    /// A wait for the next commit through this store that writes record
    /// `key` of `T` (commits by other processes sharing the backend do not
    /// wake it: see [`RecordWatch`]).
    pub fn watch_record<T: Record>(&self, key: &str) -> RecordWatch {
        // A shared backend's feed may report a commit made before the
        // watch began after it: start from the record's version now.
        let current = self
            .backend
            .shared()
            .then(|| {
                self.backend
                    .snapshot()
                    .and_then(|s| s.get(T::TABLE, key))
                    .ok()
            })
            .flatten()
            .map(|r| r.map_or(0, |r| r.version));
        self.watchers.watch(T::TABLE, key, current)
    }

    pub fn watch(&self, tables: &[&str], after: u64) -> Watch {
        Watch {
            backend: Arc::clone(&self.backend),
            tables: tables.iter().map(|t| (*t).to_owned()).collect(),
            after,
            latest: self.backend.subscribe(),
        }
    }
}

/// A follower of some tables' changes, from [`Store::watch`]: each answer starts where the
/// previous one ended.
#[derive(Debug)]
pub struct Watch {
    backend: Arc<dyn Backend>,
    tables: Vec<String>,
    /// Changes up to here were answered.
    after: u64,
    latest: tokio::sync::watch::Receiver<u64>,
}

impl Watch {
    /// The revision the next answer starts after.
    pub fn revision(&self) -> u64 {
        self.after
    }

    /// Without waiting: what changed since the previous answer (perhaps nothing).
    pub fn poll(&mut self) -> Result<Changes, StoreError> {
        // Marked seen before reading, so a commit landing after the read still wakes `next`.
        let latest = *self.latest.borrow_and_update();
        if latest <= self.after {
            // Nothing committed since: no need to ask the backend.
            return Ok(Changes::Events {
                events: Vec::new(),
                revision: self.after,
            });
        }
        let tables: Vec<&str> = self.tables.iter().map(String::as_str).collect();
        let changes = self.backend.watch(&tables, self.after)?;
        self.after = self.after.max(changes.revision());
        Ok(changes)
    }

    /// Waits until a commit changes one of the tables (or the history was compacted) and
    /// answers what changed since the previous answer.
    pub async fn next(&mut self) -> Result<Changes, StoreError> {
        loop {
            let changes = self.poll()?;
            match &changes {
                Changes::Events { events, .. } if events.is_empty() => {}
                _ => return Ok(changes),
            }
            if self.latest.changed().await.is_err() {
                // The backend outlives every receiver it handed out (this watch holds it), so
                // a closed channel means the backend is going away.
                return Err(StoreError::Backend("the store was closed".to_owned()));
            }
        }
    }
}

fn seeded_rng() -> SmallRng {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is randomly keyed per process; hashing the thread id spreads threads apart.
    SmallRng::seed_from_u64(RandomState::new().hash_one(std::thread::current().id()))
}

type TableKey = (String, String);

/// An optimistic transaction: reads from one snapshot, buffers writes, and commits only if
/// nothing it read has changed since (compare-and-swap on every record read or written).
///
/// Point reads ([`Txn::get`]) and every written key are conflict-checked at commit. Page
/// lookups ([`Txn::list`], [`Txn::by_index`], [`Txn::scan_prefix`]) read the same snapshot but
/// are not: records a decision depends on should be read with `get` (or written).
///
/// Versions restart at 1 after a delete, so a record deleted and re-created up to the same
/// version between a read and the commit is not detected (ABA); berth's keys (ARNs with random
/// ids) are not reused, which makes that moot for them.
///
/// Dropping a transaction without committing discards it.
pub struct Txn {
    backend: Arc<dyn Backend>,
    watchers: Arc<RecordWatchers>,
    stats: Arc<CommitStats>,
    snap: Box<dyn Snapshot>,
    /// (table, key) -> version read (0 = absent).
    reads: BTreeMap<TableKey, u64>,
    /// (table, key) -> the new record, or `None` for delete.
    writes: BTreeMap<TableKey, Option<NewRecord>>,
}

impl fmt::Debug for Txn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Txn")
            .field("reads", &self.reads.len())
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl Txn {
    /// Reads record `key` of `T`, seeing this transaction's own buffered writes. The version read
    /// joins the read set.
    pub fn get<T: Record>(&mut self, key: &str) -> Result<Option<Versioned<T>>, StoreError> {
        codec::validate_table(T::TABLE)?;
        let tk = (T::TABLE.to_owned(), key.to_owned());
        if let Some(w) = self.writes.get(&tk) {
            let base = self.reads.get(&tk).copied().unwrap_or(0);
            return w
                .as_ref()
                .map(|w| decode_value::<T>(key, base + 1, &w.data))
                .transpose();
        }
        let raw = self.snap.get(T::TABLE, key)?;
        self.reads
            .entry(tk)
            .or_insert(raw.as_ref().map_or(0, |r| r.version));
        raw.map(|r| decode_value::<T>(key, r.version, &r.data))
            .transpose()
    }

    /// Reads record `key` of `T` as [`Txn::get`] does, without adding it to
    /// the read set: a caller that relies on only some of what it reads
    /// checks those with [`Txn::expect_version`], so changes to the rest
    /// do not make its commit conflict.
    pub fn peek<T: Record>(&self, key: &str) -> Result<Option<Versioned<T>>, StoreError> {
        codec::validate_table(T::TABLE)?;
        let tk = (T::TABLE.to_owned(), key.to_owned());
        if let Some(w) = self.writes.get(&tk) {
            let base = self.reads.get(&tk).copied().unwrap_or(0);
            return w
                .as_ref()
                .map(|w| decode_value::<T>(key, base + 1, &w.data))
                .transpose();
        }
        self.snap
            .get(T::TABLE, key)?
            .map(|r| decode_value::<T>(key, r.version, &r.data))
            .transpose()
    }

    /// Makes the commit conflict unless record `key` of `T` is still at
    /// `version` (0: absent), as if it had been read at that version. A
    /// record already in the read set keeps the version read first.
    pub fn expect_version<T: Record>(&mut self, key: &str, version: u64) -> Result<(), StoreError> {
        codec::validate_table(T::TABLE)?;
        self.reads
            .entry((T::TABLE.to_owned(), key.to_owned()))
            .or_insert(version);
        Ok(())
    }

    /// The revision of the latest commit this transaction's snapshot holds: watching from it
    /// sees every change made after what this transaction reads.
    pub fn revision(&self) -> Result<u64, StoreError> {
        self.snap.revision()
    }

    /// Buffers an insert or update of `value` under `value.key()`.
    pub fn put<T: Record>(&mut self, value: &T) -> Result<(), StoreError> {
        codec::validate_table(T::TABLE)?;
        let key = value.key();
        let index_keys = value.index_keys();
        codec::validate_record_keys(T::TABLE, &key, &index_keys)?;
        let data = serde_json::to_vec(value).map_err(|source| StoreError::Serialize {
            table: T::TABLE,
            key: key.clone(),
            source,
        })?;
        let tk = self.read_before_write(T::TABLE, key)?;
        let index_keys = index_keys
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect();
        self.writes.insert(tk, Some(NewRecord { index_keys, data }));
        Ok(())
    }

    /// Buffers a delete of record `key` of `T`; returns whether it existed in this transaction's
    /// view.
    pub fn delete<T: Record>(&mut self, key: &str) -> Result<bool, StoreError> {
        codec::validate_table(T::TABLE)?;
        let tk = self.read_before_write(T::TABLE, key.to_owned())?;
        let existed = match self.writes.get(&tk) {
            Some(w) => w.is_some(),
            None => self.reads.get(&tk).is_some_and(|v| *v > 0),
        };
        self.writes.insert(tk, None);
        Ok(existed)
    }

    /// Makes sure a key about to be written is in the read set, so the write is CAS-protected.
    fn read_before_write(&mut self, table: &str, key: String) -> Result<TableKey, StoreError> {
        let tk = (table.to_owned(), key);
        if !self.reads.contains_key(&tk) {
            let version = self.snap.get(table, &tk.1)?.map_or(0, |r| r.version);
            self.reads.insert(tk.clone(), version);
        }
        Ok(tk)
    }

    /// A page of `T` records in key order.
    pub fn list<T: Record>(&self, page: PageRequest) -> Result<Page<T>, StoreError> {
        self.scan_prefix::<T>("", page)
    }

    /// A page of `T` records whose key starts with `prefix`, in key order.
    pub fn scan_prefix<T: Record>(
        &self,
        prefix: &str,
        page: PageRequest,
    ) -> Result<Page<T>, StoreError> {
        self.paged::<T>(
            page,
            |snap, after, n| snap.scan(T::TABLE, prefix, after, n),
            |key, _| key.starts_with(prefix),
        )
    }

    /// A page of `T` records with index entry `(index, value)`, in primary key order.
    pub fn by_index<T: Record>(
        &self,
        index: Index<T>,
        value: &str,
        page: PageRequest,
    ) -> Result<Page<T>, StoreError> {
        let index = index.name();
        self.paged::<T>(
            page,
            |snap, after, n| snap.scan_index(T::TABLE, index, value, after, n),
            |_, idx| idx.iter().any(|(i, v)| i == index && v == value),
        )
    }

    /// How many `T` records have index entry `(index, value)`, this
    /// transaction's own writes included. Counted from the index when the
    /// transaction wrote nothing to `T`'s table (no record is decoded),
    /// else by reading them. Records no read: a count does not conflict.
    pub fn count_by_index<T: Record>(
        &self,
        index: Index<T>,
        value: &str,
    ) -> Result<u64, StoreError> {
        codec::validate_table(T::TABLE)?;
        if !self.writes.keys().any(|(table, _)| table == T::TABLE) {
            return self.snap.count_index(T::TABLE, index.name(), value);
        }
        let mut n = 0;
        let mut page = PageRequest::first(1000);
        loop {
            let p = self.by_index(index, value, page)?;
            n += p.items.len() as u64;
            let Some(token) = p.next_token else {
                return Ok(n);
            };
            page = PageRequest {
                token: Some(token),
                limit: 1000,
            };
        }
    }

    /// Merges a snapshot page with this transaction's buffered writes.
    ///
    /// The snapshot may hold records this transaction deleted or re-indexed, so it fetches
    /// `limit + (buffered writes in the table) + 1`: enough that the first `limit + 1` merged
    /// keys are exact, which also tells whether another page follows.
    fn paged<T: Record>(
        &self,
        page: PageRequest,
        fetch: impl FnOnce(
            &dyn Snapshot,
            Option<&str>,
            usize,
        ) -> Result<Vec<(String, RawRecord)>, StoreError>,
        pending_matches: impl Fn(&str, &[(String, String)]) -> bool,
    ) -> Result<Page<T>, StoreError> {
        codec::validate_table(T::TABLE)?;
        if page.limit == 0 {
            return Err(StoreError::InvalidPageRequest("limit must be at least 1"));
        }
        let after = page.token.as_deref().map(codec::decode_token).transpose()?;
        let after = after.as_deref();
        let pending: Vec<(&str, &Option<NewRecord>)> = self
            .writes
            .range((T::TABLE.to_owned(), String::new())..)
            .take_while(|((t, _), _)| t == T::TABLE)
            .map(|((_, k), w)| (k.as_str(), w))
            .collect();
        let want = page.limit.saturating_add(pending.len()).saturating_add(1);

        // key -> (version, data)
        let mut merged: BTreeMap<&str, (u64, &[u8])> = BTreeMap::new();
        let snap_items = fetch(self.snap.as_ref(), after, want)?;
        let buffered = |k: &str| pending.binary_search_by(|(pk, _)| (*pk).cmp(k)).is_ok();
        for (k, rec) in &snap_items {
            if !buffered(k) {
                merged.insert(k, (rec.version, &rec.data));
            }
        }
        for (k, w) in &pending {
            if after.is_some_and(|a| *k <= a) {
                continue;
            }
            if let Some(w) = w
                && pending_matches(k, &w.index_keys)
            {
                let base = self.reads.get(&(T::TABLE.to_owned(), (*k).to_owned()));
                merged.insert(k, (base.copied().unwrap_or(0) + 1, &w.data));
            }
        }

        let more = merged.len() > page.limit;
        let mut items = Vec::with_capacity(page.limit.min(merged.len()));
        let mut last = None;
        for (k, (version, data)) in merged.into_iter().take(page.limit) {
            items.push(decode_value::<T>(k, version, data)?);
            last = Some(k);
        }
        Ok(Page {
            items,
            next_token: if more {
                last.map(codec::encode_token)
            } else {
                None
            },
        })
    }

    /// Commits: checks every record read or written is still at the version read, then applies
    /// all writes atomically and durably. On conflict nothing is written.
    pub fn commit(self) -> Result<CommitInfo, CommitError> {
        if self.writes.is_empty() && self.reads.is_empty() {
            return Ok(CommitInfo::default());
        }
        // Release the snapshot first so the engine may reclaim pages it pinned.
        drop(self.snap);
        let reads: Vec<ReadEntry> = self
            .reads
            .into_iter()
            .map(|((table, key), version)| ReadEntry {
                table,
                key,
                version,
            })
            .collect();
        let writes: Vec<WriteOp> = self
            .writes
            .into_iter()
            .map(|((table, key), put)| WriteOp { table, key, put })
            .collect();
        let versions = match self.backend.commit(&reads, &writes) {
            Err(e @ CommitError::Conflict { .. }) => {
                self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            r => r?,
        };
        self.watchers.fire(
            writes
                .iter()
                .zip(&versions)
                .map(|(w, v)| (w.table.as_str(), w.key.as_str(), *v)),
        );
        Ok(CommitInfo {
            written: writes
                .into_iter()
                .zip(versions)
                .map(|(w, version)| WrittenRecord {
                    table: w.table,
                    key: w.key,
                    version,
                })
                .collect(),
        })
    }
}

fn decode_value<T: Record>(
    key: &str,
    version: u64,
    data: &[u8],
) -> Result<Versioned<T>, StoreError> {
    let value = serde_json::from_slice(data).map_err(|source| StoreError::Deserialize {
        table: T::TABLE.to_owned(),
        key: key.to_owned(),
        source,
    })?;
    Ok(Versioned { version, value })
}
