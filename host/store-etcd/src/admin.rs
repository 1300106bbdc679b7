//! Whole-store reads: the record counts per table and the index check.

use std::collections::{BTreeMap, BTreeSet};

use berth_store::StoreError;
use etcd_client::{GetOptions, KeyValue};

use crate::Inner;
use crate::keys::prefix_end;
use crate::snapshot::raw;

/// Keys read per request when walking the whole store.
const PAGE: i64 = 2000;

impl Inner {
    /// Every key under `prefix` at one revision, a page at a time.
    fn walk(
        &self,
        prefix: &str,
        keys_only: bool,
        mut each: impl FnMut(&KeyValue) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let end = prefix_end(prefix);
        let mut start = prefix.as_bytes().to_vec();
        let mut revision = 0;
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE)
                .with_revision(revision);
            if keys_only {
                opts = opts.with_keys_only();
            }
            let kv = self.kv();
            let from = start.clone();
            let mut resp = self.runner.run("reading the store", move || {
                let (mut kv, from, opts) = (kv.clone(), from.clone(), opts.clone());
                async move { kv.get(from, Some(opts)).await }
            })?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            for kv in &kvs {
                each(kv)?;
            }
            match kvs.last() {
                Some(last) if more => {
                    start = last.key().to_vec();
                    start.push(0); // the first key after it
                }
                _ => return Ok(()),
            }
        }
    }

    pub(crate) fn table_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        self.walk(&self.keys.records(), true, |kv| {
            if let Some((table, _)) = self.keys.parse_record(kv.key()) {
                *counts.entry(table.to_owned()).or_insert(0) += 1;
            }
            Ok(())
        })?;
        Ok(counts)
    }

    pub(crate) fn verify_indexes(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let mut expected = BTreeSet::new();
        self.walk(&self.keys.records(), false, |kv| {
            let Some((table, key)) = self.keys.parse_record(kv.key()) else {
                problems.push(format!("unreadable record key {:?}", kv.key()));
                return Ok(());
            };
            match raw(table, key, kv) {
                Ok(rec) => {
                    for (index, value) in rec.index_keys {
                        expected.insert(self.keys.index_entry(table, &index, &value, key));
                    }
                }
                Err(e) => problems.push(format!("{table}/{key}: {e}")),
            }
            Ok(())
        })?;
        let mut actual = BTreeSet::new();
        self.walk(&self.keys.indexes(), true, |kv| {
            actual.insert(String::from_utf8_lossy(kv.key()).into_owned());
            Ok(())
        })?;
        let describe = |e: &str| match self.keys.parse_index(e.as_bytes()) {
            Some((t, i, v, k)) => format!("{t}: {i}={v:?} -> {k:?}"),
            None => format!("{e:?}"),
        };
        for e in actual.difference(&expected) {
            problems.push(format!(
                "index entry {} has no matching record",
                describe(e)
            ));
        }
        for e in expected.difference(&actual) {
            problems.push(format!("record is missing index entry {}", describe(e)));
        }
        Ok(problems)
    }
}
