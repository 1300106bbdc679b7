//! The batch scheduler's loop: places queued tasks when capacity may have
//! freed (woken by StopTask and instance changes) and on a timer, since
//! capacity also frees in ways no call announces.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::Control;

/// How often the queue is retried without a wake-up.
pub const TICK: Duration = Duration::from_secs(5);

/// Runs until `shutdown` resolves.
pub async fn run(control: Arc<Control>, shutdown: impl Future<Output = ()>) {
    let wake = control.wake_handle();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
        let c = Arc::clone(&control);
        match tokio::task::spawn_blocking(move || c.place_queued()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(placed = n, "placed queued tasks"),
            Ok(Err(e)) => tracing::warn!(error = %e, "placing queued tasks failed"),
            Err(e) => tracing::error!(error = %e, "the queue pass panicked"),
        }
    }
}
