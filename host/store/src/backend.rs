//! The raw-bytes storage interface that [`crate::Store`] is built on.
//!
//! Object safe and free of serde types, so another engine (etcd, say) can implement it: it needs
//! consistent snapshots, ordered key ranges, and an atomic "check these versions, then write"
//! commit.

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
}

/// A read-only, point-in-time view.
pub trait Snapshot: Send + Sync {
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
