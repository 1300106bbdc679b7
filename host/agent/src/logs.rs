//! `berth logs`: a task's container output, straight from Docker (found by
//! the `berth.task-arn` label), so it works while `berth up` holds the store.

use std::io::Write;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;

use crate::docker::{connect, containers_with_label};
use crate::{AgentError, LABEL_CONTAINER_NAME, LABEL_TASK_ARN};

/// Writes the logs of task `task` (its id or ARN) to `out`: every container,
/// or only `container`; with `follow`, keeps streaming until the containers stop.
/// Each line is prefixed with the container name when more than one is shown.
pub async fn task_logs(task: &str, container: Option<&str>, follow: bool, out: &mut (dyn Write + Send)) -> Result<(), AgentError> {
    let docker = connect().await?;
    let mut found = if task.starts_with("arn:") {
        containers_with_label(&docker, LABEL_TASK_ARN, task).await?
    } else {
        // A task id: match the end of the label's value.
        let mut filters = std::collections::HashMap::new();
        filters.insert("label", vec![LABEL_TASK_ARN.to_owned()]);
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        docker
            .list_containers(Some(opts))
            .await?
            .into_iter()
            .filter(|c| c.labels.as_ref().and_then(|l| l.get(LABEL_TASK_ARN)).is_some_and(|a| a.rsplit('/').next() == Some(task)))
            .collect()
    };
    if found.is_empty() {
        return Err(AgentError::NoSuchTask(task.to_owned()));
    }
    let name_of = |c: &bollard::models::ContainerSummary| c.labels.as_ref().and_then(|l| l.get(LABEL_CONTAINER_NAME)).cloned().unwrap_or_default();
    if let Some(want) = container {
        found.retain(|c| name_of(c) == want);
        if found.is_empty() {
            return Err(AgentError::NoSuchContainer { task: task.to_owned(), name: want.to_owned() });
        }
    }
    found.sort_by_key(&name_of);
    let prefix = found.len() > 1;
    let mut streams = Vec::new();
    for c in &found {
        let Some(id) = c.id.clone() else { continue };
        let name = name_of(c);
        let opts = LogsOptionsBuilder::default().stdout(true).stderr(true).follow(follow).build();
        streams.push(docker.logs(&id, Some(opts)).map(move |r| (name.clone(), r)).boxed());
    }
    // Without follow, one container after the other; with it, interleaved as they come.
    let mut all = if follow { futures_util::stream::select_all(streams).boxed() } else { futures_util::stream::iter(streams).flatten().boxed() };
    while let Some((name, item)) = all.next().await {
        let bytes = match item? {
            LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message } => message,
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
