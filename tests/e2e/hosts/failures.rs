//! Hosts failing under a running service: a host cut off by its link (seen
//! lost, its tasks replaced, the copies stopped when it returns, never more
//! than maximumPercent running), an agent killed with SIGKILL and restarted
//! (its containers re-adopted, none restarted nor duplicated), and an agent
//! with a wrong credential refused.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::fleet::{AgentArgs, Fleet, Server, arns, running_containers, start_agent_as};
use super::lab::{Host, hosts_ready, until};

/// ECS's spread over zones, as the AWS CLI takes it.
pub const SPREAD_BY_ZONE: &str = r#"[{"type":"spread","field":"attribute:ecs.availability-zone"}]"#;

/// Seconds of silence after which the server marks an agent disconnected
/// (two of the agents' 5 s heartbeat intervals, the least the server
/// advises), and after which it stops a disconnected agent's tasks: short,
/// to keep the tests fast.
const AGENT_TIMEOUT: u64 = 10;
const LOST_TASK_GRACE: u64 = 2;

/// `maximumPercent` 100 of 3 tasks: at no moment may more than 3 containers
/// of the service run on the hosts the server can reach, nor, once the cut
/// host is back and has stopped its replaced copies, on all hosts.
#[test]
fn a_cut_off_host_is_seen_lost_and_replaced_and_stops_its_copies_when_back() {
    if !hosts_ready() {
        return;
    }
    let timeout = AGENT_TIMEOUT.to_string();
    let grace = LOST_TASK_GRACE.to_string();
    let cluster = format!("cut-{}", std::process::id());
    let fleet = Fleet::start(
        &["--agent-timeout", &timeout, "--lost-task-grace", &grace],
        &cluster,
        &["zone-a", "zone-b", "zone-c"],
    );
    let family = format!("e2e-cut-{}", std::process::id());
    fleet.register_sleeper(&family, 16);
    fleet.aws(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        &family,
        "--desired-count",
        "3",
        "--placement-strategy",
        SPREAD_BY_ZONE,
        "--deployment-configuration",
        "maximumPercent=100,minimumHealthyPercent=0",
    ]);
    fleet.until_running("web", 3, Duration::from_secs(60), |_| true);
    assert_eq!(fleet.container_counts(), vec![1, 1, 1], "one per zone");
    let lost = fleet.instance_arn(0);
    let cut_off = running_containers(&fleet.hosts[0]);

    let cut = Instant::now();
    fleet.hosts[0].set_link(false);
    // Seen lost within the timeout (and a heartbeat's slack).
    let limit = Duration::from_secs(AGENT_TIMEOUT + 10);
    until(limit, "the cut host's instance disconnected", || {
        (fleet.instance_of(0)?["agentConnected"] == false).then_some(())
    });
    eprintln!("cut host seen disconnected after {:?}", cut.elapsed());
    // Its task replaced on the others, within the grace (and slack).
    let at_most_three_reachable = |f: &Fleet| {
        let counts = f.container_counts();
        assert!(
            counts[1] + counts[2] <= 3,
            "over maximumPercent on the reachable hosts: {counts:?}\n{}",
            f.logs()
        );
    };
    let limit = Duration::from_secs(AGENT_TIMEOUT + LOST_TASK_GRACE + 45);
    fleet.until_running("web", 3, limit, |t| {
        at_most_three_reachable(&fleet);
        t["containerInstanceArn"] != lost.as_str()
    });
    let counts = fleet.container_counts();
    assert_eq!(counts[1] + counts[2], 3, "{counts:?}");
    // The lost task is reported, not kept RUNNING.
    let old = fleet.describe_tasks(&[cut_off[0].task_arn.clone()]);
    assert_eq!(old[0]["lastStatus"], "STOPPED", "{old:#?}");
    let reason = old[0]["stoppedReason"].as_str().unwrap_or_default();
    assert!(reason.to_lowercase().contains("lost"), "{old:#?}");

    fleet.hosts[0].set_link(true);
    until(
        Duration::from_secs(60),
        "the returned host connected again with its replaced copy stopped",
        || {
            let back = fleet.instance_of(0)?["agentConnected"] == true;
            (back && running_containers(&fleet.hosts[0]).is_empty()).then_some(())
        },
    );
    // From now on, on all three hosts, never more than maximumPercent.
    for _ in 0..20 {
        let counts = fleet.container_counts();
        assert!(counts.iter().sum::<usize>() <= 3, "{counts:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let running = fleet.until_running("web", 3, Duration::from_secs(10), |_| true);
    assert_eq!(fleet.container_counts().iter().sum::<usize>(), 3);
    assert!(
        running
            .iter()
            .all(|t| t["containerInstanceArn"] != lost.as_str()),
        "no new copy was started on the returned host: {running:#?}"
    );
}

/// SIGKILL of an agent, the server noticing, and the agent restarted on its
/// data directory: the same instance, its containers re-adopted (same ids,
/// same start times), nothing started twice.
#[test]
fn a_killed_agent_restarted_readopts_its_containers() {
    if !hosts_ready() {
        return;
    }
    let timeout = AGENT_TIMEOUT.to_string();
    let cluster = format!("kill-{}", std::process::id());
    // A long grace: the tasks are re-adopted, not replaced.
    let mut fleet = Fleet::start(
        &["--agent-timeout", &timeout, "--lost-task-grace", "120"],
        &cluster,
        &["zone-a", "zone-b"],
    );
    let family = format!("e2e-kill-{}", std::process::id());
    fleet.register_sleeper(&family, 16);
    fleet.aws(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        &family,
        "--desired-count",
        "2",
        "--placement-strategy",
        SPREAD_BY_ZONE,
    ]);
    let tasks = fleet.until_running("web", 2, Duration::from_secs(60), |_| true);
    // A batch task on host 0 too.
    let batch = fleet.aws(&[
        "run-task",
        "--task-definition",
        &family,
        "--placement-constraints",
        r#"[{"type":"memberOf","expression":"attribute:e2e.host == 0"}]"#,
    ]);
    let batch = batch["tasks"][0]["taskArn"]
        .as_str()
        .unwrap_or_else(|| panic!("run-task placed nothing: {batch}"))
        .to_owned();
    until(Duration::from_secs(30), "the batch task RUNNING", || {
        (fleet.describe_tasks(std::slice::from_ref(&batch))[0]["lastStatus"] == "RUNNING")
            .then_some(())
    });
    let before = fleet.containers();
    assert_eq!(before[0].len(), 2, "{before:#?}");
    assert_eq!(before[1].len(), 1, "{before:#?}");
    let instance = fleet.instance_arn(0);

    fleet.hosts[0].kill_agent();
    until(
        Duration::from_secs(AGENT_TIMEOUT + 10),
        "the killed agent's instance disconnected",
        || (fleet.instance_of(0)?["agentConnected"] == false).then_some(()),
    );
    assert_eq!(
        fleet.containers(),
        before,
        "containers ran on without their agent"
    );

    fleet.start_agent(0);
    let all = fleet.until_connected(2);
    assert!(
        all.iter()
            .any(|ci| ci["containerInstanceArn"] == instance.as_str()),
        "the restarted agent is the same instance: {all:#?}"
    );
    // A few rounds of the agent's convergence: nothing restarted, nothing added.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(fleet.containers(), before, "\n{}", fleet.logs());
    }
    let after = fleet.until_running("web", 2, Duration::from_secs(10), |_| true);
    assert_eq!(
        task_arns(&after),
        task_arns(&tasks),
        "the same service tasks"
    );
    let b = fleet.describe_tasks(std::slice::from_ref(&batch));
    assert_eq!(b[0]["lastStatus"], "RUNNING", "{b:#?}");
    let ci = fleet.instance_of(0).expect("host 0 registered");
    assert_eq!(ci["runningTasksCount"], 2, "{ci:#}");
}

fn task_arns(tasks: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = tasks
        .iter()
        .filter_map(|t| t["taskArn"].as_str().map(str::to_owned))
        .collect();
    v.sort();
    v
}

/// An agent signing with a wrong secret, or an unknown key, is refused and
/// registers nothing; the same host with the right credential joins.
#[test]
fn an_agent_with_a_wrong_credential_is_refused() {
    if !hosts_ready() {
        return;
    }
    let server = Server::start(&[]);
    let mut host = Host::start(&[]);
    let cluster = format!("cred-{}", std::process::id());
    server.aws(&["create-cluster", "--cluster-name", &cluster]);
    let args = AgentArgs::new(&cluster, "zone-a");
    let registered = |s: &Server| {
        let listed = s.aws(&["list-container-instances", "--cluster", &cluster]);
        !arns(&listed, "containerInstanceArns").is_empty()
    };
    for (key, secret) in [
        (server.key.clone(), "not-the-secret".to_owned()),
        ("AKIDNOSUCHKEY".to_owned(), server.secret.clone()),
    ] {
        start_agent_as(&mut host, &server, &args, &key, &secret);
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            let s = &server;
            assert!(
                !registered(s),
                "an agent signing as {key} with a wrong credential registered"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        let log = host.log_tail("agent.log");
        assert!(
            ["403", "refused", "InvalidSignature", "UnrecognizedClient"]
                .iter()
                .any(|w| log.contains(w)),
            "the agent says it was refused:\n{log}"
        );
        host.kill_agent();
    }
    let refusals = server.log_tail();
    assert!(
        refusals.to_lowercase().contains("refused"),
        "the server logs the refusals:\n{refusals}"
    );
    start_agent_as(&mut host, &server, &args, &server.key, &server.secret);
    until(
        Duration::from_secs(30),
        "the agent with the right key registered",
        || registered(&server).then_some(()),
    );
}
