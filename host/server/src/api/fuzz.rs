//! Fuzz targets at the API's door: every operation's awsJson body decoded
//! and answered by a real control plane on a real store (signed, so the
//! body gets past authentication), and the SigV4 headers of an unsigned
//! stranger. Whatever arrives, the answer is a 4xx naming the problem (or a
//! success), never a 500, and its message is bounded. `cargo test` runs
//! them on their corpus and random inputs; `cargo bolero test` fuzzes them
//! (docs/fuzzing.md).

use std::sync::OnceLock;

use axum::Router;
use axum::http::HeaderMap;
use axum::http::header::{HeaderName, HeaderValue};
use chrono::TimeZone;

use super::tests::{api, creds, request, send};
use super::{BERTH_PREFIX, ECS_PREFIX, MAX_ERROR_MESSAGE, sigv4};

/// One control plane for the whole run: state built by earlier inputs
/// (clusters, task definitions, services) is what later ones meet.
fn shared() -> &'static (tempfile::TempDir, Router, tokio::runtime::Runtime) {
    static API: OnceLock<(tempfile::TempDir, Router, tokio::runtime::Runtime)> = OnceLock::new();
    API.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (dir, router) = api();
        (dir, router, rt)
    })
}

/// Input: the operation's name on the first line (`berth.` before berth's
/// own), its body after.
#[test]
fn operations() {
    bolero::check!().for_each(|input: &[u8]| {
        let (op, body) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (&input[..i], &input[i + 1..]),
            None => (input, &b""[..]),
        };
        let op = String::from_utf8_lossy(op);
        let target = match op.strip_prefix("berth.") {
            Some(own) => format!("{BERTH_PREFIX}.{own}"),
            None => format!("{ECS_PREFIX}.{op}"),
        };
        if HeaderValue::from_str(&target).is_err() {
            return;
        }
        let (_, router, rt) = shared();
        let (status, answer) = rt.block_on(send(router, request(&target, body, Some(&creds()))));
        if status != 200 {
            assert!(
                (400..500).contains(&status) || status == 503,
                "{target}: {status} {answer}"
            );
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(
                message.len() <= MAX_ERROR_MESSAGE + 64,
                "{target}: a {}-byte message",
                message.len()
            );
            assert!(answer["__type"].is_string(), "{target}: {answer}");
        }
    });
}

/// Input: `Authorization`, `X-Amz-Date` and `X-Amz-Content-Sha256` values
/// on the first three lines, the body after.
#[test]
fn sigv4_headers() {
    let creds = creds();
    let now = chrono::Utc
        .with_ymd_and_hms(2015, 8, 30, 12, 36, 0)
        .single()
        .expect("a time");
    bolero::check!().for_each(|input: &[u8]| {
        let mut parts = input.splitn(4, |&b| b == b'\n');
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("localhost"));
        for name in ["authorization", "x-amz-date", "x-amz-content-sha256"] {
            if let Some(v) = parts.next()
                && let Ok(v) = HeaderValue::from_bytes(v)
            {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        let body = parts.next().unwrap_or_default();
        if let Err(e) = sigv4::verify(&creds, "POST", "/", "", &headers, body, now) {
            assert!(
                e.to_string().len() <= 1024,
                "a {}-byte refusal",
                e.to_string().len()
            );
        }
    });
}
