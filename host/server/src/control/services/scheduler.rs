//! The service scheduler's pass: per service, one placing transaction that
//! reads what the reconciler needs, asks [`reconcile::plan`] for a step, and
//! applies it: the stops, the starts through RunTask's placement (StartTask's
//! for DAEMON), then the service and the scheduler's memory as
//! [`reconcile::Plan::finish`] says. The store is read and written here only.

use std::collections::{BTreeMap, BTreeSet};

use berth_core::model::{ContainerInstance, Service, Task};
use berth_core::placement::Check;
use berth_core::reconcile::{self, Input, Instance, Placed, STOP_CODE, Starts, Stop, Unplaced};
use berth_core::status::{DesiredStatus, InstanceStatus, ServiceStatus, TaskStatus};
use berth_store::Txn;
use berth_store::tables::{INSTANCES_BY_CLUSTER, TASKS_BY_GROUP, in_cluster};

use super::super::tasks::{NotStarted, recount};
use super::super::types::RunTaskRequest;
use super::super::{Control, ControlError, all_by_index, now};
use super::{ServiceState, group_of, push_event};

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

impl Control {
    /// The service scheduler's pass over every ACTIVE or DRAINING service.
    pub fn services_pass(&self) -> Result<PassStats, ControlError> {
        let arns: Vec<String> = {
            let txn = self.store.begin()?;
            super::super::collect_pages(|p| txn.list::<Service>(p))?
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

    /// One step of a service: read, reconcile, apply. The tasks started
    /// and stopped.
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
        let orig_state = txn
            .get::<ServiceState>(service_arn)?
            .map(|v| v.value)
            .unwrap_or_else(|| ServiceState::new(service_arn.to_owned()));
        let t = now();
        let group = in_cluster(&orig.cluster_arn, &group_of(&orig.service_name));
        let tasks: Vec<Task> = all_by_index(txn, TASKS_BY_GROUP, &group)?
            .into_iter()
            .map(|v| v.value)
            .collect();
        let instances: Vec<Instance> = all_by_index(txn, INSTANCES_BY_CLUSTER, &orig.cluster_arn)?
            .into_iter()
            .map(|c| Instance {
                active: c.value.status == InstanceStatus::Active,
                arn: c.value.container_instance_arn,
            })
            .collect();
        let plan = reconcile::plan(&Input {
            service: &orig,
            state: &orig_state,
            tasks: &tasks,
            instances: &instances,
            now: t,
        });
        stop_tasks(txn, &tasks, &plan.stops, t)?;
        let (placed, policy_events) = self.place(txn, &plan.service, &plan.starts)?;
        let step = plan.finish(&placed);
        let mut s = step.service;
        for m in step.events {
            push_event(&mut s, m);
        }
        // A policy failing pass after pass (fallback pending) alternates
        // with the step's own event: the same news among the newest few
        // is not news, and would rewrite the service every second.
        for m in policy_events {
            if !s.events.iter().take(3).any(|e| e.message == m) {
                push_event(&mut s, m);
            }
        }
        if s != orig {
            txn.put(&s)?;
        }
        let state = ServiceState(step.state);
        if state != orig_state {
            txn.put(&state)?;
        }
        Ok((step.started, step.stopped))
    }

    /// Starts a plan's tasks; what placement did, for [`reconcile::Plan::finish`],
    /// and the events of a placement policy that failed (what its fallback did).
    fn place(
        &self,
        txn: &mut Txn,
        s: &Service,
        starts: &Starts,
    ) -> Result<(Placed, Vec<String>), ControlError> {
        let mut placed = Placed::default();
        let mut events = Vec::new();
        let request = |deployment_id: &String, task_definition: &String| RunTaskRequest {
            task_definition: Some(task_definition.clone()),
            group: Some(group_of(&s.service_name)),
            started_by: Some(deployment_id.clone()),
            placement_constraints: s.placement_constraints.clone(),
            ..RunTaskRequest::default()
        };
        match starts {
            Starts::None => {}
            Starts::Daemon {
                deployment_id,
                task_definition,
                instances,
            } => {
                let req = request(deployment_id, task_definition);
                for ci in instances {
                    match self.start_on_in_txn(txn, &s.cluster_arn, ci, &req)? {
                        Ok(x) => placed.started.push(x.task_arn),
                        // Not for this instance: DAEMON follows the constraints.
                        Err(NotStarted::Unfit(Check::Attribute)) => placed.ineligible += 1,
                        Err(reason) => placed.unplaced.push(Unplaced::OnInstance {
                            instance: ci.clone(),
                            reason: reason.to_string(),
                        }),
                    }
                }
            }
            Starts::Replica {
                deployment_id,
                task_definition,
                count,
            } => {
                // What one transaction may write (etcd's limit); the next
                // pass starts the rest.
                let mut left =
                    (*count).min(u32::try_from(self.store.records_per_txn()).unwrap_or(u32::MAX));
                while left > 0 {
                    let n = left.min(10);
                    left -= n;
                    let req = RunTaskRequest {
                        cluster: Some(s.cluster_arn.clone()),
                        count: Some(i64::from(n)),
                        placement_strategy: s.placement_strategy.clone(),
                        launch_type: Some("EC2".into()),
                        ..request(deployment_id, task_definition)
                    };
                    match self.run_in(txn, &req, Some(&s.service_name)) {
                        Ok((tasks, failures, policy_failed)) => {
                            if let Some(f) = policy_failed {
                                events.push(f.event(&s.service_name, tasks.len(), failures.len()));
                            }
                            placed.started.extend(tasks.into_iter().map(|x| x.task_arn));
                            if let Some(f) = failures.first() {
                                placed.unplaced.push(Unplaced::NoInstance {
                                    reason: f.reason.clone(),
                                });
                                break;
                            }
                        }
                        Err(e @ ControlError::Server(_)) => return Err(e),
                        Err(e) => {
                            placed.unplaced.push(Unplaced::Failed {
                                error: e.to_string(),
                            });
                            break;
                        }
                    }
                }
            }
        }
        Ok((placed, events))
    }
}

/// Marks a plan's stops on their tasks (the scheduler's own stops, counted
/// already), and recounts the instances they were on.
fn stop_tasks(txn: &mut Txn, tasks: &[Task], stops: &[Stop], t: f64) -> Result<(), ControlError> {
    let by_arn: BTreeMap<&str, &Task> = tasks.iter().map(|x| (x.task_arn.as_str(), x)).collect();
    let mut touched = BTreeSet::new();
    for stop in stops {
        let Some(x) = by_arn.get(stop.task_arn.as_str()) else {
            continue;
        };
        let mut x = (*x).clone();
        x.desired_status = DesiredStatus::Stopped;
        x.stop_code = Some(STOP_CODE);
        x.stopped_reason = Some(stop.reason.clone());
        x.stopping_at = Some(t);
        x.version += 1;
        if x.container_instance_arn.is_none() {
            x.last_status = TaskStatus::Stopped;
            x.stopped_at = Some(t);
        }
        if let Some(ci) = &x.container_instance_arn {
            touched.insert(ci.clone());
        }
        txn.put(&x)?;
    }
    for ci in touched {
        if let Some(c) = txn.get::<ContainerInstance>(&ci)? {
            let mut c = recount(txn, c.value)?;
            c.version += 1;
            txn.put(&c)?;
        }
    }
    Ok(())
}
