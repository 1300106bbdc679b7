//! The store's conformance suite (`conformance/`) on redb. The same suite
//! runs on etcd: host/store-etcd/tests/conformance.rs.

// A fuzz build (docs/fuzzing.md) instruments every crate; linking the fuzzer
// here gives this test binary the coverage symbols it then needs.
#[cfg(fuzzing)]
extern crate bolero as _;

mod harness {
    use std::path::PathBuf;

    use berth_store::Store;

    /// A redb file in a temporary directory.
    pub struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        pub fn location(&self) -> PathBuf {
            self.dir.path().join("berth.redb")
        }

        pub fn open(&self) -> anyhow::Result<Store> {
            Ok(Store::open(self.location())?)
        }
    }

    pub fn fixture() -> anyhow::Result<Option<Fixture>> {
        Ok(Some(Fixture {
            dir: tempfile::tempdir()?,
        }))
    }

    pub fn open() -> anyhow::Result<Option<(Fixture, Store)>> {
        let Some(f) = fixture()? else {
            return Ok(None);
        };
        let store = f.open()?;
        Ok(Some((f, store)))
    }
}

#[path = "conformance/mod.rs"]
mod conformance;
