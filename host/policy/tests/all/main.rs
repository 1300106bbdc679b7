//! Integration tests of the policy host, all in one binary (one engine,
//! shared like in production). The plugins are built from `plugins/` with
//!     cargo build --manifest-path plugins/Cargo.toml --target wasm32-wasip2 --release

// A fuzz build (docs/fuzzing.md) instruments every crate; linking the fuzzer
// here gives this test binary the coverage symbols it then needs.
#[cfg(fuzzing)]
extern crate bolero as _;

mod contracts;
mod differential;
mod etcd;
mod hostile;
mod plugins;
mod registry;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use berth_core::model::{
    PlacementConstraint, PlacementConstraintType, PlacementStrategy, Protocol,
};
use berth_core::placement::{PlacementRequest, TaskSpec};
use berth_policy::{HostConfig, LoadedPolicy, PolicyHost};

pub const BUILD: &str =
    "cargo build --manifest-path plugins/Cargo.toml --target wasm32-wasip2 --release";

/// The bytes of a built plugin; fails with the build command when missing.
/// The plugins' workspace builds into `plugins/target`, or into
/// `$CARGO_TARGET_DIR` when that is set.
pub fn plugin(name: &str) -> Vec<u8> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target"),
    };
    let path = target
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => panic!(
            "plugin {} is missing ({e}); build the plugins first: {BUILD}",
            path.display()
        ),
    }
}

/// One host for the whole test binary.
pub fn host() -> Arc<PolicyHost> {
    static HOST: OnceLock<Arc<PolicyHost>> = OnceLock::new();
    // A deadline well above the 10 ms default: tests share two cores with
    // parallel tests and builds, and the deadline is wall time. The hostile
    // plugins that must hit it loop forever, so any deadline stops them.
    let config = HostConfig {
        deadline: std::time::Duration::from_millis(250),
        ..HostConfig::default()
    };
    HOST.get_or_init(|| Arc::new(PolicyHost::new(config).expect("policy host")))
        .clone()
}

/// Compiles and loads a plugin by name.
pub fn load(name: &str) -> Arc<LoadedPolicy> {
    let compiled = host()
        .compile(&plugin(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Arc::new(
        berth_policy::LoadedPolicy::from_compiled(&host(), compiled)
            .unwrap_or_else(|e| panic!("{name}: {e}")),
    )
}

/// A request of `group` with `cpu`/`memory`, one dynamic TCP port.
pub fn request(
    group: &str,
    cpu: u32,
    memory: u32,
    strategies: &[PlacementStrategy],
    constraints: &[PlacementConstraint],
) -> PlacementRequest {
    let task = TaskSpec {
        cpu,
        memory,
        static_ports: vec![],
        dynamic_ports: vec![Protocol::Tcp],
        group: group.into(),
        family: String::new(),
    };
    PlacementRequest::compile(task, &[], constraints, strategies).expect("request compiles")
}

pub fn member_of(expr: &str) -> PlacementConstraint {
    PlacementConstraint {
        kind: PlacementConstraintType::MemberOf,
        expression: Some(expr.into()),
    }
}

pub fn distinct() -> PlacementConstraint {
    PlacementConstraint {
        kind: PlacementConstraintType::DistinctInstance,
        expression: None,
    }
}
