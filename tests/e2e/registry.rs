//! Images from a private registry, and privileged containers, through
//! `berth up`, the `berth` client and the AWS CLI on the real Docker.
//!
//! The registry is Debian's `docker-registry` (distribution), started here
//! on a loopback port with basic auth (a bcrypt `htpasswd` file); Docker
//! speaks plain HTTP to registries on 127.0.0.0/8 without configuration.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_agent::testing::TEST_IMAGE;
use serde_json::{Value, json};

use super::harness::{KEY, SECRET, Up, docker_ready};
use super::{berth_bin, text};

const USER: &str = "berth-e2e";
const PASSWORD: &str = "s3cret-e2e-pw";

/// A `docker-registry` with basic auth on a free loopback port, holding the
/// test image as `127.0.0.1:PORT/berth/test:1`; killed (and the image's
/// local copies removed) when dropped.
struct Registry {
    child: Child,
    image: String,
    _dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let htpasswd = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).expect("htpasswd file");
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: berth-e2e\n    path: {pw}\n",
            root = dir.path().join("data").display(),
            pw = dir.path().join("htpasswd").display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts (apt-get install docker-registry)");
        let registry = Registry {
            child,
            image: format!("127.0.0.1:{port}/berth/test:1"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        registry.push_test_image(port);
        registry
    }

    /// Pushes the test image with the right login (a Docker config of its
    /// own, so the host's stays untouched), then removes the local tag so
    /// a task must pull it.
    fn push_test_image(&self, port: u16) {
        let config = self._dir.path().join("docker-config");
        let docker = || {
            let mut c = Command::new("docker");
            c.env("DOCKER_CONFIG", &config);
            c
        };
        run(docker().args(["tag", TEST_IMAGE, &self.image]));
        let mut login = docker()
            .args([
                "login",
                &format!("127.0.0.1:{port}"),
                "--username",
                USER,
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker login");
        login
            .stdin
            .take()
            .expect("stdin")
            .write_all(PASSWORD.as_bytes())
            .expect("password written");
        let out = login.wait_with_output().expect("docker login ends");
        assert!(out.status.success(), "docker login: {}", text(&out.stderr));
        run(docker().args(["push", &self.image]));
        run(docker().args(["logout", &format!("127.0.0.1:{port}")]));
        self.remove_local_image();
    }

    fn remove_local_image(&self) {
        let _ = Command::new("docker")
            .args(["rmi", "--force", &self.image])
            .output();
    }

    fn cached(&self) -> bool {
        Command::new("docker")
            .args(["image", "inspect", &self.image])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.remove_local_image();
    }
}

/// `berth ARGS...` against `up`, with `stdin` on its standard input.
fn berth_at(up: &Up, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(berth_bin())
        .args(args)
        .env("BERTH_ENDPOINT", format!("http://{}", up.addr))
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("BERTH_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin written");
    child.wait_with_output().expect("berth ends")
}

fn family(name: &str) -> String {
    format!("e2e-reg-{name}-{}", std::process::id())
}

/// Registers a task definition of one container running `image` (with the
/// stored credential `credential`, if any) and runs one task of it.
fn run_image(up: &Up, name: &str, image: &str, credential: Option<&str>) -> String {
    let mut c = json!({"name": "app", "image": image, "memory": 16, "stopTimeout": 1,
        "command": ["sleep", "60"]});
    if let Some(cred) = credential {
        c["repositoryCredentials"] = json!({"credentialsParameter": cred});
    }
    let td = json!({"family": family(name), "containerDefinitions": [c]});
    up.aws(&[
        "register-task-definition",
        "--cli-input-json",
        &td.to_string(),
    ]);
    let run = up.aws(&["run-task", "--task-definition", &family(name)]);
    run["tasks"][0]["taskArn"]
        .as_str()
        .unwrap_or_else(|| panic!("no task: {run}"))
        .to_owned()
}

/// The stopped task's reason, checked to be a pull failure of `image`
/// that says what the registry answered.
fn pull_failure(up: &Up, arn: &str, image: &str) -> String {
    let t = up.until(arn, "STOPPED");
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t}");
    let reason = t["stoppedReason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.starts_with("CannotPullContainerError: "), "{reason}");
    assert!(reason.contains(image), "{reason}");
    let lower = reason.to_lowercase();
    assert!(
        [
            "unauthorized",
            "authentication required",
            "no basic auth credentials"
        ]
        .iter()
        .any(|w| lower.contains(w)),
        "the registry's refusal is not in: {reason}"
    );
    assert!(!reason.contains(PASSWORD), "{reason}");
    // The container says why too.
    let said = t["containers"][0]["reason"].as_str().unwrap_or_default();
    assert!(said.starts_with("CannotPullContainerError: "), "{t}");
    reason
}

#[test]
fn a_private_image_is_pulled_with_its_stored_credential_only() {
    if !docker_ready() {
        return;
    }
    let registry = Registry::start();
    let image = registry.image.clone();
    assert!(!registry.cached(), "the pushed tag is still cached");
    let up = Up::start();
    let _guard = up.guard_containers();

    // Stored through the client; the password is read from stdin, never shown.
    for (name, pw) in [("reg-good", PASSWORD), ("reg-bad", "not-the-password")] {
        let out = berth_at(
            &up,
            &[
                "secrets",
                "put",
                name,
                "--username",
                USER,
                "--password-stdin",
            ],
            &format!("{pw}\n"),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(!text(&out.stdout).contains(pw), "{}", text(&out.stdout));
    }
    let listed = berth_at(&up, &["secrets", "ls", "--output", "json"], "");
    let listed = text(&listed.stdout);
    let v: Value = serde_json::from_str(&listed).expect("JSON");
    let names: Vec<&str> = v["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["reg-bad", "reg-good"], "{listed}");
    assert!(!listed.contains(PASSWORD) && !listed.contains("not-the-password"));

    // A wrong password: the registry's 401, named with the image.
    let wrong = run_image(&up, "wrong", &image, Some("reg-bad"));
    let reason = pull_failure(&up, &wrong, &image);
    eprintln!("wrong credential: {reason}");
    // `berth ps` shows why it stopped.
    let ps = berth_at(&up, &["ps", "--all"], "");
    let shown = text(&ps.stdout);
    assert!(
        shown.lines().next().is_some_and(|h| h.ends_with("REASON")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("CannotPullContainerError: pulling image {image}")),
        "{shown}"
    );
    // No credential at all: refused alike.
    let none = run_image(&up, "none", &image, None);
    let reason = pull_failure(&up, &none, &image);
    eprintln!("no credential: {reason}");
    assert!(!registry.cached());

    // The host's own `docker login` serves a container that names no credential.
    host_login_pulls(&registry);
    registry.remove_local_image();

    // The right one: pulled, and the task runs.
    let good = run_image(&up, "good", &image, Some("reg-good"));
    let t = up.until(&good, "RUNNING");
    assert_eq!(t["containers"][0]["image"], image.as_str(), "{t}");
    assert!(t["containers"][0].get("reason").is_none(), "{t}");
    assert!(registry.cached(), "the image was not pulled");
    up.aws(&["stop-task", "--task", &good]);
    up.until(&good, "STOPPED");

    // A secret removed is gone from the list; a definition naming an
    // unknown one is refused by name.
    let rm = berth_at(&up, &["secrets", "rm", "reg-bad"], "");
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    let td = json!({"family": family("gone"), "containerDefinitions": [{"name": "app",
        "image": image, "memory": 16, "repositoryCredentials": {"credentialsParameter": "reg-bad"}}]});
    let out = up.aws_output(&[
        "register-task-definition",
        "--cli-input-json",
        &td.to_string(),
    ]);
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(said.contains("ClientException"), "{said}");
    assert!(
        said.contains(
            "containerDefinitions[0].repositoryCredentials.credentialsParameter: no secret named `reg-bad`"
        ),
        "{said}"
    );
}

/// A `berth up` whose Docker config (`DOCKER_CONFIG`) holds the
/// registry's login, as `docker login` writes it, runs the private image
/// with no `repositoryCredentials`; then the task is stopped.
fn host_login_pulls(registry: &Registry) {
    use base64::Engine;
    let dir = tempfile::tempdir().expect("tempdir");
    let host = registry.image.split('/').next().expect("registry host");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = json!({"auths": {host: {"auth": auth}}});
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("config.json");
    let dir_s = dir.path().to_str().expect("utf-8 path");
    let up = Up::start_with(&[("DOCKER_CONFIG", dir_s)]);
    let _guard = up.guard_containers();
    let arn = run_image(&up, "hostlogin", &registry.image, None);
    up.until(&arn, "RUNNING");
    up.aws(&["stop-task", "--task", &arn]);
    up.until(&arn, "STOPPED");
}

#[test]
fn a_remote_agent_gets_the_credential_from_its_server() {
    if !docker_ready() {
        return;
    }
    let registry = Registry::start();
    let server_dir = tempfile::tempdir().expect("tempdir");
    let agent_dir = tempfile::tempdir().expect("tempdir");
    let server = Up::server_in(server_dir.path());
    // `berth agent` over HTTP: the credential is in the server's store only.
    let mut agent = Command::new(berth_bin())
        .args(["agent", "--server", &format!("http://{}", server.addr)])
        .arg("--data-dir")
        .arg(agent_dir.path())
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("berth agent starts");
    let instance = server.until_any_instance();
    let _guard = berth_agent::testing::CleanupGuard::new("berth.container-instance", instance);
    let put = berth_at(
        &server,
        &[
            "secrets",
            "put",
            "reg",
            "--username",
            USER,
            "--password-stdin",
        ],
        PASSWORD,
    );
    assert!(put.status.success(), "{}", text(&put.stderr));
    let arn = run_image(&server, "remote", &registry.image, Some("reg"));
    let t = server.until(&arn, "RUNNING");
    assert_eq!(t["containers"][0]["image"], registry.image.as_str(), "{t}");
    server.aws(&["stop-task", "--task", &arn]);
    server.until(&arn, "STOPPED");
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
}

#[test]
fn image_pull_behavior_always_fails_a_task_whose_pull_fails_even_when_cached() {
    if !docker_ready() {
        return;
    }
    // The locally built test image is cached but in no registry: `always`
    // must try the pull and fail; the default (prefer-cached) runs it.
    let up = Up::start_args(&[], &["--image-pull-behavior", "always"]);
    let _guard = up.guard_containers();
    let local = format!("127.0.0.1:{}/berth/local:1", free_port());
    run(Command::new("docker").args(["tag", TEST_IMAGE, &local]));
    let arn = run_image(&up, "always", &local, None);
    let t = up.until(&arn, "STOPPED");
    let reason = t["stoppedReason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(&format!(
            "CannotPullContainerError: pulling image {local} failed: "
        )),
        "{t}"
    );
    let cached = Up::start();
    let _guard2 = cached.guard_containers();
    let arn = run_image(&cached, "cached", &local, None);
    cached.until(&arn, "RUNNING");
    cached.aws(&["stop-task", "--task", &arn]);
    cached.until(&arn, "STOPPED");
    let _ = Command::new("docker").args(["rmi", &local]).output();
}

fn privileged_task(up: &Up, name: &str) -> Value {
    let td = json!({"family": family(name), "containerDefinitions": [{"name": "app",
        "image": TEST_IMAGE, "memory": 16, "privileged": true, "command": ["sleep", "60"]}]});
    up.aws(&[
        "register-task-definition",
        "--cli-input-json",
        &td.to_string(),
    ]);
    up.aws(&["run-task", "--task-definition", &family(name)])
}

#[test]
fn privileged_containers_run_only_where_the_agent_allows_them() {
    if !docker_ready() {
        return;
    }
    // Without --allow-privileged: registered, but not placed (ATTRIBUTE).
    let plain = Up::start();
    let _guard = plain.guard_containers();
    let run = privileged_task(&plain, "plain");
    assert_eq!(run["tasks"], json!([]), "{run}");
    assert_eq!(run["failures"][0]["reason"], "ATTRIBUTE", "{run}");
    drop(plain);

    let allowed = Up::start_args(&[], &["--allow-privileged"]);
    let _guard = allowed.guard_containers();
    let arn = allowed.until_any_instance();
    let attrs = allowed.instance(&arn)["attributes"].to_string();
    assert!(
        attrs.contains("ecs.capability.privileged-container"),
        "{attrs}"
    );
    let run = privileged_task(&allowed, "allowed");
    let task = run["tasks"][0]["taskArn"]
        .as_str()
        .expect("a task")
        .to_owned();
    // Placed here. A host that may grant every capability runs it
    // privileged; one that may not (berth's CI runs inside a container)
    // has Docker refuse to start exactly what a privileged container needs,
    // after the agent created it: either way the agent asked for it.
    let t = wait_started_or_refused(&allowed, &task);
    if t["lastStatus"] == "RUNNING" {
        let id = task.rsplit('/').next().expect("id");
        let inspect = Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{.HostConfig.Privileged}}",
                &format!("berth-{id}-app"),
            ])
            .output()
            .expect("docker inspect");
        assert_eq!(text(&inspect.stdout).trim(), "true");
    } else {
        let reason = t["stoppedReason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("CannotStartContainerError: container app: ")
                && reason.contains("caps"),
            "{t}"
        );
    }
    allowed.aws(&["stop-task", "--task", &task]);
    allowed.until(&task, "STOPPED");
}

/// The task once it is RUNNING or STOPPED.
fn wait_started_or_refused(up: &Up, arn: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = up.task(arn);
        if t["lastStatus"] == "RUNNING" || t["lastStatus"] == "STOPPED" {
            return t;
        }
        assert!(Instant::now() < deadline, "task never started: {t}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_pull_past_its_timeout_stops_the_task() {
    if !docker_ready() {
        return;
    }
    // A "registry" that takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = silent.local_addr().expect("address").port();
    let up = Up::start_args(&[], &["--image-pull-timeout", "2"]);
    let _guard = up.guard_containers();
    let image = format!("127.0.0.1:{port}/berth/never:1");
    let arn = run_image(&up, "timeout", &image, None);
    let t = up.until(&arn, "STOPPED");
    assert_eq!(
        t["stoppedReason"],
        format!(
            "CannotPullContainerError: pulling image {image} failed: no answer within the pull timeout of 2 s (berth agent --image-pull-timeout)"
        ),
        "{t}"
    );
    drop(silent);
}
