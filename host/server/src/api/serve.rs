//! Putting the router on a socket with the limits a hostile client meets:
//! a cap on open connections (the rest wait in the kernel's backlog, so
//! file descriptors are never exhausted and the agents' own sockets, the
//! Docker socket among them, always find one), and hyper's header timer,
//! which runs from a connection's start, and from the end of each answer on
//! a kept-alive connection, until the next request's headers are complete:
//! a slowloris and an idle connection are both closed when it fires.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tower::Service;

use super::Limits;

/// How long requests in flight may take to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);
/// File descriptors kept for everything but API connections (the store,
/// Docker, the agents' calls, policy caches).
const RESERVED_FDS: u64 = 256;

/// Raises the soft limit on open files to the hard limit, and returns the
/// connections the API may hold: `wanted`, or fewer if the limit is lower.
pub fn connection_budget(wanted: usize) -> usize {
    let soft = crate::limits::raise_open_file_limit();
    // None is unlimited.
    let room = soft.map_or(u64::MAX, |s| s.saturating_sub(RESERVED_FDS));
    let budget = wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1);
    if budget < wanted {
        tracing::warn!(
            wanted,
            budget,
            open_file_limit = ?soft,
            "--max-connections lowered to fit the open-file limit"
        );
    }
    budget
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// requests in flight finish (up to ten seconds).
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(connection_budget(limits.max_connections)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // A connection is accepted only with a permit in hand: beyond the
        // cap, clients wait in the backlog instead of taking descriptors.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = Arc::clone(&permits).acquire_owned() => p.context("the connection permits closed")?,
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like pass; accepting again at once would spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // The peer's address reaches the handlers, to log refused agents.
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                Ok::<_, Infallible>(
                    router
                        .call(req.map(Body::new))
                        .await
                        .unwrap_or_else(|e| match e {}),
                )
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(remote = %peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .context("requests still in flight after 10s")
}
