//! `berth logs TASK [--container NAME] [--follow]`: straight from Docker, so
//! it works while `berth up` holds the store.

use anyhow::Context;

/// Writes the task's container output to stdout.
pub fn run(task: &str, container: Option<&str>, follow: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let mut out = std::io::stdout();
    rt.block_on(berth_agent::logs::task_logs(task, container, follow, &mut out)).with_context(|| format!("logs of task {task}"))
}
