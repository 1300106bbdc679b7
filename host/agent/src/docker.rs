//! Small helpers over bollard: connecting, listing berth's containers, events.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::{AgentError, LABEL_INSTANCE, LABEL_TASK_ARN};

/// How long one Docker request may take (bollard's default).
const DOCKER_TIMEOUT_SECS: u64 = 120;

/// Connects to the daemon at `host` (`unix:///PATH` or `tcp://HOST:PORT`),
/// else the local one (`DOCKER_HOST` or the Unix socket), and negotiates the
/// API version down to what the daemon speaks.
pub async fn connect(host: Option<&str>) -> Result<Docker, AgentError> {
    let docker = match host {
        None => Docker::connect_with_local_defaults()?,
        Some(h) => {
            if let Some(path) = h.strip_prefix("unix://") {
                Docker::connect_with_unix(path, DOCKER_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)?
            } else if let Some(addr) = h.strip_prefix("tcp://") {
                Docker::connect_with_http(
                    &format!("http://{addr}"),
                    DOCKER_TIMEOUT_SECS,
                    bollard::API_DEFAULT_VERSION,
                )?
            } else {
                return Err(AgentError::DockerHost(h.to_owned()));
            }
        }
    };
    let docker = docker.negotiate_version().await?;
    Ok(docker)
}

/// Every container (running or not) carrying `label=value`.
pub async fn containers_with_label(
    docker: &Docker,
    label: &str,
    value: &str,
) -> Result<Vec<ContainerSummary>, AgentError> {
    let mut filters = HashMap::new();
    filters.insert("label", vec![format!("{label}={value}")]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    Ok(docker.list_containers(Some(opts)).await?)
}

/// The containers of task `task_arn` that agent `instance_arn` owns: both
/// labels must match, so agents sharing a daemon never touch each other's.
pub async fn task_containers(
    docker: &Docker,
    instance_arn: &str,
    task_arn: &str,
) -> Result<Vec<ContainerSummary>, AgentError> {
    let mut filters = HashMap::new();
    filters.insert(
        "label",
        vec![
            format!("{LABEL_INSTANCE}={instance_arn}"),
            format!("{LABEL_TASK_ARN}={task_arn}"),
        ],
    );
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    Ok(docker.list_containers(Some(opts)).await?)
}

/// Wakes the agent on every event of its own containers (die, health_status,
/// destroy, ...); returns when the stream ends or fails, after a last wake so
/// the loop notices.
pub async fn follow_events(docker: Docker, instance_arn: String, wake: Arc<Notify>) {
    let mut filters = HashMap::new();
    filters.insert("type", vec!["container".to_owned()]);
    filters.insert("label", vec![format!("{LABEL_INSTANCE}={instance_arn}")]);
    let opts = EventsOptionsBuilder::default().filters(&filters).build();
    let mut events = docker.events(Some(opts));
    while let Some(ev) = events.next().await {
        match ev {
            Ok(ev) => {
                tracing::debug!(action = ?ev.action, "docker event");
                wake.notify_one();
            }
            Err(e) => {
                tracing::debug!("docker event stream: {e}");
                break;
            }
        }
    }
    wake.notify_one();
}

/// Whether a bollard error is Docker's 404.
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
