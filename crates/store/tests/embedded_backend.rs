//! The embedded (fjall) backend: batches, atomicity across crashes,
//! persistence, the process lock, corruption, and equivalence with the
//! in-memory backend.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use proptest::prelude::*;
use seccs_store::backend::{
    Backend, BackendError, Batch, EmbeddedBackend, Entry, MemoryBackend, Usage,
};

/// Environment variable that turns [`child_helper`] into a helper process.
const CHILD_ENV: &str = "SECCS_EMBEDDED_TEST_CHILD";
/// Keys written by each batch of the crash test's writer.
const CRASH_BATCH_KEYS: u64 = 200;
/// Entries per batch of the bulk crash test (about 300 KiB a batch).
const BULK_BATCH_KEYS: u64 = 1000;
/// The crash test's marker entry: its count is the last committed batch.
const MARKER: &[u8] = b"marker";
/// The entry that the failing ingestion's batch deletes.
const FAILING_KEY: &[u8] = b"kept";
/// Puts in the failing ingestion's batch: about 600 KiB of values.
const FAILING_PUTS: u64 = 2000;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn all_entries(backend: &dyn Backend) -> Result<BTreeMap<Vec<u8>, Entry>, BackendError> {
    let mut map = BTreeMap::new();
    backend.for_each(&mut |key, entry| {
        map.insert(key.to_vec(), entry.clone());
        Ok(())
    })?;
    Ok(map)
}

fn crash_key(batch: u64, j: u64) -> Vec<u8> {
    let mut key = batch.to_be_bytes().to_vec();
    key.extend_from_slice(&j.to_be_bytes());
    key
}

fn crash_value(batch: u64, j: u64) -> Vec<u8> {
    let mut value = vec![0u8; 300];
    for (i, byte) in value.iter_mut().enumerate() {
        *byte = (batch as usize * 31 + j as usize * 7 + i) as u8;
    }
    value
}

/// Starts this test binary again as a helper process running `mode` on
/// `dir`, and waits until it reports that it holds the database.
fn spawn_child(
    mode: &str,
    dir: &Path,
) -> Result<(Child, BufReader<std::process::ChildStdout>), Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["child_helper", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{mode}:{}", dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            let status = child.wait()?;
            return Err(format!("helper exited before opening the database: {status}").into());
        }
        // libtest may print "test child_helper ... " on the same line.
        if line.trim_end().ends_with("SECCS_CHILD_READY") {
            return Ok((child, reader));
        }
    }
}

/// Not a test on its own: the body of the helper processes that
/// [`spawn_child`] starts. Without the environment variable it does nothing.
#[test]
fn child_helper() -> TestResult {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let (mode, dir) = spec.split_once(':').ok_or("malformed helper spec")?;
    let backend = EmbeddedBackend::open(Path::new(dir))?;
    match mode {
        "hold" => {
            println!("SECCS_CHILD_READY");
            std::io::stdout().flush()?;
            // Hold the database until the parent closes our stdin.
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink)? > 0 {}
            Ok(())
        }
        "write" | "write-bulk" => {
            let bulk = mode == "write-bulk";
            let keys = if bulk {
                BULK_BATCH_KEYS
            } else {
                CRASH_BATCH_KEYS
            };
            let mut next = match backend.get(MARKER)? {
                Some(entry) => entry.count + 1,
                None => 0,
            };
            println!("SECCS_CHILD_READY");
            std::io::stdout().flush()?;
            // Write batches until killed. In bulk mode, like the segments
            // of a put: three deferred batches, then a durable one, all
            // large enough to be ingested rather than journaled.
            loop {
                let mut batch = Batch::new();
                for j in 0..keys {
                    batch.put(crash_key(next, j), crash_value(next, j), j + 1);
                }
                batch.put(MARKER.to_vec(), next.to_be_bytes().to_vec(), next);
                if bulk && next % 4 != 3 {
                    batch.defer_durability();
                }
                backend.apply(&batch)?;
                next += 1;
            }
        }
        "fail-ingest" => {
            // Run under a file size limit (see
            // `a_batch_whose_ingestion_fails_is_not_applied`): a durable
            // batch that deletes the entry, with puts enough to make its
            // table larger than the limit.
            let mut batch = Batch::new();
            batch.delete(FAILING_KEY.to_vec());
            for j in 0..FAILING_PUTS {
                batch.put(crash_key(9, j), crash_value(9, j), 1);
            }
            let applied = backend.apply(&batch);
            let kept = backend.get(FAILING_KEY)?.is_some();
            let put = backend.get(&crash_key(9, 0))?.is_some();
            println!(
                "SECCS_CHILD_RESULT applied={} kept={kept} put={put}",
                applied.is_ok()
            );
            Ok(())
        }
        other => Err(format!("unknown helper mode {other}").into()),
    }
}

#[test]
fn the_backend_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<EmbeddedBackend>();
}

#[test]
fn a_prefix_walk_reads_exactly_the_entries_under_the_prefix() -> TestResult {
    let dir = tempfile::tempdir()?;
    let embedded = EmbeddedBackend::open(&dir.path().join("db"))?;
    let memory = MemoryBackend::new();
    let mut batch = Batch::new();
    for (i, key) in [&b"M9"[..], b"N", b"N1", b"N22", b"Na", b"O", b"n1", b"\0"]
        .iter()
        .enumerate()
    {
        batch.put(key.to_vec(), vec![i as u8; 100 * i], i as u64 + 1);
    }
    embedded.apply(&batch)?;
    memory.apply(&batch)?;
    for backend in [&embedded as &dyn Backend, &memory] {
        for (prefix, expected) in [
            (&b"N"[..], vec![&b"N"[..], b"N1", b"N22", b"Na"]),
            (b"N2", vec![b"N22"]),
            (b"P", vec![]),
        ] {
            let mut seen = BTreeMap::new();
            backend.for_each_with_prefix(prefix, &mut |key, entry| {
                seen.insert(key.to_vec(), entry.clone());
                Ok(())
            })?;
            let all = all_entries(backend)?;
            let want: BTreeMap<Vec<u8>, Entry> = expected
                .iter()
                .map(|k| (k.to_vec(), all[*k].clone()))
                .collect();
            assert_eq!(seen, want, "{} with prefix {prefix:?}", backend.name());
        }
    }
    // Keys fjall cannot hold are absent on reads and refused on writes,
    // never a panic.
    assert_eq!(embedded.get_many(&[b""])?, vec![None]);
    assert_eq!(embedded.get_values(&[b""])?, vec![None]);
    assert_eq!(embedded.get_counts(&[b""])?, vec![None]);
    for bad in [Vec::new(), vec![1u8; 65_536]] {
        let mut batch = Batch::new();
        batch.put(bad, b"v".to_vec(), 1);
        assert!(matches!(
            embedded.apply(&batch),
            Err(BackendError::Other { .. })
        ));
    }
    Ok(())
}

#[test]
fn batches_round_trip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let backend = EmbeddedBackend::open(&dir.path().join("db"))?;
    assert!(backend.is_transactional());
    assert_eq!(backend.name(), "embedded");

    let mut batch = Batch::new();
    batch.put(b"a".to_vec(), b"alpha".to_vec(), 1);
    batch.put(b"b".to_vec(), vec![7u8; 4096], 3);
    batch.barrier();
    batch.put(b"c".to_vec(), Vec::new(), 0);
    backend.apply(&batch)?;

    let got = backend.get_many(&[b"a", b"b", b"missing", b"c"])?;
    assert_eq!(
        got,
        vec![
            Some(Entry {
                value: b"alpha".to_vec(),
                count: 1
            }),
            Some(Entry {
                value: vec![7u8; 4096],
                count: 3
            }),
            None,
            Some(Entry {
                value: Vec::new(),
                count: 0
            }),
        ]
    );
    assert_eq!(
        backend.get_counts(&[b"missing", b"b", b"a"])?,
        vec![None, Some(3), Some(1)]
    );

    let mut batch = Batch::new();
    batch.set_count(b"a".to_vec(), 5);
    batch.set_count(b"missing".to_vec(), 9);
    batch.delete(b"b".to_vec());
    batch.delete(b"never-there".to_vec());
    batch.put(b"c".to_vec(), b"replaced".to_vec(), 2);
    backend.apply(&batch)?;

    assert_eq!(
        backend.get(b"a")?,
        Some(Entry {
            value: b"alpha".to_vec(),
            count: 5
        })
    );
    assert_eq!(backend.get(b"b")?, None);
    assert_eq!(
        backend.get(b"missing")?,
        None,
        "SetCount of a missing key is a no-op"
    );
    assert_eq!(
        backend.get(b"c")?,
        Some(Entry {
            value: b"replaced".to_vec(),
            count: 2
        })
    );
    backend.apply(&Batch::new())?;
    assert_eq!(backend.usage()?.entries, 2);
    Ok(())
}

#[test]
fn writes_to_one_key_within_a_batch_apply_in_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let backend = EmbeddedBackend::open(dir.path())?;
    let mut batch = Batch::new();
    batch.put(b"k".to_vec(), b"one".to_vec(), 1);
    batch.set_count(b"k".to_vec(), 2);
    batch.put(b"k".to_vec(), b"two".to_vec(), 3);
    batch.set_count(b"k".to_vec(), 4);
    batch.put(b"gone".to_vec(), b"x".to_vec(), 1);
    batch.delete(b"gone".to_vec());
    batch.set_count(b"gone".to_vec(), 8);
    batch.delete(b"back".to_vec());
    batch.put(b"back".to_vec(), b"y".to_vec(), 6);
    backend.apply(&batch)?;
    assert_eq!(
        backend.get(b"k")?,
        Some(Entry {
            value: b"two".to_vec(),
            count: 4
        })
    );
    assert_eq!(backend.get(b"gone")?, None);
    assert_eq!(
        backend.get(b"back")?,
        Some(Entry {
            value: b"y".to_vec(),
            count: 6
        })
    );
    Ok(())
}

#[test]
fn values_and_counts_survive_close_and_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut expected = BTreeMap::new();
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        for round in 0u64..5 {
            let mut batch = Batch::new();
            for j in 0u64..1000 {
                let key = crash_key(round, j);
                let value = crash_value(round, j);
                batch.put(key.clone(), value.clone(), j);
                expected.insert(key, Entry { value, count: j });
            }
            backend.apply(&batch)?;
        }
        let mut batch = Batch::new();
        for j in (0u64..1000).step_by(3) {
            let key = crash_key(0, j);
            batch.set_count(key.clone(), 1_000_000 + j);
            if let Some(entry) = expected.get_mut(&key) {
                entry.count = 1_000_000 + j;
            }
            let key = crash_key(1, j);
            batch.delete(key.clone());
            expected.remove(&key);
        }
        backend.apply(&batch)?;
    }
    let backend = EmbeddedBackend::open(dir.path())?;
    assert_eq!(all_entries(&backend)?, expected);
    let keys: Vec<&[u8]> = expected.keys().map(Vec::as_slice).collect();
    let got = backend.get_many(&keys)?;
    assert!(
        got.iter()
            .zip(expected.values())
            .all(|(g, e)| g.as_ref() == Some(e))
    );
    Ok(())
}

#[test]
fn deferred_sync_batches_are_durable_after_flush() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        assert!(backend.sync_each_batch());
        backend.set_sync_each_batch(false);
        assert!(!backend.sync_each_batch());
        for i in 0u64..50 {
            let mut batch = Batch::new();
            batch.put(i.to_be_bytes().to_vec(), vec![i as u8; 300], i);
            backend.apply(&batch)?;
        }
        backend.flush()?;
    }
    let backend = EmbeddedBackend::open(dir.path())?;
    assert_eq!(backend.usage()?.entries, 50);
    assert_eq!(
        backend.get(&7u64.to_be_bytes())?,
        Some(Entry {
            value: vec![7; 300],
            count: 7
        })
    );
    Ok(())
}

#[test]
fn deferred_batches_become_durable_with_the_next_durable_batch() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        for i in 0u64..20 {
            let mut batch = Batch::new();
            batch.put(i.to_be_bytes().to_vec(), vec![i as u8; 5000], 1);
            batch.defer_durability();
            assert!(!batch.is_durable());
            backend.apply(&batch)?;
            // Applied at once, whatever its durability.
            assert_eq!(backend.get(&i.to_be_bytes())?.map(|e| e.count), Some(1));
        }
        let mut last = Batch::new();
        last.put(b"last".to_vec(), b"x".to_vec(), 1);
        assert!(last.is_durable());
        backend.apply(&last)?;
    }
    let backend = EmbeddedBackend::open(dir.path())?;
    assert_eq!(backend.usage()?.entries, 21);
    assert_eq!(
        backend.get(&19u64.to_be_bytes())?,
        Some(Entry {
            value: vec![19; 5000],
            count: 1
        })
    );
    Ok(())
}

#[test]
fn for_each_and_usage_count_every_entry() -> TestResult {
    let dir = tempfile::tempdir()?;
    let backend = EmbeddedBackend::open(dir.path())?;
    assert_eq!(backend.usage()?, Usage::default());
    let mut batch = Batch::new();
    let mut expected = BTreeMap::new();
    let mut bytes = 0u64;
    for i in 0u64..300 {
        let key = format!("key-{i}").into_bytes();
        let value = vec![i as u8; (i as usize * 13) % 500];
        bytes += (key.len() + value.len() + 8) as u64;
        batch.put(key.clone(), value.clone(), i + 1);
        expected.insert(
            key,
            Entry {
                value,
                count: i + 1,
            },
        );
    }
    backend.apply(&batch)?;
    assert_eq!(all_entries(&backend)?, expected);
    assert_eq!(
        backend.usage()?,
        Usage {
            entries: 300,
            bytes
        }
    );

    // An error from the visitor stops the walk and is returned.
    let mut seen = 0;
    let result = backend.for_each(&mut |_, _| {
        seen += 1;
        if seen == 10 {
            Err(BackendError::Config("stop".into()))
        } else {
            Ok(())
        }
    });
    assert!(matches!(result, Err(BackendError::Config(_))));
    assert_eq!(seen, 10);

    let mut batch = Batch::new();
    for key in expected.keys() {
        batch.delete(key.clone());
    }
    backend.apply(&batch)?;
    assert_eq!(backend.usage()?, Usage::default());
    assert!(all_entries(&backend)?.is_empty());
    Ok(())
}

#[test]
fn a_second_open_in_this_process_is_locked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let first = EmbeddedBackend::open(dir.path())?;
    match EmbeddedBackend::open(dir.path()) {
        Err(BackendError::Locked { detail, .. }) => {
            assert!(
                detail.contains(&dir.path().display().to_string()),
                "{detail}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
    EmbeddedBackend::open(dir.path())?;
    Ok(())
}

#[test]
fn a_second_process_gets_a_clear_locked_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut child, _stdout) = spawn_child("hold", dir.path())?;
    let result = EmbeddedBackend::open(dir.path());
    // Let the helper go before asserting, so a failure does not leave it.
    drop(child.stdin.take());
    let status = child.wait()?;
    assert!(status.success(), "helper failed: {status}");
    match result {
        Err(err @ BackendError::Locked { .. }) => {
            let message = err.to_string();
            assert!(message.contains("is open in another process"), "{message}");
            assert!(
                message.contains(&dir.path().display().to_string()),
                "{message}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // The lock went with the process.
    EmbeddedBackend::open(dir.path())?;
    Ok(())
}

/// Kills a helper writing batches of `keys` entries (`mode`) at the given
/// moments, and checks after each kill that the store holds exactly the
/// batches up to the last committed one.
fn kill_writer_repeatedly(mode: &str, keys: u64, delays_ms: &[u64]) -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut last = None;
    for (round, delay_ms) in delays_ms.iter().enumerate() {
        let (mut child, _stdout) = spawn_child(mode, dir.path())?;
        std::thread::sleep(Duration::from_millis(*delay_ms));
        child.kill()?; // SIGKILL
        child.wait()?;

        let backend = EmbeddedBackend::open(dir.path())?;
        let marker = backend.get(MARKER)?.map(|e| e.count);
        let committed = marker.map_or(0, |m| m + 1);
        // Every committed batch is complete, nothing of a later one exists.
        let usage = backend.usage()?;
        assert_eq!(
            usage.entries,
            committed * keys + u64::from(marker.is_some()),
            "round {round}: a partial batch is visible"
        );
        for b in 0..committed {
            let want: Vec<Vec<u8>> = (0..keys).map(|j| crash_key(b, j)).collect();
            let refs: Vec<&[u8]> = want.iter().map(Vec::as_slice).collect();
            for (j, entry) in backend.get_many(&refs)?.into_iter().enumerate() {
                let j = j as u64;
                assert_eq!(
                    entry,
                    Some(Entry {
                        value: crash_value(b, j),
                        count: j + 1
                    }),
                    "round {round}: batch {b} key {j}"
                );
            }
        }
        assert!(marker >= last, "round {round}: committed batches went back");
        last = marker;
    }
    assert!(last.is_some(), "the writer never committed a batch");
    Ok(())
}

#[test]
fn batches_are_all_or_nothing_when_the_writer_is_killed() -> TestResult {
    kill_writer_repeatedly("write", CRASH_BATCH_KEYS, &[150, 320, 70, 500])
}

/// The same through the ingestion path: deferred and large durable
/// batches bypass the journal.
#[test]
fn ingested_batches_are_all_or_nothing_when_the_writer_is_killed() -> TestResult {
    kill_writer_repeatedly("write-bulk", BULK_BATCH_KEYS, &[400, 130, 650, 260])
}

/// Bulk writes are written once, to tables and blob files: the journal
/// stays small however much is stored.
#[test]
fn bulk_writes_bypass_the_journal() -> TestResult {
    let dir = tempfile::tempdir()?;
    let backend = EmbeddedBackend::open(dir.path())?;
    backend.set_sync_each_batch(false);
    for b in 0u64..40 {
        let mut batch = Batch::new();
        for j in 0..BULK_BATCH_KEYS {
            batch.put(crash_key(b, j), crash_value(b, j), 1);
        }
        backend.apply(&batch)?;
    }
    backend.set_sync_each_batch(true);
    backend.flush()?;
    let mut large = Batch::new();
    for j in 0..BULK_BATCH_KEYS {
        large.put(crash_key(99, j), crash_value(99, j), 1);
    }
    backend.apply(&large)?;
    let stored = 41 * BULK_BATCH_KEYS * 300;
    let mut journal = 0;
    for entry in std::fs::read_dir(dir.path())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jnl") {
            journal += path.metadata()?.blocks() * 512;
        }
    }
    assert!(
        journal < stored / 20,
        "{journal} bytes of journal for {stored} bytes stored"
    );
    assert_eq!(backend.usage()?.entries, 41 * BULK_BATCH_KEYS);
    Ok(())
}

/// Bytes the files under `dir` occupy on disk.
fn disk_usage(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            disk_usage(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

/// Writes `batches` bulk batches of 1000 entries of 4 KiB (values go to
/// blob files), numbered from `first`.
fn put_4k_batches(backend: &EmbeddedBackend, first: u64, batches: u64) -> TestResult {
    backend.set_sync_each_batch(false);
    for b in first..first + batches {
        let mut batch = Batch::new();
        for j in 0..BULK_BATCH_KEYS {
            batch.put(crash_key(b, j), crash_value(b, j).repeat(14), 1);
        }
        backend.apply(&batch)?;
    }
    backend.set_sync_each_batch(true);
    backend.flush()?;
    Ok(())
}

fn delete_batches(backend: &EmbeddedBackend, batches: std::ops::Range<u64>) -> TestResult {
    let mut batch = Batch::new();
    for b in batches {
        for j in 0..BULK_BATCH_KEYS {
            batch.delete(crash_key(b, j));
        }
    }
    backend.apply(&batch)?;
    Ok(())
}

#[test]
fn reclaiming_space_returns_the_disk_space_of_deleted_entries() -> TestResult {
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir()?;
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        // 6 batches of ~4 MiB: 0..3 stay, 3..6 are deleted.
        put_4k_batches(&backend, 0, 6)?;
        delete_batches(&backend, 3..6)?;
        // The premise: a delete alone leaves the deleted values on disk.
        assert!(disk_usage(dir.path())? > 20 * MIB);
        backend.reclaim_space()?;
    }
    let half = disk_usage(dir.path())?;
    // 12 MiB of values stay; what is left on disk is at most a quarter
    // stale, plus tables and the journal.
    assert!(half < 18 * MIB, "{half} bytes on disk for 12 MiB of values");
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        let entries = all_entries(&backend)?;
        assert_eq!(entries.len() as u64, 3 * BULK_BATCH_KEYS);
        for b in 0..3 {
            for j in 0..BULK_BATCH_KEYS {
                let entry = &entries[&crash_key(b, j)];
                assert_eq!(entry.value, crash_value(b, j).repeat(14));
                assert_eq!(entry.count, 1);
            }
        }
        delete_batches(&backend, 0..3)?;
        backend.reclaim_space()?;
        assert_eq!(backend.usage()?.entries, 0);
    }
    let empty = disk_usage(dir.path())?;
    assert!(empty < 2 * MIB, "{empty} bytes on disk for an empty store");
    Ok(())
}

#[test]
fn point_reads_agree_with_a_walk_after_counts_change_and_large_deletes() -> TestResult {
    // The pattern that once broke point reads: bulk puts, many small durable
    // count changes, then one large batch deleting most entries, reopened
    // in between. A point read must see what a walk sees.
    let dir = tempfile::tempdir()?;
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        assert!(dir.path().join("seccs-ingest-only").exists());
        put_4k_batches(&backend, 0, 4)?;
    }
    for round in 0..3u64 {
        let backend = EmbeddedBackend::open(dir.path())?;
        for j in 0..100 {
            let mut batch = Batch::new();
            batch.set_count(crash_key(round, j), 2 + j);
            backend.apply(&batch)?;
        }
    }
    let backend = EmbeddedBackend::open(dir.path())?;
    delete_batches(&backend, 0..3)?;
    let walked = all_entries(&backend)?;
    assert_eq!(walked.len() as u64, BULK_BATCH_KEYS);
    let keys: Vec<Vec<u8>> = (0..4)
        .flat_map(|b| (0..BULK_BATCH_KEYS).map(move |j| crash_key(b, j)))
        .collect();
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let read = backend.get_many(&refs)?;
    for (key, entry) in keys.iter().zip(read) {
        assert_eq!(entry.as_ref(), walked.get(key), "{}", hex::encode(key));
    }
    Ok(())
}

/// A writer applies 300 batches of 64 entries of `value_len` bytes, each
/// batch giving every entry the same count, while this thread reads them
/// all at once and checks the counts agree.
fn readers_see_whole_batches(value_len: usize, sync_each_batch: bool) -> TestResult {
    let dir = tempfile::tempdir()?;
    let backend = EmbeddedBackend::open(dir.path())?;
    backend.set_sync_each_batch(sync_each_batch);
    let keys: Vec<Vec<u8>> = (0u64..64).map(|j| j.to_be_bytes().to_vec()).collect();
    std::thread::scope(|scope| -> TestResult {
        let writer = scope.spawn(|| -> Result<(), BackendError> {
            for round in 1u64..=300 {
                let mut batch = Batch::new();
                for key in &keys {
                    batch.put(key.clone(), vec![round as u8; value_len], round);
                }
                backend.apply(&batch)?;
            }
            Ok(())
        });
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        while !writer.is_finished() {
            let got = backend.get_many(&refs)?;
            let counts: Vec<Option<u64>> =
                got.iter().map(|e| e.as_ref().map(|e| e.count)).collect();
            assert!(
                counts.windows(2).all(|w| w[0] == w[1]),
                "mixed batches: {counts:?}"
            );
            let counts = backend.get_counts(&refs)?;
            assert!(
                counts.windows(2).all(|w| w[0] == w[1]),
                "mixed batches: {counts:?}"
            );
        }
        writer.join().map_err(|_| "writer panicked")??;
        Ok(())
    })?;
    assert_eq!(backend.get(&keys[0])?.map(|e| e.count), Some(300));
    Ok(())
}

#[test]
fn readers_never_see_half_a_batch() -> TestResult {
    readers_see_whole_batches(8, false)
}

/// Durable batches of 512 KiB are ingested, not journaled: every batch
/// moves from the pending writes to the tables while the reader reads.
#[test]
fn readers_never_see_half_a_batch_while_batches_are_ingested() -> TestResult {
    readers_see_whole_batches(8 << 10, true)
}

/// Writes raw records with fjall itself, behind the backend's back.
fn write_raw(dir: &Path, keyspace: &str, key: &[u8], value: &[u8]) -> TestResult {
    let db = fjall::Database::builder(dir).open()?;
    let ks = db.keyspace(keyspace, fjall::KeyspaceCreateOptions::default)?;
    ks.insert(key, value)?;
    db.persist(fjall::PersistMode::SyncAll)?;
    Ok(())
}

#[test]
fn inconsistent_records_are_reported_as_corrupt() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        let mut batch = Batch::new();
        batch.put(b"good".to_vec(), b"v".to_vec(), 1);
        backend.apply(&batch)?;
    }
    write_raw(dir.path(), "entries", b"cshort", &[1, 2, 3])?;
    write_raw(dir.path(), "entries", b"vshort", b"value")?;
    write_raw(dir.path(), "entries", b"vuncounted", b"value")?;
    write_raw(dir.path(), "entries", b"cvalueless", &[0; 8])?;

    let backend = EmbeddedBackend::open(dir.path())?;
    assert_eq!(
        backend.get(b"good")?,
        Some(Entry {
            value: b"v".to_vec(),
            count: 1
        })
    );
    for key in [&b"short"[..], b"uncounted", b"valueless"] {
        match backend.get(key) {
            Err(err @ BackendError::Corrupt { .. }) => {
                assert!(err.to_string().contains(&hex::encode(key)), "{err}");
            }
            other => panic!("{:?}: expected Corrupt, got {other:?}", key),
        }
    }
    assert!(matches!(
        backend.get_counts(&[b"short"]),
        Err(BackendError::Corrupt { .. })
    ));
    assert!(matches!(
        backend.for_each(&mut |_, _| Ok(())),
        Err(BackendError::Corrupt { .. })
    ));
    Ok(())
}

/// A store of the earlier layout (values in `nodes`, counts in `counts`)
/// opens with every entry in place, and the old keyspaces are gone.
#[test]
fn a_store_of_the_two_keyspace_layout_is_migrated_at_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut want = BTreeMap::new();
    {
        let db = fjall::Database::builder(dir.path()).open()?;
        let nodes = db.keyspace("nodes", fjall::KeyspaceCreateOptions::default)?;
        let counts = db.keyspace("counts", fjall::KeyspaceCreateOptions::default)?;
        for j in 0u64..300 {
            let (key, value) = (crash_key(7, j), crash_value(7, j));
            nodes.insert(&key, &value)?;
            counts.insert(&key, (j + 1).to_be_bytes())?;
            want.insert(
                key,
                Entry {
                    value,
                    count: j + 1,
                },
            );
        }
        db.persist(fjall::PersistMode::SyncAll)?;
    }
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        assert_eq!(all_entries(&backend)?, want);
    }
    let db = fjall::Database::builder(dir.path()).open()?;
    assert!(!db.keyspace_exists("nodes") && !db.keyspace_exists("counts"));
    drop(db);
    let backend = EmbeddedBackend::open(dir.path())?;
    assert_eq!(all_entries(&backend)?, want);
    Ok(())
}

#[test]
fn a_damaged_version_marker_is_corrupt_not_a_panic() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(EmbeddedBackend::open(dir.path())?);
    std::fs::write(dir.path().join("version"), b"garbage")?;
    let said = corrupt_open(dir.path(), "a damaged version marker")?;
    assert!(said.contains(&dir.path().display().to_string()), "{said}");
    Ok(())
}

#[test]
fn damaged_table_files_give_an_error_not_a_panic() -> TestResult {
    let dir = tempfile::tempdir()?;
    put_entries(dir.path(), 2000, 1)?;
    // Reopening flushes the recovered journal into tables over time; force
    // the data into tables by writing through fjall and rotating memtables.
    {
        let db = fjall::Database::builder(dir.path()).open()?;
        let ks = db.keyspace("entries", fjall::KeyspaceCreateOptions::default)?;
        ks.rotate_memtable_and_wait()?;
        db.persist(fjall::PersistMode::SyncAll)?;
    }
    // Flip bytes in the middle of every table file.
    let mut damaged = 0;
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.components().any(|c| c.as_os_str() == "tables") {
                let mut bytes = std::fs::read(&path)?;
                if bytes.len() > 64 {
                    let mid = bytes.len() / 3;
                    for b in &mut bytes[mid..mid + 32] {
                        *b ^= 0x5a;
                    }
                    std::fs::write(&path, bytes)?;
                    damaged += 1;
                }
            }
        }
    }
    assert!(damaged > 0, "no table file found to damage");
    // Either opening fails, or reading the damaged blocks does; both with
    // an error, never a panic and never wrong data.
    let outcome = std::panic::catch_unwind(|| -> Result<(), BackendError> {
        let backend = EmbeddedBackend::open(dir.path())?;
        let keys: Vec<Vec<u8>> = (0u64..2000).map(|j| crash_key(0, j)).collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let got = backend.get_many(&refs)?;
        for (j, entry) in got.into_iter().enumerate() {
            let j = j as u64;
            if let Some(entry) = entry {
                assert_eq!(entry.value, crash_value(0, j), "wrong data for key {j}");
            }
        }
        backend.for_each(&mut |_, _| Ok(()))
    });
    match outcome {
        Ok(Err(BackendError::Corrupt { .. } | BackendError::Other { .. })) => Ok(()),
        Ok(Ok(())) => Err("damaged tables read back without an error".into()),
        Ok(Err(other)) => Err(format!("unexpected error kind: {other:?}").into()),
        Err(_) => Err("the backend panicked on damaged tables".into()),
    }
}

#[derive(Debug, Clone)]
enum RandomOp {
    Put(u8, u8, u64),
    SetCount(u8, u64),
    Delete(u8),
    Barrier,
}

fn random_op() -> impl Strategy<Value = RandomOp> {
    prop_oneof![
        (0u8..8, any::<u8>(), 0u64..5).prop_map(|(k, v, c)| RandomOp::Put(k, v, c)),
        (0u8..8, 0u64..5).prop_map(|(k, c)| RandomOp::SetCount(k, c)),
        (0u8..8).prop_map(RandomOp::Delete),
        Just(RandomOp::Barrier),
    ]
}

fn to_batch(ops: &[RandomOp]) -> Batch {
    let mut batch = Batch::new();
    for op in ops {
        match *op {
            RandomOp::Put(k, v, c) => batch.put(vec![k], vec![v; usize::from(v) % 40], c),
            RandomOp::SetCount(k, c) => batch.set_count(vec![k], c),
            RandomOp::Delete(k) => batch.delete(vec![k]),
            RandomOp::Barrier => batch.barrier(),
        }
    }
    batch
}

/// Checks that two backends hold exactly the same entries, by every reader.
fn same_state(a: &dyn Backend, b: &dyn Backend) -> Result<(), TestCaseError> {
    let err = |e: BackendError| TestCaseError::fail(e.to_string());
    prop_assert_eq!(all_entries(a).map_err(err)?, all_entries(b).map_err(err)?);
    prop_assert_eq!(a.usage().map_err(err)?, b.usage().map_err(err)?);
    let keys: Vec<[u8; 1]> = (0u8..8).map(|k| [k]).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    prop_assert_eq!(
        a.get_many(&refs).map_err(err)?,
        b.get_many(&refs).map_err(err)?
    );
    prop_assert_eq!(
        a.get_counts(&refs).map_err(err)?,
        b.get_counts(&refs).map_err(err)?
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn embedded_and_memory_backends_agree(
        batches in prop::collection::vec(prop::collection::vec(random_op(), 0..12), 1..10)
    ) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let memory = MemoryBackend::new();
        {
            let embedded = EmbeddedBackend::open(dir.path())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            embedded.set_sync_each_batch(false);
            for ops in &batches {
                let batch = to_batch(ops);
                memory.apply(&batch).map_err(|e| TestCaseError::fail(e.to_string()))?;
                embedded.apply(&batch).map_err(|e| TestCaseError::fail(e.to_string()))?;
                same_state(&memory, &embedded)?;
            }
            embedded.flush().map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let reopened = EmbeddedBackend::open(dir.path())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        same_state(&memory, &reopened)?;
    }
}

/// The prefix of the keys of the damaged-block tests.
const PREFIX: u8 = b'c';

/// Key `j` of the damaged-block tests: [`PREFIX`], then 8 bytes spread
/// over the whole range.
fn prefixed_key(j: u64) -> Vec<u8> {
    let mut key = vec![PREFIX];
    key.extend_from_slice(&j.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    key
}

/// Flips 16 bytes at `num`/`den` of the largest table file under `dir`,
/// which damages the block there.
fn damage_largest_table(dir: &Path, num: usize, den: usize) -> TestResult {
    let table = walk_files(dir)
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "tables"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .ok_or("no table file")?;
    let mut bytes = std::fs::read(&table)?;
    let at = bytes.len() * num / den;
    for b in &mut bytes[at..at + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&table, bytes)?;
    Ok(())
}

/// A prefix walk that meets a damaged block goes on past it, range by
/// range: the entries near the damage are reported, every other entry
/// under the prefix is visited with its own value, and none twice. (A
/// catalog listing walks this way, so one damaged block does not hide
/// every name.)
#[test]
fn a_prefix_walk_goes_past_a_damaged_block() -> TestResult {
    let key = prefixed_key;
    let dir = tempfile::tempdir()?;
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        let mut batch = Batch::new();
        for j in 0u64..4000 {
            batch.put(key(j), crash_value(1, j), 1);
            // Entries outside the prefix, on both sides of it.
            batch.put(crash_key(0, j), crash_value(0, j), 1);
        }
        backend.apply(&batch)?;
        backend.flush()?;
    }
    damage_largest_table(dir.path(), 3, 4)?;
    let backend = EmbeddedBackend::open(dir.path())?;
    let strict = backend.for_each_with_prefix(&[PREFIX], &mut |_, _| Ok(()));
    assert!(strict.is_err(), "the damage is under the prefix");
    let expected: std::collections::HashMap<Vec<u8>, Vec<u8>> =
        (0u64..4000).map(|j| (key(j), crash_value(1, j))).collect();
    let mut visited = std::collections::HashSet::new();
    let mut damaged = Vec::new();
    backend.walk(
        &[PREFIX],
        &mut |key, entry| {
            assert_eq!(expected.get(key), Some(&entry.value), "wrong data");
            assert!(visited.insert(key.to_vec()), "visited twice");
            Ok(())
        },
        Some(&mut |key, _| damaged.push(key.to_vec())),
    )?;
    assert!(!damaged.is_empty(), "the damage is reported");
    assert!(
        damaged.iter().all(|k| k.first() == Some(&PREFIX)),
        "only ranges under the prefix: {damaged:?}"
    );
    assert!(
        visited.len() > 3000 && visited.len() < 4000,
        "the entries away from the damage are all visited: {}",
        visited.len()
    );
    Ok(())
}

/// A damaged block where keys are few spans many ranges of the walk: it is
/// reported by as few ranges as cover it (a range none of whose 256
/// ranges could be read is one report), and every entry not visited is
/// under a range reported.
#[test]
fn a_damaged_block_among_few_keys_is_reported_in_few_ranges() -> TestResult {
    let key = prefixed_key;
    let dir = tempfile::tempdir()?;
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        let mut batch = Batch::new();
        for j in 0u64..300 {
            batch.put(key(j), crash_value(1, j).repeat(8), 1);
        }
        backend.apply(&batch)?;
        backend.flush()?;
    }
    damage_largest_table(dir.path(), 1, 3)?;
    let backend = EmbeddedBackend::open(dir.path())?;
    let mut visited = std::collections::HashSet::new();
    let mut damaged: Vec<Vec<u8>> = Vec::new();
    backend.walk(
        &[PREFIX],
        &mut |key, _| {
            visited.insert(key.to_vec());
            Ok(())
        },
        Some(&mut |key, _| damaged.push(key.to_vec())),
    )?;
    assert!(!damaged.is_empty(), "the damage is reported");
    for j in 0u64..300 {
        let key = key(j);
        assert!(
            visited.contains(&key) || damaged.iter().any(|r| key.starts_with(r)),
            "entry {j} is neither visited nor under a range reported"
        );
    }
    let lost = 300 - visited.len();
    assert!(
        damaged.len() <= 600,
        "{} ranges reported for {lost} entries not read",
        damaged.len()
    );
    assert!(
        damaged.iter().any(|r| r.len() == 2),
        "some two-byte range stands for all 256 of its own: {damaged:?}"
    );
    Ok(())
}

/// Puts `n` entries (the keys and values of batch 0 of the crash tests,
/// each value `repeat` times over) into a new embedded database at `dir`,
/// in one batch, and closes it.
fn put_entries(dir: &Path, n: u64, repeat: usize) -> TestResult {
    let backend = EmbeddedBackend::open(dir)?;
    let mut batch = Batch::new();
    for j in 0..n {
        batch.put(crash_key(0, j), crash_value(0, j).repeat(repeat), 1);
    }
    backend.apply(&batch)?;
    Ok(())
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&path) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push(path);
                }
            }
        }
    }
    files
}

/// An entry whose count record is damaged (3 bytes, not 8) is damage to
/// that entry alone: a damage-tolerant walk reports it by its own key and
/// visits every other entry. A catalog record so damaged is then verify's
/// `unreadable` entry, which gc of a store whose key was checked removes;
/// it was reported by the range of keys around it, which gc cannot remove.
#[test]
fn gc_removes_a_catalog_entry_whose_count_is_damaged() -> TestResult {
    use seccs_store::catalog::{EntryKind, is_catalog_key};
    use seccs_store::{Finding, Params, Store, WrapperKind};
    let dir = tempfile::tempdir()?;
    let params = Params::new(256, WrapperKind::AesSiv)?;
    let key = seccs_core::SecretKey::from_bytes([3; 32]);
    let open = || -> Result<Store, Box<dyn std::error::Error>> {
        let backend = std::sync::Arc::new(EmbeddedBackend::open(dir.path())?);
        Ok(Store::open(backend, params, &key)?)
    };
    let mut refs = Vec::new();
    {
        let store = open()?;
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            let content = crash_value(7, i as u64).repeat(100);
            let (put, _) = store.put_named(&mut content.as_slice(), name, EntryKind::File)?;
            refs.push((put.content_ref, content));
        }
    }
    let record = all_entries(&EmbeddedBackend::open(dir.path())?)?
        .into_keys()
        .find(|k| is_catalog_key(k))
        .ok_or("a record")?;
    write_raw(
        dir.path(),
        "entries",
        &[&b"c"[..], &record].concat(),
        &[1, 2, 3],
    )?;
    let hex = hex::encode(&record);
    let store = open()?;
    let unreadable = |findings: &[Finding]| {
        findings
            .iter()
            .any(|f| matches!(f, Finding::Unreadable { key, .. } if *key == hex))
    };
    let verify = store.verify()?;
    assert!(unreadable(&verify.findings), "{verify:?}");
    assert_eq!(verify.names, 2, "the other records are read: {verify:?}");
    let gc = store.gc()?;
    assert_eq!(gc.unreadable_records_removed, [hex], "{gc:?}");
    assert!(gc.is_clean(), "{gc:?}");
    assert!(store.verify()?.is_clean());
    assert_eq!(store.list("")?.len(), 2);
    for (r, content) in &refs {
        assert_eq!(&store.get(r)?, content);
    }
    Ok(())
}

/// A damaged block of the catalog is reported by the range of keys the
/// walk could not read, not by a record's key: a listing counts such a
/// range as damage, so names it could not read make it fail (or say so)
/// rather than come back short and look whole.
#[test]
fn a_listing_with_a_damaged_catalog_block_reports_damage() -> TestResult {
    use seccs_store::catalog::EntryKind;
    use seccs_store::{Params, Store, WrapperKind};
    const NAMES: usize = 4000;
    let dir = tempfile::tempdir()?;
    let params = Params::new(256, WrapperKind::AesSiv)?;
    let key = seccs_core::SecretKey::from_bytes([5; 32]);
    let open =
        || -> Result<(Store, std::sync::Arc<EmbeddedBackend>), Box<dyn std::error::Error>> {
            let backend = std::sync::Arc::new(EmbeddedBackend::open(dir.path())?);
            Ok((Store::open(backend.clone(), params, &key)?, backend))
        };
    {
        let (store, backend) = open()?;
        // One table of records: every name holds the same content (one
        // node), and the puts reach the disk as one ingestion.
        backend.set_sync_each_batch(false);
        for i in 0..NAMES {
            store.put_named(&mut &b"same"[..], &format!("name-{i:05}"), EntryKind::File)?;
        }
        backend.flush()?;
    }
    let table = walk_files(dir.path())
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "tables"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .ok_or("no table file")?;
    let mut bytes = std::fs::read(&table)?;
    let at = bytes.len() / 2;
    for b in &mut bytes[at..at + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&table, bytes)?;
    let (store, _) = open()?;
    let listing = store.list_readable("")?;
    assert!(
        listing.records.len() < NAMES && !listing.records.is_empty(),
        "the damage costs some names, not all: {} listed",
        listing.records.len()
    );
    assert!(listing.damaged > 0, "the names it cost are counted");
    assert!(listing.damage().is_some());
    assert!(store.list("").is_err(), "a listing that misses names fails");
    Ok(())
}

/// A batch whose ingestion fails (here: a table larger than the process
/// may write) is not applied: `apply` returns the error, and reads after
/// it, in that process and after a restart, see the store as it was. It
/// once stayed in the pending writes, seen by every later read and
/// written by a later ingestion, so a delete reported as failed took
/// effect.
#[test]
fn a_batch_whose_ingestion_fails_is_not_applied() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        let mut batch = Batch::new();
        batch.put(FAILING_KEY.to_vec(), b"value".to_vec(), 1);
        backend.apply(&batch)?;
    }
    // The helper runs with a file size limit of 64 blocks (32 or 64 KiB),
    // and with SIGXFSZ ignored (an ignored signal stays ignored across
    // exec) so that a write past the limit fails with EFBIG instead of
    // killing it.
    let output = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 64 && exec \"$0\" child_helper --exact --nocapture --test-threads=1",
        ])
        .arg(std::env::current_exe()?)
        .env(CHILD_ENV, format!("fail-ingest:{}", dir.path().display()))
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout
        .lines()
        .find_map(|line| line.split_once("SECCS_CHILD_RESULT ").map(|(_, r)| r))
        .ok_or_else(|| {
            format!(
                "the helper said nothing: {}\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    assert_eq!(result.trim(), "applied=false kept=true put=false");
    let backend = EmbeddedBackend::open(dir.path())?;
    assert!(
        backend.get(FAILING_KEY)?.is_some(),
        "still there after a restart"
    );
    assert!(backend.get(&crash_key(9, 0))?.is_none());
    Ok(())
}

/// fjall's lock file is empty whenever the database is closed, so a copy
/// or sync tool that skips empty files drops it; fjall's recovery opens it
/// without creating it. The store opens as before, with its data.
#[test]
fn a_database_that_lost_its_empty_lock_file_opens_with_its_data() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let db = tmp.path().join("db");
    {
        let backend = EmbeddedBackend::open(&db)?;
        let mut batch = Batch::new();
        batch.put(b"kept".to_vec(), vec![9; 10], 2);
        backend.apply(&batch)?;
    }
    let lock = db.join("lock");
    assert_eq!(std::fs::metadata(&lock)?.len(), 0, "the lock file is empty");
    std::fs::remove_file(&lock)?;
    let backend = EmbeddedBackend::open_existing(&db)?;
    assert_eq!(
        backend.get_many(&[b"kept".as_slice()])?,
        vec![Some(Entry {
            value: vec![9; 10],
            count: 2
        })]
    );
    assert!(lock.exists(), "put back");
    drop(backend);
    // And a second open while one holds it is still refused.
    let held = EmbeddedBackend::open_existing(&db)?;
    assert!(matches!(
        EmbeddedBackend::open_existing(&db),
        Err(BackendError::Locked { .. })
    ));
    drop(held);
    Ok(())
}

/// A store directory's root (its `config.toml` beside `db/`) given where
/// the database's directory is meant is refused, naming `db/` as what to
/// open, and nothing is made in it: it once got a second, empty database
/// beside the store's, which every write went to and nothing read.
#[test]
fn a_store_directory_given_for_its_database_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let db = EmbeddedBackend::open(&dir.path().join("db"))?;
        db.apply(&{
            let mut batch = Batch::new();
            batch.put(b"k".to_vec(), b"v".to_vec(), 1);
            batch
        })?;
    }
    std::fs::write(dir.path().join("config.toml"), "chunk_size = 4096\n")?;
    let listing = |p: &Path| -> std::io::Result<Vec<std::ffi::OsString>> {
        let mut names: Vec<_> = std::fs::read_dir(p)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        Ok(names)
    };
    let before = listing(dir.path())?;
    for open in [EmbeddedBackend::open, EmbeddedBackend::open_existing] {
        match open(dir.path()) {
            Err(e) => {
                let said = e.to_string();
                assert!(said.contains("is a store directory"), "{said}");
                assert!(
                    said.contains(&dir.path().join("db").display().to_string()),
                    "{said}"
                );
            }
            Ok(_) => panic!("the store directory was opened as a database"),
        }
        assert_eq!(listing(dir.path())?, before);
    }
    let db = EmbeddedBackend::open(&dir.path().join("db"))?;
    assert!(db.get(b"k")?.is_some());
    Ok(())
}

/// One batch of [`write_journaled`]: key, value (`None`: count only), count.
type JournaledBatch<'a> = (&'a [u8], Option<&'a [u8]>, u64);

/// Writes batches the way builds before ingest-only (up to commit 93262b6)
/// wrote every small durable batch: through fjall's journal, into an
/// `entries` keyspace made with that build's options, and left in the
/// journal and memtable (none of them reached a table).
fn write_journaled(dir: &Path, batches: &[JournaledBatch<'_>]) -> TestResult {
    use fjall::config::{CompressionPolicy, PartitioningPolicy};
    let db = fjall::Database::builder(dir).open()?;
    let entries = db.keyspace("entries", || {
        fjall::KeyspaceCreateOptions::default()
            .data_block_compression_policy(CompressionPolicy::disabled())
            .filter_block_partitioning_policy(PartitioningPolicy::all(true))
            .index_block_partitioning_policy(PartitioningPolicy::all(true))
            .with_kv_separation(Some(
                fjall::KvSeparationOptions::default().compression(fjall::CompressionType::None),
            ))
            .max_memtable_size(8 << 20)
    })?;
    for (key, value, count) in batches {
        let mut batch = db.batch().durability(Some(fjall::PersistMode::SyncAll));
        if let Some(value) = value {
            batch.insert(&entries, [b"v", *key].concat(), *value);
        }
        batch.insert(&entries, [b"c", *key].concat(), count.to_be_bytes());
        batch.commit()?;
    }
    Ok(())
}

/// Checks that `backend` holds entry `a` ("value a", count 1) and no
/// other, by lookup (of `a`, `b` and `c`) and by walk; `when` names the
/// moment in a failure.
fn holds_only_a(backend: &EmbeddedBackend, when: &str) -> TestResult {
    let a = Entry {
        value: b"value a".to_vec(),
        count: 1,
    };
    assert_eq!(
        backend.get_many(&[b"a", b"b", b"c"])?,
        vec![Some(a.clone()), None, None],
        "{when}"
    );
    assert_eq!(
        all_entries(backend)?,
        BTreeMap::from([(b"a".to_vec(), a)]),
        "{when}"
    );
    Ok(())
}

/// A store an earlier build wrote through fjall's journal, then changed
/// and compacted by this build, never gives back what this build removed,
/// nor an old count: not right away, not after `reclaim_space` (the
/// compaction of `seccs gc`), not after reopening. fjall keeps the journal
/// file, and at every open replays each journaled batch whose sequence
/// number is above the highest one left in the tables; the compaction
/// dropped the removed entries and their tombstones, which held the
/// highest numbers, so the next open replayed the old puts and counts.
#[test]
fn an_upgraded_store_keeps_its_removals_and_counts_through_compaction() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_journaled(
        dir.path(),
        &[
            (b"a", Some(b"value a"), 1),
            (b"b", Some(b"value b"), 1),
            (b"c", Some(b"value c"), 1),
            (b"c", None, 3),
        ],
    )?;
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        let mut batch = Batch::new();
        batch.set_count(b"c".to_vec(), 2);
        backend.apply(&batch)?;
    }
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        assert_eq!(backend.get_counts(&[b"c"])?, vec![Some(2)]);
        let mut batch = Batch::new();
        batch.delete(b"b".to_vec());
        batch.delete(b"c".to_vec());
        backend.apply(&batch)?;
    }
    {
        let backend = EmbeddedBackend::open(dir.path())?;
        holds_only_a(&backend, "after the removal")?;
        backend.reclaim_space()?;
        holds_only_a(&backend, "after the compaction")?;
    }
    for round in 0..2 {
        let backend = EmbeddedBackend::open(dir.path())?;
        holds_only_a(
            &backend,
            &format!("reopened after the compaction ({round})"),
        )?;
        backend.reclaim_space()?;
        holds_only_a(&backend, &format!("compacted again ({round})"))?;
        let mut batch = Batch::new();
        batch.put(b"c".to_vec(), b"new c".to_vec(), 1);
        backend.apply(&batch)?;
        assert_eq!(
            backend.get(b"c")?,
            Some(Entry {
                value: b"new c".to_vec(),
                count: 1
            })
        );
        let mut batch = Batch::new();
        batch.delete(b"c".to_vec());
        backend.apply(&batch)?;
    }
    Ok(())
}

/// A store that the build before this fix upgraded and then changed and
/// compacted, whose journal fjall would replay at the next open, is
/// repaired when this build opens it: the journal's batches were in its
/// tables before that build wrote its marker, so they are dropped, and
/// what it removed stays removed. (Made here with fjall directly, as that
/// build left it: journal flushed into a table and kept, tables merged,
/// marker written, then an ingested removal and a compaction.)
#[test]
fn a_store_upgraded_before_the_journal_was_emptied_is_repaired_at_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_journaled(
        dir.path(),
        &[(b"a", Some(b"value a"), 1), (b"b", Some(b"value b"), 1)],
    )?;
    {
        let db = fjall::Database::builder(dir.path()).open()?;
        let entries = db.keyspace("entries", fjall::KeyspaceCreateOptions::default)?;
        entries.rotate_memtable_and_wait()?;
        entries.major_compact()?;
        db.persist(fjall::PersistMode::SyncAll)?;
    }
    std::fs::write(
        dir.path().join("seccs-ingest-only"),
        b"every batch of this database is ingested\n",
    )?;
    {
        let db = fjall::Database::builder(dir.path()).open()?;
        let entries = db.keyspace("entries", fjall::KeyspaceCreateOptions::default)?;
        let mut removal = entries.start_ingestion()?;
        removal.write_tombstone(b"cb".as_slice())?;
        removal.write_tombstone(b"vb".as_slice())?;
        removal.finish()?;
        entries.major_compact()?;
        db.persist(fjall::PersistMode::SyncAll)?;
    }
    for round in 0..2 {
        let backend = EmbeddedBackend::open(dir.path())?;
        holds_only_a(&backend, &format!("open {round}"))?;
        backend.reclaim_space()?;
    }
    Ok(())
}

/// Each keyspace's state file, `keyspaces/N/vID`, with the `current` file
/// that names it (its first 8 bytes are ID, the next 16 the file's xxh3).
fn version_files(
    dir: &Path,
) -> Result<Vec<(std::path::PathBuf, std::path::PathBuf)>, Box<dyn std::error::Error>> {
    let mut found = Vec::new();
    for keyspace in std::fs::read_dir(dir.join("keyspaces"))? {
        let keyspace = keyspace?.path();
        let current = keyspace.join("current");
        let Ok(pointer) = std::fs::read(&current) else {
            continue;
        };
        let id = u64::from_le_bytes(pointer.get(..8).ok_or("short current file")?.try_into()?);
        found.push((current, keyspace.join(format!("v{id}"))));
    }
    Ok(found)
}

/// What opening the damaged database in `dir` (`what`, for messages)
/// says: it must fail as corrupt.
fn corrupt_open(dir: &Path, what: &str) -> Result<String, Box<dyn std::error::Error>> {
    match EmbeddedBackend::open(dir) {
        Err(err @ BackendError::Corrupt { .. }) => Ok(err.to_string()),
        Err(other) => Err(format!("{what}: expected Corrupt, got {other:?}").into()),
        Ok(_) => Err(format!("{what}: the damaged database opened").into()),
    }
}

fn expect_corrupt(dir: &Path, what: &str) -> TestResult {
    let said = corrupt_open(dir, what)?;
    assert!(said.contains("is damaged"), "{what}: {said}");
    Ok(())
}

/// lsm-tree asserts on the level count (byte 8) and the filter hash type
/// (byte 9) of a keyspace's state file, and fjall's `Drop` then panics on a
/// poisoned lock, which aborts: the open must refuse the file first.
#[test]
fn a_damaged_keyspace_state_file_is_corrupt_not_an_abort() -> TestResult {
    let pristine = tempfile::tempdir()?;
    {
        let backend = EmbeddedBackend::open(pristine.path())?;
        let mut batch = Batch::new();
        batch.put(b"k".to_vec(), b"v".to_vec(), 1);
        backend.apply(&batch)?;
    }
    let files = version_files(pristine.path())?;
    assert!(
        files.len() >= 2,
        "expected the meta and entries keyspaces: {files:?}"
    );
    for (index, (_, version)) in files.iter().enumerate() {
        let len = std::fs::metadata(version)?.len() as usize;
        for offset in [8, 9, len / 2, len - 1] {
            for flip in [0x0c_u8, 0xff] {
                let (copy, _) = flipped_copy(pristine.path(), index, offset, flip)?;
                expect_corrupt(
                    copy.path(),
                    &format!("{} byte {offset} ^ {flip:#x}", version.display()),
                )?;
            }
        }
    }
    // A file rewritten with a matching checksum (xxh3 authenticates
    // nothing) must not reach the assertions either.
    for offset in [8, 9] {
        let (copy, bytes) = flipped_copy(pristine.path(), 0, offset, 0x0c)?;
        let (current, _) = &version_files(copy.path())?[0];
        let mut pointer = std::fs::read(current)?;
        pointer[8..24].copy_from_slice(&xxhash_rust::xxh3::xxh3_128(&bytes).to_le_bytes());
        std::fs::write(current, &pointer)?;
        expect_corrupt(copy.path(), &format!("forged byte {offset}"))?;
    }
    // The untouched database still opens with its data.
    let backend = EmbeddedBackend::open(pristine.path())?;
    assert_eq!(
        backend.get_many(&[b"k".as_slice()])?[0]
            .as_ref()
            .map(|e| e.count),
        Some(1)
    );
    Ok(())
}

/// A copy of the database in `pristine` whose keyspace state file number
/// `index` (as [`version_files`] lists them) has its byte at `offset`
/// XORed with `flip`; with that file's new bytes.
fn flipped_copy(
    pristine: &Path,
    index: usize,
    offset: usize,
    flip: u8,
) -> Result<(tempfile::TempDir, Vec<u8>), Box<dyn std::error::Error>> {
    let copy = tempfile::tempdir()?;
    copy_dir(pristine, copy.path())?;
    let (_, damaged) = &version_files(copy.path())?[index];
    let mut bytes = std::fs::read(damaged)?;
    bytes[offset] ^= flip;
    std::fs::write(damaged, &bytes)?;
    Ok((copy, bytes))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// gc's compaction reads every block, so a damaged one makes it fail after
/// gc has applied its repairs: the report of those repairs (and of what gc
/// left) comes back with the failure in it, never replaced by the error.
#[test]
fn gc_reports_its_repairs_when_a_damaged_block_stops_its_compaction() -> TestResult {
    use seccs_store::catalog::{EntryKind, is_catalog_key};
    use seccs_store::{Finding, Params, Store, WrapperKind};
    let dir = tempfile::tempdir()?;
    let params = Params::new(256, WrapperKind::AesSiv)?;
    let key = seccs_core::SecretKey::from_bytes([9; 32]);
    let open = || -> Result<Store, Box<dyn std::error::Error>> {
        let backend = std::sync::Arc::new(EmbeddedBackend::open(dir.path())?);
        Ok(Store::open(backend, params, &key)?)
    };
    {
        let store = open()?;
        for i in 0..8u64 {
            let content: Vec<u8> = (0..200).flat_map(|j| crash_value(i, j)).collect();
            store.put_named(&mut content.as_slice(), &format!("n{i}"), EntryKind::File)?;
        }
    }
    // The lowest node key sorts into the first block, away from the damage.
    let lowest = all_entries(&EmbeddedBackend::open(dir.path())?)?
        .into_keys()
        .find(|k| !is_catalog_key(k))
        .ok_or("a node")?;
    write_raw(
        dir.path(),
        "entries",
        &[&b"c"[..], &lowest].concat(),
        &0u64.to_be_bytes(),
    )?;
    drop(EmbeddedBackend::open(dir.path())?);
    let table = walk_files(dir.path())
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "tables"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .ok_or("no table file")?;
    let mut bytes = std::fs::read(&table)?;
    let at = bytes.len() / 2;
    for b in &mut bytes[at..at + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&table, bytes)?;
    let store = open()?;
    let gc = store.gc()?;
    assert_eq!(gc.counts_fixed, 1, "{gc:?}");
    assert!(
        gc.remaining
            .iter()
            .any(|f| matches!(f, Finding::Unreadable { .. })),
        "the damaged block is left and reported: {gc:?}"
    );
    let why = gc
        .space_not_reclaimed
        .as_deref()
        .ok_or("reclaiming succeeded")?;
    assert!(why.contains("corrupt"), "{why}");
    assert!(!gc.is_clean());
    // The repair was applied, not only reported.
    let verify = store.verify()?;
    assert!(
        !verify
            .findings
            .iter()
            .any(|f| matches!(f, Finding::WrongCount { .. })),
        "{verify:?}"
    );
    Ok(())
}

/// fjall opens no database with a cut value file, so an open fails; its
/// error names the file and says what can be done, not only
/// "unrecoverable".
#[test]
fn a_cut_value_file_is_named_when_the_open_fails() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Values of 1 KiB and more go to value (blob) files.
    put_entries(dir.path(), 20, 8)?;
    let blob = walk_files(dir.path())
        .into_iter()
        .find(|p| p.components().any(|c| c.as_os_str() == "blobs"))
        .ok_or("no value file")?;
    let len = std::fs::metadata(&blob)?.len();
    std::fs::File::options()
        .write(true)
        .open(&blob)?
        .set_len(len - 1)?;
    let said = corrupt_open(dir.path(), "a cut value file")?;
    assert!(said.contains(&blob.display().to_string()), "{said}");
    assert!(said.contains("backup"), "{said}");
    Ok(())
}

/// fjall parses the name of every directory under `keyspaces/` as a
/// number and panics (then aborts) on any other: such a directory is
/// damage, reported before fjall reads it.
#[test]
fn a_stray_directory_among_the_keyspaces_is_corrupt_not_an_abort() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(EmbeddedBackend::open(dir.path())?);
    std::fs::create_dir(dir.path().join("keyspaces").join("stray"))?;
    expect_corrupt(dir.path(), "keyspaces/stray")
}

/// The store's descriptor is a file beside the database's own: written
/// whole, read no further than one byte past the longest, never among the
/// entries; and what is not a file there (a FIFO, a directory) reads as an
/// empty value at once, never blocking the open that reads it.
#[test]
fn the_descriptor_is_a_file_beside_the_tables_and_nothing_else_there_blocks() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    let backend = EmbeddedBackend::open(&db)?;
    assert!(backend.keeps_descriptor());
    assert_eq!(backend.read_descriptor()?, None);
    backend.write_descriptor(&vec![b'x'; 1 << 16])?;
    let most = seccs_store::backend::MAX_BESIDE_ENTRIES;
    assert_eq!(backend.read_descriptor()?.map(|d| d.len()), Some(most + 1));
    backend.write_descriptor(b"descriptor")?;
    assert_eq!(
        EmbeddedBackend::read_descriptor_in(&db)?.as_deref(),
        Some(&b"descriptor"[..])
    );
    assert!(all_entries(&backend)?.is_empty());
    assert_eq!(backend.usage()?.entries, 0);

    let path = db.join("seccs-store-descriptor");
    std::fs::remove_file(&path)?;
    let made = std::process::Command::new("mkfifo").arg(&path).status()?;
    assert!(made.success(), "mkfifo");
    assert_eq!(backend.read_descriptor()?, Some(Vec::new()), "a FIFO");
    // The next writer replaces it.
    backend.write_descriptor(b"descriptor")?;
    assert_eq!(
        backend.read_descriptor()?.as_deref(),
        Some(&b"descriptor"[..])
    );
    std::fs::remove_file(&path)?;
    std::fs::create_dir(&path)?;
    assert_eq!(backend.read_descriptor()?, Some(Vec::new()), "a directory");
    Ok(())
}
