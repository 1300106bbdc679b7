//! berth's domain, with no IO and no async: ECS-shaped records and their
//! validation, ARNs, the cluster query language, and the native placement
//! engine. Everything here is fast to test, and every other crate speaks in
//! these types.

pub mod arn;
pub mod deployment;
pub mod liveness;
pub mod model;
pub mod placement;
pub mod query;
pub mod quote;
pub mod reconcile;
pub mod status;
pub mod usage;
pub mod validate;

#[cfg(test)]
mod fuzz;
