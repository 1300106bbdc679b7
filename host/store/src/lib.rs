//! berth's persistence layer: typed, versioned records with secondary indexes and optimistic
//! compare-and-swap transactions.
//!
//! This is the only crate that talks to redb. Callers use [`Store`]: open it, [`Store::begin`] a
//! [`Txn`], read with [`Txn::get`] / [`Txn::list`] / [`Txn::by_index`], buffer [`Txn::put`] /
//! [`Txn::delete`], then [`Txn::commit`]; or let [`Store::update`] retry conflicts.
//!
//! ```
//! use berth_store::{Index, Record, Store, PageRequest};
//! # fn main() -> anyhow::Result<()> {
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Cluster { arn: String, status: String }
//! const BY_STATUS: Index<Cluster> = Index::new("status");
//! impl Record for Cluster {
//!     const TABLE: &'static str = "clusters";
//!     fn key(&self) -> String { self.arn.clone() }
//!     fn index_keys(&self) -> Vec<(&'static str, String)> { vec![(BY_STATUS.name(), self.status.clone())] }
//! }
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path().join("berth.redb"))?;
//! let mut txn = store.begin()?;
//! txn.put(&Cluster { arn: "arn:c/default".into(), status: "ACTIVE".into() })?;
//! txn.commit()?;
//! let page = store.begin()?.by_index(BY_STATUS, "ACTIVE", PageRequest::first(10))?;
//! assert_eq!(page.items[0].version, 1);
//! # Ok(()) }
//! ```

use std::marker::PhantomData;

mod backend;
pub mod codec;
mod error;
mod group_commit;
mod raw;
mod record_watch;
mod redb_backend;
mod store;
pub mod tables;

#[cfg(test)]
mod fuzz;

pub use backend::{
    Backend, Change, ChangeKind, Changes, NewRecord, OpenReport, ReadEntry, Snapshot, WriteOp,
};
pub use codec::RawRecord;
pub use error::{CommitError, ConflictEntry, OpenError, StoreError, UpdateError};
pub use raw::RawEntry;
pub use record_watch::RecordWatch;
pub use redb_backend::{DEFAULT_CACHE_BYTES, DEFAULT_CHANGE_LOG_LEN, RedbBackend, SCHEMA_VERSION};
pub use store::{
    CommitCounts, CommitInfo, DEFAULT_UPDATE_ATTEMPTS, Page, PageRequest, Store, StoreInfo, Txn,
    Updated, Watch, WrittenRecord,
};

/// A type stored in its own table.
pub trait Record: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// Table name; must not be empty or start with `__` (reserved for the store).
    const TABLE: &'static str;

    /// Primary key (non-empty).
    fn key(&self) -> String;

    /// Secondary index entries: (index name, indexed value). Maintained in the same transaction
    /// as the table. Names must be non-empty; neither may contain NUL.
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// A secondary index of table `T`, by name. One const per index, used by
/// the table's [`Record::index_keys`] and by every lookup, so a lookup names
/// an index its table has, spelled once.
pub struct Index<T> {
    name: &'static str,
    table: PhantomData<fn() -> T>,
}

impl<T> Index<T> {
    /// The index `name` of `T`'s table.
    pub const fn new(name: &'static str) -> Self {
        Index {
            name,
            table: PhantomData,
        }
    }

    /// The name the index is stored under.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

// By hand: derives would require `T: Clone`.
impl<T> Clone for Index<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Index<T> {}

impl<T> std::fmt::Debug for Index<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Index({})", self.name)
    }
}

/// A record with its version: 1 on first write, +1 per update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// Version of the record as read.
    pub version: u64,
    /// The record.
    pub value: T,
}
