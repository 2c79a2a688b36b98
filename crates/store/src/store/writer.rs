//! The writer lock of a [`Store`](super::Store), and where the work done
//! under it runs: in a thread pool of the store's own, entered from a
//! thread that is no rayon worker, so that no rayon call made while the
//! lock is held can wait for a thread that waits for the lock (see
//! [`Held::run`]). The lock can be taken only here, and only as a [`Held`].

use std::sync::{Mutex, MutexGuard, OnceLock};

/// The writer lock: serialises a store's writes (puts' commits, removals,
/// `gc`, `verify`), and owns the pool their work runs in.
pub(crate) struct WriterLock {
    mutex: Mutex<()>,
    /// The pool for work under the lock, built when first needed (`None`
    /// if it could not be).
    pool: OnceLock<Option<rayon::ThreadPool>>,
}

/// The writer lock, held until dropped. Work done under it that may call
/// rayon, itself or through the backend, runs through [`Held::run`].
pub(crate) struct Held<'a> {
    lock: &'a WriterLock,
    _guard: MutexGuard<'a, ()>,
}

impl WriterLock {
    pub(crate) fn new() -> Self {
        Self {
            mutex: Mutex::new(()),
            pool: OnceLock::new(),
        }
    }

    /// Waits for the lock and takes it.
    pub(crate) fn lock(&self) -> Held<'_> {
        Held {
            lock: self,
            // The guarded data is `()`: a panic elsewhere leaves nothing
            // broken.
            _guard: self.mutex.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// The pool that work under the lock runs in, sized like the caller's
    /// pool when first needed.
    fn pool(&self) -> Option<&rayon::ThreadPool> {
        self.pool
            .get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(rayon::current_num_threads())
                    .thread_name(|i| format!("seccs-locked-{i}"))
                    .build()
                    .ok()
            })
            .as_ref()
    }
}

impl Held<'_> {
    /// Runs `work` (given whether it may use rayon) while the lock is held,
    /// so that its rayon calls, its own or the backend's (the embedded
    /// backend reads many keys in parallel), cannot wait for a thread that
    /// waits for the lock. Returns what `work` returns; a panic in it is
    /// raised again here.
    ///
    /// Writers run from a rayon pool (`seccs put DIR` puts its files from
    /// `par_iter`; a library may run removals or `gc` beside such puts),
    /// and a rayon worker that waits for a `join` or a `par_iter` to finish
    /// runs other jobs of its pool meanwhile: other writers, which block on
    /// the lock. Run in the caller's pool, the work's rayon calls would
    /// deadlock in either of two ways: a holder on a worker takes up, while
    /// it waits, a writer that blocks on the lock its own thread holds; or
    /// every worker ends up blocked on the lock, and none is left to run
    /// the jobs of the holder's work.
    ///
    /// So the work runs in the store's own pool, whose jobs come only from
    /// work under the lock and never wait for it, entered from a thread
    /// that is no rayon worker: such a thread waits for the pool's jobs
    /// without running any other job. A holder on a plain thread enters
    /// the pool itself (`install`, no thread spawned). A holder on a worker
    /// thread (of any pool: `install` from a worker of another pool would
    /// still run that pool's jobs while it waits) hands the work to a
    /// scoped thread and waits for it to end, which is a plain wait too.
    /// That thread costs tens of microseconds a call, which is why the last
    /// commit of each put runs through [`Held::run_here`] instead.
    /// Work already on a thread of the store's pool (work under the lock,
    /// nested) runs where it is. If the pool or that thread cannot be had,
    /// the work runs on the caller's thread, told not to use rayon (a
    /// backend's own rayon calls then still run in the caller's pool).
    ///
    /// `work` is `FnMut` so that, when no thread can be spawned, the work
    /// not handed over runs here: it runs once in every case.
    pub(crate) fn run<R: Send>(&self, mut work: impl FnMut(bool) -> R + Send) -> R {
        let Some(pool) = self.lock.pool() else {
            return work(false);
        };
        if pool.current_thread_index().is_some() {
            return work(true);
        }
        if rayon::current_thread_index().is_none() {
            return pool.install(|| work(true));
        }
        let mut result = None;
        let joined = std::thread::scope(|scope| {
            let (work, result) = (&mut work, &mut result);
            std::thread::Builder::new()
                .name("seccs-writer".into())
                .spawn_scoped(scope, move || *result = Some(pool.install(|| work(true))))
                .map(|thread| thread.join())
        });
        // A failed spawn leaves `result` empty and the work not run.
        if let Ok(Err(panic)) = joined {
            std::panic::resume_unwind(panic);
        }
        match result {
            Some(r) => r,
            None => work(false),
        }
    }
}

impl Held<'_> {
    /// Runs `work` on the caller's thread while the lock is held, for work
    /// that calls no rayon, itself or through the backend: the last commit
    /// of a put and its catalog hook, which write one batch and read single
    /// records and counts (`get`, `get_counts`, `get_values` of fewer keys
    /// than the embedded backend reads in parallel, `apply`). A put of a tree
    /// of small files does this once a file, from a rayon worker: handed to
    /// a thread of its own, as [`Held::run`] must, it made that put about
    /// half as fast again. The [`Backend`](crate::backend::Backend) trait
    /// documents which of its methods may use rayon.
    pub(crate) fn run_here<R>(&self, work: impl FnOnce() -> R) -> R {
        work()
    }
}

#[cfg(test)]
mod tests {
    use super::WriterLock;

    /// The name of the thread this runs on.
    fn here() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    #[test]
    fn work_under_the_lock_runs_in_the_lock_s_pool_from_a_plain_thread_and_from_a_worker() {
        let lock = WriterLock::new();
        let from_plain = lock.lock().run(|in_pool| (in_pool, here()));
        assert!(from_plain.0, "told it may use rayon");
        assert!(
            from_plain.1.starts_with("seccs-locked-"),
            "{}",
            from_plain.1
        );
        let other = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "caller-pool".into())
            .build()
            .expect("a pool");
        let from_worker = other.install(|| lock.lock().run(|in_pool| (in_pool, here())));
        assert!(from_worker.0, "told it may use rayon");
        assert!(
            from_worker.1.starts_with("seccs-locked-"),
            "{}",
            from_worker.1
        );
    }

    #[test]
    fn work_nested_in_work_under_the_lock_runs_where_it_is() {
        let lock = WriterLock::new();
        let held = lock.lock();
        let (outer, inner) = held.run(|_| (here(), held.run(|in_pool| (in_pool, here()))));
        assert_eq!(inner, (true, outer));
    }

    #[test]
    fn a_panic_in_work_under_the_lock_reaches_the_caller_and_frees_the_lock() {
        let lock = WriterLock::new();
        let other = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a pool");
        // From a plain thread (the pool entered directly), then from a
        // worker (through a thread of its own).
        for on_worker in [false, true] {
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let work = || lock.lock().run(|_| -> () { std::panic::panic_any(7u32) });
                if on_worker {
                    other.install(work)
                } else {
                    work()
                }
            }));
            match panicked {
                Err(payload) => assert_eq!(payload.downcast_ref::<u32>(), Some(&7)),
                Ok(()) => panic!("the panic was lost (on a worker: {on_worker})"),
            }
            assert_eq!(lock.lock().run(|_| 1), 1, "the lock is free again");
        }
    }
}
