//! RegisterContainerInstance, DescribeContainerInstances,
//! ListContainerInstances, DeregisterContainerInstance,
//! UpdateContainerInstancesState, PutAttributes, DeleteAttributes,
//! ListAttributes.

use berth_core::arn;
use berth_core::model::{Attribute, ContainerInstance, Resource, Task};
use berth_core::query::{self, QueryTarget};
use berth_core::status::{DesiredStatus, InstanceStatus, TaskStatus};
use berth_protocol::{HostFacts, RegisterInstance, builtin_attributes};
use berth_store::Txn;
use berth_store::tables::{INSTANCES_BY_CLUSTER, TASKS_BY_INSTANCE};

use super::types::*;
use super::{Control, ControlError, all_by_index, now, paginate};

/// Records a registration in `txn`, after making sure its cluster exists
/// (see `clusters::ensure_cluster`): a new instance, or the recorded one
/// refreshed (`berth_protocol::refresh_instance`; an agent's restart keeps
/// the status, e.g. DRAINING, and custom attributes; with `replace`, as
/// RegisterContainerInstance does, the instance is ACTIVE again and the
/// registration's attributes and host id replace the recorded ones). Either way its usage is recomputed from the tasks it holds and
/// the record rewritten. The one registration path: the API's
/// RegisterContainerInstance and the agents' protocol both come here.
pub(super) fn put_registration(
    txn: &mut Txn,
    arn_ctx: &arn::ArnContext,
    req: &RegisterInstance,
    replace: bool,
) -> Result<ContainerInstance, ControlError> {
    // An agent's registration is checked as RegisterContainerInstance's
    // is: it may come from another host, over the network.
    if !super::clusters::valid_cluster_name(&req.cluster) {
        return Err(ControlError::invalid(
            "cluster",
            format!(
                "`{}` is not a valid cluster name (1-255 letters, digits, hyphens, underscores)",
                berth_core::quote::Quoted(&req.cluster)
            ),
        ));
    }
    for (i, a) in req.attributes.iter().enumerate() {
        check_attribute(a, &format!("attributes[{i}]"))?;
    }
    super::clusters::ensure_cluster(txn, arn_ctx, &req.cluster)?;
    let ci = match txn.get::<ContainerInstance>(&req.container_instance_arn)? {
        Some(prior) => {
            let mut ci = prior.value;
            if replace {
                ci.attributes.clear();
                ci.status = InstanceStatus::Active;
                ci.ec2_instance_id = req.ec2_instance_id.clone();
            }
            berth_protocol::refresh_instance(&mut ci, req);
            ci
        }
        None => berth_protocol::new_instance(req, now()),
    };
    let mut ci = super::tasks::recount(txn, ci)?;
    ci.version += 1;
    txn.put(&ci)?;
    Ok(ci)
}

/// ECS's rule for attribute names and values.
fn check_attribute(a: &Attribute, path: &str) -> Result<(), ControlError> {
    let ok_name = !a.name.is_empty()
        && a.name.len() <= 128
        && a.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '@'));
    if !ok_name {
        return Err(ControlError::invalid(
            &format!("{path}.name"),
            format!(
                "`{}` is not a valid attribute name",
                berth_core::quote::Quoted(&a.name)
            ),
        ));
    }
    if let Some(v) = &a.value
        && (v.is_empty() || v.len() > 128)
    {
        return Err(ControlError::invalid(
            &format!("{path}.value"),
            format!("`{v}` must be 1-128 characters"),
        ));
    }
    Ok(())
}

pub(super) use berth_core::usage::integer_resource;

/// The tasks that hold resources on an instance: desired RUNNING.
pub(super) fn tasks_on(txn: &Txn, instance_arn: &str) -> Result<Vec<Task>, ControlError> {
    Ok(all_by_index(txn, TASKS_BY_INSTANCE, instance_arn)?
        .into_iter()
        .map(|t| t.value)
        .filter(|t| t.desired_status == DesiredStatus::Running)
        .collect())
}

/// A container instance as the cluster query language sees it.
struct InstanceView<'a> {
    ci: &'a ContainerInstance,
    groups: Vec<String>,
}

impl QueryTarget for InstanceView<'_> {
    fn agent_connected(&self) -> bool {
        self.ci.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.ci
            .version_info
            .as_ref()
            .and_then(|v| v.agent_version.as_deref())
    }
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.ci
            .attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_deref())
    }
    fn ec2_instance_id(&self) -> &str {
        &self.ci.ec2_instance_id
    }
    fn registered_at(&self) -> f64 {
        self.ci.registered_at.unwrap_or(0.0)
    }
    fn running_tasks_count(&self) -> u32 {
        self.ci.running_tasks_count
    }
    fn any_task_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.groups.iter().any(|g| f(g))
    }
}

impl Control {
    /// The instance `id_or_arn` of `cluster_arn`, read with CAS.
    fn instance(
        &self,
        txn: &mut Txn,
        cluster_name: &str,
        id_or_arn: &str,
    ) -> Result<Option<ContainerInstance>, ControlError> {
        let arn = if id_or_arn.starts_with("arn:") {
            id_or_arn.to_owned()
        } else {
            self.arn
                .container_instance(cluster_name, arn::last_segment(id_or_arn))
        };
        Ok(txn.get::<ContainerInstance>(&arn)?.map(|v| v.value))
    }

    /// RegisterContainerInstance: CPU and MEMORY are required resources; the
    /// instance starts ACTIVE with its agent counted as connected.
    pub fn register_container_instance(
        &self,
        req: RegisterContainerInstanceRequest,
    ) -> Result<ContainerInstanceResponse, ControlError> {
        for (i, r) in req.total_resources.iter().enumerate() {
            match r.name.as_str() {
                "CPU" | "MEMORY" => {
                    if r.integer_value
                        .or(r.long_value)
                        .is_none_or(|v| !(0..=i64::from(u32::MAX)).contains(&v))
                    {
                        return Err(ControlError::invalid(
                            &format!("totalResources[{i}].integerValue"),
                            format!("{} needs a non-negative integerValue", r.name),
                        ));
                    }
                }
                "PORTS" | "PORTS_UDP" => {
                    for p in r.string_set_value.iter().flatten() {
                        if p.parse::<u16>().is_err() {
                            return Err(ControlError::invalid(
                                &format!("totalResources[{i}].stringSetValue"),
                                format!("`{p}` is not a port number"),
                            ));
                        }
                    }
                }
                other => {
                    return Err(ControlError::invalid(
                        &format!("totalResources[{i}].name"),
                        format!("`{other}` is not one of CPU, MEMORY, PORTS, PORTS_UDP"),
                    ));
                }
            }
        }
        for name in ["CPU", "MEMORY"] {
            if integer_resource(&req.total_resources, name).is_none() {
                return Err(ControlError::invalid(
                    "totalResources",
                    format!("no {name} resource given"),
                ));
            }
        }
        for (i, a) in req.attributes.iter().enumerate() {
            check_attribute(a, &format!("attributes[{i}]"))?;
        }
        let host_id = match &req.instance_identity_document {
            Some(doc) => serde_json::from_str::<serde_json::Value>(doc)
                .ok()
                .and_then(|v| {
                    v.get("instanceId")
                        .and_then(|i| i.as_str())
                        .map(str::to_owned)
                })
                .ok_or_else(|| {
                    ControlError::invalid(
                        "instanceIdentityDocument",
                        "is not a JSON object with an `instanceId` string",
                    )
                })?,
            None => format!("i-{}", &uuid::Uuid::new_v4().simple().to_string()[..17]),
        };
        let mut attributes = req.attributes.clone();
        for b in builtin_attributes(&HostFacts::assumed()) {
            if !attributes.iter().any(|a| a.name == b.name) {
                attributes.push(b);
            }
        }
        let mut registered = req.total_resources.clone();
        for name in ["PORTS", "PORTS_UDP"] {
            if !registered.iter().any(|r| r.name == name) {
                registered.push(Resource::string_set(name, Vec::new()));
            }
        }
        let up = self
            .store
            .update(|txn| -> Result<ContainerInstance, ControlError> {
                let cluster = self.active_cluster(txn, req.cluster.as_deref())?;
                let arn = match &req.container_instance_arn {
                    Some(a) => a.clone(),
                    None => self.arn.container_instance(
                        &cluster.cluster_name,
                        &uuid::Uuid::new_v4().simple().to_string(),
                    ),
                };
                let registration = RegisterInstance {
                    cluster: cluster.cluster_name.clone(),
                    container_instance_arn: arn,
                    ec2_instance_id: host_id.clone(),
                    agent_connected: true,
                    total_resources: registered.clone(),
                    attributes: attributes.clone(),
                    version_info: req.version_info.clone().unwrap_or_default(),
                };
                // Re-registration keeps the tasks: their usage is recomputed.
                put_registration(txn, &self.arn, &registration, true)
            })?;
        Ok(ContainerInstanceResponse {
            container_instance: up.value,
        })
    }

    /// DescribeContainerInstances: unknown ones come back as MISSING.
    pub fn describe_container_instances(
        &self,
        req: DescribeContainerInstancesRequest,
    ) -> Result<ContainerInstancesResponse, ControlError> {
        if req.container_instances.is_empty() || req.container_instances.len() > 100 {
            return Err(ControlError::invalid(
                "containerInstances",
                "give 1-100 container instances",
            ));
        }
        let mut txn = self.store.begin()?;
        let cluster = self.active_cluster(&mut txn, req.cluster.as_deref())?;
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for id in &req.container_instances {
            match self.instance(&mut txn, &cluster.cluster_name, id)? {
                Some(ci) => out.push(ci),
                None => failures.push(Failure {
                    arn: Some(id.clone()),
                    reason: "MISSING".into(),
                    detail: None,
                }),
            }
        }
        Ok(ContainerInstancesResponse {
            container_instances: out,
            failures,
        })
    }

    /// ListContainerInstances, with a cluster-query-language filter and a status.
    pub fn list_container_instances(
        &self,
        req: ListContainerInstancesRequest,
    ) -> Result<ListContainerInstancesResponse, ControlError> {
        let filter = match req.filter.as_deref() {
            Some(f) => Some(
                query::parse(f)
                    .map_err(|e| ControlError::invalid("filter", format!("`{f}`: {e}")))?,
            ),
            None => None,
        };
        let wanted = match req.status.as_deref() {
            Some(s) => Some(s.parse::<InstanceStatus>().map_err(|_| {
                ControlError::invalid(
                    "status",
                    format!("`{s}` is not a container instance status"),
                )
            })?),
            None => None,
        };
        let mut txn = self.store.begin()?;
        let cluster = self.active_cluster(&mut txn, req.cluster.as_deref())?;
        let mut items = Vec::new();
        for ci in all_by_index(&txn, INSTANCES_BY_CLUSTER, &cluster.cluster_arn)? {
            let ci = ci.value;
            match wanted {
                Some(s) if ci.status != s => continue,
                None if ci.status == InstanceStatus::Inactive => continue,
                _ => {}
            }
            if let Some(f) = &filter {
                let groups = tasks_on(&txn, &ci.container_instance_arn)?
                    .into_iter()
                    .filter_map(|t| t.group)
                    .collect();
                if !f.eval(&InstanceView { ci: &ci, groups }) {
                    continue;
                }
            }
            items.push((ci.container_instance_arn.clone(), ci.container_instance_arn));
        }
        let (container_instance_arns, next_token) =
            paginate(items, req.next_token.as_deref(), req.max_results, false)?;
        Ok(ListContainerInstancesResponse {
            container_instance_arns,
            next_token,
        })
    }

    /// DeregisterContainerInstance: refused while tasks run on it unless
    /// `force`, which marks those tasks STOPPED (berth no longer tracks them).
    pub fn deregister_container_instance(
        &self,
        req: DeregisterContainerInstanceRequest,
    ) -> Result<ContainerInstanceResponse, ControlError> {
        let id = req
            .container_instance
            .clone()
            .ok_or_else(|| ControlError::invalid("containerInstance", "is required"))?;
        let force = req.force.unwrap_or(false);
        let up = self.store.update(|txn| -> Result<ContainerInstance, ControlError> {
            let cluster = self.active_cluster(txn, req.cluster.as_deref())?;
            let mut ci = self
                .instance(txn, &cluster.cluster_name, &id)?
                .filter(|c| c.status != InstanceStatus::Inactive)
                .ok_or_else(|| ControlError::InvalidParameter(format!("containerInstance: `{id}` is not a registered instance of cluster `{}`", cluster.cluster_name)))?;
            let tasks = tasks_on(txn, &ci.container_instance_arn)?;
            if !tasks.is_empty() && !force {
                return Err(ControlError::InvalidParameter(format!(
                    "containerInstance: `{id}` has {} tasks; stop them or pass force",
                    tasks.len()
                )));
            }
            let t = now();
            for mut task in tasks {
                task.desired_status = DesiredStatus::Stopped;
                task.last_status = TaskStatus::Stopped;
                task.stopped_reason = Some("Container instance deregistered".into());
                task.stopping_at.get_or_insert(t);
                task.stopped_at = Some(t);
                task.version += 1;
                txn.get::<Task>(&task.task_arn)?;
                txn.put(&task)?;
            }
            mark_inactive(&mut ci);
            txn.put(&ci)?;
            Ok(ci)
        })?;
        Ok(ContainerInstanceResponse {
            container_instance: up.value,
        })
    }

    /// UpdateContainerInstancesState: ACTIVE or DRAINING.
    pub fn update_container_instances_state(
        &self,
        req: UpdateContainerInstancesStateRequest,
    ) -> Result<ContainerInstancesResponse, ControlError> {
        let given = req
            .status
            .as_deref()
            .ok_or_else(|| ControlError::invalid("status", "is required"))?;
        let status = match given.parse::<InstanceStatus>() {
            Ok(s @ (InstanceStatus::Active | InstanceStatus::Draining)) => s,
            _ => {
                return Err(ControlError::invalid(
                    "status",
                    format!("`{given}` is not one of ACTIVE, DRAINING"),
                ));
            }
        };
        if req.container_instances.is_empty() || req.container_instances.len() > 10 {
            return Err(ControlError::invalid(
                "containerInstances",
                "give 1-10 container instances",
            ));
        }
        let up = self
            .store
            .update(|txn| -> Result<ContainerInstancesResponse, ControlError> {
                let cluster = self.active_cluster(txn, req.cluster.as_deref())?;
                let mut out = Vec::new();
                let mut failures = Vec::new();
                for id in &req.container_instances {
                    match self
                        .instance(txn, &cluster.cluster_name, id)?
                        .filter(|c| c.status != InstanceStatus::Inactive)
                    {
                        Some(mut ci) => {
                            if ci.status != status {
                                ci.status = status;
                                ci.version += 1;
                                txn.put(&ci)?;
                            }
                            out.push(ci);
                        }
                        None => failures.push(Failure {
                            arn: Some(id.clone()),
                            reason: "MISSING".into(),
                            detail: None,
                        }),
                    }
                }
                Ok(ContainerInstancesResponse {
                    container_instances: out,
                    failures,
                })
            })?;
        Ok(up.value)
    }

    /// PutAttributes (`put`) or DeleteAttributes on container instances.
    pub fn change_attributes(
        &self,
        req: AttributesRequest,
        put: bool,
    ) -> Result<AttributesResponse, ControlError> {
        if req.attributes.is_empty() || req.attributes.len() > 10 {
            return Err(ControlError::invalid("attributes", "give 1-10 attributes"));
        }
        for (i, a) in req.attributes.iter().enumerate() {
            check_attribute(a, &format!("attributes[{i}]"))?;
            // As ECS: the `ecs.` attributes are the agent's to say (it sets
            // them afresh at every registration, so a change would not last).
            if a.name.starts_with("ecs.") {
                return Err(ControlError::invalid(
                    &format!("attributes[{i}].name"),
                    format!(
                        "`{}` is a built-in attribute and cannot be {}; set an instance's zone with `berth up --zones` or `berth agent --availability-zone`",
                        a.name,
                        if put { "changed" } else { "deleted" }
                    ),
                ));
            }
            if a.target_type
                .as_deref()
                .is_some_and(|t| t != "container-instance")
            {
                return Err(ControlError::invalid(
                    &format!("attributes[{i}].targetType"),
                    "must be container-instance",
                ));
            }
            if a.target_id.is_none() {
                return Err(ControlError::invalid(
                    &format!("attributes[{i}].targetId"),
                    "is required",
                ));
            }
        }
        let up = self.store.update(|txn| -> Result<Vec<Attribute>, ControlError> {
            let cluster = self.active_cluster(txn, req.cluster.as_deref())?;
            let mut changed: Vec<ContainerInstance> = Vec::new();
            let mut out = Vec::new();
            for (i, a) in req.attributes.iter().enumerate() {
                let target = a.target_id.as_deref().unwrap_or_default();
                let pos = changed.iter().position(|c| c.container_instance_arn.ends_with(arn::last_segment(target)));
                let mut ci = match pos {
                    Some(p) => changed.swap_remove(p),
                    None => self.instance(txn, &cluster.cluster_name, target)?.filter(|c| c.status != InstanceStatus::Inactive).ok_or_else(|| {
                        ControlError::Client(format!("attributes[{i}].targetId: `{target}` is not an instance of cluster `{}`", cluster.cluster_name))
                    })?,
                };
                ci.attributes.retain(|x| x.name != a.name);
                if put {
                    ci.attributes.push(Attribute { name: a.name.clone(), value: a.value.clone(), target_type: None, target_id: None });
                }
                out.push(Attribute {
                    name: a.name.clone(),
                    value: a.value.clone(),
                    target_type: Some("container-instance".into()),
                    target_id: Some(ci.container_instance_arn.clone()),
                });
                changed.push(ci);
            }
            for mut ci in changed {
                ci.version += 1;
                txn.put(&ci)?;
            }
            Ok(out)
        })?;
        Ok(AttributesResponse {
            attributes: up.value,
        })
    }

    /// ListAttributes of the cluster's container instances.
    pub fn list_attributes(
        &self,
        req: ListAttributesRequest,
    ) -> Result<ListAttributesResponse, ControlError> {
        match req.target_type.as_deref() {
            Some("container-instance") => {}
            Some(t) => {
                return Err(ControlError::invalid(
                    "targetType",
                    format!("`{t}` is not container-instance"),
                ));
            }
            None => return Err(ControlError::invalid("targetType", "is required")),
        }
        let mut txn = self.store.begin()?;
        let cluster = self.active_cluster(&mut txn, req.cluster.as_deref())?;
        let mut items = Vec::new();
        for ci in all_by_index(&txn, INSTANCES_BY_CLUSTER, &cluster.cluster_arn)? {
            let ci = ci.value;
            if ci.status == InstanceStatus::Inactive {
                continue;
            }
            for a in &ci.attributes {
                if req.attribute_name.as_deref().is_some_and(|n| n != a.name)
                    || req
                        .attribute_value
                        .as_deref()
                        .is_some_and(|v| Some(v) != a.value.as_deref())
                {
                    continue;
                }
                items.push((
                    format!("{} {}", ci.container_instance_arn, a.name),
                    Attribute {
                        name: a.name.clone(),
                        value: a.value.clone(),
                        target_type: Some("container-instance".into()),
                        target_id: Some(ci.container_instance_arn.clone()),
                    },
                ));
            }
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let (attributes, next_token) =
            paginate(items, req.next_token.as_deref(), req.max_results, false)?;
        Ok(ListAttributesResponse {
            attributes,
            next_token,
        })
    }
}

/// An instance leaves the cluster: INACTIVE, disconnected, holding nothing.
/// DeregisterContainerInstance and an agent retiring its instance share it.
pub(crate) fn mark_inactive(ci: &mut ContainerInstance) {
    ci.status = InstanceStatus::Inactive;
    ci.agent_connected = false;
    ci.running_tasks_count = 0;
    ci.pending_tasks_count = 0;
    ci.remaining_resources = ci.registered_resources.clone();
    ci.version += 1;
}
