//! The AWS CLI story (tests/clients/aws_story.sh) against `berth up` on the
//! real Docker: a cluster, examples/hello-web.json, a task, a service scaled,
//! rolled to a new revision and deleted, with the CLI's own waiters.

use std::path::Path;
use std::process::Command;

use super::harness::{KEY, SECRET, Up, docker_ready};
use super::text;

/// Builds `berth-example/hello:1` from examples/hello-web/Dockerfile, as the
/// README does, with busybox-static copied into a context of its own.
fn build_example_image(repo: &Path) {
    let ctx = tempfile::tempdir().expect("tempdir");
    let src = repo.join("examples/hello-web");
    std::fs::copy(src.join("Dockerfile"), ctx.path().join("Dockerfile"))
        .expect("copy the Dockerfile");
    std::fs::create_dir(ctx.path().join("www")).expect("www");
    for f in std::fs::read_dir(src.join("www")).expect("examples/hello-web/www") {
        let f = f.expect("entry");
        std::fs::copy(f.path(), ctx.path().join("www").join(f.file_name())).expect("copy www");
    }
    std::fs::copy("/bin/busybox", ctx.path().join("busybox"))
        .expect("/bin/busybox (Debian's busybox-static) is missing");
    let out = Command::new("docker")
        .args(["build", "-q", "-t", "berth-example/hello:1"])
        .arg(ctx.path())
        .output()
        .expect("docker build runs");
    assert!(
        out.status.success(),
        "docker build of examples/hello-web: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn the_aws_cli_story_runs_against_berth_up() {
    if !docker_ready() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    build_example_image(&repo);
    let up = Up::start();
    let _guard = up.guard_containers();
    let out = super::harness::aws_env(
        Command::new("bash")
            .arg("tests/clients/aws_story.sh")
            .current_dir(&repo)
            .env("BERTH_ENDPOINT", format!("http://{}", up.addr)),
        KEY,
        SECRET,
    )
    .output()
    .unwrap_or_else(|e| panic!("cannot run bash ({e})"));
    assert!(
        out.status.success(),
        "tests/clients/aws_story.sh failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("aws story: ok"),
        "{}",
        text(&out.stdout)
    );
}
