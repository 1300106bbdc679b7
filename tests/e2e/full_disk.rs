//! `berth up` whose data directory's file system fills up: a write is
//! refused with a 503 naming the cause, GET /health says the store cannot
//! write, and once space is freed the same process writes again (no
//! restart) and is healthy, having lost nothing it acknowledged.

use std::process::Command;

use serde_json::json;

use crate::api::Server;
use crate::hostile::health;

#[test]
fn a_full_data_directory_refuses_writes_until_space_is_freed() {
    let (mnt, unmount) = mount_tmpfs("16m");
    let data = mnt.path().join("data");
    let s = Server::start_in(&data);

    let filler = mnt.path().join("filler");
    fill(&filler);

    let mut acked = Vec::new();
    let refusal = (0..2_000)
        .find_map(|i| {
            let name = format!("c{i:04}");
            let (status, v) = s.ecs("CreateCluster", json!({"clusterName": name}));
            if status == 200 {
                acked.push(name);
                None
            } else {
                Some((status, v))
            }
        })
        .expect("2,000 clusters on a full disk never failed");
    assert_eq!(refusal.0, 503, "{}", refusal.1);
    assert_eq!(
        refusal.1["__type"], "ServiceUnavailableException",
        "{}",
        refusal.1
    );
    let message = refusal.1["message"].as_str().unwrap_or_default();
    assert!(message.contains("No space left"), "{message}");
    // Reads still answer, but the health check sees the store cannot write.
    let (status, report) = health(&s.addr);
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["store"]["writable"], false, "{report}");
    assert!(
        report["store"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left")),
        "{report}"
    );

    std::fs::remove_file(&filler).expect("free space");
    s.ok("CreateCluster", json!({"clusterName": "after"}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, report) = health(&s.addr);
        if report["store"]["writable"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store never became writable again: {status} {report}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let listed = s.ok("ListClusters", json!({"maxResults": 100}));
    let mut arns: Vec<String> = listed["clusterArns"]
        .as_array()
        .expect("clusterArns")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let mut token = listed["nextToken"].as_str().map(str::to_owned);
    while let Some(t) = token {
        let page = s.ok("ListClusters", json!({"maxResults": 100, "nextToken": t}));
        arns.extend(
            page["clusterArns"]
                .as_array()
                .expect("clusterArns")
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned)),
        );
        token = page["nextToken"].as_str().map(str::to_owned);
    }
    for name in acked.iter().chain([&"after".to_owned()]) {
        assert!(
            arns.iter().any(|a| a.ends_with(&format!("/{name}"))),
            "acknowledged cluster {name} is gone"
        );
    }
    drop(s);
    drop(unmount);
}

/// A tmpfs of `size` (mount's `size=`, e.g. `16m`) mounted on a fresh
/// temporary directory, and the guard that unmounts it. Needs root.
pub(crate) fn mount_tmpfs(size: &str) -> (tempfile::TempDir, Unmount) {
    let mnt = tempfile::tempdir().expect("tempdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(mnt.path())
        .status()
        .expect("run mount");
    assert!(mounted.success(), "this test mounts a tmpfs and needs root");
    let unmount = Unmount(mnt.path().to_owned());
    (mnt, unmount)
}

/// Fills the file system of `file` with zeros written to it, until it is full.
pub(crate) fn fill(file: &std::path::Path) {
    let filled = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat /dev/zero > '{}' 2>/dev/null; true",
            file.display()
        ))
        .status()
        .expect("fill");
    assert!(filled.success());
}

/// Unmounts the tmpfs when the test ends, passed or not.
pub(crate) struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
