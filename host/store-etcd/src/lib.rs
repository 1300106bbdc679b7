//! berth's store on etcd v3: [`EtcdBackend`], the [`Backend`] of
//! `berth-store` over an etcd cluster, so that several `berth server`s
//! share one store (see docs/architecture.md, "A control plane of several
//! servers").
//!
//! This is the only crate that talks to etcd. Records, index entries and
//! the store's own keys live under one prefix ([`keys`] has the layout);
//! a commit is one etcd transaction (`commit.rs`), a snapshot reads at one
//! revision (`snapshot.rs`), and the change feed follows an etcd watch
//! (`feed.rs`). A store revision is etcd's revision.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use berth_store::{
    Backend, Changes, CommitError, OpenError, OpenReport, ReadEntry, SCHEMA_VERSION, Snapshot,
    StoreError, WriteOp,
};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};

mod admin;
mod commit;
mod feed;
mod keys;
pub mod lease;
mod runner;
mod snapshot;
pub mod testing;
mod url;

pub use url::{DEFAULT_PREFIX, EtcdUrl, UrlError};

use feed::Feed;
use keys::Keys;
use runner::Runner;

/// etcd's default `--max-txn-ops`: compares, and operations, per transaction.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// The limits of the etcd cluster a backend writes to (its members'
/// `--max-txn-ops` and `--max-request-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Compares, and operations, per transaction.
    pub max_txn_ops: usize,
    /// Bytes per request.
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

/// The [`Backend`] over etcd.
#[derive(Debug, Clone)]
pub struct EtcdBackend {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) runner: Runner,
    pub(crate) keys: Keys,
    pub(crate) max_txn_ops: usize,
    pub(crate) max_request_bytes: usize,
    feed: Arc<Feed>,
    report: OpenReport,
    url: EtcdUrl,
    /// The revision of the latest commit made through this backend.
    committed: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("url", &self.url.to_string())
            .field("max_txn_ops", &self.max_txn_ops)
            .finish_non_exhaustive()
    }
}

impl EtcdBackend {
    /// Connects to the store at `url` (its schema checked, created when the
    /// prefix is empty) with etcd's default limits.
    pub fn open(url: &EtcdUrl) -> Result<EtcdBackend, OpenError> {
        Self::open_with(url, Limits::default())
    }

    /// [`EtcdBackend::open`] for members run with other limits.
    pub fn open_with(url: &EtcdUrl, limits: Limits) -> Result<EtcdBackend, OpenError> {
        let path = PathBuf::from(url.to_string());
        let err = |source: StoreError| OpenError::Backend {
            path: path.clone(),
            source,
        };
        let runner = Runner::new().map_err(|e| err(StoreError::Io(e.to_string())))?;
        let endpoints = url.grpc_endpoints();
        // HTTP/2 pings find a dead member; etcd refuses pings closer than
        // its --grpc-keepalive-min-time (5 s) apart.
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = runner
            .run("connect", move || {
                let (endpoints, opts) = (endpoints.clone(), opts.clone());
                async move { Client::connect(endpoints, Some(opts)).await }
            })
            .map_err(err)?;
        let keys = Keys::new(&url.prefix);
        let (report, revision) = open_schema(&runner, &client, &keys, path.clone())?;
        let feed = Arc::new(Feed::new(revision));
        runner.spawn(feed::follow(
            client.clone(),
            keys.clone(),
            Arc::clone(&feed),
        ));
        Ok(EtcdBackend {
            inner: Arc::new(Inner {
                client,
                runner,
                keys,
                max_txn_ops: limits.max_txn_ops,
                max_request_bytes: limits.max_request_bytes,
                feed,
                report,
                url: url.clone(),
                committed: AtomicU64::new(revision),
            }),
        })
    }

    /// Where this backend's store lives.
    pub fn url(&self) -> &EtcdUrl {
        &self.inner.url
    }

    /// The limits this backend keeps its transactions within.
    pub fn limits(&self) -> Limits {
        Limits {
            max_txn_ops: self.inner.max_txn_ops,
            max_request_bytes: self.inner.max_request_bytes,
        }
    }

    /// The etcd client, for the leases of work with one owner.
    pub(crate) fn client(&self) -> Client {
        self.inner.client.clone()
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// Runs `fut` on the backend's runtime, for as long as it lives.
    pub(crate) fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.inner.runner.spawn(fut);
    }
}

/// Reads the schema version under the prefix, writing it when the prefix is
/// new; answers the report and the revision it was read at.
fn open_schema(
    runner: &Runner,
    client: &Client,
    keys: &Keys,
    path: PathBuf,
) -> Result<(OpenReport, u64), OpenError> {
    let err = |source: StoreError| OpenError::Backend {
        path: path.clone(),
        source,
    };
    let key = keys.meta("schema");
    let (kv, k) = (client.kv_client(), key.clone());
    let txn = Txn::new()
        .when([Compare::version(k.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(k.clone(), SCHEMA_VERSION.to_string(), None)])
        .or_else([TxnOp::get(k, Some(GetOptions::new()))]);
    let resp = runner
        .run("reading the schema version", move || {
            let (mut kv, txn) = (kv.clone(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .map_err(err)?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut report = OpenReport {
        path: path.clone(),
        schema_version: SCHEMA_VERSION,
        created: resp.succeeded(),
        migrated_from: None,
    };
    if !resp.succeeded() {
        let found = resp.op_responses().into_iter().find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        let text = String::from_utf8_lossy(&found.unwrap_or_default()).into_owned();
        let found: u32 = text.parse().map_err(|_| OpenError::BadMeta {
            path: path.clone(),
            reason: format!("{key:?} holds {text:?}, not a schema version"),
        })?;
        if found > SCHEMA_VERSION {
            return Err(OpenError::SchemaTooNew {
                path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        report.schema_version = found;
    }
    Ok((report, u64::try_from(revision).unwrap_or(0)))
}

impl Inner {
    /// A KV client that takes answers up to 64 MiB (gRPC's default is 4):
    /// a page of records may be large.
    pub(crate) fn kv(&self) -> etcd_client::KvClient {
        self.client.kv_client().max_decoding_message_size(64 << 20)
    }

    /// The cluster's latest revision (a linearizable read).
    pub(crate) fn latest_revision(&self) -> Result<i64, StoreError> {
        let kv = self.client.kv_client();
        let key = self.keys.meta("schema");
        let resp = self.runner.run("reading the revision", move || {
            let (mut kv, key) = (kv.clone(), key.clone());
            async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
        })?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    pub(crate) fn committed(&self, revision: Option<i64>) {
        if let Some(r) = revision.and_then(|r| u64::try_from(r).ok()) {
            self.committed.fetch_max(r, Ordering::AcqRel);
        }
    }
}

impl Backend for EtcdBackend {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        Ok(Box::new(snapshot::EtcdSnapshot {
            inner: Arc::clone(&self.inner),
            revision: OnceLock::new(),
        }))
    }

    fn commit(&self, reads: &[ReadEntry], writes: &[WriteOp]) -> Result<Vec<u64>, CommitError> {
        self.inner.commit(reads, writes)
    }

    fn table_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.inner.table_counts()
    }

    fn verify_indexes(&self) -> Result<Vec<String>, StoreError> {
        self.inner.verify_indexes()
    }

    fn open_report(&self) -> OpenReport {
        self.inner.report.clone()
    }

    fn revision(&self) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.inner.latest_revision()?).unwrap_or(0))
    }

    fn watch(&self, tables: &[&str], after: u64) -> Result<Changes, StoreError> {
        // This process's own commits are in the answer: wait the moment
        // the watch stream may lag behind them.
        let committed = self.inner.committed.load(Ordering::Acquire);
        if committed > self.inner.feed.latest() {
            self.inner.feed.wait_for(committed, Duration::from_secs(2));
        }
        Ok(self.inner.feed.changes(tables, after))
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.feed.subscribe()
    }

    fn max_txn_ops(&self) -> Option<usize> {
        Some(self.inner.max_txn_ops)
    }

    fn shared(&self) -> bool {
        true
    }
}
