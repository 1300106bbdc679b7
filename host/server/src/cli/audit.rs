//! `berth audit`: the audit log (`ListAuditEvents`), oldest first.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::{CliError, Client, Conn, Result, table, when};

/// `berth audit [--since 1h] [--op RunTask]`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only entries this recent (`90s`, `15m`, `1h`, `7d`).
    #[arg(long, value_name = "AGE", value_parser = crate::obs_args::parse_age)]
    since: Option<Duration>,
    /// Only calls of this operation (`RunTask`, `InstallPolicy`, ...).
    #[arg(long = "op", value_name = "OPERATION")]
    op: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn run(c: &Client, args: AuditArgs) -> Result<()> {
    let mut body = json!({});
    if let Some(age) = args.since {
        let start = crate::control::now() - age.as_secs_f64();
        body["startTime"] = json!(start.max(0.0));
    }
    if let Some(op) = &args.op {
        body["operation"] = json!(op);
    }
    let mut events: Vec<Value> = Vec::new();
    loop {
        let page = c.berth("ListAuditEvents", body.clone()).await?;
        let Some(items) = page.get("events").and_then(Value::as_array) else {
            return Err(CliError::Local(format!(
                "ListAuditEvents answered without `events`: {page}"
            )));
        };
        events.extend(items.iter().cloned());
        match page.get("nextToken").and_then(Value::as_str) {
            Some(t) => body["nextToken"] = json!(t),
            None => break,
        }
    }
    if args.conn.json() {
        println!("{}", json!({ "events": events }));
        return Ok(());
    }
    let field = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let rows = events
        .iter()
        .map(|e| {
            let targets: Vec<&str> = e
                .get("targets")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            vec![
                when(e.get("time").and_then(Value::as_f64)),
                field(e, "operation"),
                field(e, "result"),
                field(e, "accessKeyId"),
                field(e, "requestId"),
                if targets.is_empty() {
                    "-".into()
                } else {
                    targets.join(",")
                },
            ]
        })
        .collect();
    table(
        &[
            "TIME",
            "OPERATION",
            "RESULT",
            "ACCESS KEY",
            "REQUEST ID",
            "TARGETS",
        ],
        rows,
    );
    Ok(())
}
