//! The store's conformance suite: what every backend must do, run on redb
//! (`host/store/tests/conformance.rs`) and on etcd
//! (`host/store-etcd/tests/conformance.rs`). Each test crate provides
//! `crate::harness`: `open()` (a fresh, empty store, or `None` when that
//! backend's tests are skipped on purpose) and `fixture()` (a place a store
//! can be opened at, again and again).

mod basic;
mod concurrency;
mod domain;
mod watch;
