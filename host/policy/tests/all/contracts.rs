//! The contract versions side by side: a policy synced through contract
//! 0.3.0's `bulk` export (attributes as columns, ports as one flat list)
//! answers exactly as the same policy synced through 0.1.0's per-instance
//! lists, and a 0.3.0 component as the 0.1.0 fixture built before either,
//! over clusters with attributes and static ports that change between
//! decisions.

use std::sync::Arc;

use berth_core::placement::synthetic;
use berth_policy::{HostConfig, LoadedPolicy, PolicyHost, PolicySession};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::differential::{chain, perturb, random_request};
use crate::{host, load, plugin};

/// A host that syncs every policy as contract 0.2.0 did, `bulk` or not.
fn list_host() -> Arc<PolicyHost> {
    let config = HostConfig {
        deadline: std::time::Duration::from_millis(250),
        pooling: false,
        bulk_sync: false,
        ..HostConfig::default()
    };
    Arc::new(PolicyHost::new(config).expect("policy host"))
}

fn load_on(host: &Arc<PolicyHost>, bytes: &[u8]) -> Arc<LoadedPolicy> {
    let compiled = host.compile(bytes).expect("compiles");
    Arc::new(LoadedPolicy::from_compiled(host, compiled).expect("loads"))
}

type Answer = Option<(usize, Vec<u16>)>;

/// Runs two sessions over copies of the same clusters, requests and
/// changes; every answer must be the same.
fn same_answers(
    label: &str,
    a: &mut dyn FnMut() -> PolicySession,
    b: &mut dyn FnMut() -> PolicySession,
    seeds: u64,
) {
    let chains = [chain("spread"), chain("binpack"), chain("spread-binpack")];
    let mut placed = 0;
    for seed in 0..seeds {
        let mut rng = SmallRng::seed_from_u64(seed);
        let n = rng.random_range(1..300);
        let mut left = synthetic::cluster(n, seed);
        let mut right = left.clone();
        let (mut sa, mut sb) = (a(), b());
        for round in 0..10 {
            let req = random_request(&mut rng, &chains);
            let count = rng.random_range(1..6);
            let answers = |s: &mut PolicySession, state| -> Vec<Answer> {
                s.place(state, &req, count)
                    .unwrap_or_else(|e| panic!("{label} seed {seed} round {round}: {e}"))
                    .into_iter()
                    .map(|r| r.ok().map(|p| (p.instance, p.dynamic_host_ports)))
                    .collect()
            };
            let got = answers(&mut sa, &mut left);
            assert_eq!(
                got,
                answers(&mut sb, &mut right),
                "{label}: seed {seed} round {round} ({n} instances, request {req:?})"
            );
            placed += got.iter().flatten().count();
            let mut r2 = rng.clone();
            perturb(&mut r2, &mut right, &mut sb);
            perturb(&mut rng, &mut left, &mut sa);
            if round == 5 {
                // A fresh instance, fully synced again, halfway through.
                sa.resync();
                sb.resync();
            }
        }
    }
    assert!(placed > 0, "{label}: nothing placed");
}

#[test]
fn bulk_and_list_syncs_of_the_same_policy_place_identically() {
    let lists = list_host();
    for name in ["zone_guard", "spread", "cheapest", "binpack"] {
        let bulk = load(name);
        assert!(bulk.compiled.bulk, "{name} exports `bulk`");
        assert_eq!(bulk.compiled.world, berth_policy::WORLD_0_3);
        let listed = load_on(&lists, &plugin(name));
        same_answers(
            name,
            &mut || PolicySession::new(host(), bulk.clone()),
            &mut || PolicySession::new(lists.clone(), listed.clone()),
            12,
        );
        for p in [&bulk, &listed] {
            assert!(
                p.stats().failures.iter().all(|(_, n)| *n == 0),
                "{name}: {:?}",
                p.stats()
            );
        }
    }
}

#[test]
fn a_0_3_0_component_places_as_the_0_1_0_fixture_does() {
    let old = load_on(
        &host(),
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/binpack-0.1.0.wasm"
        ))
        .expect("the 0.1.0 fixture"),
    );
    assert!(!old.compiled.bulk);
    assert_eq!(old.compiled.world, berth_policy::WORLD);
    let new = load("binpack");
    assert!(new.compiled.bulk);
    same_answers(
        "binpack 0.1.0 vs 0.3.0",
        &mut || PolicySession::new(host(), old.clone()),
        &mut || PolicySession::new(host(), new.clone()),
        20,
    );
}
