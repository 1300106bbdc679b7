//! The service scheduler's loop: a pass over every service when a service
//! changes (committed by anything over the store: see `scheduler`) and on a
//! short timer, since tasks stop and turn healthy without any service
//! changing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_core::model::Service;
use berth_store::Record;

use super::Control;

/// How often services are checked without a wake-up.
pub const TICK: Duration = Duration::from_secs(1);

/// Runs until `shutdown` resolves.
pub async fn run(control: Arc<Control>, shutdown: impl Future<Output = ()>) {
    run_every(control, TICK, shutdown).await;
}

/// [`run`] with its safety-net timer at `tick`.
pub async fn run_every(control: Arc<Control>, tick: Duration, shutdown: impl Future<Output = ()>) {
    super::scheduler::passes(
        control,
        &[Service::TABLE],
        tick,
        shutdown,
        "the service scheduler pass",
        |c| {
            if !c.owns(super::owner::SERVICES) {
                return Ok(()); // another server's (over etcd)
            }
            let p = c.services_pass()?;
            if p.started > 0 || p.stopped > 0 {
                tracing::info!(
                    started = p.started,
                    stopped = p.stopped,
                    conflicts = p.conflicts,
                    "service scheduler pass"
                );
            }
            Ok(())
        },
    )
    .await;
}
