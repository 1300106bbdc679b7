//! berth's own client commands (`berth clusters ls`, `berth run`, `berth
//! services ...`, `berth policy ...`, `berth logs`, ...): the API of a
//! running `berth up`, signed with SigV4 like any client.
//!
//! Every failure is a [`CliError`] whose kind is the exit status (see
//! [`EXIT_CODES`]), so scripts can tell a refusal of the server from an
//! unreachable server or a deployment that failed.

mod logs;
mod policy;
mod services;
mod tasks;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::{BERTH_PREFIX, ECS_PREFIX, JSON, sigv4};
use crate::credentials::Credentials;

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

/// A signed-request client of one `berth up`.
struct Client {
    host: String,
    creds: Credentials,
}

/// How long one call may take before the server counts as not answering.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Where an `--endpoint` connects: `host:port`.
fn endpoint_host(endpoint: &str) -> Result<String> {
    endpoint
        .strip_prefix("http://")
        .map(|h| h.trim_end_matches('/').to_owned())
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .ok_or_else(|| CliError::Usage(format!("--endpoint {endpoint}: give http://HOST:PORT (only http:// endpoints are supported)")))
}

impl Client {
    fn new(conn: &Conn) -> Result<Client> {
        let host = endpoint_host(&conn.endpoint)?;
        let env = |a: &str, b: &str| {
            std::env::var(a)
                .or_else(|_| std::env::var(b))
                .ok()
                .filter(|s| !s.is_empty())
        };
        let creds = match (env("AWS_ACCESS_KEY_ID", "BERTH_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY", "BERTH_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Credentials { access_key_id, secret_access_key },
            _ => Credentials::read(&conn.data_dir).map_err(|e| {
                CliError::Unreachable(format!(
                    "no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set, and no credentials in {} ({e:#}); \
                     berth up writes them there at its first start: give its --data-dir, or set the variables",
                    conn.data_dir.display()
                ))
            })?,
        };
        Ok(Client { host, creds })
    }

    /// An ECS operation.
    async fn ecs(&self, op: &str, body: Value) -> Result<Value> {
        self.call(ECS_PREFIX, op, body).await
    }

    /// One of berth's own operations.
    async fn berth(&self, op: &str, body: Value) -> Result<Value> {
        self.call(BERTH_PREFIX, op, body).await
    }

    async fn call(&self, prefix: &str, op: &str, body: Value) -> Result<Value> {
        match tokio::time::timeout(CALL_TIMEOUT, self.call_once(prefix, op, body)).await {
            Ok(r) => r,
            // Sent but unanswered: it may have been carried out, so this is
            // not "unreachable" (a script retrying on 3 could act twice).
            Err(_) => Err(CliError::Timeout(format!(
                "{op}: no answer from http://{} within {}s; the call may have been carried out, check before retrying",
                self.host,
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn call_once(&self, prefix: &str, op: &str, body: Value) -> Result<Value> {
        let unreachable = |what: String| CliError::Unreachable(what);
        let target = format!("{prefix}.{op}");
        let body = serde_json::to_vec(&body)
            .map_err(|e| CliError::Usage(format!("encoding the request: {e}")))?;
        let headers = vec![
            ("content-type".to_owned(), JSON.to_owned()),
            ("host".to_owned(), self.host.clone()),
            ("x-amz-target".to_owned(), target),
        ];
        let signed = sigv4::sign(
            &self.creds,
            "local",
            "ecs",
            "/",
            &headers,
            &body,
            chrono::Utc::now(),
        );
        let stream = tokio::net::TcpStream::connect(&self.host).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                unreachable(format!(
                    "berth up does not seem to run at http://{} (connection refused); start it with `berth up`, \
                     or give its address with --endpoint or BERTH_ENDPOINT",
                    self.host
                ))
            } else {
                unreachable(format!("connecting to http://{}: {e}", self.host))
            }
        })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(format!("http://{}: HTTP handshake: {e}", self.host)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection");
            }
        });
        let mut req = hyper::Request::builder().method("POST").uri("/");
        for (n, v) in headers.iter().chain(&signed) {
            req = req.header(n, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CliError::Usage(format!("building the request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(format!("{op} on http://{}: {e}", self.host)))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(format!("{op}: reading the answer: {e}")))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            unreachable(format!(
                "{op}: http://{} answered HTTP {status} without berth's JSON; is it berth up?",
                self.host
            ))
        })?;
        if !status.is_success() {
            return Err(CliError::Api {
                code: v["__type"].as_str().unwrap_or("UnknownError").to_owned(),
                message: v["message"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(v)
    }

    /// Every item of a paged ECS list call.
    async fn all(&self, op: &str, mut body: Value, field: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            let v = self.ecs(op, body.clone()).await?;
            out.extend(v[field].as_array().cloned().unwrap_or_default());
            match v["nextToken"].as_str() {
                Some(t) => body["nextToken"] = json!(t),
                None => return Ok(out),
            }
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn short(arn: &Value) -> String {
    let a = s(arn);
    a.rsplit('/').next().unwrap_or(&a).to_owned()
}

fn resource(rs: &Value, name: &str) -> String {
    rs.as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name))
        .map_or("-".into(), |r| s(&r["integerValue"]))
}

/// An epoch-seconds value as local time, for people.
fn when(v: &Value) -> String {
    v.as_f64()
        .and_then(|t| chrono::DateTime::from_timestamp_micros((t * 1e6).round() as i64))
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

fn print_failures(v: &Value) {
    for f in v["failures"].as_array().into_iter().flatten() {
        eprintln!(
            "failure: {} {}{}",
            s(&f["arn"]),
            s(&f["reason"]),
            f["detail"]
                .as_str()
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
    | ClientCommand::Run(tasks::RunArgs { conn, .. })
    | ClientCommand::Logs(logs::LogsArgs { conn, .. })) = &cmd;
    let conn = conn.clone();
    let c = Client::new(&conn)?;
    let json_out = conn.json();
    let cluster = json!(conn.cluster());
    let print_json = |v: &Value| println!("{v}");
    match cmd {
        ClientCommand::Clusters {
            what: ClustersCommand::Ls,
            ..
        } => {
            let arns = c.all("ListClusters", json!({}), "clusterArns").await?;
            let v = if arns.is_empty() {
                json!({"clusters": []})
            } else {
                c.ecs("DescribeClusters", json!({"clusters": arns})).await?
            };
            if json_out {
                print_json(&v);
                return Ok(());
            }
            let rows = v["clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    vec![
                        s(&c["clusterName"]),
                        s(&c["status"]),
                        s(&c["registeredContainerInstancesCount"]),
                        s(&c["activeServicesCount"]),
                        s(&c["runningTasksCount"]),
                        s(&c["pendingTasksCount"]),
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
        }
        ClientCommand::Register { file, .. } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Usage(format!("reading {}: {e}", file.display())))?;
            let body: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{} is not JSON: {e}", file.display())))?;
            let v = c.ecs("RegisterTaskDefinition", body).await?;
            if json_out {
                print_json(&v);
                return Ok(());
            }
            println!("{}", s(&v["taskDefinition"]["taskDefinitionArn"]));
        }
        ClientCommand::Ps { all, .. } => {
            let mut arns = c
                .all("ListTasks", json!({"cluster": cluster}), "taskArns")
                .await?;
            if all {
                arns.extend(
                    c.all(
                        "ListTasks",
                        json!({"cluster": cluster, "desiredStatus": "STOPPED"}),
                        "taskArns",
                    )
                    .await?,
                );
            }
            let mut found = Vec::new();
            for chunk in arns.chunks(100) {
                let v = c
                    .ecs("DescribeTasks", json!({"cluster": cluster, "tasks": chunk}))
                    .await?;
                found.extend(v["tasks"].as_array().cloned().unwrap_or_default());
            }
            if json_out {
                print_json(&json!({"tasks": found}));
                return Ok(());
            }
            table(&tasks::TASK_HEADER, tasks::task_rows(&found));
        }
        ClientCommand::Stop { task, reason, .. } => {
            let mut body = json!({"cluster": cluster, "task": task});
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            let v = c.ecs("StopTask", body).await?;
            if json_out {
                print_json(&v);
                return Ok(());
            }
            table(&tasks::TASK_HEADER, tasks::task_rows(&[v["task"].clone()]));
        }
        ClientCommand::Instances { what, .. } => {
            let v = match what {
                InstancesCommand::Ls { filter } => {
                    let mut body = json!({"cluster": cluster});
                    if let Some(f) = filter {
                        body["filter"] = json!(f);
                    }
                    let arns = c
                        .all("ListContainerInstances", body, "containerInstanceArns")
                        .await?;
                    let mut out = Vec::new();
                    for chunk in arns.chunks(100) {
                        let v = c
                            .ecs(
                                "DescribeContainerInstances",
                                json!({"cluster": cluster, "containerInstances": chunk}),
                            )
                            .await?;
                        out.extend(
                            v["containerInstances"]
                                .as_array()
                                .cloned()
                                .unwrap_or_default(),
                        );
                    }
                    json!({"containerInstances": out})
                }
                InstancesCommand::Drain { instance } => {
                    let v = c
                        .ecs("UpdateContainerInstancesState", json!({"cluster": cluster, "containerInstances": [instance], "status": "DRAINING"}))
                        .await?;
                    print_failures(&v);
                    v
                }
            };
            if json_out {
                print_json(&v);
                return Ok(());
            }
            let rows = v["containerInstances"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    vec![
                        short(&i["containerInstanceArn"]),
                        s(&i["ec2InstanceId"]),
                        s(&i["status"]),
                        format!(
                            "{}/{}",
                            resource(&i["remainingResources"], "CPU"),
                            resource(&i["registeredResources"], "CPU")
                        ),
                        format!(
                            "{}/{}",
                            resource(&i["remainingResources"], "MEMORY"),
                            resource(&i["registeredResources"], "MEMORY")
                        ),
                        s(&i["runningTasksCount"]),
                        s(&i["pendingTasksCount"]),
                    ]
                })
                .collect();
            table(
                &[
                    "INSTANCE",
                    "HOST",
                    "STATUS",
                    "CPU FREE",
                    "MEMORY FREE",
                    "RUNNING",
                    "PENDING",
                ],
                rows,
            );
        }
        ClientCommand::Run(args) => return tasks::run(&c, args).await,
        ClientCommand::Logs(args) => return logs::run(args).await,
        ClientCommand::Services { what, .. } => return services::run(&c, what, &conn).await,
        ClientCommand::Policy { what, .. } => return policy::run(&c, what, &conn).await,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_host_port() {
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
