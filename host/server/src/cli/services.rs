//! `berth services create|update|scale|rm|ls|show`, and `--wait` until a
//! deployment is steady.

use berth_core::model::{Deployment, SchedulingStrategy, Service};
use berth_core::status::{DeploymentStatus, RolloutState, ServiceStatus};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::answers::{self, read};
use super::{CliError, Client, Conn, POLL, Progress, Result, WaitArgs, dash, short, table, when};

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
            finish(c, &cluster, read("CreateService", &v)?, &a.wait, json_out).await
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
            finish(c, &cluster, read("UpdateService", &v)?, &a.wait, json_out).await
        }
        ServicesCommand::Scale { name, count, wait } => {
            let v = c
                .ecs(
                    "UpdateService",
                    json!({"cluster": cluster, "service": name, "desiredCount": count}),
                )
                .await?;
            finish(c, &cluster, read("UpdateService", &v)?, &wait, json_out).await
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
                let svc = read::<answers::OneService>("DeleteService", &v)?.service;
                println!(
                    "service {} is {}: its tasks are stopping",
                    svc.service_name, svc.status
                );
            }
            Ok(())
        }
        ServicesCommand::Ls => ls(c, &cluster, json_out).await,
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

/// `berth services ls`.
async fn ls(c: &Client, cluster: &str, json_out: bool) -> Result<()> {
    let arns = c.all("ListServices", json!({"cluster": cluster})).await?;
    let mut services = Vec::new();
    for chunk in arns.chunks(10) {
        let v = c
            .ecs(
                "DescribeServices",
                json!({"cluster": cluster, "services": chunk}),
            )
            .await?;
        services.extend(read::<answers::Services>("DescribeServices", &v)?.services);
    }
    if json_out {
        println!("{}", json!({"services": services}));
        return Ok(());
    }
    let rows = services
        .iter()
        .map(|svc| {
            vec![
                svc.service_name.clone(),
                svc.status.to_string(),
                short(&svc.task_definition),
                svc.desired_count.to_string(),
                svc.running_count.to_string(),
                svc.pending_count.to_string(),
                dash(primary(svc).and_then(|d| d.rollout_state.as_ref())),
                live(svc).count().to_string(),
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

/// The deployments not yet INACTIVE.
fn live(svc: &Service) -> impl Iterator<Item = &Deployment> {
    svc.deployments
        .iter()
        .filter(|d| d.status != DeploymentStatus::Inactive)
}

fn primary(svc: &Service) -> Option<&Deployment> {
    svc.deployments
        .iter()
        .find(|d| d.status == DeploymentStatus::Primary)
}

/// The service, or ServiceNotFoundException when DescribeServices has it MISSING.
async fn describe(c: &Client, cluster: &str, name: &str) -> Result<Service> {
    let v = c
        .ecs(
            "DescribeServices",
            json!({"cluster": cluster, "services": [name]}),
        )
        .await?;
    match read::<answers::Services>("DescribeServices", &v)?
        .services
        .into_iter()
        .next()
    {
        Some(svc) => Ok(svc),
        None => Err(CliError::Api {
            code: "ServiceNotFoundException".into(),
            message: format!("service `{name}` not found in cluster `{cluster}`"),
        }),
    }
}

/// Which policy places the service's tasks, from where the installed
/// policies are active: its own binding, else its cluster's.
async fn placement_policy(c: &Client, svc: &Service) -> String {
    // A server without policies answers an error: it places natively.
    let Ok(v) = c.berth("ListPolicies", json!({})).await else {
        return "native".into();
    };
    let Ok(answers::Policies { policies }) = read("ListPolicies", &v) else {
        return "native".into();
    };
    let cluster = short(&svc.cluster_arn);
    let active = |scope: &str| {
        policies
            .iter()
            .find(|p| p.active_in.iter().any(|x| x == scope))
            .map(|p| {
                let id: String = p.sha256.chars().take(12).collect();
                format!("{} {} ({id})", p.name, p.version)
            })
    };
    if let Some(p) = active(&format!("service/{cluster}/{}", svc.service_name)) {
        return p;
    }
    active(&format!("cluster/{cluster}")).map_or("native".into(), |p| format!("{p}, the cluster's"))
}

/// The scheduling strategy as ECS names it.
fn scheduling(s: SchedulingStrategy) -> &'static str {
    match s {
        SchedulingStrategy::Replica => "REPLICA",
        SchedulingStrategy::Daemon => "DAEMON",
    }
}

fn show(svc: &Service, policy: &str, events: usize) {
    let dc = svc.deployment_configuration.clone().unwrap_or_default();
    let breaker = match dc.deployment_circuit_breaker {
        Some(b) if b.enable && b.rollback => "on, rolls back",
        Some(b) if b.enable => "on",
        _ => "off",
    };
    println!("service          {} ({})", svc.service_name, svc.status);
    println!("arn              {}", svc.service_arn);
    println!("task definition  {}", short(&svc.task_definition));
    println!(
        "tasks            {} desired, {} running, {} pending",
        svc.desired_count, svc.running_count, svc.pending_count
    );
    println!("scheduling       {}", scheduling(svc.scheduling_strategy));
    // Unset percentages are the server's defaults (ECS's), which depend on the scheduling.
    let daemon = svc.scheduling_strategy == SchedulingStrategy::Daemon;
    let pct = |v: Option<u32>, replica: u32, daemon_default: u32| match v {
        Some(p) => format!("{p}%"),
        None => format!(
            "{}% (default)",
            if daemon { daemon_default } else { replica }
        ),
    };
    println!(
        "deployments      minimum healthy {}, maximum {}, circuit breaker {breaker}",
        pct(
            dc.minimum_healthy_percent,
            berth_core::deployment::DEFAULT_MINIMUM_HEALTHY_PERCENT,
            0
        ),
        pct(
            dc.maximum_percent,
            berth_core::deployment::DEFAULT_MAXIMUM_PERCENT,
            100
        )
    );
    println!("placement policy {policy}");
    println!("created          {}", when(svc.created_at));
    println!();
    let rows = svc
        .deployments
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.status.to_string(),
                short(&d.task_definition),
                d.desired_count.to_string(),
                d.running_count.to_string(),
                d.pending_count.to_string(),
                d.failed_tasks.to_string(),
                dash(d.rollout_state.as_ref()),
                when(Some(d.updated_at)),
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
    let rows = svc
        .events
        .iter()
        .take(events)
        .map(|e| vec![when(Some(e.created_at)), e.message.clone()])
        .collect();
    table(&["TIME", "EVENT"], rows);
}

/// Prints the answer of a create/update/scale, after waiting for the
/// deployment it started (or the PRIMARY one) to be steady when asked.
async fn finish(
    c: &Client,
    cluster: &str,
    answer: answers::OneService,
    wait: &WaitArgs,
    json_out: bool,
) -> Result<()> {
    let mut svc = answer.service;
    let mut outcome = Ok(());
    let known: Vec<String> = svc.events.iter().map(|e| e.id.clone()).collect();
    if wait.wait {
        let name = svc.service_name.clone();
        let Some(id) = primary(&svc).map(|d| d.id.clone()) else {
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
    // A policy that failed while we waited: the tasks were placed by the
    // native fallback (without the policy's rules) or left PENDING.
    for e in svc.events.iter().rev().filter(|e| !known.contains(&e.id)) {
        if e.message.contains(") placement policy ") {
            eprintln!("berth: note: {}", e.message);
        }
    }
    outcome
}

fn summary(svc: &Service) {
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
            svc.service_name.clone(),
            svc.status.to_string(),
            short(&svc.task_definition),
            svc.desired_count.to_string(),
            svc.running_count.to_string(),
            svc.pending_count.to_string(),
            dash(primary(svc).map(|d| &d.id)),
            dash(primary(svc).and_then(|d| d.rollout_state.as_ref())),
        ]],
    );
}

/// One line of progress: every deployment not yet INACTIVE (status, task
/// definition, counts, rollout state), and the newest event.
fn progress_line(svc: &Service) -> String {
    let mut parts: Vec<String> = live(svc)
        .map(|d| {
            format!(
                "{} {} {}/{} running, {} pending, {}",
                d.status,
                short(&d.task_definition),
                d.running_count,
                d.desired_count,
                d.pending_count,
                dash(d.rollout_state.as_ref())
            )
        })
        .collect();
    if let Some(e) = svc.events.first() {
        // Without the `(service NAME) ` every event starts with.
        let prefix = format!("(service {}) ", svc.service_name);
        parts.push(
            e.message
                .strip_prefix(&prefix)
                .unwrap_or(&e.message)
                .to_owned(),
        );
    }
    parts.join(" | ")
}

/// Why deployment `id` failed, when it did: its rolloutStateReason, else the
/// event the failure left (a failed deployment can leave the list once the
/// rollback completes; its event stays).
fn failure(svc: &Service, id: &str) -> Option<String> {
    let ours = svc.deployments.iter().find(|d| d.id == id);
    let failed_event = svc.events.iter().find(|e| {
        e.message
            .contains(&format!("deployment {id} deployment failed"))
    });
    let failed = ours.is_some_and(|d| d.rollout_state == Some(RolloutState::Failed));
    if !failed && failed_event.is_none() {
        return None;
    }
    Some(
        match (
            ours.and_then(|d| d.rollout_state_reason.as_deref()),
            failed_event,
        ) {
            (Some(why), _) => why.trim_end_matches('.').to_owned(),
            // The event: `(service NAME) deployment ID deployment failed: WHY`.
            (None, Some(e)) => e
                .message
                .split_once("deployment failed: ")
                .map_or(e.message.clone(), |(_, why)| {
                    why.trim_end_matches('.').to_owned()
                }),
            (None, None) => "the circuit breaker tripped".into(),
        },
    )
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
) -> Result<Service, (Option<Service>, CliError)> {
    let deadline = wait.deadline();
    let mut progress = Progress::new(json_out);
    let mut last: Option<Service> = None;
    loop {
        let svc = match describe(c, cluster, name).await {
            Ok(v) => v,
            Err(e) => {
                progress.finish();
                return Err((last, e));
            }
        };
        progress.show(&progress_line(&svc));
        let failed = match (
            failure(&svc, id),
            svc.deployments.iter().find(|d| d.id == id),
        ) {
            (Some(why), _) => {
                let back = primary(&svc)
                    .map(|p| {
                        format!(
                            "; deployment {} ({}) is PRIMARY now",
                            p.id,
                            short(&p.task_definition)
                        )
                    })
                    .unwrap_or_default();
                Some(format!(
                    "service {name}: deployment {id} FAILED: {why}{back}"
                ))
            }
            (None, None) => Some(format!(
                "service {name}: deployment {id} is gone (replaced by later ones)"
            )),
            (None, Some(_)) if svc.status != ServiceStatus::Active => Some(format!(
                "service {name} is {} (deleted while waiting)",
                svc.status
            )),
            (None, Some(d)) if d.status != DeploymentStatus::Primary => Some(format!(
                "service {name}: deployment {id} was replaced by deployment {} (another update)",
                dash(primary(&svc).map(|p| &p.id))
            )),
            (None, Some(_)) => None,
        };
        if let Some(why) = failed {
            progress.finish();
            return Err((Some(svc), CliError::Failed(why)));
        }
        let ours_done = svc
            .deployments
            .iter()
            .any(|d| d.id == id && d.rollout_state == Some(RolloutState::Completed));
        let others = live(&svc).filter(|o| o.id != id).count();
        if ours_done && svc.running_count == svc.desired_count && others == 0 {
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
