//! Authentication before the body: what a request's headers can prove is
//! checked before a byte of its body is read, so a stranger's body is never
//! buffered. botocore signs an ECS request's body hash without sending it
//! (no `x-amz-content-sha256`), so the signature itself needs the body: a
//! request whose headers name the server's key within the clock skew has
//! its body read (within its operation's limit and the body timeout), then
//! its signature checked.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_LENGTH, HOST};
use http_body_util::BodyExt;

use super::{Api, ApiError, BERTH_PREFIX, agent, sigv4};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Largest body of `InstallPolicy`, whose component travels base64 inside.
pub const MAX_POLICY_BODY: usize = 16 * 1024 * 1024;
/// Bytes of a body read freely once its headers passed; a body larger
/// than this waits for one of [`LARGE_BODIES`] turns, so the key id alone
/// (which is no secret) cannot make the server buffer much.
pub const SMALL_BODY: usize = 64 * 1024;
/// Bodies larger than [`SMALL_BODY`] read at once, at most.
pub const LARGE_BODIES: usize = 8;

/// The body limit of a request, by its target (or, for an agent's log
/// answer, which carries a page of logs, its path).
fn body_limit(path: &str, headers: &HeaderMap) -> usize {
    let install = headers.get("x-amz-target").and_then(|v| v.to_str().ok())
        == Some(&*format!("{BERTH_PREFIX}.InstallPolicy"));
    let log_answer = path == format!("{}/log-answers", agent::AGENT_PATH);
    if install || log_answer {
        MAX_POLICY_BODY
    } else {
        MAX_BODY
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        "RequestEntityTooLargeException",
        413,
        format!("the request body is larger than {limit} bytes"),
    )
}

fn auth_error(e: &sigv4::AuthError) -> ApiError {
    let (code, status) = e.code_and_status();
    ApiError::new(code, status, e.to_string())
}

/// The request with its body read (within its limit), if its signature is
/// the server's key's. Refusals that the headers can tell (no Host, no or
/// a malformed signature, another key, an expired time, a declared length
/// over the limit) come before the body is read.
pub(super) async fn verified(api: &Api, req: Request) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    if !parts.headers.contains_key(HOST) {
        return Err(ApiError::new(
            "MissingHostHeaderException",
            400,
            "the request has no Host header (HTTP/1.0 clients must send one too): \
             SigV4 signs the host, so the request cannot be authenticated",
        ));
    }
    let pre = sigv4::precheck(&api.credentials, &parts.headers, chrono::Utc::now())
        .map_err(|e| auth_error(&e))?;
    let limit = body_limit(parts.uri.path(), &parts.headers);
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let body = tokio::time::timeout(api.limits.body_timeout, read_body(api, body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                "RequestTimeoutException",
                408,
                format!(
                    "the request body did not arrive within {} s",
                    api.limits.body_timeout.as_secs_f64()
                ),
            )
        })??;
    sigv4::verify_signature(
        &api.credentials,
        &pre,
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &parts.headers,
        &body,
    )
    .map_err(|e| auth_error(&e))?;
    Ok(Request::from_parts(parts, Body::from(body)))
}

/// Reads a body up to `limit` bytes; past [`SMALL_BODY`] it waits for a
/// turn among [`LARGE_BODIES`].
async fn read_body(api: &Api, mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut large = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                "SerializationException",
                400,
                format!("reading the body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let len = buf.len() + data.len();
        if len > limit {
            return Err(too_large(limit));
        }
        if len > SMALL_BODY && large.is_none() {
            large = Some(api.large_bodies.acquire().await.map_err(|_| {
                ApiError::new("ServiceUnavailableException", 503, "the server is stopping")
            })?);
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}
