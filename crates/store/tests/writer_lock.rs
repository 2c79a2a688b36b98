//! Work under a store's writer lock finishes while other writers wait for
//! the lock on rayon workers. The embedded backend reads 16 keys or more in
//! parallel (`get_values`), and removals and `mark_gone` read the names'
//! records that way while they hold the lock. Run in the caller's rayon
//! pool, those reads could wait for workers that all wait for the lock, or
//! for a job that their own thread took up meanwhile: a put, waiting for
//! the lock that thread holds.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::random_bytes;
use seccs_store::backend::{
    Backend, BackendError, Batch, Damaged, EmbeddedBackend, Entry, Usage, Visitor,
};
use seccs_store::catalog::EntryKind;
use seccs_store::{Params, Store, WrapperKind};

/// A deadlock is caught by this bound, far above what a test takes.
const BOUND: Duration = Duration::from_secs(30);
/// How much longer the second half of a split read takes ([`Hook::Split`]).
const LINGER: Duration = Duration::from_millis(300);

/// What a [`Hooked`] backend does in its next read of 16 values or more
/// (one that the embedded backend runs in parallel).
enum Hook {
    /// Runs this first, on the thread of the read.
    Before(Box<dyn FnOnce() + Send>),
    /// Reads the keys' two halves in parallel (`rayon::join`), as a backend
    /// may, each from the embedded backend: the second half, once begun,
    /// takes [`LINGER`] longer; the first runs this before it reads, once
    /// the second has begun on another thread (or [`LINGER`] has passed).
    Split(Box<dyn FnOnce() + Send>),
}

/// The embedded backend, doing what a [`Hook`] says once: in the first
/// `get_values` of 16 keys or more after the hook was set.
struct Hooked {
    inner: EmbeddedBackend,
    hook: Mutex<Option<Hook>>,
}

impl Hooked {
    fn set_hook(&self, hook: Hook) {
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    fn hook_ran(&self) -> bool {
        self.hook
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

impl Backend for Hooked {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn set_sync_each_batch(&self, sync: bool) {
        Backend::set_sync_each_batch(&self.inner, sync)
    }
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
        self.inner.get_many(keys)
    }
    fn get_values(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let hook = match keys.len() {
            16.. => self.hook.lock().unwrap_or_else(|p| p.into_inner()).take(),
            _ => None,
        };
        match hook {
            None => self.inner.get_values(keys),
            Some(Hook::Before(hook)) => {
                hook();
                self.inner.get_values(keys)
            }
            Some(Hook::Split(hook)) => {
                let (first, second) = keys.split_at(keys.len() / 2);
                let begun = AtomicBool::new(false);
                let (first, second) = rayon::join(
                    || {
                        let until = Instant::now() + LINGER;
                        while !begun.load(Ordering::Acquire) && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        hook();
                        self.inner.get_values(first)
                    },
                    || {
                        begun.store(true, Ordering::Release);
                        std::thread::sleep(LINGER);
                        self.inner.get_values(second)
                    },
                );
                let mut values = first?;
                values.extend(second?);
                Ok(values)
            }
        }
    }
    fn get_counts(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        self.inner.get_counts(keys)
    }
    fn apply(&self, batch: &Batch) -> Result<(), BackendError> {
        self.inner.apply(batch)
    }
    fn apply_owned(&self, batch: Batch) -> Result<(), BackendError> {
        self.inner.apply_owned(batch)
    }
    fn is_transactional(&self) -> bool {
        self.inner.is_transactional()
    }
    fn walk(
        &self,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
        damaged: Option<&mut Damaged<'_>>,
    ) -> Result<(), BackendError> {
        self.inner.walk(prefix, visit, damaged)
    }
    fn usage(&self) -> Result<Usage, BackendError> {
        self.inner.usage()
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.inner.flush()
    }
    fn reclaim_space(&self) -> Result<Option<String>, BackendError> {
        self.inner.reclaim_space()
    }
    fn release(&self) {
        self.inner.release()
    }
    fn check_lookups(
        &self,
        keys: &[&[u8]],
        failed: &mut dyn FnMut(&[u8], BackendError),
    ) -> Result<(), BackendError> {
        self.inner.check_lookups(keys, failed)
    }
    fn risks(&self) -> Vec<String> {
        self.inner.risks()
    }
    fn keeps_marker(&self) -> bool {
        self.inner.keeps_marker()
    }
    fn read_marker(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.read_marker()
    }
    fn write_marker(&self, value: &[u8]) -> Result<(), BackendError> {
        self.inner.write_marker(value)
    }
    fn nested_stores(&self) -> Result<Vec<String>, BackendError> {
        self.inner.nested_stores()
    }
    fn guard_writes_with_marker(&self, value: &[u8]) {
        self.inner.guard_writes_with_marker(value)
    }
}

/// A store over a new embedded backend in `dir`, where each of `names`
/// names a small content; its writes are then written out as tables, so
/// that reading the names' records takes lookups.
fn embedded_store(dir: &Path, names: &[String]) -> (Arc<Store>, Arc<Hooked>) {
    let inner = EmbeddedBackend::open(dir).expect("an embedded backend");
    inner.set_sync_each_batch(false);
    let backend = Arc::new(Hooked {
        inner,
        hook: Mutex::new(None),
    });
    let params = Params::new(4096, WrapperKind::AesSiv).expect("valid");
    let store = Store::open(backend.clone() as Arc<dyn Backend>, params, &common::key(1))
        .expect("a new store");
    for (i, name) in names.iter().enumerate() {
        store
            .put_named(&mut &random_bytes(100, i as u64)[..], name, EntryKind::File)
            .expect("put");
    }
    backend.flush().expect("flush");
    (Arc::new(store), backend)
}

/// Whether `n` results came on `results` before `deadline`, each `true`.
fn all_came_and_succeeded(results: &Receiver<bool>, n: usize, deadline: Instant) -> bool {
    (0..n).all(|_| {
        results
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or(false)
    })
}

/// Waits for what `scenario` sends, within [`BOUND`]; a scenario that
/// sends nothing by then deadlocked.
fn finish_within_bound<T: Send + 'static>(
    scenario: impl FnOnce(mpsc::Sender<T>) + Send + 'static,
) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || scenario(done));
    match finished.recv_timeout(BOUND) {
        Ok(outcome) => outcome,
        Err(RecvTimeoutError::Timeout) => panic!("the writers did not finish: deadlocked"),
        Err(RecvTimeoutError::Disconnected) => panic!("the writers failed (see the panic above)"),
    }
}

/// A removal of many names holds the writer lock while it reads their
/// records, in parallel. Run from a plain thread, those reads went to the
/// global pool, where every worker had taken up a put that waited for the
/// lock: nothing ran them, and nothing ended. Here every worker of the
/// global pool waits for the lock while the removal reads.
#[test]
fn a_removal_of_many_names_finishes_while_every_global_pool_worker_waits_for_the_lock() {
    let outcome = finish_within_bound(|done| {
        let dir = tempfile::tempdir().expect("a directory");
        let names: Vec<String> = (0..64).map(|i| format!("docs/{i}")).collect();
        let (store, backend) = embedded_store(dir.path(), &names);
        let workers = rayon::current_num_threads();
        let deadline = Instant::now() + BOUND;
        // The hook runs where the removal's work runs: it has a plain
        // thread spawn the puts into the global pool, and waits for that.
        let (ask, asked) = mpsc::channel::<()>();
        let (spawned, puts_spawned) = mpsc::channel::<()>();
        let (put_done, puts) = mpsc::channel();
        let spawner = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                if asked.recv_timeout(BOUND).is_err() {
                    return;
                }
                // More puts than workers: each worker takes one and waits
                // for the lock; the others wait in the pool's queue.
                for i in 0..2 * workers {
                    let (store, put_done) = (Arc::clone(&store), put_done.clone());
                    rayon::spawn(move || {
                        let put = store.put(&random_bytes(1000, 1000 + i as u64));
                        let _ = put_done.send(put.is_ok());
                    });
                }
                let _ = spawned.send(());
            })
        };
        backend.set_hook(Hook::Before(Box::new(move || {
            let _ = ask.send(());
            let _ = puts_spawned.recv_timeout(BOUND);
            // Time for the workers to reach the lock. Were they later, the
            // test would pass on code that deadlocks, never fail on code
            // that does not.
            std::thread::sleep(Duration::from_millis(500));
        })));
        let removed = store.remove_names(&names).map_err(|e| e.to_string());
        let puts_ok = all_came_and_succeeded(&puts, 2 * workers, deadline);
        let _ = spawner.join();
        let _ = done.send((removed, puts_ok, backend.hook_ran()));
    });
    assert_eq!(outcome, (Ok((64, 64)), true, true));
}

/// `mark_gone` of many names holds the writer lock while it reads their
/// records, which a backend may read in parallel. On a worker of a pool
/// whose other workers run puts, that read ran in that pool: the worker,
/// waiting for the half of the read that another worker had taken, took
/// up a put from the pool's queue meanwhile, which waited for the lock its
/// own thread held, and nothing ended. Here a pool of two workers runs
/// `mark_gone` on one; the other is idle and takes the read's second half,
/// and puts are queued in the pool before the first half ends.
#[test]
fn marking_many_names_gone_on_a_pool_worker_finishes_while_puts_queued_in_its_pool_wait_for_the_lock()
 {
    const PUTS: usize = 8;
    let outcome = finish_within_bound(|done| {
        let dir = tempfile::tempdir().expect("a directory");
        let names: Vec<String> = (0..64).map(|i| format!("tree/{i}")).collect();
        let (store, backend) = embedded_store(dir.path(), &names);
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .expect("a pool"),
        );
        let deadline = Instant::now() + BOUND;
        let (put_done, puts) = mpsc::channel();
        let (store_for_puts, pool_for_puts) = (Arc::clone(&store), Arc::clone(&pool));
        // Runs under the lock, in the read: a plain thread queues the puts
        // in the pool (from a worker of the pool they would go to that
        // worker's own queue), and the read waits for that.
        backend.set_hook(Hook::Split(Box::new(move || {
            let queued = std::thread::spawn(move || {
                for i in 0..PUTS {
                    let (store, put_done) = (Arc::clone(&store_for_puts), put_done.clone());
                    pool_for_puts.spawn(move || {
                        let put = store.put(&random_bytes(1000, 5000 + i as u64));
                        let _ = put_done.send(put.is_ok());
                    });
                }
            });
            let _ = queued.join();
        })));
        let (mark_done, marked) = mpsc::channel();
        let store_for_mark = Arc::clone(&store);
        pool.spawn(move || {
            let _ = mark_done.send(store_for_mark.mark_gone(&names).map_err(|e| e.to_string()));
        });
        let Ok(marked) = marked.recv_timeout(BOUND) else {
            return;
        };
        let puts_ok = all_came_and_succeeded(&puts, PUTS, deadline);
        let _ = done.send((marked, puts_ok, backend.hook_ran()));
    });
    assert_eq!(outcome, (Ok(64), true, true));
}
