//! The registry over a store on etcd: a component of 16 MiB (the most the
//! API takes) is stored in chunks that each fit one etcd request, and a
//! second registry over the same store (another server) loads it, and
//! follows its activation. The etcd member is started here; without the
//! `etcd` binary this fails unless `BERTH_SKIP_ETCD=1` is set on purpose.

use std::sync::Arc;

use berth_policy::{PolicyChunk, Registry, Scope};
use berth_store::Store;
use berth_store_etcd::testing::{Cluster, skip};
use berth_store_etcd::{EtcdBackend, EtcdUrl};

use crate::{host, plugin};

/// `bytes` with a custom section appended, `to` bytes long in all (a
/// component's custom sections are not its code: it compiles the same).
fn padded(mut bytes: Vec<u8>, to: usize) -> Vec<u8> {
    let name = b"berth-test-padding";
    // id (1) + a 4-byte LEB128 size + the name's length (1) and name + data.
    let size = to - bytes.len() - 1 - 4;
    assert!((1 << 21..1 << 28).contains(&size), "a 4-byte LEB128 size");
    bytes.push(0);
    let mut n = size;
    for i in 0..4 {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        bytes.push(if i < 3 { low | 0x80 } else { low });
    }
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.resize(to, 0x5a);
    bytes
}

fn store(url: &EtcdUrl) -> Store {
    Store::with_backend(Arc::new(EtcdBackend::open(url).expect("etcd store opens")))
}

fn chunks(store: &Store) -> u64 {
    let counts = store.info().expect("info").record_counts;
    counts
        .get(<PolicyChunk as berth_store::Record>::TABLE)
        .copied()
        .unwrap_or(0)
}

#[test]
fn a_16_mib_component_goes_through_etcd_in_chunks_and_loads_on_another_server() {
    if skip() {
        return;
    }
    let members = Cluster::start(1).expect("etcd");
    let url = members.url("/berth-policies");
    let big = padded(plugin("binpack"), 16 << 20);
    let a = Registry::open(host(), store(&url)).expect("registry a");
    let id = a.install(&big).expect("a 16 MiB component installs");
    assert_eq!(id, berth_policy::sha256_hex(&big));
    let s = store(&url);
    assert_eq!(chunks(&s), ((16 << 20) / berth_policy::CHUNK_BYTES) as u64);

    // Another server: loads it from the chunks, checked against its sha256.
    let b = Registry::open(host(), store(&url)).expect("registry b");
    assert_eq!(b.get(&id).expect("loaded on b").compiled.size, 16 << 20);
    // An activation through one places through the other at its next decision.
    let scope = Scope::Cluster("prod".into());
    a.activate(&scope, &id).expect("activate on a");
    b.follow_store().expect("b follows the store");
    let active = b
        .resolve("prod", None, None)
        .expect("resolve")
        .expect("active on b");
    assert_eq!(active.compiled.sha256, id);

    // Removed: its chunks go with it.
    a.deactivate(&scope).expect("deactivate");
    a.remove(&id).expect("remove");
    assert_eq!(chunks(&s), 0);
}
