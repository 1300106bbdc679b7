//! The audit log: one entry per mutating API call, refused or carried out,
//! in the table `berth_audit` of the store (so it is as durable as the
//! state, survives restarts and is read by every server over the store).
//! The API writes an entry once the call's own transaction has committed
//! or failed, and before it answers (docs/security.md says why not in the
//! same transaction). Entries are keyed by time, so a listing from a time
//! is a range read, and entries older than the retention are collected by
//! the batch scheduler once a minute, a page per transaction.
//! `ListAuditEvents` (berth's own operation) reads them: `berth audit`.

use std::time::Duration;

use berth_store::{PageRequest, Record, StoreError};
use serde::{Deserialize, Serialize};

use super::{Control, ControlError, now};

/// How long entries are kept unless `--audit-retention` says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Entries deleted per transaction when collecting.
const COLLECT_PAGE: usize = 1000;

/// Entries read at most by one `ListAuditEvents` call: a filter that
/// matches little answers a short page with a token rather than scanning on.
const SCAN_BOUND: usize = 10_000;

/// One call, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// When the call was answered (seconds since the epoch).
    pub time: f64,
    /// The key that signed it.
    pub access_key_id: String,
    /// The operation (`RunTask`, `InstallPolicy`, ...).
    pub operation: String,
    /// What it acted on: the ARNs (or names, as given) of the request and
    /// of the answer.
    pub targets: Vec<String>,
    /// `Success`, or the error code of the answer.
    pub result: String,
    /// The error's message, for a failed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The answer's `x-amzn-RequestId`.
    pub request_id: String,
}

/// Entries sort by time: whole microseconds, zero-padded, then the request id.
fn time_key(time: f64) -> String {
    format!("{:020}", (time.max(0.0) * 1e6) as u64)
}

impl Record for AuditEvent {
    const TABLE: &'static str = "berth_audit";
    fn key(&self) -> String {
        format!("{}-{}", time_key(self.time), self.request_id)
    }
}

/// `ListAuditEvents`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListAuditEventsRequest {
    /// Entries at or after this time (seconds since the epoch).
    pub start_time: Option<f64>,
    /// Only this operation's entries.
    pub operation: Option<String>,
    /// At most this many entries (1-1000, default 100).
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAuditEventsResponse {
    /// Oldest first.
    pub events: Vec<AuditEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The audit log's settings and its collector's last run.
#[derive(Debug)]
pub(super) struct AuditLog {
    retention: Duration,
    last_collect: std::sync::Mutex<f64>,
}

impl Default for AuditLog {
    fn default() -> Self {
        AuditLog {
            retention: DEFAULT_RETENTION,
            last_collect: std::sync::Mutex::new(0.0),
        }
    }
}

impl Control {
    /// Keeps audit entries for `retention`.
    pub fn with_audit_retention(mut self, retention: Duration) -> Self {
        self.audit.retention = retention;
        self
    }

    /// Appends `event` to the audit log, durably (its own commit).
    pub fn record_audit(&self, event: &AuditEvent) -> Result<(), ControlError> {
        self.store
            .update(|txn| txn.put(event).map_err(ControlError::from))?;
        Ok(())
    }

    /// `ListAuditEvents`: entries oldest first from `startTime`, filtered by
    /// operation.
    pub fn list_audit_events(
        &self,
        req: ListAuditEventsRequest,
    ) -> Result<ListAuditEventsResponse, ControlError> {
        let max = req.max_results.unwrap_or(100);
        if !(1..=1000).contains(&max) {
            return Err(ControlError::invalid(
                "maxResults",
                format!("{max} is out of range 1-1000"),
            ));
        }
        let max = max as usize;
        if let Some(op) = &req.operation
            && (op.is_empty() || op.len() > 64 || !op.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(ControlError::invalid(
                "operation",
                format!("`{op}` is not an operation name (letters and digits, as RunTask)"),
            ));
        }
        if let Some(t) = req.start_time
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(ControlError::invalid(
                "startTime",
                format!("{t} is not a time in seconds since the epoch"),
            ));
        }
        let mut page = match (&req.next_token, req.start_time) {
            (Some(t), _) => PageRequest {
                token: Some(t.clone()),
                limit: 500,
            },
            // Keys of that microsecond sort after its bare prefix.
            (None, Some(t)) => PageRequest::after(&time_key(t), 500),
            (None, None) => PageRequest::first(500),
        };
        let txn = self.store.begin()?;
        let mut events = Vec::new();
        let mut scanned = 0;
        loop {
            let p = txn.list::<AuditEvent>(page.clone()).map_err(|e| match e {
                StoreError::InvalidPageToken { .. } => ControlError::invalid(
                    "nextToken",
                    format!(
                        "`{}` is not a token this server handed out",
                        req.next_token.as_deref().unwrap_or("")
                    ),
                ),
                e => e.into(),
            })?;
            for item in p.items {
                scanned += 1;
                let ev = item.value;
                let last_key = ev.key();
                if req.operation.as_ref().is_none_or(|op| *op == ev.operation) {
                    events.push(ev);
                }
                if events.len() == max || scanned == SCAN_BOUND {
                    // More may follow: go on after this entry.
                    return Ok(ListAuditEventsResponse {
                        events,
                        next_token: PageRequest::after(&last_key, 1).token,
                    });
                }
            }
            match p.next_token {
                Some(t) => page.token = Some(t),
                None => {
                    return Ok(ListAuditEventsResponse {
                        events,
                        next_token: None,
                    });
                }
            }
        }
    }

    /// Deletes the entries older than the retention, at most once a minute
    /// (the batch scheduler calls this on its timer).
    pub fn collect_audit_now_and_then(&self) -> Result<usize, ControlError> {
        if !super::once_a_minute(&self.audit.last_collect) {
            return Ok(0);
        }
        self.collect_audit_before(now() - self.audit.retention.as_secs_f64())
    }

    /// Deletes the entries older than `cutoff` (seconds since the epoch), a
    /// page per transaction so none grows with the backlog.
    pub(super) fn collect_audit_before(&self, cutoff: f64) -> Result<usize, ControlError> {
        let bound = time_key(cutoff);
        let page_len = COLLECT_PAGE.min(self.store.records_per_txn());
        let mut removed = 0;
        loop {
            let n = self
                .store
                .update(|txn| -> Result<usize, ControlError> {
                    let page = txn.list::<AuditEvent>(PageRequest::first(page_len))?;
                    let old: Vec<String> = page
                        .items
                        .iter()
                        .map(|e| e.value.key())
                        .take_while(|k| *k < bound)
                        .collect();
                    for k in &old {
                        txn.delete::<AuditEvent>(k)?;
                    }
                    Ok(old.len())
                })?
                .value;
            removed += n;
            if n < page_len {
                return Ok(removed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::arn::ArnContext;
    use std::sync::Arc;

    fn control() -> (Control, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = berth_store::Store::open(dir.path().join("berth.redb")).expect("store");
        (Control::new(Arc::new(store), ArnContext::default()), dir)
    }

    fn event(time: f64, op: &str, result: &str) -> AuditEvent {
        AuditEvent {
            time,
            access_key_id: "AKID".into(),
            operation: op.into(),
            targets: vec!["arn:aws:ecs:local:000000000000:cluster/default".into()],
            result: result.into(),
            error_message: None,
            request_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    #[test]
    fn entries_list_in_time_order_filtered_paged_and_collected() {
        let (c, _dir) = control();
        for (t, op) in [
            (300.0, "RunTask"),
            (100.0, "CreateCluster"),
            (200.0, "RunTask"),
        ] {
            c.record_audit(&event(t, op, "Success")).unwrap();
        }
        let all = c
            .list_audit_events(ListAuditEventsRequest::default())
            .unwrap();
        let times: Vec<f64> = all.events.iter().map(|e| e.time).collect();
        assert_eq!(times, [100.0, 200.0, 300.0]);

        let since = c
            .list_audit_events(ListAuditEventsRequest {
                start_time: Some(200.0),
                operation: Some("RunTask".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(since.events.len(), 2);

        let first = c
            .list_audit_events(ListAuditEventsRequest {
                max_results: Some(1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(first.events[0].time, 100.0);
        let next = c
            .list_audit_events(ListAuditEventsRequest {
                max_results: Some(1),
                next_token: first.next_token,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(next.events[0].time, 200.0);

        assert_eq!(c.collect_audit_before(250.0).unwrap(), 2);
        let left = c
            .list_audit_events(ListAuditEventsRequest::default())
            .unwrap();
        assert_eq!(left.events.len(), 1);
        assert_eq!(left.events[0].time, 300.0);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let (c, _dir) = control();
        let err = |r: ListAuditEventsRequest| c.list_audit_events(r).unwrap_err().to_string();
        assert!(
            err(ListAuditEventsRequest {
                operation: Some("Run Task".into()),
                ..Default::default()
            })
            .contains("operation")
        );
        assert!(
            err(ListAuditEventsRequest {
                max_results: Some(0),
                ..Default::default()
            })
            .contains("maxResults")
        );
        assert!(
            err(ListAuditEventsRequest {
                next_token: Some("zz".into()),
                ..Default::default()
            })
            .contains("nextToken")
        );
    }
}
