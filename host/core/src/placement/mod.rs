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

mod explain;
mod state;
pub mod synthetic;

use std::fmt;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::model::{
    PRIVILEGED_CAPABILITY, PlacementConstraint, PlacementConstraintType, PlacementStrategy,
    PlacementStrategyType, Protocol, TaskDefinition,
};
use crate::query::{self, Expr};
use crate::validate::{self, FieldError, InvalidInput};

pub use explain::{Verdict, explain, strategy_label};
use state::PortDemand;
pub use state::{
    ClusterState, DEFAULT_EPHEMERAL_PORTS, InstanceSpec, InstanceState, PortSet, TaskSpec,
};

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
    pub const ALL: [Check; 5] = [
        Check::Agent,
        Check::Cpu,
        Check::Memory,
        Check::Ports,
        Check::Attribute,
    ];

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
        write!(
            f,
            "{}: no instance of {} fits (",
            self.reason, self.instances
        )?;
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
    MemberOf {
        source: String,
        expr: Expr,
    },
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
            s.strip_prefix("attribute:")
                .filter(|n| !n.is_empty())
                .map(|n| SpreadField::Attribute(n.to_owned()))
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

/// The constraint a privileged container implies: only instances whose
/// agent allows privileged containers (`--allow-privileged`) take it.
fn privileged_expression() -> String {
    format!("attribute:{PRIVILEGED_CAPABILITY} exists")
}

/// The placement constraints of a task of `td`: its own, and those its
/// containers imply (a privileged container needs an instance with
/// [`PRIVILEGED_CAPABILITY`], so placement answers `ATTRIBUTE` where no
/// agent allows it, as ECS does for a missing capability).
pub fn task_definition_constraints(td: &TaskDefinition) -> Vec<PlacementConstraint> {
    let mut out = td.placement_constraints.clone();
    if td
        .container_definitions
        .iter()
        .any(|d| d.privileged == Some(true))
    {
        out.push(PlacementConstraint {
            kind: PlacementConstraintType::MemberOf,
            expression: Some(privileged_expression()),
        });
    }
    out
}

/// Whether `c` is one [`task_definition_constraints`] added (not the user's,
/// so not counted against [`validate::MAX_CONSTRAINTS`]).
fn is_implied(c: &PlacementConstraint) -> bool {
    c.kind == PlacementConstraintType::MemberOf
        && c.expression.as_deref() == Some(privileged_expression().as_str())
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
        let counted = total
            - definition_constraints
                .iter()
                .filter(|c| is_implied(c))
                .count();
        if counted > validate::MAX_CONSTRAINTS {
            errors.push(FieldError {
                path: "placementConstraints".into(),
                message: format!(
                    "{counted} constraints with the task definition's; at most {} are allowed",
                    validate::MAX_CONSTRAINTS
                ),
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
                    let expr = query::parse(&source).map_err(|e| {
                        InvalidInput::one(
                            format!("placementConstraints[{i}].expression"),
                            format!("`{source}`: {e}"),
                        )
                    })?;
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
                        Strategy::Binpack(if f.eq_ignore_ascii_case("cpu") {
                            BinpackField::Cpu
                        } else {
                            BinpackField::Memory
                        })
                    }
                    // Validated above, so the field parses.
                    PlacementStrategyType::Spread => Strategy::Spread(
                        s.field
                            .as_deref()
                            .and_then(SpreadField::parse)
                            .unwrap_or(SpreadField::InstanceId),
                    ),
                    PlacementStrategyType::Random => Strategy::Random,
                })
                .collect()
        };
        Ok(PlacementRequest {
            task,
            constraints: compiled,
            strategies,
        })
    }
}

/// The engine: owns the random source so runs are reproducible from a seed.
#[derive(Debug)]
pub struct Placer {
    rng: SmallRng,
    /// Reused between decisions, so placing allocates nothing per task.
    candidates: Vec<u32>,
    fits: Vec<u8>,
}

/// Per-call precomputation for one strategy.
enum Prepared {
    Binpack(BinpackField),
    /// A value column of the state, and the state's slot counting the
    /// group's tasks per value (kept current by the state itself).
    SpreadValues {
        column: usize,
        counts: usize,
    },
    /// Task count of the group per instance (read from the state).
    SpreadInstance,
    Random,
}

impl Placer {
    pub fn new(seed: u64) -> Self {
        Placer {
            rng: SmallRng::seed_from_u64(seed),
            candidates: Vec::new(),
            fits: Vec::new(),
        }
    }

    /// Place `count` tasks, one after another, each seeing the resources the
    /// earlier ones took. Successful placements are reserved in `state`.
    pub fn place(
        &mut self,
        state: &mut ClusterState,
        req: &PlacementRequest,
        count: usize,
    ) -> Vec<Result<Placement, PlacementFailure>> {
        let gid = state.group_id(&req.task.group);
        let cached = cache_static_constraints(state, req);
        let demand = state.port_demand(&req.task);
        let mask = state.combined_mask(&cached);
        let prepared: Vec<Prepared> = req
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
                    let counts = state.value_counts_slot(column, gid);
                    Prepared::SpreadValues { column, counts }
                }
                Strategy::Random => Prepared::Random,
            })
            .collect();
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            match self.choose(state, req, &demand, gid, &cached, mask, &prepared) {
                Ok(idx) => {
                    let ports = state.reserve(idx, &req.task, gid);
                    out.push(Ok(Placement {
                        instance: idx,
                        dynamic_host_ports: ports,
                    }));
                }
                Err(f) => out.push(Err(f)),
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn choose(
        &mut self,
        st: &ClusterState,
        req: &PlacementRequest,
        demand: &PortDemand,
        gid: usize,
        cached: &[Option<usize>],
        mask: usize,
        prepared: &[Prepared],
    ) -> Result<usize, PlacementFailure> {
        let n = st.len();
        let group_counts = st.group_counts(gid);
        let (cpu_free, mem_free, eph_tcp, eph_udp) = st.hot_columns();
        let (cpu, memory) = (req.task.cpu, req.task.memory);
        // Limits that let every check be a comparison on a column: a check
        // the request does not need compares against the type's maximum.
        let max_group = if req
            .constraints
            .iter()
            .any(|c| matches!(c, Constraint::DistinctInstance))
        {
            0
        } else {
            u32::MAX
        };
        // None: more dynamic ports than the range holds; nothing passes and
        // the failure path reports RESOURCE:PORTS.
        let (max_tcp, max_udp, any_fits) = match st.ephemeral_limits(demand) {
            Some((tcp, udp)) => (tcp, udp, true),
            None => (0, 0, false),
        };
        let mask = st.static_mask(mask);
        // 1. Filter the dense columns without branching: most instances end
        //    here, in no pattern a branch predictor could learn.
        // Two passes: the checks alone vectorise (no data-dependent store),
        // then a compaction keeps the indices that passed.
        let fits = &mut self.fits;
        fits.resize(n, 0);
        // Re-sliced to n so the compiler drops the bounds checks.
        let (fits, mask, cpu_free, mem_free, group_counts, eph_tcp, eph_udp) = (
            &mut fits[..n],
            &mask[..n],
            &cpu_free[..n],
            &mem_free[..n],
            &group_counts[..n],
            &eph_tcp[..n],
            &eph_udp[..n],
        );
        for i in 0..n {
            fits[i] = u8::from(mask[i])
                & u8::from(cpu_free[i] >= cpu)
                & u8::from(mem_free[i] >= memory)
                & u8::from(group_counts[i] <= max_group)
                & u8::from(eph_tcp[i] <= max_tcp)
                & u8::from(eph_udp[i] <= max_udp);
        }
        let cands = &mut self.candidates;
        cands.resize(n, 0);
        let mut len = 0;
        for (i, &ok) in fits.iter().enumerate() {
            cands[len] = i as u32;
            len += usize::from(ok);
        }
        cands.truncate(if any_fits { len } else { 0 });
        // 2. The rarer checks (static host ports, constraints on running
        //    tasks) on what is left.
        if !req.task.static_ports.is_empty()
            || cached
                .iter()
                .zip(&req.constraints)
                .any(|(s, c)| s.is_none() && matches!(c, Constraint::MemberOf { .. }))
        {
            cands.retain(|&i| st.check_rest(i as usize, req, demand, group_counts, cached));
        }
        if cands.is_empty() {
            // The slow path, only on failure: which check removed how many.
            let mut eliminated = [0u32; 5];
            for i in 0..n {
                if let Err(c) = st.check_at(i, req, demand, group_counts, cached) {
                    eliminated[c as usize] += 1;
                }
            }
            let reason = Check::ALL
                .iter()
                .rev()
                .copied()
                .find(|c| eliminated[*c as usize] > 0)
                .unwrap_or(Check::Agent);
            return Err(PlacementFailure {
                reason,
                eliminated,
                instances: n as u32,
            });
        }
        // 3. Each strategy in turn keeps the candidates with the least key;
        //    the next one only breaks ties among them. Two strategies in a
        //    row share one pass over a combined key.
        // Binds `$k` to strategy `$p`'s key function and evaluates `$body`,
        // so every strategy (and pair of strategies) gets its own loop.
        macro_rules! with_key {
            ($p:expr, |$k:ident| $body:expr) => {
                match $p {
                    Prepared::Binpack(BinpackField::Cpu) => {
                        let $k = |i: usize| cpu_free[i] - cpu;
                        $body
                    }
                    Prepared::Binpack(BinpackField::Memory) => {
                        let $k = |i: usize| mem_free[i] - memory;
                        $body
                    }
                    Prepared::SpreadValues { column, counts } => {
                        let (values, counts) = (st.column(*column), st.value_counts(*counts));
                        let $k = |i: usize| counts[values[i] as usize];
                        $body
                    }
                    Prepared::SpreadInstance => {
                        let $k = |i: usize| group_counts[i];
                        $body
                    }
                    // Handled before any key is computed.
                    Prepared::Random => {
                        let $k = |_: usize| 0u32;
                        $body
                    }
                }
            };
        }
        let mut chain = prepared.iter().peekable();
        while let Some(p) = chain.next() {
            if cands.len() == 1 {
                break;
            }
            if let Prepared::Random = p {
                // A uniform pick among the ties; later strategies cannot matter.
                let pick = cands[self.rng.random_range(0..cands.len())];
                cands.clear();
                cands.push(pick);
                break;
            }
            match chain.next_if(|q| !matches!(q, Prepared::Random)) {
                Some(q) => with_key!(p, |k1| with_key!(q, |k2| keep_least(
                    cands,
                    |i| (u64::from(k1(i)) << 32) | u64::from(k2(i))
                ))),
                None => with_key!(p, |k1| keep_least(cands, |i| u64::from(k1(i)))),
            }
        }
        Ok(cands[0] as usize)
    }
}

/// Keeps the candidates whose key is least. Generic, so each strategy gets
/// its own tight loop.
fn keep_least(cands: &mut Vec<u32>, key: impl Fn(usize) -> u64) {
    // One pass, compacting in place (the write index never passes the read
    // index); a smaller key restarts the kept list.
    let mut least = u64::MAX;
    let mut len = 0;
    for j in 0..cands.len() {
        let i = cands[j];
        let k = key(i as usize);
        if k < least {
            least = k;
            len = 0;
        }
        cands[len] = i;
        len += usize::from(k == least);
    }
    cands.truncate(len);
}

/// Validate a placement someone else chose (an external scheduler through
/// StartTask, or a policy plugin): the instance exists and is ACTIVE with a
/// connected agent, the resources fit, the ports are free, and every
/// constraint holds. Reserves it on success, like [`Placer::place`].
pub fn place_on(
    state: &mut ClusterState,
    req: &PlacementRequest,
    instance: usize,
) -> Result<Placement, Check> {
    if instance >= state.len() {
        return Err(Check::Agent);
    }
    let gid = state.group_id(&req.task.group);
    let cached = cache_static_constraints(state, req);
    let demand = state.port_demand(&req.task);
    state.check_at(instance, req, &demand, state.group_counts(gid), &cached)?;
    let ports = state.reserve(instance, &req.task, gid);
    Ok(Placement {
        instance,
        dynamic_host_ports: ports,
    })
}

/// For each constraint, the state's cache slot of its results when the
/// expression does not depend on running tasks.
fn cache_static_constraints(
    state: &mut ClusterState,
    req: &PlacementRequest,
) -> Vec<Option<usize>> {
    req.constraints
        .iter()
        .map(|c| match c {
            Constraint::MemberOf { source, expr } if expr.is_static() => {
                Some(state.static_constraint(source, expr))
            }
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
