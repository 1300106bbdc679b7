//! The in-process agent protocol against a real store.

use std::sync::Arc;

use berth_core::model::{Resource, VersionInfo};
use berth_core::status::{ContainerStatus, DesiredStatus, InstanceStatus, StopCode, TaskStatus};
use berth_protocol::{ContainerStateChange, ControlPlane, HostFacts, builtin_attributes};
use serde_json::json;

use super::*;
use crate::control::Control;
use crate::control::types::*;

struct Fixture {
    _dir: tempfile::TempDir,
    control: Control,
    plane: LocalControlPlane,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path().join("berth.redb")).expect("store"));
    let control = Control::new(Arc::clone(&store), ArnContext::default());
    let plane = LocalControlPlane::new(store, ArnContext::default());
    Fixture {
        _dir: dir,
        control,
        plane,
    }
}

const INSTANCE: &str = "arn:aws:ecs:local:000000000000:container-instance/default/agent1";

fn registration() -> RegisterInstance {
    RegisterInstance {
        cluster: "default".into(),
        container_instance_arn: INSTANCE.into(),
        ec2_instance_id: "agent1".into(),
        agent_connected: true,
        total_resources: vec![
            Resource::integer("CPU", 1024),
            Resource::integer("MEMORY", 2048),
            Resource::string_set("PORTS", vec!["22".into()]),
            Resource::string_set("PORTS_UDP", Vec::new()),
        ],
        attributes: builtin_attributes(&HostFacts::assumed()),
        version_info: VersionInfo::default(),
    }
}

fn manifest_request() -> ManifestRequest {
    ManifestRequest {
        cluster: "default".into(),
        container_instance_arn: INSTANCE.into(),
        ..ManifestRequest::default()
    }
}

/// Registers the agent's instance, and a task definition whose one task is
/// placed on it with RunTask; the task's ARN.
async fn placed_task(f: &Fixture) -> String {
    let ci = f
        .plane
        .register_instance(registration())
        .await
        .expect("register");
    assert!(ci.agent_connected && ci.status == InstanceStatus::Active);
    let td: berth_core::model::RegisterTaskDefinition = serde_json::from_value(json!({
        "family": "web", "containerDefinitions": [{"name": "app", "image": "i", "cpu": 256, "memory": 128,
            "portMappings": [{"containerPort": 80, "hostPort": 8080}]}]
    }))
    .expect("td");
    f.control.register_task_definition(td).expect("td");
    let run = f
        .control
        .run_task(RunTaskRequest {
            task_definition: Some("web".into()),
            count: Some(1),
            ..Default::default()
        })
        .expect("run");
    assert!(run.failures.is_empty(), "{:?}", run.failures);
    run.tasks[0].task_arn.clone()
}

#[tokio::test]
async fn a_state_change_submitted_twice_applies_once_and_a_start_leaves_the_sequence() {
    let f = fixture();
    let before = f
        .plane
        .task_manifest(manifest_request())
        .await
        .expect("manifest");
    let arn = placed_task(&f).await;
    let placed = f
        .plane
        .task_manifest(manifest_request())
        .await
        .expect("manifest");
    assert!(placed.sequence > before.sequence, "placing rises it");
    let assigned = placed.task(&arn).expect("assigned");
    assert_eq!(assigned.task.desired_status, DesiredStatus::Running);
    assert_eq!(
        assigned.task_definition.as_ref().map(|d| d.family.as_str()),
        Some("web")
    );

    let change = TaskStateChange {
        cluster: "default".into(),
        task: arn.clone(),
        status: Some(TaskStatus::Running),
        containers: vec![ContainerStateChange {
            container_name: "app".into(),
            runtime_id: Some("docker-id".into()),
            status: Some(ContainerStatus::Running),
            ..Default::default()
        }],
        at: 100.0,
        ..Default::default()
    };
    let first = f
        .plane
        .submit_task_state_change(change.clone())
        .await
        .expect("submit");
    assert!(first.applied);
    let task = first.task.expect("task");
    assert_eq!(task.last_status, TaskStatus::Running);
    assert_eq!(task.started_at, Some(100.0));
    let running = f
        .plane
        .task_manifest(manifest_request())
        .await
        .expect("manifest");
    // The agent's own report of a start is not news to it: the sequence
    // stays, and only the instance's counts move.
    assert_eq!(running.sequence, placed.sequence);
    let mut txn = f.plane.store.begin().expect("txn");
    let ci = txn
        .get::<berth_core::model::ContainerInstance>(&placed.container_instance_arn)
        .expect("read")
        .expect("instance")
        .value;
    assert_eq!((ci.running_tasks_count, ci.pending_tasks_count), (1, 0));

    let second = f
        .plane
        .submit_task_state_change(change)
        .await
        .expect("submit again");
    assert!(!second.applied, "the same change again changes nothing");
    assert_eq!(second.task.expect("task").version, task.version);
    let again = f
        .plane
        .task_manifest(manifest_request())
        .await
        .expect("manifest");
    assert_eq!(again.sequence, running.sequence);

    // The instance record says what the task holds, in the same transaction.
    let mut txn = f.control.store.begin().expect("begin");
    let ci = txn
        .get::<ContainerInstance>(INSTANCE)
        .expect("get")
        .expect("instance")
        .value;
    assert_eq!((ci.running_tasks_count, ci.pending_tasks_count), (1, 0));
    assert_eq!(
        berth_core::usage::integer_resource(&ci.remaining_resources, "CPU"),
        Some(1024 - 256)
    );
    assert!(
        berth_core::usage::ports_of(&ci.remaining_resources, "PORTS").contains(&8080),
        "{:?}",
        ci.remaining_resources
    );
}

#[tokio::test]
async fn stopping_frees_the_instance_and_retire_waits_for_live_tasks() {
    let f = fixture();
    let arn = placed_task(&f).await;
    let retire = RetireInstance {
        cluster: "default".into(),
        container_instance_arn: INSTANCE.into(),
    };
    let ack = f
        .plane
        .retire_instance(retire.clone())
        .await
        .expect("retire");
    assert_eq!(ack.live_tasks, 1, "a live task keeps the instance");

    let failed = TaskStateChange {
        cluster: "default".into(),
        task: arn.clone(),
        status: Some(TaskStatus::Stopped),
        stop_code: Some(StopCode::TaskFailedToStart),
        reason: Some("CannotPullContainerError: image i".into()),
        at: 5.0,
        ..Default::default()
    };
    let ack = f
        .plane
        .submit_task_state_change(failed)
        .await
        .expect("submit");
    let task = ack.task.expect("task");
    assert_eq!(task.desired_status, DesiredStatus::Stopped);
    assert_eq!(task.stop_code, Some(StopCode::TaskFailedToStart));
    assert_eq!(task.stopped_at, Some(5.0));
    let mut txn = f.control.store.begin().expect("begin");
    let ci = txn
        .get::<ContainerInstance>(INSTANCE)
        .expect("get")
        .expect("instance")
        .value;
    assert_eq!(ci.remaining_resources[0], Resource::integer("CPU", 1024));
    drop(txn);
    // STOPPED: out of the manifest (which would otherwise grow with every
    // task the instance ever ran), still listed as the instance's.
    let manifest = f
        .plane
        .task_manifest(manifest_request())
        .await
        .expect("manifest");
    assert!(manifest.tasks.is_empty(), "{:?}", manifest.tasks);
    let listed = |desired: &str| {
        f.control
            .list_tasks(ListTasksRequest {
                container_instance: Some(INSTANCE.into()),
                desired_status: Some(desired.into()),
                ..Default::default()
            })
            .expect("list")
            .task_arns
    };
    assert_eq!(listed("STOPPED"), vec![arn.clone()]);
    assert!(listed("RUNNING").is_empty());

    let hb = Heartbeat {
        cluster: "default".into(),
        container_instance_arn: INSTANCE.into(),
        agent_connected: false,
    };
    assert!(f.plane.heartbeat(hb).await.expect("heartbeat").registered);
    let ack = f.plane.retire_instance(retire).await.expect("retire");
    assert_eq!(ack.live_tasks, 0);
    let mut txn = f.control.store.begin().expect("begin");
    let ci = txn
        .get::<ContainerInstance>(INSTANCE)
        .expect("get")
        .expect("instance")
        .value;
    assert_eq!(ci.status, InstanceStatus::Inactive);
    assert!(!ci.agent_connected);
}

#[tokio::test]
async fn an_agent_restart_keeps_draining_and_custom_attributes() {
    let f = fixture();
    f.plane
        .register_instance(registration())
        .await
        .expect("register");
    f.control
        .update_container_instances_state(UpdateContainerInstancesStateRequest {
            cluster: None,
            container_instances: vec![INSTANCE.into()],
            status: Some("DRAINING".into()),
        })
        .expect("drain");
    f.control
        .change_attributes(
            AttributesRequest {
                cluster: None,
                attributes: vec![berth_core::model::Attribute {
                    name: "team".into(),
                    value: Some("web".into()),
                    target_type: None,
                    target_id: Some(INSTANCE.into()),
                }],
            },
            true,
        )
        .expect("put attributes");
    let ci = f
        .plane
        .register_instance(registration())
        .await
        .expect("register again");
    assert_eq!(ci.status, InstanceStatus::Draining);
    assert!(ci.attributes.iter().any(|a| a.name == "team"));
    assert_eq!(
        ci.attributes
            .iter()
            .filter(|a| a.name == "ecs.os-type")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_task_yet_to_start_carries_its_registry_credential_and_a_running_one_none() {
    let f = fixture();
    f.plane
        .register_instance(registration())
        .await
        .expect("register");
    f.control
        .put_secret(crate::control::secrets::PutSecretRequest {
            name: "registry/team".into(),
            username: "ci-bot".into(),
            password: "hunter2".into(),
        })
        .expect("secret");
    let td: berth_core::model::RegisterTaskDefinition = serde_json::from_value(json!({
        "family": "private", "containerDefinitions": [{"name": "app", "image": "r:5000/app:1",
            "memory": 16, "repositoryCredentials": {"credentialsParameter": "registry/team"}}]
    }))
    .expect("td");
    f.control.register_task_definition(td).expect("td");
    let run = f
        .control
        .run_task(RunTaskRequest {
            task_definition: Some("private".into()),
            ..Default::default()
        })
        .expect("run");
    let arn = run.tasks[0].task_arn.clone();
    let m = f
        .plane
        .task_manifest(manifest_request())
        .await
        .expect("manifest");
    let cred = &m.task(&arn).expect("assigned").registry_credentials["registry/team"];
    assert_eq!(
        (cred.username.as_str(), cred.password.as_str()),
        ("ci-bot", "hunter2")
    );
    f.plane
        .submit_task_state_change(TaskStateChange {
            cluster: "default".into(),
            task: arn.clone(),
            status: Some(TaskStatus::Running),
            at: 1.0,
            ..Default::default()
        })
        .await
        .expect("running");
    let m = f
        .plane
        .task_manifest(manifest_request())
        .await
        .expect("manifest");
    assert!(
        m.task(&arn)
            .expect("assigned")
            .registry_credentials
            .is_empty()
    );
    assert!(!serde_json::to_string(&m).expect("json").contains("hunter2"));
}
