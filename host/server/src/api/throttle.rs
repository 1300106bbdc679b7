//! Throttling as AWS does it: a token bucket per access key and per group
//! of operations; an empty bucket answers `ThrottlingException` (HTTP 400,
//! "Rate exceeded"), which botocore and the AWS SDKs retry with back-off.
//! The agent protocol is not throttled: an agent's heartbeats must never be
//! refused for a client's burst.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// The groups of operations, each with its own bucket per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// Describe*, List*, Get*: reads.
    Read,
    /// Every other operation: writes.
    Write,
    /// InstallPolicy: compiles a component, the costliest call.
    Policy,
}

impl Group {
    /// The group of an operation (the part of `X-Amz-Target` after the dot).
    pub fn of(operation: &str) -> Group {
        if operation == "InstallPolicy" {
            Group::Policy
        } else if ["Describe", "List", "Get"]
            .iter()
            .any(|p| operation.starts_with(p))
        {
            Group::Read
        } else {
            Group::Write
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Group::Read => "read",
            Group::Write => "write",
            Group::Policy => "policy",
        })
    }
}

/// A sustained rate (requests per second) and a burst (the bucket's size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

/// The rate of each group: high enough by default that loopback benchmarks
/// (about 16,000 DescribeTasks and 1,000 RunTask a second) never meet them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub read: Rate,
    pub write: Rate,
    pub policy: Rate,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            read: Rate {
                per_sec: 100_000.0,
                burst: 200_000.0,
            },
            write: Rate {
                per_sec: 20_000.0,
                burst: 40_000.0,
            },
            policy: Rate {
                per_sec: 10.0,
                burst: 20.0,
            },
        }
    }
}

impl Rates {
    fn of(&self, g: Group) -> Rate {
        match g {
            Group::Read => self.read,
            Group::Write => self.write,
            Group::Policy => self.policy,
        }
    }

    /// `self` with one `GROUP=RATE[:BURST]` setting applied (the burst
    /// defaults to twice the rate).
    pub fn with(mut self, setting: &RateSetting) -> Self {
        let r = setting.rate;
        match setting.group {
            Group::Read => self.read = r,
            Group::Write => self.write = r,
            Group::Policy => self.policy = r,
        }
        self
    }
}

/// One `--api-rate GROUP=RATE[:BURST]` flag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSetting {
    pub group: Group,
    pub rate: Rate,
}

impl FromStr for RateSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "`{s}` is not GROUP=RATE[:BURST] (GROUP read, write or policy; RATE requests a second)"
            )
        };
        let (group, numbers) = s.split_once('=').ok_or_else(usage)?;
        let group = match group {
            "read" => Group::Read,
            "write" => Group::Write,
            "policy" => Group::Policy,
            _ => return Err(usage()),
        };
        let (rate, burst) = match numbers.split_once(':') {
            Some((r, b)) => (r, Some(b)),
            None => (numbers, None),
        };
        let per_sec: f64 = rate.parse().map_err(|_| usage())?;
        let burst: f64 = match burst {
            Some(b) => b.parse().map_err(|_| usage())?,
            None => 2.0 * per_sec,
        };
        if !(per_sec > 0.0 && burst >= 1.0 && per_sec.is_finite() && burst.is_finite()) {
            return Err(format!(
                "`{s}`: the rate must be above 0 and the burst at least 1"
            ));
        }
        Ok(RateSetting {
            group,
            rate: Rate { per_sec, burst },
        })
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets, by access key and group.
#[derive(Debug)]
pub struct Throttle {
    rates: Rates,
    buckets: Mutex<HashMap<(String, Group), Bucket>>,
}

impl Throttle {
    pub fn new(rates: Rates) -> Self {
        Throttle {
            rates,
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for `key`'s call of group `g` now: false when its
    /// bucket is empty (the call is refused).
    pub fn take(&self, key: &str, g: Group) -> bool {
        self.take_at(key, g, Instant::now())
    }

    fn take_at(&self, key: &str, g: Group, now: Instant) -> bool {
        let rate = self.rates.of(g);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let b = buckets.entry((key.to_owned(), g)).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * rate.per_sec;
        b.tokens = (b.tokens + refill).min(rate.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_empties_at_its_burst_and_refills_at_its_rate() {
        let rates = Rates::default().with(&"write=2:3".parse().unwrap());
        let t = Throttle::new(rates);
        let start = Instant::now();
        assert!((0..3).all(|_| t.take_at("k", Group::Write, start)));
        assert!(!t.take_at("k", Group::Write, start));
        // Another key and another group have buckets of their own.
        assert!(t.take_at("other", Group::Write, start));
        assert!(t.take_at("k", Group::Read, start));
        // Half a second at 2 a second is one more token.
        let later = start + Duration::from_millis(500);
        assert!(t.take_at("k", Group::Write, later));
        assert!(!t.take_at("k", Group::Write, later));
    }

    #[test]
    fn settings_parse_and_operations_group() {
        assert_eq!(
            "read=5".parse::<RateSetting>().unwrap().rate,
            Rate {
                per_sec: 5.0,
                burst: 10.0
            }
        );
        for bad in ["read", "reads=1", "write=0", "write=1:0", "policy=x"] {
            assert!(bad.parse::<RateSetting>().is_err(), "{bad}");
        }
        assert_eq!(Group::of("DescribeTasks"), Group::Read);
        assert_eq!(Group::of("ListClusters"), Group::Read);
        assert_eq!(Group::of("GetTaskLogs"), Group::Read);
        assert_eq!(Group::of("RunTask"), Group::Write);
        assert_eq!(Group::of("InstallPolicy"), Group::Policy);
    }
}
