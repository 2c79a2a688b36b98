//! The [`Store`]: puts, gets and deletes contents over a [`Backend`].

use std::path::PathBuf;
use std::sync::Arc;

use seccs_core::SecretKey;

use crate::backend::{Backend, BackendError, Batch, Usage};
use crate::catalog::{
    self, CatalogCrypto, Entry, EntryKind, FileMeta, FileStamp, Head, Layout, Page, Record, Version,
};
use crate::chunker::Chunker;
use crate::error::{Result, StoreError};
use crate::node::{self, Child};
use crate::params::{ContentRef, Params};
use crate::put::FinalEntries;
use crate::put::PutOutcome;
use crate::wrapper::{CryptoWrapper, NodeContext, WrapperKind};

mod delete;
mod read;
mod writer;

pub use delete::DeleteReport;
pub(crate) use delete::Releaser;
pub(crate) use writer::Held;

/// Inner nodes fetched per round trip of a read.
const INNER_BATCH: usize = 256;
/// Heights a node of unknown place is tried at when checking a key: more
/// than any tree has (each level multiplies a node's span by at least 2).
const MAX_TRIED_HEIGHT: u8 = 64;
/// Nodes tried when checking a key against a store without names.
const NODES_TRIED: usize = 3;
/// Roots of named contents kept, as they are met in the catalog, to check
/// the parameters against a store with names: the first that is stored is
/// read.
const ROOTS_TRIED: usize = 8;

/// A content store over a backend.
///
/// `Store` is `Send + Sync`: puts, gets and deletes may run from many threads
/// at once. Sealing and reading run in parallel; the phase of a write that
/// reads and updates reference counts is serialised. For a content of more
/// than one 4 MiB segment that phase lasts from the first segment's commit
/// to the end of the put, reads of its reader included: a put from a slow
/// stream holds up the other writes of this `Store` (puts, deletes, `gc`)
/// while it runs. Read such a stream into a file first where that matters.
///
/// [`Store::open`] checks the key against the store's data and refuses one
/// that is not the store's; [`crate::dir::StoreDir::open_store`] opens a
/// store kept on disk by its recorded check value. [`Store::new_unchecked`]
/// checks nothing: a wrong key would write nodes and catalog records that
/// the right one cannot read, and every record would look forged, so a
/// store made that way, or opened with a key that opens only some of the
/// records, never has [`Store::gc`] remove a record that fails to
/// authenticate.
pub struct Store {
    backend: Arc<dyn Backend>,
    params: Params,
    wrapper: Box<dyn CryptoWrapper>,
    chunker: Chunker,
    /// Serialises writes; the work done under it runs in a pool of its
    /// own (see [`Held::run`]).
    writer: writer::WriterLock,
    parallel: bool,
    journal_dir: Option<PathBuf>,
    catalog: CatalogCrypto,
    /// Whether the key was proven to be the store's when it was opened
    /// (see [`Store::key_checked`]): only then is a record that fails to
    /// authenticate known to be corrupt or forged rather than sealed under
    /// another key.
    key_checked: bool,
    /// Whether the backend held the store's marker when the store was
    /// opened (read, or written by a store directory), `Some(false)` where
    /// [`Store::open`] found none: a marker found gone later means that the
    /// backend lost the store's data only where there was one. `None` for
    /// a store made by [`Store::new_unchecked`], which looked at none.
    marker_at_open: Option<bool>,
    /// The lock of the store directory this store was opened from
    /// ([`crate::dir::StoreDir::open_store`]), held for as long as the
    /// store lives, not only its directory handle.
    dir_lock: Option<Arc<seccs_core::lockfile::DirLock>>,
    /// The check value of the store key ([`crate::dir::key_check`]), to
    /// tell two stores under one key apart from two under different keys
    /// ([`crate::mirror`]) without keeping the key itself.
    key_check: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.name())
            .field("params", &self.params)
            .field("parallel", &self.parallel)
            .finish_non_exhaustive()
    }
}

/// A content's root node, opened.
enum Root {
    /// A content of one leaf: its bytes.
    Leaf(Vec<u8>),
    /// A superchunk of `height`, and its children.
    Inner { height: u8, children: Vec<Child> },
}

/// What [`Store::check_catalog`] found.
#[derive(Default)]
struct CatalogCheck {
    /// Records the key opens.
    opened: u64,
    /// Records it does not.
    failed: u64,
    /// The first few references of non-empty contents that the records it
    /// opens name, to check the parameters by.
    roots: Vec<ContentRef>,
}

impl CatalogCheck {
    fn records(&self) -> u64 {
        self.opened + self.failed
    }
}

/// A put in progress, recorded so that a crash can be cleaned up.
pub(crate) struct JournalEntry(PathBuf);

impl Store {
    /// A store over `backend` with `params`, its keys derived from
    /// `store_key`, once the key is found to be the store's: the backend's
    /// store marker, where it keeps one, must be this key's check value,
    /// and the key must open the store's catalog records (or, in a store
    /// without names, one of its nodes). A backend that holds nothing is
    /// the new store of this key. Another key is refused with
    /// [`StoreError::WrongKey`] before anything is written; the store's key
    /// with another wrapper, in a store without names (checked on its
    /// nodes, which the wrapper seals), with [`StoreError::Config`], naming
    /// the wrapper its nodes open under. In a store with names, whose
    /// catalog opens under the store's key whatever the parameters, the
    /// root of one named content (the first met whose root is stored) is
    /// opened too: the store's key with another wrapper or another chunk
    /// size is refused with [`StoreError::Config`] naming which, before
    /// anything is written (a root that opens under nothing is damage,
    /// which [`Store::verify`] reports, and refuses nothing). The
    /// compression setting is not checked. Uses every core;
    /// see [`Store::set_parallel`].
    ///
    /// A key that opens some of the catalog records but not all is taken
    /// (one damaged record must not lock the store's owner out), but it is
    /// not proven to be the store's: the records it does not open may be
    /// the store's own, written by its key after this one put a name into
    /// the backend while it was new. Only a proven key
    /// ([`Store::key_checked`]: the backend's marker matched, or the key
    /// opened every record, or the store directory's check value matched
    /// in [`crate::dir::StoreDir::open_store`]) has [`Store::gc`] remove a
    /// record that fails to authenticate.
    ///
    /// The check reads the catalog, whole where the backend keeps no marker
    /// and every record opens (and, in a store without names, walks the
    /// backend until a node opens). One `Store` per backend: a `Store`
    /// serialises its own writers (it is `Send + Sync`; share it in an
    /// `Arc`), but two over one backend would race on reference counts and
    /// lose updates. The embedded backend refuses a second open of its
    /// directory. A network backend refuses a second writer process only
    /// when each writer's handle comes from `seccs_backends::open_exclusive`
    /// (it holds the store's writer lease or lock); a handle from
    /// `seccs_backends::open` or `create` holds none, so two processes
    /// writing through such handles race on reference counts. No backend
    /// refuses a second `Store` on one handle.
    pub fn open(backend: Arc<dyn Backend>, params: Params, store_key: &SecretKey) -> Result<Self> {
        let mut store = Self::new_unchecked(backend, params, store_key);
        let marker_matched = match store.backend.read_marker()? {
            Some(marker) => {
                let ours = crate::dir::key_check(store_key);
                if !bool::from(subtle::ConstantTimeEq::ct_eq(
                    marker.as_slice(),
                    ours.as_bytes(),
                )) {
                    return Err(StoreError::WrongKey(format!(
                        "the key given is not the key of the store on this {} backend (its \
                         marker holds another key's check value); nothing was read or written \
                         with it",
                        store.backend.name()
                    )));
                }
                true
            }
            None => false,
        };
        // Past a matching marker the key is proven; without one, only
        // when every record opens (the walk may then end at the first
        // record that opens).
        let catalog = store.check_catalog(!marker_matched)?;
        let opens = match catalog.opened {
            _ if catalog.records() == 0 => store.wrapper_opens_nodes(store.wrapper.as_ref())?,
            0 => Some(false),
            _ => Some(true),
        };
        if opens == Some(false) {
            // Without catalog records the key is checked on nodes, which
            // the wrapper seals: under another wrapper the right key fails
            // too, and that is said rather than a wrong key.
            let others = match catalog.records() {
                0 => store.other_wrappers_opening_nodes(store_key)?,
                _ => Vec::new(),
            };
            if !others.is_empty() {
                return Err(StoreError::Config(format!(
                    "the store on this {} backend was made with other parameters: the key \
                     given opens its nodes under the {} wrapper, not under {}, the wrapper of \
                     the parameters given; open it with its own parameters. Nothing was \
                     written",
                    store.backend.name(),
                    others.join(" or "),
                    store.params.wrapper().name()
                )));
            }
            return Err(StoreError::WrongKey(format!(
                "the key given opens none of the catalog records or nodes of the store on this \
                 {} backend; nothing was written with it",
                store.backend.name()
            )));
        }
        store.check_params_on_root(&catalog.roots, store_key)?;
        // A record that fails under a key that opens others may be damage,
        // or the store's own where this key is another's that once wrote
        // here: the store opens, but gc leaves such records.
        store.key_checked = marker_matched || catalog.failed == 0;
        store.marker_at_open = Some(marker_matched);
        Ok(store)
    }

    /// A store over `backend` with `params`, its keys derived from
    /// `store_key`, without checking that the key is the store's (as
    /// [`Store::open`] does): for a backend known to be new or to be this
    /// key's, where the check's reads are not wanted. With another key,
    /// puts write nodes and records that the store's own key cannot read,
    /// and every record reads as forged, so [`Store::gc`] of a store made
    /// this way leaves records that fail to authenticate where they are.
    /// Uses every core; see [`Store::set_parallel`].
    pub fn new_unchecked(backend: Arc<dyn Backend>, params: Params, store_key: &SecretKey) -> Self {
        Self {
            backend,
            params,
            wrapper: params.wrapper().build(store_key),
            chunker: Chunker::new(store_key, params.chunk_size(), params.reference_len()),
            writer: writer::WriterLock::new(),
            parallel: true,
            journal_dir: None,
            catalog: CatalogCrypto::new(store_key),
            key_checked: false,
            marker_at_open: None,
            dir_lock: None,
            key_check: crate::dir::key_check(store_key),
        }
    }

    /// Records that the key was checked against the store's data
    /// ([`crate::dir::StoreDir::open_store`] checks it by its own means).
    pub(crate) fn mark_key_checked(&mut self) {
        self.key_checked = true;
    }

    /// Records that the backend's store marker was read or written when
    /// the store was opened ([`crate::dir::StoreDir::check_backend_marker`]).
    pub(crate) fn mark_marker_read(&mut self) {
        self.marker_at_open = Some(true);
    }

    /// Whether the backend held the store's marker when the store was
    /// opened; `None` if that was not looked at.
    pub(crate) fn marker_at_open(&self) -> Option<bool> {
        self.marker_at_open
    }

    /// Whether the key was proven to be the store's when the store was
    /// opened: by the backend's marker or by opening every catalog record
    /// ([`Store::open`]; so in a backend that held no record), or by the
    /// store directory's check value
    /// ([`crate::dir::StoreDir::open_store`]). Only then does
    /// [`Store::gc`] remove the records that fail to authenticate.
    pub fn key_checked(&self) -> bool {
        self.key_checked
    }

    /// The check value of the store key ([`crate::dir::key_check`]): two
    /// stores have one key exactly when their check values are equal.
    pub fn key_check(&self) -> &str {
        &self.key_check
    }

    /// Whether to use every core (default) or one thread. Results are
    /// byte-identical either way.
    pub fn set_parallel(&mut self, parallel: bool) {
        self.parallel = parallel;
    }

    /// A directory where large puts record that they are in progress, so
    /// that [`Store::recover`] after a crash knows to clean up.
    pub fn set_journal_dir(&mut self, dir: PathBuf) {
        self.journal_dir = Some(dir);
    }

    /// Holds `lock`, a store directory's, until this store is dropped.
    pub(crate) fn hold_dir_lock(&mut self, lock: Arc<seccs_core::lockfile::DirLock>) {
        self.dir_lock = Some(lock);
    }

    /// The store's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub(crate) fn wrapper(&self) -> &dyn CryptoWrapper {
        self.wrapper.as_ref()
    }

    pub(crate) fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    pub(crate) fn is_parallel(&self) -> bool {
        self.parallel
    }

    /// Takes the writer lock. What is done under it that may call rayon,
    /// the backend included, runs through [`Held::run`]; see
    /// [`Store::with_writer_lock`].
    pub(crate) fn lock_writer(&self) -> Held<'_> {
        self.writer.lock()
    }

    /// Runs `work` under the writer lock, in the pool where work under it
    /// runs ([`Held::run`]). `work` is `FnMut`: it runs once, but may have
    /// to be run on the caller's thread when it could not be handed over.
    pub(crate) fn with_writer_lock<R: Send>(&self, mut work: impl FnMut() -> R + Send) -> R {
        self.lock_writer().run(|_| work())
    }

    /// Stores `content`; returns its reference (Python: `put_content`).
    pub fn put(&self, content: &[u8]) -> Result<ContentRef> {
        Ok(self.put_and_check_if_new(content)?.content_ref)
    }

    /// Stores `content`; returns its reference and whether it was new
    /// (Python: `put_content_and_check_if_new`).
    pub fn put_and_check_if_new(&self, content: &[u8]) -> Result<PutOutcome> {
        self.put_reader(&mut &content[..])
    }

    /// The root of `content_ref`, authenticated as a root at the height its
    /// length gives, and checked to cover that length.
    ///
    /// A reference whose root is not stored is [`StoreError::NotFound`] (a
    /// reference from another store, or with a mistyped digest). One whose
    /// root is stored and authentic, but not at that height or not of that
    /// length, is [`StoreError::InvalidRef`]: a node that authenticates is
    /// one this store's key sealed under that very digest, so the node is
    /// sound and the reference's length is not its content's (mistyped, or
    /// altered). Only a root that authenticates as nothing is an
    /// [`StoreError::Integrity`] error: damage or tampering, which no
    /// reference can cause.
    fn open_root(&self, content_ref: &ContentRef) -> Result<Root> {
        let n = content_ref.len();
        let height = self.params.height(n);
        let root = self.backend.get(content_ref.digest())?.ok_or_else(|| {
            StoreError::NotFound(format!("no such content: {}", content_ref.to_hex()))
        })?;
        let opened = self
            .open_sealed(height, true, content_ref.digest(), &root.value)
            .and_then(|plaintext| {
                Ok(match height {
                    0 => Root::Leaf(node::decode_leaf(plaintext, n)?),
                    _ => Root::Inner {
                        height,
                        children: node::decode_superchunk(plaintext, self.wrapper.digest_len(), n)?,
                    },
                })
            });
        match opened {
            Err(StoreError::Integrity(detail)) => {
                Err(self.misread_root(content_ref, height, &root.value, detail))
            }
            other => other,
        }
    }

    /// Why the root of `content_ref` did not open at `height` as a content
    /// of its length: [`StoreError::InvalidRef`] if the node authenticates
    /// at all (at another height, or not as a root), else the integrity
    /// error `detail` says.
    fn misread_root(
        &self,
        content_ref: &ContentRef,
        height: u8,
        value: &[u8],
        detail: String,
    ) -> StoreError {
        let digest = content_ref.digest();
        let max_height = self.params.height(u64::MAX).max(height);
        let found = (0..=max_height).find_map(|h| {
            [true, false]
                .into_iter()
                .find(|&root| self.open_node(h, root, digest, value).is_ok())
                .map(|root| (h, root))
        });
        let n = content_ref.len();
        let said = match found {
            None => return StoreError::Integrity(detail),
            Some((h, _)) if h != height => format!(
                "its digest names a stored, authentic node of height {h}, and a content of \
                 {n} bytes has a root of height {height}"
            ),
            Some((_, false)) => "its digest names a stored, authentic node that is a part of a \
                                 content, not a content's root"
                .to_owned(),
            Some((_, true)) => format!(
                "its digest names a stored, authentic root of another length than {n} bytes"
            ),
        };
        StoreError::InvalidRef(format!(
            "{}: {said}: the reference's length is not its content's: it was mistyped or altered",
            content_ref.to_hex()
        ))
    }

    fn check_ref(&self, r: &ContentRef) -> Result<()> {
        if r.digest().len() != self.wrapper.digest_len() {
            return Err(StoreError::InvalidRef(format!(
                "{} is {} bytes; this store's references are {}",
                r.to_hex(),
                r.as_bytes().len(),
                self.wrapper.digest_len() + 8
            )));
        }
        Ok(())
    }

    pub(crate) fn catalog(&self) -> &CatalogCrypto {
        &self.catalog
    }

    /// Opens a node at a given height; the error says nothing about why.
    pub(crate) fn open_node(
        &self,
        height: u8,
        is_root: bool,
        digest: &[u8],
        value: &[u8],
    ) -> std::result::Result<(u8, Vec<u8>), crate::wrapper::OpenError> {
        let ctx = NodeContext {
            kind: 0,
            height,
            is_root,
        };
        self.wrapper.open(ctx, digest, value)
    }

    fn open_sealed(
        &self,
        height: u8,
        is_root: bool,
        digest: &[u8],
        value: &[u8],
    ) -> Result<(u8, Vec<u8>)> {
        let ctx = NodeContext {
            kind: 0,
            height,
            is_root,
        };
        self.wrapper.open(ctx, digest, value).map_err(|_| {
            StoreError::integrity(format!(
                "node {} (height {height}) failed to authenticate",
                seccs_core::hexenc::encode(digest),
            ))
        })
    }

    /// Stores a content under `name`. If the name exists, the new content
    /// becomes its newest version and older versions stay readable until
    /// removed; putting the newest version's content again changes nothing.
    /// The catalog record is written in the same batch as the put. Returns
    /// the put's outcome and the version number the name now has newest.
    ///
    /// A name is a `/`-separated path: not empty, no empty, `.` or `..`
    /// part, no NUL, and not a string that parses as a [`ContentRef`] (an
    /// even run of hex digits long enough to be one, such as a SHA-1
    /// written out), which a command line could not tell from one.
    /// Other characters, control characters among them, are taken as they
    /// are: escape them where a name is shown. Read a name back with
    /// [`Store::resolve`] and [`Store::get`].
    ///
    /// A [`EntryKind::Directory`] has no content of its own: one whose
    /// reader gives any byte is refused with [`StoreError::IsDirectory`],
    /// nothing stored.
    pub fn put_named(
        &self,
        reader: &mut dyn std::io::Read,
        name: &str,
        kind: EntryKind,
    ) -> Result<(PutOutcome, u32)> {
        self.put_named_stamped(reader, name, kind, FileMeta::default())
    }

    /// [`Store::put_named`], recording what `meta` says of the file the
    /// content is read from: its stamp, for [`Store::unchanged_since_stamp`],
    /// and its permission bits, owner, extended attributes and modification
    /// time, for a restore. Putting the newest version's content again with
    /// any of those changed, or another inode or change time, adds a version
    /// that shares the content (no node is added, its root counts one more
    /// put), so that a restore of an earlier time gives what the file had
    /// then, hard links included: they are told by inode and change time,
    /// which a link made or removed changes. With only the stamp settled
    /// since, or only the device or link count ([`catalog::HardLinks`])
    /// other, the newest version's are updated: a device renumbered by a
    /// reboot or a remount is no change to the file. Either way a gone name
    /// (see [`Store::mark_gone`]) is back.
    pub fn put_named_stamped(
        &self,
        reader: &mut dyn std::io::Read,
        name: &str,
        kind: EntryKind,
        meta: FileMeta,
    ) -> Result<(PutOutcome, u32)> {
        let FileMeta {
            stamp,
            mode,
            owner,
            mut xattrs,
            hard_links,
        } = meta;
        // One order and one entry per name, as the record format wants.
        xattrs.sort();
        xattrs.dedup_by(|a, b| a.name() == b.name());
        if xattrs.len() > usize::from(u16::MAX) {
            return Err(StoreError::InvalidMeta(format!(
                "{name}: {} extended attributes, more than a file can have",
                xattrs.len()
            )));
        }
        check_name(name)?;
        if kind == EntryKind::Directory {
            refuse_directory_content(reader, name)?;
        }
        let key = self.catalog.key_of(name);
        // Set by the hook, which runs where work under the writer lock runs.
        let number = std::sync::atomic::AtomicU32::new(0);
        let hook = |content_ref: &ContentRef| -> Result<FinalEntries> {
            // One time for the version and the end of an absence, so that
            // the name is never both gone and not yet put at one instant.
            let now = now();
            let mut existing = self.newest_at(&key).map_err(|e| e.of_name(name))?;
            if let Some((record, layout)) = existing.as_mut()
                && let Some(latest) = record.versions.last_mut()
                && latest.content_ref == *content_ref
                && latest.kind == kind
                && latest.mode == mode
                && latest.owner == owner
                && latest.xattrs == xattrs
                && latest.stamp.map(|s| *s.file_stamp()) == stamp.map(|s| *s.file_stamp())
            {
                // Unchanged since the newest version: not another put.
                number.store(latest.number, std::sync::atomic::Ordering::Relaxed);
                let mut entries = Vec::new();
                if latest.stamp != stamp
                    || latest.hard_links != hard_links
                    || record.gone_since.is_some()
                {
                    latest.stamp = stamp;
                    latest.hard_links = hard_links;
                    record.come_back(now);
                    entries = self.put_entries(&key, layout, record)?;
                }
                return Ok(FinalEntries {
                    count_put: false,
                    entries,
                });
            }
            let (mut record, layout) = existing.unwrap_or_else(|| {
                let record = Record {
                    name: name.to_owned(),
                    next_version: 1,
                    versions: Vec::new(),
                    gone_since: None,
                    absences: Vec::new(),
                };
                (record, Layout::default())
            });
            record.come_back(now);
            let version = Version {
                number: record.next_version,
                content_ref: content_ref.clone(),
                time: now,
                kind,
                stamp,
                mode,
                owner,
                xattrs: xattrs.clone(),
                hard_links,
            };
            number.store(version.number, std::sync::atomic::Ordering::Relaxed);
            record.next_version += 1;
            record.versions.push(version);
            Ok(FinalEntries {
                count_put: true,
                entries: self.put_entries(&key, &layout, &record)?,
            })
        };
        let outcome = self.put_reader_with(reader, Some(&hook))?;
        Ok((outcome, number.into_inner()))
    }

    /// The newest version of `name` when it is a `kind` of `len` bytes whose
    /// recorded stamp is `stamp`, settled: the file has not changed since it
    /// was stored, and need not be read again.
    pub fn unchanged_since_stamp(
        &self,
        name: &str,
        kind: EntryKind,
        len: u64,
        stamp: &FileStamp,
    ) -> Result<Option<Version>> {
        Ok(self
            .newest_at(&self.catalog.key_of(name))
            .map_err(|e| e.of_name(name))?
            .and_then(|(record, _)| record.unchanged_since(kind, len, stamp).cloned()))
    }

    /// The record under `key` (a name's) as far as its newest version and
    /// a put need it: its head alone, its pages left unread
    /// ([`Layout::Unread`]), when the head holds a version inline (then the
    /// newest); whole otherwise. So that a put's cost does not grow with
    /// the versions a name has.
    fn newest_at(&self, key: &[u8]) -> Result<Option<(Record, Layout)>> {
        let Some(entry) = self.backend.get(key)? else {
            return Ok(None);
        };
        let head = self.catalog.open_head(key, &entry.value)?;
        if head.pages.is_empty() || !head.record.versions.is_empty() {
            let Head { record, pages } = head;
            return Ok(Some((record, Layout::Unread(pages))));
        }
        self.with_pages(head).map(Some)
    }

    fn record_at(&self, key: &[u8]) -> Result<Option<Record>> {
        Ok(self.stored_at(key)?.map(|(record, _)| record))
    }

    /// The record under `key` (a name's), whole, and where its versions
    /// are stored: its head, then its pages, if it has any, in one more
    /// backend round trip.
    fn stored_at(&self, key: &[u8]) -> Result<Option<(Record, Layout)>> {
        match self.backend.get(key)? {
            Some(entry) => Ok(Some(
                self.with_pages(self.catalog.open_head(key, &entry.value)?)?,
            )),
            None => Ok(None),
        }
    }

    /// `head` whole: its pages read in one backend round trip. A page
    /// missing, or not the one the head lists, is damage to the record.
    fn with_pages(&self, head: Head) -> Result<(Record, Layout)> {
        self.all_with_pages(vec![head])?
            .pop()
            .unwrap_or_else(|| Err(StoreError::integrity("a catalog record went unread")))
    }

    /// Each of `heads` whole, in order: the pages of them all read in one
    /// backend round trip (none if no head has pages), so that reading
    /// many names costs no more round trips for the ones with pages. Each
    /// head's outcome is its own: a page missing, damaged or not the one
    /// its head lists fails that head alone. Fails whole only when the
    /// backend does.
    fn all_with_pages(&self, heads: Vec<Head>) -> Result<Vec<Result<(Record, Layout)>>> {
        let keys: Vec<Vec<Vec<u8>>> = heads.iter().map(|h| self.catalog.page_keys(h)).collect();
        let key_refs: Vec<&[u8]> = keys.iter().flatten().map(Vec::as_slice).collect();
        let mut values = match key_refs.is_empty() {
            true => Vec::new(),
            false => self.backend.get_values(&key_refs)?,
        }
        .into_iter();
        Ok(heads
            .into_iter()
            .zip(keys)
            .map(|(head, keys)| {
                let name = head.record.name.clone();
                let pages = keys
                    .iter()
                    .zip(&head.pages)
                    .map(|(key, listed)| {
                        values
                            .next()
                            .flatten()
                            .map(|v| self.catalog.open_page(key, &v, &name, listed.id))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>>>()?;
                head.assemble(pages)
            })
            .collect())
    }

    /// Heads met in a walk of the catalog, made whole from the pages met
    /// in it (taken out of `pages`).
    pub(crate) fn assemble(
        &self,
        heads: Vec<(Vec<u8>, Head)>,
        pages: &mut std::collections::HashMap<Vec<u8>, Page>,
    ) -> Assembled {
        let mut assembled = Assembled::default();
        for (key, head) in heads {
            let keys = self.catalog.page_keys(&head);
            let found: Vec<Option<Page>> = keys.iter().map(|k| pages.remove(k)).collect();
            let present: Vec<Vec<u8>> = keys
                .into_iter()
                .zip(&found)
                .filter(|(_, page)| page.is_some())
                .map(|(key, _)| key)
                .collect();
            let name = head.record.name.clone();
            match head.assemble(found) {
                Ok((record, _)) => assembled.records.push((key, record)),
                Err(_) => assembled.damaged.push(HeadWithBadPages {
                    key,
                    name,
                    pages_found: present,
                }),
            }
        }
        assembled
    }

    /// The entries that store `record` under `key` as a put writes them:
    /// puts only, since a put removes no version.
    fn put_entries(
        &self,
        key: &[u8],
        layout: &Layout,
        record: &Record,
    ) -> Result<crate::put::ExtraEntries> {
        self.catalog
            .entries(key, layout, record)
            .into_iter()
            .map(|(key, value)| {
                value.map(|v| (key, v)).ok_or_else(|| {
                    StoreError::integrity("a put would remove a page of a catalog record")
                })
            })
            .collect()
    }

    /// Adds to `batch` what stores `record` under `key`, stored as `layout`
    /// says (see [`CatalogCrypto::entries`]).
    fn write_record(&self, batch: &mut Batch, key: &[u8], layout: &Layout, record: &Record) {
        for (key, value) in self.catalog.entries(key, layout, record) {
            match value {
                Some(value) => batch.put(key, value, 1),
                None => batch.delete(key),
            }
        }
    }

    /// The catalog record of `name`, if any.
    pub fn lookup(&self, name: &str) -> Result<Option<Record>> {
        self.record_at(&self.catalog.key_of(name))
            .map_err(|e| e.of_name(name))
    }

    /// How `spec` reads: `NAME@N` is version N of NAME, unless the catalog
    /// holds a name spelled `NAME@N` itself (`build@2`, a file's name),
    /// which it then is, whole; a spelling that is both (a name `a@2` and a
    /// version 2 of `a`) is refused with both readings. Any other spec is a
    /// name.
    pub fn read_spec<'a>(&self, spec: &'a str) -> Result<(&'a str, Option<u32>)> {
        let (name, number, _) = self.read_spec_records(spec)?;
        Ok((name, number))
    }

    /// [`Store::read_spec`], with the record of the name the spec reads as
    /// when it was read to tell (`Some(None)`: the catalog does not hold
    /// it); `None` for a spec without `@N`, for which nothing is read. The
    /// records of `NAME@N` and of `NAME` are read in one backend round trip
    /// (and the pages of one that has pages in one more).
    #[allow(clippy::type_complexity)]
    fn read_spec_records<'a>(
        &self,
        spec: &'a str,
    ) -> Result<(&'a str, Option<u32>, Option<Option<Record>>)> {
        let (name, number) = catalog::parse_name_version(spec);
        let Some(n) = number else {
            return Ok((spec, None, None));
        };
        let (whole_key, name_key) = (self.catalog.key_of(spec), self.catalog.key_of(name));
        let values = self
            .backend
            .get_values(&[whole_key.as_slice(), name_key.as_slice()])?;
        // One answer a key (the backend's contract); none is no record.
        let mut values = values.into_iter();
        let open = |key: &[u8], value: Option<Vec<u8>>, of: &str| {
            value
                .map(|v| {
                    self.catalog
                        .open_head(key, &v)
                        .and_then(|head| self.with_pages(head))
                        .map(|(record, _)| record)
                        .map_err(|e| e.of_name(of))
                })
                .transpose()
        };
        let whole = open(&whole_key, values.next().flatten(), spec)?;
        let of_name = open(&name_key, values.next().flatten(), name)?;
        let Some(whole) = whole else {
            return Ok((name, Some(n), Some(of_name)));
        };
        if of_name.is_some_and(|r| r.version(n).is_some()) {
            return Err(StoreError::InvalidName(format!(
                "{spec:?} is both a name and version {n} of {name:?}: {spec}@N reads a \
                 version of the first (`seccs ls --all {spec}` lists them), the second's \
                 reference (`seccs ls --all {name}`) reads it"
            )));
        }
        Ok((spec, None, Some(Some(whole))))
    }

    /// Resolves `NAME` (newest version) or `NAME@N`, read as
    /// [`Store::read_spec`] reads it. A gone name resolves only with a
    /// version number.
    pub fn resolve(&self, spec: &str) -> Result<Version> {
        Ok(self.resolve_spec(spec)?.2)
    }

    /// [`Store::resolve`], with how the spec was read ([`Store::read_spec`]):
    /// the name and the version number it gave, if any. One backend round
    /// trip, `NAME@N` too (two for a name whose older versions are in
    /// pages).
    pub fn resolve_spec<'a>(&self, spec: &'a str) -> Result<(&'a str, Option<u32>, Version)> {
        let (name, number, record) = self.read_spec_records(spec)?;
        let record = match record {
            Some(record) => record,
            None => self.lookup(name)?,
        };
        Ok((name, number, version_of(record, name, number)?))
    }

    /// Version `number` of `name`, or its newest version without a number,
    /// from one lookup. A name not in the catalog, and a version it does
    /// not have, are [`StoreError::NotFound`], naming the name (and the
    /// version); so is the newest version of a gone name (see
    /// [`Store::mark_gone`]), whose versions stay readable by number. Unlike
    /// [`Store::resolve`], `name` is taken whole: `a@2` is the name `a@2`.
    pub fn resolve_named(&self, name: &str, number: Option<u32>) -> Result<Version> {
        version_of(self.lookup(name)?, name, number)
    }

    /// Marks `names` gone: their files were not found by a put of their
    /// directory. Their versions stay (readable as `NAME@N`, counted, removed
    /// only by [`Store::remove_name`]); listings and tree restores leave them
    /// out until a put brings them back. Names already gone or not in the
    /// catalog are left alone. Returns how many names were marked.
    ///
    /// Every record is read and opened before any is rewritten: if one
    /// fails to authenticate (or to parse), none is marked, and the call
    /// fails with [`StoreError::DamagedRecords`] naming it. A put of a
    /// directory that cannot mark each of its missing names leaves the
    /// catalog's marks as they were, rather than half of them, so what it
    /// says ("N names are gone") holds whole or not at all. For the same
    /// reason every record is then rewritten in one batch, atomic on a
    /// transactional backend: a write that fails marks none. (No backend
    /// bounds a batch's size: PostgreSQL splits a large one into statements
    /// of one transaction, Redis into commands of one script. S3, which has
    /// no transactions, can be left with some of them marked; the same put
    /// again marks the rest.)
    pub fn mark_gone(&self, names: &[String]) -> Result<usize> {
        let when = now();
        self.with_writer_lock(|| self.mark_gone_locked(names, when))
    }

    /// [`Store::mark_gone`], under the writer lock, marking them gone since
    /// `when`.
    fn mark_gone_locked(&self, names: &[String], when: u64) -> Result<usize> {
        // Records are read this many at a time, so that no one request
        // asks for every name of a large tree.
        const RECORDS_PER_READ: usize = 4096;
        let mut seen = std::collections::HashSet::new();
        let mut to_mark = Vec::new();
        let (mut damaged, mut newer) = (Vec::new(), Vec::new());
        for group in names.chunks(RECORDS_PER_READ) {
            let (records, unreadable, of_newer) = self.records_of(group)?;
            damaged.extend(unreadable);
            newer.extend(of_newer);
            to_mark.extend(
                records
                    .into_iter()
                    .filter(|(key, record, _)| !record.is_gone() && seen.insert(key.clone())),
            );
        }
        if !(damaged.is_empty() && newer.is_empty()) {
            return Err(StoreError::DamagedRecords {
                done: format!("marked none of {} names gone", names.len()),
                names: damaged,
                newer,
            });
        }
        let marked = to_mark.len();
        if marked == 0 {
            return Ok(0);
        }
        let mut batch = Batch::new();
        for (key, mut record, layout) in to_mark {
            record.gone_since = Some(when);
            self.write_record(&mut batch, &key, &layout, &record);
        }
        self.backend.apply_owned(batch)?;
        Ok(marked)
    }

    /// The records of those of `names` that the catalog holds, each once,
    /// with their keys, read in one backend round trip; the names whose
    /// records fail to authenticate or to parse (their versions cannot be
    /// read, so a caller leaves them and goes on with the others); and the
    /// names whose records a newer seccs wrote (authentic, but unreadable
    /// here: left too, and never taken for damage).
    #[allow(clippy::type_complexity)]
    fn records_of(
        &self,
        names: &[String],
    ) -> Result<(Vec<(Vec<u8>, Record, Layout)>, Vec<String>, Vec<String>)> {
        let mut seen = std::collections::HashSet::new();
        let named: Vec<(&String, Vec<u8>)> = names
            .iter()
            .map(|n| (n, self.catalog.key_of(n)))
            .filter(|(_, k)| seen.insert(k.clone()))
            .collect();
        let key_refs: Vec<&[u8]> = named.iter().map(|(_, k)| k.as_slice()).collect();
        let values = self.backend.get_values(&key_refs)?;
        let (mut records, mut damaged, mut newer) = (Vec::new(), Vec::new(), Vec::new());
        let file = |e: StoreError, name: &String, damaged: &mut Vec<_>, newer: &mut Vec<_>| match e
        {
            StoreError::NewerFormat { .. } => newer.push(name.clone()),
            _ => damaged.push(name.clone()),
        };
        // Heads first, then the pages of them all in one more round trip.
        let mut heads = Vec::new();
        for ((name, key), value) in named.into_iter().zip(values) {
            let Some(value) = value else { continue };
            match self.catalog.open_head(&key, &value) {
                Ok(head) => heads.push((name, key, head)),
                Err(e) => file(e, name, &mut damaged, &mut newer),
            }
        }
        let (named, heads): (Vec<_>, Vec<_>) = heads
            .into_iter()
            .map(|(name, key, head)| ((name, key), head))
            .unzip();
        for ((name, key), opened) in named.into_iter().zip(self.all_with_pages(heads)?) {
            match opened {
                Ok((record, layout)) => records.push((key, record, layout)),
                Err(e) => file(e, name, &mut damaged, &mut newer),
            }
        }
        Ok((records, damaged, newer))
    }

    /// Drops the put each of `versions` holds, into `releaser` (made by
    /// [`Releaser::tolerant`]).
    fn release_versions(&self, releaser: &mut Releaser, versions: &[Version]) -> Result<()> {
        for v in versions {
            let r = &v.content_ref;
            self.release(
                releaser,
                vec![(r.digest().to_vec(), r.len())],
                self.params.height(r.len()),
                true,
            )?;
        }
        Ok(())
    }

    /// Whether this store's key opens its catalog records: `Some(true)` as
    /// soon as one opens, `Some(false)` if there are records and none
    /// opens (a wrong key: the store's own records are not all damaged at
    /// once), `None` if there are none. Used to check a key against a store
    /// made before check values (see [`crate::dir`]).
    pub fn key_opens_catalog(&self) -> Result<Option<bool>> {
        let mut found = None;
        self.walk_until(&[catalog::KEY_PREFIX], &mut |key, entry| {
            if catalog::is_catalog_key(key) {
                // A record of a newer format authenticated before its
                // format was read: the key opens it.
                found = Some(matches!(
                    self.catalog.open_entry(key, &entry.value),
                    Ok(_) | Err(StoreError::NewerFormat { .. })
                ));
            }
            found != Some(true)
        })?;
        Ok(found)
    }

    /// Refuses parameters other than the store's, in a store with names
    /// (whose catalog records open under the store's key whatever the
    /// wrapper and chunk size): the root of the first of `roots` that is
    /// stored must open under this store's wrapper at the height its length
    /// gives. One that opens under another wrapper, or at another height,
    /// is [`StoreError::Config`] naming what differs; one that opens under
    /// nothing is damage, which verify reports, and refuses nothing.
    fn check_params_on_root(&self, roots: &[ContentRef], store_key: &SecretKey) -> Result<()> {
        // A root the backend cannot read is damage too: the next is tried.
        let Some((content_ref, entry)) = roots
            .iter()
            .find_map(|r| Some((r, self.backend.get(r.digest()).ok()??)))
        else {
            return Ok(());
        };
        let (digest, value) = (content_ref.digest(), entry.value.as_slice());
        let height = self.params.height(content_ref.len());
        if self.open_node(height, true, digest, value).is_ok() {
            return Ok(());
        }
        let backend = self.backend.name();
        // Under this wrapper at another height first: a wrapper that
        // distinguishes roots opens other wrappers' nodes as non-roots.
        let found = (0..=MAX_TRIED_HEIGHT)
            .find(|&h| h != height && self.open_node(h, true, digest, value).is_ok());
        if let Some(found) = found {
            return Err(StoreError::Config(format!(
                "the store on this {backend} backend was made with another chunk size: the root \
                 of its content {} has height {found}, where chunk size {} gives its {} bytes \
                 height {height}. Open it with its own parameters. Nothing was written",
                content_ref.to_hex(),
                self.params.chunk_size(),
                content_ref.len()
            )));
        }
        let opens_under = |wrapper: &dyn CryptoWrapper| {
            (0..=MAX_TRIED_HEIGHT).any(|height| {
                [true, false].into_iter().any(|is_root| {
                    let ctx = NodeContext {
                        kind: 0,
                        height,
                        is_root,
                    };
                    wrapper.open(ctx, digest, value).is_ok()
                })
            })
        };
        let others: Vec<&str> = WrapperKind::ALL
            .into_iter()
            .filter(|&kind| {
                kind != self.params.wrapper() && opens_under(kind.build(store_key).as_ref())
            })
            .map(|kind| kind.name())
            .collect();
        if !others.is_empty() {
            return Err(StoreError::Config(format!(
                "the store on this {backend} backend was made with the {} wrapper, not with \
                 {}, the wrapper of the parameters given: the key given opens the root of its \
                 content {} under it. Open it with its own parameters. Nothing was written",
                others.join(" or "),
                self.params.wrapper().name(),
                content_ref.to_hex()
            )));
        }
        Ok(())
    }

    /// How many of the store's catalog records this store's key opens and
    /// how many it does not: with `every`, until one of each is found (or
    /// every record was read: a key is proven by all of them), else until
    /// one opens; and, walking on if need be, a named content's reference
    /// to check the parameters by. Entries the backend cannot decode are
    /// passed by: no key reads them.
    fn check_catalog(&self, every: bool) -> Result<CatalogCheck> {
        let mut check = CatalogCheck::default();
        self.walk_until(&[catalog::KEY_PREFIX], &mut |key, entry| {
            if catalog::is_catalog_key(key) {
                // A record of a newer format authenticated before its
                // format was read: the key opens it.
                match self.catalog.open_entry(key, &entry.value) {
                    Ok(opened) => {
                        check.opened += 1;
                        let room = ROOTS_TRIED.saturating_sub(check.roots.len());
                        let versions = match &opened {
                            Entry::Head(head) => &head.record.versions,
                            Entry::Page(page) => &page.versions,
                        };
                        check.roots.extend(
                            versions
                                .iter()
                                .filter(|v| !v.content_ref.is_empty())
                                .map(|v| v.content_ref.clone())
                                .take(room),
                        );
                    }
                    Err(StoreError::NewerFormat { .. }) => check.opened += 1,
                    Err(_) => check.failed += 1,
                }
            }
            check.opened == 0 || check.roots.is_empty() || (every && check.failed == 0)
        })?;
        Ok(check)
    }

    /// Whether this store's key opens every one of the catalog records
    /// (so in a store without any): only then is it proven by them to be
    /// the store's key, since a wrong key that once wrote into the store's
    /// backend opens its own.
    pub(crate) fn key_opens_every_record(&self) -> Result<bool> {
        Ok(self.check_catalog(true)?.failed == 0)
    }

    /// Whether this store's key opens its catalog records or, in a store
    /// with none (contents put without names only), one of its nodes: a
    /// node is tried at every height it could have, root or not, since its
    /// place in a tree is unknown here. `None` if the store holds nothing.
    pub fn key_opens_store(&self) -> Result<Option<bool>> {
        if let Some(opens) = self.key_opens_catalog()? {
            return Ok(Some(opens));
        }
        self.wrapper_opens_nodes(self.wrapper.as_ref())
    }

    /// Whether `wrapper` opens one of the first few nodes of the store,
    /// `None` if it holds none.
    fn wrapper_opens_nodes(&self, wrapper: &dyn CryptoWrapper) -> Result<Option<bool>> {
        // The right key opens every node; a few are tried so that one
        // damaged node does not make it look wrong.
        let (mut found, mut tried) = (None, 0);
        self.walk_until(&[], &mut |key, entry| {
            if !catalog::is_catalog_key(key) {
                tried += 1;
                let opens = (0..=MAX_TRIED_HEIGHT).any(|height| {
                    [false, true].into_iter().any(|is_root| {
                        let ctx = NodeContext {
                            kind: 0,
                            height,
                            is_root,
                        };
                        wrapper.open(ctx, key, &entry.value).is_ok()
                    })
                });
                found = Some(opens);
            }
            found != Some(true) && tried < NODES_TRIED
        })?;
        Ok(found)
    }

    /// The wrappers other than the one of this store's parameters under
    /// which `store_key` opens the store's nodes, for a store whose nodes
    /// this store's wrapper does not open: the parameters, not the key,
    /// are then what differs.
    fn other_wrappers_opening_nodes(&self, store_key: &SecretKey) -> Result<Vec<&'static str>> {
        let mut opening = Vec::new();
        for kind in WrapperKind::ALL {
            if kind != self.params.wrapper()
                && self.wrapper_opens_nodes(kind.build(store_key).as_ref())? == Some(true)
            {
                opening.push(kind.name());
            }
        }
        Ok(opening)
    }

    /// Walks the entries under `prefix` until `visit` returns false,
    /// past entries the backend cannot decode (a key check must not fail
    /// for one damaged entry).
    fn walk_until(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &crate::backend::Entry) -> bool,
    ) -> Result<()> {
        let mut stopped = false;
        let walked = self.backend.walk(
            prefix,
            &mut |key, entry| {
                if visit(key, entry) {
                    return Ok(());
                }
                stopped = true;
                // Ends the walk; told from a backend's error by `stopped`.
                Err(crate::backend::BackendError::other(
                    self.backend.name(),
                    "walk ended by its visitor",
                ))
            },
            Some(&mut |_, _| {}),
        );
        match walked {
            Err(_) if stopped => Ok(()),
            other => Ok(other?),
        }
    }

    /// Every catalog record whose name starts with `prefix`, sorted by name;
    /// an error if any record fails to authenticate or cannot be read.
    pub fn list(&self, prefix: &str) -> Result<Vec<Record>> {
        let listing = self.list_readable(prefix)?;
        match listing.damage() {
            None => Ok(listing.records),
            Some(e) => Err(e),
        }
    }

    /// Every readable catalog record whose name starts with `prefix`, sorted
    /// by name, and how many records failed to authenticate or could not be
    /// read (their names cannot be read, so they count whatever the
    /// prefix). A range of entries the backend could not read (a damaged
    /// block of the embedded backend) counts as one, though it may hold
    /// more records: [`Listing::damaged`] is then a lower bound.
    pub fn list_readable(&self, prefix: &str) -> Result<Listing> {
        let mut heads = Vec::new();
        let mut pages = std::collections::HashMap::new();
        let (mut unopened, mut undecoded) = (0, 0);
        let (mut newer, mut newer_format) = (0, 0);
        let digest_len = self.wrapper.digest_len();
        self.backend.walk(
            &[catalog::KEY_PREFIX],
            &mut |key, entry| {
                if catalog::is_catalog_key(key) {
                    match self.catalog.open_entry(key, &entry.value) {
                        Ok(Entry::Head(h)) if h.record.name.starts_with(prefix) => {
                            heads.push((key.to_vec(), h));
                        }
                        Ok(Entry::Page(p)) if p.name.starts_with(prefix) => {
                            pages.insert(key.to_vec(), p);
                        }
                        Ok(_) => {}
                        // Its name cannot be read: it counts whatever the
                        // prefix, as a damaged one does, but apart.
                        Err(StoreError::NewerFormat { found, .. }) => {
                            newer += 1;
                            newer_format = newer_format.max(found);
                        }
                        Err(_) => unopened += 1,
                    }
                }
                Ok(())
            },
            // A record the backend cannot even decode is as damaged as one
            // that fails to authenticate, and so is a range of entries it
            // cannot read (a damaged block): the names in it are missing
            // from the listing, which must not look whole.
            Some(&mut |key, _| {
                if catalog::damage_may_hold_records(key, digest_len) {
                    undecoded += 1;
                }
            }),
        )?;
        // A page no head lists is verify's to report, not a listing's.
        let assembled = self.assemble(heads, &mut pages);
        let mut listing = Listing {
            records: assembled.records.into_iter().map(|(_, r)| r).collect(),
            damaged: unopened + undecoded + assembled.damaged.len(),
            newer,
            newer_format,
        };
        listing.records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listing)
    }

    /// Removes every version of `name` (or only version `number`), undoing
    /// the put each version holds, in one batch. Returns how many versions
    /// were removed. A name whose record fails to authenticate is an
    /// [`StoreError::Integrity`] error naming it: its versions cannot be
    /// read ([`Store::gc`] of a store whose key was checked removes it).
    pub fn remove_name(&self, name: &str, number: Option<u32>) -> Result<usize> {
        let key = self.catalog.key_of(name);
        self.with_writer_lock(|| self.remove_name_locked(name, number, &key))
    }

    /// [`Store::remove_name`] under the writer lock; `key` is the name's.
    fn remove_name_locked(&self, name: &str, number: Option<u32>, key: &[u8]) -> Result<usize> {
        let (mut record, layout) = self
            .stored_at(key)
            .map_err(|e| match e {
                StoreError::Integrity(_) => damaged_record_of(name),
                other => other.of_name(name),
            })?
            .ok_or_else(|| StoreError::NotFound(format!("no content named {name:?}")))?;
        let (gone, kept): (Vec<Version>, Vec<Version>) = record
            .versions
            .drain(..)
            .partition(|v| number.is_none_or(|n| v.number == n));
        if gone.is_empty() {
            return Err(StoreError::NotFound(format!(
                "{name:?} has no version {}",
                number.unwrap_or(0)
            )));
        }
        let mut releaser = Releaser::tolerant();
        self.release_versions(&mut releaser, &gone)?;
        let mut batch = Batch::new();
        record.versions = kept;
        self.write_record(&mut batch, key, &layout, &record);
        batch.append(releaser.into_batch());
        self.backend.apply_owned(batch)?;
        Ok(gone.len())
    }

    /// Removes every version of each of `names` (names not in the catalog
    /// are skipped), in batches of a few hundred names, each batch atomic.
    /// Returns how many names and versions were removed.
    ///
    /// A name whose record fails to authenticate (or to parse) cannot have
    /// its versions read: it is left, the others in its batch are removed,
    /// and the removal ends with [`StoreError::DamagedRecords`], naming it
    /// and saying what was done.
    pub fn remove_names(&self, names: &[String]) -> Result<(usize, usize)> {
        self.drop_older_versions(names, 0)
    }

    /// Removes every version of each of `names` but its newest `keep`
    /// (a retention policy: `seccs rm --keep N`), in atomic batches of many
    /// names, releasing each removed version's nodes. Returns how many names
    /// lost versions and how many versions went. Names that are gone keep
    /// their newest `keep` too. A name whose record fails to authenticate
    /// is left, as [`Store::remove_names`] leaves it.
    pub fn keep_newest(&self, names: &[String], keep: usize) -> Result<(usize, usize)> {
        if keep == 0 {
            return Err(StoreError::Config(
                "keep at least one version: keeping none is removing the name".into(),
            ));
        }
        self.drop_older_versions(names, keep)
    }

    /// Removes all but the newest `keep` versions of each of `names` (with
    /// `keep` 0, the names), many names to an atomic batch. Returns how many
    /// names lost versions and how many versions went; a failure after a
    /// batch was applied is [`StoreError::PartlyDone`], saying what was.
    fn drop_older_versions(&self, names: &[String], keep: usize) -> Result<(usize, usize)> {
        let mut done = (0, 0);
        let (mut damaged, mut newer) = (Vec::new(), Vec::new());
        let said = |(touched, versions): (usize, usize)| {
            if keep == 0 {
                format!(
                    "removed {touched} of {} names ({versions} versions)",
                    names.len()
                )
            } else {
                format!("removed {versions} older versions of {touched} names")
            }
        };
        match self.drop_older_versions_counting(names, keep, &mut done, &mut damaged, &mut newer) {
            Ok(()) if damaged.is_empty() && newer.is_empty() => Ok(done),
            Ok(()) => Err(StoreError::DamagedRecords {
                done: said(done),
                names: damaged,
                newer,
            }),
            // Nothing applied: the command simply failed.
            Err(e) if done == (0, 0) => Err(e),
            Err(e) => Err(StoreError::PartlyDone {
                done: said(done),
                cause: Box::new(e),
            }),
        }
    }

    /// [`Store::drop_older_versions`], counting in `done` (names touched,
    /// versions removed) what its applied batches did, and gathering in
    /// `damaged` the names whose records it left because they fail to
    /// authenticate, and in `newer` those it left because a newer seccs
    /// wrote them.
    fn drop_older_versions_counting(
        &self,
        names: &[String],
        keep: usize,
        done: &mut (usize, usize),
        damaged: &mut Vec<String>,
        newer: &mut Vec<String>,
    ) -> Result<()> {
        const NAMES_PER_BATCH: usize = 512;
        let removed = self.with_writer_lock(|| {
            for group in names.chunks(NAMES_PER_BATCH) {
                let (mut touched_names, mut removed_versions) = (0, 0);
                let mut releaser = Releaser::tolerant();
                let mut batch = Batch::new();
                let (records, unreadable, of_newer) = self.records_of(group)?;
                damaged.extend(unreadable);
                newer.extend(of_newer);
                for (key, mut record, layout) in records {
                    let cut = record.versions.len().saturating_sub(keep);
                    if keep > 0 && cut == 0 {
                        continue;
                    }
                    let older: Vec<Version> = record.versions.drain(..cut).collect();
                    self.release_versions(&mut releaser, &older)?;
                    touched_names += 1;
                    removed_versions += older.len();
                    self.write_record(&mut batch, &key, &layout, &record);
                }
                batch.append(releaser.into_batch());
                if !batch.is_empty() {
                    // Made durable together at the end: a durable batch
                    // per group would cost the embedded backend a table
                    // each, which its compactions then merge again and
                    // again (a removal of 256k names rewrote the store
                    // many times over).
                    batch.defer_durability();
                    self.backend.apply_owned(batch)?;
                }
                done.0 += touched_names;
                done.1 += removed_versions;
            }
            Ok(())
        });
        // The batches applied are made durable whether or not a later one
        // failed: what `done` counts is what was removed. When they cannot
        // be, none is counted (some may be, if the backend wrote a group of
        // them on its own): the same command again finishes either way.
        let flushed = if *done == (0, 0) {
            Ok(())
        } else {
            self.backend.flush().map_err(StoreError::from)
        };
        match (removed, flushed) {
            (removed, Ok(())) => removed,
            (removed, Err(flush)) => {
                *done = (0, 0);
                match removed {
                    Err(cause) => Err(cause),
                    Ok(()) => Err(flush),
                }
            }
        }
    }

    /// Totals over the backend: entries and bytes, in all and by what the
    /// entries are (from each node's kind byte, which is stored in the clear;
    /// catalog records by their keys, and pages from names' records by
    /// opening them).
    pub fn stats(&self) -> Result<StoreStats> {
        let mut stats = StoreStats::default();
        let mut damaged = Usage::default();
        self.backend.walk(
            &[],
            &mut |key, entry| {
                let (k, v) = (key.len(), entry.value.len());
                stats.usage.add(k, v);
                if catalog::is_catalog_key(key) {
                    // Only its plaintext tells a page from a name's record.
                    match self.catalog.open_entry(key, &entry.value) {
                        Ok(Entry::Page(_)) => stats.pages.add(k, v),
                        _ => stats.records.add(k, v),
                    }
                    return Ok(());
                }
                match entry.value.first().copied() {
                    Some(node::LEAF_RAW) => stats.leaves.add(k, v),
                    Some(node::LEAF_ZSTD) => stats.compressed_leaves.add(k, v),
                    Some(node::SUPERCHUNK) => stats.superchunks.add(k, v),
                    _ => stats.unrecognized.add(k, v),
                }
                Ok(())
            },
            Some(&mut |key, _| damaged.add(key.len(), 0)),
        )?;
        stats.usage.entries += damaged.entries;
        stats.usage.bytes += damaged.bytes;
        stats.damaged = damaged;
        Ok(stats)
    }

    /// Entries and bytes in the backend.
    pub fn usage(&self) -> Result<Usage> {
        Ok(self.backend.usage()?)
    }

    pub(crate) fn journal_begin(&self) -> Result<Option<JournalEntry>> {
        let Some(dir) = &self.journal_dir else {
            return Ok(None);
        };
        // A full disk fails every later put too: said as the backend's,
        // naming the place, so that a command stops at the first.
        let full =
            |e: std::io::Error| match BackendError::storage_full(self.backend.name(), &e, dir) {
                Some(full) => StoreError::Backend(full),
                None => StoreError::Io(e),
            };
        std::fs::create_dir_all(dir).map_err(full)?;
        let mut id = [0u8; 16];
        seccs_core::random_bytes(&mut id).map_err(|e| StoreError::Config(e.to_string()))?;
        let path = dir.join(seccs_core::hexenc::encode(&id));
        std::fs::File::create(&path)
            .and_then(|f| f.sync_all())
            .map_err(full)?;
        Ok(Some(JournalEntry(path)))
    }

    pub(crate) fn journal_end(&self, entry: JournalEntry) -> Result<()> {
        self.backend.flush()?;
        std::fs::remove_file(entry.0)?;
        Ok(())
    }

    /// Whether a put was interrupted (its journal entry is left).
    pub fn needs_recovery(&self) -> Result<bool> {
        match &self.journal_dir {
            Some(dir) if dir.exists() => Ok(std::fs::read_dir(dir)?.next().is_some()),
            _ => Ok(false),
        }
    }

    /// Cleans up after a put that a crash interrupted: removes the nodes it
    /// left without a parent (count zero) and those only they referred to,
    /// then clears the journal. Run only while no other writer is active.
    pub fn recover(&self) -> Result<u64> {
        let removed = self.collect(false)?.removed;
        if let Some(dir) = &self.journal_dir
            && dir.exists()
        {
            for entry in std::fs::read_dir(dir)? {
                std::fs::remove_file(entry?.path())?;
            }
        }
        Ok(removed)
    }
}

/// What [`Store::stats`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Entries and bytes over the whole backend.
    pub usage: Usage,
    /// Leaves stored as they are.
    pub leaves: Usage,
    /// Leaves stored compressed.
    pub compressed_leaves: Usage,
    /// Inner nodes.
    pub superchunks: Usage,
    /// Catalog records: one per name (and any that cannot be opened).
    pub records: Usage,
    /// Pages of catalog records: a name's older versions, a few dozen to
    /// a page.
    pub pages: Usage,
    /// Nodes whose kind byte is none of the above (damaged, or written by a
    /// newer version).
    pub unrecognized: Usage,
    /// Entries the backend holds but cannot decode (a Redis value too short
    /// for its count); their bytes count the key only.
    pub damaged: Usage,
}

/// Heads met in a walk of the catalog, made whole ([`Store::assemble`]).
#[derive(Debug, Default)]
pub(crate) struct Assembled {
    /// Each whole record, with its head's key.
    pub(crate) records: Vec<(Vec<u8>, Record)>,
    /// Heads whose pages are missing or are not the ones they list.
    pub(crate) damaged: Vec<HeadWithBadPages>,
}

/// A head that authenticates, but whose pages are missing or are not the
/// ones it lists (lost, or an older copy put back).
#[derive(Debug)]
pub(crate) struct HeadWithBadPages {
    /// The head's key.
    pub(crate) key: Vec<u8>,
    /// The name it is the record of.
    pub(crate) name: String,
    /// The keys of those of its pages that were found (removed with it).
    pub(crate) pages_found: Vec<Vec<u8>>,
}

/// What [`Store::list_readable`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Readable records under the prefix, sorted by name.
    pub records: Vec<Record>,
    /// Records (under any name) that failed to authenticate or that the
    /// backend could not decode, and ranges of entries under the catalog's
    /// prefix that it could not read, each counted as one though it may
    /// hold more records. Zero only if every record was read.
    pub damaged: usize,
    /// Records (under any name) that authenticate but were written by a
    /// newer seccs, in a format this build cannot read (see
    /// [`StoreError::NewerFormat`]); not counted in [`Listing::damaged`].
    pub newer: usize,
    /// The highest format of those records (0 if there are none).
    pub newer_format: u8,
}

impl Listing {
    /// An error saying that records are damaged, or were written by a newer
    /// seccs, if any are (damage first: it is what needs repair).
    pub fn damage(&self) -> Option<StoreError> {
        if self.damaged > 0 {
            let mut e = damaged_records(self.damaged);
            if let StoreError::Integrity(detail) = &mut e
                && self.newer > 0
            {
                *detail += &format!(
                    "; and {} more authenticate but were written by a newer seccs (format {}), \
                     which this build cannot read",
                    self.newer, self.newer_format
                );
            }
            return Some(e);
        }
        (self.newer > 0).then(|| catalog::newer_records(self.newer, self.newer_format))
    }
}

impl StoreStats {
    /// Entries that are chunk-tree nodes.
    pub fn nodes(&self) -> u64 {
        self.usage.entries - self.records.entries - self.pages.entries
    }

    /// Entries that are catalog records (one per name; pages not counted).
    pub fn names(&self) -> u64 {
        self.records.entries
    }
}

/// Version `number` of `record`, the record of `name` (`None`: not in
/// the catalog), or its newest version unless the name is gone.
fn version_of(record: Option<Record>, name: &str, number: Option<u32>) -> Result<Version> {
    let record =
        record.ok_or_else(|| StoreError::NotFound(format!("no content named {name:?}")))?;
    match number {
        Some(n) => record
            .version(n)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("{name:?} has no version {n}"))),
        None => {
            let latest = record
                .latest()
                .ok_or_else(|| StoreError::NotFound(format!("no content named {name:?}")))?;
            if record.is_gone() {
                return Err(StoreError::NotFound(format!(
                    "{name:?} is gone: the last put of its directory did not find it; \
                     its versions stay readable as {name}@N (newest: {name}@{})",
                    latest.number
                )));
            }
            Ok(latest.clone())
        }
    }
}

/// The error of a command on one name whose record fails to authenticate.
fn damaged_record_of(name: &str) -> StoreError {
    StoreError::integrity(format!(
        "the catalog record of {} fails to authenticate: its versions cannot be read \
         (seccs gc removes such records)",
        quoted_name(name)
    ))
}

fn damaged_records(n: usize) -> StoreError {
    StoreError::integrity(format!(
        "{n} catalog record(s) failed to authenticate or could not be read (a damaged \
         range of entries counts as one, though it may hold more); their names cannot be \
         read (seccs verify reports them)"
    ))
}

/// Seconds since the Unix epoch by this machine's clock: what a put
/// stamps a version with.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn missing(digest: &[u8]) -> StoreError {
    StoreError::integrity(format!(
        "node {} is missing from the store",
        seccs_core::hexenc::encode(digest)
    ))
}

/// Refuses a directory entry `name` whose content, read from `reader`, is
/// not empty: a directory has none of its own, and [`Store::get_named`]
/// would refuse to read back what was stored. One byte read tells.
fn refuse_directory_content(reader: &mut dyn std::io::Read, name: &str) -> Result<()> {
    let mut first = Vec::with_capacity(1);
    // read_to_end retries an interrupted read itself.
    let read = std::io::Read::read_to_end(&mut std::io::Read::take(&mut *reader, 1), &mut first);
    match read {
        Ok(0) => Ok(()),
        Ok(_) => Err(StoreError::IsDirectory(format!(
            "{name:?} is put as a directory, which has no content of its own, but the content \
             given is not empty: nothing was stored; put the files under it by their own names \
             ({:?})",
            format!("{name}/")
        ))),
        Err(e) => Err(StoreError::Io(e)),
    }
}

/// Refuses a name that is not in the one form a path is stored under
/// (`a/b/c`: no empty, `.` or `..` component, so no leading or trailing `/`,
/// no component longer than a file name can be, and no NUL): two spellings
/// of one path would be two names, and a restore, which reads a name as a
/// path under its output directory, would give a different one. The
/// check [`Store::put_named`] makes, public so that a caller can make it
/// before it opens or makes a store.
pub fn check_name(name: &str) -> Result<()> {
    /// The longest file name (one component), in bytes, that Linux file
    /// systems take (`NAME_MAX`).
    const NAME_MAX: usize = 255;
    // Messages quote the name, up to a bound: a name is caller input.
    let quoted = quoted_name(name);
    if name.is_empty() {
        return Err(StoreError::InvalidName("a name cannot be empty".into()));
    }
    if name.contains('\0') {
        return Err(StoreError::InvalidName(format!(
            "{quoted}: a name cannot hold a NUL byte"
        )));
    }
    if name.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return Err(StoreError::InvalidName(format!(
            "{quoted}: a name is a relative path without empty, `.` or `..` components \
             (such as `photos/2024/a.jpg`)"
        )));
    }
    // A restore writes each component as a file name, which no Linux file
    // system takes longer than NAME_MAX bytes (its bytes as the file system
    // counts them: a byte that is not UTF-8 is one). tar archives such a
    // name but cannot extract it; a name read from a directory cannot have
    // one, so only a name given (`--name`) is refused here.
    if let Some(len) = name
        .split('/')
        .map(|part| crate::file_name::bytes_of_name(part).len())
        .find(|len| *len > NAME_MAX)
    {
        return Err(StoreError::InvalidName(format!(
            "{quoted}: a component of it is {len} bytes long, more than the {NAME_MAX} bytes a \
             file name can have, so a restore could never write it (tar archives such names \
             but cannot extract them); give a name whose components are at most {NAME_MAX} \
             bytes each"
        )));
    }
    // `get` and `rm` take a reference or a name in one argument, reading
    // one that parses as a reference as one: such a name would be reached
    // only as NAME@N, and its reference spelling would reach another
    // content.
    if name.parse::<ContentRef>().is_ok() {
        return Err(StoreError::InvalidName(format!(
            "{quoted}: a name cannot be spelled like a content reference (hex)"
        )));
    }
    // A name may end in `@` and digits, as file names do (`build@2`):
    // `read_spec` reads such a spelling as the name when there is one.
    Ok(())
}

/// `name` quoted for a message, cut to its first 200 characters.
pub(crate) fn quoted_name(name: &str) -> String {
    const SHOWN: usize = 200;
    match name.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &name[..cut], name.len()),
        None => format!("{name:?}"),
    }
}
