//! Storage of named keys: one sealed file per key under `DIR/named/`, each
//! sealed under a key derived from the server's root key (`DIR/root.key`,
//! 32 random bytes, mode 0600, created on first start). Every change is
//! applied to a copy, written atomically and durably, and only then made
//! visible, so a failed write leaves the key as it was.
//!
//! Readers never wait for a file to be written: the map of keys is held
//! only to look a key up or to swap one in, never while a key file is
//! written or read, nor while a caller's work on a key runs. Changes wait
//! for each other (one at a time, under their own lock), so each starts
//! from the one before it, and a key's file always holds what the map
//! holds once the change is done. The count of keys ([`KeyRing::len`])
//! needs no lock at all.
//!
//! A missing root key is made only while `named/` holds no key: with keys
//! there, a new root key would cut them all off, so the open is refused
//! ([`KmsError::MissingRootKey`]) until the root key is restored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use seccs_core::SecretKey;

use crate::KmsError;
use crate::atomic;
use crate::dir::DirFd;
use crate::files::{read_own, read_own_opt};
use crate::keyfile::{MAX_META_LEN, NamedKeyFile};
use crate::lifecycle::{KeyInfo, KeyState, NamedKey, check_name};

const SUFFIX: &str = ".key";
/// The directory of the named key files in a server directory.
const NAMED_DIR: &str = "named";
/// The root key's file in a server directory.
const ROOT_FILE: &str = "root.key";

/// The largest named key file read: its metadata and, with room, the
/// material of many versions.
const MAX_NAMED_FILE: u64 = (MAX_META_LEN as u64) + (16 << 20);
/// The most of a root key file read (it holds 32 bytes).
const MAX_ROOT_FILE: u64 = 64;

/// A named key as the map holds it: shared, so that a reader works on it
/// after the map's lock is let go, and a change swaps in a new one whole.
/// The last holder drops (and zeroizes) a replaced key.
#[derive(Clone)]
enum Entry {
    Key(Arc<NamedKey>),
    Corrupt,
}

/// The named keys of one server.
pub struct KeyRing {
    dir: DirFd,
    root: SecretKey,
    /// Held only to look up, insert or swap an entry: never across a
    /// file's write or read, nor a caller's work.
    keys: Mutex<HashMap<String, Entry>>,
    /// How many entries `keys` holds, set under its lock.
    count: AtomicUsize,
    /// Held by a change ([`KeyRing::create`], [`KeyRing::update`]) from
    /// before it reads the key until its file is written and swapped in:
    /// changes are made one at a time, each from the one before.
    changes: Mutex<()>,
    /// Held while a rejected key's file is read again, so that requests
    /// for it read the file (up to [`MAX_NAMED_FILE`]) one at a time.
    reloads: Mutex<()>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// The named keys' names in `named` (none if it is missing), each with its
/// file's name.
fn named_files(named: Option<&DirFd>) -> Result<Vec<(String, String)>, KmsError> {
    let Some(named) = named else {
        return Ok(Vec::new());
    };
    let mut files = Vec::new();
    for fname in named.names()? {
        let Some(name) = fname.strip_suffix(SUFFIX) else {
            continue;
        };
        if check_name(name).is_err() {
            continue;
        }
        files.push((name.to_owned(), fname));
    }
    Ok(files)
}

/// The root key `root.key` of `dir`, made on first start: only while
/// `named` holds no named key (`count` of them), which a new root key
/// would cut off.
fn load_root(dir: &DirFd, count: usize) -> Result<SecretKey, KmsError> {
    let path = dir.join(ROOT_FILE);
    match read_own_opt(dir, ROOT_FILE, MAX_ROOT_FILE) {
        Ok(Some(bytes)) => {
            let bytes = zeroize::Zeroizing::new(bytes);
            SecretKey::from_slice(&bytes).map_err(|_| KmsError::BadRootKey(path))
        }
        Ok(None) if count > 0 => Err(KmsError::MissingRootKey {
            path,
            named: dir.join(NAMED_DIR),
            count,
        }),
        Ok(None) => {
            let key = SecretKey::generate()?;
            atomic::write_atomic(dir, ROOT_FILE, key.expose_secret())?;
            Ok(key)
        }
        Err(KmsError::FileTooLarge { .. }) => Err(KmsError::BadRootKey(path)),
        Err(e) => Err(e),
    }
}

impl KeyRing {
    /// Checks the named key files of the server directory `dir` as
    /// [`KeyRing::open`] reads them, without opening it or making
    /// anything: how many there are, and each that does not parse or
    /// authenticate under `dir/root.key` (its path and why). A malformed
    /// root key (not 32 bytes) is damage found, the one finding: the named
    /// keys cannot be checked without it. A root key that is missing while
    /// named keys need it is the error (the directory may be the wrong one).
    pub fn check_files(dir: &Path) -> Result<(usize, Vec<(PathBuf, KmsError)>), KmsError> {
        let Some(dir) = DirFd::open_own(dir).or_else(|e| match e {
            // `--dir` may name a link to the key directory.
            KmsError::NotADirectory { .. } => DirFd::open(dir).map(Some),
            e => Err(e),
        })?
        else {
            return Ok((0, Vec::new()));
        };
        let named = dir.sub(NAMED_DIR)?;
        let files = named_files(named.as_ref())?;
        let Some(named) = named.filter(|_| !files.is_empty()) else {
            return Ok((0, Vec::new()));
        };
        let root_path = dir.join(ROOT_FILE);
        let malformed = |path: PathBuf| {
            Ok((
                files.len(),
                vec![(path.clone(), KmsError::BadRootKey(path))],
            ))
        };
        let root = match read_own_opt(&dir, ROOT_FILE, MAX_ROOT_FILE) {
            Ok(Some(bytes)) => match SecretKey::from_slice(&zeroize::Zeroizing::new(bytes)) {
                Ok(root) => root,
                Err(_) => return malformed(root_path),
            },
            Ok(None) => {
                return Err(KmsError::MissingRootKey {
                    path: root_path,
                    named: named.path().to_owned(),
                    count: files.len(),
                });
            }
            Err(KmsError::FileTooLarge { .. }) => return malformed(root_path),
            Err(e) => return Err(e),
        };
        let mut bad = Vec::new();
        for (name, file) in &files {
            let loaded = read_own(&named, file, MAX_NAMED_FILE)
                .and_then(|b| decode(&root, name, &zeroize::Zeroizing::new(b)));
            if let Err(e) = loaded {
                bad.push((named.join(file), e));
            }
        }
        bad.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((files.len(), bad))
    }

    /// Opens the named keys of the server directory `dir` (made, mode
    /// 0700, if missing).
    pub fn open(dir: &Path) -> Result<Self, KmsError> {
        atomic::create_private_dir(dir)?;
        Self::open_in(&DirFd::open(dir)?)
    }

    /// Opens the named keys of the server directory open as `dir`: its
    /// `root.key` and `named/` are read, and the keys written, in the
    /// directory it holds open, wherever its path leads by then.
    pub(crate) fn open_in(dir: &DirFd) -> Result<Self, KmsError> {
        let files = named_files(dir.sub(NAMED_DIR)?.as_ref())?;
        let root = load_root(dir, files.len())?;
        let named = dir.make_sub(NAMED_DIR)?;
        let mut keys = HashMap::with_capacity(files.len());
        for (name, file) in files {
            let e = match load(&named, &root, &name, &file) {
                Ok(k) => Entry::Key(Arc::new(k)),
                Err(err) => {
                    tracing::warn!(key = name, error = %err, "named key file rejected");
                    Entry::Corrupt
                }
            };
            keys.insert(name, e);
        }
        Ok(Self {
            dir: named,
            root,
            count: AtomicUsize::new(keys.len()),
            keys: Mutex::new(keys),
            changes: Mutex::new(()),
            reloads: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Entries are replaced whole, so a poisoned map is still consistent.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_changes(&self) -> MutexGuard<'_, ()> {
        // It guards no data: a change that panicked changed nothing yet,
        // or swapped its key in whole.
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `entry` in as `name` (under the map's lock), keeping the count.
    fn put(&self, name: &str, entry: Entry) {
        let mut map = self.lock();
        map.insert(name.to_owned(), entry);
        self.count.store(map.len(), Ordering::Release);
    }

    fn store(&self, key: &NamedKey) -> Result<(), KmsError> {
        let (info, materials) = key.parts();
        let meta = serde_json::to_vec(info)?;
        let file = NamedKeyFile::seal(&self.root, meta, &materials)?;
        atomic::write_atomic(
            &self.dir,
            &format!("{}{SUFFIX}", info.name),
            &file.to_bytes(),
        )?;
        Ok(())
    }

    /// How many named keys there are. Takes no lock: never waits for a
    /// change, nor for a reader.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether there is no named key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// Creates a key in state `initial` (pre-activation or active).
    ///
    /// The key's file is written with no lock on the map: until it is
    /// written and the key put in, the name is not there for readers, and
    /// a create of the same name waits for this one and is refused.
    pub fn create(&self, name: &str, initial: KeyState, now: u64) -> Result<KeyInfo, KmsError> {
        let _change = self.lock_changes();
        if self.lock().contains_key(name) {
            return Err(KmsError::AlreadyExists);
        }
        let key = NamedKey::create(name, initial, now)?;
        self.store(&key)?;
        let info = key.info().clone();
        self.put(name, Entry::Key(Arc::new(key)));
        Ok(info)
    }

    /// The key `name`; a key whose file was rejected is read again first,
    /// so that a file restored from a backup, as the error says to, is
    /// taken without a restart (it was refused until one). The file is
    /// read with no lock on the map (one such read at a time), and what it
    /// holds is taken only if the key is still the rejected one by then.
    fn current(&self, name: &str) -> Result<Arc<NamedKey>, KmsError> {
        let look_up = || self.lock().get(name).cloned().ok_or(KmsError::NotFound);
        if let Entry::Key(k) = look_up()? {
            return Ok(k);
        }
        // A poisoned lock guards no data.
        let _reload = self.reloads.lock().unwrap_or_else(PoisonError::into_inner);
        // Taken by the read this one waited for, if it succeeded.
        if let Entry::Key(k) = look_up()? {
            return Ok(k);
        }
        let file = format!("{name}{SUFFIX}");
        let loaded = match load(&self.dir, &self.root, name, &file) {
            Ok(k) => Arc::new(k),
            Err(err) => {
                tracing::debug!(key = name, error = %err, "named key file still rejected");
                return Err(KmsError::CorruptKeyFile {
                    name: name.to_owned(),
                });
            }
        };
        let mut map = self.lock();
        match map.get_mut(name) {
            Some(entry @ Entry::Corrupt) => {
                tracing::info!(key = name, "named key file read again and taken");
                *entry = Entry::Key(Arc::clone(&loaded));
                Ok(loaded)
            }
            // Nothing else takes a rejected key (reads again are made one
            // at a time), nor removes a key: whatever is there is kept.
            Some(Entry::Key(k)) => Ok(Arc::clone(k)),
            None => Err(KmsError::NotFound),
        }
    }

    /// Runs `f` on the key `name`, as it was when `f` began: with no lock
    /// held, so that neither a change nor other readers wait for it.
    pub fn with_key<R>(
        &self,
        name: &str,
        f: impl FnOnce(&NamedKey) -> Result<R, KmsError>,
    ) -> Result<R, KmsError> {
        let key = self.current(name)?;
        f(&key)
    }

    /// Runs `f` while holding the lock of changes and the map's, as
    /// nothing else does for long: a test's stand-in for a change or a
    /// lookup that stalls.
    #[cfg(test)]
    pub(crate) fn hold<R>(&self, f: impl FnOnce() -> R) -> R {
        let _change = self.lock_changes();
        let _map = self.lock();
        f()
    }

    /// Applies `f` to a copy of the key `name`, stores the copy durably,
    /// then makes it current. Readers meanwhile get the key as it was,
    /// without waiting for the file's write; other changes wait for this
    /// one.
    pub fn update<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut NamedKey) -> Result<R, KmsError>,
    ) -> Result<(R, KeyInfo), KmsError> {
        let _change = self.lock_changes();
        let mut copy = self.current(name)?.duplicate();
        let r = f(&mut copy)?;
        self.store(&copy)?;
        let info = copy.info().clone();
        self.put(name, Entry::Key(Arc::new(copy)));
        Ok((r, info))
    }
}

/// Reads and opens the key `name` from its file `file` in `named`.
fn load(named: &DirFd, root: &SecretKey, name: &str, file: &str) -> Result<NamedKey, KmsError> {
    read_own(named, file, MAX_NAMED_FILE)
        .and_then(|b| decode(root, name, &zeroize::Zeroizing::new(b)))
}

fn decode(root: &SecretKey, name: &str, bytes: &[u8]) -> Result<NamedKey, KmsError> {
    let file = NamedKeyFile::parse(bytes)?;
    let materials = file.open(root)?;
    let info: KeyInfo = serde_json::from_slice(&file.meta).map_err(|_| KmsError::Tampered)?;
    if info.name != name {
        return Err(KmsError::Tampered);
    }
    NamedKey::from_parts(info, materials)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Operation;
    use std::fs;

    #[test]
    fn named_keys_persist_across_reopen_and_reject_tampering() -> Result<(), KmsError> {
        let dir = tempfile::tempdir()?;
        let ring = KeyRing::open(dir.path())?;
        ring.create("orders", KeyState::Active, 1)?;
        ring.update("orders", |k| k.rotate(2))?;
        let ct = ring.with_key("orders", |k| {
            k.encrypt(&k.permit(Operation::Encrypt)?, b"x", b"")
        })?;
        let ring = KeyRing::open(dir.path())?;
        let pt = ring.with_key("orders", |k| {
            k.decrypt(&k.permit(Operation::Decrypt)?, &ct, b"")
                .map(|p| p.to_vec())
        })?;
        assert_eq!(pt, b"x");
        assert_eq!(ring.with_key("orders", |k| Ok(k.info().latest_version))?, 2);
        let path = dir.path().join("named/orders.key");
        let good = fs::read(&path)?;
        let mut bytes = good.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes)?;
        let ring = KeyRing::open(dir.path())?;
        let err = ring.with_key("orders", |_| Ok(())).err();
        assert!(
            matches!(&err, Some(KmsError::CorruptKeyFile { name }) if name == "orders"),
            "{err:?}"
        );
        let err = ring.update("orders", |k| k.rotate(3)).err();
        assert!(
            matches!(&err, Some(KmsError::CorruptKeyFile { name }) if name == "orders"),
            "{err:?}"
        );
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("key file for orders is corrupt") && !text.contains("tampered"),
            "{text}"
        );
        // Restored from a backup, as the error says: taken at the next
        // request, without a restart.
        fs::write(&path, &good)?;
        let pt = ring.with_key("orders", |k| {
            k.decrypt(&k.permit(Operation::Decrypt)?, &ct, b"")
                .map(|p| p.to_vec())
        })?;
        assert_eq!(pt, b"x");
        ring.update("orders", |k| k.rotate(3))?;
        assert_eq!(ring.with_key("orders", |k| Ok(k.info().latest_version))?, 3);
        Ok(())
    }

    #[test]
    fn a_missing_root_key_is_made_only_while_no_named_key_needs_it() -> Result<(), KmsError> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root.key");
        // No named key: a missing root key is made (again).
        drop(KeyRing::open(dir.path())?);
        fs::remove_file(&root)?;
        drop(KeyRing::open(dir.path())?);
        assert!(root.exists());
        // With one: refused, nothing made, the key file untouched.
        KeyRing::open(dir.path())?.create("orders", KeyState::Active, 1)?;
        let sealed = fs::read(dir.path().join("named/orders.key"))?;
        fs::remove_file(&root)?;
        let err = KeyRing::open(dir.path()).err();
        assert!(
            matches!(&err, Some(KmsError::MissingRootKey { count: 1, .. })),
            "{err:?}"
        );
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains(&root.display().to_string())
                && text.contains("is missing")
                && text.contains("restore root.key from a backup"),
            "{text}"
        );
        assert!(!root.exists(), "a new root key was made");
        assert_eq!(fs::read(dir.path().join("named/orders.key"))?, sealed);
        // A root key file of another length is named, not "malformed".
        fs::write(&root, b"short")?;
        let text = KeyRing::open(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains(&root.display().to_string()) && text.contains("32 bytes"),
            "{text}"
        );
        Ok(())
    }

    /// A change whose work (here its `f`; a file's write and sync alike)
    /// is slow holds up no reader: the key is read at once, as it was
    /// before the change, and counted. A second change waits for the first
    /// and starts from it, and the file holds them both. Before, the map
    /// was held for the whole change, so the read waited for it.
    #[test]
    fn a_slow_change_holds_up_no_reader_and_the_next_change_waits_for_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let ring = KeyRing::open(dir.path())?;
        ring.create("orders", KeyState::Active, 1)?;
        let latest = |ring: &KeyRing| ring.with_key("orders", |k| Ok(k.info().latest_version));
        let first_done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let ring = &ring;
            let (started_tx, started_rx) = std::sync::mpsc::channel();
            let first_done = &first_done;
            let first = scope.spawn(move || {
                ring.update("orders", |k| {
                    let _ = started_tx.send(());
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    first_done.store(true, std::sync::atomic::Ordering::Release);
                    k.rotate(2).map(|_| ())
                })
            });
            started_rx.recv_timeout(std::time::Duration::from_secs(10))?;
            let second = scope.spawn(|| ring.update("orders", |k| k.rotate(3).map(|_| ())));
            assert_eq!(latest(ring)?, 1);
            assert_eq!(ring.len(), 1);
            assert!(
                !first_done.load(std::sync::atomic::Ordering::Acquire),
                "the read waited for the change"
            );
            let (((), first), ((), second)) = (
                first.join().map_err(|_| "the first change panicked")??,
                second.join().map_err(|_| "the second change panicked")??,
            );
            assert_eq!((first.latest_version, second.latest_version), (2, 3));
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        assert_eq!(latest(&ring)?, 3);
        assert_eq!(latest(&KeyRing::open(dir.path())?)?, 3);
        Ok(())
    }

    #[test]
    fn duplicate_names_are_refused() -> Result<(), KmsError> {
        let dir = tempfile::tempdir()?;
        let ring = KeyRing::open(dir.path())?;
        ring.create("a", KeyState::PreActivation, 1)?;
        assert!(matches!(
            ring.create("a", KeyState::Active, 1),
            Err(KmsError::AlreadyExists)
        ));
        Ok(())
    }
}
