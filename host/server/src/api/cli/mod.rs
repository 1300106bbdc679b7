//! berth's own client commands (`berth clusters ls`, `berth run`, ...): the
//! ECS API of a running `berth up`, signed with SigV4 like any client.

use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::{ECS_PREFIX, JSON, sigv4};
use crate::credentials::Credentials;

/// How to reach the server, and how to print.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The API of a running `berth up`.
    #[arg(long, env = "BERTH_ENDPOINT", default_value = "http://127.0.0.1:7171", global = true)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
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
    /// Run tasks of a task definition (`family`, `family:revision` or ARN).
    Run {
        task_definition: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Wait PENDING for capacity instead of failing (berth's queue).
        #[arg(long)]
        queue: bool,
        #[command(flatten)]
        conn: Conn,
    },
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

struct Client {
    host: String,
    creds: Credentials,
}

impl Client {
    fn new(conn: &Conn) -> anyhow::Result<Client> {
        let host = conn
            .endpoint
            .strip_prefix("http://")
            .with_context(|| format!("--endpoint {}: only http:// endpoints are supported", conn.endpoint))?
            .trim_end_matches('/')
            .to_owned();
        let env = |a: &str, b: &str| std::env::var(a).or_else(|_| std::env::var(b)).ok().filter(|s| !s.is_empty());
        let creds = match (env("AWS_ACCESS_KEY_ID", "BERTH_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY", "BERTH_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Credentials { access_key_id, secret_access_key },
            _ => Credentials::read(&conn.data_dir).with_context(|| {
                format!("no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set, and no credentials in {}", conn.data_dir.display())
            })?,
        };
        Ok(Client { host, creds })
    }

    async fn call(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        let target = format!("{ECS_PREFIX}.{op}");
        let body = serde_json::to_vec(&body).context("encoding the request")?;
        let headers = vec![
            ("content-type".to_owned(), JSON.to_owned()),
            ("host".to_owned(), self.host.clone()),
            ("x-amz-target".to_owned(), target),
        ];
        let signed = sigv4::sign(&self.creds, "local", "ecs", "/", &headers, &body, chrono::Utc::now());
        let stream = tokio::net::TcpStream::connect(&self.host)
            .await
            .with_context(|| format!("connecting to http://{} (is `berth up` running?)", self.host))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.context("HTTP handshake")?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection");
            }
        });
        let mut req = hyper::Request::builder().method("POST").uri("/");
        for (n, v) in headers.iter().chain(&signed) {
            req = req.header(n, v);
        }
        let req = req.body(Full::new(Bytes::from(body))).context("building the request")?;
        let resp = sender.send_request(req).await.with_context(|| format!("calling {op}"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.context("reading the answer")?.to_bytes();
        let v: Value = serde_json::from_slice(&bytes).with_context(|| format!("{op}: the answer is not JSON"))?;
        if !status.is_success() {
            anyhow::bail!("{op}: {}: {}", v["__type"].as_str().unwrap_or("error"), v["message"].as_str().unwrap_or(""));
        }
        Ok(v)
    }

    /// Every item of a paged list call.
    async fn all(&self, op: &str, mut body: Value, field: &str) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            let v = self.call(op, body.clone()).await?;
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
    rs.as_array().and_then(|a| a.iter().find(|r| r["name"] == name)).map_or("-".into(), |r| s(&r["integerValue"]))
}

/// Prints rows as columns padded to their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r);
    }
}

fn print_failures(v: &Value) {
    for f in v["failures"].as_array().into_iter().flatten() {
        eprintln!("failure: {} {}{}", s(&f["arn"]), s(&f["reason"]), f["detail"].as_str().map(|d| format!(" ({d})")).unwrap_or_default());
    }
}

fn task_rows(tasks: &[Value]) -> Vec<Vec<String>> {
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
                if ports.is_empty() { "-".into() } else { ports.join(",") },
            ]
        })
        .collect()
}

const TASK_HEADER: [&str; 6] = ["TASK", "DEFINITION", "LAST", "DESIRED", "INSTANCE", "PORTS"];

/// Runs one client command.
pub fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(run_async(cmd))
}

async fn run_async(cmd: ClientCommand) -> anyhow::Result<()> {
    let conn = match &cmd {
        ClientCommand::Clusters { conn, .. }
        | ClientCommand::Register { conn, .. }
        | ClientCommand::Run { conn, .. }
        | ClientCommand::Ps { conn, .. }
        | ClientCommand::Stop { conn, .. }
        | ClientCommand::Instances { conn, .. } => conn.clone(),
    };
    let c = Client::new(&conn)?;
    let json_out = conn.output == Format::Json;
    let cluster = json!(conn.cluster.clone().unwrap_or_else(|| "default".into()));
    let print_json = |v: &Value| println!("{v}");
    match cmd {
        ClientCommand::Clusters { what: ClustersCommand::Ls, .. } => {
            let arns = c.all("ListClusters", json!({}), "clusterArns").await?;
            let v = if arns.is_empty() { json!({"clusters": []}) } else { c.call("DescribeClusters", json!({"clusters": arns})).await? };
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
                        s(&c["runningTasksCount"]),
                        s(&c["pendingTasksCount"]),
                    ]
                })
                .collect();
            table(&["NAME", "STATUS", "INSTANCES", "RUNNING", "PENDING"], rows);
        }
        ClientCommand::Register { file, .. } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let body: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
            let v = c.call("RegisterTaskDefinition", body).await?;
            if json_out {
                print_json(&v);
                return Ok(());
            }
            println!("{}", s(&v["taskDefinition"]["taskDefinitionArn"]));
        }
        ClientCommand::Run { task_definition, count, queue, .. } => {
            let mut body = json!({"cluster": cluster, "taskDefinition": task_definition, "count": count});
            if queue {
                body["tags"] = json!([{"key": crate::control::QUEUE_TAG, "value": "true"}]);
            }
            let v = c.call("RunTask", body).await?;
            if json_out {
                print_json(&v);
                return Ok(());
            }
            let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
            table(&TASK_HEADER, task_rows(&tasks));
            print_failures(&v);
            if tasks.is_empty() {
                anyhow::bail!("no task was started");
            }
        }
        ClientCommand::Ps { all, .. } => {
            let mut arns = c.all("ListTasks", json!({"cluster": cluster}), "taskArns").await?;
            if all {
                arns.extend(c.all("ListTasks", json!({"cluster": cluster, "desiredStatus": "STOPPED"}), "taskArns").await?);
            }
            let mut tasks = Vec::new();
            for chunk in arns.chunks(100) {
                let v = c.call("DescribeTasks", json!({"cluster": cluster, "tasks": chunk})).await?;
                tasks.extend(v["tasks"].as_array().cloned().unwrap_or_default());
            }
            if json_out {
                print_json(&json!({"tasks": tasks}));
                return Ok(());
            }
            table(&TASK_HEADER, task_rows(&tasks));
        }
        ClientCommand::Stop { task, reason, .. } => {
            let mut body = json!({"cluster": cluster, "task": task});
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            let v = c.call("StopTask", body).await?;
            if json_out {
                print_json(&v);
                return Ok(());
            }
            table(&TASK_HEADER, task_rows(&[v["task"].clone()]));
        }
        ClientCommand::Instances { what, .. } => {
            let v = match what {
                InstancesCommand::Ls { filter } => {
                    let mut body = json!({"cluster": cluster});
                    if let Some(f) = filter {
                        body["filter"] = json!(f);
                    }
                    let arns = c.all("ListContainerInstances", body, "containerInstanceArns").await?;
                    let mut out = Vec::new();
                    for chunk in arns.chunks(100) {
                        let v = c.call("DescribeContainerInstances", json!({"cluster": cluster, "containerInstances": chunk})).await?;
                        out.extend(v["containerInstances"].as_array().cloned().unwrap_or_default());
                    }
                    json!({"containerInstances": out})
                }
                InstancesCommand::Drain { instance } => {
                    let v = c
                        .call("UpdateContainerInstancesState", json!({"cluster": cluster, "containerInstances": [instance], "status": "DRAINING"}))
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
                        format!("{}/{}", resource(&i["remainingResources"], "CPU"), resource(&i["registeredResources"], "CPU")),
                        format!("{}/{}", resource(&i["remainingResources"], "MEMORY"), resource(&i["registeredResources"], "MEMORY")),
                        s(&i["runningTasksCount"]),
                        s(&i["pendingTasksCount"]),
                    ]
                })
                .collect();
            table(&["INSTANCE", "HOST", "STATUS", "CPU FREE", "MEMORY FREE", "RUNNING", "PENDING"], rows);
        }
    }
    Ok(())
}
