//! Work that must have one owner among several servers (a scheduler's
//! pass, the judging of agents, the collectors), owned through an etcd
//! lease: each server holds one lease, kept alive every TTL/5, and owns a
//! kind of work while the key `P/l/<work>` is its own, attached to that
//! lease. A server that dies stops keeping its lease alive; etcd deletes
//! the key when the lease expires, and the next server to ask takes it.
//!
//! A server that lost its lease (cut off from etcd, paused) stops acting
//! as owner before anyone else can start: it owns work only until the
//! moment it *sent* its last acknowledged keep-alive plus the TTL etcd
//! answered, less a margin. etcd expires the lease no sooner than TTL
//! after it *received* that keep-alive, which is later; only then is the
//! key deleted and can another server take it. (Both sides count time on
//! monotonic clocks; what is assumed is that they run at the same rate,
//! within the margin.) A pass checks ownership when it begins, and is
//! short next to the margin; its writes are compare-and-swap
//! transactions anyway, so a late one conflicts rather than overwrites.
//!
//! The same loop compacts etcd's history every five minutes while it owns
//! `compaction`, to the revision it saw five minutes before (as Kubernetes
//! does), so the watch of every server keeps the last minutes of history.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, TxnOpResponse,
};

use crate::EtcdBackend;
use crate::keys::Keys;

/// The lease's time to live unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// How often the history is compacted (and how much is kept).
pub const COMPACTION_INTERVAL: Duration = Duration::from_secs(300);
const COMPACTION: &str = "compaction";

/// This server's ownership of work, over one etcd store.
#[derive(Debug, Clone)]
pub struct Ownership {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    id: String,
    ttl: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    lease: Option<i64>,
    /// Until when this server may act as owner.
    valid_until: Option<Instant>,
    /// The kinds of work asked about: campaigned for at each tick.
    wanted: BTreeSet<String>,
    owned: BTreeSet<String>,
}

impl Ownership {
    /// Starts keeping a lease of `ttl` for this server (`id`: unique among
    /// the servers, for the logs and the keys' values).
    pub fn start(backend: &EtcdBackend, id: &str, ttl: Duration) -> Ownership {
        let inner = Arc::new(Shared {
            id: id.to_owned(),
            ttl,
            state: Mutex::default(),
        });
        let mut wanted = inner.lock();
        wanted.wanted.insert(COMPACTION.to_owned());
        drop(wanted);
        let client = backend.client();
        let keys = backend.keys().clone();
        backend.spawn(run(client, keys, Arc::clone(&inner)));
        Ownership { inner }
    }

    /// Whether this server owns `work` now. The first ask makes it a
    /// candidate: it may own it from the next tick (within TTL/5).
    pub fn owns(&self, work: &str) -> bool {
        let mut s = self.inner.lock();
        if !s.wanted.contains(work) {
            s.wanted.insert(work.to_owned());
        }
        s.owned.contains(work) && s.valid_until.is_some_and(|v| Instant::now() < v)
    }

    /// This server's id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The margin kept between this server's end of ownership and the
    /// earliest moment etcd may expire its lease.
    fn margin(&self) -> Duration {
        self.ttl / 5
    }

    fn lapse(&self, why: &str) {
        let mut s = self.lock();
        if !s.owned.is_empty() {
            tracing::warn!(owned = ?s.owned, why, "lease lost: this server stops owning its work");
        }
        s.lease = None;
        s.valid_until = None;
        s.owned.clear();
    }
}

/// The lease, its keep-alive stream and the compaction's memory.
struct Lease {
    id: i64,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

async fn run(client: Client, keys: Keys, shared: Arc<Shared>) {
    let tick = shared.ttl / 5;
    let mut lease: Option<Lease> = None;
    let mut seen: Vec<(Instant, i64)> = Vec::new();
    let mut compacted_at = Instant::now();
    loop {
        if Arc::strong_count(&shared) == 1 {
            return; // nobody asks any more
        }
        // Every step bounded: a member that stops answering (frozen, cut
        // off) must not stop the loop; the lease lapses meanwhile anyway.
        let bound = tick * 2;
        match tokio::time::timeout(bound, keep(&client, &shared, lease.take())).await {
            Ok(Ok(l)) => lease = Some(l),
            Ok(Err(e)) => {
                shared.lapse(&e.to_string());
                tokio::time::sleep(tick).await;
                continue;
            }
            Err(_) => {
                shared.lapse("etcd did not answer the keep-alive in time");
                continue;
            }
        }
        if let Some(l) = &lease {
            match tokio::time::timeout(bound, campaign(&client, &keys, &shared, l.id)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "taking work through the lease failed"),
                Err(_) => tracing::warn!("taking work through the lease: no answer in time"),
            }
        }
        match tokio::time::timeout(
            bound,
            compact(&client, &shared, &mut seen, &mut compacted_at),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "compacting etcd's history failed"),
            Err(_) => tracing::warn!("compacting etcd's history: no answer in time"),
        }
        tokio::time::sleep(tick).await;
    }
}

/// Grants the lease, or keeps it alive; moves the end of ownership on.
async fn keep(
    client: &Client,
    shared: &Shared,
    lease: Option<Lease>,
) -> Result<Lease, etcd_client::Error> {
    let ttl_secs = i64::try_from(shared.ttl.as_secs().max(2)).unwrap_or(10);
    let sent = Instant::now();
    let (lease, ttl) = match lease {
        None => {
            let granted = client.lease_client().grant(ttl_secs, None).await?;
            let (keeper, stream) = client.lease_client().keep_alive(granted.id()).await?;
            let ttl = granted.ttl();
            let mut s = shared.lock();
            s.lease = Some(granted.id());
            s.owned.clear();
            drop(s);
            (
                Lease {
                    id: granted.id(),
                    keeper,
                    stream,
                },
                ttl,
            )
        }
        Some(mut l) => {
            l.keeper.keep_alive().await?;
            let answer = tokio::time::timeout(shared.ttl / 5, l.stream.message())
                .await
                .map_err(|_| etcd_client::Error::LeaseKeepAliveError("no answer in time".into()))??
                .ok_or_else(|| etcd_client::Error::LeaseKeepAliveError("stream ended".into()))?;
            if answer.ttl() <= 0 {
                return Err(etcd_client::Error::LeaseKeepAliveError(
                    "the lease expired".into(),
                ));
            }
            let ttl = answer.ttl();
            (l, ttl)
        }
    };
    let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
    let until = sent + ttl.saturating_sub(shared.margin());
    shared.lock().valid_until = Some(until);
    Ok(lease)
}

/// Takes each wanted kind of work nobody owns; lets go of what another
/// server holds now.
async fn campaign(
    client: &Client,
    keys: &Keys,
    shared: &Shared,
    lease: i64,
) -> Result<(), etcd_client::Error> {
    let wanted: Vec<String> = shared.lock().wanted.iter().cloned().collect();
    for work in wanted {
        let key = keys.lease(&work);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                shared.id.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, Some(GetOptions::new()))]);
        let resp = client.kv_client().txn(txn).await?;
        let mine = resp.succeeded()
            || resp.op_responses().iter().any(|op| match op {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .is_some_and(|kv| kv.value() == shared.id.as_bytes() && kv.lease() == lease),
                _ => false,
            });
        let mut s = shared.lock();
        if mine && s.lease == Some(lease) {
            if s.owned.insert(work.clone()) {
                tracing::info!(work = %work, server = %shared.id, "this server owns the work now");
            }
        } else if s.owned.remove(&work) {
            tracing::warn!(work = %work, "another server owns the work now");
        }
    }
    Ok(())
}

/// Compacts to the revision seen one interval ago, while owning it.
async fn compact(
    client: &Client,
    shared: &Shared,
    seen: &mut Vec<(Instant, i64)>,
    compacted_at: &mut Instant,
) -> Result<(), etcd_client::Error> {
    let owns = {
        let s = shared.lock();
        s.owned.contains(COMPACTION) && s.valid_until.is_some_and(|v| Instant::now() < v)
    };
    if !owns {
        seen.clear();
        return Ok(());
    }
    if seen
        .last()
        .is_none_or(|(at, _)| at.elapsed() >= Duration::from_secs(30))
    {
        let now = client
            .kv_client()
            .get("\0", Some(GetOptions::new().with_count_only()))
            .await?
            .header()
            .map_or(0, |h| h.revision());
        seen.push((Instant::now(), now));
    }
    if compacted_at.elapsed() < COMPACTION_INTERVAL {
        return Ok(());
    }
    let old = seen
        .iter()
        .filter(|(at, _)| at.elapsed() >= COMPACTION_INTERVAL)
        .map(|(_, r)| *r)
        .max();
    if let Some(rev) = old {
        seen.retain(|(at, _)| at.elapsed() < COMPACTION_INTERVAL);
        client
            .kv_client()
            .compact(rev, Some(CompactionOptions::new()))
            .await?;
        tracing::info!(revision = rev, "compacted etcd's history");
        *compacted_at = Instant::now();
    }
    Ok(())
}
