//! The binpack and spread plugins give the same answers as berth-core's
//! native strategies on the same inputs, over generated clusters and
//! requests, with changes to the cluster between decisions; the `follow`
//! plugin, which applies whatever strategy the request carries, does too
//! when every request of a session carries another one.

use berth_core::model::{PlacementStrategy, PlacementStrategyType, Protocol};
use berth_core::placement::{
    ClusterState, InstanceSpec, PlacementRequest, Placer, TaskSpec, synthetic,
};
use berth_policy::PolicySession;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::{distinct, host, load, member_of, request};

pub(crate) fn random_request(
    rng: &mut SmallRng,
    chains: &[Vec<PlacementStrategy>],
) -> PlacementRequest {
    // One chain draws nothing, so those tests keep their earlier sequences.
    let strategies = if chains.len() == 1 {
        &chains[0]
    } else {
        &chains[rng.random_range(0..chains.len())]
    };
    let mut constraints = Vec::new();
    if rng.random_bool(0.5) {
        constraints.push(member_of(
            "attribute:ecs.instance-type in [m.medium, m.large, m.xlarge]",
        ));
    }
    if rng.random_bool(0.3) {
        constraints.push(distinct());
    }
    let group = ["service:web", "service:api", "family:batch"][rng.random_range(0..3)];
    let mut req = request(
        group,
        rng.random_range(0..2048),
        rng.random_range(1..4096),
        strategies,
        &constraints,
    );
    if rng.random_bool(0.2) {
        req.task
            .static_ports
            .push((rng.random_range(8000..8003), Protocol::Tcp));
    }
    req
}

/// Changes the cluster outside the policy, as the rest of berth would, and
/// tells the session which instances changed.
pub(crate) fn perturb(rng: &mut SmallRng, state: &mut ClusterState, session: &mut PolicySession) {
    match rng.random_range(0..5) {
        0 if !state.is_empty() => {
            let i = rng.random_range(0..state.len());
            let t = TaskSpec {
                cpu: 100,
                memory: 100,
                static_ports: vec![],
                dynamic_ports: vec![],
                group: "service:web".into(),
                family: "web".into(),
            };
            state.add_task(i, &t, &[(8001, Protocol::Tcp)]);
            session.usage_changed(i);
        }
        1 if !state.is_empty() => {
            let i = rng.random_range(0..state.len());
            let mut attrs = state.instance(i).spec.attributes.clone();
            for a in &mut attrs {
                if a.0 == "ecs.availability-zone" {
                    a.1 = Some(synthetic::ZONES[rng.random_range(0..3)].into());
                }
            }
            let active = rng.random_bool(0.8);
            state.update_instance(i, active, true, attrs);
            session.instance_changed(i);
        }
        2 => {
            let n = state.len();
            let i = state.add_instance(InstanceSpec {
                arn: format!("arn:aws:ecs:local:000000000000:container-instance/t/new{n}"),
                host_id: format!("new-{n}"),
                active: true,
                agent_connected: true,
                agent_version: None,
                registered_at: 0.0,
                attributes: vec![
                    (
                        "ecs.availability-zone".into(),
                        Some(synthetic::ZONES[n % 3].into()),
                    ),
                    ("ecs.instance-type".into(), Some("m.large".into())),
                ],
                cpu: 4096,
                memory: 8192,
                reserved_tcp: vec![22],
                reserved_udp: vec![],
            });
            session.instance_changed(i);
        }
        3 if !state.is_empty() => {
            // A task of a group the policy may know stops.
            let i = rng.random_range(0..state.len());
            let t = TaskSpec {
                cpu: 50,
                memory: 50,
                static_ports: vec![],
                dynamic_ports: vec![],
                group: "service:web".into(),
                family: "web".into(),
            };
            // Only a task that is there: removing one that is not would
            // saturate the group count but not the core's per-value counts.
            if state.group_count("service:web", i) > 0 {
                state.remove_task(i, &t, &[]);
                session.usage_changed(i);
            }
        }
        _ => {}
    }
}

fn differential(chains: &[Vec<PlacementStrategy>], plugin: &str, seeds: u64) {
    let policy = load(plugin);
    for seed in 0..seeds {
        let mut rng = SmallRng::seed_from_u64(seed);
        let n = rng.random_range(1..400);
        let mut native = synthetic::cluster(n, seed);
        let mut mirrored = native.clone();
        let mut placer = Placer::new(seed);
        let mut session = PolicySession::new(host(), policy.clone());
        for round in 0..12 {
            let req = random_request(&mut rng, chains);
            let count = rng.random_range(1..8);
            let expected: Vec<Option<(usize, Vec<u16>)>> = placer
                .place(&mut native, &req, count)
                .into_iter()
                .map(|r| r.ok().map(|p| (p.instance, p.dynamic_host_ports)))
                .collect();
            let got: Vec<Option<(usize, Vec<u16>)>> = session
                .place(&mut mirrored, &req, count)
                .unwrap_or_else(|e| panic!("{plugin} seed {seed} round {round}: {e}"))
                .into_iter()
                .map(|r| r.ok().map(|p| (p.instance, p.dynamic_host_ports)))
                .collect();
            assert_eq!(
                got, expected,
                "{plugin} vs native: seed {seed} round {round} ({n} instances, request {req:?})"
            );
            // The same change on both sides.
            let mut r2 = rng.clone();
            let mut throwaway = PolicySession::new(host(), policy.clone());
            perturb(&mut r2, &mut native, &mut throwaway);
            perturb(&mut rng, &mut mirrored, &mut session);
        }
    }
    assert!(
        policy.stats().failures.iter().all(|(_, n)| *n == 0),
        "{:?}",
        policy.stats()
    );
}

pub(crate) fn chain(name: &str) -> Vec<PlacementStrategy> {
    synthetic::strategy_chain(name).expect("known chain")
}

#[test]
fn binpack_plugin_matches_native_binpack() {
    differential(&[chain("binpack")], "binpack", 40);
}

#[test]
fn spread_plugin_matches_native_spread() {
    differential(&[chain("spread")], "spread", 40);
}

#[test]
fn follow_plugin_matches_native_whatever_strategy_each_request_carries() {
    let s = |kind, field: &str| PlacementStrategy {
        kind,
        field: Some(field.to_owned()),
    };
    let chains = [
        chain("binpack"),
        chain("spread"),
        chain("spread-binpack"),
        vec![s(PlacementStrategyType::Binpack, "cpu")],
        vec![
            s(PlacementStrategyType::Spread, "instanceId"),
            s(PlacementStrategyType::Binpack, "cpu"),
        ],
        vec![
            s(PlacementStrategyType::Spread, "attribute:ecs.instance-type"),
            s(PlacementStrategyType::Binpack, "memory"),
        ],
    ];
    differential(&chains, "follow", 40);
}
