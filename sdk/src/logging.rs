//! Logging through the host.

use crate::bindings::berth::placement::logger;

/// Severity of a log line.
#[derive(Debug, Clone, Copy)]
pub enum Level {
    /// Diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Odd but carrying on.
    Warn,
    /// Something failed.
    Error,
}

/// Logs one line through the host (rate-limited there).
pub fn log(level: Level, message: &str) {
    let l = match level {
        Level::Debug => logger::Level::Debug,
        Level::Info => logger::Level::Info,
        Level::Warn => logger::Level::Warn,
        Level::Error => logger::Level::Error,
    };
    logger::log(l, message);
}
