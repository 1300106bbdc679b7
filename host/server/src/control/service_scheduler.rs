//! The service scheduler's loop: a pass over every service when a service
//! changes and on a short timer, since tasks stop and turn healthy without
//! any call announcing it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::Control;

/// How often services are checked without a wake-up.
pub const TICK: Duration = Duration::from_secs(1);

/// Runs until `shutdown` resolves.
pub async fn run(control: Arc<Control>, shutdown: impl Future<Output = ()>) {
    let wake = Arc::clone(&control.service_wake);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
        let c = Arc::clone(&control);
        match tokio::task::spawn_blocking(move || c.services_pass()).await {
            Ok(Ok(p)) if p.started == 0 && p.stopped == 0 => {}
            Ok(Ok(p)) => tracing::info!(
                started = p.started,
                stopped = p.stopped,
                conflicts = p.conflicts,
                "service scheduler pass"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "service scheduler pass failed"),
            Err(e) => tracing::error!(error = %e, "the service scheduler pass panicked"),
        }
    }
}
