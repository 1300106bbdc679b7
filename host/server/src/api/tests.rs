//! The API called in process, without a socket.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use berth_core::arn::ArnContext;
use proptest::prelude::*;
use tower::ServiceExt;

use super::*;

pub(super) fn creds() -> Credentials {
    Credentials {
        access_key_id: "AKIDTEST".into(),
        secret_access_key: "secret".into(),
    }
}

pub(super) fn api() -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    let store = berth_store::Store::open(dir.path().join("berth.redb")).unwrap();
    let control = Arc::new(Control::new(Arc::new(store), ArnContext::default()));
    control.ensure_default_cluster().unwrap();
    (dir, router(Arc::new(Api::new(control, creds()))))
}

pub(super) fn request(target: &str, body: &[u8], signer: Option<&Credentials>) -> Request<Body> {
    let base = vec![
        ("content-type".to_owned(), JSON.to_owned()),
        ("host".to_owned(), "localhost".to_owned()),
        ("x-amz-target".to_owned(), target.to_owned()),
    ];
    let mut b = Request::builder().method("POST").uri("/");
    for (n, v) in &base {
        b = b.header(n, v);
    }
    if let Some(c) = signer {
        for (n, v) in
            berth_client::sigv4::sign(c, "us-east-1", "ecs", "/", &base, body, chrono::Utc::now())
        {
            b = b.header(n, v);
        }
    }
    b.body(Body::from(body.to_vec())).unwrap()
}

/// The router's answer to one request, without a socket.
pub(super) async fn send(api: &Router, req: Request<Body>) -> (u16, serde_json::Value) {
    let resp = api.clone().oneshot(req).await.unwrap();
    assert!(resp.headers().contains_key("x-amzn-requestid"));
    assert_eq!(resp.headers()["content-type"], JSON);
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn call(api: &Router, target: &str, body: &[u8]) -> (u16, serde_json::Value) {
    send(api, request(target, body, Some(&creds()))).await
}

fn ecs(op: &str) -> String {
    format!("{ECS_PREFIX}.{op}")
}

#[tokio::test]
async fn bad_requests_are_named_and_change_nothing() {
    let (_d, api) = api();
    let cases: Vec<(String, &[u8], u16, &str, &str)> = vec![
        (
            ecs("CreateCluster"),
            b"{not json",
            400,
            "SerializationException",
            "not JSON",
        ),
        (
            ecs("CreateCluster"),
            b"[1]",
            400,
            "SerializationException",
            "JSON object",
        ),
        (
            ecs("CreateCluster"),
            br#"{"clusterName": 7}"#,
            400,
            "SerializationException",
            "clusterName",
        ),
        (
            ecs("CreateCluster"),
            br#"{"clusterName": "bad name"}"#,
            400,
            "InvalidParameterException",
            "clusterName",
        ),
        (
            ecs("RunTask"),
            br#"{"taskDefinition": "x", "count": "two"}"#,
            400,
            "SerializationException",
            "count",
        ),
        (
            ecs("RunTask"),
            br#"{"taskDefinition": "x", "count": 11}"#,
            400,
            "InvalidParameterException",
            "count: 11",
        ),
        (
            ecs("Frobnicate"),
            b"{}",
            400,
            "UnknownOperationException",
            "Frobnicate",
        ),
        (
            "NoDot".into(),
            b"{}",
            400,
            "UnknownOperationException",
            "NoDot",
        ),
    ];
    for (target, body, status, code, needle) in cases {
        let (s, v) = call(&api, &target, body).await;
        assert_eq!(
            (s, v["__type"].as_str().unwrap()),
            (status, code),
            "{target} {v}"
        );
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{target}: {v}"
        );
    }
    let (_, v) = call(&api, &ecs("ListClusters"), b"").await;
    assert_eq!(
        v["clusterArns"].as_array().unwrap().len(),
        1,
        "only the default cluster: {v}"
    );
}

#[tokio::test]
async fn signatures_are_checked() {
    let (_d, api) = api();
    let status_code = |r: Request<Body>| {
        let api = api.clone();
        async move {
            let (s, v) = send(&api, r).await;
            (s, v["__type"].as_str().unwrap().to_owned())
        }
    };
    let body = br#"{"clusterName": "x"}"#;
    let unsigned = request(&ecs("CreateCluster"), body, None);
    assert_eq!(
        status_code(unsigned).await,
        (403, "MissingAuthenticationTokenException".into())
    );
    let wrong_secret = Credentials {
        secret_access_key: "other".into(),
        ..creds()
    };
    let r = request(&ecs("CreateCluster"), body, Some(&wrong_secret));
    assert_eq!(
        status_code(r).await,
        (403, "InvalidSignatureException".into())
    );
    let wrong_key = Credentials {
        access_key_id: "AKIDOTHER".into(),
        ..creds()
    };
    let r = request(&ecs("CreateCluster"), body, Some(&wrong_key));
    assert_eq!(
        status_code(r).await,
        (403, "UnrecognizedClientException".into())
    );
    // Signed for one body, sent with another.
    let mut tampered = request(&ecs("CreateCluster"), body, Some(&creds()));
    *tampered.body_mut() = Body::from(&br#"{"clusterName": "y"}"#[..]);
    assert_eq!(
        status_code(tampered).await,
        (403, "InvalidSignatureException".into())
    );
    let (_, v) = call(&api, &ecs("ListClusters"), b"{}").await;
    assert_eq!(
        v["clusterArns"].as_array().unwrap().len(),
        1,
        "nothing was created: {v}"
    );
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let (_d, api) = api();
    let big = vec![b' '; MAX_BODY + 1];
    let (s, v) = call(&api, &ecs("ListClusters"), &big).await;
    assert_eq!(
        (s, v["__type"].as_str().unwrap()),
        (413, "RequestEntityTooLargeException")
    );
}

#[tokio::test]
async fn install_policy_has_the_larger_limit() {
    let (_d, api) = api();
    let target = format!("{BERTH_PREFIX}.InstallPolicy");
    // Past the general limit, within InstallPolicy's: read, signed, decoded.
    let (s, v) = call(&api, &target, &vec![b' '; MAX_BODY + 1]).await;
    assert_ne!(s, 413, "{v}");
    let (s, v) = call(&api, &target, &vec![b' '; MAX_POLICY_BODY + 1]).await;
    assert_eq!(
        (s, v["__type"].as_str().unwrap()),
        (413, "RequestEntityTooLargeException")
    );
}

#[tokio::test]
async fn only_post_on_the_root_is_served() {
    let (_d, api) = api();
    let get = Request::builder()
        .method("GET")
        .uri("/")
        .body(Body::empty())
        .unwrap();
    let (s, v) = send(&api, get).await;
    assert_eq!(
        (s, v["__type"].as_str().unwrap()),
        (404, "UnknownOperationException")
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("every call is POST /"),
        "{v}"
    );
    let elsewhere = Request::builder()
        .method("POST")
        .uri("/elsewhere")
        .body(Body::from("{}"))
        .unwrap();
    let (s, v) = send(&api, elsewhere).await;
    assert_eq!(
        (s, v["__type"].as_str().unwrap()),
        (404, "UnknownOperationException")
    );
    assert!(v["message"].as_str().unwrap().contains("/elsewhere"), "{v}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// No request body makes a decoder panic: they answer or refuse.
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), json in "[{}\\[\\]\":,a-zA-Z0-9 ]{0,64}") {
        for b in [&bytes[..], json.as_bytes()] {
            let _ = decode::<crate::control::types::RunTaskRequest>(b);
            let _ = decode::<crate::control::types::RegisterTaskDefinitionRequest>(b);
            let _ = decode::<crate::control::types::RegisterContainerInstanceRequest>(b);
            let _ = decode::<crate::control::types::ListTasksRequest>(b);
            let _ = decode::<crate::control::types::DescribeClustersRequest>(b);
        }
    }
}
