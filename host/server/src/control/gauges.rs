//! The counts `GET /metrics` reads from the state when scraped: bounded
//! reads, so a scrape costs the same with a million stopped tasks.

use berth_core::model::{Cluster, ContainerInstance};
use berth_core::status::{ClusterStatus, TaskStatus};
use berth_store::tables::{
    CLUSTERS_BY_STATUS, INSTANCES_BY_CLUSTER, TASKS_BY_LAST_STATUS, in_cluster,
};

use super::{Control, ControlError, all_by_index};
use crate::metrics::Snapshot;

impl Control {
    /// Tasks by state and instances by connection per ACTIVE cluster, and
    /// the store's and the policies' counters. Tasks are counted from the
    /// status index alone (no record read); STOPPED is left out, since
    /// counting it would walk every stopped task kept for the TTL. The
    /// instances are read (one record each, the fleet's size).
    pub fn metrics_snapshot(&self) -> Result<Snapshot, ControlError> {
        let txn = self.store.begin()?;
        let mut snap = Snapshot {
            store: self.store.commit_counts(),
            ..Snapshot::default()
        };
        let clusters: Vec<Cluster> =
            all_by_index(&txn, CLUSTERS_BY_STATUS, ClusterStatus::Active.as_str())?
                .into_iter()
                .map(|c| c.value)
                .collect();
        for c in &clusters {
            let name = &c.cluster_name;
            let mut pending = 0;
            for &state in TaskStatus::ALL {
                if state == TaskStatus::Stopped {
                    continue;
                }
                let n = txn.count_by_index(
                    TASKS_BY_LAST_STATUS,
                    &in_cluster(&c.cluster_arn, state.as_str()),
                )?;
                if state == TaskStatus::Pending {
                    pending = n;
                }
                snap.tasks.push((name.clone(), state.as_str(), n));
            }
            let mut by_kind: std::collections::BTreeMap<(&'static str, bool), u64> =
                Default::default();
            let mut assigned = 0u64;
            for ci in all_by_index::<ContainerInstance>(&txn, INSTANCES_BY_CLUSTER, &c.cluster_arn)?
            {
                let ci = ci.value;
                *by_kind
                    .entry((ci.status.as_str(), ci.agent_connected))
                    .or_default() += 1;
                assigned += u64::from(ci.pending_tasks_count);
            }
            for ((status, connected), n) in by_kind {
                snap.instances.push((name.clone(), status, connected, n));
            }
            // An instance's pendingTasksCount is its placed tasks not yet
            // RUNNING; the cluster's other PENDING tasks wait for a place.
            let assigned = assigned.min(pending);
            snap.pending
                .push((name.clone(), "awaiting_agent", assigned));
            snap.pending
                .push((name.clone(), "unplaced", pending - assigned));
        }
        if let Some(reg) = self.policies.as_deref() {
            for p in reg.list() {
                snap.policy_decisions
                    .push((p.name.clone(), p.stats.decisions));
                for (kind, n) in &p.stats.failures {
                    snap.policy_failures
                        .push((p.name.clone(), kind.as_str().to_owned(), *n));
                }
            }
        }
        Ok(snap)
    }
}
