//! Range reads fetch only the nodes on the path to the range; one store
//! serves many threads with exact counts; a removal of many names is made
//! durable once, at its end.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::random_bytes;
use seccs_store::backend::{Backend, BackendError, Batch, Damaged, Entry, MemoryBackend, Visitor};
use seccs_store::{Params, Store, WrapperKind};

/// A memory backend that counts the keys read, and the reads (round
/// trips, on a backend over a network). Given `then_after` (a key, and a
/// step such as a writer's removal), it runs the step once, right after
/// the read that fetched that key: a reader beside a writer, interleaved
/// the same way every run.
#[derive(Default)]
struct Counting {
    inner: Arc<MemoryBackend>,
    reads: AtomicU64,
    round_trips: AtomicU64,
    durable_batches: AtomicU64,
    flushes: AtomicU64,
    flush_fails: std::sync::atomic::AtomicBool,
    then_after: Mutex<Option<AfterRead>>,
}

/// A key, and what to run once a read has fetched it.
type AfterRead = (Vec<u8>, Box<dyn FnOnce() + Send>);

impl Backend for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
        self.reads.fetch_add(keys.len() as u64, Ordering::Relaxed);
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let found = self.inner.get_many(keys)?;
        let step = {
            let mut then = self.then_after.lock().unwrap_or_else(|p| p.into_inner());
            match then.as_ref() {
                Some((key, _)) if keys.contains(&key.as_slice()) => then.take(),
                _ => None,
            }
        };
        if let Some((_, step)) = step {
            step();
        }
        Ok(found)
    }
    fn apply(&self, batch: &Batch) -> Result<(), BackendError> {
        if batch.is_durable() {
            self.durable_batches.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.apply(batch)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        if self.flush_fails.load(Ordering::Relaxed) {
            return Err(BackendError::other("counting", "no space left on device"));
        }
        self.inner.flush()
    }
    fn is_transactional(&self) -> bool {
        true
    }
    fn walk(
        &self,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
        damaged: Option<&mut Damaged<'_>>,
    ) -> Result<(), BackendError> {
        self.inner.walk(prefix, visit, damaged)
    }
}

/// `NAME@N` is read from the catalog in one round trip: the records of
/// the name spelled `NAME@N` (which it would be, whole) and of `NAME`
/// together, where it took one lookup for each (and `read_spec` before
/// `resolve` a third).
#[test]
fn a_name_and_version_is_resolved_in_one_round_trip() {
    use seccs_store::catalog::EntryKind;
    let backend = Arc::new(Counting::default());
    let params = Params::new(256, WrapperKind::AesSiv).expect("valid");
    let store = Store::new_unchecked(backend.clone(), params, &common::key(4));
    for content in [&b"one"[..], b"two"] {
        store
            .put_named(&mut &content[..], "w", EntryKind::File)
            .expect("put");
    }
    store
        .put_named(&mut &b"whole"[..], "v@2", EntryKind::File)
        .expect("put");
    for (spec, name, number, content) in [
        ("w@1", "w", Some(1), &b"one"[..]),
        ("w", "w", None, b"two"),
        ("v@2", "v@2", None, b"whole"),
    ] {
        backend.round_trips.store(0, Ordering::Relaxed);
        let (read_name, read_number, version) = store.resolve_spec(spec).expect(spec);
        assert_eq!(backend.round_trips.load(Ordering::Relaxed), 1, "{spec}");
        assert_eq!((read_name, read_number), (name, number), "{spec}");
        assert_eq!(store.get(&version.content_ref).expect("get"), content);
        backend.round_trips.store(0, Ordering::Relaxed);
        assert_eq!(store.resolve(spec).expect(spec), version);
        assert_eq!(backend.round_trips.load(Ordering::Relaxed), 1, "{spec}");
    }
    // A name's version read by name: one lookup, then the content's nodes.
    backend.round_trips.store(0, Ordering::Relaxed);
    let mut out = Vec::new();
    let version = store.get_named("w", Some(1), &mut out).expect("w@1");
    assert_eq!((version.number, out.as_slice()), (1, &b"one"[..]));
    assert_eq!(backend.round_trips.load(Ordering::Relaxed), 2);
}

#[test]
fn a_range_read_fetches_only_the_nodes_on_its_path() {
    let backend = Arc::new(Counting::default());
    let params = Params::new(256, WrapperKind::AesSiv).expect("valid");
    let store = Store::new_unchecked(backend.clone(), params, &common::key(4));
    let content = random_bytes(8 << 20, 9);
    let r = store.put(&content).expect("put");
    let height = u64::from(params.height(r.len()));
    for (offset, len) in [
        (0u64, 1u64),
        (4_000_000, 10_000),
        (8_388_000, 608),
        (123_457, 0),
    ] {
        backend.reads.store(0, Ordering::Relaxed);
        let mut out = Vec::new();
        store.get_range(&r, offset, len, &mut out).expect("range");
        assert_eq!(out, &content[offset as usize..(offset + len) as usize]);
        let reads = backend.reads.load(Ordering::Relaxed);
        // Root + the path (up to two nodes per level at the range's two
        // ends) + the leaves covering the range (each leaf ≥ S/4 bytes).
        let bound = 1 + 2 * height + len / 64 + 2;
        assert!(
            reads <= bound,
            "range {offset}+{len}: {reads} reads > {bound}"
        );
    }
}

#[test]
fn eight_threads_put_and_delete_overlapping_contents_with_exact_counts() {
    let backend = Arc::new(MemoryBackend::new());
    let params = Params::new(256, WrapperKind::AesSiv).expect("valid");
    let store = Arc::new(Store::new_unchecked(
        backend.clone(),
        params,
        &common::key(5),
    ));
    let pieces: Vec<Vec<u8>> = (0..6)
        .map(|i| random_bytes(3000 + i * 1000, i as u64))
        .collect();
    let pieces = Arc::new(pieces);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let pieces = pieces.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..30usize {
                    let content: Vec<u8> = (0..3)
                        .flat_map(|j| pieces[(t + i + j * (i % 3 + 1)) % 6].clone())
                        .collect();
                    let r = store.put(&content).expect("put");
                    assert_eq!(store.get(&r).expect("get"), content);
                    mine.push(r);
                    if i % 3 == 2 {
                        let r = mine.remove(0);
                        store.delete(&r).expect("delete");
                    }
                }
                mine
            })
        })
        .collect();
    let mut left = Vec::new();
    for t in threads {
        left.extend(t.join().expect("thread"));
    }
    assert!(store.verify().expect("verify").is_clean());
    for r in left {
        store.delete(&r).expect("delete");
    }
    assert_eq!(backend.keys().len(), 0, "residue after deleting everything");
}

/// A reader that hands out `len` bytes of noise and, once `after` of them
/// are out (the put holding the writer lock by then), runs `then` once.
struct ThenReader {
    data: Vec<u8>,
    pos: usize,
    after: usize,
    then: Option<Box<dyn FnOnce() + Send>>,
}

impl std::io::Read for ThenReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.after
            && let Some(then) = self.then.take()
        {
            then();
        }
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A put of several 4 MiB segments holds the writer lock from its first
/// batch to its end, and cuts and seals in parallel meanwhile. That work
/// ran in the rayon pool of the caller, whose workers may all be waiting
/// for the lock (other puts from the pool, as `seccs put DIR` runs them):
/// nothing then ran it, and the put never ended. (On a worker of the pool
/// the put could also take up, while it waited, a put that then waited for
/// the lock its own thread held.) Here every worker of the global pool
/// waits for the lock while the large put, on a thread of its own, goes on.
#[test]
fn a_large_put_holding_the_writer_lock_finishes_while_every_pool_worker_waits_for_it() {
    // A deadlock is caught by the bound, far above what the puts take.
    const BOUND: std::time::Duration = std::time::Duration::from_secs(120);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (store, _backend) = common::memory_store(4096, WrapperKind::AesSiv);
        let store = Arc::new(store);
        let workers = rayon::current_num_threads();
        let (small_done, smalls) = std::sync::mpsc::channel();
        let then: Box<dyn FnOnce() + Send> = {
            let store = store.clone();
            Box::new(move || {
                // More puts than workers: each worker takes one and waits
                // for the lock; the others wait in the pool's queue.
                for i in 0..2 * workers {
                    let (store, small_done) = (store.clone(), small_done.clone());
                    rayon::spawn(move || {
                        let put = store.put(&random_bytes(1000, i as u64));
                        let _ = small_done.send(put.is_ok());
                    });
                }
                // Time for the workers to reach the lock. Were they later,
                // the test would pass on code that deadlocks, never fail
                // on code that does not.
                std::thread::sleep(std::time::Duration::from_millis(500));
            })
        };
        let mut reader = ThenReader {
            data: random_bytes(14 << 20, 88),
            pos: 0,
            after: 10 << 20,
            then: Some(then),
        };
        let large = store
            .put_reader(&mut reader)
            .expect("large put")
            .content_ref;
        let small_ok = smalls.iter().take(2 * workers).all(|ok| ok);
        assert_eq!(store.get(&large).expect("get"), reader.data);
        assert!(store.verify().expect("verify").is_clean());
        let _ = done.send(small_ok);
    });
    match finished.recv_timeout(BOUND) {
        Ok(small_ok) => assert!(small_ok, "a small put failed"),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the puts did not finish: deadlocked")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("the puts failed (see the panic above)")
        }
    }
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
}

/// A reader whose version a writer removes (the whole name, or only that
/// version) once the reader has its root gets "NAME@N was removed while it
/// was read", not an integrity error: the version's nodes went with it.
#[test]
fn a_version_removed_while_it_is_read_is_said_as_removed_not_as_damage() {
    use seccs_store::StoreError;
    use seccs_store::catalog::EntryKind;
    let params = Params::new(256, WrapperKind::AesSiv).expect("valid");
    for whole_name in [true, false] {
        let inner = Arc::new(MemoryBackend::new());
        let writer = Arc::new(Store::new_unchecked(inner.clone(), params, &common::key(5)));
        let first = random_bytes(60_000, 21);
        let (put, _) = writer
            .put_named(&mut first.as_slice(), "docs/a", EntryKind::File)
            .expect("put");
        writer
            .put_named(
                &mut &random_bytes(60_000, 22)[..],
                "docs/a",
                EntryKind::File,
            )
            .expect("second version");
        let remover = Arc::clone(&writer);
        let backend = Arc::new(Counting {
            inner: inner.clone(),
            then_after: Mutex::new(Some((
                put.content_ref.digest().to_vec(),
                Box::new(move || {
                    let number = if whole_name { None } else { Some(1) };
                    remover.remove_name("docs/a", number).expect("removed");
                }),
            ))),
            ..Counting::default()
        });
        let reader = Store::new_unchecked(backend.clone(), params, &common::key(5));
        let mut out = Vec::new();
        match reader.get_named("docs/a", Some(1), &mut out) {
            Err(e @ StoreError::VersionRemoved { .. }) => {
                assert_eq!(e.to_string(), "docs/a@1 was removed while it was read")
            }
            other => panic!("whole name {whole_name}: {other:?}"),
        }
        assert!(backend.then_after.lock().expect("lock").is_none(), "it ran");
        assert!(out.len() < first.len(), "the read stopped");
    }
}

/// A reader of a bare reference whose content a writer removes once the
/// reader has its root gets "content REF was removed while it was read",
/// not an integrity error: the root went with the rest. A node missing
/// below a root that is still stored stays damage.
#[test]
fn a_content_removed_while_it_is_read_by_reference_is_said_as_removed_not_as_damage() {
    use seccs_store::StoreError;
    let params = Params::new(256, WrapperKind::AesSiv).expect("valid");
    let inner = Arc::new(MemoryBackend::new());
    let writer = Arc::new(Store::new_unchecked(inner.clone(), params, &common::key(5)));
    let content = random_bytes(60_000, 24);
    let r = writer.put(&content).expect("put");
    let remover = Arc::clone(&writer);
    let removed = r.clone();
    let backend = Arc::new(Counting {
        inner: inner.clone(),
        then_after: Mutex::new(Some((
            r.digest().to_vec(),
            Box::new(move || {
                remover.delete(&removed).expect("deleted");
            }),
        ))),
        ..Counting::default()
    });
    let reader = Store::new_unchecked(backend.clone(), params, &common::key(5));
    let mut out = Vec::new();
    match reader.get_range(&r, 0, r.len(), &mut out) {
        Err(e @ StoreError::ContentRemoved { .. }) => assert_eq!(
            e.to_string(),
            format!("content {} was removed while it was read", r.to_hex())
        ),
        other => panic!("{other:?}"),
    }
    assert!(backend.then_after.lock().expect("lock").is_none(), "it ran");
    assert!(out.len() < content.len(), "the read stopped");
    // Its root still there: a node missing below it is damage.
    let r = writer.put(&content).expect("put again");
    let mut below_root = Vec::new();
    inner
        .for_each(&mut |key, _| {
            if key != r.digest() {
                below_root.push(key.to_vec());
            }
            Ok(())
        })
        .expect("walk");
    below_root.sort();
    assert!(inner.remove_raw(below_root.first().expect("a node below the root")));
    match reader.get(&r) {
        Err(StoreError::Integrity(m)) => assert!(m.contains("is missing from the store"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A node missing from a version the catalog still holds is damage, said
/// as an integrity error as before: asking the catalog again does not
/// explain it away.
#[test]
fn a_node_missing_from_a_version_still_in_the_catalog_is_damage() {
    use seccs_store::StoreError;
    use seccs_store::catalog::{self, EntryKind};
    let (store, backend) = common::memory_store(256, WrapperKind::AesSiv);
    let content = random_bytes(60_000, 23);
    let (put, _) = store
        .put_named(&mut content.as_slice(), "docs/a", EntryKind::File)
        .expect("put");
    let mut below_root = Vec::new();
    backend
        .for_each(&mut |key, _| {
            if !catalog::is_catalog_key(key) && key != put.content_ref.digest() {
                below_root.push(key.to_vec());
            }
            Ok(())
        })
        .expect("walk");
    below_root.sort();
    let gone = below_root.first().expect("a node below the root");
    assert!(backend.remove_raw(gone));
    match store.get_named("docs/a", Some(1), &mut Vec::new()) {
        Err(StoreError::Integrity(m)) => assert!(m.contains("is missing from the store"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Its root gone too: still damage, naming the version.
    assert!(backend.remove_raw(put.content_ref.digest()));
    match store.get_named("docs/a", None, &mut Vec::new()) {
        Err(StoreError::Integrity(m)) => {
            assert!(
                m.starts_with("the root node of \"docs/a\" version 1"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// A store on a [`Counting`] backend under key `key` holding `count`
/// names of 300 random bytes, the first `twice` of them with a second
/// version; and the names.
fn counting_store_with_names(
    key: u8,
    count: usize,
    twice: usize,
) -> (Arc<Counting>, Store, Vec<String>) {
    use seccs_store::catalog::EntryKind;
    let backend = Arc::new(Counting::default());
    let params = Params::new(256, WrapperKind::AesSiv).expect("valid");
    let store = Store::new_unchecked(backend.clone(), params, &common::key(key));
    let names: Vec<String> = (0..count).map(|i| format!("d/{i:04}")).collect();
    let seeds = (0..count).chain((0..twice).map(|i| 5000 + i));
    for (name, seed) in names.iter().cycle().zip(seeds) {
        store
            .put_named(
                &mut &random_bytes(300, seed as u64)[..],
                name,
                EntryKind::File,
            )
            .expect("put");
    }
    (backend, store, names)
}

/// Removing many names applies many atomic batches, none of them made
/// durable on its own: one flush at the end makes them all durable. (On the
/// embedded backend a durable batch is a table of its own, and a removal
/// of 256k names in durable batches of 512 rewrote the store many times
/// over in compactions.)
#[test]
fn a_removal_of_many_names_is_made_durable_once_at_its_end() {
    let (backend, store, names) = counting_store_with_names(5, 1500, 700);
    let durable_before = backend.durable_batches.load(Ordering::Relaxed);
    let flushes_before = backend.flushes.load(Ordering::Relaxed);
    assert_eq!(store.keep_newest(&names, 1).expect("keep"), (700, 700));
    assert_eq!(store.remove_names(&names).expect("rm"), (1500, 1500));
    assert_eq!(
        backend.durable_batches.load(Ordering::Relaxed),
        durable_before,
        "no batch of the removals was durable on its own"
    );
    assert_eq!(
        backend.flushes.load(Ordering::Relaxed) - flushes_before,
        2,
        "each removal flushed once"
    );
    assert_eq!(backend.inner.usage().expect("usage").entries, 0);
}

/// A removal whose batches cannot be made durable counts none of them as
/// removed: they are lost with the process.
#[test]
fn a_removal_that_cannot_be_made_durable_counts_nothing_removed() {
    let (backend, store, names) = counting_store_with_names(6, 600, 0);
    backend.flush_fails.store(true, Ordering::Relaxed);
    match store.remove_names(&names) {
        Err(seccs_store::StoreError::Backend(e)) => {
            assert!(e.to_string().contains("no space left"), "{e}");
        }
        other => panic!("expected the flush's error alone, got {other:?}"),
    }
}
