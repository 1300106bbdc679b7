//! Getting a task's images: when to pull (the ECS agent's
//! `ECS_IMAGE_PULL_BEHAVIOR`), with which registry credential, within the
//! pull timeout, and the pull's progress as it goes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use berth_protocol::RegistryCredential;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use crate::docker::is_not_found;

/// When the agent pulls an image, as the ECS agent's `ECS_IMAGE_PULL_BEHAVIOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImagePullBehavior {
    /// Pull every time; when the pull fails, use the cached image if there is one.
    Default,
    /// Pull every time; when the pull fails, the task fails.
    Always,
    /// Pull the first time this agent (since it started) needs the image,
    /// or when it is not cached; then use the cached image.
    Once,
    /// Pull only when the image is not cached (berth's default: images
    /// built on the host, never pushed anywhere, run as they are).
    #[default]
    PreferCached,
}

impl ImagePullBehavior {
    /// The words of the flag and of ECS: `default`, `always`, `once`, `prefer-cached`.
    pub const NAMES: [&'static str; 4] = ["default", "always", "once", "prefer-cached"];

    /// The behaviour's name, as the flag spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullBehavior::Default => "default",
            ImagePullBehavior::Always => "always",
            ImagePullBehavior::Once => "once",
            ImagePullBehavior::PreferCached => "prefer-cached",
        }
    }
}

impl std::str::FromStr for ImagePullBehavior {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(ImagePullBehavior::Default),
            "always" => Ok(ImagePullBehavior::Always),
            "once" => Ok(ImagePullBehavior::Once),
            "prefer-cached" => Ok(ImagePullBehavior::PreferCached),
            other => Err(format!(
                "`{other}` is not an image pull behavior; use one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// What a start needs to get one image.
#[derive(Debug)]
pub(crate) struct Pull<'a> {
    pub image: &'a str,
    pub behavior: ImagePullBehavior,
    pub timeout: Duration,
    /// The registry login to pull with, if the container names one.
    pub credential: Option<&'a RegistryCredential>,
    /// Images this agent pulled since it started (for `once`).
    pub pulled: &'a Mutex<HashSet<String>>,
}

/// Makes sure the image is there as the pull behaviour says; the error is
/// the task's stoppedReason (`CannotPullContainerError: ...` naming the
/// image and what the registry answered). `progress` gets a line now and then.
pub(crate) async fn ensure_image(
    docker: &Docker,
    pull: &Pull<'_>,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<(), String> {
    let image = pull.image;
    let cached = match docker.inspect_image(image).await {
        Ok(_) => true,
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err(format!("CannotInspectImage: {image}: {e}")),
    };
    let pulled_before = pull
        .pulled
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains(image);
    let wanted = match pull.behavior {
        ImagePullBehavior::Default | ImagePullBehavior::Always => true,
        ImagePullBehavior::Once => !(cached && pulled_before),
        ImagePullBehavior::PreferCached => !cached,
    };
    if !wanted {
        return Ok(());
    }
    let result = tokio::time::timeout(pull.timeout, pull_image(docker, pull, progress)).await;
    let why = match result {
        Ok(Ok(())) => {
            pull.pulled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(image.to_owned());
            return Ok(());
        }
        Ok(Err(answer)) => answer,
        Err(_) => format!(
            "no answer within the pull timeout of {} s (berth agent --image-pull-timeout)",
            pull.timeout.as_secs()
        ),
    };
    if cached && pull.behavior != ImagePullBehavior::Always {
        tracing::warn!(image, "pull failed, using the cached image: {why}");
        return Ok(());
    }
    let login = match pull.credential {
        Some(c) => format!(" (as {})", c.username),
        None => String::new(),
    };
    Err(format!(
        "CannotPullContainerError: pulling image {image}{login} failed: {why}"
    ))
}

/// The repository and tag of `image` (`latest` when it names none).
fn repository_and_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        // A digest: the reference as a whole.
        return (image, "");
    }
    match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (image, "latest"),
    }
}

/// Pulls the image; the error is what Docker (and the registry behind it) said.
async fn pull_image(
    docker: &Docker,
    pull: &Pull<'_>,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<(), String> {
    let (name, tag) = repository_and_tag(pull.image);
    let mut opts = CreateImageOptionsBuilder::default().from_image(name);
    if !tag.is_empty() {
        opts = opts.tag(tag);
    }
    let credentials = pull.credential.map(|c| DockerCredentials {
        username: Some(c.username.clone()),
        password: Some(c.password.clone()),
        ..Default::default()
    });
    let mut stream = docker.create_image(Some(opts.build()), None, credentials);
    let mut layers = Layers::default();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| answer_of(&e))?;
        if layers.update(&info) {
            progress(layers.line(pull.image));
        }
    }
    Ok(())
}

/// What Docker said, without bollard's wrapping.
fn answer_of(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (Docker answered {status_code})"),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// A pull's layers as Docker's progress stream tells them.
#[derive(Debug, Default)]
struct Layers {
    /// Bytes downloaded and to download, by layer id.
    bytes: HashMap<String, (i64, i64)>,
    done: HashSet<String>,
    seen: HashSet<String>,
}

impl Layers {
    /// Takes one progress message in; true when the line to show changed.
    fn update(&mut self, info: &bollard::models::CreateImageInfo) -> bool {
        let (Some(id), Some(status)) = (&info.id, &info.status) else {
            return false;
        };
        self.seen.insert(id.clone());
        if status == "Pull complete" || status == "Already exists" {
            return self.done.insert(id.clone());
        }
        if status == "Downloading"
            && let Some(d) = &info.progress_detail
        {
            let now = (d.current.unwrap_or(0), d.total.unwrap_or(0));
            return self.bytes.insert(id.clone(), now) != Some(now);
        }
        false
    }

    fn line(&self, image: &str) -> String {
        let (got, total) = self
            .bytes
            .values()
            .fold((0i64, 0i64), |(g, t), (c, n)| (g + c, t + n));
        let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
        format!(
            "pulling image {image}: {} of {} layers done, {:.1} of {:.1} MiB downloaded",
            self.done.len(),
            self.seen.len(),
            mib(got),
            mib(total)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{CreateImageInfo, ProgressDetail};

    #[test]
    fn behaviours_parse_from_their_names_and_back() {
        for name in ImagePullBehavior::NAMES {
            let b: ImagePullBehavior = name.parse().unwrap();
            assert_eq!(b.as_str(), name);
        }
        let e = "sometimes".parse::<ImagePullBehavior>().unwrap_err();
        assert!(e.contains("default, always, once, prefer-cached"), "{e}");
    }

    #[test]
    fn images_split_into_repository_and_tag() {
        assert_eq!(repository_and_tag("busybox"), ("busybox", "latest"));
        assert_eq!(
            repository_and_tag("127.0.0.1:5000/berth/test:1"),
            ("127.0.0.1:5000/berth/test", "1")
        );
        assert_eq!(
            repository_and_tag("127.0.0.1:5000/berth/test"),
            ("127.0.0.1:5000/berth/test", "latest")
        );
        assert_eq!(
            repository_and_tag("a/b@sha256:00ff"),
            ("a/b@sha256:00ff", "")
        );
    }

    #[test]
    fn progress_counts_layers_and_bytes() {
        let mut l = Layers::default();
        let msg = |id: &str, status: &str, cur: Option<i64>, total: Option<i64>| CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail {
                current: cur,
                total,
            }),
            ..Default::default()
        };
        assert!(!l.update(&msg("a", "Pulling fs layer", None, None)));
        assert!(l.update(&msg(
            "a",
            "Downloading",
            Some(1024 * 1024),
            Some(4 * 1024 * 1024)
        )));
        assert!(l.update(&msg("b", "Already exists", None, None)));
        assert_eq!(
            l.line("x:1"),
            "pulling image x:1: 1 of 2 layers done, 1.0 of 4.0 MiB downloaded"
        );
    }
}
