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
//! | fjall, 2 keyspaces (this layout) | 300 B | 52,949 | 34,775 | 34,481 | 175,513 | 2.13 |
//! | fjall, count in value | 300 B | 91,237 | 24,571 | 62,158 | 92,104 | 2.25 |
//! | redb, 2 tables | 300 B | 13,443 | 27,180 | 124,762 | 507,762 | 1.96 |
//! | fjall, 2 keyspaces (this layout) | 4 KiB | 8,456 | 15,324 | 9,357 | 203,957 | 2.38 |
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
//! is.
//!
//! # Tuning for puts
//!
//! Profiles of `seccs bench` (256 MiB, S = 4096) led to four settings, each
//! measured there (embedded put went from 0.13× to 0.34× the AES-SIV floor):
//! - Key-value separation for `nodes`: sealed values go to blob files when a
//!   memtable is flushed and compactions move only keys and small handles,
//!   where before they rewrote every value at every level.
//! - One worker thread (see `WORKER_THREADS` for the fjall behaviour that
//!   made two cost a core).
//! - A put's intermediate batches defer their sync to the put's last batch
//!   ([`Batch::defer_durability`]): one sync per put, not one per 4 MiB.
//! - The writer waits while more than `WRITE_BUFFER_BYTES` sit in
//!   memtables, which keeps a put of any size under 128 MiB resident.
//!
//! # Layout
//!
//! Two keyspaces written together by one atomic `fjall` write batch:
//! `nodes` (key → value, block compression off: values are ciphertext) and
//! `counts` (key → count, 8 bytes big-endian). With the count packed in front
//! of the value, a count update rewrites the whole value and a count read
//! loads it: at 4 KiB, 4× slower updates and 9× slower count reads in the
//! table above. Two keyspaces cost a second point lookup in `get_many` (the
//! `counts` keyspace is small and stays cached) and a second write per insert.
//! An entry exists when both records do; one without the other is reported as
//! [`BackendError::Corrupt`], as is a count that is not 8 bytes long.
//! [`Backend::usage`] counts the `nodes` records and adds 8 bytes per entry
//! for the count, as the trait defines.
//!
//! # Durability, atomicity, locking
//!
//! Every [`Backend::apply`] is one `fjall` write batch: the journal records it
//! as a unit and recovery drops a batch whose end is missing, so a crash
//! leaves every batch wholly present or wholly absent (a test kills a writer
//! process repeatedly and checks this). By default `apply` syncs the journal
//! (`PersistMode::SyncAll`) before it returns. With
//! [`EmbeddedBackend::set_sync_each_batch`]`(false)` a batch is only written to
//! the operating system (it survives a crash of the process, not of the
//! machine) until [`Backend::flush`] syncs everything; this lets a caller
//! storing many small files group them under one sync. `fjall` gives every
//! write of a batch the same sequence number, so `apply` folds the batch into
//! one net write per key first, in batch order. `fjall` holds an advisory lock
//! on `DIR/lock` while the database is open; a second open, from this process
//! or another, gets [`BackendError::Locked`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use fjall::config::CompressionPolicy;
use fjall::{
    CompressionType, Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode,
    Readable, Snapshot,
};

use rayon::prelude::*;

use super::{Backend, BackendError, Batch, Entry, Op, Usage};

/// The backend's name in messages.
const NAME: &str = "embedded";
/// The keyspace of node values: digest → sealed bytes.
const NODES: &str = "nodes";
/// The keyspace of reference counts: digest → count (8 bytes, big-endian).
const COUNTS: &str = "counts";

/// Block cache of the database.
const CACHE_BYTES: u64 = 8 << 20;
/// Largest in-memory table per keyspace before it is flushed to disk.
const MEMTABLE_BYTES: u64 = 8 << 20;
/// All memtables together, sealed ones waiting for the flusher included.
const WRITE_BUFFER_BYTES: u64 = 16 << 20;
/// How long a writer waits for the flusher to make progress before it
/// writes on regardless (see `EmbeddedBackend::wait_for_flushes`).
const FLUSH_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest key fjall stores (it asserts keys are 1 to `u16::MAX` bytes).
const MAX_KEY_LEN: usize = u16::MAX as usize;
/// Lookups in one `get_values` call from which they run in parallel.
const PARALLEL_LOOKUPS: usize = 16;
/// Background threads for flushes and compactions. One: in fjall 3.1 a pool
/// of two or more has worker 0 hand every compaction message back to the
/// queue, and while the other worker compacts, worker 0 spins receiving and
/// re-sending it (a profile of a 256 MiB put showed a fifth of all cycles
/// there). With one worker flushes and compactions run in turn.
const WORKER_THREADS: usize = 1;

/// A content store's entries in a `fjall` database on local disk.
///
/// One process at a time: [`EmbeddedBackend::open`] takes the database's
/// lock file, and a second open, in this process or another, fails with
/// [`BackendError::Locked`] until the first handle is dropped.
///
/// By default every [`Backend::apply`] is durable when it returns (the
/// journal is synced to disk). A caller that commits many small batches can
/// turn that off with [`EmbeddedBackend::set_sync_each_batch`] and call
/// [`Backend::flush`] once at the end; each batch stays atomic either way.
pub struct EmbeddedBackend {
    db: Database,
    nodes: Keyspace,
    counts: Keyspace,
    path: PathBuf,
    sync_each_batch: AtomicBool,
    /// Serialises `apply`: a `SetCount` checks that its entry exists, and
    /// that check must see the state the batch is applied to.
    writer: Mutex<()>,
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend")
            .field("path", &self.path)
            .field("sync_each_batch", &self.sync_each_batch())
            .finish_non_exhaustive()
    }
}

impl EmbeddedBackend {
    /// Opens the database in `dir`, creating the directory and an empty
    /// database if they are missing.
    ///
    /// # Errors
    ///
    /// [`BackendError::Locked`] if another process (or another handle in this
    /// process) has the database open; [`BackendError::Corrupt`] if the files
    /// in `dir` are not a readable database of this format;
    /// [`BackendError::Other`] for I/O errors.
    pub fn open(dir: &Path) -> Result<Self, BackendError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            BackendError::other(NAME, format_args!("cannot create {}: {e}", dir.display()))
        })?;
        // Memory is bounded by the block cache plus one memtable per
        // keyspace; sizes keep a process storing a content of any size
        // under 128 MiB of resident memory (see `seccs put` in the README).
        // fjall 3.1 marks the write-buffer limit deprecated pending a
        // runtime setting, but it is the only bound on memtables waiting to
        // be flushed; unbounded, a long put outruns the flusher.
        #[allow(deprecated)]
        let db = Database::builder(dir)
            .cache_size(CACHE_BYTES)
            .worker_threads(WORKER_THREADS)
            .max_write_buffer_size(Some(WRITE_BUFFER_BYTES))
            .open()
            .map_err(|e| open_error(e, dir))?;
        // Values are ciphertext: compressing them costs time and saves
        // nothing. Reads of values are for nodes known to exist, so the last
        // level needs no Bloom filter; the counts keyspace keeps its filters
        // because a put asks for the counts of nodes that are mostly new.
        let nodes = db
            .keyspace(NODES, || {
                KeyspaceCreateOptions::default()
                    .data_block_compression_policy(CompressionPolicy::disabled())
                    .with_kv_separation(Some(
                        KvSeparationOptions::default().compression(CompressionType::None),
                    ))
                    .expect_point_read_hits(true)
                    .max_memtable_size(MEMTABLE_BYTES)
            })
            .map_err(|e| open_error(e, dir))?;
        let counts = db
            .keyspace(COUNTS, || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })
            .map_err(|e| open_error(e, dir))?;
        Ok(Self {
            db,
            nodes,
            counts,
            path: dir.to_owned(),
            sync_each_batch: AtomicBool::new(true),
            writer: Mutex::new(()),
        })
    }

    /// Holds the writer back while more than [`WRITE_BUFFER_BYTES`] wait in
    /// memtables. fjall 3.1 rotates a full memtable on its worker thread and
    /// does not enforce its own write-buffer limit, so a writer faster than
    /// the worker would otherwise grow memory with the content (a 3 GiB put
    /// reached 180 MiB resident). Bounded in
    /// time: if the flusher makes no progress for [`FLUSH_WAIT_LIMIT`], the
    /// write goes on (memory, not data, is at stake).
    fn wait_for_flushes(&self) {
        let start = std::time::Instant::now();
        let mut last = self.db.write_buffer_size();
        let mut progress_at = start;
        while last > WRITE_BUFFER_BYTES {
            std::thread::sleep(std::time::Duration::from_millis(1));
            let now = self.db.write_buffer_size();
            let at = std::time::Instant::now();
            if now < last {
                progress_at = at;
            } else if at.duration_since(progress_at) > FLUSH_WAIT_LIMIT {
                return;
            }
            last = now;
        }
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether each [`Backend::apply`] syncs to disk before it returns
    /// (default `true`).
    pub fn sync_each_batch(&self) -> bool {
        self.sync_each_batch.load(Ordering::Relaxed)
    }

    /// Chooses whether each [`Backend::apply`] syncs to disk before it
    /// returns. With `false`, a batch is still atomic and is handed to the
    /// operating system before `apply` returns (it survives a crash of this
    /// process), but it may be lost on power failure until
    /// [`Backend::flush`] (or a later synced batch) makes it durable.
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
        self.db.disk_space().map_err(map_error)
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // The guarded state is `()`: a panic in another writer leaves nothing
        // half-built here (an uncommitted fjall batch is simply dropped).
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_entry(&self, snapshot: &Snapshot, key: &[u8]) -> Result<Option<Entry>, BackendError> {
        let value = snapshot.get(&self.nodes, key).map_err(map_error)?;
        let count = snapshot.get(&self.counts, key).map_err(map_error)?;
        match (value, count) {
            (None, None) => Ok(None),
            (Some(value), Some(count)) => Ok(Some(Entry {
                value: value.to_vec(),
                count: decode_count(key, &count)?,
            })),
            (Some(_), None) => Err(corrupt(format_args!(
                "entry {} has a value but no count",
                hex::encode(key)
            ))),
            (None, Some(_)) => Err(corrupt(format_args!(
                "entry {} has a count but no value",
                hex::encode(key)
            ))),
        }
    }
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
    fn set_sync_each_batch(&self, sync: bool) {
        EmbeddedBackend::set_sync_each_batch(self, sync);
    }

    fn name(&self) -> &str {
        NAME
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
        // One snapshot: the entries read belong to one state of the store.
        let snapshot = self.db.snapshot();
        keys.iter()
            .map(|key| self.read_entry(&snapshot, key))
            .collect()
    }

    fn get_values(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let snapshot = self.db.snapshot();
        let read = |key: &&[u8]| {
            snapshot
                .get(&self.nodes, key)
                .map(|v| v.map(|v| v.to_vec()))
                .map_err(map_error)
        };
        // Point lookups cost a block read and checksum each when the block
        // cache misses; a read window's lookups run on every core.
        if keys.len() >= PARALLEL_LOOKUPS {
            keys.par_iter().map(read).collect()
        } else {
            keys.iter().map(read).collect()
        }
    }

    fn get_counts(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        let snapshot = self.db.snapshot();
        keys.iter()
            .map(|key| {
                snapshot
                    .get(&self.counts, key)
                    .map_err(map_error)?
                    .map(|count| decode_count(key, &count))
                    .transpose()
            })
            .collect()
    }

    fn apply(&self, batch: &Batch) -> Result<(), BackendError> {
        if batch.is_empty() {
            return Ok(());
        }
        for op in batch.ops() {
            let (Op::Put { key, .. } | Op::SetCount { key, .. } | Op::Delete { key }) = op else {
                continue;
            };
            if key.is_empty() || key.len() > MAX_KEY_LEN {
                return Err(BackendError::Other {
                    backend: NAME.into(),
                    detail: format!(
                        "a key of {} bytes: keys are 1 to {MAX_KEY_LEN} bytes long",
                        key.len()
                    ),
                });
            }
        }
        let _writer = self.lock_writer();

        // Fold the batch into one net write per key: fjall gives every write
        // of a batch the same sequence number, so two writes of one key in a
        // batch must not both reach it.
        let mut order: Vec<&[u8]> = Vec::with_capacity(batch.len());
        let mut pending: HashMap<&[u8], Pending<'_>> = HashMap::with_capacity(batch.len());
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
                        None => self.counts.contains_key(key).map_err(map_error)?,
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

        let durability = if self.sync_each_batch() && batch.is_durable() {
            Some(PersistMode::SyncAll)
        } else {
            // Written to the OS before commit returns; synced by `flush`.
            Some(PersistMode::Buffer)
        };
        let mut writes = self.db.batch().durability(durability);
        for key in order {
            let Some(p) = pending.get(key) else { continue };
            match p.value {
                Some(Some(value)) => writes.insert(&self.nodes, key, value),
                Some(None) => writes.remove(&self.nodes, key),
                None => {}
            }
            match p.count {
                Some(Some(count)) => writes.insert(&self.counts, key, count.to_be_bytes()),
                Some(None) => writes.remove(&self.counts, key),
                None => {}
            }
        }
        writes.commit().map_err(map_error)?;
        self.wait_for_flushes();
        Ok(())
    }

    fn is_transactional(&self) -> bool {
        true
    }

    fn for_each_with_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &Entry) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let snapshot = self.db.snapshot();
        for guard in snapshot.prefix(&self.nodes, prefix) {
            let (key, value) = guard.into_inner().map_err(map_error)?;
            let count = snapshot
                .get(&self.counts, &key)
                .map_err(map_error)?
                .ok_or_else(|| {
                    corrupt(format_args!(
                        "entry {} has a value but no count",
                        hex::encode(&key)
                    ))
                })?;
            visit(
                &key,
                &Entry {
                    value: value.to_vec(),
                    count: decode_count(&key, &count)?,
                },
            )?;
        }
        Ok(())
    }

    fn for_each(
        &self,
        visit: &mut dyn FnMut(&[u8], &Entry) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        // Both keyspaces are sorted by key: walk them side by side.
        let snapshot = self.db.snapshot();
        let mut counts = snapshot.iter(&self.counts);
        for guard in snapshot.iter(&self.nodes) {
            let (key, value) = guard.into_inner().map_err(map_error)?;
            let Some(next) = counts.next() else {
                return Err(corrupt(format_args!(
                    "entry {} has a value but no count",
                    hex::encode(&key)
                )));
            };
            let (count_key, count) = next.into_inner().map_err(map_error)?;
            let count = match count_key.as_ref().cmp(key.as_ref()) {
                std::cmp::Ordering::Equal => decode_count(&key, &count)?,
                std::cmp::Ordering::Less => {
                    return Err(corrupt(format_args!(
                        "entry {} has a count but no value",
                        hex::encode(&count_key)
                    )));
                }
                std::cmp::Ordering::Greater => {
                    return Err(corrupt(format_args!(
                        "entry {} has a value but no count",
                        hex::encode(&key)
                    )));
                }
            };
            visit(
                &key,
                &Entry {
                    value: value.to_vec(),
                    count,
                },
            )?;
        }
        if let Some(next) = counts.next() {
            let (count_key, _) = next.into_inner().map_err(map_error)?;
            return Err(corrupt(format_args!(
                "entry {} has a count but no value",
                hex::encode(&count_key)
            )));
        }
        Ok(())
    }

    fn usage(&self) -> Result<Usage, BackendError> {
        // Counts are 8 bytes each by construction: only the nodes are read.
        let snapshot = self.db.snapshot();
        let mut usage = Usage::default();
        for guard in snapshot.iter(&self.nodes) {
            let (key, value) = guard.into_inner().map_err(map_error)?;
            usage.add(key.len(), value.len());
        }
        Ok(usage)
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.db.persist(PersistMode::SyncAll).map_err(map_error)
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

fn corrupt(detail: impl std::fmt::Display) -> BackendError {
    BackendError::Corrupt {
        backend: NAME.to_owned(),
        detail: detail.to_string(),
    }
}

/// Maps an error of opening the database in `dir`, naming the directory.
fn open_error(e: fjall::Error, dir: &Path) -> BackendError {
    match e {
        fjall::Error::Locked => BackendError::Locked {
            detail: format!(
                "the database {} is open elsewhere; its lock file is {}",
                dir.display(),
                dir.join("lock").display()
            ),
        },
        other => match map_error(other) {
            BackendError::Corrupt { backend, detail } => BackendError::Corrupt {
                backend,
                detail: format!("{}: {detail}", dir.display()),
            },
            BackendError::Other { backend, detail } => BackendError::Other {
                backend,
                detail: format!("{}: {detail}", dir.display()),
            },
            mapped => mapped,
        },
    }
}

fn map_error(e: fjall::Error) -> BackendError {
    use fjall::{Error as F, LsmError as L};
    match e {
        F::Locked => BackendError::Locked {
            detail: "the database is open elsewhere".to_owned(),
        },
        F::Io(e) | F::Storage(L::Io(e)) => {
            if e.kind() == std::io::ErrorKind::InvalidData {
                corrupt(e)
            } else {
                BackendError::other(NAME, e)
            }
        }
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
