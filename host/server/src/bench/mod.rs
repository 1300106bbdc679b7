//! `berth bench`: berth's speed measured by berth, so operators can compare
//! machines and (later) policies in one run.

pub mod api;
mod cluster_file;
pub mod fleet;
pub mod placement;
pub mod soak;
mod target;

use clap::{Subcommand, ValueEnum};

/// What `berth bench` measures.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Placement decisions per second on a synthetic cluster (three zones,
    /// four instance types, a tenth of the instances nearly full, a memberOf
    /// and a distinctInstance constraint on every task). With `--policy
    /// FILE.wasm`, also through a policy component.
    Placement(placement::PlacementArgs),
    /// Requests per second and latency of a running `berth up`'s ECS API,
    /// from signed requests on concurrent connections.
    Api(api::LoadArgs),
    /// Nomad's C1M on one machine: places many tasks on a running `berth
    /// server`'s (simulated) instances with RunTask and waits until their
    /// agents report them all RUNNING.
    Fleet(fleet::FleetArgs),
    /// Issue 12's soak: fills a running `berth server`'s store with stopped
    /// tasks and services, then loads it with DescribeTasks and
    /// RunTask/StopTask for `--duration`, printing latency, errors and the
    /// server's RSS and CPU per window.
    Soak(soak::SoakArgs),
}

/// How a bench prints its figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Tables for people.
    #[default]
    Table,
    /// One JSON object per line, for scripts.
    Json,
}

/// Runs one bench.
pub fn run(what: BenchCommand) -> anyhow::Result<()> {
    match what {
        BenchCommand::Placement(args) => placement::run(&args),
        BenchCommand::Api(args) => api::run(&args),
        BenchCommand::Fleet(args) => fleet::run(&args),
        BenchCommand::Soak(args) => soak::run(&args),
    }
}
