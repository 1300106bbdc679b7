//! What a policy implements and what it is given: [`Policy`], [`Info`], [`Task`].

use crate::{Cluster, GroupId, InstanceId};

/// What a policy says about itself.
#[derive(Debug, Clone)]
pub struct Info {
    /// The policy's name.
    pub name: String,
    /// The policy's version.
    pub version: String,
    /// Parameters the policy understands, with a description each.
    pub parameters: Vec<(String, String)>,
}

impl Info {
    /// An info with no parameters.
    pub fn new(name: &str, version: &str) -> Self {
        Info {
            name: name.to_owned(),
            version: version.to_owned(),
            parameters: Vec::new(),
        }
    }

    /// Adds a documented parameter.
    pub fn parameter(mut self, name: &str, description: &str) -> Self {
        self.parameters
            .push((name.to_owned(), description.to_owned()));
        self
    }
}

/// One task to place.
#[derive(Debug, Clone)]
pub struct Task {
    /// CPU units it reserves.
    pub cpu: u32,
    /// Memory MiB it reserves.
    pub memory: u32,
    /// Fixed host ports it needs, `(port, udp)`.
    pub static_ports: Vec<(u16, bool)>,
    /// Dynamic TCP ports it needs (the host picks the numbers).
    pub dynamic_tcp: u32,
    /// Dynamic UDP ports it needs.
    pub dynamic_udp: u32,
    /// Its task group.
    pub group: GroupId,
    /// Its task definition family.
    pub family: String,
    /// distinctInstance: at most one task of the group per instance.
    pub distinct_instance: bool,
    /// The host-computed filter of its static constraints, if any.
    pub filter: Option<u32>,
    /// The caller's strategy parameters, `(type, field)` in ECS form.
    pub strategy: Vec<(String, String)>,
}

/// A placement policy. One value lives per policy instance; the host may
/// drop an instance at any time and start a fresh one, so keep no state
/// that a fresh instance could not rebuild from the cluster.
pub trait Policy: Default + 'static {
    /// Name, version and parameters.
    fn info(&self) -> Info;

    /// The instance for `task`, or `None` when none is suitable. Return only
    /// instances for which [`Cluster::fits`] holds, or the host rejects the
    /// answer and counts it against the policy.
    fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<InstanceId>;

    /// Why `task` was left unplaced, after [`Policy::choose`] answered
    /// `None`: the text berth records for the task (the host keeps the
    /// first 256 characters). Off the hot path, so it may name instances
    /// ([`Cluster::instance_name`]).
    fn explain(&mut self, cluster: &Cluster, task: &Task) -> String {
        let _ = (cluster, task);
        "no instance fits".to_owned()
    }
}
