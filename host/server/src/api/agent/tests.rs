//! The agent endpoints called in process, without a socket: signatures,
//! the manifest long poll, and a log read's round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use berth_core::arn::ArnContext;
use berth_core::model::{Resource, VersionInfo};
use berth_protocol::{
    ContainerLogs, HostFacts, LogLine, TaskLogs, TaskManifest, builtin_attributes,
};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::api::{BERTH_PREFIX, JSON, router};
use crate::control::Control;
use crate::control::types::RunTaskRequest;
use crate::credentials::Credentials;

fn creds() -> Credentials {
    Credentials {
        access_key_id: "AKIDAGENT".into(),
        secret_access_key: "agent-secret".into(),
    }
}

const INSTANCE: &str = "arn:aws:ecs:local:000000000000:container-instance/default/remote1";

struct Fixture {
    _dir: tempfile::TempDir,
    control: Arc<Control>,
    api: axum::Router,
}

/// The API with long polls cut short: the manifest after 300 ms, log polls after 2 s.
fn fixture() -> Fixture {
    fixture_waiting(Duration::from_millis(300))
}

/// The API whose manifest long polls wait `manifest_wait`.
fn fixture_waiting(manifest_wait: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(berth_store::Store::open(dir.path().join("berth.redb")).unwrap());
    let control = Arc::new(Control::new(Arc::clone(&store), ArnContext::default()));
    control.ensure_default_cluster().unwrap();
    let plane =
        LocalControlPlane::new(store, ArnContext::default()).with_manifest_wait(manifest_wait);
    let agents = AgentEndpoints::new(plane).with_log_poll_wait(Duration::from_secs(2));
    let api = router(Arc::new(
        Api::new(Arc::clone(&control), creds()).with_agents(agents),
    ));
    Fixture {
        _dir: dir,
        control,
        api,
    }
}

/// A `POST path` of `body`, signed by `signer` (unsigned when None).
fn post(path: &str, body: &Value, signer: Option<&Credentials>) -> Request<Body> {
    let body = serde_json::to_vec(body).unwrap();
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("host".to_owned(), "server:7171".to_owned()),
    ];
    let mut b = Request::builder().method("POST").uri(path);
    for (n, v) in &headers {
        b = b.header(n, v);
    }
    if let Some(c) = signer {
        for (n, v) in
            berth_client::sigv4::sign(c, "local", "ecs", path, &headers, &body, chrono::Utc::now())
        {
            b = b.header(n, v);
        }
    }
    b.body(Body::from(body)).unwrap()
}

async fn send(api: &axum::Router, req: Request<Body>) -> (u16, Value) {
    let resp = api.clone().oneshot(req).await.unwrap();
    assert!(resp.headers().contains_key("x-amzn-requestid"));
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A signed agent message; its status and answer.
async fn agent(api: &axum::Router, message: &str, body: Value) -> (u16, Value) {
    send(
        api,
        post(&format!("{AGENT_PATH}/{message}"), &body, Some(&creds())),
    )
    .await
}

fn registration() -> Value {
    serde_json::to_value(RegisterInstance {
        cluster: "default".into(),
        container_instance_arn: INSTANCE.into(),
        ec2_instance_id: "remote1".into(),
        agent_connected: true,
        total_resources: vec![
            Resource::integer("CPU", 1024),
            Resource::integer("MEMORY", 2048),
            Resource::string_set("PORTS", Vec::new()),
            Resource::string_set("PORTS_UDP", Vec::new()),
        ],
        attributes: builtin_attributes(&HostFacts::assumed()),
        version_info: VersionInfo::default(),
    })
    .unwrap()
}

/// Registers the remote instance and places one task of `web` on it.
async fn placed_task(f: &Fixture) -> String {
    let (status, ci) = agent(&f.api, "register", registration()).await;
    assert_eq!(status, 200, "{ci}");
    assert_eq!(ci["containerInstanceArn"], INSTANCE);
    let td: berth_core::model::RegisterTaskDefinition = serde_json::from_value(json!({
        "family": "web", "containerDefinitions": [{"name": "app", "image": "i", "memory": 128}]
    }))
    .unwrap();
    f.control.register_task_definition(td).unwrap();
    let run = f
        .control
        .run_task(RunTaskRequest {
            task_definition: Some("web".into()),
            count: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert!(run.failures.is_empty(), "{:?}", run.failures);
    run.tasks[0].task_arn.clone()
}

fn manifest_of(v: Value) -> TaskManifest {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn only_requests_signed_with_the_servers_key_are_served() {
    let f = fixture();
    let hb =
        json!({"cluster": "default", "containerInstanceArn": INSTANCE, "agentConnected": true});
    let path = format!("{AGENT_PATH}/heartbeat");
    let (status, ok) = send(&f.api, post(&path, &hb, Some(&creds()))).await;
    assert_eq!((status, &ok), (200, &json!({"registered": false})));

    let (status, e) = send(&f.api, post(&path, &hb, None)).await;
    assert_eq!(status, 403, "unsigned: {e}");
    assert_eq!(e["__type"], "MissingAuthenticationTokenException");

    let wrong_secret = Credentials {
        secret_access_key: "guessed".into(),
        ..creds()
    };
    let (status, e) = send(&f.api, post(&path, &hb, Some(&wrong_secret))).await;
    assert_eq!(status, 403, "wrong secret: {e}");
    let wrong_key = Credentials {
        access_key_id: "AKIDOTHER".into(),
        ..creds()
    };
    let (status, e) = send(&f.api, post(&path, &hb, Some(&wrong_key))).await;
    assert_eq!(status, 403, "unknown key: {e}");

    // Signed for another message than the one sent: refused too.
    let mut req = post(&format!("{AGENT_PATH}/retire"), &hb, Some(&creds()));
    *req.uri_mut() = path.parse().unwrap();
    let (status, _) = send(&f.api, req).await;
    assert_eq!(status, 403);

    // Nothing a refused request carried was done.
    let (status, e) = send(
        &f.api,
        post(&format!("{AGENT_PATH}/register"), &registration(), None),
    )
    .await;
    assert_eq!(status, 403, "{e}");
    let (_, ok) = send(&f.api, post(&path, &hb, Some(&creds()))).await;
    assert_eq!(ok, json!({"registered": false}));
}

#[tokio::test]
async fn malformed_messages_are_refused_and_protocol_errors_keep_their_kind() {
    let f = fixture();
    let (status, e) = agent(&f.api, "heartbeat", json!({"cluster": 3})).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["__type"], "SerializationException");
    // A registration in a cluster name ECS refuses: the protocol's refusal.
    let mut bad = registration();
    bad["cluster"] = json!("no spaces allowed");
    let (status, e) = agent(&f.api, "register", bad).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["kind"], "refused", "{e}");
}

#[tokio::test]
async fn a_manifest_long_poll_waits_while_nothing_changes_and_answers_a_newer_one_at_once() {
    let f = fixture();
    let (_, ci) = agent(&f.api, "register", registration()).await;
    assert_eq!(ci["status"], "ACTIVE");
    let ask = |known: Option<u64>| {
        let mut req = json!({"cluster": "default", "containerInstanceArn": INSTANCE});
        if let Some(k) = known {
            req["knownSequence"] = json!(k);
        }
        req
    };
    let (status, now) = agent(&f.api, "manifest", ask(None)).await;
    assert_eq!(status, 200, "{now}");
    let known = manifest_of(now).sequence;

    // Nothing changes: the poll waits (300 ms here) and answers the same manifest.
    let started = Instant::now();
    let (_, same) = agent(&f.api, "manifest", ask(Some(known))).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(manifest_of(same).sequence, known);

    // An older sequence is answered at once.
    let started = Instant::now();
    let (_, newer) = agent(&f.api, "manifest", ask(Some(known.wrapping_sub(1)))).await;
    assert!(started.elapsed() < Duration::from_millis(250));
    assert_eq!(manifest_of(newer).sequence, known);
}

#[tokio::test]
async fn a_manifest_long_poll_in_progress_answers_when_a_task_is_assigned() {
    // Polls wait up to 30 s: only the placement can end this one in time.
    let f = fixture_waiting(Duration::from_secs(30));
    let (_, ci) = agent(&f.api, "register", registration()).await;
    assert_eq!(ci["status"], "ACTIVE");
    let req = json!({"cluster": "default", "containerInstanceArn": INSTANCE});
    let (_, now) = agent(&f.api, "manifest", req.clone()).await;
    let known = manifest_of(now).sequence;
    let api = f.api.clone();
    let poll = tokio::spawn(async move {
        let mut req = req;
        req["knownSequence"] = json!(known);
        let started = Instant::now();
        let answer = agent(&api, "manifest", req).await;
        (started.elapsed(), answer)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished(), "the poll waits while nothing changes");
    let arn = placed_task(&f).await;
    let (took, (status, answer)) = poll.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let m = manifest_of(answer);
    assert!(m.sequence > known);
    assert!(m.task(&arn).is_some(), "the placed task is in the answer");
    assert!(
        took < Duration::from_secs(10),
        "answered on the change: {took:?}"
    );
}

#[tokio::test]
async fn a_log_read_goes_to_the_polling_agent_and_comes_back() {
    let f = fixture();
    let arn = placed_task(&f).await;
    let get_logs = |api: axum::Router, arn: String| async move {
        let body = serde_json::to_vec(&json!({"task": arn})).unwrap();
        let headers = vec![
            ("content-type".to_owned(), JSON.to_owned()),
            ("host".to_owned(), "server:7171".to_owned()),
            (
                "x-amz-target".to_owned(),
                format!("{BERTH_PREFIX}.GetTaskLogs"),
            ),
        ];
        let mut b = Request::builder().method("POST").uri("/");
        for (n, v) in headers.iter().chain(&berth_client::sigv4::sign(
            &creds(),
            "local",
            "ecs",
            "/",
            &headers,
            &body,
            chrono::Utc::now(),
        )) {
            b = b.header(n, v);
        }
        send(&api, b.body(Body::from(body)).unwrap()).await
    };

    // No agent has polled: the read is refused at once, saying why.
    let (status, e) = get_logs(f.api.clone(), arn.clone()).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["message"].as_str().unwrap_or("").contains("agent"), "{e}");

    // The agent polls; the read comes to it, its answer goes back.
    let poll = json!({"containerInstanceArn": INSTANCE});
    let agent_api = f.api.clone();
    let first_poll = tokio::spawn(async move { agent(&agent_api, "log-requests", poll).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let read = tokio::spawn(get_logs(f.api.clone(), arn.clone()));
    let (status, asked) = first_poll.await.unwrap();
    assert_eq!(status, 200, "{asked}");
    let requests = asked["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{asked}");
    assert_eq!(requests[0]["request"]["taskArn"], arn.as_str());
    let logs = TaskLogs {
        containers: vec![ContainerLogs {
            name: "app".into(),
            entries: vec![LogLine {
                nanos: 1_700_000_000_000_000_000,
                message: "hello from the remote host".into(),
            }],
        }],
    };
    let answer = LogAnswer::new(
        INSTANCE.into(),
        requests[0]["id"].as_u64().unwrap(),
        Ok(logs),
    );
    let (status, accepted) = agent(
        &f.api,
        "log-answers",
        serde_json::to_value(&answer).unwrap(),
    )
    .await;
    assert_eq!((status, accepted), (200, json!({"accepted": true})));
    let (status, got) = read.await.unwrap();
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["events"][0]["message"], "hello from the remote host",
        "{got}"
    );

    // A poll with nothing queued answers empty once its wait is over.
    let (status, empty) = agent(
        &f.api,
        "log-requests",
        json!({"containerInstanceArn": INSTANCE}),
    )
    .await;
    assert_eq!((status, empty), (200, json!({"requests": []})));
}

/// The agent protocol is not throttled: with the ECS writes' bucket empty
/// (1 a second, burst 1), heartbeats keep being answered.
#[tokio::test]
async fn heartbeats_are_never_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(berth_store::Store::open(dir.path().join("berth.redb")).unwrap());
    let control = Arc::new(Control::new(Arc::clone(&store), ArnContext::default()));
    control.ensure_default_cluster().unwrap();
    let limits = crate::api::Limits {
        rates: crate::api::throttle::Rates::default().with(&"write=1:1".parse().unwrap()),
        ..crate::api::Limits::default()
    };
    let api = router(Arc::new(
        Api::new(Arc::clone(&control), creds()).with_limits(limits),
    ));
    let ecs = |name: &str| {
        let body = serde_json::to_vec(&json!({"clusterName": name})).unwrap();
        let headers = vec![
            ("content-type".to_owned(), JSON.to_owned()),
            ("host".to_owned(), "server:7171".to_owned()),
            (
                "x-amz-target".to_owned(),
                format!("{}.CreateCluster", crate::api::ECS_PREFIX),
            ),
        ];
        let mut b = Request::builder().method("POST").uri("/");
        for (n, v) in &headers {
            b = b.header(n, v);
        }
        for (n, v) in berth_client::sigv4::sign(
            &creds(),
            "local",
            "ecs",
            "/",
            &headers,
            &body,
            chrono::Utc::now(),
        ) {
            b = b.header(n, v);
        }
        b.body(Body::from(body)).unwrap()
    };
    let (status, _) = send(&api, ecs("a")).await;
    assert_eq!(status, 200);
    let (status, e) = send(&api, ecs("b")).await;
    assert_eq!(
        (status, e["__type"].as_str()),
        (400, Some("ThrottlingException"))
    );
    let hb =
        json!({"cluster": "default", "containerInstanceArn": INSTANCE, "agentConnected": true});
    for _ in 0..20 {
        let (status, ok) = agent(&api, "heartbeat", hb.clone()).await;
        assert_eq!(status, 200, "{ok}");
    }
}
