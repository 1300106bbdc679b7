//! Removing tasks stopped longer than `--stopped-task-ttl` (once a minute,
//! from the batch scheduler; over etcd, by the owner of `collectors`).

use berth_core::model::Task;
use berth_core::status::{DesiredStatus, TaskStatus};

use super::tasks::QueuedTask;
use super::{Control, ControlError, now};

/// Stopped tasks kept visible (DescribeTasks, ListTasks STOPPED) this long
/// by default, as ECS keeps them about an hour.
pub const STOPPED_TASK_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

impl Control {
    /// Deletes tasks STOPPED (desired and last) longer ago than `ttl`, in
    /// commits of at most 500; returns how many went. Without this every
    /// task ever run stays in the store, and what reads an instance's or a
    /// service's tasks slows down with the history.
    pub fn collect_stopped_tasks(&self, ttl: std::time::Duration) -> Result<usize, ControlError> {
        self.collect_stopped_tasks_by(ttl, 1000)
    }

    /// [`Control::collect_stopped_tasks`], reading the tasks `page` at a time.
    pub(super) fn collect_stopped_tasks_by(
        &self,
        ttl: std::time::Duration,
        page: usize,
    ) -> Result<usize, ControlError> {
        let cutoff = now() - ttl.as_secs_f64();
        let old = |t: &Task| {
            t.desired_status == DesiredStatus::Stopped
                && t.last_status == TaskStatus::Stopped
                && t.stopped_at.is_some_and(|s| s < cutoff)
        };
        // One page of tasks decoded at a time, keeping only the ARNs due:
        // decoding the whole table at once (every task of the last TTL) made
        // a burst of memory once a minute, as large as the table, which the
        // allocator kept (the soak's RSS grew by it every minute).
        let mut doomed: Vec<String> = Vec::new();
        {
            let txn = self.store.begin()?;
            let mut req = berth_store::PageRequest::first(page.max(1));
            loop {
                let p = txn.list::<Task>(req.clone())?;
                doomed.extend(
                    p.items
                        .into_iter()
                        .filter(|t| old(&t.value))
                        .map(|t| t.value.task_arn),
                );
                match p.next_token {
                    Some(t) => req.token = Some(t),
                    None => break,
                }
            }
        }
        let mut gone = 0;
        for chunk in doomed.chunks(self.store.records_per_txn().min(500)) {
            let up = self.store.update(|txn| -> Result<usize, ControlError> {
                let mut n = 0;
                for arn in chunk {
                    // Checked again in the transaction: nothing revives a
                    // stopped task today, but the store is the judge.
                    if txn.get::<Task>(arn)?.is_some_and(|t| old(&t.value)) {
                        txn.delete::<Task>(arn)?;
                        txn.delete::<QueuedTask>(arn)?;
                        n += 1;
                    }
                }
                Ok(n)
            })?;
            gone += up.value;
        }
        if gone > 0 {
            tracing::info!(tasks = gone, "stopped tasks past their retention removed");
        }
        Ok(gone)
    }
}
