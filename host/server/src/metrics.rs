//! berth's Prometheus metrics: the one door to `prometheus-client`. Code that
//! has something to count calls the small functions here
//! ([`placement`], [`api_request`], [`heartbeat`], ...); what is a count of
//! the state (tasks by state, instances by connection, the store's and the
//! policies' own counters) is read when scraped ([`Snapshot`], filled by
//! `Control::metrics_snapshot`), not kept twice. [`render`] writes both out
//! in the text format (OpenMetrics 1.0, which Prometheus scrapes).
//!
//! Names follow kube-scheduler's (`scheduler_schedule_attempts_total`,
//! `scheduler_scheduling_attempt_duration_seconds`, `scheduler_pending_pods`).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A metric's labels, in order.
type Labels = Vec<(&'static str, String)>;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets from 100 us to about 3.3 s, doubling: a native placement
/// takes microseconds, an API call with a commit milliseconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// What is counted as it happens, for the process's life.
struct Recorded {
    placement_attempts: Family<Labels, Counter>,
    placement_duration: Family<Labels, Histogram, fn() -> Histogram>,
    api_requests: Family<Labels, Counter>,
    api_duration: Family<Labels, Histogram, fn() -> Histogram>,
    heartbeats: Counter,
    audit_write_failures: Counter,
}

static RECORDED: LazyLock<Recorded> = LazyLock::new(|| Recorded {
    placement_attempts: Family::default(),
    placement_duration: Family::new_with_constructor(latency_histogram),
    api_requests: Family::default(),
    api_duration: Family::new_with_constructor(latency_histogram),
    heartbeats: Counter::default(),
    audit_write_failures: Counter::default(),
});

/// How a placement attempt of one task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementResult {
    /// Placed on an instance.
    Scheduled,
    /// No instance fits, or the policy declined.
    Unschedulable,
    /// The policy failed the decision (trap, deadline, memory, invalid answer).
    Error,
}

impl PlacementResult {
    fn as_str(self) -> &'static str {
        match self {
            PlacementResult::Scheduled => "scheduled",
            PlacementResult::Unschedulable => "unschedulable",
            PlacementResult::Error => "error",
        }
    }
}

/// One placement call of `policy` (`native` for the built-in strategies):
/// `results` has one entry per task; the call's duration is observed under
/// its worst result (error, then unschedulable, then scheduled).
pub fn placement(policy: &str, results: &[PlacementResult], took: Duration) {
    let r = &*RECORDED;
    for result in results {
        r.placement_attempts
            .get_or_create(&vec![
                ("policy", policy.to_owned()),
                ("result", result.as_str().to_owned()),
            ])
            .inc();
    }
    let worst = [
        PlacementResult::Error,
        PlacementResult::Unschedulable,
        PlacementResult::Scheduled,
    ]
    .into_iter()
    .find(|w| results.contains(w));
    if let Some(worst) = worst {
        r.placement_duration
            .get_or_create(&vec![
                ("policy", policy.to_owned()),
                ("result", worst.as_str().to_owned()),
            ])
            .observe(took.as_secs_f64());
    }
}

/// One API call: `operation` as named by its target (`unknown` for targets
/// berth does not serve, so strangers cannot grow the label set), `code` the
/// error code or `Success`.
pub fn api_request(operation: &str, code: &str, took: Duration) {
    let r = &*RECORDED;
    let labels = vec![
        ("operation", operation.to_owned()),
        ("code", code.to_owned()),
    ];
    r.api_requests.get_or_create(&labels).inc();
    r.api_duration
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
}

/// An agent's heartbeat was received.
pub fn heartbeat() {
    RECORDED.heartbeats.inc();
}

/// An audit entry could not be written (the call itself was answered).
pub fn audit_write_failed() {
    RECORDED.audit_write_failures.inc();
}

/// The counts read from the state when scraped.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// (cluster name, task lastStatus, tasks); STOPPED is not counted (a
    /// history up to `--stopped-task-ttl` long, so a scan per scrape).
    pub tasks: Vec<(String, &'static str, u64)>,
    /// (cluster name, reason, PENDING tasks): `unplaced` (waiting for
    /// capacity or a policy) or `awaiting_agent` (placed, not started yet).
    pub pending: Vec<(String, &'static str, u64)>,
    /// (cluster name, instance status, agent connected, instances).
    pub instances: Vec<(String, &'static str, bool, u64)>,
    /// The store's commit conflicts and retries.
    pub store: berth_store::CommitCounts,
    /// (policy name, decisions).
    pub policy_decisions: Vec<(String, u64)>,
    /// (policy name, failure kind, failed decisions).
    pub policy_failures: Vec<(String, String, u64)>,
}

/// The metrics in the text format: what was recorded, and `snap`.
pub fn render(snap: &Snapshot) -> String {
    let r = &*RECORDED;
    let mut reg = Registry::default();
    reg.register(
        "berth_placement_attempts",
        "Tasks the placement engine tried to place, by policy (native for the built-in strategies) and result (scheduled, unschedulable, error)",
        r.placement_attempts.clone(),
    );
    reg.register(
        "berth_placement_attempt_duration_seconds",
        "Duration of one placement call (1 to 10 tasks), by policy and its worst result",
        r.placement_duration.clone(),
    );
    reg.register(
        "berth_api_requests",
        "ECS and berth API calls answered, by operation and code (Success, or the error code)",
        r.api_requests.clone(),
    );
    reg.register(
        "berth_api_request_duration_seconds",
        "Time to answer an API call, after its signature was checked, by operation and code",
        r.api_duration.clone(),
    );
    reg.register(
        "berth_agent_heartbeats",
        "Heartbeats received from agents",
        r.heartbeats.clone(),
    );
    reg.register(
        "berth_audit_write_failures",
        "Mutating calls whose audit entry could not be written",
        r.audit_write_failures.clone(),
    );

    let tasks = Family::<Labels, Gauge>::default();
    for (cluster, state, n) in &snap.tasks {
        tasks
            .get_or_create(&vec![
                ("cluster", cluster.clone()),
                ("state", (*state).to_owned()),
            ])
            .set(gauge(*n));
    }
    reg.register(
        "berth_tasks",
        "Tasks by cluster and lastStatus (STOPPED not counted)",
        tasks,
    );
    let pending = Family::<Labels, Gauge>::default();
    for (cluster, reason, n) in &snap.pending {
        pending
            .get_or_create(&vec![
                ("cluster", cluster.clone()),
                ("reason", (*reason).to_owned()),
            ])
            .set(gauge(*n));
    }
    reg.register(
        "berth_pending_tasks",
        "PENDING tasks by cluster and reason: unplaced (waiting for capacity or a policy), awaiting_agent (placed, not yet started)",
        pending,
    );
    let instances = Family::<Labels, Gauge>::default();
    for (cluster, status, connected, n) in &snap.instances {
        instances
            .get_or_create(&vec![
                ("cluster", cluster.clone()),
                ("status", (*status).to_owned()),
                ("agent_connected", connected.to_string()),
            ])
            .set(gauge(*n));
    }
    reg.register(
        "berth_container_instances",
        "Container instances by cluster, status and agent connection",
        instances,
    );

    for (name, help, v) in [
        (
            "berth_store_commit_conflicts",
            "Store commits refused because something they read had changed",
            snap.store.conflicts,
        ),
        (
            "berth_store_update_retries",
            "Store transactions run again after a conflict",
            snap.store.retries,
        ),
        (
            "berth_store_update_gave_up",
            "Store transactions that ran out of attempts after conflicts",
            snap.store.gave_up,
        ),
    ] {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        reg.register(name, help, c);
    }
    let decisions = Family::<Labels, Counter>::default();
    for (policy, n) in &snap.policy_decisions {
        decisions
            .get_or_create(&vec![("policy", policy.clone())])
            .inc_by(*n);
    }
    reg.register(
        "berth_policy_decisions",
        "Decisions asked of each installed placement policy (since this server loaded it)",
        decisions,
    );
    let failures = Family::<Labels, Counter>::default();
    for (policy, kind, n) in &snap.policy_failures {
        failures
            .get_or_create(&vec![("policy", policy.clone()), ("kind", kind.clone())])
            .inc_by(*n);
    }
    reg.register(
        "berth_policy_failures",
        "Failed decisions of each placement policy by kind: trap, deadline, memory-limit, invalid-answer, instantiate",
        failures,
    );

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_and_the_snapshot_are_rendered() {
        placement(
            "unit-test-policy",
            &[PlacementResult::Scheduled, PlacementResult::Unschedulable],
            Duration::from_millis(2),
        );
        let snap = Snapshot {
            tasks: vec![("prod".into(), "RUNNING", 3)],
            pending: vec![("prod".into(), "unplaced", 2)],
            instances: vec![("prod".into(), "ACTIVE", true, 1)],
            store: berth_store::CommitCounts {
                conflicts: 5,
                retries: 4,
                gave_up: 0,
            },
            policy_decisions: vec![("binpack".into(), 7)],
            policy_failures: vec![("binpack".into(), "trap".into(), 1)],
        };
        let text = render(&snap);
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("parses");
        let value = |name: &str, labels: &[(&str, &str)]| {
            scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                })
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
        };
        assert_eq!(
            value(
                "berth_placement_attempts_total",
                &[("policy", "unit-test-policy"), ("result", "unschedulable")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value("berth_tasks", &[("cluster", "prod"), ("state", "RUNNING")]),
            Some(3.0)
        );
        assert_eq!(
            value(
                "berth_container_instances",
                &[("cluster", "prod"), ("agent_connected", "true")]
            ),
            Some(1.0)
        );
        assert_eq!(value("berth_store_commit_conflicts_total", &[]), Some(5.0));
        assert_eq!(
            value(
                "berth_policy_failures_total",
                &[("policy", "binpack"), ("kind", "trap")]
            ),
            Some(1.0)
        );
        assert!(
            text.contains("berth_placement_attempt_duration_seconds_bucket"),
            "{text}"
        );
    }
}
