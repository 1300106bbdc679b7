//! The control operations on a store on etcd, at etcd's limits and with
//! several control planes (as several servers) over one etcd cluster:
//! placing in a cluster of 1,000 instances (placement's read set is the
//! instances placed on, never the whole cluster), RunTask storms through
//! three control planes at once that never over-commit an instance, and
//! grouped RunTasks cut to what one etcd transaction may carry.
//! Each test starts its etcd members; without the `etcd` binary they fail
//! unless `BERTH_SKIP_ETCD=1` is set on purpose.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::arn::ArnContext;
use berth_core::model::{ContainerInstance, Task};
use berth_core::usage::{holds_resources, integer_resource, task_hold};
use berth_store::{PageRequest, Store};
use berth_store_etcd::testing::{Cluster, skip};
use berth_store_etcd::{EtcdBackend, EtcdUrl};

use super::tests::{instance, td};
use super::types::*;
use super::*;

fn control_at(url: &EtcdUrl) -> Control {
    let backend = EtcdBackend::open(url).expect("etcd store opens");
    let c = Control::new(
        Arc::new(Store::with_backend(Arc::new(backend))),
        ArnContext::default(),
    );
    c.ensure_default_cluster().expect("default cluster");
    c
}

fn all<T: berth_store::Record>(store: &Store) -> Vec<T> {
    let txn = store.begin().expect("begin");
    let mut out = Vec::new();
    let mut page = PageRequest::first(1000);
    loop {
        let p = txn.list::<T>(page.clone()).expect("list");
        out.extend(p.items.into_iter().map(|v| v.value));
        match p.next_token {
            Some(t) => page.token = Some(t),
            None => return out,
        }
    }
}

/// Every instance: what its tasks desired RUNNING hold is within what it
/// registered, and its `remainingResources` offers no more than is left.
fn assert_nothing_over_committed(store: &Store) -> usize {
    let mut held: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let tasks: Vec<Task> = all(store);
    for t in tasks.iter().filter(|t| holds_resources(t)) {
        let Some(ci) = &t.container_instance_arn else {
            continue;
        };
        let h = task_hold(t);
        let e = held.entry(ci.clone()).or_default();
        e.0 += i64::from(h.cpu);
        e.1 += i64::from(h.memory);
    }
    for ci in all::<ContainerInstance>(store) {
        let (cpu, mem) = held
            .get(&ci.container_instance_arn)
            .copied()
            .unwrap_or_default();
        let reg_cpu = integer_resource(&ci.registered_resources, "CPU").unwrap_or(0);
        let reg_mem = integer_resource(&ci.registered_resources, "MEMORY").unwrap_or(0);
        assert!(
            cpu <= reg_cpu && mem <= reg_mem,
            "{} over-committed: {cpu}/{reg_cpu} CPU, {mem}/{reg_mem} MiB",
            ci.container_instance_arn
        );
        // What the record offers is never more than is free (it may be
        // less for a moment: a view that did not yet see a stop through
        // another server places less, never more).
        let offered = integer_resource(&ci.remaining_resources, "CPU").unwrap_or(0);
        assert!(
            offered <= reg_cpu - cpu,
            "{}: remainingResources {offered} above the {} free",
            ci.container_instance_arn,
            reg_cpu - cpu
        );
    }
    tasks.iter().filter(|t| holds_resources(t)).count()
}

#[test]
fn placing_in_a_cluster_of_1000_instances_fits_in_etcd_transactions() {
    if skip() {
        return;
    }
    let members = Cluster::start(1).expect("etcd");
    let c = control_at(&members.url("/berth-1000"));
    for _ in 0..1000 {
        instance(&c, 1024, 1024);
    }
    c.register_task_definition(td("web", 256, 256, None))
        .expect("td");
    // RunTasks of 10 (the most one call asks), from several threads at
    // once, so they are grouped: each commit stays within etcd's 128
    // operations, whatever the cluster's size.
    let c = Arc::new(c);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                let mut placed = 0;
                for _ in 0..5 {
                    let r = c
                        .run_task(RunTaskRequest {
                            task_definition: Some("web".into()),
                            count: Some(10),
                            ..Default::default()
                        })
                        .expect("RunTask");
                    assert!(r.failures.is_empty(), "{:?}", r.failures);
                    placed += r.tasks.len();
                }
                placed
            })
        })
        .collect();
    let placed: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(placed, 200);
    assert_eq!(assert_nothing_over_committed(&c.store), 200);
    assert!(c.store.verify_indexes().expect("verify").is_empty());
}

#[test]
fn runtask_storms_through_three_servers_never_over_commit() {
    if skip() {
        return;
    }
    let members = Cluster::start(3).expect("etcd");
    // One control plane per member, as three servers each given its own.
    let urls: Vec<EtcdUrl> = members
        .members
        .iter()
        .map(|m| EtcdUrl {
            endpoints: vec![m.client.clone()],
            prefix: "/berth-storm".into(),
        })
        .collect();
    let first = control_at(&urls[0]);
    seed_storm(&first);
    drop(first);
    storm(urls.iter().map(|u| Arc::new(control_at(u))).collect());
}

/// The same storm through three control planes over one redb store (one
/// process), for comparison.
#[test]
fn runtask_storms_through_three_control_planes_on_redb_never_over_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path().join("berth.redb")).expect("store"));
    let servers: Vec<Arc<Control>> = (0..3)
        .map(|_| Arc::new(Control::new(Arc::clone(&store), ArnContext::default())))
        .collect();
    servers[0]
        .ensure_default_cluster()
        .expect("default cluster");
    seed_storm(&servers[0]);
    storm(servers);
}

/// 6 instances of 1024 CPU units; a task definition of 256.
fn seed_storm(c: &Control) {
    for _ in 0..6 {
        instance(c, 1024, 2048);
    }
    c.register_task_definition(td("job", 256, 128, None))
        .expect("td");
}

fn storm(servers: Vec<Arc<Control>>) {
    // 6 instances x 4 slots: 24 tasks fit. Each round, every server is
    // sent RunTasks from two threads at once (36 tasks asked for), then
    // every instance is checked, then half the tasks are stopped through
    // another server, freeing room for the next round.
    let mut running = 0;
    for round in 0..4 {
        let threads: Vec<_> = servers
            .iter()
            .flat_map(|c| [Arc::clone(c), Arc::clone(c)])
            .map(|c| {
                std::thread::spawn(move || {
                    let mut placed = 0;
                    for _ in 0..3 {
                        match c.run_task(RunTaskRequest {
                            task_definition: Some("job".into()),
                            count: Some(2),
                            ..Default::default()
                        }) {
                            Ok(r) => placed += r.tasks.len(),
                            Err(e) => panic!("RunTask failed: {e}"),
                        }
                    }
                    placed
                })
            })
            .collect();
        let placed: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        running += placed;
        let checker = &servers[round % 3];
        let held = assert_nothing_over_committed(&checker.store);
        assert_eq!(
            held, running,
            "round {round}: every acknowledged task is there"
        );
        assert!(running <= 24, "round {round}: {running} tasks on 24 slots");
        assert!(running >= 12, "round {round}: only {running} tasks placed");
        let live: Vec<Task> = all::<Task>(&checker.store)
            .into_iter()
            .filter(holds_resources)
            .collect();
        let stopper = &servers[(round + 1) % 3];
        for t in live.iter().step_by(2) {
            stopper
                .stop_task(StopTaskRequest {
                    cluster: None,
                    task: Some(t.task_arn.clone()),
                    reason: Some("storm round over".into()),
                })
                .expect("StopTask");
            running -= 1;
        }
    }
    let conflicts: u64 = servers
        .iter()
        .map(|c| c.store.commit_counts().conflicts)
        .sum();
    eprintln!("storm: {conflicts} commit conflicts retried across the three servers");
}

#[test]
fn a_killed_etcd_member_does_not_stop_the_control_plane() {
    if skip() {
        return;
    }
    let mut members = Cluster::start(3).expect("etcd");
    let c = control_at(&members.url("/berth-member"));
    for _ in 0..2 {
        instance(&c, 4096, 4096);
    }
    c.register_task_definition(td("job", 64, 64, None))
        .expect("td");
    let run = |c: &Control| {
        c.run_task(RunTaskRequest {
            task_definition: Some("job".into()),
            ..Default::default()
        })
    };
    assert_eq!(run(&c).expect("RunTask").tasks.len(), 1);
    members.members[0].kill();
    // Requests to the dead member fail over to the others (a call in
    // flight may fail once); every RunTask after that succeeds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while run(&c).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no RunTask succeeded after the member died"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for _ in 0..5 {
        assert_eq!(run(&c).expect("RunTask with a member down").tasks.len(), 1);
    }
    assert_nothing_over_committed(&c.store);
}
