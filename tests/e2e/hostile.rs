//! The API under hostile clients (issue 12): bodies refused before they
//! are read, connections capped and timed out, bounded error messages,
//! the secret printed only when created, requests without Host, throttling
//! and GET /health. Each test drives the real binary over TCP.

mod connections;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{ECS, SECRET, Server, sign};

/// A field of /proc/PID/status, in its unit (kB for VmRSS).
pub(crate) fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Reads what the server sends until it closes or `wait` passes.
pub(crate) fn read_answer(s: &mut TcpStream, wait: Duration) -> String {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // The head and a small JSON body are all these tests wait for.
                if String::from_utf8_lossy(&out).contains("\r\n\r\n{") && out.ends_with(b"}") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Forty unsigned InstallPolicy requests declaring 16 MiB bodies are
/// answered 403 before their bodies are sent, the bodies are not taken in
/// (the server closes; sending the whole 16 MiB fails), and the server's
/// memory stays about where it was (it used to buffer every body: +600 MB).
#[test]
fn hostile_unsigned_large_bodies_are_refused_unread() {
    let s = Server::start();
    let before = proc_status(s.pid(), "VmRSS");
    let body_len = 16 * 1024 * 1024;
    let threads: Vec<_> = (0..40)
        .map(|_| {
            let addr = s.addr.clone();
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(&addr).expect("connect");
                let head = format!(
                    "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-amz-json-1.1\r\n\
                     x-amz-target: Berth_20261125.InstallPolicy\r\ncontent-length: {body_len}\r\n\r\n"
                );
                c.write_all(head.as_bytes()).expect("send the head");
                // Answered with no byte of the body sent.
                let answer = read_answer(&mut c, Duration::from_secs(10));
                let chunk = vec![b'A'; 64 * 1024];
                let mut sent = 0;
                while sent < body_len && c.write_all(&chunk).is_ok() {
                    sent += chunk.len();
                }
                (answer, sent)
            })
        })
        .collect();
    for t in threads {
        let (answer, sent) = t.join().expect("client thread");
        assert!(
            answer.starts_with("HTTP/1.1 403") && answer.contains("MissingAuthenticationToken"),
            "not refused before the body: {answer:?}"
        );
        assert!(
            sent < body_len,
            "the server took in a whole 16 MiB unsigned body"
        );
    }
    let after = proc_status(s.pid(), "VmRSS");
    assert!(
        after < before + 150 * 1024,
        "RSS grew from {before} kB to {after} kB over 40 unsigned 16 MiB bodies"
    );
    // And the API still answers.
    s.ok("ListClusters", json!({}));
}

/// A 1 MB name is refused with a message that quotes a bounded prefix of
/// it; the whole answer stays a few KB (it used to repeat the megabyte).
#[test]
fn hostile_huge_names_get_small_answers() {
    let s = Server::start();
    let name = "x y".repeat(350_000);
    for (op, body) in [
        ("CreateCluster", json!({"clusterName": name})),
        (
            "RegisterTaskDefinition",
            json!({"family": name, "containerDefinitions": [{"name": name, "image": "i", "memory": 16}]}),
        ),
        ("RunTask", json!({"taskDefinition": "t", "count": name})),
    ] {
        let (status, v) = s.ecs(op, body);
        assert!(status >= 400, "{op}: {v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{op}: {v}");
        assert!(
            v.to_string().len() < 5_000,
            "{op}: a {} byte answer to a 1 MB input",
            v.to_string().len()
        );
    }
}

/// A request without Host (HTTP/1.0 needs none) is a 400 saying so, not a
/// signature failure.
#[test]
fn hostile_a_request_without_host_is_a_400_naming_it() {
    let s = Server::start();
    for version in ["HTTP/1.0", "HTTP/1.1"] {
        let mut c = TcpStream::connect(&s.addr).expect("connect");
        let req = format!(
            "POST / {version}\r\ncontent-type: application/x-amz-json-1.1\r\n\
             x-amz-target: {ECS}.ListClusters\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        );
        c.write_all(req.as_bytes()).expect("send");
        let answer = read_answer(&mut c, Duration::from_secs(10));
        assert!(
            answer.contains(" 400 ") && answer.contains("MissingHostHeaderException"),
            "{version}: {answer}"
        );
        assert!(answer.contains("no Host header"), "{answer}");
    }
}

/// Over a small configured rate, a burst of writes meets
/// ThrottlingException (HTTP 400, "Rate exceeded"), reads keep their own
/// bucket, and boto3's retries carry a loop of writes through.
#[test]
fn hostile_bursts_are_throttled_and_boto3_retries() {
    let s = Server::start_args(&["--api-rate", "write=2:3"]);
    let answers: Vec<(u16, Value)> = (0..10)
        .map(|i| s.ecs("CreateCluster", json!({"clusterName": format!("t{i}")})))
        .collect();
    let throttled: Vec<&(u16, Value)> = answers.iter().filter(|(st, _)| *st != 200).collect();
    assert!(
        !throttled.is_empty(),
        "10 writes at once passed a 2/s limit"
    );
    for (status, v) in &throttled {
        assert_eq!(*status, 400, "{v}");
        assert_eq!(v["__type"], "ThrottlingException", "{v}");
        assert_eq!(v["message"], "Rate exceeded", "{v}");
    }
    // Reads have their own bucket.
    s.ok("ListClusters", json!({}));
    let script = r#"
import os, boto3
ecs = boto3.client("ecs", endpoint_url=os.environ["BERTH_ENDPOINT"])
retries = 0
for i in range(8):
    r = ecs.create_cluster(clusterName=f"boto{i}")
    retries += r["ResponseMetadata"]["RetryAttempts"]
print(retries)
"#;
    let out = crate::harness::aws_env(
        std::process::Command::new("python3")
            .args(["-c", script])
            .env("BERTH_ENDPOINT", format!("http://{}", s.addr)),
        crate::api::KEY_ID,
        SECRET,
    )
    .output()
    .expect("python3 runs");
    assert!(
        out.status.success(),
        "boto3 did not get through the throttle: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let retries: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the retry count");
    assert!(retries > 0, "8 writes at 2/s went through without a retry");
    let listed = s.ok("ListClusters", json!({}));
    for i in 0..8 {
        assert!(
            listed.to_string().contains(&format!("cluster/boto{i}\"")),
            "{listed}"
        );
    }
}

/// GET /health, unauthenticated: 200 with the store writable, the local
/// agent connected and the scheduler loops alive.
#[test]
fn hostile_health_reports_store_agent_and_schedulers() {
    let s = Server::start();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, report) = loop {
        let (status, report) = health(&s.addr);
        if status == 200 || Instant::now() > deadline {
            break (status, report);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["healthy"], true, "{report}");
    assert_eq!(report["store"]["writable"], true, "{report}");
    assert_eq!(report["agents"][0]["connected"], true, "{report}");
    let loops = report["schedulers"].as_array().expect("schedulers");
    assert_eq!(loops.len(), 3, "{report}");
    assert!(loops.iter().all(|l| l["alive"] == true), "{report}");
}

/// `GET /health` on `addr`: (status, JSON report).
pub(crate) fn health(addr: &str) -> (u16, Value) {
    let mut c = TcpStream::connect(addr).expect("connect");
    let req = format!("GET /health HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    c.write_all(req.as_bytes()).expect("send");
    let answer = read_answer(&mut c, Duration::from_secs(10));
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line: {head}"));
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?}: {e}")),
    )
}

/// A signed request's head and the body it signs, for tests that send
/// less than they declare.
pub(crate) fn signed_head(addr: &str, target: &str, body: &[u8]) -> String {
    let headers = vec![
        (
            "content-type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        ),
        ("host".to_owned(), addr.to_owned()),
        ("x-amz-target".to_owned(), target.to_owned()),
    ];
    let extra = sign(SECRET, &headers, body, chrono::Utc::now());
    let mut head = format!("POST / HTTP/1.1\r\ncontent-length: {}\r\n", body.len());
    for (n, v) in headers.iter().chain(&extra) {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}
