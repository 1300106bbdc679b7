//! Connections that hold on: a slowloris, an idle connection, a body
//! shorter than its Content-Length, more connections than the cap; and the
//! startup lines that must not repeat the secret.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{read_answer, signed_head};
use crate::api::{ECS, Server};
use crate::berth_bin;

/// Whether the server closed `c` within `wait`, sending `drip` one byte at
/// a time every 200 ms meanwhile (a slowloris); an empty drip only waits.
fn closed_within(c: &mut TcpStream, drip: &[u8], wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut drip = drip.iter().cycle();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        if let Some(b) = drip.next()
            && c.write_all(&[*b]).is_err()
        {
            return true;
        }
        match std::io::Read::read(c, &mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// A slowloris (a header a byte at a time, never finished) and an idle
/// connection are both closed once the header timeout passes.
#[test]
fn hostile_slowloris_and_idle_connections_are_dropped() {
    let s = Server::start_args(&["--header-timeout", "2"]);
    let mut slow = TcpStream::connect(&s.addr).expect("connect");
    slow.write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")
        .expect("send");
    let mut idle = TcpStream::connect(&s.addr).expect("connect");
    assert!(
        closed_within(
            &mut slow,
            b"x-slow: aaaaaaaaaaaaaaaaaaaaa",
            Duration::from_secs(10)
        ),
        "a slowloris kept its connection past a 2 s header timeout"
    );
    assert!(
        closed_within(&mut idle, b"", Duration::from_secs(10)),
        "an idle connection stayed open past a 2 s header timeout"
    );
    // A kept-alive connection that goes idle after an answer is closed too.
    let mut kept = TcpStream::connect(&s.addr).expect("connect");
    let body = b"{}";
    let head = signed_head(&s.addr, &format!("{ECS}.ListClusters"), body);
    kept.write_all(head.as_bytes()).expect("send");
    kept.write_all(body).expect("send");
    let answer = read_answer(&mut kept, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed_within(&mut kept, b"", Duration::from_secs(10)),
        "an idle kept-alive connection stayed open past the header timeout"
    );
}

/// A signed request whose body is shorter than its Content-Length is
/// answered 408 and closed once the body timeout passes.
#[test]
fn hostile_a_short_body_is_dropped_at_the_body_timeout() {
    let s = Server::start_args(&["--body-timeout", "2"]);
    let body = json!({"clusterName": "never-sent-whole"}).to_string();
    let head = signed_head(&s.addr, &format!("{ECS}.CreateCluster"), body.as_bytes());
    let mut c = TcpStream::connect(&s.addr).expect("connect");
    c.write_all(head.as_bytes()).expect("send the head");
    c.write_all(&body.as_bytes()[..body.len() / 2])
        .expect("send half the body");
    let answer = read_answer(&mut c, Duration::from_secs(15));
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("RequestTimeoutException"),
        "a short body held its connection: {answer:?}"
    );
    assert!(
        closed_within(&mut c, b"", Duration::from_secs(5)),
        "the connection stayed open after the body timeout"
    );
    let listed = s.ok("ListClusters", json!({}));
    assert!(!listed.to_string().contains("never-sent-whole"), "{listed}");
}

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// Beyond `--max-connections`, connections wait in the backlog instead of
/// taking descriptors, and a signed request still gets its answer once the
/// idle ones time out.
#[test]
fn hostile_connections_beyond_the_cap_wait_and_the_api_answers() {
    let s = Server::start_args(&["--max-connections", "8", "--header-timeout", "2"]);
    // Let the agent settle its own sockets first.
    std::thread::sleep(Duration::from_secs(1));
    let baseline = open_fds(s.pid());
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&s.addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = open_fds(s.pid());
    assert!(
        during <= baseline + 8 + 6,
        "40 idle connections took {} descriptors past a cap of 8",
        during - baseline.min(during)
    );
    // Behind the idle ones in the backlog, a real request is answered as
    // the header timeout frees their places.
    let listed = s.ok("ListClusters", json!({}));
    assert!(listed["clusterArns"].is_array(), "{listed}");
    drop(idle);
}

/// `berth server` on `dir` with no key in its environment: the child, its
/// address and what it printed up to its last startup line.
fn start_server(dir: &std::path::Path) -> (std::process::Child, String, String) {
    let mut child = Command::new(berth_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env_remove("BERTH_ACCESS_KEY_ID")
        .env_remove("BERTH_SECRET_ACCESS_KEY")
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("berth server starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut said = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let done = line.contains("list-clusters");
        said.push(line);
        if done {
            break;
        }
    }
    // Keep draining, so its last line finds the pipe open.
    std::thread::spawn(move || for _ in lines {});
    let said = said.join("\n");
    let addr = said
        .split("http://")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no address in {said}"))
        .to_owned();
    (child, addr, said)
}

fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The key in `dir`'s credentials file: (id, secret).
fn key_in(dir: &std::path::Path) -> (String, String) {
    let creds: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("credentials")).expect("the credentials file"),
    )
    .expect("JSON");
    (
        creds["access_key_id"]
            .as_str()
            .expect("a key id")
            .to_owned(),
        creds["secret_access_key"]
            .as_str()
            .expect("a secret")
            .to_owned(),
    )
}

/// The first start of a data directory prints the secret it created; the
/// next start names the key and the file, never the secret.
#[test]
fn hostile_the_secret_is_printed_only_when_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, _, first) = start_server(dir.path());
    stop(child);
    let (key, secret) = key_in(dir.path());
    assert!(
        first.contains(&format!("export AWS_SECRET_ACCESS_KEY={secret}")),
        "{first}"
    );
    let (child, _, second) = start_server(dir.path());
    stop(child);
    assert!(
        !second.contains(&secret),
        "the secret was printed again:\n{second}"
    );
    assert!(
        second.contains(&format!("export AWS_ACCESS_KEY_ID={key}")),
        "{second}"
    );
    assert!(
        second.contains(&dir.path().join("credentials").display().to_string()),
        "{second}"
    );
}

/// `berth credentials rotate` writes a new key: the running server keeps
/// accepting the old one; after a restart only the new one works.
#[test]
fn hostile_credentials_rotate_takes_effect_at_restart() {
    use crate::harness::aws_ecs_output;
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, addr, _) = start_server(dir.path());
    let (old_key, old_secret) = key_in(dir.path());
    let out = Command::new(berth_bin())
        .args(["credentials", "rotate", "--data-dir"])
        .arg(dir.path())
        .env_remove("BERTH_ACCESS_KEY_ID")
        .output()
        .expect("berth credentials rotate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (new_key, new_secret) = key_in(dir.path());
    assert_ne!(new_key, old_key);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("export AWS_SECRET_ACCESS_KEY={new_secret}")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let calls = |addr: &str, key: &str, secret: &str| {
        aws_ecs_output(&format!("http://{addr}"), key, secret, &["list-clusters"])
            .status
            .success()
    };
    assert!(
        calls(&addr, &old_key, &old_secret),
        "the old key stopped before a restart"
    );
    stop(child);
    let (child, addr, _) = start_server(dir.path());
    assert!(
        calls(&addr, &new_key, &new_secret),
        "the new key is refused after a restart"
    );
    assert!(
        !calls(&addr, &old_key, &old_secret),
        "the old key still works after a restart"
    );
    stop(child);
}
