//! A store directory: the config file, the key file, the lock, the journal
//! and (for the embedded backend) the database.
//!
//! ```text
//! DIR/config.toml   format version, chunk size, wrapper, backend, key source
//! DIR/key           the store key (mode 0600), unless the config names
//!                   another key file, the key service or the share network
//! DIR/lock          held exclusively while a process has the store open
//! DIR/journal/      one file per large put in progress
//! DIR/db/           the embedded backend's database
//! ```
//! Credentials for network backends never go into the config: they come from
//! the environment or the backend's own credential files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use seccs_core::SecretKey;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, EmbeddedBackend};
use crate::error::{Result, StoreError};
use crate::params::Params;
use crate::store::Store;
use crate::wrapper::WrapperKind;

/// The config format this version writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The backend name of the embedded default.
pub const EMBEDDED: &str = "embedded";

const KEY_FILE_MAGIC: &str = "seccs-store-key-v1";

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
    },
    /// A key file saved t-of-n on the share network.
    Share {
        /// The tag it is saved under.
        tag: String,
        /// The share client's config file.
        config: PathBuf,
    },
}

/// The contents of `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
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
}

impl StoreConfig {
    /// A config for a new store with a key file.
    pub fn new(params: Params, backend: String, key: KeySource) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            chunk_size: params.chunk_size(),
            wrapper: params.wrapper().name().to_owned(),
            backend,
            compression: params.compression().to_string(),
            key,
        }
    }

    /// The store parameters, validated.
    pub fn params(&self) -> Result<Params> {
        let wrapper: WrapperKind = self.wrapper.parse().map_err(StoreError::Config)?;
        let compression = self.compression.parse().map_err(StoreError::Config)?;
        Ok(Params::new(self.chunk_size, wrapper)?.with_compression(compression))
    }
}

/// An open store directory; holds the lock until dropped.
#[derive(Debug)]
pub struct StoreDir {
    path: PathBuf,
    config: StoreConfig,
    /// Made by this handle: its embedded database does not exist yet.
    created: bool,
    _lock: File,
}

impl StoreDir {
    /// Whether `path` holds a store.
    pub fn exists(path: &Path) -> bool {
        path.join("config.toml").is_file()
    }

    /// Creates a store directory with `config`. Refuses a directory that
    /// already holds a store.
    pub fn create(path: &Path, config: StoreConfig) -> Result<Self> {
        if Self::exists(path) {
            return Err(StoreError::Config(format!(
                "{} already holds a store",
                path.display()
            )));
        }
        config.params()?;
        fs::create_dir_all(path).map_err(|e| io_err(path, e))?;
        let lock = lock(path)?;
        let text = toml::to_string(&config)
            .map_err(|e| StoreError::Config(format!("cannot write config: {e}")))?;
        write_atomic(&path.join("config.toml"), text.as_bytes(), 0o644)?;
        Ok(Self {
            path: path.to_owned(),
            config,
            created: true,
            _lock: lock,
        })
    }

    /// Opens an existing store directory, taking its lock.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(StoreError::Config(format!(
                "no store at {} (create one with `seccs init`)",
                path.display()
            )));
        }
        let config_path = path.join("config.toml");
        if !config_path.is_file() {
            return Err(StoreError::Config(format!(
                "{} is not a store: config.toml is missing",
                path.display()
            )));
        }
        let lock = lock(path)?;
        let text = fs::read_to_string(&config_path).map_err(|e| io_err(&config_path, e))?;
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
        config.params()?;
        Ok(Self {
            path: path.to_owned(),
            config,
            created: false,
            _lock: lock,
        })
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

    /// Builds the store over `backend` with `key`, and cleans up after a put
    /// that a crash interrupted.
    pub fn open_store(&self, backend: Arc<dyn Backend>, key: &SecretKey) -> Result<Store> {
        let mut store = Store::new(backend, self.config.params()?, key);
        store.set_journal_dir(self.path.join("journal"));
        if store.needs_recovery()? {
            store.recover()?;
        }
        Ok(store)
    }
}

/// Writes a new key file (mode 0600); refuses to overwrite one.
pub fn write_key_file(path: &Path, key: &SecretKey) -> Result<()> {
    if path.exists() {
        return Err(StoreError::Config(format!(
            "key file {} already exists; not overwriting it",
            path.display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    let text = zeroize::Zeroizing::new(format!(
        "{KEY_FILE_MAGIC} {}\n",
        seccs_core::hexenc::encode(key.expose_secret())
    ));
    write_atomic(path, text.as_bytes(), 0o600)
}

/// Reads a key file written by [`write_key_file`].
pub fn read_key_file(path: &Path) -> Result<SecretKey> {
    let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(|e| io_err(path, e))?);
    let bad = || StoreError::Config(format!("{} is not a seccs key file", path.display()));
    let hex = text
        .trim_end()
        .strip_prefix(KEY_FILE_MAGIC)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(bad)?;
    let bytes = zeroize::Zeroizing::new(seccs_core::hexenc::decode(hex).map_err(|_| bad())?);
    SecretKey::from_slice(&bytes).map_err(|_| bad())
}

fn lock(path: &Path) -> Result<File> {
    let lock_path = path.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_err(&lock_path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => {
            Err(StoreError::Backend(crate::backend::BackendError::Locked {
                detail: format!("{} is locked", path.display()),
            }))
        }
        Err(fs::TryLockError::Error(e)) => Err(io_err(&lock_path, e)),
    }
}

/// Writes a file atomically: temporary file, fsync, rename, fsync of the
/// directory.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
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
    tmp.write_all(bytes).map_err(|e| io_err(path, e))?;
    tmp.as_file().sync_all().map_err(|e| io_err(path, e))?;
    tmp.persist(path).map_err(|e| io_err(path, e.error))?;
    if let Ok(d) = File::open(dir) {
        // Best effort: not every platform can fsync a directory.
        let _ = d.sync_all();
    }
    Ok(())
}

fn io_err(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Config(format!("{}: {e}", path.display()))
}
