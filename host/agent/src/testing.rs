//! Test helpers shared by the agent's tests and the end-to-end tests: a tiny
//! image built locally (no registry is reachable in CI) and cleanup guards.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

/// The test image: Debian's static busybox in a `FROM scratch` image.
pub const TEST_IMAGE: &str = "berth-test/busybox:1";
/// Where Debian's `busybox-static` puts the binary.
const BUSYBOX: &str = "/bin/busybox";
/// Applets linked in the image's `/bin`.
const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "true", "false", "cat", "env", "pwd", "id", "nc", "wget", "test",
    "kill", "ls", "touch",
];

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
        Err(e) => panic!(
            "this test needs a Docker daemon (set BERTH_SKIP_DOCKER=1 to skip on purpose): {e}"
        ),
    };
    match docker.negotiate_version().await {
        Ok(d) => Some(d),
        Err(e) => panic!(
            "this test needs a Docker daemon and none answers (set BERTH_SKIP_DOCKER=1 to skip on purpose): {e}"
        ),
    }
}

/// Builds [`TEST_IMAGE`] unless it exists. Panics (it is for tests) when
/// busybox-static is not installed or the build fails.
pub async fn ensure_test_image(docker: &Docker) {
    let dockerfile = "FROM scratch\nCOPY bin /bin\nLABEL berth.test=1\nCMD [\"/bin/sh\"]\n";
    ensure_busybox_image(docker, TEST_IMAGE, dockerfile, APPLETS, &[]).await;
}

/// An HTTP server image: busybox's httpd serving `/www` on port [`WEB_PORT`].
pub const WEB_IMAGE: &str = "berth-test/web:1";
/// The port [`WEB_IMAGE`]'s httpd listens on in the container.
pub const WEB_PORT: u16 = 8080;
/// The body of [`WEB_IMAGE`]'s `/health` (the file `/www/health`).
pub const WEB_HEALTH_BODY: &str = "ok\n";
/// Applets of [`WEB_IMAGE`]: the server, a client for health checks, and
/// what a command needs to break the health endpoint (`rm /www/health`).
const WEB_APPLETS: &[&str] = &[
    "sh", "httpd", "wget", "rm", "cat", "echo", "sleep", "test", "ls",
];

/// Builds [`WEB_IMAGE`] unless it exists: `httpd -f -p 8080 -h /www` with
/// `/www/health` and `/www/index.html`. Panics (it is for tests) when
/// busybox-static is not installed or the build fails.
pub async fn ensure_web_image(docker: &Docker) {
    let dockerfile = format!(
        "FROM scratch\nCOPY bin /bin\nCOPY www /www\nLABEL berth.test=1\nEXPOSE {WEB_PORT}\nCMD [\"/bin/httpd\", \"-f\", \"-p\", \"{WEB_PORT}\", \"-h\", \"/www\"]\n"
    );
    let files: &[(&str, &[u8])] = &[
        ("www/health", WEB_HEALTH_BODY.as_bytes()),
        ("www/index.html", b"<h1>berth test web</h1>\n"),
    ];
    ensure_busybox_image(docker, WEB_IMAGE, &dockerfile, WEB_APPLETS, files).await;
}

/// Builds `tag` from `dockerfile` with `/bin/busybox`, its `applets` linked in
/// `bin/`, and `files` in the context, unless the image exists.
async fn ensure_busybox_image(
    docker: &Docker,
    tag: &str,
    dockerfile: &str,
    applets: &[&str],
    files: &[(&str, &[u8])],
) {
    if docker.inspect_image(tag).await.is_ok() {
        return;
    }
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("{BUSYBOX} is missing ({e}); install Debian's busybox-static"));
    let mut ar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        ar.append_data(&mut h, path, data)
            .unwrap_or_else(|e| panic!("tar {path}: {e}"));
    };
    add("Dockerfile", dockerfile.as_bytes(), 0o644);
    add("bin/busybox", &busybox, 0o755);
    for (path, data) in files {
        add(path, data, 0o644);
    }
    for a in applets {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        ar.append_link(&mut h, format!("bin/{a}"), "busybox")
            .expect("tar link");
    }
    let context = ar.into_inner().expect("tar");
    let opts = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .build();
    let mut s = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
    while let Some(r) = s.next().await {
        match r {
            Ok(info) => {
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    panic!("building {tag}: {e}");
                }
            }
            Err(e) => panic!("building {tag}: {e}"),
        }
    }
}

/// Removes every container carrying `label=value` (force), e.g. everything an
/// agent instance created. Errors are reported, not raised: this runs in Drop.
pub async fn remove_labelled(docker: &Docker, label: &str, value: &str) {
    let mut filters = HashMap::new();
    filters.insert("label", vec![format!("{label}={value}")]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = match docker.list_containers(Some(opts)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cleanup: listing containers {label}={value}: {e}");
            return;
        }
    };
    for c in list {
        if let Some(id) = c.id {
            let opts = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
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
        CleanupGuard {
            label: label.into(),
            value: value.into(),
        }
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let (label, value) = (self.label.clone(), self.value.clone());
        // Drop may run inside a runtime; clean up on a thread of its own.
        let t = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
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
