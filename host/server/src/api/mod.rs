//! The ECS API over HTTP (awsJson1_1), the only module that serves HTTP. It
//! serves what `up.rs` composed: it builds nothing itself.
//!
//! [`router`] routes by method and path: `POST /` is the awsJson endpoint
//! (`X-Amz-Target: <prefix>.<Operation>`), behind the SigV4 check; other
//! endpoints (metrics, the console) get their own routes beside it. Tests
//! drive the router without a socket (`oneshot`); [`serve`] puts it on a
//! listener.

pub mod agent;
mod audit;
mod auth;
mod logs;
mod metrics;
mod operations;
mod serve;
pub mod sigv4;
pub mod throttle;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Extension, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

#[cfg(test)]
use auth::{MAX_BODY, MAX_POLICY_BODY};
pub use berth_client::{BERTH_PREFIX, ECS_PREFIX, JSON};
pub use metrics::serve_metrics;
pub use serve::serve;

use crate::control::health::Health;
use crate::control::{Control, ControlError};
use crate::credentials::Credentials;

/// Bytes of an error message at most, whatever built it: a message quotes
/// the offending input, and a 1 MB input must not come back whole.
const MAX_ERROR_MESSAGE: usize = 4096;

/// The limits and timeouts a client meets (docs/security.md).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// From a connection's start, or the end of the previous answer, until
    /// the request's headers are complete (so also the idle keep-alive time).
    pub header_timeout: Duration,
    /// From the headers until the whole body is read.
    pub body_timeout: Duration,
    /// The token buckets' rates, per access key and group of operations.
    pub rates: throttle::Rates,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            rates: throttle::Rates::default(),
        }
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
            message: berth_core::quote::bounded(message.into(), MAX_ERROR_MESSAGE),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match e {
            ControlError::Unavailable(_) => 503,
            _ if e.is_server() => 500,
            _ => 400,
        };
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
    limits: Limits,
    /// Turns for bodies past [`auth::SMALL_BODY`].
    large_bodies: tokio::sync::Semaphore,
    throttle: throttle::Throttle,
    /// What GET /health checks (None: it answers 503 naming nothing to check).
    health: Option<Arc<Health>>,
    /// The console's signed-in browsers.
    sessions: ui::Sessions,
    /// Set once the server stops: the console's event streams end, so
    /// they do not hold the shutdown's drain.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Api {
    /// The API over `control`, accepting requests signed with `credentials`.
    pub fn new(control: Arc<Control>, credentials: Credentials) -> Self {
        let agents = agent::AgentEndpoints::new(control.agent_plane());
        let limits = Limits::default();
        Api {
            control,
            credentials,
            agents,
            throttle: throttle::Throttle::new(limits.rates),
            limits,
            large_bodies: tokio::sync::Semaphore::new(auth::LARGE_BODIES),
            health: None,
            sessions: ui::Sessions::default(),
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Ends the console's event streams (the server is stopping).
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// With these limits and rates.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.throttle = throttle::Throttle::new(limits.rates);
        self.limits = limits;
        self
    }

    /// GET /health answers from `health`.
    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// With the agent endpoints answering from `agents` (tests).
    #[cfg(test)]
    pub fn with_agents(mut self, agents: agent::AgentEndpoints) -> Self {
        self.agents = agents;
        self
    }
}

/// The routes: `POST /` (awsJson, signed), `POST /agent/v1/...` (the agent
/// protocol, signed), `/ui` (the console, behind its sign-in), and a named
/// refusal for anything else. Every answer
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
        .route("/health", get(health))
        .merge(agent)
        .merge(ui::routes(&api))
        .fallback(no_route)
        .with_state(api)
        // signed_body reads the body within the target's own limit.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(request_id))
}

/// `GET /health`, unauthenticated: 200 when the store takes writes, this
/// process's agents are connected and the scheduler loops run; else 503.
async fn health(State(api): State<Arc<Api>>) -> Response {
    let Some(h) = api.health.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(CONTENT_TYPE, "application/json")],
            r#"{"healthy":false,"message":"this server checks nothing"}"#,
        )
            .into_response();
    };
    let report = match tokio::task::spawn_blocking(move || h.check()).await {
        Ok(r) => r,
        Err(e) => {
            return ApiError::new(
                "ServerException",
                500,
                format!("the health check failed: {e}"),
            )
            .into_response();
        }
    };
    let status = if report.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_vec(&report).unwrap_or_default();
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

/// The awsJson endpoint: the operation named by `X-Amz-Target`, answered
/// by [`call`] for the (verified) key.
async fn aws_json(
    State(api): State<Arc<Api>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let key = api.credentials.access_key_id.clone();
    match call(&api, &key, target, &body, &request_id).await {
        Ok(answer) => ([(CONTENT_TYPE, JSON)], answer).into_response(),
        Err(e) => e.into_response(),
    }
}

/// One operation for a caller already authenticated as `access_key_id`
/// (a SigV4 signature, or a console session): within its group's rate for
/// the key, counted in the metrics, and a mutating call (carried out or
/// not) recorded in the audit log before the answer goes.
async fn call(
    api: &Arc<Api>,
    access_key_id: &str,
    target: &str,
    body: &[u8],
    request_id: &str,
) -> Result<Vec<u8>, ApiError> {
    let started = std::time::Instant::now();
    let operation = target.rsplit('.').next().unwrap_or("");
    let group = throttle::Group::of(operation);
    let answer = if api.throttle.take(access_key_id, group) {
        operations::answer(&api.control, target, body).await
    } else {
        Err(ApiError::new("ThrottlingException", 400, "Rate exceeded"))
    };
    // A target berth does not serve is `unknown`: strangers do not grow
    // the metrics' label sets or the audit log.
    let known = !matches!(&answer, Err(e) if e.code == "UnknownOperationException");
    let label = if known { operation } else { "unknown" };
    let code = answer.as_ref().map_or_else(|e| e.code, |_| "Success");
    if known && audit::is_mutating(operation) {
        let event = audit::Call {
            access_key_id,
            operation,
            request_id,
            request: body,
            outcome: match &answer {
                Ok(a) => Ok(a.as_slice()),
                Err(e) => Err((e.code, e.message.as_str())),
            },
        }
        .event();
        let c = Arc::clone(&api.control);
        let written = tokio::task::spawn_blocking(move || c.record_audit(&event)).await;
        // The call was carried out (or refused) either way: its answer goes.
        if !matches!(written, Ok(Ok(()))) {
            crate::metrics::audit_write_failed();
            tracing::error!(operation, request_id = %request_id, result = ?written, "writing the audit entry failed");
        }
    }
    crate::metrics::api_request(label, code, started.elapsed());
    answer
}

/// Reads the body (up to the target's limit) and checks its SigV4 signature
/// before the endpoint runs; the endpoint gets the body read.
async fn signed_body(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    match auth::verified(&api, req).await {
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
    match auth::verified(&api, req).await {
        Ok(req) => next.run(req).await,
        // Not about who signed: too large, too slow, no Host.
        Err(e) if matches!(e.status, 400 | 408 | 413) && !e.code.contains("Signature") => {
            e.into_response()
        }
        Err(e) => {
            tracing::warn!(remote = %from, path = %path, code = e.code, "agent request refused: {}", e.message);
            ApiError::new(e.code, 403, e.message).into_response()
        }
    }
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

/// A request's id, in its extensions for the handlers (the audit log).
#[derive(Debug, Clone)]
struct RequestId(String);

/// Gives every answer an `x-amzn-RequestId`, and logs the errors with it.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
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

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
