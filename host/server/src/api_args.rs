//! The API's limit flags, shared by the commands that serve the API
//! (`berth up`, `berth server`). docs/security.md explains each.

use std::time::Duration;

use crate::api::Limits;
use crate::api::throttle::{RateSetting, Rates};

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "`{s}` is not a number of seconds above 0 (at most 86400)"
        )),
    }
}

/// `--max-connections`, `--header-timeout`, `--body-timeout`, `--api-rate`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// API connections open at once; more wait in the listen backlog until
    /// one closes. Lowered to fit the open-file limit (whose soft value
    /// berth raises to the hard one at start).
    #[arg(long, env = "BERTH_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Seconds a connection has to send a request's headers, counted from
    /// its start or from the end of the previous answer (so also how long
    /// an idle kept-alive connection stays open).
    #[arg(long, env = "BERTH_HEADER_TIMEOUT", value_name = "SECS", default_value = "30", value_parser = positive_secs)]
    pub header_timeout: f64,
    /// Seconds a request has to send its body once its headers passed.
    #[arg(long, env = "BERTH_BODY_TIMEOUT", value_name = "SECS", default_value = "30", value_parser = positive_secs)]
    pub body_timeout: f64,
    /// Throttling per access key: GROUP=RATE[:BURST] (repeatable), GROUP
    /// `read` (Describe*, List*, Get*; default 100000:200000), `write`
    /// (the other operations; default 20000:40000) or `policy`
    /// (InstallPolicy; default 10:20); RATE requests a second, BURST the
    /// bucket's size (default twice RATE). Over it: ThrottlingException.
    #[arg(long = "api-rate", value_name = "GROUP=RATE[:BURST]")]
    pub api_rates: Vec<RateSetting>,
}

impl ApiArgs {
    /// The limits the flags say.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections as usize,
            header_timeout: Duration::from_secs_f64(self.header_timeout),
            body_timeout: Duration::from_secs_f64(self.body_timeout),
            rates: self.api_rates.iter().fold(Rates::default(), Rates::with),
        }
    }
}
