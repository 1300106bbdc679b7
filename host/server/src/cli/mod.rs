//! berth's own client commands (`berth clusters ls`, `berth run`, `berth
//! services ...`, `berth policy ...`, `berth logs`, ...): the API of a
//! running `berth up`, signed with SigV4 like any client.
//!
//! Every failure is a [`CliError`] whose kind is the exit status (see
//! [`EXIT_CODES`]), so scripts can tell a refusal of the server from an
//! unreachable server or a deployment that failed.

mod answers;
mod audit;
mod down;
mod logs;
mod policy;
mod secrets;
mod services;
mod tasks;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use answers::read;
use berth_client::{BERTH_PREFIX, CallError, Credentials, ECS_PREFIX};
use berth_core::model::Resource;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

/// The exit statuses, for `berth --help`.
pub const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  the server answered with an error, printed as `berth: <ErrorCode>: <message>`
     (and any other failure: of `berth up`, `berth bench`, reading Docker)
  2  usage: bad arguments, or an input file that cannot be read or parsed
  3  berth up could not be reached at the endpoint (or no credentials for it)
  4  a --wait ended in failure: a deployment FAILED (circuit breaker), was
     replaced, or a task stopped
  5  a --wait timed out, or a call got no answer in time (it may have been
     carried out: check before retrying)";

/// Why a client command failed; the kind is the exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server refused or failed the call (exit 1).
    #[error("{code}: {message}")]
    Api { code: String, message: String },
    /// A failure on this host, not the server's (exit 1).
    #[error("{0}")]
    Local(String),
    /// Bad input on this side (exit 2).
    #[error("{0}")]
    Usage(String),
    /// No `berth up` to talk to (exit 3).
    #[error("{0}")]
    Unreachable(String),
    /// A `--wait` saw the change fail (exit 4).
    #[error("{0}")]
    Failed(String),
    /// A `--wait` ran out of time (exit 5).
    #[error("{0}")]
    Timeout(String),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. } | CliError::Local(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
            CliError::Failed(_) => 4,
            CliError::Timeout(_) => 5,
        }
    }
}

type Result<T, E = CliError> = std::result::Result<T, E>;

/// How to reach the server, and how to print.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The API of a running `berth up`.
    #[arg(
        long,
        env = "BERTH_ENDPOINT",
        default_value = "http://127.0.0.1:7171",
        global = true
    )]
    endpoint: String,
    /// Where `berth up` keeps its state (read for its credentials when
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set).
    #[arg(long, env = "BERTH_DATA_DIR", default_value_os_t = crate::up::default_data_dir(), global = true)]
    data_dir: PathBuf,
    /// Tables for people, or the API's JSON answer for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    output: Format,
    /// The cluster (default `default`).
    #[arg(long, global = true)]
    cluster: Option<String>,
}

impl Conn {
    fn cluster(&self) -> String {
        self.cluster.clone().unwrap_or_else(|| "default".into())
    }

    fn json(&self) -> bool {
        self.output == Format::Json
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// `--wait` and its bound, shared by the commands that change something
/// that takes time.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Wait until the change is done, showing progress; exit 4 if it fails.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (exit 5).
    #[arg(long, value_name = "SECS", default_value_t = 600, requires = "wait")]
    timeout: u64,
}

impl WaitArgs {
    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.timeout)
    }
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Clusters.
    Clusters {
        #[command(subcommand)]
        what: ClustersCommand,
        #[command(flatten)]
        conn: Conn,
    },
    /// Register a task definition from a JSON file (RegisterTaskDefinition's input).
    Register {
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run tasks of a task definition; exit 1 when not all of them could be
    /// started (the server's reason is printed).
    Run(tasks::RunArgs),
    /// Tasks of the cluster (desired RUNNING; `--all` adds STOPPED).
    Ps {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop a task.
    Stop {
        task: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print a task's container output, through the API (from this host's
    /// Docker directly when `berth up` does not answer).
    Logs(logs::LogsArgs),
    /// Services: long-running tasks kept at a count, with rolling deployments.
    Services {
        #[command(subcommand)]
        what: services::ServicesCommand,
        #[command(flatten)]
        conn: Conn,
    },
    /// Placement policies (WebAssembly components): install, activate, remove.
    Policy {
        #[command(subcommand)]
        what: policy::PolicyCommand,
        #[command(flatten)]
        conn: Conn,
    },
    /// Container instances.
    Instances {
        #[command(subcommand)]
        what: InstancesCommand,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop a running `berth up`: its tasks' containers first (unless
    /// `--keep-tasks`), then the server; services start again at the next `berth up`.
    Down(down::DownArgs),
    /// Registry credentials for `repositoryCredentials` (never printed back).
    Secrets {
        #[command(subcommand)]
        what: secrets::SecretsCommand,
        #[command(flatten)]
        conn: Conn,
    },
    /// The audit log: every mutating call, carried out or refused, oldest first.
    Audit(audit::AuditArgs),
}

#[derive(Debug, Subcommand)]
pub enum ClustersCommand {
    /// List clusters with their counts.
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    /// List container instances with their free resources.
    Ls {
        /// Only those matching this cluster query (`attribute:gpu exists`).
        #[arg(long)]
        filter: Option<String>,
    },
    /// Take no new tasks on an instance.
    Drain { instance: String },
}

impl From<CallError> for CliError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Api { code, message } => CliError::Api { code, message },
            CallError::Request(m) => CliError::Usage(m),
            CallError::Unreachable(m) => CliError::Unreachable(m),
            CallError::Timeout(m) => CliError::Timeout(m),
        }
    }
}

/// Where an `--endpoint` connects: `host:port`.
fn endpoint_host(endpoint: &str) -> Result<String> {
    berth_client::endpoint_host(endpoint).map_err(CliError::Usage)
}

/// The client of the `berth up` that `--endpoint` names.
struct Client(berth_client::Client);

impl Client {
    fn new(conn: &Conn) -> Result<Client> {
        let host = endpoint_host(&conn.endpoint)?;
        let creds = Credentials::lookup(&conn.data_dir).map_err(CliError::Unreachable)?;
        Ok(Client(berth_client::Client::new(host, creds)))
    }

    /// An ECS operation.
    async fn ecs(&self, op: &str, body: Value) -> Result<Value> {
        Ok(self.0.call(ECS_PREFIX, op, &body).await?)
    }

    /// One of berth's own operations.
    async fn berth(&self, op: &str, body: Value) -> Result<Value> {
        Ok(self.0.call(BERTH_PREFIX, op, &body).await?)
    }

    /// Every ARN of a paged ECS list call.
    async fn all(&self, op: &str, mut body: Value) -> Result<Vec<String>> {
        let mut out = Vec::new();
        loop {
            let page: answers::Page = read(op, &self.ecs(op, body.clone()).await?)?;
            out.extend(page.arns);
            match page.next_token {
                Some(t) => body["nextToken"] = json!(t),
                None => return Ok(out),
            }
        }
    }
}

/// A value for a table cell, `-` when there is none.
fn dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The last part of an ARN (an id or a `family:revision`).
fn short(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_owned()
}

/// [`short`], `-` when there is no ARN.
fn short_or_dash(arn: Option<&str>) -> String {
    arn.map_or_else(|| "-".into(), short)
}

/// A resource's integer value, by name.
fn resource(rs: &[Resource], name: &str) -> String {
    dash(
        rs.iter()
            .find(|r| r.name == name)
            .and_then(|r| r.integer_value),
    )
}

/// An epoch-seconds value as local time, for people.
fn when(t: Option<f64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp_micros((t * 1e6).round() as i64))
        .map_or("-".into(), |t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
}

/// Prints rows as columns padded to their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r);
    }
}

fn print_failures(failures: &[answers::Failure]) {
    for f in failures {
        eprintln!(
            "failure: {} {}{}",
            dash(f.arn.as_deref()),
            dash(f.reason.as_deref()),
            f.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
}

/// Progress of a `--wait`: on a terminal one line redrawn in place, else
/// one line per change. It goes to stdout, or to stderr when stdout carries
/// JSON for a script.
struct Progress {
    started: Instant,
    stderr: bool,
    tty: bool,
    last: String,
}

impl Progress {
    fn new(json_out: bool) -> Progress {
        let tty = if json_out {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        Progress {
            started: Instant::now(),
            stderr: json_out,
            tty,
            last: String::new(),
        }
    }

    fn show(&mut self, line: &str) {
        let secs = self.started.elapsed().as_secs();
        let text = format!("[{secs:>4}s] {line}");
        let out: &mut dyn Write = if self.stderr {
            &mut std::io::stderr()
        } else {
            &mut std::io::stdout()
        };
        if self.tty {
            // Kept within the terminal's width, or the redraw would scroll.
            let width = std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.parse::<usize>().ok())
                .unwrap_or(100)
                .max(20);
            let cut: String = text.chars().take(width - 1).collect();
            let _ = write!(out, "\r\x1b[2K{cut}");
            let _ = out.flush();
        } else if line != self.last {
            let _ = writeln!(out, "{text}");
        }
        self.last = line.to_owned();
    }

    /// Ends the redrawn line so what follows starts on its own.
    fn finish(&mut self) {
        if self.tty && !self.last.is_empty() {
            let out: &mut dyn Write = if self.stderr {
                &mut std::io::stderr()
            } else {
                &mut std::io::stdout()
            };
            let _ = writeln!(out);
        }
        self.last.clear();
    }
}

/// How often a `--wait` looks again.
const POLL: Duration = Duration::from_millis(500);

/// Runs one client command.
pub fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(cmd)).map_err(anyhow::Error::from)
}

async fn run_async(cmd: ClientCommand) -> Result<()> {
    // Logs may do without the server (and its credentials): first things first.
    if let ClientCommand::Logs(args) = cmd {
        return logs::run(args).await;
    }
    let (ClientCommand::Clusters { conn, .. }
    | ClientCommand::Register { conn, .. }
    | ClientCommand::Ps { conn, .. }
    | ClientCommand::Stop { conn, .. }
    | ClientCommand::Instances { conn, .. }
    | ClientCommand::Services { conn, .. }
    | ClientCommand::Policy { conn, .. }
    | ClientCommand::Secrets { conn, .. }
    | ClientCommand::Audit(audit::AuditArgs { conn, .. })
    | ClientCommand::Run(tasks::RunArgs { conn, .. })
    | ClientCommand::Down(down::DownArgs { conn, .. })
    | ClientCommand::Logs(logs::LogsArgs { conn, .. })) = &cmd;
    let conn = conn.clone();
    let c = Client::new(&conn)?;
    match cmd {
        ClientCommand::Clusters {
            what: ClustersCommand::Ls,
            ..
        } => clusters_ls(&c, &conn).await,
        ClientCommand::Register { file, .. } => register(&c, &conn, &file).await,
        ClientCommand::Ps { all, .. } => tasks::ps(&c, &conn, all).await,
        ClientCommand::Stop { task, reason, .. } => tasks::stop(&c, &conn, task, reason).await,
        ClientCommand::Instances { what, .. } => instances(&c, &conn, what).await,
        ClientCommand::Run(args) => tasks::run(&c, args).await,
        ClientCommand::Logs(args) => logs::run(args).await,
        ClientCommand::Services { what, .. } => services::run(&c, what, &conn).await,
        ClientCommand::Policy { what, .. } => policy::run(&c, what, &conn).await,
        ClientCommand::Secrets { what, .. } => secrets::run(&c, what, &conn).await,
        ClientCommand::Down(args) => down::run(&c, args).await,
        ClientCommand::Audit(args) => audit::run(&c, args).await,
    }
}

/// `berth clusters ls`.
async fn clusters_ls(c: &Client, conn: &Conn) -> Result<()> {
    let arns = c.all("ListClusters", json!({})).await?;
    let v = if arns.is_empty() {
        json!({"clusters": []})
    } else {
        c.ecs("DescribeClusters", json!({"clusters": arns})).await?
    };
    if conn.json() {
        println!("{v}");
        return Ok(());
    }
    let answer: answers::Clusters = read("DescribeClusters", &v)?;
    let rows = answer
        .clusters
        .iter()
        .map(|c| {
            vec![
                c.cluster_name.clone(),
                c.status.to_string(),
                c.registered_container_instances_count.to_string(),
                c.active_services_count.to_string(),
                c.running_tasks_count.to_string(),
                c.pending_tasks_count.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATUS",
            "INSTANCES",
            "SERVICES",
            "RUNNING",
            "PENDING",
        ],
        rows,
    );
    Ok(())
}

/// `berth register FILE`.
async fn register(c: &Client, conn: &Conn, file: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Usage(format!("reading {}: {e}", file.display())))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{} is not JSON: {e}", file.display())))?;
    let v = c.ecs("RegisterTaskDefinition", body).await?;
    if conn.json() {
        println!("{v}");
        return Ok(());
    }
    let answer: answers::Registered = read("RegisterTaskDefinition", &v)?;
    println!("{}", answer.task_definition.task_definition_arn);
    Ok(())
}

/// `berth instances ls|drain`.
async fn instances(c: &Client, conn: &Conn, what: InstancesCommand) -> Result<()> {
    let cluster = conn.cluster();
    let v = match what {
        InstancesCommand::Ls { filter } => {
            let mut body = json!({"cluster": cluster});
            if let Some(f) = filter {
                body["filter"] = json!(f);
            }
            let arns = c.all("ListContainerInstances", body).await?;
            let mut out = Vec::new();
            for chunk in arns.chunks(100) {
                let v = c
                    .ecs(
                        "DescribeContainerInstances",
                        json!({"cluster": cluster, "containerInstances": chunk}),
                    )
                    .await?;
                let answer: answers::Instances = read("DescribeContainerInstances", &v)?;
                out.extend(answer.container_instances);
            }
            json!({"containerInstances": out})
        }
        InstancesCommand::Drain { instance } => {
            let v = c
                .ecs("UpdateContainerInstancesState", json!({"cluster": cluster, "containerInstances": [instance], "status": "DRAINING"}))
                .await?;
            let answer: answers::Instances = read("UpdateContainerInstancesState", &v)?;
            print_failures(&answer.failures);
            v
        }
    };
    if conn.json() {
        println!("{v}");
        return Ok(());
    }
    let answer: answers::Instances = read("DescribeContainerInstances", &v)?;
    let rows = answer
        .container_instances
        .iter()
        .map(|i| {
            let free = |name| {
                format!(
                    "{}/{}",
                    resource(&i.remaining_resources, name),
                    resource(&i.registered_resources, name)
                )
            };
            let zone = i
                .attributes
                .iter()
                .find(|a| a.name == "ecs.availability-zone")
                .and_then(|a| a.value.clone())
                .unwrap_or_else(|| "-".into());
            // The custom attributes; the built-in `ecs.*` ones are the agent's.
            let custom: Vec<String> = i
                .attributes
                .iter()
                .filter(|a| !a.name.starts_with("ecs."))
                .map(|a| match &a.value {
                    Some(v) => format!("{}={v}", a.name),
                    None => a.name.clone(),
                })
                .collect();
            vec![
                short(&i.container_instance_arn),
                i.ec2_instance_id.clone(),
                i.status.to_string(),
                zone,
                free("CPU"),
                free("MEMORY"),
                i.running_tasks_count.to_string(),
                i.pending_tasks_count.to_string(),
                if custom.is_empty() {
                    "-".into()
                } else {
                    custom.join(",")
                },
            ]
        })
        .collect();
    table(
        &[
            "INSTANCE",
            "HOST",
            "STATUS",
            "ZONE",
            "CPU FREE",
            "MEMORY FREE",
            "RUNNING",
            "PENDING",
            "ATTRIBUTES",
        ],
        rows,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_endpoint_is_usage() {
        assert_eq!(
            endpoint_host("http://127.0.0.1:7171/").unwrap(),
            "127.0.0.1:7171"
        );
        assert!(
            matches!(endpoint_host("https://x:1"), Err(CliError::Usage(m)) if m.contains("only http://"))
        );
        assert!(endpoint_host("http://x:1/path").is_err());
    }

    #[test]
    fn exit_codes_follow_the_kind() {
        let codes: Vec<u8> = [
            CliError::Api {
                code: "X".into(),
                message: String::new(),
            },
            CliError::Usage(String::new()),
            CliError::Unreachable(String::new()),
            CliError::Failed(String::new()),
            CliError::Timeout(String::new()),
        ]
        .iter()
        .map(CliError::exit_code)
        .collect();
        assert_eq!(codes, vec![1, 2, 3, 4, 5]);
        assert_eq!(
            CliError::Api {
                code: "ClusterNotFoundException".into(),
                message: "m".into()
            }
            .to_string(),
            "ClusterNotFoundException: m"
        );
    }
}
