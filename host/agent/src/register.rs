//! Registering this host as a container instance through the protocol,
//! reporting it disconnected, and retiring it.

use std::path::Path;

use berth_core::model::{Resource, VersionInfo};
use berth_protocol::{Heartbeat, HostFacts, RegisterInstance, RetireInstance, builtin_attributes};
use bollard::Docker;

use crate::{AgentError, Inner};

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

/// The registration of this instance, `connected` or not, offering `resources`.
fn registration(
    inner: &Inner,
    connected: bool,
    resources: Vec<Resource>,
    attributes: Vec<berth_core::model::Attribute>,
    version_info: VersionInfo,
) -> RegisterInstance {
    RegisterInstance {
        cluster: inner.cfg.cluster.clone(),
        container_instance_arn: inner.instance_arn.clone(),
        ec2_instance_id: inner.instance_id.clone(),
        agent_connected: connected,
        total_resources: resources,
        attributes,
        version_info,
    }
}

/// Registers (or refreshes) this host's instance from what Docker reports.
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
    let facts = HostFacts {
        os_type: info.os_type.clone().unwrap_or_else(|| "linux".to_owned()),
        cpu_architecture: info.architecture.clone().unwrap_or_default(),
        availability_zone: cfg.availability_zone.clone(),
        instance_type: cfg.instance_type.clone(),
    };
    let version_info = VersionInfo {
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        agent_hash: None,
        docker_version: version.version.clone().or(info.server_version.clone()),
    };
    let mut attributes = builtin_attributes(&facts);
    if cfg.allow_privileged {
        attributes.push(berth_core::model::Attribute {
            name: berth_core::model::PRIVILEGED_CAPABILITY.to_owned(),
            value: None,
            target_type: None,
            target_id: None,
        });
    }
    attributes.extend(cfg.attributes.iter().cloned());
    let req = registration(inner, true, registered, attributes, version_info);
    inner.plane.register_instance(req).await?;
    Ok(())
}

/// Marks the instance `agentConnected: false`. An instance never registered
/// (Docker has not answered since the first start) is registered with no
/// resources, so operators see the host and why it takes no tasks.
pub(crate) async fn set_disconnected(inner: &Inner) -> Result<(), AgentError> {
    let hb = Heartbeat {
        cluster: inner.cfg.cluster.clone(),
        container_instance_arn: inner.instance_arn.clone(),
        agent_connected: false,
    };
    if inner.plane.heartbeat(hb).await?.registered {
        return Ok(());
    }
    // Without Docker, only what the configuration says of the host.
    let mut attributes: Vec<_> = builtin_attributes(&HostFacts {
        availability_zone: inner.cfg.availability_zone.clone(),
        instance_type: inner.cfg.instance_type.clone(),
        ..HostFacts::assumed()
    })
    .into_iter()
    .filter(|a| {
        matches!(
            a.name.as_str(),
            "ecs.availability-zone" | "ecs.instance-type"
        )
    })
    .collect();
    attributes.extend(inner.cfg.attributes.iter().cloned());
    let none = vec![Resource::integer("CPU", 0), Resource::integer("MEMORY", 0)];
    let version_info = VersionInfo {
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        ..Default::default()
    };
    let req = registration(inner, false, none, attributes, version_info);
    inner.plane.register_instance(req).await?;
    Ok(())
}

/// Deregisters an instance whose agent is not run any more (`berth up`
/// with fewer `--instances` than before) and forgets its id, unless it
/// still holds tasks not yet STOPPED: then nothing changes and their count
/// comes back, since their containers may still run and only that agent
/// would stop them.
pub(crate) async fn retire(inner: &Inner) -> Result<u32, AgentError> {
    let req = RetireInstance {
        cluster: inner.cfg.cluster.clone(),
        container_instance_arn: inner.instance_arn.clone(),
    };
    let busy = inner.plane.retire_instance(req).await?.live_tasks;
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

#[cfg(test)]
mod tests {
    use super::*;

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
