//! The store's flags, shared by the commands that open the store
//! (`berth up`, `berth server`).

use std::time::Duration;

/// `--stopped-task-ttl` and `--store-cache`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct StoreArgs {
    /// Seconds a stopped task stays visible (DescribeTasks, ListTasks
    /// STOPPED) before it is deleted; ECS keeps them about an hour.
    #[arg(
        long,
        env = "BERTH_STOPPED_TASK_TTL",
        value_name = "SECS",
        default_value_t = 3600
    )]
    pub stopped_task_ttl: u64,
    /// MiB of memory the store may keep as its page cache (redb's). It fills
    /// as a busy store is read and is kept, so it bounds berth's memory; the
    /// operating system's page cache serves what does not fit.
    #[arg(long, env = "BERTH_STORE_CACHE", value_name = "MIB", default_value_t = (berth_store::DEFAULT_CACHE_BYTES >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub store_cache: u64,
}

impl StoreArgs {
    /// The flags' defaults (for commands that open a store without them).
    pub fn defaults() -> StoreArgs {
        StoreArgs {
            stopped_task_ttl: 3600,
            store_cache: (berth_store::DEFAULT_CACHE_BYTES >> 20) as u64,
        }
    }

    pub fn stopped_task_ttl(&self) -> Duration {
        Duration::from_secs(self.stopped_task_ttl)
    }

    /// The page cache's bound in bytes.
    pub fn cache_bytes(&self) -> usize {
        usize::try_from(self.store_cache << 20).unwrap_or(usize::MAX)
    }
}
