//! `Berth_20261125.Shutdown`, what `berth down` asks: the server stops
//! serving and, when asked to, stops the tasks of its own agents (their
//! containers stopped and removed, as StopTask does) before it exits.
//! `berth up` alone, stopped with Ctrl-C, leaves them running for the next
//! start to re-adopt.

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Control, ControlError, all_by_index};
use crate::control::types::StopTaskRequest;
use berth_core::model::Task;
use berth_core::status::DesiredStatus;
use berth_store::tables::TASKS_BY_INSTANCE;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ShutdownRequest {
    /// Stop this server's agents' tasks first (`berth down`); false leaves
    /// them running, as Ctrl-C does.
    pub stop_tasks: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownResponse {
    /// Whether the tasks of this server's agents will be stopped.
    pub stop_tasks: bool,
}

/// A shutdown asked through the API: `Some(stop_tasks)` once asked.
pub type ShutdownAsked = watch::Sender<Option<bool>>;

/// The reason the tasks stopped by `berth down` carry.
pub const DOWN_REASON: &str = "berth down: the server was stopped with its tasks";

impl Control {
    /// Shutdown: the server stops serving (requests in flight finish);
    /// refused where nothing composed a way to stop this server.
    pub fn shutdown(&self, req: ShutdownRequest) -> Result<ShutdownResponse, ControlError> {
        let Some(asked) = &self.shutdown else {
            return Err(ControlError::Client(
                "this server cannot be stopped through the API".into(),
            ));
        };
        let stop_tasks = req.stop_tasks.unwrap_or(true);
        tracing::info!(stop_tasks, "shutdown asked through the API");
        asked.send_replace(Some(stop_tasks));
        Ok(ShutdownResponse { stop_tasks })
    }

    /// Asks every live task on `instances` to stop (the agents stop their
    /// containers); returns how many were asked.
    pub fn stop_instance_tasks(&self, instances: &[String]) -> Result<usize, ControlError> {
        let mut asked = 0;
        for task in self.live_tasks_on(instances)? {
            if task.desired_status == DesiredStatus::Stopped {
                continue;
            }
            self.stop_task(StopTaskRequest {
                cluster: Some(task.cluster_arn.clone()),
                task: Some(task.task_arn.clone()),
                reason: Some(DOWN_REASON.into()),
            })?;
            asked += 1;
        }
        Ok(asked)
    }

    /// The tasks on `instances` not yet STOPPED (the instance index holds
    /// a task until it is).
    pub fn live_tasks_on(&self, instances: &[String]) -> Result<Vec<Task>, ControlError> {
        let txn = self.store.begin()?;
        let mut out = Vec::new();
        for i in instances {
            out.extend(
                all_by_index(&txn, TASKS_BY_INSTANCE, i)?
                    .into_iter()
                    .map(|t| t.value),
            );
        }
        Ok(out)
    }
}
