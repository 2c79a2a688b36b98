//! One writer per store on the network backends: a second process that
//! opens a store's table or prefix exclusively is refused, and a holder that
//! lost its lock stops writing instead of racing the new holder on counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use seccs_backends::{S3Backend, S3Config};
use seccs_store::backend::{Backend, BackendError, Batch};

use crate::support::{
    PostgresServer, REDIS_PASSWORD, RedisServer, S3_SECRET_KEY, S3Server, TestResult,
};

fn one_put() -> Batch {
    let mut batch = Batch::new();
    batch.put(b"k".to_vec(), b"v".to_vec(), 1);
    batch
}

fn redis_url(server: &RedisServer, prefix: &str) -> String {
    format!(
        "redis://:{REDIS_PASSWORD}@{}?prefix={prefix}",
        server.url().trim_start_matches("redis://")
    )
}

/// The lease key the backend keeps beside a prefix's entries.
fn lease_key(prefix: &str) -> Vec<u8> {
    let mut key = prefix.as_bytes().to_vec();
    key.extend_from_slice(b"\0seccs:writer-lease");
    key
}

fn is_locked(result: Result<(), BackendError>) -> bool {
    matches!(result, Err(BackendError::Locked { .. }))
}

/// Polls `done` every 100 ms for at most `limit`.
fn within(limit: Duration, mut done: impl FnMut() -> TestResult<bool>) -> TestResult<bool> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done()? {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(false)
}

#[test]
fn redis_a_second_exclusive_opener_is_refused_until_the_first_lets_go() -> TestResult {
    let server = RedisServer::start()?;
    let url = redis_url(&server, "locked:");
    let first = seccs_backends::open_exclusive(&url, true)?;
    // The lease is no entry: an empty store still reads as empty.
    assert_eq!(first.usage()?.entries, 0);

    let refused = seccs_backends::open_exclusive(&url, false).err();
    let message = refused
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        matches!(
            refused,
            Some(BackendError::Locked {
                by_this_process: true,
                ..
            })
        ),
        "a holder that is this process is said to be: {refused:?}"
    );
    assert!(
        message.contains(&format!("by this process (pid {}", std::process::id())),
        "the error names the holder, this process: {message}"
    );
    assert!(!message.contains("another process"), "{message}");
    // Another prefix is another store.
    drop(seccs_backends::open_exclusive(
        &redis_url(&server, "other:"),
        true,
    )?);

    first.apply(&one_put())?;
    let mut seen = Vec::new();
    first.for_each(&mut |key, _| {
        seen.push(key.to_vec());
        Ok(())
    })?;
    assert_eq!(seen, [b"k".to_vec()], "walks never show the lease");

    drop(first);
    let second = seccs_backends::open_exclusive(&url, false)?;
    assert_eq!(second.get(b"k")?.map(|e| e.count), Some(1));
    Ok(())
}

#[test]
fn redis_a_holder_whose_lease_was_taken_stops_writing() -> TestResult {
    let server = RedisServer::start()?;
    let url = redis_url(&server, "taken:");
    let holder = seccs_backends::open_exclusive(&url, true)?;
    holder.apply(&one_put())?;
    // What another process does once the lease expired while this one
    // could not reach the server.
    redis::cmd("SET")
        .arg(lease_key("taken:"))
        .arg("feed pid 1 on elsewhere")
        .query::<()>(&mut server.raw()?)?;
    let stopped = within(Duration::from_secs(20), || {
        Ok(is_locked(holder.apply(&one_put())))
    })?;
    assert!(
        stopped,
        "the old holder kept writing after losing its lease"
    );
    Ok(())
}

#[test]
fn redis_a_lease_lost_with_a_restarted_server_stops_its_holder() -> TestResult {
    let mut server = RedisServer::start()?;
    let url = redis_url(&server, "restarted:");
    let holder = seccs_backends::open_exclusive(&url, true)?;
    holder.apply(&one_put())?;
    server.restart()?;
    // The server kept nothing, the lease included: the holder writes
    // nothing more (the restart cut its connection too, so its first
    // attempt may say that instead), and another process may take the
    // store.
    let _ = holder.apply(&one_put());
    assert!(is_locked(holder.apply(&one_put())));
    assert_eq!(store_keys(&server, "restarted:")?, BTreeMap::new());
    let taker = seccs_backends::open_exclusive(&url, false)?;
    taker.apply(&one_put())?;
    Ok(())
}

/// Every key under `prefix` but the lease, with its value.
fn store_keys(server: &RedisServer, prefix: &str) -> TestResult<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut conn = server.raw()?;
    let mut pattern = prefix.as_bytes().to_vec();
    pattern.push(b'*');
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg(pattern).query(&mut conn)?;
    let mut found = BTreeMap::new();
    for key in keys {
        if key != lease_key(prefix) {
            let value: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn)?;
            found.insert(key, value);
        }
    }
    Ok(found)
}

/// A batch that puts, updates a count and deletes.
fn mixed_batch() -> Batch {
    let mut batch = Batch::new();
    batch.put(b"k2".to_vec(), b"v2".to_vec(), 1);
    batch.set_count(b"k".to_vec(), 5);
    batch.delete(b"gone".to_vec());
    batch
}

/// The server's lease, not the holder's memory of it, decides whether a
/// batch is written: a holder whose lease key another process overwrote, or
/// that is gone, writes nothing from its very next batch on, before its
/// renewal could notice.
#[test]
fn redis_a_holder_whose_lease_key_changed_writes_nothing() -> TestResult {
    let server = RedisServer::start()?;
    for (prefix, take) in [("replaced:", true), ("deleted:", false)] {
        let url = redis_url(&server, prefix);
        let holder = seccs_backends::open_exclusive(&url, true)?;
        let mut first = one_put();
        first.put(b"gone".to_vec(), b"v".to_vec(), 1);
        holder.apply(&first)?;
        holder.write_marker(b"ours")?;
        let before = store_keys(&server, prefix)?;
        let mut raw = server.raw()?;
        if take {
            redis::cmd("SET")
                .arg(lease_key(prefix))
                .arg("feed pid 1 on elsewhere")
                .arg("PX")
                .arg(30_000)
                .query::<()>(&mut raw)?;
        } else {
            redis::cmd("DEL")
                .arg(lease_key(prefix))
                .query::<()>(&mut raw)?;
        }
        let err = holder.apply(&mixed_batch()).err();
        assert!(
            matches!(&err, Some(BackendError::Locked { detail, .. })
                if detail.contains("no longer holds")),
            "{prefix} {err:?}"
        );
        assert!(is_locked(holder.write_marker(b"theirs")), "{prefix}");
        assert!(is_locked(holder.remove_marker()), "{prefix}");
        assert_eq!(
            store_keys(&server, prefix)?,
            before,
            "{prefix}: nothing written"
        );
    }
    Ok(())
}

/// A lease that expired, was taken by another process and released again
/// is not taken back by its old holder's renewal: the old holder read its
/// counts before the other wrote, so it must not write again.
#[test]
fn redis_a_renewal_never_takes_back_a_lease_that_is_gone() -> TestResult {
    let server = RedisServer::start()?;
    let url = redis_url(&server, "gone:");
    let holder = seccs_backends::open_exclusive(&url, true)?;
    holder.apply(&one_put())?;
    redis::cmd("DEL")
        .arg(lease_key("gone:"))
        .query::<()>(&mut server.raw()?)?;
    // At least one renewal turn (every 5 s) passes without the key coming
    // back.
    let came_back = within(Duration::from_secs(7), || {
        let key: Option<Vec<u8>> = redis::cmd("GET")
            .arg(lease_key("gone:"))
            .query(&mut server.raw()?)?;
        Ok(key.is_some())
    })?;
    assert!(!came_back, "the old holder took the lease back");
    assert!(is_locked(holder.apply(&one_put())));
    let taker = seccs_backends::open_exclusive(&url, false)?;
    taker.apply(&one_put())?;
    drop(taker);
    // Nor once the new holder let it go.
    std::thread::sleep(Duration::from_secs(6));
    assert!(is_locked(holder.apply(&one_put())));
    seccs_backends::open_exclusive(&url, false)?.apply(&one_put())?;
    Ok(())
}

#[test]
fn postgres_a_second_exclusive_opener_is_refused_until_the_first_lets_go() -> TestResult {
    let server = PostgresServer::start()?;
    let url = server.url("locked_nodes");
    let first = seccs_backends::open_exclusive(&url, true)?;
    first.apply(&one_put())?;

    let refused = seccs_backends::open_exclusive(&url, false).err();
    let message = refused
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        matches!(
            refused,
            Some(BackendError::Locked {
                by_this_process: true,
                ..
            })
        ),
        "a holder that is this process is said to be: {refused:?}"
    );
    assert!(
        message.contains("locked_nodes")
            && message.contains(&format!("by this process (pid {}", std::process::id())),
        "the error names the table and the holder, this process: {message}"
    );
    assert!(!message.contains("another process"), "{message}");
    // Another table is another store; a shared open (tools) still reads.
    drop(seccs_backends::open_exclusive(
        &server.url("other_nodes"),
        true,
    )?);
    assert_eq!(
        seccs_backends::open(&url)?.get(b"k")?.map(|e| e.count),
        Some(1)
    );

    drop(first);
    let second = seccs_backends::open_exclusive(&url, false)?;
    second.apply(&one_put())?;
    Ok(())
}

/// A holder whose session ended (cut by an administrator, as
/// `idle_session_timeout` or a restart would) lost the lock with it, for
/// good: another process may have taken the store, written and let it go
/// meanwhile, so counts the holder read before are stale. It still reads.
#[test]
fn postgres_a_holder_whose_session_was_cut_never_writes_again() -> TestResult {
    let server = PostgresServer::start()?;
    let url = server.url("cut_nodes");
    let holder = seccs_backends::open_exclusive(&url, true)?;
    holder.apply(&one_put())?;

    let mut admin = server.client()?;
    let cut = admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND classid = 1397048131::oid",
        &[],
    )?;
    assert_eq!(cut.len(), 1, "one session held the lock");
    let mut taker = None;
    let freed = within(Duration::from_secs(10), || {
        taker = seccs_backends::open_exclusive(&url, false).ok();
        Ok(taker.is_some())
    })?;
    let taker = taker.filter(|_| freed).ok_or("the lock stayed held")?;
    let mut taken = Batch::new();
    taken.set_count(b"k".to_vec(), 7);
    taker.apply(&taken)?;

    // The first write finds the session gone; every later one is refused
    // without being sent, while the taker holds the lock and after it let
    // it go.
    assert!(holder.apply(&one_put()).is_err());
    let said = holder.apply(&one_put()).err();
    assert!(
        matches!(&said, Some(BackendError::Locked { detail, .. })
            if detail.contains("lost its writer lock")),
        "{said:?}"
    );
    drop(taker);
    assert!(is_locked(holder.apply(&one_put())));
    assert!(is_locked(holder.write_marker(b"stale")));
    assert!(is_locked(holder.remove_marker()));
    assert_eq!(holder.get(b"k")?.map(|e| e.count), Some(7), "reads go on");
    assert_eq!(
        holder.read_marker()?,
        None,
        "nothing of the holder's written"
    );
    // The lock is free for a new writer.
    seccs_backends::open_exclusive(&url, false)?.apply(&one_put())?;
    Ok(())
}

/// A role that has a schema of its own (`"$user"` first on the default
/// search path) and one that has not both find the store's table in
/// `public`: they name it differently, but open the same table, so only
/// one of them may write. A table of the same name in the first role's
/// schema is another store.
#[test]
fn postgres_two_roles_that_find_one_table_by_search_path_share_its_writer_lock() -> TestResult {
    let server = PostgresServer::start()?;
    server.client()?.batch_execute(
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;\
         CREATE SCHEMA alice AUTHORIZATION alice;\
         CREATE TABLE public.shared_nodes (\
           key bytea PRIMARY KEY, value bytea NOT NULL, count bigint NOT NULL);\
         GRANT ALL ON public.shared_nodes TO alice, bob;",
    )?;
    let alice = seccs_backends::open_exclusive(&server.url_as("alice", "shared_nodes"), false)?;
    alice.apply(&one_put())?;
    let refused = seccs_backends::open_exclusive(&server.url_as("bob", "shared_nodes"), false)
        .err()
        .map(|e| e.to_string());
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("in use")
            && e.contains("shared_nodes")
            && e.contains(&format!("pid {}", std::process::id()))),
        "{refused:?}"
    );
    drop(alice);
    let bob = seccs_backends::open_exclusive(&server.url_as("bob", "shared_nodes"), false)?;
    assert_eq!(bob.get(b"k")?.map(|e| e.count), Some(1), "the same table");

    server.client()?.batch_execute(
        "CREATE TABLE alice.shared_nodes (\
           key bytea PRIMARY KEY, value bytea NOT NULL, count bigint NOT NULL);\
         ALTER TABLE alice.shared_nodes OWNER TO alice;",
    )?;
    let own = seccs_backends::open_exclusive(&server.url_as("alice", "shared_nodes"), false)?;
    assert_eq!(own.get(b"k")?, None, "alice's own table");
    own.apply(&one_put())?;
    bob.apply(&one_put())?;
    Ok(())
}

/// A role whose search path names no schema that exists finds no table:
/// the exclusive open says the table is missing, as the shared one does,
/// rather than fail on the server's empty answer.
#[test]
fn postgres_a_search_path_without_the_table_is_a_clear_error() -> TestResult {
    let server = PostgresServer::start()?;
    server.client()?.batch_execute(
        "CREATE ROLE carol LOGIN; ALTER ROLE carol SET search_path = nosuch;\
         CREATE TABLE public.hidden_nodes (\
           key bytea PRIMARY KEY, value bytea NOT NULL, count bigint NOT NULL);\
         GRANT ALL ON public.hidden_nodes TO carol;",
    )?;
    let url = server.url_as("carol", "hidden_nodes");
    for exclusive in [true, false] {
        let opened = std::panic::catch_unwind(|| {
            if exclusive {
                seccs_backends::open_exclusive(&url, false).map(drop)
            } else {
                seccs_backends::open(&url).map(drop)
            }
        })
        .map_err(|_| format!("opening (exclusive: {exclusive}) panicked"))?;
        assert!(
            matches!(&opened, Err(BackendError::Config(m))
                if m.contains("\"hidden_nodes\" does not exist")),
            "exclusive: {exclusive}: {opened:?}"
        );
    }
    Ok(())
}

fn s3_exclusive(server: &S3Server, prefix: &str) -> Result<S3Backend, BackendError> {
    S3Backend::connect_exclusive(
        S3Config::parse(&server.url(prefix))?,
        Some(crate::harness::s3_credentials(S3_SECRET_KEY)),
    )
}

/// Writes a lease object as another process would, expiring `until_ms`.
fn s3_foreign_lease(server: &S3Server, prefix: &str, until_ms: u128) -> TestResult {
    let dir = server.object_dir(prefix);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("writer-lease"),
        format!("feed pid 1 on elsewhere until {until_ms}"),
    )?;
    // The server keeps each object's ETag beside it; without it, it takes
    // the ETag of the bytes, as for an object another client wrote.
    let root = server
        .object_dir("")
        .parent()
        .ok_or("the bucket has a parent")?
        .to_owned();
    for entry in std::fs::read_dir(root)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        // (Names are base64; the other objects lose nothing by this.)
        if name.ends_with(".internal.json") {
            std::fs::remove_file(server.object_dir("").parent().ok_or("root")?.join(name))?;
        }
    }
    Ok(())
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

#[test]
fn s3_a_second_exclusive_opener_is_refused_until_the_first_lets_go() -> TestResult {
    let server = S3Server::start()?;
    let first = s3_exclusive(&server, "locked")?;
    assert_eq!(first.usage()?.entries, 0, "the lease is no entry");
    let refused = s3_exclusive(&server, "locked").err();
    let message = refused
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        matches!(
            refused,
            Some(BackendError::Locked {
                by_this_process: true,
                ..
            })
        ),
        "a holder that is this process is said to be: {refused:?}"
    );
    assert!(
        message.contains(&format!("by this process (pid {}", std::process::id())),
        "the error names the holder, this process: {message}"
    );
    assert!(!message.contains("another process"), "{message}");
    drop(s3_exclusive(&server, "other")?);

    first.apply(&one_put())?;
    let mut seen = Vec::new();
    first.for_each(&mut |key, _| {
        seen.push(key.to_vec());
        Ok(())
    })?;
    assert_eq!(seen, [b"k".to_vec()], "walks never show the lease");
    drop(first);
    assert!(
        !server.object_dir("locked").join("writer-lease").exists(),
        "a lease let go is removed"
    );
    let second = s3_exclusive(&server, "locked")?;
    assert_eq!(second.get(b"k")?.map(|e| e.count), Some(1));
    Ok(())
}

#[test]
fn s3_a_lease_whose_holder_died_is_taken_over_once_its_time_has_passed() -> TestResult {
    let server = S3Server::start()?;
    // A live holder's lease is respected...
    s3_foreign_lease(&server, "dead", now_ms() + 30_000)?;
    let refused = s3_exclusive(&server, "dead").err();
    assert!(
        matches!(
            refused,
            Some(BackendError::Locked {
                by_this_process: false,
                ..
            })
        ),
        "another process's lease is not this process's: {refused:?}"
    );
    let refused = refused.map(|e| e.to_string());
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("pid 1 on elsewhere")),
        "{refused:?}"
    );
    // ...and one whose time has passed is taken over.
    s3_foreign_lease(&server, "dead", now_ms() - 1)?;
    let taker = s3_exclusive(&server, "dead")?;
    taker.apply(&one_put())?;
    Ok(())
}

#[test]
fn s3_a_holder_whose_lease_was_replaced_stops_writing() -> TestResult {
    let server = S3Server::start()?;
    let holder = s3_exclusive(&server, "replaced")?;
    holder.apply(&one_put())?;
    // Another process's lease in its place (its version differs from the
    // holder's last): the next renewal finds it and the holder stops.
    s3_foreign_lease(&server, "replaced", now_ms() + 30_000)?;
    let stopped = within(Duration::from_secs(20), || {
        Ok(is_locked(holder.apply(&one_put())))
    })?;
    assert!(
        stopped,
        "the old holder kept writing after losing its lease"
    );
    drop(holder);
    assert!(
        server.object_dir("replaced").join("writer-lease").exists(),
        "a holder that lost its lease leaves the new holder's alone"
    );
    Ok(())
}

/// A stage of a batch can run for minutes (large objects, a slow link),
/// longer than a lost lease takes to be taken by another process: each
/// request of a stage checks the lease as it starts, so none starts once
/// the lease is lost, though the stage began with the lease held.
#[test]
fn s3_a_lease_lost_in_the_middle_of_a_stage_starts_no_further_request() -> TestResult {
    let server = S3Server::start()?;
    let prefix = "midstage";
    // One request at a time: the first put is in flight when the lease
    // goes, and every later one starts after.
    let holder = Arc::new(S3Backend::connect_exclusive(
        S3Config::parse(&format!("{}&concurrency=1", server.url(prefix)))?,
        Some(crate::harness::s3_credentials(S3_SECRET_KEY)),
    )?);
    let keys: Vec<Vec<u8>> = (0..16u8).map(|i| vec![0xa0, i]).collect();
    let mut batch = Batch::new();
    for key in &keys {
        batch.put(key.clone(), b"v".to_vec(), 1);
    }
    assert_eq!(batch.stages().count(), 1, "one stage");

    let first_put = server.hold("PutObject", prefix, &hex::encode(&keys[0]));
    let writer = {
        let holder = holder.clone();
        std::thread::spawn(move || holder.apply(&batch))
    };
    first_put.wait_reached(Duration::from_secs(10))?;
    // Another process takes the lease; the holder's next renewal finds it.
    s3_foreign_lease(&server, prefix, now_ms() + 30_000)?;
    let mut probe = Batch::new();
    probe.delete(b"probe".to_vec());
    let lost = within(Duration::from_secs(20), || {
        Ok(is_locked(holder.apply(&probe)))
    })?;
    assert!(lost, "the holder never found its lease taken");
    first_put.let_go();
    let applied = writer.join().map_err(|_| "the writer panicked")?;
    let shown = format!("{applied:?}");
    assert!(
        is_locked(applied),
        "the stage went on after the lease was lost: {shown}"
    );
    let dir = server.object_dir(prefix);
    let written: Vec<String> = keys[1..]
        .iter()
        .map(hex::encode)
        .filter(|name| dir.join(name).exists())
        .collect();
    assert!(
        written.is_empty(),
        "written after the lease was lost: {written:?}"
    );
    Ok(())
}

/// A holder that lets its lease go between a taker's create (refused: the
/// lease was there) and the taker's look at it leaves the lease free: the
/// taker takes it rather than failing.
#[test]
fn s3_a_lease_let_go_while_a_taker_looks_at_it_is_taken() -> TestResult {
    let server = S3Server::start()?;
    let prefix = "freed";
    s3_foreign_lease(&server, prefix, now_ms() + 30_000)?;
    let look = server.hold("HeadObject", prefix, "writer-lease");
    let taker = {
        let url = server.url(prefix);
        std::thread::spawn(move || {
            S3Backend::connect_exclusive(
                S3Config::parse(&url)?,
                Some(crate::harness::s3_credentials(S3_SECRET_KEY)),
            )
        })
    };
    look.wait_reached(Duration::from_secs(10))?;
    // The holder lets go.
    std::fs::remove_file(server.object_dir(prefix).join("writer-lease"))?;
    look.let_go();
    let taker = taker.join().map_err(|_| "the taker panicked")??;
    taker.apply(&one_put())?;
    let lease = std::fs::read_to_string(server.object_dir(prefix).join("writer-lease"))?;
    assert!(
        lease.contains(&format!("pid {}", std::process::id())),
        "the lease is the taker's: {lease}"
    );
    Ok(())
}

/// Two processes taking a free lease at the same instant: the server must
/// honour `If-None-Match: *` atomically (`s3s-fs` alone checks, then
/// writes, so both creates could succeed), and never both hold it.
#[test]
fn s3_two_takers_at_the_same_instant_never_both_hold_the_lease() -> TestResult {
    const ROUNDS: usize = 50;
    let server = S3Server::start()?;
    let start = Instant::now();
    let mut both = 0;
    for round in 0..ROUNDS {
        let url = server.url(&format!("race{round}"));
        let gate = Arc::new(std::sync::Barrier::new(2));
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let (url, gate) = (url.clone(), gate.clone());
                std::thread::spawn(move || {
                    let config = S3Config::parse(&url)?;
                    gate.wait();
                    S3Backend::connect_exclusive(
                        config,
                        Some(crate::harness::s3_credentials(S3_SECRET_KEY)),
                    )
                })
            })
            .collect();
        let mut holders = Vec::new();
        for taker in takers {
            match taker.join().map_err(|_| "a taker panicked")? {
                Ok(backend) => holders.push(backend),
                Err(BackendError::Locked { .. }) => {}
                Err(e) => return Err(format!("round {round}: {e}").into()),
            }
        }
        assert!(!holders.is_empty(), "round {round}: neither took the lease");
        if holders.len() > 1 {
            both += 1;
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!("{round} rounds took over 20 s").into());
        }
    }
    assert_eq!(
        both, 0,
        "both takers held the lease in {both} of {ROUNDS} rounds"
    );
    Ok(())
}

/// A lease replaced between its taker's create and the taker's read of it
/// (by a second create that a service which checks, then writes, let
/// through too) is not trusted: the taker is refused, naming the other
/// holder, and leaves the other's lease in place.
#[test]
fn s3_a_taker_that_reads_back_another_holders_lease_is_refused() -> TestResult {
    let server = S3Server::start()?;
    let prefix = "replaced-at-once";
    let read_back = server.hold("GetObject", prefix, "writer-lease");
    let taker = {
        let url = server.url(prefix);
        std::thread::spawn(move || {
            S3Backend::connect_exclusive(
                S3Config::parse(&url)?,
                Some(crate::harness::s3_credentials(S3_SECRET_KEY)),
            )
            .map(drop)
        })
    };
    read_back.wait_reached(Duration::from_secs(10))?;
    s3_foreign_lease(&server, prefix, now_ms() + 30_000)?;
    read_back.let_go();
    let taken = taker.join().map_err(|_| "the taker panicked")?;
    let said = taken.as_ref().err().map(ToString::to_string);
    assert!(is_locked(taken), "{said:?}");
    assert!(
        said.as_deref()
            .is_some_and(|e| e.contains("replaced by pid 1 on elsewhere")),
        "{said:?}"
    );
    let lease = std::fs::read_to_string(server.object_dir(prefix).join("writer-lease"))?;
    assert!(lease.starts_with("feed pid 1 on elsewhere"), "{lease}");
    Ok(())
}

/// A lease deleted under its holder (by a process that took it over and
/// was removing its own in the same instant) is lost at the holder's next
/// renewal, also on a service that refuses an `If-Match` on a missing
/// object with 404 (AWS S3) rather than 412 (`s3s-fs`).
#[test]
fn s3_a_holder_whose_lease_object_is_gone_reports_it_lost_at_its_next_renewal() -> TestResult {
    let server = S3Server::start()?;
    let prefix = "deleted";
    let holder = s3_exclusive(&server, prefix)?;
    holder.apply(&one_put())?;
    let renewal = server.refuse(
        "PutObject",
        prefix,
        "writer-lease",
        s3s::S3ErrorCode::NoSuchKey,
    );
    std::fs::remove_file(server.object_dir(prefix).join("writer-lease"))?;
    renewal.wait_reached(Duration::from_secs(10))?;
    // Lost at this renewal, not at the next one (RENEW_EVERY later) nor
    // once the last renewal is too old.
    let stopped = within(Duration::from_secs(2), || {
        Ok(is_locked(holder.apply(&one_put())))
    })?;
    assert!(stopped, "the holder kept writing without its lease");
    let said = holder.apply(&one_put()).err().map(|e| e.to_string());
    assert!(
        said.as_deref()
            .is_some_and(|e| e.contains("lost its writer lease")),
        "{said:?}"
    );
    Ok(())
}

/// The store marker and the store's descriptor live beside the entries on
/// Redis, PostgreSQL and S3, never among them; the marker goes when the
/// entries are wiped behind the store's back, and can be taken back by its
/// writer (a failed init); the descriptor is replaced whole when written
/// again.
#[test]
fn the_store_marker_is_kept_beside_the_entries_on_every_network_backend() -> TestResult {
    let redis = RedisServer::start()?;
    let postgres = PostgresServer::start()?;
    let s3 = S3Server::start()?;
    let backends: Vec<Box<dyn Backend>> = vec![
        seccs_backends::open_exclusive(&redis_url(&redis, "marked:"), true)?,
        seccs_backends::open_exclusive(&postgres.url("marked_nodes"), true)?,
        Box::new(s3_exclusive(&s3, "marked")?),
    ];
    for backend in &backends {
        assert!(backend.keeps_marker());
        assert_eq!(backend.read_marker()?, None);
        backend.write_marker(b"check value")?;
        assert_eq!(backend.read_marker()?.as_deref(), Some(&b"check value"[..]));
        // What a failed init undoes: twice is no error.
        backend.remove_marker()?;
        assert_eq!(backend.read_marker()?, None, "{}", backend.name());
        backend.remove_marker()?;
        backend.write_marker(b"check value")?;
        backend.write_marker(b"another value")?;
        assert_eq!(
            backend.read_marker()?.as_deref(),
            Some(&b"another value"[..])
        );
        assert!(backend.keeps_descriptor());
        assert_eq!(backend.read_descriptor()?, None, "{}", backend.name());
        backend.write_descriptor(b"a longer first descriptor")?;
        backend.write_descriptor(b"descriptor")?;
        assert_eq!(
            backend.read_descriptor()?.as_deref(),
            Some(&b"descriptor"[..]),
            "{}",
            backend.name()
        );
        // Whatever a backend's owner puts there, no more than one byte
        // past the longest value is read; an empty one reads as empty.
        let most = seccs_store::backend::MAX_BESIDE_ENTRIES;
        for (value, read) in [(vec![b'x'; 1 << 20], most + 1), (Vec::new(), 0)] {
            backend.write_descriptor(&value)?;
            backend.write_marker(&value)?;
            let descriptor = backend.read_descriptor()?.map(|d| d.len());
            let marker = backend.read_marker()?.map(|m| m.len());
            assert_eq!(
                (descriptor, marker),
                (Some(read), Some(read)),
                "{}",
                backend.name()
            );
        }
        backend.write_descriptor(b"descriptor")?;
        backend.write_marker(b"another value")?;
        assert_eq!(backend.usage()?.entries, 0, "{}", backend.name());
        backend.apply(&one_put())?;
        assert_eq!(backend.usage()?.entries, 1, "{}", backend.name());
        let mut seen = Vec::new();
        backend.for_each(&mut |key, _| {
            seen.push(key.to_vec());
            Ok(())
        })?;
        assert_eq!(seen, [b"k".to_vec()], "{}", backend.name());
        let mut under_empty_prefix = 0;
        backend.for_each_with_prefix(b"", &mut |_, _| {
            under_empty_prefix += 1;
            Ok(())
        })?;
        assert_eq!(under_empty_prefix, 1, "{}", backend.name());
    }

    // A table of its own cannot nest with another store's.
    assert!(backends[1].nested_stores()?.is_empty());

    // A table emptied behind the store's back takes the marker with it.
    postgres.client()?.batch_execute("TRUNCATE marked_nodes")?;
    assert_eq!(backends[1].read_marker()?, None);
    assert_eq!(backends[1].usage()?.entries, 0);
    Ok(())
}

/// Stores whose prefixes nest would walk each other's entries: each finds
/// the other by its marker, whichever was made first.
#[test]
fn stores_whose_prefixes_nest_find_each_other_by_their_markers() -> TestResult {
    let redis = RedisServer::start()?;
    let outer = seccs_backends::open_exclusive(&redis_url(&redis, "photos:"), true)?;
    let beside = seccs_backends::open_exclusive(&redis_url(&redis, "videos:"), true)?;
    let inner = seccs_backends::open_exclusive(&redis_url(&redis, "photos:2024:"), true)?;
    assert!(outer.nested_stores()?.is_empty(), "no marker yet");
    outer.write_marker(b"outer")?;
    beside.write_marker(b"beside")?;
    assert_eq!(inner.nested_stores()?, ["the store at prefix \"photos:\""]);
    inner.write_marker(b"inner")?;
    assert_eq!(
        outer.nested_stores()?,
        ["the store at prefix \"photos:2024:\""]
    );
    assert!(beside.nested_stores()?.is_empty());
    // Glob characters in a prefix match only themselves.
    let starred = seccs_backends::open_exclusive(&redis_url(&redis, "ph*"), true)?;
    assert!(starred.nested_stores()?.is_empty());
    let whole = seccs_backends::open_exclusive(&redis_url(&redis, ""), true)?;
    assert_eq!(
        whole.nested_stores()?.len(),
        3,
        "every prefixed store nests in it"
    );

    let s3 = S3Server::start()?;
    let outer = s3_exclusive(&s3, "stores")?;
    let inner = s3_exclusive(&s3, "stores/one/two")?;
    let beside = s3_exclusive(&s3, "stores2")?;
    outer.write_marker(b"outer")?;
    beside.write_marker(b"beside")?;
    assert_eq!(inner.nested_stores()?, ["the store at prefix \"stores\""]);
    inner.write_marker(b"inner")?;
    assert_eq!(
        outer.nested_stores()?,
        ["the store at prefix \"stores/one/two\""]
    );
    assert!(beside.nested_stores()?.is_empty());
    Ok(())
}

/// Once guarded by its marker, a backend writes a batch only while the
/// marker is still there, checked in the same atomic step: a server emptied
/// while a command writes stops that command instead of taking its later
/// batches into an empty store.
#[test]
fn a_batch_after_the_backend_was_emptied_writes_nothing() -> TestResult {
    let redis = RedisServer::start()?;
    let postgres = PostgresServer::start()?;
    let mut backends: Vec<Box<dyn Backend>> = vec![
        seccs_backends::open_exclusive(&redis_url(&redis, "guarded:"), true)?,
        seccs_backends::open_exclusive(&postgres.url("guarded_nodes"), true)?,
    ];
    let mut big = Batch::new();
    for i in 0u32..3000 {
        big.put(i.to_be_bytes().to_vec(), vec![7; 16 << 10], 1);
    }
    for backend in &backends {
        backend.write_marker(b"ours")?;
        backend.guard_writes_with_marker(b"ours");
        backend.apply(&one_put())?;
        // Larger than one PostgreSQL statement: a transaction of several.
        backend.apply(&big)?;
        assert_eq!(backend.usage()?.entries, 3001, "{}", backend.name());
    }
    let mut raw = redis.raw()?;
    redis::cmd("FLUSHALL").query::<()>(&mut raw)?;
    postgres.client()?.batch_execute("TRUNCATE guarded_nodes")?;
    for backend in &backends {
        for batch in [one_put(), big.clone()] {
            let err = backend.apply(&batch).err();
            // The Redis lease key went with the rest: a renewal that ran
            // since the flush (every 5 s) found it gone, and then the batch
            // is refused before the marker is looked at. Either refusal
            // writes nothing.
            let lease_gone = backend.name() == "redis"
                && matches!(&err, Some(BackendError::Locked { detail, .. })
                    if detail.contains("lost its writer lease"));
            assert!(
                lease_gone
                    || matches!(&err, Some(BackendError::StoreLost { detail, .. })
                        if detail.contains("marker is gone")),
                "{}: {err:?}",
                backend.name()
            );
        }
        assert_eq!(
            backend.usage()?.entries,
            0,
            "{}: nothing written",
            backend.name()
        );
    }
    // The Redis writer's lease went with everything else: it writes
    // nothing more, not even a marker, and another writer may open the
    // store.
    assert!(is_locked(backends[0].write_marker(b"ours")));
    backends[0] = seccs_backends::open_exclusive(&redis_url(&redis, "guarded:"), true)?;
    backends[0].guard_writes_with_marker(b"ours");
    // Another store's marker does not pass either.
    for backend in &backends {
        backend.write_marker(b"theirs")?;
        assert!(backend.apply(&one_put()).is_err(), "{}", backend.name());
        backend.write_marker(b"ours")?;
        backend.apply(&one_put())?;
    }
    Ok(())
}

/// S3 has no transactions, so its marker cannot gate a batch: it is read
/// beside each batch, and the batch that finds it gone or replaced fails
/// (what that batch wrote may stay), so the command stops there.
#[test]
fn an_s3_batch_that_finds_the_marker_gone_stops_the_command() -> TestResult {
    let s3 = S3Server::start()?;
    let backend = s3_exclusive(&s3, "guarded")?;
    backend.write_marker(b"ours")?;
    backend.guard_writes_with_marker(b"ours");
    backend.apply(&one_put())?;
    std::fs::remove_file(s3.object_dir("guarded").join("store-marker"))?;
    let err = backend.apply(&one_put()).err();
    assert!(
        matches!(&err, Some(BackendError::StoreLost { detail, .. })
            if detail.contains("marker is gone")),
        "{err:?}"
    );
    backend.write_marker(b"theirs")?;
    let err = backend.apply(&one_put()).err();
    assert!(
        matches!(&err, Some(BackendError::StoreLost { detail, .. })
            if detail.contains("marker was replaced")),
        "{err:?}"
    );
    backend.write_marker(b"ours")?;
    backend.apply(&one_put())?;
    Ok(())
}

/// What `seccs get` and `ls` do on a network store: a `Store` over the
/// backend opened without the lease reads and lists what the writer, who
/// holds the lease, put, and keeps reading while the writer removes and
/// puts more; a second exclusive opener is still refused.
fn a_reader_reads_beside_the_writer(
    writer: Box<dyn Backend>,
    reader: Box<dyn Backend>,
    exclusive_again: impl FnOnce() -> Result<(), BackendError>,
) -> TestResult {
    use seccs_store::catalog::EntryKind;
    use seccs_store::{Params, Store};
    let key = seccs_core::SecretKey::from_bytes([3; 32]);
    let params = Params::new(256, seccs_store::WrapperKind::AesSiv)?;
    let writer = Store::open(Arc::from(writer), params, &key)?;
    let reader = Store::open(Arc::from(reader), params, &key)?;
    let content: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    writer.put_named(&mut content.as_slice(), "a", EntryKind::File)?;
    let mut out = Vec::new();
    reader.get_named("a", None, &mut out)?;
    assert_eq!(out, content);
    writer.put_named(&mut &b"b"[..], "b", EntryKind::File)?;
    let names: Vec<String> = reader.list("")?.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["a", "b"]);
    writer.remove_name("a", None)?;
    assert!(reader.lookup("a")?.is_none());
    assert!(is_locked(exclusive_again()), "a second writer is refused");
    Ok(())
}

#[test]
fn redis_a_reader_without_the_lease_reads_beside_the_writer() -> TestResult {
    let server = RedisServer::start()?;
    let url = redis_url(&server, "beside:");
    a_reader_reads_beside_the_writer(
        seccs_backends::open_exclusive(&url, true)?,
        seccs_backends::open(&url)?,
        || seccs_backends::open_exclusive(&url, false).map(drop),
    )
}

#[test]
fn postgres_a_reader_without_the_lease_reads_beside_the_writer() -> TestResult {
    let server = PostgresServer::start()?;
    let url = server.url("beside_nodes");
    a_reader_reads_beside_the_writer(
        seccs_backends::open_exclusive(&url, true)?,
        seccs_backends::open(&url)?,
        || seccs_backends::open_exclusive(&url, false).map(drop),
    )
}

#[test]
fn s3_a_reader_without_the_lease_reads_beside_the_writer() -> TestResult {
    let server = S3Server::start()?;
    let credentials = || Some(crate::harness::s3_credentials(S3_SECRET_KEY));
    let config = || S3Config::parse(&server.url("beside"));
    a_reader_reads_beside_the_writer(
        Box::new(S3Backend::connect_exclusive(config()?, credentials())?),
        Box::new(S3Backend::connect(config()?, credentials())?),
        || s3_exclusive(&server, "beside").map(drop),
    )
}

/// Called on a thread inside a tokio runtime (an embedder's async task),
/// where blocking on the backend's own runtime panicked, `backend` refuses
/// each call with an error, and dropping it there does not panic.
fn inside_a_runtime_calls_are_refused_and_a_drop_is_quiet(backend: Box<dyn Backend>) -> TestResult {
    let outer = tokio::runtime::Runtime::new()?;
    let (refused, backend) = outer.block_on(async move { (backend.get(b"k").err(), backend) });
    let refused = refused.ok_or("a call inside a runtime was taken")?;
    assert!(
        refused.to_string().contains("inside a tokio runtime"),
        "{refused}"
    );
    let (refused, backend) =
        outer.block_on(async move { (backend.apply(&one_put()).err(), backend) });
    assert!(refused.is_some(), "a batch inside a runtime was taken");
    outer.block_on(async move { drop(backend) });
    Ok(())
}

/// S3: refused inside a runtime, and a drop there still lets the writer
/// lease go, so the next writer takes it at once.
#[test]
fn s3_inside_a_runtime_calls_are_refused_and_a_drop_lets_the_lease_go() -> TestResult {
    let server = S3Server::start()?;
    let backend = s3_exclusive(&server, "rt")?;
    backend.apply(&one_put())?;
    inside_a_runtime_calls_are_refused_and_a_drop_is_quiet(Box::new(backend))?;
    let next = s3_exclusive(&server, "rt")?;
    assert_eq!(next.get(b"k")?.map(|e| e.count), Some(1));
    Ok(())
}

/// PostgreSQL: refused inside a runtime; a drop there ends the session
/// without waiting, and the server frees the lock as it sees it end.
#[test]
fn postgres_inside_a_runtime_calls_are_refused_and_a_drop_is_quiet() -> TestResult {
    let server = PostgresServer::start()?;
    let url = server.url("rt_nodes");
    let backend = seccs_backends::open_exclusive(&url, true)?;
    backend.apply(&one_put())?;
    inside_a_runtime_calls_are_refused_and_a_drop_is_quiet(backend)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = loop {
        match seccs_backends::open_exclusive(&url, false) {
            Ok(next) => break next,
            Err(BackendError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    };
    assert_eq!(next.get(b"k")?.map(|e| e.count), Some(1));
    Ok(())
}

/// A key of another type than a string where an entry would be (a hash,
/// which nothing of seccs writes) is damage to a walk, which names it, and
/// missing to the counts, as an entry deleted is: a put of its content
/// writes the entry over it, and nothing fails with Redis's `WRONGTYPE`.
#[test]
fn redis_a_key_of_another_type_is_damage_to_a_walk_and_missing_to_the_counts() -> TestResult {
    let server = RedisServer::start()?;
    let prefix = "typed:";
    let backend = seccs_backends::open_exclusive(&redis_url(&server, prefix), true)?;
    let mut batch = one_put();
    batch.put(b"h".to_vec(), b"v".to_vec(), 3);
    backend.apply(&batch)?;
    let full = [prefix.as_bytes(), b"h"].concat();
    let mut raw = server.raw()?;
    redis::cmd("DEL").arg(&full).query::<()>(&mut raw)?;
    redis::cmd("HSET")
        .arg(&full)
        .arg("f")
        .arg("v")
        .query::<()>(&mut raw)?;

    let (mut visited, mut damaged) = (Vec::new(), Vec::new());
    backend.walk(
        &[],
        &mut |key, _| {
            visited.push(key.to_vec());
            Ok(())
        },
        Some(&mut |key, e| damaged.push((key.to_vec(), e.to_string()))),
    )?;
    assert_eq!(visited, [b"k".to_vec()]);
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!(damaged[0].0, b"h");
    assert!(
        damaged[0].1.contains("another type than a string"),
        "{damaged:?}"
    );

    assert_eq!(backend.get_counts(&[b"h", b"k"])?, [None, Some(1)]);
    let mut again = Batch::new();
    again.put(b"h".to_vec(), b"v".to_vec(), 1);
    backend.apply(&again)?;
    assert_eq!(backend.get_counts(&[b"h"])?, [Some(1)]);
    Ok(())
}

/// A Redis at its `maxmemory` limit with eviction off refuses every write
/// that may need more memory. A writer still takes its lease there, and a
/// batch that only deletes and sets counts (what `rm NAME` and `gc`
/// write) still runs, so a full store can be given room; a batch that
/// puts is refused whole, with what to do.
#[test]
fn redis_a_full_server_still_takes_removals_and_refuses_puts_whole() -> TestResult {
    let server = RedisServer::start()?;
    let prefix = "full:";
    {
        let backend = seccs_backends::open_exclusive(&redis_url(&server, prefix), true)?;
        let mut batch = Batch::new();
        for (key, count) in [(&b"a"[..], 2), (b"b", 1), (b"c", 1)] {
            batch.put(key.to_vec(), vec![7; 64], count);
        }
        backend.apply(&batch)?;
    }
    let mut raw = server.raw()?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query::<()>(&mut raw)?;
    // Below what the server already uses: full from here on.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(1)
        .query::<()>(&mut raw)?;
    let refused = redis::cmd("SET").arg("probe").arg(1).query::<()>(&mut raw);
    assert!(
        refused.is_err_and(|e| e.code() == Some("OOM")),
        "the server is full"
    );

    let backend = seccs_backends::open_exclusive(&redis_url(&server, prefix), true)?;
    let mut removal = Batch::new();
    removal.delete(b"b".to_vec());
    removal.set_count(b"a".to_vec(), 1);
    backend.apply(&removal)?;
    assert_eq!(
        backend.get_counts(&[b"a", b"b", b"c"])?,
        [Some(1), None, Some(1)]
    );

    let mut put = Batch::new();
    put.put(b"d".to_vec(), vec![8; 64], 1);
    put.delete(b"c".to_vec());
    put.set_count(b"a".to_vec(), 2);
    let err = backend
        .apply(&put)
        .expect_err("a put on a full server is refused");
    let message = err.to_string();
    assert!(
        message.contains("maxmemory") && message.contains("nothing of this write was written"),
        "{message}"
    );
    assert_eq!(
        backend.get_counts(&[b"a", b"c", b"d"])?,
        [Some(1), Some(1), None],
        "nothing of the refused batch was written"
    );

    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query::<()>(&mut raw)?;
    backend.apply(&put)?;
    assert_eq!(
        backend.get_counts(&[b"a", b"c", b"d"])?,
        [Some(2), None, Some(1)]
    );
    Ok(())
}

/// A Redis user whose ACL leaves out `INFO`, which a writer reads to know
/// whether the server takes script flags, still writes: as on a server
/// before Redis 7, without them.
#[test]
fn redis_a_user_without_info_still_writes() -> TestResult {
    let server = RedisServer::start()?;
    let mut raw = server.raw()?;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("noinfo")
        .arg("on")
        .arg(">noinfoPW")
        .arg("~*")
        .arg("+@all")
        .arg("-info")
        .query::<()>(&mut raw)?;
    let url = format!(
        "redis://noinfo:noinfoPW@{}?prefix=ni:",
        server.url().trim_start_matches("redis://")
    );
    let backend = seccs_backends::open_exclusive(&url, true)?;
    backend.apply(&one_put())?;
    assert_eq!(backend.get_counts(&[b"k"])?, [Some(1)]);
    Ok(())
}
