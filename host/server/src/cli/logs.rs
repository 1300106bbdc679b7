//! `berth logs TASK`: the task's container output through the API's
//! `GetTaskLogs`, paged by time; `--follow` polls from where the last page
//! ended. When nothing listens at the endpoint (berth up is down), this
//! host's Docker is read directly instead.

use std::io::Write;
use std::time::Duration;

use berth_core::status::DesiredStatus;
use clap::Args;
use serde_json::json;

use super::answers::{self, LogEvent, read};
use super::{CliError, Client, Conn, Result, endpoint_host};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Task id or ARN.
    task: String,
    /// Only this container of the task.
    #[arg(long)]
    container: Option<String>,
    /// Keep printing new output until the task stops.
    #[arg(long, short)]
    follow: bool,
    /// Only output since then: a duration back from now (`90s`, `10m`,
    /// `2h`, `1d`), an RFC 3339 time, or epoch seconds.
    #[arg(long, value_parser = parse_since)]
    since: Option<f64>,
    /// Prefix each line with its time.
    #[arg(long, short)]
    timestamps: bool,
    /// Read this host's Docker directly, without berth up.
    #[arg(long)]
    docker: bool,
    #[command(flatten)]
    pub(super) conn: Conn,
}

/// Events asked per call.
const PAGE: usize = 1000;
/// How often `--follow` asks again once it has caught up.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// `--since`: seconds before now, an RFC 3339 time, or epoch seconds.
fn parse_since(v: &str) -> std::result::Result<f64, String> {
    since_at(v, chrono::Utc::now())
}

fn since_at(v: &str, now: chrono::DateTime<chrono::Utc>) -> std::result::Result<f64, String> {
    let now = now.timestamp_micros() as f64 / 1e6;
    let v = v.trim();
    let unit = |c: char| match c {
        's' => Some(1.0),
        'm' => Some(60.0),
        'h' => Some(3600.0),
        'd' => Some(86400.0),
        _ => None,
    };
    if let Some(last) = v.chars().last()
        && let Some(mult) = unit(last)
        && let Ok(n) = v[..v.len() - 1].parse::<f64>()
        && n.is_finite()
        && n >= 0.0
    {
        return Ok(now - n * mult);
    }
    if let Ok(t) = v.parse::<f64>()
        && t.is_finite()
        && t >= 0.0
    {
        return Ok(t);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_micros() as f64 / 1e6)
        .map_err(|_| format!("`{v}` is not a duration (90s, 10m, 2h, 1d), an RFC 3339 time (2026-11-30T10:00:00Z) or epoch seconds"))
}

pub async fn run(args: LogsArgs) -> Result<()> {
    let host = endpoint_host(&args.conn.endpoint)?;
    let refused = matches!(tokio::net::TcpStream::connect(&host).await, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
    if args.docker || refused {
        if args.since.is_some() || args.timestamps || args.conn.json() {
            let why = if args.docker {
                "--docker".to_owned()
            } else {
                format!("berth up does not answer at http://{host}, so reading Docker directly")
            };
            return Err(CliError::Usage(format!(
                "{why}: --since, --timestamps and --output json need the API"
            )));
        }
        if !args.docker {
            eprintln!(
                "berth: berth up does not answer at http://{host}; reading this host's Docker directly"
            );
        }
        return crate::logs::from_docker(&args.task, args.container.as_deref(), args.follow)
            .await
            .map_err(|e| CliError::Local(format!("{e:#}")));
    }
    let c = Client::new(&args.conn)?;
    let cluster = args.conn.cluster();
    let describe = async || -> Result<Option<berth_core::model::Task>> {
        let v = c
            .ecs(
                "DescribeTasks",
                json!({"cluster": cluster, "tasks": [args.task]}),
            )
            .await?;
        Ok(read::<answers::Tasks>("DescribeTasks", &v)?
            .tasks
            .into_iter()
            .next())
    };
    // More than one container: each line says whose it is.
    let prefix =
        args.container.is_none() && describe().await?.is_some_and(|t| t.containers.len() > 1);
    let mut start = args.since;
    let mut first = true;
    loop {
        let mut body = json!({"cluster": cluster, "task": args.task, "limit": PAGE});
        if let Some(cn) = &args.container {
            body["container"] = json!(cn);
        }
        if let Some(t) = start {
            body["startTime"] = json!(t);
        }
        let page = match c.berth("GetTaskLogs", body).await {
            Ok(v) => read::<answers::LogPage>("GetTaskLogs", &v)?,
            // Following a task that stopped: its containers (and logs) are gone now.
            Err(e @ CliError::Api { .. }) if args.follow && !first => {
                if describe()
                    .await?
                    .is_some_and(|t| t.desired_status == DesiredStatus::Stopped)
                {
                    return Ok(());
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        first = false;
        print_events(&page.events, prefix, args.timestamps, args.conn.json());
        start = page.next_start_time.or(start);
        if page.events.len() >= PAGE {
            continue;
        }
        if !args.follow || page.last_status.as_deref() == Some("STOPPED") {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

fn print_events(events: &[LogEvent], prefix: bool, timestamps: bool, json_out: bool) {
    let mut out = std::io::stdout().lock();
    for e in events {
        let line = if json_out {
            // Through a JSON value: its keys come out sorted, as the API's did.
            json!(e).to_string()
        } else {
            let mut line = String::new();
            if timestamps {
                let t = chrono::DateTime::from_timestamp_micros((e.timestamp * 1e6).round() as i64);
                line.push_str(&t.map_or("-".into(), |t| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                }));
                line.push(' ');
            }
            if prefix {
                line.push_str(&e.container);
                line.push_str(" | ");
            }
            line.push_str(&e.message);
            line
        };
        if writeln!(out, "{line}").is_err() {
            // Stdout closed (`| head`): nothing more to print to.
            return;
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_times_and_epoch_seconds() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let t = now.timestamp() as f64;
        assert_eq!(since_at("90s", now), Ok(t - 90.0));
        assert_eq!(since_at("10m", now), Ok(t - 600.0));
        assert_eq!(since_at("1.5h", now), Ok(t - 5400.0));
        assert_eq!(since_at("1d", now), Ok(t - 86400.0));
        assert_eq!(since_at("2026-11-30T09:00:00Z", now), Ok(t - 3600.0));
        assert_eq!(since_at("1764496800.25", now), Ok(1764496800.25));
        let e = since_at("yesterday", now).unwrap_err();
        assert!(e.contains("`yesterday` is not a duration"), "{e}");
        assert!(since_at("-5m", now).is_err());
    }
}
