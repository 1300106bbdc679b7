//! How an agent waits before trying again after losing the control plane
//! or its container runtime: the ECS agent's back-off, 250 ms doubling up to
//! 2 min, with full jitter (each wait drawn uniformly below the cap) so a
//! fleet cut off at once does not come back at once.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The first cap.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// The largest cap.
pub const BACKOFF_MAX: Duration = Duration::from_secs(120);

/// A back-off: [`Backoff::next_delay`] after each failure, [`Backoff::reset`]
/// after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    cap: Duration,
    rng: SmallRng,
}

impl Default for Backoff {
    fn default() -> Self {
        use std::hash::BuildHasher;
        // RandomState is keyed at random per process: agents started
        // together draw different waits.
        let seed = std::collections::hash_map::RandomState::new().hash_one(BACKOFF_MIN);
        Backoff {
            cap: BACKOFF_MIN,
            rng: SmallRng::seed_from_u64(seed),
        }
    }
}

impl Backoff {
    /// The wait before the next try: uniform in `[0, cap]`; the cap then
    /// doubles, up to [`BACKOFF_MAX`].
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.cap;
        self.cap = (self.cap * 2).min(BACKOFF_MAX);
        let micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.rng.random_range(0..=micros))
    }

    /// The cap the next failure waits under.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Back to the first cap, after a success.
    pub fn reset(&mut self) {
        self.cap = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_double_to_two_minutes_with_every_wait_below_its_cap() {
        let mut b = Backoff::default();
        let mut caps = Vec::new();
        for _ in 0..12 {
            let cap = b.cap();
            let d = b.next_delay();
            assert!(d <= cap, "{d:?} > {cap:?}");
            caps.push(cap.as_millis());
        }
        assert_eq!(
            caps,
            [
                250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 120000, 120000, 120000
            ]
        );
        b.reset();
        assert_eq!(b.cap(), BACKOFF_MIN);
    }

    #[test]
    fn waits_are_jittered() {
        let mut b = Backoff::default();
        for _ in 0..9 {
            b.next_delay();
        }
        let waits: std::collections::HashSet<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(waits.len() > 10, "full jitter spreads the waits: {waits:?}");
    }
}
