//! `berth run` (and `--wait` until the tasks run), and the task table
//! `berth ps` and `berth stop` print.

use berth_core::model::Task;
use berth_core::status::TaskStatus;
use clap::Args;
use serde_json::{Value, json};

use super::answers::{self, read};
use super::{
    CliError, Client, Conn, POLL, Progress, Result, WaitArgs, print_failures, short, short_or_dash,
    table,
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
    /// First say why the tasks go where they go: per instance, the check
    /// that eliminated it or its key under each strategy; for a policy,
    /// what it logged deciding (berth's ExplainPlacement, on the cluster
    /// as it stands, placing nothing), then run them.
    #[arg(long)]
    explain: bool,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    pub(super) conn: Conn,
}

pub const TASK_HEADER: [&str; 7] = [
    "TASK",
    "DEFINITION",
    "LAST",
    "DESIRED",
    "INSTANCE",
    "PORTS",
    "REASON",
];

/// What a task is waiting for or why it stopped: a PENDING task's first
/// container reason (an image pull's progress), a STOPPED task's reason.
fn reason(t: &Task) -> String {
    let said = match t.last_status {
        TaskStatus::Pending => t.containers.iter().find_map(|c| c.reason.clone()),
        TaskStatus::Stopped => t.stopped_reason.clone(),
        _ => None,
    };
    said.unwrap_or_else(|| "-".into())
}

pub fn task_rows(tasks: &[Task]) -> Vec<Vec<String>> {
    tasks
        .iter()
        .map(|t| {
            let ports: Vec<String> = t
                .containers
                .iter()
                .flat_map(|c| &c.network_bindings)
                .map(|b| format!("{}->{}", b.host_port, b.container_port))
                .collect();
            vec![
                short(&t.task_arn),
                short(&t.task_definition_arn),
                t.last_status.to_string(),
                t.desired_status.to_string(),
                short_or_dash(t.container_instance_arn.as_deref()),
                if ports.is_empty() {
                    "-".into()
                } else {
                    ports.join(",")
                },
                reason(t),
            ]
        })
        .collect()
}

/// `berth ps`: the tasks that should run (`--all`: and the stopped ones).
pub async fn ps(c: &Client, conn: &Conn, all: bool) -> Result<()> {
    let cluster = conn.cluster();
    let mut arns = c.all("ListTasks", json!({"cluster": cluster})).await?;
    if all {
        arns.extend(
            c.all(
                "ListTasks",
                json!({"cluster": cluster, "desiredStatus": "STOPPED"}),
            )
            .await?,
        );
    }
    let mut found = Vec::new();
    for chunk in arns.chunks(100) {
        let v = c
            .ecs("DescribeTasks", json!({"cluster": cluster, "tasks": chunk}))
            .await?;
        found.extend(read::<answers::Tasks>("DescribeTasks", &v)?.tasks);
    }
    if conn.json() {
        println!("{}", json!({"tasks": found}));
        return Ok(());
    }
    table(&TASK_HEADER, task_rows(&found));
    Ok(())
}

/// `berth stop TASK`.
pub async fn stop(c: &Client, conn: &Conn, task: String, reason: Option<String>) -> Result<()> {
    let mut body = json!({"cluster": conn.cluster(), "task": task});
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    let v = c.ecs("StopTask", body).await?;
    if conn.json() {
        println!("{v}");
        return Ok(());
    }
    let stopped: answers::Stopped = read("StopTask", &v)?;
    table(&TASK_HEADER, task_rows(&[stopped.task]));
    Ok(())
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
    let explained = match args.explain {
        true => Some(c.berth("ExplainPlacement", body.clone()).await?),
        false => None,
    };
    if let Some(e) = &explained
        && !args.conn.json()
    {
        print_explanation(e);
    }
    let mut v = c.ecs("RunTask", body).await?;
    if let Some(e) = explained {
        v["explanation"] = e;
    }
    let started = read::<answers::Tasks>("RunTask", &v)?.tasks;
    let mut outcome = Ok(());
    if args.wait.wait && !started.is_empty() {
        let arns: Vec<&str> = started.iter().map(|t| t.task_arn.as_str()).collect();
        let waited = wait_running(c, &cluster, &arns, &args.wait, args.conn.json()).await;
        let (Ok(tasks) | Err((tasks, _))) = &waited;
        v["tasks"] = json!(tasks);
        outcome = waited.map(|_| ()).map_err(|(_, e)| e);
    }
    let answer: answers::Tasks = read("RunTask", &v)?;
    print_tasks(&v, &answer, args.conn.json());
    note_policy_fallbacks(&started);
    outcome?;
    // Fewer tasks than asked for fails too: the server's reason for the first
    // one it could not place (the others are listed above).
    if let Some(f) = answer.failures.first() {
        return Err(CliError::Api {
            code: f.reason.clone().unwrap_or_else(|| "NoTaskStarted".into()),
            message: format!(
                "{} of {} tasks not started{}",
                answer.failures.len(),
                args.count,
                f.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
        });
    }
    Ok(())
}

/// ExplainPlacement's answer for people.
fn print_explanation(e: &Value) {
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    println!(
        "placement explained: decided by {}; native strategies {} (least key wins, strategy by strategy)",
        e["policy"].as_str().unwrap_or("?"),
        strs(&e["strategies"]).join(", ")
    );
    let rows = e["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    let verdict = match i["eliminatedBy"].as_str() {
                        Some(c) => format!("eliminated by {c}"),
                        None => {
                            let keys: Vec<String> = i["keys"]
                                .as_array()
                                .map(|k| k.iter().map(Value::to_string).collect())
                                .unwrap_or_default();
                            format!("candidate, keys [{}]", keys.join(", "))
                        }
                    };
                    vec![
                        short(i["containerInstanceArn"].as_str().unwrap_or("?")),
                        verdict,
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["INSTANCE", "VERDICT"], rows);
    for (k, d) in e["decisions"].as_array().into_iter().flatten().enumerate() {
        match d["containerInstanceArn"].as_str() {
            Some(arn) => println!("task {}: would go to {}", k + 1, short(arn)),
            None => println!(
                "task {}: not placed: {}",
                k + 1,
                d["reason"].as_str().unwrap_or("?")
            ),
        }
    }
    if let Some(f) = e["policyFailure"].as_str() {
        println!("policy failed: {f}");
    }
    for line in strs(&e["policyLog"]) {
        println!("policy log: {line}");
    }
    println!();
}

/// Says which tasks a failed placement policy's fallback placed (the
/// native strategies, without the policy's rules) or left PENDING, from
/// the attributes placement marks them with.
fn note_policy_fallbacks(tasks: &[Task]) {
    let attr = |t: &Task, name: &str| {
        t.attributes
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.value.clone())
    };
    for t in tasks {
        let Some(fallback) = attr(t, crate::control::FALLBACK_ATTRIBUTE) else {
            continue;
        };
        let why = attr(t, crate::control::FAILURE_ATTRIBUTE)
            .unwrap_or_else(|| "the placement policy failed".into());
        let what = if fallback == "pending" {
            "left PENDING until the next attempt (fallback pending)"
        } else {
            "placed by the native fallback, without the policy's rules"
        };
        eprintln!(
            "berth: note: task {}: placement policy {why}; {what}",
            short(&t.task_arn)
        );
    }
}

/// RunTask's answer: as it came (`--output json`), else its table and failures.
fn print_tasks(v: &Value, answer: &answers::Tasks, json_out: bool) {
    if json_out {
        println!("{v}");
        return;
    }
    table(&TASK_HEADER, task_rows(&answer.tasks));
    print_failures(&answer.failures);
}

/// Polls the tasks until every one is RUNNING. A task that stops instead
/// fails the wait with its stoppedReason; the last view comes back either way.
async fn wait_running(
    c: &Client,
    cluster: &str,
    arns: &[&str],
    wait: &WaitArgs,
    json_out: bool,
) -> Result<Vec<Task>, (Vec<Task>, CliError)> {
    let deadline = wait.deadline();
    let mut progress = Progress::new(json_out);
    let mut last = Vec::new();
    loop {
        let described = match c
            .ecs("DescribeTasks", json!({"cluster": cluster, "tasks": arns}))
            .await
            .and_then(|v| read::<answers::Tasks>("DescribeTasks", &v))
        {
            Ok(a) => a,
            Err(e) => {
                progress.finish();
                return Err((last, e));
            }
        };
        last = described.tasks;
        let count = |st: &str| last.iter().filter(|t| t.last_status.as_str() == st).count();
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
        if let Some(t) = last.iter().find(|t| t.last_status == TaskStatus::Stopped) {
            progress.finish();
            let why = t.stopped_reason.as_deref().unwrap_or("no reason given");
            let code = t
                .stop_code
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            let failed = CliError::Failed(format!(
                "task {} stopped instead of running{code}: {why}",
                short(&t.task_arn)
            ));
            return Err((last, failed));
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
