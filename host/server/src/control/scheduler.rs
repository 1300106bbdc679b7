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
    passes(control, wake, TICK, shutdown, "the queue pass", |c| {
        // Policy instances nobody used for a while give their slot back.
        c.drop_idle_policy_sessions();
        // Stopped tasks past their retention go (at most once a minute).
        if let Err(e) = c.collect_stopped_tasks_now_and_then() {
            tracing::warn!(error = %e, "removing old stopped tasks failed");
        }
        match c.place_queued()? {
            0 => {}
            n => {
                tracing::info!(placed = n, "placed queued tasks");
                c.announce_tasks();
            }
        }
        Ok(())
    })
    .await;
}

/// Runs `pass` on a blocking thread whenever `wake` fires or `tick` passes,
/// until `shutdown` resolves; a failed pass is logged and the next one comes.
/// The batch and the service schedulers both loop this way.
pub(super) async fn passes(
    control: Arc<Control>,
    wake: Arc<tokio::sync::Notify>,
    tick: Duration,
    shutdown: impl Future<Output = ()>,
    name: &'static str,
    pass: fn(&Control) -> Result<(), super::ControlError>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
        let c = Arc::clone(&control);
        match tokio::task::spawn_blocking(move || pass(&c)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "{name} failed"),
            Err(e) => tracing::error!(error = %e, "{name} panicked"),
        }
    }
}
