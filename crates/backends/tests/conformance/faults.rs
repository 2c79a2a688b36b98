//! Round trips of a large put, and servers killed in the middle of writes.

use std::time::{Duration, Instant};

use seccs_backends::{PostgresBackend, PostgresConfig};
use seccs_core::SecretKey;
use seccs_store::backend::{Backend, BackendError, Batch};
use seccs_store::{Params, Store, WrapperKind};

use crate::harness::{Harness, Opened, Postgres, Redis, S3};
use crate::support::{PostgresServer, TestResult};

/// Deterministic incompressible bytes (xorshift64*), fast enough for
/// tens of MiB.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn store_on(opened: &Opened) -> TestResult<Store> {
    Ok(Store::new_unchecked(
        opened.backend.clone(),
        Params::new(4096, WrapperKind::AesSiv)?,
        &SecretKey::from_bytes([9; 32]),
    ))
}

/// A 64 MiB put reaches Redis or PostgreSQL in a handful of round trips
/// (one lookup and one batch per 16 MiB segment), not one per node.
fn put_64_mib_takes_few_round_trips<H: Harness>() -> TestResult {
    let h = H::start()?;
    let opened = h.open()?;
    let store = store_on(&opened)?;
    let content = noise(64, 64 << 20);
    let before = opened.round_trips();
    let start = Instant::now();
    let r = store.put(&content)?;
    let put_secs = start.elapsed().as_secs_f64();
    let round_trips = opened.round_trips() - before;
    let nodes = store.usage()?.entries;
    let start = Instant::now();
    let back = store.get(&r)?;
    let get_secs = start.elapsed().as_secs_f64();
    assert!(back == content, "64 MiB content read back differently");
    let (mem_put, mem_get) = memory_baseline(&content)?;
    eprintln!(
        "{}: 64 MiB put = {nodes} nodes in {round_trips} round trips; \
         put {:.0} MiB/s, get {:.0} MiB/s; memory backend {:.0} / {:.0} MiB/s (test build)",
        opened.backend.name(),
        64.0 / put_secs,
        64.0 / get_secs,
        64.0 / mem_put,
        64.0 / mem_get
    );
    assert!(nodes > 10_000, "{nodes} nodes");
    // 16 segments of 4 MiB × (1 count lookup + 1 batch), with room for
    // chunking differences; never anywhere near the node count.
    assert!(
        round_trips <= 40,
        "{round_trips} round trips for {nodes} nodes"
    );
    store.delete(&r)?;
    assert_eq!(store.usage()?.entries, 0);
    Ok(())
}

#[test]
fn redis_put_64_mib_takes_few_round_trips() -> TestResult {
    put_64_mib_takes_few_round_trips::<Redis>()
}

#[test]
fn postgres_put_64_mib_takes_few_round_trips() -> TestResult {
    put_64_mib_takes_few_round_trips::<Postgres>()
}

/// Puts and gets the same 64 MiB on the memory backend, for the ratio.
fn memory_baseline(content: &[u8]) -> TestResult<(f64, f64)> {
    let opened = crate::harness::Memory::start()?.open()?;
    let store = store_on(&opened)?;
    let start = Instant::now();
    let r = store.put(content)?;
    let put = start.elapsed().as_secs_f64();
    let start = Instant::now();
    store.get(&r)?;
    Ok((put, start.elapsed().as_secs_f64()))
}

/// S3 has no batch write: a put issues one request per node, many at once.
#[test]
fn s3_put_keeps_many_requests_in_flight() -> TestResult {
    let server = crate::support::S3Server::start()?;
    let config = seccs_backends::S3Config::parse(&server.url("bench"))?;
    let backend = std::sync::Arc::new(seccs_backends::S3Backend::connect(
        config,
        Some(crate::harness::s3_credentials(
            crate::support::S3_SECRET_KEY,
        )),
    )?);
    let store = Store::new_unchecked(
        backend.clone(),
        Params::new(4096, WrapperKind::AesSiv)?,
        &SecretKey::from_bytes([9; 32]),
    );
    let content = noise(8, 8 << 20);
    let before = backend.round_trips();
    let start = Instant::now();
    let r = store.put(&content)?;
    let put_secs = start.elapsed().as_secs_f64();
    let requests = backend.round_trips() - before;
    let start = Instant::now();
    assert!(store.get(&r)? == content);
    let get_secs = start.elapsed().as_secs_f64();
    let nodes = store.usage()?.entries;
    eprintln!(
        "s3: 8 MiB put = {nodes} nodes in {requests} requests, at most {} in flight; \
         put {:.1} MiB/s, get {:.1} MiB/s (in-process s3s-fs, test build)",
        backend.max_in_flight(),
        8.0 / put_secs,
        8.0 / get_secs
    );
    // A count lookup and a write per new node, plus a second lookup of a
    // node whose parent closes in a later segment: nothing per byte.
    assert!(
        requests <= 3 * nodes + 16,
        "{requests} requests for {nodes} nodes"
    );
    assert!(
        backend.max_in_flight() >= 8,
        "{} in flight",
        backend.max_in_flight()
    );
    Ok(())
}

/// A walk of an S3 store reads and visits the entries as its listing goes,
/// a window at a time, rather than listing every object first: what it
/// holds is bounded by the window (`concurrency` × 4 objects) and a page of
/// the listing, not by the store. Here 2,100 entries take three pages of
/// 1,000 names: the first entries are read and visited before the second
/// page is asked for, and no visit comes after more than a window of reads
/// beyond it. The visitor reads from the backend too, as the store's
/// visitors may.
#[test]
fn s3_a_walk_reads_and_visits_as_the_listing_goes() -> TestResult {
    let server = crate::support::S3Server::start()?;
    let concurrency = 64;
    let window = concurrency * 4;
    let backend = seccs_backends::S3Backend::connect(
        seccs_backends::S3Config::parse(&format!(
            "{}&concurrency={concurrency}",
            server.url("walk")
        ))?,
        Some(crate::harness::s3_credentials(
            crate::support::S3_SECRET_KEY,
        )),
    )?;
    let n = 2_100;
    let mut batch = Batch::new();
    for i in 0..n {
        batch.put(format!("k{i:05}").into_bytes(), noise(i as u64, 16), 1);
    }
    backend.apply(&batch)?;
    let _ = server.take_requests();
    let mut visits = Vec::new();
    backend.walk(
        &[],
        &mut |key, entry| {
            visits.push(Instant::now());
            if visits.len() == 1 {
                assert_eq!(backend.get(key)?.as_ref(), Some(entry));
            }
            Ok(())
        },
        None,
    )?;
    let requests = server.take_requests();
    let pages: Vec<Instant> = requests
        .iter()
        .filter(|r| r.is_listing())
        .map(|r| r.started)
        .collect();
    let mut reads: Vec<Instant> = requests
        .iter()
        .filter(|r| r.method == "GET" && !r.object.is_empty())
        .map(|r| r.started)
        .collect();
    reads.sort();
    assert_eq!(visits.len(), n);
    assert_eq!(pages.len(), 3, "pages listed");
    assert_eq!(
        reads.len(),
        n + 1,
        "objects read: each entry and one look-up"
    );
    let read_before = |at: Instant| reads.partition_point(|&r| r < at);
    let visited_before = |at: Instant| visits.partition_point(|&v| v < at);
    assert!(
        read_before(pages[1]) > 0 && visited_before(pages[1]) > 0,
        "{} objects read and {} visited before the second page was asked for",
        read_before(pages[1]),
        visited_before(pages[1])
    );
    for (i, &visit) in visits.iter().enumerate() {
        // Reads of the window visit `i` is in and of those before it, and
        // the visitor's own look-up.
        let allowed = (i / window + 1) * window + 1;
        assert!(
            read_before(visit) <= allowed,
            "{} objects read before visit {i}, more than {allowed}",
            read_before(visit)
        );
    }
    Ok(())
}

/// Kills a transactional server while a large batch is in flight, at a few
/// moments; after a restart the batch is entirely there or entirely absent.
fn killed_batch_is_all_or_nothing<H: Harness>() -> TestResult {
    let mut h = H::start_persistent()?;
    let n = 20_000;
    for (round, delay_ms) in [5u64, 30, 120].into_iter().enumerate() {
        let opened = h.open()?;
        let mut batch = Batch::new();
        for i in 0..n {
            let mut key = vec![round as u8];
            key.extend_from_slice(&(i as u32).to_be_bytes());
            batch.put(key, noise(i as u64, 600), 1);
        }
        let outcome = std::thread::scope(|s| -> TestResult<bool> {
            let writer = s.spawn(|| opened.backend.apply(&batch));
            std::thread::sleep(Duration::from_millis(delay_ms));
            h.kill()?;
            Ok(writer.join().map_err(|_| "writer panicked")?.is_ok())
        })?;
        h.restart()?;
        let after = h.open()?;
        let mut per_round = [0usize; 3];
        after.backend.for_each(&mut |k, _| {
            per_round[usize::from(k[0])] += 1;
            Ok(())
        })?;
        let count = per_round[round];
        assert!(
            count == 0 || count == n,
            "{}: round {round} (kill after {delay_ms} ms) left {count} of {n} entries",
            after.backend.name()
        );
        if outcome {
            assert_eq!(count, n, "an acknowledged batch was lost");
        }
        // Earlier rounds that were applied are still whole.
        assert!(per_round[..round].iter().all(|&c| c == 0 || c == n));
    }
    Ok(())
}

#[test]
fn redis_killed_mid_batch_applies_all_or_nothing() -> TestResult {
    killed_batch_is_all_or_nothing::<Redis>()
}

#[test]
fn postgres_killed_mid_batch_applies_all_or_nothing() -> TestResult {
    killed_batch_is_all_or_nothing::<Postgres>()
}

/// Kills the server in the middle of a multi-batch put; after a restart,
/// every earlier content reads back, the store recovers (nodes of the
/// interrupted put left without a parent are removed), `verify` is clean
/// (after `gc` where there are no transactions), and the store keeps
/// working. On transactional backends, deleting the earlier contents then
/// leaves zero entries: counts stayed exact.
fn killed_put_keeps_earlier_contents<H: Harness>() -> TestResult {
    let mut h = H::start_persistent()?;
    let earlier: Vec<Vec<u8>> = (0..3).map(|i| noise(100 + i, 700_000)).collect();
    let refs = {
        let opened = h.open()?;
        let store = store_on(&opened)?;
        earlier
            .iter()
            .map(|c| store.put(c))
            .collect::<Result<Vec<_>, _>>()?
    };
    let big = noise(7, 40 << 20);
    let opened = h.open()?;
    let store = store_on(&opened)?;
    let finished = std::thread::scope(|s| -> TestResult<Option<_>> {
        let writer = s.spawn(|| store.put(&big));
        // Well before a 40 MiB put can finish, so the kill lands mid-put.
        std::thread::sleep(Duration::from_millis(300));
        h.kill()?;
        Ok(writer.join().map_err(|_| "writer panicked")?.ok())
    })?;
    let interrupted = finished.is_none();
    h.restart()?;
    let opened = h.open()?;
    eprintln!(
        "{}: server killed {} the 40 MiB put",
        opened.backend.name(),
        if interrupted { "during" } else { "after" }
    );
    let store = store_on(&opened)?;
    store.recover()?;
    // `verify` is clean; a backend without transactions may need `gc` first
    // (orphans of the interrupted put), and is clean after it.
    let report = store.verify()?;
    if !report.is_clean() {
        assert!(
            !opened.backend.is_transactional(),
            "{}: verify after recovery found {:?}",
            opened.backend.name(),
            report.findings
        );
        let gc = store.gc()?;
        eprintln!(
            "{}: gc removed {} entries",
            opened.backend.name(),
            gc.removed
        );
        let after = store.verify()?;
        assert!(
            after.is_clean(),
            "{}: verify after gc found {:?}",
            opened.backend.name(),
            after.findings
        );
    }
    for (r, c) in refs.iter().zip(&earlier) {
        assert!(store.get(r)? == *c, "an earlier content changed");
    }
    // Still usable: a new content round-trips.
    let fresh = noise(55, 300_000);
    let r = store.put(&fresh)?;
    assert!(store.get(&r)? == fresh);
    store.delete(&r)?;
    if opened.backend.is_transactional() {
        // A put that finished before the kill stored its content: undo it.
        for r in refs.iter().chain(finished.iter()) {
            store.delete(r)?;
        }
        // A kill that lands after the put's last batch was applied, but
        // before its answer arrived, leaves the content whole though the
        // put failed: whole or absent are both right. A whole one is put
        // once more (which tells its reference) and deleted twice; a
        // partial one would leave entries behind.
        if interrupted && store.usage()?.entries != 0 {
            let r = store.put(&big)?;
            store.delete(&r)?;
            store.delete(&r)?;
            eprintln!(
                "{}: the interrupted put had stored its content whole",
                opened.backend.name()
            );
        }
        let left = store.usage()?.entries;
        assert_eq!(
            left,
            0,
            "{}: {left} entries left (put interrupted: {interrupted})",
            opened.backend.name()
        );
    }
    Ok(())
}

#[test]
fn redis_killed_mid_put_keeps_earlier_contents() -> TestResult {
    killed_put_keeps_earlier_contents::<Redis>()
}

#[test]
fn postgres_killed_mid_put_keeps_earlier_contents() -> TestResult {
    killed_put_keeps_earlier_contents::<Postgres>()
}

#[test]
fn s3_killed_mid_put_keeps_earlier_contents() -> TestResult {
    killed_put_keeps_earlier_contents::<S3>()
}

/// `open`/`create` pick the backend by URL; PostgreSQL's `open` of a store
/// whose table was never created says so instead of creating it.
/// Sends `signal` to process `pid` with kill(1).
fn signal(pid: i32, signal: &str) -> TestResult {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()?;
    if !status.success() {
        return Err(format!("kill {signal} {pid}: {status}").into());
    }
    Ok(())
}

/// Lets a paused server process go on, also when the test fails first.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = signal(self.0, "-CONT");
    }
}

/// A server that takes the connection and never answers is given up on
/// after `connect_timeout` when a table is made (as `seccs init` does), as
/// when a store is opened.
#[test]
fn postgres_making_a_table_gives_up_after_the_connect_timeout() -> TestResult {
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port();
    let config = PostgresConfig::parse(&format!(
        "postgres://seccs@127.0.0.1:{port}/seccs?table=t&connect_timeout=1&sslmode=disable"
    ))?;
    let err = PostgresBackend::create_table(&config).err();
    assert!(
        matches!(&err, Some(BackendError::Unavailable { detail, .. })
            if detail.contains("no answer in 1 s of connecting")),
        "{err:?}"
    );
    drop(silent);
    Ok(())
}

/// A server whose kernel still answers TCP but which answers no request
/// (paused, overloaded) fails the request after the request timeout instead
/// of hanging the command; the backend then reads over a new session, but
/// writes no more: the writer lock went with the session it gave up on.
#[test]
fn postgres_a_server_that_stops_answering_fails_the_request_in_time() -> TestResult {
    let server = PostgresServer::start()?;
    let config = PostgresConfig::parse(&server.url("paused_nodes"))?
        .with_request_timeout(Duration::from_secs(2));
    PostgresBackend::create_table(&config)?;
    let backend = PostgresBackend::connect_exclusive(config)?;
    let mut batch = Batch::new();
    batch.put(b"k".to_vec(), b"v".to_vec(), 1);
    backend.apply(&batch)?;

    // The server process of the backend's session, named after this process.
    let mut admin = server.client()?;
    let pid: i32 = admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1",
            &[&format!("seccs pid {} on %", std::process::id())],
        )?
        .get(0);
    signal(pid, "-STOP")?;
    let resume = Resume(pid);

    let started = Instant::now();
    let err = backend.get(b"k").err();
    assert!(
        matches!(&err, Some(BackendError::Unavailable { detail, .. })
            if detail.contains("no answer in 2 s") && detail.contains("stopped answering")),
        "{err:?}"
    );
    // Not a timing assertion: only that the request gave up rather than wait
    // for a server that never answers.
    assert!(started.elapsed() < Duration::from_secs(60));

    // Once the server goes on, the paused session sees its socket closed and
    // ends, freeing the lock; the backend reads on a new session, which
    // takes no lock, and refuses to write.
    drop(resume);
    let value = backend.get(b"k")?.map(|e| e.value);
    assert_eq!(value.as_deref(), Some(&b"v"[..]));
    assert!(
        matches!(backend.apply(&batch), Err(BackendError::Locked { .. })),
        "a write after the session was given up"
    );
    Ok(())
}

/// `rediss://` to a Redis that speaks no TLS: the server takes the TLS
/// hello for the start of a command and never answers, so the connect
/// times out, and the error says what is most likely wrong.
#[test]
fn rediss_against_a_server_without_tls_says_so() -> TestResult {
    use seccs_backends::{RedisBackend, RedisConfig};
    let server = crate::support::RedisServer::start()?;
    let url = server.url().replacen("redis://", "rediss://", 1);
    assert!(url.starts_with("rediss://"), "{url}");
    let config =
        RedisConfig::parse(&url)?.with_credentials(None, Some(crate::support::REDIS_PASSWORD));
    let err = RedisBackend::connect(config).err();
    assert!(
        matches!(&err, Some(BackendError::Unavailable { detail, .. })
            if detail.contains("does the server speak TLS?")),
        "{err:?}"
    );
    Ok(())
}

/// A paused Redis fails a request after the request timeout, whatever the
/// request's size: each request is one command with one reply (a pipeline
/// of N commands would wait N timeouts, one per reply).
#[test]
fn redis_a_server_that_stops_answering_fails_the_request_in_time() -> TestResult {
    use seccs_backends::{RedisBackend, RedisConfig};
    let server = crate::support::RedisServer::start()?;
    let config = RedisConfig::parse(&server.url())?
        .with_credentials(None, Some(crate::support::REDIS_PASSWORD))
        .with_request_timeout(Duration::from_secs(1));
    let backend = RedisBackend::connect(config)?;
    let keys: Vec<Vec<u8>> = (0u32..2000).map(|i| i.to_be_bytes().to_vec()).collect();
    let mut batch = Batch::new();
    for key in &keys {
        batch.put(key.clone(), b"v".to_vec(), 1);
    }
    backend.apply(&batch)?;
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    assert_eq!(backend.get_counts(&refs)?, vec![Some(1); keys.len()]);

    let pid = i32::try_from(server.pid().ok_or("the server runs")?)?;
    signal(pid, "-STOP")?;
    let resume = Resume(pid);
    let started = Instant::now();
    let counts = backend.get_counts(&refs).err();
    let write = backend.apply(&batch).err();
    // Not a timing assertion: 2,000 replies waited for one at a time would
    // take over half an hour; one reply takes the timeout.
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        matches!(&counts, Some(BackendError::Unavailable { detail, .. })
            if detail.contains("no answer in 1 s")),
        "{counts:?}"
    );
    // The write connects again first, and the server does not answer that.
    assert!(
        matches!(&write, Some(BackendError::Unavailable { detail, .. })
            if detail.contains("stopped answering")),
        "{write:?}"
    );
    drop(resume);
    assert_eq!(backend.get_counts(&refs)?, vec![Some(1); keys.len()]);
    Ok(())
}

/// A TCP relay to a server that passes requests on until it has passed a
/// `SCAN`, and swallows every request after it: a server that stops
/// answering in the middle of a walk.
struct StallAfterScan {
    port: u16,
}

impl StallAfterScan {
    fn start(server_port: u16) -> TestResult<Self> {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stalled = Arc::new(AtomicBool::new(false));
        std::thread::spawn(move || {
            for _ in 0..16 {
                let Ok((client, _)) = listener.accept() else {
                    return;
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    return;
                };
                let (Ok(mut client_in), Ok(mut server_out)) =
                    (client.try_clone(), server.try_clone())
                else {
                    return;
                };
                let stalled = stalled.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0; 1 << 16];
                    for _ in 0..1_000_000 {
                        let n = match client_in.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if stalled.load(Ordering::SeqCst) {
                            continue;
                        }
                        if server_out.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        if buf[..n].windows(4).any(|w| w == b"SCAN") {
                            stalled.store(true, Ordering::SeqCst);
                        }
                    }
                });
                let (mut server_in, mut client_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_in, &mut client_out);
                });
            }
        });
        Ok(Self { port })
    }
}

/// A Redis that stops answering after the `SCAN` of the backend's usage
/// fails the usage after a request timeout, not one timeout for each key
/// of the page: the page's lengths are one command with one reply.
#[test]
fn redis_usage_of_a_server_that_stops_answering_after_the_scan_fails_in_time() -> TestResult {
    use seccs_backends::{RedisBackend, RedisConfig};
    let server = crate::support::RedisServer::start()?;
    let direct = RedisBackend::connect(
        RedisConfig::parse(&server.url())?
            .with_credentials(None, Some(crate::support::REDIS_PASSWORD)),
    )?;
    let mut batch = Batch::new();
    for i in 0u32..300 {
        batch.put(i.to_be_bytes().to_vec(), b"v".to_vec(), 1);
    }
    direct.apply(&batch)?;
    assert_eq!(direct.usage()?.entries, 300);

    let server_port: u16 = server
        .url()
        .rsplit(':')
        .next()
        .and_then(|tail| tail.split('/').next())
        .ok_or("a port")?
        .parse()?;
    let relay = StallAfterScan::start(server_port)?;
    let config = RedisConfig::parse(&format!("redis://127.0.0.1:{}/0", relay.port))?
        .with_credentials(None, Some(crate::support::REDIS_PASSWORD))
        .with_request_timeout(Duration::from_secs(1));
    let backend = RedisBackend::connect(config)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(backend.usage().err());
    });
    // Not a timing assertion: 300 replies waited for one at a time would
    // take five minutes; one reply takes the timeout.
    let err = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| "usage still waits after 60 timeouts")?;
    assert!(
        matches!(&err, Some(BackendError::Unavailable { detail, .. })
            if detail.contains("no answer in 1 s")),
        "{err:?}"
    );
    Ok(())
}

/// An empty value at an entry's key (no count) is a damaged entry to a
/// read of counts, as to every other read, not a missing one: a commit
/// would take the node for new and lose its count.
#[test]
fn redis_an_empty_value_is_a_damaged_entry_to_a_read_of_counts() -> TestResult {
    let h = Redis::start()?;
    let opened = h.open()?;
    let mut batch = Batch::new();
    batch.put(b"k".to_vec(), b"v".to_vec(), 3);
    opened.backend.apply(&batch)?;
    h.set_raw(b"k", b"")?;
    let counts = opened.backend.get_counts(&[b"k", b"gone"]);
    assert!(
        matches!(&counts, Err(BackendError::Corrupt { .. })),
        "{counts:?}"
    );
    assert_eq!(opened.backend.get_counts(&[b"gone"])?, [None]);
    assert_eq!(opened.backend.usage()?.entries, 1, "usage counts it");
    Ok(())
}

/// A batch that sets the count of a key holding another type than a
/// string (not written by any store) writes nothing, not its puts without
/// its deletes: Redis keeps a script's writes made before an error.
#[test]
fn redis_a_batch_that_meets_a_key_of_another_type_writes_nothing() -> TestResult {
    let h = Redis::start()?;
    let opened = h.open()?;
    let mut batch = Batch::new();
    batch.put(b"gone".to_vec(), b"v".to_vec(), 1);
    opened.backend.apply(&batch)?;
    h.set_hash(b"k")?;
    let mut batch = Batch::new();
    batch.put(b"a".to_vec(), b"v".to_vec(), 1);
    batch.set_count(b"k".to_vec(), 2);
    batch.delete(b"gone".to_vec());
    let applied = opened.backend.apply(&batch);
    assert!(
        matches!(&applied, Err(BackendError::Corrupt { .. })),
        "{applied:?}"
    );
    assert_eq!(opened.backend.get_counts(&[b"a"])?, [None], "no put");
    assert_eq!(
        opened.backend.get_counts(&[b"gone"])?,
        [Some(1)],
        "no delete"
    );
    Ok(())
}

/// A server that asks for a password none was given for says which
/// variable to set; a table dropped under a store says its data went with
/// it; `connect_timeout` bounds the whole log-in, as in libpq.
#[test]
fn postgres_log_in_problems_are_said_plainly() -> TestResult {
    let server = PostgresServer::start()?;
    let url = server.auth_url("unused", "login_nodes");
    let without_password = url.replacen(":unused@", "@", 1);
    let err = PostgresBackend::connect(PostgresConfig::parse(&without_password)?).err();
    assert!(
        matches!(&err, Some(BackendError::Auth { detail, .. }) if detail.contains("PGPASSWORD")),
        "{err:?}"
    );
    let err = PostgresBackend::connect(PostgresConfig::parse(&server.url("never_made"))?).err();
    assert!(
        matches!(&err, Some(BackendError::Config(m)) if m.contains("was dropped")),
        "{err:?}"
    );

    // A listener that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port();
    let started = Instant::now();
    let err = PostgresBackend::connect(PostgresConfig::parse(&format!(
        "postgres://u@127.0.0.1:{port}/db?sslmode=disable&connect_timeout=1"
    ))?)
    .err();
    assert!(
        matches!(&err, Some(BackendError::Unavailable { detail, .. })
            if detail.contains("no answer in 1 s of connecting")),
        "{err:?}"
    );
    // Not a timing assertion: only that it did not wait the request timeout.
    assert!(started.elapsed() < Duration::from_secs(30));
    Ok(())
}

/// A CA, and a certificate for 127.0.0.1 it signed: (CA, chain, key) PEM.
fn test_ca_and_server() -> TestResult<(String, String, String)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "seccs test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "seccs test server");
    let leaf_cert = leaf.signed_by(&leaf_key, &ca)?;
    Ok((
        ca.pem(),
        format!("{}{}", leaf_cert.pem(), ca.pem()),
        leaf_key.serialize_pem(),
    ))
}

/// TLS to PostgreSQL verifies the server's certificate: with the CA that
/// signed it (`sslrootcert`) the session is encrypted; without it, even
/// `prefer` refuses (it never falls back to plaintext past a certificate it
/// cannot check) and says how to trust a private CA.
#[test]
fn postgres_tls_verifies_the_server_and_says_how_to_trust_a_private_ca() -> TestResult {
    let mut server = PostgresServer::start()?;
    let (ca_pem, chain_pem, key_pem) = test_ca_and_server()?;
    server.enable_tls(&chain_pem, &key_pem)?;
    let tmp = tempfile::tempdir()?;
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, ca_pem)?;
    let plain = server.url("tls_nodes");
    let with_ca = plain.replace(
        "sslmode=disable",
        &format!("sslmode=require&sslrootcert={}", ca.display()),
    );
    let config = PostgresConfig::parse(&with_ca)?;
    PostgresBackend::create_table(&config)?;
    let backend = PostgresBackend::connect(config)?;
    let mut batch = Batch::new();
    batch.put(b"k".to_vec(), b"v".to_vec(), 1);
    backend.apply(&batch)?;
    let encrypted: bool = server
        .client()?
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name LIKE $1",
            &[&format!("seccs pid {} on %", std::process::id())],
        )?
        .get(0);
    assert!(encrypted, "the backend's session is TLS");

    let prefer = plain.replace("sslmode=disable", "sslmode=prefer");
    let err = PostgresBackend::connect(PostgresConfig::parse(&prefer)?).err();
    assert!(
        matches!(&err, Some(BackendError::Unavailable { detail, .. })
            if detail.contains("sslrootcert=FILE")),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn open_and_create_by_url() -> TestResult {
    let redis = crate::support::RedisServer::start()?;
    let url = format!(
        "redis://:{}@{}?prefix=urltest:",
        crate::support::REDIS_PASSWORD,
        redis.url().trim_start_matches("redis://")
    );
    let backend = seccs_backends::create(&url)?;
    assert_eq!(backend.name(), "redis");
    let mut batch = Batch::new();
    batch.put(b"k".to_vec(), b"v".to_vec(), 3);
    backend.apply(&batch)?;
    assert_eq!(
        seccs_backends::open(&url)?.get(b"k")?.map(|e| e.count),
        Some(3)
    );
    let refused = seccs_backends::open(&redis.url()).err();
    assert!(
        matches!(
            refused,
            Some(seccs_store::backend::BackendError::Auth { .. })
        ),
        "{refused:?}"
    );

    let pg = crate::support::PostgresServer::start()?;
    let missing = seccs_backends::open(&pg.url("never_created")).err();
    assert!(
        missing
            .as_ref()
            .is_some_and(|e| e.to_string().contains("create the store first")),
        "{missing:?}"
    );
    let backend = seccs_backends::create(&pg.url("created"))?;
    assert_eq!(backend.name(), "postgres");
    backend.apply(&batch)?;
    assert_eq!(
        seccs_backends::open(&pg.url("created"))?
            .get(b"k")?
            .map(|e| e.count),
        Some(3)
    );
    Ok(())
}

/// One entry damaged on the server (too short to hold its count) is a
/// finding of `verify` that names what it breaks, not the end of the check;
/// `gc` goes on past it and leaves what names reach.
#[test]
fn redis_verify_reports_a_damaged_entry_and_checks_the_rest() -> TestResult {
    let h = Redis::start()?;
    verify_reports_a_damaged_entry_and_checks_the_rest(&h, |key| h.damage(key))
}

/// A catalog record damaged on the server (too short to hold its count)
/// counts as one damaged record: the other names are still listed.
#[test]
fn redis_a_damaged_record_does_not_hide_the_other_names() -> TestResult {
    let h = Redis::start()?;
    a_damaged_record_does_not_hide_the_other_names(&h, |key| h.damage(key))
}

/// A catalog record damaged on the server (too short to hold its count)
/// is removed by gc of a store whose key was checked at open, and reported
/// as removed: it took a manual `DEL`. The contents of the name it held
/// keep their counts, as puts without a name.
#[test]
fn redis_gc_removes_a_record_the_backend_cannot_decode() -> TestResult {
    use seccs_store::catalog::EntryKind;
    let h = Redis::start()?;
    let opened = h.open()?;
    let params = Params::new(4096, WrapperKind::AesSiv)?;
    let key = SecretKey::from_bytes([9; 32]);
    let store = Store::open(opened.backend.clone(), params, &key)?;
    let mut puts = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let content = noise(60 + i as u64, 20_000);
        let (put, _) = store.put_named(&mut content.as_slice(), name, EntryKind::File)?;
        puts.push((put.content_ref, content));
    }
    let record = entry_keys(&opened)?
        .into_iter()
        .find(|k| seccs_store::catalog::is_catalog_key(k))
        .ok_or("a record")?;
    h.damage(&record)?;
    let hex = seccs_core::hexenc::encode(&record);
    let gc = store.gc()?;
    assert_eq!(gc.unreadable_records_removed, [hex], "{gc:?}");
    assert!(gc.is_clean(), "{gc:?}");
    assert!(!entry_keys_past_damage(&opened)?.contains(&record));
    let listing = store.list_readable("")?;
    assert_eq!((listing.records.len(), listing.damaged), (2, 0));
    assert!(store.verify()?.is_clean());
    for (r, content) in &puts {
        assert_eq!(&store.get(r)?, content);
    }
    Ok(())
}

/// An entry too short for its count on the server (a node of one name)
/// blocks neither the removal of the names beside it in one batch nor the
/// backend's usage: a read of many counts that meets it is read again key
/// by key, the damaged node is left as it is (it was the end of the whole
/// group's removal), and the usage counts it by its key (it was the end of
/// every total).
#[test]
fn redis_a_short_entry_blocks_no_removal_of_other_names_and_no_usage() -> TestResult {
    let h = Redis::start()?;
    a_short_entry_blocks_no_removal_of_other_names_and_no_usage(&h, |key| h.damage(key))
}

fn a_short_entry_blocks_no_removal_of_other_names_and_no_usage<H: Harness>(
    h: &H,
    damage: impl Fn(&[u8]) -> TestResult,
) -> TestResult {
    use seccs_store::Finding;
    use seccs_store::catalog::EntryKind;
    let opened = h.open()?;
    let store = store_on(&opened)?;
    let (mut before_b, mut b_keys) = (Vec::new(), Vec::new());
    let mut put_b = None;
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        if name == "b" {
            before_b = entry_keys(&opened)?;
        }
        let (put, _) = store.put_named(
            &mut noise(21 + 2 * i as u64, 100_000).as_slice(),
            name,
            EntryKind::File,
        )?;
        if name == "b" {
            put_b = Some(put);
            b_keys = entry_keys(&opened)?;
        }
    }
    let put_b = put_b.ok_or("b was put")?;
    let entries = entry_keys(&opened)?.len() as u64;
    let victim = entry_keys(&opened)?
        .into_iter()
        .find(|k| {
            !before_b.contains(k)
                && b_keys.contains(k)
                && k.as_slice() != put_b.content_ref.digest()
                && !seccs_store::catalog::is_catalog_key(k)
        })
        .ok_or("a node of b only")?;
    damage(&victim)?;
    assert_eq!(store.usage()?.entries, entries, "the damaged entry counts");
    let names = ["a", "b", "c"].map(String::from);
    assert_eq!(store.remove_names(&names)?, (3, 3));
    let report = store.verify()?;
    assert_eq!(report.names, 0, "{report:?}");
    assert!(
        report.findings.iter().any(|f| matches!(
            f,
            Finding::Unreadable { key, .. } if *key == seccs_core::hexenc::encode(&victim)
        )),
        "the damaged node is left, and reported: {report:?}"
    );
    // Only b's nodes can be left (the damaged one, and what it listed):
    // a's and c's went whole.
    let left = entry_keys_past_damage(&opened)?;
    assert!(left.contains(&victim), "the damaged entry stays");
    assert!(
        left.iter()
            .all(|k| !before_b.contains(k) && b_keys.contains(k)),
        "{} entries left",
        left.len()
    );
    Ok(())
}

/// The same with an S3 object cut shorter than its count: the ranged read
/// of its count meets too little data, which is damage, not a failed
/// request.
#[test]
fn s3_a_short_entry_blocks_no_removal_of_other_names_and_no_usage() -> TestResult {
    let h = S3Objects::start()?;
    a_short_entry_blocks_no_removal_of_other_names_and_no_usage(&h, |key| h.damage(key))
}

/// A PostgreSQL row whose value and count are NULL (a table altered by
/// hand) is a damaged entry to every read, not a panic: a walk reports it
/// and goes on, and reads of it fail as corrupt.
#[test]
fn postgres_a_null_row_is_a_damaged_entry() -> TestResult {
    let h = Postgres::start()?;
    let opened = h.open()?;
    let mut batch = Batch::new();
    for key in [&b"a"[..], b"b", b"c"] {
        batch.put(key.to_vec(), b"v".to_vec(), 1);
    }
    opened.backend.apply(&batch)?;
    h.null_row(b"b")?;
    let (mut keys, mut damaged) = (Vec::new(), Vec::new());
    opened.backend.walk(
        &[],
        &mut |key, _| {
            keys.push(key.to_vec());
            Ok(())
        },
        Some(&mut |key, e| damaged.push((key.to_vec(), e))),
    )?;
    assert_eq!(keys, [b"a".to_vec(), b"c".to_vec()]);
    assert!(
        matches!(&damaged[..], [(key, BackendError::Corrupt { .. })] if key == b"b"),
        "{damaged:?}"
    );
    let got = opened.backend.get_many(&[b"b"]).err();
    assert!(matches!(got, Some(BackendError::Corrupt { .. })), "{got:?}");
    let counts = opened.backend.get_counts(&[b"b"]).err();
    assert!(
        matches!(counts, Some(BackendError::Corrupt { .. })),
        "{counts:?}"
    );
    Ok(())
}

/// Every key the backend holds, damaged ones too.
fn entry_keys_past_damage(opened: &Opened) -> TestResult<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut damaged = Vec::new();
    opened.backend.walk(
        &[],
        &mut |key, _| {
            keys.push(key.to_vec());
            Ok(())
        },
        Some(&mut |key, _| damaged.push(key.to_vec())),
    )?;
    keys.extend(damaged);
    Ok(keys)
}

/// The same with a PostgreSQL row whose count is negative.
#[test]
fn postgres_verify_reports_a_damaged_entry_and_checks_the_rest() -> TestResult {
    let h = Postgres::start()?;
    verify_reports_a_damaged_entry_and_checks_the_rest(&h, |key| h.damage(key))
}

fn verify_reports_a_damaged_entry_and_checks_the_rest<H: Harness>(
    h: &H,
    damage: impl Fn(&[u8]) -> TestResult,
) -> TestResult {
    use seccs_store::Finding;
    use seccs_store::catalog::EntryKind;
    let opened = h.open()?;
    let store = store_on(&opened)?;
    let (a, b) = (noise(1, 100_000), noise(2, 100_000));
    let (put_a, _) = store.put_named(&mut a.as_slice(), "a", EntryKind::File)?;
    let before_b = entry_keys(&opened)?;
    let (put_b, _) = store.put_named(&mut b.as_slice(), "b", EntryKind::File)?;
    let victim = entry_keys(&opened)?
        .into_iter()
        .find(|k| {
            !before_b.contains(k)
                && k.as_slice() != put_b.content_ref.digest()
                && !seccs_store::catalog::is_catalog_key(k)
        })
        .ok_or("a node of b only")?;
    damage(&victim)?;
    let report = store.verify()?;
    assert_eq!(report.names, 2, "every record was checked: {report:?}");
    assert!(
        report.findings.iter().any(|f| matches!(
            f,
            Finding::Unreadable { key, .. } if *key == seccs_core::hexenc::encode(&victim)
        )),
        "{report:?}"
    );
    assert_eq!(report.broken_names, ["b"]);
    let stats = store.stats()?;
    assert_eq!(stats.damaged.entries, 1, "{stats:?}");
    assert_eq!(
        stats.usage.entries,
        stats.damaged.entries + report.nodes + 2
    );
    let gc = store.gc()?;
    assert!(
        gc.remaining
            .iter()
            .any(|f| matches!(f, Finding::Unreadable { .. })),
        "gc leaves the damaged entry and says so: {gc:?}"
    );
    assert_eq!(gc.broken_names, ["b"]);
    assert_eq!(store.get(&put_a.content_ref)?, a);
    Ok(())
}

/// A server emptied while a large put runs (between its batches) stops
/// the put with "the store's marker is gone", not with an integrity error
/// about a node the put wrote itself.
#[test]
fn a_put_into_a_server_emptied_meanwhile_says_the_store_was_lost() -> TestResult {
    use seccs_store::catalog::EntryKind;
    /// Reads `data`, emptying the server once half of it was read.
    struct EmptiedHalfWay<'a> {
        data: &'a [u8],
        read: usize,
        emptied: bool,
        redis: &'a Redis,
    }
    impl std::io::Read for EmptiedHalfWay<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if !self.emptied && self.read >= self.data.len() / 2 {
                self.redis.flush_all().map_err(std::io::Error::other)?;
                self.emptied = true;
            }
            let n = buf.len().min(self.data.len() - self.read);
            buf[..n].copy_from_slice(&self.data[self.read..self.read + n]);
            self.read += n;
            Ok(n)
        }
    }
    let h = Redis::start()?;
    let opened = h.open()?;
    opened.backend.write_marker(b"ours")?;
    let store = store_on(&opened)?;
    let data = noise(7, 40 << 20);
    let mut reader = EmptiedHalfWay {
        data: &data,
        read: 0,
        emptied: false,
        redis: &h,
    };
    let err = store.put_named(&mut reader, "big", EntryKind::File).err();
    assert!(reader.emptied, "the server was emptied during the put");
    let said = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(said.contains("the store's marker is gone"), "{said}");
    Ok(())
}

/// Every key the backend holds.
fn entry_keys(opened: &Opened) -> TestResult<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    opened.backend.for_each(&mut |key, _| {
        keys.push(key.to_vec());
        Ok(())
    })?;
    Ok(keys)
}

/// S3 on a server of the test's own, so that the test can reach the objects
/// behind the backend and damage one.
struct S3Objects(crate::support::S3Server);

impl S3Objects {
    const PREFIX: &str = "damaged";

    /// Cuts the object of `key` shorter than its count.
    fn damage(&self, key: &[u8]) -> TestResult {
        self.0.damage(Self::PREFIX, key)
    }
}

impl Harness for S3Objects {
    const NETWORK: bool = true;

    fn start() -> TestResult<Self> {
        Ok(Self(crate::support::S3Server::start()?))
    }

    fn open(&self) -> TestResult<Opened> {
        let config = seccs_backends::S3Config::parse(&self.0.url(Self::PREFIX))?;
        let backend = seccs_backends::S3Backend::connect(
            config,
            Some(crate::harness::s3_credentials(
                crate::support::S3_SECRET_KEY,
            )),
        )?;
        Ok(Opened {
            backend: std::sync::Arc::new(backend),
            round_trips: None,
        })
    }

    fn tamper(&self, _: &Opened, _: &[u8], _: &[u8]) -> TestResult {
        Err("these tests damage objects with S3Objects::damage".into())
    }
}

/// The same with an S3 object cut shorter than its count.
#[test]
fn s3_verify_reports_a_damaged_entry_and_checks_the_rest() -> TestResult {
    let h = S3Objects::start()?;
    verify_reports_a_damaged_entry_and_checks_the_rest(&h, |key| h.damage(key))
}

/// A catalog record's S3 object cut shorter than its count counts as one
/// damaged record: the other names are still listed.
#[test]
fn s3_a_damaged_record_does_not_hide_the_other_names() -> TestResult {
    let h = S3Objects::start()?;
    a_damaged_record_does_not_hide_the_other_names(&h, |key| h.damage(key))
}

/// An object under the store's prefix that is not an entry (another
/// application's file, debris of a copy) is reported by `verify` and
/// counted by `stat` as damaged, and the walks go on past it: every name
/// is still checked and listed. An object cut short still counts in the
/// backend's usage.
#[test]
fn s3_an_object_that_is_not_an_entry_is_reported_and_the_walks_go_on() -> TestResult {
    use seccs_store::Finding;
    use seccs_store::catalog::EntryKind;
    let h = S3Objects::start()?;
    let opened = h.open()?;
    let store = store_on(&opened)?;
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        store.put_named(
            &mut noise(i as u64, 10_000).as_slice(),
            name,
            EntryKind::File,
        )?;
    }
    let dir = h.0.object_dir(S3Objects::PREFIX);
    std::fs::write(dir.join("notes.txt"), b"not an entry")?;
    let report = store.verify()?;
    assert_eq!(report.names, 2, "{report:?}");
    assert!(
        report.findings.iter().any(|f| matches!(
            f,
            Finding::Unreadable { key, .. } if *key == seccs_core::hexenc::encode(b"notes.txt")
        )),
        "{report:?}"
    );
    assert!(report.broken_names.is_empty(), "{report:?}");
    assert_eq!(store.stats()?.damaged.entries, 1);
    let listing = store.list_readable("")?;
    assert_eq!(listing.records.len(), 2);
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let version = &listing.records[i].versions[0];
        assert_eq!(
            store.get(&version.content_ref)?,
            noise(i as u64, 10_000),
            "{name}"
        );
    }
    // An object too short for its count still counts as an entry (a new
    // store is refused such a place): it is damage, not a failed count.
    std::fs::remove_file(dir.join("notes.txt"))?;
    let before = opened.backend.usage()?.entries;
    let victim = entry_keys(&opened)?.into_iter().next().ok_or("an entry")?;
    h.damage(&victim)?;
    assert_eq!(opened.backend.usage()?.entries, before);
    Ok(())
}

/// An object named by an entry's key in uppercase hex is another spelling
/// of a key the backend reads and writes only in lowercase: it is a stray,
/// reported as such, not a second listing of the entry (which every walk
/// would then visit twice, yet no read could ever reach).
#[test]
fn s3_an_entry_copied_under_its_key_in_uppercase_is_a_stray() -> TestResult {
    use seccs_store::Finding;
    use seccs_store::catalog::EntryKind;
    let h = S3Objects::start()?;
    let opened = h.open()?;
    let store = store_on(&opened)?;
    store.put_named(&mut noise(7, 10_000).as_slice(), "a", EntryKind::File)?;
    let entries = entry_keys(&opened)?;
    let victim = entries
        .iter()
        .find(|k| hex::encode(k) != hex::encode(k).to_uppercase())
        .ok_or("an entry whose hex holds a letter")?;
    let dir = h.0.object_dir(S3Objects::PREFIX);
    let upper = hex::encode(victim).to_uppercase();
    std::fs::copy(dir.join(hex::encode(victim)), dir.join(&upper))?;
    let report = store.verify()?;
    assert_eq!(report.findings.len(), 1, "{report:?}");
    assert!(
        matches!(
            &report.findings[0],
            Finding::Unreadable { key, .. } if *key == seccs_core::hexenc::encode(upper.as_bytes())
        ),
        "{report:?}"
    );
    assert!(report.broken_names.is_empty(), "{report:?}");
    assert_eq!(store.stats()?.damaged.entries, 1);
    let mut read = Vec::new();
    store.get_named("a", None, &mut read)?;
    assert_eq!(read, noise(7, 10_000));
    Ok(())
}

fn a_damaged_record_does_not_hide_the_other_names<H: Harness>(
    h: &H,
    damage: impl Fn(&[u8]) -> TestResult,
) -> TestResult {
    use seccs_store::catalog::EntryKind;
    let opened = h.open()?;
    let store = store_on(&opened)?;
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        store.put_named(
            &mut noise(i as u64, 1_000).as_slice(),
            name,
            EntryKind::File,
        )?;
    }
    let record = entry_keys(&opened)?
        .into_iter()
        .find(|k| seccs_store::catalog::is_catalog_key(k))
        .ok_or("a record")?;
    damage(&record)?;
    let listing = store.list_readable("")?;
    assert_eq!(listing.damaged, 1);
    assert_eq!(listing.records.len(), 2, "the other names are listed");
    Ok(())
}

/// A bucket that does not exist is named, with where it was looked for and
/// what to do, not as a dump of the service's response; other errors keep
/// their detail but not the response's headers either.
#[test]
fn s3_a_missing_bucket_is_said_plainly() -> TestResult {
    use seccs_backends::{S3Backend, S3Config};
    let server = crate::support::S3Server::start()?;
    let url = server.url("p");
    let missing = url.replacen(
        &format!("s3://{}/", crate::support::S3_BUCKET),
        "s3://nosuchbucket/",
        1,
    );
    assert_ne!(missing, url);
    let endpoint = url
        .split_once("endpoint=")
        .and_then(|(_, rest)| rest.split('&').next())
        .ok_or("an endpoint")?;
    let credentials = || {
        Some(crate::harness::s3_credentials(
            crate::support::S3_SECRET_KEY,
        ))
    };
    let said = S3Backend::connect(S3Config::parse(&missing)?, credentials())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        said,
        format!(
            "invalid backend configuration: bucket \"nosuchbucket\" does not exist at \
             {endpoint}: create it first"
        )
    );
    let refused = S3Backend::connect(
        S3Config::parse(&url)?,
        Some(crate::harness::s3_credentials("wrong-secret")),
    )
    .err()
    .ok_or("wrong credentials are refused")?;
    let said = refused.to_string();
    assert!(
        matches!(refused, BackendError::Auth { .. }) && said.contains("SignatureDoesNotMatch"),
        "{said}"
    );
    for header in ["content-type", "x-amz-request-id", "headers"] {
        assert!(
            !said.to_ascii_lowercase().contains(header),
            "no header dump: {said}"
        );
    }
    Ok(())
}

/// A role whose rights on the table were revoked while it wrote gets an
/// error that fails every request (so a put DIR stops at the first), not
/// one per entry; a table dropped while a command writes is the store
/// lost, not a malformed configuration.
#[test]
fn postgres_a_revoked_right_or_a_dropped_table_fails_every_request() -> TestResult {
    let server = PostgresServer::start()?;
    let table = "revoked_nodes";
    PostgresBackend::create(PostgresConfig::parse(&server.url(table))?)?;
    let mut admin = server.client()?;
    admin.batch_execute(&format!(
        "CREATE ROLE writer LOGIN; GRANT ALL ON {table} TO writer;"
    ))?;
    let backend =
        PostgresBackend::connect(PostgresConfig::parse(&server.url_as("writer", table))?)?;
    let mut batch = Batch::new();
    batch.put(b"a".to_vec(), b"v".to_vec(), 1);
    backend.apply(&batch)?;
    admin.batch_execute(&format!("REVOKE ALL ON {table} FROM writer"))?;
    let mut batch = Batch::new();
    batch.put(b"b".to_vec(), b"v".to_vec(), 1);
    let err = backend.apply(&batch).err();
    assert!(
        matches!(&err, Some(e @ BackendError::Denied { detail, .. })
            if e.fails_every_request() && detail.contains("permission denied")),
        "{err:?}"
    );
    let read = backend.get_many(&[b"a"]).err();
    assert!(
        read.as_ref().is_some_and(BackendError::fails_every_request),
        "{read:?}"
    );

    let owner = PostgresBackend::connect(PostgresConfig::parse(&server.url(table))?)?;
    owner.apply(&batch)?;
    admin.batch_execute(&format!("DROP TABLE {table}"))?;
    let err = owner.apply(&batch).err();
    assert!(
        matches!(&err, Some(e @ BackendError::StoreLost { detail, .. })
            if e.fails_every_request() && detail.contains("dropped")),
        "{err:?}"
    );
    Ok(())
}

/// `gc`'s `reclaim_space` VACUUMs the store's table, so the rows `rm`
/// and `gc` deleted are space the server reuses (not dead rows waiting
/// for autovacuum, which a full disk may never let run); a role that may
/// not VACUUM the table gets a note saying when the space comes back,
/// not an error.
#[test]
fn postgres_reclaiming_space_vacuums_the_table() -> TestResult {
    let server = PostgresServer::start()?;
    let table = "vacuumed_nodes";
    let backend = PostgresBackend::create(PostgresConfig::parse(&server.url(table))?)?;
    let mut batch = Batch::new();
    for i in 0..200u32 {
        batch.put(i.to_be_bytes().to_vec(), noise(u64::from(i), 512), 1);
    }
    backend.apply(&batch)?;
    let mut batch = Batch::new();
    for i in 0..200u32 {
        batch.delete(i.to_be_bytes().to_vec());
    }
    backend.apply(&batch)?;
    let note = backend.reclaim_space()?;
    assert_eq!(note, None);
    let mut admin = server.client()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = admin.query_one(
            "SELECT last_vacuum IS NOT NULL, n_dead_tup FROM pg_stat_user_tables \
             WHERE relname = $1",
            &[&table],
        )?;
        let (vacuumed, dead): (bool, i64) = (row.get(0), row.get(1));
        if vacuumed && dead == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not vacuumed: last_vacuum set {vacuumed}, {dead} dead rows"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    admin.batch_execute(&format!(
        "CREATE ROLE cleaner LOGIN; GRANT ALL ON {table} TO cleaner;"
    ))?;
    let other = PostgresBackend::connect(PostgresConfig::parse(&server.url_as("cleaner", table))?)?;
    let note = other.reclaim_space()?;
    assert!(
        note.as_ref()
            .is_some_and(|n| n.contains("autovacuum") && n.contains("VACUUM")),
        "{note:?}"
    );
    Ok(())
}
