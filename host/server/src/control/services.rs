//! Services: CreateService, UpdateService, DeleteService, DescribeServices,
//! ListServices, and the service scheduler's pass.
//!
//! A service's tasks are in group `service:<name>` and started by their
//! deployment's id (`ecs-svc/<digits>`). Each pass, per service, in one CAS
//! transaction: account for tasks that stopped (failed tasks, restart
//! back-off), trip the circuit breaker, ask [`deployment::plan`] for a step
//! within the deployment percentages, stop and start tasks (starts go
//! through RunTask's placement), and update the deployments' counts and
//! rollout states. Tasks on DRAINING instances count as an old deployment's,
//! so they are replaced within the same percentages.

use std::collections::BTreeMap;

use berth_core::arn;
use berth_core::deployment::{self, TaskCounts};
use berth_core::model::{
    ContainerInstance, Deployment, DeploymentConfiguration, PlacementConstraint, PlacementStrategy,
    SchedulingStrategy, Service, ServiceEvent, Tag, Task,
};
use berth_core::placement::Check;
use berth_core::status::{
    DeploymentStatus, DesiredStatus, HealthStatus, InstanceStatus, RolloutState, ServiceStatus,
    StopCode, TaskDefinitionStatus, TaskStatus,
};
use berth_store::tables::{INSTANCES_BY_CLUSTER, SERVICES_BY_CLUSTER, TASKS_BY_GROUP, in_cluster};
use berth_store::{Record, Txn};
use serde::{Deserialize, Serialize};

use super::taskdefs::resolve;
use super::tasks::{NotStarted, recount};
use super::types::{Failure, RunTaskRequest};
use super::{Control, ControlError, all_by_index, now, paginate};

/// Events kept per service, newest first.
pub const MAX_EVENTS: usize = 100;
/// Deployments kept per service (INACTIVE ones beyond are dropped, oldest first).
const MAX_DEPLOYMENTS: usize = 10;
/// The restart back-off's event.
fn unable_to_start(name: &str) -> String {
    format!("(service {name}) is unable to consistently start tasks successfully.")
}

// ---------------------------------------------------------------- requests

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CreateServiceRequest {
    pub cluster: Option<String>,
    pub service_name: Option<String>,
    pub task_definition: Option<String>,
    pub desired_count: Option<i64>,
    pub scheduling_strategy: Option<SchedulingStrategy>,
    pub deployment_configuration: Option<DeploymentConfiguration>,
    pub placement_constraints: Vec<PlacementConstraint>,
    pub placement_strategy: Vec<PlacementStrategy>,
    pub health_check_grace_period_seconds: Option<i64>,
    pub launch_type: Option<String>,
    pub tags: Vec<Tag>,
    pub client_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UpdateServiceRequest {
    pub cluster: Option<String>,
    pub service: Option<String>,
    pub desired_count: Option<i64>,
    pub task_definition: Option<String>,
    pub deployment_configuration: Option<DeploymentConfiguration>,
    pub placement_constraints: Option<Vec<PlacementConstraint>>,
    pub placement_strategy: Option<Vec<PlacementStrategy>>,
    pub force_new_deployment: Option<bool>,
    pub health_check_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeleteServiceRequest {
    pub cluster: Option<String>,
    pub service: Option<String>,
    pub force: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DescribeServicesRequest {
    pub cluster: Option<String>,
    pub services: Vec<String>,
    pub include: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListServicesRequest {
    pub cluster: Option<String>,
    pub launch_type: Option<String>,
    pub scheduling_strategy: Option<SchedulingStrategy>,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceResponse {
    pub service: Service,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServicesResponse {
    pub services: Vec<Service>,
    pub failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServicesResponse {
    pub service_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The scheduler's memory of a service between passes: which stopped tasks
/// it already accounted for, and the run of tasks that never reached RUNNING.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceState {
    pub service_arn: String,
    /// Stopped tasks already counted, with their stop time (pruned after an hour).
    pub seen_stopped: BTreeMap<String, f64>,
    /// Consecutive tasks that stopped before ever RUNNING.
    pub start_failures: u32,
    pub last_start_failure_at: f64,
}

impl Record for ServiceState {
    const TABLE: &'static str = "berth_service_state";
    fn key(&self) -> String {
        self.service_arn.clone()
    }
}

/// What one pass of the service scheduler did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Tasks started and stopped.
    pub started: usize,
    pub stopped: usize,
    /// Services whose step committed, and the CAS conflicts retried on the way.
    pub commits: u32,
    pub conflicts: u32,
    /// Services whose step failed (contention outlasted the retries, or the store).
    pub failed: u32,
}

/// How long a stopped task stays remembered as counted.
const SEEN_FOR: f64 = 3600.0;

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

/// `(minimumHealthyPercent, maximumPercent)` of a service, with ECS's defaults.
fn percents(s: &Service) -> (u32, u32) {
    let dc = s.deployment_configuration.clone().unwrap_or_default();
    let (min, max) = match s.scheduling_strategy {
        // ECS's DAEMON defaults: stop before start, never above one per instance.
        SchedulingStrategy::Daemon => (0, 100),
        SchedulingStrategy::Replica => (
            deployment::DEFAULT_MINIMUM_HEALTHY_PERCENT,
            deployment::DEFAULT_MAXIMUM_PERCENT,
        ),
    };
    (
        dc.minimum_healthy_percent.unwrap_or(min),
        dc.maximum_percent.unwrap_or(max),
    )
}

fn valid_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn group_of(name: &str) -> String {
    format!("service:{name}")
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
                &td.placement_constraints,
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
            txn.put(&ServiceState {
                service_arn: arn,
                ..ServiceState::default()
            })?;
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
            let cluster = self.active_cluster(txn, req.cluster.as_deref())?;
            let mut s = self.service_in(txn, &cluster.cluster_name, &cluster.cluster_arn, &name)?;
            if s.status != ServiceStatus::Active {
                return Err(ControlError::ServiceNotActive(format!(
                    "service `{}` is {}",
                    s.service_name, s.status
                )));
            }
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
                    &td.placement_constraints,
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
            let cluster = self.active_cluster(txn, req.cluster.as_deref())?;
            let mut s = self.service_in(txn, &cluster.cluster_name, &cluster.cluster_arn, &name)?;
            if s.status != ServiceStatus::Active {
                return Err(ControlError::ServiceNotActive(format!("service `{}` is {}", s.service_name, s.status)));
            }
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

    /// The service scheduler's pass over every ACTIVE or DRAINING service.
    pub fn services_pass(&self) -> Result<PassStats, ControlError> {
        let arns: Vec<String> = {
            let txn = self.store.begin()?;
            super::collect_pages(|p| txn.list::<Service>(p))?
                .into_iter()
                .filter(|s| s.value.status != ServiceStatus::Inactive)
                .map(|s| s.value.service_arn)
                .collect()
        };
        let mut totals = PassStats::default();
        for arn in arns {
            let _turn = self.placement_turn();
            match self.placing(|txn| self.service_step_in(txn, &arn)) {
                Ok(up) => {
                    totals.started += up.value.0;
                    totals.stopped += up.value.1;
                    totals.commits += 1;
                    totals.conflicts += up.conflicts;
                }
                // One broken service does not hold back the others.
                Err(e) => {
                    totals.failed += 1;
                    tracing::warn!(service = %arn, error = %ControlError::from(e), "service pass failed");
                }
            }
        }
        Ok(totals)
    }

    fn service_step_in(
        &self,
        txn: &mut Txn,
        service_arn: &str,
    ) -> Result<(usize, usize), ControlError> {
        let Some(orig) = txn.get::<Service>(service_arn)?.map(|s| s.value) else {
            return Ok((0, 0));
        };
        if orig.status == ServiceStatus::Inactive {
            return Ok((0, 0));
        }
        let mut s = orig.clone();
        let orig_state = txn
            .get::<ServiceState>(service_arn)?
            .map(|v| v.value)
            .unwrap_or_else(|| ServiceState {
                service_arn: service_arn.to_owned(),
                ..ServiceState::default()
            });
        let mut state = orig_state.clone();
        let t = now();
        let name = s.service_name.clone();
        let tasks: Vec<Task> = all_by_index(
            txn,
            TASKS_BY_GROUP,
            &in_cluster(&s.cluster_arn, &group_of(&name)),
        )?
        .into_iter()
        .map(|v| v.value)
        .collect();

        // Tasks that stopped since the last pass: failures and the back-off.
        state.seen_stopped.retain(|_, at| *at > t - SEEN_FOR);
        for task in &tasks {
            if task.last_status != TaskStatus::Stopped
                || state.seen_stopped.contains_key(&task.task_arn)
            {
                continue;
            }
            let at = task.stopped_at.unwrap_or(t);
            // Tasks of an earlier service of the same name are not this one's.
            if at <= t - SEEN_FOR || at < s.created_at.unwrap_or(0.0) {
                continue;
            }
            state.seen_stopped.insert(task.task_arn.clone(), at);
            if matches!(
                task.stop_code,
                Some(StopCode::ServiceSchedulerInitiated | StopCode::UserInitiated)
            ) {
                continue;
            }
            if let Some(d) = s
                .deployments
                .iter_mut()
                .find(|d| Some(&d.id) == task.started_by.as_ref())
            {
                d.failed_tasks += 1;
                d.updated_at = t;
            }
            if task.started_at.is_none() {
                state.start_failures += 1;
                state.last_start_failure_at = state.last_start_failure_at.max(at);
            } else {
                state.start_failures = 0;
            }
            let id = arn::last_segment(&task.task_arn).to_owned();
            push_event(
                &mut s,
                format!(
                    "(service {name}) has stopped 1 running tasks: (task {id}). Reason: {}",
                    task.stopped_reason.as_deref().unwrap_or("unknown")
                ),
            );
        }
        // A task that got to RUNNING since the last failure ends the run.
        if tasks.iter().any(|x| {
            x.started_at
                .is_some_and(|a| a > state.last_start_failure_at)
                && x.last_status != TaskStatus::Stopped
        }) {
            state.start_failures = 0;
        }

        // The circuit breaker.
        let mut desired = if s.status == ServiceStatus::Active {
            s.desired_count
        } else {
            0
        };
        let daemon = s.scheduling_strategy == SchedulingStrategy::Daemon;
        let breaker = s
            .deployment_configuration
            .as_ref()
            .and_then(|c| c.deployment_circuit_breaker)
            .filter(|b| b.enable);
        if let Some(b) = breaker
            && let Some(pi) = s
                .deployments
                .iter()
                .position(|d| d.status == DeploymentStatus::Primary)
            && s.deployments[pi].rollout_state == Some(RolloutState::InProgress)
            && s.deployments[pi].failed_tasks >= deployment::circuit_breaker_threshold(desired)
        {
            let id = s.deployments[pi].id.clone();
            s.deployments[pi].rollout_state = Some(RolloutState::Failed);
            s.deployments[pi].rollout_state_reason =
                Some("ECS deployment circuit breaker: tasks failed to start.".into());
            s.deployments[pi].updated_at = t;
            push_event(
                &mut s,
                format!(
                    "(service {name}) deployment {id} deployment failed: tasks failed to start."
                ),
            );
            let back = s
                .deployments
                .iter()
                .enumerate()
                .filter(|(i, d)| *i != pi && d.rollout_state == Some(RolloutState::Completed))
                .max_by(|a, b| a.1.created_at.total_cmp(&b.1.created_at))
                .map(|(i, _)| i);
            if b.rollback
                && let Some(bi) = back
            {
                s.deployments[pi].status = DeploymentStatus::Active;
                let d = &mut s.deployments[bi];
                d.status = DeploymentStatus::Primary;
                d.rollout_state = Some(RolloutState::InProgress);
                d.rollout_state_reason = Some(format!(
                    "ECS deployment circuit breaker: rolling back to deploymentId {}.",
                    d.id
                ));
                d.failed_tasks = 0;
                d.desired_count = desired;
                d.updated_at = t;
                s.task_definition = d.task_definition.clone();
                let to = d.id.clone();
                push_event(
                    &mut s,
                    format!("(service {name}) rolling back to deployment {to}."),
                );
                state.start_failures = 0;
            }
        }

        // Count the live tasks per deployment.
        let primary_id = s
            .deployments
            .iter()
            .find(|d| d.status == DeploymentStatus::Primary)
            .map(|d| d.id.clone());
        let grace = f64::from(s.health_check_grace_period_seconds.unwrap_or(0));
        let draining: std::collections::BTreeSet<String> =
            all_by_index(txn, INSTANCES_BY_CLUSTER, &s.cluster_arn)?
                .into_iter()
                .filter(|c| c.value.status != InstanceStatus::Active)
                .map(|c| c.value.container_instance_arn)
                .collect();
        let active: Vec<String> = all_by_index(txn, INSTANCES_BY_CLUSTER, &s.cluster_arn)?
            .into_iter()
            .filter(|c| c.value.status == InstanceStatus::Active)
            .map(|c| c.value.container_instance_arn)
            .collect();
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        enum Kind {
            Pending,
            Unhealthy,
            Healthy,
        }
        let kind = |x: &Task| -> Kind {
            if x.last_status != TaskStatus::Running {
                return Kind::Pending;
            }
            let has_check = x.containers.iter().any(|c| c.health_status.is_some());
            let healthy = if has_check {
                x.health_status == Some(HealthStatus::Healthy)
            } else {
                x.started_at.is_some_and(|a| t >= a + grace)
            };
            if healthy {
                Kind::Healthy
            } else {
                Kind::Unhealthy
            }
        };
        let live: Vec<&Task> = tasks
            .iter()
            .filter(|x| {
                x.desired_status == DesiredStatus::Running && x.last_status != TaskStatus::Stopped
            })
            .collect();
        let is_primary = |x: &Task| {
            primary_id.is_some()
                && x.started_by == primary_id
                && !x
                    .container_instance_arn
                    .as_ref()
                    .is_some_and(|c| draining.contains(c))
        };
        let mut primary = TaskCounts::default();
        let mut old = TaskCounts::default();
        for x in &live {
            let c = if is_primary(x) {
                &mut primary
            } else {
                &mut old
            };
            match kind(x) {
                Kind::Pending => c.pending += 1,
                Kind::Unhealthy => c.unhealthy += 1,
                Kind::Healthy => c.healthy += 1,
            }
        }
        let (min_pct, max_pct) = percents(&s);
        let mut step = deployment::plan(desired, min_pct, max_pct, primary, old);
        // Tasks still stopping hold their place under the upper bound too:
        // no start until the room is really free.
        let stopping = tasks
            .iter()
            .filter(|x| {
                x.desired_status == DesiredStatus::Stopped && x.last_status != TaskStatus::Stopped
            })
            .count();
        let upper = deployment::bounds(desired, min_pct, max_pct).1.max(desired);
        let busy = primary.total() + old.total() + u32::try_from(stopping).unwrap_or(u32::MAX);
        step.start = step.start.min(upper.saturating_sub(busy));
        let primary_failed = s.deployments.iter().any(|d| {
            d.status == DeploymentStatus::Primary && d.rollout_state == Some(RolloutState::Failed)
        });
        let mut may_start =
            !(primary_failed || primary_id.is_none() || s.status != ServiceStatus::Active);
        if may_start && (step.start > 0 || daemon) && state.start_failures > 0 {
            let until = state.last_start_failure_at
                + deployment::restart_delay(state.start_failures).as_secs_f64();
            if t < until {
                may_start = false;
                if state.start_failures >= 2 {
                    push_event(&mut s, unable_to_start(&name));
                }
            }
        }
        if !may_start {
            step.start = 0;
        }

        // Stops: least useful first, oldest deployments first.
        let created = |d: Option<&String>| {
            s.deployments
                .iter()
                .find(|x| Some(&x.id) == d)
                .map_or(0.0, |x| x.created_at)
        };
        let mut to_stop: Vec<&Task> = Vec::new();
        for (primary_side, counts) in [(true, step.stop_primary), (false, step.stop_old)] {
            for (k, n) in [
                (Kind::Pending, counts.pending),
                (Kind::Unhealthy, counts.unhealthy),
                (Kind::Healthy, counts.healthy),
            ] {
                let mut c: Vec<&Task> = live
                    .iter()
                    .copied()
                    .filter(|x| is_primary(x) == primary_side && kind(x) == k)
                    .collect();
                c.sort_by(|a, b| {
                    created(a.started_by.as_ref())
                        .total_cmp(&created(b.started_by.as_ref()))
                        .then_with(|| a.task_arn.cmp(&b.task_arn))
                });
                to_stop.extend(c.into_iter().take(n as usize));
            }
        }
        if daemon {
            to_stop = daemon_stops(&live, &active, &is_primary);
        }
        // A task failing its health check past the grace period serves
        // nobody: it is replaced, and counts as a failed task.
        let mut sick = std::collections::BTreeSet::new();
        for x in &live {
            if x.last_status == TaskStatus::Running
                && x.health_status == Some(HealthStatus::Unhealthy)
                && x.started_at.is_some_and(|a| t >= a + grace)
                && !to_stop.iter().any(|y| y.task_arn == x.task_arn)
            {
                to_stop.push(x);
                sick.insert(x.task_arn.clone());
                if let Some(d) = s
                    .deployments
                    .iter_mut()
                    .find(|d| d.id.as_str() == x.started_by.as_deref().unwrap_or_default())
                {
                    d.failed_tasks += 1;
                    d.updated_at = t;
                }
            }
        }
        let mut stopped_ids = Vec::new();
        let mut touched = std::collections::BTreeSet::new();
        for x in &to_stop {
            let mut x = (*x).clone();
            x.desired_status = DesiredStatus::Stopped;
            x.stop_code = Some(StopCode::ServiceSchedulerInitiated);
            x.stopped_reason = Some(if sick.contains(&x.task_arn) {
                "Task failed container health checks".to_owned()
            } else {
                format!(
                    "Scaling activity initiated by (deployment {})",
                    primary_id.as_deref().unwrap_or("none")
                )
            });
            x.stopping_at = Some(t);
            x.version += 1;
            if x.container_instance_arn.is_none() {
                x.last_status = TaskStatus::Stopped;
                x.stopped_at = Some(t);
            }
            stopped_ids.push(arn::last_segment(&x.task_arn).to_owned());
            if let Some(ci) = &x.container_instance_arn {
                touched.insert(ci.clone());
            }
            // Counted already: its stop is the scheduler's own.
            txn.put(&x)?;
        }
        for ci in touched {
            if let Some(c) = txn.get::<ContainerInstance>(&ci)? {
                let mut c = recount(txn, c.value)?;
                c.version += 1;
                txn.put(&c)?;
            }
        }
        if !stopped_ids.is_empty() {
            push_event(
                &mut s,
                format!(
                    "(service {name}) has stopped {} running tasks: {}.",
                    stopped_ids.len(),
                    task_list(&stopped_ids)
                ),
            );
        }

        // Starts, through RunTask's placement (StartTask's for DAEMON).
        let mut started = Vec::new();
        if daemon {
            let td = s.task_definition.clone();
            let mut eligible = 0u32;
            for ci in &active {
                let on = |x: &Task| x.container_instance_arn.as_deref() == Some(ci.as_str());
                let kept = live
                    .iter()
                    .any(|x| on(x) && !to_stop.iter().any(|y| y.task_arn == x.task_arn));
                let leaving = to_stop.iter().any(|x| on(x))
                    || tasks.iter().any(|x| {
                        on(x)
                            && x.desired_status == DesiredStatus::Stopped
                            && x.last_status != TaskStatus::Stopped
                    });
                if kept || leaving {
                    eligible += 1;
                    continue;
                }
                let (true, Some(pid)) = (may_start, &primary_id) else {
                    eligible += 1;
                    continue;
                };
                let req = RunTaskRequest {
                    task_definition: Some(td.clone()),
                    group: Some(group_of(&name)),
                    started_by: Some(pid.clone()),
                    placement_constraints: s.placement_constraints.clone(),
                    ..RunTaskRequest::default()
                };
                match self.start_on_in_txn(txn, &s.cluster_arn, ci, &req)? {
                    Ok(x) => {
                        eligible += 1;
                        started.push(arn::last_segment(&x.task_arn).to_owned());
                    }
                    // Not for this instance: DAEMON follows the constraints.
                    Err(NotStarted::Unfit(Check::Attribute)) => {}
                    Err(reason) => {
                        eligible += 1;
                        push_event(
                            &mut s,
                            format!(
                                "(service {name}) was unable to place a task on {ci}. Reason: {reason}"
                            ),
                        );
                    }
                }
            }
            if s.status == ServiceStatus::Active {
                desired = eligible;
                s.desired_count = eligible;
            }
        } else if step.start > 0
            && let Some(pid) = &primary_id
        {
            let td = s
                .deployments
                .iter()
                .find(|d| &d.id == pid)
                .map(|d| d.task_definition.clone())
                .unwrap_or_default();
            let mut left = step.start;
            while left > 0 {
                let n = left.min(10);
                left -= n;
                let req = RunTaskRequest {
                    cluster: Some(s.cluster_arn.clone()),
                    task_definition: Some(td.clone()),
                    count: Some(i64::from(n)),
                    group: Some(group_of(&name)),
                    started_by: Some(pid.clone()),
                    placement_constraints: s.placement_constraints.clone(),
                    placement_strategy: s.placement_strategy.clone(),
                    launch_type: Some("EC2".into()),
                    ..RunTaskRequest::default()
                };
                match self.run_in(txn, &req, Some(&name)) {
                    Ok((tasks, failures)) => {
                        started.extend(
                            tasks
                                .iter()
                                .map(|x| arn::last_segment(&x.task_arn).to_owned()),
                        );
                        if let Some(f) = failures.first() {
                            push_event(
                                &mut s,
                                format!(
                                    "(service {name}) was unable to place a task because no container instance met all of its requirements. Reason: {}",
                                    f.reason
                                ),
                            );
                            break;
                        }
                    }
                    Err(e @ ControlError::Server(_)) => return Err(e),
                    Err(e) => {
                        push_event(
                            &mut s,
                            format!("(service {name}) was unable to start tasks: {e}"),
                        );
                        break;
                    }
                }
            }
        }
        if !started.is_empty() {
            push_event(
                &mut s,
                format!(
                    "(service {name}) has started {} tasks: {}.",
                    started.len(),
                    task_list(&started)
                ),
            );
        }

        // Counts, rollout states, and the end of a deletion.
        let stopped_now: std::collections::BTreeSet<String> =
            to_stop.iter().map(|x| x.task_arn.clone()).collect();
        let still: Vec<&Task> = live
            .iter()
            .copied()
            .filter(|x| !stopped_now.contains(&x.task_arn))
            .collect();
        let started_n = u32::try_from(started.len()).unwrap_or(u32::MAX);
        let (mut running, mut pending) = (0u32, 0u32);
        for d in &mut s.deployments {
            let mine: Vec<&&Task> = still
                .iter()
                .filter(|x| x.started_by.as_ref() == Some(&d.id))
                .collect();
            let r = u32::try_from(
                mine.iter()
                    .filter(|x| x.last_status == TaskStatus::Running)
                    .count(),
            )
            .unwrap_or(u32::MAX);
            let mut p = u32::try_from(mine.len()).unwrap_or(u32::MAX) - r;
            if Some(&d.id) == primary_id.as_ref() {
                p += started_n;
            }
            running += r;
            pending += p;
            if d.running_count != r || d.pending_count != p {
                d.running_count = r;
                d.pending_count = p;
                d.updated_at = t;
            }
        }
        s.running_count = running;
        s.pending_count = pending;
        let old_left = still.iter().any(|x| !is_primary(x));
        let mut steady = false;
        if let Some(p) = s
            .deployments
            .iter_mut()
            .find(|d| d.status == DeploymentStatus::Primary)
        {
            p.desired_count = desired;
            if p.rollout_state == Some(RolloutState::InProgress)
                && primary.healthy == desired
                && primary.total() == desired
                && !old_left
                && started.is_empty()
                && to_stop.is_empty()
            {
                p.rollout_state = Some(RolloutState::Completed);
                p.rollout_state_reason = Some("ECS deployment completed.".into());
                p.updated_at = t;
                steady = true;
            }
        }
        if steady {
            for d in &mut s.deployments {
                if d.status == DeploymentStatus::Active {
                    d.status = DeploymentStatus::Inactive;
                    d.updated_at = t;
                }
            }
            let id = s
                .deployments
                .iter()
                .find(|d| d.status == DeploymentStatus::Primary)
                .map(|d| d.id.clone())
                .unwrap_or_default();
            push_event(
                &mut s,
                format!("(service {name}) deployment {id} deployment completed."),
            );
            push_event(
                &mut s,
                format!("(service {name}) has reached a steady state."),
            );
        }
        while s.deployments.len() > MAX_DEPLOYMENTS {
            match s
                .deployments
                .iter()
                .rposition(|d| d.status == DeploymentStatus::Inactive)
            {
                Some(i) => {
                    s.deployments.remove(i);
                }
                None => break,
            }
        }
        // INACTIVE once every task has really stopped.
        if s.status == ServiceStatus::Draining
            && still.is_empty()
            && started.is_empty()
            && to_stop.is_empty()
            && stopping == 0
        {
            s.status = ServiceStatus::Inactive;
            for d in &mut s.deployments {
                d.status = DeploymentStatus::Inactive;
            }
            push_event(&mut s, format!("(service {name}) has been deleted."));
        }
        if s != orig {
            txn.put(&s)?;
        }
        if state != orig_state {
            txn.put(&state)?;
        }
        Ok((started.len(), to_stop.len()))
    }
}

/// A DAEMON service's stops: tasks off ACTIVE instances, tasks of older
/// deployments (DAEMON rolls stop-first, as ECS's 0%/100% default), and any
/// second task on one instance.
fn daemon_stops<'a>(
    live: &[&'a Task],
    active: &[String],
    is_primary: &dyn Fn(&Task) -> bool,
) -> Vec<&'a Task> {
    let mut kept: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for x in live {
        let on_active = x
            .container_instance_arn
            .as_ref()
            .filter(|c| active.contains(c));
        match on_active {
            Some(ci) if is_primary(x) && kept.insert(ci.as_str()) => {}
            _ => out.push(*x),
        }
    }
    out
}

fn task_list(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("(task {i})"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    //! The service scheduler over a real store with fake instances: the
    //! agent's part (tasks reaching RUNNING or STOPPED) is played by hand.
    #![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

    use std::sync::Arc;

    use berth_core::arn::ArnContext;
    use berth_core::model::{DeploymentCircuitBreaker, RegisterTaskDefinition, Resource};
    use berth_store::Store;
    use serde_json::json;

    use super::super::types::*;
    use super::*;

    fn control() -> (tempfile::TempDir, Control) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("berth.redb")).unwrap();
        let c = Control::new(Arc::new(store), ArnContext::default());
        c.ensure_default_cluster().unwrap();
        (dir, c)
    }

    fn register(c: &Control, family: &str, image: &str) -> String {
        let td: RegisterTaskDefinition = serde_json::from_value(json!({
            "family": family,
            "containerDefinitions": [{"name": "app", "image": image, "cpu": 100, "memory": 100}],
        }))
        .unwrap();
        c.register_task_definition(td)
            .unwrap()
            .task_definition
            .task_definition_arn
    }

    fn instance(c: &Control) -> String {
        c.register_container_instance(RegisterContainerInstanceRequest {
            total_resources: vec![
                Resource::integer("CPU", 1024),
                Resource::integer("MEMORY", 1024),
            ],
            ..Default::default()
        })
        .unwrap()
        .container_instance
        .container_instance_arn
    }

    fn create(
        c: &Control,
        name: &str,
        td: &str,
        desired: i64,
        dc: Option<DeploymentConfiguration>,
    ) -> Service {
        c.create_service(CreateServiceRequest {
            service_name: Some(name.into()),
            task_definition: Some(td.into()),
            desired_count: Some(desired),
            deployment_configuration: dc,
            ..Default::default()
        })
        .unwrap()
        .service
    }

    /// The stored service, with the INACTIVE deployments DescribeServices hides.
    fn describe(c: &Control, name: &str) -> Service {
        let arn = c.service_arn_of("default", name);
        c.store
            .begin()
            .unwrap()
            .get::<Service>(&arn)
            .unwrap()
            .unwrap()
            .value
    }

    fn tasks(c: &Control, name: &str) -> Vec<Task> {
        let txn = c.store.begin().unwrap();
        let cluster = c.arn.cluster("default");
        all_by_index(&txn, TASKS_BY_GROUP, &in_cluster(&cluster, &group_of(name)))
            .unwrap()
            .into_iter()
            .map(|t| t.value)
            .collect()
    }

    /// The agent's part: tasks whose image is `crash` stop before RUNNING,
    /// others start; tasks asked to stop stop.
    fn agent(c: &Control) {
        c.store
            .update(|txn| -> Result<(), ControlError> {
                let all = super::super::collect_pages(|p| txn.list::<Task>(p))?;
                for t in all {
                    let mut t = t.value;
                    let t0 = now();
                    if t.desired_status == DesiredStatus::Running
                        && t.last_status == TaskStatus::Pending
                    {
                        if t.containers.iter().any(|c| c.image == "crash") {
                            t.last_status = TaskStatus::Stopped;
                            t.desired_status = DesiredStatus::Stopped;
                            t.stop_code = Some(StopCode::TaskFailedToStart);
                            t.stopped_reason = Some("CannotStartContainerError".into());
                            t.stopped_at = Some(t0);
                        } else {
                            t.last_status = TaskStatus::Running;
                            t.started_at = Some(t0);
                        }
                    } else if t.desired_status == DesiredStatus::Stopped
                        && t.last_status != TaskStatus::Stopped
                    {
                        t.last_status = TaskStatus::Stopped;
                        t.stopped_at = Some(t0);
                    } else {
                        continue;
                    }
                    t.version += 1;
                    txn.put(&t)?;
                    if let Some(ci) = &t.container_instance_arn
                        && let Some(ci) = txn.get::<ContainerInstance>(ci)?
                    {
                        let ci = recount(txn, ci.value)?;
                        txn.put(&ci)?;
                    }
                }
                Ok(())
            })
            .unwrap();
    }

    /// RUNNING tasks asked to stay, and every task not yet STOPPED.
    fn observe(c: &Control, name: &str) -> (u32, u32) {
        let ts = tasks(c, name);
        let running = ts
            .iter()
            .filter(|t| {
                t.last_status == TaskStatus::Running && t.desired_status == DesiredStatus::Running
            })
            .count();
        let busy = ts
            .iter()
            .filter(|t| t.last_status != TaskStatus::Stopped)
            .count();
        (running as u32, busy as u32)
    }

    /// Scheduler and agent in turns until the primary deployment completes,
    /// checking the bounds at every observed state.
    fn converge(c: &Control, name: &str, bounds: Option<(u32, u32)>) -> Service {
        for _ in 0..40 {
            c.services_pass().unwrap();
            if let Some((lo, hi)) = bounds {
                let (running, busy) = observe(c, name);
                assert!(running >= lo, "{running} running healthy tasks, below {lo}");
                assert!(busy <= hi, "{busy} tasks running or pending, above {hi}");
            }
            agent(c);
            if let Some((lo, hi)) = bounds {
                let (running, busy) = observe(c, name);
                assert!(
                    running >= lo && busy <= hi,
                    "after the agent: {running} running, {busy} busy; bounds {lo}-{hi}"
                );
            }
            let s = describe(c, name);
            if s.deployments.iter().any(|d| {
                d.status == DeploymentStatus::Primary
                    && d.rollout_state == Some(RolloutState::Completed)
            }) {
                return s;
            }
        }
        panic!("service {name} did not converge: {:#?}", describe(c, name));
    }

    #[test]
    fn create_describe_list_update_delete_with_ecs_errors() {
        let (_d, c) = control();
        let td = register(&c, "web", "busybox");
        for n in ["a", "b", "c"] {
            let s = create(&c, n, &td, 0, None);
            assert_eq!(s.status, ServiceStatus::Active);
            assert_eq!(s.deployments.len(), 1);
            assert_eq!(s.deployments[0].status, DeploymentStatus::Primary);
            assert!(s.deployments[0].id.starts_with("ecs-svc/"));
        }
        let again = c.create_service(CreateServiceRequest {
            service_name: Some("a".into()),
            task_definition: Some(td.clone()),
            desired_count: Some(1),
            ..Default::default()
        });
        assert!(
            matches!(again, Err(ControlError::InvalidParameter(m)) if m.contains("serviceName"))
        );
        let bad = c.create_service(CreateServiceRequest {
            service_name: Some("x".into()),
            task_definition: Some(td.clone()),
            ..Default::default()
        });
        assert!(
            matches!(bad, Err(ControlError::InvalidParameter(m)) if m.starts_with("desiredCount"))
        );
        let bad = c.create_service(CreateServiceRequest {
            service_name: Some("x".into()),
            task_definition: Some(td.clone()),
            desired_count: Some(1),
            deployment_configuration: Some(DeploymentConfiguration {
                maximum_percent: Some(50),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(
            matches!(bad, Err(ControlError::InvalidParameter(m)) if m.starts_with("deploymentConfiguration.maximumPercent"))
        );

        let d = c
            .describe_services(DescribeServicesRequest {
                services: vec!["a".into(), "nope".into()],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(d.services.len(), 1);
        assert_eq!(d.failures[0].reason, "MISSING");
        assert!(
            d.failures[0]
                .arn
                .as_deref()
                .unwrap()
                .ends_with("service/default/nope")
        );
        let eleven = (0..11).map(|i| i.to_string()).collect();
        assert!(matches!(
            c.describe_services(DescribeServicesRequest {
                services: eleven,
                ..Default::default()
            }),
            Err(ControlError::InvalidParameter(_))
        ));

        let p1 = c
            .list_services(ListServicesRequest {
                max_results: Some(2),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(p1.service_arns.len(), 2);
        let p2 = c
            .list_services(ListServicesRequest {
                max_results: Some(2),
                next_token: p1.next_token,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(p2.service_arns.len(), 1);
        assert!(p2.next_token.is_none());

        let missing = c.update_service(UpdateServiceRequest {
            service: Some("nope".into()),
            desired_count: Some(1),
            ..Default::default()
        });
        assert!(matches!(missing, Err(ControlError::ServiceNotFound(_))));
        c.update_service(UpdateServiceRequest {
            service: Some("a".into()),
            desired_count: Some(2),
            ..Default::default()
        })
        .unwrap();
        let refused = c.delete_service(DeleteServiceRequest {
            service: Some("a".into()),
            ..Default::default()
        });
        assert!(matches!(refused, Err(ControlError::InvalidParameter(_))));
        let cl = c.delete_cluster(ClusterRequest {
            cluster: Some("default".into()),
        });
        assert!(matches!(cl, Err(ControlError::ClusterContainsServices(_))));
        let s = c
            .delete_service(DeleteServiceRequest {
                service: Some("a".into()),
                force: Some(true),
                ..Default::default()
            })
            .unwrap()
            .service;
        assert_eq!(s.status, ServiceStatus::Draining);
        let late = c.update_service(UpdateServiceRequest {
            service: Some("a".into()),
            desired_count: Some(1),
            ..Default::default()
        });
        assert!(matches!(late, Err(ControlError::ServiceNotActive(_))));
        c.services_pass().unwrap();
        assert_eq!(describe(&c, "a").status, ServiceStatus::Inactive);
        let left = c.list_services(ListServicesRequest::default()).unwrap();
        assert_eq!(left.service_arns.len(), 2);
    }

    #[test]
    fn scales_out_and_in_and_replaces_a_stopped_task() {
        let (_d, c) = control();
        instance(&c);
        instance(&c);
        let td = register(&c, "web", "busybox");
        create(&c, "web", &td, 3, None);
        let s = converge(&c, "web", None);
        assert_eq!((s.running_count, s.pending_count), (3, 0));
        assert!(
            s.events[0].message.contains("steady state"),
            "{:?}",
            s.events
        );
        let ts = tasks(&c, "web");
        assert!(
            ts.iter()
                .all(|t| t.started_by.as_deref() == Some(s.deployments[0].id.as_str()))
        );

        c.update_service(UpdateServiceRequest {
            service: Some("web".into()),
            desired_count: Some(5),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(converge(&c, "web", None).running_count, 5);
        c.update_service(UpdateServiceRequest {
            service: Some("web".into()),
            desired_count: Some(1),
            ..Default::default()
        })
        .unwrap();
        let s = converge(&c, "web", None);
        assert_eq!(s.running_count, 1);
        let stopped: Vec<Task> = tasks(&c, "web")
            .into_iter()
            .filter(|t| t.desired_status == DesiredStatus::Stopped)
            .collect();
        assert_eq!(stopped.len(), 4);
        assert!(
            stopped
                .iter()
                .all(|t| t.stop_code == Some(StopCode::ServiceSchedulerInitiated))
        );

        // The container dies: the scheduler starts another.
        let victim = tasks(&c, "web")
            .into_iter()
            .find(|t| t.desired_status == DesiredStatus::Running)
            .unwrap();
        c.store
            .update(|txn| -> Result<(), ControlError> {
                let mut t = txn.get::<Task>(&victim.task_arn)?.unwrap().value;
                t.last_status = TaskStatus::Stopped;
                t.desired_status = DesiredStatus::Stopped;
                t.stop_code = Some(StopCode::EssentialContainerExited);
                t.stopped_at = Some(now());
                txn.put(&t)?;
                Ok(())
            })
            .unwrap();
        c.services_pass().unwrap();
        agent(&c);
        let live: Vec<Task> = tasks(&c, "web")
            .into_iter()
            .filter(|t| t.last_status == TaskStatus::Running)
            .collect();
        assert_eq!(live.len(), 1);
        assert_ne!(live[0].task_arn, victim.task_arn);
        assert_eq!(describe(&c, "web").deployments[0].failed_tasks, 1);
    }

    #[test]
    fn a_rolling_update_keeps_the_percentages_at_every_step() {
        for (min, max) in [(50, 150), (100, 200), (0, 100), (75, 125)] {
            let (_d, c) = control();
            instance(&c);
            instance(&c);
            let v1 = register(&c, "web", "busybox");
            let dc = DeploymentConfiguration {
                minimum_healthy_percent: Some(min),
                maximum_percent: Some(max),
                deployment_circuit_breaker: None,
            };
            create(&c, "web", &v1, 4, Some(dc));
            converge(&c, "web", None);
            let v2 = register(&c, "web", "busybox:2");
            let s = c
                .update_service(UpdateServiceRequest {
                    service: Some("web".into()),
                    task_definition: Some(v2.clone()),
                    ..Default::default()
                })
                .unwrap()
                .service;
            assert_eq!(s.deployments.len(), 2);
            assert_eq!(s.deployments[1].status, DeploymentStatus::Active);
            let (lo, hi) = deployment::bounds(4, min, max);
            let s = converge(&c, "web", Some((lo, hi)));
            assert_eq!(s.task_definition, v2);
            assert_eq!(s.deployments[1].status, DeploymentStatus::Inactive);
            // DescribeServices shows only the PRIMARY one now, as ECS does.
            let shown = c
                .describe_services(DescribeServicesRequest {
                    services: vec!["web".into()],
                    ..Default::default()
                })
                .unwrap()
                .services
                .remove(0);
            assert_eq!(shown.deployments.len(), 1, "{:#?}", shown.deployments);
            assert_eq!(shown.deployments[0].status, DeploymentStatus::Primary);
            let live: Vec<Task> = tasks(&c, "web")
                .into_iter()
                .filter(|t| t.last_status == TaskStatus::Running)
                .collect();
            assert_eq!(live.len(), 4, "min {min} max {max}");
            assert!(live.iter().all(|t| t.task_definition_arn == v2));
        }
    }

    #[test]
    fn the_circuit_breaker_rolls_back_after_backing_off() {
        let (_d, c) = control();
        instance(&c);
        let v1 = register(&c, "web", "busybox");
        let dc = DeploymentConfiguration {
            minimum_healthy_percent: Some(100),
            maximum_percent: Some(200),
            deployment_circuit_breaker: Some(DeploymentCircuitBreaker {
                enable: true,
                rollback: true,
            }),
        };
        create(&c, "web", &v1, 2, Some(dc));
        let first = converge(&c, "web", None).deployments[0].id.clone();
        let v2 = register(&c, "web", "crash");
        c.update_service(UpdateServiceRequest {
            service: Some("web".into()),
            task_definition: Some(v2),
            ..Default::default()
        })
        .unwrap();
        let mut saw_backoff = false;
        for _ in 0..40 {
            c.services_pass().unwrap();
            let (running, _) = observe(&c, "web");
            assert!(running >= 2, "the old tasks must keep running: {running}");
            agent(&c);
            let s = describe(&c, "web");
            saw_backoff |= s.events.iter().any(|e| e.message == unable_to_start("web"));
            if s.deployments
                .iter()
                .any(|d| d.rollout_state == Some(RolloutState::Failed))
            {
                break;
            }
            // Time passes: the back-off is over.
            c.store
                .update(|txn| -> Result<(), ControlError> {
                    let mut st = txn.get::<ServiceState>(&s.service_arn)?.unwrap().value;
                    st.last_start_failure_at = 0.0;
                    txn.put(&st)?;
                    Ok(())
                })
                .unwrap();
        }
        assert!(
            saw_backoff,
            "no back-off event: {:#?}",
            describe(&c, "web").events
        );
        let s = describe(&c, "web");
        let failed = s
            .deployments
            .iter()
            .find(|d| d.rollout_state == Some(RolloutState::Failed))
            .expect("the breaker tripped");
        // Two start at once, so two fail at once: the breaker trips on the pass that reaches the threshold.
        assert!(
            (3..=4).contains(&failed.failed_tasks),
            "{}",
            failed.failed_tasks
        );
        assert_eq!(
            s.deployments
                .iter()
                .find(|d| d.status == DeploymentStatus::Primary)
                .unwrap()
                .id,
            first
        );
        let s = converge(&c, "web", Some((2, 4)));
        assert_eq!(s.task_definition, v1);
        // No flood: each message appears once in a row.
        assert!(s.events.windows(2).all(|w| w[0].message != w[1].message));
        assert!(s.events.len() <= MAX_EVENTS);
    }

    #[test]
    fn draining_an_instance_moves_service_tasks_within_the_percentages() {
        let (_d, c) = control();
        let a = instance(&c);
        instance(&c);
        let td = register(&c, "web", "busybox");
        let dc = DeploymentConfiguration {
            minimum_healthy_percent: Some(50),
            maximum_percent: Some(100),
            deployment_circuit_breaker: None,
        };
        create(&c, "web", &td, 4, Some(dc));
        converge(&c, "web", None);
        c.update_container_instances_state(UpdateContainerInstancesStateRequest {
            container_instances: vec![a.clone()],
            status: Some("DRAINING".into()),
            ..Default::default()
        })
        .unwrap();
        for _ in 0..20 {
            c.services_pass().unwrap();
            let (running, busy) = observe(&c, "web");
            assert!(running >= 2 && busy <= 4, "{running} running, {busy} busy");
            agent(&c);
        }
        let live: Vec<Task> = tasks(&c, "web")
            .into_iter()
            .filter(|t| t.last_status == TaskStatus::Running)
            .collect();
        assert_eq!(live.len(), 4);
        assert!(
            live.iter()
                .all(|t| t.container_instance_arn.as_deref() != Some(a.as_str()))
        );
    }

    /// Whether any instance holds more than it registered, from the tasks
    /// asked to run on it (what placement counts).
    fn over_committed(c: &Control) -> Option<String> {
        let txn = c.store.begin().unwrap();
        for ci in super::super::collect_pages(|p| txn.list::<ContainerInstance>(p)).unwrap() {
            let ci = ci.value;
            let tasks =
                super::super::instances::tasks_on(&txn, &ci.container_instance_arn).unwrap();
            let sum = |f: fn(&Task) -> Option<&String>| -> i64 {
                tasks
                    .iter()
                    .map(|t| f(t).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0))
                    .sum()
            };
            let (cpu, mem) = (sum(|t| t.cpu.as_ref()), sum(|t| t.memory.as_ref()));
            let reg = |n| {
                super::super::instances::integer_resource(&ci.registered_resources, n).unwrap_or(0)
            };
            if cpu > reg("CPU") || mem > reg("MEMORY") {
                return Some(format!(
                    "{} holds cpu {cpu} memory {mem}",
                    ci.container_instance_arn
                ));
            }
        }
        None
    }

    /// Invariant 2: the service scheduler of one server, RunTask and
    /// StartTask of another, and the agent all write the same nearly full
    /// cluster at once with compare-and-swap; no instance is ever
    /// over-committed, no call is lost to contention, and the service still
    /// reaches its count. Prints the service scheduler's conflict rate.
    #[test]
    fn concurrent_schedulers_never_over_commit_and_retry_conflicts() {
        let (_d, a) = control();
        let b = Control::new(Arc::clone(&a.store), ArnContext::default());
        let instances: Vec<String> = (0..3).map(|_| instance(&a)).collect();
        let td = register(&a, "web", "busybox");
        register(&a, "batch", "busybox");
        // 30 slots of 100 CPU: the service takes 12, the batch work fights for the rest.
        create(&a, "web", &td, 12, None);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let stats = std::sync::Mutex::new(PassStats::default());
        std::thread::scope(|scope| {
            let services = scope.spawn(|| {
                for _ in 0..60 {
                    let p = a.services_pass().unwrap();
                    let mut s = stats.lock().unwrap();
                    s.commits += p.commits;
                    s.conflicts += p.conflicts;
                    s.failed += p.failed;
                    assert_eq!(over_committed(&a), None);
                }
            });
            let runner = scope.spawn(|| {
                let mut placed = 0;
                for i in 0..60 {
                    // Every other call queues what does not fit, for the batch scheduler.
                    let tags = if i % 2 == 0 {
                        vec![Tag {
                            key: crate::control::QUEUE_TAG.into(),
                            value: "true".into(),
                        }]
                    } else {
                        Vec::new()
                    };
                    let r = b.run_task(RunTaskRequest {
                        task_definition: Some("batch".into()),
                        count: Some(3),
                        tags,
                        ..Default::default()
                    });
                    let r = r.unwrap_or_else(|e| panic!("RunTask {i} lost: {e}"));
                    placed += r.tasks.len();
                    assert_eq!(over_committed(&b), None);
                }
                placed
            });
            let queue = scope.spawn(|| {
                for i in 0..60 {
                    b.place_queued()
                        .unwrap_or_else(|e| panic!("queue pass {i} lost: {e}"));
                    assert_eq!(over_committed(&b), None);
                }
            });
            let starter = scope.spawn(|| {
                for i in 0..60 {
                    let r = b.start_task(StartTaskRequest {
                        task_definition: Some("batch".into()),
                        container_instances: vec![instances[i % 3].clone()],
                        ..Default::default()
                    });
                    r.unwrap_or_else(|e| panic!("StartTask {i} lost: {e}"));
                    assert_eq!(over_committed(&b), None);
                }
            });
            // The agent: runs what is placed, and batch tasks finish.
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    agent(&a);
                    let batch: Vec<Task> = {
                        let txn = a.store.begin().unwrap();
                        all_by_index(
                            &txn,
                            TASKS_BY_GROUP,
                            &in_cluster(&a.arn.cluster("default"), "family:batch"),
                        )
                        .unwrap()
                        .into_iter()
                        .map(|t| t.value)
                        .filter(|t| {
                            t.desired_status == DesiredStatus::Running
                                && t.last_status == TaskStatus::Running
                        })
                        .collect()
                    };
                    for t in batch.iter().take(2) {
                        let _ = a.stop_task(StopTaskRequest {
                            task: Some(t.task_arn.clone()),
                            ..Default::default()
                        });
                    }
                }
            });
            services.join().unwrap();
            let placed = runner.join().unwrap();
            starter.join().unwrap();
            queue.join().unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(placed > 0, "RunTask never placed anything");
        });
        let s = stats.into_inner().unwrap();
        let rate = f64::from(s.conflicts) / f64::from(s.commits.max(1));
        println!(
            "service scheduler: {} commits, {} conflicts retried ({rate:.3} per commit), {} failed",
            s.commits, s.conflicts, s.failed
        );
        assert_eq!(s.failed, 0, "a service step gave up on contention");
        // The batch work finishes; the service gets its 12.
        let left: Vec<Task> = {
            let txn = a.store.begin().unwrap();
            all_by_index(
                &txn,
                TASKS_BY_GROUP,
                &in_cluster(&a.arn.cluster("default"), "family:batch"),
            )
            .unwrap()
            .into_iter()
            .map(|t| t.value)
            .filter(|t| t.desired_status == DesiredStatus::Running)
            .collect()
        };
        for t in left {
            a.stop_task(StopTaskRequest {
                task: Some(t.task_arn),
                ..Default::default()
            })
            .unwrap();
        }
        let done = converge(&a, "web", None);
        assert_eq!(done.running_count, 12);
        assert_eq!(over_committed(&a), None);
    }

    /// The scheduler keeps nothing in memory: a new server over the same
    /// store in the middle of a rolling update carries it on within bounds.
    #[test]
    fn a_restart_in_the_middle_of_a_deployment_resumes_it() {
        let (_d, c) = control();
        instance(&c);
        let v1 = register(&c, "web", "busybox");
        let dc = DeploymentConfiguration {
            minimum_healthy_percent: Some(50),
            maximum_percent: Some(150),
            deployment_circuit_breaker: None,
        };
        create(&c, "web", &v1, 4, Some(dc));
        converge(&c, "web", None);
        let v2 = register(&c, "web", "busybox:2");
        c.update_service(UpdateServiceRequest {
            service: Some("web".into()),
            task_definition: Some(v2.clone()),
            ..Default::default()
        })
        .unwrap();
        c.services_pass().unwrap();
        agent(&c);
        let mid = describe(&c, "web");
        assert_eq!(
            mid.deployments[0].rollout_state,
            Some(RolloutState::InProgress)
        );
        let live: Vec<Task> = tasks(&c, "web")
            .into_iter()
            .filter(|t| t.last_status == TaskStatus::Running)
            .collect();
        let new = live.iter().filter(|t| t.task_definition_arn == v2).count();
        assert!(
            new > 0 && new < live.len(),
            "the update is half way: {new} of {} on v2",
            live.len()
        );
        let again = Control::new(Arc::clone(&c.store), ArnContext::default());
        drop(c);
        let s = converge(&again, "web", Some((2, 6)));
        assert_eq!(s.task_definition, v2);
        assert_eq!(
            s.deployments
                .iter()
                .filter(|d| d.status == DeploymentStatus::Primary)
                .count(),
            1
        );
    }

    fn instance_with_role(c: &Control, role: &str) -> String {
        c.register_container_instance(RegisterContainerInstanceRequest {
            total_resources: vec![
                Resource::integer("CPU", 1024),
                Resource::integer("MEMORY", 1024),
            ],
            attributes: vec![berth_core::model::Attribute {
                name: "role".into(),
                value: Some(role.into()),
                target_type: None,
                target_id: None,
            }],
            ..Default::default()
        })
        .unwrap()
        .container_instance
        .container_instance_arn
    }

    /// Live tasks of the service per instance.
    fn per_instance(c: &Control, name: &str) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for t in tasks(c, name)
            .into_iter()
            .filter(|t| t.desired_status == DesiredStatus::Running)
        {
            *m.entry(t.container_instance_arn.unwrap_or_default())
                .or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn one_pass_placing_on_several_instances_counts_each_task_once() {
        let (_d, c) = control();
        let all: Vec<String> = (0..3).map(|_| instance_with_role(&c, "web")).collect();
        let td = register(&c, "agent", "busybox");
        c.create_service(CreateServiceRequest {
            service_name: Some("d".into()),
            task_definition: Some(td),
            scheduling_strategy: Some(SchedulingStrategy::Daemon),
            ..Default::default()
        })
        .unwrap();
        // One pass, one transaction, three placements (no agent runs them).
        c.services_pass().unwrap();
        let d = c
            .describe_container_instances(DescribeContainerInstancesRequest {
                container_instances: all.clone(),
                ..Default::default()
            })
            .unwrap();
        for ci in &d.container_instances {
            assert_eq!(
                (ci.pending_tasks_count, ci.running_tasks_count),
                (1, 0),
                "{}",
                ci.container_instance_arn
            );
        }
    }

    #[test]
    fn a_daemon_runs_one_task_on_every_matching_active_instance() {
        let (_d, c) = control();
        let web1 = instance_with_role(&c, "web");
        let web2 = instance_with_role(&c, "web");
        let db = instance_with_role(&c, "db");
        let td = register(&c, "agent", "busybox");
        let refused = c.create_service(CreateServiceRequest {
            service_name: Some("d".into()),
            task_definition: Some(td.clone()),
            desired_count: Some(1),
            scheduling_strategy: Some(SchedulingStrategy::Daemon),
            ..Default::default()
        });
        assert!(
            matches!(refused, Err(ControlError::InvalidParameter(m)) if m.starts_with("desiredCount"))
        );
        let constraint: PlacementConstraint = serde_json::from_value(
            json!({"type": "memberOf", "expression": "attribute:role == web"}),
        )
        .unwrap();
        c.create_service(CreateServiceRequest {
            service_name: Some("d".into()),
            task_definition: Some(td),
            scheduling_strategy: Some(SchedulingStrategy::Daemon),
            placement_constraints: vec![constraint],
            ..Default::default()
        })
        .unwrap();
        let s = converge(&c, "d", None);
        assert_eq!(s.desired_count, 2);
        let m = per_instance(&c, "d");
        assert_eq!(
            m,
            BTreeMap::from([(web1.clone(), 1), (web2.clone(), 1)]),
            "not on {db}"
        );

        // A new matching instance gets one; a drained one loses its task.
        let web3 = instance_with_role(&c, "web");
        c.update_container_instances_state(UpdateContainerInstancesStateRequest {
            container_instances: vec![web1.clone()],
            status: Some("DRAINING".into()),
            ..Default::default()
        })
        .unwrap();
        for _ in 0..5 {
            c.services_pass().unwrap();
            agent(&c);
        }
        assert_eq!(
            per_instance(&c, "d"),
            BTreeMap::from([(web2.clone(), 1), (web3.clone(), 1)])
        );
        assert_eq!(describe(&c, "d").desired_count, 2);

        // A new revision replaces each task in place, never two on one instance.
        let v2 = register(&c, "agent", "busybox:2");
        c.update_service(UpdateServiceRequest {
            service: Some("d".into()),
            task_definition: Some(v2.clone()),
            ..Default::default()
        })
        .unwrap();
        for _ in 0..10 {
            c.services_pass().unwrap();
            assert!(per_instance(&c, "d").values().all(|n| *n == 1));
            agent(&c);
        }
        let s = describe(&c, "d");
        assert_eq!(
            s.deployments[0].rollout_state,
            Some(RolloutState::Completed),
            "{:#?}",
            s.deployments
        );
        let live: Vec<Task> = tasks(&c, "d")
            .into_iter()
            .filter(|t| t.last_status == TaskStatus::Running)
            .collect();
        assert_eq!(live.len(), 2);
        assert!(live.iter().all(|t| t.task_definition_arn == v2));
    }

    #[test]
    fn a_task_failing_its_health_check_is_replaced_and_counted() {
        let (_d, c) = control();
        instance(&c);
        let td = register(&c, "web", "busybox");
        create(&c, "web", &td, 2, None);
        converge(&c, "web", None);
        let sick = tasks(&c, "web").remove(0);
        c.store
            .update(|txn| -> Result<(), ControlError> {
                let mut t = txn.get::<Task>(&sick.task_arn)?.unwrap().value;
                t.health_status = Some(HealthStatus::Unhealthy);
                txn.put(&t)?;
                Ok(())
            })
            .unwrap();
        c.services_pass().unwrap();
        let t = tasks(&c, "web")
            .into_iter()
            .find(|t| t.task_arn == sick.task_arn)
            .unwrap();
        assert_eq!(t.desired_status, DesiredStatus::Stopped);
        assert_eq!(
            t.stopped_reason.as_deref(),
            Some("Task failed container health checks")
        );
        agent(&c);
        c.services_pass().unwrap();
        agent(&c);
        c.services_pass().unwrap();
        let s = describe(&c, "web");
        assert_eq!(s.running_count, 2);
        assert_eq!(s.deployments[0].failed_tasks, 1);
    }
}
