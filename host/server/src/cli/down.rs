//! `berth down`: stop a running `berth up` with its tasks, as `docker
//! compose down` or stopping a Nomad dev agent would. Ctrl-C on `berth up`
//! leaves the tasks' containers running (the next start re-adopts them);
//! this stops them first, then the server.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::{CliError, Client, Conn, POLL, Result};

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Stop the server only, leaving the tasks' containers running (as
    /// Ctrl-C does); the next `berth up` re-adopts them.
    #[arg(long)]
    keep_tasks: bool,
    /// Give up waiting for the server to exit after this many seconds (exit 5).
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    timeout: u64,
    #[command(flatten)]
    pub(super) conn: Conn,
}

/// Asks the server to stop (with its tasks unless `--keep-tasks`), then
/// waits until its endpoint no longer answers.
pub async fn run(c: &Client, args: DownArgs) -> Result<()> {
    let v = c
        .berth("Shutdown", json!({"stopTasks": !args.keep_tasks}))
        .await?;
    if args.conn.json() {
        println!("{v}");
    } else if args.keep_tasks {
        println!("berth: stopping the server; its tasks keep running");
    } else {
        println!("berth: stopping this host's tasks, then the server");
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        match c.berth("DescribeServer", json!({})).await {
            Err(CliError::Unreachable(_)) => break,
            _ if Instant::now() >= deadline => {
                return Err(CliError::Timeout(format!(
                    "the server still answers after {}s (--timeout); it may still be stopping its tasks",
                    args.timeout
                )));
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
    if !args.conn.json() {
        println!("berth: stopped");
    }
    Ok(())
}
