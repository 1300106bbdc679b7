//! Task definitions as users write them, through `berth up` and the AWS CLI
//! with the real Docker: volumes, a read-only root, the Docker options a
//! container gets (seen with `docker inspect`), memory limits that kill, and
//! the fields berth refuses.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_agent::testing::TEST_IMAGE;
use serde_json::{Value, json};

use super::harness::{KEY, SECRET, Up, docker_ready};
use super::{berth_bin, text};

/// Registers `td` (RegisterTaskDefinition's whole input) and runs one task of it.
fn register_and_run(up: &Up, td: &Value) -> String {
    up.aws(&[
        "register-task-definition",
        "--cli-input-json",
        &td.to_string(),
    ]);
    let family = td["family"].as_str().expect("family");
    let run = up.aws(&["run-task", "--task-definition", family]);
    run["tasks"][0]["taskArn"]
        .as_str()
        .unwrap_or_else(|| panic!("no task: {run}"))
        .to_owned()
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().expect("id")
}

/// `docker inspect` of container `name` of task `arn`.
fn inspect(arn: &str, name: &str) -> Value {
    let out = Command::new("docker")
        .args(["inspect", &format!("berth-{}-{name}", task_id(arn))])
        .output()
        .expect("docker inspect");
    assert!(
        out.status.success(),
        "docker inspect: {}",
        text(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).expect("JSON")[0].clone()
}

/// `berth logs` of task `arn` through this berth's API.
fn berth_logs(up: &Up, arn: &str, container: &str) -> std::process::Output {
    Command::new(berth_bin())
        .args(["logs", task_id(arn), "--container", container])
        .env("BERTH_ENDPOINT", format!("http://{}", up.addr))
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("BERTH_LOG", "warn")
        .output()
        .expect("berth runs")
}

fn family(name: &str) -> String {
    format!("e2e-td-{name}-{}", std::process::id())
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn volumes_reach_the_host_and_the_tasks_other_containers() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let dir = tempfile::tempdir().expect("tempdir");
    let host_dir = dir.path().to_str().expect("utf-8 path");
    let td = json!({
        "family": family("volumes"),
        "volumes": [
            {"name": "out", "host": {"sourcePath": host_dir}},
            {"name": "shared", "dockerVolumeConfiguration": {"scope": "task", "driver": "local",
                "labels": {"purpose": "e2e"}}}],
        "containerDefinitions": [
            {"name": "writer", "image": TEST_IMAGE, "memory": 16, "essential": false,
             "mountPoints": [{"sourceVolume": "out", "containerPath": "/out"},
                             {"sourceVolume": "shared", "containerPath": "/shared"}],
             "command": ["sh", "-c", "echo from-berth > /out/written.txt && echo via-volume > /shared/v.txt"]},
            {"name": "reader", "image": TEST_IMAGE, "memory": 16,
             "dependsOn": [{"containerName": "writer", "condition": "SUCCESS"}],
             "volumesFrom": [{"sourceContainer": "writer", "readOnly": true}],
             "mountPoints": [{"sourceVolume": "out", "containerPath": "/result"}],
             "command": ["sh", "-c",
                "cat /shared/v.txt /out/written.txt > /result/read.txt; touch /shared/x 2>/dev/null || echo refused > /result/ro.txt"]}]
    });
    let arn = register_and_run(&up, &td);
    let t = up.until(&arn, "STOPPED");
    assert!(
        t["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .all(|c| c["exitCode"] == 0),
        "{t}"
    );
    // Through the bind mount, on the host.
    assert_eq!(read(&dir.path().join("written.txt")), "from-berth");
    // Through the task's Docker volume and volumesFrom, read-only.
    assert_eq!(read(&dir.path().join("read.txt")), "via-volume\nfrom-berth");
    assert_eq!(read(&dir.path().join("ro.txt")), "refused");
    // The task-scoped volume went with the task.
    let volume = format!("berth-{}-shared", task_id(&arn));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("docker")
        .args(["volume", "inspect", &volume])
        .output()
        .expect("docker volume inspect")
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "volume {volume} outlived its task"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_read_only_root_refuses_a_write() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let dir = tempfile::tempdir().expect("tempdir");
    let td = json!({
        "family": family("readonly"),
        "volumes": [{"name": "out", "host": {"sourcePath": dir.path().to_str().expect("utf-8")}}],
        "containerDefinitions": [{"name": "app", "image": TEST_IMAGE, "memory": 16,
            "readonlyRootFilesystem": true,
            "mountPoints": [{"sourceVolume": "out", "containerPath": "/out"}],
            "command": ["sh", "-c", "touch /root-file 2>/out/err.txt; echo $? > /out/rc.txt"]}]
    });
    let arn = register_and_run(&up, &td);
    up.until(&arn, "STOPPED");
    assert_ne!(read(&dir.path().join("rc.txt")), "0", "the write succeeded");
    let err = read(&dir.path().join("err.txt"));
    assert!(err.contains("Read-only file system"), "{err}");
}

#[test]
fn docker_options_show_in_the_container() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let sleeper = "echo nofile=$(ulimit -n) user=$(id -u) pwd=$(pwd); trap 'exit 0' TERM; while true; do sleep 0.2; done";
    let td = json!({
        "family": family("options"), "cpu": "512", "memory": "256",
        "containerDefinitions": [
            {"name": "app", "image": TEST_IMAGE, "memory": 64, "memoryReservation": 32, "cpu": 128,
             "entryPoint": ["sh", "-c"], "command": [sleeper],
             "user": "1000:1000", "workingDirectory": "/tmp", "hostname": "web-1",
             "ulimits": [{"name": "nofile", "softLimit": 1234, "hardLimit": 2345}],
             "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m"}},
             "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.5"}],
             "dnsServers": ["10.0.0.2"], "dnsSearchDomains": ["example.com"],
             "dockerLabels": {"team": "web"},
             "systemControls": [{"namespace": "net.core.somaxconn", "value": "511"}],
             "linuxParameters": {"initProcessEnabled": true, "sharedMemorySize": 32,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                "tmpfs": [{"containerPath": "/scratch", "size": 8}]}},
            {"name": "quiet", "image": TEST_IMAGE, "essential": false,
             "logConfiguration": {"logDriver": "none"},
             "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]}]
    });
    let arn = register_and_run(&up, &td);
    up.until(&arn, "RUNNING");
    let c = inspect(&arn, "app");
    let (cfg, host) = (&c["Config"], &c["HostConfig"]);
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["WorkingDir"], "/tmp");
    assert_eq!(cfg["Hostname"], "web-1");
    assert_eq!(cfg["Entrypoint"], json!(["sh", "-c"]));
    assert_eq!(cfg["Labels"]["team"], "web");
    assert_eq!(cfg["Labels"]["berth.task-arn"], arn.as_str());
    assert_eq!(host["Memory"], 64 * 1024 * 1024);
    assert_eq!(host["MemoryReservation"], 32 * 1024 * 1024);
    assert_eq!(host["CpuShares"], 128);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(
        host["Ulimits"],
        json!([{"Name": "nofile", "Soft": 1234, "Hard": 2345}])
    );
    assert_eq!(
        host["LogConfig"],
        json!({"Type": "json-file", "Config": {"max-size": "1m"}})
    );
    assert_eq!(host["ExtraHosts"], json!(["db:10.0.0.5"]));
    assert_eq!(host["Dns"], json!(["10.0.0.2"]));
    assert_eq!(host["DnsSearch"], json!(["example.com"]));
    assert_eq!(host["Sysctls"], json!({"net.core.somaxconn": "511"}));
    assert_eq!(host["Init"], true);
    assert_eq!(host["CapAdd"], json!(["NET_ADMIN"]));
    assert_eq!(host["CapDrop"], json!(["MKNOD"]));
    assert_eq!(host["ShmSize"], 32 * 1024 * 1024);
    assert_eq!(host["Tmpfs"], json!({"/scratch": "size=8m"}));
    // The task's memory bounds a container that sets none itself.
    assert_eq!(
        inspect(&arn, "quiet")["HostConfig"]["Memory"],
        256 * 1024 * 1024
    );
    // What the process sees, read back through berth's logs (json-file).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = berth_logs(&up, &arn, "app");
        let shown = text(&out.stdout);
        if shown.contains("nofile=") {
            assert!(shown.contains("nofile=1234 user=1000 pwd=/tmp"), "{shown}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no output: {shown}{}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A container logging to `none` keeps no log to read: berth says where they went.
    let out = berth_logs(&up, &arn, "quiet");
    assert!(!out.status.success());
    let said = text(&out.stderr);
    // The caller's choice of driver, so a refusal (400), not a server failure.
    assert!(said.contains("berth: ClientException: "), "{said}");
    assert!(
        said.contains("logs to the none log driver"),
        "{said}{}",
        text(&out.stdout)
    );
    up.aws(&["stop-task", "--task", &arn]);
    up.until(&arn, "STOPPED");
}

#[test]
fn a_task_over_its_memory_limit_stops_with_out_of_memory_error() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let td = json!({
        "family": family("oom"),
        "containerDefinitions": [{"name": "hog", "image": TEST_IMAGE, "memory": 16,
            // A 128 MiB buffer, filled: over the 16 MiB limit.
            "command": ["busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"]}]
    });
    let arn = register_and_run(&up, &td);
    let t = up.until(&arn, "STOPPED");
    let reason = "OutOfMemoryError: Container killed due to memory usage";
    assert_eq!(t["containers"][0]["reason"], reason, "{t}");
    assert_eq!(t["stopCode"], "EssentialContainerExited", "{t}");
    assert!(
        t["stoppedReason"]
            .as_str()
            .is_some_and(|r| r.contains(reason)),
        "{t}"
    );
}

#[test]
fn fields_berth_cannot_honour_are_refused_by_name() {
    let up = Up::start();
    let refused = |td: Value, want: &str| {
        let out = up.aws_output(&[
            "register-task-definition",
            "--cli-input-json",
            &td.to_string(),
        ]);
        assert!(!out.status.success(), "accepted: {td}");
        let said = text(&out.stderr);
        // ECS answers a task definition it refuses with ClientException.
        assert!(said.contains("ClientException"), "{said}");
        assert!(said.contains(want), "{said}\nwant: {want}");
    };
    let app = |extra: Value| {
        let mut c = json!({"name": "app", "image": TEST_IMAGE, "memory": 16});
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        json!({"family": family("refused"), "containerDefinitions": [c]})
    };
    refused(
        app(json!({"secrets": [{"name": "A", "valueFrom": "arn:aws:ssm:x"}]})),
        "containerDefinitions[0].secrets: not supported by berth",
    );
    refused(
        app(json!({"repositoryCredentials": {"credentialsParameter": "never-stored"}})),
        "containerDefinitions[0].repositoryCredentials.credentialsParameter: no secret named `never-stored`",
    );
    refused(
        app(
            json!({"logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}}),
        ),
        "containerDefinitions[0].logConfiguration.logDriver: `awslogs` is not supported by berth",
    );
    let mut awsvpc = app(json!({}));
    awsvpc["networkMode"] = json!("awsvpc");
    refused(
        awsvpc,
        "networkMode: awsvpc is not supported by berth (no ENIs); use bridge or host",
    );
    // Fields left at nothing, as exports carry them, are fine.
    let ok = app(json!({"secrets": [], "privileged": false, "links": []}));
    up.aws(&[
        "register-task-definition",
        "--cli-input-json",
        &ok.to_string(),
    ]);
}

#[test]
fn task_namespaces_shared_volumes_and_start_timeouts_reach_docker() {
    if !docker_ready() {
        return;
    }
    let up = Up::start();
    let _guard = up.guard_containers();
    let shared = format!("e2e-td-shared-{}", std::process::id());
    let td = json!({
        "family": family("ns"), "pidMode": "task", "ipcMode": "task",
        "volumes": [{"name": shared, "dockerVolumeConfiguration":
            {"scope": "shared", "autoprovision": true, "driver": "local"}}],
        "containerDefinitions": [
            {"name": "main", "image": TEST_IMAGE, "memory": 16, "stopTimeout": 1,
             "mountPoints": [{"sourceVolume": shared, "containerPath": "/cache"}],
             "command": ["sh", "-c", "echo kept > /cache/kept.txt; sleep 60"]},
            {"name": "side", "image": TEST_IMAGE, "memory": 16, "stopTimeout": 1,
             "command": ["sleep", "60"]}]
    });
    let arn = register_and_run(&up, &td);
    up.until(&arn, "RUNNING");
    let main = inspect(&arn, "main");
    let side = inspect(&arn, "side");
    assert_eq!(main["HostConfig"]["IpcMode"], "shareable");
    let main_id = main["Id"].as_str().expect("id");
    let joined = |mode: &Value| {
        let m = mode.as_str().unwrap_or_default();
        m == format!("container:berth-{}-main", task_id(&arn))
            || m == format!("container:{main_id}")
    };
    assert!(
        joined(&side["HostConfig"]["PidMode"]),
        "{}",
        side["HostConfig"]
    );
    assert!(
        joined(&side["HostConfig"]["IpcMode"]),
        "{}",
        side["HostConfig"]
    );
    up.aws(&["stop-task", "--task", &arn]);
    up.until(&arn, "STOPPED");
    // A shared volume outlives its task, with what the task wrote.
    let vol = Command::new("docker")
        .args(["volume", "inspect", "--format", "{{.Mountpoint}}", &shared])
        .output()
        .expect("docker volume inspect");
    assert!(vol.status.success(), "{}", text(&vol.stderr));
    let kept = std::path::Path::new(text(&vol.stdout).trim()).join("kept.txt");
    assert_eq!(read(&kept), "kept");
    let _ = Command::new("docker")
        .args(["volume", "rm", &shared])
        .output();

    // A dependency never healthy within its startTimeout stops the task.
    let td = json!({
        "family": family("slow"),
        "containerDefinitions": [
            {"name": "db", "image": TEST_IMAGE, "memory": 16, "startTimeout": 2, "stopTimeout": 1,
             "healthCheck": {"command": ["CMD-SHELL", "exit 1"], "interval": 5, "retries": 10},
             "command": ["sleep", "60"]},
            {"name": "app", "image": TEST_IMAGE, "memory": 16, "command": ["true"],
             "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]}]
    });
    let arn = register_and_run(&up, &td);
    let t = up.until(&arn, "STOPPED");
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t}");
    assert!(
        t["stoppedReason"]
            .as_str()
            .is_some_and(|r| r.contains("within its startTimeout of 2 s")),
        "{t}"
    );
}
