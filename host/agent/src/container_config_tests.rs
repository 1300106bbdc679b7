//! The mapping from container definitions to Docker's create body, field by field.

use std::collections::HashMap;

use berth_core::model::{Task, TaskDefinition};
use serde_json::json;

use super::*;

const TASK: &str = "arn:aws:ecs:local:000000000000:task/default/t1";

fn task() -> Task {
    serde_json::from_value(json!({
        "taskArn": TASK, "clusterArn": "arn:aws:ecs:local:000000000000:cluster/default",
        "taskDefinitionArn": "td:1", "lastStatus": "PENDING", "desiredStatus": "RUNNING"}))
    .expect("task")
}

fn td(v: serde_json::Value) -> TaskDefinition {
    let mut base = json!({
        "taskDefinitionArn": "arn:aws:ecs:local:000000000000:task-definition/web:1",
        "family": "web", "revision": 1, "networkMode": "bridge", "status": "ACTIVE"});
    for (k, val) in v.as_object().expect("object") {
        base[k] = val.clone();
    }
    serde_json::from_value(base).expect("task definition")
}

/// The create bodies of every container of `td`, by name; `app` holds the namespaces.
fn configs(td: &TaskDefinition) -> HashMap<String, ContainerCreateBody> {
    let task = task();
    let spec = TaskSpec {
        task: &task,
        td,
        instance_arn: "inst",
        namespace_holder: "app",
    };
    td.container_definitions
        .iter()
        .map(|d| (d.name.clone(), container_config(&spec, d)))
        .collect()
}

fn host(c: &ContainerCreateBody) -> &HostConfig {
    c.host_config.as_ref().expect("host config")
}

#[test]
fn volumes_and_mounts() {
    let td = td(json!({
        "volumes": [
            {"name": "bind", "host": {"sourcePath": "/srv/data"}},
            {"name": "scratch", "host": {}},
            {"name": "cache", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true}},
            {"name": "work", "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}}],
        "containerDefinitions": [
            {"name": "app", "image": "i", "mountPoints": [
                {"sourceVolume": "bind", "containerPath": "/data", "readOnly": true},
                {"sourceVolume": "scratch", "containerPath": "/scratch"},
                {"sourceVolume": "cache", "containerPath": "/cache"},
                {"sourceVolume": "work", "containerPath": "/work", "readOnly": false}]},
            {"name": "side", "image": "i", "volumesFrom": [{"sourceContainer": "app", "readOnly": true}]}]
    }));
    let c = configs(&td);
    assert_eq!(
        host(&c["app"]).binds.as_deref(),
        Some(
            &[
                "/srv/data:/data:ro".to_owned(),
                "berth-t1-scratch:/scratch".to_owned(),
                "cache:/cache".to_owned(),
                "berth-t1-work:/work".to_owned()
            ][..]
        )
    );
    assert_eq!(
        host(&c["side"]).volumes_from.as_deref(),
        Some(&["berth-t1-app:ro".to_owned()][..])
    );
    assert_eq!(
        volume_source(TASK, &td.volumes[2]),
        VolumeSource::Named {
            name: "cache".into(),
            task_scoped: false
        }
    );
    assert_eq!(
        volume_source(TASK, &td.volumes[3]),
        VolumeSource::Named {
            name: "berth-t1-work".into(),
            task_scoped: true
        }
    );
}

#[test]
fn process_and_file_system_options() {
    let td = td(json!({
        "pidMode": "task", "ipcMode": "task",
        "containerDefinitions": [{"name": "app", "image": "i",
            "entryPoint": ["/bin/sh", "-c"], "command": ["echo hi"], "user": "1000:1000",
            "workingDirectory": "/srv", "hostname": "web-1", "readonlyRootFilesystem": true,
            "interactive": true, "pseudoTerminal": true, "stopTimeout": 7,
            "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
            "linuxParameters": {"initProcessEnabled": true, "sharedMemorySize": 64,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                "devices": [{"hostPath": "/dev/fuse", "permissions": ["read", "write"]}],
                "tmpfs": [{"containerPath": "/run", "size": 16, "mountOptions": ["noexec"]}]}},
            {"name": "side", "image": "i"}]
    }));
    let c = configs(&td);
    let app = &c["app"];
    assert_eq!(app.entrypoint, Some(vec!["/bin/sh".into(), "-c".into()]));
    assert_eq!(app.cmd, Some(vec!["echo hi".into()]));
    assert_eq!(app.user.as_deref(), Some("1000:1000"));
    assert_eq!(app.working_dir.as_deref(), Some("/srv"));
    assert_eq!(app.hostname.as_deref(), Some("web-1"));
    assert_eq!(
        (app.open_stdin, app.tty, app.stop_timeout),
        (Some(true), Some(true), Some(7))
    );
    let h = host(app);
    assert_eq!(h.readonly_rootfs, Some(true));
    let u = &h.ulimits.as_ref().expect("ulimits")[0];
    assert_eq!(
        (u.name.as_deref(), u.soft, u.hard),
        (Some("nofile"), Some(1024), Some(2048))
    );
    assert_eq!(h.init, Some(true));
    assert_eq!(h.shm_size, Some(64 * 1024 * 1024));
    assert_eq!(h.cap_add, Some(vec!["NET_ADMIN".into()]));
    assert_eq!(h.cap_drop, Some(vec!["MKNOD".into()]));
    let dev = &h.devices.as_ref().expect("devices")[0];
    assert_eq!(
        (
            dev.path_on_host.as_deref(),
            dev.path_in_container.as_deref(),
            dev.cgroup_permissions.as_deref()
        ),
        (Some("/dev/fuse"), Some("/dev/fuse"), Some("rw"))
    );
    assert_eq!(
        h.tmpfs
            .as_ref()
            .expect("tmpfs")
            .get("/run")
            .map(String::as_str),
        Some("size=16m,noexec")
    );
    // The first container holds the task's namespaces, the others join them.
    assert_eq!(
        (h.pid_mode.as_deref(), h.ipc_mode.as_deref()),
        (None, Some("shareable"))
    );
    let side = host(&c["side"]);
    assert_eq!(side.pid_mode.as_deref(), Some("container:berth-t1-app"));
    assert_eq!(side.ipc_mode.as_deref(), Some("container:berth-t1-app"));
}

#[test]
fn network_and_logging_options() {
    let td = td(json!({
        "pidMode": "host", "ipcMode": "none",
        "containerDefinitions": [{"name": "app", "image": "i",
            "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.5"}],
            "dnsServers": ["1.1.1.1"], "dnsSearchDomains": ["example.com"],
            "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}],
            "disableNetworking": true,
            "logConfiguration": {"logDriver": "local", "options": {"max-size": "1m"}}},
            {"name": "side", "image": "i"}]
    }));
    let c = configs(&td);
    let app = &c["app"];
    assert_eq!(app.network_disabled, Some(true));
    let h = host(app);
    assert_eq!(h.extra_hosts, Some(vec!["db:10.0.0.5".into()]));
    assert_eq!(h.dns, Some(vec!["1.1.1.1".into()]));
    assert_eq!(h.dns_search, Some(vec!["example.com".into()]));
    assert_eq!(
        h.sysctls
            .as_ref()
            .and_then(|s| s.get("net.core.somaxconn"))
            .map(String::as_str),
        Some("1024")
    );
    let log = h.log_config.as_ref().expect("log config");
    assert_eq!(log.typ.as_deref(), Some("local"));
    assert_eq!(
        log.config
            .as_ref()
            .and_then(|c| c.get("max-size"))
            .map(String::as_str),
        Some("1m")
    );
    assert_eq!(
        (h.pid_mode.as_deref(), h.ipc_mode.as_deref()),
        (Some("host"), Some("none"))
    );
    // Nothing asked, nothing set: the daemon's defaults stand (the
    // task-level namespaces apply to every container).
    let side = host(&c["side"]);
    assert_eq!(
        (
            &side.log_config,
            &side.dns,
            &side.ulimits,
            side.readonly_rootfs
        ),
        (&None, &None, &None, None)
    );
    assert_eq!(side.pid_mode.as_deref(), Some("host"));
}

#[test]
fn berths_labels_win_over_docker_labels() {
    // Validation refuses berth.* labels; the mapping still puts berth's last.
    let td = td(
        json!({"containerDefinitions": [{"name": "app", "image": "i",
        "dockerLabels": {"team": "web", "berth.task-arn": "forged"}}]}),
    );
    let c = configs(&td);
    let labels = c["app"].labels.as_ref().expect("labels");
    assert_eq!(labels["team"], "web");
    assert_eq!(labels[crate::LABEL_TASK_ARN], TASK);
    assert_eq!(labels[crate::LABEL_INSTANCE], "inst");
}

#[test]
fn memory_and_cpu_limits() {
    let td = td(
        json!({"cpu": "512", "memory": "1 GB", "containerDefinitions": [
        {"name": "app", "image": "i", "memory": 256, "memoryReservation": 128, "cpu": 1},
        {"name": "side", "image": "i", "memoryReservation": 64}]}),
    );
    let c = configs(&td);
    let app = host(&c["app"]);
    assert_eq!(
        app.memory,
        Some(256 * 1024 * 1024),
        "container memory is the hard limit"
    );
    assert_eq!(
        app.memory_reservation,
        Some(128 * 1024 * 1024),
        "memoryReservation the soft one"
    );
    assert_eq!(app.cpu_shares, Some(2), "Docker's least CPU shares");
    assert_eq!(
        app.nano_cpus,
        Some(500_000_000),
        "task cpu 512 = half a CPU"
    );
    let side = host(&c["side"]);
    assert_eq!(
        side.memory,
        Some(1024 * 1024 * 1024),
        "task memory bounds a container without its own"
    );
    assert_eq!(side.memory_reservation, Some(64 * 1024 * 1024));
    assert_eq!(side.cpu_shares, None);
    // Without task limits, nothing but the container's own.
    let td2 =
        self::td(json!({"containerDefinitions": [{"name": "app", "image": "i", "memory": 64}]}));
    let c = configs(&td2);
    let h = host(&c["app"]);
    assert_eq!((h.memory, h.nano_cpus), (Some(64 * 1024 * 1024), None));
}
