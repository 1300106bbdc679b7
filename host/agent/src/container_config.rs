//! From a container definition to Docker's create-container body: a pure
//! function ([`container_config`]), so every field's mapping is unit-tested
//! without a daemon.
//!
//! Limits, as ECS on EC2 sets them: container `memory` is the hard limit and
//! `memoryReservation` the soft one; container `cpu` is Docker CPU shares.
//! Task-level `memory` is the hard limit of each container that sets none
//! itself, and task-level `cpu` caps each container at that many CPUs
//! (NanoCPUs): Docker has no cgroup for a task, so the task's limits bound
//! every container, not their sum (placement reserves the sum).

use std::collections::HashMap;

use berth_core::model::{
    ContainerDefinition, LinuxParameters, NamespaceMode, NetworkBinding, NetworkMode, Protocol,
    Task, TaskDefinition, Volume, VolumeScope,
};
use berth_core::validate::{parse_task_cpu, parse_task_memory};
use bollard::models::{
    ContainerCreateBody, DeviceMapping, HealthConfig, HostConfig, HostConfigLogConfig, PortBinding,
    ResourcesUlimits,
};

use crate::{LABEL_CLUSTER, LABEL_CONTAINER_NAME, LABEL_INSTANCE, LABEL_TASK_ARN};

/// ECS's reason for a container the kernel killed at its memory limit.
pub(crate) const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";

/// What the mapping needs besides the container definition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskSpec<'a> {
    pub task: &'a Task,
    pub td: &'a TaskDefinition,
    pub instance_arn: &'a str,
    /// The container whose PID and IPC namespaces a task-mode task shares:
    /// the first one created.
    pub namespace_holder: &'a str,
}

/// The task's id (the last part of its ARN).
pub(crate) fn task_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

/// Docker's name for a task's container.
pub(crate) fn docker_name(task_arn: &str, name: &str) -> String {
    format!("berth-{}-{name}", task_id(task_arn))
}

/// Where a task volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VolumeSource {
    /// A host directory (`host.sourcePath`).
    Bind(String),
    /// A Docker volume of this name, removed with the task when `task_scoped`.
    Named { name: String, task_scoped: bool },
}

/// The source of task volume `v`: a bind mount of `host.sourcePath`, a shared
/// Docker volume under its own name, or a task-scoped Docker volume (also for
/// a volume with an empty `host`, as ECS gives it a Docker-managed directory).
pub(crate) fn volume_source(task_arn: &str, v: &Volume) -> VolumeSource {
    if let Some(src) = v
        .host
        .as_ref()
        .and_then(|h| h.source_path.as_deref())
        .filter(|s| !s.is_empty())
    {
        return VolumeSource::Bind(src.to_owned());
    }
    let shared = v
        .docker_volume_configuration
        .as_ref()
        .is_some_and(|c| c.scope == Some(VolumeScope::Shared));
    if shared {
        VolumeSource::Named {
            name: v.name.clone(),
            task_scoped: false,
        }
    } else {
        VolumeSource::Named {
            name: format!("berth-{}-{}", task_id(task_arn), v.name),
            task_scoped: true,
        }
    }
}

fn secs_to_ns(s: Option<u32>) -> Option<i64> {
    s.map(|s| i64::from(s) * 1_000_000_000)
}

fn mib(m: u32) -> i64 {
    i64::from(m) * 1024 * 1024
}

/// Docker's create body for container definition `d` of `spec`'s task.
pub(crate) fn container_config(
    spec: &TaskSpec<'_>,
    d: &ContainerDefinition,
) -> ContainerCreateBody {
    let (task, td) = (spec.task, spec.td);
    // The user's labels first, so berth's own (validation refuses berth.*) always win.
    let mut labels: HashMap<String, String> = d
        .docker_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_TASK_ARN.to_owned(), task.task_arn.clone());
    labels.insert(LABEL_CLUSTER.to_owned(), task.cluster_arn.clone());
    labels.insert(LABEL_CONTAINER_NAME.to_owned(), d.name.clone());
    labels.insert(LABEL_INSTANCE.to_owned(), spec.instance_arn.to_owned());
    let (exposed, bindings) = ports(task, td, d);
    let healthcheck = d.health_check.as_ref().map(|h| HealthConfig {
        test: Some(h.command.clone()),
        interval: secs_to_ns(h.interval),
        timeout: secs_to_ns(h.timeout),
        retries: h.retries.map(i64::from),
        start_period: secs_to_ns(h.start_period),
        ..Default::default()
    });
    let network_mode = match td.network_mode {
        NetworkMode::Bridge => "bridge",
        NetworkMode::Host => "host",
        NetworkMode::None => "none",
    };
    let mut host = HostConfig {
        port_bindings: Some(bindings),
        network_mode: Some(network_mode.to_owned()),
        binds: Some(binds(task, td, d)),
        volumes_from: Some(
            d.volumes_from
                .iter()
                .filter_map(|v| {
                    let source = v.source_container.as_deref()?;
                    let ro = if v.read_only == Some(true) { ":ro" } else { "" };
                    Some(format!("{}{ro}", docker_name(&task.task_arn, source)))
                })
                .collect(),
        ),
        ulimits: (!d.ulimits.is_empty()).then(|| {
            d.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft_limit),
                    hard: Some(u.hard_limit),
                })
                .collect()
        }),
        log_config: d.log_configuration.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(l.log_driver.clone()),
            config: l.options.as_ref().map(|o| o.clone().into_iter().collect()),
        }),
        readonly_rootfs: d.readonly_root_filesystem,
        privileged: d.privileged,
        dns: (!d.dns_servers.is_empty()).then(|| d.dns_servers.clone()),
        dns_search: (!d.dns_search_domains.is_empty()).then(|| d.dns_search_domains.clone()),
        extra_hosts: (!d.extra_hosts.is_empty()).then(|| {
            d.extra_hosts
                .iter()
                .map(|h| format!("{}:{}", h.hostname, h.ip_address))
                .collect()
        }),
        sysctls: (!d.system_controls.is_empty()).then(|| {
            d.system_controls
                .iter()
                .filter_map(|s| Some((s.namespace.clone()?, s.value.clone()?)))
                .collect()
        }),
        pid_mode: namespace(spec, d, td.pid_mode, false),
        ipc_mode: namespace(spec, d, td.ipc_mode, true),
        ..Default::default()
    };
    limits(&mut host, td, d);
    if let Some(lp) = &d.linux_parameters {
        linux_parameters(&mut host, lp);
    }
    ContainerCreateBody {
        image: Some(d.image.clone()),
        cmd: d.command.clone(),
        entrypoint: d.entry_point.clone(),
        env: Some(
            d.environment
                .iter()
                .map(|kv| format!("{}={}", kv.name, kv.value))
                .collect(),
        ),
        working_dir: d.working_directory.clone(),
        user: d.user.clone(),
        hostname: d.hostname.clone(),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        healthcheck,
        stop_timeout: d.stop_timeout.map(i64::from),
        network_disabled: d.disable_networking.filter(|n| *n),
        open_stdin: d.interactive.filter(|i| *i),
        tty: d.pseudo_terminal.filter(|t| *t),
        host_config: Some(host),
        ..Default::default()
    }
}

/// Exposed ports and host port bindings of `d`.
fn ports(
    task: &Task,
    td: &TaskDefinition,
    d: &ContainerDefinition,
) -> (Vec<String>, HashMap<String, Option<Vec<PortBinding>>>) {
    let recorded: Vec<&NetworkBinding> = task
        .containers
        .iter()
        .filter(|c| c.name == d.name)
        .flat_map(|c| c.network_bindings.iter())
        .collect();
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for pm in &d.port_mappings {
        let proto = match pm.protocol() {
            Protocol::Udp => "udp",
            _ => "tcp",
        };
        let key = format!("{}/{proto}", pm.container_port);
        exposed.push(key.clone());
        if td.network_mode != NetworkMode::Bridge {
            continue;
        }
        // Static port, else the one the control layer recorded, else Docker picks
        // (and the agent records what it picked).
        let host = pm.static_host_port().or_else(|| {
            recorded
                .iter()
                .find(|b| {
                    b.container_port == pm.container_port
                        && b.protocol.unwrap_or_default() == pm.protocol()
                })
                .map(|b| b.host_port)
        });
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: None,
                host_port: Some(host.map(|p| p.to_string()).unwrap_or_default()),
            });
    }
    (exposed, bindings)
}

/// `source:containerPath[:ro]` for each mount point of `d`.
fn binds(task: &Task, td: &TaskDefinition, d: &ContainerDefinition) -> Vec<String> {
    d.mount_points
        .iter()
        .filter_map(|m| {
            let v = td
                .volumes
                .iter()
                .find(|v| Some(v.name.as_str()) == m.source_volume.as_deref())?;
            let source = match volume_source(&task.task_arn, v) {
                VolumeSource::Bind(path) => path,
                VolumeSource::Named { name, .. } => name,
            };
            let ro = if m.read_only == Some(true) { ":ro" } else { "" };
            Some(format!("{source}:{}{ro}", m.container_path.as_deref()?))
        })
        .collect()
}

/// Docker's PID (`ipc` false) or IPC namespace mode for `d`.
fn namespace(
    spec: &TaskSpec<'_>,
    d: &ContainerDefinition,
    mode: Option<NamespaceMode>,
    ipc: bool,
) -> Option<String> {
    match mode? {
        NamespaceMode::Host => Some("host".to_owned()),
        NamespaceMode::None => Some("none".to_owned()),
        NamespaceMode::Task if d.name == spec.namespace_holder => {
            // The holder's IPC namespace must be shareable for others to join.
            ipc.then(|| "shareable".to_owned())
        }
        NamespaceMode::Task => Some(format!(
            "container:{}",
            docker_name(&spec.task.task_arn, spec.namespace_holder)
        )),
    }
}

/// Memory and CPU limits (see the module docs).
fn limits(host: &mut HostConfig, td: &TaskDefinition, d: &ContainerDefinition) {
    let task_memory = td.memory.as_deref().and_then(parse_task_memory);
    let task_cpu = td.cpu.as_deref().and_then(parse_task_cpu);
    host.memory = d.memory.or(task_memory).map(mib);
    host.memory_reservation = d.memory_reservation.map(mib);
    // Docker refuses shares below 2.
    host.cpu_shares = d.cpu.filter(|c| *c > 0).map(|c| i64::from(c.max(2)));
    host.nano_cpus = task_cpu
        .filter(|c| *c > 0)
        .map(|c| i64::from(c) * 1_000_000_000 / 1024);
}

fn linux_parameters(host: &mut HostConfig, lp: &LinuxParameters) {
    host.init = lp.init_process_enabled;
    if let Some(caps) = &lp.capabilities {
        host.cap_add = (!caps.add.is_empty()).then(|| caps.add.clone());
        host.cap_drop = (!caps.drop.is_empty()).then(|| caps.drop.clone());
    }
    host.shm_size = lp.shared_memory_size.map(mib);
    if !lp.devices.is_empty() {
        host.devices = Some(
            lp.devices
                .iter()
                .map(|dev| {
                    let perms: String = if dev.permissions.is_empty() {
                        "rwm".to_owned()
                    } else {
                        dev.permissions
                            .iter()
                            .filter_map(|p| match p.as_str() {
                                "read" => Some('r'),
                                "write" => Some('w'),
                                "mknod" => Some('m'),
                                _ => None,
                            })
                            .collect()
                    };
                    DeviceMapping {
                        path_on_host: Some(dev.host_path.clone()),
                        path_in_container: Some(
                            dev.container_path
                                .clone()
                                .unwrap_or_else(|| dev.host_path.clone()),
                        ),
                        cgroup_permissions: Some(perms),
                    }
                })
                .collect(),
        );
    }
    if !lp.tmpfs.is_empty() {
        host.tmpfs = Some(
            lp.tmpfs
                .iter()
                .map(|t| {
                    let mut opts = vec![format!("size={}m", t.size)];
                    opts.extend(t.mount_options.iter().cloned());
                    (t.container_path.clone(), opts.join(","))
                })
                .collect(),
        );
    }
}

#[cfg(test)]
#[path = "container_config_tests.rs"]
mod tests;
