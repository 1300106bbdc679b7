//! Synthetic clusters for benchmarks and tests: three zones, four instance
//! types, a tenth of the instances nearly full, and attributes to constrain on.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::model::{
    PlacementConstraint, PlacementConstraintType, PlacementStrategy, PlacementStrategyType,
    Protocol,
};

use super::{ClusterState, InstanceSpec, PlacementRequest, TaskSpec};

pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
/// (type, CPU units, memory MiB)
pub const INSTANCE_TYPES: [(&str, u32, u32); 4] = [
    ("m.small", 1024, 2048),
    ("m.medium", 2048, 4096),
    ("m.large", 4096, 8192),
    ("m.xlarge", 8192, 16384),
];

/// A cluster of `n` instances, reproducible from `seed`.
pub fn cluster(n: usize, seed: u64) -> ClusterState {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut state = ClusterState::default();
    let filler = TaskSpec {
        cpu: 0,
        memory: 0,
        static_ports: vec![],
        dynamic_ports: vec![],
        group: "family:filler".into(),
        family: "filler".into(),
    };
    for i in 0..n {
        let (itype, cpu, memory) = INSTANCE_TYPES[rng.random_range(0..INSTANCE_TYPES.len())];
        let zone = ZONES[i % ZONES.len()];
        let mut attributes = vec![
            ("ecs.availability-zone".to_owned(), Some(zone.to_owned())),
            ("ecs.instance-type".to_owned(), Some(itype.to_owned())),
            ("ecs.os-type".to_owned(), Some("linux".to_owned())),
            (
                "cost".to_owned(),
                Some(rng.random_range(1..100u32).to_string()),
            ),
        ];
        if rng.random_ratio(1, 8) {
            attributes.push(("gpu".to_owned(), None));
        }
        let idx = state.add_instance(InstanceSpec {
            arn: format!("arn:aws:ecs:local:000000000000:container-instance/bench/{i:08x}"),
            host_id: format!("host-{i}"),
            active: true,
            agent_connected: true,
            agent_version: Some("0.1.0".into()),
            registered_at: 1_700_000_000.0 + i as f64,
            attributes,
            cpu,
            memory,
            reserved_tcp: vec![22],
            reserved_udp: vec![],
        });
        // A tenth nearly full, the rest partly used.
        let used = if rng.random_ratio(1, 10) {
            0.95
        } else {
            rng.random_range(0.0..0.6)
        };
        let task = TaskSpec {
            cpu: (f64::from(cpu) * used) as u32,
            memory: (f64::from(memory) * used) as u32,
            ..filler.clone()
        };
        state.add_task(idx, &task, &[(8080, Protocol::Tcp)]);
    }
    state
}

/// The benchmark's request: a small web task with one dynamic port, an
/// attribute constraint, distinctInstance, and the given strategy chain.
pub fn request(strategies: &[PlacementStrategy]) -> PlacementRequest {
    let task = TaskSpec {
        cpu: 256,
        memory: 512,
        static_ports: vec![],
        dynamic_ports: vec![Protocol::Tcp],
        group: "service:web".into(),
        family: "web".into(),
    };
    let constraints = [
        PlacementConstraint {
            kind: PlacementConstraintType::MemberOf,
            expression: Some("attribute:ecs.instance-type in [m.medium, m.large, m.xlarge] and attribute:ecs.os-type == linux".into()),
        },
        PlacementConstraint { kind: PlacementConstraintType::DistinctInstance, expression: None },
    ];
    match PlacementRequest::compile(task, &[], &constraints, strategies) {
        Ok(r) => r,
        // The inputs above are constants; a failure is a bug in this file.
        Err(e) => panic!("synthetic request does not compile: {e}"),
    }
}

/// Named strategy chains the benchmark measures.
pub fn strategy_chain(name: &str) -> Option<Vec<PlacementStrategy>> {
    let s = |kind, field: Option<&str>| PlacementStrategy {
        kind,
        field: field.map(str::to_owned),
    };
    Some(match name {
        "binpack" => vec![s(PlacementStrategyType::Binpack, Some("memory"))],
        "spread" => vec![s(
            PlacementStrategyType::Spread,
            Some("attribute:ecs.availability-zone"),
        )],
        "random" => vec![s(PlacementStrategyType::Random, None)],
        "spread-binpack" => vec![
            s(
                PlacementStrategyType::Spread,
                Some("attribute:ecs.availability-zone"),
            ),
            s(PlacementStrategyType::Binpack, Some("memory")),
        ],
        "default" => vec![],
        _ => return None,
    })
}

pub const STRATEGY_CHAINS: [&str; 5] = ["binpack", "spread", "random", "spread-binpack", "default"];
