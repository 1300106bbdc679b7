use std::collections::{BTreeMap, HashSet};

use proptest::prelude::{
    Just, ProptestConfig, any, prop, prop_assert, prop_assert_eq, prop_oneof, proptest,
};
use proptest::strategy::Strategy as _;

use super::*;
use crate::model::{
    PlacementConstraint, PlacementConstraintType as C, PlacementStrategy,
    PlacementStrategyType as S, Protocol,
};

fn inst(i: usize, zone: &str, cpu: u32, memory: u32) -> InstanceSpec {
    InstanceSpec {
        arn: format!("ci-{i}"),
        host_id: format!("host-{i}"),
        active: true,
        agent_connected: true,
        agent_version: Some("1.2.0".into()),
        registered_at: 1_700_000_000.0,
        attributes: vec![("ecs.availability-zone".into(), Some(zone.into()))],
        cpu,
        memory,
        reserved_tcp: vec![22],
        reserved_udp: vec![],
    }
}

fn task(cpu: u32, memory: u32, group: &str) -> TaskSpec {
    TaskSpec {
        cpu,
        memory,
        static_ports: vec![],
        dynamic_ports: vec![],
        group: group.into(),
        family: String::new(),
    }
}

fn strat(kind: S, field: Option<&str>) -> PlacementStrategy {
    PlacementStrategy {
        kind,
        field: field.map(str::to_owned),
    }
}

fn member_of(e: &str) -> PlacementConstraint {
    PlacementConstraint {
        kind: C::MemberOf,
        expression: Some(e.into()),
    }
}

fn distinct() -> PlacementConstraint {
    PlacementConstraint {
        kind: C::DistinctInstance,
        expression: None,
    }
}

fn req(t: TaskSpec, cs: &[PlacementConstraint], ss: &[PlacementStrategy]) -> PlacementRequest {
    PlacementRequest::compile(t, &[], cs, ss).expect("request compiles")
}

fn placed(results: &[Result<Placement, PlacementFailure>]) -> Vec<usize> {
    results
        .iter()
        .map(|r| r.as_ref().expect("placed").instance)
        .collect()
}

#[test]
fn binpack_picks_least_remaining_that_fits() {
    let mut st = ClusterState::default();
    st.add_instance(inst(0, "a", 4096, 8192));
    st.add_instance(inst(1, "a", 4096, 1024));
    st.add_instance(inst(2, "a", 4096, 600));
    let r = req(
        task(100, 700, "g"),
        &[],
        &[strat(S::Binpack, Some("memory"))],
    );
    // Instance 2 has least memory but 700 does not fit; 1 is next.
    assert_eq!(placed(&Placer::new(1).place(&mut st, &r, 1)), vec![1]);
    assert_eq!(st.mem_free(1), 324);
}

#[test]
fn count_accounts_for_earlier_tasks_of_the_call() {
    let mut st = ClusterState::default();
    st.add_instance(inst(0, "a", 1024, 1024));
    st.add_instance(inst(1, "a", 1024, 1024));
    let r = req(task(512, 512, "g"), &[], &[strat(S::Binpack, Some("cpu"))]);
    let out = Placer::new(1).place(&mut st, &r, 5);
    assert_eq!(placed(&out[..4]), vec![0, 0, 1, 1]);
    let f = out[4].as_ref().expect_err("fifth does not fit");
    assert_eq!(f.reason, Check::Cpu);
    assert_eq!(f.eliminated_by(Check::Cpu), 2);
    assert_eq!(
        f.to_string(),
        "RESOURCE:CPU: no instance of 2 fits (2 eliminated by RESOURCE:CPU)"
    );
}

#[test]
fn spread_balances_zones_then_instances() {
    let mut st = ClusterState::default();
    for i in 0..6 {
        st.add_instance(inst(i, ["a", "b", "c"][i % 3], 4096, 4096));
    }
    let r = req(task(10, 10, "g"), &[], &[]);
    let out = placed(&Placer::new(7).place(&mut st, &r, 6));
    let mut zones = BTreeMap::new();
    for i in &out {
        *zones.entry(i % 3).or_insert(0) += 1;
    }
    assert_eq!(zones.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    // The default chain also spreads over instances: six tasks, six instances.
    assert_eq!(out.iter().collect::<HashSet<_>>().len(), 6);
}

#[test]
fn failure_names_the_check_that_removed_the_last_candidates() {
    let mut st = ClusterState::default();
    st.add_instance(inst(0, "a", 4096, 4096));
    st.add_instance(inst(1, "b", 100, 4096));
    st.add_instance(inst(2, "c", 4096, 100));
    let mut down = inst(3, "a", 4096, 4096);
    down.agent_connected = false;
    st.add_instance(down);
    let r = req(
        task(500, 500, "g"),
        &[member_of("attribute:ecs.availability-zone == b")],
        &[],
    );
    let f = Placer::new(1)
        .place(&mut st, &r, 1)
        .remove(0)
        .expect_err("no fit");
    assert_eq!(f.reason, Check::Attribute);
    assert_eq!(f.eliminated, [1, 1, 1, 0, 1]);
    let empty = Placer::new(1)
        .place(&mut ClusterState::default(), &r, 1)
        .remove(0)
        .expect_err("empty");
    assert_eq!(
        empty.to_string(),
        "AGENT: no container instances in the cluster"
    );
}

#[test]
fn ports_static_conflict_and_dynamic_choice() {
    let mut st = ClusterState::new((50000, 50002));
    st.add_instance(inst(0, "a", 4096, 4096));
    let mut t = task(1, 1, "g");
    t.static_ports = vec![(80, Protocol::Tcp)];
    t.dynamic_ports = vec![Protocol::Tcp, Protocol::Udp];
    let r = req(t, &[], &[]);
    let mut p = Placer::new(1);
    let first = p.place(&mut st, &r, 2);
    assert_eq!(
        first[0].as_ref().expect("placed").dynamic_host_ports,
        vec![50000, 50000]
    );
    assert_eq!(
        first[1].as_ref().expect_err("port 80 taken").reason,
        Check::Ports
    );
    // Only dynamic ports: three TCP ports in range, one taken.
    let mut t2 = task(1, 1, "g");
    t2.dynamic_ports = vec![Protocol::Tcp, Protocol::Tcp];
    let r2 = req(t2, &[], &[]);
    assert_eq!(
        p.place(&mut st, &r2, 1)[0]
            .as_ref()
            .expect("placed")
            .dynamic_host_ports,
        vec![50001, 50002]
    );
    assert_eq!(
        p.place(&mut st, &r2, 1)[0]
            .as_ref()
            .expect_err("range used up")
            .reason,
        Check::Ports
    );
    assert!(st.instance(0).ports[0].contains(22), "reserved port kept");
}

/// A port given back (its task stopped, perhaps because something outside
/// berth held it and the bind failed) is not the next one handed out: the
/// search moves on through the range and wraps around.
#[test]
fn a_freed_dynamic_port_is_not_handed_straight_back() {
    let mut st = ClusterState::new((50000, 50003));
    st.add_instance(inst(0, "a", 4096, 4096));
    let mut t = task(1, 1, "g");
    t.dynamic_ports = vec![Protocol::Tcp];
    let r = req(t.clone(), &[], &[]);
    let mut p = Placer::new(1);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let port = p.place(&mut st, &r, 1)[0]
            .as_ref()
            .expect("placed")
            .dynamic_host_ports[0];
        // The task fails at once and gives its port back.
        st.remove_task(0, &t, &[(port, Protocol::Tcp)]);
        seen.push(port);
    }
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "port handed straight back: {seen:?}");
    }
    let mut distinct = seen[..4].to_vec();
    distinct.sort_unstable();
    assert_eq!(distinct, [50000, 50001, 50002, 50003], "every port in turn");
    assert_eq!(seen[4], seen[0], "wraps around the range");
}

#[test]
fn distinct_instance_and_task_group_constraints() {
    let mut st = ClusterState::default();
    for i in 0..3 {
        st.add_instance(inst(i, "a", 4096, 4096));
    }
    let r = req(
        task(1, 1, "service:web"),
        &[distinct()],
        &[strat(S::Binpack, Some("cpu"))],
    );
    let out = Placer::new(1).place(&mut st, &r, 4);
    assert_eq!(placed(&out[..3]).iter().collect::<HashSet<_>>().len(), 3);
    assert_eq!(
        out[3].as_ref().expect_err("all taken").reason,
        Check::Attribute
    );
    // Co-locate a cache with the web tasks only: task:group is re-evaluated per decision.
    let mut st2 = ClusterState::default();
    for i in 0..3 {
        st2.add_instance(inst(i, "a", 4096, 4096));
    }
    st2.add_task(2, &task(1, 1, "service:web"), &[]);
    let r2 = req(
        task(1, 1, "cache"),
        &[member_of("task:group == service:web")],
        &[],
    );
    assert_eq!(placed(&Placer::new(1).place(&mut st2, &r2, 2)), vec![2, 2]);
}

#[test]
fn random_is_reproducible_from_the_seed() {
    let build = || {
        let mut st = ClusterState::default();
        for i in 0..50 {
            st.add_instance(inst(i, "a", 4096, 4096));
        }
        st
    };
    let r = req(task(1, 1, "g"), &[], &[strat(S::Random, None)]);
    let a = placed(&Placer::new(42).place(&mut build(), &r, 20));
    let b = placed(&Placer::new(42).place(&mut build(), &r, 20));
    let c = placed(&Placer::new(43).place(&mut build(), &r, 20));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn place_on_checks_an_external_choice() {
    let mut st = ClusterState::default();
    st.add_instance(inst(0, "a", 1024, 1024));
    let mut drained = inst(1, "a", 4096, 4096);
    drained.active = false;
    st.add_instance(drained);
    let r = req(task(600, 10, "g"), &[], &[]);
    assert_eq!(place_on(&mut st, &r, 1), Err(Check::Agent));
    assert_eq!(place_on(&mut st, &r, 9), Err(Check::Agent));
    assert!(place_on(&mut st, &r, 0).is_ok());
    assert_eq!(place_on(&mut st, &r, 0), Err(Check::Cpu));
}

#[test]
fn compile_rejects_bad_requests_naming_the_field() {
    let e = PlacementRequest::compile(
        task(1, 1, "g"),
        &[],
        &[],
        &[strat(S::Binpack, Some("disk"))],
    )
    .expect_err("bad field");
    assert!(
        e.to_string()
            .starts_with("placementStrategy[0].field: Some(\"disk\"): binpack takes"),
        "{e}"
    );
    let e = PlacementRequest::compile(task(1, 1, "g"), &[], &[member_of("bogus == 1")], &[])
        .expect_err("bad expr");
    assert!(
        e.to_string()
            .starts_with("placementConstraints[0].expression: `bogus == 1`"),
        "{e}"
    );
    let six: Vec<_> = (0..6).map(|_| strat(S::Random, None)).collect();
    assert!(PlacementRequest::compile(task(1, 1, "g"), &[], &[], &six).is_err());
    let eleven: Vec<_> = (0..11).map(|_| distinct()).collect();
    assert!(PlacementRequest::compile(task(1, 1, "g"), &[], &eleven, &[]).is_err());
}

#[test]
fn synthetic_bench_request_places() {
    let mut st = synthetic::cluster(300, 1);
    for name in synthetic::STRATEGY_CHAINS {
        let r = synthetic::request(&synthetic::strategy_chain(name).expect("known chain"));
        let out = Placer::new(1).place(&mut st, &r, 10);
        assert!(out.iter().all(Result::is_ok), "{name}: {out:?}");
    }
}

// ------------------------------------------------------------ properties

const ZONES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
struct Inst {
    cpu: u32,
    memory: u32,
    zone: usize,
    active: bool,
}

#[derive(Debug, Clone)]
struct Req {
    cpu: u32,
    memory: u32,
    static_port: Option<u16>,
    dynamic: usize,
    group: usize,
    distinct: bool,
    /// memberOf `attribute:ecs.availability-zone in [..]` over these zones.
    zones: Option<Vec<usize>>,
    strategies: Vec<PlacementStrategy>,
    count: usize,
}

fn arb_inst() -> impl proptest::strategy::Strategy<Value = Inst> {
    (0u32..4096, 0u32..4096, 0usize..3, prop::bool::weighted(0.9)).prop_map(
        |(cpu, memory, zone, active)| Inst {
            cpu,
            memory,
            zone,
            active,
        },
    )
}

fn arb_strategy() -> impl proptest::strategy::Strategy<Value = PlacementStrategy> {
    prop_oneof![
        Just(strat(S::Binpack, Some("cpu"))),
        Just(strat(S::Binpack, Some("memory"))),
        Just(strat(S::Spread, Some("instanceId"))),
        Just(strat(S::Spread, Some("host"))),
        Just(strat(S::Spread, Some("attribute:ecs.availability-zone"))),
        Just(strat(S::Random, None)),
    ]
}

fn arb_req() -> impl proptest::strategy::Strategy<Value = Req> {
    (
        (
            0u32..1500,
            0u32..1500,
            prop::option::of(prop::sample::select(vec![80u16, 443, 8080])),
            0usize..3,
        ),
        (
            0usize..3,
            any::<bool>(),
            prop::option::of(prop::sample::subsequence(vec![0usize, 1, 2], 1..3)),
        ),
        prop::collection::vec(arb_strategy(), 0..4),
        1usize..6,
    )
        .prop_map(
            |((cpu, memory, static_port, dynamic), (group, distinct, zones), strategies, count)| {
                Req {
                    cpu,
                    memory,
                    static_port,
                    dynamic,
                    group,
                    distinct,
                    zones,
                    strategies,
                    count,
                }
            },
        )
}

fn build(insts: &[Inst], ephemeral: (u16, u16)) -> ClusterState {
    let mut st = ClusterState::new(ephemeral);
    for (i, x) in insts.iter().enumerate() {
        let mut s = inst(i, ZONES[x.zone], x.cpu, x.memory);
        s.active = x.active;
        st.add_instance(s);
    }
    st
}

fn compile(r: &Req) -> PlacementRequest {
    let mut t = task(r.cpu, r.memory, &format!("group-{}", r.group));
    t.static_ports = r
        .static_port
        .map(|p| (p, Protocol::Tcp))
        .into_iter()
        .collect();
    t.dynamic_ports = vec![Protocol::Tcp; r.dynamic];
    let mut cs = Vec::new();
    if r.distinct {
        cs.push(distinct());
    }
    if let Some(z) = &r.zones {
        let list: Vec<&str> = z.iter().map(|&i| ZONES[i]).collect();
        cs.push(member_of(&format!(
            "attribute:ecs.availability-zone in [{}]",
            list.join(", ")
        )));
    }
    req(t, &cs, &r.strategies)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever is asked, no instance's CPU, memory or host ports are ever
    /// over-committed, and every constraint holds on every placement.
    #[test]
    fn never_overcommits_and_constraints_hold(
        insts in prop::collection::vec(arb_inst(), 0..12),
        reqs in prop::collection::vec(arb_req(), 1..12),
        seed in any::<u64>(),
    ) {
        // A small ephemeral range so dynamic ports run out too.
        let mut st = build(&insts, (50000, 50005));
        let mut placer = Placer::new(seed);
        let mut cpu = vec![0u32; insts.len()];
        let mut mem = vec![0u32; insts.len()];
        let mut ports: Vec<HashSet<u16>> = vec![HashSet::from([22]); insts.len()];
        let mut groups: Vec<BTreeMap<usize, u32>> = vec![BTreeMap::new(); insts.len()];
        for r in &reqs {
            let pr = compile(r);
            for res in placer.place(&mut st, &pr, r.count) {
                let Ok(p) = res else { continue };
                let i = p.instance;
                prop_assert!(insts[i].active, "placed on an inactive instance");
                cpu[i] += r.cpu;
                mem[i] += r.memory;
                prop_assert!(cpu[i] <= insts[i].cpu, "cpu over-committed on {i}");
                prop_assert!(mem[i] <= insts[i].memory, "memory over-committed on {i}");
                prop_assert_eq!(p.dynamic_host_ports.len(), r.dynamic);
                for port in r.static_port.into_iter().chain(p.dynamic_host_ports.iter().copied()) {
                    prop_assert!(ports[i].insert(port), "port {} double-booked on {}", port, i);
                }
                for port in &p.dynamic_host_ports {
                    prop_assert!((50000..=50005).contains(port));
                }
                let g = groups[i].entry(r.group).or_insert(0);
                if r.distinct {
                    prop_assert_eq!(*g, 0, "distinctInstance broken");
                }
                *g += 1;
                if let Some(z) = &r.zones {
                    prop_assert!(z.contains(&insts[i].zone), "memberOf broken");
                }
            }
        }
        for (i, x) in insts.iter().enumerate() {
            prop_assert_eq!(st.cpu_free(i), x.cpu - cpu[i]);
            prop_assert_eq!(st.mem_free(i), x.memory - mem[i]);
        }
    }

    /// With room everywhere, spread over zones leaves at most one task of
    /// difference between any two zones.
    #[test]
    fn spread_is_even_when_capacity_allows(
        zones in prop::collection::vec(0usize..3, 3..20),
        existing in prop::collection::vec((0usize..20, 0u32..3), 0..10),
        n in 1usize..40,
        seed in any::<u64>(),
    ) {
        let insts: Vec<Inst> = zones.iter().map(|&z| Inst { cpu: 100_000, memory: 100_000, zone: z, active: true }).collect();
        let mut st = build(&insts, DEFAULT_EPHEMERAL_PORTS);
        // Tasks of other groups must not disturb the balance of this one.
        for (i, k) in existing {
            for _ in 0..k {
                st.add_task(i % insts.len(), &task(1, 1, "other"), &[]);
            }
        }
        let r = req(task(1, 1, "g"), &[], &[strat(S::Spread, Some("attribute:ecs.availability-zone")), strat(S::Random, None)]);
        let out = Placer::new(seed).place(&mut st, &r, n);
        let mut per_zone = [0i64; 3];
        for p in placed(&out) {
            per_zone[insts[p].zone] += 1;
        }
        let present: Vec<i64> = (0..3).filter(|z| zones.contains(z)).map(|z| per_zone[z]).collect();
        let (lo, hi) = (present.iter().min().copied().unwrap_or(0), present.iter().max().copied().unwrap_or(0));
        prop_assert!(hi - lo <= 1, "uneven spread {:?}", per_zone);
    }

    /// Binpack picks an instance with the least remaining of its field among
    /// those that fit.
    #[test]
    fn binpack_picks_a_tightest_fit(
        insts in prop::collection::vec(arb_inst(), 1..15),
        cpu in 0u32..2000,
        memory in 0u32..2000,
        by_cpu in any::<bool>(),
    ) {
        let mut st = build(&insts, DEFAULT_EPHEMERAL_PORTS);
        let field = if by_cpu { "cpu" } else { "memory" };
        let r = req(task(cpu, memory, "g"), &[], &[strat(S::Binpack, Some(field))]);
        let remaining = |x: &Inst| if by_cpu { x.cpu - cpu } else { x.memory - memory };
        let fits: Vec<&Inst> = insts.iter().filter(|x| x.active && x.cpu >= cpu && x.memory >= memory).collect();
        let out = Placer::new(1).place(&mut st, &r, 1).remove(0);
        match out {
            Ok(p) => {
                let best = fits.iter().map(|x| remaining(x)).min();
                prop_assert_eq!(Some(remaining(&insts[p.instance])), best);
            }
            Err(_) => prop_assert!(fits.is_empty()),
        }
    }
}

#[test]
fn removing_an_absent_task_leaves_spread_counts_alone() {
    let mut st = ClusterState::default();
    st.add_instance(inst(0, "a", 4096, 4096));
    st.add_instance(inst(1, "b", 4096, 4096));
    st.add_instance(inst(2, "b", 4096, 4096));
    let r = req(
        task(1, 1, "g"),
        &[],
        &[strat(S::Spread, Some("attribute:ecs.availability-zone"))],
    );
    // The first placement builds the per-zone counts; then each zone holds one task.
    assert_eq!(placed(&Placer::new(1).place(&mut st, &r, 1)), vec![0]);
    st.add_task(1, &r.task, &[]);
    // Instance 2 holds no task of the group: removing one must change nothing.
    st.remove_task(2, &r.task, &[]);
    // Zones tie at one task each, so the lowest index wins; a zone count
    // lowered by the bogus removal would send the task to zone b.
    assert_eq!(placed(&Placer::new(1).place(&mut st, &r, 1)), vec![0]);
}

#[test]
fn more_dynamic_ports_than_the_range_holds_fit_nowhere() {
    let mut st = ClusterState::new((50000, 50002));
    st.add_instance(inst(0, "a", 4096, 4096));
    let mut t = task(1, 1, "g");
    t.dynamic_ports = vec![Protocol::Tcp; 4];
    let r = req(t, &[], &[]);
    let f = Placer::new(1)
        .place(&mut st, &r, 1)
        .remove(0)
        .expect_err("four ports from a range of three");
    assert_eq!(f.reason, Check::Ports);
    assert_eq!(place_on(&mut st, &r, 0), Err(Check::Ports));
    assert_eq!(st.cpu_free(0), 4096, "nothing reserved");
}

#[test]
fn a_privileged_container_is_placed_only_where_the_agent_allows_it() {
    let td: TaskDefinition = serde_json::from_value(serde_json::json!({
        "taskDefinitionArn": "arn:td/p:1", "family": "p", "revision": 1,
        "networkMode": "bridge", "status": "ACTIVE",
        "containerDefinitions": [{"name": "app", "image": "i", "memory": 16, "privileged": true}],
        "placementConstraints": (0..10).map(|_| serde_json::json!(
            {"type": "memberOf", "expression": "attribute:ecs.os-type exists"})).collect::<Vec<_>>()
    }))
    .expect("task definition");
    let constraints = task_definition_constraints(&td);
    assert_eq!(constraints.len(), 11);
    let mut st = ClusterState::default();
    let mut plain = inst(0, "a", 4096, 4096);
    plain
        .attributes
        .push(("ecs.os-type".into(), Some("linux".into())));
    let mut allowed = plain.clone();
    allowed.arn = "ci-1".into();
    allowed
        .attributes
        .push((crate::model::PRIVILEGED_CAPABILITY.into(), None));
    st.add_instance(plain);
    // The implied constraint does not count against the ten allowed.
    let r = PlacementRequest::compile(task(10, 10, "g"), &constraints, &[], &[]).expect("compiles");
    let f = Placer::new(1)
        .place(&mut st, &r, 1)
        .remove(0)
        .expect_err("not placed without the capability");
    assert_eq!(f.reason, Check::Attribute);
    st.add_instance(allowed);
    let p = Placer::new(1)
        .place(&mut st, &r, 1)
        .remove(0)
        .expect("placed");
    assert_eq!(p.instance, 1);
}

#[test]
fn explain_names_each_instances_check_or_its_keys_and_agrees_with_place() {
    let mut st = ClusterState::default();
    st.add_instance(inst(0, "a", 4096, 4096));
    st.add_instance(inst(1, "b", 100, 4096));
    st.add_instance(inst(2, "c", 4096, 100));
    let mut down = inst(3, "a", 4096, 4096);
    down.agent_connected = false;
    st.add_instance(down);
    st.add_instance(inst(4, "b", 4096, 1024));
    st.add_instance(inst(5, "a", 4096, 2048));
    st.add_task(5, &task(10, 10, "g"), &[]);
    let r = req(
        task(500, 500, "g"),
        &[member_of("attribute:ecs.availability-zone != c")],
        &[
            strat(S::Spread, Some("attribute:ecs.availability-zone")),
            strat(S::Binpack, Some("memory")),
        ],
    );
    let v = explain(&mut st, &r);
    assert_eq!(v[1], Verdict::Eliminated(Check::Cpu));
    assert_eq!(v[2], Verdict::Eliminated(Check::Memory));
    assert_eq!(v[3], Verdict::Eliminated(Check::Agent));
    // Zone a holds one task of the group; b none. Keys: (spread, binpack).
    assert_eq!(v[0], Verdict::Candidate(vec![1, 3596]));
    assert_eq!(v[4], Verdict::Candidate(vec![0, 524]));
    assert_eq!(v[5], Verdict::Candidate(vec![1, 1538]));
    assert_eq!(v[4].to_string(), "candidate, keys 0,524");
    assert_eq!(v[2].to_string(), "eliminated by RESOURCE:MEMORY");
    // The least keys, strategy by strategy, are what the engine picks.
    assert_eq!(placed(&Placer::new(1).place(&mut st, &r, 1)), vec![4]);
    let zone_c = req(
        task(500, 50, "g"),
        &[member_of("attribute:ecs.availability-zone != c")],
        &[],
    );
    assert_eq!(
        explain(&mut st, &zone_c)[2],
        Verdict::Eliminated(Check::Attribute)
    );
    assert_eq!(
        r.strategies.iter().map(strategy_label).collect::<Vec<_>>(),
        ["spread(attribute:ecs.availability-zone)", "binpack(memory)"]
    );
}
