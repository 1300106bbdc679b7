//! `berth agent`: this host's Docker engine as a container instance of a
//! `berth server` elsewhere, reached over HTTP (`berth_client`'s
//! `RemoteControlPlane`); the agent itself is the same one `berth up` runs
//! in process (crate `berth-agent`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use berth_agent::{Agent, AgentConfig};
use berth_client::{Credentials, RemoteControlPlane, endpoint_host, serve_log_requests};
use berth_core::model::Attribute;
use berth_protocol::ControlPlane;

/// What `berth agent` was given.
#[derive(Debug, Clone)]
pub struct RemoteAgentOptions {
    /// `http://HOST:PORT` of each server, tried in turn.
    pub servers: Vec<String>,
    /// The cluster to join (created if missing).
    pub cluster: String,
    /// The Docker daemon (`unix:///PATH`, `tcp://HOST:PORT`); None: the local one.
    pub docker_host: Option<String>,
    /// Where the agent keeps its identity (its instance id).
    pub data_dir: PathBuf,
    /// `ecs.availability-zone`.
    pub availability_zone: String,
    /// `ecs.instance-type`.
    pub instance_type: String,
    /// Custom attributes (`--attribute K=V`).
    pub attributes: Vec<Attribute>,
    /// Image pulls and privileged containers.
    pub runtime: crate::agent_args::AgentRuntimeArgs,
}

/// `--attribute NAME=VALUE` (or `NAME` alone, an attribute without a value).
pub fn parse_attribute(s: &str) -> Result<Attribute, String> {
    let (name, value) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v.to_owned())),
        None => (s, None),
    };
    if name.is_empty() {
        return Err(format!("{s}: give NAME=VALUE"));
    }
    Ok(Attribute {
        name: name.to_owned(),
        value,
        target_type: None,
        target_id: None,
    })
}

/// `--docker-host`: `unix:///PATH` or `tcp://HOST:PORT`.
pub fn parse_docker_host(s: &str) -> Result<String, String> {
    let ok = s
        .strip_prefix("unix://")
        .is_some_and(|p| p.starts_with('/'))
        || s.strip_prefix("tcp://").is_some_and(|a| a.contains(':'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s}: give unix:///PATH or tcp://HOST:PORT"))
    }
}

/// Runs the agent until SIGINT or SIGTERM (containers keep running; the
/// next start on the same data directory re-adopts them).
pub fn run(opts: RemoteAgentOptions) -> anyhow::Result<()> {
    let creds = Credentials::from_env().context(
        "berth agent signs its requests with the server's key: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
         (berth server prints them at start)",
    )?;
    let hosts = opts
        .servers
        .iter()
        .map(|s| endpoint_host(s).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<String>>>()?;
    let plane = Arc::new(RemoteControlPlane::new(hosts, creds).map_err(anyhow::Error::msg)?);
    let mut cfg = AgentConfig::new(opts.cluster.as_str(), &opts.data_dir);
    cfg.availability_zone = opts.availability_zone;
    cfg.instance_type = opts.instance_type;
    cfg.attributes = opts.attributes;
    cfg.docker_host = opts.docker_host;
    opts.runtime.apply(&mut cfg);
    let agent = Agent::new(Arc::clone(&plane) as Arc<dyn ControlPlane>, cfg)
        .context("starting the Docker agent")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    println!(
        "berth agent: container instance {} of cluster {}, server {}; stop with Ctrl-C",
        agent.instance_arn(),
        opts.cluster,
        opts.servers.join(", ")
    );
    rt.block_on(async {
        let logs = tokio::spawn(serve_log_requests(
            plane,
            agent.instance_arn().to_owned(),
            agent.log_reader(),
        ));
        agent
            .run(async {
                if let Err(e) = crate::up::shutdown_signal().await {
                    tracing::error!(error = %e, "waiting for a signal failed; stopping");
                }
            })
            .await;
        logs.abort();
    });
    println!("berth agent: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_and_docker_hosts_parse() {
        let a = parse_attribute("disk=ssd").unwrap();
        assert_eq!((a.name.as_str(), a.value.as_deref()), ("disk", Some("ssd")));
        assert_eq!(parse_attribute("gpu").unwrap().value, None);
        assert!(parse_attribute("=x").is_err());
        assert!(parse_docker_host("unix:///run/docker.sock").is_ok());
        assert!(parse_docker_host("tcp://10.0.0.2:2375").is_ok());
        assert!(parse_docker_host("/run/docker.sock").is_err());
        assert!(parse_docker_host("unix://relative").is_err());
    }
}
