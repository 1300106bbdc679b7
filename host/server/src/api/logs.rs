//! berth's own `GetTaskLogs`: a task's container output, read from the
//! agent of the task's instance (the log-read side of the agent protocol),
//! in pages by time, so `berth logs` works wherever the API is reachable.
//!
//! `{"cluster", "task", "container"?, "startTime"? (epoch seconds), "limit"?}`
//! -> `{"events": [{"container", "timestamp", "message"}], "nextStartTime",
//! "lastStatus", "desiredStatus"}`. Events are oldest first; `startTime` is
//! inclusive and `nextStartTime` is where the next page starts. Times are
//! kept in whole microseconds (what an f64 of epoch seconds holds exactly);
//! a page never ends inside a microsecond, so none is cut in two.

use std::sync::Arc;

use berth_core::status::{DesiredStatus, TaskStatus};
use serde::{Deserialize, Serialize};

use berth_core::model::Task;
use berth_protocol::{LogReadError, TaskLogs, TaskLogsRequest};

use super::{ApiError, decode};
use crate::control::Control;
use crate::control::types::DescribeTasksRequest;

/// Events per page when the caller gives no `limit`, and the most it may ask.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct GetTaskLogsRequest {
    cluster: Option<String>,
    task: Option<String>,
    container: Option<String>,
    start_time: Option<f64>,
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LogEvent {
    container: String,
    /// Epoch seconds.
    timestamp: f64,
    message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GetTaskLogsResponse {
    events: Vec<LogEvent>,
    next_start_time: f64,
    last_status: TaskStatus,
    desired_status: DesiredStatus,
}

/// One entry, its time in epoch nanoseconds.
struct Entry {
    nanos: i64,
    container: usize,
    message: String,
}

fn micros(nanos: i64) -> i64 {
    nanos.div_euclid(1000)
}

fn invalid(message: String) -> ApiError {
    ApiError::new("InvalidParameterException", 400, message)
}

fn client(message: String) -> ApiError {
    ApiError::new("ClientException", 400, message)
}

/// A checked request: the task reference, the page size, where it starts.
struct Asked {
    req: GetTaskLogsRequest,
    task_ref: String,
    limit: usize,
    start_micros: Option<i64>,
}

fn check(body: &[u8]) -> Result<Asked, ApiError> {
    let req: GetTaskLogsRequest = decode(body)?;
    let Some(task_ref) = req.task.clone().filter(|t| !t.is_empty()) else {
        return Err(invalid("task: is required".into()));
    };
    let limit = match req.limit {
        None => DEFAULT_LIMIT,
        Some(l) => usize::try_from(l)
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| invalid(format!("limit: {l} is not in 1-{MAX_LIMIT}")))?,
    };
    let start_micros = match req.start_time {
        None => None,
        Some(t) if (0.0..1e11).contains(&t) => Some((t * 1e6).round() as i64),
        Some(t) => {
            return Err(invalid(format!(
                "startTime: {t} is not a time in epoch seconds"
            )));
        }
    };
    Ok(Asked {
        req,
        task_ref,
        limit,
        start_micros,
    })
}

/// The task asked for, placed on an instance and with the container asked for.
async fn placed_task(control: &Arc<Control>, asked: &Asked) -> Result<Task, ApiError> {
    let c = Arc::clone(control);
    let describe = DescribeTasksRequest {
        cluster: asked.req.cluster.clone(),
        tasks: vec![asked.task_ref.clone()],
        include: Vec::new(),
    };
    let found = tokio::task::spawn_blocking(move || c.describe_tasks(describe))
        .await
        .map_err(|e| {
            ApiError::new("ServerException", 500, format!("the operation failed: {e}"))
        })??;
    let cluster_name = asked.req.cluster.as_deref().unwrap_or("default");
    let Some(task) = found.tasks.into_iter().next() else {
        return Err(ApiError::new(
            "ResourceNotFoundException",
            400,
            format!(
                "task `{}` not found in cluster `{cluster_name}`",
                asked.task_ref
            ),
        ));
    };
    let id = berth_core::arn::last_segment(&task.task_arn);
    if task.container_instance_arn.is_none() {
        return Err(client(format!(
            "task {id} is not placed on any container instance yet (lastStatus {}); it has no logs until it starts",
            task.last_status
        )));
    }
    if let Some(want) = &asked.req.container
        && !task.containers.iter().any(|c| &c.name == want)
    {
        let names: Vec<&str> = task.containers.iter().map(|c| c.name.as_str()).collect();
        return Err(invalid(format!(
            "container: task {id} has no container named `{want}` (it has: {})",
            names.join(", ")
        )));
    }
    Ok(task)
}

/// Answers `GetTaskLogs`.
pub(super) async fn get_task_logs(
    control: &Arc<Control>,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let asked = check(body)?;
    let task = placed_task(control, &asked).await?;
    let id = berth_core::arn::last_segment(&task.task_arn).to_owned();
    let instance = task.container_instance_arn.clone().unwrap_or_default();
    let stopped =
        task.last_status == TaskStatus::Stopped || task.desired_status == DesiredStatus::Stopped;
    let answer = |events: Vec<LogEvent>, next: f64| GetTaskLogsResponse {
        events,
        next_start_time: next,
        last_status: task.last_status,
        desired_status: task.desired_status,
    };
    let no_start = asked.req.start_time.unwrap_or(0.0);
    let Some(reader) = control.log_readers().get(&instance) else {
        return Err(client(format!(
            "task {id} runs on container instance {instance}, whose agent does not reach this server; its logs cannot be read here"
        )));
    };
    let read = reader
        .read_task_logs(TaskLogsRequest {
            task_arn: task.task_arn.clone(),
            container: asked.req.container.clone(),
            start_micros: asked.start_micros,
            limit: asked.limit,
        })
        .await;
    let logs = match read {
        Ok(logs) => logs,
        // Containers are created when the agent starts the task, and removed once it stops.
        Err(LogReadError::NoSuchTask { .. } | LogReadError::NoSuchContainer { .. })
            if task.last_status == TaskStatus::Pending && !stopped =>
        {
            return encode(&answer(Vec::new(), no_start));
        }
        Err(LogReadError::NoSuchTask { .. } | LogReadError::NoSuchContainer { .. }) if stopped => {
            return Err(client(format!(
                "task {id} has stopped ({}) and its containers were removed, their logs with them",
                task.last_status
            )));
        }
        Err(e @ (LogReadError::NoSuchTask { .. } | LogReadError::NoSuchContainer { .. })) => {
            return Err(client(format!(
                "task {id} (lastStatus {}): {e}, on the host of its instance",
                task.last_status
            )));
        }
        // The caller's container definition chose the driver: a 400, not a failure here.
        Err(e @ LogReadError::LogsElsewhere { .. }) => return Err(client(e.to_string())),
        Err(e) => {
            return Err(ApiError::new(
                "ServerException",
                500,
                format!("reading the logs of task {id}: {e}"),
            ));
        }
    };
    let (events, next) = merge(logs, asked.limit);
    encode(&answer(events, next.map_or(no_start, |m| m as f64 / 1e6)))
}

/// Every container's entries as one page of events, oldest first, and
/// the microsecond the next page starts at, if any entry is left.
fn merge(logs: TaskLogs, limit: usize) -> (Vec<LogEvent>, Option<i64>) {
    let mut names = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    for (ci, log) in logs.containers.into_iter().enumerate() {
        names.push(log.name);
        entries.extend(log.entries.into_iter().map(|e| Entry {
            nanos: e.nanos,
            container: ci,
            message: e.message,
        }));
    }
    let next = page(&mut entries, limit);
    let events = entries
        .into_iter()
        .map(|e| LogEvent {
            container: names[e.container].clone(),
            // In whole microseconds like the paging, so an event's own
            // timestamp given back as startTime includes it.
            timestamp: micros(e.nanos) as f64 / 1e6,
            message: e.message,
        })
        .collect();
    (events, next)
}

/// Sorts the entries of all containers by time and keeps the first `limit`,
/// and the rest of the last one's microsecond; the microsecond the next page
/// starts at, if any entry is left.
fn page(entries: &mut Vec<Entry>, limit: usize) -> Option<i64> {
    // Stable: one container's entries of the same instant keep their order.
    entries.sort_by_key(|e| e.nanos);
    if entries.len() > limit {
        let cut = micros(entries[limit - 1].nanos);
        let keep = limit
            + entries[limit..]
                .iter()
                .take_while(|e| micros(e.nanos) == cut)
                .count();
        entries.truncate(keep);
    }
    entries.last().map(|e| micros(e.nanos) + 1)
}

fn encode(v: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(v)
        .map_err(|e| ApiError::new("ServerException", 500, format!("encoding the answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(nanos: i64, container: usize) -> Entry {
        Entry {
            nanos,
            container,
            message: nanos.to_string(),
        }
    }

    #[test]
    fn a_page_is_sorted_and_never_cuts_a_microsecond() {
        // Two containers; 2_000_100 and 2_000_900 ns share microsecond 2000.
        let mut e = vec![
            at(3_000_000, 0),
            at(2_000_100, 0),
            at(1_000_000, 1),
            at(2_000_900, 1),
            at(2_500_000, 0),
        ];
        let next = page(&mut e, 2);
        let kept: Vec<i64> = e.iter().map(|e| e.nanos).collect();
        assert_eq!(
            kept,
            vec![1_000_000, 2_000_100, 2_000_900],
            "the limit, then the rest of its microsecond"
        );
        assert_eq!(
            next,
            Some(2001),
            "the next page starts after the last microsecond"
        );

        let mut e = vec![at(5_000, 0), at(4_000, 1)];
        assert_eq!(page(&mut e, 10), Some(6));
        assert_eq!(e.len(), 2);
        assert_eq!(page(&mut Vec::new(), 10), None);
    }

    #[test]
    fn the_next_start_survives_json_and_back() {
        // An epoch in microseconds, through f64 seconds as the wire carries it.
        for m in [
            1_796_007_787_725_605_i64,
            1_796_007_787_000_001,
            1_796_007_787_999_999,
        ] {
            let t: f64 =
                serde_json::from_str(&serde_json::to_string(&(m as f64 / 1e6)).unwrap()).unwrap();
            assert_eq!((t * 1e6).round() as i64, m);
        }
    }
}
