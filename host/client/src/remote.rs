//! The agent protocol over HTTP, the agent's side: [`RemoteControlPlane`]
//! implements `berth_protocol::ControlPlane` with one signed
//! `POST /agent/v1/<message>` per call, and [`serve_log_requests`] answers
//! the server's log reads. A call that cannot connect moves on to the next
//! server of the list; one that connected but got no answer fails as
//! `Unavailable` (every message is idempotent: the agent asks again).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::model::ContainerInstance;
use berth_protocol::{
    Backoff, ControlPlane, Heartbeat, HeartbeatAck, LogAnswer, LogRequestPoll, LogRequests,
    ManifestRequest, ProtocolError, RegisterInstance, RetireAck, RetireInstance, StateChangeAck,
    StateChangesAck, SubmitContainerStateChange, TaskLogReader, TaskManifest, TaskStateChange,
    TaskStateChanges,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Connection, Credentials, signed_post};

/// Where the server serves the agent protocol.
pub const AGENT_PATH: &str = "/agent/v1";
/// How long an ordinary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a long poll may take: the server answers within ~20 s.
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(45);

/// The control plane of a `berth server`, over HTTP. See the module docs.
#[derive(Debug)]
pub struct RemoteControlPlane {
    /// `HOST:PORT` of each server, tried in turn.
    servers: Vec<String>,
    creds: Credentials,
    /// The server that answered last: calls start there.
    current: AtomicUsize,
    /// Kept-alive connections, by server index: an agent's heartbeats and
    /// reports reuse them rather than opening a TCP connection per message.
    idle: Mutex<Vec<(usize, Connection)>>,
}

/// Idle connections kept per agent (the long poll holds one, the
/// heartbeat and the state reports another, log answers a few more).
const IDLE_CONNECTIONS: usize = 4;

fn unavailable(message: String) -> ProtocolError {
    ProtocolError::Unavailable { message }
}

impl RemoteControlPlane {
    /// Over the servers at `servers` (`HOST:PORT` each, at least one),
    /// signing with `creds`.
    pub fn new(servers: Vec<String>, creds: Credentials) -> Result<Self, String> {
        if servers.is_empty() {
            return Err("no server given".to_owned());
        }
        Ok(RemoteControlPlane {
            servers,
            creds,
            current: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The server calls go to first (the one that answered last).
    pub fn current_server(&self) -> &str {
        &self.servers[self.current.load(Ordering::Relaxed) % self.servers.len()]
    }

    /// An idle connection to server `at`, if one is still open.
    fn reuse(&self, at: usize) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|(_, c)| c.is_open());
        let i = idle.iter().position(|(s, _)| *s == at)?;
        Some(idle.swap_remove(i).1)
    }

    /// Keeps `conn` to server `at` for the next call, up to [`IDLE_CONNECTIONS`].
    fn keep(&self, at: usize, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push((at, conn));
        }
    }

    /// Posts `req` as message `name`, within `timeout`, to the first
    /// server that accepts a connection, starting at the current one.
    async fn post<Req: Serialize + Sync, Resp: DeserializeOwned>(
        &self,
        name: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, ProtocolError> {
        let body = serde_json::to_vec(req).map_err(|e| ProtocolError::Refused {
            message: format!("encoding {name}: {e}"),
        })?;
        let path = format!("{AGENT_PATH}/{name}");
        let first = self.current.load(Ordering::Relaxed);
        let mut refused = Vec::new();
        for i in 0..self.servers.len() {
            let at = (first + i) % self.servers.len();
            let host = &self.servers[at];
            // A kept connection the server closed meanwhile (its idle
            // timeout, a restart) fails before any answer: the message is
            // idempotent, so it goes again on a new connection.
            if let Some(mut conn) = self.reuse(at) {
                let request = self.request(name, host, &path, &body)?;
                if let Ok(Ok(answer)) = tokio::time::timeout(timeout, conn.send(request)).await {
                    self.keep(at, conn);
                    return decode(name, host, answer.0, &answer.1);
                }
            }
            let mut conn = match Connection::open(host, &self.creds).await {
                Ok(c) => c,
                Err(e) => {
                    refused.push(format!("{host}: {e}"));
                    continue;
                }
            };
            if at != first {
                tracing::info!(server = %host, "the agent moves to the next server");
                self.current.store(at, Ordering::Relaxed);
            }
            let request = self.request(name, host, &path, &body)?;
            let (status, bytes) = match tokio::time::timeout(timeout, conn.send(request)).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => return Err(unavailable(format!("{name} on http://{host}: {e}"))),
                Err(_) => {
                    return Err(unavailable(format!(
                        "{name}: no answer from http://{host} within {}s",
                        timeout.as_secs()
                    )));
                }
            };
            self.keep(at, conn);
            return decode(name, host, status, &bytes);
        }
        Err(unavailable(format!(
            "no server answers: {}",
            refused.join("; ")
        )))
    }

    /// Message `name` signed for `host`.
    fn request(
        &self,
        name: &str,
        host: &str,
        path: &str,
        body: &[u8],
    ) -> Result<hyper::Request<http_body_util::Full<bytes::Bytes>>, ProtocolError> {
        let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        signed_post(&self.creds, host, path, headers, body.to_vec()).map_err(|e| {
            ProtocolError::Refused {
                message: format!("building {name}: {e}"),
            }
        })
    }
}

/// The answer: the message on success, else the protocol error the server
/// sent, else (an API error such as a refused signature) a refusal naming
/// the server's code.
fn decode<Resp: DeserializeOwned>(
    name: &str,
    host: &str,
    status: hyper::StatusCode,
    bytes: &[u8],
) -> Result<Resp, ProtocolError> {
    if status.is_success() {
        return serde_json::from_slice(bytes).map_err(|e| {
            unavailable(format!(
                "{name}: http://{host} answered what berth cannot read: {e}"
            ))
        });
    }
    if let Ok(e) = serde_json::from_slice::<ProtocolError>(bytes) {
        return Err(e);
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let message = format!(
        "{name}: http://{host} answered HTTP {status} {}: {}",
        v["__type"].as_str().unwrap_or(""),
        v["message"].as_str().unwrap_or("")
    );
    if status.is_server_error() {
        Err(unavailable(message))
    } else {
        Err(ProtocolError::Refused { message })
    }
}

#[async_trait]
impl ControlPlane for RemoteControlPlane {
    async fn register_instance(
        &self,
        req: RegisterInstance,
    ) -> Result<ContainerInstance, ProtocolError> {
        self.post("register", &req, CALL_TIMEOUT).await
    }

    async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatAck, ProtocolError> {
        self.post("heartbeat", &hb, CALL_TIMEOUT).await
    }

    async fn retire_instance(&self, req: RetireInstance) -> Result<RetireAck, ProtocolError> {
        self.post("retire", &req, CALL_TIMEOUT).await
    }

    async fn task_manifest(&self, req: ManifestRequest) -> Result<TaskManifest, ProtocolError> {
        let timeout = if req.known_sequence.is_some() {
            LONG_POLL_TIMEOUT
        } else {
            CALL_TIMEOUT
        };
        self.post("manifest", &req, timeout).await
    }

    async fn submit_task_state_change(
        &self,
        change: TaskStateChange,
    ) -> Result<StateChangeAck, ProtocolError> {
        self.post("task-state", &change, CALL_TIMEOUT).await
    }

    async fn submit_task_state_changes(
        &self,
        batch: TaskStateChanges,
    ) -> Result<StateChangesAck, ProtocolError> {
        self.post("task-states", &batch, CALL_TIMEOUT).await
    }

    async fn submit_container_state_change(
        &self,
        change: SubmitContainerStateChange,
    ) -> Result<StateChangeAck, ProtocolError> {
        self.post("container-state", &change, CALL_TIMEOUT).await
    }
}

/// The server's answer to a log answer.
#[derive(Debug, serde::Deserialize)]
struct Accepted {
    accepted: bool,
}

/// Answers the server's log reads of the tasks of `instance_arn` with
/// `reader`, forever: long-polls for them, reads each in a task of its own
/// and posts the answer. When the server cannot be reached it waits with
/// back-off (250 ms doubling to 2 min, full jitter) and asks again.
pub async fn serve_log_requests(
    plane: Arc<RemoteControlPlane>,
    instance_arn: String,
    reader: Arc<dyn TaskLogReader>,
) {
    let mut backoff = Backoff::default();
    let poll = LogRequestPoll {
        container_instance_arn: instance_arn.clone(),
    };
    loop {
        let asked: LogRequests = match plane.post("log-requests", &poll, LONG_POLL_TIMEOUT).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("polling for log reads: {e}");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        backoff.reset();
        for pending in asked.requests {
            let (plane, reader, arn) = (
                Arc::clone(&plane),
                Arc::clone(&reader),
                instance_arn.clone(),
            );
            tokio::spawn(async move {
                let result = reader.read_task_logs(pending.request).await;
                let answer = LogAnswer::new(arn, pending.id, result);
                match plane
                    .post::<_, Accepted>("log-answers", &answer, CALL_TIMEOUT)
                    .await
                {
                    Ok(a) if !a.accepted => {
                        tracing::debug!(
                            id = pending.id,
                            "the server no longer waited for a log read"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("answering a log read: {e}"),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "a".into(),
            secret_access_key: "b".into(),
        }
    }

    #[tokio::test]
    async fn with_no_server_up_a_call_is_unavailable_naming_each() {
        let closed: Vec<String> = (0..2)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().to_string()
            })
            .collect();
        let plane = RemoteControlPlane::new(closed.clone(), creds()).unwrap();
        let e = plane
            .heartbeat(Heartbeat {
                cluster: "default".into(),
                container_instance_arn: "ci".into(),
                agent_connected: true,
            })
            .await
            .unwrap_err();
        let ProtocolError::Unavailable { message } = e else {
            panic!("{e:?}")
        };
        for s in &closed {
            assert!(message.contains(s.as_str()), "{message}");
        }
    }

    #[test]
    fn an_empty_server_list_is_refused() {
        assert!(RemoteControlPlane::new(Vec::new(), creds()).is_err());
    }

    #[test]
    fn answers_decode_as_messages_protocol_errors_or_refusals() {
        let ok: HeartbeatAck = decode(
            "heartbeat",
            "h:1",
            hyper::StatusCode::OK,
            br#"{"registered":true}"#,
        )
        .unwrap();
        assert!(ok.registered);
        let e = decode::<HeartbeatAck>(
            "heartbeat",
            "h:1",
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            br#"{"kind":"unavailable","message":"store busy"}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            ProtocolError::Unavailable {
                message: "store busy".into()
            }
        );
        let e = decode::<HeartbeatAck>(
            "heartbeat",
            "h:1",
            hyper::StatusCode::FORBIDDEN,
            br#"{"__type":"InvalidSignatureException","message":"bad"}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&e, ProtocolError::Refused { message } if message.contains("403") && message.contains("InvalidSignatureException")),
            "{e:?}"
        );
    }
}
