//! The operator's console in headless Chromium against a real `berth up`
//! with Docker: strangers are refused, signing in, a service scaled from
//! its page until its deployment is steady, a task's containers and live
//! logs, a policy installed, activated (its decisions counted as tasks
//! run) and rolled back, CSRF-less calls refused, signing out; a PNG of
//! each page is kept in `$CARGO_TARGET_DIR/ui-screenshots` (or
//! `target/ui-screenshots`). Needs `chromium` and `chromium-driver`;
//! `BERTH_SKIP_BROWSER=1` skips it on purpose.

mod browser;

use std::time::{Duration, Instant};

use berth_agent::testing::TEST_IMAGE;
use fantoccini::Locator;
use serde_json::{Value, json};

use super::console::audit;
use super::harness::{KEY, SECRET, Up, docker_ready};
use super::policies::plugin_path;
use browser::{Browser, browser_wanted, http};

#[test]
fn the_console_in_a_browser() {
    if !docker_ready() || !browser_wanted() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(flows(&up));
}

async fn flows(up: &Up) {
    strangers_are_refused(up);
    let b = Browser::start(&format!("http://{}", up.addr)).await;
    sign_in(&b).await;
    fleet(&b).await;
    let service = services(up, &b).await;
    csrf_less_calls_are_refused(up, &b, &service).await;
    tasks(&b, &service).await;
    policies(up, &b).await;
    drain_and_activate(up, &b).await;
    sign_out(&b).await;
    b.close().await;
}

fn strangers_are_refused(up: &Up) {
    let json = [("content-type", "application/json")];
    let (status, _, body) = http(&up.addr, "POST", "/ui/api/ecs/ListClusters", &json, "{}");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("UnauthorizedException"), "{body}");
    let (status, _, _) = http(&up.addr, "GET", "/ui/api/events", &[], "");
    assert_eq!(status, 401);
    let (status, head, _) = http(&up.addr, "GET", "/ui/services", &[], "");
    assert_eq!(status, 303, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("location: /ui/login"),
        "{head}"
    );
    // A forged cookie is no session.
    let forged = [("cookie", "berth_session=0000")];
    let (status, _, _) = http(&up.addr, "GET", "/ui/api/session", &forged, "");
    assert_eq!(status, 401);
}

async fn fill(b: &Browser, css: &str, value: &str) {
    let e = b.wait(css, css, 20).await;
    e.clear().await.expect("clear");
    e.send_keys(value).await.expect("type");
}

async fn sign_in(b: &Browser) {
    // A page sends a browser without a session to the sign-in.
    b.goto("/ui/services").await;
    b.wait("#signIn", "the sign-in page", 20).await;
    assert_eq!(b.path().await, "/ui/login");
    fill(b, "#accessKeyId", KEY).await;
    fill(b, "#secretAccessKey", "not-the-secret").await;
    b.click("#signIn", "sign in").await;
    let error = b.wait(".error", "the refusal", 20).await;
    let said = error.text().await.expect("text");
    assert!(said.contains("not the ones"), "{said}");
    b.screenshot("login").await;

    fill(b, "#accessKeyId", KEY).await;
    fill(b, "#secretAccessKey", SECRET).await;
    b.click("#signIn", "sign in").await;
    b.wait(r#"[data-cluster="default"]"#, "the clusters page", 30)
        .await;
    assert_eq!(b.path().await, "/ui/clusters");
}

/// The text of `css` once it contains `needle`.
async fn wait_text(b: &Browser, css: &str, needle: &str, what: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(e) = b.client.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
            && t.contains(needle)
        {
            return t;
        }
        if Instant::now() > deadline {
            let shot = b
                .screenshot(&format!("failed-{}", what.replace(' ', "-")))
                .await;
            panic!(
                "{what}: `{css}` never said `{needle}` ({}); the page says:\n{}",
                shot.display(),
                b.text().await
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn fleet(b: &Browser) {
    let connected = r#"[data-cluster="default"] [data-stat="connected"] b"#;
    wait_text(b, connected, "1/1", "the agent connected", 30).await;
    b.screenshot("clusters").await;
    b.goto("/ui/instances").await;
    b.wait(
        r#"tr[data-instance][data-status="ACTIVE"] button[data-action="drain"]"#,
        "the instance",
        30,
    )
    .await;
    let zone = wait_text(b, "#instances tbody", "e2e-zone", "the instance's zone", 10).await;
    assert!(zone.contains("connected"), "{zone}");
    b.screenshot("instances").await;
}

fn register(up: &Up, family: &str) {
    let defs = json!([{ "name": "app", "image": TEST_IMAGE, "memory": 16,
        "command": ["sh", "-c",
            "echo hello from the console; trap 'exit 0' TERM; while true; do sleep 0.2; done"] }]);
    up.aws(&[
        "register-task-definition",
        "--family",
        family,
        "--container-definitions",
        &defs.to_string(),
    ]);
}

/// Scales a service from its page and waits for its deployment to be steady.
async fn services(up: &Up, b: &Browser) -> String {
    let family = format!("e2e-console-{}", std::process::id());
    register(up, &family);
    let service = format!("{family}-svc");
    up.aws(&[
        "create-service",
        "--service-name",
        &service,
        "--task-definition",
        &family,
        "--desired-count",
        "1",
    ]);
    b.goto("/ui/services").await;
    let card = format!(r#"[data-service="{service}"]"#);
    b.wait(
        &format!(r#"{card}[data-steady="true"]"#),
        "one task steady",
        90,
    )
    .await;
    b.click(&format!(r#"{card} button[data-action="scale"]"#), "Scale")
        .await;
    fill(b, "#scale-desired", "2").await;
    b.click("#scale-dialog-ok", "the scale dialog's button")
        .await;
    // Live: no reload between the click and the steady deployment.
    let primary = r#"tr[data-deployment-status="PRIMARY"][data-running="2"][data-desired="2"]"#;
    b.wait(&format!("{card} {primary}"), "two tasks running", 90)
        .await;
    b.wait(
        &format!(r#"{card}[data-steady="true"]"#),
        "steady at two",
        90,
    )
    .await;
    wait_text(
        b,
        &format!("{card} .events"),
        "steady state",
        "the steady event",
        30,
    )
    .await;
    b.screenshot("services").await;

    let updates = audit(up, &["--op", "UpdateService", "--since", "1h"]);
    let scaled = updates
        .iter()
        .find(|e| e["result"] == "Success")
        .unwrap_or_else(|| {
            panic!("the console's UpdateService is not in the audit log: {updates:?}")
        });
    assert_eq!(scaled["accessKeyId"], KEY, "{scaled}");
    assert!(
        scaled["targets"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == service.as_str())),
        "{scaled}"
    );
    service
}

fn desired_count(up: &Up, service: &str) -> Value {
    up.aws(&["describe-services", "--services", service])["services"][0]["desiredCount"].clone()
}

async fn csrf_less_calls_are_refused(up: &Up, b: &Browser, service: &str) {
    let session = b
        .client
        .get_named_cookie("berth_session")
        .await
        .expect("the session cookie");
    let cookie = format!("berth_session={}", session.value());
    assert_eq!(session.http_only(), Some(true));
    let body = json!({"service": service, "desiredCount": 0}).to_string();
    let headers = [
        ("cookie", cookie.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, _, answer) = http(
        &up.addr,
        "POST",
        "/ui/api/ecs/UpdateService",
        &headers,
        &body,
    );
    assert_eq!(status, 403, "{answer}");
    let (status, _, answer) = http(&up.addr, "GET", "/ui/api/session", &headers, "");
    assert_eq!(status, 200, "{answer}");
    let token: Value = serde_json::from_str(&answer).expect("JSON");
    let token = token["csrfToken"].as_str().expect("token");
    let foreign = [
        ("cookie", cookie.as_str()),
        ("x-berth-csrf", token),
        ("origin", "http://elsewhere.example"),
    ];
    let (status, _, answer) = http(
        &up.addr,
        "POST",
        "/ui/api/ecs/UpdateService",
        &foreign,
        &body,
    );
    assert_eq!(status, 403, "{answer}");
    assert_eq!(
        desired_count(up, service),
        2,
        "the refused calls changed nothing"
    );
}

async fn tasks(b: &Browser, service: &str) {
    b.goto(&format!("/ui/tasks?service={service}")).await;
    b.click(r#"tr[data-task][data-status="RUNNING"]"#, "a running task")
        .await;
    b.wait(
        r#"#task-detail tr[data-container="app"]"#,
        "the task's container",
        20,
    )
    .await;
    b.wait(
        r#"#logs[data-lines]:not([data-lines="0"])"#,
        "the log tail",
        30,
    )
    .await;
    wait_text(
        b,
        "#logs",
        "hello from the console",
        "the task's output",
        20,
    )
    .await;
    b.screenshot("tasks").await;
}

async fn policies(up: &Up, b: &Browser) {
    b.goto("/ui/policies").await;
    let file = b.wait("#policy-file", "the file input", 20).await;
    // chromedriver takes only a canonical path (no `..`).
    let wasm = plugin_path("binpack")
        .canonicalize()
        .expect("the plugin's path");
    file.send_keys(wasm.to_str().expect("utf-8 path"))
        .await
        .expect("choosing the file");
    b.click("#install", "Install").await;
    let card = r#"[data-policy="binpack"]"#;
    b.click(
        &format!(r#"{card} button[data-action="activate"]"#),
        "Activate",
    )
    .await;
    b.wait("#activate-dialog", "the activate dialog", 10).await;
    b.click("#activate-dialog-ok", "the activate dialog's button")
        .await;
    b.wait(
        &format!(r#"{card} tr[data-scope="cluster/default"]"#),
        "active in default",
        30,
    )
    .await;
    let before = b
        .wait(&format!("{card} b[data-decisions]"), "the decisions", 10)
        .await
        .attr("data-decisions")
        .await
        .expect("attribute")
        .expect("decisions")
        .parse::<u64>()
        .expect("a count");

    let family = format!("e2e-console-policy-{}", std::process::id());
    register(up, &family);
    let run = up.aws(&["run-task", "--task-definition", &family, "--count", "2"]);
    for t in run["tasks"].as_array().expect("tasks") {
        up.until(t["taskArn"].as_str().expect("arn"), "RUNNING");
    }
    let moved = format!(r#"{card} b[data-decisions]:not([data-decisions="{before}"])"#);
    let after = b
        .wait(&moved, "the decisions count moving", 30)
        .await
        .attr("data-decisions")
        .await
        .expect("attribute")
        .expect("decisions")
        .parse::<u64>()
        .expect("a count");
    assert!(after > before, "{before} -> {after}");
    b.screenshot("policies").await;

    // One click back to what placed before: the native strategies.
    b.click(
        r#"tr[data-history="cluster/default"] button[data-action="rollback"]"#,
        "Roll back",
    )
    .await;
    b.wait(
        &format!("{card}:not(:has(tr[data-scope]))"),
        "deactivated by the rollback",
        30,
    )
    .await;
    // And back again: a rollback is a change of its own.
    let back = r#"tr[data-history="cluster/default"] button[data-action="rollback"]"#;
    let label = wait_text(b, back, "binpack", "the way back to binpack", 30).await;
    assert!(label.contains("Back to binpack@"), "{label}");
    b.click(back, "Roll back again").await;
    let active = format!(r#"{card} tr[data-scope="cluster/default"]"#);
    b.wait(&active, "binpack active again", 30).await;
    b.click(
        &format!(r#"{active} button[data-action="deactivate"]"#),
        "Deactivate",
    )
    .await;
    b.wait(
        &format!("{card}:not(:has(tr[data-scope]))"),
        "deactivated",
        30,
    )
    .await;
    let rollbacks = audit(up, &["--op", "RollBackPolicy", "--since", "1h"]);
    assert_eq!(rollbacks.len(), 2, "{rollbacks:?}");
    assert_eq!(rollbacks[0]["result"], "Success", "{rollbacks:?}");
    assert_eq!(rollbacks[0]["accessKeyId"], KEY);
}

/// Clicks the instance's `action` (it is `from`) and waits for it to be `to`.
async fn instance_to(up: &Up, b: &Browser, from: &str, action: &str, to: &str) {
    let button = format!(r#"tr[data-status="{from}"] button[data-action="{action}"]"#);
    b.click(&button, action).await;
    let row = format!(r#"tr[data-instance][data-status="{to}"]"#);
    b.wait(&row, &format!("the instance {to}"), 30).await;
    let arn = up.until_any_instance();
    assert_eq!(up.instance(&arn)["status"], to);
}

/// The instance drained from its page, then made ACTIVE again.
async fn drain_and_activate(up: &Up, b: &Browser) {
    b.goto("/ui/instances").await;
    instance_to(up, b, "ACTIVE", "drain", "DRAINING").await;
    instance_to(up, b, "DRAINING", "activate", "ACTIVE").await;
}

async fn sign_out(b: &Browser) {
    let cookie = b
        .client
        .get_named_cookie("berth_session")
        .await
        .expect("the session cookie");
    let cookie = format!("berth_session={}", cookie.value());
    b.goto("/ui/clusters").await;
    b.click("#signOut", "Sign out").await;
    b.wait("#signIn", "the sign-in page after signing out", 20)
        .await;
    b.goto("/ui/policies").await;
    b.wait("#signIn", "the sign-in page", 20).await;
    assert_eq!(b.path().await, "/ui/login");
    let addr = b.base.trim_start_matches("http://");
    let (status, _, _) = http(addr, "GET", "/ui/api/session", &[("cookie", &cookie)], "");
    assert_eq!(status, 401, "the session ended with the sign-out");
}
