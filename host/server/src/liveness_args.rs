//! The liveness flags, shared by the commands that run a control plane
//! (`berth up`; `berth server` too).

use berth_core::liveness::{DEFAULT_AGENT_TIMEOUT_SECS, DEFAULT_LOST_TASK_GRACE_SECS, Timing};

/// `--agent-timeout` and `--lost-task-grace`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LivenessArgs {
    /// Seconds without any message from an agent (agents send a heartbeat
    /// every 5 s) after which its container instance is shown
    /// agentConnected: false and placement skips it (reason AGENT). Keep it
    /// well above the 5 s heartbeat interval. A server that starts judges
    /// no agent before this long.
    #[arg(long, env = "BERTH_AGENT_TIMEOUT", value_name = "SECS", default_value_t = DEFAULT_AGENT_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub agent_timeout: u64,
    /// Seconds a lost instance keeps its tasks after it was shown
    /// disconnected; then they are STOPPED with a stoppedReason saying the
    /// host was lost (stopCode ServiceSchedulerInitiated for service tasks,
    /// which their services replace on connected instances;
    /// TerminationNotice for the others). An agent that returns later stops
    /// their containers.
    #[arg(long, env = "BERTH_LOST_TASK_GRACE", value_name = "SECS", default_value_t = DEFAULT_LOST_TASK_GRACE_SECS, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub lost_task_grace: u64,
}

impl LivenessArgs {
    /// The timing the flags say.
    pub fn timing(&self) -> Timing {
        let interval = berth_protocol::HEARTBEAT_INTERVAL.as_secs();
        if self.agent_timeout < 2 * interval {
            tracing::warn!(
                agent_timeout = self.agent_timeout,
                "--agent-timeout is under two heartbeat intervals ({interval} s each): remote agents may be judged lost between two heartbeats"
            );
        }
        Timing {
            timeout: self.agent_timeout as f64,
            grace: self.lost_task_grace as f64,
        }
    }
}
