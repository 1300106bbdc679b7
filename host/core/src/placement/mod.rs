//! The native placement engine: which container instance gets a task.
//!
//! Pipeline for one task: candidates (ACTIVE and agent connected) ->
//! resources (CPU units, memory MiB, host ports) -> constraints
//! (distinctInstance, memberOf) -> strategy chain (binpack, spread, random as
//! tie-breakers) -> the chosen instance, whose resources are reserved in the
//! [`ClusterState`] at once so the next task of the same call sees them.
//!
//! The hot loop touches only numbers: attribute constraints that do not
//! depend on running tasks are evaluated once per instance and cached, and
//! per-group task counts are dense columns indexed by instance.
//!
//! Architecture Invariant: no IO here. A scheduler builds a `ClusterState`
//! from a store snapshot, places, and commits the result with CAS.

mod state;
pub mod synthetic;

use std::fmt;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use crate::model::{PlacementConstraint, PlacementConstraintType, PlacementStrategy, PlacementStrategyType, Protocol};
use crate::query::{self, Expr};
use crate::validate::{self, FieldError, InvalidInput};

pub use state::{ClusterState, InstanceSpec, InstanceState, PortSet, TaskSpec, DEFAULT_EPHEMERAL_PORTS};

/// The check that removed an instance from the candidates, in pipeline
/// order; its `Display` is ECS's failure reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// Not ACTIVE, or its agent is not connected.
    Agent,
    Cpu,
    Memory,
    Ports,
    /// A placement constraint does not hold.
    Attribute,
}

impl Check {
    pub const ALL: [Check; 5] = [Check::Agent, Check::Cpu, Check::Memory, Check::Ports, Check::Attribute];

    /// ECS's reason string.
    pub fn reason(self) -> &'static str {
        match self {
            Check::Agent => "AGENT",
            Check::Cpu => "RESOURCE:CPU",
            Check::Memory => "RESOURCE:MEMORY",
            Check::Ports => "RESOURCE:PORTS",
            Check::Attribute => "ATTRIBUTE",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Why one task could not be placed, with how many instances each check
/// eliminated, so a user can see what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementFailure {
    /// The check that removed the last candidates.
    pub reason: Check,
    /// Instances removed per check, indexed like [`Check::ALL`].
    pub eliminated: [u32; 5],
    pub instances: u32,
}

impl PlacementFailure {
    pub fn eliminated_by(&self, c: Check) -> u32 {
        self.eliminated[c as usize]
    }
}

impl fmt::Display for PlacementFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.instances == 0 {
            return write!(f, "{}: no container instances in the cluster", self.reason);
        }
        write!(f, "{}: no instance of {} fits (", self.reason, self.instances)?;
        let mut first = true;
        for c in Check::ALL {
            let n = self.eliminated_by(c);
            if n > 0 {
                if !first {
                    f.write_str(", ")?;
                }
                first = false;
                write!(f, "{n} eliminated by {c}")?;
            }
        }
        f.write_str(")")
    }
}

/// Where one task goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Index of the instance in the [`ClusterState`].
    pub instance: usize,
    /// Host ports chosen for the task's dynamic port mappings, in the order
    /// of [`TaskSpec::dynamic_ports`].
    pub dynamic_host_ports: Vec<u16>,
}

/// A compiled placement constraint.
#[derive(Debug, Clone)]
pub enum Constraint {
    DistinctInstance,
    /// The source text is the cache key of static expressions.
    MemberOf { source: String, expr: Expr },
}

/// What spread balances over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadField {
    /// One value per container instance.
    InstanceId,
    /// The instance's host id (`ec2InstanceId`).
    Host,
    Attribute(String),
}

impl SpreadField {
    pub fn parse(s: &str) -> Option<SpreadField> {
        if s.eq_ignore_ascii_case("instanceId") {
            Some(SpreadField::InstanceId)
        } else if s.eq_ignore_ascii_case("host") {
            Some(SpreadField::Host)
        } else {
            s.strip_prefix("attribute:").filter(|n| !n.is_empty()).map(|n| SpreadField::Attribute(n.to_owned()))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinpackField {
    Cpu,
    Memory,
}

/// A compiled placement strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Least remaining of the field that still fits.
    Binpack(BinpackField),
    /// Even count of the task group's tasks over the field's values.
    Spread(SpreadField),
    Random,
}

/// The chain used when a request names none: balance across availability
/// zones, then across instances, then pick at random among ties.
pub fn default_strategies() -> Vec<Strategy> {
    vec![
        Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".to_owned())),
        Strategy::Spread(SpreadField::InstanceId),
        Strategy::Random,
    ]
}

/// Everything needed to place tasks of one kind, compiled once.
#[derive(Debug, Clone)]
pub struct PlacementRequest {
    pub task: TaskSpec,
    pub constraints: Vec<Constraint>,
    pub strategies: Vec<Strategy>,
}

impl PlacementRequest {
    /// Compile ECS-shaped constraints and strategies (the task definition's
    /// constraints come first). An empty strategy list means
    /// [`default_strategies`]. Errors name the request field.
    pub fn compile(
        task: TaskSpec,
        definition_constraints: &[PlacementConstraint],
        constraints: &[PlacementConstraint],
        strategies: &[PlacementStrategy],
    ) -> Result<Self, InvalidInput> {
        let mut errors: Vec<FieldError> = Vec::new();
        validate::constraints(&mut errors, "placementConstraints", constraints, true);
        validate::strategies(&mut errors, "placementStrategy", strategies);
        let total = definition_constraints.len() + constraints.len();
        if total > validate::MAX_CONSTRAINTS {
            errors.push(FieldError {
                path: "placementConstraints".into(),
                message: format!("{total} constraints with the task definition's; at most {} are allowed", validate::MAX_CONSTRAINTS),
            });
        }
        if !errors.is_empty() {
            return Err(InvalidInput(errors));
        }
        let mut compiled = Vec::with_capacity(total);
        for (i, c) in definition_constraints.iter().chain(constraints).enumerate() {
            compiled.push(match c.kind {
                PlacementConstraintType::DistinctInstance => Constraint::DistinctInstance,
                PlacementConstraintType::MemberOf => {
                    let source = c.expression.clone().unwrap_or_default();
                    let expr = query::parse(&source)
                        .map_err(|e| InvalidInput::one(format!("placementConstraints[{i}].expression"), format!("`{source}`: {e}")))?;
                    Constraint::MemberOf { source, expr }
                }
            });
        }
        let strategies = if strategies.is_empty() {
            default_strategies()
        } else {
            strategies
                .iter()
                .map(|s| match s.kind {
                    PlacementStrategyType::Binpack => {
                        let f = s.field.as_deref().unwrap_or_default();
                        Strategy::Binpack(if f.eq_ignore_ascii_case("cpu") { BinpackField::Cpu } else { BinpackField::Memory })
                    }
                    // Validated above, so the field parses.
                    PlacementStrategyType::Spread => {
                        Strategy::Spread(s.field.as_deref().and_then(SpreadField::parse).unwrap_or(SpreadField::InstanceId))
                    }
                    PlacementStrategyType::Random => Strategy::Random,
                })
                .collect()
        };
        Ok(PlacementRequest { task, constraints: compiled, strategies })
    }
}

/// The engine: owns the random source so runs are reproducible from a seed.
#[derive(Debug)]
pub struct Placer {
    rng: SmallRng,
}

/// Per-call precomputation for one strategy.
enum Prepared {
    Binpack(BinpackField),
    /// A value column of the state and the group's task count per value,
    /// kept current as the call places tasks.
    SpreadValues { column: usize, counts: Vec<u32> },
    /// Task count of the group per instance (read from the state).
    SpreadInstance,
    Random,
}

impl Placer {
    pub fn new(seed: u64) -> Self {
        Placer { rng: SmallRng::seed_from_u64(seed) }
    }

    /// Place `count` tasks, one after another, each seeing the resources the
    /// earlier ones took. Successful placements are reserved in `state`.
    pub fn place(&mut self, state: &mut ClusterState, req: &PlacementRequest, count: usize) -> Vec<Result<Placement, PlacementFailure>> {
        let gid = state.group_id(&req.task.group);
        let cached = cache_static_constraints(state, req);
        let mut prepared: Vec<Prepared> = req
            .strategies
            .iter()
            .map(|s| match s {
                Strategy::Binpack(f) => Prepared::Binpack(*f),
                Strategy::Spread(SpreadField::InstanceId) => Prepared::SpreadInstance,
                Strategy::Spread(field) => {
                    let column = match field {
                        SpreadField::Attribute(a) => state.value_column(Some(a)),
                        _ => state.value_column(None),
                    };
                    let mut counts = vec![0u32; state.column_values(column)];
                    for (&v, &c) in state.column(column).iter().zip(state.group_counts(gid)) {
                        counts[v as usize] += c;
                    }
                    Prepared::SpreadValues { column, counts }
                }
                Strategy::Random => Prepared::Random,
            })
            .collect();
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            match self.choose(state, req, gid, &cached, &prepared) {
                Ok(idx) => {
                    let ports = state.reserve(idx, &req.task, gid);
                    for p in &mut prepared {
                        if let Prepared::SpreadValues { column, counts } = p {
                            counts[state.column(*column)[idx] as usize] += 1;
                        }
                    }
                    out.push(Ok(Placement { instance: idx, dynamic_host_ports: ports }));
                }
                Err(f) => out.push(Err(f)),
            }
        }
        out
    }

    fn choose(
        &mut self,
        st: &ClusterState,
        req: &PlacementRequest,
        gid: usize,
        cached: &[Option<usize>],
        prepared: &[Prepared],
    ) -> Result<usize, PlacementFailure> {
        let n = st.len();
        let mut eliminated = [0u32; 5];
        let group_counts = st.group_counts(gid);
        let mut best: Option<usize> = None;
        let mut best_key = [0u64; 5];
        let mut key = [0u64; 5];
        let k = prepared.len();
        for i in 0..n {
            if let Err(c) = st.check_at(i, req, group_counts, cached) {
                eliminated[c as usize] += 1;
                continue;
            }
            let inst = st.instance(i);
            // Lexicographic key over the chain; computed lazily so most
            // instances stop after the first strategy.
            let mut better = best.is_none();
            for (j, p) in prepared.iter().enumerate() {
                key[j] = match p {
                    Prepared::Binpack(BinpackField::Cpu) => u64::from(inst.cpu_free - req.task.cpu),
                    Prepared::Binpack(BinpackField::Memory) => u64::from(inst.mem_free - req.task.memory),
                    Prepared::SpreadValues { column, counts } => u64::from(counts[st.column(*column)[i] as usize]),
                    Prepared::SpreadInstance => u64::from(group_counts[i]),
                    Prepared::Random => self.rng.next_u64(),
                };
                if better {
                    continue;
                }
                if key[j] < best_key[j] {
                    better = true;
                } else if key[j] > best_key[j] {
                    break;
                }
            }
            if better {
                best = Some(i);
                best_key[..k].copy_from_slice(&key[..k]);
            }
        }
        best.ok_or_else(|| {
            let reason = Check::ALL.iter().rev().copied().find(|c| eliminated[*c as usize] > 0).unwrap_or(Check::Agent);
            PlacementFailure { reason, eliminated, instances: n as u32 }
        })
    }
}

/// Validate a placement someone else chose (an external scheduler through
/// StartTask, or a policy plugin): the instance exists and is ACTIVE with a
/// connected agent, the resources fit, the ports are free, and every
/// constraint holds. Reserves it on success, like [`Placer::place`].
pub fn place_on(state: &mut ClusterState, req: &PlacementRequest, instance: usize) -> Result<Placement, Check> {
    if instance >= state.len() {
        return Err(Check::Agent);
    }
    let gid = state.group_id(&req.task.group);
    let cached = cache_static_constraints(state, req);
    state.check_at(instance, req, state.group_counts(gid), &cached)?;
    let ports = state.reserve(instance, &req.task, gid);
    Ok(Placement { instance, dynamic_host_ports: ports })
}

/// For each constraint, the state's cache slot of its results when the
/// expression does not depend on running tasks.
fn cache_static_constraints(state: &mut ClusterState, req: &PlacementRequest) -> Vec<Option<usize>> {
    req.constraints
        .iter()
        .map(|c| match c {
            Constraint::MemberOf { source, expr } if expr.is_static() => Some(state.static_constraint(source, expr)),
            _ => None,
        })
        .collect()
}

/// Convenience for callers holding ECS protocol names.
pub fn protocol_index(p: Protocol) -> usize {
    match p {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
    }
}

#[cfg(test)]
mod tests;
