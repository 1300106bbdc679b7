//! `berth policy install|ls|show|activate|shadow|promote|deactivate|rm`: placement policies
//! (WebAssembly components) through berth's own operations.

use std::path::PathBuf;

use base64::Engine;
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::answers::{self, Policy, read};
use super::{CliError, Client, Conn, Result, table};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Install a policy component (FILE.wasm); the same bytes twice are one policy.
    Install { file: PathBuf },
    /// Installed policies, where they are active, and their decision counts.
    Ls,
    /// One policy: its parameters and statistics.
    Show {
        /// sha256, a unique prefix of 8 characters or more, NAME@VERSION, or
        /// the name (when one version of it is installed).
        id: String,
    },
    /// Place the cluster's tasks (or one service's, with --service) with a policy.
    Activate {
        /// sha256, a unique prefix of 8 characters or more, NAME@VERSION, or
        /// the name (when one version of it is installed).
        id: String,
        /// Only this service's tasks.
        #[arg(long)]
        service: Option<String>,
        /// When the policy fails a decision: place natively, or leave the task PENDING.
        #[arg(long, value_enum)]
        fallback: Option<Fallback>,
    },
    /// Ask a candidate every live decision of the cluster beside the
    /// policy (or native strategy) that places: its answers are checked and
    /// counted (`berth policy show`), never committed; it runs off the
    /// placement path, so it never delays or changes a placement.
    Shadow {
        /// sha256, a unique prefix of 8 characters or more, NAME@VERSION, or
        /// the name (when one version of it is installed).
        id: String,
    },
    /// Make a policy (the shadow, typically) the cluster's active one and
    /// end the cluster's shadow, atomically.
    Promote {
        /// sha256, a unique prefix of 8 characters or more, NAME@VERSION, or
        /// the name (when one version of it is installed).
        id: String,
        /// When the policy fails a decision: place natively, or leave the task PENDING.
        #[arg(long, value_enum)]
        fallback: Option<Fallback>,
    },
    /// Go back to native placement in the cluster (or for one service).
    Deactivate {
        #[arg(long)]
        service: Option<String>,
    },
    /// Set a policy's statistics (decisions, failures, latency, last
    /// failures) back to nothing; they are kept in the store otherwise.
    ResetStats {
        /// sha256, a unique prefix of 8 characters or more, NAME@VERSION, or
        /// the name (when one version of it is installed).
        id: String,
    },
    /// Remove an installed policy (refused while it is active anywhere).
    Rm {
        /// sha256, a unique prefix of 8 characters or more, NAME@VERSION, or
        /// the name (when one version of it is installed).
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fallback {
    /// Berth's own placement.
    Native,
    /// Leave the task PENDING.
    Pending,
}

impl Fallback {
    fn wire(self) -> &'static str {
        match self {
            Fallback::Native => "native",
            Fallback::Pending => "pending",
        }
    }
}

pub async fn run(c: &Client, what: PolicyCommand, conn: &Conn) -> Result<()> {
    let json_out = conn.json();
    let cluster = conn.cluster();
    let v = match what {
        PolicyCommand::Install { file } => {
            let bytes = std::fs::read(&file)
                .map_err(|e| CliError::Usage(format!("reading {}: {e}", file.display())))?;
            let v = c
                .berth(
                    "InstallPolicy",
                    json!({"wasm": base64::engine::general_purpose::STANDARD.encode(&bytes)}),
                )
                .await?;
            if !json_out {
                let p = read::<answers::OnePolicy>("InstallPolicy", &v)?.policy;
                println!("installed {}@{}", p.name, p.version);
                println!("sha256 {}", p.sha256);
            }
            v
        }
        PolicyCommand::Ls => {
            let v = c.berth("ListPolicies", json!({})).await?;
            if !json_out {
                list(&read::<answers::Policies>("ListPolicies", &v)?.policies);
            }
            v
        }
        PolicyCommand::Show { id } => {
            let v = c.berth("DescribePolicy", json!({"policy": id})).await?;
            if !json_out {
                show(&read::<answers::OnePolicy>("DescribePolicy", &v)?.policy);
            }
            v
        }
        PolicyCommand::Activate {
            id,
            service,
            fallback,
        } => {
            let mut body = json!({"policy": id, "cluster": cluster});
            if let Some(svc) = service {
                body["service"] = json!(svc);
            }
            if let Some(f) = fallback {
                body["fallback"] = json!(f.wire());
            }
            let v = c.berth("ActivatePolicy", body).await?;
            if !json_out {
                let a: answers::Activated = read("ActivatePolicy", &v)?;
                let p = &a.policy;
                println!(
                    "{} {} ({}) is active in {}",
                    p.name,
                    p.version,
                    id12(p),
                    a.scope
                );
            }
            v
        }
        PolicyCommand::Shadow { id } => {
            let v = c
                .berth("ShadowPolicy", json!({"policy": id, "cluster": cluster}))
                .await?;
            if !json_out {
                let a: answers::Activated = read("ShadowPolicy", &v)?;
                let p = &a.policy;
                println!("{} {} ({}) shadows {}", p.name, p.version, id12(p), a.scope);
            }
            v
        }
        PolicyCommand::Promote { id, fallback } => {
            let mut body = json!({"policy": id, "cluster": cluster});
            if let Some(f) = fallback {
                body["fallback"] = json!(f.wire());
            }
            let v = c.berth("PromotePolicy", body).await?;
            if !json_out {
                let a: answers::Activated = read("PromotePolicy", &v)?;
                let p = &a.policy;
                println!(
                    "{} {} ({}) is active in {}; its shadow ended",
                    p.name,
                    p.version,
                    id12(p),
                    a.scope
                );
            }
            v
        }
        PolicyCommand::Deactivate { service } => {
            let mut body = json!({"cluster": cluster});
            if let Some(svc) = service {
                body["service"] = json!(svc);
            }
            let v = c.berth("DeactivatePolicy", body).await?;
            if !json_out {
                let a: answers::Deactivated = read("DeactivatePolicy", &v)?;
                println!("no policy is active in {} now", a.scope);
            }
            v
        }
        PolicyCommand::ResetStats { id } => {
            let v = c.berth("ResetPolicyStats", json!({"policy": id})).await?;
            if !json_out {
                let p = read::<answers::OnePolicy>("ResetPolicyStats", &v)?.policy;
                println!(
                    "statistics of {}@{} ({}) reset",
                    p.name,
                    p.version,
                    id12(&p)
                );
            }
            v
        }
        PolicyCommand::Rm { id } => {
            let v = c.berth("DeletePolicy", json!({"policy": id})).await?;
            if !json_out {
                let p = read::<answers::OnePolicy>("DeletePolicy", &v)?.policy;
                println!("removed {} {} ({})", p.name, p.version, id12(&p));
            }
            v
        }
    };
    if json_out {
        println!("{v}");
    }
    Ok(())
}

/// The first 12 hex digits of the sha256, enough to name a policy.
fn id12(p: &Policy) -> String {
    p.sha256.chars().take(12).collect()
}

fn failures(p: &Policy) -> u64 {
    p.stats.failures.values().sum()
}

/// Where it is active, each scope with the fallback in force there:
/// `cluster/default (fallback native)`.
fn active_in(p: &Policy) -> String {
    if p.active_in.is_empty() {
        return "-".into();
    }
    p.active_in
        .iter()
        .map(
            |scope| match p.activations.iter().find(|a| &a.scope == scope) {
                Some(a) => format!("{scope} (fallback {})", a.fallback),
                None => scope.clone(),
            },
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// A latency as the API's JSON writes it (`12.0`, not `12`).
fn micros(v: f64) -> String {
    serde_json::Value::from(v).to_string()
}

fn list(policies: &[Policy]) {
    let rows = policies
        .iter()
        .map(|p| {
            vec![
                id12(p),
                p.name.clone(),
                p.version.clone(),
                format!("{} KiB", p.size.div_ceil(1024)),
                active_in(p),
                p.stats.decisions.to_string(),
                failures(p).to_string(),
                micros(p.stats.latency_micros.p99),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "VERSION",
            "SIZE",
            "ACTIVE IN",
            "DECISIONS",
            "FAILURES",
            "P99 µs",
        ],
        rows,
    );
}

fn show(p: &Policy) {
    let st = &p.stats;
    println!("name        {} {}", p.name, p.version);
    println!("sha256      {}", p.sha256);
    println!("world       {}", p.world);
    println!("size        {} bytes", p.size);
    println!("active in   {}", active_in(p));
    println!("decisions   {}", st.decisions);
    let kinds: Vec<String> = st
        .failures
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("failures    {} ({})", failures(p), kinds.join(", "));
    println!("instances   {} created", st.instances_created);
    println!("logs        {} dropped", st.logs_dropped);
    let l = &st.latency_micros;
    println!(
        "latency µs  p50 {} p90 {} p99 {} max {}",
        micros(l.p50),
        micros(l.p90),
        micros(l.p99),
        micros(l.max)
    );
    if let Some(sh) = &p.shadow {
        let kinds: Vec<String> = sh
            .failures
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!(
            "shadow      {} decisions, agreement {:.1}% ({} agreed, {} disagreed), {} would-be failures, {} failed ({}), {} skipped (worker busy)",
            sh.decisions,
            sh.agreement * 100.0,
            sh.agreed,
            sh.disagreed,
            sh.would_fail,
            sh.failures.values().sum::<u64>(),
            kinds.join(", "),
            sh.skipped
        );
    }
    if !p.recent_failures.is_empty() {
        println!();
        println!("last failures, newest first:");
        table(
            &["TIME", "KIND", "TASK", "MESSAGE"],
            p.recent_failures
                .iter()
                .map(|f| {
                    vec![
                        utc(f.at),
                        f.kind.clone(),
                        f.task.as_deref().map_or_else(|| "-".into(), super::short),
                        f.message.replace('\n', " | "),
                    ]
                })
                .collect(),
        );
    }
    if !p.parameters.is_empty() {
        println!();
        table(
            &["PARAMETER", "DESCRIPTION"],
            p.parameters
                .iter()
                .map(|x| vec![x.name.clone(), x.description.clone()])
                .collect(),
        );
    }
}

/// Epoch seconds as `2026-12-02T04:31:07Z`.
fn utc(at: f64) -> String {
    chrono::DateTime::from_timestamp(at as i64, 0).map_or_else(
        || at.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}
