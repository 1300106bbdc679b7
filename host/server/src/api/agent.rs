//! The agent protocol over HTTP: `POST /agent/v1/<message>`, one signed
//! request per message, behind the same SigV4 check, body limits and
//! request ids as the ECS API. The bodies are `berth_protocol`'s messages
//! as JSON; the control plane answering them is the one `berth up`'s
//! in-process agents use (`LocalControlPlane`), so both kinds of agent see
//! the same rules. Two calls are long polls: `manifest` (with
//! `knownSequence`) and `log-requests`. See docs/architecture.md for why
//! long polls over plain requests rather than a websocket.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use berth_protocol::{
    ControlPlane, Heartbeat, LogAnswer, LogRequestPoll, LogRequests, ManifestRequest,
    ProtocolError, RegisterInstance, RetireInstance, SubmitContainerStateChange, TaskStateChange,
    TaskStateChanges,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Api, ApiError};
use crate::control::agents::LocalControlPlane;

/// Where the agent protocol is served.
pub const AGENT_PATH: &str = "/agent/v1";
/// How long a log-request poll waits for a read before it answers empty.
pub const LOG_POLL_WAIT: Duration = Duration::from_secs(20);

/// What the agent endpoints answer with.
#[derive(Debug)]
pub struct AgentEndpoints {
    plane: LocalControlPlane,
    log_poll_wait: Duration,
}

impl AgentEndpoints {
    /// Over `plane`, polls for log reads waiting up to [`LOG_POLL_WAIT`].
    pub fn new(plane: LocalControlPlane) -> Self {
        AgentEndpoints {
            plane,
            log_poll_wait: LOG_POLL_WAIT,
        }
    }

    /// Log-request polls wait at most `wait` (tests).
    #[cfg(test)]
    pub fn with_log_poll_wait(mut self, wait: Duration) -> Self {
        self.log_poll_wait = wait;
        self
    }
}

/// The agent routes (the caller puts the signature check in front).
pub(super) fn routes() -> Router<Arc<Api>> {
    let at = |m: &str| format!("{AGENT_PATH}/{m}");
    Router::new()
        .route(&at("register"), post(register))
        .route(&at("heartbeat"), post(heartbeat))
        .route(&at("retire"), post(retire))
        .route(&at("manifest"), post(manifest))
        .route(&at("task-state"), post(task_state))
        .route(&at("container-state"), post(container_state))
        .route(&at("task-states"), post(task_states))
        .route(&at("log-requests"), post(log_requests))
        .route(&at("log-answers"), post(log_answers))
}

/// Decodes a protocol message; a malformed one is a SerializationException.
fn message<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            "SerializationException",
            400,
            format!("not a message of the agent protocol: {e}"),
        )
    })
}

/// The answer as JSON, or the protocol error: refused 400, unavailable 503.
fn reply<T: Serialize>(answer: Result<T, ProtocolError>) -> Response {
    let (status, body) = match answer {
        Ok(v) => (StatusCode::OK, serde_json::to_vec(&v)),
        Err(e) => {
            let status = match e {
                ProtocolError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, serde_json::to_vec(&e))
        }
    };
    match body {
        Ok(b) => (status, [(CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => ApiError::new("InternalFailure", 500, format!("encoding the answer: {e}"))
            .into_response(),
    }
}

/// Decodes `body` as `Req` and answers with what `f` makes of it.
async fn handle<Req, Resp, Fut>(body: &[u8], f: impl FnOnce(Req) -> Fut) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    Fut: Future<Output = Result<Resp, ProtocolError>>,
{
    match message::<Req>(body) {
        Ok(req) => reply(f(req).await),
        Err(e) => e.into_response(),
    }
}

async fn register(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let plane = &api.agents.plane;
    handle(&body, |r: RegisterInstance| plane.register_instance(r)).await
}

async fn heartbeat(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let plane = &api.agents.plane;
    handle(&body, |r: Heartbeat| plane.heartbeat(r)).await
}

async fn retire(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let plane = &api.agents.plane;
    handle(&body, |r: RetireInstance| plane.retire_instance(r)).await
}

async fn manifest(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let plane = &api.agents.plane;
    handle(&body, |r: ManifestRequest| plane.task_manifest(r)).await
}

async fn task_state(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let plane = &api.agents.plane;
    handle(&body, |r: TaskStateChange| {
        plane.submit_task_state_change(r)
    })
    .await
}

async fn task_states(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let plane = &api.agents.plane;
    handle(&body, |r: TaskStateChanges| {
        plane.submit_task_state_changes(r)
    })
    .await
}

async fn container_state(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let plane = &api.agents.plane;
    handle(&body, |r: SubmitContainerStateChange| {
        plane.submit_container_state_change(r)
    })
    .await
}

/// An agent's poll for the log reads waiting for it.
async fn log_requests(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let wait = api.agents.log_poll_wait;
    handle(&body, |r: LogRequestPoll| async move {
        let reader = api.control.log_readers().remote(&r.container_instance_arn);
        Ok::<_, ProtocolError>(LogRequests {
            requests: reader.take(wait).await,
        })
    })
    .await
}

/// The answer to an accepted log answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    /// False when no read waits for it any more (it timed out).
    accepted: bool,
}

async fn log_answers(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    handle(&body, |a: LogAnswer| async move {
        let reader = api.control.log_readers().remote(&a.container_instance_arn);
        let id = a.id;
        Ok::<_, ProtocolError>(Accepted {
            accepted: reader.answer(id, a.into_result()),
        })
    })
    .await
}

#[cfg(test)]
mod tests;
