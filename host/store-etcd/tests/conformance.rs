//! The store's conformance suite (host/store/tests/conformance/) on etcd:
//! each test on its own etcd member, started on free loopback ports with a
//! temporary data directory. Without the `etcd` binary these tests fail,
//! unless `BERTH_SKIP_ETCD=1` is set on purpose.

mod harness {
    use std::path::PathBuf;
    use std::sync::Arc;

    use berth_store::Store;
    use berth_store_etcd::EtcdBackend;
    use berth_store_etcd::testing::{Cluster, skip};

    /// A one-member etcd cluster.
    pub struct Fixture {
        cluster: Cluster,
    }

    impl Fixture {
        pub fn location(&self) -> PathBuf {
            PathBuf::from(self.cluster.url("/berth-test").to_string())
        }

        pub fn open(&self) -> anyhow::Result<Store> {
            let backend = EtcdBackend::open(&self.cluster.url("/berth-test"))?;
            Ok(Store::with_backend(Arc::new(backend)))
        }
    }

    pub fn fixture() -> anyhow::Result<Option<Fixture>> {
        if skip() {
            return Ok(None);
        }
        let cluster = Cluster::start(1).map_err(anyhow::Error::msg)?;
        Ok(Some(Fixture { cluster }))
    }

    pub fn open() -> anyhow::Result<Option<(Fixture, Store)>> {
        let Some(f) = fixture()? else {
            return Ok(None);
        };
        let store = f.open()?;
        Ok(Some((f, store)))
    }
}

#[path = "../../store/tests/conformance/mod.rs"]
mod conformance;
