//! Where the store is (`berth server --store`), opening it, and `berth
//! store export|import`, which move a whole store between redb and etcd.
//!
//! The export is JSON lines: a header (`{"berth_store_export":1,
//! "schema_version":N}`), then one record a line (`table`, `key`, `index`
//! (its index entries), `data` (the record's JSON)), all read from one
//! snapshot. An import writes into an empty store only, in transactions
//! small enough for etcd's limits; records start again at version 1.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use berth_store::{RawEntry, Store};
use berth_store_etcd::{EtcdBackend, EtcdUrl};
use serde::{Deserialize, Serialize};

use crate::store_args::StoreArgs;

/// Where a command's store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `berth.redb` in the data directory (the default).
    DataDir,
    /// A store on etcd, shared by every server given the same URL.
    Etcd(EtcdUrl),
}

/// `--store`: `etcd://H1:2379,H2:2379[/prefix]`, or `redb` for the data
/// directory's file.
pub fn parse_location(s: &str) -> Result<StoreLocation, String> {
    if s == "redb" {
        return Ok(StoreLocation::DataDir);
    }
    EtcdUrl::parse(s)
        .map(StoreLocation::Etcd)
        .map_err(|e| format!("{e} (expected etcd://HOST:PORT[,HOST:PORT...][/prefix] or redb)"))
}

/// Opens the store at `location`: redb in `data_dir` (created private), or
/// etcd (then its backend too, for the leases of work with one owner).
pub fn open(
    location: &StoreLocation,
    data_dir: &Path,
    opts: StoreArgs,
) -> anyhow::Result<(Store, Option<EtcdBackend>)> {
    match location {
        StoreLocation::DataDir => {
            crate::up::private_dir(data_dir)?;
            let path = data_dir.join("berth.redb");
            let store = Store::open_with_cache(&path, opts.cache_bytes())
                .with_context(|| format!("opening the store at {}", path.display()))?;
            Ok((store, None))
        }
        StoreLocation::Etcd(url) => {
            let backend =
                EtcdBackend::open(url).with_context(|| format!("opening the store at {url}"))?;
            let store = Store::with_backend(Arc::new(backend.clone()));
            Ok((store, Some(backend)))
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    berth_store_export: u32,
    schema_version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    table: String,
    key: String,
    index: Vec<(String, String)>,
    data: serde_json::Value,
}

/// `berth store export FILE`.
pub fn export(store: &Store, file: &Path) -> anyhow::Result<u64> {
    let out =
        std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let mut out = BufWriter::new(out);
    let info = store.info().context("reading the store")?;
    serde_json::to_writer(
        &mut out,
        &Header {
            berth_store_export: 1,
            schema_version: info.schema_version,
        },
    )?;
    out.write_all(b"\n")?;
    let mut failed: Option<anyhow::Error> = None;
    let n = store
        .for_each_raw(|e| {
            let line = serde_json::from_slice(&e.data)
                .map_err(anyhow::Error::from)
                .and_then(|data| {
                    serde_json::to_writer(
                        &mut out,
                        &Line {
                            table: e.table,
                            key: e.key,
                            index: e.index_keys,
                            data,
                        },
                    )?;
                    Ok(out.write_all(b"\n")?)
                });
            if let Err(err) = line {
                failed = Some(err);
                return Err(berth_store::StoreError::Backend("export stopped".into()));
            }
            Ok(())
        })
        .map_err(|e| failed.take().unwrap_or_else(|| e.into()))
        .with_context(|| format!("exporting to {}", file.display()))?;
    out.flush()?;
    Ok(n)
}

/// Records and bytes per import transaction: well inside etcd's default
/// 128 operations and 1.5 MiB per transaction (a record is one operation
/// and one per index entry).
const IMPORT_OPS: usize = 100;
const IMPORT_BYTES: usize = 1 << 20;

/// `berth store import FILE` into an empty store.
pub fn import(store: &Store, file: &Path) -> anyhow::Result<u64> {
    let info = store.info().context("reading the store")?;
    let held: u64 = info.record_counts.values().sum();
    if held > 0 {
        anyhow::bail!(
            "the store at {} already holds {held} records; import only into an empty store",
            info.path.display()
        );
    }
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut lines = std::io::BufReader::new(input).lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    let header: Header = serde_json::from_str(&first).with_context(|| {
        format!(
            "{}: line 1 is not a berth store export header",
            file.display()
        )
    })?;
    if header.berth_store_export != 1 || header.schema_version > info.schema_version {
        anyhow::bail!(
            "{}: export format {} of schema {}; this berth reads format 1 up to schema {}",
            file.display(),
            header.berth_store_export,
            header.schema_version,
            info.schema_version
        );
    }
    let (mut batch, mut ops, mut bytes, mut n) = (Vec::new(), 0, 0, 0u64);
    for (i, line) in lines.enumerate() {
        let line = line?;
        let l: Line = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {} is not a record", file.display(), i + 2))?;
        let entry = RawEntry {
            table: l.table,
            key: l.key,
            index_keys: l.index,
            data: serde_json::to_vec(&l.data)?,
        };
        let (o, b) = (
            1 + entry.index_keys.len(),
            entry.data.len() + entry.key.len(),
        );
        if !batch.is_empty() && (ops + o > IMPORT_OPS || bytes + b > IMPORT_BYTES) {
            store
                .put_raw(&batch)
                .context("writing the imported records")?;
            (batch, ops, bytes) = (Vec::new(), 0, 0);
        }
        batch.push(entry);
        (ops, bytes, n) = (ops + o, bytes + b, n + 1);
    }
    if !batch.is_empty() {
        store
            .put_raw(&batch)
            .context("writing the imported records")?;
    }
    Ok(n)
}

/// `berth store export|import`.
pub fn run(
    location: &StoreLocation,
    data_dir: &Path,
    file: &Path,
    export_it: bool,
) -> anyhow::Result<()> {
    let (store, _) = open(location, data_dir, StoreArgs::defaults())?;
    let where_ = store.info()?.path;
    if export_it {
        let n = export(&store, file)?;
        println!(
            "exported {n} records from {} to {}",
            where_.display(),
            file.display()
        );
    } else {
        let n = import(&store, file)?;
        println!(
            "imported {n} records from {} into {}",
            file.display(),
            where_.display()
        );
    }
    Ok(())
}
