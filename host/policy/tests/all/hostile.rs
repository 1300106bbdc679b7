//! The hostile battery: each misbehaving plugin fails only its own decision
//! with the documented reason; the host stays healthy and the next decision
//! (on a fresh instance) works.

use berth_core::placement::{ClusterState, synthetic};
use berth_policy::{DecisionError, FailureKind, InstallError, PolicySession};

use crate::{host, load, plugin, request};

/// Snapshot of what a failed decision must leave untouched.
fn free(state: &ClusterState) -> Vec<(u32, u32, usize)> {
    (0..state.len())
        .map(|i| {
            (
                state.cpu_free(i),
                state.mem_free(i),
                state.instance(i).ports[0].len(),
            )
        })
        .collect()
}

/// Runs the battery and gives back the failure of the attack.
fn battery(name: &str, expected: FailureKind) -> DecisionError {
    let policy = load(name);
    let mut state = synthetic::cluster(100, 11);
    let mut session = PolicySession::new(host(), policy.clone());
    // A normal decision first: the plugin behaves like binpack.
    let normal = request("service:web", 256, 512, &[], &[]);
    let ok = session
        .place(&mut state, &normal, 3)
        .unwrap_or_else(|e| panic!("{name}: normal decision failed: {e}"));
    assert!(ok.iter().all(|a| a.is_ok()), "{name}: {ok:?}");
    // The attack: a batch, so a partial answer would show as reservations.
    let attack = request("family:attack", 256, 6000, &[], &[]);
    let before = free(&state);
    let err = session
        .place(&mut state, &attack, 3)
        .expect_err(&format!("{name}: the attack must fail its decision"));
    assert_eq!(err.kind, expected, "{name}: {err}");
    assert!(!err.reason.is_empty());
    assert_eq!(
        free(&state),
        before,
        "{name}: a failed decision must reserve nothing"
    );
    assert!(
        !session.is_warm(),
        "{name}: the instance is discarded after a failure"
    );
    assert_eq!(
        policy.stats.failures(expected),
        1,
        "{name}: the failure is counted"
    );
    // And the next decision works, on a fresh instance, fully synced.
    let created = policy.stats().instances_created;
    let ok = session
        .place(&mut state, &normal, 2)
        .unwrap_or_else(|e| panic!("{name}: decision after the attack failed: {e}"));
    assert!(ok.iter().all(|a| a.is_ok()), "{name}: {ok:?}");
    assert_eq!(policy.stats().instances_created, created + 1);
    // Other policies on the same host are unaffected.
    let mut other = PolicySession::new(host(), load("binpack"));
    assert!(other.place(&mut state, &normal, 1).is_ok());
    err
}

#[test]
fn endless_loop_hits_the_deadline() {
    let err = battery("hostile_endless_loop", FailureKind::Deadline);
    assert!(!err.reason.contains("panicked"), "{err}");
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    battery("hostile_memory_bomb", FailureKind::MemoryLimit);
}

#[test]
fn trap_fails_the_decision_with_the_panic_message_and_location() {
    let err = battery("hostile_trap", FailureKind::Trap);
    // The SDK's panic hook wrote them through the logger before the trap.
    assert!(
        err.reason.contains("panicked at ")
            && err.reason.contains("src/lib.rs:")
            && err.reason.ends_with(": deliberate trap"),
        "{err}"
    );
}

#[test]
fn out_of_range_instance_id_is_an_invalid_answer() {
    battery("hostile_bad_id", FailureKind::InvalidAnswer);
}

#[test]
fn over_committing_answer_is_rejected_by_the_native_check() {
    battery("hostile_overcommit", FailureKind::InvalidAnswer);
}

#[test]
fn log_flood_is_rate_limited_and_stopped_at_the_deadline() {
    battery("hostile_log_flood", FailureKind::Deadline);
    // Lines past the per-call budget were dropped, not logged.
    let policy = load("hostile_log_flood");
    let mut state = synthetic::cluster(10, 1);
    let mut session = PolicySession::new(host(), policy.clone());
    let _ = session.place(&mut state, &request("family:attack", 1, 1, &[], &[]), 1);
    assert!(policy.stats().logs_dropped > 1000, "{:?}", policy.stats());
}

#[test]
fn wrong_world_is_refused_at_install() {
    match host().compile(&plugin("hostile_wrong_world")) {
        Err(InstallError::WrongWorld(msg)) => {
            assert!(msg.contains("berth:placement/policy@0.1.0"), "{msg}")
        }
        other => panic!("expected WrongWorld, got {other:?}"),
    }
}

#[test]
fn not_a_component_is_refused_at_install() {
    // An empty core module: WebAssembly, but not a component.
    let core_module = b"\0asm\x01\0\0\0";
    match host().compile(core_module) {
        Err(InstallError::NotAComponent(msg)) => {
            assert!(msg.contains("core WebAssembly module"), "{msg}")
        }
        other => panic!("expected NotAComponent, got {other:?}"),
    }
    match host().compile(b"#!/bin/sh\necho not wasm\n") {
        Err(InstallError::NotAComponent(msg)) => assert!(msg.contains("not WebAssembly"), "{msg}"),
        other => panic!("expected NotAComponent, got {other:?}"),
    }
    // A component header with garbage after it.
    match host().compile(b"\0asm\x0d\0\x01\0garbage") {
        Err(InstallError::Invalid(_)) => {}
        other => panic!("expected Invalid, got {other:?}"),
    }
}
