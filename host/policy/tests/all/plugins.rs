//! Each shipped plugin, through the host.

use berth_core::placement::synthetic;
use berth_policy::PolicySession;

use crate::{distinct, host, load, member_of, request};

#[test]
fn each_shipped_plugin_places_a_batch_that_the_native_engine_accepts() {
    for name in ["binpack", "spread", "cheapest"] {
        let policy = load(name);
        assert_eq!(policy.name, name, "the policy reports its name");
        let mut state = synthetic::cluster(300, 7);
        let req = request(
            "service:web",
            256,
            512,
            &[],
            &[member_of("attribute:ecs.os-type == linux"), distinct()],
        );
        let mut session = PolicySession::new(host(), policy.clone());
        let answers = session
            .place(&mut state, &req, 20)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answers.len(), 20);
        let mut seen = std::collections::HashSet::new();
        for a in &answers {
            let p = a
                .as_ref()
                .unwrap_or_else(|e| panic!("{name}: unplaced: {e}"));
            assert!(
                seen.insert(p.instance),
                "{name}: distinctInstance broken on {}",
                p.instance
            );
            assert_eq!(p.dynamic_host_ports.len(), 1);
        }
        assert_eq!(policy.stats().decisions, 1);
    }
}

#[test]
fn cheapest_prefers_the_lowest_numeric_cost() {
    let policy = load("cheapest");
    let mut state = synthetic::cluster(200, 3);
    let req = request("service:api", 128, 256, &[], &[]);
    let mut session = PolicySession::new(host(), policy);
    for _ in 0..5 {
        // The expected pick, computed on the host before placing.
        let cost = |state: &berth_core::placement::ClusterState, i: usize| {
            state
                .instance(i)
                .attribute("cost")
                .flatten()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        };
        let fits: Vec<usize> = (0..state.len())
            .filter(|&i| state.cpu_free(i) >= 128 && state.mem_free(i) >= 256)
            .collect();
        let best = fits
            .iter()
            .map(|&i| (cost(&state, i), state.mem_free(i) - 256, i))
            .min()
            .expect("some instance fits");
        let answers = session.place(&mut state, &req, 1).expect("decision");
        let p = answers[0].as_ref().expect("placed");
        assert_eq!(
            p.instance,
            best.2,
            "cheapest picked {} (cost {}), expected {} (cost {})",
            p.instance,
            cost(&state, p.instance),
            best.2,
            best.0
        );
    }
}

#[test]
fn a_task_that_fits_nowhere_is_reported_unplaceable_not_failed() {
    let policy = load("binpack");
    let mut state = synthetic::cluster(50, 1);
    let req = request("service:huge", 1 << 20, 1 << 20, &[], &[]);
    let mut session = PolicySession::new(host(), policy.clone());
    let answers = session
        .place(&mut state, &req, 2)
        .expect("a decision, not a failure");
    assert!(answers.iter().all(|a| a.is_err()));
    assert!(policy.stats().failures.iter().all(|(_, n)| *n == 0));
}

/// A cluster for zone-guard: three zones, memory varied, every fifth
/// instance under maintenance (with the most memory, so a policy that
/// ignored the attribute would pick them).
fn guarded_cluster(n: usize) -> berth_core::placement::ClusterState {
    use berth_core::placement::{ClusterState, InstanceSpec};
    let mut state = ClusterState::default();
    for i in 0..n {
        let maintenance = i % 5 == 0;
        let mut attributes = vec![(
            "ecs.availability-zone".to_owned(),
            Some(["zone-a", "zone-b", "zone-c"][i % 3].to_owned()),
        )];
        if maintenance {
            attributes.push(("maintenance".to_owned(), None));
        }
        attributes.sort();
        state.add_instance(InstanceSpec {
            arn: format!("arn:aws:ecs:local:000000000000:container-instance/default/ci{i:04}"),
            host_id: format!("host-{i}"),
            active: true,
            agent_connected: true,
            agent_version: Some("0.1.0".into()),
            registered_at: 1_700_000_000.0,
            attributes,
            cpu: 4096,
            memory: if maintenance {
                32768
            } else {
                2048 + 512 * (i as u32 % 7)
            },
            reserved_tcp: vec![],
            reserved_udp: vec![],
        });
    }
    state
}

#[test]
fn zone_guard_skips_maintenance_balances_zones_then_takes_the_most_memory() {
    let policy = load("zone_guard");
    assert_eq!(policy.name, "zone-guard");
    let mut state = guarded_cluster(60);
    let req = request("service:web", 256, 512, &[], &[]);
    let mut session = PolicySession::new(host(), policy);
    for round in 0..40 {
        // The expected pick, computed on the host before placing.
        let zone = |i: usize| state.instance(i).attribute("ecs.availability-zone");
        let per_zone = |z| {
            (0..state.len())
                .filter(|&j| zone(j) == z)
                .map(|j| state.group_count("service:web", j))
                .sum::<u32>()
        };
        let best = (0..state.len())
            .filter(|&i| state.instance(i).attribute("maintenance").is_none())
            .filter(|&i| state.cpu_free(i) >= 256 && state.mem_free(i) >= 512)
            .min_by_key(|&i| (per_zone(zone(i)), std::cmp::Reverse(state.mem_free(i)), i))
            .expect("some instance fits");
        let answers = session.place(&mut state, &req, 1).expect("decision");
        let p = answers[0].as_ref().expect("placed");
        assert_eq!(p.instance, best, "round {round}");
    }
}

#[test]
fn zone_guard_names_the_instances_it_held_back() {
    // Only the maintenance instances have room for this task: the answer
    // names them by container instance id (through the `names` import).
    let policy = load("zone_guard");
    assert!(policy.compiled.uses_names);
    let mut state = guarded_cluster(12);
    let req = request("service:big", 256, 16384, &[], &[]);
    let mut session = PolicySession::new(host(), policy);
    let answers = session.place(&mut state, &req, 1).expect("a decision");
    assert_eq!(
        answers[0].as_ref().expect_err("unplaced"),
        "only instances under maintenance fit: ci0000, ci0005, ci0010"
    );
    // Instances added later are named too.
    let mut bigger = guarded_cluster(16);
    let answers = session.place(&mut bigger, &req, 1).expect("a decision");
    assert_eq!(
        answers[0].as_ref().expect_err("unplaced"),
        "only instances under maintenance fit: ci0000, ci0005, ci0010, ci0015"
    );
}

#[test]
fn a_component_of_contract_0_1_0_still_loads_and_places() {
    // Built before `names` existed: the 0.1.0 world, no `names` import.
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/binpack-0.1.0.wasm"
    ))
    .expect("the 0.1.0 fixture");
    let compiled = host().compile(&bytes).expect("compiles");
    assert!(!compiled.uses_names);
    assert_eq!(compiled.world, "berth:placement/placement-policy@0.1.0");
    let policy = std::sync::Arc::new(
        berth_policy::LoadedPolicy::from_compiled(&host(), compiled).expect("loads"),
    );
    let mut state = synthetic::cluster(100, 2);
    let req = request("service:web", 256, 512, &[], &[]);
    let mut session = PolicySession::new(host(), policy);
    let answers = session.place(&mut state, &req, 3).expect("decision");
    assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");
}
