//! The operator's flags, shared by `berth up` and `berth server`:
//! `--metrics-listen` and `--audit-retention`.

use std::net::SocketAddr;
use std::time::Duration;

/// Metrics and the audit log.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ObsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics, unsigned (off
    /// unless given; port 0: any free port, printed at start). Give an
    /// address only the scraper reaches.
    #[arg(long, env = "BERTH_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// How long audit log entries are kept (`90d`, `12h`, `30m`, `45s`);
    /// older ones are deleted once a minute.
    #[arg(long, env = "BERTH_AUDIT_RETENTION", value_name = "AGE", default_value = "90d", value_parser = parse_age)]
    pub audit_retention: Duration,
}

/// An age: a whole number and a unit, `s`, `m`, `h` or `d` (`90d`, `1h`).
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let secs_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{s}` is not an age: a number and a unit, s, m, h or d (as 90d or 1h)"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not an age: it must start with a whole number (as 90d)"))?;
    if n == 0 {
        return Err(format!("`{s}`: an age must be more than 0"));
    }
    n.checked_mul(secs_per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` is too long an age"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_their_unit_and_bad_ones_are_named() {
        assert_eq!(parse_age("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_age("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_age("45s"), Ok(Duration::from_secs(45)));
        for bad in ["", "h", "10", "10y", "-1h", "0d", "1.5h"] {
            let e = parse_age(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
    }
}
