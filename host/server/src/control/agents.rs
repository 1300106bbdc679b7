//! The agent protocol served in-process: [`LocalControlPlane`] implements
//! `berth_protocol::ControlPlane` over the store for the agents `berth up`
//! runs, and [`AgentLogReaders`] holds the log-read side of those agents,
//! by instance, for GetTaskLogs.
//!
//! Every write is a CAS transaction, and every change to what an instance
//! holds rewrites the instance record in the same transaction (placement's
//! views rely on it, see view.rs): a task state change recomputes its
//! instance's usage (`berth_core::usage`) and bumps the record's version,
//! which is also the manifest's sequence number.
//!
//! Every message of an agent is hearing from it ([`Liveness::heard`]); the
//! first after this server started, and the first after it was judged
//! lost, also writes its presence back (`liveness::come_back`) in the
//! message's own transaction, or in one of its own for the read-only
//! manifest.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::arn::{self, ArnContext};
use berth_core::model::{ContainerInstance, Task, TaskDefinition};
use berth_core::status::{DesiredStatus, InstanceStatus, TaskStatus};
use berth_protocol::{
    AssignedTask, ControlPlane, Heartbeat, HeartbeatAck, ManifestRequest, ProtocolError,
    RegisterInstance, RegistryCredential, RetireAck, RetireInstance, StateChangeAck,
    StateChangesAck, TaskLogReader, TaskManifest, TaskStateChange, TaskStateChanges,
    apply_task_state_change,
};
use berth_store::tables::{TASKS_BY_INSTANCE, task_definition_key};
use berth_store::{Store, Txn};

use super::instances::put_registration;
use super::liveness::{Liveness, come_back};
pub use super::remote_logs::RemoteLogReader;
use super::tasks::recount;
use super::{ControlError, all_by_index};

/// The registry credentials a task yet to start pulls with, by name (only
/// then: a running task's manifest carries no passwords). A name with no
/// stored secret is left out; the agent fails the task naming it.
fn credentials_to_pull(
    txn: &mut Txn,
    task: &Task,
    td: Option<&TaskDefinition>,
) -> Result<BTreeMap<String, RegistryCredential>, ControlError> {
    let mut out = BTreeMap::new();
    if task.last_status != TaskStatus::Pending || task.desired_status != DesiredStatus::Running {
        return Ok(out);
    }
    let names = td
        .iter()
        .flat_map(|td| &td.container_definitions)
        .filter_map(|d| d.repository_credentials.as_ref())
        .map(|rc| rc.credentials_parameter.as_str());
    for name in names {
        if !out.contains_key(name)
            && let Some(cred) = super::secrets::registry_credential(txn, name)?
        {
            out.insert(name.to_owned(), cred);
        }
    }
    Ok(out)
}

impl From<ControlError> for ProtocolError {
    fn from(e: ControlError) -> Self {
        if e.is_server() {
            ProtocolError::Unavailable {
                message: e.to_string(),
            }
        } else {
            ProtocolError::Refused {
                message: e.to_string(),
            }
        }
    }
}

/// How long a manifest long poll waits for a change before it answers
/// with the manifest as it is (under the agent's HTTP timeout, and short
/// enough that a poll outlives few proxies' idle limits).
pub const MANIFEST_WAIT: Duration = Duration::from_secs(20);

/// The control plane of the agents of this process (and of remote agents,
/// through the API's agent endpoints), over its store.
#[derive(Debug, Clone)]
pub struct LocalControlPlane {
    store: Arc<Store>,
    arn: ArnContext,
    /// Who was heard from when; the server's liveness loop judges from it.
    liveness: Arc<Liveness>,
    manifest_wait: Duration,
}

impl LocalControlPlane {
    /// Serves agents from `store`, minting cluster ARNs with `arn`, with
    /// liveness of its own that no loop judges (see
    /// [`LocalControlPlane::with_liveness`]).
    pub fn new(store: Arc<Store>, arn: ArnContext) -> Self {
        LocalControlPlane {
            store,
            arn,
            liveness: Arc::new(Liveness::new(berth_core::liveness::Timing::default())),
            manifest_wait: MANIFEST_WAIT,
        }
    }

    /// Tells `liveness` (the one the server's liveness loop judges from)
    /// whenever an agent is heard from.
    pub fn with_liveness(mut self, liveness: Arc<Liveness>) -> Self {
        self.liveness = liveness;
        self
    }

    /// Whether the agent of `arn` may be recorded lost (see [`Liveness::heard`]).
    fn hear(&self, arn: &str) -> bool {
        self.liveness.heard(arn)
    }

    /// Makes manifest long polls wait at most `wait` (tests).
    #[cfg(test)]
    pub fn with_manifest_wait(mut self, wait: Duration) -> Self {
        self.manifest_wait = wait;
        self
    }

    /// The manifest once its sequence number differs from `known` (at once
    /// when it does already), or as it is after the long-poll wait. Woken
    /// by the store's watch of instance records: every change to what an
    /// instance holds rewrites its record.
    async fn manifest_after(
        &self,
        req: &ManifestRequest,
        known: u64,
    ) -> Result<TaskManifest, ControlError> {
        let deadline = tokio::time::Instant::now() + self.manifest_wait;
        // Watched from before the read, so a change landing between the
        // read and the wait still wakes it. Only commits that rewrite this
        // instance's record wake it (not every commit, as a table watch
        // would: with thousands of agents polling that cost more than the
        // commits themselves).
        let mut watch = self
            .store
            .watch_record::<ContainerInstance>(&req.container_instance_arn);
        // The request is what is heard from the agent; the re-reads below
        // are not: the poll's connection may have died since (a host cut
        // off), and hearing them would keep a lost agent's tasks forever.
        let mut manifest = self.manifest(req)?;
        loop {
            if manifest.sequence != known {
                return Ok(manifest);
            }
            if tokio::time::timeout_at(deadline, watch.changed())
                .await
                .is_err()
            {
                // A change committed by another process sharing the store
                // wakes nothing here: read once more before answering.
                return self.read_manifest(req);
            }
            // Most rewrites of the record leave the sequence alone (a task
            // reported RUNNING moves only the counts): the tasks are read
            // only when it rose.
            if self.sequence(&req.container_instance_arn)? != known {
                manifest = self.read_manifest(req)?;
            }
        }
    }

    fn register(&self, req: &RegisterInstance) -> Result<ContainerInstance, ControlError> {
        let arn = &req.container_instance_arn;
        let maybe_lost = self.hear(arn);
        let up = self.store.update(|txn| {
            let ci = put_registration(txn, &self.arn, req, false)?;
            if maybe_lost {
                come_back(txn, arn, Some(req.agent_connected))?;
            }
            Ok::<_, ControlError>(ci)
        })?;
        self.liveness.came_back(arn);
        Ok(up.value)
    }

    fn heartbeat_sync(&self, hb: &Heartbeat) -> Result<HeartbeatAck, ControlError> {
        crate::metrics::heartbeat();
        let arn = &hb.container_instance_arn;
        let maybe_lost = self.hear(arn);
        let up = self.store.update(|txn| -> Result<bool, ControlError> {
            if maybe_lost {
                come_back(txn, arn, Some(hb.agent_connected))?;
            }
            let Some(ci) = txn.get::<ContainerInstance>(arn)? else {
                return Ok(false);
            };
            let mut ci = ci.value;
            if ci.agent_connected != hb.agent_connected {
                ci.agent_connected = hb.agent_connected;
                ci.version += 1;
                txn.put(&ci)?;
            }
            Ok(true)
        })?;
        if maybe_lost {
            self.liveness.came_back(arn);
        }
        Ok(HeartbeatAck {
            registered: up.value,
        })
    }

    /// The write of [`come_back`] for a message that writes nothing else.
    fn write_back(&self, arn: &str) -> Result<(), ControlError> {
        self.store.update(|txn| come_back(txn, arn, None))?;
        self.liveness.came_back(arn);
        Ok(())
    }

    fn retire(&self, req: &RetireInstance) -> Result<RetireAck, ControlError> {
        let up = self.store.update(|txn| -> Result<u32, ControlError> {
            let live = tasks_of(txn, &req.container_instance_arn)?
                .iter()
                .filter(|t| t.last_status != TaskStatus::Stopped)
                .count();
            if live > 0 {
                return Ok(u32::try_from(live).unwrap_or(u32::MAX));
            }
            if let Some(ci) = txn.get::<ContainerInstance>(&req.container_instance_arn)?
                && ci.value.status != InstanceStatus::Inactive
            {
                let mut ci = ci.value;
                super::instances::mark_inactive(&mut ci);
                txn.put(&ci)?;
            }
            Ok(0)
        })?;
        Ok(RetireAck {
            live_tasks: up.value,
        })
    }

    fn manifest(&self, req: &ManifestRequest) -> Result<TaskManifest, ControlError> {
        if self.hear(&req.container_instance_arn) {
            self.write_back(&req.container_instance_arn)?;
        }
        self.read_manifest(req)
    }

    /// The instance's manifest sequence number as stored (0: no such instance).
    fn sequence(&self, instance_arn: &str) -> Result<u64, ControlError> {
        Ok(self
            .store
            .begin()?
            .peek::<ContainerInstance>(instance_arn)?
            .map_or(0, |ci| ci.value.version))
    }

    /// The instance's manifest as stored, without hearing from its agent.
    fn read_manifest(&self, req: &ManifestRequest) -> Result<TaskManifest, ControlError> {
        let mut txn = self.store.begin()?;
        // Read in the same snapshot as the tasks: every change to them that
        // matters to the agent rewrote this record.
        let sequence = txn
            .get::<ContainerInstance>(&req.container_instance_arn)?
            .map_or(0, |ci| ci.value.version);
        let mut definitions: HashMap<String, Option<TaskDefinition>> = HashMap::new();
        let mut tasks = Vec::new();
        for task in tasks_of(&txn, &req.container_instance_arn)? {
            let td = match definitions.get(&task.task_definition_arn) {
                Some(td) => td.clone(),
                None => {
                    let td = definition(&mut txn, &task.task_definition_arn)?;
                    definitions.insert(task.task_definition_arn.clone(), td.clone());
                    td
                }
            };
            let registry_credentials = credentials_to_pull(&mut txn, &task, td.as_ref())?;
            tasks.push(AssignedTask {
                task,
                task_definition: td,
                registry_credentials,
            });
        }
        Ok(TaskManifest {
            container_instance_arn: req.container_instance_arn.clone(),
            sequence,
            tasks,
        })
    }

    fn submit(&self, change: &TaskStateChange) -> Result<StateChangeAck, ControlError> {
        let up = self
            .store
            .update(|txn| -> Result<StateChangeAck, ControlError> {
                let mut touched = Touched::new();
                let ack = apply_change(txn, change, &mut touched)?;
                for (instance, shift) in &touched {
                    refresh_instance(txn, instance, *shift)?;
                }
                Ok(ack)
            })?;
        // The change names the task, not the agent: the agent heard from
        // is the one of the task's instance.
        if let Some(instance) = up
            .value
            .task
            .as_ref()
            .and_then(|t| t.container_instance_arn.as_deref())
        {
            self.heard_by_change(instance)?;
        }
        Ok(up.value)
    }

    /// Applies a batch in one transaction, rewriting each touched instance
    /// once (a batch of 200 starts costs one recount, not 200).
    fn submit_batch(&self, batch: &TaskStateChanges) -> Result<StateChangesAck, ControlError> {
        let up = self
            .store
            .update(|txn| -> Result<(Vec<bool>, Touched), ControlError> {
                let mut touched = Touched::new();
                let mut applied = Vec::with_capacity(batch.changes.len());
                for change in &batch.changes {
                    applied.push(apply_change(txn, change, &mut touched)?.applied);
                }
                for (instance, shift) in &touched {
                    refresh_instance(txn, instance, *shift)?;
                }
                Ok((applied, touched))
            })?;
        let (applied, touched) = up.value;
        for instance in touched.keys() {
            self.heard_by_change(instance)?;
        }
        Ok(StateChangesAck { applied })
    }

    /// A state change of a task of `instance` is hearing from its agent.
    fn heard_by_change(&self, instance: &str) -> Result<(), ControlError> {
        if self.hear(instance) {
            self.write_back(instance)?;
        }
        Ok(())
    }
}

/// Applies `change` to its task in `txn`, adding the task's instance to
/// `touched` when it changed, with how its counts shift (None: recount);
/// the caller rewrites those instances.
fn apply_change(
    txn: &mut Txn,
    change: &TaskStateChange,
    touched: &mut Touched,
) -> Result<StateChangeAck, ControlError> {
    let Some(task) = txn.get::<Task>(&change.task)? else {
        return Ok(StateChangeAck {
            applied: false,
            task: None,
        });
    };
    let mut task = task.value;
    let before = task.clone();
    let applied = apply_task_state_change(&mut task, change);
    if applied {
        txn.put(&task)?;
        if let Some(instance) = &task.container_instance_arn {
            let shift = berth_core::usage::count_shift(&before, &task);
            let entry = touched.entry(instance.clone()).or_insert(Some((0, 0)));
            *entry = match (*entry, shift) {
                (Some((r, p)), Some((dr, dp))) => Some((r + dr, p + dp)),
                _ => None,
            };
        }
    }
    Ok(StateChangeAck {
        applied,
        task: Some(task),
    })
}

/// The instances a transaction's state changes touched, each with the
/// shift of its running and pending counts, or None when it must be
/// recounted from its tasks.
type Touched = BTreeMap<String, Option<(i64, i64)>>;

/// Every task assigned to `instance_arn` and not yet STOPPED (a STOPPED
/// task has left the instance index: its agent has nothing left to do with
/// it, and a manifest listing the instance's whole history grew with it).
pub(super) fn tasks_of(txn: &Txn, instance_arn: &str) -> Result<Vec<Task>, ControlError> {
    Ok(all_by_index(txn, TASKS_BY_INSTANCE, instance_arn)?
        .into_iter()
        .map(|v| v.value)
        .collect())
}

/// The task definition of ARN `td_arn` (`...:task-definition/web:3`).
fn definition(txn: &mut Txn, td_arn: &str) -> Result<Option<TaskDefinition>, ControlError> {
    let Ok((family, Some(revision))) = arn::task_definition_ref(td_arn) else {
        return Ok(None);
    };
    Ok(txn
        .get::<TaskDefinition>(&task_definition_key(family, revision))?
        .map(|v| v.value))
}

/// Rewrites the instance with its counts shifted by `shift` (running,
/// pending), or with its usage recomputed from its tasks in `txn` when
/// `shift` is None. Only the latter raises the manifest's sequence (the
/// record's `version`): a shift is the agent's own report of a start,
/// which it need not be told of, and thousands of agents each fetching
/// their manifest again after every report of theirs is what a fleet
/// cannot afford.
fn refresh_instance(
    txn: &mut Txn,
    instance_arn: &str,
    shift: Option<(i64, i64)>,
) -> Result<(), ControlError> {
    if let Some(ci) = txn.get::<ContainerInstance>(instance_arn)? {
        let ci = match shift {
            None => {
                let mut ci = recount(txn, ci.value)?;
                ci.version += 1;
                ci
            }
            Some((running, pending)) => {
                let mut ci = ci.value;
                let moved = |n: u32, d: i64| u32::try_from((i64::from(n) + d).max(0)).unwrap_or(n);
                ci.running_tasks_count = moved(ci.running_tasks_count, running);
                ci.pending_tasks_count = moved(ci.pending_tasks_count, pending);
                ci
            }
        };
        txn.put(&ci)?;
    }
    Ok(())
}

// The store calls are short and the agent made them inline before; they
// stay inline rather than on a blocking thread.
#[async_trait]
impl ControlPlane for LocalControlPlane {
    async fn register_instance(
        &self,
        req: RegisterInstance,
    ) -> Result<ContainerInstance, ProtocolError> {
        Ok(self.register(&req)?)
    }

    async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatAck, ProtocolError> {
        Ok(self.heartbeat_sync(&hb)?)
    }

    async fn retire_instance(&self, req: RetireInstance) -> Result<RetireAck, ProtocolError> {
        Ok(self.retire(&req)?)
    }

    async fn task_manifest(&self, req: ManifestRequest) -> Result<TaskManifest, ProtocolError> {
        match req.known_sequence {
            None => Ok(self.manifest(&req)?),
            Some(known) => Ok(self.manifest_after(&req, known).await?),
        }
    }

    async fn submit_task_state_change(
        &self,
        change: TaskStateChange,
    ) -> Result<StateChangeAck, ProtocolError> {
        Ok(self.submit(&change)?)
    }

    async fn submit_task_state_changes(
        &self,
        batch: TaskStateChanges,
    ) -> Result<StateChangesAck, ProtocolError> {
        Ok(self.submit_batch(&batch)?)
    }
}

/// The log-read side of the agents this server reaches, by instance ARN:
/// `berth up` registers each local agent's reader here; a remote agent's
/// reads are queued for it ([`RemoteLogReader`]) once it polls for them.
/// GetTaskLogs asks the reader of the task's instance.
#[derive(Debug, Default)]
pub struct AgentLogReaders {
    readers: RwLock<HashMap<String, Arc<dyn TaskLogReader>>>,
    remote: RwLock<HashMap<String, Arc<RemoteLogReader>>>,
}

impl AgentLogReaders {
    /// Makes `reader` answer for the tasks of `instance_arn`.
    pub fn register(&self, instance_arn: &str, reader: Arc<dyn TaskLogReader>) {
        self.readers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(instance_arn.to_owned(), reader);
    }

    /// The queue of reads of the remote agent of `instance_arn`, made at
    /// its first poll.
    pub fn remote(&self, instance_arn: &str) -> Arc<RemoteLogReader> {
        if let Some(r) = self
            .remote
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(instance_arn)
        {
            return Arc::clone(r);
        }
        let mut remote = self
            .remote
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            remote
                .entry(instance_arn.to_owned())
                .or_insert_with(|| Arc::new(RemoteLogReader::new(instance_arn))),
        )
    }

    /// The reader of the agent of `instance_arn`, if it reaches this server
    /// (in process, or over HTTP since it polled).
    pub fn get(&self, instance_arn: &str) -> Option<Arc<dyn TaskLogReader>> {
        if let Some(local) = self
            .readers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(instance_arn)
        {
            return Some(Arc::clone(local));
        }
        self.remote
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(instance_arn)
            .map(|r| Arc::clone(r) as Arc<dyn TaskLogReader>)
    }
}

#[cfg(test)]
mod tests;
