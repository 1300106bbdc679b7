//! berth across the test hosts: `berth server` in the root namespace,
//! listening on every address (the hosts reach it at their veth's root end),
//! and a `berth agent` in each host's namespace.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use berth_agent::testing::TEST_IMAGE;

use super::lab::{Host, ROOT_DIR, claim, until};
use crate::berth_bin;
use crate::harness::{aws_answer, aws_ecs_output};

/// `berth server` on a data directory of its own; stopped when dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// Its directory: `data/` (the store), `server.pid`, `server.log`.
    pub dir: PathBuf,
    pub port: u16,
    pub key: String,
    pub secret: String,
    args: Vec<String>,
}

impl Server {
    /// Starts `berth server` with `args` (e.g. `--agent-timeout 3`) on any free port.
    pub fn start(args: &[&str]) -> Server {
        std::fs::create_dir_all(ROOT_DIR).expect("the hosts' directory");
        let dir = tempfile::Builder::new()
            .prefix("server-")
            .tempdir_in(ROOT_DIR)
            .expect("server directory")
            .keep();
        claim(&dir);
        let mut server = Server {
            child: None,
            dir,
            port: 0,
            key: String::new(),
            secret: String::new(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.spawn();
        server
    }

    /// Starts the process on `self.port` (0 the first time) and reads the
    /// port it announces and the credentials in its data directory (berth
    /// prints the secret only at the start that creates it).
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("server log");
        let mut child = Command::new(berth_bin())
            .arg("server")
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen", &format!("0.0.0.0:{}", self.port)])
            .args(&self.args)
            .env("BERTH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("berth server starts");
        std::fs::write(self.dir.join("server.pid"), child.id().to_string()).expect("server.pid");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut said = Vec::new();
        let mut port = None;
        while port.is_none() {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "berth server ended before it announced its port and key: {said:?}\n{}",
                    self.log_tail()
                );
            };
            if let Some(rest) = line
                .split("http://")
                .nth(1)
                .filter(|_| line.contains("running"))
            {
                let addr = rest.split([';', ' ']).next().unwrap_or_default();
                let p = addr.rsplit(':').next().unwrap_or_default();
                port = Some(p.parse().expect("the port berth server announced"));
            }
            said.push(line.trim().to_owned());
        }
        let file = self.dir.join("data").join("credentials");
        let creds: Value = serde_json::from_slice(
            &std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
        )
        .expect("the credentials file is JSON");
        (self.port, self.key, self.secret) = (
            port.unwrap_or_default(),
            creds["access_key_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            creds["secret_access_key"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// The server's URL as host `host` reaches it.
    pub fn url_for(&self, host: &Host) -> String {
        format!("http://{}:{}", host.gateway, self.port)
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::lab::signal(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it and starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `aws ecs ARGS...` against this server, its JSON answer.
    pub fn aws(&self, args: &[&str]) -> Value {
        aws_answer(args, self.aws_output(args))
    }

    /// `aws ecs ARGS...` as it ended, for calls expected to fail.
    pub fn aws_output(&self, args: &[&str]) -> std::process::Output {
        let endpoint = format!("http://127.0.0.1:{}", self.port);
        aws_ecs_output(&endpoint, &self.key, &self.secret, args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a `berth agent` is started with, besides the server.
#[derive(Debug, Clone)]
pub struct AgentArgs {
    pub cluster: String,
    pub zone: String,
    pub attributes: Vec<(String, String)>,
}

impl AgentArgs {
    pub fn new(cluster: &str, zone: &str) -> AgentArgs {
        AgentArgs {
            cluster: cluster.to_owned(),
            zone: zone.to_owned(),
            attributes: Vec::new(),
        }
    }
}

/// Starts `berth agent` in `host`'s namespace against `server`, signing
/// with `key` and `secret`.
pub fn start_agent_as(host: &mut Host, server: &Server, a: &AgentArgs, key: &str, secret: &str) {
    let mut args = vec![
        "agent".to_owned(),
        "--server".to_owned(),
        server.url_for(host),
        "--cluster".to_owned(),
        a.cluster.clone(),
        "--docker-host".to_owned(),
        host.docker_host(),
        "--data-dir".to_owned(),
        host.dir.join("agent-data").display().to_string(),
        "--availability-zone".to_owned(),
        a.zone.clone(),
    ];
    for (k, v) in &a.attributes {
        args.push("--attribute".to_owned());
        args.push(format!("{k}={v}"));
    }
    let env = [
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("BERTH_LOG", "info"),
    ];
    host.start_agent(&berth_bin(), &args, &env);
}

/// Starts `berth agent` in `host` with the server's own credentials.
pub fn start_agent(host: &mut Host, server: &Server, a: &AgentArgs) {
    let (key, secret) = (server.key.clone(), server.secret.clone());
    start_agent_as(host, server, a, &key, &secret);
}

/// The ARNs in `v[key]`, sorted.
pub fn arns(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// A running container of a task, on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub task_arn: String,
    pub started_at: String,
}

/// The hosts, each with an agent in one cluster, and the server they join.
/// Hosts drop first (agents, containers, dockerd), then the server.
#[derive(Debug)]
pub struct Fleet {
    pub hosts: Vec<Host>,
    pub server: Server,
    pub cluster: String,
    pub agents: Vec<AgentArgs>,
}

impl Fleet {
    /// `berth server SERVER_ARGS`, the cluster `cluster` created through the
    /// API, and one host per zone, started side by side, each running a
    /// `berth agent` with `--attribute e2e.host=I` (I its index here), all
    /// registered and connected.
    pub fn start(server_args: &[&str], cluster: &str, zones: &[&str]) -> Fleet {
        let server = Server::start(server_args);
        server.aws(&["create-cluster", "--cluster-name", cluster]);
        let hosts: Vec<Host> = std::thread::scope(|s| {
            let started: Vec<_> = zones
                .iter()
                .map(|_| s.spawn(|| Host::start(&[TEST_IMAGE])))
                .collect();
            let joined: Vec<_> = started.into_iter().map(|h| h.join()).collect();
            if joined.iter().any(Result::is_err) {
                drop(joined);
                panic!("a test host did not start (see above)");
            }
            joined.into_iter().flatten().collect()
        });
        let agents = zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let mut a = AgentArgs::new(cluster, z);
                a.attributes.push(("e2e.host".to_owned(), i.to_string()));
                a
            })
            .collect();
        let mut fleet = Fleet {
            hosts,
            server,
            cluster: cluster.to_owned(),
            agents,
        };
        for i in 0..fleet.hosts.len() {
            fleet.start_agent(i);
        }
        fleet.until_connected(zones.len());
        fleet
    }

    /// Starts host `i`'s agent (again) with the server's credentials.
    pub fn start_agent(&mut self, i: usize) {
        let a = self.agents[i].clone();
        start_agent(&mut self.hosts[i], &self.server, &a);
    }

    /// `aws ecs ARGS... --cluster <the fleet's>`.
    pub fn aws(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--cluster", &self.cluster]);
        self.server.aws(&all)
    }

    /// Every container instance of the cluster, described.
    pub fn instances(&self) -> Vec<Value> {
        let listed = arns(
            &self.aws(&["list-container-instances"]),
            "containerInstanceArns",
        );
        if listed.is_empty() {
            return Vec::new();
        }
        let mut args = vec!["describe-container-instances", "--container-instances"];
        args.extend(listed.iter().map(String::as_str));
        self.aws(&args)["containerInstances"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Host `i`'s container instance (by its `e2e.host` attribute), if registered.
    pub fn instance_of(&self, i: usize) -> Option<Value> {
        self.instances().into_iter().find(|ci| {
            ci["attributes"].as_array().into_iter().flatten().any(|a| {
                a["name"] == "e2e.host" && a["value"].as_str() == Some(i.to_string().as_str())
            })
        })
    }

    /// Each host's container instance ARN, by host (one look at the cluster).
    pub fn instance_arns(&self) -> Vec<String> {
        let all = self.instances();
        (0..self.hosts.len())
            .map(|i| {
                let ci = all.iter().find(|ci| {
                    ci["attributes"].as_array().into_iter().flatten().any(|a| {
                        a["name"] == "e2e.host" && a["value"].as_str() == Some(&i.to_string())
                    })
                });
                let ci = ci.unwrap_or_else(|| panic!("host {i} is not registered: {all:#?}"));
                ci["containerInstanceArn"]
                    .as_str()
                    .expect("containerInstanceArn")
                    .to_owned()
            })
            .collect()
    }

    /// Host `i`'s container instance ARN.
    pub fn instance_arn(&self, i: usize) -> String {
        let ci = self
            .instance_of(i)
            .unwrap_or_else(|| panic!("host {i} is not registered"));
        ci["containerInstanceArn"]
            .as_str()
            .expect("containerInstanceArn")
            .to_owned()
    }

    /// Waits until `n` instances are registered and all connected.
    pub fn until_connected(&self, n: usize) -> Vec<Value> {
        until(
            Duration::from_secs(60),
            &format!("{n} connected instances in {}", self.cluster),
            || {
                let all = self.instances();
                (all.len() == n && all.iter().all(|ci| ci["agentConnected"] == true)).then_some(all)
            },
        )
    }

    /// The running containers of berth tasks on each host, by host.
    pub fn containers(&self) -> Vec<Vec<Container>> {
        self.hosts.iter().map(running_containers).collect()
    }

    /// How many containers of berth tasks run on each host.
    pub fn container_counts(&self) -> Vec<usize> {
        self.hosts
            .iter()
            .map(|h| {
                h.docker(&["ps", "-q", "--filter", "label=berth.task-arn"])
                    .lines()
                    .count()
            })
            .collect()
    }

    /// Registers a task definition `family` running a shell loop that
    /// stops on SIGTERM, with `memory` MiB; its ARN.
    pub fn register_sleeper(&self, family: &str, memory: u32) -> String {
        let defs = serde_json::json!([{ "name": "app", "image": TEST_IMAGE, "memory": memory,
            "stopTimeout": 2,
            "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"] }]);
        let out = self.server.aws(&[
            "register-task-definition",
            "--family",
            family,
            "--container-definitions",
            &defs.to_string(),
        ]);
        out["taskDefinition"]["taskDefinitionArn"]
            .as_str()
            .expect("taskDefinitionArn")
            .to_owned()
    }

    /// The tasks `arns`, described.
    pub fn describe_tasks(&self, arns: &[String]) -> Vec<Value> {
        let mut out = Vec::new();
        for chunk in arns.chunks(100) {
            let mut args = vec!["describe-tasks", "--tasks"];
            args.extend(chunk.iter().map(String::as_str));
            out.extend(
                self.aws(&args)["tasks"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        out
    }

    pub fn service(&self, name: &str) -> Value {
        self.aws(&["describe-services", "--services", name])["services"][0].clone()
    }

    /// The service's tasks asked to run and RUNNING, described.
    pub fn running_tasks(&self, service: &str) -> Vec<Value> {
        let listed = self.aws(&[
            "list-tasks",
            "--service-name",
            service,
            "--desired-status",
            "RUNNING",
        ]);
        let mut tasks = self.describe_tasks(&arns(&listed, "taskArns"));
        tasks.retain(|t| t["lastStatus"] == "RUNNING");
        tasks
    }

    /// Waits until `service` has `n` RUNNING tasks for which `ok` holds and
    /// its describe-services says `n` running; those tasks.
    pub fn until_running(
        &self,
        service: &str,
        n: usize,
        limit: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let what = format!("{n} running tasks of {service}");
        let deadline = Instant::now() + limit;
        loop {
            let tasks = self.running_tasks(service);
            if tasks.len() == n
                && tasks.iter().all(&ok)
                && self.service(service)["runningCount"] == n
            {
                return tasks;
            }
            if Instant::now() > deadline {
                panic!("{what}: not within {limit:?}: {tasks:#?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// What went wrong, for failure messages: the server's and agents' logs.
    pub fn logs(&self) -> String {
        let mut out = format!("--- server log:\n{}\n", self.server.log_tail());
        for (i, h) in self.hosts.iter().enumerate() {
            out.push_str(&format!(
                "--- host {i} agent log:\n{}\n",
                h.log_tail("agent.log")
            ));
        }
        out
    }
}

/// The running containers of berth tasks on `host`, with their start times.
pub fn running_containers(host: &Host) -> Vec<Container> {
    let ids = host.docker(&["ps", "-q", "--no-trunc", "--filter", "label=berth.task-arn"]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = vec![
        "inspect",
        "--format",
        "{{.Id}}|{{index .Config.Labels \"berth.task-arn\"}}|{{.State.StartedAt}}",
    ];
    args.extend(ids);
    // A container may go between `ps` and `inspect`; take what answers.
    let out = host.try_docker(&args).unwrap_or_else(|e| e);
    let mut found: Vec<Container> = out
        .lines()
        .filter_map(|l| {
            let mut parts = l.split('|');
            Some(Container {
                id: parts.next()?.to_owned(),
                task_arn: parts.next()?.to_owned(),
                started_at: parts.next()?.to_owned(),
            })
        })
        .filter(|c| c.id.len() == 64)
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}
