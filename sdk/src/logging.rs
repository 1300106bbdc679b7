//! Logging through the host, and panics forwarded to it.

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

/// Logs one line through the host (rate-limited there). In a native build
/// (`cargo test`) the line goes to stderr.
pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    {
        use crate::bindings::berth::placement0_1_0::logger;
        let l = match level {
            Level::Debug => logger::Level::Debug,
            Level::Info => logger::Level::Info,
            Level::Warn => logger::Level::Warn,
            Level::Error => logger::Level::Error,
        };
        logger::log(l, message);
    }
    #[cfg(not(target_family = "wasm"))]
    eprintln!("[{level:?}] {message}");
}

/// The line a panic leaves in the host's log, e.g. `panicked at
/// src/lib.rs:12:5: boom`; the host attaches it to the trap it causes.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
pub(crate) fn panic_line(info: &std::panic::PanicHookInfo<'_>) -> String {
    let msg = info.payload_as_str().unwrap_or("(a non-string payload)");
    match info.location() {
        Some(l) => format!(
            "panicked at {}:{}:{}: {msg}",
            l.file(),
            l.line(),
            l.column()
        ),
        None => format!("panicked: {msg}"),
    }
}

/// In a component, installs (once) the panic hook that writes the panic
/// through the logger before the trap: without it a panic is only
/// `unreachable` to the host. Native builds keep Rust's own hook.
pub(crate) fn forward_panics() {
    #[cfg(target_family = "wasm")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| log(Level::Error, &panic_line(info))));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panic_line_names_message_and_location() {
        let line = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let seen = line.clone();
        let old = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            *seen.lock().unwrap_or_else(|e| e.into_inner()) = panic_line(info);
        }));
        let r = std::panic::catch_unwind(|| panic!("boom {}", 7));
        std::panic::set_hook(old);
        assert!(r.is_err());
        let line = line.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert!(
            line.starts_with("panicked at ")
                && line.contains("src/logging.rs:")
                && line.ends_with(": boom 7"),
            "{line}"
        );
    }
}
