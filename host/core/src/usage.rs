//! What the tasks on a container instance hold of it: one rule, used by the
//! agent protocol when a task changes state, by the control layer when it
//! places or stops tasks, and by placement's in-memory view of a cluster.
//!
//! The rule: **a task holds what it reserved at placement**, while its
//! desired status is RUNNING (so StopTask frees its share at once). What it
//! reserved is on the task record itself: its `cpu` and `memory` (set from
//! the task definition and its overrides when the task is created) and the
//! host ports of its containers' network bindings (recorded at placement for
//! static and dynamic ports alike, and kept by the agent as Docker bound
//! them). The task definition is not read again: a definition's ports are
//! already in the bindings, and reading both counted a static port twice
//! over and a dynamic one not at all before it was bound.
//!
//! Remaining CPU and memory never go below zero (registered resources can
//! shrink under tasks, e.g. when an agent re-registers on a smaller host).

use std::collections::BTreeSet;

use crate::model::{ContainerInstance, Protocol, Resource, Task};

/// A task's `cpu` or `memory` string as units (0 when absent or unreadable).
pub fn parse_units(s: Option<&str>) -> u32 {
    s.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// The ports of a string-set resource (`PORTS`, `PORTS_UDP`).
pub fn ports_of(r: &[Resource], name: &str) -> Vec<u16> {
    r.iter()
        .filter(|x| x.name == name)
        .flat_map(|x| x.string_set_value.iter().flatten())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// An integer resource of `rs` by name (`integerValue`, else `longValue`).
pub fn integer_resource(rs: &[Resource], name: &str) -> Option<i64> {
    rs.iter()
        .find(|r| r.name == name)
        .and_then(|r| r.integer_value.or(r.long_value))
}

/// Whether a task holds its share of its instance: while desired RUNNING.
pub fn holds_resources(t: &Task) -> bool {
    t.desired_status == crate::status::DesiredStatus::Running
}

/// What one task holds on its instance (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskHold {
    /// CPU units.
    pub cpu: u32,
    /// Memory MiB.
    pub memory: u32,
    /// Host ports of its network bindings.
    pub ports: Vec<(u16, Protocol)>,
}

/// What `t` reserved at placement: its `cpu`, `memory` and bound host ports.
pub fn task_hold(t: &Task) -> TaskHold {
    TaskHold {
        cpu: parse_units(t.cpu.as_deref()),
        memory: parse_units(t.memory.as_deref()),
        ports: host_ports(t),
    }
}

/// Host ports a task holds, from its containers' network bindings.
pub fn host_ports(t: &Task) -> Vec<(u16, Protocol)> {
    t.containers
        .iter()
        .flat_map(|c| &c.network_bindings)
        .filter_map(|b| {
            u16::try_from(b.host_port)
                .ok()
                .map(|p| (p, b.protocol.unwrap_or_default()))
        })
        .collect()
}

/// An instance's counts and remaining resources, from its tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceUsage {
    /// Tasks holding resources whose last status is RUNNING.
    pub running_tasks_count: u32,
    /// Tasks holding resources not (yet, or any more) RUNNING.
    pub pending_tasks_count: u32,
    /// Registered less what the tasks hold: CPU, MEMORY (never below 0),
    /// PORTS and PORTS_UDP (the registered reserved ports and every held one).
    pub remaining_resources: Vec<Resource>,
}

/// The usage of an instance with `registered` resources by `tasks` (every
/// task assigned to it; those that hold nothing are skipped here).
pub fn instance_usage<'a>(
    registered: &[Resource],
    tasks: impl IntoIterator<Item = &'a Task>,
) -> InstanceUsage {
    let (mut cpu, mut mem) = (0i64, 0i64);
    let mut tcp: BTreeSet<u16> = ports_of(registered, "PORTS").into_iter().collect();
    let mut udp: BTreeSet<u16> = ports_of(registered, "PORTS_UDP").into_iter().collect();
    let (mut running, mut pending) = (0u32, 0u32);
    for t in tasks.into_iter().filter(|t| holds_resources(t)) {
        if t.last_status == crate::status::TaskStatus::Running {
            running = running.saturating_add(1);
        } else {
            pending = pending.saturating_add(1);
        }
        let hold = task_hold(t);
        cpu += i64::from(hold.cpu);
        mem += i64::from(hold.memory);
        for (p, proto) in hold.ports {
            match proto {
                Protocol::Tcp => tcp.insert(p),
                Protocol::Udp => udp.insert(p),
            };
        }
    }
    let strs = |s: BTreeSet<u16>| s.into_iter().map(|p| p.to_string()).collect();
    let left =
        |name: &str, used: i64| (integer_resource(registered, name).unwrap_or(0) - used).max(0);
    InstanceUsage {
        running_tasks_count: running,
        pending_tasks_count: pending,
        remaining_resources: vec![
            Resource::integer("CPU", left("CPU", cpu)),
            Resource::integer("MEMORY", left("MEMORY", mem)),
            Resource::string_set("PORTS", strs(tcp)),
            Resource::string_set("PORTS_UDP", strs(udp)),
        ],
    }
}

/// Sets `ci`'s counts and remaining resources from `tasks` (see
/// [`instance_usage`]). Recomputing rather than adding and subtracting keeps
/// them right whatever order the writers come in.
pub fn apply_usage<'a>(ci: &mut ContainerInstance, tasks: impl IntoIterator<Item = &'a Task>) {
    let u = instance_usage(&ci.registered_resources, tasks);
    ci.running_tasks_count = u.running_tasks_count;
    ci.pending_tasks_count = u.pending_tasks_count;
    ci.remaining_resources = u.remaining_resources;
}

/// How a task's change moves its instance's running and pending counts,
/// when that is all it moves: `None` when what the task holds changed
/// (it started or stopped holding, or its hold differs), and the caller
/// recounts. Applied to a record read in the same transaction, the shift
/// is exact; it spares reading every task of the instance for the common
/// change, a task reported RUNNING.
pub fn count_shift(before: &Task, after: &Task) -> Option<(i64, i64)> {
    match (holds_resources(before), holds_resources(after)) {
        (false, false) => Some((0, 0)),
        (true, true) if task_hold(before) == task_hold(after) => {
            let running = |t: &Task| i64::from(t.last_status == crate::status::TaskStatus::Running);
            let d = running(after) - running(before);
            Some((d, -d))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(desired: &str, last: &str, cpu: u32, mem: u32, bindings: serde_json::Value) -> Task {
        serde_json::from_value(json!({
            "taskArn": "arn:aws:ecs:local:000000000000:task/default/t", "clusterArn": "c",
            "taskDefinitionArn": "web:1", "lastStatus": last, "desiredStatus": desired,
            "cpu": cpu.to_string(), "memory": mem.to_string(),
            "containers": [{"containerArn": "c1", "name": "app", "image": "i",
                            "lastStatus": last, "networkBindings": bindings}]
        }))
        .expect("task")
    }

    #[test]
    fn a_start_shifts_counts_and_a_change_of_hold_asks_for_a_recount() {
        let none = json!([]);
        let pending = task("RUNNING", "PENDING", 64, 128, none.clone());
        let running = task("RUNNING", "RUNNING", 64, 128, none.clone());
        assert_eq!(count_shift(&pending, &running), Some((1, -1)));
        assert_eq!(count_shift(&running, &running), Some((0, 0)));
        let stopping = task("STOPPED", "RUNNING", 64, 128, none.clone());
        assert_eq!(count_shift(&running, &stopping), None);
        let stopped = task("STOPPED", "STOPPED", 64, 128, none.clone());
        assert_eq!(count_shift(&stopping, &stopped), Some((0, 0)));
        let bound = task(
            "RUNNING",
            "RUNNING",
            64,
            128,
            json!([{"containerPort": 80, "hostPort": 8080}]),
        );
        assert_eq!(count_shift(&pending, &bound), None);
        // Whatever the shift says, it agrees with counting afresh.
        let reg = registered(1024, 1024);
        let before = instance_usage(&reg, [&pending, &running]);
        let after = instance_usage(&reg, [&running, &running]);
        let (dr, dp) = count_shift(&pending, &running).unwrap();
        assert_eq!(
            i64::from(after.running_tasks_count) - i64::from(before.running_tasks_count),
            dr
        );
        assert_eq!(
            i64::from(after.pending_tasks_count) - i64::from(before.pending_tasks_count),
            dp
        );
    }

    fn registered(cpu: i64, mem: i64) -> Vec<Resource> {
        vec![
            Resource::integer("CPU", cpu),
            Resource::integer("MEMORY", mem),
            Resource::string_set("PORTS", vec!["22".into()]),
            Resource::string_set("PORTS_UDP", Vec::new()),
        ]
    }

    fn set(u: &InstanceUsage, name: &str) -> Vec<String> {
        u.remaining_resources
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.string_set_value.clone())
            .unwrap_or_default()
    }

    #[test]
    fn static_and_dynamic_ports_count_alike_from_the_bindings() {
        // A static port (8080 -> 8080) and a dynamic one placement chose (49153).
        let stat = task(
            "RUNNING",
            "RUNNING",
            256,
            128,
            json!([{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}]),
        );
        let dynamic = task(
            "RUNNING",
            "PENDING",
            128,
            64,
            json!([{"containerPort": 80, "hostPort": 49153, "protocol": "tcp"},
                   {"containerPort": 53, "hostPort": 49154, "protocol": "udp"}]),
        );
        let u = instance_usage(&registered(1024, 1024), [&stat, &dynamic]);
        assert_eq!(set(&u, "PORTS"), vec!["22", "8080", "49153"]);
        assert_eq!(set(&u, "PORTS_UDP"), vec!["49154"]);
        assert_eq!(
            integer_resource(&u.remaining_resources, "CPU"),
            Some(1024 - 256 - 128)
        );
        assert_eq!(
            integer_resource(&u.remaining_resources, "MEMORY"),
            Some(1024 - 128 - 64)
        );
        assert_eq!((u.running_tasks_count, u.pending_tasks_count), (1, 1));
        // What a task holds is the same whichever kind its ports are.
        assert_eq!(task_hold(&stat).ports, vec![(8080, Protocol::Tcp)]);
        assert_eq!(
            task_hold(&dynamic).ports,
            vec![(49153, Protocol::Tcp), (49154, Protocol::Udp)]
        );
    }

    #[test]
    fn stopping_frees_and_remaining_never_goes_negative() {
        let big = task("RUNNING", "RUNNING", 4096, 8192, json!([]));
        let stopped = task(
            "STOPPED",
            "RUNNING",
            512,
            512,
            json!([{"containerPort": 80, "hostPort": 8000}]),
        );
        let u = instance_usage(&registered(1024, 2048), [&big, &stopped]);
        assert_eq!(integer_resource(&u.remaining_resources, "CPU"), Some(0));
        assert_eq!(integer_resource(&u.remaining_resources, "MEMORY"), Some(0));
        assert_eq!(
            set(&u, "PORTS"),
            vec!["22"],
            "desired STOPPED holds no port"
        );
        assert_eq!((u.running_tasks_count, u.pending_tasks_count), (1, 0));

        let mut ci: ContainerInstance = serde_json::from_value(json!({
            "containerInstanceArn": "i", "ec2InstanceId": "h", "status": "ACTIVE",
            "agentConnected": true, "runningTasksCount": 9, "pendingTasksCount": 9,
            "registeredResources": registered(1024, 2048), "remainingResources": []
        }))
        .expect("instance");
        apply_usage(&mut ci, [&big, &stopped]);
        assert_eq!(ci.running_tasks_count, 1);
        assert_eq!(ci.pending_tasks_count, 0);
        assert_eq!(ci.remaining_resources, u.remaining_resources);
    }
}
