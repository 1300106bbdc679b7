//! The console's routes in process: nothing without a session, sign-in
//! and sign-out, CSRF on every call, and calls answered and audited as the
//! API's.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use berth_core::arn::ArnContext;
use tower::ServiceExt;

use super::super::tests::creds;
use super::super::{Api, router};
use super::session::{COOKIE_NAME, CSRF_HEADER};
use crate::control::Control;
use crate::control::audit::ListAuditEventsRequest;

struct Console {
    _dir: tempfile::TempDir,
    control: Arc<Control>,
    router: axum::Router,
}

fn console() -> Console {
    let dir = tempfile::tempdir().unwrap();
    let store = berth_store::Store::open(dir.path().join("berth.redb")).unwrap();
    let control = Arc::new(Control::new(Arc::new(store), ArnContext::default()));
    control.ensure_default_cluster().unwrap();
    let router = router(Arc::new(Api::new(Arc::clone(&control), creds())));
    Console {
        _dir: dir,
        control,
        router,
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(c: &Console, req: Request<Body>) -> Answer {
    let resp = c.router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path).header("host", "localhost");
    if let Some(c) = cookie {
        b = b.header("cookie", format!("{COOKIE_NAME}={c}"));
    }
    b.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: Option<&str>, csrf: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(c) = cookie {
        b = b.header("cookie", format!("{COOKIE_NAME}={c}"));
    }
    if let Some(t) = csrf {
        b = b.header(CSRF_HEADER, t);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

/// Signs in with `key`/`secret`: the session id from the cookie.
async fn sign_in(c: &Console, key: &str, secret: &str) -> Result<String, Answer> {
    let form = format!("accessKeyId={key}&secretAccessKey={secret}");
    let req = Request::post("/ui/login")
        .header("host", "localhost")
        .header("origin", "http://localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let a = send(c, req).await;
    if a.status != 303 {
        return Err(a);
    }
    assert_eq!(a.headers["location"], "/ui/clusters");
    let cookie = a.headers["set-cookie"].to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    let id = cookie
        .strip_prefix(&format!("{COOKIE_NAME}="))
        .and_then(|r| r.split(';').next())
        .unwrap();
    Ok(id.to_owned())
}

async fn csrf_of(c: &Console, session: &str) -> String {
    let a = send(c, get("/ui/api/session", Some(session))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["accessKeyId"], "AKIDTEST");
    v["csrfToken"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn nothing_is_served_without_a_session() {
    let c = console();
    for page in ["/ui/clusters", "/ui/services", "/ui/policies"] {
        let a = send(&c, get(page, None)).await;
        assert_eq!(a.status, 303, "{page}");
        assert_eq!(a.headers["location"], "/ui/login", "{page}");
        // A made-up session is no session.
        let a = send(&c, get(page, Some("0123"))).await;
        assert_eq!(a.status, 303, "{page}");
    }
    for path in ["/ui/api/session", "/ui/api/events", "/ui/assets/app.js"] {
        let a = send(&c, get(path, None)).await;
        assert_eq!(a.status, 401, "{path}: {}", a.body);
    }
    let a = send(&c, post("/ui/api/ecs/ListClusters", None, None, "{}")).await;
    assert_eq!(a.status, 401);
    assert!(a.body.contains("UnauthorizedException"), "{}", a.body);
    // The sign-in page itself is served, with its inline style allowed by hash only.
    let a = send(&c, get("/ui/login", None)).await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("name=\"secretAccessKey\""));
    let csp = a.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("style-src 'sha256-"), "{csp}");
    assert_eq!(a.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn signing_in_needs_the_api_key_and_secret() {
    let c = console();
    let refused = sign_in(&c, "AKIDTEST", "wrong").await.unwrap_err();
    assert_eq!(refused.status, 401);
    assert!(
        refused.body.contains("not the ones this server accepts"),
        "{}",
        refused.body
    );
    let refused = sign_in(&c, "AKIDTEST", "").await.unwrap_err();
    assert!(
        refused.body.contains("enter the secret access key"),
        "{}",
        refused.body
    );
    // Markup in what comes back is escaped.
    let refused = sign_in(&c, "%3Cscript%3E", "x").await.unwrap_err();
    assert!(!refused.body.contains("<script>"));

    let session = sign_in(&c, "AKIDTEST", "secret").await.unwrap();
    let page = send(&c, get("/ui/services", Some(session.as_str()))).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/ui/assets/app.js"));
    let js = send(&c, get("/ui/assets/app.js", Some(session.as_str()))).await;
    assert_eq!(js.status, 200);
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );

    // Signing out needs the token too, then the session is gone.
    let csrf = csrf_of(&c, &session).await;
    let a = send(&c, post("/ui/logout", Some(session.as_str()), None, "")).await;
    assert_eq!(a.status, 403);
    let a = send(
        &c,
        post(
            "/ui/logout",
            Some(session.as_str()),
            Some(csrf.as_str()),
            "",
        ),
    )
    .await;
    assert_eq!(a.status, 204);
    assert!(
        a.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        send(&c, get("/ui/api/session", Some(session.as_str())))
            .await
            .status,
        401
    );
    assert_eq!(
        send(&c, get("/ui/clusters", Some(session.as_str())))
            .await
            .status,
        303
    );
}

#[tokio::test]
async fn a_sign_in_from_another_site_is_refused() {
    let c = console();
    let req = Request::post("/ui/login")
        .header("host", "localhost")
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("accessKeyId=AKIDTEST&secretAccessKey=secret"))
        .unwrap();
    let a = send(&c, req).await;
    assert_eq!(a.status, 403);
    assert!(!a.headers.contains_key("set-cookie"));
    // Nor is a form past its bound read.
    let big = format!("accessKeyId={}&secretAccessKey=x", "A".repeat(20_000));
    let req = Request::post("/ui/login")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(big))
        .unwrap();
    assert_eq!(send(&c, req).await.status, 413);
}

#[tokio::test]
async fn calls_need_the_csrf_token_and_are_audited_with_the_key() {
    let c = console();
    let session = sign_in(&c, "AKIDTEST", "secret").await.unwrap();
    let csrf = csrf_of(&c, &session).await;
    let create = r#"{"clusterName":"from-console"}"#;

    let a = send(
        &c,
        post(
            "/ui/api/ecs/CreateCluster",
            Some(session.as_str()),
            None,
            create,
        ),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("CSRF"), "{}", a.body);
    let a = send(
        &c,
        post(
            "/ui/api/ecs/CreateCluster",
            Some(session.as_str()),
            Some("nope"),
            create,
        ),
    )
    .await;
    assert_eq!(a.status, 403);
    let mut foreign = post(
        "/ui/api/ecs/CreateCluster",
        Some(session.as_str()),
        Some(csrf.as_str()),
        create,
    );
    foreign
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    assert_eq!(send(&c, foreign).await.status, 403);
    let listed = c
        .control
        .list_clusters(crate::control::types::ListRequest::default())
        .unwrap();
    assert_eq!(listed.cluster_arns.len(), 1, "nothing was created");

    let a = send(
        &c,
        post(
            "/ui/api/ecs/CreateCluster",
            Some(session.as_str()),
            Some(csrf.as_str()),
            create,
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.headers.contains_key("x-amzn-requestid"));
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["cluster"]["clusterName"], "from-console");
    // Errors are the API's.
    let a = send(
        &c,
        post(
            "/ui/api/ecs/DescribeServices",
            Some(session.as_str()),
            Some(csrf.as_str()),
            r#"{"cluster":"nope","services":["x"]}"#,
        ),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("ClusterNotFoundException"), "{}", a.body);
    let a = send(
        &c,
        post(
            "/ui/api/nope/ListClusters",
            Some(session.as_str()),
            Some(csrf.as_str()),
            "{}",
        ),
    )
    .await;
    assert_eq!(a.status, 404);

    let events = c
        .control
        .list_audit_events(ListAuditEventsRequest::default())
        .unwrap()
        .events;
    let created: Vec<_> = events
        .iter()
        .filter(|e| e.operation == "CreateCluster")
        .collect();
    assert_eq!(created.len(), 1, "{events:?}");
    assert_eq!(created[0].access_key_id, "AKIDTEST");
    assert_eq!(created[0].result, "Success");
    assert!(
        created[0]
            .targets
            .iter()
            .any(|t| t.ends_with("cluster/from-console")),
        "{created:?}"
    );
    assert!(events.iter().all(|e| e.operation != "DescribeServices"));
}
