//! A connected agent's session: converging on every wake-up, heartbeats,
//! and following the task manifest by long poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_protocol::{Heartbeat, ManifestRequest};
use bollard::Docker;

use crate::converge::{self, Pass};
use crate::{AgentError, Inner, register};

/// A task of the session, aborted when the session ends, also when it is
/// dropped mid-way (the agent shut down): nothing of it outlives the agent.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A converge pass, once Docker answers a ping.
pub(crate) async fn reconcile_with(inner: &Arc<Inner>, docker: &Docker) -> Result<(), AgentError> {
    if let Err(e) = docker.ping().await {
        return Err(AgentError::Docker(e));
    }
    converge::reconcile(inner, docker, Pass::Converge).await
}

/// Converges on every wake-up and timer tick, heartbeating between passes,
/// until Docker stops answering or the control plane cannot be reached.
pub(crate) async fn converge_until_lost(
    inner: &Arc<Inner>,
    docker: &Docker,
) -> Result<(), AgentError> {
    let mut heartbeats = tokio::time::interval(inner.cfg.heartbeat_interval);
    heartbeats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Err(e) = reconcile_with(inner, docker).await {
            // Docker or the control plane gone ends the session; any other
            // failure is retried on the next pass.
            if e.is_control_unavailable() || docker.ping().await.is_err() {
                return Err(e);
            }
            tracing::warn!("reconcile pass failed: {e}");
        }
        tokio::select! {
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(inner.cfg.reconcile_interval) => {}
            _ = heartbeats.tick() => heartbeat(inner, docker).await?,
        }
    }
}

/// Tells the control plane this agent is alive and reaches Docker; an
/// instance it no longer knows (its store was reset) is registered again.
async fn heartbeat(inner: &Arc<Inner>, docker: &Docker) -> Result<(), AgentError> {
    let hb = Heartbeat {
        cluster: inner.cfg.cluster.clone(),
        container_instance_arn: inner.instance_arn.clone(),
        agent_connected: true,
    };
    if !inner.plane.heartbeat(hb).await?.registered {
        tracing::warn!(instance = %inner.instance_arn, "the control plane does not know this instance; registering it again");
        register::register(inner, docker).await?;
    }
    Ok(())
}

/// Follows the instance's manifest by long poll, waking the agent whenever
/// its sequence number rises. A control plane that answers at once when
/// nothing changed is asked again after the reconcile interval.
pub(crate) async fn watch_manifest(inner: Arc<Inner>) {
    let mut known = 0;
    loop {
        let asked = Instant::now();
        let req = ManifestRequest {
            cluster: inner.cfg.cluster.clone(),
            container_instance_arn: inner.instance_arn.clone(),
            known_sequence: Some(known),
        };
        match inner.plane.task_manifest(req).await {
            Ok(m) if m.sequence > known => {
                known = m.sequence;
                inner.wake.notify_one();
                continue;
            }
            Ok(_) => {}
            // The session's own calls notice a lost control plane.
            Err(e) => tracing::debug!("manifest long poll: {e}"),
        }
        if asked.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(inner.cfg.reconcile_interval.max(Duration::from_millis(100))).await;
        }
    }
}
