//! The whole store as stored, for `berth store export` / `import`: every
//! record with its index entries, read from one snapshot, and written back
//! into an empty store of either backend.

use crate::backend::{NewRecord, ReadEntry, WriteOp};
use crate::codec::{self, RawRecord};
use crate::error::{CommitError, StoreError};
use crate::store::Store;

/// One record as stored, outside any transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Record table.
    pub table: String,
    /// Primary key.
    pub key: String,
    /// The record's index entries.
    pub index_keys: Vec<(String, String)>,
    /// Its serialised value (JSON).
    pub data: Vec<u8>,
}

/// Records read per page while exporting.
const PAGE: usize = 500;

impl Store {
    /// Calls `each` with every record of every table, in table then key
    /// order, all read from one snapshot; answers how many there were.
    pub fn for_each_raw(
        &self,
        mut each: impl FnMut(RawEntry) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let tables = self.backend().table_counts()?;
        let snap = self.backend().snapshot()?;
        let mut n = 0;
        for table in tables.keys() {
            let mut after: Option<String> = None;
            loop {
                let page = snap.scan(table, "", after.as_deref(), PAGE)?;
                let full = page.len() == PAGE;
                for (
                    key,
                    RawRecord {
                        index_keys, data, ..
                    },
                ) in page
                {
                    after = Some(key.clone());
                    each(RawEntry {
                        table: table.clone(),
                        key,
                        index_keys,
                        data,
                    })?;
                    n += 1;
                }
                if !full {
                    break;
                }
            }
        }
        Ok(n)
    }

    /// Writes `entries` in one commit, each as a new record (the commit
    /// conflicts if any is there already): records keep their content and
    /// index entries, and start again at version 1.
    pub fn put_raw(&self, entries: &[RawEntry]) -> Result<(), CommitError> {
        let mut reads = Vec::with_capacity(entries.len());
        let mut writes = Vec::with_capacity(entries.len());
        for e in entries {
            codec::validate_table(&e.table)?;
            reads.push(ReadEntry {
                table: e.table.clone(),
                key: e.key.clone(),
                version: 0,
            });
            writes.push(WriteOp {
                table: e.table.clone(),
                key: e.key.clone(),
                put: Some(NewRecord {
                    index_keys: e.index_keys.clone(),
                    data: e.data.clone(),
                }),
            });
        }
        reads.sort_by(|a, b| (&a.table, &a.key).cmp(&(&b.table, &b.key)));
        writes.sort_by(|a, b| (&a.table, &a.key).cmp(&(&b.table, &b.key)));
        self.backend().commit(&reads, &writes).map(|_| ())
    }
}
