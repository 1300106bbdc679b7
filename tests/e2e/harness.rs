//! What the end-to-end tests with Docker share: the test image, and `berth up`
//! on a free port driven through the AWS CLI.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_agent::testing::{CleanupGuard, docker_or_skip, ensure_test_image, ensure_web_image};
use serde_json::Value;

use super::{berth_bin, text};

pub const KEY: &str = "AKIDE2EDOCKER";
pub const SECRET: &str = "e2e-docker-secret";

/// Builds the test image; `false` when Docker tests are skipped on purpose.
pub fn docker_ready() -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match docker_or_skip().await {
            Some(d) => {
                ensure_test_image(&d).await;
                true
            }
            None => false,
        }
    })
}

/// Builds the test image and the HTTP server image (`berth-test/web:1`);
/// `false` when Docker tests are skipped on purpose.
pub fn web_ready() -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match docker_or_skip().await {
            Some(d) => {
                ensure_test_image(&d).await;
                ensure_web_image(&d).await;
                true
            }
            None => false,
        }
    })
}

/// `berth up` on a free port with the real Docker; SIGTERM when dropped.
pub struct Up {
    child: std::process::Child,
    pub addr: String,
    /// Where `--metrics-listen` serves GET /metrics (`host:port`), if given.
    pub metrics: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Up {
    pub fn start() -> Up {
        Up::start_with(&[])
    }

    /// With extra environment, on a data directory of its own.
    pub fn start_with(env: &[(&str, &str)]) -> Up {
        Up::start_args(env, &[])
    }

    /// With extra environment and `berth up` arguments, on a data directory of its own.
    pub fn start_args(env: &[(&str, &str)], args: &[&str]) -> Up {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut up = Up::spawn(dir.path(), env, args);
        up._dir = Some(dir);
        up
    }

    /// On the data directory `dir`, which outlives it (to restart berth on it).
    pub fn start_in(dir: &Path) -> Up {
        Up::spawn(dir, &[], &[])
    }

    /// On the data directory `dir` with extra environment and `berth up` arguments.
    pub fn start_in_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Up {
        Up::spawn(dir, env, args)
    }

    /// As [`Up::start_in_with`], with berth's log (`BERTH_LOG`'s level, or
    /// `warn`) appended to the file `log` rather than dropped.
    pub fn start_in_logging(dir: &Path, env: &[(&str, &str)], args: &[&str], log: &Path) -> Up {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        Up::launch(dir, env, &Up::up_args(args), Stdio::from(file))
    }

    /// `berth server` (no agent of its own) on the data directory `dir`.
    pub fn server_in(dir: &Path) -> Up {
        Up::launch(
            dir,
            &[],
            &["server", "--listen", "127.0.0.1:0"],
            Stdio::null(),
        )
    }

    /// `berth server ARGS...` on the data directory `dir` with extra
    /// environment, its log (at `warn` unless `env` sets `BERTH_LOG`)
    /// appended to `dir/server.log`.
    pub fn server_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Up {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .expect("server log");
        let mut all = vec!["server", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Up::launch(dir, env, &all, Stdio::from(log))
    }

    /// `kill -9`, and waits for it.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Up {
        Up::launch(dir, env, &Up::up_args(args), Stdio::null())
    }

    /// `up` on a free port in the e2e zone, then `args`.
    fn up_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec![
            "up",
            "--listen",
            "127.0.0.1:0",
            "--availability-zone",
            "e2e-zone",
        ];
        all.extend_from_slice(args);
        all
    }

    /// `berth ARGS... --data-dir DIR` with the e2e key, once it listens;
    /// its log (at `warn` unless `env` sets `BERTH_LOG`) to `stderr`.
    fn launch(dir: &Path, env: &[(&str, &str)], args: &[&str], stderr: Stdio) -> Up {
        let mut child = Command::new(berth_bin())
            .env("BERTH_LOG", "warn")
            .envs(env.iter().copied())
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .env("BERTH_ACCESS_KEY_ID", KEY)
            .env("BERTH_SECRET_ACCESS_KEY", SECRET)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("berth up starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut metrics = None;
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("berth up ended before it listened");
            };
            if let Some(rest) = line.strip_prefix("berth: metrics on http://") {
                metrics = Some(rest.trim_end_matches("/metrics").to_owned());
            }
            if let Some(rest) = line
                .split("http://")
                .nth(1)
                .filter(|_| line.contains("running"))
            {
                break rest.split(';').next().expect("address").trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Up {
            child,
            addr,
            metrics,
            _dir: None,
        }
    }

    /// `aws ecs OP ARGS...` against this server, its JSON answer.
    pub fn aws(&self, args: &[&str]) -> Value {
        aws_answer(args, self.aws_output(args))
    }

    /// `aws ecs OP ARGS...` as it ended, for calls expected to fail.
    pub fn aws_output(&self, args: &[&str]) -> std::process::Output {
        aws_ecs_output(&format!("http://{}", self.addr), KEY, SECRET, args)
    }

    pub fn task(&self, arn: &str) -> Value {
        self.aws(&["describe-tasks", "--tasks", arn])["tasks"][0].clone()
    }

    /// The task once its lastStatus is `status`.
    pub fn until(&self, arn: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t = self.task(arn);
            if t["lastStatus"] == status {
                return t;
            }
            assert!(Instant::now() < deadline, "task never {status}: {t}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The container instance the agent registered, once it has.
    /// Waits for this berth's instance and returns a guard removing every
    /// container it starts, also when the test fails.
    pub fn guard_containers(&self) -> CleanupGuard {
        CleanupGuard::new("berth.container-instance", self.until_any_instance())
    }

    pub fn until_any_instance(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(arn) =
                self.aws(&["list-container-instances"])["containerInstanceArns"][0].as_str()
            {
                return arn.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the agent never registered this host"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The `n` container instances of `berth up --instances n`, once all
    /// registered and connected, sorted.
    pub fn until_instances(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listed = self.aws(&["list-container-instances"]);
            let mut arns: Vec<String> = listed["containerInstanceArns"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            arns.sort();
            if arns.len() == n
                && arns
                    .iter()
                    .all(|a| self.instance(a)["agentConnected"] == true)
            {
                return arns;
            }
            assert!(
                Instant::now() < deadline,
                "{n} instances never registered: {listed}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn instance(&self, arn: &str) -> Value {
        self.aws(&["describe-container-instances", "--container-instances", arn])["containerInstances"][0].clone()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// `aws ecs ARGS...` against `endpoint`, signed with `key` and `secret`, as
/// it ended.
pub fn aws_ecs_output(
    endpoint: &str,
    key: &str,
    secret: &str,
    args: &[&str],
) -> std::process::Output {
    aws_env(
        Command::new("aws")
            .args(["ecs", "--endpoint-url", endpoint, "--output", "json"])
            .args(args),
        key,
        secret,
    )
    .output()
    .unwrap_or_else(|e| panic!("cannot run the AWS CLI ({e}); .ci/run installs it"))
}

/// The JSON answer of the `aws ecs ARGS...` that ended as `out`, which must
/// have succeeded.
pub fn aws_answer(args: &[&str], out: std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "aws ecs {args:?}: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// What an AWS client (the CLI, boto3, a script of them) needs to talk to a
/// berth with this key, and nothing from the user's own AWS setup.
pub fn aws_env<'a>(c: &'a mut Command, key: &str, secret: &str) -> &'a mut Command {
    c.env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", "local")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
}
