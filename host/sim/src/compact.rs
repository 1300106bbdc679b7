//! Cell compaction (as Borg's evaluations did): the fewest starting
//! instances the workload fits in, found by bisection over the cluster
//! taken round robin over its shapes ([`ClusterSpec::first`]). "Fits": no
//! task waits on arrival and none is left unplaced. Bisection assumes that
//! a workload fitting in n instances fits in more, as Borg's did.

use crate::cluster::ClusterSpec;
use crate::engine::{PolicyChoice, RunOptions, run};
use crate::workload::Workload;

/// The smallest number of starting instances of `spec` that `w` fits in
/// through `policy`; None when it does not fit in all of them.
pub fn smallest_cluster(
    w: &Workload,
    spec: &ClusterSpec,
    policy: &PolicyChoice,
    seed: u64,
) -> Result<Option<u64>, String> {
    let fits = |n: u64| -> Result<bool, String> {
        let opts = RunOptions {
            seed,
            stop_at_first_wait: true,
        };
        Ok(run(w, &spec.first(n), policy, opts)?.fit)
    };
    let all = spec.len();
    if !fits(all)? {
        return Ok(None);
    }
    // Invariant: `lo` does not fit (0 instances never do for a task), `hi` does.
    let (mut lo, mut hi) = (0u64, all);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Some(hi))
}
