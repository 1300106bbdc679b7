//! `/ui/api/...`: what the console's pages read and do, for a signed-in
//! browser.
//!
//! - `GET /ui/api/session`: who is signed in, the CSRF token, the expiry.
//! - `POST /ui/api/ecs/{Operation}` and `POST /ui/api/berth/{Operation}`:
//!   one operation of the API (its JSON body in, its JSON answer out),
//!   answered by [`super::super::call`], the awsJson endpoint's own path:
//!   the same operation table and control-layer functions, throttle,
//!   metrics and audit log (with the session's access key). Every POST
//!   carries the session's CSRF token.
//! - `GET /ui/api/events`: server-sent events, a `change` (the store's
//!   revision) at each commit, at most one every [`COALESCE`], for the
//!   pages to read again.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, Request, State};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::super::auth::{MAX_BODY, MAX_POLICY_BODY};
use super::super::{Api, ApiError, BERTH_PREFIX, ECS_PREFIX, JSON, RequestId};
use super::session::{self, Session};

/// Change events are sent at most this often: a burst of commits (tasks
/// starting) is one reload of the page.
const COALESCE: Duration = Duration::from_millis(400);
/// An event stream re-checks its session at least this often.
const SESSION_CHECK: Duration = Duration::from_secs(15);

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/session", get(session_info))
        .route("/events", get(events))
        .route("/{prefix}/{operation}", post(operation))
        .fallback(|| async {
            ApiError::new(
                "UnknownOperationException",
                404,
                "nothing is served there: the console's calls are POST /ui/api/ecs/OPERATION and /ui/api/berth/OPERATION",
            )
        })
}

/// 401: no session (never signed in, signed out, or expired).
pub(super) fn unauthorized() -> Response {
    ApiError::new(
        "UnauthorizedException",
        401,
        "sign in first: POST /ui/login with the access key and secret (the console's page /ui/login)",
    )
    .into_response()
}

/// The session of the request's cookie, into its extensions; else 401.
pub(super) async fn signed_in(
    State(api): State<Arc<Api>>,
    mut req: Request,
    next: Next,
) -> Response {
    match api.sessions.of(req.headers()) {
        Some((id, s)) => {
            req.extensions_mut().insert(SessionId(id));
            req.extensions_mut().insert(s);
            next.run(req).await
        }
        None => unauthorized(),
    }
}

/// The id of the request's session.
#[derive(Debug, Clone)]
struct SessionId(String);

fn csrf_refused() -> Response {
    ApiError::new(
        "ForbiddenException",
        403,
        format!(
            "the request lacks this session's CSRF token (header {}) or comes from another site's page",
            session::CSRF_HEADER
        ),
    )
    .into_response()
}

/// `GET /ui/api/session`.
async fn session_info(Extension(s): Extension<Session>) -> Response {
    let body = serde_json::json!({
        "accessKeyId": s.access_key_id,
        "csrfToken": s.csrf,
        "expiresAt": s.expires_at,
        "pages": super::PAGES,
        "version": env!("CARGO_PKG_VERSION"),
    });
    ([(CONTENT_TYPE, JSON)], body.to_string()).into_response()
}

/// `POST /ui/logout` (with the CSRF token): ends the session and clears
/// the cookie. Without a session it just clears the cookie.
pub(super) async fn logout(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if let Some((id, s)) = api.sessions.of(&headers) {
        if !session::csrf_ok(&headers, &s) {
            return csrf_refused();
        }
        api.sessions.close(&id);
        tracing::info!(access_key_id = %s.access_key_id, "console sign-out");
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(SET_COOKIE, session::clear_cookie());
    resp
}

/// `POST /ui/api/{ecs|berth}/{Operation}`: the operation, as the API
/// answers it, for the session's key.
async fn operation(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path((prefix, operation)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !session::csrf_ok(&headers, &s) {
        return csrf_refused();
    }
    let prefix = match prefix.as_str() {
        "ecs" => ECS_PREFIX,
        "berth" => BERTH_PREFIX,
        other => {
            return ApiError::new(
                "UnknownOperationException",
                404,
                format!("`{other}` is neither ecs nor berth"),
            )
            .into_response();
        }
    };
    let limit = if operation == "InstallPolicy" {
        MAX_POLICY_BODY
    } else {
        MAX_BODY
    };
    let read = tokio::time::timeout(api.limits.body_timeout, axum::body::to_bytes(body, limit));
    let body = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return ApiError::new(
                "RequestEntityTooLargeException",
                413,
                format!("the request body is larger than {limit} bytes, or broke off"),
            )
            .into_response();
        }
        Err(_) => {
            return ApiError::new(
                "RequestTimeoutException",
                408,
                "the request body did not arrive in time",
            )
            .into_response();
        }
    };
    let target = format!("{prefix}.{operation}");
    match super::super::call(&api, &s.access_key_id, &target, &body, &request_id).await {
        Ok(answer) => ([(CONTENT_TYPE, JSON)], answer).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /ui/api/events`: a `change` event now, then after each commit to
/// the store (coalesced); ends when the session does or the server stops.
async fn events(
    State(api): State<Arc<Api>>,
    Extension(SessionId(id)): Extension<SessionId>,
) -> Response {
    let watch = match api.control.watch_changes() {
        Ok(w) => w,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let stopping = api.stopping.subscribe();
    let first = watch.revision();
    let state = (watch, stopping, Some(first));
    let stream = futures_util::stream::unfold(state, move |(mut watch, mut stopping, now)| {
        let api = Arc::clone(&api);
        let id = id.clone();
        async move {
            if let Some(rev) = now {
                let event = Event::default().event("change").data(rev.to_string());
                return Some((
                    Ok::<_, std::convert::Infallible>(event),
                    (watch, stopping, None),
                ));
            }
            loop {
                if *stopping.borrow() {
                    return None;
                }
                tokio::select! {
                    changed = tokio::time::timeout(SESSION_CHECK, watch.next()) => match changed {
                        Ok(Ok(_)) => break,
                        Ok(Err(_)) => return None,
                        Err(_) => {}
                    },
                    _ = stopping.changed() => return None,
                }
                api.sessions.get(&id)?;
            }
            api.sessions.get(&id)?;
            tokio::time::sleep(COALESCE).await;
            // What landed while waiting is in this event too.
            let _ = watch.poll();
            let event = Event::default()
                .event("change")
                .data(watch.revision().to_string());
            Some((Ok(event), (watch, stopping, None)))
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
