//! [`Backend`] over a single redb file.
//!
//! Layout: one table per record type (`&str` key -> record envelope, see [`crate::codec`]), one
//! index table per record table named `__idx/<table>` whose keys are `index\0value\0primarykey`
//! (empty values), `__meta` for the schema version and the store's revision, and `__changes`, the
//! change log: one entry per write commit, keyed by its revision, listing what it wrote, trimmed
//! to the last [`DEFAULT_CHANGE_LOG_LEN`] commits.
//!
//! One process holds the file, so waiters are woken in-process: every commit sends its revision
//! on a `tokio::sync::watch` channel the backend owns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableError, TableHandle, WriteTransaction,
};

use crate::backend::{
    Backend, Change, ChangeKind, Changes, NewRecord, OpenReport, ReadEntry, Snapshot, WriteOp,
};
use crate::codec::{
    self, RESERVED_PREFIX, RawRecord, decode_record, decode_version, index_entry_key,
    index_value_prefix, split_index_entry,
};
use crate::error::{CommitError, ConflictEntry, OpenError, StoreError};
use crate::group_commit::GroupCommit;

mod write;
use write::{Job, JobResult};

/// Schema version written by this build.
pub const SCHEMA_VERSION: u32 = 1;

type RecordTable<'a> = TableDefinition<'a, &'static str, &'static [u8]>;
type IndexTable<'a> = TableDefinition<'a, &'static str, ()>;

const META: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("__meta");
const META_SCHEMA_KEY: &str = "schema_version";
const META_REVISION_KEY: &str = "revision";
const CHANGES: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("__changes");

/// How many commits the change log keeps by default: a watcher further behind relists.
pub const DEFAULT_CHANGE_LOG_LEN: u64 = 1024;
/// The page cache's default bound: redb's own is 1 GiB, which a busy store
/// fills and keeps; 256 MiB holds every interior page of a store of
/// millions of records, and the OS page cache serves the rest.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;
const INDEX_TABLE_PREFIX: &str = "__idx/";

fn record_table(name: &str) -> RecordTable<'_> {
    TableDefinition::new(name)
}

fn index_table_name(table: &str) -> String {
    format!("{INDEX_TABLE_PREFIX}{table}")
}

fn index_table(name: &str) -> IndexTable<'_> {
    TableDefinition::new(name)
}

/// One schema upgrade step, from `from` to `from + 1`, run in its own write transaction together
/// with the bump of the stored version (so a crash leaves the file at a whole version).
#[derive(Clone, Copy)]
pub(crate) struct Migration {
    pub from: u32,
    pub description: &'static str,
    pub apply: fn(&WriteTransaction) -> Result<(), StoreError>,
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Migration({} -> {}: {})",
            self.from,
            self.from + 1,
            self.description
        )
    }
}

/// Every schema upgrade, in order. Schema 1 is the first, so there is nothing to run yet; add
/// `Migration { from: 1, .. }` here when bumping [`SCHEMA_VERSION`] to 2.
const MIGRATIONS: &[Migration] = &[];

/// The redb implementation of [`Backend`].
pub struct RedbBackend {
    /// The open file; `None` only between closing it after an I/O error and
    /// opening it again.
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    /// The page cache's bound, kept to reopen the file with the same.
    cache_bytes: usize,
    /// A write failed with an I/O error (a full disk): redb then refuses
    /// every write until the file is reopened, so the next write reopens it.
    io_failed: AtomicBool,
    report: OpenReport,
    /// Commits kept in the change log.
    change_log_len: u64,
    /// The latest revision, sent after each commit lands.
    revision: tokio::sync::watch::Sender<u64>,
    /// Writers waiting while a commit is made are committed together.
    group: GroupCommit<Job, JobResult>,
}

impl fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbBackend")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl RedbBackend {
    /// Creates or opens the redb file at `path`, checking and migrating its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`RedbBackend::open`] with a page cache of at most `cache_bytes`.
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Self, OpenError> {
        Self::open_with(path.as_ref(), SCHEMA_VERSION, MIGRATIONS, cache_bytes)
    }

    pub(crate) fn open_with(
        path: &Path,
        target: u32,
        migrations: &[Migration],
        cache_bytes: usize,
    ) -> Result<Self, OpenError> {
        let existed = path.exists();
        let result = Self::open_file(path, existed, target, migrations, cache_bytes);
        if result.is_err() && !existed {
            // A store that could not be created (a full disk) leaves no
            // half-written file to trip over at the next start.
            let _ = std::fs::remove_file(path);
        }
        result
    }

    fn open_file(
        path: &Path,
        existed: bool,
        target: u32,
        migrations: &[Migration],
        cache_bytes: usize,
    ) -> Result<Self, OpenError> {
        let backend_err = |e: StoreError| OpenError::Backend {
            path: path.to_owned(),
            source: e,
        };
        let db = create_private(path, existed, cache_bytes).map_err(backend_err)?;
        let found = read_schema_version(&db, path)?;
        let mut report = OpenReport {
            path: path.to_owned(),
            schema_version: target,
            created: false,
            migrated_from: None,
        };
        match found {
            None => {
                let wtx = db.begin_write().map_err(|e| backend_err(e.into()))?;
                write_schema_version(&wtx, target).map_err(backend_err)?;
                wtx.commit().map_err(|e| backend_err(e.into()))?;
                report.created = true;
                tracing::info!(path = %path.display(), schema = target, "created store");
            }
            Some(v) if v > target => {
                return Err(OpenError::SchemaTooNew {
                    path: path.to_owned(),
                    found: v,
                    supported: target,
                });
            }
            Some(v) if v < target => {
                run_migrations(&db, path, v, target, migrations)?;
                report.migrated_from = Some(v);
            }
            Some(_) => {}
        }
        let revision = read_revision(&db).map_err(backend_err)?;
        Ok(RedbBackend {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_owned(),
            cache_bytes,
            io_failed: AtomicBool::new(false),
            report,
            change_log_len: DEFAULT_CHANGE_LOG_LEN,
            group: GroupCommit::default(),
            revision: tokio::sync::watch::Sender::new(revision),
        })
    }

    /// The open database, reopened first after an I/O error: redb then
    /// refuses reads and writes alike until the file is opened again.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        if !self.io_failed.load(Ordering::Acquire)
            && let Some(db) = self.db.read().map_err(|_| poisoned())?.as_ref()
        {
            return Ok(db.clone());
        }
        self.reopen()
    }

    /// Closes and reopens the file. Only when nobody else holds the
    /// database (a snapshot being read): redb locks the file per handle, so
    /// the old handle must be gone before the new one opens.
    fn reopen(&self) -> Result<Arc<Database>, StoreError> {
        let mut slot = self.db.write().map_err(|_| poisoned())?;
        if !self.io_failed.load(Ordering::Acquire)
            && let Some(db) = slot.as_ref()
        {
            return Ok(db.clone()); // another thread reopened it meanwhile
        }
        if let Some(db) = slot.take() {
            match Arc::try_unwrap(db) {
                Ok(db) => drop(db),
                Err(shared) => {
                    *slot = Some(shared);
                    return Err(StoreError::Io(
                        "recovering from an earlier I/O error: waiting for open reads to end"
                            .to_owned(),
                    ));
                }
            }
        }
        let db = Database::builder()
            .set_cache_size(self.cache_bytes)
            .create(&self.path)
            .map_err(|e| StoreError::from(redb::Error::from(e)))?;
        let db = Arc::new(db);
        *slot = Some(db.clone());
        self.io_failed.store(false, Ordering::Release);
        tracing::info!(path = %self.path.display(), "store reopened after an I/O error");
        Ok(db)
    }

    /// Keeps the last `n` commits (at least 1) in the change log instead of
    /// [`DEFAULT_CHANGE_LOG_LEN`]; older entries go at the next commit.
    pub fn with_change_log_len(mut self, n: u64) -> Self {
        self.change_log_len = n.max(1);
        self
    }
}

/// Opens (or creates) the redb file, readable by its owner only: task
/// definitions hold environment values. A file of zero bytes only (what a
/// creation cut short by a full disk left, before berth removed such files)
/// holds nothing and is created afresh.
fn create_private(path: &Path, existed: bool, cache_bytes: usize) -> Result<Database, StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io =
        |what: &str, e: std::io::Error| StoreError::Io(format!("{what} {}: {e}", path.display()));
    if existed {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("cannot make private", e))?;
        if only_zeros(path).map_err(|e| io("cannot read", e))? {
            tracing::warn!(path = %path.display(), "store file holds only zero bytes (an interrupted creation): creating it afresh");
            std::fs::remove_file(path).map_err(|e| io("cannot remove", e))?;
        }
    }
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io("cannot create", e))?;
    }
    Ok(Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(redb::Error::from)?)
}

/// Whether the file is all zero bytes (an empty file too).
fn only_zeros(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = [0u8; 8192];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

/// The revision stored in `__meta` (0 when none was written yet).
fn read_revision(db: &Database) -> Result<u64, StoreError> {
    let rtx = db.begin_read()?;
    revision_in(&rtx)
}

fn revision_in(rtx: &ReadTransaction) -> Result<u64, StoreError> {
    let Some(meta) = open_read(rtx, META)? else {
        return Ok(0);
    };
    let Some(v) = meta.get(META_REVISION_KEY)? else {
        return Ok(0);
    };
    decode_revision(v.value())
}

fn decode_revision(bytes: &[u8]) -> Result<u64, StoreError> {
    let fixed: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        table: "__meta".to_owned(),
        key: META_REVISION_KEY.to_owned(),
        reason: format!("revision is {} bytes, not 8", bytes.len()),
    })?;
    Ok(u64::from_le_bytes(fixed))
}

fn read_schema_version(db: &Database, path: &Path) -> Result<Option<u32>, OpenError> {
    let bad = |reason: String| OpenError::BadMeta {
        path: path.to_owned(),
        reason,
    };
    let rtx = db.begin_read().map_err(|e| OpenError::Backend {
        path: path.to_owned(),
        source: e.into(),
    })?;
    let meta = match rtx.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => {
            // No meta table: fine for a brand-new file, suspicious if other tables exist.
            let others = rtx
                .list_tables()
                .map_err(|e| bad(e.to_string()))?
                .map(|h| h.name().to_owned())
                .collect::<Vec<_>>();
            if others.is_empty() {
                return Ok(None);
            }
            return Err(bad(format!(
                "no meta table but {} other table(s) ({}); not a berth store?",
                others.len(),
                others.join(", ")
            )));
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let Some(v) = meta.get(META_SCHEMA_KEY).map_err(|e| bad(e.to_string()))? else {
        return Err(bad("meta table without a schema version".to_owned()));
    };
    let bytes: [u8; 4] = v.value().try_into().map_err(|_| {
        bad(format!(
            "schema version is {} bytes, not 4",
            v.value().len()
        ))
    })?;
    Ok(Some(u32::from_le_bytes(bytes)))
}

fn write_schema_version(wtx: &WriteTransaction, v: u32) -> Result<(), StoreError> {
    let mut meta = wtx.open_table(META)?;
    meta.insert(META_SCHEMA_KEY, v.to_le_bytes().as_slice())?;
    Ok(())
}

fn run_migrations(
    db: &Database,
    path: &Path,
    found: u32,
    target: u32,
    migrations: &[Migration],
) -> Result<(), OpenError> {
    for from in found..target {
        let fail = |reason: String| OpenError::Migration {
            path: path.to_owned(),
            from,
            to: from + 1,
            reason,
        };
        let m = migrations
            .iter()
            .find(|m| m.from == from)
            .ok_or_else(|| fail("no migration registered for this step".to_owned()))?;
        tracing::info!(path = %path.display(), from, to = from + 1, what = m.description, "migrating store");
        let wtx = db.begin_write().map_err(|e| fail(e.to_string()))?;
        (m.apply)(&wtx).map_err(|e| fail(e.to_string()))?;
        write_schema_version(&wtx, from + 1).map_err(|e| fail(e.to_string()))?;
        wtx.commit().map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// Opens a table of a read transaction; a table never written reads as empty (`None`).
fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
    rtx: &ReadTransaction,
    def: TableDefinition<'_, K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, StoreError> {
    match rtx.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Range bounds starting at `prefix`, or just after `after` when that sorts later.
fn start_bound<'k>(prefix: &'k str, after: Option<&'k str>) -> (Bound<&'k str>, Bound<&'k str>) {
    match after {
        Some(a) if a >= prefix => (Bound::Excluded(a), Bound::Unbounded),
        _ => (Bound::Included(prefix), Bound::Unbounded),
    }
}

struct RedbSnapshot {
    rtx: ReadTransaction,
    /// Keeps the database from being reopened under the read (dropped
    /// after `rtx`, fields drop in order).
    _db: Arc<Database>,
}

impl Snapshot for RedbSnapshot {
    fn revision(&self) -> Result<u64, StoreError> {
        revision_in(&self.rtx)
    }

    fn get(&self, table: &str, key: &str) -> Result<Option<RawRecord>, StoreError> {
        let Some(t) = open_read(&self.rtx, record_table(table))? else {
            return Ok(None);
        };
        t.get(key)?
            .map(|v| decode_record(table, key, v.value()))
            .transpose()
    }

    fn scan(
        &self,
        table: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, RawRecord)>, StoreError> {
        let Some(t) = open_read(&self.rtx, record_table(table))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in t.range::<&str>(start_bound(prefix, after))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_owned(), decode_record(table, key, v.value())?));
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
        let idx_name = index_table_name(table);
        let Some(idx) = open_read(&self.rtx, index_table(&idx_name))? else {
            return Ok(Vec::new());
        };
        let Some(records) = open_read(&self.rtx, record_table(table))? else {
            return Ok(Vec::new());
        };
        let prefix = index_value_prefix(index, value);
        let resume = after.map(|a| format!("{prefix}{a}"));
        let mut out = Vec::new();
        for entry in idx.range::<&str>(start_bound(&prefix, resume.as_deref()))? {
            if out.len() >= limit {
                break;
            }
            let (k, _) = entry?;
            let Some(pk) = k.value().strip_prefix(prefix.as_str()) else {
                break;
            };
            let Some(v) = records.get(pk)? else {
                return Err(StoreError::Corrupt {
                    table: idx_name,
                    key: k.value().replace('\0', "\\0"),
                    reason: "index entry points to a missing record".to_owned(),
                });
            };
            out.push((pk.to_owned(), decode_record(table, pk, v.value())?));
        }
        Ok(out)
    }

    fn count_index(&self, table: &str, index: &str, value: &str) -> Result<u64, StoreError> {
        let Some(idx) = open_read(&self.rtx, index_table(&index_table_name(table)))? else {
            return Ok(0);
        };
        let prefix = index_value_prefix(index, value);
        let mut n = 0;
        for entry in idx.range::<&str>(start_bound(&prefix, None))? {
            let (k, _) = entry?;
            if !k.value().starts_with(prefix.as_str()) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }
}

impl Backend for RedbBackend {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        let db = self.db()?;
        Ok(Box::new(RedbSnapshot {
            rtx: db.begin_read()?,
            _db: db,
        }))
    }

    fn commit(&self, reads: &[ReadEntry], writes: &[WriteOp]) -> Result<Vec<u64>, CommitError> {
        if writes.is_empty() {
            return self.check_reads(reads);
        }
        let job = Job {
            reads: reads.to_vec(),
            writes: writes.to_vec(),
        };
        self.group.run(job, &|jobs| self.commit_group(jobs), &|| {
            Err(CommitError::Store(StoreError::Backend(
                "the thread committing this write's group panicked; nothing is known of it".into(),
            )))
        })
    }

    fn table_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rtx = self.db()?.begin_read()?;
        let mut out = BTreeMap::new();
        for h in rtx.list_tables()? {
            let name = h.name();
            if name.starts_with(RESERVED_PREFIX) {
                continue;
            }
            let t = rtx.open_table(record_table(name))?;
            out.insert(name.to_owned(), t.len()?);
        }
        Ok(out)
    }

    fn verify_indexes(&self) -> Result<Vec<String>, StoreError> {
        let rtx = self.db()?.begin_read()?;
        let mut problems = Vec::new();
        let names: Vec<String> = rtx.list_tables()?.map(|h| h.name().to_owned()).collect();
        let mut covered = BTreeSet::new();
        for table in names.iter().filter(|n| !n.starts_with(RESERVED_PREFIX)) {
            let mut expected = BTreeSet::new();
            let records = rtx.open_table(record_table(table))?;
            for entry in records.iter()? {
                let (k, v) = entry?;
                match decode_record(table, k.value(), v.value()) {
                    Ok(rec) => {
                        for (name, value) in rec.index_keys {
                            expected.insert(index_entry_key(&name, &value, k.value()));
                        }
                    }
                    Err(e) => problems.push(format!("{table}/{}: {e}", k.value())),
                }
            }
            let idx_name = index_table_name(table);
            covered.insert(idx_name.clone());
            let mut actual = BTreeSet::new();
            if let Some(idx) = open_read(&rtx, index_table(&idx_name))? {
                for entry in idx.iter()? {
                    actual.insert(entry?.0.value().to_owned());
                }
            }
            for e in actual.difference(&expected) {
                problems.push(format!(
                    "{idx_name}: entry {} has no matching record",
                    describe_entry(e)
                ));
            }
            for e in expected.difference(&actual) {
                problems.push(format!(
                    "{table}: record is missing index entry {}",
                    describe_entry(e)
                ));
            }
        }
        for orphan in names
            .iter()
            .filter(|n| n.starts_with(INDEX_TABLE_PREFIX) && !covered.contains(*n))
        {
            let idx = rtx.open_table(index_table(orphan))?;
            if idx.len()? > 0 {
                problems.push(format!("{orphan}: index table without a record table"));
            }
        }
        Ok(problems)
    }

    fn open_report(&self) -> OpenReport {
        self.report.clone()
    }

    fn revision(&self) -> Result<u64, StoreError> {
        Ok(*self.revision.borrow())
    }

    fn watch(&self, tables: &[&str], after: u64) -> Result<Changes, StoreError> {
        let rtx = self.db()?.begin_read()?;
        let revision = revision_in(&rtx)?;
        if after >= revision {
            return Ok(Changes::Events {
                events: Vec::new(),
                revision,
            });
        }
        let Some(log) = open_read(&rtx, CHANGES)? else {
            return Ok(Changes::Compacted {
                compacted: revision,
                revision,
            });
        };
        // The log holds revisions oldest..=revision, so it answers starts from oldest - 1 on.
        let oldest = log.first()?.map_or(revision + 1, |(k, _)| k.value());
        if after + 1 < oldest {
            return Ok(Changes::Compacted {
                compacted: oldest - 1,
                revision,
            });
        }
        let mut events = Vec::new();
        for entry in log.range((after + 1)..=revision)? {
            let (rev, bytes) = entry?;
            let rev = rev.value();
            for (table, key, version) in codec::decode_commit_changes(rev, bytes.value())? {
                if !tables.is_empty() && !tables.contains(&table.as_str()) {
                    continue;
                }
                let kind = match version {
                    0 => ChangeKind::Delete,
                    version => ChangeKind::Put { version },
                };
                events.push(Change {
                    revision: rev,
                    table,
                    key,
                    kind,
                });
            }
        }
        Ok(Changes::Events { events, revision })
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revision.subscribe()
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend("the store's handle lock was poisoned by a panic".to_owned())
}

fn describe_entry(entry: &str) -> String {
    match split_index_entry(entry) {
        Some((i, v, k)) => format!("{i}={v:?} -> {k:?}"),
        None => format!("{entry:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(wtx: &WriteTransaction, name: &str) -> Result<(), StoreError> {
        let mut meta = wtx.open_table(META)?;
        // Record the order steps ran in: each appends its name.
        let prev = meta
            .get("trail")?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        let mut trail = prev;
        trail.extend_from_slice(name.as_bytes());
        meta.insert("trail", trail.as_slice())?;
        Ok(())
    }

    fn trail(b: &RedbBackend) -> Vec<u8> {
        let rtx = b.db().expect("db").begin_read().expect("read");
        let meta = rtx.open_table(META).expect("meta");
        meta.get("trail")
            .expect("get")
            .map(|v| v.value().to_vec())
            .unwrap_or_default()
    }

    #[test]
    fn new_file_gets_current_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let b = RedbBackend::open(&path).expect("create");
        assert!(b.report.created);
        assert_eq!(b.report.schema_version, SCHEMA_VERSION);
        drop(b);
        let b = RedbBackend::open(&path).expect("reopen");
        assert!(!b.report.created);
        assert_eq!(b.report.migrated_from, None);
    }

    #[test]
    fn newer_schema_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        drop(
            RedbBackend::open_with(&path, SCHEMA_VERSION + 1, &[], DEFAULT_CACHE_BYTES)
                .expect("create newer"),
        );
        let err = RedbBackend::open(&path).expect_err("must refuse");
        match &err {
            OpenError::SchemaTooNew {
                found, supported, ..
            } => {
                assert_eq!(*found, SCHEMA_VERSION + 1);
                assert_eq!(*supported, SCHEMA_VERSION);
            }
            other => panic!("unexpected error {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("at most version {SCHEMA_VERSION}")),
            "{msg}"
        );
    }

    #[test]
    fn migrations_run_in_order_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        drop(RedbBackend::open_with(&path, 1, &[], DEFAULT_CACHE_BYTES).expect("create v1"));
        // Listed out of order on purpose: steps are looked up by their `from` version.
        let steps = [
            Migration {
                from: 2,
                description: "b",
                apply: |w| marker(w, "b"),
            },
            Migration {
                from: 1,
                description: "a",
                apply: |w| marker(w, "a"),
            },
        ];
        let b = RedbBackend::open_with(&path, 3, &steps, DEFAULT_CACHE_BYTES).expect("migrate");
        assert_eq!(b.report.migrated_from, Some(1));
        assert_eq!(b.report.schema_version, 3);
        assert_eq!(trail(&b), b"ab");
        drop(b);
        let b = RedbBackend::open_with(&path, 3, &steps, DEFAULT_CACHE_BYTES).expect("reopen");
        assert_eq!(b.report.migrated_from, None);
        assert_eq!(trail(&b), b"ab");
    }

    #[test]
    fn missing_migration_step_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        drop(RedbBackend::open_with(&path, 1, &[], DEFAULT_CACHE_BYTES).expect("create v1"));
        let err = RedbBackend::open_with(&path, 2, &[], DEFAULT_CACHE_BYTES).expect_err("no step");
        assert!(
            matches!(err, OpenError::Migration { from: 1, to: 2, .. }),
            "{err}"
        );
        // The file stays at version 1 and still opens with the build that knows it.
        RedbBackend::open_with(&path, 1, &[], DEFAULT_CACHE_BYTES).expect("still v1");
    }

    #[test]
    fn foreign_redb_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        {
            let db = Database::create(&path).expect("db");
            let w = db.begin_write().expect("w");
            w.open_table(record_table("something")).expect("t");
            w.commit().expect("c");
        }
        let err = RedbBackend::open(&path).expect_err("not ours");
        assert!(matches!(err, OpenError::BadMeta { .. }), "{err}");
    }

    #[test]
    fn verify_reports_both_kinds_of_discrepancy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = RedbBackend::open(dir.path().join("s.redb")).expect("open");
        let w = b.db().expect("db").begin_write().expect("w");
        {
            let mut t = w.open_table(record_table("things")).expect("t");
            let rec = codec::encode_record(1, &[("color".into(), "red".into())], b"{}");
            t.insert("k1", rec.as_slice()).expect("insert");
            let name = index_table_name("things");
            let mut i = w.open_table(index_table(&name)).expect("i");
            i.insert(index_entry_key("color", "blue", "k2").as_str(), ())
                .expect("insert");
        }
        w.commit().expect("commit");
        let problems = b.verify_indexes().expect("verify");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("no matching record")));
        assert!(problems.iter().any(|p| p.contains("missing index entry")));
    }
}
