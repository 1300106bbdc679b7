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
    super::scheduler::passes(
        control,
        wake,
        TICK,
        shutdown,
        "the service scheduler pass",
        |c| {
            let p = c.services_pass()?;
            if p.started > 0 || p.stopped > 0 {
                tracing::info!(
                    started = p.started,
                    stopped = p.stopped,
                    conflicts = p.conflicts,
                    "service scheduler pass"
                );
                c.announce_tasks();
            }
            Ok(())
        },
    )
    .await;
}
