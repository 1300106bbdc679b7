//! Error types of the store.

use std::fmt;
use std::path::PathBuf;

/// A failure while reading or writing records (not a conflict: see [`CommitError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed (corruption detected by the engine, ...).
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The store's file could not be read or written (a full disk, an I/O
    /// error). Nothing was written; the store reopens its file before the
    /// next write, so a later try can succeed once the cause is gone.
    #[error("the store cannot write its file: {0}")]
    Io(String),
    /// A value could not be turned into bytes.
    #[error("cannot serialise {table}/{key}: {source}")]
    Serialize {
        /// Table of the record.
        table: &'static str,
        /// Primary key of the record.
        key: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// Stored bytes did not deserialise into the requested record type.
    #[error("cannot deserialise {table}/{key}: {source}")]
    Deserialize {
        /// Table of the record.
        table: String,
        /// Primary key of the record.
        key: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// Stored bytes are not in the store's record format, or an index is inconsistent.
    #[error("corrupt store data in {table}/{key}: {reason}")]
    Corrupt {
        /// Table (or index table) holding the bad entry.
        table: String,
        /// Key of the bad entry.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A page token that this store did not hand out (or that was altered).
    #[error("malformed page token {token:?}: {reason}")]
    InvalidPageToken {
        /// The start of the token as received (at most 32 characters).
        token: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A page request that cannot be served (e.g. a limit of 0).
    #[error("invalid page request: {0}")]
    InvalidPageRequest(&'static str),
    /// A primary key, table name or index entry that the storage format cannot hold.
    #[error("invalid key {key:?} in {table}: {reason}")]
    InvalidKey {
        /// Table the key was meant for.
        table: String,
        /// The offending key or index value.
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            // PreviousIo: an earlier write failed and redb refuses writes
            // until the file is reopened.
            redb::Error::Io(_) | redb::Error::PreviousIo => StoreError::Io(e.to_string()),
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

// redb reports each kind of failure with its own type; all of them are backend errors here.
macro_rules! redb_into_store_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from(redb::Error::from(e))
            }
        }
    )*};
}
redb_into_store_error!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

/// One record whose version changed between a transaction's read and its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictEntry {
    /// Table of the record.
    pub table: String,
    /// Primary key of the record.
    pub key: String,
    /// Version the transaction read (0: the record was absent).
    pub read_version: u64,
    /// Version found at commit time (0: the record is now absent).
    pub current_version: u64,
}

impl fmt::Display for ConflictEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} (read v{}, now v{})",
            self.table, self.key, self.read_version, self.current_version
        )
    }
}

/// Why a commit wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// Records read by the transaction changed before it committed; nothing was written.
    #[error("commit conflict: {} record(s) changed since read: {}", changed.len(), join(changed))]
    Conflict {
        /// Every record of the read set whose version moved.
        changed: Vec<ConflictEntry>,
    },
    /// The store failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<redb::Error> for CommitError {
    fn from(e: redb::Error) -> Self {
        CommitError::Store(e.into())
    }
}

fn join(entries: &[ConflictEntry]) -> String {
    entries
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why [`crate::Store::update`] gave up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError<E> {
    /// The closure returned an error; its transaction was dropped unwritten.
    #[error("update aborted: {0}")]
    Aborted(E),
    /// Every attempt conflicted.
    #[error(
        "update gave up after {attempts} conflicting attempts; last: {}",
        join(last)
    )]
    TooManyConflicts {
        /// How many times the closure ran and conflicted.
        attempts: u32,
        /// The conflicts of the last attempt.
        last: Vec<ConflictEntry>,
    },
    /// The store failed while committing.
    #[error(transparent)]
    Store(StoreError),
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file was written by a newer berth whose schema this build does not know.
    #[error(
        "store {} has schema version {found}, but this berth supports at most version {supported}; \
         upgrade berth or use another data directory",
        path.display()
    )]
    SchemaTooNew {
        /// The store file.
        path: PathBuf,
        /// Schema version recorded in the file.
        found: u32,
        /// Newest schema version this build knows.
        supported: u32,
    },
    /// A migration step failed; the file is left at the version before it.
    #[error("migrating store {} from schema {from} to {to} failed: {reason}", path.display())]
    Migration {
        /// The store file.
        path: PathBuf,
        /// Version the failed step started from.
        from: u32,
        /// Version the failed step was heading for.
        to: u32,
        /// What went wrong.
        reason: String,
    },
    /// The meta table holds something this build cannot read.
    #[error("store {} has an unreadable meta table: {reason}", path.display())]
    BadMeta {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file could not be created or opened.
    #[error("cannot open store {}: {source}", path.display())]
    Backend {
        /// The store file.
        path: PathBuf,
        /// The underlying error.
        source: StoreError,
    },
}
