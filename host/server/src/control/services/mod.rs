//! Services: CreateService, UpdateService, DeleteService, DescribeServices
//! and ListServices here; the wire types in [`wire`], the scheduler's
//! memory of each service in [`state`], and the service scheduler's pass in
//! [`scheduler`].
//!
//! A service's tasks are in group `service:<name>` and started by their
//! deployment's id (`ecs-svc/<digits>`). Each pass, per service, in one CAS
//! transaction, the scheduler reads the service, its memory, its tasks and
//! the cluster's instances, asks the pure reconciler
//! ([`berth_core::reconcile`]) for a step, and applies it: stops, starts
//! through RunTask's placement, and the service, deployments and memory
//! the step says.

mod scheduler;
mod state;
#[cfg(test)]
mod tests;
mod wire;

use berth_core::model::{
    Deployment, DeploymentConfiguration, SchedulingStrategy, Service, ServiceEvent,
};
use berth_core::reconcile::group_of;
use berth_core::status::{DeploymentStatus, RolloutState, ServiceStatus, TaskDefinitionStatus};
use berth_store::Txn;
use berth_store::tables::SERVICES_BY_CLUSTER;

pub use state::ServiceState;
pub use wire::*;

use super::taskdefs::resolve;
use super::types::Failure;
use super::{Control, ControlError, all_by_index, now, paginate};

/// Events kept per service, newest first.
pub const MAX_EVENTS: usize = 100;

fn new_deployment_id() -> String {
    // ECS's deployment ids are `ecs-svc/` and 19 digits.
    let n = uuid::Uuid::new_v4().as_u64_pair().0 % 9_000_000_000_000_000_000
        + 1_000_000_000_000_000_000;
    format!("ecs-svc/{n}")
}

fn push_event(s: &mut Service, message: String) {
    // The same news again adds nothing: keep the older event.
    if s.events.first().is_some_and(|e| e.message == message) {
        return;
    }
    tracing::info!(service = %s.service_name, "{message}");
    s.events.insert(
        0,
        ServiceEvent {
            id: uuid::Uuid::new_v4().to_string(),
            created_at: now(),
            message,
        },
    );
    s.events.truncate(MAX_EVENTS);
}

/// The service as DescribeServices shows it: its PRIMARY and ACTIVE
/// deployments, as ECS does. The INACTIVE ones stay in the store (the
/// breaker rolls back to the last completed one) but are not shown, so a
/// steady service has exactly one deployment, which is what
/// `aws ecs wait services-stable` waits for.
fn shown(mut s: Service) -> Service {
    s.deployments
        .retain(|d| d.status != DeploymentStatus::Inactive);
    s
}

fn u32_field(field: &str, v: i64, max: i64) -> Result<u32, ControlError> {
    if !(0..=max).contains(&v) {
        return Err(ControlError::invalid(
            field,
            format!("{v} is out of range 0-{max}"),
        ));
    }
    u32::try_from(v).map_err(|_| ControlError::invalid(field, format!("{v} is out of range")))
}

fn check_deployment_configuration(dc: &DeploymentConfiguration) -> Result<(), ControlError> {
    if let Some(m) = dc.maximum_percent
        && !(100..=2000).contains(&m)
    {
        return Err(ControlError::invalid(
            "deploymentConfiguration.maximumPercent",
            format!("{m} is out of range 100-2000"),
        ));
    }
    if let Some(m) = dc.minimum_healthy_percent
        && m > 100
    {
        return Err(ControlError::invalid(
            "deploymentConfiguration.minimumHealthyPercent",
            format!("{m} is out of range 0-100"),
        ));
    }
    Ok(())
}

fn valid_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Control {
    fn service_arn_of(&self, cluster_name: &str, name_or_arn: &str) -> String {
        if name_or_arn.starts_with("arn:") {
            name_or_arn.to_owned()
        } else {
            self.arn.service(cluster_name, name_or_arn)
        }
    }

    /// The service named in `cluster`, ACTIVE or not.
    pub(super) fn service_in(
        &self,
        txn: &mut Txn,
        cluster_name: &str,
        cluster_arn: &str,
        name_or_arn: &str,
    ) -> Result<Service, ControlError> {
        let arn = self.service_arn_of(cluster_name, name_or_arn);
        txn.get::<Service>(&arn)?
            .map(|s| s.value)
            .filter(|s| s.cluster_arn == cluster_arn)
            .ok_or_else(|| {
                ControlError::ServiceNotFound(format!(
                    "service `{name_or_arn}` not found in cluster `{cluster_name}`"
                ))
            })
    }

    /// The service `name_or_arn` of the cluster `cluster` names (else
    /// `default`), refused unless ACTIVE: a DRAINING or INACTIVE service
    /// takes no update and no second deletion.
    fn active_service_in(
        &self,
        txn: &mut Txn,
        cluster: Option<&str>,
        name_or_arn: &str,
    ) -> Result<Service, ControlError> {
        let cluster = self.active_cluster(txn, cluster)?;
        let s = self.service_in(
            txn,
            &cluster.cluster_name,
            &cluster.cluster_arn,
            name_or_arn,
        )?;
        if s.status != ServiceStatus::Active {
            return Err(ControlError::ServiceNotActive(format!(
                "service `{}` is {}",
                s.service_name, s.status
            )));
        }
        Ok(s)
    }

    /// CreateService: a REPLICA or DAEMON service with its first deployment.
    pub fn create_service(
        &self,
        req: CreateServiceRequest,
    ) -> Result<ServiceResponse, ControlError> {
        let name = req
            .service_name
            .clone()
            .ok_or_else(|| ControlError::invalid("serviceName", "is required"))?;
        if !valid_service_name(&name) {
            return Err(ControlError::invalid(
                "serviceName",
                format!(
                    "`{name}` is not a valid name (1-255 letters, digits, hyphens, underscores)"
                ),
            ));
        }
        let td_ref = req
            .task_definition
            .clone()
            .ok_or_else(|| ControlError::invalid("taskDefinition", "is required"))?;
        let strategy = req.scheduling_strategy.unwrap_or_default();
        let desired = match (strategy, req.desired_count) {
            (SchedulingStrategy::Replica, None) => {
                return Err(ControlError::invalid(
                    "desiredCount",
                    "is required for a REPLICA service",
                ));
            }
            (SchedulingStrategy::Replica, Some(d)) => u32_field("desiredCount", d, 10_000)?,
            (SchedulingStrategy::Daemon, Some(_)) => {
                return Err(ControlError::invalid(
                    "desiredCount",
                    "is not allowed for a DAEMON service",
                ));
            }
            (SchedulingStrategy::Daemon, None) => 0,
        };
        if let Some(dc) = &req.deployment_configuration {
            check_deployment_configuration(dc)?;
        }
        let grace = req
            .health_check_grace_period_seconds
            .map(|g| u32_field("healthCheckGracePeriodSeconds", g, 2_147_483_647))
            .transpose()?;
        if let Some(l) = &req.launch_type
            && l != "EC2"
        {
            return Err(ControlError::invalid(
                "launchType",
                format!("`{l}` is not supported; berth runs EC2"),
            ));
        }
        // A policy named by the tag must exist now; it is bound to the
        // service in the transaction that creates it.
        let cluster_name =
            berth_core::arn::cluster_name(req.cluster.as_deref().unwrap_or("default")).to_owned();
        let tagged = req.tags.iter().any(|t| t.key == super::POLICY_TAG);
        let policy = if tagged {
            self.policy_for(&cluster_name, None, &req.tags)?
        } else {
            None
        };
        let up = self.store.update(|txn| -> Result<Service, ControlError> {
            let cluster = self.active_cluster(txn, req.cluster.as_deref())?;
            let td = resolve(txn, &td_ref, "taskDefinition")?;
            if td.status != TaskDefinitionStatus::Active {
                return Err(ControlError::Client(format!(
                    "taskDefinition: `{td_ref}` is INACTIVE"
                )));
            }
            // The placement must compile now, not fail on every pass later.
            let spec = berth_core::placement::TaskSpec::from_definition(&td, None, group_of(&name));
            berth_core::placement::PlacementRequest::compile(
                spec,
                &berth_core::placement::task_definition_constraints(&td),
                &req.placement_constraints,
                &req.placement_strategy,
            )?;
            let arn = self.arn.service(&cluster.cluster_name, &name);
            if let Some(old) = txn.get::<Service>(&arn)?
                && old.value.status != ServiceStatus::Inactive
            {
                return Err(ControlError::invalid(
                    "serviceName",
                    format!(
                        "Creation of service was not idempotent: `{name}` exists ({})",
                        old.value.status
                    ),
                ));
            }
            let t = now();
            let mut s = Service {
                service_arn: arn.clone(),
                service_name: name.clone(),
                cluster_arn: cluster.cluster_arn.clone(),
                status: ServiceStatus::Active,
                desired_count: desired,
                running_count: 0,
                pending_count: 0,
                task_definition: td.task_definition_arn.clone(),
                launch_type: Some("EC2".into()),
                scheduling_strategy: strategy,
                deployment_configuration: req.deployment_configuration.clone(),
                deployments: vec![Deployment {
                    id: new_deployment_id(),
                    status: DeploymentStatus::Primary,
                    task_definition: td.task_definition_arn.clone(),
                    desired_count: desired,
                    pending_count: 0,
                    running_count: 0,
                    failed_tasks: 0,
                    rollout_state: Some(RolloutState::InProgress),
                    rollout_state_reason: Some("ECS deployment in progress.".into()),
                    created_at: t,
                    updated_at: t,
                }],
                events: Vec::new(),
                placement_constraints: req.placement_constraints.clone(),
                placement_strategy: req.placement_strategy.clone(),
                health_check_grace_period_seconds: grace,
                created_at: Some(t),
                tags: req.tags.clone(),
            };
            push_event(&mut s, format!("(service {name}) was created."));
            txn.put(&s)?;
            txn.put(&ServiceState::new(arn))?;
            if let Some((p, _)) = &policy {
                self.bind_service_policy_in(txn, &cluster.cluster_name, &name, p)?;
            }
            Ok(s)
        })?;
        Ok(ServiceResponse { service: up.value })
    }

    /// UpdateService: desired count, task definition, deployment
    /// configuration, placement; a new task definition, new placement or
    /// `forceNewDeployment` starts a new PRIMARY deployment.
    pub fn update_service(
        &self,
        req: UpdateServiceRequest,
    ) -> Result<ServiceResponse, ControlError> {
        let name = req
            .service
            .clone()
            .ok_or_else(|| ControlError::invalid("service", "is required"))?;
        let desired = req
            .desired_count
            .map(|d| u32_field("desiredCount", d, 10_000))
            .transpose()?;
        if let Some(dc) = &req.deployment_configuration {
            check_deployment_configuration(dc)?;
        }
        let grace = req
            .health_check_grace_period_seconds
            .map(|g| u32_field("healthCheckGracePeriodSeconds", g, 2_147_483_647))
            .transpose()?;
        let up = self.store.update(|txn| -> Result<Service, ControlError> {
            let mut s = self.active_service_in(txn, req.cluster.as_deref(), &name)?;
            if let Some(d) = desired {
                if s.scheduling_strategy == SchedulingStrategy::Daemon {
                    return Err(ControlError::invalid(
                        "desiredCount",
                        "is not allowed for a DAEMON service",
                    ));
                }
                s.desired_count = d;
            }
            if let Some(dc) = &req.deployment_configuration {
                s.deployment_configuration = Some(dc.clone());
            }
            if let Some(g) = grace {
                s.health_check_grace_period_seconds = Some(g);
            }
            let mut new_deployment = req.force_new_deployment.unwrap_or(false);
            let mut td_arn = s.task_definition.clone();
            if let Some(r) = &req.task_definition {
                let td = resolve(txn, r, "taskDefinition")?;
                if td.status != TaskDefinitionStatus::Active {
                    return Err(ControlError::Client(format!(
                        "taskDefinition: `{r}` is INACTIVE"
                    )));
                }
                new_deployment |= td.task_definition_arn != s.task_definition;
                td_arn = td.task_definition_arn;
            }
            if let Some(pc) = &req.placement_constraints {
                new_deployment |= *pc != s.placement_constraints;
                s.placement_constraints = pc.clone();
            }
            if let Some(ps) = &req.placement_strategy {
                new_deployment |= *ps != s.placement_strategy;
                s.placement_strategy = ps.clone();
            }
            {
                let td = resolve(txn, &td_arn, "taskDefinition")?;
                let spec = berth_core::placement::TaskSpec::from_definition(
                    &td,
                    None,
                    group_of(&s.service_name),
                );
                berth_core::placement::PlacementRequest::compile(
                    spec,
                    &berth_core::placement::task_definition_constraints(&td),
                    &s.placement_constraints,
                    &s.placement_strategy,
                )?;
            }
            let t = now();
            if new_deployment {
                for d in &mut s.deployments {
                    if d.status == DeploymentStatus::Primary {
                        d.status = DeploymentStatus::Active;
                        d.updated_at = t;
                    }
                }
                s.deployments.insert(
                    0,
                    Deployment {
                        id: new_deployment_id(),
                        status: DeploymentStatus::Primary,
                        task_definition: td_arn.clone(),
                        desired_count: s.desired_count,
                        pending_count: 0,
                        running_count: 0,
                        failed_tasks: 0,
                        rollout_state: Some(RolloutState::InProgress),
                        rollout_state_reason: Some("ECS deployment in progress.".into()),
                        created_at: t,
                        updated_at: t,
                    },
                );
                s.task_definition = td_arn;
                let m = format!(
                    "(service {}) started a new deployment ({}).",
                    s.service_name, s.deployments[0].id
                );
                push_event(&mut s, m);
            } else if let Some(p) = s
                .deployments
                .iter_mut()
                .find(|d| d.status == DeploymentStatus::Primary)
                && p.desired_count != s.desired_count
            {
                p.desired_count = s.desired_count;
                p.updated_at = t;
                // A scale is a change to reach again: report it in progress.
                if p.rollout_state == Some(RolloutState::Completed) {
                    p.rollout_state = Some(RolloutState::InProgress);
                }
            }
            txn.put(&s)?;
            Ok(s)
        })?;
        Ok(ServiceResponse { service: up.value })
    }

    /// DeleteService: refused while desiredCount > 0 unless `force`; the
    /// service goes DRAINING, its tasks stop, then it is INACTIVE.
    pub fn delete_service(
        &self,
        req: DeleteServiceRequest,
    ) -> Result<ServiceResponse, ControlError> {
        let name = req
            .service
            .clone()
            .ok_or_else(|| ControlError::invalid("service", "is required"))?;
        let up = self.store.update(|txn| -> Result<Service, ControlError> {
            let mut s = self.active_service_in(txn, req.cluster.as_deref(), &name)?;
            if s.desired_count > 0 && s.scheduling_strategy == SchedulingStrategy::Replica && !req.force.unwrap_or(false) {
                return Err(ControlError::invalid(
                    "service",
                    format!("The service `{}` cannot be stopped while it is scaled above 0 (desiredCount {}); scale it to 0 or pass force", s.service_name, s.desired_count),
                ));
            }
            s.status = ServiceStatus::Draining;
            s.desired_count = 0;
            let m = format!("(service {}) is being deleted.", s.service_name);
            push_event(&mut s, m);
            txn.put(&s)?;
            Ok(s)
        })?;
        // A deleted service places nothing more; its policy binding goes.
        let svc = &up.value;
        self.bind_service_policy(
            berth_core::arn::cluster_name(&svc.cluster_arn),
            &svc.service_name,
            None,
        )?;
        Ok(ServiceResponse { service: up.value })
    }

    /// DescribeServices: up to 10; unknown ones come back as MISSING.
    pub fn describe_services(
        &self,
        req: DescribeServicesRequest,
    ) -> Result<DescribeServicesResponse, ControlError> {
        if req.services.is_empty() || req.services.len() > 10 {
            return Err(ControlError::invalid(
                "services",
                format!("{} services given; give 1-10", req.services.len()),
            ));
        }
        let mut txn = self.store.begin()?;
        let cluster = self.active_cluster(&mut txn, req.cluster.as_deref())?;
        let mut services = Vec::new();
        let mut failures = Vec::new();
        for n in &req.services {
            match self.service_in(&mut txn, &cluster.cluster_name, &cluster.cluster_arn, n) {
                Ok(s) => services.push(shown(s)),
                Err(ControlError::ServiceNotFound(_)) => failures.push(Failure {
                    arn: Some(self.service_arn_of(&cluster.cluster_name, n)),
                    reason: "MISSING".into(),
                    detail: None,
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(DescribeServicesResponse { services, failures })
    }

    /// ListServices: the cluster's ACTIVE and DRAINING services by ARN.
    pub fn list_services(
        &self,
        req: ListServicesRequest,
    ) -> Result<ListServicesResponse, ControlError> {
        if let Some(l) = &req.launch_type
            && l != "EC2"
        {
            return Ok(ListServicesResponse {
                service_arns: Vec::new(),
                next_token: None,
            });
        }
        let mut txn = self.store.begin()?;
        let cluster = self.active_cluster(&mut txn, req.cluster.as_deref())?;
        let items: Vec<(String, String)> =
            all_by_index(&txn, SERVICES_BY_CLUSTER, &cluster.cluster_arn)?
                .into_iter()
                .map(|s| s.value)
                .filter(|s| s.status != ServiceStatus::Inactive)
                .filter(|s| {
                    req.scheduling_strategy
                        .is_none_or(|k| k == s.scheduling_strategy)
                })
                .map(|s| (s.service_arn.clone(), s.service_arn))
                .collect();
        let (service_arns, next_token) =
            paginate(items, req.next_token.as_deref(), req.max_results, false)?;
        Ok(ListServicesResponse {
            service_arns,
            next_token,
        })
    }
}
