//! The batch scheduler's loop: places queued tasks when capacity may have
//! freed (a task changed, an instance came or changed) and on a timer, since
//! capacity also frees in ways no commit shows at once.
//!
//! The wake-ups are watches of the store's tables, not calls made by the
//! code that changed them: a change committed by anything over the same
//! store (another control plane, an agent) wakes the schedulers of this
//! process. The timers stay as a safety net.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_core::model::{ContainerInstance, Task};
use berth_store::{Record, Watch};

use super::Control;

/// How often the queue is retried without a wake-up.
pub const TICK: Duration = Duration::from_secs(5);

/// A wake-up waits this long for the commits that come with it (a burst of
/// them makes one pass, and a pass's own commits cannot spin the loop).
const SETTLE: Duration = Duration::from_millis(10);

/// The tables whose changes may free capacity for queued tasks.
const QUEUE_TABLES: &[&str] = &[Task::TABLE, ContainerInstance::TABLE];

/// Runs until `shutdown` resolves, waking the agents of this process when
/// tasks change.
pub async fn run(control: Arc<Control>, shutdown: impl Future<Output = ()>) {
    run_every(control, TICK, shutdown).await;
}

/// [`run`] with its safety-net timer at `tick`.
pub async fn run_every(control: Arc<Control>, tick: Duration, shutdown: impl Future<Output = ()>) {
    let agents = tokio::spawn(wake_agents(Arc::clone(&control)));
    passes(
        control,
        QUEUE_TABLES,
        tick,
        shutdown,
        "the queue pass",
        |c| {
            // Policy instances nobody used for a while give their slot back.
            c.drop_idle_policy_sessions();
            // Over etcd, the collectors and the queue are each one
            // server's (`owner.rs`).
            if c.owns(super::owner::COLLECTORS) {
                // Stopped tasks past their retention go (at most once a minute).
                if let Err(e) = c.collect_stopped_tasks_now_and_then() {
                    tracing::warn!(error = %e, "removing old stopped tasks failed");
                }
                // So are audit entries past theirs.
                if let Err(e) = c.collect_audit_now_and_then() {
                    tracing::warn!(error = %e, "removing old audit entries failed");
                }
            }
            if !c.owns(super::owner::QUEUE) {
                return Ok(());
            }
            match c.place_queued()? {
                0 => {}
                n => tracing::info!(placed = n, "placed queued tasks"),
            }
            Ok(())
        },
    )
    .await;
    agents.abort();
}

/// Wakes the agent (`Control::with_tasks_changed`) whenever the tasks
/// table changes: tasks placed, asked to stop, or changed by anyone else.
async fn wake_agents(control: Arc<Control>) {
    let mut watch = watch_from_now(&control, &[Task::TABLE]);
    loop {
        match watch.next().await {
            Ok(_) => control.tasks_changed.notify_one(),
            Err(e) => {
                tracing::warn!(error = %e, "watching the tasks for the agents failed");
                tokio::time::sleep(TICK).await;
            }
        }
    }
}

/// A watch of `tables` from the store's latest revision.
fn watch_from_now(control: &Control, tables: &[&str]) -> Watch {
    let from = control.store.revision().unwrap_or_else(|e| {
        // From 0 the first answer is "compacted": one wake-up too many.
        tracing::warn!(error = %e, "reading the store's revision failed");
        0
    });
    control.store.watch(tables, from)
}

/// Runs `pass` on a blocking thread whenever one of `tables` changes or
/// `tick` passes, until `shutdown` resolves; a failed pass is logged and the
/// next one comes. The batch and the service schedulers both loop this way.
pub(super) async fn passes(
    control: Arc<Control>,
    tables: &[&str],
    tick: Duration,
    shutdown: impl Future<Output = ()>,
    name: &'static str,
    pass: fn(&Control) -> Result<(), super::ControlError>,
) {
    let mut watch = watch_from_now(&control, tables);
    tokio::pin!(shutdown);
    loop {
        let woken = tokio::select! {
            () = &mut shutdown => return,
            changed = watch.next() => Some(changed),
            () = tokio::time::sleep(tick) => None,
        };
        match woken {
            Some(Ok(_)) => {
                tokio::time::sleep(SETTLE).await;
                // What landed meanwhile is covered by the pass about to run.
                if let Err(e) = watch.poll() {
                    tracing::warn!(error = %e, "{name}: watching the store failed");
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "{name}: watching the store failed");
                tokio::time::sleep(tick).await;
            }
            None => {}
        }
        let c = Arc::clone(&control);
        match tokio::task::spawn_blocking(move || pass(&c)).await {
            // A failed pass still shows the loop alive; the store's health
            // is told apart.
            Ok(Ok(())) => control.beats.beat(name),
            Ok(Err(e)) => {
                control.beats.beat(name);
                tracing::warn!(error = %e, "{name} failed");
            }
            Err(e) => tracing::error!(error = %e, "{name} panicked"),
        }
    }
}

#[cfg(test)]
mod tests;
