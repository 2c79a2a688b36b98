//! A store directory: the config file, the key file, the lock, the journal
//! and (for the embedded backend) the database.
//!
//! ```text
//! DIR/config.toml   format version, chunk size, wrapper, backend, key
//!                   source, and the key's check value
//! DIR/key           the store key (mode 0600), unless the config names
//!                   another key file, the key service or the share network
//! DIR/lock          held exclusively while a process has the store open
//!                   (not by a reader of a network store: see
//!                   [`StoreDir::open_for_reading`])
//! DIR/journal/      one file per large put in progress
//! DIR/db/           the embedded backend's database
//! DIR/last-copy     where `seccs copy` keeps this store as a mirror: when
//!                   the newest version of the store last copied into it
//!                   was put (see [`StoreDir::last_copy`])
//! ```
//! Credentials for network backends never go into the config: they come from
//! the environment or the backend's own credential files.
//!
//! A store directory (and a directory made for a key file elsewhere) is made
//! 0700 whatever the umask. An open refuses a store whose directory,
//! config.toml or key file (or the directory holding a key file elsewhere)
//! another user could change: writable by group or others, or owned by
//! another user than the one running, root (who can change anything anyway)
//! or the owner of the store directory (whom whoever opens the store
//! trusts already: a store read by another user, or by root through sudo).
//! Whoever could change them could swap in a key and a backend of their
//! own, and receive what is put next.
//!
//! The key's check value (16 bytes derived from the store key with HKDF under
//! a label of its own, so it tells nothing of the key or of any other subkey)
//! lets an open refuse a wrong key before anything is written with it: a
//! swapped key file, another KEK or another version of a shared key would
//! otherwise make every record read as tampered, and a put would add records
//! that no later open with the right key can read.
//!
//! Exactly (`HKDF` is `seccs_core::kdf`'s: HKDF-SHA-256, salt `seccs` unless
//! one is named; hex is lowercase):
//! ```text
//! DIR/key       "seccs-store-key-v1 " ‖ hex(store key, 32 bytes) ‖ "\n"
//! key_check     hex(HKDF(store key, "seccs/v1/store/key-check"), 16 bytes)
//! params_check  hex(first 16 bytes of HMAC-SHA-256(HKDF(store key, "seccs/v1/store/params-check"),
//!                   "chunk_size=" ‖ S ‖ "\nwrapper=" ‖ W ‖ "\n")), S in decimal, W the wrapper's name
//! key from KMS  HKDF(DEK, "seccs/v1/store/key-from-kms", salt = the 16 bytes of [key] salt),
//!               or the DEK itself for a store made before salts (no salt in config.toml)
//! key from share network  the 32-byte key of the "SCKF" key file saved as the tag's version 1
//!               (`seccs-net`'s keyfile module)
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use seccs_core::SecretKey;
use seccs_core::kdf::{self, Label};
use seccs_core::lockfile::DirLock;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::backend::{Backend, EmbeddedBackend};
use crate::descriptor::Descriptor;
use crate::error::{Result, StoreError};
use crate::params::Params;
use crate::store::Store;
use crate::wrapper::WrapperKind;

/// The file in a store directory that records the last copy into it.
const LAST_COPY_FILE: &str = "last-copy";

/// The config format this version writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The backend name of the embedded default.
pub const EMBEDDED: &str = "embedded";

const KEY_FILE_MAGIC: &str = "seccs-store-key-v1";
/// The HKDF label of a store key derived from a key-service DEK with the
/// store's salt; part of the format.
pub const KMS_STORE_KEY_LABEL: Label = Label::Custom("seccs/v1/store/key-from-kms");
/// The HKDF label of a store key's check value; part of the format.
const KEY_CHECK_LABEL: Label = Label::Custom("seccs/v1/store/key-check");
/// Bytes of a check value.
const KEY_CHECK_LEN: usize = 16;
/// The largest key file read (one line holds the magic and 64 hex digits).
const MAX_KEY_FILE: u64 = 4096;

/// What a store keeps in its directory besides config.toml, its key file
/// and its lock: the embedded database and the journal of puts in progress.
const STORE_DATA: [&str; 2] = ["db", "journal"];

/// The HKDF label of the key that authenticates a store's parameters in
/// config.toml; part of the format.
const PARAMS_CHECK_LABEL: Label = Label::Custom("seccs/v1/store/params-check");

/// The check value of the parameters every node of a store is made with
/// (its chunk size and wrapper), under the store key, in hex, as
/// config.toml records it: an HMAC, so that a changed `chunk_size` or
/// `wrapper` is said at open, not met as nodes that fail to authenticate.
/// Compression is left out: it may change (each leaf says how it is
/// stored), and so is the backend (a store may move).
pub fn params_check(key: &SecretKey, chunk_size: usize, wrapper: &str) -> String {
    params_checker(key).check(chunk_size, wrapper)
}

/// Computes [`params_check`] values under one key, for many parameters.
struct ParamsChecker(hmac::Hmac<sha2::Sha256>);

fn params_checker(key: &SecretKey) -> ParamsChecker {
    use hmac::KeyInit;
    let mac_key = kdf::derive(key, PARAMS_CHECK_LABEL);
    // Cannot fail: HMAC takes a key of any length.
    let mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(mac_key.expose_secret())
        .expect("HMAC takes any key length");
    ParamsChecker(mac)
}

impl ParamsChecker {
    fn tag(&self, chunk_size: usize, wrapper: &str) -> [u8; KEY_CHECK_LEN] {
        use hmac::Mac;
        let mut mac = self.0.clone();
        mac.update(format!("chunk_size={chunk_size}\nwrapper={wrapper}\n").as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; KEY_CHECK_LEN];
        out.copy_from_slice(&full[..KEY_CHECK_LEN]);
        out
    }

    fn check(&self, chunk_size: usize, wrapper: &str) -> String {
        seccs_core::hexenc::encode(&self.tag(chunk_size, wrapper))
    }

    /// The chunk size and wrapper whose check value is `recorded`, among
    /// every valid pair: what a store was made with, to say when its
    /// config.toml was changed.
    fn find(&self, recorded: &str) -> Option<(usize, &'static str)> {
        let recorded = seccs_core::hexenc::decode(recorded).ok()?;
        WrapperKind::ALL.iter().find_map(|wrapper| {
            (2..=crate::params::MAX_CHUNK_SIZE)
                .filter(|&s| Params::new(s, *wrapper).is_ok())
                .find(|&s| bool::from(self.tag(s, wrapper.name()).ct_eq(&recorded)))
                .map(|s| (s, wrapper.name()))
        })
    }
}

/// The check value of a store key, in hex, as config.toml records it.
pub fn key_check(key: &SecretKey) -> String {
    let mut out = [0u8; KEY_CHECK_LEN];
    kdf::derive_into(key, KEY_CHECK_LABEL, &mut out);
    seccs_core::hexenc::encode(&out)
}

/// Where a store's key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum KeySource {
    /// A key file on this machine.
    File {
        /// Its path; relative paths are relative to the store directory.
        path: PathBuf,
    },
    /// A DEK held by the key service, fetched with a KEK.
    Kms {
        /// The key service's URL.
        server: String,
        /// The file holding the KEK.
        kek_file: PathBuf,
        /// A CA certificate to trust, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca: Option<PathBuf>,
        /// A pinned SHA-256 certificate fingerprint, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pin: Option<String>,
        /// 16 random bytes (hex) the store key is derived with from the DEK
        /// ([`KMS_STORE_KEY_LABEL`]), so that stores made with one KEK get
        /// keys of their own; absent in stores made before, whose key is
        /// the DEK itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        salt: Option<String>,
    },
    /// A key file saved t-of-n on the share network.
    Share {
        /// The tag it is saved under.
        tag: String,
        /// The share client's config file.
        config: PathBuf,
    },
}

/// What left a store unfinished: the command whose making of it was
/// stopped (killed, or the machine lost power) before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unfinished {
    /// `seccs init` (or a command that makes a default store first).
    Init,
    /// `seccs copy`, making its DEST.
    Copy,
}

impl Unfinished {
    /// The command to run again, for messages.
    pub fn command(self) -> &'static str {
        match self {
            Unfinished::Init => "seccs init",
            Unfinished::Copy => "seccs copy",
        }
    }
}

/// The contents of `config.toml`. Its `Debug` shows the backend URL
/// without a password, should one have been put there by hand.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Set while the store is being made: config.toml is written first,
    /// marked so, and rewritten without the mark once everything else
    /// (the key file, the share-network key, the backend marker, the
    /// embedded database) is made; that rewrite is the store's commit
    /// point. Every open refuses a store so marked, and the next init (or
    /// copy) there removes what the stopped one made and makes it afresh.
    /// A seccs from before the mark refuses the field as unknown, so it
    /// never opens such a store as a finished one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfinished: Option<Unfinished>,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// Chunk size S.
    pub chunk_size: usize,
    /// The crypto wrapper's name.
    pub wrapper: String,
    /// `embedded`, or a backend URL without credentials.
    pub backend: String,
    /// Leaf compression: `none` or `zstd:LEVEL`.
    pub compression: String,
    /// Where the key comes from.
    pub key: KeySource,
    /// The key's check value ([`key_check`]); absent in stores made before
    /// check values, which get one at their first open with the right key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_check: Option<String>,
    /// The check value of `chunk_size` and `wrapper` ([`params_check`]);
    /// absent in stores made before it, which get one from their first
    /// clean verify ([`StoreDir::confirm_params`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_check: Option<String>,
    /// Whether the backend was given this store's marker (see
    /// [`StoreDir::check_backend_marker`]): from then on, a backend without
    /// it has lost the store's data rather than never held any.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backend_marked: bool,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("unfinished", &self.unfinished)
            .field("format_version", &self.format_version)
            .field("chunk_size", &self.chunk_size)
            .field("wrapper", &self.wrapper)
            .field("backend", &seccs_core::redact::url_password(&self.backend))
            .field("compression", &self.compression)
            .field("key", &self.key)
            .field("key_check", &self.key_check)
            .field("params_check", &self.params_check)
            .field("backend_marked", &self.backend_marked)
            .finish()
    }
}

/// Refuses a backend URL that holds a password for the config.toml of the
/// store at `path`: that file is readable by all (mode 0644), and the
/// credentials of a network backend come from the environment.
fn check_no_password(path: &Path, backend: &str) -> Result<()> {
    let without = seccs_core::redact::url_password(backend);
    if without == backend {
        return Ok(());
    }
    Err(StoreError::Config(format!(
        "{}: the backend URL {without} holds a password, and credentials never go into a \
         store's config (readable by all): record the URL without it and give the password in \
         the environment (REDIS_PASSWORD, PGPASSWORD)",
        path.join("config.toml").display()
    )))
}

impl StoreConfig {
    /// A config for a new store with a key file.
    pub fn new(params: Params, backend: String, key: KeySource) -> Self {
        Self {
            unfinished: None,
            format_version: FORMAT_VERSION,
            chunk_size: params.chunk_size(),
            wrapper: params.wrapper().name().to_owned(),
            backend,
            compression: params.compression().to_string(),
            key,
            key_check: None,
            params_check: None,
            backend_marked: false,
        }
    }

    /// This config with `key`'s check value recorded, and that of its
    /// parameters under `key`.
    pub fn with_key_check(mut self, key: &SecretKey) -> Self {
        self.key_check = Some(key_check(key));
        self.params_check = Some(params_check(key, self.chunk_size, &self.wrapper));
        self
    }

    /// Whether this config is that of a store made with the settings of
    /// `new` (a config [`StoreConfig::new`] gave): the same parameters,
    /// backend and key source. What is recorded after (check values, the
    /// backend's marker, the unfinished mark) is not compared: a stopped
    /// init had written only some of it.
    pub fn made_with(&self, new: &StoreConfig) -> bool {
        // Named one by one, so that a field added later is a choice here.
        let StoreConfig {
            unfinished: _,
            format_version: _,
            chunk_size,
            wrapper,
            backend,
            compression,
            key,
            key_check: _,
            params_check: _,
            backend_marked: _,
        } = new;
        self.chunk_size == *chunk_size
            && self.wrapper == *wrapper
            && self.backend == *backend
            && self.compression == *compression
            && self.key == *key
    }

    /// This config marked as the config of a store being made by `by`
    /// (see [`StoreConfig::unfinished`]).
    pub fn unfinished_by(mut self, by: Unfinished) -> Self {
        self.unfinished = Some(by);
        self
    }

    /// The store parameters, validated.
    pub fn params(&self) -> Result<Params> {
        self.params_in(Path::new("config.toml"))
    }

    /// What the store's backend keeps of this config
    /// ([`crate::descriptor`]): its parameters, and the key-service salt
    /// of a store keyed by the key service with one.
    pub fn descriptor(&self) -> Result<Descriptor> {
        let kms_salt = match &self.key {
            KeySource::Kms {
                salt: Some(salt), ..
            } => Some(
                seccs_core::hexenc::decode(salt)
                    .ok()
                    .and_then(|salt| salt.try_into().ok())
                    .ok_or_else(|| {
                        StoreError::Config(
                            "config.toml: [key] salt is not 32 hex digits".to_owned(),
                        )
                    })?,
            ),
            _ => None,
        };
        Ok(Descriptor {
            params: self.params()?,
            kms_salt,
        })
    }

    /// The store parameters, validated; an error names `file` (the
    /// config.toml they were read from) and the field.
    fn params_in(&self, file: &Path) -> Result<Params> {
        let field = |name: &str, e: &dyn std::fmt::Display| {
            StoreError::Config(format!("{}: {name}: {e}", file.display()))
        };
        let wrapper: WrapperKind = self.wrapper.parse().map_err(|e| field("wrapper", &e))?;
        let compression = self
            .compression
            .parse()
            .map_err(|e| field("compression", &e))?;
        Ok(Params::new(self.chunk_size, wrapper)
            .map_err(|e| field("chunk_size", &e))?
            .with_compression(compression))
    }
}

/// An open store directory; holds the lock until dropped, and so does
/// each [`Store`] opened from it ([`StoreDir::open_store`]): a store
/// outliving its directory handle keeps other processes out. A handle
/// from [`StoreDir::open_for_reading`] on a network store holds no lock
/// and writes nothing.
#[derive(Debug)]
pub struct StoreDir {
    path: PathBuf,
    config: StoreConfig,
    /// Made by this handle: its embedded database does not exist yet.
    created: bool,
    /// The check value of the parameters of a store made before parameter
    /// checks, as they are now, to record once they are confirmed.
    unconfirmed_params_check: Option<String>,
    /// The directory's lock; `None` for a reader of a network store, which
    /// writes nothing to the directory or the backend.
    lock: Option<Arc<DirLock>>,
}

impl StoreDir {
    /// A handle on an existing store's directory (not one this process
    /// made) whose lock it holds.
    fn held(path: &Path, config: StoreConfig, lock: DirLock) -> Self {
        Self {
            path: path.to_owned(),
            config,
            created: false,
            unconfirmed_params_check: None,
            lock: Some(Arc::new(lock)),
        }
    }

    /// Whether `path` holds a store (that this user can see: one in a
    /// directory they may not look into is not said to be there, and
    /// [`StoreDir::check_new`] refuses to make one over it).
    pub fn exists(path: &Path) -> bool {
        matches!(config_is_file(path), Ok(true))
    }

    /// Refuses `path` for a new store if it holds a store, or the data of
    /// one that lost its config.toml: its embedded database or its journal
    /// of puts in progress. A new store would open that database as its
    /// own, read every record in it as tampered under its own key, and its
    /// `gc` would delete them. Empty directories hold nothing and are taken.
    pub fn check_new(path: &Path) -> Result<()> {
        match config_is_file(path) {
            Ok(true) => {
                return Err(StoreError::Config(format!(
                    "{} already holds a store",
                    path.display()
                )));
            }
            Ok(false) => {}
            // What is there cannot be seen, so nothing is made over it (a
            // store of another user, or a directory that may hold one).
            Err(e) => {
                return Err(StoreError::Config(match e.kind() {
                    std::io::ErrorKind::PermissionDenied => cannot_look_into(path),
                    _ => format!("cannot make a store at {}: {e}", path.display()),
                }));
            }
        }
        // A directory there already is used as it is: refused now, before
        // anything (a key, a backend) is made for a store no open would take.
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => check_guarded(path, &meta, Guarded::StoreDir, None)?,
            _ => {}
        }
        for name in STORE_DATA {
            let data = path.join(name);
            let holds_data = match data.symlink_metadata() {
                // A path through a file holds no store: making the store
                // there fails next, naming what is not a directory.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    false
                }
                Err(e) => return Err(io_err(&data, e)),
                Ok(meta) if meta.is_dir() => fs::read_dir(&data)
                    .map_err(|e| io_err(&data, e))?
                    .next()
                    .is_some(),
                Ok(_) => true,
            };
            if holds_data {
                return Err(StoreError::Config(format!(
                    "{} holds another store's data ({}) but no config.toml: a new store there \
                     would take that data for its own and delete it. Put that store's \
                     config.toml back to open it (with it lost, `seccs init --attach` with the \
                     store's key opens it again), or move {} away to make a new store; \
                     nothing was changed",
                    path.display(),
                    data.display(),
                    data.display()
                )));
            }
        }
        Ok(())
    }

    /// Creates a store directory with `config`. Refuses a directory that
    /// already holds a store, or another store's data
    /// ([`StoreDir::check_new`]), and a backend URL that holds a password
    /// (credentials never go into the config: pass the URL through
    /// `seccs_backends::redact` or without its password).
    pub fn create(path: &Path, config: StoreConfig) -> Result<Self> {
        check_no_password(path, &config.backend)?;
        Self::check_new(path)?;
        config.params()?;
        create_private_dir_all(path)?;
        let lock = lock(path)?;
        // Again under the lock: a store opened meanwhile may have written.
        Self::check_new(path)?;
        let dir = Self {
            path: path.to_owned(),
            config,
            created: true,
            unconfirmed_params_check: None,
            lock: Some(Arc::new(lock)),
        };
        dir.write_config()?;
        Ok(dir)
    }

    /// The command that was making the store at `path` when it was stopped,
    /// if config.toml there says it is unfinished; `None` when there is
    /// no store, a finished one, or one whose config cannot be read (an
    /// open says why).
    pub fn unfinished(path: &Path) -> Option<Unfinished> {
        Self::unfinished_config(path).and_then(|config| config.unfinished)
    }

    /// The config.toml of the store at `path` if it says the store is
    /// unfinished (see [`StoreDir::unfinished`]): what the stopped command
    /// was making.
    pub fn unfinished_config(path: &Path) -> Option<StoreConfig> {
        if !Self::exists(path) {
            return None;
        }
        let owner = Self::check_is_store(path).ok()?;
        read_config(path, owner)
            .ok()
            .filter(|config| config.unfinished.is_some())
    }

    /// Opens the unfinished store at `path` (see [`StoreConfig::unfinished`]),
    /// taking its lock, to remove what the stopped command made: refused
    /// with [`BackendError::Locked`](crate::backend::BackendError::Locked)
    /// while a command holds it (the init still running), and when the
    /// store is finished.
    pub fn open_unfinished(path: &Path) -> Result<Self> {
        let owner = Self::check_is_store(path)?;
        let lock = lock(path)?;
        let config = read_config(path, owner)?;
        if config.unfinished.is_none() {
            return Err(StoreError::Config(format!(
                "{} already holds a store",
                path.display()
            )));
        }
        Ok(Self::held(path, config, lock))
    }

    /// Takes `path` as a new directory for an existing store whose own
    /// directory was lost (`seccs init --attach`), with `config` for it:
    /// makes the directory if it is missing and takes its lock, but writes
    /// no config.toml: [`StoreDir::keep_attached`] writes it once the key
    /// has opened the store ([`StoreDir::open_store`], which refuses a
    /// wrong key writing nothing, and, where `config` holds no check value,
    /// records that of a key it proved by the store's records). A caller
    /// whose later step fails removes config.toml (still holding the
    /// handle, and so the lock), to leave the directory as it was. Refuses a directory
    /// that holds config.toml. A store on the embedded backend must have
    /// its database in `path/db`; one on a network backend is refused
    /// where `path` holds another store's data ([`StoreDir::check_new`]).
    /// The handle opens the database as an existing one, never a new one.
    pub fn attach(path: &Path, config: StoreConfig) -> Result<Self> {
        check_no_password(path, &config.backend)?;
        config.params()?;
        let check = |path: &Path| -> Result<()> {
            if config.backend != EMBEDDED {
                return Self::check_new(path);
            }
            match config_is_file(path) {
                Ok(false) => {}
                Ok(true) => {
                    return Err(StoreError::Config(format!(
                        "{} already holds a store (its config.toml): nothing to attach",
                        path.display()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(StoreError::Config(cannot_look_into(path)));
                }
                Err(e) => return Err(io_err(&path.join("config.toml"), e)),
            }
            let db = path.join("db");
            if !db.is_dir() {
                return Err(StoreError::Config(format!(
                    "{} holds no database: nothing to attach to (an embedded store keeps its \
                     data in DIR/db: put the store's kept db/ directory there)",
                    db.display()
                )));
            }
            let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
            check_guarded(path, &meta, Guarded::StoreDir, None)
        };
        check(path)?;
        create_private_dir_all(path)?;
        let lock = lock(path)?;
        // Again under the lock: an init may have made a store meanwhile.
        check(path)?;
        Ok(Self::held(path, config, lock))
    }

    /// Marks the store this handle made finished: config.toml is rewritten
    /// (atomically) without [`StoreConfig::unfinished`], the commit point
    /// of its making.
    pub fn finish(&mut self) -> Result<()> {
        self.config.unfinished = None;
        self.write_config()
    }

    /// Removes the key file an unfinished store's config names, if it
    /// holds the key whose check value the config records (the key the
    /// stopped command wrote); returns its path if it removed it. A key
    /// file that is missing, another key or not a key file is left, and
    /// the new store's init refuses to overwrite it.
    pub fn remove_unfinished_key_file(&self) -> Result<Option<PathBuf>> {
        self.check_unfinished()?;
        let KeySource::File { path } = &self.config.key else {
            return Ok(None);
        };
        let key_path = self.resolve(path);
        if key_path.symlink_metadata().is_err() {
            return Ok(None);
        }
        let Ok(key) = read_store_key_file(&key_path, &self.path) else {
            return Ok(None);
        };
        let recorded = self.config.key_check.as_deref().unwrap_or_default();
        if !bool::from(recorded.as_bytes().ct_eq(key_check(&key).as_bytes())) {
            return Ok(None);
        }
        fs::remove_file(&key_path).map_err(|e| io_err(&key_path, e))?;
        sync_parent(&key_path);
        Ok(Some(key_path))
    }

    /// Removes the embedded database of an unfinished store, if it holds
    /// no entry; returns whether there was one to remove. One that holds
    /// entries is refused: it is data, whatever config.toml says. One that
    /// cannot be opened is removed: it was begun by the stopped command
    /// after config.toml marked the store unfinished, and no command writes
    /// to an unfinished store.
    pub fn remove_unfinished_db(&self) -> Result<bool> {
        self.check_unfinished()?;
        let db = self.path.join("db");
        if self.config.backend != EMBEDDED || db.symlink_metadata().is_err() {
            return Ok(false);
        }
        if let Ok(backend) = EmbeddedBackend::open_existing(&db) {
            let entries = backend.usage()?.entries;
            drop(backend);
            if entries > 0 {
                return Err(StoreError::Config(format!(
                    "{} holds a store whose init was stopped before it finished, but its \
                     database {} holds {entries} entries: not removing it. Move {} away (or \
                     keep it, if it is data you need) and run init again; nothing was changed",
                    self.path.display(),
                    db.display(),
                    db.display()
                )));
            }
        }
        fs::remove_dir_all(&db).map_err(|e| io_err(&db, e))?;
        sync_parent(&db);
        Ok(true)
    }

    /// Removes config.toml of an unfinished store, once what the stopped
    /// command made is removed ([`StoreDir::remove_unfinished_key_file`],
    /// [`StoreDir::remove_unfinished_db`], the backend marker): the
    /// directory is then a place a new store can be made.
    pub fn discard_unfinished(self) -> Result<()> {
        self.check_unfinished()?;
        let config = self.path.join("config.toml");
        fs::remove_file(&config).map_err(|e| io_err(&config, e))?;
        sync_parent(&config);
        Ok(())
    }

    /// Fails unless this handle holds an unfinished store's lock.
    fn check_unfinished(&self) -> Result<()> {
        match (&self.lock, self.config.unfinished) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err(StoreError::Config(format!(
                "{} is not an unfinished store held by this process",
                self.path.display()
            ))),
        }
    }

    /// Writes the config.toml of a directory made by [`StoreDir::attach`]
    /// (atomically), once its store opened with the key.
    pub fn keep_attached(&self) -> Result<()> {
        self.write_config()
    }

    /// Where this store is a mirror kept by `seccs copy`: when the newest
    /// version of the store last copied into it whole was put (seconds
    /// since the Unix epoch), read from `DIR/last-copy`
    /// (`source_newest = N`, one line); `None` where no copy recorded
    /// one. A version of this store put later, that the store copied
    /// does not hold, was put into the mirror itself, which a copy does
    /// not remove unasked.
    pub fn last_copy(&self) -> Result<Option<u64>> {
        let path = self.path.join(LAST_COPY_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        text.trim_end_matches('\n')
            .strip_prefix("source_newest = ")
            .and_then(|n| n.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                StoreError::Config(format!(
                    "{}: not a record of a copy (`source_newest = N` expected); remove it to \
                     have the next `seccs copy` into this store write it afresh",
                    path.display()
                ))
            })
    }

    /// Records, in `DIR/last-copy`, when the newest version of a store
    /// copied whole into this one was put (see [`StoreDir::last_copy`]).
    pub fn record_last_copy(&self, source_newest: u64) -> Result<()> {
        write_atomic(
            &self.path.join(LAST_COPY_FILE),
            format!("source_newest = {source_newest}\n").as_bytes(),
            0o600,
            Replace::Allowed,
        )
    }

    /// Checks that `backend` holds this store's data, where the backend
    /// keeps a store marker ([`Backend::keeps_marker`]: PostgreSQL, Redis,
    /// S3): the marker is `key`'s check value as text, the 32 lowercase hex
    /// characters of [`key_check`] that config.toml's `key_check` holds,
    /// written when the store is made (or, for a store made before markers,
    /// at its first open by a writer). A backend with
    /// another store's marker, or with none once this store marked it (its
    /// server lost everything, or the URL now names another database), is
    /// refused before anything is read or written, rather than taken for an
    /// empty store.
    pub fn check_backend_marker(&mut self, backend: &dyn Backend, key: &SecretKey) -> Result<()> {
        self.check_or_write_marker(backend, key, true)
    }

    /// [`StoreDir::check_backend_marker`], writing a missing marker only
    /// with `may_write`: a key not proven the store's marks nothing, since
    /// the marker would then prove it to a later open.
    fn check_or_write_marker(
        &mut self,
        backend: &dyn Backend,
        key: &SecretKey,
        may_write: bool,
    ) -> Result<()> {
        if !backend.keeps_marker() {
            return Ok(());
        }
        let ours = key_check(key);
        match backend.read_marker()? {
            Some(found) => {
                if bool::from(found.as_slice().ct_eq(ours.as_bytes())) {
                    backend.guard_writes_with_marker(ours.as_bytes());
                    // A config.toml that does not know its backend was
                    // marked (rebuilt by hand after the store directory
                    // was lost, or restored from before the marker)
                    // learns it, so that a server that loses the store
                    // later is said to have lost it, not read as empty.
                    if !self.config.backend_marked && !self.is_reader() {
                        self.config.backend_marked = true;
                        self.write_config()?;
                    }
                    Ok(())
                } else {
                    Err(StoreError::Config(format!(
                        "the {} backend of the store at {} holds another store's data (its \
                         marker is not this store's): two stores on one table or prefix?",
                        backend.name(),
                        self.path.display()
                    )))
                }
            }
            None if self.config.backend_marked && backend.usage()?.entries > 0 => {
                Err(StoreError::Config(format!(
                    "the {} backend of the store at {} holds entries but not this store's marker: \
                     either something removed the marker alone, or the backend lost the store's \
                     data (emptied, or restarted without persistence) while a command was \
                     writing, and holds only what that command wrote afterwards; or config.toml's \
                     backend URL names another table or prefix than the store's own (a prefix \
                     that starts another store's reads that store's entries). Check the URL \
                     first. Only if you know the marker alone went, delete the line \
                     `backend_marked = true` from config.toml and run `seccs verify`, which \
                     marks it again; otherwise what was stored before is gone. Nothing was \
                     changed",
                    backend.name(),
                    self.path.display()
                )))
            }
            None if self.config.backend_marked => Err(StoreError::Config(format!(
                "the {} backend of the store at {} holds none of this store's data, though it \
                 did: its server lost it (restarted without persistence, its table \
                 truncated, its bucket emptied?), or the URL now names another database or prefix; nothing was changed",
                backend.name(),
                self.path.display()
            ))),
            // Marked by the next writer: a reader writes nothing, and nor
            // does a key not proven the store's.
            None if self.is_reader() || !may_write => Ok(()),
            None => {
                // Never a marker inside another store's prefix (a URL in
                // config.toml that lost a prefix's last character): it
                // would make a nested store of this config's, which every
                // command of the other store then warns of.
                if let Some(other) = backend.nested_stores()?.first() {
                    return Err(StoreError::Config(format!(
                        "the {} backend of the store at {} nests with {other}, and holds no \
                         marker of this store: config.toml's backend URL most likely names a \
                         table or prefix that is not the store's own (`photos` for `photos:`). \
                         Nothing was changed",
                        backend.name(),
                        self.path.display()
                    )));
                }
                backend.write_marker(ours.as_bytes())?;
                backend.guard_writes_with_marker(ours.as_bytes());
                self.config.backend_marked = true;
                self.write_config()
            }
        }
    }

    /// Holds parameters not yet confirmed (a store attached with the
    /// parameters given, or made before parameter checks) against the
    /// descriptor the backend keeps, once the key authenticates it: refused
    /// where the chunk size or wrapper differ, since every node written
    /// with them would be another store's; confirmed (recorded, by a
    /// writer) where they agree. A descriptor that does not read as one or
    /// does not authenticate confirms and refuses nothing.
    fn check_params_against_descriptor(
        &mut self,
        held: Option<&[u8]>,
        key: &SecretKey,
    ) -> Result<()> {
        let Some(bytes) = held else {
            return Ok(());
        };
        let Ok(recorded) = Descriptor::parse(bytes).and_then(|read| read.verify(key)) else {
            return Ok(());
        };
        let (ours, theirs) = (self.config.params()?, recorded.params);
        if (ours.chunk_size(), ours.wrapper()) != (theirs.chunk_size(), theirs.wrapper()) {
            return Err(StoreError::Config(format!(
                "{} holds chunk_size = {} and wrapper = {:?}, which are not what the store was \
                 made with: its backend's descriptor, authenticated by the key, records \
                 chunk_size = {} and wrapper = {:?}. Every node is made with them: put those \
                 values in config.toml, or attach the store again without giving them. Nothing \
                 was written",
                self.path.join("config.toml").display(),
                ours.chunk_size(),
                ours.wrapper().name(),
                theirs.chunk_size(),
                theirs.wrapper().name()
            )));
        }
        if !self.is_reader() {
            self.config.params_check =
                Some(params_check(key, ours.chunk_size(), &self.config.wrapper));
            self.unconfirmed_params_check = None;
            self.write_config()?;
        }
        Ok(())
    }

    /// Writes the store's descriptor ([`crate::descriptor`]) to a backend
    /// that keeps one, where it holds none (a store just made, one made
    /// before descriptors, or one attached before its parameters were
    /// confirmed) or another (changed on the backend): one read on every
    /// writer's open, and a write only then. For `init`, once the key is
    /// the store's and its parameters are recorded; every later open by a
    /// writer whose key is proven and parameters confirmed does it too.
    pub fn keep_backend_descriptor(&self, backend: &dyn Backend, key: &SecretKey) -> Result<()> {
        if self.config.params_check.is_none() {
            return Err(StoreError::Config(
                "a store's descriptor is kept only once its parameters are confirmed".to_owned(),
            ));
        }
        if !backend.keeps_descriptor() {
            return Ok(());
        }
        self.write_descriptor_unless_held(backend, backend.read_descriptor()?.as_deref(), key)
    }

    /// Writes this store's descriptor unless `held` (what the backend
    /// holds) is it already.
    fn write_descriptor_unless_held(
        &self,
        backend: &dyn Backend,
        held: Option<&[u8]>,
        key: &SecretKey,
    ) -> Result<()> {
        let sealed = self.config.descriptor()?.seal(key);
        if held != Some(sealed.as_slice()) {
            backend.write_descriptor(&sealed)?;
        }
        Ok(())
    }

    /// Writes config.toml from the config held (atomically); never from a
    /// reader's handle, which holds no lock.
    fn write_config(&self) -> Result<()> {
        if self.is_reader() {
            return Err(StoreError::Config(format!(
                "{} was opened for reading: its config is not written",
                self.path.display()
            )));
        }
        check_no_password(&self.path, &self.config.backend)?;
        let text = toml::to_string(&self.config)
            .map_err(|e| StoreError::Config(format!("cannot write config: {e}")))?;
        write_atomic(
            &self.path.join("config.toml"),
            text.as_bytes(),
            0o644,
            Replace::Allowed,
        )
    }

    /// Opens an existing store directory, taking its lock.
    pub fn open(path: &Path) -> Result<Self> {
        let owner = Self::check_is_store(path)?;
        let lock = lock(path)?;
        let config = read_config(path, owner)?;
        if let Some(by) = config.unfinished {
            return Err(unfinished_store(path, by));
        }
        Ok(Self::held(path, config, lock))
    }

    /// Opens an existing store directory for a command that only reads
    /// (a get, a listing): a store on the embedded backend exactly as
    /// [`StoreDir::open`] opens it (its lock taken: one process at a time),
    /// a network store without taking the lock, so that readers run beside
    /// a writer, on this machine or another. Such a handle never writes:
    /// [`StoreDir::open_store`] then neither records check values, nor
    /// marks the backend, nor cleans up after an interrupted put (the
    /// next writer does), and the store it opens writes nothing either.
    ///
    /// That is safe because nothing in a network store's directory is
    /// changed in place: config.toml is replaced whole (renamed over), the
    /// key file is never rewritten, and the journal and the lock are
    /// writers' alone. Writers on other machines never held this lock
    /// anyway.
    pub fn open_for_reading(path: &Path) -> Result<Self> {
        let owner = Self::check_is_store(path)?;
        let config = read_config(path, owner)?;
        if let Some(by) = config.unfinished {
            // Being made now (its lock held) is said as a store in use,
            // as a writer's open says it.
            drop(lock(path)?);
            return Err(unfinished_store(path, by));
        }
        if config.backend == EMBEDDED {
            // The lock, and the database's own lock and journal, are
            // written even to read: a directory that cannot be written
            // (a read-only mount) cannot be read in place.
            return Self::open(path).map_err(|e| match e {
                StoreError::Config(said) if Self::cannot_write(path) => {
                    StoreError::Config(format!(
                        "{said}: an embedded store needs a directory it can write even to be \
                         read (its lock and its database's journal are written when it is \
                         opened); copy the store to a writable place (`cp -a {} COPY`) and \
                         read the copy",
                        path.display()
                    ))
                }
                other => other,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            config,
            created: false,
            unconfirmed_params_check: None,
            lock: None,
        })
    }

    /// Whether the lock of the store at `path` cannot be opened for
    /// writing: a read-only file system, or a lock this user may not write.
    fn cannot_write(path: &Path) -> bool {
        let mut options = std::fs::OpenOptions::new();
        // Made as the lock is, if it is missing: only an open that fails
        // asks.
        options.write(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(path.join("lock")).is_err_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            )
        })
    }

    /// Whether this handle was opened by [`StoreDir::open_for_reading`]
    /// on a network store: it holds no lock and writes nothing.
    pub fn is_reader(&self) -> bool {
        self.lock.is_none()
    }

    /// Fails unless `path` is a directory holding config.toml, that no
    /// other user can change ([`check_guarded`]; config.toml is checked as
    /// it is read).
    fn check_is_store(path: &Path) -> Result<Option<u32>> {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Config(format!(
                    "no store at {} (create one with `seccs init`)",
                    path.display()
                )));
            }
            Err(e) => return Err(io_err(path, e)),
        };
        if meta.is_dir() {
            check_guarded(path, &meta, Guarded::StoreDir, None)?;
        } else {
            let what = match meta.is_file() {
                true => "a file",
                false => "neither a directory nor a file",
            };
            return Err(StoreError::Config(format!(
                "{} is {what}, not a store directory",
                path.display()
            )));
        }
        match config_is_file(path) {
            Ok(true) => Ok(owner(&meta)),
            Ok(false) => Err(StoreError::Config(format!(
                "{} is not a store: config.toml is missing",
                path.display()
            ))),
            // A store the user may not read is theirs to be told of as
            // such, not as no store at all.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(StoreError::Config(cannot_look_into(path)))
            }
            Err(e) => Err(io_err(&path.join("config.toml"), e)),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Resolves a path from the config against the store directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.path.join(p)
        }
    }

    /// Opens the embedded backend in `DIR/db`: creates it for a store this
    /// handle made, and otherwise refuses a database that is missing or lost
    /// its data (see [`EmbeddedBackend::open_existing`]).
    pub fn open_embedded(&self) -> Result<Arc<dyn Backend>> {
        let db = self.path.join("db");
        let backend = if self.created {
            EmbeddedBackend::open(&db)?
        } else {
            EmbeddedBackend::open_existing(&db)?
        };
        Ok(Arc::new(backend))
    }

    /// Refuses a key whose check value differs from the one recorded
    /// ([`StoreError::WrongKey`]), without touching the backend: callers
    /// check this before they open it. A store without a recorded value is
    /// checked by [`StoreDir::open_store`] against its data.
    pub fn check_key(&self, key: &SecretKey) -> Result<()> {
        match &self.config.key_check {
            Some(recorded) if !bool::from(recorded.as_bytes().ct_eq(key_check(key).as_bytes())) => {
                Err(StoreError::WrongKey(format!(
                    "the key given is not the key of the store at {} (its check value differs \
                     from the one recorded when the store was made); nothing was read or written \
                     with it",
                    self.path.display()
                )))
            }
            // The parameters are checked only under a key known to be the
            // store's: under another, every pair would look changed.
            Some(_) => self.check_params(key),
            None => Ok(()),
        }
    }

    /// Refuses a config.toml whose `chunk_size` or `wrapper` is not what
    /// the store was made with (by its recorded [`params_check`]), saying
    /// what it was made with.
    fn check_params(&self, key: &SecretKey) -> Result<()> {
        let Some(recorded) = &self.config.params_check else {
            return Ok(());
        };
        let checker = params_checker(key);
        let (chunk_size, wrapper) = (self.config.chunk_size, &self.config.wrapper);
        if bool::from(
            recorded
                .as_bytes()
                .ct_eq(checker.check(chunk_size, wrapper).as_bytes()),
        ) {
            return Ok(());
        }
        let made_with = match checker.find(recorded) {
            Some((s, w)) => format!("it was made with chunk_size = {s} and wrapper = {w:?}"),
            None => "its params_check matches no valid pair".to_owned(),
        };
        Err(StoreError::Config(format!(
            "{} holds chunk_size = {chunk_size} and wrapper = {wrapper:?}, which are not what \
             the store was made with: {made_with}. Every node is made with them, so they \
             cannot change after init; put the values back. Nothing was read or written",
            self.path.join("config.toml").display()
        )))
    }

    /// Records the check value of `chunk_size` and `wrapper` in a store made
    /// before parameter checks, opened with [`StoreDir::open_store`]: call
    /// it once a clean [`Store::verify`] has read every node with them.
    /// Returns whether it recorded one.
    pub fn confirm_params(&mut self) -> Result<bool> {
        match self.unconfirmed_params_check.take() {
            Some(check) if self.config.params_check.is_none() => {
                self.config.params_check = Some(check);
                self.write_config()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Builds the store over `backend` with `key`, and cleans up after a put
    /// that a crash interrupted. Refuses a key that is not the store's
    /// ([`StoreError::WrongKey`]) before anything is written: by its check
    /// value, or, in a store made before check values, by whether it opens
    /// the store's catalog records (or, without names, a few of its nodes);
    /// such a store gets the check value of the key that opens them all, or
    /// of the first key while it holds nothing. A key that opens some of
    /// its records but not others opens it, unproven
    /// ([`Store::key_checked`] is false): nothing is recorded, and gc
    /// leaves the records it does not open, which may be the store's own.
    ///
    /// From a reader's handle ([`StoreDir::open_for_reading`] on a network
    /// store) nothing is recorded, marked or cleaned up, and the store
    /// returned refuses every write.
    pub fn open_store(&mut self, backend: Arc<dyn Backend>, key: &SecretKey) -> Result<Store> {
        self.open_store_checked(backend, key)
    }

    /// Opens the store as a reader's handle does ([`StoreDir::open_store`]
    /// from [`StoreDir::open_for_reading`] on a network store), whatever
    /// this handle is: the key checked, the backend's marker checked if
    /// there is one, nothing recorded, marked or cleaned up (a put a crash
    /// interrupted is left for the next writer), and the store returned
    /// refuses every write. For a look at a store that must be left exactly
    /// as it was (`seccs copy --dry-run` at its destination), an embedded
    /// one included, whose handle holds the directory's lock.
    pub fn open_store_to_inspect(
        &mut self,
        backend: Arc<dyn Backend>,
        key: &SecretKey,
    ) -> Result<Store> {
        // Without its lock the handle is a reader's; the lock is kept.
        let lock = self.lock.take();
        let opened = self.open_store_checked(backend, key);
        self.lock = lock;
        opened
    }

    fn open_store_checked(&mut self, backend: Arc<dyn Backend>, key: &SecretKey) -> Result<Store> {
        let backend: Arc<dyn Backend> = match self.is_reader() {
            true => Arc::new(crate::backend::ReadOnly(backend)),
            false => backend,
        };
        let mut store = Store::new_unchecked(backend, self.config.params()?, key);
        self.check_key(key)?;
        let mut proven = true;
        match &self.config.key_check {
            Some(_) => {}
            None => match store.key_opens_store()? {
                Some(false) => {
                    return Err(StoreError::WrongKey(format!(
                        "the key given opens none of the records or nodes of the store at {}; \
                         nothing was read or written with it",
                        self.path.display()
                    )));
                }
                // Some records open and others do not: they may be
                // another key's, this one a wrong key that once wrote
                // into the store's backend. Opened, but nothing recorded,
                // and gc leaves the records it does not open.
                Some(true) if !store.key_opens_every_record()? => proven = false,
                // Recorded by the next writer.
                Some(true) | None if self.is_reader() => {}
                // Confirmed, or nothing to confirm it by and nothing to
                // damage: recorded from now on.
                Some(true) | None => {
                    self.config.key_check = Some(key_check(key));
                    self.write_config()?;
                }
            },
        }
        if self.config.params_check.is_none() {
            // A store made before parameter checks: recorded only once a
            // clean verify confirms them (`confirm_params`), since they may
            // be the changed ones.
            self.unconfirmed_params_check = Some(params_check(
                key,
                self.config.chunk_size,
                &self.config.wrapper,
            ));
        }
        self.check_or_write_marker(store.backend(), key, proven)?;
        if store.backend().keeps_marker() && (proven || self.config.backend_marked) {
            // Read, or written now (a reader's store, which may find
            // none, writes nothing).
            store.mark_marker_read();
        }
        if proven {
            store.mark_key_checked();
        }
        // Read once: unconfirmed parameters are held against it, and a
        // writer whose parameters are (or now are) confirmed keeps it, so
        // that it holds nothing but the store's own.
        let backend = store.backend();
        let unconfirmed = self.config.params_check.is_none();
        if proven && backend.keeps_descriptor() && (unconfirmed || !self.is_reader()) {
            let held = backend.read_descriptor()?;
            if unconfirmed {
                self.check_params_against_descriptor(held.as_deref(), key)?;
            }
            if !self.is_reader() && self.config.params_check.is_some() {
                self.write_descriptor_unless_held(backend, held.as_deref(), key)?;
            }
        }
        let Some(lock) = &self.lock else {
            // A reader: the journal is the writers' (an entry may be a put
            // running now), and what an interrupted put left (nodes no
            // version holds) is never read.
            return Ok(store);
        };
        store.set_journal_dir(self.path.join("journal"));
        store.hold_dir_lock(Arc::clone(lock));
        if store.needs_recovery()? {
            store.recover()?;
        }
        Ok(store)
    }
}

/// Writes a new key file (mode 0600); refuses to overwrite one.
pub fn write_key_file(path: &Path, key: &SecretKey) -> Result<()> {
    // A link, even one to nothing, counts: the key goes nowhere but a new file.
    if path.symlink_metadata().is_ok() {
        return Err(StoreError::Config(format!(
            "key file {} already exists; not overwriting it",
            path.display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir_all(parent)?;
        // One there already: a key another user could replace is refused
        // now rather than at every open.
        let meta = fs::metadata(parent).map_err(|e| io_err(parent, e))?;
        check_guarded(parent, &meta, Guarded::KeyDir, None)?;
    }
    let text = zeroize::Zeroizing::new(format!(
        "{KEY_FILE_MAGIC} {}\n",
        seccs_core::hexenc::encode(key.expose_secret())
    ));
    // Checked again as the file takes its name: another `init` may have
    // made the file since the check above, and its key may already sit
    // in a store's config.
    write_atomic(path, text.as_bytes(), 0o600, Replace::Refused).map_err(|e| match e {
        StoreError::Config(_) if path.symlink_metadata().is_ok() => StoreError::Config(format!(
            "key file {} already exists; not overwriting it",
            path.display()
        )),
        other => other,
    })
}

/// Reads a key file written by [`write_key_file`]. Refuses one that
/// another user could replace or change: writable by group or others, owned
/// by another user (root excepted), or in a directory others can write
/// (unless its sticky bit keeps them from replacing the file). A key file
/// others can only read is read: see [`key_file_readable_by_others`].
pub fn read_key_file(path: &Path) -> Result<SecretKey> {
    read_key_file_trusting(path, None)
}

/// [`read_key_file`] for the store in `store_dir`: the key file, and the
/// directories it is reached through, may also belong to the owner of
/// the store directory (another user's store read by this one, or a
/// user's store read by root).
pub fn read_store_key_file(path: &Path, store_dir: &Path) -> Result<SecretKey> {
    read_key_file_trusting(path, owner_of(store_dir))
}

/// The owner of `path`, if it can be read.
fn owner_of(path: &Path) -> Option<u32> {
    fs::metadata(path).ok().and_then(|meta| owner(&meta))
}

/// The owner of what `meta` describes (on Unix).
fn owner(meta: &fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(meta.uid())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

fn read_key_file_trusting(path: &Path, store_owner: Option<u32>) -> Result<SecretKey> {
    use std::io::Read;
    let bad = || StoreError::Config(format!("{} is not a seccs key file", path.display()));
    // A key file is one short line: read no more than fits one, so that a
    // device or a wrong file is refused rather than read for ever.
    // Every open reads it again, so it must be a file: a FIFO would block
    // the open until something writes to it.
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(StoreError::Config(format!(
            "{} is not a regular file, so it cannot be a seccs key file",
            path.display()
        )));
    }
    check_key_dirs(path, store_owner)?;
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    // The file opened, not the path checked before: it may have been
    // replaced between the two.
    let meta = file.metadata().map_err(|e| io_err(path, e))?;
    check_guarded(path, &meta, Guarded::KeyFile, store_owner)?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, e))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(bad());
    }
    let text = zeroize::Zeroizing::new(String::from_utf8(bytes.to_vec()).map_err(|_| bad())?);
    let hex = text
        .trim_end()
        .strip_prefix(KEY_FILE_MAGIC)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(bad)?;
    let bytes = zeroize::Zeroizing::new(seccs_core::hexenc::decode(hex).map_err(|_| bad())?);
    SecretKey::from_slice(&bytes).map_err(|_| bad())
}

/// Checks the directories a key file is reached through: the one its path
/// names, and, when the path is a link, the one that holds the file.
fn check_key_dirs(path: &Path, store_owner: Option<u32>) -> Result<()> {
    let named = path.parent().filter(|p| !p.as_os_str().is_empty());
    let real = fs::canonicalize(path)
        .map_err(|e| io_err(path, e))?
        .parent()
        .map(Path::to_path_buf);
    for dir in [named.map(Path::to_path_buf), real].into_iter().flatten() {
        let meta = fs::metadata(&dir).map_err(|e| io_err(&dir, e))?;
        check_guarded(&dir, &meta, Guarded::KeyDir, store_owner)?;
    }
    Ok(())
}

/// The mode of the key file at `path` when group or others may read it
/// (a store shared read-only on purpose, or a copy that widened it), else
/// `None` (also when it cannot be checked): such a key is used, and the
/// caller should say so, since whoever reads it reads the store.
pub fn key_file_readable_by_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).ok()?.permissions().mode() & 0o7777;
        (mode & 0o044 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// What of a store [`check_guarded`] checks, for its message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guarded {
    StoreDir,
    Config,
    KeyFile,
    /// The directory holding a key file: its sticky bit keeps others from
    /// replacing a file they do not own (a key in /tmp).
    KeyDir,
}

impl Guarded {
    fn what(self) -> &'static str {
        match self {
            Guarded::StoreDir => "the store directory",
            Guarded::Config => "the store's config",
            Guarded::KeyFile => "the store's key file",
            Guarded::KeyDir => "the directory of the store's key file",
        }
    }

    /// What whoever may change it can do.
    fn risk(self) -> &'static str {
        match self {
            Guarded::StoreDir => {
                "could replace the store's key file and config.toml with their own"
            }
            Guarded::KeyDir => "could replace the store's key file with their own",
            Guarded::Config => "could point the store at a backend or key source of their own",
            Guarded::KeyFile => "could write their own key into it",
        }
    }
}

/// Refuses `path` (whose metadata is `meta`) when a user other than the
/// one running could change it: writable by group or others, or owned by
/// another user. Root is accepted as an owner, since it can change any file
/// anyway, and so is `store_owner`, the owner of the store directory, whom
/// whoever opens the store trusts (a store read by another user, or by
/// root); the store directory itself may have any owner. A directory
/// holding a key file may be writable by others if its sticky bit is set.
fn check_guarded(
    path: &Path,
    meta: &fs::Metadata,
    guarded: Guarded,
    store_owner: Option<u32>,
) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        let owner = meta.uid();
        let (what, shown) = (guarded.what(), path.display());
        // The store directory's owner is whom an open trusts: its own
        // owner is any user (the modes say who else could change it).
        let trusted =
            owner == me || owner == 0 || guarded == Guarded::StoreDir || store_owner == Some(owner);
        if !trusted {
            return Err(StoreError::Config(format!(
                "{what} {shown} is owned by another user (uid {owner}) than you, root or the \
                 store directory's owner, and that user {}: refusing to use it. If it holds \
                 what it should, give it to the store's owner (`chown {} {shown}`, as \
                 root{})",
                guarded.risk(),
                store_owner.unwrap_or(me),
                if meta.is_dir() { ", with -R" } else { "" }
            )));
        }
        let mode = meta.mode() & 0o7777;
        let sticky = guarded == Guarded::KeyDir && meta.is_dir() && mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            let by = match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            };
            let fix = match guarded {
                Guarded::StoreDir => format!("chmod -R go-w {shown}"),
                _ => format!("chmod go-w {shown}"),
            };
            return Err(StoreError::Config(format!(
                "{what} {shown} can be written by {by} (mode {mode:o}), who {}: refusing to use \
                 it. Fix it with `{fix}` (and check that what it holds is still yours)",
                guarded.risk()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta, guarded, store_owner);
    Ok(())
}

/// Creates `path` and any missing parents, each new one private to this
/// user (0700 on Unix, whatever the umask); directories that exist keep
/// their mode.
fn create_private_dir_all(path: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(|e| io_err(path, e))
}

/// Reads and checks `path`/config.toml, whose directory `store_owner`
/// owns.
fn read_config(path: &Path, store_owner: Option<u32>) -> Result<StoreConfig> {
    use std::io::Read;
    let config_path = path.join("config.toml");
    let mut file = File::open(&config_path).map_err(|e| io_err(&config_path, e))?;
    // The file opened is the one checked: a name checked and then opened
    // may have been replaced between the two.
    let meta = file.metadata().map_err(|e| io_err(&config_path, e))?;
    check_guarded(&config_path, &meta, Guarded::Config, store_owner)?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| io_err(&config_path, e))?;
    let config: StoreConfig = toml::from_str(&text).map_err(|e| {
        StoreError::Config(format!(
            "{} is corrupt: {}",
            config_path.display(),
            e.message()
        ))
    })?;
    if config.format_version != FORMAT_VERSION {
        return Err(StoreError::Config(format!(
            "{} has format version {}; this seccs reads version {FORMAT_VERSION}",
            config_path.display(),
            config.format_version
        )));
    }
    config.params_in(&config_path)?;
    let is_check = |check: &str| {
        check.len() == 2 * KEY_CHECK_LEN
            && check
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    for (field, value) in [
        ("key_check", &config.key_check),
        ("params_check", &config.params_check),
    ] {
        if value.as_deref().is_some_and(|check| !is_check(check)) {
            return Err(StoreError::Config(format!(
                "{} is corrupt: {field} is not {KEY_CHECK_LEN} bytes of lowercase hex",
                config_path.display()
            )));
        }
    }
    Ok(config)
}

fn lock(path: &Path) -> Result<DirLock> {
    use seccs_core::lockfile::{self, LockError};
    lockfile::lock_dir(path).map_err(|e| match e {
        LockError::Held { ref holder, .. } => {
            // As the lock's holder wrote itself (`pid N on HOST`).
            let by_this_process =
                *holder == format!("pid {} on {}", std::process::id(), host_name());
            StoreError::Backend(crate::backend::BackendError::Locked {
                detail: e.to_string(),
                by_this_process,
            })
        }
        LockError::Io { path, source, .. } => io_err(&path, source),
    })
}

/// This machine's name, for messages that name a lock's holder (this
/// directory's lock, and the network backends' writer locks).
pub fn host_name() -> String {
    seccs_core::lockfile::host_name()
}

/// Writes a file atomically: temporary file, fsync, rename, fsync of the
/// directory.
/// Whether [`write_atomic`] may take the place of a file already at its path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    Allowed,
    Refused,
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32, replace: Replace) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_err(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| io_err(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    // Through the file itself: the temporary file's own writer adds its
    // random name to an error, which says `path` alone.
    tmp.as_file_mut()
        .write_all(bytes)
        .map_err(|e| io_err(path, e))?;
    tmp.as_file().sync_all().map_err(|e| io_err(path, e))?;
    match replace {
        Replace::Allowed => tmp.persist(path).map(drop),
        Replace::Refused => tmp.persist_noclobber(path).map(drop),
    }
    .map_err(|e| io_err(path, e.error))?;
    if let Ok(d) = File::open(dir) {
        // Best effort: not every platform can fsync a directory.
        let _ = d.sync_all();
    }
    Ok(())
}

/// The error of an open of the store at `path` whose making by `by` was
/// stopped before it finished.
fn unfinished_store(path: &Path, by: Unfinished) -> StoreError {
    let again = match by {
        Unfinished::Init => "run the same `seccs init` again to make it afresh",
        Unfinished::Copy => "run the same `seccs copy` again to make it afresh and copy into it",
    };
    StoreError::Config(format!(
        "{} holds a store whose `{}` was stopped before it finished: {again} (nothing was \
         stored in it)",
        path.display(),
        by.command()
    ))
}

/// Makes the removal or renaming of `path` durable: fsyncs its directory
/// (best effort, as [`write_atomic`]).
fn sync_parent(path: &Path) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Whether `path` holds config.toml as a file: `Ok(false)` when nothing
/// (or something else) is there, and the error when it cannot be told (a
/// directory the user may not search).
fn config_is_file(path: &Path) -> std::io::Result<bool> {
    match fs::metadata(path.join("config.toml")) {
        Ok(meta) => Ok(meta.is_file()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// What a user is told of a store directory `path` they may not look
/// into (whether it holds a store cannot be told): whose the nearest
/// directory on the way that they may not search is, and what to do.
fn cannot_look_into(path: &Path) -> String {
    // The directory that keeps them out: `path` itself, or one above it.
    let closed = path
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find_map(|p| fs::metadata(p).ok().map(|meta| (p, meta)));
    let Some((dir, meta)) = closed else {
        return format!(
            "cannot look into {}: permission denied (it may hold another user's store: run \
             seccs as its owner, or use a store of your own)",
            path.display()
        );
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return format!(
                "cannot look into {}: permission denied ({} belongs to another user (uid {}): \
                 run seccs as its owner, or use a store of your own)",
                path.display(),
                dir.display(),
                meta.uid()
            );
        }
        format!(
            "cannot look into {}: permission denied ({} is yours, but its mode {:04o} keeps \
             you out: `chmod u+rwx` it)",
            path.display(),
            dir.display(),
            meta.mode() & 0o7777
        )
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, meta);
        format!(
            "cannot look into {}: permission denied (it may belong to another user: run seccs \
             as its owner)",
            path.display()
        )
    }
}

fn io_err(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Config(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::EntryKind;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; 32])
    }

    /// A stopped init's config is taken as made with the settings given
    /// when its parameters, backend and key source are those, whatever it
    /// recorded after them; any one of those differing makes it another.
    #[test]
    fn a_config_is_made_with_the_settings_its_parameters_backend_and_key_are() -> Result<()> {
        let file = || KeySource::File { path: "key".into() };
        let new = StoreConfig::new(Params::default(), EMBEDDED.into(), file());
        let stopped = new
            .clone()
            .with_key_check(&key(1))
            .unfinished_by(Unfinished::Init);
        assert!(stopped.made_with(&new));
        let others = [
            StoreConfig::new(
                Params::new(1024, WrapperKind::AesSiv)?,
                EMBEDDED.into(),
                file(),
            ),
            StoreConfig::new(
                Params::new(crate::DEFAULT_CHUNK_SIZE, WrapperKind::HmacSha256)?,
                EMBEDDED.into(),
                file(),
            ),
            StoreConfig::new(
                Params::default(),
                "redis://127.0.0.1:6379/0?prefix=a:".into(),
                file(),
            ),
            StoreConfig::new(
                Params::default(),
                EMBEDDED.into(),
                KeySource::File {
                    path: "other".into(),
                },
            ),
            StoreConfig::new(
                Params::default().with_compression(crate::Compression::None),
                EMBEDDED.into(),
                file(),
            ),
        ];
        for other in &others {
            assert!(!stopped.made_with(other), "{other:?}");
        }
        Ok(())
    }

    /// A backend URL with a password is refused before anything is made,
    /// and never shown with it: config.toml is readable by all.
    #[test]
    fn a_backend_url_with_a_password_is_never_written() -> Result<()> {
        let parent = tempfile::tempdir().map_err(|e| io_err(Path::new("tempdir"), e))?;
        let path = parent.path().join("s");
        for url in [
            "redis://:hunter2@127.0.0.1:6391/0?prefix=cred:",
            "postgres://seccs:hunter2@127.0.0.1:5432/db",
        ] {
            let config = StoreConfig::new(
                Params::default(),
                url.into(),
                KeySource::File { path: "key".into() },
            );
            assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
            let Err(StoreError::Config(message)) = StoreDir::create(&path, config) else {
                panic!("{url} was taken");
            };
            assert!(message.contains("holds a password"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
            assert!(!path.exists(), "{url}: {} was made", path.display());
        }
        let config = StoreConfig::new(
            Params::default(),
            "redis://u@127.0.0.1:6391/0?prefix=cred:".into(),
            KeySource::File { path: "key".into() },
        );
        let dir = StoreDir::create(&path, config)?;
        assert!(format!("{dir:?}").contains("redis://u@127.0.0.1:6391/0"));
        Ok(())
    }

    /// The check of the parameters depends on the key and on each of
    /// them, and the pair a check was made for is found from it alone.
    #[test]
    fn a_params_check_names_its_pair_under_its_key_only() {
        let check = params_check(&key(1), 4096, "aes-siv");
        assert_ne!(check, params_check(&key(2), 4096, "aes-siv"));
        assert_ne!(check, params_check(&key(1), 4097, "aes-siv"));
        assert_ne!(check, params_check(&key(1), 4096, "aes-siv-dr"));
        assert_eq!(
            params_checker(&key(1)).find(&check),
            Some((4096, "aes-siv"))
        );
        let other = params_check(&key(1), 300, "hmac-sha-256");
        assert_eq!(
            params_checker(&key(1)).find(&other),
            Some((300, "hmac-sha-256"))
        );
        assert_eq!(params_checker(&key(2)).find(&"00".repeat(16)), None);
    }

    /// A key "file" that is a FIFO, a directory or a device is refused at
    /// once: opening a FIFO would block until something writes to it.
    #[test]
    fn a_key_path_that_is_not_a_regular_file_is_refused_without_opening_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let fifo = tmp.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        for path in [fifo.as_path(), tmp.path(), Path::new("/dev/null")] {
            let err = read_key_file(path).err();
            assert!(
                matches!(&err, Some(StoreError::Config(m)) if m.contains("not a regular file")),
                "{}: {err:?}",
                path.display()
            );
        }
    }

    /// A key file that another `init` made after `write_key_file`'s first
    /// check is not replaced when the new file takes its name: the other
    /// key may already be the one a store's config was made for.
    #[test]
    fn a_key_file_made_after_the_check_is_not_replaced() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("key");
        std::fs::write(&path, "theirs").expect("write");
        let err = write_atomic(&path, b"ours", 0o600, Replace::Refused).err();
        assert!(matches!(err, Some(StoreError::Config(_))), "{err:?}");
        assert_eq!(std::fs::read(&path).expect("read"), b"theirs");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("list")
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .expect("names");
        assert_eq!(left, vec![std::ffi::OsString::from("key")]);
        write_atomic(&path, b"ours", 0o600, Replace::Allowed).expect("replaced");
        assert_eq!(std::fs::read(&path).expect("read"), b"ours");
    }

    fn new_dir(path: &Path, check_of: Option<&SecretKey>) -> Result<StoreDir> {
        let config = StoreConfig::new(
            Params::default(),
            EMBEDDED.into(),
            KeySource::File {
                path: PathBuf::from("key"),
            },
        );
        let config = match check_of {
            Some(key) => config.with_key_check(key),
            None => config,
        };
        StoreDir::create(path, config)
    }

    fn is_wrong_key(result: Result<Store>) -> bool {
        matches!(result, Err(StoreError::WrongKey(_)))
    }

    #[test]
    fn a_key_other_than_the_stores_is_refused_before_anything_is_written() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        let mut dir = new_dir(&path, Some(&key(1)))?;
        let backend = dir.open_embedded()?;
        assert!(is_wrong_key(dir.open_store(backend.clone(), &key(2))));
        assert_eq!(backend.usage()?.entries, 0, "nothing was written");
        let store = dir.open_store(backend, &key(1))?;
        store.put_named(&mut &b"x"[..], "x", EntryKind::File)?;
        Ok(())
    }

    /// A store keeps its directory's lock after the directory handle it
    /// was opened from is dropped: no other handle (nor process) opens the
    /// directory until the store is dropped too.
    #[test]
    fn a_store_holds_its_directorys_lock_after_the_handle_is_dropped() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        let mut dir = new_dir(&path, Some(&key(1)))?;
        let backend = dir.open_embedded()?;
        let store = dir.open_store(backend, &key(1))?;
        drop(dir);
        match StoreDir::open(&path) {
            // The holder is this process, and said to be.
            Err(StoreError::Backend(crate::backend::BackendError::Locked {
                by_this_process: true,
                ..
            })) => {}
            other => panic!("a second handle opened a store in use: {other:?}"),
        }
        store.put_named(&mut &b"x"[..], "x", EntryKind::File)?;
        drop(store);
        StoreDir::open(&path)?;
        Ok(())
    }

    /// A reader of a network store takes no lock (a writer's handle opens
    /// beside it), and writes nothing: no key check value recorded, no
    /// marker, no clean-up of a put in progress, and its store refuses a
    /// put. On the embedded backend a reader takes the lock as before.
    #[test]
    fn a_reader_of_a_network_store_takes_no_lock_and_writes_nothing() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        let config = StoreConfig::new(
            Params::default(),
            "redis://127.0.0.1:1/0?prefix=r:".into(),
            KeySource::File {
                path: PathBuf::from("key"),
            },
        );
        drop(StoreDir::create(&path, config)?);
        let journal = path.join("journal");
        fs::create_dir_all(&journal)?;
        fs::write(journal.join("a-put-running-now"), b"")?;
        let backend: Arc<dyn Backend> = Arc::new(crate::backend::MemoryBackend::new());
        let writer = StoreDir::open(&path)?;
        let mut reader = StoreDir::open_for_reading(&path)?;
        assert!(reader.is_reader() && !writer.is_reader());
        let store = reader.open_store(Arc::clone(&backend), &key(1))?;
        assert!(
            journal.join("a-put-running-now").exists(),
            "left to writers"
        );
        assert!(
            StoreDir::open_for_reading(&path)?
                .config()
                .key_check
                .is_none()
        );
        assert_eq!(backend.read_marker()?, None);
        assert!(store.put(b"x").is_err(), "a reader's store writes nothing");
        assert_eq!(backend.usage()?.entries, 0);
        drop(writer);

        let embedded = tmp.path().join("embedded");
        let held = new_dir(&embedded, Some(&key(1)))?;
        match StoreDir::open_for_reading(&embedded) {
            Err(StoreError::Backend(crate::backend::BackendError::Locked { .. })) => {}
            other => panic!("a reader opened an embedded store in use: {other:?}"),
        }
        drop(held);
        assert!(!StoreDir::open_for_reading(&embedded)?.is_reader());
        Ok(())
    }

    #[test]
    fn a_store_made_before_check_values_checks_the_key_by_its_records() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        {
            let dir = new_dir(&path, None)?;
            let backend = dir.open_embedded()?;
            // While it has no names, any key is taken (and then recorded):
            // write a record first, as the store's earlier life did.
            let store = Store::new_unchecked(backend, dir.config().params()?, &key(1));
            store.put_named(&mut &b"x"[..], "x", EntryKind::File)?;
            drop(store);
            assert!(dir.config().key_check.is_none());
            drop(dir);
        }
        let mut dir = StoreDir::open(&path)?;
        let backend = dir.open_embedded()?;
        assert!(is_wrong_key(dir.open_store(backend.clone(), &key(2))));
        assert!(
            dir.config().key_check.is_none(),
            "a wrong key records nothing"
        );
        dir.open_store(backend, &key(1))?;
        assert_eq!(dir.config().key_check, Some(key_check(&key(1))));
        drop(dir);
        // Recorded on disk: the next open checks by the value.
        let mut dir = StoreDir::open(&path)?;
        assert_eq!(dir.config().key_check, Some(key_check(&key(1))));
        let backend = dir.open_embedded()?;
        assert!(is_wrong_key(dir.open_store(backend, &key(2))));
        Ok(())
    }

    /// In a store made before check values, a key that opens some records
    /// but not all (a wrong key that once wrote into the store's database)
    /// is not recorded as the store's, and its gc removes none of the
    /// records it does not open: they are the store's own.
    #[test]
    fn a_key_that_opens_only_some_records_of_an_older_store_is_not_recorded() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        {
            let dir = new_dir(&path, None)?;
            let backend = dir.open_embedded()?;
            let params = dir.config().params()?;
            let store = Store::new_unchecked(backend.clone(), params, &key(1));
            store.put_named(&mut &b"the store's"[..], "x", EntryKind::File)?;
            drop(store);
            let store = Store::new_unchecked(backend, params, &key(2));
            store.put_named(&mut &b"a wrong key's"[..], "y", EntryKind::File)?;
        }
        let mut dir = StoreDir::open(&path)?;
        let backend = dir.open_embedded()?;
        let store = dir.open_store(backend.clone(), &key(2))?;
        assert!(!store.key_checked());
        assert_eq!(dir.config().key_check, None, "nothing recorded");
        let gc = store.gc()?;
        assert!(gc.records_removed.is_empty(), "{gc:?}");
        assert_eq!(gc.records_left.len(), 1, "{gc:?}");
        drop(store);
        let store = dir.open_store(backend, &key(1))?;
        assert!(store.lookup("x")?.is_some());
        Ok(())
    }

    /// A key that opens only some records of a store made before check
    /// values does not mark the store's backend either: the marker would
    /// prove that key to a later `Store::open`, whose gc would then remove
    /// the records of the store's own key.
    #[test]
    fn a_key_that_opens_only_some_records_marks_no_backend() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        let mut dir = new_dir(&path, None)?;
        let params = dir.config().params()?;
        let marked = Arc::new(crate::backend::MemoryBackend::keeping_marker());
        let backend: Arc<dyn Backend> = marked.clone();
        let store = Store::new_unchecked(backend.clone(), params, &key(1));
        store.put_named(&mut &b"the store's"[..], "x", EntryKind::File)?;
        drop(store);
        let store = Store::new_unchecked(backend.clone(), params, &key(2));
        store.put_named(&mut &b"a wrong key's"[..], "y", EntryKind::File)?;
        drop(store);
        let store = dir.open_store(backend.clone(), &key(2))?;
        assert!(!store.key_checked());
        drop(store);
        assert_eq!(marked.read_marker()?, None, "no marker written");
        let store = Store::open(backend.clone(), params, &key(2))?;
        assert!(!store.key_checked());
        let gc = store.gc()?;
        assert!(gc.records_removed.is_empty(), "{gc:?}");
        drop(store);
        let store = Store::open(backend, params, &key(1))?;
        assert!(store.lookup("x")?.is_some());
        Ok(())
    }

    #[test]
    fn a_store_without_names_made_before_check_values_checks_the_key_by_its_nodes() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        let reference = {
            let dir = new_dir(&path, None)?;
            let backend = dir.open_embedded()?;
            let store = Store::new_unchecked(backend, dir.config().params()?, &key(1));
            store.put(&[7u8; 100_000])?
        };
        let mut dir = StoreDir::open(&path)?;
        let backend = dir.open_embedded()?;
        assert!(is_wrong_key(dir.open_store(backend.clone(), &key(2))));
        assert!(
            dir.config().key_check.is_none(),
            "a wrong key records nothing"
        );
        let store = dir.open_store(backend, &key(1))?;
        assert_eq!(store.get(&reference)?, vec![7u8; 100_000]);
        assert_eq!(dir.config().key_check, Some(key_check(&key(1))));
        Ok(())
    }

    #[test]
    fn a_malformed_check_value_is_a_corrupt_config() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        drop(new_dir(&path, Some(&key(1)))?);
        let config = path.join("config.toml");
        let text = fs::read_to_string(&config)?;
        let recorded = key_check(&key(1));
        for bad in ["", "zz", &recorded.to_uppercase()] {
            fs::write(&config, text.replace(&recorded, bad))?;
            let err = StoreDir::open(&path).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("corrupt")),
                "{bad:?}: {err:?}"
            );
        }
        Ok(())
    }

    /// A directory that lost its config.toml still holds its store's
    /// database: a new store made there would open that database, read
    /// every record as tampered under its own key, and its gc would delete
    /// them. Made over it, or over a journal of puts in progress, a store
    /// is refused, and the old data stays.
    #[test]
    fn a_store_is_not_made_over_another_stores_data() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        {
            let mut dir = new_dir(&path, Some(&key(1)))?;
            let backend = dir.open_embedded()?;
            let store = dir.open_store(backend, &key(1))?;
            store.put_named(&mut &b"precious"[..], "doc", EntryKind::File)?;
        }
        let config = path.join("config.toml");
        let saved = fs::read(&config)?;
        fs::remove_file(&config)?;
        let err = new_dir(&path, Some(&key(2))).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("another store's data") && e.contains("db")),
            "{err:?}"
        );
        assert!(!config.exists(), "nothing written");
        fs::write(&config, saved)?;
        let mut dir = StoreDir::open(&path)?;
        let backend = dir.open_embedded()?;
        let store = dir.open_store(backend, &key(1))?;
        let mut read = Vec::new();
        store.get_named("doc", None, &mut read)?;
        assert_eq!(read, b"precious");
        drop((store, dir));

        let other = tmp.path().join("journal-only");
        fs::create_dir_all(other.join("journal"))?;
        fs::write(other.join("journal").join("a-put"), b"")?;
        let err = new_dir(&other, Some(&key(2))).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("another store's data") && e.contains("journal")),
            "{err:?}"
        );
        // Empty directories hold nothing: a store is made there.
        fs::remove_file(other.join("journal").join("a-put"))?;
        fs::create_dir_all(other.join("db"))?;
        new_dir(&other, Some(&key(2)))?.open_embedded()?;
        Ok(())
    }

    /// A directory for a store whose config.toml was lost
    /// ([`StoreDir::attach`]) gets no config.toml from a wrong key, only
    /// once the key opened the store; it needs the kept
    /// database, opens it as an existing one (never a new, empty one), and
    /// refuses a directory that holds config.toml.
    #[test]
    fn the_last_copy_into_a_store_reads_back_as_recorded_and_a_damaged_record_is_named()
    -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        let dir = new_dir(&path, Some(&key(1)))?;
        assert_eq!(dir.last_copy()?, None, "no copy yet");
        dir.record_last_copy(1_765_000_000)?;
        assert_eq!(dir.last_copy()?, Some(1_765_000_000));
        dir.record_last_copy(1_765_000_042)?;
        assert_eq!(dir.last_copy()?, Some(1_765_000_042), "replaced");
        std::fs::write(path.join(LAST_COPY_FILE), "source_newest = soon\n")?;
        let err = dir.last_copy().err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("last-copy: not a record of a copy")),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn an_attached_directory_is_written_only_once_kept() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        let fresh = || {
            StoreConfig::new(
                Params::default(),
                EMBEDDED.into(),
                KeySource::File {
                    path: PathBuf::from("key"),
                },
            )
        };
        let no_db = StoreDir::attach(&path, fresh())
            .err()
            .map(|e| e.to_string());
        assert!(
            no_db
                .as_deref()
                .is_some_and(|e| e.contains("holds no database: nothing to attach to")),
            "{no_db:?}"
        );
        assert!(!path.exists(), "nothing made");
        {
            let mut dir = new_dir(&path, Some(&key(1)))?;
            let backend = dir.open_embedded()?;
            let store = dir.open_store(backend, &key(1))?;
            store.put_named(&mut &b"kept"[..], "doc", EntryKind::File)?;
        }
        let held = StoreDir::attach(&path, fresh())
            .err()
            .map(|e| e.to_string());
        assert!(
            held.as_deref()
                .is_some_and(|e| e.contains("already holds a store")),
            "{held:?}"
        );
        let config = path.join("config.toml");
        fs::remove_file(&config)?;
        let mut dir = StoreDir::attach(&path, fresh())?;
        assert!(!config.exists(), "not written before it is kept");
        let backend = dir.open_embedded()?;
        assert!(is_wrong_key(dir.open_store(backend.clone(), &key(2))));
        assert!(!config.exists(), "a wrong key writes nothing");
        let store = dir.open_store(backend, &key(1))?;
        assert!(store.key_checked());
        let mut read = Vec::new();
        store.get_named("doc", None, &mut read)?;
        assert_eq!(read, b"kept");
        dir.keep_attached()?;
        drop((store, dir));
        let dir = StoreDir::open(&path)?;
        assert_eq!(dir.config().key_check, Some(key_check(&key(1))));
        Ok(())
    }

    fn set_mode(path: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, e))
    }

    fn mode_of(path: &Path) -> Result<u32> {
        use std::os::unix::fs::PermissionsExt;
        Ok(fs::metadata(path)
            .map_err(|e| io_err(path, e))?
            .permissions()
            .mode()
            & 0o7777)
    }

    /// The store directory and the directories made for a key file are
    /// 0700 (with the test's umask, which would give 0755 to a plain
    /// `create_dir_all`).
    #[test]
    fn a_store_and_its_key_directories_are_made_private() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("a/store");
        drop(new_dir(&path, Some(&key(1)))?);
        assert_eq!(mode_of(&path)?, 0o700);
        assert_eq!(mode_of(&tmp.path().join("a"))?, 0o700);
        let key_path = tmp.path().join("keys/sub/k");
        write_key_file(&key_path, &key(1))?;
        assert_eq!(mode_of(&tmp.path().join("keys"))?, 0o700);
        assert_eq!(mode_of(&tmp.path().join("keys/sub"))?, 0o700);
        assert_eq!(mode_of(&key_path)?, 0o600);
        Ok(())
    }

    /// What another user could change is refused, naming it and the fix:
    /// the store directory or config.toml writable by group or others, a
    /// key file so, or one in a directory others can write. A key in a
    /// sticky directory (/tmp), and a key others can only read, are read.
    #[test]
    fn a_store_or_key_others_can_write_is_refused() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        drop(new_dir(&path, Some(&key(1)))?);
        let refused = |result: Result<StoreDir>, fix: &str| match result {
            Err(StoreError::Config(m)) => assert!(m.contains(fix), "{m}"),
            other => panic!("not refused: {other:?}"),
        };
        let config = path.join("config.toml");
        set_mode(&config, 0o664)?;
        refused(
            StoreDir::open(&path),
            &format!("`chmod go-w {}`", config.display()),
        );
        refused(
            StoreDir::open_for_reading(&path),
            &format!("`chmod go-w {}`", config.display()),
        );
        set_mode(&config, 0o644)?;
        set_mode(&path, 0o702)?;
        refused(
            StoreDir::open(&path),
            &format!("`chmod -R go-w {}`", path.display()),
        );
        set_mode(&path, 0o755)?;
        // Nor is a store made in such a directory.
        let open_dir = tmp.path().join("open");
        fs::create_dir(&open_dir)?;
        set_mode(&open_dir, 0o777)?;
        let err = StoreDir::check_new(&open_dir).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("can be written by group and others")),
            "{err:?}"
        );
        StoreDir::open(&path)?;

        let key_path = tmp.path().join("keys/k");
        write_key_file(&key_path, &key(1))?;
        set_mode(&key_path, 0o602)?;
        let err = read_key_file(&key_path).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("key file")
                && e.contains(&format!("`chmod go-w {}`", key_path.display()))),
            "{err:?}"
        );
        set_mode(&key_path, 0o644)?;
        assert_eq!(key_file_readable_by_others(&key_path), Some(0o644));
        assert!(read_key_file(&key_path)? == key(1));
        let keys = tmp.path().join("keys");
        set_mode(&keys, 0o777)?;
        let err = read_key_file(&key_path).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("directory of the store's key file")),
            "{err:?}"
        );
        set_mode(&keys, 0o1777)?;
        assert!(read_key_file(&key_path)? == key(1));
        Ok(())
    }

    /// A store whose making was stopped (config.toml written first, marked
    /// unfinished) is refused by every open, naming the command to run
    /// again; its lock is taken to undo it, and only while free; once
    /// finished (config.toml rewritten without the mark) it opens.
    #[test]
    fn an_unfinished_store_is_refused_until_finished() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("store");
        let config = StoreConfig::new(
            Params::default(),
            EMBEDDED.into(),
            KeySource::File {
                path: PathBuf::from("key"),
            },
        )
        .with_key_check(&key(1))
        .unfinished_by(Unfinished::Init);
        let mut made = StoreDir::create(&path, config)?;
        let text = fs::read_to_string(path.join("config.toml"))?;
        assert!(text.starts_with("unfinished = \"init\"\n"), "{text}");
        // While its init runs (the lock held), it is a store in use.
        assert!(matches!(
            StoreDir::open_for_reading(&path),
            Err(StoreError::Backend(
                crate::backend::BackendError::Locked { .. }
            ))
        ));
        assert!(StoreDir::open_unfinished(&path).is_err());
        drop(made);
        assert_eq!(StoreDir::unfinished(&path), Some(Unfinished::Init));
        for opened in [StoreDir::open(&path), StoreDir::open_for_reading(&path)] {
            match opened {
                Err(StoreError::Config(m)) => assert!(
                    m.contains("`seccs init` was stopped before it finished")
                        && m.contains("run the same `seccs init` again"),
                    "{m}"
                ),
                other => panic!("an unfinished store opened: {other:?}"),
            }
        }
        made = StoreDir::open_unfinished(&path)?;
        assert!(matches!(
            StoreDir::open_unfinished(&path),
            Err(StoreError::Backend(
                crate::backend::BackendError::Locked { .. }
            ))
        ));
        made.finish()?;
        drop(made);
        assert_eq!(StoreDir::unfinished(&path), None);
        assert!(StoreDir::open(&path)?.config().unfinished.is_none());
        assert!(
            StoreDir::open_unfinished(&path).is_err(),
            "a finished store is kept"
        );
        Ok(())
    }

    #[test]
    fn a_check_value_is_sixteen_bytes_of_its_own() {
        let check = key_check(&key(1));
        assert_eq!(check.len(), 2 * KEY_CHECK_LEN);
        assert_ne!(check, key_check(&key(2)));
        assert!(!seccs_core::hexenc::encode(key(1).expose_secret()).contains(&check));
    }
}
