//! A client of berth's API: requests signed with SigV4, the credentials to
//! sign them with, and one call (`POST /` with `X-Amz-Target`, awsJson1_1).
//! berth's CLI and `berth bench api` use it; `berth agent` reaches its
//! server through [`RemoteControlPlane`], the agent protocol over HTTP.

mod remote;
pub mod sigv4;

pub use remote::{RemoteControlPlane, serve_log_requests};

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// ECS's target prefix.
pub const ECS_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";
/// berth's own operations.
pub const BERTH_PREFIX: &str = "Berth_20261125";
/// The content type of awsJson1_1 requests and answers.
pub const JSON: &str = "application/x-amz-json-1.1";
/// The region and service berth's own clients sign for.
const REGION: &str = "local";
const SERVICE: &str = "ecs";

/// An access key id and its secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    // The secret never goes to a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The file in `berth up`'s data directory that holds its credentials.
pub const CREDENTIALS_FILE: &str = "credentials";

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

impl Credentials {
    /// The data directory's credentials file, which must exist.
    pub fn read(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("reading credentials from {}: {e}", path.display()))
    }

    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, each else its
    /// `BERTH_` twin; `None` unless both are set.
    pub fn from_env() -> Option<Self> {
        let id = env("AWS_ACCESS_KEY_ID").or_else(|| env("BERTH_ACCESS_KEY_ID"));
        let secret = env("AWS_SECRET_ACCESS_KEY").or_else(|| env("BERTH_SECRET_ACCESS_KEY"));
        Some(Credentials {
            access_key_id: id?,
            secret_access_key: secret?,
        })
    }

    /// The environment's, else those `berth up` wrote in `data_dir`.
    pub fn lookup(data_dir: &Path) -> Result<Self, String> {
        if let Some(c) = Credentials::from_env() {
            return Ok(c);
        }
        Credentials::read(data_dir).map_err(|e| {
            format!(
                "no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set, and no credentials in {} ({e}); \
                 berth up writes them there at its first start: give its --data-dir, or set the variables",
                data_dir.display()
            )
        })
    }
}

/// Where an endpoint (`http://HOST:PORT`) connects: `HOST:PORT`.
pub fn endpoint_host(endpoint: &str) -> Result<String, String> {
    endpoint
        .strip_prefix("http://")
        .map(|h| h.trim_end_matches('/').to_owned())
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .ok_or_else(|| {
            format!(
                "--endpoint {endpoint}: give http://HOST:PORT (only http:// endpoints are supported)"
            )
        })
}

/// A signed `POST /` of `body` to operation `target` (`<prefix>.<Operation>`) at `host`.
pub fn signed_request(
    creds: &Credentials,
    host: &str,
    target: &str,
    body: Vec<u8>,
) -> Result<hyper::Request<Full<Bytes>>, hyper::http::Error> {
    let headers = vec![
        ("content-type".to_owned(), JSON.to_owned()),
        ("x-amz-target".to_owned(), target.to_owned()),
    ];
    signed_post(creds, host, "/", headers, body)
}

/// A signed `POST path` of `body` at `host`, with `headers` (lowercase
/// names) besides `host`; every header is signed.
pub fn signed_post(
    creds: &Credentials,
    host: &str,
    path: &str,
    mut headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<hyper::Request<Full<Bytes>>, hyper::http::Error> {
    headers.push(("host".to_owned(), host.to_owned()));
    headers.sort();
    let signed = sigv4::sign(
        creds,
        REGION,
        SERVICE,
        path,
        &headers,
        &body,
        chrono::Utc::now(),
    );
    let mut req = hyper::Request::builder().method("POST").uri(path);
    for (n, v) in headers.iter().chain(&signed) {
        req = req.header(n, v);
    }
    req.body(Full::new(Bytes::from(body)))
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server refused or failed the call: its `__type` and `message`.
    #[error("{code}: {message}")]
    Api { code: String, message: String },
    /// The request could not be encoded or built.
    #[error("{0}")]
    Request(String),
    /// No berth API answers at the endpoint.
    #[error("{0}")]
    Unreachable(String),
    /// Sent, but no answer in time: it may have been carried out.
    #[error("{0}")]
    Timeout(String),
}

/// A signed-request client of one `berth up`; one connection per call.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    creds: Credentials,
}

/// How long one call may take before the server counts as not answering.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

impl Client {
    /// A client of the API at `host` (`HOST:PORT`), signing with `creds`.
    pub fn new(host: String, creds: Credentials) -> Self {
        Client { host, creds }
    }

    /// `HOST:PORT` of the server.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Calls `<prefix>.<op>` with `body`; the answer's JSON.
    pub async fn call(
        &self,
        prefix: &str,
        op: &str,
        body: &impl Serialize,
    ) -> Result<Value, CallError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.call_once(prefix, op, body)).await {
            Ok(r) => r,
            // Sent but unanswered: it may have been carried out, so this is
            // not "unreachable" (a script retrying on that could act twice).
            Err(_) => Err(CallError::Timeout(format!(
                "{op}: no answer from http://{} within {}s; the call may have been carried out, check before retrying",
                self.host,
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn call_once(
        &self,
        prefix: &str,
        op: &str,
        body: &impl Serialize,
    ) -> Result<Value, CallError> {
        Connection::open(&self.host, &self.creds)
            .await?
            .call(prefix, op, body)
            .await
    }
}

/// One kept-alive HTTP/1.1 connection to the API, for calls in a row.
pub struct Connection {
    host: String,
    creds: Credentials,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `host` (`HOST:PORT`); calls will be signed with `creds`.
    pub async fn open(host: &str, creds: &Credentials) -> Result<Connection, CallError> {
        let unreachable = CallError::Unreachable;
        let stream = tokio::net::TcpStream::connect(host).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                unreachable(format!(
                    "berth up does not seem to run at http://{host} (connection refused); start it with `berth up`, \
                     or give its address with --endpoint or BERTH_ENDPOINT"
                ))
            } else {
                unreachable(format!("connecting to http://{host}: {e}"))
            }
        })?;
        // Small requests answered at once: don't wait to fill a segment.
        stream
            .set_nodelay(true)
            .map_err(|e| unreachable(format!("http://{host}: TCP_NODELAY: {e}")))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(format!("http://{host}: HTTP handshake: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection");
            }
        });
        Ok(Connection {
            host: host.to_owned(),
            creds: creds.clone(),
            sender,
        })
    }

    /// Sends `req` on this connection: the answer's status and body.
    pub async fn send(
        &mut self,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<(hyper::StatusCode, Bytes), hyper::Error> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// The credentials calls on this connection are signed with.
    /// Whether the connection can still carry a request (the server has
    /// not closed it).
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// Calls `<prefix>.<op>` with `body` on this connection; the answer's JSON.
    pub async fn call(
        &mut self,
        prefix: &str,
        op: &str,
        body: &impl Serialize,
    ) -> Result<Value, CallError> {
        let unreachable = CallError::Unreachable;
        let host = self.host.clone();
        let host = host.as_str();
        let body = serde_json::to_vec(body)
            .map_err(|e| CallError::Request(format!("encoding the request: {e}")))?;
        let req = signed_request(&self.creds, host, &format!("{prefix}.{op}"), body)
            .map_err(|e| CallError::Request(format!("building the request: {e}")))?;
        let (status, bytes) = self
            .send(req)
            .await
            .map_err(|e| unreachable(format!("{op} on http://{host}: {e}")))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            unreachable(format!(
                "{op}: http://{host} answered HTTP {status} without berth's JSON; is it berth up?"
            ))
        })?;
        if !status.is_success() {
            return Err(CallError::Api {
                code: v["__type"].as_str().unwrap_or("UnknownError").to_owned(),
                message: v["message"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_host_port() {
        assert_eq!(
            endpoint_host("http://127.0.0.1:7171/").as_deref(),
            Ok("127.0.0.1:7171")
        );
        assert!(endpoint_host("https://x:1").is_err_and(|m| m.contains("only http://")));
        assert!(endpoint_host("http://x:1/path").is_err());
    }

    #[test]
    fn credentials_are_read_from_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Credentials::read(dir.path()).is_err());
        std::fs::write(
            dir.path().join(CREDENTIALS_FILE),
            br#"{"access_key_id": "BKIA1", "secret_access_key": "s3cr3t"}"#,
        )
        .unwrap();
        let c = Credentials::read(dir.path()).unwrap();
        assert_eq!(c.access_key_id, "BKIA1");
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "the secret stays out of logs"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        drop(listener);
        let c = Client::new(
            host,
            Credentials {
                access_key_id: "a".into(),
                secret_access_key: "b".into(),
            },
        );
        let e = c
            .call(ECS_PREFIX, "ListClusters", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(matches!(e, CallError::Unreachable(m) if m.contains("connection refused")));
    }
}
