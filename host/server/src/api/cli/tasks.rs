//! `berth run` (and `--wait` until the tasks run), and the task table
//! `berth ps` and `berth stop` print.

use clap::Args;
use serde_json::{Value, json};

use super::{
    CliError, Client, Conn, POLL, Progress, Result, WaitArgs, print_failures, s, short, table,
};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// `family`, `family:revision` or ARN.
    task_definition: String,
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Wait PENDING for capacity instead of failing (berth's queue).
    #[arg(long)]
    queue: bool,
    /// Place with this installed placement policy (id or name) instead of
    /// the cluster's.
    #[arg(long)]
    policy: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    pub(super) conn: Conn,
}

pub const TASK_HEADER: [&str; 6] = ["TASK", "DEFINITION", "LAST", "DESIRED", "INSTANCE", "PORTS"];

pub fn task_rows(tasks: &[Value]) -> Vec<Vec<String>> {
    tasks
        .iter()
        .map(|t| {
            let ports: Vec<String> = t["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["networkBindings"].as_array().cloned().unwrap_or_default())
                .map(|b| format!("{}->{}", s(&b["hostPort"]), s(&b["containerPort"])))
                .collect();
            vec![
                short(&t["taskArn"]),
                short(&t["taskDefinitionArn"]),
                s(&t["lastStatus"]),
                s(&t["desiredStatus"]),
                short(&t["containerInstanceArn"]),
                if ports.is_empty() {
                    "-".into()
                } else {
                    ports.join(",")
                },
            ]
        })
        .collect()
}

/// `berth run`.
pub async fn run(c: &Client, args: RunArgs) -> Result<()> {
    let cluster = args.conn.cluster();
    let mut body =
        json!({"cluster": cluster, "taskDefinition": args.task_definition, "count": args.count});
    let mut tags = Vec::new();
    if args.queue {
        tags.push(json!({"key": crate::control::QUEUE_TAG, "value": "true"}));
    }
    if let Some(p) = &args.policy {
        tags.push(json!({"key": crate::control::POLICY_TAG, "value": p}));
    }
    if !tags.is_empty() {
        body["tags"] = json!(tags);
    }
    let mut v = c.ecs("RunTask", body).await?;
    let started = v["tasks"].as_array().cloned().unwrap_or_default();
    let mut outcome = Ok(());
    if args.wait.wait && !started.is_empty() {
        let arns: Vec<Value> = started.iter().map(|t| t["taskArn"].clone()).collect();
        let waited = wait_running(c, &cluster, &arns, &args.wait, args.conn.json()).await;
        let (Ok(tasks) | Err((tasks, _))) = &waited;
        v["tasks"] = json!(tasks);
        outcome = waited.map(|_| ()).map_err(|(_, e)| e);
    }
    print_tasks(&v, args.conn.json());
    outcome?;
    // Fewer tasks than asked for fails too: the server's reason for the first
    // one it could not place (the others are listed above).
    if let Some(f) = v["failures"].get(0) {
        let missing = v["failures"].as_array().map_or(0, Vec::len);
        return Err(CliError::Api {
            code: f["reason"].as_str().unwrap_or("NoTaskStarted").to_owned(),
            message: format!(
                "{missing} of {} tasks not started{}",
                args.count,
                f["detail"]
                    .as_str()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
        });
    }
    Ok(())
}

fn print_tasks(v: &Value, json_out: bool) {
    if json_out {
        println!("{v}");
        return;
    }
    let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
    table(&TASK_HEADER, task_rows(&tasks));
    print_failures(v);
}

/// Polls the tasks until every one is RUNNING. A task that stops instead
/// fails the wait with its stoppedReason; the last view comes back either way.
async fn wait_running(
    c: &Client,
    cluster: &str,
    arns: &[Value],
    wait: &WaitArgs,
    json_out: bool,
) -> Result<Vec<Value>, (Vec<Value>, CliError)> {
    let deadline = wait.deadline();
    let mut progress = Progress::new(json_out);
    let mut last = Vec::new();
    loop {
        let v = match c
            .ecs("DescribeTasks", json!({"cluster": cluster, "tasks": arns}))
            .await
        {
            Ok(v) => v,
            Err(e) => {
                progress.finish();
                return Err((last, e));
            }
        };
        last = v["tasks"].as_array().cloned().unwrap_or_default();
        let count = |st: &str| last.iter().filter(|t| t["lastStatus"] == st).count();
        let (running, stopped) = (count("RUNNING"), count("STOPPED"));
        progress.show(&format!(
            "{running}/{} RUNNING, {} PENDING{}",
            arns.len(),
            count("PENDING") + count("PROVISIONING") + count("ACTIVATING"),
            if stopped > 0 {
                format!(", {stopped} STOPPED")
            } else {
                String::new()
            }
        ));
        if let Some(t) = last.iter().find(|t| t["lastStatus"] == "STOPPED") {
            progress.finish();
            let why = t["stoppedReason"].as_str().unwrap_or("no reason given");
            let code = t["stopCode"]
                .as_str()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            return Err((
                last.clone(),
                CliError::Failed(format!(
                    "task {} stopped instead of running{code}: {why}",
                    short(&t["taskArn"])
                )),
            ));
        }
        if running == arns.len() {
            progress.finish();
            return Ok(last);
        }
        if std::time::Instant::now() >= deadline {
            progress.finish();
            return Err((
                last,
                CliError::Timeout(format!(
                    "{running} of {} tasks RUNNING after {}s (--timeout); they may still start: see `berth ps`",
                    arns.len(),
                    wait.timeout
                )),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
