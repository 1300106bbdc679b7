//! The raw-bytes storage interface that [`crate::Store`] is built on.
//!
//! Object safe and free of serde types, so another engine (etcd, say) can implement it: it needs
//! consistent snapshots, ordered key ranges, an atomic "check these versions, then write" commit,
//! and a store-wide revision with a watch of the changes after one. The watch is shaped after
//! etcd's: a revision is a `u64` every write commit raises by one, changes come as
//! `(revision, table, key, put/delete)` events after a start revision, and a caller further
//! behind than the backend keeps history for is told to relist ([`Changes::Compacted`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::codec::RawRecord;
use crate::error::{CommitError, StoreError};

/// One entry of a transaction's read set: the version seen (0 = absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    /// Record table.
    pub table: String,
    /// Primary key.
    pub key: String,
    /// Version read from the snapshot; 0 if the record was absent.
    pub version: u64,
}

/// One buffered write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOp {
    /// Record table.
    pub table: String,
    /// Primary key.
    pub key: String,
    /// The record to store, or `None` to delete.
    pub put: Option<NewRecord>,
}

/// The content of a buffered put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// `(index name, indexed value)` entries of the record.
    pub index_keys: Vec<(String, String)>,
    /// The serialised value.
    pub data: Vec<u8>,
}

/// A storage engine holding versioned records and their secondary indexes.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A consistent read view of the latest committed state.
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError>;

    /// Atomically: if every read entry is still at its version, apply `writes` durably (version
    /// becomes current plus one, index entries are replaced) and return the new version of each
    /// write (0 for a delete), in order. Otherwise write nothing and return
    /// [`CommitError::Conflict`].
    fn commit(&self, reads: &[ReadEntry], writes: &[WriteOp]) -> Result<Vec<u64>, CommitError>;

    /// Number of records per record table.
    fn table_counts(&self) -> Result<BTreeMap<String, u64>, StoreError>;

    /// Human-readable discrepancies between record tables and their index entries.
    fn verify_indexes(&self) -> Result<Vec<String>, StoreError>;

    /// What was opened, as established when the backend was opened.
    fn open_report(&self) -> OpenReport;

    /// The revision of the latest commit (0 before the first).
    fn revision(&self) -> Result<u64, StoreError>;

    /// Without waiting: the changes to `tables` (every table when empty) committed after revision
    /// `after`, oldest first, or [`Changes::Compacted`] when the history after `after` is no
    /// longer kept.
    fn watch(&self, tables: &[&str], after: u64) -> Result<Changes, StoreError>;

    /// The latest revision, updated when a commit lands (in this process for an embedded engine,
    /// from the server's watch stream for a remote one): await `changed()` on it, then ask
    /// [`Backend::watch`] what changed.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The most compares, and the most operations, one commit may carry
    /// (etcd's `--max-txn-ops`); `None` when the engine has no such limit.
    fn max_txn_ops(&self) -> Option<usize> {
        None
    }

    /// Whether other processes commit to this store too (a store on etcd
    /// shared by several servers): then their commits must wake this
    /// process's record watches, from the backend's change feed.
    fn shared(&self) -> bool {
        false
    }
}

/// What a commit did to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Written; the record's new version (as etcd's `kv.version`: 1 on creation).
    Put {
        /// The version the record now has.
        version: u64,
    },
    /// Deleted.
    Delete,
}

/// One change to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The revision of the commit that made it.
    pub revision: u64,
    /// Record table.
    pub table: String,
    /// Primary key.
    pub key: String,
    /// Put or delete.
    pub kind: ChangeKind,
}

/// The answer of [`Backend::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Every change after the start revision up to `revision`, oldest first (a commit's changes
    /// in key order); the next watch starts after `revision`.
    Events {
        /// The changes to the tables asked for.
        events: Vec<Change>,
        /// The latest revision this answer covers.
        revision: u64,
    },
    /// The history after the start revision is gone: read the state afresh (it is current as of
    /// at least `revision`) and watch on from `revision`.
    Compacted {
        /// The oldest start revision still answered with events.
        compacted: u64,
        /// The latest revision.
        revision: u64,
    },
}

impl Changes {
    /// The latest revision the answer covers: where the next watch starts.
    pub fn revision(&self) -> u64 {
        match self {
            Changes::Events { revision, .. } | Changes::Compacted { revision, .. } => *revision,
        }
    }
}

/// A read-only, point-in-time view.
pub trait Snapshot: Send + Sync {
    /// The revision of the latest commit this view holds.
    fn revision(&self) -> Result<u64, StoreError>;

    /// One record, or `None` if absent.
    fn get(&self, table: &str, key: &str) -> Result<Option<RawRecord>, StoreError>;

    /// Up to `limit` records of `table` whose key starts with `prefix` and sorts after `after`,
    /// in key order.
    fn scan(
        &self,
        table: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, RawRecord)>, StoreError>;

    /// Up to `limit` records of `table` that have index entry `(index, value)` and whose primary
    /// key sorts after `after`, in primary key order.
    fn scan_index(
        &self,
        table: &str,
        index: &str,
        value: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, RawRecord)>, StoreError>;

    /// How many records of `table` have index entry `(index, value)`,
    /// counted from the index alone (no record is read).
    fn count_index(&self, table: &str, index: &str, value: &str) -> Result<u64, StoreError>;
}

/// Facts established when a store was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Where the data lives.
    pub path: PathBuf,
    /// Schema version of the data after opening (and migrating).
    pub schema_version: u32,
    /// Whether this open created a new, empty store.
    pub created: bool,
    /// Schema version found before migrations ran, if any ran.
    pub migrated_from: Option<u32>,
}
