//! [`Snapshot`] on etcd: every read at one revision. The first read is
//! linearizable (at the latest revision) and fixes the revision the rest
//! read at, so a snapshot costs no round trip of its own and sees every
//! commit acknowledged before it began.

use std::sync::{Arc, OnceLock};

use berth_store::codec::decode_record;
use berth_store::{RawRecord, Snapshot, StoreError};
use etcd_client::{GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};

use crate::Inner;
use crate::keys::{prefix_end, successor};

pub(crate) struct EtcdSnapshot {
    pub(crate) inner: Arc<Inner>,
    pub(crate) revision: OnceLock<i64>,
}

impl EtcdSnapshot {
    fn at(&self) -> i64 {
        self.revision.get().copied().unwrap_or(0)
    }

    fn get_range(&self, key: Vec<u8>, opts: GetOptions) -> Result<Vec<KeyValue>, StoreError> {
        let kv = self.inner.kv();
        let opts = opts.with_revision(self.at());
        let mut resp = self.inner.runner.run("read", move || {
            let (mut kv, key, opts) = (kv.clone(), key.clone(), opts.clone());
            async move { kv.get(key, Some(opts)).await }
        })?;
        self.pin(resp.header().map(|h| h.revision()));
        Ok(resp.take_kvs())
    }

    fn pin(&self, revision: Option<i64>) {
        if let Some(r) = revision {
            let _ = self.revision.set(r);
        }
    }

    /// The records `keys` of `table`, at this snapshot's revision, in order
    /// (absent ones left out), up to [`crate::MAX_TXN_OPS`] per request.
    fn get_many(
        &self,
        table: &str,
        keys: &[String],
    ) -> Result<Vec<(String, RawRecord)>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(self.inner.max_txn_ops) {
            let rev = self.at();
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|k| {
                    TxnOp::get(
                        self.inner.keys.record(table, k),
                        Some(GetOptions::new().with_revision(rev)),
                    )
                })
                .collect();
            let kv = self.inner.kv();
            let txn = Txn::new().and_then(ops);
            let resp = self.inner.runner.run("read", move || {
                let (mut kv, txn) = (kv.clone(), txn.clone());
                async move { kv.txn(txn).await }
            })?;
            self.pin(resp.header().map(|h| h.revision()));
            for (k, op) in chunk.iter().zip(resp.op_responses()) {
                let TxnOpResponse::Get(g) = op else {
                    continue;
                };
                if let Some(kv) = g.kvs().first() {
                    out.push((k.clone(), raw(table, k, kv)?));
                }
            }
        }
        Ok(out)
    }
}

/// A stored record with etcd's version of it.
pub(crate) fn raw(table: &str, key: &str, kv: &KeyValue) -> Result<RawRecord, StoreError> {
    let mut rec = decode_record(table, key, kv.value())?;
    rec.version = u64::try_from(kv.version()).unwrap_or(0);
    Ok(rec)
}

impl Snapshot for EtcdSnapshot {
    fn revision(&self) -> Result<u64, StoreError> {
        if self.revision.get().is_none() {
            let r = self.inner.latest_revision()?;
            self.pin(Some(r));
        }
        Ok(u64::try_from(self.at()).unwrap_or(0))
    }

    fn get(&self, table: &str, key: &str) -> Result<Option<RawRecord>, StoreError> {
        let kvs = self.get_range(
            self.inner.keys.record(table, key).into_bytes(),
            GetOptions::new(),
        )?;
        kvs.first().map(|kv| raw(table, key, kv)).transpose()
    }

    fn scan(
        &self,
        table: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, RawRecord)>, StoreError> {
        let keys = &self.inner.keys;
        let start = match after {
            Some(a) if a >= prefix => successor(&keys.record(table, a)),
            _ => keys.record_prefix(table, prefix).into_bytes(),
        };
        let end = prefix_end(&keys.record_prefix(table, prefix));
        let opts = GetOptions::new()
            .with_range(end)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        for kv in self.get_range(start, opts)? {
            let Some((_, key)) = keys.parse_record(kv.key()) else {
                continue;
            };
            out.push((key.to_owned(), raw(table, key, &kv)?));
        }
        Ok(out)
    }

    fn scan_index(
        &self,
        table: &str,
        index: &str,
        value: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, RawRecord)>, StoreError> {
        let keys = &self.inner.keys;
        let prefix = keys.index_prefix(table, index, value);
        let start = match after {
            Some(a) => successor(&format!("{prefix}{a}")),
            None => prefix.clone().into_bytes(),
        };
        let opts = GetOptions::new()
            .with_range(prefix_end(&prefix))
            .with_keys_only()
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let pks: Vec<String> = self
            .get_range(start, opts)?
            .iter()
            .filter_map(|kv| keys.parse_index(kv.key()).map(|(.., k)| k.to_owned()))
            .collect();
        let found = self.get_many(table, &pks)?;
        if found.len() != pks.len() {
            let missing = pks.iter().find(|k| !found.iter().any(|(f, _)| f == *k));
            return Err(StoreError::Corrupt {
                table: format!("{table} index {index}"),
                key: missing.cloned().unwrap_or_default(),
                reason: "index entry points to a missing record".to_owned(),
            });
        }
        Ok(found)
    }

    fn count_index(&self, table: &str, index: &str, value: &str) -> Result<u64, StoreError> {
        let prefix = self.inner.keys.index_prefix(table, index, value);
        let kv = self.inner.kv();
        let opts = GetOptions::new()
            .with_range(prefix_end(&prefix))
            .with_count_only()
            .with_revision(self.at());
        let resp = self.inner.runner.run("count", move || {
            let (mut kv, prefix, opts) = (kv.clone(), prefix.clone(), opts.clone());
            async move { kv.get(prefix, Some(opts)).await }
        })?;
        self.pin(resp.header().map(|h| h.revision()));
        Ok(u64::try_from(resp.count()).unwrap_or(0))
    }
}
