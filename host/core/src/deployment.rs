//! The arithmetic of service deployments, with no IO: how many tasks a
//! rolling deployment may start and which it may stop now, the circuit
//! breaker's threshold, and the restart back-off. The service scheduler asks
//! [`plan`] at every step and carries out its answer.
//!
//! The two bounds of ECS, for a service of `desired` tasks:
//! - healthy RUNNING tasks stay at or above `ceil(minimumHealthyPercent x desired)`;
//! - RUNNING + PENDING tasks stay at or below `floor(maximumPercent x desired)`.
//!
//! A step never breaks a bound it did not find broken, and never makes a
//! broken bound worse.

use std::time::Duration;

/// ECS's defaults for REPLICA services.
pub const DEFAULT_MAXIMUM_PERCENT: u32 = 200;
pub const DEFAULT_MINIMUM_HEALTHY_PERCENT: u32 = 100;

/// A deployment's tasks (desired status RUNNING) as the scheduler sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskCounts {
    /// RUNNING and healthy (health check passing, or none and past the grace period).
    pub healthy: u32,
    /// RUNNING but not yet (or no longer) counted healthy.
    pub unhealthy: u32,
    /// Not yet RUNNING.
    pub pending: u32,
}

impl TaskCounts {
    pub fn total(&self) -> u32 {
        self.healthy + self.unhealthy + self.pending
    }
}

/// What one step of a deployment does. Stops take the least useful tasks
/// first: pending, then unhealthy, then healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    /// New tasks of the primary deployment to start.
    pub start: u32,
    /// Tasks of the primary deployment to stop (scaling in).
    pub stop_primary: TaskCounts,
    /// Tasks of older deployments to stop.
    pub stop_old: TaskCounts,
}

/// `ceil(min% x desired)` and `floor(max% x desired)`.
pub fn bounds(desired: u32, minimum_healthy_percent: u32, maximum_percent: u32) -> (u32, u32) {
    let d = u64::from(desired);
    let lower = (d * u64::from(minimum_healthy_percent)).div_ceil(100);
    let upper = d * u64::from(maximum_percent) / 100;
    (
        u32::try_from(lower).unwrap_or(u32::MAX),
        u32::try_from(upper).unwrap_or(u32::MAX),
    )
}

/// One step of a rolling deployment: the primary deployment converges on
/// `desired` tasks and the older ones (summed in `old`) on none, within the
/// two bounds.
pub fn plan(
    desired: u32,
    minimum_healthy_percent: u32,
    maximum_percent: u32,
    primary: TaskCounts,
    old: TaskCounts,
) -> Step {
    let (lower, upper) = bounds(desired, minimum_healthy_percent, maximum_percent);
    // A maximum below the desired count would forbid ever reaching it.
    let upper = upper.max(desired);
    let mut step = Step::default();
    let healthy = primary.healthy + old.healthy;
    let mut total = primary.total() + old.total();

    // Tasks that count for nothing go first, bounds permitting always.
    let take = |n: &mut u32, want: u32| -> u32 {
        let t = (*n).min(want);
        *n -= t;
        t
    };
    let mut old_left = old;
    step.stop_old.pending = take(&mut old_left.pending, u32::MAX);
    step.stop_old.unhealthy = take(&mut old_left.unhealthy, u32::MAX);
    total -= step.stop_old.pending + step.stop_old.unhealthy;

    // Scale in the primary: surplus first from its pending and unhealthy tasks.
    let mut surplus = primary.total().saturating_sub(desired);
    let mut primary_left = primary;
    step.stop_primary.pending = take(&mut primary_left.pending, surplus);
    surplus -= step.stop_primary.pending;
    step.stop_primary.unhealthy = take(&mut primary_left.unhealthy, surplus);
    surplus -= step.stop_primary.unhealthy;
    total -= step.stop_primary.pending + step.stop_primary.unhealthy;

    // Healthy tasks may go only while the healthy count stays at or above the lower bound.
    let mut spare = healthy.saturating_sub(lower);
    step.stop_old.healthy = take(&mut old_left.healthy, spare);
    spare -= step.stop_old.healthy;
    step.stop_primary.healthy = take(&mut primary_left.healthy, surplus.min(spare));
    total -= step.stop_old.healthy + step.stop_primary.healthy;

    // Start what the primary lacks, within the upper bound.
    let missing = desired.saturating_sub(primary_left.total());
    step.start = missing.min(upper.saturating_sub(total));
    step
}

/// Failed tasks after which the circuit breaker stops a deployment:
/// half the desired count, at least 3 and at most 200.
pub fn circuit_breaker_threshold(desired: u32) -> u32 {
    desired.div_ceil(2).clamp(3, 200)
}

/// How long to wait before starting a task again after `failures`
/// consecutive tasks of the service stopped before ever RUNNING: 5 s,
/// doubling, at most 5 minutes.
pub fn restart_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let secs = 5u64.saturating_mul(1u64 << (failures - 1).min(16));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(healthy: u32, unhealthy: u32, pending: u32) -> TaskCounts {
        TaskCounts {
            healthy,
            unhealthy,
            pending,
        }
    }

    #[test]
    fn bounds_round_as_ecs_does() {
        assert_eq!(bounds(3, 50, 200), (2, 6));
        assert_eq!(bounds(3, 100, 150), (3, 4));
        assert_eq!(bounds(0, 100, 200), (0, 0));
    }

    #[test]
    fn a_rolling_update_100_200_starts_all_then_stops_old() {
        // 4 old healthy; min 100%, max 200%: start 4 new first.
        let s = plan(4, 100, 200, counts(0, 0, 0), counts(4, 0, 0));
        assert_eq!(
            s,
            Step {
                start: 4,
                ..Step::default()
            }
        );
        // Two of the new are healthy: two old may go.
        let s = plan(4, 100, 200, counts(2, 0, 2), counts(4, 0, 0));
        assert_eq!(s.stop_old, counts(2, 0, 0));
        assert_eq!(s.start, 0);
    }

    #[test]
    fn a_rolling_update_50_100_stops_first() {
        let s = plan(4, 50, 100, counts(0, 0, 0), counts(4, 0, 0));
        assert_eq!(s.stop_old, counts(2, 0, 0));
        assert_eq!(s.start, 2);
    }

    #[test]
    fn scaling_in_stops_pending_first() {
        let s = plan(2, 100, 200, counts(3, 0, 2), TaskCounts::default());
        assert_eq!(s.stop_primary, counts(1, 0, 2));
        assert_eq!(s.start, 0);
    }

    #[test]
    fn breaker_and_backoff() {
        assert_eq!(circuit_breaker_threshold(1), 3);
        assert_eq!(circuit_breaker_threshold(10), 5);
        assert_eq!(circuit_breaker_threshold(1000), 200);
        assert_eq!(restart_delay(0), Duration::ZERO);
        assert_eq!(restart_delay(1), Duration::from_secs(5));
        assert_eq!(restart_delay(3), Duration::from_secs(20));
        assert_eq!(restart_delay(40), Duration::from_secs(300));
    }

    fn arb_counts() -> impl Strategy<Value = TaskCounts> {
        (0u32..8, 0u32..4, 0u32..4).prop_map(|(h, u, p)| counts(h, u, p))
    }

    proptest! {
        /// A step never breaks a bound it found holding, and a deployment
        /// driven step by step reaches the desired count with no old task left.
        #[test]
        fn steps_keep_the_bounds_and_converge(
            desired in 0u32..10,
            min_pct in 0u32..=100,
            extra in 0u32..=100,
            primary in arb_counts(),
            old in arb_counts(),
        ) {
            let max_pct = 100 + extra;
            let (lower, upper) = bounds(desired, min_pct, max_pct);
            let (mut p, mut o) = (primary, old);
            for _ in 0..50 {
                let s = plan(desired, min_pct, max_pct, p, o);
                let healthy_before = p.healthy + o.healthy;
                let total_before = p.total() + o.total();
                for (have, stop) in [(&mut p, s.stop_primary), (&mut o, s.stop_old)] {
                    prop_assert!(stop.healthy <= have.healthy && stop.unhealthy <= have.unhealthy && stop.pending <= have.pending);
                    have.healthy -= stop.healthy;
                    have.unhealthy -= stop.unhealthy;
                    have.pending -= stop.pending;
                }
                p.pending += s.start;
                let healthy = p.healthy + o.healthy;
                let total = p.total() + o.total();
                prop_assert!(healthy >= lower.min(healthy_before), "healthy {} fell below {}", healthy, lower);
                prop_assert!(total <= upper.max(desired).max(total_before), "total {} above {}", total, upper);
                if s == Step::default() && p.pending == 0 && p.unhealthy == 0 {
                    break;
                }
                // Time passes: every pending and unhealthy task becomes healthy.
                p.healthy += p.pending + p.unhealthy;
                p.pending = 0;
                p.unhealthy = 0;
                o.healthy += o.pending + o.unhealthy;
                o.pending = 0;
                o.unhealthy = 0;
            }
            // With no room above or below the desired count (say min 100%,
            // max 100%) a deployment cannot move, as in ECS; otherwise it must finish.
            if upper > desired || lower < desired {
                prop_assert_eq!(p.total(), desired, "primary did not converge: {:?}", p);
                prop_assert_eq!(o.total(), 0, "old tasks left: {:?}", o);
            }
        }
    }
}
