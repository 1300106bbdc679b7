//! Writing: transactions' commits, grouped ([`GroupCommit`]) into one
//! redb write transaction each, validated and logged one by one.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use redb::{ReadableTable, WriteTransaction};

use super::*;

/// One transaction's commit, queued for a group ([`GroupCommit`]).
#[derive(Debug)]
pub(super) struct Job {
    pub(super) reads: Vec<ReadEntry>,
    pub(super) writes: Vec<WriteOp>,
}

/// A job's answer.
pub(super) type JobResult = Result<Vec<u64>, CommitError>;

impl RedbBackend {
    /// A read-only transaction's commit: its reads still at their versions.
    pub(super) fn check_reads(&self, reads: &[ReadEntry]) -> JobResult {
        let rtx = self.db()?.begin_read().map_err(StoreError::from)?;
        let mut changed = Vec::new();
        for (table, entries) in &reads_by_table(reads) {
            let t = open_read(&rtx, record_table(table))?;
            check_table(table, t.as_ref(), entries, &mut changed)?;
        }
        conflict_or(changed, Vec::new())
    }

    /// Commits `jobs` in one write transaction, each validated against
    /// the ones before it, each with its own revision. A store error fails
    /// the group, whose jobs are then committed one by one, so a job fails
    /// only for its own error.
    pub(super) fn commit_group(&self, jobs: Vec<Job>) -> Vec<JobResult> {
        if jobs.len() > 1
            && let Ok(answers) = self.write_group(&jobs)
        {
            return answers;
        }
        jobs.iter()
            .map(|job| match self.write_group(std::slice::from_ref(job)) {
                Ok(mut answers) => answers.pop().unwrap_or_else(|| Ok(Vec::new())),
                Err(e) => Err(CommitError::Store(e)),
            })
            .collect()
    }

    /// One write transaction for `jobs`; `Err` when the store failed (then
    /// nothing of them was written).
    fn write_group(&self, jobs: &[Job]) -> Result<Vec<JobResult>, StoreError> {
        // Any step of a write can meet the I/O error (a page allocated, the
        // commit's fsync): whichever does, the file is reopened before the
        // next write.
        let result = (|| -> Result<Vec<JobResult>, StoreError> {
            let db = self.db()?;
            let wtx = db.begin_write()?;
            let mut answers = Vec::with_capacity(jobs.len());
            let mut revision = None;
            for job in jobs {
                match write_job(&wtx, job, self.change_log_len)? {
                    Ok((versions, r)) => {
                        revision = Some(r);
                        answers.push(Ok(versions));
                    }
                    Err(changed) => answers.push(conflict_or(changed, Vec::new())),
                }
            }
            if revision.is_none() {
                // Every job conflicted: nothing to make durable.
                wtx.abort()?;
                return Ok(answers);
            }
            // Durability::Immediate is redb's default: commit returns once the data is fsynced.
            wtx.commit()?;
            // Only now can a watcher read what it is woken for. Concurrent committers may get here
            // out of order: the revision only moves forward.
            let revision = revision.unwrap_or(0);
            self.revision.send_if_modified(|latest| {
                let newer = revision > *latest;
                if newer {
                    *latest = revision;
                }
                newer
            });
            Ok(answers)
        })();
        if let Err(e @ StoreError::Io(_)) = &result {
            self.io_failed.store(true, Ordering::Release);
            tracing::warn!(path = %self.path.display(), error = %e, "store write failed; the file is reopened before the next write");
        }
        result
    }
}

/// A transaction's reads, by table (redb allows one open handle per table,
/// so work table by table).
fn reads_by_table(reads: &[ReadEntry]) -> BTreeMap<&str, Vec<&ReadEntry>> {
    let mut by_table: BTreeMap<&str, Vec<&ReadEntry>> = BTreeMap::new();
    for r in reads {
        by_table.entry(&r.table).or_default().push(r);
    }
    by_table
}

/// A job written (its records' versions and its revision), or the reads
/// that changed (nothing written).
type Written = Result<(Vec<u64>, u64), Vec<ConflictEntry>>;

/// Validates `job`'s reads in `wtx` (which holds the group's earlier jobs)
/// and, when none changed, applies its writes and logs them under a
/// revision of its own: `Ok(Ok((versions, revision)))`; `Ok(Err(changed))`
/// when a read changed (nothing of it written).
fn write_job(
    wtx: &WriteTransaction,
    job: &Job,
    change_log_len: u64,
) -> Result<Written, StoreError> {
    let mut changed = Vec::new();
    for (table, entries) in &reads_by_table(&job.reads) {
        // Opening creates a missing table; an empty table is what a
        // missing one reads as.
        let t = wtx.open_table(record_table(table))?;
        check_table(table, Some(&t), entries, &mut changed)?;
    }
    if !changed.is_empty() {
        return Ok(Err(changed));
    }
    let writes = &job.writes;
    let mut by_table: BTreeMap<&str, Vec<(usize, &WriteOp)>> = BTreeMap::new();
    for (i, w) in writes.iter().enumerate() {
        by_table.entry(&w.table).or_default().push((i, w));
    }
    let mut versions = vec![0; writes.len()];
    for (table, ops) in by_table {
        codec::validate_table(table)?;
        let mut records = wtx.open_table(record_table(table))?;
        let idx_name = index_table_name(table);
        let mut idx = wtx.open_table(index_table(&idx_name))?;
        for (i, op) in ops {
            let key = op.key.as_str();
            let old = records
                .get(key)?
                .map(|v| decode_record(table, key, v.value()))
                .transpose()?;
            let old_version = old.as_ref().map_or(0, |r| r.version);
            if let Some(old) = &old {
                for (name, value) in &old.index_keys {
                    idx.remove(index_entry_key(name, value, key).as_str())?;
                }
            }
            match &op.put {
                Some(NewRecord { index_keys, data }) => {
                    let version = old_version + 1;
                    let bytes = codec::encode_record(version, index_keys, data);
                    records.insert(key, bytes.as_slice())?;
                    for (name, value) in index_keys {
                        idx.insert(index_entry_key(name, value, key).as_str(), ())?;
                    }
                    versions[i] = version;
                }
                None => {
                    records.remove(key)?;
                }
            }
        }
    }
    let revision = log_commit(wtx, writes, &versions, change_log_len)?;
    Ok(Ok((versions, revision)))
}

/// Within a write commit: raises the revision, logs what `writes` did under it (`versions`
/// aligned with `writes`, 0 for a delete) and trims the log to its last `keep` entries.
fn log_commit(
    wtx: &WriteTransaction,
    writes: &[WriteOp],
    versions: &[u64],
    keep: u64,
) -> Result<u64, StoreError> {
    let mut meta = wtx.open_table(META)?;
    let previous = match meta.get(META_REVISION_KEY)? {
        Some(v) => decode_revision(v.value())?,
        None => 0,
    };
    let revision = previous + 1;
    meta.insert(META_REVISION_KEY, revision.to_le_bytes().as_slice())?;
    let mut log = wtx.open_table(CHANGES)?;
    let changes: Vec<(&str, &str, u64)> = writes
        .iter()
        .zip(versions)
        .map(|(w, v)| (w.table.as_str(), w.key.as_str(), *v))
        .collect();
    log.insert(revision, codec::encode_commit_changes(&changes).as_slice())?;
    loop {
        let oldest = match log.first()? {
            Some((k, _)) => k.value(),
            None => break,
        };
        if oldest + keep > revision {
            break;
        }
        log.pop_first()?;
    }
    Ok(revision)
}

/// Appends to `changed` each read entry of `table` whose version is no longer the one read.
fn check_table<T: ReadableTable<&'static str, &'static [u8]>>(
    table: &str,
    t: Option<&T>,
    entries: &[&ReadEntry],
    changed: &mut Vec<ConflictEntry>,
) -> Result<(), StoreError> {
    for r in entries {
        let now = match t {
            Some(t) => t
                .get(r.key.as_str())?
                .map_or(Ok(0), |v| decode_version(table, &r.key, v.value()))?,
            None => 0,
        };
        if now != r.version {
            changed.push(ConflictEntry {
                table: r.table.clone(),
                key: r.key.clone(),
                read_version: r.version,
                current_version: now,
            });
        }
    }
    Ok(())
}

fn conflict_or(changed: Vec<ConflictEntry>, ok: Vec<u64>) -> Result<Vec<u64>, CommitError> {
    if changed.is_empty() {
        Ok(ok)
    } else {
        tracing::debug!(n = changed.len(), "commit conflict");
        Err(CommitError::Conflict { changed })
    }
}
