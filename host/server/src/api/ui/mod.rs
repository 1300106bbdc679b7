//! The operator's console: `/ui`, served on the API's listener from assets
//! compiled into the binary (plain HTML, CSS and JavaScript modules; no
//! build step). The pages read and act through `/ui/api/...` (`calls.rs`),
//! which answers each operation through the same operation table and
//! control-layer functions as the awsJson endpoint, authenticated by a
//! session (`session.rs`) instead of a SigV4 signature, and live updates
//! come as server-sent events at each commit to the store.
//!
//! Nothing under `/ui` but the sign-in page is served without a session:
//! pages redirect to it, everything else answers 401.

mod calls;
pub mod session;

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub use session::Sessions;

use super::Api;

/// The pages, each a path under `/ui/` served by the one app shell.
pub const PAGES: &[&str] = &["clusters", "instances", "tasks", "services", "policies"];

/// The sign-in form's body at most (the API's router reads bodies itself,
/// so it lifts axum's default limit; the form gets one back).
const LOGIN_BODY: usize = 16 * 1024;

const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_HTML: &str = include_str!("assets/app.html");

/// The assets under `/ui/assets/`: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    ("app.js", JS, include_str!("assets/app.js")),
    ("lib.js", JS, include_str!("assets/lib.js")),
    ("fleet.js", JS, include_str!("assets/fleet.js")),
    ("tasks.js", JS, include_str!("assets/tasks.js")),
    ("services.js", JS, include_str!("assets/services.js")),
    ("policies.js", JS, include_str!("assets/policies.js")),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("assets/favicon.svg"),
    ),
];
const JS: &str = "text/javascript; charset=utf-8";

/// The console's pages may load only what this server serves.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The sign-in page carries its style inline (it is the one page shown
/// without a session, so it needs no asset): allowed by its hash alone.
static LOGIN_CSP: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine as _;
    use sha2::Digest as _;
    let style = LOGIN_HTML
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map_or("", |(style, _)| style);
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
});

/// The console's routes, merged into the API's router.
pub(super) fn routes(api: &Arc<Api>) -> Router<Arc<Api>> {
    // A layer, not a route layer: the fallback (a path nothing answers)
    // is behind the session too.
    let api_routes = calls::routes().layer(middleware::from_fn_with_state(
        Arc::clone(api),
        calls::signed_in,
    ));
    Router::new()
        .route("/ui", get(|| async { see_other("/ui/clusters") }))
        .route("/ui/", get(|| async { see_other("/ui/clusters") }))
        .route(
            "/ui/login",
            get(login_page)
                .post(login)
                .layer(DefaultBodyLimit::max(LOGIN_BODY)),
        )
        .route("/ui/logout", post(calls::logout))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/{page}", get(page))
        .nest("/ui/api", api_routes)
        .layer(middleware::map_response(headers))
}

/// What every console answer carries: no caching (answers are per
/// session), no sniffing, no framing, and the content policy.
async fn headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(CONTENT_SECURITY_POLICY) {
        h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    resp
}

fn see_other(to: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, HeaderValue::from_static(to))],
    )
        .into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// Text for an HTML page, with its markup characters escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The sign-in page, with `error` (if any) shown above the form.
fn login_html(status: StatusCode, error: Option<&str>) -> Response {
    let error = error.map_or_else(String::new, |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, escape(e))
    });
    let mut resp = html(status, LOGIN_HTML.replace("<!--error-->", &error));
    if let Ok(v) = HeaderValue::from_str(&LOGIN_CSP) {
        resp.headers_mut().insert(CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// `GET /ui/login`: the form, or the console for a browser signed in.
async fn login_page(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if api.sessions.of(&headers).is_some() {
        return see_other("/ui/clusters");
    }
    login_html(StatusCode::OK, None)
}

/// The sign-in form's fields (missing ones are empty, so refused by name).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LoginForm {
    access_key_id: String,
    secret_access_key: String,
}

/// `POST /ui/login`: the API's access key and secret open a session.
async fn login(State(api): State<Arc<Api>>, headers: HeaderMap, form: Form<LoginForm>) -> Response {
    if !session::origin_ok(&headers) {
        return login_html(
            StatusCode::FORBIDDEN,
            Some("this sign-in was sent from another site's page, and refused"),
        );
    }
    let c = &api.credentials;
    let id_ok = session::same(form.access_key_id.trim(), &c.access_key_id);
    let secret_ok = session::same(form.secret_access_key.trim(), &c.secret_access_key);
    if !(id_ok && secret_ok) {
        let why = if form.access_key_id.trim().is_empty() {
            "enter the access key id"
        } else if form.secret_access_key.trim().is_empty() {
            "enter the secret access key"
        } else {
            "that access key and secret are not the ones this server accepts"
        };
        tracing::info!(access_key_id = %berth_core::quote::bounded(form.access_key_id.clone(), 64), "console sign-in refused");
        // A wrong guess costs the guesser time.
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        return login_html(StatusCode::UNAUTHORIZED, Some(why));
    }
    let (id, _) = api.sessions.open(&c.access_key_id);
    tracing::info!(access_key_id = %c.access_key_id, "console sign-in");
    let mut resp = see_other("/ui/clusters");
    resp.headers_mut().insert(
        SET_COOKIE,
        session::set_cookie(&id, api.sessions.lifetime()),
    );
    resp
}

/// `GET /ui/{page}`: the app shell, which draws the page its path names.
async fn page(
    State(api): State<Arc<Api>>,
    Path(page): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !PAGES.contains(&page.as_str()) {
        return html(
            StatusCode::NOT_FOUND,
            format!(
                "<!doctype html><title>berth</title><p>No page /ui/{}: see <a href=\"/ui/clusters\">the console</a>.",
                escape(&page)
            ),
        );
    }
    if api.sessions.of(&headers).is_none() {
        return see_other("/ui/login");
    }
    html(StatusCode::OK, APP_HTML.to_owned())
}

/// `GET /ui/assets/{file}`, for a browser signed in.
async fn asset(
    State(api): State<Arc<Api>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    if api.sessions.of(&headers).is_none() {
        return calls::unauthorized();
    }
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => ([(CONTENT_TYPE, *kind)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no asset {file}")).into_response(),
    }
}

#[cfg(test)]
mod tests;
