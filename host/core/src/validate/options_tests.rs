//! Every field berth refuses, and every option it checks, with its message.

use serde_json::json;

use super::{from_json, task_definition};
use crate::model::RegisterTaskDefinition;

fn base() -> serde_json::Value {
    json!({"family": "web", "containerDefinitions": [
        {"name": "app", "image": "hello:1", "memory": 64},
        {"name": "side", "image": "side:1", "memory": 32, "essential": false}]})
}

/// The whole error text of registering `v`, or "accepted".
fn outcome(v: &serde_json::Value) -> String {
    let td: RegisterTaskDefinition = match from_json(v.to_string().as_bytes()) {
        Ok(td) => td,
        Err(e) => return format!("parse: {e}"),
    };
    match task_definition(&td) {
        Ok(()) => "accepted".to_owned(),
        Err(e) => e.to_string(),
    }
}

/// `base()` with `set` applied at container 0 (a JSON object merged in).
fn container_with(set: serde_json::Value) -> serde_json::Value {
    let mut v = base();
    for (k, val) in set.as_object().expect("object") {
        v["containerDefinitions"][0][k] = val.clone();
    }
    v
}

fn task_with(set: serde_json::Value) -> serde_json::Value {
    let mut v = base();
    for (k, val) in set.as_object().expect("object") {
        v[k] = val.clone();
    }
    v
}

#[test]
fn unknown_container_fields_are_refused_by_path() {
    for field in [
        "secrets",
        "environmentFiles",
        "dockerSecurityOptions",
        "resourceRequirements",
        "firelensConfiguration",
        "credentialSpecs",
        "restartPolicy",
        "versionConsistency",
        "noSuchField",
    ] {
        let v = container_with(json!({ field: [{"name": "x", "valueFrom": "y"}] }));
        assert_eq!(
            outcome(&v),
            format!("containerDefinitions[0].{field}: not supported by berth")
        );
    }
}

#[test]
fn refusals_that_say_why() {
    let cases = [
        (
            container_with(json!({"repositoryCredentials": {"credentialsParameter": "no spaces"}})),
            "containerDefinitions[0].repositoryCredentials.credentialsParameter: `no spaces` is not a secret name (1-255 letters, digits, `-`, `_`, `.`, `/`; store one with berth secrets put NAME)",
        ),
        (
            container_with(
                json!({"repositoryCredentials": {"credentialsParameter": "reg", "kmsKeyId": "k"}}),
            ),
            "containerDefinitions[0].repositoryCredentials.kmsKeyId: not supported by berth",
        ),
        (
            container_with(json!({"links": ["side"]})),
            "containerDefinitions[0].links: not supported by berth (use a shared network mode, or extraHosts)",
        ),
        (
            task_with(json!({"taskRoleArn": "arn:aws:iam::1:role/x"})),
            "taskRoleArn: not supported by berth (berth has no IAM roles)",
        ),
        (
            task_with(json!({"executionRoleArn": "arn:aws:iam::1:role/x"})),
            "executionRoleArn: not supported by berth (berth has no IAM roles)",
        ),
        (
            task_with(json!({"networkMode": "awsvpc"})),
            "networkMode: awsvpc is not supported by berth (no ENIs); use bridge or host",
        ),
        (
            task_with(json!({"requiresCompatibilities": ["EC2", "FARGATE"]})),
            "requiresCompatibilities[1]: `FARGATE` is not supported by berth; use EC2 or EXTERNAL",
        ),
        (
            container_with(json!({"logConfiguration": {"logDriver": "awslogs"}})),
            "containerDefinitions[0].logConfiguration.logDriver: `awslogs` is not supported by berth; use json-file, local, syslog or none",
        ),
    ];
    for (v, want) in cases {
        assert_eq!(outcome(&v), want, "for {v}");
    }
}

#[test]
fn unknown_task_level_fields_are_refused() {
    for field in [
        "proxyConfiguration",
        "inferenceAccelerators",
        "ephemeralStorage",
        "runtimePlatform",
        "enableFaultInjection",
    ] {
        let v = task_with(json!({ field: {"x": 1} }));
        assert_eq!(outcome(&v), format!("{field}: not supported by berth"));
    }
}

#[test]
fn unknown_nested_fields_are_refused_by_path() {
    let cases = [
        (
            json!({"portMappings": [{"containerPort": 80, "appProtocol": "http"}]}),
            "containerDefinitions[0].portMappings[0].appProtocol",
        ),
        (
            json!({"logConfiguration": {"logDriver": "json-file", "secretOptions": [{"name": "a", "valueFrom": "b"}]}}),
            "containerDefinitions[0].logConfiguration.secretOptions",
        ),
        (
            json!({"linuxParameters": {"maxSwap": 64}}),
            "containerDefinitions[0].linuxParameters.maxSwap",
        ),
        (
            json!({"linuxParameters": {"swappiness": 10}}),
            "containerDefinitions[0].linuxParameters.swappiness",
        ),
        (
            json!({"healthCheck": {"command": ["CMD", "true"], "x": 1}}),
            "containerDefinitions[0].healthCheck.x",
        ),
        (
            json!({"ulimits": [{"name": "nofile", "softLimit": 1, "hardLimit": 2, "x": 1}]}),
            "containerDefinitions[0].ulimits[0].x",
        ),
    ];
    for (set, path) in cases {
        assert_eq!(
            outcome(&container_with(set)),
            format!("{path}: not supported by berth")
        );
    }
    let v = task_with(
        json!({"volumes": [{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]}),
    );
    assert_eq!(
        outcome(&v),
        "volumes[0].efsVolumeConfiguration: not supported by berth"
    );
}

#[test]
fn privileged_and_repository_credentials_are_accepted() {
    // Whether an agent allows privileged containers is placement's question,
    // and whether the secret exists the control plane's.
    let v = container_with(json!({
        "privileged": true,
        "repositoryCredentials": {"credentialsParameter": "registry/ci-bot"}
    }));
    assert_eq!(outcome(&v), "accepted");
}

#[test]
fn fields_left_at_nothing_are_accepted() {
    // What `aws ecs register-task-definition` and console exports carry for
    // fields left at their defaults.
    let mut v = container_with(json!({
        "secrets": [], "environmentFiles": [], "links": [], "privileged": false,
        "dockerSecurityOptions": [], "repositoryCredentials": null, "restartPolicy": {},
        "systemControls": [], "ulimits": [], "mountPoints": [], "volumesFrom": [],
        "interactive": false, "pseudoTerminal": false, "disableNetworking": false
    }));
    v["requiresCompatibilities"] = json!(["EC2"]);
    v["taskRoleArn"] = json!("");
    v["inferenceAccelerators"] = json!([]);
    assert_eq!(outcome(&v), "accepted");
}

#[test]
fn honoured_options_are_checked() {
    let cases = [
        (
            json!({"ulimits": [{"name": "files", "softLimit": 1, "hardLimit": 2}]}),
            "containerDefinitions[0].ulimits[0].name: `files` is not a ulimit name",
        ),
        (
            json!({"linuxParameters": {"capabilities": {"add": ["NET_ADMIN", "FLY"]}}}),
            "containerDefinitions[0].linuxParameters.capabilities.add[1]: `FLY` is not a capability",
        ),
        (
            json!({"linuxParameters": {"devices": [{"hostPath": "dev/fuse", "permissions": ["read", "eat"]}]}}),
            "containerDefinitions[0].linuxParameters.devices[0].hostPath: `dev/fuse` is not an absolute path; containerDefinitions[0].linuxParameters.devices[0].permissions[1]: `eat` is not read, write or mknod",
        ),
        (
            json!({"linuxParameters": {"tmpfs": [{"containerPath": "/run", "size": 0}], "sharedMemorySize": 0}}),
            "containerDefinitions[0].linuxParameters.sharedMemorySize: 0 MiB; give at least 1; containerDefinitions[0].linuxParameters.tmpfs[0].size: 0 MiB; give at least 1",
        ),
        (
            json!({"extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.300"}]}),
            "containerDefinitions[0].extraHosts[0].ipAddress: `10.0.0.300` is not an IP address",
        ),
        (
            json!({"dnsServers": ["dns.example"]}),
            "containerDefinitions[0].dnsServers[0]: `dns.example` is not an IP address",
        ),
        (
            json!({"dnsSearchDomains": ["a b"]}),
            "containerDefinitions[0].dnsSearchDomains[0]: `a b` is not a domain",
        ),
        (
            json!({"systemControls": [{"namespace": "net.core.somaxconn"}]}),
            "containerDefinitions[0].systemControls[0]: a namespace and a value are required",
        ),
        (
            json!({"dockerLabels": {"berth.task-arn": "mine"}}),
            "containerDefinitions[0].dockerLabels: `berth.task-arn` is in berth's own label namespace (berth.*)",
        ),
        (
            json!({"startTimeout": 0}),
            "containerDefinitions[0].startTimeout: 0 is out of range 1-600",
        ),
        (
            json!({"workingDirectory": "srv"}),
            "containerDefinitions[0].workingDirectory: `srv` is not an absolute path",
        ),
        (
            json!({"user": ""}),
            "containerDefinitions[0].user: an empty user names no one",
        ),
    ];
    for (set, want) in cases {
        assert_eq!(outcome(&container_with(set)), want);
    }
}

#[test]
fn network_mode_limits_some_options() {
    let mut v = container_with(json!({"hostname": "app",
        "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}]}));
    v["networkMode"] = json!("host");
    assert_eq!(
        outcome(&v),
        "containerDefinitions[0].hostname: not allowed with networkMode host (the container has the host's); containerDefinitions[0].systemControls[0].namespace: `net.core.somaxconn`: net.* controls are not allowed with networkMode host"
    );
}

#[test]
fn volumes_are_checked() {
    let cases = [
        (
            json!([{"name": "d", "host": {"sourcePath": "srv"}}]),
            "volumes[0].host.sourcePath: `srv` is not an absolute path",
        ),
        (
            json!([{"name": "d", "host": {}, "dockerVolumeConfiguration": {}}]),
            "volumes[0].dockerVolumeConfiguration: a volume takes host or dockerVolumeConfiguration, not both",
        ),
        (
            json!([{"name": "d", "dockerVolumeConfiguration": {"scope": "task", "autoprovision": true}}]),
            "volumes[0].dockerVolumeConfiguration.autoprovision: autoprovision applies to scope shared only",
        ),
        (
            json!([{"name": "d", "dockerVolumeConfiguration": {"driver": "my driver"}}]),
            "volumes[0].dockerVolumeConfiguration.driver: `my driver` is not a volume driver name",
        ),
    ];
    for (vols, want) in cases {
        assert_eq!(outcome(&task_with(json!({ "volumes": vols }))), want);
    }
}

#[test]
fn a_full_definition_is_accepted() {
    let v: serde_json::Value = serde_json::from_str(
        r#"{
        "family": "full", "networkMode": "bridge", "cpu": "512", "memory": "256",
        "pidMode": "task", "ipcMode": "host", "requiresCompatibilities": ["EC2"],
        "volumes": [
            {"name": "bind", "host": {"sourcePath": "/srv/data"}},
            {"name": "scratch", "host": {}},
            {"name": "shared", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true,
                "driver": "local", "driverOpts": {"type": "tmpfs", "device": "tmpfs"}, "labels": {"a": "b"}}}],
        "containerDefinitions": [{
            "name": "app", "image": "hello:1", "memory": 128, "memoryReservation": 64, "cpu": 256,
            "entryPoint": ["/bin/sh", "-c"], "command": ["echo hi"], "user": "1000:1000",
            "workingDirectory": "/srv", "hostname": "app", "readonlyRootFilesystem": true,
            "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.5"}],
            "dnsServers": ["1.1.1.1"], "dnsSearchDomains": ["example.com"],
            "dockerLabels": {"team": "web"}, "startTimeout": 30, "stopTimeout": 10,
            "mountPoints": [{"sourceVolume": "bind", "containerPath": "/data", "readOnly": true}],
            "volumesFrom": [{"sourceContainer": "side", "readOnly": true}],
            "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
            "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}},
            "linuxParameters": {"initProcessEnabled": true, "sharedMemorySize": 64,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                "devices": [{"hostPath": "/dev/null", "containerPath": "/dev/x", "permissions": ["read"]}],
                "tmpfs": [{"containerPath": "/run", "size": 16, "mountOptions": ["noexec"]}]},
            "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}]
        }, {"name": "side", "image": "side:1", "memory": 32, "essential": false,
            "logConfiguration": {"logDriver": "syslog"}}]
    }"#,
    )
    .expect("JSON");
    assert_eq!(outcome(&v), "accepted");
    // And it survives a round trip as stored (nothing dropped on the way).
    let td: RegisterTaskDefinition = from_json(v.to_string().as_bytes()).expect("parses");
    assert_eq!(serde_json::to_value(&td).expect("serialises"), v);
}

#[test]
fn the_private_registry_example_is_a_valid_task_definition() {
    let example = include_str!("../../../../examples/private-web.json");
    let v: serde_json::Value = serde_json::from_str(example).expect("examples/private-web.json");
    assert_eq!(outcome(&v), "accepted");
}
