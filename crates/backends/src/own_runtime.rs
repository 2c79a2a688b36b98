//! The tokio runtime a synchronous backend owns to drive its asynchronous
//! client (OpenDAL for S3, tokio-postgres for PostgreSQL), and what a call
//! on a thread inside another tokio runtime gets instead of a panic.
//!
//! The [`Backend`](seccs_store::backend::Backend) trait is synchronous, so
//! these backends block on a runtime of their own. tokio panics when a
//! thread inside a runtime (an async task, a `#[tokio::main]` body, a
//! `spawn_blocking` closure) blocks on another one, or drops one. There, a
//! call is refused with an error that says to call the backend from a
//! thread of its own, as the key service's and share network's blocking
//! calls are; a backend dropped there lets its runtime's threads end
//! without waiting for them, and what it does on the way out (letting a
//! lease go) runs on a thread of its own.

use std::future::Future;

use seccs_store::backend::BackendError;
use tokio::runtime::{Handle, Runtime};

/// A runtime a backend owns and blocks on.
pub(crate) struct OwnRuntime {
    /// `None` only once dropped.
    runtime: Option<Runtime>,
    /// The backend's name, for errors.
    backend: &'static str,
}

impl OwnRuntime {
    pub(crate) fn new(runtime: Runtime, backend: &'static str) -> Self {
        Self {
            runtime: Some(runtime),
            backend,
        }
    }

    /// Runs `work` to its end on this runtime, unless the calling thread
    /// is inside a tokio runtime ([`refuse_inside_runtime`]).
    pub(crate) fn block_on<F: Future>(&self, work: F) -> Result<F::Output, BackendError> {
        refuse_inside_runtime(self.backend)?;
        Ok(self.runtime()?.block_on(work))
    }

    /// A handle to the runtime, for the backend's own threads.
    pub(crate) fn handle(&self) -> Result<Handle, BackendError> {
        Ok(self.runtime()?.handle().clone())
    }

    fn runtime(&self) -> Result<&Runtime, BackendError> {
        self.runtime
            .as_ref()
            .ok_or_else(|| BackendError::other(self.backend, "the backend's runtime is shut down"))
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take()
            && Handle::try_current().is_ok()
        {
            // Dropping it here would panic: it would wait for its threads.
            runtime.shutdown_background();
        }
    }
}

/// Refuses a call on a thread inside a tokio runtime, where blocking on
/// the backend's own runtime would panic.
pub(crate) fn refuse_inside_runtime(backend: &'static str) -> Result<(), BackendError> {
    if Handle::try_current().is_err() {
        return Ok(());
    }
    Err(BackendError::other(
        backend,
        "called on a thread inside a tokio runtime, where this synchronous backend cannot block \
         on its own: call it from a thread of its own (std::thread::spawn); tokio's \
         spawn_blocking threads count as inside the runtime",
    ))
}

/// Runs `blocking` (which blocks on a runtime of the backend's own) here,
/// or, on a thread inside a tokio runtime, on a thread of its own and waits
/// for it: for what a backend does as it is dropped, which has no caller
/// to refuse. Nothing runs if that thread cannot be started.
pub(crate) fn outside_runtime(blocking: impl FnOnce() + Send) {
    if Handle::try_current().is_err() {
        return blocking();
    }
    std::thread::scope(|scope| {
        if let Ok(thread) = std::thread::Builder::new().spawn_scoped(scope, blocking) {
            // A panic in it has nothing to hand back to a drop.
            let _ = thread.join();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> OwnRuntime {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        OwnRuntime::new(runtime, "test")
    }

    /// Outside a runtime it runs the work; inside one (a task, or a
    /// spawn_blocking closure) it refuses with an error rather than panic,
    /// and dropping it there does not panic.
    #[test]
    fn a_call_inside_another_runtime_is_refused_and_a_drop_there_does_not_panic() {
        let mine = own();
        assert_eq!(mine.block_on(async { 7 }).expect("runs"), 7);
        let outer = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (in_task, mine) =
            outer.block_on(async move { (mine.block_on(async { 8 }).err(), mine) });
        let refused = in_task.expect("refused in a task");
        assert!(
            refused.to_string().contains("inside a tokio runtime"),
            "{refused}"
        );
        let in_blocking = outer
            .block_on(async {
                tokio::task::spawn_blocking(move || {
                    let refused = mine.block_on(async { 9 }).err();
                    drop(mine);
                    refused
                })
                .await
            })
            .expect("the blocking closure ended without a panic");
        assert!(in_blocking.is_some(), "spawn_blocking counts as inside");
        outer.block_on(async {
            drop(own());
        });
    }

    /// What runs as a backend is dropped runs inside a runtime too, on a
    /// thread of its own.
    #[test]
    fn work_on_the_way_out_runs_inside_a_runtime_too() {
        let mine = own();
        let handle = mine.handle().expect("handle");
        let outer = tokio::runtime::Runtime::new().expect("runtime");
        let ran = std::sync::atomic::AtomicBool::new(false);
        outer.block_on(async {
            outside_runtime(|| {
                handle.block_on(async { ran.store(true, std::sync::atomic::Ordering::SeqCst) })
            });
        });
        assert!(ran.into_inner());
    }
}
