//! A control plane in memory for the agent's own tests: it plays the
//! control layer (places tasks, asks them to stop) and answers the agent
//! through the protocol, applying state changes and recomputing usage by
//! the protocol's and core's rules. The store-backed implementation is
//! covered by the server's tests and the end-to-end tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use berth_core::model::{ContainerInstance, Task, TaskDefinition};
use berth_core::placement::TaskSpec;
use berth_core::status::{DesiredStatus, InstanceStatus, StopCode, TaskStatus};
use berth_core::usage::apply_usage;
use berth_protocol::{
    AssignedTask, ControlPlane, Heartbeat, HeartbeatAck, ManifestRequest, ProtocolError,
    RegisterInstance, RetireAck, RetireInstance, StateChangeAck, TaskManifest, TaskStateChange,
    apply_task_state_change, new_instance, refresh_instance,
};

#[derive(Debug, Default)]
struct State {
    instances: HashMap<String, ContainerInstance>,
    tasks: BTreeMap<String, Task>,
    definitions: HashMap<String, TaskDefinition>,
}

impl State {
    /// Rewrites the instance's usage from its tasks, as every change to
    /// what it holds does.
    fn recount(&mut self, instance: &str) {
        let tasks: Vec<&Task> = self
            .tasks
            .values()
            .filter(|t| t.container_instance_arn.as_deref() == Some(instance))
            .collect();
        if let Some(ci) = self.instances.get_mut(instance) {
            apply_usage(ci, tasks);
            ci.version += 1;
        }
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct FakeControlPlane {
    state: Mutex<State>,
    /// How many more RUNNING reports to refuse, as a control plane that
    /// cannot write (or is killed before it answers) leaves them.
    refuse_running: AtomicU32,
}

impl FakeControlPlane {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses the next `n` reports of a task RUNNING.
    pub fn refuse_running_reports(&self, n: u32) {
        self.refuse_running.store(n, Ordering::SeqCst);
    }

    /// How many of the RUNNING reports to refuse are left.
    pub fn running_reports_to_refuse(&self) -> u32 {
        self.refuse_running.load(Ordering::SeqCst)
    }

    /// Places `task` (of `td`) on its instance, holding what the control
    /// layer's placement reserves: the definition's CPU and memory.
    pub fn place(&self, td: TaskDefinition, mut task: Task) {
        let spec = TaskSpec::from_definition(&td, task.overrides.as_ref(), "");
        task.cpu = Some(spec.cpu.to_string());
        task.memory = Some(spec.memory.to_string());
        let mut s = self.state();
        s.definitions.insert(td.task_definition_arn.clone(), td);
        let instance = task.container_instance_arn.clone().unwrap_or_default();
        s.tasks.insert(task.task_arn.clone(), task);
        s.recount(&instance);
    }

    /// StopTask: desired STOPPED.
    pub fn stop(&self, arn: &str) {
        let mut s = self.state();
        let t = s.tasks.get_mut(arn).expect("task");
        t.desired_status = DesiredStatus::Stopped;
        t.stop_code = Some(StopCode::UserInitiated);
        t.version += 1;
        let instance = t.container_instance_arn.clone().unwrap_or_default();
        s.recount(&instance);
    }

    /// Forgets task `arn`, as a control plane that replaced it and
    /// collected it would: it leaves the instance's manifest.
    pub fn forget(&self, arn: &str) {
        let mut s = self.state();
        let t = s.tasks.remove(arn).expect("task");
        let instance = t.container_instance_arn.unwrap_or_default();
        s.recount(&instance);
    }

    /// The task as recorded.
    pub fn task(&self, arn: &str) -> Task {
        self.state().tasks.get(arn).cloned().expect("task exists")
    }

    /// The instance as recorded.
    pub fn instance(&self, arn: &str) -> ContainerInstance {
        self.state().instances.get(arn).cloned().expect("instance")
    }
}

#[async_trait]
impl ControlPlane for FakeControlPlane {
    async fn register_instance(
        &self,
        req: RegisterInstance,
    ) -> Result<ContainerInstance, ProtocolError> {
        let mut s = self.state();
        let ci = match s.instances.remove(&req.container_instance_arn) {
            Some(mut ci) => {
                refresh_instance(&mut ci, &req);
                ci
            }
            None => new_instance(&req, 1.0),
        };
        s.instances.insert(req.container_instance_arn.clone(), ci);
        s.recount(&req.container_instance_arn);
        Ok(s.instances[&req.container_instance_arn].clone())
    }

    async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatAck, ProtocolError> {
        let mut s = self.state();
        let Some(ci) = s.instances.get_mut(&hb.container_instance_arn) else {
            return Ok(HeartbeatAck { registered: false });
        };
        ci.agent_connected = hb.agent_connected;
        Ok(HeartbeatAck { registered: true })
    }

    async fn retire_instance(&self, req: RetireInstance) -> Result<RetireAck, ProtocolError> {
        let mut s = self.state();
        let live = s
            .tasks
            .values()
            .filter(|t| t.container_instance_arn.as_deref() == Some(&req.container_instance_arn))
            .filter(|t| t.last_status != TaskStatus::Stopped)
            .count();
        if live == 0
            && let Some(ci) = s.instances.get_mut(&req.container_instance_arn)
        {
            ci.status = InstanceStatus::Inactive;
        }
        Ok(RetireAck {
            live_tasks: u32::try_from(live).unwrap_or(u32::MAX),
        })
    }

    async fn task_manifest(&self, req: ManifestRequest) -> Result<TaskManifest, ProtocolError> {
        let s = self.state();
        let tasks = s
            .tasks
            .values()
            .filter(|t| t.container_instance_arn.as_deref() == Some(&req.container_instance_arn))
            .map(|t| AssignedTask {
                task: t.clone(),
                task_definition: s.definitions.get(&t.task_definition_arn).cloned(),
                registry_credentials: Default::default(),
            })
            .collect();
        Ok(TaskManifest {
            sequence: s
                .instances
                .get(&req.container_instance_arn)
                .map_or(0, |ci| ci.version),
            container_instance_arn: req.container_instance_arn,
            tasks,
        })
    }

    async fn submit_task_state_change(
        &self,
        change: TaskStateChange,
    ) -> Result<StateChangeAck, ProtocolError> {
        if change.status == Some(TaskStatus::Running)
            && self
                .refuse_running
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(ProtocolError::Refused {
                message: "a RUNNING report refused by the test".to_owned(),
            });
        }
        let mut s = self.state();
        let Some(task) = s.tasks.get_mut(&change.task) else {
            return Ok(StateChangeAck {
                applied: false,
                task: None,
            });
        };
        let applied = apply_task_state_change(task, &change);
        let task = task.clone();
        if applied && let Some(instance) = &task.container_instance_arn {
            s.recount(instance);
        }
        Ok(StateChangeAck {
            applied,
            task: Some(task),
        })
    }
}
