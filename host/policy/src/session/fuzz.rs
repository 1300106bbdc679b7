//! Fuzz target: the checker every policy answer goes through, fed random
//! answers. Whatever a policy says, an accepted answer reserves exactly
//! what its placements take and a refused one leaves the cluster as it was.
//! `cargo test` runs it on random inputs; `cargo bolero test` fuzzes it
//! (docs/fuzzing.md).

use berth_core::model::{PlacementConstraint, PlacementConstraintType, Protocol};
use berth_core::placement::{ClusterState, PlacementRequest, TaskSpec, synthetic};

use super::{check_answers, host_ports, wit};

/// Everything about an instance an answer may change.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    cpu_free: u32,
    mem_free: u32,
    running: u32,
    group: u32,
    ports: Vec<(u16, Protocol)>,
}

fn held(state: &ClusterState, group: &str) -> Vec<Held> {
    (0..state.len())
        .map(|i| {
            let inst = state.instance(i);
            let ports = [Protocol::Tcp, Protocol::Udp]
                .into_iter()
                .enumerate()
                .flat_map(|(k, proto)| inst.ports[k].iter().map(move |p| (p, proto)))
                .collect();
            Held {
                cpu_free: state.cpu_free(i),
                mem_free: state.mem_free(i),
                running: inst.running_tasks,
                group: state.group_count(group, i),
                ports,
            }
        })
        .collect()
}

/// (answers: None is "unplaceable", Some(i) "placed on i"; one answer more
/// or fewer than asked; task cpu, memory, static ports, dynamic ports;
/// distinctInstance; cluster seed)
type Input = (Vec<Option<u8>>, u8, (u16, u16, Vec<u16>, u8), bool, u8);

/// A task's static host ports as a registered definition gives them: at
/// most a few, none 0 (that is a dynamic port), none twice (registration
/// refuses a host port claimed twice in a task).
fn static_ports(ports: &[u16]) -> Vec<(u16, Protocol)> {
    let mut out: Vec<(u16, Protocol)> = Vec::new();
    for &p in ports.iter().filter(|&&p| p != 0) {
        if out.len() < 3 && !out.contains(&(p, Protocol::Tcp)) {
            out.push((p, Protocol::Tcp));
        }
    }
    out
}

#[test]
fn policy_answers() {
    bolero::check!().with_type::<Input>().for_each(
        |(answers, skew, (cpu, memory, ports, dynamic), distinct, seed)| {
            let mut state = synthetic::cluster(12, u64::from(*seed));
            let task = TaskSpec {
                cpu: u32::from(*cpu),
                memory: u32::from(*memory),
                static_ports: static_ports(ports),
                dynamic_ports: vec![Protocol::Tcp; usize::from(dynamic % 4)],
                group: "service:fuzz".into(),
                family: "fuzz".into(),
            };
            let constraints: Vec<PlacementConstraint> = distinct
                .then(|| PlacementConstraint {
                    kind: PlacementConstraintType::DistinctInstance,
                    expression: None,
                })
                .into_iter()
                .collect();
            let Ok(req) = PlacementRequest::compile(task, &[], &constraints, &[]) else {
                return;
            };
            let answers: Vec<wit::Decision> = answers
                .iter()
                .take(16)
                .map(|a| match a {
                    None => wit::Decision::Unplaceable("no room".into()),
                    Some(i) => wit::Decision::Placed(u32::from(*i % 16)),
                })
                .collect();
            // Mostly as many answers as tasks asked for; sometimes one off.
            let count = match skew % 8 {
                0 => answers.len() + 1,
                1 => answers.len().saturating_sub(1),
                _ => answers.len(),
            };
            let before = held(&state, "service:fuzz");
            let mut ports_sent = vec![None; state.len()];
            let result = check_answers(&mut ports_sent, &mut state, &req, count, answers);
            let after = held(&state, "service:fuzz");
            match result {
                Err(_) => assert_eq!(before, after, "a refused answer changed the cluster"),
                Ok(placed) => {
                    assert_eq!(placed.len(), count);
                    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                        let here: Vec<_> = placed
                            .iter()
                            .flatten()
                            .filter(|p| p.instance == i)
                            .collect();
                        let n = here.len() as u32;
                        assert_eq!(b.cpu_free - a.cpu_free, n * req.task.cpu, "cpu on {i}");
                        assert_eq!(
                            b.mem_free - a.mem_free,
                            n * req.task.memory,
                            "memory on {i}"
                        );
                        assert_eq!(a.running - b.running, n);
                        assert_eq!(a.group - b.group, n);
                        if *distinct {
                            assert!(a.group <= 1, "distinctInstance broken on {i}");
                        }
                        // Every port a placement holds was free before and is
                        // held by no other placement.
                        let mut taken: Vec<(u16, Protocol)> =
                            here.iter().flat_map(|p| host_ports(&req, p)).collect();
                        let total = taken.len();
                        taken.sort();
                        taken.dedup();
                        assert_eq!(taken.len(), total, "a port given twice on {i}");
                        assert!(
                            taken.iter().all(|t| !b.ports.contains(t)),
                            "a used port given on {i}"
                        );
                    }
                }
            }
        },
    );
}
