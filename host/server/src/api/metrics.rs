//! `GET /metrics` on its own listener (`--metrics-listen`): unsigned, as
//! Prometheus scrapes, so it is off unless asked for and belongs on an
//! address only the scraper reaches (docs/security.md).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{ApiError, Limits, serve};
use crate::control::Control;

/// Scrapers are few: a handful of connections, and a scrape that cannot
/// finish its reads in this time is answered with an error.
const MAX_CONNECTIONS: usize = 16;
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// The metrics routes: `GET /metrics`; anything else is a named 404.
pub fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(
                "UnknownOperationException",
                404,
                "this listener serves GET /metrics only",
            )
        })
        .with_state(control)
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve_metrics(
    control: Arc<Control>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = Limits {
        max_connections: MAX_CONNECTIONS,
        ..Limits::default()
    };
    serve(router(control), listener, &limits, shutdown).await
}

async fn metrics(State(control): State<Arc<Control>>) -> Response {
    // The snapshot reads the store, which blocks.
    let read = tokio::task::spawn_blocking(move || control.metrics_snapshot());
    match tokio::time::timeout(SCRAPE_TIMEOUT, read).await {
        Ok(Ok(Ok(snap))) => (
            StatusCode::OK,
            [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
            crate::metrics::render(&snap),
        )
            .into_response(),
        Ok(Ok(Err(e))) => ApiError::from(e).into_response(),
        Ok(Err(e)) => ApiError::new(
            "ServerException",
            500,
            format!("reading the metrics failed: {e}"),
        )
        .into_response(),
        Err(_) => ApiError::new(
            "ServerException",
            503,
            format!("reading the metrics took longer than {SCRAPE_TIMEOUT:?}"),
        )
        .into_response(),
    }
}
