//! [`Backend::commit`](berth_store::Backend::commit) on etcd, as
//! Kubernetes' etcd3 store writes: one etcd transaction,
//! `If(every record read is at its version) Then(the puts and deletes,
//! index entries included) Else(read the versions)`.
//!
//! A record's version is etcd's `version` of its key (1 on creation, +1
//! per put, gone on delete), so the read set compares `Version(key) ==
//! read`. The keys written are also compared on `ModRevision`, at what a
//! read of them just before found: that read is where the old index
//! entries to remove come from, and the compare makes sure they are still
//! the ones in force.

use std::collections::{BTreeMap, BTreeSet};

use berth_store::codec::encode_record;
use berth_store::{CommitError, ConflictEntry, ReadEntry, StoreError, WriteOp};
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};

use crate::Inner;
use crate::snapshot::raw;

/// What a record key holds now, as far as a commit needs.
#[derive(Debug, Clone, Default)]
struct Current {
    version: u64,
    mod_revision: i64,
    index_keys: Vec<(String, String)>,
}

/// How many times a commit whose written keys moved (and none of its reads)
/// reads them again before giving up.
const ATTEMPTS: u32 = 8;

impl Inner {
    pub(crate) fn commit(
        &self,
        reads: &[ReadEntry],
        writes: &[WriteOp],
    ) -> Result<Vec<u64>, CommitError> {
        if writes.is_empty() {
            return self.check_reads(reads);
        }
        for _ in 0..ATTEMPTS {
            let current = self.current(writes)?;
            let read_at: BTreeMap<(&str, &str), u64> = reads
                .iter()
                .map(|r| ((r.table.as_str(), r.key.as_str()), r.version))
                .collect();
            let moved: Vec<ConflictEntry> = writes
                .iter()
                .zip(&current)
                .filter_map(|(w, c)| {
                    let read = *read_at.get(&(w.table.as_str(), w.key.as_str()))?;
                    (read != c.version).then(|| conflict(&w.table, &w.key, read, c.version))
                })
                .collect();
            if !moved.is_empty() {
                return Err(CommitError::Conflict { changed: moved });
            }
            let txn = self.build(reads, writes, &current)?;
            let resp = self.send(txn)?;
            if resp.succeeded() {
                let wrote = writes
                    .iter()
                    .zip(&current)
                    .any(|(w, c)| w.put.is_some() || c.version > 0);
                if wrote {
                    // Not a transaction that changed nothing: its header
                    // names a revision the watch may never show.
                    self.committed(resp.header().map(|h| h.revision()));
                }
                return Ok(writes
                    .iter()
                    .zip(&current)
                    .map(|(w, c)| if w.put.is_some() { c.version + 1 } else { 0 })
                    .collect());
            }
            let changed = self.changed_reads(reads, &resp);
            if !changed.is_empty() {
                return Err(CommitError::Conflict { changed });
            }
            // Only a written key the caller did not read moved: read it again.
        }
        Err(CommitError::Store(StoreError::Backend(format!(
            "etcd: the records of a commit kept changing under it ({ATTEMPTS} attempts)"
        ))))
    }

    /// A commit that writes nothing: its reads must all still be current.
    fn check_reads(&self, reads: &[ReadEntry]) -> Result<Vec<u64>, CommitError> {
        for chunk in reads.chunks(self.max_txn_ops) {
            let txn = Txn::new()
                .when(self.read_compares(chunk))
                .or_else(self.version_gets(chunk));
            let resp = self.send(txn)?;
            if !resp.succeeded() {
                let changed = self.changed_reads(chunk, &resp);
                return Err(CommitError::Conflict { changed });
            }
        }
        Ok(Vec::new())
    }

    fn read_compares(&self, reads: &[ReadEntry]) -> Vec<Compare> {
        reads
            .iter()
            .map(|r| {
                let v = i64::try_from(r.version).unwrap_or(i64::MAX);
                Compare::version(self.keys.record(&r.table, &r.key), CompareOp::Equal, v)
            })
            .collect()
    }

    /// The failure branch: each read record's current version.
    fn version_gets(&self, reads: &[ReadEntry]) -> Vec<TxnOp> {
        reads
            .iter()
            .map(|r| {
                TxnOp::get(
                    self.keys.record(&r.table, &r.key),
                    Some(GetOptions::new().with_keys_only()),
                )
            })
            .collect()
    }

    /// The reads whose version moved, from a failed transaction's answer.
    fn changed_reads(&self, reads: &[ReadEntry], resp: &TxnResponse) -> Vec<ConflictEntry> {
        reads
            .iter()
            .zip(resp.op_responses())
            .filter_map(|(r, op)| {
                let TxnOpResponse::Get(g) = op else {
                    return None;
                };
                let now = g
                    .kvs()
                    .first()
                    .map_or(0, |kv| u64::try_from(kv.version()).unwrap_or(0));
                (now != r.version).then(|| conflict(&r.table, &r.key, r.version, now))
            })
            .collect()
    }

    /// What each written key holds now (one request for all of them).
    fn current(&self, writes: &[WriteOp]) -> Result<Vec<Current>, StoreError> {
        let mut out = Vec::with_capacity(writes.len());
        for chunk in writes.chunks(self.max_txn_ops) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|w| TxnOp::get(self.keys.record(&w.table, &w.key), None))
                .collect();
            let resp = self.send(Txn::new().and_then(ops))?;
            for (w, op) in chunk.iter().zip(resp.op_responses()) {
                let kv = match &op {
                    TxnOpResponse::Get(g) => g.kvs().first(),
                    _ => None,
                };
                out.push(match kv {
                    None => Current::default(),
                    Some(kv) => {
                        let rec = raw(&w.table, &w.key, kv)?;
                        Current {
                            version: rec.version,
                            mod_revision: kv.mod_revision(),
                            index_keys: rec.index_keys,
                        }
                    }
                });
            }
        }
        Ok(out)
    }

    /// The transaction: compares, then the writes with their index changes.
    fn build(
        &self,
        reads: &[ReadEntry],
        writes: &[WriteOp],
        current: &[Current],
    ) -> Result<Txn, StoreError> {
        // A record both read and written is compared once, on its
        // ModRevision (its read version was checked against what the read
        // just before found): a transaction of n records needs n compares.
        let written: BTreeSet<(&str, &str)> = writes
            .iter()
            .map(|w| (w.table.as_str(), w.key.as_str()))
            .collect();
        let read_only: Vec<ReadEntry> = reads
            .iter()
            .filter(|r| !written.contains(&(r.table.as_str(), r.key.as_str())))
            .cloned()
            .collect();
        let mut compares = self.read_compares(&read_only);
        let mut ops = Vec::new();
        let mut bytes = 0usize;
        for (w, c) in writes.iter().zip(current) {
            let key = self.keys.record(&w.table, &w.key);
            compares.push(Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                c.mod_revision,
            ));
            let old: BTreeSet<&(String, String)> = c.index_keys.iter().collect();
            let new: BTreeSet<&(String, String)> = match &w.put {
                Some(p) => p.index_keys.iter().collect(),
                None => BTreeSet::new(),
            };
            for (index, value) in old.difference(&new) {
                ops.push(TxnOp::delete(
                    self.keys.index_entry(&w.table, index, value, &w.key),
                    None,
                ));
            }
            for (index, value) in new.difference(&old) {
                let k = self.keys.index_entry(&w.table, index, value, &w.key);
                bytes += k.len() + 8;
                ops.push(TxnOp::put(k, Vec::new(), None));
            }
            match &w.put {
                Some(p) => {
                    let value = encode_record(c.version + 1, &p.index_keys, &p.data);
                    bytes += key.len() + value.len() + 8;
                    ops.push(TxnOp::put(key, value, None));
                }
                None if c.version > 0 => ops.push(TxnOp::delete(key, None)),
                None => {}
            }
        }
        bytes += compares.len() * 64 + ops.len() * 16;
        self.check_size(compares.len(), ops.len(), bytes)?;
        let failure = self.version_gets(reads);
        Ok(Txn::new().when(compares).and_then(ops).or_else(failure))
    }

    /// Refuses, naming the figures, a transaction etcd would refuse.
    fn check_size(&self, compares: usize, ops: usize, bytes: usize) -> Result<(), StoreError> {
        let max = self.max_txn_ops;
        if compares > max || ops > max {
            return Err(StoreError::Backend(format!(
                "etcd: a transaction of {compares} compares and {ops} operations is over etcd's \
                 limit of {max} of each (--max-txn-ops); this write must be split"
            )));
        }
        if bytes > self.max_request_bytes {
            return Err(StoreError::Backend(format!(
                "etcd: a transaction of about {bytes} bytes is over etcd's request limit of {} \
                 bytes (--max-request-bytes); this write must be split",
                self.max_request_bytes
            )));
        }
        Ok(())
    }

    fn send(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let kv = self.kv();
        self.runner.run("transaction", move || {
            let (mut kv, txn) = (kv.clone(), txn.clone());
            async move { kv.txn(txn).await }
        })
    }
}

fn conflict(table: &str, key: &str, read: u64, now: u64) -> ConflictEntry {
    ConflictEntry {
        table: table.to_owned(),
        key: key.to_owned(),
        read_version: read,
        current_version: now,
    }
}
