//! The control operations against a real store in a temporary directory.

use std::sync::Arc;

use berth_core::arn::ArnContext;
use berth_core::model::{ContainerDefinition, PortMapping, RegisterTaskDefinition, Resource, Tag};
use berth_core::status::{ClusterStatus, DesiredStatus, InstanceStatus, StopCode, TaskStatus};
use serde_json::json;

use super::types::*;
use super::*;

fn control() -> (tempfile::TempDir, Control) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("berth.redb")).unwrap();
    let c = Control::new(Arc::new(store), ArnContext::default());
    c.ensure_default_cluster().unwrap();
    (dir, c)
}

pub(super) fn td(
    family: &str,
    cpu: u32,
    memory: u32,
    host_port: Option<u32>,
) -> RegisterTaskDefinition {
    let cd: ContainerDefinition = serde_json::from_value(json!({
        "name": "app", "image": "berth/hello:1", "cpu": cpu, "memory": memory,
    }))
    .unwrap();
    let cd = ContainerDefinition {
        port_mappings: vec![PortMapping {
            container_port: 8080,
            host_port,
            protocol: None,
            unknown: Default::default(),
        }],
        ..cd
    };
    serde_json::from_value(json!({"family": family, "containerDefinitions": [cd]})).unwrap()
}

pub(super) fn instance(c: &Control, cpu: i64, memory: i64) -> String {
    c.register_container_instance(RegisterContainerInstanceRequest {
        total_resources: vec![
            Resource::integer("CPU", cpu),
            Resource::integer("MEMORY", memory),
        ],
        ..Default::default()
    })
    .unwrap()
    .container_instance
    .container_instance_arn
}

fn run(c: &Control, td: &str, count: i64) -> TasksResponse {
    c.run_task(RunTaskRequest {
        task_definition: Some(td.into()),
        count: Some(count),
        ..Default::default()
    })
    .unwrap()
}

fn remaining(c: &Control, arn: &str, name: &str) -> i64 {
    let d = c
        .describe_container_instances(DescribeContainerInstancesRequest {
            cluster: None,
            container_instances: vec![arn.into()],
        })
        .unwrap();
    instances::integer_resource(&d.container_instances[0].remaining_resources, name).unwrap()
}

#[test]
fn revisions_count_up_and_describe_finds_the_latest_active() {
    let (_d, c) = control();
    for _ in 0..3 {
        c.register_task_definition(td("web", 10, 10, None)).unwrap();
    }
    c.deregister_task_definition(TaskDefinitionRequest {
        task_definition: Some("web:3".into()),
        include: vec![],
    })
    .unwrap();
    let d = c
        .describe_task_definition(TaskDefinitionRequest {
            task_definition: Some("web".into()),
            include: vec![],
        })
        .unwrap();
    assert_eq!(d.task_definition.revision, 2);
    let inactive = c
        .list_task_definitions(ListTaskDefinitionsRequest {
            status: Some("INACTIVE".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        inactive.task_definition_arns,
        vec![c.arn().task_definition("web", 3)]
    );
    let desc = c
        .list_task_definitions(ListTaskDefinitionsRequest {
            sort: Some("DESC".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        desc.task_definition_arns,
        vec![
            c.arn().task_definition("web", 2),
            c.arn().task_definition("web", 1)
        ]
    );
    let err = c
        .describe_task_definition(TaskDefinitionRequest {
            task_definition: Some("nope".into()),
            include: vec![],
        })
        .unwrap_err();
    assert_eq!(err.code(), "ClientException");
}

#[test]
fn invalid_task_definition_names_the_field_and_changes_nothing() {
    let (_d, c) = control();
    let mut bad = td("web", 10, 10, Some(70000));
    bad.container_definitions[0].port_mappings[0].container_port = 70000;
    let err = c.register_task_definition(bad).unwrap_err();
    assert_eq!(err.code(), "ClientException");
    assert!(
        err.to_string()
            .contains("containerDefinitions[0].portMappings[0]"),
        "{err}"
    );
    let all = c
        .list_task_definitions(ListTaskDefinitionsRequest::default())
        .unwrap();
    assert!(all.task_definition_arns.is_empty());
}

#[test]
fn paging_walks_every_item_once() {
    let (_d, c) = control();
    for i in 0..7 {
        c.register_task_definition(td(&format!("f{i}"), 1, 10, None))
            .unwrap();
    }
    for sort in ["ASC", "DESC"] {
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let p = c
                .list_task_definitions(ListTaskDefinitionsRequest {
                    sort: Some(sort.into()),
                    max_results: Some(3),
                    next_token: token.clone(),
                    ..Default::default()
                })
                .unwrap();
            assert!(p.task_definition_arns.len() <= 3);
            seen.extend(p.task_definition_arns);
            match p.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..7)
            .map(|i| c.arn().task_definition(&format!("f{i}"), 1))
            .collect();
        if sort == "DESC" {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{sort}");
    }
    let err = c
        .list_clusters(ListRequest {
            next_token: Some("zz".into()),
            max_results: None,
        })
        .unwrap_err();
    assert!(err.to_string().contains("nextToken"), "{err}");
    let err = c
        .list_clusters(ListRequest {
            next_token: None,
            max_results: Some(101),
        })
        .unwrap_err();
    assert!(err.to_string().contains("maxResults: 101"), "{err}");
}

#[test]
fn run_task_places_reserves_and_stop_frees() {
    let (_d, c) = control();
    c.register_task_definition(td("web", 512, 256, Some(0)))
        .unwrap();
    let i = instance(&c, 1024, 1024);
    let r = run(&c, "web", 2);
    assert_eq!(r.tasks.len(), 2, "{:?}", r.failures);
    assert_eq!(remaining(&c, &i, "CPU"), 0);
    assert_eq!(remaining(&c, &i, "MEMORY"), 512);
    let ports: Vec<u32> = r
        .tasks
        .iter()
        .map(|t| t.containers[0].network_bindings[0].host_port)
        .collect();
    assert_ne!(ports[0], ports[1], "two dynamic host ports on one instance");
    assert!(ports.iter().all(|p| *p >= 32768), "{ports:?}");
    assert_eq!(r.tasks[0].group.as_deref(), Some("family:web"));
    // Nothing fits now: a failure naming CPU.
    let full = run(&c, "web", 1);
    assert!(full.tasks.is_empty());
    assert_eq!(full.failures[0].reason, "RESOURCE:CPU");
    // Stop one: its CPU comes back, and another fits.
    let stopped = c
        .stop_task(StopTaskRequest {
            cluster: None,
            task: Some(r.tasks[0].task_arn.clone()),
            reason: Some("done".into()),
        })
        .unwrap();
    assert_eq!(stopped.task.desired_status, DesiredStatus::Stopped);
    assert_eq!(stopped.task.stop_code, Some(StopCode::UserInitiated));
    assert_eq!(remaining(&c, &i, "CPU"), 512);
    assert_eq!(run(&c, "web", 1).tasks.len(), 1);
    let listed = c
        .list_tasks(ListTasksRequest {
            family: Some("web".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.task_arns.len(), 2);
    let stopped = c
        .list_tasks(ListTasksRequest {
            desired_status: Some("STOPPED".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(stopped.task_arns, vec![r.tasks[0].task_arn.clone()]);
}

#[test]
fn static_host_ports_are_never_shared() {
    let (_d, c) = control();
    c.register_task_definition(td("fixed", 1, 10, Some(8080)))
        .unwrap();
    instance(&c, 4096, 4096);
    let r = run(&c, "fixed", 3);
    assert_eq!(r.tasks.len(), 1);
    assert_eq!(r.failures.len(), 2);
    assert!(
        r.failures.iter().all(|f| f.reason == "RESOURCE:PORTS"),
        "{:?}",
        r.failures
    );
}

#[test]
fn start_task_checks_the_chosen_instance() {
    let (_d, c) = control();
    c.register_task_definition(td("big", 2048, 10, None))
        .unwrap();
    let small = instance(&c, 1024, 1024);
    let large = instance(&c, 4096, 1024);
    let r = c
        .start_task(StartTaskRequest {
            task_definition: Some("big".into()),
            container_instances: vec![small.clone(), large.clone(), "nope".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.tasks.len(), 1);
    assert_eq!(
        r.tasks[0].container_instance_arn.as_deref(),
        Some(large.as_str())
    );
    let reasons: Vec<&str> = r.failures.iter().map(|f| f.reason.as_str()).collect();
    assert_eq!(reasons, vec!["RESOURCE:CPU", "MISSING"]);
}

#[test]
fn queued_tasks_wait_then_place_oldest_first() {
    let (_d, c) = control();
    c.register_task_definition(td("batch", 1024, 10, None))
        .unwrap();
    let i = instance(&c, 1024, 1024);
    let queue = vec![Tag {
        key: QUEUE_TAG.into(),
        value: "true".into(),
    }];
    let req = |tags: Vec<Tag>| RunTaskRequest {
        task_definition: Some("batch".into()),
        count: Some(1),
        tags,
        ..Default::default()
    };
    let first = c.run_task(req(queue.clone())).unwrap();
    assert_eq!(
        first.tasks[0].container_instance_arn.as_deref(),
        Some(i.as_str())
    );
    let waiting: Vec<_> = (0..2)
        .map(|_| c.run_task(req(queue.clone())).unwrap().tasks.remove(0))
        .collect();
    assert!(
        waiting
            .iter()
            .all(|t| t.container_instance_arn.is_none() && t.last_status == TaskStatus::Pending)
    );
    assert_eq!(c.place_queued().unwrap(), 0, "no capacity yet");
    c.stop_task(StopTaskRequest {
        cluster: None,
        task: Some(first.tasks[0].task_arn.clone()),
        reason: None,
    })
    .unwrap();
    assert_eq!(c.place_queued().unwrap(), 1);
    let d = c
        .describe_tasks(DescribeTasksRequest {
            cluster: None,
            tasks: waiting.iter().map(|t| t.task_arn.clone()).collect(),
            include: vec![],
        })
        .unwrap();
    assert_eq!(
        d.tasks[0].container_instance_arn.as_deref(),
        Some(i.as_str()),
        "the oldest goes first"
    );
    assert!(d.tasks[1].container_instance_arn.is_none());
    assert_eq!(remaining(&c, &i, "CPU"), 0);
    // A queued task that is stopped leaves the queue at once.
    let s = c
        .stop_task(StopTaskRequest {
            cluster: None,
            task: Some(waiting[1].task_arn.clone()),
            reason: None,
        })
        .unwrap();
    assert_eq!(s.task.last_status, TaskStatus::Stopped);
    c.stop_task(StopTaskRequest {
        cluster: None,
        task: Some(waiting[0].task_arn.clone()),
        reason: None,
    })
    .unwrap();
    assert_eq!(c.place_queued().unwrap(), 0);
    // Without the tag, the same request fails instead of queueing.
    c.run_task(req(queue.clone())).unwrap();
    let failed = c.run_task(req(Vec::new())).unwrap();
    assert!(failed.tasks.is_empty());
    assert_eq!(failed.failures[0].reason, "RESOURCE:CPU");
}

#[test]
fn client_token_makes_run_task_idempotent() {
    let (_d, c) = control();
    c.register_task_definition(td("web", 1, 10, None)).unwrap();
    instance(&c, 1024, 1024);
    let req = RunTaskRequest {
        task_definition: Some("web".into()),
        count: Some(2),
        client_token: Some("t1".into()),
        ..Default::default()
    };
    let a = c.run_task(req.clone()).unwrap();
    let b = c.run_task(req.clone()).unwrap();
    let arns = |r: &TasksResponse| {
        r.tasks
            .iter()
            .map(|t| t.task_arn.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(arns(&a), arns(&b));
    assert_eq!(
        c.list_tasks(ListTasksRequest::default())
            .unwrap()
            .task_arns
            .len(),
        2
    );
    let other = c
        .run_task(RunTaskRequest {
            count: Some(1),
            ..req
        })
        .unwrap_err();
    assert!(other.to_string().contains("clientToken"), "{other}");
}

#[test]
fn concurrent_run_tasks_never_over_commit() {
    let (_d, c) = control();
    let c = Arc::new(c);
    c.register_task_definition(td("web", 100, 100, None))
        .unwrap();
    let instances: Vec<String> = (0..3).map(|_| instance(&c, 1000, 1000)).collect();
    // 3 x 10 slots; 8 threads x 5 calls x 2 tasks = 80 asks.
    let placed: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                s.spawn(move || (0..5).map(|_| run(&c, "web", 2).tasks.len()).sum::<usize>())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(placed, 30, "every slot filled, none twice");
    for i in &instances {
        assert_eq!(remaining(&c, i, "CPU"), 0);
        let on = c
            .list_tasks(ListTasksRequest {
                container_instance: Some(i.clone()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(on.task_arns.len(), 10);
    }
}

#[test]
fn delete_cluster_refuses_while_it_holds_instances_or_tasks() {
    let (_d, c) = control();
    c.create_cluster(CreateClusterRequest {
        cluster_name: Some("prod".into()),
        tags: vec![],
    })
    .unwrap();
    c.register_task_definition(td("web", 1, 10, None)).unwrap();
    let i = c
        .register_container_instance(RegisterContainerInstanceRequest {
            cluster: Some("prod".into()),
            total_resources: vec![
                Resource::integer("CPU", 10),
                Resource::integer("MEMORY", 100),
            ],
            ..Default::default()
        })
        .unwrap()
        .container_instance
        .container_instance_arn;
    let t = c
        .run_task(RunTaskRequest {
            cluster: Some("prod".into()),
            task_definition: Some("web".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(t.tasks.len(), 1);
    let del = || {
        c.delete_cluster(ClusterRequest {
            cluster: Some("prod".into()),
        })
    };
    assert_eq!(
        del().unwrap_err().code(),
        "ClusterContainsContainerInstancesException"
    );
    let err = c
        .deregister_container_instance(DeregisterContainerInstanceRequest {
            cluster: Some("prod".into()),
            container_instance: Some(i.clone()),
            force: None,
        })
        .unwrap_err();
    assert!(err.to_string().contains("force"), "{err}");
    c.deregister_container_instance(DeregisterContainerInstanceRequest {
        cluster: Some("prod".into()),
        container_instance: Some(i),
        force: Some(true),
    })
    .unwrap();
    let gone = del().unwrap();
    assert_eq!(gone.cluster.status, ClusterStatus::Inactive);
    assert_eq!(del().unwrap_err().code(), "ClusterNotFoundException");
    let listed = c.list_clusters(ListRequest::default()).unwrap();
    assert_eq!(listed.cluster_arns, vec![c.arn().cluster("default")]);
}

#[test]
fn instances_filter_drain_and_attributes() {
    let (_d, c) = control();
    let a = instance(&c, 100, 100);
    let b = instance(&c, 100, 100);
    c.change_attributes(
        AttributesRequest {
            cluster: None,
            attributes: vec![berth_core::model::Attribute {
                name: "gpu".into(),
                value: Some("a100".into()),
                target_type: None,
                target_id: Some(b.clone()),
            }],
        },
        true,
    )
    .unwrap();
    let f = |q: &str| {
        c.list_container_instances(ListContainerInstancesRequest {
            filter: Some(q.into()),
            ..Default::default()
        })
        .unwrap()
        .container_instance_arns
    };
    assert_eq!(f("attribute:gpu exists"), vec![b.clone()]);
    assert_eq!(f("attribute:ecs.os-type == linux").len(), 2);
    let err = c
        .list_container_instances(ListContainerInstancesRequest {
            filter: Some("attribute:gpu ==".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().starts_with("filter:"), "{err}");
    c.update_container_instances_state(UpdateContainerInstancesStateRequest {
        cluster: None,
        container_instances: vec![a.clone()],
        status: Some("DRAINING".into()),
    })
    .unwrap();
    c.register_task_definition(td("web", 1, 10, None)).unwrap();
    let r = run(&c, "web", 3);
    assert!(
        r.tasks
            .iter()
            .all(|t| t.container_instance_arn.as_deref() == Some(b.as_str())),
        "no placement on a draining instance"
    );
    let listed = c
        .list_attributes(ListAttributesRequest {
            target_type: Some("container-instance".into()),
            attribute_name: Some("gpu".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.attributes.len(), 1);
    assert_eq!(listed.attributes[0].target_id.as_deref(), Some(b.as_str()));
}

#[test]
fn stopped_tasks_are_removed_after_their_retention_only() {
    let (_d, c) = control();
    c.register_task_definition(td("batch", 1024, 10, None))
        .unwrap();
    let i = instance(&c, 1024, 1024);
    let queue = vec![Tag {
        key: QUEUE_TAG.into(),
        value: "true".into(),
    }];
    let req = || RunTaskRequest {
        task_definition: Some("batch".into()),
        count: Some(1),
        tags: queue.clone(),
        ..Default::default()
    };
    let running = c.run_task(req()).unwrap().tasks.remove(0);
    assert_eq!(running.container_instance_arn.as_deref(), Some(i.as_str()));
    // Queued, then stopped: STOPPED at once (no agent needed).
    let stopped = c.run_task(req()).unwrap().tasks.remove(0);
    c.stop_task(StopTaskRequest {
        cluster: None,
        task: Some(stopped.task_arn.clone()),
        reason: None,
    })
    .unwrap();
    // Asked to stop but not stopped yet (no agent ran it): kept.
    c.stop_task(StopTaskRequest {
        cluster: None,
        task: Some(running.task_arn.clone()),
        reason: None,
    })
    .unwrap();
    assert_eq!(
        c.collect_stopped_tasks(std::time::Duration::from_secs(3600))
            .unwrap(),
        0,
        "within the retention"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        c.collect_stopped_tasks_by(std::time::Duration::from_millis(10), 1)
            .unwrap(),
        1,
        "read one task at a time, every page is read"
    );
    let d = c
        .describe_tasks(DescribeTasksRequest {
            cluster: None,
            tasks: vec![stopped.task_arn.clone(), running.task_arn.clone()],
            include: vec![],
        })
        .unwrap();
    assert_eq!(d.failures.len(), 1, "{:?}", d.failures);
    assert_eq!(
        d.failures[0].arn.as_deref(),
        Some(stopped.task_arn.as_str())
    );
    assert_eq!(d.tasks[0].task_arn, running.task_arn);
    let listed = c
        .list_tasks(ListTasksRequest {
            desired_status: Some("STOPPED".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.task_arns, vec![running.task_arn.clone()]);
}

/// Unknown status words in requests are refused with ECS's messages, and a
/// known word outside what the operation takes is refused the same way.
#[test]
fn unknown_statuses_are_refused_by_name() {
    let (_d, c) = control();
    let a = instance(&c, 1024, 1024);
    let msg = |e: ControlError| match e {
        ControlError::InvalidParameter(m) => m,
        other => panic!("not InvalidParameter: {other}"),
    };
    let tasks = |s: &str| {
        c.list_tasks(ListTasksRequest {
            desired_status: Some(s.into()),
            ..Default::default()
        })
    };
    assert_eq!(
        msg(tasks("running").unwrap_err()),
        "desiredStatus: `running` is not one of RUNNING, PENDING, STOPPED"
    );
    for ok in ["RUNNING", "PENDING", "STOPPED"] {
        tasks(ok).unwrap();
    }
    let instances = |s: &str| {
        c.list_container_instances(ListContainerInstancesRequest {
            status: Some(s.into()),
            ..Default::default()
        })
    };
    assert_eq!(
        msg(instances("BOGUS").unwrap_err()),
        "status: `BOGUS` is not a container instance status"
    );
    assert!(
        instances("REGISTRATION_FAILED")
            .unwrap()
            .container_instance_arns
            .is_empty()
    );
    assert_eq!(
        instances("ACTIVE").unwrap().container_instance_arns,
        [a.as_str()]
    );
    let set_state = |s: &str| {
        c.update_container_instances_state(UpdateContainerInstancesStateRequest {
            cluster: None,
            container_instances: vec![a.clone()],
            status: Some(s.into()),
        })
    };
    for bad in ["INACTIVE", "BOGUS"] {
        assert_eq!(
            msg(set_state(bad).unwrap_err()),
            format!("status: `{bad}` is not one of ACTIVE, DRAINING")
        );
    }
    assert_eq!(
        set_state("DRAINING").unwrap().container_instances[0].status,
        InstanceStatus::Draining
    );
    let defs = |s: &str| {
        c.list_task_definitions(ListTaskDefinitionsRequest {
            status: Some(s.into()),
            ..Default::default()
        })
    };
    assert_eq!(
        msg(defs("ALL").unwrap_err()),
        "status: `ALL` is not one of ACTIVE, INACTIVE, DELETE_IN_PROGRESS"
    );
    defs("DELETE_IN_PROGRESS").unwrap();
}
