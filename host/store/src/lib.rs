//! berth's persistence layer: typed, versioned records with secondary indexes and optimistic
//! compare-and-swap transactions.
//!
//! This is the only crate that talks to redb. Callers use [`Store`]: open it, [`Store::begin`] a
//! [`Txn`], read with [`Txn::get`] / [`Txn::list`] / [`Txn::by_index`], buffer [`Txn::put`] /
//! [`Txn::delete`], then [`Txn::commit`]; or let [`Store::update`] retry conflicts.
//!
//! ```
//! use berth_store::{Record, Store, PageRequest};
//! # fn main() -> anyhow::Result<()> {
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Cluster { arn: String, status: String }
//! impl Record for Cluster {
//!     const TABLE: &'static str = "clusters";
//!     fn key(&self) -> String { self.arn.clone() }
//!     fn index_keys(&self) -> Vec<(&'static str, String)> { vec![("status", self.status.clone())] }
//! }
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path().join("berth.redb"))?;
//! let mut txn = store.begin()?;
//! txn.put(&Cluster { arn: "arn:c/default".into(), status: "ACTIVE".into() })?;
//! txn.commit()?;
//! let page = store.begin()?.by_index::<Cluster>("status", "ACTIVE", PageRequest::first(10))?;
//! assert_eq!(page.items[0].version, 1);
//! # Ok(()) }
//! ```

mod backend;
mod codec;
mod error;
mod redb_backend;
mod store;
pub mod tables;

pub use backend::{
    Backend, Change, ChangeKind, Changes, NewRecord, OpenReport, ReadEntry, Snapshot, WriteOp,
};
pub use codec::RawRecord;
pub use error::{CommitError, ConflictEntry, OpenError, StoreError, UpdateError};
pub use redb_backend::{DEFAULT_CHANGE_LOG_LEN, RedbBackend, SCHEMA_VERSION};
pub use store::{
    CommitInfo, DEFAULT_UPDATE_ATTEMPTS, Page, PageRequest, Store, StoreInfo, Txn, Updated, Watch,
    WrittenRecord,
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

/// A record with its version: 1 on first write, +1 per update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// Version of the record as read.
    pub version: u64,
    /// The record.
    pub value: T,
}
