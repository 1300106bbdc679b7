//! Test helpers shared by the agent's tests and the end-to-end tests: a tiny
//! image built locally (no registry is reachable in CI) and cleanup guards.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use futures_util::StreamExt;

/// The test image: Debian's static busybox in a `FROM scratch` image.
pub const TEST_IMAGE: &str = "berth-test/busybox:1";
/// Where Debian's `busybox-static` puts the binary.
const BUSYBOX: &str = "/bin/busybox";
/// Applets linked in the image's `/bin`.
const APPLETS: &[&str] = &["sh", "sleep", "echo", "true", "false", "cat", "env", "pwd", "id", "nc", "wget", "test", "kill", "ls", "touch"];

/// Whether the tests needing Docker should run: they do unless
/// `BERTH_SKIP_DOCKER=1` is set on purpose; when they should and no daemon
/// answers, this panics with a message saying so.
pub async fn docker_or_skip() -> Option<Docker> {
    if std::env::var("BERTH_SKIP_DOCKER").as_deref() == Ok("1") {
        eprintln!("BERTH_SKIP_DOCKER=1: skipping a test that needs Docker");
        return None;
    }
    let docker = match Docker::connect_with_local_defaults() {
        Ok(d) => d,
        Err(e) => panic!("this test needs a Docker daemon (set BERTH_SKIP_DOCKER=1 to skip on purpose): {e}"),
    };
    match docker.negotiate_version().await {
        Ok(d) => Some(d),
        Err(e) => panic!("this test needs a Docker daemon and none answers (set BERTH_SKIP_DOCKER=1 to skip on purpose): {e}"),
    }
}

/// Builds [`TEST_IMAGE`] unless it exists. Panics (it is for tests) when
/// busybox-static is not installed or the build fails.
pub async fn ensure_test_image(docker: &Docker) {
    if docker.inspect_image(TEST_IMAGE).await.is_ok() {
        return;
    }
    let busybox = std::fs::read(BUSYBOX).unwrap_or_else(|e| panic!("{BUSYBOX} is missing ({e}); install Debian's busybox-static"));
    let mut ar = tar::Builder::new(Vec::new());
    let dockerfile = b"FROM scratch\nCOPY bin /bin\nLABEL berth.test=1\nCMD [\"/bin/sh\"]\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    ar.append_data(&mut h, "Dockerfile", &dockerfile[..]).expect("tar Dockerfile");
    let mut h = tar::Header::new_gnu();
    h.set_size(busybox.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    ar.append_data(&mut h, "bin/busybox", &busybox[..]).expect("tar busybox");
    for a in APPLETS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        ar.append_link(&mut h, format!("bin/{a}"), "busybox").expect("tar link");
    }
    let context = ar.into_inner().expect("tar");
    let opts = BuildImageOptionsBuilder::default().dockerfile("Dockerfile").t(TEST_IMAGE).rm(true).build();
    let mut s = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
    while let Some(r) = s.next().await {
        match r {
            Ok(info) => {
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    panic!("building {TEST_IMAGE}: {e}");
                }
            }
            Err(e) => panic!("building {TEST_IMAGE}: {e}"),
        }
    }
}

/// Removes every container carrying `label=value` (force), e.g. everything an
/// agent instance created. Errors are reported, not raised: this runs in Drop.
pub async fn remove_labelled(docker: &Docker, label: &str, value: &str) {
    let mut filters = HashMap::new();
    filters.insert("label", vec![format!("{label}={value}")]);
    let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let list = match docker.list_containers(Some(opts)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cleanup: listing containers {label}={value}: {e}");
            return;
        }
    };
    for c in list {
        if let Some(id) = c.id {
            let opts = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
            if let Err(e) = docker.remove_container(&id, Some(opts)).await {
                eprintln!("cleanup: removing {id}: {e}");
            }
        }
    }
}

/// Removes, when dropped (also when a test panics), every container with `label=value`.
#[derive(Debug)]
pub struct CleanupGuard {
    label: String,
    value: String,
}

impl CleanupGuard {
    /// A guard for containers labelled `label=value`.
    pub fn new(label: impl Into<String>, value: impl Into<String>) -> Self {
        CleanupGuard { label: label.into(), value: value.into() }
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let (label, value) = (self.label.clone(), self.value.clone());
        // Drop may run inside a runtime; clean up on a thread of its own.
        let t = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(d) = Docker::connect_with_local_defaults()
                    && let Ok(d) = d.negotiate_version().await
                {
                    remove_labelled(&d, &label, &value).await;
                }
            });
        });
        let _ = t.join();
    }
}
