//! The ECS API over HTTP (awsJson1_1), the only module that serves HTTP. It
//! serves what `up.rs` composed: it builds nothing itself.
//!
//! [`router`] routes by method and path: `POST /` is the awsJson endpoint
//! (`X-Amz-Target: <prefix>.<Operation>`), behind the SigV4 check; other
//! endpoints (metrics, the console) get their own routes beside it. Tests
//! drive the router without a socket (`oneshot`); [`serve`] puts it on a
//! listener.

pub mod agent;
mod logs;
mod operations;
pub mod sigv4;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

pub use berth_client::{BERTH_PREFIX, ECS_PREFIX, JSON};

use crate::control::{Control, ControlError};
use crate::credentials::Credentials;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Largest body of `InstallPolicy`, whose component travels base64 inside.
pub const MAX_POLICY_BODY: usize = 16 * 1024 * 1024;
/// How long requests in flight may take to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

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

/// An error answer: AWS code, HTTP status, message.
#[derive(Debug, Clone)]
struct ApiError {
    code: &'static str,
    status: u16,
    message: String,
}

impl ApiError {
    fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        ApiError {
            code,
            status,
            message: message.into(),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = if e.is_server() { 500 } else { 400 };
        ApiError::new(e.code(), status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    /// `{"__type", "message"}` with its status; the error rides along in the
    /// response's extensions so [`request_id`] logs it with the request id.
    fn into_response(self) -> Response {
        let body = serde_json::json!({"__type": self.code, "message": self.message}).to_string();
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, [(CONTENT_TYPE, JSON)], body).into_response();
        resp.extensions_mut().insert(self);
        resp
    }
}

/// Decodes a request body: not JSON at all, or a field of the wrong type,
/// is a SerializationException naming the field.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e) => {
            return Err(ApiError::new(
                "SerializationException",
                400,
                format!("the body is not JSON: {e}"),
            ));
        }
        Ok(v) if !v.is_object() => {
            return Err(ApiError::new(
                "SerializationException",
                400,
                "the body must be a JSON object",
            ));
        }
        Ok(_) => {}
    }
    berth_core::validate::from_json(body)
        .map_err(|e| ApiError::new("SerializationException", 400, e.to_string()))
}

/// What the API serves: the control plane, and the agent protocol over
/// it, behind the one access key.
#[derive(Debug)]
pub struct Api {
    control: Arc<Control>,
    credentials: Credentials,
    agents: agent::AgentEndpoints,
}

impl Api {
    /// The API over `control`, accepting requests signed with `credentials`.
    pub fn new(control: Arc<Control>, credentials: Credentials) -> Self {
        let agents = agent::AgentEndpoints::new(control.agent_plane());
        Api {
            control,
            credentials,
            agents,
        }
    }

    /// With the agent endpoints answering from `agents` (the server's, with
    /// its liveness; tests' with short waits).
    pub fn with_agents(mut self, agents: agent::AgentEndpoints) -> Self {
        self.agents = agents;
        self
    }
}

/// The routes: `POST /` (awsJson, signed), `POST /agent/v1/...` (the agent
/// protocol, signed), and a named refusal for anything else. Every answer
/// carries `x-amzn-RequestId`.
pub fn router(api: Arc<Api>) -> Router {
    let aws_json = post(aws_json)
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&api),
            signed_body,
        ))
        .fallback(not_post);
    let agent = agent::routes().route_layer(middleware::from_fn_with_state(
        Arc::clone(&api),
        signed_agent,
    ));
    Router::new()
        .route("/", aws_json)
        .merge(agent)
        .fallback(no_route)
        .with_state(api)
        // signed_body reads the body within the target's own limit.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(request_id))
}

/// The awsJson endpoint: the operation named by `X-Amz-Target`.
async fn aws_json(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match operations::answer(&api.control, target, &body).await {
        Ok(answer) => ([(CONTENT_TYPE, JSON)], answer).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Reads the body (up to the target's limit) and checks its SigV4 signature
/// before the endpoint runs; the endpoint gets the body read.
async fn signed_body(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    match verified(&api, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// [`signed_body`] for the agent protocol: a request not signed with the
/// server's key is refused with 403 whatever was wrong with it, and logged
/// with where it came from (an agent with a wrong key, or a stranger).
async fn signed_agent(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "an unknown address".to_owned(), |c| c.0.to_string());
    let path = req.uri().path().to_owned();
    match verified(&api, req).await {
        Ok(req) => next.run(req).await,
        Err(e) if e.status == 413 => e.into_response(),
        Err(e) => {
            tracing::warn!(remote = %from, path = %path, code = e.code, "agent request refused: {}", e.message);
            ApiError::new(e.code, 403, e.message).into_response()
        }
    }
}

/// The request with its body read (within its limit), if its signature is
/// the server's key's.
async fn verified(api: &Api, req: Request) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, body_limit(parts.uri.path(), &parts.headers)).await?;
    let verified = sigv4::verify(
        &api.credentials,
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &parts.headers,
        &body,
        chrono::Utc::now(),
    );
    if let Err(e) = verified {
        let (code, status) = e.code_and_status();
        return Err(ApiError::new(code, status, e.to_string()));
    }
    Ok(Request::from_parts(parts, Body::from(body)))
}

/// Any method but POST on `/`.
async fn not_post(method: Method) -> ApiError {
    ApiError::new(
        "UnknownOperationException",
        404,
        format!("{method} is not supported; every call is POST /"),
    )
}

/// A path nothing is served on.
async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        "UnknownOperationException",
        404,
        format!(
            "{method} {}: nothing is served there; every call is POST /",
            uri.path()
        ),
    )
}

/// Gives every answer an `x-amzn-RequestId`, and logs the errors with it.
async fn request_id(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let mut resp = next.run(req).await;
    if let Some(e) = resp.extensions_mut().remove::<ApiError>() {
        if e.status >= 500 {
            tracing::error!(code = e.code, message = %e.message, request_id = %id, "request failed");
        } else {
            tracing::debug!(code = e.code, message = %e.message, request_id = %id, "request refused");
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        "RequestEntityTooLargeException",
        413,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// Reads a body up to `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large(limit))
        }
        Err(e) => Err(ApiError::new(
            "SerializationException",
            400,
            format!("reading the body: {e}"),
        )),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// requests in flight finish (up to ten seconds).
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    // The peer's address reaches the handlers, to log refused agents.
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping.send(());
    })
    .into_future();
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r.context("serving the API"),
        Ok(()) = stopped => tokio::time::timeout(DRAIN, server)
            .await
            .context("requests still in flight after 10s")?
            .context("serving the API"),
    }
}

#[cfg(test)]
mod tests;
