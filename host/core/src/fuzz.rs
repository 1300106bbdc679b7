//! Fuzz targets over what clients send: a task definition's JSON, and
//! placement constraints and strategies (the cluster query language) run
//! through the placement engine. Each holds a property beyond "no panic":
//! errors are bounded whatever the input, and placing never over-commits.
//! `cargo test` runs them on their corpus and random inputs; `cargo bolero
//! test` fuzzes them (docs/fuzzing.md).

use serde::Deserialize;

use crate::model::{PlacementConstraint, PlacementStrategy, Protocol, RegisterTaskDefinition};
use crate::placement::{PlacementRequest, Placer, TaskSpec, synthetic};
use crate::validate::{self, InvalidInput};

/// Bytes of one field error's text at most: its message is cut at 512
/// bytes plus the note of what was cut; its path is JSON's.
const FIELD_ERROR_BYTES: usize = 600;

fn assert_bounded(e: &InvalidInput, input_len: usize) {
    for f in &e.0 {
        assert!(
            f.message.len() <= FIELD_ERROR_BYTES,
            "a {}-byte message for a {input_len}-byte input: {}…",
            f.message.len(),
            f.message.chars().take(100).collect::<String>()
        );
    }
}

#[test]
fn task_definitions() {
    bolero::check!().for_each(|input: &[u8]| {
        match validate::from_json::<RegisterTaskDefinition>(input) {
            Err(e) => assert_bounded(&e, input.len()),
            Ok(td) => {
                if let Err(e) = validate::task_definition(&td) {
                    assert_bounded(&e, input.len());
                }
            }
        }
    });
}

/// What the placement target reads from its input: a RunTask's placement
/// fields and the task's demand.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlaceInput {
    #[serde(default)]
    placement_constraints: Vec<PlacementConstraint>,
    #[serde(default)]
    placement_strategy: Vec<PlacementStrategy>,
    #[serde(default)]
    cpu: u32,
    #[serde(default)]
    memory: u32,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    count: u8,
}

#[test]
fn placement_requests() {
    bolero::check!().for_each(|input: &[u8]| {
        let Ok(p) = validate::from_json::<PlaceInput>(input) else {
            return;
        };
        let task = TaskSpec {
            cpu: p.cpu,
            memory: p.memory,
            static_ports: p
                .ports
                .iter()
                .take(4)
                .map(|&n| (n, Protocol::Tcp))
                .collect(),
            dynamic_ports: vec![Protocol::Tcp],
            group: "family:fuzz".into(),
            family: "fuzz".into(),
        };
        let req = match PlacementRequest::compile(
            task,
            &[],
            &p.placement_constraints,
            &p.placement_strategy,
        ) {
            Ok(r) => r,
            Err(e) => return assert_bounded(&e, input.len()),
        };
        let mut state = synthetic::cluster(24, 7);
        let free: Vec<(u32, u32)> = (0..state.len())
            .map(|i| (state.cpu_free(i), state.mem_free(i)))
            .collect();
        let results = Placer::new(1).place(&mut state, &req, usize::from(p.count % 11));
        for (i, &(cpu, mem)) in free.iter().enumerate() {
            let n = results
                .iter()
                .flatten()
                .filter(|pl| pl.instance == i)
                .count() as u64;
            // Placement reserves exactly what fits: never more than was free.
            assert!(
                n * u64::from(req.task.cpu) <= u64::from(cpu),
                "cpu over-committed on {i}"
            );
            assert!(
                n * u64::from(req.task.memory) <= u64::from(mem),
                "memory over-committed on {i}"
            );
            assert_eq!(
                u64::from(cpu - state.cpu_free(i)),
                n * u64::from(req.task.cpu)
            );
        }
    });
}
