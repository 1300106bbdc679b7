//! `berth up`: start everything on one machine.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// `$XDG_DATA_HOME/berth`, else `~/.local/share/berth`, else `./berth-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("berth");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/share/berth"),
        None => PathBuf::from("berth-data"),
    }
}

/// Opens (or creates) the store in `data_dir` and reports it; then runs
/// until SIGINT or SIGTERM, unless `check` asks to exit at once.
pub fn run(
    data_dir: &Path,
    check: bool,
    listen: std::net::SocketAddr,
    agent: &crate::agent::AgentOptions,
    stopped_task_ttl: std::time::Duration,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let path = data_dir.join("berth.redb");
    let store = berth_store::Store::open(&path)
        .with_context(|| format!("opening the store at {}", path.display()))?;
    let info = store.info().context("reading the store")?;
    println!("berth {}: {info}", env!("CARGO_PKG_VERSION"));
    if check {
        return Ok(());
    }
    let store = std::sync::Arc::new(store);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // The Docker agents of this host; without a daemon they keep retrying.
    let agents = rt.block_on(crate::agent::spawn(&store, data_dir, agent))?;
    // The ECS API and the batch scheduler; they print the "running" line.
    // The control layer wakes the agents when it places or stops tasks.
    let tasks_changed = std::sync::Arc::clone(&agents.notifier);
    rt.block_on(crate::api::run(
        std::sync::Arc::clone(&store),
        data_dir,
        listen,
        tasks_changed,
        std::sync::Arc::clone(&agents.log_readers),
        stopped_task_ttl,
        async {
            if let Err(e) = shutdown_signal().await {
                tracing::error!(error = %e, "waiting for a signal failed; stopping");
            }
        },
    ))?;
    rt.block_on(agents.stop());
    drop(store);
    println!("berth: stopped");
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
