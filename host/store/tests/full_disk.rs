//! The store on a file system that fills up: a write that meets ENOSPC is
//! refused with a clear error and loses nothing acknowledged, and writes work
//! again once space is freed, without reopening the store; a store that could
//! not be created leaves no file behind. Each test mounts its own small tmpfs
//! (the tests run as root, as `.ci/run` does; without it they fail, saying so).

// A fuzz build (docs/fuzzing.md) instruments every crate; linking the fuzzer
// here gives this test binary the coverage symbols it then needs.
#[cfg(fuzzing)]
extern crate bolero as _;

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_store::{Record, Store, StoreError, UpdateError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Blob {
    id: String,
    data: String,
}

impl Record for Blob {
    const TABLE: &'static str = "blobs";
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// A tmpfs of `mib` MiB, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(mib: u32) -> SmallFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "these tests mount a small tmpfs and need root: mount said {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with a filler file, up to `leave` bytes free.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let free = free_bytes(self.path());
        let size = free.saturating_sub(leave);
        let status = Command::new("fallocate")
            .args(["-l", &size.to_string()])
            .arg(&filler)
            .status()
            .expect("run fallocate");
        assert!(status.success(), "fallocate {size} bytes");
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .expect("run df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df's answer")
}

fn blob(i: usize) -> Blob {
    Blob {
        id: format!("b{i:05}"),
        data: "x".repeat(16 * 1024),
    }
}

fn put(store: &Store, b: &Blob) -> Result<(), UpdateError<StoreError>> {
    store.update(|txn| txn.put(b)).map(|_| ())
}

/// Writes until the disk is full; returns the blobs acknowledged and the error.
fn write_until_full(store: &Store) -> (Vec<Blob>, String) {
    let mut acked = Vec::new();
    for i in 0..10_000 {
        let b = blob(i);
        match put(store, &b) {
            Ok(()) => acked.push(b),
            Err(e) => return (acked, e.to_string()),
        }
    }
    panic!("10,000 writes of 16 KiB never filled the file system");
}

#[test]
fn a_full_disk_refuses_writes_clearly_and_they_resume_once_space_is_freed() {
    let fs = SmallFs::mount(8);
    let path = fs.path().join("berth.redb");
    let store = Store::open(&path).expect("open");
    put(&store, &blob(99_999)).expect("a first write");
    let filler = fs.fill(256 * 1024);

    let (acked, error) = write_until_full(&store);
    assert!(
        error.contains("cannot write its file") && error.contains("No space left"),
        "the error names the cause: {error}"
    );
    // Still full: refused again, the same way, and reads keep answering.
    let again = put(&store, &blob(88_888)).expect_err("still full");
    assert!(
        again.to_string().contains("cannot write its file"),
        "{again}"
    );
    let mut txn = store.begin().expect("a read while full");
    for b in &acked {
        let got = txn.get::<Blob>(&b.id).expect("read").expect("acknowledged");
        assert_eq!(got.value, *b);
    }
    drop(txn);

    // Space freed: the same store writes again, no restart.
    std::fs::remove_file(&filler).expect("free space");
    put(&store, &blob(77_777)).expect("writes resume once space is freed");
    drop(store);

    // Nothing acknowledged was lost across a reopen either.
    let store = Store::open(&path).expect("reopen");
    let mut txn = store.begin().expect("read");
    for b in acked.iter().chain([&blob(77_777), &blob(99_999)]) {
        assert!(txn.get::<Blob>(&b.id).expect("read").is_some(), "{}", b.id);
    }
}

#[test]
fn a_store_that_cannot_be_created_leaves_no_file_behind() {
    let fs = SmallFs::mount(4);
    let path = fs.path().join("berth.redb");
    let filler = fs.fill(0);
    let err = Store::open(&path).expect_err("no space to create the store");
    assert!(
        err.to_string().contains("No space left"),
        "the error names the cause: {err}"
    );
    assert!(!path.exists(), "a failed creation left {}", path.display());

    std::fs::remove_file(&filler).expect("free space");
    let store = Store::open(&path).expect("created once space is freed");
    put(&store, &blob(1)).expect("write");
}

#[test]
fn a_zeroed_file_left_by_an_interrupted_creation_is_created_afresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("berth.redb");
    std::fs::write(&path, vec![0u8; 73_728]).expect("zeroed file");
    let store = Store::open(&path).expect("opens over the zeroed file");
    put(&store, &blob(1)).expect("write");
}

#[test]
fn the_store_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("berth.redb");
    drop(Store::open(&path).expect("create"));
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    // One made by an older berth (0644) is made private at the next open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(Store::open(&path).expect("reopen"));
    assert_eq!(mode(&path), 0o600);
}
