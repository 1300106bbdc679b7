//! The ECS API of a running `berth up`, driven with signed requests over
//! TCP, and with the reference clients (boto3, the AWS CLI).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::berth_bin;

pub(crate) const KEY_ID: &str = "AKIDE2ETEST";
pub(crate) const SECRET: &str = "e2e-secret-key";
pub(crate) const ECS: &str = "AmazonEC2ContainerServiceV20141113";

/// A `berth up` on a free port with a temporary data directory; stopped
/// with SIGTERM when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: String,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub(crate) fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_in(dir.path());
        s._dir = Some(dir);
        s
    }

    /// With extra `berth up` arguments, on a data directory of its own.
    pub(crate) fn start_args(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_in_args(dir.path(), args);
        s._dir = Some(dir);
        s
    }

    /// On the data directory `dir`, which outlives it (to restart on it).
    pub(crate) fn start_in(dir: &Path) -> Server {
        Server::start_in_args(dir, &[])
    }

    /// On the data directory `dir` with extra `berth up` arguments.
    pub(crate) fn start_in_args(dir: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(berth_bin())
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(args)
            .env("BERTH_ACCESS_KEY_ID", KEY_ID)
            .env("BERTH_SECRET_ACCESS_KEY", SECRET)
            .env("BERTH_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("berth up starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut seen = Vec::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!(
                    "berth up ended before it listened; it printed:\n{}",
                    seen.join("\n")
                );
            };
            if let Some(rest) = line
                .split("http://")
                .nth(1)
                .filter(|_| line.contains("running"))
            {
                break rest.split(';').next().expect("address").trim().to_owned();
            }
            seen.push(line);
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            _dir: None,
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A signed ECS call; (HTTP status, JSON answer).
    pub(crate) fn ecs(&self, op: &str, body: Value) -> (u16, Value) {
        self.signed(
            &format!("{ECS}.{op}"),
            body.to_string().as_bytes(),
            0,
            SECRET,
        )
    }

    /// A successful ECS call's answer.
    pub(crate) fn ok(&self, op: &str, body: Value) -> Value {
        let (s, v) = self.ecs(op, body);
        assert_eq!(s, 200, "{op}: {v}");
        v
    }

    pub(crate) fn signed(
        &self,
        target: &str,
        body: &[u8],
        skew_secs: i64,
        secret: &str,
    ) -> (u16, Value) {
        let headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.1".to_owned(),
            ),
            ("host".to_owned(), self.addr.clone()),
            ("x-amz-target".to_owned(), target.to_owned()),
        ];
        let now = chrono::Utc::now() + chrono::Duration::seconds(skew_secs);
        let extra = sign(secret, &headers, body, now);
        self.raw(&[headers, extra].concat(), body)
    }

    /// POST / with exactly these headers; (status, JSON body).
    pub(crate) fn raw(&self, headers: &[(String, String)], body: &[u8]) -> (u16, Value) {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut req = format!(
            "POST / HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        // The server may answer and close before reading a large body.
        let _ = s.write_all(req.as_bytes()).and_then(|()| s.write_all(body));
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("status line: {head}"));
        assert!(
            head.to_ascii_lowercase().contains("x-amzn-requestid:"),
            "no request id in {head}"
        );
        (
            status,
            serde_json::from_str(body).unwrap_or_else(|e| panic!("body {body:?}: {e}")),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// A tiny SigV4 signer, written apart from the server's so a shared bug
/// cannot hide.
pub(crate) fn sign(
    secret: &str,
    headers: &[(String, String)],
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, String)> {
    let amz = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz[..8];
    let mut all = headers.to_vec();
    all.push(("x-amz-date".into(), amz.clone()));
    all.sort();
    let signed = all
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canon_headers: String = all
        .iter()
        .map(|(n, v)| format!("{n}:{}\n", v.trim()))
        .collect();
    let canonical = format!(
        "POST\n/\n\n{canon_headers}\n{signed}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let scope = format!("{date}/us-east-1/ecs/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in ["us-east-1", "ecs", "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    let sig = hex::encode(hmac(&k, sts.as_bytes()));
    vec![
        ("x-amz-date".into(), amz),
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={KEY_ID}/{scope}, SignedHeaders={signed}, Signature={sig}"
            ),
        ),
    ]
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hello_web() -> Value {
    let text = std::fs::read_to_string(repo_root().join("examples/hello-web.json"))
        .expect("examples/hello-web.json");
    serde_json::from_str(&text).expect("example parses")
}

fn register_instance(s: &Server, cpu: i64, memory: i64) -> String {
    let v = s.ok(
        "RegisterContainerInstance",
        json!({"cluster": "batch", "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory}]}),
    );
    v["containerInstance"]["containerInstanceArn"]
        .as_str()
        .expect("arn")
        .to_owned()
}

fn remaining(s: &Server, arn: &str, name: &str) -> i64 {
    let v = s.ok(
        "DescribeContainerInstances",
        json!({"cluster": "batch", "containerInstances": [arn]}),
    );
    v["containerInstances"][0]["remainingResources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["integerValue"].as_i64())
        .expect("resource")
}

/// What bad input must leave untouched.
fn state_of(s: &Server) -> (Value, Value) {
    (
        s.ok("ListClusters", json!({}))["clusterArns"].clone(),
        s.ok("ListTaskDefinitions", json!({}))["taskDefinitionArns"].clone(),
    )
}

#[test]
fn api_bad_input_is_refused_and_changes_nothing() {
    let s = Server::start();
    let before = state_of(&s);
    assert_eq!(
        before.0,
        json!(["arn:aws:ecs:local:000000000000:cluster/default"])
    );
    let td = hello_web().to_string();
    // (target, body, clock skew in seconds, secret, status, error code)
    type Case<'a> = (String, Vec<u8>, i64, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            format!("{ECS}.RegisterTaskDefinition"),
            b"{\"family\": ".to_vec(),
            0,
            SECRET,
            400,
            "SerializationException",
        ),
        (
            format!("{ECS}.RegisterTaskDefinition"),
            br#"{"family": 5, "containerDefinitions": []}"#.to_vec(),
            0,
            SECRET,
            400,
            "SerializationException",
        ),
        (
            format!("{ECS}.CreateCluster"),
            br#"{"clusterName": "no spaces allowed"}"#.to_vec(),
            0,
            SECRET,
            400,
            "InvalidParameterException",
        ),
        (
            format!("{ECS}.CreateClusterz"),
            b"{}".to_vec(),
            0,
            SECRET,
            400,
            "UnknownOperationException",
        ),
        (
            format!("{ECS}.RegisterTaskDefinition"),
            td.clone().into_bytes(),
            0,
            "wrong-secret",
            403,
            "InvalidSignatureException",
        ),
        (
            format!("{ECS}.RegisterTaskDefinition"),
            td.clone().into_bytes(),
            -900,
            SECRET,
            403,
            "InvalidSignatureException",
        ),
        (
            format!("{ECS}.RegisterTaskDefinition"),
            vec![b' '; 2 * 1024 * 1024],
            0,
            SECRET,
            413,
            "RequestEntityTooLargeException",
        ),
    ];
    for (target, body, skew, secret, status, code) in cases {
        let (got, v) = s.signed(&target, &body, skew, secret);
        assert_eq!(
            (got, v["__type"].as_str().unwrap_or_default()),
            (status, code),
            "{target}: {v}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // A wrong type names the field.
    let (_, v) = s.ecs(
        "RunTask",
        json!({"taskDefinition": "hello-web", "count": "three"}),
    );
    assert!(
        v["message"].as_str().unwrap_or_default().contains("count"),
        "{v}"
    );
    // No signature at all.
    let (got, v) = s.raw(
        &[
            ("x-amz-target".into(), format!("{ECS}.ListClusters")),
            ("host".into(), s.addr.clone()),
        ],
        b"{}",
    );
    assert_eq!(
        (got, v["__type"].as_str().unwrap_or_default()),
        (403, "MissingAuthenticationTokenException")
    );
    assert_eq!(state_of(&s), before, "bad input changed the state");
}

#[test]
fn api_cluster_lifecycle() {
    let s = Server::start();
    let c = s.ok("CreateCluster", json!({"clusterName": "prod"}));
    assert_eq!(c["cluster"]["status"], "ACTIVE");
    let d = s.ok("DescribeClusters", json!({"clusters": ["prod", "ghost"]}));
    assert_eq!(d["clusters"][0]["clusterName"], "prod");
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    let arn = register_instance_in(&s, "prod");
    let (st, v) = s.ecs("DeleteCluster", json!({"cluster": "prod"}));
    assert_eq!(
        (st, v["__type"].as_str().unwrap_or_default()),
        (400, "ClusterContainsContainerInstancesException"),
        "{v}"
    );
    s.ok(
        "DeregisterContainerInstance",
        json!({"cluster": "prod", "containerInstance": arn}),
    );
    let gone = s.ok("DeleteCluster", json!({"cluster": "prod"}));
    assert_eq!(gone["cluster"]["status"], "INACTIVE");
    let (st, v) = s.ecs("DeleteCluster", json!({"cluster": "prod"}));
    assert_eq!(
        (st, v["__type"].as_str().unwrap_or_default()),
        (400, "ClusterNotFoundException")
    );
    let l = s.ok("ListClusters", json!({}));
    assert_eq!(l["clusterArns"].as_array().map(Vec::len), Some(1));
}

fn register_instance_in(s: &Server, cluster: &str) -> String {
    let v = s.ok(
        "RegisterContainerInstance",
        json!({"cluster": cluster, "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}]}),
    );
    v["containerInstance"]["containerInstanceArn"]
        .as_str()
        .expect("arn")
        .to_owned()
}

#[test]
fn api_task_definitions_register_describe_deregister() {
    let s = Server::start();
    let r1 = s.ok("RegisterTaskDefinition", hello_web());
    let r2 = s.ok("RegisterTaskDefinition", hello_web());
    assert_eq!(r1["taskDefinition"]["revision"], 1);
    assert_eq!(r2["taskDefinition"]["revision"], 2);
    assert!(
        r2["taskDefinition"]["registeredAt"].is_number(),
        "timestamps are epoch seconds"
    );
    let d = s.ok(
        "DescribeTaskDefinition",
        json!({"taskDefinition": "hello-web"}),
    );
    assert_eq!(d["taskDefinition"]["revision"], 2);
    assert_eq!(
        d["taskDefinition"]["containerDefinitions"][0]["portMappings"][0]["containerPort"],
        8080
    );
    s.ok(
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "hello-web:2"}),
    );
    let d = s.ok(
        "DescribeTaskDefinition",
        json!({"taskDefinition": "hello-web"}),
    );
    assert_eq!(d["taskDefinition"]["revision"], 1);
    let d = s.ok(
        "DescribeTaskDefinition",
        json!({"taskDefinition": "arn:aws:ecs:local:000000000000:task-definition/hello-web:2"}),
    );
    assert_eq!(d["taskDefinition"]["status"], "INACTIVE");
    let f = s.ok("ListTaskDefinitionFamilies", json!({}));
    assert_eq!(f["families"], json!(["hello-web"]));
    let mut bad = hello_web();
    bad["containerDefinitions"][0]["portMappings"][0]["containerPort"] = json!(70000);
    let (st, v) = s.ecs("RegisterTaskDefinition", bad);
    assert_eq!(st, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("containerDefinitions[0].portMappings[0].containerPort"),
        "{v}"
    );
}

#[test]
fn api_run_task_places_fails_stops_and_queues() {
    let s = Server::start();
    // A cluster of its own, so an agent registering this machine in `default` changes nothing here.
    s.ok("CreateCluster", json!({"clusterName": "batch"}));
    let mut td = hello_web();
    td["family"] = json!("job");
    td["containerDefinitions"][0]["cpu"] = json!(512);
    s.ok("RegisterTaskDefinition", td);
    // Nothing registered yet: a failure, not a task.
    let none = s.ok(
        "RunTask",
        json!({"cluster": "batch", "taskDefinition": "job"}),
    );
    assert_eq!(none["tasks"], json!([]));
    assert!(none["failures"][0]["reason"].as_str().is_some(), "{none}");
    let a = register_instance(&s, 1024, 2048);
    let r = s.ok(
        "RunTask",
        json!({"cluster": "batch", "taskDefinition": "job", "count": 2, "startedBy": "e2e"}),
    );
    assert_eq!(r["tasks"].as_array().map(Vec::len), Some(2), "{r}");
    let t0 = r["tasks"][0].clone();
    assert_eq!(t0["containerInstanceArn"], a.as_str());
    assert_eq!(t0["lastStatus"], "PENDING");
    assert_eq!(t0["desiredStatus"], "RUNNING");
    assert_eq!(t0["group"], "family:job");
    assert!(
        t0["containers"][0]["networkBindings"][0]["hostPort"]
            .as_u64()
            .is_some_and(|p| p > 0),
        "{t0}"
    );
    assert_eq!(remaining(&s, &a, "CPU"), 0);
    let full = s.ok(
        "RunTask",
        json!({"cluster": "batch", "taskDefinition": "job"}),
    );
    assert_eq!(full["failures"][0]["reason"], "RESOURCE:CPU", "{full}");
    // Queued instead of failed with berth's tag.
    let q = s.ok("RunTask", json!({"cluster": "batch", "taskDefinition": "job", "tags": [{"key": "berth:queue", "value": "true"}]}));
    let queued = q["tasks"][0]["taskArn"]
        .as_str()
        .expect("a queued task")
        .to_owned();
    assert!(q["tasks"][0]["containerInstanceArn"].is_null(), "{q}");
    // Stopping one frees its CPU, and the queued task takes it.
    let stopped = s.ok(
        "StopTask",
        json!({"cluster": "batch", "task": t0["taskArn"], "reason": "e2e"}),
    );
    assert_eq!(stopped["task"]["desiredStatus"], "STOPPED");
    assert_eq!(stopped["task"]["stopCode"], "UserInitiated");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = s.ok(
            "DescribeTasks",
            json!({"cluster": "batch", "tasks": [queued.as_str()]}),
        );
        if d["tasks"][0]["containerInstanceArn"] == a.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queued task was never placed: {d}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(remaining(&s, &a, "CPU"), 0);
    let listed = s.ok("ListTasks", json!({"cluster": "batch", "startedBy": "e2e"}));
    assert_eq!(
        listed["taskArns"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let d = s.ok(
        "DescribeTasks",
        json!({"cluster": "batch", "tasks": ["nope"]}),
    );
    assert_eq!(d["failures"][0]["reason"], "MISSING");
}

/// Runs a client script with the server's endpoint and credentials.
fn client(s: &Server, program: &str, args: &[&str]) -> std::process::Output {
    super::harness::aws_env(
        Command::new(program)
            .args(args)
            .current_dir(repo_root())
            .env("BERTH_ENDPOINT", format!("http://{}", s.addr)),
        KEY_ID,
        SECRET,
    )
    .output()
    .unwrap_or_else(|e| {
        panic!("cannot run {program} ({e}); .ci/run installs python3, boto3 and the AWS CLI")
    })
}

fn require(program: &str, args: &[&str], what: &str) {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{what} is missing: `{program} {}` failed; .ci/run installs it (python3 -m pip install awscli boto3)",
        args.join(" ")
    );
}

#[test]
fn boto3_client_works_against_berth() {
    require("python3", &["-c", "import boto3"], "boto3");
    let s = Server::start();
    let out = client(&s, "python3", &["tests/clients/test_boto3.py"]);
    assert!(
        out.status.success(),
        "tests/clients/test_boto3.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn aws_cli_works_against_berth() {
    require("aws", &["--version"], "the AWS CLI");
    let s = Server::start();
    let out = client(&s, "bash", &["tests/clients/aws_cli.sh"]);
    assert!(
        out.status.success(),
        "tests/clients/aws_cli.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn berth_client_commands_drive_the_api() {
    let s = Server::start();
    s.ok("CreateCluster", json!({"clusterName": "cli"}));
    let inst = register_instance_in(&s, "cli");
    let berth = |args: &[&str]| {
        let out = Command::new(berth_bin())
            .args(args)
            .current_dir(repo_root())
            .env("BERTH_ENDPOINT", format!("http://{}", s.addr))
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("BERTH_LOG", "warn")
            .output()
            .expect("berth runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = berth(&["clusters", "ls"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("NAME") && out.lines().any(|l| l.starts_with("cli ")),
        "{out}"
    );
    let (ok, out, err) = berth(&["register", "examples/hello-web.json"]);
    assert!(
        ok && out.trim().ends_with("task-definition/hello-web:1"),
        "{out}{err}"
    );
    let (ok, out, err) = berth(&[
        "run",
        "hello-web",
        "--cluster",
        "cli",
        "--count",
        "2",
        "--output",
        "json",
    ]);
    assert!(ok, "{err}");
    let run: Value = serde_json::from_str(out.trim()).expect("--output json is JSON");
    let task = run["tasks"][0]["taskArn"]
        .as_str()
        .expect("a task")
        .to_owned();
    let (ok, out, _) = berth(&["ps", "--cluster", "cli"]);
    assert!(
        ok && out.lines().count() == 3,
        "header and two tasks:\n{out}"
    );
    let (ok, out, err) = berth(&["stop", &task, "--cluster", "cli"]);
    assert!(ok && out.contains("STOPPED"), "{out}{err}");
    let (ok, out, _) = berth(&["ps", "--cluster", "cli", "--all"]);
    assert!(
        ok && out.lines().count() == 3 && out.contains("STOPPED"),
        "{out}"
    );
    let id = inst.rsplit('/').next().expect("id");
    let (ok, out, err) = berth(&["instances", "drain", id, "--cluster", "cli"]);
    assert!(ok && out.contains("DRAINING"), "{out}{err}");
    let (ok, _, err) = berth(&["run", "hello-web", "--cluster", "cli"]);
    assert!(
        !ok && err.contains("failure"),
        "a draining instance took a task: {err}"
    );
    let (ok, _, err) = berth(&["run", "hello-web", "--cluster", "nope"]);
    assert!(!ok && err.contains("ClusterNotFoundException"), "{err}");
}
