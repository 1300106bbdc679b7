//! `berth policy install|ls|show|activate|deactivate|rm`: placement policies
//! (WebAssembly components) through berth's own operations.

use std::path::PathBuf;

use base64::Engine;
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::{CliError, Client, Conn, Result, s, table};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Install a policy component (FILE.wasm); the same bytes twice are one policy.
    Install { file: PathBuf },
    /// Installed policies, where they are active, and their decision counts.
    Ls,
    /// One policy: its parameters and statistics.
    Show {
        /// sha256, a unique prefix of 8 characters or more, or the name.
        id: String,
    },
    /// Place the cluster's tasks (or one service's, with --service) with a policy.
    Activate {
        /// sha256, a unique prefix of 8 characters or more, or the name.
        id: String,
        /// Only this service's tasks.
        #[arg(long)]
        service: Option<String>,
        /// When the policy fails a decision: place natively, or leave the task PENDING.
        #[arg(long, value_enum)]
        fallback: Option<Fallback>,
    },
    /// Go back to native placement in the cluster (or for one service).
    Deactivate {
        #[arg(long)]
        service: Option<String>,
    },
    /// Remove an installed policy (refused while it is active anywhere).
    Rm {
        /// sha256, a unique prefix of 8 characters or more, or the name.
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
                list(std::slice::from_ref(&v["policy"]));
            }
            v
        }
        PolicyCommand::Ls => {
            let v = c.berth("ListPolicies", json!({})).await?;
            if !json_out {
                list(v["policies"].as_array().map_or(&[][..], Vec::as_slice));
            }
            v
        }
        PolicyCommand::Show { id } => {
            let v = c.berth("DescribePolicy", json!({"policy": id})).await?;
            if !json_out {
                show(&v["policy"]);
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
                let p = &v["policy"];
                println!(
                    "{} {} ({}) is active in {}",
                    s(&p["name"]),
                    s(&p["version"]),
                    id12(p),
                    s(&v["scope"])
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
                println!("no policy is active in {} now", s(&v["scope"]));
            }
            v
        }
        PolicyCommand::Rm { id } => {
            let v = c.berth("DeletePolicy", json!({"policy": id})).await?;
            if !json_out {
                let p = &v["policy"];
                println!(
                    "removed {} {} ({})",
                    s(&p["name"]),
                    s(&p["version"]),
                    id12(p)
                );
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
fn id12(p: &Value) -> String {
    s(&p["sha256"]).chars().take(12).collect()
}

fn failures(p: &Value) -> u64 {
    p["stats"]["failures"]
        .as_object()
        .map_or(0, |f| f.values().filter_map(Value::as_u64).sum())
}

fn active_in(p: &Value) -> String {
    let scopes: Vec<String> = p["activeIn"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    if scopes.is_empty() {
        "-".into()
    } else {
        scopes.join(",")
    }
}

fn list(policies: &[Value]) {
    let rows = policies
        .iter()
        .map(|p| {
            vec![
                id12(p),
                s(&p["name"]),
                s(&p["version"]),
                p["size"]
                    .as_u64()
                    .map_or("-".into(), |b| format!("{} KiB", b.div_ceil(1024))),
                active_in(p),
                s(&p["stats"]["decisions"]),
                failures(p).to_string(),
                s(&p["stats"]["latencyMicros"]["p99"]),
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

fn show(p: &Value) {
    let st = &p["stats"];
    println!("name        {} {}", s(&p["name"]), s(&p["version"]));
    println!("sha256      {}", s(&p["sha256"]));
    println!("world       {}", s(&p["world"]));
    println!("size        {} bytes", s(&p["size"]));
    println!("active in   {}", active_in(p));
    println!("decisions   {}", s(&st["decisions"]));
    let kinds: Vec<String> = st["failures"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k} {}", s(v)))
        .collect();
    println!("failures    {} ({})", failures(p), kinds.join(", "));
    println!("instances   {} created", s(&st["instancesCreated"]));
    println!("logs        {} dropped", s(&st["logsDropped"]));
    let l = &st["latencyMicros"];
    println!(
        "latency µs  p50 {} p90 {} p99 {} max {}",
        s(&l["p50"]),
        s(&l["p90"]),
        s(&l["p99"]),
        s(&l["max"])
    );
    let params = p["parameters"].as_array().cloned().unwrap_or_default();
    if !params.is_empty() {
        println!();
        table(
            &["PARAMETER", "DESCRIPTION"],
            params
                .iter()
                .map(|x| vec![s(&x["name"]), s(&x["description"])])
                .collect(),
        );
    }
}
