//! The process's open-file limit: an API serving many connections and an
//! agent simulator holding thousands need more than the usual soft limit.

/// Raises the soft limit on open files to the hard limit; returns the soft
/// limit now in force (None: unlimited).
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            limit.current
        }
    }
}
