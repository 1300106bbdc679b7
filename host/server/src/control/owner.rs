//! Who does the work that must have one owner among the servers over one
//! store: the service scheduler's passes (`services`), the queue's retries
//! (`queue`), the judging of agents (`liveness`) and the collectors of
//! stopped tasks and audit entries (`collectors`). Alone on redb a server
//! owns all of it; over etcd, each kind is owned through an etcd lease
//! (`berth_store_etcd::lease`), taken over when its owner dies or is cut
//! off. Answering the API and placing RunTasks need no owner: every server
//! does them, and compare-and-swap keeps them apart.

use berth_store_etcd::lease::Ownership;

/// The service scheduler's passes.
pub const SERVICES: &str = "services";
/// Placing queued tasks.
pub const QUEUE: &str = "queue";
/// Judging agents lost and stopping their tasks.
pub const LIVENESS: &str = "liveness";
/// Removing old stopped tasks and audit entries.
pub const COLLECTORS: &str = "collectors";

/// This server's ownership of work.
#[derive(Debug, Clone, Default)]
pub enum Owner {
    /// The only server over its store: it owns everything.
    #[default]
    Alone,
    /// One of several over etcd: what its lease holds.
    Leases(Ownership),
}

impl Owner {
    /// Whether this server does `work` now.
    pub fn owns(&self, work: &str) -> bool {
        match self {
            Owner::Alone => true,
            Owner::Leases(o) => o.owns(work),
        }
    }
}
