//! The store's interface is synchronous (transactions run on blocking
//! threads); etcd's client is async. The backend owns a small runtime and
//! every call waits on a channel for its answer there, so it can be called
//! from any thread, a runtime's own included, without nesting runtimes.

use std::future::Future;
use std::time::Duration;

use berth_store::StoreError;

/// How long one request to etcd may take before the store says so.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Runner {
    /// Always `Some` until dropped.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Without waiting: the store may be dropped inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Runner {
    pub(crate) fn new() -> std::io::Result<Runner> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("berth-etcd")
            .enable_all()
            .build()?;
        Ok(Runner { rt: Some(rt) })
    }

    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Some(rt) = &self.rt {
            rt.spawn(fut);
        }
    }

    /// Runs `fut` on the backend's runtime and waits for it, at most
    /// [`REQUEST_TIMEOUT`].
    pub(crate) fn run<T, F>(&self, what: &str, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn(async move {
            let r = tokio::time::timeout(REQUEST_TIMEOUT, fut).await;
            let _ = tx.send(r);
        });
        match rx.recv() {
            Ok(Ok(r)) => r.map_err(|e| etcd_error(what, &e)),
            Ok(Err(_)) => Err(StoreError::Backend(format!(
                "etcd: {what}: no answer within {}s",
                REQUEST_TIMEOUT.as_secs()
            ))),
            Err(_) => Err(StoreError::Backend(format!(
                "etcd: {what}: the request was dropped (the store is closing)"
            ))),
        }
    }
}

pub(crate) fn etcd_error(what: &str, e: &etcd_client::Error) -> StoreError {
    StoreError::Backend(format!("etcd: {what}: {e}"))
}
