//! `berth services create|update|scale|rm|ls|show`, and `--wait` until a
//! deployment is steady.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{CliError, Client, Conn, POLL, Progress, Result, WaitArgs, s, short, table, when};

#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// Create a service: COUNT tasks of a task definition, kept running.
    Create(CreateArgs),
    /// Change a service's task definition or count (a new deployment rolls out).
    Update(UpdateArgs),
    /// Change a service's count.
    Scale {
        name: String,
        count: u32,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a service (its tasks stop); one still scaled above 0 needs --force.
    Rm {
        name: String,
        /// Delete even while tasks should run.
        #[arg(long)]
        force: bool,
    },
    /// The cluster's services with their counts.
    Ls,
    /// A service: its deployments and newest events.
    Show {
        name: String,
        /// How many of the newest events to show.
        #[arg(long, default_value_t = 10)]
        events: usize,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    name: String,
    /// `family`, `family:revision` or ARN.
    #[arg(long)]
    task_definition: String,
    /// Tasks to keep running.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Place its tasks with this installed placement policy (id or name).
    #[arg(long)]
    policy: Option<String>,
    /// Lower bound of RUNNING tasks during a deployment, percent of the count.
    #[arg(long, value_name = "PCT")]
    min_healthy: Option<u32>,
    /// Upper bound of tasks during a deployment, percent of the count.
    #[arg(long, value_name = "PCT")]
    max_percent: Option<u32>,
    /// Stop a deployment whose tasks keep failing, and roll back to the last
    /// one that completed.
    #[arg(long)]
    circuit_breaker: bool,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    name: String,
    /// Roll out this task definition.
    #[arg(long)]
    task_definition: Option<String>,
    /// Tasks to keep running.
    #[arg(long)]
    count: Option<u32>,
    /// Replace every task even with the same task definition.
    #[arg(long)]
    force_new_deployment: bool,
    #[command(flatten)]
    wait: WaitArgs,
}

pub async fn run(c: &Client, what: ServicesCommand, conn: &Conn) -> Result<()> {
    let cluster = conn.cluster();
    let json_out = conn.json();
    match what {
        ServicesCommand::Create(a) => {
            let mut body = json!({"cluster": cluster, "serviceName": a.name, "taskDefinition": a.task_definition, "desiredCount": a.count});
            let mut dc = serde_json::Map::new();
            if let Some(p) = a.min_healthy {
                dc.insert("minimumHealthyPercent".into(), json!(p));
            }
            if let Some(p) = a.max_percent {
                dc.insert("maximumPercent".into(), json!(p));
            }
            if a.circuit_breaker {
                dc.insert(
                    "deploymentCircuitBreaker".into(),
                    json!({"enable": true, "rollback": true}),
                );
            }
            if !dc.is_empty() {
                body["deploymentConfiguration"] = Value::Object(dc);
            }
            if let Some(p) = &a.policy {
                body["tags"] = json!([{"key": crate::control::POLICY_TAG, "value": p}]);
            }
            let v = c.ecs("CreateService", body).await?;
            finish(c, &cluster, v, &a.wait, json_out).await
        }
        ServicesCommand::Update(a) => {
            let mut body = json!({"cluster": cluster, "service": a.name});
            if let Some(td) = &a.task_definition {
                body["taskDefinition"] = json!(td);
            }
            if let Some(n) = a.count {
                body["desiredCount"] = json!(n);
            }
            if a.force_new_deployment {
                body["forceNewDeployment"] = json!(true);
            }
            if a.task_definition.is_none() && a.count.is_none() && !a.force_new_deployment {
                return Err(CliError::Usage("services update: nothing to change; give --task-definition, --count or --force-new-deployment".into()));
            }
            let v = c.ecs("UpdateService", body).await?;
            finish(c, &cluster, v, &a.wait, json_out).await
        }
        ServicesCommand::Scale { name, count, wait } => {
            let v = c
                .ecs(
                    "UpdateService",
                    json!({"cluster": cluster, "service": name, "desiredCount": count}),
                )
                .await?;
            finish(c, &cluster, v, &wait, json_out).await
        }
        ServicesCommand::Rm { name, force } => {
            let v = c
                .ecs(
                    "DeleteService",
                    json!({"cluster": cluster, "service": name, "force": force}),
                )
                .await?;
            if json_out {
                println!("{v}");
            } else {
                let svc = &v["service"];
                println!(
                    "service {} is {}: its tasks are stopping",
                    s(&svc["serviceName"]),
                    s(&svc["status"])
                );
            }
            Ok(())
        }
        ServicesCommand::Ls => {
            let arns = c
                .all("ListServices", json!({"cluster": cluster}), "serviceArns")
                .await?;
            let mut services = Vec::new();
            for chunk in arns.chunks(10) {
                let v = c
                    .ecs(
                        "DescribeServices",
                        json!({"cluster": cluster, "services": chunk}),
                    )
                    .await?;
                services.extend(v["services"].as_array().cloned().unwrap_or_default());
            }
            if json_out {
                println!("{}", json!({"services": services}));
                return Ok(());
            }
            let rows = services
                .iter()
                .map(|svc| {
                    let primary = primary(svc);
                    vec![
                        s(&svc["serviceName"]),
                        s(&svc["status"]),
                        short(&svc["taskDefinition"]),
                        s(&svc["desiredCount"]),
                        s(&svc["runningCount"]),
                        s(&svc["pendingCount"]),
                        primary.map_or("-".into(), |d| s(&d["rolloutState"])),
                        deployments(svc)
                            .filter(|d| d["status"] != "INACTIVE")
                            .count()
                            .to_string(),
                    ]
                })
                .collect();
            table(
                &[
                    "NAME",
                    "STATUS",
                    "TASK DEFINITION",
                    "DESIRED",
                    "RUNNING",
                    "PENDING",
                    "ROLLOUT",
                    "DEPLOYMENTS",
                ],
                rows,
            );
            Ok(())
        }
        ServicesCommand::Show { name, events } => {
            let svc = describe(c, &cluster, &name).await?;
            if json_out {
                println!("{}", json!({"service": svc}));
                return Ok(());
            }
            let policy = placement_policy(c, &svc).await;
            show(&svc, &policy, events);
            Ok(())
        }
    }
}

fn deployments(svc: &Value) -> impl Iterator<Item = &Value> {
    svc["deployments"].as_array().into_iter().flatten()
}

fn primary(svc: &Value) -> Option<&Value> {
    deployments(svc).find(|d| d["status"] == "PRIMARY")
}

/// The service, or ServiceNotFoundException when DescribeServices has it MISSING.
async fn describe(c: &Client, cluster: &str, name: &str) -> Result<Value> {
    let v = c
        .ecs(
            "DescribeServices",
            json!({"cluster": cluster, "services": [name]}),
        )
        .await?;
    match v["services"].get(0) {
        Some(svc) => Ok(svc.clone()),
        None => Err(CliError::Api {
            code: "ServiceNotFoundException".into(),
            message: format!("service `{name}` not found in cluster `{cluster}`"),
        }),
    }
}

/// Which policy places the service's tasks, from where the installed
/// policies are active: its own binding, else its cluster's.
async fn placement_policy(c: &Client, svc: &Value) -> String {
    // A server without policies answers an error: it places natively.
    let Ok(v) = c.berth("ListPolicies", json!({})).await else {
        return "native".into();
    };
    let cluster = short(&svc["clusterArn"]);
    let policies = v["policies"].as_array().cloned().unwrap_or_default();
    let active = |scope: &str| {
        policies
            .iter()
            .find(|p| {
                p["activeIn"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == scope))
            })
            .map(|p| {
                let id: String = s(&p["sha256"]).chars().take(12).collect();
                format!("{} {} ({id})", s(&p["name"]), s(&p["version"]))
            })
    };
    if let Some(p) = active(&format!("service/{cluster}/{}", s(&svc["serviceName"]))) {
        return p;
    }
    active(&format!("cluster/{cluster}")).map_or("native".into(), |p| format!("{p}, the cluster's"))
}

fn show(svc: &Value, policy: &str, events: usize) {
    let dc = &svc["deploymentConfiguration"];
    let breaker = match (
        &dc["deploymentCircuitBreaker"]["enable"],
        &dc["deploymentCircuitBreaker"]["rollback"],
    ) {
        (Value::Bool(true), Value::Bool(true)) => "on, rolls back",
        (Value::Bool(true), _) => "on",
        _ => "off",
    };
    println!(
        "service          {} ({})",
        s(&svc["serviceName"]),
        s(&svc["status"])
    );
    println!("arn              {}", s(&svc["serviceArn"]));
    println!("task definition  {}", short(&svc["taskDefinition"]));
    println!(
        "tasks            {} desired, {} running, {} pending",
        s(&svc["desiredCount"]),
        s(&svc["runningCount"]),
        s(&svc["pendingCount"])
    );
    println!("scheduling       {}", s(&svc["schedulingStrategy"]));
    // Unset percentages are the server's defaults (ECS's), which depend on the scheduling.
    let daemon = svc["schedulingStrategy"] == "DAEMON";
    let pct = |v: &Value, replica: u32, daemon_default: u32| match v.as_u64() {
        Some(p) => format!("{p}%"),
        None => format!(
            "{}% (default)",
            if daemon { daemon_default } else { replica }
        ),
    };
    println!(
        "deployments      minimum healthy {}, maximum {}, circuit breaker {breaker}",
        pct(
            &dc["minimumHealthyPercent"],
            berth_core::deployment::DEFAULT_MINIMUM_HEALTHY_PERCENT,
            0
        ),
        pct(
            &dc["maximumPercent"],
            berth_core::deployment::DEFAULT_MAXIMUM_PERCENT,
            100
        )
    );
    println!("placement policy {policy}");
    println!("created          {}", when(&svc["createdAt"]));
    println!();
    let rows = deployments(svc)
        .map(|d| {
            vec![
                s(&d["id"]),
                s(&d["status"]),
                short(&d["taskDefinition"]),
                s(&d["desiredCount"]),
                s(&d["runningCount"]),
                s(&d["pendingCount"]),
                s(&d["failedTasks"]),
                s(&d["rolloutState"]),
                when(&d["updatedAt"]),
            ]
        })
        .collect();
    table(
        &[
            "DEPLOYMENT",
            "STATUS",
            "TASK DEFINITION",
            "DESIRED",
            "RUNNING",
            "PENDING",
            "FAILED",
            "ROLLOUT",
            "UPDATED",
        ],
        rows,
    );
    println!();
    let rows = svc["events"]
        .as_array()
        .into_iter()
        .flatten()
        .take(events)
        .map(|e| vec![when(&e["createdAt"]), s(&e["message"])])
        .collect();
    table(&["TIME", "EVENT"], rows);
}

/// Prints the answer of a create/update/scale, after waiting for the
/// deployment it started (or the PRIMARY one) to be steady when asked.
async fn finish(
    c: &Client,
    cluster: &str,
    v: Value,
    wait: &WaitArgs,
    json_out: bool,
) -> Result<()> {
    let mut svc = v["service"].clone();
    let mut outcome = Ok(());
    if wait.wait {
        let name = s(&svc["serviceName"]);
        let Some(id) = primary(&svc).map(|d| s(&d["id"])) else {
            return Err(CliError::Failed(format!(
                "service {name} has no PRIMARY deployment to wait for"
            )));
        };
        match wait_steady(c, cluster, &name, &id, wait, json_out).await {
            Ok(last) => svc = last,
            Err((last, e)) => {
                svc = last.unwrap_or(svc);
                outcome = Err(e);
            }
        }
    }
    if json_out {
        println!("{}", json!({"service": svc}));
    } else {
        summary(&svc);
    }
    outcome
}

fn summary(svc: &Value) {
    table(
        &[
            "NAME",
            "STATUS",
            "TASK DEFINITION",
            "DESIRED",
            "RUNNING",
            "PENDING",
            "DEPLOYMENT",
            "ROLLOUT",
        ],
        vec![vec![
            s(&svc["serviceName"]),
            s(&svc["status"]),
            short(&svc["taskDefinition"]),
            s(&svc["desiredCount"]),
            s(&svc["runningCount"]),
            s(&svc["pendingCount"]),
            primary(svc).map_or("-".into(), |d| s(&d["id"])),
            primary(svc).map_or("-".into(), |d| s(&d["rolloutState"])),
        ]],
    );
}

/// One line of progress: every deployment not yet INACTIVE (status, task
/// definition, counts, rollout state), and the newest event.
fn progress_line(svc: &Value) -> String {
    let mut parts: Vec<String> = deployments(svc)
        .filter(|d| d["status"] != "INACTIVE")
        .map(|d| {
            format!(
                "{} {} {}/{} running, {} pending, {}",
                s(&d["status"]),
                short(&d["taskDefinition"]),
                s(&d["runningCount"]),
                s(&d["desiredCount"]),
                s(&d["pendingCount"]),
                s(&d["rolloutState"])
            )
        })
        .collect();
    if let Some(e) = svc["events"].get(0) {
        // Without the `(service NAME) ` every event starts with.
        let m = s(&e["message"]);
        let prefix = format!("(service {}) ", s(&svc["serviceName"]));
        parts.push(m.strip_prefix(&prefix).unwrap_or(&m).to_owned());
    }
    parts.join(" | ")
}

/// Polls until deployment `id` is the PRIMARY, COMPLETED, with every
/// desired task running and no other deployment left. It FAILED (the
/// circuit breaker), replaced by another, or the service deleted: exit 4;
/// past the deadline: exit 5. The last view comes back either way.
async fn wait_steady(
    c: &Client,
    cluster: &str,
    name: &str,
    id: &str,
    wait: &WaitArgs,
    json_out: bool,
) -> Result<Value, (Option<Value>, CliError)> {
    let deadline = wait.deadline();
    let mut progress = Progress::new(json_out);
    let mut last: Option<Value> = None;
    loop {
        let svc = match describe(c, cluster, name).await {
            Ok(v) => v,
            Err(e) => {
                progress.finish();
                return Err((last, e));
            }
        };
        progress.show(&progress_line(&svc));
        let ours = deployments(&svc).find(|d| d["id"] == id).cloned();
        let fail = |why: String| Err((Some(svc.clone()), CliError::Failed(why)));
        // A failed deployment can leave the list once the rollback completes;
        // its event stays.
        let failed_event = svc["events"].as_array().into_iter().flatten().find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("deployment {id} deployment failed")))
        });
        if ours.as_ref().is_some_and(|d| d["rolloutState"] == "FAILED") || failed_event.is_some() {
            progress.finish();
            let why = match (&ours, failed_event) {
                (Some(d), _) if d["rolloutStateReason"].is_string() => {
                    s(&d["rolloutStateReason"]).trim_end_matches('.').to_owned()
                }
                // The event: `(service NAME) deployment ID deployment failed: WHY`.
                (_, Some(e)) => {
                    let m = s(&e["message"]);
                    m.split_once("deployment failed: ")
                        .map_or(m.clone(), |(_, why)| why.trim_end_matches('.').to_owned())
                }
                _ => "the circuit breaker tripped".into(),
            };
            let back = primary(&svc)
                .map(|p| {
                    format!(
                        "; deployment {} ({}) is PRIMARY now",
                        s(&p["id"]),
                        short(&p["taskDefinition"])
                    )
                })
                .unwrap_or_default();
            return fail(format!(
                "service {name}: deployment {id} FAILED: {why}{back}"
            ));
        }
        let Some(d) = ours else {
            progress.finish();
            return fail(format!(
                "service {name}: deployment {id} is gone (replaced by later ones)"
            ));
        };
        if svc["status"] != "ACTIVE" {
            progress.finish();
            return fail(format!(
                "service {name} is {} (deleted while waiting)",
                s(&svc["status"])
            ));
        }
        if d["status"] != "PRIMARY" {
            progress.finish();
            let by = primary(&svc)
                .map(|p| s(&p["id"]))
                .unwrap_or_else(|| "-".into());
            return fail(format!(
                "service {name}: deployment {id} was replaced by deployment {by} (another update)"
            ));
        }
        let others = deployments(&svc)
            .filter(|o| o["id"] != id && o["status"] != "INACTIVE")
            .count();
        if d["rolloutState"] == "COMPLETED"
            && svc["runningCount"] == svc["desiredCount"]
            && others == 0
        {
            progress.finish();
            return Ok(svc);
        }
        if std::time::Instant::now() >= deadline {
            progress.finish();
            let line = progress_line(&svc);
            return Err((
                Some(svc),
                CliError::Timeout(format!(
                    "service {name} not steady after {}s (--timeout): {line}",
                    wait.timeout
                )),
            ));
        }
        last = Some(svc);
        tokio::time::sleep(POLL).await;
    }
}
