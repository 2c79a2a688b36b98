//! The cases of the conformance suite, generic over a [`Harness`]. Every
//! case runs unchanged on every backend; cases about servers (down, wrong
//! credentials) only where there is a server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use seccs_core::SecretKey;
use seccs_store::backend::{Backend, BackendError, Batch, Entry, Usage};
use seccs_store::{Params, Store, StoreError, WrapperKind};

use crate::harness::{Harness, Opened};
use crate::support::TestResult;

fn key(i: usize) -> Vec<u8> {
    let mut k = b"k".to_vec();
    k.extend_from_slice(&(i as u32).to_be_bytes());
    k
}

fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

fn entry(value: Vec<u8>, count: u64) -> Option<Entry> {
    Some(Entry { value, count })
}

fn all_entries(backend: &dyn Backend) -> TestResult<BTreeMap<Vec<u8>, Entry>> {
    let mut all = BTreeMap::new();
    backend.for_each(&mut |k, e| {
        assert!(
            all.insert(k.to_vec(), e.clone()).is_none(),
            "for_each visited {k:?} twice"
        );
        Ok(())
    })?;
    Ok(all)
}

// ------------------------------------------------------- backend level

pub fn batch_round_trips<H: Harness>() -> TestResult {
    let h = H::start()?;
    let b = h.open()?.backend;
    let mut batch = Batch::new();
    batch.put(key(1), value(1, 100), 1);
    batch.put(key(2), Vec::new(), 7);
    batch.put(key(3), value(3, 70_000), u64::from(u32::MAX) + 5);
    b.apply(&batch)?;
    let keys = [key(1), key(2), key(3), key(4)];
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    assert_eq!(
        b.get_many(&refs)?,
        vec![
            entry(value(1, 100), 1),
            entry(Vec::new(), 7),
            entry(value(3, 70_000), u64::from(u32::MAX) + 5),
            None
        ]
    );
    assert_eq!(b.get(&key(2))?, entry(Vec::new(), 7));
    assert_eq!(b.get_many(&[])?, Vec::new());
    // A key asked for twice is answered twice, in place.
    let twice: Vec<&[u8]> = vec![&keys[0], &keys[3], &keys[0]];
    let got = b.get_many(&twice)?;
    assert_eq!(got[0], got[2]);
    assert_eq!(got[1], None);
    // A fresh connection sees the same data.
    let again = h.open()?.backend;
    assert_eq!(
        again.get(&key(3))?,
        entry(value(3, 70_000), u64::from(u32::MAX) + 5)
    );
    Ok(())
}

pub fn many_key_reads_take_one_round_trip<H: Harness>() -> TestResult {
    let h = H::start()?;
    let opened = h.open()?;
    let b = &opened.backend;
    let n = 600;
    let mut batch = Batch::new();
    for i in 0..n {
        batch.put(key(i), value(i, 64), i as u64 + 1);
    }
    b.apply(&batch)?;
    let keys: Vec<Vec<u8>> = (0..n + 10).map(key).collect();
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let before = opened.round_trips();
    let got = b.get_many(&refs)?;
    let reads = opened.round_trips() - before;
    let before = opened.round_trips();
    let counts = b.get_counts(&refs)?;
    let count_reads = opened.round_trips() - before;
    let values = b.get_values(&refs)?;
    for i in 0..n + 10 {
        let expected = (i < n).then(|| Entry {
            value: value(i, 64),
            count: i as u64 + 1,
        });
        assert_eq!(
            counts[i],
            expected.as_ref().map(|e| e.count),
            "count of key {i}"
        );
        assert_eq!(
            values[i],
            expected.as_ref().map(|e| e.value.clone()),
            "value of key {i}"
        );
        assert_eq!(got[i], expected, "key {i}");
    }
    if opened.round_trips.is_some() {
        if b.is_transactional() {
            // Redis: one MGET / one pipeline; PostgreSQL: one SELECT.
            assert_eq!((reads, count_reads), (1, 1), "{} reads", b.name());
        } else {
            // S3 has no multi-object read: one request per key, no more.
            assert_eq!((reads, count_reads), (n as u64 + 10, n as u64 + 10));
        }
    }
    Ok(())
}

pub fn set_count_and_delete_follow_batch_order<H: Harness>() -> TestResult {
    let h = H::start()?;
    let b = h.open()?.backend;
    let mut batch = Batch::new();
    for i in 0..6 {
        batch.put(key(i), value(i, 10), 1);
    }
    b.apply(&batch)?;
    let mut batch = Batch::new();
    batch.set_count(key(0), 9); // keeps the value
    batch.set_count(key(100), 4); // missing: no entry appears
    batch.delete(key(1));
    batch.delete(key(101)); // missing: no-op
    batch.put(key(2), value(2, 3), 2);
    batch.delete(key(2)); // put then delete: gone
    batch.delete(key(3));
    batch.put(key(3), value(30, 5), 3); // delete then put: there
    batch.put(key(4), value(40, 5), 1);
    batch.set_count(key(4), 6); // put then count: new value, new count
    batch.delete(key(5));
    batch.set_count(key(5), 8); // delete then count: stays gone
    b.apply(&batch)?;
    let keys: Vec<Vec<u8>> = (0..6).map(key).chain([key(100), key(101)]).collect();
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    assert_eq!(
        b.get_many(&refs)?,
        vec![
            entry(value(0, 10), 9),
            None,
            None,
            entry(value(30, 5), 3),
            entry(value(40, 5), 6),
            None,
            None,
            None
        ]
    );
    assert_eq!(b.usage()?.entries, 3);
    // An empty batch (or only barriers) is fine.
    let mut empty = Batch::new();
    empty.barrier();
    b.apply(&empty)?;
    b.flush()?;
    Ok(())
}

/// A staged batch ends as its stages in order would leave it; where the
/// harness sees the server's requests (S3, which applies a stage as many
/// concurrent requests), no request of a stage starts at the server
/// before every request of the stage before has been served there: the
/// final state alone does not show that a stage started early.
pub fn stages_apply_in_order<H: Harness>() -> TestResult {
    let h = H::start()?;
    let b = h.open()?.backend;
    // Only the batch's own requests.
    let _ = h.take_writes();
    let mut batch = Batch::new();
    for i in 0..50 {
        batch.put(key(i), value(i, 200), 1);
    }
    batch.barrier();
    for i in 0..50 {
        batch.set_count(key(i), 2);
    }
    batch.put(key(1000), value(1000, 10), 1);
    batch.barrier();
    for i in 0..25 {
        batch.delete(key(i));
    }
    b.apply(&batch)?;
    if let Some(writes) = h.take_writes() {
        check_stage_barriers(&writes)?;
    }
    let all = all_entries(b.as_ref())?;
    assert_eq!(all.len(), 26);
    for i in 25..50 {
        assert_eq!(all.get(&key(i)), entry(value(i, 200), 2).as_ref());
    }
    Ok(())
}

/// The stages of the batch of [`stages_apply_in_order`] as the server
/// served them: the first PUT of keys 0..50, then their second PUT (the
/// new count) and the PUT of key 1000, then the DELETEs of keys 0..25.
/// Each stage is whole, and starts after the one before was served.
fn check_stage_barriers(writes: &[crate::support::ServedWrite]) -> TestResult {
    let index: BTreeMap<String, usize> = (0..50)
        .chain([1000])
        .map(|i| (hex::encode(key(i)), i))
        .collect();
    let mut sorted = writes.to_vec();
    sorted.sort_by_key(|w| w.started);
    let mut puts = BTreeMap::<usize, usize>::new();
    let mut stages: [Vec<&crate::support::ServedWrite>; 3] = Default::default();
    for w in &sorted {
        let name = w.object.rsplit('/').next().unwrap_or_default();
        let Some(&i) = index.get(name) else {
            return Err(format!("a write to {} is not of the batch", w.object).into());
        };
        let stage = match w.method.as_str() {
            "DELETE" => 2,
            _ if i == 1000 => 1,
            _ => {
                let n = puts.entry(i).or_default();
                *n += 1;
                *n - 1
            }
        };
        stages
            .get_mut(stage)
            .ok_or_else(|| format!("key {i} written too often"))?
            .push(w);
    }
    let counts: Vec<usize> = stages.iter().map(Vec::len).collect();
    assert_eq!(counts, [50, 51, 25], "requests served per stage");
    for k in 0..2 {
        let done = stages[k].iter().map(|w| w.finished).max();
        let next = stages[k + 1].iter().map(|w| w.started).min();
        assert!(
            done <= next,
            "stage {} started at the server before stage {k} was served",
            k + 1
        );
    }
    Ok(())
}

pub fn for_each_and_usage_see_every_entry<H: Harness>() -> TestResult {
    let h = H::start()?;
    let opened = h.open()?;
    let b = &opened.backend;
    assert_eq!(b.usage()?, Usage::default());
    assert!(all_entries(b.as_ref())?.is_empty());
    // More entries than one page of a listing (1,000 on every backend here).
    let n = 1_234;
    let mut batch = Batch::new();
    let mut expected = Usage::default();
    for i in 0..n {
        let v = value(i, i % 300);
        expected.add(key(i).len(), v.len());
        batch.put(key(i), v, (i % 5) as u64);
    }
    b.apply(&batch)?;
    assert_eq!(b.usage()?, expected);
    let all = all_entries(b.as_ref())?;
    assert_eq!(all.len(), n);
    for i in 0..n {
        assert_eq!(
            all.get(&key(i)),
            entry(value(i, i % 300), (i % 5) as u64).as_ref()
        );
    }
    // A prefix walk sees exactly the entries under the prefix: a whole key,
    // a range of keys, every key (more than a page), none.
    let k5 = key(5);
    for prefix in [&k5[..], b"k\0\0\x04", b"k", b"j", b"l", b""] {
        let mut seen = BTreeMap::new();
        b.for_each_with_prefix(prefix, &mut |k, e| {
            assert!(seen.insert(k.to_vec(), e.clone()).is_none(), "{k:?} twice");
            Ok(())
        })?;
        let want: BTreeMap<Vec<u8>, Entry> = all
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        assert_eq!(seen, want, "prefix {prefix:?} on {}", b.name());
    }
    // Bytes that are pattern syntax somewhere (Redis MATCH globs, SQL LIKE)
    // are only bytes in a prefix.
    let special: [&[u8]; 6] = [b"g*x", b"g?y", b"g[z]", b"g\\w", b"g%v", b"g_u"];
    let mut batch = Batch::new();
    for k in special {
        batch.put(k.to_vec(), k.to_vec(), 1);
    }
    b.apply(&batch)?;
    for prefix in special.iter().map(|k| &k[..2]).chain([&b"g"[..]]) {
        let mut seen = Vec::new();
        b.for_each_with_prefix(prefix, &mut |k, _| {
            seen.push(k.to_vec());
            Ok(())
        })?;
        seen.sort();
        let mut want: Vec<Vec<u8>> = special
            .iter()
            .filter(|k| k.starts_with(prefix))
            .map(|k| k.to_vec())
            .collect();
        want.sort();
        assert_eq!(seen, want, "prefix {prefix:?} on {}", b.name());
    }
    // A prefix walk costs what its own entries cost, not what the store
    // holds (here 1,240 entries, of which 6 start with "g").
    if opened.round_trips.is_some() {
        let before = opened.round_trips();
        b.for_each_with_prefix(b"g", &mut |_, _| Ok(()))?;
        let trips = opened.round_trips() - before;
        assert!(
            trips <= special.len() as u64 + 3,
            "{}: a walk over {} entries took {trips} round trips",
            b.name(),
            special.len()
        );
    }
    let mut batch = Batch::new();
    for k in special {
        batch.delete(k.to_vec());
    }
    b.apply(&batch)?;
    // Deleting everything leaves nothing behind.
    let mut batch = Batch::new();
    for i in 0..n {
        batch.delete(key(i));
    }
    b.apply(&batch)?;
    assert_eq!(b.usage()?, Usage::default());
    assert!(all_entries(b.as_ref())?.is_empty());
    Ok(())
}

/// A reader never sees part of a transactional batch: every read of all the
/// keys finds one generation.
pub fn transactional_batch_is_never_seen_half_applied<H: Harness>() -> TestResult {
    let h = H::start()?;
    let writer = h.open()?.backend;
    if !writer.is_transactional() {
        return Ok(());
    }
    let reader = h.open()?.backend;
    let n = 300;
    let keys: Vec<Vec<u8>> = (0..n).map(key).collect();
    let put_generation = |g: u64| -> Result<(), BackendError> {
        let mut batch = Batch::new();
        for k in &keys {
            batch.put(k.clone(), g.to_be_bytes().to_vec(), g);
        }
        writer.apply(&batch)
    };
    put_generation(0)?;
    let done = Arc::new(AtomicBool::new(false));
    let reading = Arc::new(AtomicBool::new(false));
    let reads = std::thread::scope(|s| -> TestResult<u64> {
        let (done2, reading2) = (done.clone(), reading.clone());
        let keys = &keys;
        let reader = &reader;
        let handle = s.spawn(move || -> Result<u64, String> {
            let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let mut reads = 0;
            let start = Instant::now();
            // At least one read, and on until the writer is done.
            while reads == 0
                || (!done2.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30))
            {
                let got = reader.get_many(&refs).map_err(|e| e.to_string())?;
                let counts: Vec<u64> = got
                    .iter()
                    .map(|e| e.as_ref().map_or(u64::MAX, |e| e.count))
                    .collect();
                if counts.iter().any(|c| *c != counts[0]) {
                    return Err(format!("torn read: generations {:?}", {
                        let mut g = counts.clone();
                        g.dedup();
                        g
                    }));
                }
                reads += 1;
                reading2.store(true, Ordering::Relaxed);
            }
            Ok(reads)
        });
        // The writer starts once the reader reads, so that the two overlap
        // however the threads are scheduled.
        let wait = Instant::now();
        while !reading.load(Ordering::Relaxed) && wait.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(1));
        }
        for g in 1..=40 {
            put_generation(g)?;
        }
        done.store(true, Ordering::Relaxed);
        Ok(handle.join().map_err(|_| "reader panicked")??)
    })?;
    assert!(reads > 0);
    Ok(())
}

/// A batch of many nodes costs as many round trips as a batch of few.
pub fn batch_round_trips_do_not_grow_with_nodes<H: Harness>() -> TestResult {
    let h = H::start()?;
    let opened = h.open()?;
    if opened.round_trips.is_none() || !opened.backend.is_transactional() {
        return Ok(());
    }
    let cost = |n: usize, offset: usize| -> TestResult<u64> {
        let mut batch = Batch::new();
        for i in offset..offset + n {
            batch.put(key(i), value(i, 256), 1);
            batch.set_count(key(i), 2);
        }
        batch.barrier();
        for i in offset..offset + n / 2 {
            batch.delete(key(i));
        }
        let before = opened.round_trips();
        opened.backend.apply(&batch)?;
        Ok(opened.round_trips() - before)
    };
    let small = cost(10, 0)?;
    let large = cost(20_000, 100)?;
    assert_eq!(small, 1, "{}", opened.backend.name());
    assert_eq!(large, small, "{}", opened.backend.name());
    Ok(())
}

/// With the server gone, every call fails with an error naming the backend
/// (no panic); once it is back, the same backend object works again.
pub fn server_down_is_unavailable_then_recovers<H: Harness>() -> TestResult {
    if !H::NETWORK {
        return Ok(());
    }
    let mut h = H::start()?;
    let opened = h.open()?;
    let b = &opened.backend;
    let mut batch = Batch::new();
    batch.put(key(1), value(1, 10), 1);
    b.apply(&batch)?;
    h.kill()?;
    let name = b.name().to_owned();
    let check = |what: &str, r: Result<(), BackendError>| {
        let err = r
            .err()
            .unwrap_or_else(|| panic!("{what} succeeded with the server down"));
        assert!(
            matches!(err, BackendError::Unavailable { .. }),
            "{what}: {err:?}"
        );
        assert!(err.to_string().starts_with(&name), "{what}: {err}");
    };
    let mut batch2 = Batch::new();
    batch2.put(key(2), value(2, 10), 1);
    check("apply", b.apply(&batch2));
    check("get_many", b.get_many(&[&key(1)]).map(drop));
    check("get_counts", b.get_counts(&[&key(1)]).map(drop));
    check("usage", b.usage().map(drop));
    check(
        "open",
        h.open()
            .map(drop)
            .map_err(|e| match e.downcast::<BackendError>() {
                Ok(e) => *e,
                Err(e) => BackendError::other("test", e),
            }),
    );
    h.restart()?;
    // The in-memory Redis server restarts empty; the others keep their data.
    b.apply(&batch2)?;
    assert_eq!(b.get(&key(2))?, entry(value(2, 10), 1));
    Ok(())
}

pub fn wrong_credentials_are_refused_clearly<H: Harness>() -> TestResult {
    let h = H::start()?;
    let Some(result) = h.open_with_wrong_credentials() else {
        return Ok(());
    };
    let err = result.err().ok_or("wrong credentials were accepted")?;
    assert!(matches!(err, BackendError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("refused the credentials"), "{err}");
    Ok(())
}

// --------------------------------------------------------- store level

fn store_on(opened: &Opened, chunk_size: usize) -> TestResult<Store> {
    let key = SecretKey::from_bytes([7; 32]);
    Ok(Store::new_unchecked(
        opened.backend.clone(),
        Params::new(chunk_size, WrapperKind::AesSiv)?,
        &key,
    ))
}

pub fn store_round_trips<H: Harness>() -> TestResult {
    let h = H::start()?;
    let opened = h.open()?;
    let store = store_on(&opened, 256)?;
    let mut refs = Vec::new();
    let big = value(99, 300_000);
    for content in [
        Vec::new(),
        vec![1],
        value(1, 255),
        value(2, 256),
        value(3, 257),
        big,
    ] {
        let r = store.put(&content)?;
        assert_eq!(store.get(&r)?, content);
        refs.push(r);
    }
    // A second handle on the same backend reads them too.
    let again = store_on(&h.open()?, 256)?;
    assert_eq!(again.get(&refs[5])?.len(), 300_000);
    for r in &refs {
        store.delete(r)?;
    }
    assert_eq!(store.usage()?.entries, 0);
    Ok(())
}

pub fn store_detects_tampering<H: Harness>() -> TestResult {
    let h = H::start()?;
    let opened = h.open()?;
    let store = store_on(&opened, 256)?;
    let content = value(5, 20_000);
    let r = store.put(&content)?;
    let keys: Vec<Vec<u8>> = all_entries(opened.backend.as_ref())?.into_keys().collect();
    assert!(keys.len() > 2);
    for k in keys.iter().take(3) {
        let original = opened.backend.get(k)?.ok_or("entry vanished")?.value;
        let mut flipped = original.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        h.tamper(&opened, k, &flipped)?;
        match store.get(&r) {
            Err(StoreError::Integrity(_)) => {}
            other => panic!("tampered node read as {:?}", other.map(|c| c.len())),
        }
        h.tamper(&opened, k, &original)?;
        assert_eq!(store.get(&r)?, content);
    }
    Ok(())
}

/// Model-based: random puts, gets and deletes of contents made of pieces
/// from a small pool (so they share chunks), checked after every step;
/// deleting everything leaves zero entries.
pub fn store_model<H: Harness>() -> TestResult {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let h = H::start()?;
    let opened = h.open()?;
    let store = store_on(&opened, 128)?;
    let pool: Vec<Vec<u8>> = (0..6).map(|i| value(i * 13 + 1, 150 + i * 97)).collect();
    #[derive(Debug, Clone)]
    enum Step {
        Put(Vec<usize>),
        Get(usize),
        Delete(usize),
    }
    let step = prop_oneof![
        3 => proptest::collection::vec(0..pool.len(), 0..8).prop_map(Step::Put),
        1 => any::<usize>().prop_map(Step::Get),
        2 => any::<usize>().prop_map(Step::Delete),
    ];
    let mut runner = TestRunner::new(Config {
        cases: H::MODEL_CASES,
        failure_persistence: None,
        ..Config::default()
    });
    runner.run(&proptest::collection::vec(step, 1..24), |steps| {
        let mut model: Vec<(seccs_store::ContentRef, Vec<u8>)> = Vec::new();
        let fail = |e: StoreError| TestCaseError::fail(e.to_string());
        for step in steps {
            match step {
                Step::Put(pieces) => {
                    let content: Vec<u8> = pieces.iter().flat_map(|&p| pool[p].clone()).collect();
                    let r = store.put(&content).map_err(fail)?;
                    model.push((r, content));
                }
                Step::Get(i) if !model.is_empty() => {
                    let (r, c) = &model[i % model.len()];
                    prop_assert_eq!(&store.get(r).map_err(fail)?, c);
                }
                Step::Delete(i) if !model.is_empty() => {
                    let (r, _) = model.remove(i % model.len());
                    store.delete(&r).map_err(fail)?;
                    for (r, c) in &model {
                        prop_assert_eq!(&store.get(r).map_err(fail)?, c);
                    }
                }
                _ => {}
            }
        }
        for (r, _) in model.drain(..) {
            store.delete(&r).map_err(fail)?;
        }
        prop_assert_eq!(store.usage().map_err(fail)?.entries, 0);
        Ok(())
    })?;
    Ok(())
}
