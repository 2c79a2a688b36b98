//! The key-value interface every storage backend implements.
//!
//! The content store keeps one entry per chunk-tree node: the node's digest as
//! the key, its sealed bytes as the value, and its reference count beside them.
//! Counts are a first-class part of an entry (not packed into the value by the
//! store) so that a backend can update a count without rewriting the node:
//! PostgreSQL keeps a column, Redis overwrites eight bytes in place.
//!
//! The trait is synchronous. Whatever a backend does inside (a tokio runtime,
//! a connection pool), the store hands it whole batches: [`Backend::get_many`]
//! reads many keys in one round trip and [`Backend::apply`] applies a put's or
//! a delete's every write in one call, as one transaction where the backend has
//! transactions ([`Backend::is_transactional`]).
//!
//! A [`Batch`] is ordered and divided into *stages* by [`Batch::barrier`]. A
//! transactional backend may ignore the stages. A backend without transactions
//! (S3) must make every operation of a stage durable before it starts the next
//! stage; inside a stage it may run operations concurrently. The store puts
//! children in earlier stages than their parents and deletes parents before
//! their children, so a crash never leaves a stored node that refers to a
//! missing one. What it can leave is space: a child written with the count
//! of a parent never written (a put cut off), or still holding the count of
//! a parent already removed (a delete cut off). Such a count looks like a
//! put without a name, so neither `verify` nor `gc` can tell it from one,
//! and the node stays; no node in use is ever lost. Orphans (count zero)
//! that a cut-off put leaves between its batches `gc` removes.

mod embedded;
mod memory;
mod read_only;

pub use embedded::EmbeddedBackend;
pub use memory::MemoryBackend;
pub(crate) use read_only::ReadOnly;

use std::path::Path;

/// One stored entry: a sealed value and its reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored bytes (a sealed node, or a sealed catalog record).
    pub value: Vec<u8>,
    /// The entry's reference count.
    pub count: u64,
}

/// What a walk over entries ([`Backend::walk`]) calls with each one; an
/// error it returns ends the walk.
pub type Visitor<'a> = dyn FnMut(&[u8], &Entry) -> Result<(), BackendError> + 'a;

/// What a damage-tolerant walk ([`Backend::walk`]) calls with the key of
/// each entry it cannot decode, and why.
pub type Damaged<'a> = dyn FnMut(&[u8], BackendError) + 'a;

/// One write of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or replace the entry at `key`.
    Put {
        /// The entry's key.
        key: Vec<u8>,
        /// The entry's value.
        value: Vec<u8>,
        /// The entry's reference count.
        count: u64,
    },
    /// Set the count of an existing entry, leaving its value as it is.
    /// Applying it to a missing key is an error of the store, not of the
    /// backend; backends may treat it as a no-op.
    SetCount {
        /// The entry's key.
        key: Vec<u8>,
        /// The new count.
        count: u64,
    },
    /// Remove the entry at `key` (no-op if absent).
    Delete {
        /// The entry's key.
        key: Vec<u8>,
    },
    /// Everything before must be durable before anything after starts
    /// (meaningful for backends without transactions; see the module docs).
    Barrier,
}

/// An ordered list of writes applied by one [`Backend::apply`] call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
    deferred: bool,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a create-or-replace.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>, count: u64) {
        self.ops.push(Op::Put { key, value, count });
    }

    /// Adds a count update.
    pub fn set_count(&mut self, key: Vec<u8>, count: u64) {
        self.ops.push(Op::SetCount { key, count });
    }

    /// Adds a removal.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(Op::Delete { key });
    }

    /// Ends the current stage (see the module docs). Consecutive and leading
    /// barriers are collapsed.
    pub fn barrier(&mut self) {
        if !matches!(self.ops.last(), None | Some(Op::Barrier)) {
            self.ops.push(Op::Barrier);
        }
    }

    /// Lets the backend make this batch durable later: with the next
    /// durable batch or [`Backend::flush`], whichever comes first. The batch
    /// is still applied atomically, and batches still become durable in
    /// the order they were applied, so a crash loses at most a suffix of
    /// deferred batches. A multi-batch put defers every batch but its last
    /// (its journal entry covers the rest); backends that sync on every
    /// batch may ignore this.
    pub fn defer_durability(&mut self) {
        self.deferred = true;
    }

    /// Whether the batch must be durable when [`Backend::apply`] returns
    /// (see [`Batch::defer_durability`]).
    pub fn is_durable(&self) -> bool {
        !self.deferred
    }

    /// Appends another batch's operations as a later stage.
    pub fn append(&mut self, other: Batch) {
        self.barrier();
        self.ops.extend(other.ops);
        self.deferred &= other.deferred;
    }

    /// The operations in order, barriers included.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Consumes the batch into its operations.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// The operations split into stages (barriers removed, empty stages
    /// dropped).
    pub fn stages(&self) -> impl Iterator<Item = &[Op]> {
        self.ops
            .split(|op| matches!(op, Op::Barrier))
            .filter(|stage| !stage.is_empty())
    }

    /// Whether the batch has no writes.
    pub fn is_empty(&self) -> bool {
        self.ops.iter().all(|op| matches!(op, Op::Barrier))
    }

    /// Number of writes (barriers not counted).
    pub fn len(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| !matches!(op, Op::Barrier))
            .count()
    }
}

/// Totals over every entry of a backend, as `seccs stat` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Number of entries (keys).
    pub entries: u64,
    /// Sum over entries of key length + value length + 8 (the count).
    pub bytes: u64,
}

impl Usage {
    /// Adds one entry to the totals.
    pub fn add(&mut self, key_len: usize, value_len: usize) {
        self.entries += 1;
        self.bytes += (key_len + value_len + 8) as u64;
    }
}

/// An error of a backend, naming the backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend could not be reached (server down, connection refused,
    /// timeout).
    #[error("{backend} backend unavailable: {detail}")]
    Unavailable {
        /// The backend's name (`redis`, `postgres`, ...).
        backend: String,
        /// What happened.
        detail: String,
    },
    /// The server refused our credentials.
    #[error("{backend} backend refused the credentials: {detail}")]
    Auth {
        /// The backend's name.
        backend: String,
        /// What happened.
        detail: String,
    },
    /// The server knows who we are but refuses what this command asks:
    /// the user's rights leave out a command, key or table the store
    /// uses (taken away meanwhile, or never given). Every later request
    /// is refused the same way until the rights are given.
    #[error("{backend} backend refused the request: {detail}")]
    Denied {
        /// The backend's name.
        backend: String,
        /// What was refused, and what rights the store needs.
        detail: String,
    },
    /// Another process holds the store open, or another handle in this
    /// process: the detail names the holder.
    #[error("store is in use ({detail})")]
    Locked {
        /// Where the lock is held.
        detail: String,
        /// Whether the holder is known to be this very process, through
        /// another exclusive handle on the store (or on the same backend
        /// named another way): waiting for it to finish never ends, and a
        /// caller that opened the other handle itself can say what it is.
        by_this_process: bool,
    },
    /// The backend's own data is unreadable (not: a node failed to
    /// authenticate; that is the store's error).
    #[error("{backend} backend data is corrupt: {detail}")]
    Corrupt {
        /// The backend's name.
        backend: String,
        /// What is wrong.
        detail: String,
    },
    /// The backend lost the store while this command wrote: its marker
    /// went (the database or table was emptied, or the server restarted
    /// without its data). Nothing of the batch that found it was written.
    #[error("{backend} backend lost this store: {detail}")]
    StoreLost {
        /// The backend's name.
        backend: String,
        /// What happened.
        detail: String,
    },
    /// The storage under the backend takes no more writes: the disk that
    /// holds it is full, a quota is used up, or its file system is
    /// read-only. Every later write fails the same way until room is made;
    /// the detail names the place and says what to do.
    #[error("{backend} backend cannot write: {detail}")]
    StorageFull {
        /// The backend's name.
        backend: String,
        /// Where, why, and what to do.
        detail: String,
    },
    /// A malformed backend URL or option.
    #[error("invalid backend configuration: {0}")]
    Config(String),
    /// Any other failure of the backend.
    #[error("{backend} backend error: {detail}")]
    Other {
        /// The backend's name.
        backend: String,
        /// What happened.
        detail: String,
    },
}

impl BackendError {
    /// Shorthand for [`BackendError::Other`].
    pub fn other(backend: &str, detail: impl std::fmt::Display) -> Self {
        Self::Other {
            backend: backend.to_owned(),
            detail: detail.to_string(),
        }
    }

    /// Whether every later request of this command would fail the same way
    /// (the backend is unreachable, refuses the credentials or the
    /// user's rights, is held by another process, lost the store, or has
    /// no room left), so a command
    /// working through many entries should stop rather than try each.
    pub fn fails_every_request(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::Auth { .. }
                | Self::Denied { .. }
                | Self::Locked { .. }
                | Self::StoreLost { .. }
                | Self::StorageFull { .. }
        )
    }

    /// [`BackendError::StorageFull`] for an I/O error `e` of a write under
    /// `place` that [`no_room`] recognises; `None` for any other error.
    pub fn storage_full(backend: &str, e: &std::io::Error, place: &Path) -> Option<Self> {
        no_room(e, place).map(|detail| Self::StorageFull {
            backend: backend.to_owned(),
            detail,
        })
    }

    /// [`BackendError::StoreLost`] for a store whose marker went while this
    /// command wrote: nothing of the batch that found it gone was written.
    pub fn marker_gone(backend: &str) -> Self {
        Self::StoreLost {
            backend: backend.to_owned(),
            detail: "the store's marker is gone: the server lost the store's data (emptied, or \
                     restarted without persistence) while this command wrote; nothing of this \
                     batch was written"
                .into(),
        }
    }

    /// Shorthand for [`BackendError::Unavailable`].
    pub fn unavailable(backend: &str, detail: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            backend: backend.to_owned(),
            detail: detail.to_string(),
        }
    }
}

/// What to say of an I/O error `e` met writing under `place` that every
/// later write there would meet too (a full disk, a used-up quota, a
/// read-only file system): where, why, and what to do. `None` for any
/// other error.
pub fn no_room(e: &std::io::Error, place: &Path) -> Option<String> {
    if !is_no_room(e) {
        return None;
    }
    use std::io::ErrorKind as K;
    let place = place.display();
    match e.kind() {
        K::StorageFull => Some(format!(
            "the disk holding {place} is full ({e}): free room and run the same command again"
        )),
        K::QuotaExceeded => Some(format!(
            "the disk quota of {place} is used up ({e}): free room and run the same command \
             again"
        )),
        K::ReadOnlyFilesystem => Some(format!(
            "the file system holding {place} is read-only ({e}): make it writable and run the \
             same command again"
        )),
        _ => None,
    }
}

/// Whether `e` is an I/O error that every later write to the same place
/// would meet too: a full disk, a used-up quota, a read-only file system.
pub fn is_no_room(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull | K::QuotaExceeded | K::ReadOnlyFilesystem
    )
}

/// The most bytes of a value kept beside the entries (the store marker,
/// the descriptor) that a backend reads: one more is read, so that a longer
/// value (a backend's owner can write anything there) is seen as too long
/// rather than read whole into memory.
pub const MAX_BESIDE_ENTRIES: usize = 4096;

/// A key-value store that holds a content store's entries.
///
/// Implementations must be safe to share between threads; the store
/// serialises writers itself, so `apply` is never called concurrently by one
/// store, but `get_many` may be.
///
/// The store calls most methods while it holds its writer lock, some of
/// them from rayon workers. A backend may use rayon itself only in
/// `get_many` and `get_values`, and only for 16 keys or more: the store
/// calls those with many keys, under the lock, only from a thread pool
/// of its own where no waiting job can need the lock, and the last commit
/// of each put (`apply`, `get_counts`, and these two with fewer keys) runs
/// where the put runs. A rayon call elsewhere could wait for a worker that
/// waits for the lock.
pub trait Backend: Send + Sync {
    /// A short name for messages: `memory`, `embedded`, `redis`, ...
    fn name(&self) -> &str;

    /// Reads many entries in one round trip; `None` where a key is absent.
    /// The result has one element per key, in order.
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError>;

    /// Reads only the values of many entries (what a read of contents
    /// needs); `None` where a key is absent. Backends that can read a value
    /// without its count should override this.
    fn get_values(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        Ok(self
            .get_many(keys)?
            .into_iter()
            .map(|e| e.map(|e| e.value))
            .collect())
    }

    /// Reads only the counts of many entries; `None` where a key is absent.
    /// Backends that can read a count without its value should override this.
    fn get_counts(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        Ok(self
            .get_many(keys)?
            .into_iter()
            .map(|e| e.map(|e| e.count))
            .collect())
    }

    /// Reads one entry.
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, BackendError> {
        Ok(self.get_many(&[key])?.pop().flatten())
    }

    /// Applies a batch: atomically if [`Backend::is_transactional`], else
    /// stage by stage (see the module docs).
    fn apply(&self, batch: &Batch) -> Result<(), BackendError>;

    /// Like [`Backend::apply`], taking the batch by value so that a backend
    /// that keeps values in memory can move them instead of copying.
    fn apply_owned(&self, batch: Batch) -> Result<(), BackendError> {
        self.apply(&batch)
    }

    /// Whether [`Backend::apply`] is all-or-nothing.
    fn is_transactional(&self) -> bool;

    /// Calls `visit` with every entry whose key starts with `prefix` (every
    /// entry, for an empty prefix), in no particular order. Used by listings
    /// of the catalog, `stat`, `verify` and `gc`, never on a hot path.
    ///
    /// `damaged` says what an entry the backend holds but cannot decode
    /// does to the walk. With `None`, the first such entry ends it with its
    /// error. With `Some`, the entry's key (and why) goes to `damaged` and
    /// the walk goes on past it: `verify` and `gc` walk this way, so that
    /// one damaged entry is a finding rather than the end of the check, and
    /// so do listings, so that one damaged catalog record does not hide
    /// every other. A backend whose stored form cannot be damaged entry by
    /// entry apart from the value (which the store authenticates) may
    /// ignore `damaged`; one that packs its own fields into stored bytes
    /// (Redis: the count before the value) or reads whole blocks of entries
    /// (the embedded backend) must not.
    ///
    /// An error that `visit` returns ends the walk and is returned as it is.
    /// Backends whose keys are ordered should read only the entries under
    /// `prefix`, so that a listing of the catalog does not read every node.
    fn walk(
        &self,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
        damaged: Option<&mut Damaged<'_>>,
    ) -> Result<(), BackendError>;

    /// Calls `visit` with every entry, stopping at the first damaged one:
    /// [`Backend::walk`] with an empty prefix and no `damaged`.
    fn for_each(&self, visit: &mut Visitor<'_>) -> Result<(), BackendError> {
        self.walk(&[], visit, None)
    }

    /// Calls `visit` with every entry whose key starts with `prefix`,
    /// stopping at the first damaged one: [`Backend::walk`] with no
    /// `damaged`.
    fn for_each_with_prefix(
        &self,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
    ) -> Result<(), BackendError> {
        self.walk(prefix, visit, None)
    }

    /// Totals over every entry.
    fn usage(&self) -> Result<Usage, BackendError> {
        let mut usage = Usage::default();
        self.for_each(&mut |key, entry| {
            usage.add(key.len(), entry.value.len());
            Ok(())
        })?;
        Ok(usage)
    }

    /// Makes every applied batch durable (no-op where `apply` already is).
    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Whether each batch is made durable before `apply` returns (default)
    /// or only at the next [`Backend::flush`]; batches stay atomic either
    /// way. Writers of many small batches turn it off, then flush once.
    fn set_sync_each_batch(&self, _sync: bool) {}

    /// Looks `keys` up as reads do and calls `failed` for each one that a
    /// lookup cannot read or does not find, for `verify`: in a backend
    /// whose walks and lookups read different structures (an LSM tree's
    /// filters and indexes), damage a walk never meets still fails every
    /// read. The default checks nothing, for backends where a walk reads
    /// what a lookup reads.
    fn check_lookups(
        &self,
        keys: &[&[u8]],
        failed: &mut dyn FnMut(&[u8], BackendError),
    ) -> Result<(), BackendError> {
        let _ = (keys, failed);
        Ok(())
    }

    /// What the backend found, when it was opened, that puts a store's
    /// entries at risk (a Redis server that evicts keys when it is full),
    /// one sentence each, for the caller to show. None (the default) where
    /// nothing was found or nothing can be checked.
    fn risks(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether the backend keeps a store marker ([`Backend::read_marker`]):
    /// a server that can lose everything it holds (a Redis restart without
    /// persistence, a bucket emptied) would otherwise make a store look
    /// merely empty. False (the default) where the store's data cannot go
    /// missing without the backend saying so (a missing database or table).
    fn keeps_marker(&self) -> bool {
        false
    }

    /// The store marker, if the backend holds one: a value written once by
    /// [`Backend::write_marker`] beside the entries but not among them
    /// (walks and [`Backend::usage`] never show it). At most
    /// [`MAX_BESIDE_ENTRIES`] + 1 bytes of it are read.
    fn read_marker(&self) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(None)
    }

    /// Writes the store marker (see [`Backend::read_marker`]).
    fn write_marker(&self, value: &[u8]) -> Result<(), BackendError> {
        let _ = value;
        Ok(())
    }

    /// Removes the store marker, if there is one, as a writer (under the
    /// writer lease where the backend takes one). Only for an `init` that
    /// marked a new, empty backend and then failed: the marker would make
    /// the next `init` on the same place refuse it as another store's. A
    /// no-op (the default) where the backend keeps no marker.
    fn remove_marker(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// From now on, applies a batch only while the backend still holds the
    /// store marker `value`, checked in the same atomic step as the batch
    /// (a batch that finds it gone writes nothing and fails with
    /// [`BackendError::StoreLost`]). A backend emptied while a command writes
    /// (a Redis restart without persistence, a `TRUNCATE`) then stops the
    /// command, instead of taking its later batches into an empty store. A
    /// no-op (the default) where the backend keeps no marker.
    fn guard_writes_with_marker(&self, value: &[u8]) {
        let _ = value;
    }

    /// Whether the backend keeps the store's descriptor
    /// ([`Backend::read_descriptor`]). False (the default) where it has no
    /// place for one beside its entries.
    fn keeps_descriptor(&self) -> bool {
        false
    }

    /// The store's descriptor, if the backend holds one: the parameters
    /// that a store's directory holds too (chunk size, wrapper, compression,
    /// a key-service salt), kept beside the entries but not among them
    /// (walks and [`Backend::usage`] never show it), so that a store whose
    /// directory was lost can be attached again from its backend and key
    /// alone. Its bytes are untrusted until the store key authenticates
    /// them (see `seccs_store::descriptor`), and at most
    /// [`MAX_BESIDE_ENTRIES`] + 1 of them are read.
    fn read_descriptor(&self) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(None)
    }

    /// Writes (or replaces) the store's descriptor as a writer (under the
    /// writer lease where the backend takes one); see
    /// [`Backend::read_descriptor`]. A no-op (the default) where the
    /// backend keeps none.
    fn write_descriptor(&self, value: &[u8]) -> Result<(), BackendError> {
        let _ = value;
        Ok(())
    }

    /// The other stores, found by their markers, whose key space nests with
    /// this one's: a store whose prefix this store's starts with, or one
    /// whose prefix starts with this store's. Their entries would mix (each
    /// would walk the other's), so `init` refuses such a place, and
    /// `verify` and `gc` name those that an older build let nest. Each is
    /// described for a message. Empty (the default) where stores cannot
    /// nest (a table or directory of their own).
    fn nested_stores(&self) -> Result<Vec<String>, BackendError> {
        Ok(Vec::new())
    }

    /// Lets go at once of what the backend holds for this process alone (a
    /// writer lease), for a process about to exit without dropping it (an
    /// interrupt); nothing may be written through the backend afterwards. A
    /// no-op (the default) where there is nothing to let go, or where the
    /// server lets go by itself when the process ends (a session lock).
    fn release(&self) {}

    /// Gives the file system back the space of entries already deleted,
    /// where the backend keeps it after a delete (an LSM tree keeps deleted
    /// records until a compaction merges them away). `gc` calls it; it may
    /// rewrite the backend's index, so it is not for hot paths. A no-op
    /// (the default) where a delete frees its space by itself.
    ///
    /// `Ok(Some(note))`: the space could not be given back now but comes
    /// back later by itself; the note says when (gc says it, and succeeds).
    fn reclaim_space(&self) -> Result<Option<String>, BackendError> {
        Ok(None)
    }
}

/// Implements [`Backend`] for a smart pointer by forwarding every method, so
/// that no method falls back to its default behind a `Box` or an `Arc`
/// (which would, say, keep batches synced that the caller asked not to).
macro_rules! forward_backend {
    ($($pointer:ident)::+) => {
        impl<B: Backend + ?Sized> Backend for $($pointer)::+<B> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn set_sync_each_batch(&self, sync: bool) {
                (**self).set_sync_each_batch(sync)
            }
            fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
                (**self).get_many(keys)
            }
            fn get_values(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
                (**self).get_values(keys)
            }
            fn get_counts(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
                (**self).get_counts(keys)
            }
            fn apply(&self, batch: &Batch) -> Result<(), BackendError> {
                (**self).apply(batch)
            }
            fn apply_owned(&self, batch: Batch) -> Result<(), BackendError> {
                (**self).apply_owned(batch)
            }
            fn is_transactional(&self) -> bool {
                (**self).is_transactional()
            }
            fn walk(
                &self,
                prefix: &[u8],
                visit: &mut Visitor<'_>,
                damaged: Option<&mut Damaged<'_>>,
            ) -> Result<(), BackendError> {
                (**self).walk(prefix, visit, damaged)
            }
            fn usage(&self) -> Result<Usage, BackendError> {
                (**self).usage()
            }
            fn flush(&self) -> Result<(), BackendError> {
                (**self).flush()
            }
            fn reclaim_space(&self) -> Result<Option<String>, BackendError> {
                (**self).reclaim_space()
            }
            fn release(&self) {
                (**self).release()
            }
            fn check_lookups(
                &self,
                keys: &[&[u8]],
                failed: &mut dyn FnMut(&[u8], BackendError),
            ) -> Result<(), BackendError> {
                (**self).check_lookups(keys, failed)
            }
            fn risks(&self) -> Vec<String> {
                (**self).risks()
            }
            fn keeps_marker(&self) -> bool {
                (**self).keeps_marker()
            }
            fn read_marker(&self) -> Result<Option<Vec<u8>>, BackendError> {
                (**self).read_marker()
            }
            fn write_marker(&self, value: &[u8]) -> Result<(), BackendError> {
                (**self).write_marker(value)
            }
            fn remove_marker(&self) -> Result<(), BackendError> {
                (**self).remove_marker()
            }
            fn nested_stores(&self) -> Result<Vec<String>, BackendError> {
                (**self).nested_stores()
            }
            fn keeps_descriptor(&self) -> bool {
                (**self).keeps_descriptor()
            }
            fn read_descriptor(&self) -> Result<Option<Vec<u8>>, BackendError> {
                (**self).read_descriptor()
            }
            fn write_descriptor(&self, value: &[u8]) -> Result<(), BackendError> {
                (**self).write_descriptor(value)
            }
            fn guard_writes_with_marker(&self, value: &[u8]) {
                (**self).guard_writes_with_marker(value)
            }
        }
    };
}

forward_backend!(Box);
forward_backend!(std::sync::Arc);
