//! The ECS API over HTTP (awsJson1_1), the only module that knows HTTP.
//!
//! Every call is `POST /` with `X-Amz-Target: <prefix>.<Operation>`, signed
//! with SigV4. [`Api::call`] answers one buffered request, so tests drive it
//! without a socket; [`serve`] puts it on a listener with hyper.

pub mod cli;
pub mod load;
mod logs;
pub mod sigv4;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control::{Control, ControlError};
use crate::credentials::Credentials;

/// ECS's target prefix.
pub const ECS_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";
/// berth's own operations.
pub const BERTH_PREFIX: &str = "Berth_20261125";
/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Largest body of `InstallPolicy`, whose component travels base64 inside.
pub const MAX_POLICY_BODY: usize = 16 * 1024 * 1024;

/// The body limit of a request, by its target.
fn body_limit(headers: &hyper::HeaderMap) -> usize {
    let install = headers.get("x-amz-target").and_then(|v| v.to_str().ok())
        == Some(&*format!("{BERTH_PREFIX}.InstallPolicy"));
    if install { MAX_POLICY_BODY } else { MAX_BODY }
}
const JSON: &str = "application/x-amz-json-1.1";

/// An error answer: AWS code, HTTP status, message.
#[derive(Debug)]
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

/// The API: the control plane behind SigV4.
#[derive(Debug)]
pub struct Api {
    control: Arc<Control>,
    credentials: Credentials,
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

/// Decodes, runs `op` on a blocking thread (the store blocks), encodes.
async fn dispatch<Q, A>(
    control: &Arc<Control>,
    body: &[u8],
    op: fn(&Control, Q) -> Result<A, ControlError>,
) -> Result<Vec<u8>, ApiError>
where
    Q: DeserializeOwned + Send + 'static,
    A: Serialize + Send + 'static,
{
    let req: Q = decode(body)?;
    let c = Arc::clone(control);
    let answer = tokio::task::spawn_blocking(move || op(&c, req))
        .await
        .map_err(|e| {
            ApiError::new("ServerException", 500, format!("the operation failed: {e}"))
        })??;
    serde_json::to_vec(&answer)
        .map_err(|e| ApiError::new("ServerException", 500, format!("encoding the answer: {e}")))
}

/// berth's own DescribeServer answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerInfo {
    version: &'static str,
    region: String,
    account: String,
    queue_tag: &'static str,
}

impl Api {
    /// The API over `control`, accepting requests signed with `credentials`.
    pub fn new(control: Arc<Control>, credentials: Credentials) -> Self {
        Api {
            control,
            credentials,
        }
    }

    /// Answers one request. Every answer carries `x-amzn-RequestId`.
    pub async fn call(&self, req: Request<Bytes>) -> Response<Full<Bytes>> {
        let id = uuid::Uuid::new_v4().to_string();
        let (status, body) = match self.answer(req).await {
            Ok(body) => (StatusCode::OK, body),
            Err(e) => {
                if e.status >= 500 {
                    tracing::error!(code = e.code, message = %e.message, request_id = %id, "request failed");
                } else {
                    tracing::debug!(code = e.code, message = %e.message, request_id = %id, "request refused");
                }
                let body = serde_json::json!({"__type": e.code, "message": e.message})
                    .to_string()
                    .into_bytes();
                (
                    StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    body,
                )
            }
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
        if let Ok(v) = HeaderValue::from_str(&id) {
            h.insert("x-amzn-requestid", v);
        }
        resp
    }

    async fn answer(&self, req: Request<Bytes>) -> Result<Vec<u8>, ApiError> {
        let (parts, body) = req.into_parts();
        if body.len() > body_limit(&parts.headers) {
            return Err(too_large(body_limit(&parts.headers)));
        }
        if parts.method != Method::POST {
            return Err(ApiError::new(
                "UnknownOperationException",
                404,
                format!("{} is not supported; every call is POST /", parts.method),
            ));
        }
        sigv4::verify(
            &self.credentials,
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
            &parts.headers,
            &body,
            chrono::Utc::now(),
        )
        .map_err(|e| {
            let (code, status) = e.code_and_status();
            ApiError::new(code, status, e.to_string())
        })?;
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some((prefix, op)) = target.split_once('.') else {
            return Err(ApiError::new(
                "UnknownOperationException",
                400,
                format!("X-Amz-Target `{target}` is not <prefix>.<Operation>"),
            ));
        };
        let c = &self.control;
        let b = &body[..];
        match (prefix, op) {
            (ECS_PREFIX, "CreateCluster") => dispatch(c, b, Control::create_cluster).await,
            (ECS_PREFIX, "DescribeClusters") => dispatch(c, b, Control::describe_clusters).await,
            (ECS_PREFIX, "ListClusters") => dispatch(c, b, Control::list_clusters).await,
            (ECS_PREFIX, "DeleteCluster") => dispatch(c, b, Control::delete_cluster).await,
            (ECS_PREFIX, "RegisterTaskDefinition") => {
                dispatch(c, b, Control::register_task_definition).await
            }
            (ECS_PREFIX, "DescribeTaskDefinition") => {
                dispatch(c, b, Control::describe_task_definition).await
            }
            (ECS_PREFIX, "ListTaskDefinitions") => {
                dispatch(c, b, Control::list_task_definitions).await
            }
            (ECS_PREFIX, "DeregisterTaskDefinition") => {
                dispatch(c, b, Control::deregister_task_definition).await
            }
            (ECS_PREFIX, "ListTaskDefinitionFamilies") => {
                dispatch(c, b, Control::list_task_definition_families).await
            }
            (ECS_PREFIX, "RegisterContainerInstance") => {
                dispatch(c, b, Control::register_container_instance).await
            }
            (ECS_PREFIX, "DescribeContainerInstances") => {
                dispatch(c, b, Control::describe_container_instances).await
            }
            (ECS_PREFIX, "ListContainerInstances") => {
                dispatch(c, b, Control::list_container_instances).await
            }
            (ECS_PREFIX, "DeregisterContainerInstance") => {
                dispatch(c, b, Control::deregister_container_instance).await
            }
            (ECS_PREFIX, "UpdateContainerInstancesState") => {
                dispatch(c, b, Control::update_container_instances_state).await
            }
            (ECS_PREFIX, "PutAttributes") => {
                dispatch(c, b, |c, r| c.change_attributes(r, true)).await
            }
            (ECS_PREFIX, "DeleteAttributes") => {
                dispatch(c, b, |c, r| c.change_attributes(r, false)).await
            }
            (ECS_PREFIX, "ListAttributes") => dispatch(c, b, Control::list_attributes).await,
            (ECS_PREFIX, "RunTask") => dispatch(c, b, Control::run_task).await,
            (ECS_PREFIX, "StartTask") => dispatch(c, b, Control::start_task).await,
            (ECS_PREFIX, "StopTask") => dispatch(c, b, Control::stop_task).await,
            (ECS_PREFIX, "DescribeTasks") => dispatch(c, b, Control::describe_tasks).await,
            (ECS_PREFIX, "ListTasks") => dispatch(c, b, Control::list_tasks).await,
            (ECS_PREFIX, "CreateService") => dispatch(c, b, Control::create_service).await,
            (ECS_PREFIX, "UpdateService") => dispatch(c, b, Control::update_service).await,
            (ECS_PREFIX, "DeleteService") => dispatch(c, b, Control::delete_service).await,
            (ECS_PREFIX, "DescribeServices") => dispatch(c, b, Control::describe_services).await,
            (ECS_PREFIX, "ListServices") => dispatch(c, b, Control::list_services).await,
            (BERTH_PREFIX, "InstallPolicy") => dispatch(c, b, Control::install_policy).await,
            (BERTH_PREFIX, "ListPolicies") => dispatch(c, b, Control::list_policies).await,
            (BERTH_PREFIX, "DescribePolicy") => dispatch(c, b, Control::describe_policy).await,
            (BERTH_PREFIX, "ActivatePolicy") => dispatch(c, b, Control::activate_policy).await,
            (BERTH_PREFIX, "DeactivatePolicy") => dispatch(c, b, Control::deactivate_policy).await,
            (BERTH_PREFIX, "DeletePolicy") => dispatch(c, b, Control::delete_policy).await,
            (BERTH_PREFIX, "GetTaskLogs") => logs::get_task_logs(c, b).await,
            (BERTH_PREFIX, "DescribeServer") => {
                let _: serde_json::Value = decode(b)?;
                let info = ServerInfo {
                    version: env!("CARGO_PKG_VERSION"),
                    region: c.arn().region.clone(),
                    account: c.arn().account.clone(),
                    queue_tag: crate::control::QUEUE_TAG,
                };
                serde_json::to_vec(&info)
                    .map_err(|e| ApiError::new("ServerException", 500, e.to_string()))
            }
            _ => Err(ApiError::new(
                "UnknownOperationException",
                400,
                format!("X-Amz-Target `{target}`: berth does not know this operation"),
            )),
        }
    }
}

/// Polls `f` once: true when it completed.
async fn futures_poll_once(f: std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
    tokio::select! {
        biased;
        () = f => true,
        () = std::future::ready(()) => false,
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        "RequestEntityTooLargeException",
        413,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// Reads a body up to `limit` bytes.
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
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

/// Serves `api` on `listener` until `shutdown` resolves, then lets requests
/// in flight finish (up to ten seconds).
pub async fn serve(
    api: Arc<Api>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let api = Arc::clone(&api);
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let api = Arc::clone(&api);
            async move {
                let (parts, body) = req.into_parts();
                let resp = match read_body(body, body_limit(&parts.headers)).await {
                    Ok(bytes) => api.call(Request::from_parts(parts, bytes)).await,
                    Err(e) => {
                        let id = uuid::Uuid::new_v4().to_string();
                        let mut r = Response::new(Full::new(Bytes::from(
                            serde_json::json!({"__type": e.code, "message": e.message}).to_string(),
                        )));
                        *r.status_mut() =
                            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
                        r.headers_mut()
                            .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
                        if let Ok(v) = HeaderValue::from_str(&id) {
                            r.headers_mut().insert("x-amzn-requestid", v);
                        }
                        r
                    }
                };
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .context("requests still in flight after 10s")?;
    Ok(())
}

/// `berth up`'s API side: credentials, the `default` cluster, the batch
/// scheduler and the server on `listen`, until `shutdown` resolves.
pub async fn run(
    store: Arc<berth_store::Store>,
    data_dir: &std::path::Path,
    listen: SocketAddr,
    tasks_changed: Arc<tokio::sync::Notify>,
    log_readers: Arc<crate::control::agents::AgentLogReaders>,
    stopped_task_ttl: Duration,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    use crate::credentials::Source;
    let (credentials, source) = Credentials::load(data_dir)?;
    let arn = berth_core::arn::ArnContext::default();
    let region = arn.region.clone();
    // The policy registry loads (and compiles) every installed policy.
    let policies = {
        let store = Arc::clone(&store);
        let config = berth_policy::HostConfig {
            cache_dir: Some(data_dir.join("policy-cache")),
            ..berth_policy::HostConfig::default()
        };
        tokio::task::spawn_blocking(move || -> anyhow::Result<berth_policy::Registry> {
            let host = Arc::new(
                berth_policy::PolicyHost::new(config).context("starting the policy engine")?,
            );
            berth_policy::Registry::open(host, (*store).clone())
                .context("loading the installed placement policies")
        })
        .await
        .context("loading the placement policies")??
    };
    let control = Arc::new(
        Control::new(store, arn)
            .with_tasks_changed(tasks_changed)
            .with_log_readers(log_readers)
            .with_policies(Arc::new(policies))
            .with_stopped_task_ttl(stopped_task_ttl),
    );
    let c = Arc::clone(&control);
    tokio::task::spawn_blocking(move || c.ensure_default_cluster())
        .await
        .context("creating the default cluster")?
        .context("creating the default cluster")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    // Poll the shutdown future once so its signal handlers are installed
    // before the "running" line: whoever reads it may signal at once.
    let mut shutdown = std::pin::pin!(shutdown);
    if futures_poll_once(shutdown.as_mut()).await {
        return Ok(());
    }
    println!("berth: running; ECS API on http://{addr}; stop with Ctrl-C");
    let from = match source {
        Source::Environment => "from BERTH_ACCESS_KEY_ID and BERTH_SECRET_ACCESS_KEY".to_owned(),
        Source::Created => format!("created in {}", data_dir.join("credentials").display()),
        Source::File => format!("from {}", data_dir.join("credentials").display()),
    };
    println!("berth: credentials {from}; to use the AWS CLI or boto3:");
    println!("  export AWS_ACCESS_KEY_ID={}", credentials.access_key_id);
    println!(
        "  export AWS_SECRET_ACCESS_KEY={}",
        credentials.secret_access_key
    );
    println!("  export AWS_DEFAULT_REGION={region}");
    println!("  aws ecs --endpoint-url http://{addr} list-clusters");
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    let stop = Arc::new(tokio::sync::Notify::new());
    let scheduler = {
        let stop = Arc::clone(&stop);
        tokio::spawn(crate::control::scheduler::run(
            Arc::clone(&control),
            async move { stop.notified().await },
        ))
    };
    let stop_services = Arc::new(tokio::sync::Notify::new());
    let services = {
        let stop = Arc::clone(&stop_services);
        tokio::spawn(crate::control::service_scheduler::run(
            Arc::clone(&control),
            async move { stop.notified().await },
        ))
    };
    let api = Arc::new(Api::new(control, credentials));
    let served = serve(api, listener, shutdown).await;
    stop.notify_one();
    stop_services.notify_one();
    if let Err(e) = services.await {
        tracing::error!(error = %e, "the service scheduler panicked");
    }
    if let Err(e) = scheduler.await {
        tracing::error!(error = %e, "the batch scheduler panicked");
    }
    served
}

#[cfg(test)]
mod tests;
