//! The chaos loop (issue 12): `berth up` SIGKILLed every few seconds while
//! a client streams RunTask and a service rolls between two revisions, its
//! data directory's file system filled and freed, its Docker daemon killed
//! and started again. Then, after a last restart and a settle period:
//!
//! - no acknowledged write lost: every task whose RunTask was answered 200
//!   is known to DescribeTasks, and has stopped (its job ran, or was cut);
//! - no task twice: no container of a task is started twice (every
//!   `start` event of the daemon is recorded while the loop runs), and no
//!   two containers run for one task;
//! - no leak: every container of berth belongs to a task the store holds
//!   as live, and every task the store holds RUNNING has its container;
//! - every deployment completes: the last deployment of the service is
//!   COMPLETED at its desired count, on the last revision.
//!
//! The Docker daemon is one of its own (a test host of `hosts/lab.rs`: its
//! own data root, exec root, socket and pidfile, in a network namespace),
//! given to `berth up` as `DOCKER_HOST`: it is killed (SIGKILL) and started
//! again, which the shared daemon other tests run on must never be. The
//! data directory is on a tmpfs the test mounts; a filler file fills it and
//! is removed. Both need root, as the multi-host and full-disk tests do.
//!
//! `BERTH_CHAOS_SECS` is the time budget of the rounds (default 60: CI's
//! short run; docs/security.md records a long one), `BERTH_CHAOS_SEED` the
//! seed of the schedule of faults and of the client's choices (default:
//! from the clock; printed, as is every round's plan, so a failing run can
//! be replayed: the plan is the seed's, the interleaving with berth's own
//! timing is not).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_agent::testing::TEST_IMAGE;
use berth_agent::{LABEL_CONTAINER_NAME, LABEL_TASK_ARN};
use berth_client::{CallError, Client, Credentials};
use serde_json::{Value, json};

use crate::api::ECS;
use crate::full_disk::{fill, mount_tmpfs};
use crate::harness::{KEY, SECRET, Up};
use crate::hosts::lab::{Host, hosts_ready};

const SERVICE: &str = "chaos";
const SERVICE_FAMILY: &str = "chaos-svc";
const JOB_FAMILY: &str = "chaos-job";
const DESIRED: u64 = 3;

#[test]
fn chaos_loses_no_ack_runs_no_task_twice_leaks_nothing_and_completes_deployments() {
    if !hosts_ready() {
        return;
    }
    let budget = Duration::from_secs(env_u64("BERTH_CHAOS_SECS").unwrap_or(60));
    let seed = env_u64("BERTH_CHAOS_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() % 10_000)
            .unwrap_or(1)
    });
    println!(
        "chaos: BERTH_CHAOS_SEED={seed} BERTH_CHAOS_SECS={}",
        budget.as_secs()
    );

    // Dropped in reverse: berth, then the daemon, then the tmpfs.
    let (mnt, _unmount) = mount_tmpfs("96m");
    let mut host = Host::start(&[TEST_IMAGE]);
    let log = std::env::temp_dir().join(format!("berth-chaos-{}.log", std::process::id()));
    let mut berth = Berth::start(mnt.path().join("data"), host.docker_host(), log.clone());
    let api = berth.api();

    let events = StartEvents::follow(host.docker_host());
    set_up(&api);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let storm = Storm::start(berth.endpoint.clone(), acked.clone(), seed);

    let mut rng = Rng(seed);
    let mut f = Figures::default();
    let mut revision = 1;
    let started = Instant::now();
    while started.elapsed() < budget {
        f.rounds += 1;
        revision = 3 - revision;
        round(
            &mut rng,
            &mut f,
            &mut berth,
            &mut host,
            &api,
            revision,
            mnt.path(),
        );
    }
    let storm = storm.stop();
    println!("chaos: the rounds are over; a last restart, then settling");
    berth.kill_and_restart(Duration::ZERO);
    f.kills += 1;

    let acked = acked.lock().expect("acked").clone();
    let settled = settle(&api, &host, &acked, revision);
    let starts = events.stop();
    println!(
        "chaos: {f:?}; {storm:?}; {} acknowledged tasks",
        acked.len()
    );
    let context = format!("seed {seed}, berth's log in {}", log.display());
    check(&api, &host, &acked, &starts, &settled, revision, &context);
    println!("chaos: {}", settled.outcomes);
    let _ = std::fs::remove_file(&log);
}

/// One round of faults, its plan drawn from `rng` and printed.
fn round(
    rng: &mut Rng,
    f: &mut Figures,
    berth: &mut Berth,
    host: &mut Host,
    api: &Api,
    revision: u32,
    mnt: &Path,
) {
    let before_fill = rng.millis(200, 2_500);
    let filling = rng
        .chance(0.35)
        .then(|| (rng.millis(300, 2_500), rng.chance(0.5)));
    let dockerd = rng.chance(0.25).then(|| rng.millis(200, 2_000));
    let before_kill = rng.millis(200, 2_500);
    let kill = rng.chance(0.85).then(|| rng.millis(0, 1_500));
    println!(
        "chaos: round {}: revision {revision}, wait {before_fill:?}, fill {filling:?}, \
         dockerd down {dockerd:?}, wait {before_kill:?}, SIGKILL down {kill:?}",
        f.rounds
    );
    api.retry(
        "UpdateService",
        json!({"service": SERVICE, "taskDefinition": format!("{SERVICE_FAMILY}:{revision}")}),
    );
    f.deployments += 1;
    std::thread::sleep(before_fill);
    if let Some((hold, kill_while_full)) = filling {
        f.fills += 1;
        let filler = mnt.join("filler");
        fill(&filler);
        std::thread::sleep(hold);
        if kill_while_full {
            berth.kill();
            f.kills += 1;
        }
        std::fs::remove_file(&filler).expect("free the tmpfs");
        if kill_while_full {
            berth.restart();
        }
    }
    if let Some(down) = dockerd {
        f.dockerd_restarts += 1;
        host.kill_and_restart_dockerd(down);
    }
    std::thread::sleep(before_kill);
    if let Some(down) = kill {
        f.kills += 1;
        berth.kill_and_restart(down);
    }
}

/// The service's two revisions, the batch job, the service at revision 1
/// and steady.
fn set_up(api: &Api) {
    let sleeper = |version: &str| {
        json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16,
            "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
            "environment": [{"name": "VERSION", "value": version}] }])
    };
    for v in ["1", "2"] {
        api.retry(
            "RegisterTaskDefinition",
            json!({"family": SERVICE_FAMILY, "containerDefinitions": sleeper(v)}),
        );
    }
    api.retry(
        "RegisterTaskDefinition",
        json!({"family": JOB_FAMILY, "containerDefinitions": [{
            "name": "job", "image": TEST_IMAGE, "memory": 16,
            "command": ["sh", "-c", "sleep 2"] }]}),
    );
    api.retry(
        "CreateService",
        json!({"serviceName": SERVICE, "taskDefinition": format!("{SERVICE_FAMILY}:1"),
            "desiredCount": DESIRED,
            "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 150}}),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !steady(&api.service(), 1) {
        assert!(
            Instant::now() < deadline,
            "the service never steady: {}",
            api.service()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The service's PRIMARY deployment is COMPLETED on `revision`, alone, at
/// the desired count.
fn steady(s: &Value, revision: u32) -> bool {
    let deployments = s["deployments"].as_array().cloned().unwrap_or_default();
    deployments.len() == 1
        && deployments[0]["status"] == "PRIMARY"
        && deployments[0]["rolloutState"] == "COMPLETED"
        && deployments[0]["taskDefinition"]
            .as_str()
            .is_some_and(|t| t.ends_with(&format!("{SERVICE_FAMILY}:{revision}")))
        && s["runningCount"] == DESIRED
        && s["desiredCount"] == DESIRED
}

/// What the loop did.
#[derive(Debug, Default)]
struct Figures {
    rounds: u32,
    kills: u32,
    fills: u32,
    dockerd_restarts: u32,
    deployments: u32,
}

/// The state once settled: the tasks described, the containers listed.
struct Settled {
    /// Every acknowledged task, described (or its failure), by ARN.
    acked: BTreeMap<String, Value>,
    /// The service's live tasks.
    service_tasks: Vec<Value>,
    /// Every container of berth on the daemon: (task ARN, state).
    containers: Vec<(String, String)>,
    /// How the acknowledged tasks ended, counted.
    outcomes: String,
}

/// Waits (up to 3 minutes) until every acknowledged task has stopped, the
/// service is steady on `revision`, and the containers are exactly the
/// service's running tasks'; returns what it saw last either way, for
/// [`check`] to judge.
fn settle(api: &Api, host: &Host, acked: &[String], revision: u32) -> Settled {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = observe(api, host, acked);
        let all_stopped = s.acked.values().all(|t| t["lastStatus"] == "STOPPED");
        let running: BTreeSet<&str> = s
            .service_tasks
            .iter()
            .filter(|t| t["lastStatus"] == "RUNNING")
            .filter_map(|t| t["taskArn"].as_str())
            .collect();
        let containers: BTreeSet<&str> = s.containers.iter().map(|(a, _)| a.as_str()).collect();
        if (all_stopped
            && steady(&api.service(), revision)
            && running == containers
            && s.containers.len() == running.len())
            || Instant::now() > deadline
        {
            return s;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn observe(api: &Api, host: &Host, acked: &[String]) -> Settled {
    let mut described = BTreeMap::new();
    for chunk in acked.chunks(100) {
        let d = api.retry("DescribeTasks", json!({"tasks": chunk}));
        for t in d["tasks"].as_array().into_iter().flatten() {
            if let Some(arn) = t["taskArn"].as_str() {
                described.insert(arn.to_owned(), t.clone());
            }
        }
        for fl in d["failures"].as_array().into_iter().flatten() {
            if let Some(arn) = fl["arn"].as_str() {
                described.insert(arn.to_owned(), json!({"failure": fl}));
            }
        }
    }
    let mut outcomes = BTreeMap::<String, usize>::new();
    for t in described.values() {
        let exit = &t["containers"][0]["exitCode"];
        let mut key = format!(
            "{} {} exit {}",
            t["lastStatus"].as_str().unwrap_or("?"),
            t["stopCode"].as_str().unwrap_or("-"),
            if exit.is_null() {
                "-".to_owned()
            } else {
                exit.to_string()
            }
        );
        if t["stopCode"] == "TaskFailedToStart" {
            let reason = t["stoppedReason"].as_str().unwrap_or_default();
            key = format!("{key}: {}", reason.chars().take(100).collect::<String>());
        }
        *outcomes.entry(key).or_default() += 1;
    }
    let listed = api.retry(
        "ListTasks",
        json!({"serviceName": SERVICE, "desiredStatus": "RUNNING"}),
    );
    let arns: Vec<Value> = listed["taskArns"].as_array().cloned().unwrap_or_default();
    let service_tasks = if arns.is_empty() {
        Vec::new()
    } else {
        api.retry("DescribeTasks", json!({"tasks": arns}))["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    Settled {
        acked: described,
        service_tasks,
        containers: containers(host),
        outcomes: format!("acknowledged tasks by outcome: {outcomes:?}"),
    }
}

/// Every container of berth on the host's daemon: (task ARN, state).
fn containers(host: &Host) -> Vec<(String, String)> {
    let format = format!("{{{{.Label \"{LABEL_TASK_ARN}\"}}}} {{{{.State}}}}");
    let out = host.docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={LABEL_TASK_ARN}"),
        "--format",
        &format,
    ]);
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, s)| (a.to_owned(), s.to_owned()))
        .collect()
}

/// The invariants, each failing with what it saw.
fn check(
    api: &Api,
    host: &Host,
    acked: &[String],
    starts: &BTreeMap<(String, String), Vec<String>>,
    s: &Settled,
    revision: u32,
    context: &str,
) {
    // No acknowledged write lost.
    let lost: Vec<&Value> = s
        .acked
        .values()
        .filter(|t| !t["failure"].is_null())
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged tasks lost ({context}): {lost:#?}"
    );
    assert_eq!(s.acked.len(), acked.len(), "({context})");
    let stuck: Vec<String> = s
        .acked
        .values()
        .filter(|t| t["lastStatus"] != "STOPPED")
        .map(|t| {
            format!(
                "{} {} {}",
                t["taskArn"], t["lastStatus"], t["desiredStatus"]
            )
        })
        .collect();
    assert!(
        stuck.is_empty(),
        "acknowledged tasks never stopped ({context}): {stuck:#?}"
    );

    // No task twice.
    let twice: Vec<_> = starts.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "containers started twice ({context}): {twice:#?}"
    );
    let mut running = BTreeMap::<&str, usize>::new();
    for (arn, state) in &s.containers {
        if state == "running" {
            *running.entry(arn).or_default() += 1;
        }
    }
    let doubled: Vec<_> = running.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "tasks with two running containers ({context}): {doubled:?}"
    );

    // No leak: each container is a live task's; each RUNNING task has one.
    let live: BTreeSet<&str> = s
        .service_tasks
        .iter()
        .filter(|t| t["desiredStatus"] == "RUNNING")
        .filter_map(|t| t["taskArn"].as_str())
        .collect();
    let leaked: Vec<_> = s
        .containers
        .iter()
        .filter(|(arn, _)| !live.contains(arn.as_str()))
        .map(|(arn, state)| {
            let known = api.retry("DescribeTasks", json!({"tasks": [arn]}));
            format!("{arn} ({state}): {}", known["tasks"][0]["lastStatus"])
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "containers no live task owns ({context}): {leaked:#?}"
    );
    let phantom: Vec<_> = s
        .service_tasks
        .iter()
        .filter(|t| t["lastStatus"] == "RUNNING")
        .filter_map(|t| t["taskArn"].as_str())
        .filter(|arn| !running.contains_key(arn))
        .collect();
    assert!(
        phantom.is_empty(),
        "RUNNING tasks without a running container ({context}): {phantom:?}\n{:?}",
        containers(host)
    );

    // Every deployment completes: the last one, at its count.
    let service = api.service();
    assert!(
        steady(&service, revision),
        "the last deployment never completed ({context}): {service:#}"
    );
    let off: Vec<_> = s
        .service_tasks
        .iter()
        .filter(|t| {
            !t["taskDefinitionArn"]
                .as_str()
                .is_some_and(|d| d.ends_with(&format!("{SERVICE_FAMILY}:{revision}")))
        })
        .map(|t| t["taskArn"].clone())
        .collect();
    assert!(
        off.is_empty(),
        "service tasks of another revision ({context}): {off:?}"
    );
}

/// `berth up` on the tmpfs, with the test host's daemon; killed and
/// started again on the same data directory.
struct Berth {
    up: Option<Up>,
    data: PathBuf,
    docker_host: String,
    log: PathBuf,
    /// Where the API answers now; `None` while berth is down.
    endpoint: Endpoint,
}

impl Berth {
    fn start(data: PathBuf, docker_host: String, log: PathBuf) -> Berth {
        let mut b = Berth {
            up: None,
            data,
            docker_host,
            log,
            endpoint: Endpoint::default(),
        };
        b.restart();
        b
    }

    fn api(&self) -> Api {
        Api::new(self.endpoint.clone())
    }

    /// SIGKILL, and the process reaped.
    fn kill(&mut self) {
        if let Some(up) = self.up.take() {
            *self.endpoint.0.lock().expect("endpoint") = None;
            let _ = Command::new("kill")
                .args(["-KILL", &up.pid().to_string()])
                .status();
            drop(up);
        }
    }

    fn restart(&mut self) {
        assert!(self.up.is_none(), "berth runs already");
        let up = Up::start_in_logging(
            &self.data,
            &[("DOCKER_HOST", &self.docker_host), ("BERTH_LOG", "info")],
            // Stopped tasks stay visible for the whole run, so every
            // acknowledged task can be described at the end.
            &["--stopped-task-ttl", "86400"],
            &self.log,
        );
        *self.endpoint.0.lock().expect("endpoint") = Some(up.addr.clone());
        self.up = Some(up);
    }

    fn kill_and_restart(&mut self, down: Duration) {
        self.kill();
        std::thread::sleep(down);
        self.restart();
    }
}

/// The address of the API while berth is up, shared with the client thread.
#[derive(Debug, Clone, Default)]
struct Endpoint(Arc<Mutex<Option<String>>>);

/// Signed ECS calls to whichever berth is up.
struct Api {
    endpoint: Endpoint,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn new(endpoint: Endpoint) -> Api {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Api { endpoint, rt }
    }

    /// One call; `Ok` is a 200.
    fn call(&self, op: &str, body: &Value) -> Result<Value, CallError> {
        let Some(addr) = self.endpoint.0.lock().expect("endpoint").clone() else {
            return Err(CallError::Unreachable("berth is down".to_owned()));
        };
        let creds = Credentials {
            access_key_id: KEY.to_owned(),
            secret_access_key: SECRET.to_owned(),
        };
        let client = Client::new(addr, creds);
        self.rt.block_on(async { client.call(ECS, op, body).await })
    }

    /// The call retried while berth is down, its disk full, or it throttles
    /// (up to a minute); any other refusal fails the test.
    fn retry(&self, op: &str, body: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.call(op, &body) {
                Ok(v) => return v,
                Err(CallError::Api { code, message })
                    if code != "ServiceUnavailableException" && code != "ThrottlingException" =>
                {
                    panic!("{op} {body}: {code}: {message}")
                }
                Err(e) => assert!(Instant::now() < deadline, "{op} {body}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn service(&self) -> Value {
        self.retry("DescribeServices", json!({"services": [SERVICE]}))["services"][0].clone()
    }
}

/// The RunTask storm: a client thread running the batch job, one or two
/// tasks every 0.2 to 0.9 s, recording the tasks of every call answered 200.
struct Storm {
    stop: StopOnDrop,
    thread: std::thread::JoinHandle<StormFigures>,
}

#[derive(Debug, Default)]
struct StormFigures {
    run_task_calls: u32,
    acknowledged: u32,
    /// Tasks of calls answered 200 that were not placed, by reason.
    placement_failures: BTreeMap<String, u32>,
    unavailable: u32,
    unreachable: u32,
}

impl Storm {
    fn start(endpoint: Endpoint, acked: Arc<Mutex<Vec<String>>>, seed: u64) -> Storm {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let api = Api::new(endpoint);
            let mut rng = Rng(seed ^ 0x5eed_5707);
            let mut f = StormFigures::default();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(rng.millis(200, 900));
                let count = 1 + rng.below(2);
                f.run_task_calls += 1;
                let body =
                    json!({"taskDefinition": JOB_FAMILY, "count": count, "startedBy": "chaos"});
                match api.call("RunTask", &body) {
                    Ok(v) => {
                        f.acknowledged += 1;
                        for fl in v["failures"].as_array().into_iter().flatten() {
                            let reason = fl["reason"].as_str().unwrap_or("?").to_owned();
                            *f.placement_failures.entry(reason).or_default() += 1;
                        }
                        let mut a = acked.lock().expect("acked");
                        a.extend(
                            v["tasks"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|t| t["taskArn"].as_str().map(str::to_owned)),
                        );
                    }
                    Err(CallError::Api { code, message }) => {
                        assert!(
                            code == "ServiceUnavailableException",
                            "RunTask refused: {code}: {message}"
                        );
                        f.unavailable += 1;
                    }
                    Err(_) => f.unreachable += 1,
                }
            }
            f
        });
        Storm {
            stop: StopOnDrop(stop),
            thread,
        }
    }

    fn stop(self) -> StormFigures {
        self.stop.0.store(true, Ordering::Relaxed);
        self.thread.join().expect("the RunTask storm")
    }
}

/// Every `start` event of berth's containers on the daemon while the loop
/// runs: `docker events`, followed again from where it left off whenever
/// the daemon goes away.
struct StartEvents {
    stop: StopOnDrop,
    child: Arc<Mutex<Option<Child>>>,
    thread: std::thread::JoinHandle<BTreeMap<(String, String), Vec<String>>>,
}

impl StartEvents {
    fn follow(docker_host: String) -> StartEvents {
        let stop = Arc::new(AtomicBool::new(false));
        let child: Arc<Mutex<Option<Child>>> = Arc::default();
        let (flag, current) = (stop.clone(), child.clone());
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let thread = std::thread::spawn(move || {
            // (task, container) -> container ids started; seen: (id, time).
            let mut starts = BTreeMap::<(String, String), Vec<String>>::new();
            let mut seen = BTreeSet::<(String, String)>::new();
            let mut since = since.to_string();
            let format = format!(
                "{{{{.TimeNano}}}} {{{{.Actor.ID}}}} {{{{index .Actor.Attributes \"{LABEL_TASK_ARN}\"}}}} \
                 {{{{index .Actor.Attributes \"{LABEL_CONTAINER_NAME}\"}}}}"
            );
            while !flag.load(Ordering::Relaxed) {
                let spawned = Command::new("docker")
                    .args(["-H", &docker_host, "events", "--since", &since])
                    .args(["--filter", "type=container", "--filter", "event=start"])
                    .args(["--filter", &format!("label={LABEL_TASK_ARN}")])
                    .args(["--format", &format])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn();
                let Ok(mut c) = spawned else {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                };
                let out = c.stdout.take().expect("stdout");
                *current.lock().expect("child") = Some(c);
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let parts: Vec<&str> = line.split(' ').collect();
                    let [nanos, id, task, name] = parts[..] else {
                        continue;
                    };
                    if seen.insert((id.to_owned(), nanos.to_owned())) {
                        starts
                            .entry((task.to_owned(), name.to_owned()))
                            .or_default()
                            .push(id.to_owned());
                    }
                    // Whole seconds: what --since takes; `seen` drops repeats.
                    if let Ok(n) = nanos.parse::<u64>() {
                        since = (n / 1_000_000_000).to_string();
                    }
                }
                if let Some(mut c) = current.lock().expect("child").take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            starts
        });
        StartEvents {
            stop: StopOnDrop(stop),
            child,
            thread,
        }
    }

    /// Stops following; the starts seen, by (task, container name).
    fn stop(self) -> BTreeMap<(String, String), Vec<String>> {
        // Give the last events a moment to arrive.
        std::thread::sleep(Duration::from_secs(1));
        self.stop.0.store(true, Ordering::Relaxed);
        if let Some(c) = self.child.lock().expect("child").as_mut() {
            let _ = c.kill();
        }
        self.thread.join().expect("the events thread")
    }
}

/// A thread's stop flag, raised when its owner is dropped (a failing test
/// leaves no thread running).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A small deterministic generator (splitmix64): the seed fixes the plan.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}
