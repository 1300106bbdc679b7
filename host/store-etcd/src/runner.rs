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

    /// Runs the request `make` builds on the backend's runtime and waits
    /// for it, at most [`REQUEST_TIMEOUT`]. A request that could not reach
    /// the member it was sent to (its connection refused: a member down)
    /// reached nobody, so it is sent again, to another member of the
    /// balanced channel, until the timeout.
    pub(crate) fn run<T, F, Fut>(&self, what: &str, make: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn(async move {
            let attempts = async {
                loop {
                    match make().await {
                        Err(e) if unreached(&e) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        r => return r,
                    }
                }
            };
            let r = tokio::time::timeout(REQUEST_TIMEOUT, attempts).await;
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

/// Whether `e` says the request never reached a member (nothing was done).
fn unreached(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            // gRPC's UNAVAILABLE (14), from a connection never made.
            i32::from(s.code()) == 14 && s.message().contains("tcp connect error")
        }
        _ => false,
    }
}

pub(crate) fn etcd_error(what: &str, e: &etcd_client::Error) -> StoreError {
    StoreError::Backend(format!("etcd: {what}: {e}"))
}
