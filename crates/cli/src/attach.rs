//! `seccs init --attach`: a new directory for a store that exists, whose
//! own directory (its config.toml) was lost, made from its backend and its
//! key. Nothing is made but DIR/config.toml: no key is generated or saved,
//! no marker written (but where a store made before markers has none, as
//! any open of it by a writer does), and config.toml is written only once
//! the key has opened the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use seccs_core::SecretKey;
use seccs_store::StoreError;
use seccs_store::backend::Backend;
use seccs_store::dir::{self, EMBEDDED, KeySource, StoreConfig, StoreDir};
use seccs_store::{Params, Store};

use crate::open::{self, Access, KmsUrlFrom};

/// What `init --attach` is given.
pub struct Attach {
    pub params: Params,
    pub backend: String,
    /// Where the store's key is: a key file to read (relative: to the
    /// store directory), the key service with the store's salt, or the
    /// share network.
    pub key: KeySource,
    pub share_password_file: Option<crate::share::PasswordFile>,
}

/// Makes `path/config.toml` for the existing store on `how.backend` whose
/// key `how.key` gives, once that key has opened the store; on any
/// failure, `path` is left as it was.
pub fn attach(path: &Path, how: Attach) -> Result<()> {
    let embedded = how.backend == EMBEDDED;
    open::check_backend_name(&how.backend)?;
    // Said before any key is fetched.
    if StoreDir::exists(path) {
        bail!(
            "{} already holds a store (its config.toml): --attach makes a new directory for a \
             store whose directory was lost; open this one as it is",
            path.display()
        );
    }
    let shown = match embedded {
        true => EMBEDDED.to_owned(),
        false => seccs_backends::redact(&how.backend),
    };
    let key = load_key(path, &how)?;
    // The backend before the directory: a wrong URL leaves nothing behind.
    let network = match embedded {
        true => None,
        false => Some(open::open_network_backend(&how.backend, Access::Write)?),
    };
    let mut config = StoreConfig::new(how.params, shown.clone(), how.key.clone());
    if let Some(backend) = &network {
        match check_marker(backend.as_ref(), &shown, &key)? {
            // Proven by the marker: recorded as a store made by init is.
            Marker::Ours => {
                config.key_check = Some(dir::key_check(&key));
                config.backend_marked = true;
            }
            // A store made before markers: the key is proven by its records
            // as its first open by a writer proves it, which marks it.
            Marker::NoneButEntries => {}
        }
    }
    let lock_was_there = path.join("lock").symlink_metadata().is_ok();
    let dir_was_there = path.symlink_metadata().is_ok();
    let mut store_dir = StoreDir::attach(path, config)?;
    let kept = open_and_keep(&mut store_dir, network, &key);
    if let Err(e) = kept {
        // Under the lock, still held: a config.toml there now is this
        // attach's (the key may have been recorded in it as proven before
        // a later step failed), as the directory held none.
        let _ = std::fs::remove_file(path.join("config.toml"));
        drop(store_dir);
        open::remove_made_place(path, !lock_was_there, !dir_was_there);
        return Err(e.context(format!(
            "cannot attach the store on backend {shown} at {} (nothing was written there)",
            path.display()
        )));
    }
    Ok(())
}

/// What a network backend holds where a store's marker would be.
enum Marker {
    /// This key's marker.
    Ours,
    /// No marker, but entries: a store made before markers (or one whose
    /// marker alone was removed).
    NoneButEntries,
}

/// Refuses a backend without a store, or with another store's marker.
fn check_marker(backend: &dyn Backend, shown: &str, key: &SecretKey) -> Result<Marker> {
    if !backend.keeps_marker() {
        return Ok(Marker::NoneButEntries);
    }
    let read = |e| anyhow::Error::new(e).context(format!("cannot read backend {shown}"));
    match backend.read_marker().map_err(read)? {
        Some(found) if found == dir::key_check(key).as_bytes() => Ok(Marker::Ours),
        Some(_) => bail!(
            "backend {shown} holds another store's marker: this key is not that store's (a \
             wrong key file, another KEK or salt, another share tag?), or the URL names another \
             store's table or prefix; nothing was written"
        ),
        None => {
            // Entries under a nesting prefix are another store's.
            if let Some(first) = backend.nested_stores().map_err(read)?.first() {
                bail!(
                    "backend {shown} holds no store marker but nests with {first}: nothing to \
                     attach to there; is the prefix the store's, spelled as when it was made?"
                );
            }
            attach_unmarked(backend, shown)
        }
    }
}

/// A backend without a marker: a store made before markers if it holds
/// entries, else nothing to attach to.
fn attach_unmarked(backend: &dyn Backend, shown: &str) -> Result<Marker> {
    let held = backend
        .usage()
        .with_context(|| format!("cannot read backend {shown}"))?
        .entries;
    if held == 0 {
        bail!(
            "backend {shown} holds no store marker: nothing to attach to (every store init \
             makes is marked): is the URL's database, table or prefix the store's, spelled as \
             when it was made? Nothing was written"
        );
    }
    Ok(Marker::NoneButEntries)
}

/// Opens the store of `store_dir` with `key`, which must open it whole,
/// and writes its config.toml.
fn open_and_keep(
    store_dir: &mut StoreDir,
    network: Option<Arc<dyn Backend>>,
    key: &SecretKey,
) -> Result<()> {
    store_dir.check_key(key)?;
    let backend = match network {
        Some(backend) => backend,
        None => store_dir.open_embedded()?,
    };
    let store: Store = store_dir.open_store(backend, key).map_err(|e| match e {
        StoreError::WrongKey(_) => anyhow::Error::new(e).context(
            "the key given does not open this store: a wrong key file, another KEK or salt, \
             or another share tag?",
        ),
        e => e.into(),
    })?;
    if !store.key_checked() {
        bail!(
            "the key given opens only some of the store's catalog records: the others may be \
             another key's, or this key a wrong one that once wrote into the store's backend; \
             attach with the key that opens them all"
        );
    }
    store_dir.keep_attached()?;
    drop(store);
    Ok(())
}

/// The store's key, from where `how` says; never written anywhere.
fn load_key(path: &Path, how: &Attach) -> Result<SecretKey> {
    match &how.key {
        KeySource::File { path: key_path } => {
            let key_path: PathBuf = match key_path.is_absolute() {
                true => key_path.clone(),
                false => path.join(key_path),
            };
            if key_path.symlink_metadata().is_err() {
                bail!(
                    "the key file {} does not exist: --attach reads the store's kept key, and \
                     never makes one (give it with --key-file PATH, or copy it to {})",
                    key_path.display(),
                    path.join("key").display()
                );
            }
            dir::read_key_file(&key_path).context("cannot read the store's key file")
        }
        KeySource::Share { tag, config } => {
            let share_config = crate::share::load_config_file(config, "--share-config")?;
            let password = crate::share::password_from(how.share_password_file.as_ref(), false)?;
            seccs_net::keyfile::load_key(&share_config, tag, &password).with_context(|| {
                format!("cannot load the store key {tag:?} from the share network")
            })
        }
        KeySource::Kms { .. } => open::load_key_source(
            path,
            &how.key,
            "does --key-from-kms name its address?".to_owned(),
            KmsUrlFrom {
                origin: "--key-from-kms",
                https_advice: "give https://HOST:PORT, trusted by --kms-ca FILE or --kms-pin SHA256",
            },
        ),
    }
}
