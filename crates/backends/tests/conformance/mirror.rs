//! `seccs_store::mirror::mirror` (what `seccs copy` runs) with a store on
//! PostgreSQL or S3 on either side, on real servers: PostgreSQL is
//! transactional and walks a table; S3 is not (a batch is applied stage by
//! stage, each delete a request of its own) and walks a listing of objects.
//!
//! Each place is opened as `seccs` opens a store it writes: the writer
//! lease or lock taken (`connect_exclusive`), the store marker written
//! with the key's check value, and every batch guarded by it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use seccs_backends::{PostgresBackend, PostgresConfig, S3Backend, S3Config};
use seccs_core::SecretKey;
use seccs_store::backend::{Backend, Entry};
use seccs_store::catalog::EntryKind;
use seccs_store::mirror::{self, Limits, MirrorError, MirrorFinding, MirrorReport, Newer, Phase};
use seccs_store::{Params, Store, WrapperKind};

use crate::harness::s3_credentials;
use crate::support::{self, TestResult};

fn key() -> SecretKey {
    SecretKey::from_bytes([7; 32])
}

fn other_key() -> SecretKey {
    SecretKey::from_bytes([8; 32])
}

fn params() -> TestResult<Params> {
    Ok(Params::new(256, WrapperKind::AesSiv)?)
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ seed)
        .collect()
}

/// Batches small enough that each pass takes several, and that the
/// removals of a rerun take more than one round of their walk.
fn small() -> Limits {
    Limits {
        batch_bytes: 64 << 10,
        batch_entries: 5,
    }
}

/// A server and the places (tables, prefixes) on it that stores use.
enum Server {
    Postgres(support::PostgresServer),
    S3(support::S3Server),
}

impl Server {
    fn postgres() -> TestResult<Self> {
        Ok(Self::Postgres(support::PostgresServer::start()?))
    }

    fn s3() -> TestResult<Self> {
        Ok(Self::S3(support::S3Server::start()?))
    }

    /// A backend on `place` (a table, or a prefix), as `seccs` opens a
    /// store it writes: exclusive, the table made where it is new.
    fn open(&self, place: &str) -> TestResult<Arc<dyn Backend>> {
        Ok(match self {
            Server::Postgres(server) => {
                let config = PostgresConfig::parse(&server.url(place))?;
                PostgresBackend::create_table(&config)?;
                Arc::new(PostgresBackend::connect_exclusive(config)?)
            }
            Server::S3(server) => Arc::new(S3Backend::connect_exclusive(
                S3Config::parse(&server.url(place))?,
                Some(s3_credentials(support::S3_SECRET_KEY)),
            )?),
        })
    }

    /// A backend on `place` without the writer lock, for reading beside
    /// one that holds it.
    fn open_shared(&self, place: &str) -> TestResult<Arc<dyn Backend>> {
        Ok(match self {
            Server::Postgres(server) => Arc::new(PostgresBackend::connect(PostgresConfig::parse(
                &server.url(place),
            )?)?),
            Server::S3(server) => Arc::new(S3Backend::connect(
                S3Config::parse(&server.url(place))?,
                Some(s3_credentials(support::S3_SECRET_KEY)),
            )?),
        })
    }

    /// Makes the entry at `key` on `place` one its backend cannot decode,
    /// as damage on the server would: a negative count in PostgreSQL, an
    /// object cut shorter than its count in S3.
    fn damage(&self, place: &str, key: &[u8]) -> TestResult {
        match self {
            Server::Postgres(server) => {
                let n = server.client()?.execute(
                    &format!("UPDATE \"{place}\" SET count = -5 WHERE key = $1"),
                    &[&key],
                )?;
                match n {
                    1 => Ok(()),
                    _ => Err("damaged key is missing".into()),
                }
            }
            Server::S3(server) => server.damage(place, key),
        }
    }

    /// The objects under `place` that PUT or DELETE requests wrote since
    /// the last call, but the writer lease's (renewed in the background);
    /// empty where the server does not record them (PostgreSQL).
    fn writes_under(&self, place: &str) -> Vec<String> {
        let Server::S3(server) = self else {
            return Vec::new();
        };
        let lease = format!("{place}/writer-lease");
        server
            .take_writes()
            .into_iter()
            .filter(|w| w.object.starts_with(&format!("{place}/")) && w.object != lease)
            .map(|w| format!("{} {}", w.method, w.object))
            .collect()
    }

    /// A store on `place` under `key`, its marker written (and checked by
    /// every batch) as `seccs init` and each command after it do.
    fn store(&self, place: &str, key: &SecretKey) -> TestResult<Store> {
        let backend = self.open(place)?;
        let check = seccs_store::dir::key_check(key);
        match backend.read_marker()? {
            Some(marker) if marker == check.as_bytes() => {}
            Some(_) => return Err(format!("{place} holds another store's marker").into()),
            None => backend.write_marker(check.as_bytes())?,
        }
        backend.guard_writes_with_marker(check.as_bytes());
        Ok(Store::open(backend, params()?, key)?)
    }
}

/// Every entry of `backend`, by key.
fn entries(backend: &dyn Backend) -> TestResult<BTreeMap<Vec<u8>, Entry>> {
    let mut all = BTreeMap::new();
    backend.for_each(&mut |key, entry| {
        all.insert(key.to_vec(), entry.clone());
        Ok(())
    })?;
    Ok(all)
}

fn put(store: &Store, name: &str, content: &[u8]) -> TestResult {
    store.put_named(&mut &content[..], name, EntryKind::File)?;
    Ok(())
}

/// Puts names of several versions (enough of `log` for more than one
/// catalog record), a content without a name, and removes one version;
/// returns what each live version of each name holds.
fn fill(store: &Store) -> TestResult<BTreeMap<(String, u32), Vec<u8>>> {
    put(store, "docs/a", &bytes(20_000, 1))?;
    put(store, "docs/a", &bytes(20_000, 2))?;
    put(store, "docs/b", &bytes(3_000, 3))?;
    for i in 0..12u8 {
        put(store, "log", &bytes(300, 100 + i))?;
    }
    store.remove_name("log", Some(5))?;
    store.put(&bytes(5_000, 9))?;
    let mut expected = BTreeMap::new();
    expected.insert(("docs/a".to_owned(), 1), bytes(20_000, 1));
    expected.insert(("docs/a".to_owned(), 2), bytes(20_000, 2));
    expected.insert(("docs/b".to_owned(), 1), bytes(3_000, 3));
    for i in 0..12u8 {
        let number = u32::from(i) + 1;
        if number != 5 {
            expected.insert(("log".to_owned(), number), bytes(300, 100 + i));
        }
    }
    Ok(expected)
}

/// Opens `place` on `server` afresh (another connection, the key checked
/// as any open checks it) and reads back every version it lists, which
/// must be exactly `expected`; `verify` finds nothing. The store's marker
/// (a row of the table in PostgreSQL, an object beside the entries in S3)
/// is still there: no walk of the mirror took it for an entry.
fn reads_back(
    server: &Server,
    place: &str,
    expected: &BTreeMap<(String, u32), Vec<u8>>,
) -> TestResult {
    let backend = server.open_shared(place)?;
    assert_eq!(
        backend.read_marker()?,
        Some(seccs_store::dir::key_check(&key()).into_bytes()),
        "the mirror keeps its marker"
    );
    let store = Store::open(backend, params()?, &key())?;
    let mut found = BTreeMap::new();
    for record in store.list("")? {
        for v in &record.versions {
            found.insert((record.name.clone(), v.number), store.get(&v.content_ref)?);
        }
    }
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the mirror lists the source's versions"
    );
    assert!(found == *expected, "every version reads back as it was put");
    let report = store.verify()?;
    assert!(report.is_clean(), "verify on the mirror: {report:?}");
    Ok(())
}

fn run(source: &Store, dest: &Store) -> Result<(MirrorReport, Vec<Phase>), MirrorError> {
    let mut phases = Vec::new();
    let report = mirror::mirror(
        source,
        dest,
        small(),
        Newer::Refuse { last_copy: None },
        &mut |phase, _| {
            if phases.last() != Some(&phase) {
                phases.push(phase);
            }
        },
    )?;
    Ok((report, phases))
}

/// (1) A mirror into an empty store copies every entry as it is stored
/// (key, value, count) and the mirror reads back and verifies clean;
/// (2) a rerun writes nothing; (3) after a name is removed from the source
/// and another put, a rerun removes what the source no longer holds and
/// the entries are exactly equal again; (4) a destination under another
/// key is refused before anything is written.
fn mirrors_exactly(source_server: &Server, dest_server: &Server) -> TestResult {
    let source = source_server.store("source", &key())?;
    let mut expected = fill(&source)?;
    let dest = dest_server.store("dest", &key())?;
    assert!(entries(dest.backend())?.is_empty());
    dest_server.writes_under("dest");

    // (1)
    let source_entries = entries(source.backend())?;
    let n = source_entries.len() as u64;
    assert!(n > 20, "a source of several batches: {n} entries");
    let (report, phases) = run(&source, &dest)?;
    assert!(report.is_exact(), "{report:?}");
    assert_eq!(
        (report.read, report.copied, report.present, report.removed),
        (n, n, 0, 0),
        "{report:?}"
    );
    assert!(report.bytes_written > 0);
    assert_eq!(
        phases,
        [
            Phase::CheckingSource,
            Phase::CheckingNewer,
            Phase::Nodes,
            Phase::Records
        ],
        "{phases:?}"
    );
    if let Server::S3(_) = dest_server {
        // What (4) counts on to see that nothing is written.
        assert_eq!(dest_server.writes_under("dest").len() as u64, n);
    }
    assert!(
        entries(dest.backend())? == source_entries,
        "every entry of the mirror is the source's, with its count"
    );
    reads_back(dest_server, "dest", &expected)?;

    // (2)
    let (again, _) = run(&source, &dest)?;
    assert!(again.is_exact(), "{again:?}");
    assert_eq!(
        (
            again.read,
            again.copied,
            again.present,
            again.removed,
            again.bytes_written
        ),
        (n, 0, n, 0, 0),
        "a rerun on an exact mirror writes nothing"
    );
    assert_eq!(dest_server.writes_under("dest"), Vec::<String>::new());

    // (3) One of the entries the source no longer holds is damaged in the
    // mirror: it goes with the rest.
    let held_before = entries(source.backend())?;
    source.remove_name("docs/a", None)?;
    expected.retain(|(name, _), _| name != "docs/a");
    put(&source, "new", &bytes(30_000, 50))?;
    expected.insert(("new".to_owned(), 1), bytes(30_000, 50));
    let source_entries = entries(source.backend())?;
    let stale: Vec<&Vec<u8>> = held_before
        .keys()
        .filter(|k| !source_entries.contains_key(*k))
        .collect();
    let damaged = stale.first().ok_or("docs/a left no entry behind")?;
    dest_server.damage("dest", damaged)?;
    let (changed, phases) = run(&source, &dest)?;
    assert!(changed.is_exact(), "{changed:?}");
    assert!(changed.copied > 0, "{changed:?}");
    assert!(
        changed.removed > small().batch_entries as u64,
        "more than a batch of docs/a's nodes removed: {changed:?}"
    );
    assert_eq!(changed.removed, stale.len() as u64, "{changed:?}");
    assert!(phases.contains(&Phase::StaleNodes), "{phases:?}");
    assert!(
        entries(dest.backend())? == source_entries,
        "after the rerun the mirror holds exactly the source's entries"
    );
    assert_eq!(changed.read, source_entries.len() as u64);
    reads_back(dest_server, "dest", &expected)?;

    // (4) Over the mirror itself, and over an empty place.
    let before = entries(dest.backend())?;
    drop(dest);
    let wrong = Store::new_unchecked(dest_server.open("dest")?, params()?, &other_key());
    dest_server.writes_under("dest");
    assert!(
        matches!(run(&source, &wrong), Err(MirrorError::KeyDiffers)),
        "a mirror under another key is refused"
    );
    assert_eq!(dest_server.writes_under("dest"), Vec::<String>::new());
    drop(wrong);
    assert!(entries(dest_server.open_shared("dest")?.as_ref())? == before);
    let empty = dest_server.store("other", &other_key())?;
    dest_server.writes_under("other");
    let e = run(&source, &empty)
        .err()
        .ok_or("an empty store under another key was not refused")?;
    assert!(matches!(e, MirrorError::KeyDiffers), "{e}");
    assert!(e.to_string().contains("nothing was written"), "{e}");
    assert_eq!(dest_server.writes_under("other"), Vec::<String>::new());
    assert!(entries(empty.backend())?.is_empty());
    assert_eq!(
        empty.backend().read_marker()?,
        Some(seccs_store::dir::key_check(&other_key()).into_bytes())
    );
    Ok(())
}

#[test]
fn postgres_into_s3() -> TestResult {
    mirrors_exactly(&Server::postgres()?, &Server::s3()?)
}

#[test]
fn s3_into_postgres() -> TestResult {
    mirrors_exactly(&Server::s3()?, &Server::postgres()?)
}

/// Objects under an S3 destination's prefix that are no entries (another
/// application's files, debris) cannot be removed by a key: the mirror
/// leaves them and names each, whatever its name's length, and is not
/// exact while they are there. A name as long as a node's key (16 bytes
/// under AES-SIV) or a catalog record's (33, starting with `N`) must not
/// count as removed because a delete of its bytes as a key found nothing.
#[test]
fn strays_in_an_s3_destination_are_findings_not_removals() -> TestResult {
    let server = Server::s3()?;
    let source = server.store("source", &key())?;
    fill(&source)?;
    let dest = server.store("dest", &key())?;
    let (report, _) = run(&source, &dest)?;
    assert!(report.is_exact(), "{report:?}");
    let Server::S3(s3) = &server else {
        return Err("not S3".into());
    };
    let stray_names = |report: &MirrorReport| -> Vec<String> {
        let mut names: Vec<String> = report
            .findings
            .iter()
            .map(|f| match f {
                MirrorFinding::DestUnreadable { key, detail } => {
                    assert!(detail.contains("is not an entry"), "{detail}");
                    String::from_utf8(seccs_core::hexenc::decode(key).unwrap_or_default())
                        .unwrap_or_default()
                }
                other => format!("{other}"),
            })
            .collect();
        names.sort();
        names
    };
    // Named as long as a key: the case that read as removed.
    let like_keys = ["N-a-name-as-long-as-a-catalog-key", "notes-for-backup"];
    assert_eq!(like_keys.map(str::len), [33, 16]);
    for name in like_keys {
        std::fs::write(s3.object_dir("dest").join(name), b"not an entry")?;
    }
    let (report, _) = run(&source, &dest)?;
    assert_eq!(stray_names(&report), like_keys, "{report:?}");
    assert!(!report.is_exact(), "{report:?}");
    assert_eq!(report.removed, 0, "{report:?}");
    // And one of another length, beside them.
    std::fs::write(s3.object_dir("dest").join("README.txt"), b"not an entry")?;
    let (report, _) = run(&source, &dest)?;
    assert_eq!(
        stray_names(&report),
        [
            "N-a-name-as-long-as-a-catalog-key",
            "README.txt",
            "notes-for-backup"
        ],
        "{report:?}"
    );
    assert_eq!((report.copied, report.removed), (0, 0), "{report:?}");
    for name in like_keys.iter().chain(&["README.txt"]) {
        assert!(s3.object_dir("dest").join(name).exists(), "{name} is left");
    }
    Ok(())
}

/// A mirror into S3 cut off part way (a PUT refused: a node's in the pass
/// of nodes, then a catalog record's in the pass of records) fails naming
/// the destination; every version the mirror lists meanwhile reads back,
/// S3 applying each batch stage by stage, not as one; and a rerun ends
/// with an exact mirror.
#[test]
fn a_mirror_into_s3_cut_off_part_way_stays_readable_and_a_rerun_finishes() -> TestResult {
    let server = Server::s3()?;
    let Server::S3(s3) = &server else {
        return Err("not S3".into());
    };
    let source = server.store("source", &key())?;
    let mut expected = fill(&source)?;
    let dest = server.store("dest", &key())?;
    run(&source, &dest)?;
    // The source changes after a first mirror.
    let before = entries(dest.backend())?;
    source.remove_name("docs/a", None)?;
    expected.retain(|(name, _), _| name != "docs/a");
    put(&source, "docs/b", &bytes(25_000, 60))?;
    expected.insert(("docs/b".to_owned(), 2), bytes(25_000, 60));
    put(&source, "new", &bytes(25_000, 61))?;
    expected.insert(("new".to_owned(), 1), bytes(25_000, 61));
    let source_entries = entries(source.backend())?;
    let new: Vec<&Vec<u8>> = source_entries
        .keys()
        .filter(|k| !before.contains_key(*k))
        .collect();
    let node = new
        .iter()
        .find(|k| !seccs_store::catalog::is_catalog_key(k))
        .ok_or("no new node")?;
    let record = new
        .iter()
        .find(|k| seccs_store::catalog::is_catalog_key(k))
        .ok_or("no new catalog record")?;
    for cut in [node, record] {
        let refused = s3.refuse(
            "PutObject",
            "dest",
            &hex::encode(cut),
            s3s::S3ErrorCode::AccessDenied,
        );
        let result = run(&source, &dest);
        refused.wait_reached(Duration::from_secs(10))?;
        drop(refused);
        let e = result.err().ok_or("a mirror cut off part way succeeded")?;
        assert!(matches!(e, MirrorError::Dest(_)), "{e:?}");
        assert!(
            e.to_string().starts_with("cannot write the destination"),
            "{e}"
        );
        let partial = Store::open(server.open_shared("dest")?, params()?, &key())?;
        for record in partial.list("")? {
            for v in &record.versions {
                partial
                    .get(&v.content_ref)
                    .map_err(|e| format!("{}@{} does not read back: {e}", record.name, v.number))?;
            }
        }
    }
    // In batches of the default size: the removals of the small batches
    // restart their walk, which on S3 reads every object, at each batch.
    let report = mirror::mirror(
        &source,
        &dest,
        Limits::default(),
        Newer::Refuse { last_copy: None },
        &mut |_, _| {},
    )?;
    assert!(report.is_exact(), "{report:?}");
    assert!(report.removed > 0, "{report:?}");
    assert!(entries(dest.backend())? == source_entries);
    reads_back(&server, "dest", &expected)
}
