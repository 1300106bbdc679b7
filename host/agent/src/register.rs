//! Registering this host as a container instance, and keeping the instance's
//! counts and remaining resources right.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use berth_core::model::{
    Attribute, Cluster, ClusterStatus, ContainerInstance, DesiredStatus, InstanceStatus, Protocol,
    Resource, Task, TaskDefinition, TaskStatus, VersionInfo,
};
use berth_core::placement::TaskSpec;
use berth_store::tables::{TASKS_BY_INSTANCE, task_definition_key};
use berth_store::{PageRequest, StoreError, Txn};
use bollard::Docker;

use crate::{AgentError, Inner, now};

const ID_FILE: &str = "agent-instance-id";

/// Where agent `index` keeps its instance id (the first agent's file keeps
/// its historical name).
pub(crate) fn id_file(data_dir: &Path, index: u32) -> std::path::PathBuf {
    if index == 0 {
        data_dir.join(ID_FILE)
    } else {
        data_dir.join(format!("{ID_FILE}-{index}"))
    }
}

/// The stable instance id of agent `index` kept in `data_dir`, created on first use.
pub(crate) fn instance_id(data_dir: &Path, index: u32) -> Result<String, AgentError> {
    let path = id_file(data_dir, index);
    let err = |source| AgentError::InstanceId {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::create_dir_all(data_dir).map_err(err)?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(&path, format!("{id}\n")).map_err(err)?;
    Ok(id)
}

/// Creates cluster `name` (ACTIVE) unless it exists; idempotent, so `berth up`
/// and the API may both call it.
pub fn ensure_cluster(
    store: &berth_store::Store,
    arn: &berth_core::arn::ArnContext,
    name: &str,
) -> Result<(), AgentError> {
    store.update(|txn| -> Result<(), StoreError> {
        if txn.get::<Cluster>(name)?.is_none() {
            txn.put(&Cluster {
                cluster_arn: arn.cluster(name),
                cluster_name: name.to_owned(),
                status: ClusterStatus::Active,
                registered_container_instances_count: 0,
                running_tasks_count: 0,
                pending_tasks_count: 0,
                active_services_count: 0,
                tags: Vec::new(),
            })?;
        }
        Ok(())
    })?;
    Ok(())
}

fn attr(name: &str, value: &str) -> Attribute {
    Attribute {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        target_type: None,
        target_id: None,
    }
}

/// Writes (or refreshes) this host's ContainerInstance from what Docker reports.
pub(crate) async fn register(inner: &Inner, docker: &Docker) -> Result<(), AgentError> {
    let info = docker.info().await?;
    let version = docker.version().await?;
    let cfg = &inner.cfg;
    // Agents sharing one daemon split its CPU and memory between them.
    let share = i64::from(cfg.share.max(1));
    let cpu = (info.ncpu.unwrap_or(1).max(1) * 1024) / share;
    let mem = (info.mem_total.unwrap_or(0) / (1024 * 1024) - cfg.memory_reserve_mib).max(0) / share;
    let ports: Vec<String> = cfg.reserved_ports.iter().map(|p| p.to_string()).collect();
    let registered = vec![
        Resource::integer("CPU", cpu),
        Resource::integer("MEMORY", mem),
        Resource::string_set("PORTS", ports),
        Resource::string_set("PORTS_UDP", Vec::new()),
    ];
    let arch = match info.architecture.as_deref() {
        Some("x86_64") | None => "x86_64".to_owned(),
        Some("aarch64") => "arm64".to_owned(),
        Some(a) => a.to_owned(),
    };
    let ecs_attrs = [
        attr("ecs.os-type", info.os_type.as_deref().unwrap_or("linux")),
        attr("ecs.cpu-architecture", &arch),
        attr("ecs.availability-zone", &cfg.availability_zone),
        attr("ecs.instance-type", &cfg.instance_type),
    ];
    let version_info = VersionInfo {
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        agent_hash: None,
        docker_version: version.version.clone().or(info.server_version.clone()),
    };
    ensure_cluster(&inner.store, &cfg.arn, &cfg.cluster)?;
    inner.store.update(|txn| -> Result<(), StoreError> {
        let existing = txn.get::<ContainerInstance>(&inner.instance_arn)?;
        let mut ci = match existing {
            Some(v) => v.value,
            None => {
                // A new instance of the cluster: count it.
                if let Some(mut c) = txn.get::<Cluster>(&cfg.cluster)? {
                    c.value.registered_container_instances_count += 1;
                    txn.put(&c.value)?;
                }
                ContainerInstance {
                    container_instance_arn: inner.instance_arn.clone(),
                    ec2_instance_id: inner.instance_id.clone(),
                    status: InstanceStatus::Active,
                    agent_connected: true,
                    running_tasks_count: 0,
                    pending_tasks_count: 0,
                    registered_resources: Vec::new(),
                    remaining_resources: Vec::new(),
                    attributes: Vec::new(),
                    registered_at: Some(now()),
                    version_info: None,
                    version: 0,
                }
            }
        };
        ci.agent_connected = true;
        ci.registered_resources = registered.clone();
        // Keep custom attributes; refresh berth's own.
        ci.attributes
            .retain(|a| !ecs_attrs.iter().any(|e| e.name == a.name));
        ci.attributes.extend(ecs_attrs.iter().cloned());
        ci.version_info = Some(version_info.clone());
        recompute(txn, &mut ci)?;
        ci.version += 1;
        txn.put(&ci)?;
        Ok(())
    })?;
    Ok(())
}

/// Marks the instance `agentConnected: false`. An instance never registered
/// (Docker has not answered since the first start) is recorded with no
/// resources, so operators see the host and why it takes no tasks.
pub(crate) fn set_disconnected(inner: &Inner) -> Result<(), AgentError> {
    ensure_cluster(&inner.store, &inner.cfg.arn, &inner.cfg.cluster)?;
    inner.store.update(|txn| -> Result<(), StoreError> {
        match txn.get::<ContainerInstance>(&inner.instance_arn)? {
            Some(mut ci) if ci.value.agent_connected => {
                ci.value.agent_connected = false;
                ci.value.version += 1;
                txn.put(&ci.value)?;
            }
            Some(_) => {}
            None => {
                if let Some(mut c) = txn.get::<Cluster>(&inner.cfg.cluster)? {
                    c.value.registered_container_instances_count += 1;
                    txn.put(&c.value)?;
                }
                let none = vec![Resource::integer("CPU", 0), Resource::integer("MEMORY", 0)];
                txn.put(&ContainerInstance {
                    container_instance_arn: inner.instance_arn.clone(),
                    ec2_instance_id: inner.instance_id.clone(),
                    status: InstanceStatus::Active,
                    agent_connected: false,
                    running_tasks_count: 0,
                    pending_tasks_count: 0,
                    registered_resources: none.clone(),
                    remaining_resources: none,
                    attributes: vec![
                        attr("ecs.availability-zone", &inner.cfg.availability_zone),
                        attr("ecs.instance-type", &inner.cfg.instance_type),
                    ],
                    registered_at: Some(now()),
                    version_info: Some(VersionInfo {
                        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                        ..Default::default()
                    }),
                    version: 1,
                })?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// Every task assigned to `instance_arn`, from the `instance` index.
/// Deregisters an instance whose agent is not run any more (`berth up`
/// with fewer `--instances` than before) and forgets its id, unless it
/// still holds tasks not yet STOPPED: then nothing changes and their count
/// comes back, since their containers may still run and only that agent
/// would stop them.
pub(crate) fn retire(inner: &Inner) -> Result<usize, AgentError> {
    let busy = inner
        .store
        .update(|txn| -> Result<usize, StoreError> {
            let busy = tasks_of(txn, &inner.instance_arn)?
                .iter()
                .filter(|t| t.last_status != TaskStatus::Stopped)
                .count();
            if busy > 0 {
                return Ok(busy);
            }
            if let Some(mut ci) = txn.get::<ContainerInstance>(&inner.instance_arn)?
                && ci.value.status != InstanceStatus::Inactive
            {
                ci.value.status = InstanceStatus::Inactive;
                ci.value.agent_connected = false;
                ci.value.running_tasks_count = 0;
                ci.value.pending_tasks_count = 0;
                ci.value.remaining_resources = ci.value.registered_resources.clone();
                ci.value.version += 1;
                txn.put(&ci.value)?;
            }
            Ok(0)
        })?
        .value;
    if busy == 0 {
        let path = id_file(&inner.cfg.data_dir, inner.cfg.index);
        if let Err(source) = std::fs::remove_file(&path)
            && source.kind() != std::io::ErrorKind::NotFound
        {
            return Err(AgentError::InstanceId { path, source });
        }
    }
    Ok(busy)
}

pub(crate) fn tasks_of(txn: &Txn, instance_arn: &str) -> Result<Vec<Task>, StoreError> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(500);
    loop {
        let p = txn.by_index(TASKS_BY_INSTANCE, instance_arn, page)?;
        out.extend(p.items.into_iter().map(|v| v.value));
        match p.next_token {
            Some(t) => {
                page = PageRequest {
                    token: Some(t),
                    limit: 500,
                }
            }
            None => return Ok(out),
        }
    }
}

/// CPU units, memory MiB and static host ports of one task.
type Demand = (i64, i64, Vec<(u16, Protocol)>);

/// What a task holds: its own `cpu`/`memory` when set, else what placement
/// computes from its task definition.
fn demand(
    txn: &mut Txn,
    task: &Task,
    cache: &mut HashMap<String, Demand>,
) -> Result<Demand, StoreError> {
    let (mut cpu, mut mem, mut ports) = (0, 0, Vec::new());
    if let Some(d) = cache.get(&task.task_definition_arn) {
        (cpu, mem, ports) = d.clone();
    } else if let Some((family, rev)) = task_definition_family_revision(&task.task_definition_arn)
        && let Some(td) = txn.get::<TaskDefinition>(&task_definition_key(family, rev))?
    {
        let spec = TaskSpec::from_definition(&td.value, task.overrides.as_ref(), "");
        (cpu, mem, ports) = (
            i64::from(spec.cpu),
            i64::from(spec.memory),
            spec.static_ports,
        );
        cache.insert(task.task_definition_arn.clone(), (cpu, mem, ports.clone()));
    }
    if let Some(c) = task
        .cpu
        .as_deref()
        .and_then(|c| c.trim().parse::<i64>().ok())
    {
        cpu = c;
    }
    if let Some(m) = task
        .memory
        .as_deref()
        .and_then(|m| m.trim().parse::<i64>().ok())
    {
        mem = m;
    }
    Ok((cpu, mem, ports))
}

/// `(family, revision)` of a task definition ARN (`...:task-definition/web:3`).
pub(crate) fn task_definition_family_revision(arn: &str) -> Option<(&str, u32)> {
    let rest = berth_core::arn::resource_of(arn);
    let rest = rest.strip_prefix("task-definition/").unwrap_or(rest);
    let (family, rev) = rest.rsplit_once(':')?;
    Some((family, rev.parse().ok()?))
}

/// Sets the instance's task counts and remaining resources from the tasks
/// assigned to it: registered less what every task meant to run holds.
/// Recomputing (rather than adding and subtracting) keeps it right whatever
/// order the control layer and the agent write in; the caller's CAS on the
/// instance record makes it safe against concurrent placements.
pub(crate) fn recompute(txn: &mut Txn, ci: &mut ContainerInstance) -> Result<(), StoreError> {
    let tasks = tasks_of(txn, &ci.container_instance_arn)?;
    let reg = |name: &str| {
        ci.registered_resources
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.integer_value)
            .unwrap_or(0)
    };
    let (mut cpu, mut mem) = (reg("CPU"), reg("MEMORY"));
    let reg_set = |name: &str| -> BTreeSet<u32> {
        ci.registered_resources
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.string_set_value.as_ref())
            .map(|v| v.iter().filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default()
    };
    let (mut tcp, mut udp) = (reg_set("PORTS"), reg_set("PORTS_UDP"));
    let (mut running, mut pending) = (0u32, 0u32);
    let mut cache = HashMap::new();
    // As the control layer counts (control/instances.rs `tasks_on`): a task
    // holds its resources while its desired status is RUNNING, so StopTask
    // frees them at once; the two must agree or they would overwrite each other.
    for t in tasks
        .iter()
        .filter(|t| t.desired_status == DesiredStatus::Running)
    {
        if t.last_status == TaskStatus::Running {
            running += 1;
        } else {
            pending += 1;
        }
        let (c, m, statics) = demand(txn, t, &mut cache)?;
        cpu -= c;
        mem -= m;
        for (p, proto) in statics {
            match proto {
                Protocol::Udp => udp.insert(u32::from(p)),
                _ => tcp.insert(u32::from(p)),
            };
        }
        for b in t.containers.iter().flat_map(|c| c.network_bindings.iter()) {
            match b.protocol {
                Some(Protocol::Udp) => udp.insert(b.host_port),
                _ => tcp.insert(b.host_port),
            };
        }
    }
    ci.running_tasks_count = running;
    ci.pending_tasks_count = pending;
    let set = |s: BTreeSet<u32>| s.into_iter().map(|p| p.to_string()).collect();
    ci.remaining_resources = vec![
        Resource::integer("CPU", cpu),
        Resource::integer("MEMORY", mem),
        Resource::string_set("PORTS", set(tcp)),
        Resource::string_set("PORTS_UDP", set(udp)),
    ];
    Ok(())
}

/// Re-reads this instance and recomputes it, inside `txn` (call after
/// putting the changed task in the same transaction).
pub(crate) fn refresh_instance(txn: &mut Txn, instance_arn: &str) -> Result<(), StoreError> {
    if let Some(mut ci) = txn.get::<ContainerInstance>(instance_arn)? {
        recompute(txn, &mut ci.value)?;
        ci.value.version += 1;
        txn.put(&ci.value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_and_revision_from_arn() {
        assert_eq!(
            task_definition_family_revision("arn:aws:ecs:local:000000000000:task-definition/web:3"),
            Some(("web", 3))
        );
        assert_eq!(task_definition_family_revision("web:12"), Some(("web", 12)));
        assert_eq!(task_definition_family_revision("web"), None);
    }

    #[test]
    fn instance_id_is_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = instance_id(dir.path(), 0).expect("first");
        let b = instance_id(dir.path(), 0).expect("second");
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        // Each further agent on the data directory has an id of its own, as stable.
        let c = instance_id(dir.path(), 1).expect("index 1");
        let d = instance_id(dir.path(), 2).expect("index 2");
        assert!(a != c && c != d && a != d, "{a} {c} {d}");
        assert_eq!(instance_id(dir.path(), 1).expect("index 1 again"), c);
        assert_eq!(instance_id(dir.path(), 0).expect("index 0 again"), a);
    }
}
