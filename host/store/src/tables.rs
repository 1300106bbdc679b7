//! berth's own tables: the domain records of `berth-core` and the indexes
//! the API's lookups need, kept in the same transaction as their tables.
//!
//! Index values that are scoped to a cluster start with the cluster ARN and a
//! space (ARNs hold no spaces), so one index serves every cluster.

use berth_core::model::{Cluster, ContainerInstance, Service, Task, TaskDefinition};
use berth_core::status::TaskStatus;

use crate::{Index, Record};

/// Clusters by status (ACTIVE or INACTIVE).
pub const CLUSTERS_BY_STATUS: Index<Cluster> = Index::new("status");
/// Task definitions by family.
pub const TASK_DEFINITIONS_BY_FAMILY: Index<TaskDefinition> = Index::new("family");
/// Task definitions by status.
pub const TASK_DEFINITIONS_BY_STATUS: Index<TaskDefinition> = Index::new("status");
/// Tasks by cluster ARN.
pub const TASKS_BY_CLUSTER: Index<Task> = Index::new("cluster");
/// Tasks by desired status, [`in_cluster`].
pub const TASKS_BY_DESIRED_STATUS: Index<Task> = Index::new("desired_status");
/// Tasks by last status, [`in_cluster`].
pub const TASKS_BY_LAST_STATUS: Index<Task> = Index::new("last_status");
/// Tasks not yet STOPPED by container instance ARN. A STOPPED task leaves
/// the index: what reads an instance's tasks (its manifest, its usage,
/// placement's view) reads only its live ones, not every task it ever
/// ran (stopped tasks stay in the store for `--stopped-task-ttl`).
pub const TASKS_BY_INSTANCE: Index<Task> = Index::new("instance");
/// Tasks by group, [`in_cluster`].
pub const TASKS_BY_GROUP: Index<Task> = Index::new("group");
/// Services by cluster ARN.
pub const SERVICES_BY_CLUSTER: Index<Service> = Index::new("cluster");
/// Services by status, [`in_cluster`].
pub const SERVICES_BY_STATUS: Index<Service> = Index::new("status");
/// Container instances by cluster ARN.
pub const INSTANCES_BY_CLUSTER: Index<ContainerInstance> = Index::new("cluster");
/// Container instances by status, [`in_cluster`].
pub const INSTANCES_BY_STATUS: Index<ContainerInstance> = Index::new("status");

/// `"<cluster arn> <value>"`: an index value scoped to one cluster.
pub fn in_cluster(cluster_arn: &str, value: &str) -> String {
    format!("{cluster_arn} {value}")
}

impl Record for Cluster {
    const TABLE: &'static str = "clusters";
    /// Clusters are keyed by name, so listing returns them by name.
    fn key(&self) -> String {
        self.cluster_name.clone()
    }
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        vec![(CLUSTERS_BY_STATUS.name(), self.status.as_str().to_owned())]
    }
}

/// Task definitions are keyed `family:revision` with the revision padded, so
/// a family's revisions list in order.
pub fn task_definition_key(family: &str, revision: u32) -> String {
    format!("{family}:{revision:010}")
}

impl Record for TaskDefinition {
    const TABLE: &'static str = "task_definitions";
    fn key(&self) -> String {
        task_definition_key(&self.family, self.revision)
    }
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            (TASK_DEFINITIONS_BY_FAMILY.name(), self.family.clone()),
            (
                TASK_DEFINITIONS_BY_STATUS.name(),
                self.status.as_str().to_owned(),
            ),
        ]
    }
}

impl Record for Task {
    const TABLE: &'static str = "tasks";
    fn key(&self) -> String {
        self.task_arn.clone()
    }
    /// Tasks by cluster, by instance until STOPPED, by group (in a
    /// cluster), and by desired and last status (in a cluster).
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            (TASKS_BY_CLUSTER.name(), self.cluster_arn.clone()),
            (
                TASKS_BY_DESIRED_STATUS.name(),
                in_cluster(&self.cluster_arn, self.desired_status.as_str()),
            ),
            (
                TASKS_BY_LAST_STATUS.name(),
                in_cluster(&self.cluster_arn, self.last_status.as_str()),
            ),
        ];
        if let Some(i) = &self.container_instance_arn
            && self.last_status != TaskStatus::Stopped
        {
            v.push((TASKS_BY_INSTANCE.name(), i.clone()));
        }
        if let Some(g) = &self.group {
            v.push((TASKS_BY_GROUP.name(), in_cluster(&self.cluster_arn, g)));
        }
        v
    }
}

impl Record for Service {
    const TABLE: &'static str = "services";
    fn key(&self) -> String {
        self.service_arn.clone()
    }
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            (SERVICES_BY_CLUSTER.name(), self.cluster_arn.clone()),
            (
                SERVICES_BY_STATUS.name(),
                in_cluster(&self.cluster_arn, self.status.as_str()),
            ),
        ]
    }
}

/// The cluster ARN of a container instance, from its own ARN
/// (`...:container-instance/<cluster>/<id>`), with the rest of the ARN's prefix.
pub fn instance_cluster_arn(arn: &str) -> String {
    match arn.split_once(":container-instance/") {
        Some((prefix, rest)) => {
            let cluster = rest.split('/').next().unwrap_or(rest);
            format!("{prefix}:cluster/{cluster}")
        }
        None => String::new(),
    }
}

impl Record for ContainerInstance {
    const TABLE: &'static str = "container_instances";
    fn key(&self) -> String {
        self.container_instance_arn.clone()
    }
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        let cluster = instance_cluster_arn(&self.container_instance_arn);
        vec![
            (
                INSTANCES_BY_STATUS.name(),
                in_cluster(&cluster, self.status.as_str()),
            ),
            (INSTANCES_BY_CLUSTER.name(), cluster),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::arn::ArnContext;

    #[test]
    fn instance_arn_names_its_cluster() {
        let a = ArnContext::default();
        assert_eq!(
            instance_cluster_arn(&a.container_instance("prod", "abc")),
            a.cluster("prod")
        );
        assert_eq!(instance_cluster_arn("nonsense"), "");
    }

    #[test]
    fn revisions_sort_numerically() {
        assert!(task_definition_key("web", 9) < task_definition_key("web", 10));
    }
}
