//! The persistent embedded backend: a `fjall` database in one directory.
//!
//! # Why fjall
//!
//! `fjall` 3.1 (LSM tree) and `redb` 4.6 (copy-on-write B-tree) were measured
//! on this store's workload by `cargo bench -p seccs-store --bench
//! embedded_choice`: 200,000 entries of 16-byte random keys and incompressible
//! values (sealed nodes), one durable atomic batch per 4,096 writes, on the
//! 2-core project machine (while other builds ran, so read the ratios, not
//! the absolute rates):
//!
//! | engine | value | insert/s | count updates/s | get_many reads/s | get_counts reads/s | disk / payload |
//! |---|---:|---:|---:|---:|---:|---:|
//! | fjall, 2 keyspaces | 300 B | 52,949 | 34,775 | 34,481 | 175,513 | 2.13 |
//! | fjall, count in value | 300 B | 91,237 | 24,571 | 62,158 | 92,104 | 2.25 |
//! | redb, 2 tables | 300 B | 13,443 | 27,180 | 124,762 | 507,762 | 1.96 |
//! | fjall, 2 keyspaces | 4 KiB | 8,456 | 15,324 | 9,357 | 203,957 | 2.38 |
//! | fjall, count in value | 4 KiB | 10,550 | 3,965 | 9,768 | 23,431 | 2.08 |
//! | redb, 2 tables | 4 KiB | 6,624 | 25,712 | 70,586 | 373,833 | 2.03 |
//!
//! A put is the path the project's targets bind (embedded put ≥ 0.3× the
//! AES-SIV floor), and it is made of inserts of new nodes: fjall inserts 4×
//! as fast as redb with 300-byte nodes and 1.3× as fast with 4 KiB nodes,
//! because a durable batch is one sequential journal append plus one sync,
//! where redb rewrites and syncs a path of B-tree pages per commit. redb reads
//! faster (its B-tree pages stay in its own cache; fjall's default 32 MiB
//! block cache holds a fraction of the tables), and both use about 2× the
//! payload on disk right after writing (fjall's figure includes journals not
//! yet flushed and level-0 tables not yet compacted; it falls as compaction
//! runs). A 2× read gap on a path that also decrypts every node matters less
//! than a 4× write gap, and fjall is the project's stated default, so fjall it
//! is. (The table compares both engines through their journals; bulk writes
//! now skip fjall's, see below.)
//!
//! # Tuning for puts
//!
//! Profiles of `seccs bench` (256 MiB, S = 4096) led to four settings, each
//! measured there (embedded put went from 0.13× to 0.34× the AES-SIV floor):
//! - Key-value separation: sealed values go to blob files when they are
//!   written to tables, and compactions move only keys and small handles,
//!   where before they rewrote every value at every level.
//! - One worker thread (see `WORKER_THREADS` for the fjall behaviour that
//!   made two cost a core).
//! - A put's intermediate batches defer their sync to the put's last batch
//!   ([`Batch::defer_durability`]): one sync per put, not one per 4 MiB.
//! - Bulk writes bypass the journal (see below): each byte of a node is
//!   written once, and the overlay's bound keeps a put of any size under
//!   128 MiB resident.
//! - Partitioned filters and indexes at every level. A put looks up the
//!   count of every node it seals, and with whole-table filters each lookup
//!   that missed the block cache read the table's filter again (138 KB
//!   blocks, gigabytes of reads in a 2 GiB put); a partition is one block.
//!   A 2 GiB put of random bytes went from 28 s to 16 s and from 87 to
//!   66 MiB resident.
//!
//! # Layout
//!
//! One keyspace, `entries`, holds both records of an entry under tagged
//! keys: `'c' ‖ key` → count (8 bytes, big-endian) and `'v' ‖ key` → value
//! (block compression off: values are ciphertext). Counts sort before
//! values, so every count and every value form one contiguous, ordered
//! run each, and a walk reads the two runs side by side. Values of 1 KiB and
//! more go to blob files (key-value separation), so compactions move keys,
//! counts and small handles, never sealed nodes. One keyspace is what makes
//! a bulk ingestion (below) atomic: fjall ingests one keyspace at a time.
//! An entry exists when both records do; one without the other is reported
//! as [`BackendError::Corrupt`], as is a count that is not 8 bytes long.
//! [`Backend::usage`] counts the value records and, as the trait's
//! [`Usage`] defines, adds for each the key's length (without its tag),
//! the value's, and 8 bytes for the count.
//!
//! Stores written before this layout kept values and counts in two
//! keyspaces, `nodes` and `counts`; [`EmbeddedBackend::open`] moves them
//! into `entries` in one ingestion and then drops them (a crash in between
//! is finished at the next open).
//!
//! # One write path: ingestion
//!
//! fjall writes a batch to its journal and again to a table when the
//! memtable is flushed, and it keeps a journal file until the file passes
//! 64 MB, whatever has been flushed: a store of 25 MiB kept about 30 MiB of
//! journal beside its tables. Batches therefore skip the journal: each is
//! folded into an in-memory overlay that every read consults first, and the
//! overlay is written as one fjall ingestion (new tables and blob files,
//! synced, registered in one atomic version change) when it holds
//! `GROUP_BYTES` (8 MiB), when a durable batch arrives, at
//! [`Backend::flush`], before a walk, and when the backend is dropped.
//!
//! Earlier builds sent small durable batches (an `rm`, a small put)
//! through the journal instead. A store written both ways was seen to
//! answer point reads with records that later ingestions had replaced:
//! after a large batch of deletions, the old count of a deleted entry came
//! back ("a count but no value"), while iteration saw the right state. So
//! every batch is ingested now, and [`EmbeddedBackend::open`] settles a
//! store an earlier build wrote, once: it moves what fjall recovered from
//! the journal into a table, closes the database and empties its journal,
//! and merges every table. The journal goes before any compaction: fjall
//! keeps a journal file until it passes 64 MB and, at every open, replays
//! each journaled batch whose sequence number is above the highest one in
//! the tables. A compaction that drops removed entries with their
//! tombstones can take those highest numbers away, and a journal kept after
//! the merge then brought old puts and counts back over later removals.
//!
//! The file `seccs-ingest-only` in the database directory (a store's
//! `DIR/db/seccs-ingest-only`) says that every batch of the database is in
//! its tables and none in its journal, which this build keeps empty. Every
//! store has it once this build has opened it: a fresh one gets it at its
//! first open (there is nothing to merge), one an earlier build wrote once
//! its journal is in its tables. Its text says whether the tables are
//! merged yet (`every batch of this database is ingested` once they are).
//! Without it an open settles first, and a database that lost its journal
//! files is refused rather than given an empty journal back (the journal
//! may have held writes). A journal that holds batches beside the marker
//! was written before it (the marker's build stopped before emptying it,
//! or was a build that kept it) and is emptied unread before fjall opens
//! the database; one written after it (an earlier build opened the store
//! again) settles the store again.
//!
//! # Durability, atomicity, locking
//!
//! An ingestion becomes visible, in memory and on disk, in one version
//! change. The overlay holds
//! whole batches in the order they were applied, so a crash leaves the
//! store as it was after some batch: every batch wholly present or wholly
//! absent, and a lost batch is always one applied after every kept one (a
//! test kills a writer process repeatedly and checks this). A durable
//! batch is on disk when `apply` returns. A deferred batch, or any batch
//! while [`EmbeddedBackend::set_sync_each_batch`] is off, is on disk only
//! after the next durable batch, [`Backend::flush`], or the overlay filling
//! up: a crash of the process loses those batches, whole. A batch whose
//! ingestion fails (a full disk) is taken back out of the overlay and
//! `apply` returns the error: the batch is not applied (a read during the
//! attempt may have seen it), and the batches accepted before it stay
//! pending, for the next ingestion. (fjall registers an ingestion by
//! renaming a version file into place: if a sync after the rename fails,
//! the failed ingestion is on disk until the next version change, and a
//! crash before that may let a restart find the batch, whole.) `fjall` gives
//! every write of a batch the same sequence number, so `apply` folds the
//! batch into one net write per key first, in batch order. `fjall` holds an
//! advisory lock on `DIR/lock` while the database is open; a second open,
//! from this process or another, gets [`BackendError::Locked`].

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};

use fjall::config::{CompressionPolicy, PartitioningPolicy};
use fjall::{
    CompressionType, Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode,
    Readable, Slice, Snapshot,
};

use rayon::prelude::*;
use rustix::io::Errno;

use super::{Backend, BackendError, Batch, Damaged, Entry, Op, Usage, Visitor};

/// The backend's name in messages.
const NAME: &str = "embedded";
/// The keyspace of every record: tagged key → count or value.
const ENTRIES: &str = "entries";
/// The keyspaces of the layout before `entries`, migrated at open.
const LEGACY_NODES: &str = "nodes";
const LEGACY_COUNTS: &str = "counts";
/// Tag of an entry's count record (sorts before values).
const COUNT_TAG: u8 = b'c';
/// Tag of an entry's value record.
const VALUE_TAG: u8 = b'v';

/// Block cache of the database.
const CACHE_BYTES: u64 = 8 << 20;
/// Largest in-memory table before it is flushed to disk (only what an
/// earlier build journaled reaches it).
const MEMTABLE_BYTES: u64 = 8 << 20;
/// All memtables together, sealed ones waiting for the flusher included.
const WRITE_BUFFER_BYTES: u64 = 16 << 20;
/// Bytes of pending writes at which the overlay is ingested: large enough
/// that a tree of small files makes few, large tables; small enough to keep
/// a put of any size well under 128 MiB resident.
const GROUP_BYTES: usize = 8 << 20;
/// The name fjall 3.1 gives a database's first journal file.
const FIRST_JOURNAL: &str = "0.jnl";
/// The file whose presence says every batch of the database is in its
/// tables and none is in its journal (see `settle_mixed_writes`).
const INGEST_ONLY_MARKER: &str = "seccs-ingest-only";
/// The marker's text once the tables are merged too (the only text builds
/// before this one wrote).
const MARKER_MERGED: &[u8] = b"every batch of this database is ingested\n";
/// The marker's text while the tables still wait for their one merge.
const MARKER_UNMERGED: &[u8] =
    b"every batch of this database is in its tables, which are not merged yet\n";
/// Where the marker's new text is written before it is renamed into place.
const MARKER_DRAFT: &str = "seccs-ingest-only.draft";
/// The store's descriptor ([`Backend::read_descriptor`]), beside fjall's
/// own files in the database's directory.
const DESCRIPTOR_FILE: &str = "seccs-store-descriptor";
/// Where the descriptor's new text is written before it is renamed into
/// place.
const DESCRIPTOR_DRAFT: &str = "seccs-store-descriptor.draft";
/// Most opens of the database one `open` makes: one that moves journaled
/// batches into tables, and one after their journal is emptied.
const OPEN_PASSES: usize = 2;
/// Longest key the backend stores: fjall takes keys of 1 to `u16::MAX`
/// bytes, and one is the tag.
const MAX_KEY_LEN: usize = u16::MAX as usize - 1;
/// Longest wait for the flush worker to write a memtable out: one is at
/// most `MEMTABLE_BYTES`, which a working disk writes in well under a second.
const FLUSH_WAIT: Duration = Duration::from_secs(30);
/// Most major compactions one `reclaim_space` runs (see there).
const RECLAIM_ROUNDS: usize = 8;
/// Lookups in one `get_values` call from which they run in parallel.
const PARALLEL_LOOKUPS: usize = 16;
/// Background threads for flushes and compactions. One: in fjall 3.1 a pool
/// of two or more has worker 0 hand every compaction message back to the
/// queue, and while the other worker compacts, worker 0 spins receiving and
/// re-sending it (a profile of a 256 MiB put showed a fifth of all cycles
/// there). With one worker flushes and compactions run in turn.
const WORKER_THREADS: usize = 1;
/// Most table and blob files fjall keeps open, its own default on Linux.
const MOST_CACHED_FILES: usize = 900;
/// Fewest files fjall's descriptor cache accepts (it panics below).
const FEWEST_CACHED_FILES: usize = 10;

/// How many table and blob files fjall may keep open: half of this
/// process's soft open-file limit, so that the rest of the process (the
/// files a `put DIR` reads, a backup's sockets) keeps the other half, and
/// at most fjall's default. fjall's own default of 900 ignores the limit:
/// a store of a few GiB has hundreds of blob files, and a get of a large
/// content kept one open per blob file read until it failed with "Too many
/// open files" part-way through its output under a soft limit of 1,024 or
/// less. Files beyond the number are closed and opened again as needed.
fn cached_files() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    soft.map_or(MOST_CACHED_FILES, |n| {
        usize::try_from(n / 2).unwrap_or(MOST_CACHED_FILES)
    })
    .clamp(FEWEST_CACHED_FILES, MOST_CACHED_FILES)
}

/// `tag ‖ key`.
fn tagged(tag: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(tag);
    out.extend_from_slice(key);
    out
}

/// Whether the backend can hold `key` (reads of other keys find nothing).
fn storable(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN
}

/// Writes applied but not yet in fjall: tagged key → new record (`None`:
/// removed), the net effect of whole batches in the order they came.
#[derive(Default)]
struct Overlay {
    writes: BTreeMap<Slice, Option<Slice>>,
    /// Bytes of the pending keys and records, for the ingestion threshold.
    bytes: usize,
}

impl Overlay {
    /// The record at `tagged` (the tagged form of `key`) when the overlay
    /// decides it: a pending write, or nothing for a key the backend cannot
    /// hold. `None` when the tables decide.
    fn decides(&self, key: &[u8], tagged: &[u8]) -> Option<Option<Slice>> {
        if !storable(key) {
            return Some(None);
        }
        self.writes.get(tagged).cloned()
    }

    /// Sets the pending record of `key`; returns what it replaced (`None`:
    /// the key had none pending).
    fn insert(&mut self, key: Slice, value: Option<Slice>) -> Option<Option<Slice>> {
        let size = |value: &Option<Slice>| key.len() + value.as_ref().map_or(0, |v| v.len());
        self.bytes += size(&value);
        // A rewrite of a pending key replaces its record: count it once.
        let replaced = self.writes.insert(key.clone(), value);
        if let Some(replaced) = &replaced {
            self.bytes -= size(replaced);
        }
        replaced
    }

    /// Takes a batch's writes back out: puts back what they replaced and
    /// the byte count from before them.
    fn undo(&mut self, undo: Undo) {
        for (key, replaced) in undo.replaced.into_iter().rev() {
            match replaced {
                Some(record) => {
                    self.writes.insert(key, record);
                }
                None => {
                    self.writes.remove(&key);
                }
            }
        }
        self.bytes = undo.bytes;
    }
}

/// What one batch's writes replaced in the overlay, to take them back
/// out if the batch's ingestion fails.
struct Undo {
    /// The overlay's byte count before the batch.
    bytes: usize,
    /// Each written key, with what [`Overlay::insert`] returned for it.
    replaced: Vec<(Slice, Option<Option<Slice>>)>,
}

/// What [`EmbeddedBackend::settle_mixed_writes`] left to do.
enum Settled {
    /// Nothing: the database is ready.
    Done,
    /// The journal's batches are in the tables now, and the journal must
    /// be emptied before the database is used.
    JournalFlushed,
}

/// A content store's entries in a `fjall` database on local disk.
///
/// One process at a time: [`EmbeddedBackend::open`] takes the database's
/// lock file, and a second open, in this process or another, fails with
/// [`BackendError::Locked`] until the first handle is dropped.
///
/// By default every [`Backend::apply`] is durable when it returns. A caller
/// that commits many small batches can turn that off with
/// [`EmbeddedBackend::set_sync_each_batch`] and call [`Backend::flush`] once
/// at the end; each batch stays atomic either way (see the module docs).
pub struct EmbeddedBackend {
    db: Database,
    entries: Keyspace,
    path: PathBuf,
    sync_each_batch: AtomicBool,
    /// Serialises writers (`apply` and ingestions): a `SetCount` checks that
    /// its entry exists, and that check must see the state the batch is
    /// applied to.
    writer: Mutex<()>,
    /// Pending writes. Readers hold the read lock while they take their
    /// snapshot and read, so an ingestion cannot move records from the
    /// overlay to the tables between the two.
    overlay: RwLock<Overlay>,
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend")
            .field("path", &self.path)
            .field("sync_each_batch", &self.sync_each_batch())
            .finish_non_exhaustive()
    }
}

/// Refuses `dir` when it is a store directory's root, which holds
/// `config.toml` beside the database's directory `db`, rather than a
/// database's directory.
fn refuse_store_directory(dir: &Path) -> Result<(), BackendError> {
    let db = dir.join("db");
    if dir.join("config.toml").is_file() && db.is_dir() {
        return Err(BackendError::other(
            NAME,
            format_args!(
                "{} is a store directory (config.toml beside db/), not a database: open its \
                 database {}, or the store through StoreDir; nothing was created",
                dir.display(),
                db.display()
            ),
        ));
    }
    Ok(())
}

impl EmbeddedBackend {
    /// Opens the database in `dir`, creating the directory and an empty
    /// database if they are missing, and moving a store of the earlier
    /// two-keyspace layout into the current one.
    ///
    /// # Errors
    ///
    /// [`BackendError::Locked`] if another process (or another handle in this
    /// process) has the database open; [`BackendError::Corrupt`] if the files
    /// in `dir` are not a readable database of this format;
    /// [`BackendError::Other`] for I/O errors, and for a store directory's
    /// root (a `config.toml` beside a `db` directory) given as `dir`: its
    /// database is `dir/db`, and an empty one made beside it would take
    /// writes that nothing reads. Nothing is created then.
    pub fn open(dir: &Path) -> Result<Self, BackendError> {
        refuse_store_directory(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| {
            BackendError::other(NAME, format_args!("cannot create {}: {e}", dir.display()))
        })?;
        Self::open_database(dir, false)
    }

    /// Opens the database of an existing store in `dir`, refusing to start
    /// an empty one in its place.
    ///
    /// fjall creates what is missing: a deleted directory, or a keyspace
    /// whose files were deleted or damaged, would otherwise come back as an
    /// empty store that every command, `verify` included, reads as one that
    /// holds nothing. A store's database is made when the store is, so
    /// here a missing one is damage.
    ///
    /// # Errors
    ///
    /// As [`EmbeddedBackend::open`], and [`BackendError::Corrupt`] if `dir`
    /// or the store's keyspace in it is missing.
    pub fn open_existing(dir: &Path) -> Result<Self, BackendError> {
        refuse_store_directory(dir)?;
        if !dir.is_dir() {
            return Err(corrupt(format_args!(
                "the store's database {} is missing; not starting an empty one in its place",
                dir.display()
            )));
        }
        Self::open_database(dir, true)
    }

    fn open_database(dir: &Path, existing: bool) -> Result<Self, BackendError> {
        if existing {
            check_layout(dir)?;
            restore_lost_journal(dir)?;
        }
        check_version_files(dir)?;
        for _ in 0..OPEN_PASSES {
            restore_lost_lock(dir)?;
            let journaled = drop_flushed_journal(dir)?;
            let backend = Self::open_once(dir, existing)?;
            match backend
                .settle_mixed_writes(journaled)
                .map_err(|e| in_dir(e, dir))?
            {
                Settled::Done => return Ok(backend),
                Settled::JournalFlushed => {
                    // fjall must not replay the journal again: close the
                    // database, empty its journal, open it once more.
                    drop(backend);
                    empty_journal(dir)?;
                }
            }
        }
        Err(BackendError::other(
            NAME,
            format_args!(
                "the database {} still held journaled writes after {OPEN_PASSES} opens",
                dir.display()
            ),
        ))
    }

    /// Opens fjall's database in `dir` and the store's keyspace in it.
    fn open_once(dir: &Path, existing: bool) -> Result<Self, BackendError> {
        // fjall 3.1 marks the write-buffer limit deprecated pending a
        // runtime setting; it bounds memtables of journaled batches.
        #[allow(deprecated)]
        let db = Database::builder(dir)
            .cache_size(CACHE_BYTES)
            .worker_threads(WORKER_THREADS)
            .max_write_buffer_size(Some(WRITE_BUFFER_BYTES))
            .max_cached_files(Some(cached_files()))
            .open()
            .map_err(|e| name_damaged_files(open_error(e, dir), dir))?;
        if existing
            && ![ENTRIES, LEGACY_NODES, LEGACY_COUNTS]
                .iter()
                .any(|name| db.keyspace_exists(name))
        {
            return Err(corrupt(format_args!(
                "the database {} holds no store data: its files were deleted or damaged \
                 (fjall drops a keyspace whose files are incomplete); not starting an empty \
                 store in its place",
                dir.display()
            )));
        }
        // Values are ciphertext: compressing them costs time and saves
        // nothing. Filters stay on: a put asks for the counts of nodes that
        // are mostly new.
        let entries = db
            .keyspace(ENTRIES, || {
                KeyspaceCreateOptions::default()
                    .data_block_compression_policy(CompressionPolicy::disabled())
                    .filter_block_partitioning_policy(PartitioningPolicy::all(true))
                    .index_block_partitioning_policy(PartitioningPolicy::all(true))
                    .with_kv_separation(Some(
                        KvSeparationOptions::default().compression(CompressionType::None),
                    ))
                    .max_memtable_size(MEMTABLE_BYTES)
            })
            .map_err(|e| name_damaged_files(open_error(e, dir), dir))?;
        migrate_legacy(&db, &entries, dir).map_err(|e| in_dir(e, dir))?;
        Ok(Self {
            db,
            entries,
            path: dir.to_owned(),
            sync_each_batch: AtomicBool::new(true),
            writer: Mutex::new(()),
            overlay: RwLock::new(Overlay::default()),
        })
    }

    /// Moves what fjall recovered from its journal into a table, and
    /// merges every table once, in a database that builds before this one
    /// wrote (no marker) or whose journal was written after its marker
    /// (`journaled`: an earlier build ran on it again); then leaves the
    /// marker so that it happens once. Those builds wrote small batches
    /// through fjall's journal and large ones by ingestion.
    ///
    /// The journal must be emptied before anything compacts: fjall keeps a
    /// journal file until it passes 64 MB, and at every open replays each
    /// of its batches whose sequence number is above the highest one in the
    /// tables. A compaction that drops removed entries with their
    /// tombstones can take the highest numbers away, and the next open
    /// then replayed old puts and counts over what this build had removed
    /// or changed since. So the batches go to a table first, the marker
    /// says so ([`MARKER_UNMERGED`]), and [`EmbeddedBackend::open`] closes
    /// the database and empties its journal before it opens it again, and
    /// only then the tables are merged: a store written both ways was seen
    /// to answer point reads with a record that a later ingestion had
    /// replaced (fjall reads the tables newest first, and the table made
    /// of the journal counts as newest), and a full merge resolves every
    /// key by sequence number. This build writes every batch by ingestion.
    fn settle_mixed_writes(&self, journaled: bool) -> Result<Settled, BackendError> {
        let marker = self.path.join(INGEST_ONLY_MARKER);
        let text = match std::fs::read(&marker) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(BackendError::other(
                    NAME,
                    format_args!("cannot read {}: {e}", marker.display()),
                ));
            }
        };
        if text.is_none() || journaled {
            // A new database has nothing to move or merge.
            let written = self.entries.table_count() > 0
                || self.entries.sealed_memtable_count() > 0
                || !self.entries.is_empty().map_err(|e| self.fail(e))?;
            if !written && !journaled {
                self.write_marker(MARKER_MERGED)?;
                return Ok(Settled::Done);
            }
            {
                let _writer = self.lock_writer();
                self.flush_memtable()?;
            }
            self.db
                .persist(PersistMode::SyncAll)
                .map_err(|e| self.fail(e))?;
            self.write_marker(MARKER_UNMERGED)?;
            return Ok(Settled::JournalFlushed);
        }
        if text.as_deref() == Some(MARKER_UNMERGED) {
            self.reclaim_space()?;
            self.write_marker(MARKER_MERGED)?;
        }
        Ok(Settled::Done)
    }

    /// The store descriptor ([`Backend::read_descriptor`]) kept in the
    /// database directory `db`, read without opening the database: for a
    /// store being attached, whose parameters it gives.
    pub fn read_descriptor_in(db: &Path) -> Result<Option<Vec<u8>>, BackendError> {
        let path = db.join(DESCRIPTOR_FILE);
        // Without blocking: a FIFO put there must not hang the open.
        let opened = std::os::unix::fs::OpenOptionsExt::custom_flags(
            File::options().read(true),
            rustix::fs::OFlags::NONBLOCK.bits() as i32,
        )
        .open(&path);
        let file = match opened {
            // Anything but a file is no descriptor: read as an empty
            // value, which is not one, and replaced by the next writer.
            Ok(file) if !file.metadata().is_ok_and(|m| m.is_file()) => return Ok(Some(Vec::new())),
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(BackendError::other(
                    NAME,
                    format_args!("cannot read {}: {e}", path.display()),
                ));
            }
        };
        // One byte more than any descriptor, so that a longer file is
        // seen as one and refused, not cut short.
        let limit = super::MAX_BESIDE_ENTRIES as u64 + 1;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, limit), &mut bytes).map_err(
            |e| BackendError::other(NAME, format_args!("cannot read {}: {e}", path.display())),
        )?;
        Ok(Some(bytes))
    }

    /// Replaces the marker's text, atomically and durably.
    fn write_marker(&self, text: &[u8]) -> Result<(), BackendError> {
        self.replace_file(INGEST_ONLY_MARKER, MARKER_DRAFT, text)
    }

    /// Replaces the text of the file `name` in the database's directory,
    /// atomically and durably, through the file `draft`.
    fn replace_file(&self, name: &str, draft: &str, text: &[u8]) -> Result<(), BackendError> {
        let draft = self.path.join(draft);
        let marker = self.path.join(name);
        File::create(&draft)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, text)?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&draft, &marker))
            .and_then(|()| File::open(&self.path)?.sync_all())
            .map_err(|e| {
                BackendError::other(NAME, format_args!("cannot write {}: {e}", marker.display()))
            })
    }

    /// Maps an error of fjall on this database, naming its directory.
    fn fail(&self, e: fjall::Error) -> BackendError {
        map_error(e, &self.path)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether each [`Backend::apply`] is durable before it returns
    /// (default `true`).
    pub fn sync_each_batch(&self) -> bool {
        self.sync_each_batch.load(Ordering::Relaxed)
    }

    /// Chooses whether each [`Backend::apply`] is durable before it
    /// returns. With `false`, a batch is still atomic and visible to every
    /// reader when `apply` returns, but it reaches the disk only with the
    /// next durable batch, [`Backend::flush`], or when pending writes reach
    /// 8 MiB; a crash before then loses it whole, together with
    /// every batch applied after it.
    pub fn set_sync_each_batch(&self, sync: bool) {
        self.sync_each_batch.store(sync, Ordering::Relaxed);
    }

    /// Bytes the database occupies on disk (journals and tables), for
    /// space-amplification figures.
    ///
    /// # Errors
    ///
    /// [`BackendError::Other`] if the directory cannot be read.
    pub fn disk_bytes(&self) -> Result<u64, BackendError> {
        self.db.disk_space().map_err(|e| self.fail(e))
    }

    /// Writes the memtable (journaled batches) out as a table and waits,
    /// a bounded time, until the flush worker has done so: a compaction
    /// sees only tables, so deletes still in memory would keep what they
    /// delete on disk. (fjall's own `rotate_memtable_and_wait` polls
    /// without end, and a flush that fails, say on a full disk, never ends.)
    fn flush_memtable(&self) -> Result<(), BackendError> {
        self.entries.rotate_memtable().map_err(|e| self.fail(e))?;
        let deadline = Instant::now() + FLUSH_WAIT;
        while self.entries.sealed_memtable_count() > 0 {
            if Instant::now() >= deadline {
                return Err(BackendError::other(
                    NAME,
                    format_args!(
                        "the database did not write its memory table to disk within {} s \
                         (is the disk full?)",
                        FLUSH_WAIT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // The guarded state is `()`: a panic in another writer leaves nothing
        // half-built here (an uncommitted fjall batch is simply dropped).
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_overlay(&self) -> RwLockReadGuard<'_, Overlay> {
        // Writers replace the overlay's contents only once an ingestion has
        // succeeded, and add or take back a batch under one write lock, so
        // a panic elsewhere never leaves it half-moved.
        self.overlay.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_overlay(&self) -> RwLockWriteGuard<'_, Overlay> {
        self.overlay.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The record at `tag ‖ key`: pending writes first, then `snapshot`.
    fn record(
        &self,
        overlay: &Overlay,
        snapshot: &Snapshot,
        tag: u8,
        key: &[u8],
    ) -> Result<Option<Slice>, BackendError> {
        let tagged = tagged(tag, key);
        match overlay.decides(key, &tagged) {
            Some(record) => Ok(record),
            None => snapshot
                .get(&self.entries, &tagged)
                .map_err(|e| self.fail(e)),
        }
    }

    /// Every entry whose key starts with `prefix`: counts and values are
    /// each one sorted run, walked side by side. With `damaged`, an entry
    /// whose count record does not decode (damage to that entry alone, its
    /// key known) goes to `damaged`, and the walk goes on past it.
    fn walk_merged(
        &self,
        snapshot: &Snapshot,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
        mut damaged: Option<&mut Damaged<'_>>,
    ) -> Result<(), WalkError> {
        let read = WalkError::Read;
        let mut counts = snapshot.prefix(&self.entries, tagged(COUNT_TAG, prefix));
        for guard in snapshot.prefix(&self.entries, tagged(VALUE_TAG, prefix)) {
            let (tagged_key, value) = guard.into_inner().map_err(|e| read(self.fail(e)))?;
            let key = &tagged_key[1..];
            let Some(next) = counts.next() else {
                return Err(read(uncounted(key)));
            };
            let (tagged_count_key, count) = next.into_inner().map_err(|e| read(self.fail(e)))?;
            let count_key = &tagged_count_key[1..];
            let count = match count_key.cmp(key) {
                std::cmp::Ordering::Equal => match (decode_count(key, &count), &mut damaged) {
                    (Ok(count), _) => count,
                    (Err(e), Some(damaged)) => {
                        damaged(key, e);
                        continue;
                    }
                    (Err(e), None) => return Err(read(e)),
                },
                std::cmp::Ordering::Less => return Err(read(valueless(count_key))),
                std::cmp::Ordering::Greater => return Err(read(uncounted(key))),
            };
            visit(
                key,
                &Entry {
                    value: value.to_vec(),
                    count,
                },
            )
            .map_err(WalkError::Visit)?;
        }
        if let Some(next) = counts.next() {
            let (tagged_count_key, _) = next.into_inner().map_err(|e| read(self.fail(e)))?;
            return Err(read(valueless(&tagged_count_key[1..])));
        }
        Ok(())
    }

    /// Every entry whose key starts with `range`, walked whole; when a
    /// block under it fails to read (a damaged block), walked again by the
    /// ranges one byte longer, `deeper` times at most, each entry once: a
    /// damaged block costs the entries near it, not the whole walk. A
    /// range that still fails is reported to `damaged`, its prefix as the
    /// key, unless no entry of it could be read at all: then its failure is
    /// returned, for the caller to report, or to fold into one report of
    /// its own range where none of the 256 ranges in it could be read. (A
    /// damaged block spans many ranges where keys are few: one block of a
    /// store of 669 nodes was reported as 15,471 two-byte ranges.)
    fn walk_tolerant(
        &self,
        snapshot: &Snapshot,
        range: &[u8],
        deeper: u8,
        visit: &mut Visitor<'_>,
        damaged: &mut Damaged<'_>,
    ) -> Result<Option<BackendError>, BackendError> {
        // The walk visits keys in ascending order, so the entries it has
        // passed before a failure are those up to the last key it visited:
        // that key alone is kept, not every key (150 bytes a name of the
        // catalog, held by every listing).
        let mut last_visited: Option<Vec<u8>> = None;
        // An entry found damaged by a walk of `range` is found again by
        // the walks of the ranges in it: reported once.
        let mut reported = std::collections::HashSet::new();
        let mut damaged = |key: &[u8], e: BackendError| {
            if reported.insert(key.to_vec()) {
                damaged(key, e);
            }
        };
        let whole = self.walk_merged(
            snapshot,
            range,
            &mut |key, entry| {
                let last = last_visited.get_or_insert_with(Vec::new);
                last.clear();
                last.extend_from_slice(key);
                visit(key, entry)
            },
            Some(&mut damaged),
        );
        let e = match whole {
            Ok(()) => return Ok(None),
            Err(WalkError::Visit(e)) => return Err(e),
            // Not damage: walking the ranges again would fail the same way.
            Err(WalkError::Read(e)) if e.fails_every_request() => return Err(e),
            Err(WalkError::Read(e)) => e,
        };
        let unreadable = |e: &dyn std::fmt::Display| {
            corrupt(format_args!(
                "entries whose keys start with {} cannot be read: {e}",
                hex::encode(range)
            ))
        };
        let mut read_any = last_visited.is_some();
        if deeper == 0 {
            if !read_any {
                return Ok(Some(unreadable(&e)));
            }
            damaged(range, unreadable(&e));
            return Ok(None);
        }
        let mut failed = Vec::new();
        {
            let mut unseen = |key: &[u8], entry: &Entry| match &last_visited {
                Some(last) if key <= last.as_slice() => Ok(()),
                _ => {
                    read_any = true;
                    visit(key, entry)
                }
            };
            // The key that is `range` itself is in no longer range.
            if !range.is_empty() {
                match self.read_entry(&Overlay::default(), snapshot, range) {
                    Ok(Some(entry)) => unseen(range, &entry)?,
                    Ok(None) => {}
                    Err(e) if e.fails_every_request() => return Err(e),
                    Err(e) => damaged(range, e),
                }
            }
            for next in 0..=u8::MAX {
                let longer = [range, &[next]].concat();
                let unread =
                    self.walk_tolerant(snapshot, &longer, deeper - 1, &mut unseen, &mut damaged)?;
                if let Some(e) = unread {
                    failed.push((longer, e));
                }
            }
        }
        if !read_any && failed.len() == 256 {
            return Ok(Some(unreadable(&e)));
        }
        for (longer, e) in failed {
            damaged(&longer, e);
        }
        Ok(None)
    }

    /// A snapshot of the tables once every pending write is in them, for
    /// walks (which read the tables only).
    fn settled_snapshot(&self) -> Result<Snapshot, BackendError> {
        self.flush_pending()?;
        Ok(self.db.snapshot())
    }

    fn read_entry(
        &self,
        overlay: &Overlay,
        snapshot: &Snapshot,
        key: &[u8],
    ) -> Result<Option<Entry>, BackendError> {
        let value = self.record(overlay, snapshot, VALUE_TAG, key)?;
        let count = self.record(overlay, snapshot, COUNT_TAG, key)?;
        match (value, count) {
            (None, None) => Ok(None),
            (Some(value), Some(count)) => Ok(Some(Entry {
                value: value.to_vec(),
                count: decode_count(key, &count)?,
            })),
            (Some(_), None) => Err(uncounted(key)),
            (None, Some(_)) => Err(valueless(key)),
        }
    }

    /// Writes the pending writes to disk as one ingestion and empties the
    /// overlay. The caller holds the writer lock.
    fn ingest_pending(&self) -> Result<(), BackendError> {
        {
            let overlay = self.read_overlay();
            if overlay.writes.is_empty() {
                return Ok(());
            }
            // Keys come out of the map in ascending order, as an ingestion
            // requires; records are reference-counted, not copied.
            let mut ingestion = self.entries.start_ingestion().map_err(|e| self.fail(e))?;
            for (key, value) in &overlay.writes {
                match value {
                    Some(value) => ingestion.write(key.clone(), value.clone()),
                    None => ingestion.write_tombstone(key.clone()),
                }
                .map_err(|e| self.fail(e))?;
            }
            ingestion.finish().map_err(|e| self.fail(e))?;
        }
        // Readers that took their snapshot before the ingestion still hold
        // the read lock and read the overlay; the next ones see the tables.
        *self.write_overlay() = Overlay::default();
        Ok(())
    }

    /// [`EmbeddedBackend::ingest_pending`], taking the writer lock.
    fn flush_pending(&self) -> Result<(), BackendError> {
        let _writer = self.lock_writer();
        self.ingest_pending()
    }

    /// Checks a batch's keys and folds it into one net write per tagged
    /// key, reading what it must under the writer lock the caller holds.
    fn fold(&self, batch: &Batch) -> Result<NetWrites, BackendError> {
        for op in batch.ops() {
            let (Op::Put { key, .. } | Op::SetCount { key, .. } | Op::Delete { key }) = op else {
                continue;
            };
            if !storable(key) {
                return Err(BackendError::Other {
                    backend: NAME.into(),
                    detail: format!(
                        "a key of {} bytes: keys are 1 to {MAX_KEY_LEN} bytes long",
                        key.len()
                    ),
                });
            }
        }
        // Fold the batch into one net write per key: fjall gives every write
        // of a batch the same sequence number, so two writes of one key in a
        // batch must not both reach it.
        let mut order: Vec<&[u8]> = Vec::with_capacity(batch.len());
        let mut pending: HashMap<&[u8], Pending<'_>> = HashMap::with_capacity(batch.len());
        {
            let overlay = self.read_overlay();
            let snapshot = self.db.snapshot();
            for op in batch.ops() {
                match op {
                    Op::Put { key, value, count } => {
                        let p = pending.entry(key).or_insert_with(|| {
                            order.push(key);
                            Pending::default()
                        });
                        p.value = Some(Some(value));
                        p.count = Some(Some(*count));
                        p.exists = Some(true);
                    }
                    Op::SetCount { key, count } => {
                        let exists = match pending.get(key.as_slice()).and_then(|p| p.exists) {
                            Some(exists) => exists,
                            None => self.record(&overlay, &snapshot, COUNT_TAG, key)?.is_some(),
                        };
                        let p = pending.entry(key).or_insert_with(|| {
                            order.push(key);
                            Pending::default()
                        });
                        p.exists = Some(exists);
                        if exists {
                            p.count = Some(Some(*count));
                        }
                    }
                    Op::Delete { key } => {
                        let p = pending.entry(key).or_insert_with(|| {
                            order.push(key);
                            Pending::default()
                        });
                        p.value = Some(None);
                        p.count = Some(None);
                        p.exists = Some(false);
                    }
                    Op::Barrier => {}
                }
            }
        }
        let mut writes: Vec<(Vec<u8>, Option<Slice>)> = Vec::with_capacity(2 * order.len());
        for key in order {
            let Some(p) = pending.get(key) else { continue };
            if let Some(value) = p.value {
                writes.push((tagged(VALUE_TAG, key), value.map(Slice::from)));
            }
            if let Some(count) = p.count {
                writes.push((
                    tagged(COUNT_TAG, key),
                    count.map(|c| Slice::from(&c.to_be_bytes()[..])),
                ));
            }
        }

        Ok(NetWrites {
            writes,
            durable: self.sync_each_batch() && batch.is_durable(),
        })
    }

    /// Applies folded writes into the overlay, ingested when it is full or
    /// the writes must be durable. The caller holds the writer lock.
    ///
    /// If the ingestion fails (a full disk), the writes are taken back out
    /// of the overlay and the error returned: the batch is not applied, so
    /// no later read sees it and no later ingestion writes it, and the
    /// batches accepted before it stay pending.
    fn commit(&self, net: NetWrites) -> Result<(), BackendError> {
        let NetWrites { writes, durable } = net;
        // Every batch is ingested, none journaled: records written both ways
        // were seen to go wrong (see `settle_mixed_writes`).
        let (full, undo) = {
            let mut overlay = self.write_overlay();
            let bytes = overlay.bytes;
            let mut replaced = Vec::with_capacity(writes.len());
            for (key, value) in writes {
                let key = Slice::from(key);
                let was = overlay.insert(key.clone(), value);
                replaced.push((key, was));
            }
            (overlay.bytes >= GROUP_BYTES, Undo { bytes, replaced })
        };
        if (durable || full)
            && let Err(e) = self.ingest_pending()
        {
            self.write_overlay().undo(undo);
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for EmbeddedBackend {
    fn drop(&mut self) {
        // Pending writes are batches `apply` accepted: write them rather
        // than lose them. An error cannot be reported here; callers that
        // must know call `flush` first.
        let _ = self.flush_pending();
    }
}

/// Moves a store of the two-keyspace layout (`nodes`, `counts`) into
/// `entries`: counts then values, one ascending ingestion, atomic. The old
/// keyspaces are dropped afterwards; if a crash comes between, `entries`
/// already holds everything (an ingestion is all or nothing) and the next
/// open only drops them.
fn migrate_legacy(db: &Database, entries: &Keyspace, dir: &Path) -> Result<(), BackendError> {
    if !db.keyspace_exists(LEGACY_NODES) && !db.keyspace_exists(LEGACY_COUNTS) {
        return Ok(());
    }
    let mut legacy = Vec::new();
    for name in [LEGACY_COUNTS, LEGACY_NODES] {
        if db.keyspace_exists(name) {
            let keyspace = db
                .keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| map_error(e, dir))?;
            legacy.push((name, keyspace));
        }
    }
    if entries.is_empty().map_err(|e| map_error(e, dir))? {
        let mut ingestion = entries.start_ingestion().map_err(|e| map_error(e, dir))?;
        for (name, keyspace) in &legacy {
            let tag = if *name == LEGACY_COUNTS {
                COUNT_TAG
            } else {
                VALUE_TAG
            };
            for guard in keyspace.iter() {
                let (key, value) = guard.into_inner().map_err(|e| map_error(e, dir))?;
                if !storable(&key) {
                    return Err(corrupt(format_args!(
                        "a {}-byte key in the old {name} keyspace: keys are 1 to {MAX_KEY_LEN} bytes long",
                        key.len()
                    )));
                }
                ingestion
                    .write(tagged(tag, &key), value)
                    .map_err(|e| map_error(e, dir))?;
            }
        }
        ingestion.finish().map_err(|e| map_error(e, dir))?;
    }
    for (_, keyspace) in legacy {
        db.delete_keyspace(keyspace)
            .map_err(|e| map_error(e, dir))?;
    }
    db.persist(PersistMode::SyncAll)
        .map_err(|e| map_error(e, dir))
}

/// A batch folded into one net write per tagged key (`None`: removed).
struct NetWrites {
    writes: Vec<(Vec<u8>, Option<Slice>)>,
    /// Whether the batch must be durable when `apply` returns.
    durable: bool,
}

/// The net effect of a batch on one key.
#[derive(Default)]
struct Pending<'a> {
    /// `Some(Some(v))`: write `v`; `Some(None)`: delete; `None`: untouched.
    value: Option<Option<&'a [u8]>>,
    /// Same for the count.
    count: Option<Option<u64>>,
    /// Whether the key exists once the batch's earlier operations apply, if
    /// known.
    exists: Option<bool>,
}

impl Backend for EmbeddedBackend {
    fn keeps_descriptor(&self) -> bool {
        true
    }

    fn read_descriptor(&self) -> Result<Option<Vec<u8>>, BackendError> {
        Self::read_descriptor_in(&self.path)
    }

    fn write_descriptor(&self, value: &[u8]) -> Result<(), BackendError> {
        self.replace_file(DESCRIPTOR_FILE, DESCRIPTOR_DRAFT, value)
    }

    fn set_sync_each_batch(&self, sync: bool) {
        EmbeddedBackend::set_sync_each_batch(self, sync);
    }

    fn name(&self) -> &str {
        NAME
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
        // One snapshot: the entries read belong to one state of the store.
        let overlay = self.read_overlay();
        let snapshot = self.db.snapshot();
        keys.iter()
            .map(|key| self.read_entry(&overlay, &snapshot, key))
            .collect()
    }

    fn get_values(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        // Pending records are taken and the snapshot made under the overlay
        // lock, which is released before the parallel part: a rayon thread
        // waiting here may run another task that needs the lock.
        let (snapshot, lookups) = {
            let overlay = self.read_overlay();
            let lookups: Vec<(Vec<u8>, Option<Option<Slice>>)> = keys
                .iter()
                .map(|key| {
                    let tagged = tagged(VALUE_TAG, key);
                    let decided = overlay.decides(key, &tagged);
                    (tagged, decided)
                })
                .collect();
            (self.db.snapshot(), lookups)
        };
        let read = |(tagged, decided): &(Vec<u8>, Option<Option<Slice>>)| {
            let record = match decided {
                Some(record) => record.clone(),
                None => snapshot
                    .get(&self.entries, tagged)
                    .map_err(|e| self.fail(e))?,
            };
            Ok(record.map(|v| v.to_vec()))
        };
        // Point lookups cost a block read and checksum each when the block
        // cache misses; a read window's lookups run on every core.
        if keys.len() >= PARALLEL_LOOKUPS {
            lookups.par_iter().map(read).collect()
        } else {
            lookups.iter().map(read).collect()
        }
    }

    fn check_lookups(
        &self,
        keys: &[&[u8]],
        failed: &mut dyn FnMut(&[u8], BackendError),
    ) -> Result<(), BackendError> {
        // The walk reads data blocks in order; a lookup goes through the
        // filter and index blocks, whose checksums only a lookup checks.
        self.flush_pending()?;
        for key in keys {
            let value = self.entries.contains_key(tagged(VALUE_TAG, key));
            let count = self.entries.get(tagged(COUNT_TAG, key));
            match (value, count) {
                (Ok(true), Ok(Some(_))) => {}
                (Err(e), _) | (_, Err(e)) => failed(
                    key,
                    corrupt(format_args!(
                        "a lookup of entry {} fails: {}",
                        hex::encode(key),
                        self.fail(e)
                    )),
                ),
                _ => failed(
                    key,
                    corrupt(format_args!(
                        "entry {} is listed, but a lookup does not find it",
                        hex::encode(key)
                    )),
                ),
            }
        }
        Ok(())
    }

    fn get_counts(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        let overlay = self.read_overlay();
        let snapshot = self.db.snapshot();
        keys.iter()
            .map(|key| {
                self.record(&overlay, &snapshot, COUNT_TAG, key)?
                    .map(|count| decode_count(key, &count))
                    .transpose()
            })
            .collect()
    }

    fn apply(&self, batch: &Batch) -> Result<(), BackendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let _writer = self.lock_writer();
        let net = self.fold(batch)?;
        self.commit(net)
    }

    fn apply_owned(&self, batch: Batch) -> Result<(), BackendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let _writer = self.lock_writer();
        let net = self.fold(&batch)?;
        // The records are copied into the writes: free the batch's copy
        // before an ingestion, which keeps a large put's peak memory down.
        drop(batch);
        self.commit(net)
    }

    fn is_transactional(&self) -> bool {
        true
    }

    /// Walks the prefix whole. With `damaged`, a walk under a prefix goes
    /// whole first and, when a block under it fails to read, again by the
    /// ranges one and two bytes longer (`walk_tolerant`); a walk of every
    /// key goes by the ranges of each first byte from the start. An
    /// entry whose count record does not decode is reported by its own
    /// key; a range that does not read, by its prefix.
    fn walk(
        &self,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
        damaged: Option<&mut Damaged<'_>>,
    ) -> Result<(), BackendError> {
        let snapshot = self.settled_snapshot()?;
        let Some(damaged) = damaged else {
            return self
                .walk_merged(&snapshot, prefix, visit, None)
                .map_err(WalkError::into_inner);
        };
        if !prefix.is_empty() {
            if let Some(e) = self.walk_tolerant(&snapshot, prefix, 2, visit, damaged)? {
                damaged(prefix, e);
            }
            return Ok(());
        }
        for first in 0..=u8::MAX {
            if let Some(e) = self.walk_tolerant(&snapshot, &[first], 1, visit, damaged)? {
                damaged(&[first], e);
            }
        }
        Ok(())
    }

    fn usage(&self) -> Result<Usage, BackendError> {
        // Counts are 8 bytes each by construction: only the values are read.
        let snapshot = self.settled_snapshot()?;
        let mut usage = Usage::default();
        for guard in snapshot.prefix(&self.entries, [VALUE_TAG]) {
            let (key, value) = guard.into_inner().map_err(|e| self.fail(e))?;
            usage.add(key.len() - 1, value.len());
        }
        Ok(usage)
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.flush_pending()?;
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| self.fail(e))
    }

    /// Writes pending batches and the memtable out as tables, then compacts
    /// every table into the last level, where deleted records and their
    /// tombstones are dropped, blob files holding only deleted values are
    /// dropped, and blob files holding mostly deleted values are rewritten.
    /// Without it fjall keeps deleted values on disk until later writes
    /// happen to trigger a compaction that reaches them: a store emptied by
    /// `rm` kept its whole size on disk. The files dropped are removed once
    /// nothing reads them (at the latest when the backend is dropped).
    fn reclaim_space(&self) -> Result<Option<String>, BackendError> {
        let _writer = self.lock_writer();
        self.ingest_pending()?;
        self.flush_memtable()?;
        // A compaction drops the blob files that were dead before it began,
        // not those its own merge killed, and rewrites at most a quarter of
        // the files that are at least a quarter stale (fjall's defaults): so
        // compact again while that shrinks the store, a bounded number of
        // times. What stays is at most a quarter stale.
        //
        // `major_compact` is public but hidden from fjall 3.1's docs; the
        // lock file pins the version, and a change of it fails the build.
        let mut before = self.entries.disk_space();
        for round in 0..RECLAIM_ROUNDS {
            self.entries.major_compact().map_err(|e| self.fail(e))?;
            let after = self.entries.disk_space();
            if round > 0 && after >= before {
                break;
            }
            before = after;
        }
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| self.fail(e))?;
        Ok(None)
    }
}

fn decode_count(key: &[u8], bytes: &[u8]) -> Result<u64, BackendError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| {
        corrupt(format_args!(
            "count of entry {} is {} bytes long, not 8",
            hex::encode(key),
            bytes.len()
        ))
    })?;
    Ok(u64::from_be_bytes(array))
}

/// A value record without its count record.
fn uncounted(key: &[u8]) -> BackendError {
    corrupt(format_args!(
        "entry {} has a value but no count",
        hex::encode(key)
    ))
}

/// Why a walk stopped: its visitor failed, or the database could not be
/// read (only the second is damage a damage-tolerant walk goes past).
enum WalkError {
    Visit(BackendError),
    Read(BackendError),
}

impl WalkError {
    fn into_inner(self) -> BackendError {
        match self {
            WalkError::Visit(e) | WalkError::Read(e) => e,
        }
    }
}

/// A count record without its value record.
fn valueless(key: &[u8]) -> BackendError {
    corrupt(format_args!(
        "entry {} has a count but no value",
        hex::encode(key)
    ))
}

fn corrupt(detail: impl std::fmt::Display) -> BackendError {
    BackendError::Corrupt {
        backend: NAME.to_owned(),
        detail: detail.to_string(),
    }
}

/// Refuses a database with a directory where fjall keeps a file: fjall
/// asserts on what it finds there, so it would panic (and abort while
/// unwinding) instead of saying the store is damaged. Only the directories
/// fjall makes are allowed: `keyspaces/`, and in each keyspace `tables/`
/// and `blobs/`.
fn check_layout(dir: &Path) -> Result<(), BackendError> {
    fn stray_dir(dir: &Path, allowed: &[&str]) -> Option<PathBuf> {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| {
                e.file_type().is_ok_and(|t| t.is_dir())
                    && !allowed.iter().any(|a| e.file_name() == **a)
            })
            .map(|e| e.path())
    }
    let mut found = stray_dir(dir, &["keyspaces"]);
    if let Ok(keyspaces) = std::fs::read_dir(dir.join("keyspaces")) {
        for keyspace in keyspaces.filter_map(Result::ok) {
            if found.is_some() {
                break;
            }
            let path = keyspace.path();
            if !path.is_dir() {
                continue;
            }
            found = stray_dir(&path, &["tables", "blobs"])
                .or_else(|| stray_dir(&path.join("tables"), &[]))
                .or_else(|| stray_dir(&path.join("blobs"), &[]));
        }
    }
    match found {
        Some(path) => Err(corrupt(format_args!(
            "the database {} is damaged: {} is a directory where it keeps a file",
            dir.display(),
            path.display()
        ))),
        None => Ok(()),
    }
}

/// Largest version file read: lsm-tree writes 33 bytes per table, so a
/// genuine one stays far below this; a larger one is damage.
const MAX_VERSION_FILE: u64 = 64 << 20;
/// Bytes of lsm-tree's `current` file (see `check_version_files`).
const CURRENT_FILE_LEN: usize = 25;
/// Bytes of an sfa archive's trailer (see `check_version_files`).
const SFA_TRAILER_LEN: usize = 38;
/// The level count lsm-tree 3.1.10 asserts a manifest holds.
const LEVEL_COUNT: u8 = 7;

/// Refuses a database whose keyspace state files are damaged, before fjall
/// reads them: lsm-tree asserts on some of their fields, and a panic there
/// poisons a lock that fjall's `Drop` takes during the unwind, so the
/// second panic aborts the process (a panic cannot be caught here; it has
/// to be prevented).
///
/// Each keyspace `keyspaces/N/` of the database is an lsm-tree whose state
/// is the file `vID` that `current` names. lsm-tree 3.1.10 writes them in
/// `version/persist.rs` (`persist_version`):
///
/// - `current`: `u64 LE ID ‖ u128 LE xxh3-128 of the whole vID file ‖ u8 0`
///   (`0 = xxh3`); lsm-tree reads only the ID back (`version/recovery.rs`:
///   "TODO: maybe validate current version using the checksum in current").
/// - `vID`: an sfa 1.0.0 archive: the sections' bytes, then the table of
///   contents `"TOC!" ‖ u32 LE n ‖ n × (u64 LE pos ‖ u64 LE len ‖ u16 LE
///   name length ‖ name)`, then the trailer `"SFA!" ‖ u8 1 ‖ u8 0 ‖ u128 LE
///   ToC checksum ‖ u64 LE ToC pos ‖ u64 LE ToC len`. Its sections
///   (`Version::encode_into`) are `format_version`, `crate_version`,
///   `tree_type`, `level_count` (u8), `filter_hash_type` (u8 0), `tables`,
///   `blob_files` (`u32 LE n ‖ n × 25 bytes`) and `blob_gc_stats` (`u32 LE
///   n ‖ n × 28 bytes`).
///
/// lsm-tree's `manifest.rs` then does `.expect("… section should exist in
/// manifest")` for the first five, `assert_eq!(7, level_count, "level count
/// should be 7")` and `assert_eq!(&[u8::from(ChecksumType::Xxh3)],
/// &*filter_hash_type, …)`; sfa and `recovery.rs` reserve memory for the
/// counts of the ToC, of `blob_files` and of `blob_gc_stats` before reading
/// them. The checksum in `current` catches any damage to the file; the
/// checks of those fields keep a file rewritten with a matching checksum
/// (xxh3 is no authentication) from reaching the assertions either. A
/// keyspace without `current` is left to fjall, which makes it anew.
fn check_version_files(dir: &Path) -> Result<(), BackendError> {
    let Ok(keyspaces) = std::fs::read_dir(dir.join("keyspaces")) else {
        return Ok(());
    };
    for keyspace in keyspaces.filter_map(Result::ok) {
        let path = keyspace.path();
        // fjall skips files here, and parses every other name as a number
        // with `.expect("should be valid integer")` (recovery.rs).
        let is_file = keyspace.file_type().is_ok_and(|t| t.is_file());
        let numbered = keyspace
            .file_name()
            .to_str()
            .is_some_and(|name| name.parse::<u64>().is_ok());
        if !is_file && !numbered {
            return Err(corrupt(format_args!(
                "the database {} is damaged: {} is not a keyspace directory (those are \
                 named by a number)",
                dir.display(),
                path.display()
            )));
        }
        let current = path.join("current");
        if !path.is_dir() || !current.exists() {
            continue;
        }
        check_version_file(&path, &current).map_err(|why| {
            corrupt(format_args!(
                "the database {} is damaged: keyspace state {why}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

/// Checks one keyspace's `current` and the version file it names (see
/// [`check_version_files`]); the error says which file is damaged and how.
fn check_version_file(keyspace: &Path, current: &Path) -> Result<(), String> {
    let unreadable =
        |path: &Path, e: std::io::Error| format!("{} is unreadable: {e}", path.display());
    let pointer = std::fs::read(current).map_err(|e| unreadable(current, e))?;
    let pointer: [u8; CURRENT_FILE_LEN] = pointer.as_slice().try_into().map_err(|_| {
        format!(
            "{} is {} bytes long, not {CURRENT_FILE_LEN}",
            current.display(),
            pointer.len()
        )
    })?;
    let (id, rest) = pointer.split_at(8);
    let (checksum, kind) = rest.split_at(16);
    if kind != [0] {
        return Err(format!(
            "{} names checksum type {}, not xxh3 (0)",
            current.display(),
            kind[0]
        ));
    }
    let id = u64::from_le_bytes(le_array(id));
    let expected = u128::from_le_bytes(le_array(checksum));
    let version = keyspace.join(format!("v{id}"));
    let len = std::fs::metadata(&version)
        .map_err(|e| unreadable(&version, e))?
        .len();
    if len > MAX_VERSION_FILE {
        return Err(format!(
            "{} is {len} bytes long, more than the {MAX_VERSION_FILE} a version file can be",
            version.display()
        ));
    }
    let bytes = std::fs::read(&version).map_err(|e| unreadable(&version, e))?;
    let computed = xxhash_rust::xxh3::xxh3_128(&bytes);
    if computed != expected {
        return Err(format!(
            "{} does not match the checksum {} records (stored {expected:032x}, computed \
             {computed:032x})",
            version.display(),
            current.display()
        ));
    }
    check_manifest(&bytes).map_err(|why| format!("{} {why}", version.display()))
}

/// Checks the fields of a version file that lsm-tree asserts on or sizes
/// memory by (see [`check_version_files`]).
fn check_manifest(bytes: &[u8]) -> Result<(), String> {
    let body = bytes
        .len()
        .checked_sub(SFA_TRAILER_LEN)
        .ok_or("is shorter than its trailer")?;
    let trailer = &bytes[body..];
    if &trailer[..4] != b"SFA!" {
        return Err("has no archive trailer".to_owned());
    }
    let toc_pos = u64::from_le_bytes(le_array(&trailer[22..30]));
    let toc = usize::try_from(toc_pos)
        .ok()
        .and_then(|pos| bytes.get(pos..body))
        .ok_or("has its table of contents out of the file")?;
    let (magic, rest) = toc
        .split_at_checked(4)
        .ok_or("has a cut table of contents")?;
    if magic != b"TOC!" {
        return Err("has no table of contents".to_owned());
    }
    let (count, mut rest) = rest
        .split_at_checked(4)
        .ok_or("has a cut table of contents")?;
    let count = u32::from_le_bytes(le_array(count));
    let mut sections: Vec<(&[u8], &[u8])> = Vec::new();
    for _ in 0..count {
        let cut = || "has a cut table of contents".to_owned();
        let (pos, tail) = rest.split_at_checked(8).ok_or_else(cut)?;
        let (len, tail) = tail.split_at_checked(8).ok_or_else(cut)?;
        let (name_len, tail) = tail.split_at_checked(2).ok_or_else(cut)?;
        let name_len = usize::from(u16::from_le_bytes(le_array(name_len)));
        let (name, tail) = tail.split_at_checked(name_len).ok_or_else(cut)?;
        rest = tail;
        let pos = u64::from_le_bytes(le_array(pos));
        let len = u64::from_le_bytes(le_array(len));
        let data = usize::try_from(pos)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(pos, len)| bytes.get(pos..pos.checked_add(len)?))
            .ok_or_else(|| {
                format!(
                    "has section {} out of the file",
                    String::from_utf8_lossy(name)
                )
            })?;
        sections.push((name, data));
    }
    // sfa's lookup takes the first section of a name.
    let section = |name: &str| {
        sections
            .iter()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, data)| *data)
    };
    for name in ["format_version", "tree_type", "tables"] {
        section(name).ok_or_else(|| format!("has no {name} section"))?;
    }
    let level_count = section("level_count").ok_or("has no level_count section")?;
    if level_count.first() != Some(&LEVEL_COUNT) {
        return Err(format!(
            "says {:?} levels, not {LEVEL_COUNT}",
            level_count.first()
        ));
    }
    if section("filter_hash_type").ok_or("has no filter_hash_type section")? != [0] {
        return Err("names a filter hash other than xxh3".to_owned());
    }
    for (name, record) in [("blob_files", 25), ("blob_gc_stats", 28)] {
        let data = section(name).ok_or_else(|| format!("has no {name} section"))?;
        let (n, records) = data
            .split_at_checked(4)
            .ok_or_else(|| format!("has a cut {name} section"))?;
        let n = u64::from(u32::from_le_bytes(le_array(n)));
        if n * record > records.len() as u64 {
            return Err(format!(
                "counts {n} records in its {name} section, more than it holds"
            ));
        }
    }
    Ok(())
}

/// The first `N` bytes of `bytes` (which the caller has cut to at least
/// `N`), zero-padded otherwise.
fn le_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0; N];
    let n = bytes.len().min(N);
    array[..n].copy_from_slice(&bytes[..n]);
    array
}

/// Most damaged files an open failure names.
const DAMAGED_FILES_NAMED: usize = 5;
/// Largest table of contents read when looking for a damaged file: a
/// table's or value file's holds a few short entries.
const MAX_TOC_LEN: u64 = 1 << 20;

/// Adds to an open failure the table and value files whose archive
/// structure is damaged, and what can be done: fjall 3.1 opens no database
/// with such a file (lsm-tree's recovery returns `Unrecoverable`, naming no
/// file), so a walk cannot go past it as it goes past a damaged block.
fn name_damaged_files(e: BackendError, dir: &Path) -> BackendError {
    let BackendError::Corrupt { backend, detail } = e else {
        return e;
    };
    let mut damaged = Vec::new();
    if let Ok(keyspaces) = std::fs::read_dir(dir.join("keyspaces")) {
        let mut keyspaces: Vec<PathBuf> = keyspaces.filter_map(|k| Some(k.ok()?.path())).collect();
        keyspaces.sort();
        for keyspace in keyspaces {
            for kind in ["tables", "blobs"] {
                let Ok(files) = std::fs::read_dir(keyspace.join(kind)) else {
                    continue;
                };
                let mut files: Vec<PathBuf> = files.filter_map(|f| Some(f.ok()?.path())).collect();
                files.sort();
                damaged.extend(
                    files
                        .iter()
                        .filter_map(|f| Some(format!("{} {}", f.display(), archive_damage(f)?))),
                );
            }
        }
    }
    if damaged.is_empty() {
        return BackendError::Corrupt { backend, detail };
    }
    let more = damaged.len().saturating_sub(DAMAGED_FILES_NAMED);
    damaged.truncate(DAMAGED_FILES_NAMED);
    let mut named = damaged.join("; ");
    if more > 0 {
        named += &format!("; and {more} more");
    }
    BackendError::Corrupt {
        backend,
        detail: format!(
            "{detail}. Damaged: {named}. The database cannot be opened while one of its table \
             or value files is damaged, so no entry of the store can be read, not even those \
             in other files: put that file back from a backup of the store directory (fjall \
             also refuses the database without it)"
        ),
    }
}

/// What is wrong with the sfa archive structure of a table or value file
/// (`None` if nothing is found): its trailer and table of contents, which
/// lsm-tree reads at open (see [`check_version_files`] for the format;
/// sfa's `TocReader` checks the ToC's xxh3-128 against the trailer's).
fn archive_damage(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) => return Some(format!("cannot be opened: {e}")),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let trailer_len = SFA_TRAILER_LEN as u64;
    let Some(body) = len.checked_sub(trailer_len) else {
        return Some(format!("is {len} bytes long, shorter than its trailer"));
    };
    let mut trailer = [0u8; SFA_TRAILER_LEN];
    if let Err(e) = file
        .seek(SeekFrom::Start(body))
        .and_then(|_| file.read_exact(&mut trailer))
    {
        return Some(format!("cannot be read: {e}"));
    }
    if &trailer[..6] != b"SFA!\x01\x00" {
        return Some("has no archive trailer at its end (cut, extended or overwritten)".to_owned());
    }
    let toc_sum = u128::from_le_bytes(le_array(&trailer[6..22]));
    let toc_pos = u64::from_le_bytes(le_array(&trailer[22..30]));
    let toc_len = match body.checked_sub(toc_pos) {
        Some(toc_len) if toc_len <= MAX_TOC_LEN => toc_len,
        _ => return Some("has its table of contents out of the file".to_owned()),
    };
    let mut toc = vec![0u8; usize::try_from(toc_len).ok()?];
    if let Err(e) = file
        .seek(SeekFrom::Start(toc_pos))
        .and_then(|_| file.read_exact(&mut toc))
    {
        return Some(format!("cannot be read: {e}"));
    }
    if xxhash_rust::xxh3::xxh3_128(&toc) != toc_sum {
        return Some("has a damaged table of contents (checksum mismatch)".to_owned());
    }
    None
}

/// Puts an empty journal back in a database that lost every journal file
/// (a copy or sync tool that skips empty files drops it, as it is empty
/// whenever the store is closed). fjall reads a database without a journal
/// as one that was never written: its sequence numbers restart at zero, so
/// the tables' entries stay hidden until the next open and a write made
/// meanwhile is shadowed by them, which corrupts counts. Every batch of an
/// ingest-only database is in its tables, so an empty journal loses
/// nothing; a database an earlier build journaled batches in is refused.
fn restore_lost_journal(dir: &Path) -> Result<(), BackendError> {
    let io = |e: std::io::Error| BackendError::other(NAME, format_args!("{}: {e}", dir.display()));
    if !dir.join("version").exists() {
        return Ok(());
    }
    let has_journal = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().ends_with(".jnl"));
    if has_journal {
        return Ok(());
    }
    if !dir.join(INGEST_ONLY_MARKER).exists() {
        return Err(corrupt(format_args!(
            "the database {} lost its journal, which may have held writes; not opening it",
            dir.display()
        )));
    }
    File::create(dir.join(FIRST_JOURNAL))
        .and_then(|f| f.sync_all())
        .and_then(|()| File::open(dir)?.sync_all())
        .map_err(io)
}

/// Bytes in the journal files of the database in `dir`, and when the
/// latest of them was last written (`None` without journal files).
fn journal_files(dir: &Path) -> std::io::Result<(Vec<PathBuf>, u64, Option<SystemTime>)> {
    let mut files = Vec::new();
    let mut bytes = 0;
    let mut latest: Option<SystemTime> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().ends_with(".jnl") {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        bytes += meta.len();
        let modified = meta.modified()?;
        latest = Some(latest.map_or(modified, |l| l.max(modified)));
        files.push(entry.path());
    }
    Ok((files, bytes, latest))
}

/// Replaces every journal file of the (closed) database in `dir` with one
/// empty journal. Only for a database whose journaled batches are all in
/// its tables: fjall then recovers its sequence numbers from the tables.
fn empty_journal(dir: &Path) -> Result<(), BackendError> {
    let io = |e: std::io::Error| {
        BackendError::other(
            NAME,
            format_args!("cannot empty the journal of {}: {e}", dir.display()),
        )
    };
    let (files, _, _) = journal_files(dir).map_err(io)?;
    let first = dir.join(FIRST_JOURNAL);
    for file in files.iter().filter(|f| **f != first) {
        std::fs::remove_file(file).map_err(io)?;
    }
    File::create(&first)
        .and_then(|f| f.sync_all())
        .and_then(|()| File::open(dir)?.sync_all())
        .map_err(io)
}

/// Before fjall opens the database in `dir`: empties a journal that holds
/// batches already in the tables, and says whether the journal holds
/// others.
///
/// This build leaves the journal empty, so batches in it come from an
/// earlier build. With the marker written after the journal's last write,
/// they were moved into the tables before the marker was (by this build,
/// when it stopped before emptying the journal, or by builds that wrote
/// the marker and kept the journal, whose stores replayed those batches
/// after a `gc`): fjall must not replay them, and they are dropped. A
/// journal written after the marker (an earlier build opened the store
/// again) holds batches that may be in no table: `true`, and they are
/// moved into the tables at this open.
fn drop_flushed_journal(dir: &Path) -> Result<bool, BackendError> {
    let io = |e: std::io::Error| BackendError::other(NAME, format_args!("{}: {e}", dir.display()));
    if !dir.join("version").exists() {
        return Ok(false);
    }
    let (_, bytes, written) = journal_files(dir).map_err(io)?;
    if bytes == 0 {
        return Ok(false);
    }
    let marked = match std::fs::metadata(dir.join(INGEST_ONLY_MARKER)) {
        Ok(meta) => Some(meta.modified().map_err(io)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    match (marked, written) {
        (Some(marked), Some(written)) if written <= marked => {
            empty_journal(dir)?;
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// Puts fjall's lock file back in a database that lost it: it is empty,
/// so a copy or sync tool that skips empty files drops it, and fjall's
/// recovery opens it without creating it (the open then fails naming only
/// the directory). Only where the rest of the database is there (its
/// version file): a new database gets one from fjall.
fn restore_lost_lock(dir: &Path) -> Result<(), BackendError> {
    if !dir.join("version").exists() {
        return Ok(());
    }
    let lock = dir.join("lock");
    // create_new: a lock file another open holds is left as it is.
    match File::options().write(true).create_new(true).open(&lock) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(BackendError::other(
            NAME,
            format_args!("cannot put back the lost lock file {}: {e}", lock.display()),
        )),
    }
}

/// Maps an error of opening the database in `dir`, naming the directory.
fn open_error(e: fjall::Error, dir: &Path) -> BackendError {
    match e {
        fjall::Error::Locked => BackendError::Locked {
            detail: format!(
                "the database {} is open in another process, or through another handle in \
                 this process; its lock file is {}",
                dir.display(),
                dir.join("lock").display()
            ),
            by_this_process: false,
        },
        other => in_dir(map_error(other, dir), dir),
    }
}

/// Names the database directory in an error's detail, unless the detail
/// names it already.
fn in_dir(e: BackendError, dir: &Path) -> BackendError {
    let shown = dir.display().to_string();
    let named = |detail: String| {
        if detail.contains(&shown) {
            detail
        } else {
            format!("{shown}: {detail}")
        }
    };
    match e {
        BackendError::Corrupt { backend, detail } => BackendError::Corrupt {
            backend,
            detail: named(detail),
        },
        BackendError::Other { backend, detail } => BackendError::Other {
            backend,
            detail: named(detail),
        },
        mapped => mapped,
    }
}

/// Maps an error of fjall working on the database in `dir`. fjall's I/O
/// errors name no file: the directory is named in their stead, so that a
/// full disk or a store moved away under a running command says which.
fn map_error(e: fjall::Error, dir: &Path) -> BackendError {
    use fjall::{Error as F, LsmError as L};
    match e {
        F::Locked => BackendError::Locked {
            detail: "the database is open in another process, or through another handle in \
                     this process"
                .to_owned(),
            by_this_process: false,
        },
        F::Io(e) | F::Storage(L::Io(e)) => io_error(&e, dir),

        F::Storage(L::ChecksumMismatch { got, expected }) => corrupt(format_args!(
            "checksum mismatch (stored {expected:?}, computed {got:?})"
        )),
        F::Storage(other) => corrupt(format_args!("unreadable table data ({other:?})")),
        F::JournalRecovery(e) => corrupt(format_args!("unreadable journal ({e:?})")),
        F::InvalidVersion(Some(v)) => corrupt(format_args!("unsupported format version {v:?}")),
        F::InvalidVersion(None) => corrupt("missing or unreadable version marker"),
        F::Decompress(c) => corrupt(format_args!("cannot decompress {c:?} data")),
        F::InvalidTrailer => corrupt("invalid journal trailer"),
        F::InvalidTag((what, tag)) => corrupt(format_args!("invalid {what} tag {tag}")),
        F::Unrecoverable => corrupt("unrecoverable database"),
        F::Poisoned => BackendError::other(
            NAME,
            "an earlier write failed to reach the disk; reopen the store",
        ),
        other => BackendError::other(NAME, format_args!("{other:?}")),
    }
}

/// The operating system's error code of `e`, or of the I/O error it
/// wraps: fjall hands some on wrapped in one of its own.
fn os_error_code(e: &std::io::Error) -> Option<i32> {
    let mut e = e;
    for _ in 0..8 {
        if let Some(code) = e.raw_os_error() {
            return Some(code);
        }
        e = e.get_ref()?.downcast_ref::<std::io::Error>()?;
    }
    None
}

/// Maps an I/O error met working on the database in `dir`.
fn io_error(e: &std::io::Error, dir: &Path) -> BackendError {
    use std::io::ErrorKind as K;
    if e.kind() == K::InvalidData {
        return corrupt(e);
    }
    if let Some(full) = BackendError::storage_full(NAME, e, dir) {
        return full;
    }
    let shown = dir.display();
    // Out of descriptors or memory, every later read fails as this one
    // did, and the data is not at fault: a walk that took it for a damaged
    // block reported a sound store as broken (and `rm` as the fix).
    let exhausted = [Errno::MFILE, Errno::NFILE, Errno::NOMEM]
        .iter()
        .any(|errno| os_error_code(e) == Some(errno.raw_os_error()));
    if exhausted {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
        return BackendError::Unavailable {
            backend: NAME.to_owned(),
            detail: format!(
                "{shown}: {e}: this process ran out of open files or memory (its open-file \
                 limit is {limit}); raise it (`ulimit -n`) or free memory, and run the command \
                 again; the store's data is not at fault"
            ),
        };
    }
    match e.kind() {
        // A lookup of the directory tells a store moved or removed while
        // the command ran from a file missing inside it.
        K::NotFound if !dir.is_dir() => BackendError::other(
            NAME,
            format_args!(
                "the store's database {shown} is gone ({e}): was the store moved or removed \
                 while this command ran? Run the command again on the store where it is now"
            ),
        ),
        K::PermissionDenied => BackendError::other(
            NAME,
            format_args!(
                "{shown}: {e}: the store's files must stay readable and writable by the user \
                 running seccs"
            ),
        ),
        _ => BackendError::other(NAME, format_args!("{shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fjall's I/O errors name no file: a full disk, a used-up quota and a
    /// read-only file system (the errors Linux gives) become the error
    /// that stops a command at the first, naming the database and what to
    /// do; a database gone from under the command says so; any other
    /// names the database.
    #[test]
    fn io_errors_name_the_database_and_a_full_disk_stops_a_command() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("db");
        std::fs::create_dir(&dir).expect("mkdir");
        let shown = dir.display().to_string();
        for (errno, said) in [
            (28, format!("the disk holding {shown} is full")),
            (122, format!("the disk quota of {shown} is used up")),
            (30, format!("the file system holding {shown} is read-only")),
        ] {
            let e = map_error(
                fjall::Error::Io(std::io::Error::from_raw_os_error(errno)),
                &dir,
            );
            assert!(
                matches!(e, BackendError::StorageFull { .. }) && e.fails_every_request(),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(
                text.contains(&said) && text.contains("run the same command again"),
                "{text}"
            );
        }
        let denied = map_error(
            fjall::Error::Io(std::io::Error::from_raw_os_error(13)),
            &dir,
        );
        assert!(!denied.fails_every_request(), "{denied:?}");
        assert!(denied.to_string().contains(&shown), "{denied}");
        let gone = tmp.path().join("moved");
        let lost = map_error(
            fjall::Error::Io(std::io::Error::from_raw_os_error(2)),
            &gone,
        );
        let text = lost.to_string();
        assert!(
            text.contains(&format!("the store's database {} is gone", gone.display()))
                && text.contains("moved or removed while this command ran"),
            "{text}"
        );
    }

    /// Out of descriptors or memory, bare or wrapped in another I/O error
    /// as fjall hands some on, a read stops the command and is never
    /// taken for damage.
    #[test]
    fn running_out_of_descriptors_or_memory_is_no_damage() {
        let dir = Path::new("/store/db");
        for errno in [Errno::MFILE, Errno::NFILE, Errno::NOMEM] {
            let bare = std::io::Error::from_raw_os_error(errno.raw_os_error());
            let wrapped =
                std::io::Error::other(std::io::Error::from_raw_os_error(errno.raw_os_error()));
            for e in [bare, wrapped] {
                let mapped = map_error(fjall::Error::Io(e), dir);
                assert!(
                    matches!(mapped, BackendError::Unavailable { .. }),
                    "{mapped:?}"
                );
                assert!(mapped.fails_every_request());
                assert!(mapped.to_string().contains("not at fault"), "{mapped}");
            }
        }
    }
}
