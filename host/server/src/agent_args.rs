//! The Docker agent's runtime options, shared by `berth up` and `berth
//! agent`: when images are pulled, how long a pull may take, whether
//! privileged containers run.

use std::time::Duration;

use berth_agent::{AgentConfig, ImagePullBehavior};

/// `--image-pull-behavior`, `--image-pull-timeout`, `--allow-privileged`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentRuntimeArgs {
    /// When images are pulled (the ECS agent's ECS_IMAGE_PULL_BEHAVIOR):
    /// `default` pulls every time and falls back to a cached image when the
    /// pull fails; `always` pulls every time and fails the task when the
    /// pull fails; `once` pulls the first time this agent needs an image;
    /// `prefer-cached` pulls only images not cached (berth's default, for
    /// images built on the host).
    #[arg(
        long,
        env = "ECS_IMAGE_PULL_BEHAVIOR",
        default_value = "prefer-cached",
        value_parser = parse_pull_behavior,
        value_name = "default|always|once|prefer-cached"
    )]
    image_pull_behavior: ImagePullBehavior,
    /// Seconds one image's pull may take before its task stops with
    /// CannotPullContainerError.
    #[arg(
        long,
        env = "BERTH_IMAGE_PULL_TIMEOUT",
        value_name = "SECS",
        default_value_t = berth_agent::DEFAULT_IMAGE_PULL_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    image_pull_timeout: u64,
    /// Run containers whose definition says `privileged: true` (full access
    /// to the host). Without it, the instance lacks the attribute
    /// ecs.capability.privileged-container and such tasks are not placed here.
    #[arg(long, env = "BERTH_ALLOW_PRIVILEGED")]
    allow_privileged: bool,
}

fn parse_pull_behavior(s: &str) -> Result<ImagePullBehavior, String> {
    s.parse()
}

impl AgentRuntimeArgs {
    /// Sets these options on an agent's configuration.
    pub fn apply(&self, cfg: &mut AgentConfig) {
        cfg.image_pull_behavior = self.image_pull_behavior;
        cfg.image_pull_timeout = Duration::from_secs(self.image_pull_timeout);
        cfg.allow_privileged = self.allow_privileged;
    }
}
