//! Why a decision was made: for one task of a request, each instance's
//! verdict: the check of the pipeline that eliminated it, or (it passed
//! every check) its key under each strategy of the chain, the least key
//! winning strategy by strategy, as [`Placer::place`](super::Placer::place)
//! does. Computed on the same state and by the same checks; it reserves
//! nothing.

use std::fmt;

use super::{
    BinpackField, Check, ClusterState, PlacementRequest, SpreadField, Strategy,
    cache_static_constraints,
};

/// One instance's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The first check of the pipeline it fails.
    Eliminated(Check),
    /// It passed every check: its key under each strategy that has one, in
    /// chain order (binpack: what would remain; spread: the group's tasks
    /// on its value); `random` has none.
    Candidate(Vec<u32>),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Eliminated(c) => write!(f, "eliminated by {c}"),
            Verdict::Candidate(keys) if keys.is_empty() => f.write_str("candidate"),
            Verdict::Candidate(keys) => {
                let k: Vec<String> = keys.iter().map(u32::to_string).collect();
                write!(f, "candidate, keys {}", k.join(","))
            }
        }
    }
}

/// A strategy as ECS writes it (`binpack(memory)`, `spread(attribute:ecs.availability-zone)`).
pub fn strategy_label(s: &Strategy) -> String {
    match s {
        Strategy::Binpack(BinpackField::Cpu) => "binpack(cpu)".into(),
        Strategy::Binpack(BinpackField::Memory) => "binpack(memory)".into(),
        Strategy::Spread(SpreadField::InstanceId) => "spread(instanceId)".into(),
        Strategy::Spread(SpreadField::Host) => "spread(host)".into(),
        Strategy::Spread(SpreadField::Attribute(a)) => format!("spread(attribute:{a})"),
        Strategy::Random => "random".into(),
    }
}

/// Every instance's verdict for one task of `req`, in instance order.
pub fn explain(state: &mut ClusterState, req: &PlacementRequest) -> Vec<Verdict> {
    let gid = state.group_id(&req.task.group);
    let cached = cache_static_constraints(state, req);
    let demand = state.port_demand(&req.task);
    // Value columns and per-value counts of the spread strategies.
    let spreads: Vec<Option<(usize, usize)>> = req
        .strategies
        .iter()
        .map(|s| match s {
            Strategy::Spread(SpreadField::Attribute(a)) => {
                let col = state.value_column(Some(a));
                Some((col, state.value_counts_slot(col, gid)))
            }
            Strategy::Spread(SpreadField::Host) => {
                let col = state.value_column(None);
                Some((col, state.value_counts_slot(col, gid)))
            }
            _ => None,
        })
        .collect();
    let st = &*state;
    let counts = st.group_counts(gid);
    (0..st.len())
        .map(|i| {
            if let Err(c) = st.check_at(i, req, &demand, counts, &cached) {
                return Verdict::Eliminated(c);
            }
            let keys = req
                .strategies
                .iter()
                .zip(&spreads)
                .filter_map(|(s, sp)| match (s, sp) {
                    (Strategy::Binpack(BinpackField::Cpu), _) => {
                        Some(st.cpu_free(i) - req.task.cpu)
                    }
                    (Strategy::Binpack(BinpackField::Memory), _) => {
                        Some(st.mem_free(i) - req.task.memory)
                    }
                    (Strategy::Spread(SpreadField::InstanceId), _) => Some(counts[i]),
                    (Strategy::Spread(_), Some((col, slot))) => {
                        Some(st.value_counts(*slot)[st.column(*col)[i] as usize])
                    }
                    _ => None,
                })
                .collect();
            Verdict::Candidate(keys)
        })
        .collect()
}
