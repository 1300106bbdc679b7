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
