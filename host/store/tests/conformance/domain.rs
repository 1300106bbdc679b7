//! berth's domain records in the store: the lookups the API needs, through
//! the indexes kept with each table.

use berth_core::arn::ArnContext;
use berth_core::model::{
    Cluster, ClusterStatus, DesiredStatus, Task, TaskDefinition, TaskDefinitionStatus, TaskStatus,
};
use berth_core::validate;
use berth_store::PageRequest;
use berth_store::tables::{
    TASK_DEFINITIONS_BY_FAMILY, TASK_DEFINITIONS_BY_STATUS, TASKS_BY_CLUSTER,
    TASKS_BY_DESIRED_STATUS, TASKS_BY_GROUP, TASKS_BY_INSTANCE, in_cluster, task_definition_key,
};

fn cluster(a: &ArnContext, name: &str) -> Cluster {
    Cluster {
        cluster_arn: a.cluster(name),
        cluster_name: name.into(),
        status: ClusterStatus::Active,
        registered_container_instances_count: 0,
        running_tasks_count: 0,
        pending_tasks_count: 0,
        active_services_count: 0,
        tags: vec![],
    }
}

fn task_definition(a: &ArnContext, family: &str, revision: u32) -> TaskDefinition {
    let reg: berth_core::model::RegisterTaskDefinition = validate::from_json(
        format!(r#"{{"family":"{family}","containerDefinitions":[{{"name":"app","image":"hello:1","memory":64}}]}}"#).as_bytes(),
    )
    .expect("parses");
    TaskDefinition {
        task_definition_arn: a.task_definition(family, revision),
        family: family.into(),
        revision,
        container_definitions: reg.container_definitions,
        network_mode: Default::default(),
        cpu: None,
        memory: None,
        placement_constraints: vec![],
        volumes: vec![],
        pid_mode: None,
        ipc_mode: None,
        requires_compatibilities: vec![],
        status: TaskDefinitionStatus::Active,
        registered_at: Some(1.0),
        deregistered_at: None,
        tags: vec![],
    }
}

fn task(a: &ArnContext, cluster: &str, id: &str, instance: &str, group: &str) -> Task {
    Task {
        task_arn: a.task(cluster, id),
        cluster_arn: a.cluster(cluster),
        task_definition_arn: a.task_definition("web", 1),
        container_instance_arn: Some(a.container_instance(cluster, instance)),
        group: Some(group.into()),
        started_by: None,
        last_status: TaskStatus::Pending,
        desired_status: DesiredStatus::Running,
        health_status: None,
        stop_code: None,
        stopped_reason: None,
        created_at: Some(1.0),
        started_at: None,
        stopping_at: None,
        stopped_at: None,
        version: 1,
        cpu: None,
        memory: None,
        launch_type: Some("EC2".into()),
        containers: vec![],
        overrides: None,
        tags: vec![],
        attributes: vec![],
    }
}

#[test]
fn domain_lookups_follow_updates() -> anyhow::Result<()> {
    let Some((_fixture, store)) = crate::harness::open()? else {
        return Ok(());
    };
    let a = ArnContext::default();
    let mut txn = store.begin()?;
    txn.put(&cluster(&a, "default"))?;
    txn.put(&cluster(&a, "prod"))?;
    for rev in [1, 2, 10] {
        txn.put(&task_definition(&a, "web", rev))?;
    }
    txn.put(&task_definition(&a, "worker", 1))?;
    txn.put(&task(&a, "default", "t1", "i1", "family:web"))?;
    txn.put(&task(&a, "default", "t2", "i2", "family:web"))?;
    txn.put(&task(&a, "prod", "t3", "i1", "service:api"))?;
    txn.commit()?;

    let r = store.begin()?;
    let revs: Vec<u32> = r
        .by_index(TASK_DEFINITIONS_BY_FAMILY, "web", PageRequest::first(10))?
        .items
        .iter()
        .map(|v| v.value.revision)
        .collect();
    assert_eq!(revs, vec![1, 2, 10], "revisions in numeric order");
    assert_eq!(
        r.by_index(
            TASKS_BY_CLUSTER,
            &a.cluster("default"),
            PageRequest::first(10)
        )?
        .items
        .len(),
        2
    );
    let on_i1 = r.by_index(
        TASKS_BY_INSTANCE,
        &a.container_instance("default", "i1"),
        PageRequest::first(10),
    )?;
    assert_eq!(
        on_i1.items.len(),
        1,
        "instance ids are scoped by cluster in their ARN"
    );
    let group = r.by_index(
        TASKS_BY_GROUP,
        &in_cluster(&a.cluster("default"), "family:web"),
        PageRequest::first(10),
    )?;
    assert_eq!(group.items.len(), 2);
    let clusters: Vec<String> = r
        .list::<Cluster>(PageRequest::first(10))?
        .items
        .into_iter()
        .map(|c| c.value.cluster_name)
        .collect();
    assert_eq!(clusters, vec!["default", "prod"]);

    // A task moves to STOPPED: the status index follows in the same commit.
    let mut txn = store.begin()?;
    let mut t1 = txn
        .get::<Task>(&a.task("default", "t1"))?
        .expect("t1 exists")
        .value;
    t1.desired_status = DesiredStatus::Stopped;
    t1.last_status = TaskStatus::Stopped;
    txn.put(&t1)?;
    let mut td = txn
        .get::<TaskDefinition>(&task_definition_key("web", 2))?
        .expect("web:2")
        .value;
    td.status = TaskDefinitionStatus::Inactive;
    txn.put(&td)?;
    txn.commit()?;
    let r = store.begin()?;
    let running = r.by_index(
        TASKS_BY_DESIRED_STATUS,
        &in_cluster(&a.cluster("default"), DesiredStatus::Running.as_str()),
        PageRequest::first(10),
    )?;
    assert_eq!(running.items.len(), 1);
    assert_eq!(running.items[0].value.task_arn, a.task("default", "t2"));
    let inactive = r.by_index(
        TASK_DEFINITIONS_BY_STATUS,
        TaskDefinitionStatus::Inactive.as_str(),
        PageRequest::first(10),
    )?;
    assert_eq!(inactive.items.len(), 1);
    let on_i1 = r.by_index(
        TASKS_BY_INSTANCE,
        &a.container_instance("default", "i1"),
        PageRequest::first(10),
    )?;
    assert!(
        on_i1.items.is_empty(),
        "a STOPPED task leaves its instance's index"
    );
    assert!(store.verify_indexes()?.is_empty());
    Ok(())
}
