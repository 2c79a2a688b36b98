//! A server's records on disk.
//!
//! ```text
//! ROOT/server-id                         this server's id (its channel survives restarts)
//! ROOT/records/<sha256(tag) hex>/tag     the tag itself
//! ROOT/records/<sha256(tag) hex>/<version, 20 digits>.rec
//! ROOT/highest/<sha256(tag) hex>         the highest version of the tag ever held
//! ROOT/lock                              held by the server running on the root
//! ```
//!
//! `highest/` (added with message kind 13; a root without it is read as
//! before, each tag's highest version being that of its newest record)
//! keeps, per tag, the highest version this server has stored, also after
//! the records are removed: `HIGH` or `HIGH PREV FILEID` in decimal and hex
//! (PREV and FILEID say what a rollback of the save FILEID at HIGH puts
//! back). A server answers it when a save asks for the next version
//! ([`RecordStore::highest`]) and refuses a new record at or below it
//! ([`PutOutcome::VersionUsed`]), so a version removed while some servers
//! were offline (they still hold the removed one) is not given to another
//! save, and this server never takes a version it held again. A client
//! counts a claim of fewer than t servers only near what t servers report
//! (see [`crate::client`]): one server's answer cannot spend a tag's
//! versions. The file names only the tag's hash, never the tag.
//!
//! Seed flaw fixed here: *a tag whose base64 contains `/` crashes a server
//! thread*. The seed used base64 of the tag as a file name. Here a file name
//! is the hex SHA-256 of the tag: always 64 safe characters, whatever the tag
//! holds (`/`, `+`, `..`, unicode, 4 KiB). Every file is written to a
//! temporary name, synced, then renamed, so a crash never leaves half a record.
//!
//! Directories the server makes are private (0700 on Unix) and so are its
//! files (0600): a record is a share of a password-encrypted file, and other
//! users of the machine have no business reading it. A root the operator
//! made keeps the mode it has.
//!
//! A record is published with a hard link, which fails when the name exists:
//! two saves that race for one version never overwrite each other, whether
//! they reach one server process or two processes sharing a root. It is
//! written under a temporary name in `records/` (without the lock: it may
//! be large) and linked into its tag's directory, made with the `tag` file
//! when missing, with the lock held: a removal of the tag's last version,
//! which removes both, cannot come in between. Before, the directory and
//! the record were made without the lock, and such a removal left a record
//! without its `tag` file (the tag vanished from listings) or failed the
//! store.
//!
//! A temporary file left by a crash (a record's may be near 1 GiB) is
//! removed when a server starts on the root
//! ([`RecordStore::remove_leftover_temporaries`]).
//!
//! A store that is refused leaves nothing behind: the tag's directory is
//! made only for a record that will be written, and a rollback of a tag's
//! first save removes its `highest/` file. Before, a refused store made the
//! tag's directory (with no record) and a rolled-back first save left a
//! `highest/` file of version 0, so anyone on the broker could fill a
//! server's disk with entries; a store of version 0, which is no version,
//! was refused as a version taken.
//!
//! A store remembers the file ids of the last [`MAX_ROLLED_BACK`] saves
//! rolled back ([`RecordStore::delete_save`]) and refuses a record of any of
//! them ([`RecordStore::put_save`]): a server that was paused or slow gets a
//! failed save's store request late, maybe after its rollback, and must not
//! keep it as a version that the client reported as rolled back.

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::message::{ListEntry, MAX_VERSION, SaveEntry, VersionEntry};

/// What a store request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The record was written.
    Stored,
    /// The same record was already there.
    Unchanged,
    /// A different record holds this version.
    Conflict,
    /// The save the record belongs to was rolled back: the record is not kept.
    RolledBack,
    /// No record holds this version, but this server held one at it or
    /// above it before (removed since): the version is not given out again.
    VersionUsed,
    /// Version 0, which is no version: versions start at 1.
    NotAVersion,
}

/// Rolled-back saves a store remembers (16 bytes each, oldest forgotten
/// first): a store request is refused when its save is among them.
pub const MAX_ROLLED_BACK: usize = 4096;

/// The file ids of the saves rolled back most recently, at most
/// [`MAX_ROLLED_BACK`].
#[derive(Debug, Default)]
struct RolledBack {
    order: VecDeque<[u8; 16]>,
    ids: HashSet<[u8; 16]>,
}

impl RolledBack {
    fn remember(&mut self, file_id: [u8; 16]) {
        if !self.ids.insert(file_id) {
            return;
        }
        self.order.push_back(file_id);
        while self.order.len() > MAX_ROLLED_BACK {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    fn contains(&self, file_id: &[u8; 16]) -> bool {
        self.ids.contains(file_id)
    }
}

/// The highest version of a tag a store has held, as `ROOT/highest/HASH`
/// keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Highest {
    high: u64,
    /// What `high` was before the save `by` raised it.
    prev: u64,
    /// The save whose record raised `high` (none when a removal did).
    by: Option<[u8; 16]>,
}

impl Highest {
    fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let high = words.next()?.parse().ok()?;
        let (prev, by) = match (words.next(), words.next()) {
            (Some(p), Some(id)) => {
                let mut by = [0u8; 16];
                hex::decode_to_slice(id, &mut by).ok()?;
                (p.parse().ok()?, Some(by))
            }
            _ => (high, None),
        };
        Some(Self { high, prev, by })
    }

    fn encode(&self) -> String {
        match self.by {
            Some(id) => format!("{} {} {}\n", self.high, self.prev, hex::encode(id)),
            None => format!("{}\n", self.high),
        }
    }
}

/// Where [`RecordStore::put`] is after its first step.
enum Staged {
    /// Refused, or the record is there: nothing was written.
    Done(PutOutcome),
    /// The record is written under a temporary name, to be published.
    Written(TempFile),
}

/// A held record, open for reading as a message's tail: a reply that
/// carries it reads each frame's bytes from the file when the frame is sent
/// (and again when it is sent again), so what a reply holds does not grow
/// with the record. A fetch that nobody acknowledges (a forged requester)
/// costs the server a frame's worth of memory, not the record.
///
/// The file stays open, so a record deleted or replaced while a reply is
/// sent is still read as it was when opened: records are never written in
/// place, only linked and unlinked whole.
#[derive(Debug)]
pub struct RecordFile {
    file: Mutex<fs::File>,
    len: usize,
    path: PathBuf,
}

impl crate::tail::Tail for RecordFile {
    fn len(&self) -> usize {
        self.len
    }

    fn bytes(&self, range: std::ops::Range<usize>) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
        use std::io::{Read, Seek, SeekFrom};
        let mut buf = vec![0u8; range.len()];
        // Each read seeks first: a poisoned lock leaves nothing to repair.
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.seek(SeekFrom::Start(range.start as u64))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(io("read", &self.path))?;
        Ok(std::borrow::Cow::Owned(buf))
    }
}

/// Records kept in a directory.
#[derive(Debug, Clone)]
pub struct RecordStore {
    root: PathBuf,
    dir: PathBuf,
    /// Serialises the steps that read a record and then change it (a
    /// rollback's check of the file id, then its delete) within one process,
    /// and holds the saves rolled back.
    lock: Arc<Mutex<RolledBack>>,
}

fn io(context: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let context = format!("{context} {}", path.display());
    move |e| Error::io(context, e)
}

/// Creates `path` and any missing parents, each new one private to the
/// owner (0700 on Unix); directories that exist keep their mode.
pub(crate) fn create_private_dir_all(path: &Path) -> Result<(), Error> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(io("create", path))
}

/// Creates the file `path`, which must not exist, readable and writable by
/// the owner only (0600 on Unix), from the moment it exists.
fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_synced(path, bytes, Publish::Replace).map(|_| ())
}

/// How a written temporary file takes its final name.
#[derive(Clone, Copy)]
enum Publish {
    /// A rename, replacing what is there.
    Replace,
    /// A hard link, which fails when the name is taken.
    IfAbsent,
}

/// The prefix of a temporary file's name, followed by [`TEMP_HEX_DIGITS`]
/// lowercase hex digits.
const TEMP_PREFIX: &str = ".tmp-";

/// The hex digits after [`TEMP_PREFIX`] (8 random bytes).
const TEMP_HEX_DIGITS: usize = 16;

/// Whether `name` is one that [`TempFile::write`] gives, and nothing else.
fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(TEMP_PREFIX).is_some_and(|hex| {
        hex.len() == TEMP_HEX_DIGITS
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A file written and synced under a temporary name in a directory,
/// removed when dropped: once published under its own name, the temporary
/// one is only a second link (or gone, after a rename).
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Writes and syncs `bytes` to a new temporary file in `dir`.
    fn write(dir: &Path, bytes: &[u8]) -> Result<Self, Error> {
        let mut rnd = [0u8; TEMP_HEX_DIGITS / 2];
        seccs_core::random_bytes(&mut rnd)?;
        let tmp = Self {
            path: dir.join(format!("{TEMP_PREFIX}{}", hex::encode(rnd))),
        };
        let mut f = create_private_file(&tmp.path).map_err(io("create", &tmp.path))?;
        f.write_all(bytes).map_err(io("write", &tmp.path))?;
        f.sync_all().map_err(io("sync", &tmp.path))?;
        Ok(tmp)
    }

    /// Gives the file the name `path` and syncs `path`'s directory; returns
    /// whether it was published (false: `IfAbsent` found the name taken).
    fn publish(&self, path: &Path, publish: Publish) -> Result<bool, Error> {
        match publish {
            Publish::Replace => fs::rename(&self.path, path).map_err(io("rename to", path))?,
            Publish::IfAbsent => match fs::hard_link(&self.path, path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(Error::io(format!("link {}", path.display()), e)),
            },
        }
        if let Some(dir) = path.parent()
            && let Ok(d) = fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(true)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Gone after a rename; after a link or a failure, the temporary
        // name is left to remove.
        let _ = fs::remove_file(&self.path);
    }
}

/// Writes and syncs a temporary file beside `path`, publishes it, and syncs
/// the directory; returns whether it was published (false: `IfAbsent` found
/// the name taken).
fn write_synced(path: &Path, bytes: &[u8], publish: Publish) -> Result<bool, Error> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Config("path without parent".into()))?;
    TempFile::write(dir, bytes)?.publish(path, publish)
}

/// Removes the temporary files [`TempFile::write`] left in `dir` (a crash
/// between the write and the removal); returns how many.
fn remove_temporaries(dir: &Path) -> usize {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_temp_name))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// The first bytes of a record file: what [`crate::record::file_id_of`]
/// and [`crate::record::manifest_of`] need.
fn read_prefix(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    fs::File::open(path)?
        .take(crate::record::RECORD_PREFIX_MAX as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

fn version_file(version: u64) -> String {
    format!("{version:020}.rec")
}

fn parse_version_file(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".rec")?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

impl RecordStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: &Path) -> Result<Self, Error> {
        let dir = root.join("records");
        create_private_dir_all(&dir)?;
        Ok(Self {
            root: root.to_owned(),
            dir,
            lock: Arc::default(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `tag`: the hex SHA-256 of the tag.
    pub fn tag_dir(&self, tag: &str) -> PathBuf {
        self.dir.join(hex::encode(Sha256::digest(tag.as_bytes())))
    }

    /// The file of one version of `tag`.
    pub fn record_path(&self, tag: &str, version: u64) -> PathBuf {
        self.tag_dir(tag).join(version_file(version))
    }

    /// The file keeping the highest version of `tag` ever held.
    pub fn highest_path(&self, tag: &str) -> PathBuf {
        self.root
            .join("highest")
            .join(hex::encode(Sha256::digest(tag.as_bytes())))
    }

    fn read_highest(&self, tag: &str) -> Highest {
        let path = self.highest_path(tag);
        match fs::read_to_string(&path) {
            Ok(text) => Highest::parse(&text).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "unreadable highest-version file ignored");
                Highest::default()
            }),
            Err(_) => Highest::default(),
        }
    }

    fn write_highest(&self, tag: &str, highest: &Highest) -> Result<(), Error> {
        let path = self.highest_path(tag);
        if let Some(dir) = path.parent() {
            create_private_dir_all(dir)?;
        }
        write_atomic(&path, highest.encode().as_bytes())
    }

    /// The newest record of `tag` at or below [`MAX_VERSION`], 0 when none.
    fn newest_record(&self, tag: &str) -> u64 {
        Self::versions(&self.tag_dir(tag))
            .iter()
            .map(|v| v.version)
            .filter(|v| *v <= MAX_VERSION)
            .max()
            .unwrap_or(0)
    }

    /// The highest version of `tag` this store has held, also one removed
    /// since (0 when none): a save must choose a higher one. Records above
    /// [`MAX_VERSION`] do not count.
    pub fn highest(&self, tag: &str) -> u64 {
        self.read_highest(tag)
            .high
            .min(MAX_VERSION)
            .max(self.newest_record(tag))
    }

    /// Raises the highest version of `tag` to `version`: a record of the
    /// save `by` was stored there, or (`by` is `None`) one is being removed,
    /// which no rollback undoes. Called with the lock held.
    fn raise_highest(&self, tag: &str, version: u64, by: Option<[u8; 16]>) -> Result<(), Error> {
        if version > MAX_VERSION {
            return Ok(());
        }
        let old = self.read_highest(tag);
        let next = if version > old.high {
            let below = Self::versions(&self.tag_dir(tag))
                .iter()
                .map(|v| v.version)
                .filter(|v| *v < version)
                .max()
                .unwrap_or(0);
            Highest {
                high: version,
                prev: old.high.max(below),
                by,
            }
        } else if version == old.high && by.is_none() && old.by.is_some() {
            Highest {
                high: version,
                prev: version,
                by: None,
            }
        } else {
            return Ok(());
        };
        self.write_highest(tag, &next)
    }

    /// Every version of `tag` held, each with the save (file id, n, t) its
    /// record's header names. A record that cannot be read or does not
    /// parse (altered, or damaged on disk) is listed as
    /// [`SaveEntry::unreadable`]: a client must not take its version for
    /// one that too few servers hold, and load an older one in its place.
    pub fn saves(&self, tag: &str) -> Vec<SaveEntry> {
        let dir = self.tag_dir(tag);
        Self::versions(&dir)
            .into_iter()
            .map(|v| {
                read_prefix(&dir.join(version_file(v.version)))
                    .ok()
                    .and_then(|head| crate::record::manifest_of(&head).ok())
                    .map_or(SaveEntry::unreadable(v.version), |m| SaveEntry {
                        version: v.version,
                        file_id: m.file_id,
                        n: m.n,
                        t: m.t,
                    })
            })
            .collect()
    }

    /// Stores `record` as `version` of `tag`, unless another record is there.
    /// A store that is refused leaves nothing behind: the tag's directory
    /// is made only for a record that will be written.
    pub fn put(&self, tag: &str, version: u64, record: &[u8]) -> Result<PutOutcome, Error> {
        match self.stage(tag, version, record)? {
            Staged::Done(outcome) => Ok(outcome),
            Staged::Written(tmp) => self.publish(tag, version, record, &tmp),
        }
    }

    /// What a record held at `path` makes of a store of `record` there
    /// (`None`: no record is there).
    fn compare(path: &Path, record: &[u8]) -> Result<Option<PutOutcome>, Error> {
        match fs::read(path) {
            Ok(existing) if existing == record => Ok(Some(PutOutcome::Unchanged)),
            Ok(_) => Ok(Some(PutOutcome::Conflict)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    /// [`RecordStore::put`]'s first step, without the lock: the outcome
    /// when the store is refused or the record is there, else the record
    /// written and synced under a temporary name in `records/` (which a
    /// removal never deletes, unlike the tag's directory).
    fn stage(&self, tag: &str, version: u64, record: &[u8]) -> Result<Staged, Error> {
        if version == 0 {
            return Ok(Staged::Done(PutOutcome::NotAVersion));
        }
        let path = self.record_path(tag, version);
        if let Some(outcome) = Self::compare(&path, record)? {
            return Ok(Staged::Done(outcome));
        }
        // A version this store held before (removed since) is not given to
        // another save: servers offline at the removal may still hold it.
        if version <= self.read_highest(tag).high {
            // A put of this version that raised it just now left its record.
            return Ok(Staged::Done(
                Self::compare(&path, record)?.unwrap_or(PutOutcome::VersionUsed),
            ));
        }
        Ok(Staged::Written(TempFile::write(&self.dir, record)?))
    }

    /// [`RecordStore::put`]'s second step: links the record written in
    /// `tmp` into the tag's directory, made with its `tag` file when
    /// missing. With the lock held throughout, so that a removal of the
    /// tag's last version, which removes the `tag` file and the directory,
    /// comes wholly before it or after: in between, it would leave the
    /// record in a directory without its `tag` file (a tag [`Self::list`]
    /// never shows), or take the directory from under the link.
    fn publish(
        &self,
        tag: &str,
        version: u64,
        record: &[u8],
        tmp: &TempFile,
    ) -> Result<PutOutcome, Error> {
        let dir = self.tag_dir(tag);
        let path = dir.join(version_file(version));
        let _guard = self.locked();
        // Checked again with the lock held: since the first step another
        // save may have stored this version and a removal taken it, and a
        // version removed is not given out again.
        if version <= self.read_highest(tag).high {
            return Ok(Self::compare(&path, record)?.unwrap_or(PutOutcome::VersionUsed));
        }
        let new_tag = !dir.exists();
        create_private_dir_all(&dir)?;
        let tag_file = dir.join("tag");
        if !tag_file.exists() {
            write_atomic(&tag_file, tag.as_bytes())?;
        }
        // Another save may have taken the version since: the link refuses
        // to replace it, and the record there decides the outcome.
        if !tmp.publish(&path, Publish::IfAbsent)? {
            return Ok(Self::compare(&path, record)?.unwrap_or(PutOutcome::Conflict));
        }
        let by = crate::record::file_id_of(record).ok();
        self.raise_highest(tag, version, by)?;
        if new_tag {
            // The new tag directory's own entry must be on disk too before
            // the record counts as stored.
            fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync", &self.dir))?;
        }
        Ok(PutOutcome::Stored)
    }

    /// Removes the temporary files that a store or a write of this root
    /// left when the process stopped (crashed, killed) between writing one
    /// and removing it: in `records/`, each tag's directory, `highest/` and
    /// the root itself; only names of the form the store gives them. A tag
    /// directory left with no record (the removal of its last version
    /// could not remove it while the file was there) is removed too.
    /// Returns how many files were removed.
    ///
    /// Only for the process holding the root's lock, before it stores
    /// anything (a server at start): a store in progress elsewhere would
    /// lose its temporary file.
    pub fn remove_leftover_temporaries(&self) -> usize {
        let mut removed = remove_temporaries(&self.root)
            + remove_temporaries(&self.dir)
            + remove_temporaries(&self.root.join("highest"));
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let dir = entry.path();
            let here = remove_temporaries(&dir);
            removed += here;
            if here > 0 && Self::versions(&dir).is_empty() {
                let _ = fs::remove_file(dir.join("tag"));
                let _ = fs::remove_dir(&dir);
            }
        }
        removed
    }

    /// [`RecordStore::put`] of a record of the save `file_id`, refused
    /// ([`PutOutcome::RolledBack`]) when that save was rolled back, whether
    /// the rollback came before this request or while it was written.
    pub fn put_save(
        &self,
        tag: &str,
        version: u64,
        record: &[u8],
        file_id: &[u8; 16],
    ) -> Result<PutOutcome, Error> {
        if self.locked().contains(file_id) {
            return Ok(PutOutcome::RolledBack);
        }
        let outcome = self.put(tag, version, record)?;
        if !matches!(outcome, PutOutcome::Stored | PutOutcome::Unchanged) {
            return Ok(outcome);
        }
        // A rollback that came while the record was written either is seen
        // here, or saw the record when it deleted (both hold the lock).
        let rolled_back = self.locked();
        if rolled_back.contains(file_id) {
            self.delete_save_locked(tag, version, file_id)?;
            return Ok(PutOutcome::RolledBack);
        }
        Ok(outcome)
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, RolledBack> {
        // Every critical section leaves the set consistent: poisoning is ignored.
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record of `version` of `tag`, if held.
    pub fn get(&self, tag: &str, version: u64) -> Result<Option<Vec<u8>>, Error> {
        let path = self.record_path(tag, version);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    /// The record of `version` of `tag`, if held, opened to be read a
    /// range at a time ([`RecordFile`]) rather than read whole.
    pub fn open_record(&self, tag: &str, version: u64) -> Result<Option<RecordFile>, Error> {
        let path = self.record_path(tag, version);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
        };
        let len = file.metadata().map_err(io("stat", &path))?.len();
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= crate::message::MAX_RECORD_LEN)
            .ok_or_else(|| {
                Error::io(
                    format!("read {}", path.display()),
                    std::io::Error::other("larger than a record may be"),
                )
            })?;
        Ok(Some(RecordFile {
            file: Mutex::new(file),
            len,
            path,
        }))
    }

    fn versions(dir: &Path) -> Vec<VersionEntry> {
        let mut out: Vec<VersionEntry> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = parse_version_file(e.file_name().to_str()?)?;
                let stored_bytes = e.metadata().ok()?.len();
                Some(VersionEntry {
                    version,
                    stored_bytes,
                })
            })
            .collect();
        out.sort_by_key(|v| v.version);
        out
    }

    /// Every tag starting with `prefix`, with its versions.
    pub fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)
            .map_err(io("list", &self.dir))?
            .flatten()
        {
            let dir = entry.path();
            let Ok(tag) = fs::read(dir.join("tag")) else {
                continue;
            };
            let Ok(tag) = String::from_utf8(tag) else {
                continue;
            };
            if !tag.starts_with(prefix) {
                continue;
            }
            let versions = Self::versions(&dir);
            if !versions.is_empty() {
                out.push(ListEntry { tag, versions });
            }
        }
        out.sort_by(|a, b| a.tag.cmp(&b.tag));
        Ok(out)
    }

    /// Rolls back the save `file_id`: deletes `version` of `tag` only if it
    /// is that save's record (a rollback must never remove another save's
    /// record), and remembers the save so that a late store of it is refused
    /// ([`RecordStore::put_save`]); returns how many records were deleted (0
    /// or 1).
    pub fn delete_save(&self, tag: &str, version: u64, file_id: &[u8; 16]) -> Result<u64, Error> {
        let mut rolled_back = self.locked();
        rolled_back.remember(*file_id);
        self.delete_save_locked(tag, version, file_id)
    }

    /// [`RecordStore::delete_save`]'s delete, with the lock held.
    fn delete_save_locked(
        &self,
        tag: &str,
        version: u64,
        file_id: &[u8; 16],
    ) -> Result<u64, Error> {
        let path = self.record_path(tag, version);
        let head = match read_prefix(&path) {
            Ok(head) => head,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A rollback that came between the store's write of its
                // record and its raise of the highest version removed the
                // record first: the raise it made since is undone here.
                self.lower_highest_raised_by(tag, version, file_id)?;
                return Ok(0);
            }
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        match crate::record::file_id_of(&head) {
            Ok(id) if id == *file_id => {
                let removed = self.delete_locked(tag, Some(version), false)?;
                self.lower_highest_raised_by(tag, version, file_id)?;
                Ok(removed)
            }
            _ => Ok(0),
        }
    }

    /// The save rolled back never was a version: the highest version of
    /// `tag`, if this save (`file_id`) raised it to `version`, goes back to
    /// what it was. Called with the lock held.
    fn lower_highest_raised_by(
        &self,
        tag: &str,
        version: u64,
        file_id: &[u8; 16],
    ) -> Result<(), Error> {
        let highest = self.read_highest(tag);
        if highest.by != Some(*file_id) || highest.high != version {
            return Ok(());
        }
        if highest.prev == 0 {
            // The tag had no version before: nothing is left of it, as
            // when the save never came (a removal keeps its version).
            let path = self.highest_path(tag);
            return match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(format!("remove {}", path.display()), e)),
            };
        }
        self.write_highest(
            tag,
            &Highest {
                high: highest.prev,
                prev: highest.prev,
                by: None,
            },
        )
    }

    /// Deletes `version` of `tag`, or every version; returns how many.
    pub fn delete(&self, tag: &str, version: Option<u64>) -> Result<u64, Error> {
        let _guard = self.locked();
        self.delete_locked(tag, version, true)
    }

    /// Deletes `version` of `tag`, or every version, with the lock held;
    /// `given_out`: the versions removed stay given out (a removal), or not
    /// (a rollback, which puts the highest version back itself).
    fn delete_locked(
        &self,
        tag: &str,
        version: Option<u64>,
        given_out: bool,
    ) -> Result<u64, Error> {
        let dir = self.tag_dir(tag);
        let targets: Vec<u64> = match version {
            Some(v) => vec![v],
            None => Self::versions(&dir)
                .into_iter()
                .map(|v| v.version)
                .collect(),
        };
        // Removed versions stay given out (see the module docs).
        if given_out
            && let Some(top) = targets.iter().copied().filter(|v| *v <= MAX_VERSION).max()
            && dir.join(version_file(top)).exists()
        {
            self.raise_highest(tag, top, None)?;
        }
        let mut removed = 0;
        for v in targets {
            match fs::remove_file(dir.join(version_file(v))) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("delete from {}", dir.display()), e)),
            }
        }
        if Self::versions(&dir).is_empty() && dir.exists() {
            let _ = fs::remove_file(dir.join("tag"));
            let _ = fs::remove_dir(&dir);
        }
        Ok(removed)
    }

    /// Records held and their total size in bytes.
    pub fn stats(&self) -> Result<(u64, u64), Error> {
        let (mut records, mut bytes) = (0, 0);
        for entry in fs::read_dir(&self.dir)
            .map_err(io("list", &self.dir))?
            .flatten()
        {
            for v in Self::versions(&entry.path()) {
                records += 1;
                bytes += v.stored_bytes;
            }
        }
        Ok((records, bytes))
    }

    /// Free bytes on the filesystem holding the store.
    pub fn free_space(&self) -> u64 {
        fs4::available_space(&self.dir).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_whose_base64_has_a_slash_map_to_safe_file_names() -> Result<(), Error> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = RecordStore::open(tmp.path())?;
        // base64("??>") == "Pz8+", base64("???") == "Pz8/": the seed's crash.
        for tag in [
            "???",
            "??>",
            "../../etc/passwd",
            "a/b+c",
            "ünï/cödé",
            &"x".repeat(4096),
        ] {
            let name = store.tag_dir(tag);
            let file = name.file_name().and_then(|n| n.to_str()).unwrap_or("");
            assert_eq!(file.len(), 64);
            assert!(file.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(store.put(tag, 1, b"rec")?, PutOutcome::Stored);
            assert_eq!(store.get(tag, 1)?.as_deref(), Some(&b"rec"[..]));
        }
        assert_eq!(store.list("")?.len(), 6);
        Ok(())
    }

    #[test]
    fn a_fetched_record_is_read_from_its_file_a_range_at_a_time() -> Result<(), Error> {
        use crate::message::{Body, Message, RequestId};
        use crate::tail::Tail;
        use std::io::{Seek, SeekFrom};
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = RecordStore::open(tmp.path())?;
        let record: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        store.put("t", 1, &record)?;
        assert!(store.open_record("t", 2)?.is_none());
        let file = store
            .open_record("t", 1)?
            .ok_or_else(|| Error::Config("record 1 not found".into()))?;
        assert_eq!(file.len(), record.len());
        // The head and the file's bytes make the reply a whole record makes.
        let id = RequestId([7; 16]);
        let mut reply = Message::encode_fetched_head(id, file.len());
        reply.extend_from_slice(&file.bytes(0..file.len())?);
        let whole = Message {
            request_id: id,
            body: Body::Fetched {
                record: Some(record.clone()),
            },
        };
        assert_eq!(reply, whole.encode());
        // Bytes changed in the file after it was opened are read as they
        // are when asked for: nothing of the record was read ahead. (Records
        // are never written in place; this stands for any later read.)
        let path = store.record_path("t", 1);
        let mut raw = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        raw.seek(SeekFrom::Start(300_000))
            .and_then(|_| raw.write_all(&[0xEE; 4]))
            .map_err(io("write", &path))?;
        assert_eq!(
            &file.bytes(299_998..300_006)?[..],
            [
                record[299_998],
                record[299_999],
                0xEE,
                0xEE,
                0xEE,
                0xEE,
                record[300_004],
                record[300_005]
            ]
        );
        // A record removed while its reply is sent is still read whole.
        assert_eq!(store.delete("t", Some(1))?, 1);
        assert_eq!(&file.bytes(0..4)?[..], &record[..4]);
        Ok(())
    }

    #[test]
    fn versions_conflicts_and_deletes() -> Result<(), Error> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = RecordStore::open(tmp.path())?;
        assert_eq!(store.put("t", 1, b"a")?, PutOutcome::Stored);
        assert_eq!(store.put("t", 1, b"a")?, PutOutcome::Unchanged);
        assert_eq!(store.put("t", 1, b"b")?, PutOutcome::Conflict);
        store.put("t", 2, b"bb")?;
        let list = store.list("t")?;
        assert_eq!(versions_of(&list[0]), [1, 2]);
        assert_eq!(store.stats()?, (2, 3));
        assert_eq!(store.delete("t", Some(1))?, 1);
        assert_eq!(store.delete("t", None)?, 1);
        assert!(store.list("")?.is_empty());
        assert!(!store.tag_dir("t").exists());
        Ok(())
    }

    #[test]
    fn concurrent_puts_of_one_version_store_exactly_one_record() -> Result<(), Error> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = RecordStore::open(tmp.path())?;
        let threads = 8;
        let barrier = std::sync::Barrier::new(threads);
        let outcomes = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let (store, barrier) = (&store, &barrier);
                    scope.spawn(move || {
                        (1..=40u64)
                            .map(|v| {
                                barrier.wait();
                                store.put("t", v, &[i as u8; 64])
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Vec<_>>()
        });
        for v in 1..=40u64 {
            let mut stored = Vec::new();
            for (i, per_thread) in outcomes.iter().enumerate() {
                match &per_thread[v as usize - 1] {
                    Ok(PutOutcome::Stored) => stored.push(i as u8),
                    Ok(PutOutcome::Conflict) => {}
                    other => panic!("version {v}: unexpected {other:?}"),
                }
            }
            assert_eq!(stored.len(), 1, "version {v} stored by {stored:?}");
            // The record on disk is the one whose put said it was stored.
            assert_eq!(store.get("t", v)?, Some(vec![stored[0]; 64]));
        }
        for dir in [store.tag_dir("t"), tmp.path().join("records")] {
            let leftovers = fs::read_dir(&dir)
                .map_err(|e| Error::io("list", e))?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                .count();
            assert_eq!(leftovers, 0, "temporary files are removed");
        }
        Ok(())
    }

    /// The versions a listing of one tag names, in its order.
    fn versions_of(entry: &ListEntry) -> Vec<u64> {
        entry.versions.iter().map(|v| v.version).collect()
    }

    /// A store holding version 1 of tag `t`, and a store of `record` as
    /// its version 2 in its first step (written, not yet published).
    fn second_version_written(
        record: &[u8],
    ) -> Result<(tempfile::TempDir, RecordStore, TempFile), Error> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = RecordStore::open(tmp.path())?;
        assert_eq!(store.put("t", 1, b"one")?, PutOutcome::Stored);
        let Staged::Written(staged) = store.stage("t", 2, record)? else {
            panic!("version 2 is free");
        };
        Ok((tmp, store, staged))
    }

    /// A removal of a tag's last version that comes while a new version
    /// of the tag is stored (its record written, not yet published) comes
    /// wholly before the publication: the store succeeds, and the tag is
    /// listed with its new version (before, the removal took the `tag`
    /// file, or the directory, from under the store).
    #[test]
    fn a_removal_of_the_last_version_during_a_store_leaves_the_tag_listed() -> Result<(), Error> {
        let (_tmp, store, staged) = second_version_written(b"two")?;
        assert_eq!(store.delete("t", None)?, 1);
        assert_eq!(store.publish("t", 2, b"two", &staged)?, PutOutcome::Stored);
        drop(staged);
        let list = store.list("")?;
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].tag, "t");
        assert_eq!(versions_of(&list[0]), [2]);
        assert_eq!(store.get("t", 2)?.as_deref(), Some(&b"two"[..]));
        assert_eq!(
            store.remove_leftover_temporaries(),
            0,
            "nothing left behind"
        );
        Ok(())
    }

    /// A version stored by another save and removed while a store of it
    /// was in its first step is not given out again by that store.
    #[test]
    fn a_version_removed_while_a_store_of_it_was_written_is_not_taken() -> Result<(), Error> {
        let (_tmp, store, staged) = second_version_written(b"mine")?;
        assert_eq!(store.put("t", 2, b"theirs")?, PutOutcome::Stored);
        assert_eq!(store.delete("t", None)?, 2);
        assert_eq!(
            store.publish("t", 2, b"mine", &staged)?,
            PutOutcome::VersionUsed
        );
        drop(staged);
        assert_eq!(store.get("t", 2)?, None);
        assert!(store.list("")?.is_empty());
        Ok(())
    }

    /// The temporary files a crash left (in the root, `records/`, a tag's
    /// directory, `highest/`) are removed, and only those: records, `tag`
    /// files and other names stay. A tag directory that held only a
    /// temporary file besides its `tag` file goes with it.
    #[test]
    fn leftover_temporary_files_are_removed_and_nothing_else() -> Result<(), Error> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let root = tmp.path();
        let store = RecordStore::open(root)?;
        assert_eq!(store.put("t", 1, b"one")?, PutOutcome::Stored);
        let emptied = store.tag_dir("e");
        create_private_dir_all(&emptied)?;
        create_private_dir_all(&root.join("highest"))?;
        let write = |path: PathBuf| -> Result<PathBuf, Error> {
            fs::write(&path, b"x").map_err(|e| Error::io("write", e))?;
            Ok(path)
        };
        let name = ".tmp-0123456789abcdef";
        let left = [
            write(root.join(name))?,
            write(root.join("records").join(name))?,
            write(store.tag_dir("t").join(name))?,
            write(root.join("highest").join(name))?,
            write(emptied.join(name))?,
        ];
        write(emptied.join("tag"))?;
        let kept = [
            write(root.join(".tmp-0123"))?,
            write(store.tag_dir("t").join(".tmp-0123456789ABCDEF"))?,
            write(store.tag_dir("t").join(".tmp-0123456789abcdefg"))?,
            write(root.join("records").join("tmp-0123456789abcdef"))?,
        ];
        let store = RecordStore::open(root)?;
        assert_eq!(store.remove_leftover_temporaries(), left.len());
        for path in &left {
            assert!(!path.exists(), "{} removed", path.display());
        }
        for path in &kept {
            assert!(path.exists(), "{} kept", path.display());
        }
        assert!(!emptied.exists(), "the emptied tag directory is removed");
        assert_eq!(store.get("t", 1)?.as_deref(), Some(&b"one"[..]));
        assert!(store.tag_dir("t").join("tag").exists());
        let list = store.list("")?;
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].tag, "t");
        Ok(())
    }

    #[test]
    fn a_rollback_removes_only_the_record_of_its_own_save() -> Result<(), Error> {
        use crate::crypto::{Kdf, Password};
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = RecordStore::open(tmp.path())?;
        let pw = Password::new("p");
        let ours = crate::sharing::split("t", 1, b"ours", &pw, &Kdf::INSECURE_FAST, 3, 2)?;
        let theirs = crate::sharing::split("t", 1, b"theirs", &pw, &Kdf::INSECURE_FAST, 3, 2)?;
        let (our_id, their_id) = (
            crate::record::file_id_of(&ours[0])?,
            crate::record::file_id_of(&theirs[0])?,
        );
        assert_ne!(our_id, their_id);
        assert_eq!(store.put("t", 1, &theirs[0])?, PutOutcome::Stored);
        assert_eq!(store.delete_save("t", 1, &our_id)?, 0);
        assert_eq!(store.get("t", 1)?.as_deref(), Some(&theirs[0][..]));
        assert_eq!(store.delete_save("t", 2, &their_id)?, 0, "no such version");
        assert_eq!(store.delete_save("t", 1, &their_id)?, 1);
        assert!(store.list("")?.is_empty());
        Ok(())
    }

    #[test]
    fn a_save_rolled_back_is_never_stored_again_whatever_the_order() -> Result<(), Error> {
        use crate::crypto::{Kdf, Password};
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = RecordStore::open(tmp.path())?;
        let pw = Password::new("p");
        let late = crate::sharing::split("t", 1, b"late", &pw, &Kdf::INSECURE_FAST, 3, 2)?;
        let late_id = crate::record::file_id_of(&late[0])?;
        // The rollback first, the store after it: refused, nothing kept.
        assert_eq!(store.delete_save("t", 1, &late_id)?, 0);
        assert_eq!(
            store.put_save("t", 1, &late[0], &late_id)?,
            PutOutcome::RolledBack
        );
        assert!(store.list("")?.is_empty());
        // The store first, the rollback after it: removed, and a repeat of
        // the store is refused.
        let other = crate::sharing::split("t", 1, b"other", &pw, &Kdf::INSECURE_FAST, 3, 2)?;
        let other_id = crate::record::file_id_of(&other[0])?;
        assert_eq!(
            store.put_save("t", 1, &other[0], &other_id)?,
            PutOutcome::Stored
        );
        assert_eq!(store.delete_save("t", 1, &other_id)?, 1);
        assert_eq!(
            store.put_save("t", 1, &other[0], &other_id)?,
            PutOutcome::RolledBack
        );
        assert!(store.list("")?.is_empty());
        // Another save of the version is not affected.
        let next = crate::sharing::split("t", 1, b"next", &pw, &Kdf::INSECURE_FAST, 3, 2)?;
        let next_id = crate::record::file_id_of(&next[0])?;
        assert_eq!(
            store.put_save("t", 1, &next[0], &next_id)?,
            PutOutcome::Stored
        );
        Ok(())
    }

    /// A rollback that removed the record between the store's write of it
    /// and its raise of the highest version (the two steps of `put`) still
    /// puts the highest version back once the store sees the rollback: the
    /// version was never given out, and the next save takes it.
    #[test]
    fn a_rollback_between_a_stores_write_and_its_raise_gives_the_version_back() -> Result<(), Error>
    {
        use crate::crypto::{Kdf, Password};
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = RecordStore::open(tmp.path())?;
        let pw = Password::new("p");
        let save = crate::sharing::split("t", 1, b"x", &pw, &Kdf::INSECURE_FAST, 3, 2)?;
        let id = crate::record::file_id_of(&save[0])?;
        // The store's two steps are done; the rollback removed the record
        // after the first, as it does when it comes between them.
        assert_eq!(store.put("t", 1, &save[0])?, PutOutcome::Stored);
        fs::remove_file(store.record_path("t", 1)).map_err(|e| Error::io("rm", e))?;
        assert_eq!(store.highest("t"), 1);
        // What `put_save` does next, having seen the rollback.
        assert_eq!(store.delete_save("t", 1, &id)?, 0);
        assert_eq!(store.highest("t"), 0, "the version is given back");
        let next = crate::sharing::split("t", 1, b"y", &pw, &Kdf::INSECURE_FAST, 3, 2)?;
        assert_eq!(store.put("t", 1, &next[0])?, PutOutcome::Stored);
        // Another save's rollback never lowers what this one raised.
        assert_eq!(store.delete_save("t", 1, &id)?, 0);
        assert_eq!(store.highest("t"), 1);
        Ok(())
    }

    #[test]
    fn a_removed_version_stays_given_out_and_a_rolled_back_one_does_not() -> Result<(), Error> {
        use crate::crypto::{Kdf, Password};
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = RecordStore::open(tmp.path())?;
        let pw = Password::new("p");
        let rec = |v: u64| crate::sharing::split("t", v, b"x", &pw, &Kdf::INSECURE_FAST, 3, 2);
        assert_eq!(store.highest("t"), 0);
        let (one, two) = (rec(1)?, rec(2)?);
        assert_eq!(store.put("t", 1, &one[0])?, PutOutcome::Stored);
        assert_eq!(store.put("t", 2, &two[0])?, PutOutcome::Stored);
        assert_eq!(store.highest("t"), 2);
        // Removed (every version): the tag's name goes, its highest version
        // stays, under the tag's hash only.
        assert_eq!(store.delete("t", None)?, 2);
        assert!(!store.tag_dir("t").exists());
        assert_eq!(store.highest("t"), 2);
        let kept = fs::read_to_string(store.highest_path("t")).map_err(|e| Error::io("read", e))?;
        assert!(!kept.contains('t'), "{kept}");
        // A new record at a removed version is refused; above it, stored.
        let again = rec(2)?;
        assert_eq!(store.put("t", 2, &again[0])?, PutOutcome::VersionUsed);
        assert_eq!(store.put("t", 1, &rec(1)?[0])?, PutOutcome::VersionUsed);
        let three = rec(3)?;
        let three_id = crate::record::file_id_of(&three[0])?;
        assert_eq!(
            store.put_save("t", 3, &three[0], &three_id)?,
            PutOutcome::Stored
        );
        assert_eq!(store.highest("t"), 3);
        // A rollback of that save puts the highest version back: the save
        // never was a version.
        assert_eq!(store.delete_save("t", 3, &three_id)?, 1);
        assert_eq!(store.highest("t"), 2);
        let other = rec(3)?;
        assert_eq!(store.put("t", 3, &other[0])?, PutOutcome::Stored);
        // A record above the largest version (an earlier build stored any)
        // never counts.
        store.put("t", u64::MAX, &rec(u64::MAX)?[0])?;
        assert_eq!(store.highest("t"), 3);
        // What a server lists of each version: its save, from the header.
        let saves = store.saves("t");
        assert_eq!(
            saves
                .iter()
                .map(|s| (s.version, s.n, s.t))
                .collect::<Vec<_>>(),
            vec![(3, 3, 2), (u64::MAX, 3, 2)]
        );
        // A root an earlier build kept (records, no highest file).
        fs::remove_dir_all(tmp.path().join("highest")).map_err(|e| Error::io("rm", e))?;
        assert_eq!(store.highest("t"), 3);
        Ok(())
    }

    #[test]
    fn rolled_back_saves_are_remembered_up_to_the_bound() {
        let mut rolled_back = RolledBack::default();
        for i in 0..MAX_ROLLED_BACK as u64 + 10 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            rolled_back.remember(id);
            rolled_back.remember(id);
        }
        assert_eq!(rolled_back.order.len(), MAX_ROLLED_BACK);
        assert_eq!(rolled_back.ids.len(), MAX_ROLLED_BACK);
        assert!(!rolled_back.contains(&[0; 16]), "the oldest is forgotten");
        let mut newest = [0u8; 16];
        newest[..8].copy_from_slice(&(MAX_ROLLED_BACK as u64 + 9).to_be_bytes());
        assert!(rolled_back.contains(&newest));
    }
}
