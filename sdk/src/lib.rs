//! # berth-sdk: placement policies for berth in plain Rust
//!
//! A placement policy chooses the container instance a task runs on. berth
//! runs it as a sandboxed WebAssembly component (world
//! `berth:placement/placement-policy@0.3.0`: contract 0.1.0, the `names`
//! import of 0.2.0, and the `bulk` export through which a fresh instance's
//! attributes and ports arrive in bulk). This crate hides the generated
//! bindings: you implement [`Policy`] over a [`Cluster`] view whose mirror
//! the SDK keeps current, and export it with [`export_policy!`].
//!
//! The SDK applies each of your placements to its mirror (resources, ports,
//! group counts) before the next task of a batch is chosen, and the host
//! checks every answer before it counts, so a policy only has to choose.
//!
//! ## A complete policy
//!
//! ```no_run
//! use berth_sdk::{export_policy, Cluster, Info, Policy, Task};
//!
//! /// Least memory left after placing, like ECS's `binpack` on memory.
//! #[derive(Default)]
//! struct Binpack;
//!
//! impl Policy for Binpack {
//!     fn info(&self) -> Info {
//!         Info::new("binpack", "0.1.0")
//!     }
//!     fn choose(&mut self, cluster: &Cluster, task: &Task) -> Option<u32> {
//!         // The candidate with the least memory left; ties to the lowest id.
//!         cluster.least(task, |i| cluster.memory_free(i).saturating_sub(task.memory))
//!     }
//! }
//!
//! export_policy!(Binpack);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` in a crate
//! with `crate-type = ["cdylib"]`; the `.wasm` file is the component.
//!
//! A policy is unit-tested natively with plain `cargo test`: build a
//! cluster with [`Cluster::builder`] and call `choose` (see
//! [`ClusterBuilder`]).
//!
//! [`Cluster::least`] breaks ties to the lowest instance id, as berth's
//! native strategies do; [`Cluster::candidates`] lists the instances a task
//! fits on for policies that need more than one key.

#[doc(hidden)]
pub mod bindings;
mod cluster;
mod logging;
mod policy;
/// The runtime behind [`export_policy!`]; not for direct use.
#[doc(hidden)]
pub mod rt;
mod scan;

use std::collections::HashMap as StdHashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};

/// Fixed-key hashing: `RandomState` would import `wasi:random`, which the
/// host does not grant (and determinism is wanted anyway).
type HashMap<K, V> = StdHashMap<K, V, BuildHasherDefault<DefaultHasher>>;

use bindings::berth::placement0_1_0::types as wit;

/// Dense id of a container instance, `0..cluster.len()`.
pub type InstanceId = u32;
/// Dense id of a task group.
pub type GroupId = u32;

pub use cluster::{Candidates, Cluster, ClusterBuilder, InstanceSpec, Spread};
pub use logging::{Level, log};
pub use policy::{Info, Policy, Task};

/// Exports a [`Policy`] type (which must implement `Default`) as the
/// component's `berth:placement/policy` interface. Use once per crate.
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        thread_local! {
            static __BERTH_STATE: ::std::cell::RefCell<$crate::rt::State<$ty>> = ::std::cell::RefCell::new(::std::default::Default::default());
        }
        struct __BerthExport;
        impl $crate::rt::Guest for __BerthExport {
            fn info() -> $crate::rt::PolicyInfo {
                __BERTH_STATE.with_borrow(|s| s.info())
            }
            fn sync_full(columns: $crate::rt::ClusterColumns) {
                __BERTH_STATE.with_borrow_mut(|s| s.sync_full(columns))
            }
            fn define_attribute(id: u32, name: ::std::string::String) {
                __BERTH_STATE.with_borrow_mut(|s| s.define_attribute(id, name))
            }
            fn set_attributes(entries: ::std::vec::Vec<(u32, ::std::vec::Vec<(u32, ::std::option::Option<::std::string::String>)>)>) {
                __BERTH_STATE.with_borrow_mut(|s| s.set_attributes(entries))
            }
            fn set_ports(entries: ::std::vec::Vec<(u32, ::std::vec::Vec<u16>, ::std::vec::Vec<u16>)>) {
                __BERTH_STATE.with_borrow_mut(|s| s.set_ports(entries))
            }
            fn define_group(id: u32, name: ::std::string::String, counts: ::std::vec::Vec<u32>) {
                __BERTH_STATE.with_borrow_mut(|s| s.define_group(id, name, counts))
            }
            fn define_filter(id: u32, members: ::std::vec::Vec<u8>) {
                __BERTH_STATE.with_borrow_mut(|s| s.define_filter(id, members))
            }
            fn upsert(inst: $crate::rt::Instance, groups: ::std::vec::Vec<(u32, u32)>) {
                __BERTH_STATE.with_borrow_mut(|s| s.upsert(inst, groups))
            }
            fn define_family(id: u32, name: ::std::string::String) {
                __BERTH_STATE.with_borrow_mut(|s| s.define_family(id, name))
            }
            fn define_strategy(id: u32, pairs: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) {
                __BERTH_STATE.with_borrow_mut(|s| s.define_strategy(id, pairs))
            }
            fn remove(id: u32) {
                __BERTH_STATE.with_borrow_mut(|s| s.remove(id))
            }
            fn place(changes: ::std::vec::Vec<$crate::rt::Change>, task: $crate::rt::WitTask, count: u32) -> ::std::vec::Vec<$crate::rt::Decision> {
                __BERTH_STATE.with_borrow_mut(|s| s.place(changes, task, count))
            }
        }
        impl $crate::rt::BulkGuest for __BerthExport {
            fn set_attribute_column(attribute: u32, values: ::std::vec::Vec<::std::string::String>, ids: ::std::vec::Vec<u32>) {
                __BERTH_STATE.with_borrow_mut(|s| s.set_attribute_column(attribute, values, ids))
            }
            fn set_ports_flat(tcp_offsets: ::std::vec::Vec<u32>, tcp: ::std::vec::Vec<u16>, udp_offsets: ::std::vec::Vec<u32>, udp: ::std::vec::Vec<u16>) {
                __BERTH_STATE.with_borrow_mut(|s| s.set_ports_flat(tcp_offsets, tcp, udp_offsets, udp))
            }
        }
        $crate::bindings::export_placement_policy!(__BerthExport with_types_in $crate::bindings);
    };
}
