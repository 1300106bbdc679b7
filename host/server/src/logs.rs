//! `berth logs --docker` (and `berth logs` when berth up does not answer):
//! a task's output straight from this host's Docker, without the API.

use anyhow::Context;

/// Writes the task's container output to stdout.
pub async fn from_docker(task: &str, container: Option<&str>, follow: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    berth_agent::logs::task_logs(task, container, follow, &mut out)
        .await
        .with_context(|| format!("logs of task {task}"))
}
