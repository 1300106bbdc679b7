//! RunTask, StartTask, StopTask, DescribeTasks, ListTasks, and the batch
//! scheduler's placement of queued tasks.
//!
//! A placement reads the cluster's instances with CAS, brings the
//! cluster's in-memory view up to date with them (view.rs), places, and
//! commits the new tasks together with every instance whose remaining
//! resources changed, in one transaction. A conflict retries on a fresh
//! view, so no instance is ever over-committed.

use berth_core::arn;
use berth_core::model::{
    Container, ContainerInstance, NetworkBinding, NetworkMode, Task, TaskDefinition,
};
use berth_core::placement::{Check, Placement, PlacementRequest, Placer, TaskSpec};
use berth_core::status::{
    ContainerStatus, DesiredStatus, HealthStatus, StopCode, TaskDefinitionStatus, TaskStatus,
};
use berth_store::tables::{TASKS_BY_CLUSTER, TASKS_BY_INSTANCE};
use berth_store::{Index, Record, Txn};
use serde::{Deserialize, Serialize};

use super::instances::tasks_on;
use super::policies::PolicyFailed;
use super::taskdefs::resolve;
use super::types::*;
use super::view::{ChosenPolicy, ClusterView};
use super::{Control, ControlError, all_by_index, now, paginate};

/// The RunTask tag that asks berth to queue tasks that do not fit now
/// instead of failing them.
pub const QUEUE_TAG: &str = "berth:queue";

/// A task waiting for capacity, with the placement it asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedTask {
    pub task_arn: String,
    pub cluster_arn: String,
    pub created_at: f64,
    pub placement_constraints: Vec<berth_core::model::PlacementConstraint>,
    pub placement_strategy: Vec<berth_core::model::PlacementStrategy>,
}

/// Queued tasks by cluster ARN.
const QUEUED_BY_CLUSTER: Index<QueuedTask> = Index::new("cluster");

impl Record for QueuedTask {
    const TABLE: &'static str = "berth_queued_tasks";
    fn key(&self) -> String {
        self.task_arn.clone()
    }
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        vec![(QUEUED_BY_CLUSTER.name(), self.cluster_arn.clone())]
    }
}

/// Where a batched RunTask's answer goes.
pub(super) type RunReply = std::sync::mpsc::Sender<Result<TasksResponse, ControlError>>;

/// What a RunTask with a clientToken answered, so a retry gets the same tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTokenRecord {
    pub key: String,
    pub request: RunTaskRequest,
    pub task_arns: Vec<String>,
    pub failures: Vec<Failure>,
}

impl Record for ClientTokenRecord {
    const TABLE: &'static str = "berth_client_tokens";
    fn key(&self) -> String {
        self.key.clone()
    }
}

/// The instance's counts and remaining resources recomputed from the tasks
/// it holds in `txn`'s view (buffered writes included), so they stay true;
/// the rule is `berth_core::usage`'s, the one every path uses.
pub(super) fn recount(
    txn: &Txn,
    mut ci: ContainerInstance,
) -> Result<ContainerInstance, ControlError> {
    let tasks = tasks_on(txn, &ci.container_instance_arn)?;
    berth_core::usage::apply_usage(&mut ci, &tasks);
    Ok(ci)
}

/// The containers of a task of `td`, with network bindings when placed
/// (`dynamic`: the host ports chosen for the dynamic mappings, in order).
fn containers_for(
    ctx: &arn::ArnContext,
    cluster: &str,
    task_id: &str,
    td: &TaskDefinition,
    dynamic: Option<&[u16]>,
) -> Vec<Container> {
    let mut dynamic = dynamic.map(|d| d.iter());
    td.container_definitions
        .iter()
        .map(|d| {
            let mut network_bindings = Vec::new();
            if let Some(dyn_ports) = dynamic.as_mut() {
                for pm in &d.port_mappings {
                    let host = match td.network_mode {
                        NetworkMode::None => continue,
                        NetworkMode::Host => Some(pm.container_port),
                        NetworkMode::Bridge => {
                            pm.static_host_port().filter(|p| u16::try_from(*p).is_ok())
                        }
                    };
                    let host = match host {
                        Some(p) => p,
                        None => dyn_ports.next().map_or(0, |p| u32::from(*p)),
                    };
                    network_bindings.push(NetworkBinding {
                        bind_i_p: Some("0.0.0.0".into()),
                        container_port: pm.container_port,
                        host_port: host,
                        protocol: Some(pm.protocol()),
                    });
                }
            }
            Container {
                container_arn: ctx.container(cluster, task_id, &d.name),
                task_arn: Some(ctx.task(cluster, task_id)),
                name: d.name.clone(),
                image: d.image.clone(),
                last_status: ContainerStatus::Pending,
                exit_code: None,
                reason: None,
                health_status: d.health_check.as_ref().map(|_| HealthStatus::Unknown),
                network_bindings,
                runtime_id: None,
            }
        })
        .collect()
}

/// Why StartTask placed no task on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotStarted {
    /// The instance is not one of the cluster's.
    Missing,
    /// It fails a placement check.
    Unfit(Check),
}

impl std::fmt::Display for NotStarted {
    /// ECS's failure reason.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotStarted::Missing => f.write_str("MISSING"),
            NotStarted::Unfit(c) => f.write_str(c.reason()),
        }
    }
}

/// What a new task carries besides its placement.
struct NewTask<'a> {
    cluster_name: &'a str,
    cluster_arn: &'a str,
    td: &'a TaskDefinition,
    spec: &'a TaskSpec,
    started_by: Option<&'a str>,
    overrides: Option<&'a berth_core::model::TaskOverride>,
    tags: &'a [berth_core::model::Tag],
}

impl NewTask<'_> {
    fn mint(&self, ctx: &arn::ArnContext, instance: Option<&str>, dynamic: Option<&[u16]>) -> Task {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Task {
            task_arn: ctx.task(self.cluster_name, &id),
            cluster_arn: self.cluster_arn.to_owned(),
            task_definition_arn: self.td.task_definition_arn.clone(),
            container_instance_arn: instance.map(str::to_owned),
            group: Some(self.spec.group.clone()),
            started_by: self.started_by.map(str::to_owned),
            last_status: TaskStatus::Pending,
            desired_status: DesiredStatus::Running,
            health_status: Some(HealthStatus::Unknown),
            stop_code: None,
            stopped_reason: None,
            created_at: Some(now()),
            started_at: None,
            stopping_at: None,
            stopped_at: None,
            version: 1,
            cpu: Some(self.spec.cpu.to_string()),
            memory: Some(self.spec.memory.to_string()),
            launch_type: Some("EC2".into()),
            containers: containers_for(ctx, self.cluster_name, &id, self.td, dynamic),
            overrides: self.overrides.cloned(),
            tags: self.tags.to_vec(),
            attributes: Vec::new(),
        }
    }
}

fn seed() -> u64 {
    // The low bits of a v4 UUID are random.
    uuid::Uuid::new_v4().as_u64_pair().1
}

fn check_started_by(s: Option<&str>) -> Result<(), ControlError> {
    if let Some(s) = s
        && s.len() > 128
    {
        return Err(ControlError::invalid(
            "startedBy",
            "is longer than 128 characters",
        ));
    }
    Ok(())
}

/// What one RunTask did: the tasks minted (placed or queued), the ones it
/// could not place, and the policy that failed, if one did.
pub(super) type Ran = (Vec<Task>, Vec<Failure>, Option<PolicyFailed>);

/// Why a task was not placed.
struct Unplaced {
    /// ECS's failure reason (`RESOURCE:CPU`, `ATTRIBUTE`, ...; `POLICY`
    /// when a policy declined or failed).
    reason: String,
    detail: String,
    /// The policy failed and its fallback is to leave the task PENDING.
    queue: bool,
}

impl Control {
    fn task_arn_of(&self, cluster_name: &str, id_or_arn: &str) -> String {
        if id_or_arn.starts_with("arn:") {
            id_or_arn.to_owned()
        } else {
            self.arn.task(cluster_name, id_or_arn)
        }
    }

    /// RunTask: places `count` tasks with the engine. Tasks that do not fit
    /// fail with ECS's reasons, or, with the tag `berth:queue` = `true`,
    /// wait PENDING for capacity.
    pub fn run_task(&self, req: RunTaskRequest) -> Result<TasksResponse, ControlError> {
        let count = req.count.unwrap_or(1);
        if !(1..=10).contains(&count) {
            return Err(ControlError::invalid(
                "count",
                format!("{count} is out of range 1-10"),
            ));
        }
        if req.task_definition.is_none() {
            return Err(ControlError::invalid("taskDefinition", "is required"));
        }
        check_started_by(req.started_by.as_deref())?;
        if let Some(v) = req
            .tags
            .iter()
            .find(|t| t.key == QUEUE_TAG)
            .map(|t| t.value.as_str())
            && !matches!(v, "true" | "false")
        {
            return Err(ControlError::invalid(
                "tags",
                format!("{QUEUE_TAG}: `{v}` is not true or false"),
            ));
        }
        if let Some(t) = &req.client_token
            && (t.is_empty() || t.len() > 64)
        {
            return Err(ControlError::invalid(
                "clientToken",
                "must be 1-64 characters",
            ));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        self.run_queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((req, tx));
        // Group commit: whoever gets the placement turn places the RunTasks
        // queued so far in one transaction, so concurrent calls share one
        // commit (and its fsync) instead of waiting for one each; as many
        // as the store lets one transaction write (etcd's limit), oldest
        // first, until this call's own is answered.
        loop {
            {
                let _turn = self.placement_turn();
                let batch = take_fitting(
                    &mut self
                        .run_queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                    self.store.records_per_txn(),
                );
                if !batch.is_empty() {
                    self.run_batch(batch);
                }
            }
            match rx.try_recv() {
                Ok(answer) => return answer,
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    return Err(ControlError::Server(
                        "the RunTask batch ended without an answer".into(),
                    ));
                }
            }
        }
    }

    /// Places a batch of RunTask calls in one transaction and answers each.
    fn run_batch(&self, batch: Vec<(RunTaskRequest, RunReply)>) {
        let up = self.placing(
            |txn| -> Result<Vec<Result<TasksResponse, ControlError>>, ControlError> {
                let mut out = Vec::with_capacity(batch.len());
                // One view per cluster for the whole batch: each placement
                // reserves in it, so the next call sees what the earlier took.
                for (req, _) in &batch {
                    match self.run_in(txn, req, None) {
                        Ok((tasks, failures, _)) => out.push(Ok(TasksResponse { tasks, failures })),
                        // The store failed: the whole attempt is void.
                        Err(e @ ControlError::Server(_)) => return Err(e),
                        // This call's own mistake: checked before it wrote anything.
                        Err(e) => out.push(Err(e)),
                    }
                }
                Ok(out)
            },
        );
        match up {
            Ok(up) => {
                for ((_, reply), answer) in batch.into_iter().zip(up.value) {
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                let e = ControlError::from(e);
                for (_, reply) in batch {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// StartTask's placement of one task of `req` (its task definition,
    /// group, startedBy, constraints) on `instance_arn` inside the caller's
    /// placing transaction (the DAEMON scheduler's path): the task, or why it
    /// is not there (`MISSING`, `ATTRIBUTE`, `RESOURCE:CPU`, ...).
    pub(super) fn start_on_in_txn(
        &self,
        txn: &mut Txn,
        cluster_arn: &str,
        instance_arn: &str,
        req: &RunTaskRequest,
    ) -> Result<Result<Task, NotStarted>, ControlError> {
        let td = resolve(
            txn,
            req.task_definition.as_deref().unwrap_or_default(),
            "taskDefinition",
        )?;
        let spec = TaskSpec::from_definition(&td, None, req.group.clone().unwrap_or_default());
        let preq = PlacementRequest::compile(
            spec,
            &berth_core::placement::task_definition_constraints(&td),
            &req.placement_constraints,
            &[],
        )?;
        let mut view = self.views.take(txn, &self.store, cluster_arn)?;
        let out = match view.place_on_arn(&preq, instance_arn) {
            None => Ok(Err(NotStarted::Missing)),
            Some(Err(c)) => Ok(Err(NotStarted::Unfit(c))),
            Some(Ok(p)) => {
                let new = NewTask {
                    cluster_name: arn::cluster_name(cluster_arn),
                    cluster_arn,
                    td: &td,
                    spec: &preq.task,
                    started_by: req.started_by.as_deref(),
                    overrides: None,
                    tags: &[],
                };
                let task = new.mint(&self.arn, Some(instance_arn), Some(&p.dynamic_host_ports));
                txn.put(&task)
                    .map(|()| Ok(task))
                    .map_err(ControlError::from)
            }
        };
        self.views.lend(cluster_arn, view);
        out
    }

    /// [`Control::decide_unmeasured`], counted and timed in the metrics.
    fn decide(
        &self,
        view: &mut ClusterView,
        policy: &ChosenPolicy,
        preq: &PlacementRequest,
        count: usize,
    ) -> (Vec<Result<Placement, Unplaced>>, Option<PolicyFailed>) {
        use crate::metrics::PlacementResult;
        let started = std::time::Instant::now();
        let shadow = self.shadow_before(view);
        let out = self.decide_unmeasured(view, policy, preq, count);
        self.shadow_after(shadow, preq, &out.0);
        let results: Vec<PlacementResult> = out
            .0
            .iter()
            .map(|r| match r {
                Ok(_) => PlacementResult::Scheduled,
                // Left PENDING because the policy failed.
                Err(u) if u.queue => PlacementResult::Error,
                Err(_) => PlacementResult::Unschedulable,
            })
            .collect();
        let name = policy.as_ref().map_or("native", |(p, _)| p.name.as_str());
        crate::metrics::placement(name, &results, started.elapsed());
        out
    }

    /// Places `count` tasks of `preq` in `view`: through the chosen policy
    /// (its answers checked by the native engine), or natively; and, when
    /// the policy failed, how and what its fallback did.
    fn decide_unmeasured(
        &self,
        view: &mut ClusterView,
        policy: &ChosenPolicy,
        preq: &PlacementRequest,
        count: usize,
    ) -> (Vec<Result<Placement, Unplaced>>, Option<PolicyFailed>) {
        let native = |view: &mut ClusterView| -> Vec<Result<Placement, Unplaced>> {
            // Each instance's eliminating check, once per request.
            let mut why: Option<String> = None;
            Placer::new(seed())
                .place(&mut view.state, preq, count)
                .into_iter()
                .map(|r| match r {
                    Ok(p) => {
                        view.placed(preq, &p, None);
                        Ok(p)
                    }
                    Err(f) => Err(Unplaced {
                        reason: f.reason.reason().to_owned(),
                        detail: format!(
                            "{f}: {}",
                            why.get_or_insert_with(|| super::explain::why_unplaced(view, preq))
                        ),
                        queue: false,
                    }),
                })
                .collect()
        };
        let (Some((policy, fallback)), Some(reg)) = (policy, self.policies.as_deref()) else {
            return (native(view), None);
        };
        match view.place_with_policy(reg.host(), policy, preq, count) {
            Ok(answers) => (
                answers
                    .into_iter()
                    .map(|a| {
                        a.map_err(|why| Unplaced {
                            reason: "POLICY".into(),
                            detail: format!("policy {}: {why}", policy.name),
                            queue: false,
                        })
                    })
                    .collect(),
                None,
            ),
            Err(e) => {
                let failed = PolicyFailed::new(policy, e, *fallback);
                let answers = match fallback {
                    berth_policy::Fallback::Native => {
                        tracing::warn!(error = %failed.error, "placement policy failed; placing with the native strategies");
                        native(view)
                    }
                    berth_policy::Fallback::Pending => {
                        tracing::warn!(error = %failed.error, "placement policy failed; leaving the tasks PENDING");
                        (0..count)
                            .map(|_| {
                                Err(Unplaced {
                                    reason: "POLICY".into(),
                                    detail: format!(
                                        "policy {}; left PENDING (fallback pending)",
                                        failed.what()
                                    ),
                                    queue: true,
                                })
                            })
                            .collect()
                    }
                };
                (answers, Some(failed))
            }
        }
    }

    /// One RunTask inside a placing transaction ([`Control::placing`]),
    /// validated already: places and writes the tasks; the instances they
    /// landed on are written when the transaction ends. `service` names the
    /// service placing (the service scheduler's path), for its policy.
    pub(super) fn run_in(
        &self,
        txn: &mut Txn,
        req: &RunTaskRequest,
        service: Option<&str>,
    ) -> Result<Ran, ControlError> {
        let count = req.count.unwrap_or(1);
        let td_ref = req.task_definition.clone().unwrap_or_default();
        let queue = req
            .tags
            .iter()
            .any(|t| t.key == QUEUE_TAG && t.value == "true");
        let cluster = self.active_cluster(txn, req.cluster.as_deref())?;
        let token_key = req
            .client_token
            .as_ref()
            .map(|t| format!("{} {t}", cluster.cluster_arn));
        if let Some(k) = &token_key
            && let Some(prior) = txn.get::<ClientTokenRecord>(k)?
        {
            if prior.value.request != *req {
                return Err(ControlError::invalid(
                    "clientToken",
                    "was used before with a different request",
                ));
            }
            let mut tasks = Vec::new();
            for a in &prior.value.task_arns {
                if let Some(t) = txn.get::<Task>(a)? {
                    tasks.push(t.value);
                }
            }
            return Ok((tasks, prior.value.failures, None));
        }
        let td = resolve(txn, &td_ref, "taskDefinition")?;
        if td.status != TaskDefinitionStatus::Active {
            return Err(ControlError::Client(format!(
                "taskDefinition: `{td_ref}` is INACTIVE"
            )));
        }
        let preq = super::explain::run_request(req, &td)?;
        let policy = self.policy_for(&cluster.cluster_name, service, &req.tags)?;
        let mut view = self.views.take(txn, &self.store, &cluster.cluster_arn)?;
        let (results, policy_failed) = self.decide(&mut view, &policy, &preq, count as usize);
        let new = NewTask {
            cluster_name: &cluster.cluster_name,
            cluster_arn: &cluster.cluster_arn,
            td: &td,
            spec: &preq.task,
            started_by: req.started_by.as_deref(),
            overrides: req.overrides.as_ref(),
            tags: &req.tags,
        };
        let mut tasks = Vec::new();
        let mut failures = Vec::new();
        let mut queued = Vec::new();
        for r in results {
            match r {
                Ok(p) => {
                    let arn = &view.instances[p.instance].container_instance_arn;
                    tasks.push(new.mint(&self.arn, Some(arn), Some(&p.dynamic_host_ports)));
                }
                // A service's tasks are not queued: its scheduler retries them.
                Err(u) if queue || (u.queue && service.is_none()) => {
                    let t = new.mint(&self.arn, None, None);
                    tracing::info!(task = %t.task_arn, reason = %u.detail, "queued");
                    queued.push(QueuedTask {
                        task_arn: t.task_arn.clone(),
                        cluster_arn: cluster.cluster_arn.clone(),
                        created_at: t.created_at.unwrap_or_default(),
                        placement_constraints: req.placement_constraints.clone(),
                        placement_strategy: req.placement_strategy.clone(),
                    });
                    tasks.push(t);
                }
                Err(u) => failures.push(Failure {
                    arn: Some(cluster.cluster_arn.clone()),
                    reason: u.reason,
                    detail: Some(u.detail),
                }),
            }
        }
        self.views.lend(&cluster.cluster_arn, view);
        if let Some(f) = &policy_failed {
            for t in &mut tasks {
                f.mark(t);
            }
            self.note_policy_failure(f, tasks.first().map(|t| t.task_arn.as_str()));
        }
        for q in &queued {
            txn.put(q)?;
        }
        for t in &tasks {
            txn.put(t)?;
        }
        if let Some(k) = token_key {
            txn.put(&ClientTokenRecord {
                key: k,
                request: req.clone(),
                task_arns: tasks.iter().map(|t| t.task_arn.clone()).collect(),
                failures: failures.clone(),
            })?;
        }
        Ok((tasks, failures, policy_failed))
    }

    /// StartTask: one task on each named instance, checked by the same
    /// rules as the engine's own placements (`place_on`).
    pub fn start_task(&self, req: StartTaskRequest) -> Result<TasksResponse, ControlError> {
        if req.container_instances.is_empty() || req.container_instances.len() > 10 {
            return Err(ControlError::invalid(
                "containerInstances",
                "give 1-10 container instances",
            ));
        }
        let td_ref = req
            .task_definition
            .clone()
            .ok_or_else(|| ControlError::invalid("taskDefinition", "is required"))?;
        check_started_by(req.started_by.as_deref())?;
        let _turn = self.placement_turn();
        let up = self.placing(|txn| -> Result<(Vec<Task>, Vec<Failure>), ControlError> {
            let cluster = self.active_cluster(txn, req.cluster.as_deref())?;
            let td = resolve(txn, &td_ref, "taskDefinition")?;
            if td.status != TaskDefinitionStatus::Active {
                return Err(ControlError::Client(format!(
                    "taskDefinition: `{td_ref}` is INACTIVE"
                )));
            }
            let group = req
                .group
                .clone()
                .unwrap_or_else(|| format!("family:{}", td.family));
            let spec = TaskSpec::from_definition(&td, req.overrides.as_ref(), group);
            let preq = PlacementRequest::compile(
                spec,
                &berth_core::placement::task_definition_constraints(&td),
                &[],
                &[],
            )?;
            let mut view = self.views.take(txn, &self.store, &cluster.cluster_arn)?;
            let new = NewTask {
                cluster_name: &cluster.cluster_name,
                cluster_arn: &cluster.cluster_arn,
                td: &td,
                spec: &preq.task,
                started_by: req.started_by.as_deref(),
                overrides: req.overrides.as_ref(),
                tags: &req.tags,
            };
            let mut tasks = Vec::new();
            let mut failures = Vec::new();
            for id in &req.container_instances {
                let arn = if id.starts_with("arn:") {
                    id.clone()
                } else {
                    self.arn
                        .container_instance(&cluster.cluster_name, arn::last_segment(id))
                };
                match view.place_on_arn(&preq, &arn) {
                    None => failures.push(Failure {
                        arn: Some(id.clone()),
                        reason: "MISSING".into(),
                        detail: None,
                    }),
                    Some(Ok(p)) => {
                        tasks.push(new.mint(&self.arn, Some(&arn), Some(&p.dynamic_host_ports)))
                    }
                    Some(Err(c)) => failures.push(Failure {
                        arn: Some(arn),
                        reason: c.reason().to_owned(),
                        detail: None,
                    }),
                }
            }
            self.views.lend(&cluster.cluster_arn, view);
            for t in &tasks {
                txn.put(t)?;
            }
            Ok((tasks, failures))
        })?;
        let (tasks, failures) = up.value;
        Ok(TasksResponse { tasks, failures })
    }

    /// StopTask: desired STOPPED (stopCode UserInitiated). Its resources are
    /// free for placement at once; a queued task stops on the spot.
    pub fn stop_task(&self, req: StopTaskRequest) -> Result<TaskResponse, ControlError> {
        let id = req
            .task
            .clone()
            .ok_or_else(|| ControlError::invalid("task", "is required"))?;
        if req.reason.as_ref().is_some_and(|r| r.len() > 255) {
            return Err(ControlError::invalid(
                "reason",
                "is longer than 255 characters",
            ));
        }
        let up = self.store.update(|txn| -> Result<Task, ControlError> {
            let cluster = self.active_cluster(txn, req.cluster.as_deref())?;
            let arn = self.task_arn_of(&cluster.cluster_name, &id);
            let mut task = txn
                .get::<Task>(&arn)?
                .map(|t| t.value)
                .filter(|t| t.cluster_arn == cluster.cluster_arn)
                .ok_or_else(|| {
                    ControlError::InvalidParameter(format!(
                        "task: `{id}` not found in cluster `{}`",
                        cluster.cluster_name
                    ))
                })?;
            if task.desired_status == DesiredStatus::Stopped {
                return Ok(task);
            }
            let t = now();
            task.desired_status = DesiredStatus::Stopped;
            task.stop_code = Some(StopCode::UserInitiated);
            task.stopped_reason = Some(
                req.reason
                    .clone()
                    .unwrap_or_else(|| "Task stopped by user".into()),
            );
            task.stopping_at = Some(t);
            task.version += 1;
            match task.container_instance_arn.clone() {
                None => {
                    task.last_status = TaskStatus::Stopped;
                    task.stopped_at = Some(t);
                    for c in &mut task.containers {
                        c.last_status = ContainerStatus::Stopped;
                    }
                    txn.delete::<QueuedTask>(&task.task_arn)?;
                    txn.put(&task)?;
                }
                Some(ci_arn) => {
                    txn.put(&task)?;
                    if let Some(ci) = txn.get::<ContainerInstance>(&ci_arn)? {
                        let mut ci = recount(txn, ci.value)?;
                        ci.version += 1;
                        txn.put(&ci)?;
                    }
                }
            }
            Ok(task)
        })?;
        Ok(TaskResponse { task: up.value })
    }

    /// DescribeTasks: up to 100; unknown ones come back as MISSING.
    pub fn describe_tasks(&self, req: DescribeTasksRequest) -> Result<TasksResponse, ControlError> {
        if req.tasks.is_empty() || req.tasks.len() > 100 {
            return Err(ControlError::invalid(
                "tasks",
                format!("{} tasks given; give 1-100", req.tasks.len()),
            ));
        }
        let mut txn = self.store.begin()?;
        let cluster = self.active_cluster(&mut txn, req.cluster.as_deref())?;
        let mut tasks = Vec::new();
        let mut failures = Vec::new();
        for id in &req.tasks {
            let arn = self.task_arn_of(&cluster.cluster_name, id);
            match txn
                .get::<Task>(&arn)?
                .filter(|t| t.value.cluster_arn == cluster.cluster_arn)
            {
                Some(t) => tasks.push(t.value),
                None => failures.push(Failure {
                    arn: Some(arn),
                    reason: "MISSING".into(),
                    detail: None,
                }),
            }
        }
        Ok(TasksResponse { tasks, failures })
    }

    /// ListTasks by instance, family, startedBy, service and desired status.
    pub fn list_tasks(&self, req: ListTasksRequest) -> Result<ListTasksResponse, ControlError> {
        let given = req.desired_status.as_deref().unwrap_or("RUNNING");
        // ECS's PENDING filter means desired RUNNING and not yet running.
        let pending_only = given == "PENDING";
        let desired = if pending_only {
            DesiredStatus::Running
        } else {
            given.parse::<DesiredStatus>().map_err(|_| {
                ControlError::invalid(
                    "desiredStatus",
                    format!("`{given}` is not one of RUNNING, PENDING, STOPPED"),
                )
            })?
        };
        let mut txn = self.store.begin()?;
        let cluster = self.active_cluster(&mut txn, req.cluster.as_deref())?;
        let candidates = match &req.container_instance {
            Some(ci) => {
                let arn = if ci.starts_with("arn:") {
                    ci.clone()
                } else {
                    self.arn
                        .container_instance(&cluster.cluster_name, arn::last_segment(ci))
                };
                if desired == DesiredStatus::Stopped {
                    // STOPPED tasks have left the instance index.
                    all_by_index(&txn, TASKS_BY_CLUSTER, &cluster.cluster_arn)?
                        .into_iter()
                        .filter(|t| t.value.container_instance_arn.as_deref() == Some(arn.as_str()))
                        .collect()
                } else {
                    all_by_index(&txn, TASKS_BY_INSTANCE, &arn)?
                }
            }
            None => all_by_index(&txn, TASKS_BY_CLUSTER, &cluster.cluster_arn)?,
        };
        let service_group = req
            .service_name
            .as_deref()
            .map(|s| format!("service:{}", arn::last_segment(s)));
        let items: Vec<(String, String)> = candidates
            .into_iter()
            .map(|t| t.value)
            .filter(|t| t.cluster_arn == cluster.cluster_arn)
            .filter(|t| {
                t.desired_status == desired
                    && (!pending_only || t.last_status == TaskStatus::Pending)
            })
            .filter(|t| {
                req.family.as_deref().is_none_or(|f| {
                    arn::task_definition_ref(&t.task_definition_arn).is_ok_and(|(fam, _)| fam == f)
                })
            })
            .filter(|t| {
                req.started_by
                    .as_deref()
                    .is_none_or(|s| t.started_by.as_deref() == Some(s))
            })
            .filter(|t| {
                service_group
                    .as_deref()
                    .is_none_or(|g| t.group.as_deref() == Some(g))
            })
            .map(|t| (t.task_arn.clone(), t.task_arn))
            .collect();
        let (task_arns, next_token) =
            paginate(items, req.next_token.as_deref(), req.max_results, false)?;
        Ok(ListTasksResponse {
            task_arns,
            next_token,
        })
    }

    /// The batch scheduler's pass: in every cluster, places queued tasks
    /// oldest first where capacity now allows (a task that still does not
    /// fit does not hold back smaller ones behind it). Returns how many it
    /// placed.
    pub fn place_queued(&self) -> Result<usize, ControlError> {
        let clusters: Vec<String> = {
            let txn = self.store.begin()?;
            let mut v: Vec<String> = super::collect_pages(|p| txn.list::<QueuedTask>(p))?
                .into_iter()
                .map(|q| q.value.cluster_arn)
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let mut placed = 0;
        for cluster_arn in clusters {
            let _turn = self.placement_turn();
            let up = self.placing(|txn| -> Result<usize, ControlError> {
                let mut queued: Vec<QueuedTask> =
                    all_by_index(txn, QUEUED_BY_CLUSTER, &cluster_arn)?.into_iter().map(|q| q.value).collect();
                queued.sort_by(|a, b| a.created_at.total_cmp(&b.created_at).then_with(|| a.task_arn.cmp(&b.task_arn)));
                // The oldest that one transaction may write; placing them
                // wakes the next pass for the rest.
                queued.truncate(self.store.records_per_txn());
                let mut view = self.views.take(txn, &self.store, &cluster_arn)?;
                let mut n = 0;
                for q in queued {
                    let task = txn.get::<Task>(&q.task_arn)?.map(|t| t.value);
                    let Some(mut task) = task.filter(|t| t.desired_status == DesiredStatus::Running && t.container_instance_arn.is_none()) else {
                        txn.delete::<QueuedTask>(&q.task_arn)?;
                        continue;
                    };
                    let td = match resolve(txn, &task.task_definition_arn, "taskDefinition") {
                        Ok(td) => td,
                        Err(e) => {
                            tracing::warn!(task = %task.task_arn, error = %e, "queued task's definition is gone");
                            continue;
                        }
                    };
                    let spec = TaskSpec::from_definition(&td, task.overrides.as_ref(), task.group.clone().unwrap_or_default());
                    let preq = match PlacementRequest::compile(spec, &berth_core::placement::task_definition_constraints(&td), &q.placement_constraints, &q.placement_strategy) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(task = %task.task_arn, error = %e, "queued task's placement no longer compiles");
                            continue;
                        }
                    };
                    // The policy the RunTask call named (its tag), else the cluster's.
                    let policy = match self.policy_for(arn::cluster_name(&cluster_arn), None, &task.tags) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(task = %task.task_arn, error = %e, "queued task's policy is gone; placing natively");
                            None
                        }
                    };
                    let (mut answers, failed) = self.decide(&mut view, &policy, &preq, 1);
                    if let Some(f) = &failed {
                        self.note_policy_failure(f, Some(&task.task_arn));
                    }
                    let Some(Ok(p)) = answers.pop() else { continue };
                    if let Some(f) = &failed {
                        f.mark(&mut task);
                    }
                    let ci_arn = view.instances[p.instance].container_instance_arn.clone();
                    let cluster_name = arn::cluster_name(&cluster_arn).to_owned();
                    let task_id = arn::last_segment(&task.task_arn).to_owned();
                    task.containers = containers_for(&self.arn, &cluster_name, &task_id, &td, Some(&p.dynamic_host_ports));
                    task.container_instance_arn = Some(ci_arn);
                    task.version += 1;
                    txn.put(&task)?;
                    txn.delete::<QueuedTask>(&q.task_arn)?;
                    n += 1;
                }
                self.views.lend(&cluster_arn, view);
                Ok(n)
            })?;
            placed += up.value;
        }
        Ok(placed)
    }
}

/// The oldest queued RunTasks whose tasks, together, one transaction may
/// write (`records_per_txn`); at least one, whatever its count.
fn take_fitting(
    queue: &mut Vec<(RunTaskRequest, RunReply)>,
    records: usize,
) -> Vec<(RunTaskRequest, RunReply)> {
    let mut tasks = 0usize;
    let mut n = 0;
    for (req, _) in queue.iter() {
        let count = usize::try_from(req.count.unwrap_or(1).max(1)).unwrap_or(1);
        if n > 0 && tasks + count > records {
            break;
        }
        tasks += count;
        n += 1;
    }
    queue.drain(..n).collect()
}
