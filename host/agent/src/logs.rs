//! Task logs from Docker, found by the `berth.task-arn` label, without the
//! control plane: [`task_logs`] writes them to a stream (`berth logs` when
//! the API is not reachable), [`task_log_streams`] gives each container's
//! entries with Docker's timestamps, and [`DockerLogReader`] answers the
//! protocol's log reads from them (the API's `GetTaskLogs`).

use std::io::Write;

use async_trait::async_trait;
use berth_protocol::{
    ContainerLogs, LogLine, LogReadError, TaskLogReader, TaskLogs, TaskLogsRequest,
};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::ContainerSummary;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::docker::{connect, containers_with_label};
use crate::{AgentError, LABEL_CONTAINER_NAME, LABEL_TASK_ARN};

/// One entry of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Docker's timestamp, RFC 3339 with nanoseconds, UTC
    /// (`2026-11-30T02:44:13.123456789Z`).
    pub timestamp: String,
    /// The output, without its line end (stdout and stderr alike).
    pub message: Vec<u8>,
}

/// The log of one container of a task, oldest entry first.
pub struct ContainerLog {
    /// The container's name in the task definition.
    pub name: String,
    /// Its entries; dropping them ends the request to Docker.
    entries: BoxStream<'static, Result<LogEntry, AgentError>>,
}

impl ContainerLog {
    /// The next entry, oldest first; `None` at the end of what Docker holds.
    pub async fn next_entry(&mut self) -> Option<Result<LogEntry, AgentError>> {
        self.entries.next().await
    }
}

impl std::fmt::Debug for ContainerLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerLog")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn name_of(c: &ContainerSummary) -> String {
    c.labels
        .as_ref()
        .and_then(|l| l.get(LABEL_CONTAINER_NAME))
        .cloned()
        .unwrap_or_default()
}

/// The containers of `task` (an ARN, or a task id matched against the end of
/// the label), only `container` if given, sorted by name.
async fn find(
    docker: &Docker,
    task: &str,
    container: Option<&str>,
) -> Result<Vec<ContainerSummary>, AgentError> {
    let mut found = if task.starts_with("arn:") {
        containers_with_label(docker, LABEL_TASK_ARN, task).await?
    } else {
        let mut filters = std::collections::HashMap::new();
        filters.insert("label", vec![LABEL_TASK_ARN.to_owned()]);
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        docker
            .list_containers(Some(opts))
            .await?
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_TASK_ARN))
                    .is_some_and(|a| a.rsplit('/').next() == Some(task))
            })
            .collect()
    };
    if found.is_empty() {
        return Err(AgentError::NoSuchTask(task.to_owned()));
    }
    if let Some(want) = container {
        found.retain(|c| name_of(c) == want);
        if found.is_empty() {
            return Err(AgentError::NoSuchContainer {
                task: task.to_owned(),
                name: want.to_owned(),
            });
        }
    }
    found.sort_by_key(name_of);
    for c in &found {
        let Some(id) = c.id.as_deref() else { continue };
        let driver = docker
            .inspect_container(id, None)
            .await?
            .host_config
            .and_then(|h| h.log_config)
            .and_then(|l| l.typ)
            .unwrap_or_default();
        if !READABLE_LOG_DRIVERS.contains(&driver.as_str()) {
            return Err(AgentError::LogsElsewhere {
                task: task.to_owned(),
                name: name_of(c),
                driver,
            });
        }
    }
    Ok(found)
}

/// The log drivers whose logs Docker reads back (`docker logs`).
const READABLE_LOG_DRIVERS: [&str; 2] = ["json-file", "local"];

/// Writes the logs of task `task` (its id or ARN) to `out`: every container,
/// or only `container`; with `follow`, keeps streaming until the containers stop.
/// Each line is prefixed with the container name when more than one is shown.
pub async fn task_logs(
    task: &str,
    container: Option<&str>,
    follow: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), AgentError> {
    let docker = connect(None).await?;
    let found = find(&docker, task, container).await?;
    let prefix = found.len() > 1;
    let mut streams = Vec::new();
    for c in &found {
        let Some(id) = c.id.clone() else { continue };
        let name = name_of(c);
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .build();
        streams.push(
            docker
                .logs(&id, Some(opts))
                .map(move |r| (name.clone(), r))
                .boxed(),
        );
    }
    // Without follow, one container after the other; with it, interleaved as they come.
    let mut all = if follow {
        futures_util::stream::select_all(streams).boxed()
    } else {
        futures_util::stream::iter(streams).flatten().boxed()
    };
    while let Some((name, item)) = all.next().await {
        let bytes = match item? {
            LogOutput::StdOut { message }
            | LogOutput::StdErr { message }
            | LogOutput::Console { message } => message,
            LogOutput::StdIn { .. } => continue,
        };
        if prefix {
            for line in bytes.split_inclusive(|b| *b == b'\n') {
                write!(out, "{name} | ")?;
                out.write_all(line)?;
            }
        } else {
            out.write_all(&bytes)?;
        }
        out.flush()?;
    }
    Ok(())
}

/// The logs of task `task` (its ARN or id), each container's (or only
/// `container`'s) entries with their timestamps, from `since` (epoch seconds:
/// Docker's granularity, so the caller filters finer) to what Docker holds now.
pub async fn task_log_streams(
    task: &str,
    container: Option<&str>,
    since: Option<i64>,
) -> Result<Vec<ContainerLog>, AgentError> {
    task_log_streams_at(None, task, container, since).await
}

/// [`task_log_streams`] from the daemon at `docker_host` (else the local one).
async fn task_log_streams_at(
    docker_host: Option<&str>,
    task: &str,
    container: Option<&str>,
    since: Option<i64>,
) -> Result<Vec<ContainerLog>, AgentError> {
    let docker = connect(docker_host).await?;
    let found = find(&docker, task, container).await?;
    let since = since.map(|s| i32::try_from(s.max(0)).unwrap_or(i32::MAX));
    let mut out = Vec::new();
    for c in &found {
        let Some(id) = c.id.clone() else { continue };
        let mut opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true);
        if let Some(s) = since {
            opts = opts.since(s);
        }
        let frames = docker.logs(&id, Some(opts.build()));
        // A frame holds one entry or more, each line prefixed with its timestamp.
        let entries = frames
            .scan(String::new(), |last, frame| {
                let batch = match frame {
                    Err(e) => vec![Err(AgentError::from(e))],
                    Ok(LogOutput::StdIn { .. }) => Vec::new(),
                    Ok(
                        LogOutput::StdOut { message }
                        | LogOutput::StdErr { message }
                        | LogOutput::Console { message },
                    ) => split_entries(&message, last).into_iter().map(Ok).collect(),
                };
                std::future::ready(Some(futures_util::stream::iter(batch)))
            })
            .flatten()
            .boxed();
        out.push(ContainerLog {
            name: name_of(c),
            entries,
        });
    }
    Ok(out)
}

/// This host's Docker as the log-read side of the agent protocol.
#[derive(Debug, Default)]
pub struct DockerLogReader {
    /// The daemon (`unix:///PATH`, `tcp://HOST:PORT`); None: the local one.
    pub docker_host: Option<String>,
}

#[async_trait]
impl TaskLogReader for DockerLogReader {
    async fn read_task_logs(&self, req: TaskLogsRequest) -> Result<TaskLogs, LogReadError> {
        read_task_logs_at(self.docker_host.as_deref(), &req).await
    }
}

fn micros(nanos: i64) -> i64 {
    nanos.div_euclid(1000)
}

fn log_read_error(e: AgentError) -> LogReadError {
    match e {
        AgentError::NoSuchTask(task) => LogReadError::NoSuchTask { task },
        AgentError::NoSuchContainer { task, name } => LogReadError::NoSuchContainer { task, name },
        AgentError::LogsElsewhere { task, name, driver } => {
            LogReadError::LogsElsewhere { task, name, driver }
        }
        other => LogReadError::Failed {
            message: other.to_string(),
        },
    }
}

/// Each container's entries of `req.task_arn` from `req.start_micros` on:
/// the first `req.limit` and the rest of the last one's microsecond (the
/// caller merges the containers and cuts a page that never splits one).
pub async fn read_task_logs(req: &TaskLogsRequest) -> Result<TaskLogs, LogReadError> {
    read_task_logs_at(None, req).await
}

/// [`read_task_logs`] from the daemon at `docker_host` (else the local one).
async fn read_task_logs_at(
    docker_host: Option<&str>,
    req: &TaskLogsRequest,
) -> Result<TaskLogs, LogReadError> {
    let since = req.start_micros.map(|m| m.div_euclid(1_000_000));
    let streams = task_log_streams_at(docker_host, &req.task_arn, req.container.as_deref(), since)
        .await
        .map_err(log_read_error)?;
    let from_nanos = req
        .start_micros
        .map_or(i64::MIN, |m| m.saturating_mul(1000));
    let mut out = TaskLogs::default();
    for mut log in streams {
        let mut entries: Vec<LogLine> = Vec::new();
        // The newest of the page's first `limit` entries, once it has them.
        let mut cut: Option<i64> = None;
        while let Some(e) = log.next_entry().await {
            let e = e.map_err(log_read_error)?;
            let nanos = chrono::DateTime::parse_from_rfc3339(&e.timestamp)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .ok_or_else(|| LogReadError::Failed {
                    message: format!(
                        "Docker gave a log timestamp berth cannot read: `{}`",
                        e.timestamp
                    ),
                })?;
            if nanos < from_nanos {
                continue;
            }
            if cut.is_some_and(|c| nanos > c.saturating_add(OUT_OF_ORDER_NANOS)) {
                break;
            }
            entries.push(LogLine {
                nanos,
                message: String::from_utf8_lossy(&e.message).into_owned(),
            });
            if cut.is_none() && entries.len() >= req.limit {
                cut = entries.iter().map(|l| l.nanos).max();
            }
        }
        cut_page(&mut entries, req.limit);
        out.containers.push(ContainerLogs {
            name: log.name.clone(),
            entries,
        });
    }
    Ok(out)
}

/// How far out of order Docker may store one container's entries: it stamps
/// each pipe's lines as it reads them and writes them after, so on a busy
/// host a line can follow lines stamped after it. A page reads this far past
/// its cut and sorts, so such a line lands on the page its time says (the
/// next page starts after the cut and would never show it).
const OUT_OF_ORDER_NANOS: i64 = 2_000_000_000;

/// Sorts a page's entries by time and keeps the first `limit` and the rest
/// of the last one's microsecond (a page never splits one: the next starts
/// at the following microsecond).
fn cut_page(entries: &mut Vec<LogLine>, limit: usize) {
    entries.sort_by_key(|l| l.nanos);
    if entries.len() > limit
        && let Some(last) = limit.checked_sub(1).map(|i| micros(entries[i].nanos))
    {
        let keep = entries[limit..]
            .iter()
            .position(|l| micros(l.nanos) != last)
            .map_or(entries.len(), |i| limit + i);
        entries.truncate(keep);
    }
}

/// Splits a frame of timestamped output into entries. A line without a
/// timestamp (a TTY's raw output can break lines anywhere) goes with the
/// timestamp of the entry before it, `last`.
fn split_entries(frame: &[u8], last: &mut String) -> Vec<LogEntry> {
    let mut out = Vec::new();
    for line in frame.split_inclusive(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let stamped = line
            .iter()
            .position(|b| *b == b' ')
            .filter(|&i| looks_like_timestamp(&line[..i]));
        let message = match stamped {
            Some(i) => {
                *last = String::from_utf8_lossy(&line[..i]).into_owned();
                &line[i + 1..]
            }
            None => line,
        };
        if stamped.is_none() && line.is_empty() {
            continue;
        }
        out.push(LogEntry {
            timestamp: last.clone(),
            message: message.to_vec(),
        });
    }
    out
}

/// `2026-11-30T02:44:13.123456789Z` and the like: digits, a `T`, ending in `Z`.
fn looks_like_timestamp(s: &[u8]) -> bool {
    s.len() >= 20
        && s[4] == b'-'
        && s[10] == b'T'
        && s[..4].iter().all(u8::is_ascii_digit)
        && (s.ends_with(b"Z") || s[19..].contains(&b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(nanos: i64) -> LogLine {
        LogLine {
            nanos,
            message: nanos.to_string(),
        }
    }

    /// A line stored after lines stamped later than it (a busy Docker) is
    /// put where its time says: on this page, not skipped by the next one,
    /// which starts after the cut.
    #[test]
    fn a_page_sorts_its_entries_and_never_splits_a_microsecond() {
        let mut page: Vec<LogLine> = [1_000, 2_000, 4_000, 5_000, 5_500, 3_000, 9_000]
            .into_iter()
            .map(line)
            .collect();
        cut_page(&mut page, 3);
        let got: Vec<i64> = page.iter().map(|l| l.nanos).collect();
        assert_eq!(got, [1_000, 2_000, 3_000]);
        // The rest of the last entry's microsecond stays on the page.
        let mut page: Vec<LogLine> = [1_000, 2_000, 3_000, 3_400, 3_999, 4_000]
            .into_iter()
            .map(line)
            .collect();
        cut_page(&mut page, 3);
        assert_eq!(page.len(), 5);
    }

    #[test]
    fn frames_split_into_timestamped_entries() {
        let mut last = String::new();
        let e = split_entries(
            b"2026-11-30T02:44:13.000000001Z hello\n2026-11-30T02:44:13.000000002Z  two spaces\n",
            &mut last,
        );
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].timestamp, "2026-11-30T02:44:13.000000001Z");
        assert_eq!(e[0].message, b"hello");
        assert_eq!(e[1].message, b" two spaces");
        // An unstamped continuation keeps the previous timestamp.
        let e = split_entries(b"more output\n", &mut last);
        assert_eq!(
            e,
            vec![LogEntry {
                timestamp: "2026-11-30T02:44:13.000000002Z".into(),
                message: b"more output".to_vec()
            }]
        );
        // An empty entry is kept when stamped.
        let e = split_entries(b"2026-11-30T02:44:14.000000000Z \n", &mut last);
        assert_eq!(e[0].message, b"");
        assert_eq!(last, "2026-11-30T02:44:14.000000000Z");
    }
}
