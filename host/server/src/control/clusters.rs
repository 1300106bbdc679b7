//! CreateCluster, DescribeClusters, ListClusters, DeleteCluster.

use berth_core::arn;
use berth_core::model::Cluster;
use berth_core::status::{ClusterStatus, DesiredStatus, InstanceStatus, ServiceStatus, TaskStatus};
use berth_store::tables::{
    CLUSTERS_BY_STATUS, INSTANCES_BY_STATUS, SERVICES_BY_STATUS, TASKS_BY_CLUSTER,
    TASKS_BY_LAST_STATUS, in_cluster,
};
use berth_store::{StoreError, Txn};

use super::types::*;
use super::{Control, ControlError, all_by_index, paginate};

/// ECS's rule for cluster names.
pub(super) fn valid_cluster_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Fills the counts of `c` from the indexes, so they are never stale
/// (counted from index entries alone: a cluster of a million tasks is
/// described without reading them).
pub(super) fn with_counts(txn: &Txn, mut c: Cluster) -> Result<Cluster, StoreError> {
    let arn = &c.cluster_arn;
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let count = |status: TaskStatus| -> Result<u32, StoreError> {
        let value = in_cluster(arn, status.as_str());
        Ok(clamp(txn.count_by_index(TASKS_BY_LAST_STATUS, &value)?))
    };
    let mut instances = 0;
    for status in [InstanceStatus::Active, InstanceStatus::Draining] {
        instances += txn.count_by_index(INSTANCES_BY_STATUS, &in_cluster(arn, status.as_str()))?;
    }
    c.registered_container_instances_count = clamp(instances);
    c.running_tasks_count = count(TaskStatus::Running)?;
    c.pending_tasks_count = count(TaskStatus::Pending)?;
    let active_services = in_cluster(arn, ServiceStatus::Active.as_str());
    c.active_services_count = clamp(txn.count_by_index(SERVICES_BY_STATUS, &active_services)?);
    Ok(c)
}

/// Makes sure cluster `name` exists and is ACTIVE (created, or an INACTIVE
/// one reactivated), in `txn`: the one "ensure cluster" of berth, for the
/// `default` cluster at start and for an agent registering in its cluster.
pub(super) fn ensure_cluster(
    txn: &mut Txn,
    arn_ctx: &arn::ArnContext,
    name: &str,
) -> Result<Cluster, ControlError> {
    if let Some(c) = txn.get::<Cluster>(name)?
        && c.value.status == ClusterStatus::Active
    {
        return Ok(c.value);
    }
    let c = Cluster {
        cluster_arn: arn_ctx.cluster(name),
        cluster_name: name.to_owned(),
        status: ClusterStatus::Active,
        registered_container_instances_count: 0,
        running_tasks_count: 0,
        pending_tasks_count: 0,
        active_services_count: 0,
        tags: Vec::new(),
    };
    txn.put(&c)?;
    Ok(c)
}

impl Control {
    /// CreateCluster: idempotent for an ACTIVE cluster of that name;
    /// reactivates an INACTIVE one.
    pub fn create_cluster(
        &self,
        req: CreateClusterRequest,
    ) -> Result<ClusterResponse, ControlError> {
        let name = req.cluster_name.unwrap_or_else(|| "default".to_owned());
        if !valid_cluster_name(&name) {
            return Err(ControlError::invalid(
                "clusterName",
                format!(
                    "`{}` is not a valid cluster name (1-255 letters, digits, hyphens, underscores)",
                    berth_core::quote::Quoted(&name)
                ),
            ));
        }
        let arn = self.arn.cluster(&name);
        let tags = req.tags;
        let up = self.store.update(|txn| -> Result<Cluster, ControlError> {
            if let Some(c) = txn.get::<Cluster>(&name)?
                && c.value.status == ClusterStatus::Active
            {
                return Ok(c.value);
            }
            let c = Cluster {
                cluster_arn: arn.clone(),
                cluster_name: name.clone(),
                status: ClusterStatus::Active,
                registered_container_instances_count: 0,
                running_tasks_count: 0,
                pending_tasks_count: 0,
                active_services_count: 0,
                tags: tags.clone(),
            };
            txn.put(&c)?;
            Ok(c)
        })?;
        let txn = self.store.begin()?;
        Ok(ClusterResponse {
            cluster: with_counts(&txn, up.value)?,
        })
    }

    /// DescribeClusters: unknown clusters come back as failures MISSING.
    pub fn describe_clusters(
        &self,
        req: DescribeClustersRequest,
    ) -> Result<DescribeClustersResponse, ControlError> {
        let names = req.clusters.unwrap_or_else(|| vec!["default".to_owned()]);
        if names.len() > 100 {
            return Err(ControlError::invalid(
                "clusters",
                format!("{} clusters given; at most 100", names.len()),
            ));
        }
        let mut txn = self.store.begin()?;
        let mut clusters = Vec::new();
        let mut failures = Vec::new();
        for n in names {
            match txn.get::<Cluster>(arn::cluster_name(&n))? {
                Some(c) => clusters.push(with_counts(&txn, c.value)?),
                None => failures.push(Failure {
                    arn: Some(if n.starts_with("arn:") {
                        n
                    } else {
                        self.arn.cluster(&n)
                    }),
                    reason: "MISSING".into(),
                    detail: None,
                }),
            }
        }
        Ok(DescribeClustersResponse { clusters, failures })
    }

    /// ListClusters: the ACTIVE clusters by name.
    pub fn list_clusters(&self, req: ListRequest) -> Result<ListClustersResponse, ControlError> {
        let txn = self.store.begin()?;
        let items: Vec<(String, String)> =
            all_by_index(&txn, CLUSTERS_BY_STATUS, ClusterStatus::Active.as_str())?
                .into_iter()
                .map(|c| (c.value.cluster_name, c.value.cluster_arn))
                .collect();
        let (cluster_arns, next_token) =
            paginate(items, req.next_token.as_deref(), req.max_results, false)?;
        Ok(ListClustersResponse {
            cluster_arns,
            next_token,
        })
    }

    /// DeleteCluster: refused while the cluster holds container instances,
    /// active services or tasks not yet stopped; else it becomes INACTIVE.
    pub fn delete_cluster(&self, req: ClusterRequest) -> Result<ClusterResponse, ControlError> {
        let name_or_arn = req
            .cluster
            .ok_or_else(|| ControlError::invalid("cluster", "is required"))?;
        let up = self.store.update(|txn| -> Result<Cluster, ControlError> {
            let mut c = self.active_cluster(txn, Some(&name_or_arn))?;
            let c = {
                let counted = with_counts(txn, c.clone())?;
                if counted.registered_container_instances_count > 0 {
                    return Err(ControlError::ClusterContainsContainerInstances(format!(
                        "cluster `{}` has {} registered container instances; deregister them first",
                        c.cluster_name, counted.registered_container_instances_count
                    )));
                }
                if counted.active_services_count > 0 {
                    return Err(ControlError::ClusterContainsServices(format!(
                        "cluster `{}` has {} active services; delete them first",
                        c.cluster_name, counted.active_services_count
                    )));
                }
                let live = all_by_index(txn, TASKS_BY_CLUSTER, &c.cluster_arn)?
                    .into_iter()
                    .filter(|t| {
                        t.value.last_status != TaskStatus::Stopped
                            || t.value.desired_status != DesiredStatus::Stopped
                    })
                    .count();
                if live > 0 {
                    return Err(ControlError::ClusterContainsTasks(format!(
                        "cluster `{}` has {live} tasks not stopped; stop them first",
                        c.cluster_name
                    )));
                }
                c.status = ClusterStatus::Inactive;
                c
            };
            txn.put(&c)?;
            Ok(c)
        })?;
        Ok(ClusterResponse { cluster: up.value })
    }
}
