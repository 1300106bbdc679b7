//! # berth-policy: placement policies as WebAssembly components
//!
//! The only crate of berth that touches wasmtime. It runs user-supplied
//! placement policies (components of the world
//! `berth:placement/placement-policy@0.1.0`, `@0.2.0` or `@0.3.0`, see
//! `wit/`) sandboxed:
//!
//! - one [`PolicyHost`]: one wasmtime `Engine` (Cranelift, proposals berth
//!   does not need turned off, component-model concurrency off), an epoch
//!   ticker giving every call a deadline (default 10 ms), a memory limit per
//!   instance (default 64 MiB), the pooling allocator, an empty WASI context,
//!   and install-time checks of a component's imports and exports;
//! - [`PolicySession`]: one policy instance (its own `Store`) whose mirror of
//!   a [`berth_core::placement::ClusterState`] is fully synced when it starts
//!   and kept current by deltas; every answer is checked with
//!   [`berth_core::placement::place_on`] before it counts; any failure
//!   discards the instance and is counted by kind;
//! - [`Registry`]: install (content-addressed by sha256, stored in berth's
//!   store), list, show, activate per cluster or service (or per RunTask
//!   call through [`Registry::resolve`]), deactivate, remove, and the atomic
//!   swap that [`PolicyRunner`] follows.
//!
//! Compiled components are cached on disk when [`HostConfig::cache_dir`] is
//! set (`berth up` keeps them in its data directory), keyed by content hash
//! and engine compatibility, so a restart does not compile every installed
//! policy again. Loading one is berth's only `unsafe` (see `host.rs`).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use berth_policy::{Fallback, HostConfig, PolicyHost, Registry, Scope};
//! let host = Arc::new(PolicyHost::new(HostConfig::default())?);
//! let store = berth_store::Store::open("/tmp/berth.redb")?;
//! let registry = Registry::open(host, store)?;
//! let id = registry.install(&std::fs::read("binpack.wasm")?)?;
//! registry.activate(&Scope::Cluster("default".into()), &id)?;
//! let mut runner = registry.runner(&Scope::Cluster("default".into()), Fallback::Native);
//! let mut state = berth_core::placement::synthetic::cluster(100, 1);
//! let req = berth_core::placement::synthetic::request(&[]);
//! let decision = runner.decide(&mut state, &req, 3);
//! println!("{:?}", decision.answers);
//! # Ok(()) }
//! ```

mod bindings {
    // The 0.2.0 world: 0.1.0's logger and `policy` export, and the `names`
    // import. A 0.1.0 component links against it too (it just does not
    // import `names`), so one set of bindings serves both. 0.3.0's extra
    // export, `bulk`, is called through typed functions looked up by
    // index (see session/sync.rs), so it needs no bindings of its own.
    wasmtime::component::bindgen!({
        path: ["../../wit/berth-placement-0.1.0", "../../wit/berth-placement-0.2.0"],
        world: "berth:placement/placement-policy@0.2.0",
    });
}

mod blobs;
mod error;
mod host;
mod registry;
mod session;
mod shadow;
mod stats;

pub use blobs::{CHUNK_BYTES, PolicyChunk};
pub use error::{DecisionError, FailureKind, InstallError, RegistryError};
pub use host::{
    BULK_EXPORT, CompiledPolicy, HostConfig, LOGGER_IMPORT, NAMES_IMPORT, POLICY_EXPORT,
    POLICY_LOG_TARGET, PolicyHost, WORLD, WORLD_0_2, WORLD_0_3, sha256_hex,
};
pub use registry::{
    Decision, Fallback, PolicyBinding, PolicyRecord, PolicyRunner, PolicySummary, Registry, Scope,
};
pub use session::{Answers, LoadedPolicy, PolicySession, PolicyStats, StatsSnapshot, host_ports};
pub use shadow::ShadowSnapshot;
pub use stats::{FailureRecord, PolicyStatsRecord, RECENT_FAILURES};
