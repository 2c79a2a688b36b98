//! `seccs init --attach`: a new directory for a store that exists, whose
//! own directory (its config.toml) was lost, made from its backend and its
//! key. Nothing is made but DIR/config.toml: no key is generated or saved,
//! no marker written (but where a store made before markers has none, as
//! any open of it by a writer does), and config.toml is written only once
//! the key has opened the store.
//!
//! The store's parameters, and a key-service store's salt, come from the
//! descriptor its backend keeps (`seccs_store::descriptor`) where there is
//! one: its salt is taken on trust only to derive the key, and nothing in
//! it is used until that key authenticates it. Parameters given on the
//! command line must then agree with it. A store whose backend keeps no
//! descriptor (made before descriptors and not opened by a writer since)
//! takes the parameters given, or the defaults.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use seccs_core::SecretKey;
use seccs_store::StoreError;
use seccs_store::backend::Backend;
use seccs_store::descriptor::{Descriptor, Unverified};
use seccs_store::dir::{self, EMBEDDED, KeySource, StoreConfig, StoreDir};
use seccs_store::{Compression, Params, Store, WrapperKind};

use crate::open::{self, Access, KmsUrlFrom};

/// What `init --attach` is given.
pub struct Attach {
    /// The parameters given on the command line, each where it was.
    pub given: GivenParams,
    pub backend: String,
    /// Where the store's key is: a key file to read (relative: to the
    /// store directory), the key service (with the store's salt, or none
    /// given: the descriptor's), or the share network.
    pub key: KeySource,
    pub share_password_file: Option<crate::share::PasswordFile>,
}

/// The parameters `init --attach` was given, each only where it was.
#[derive(Debug, Clone, Copy, Default)]
pub struct GivenParams {
    pub chunk_size: Option<usize>,
    pub wrapper: Option<WrapperKind>,
    pub compression: Option<Compression>,
}

impl GivenParams {
    /// Whether every parameter was given.
    fn all(&self) -> bool {
        self.chunk_size.is_some() && self.wrapper.is_some() && self.compression.is_some()
    }

    /// The parameters given, with the defaults of `init` for the others.
    pub fn or_defaults(&self) -> Result<Params> {
        let defaults = Params::default();
        Ok(Params::new(
            self.chunk_size.unwrap_or(defaults.chunk_size()),
            self.wrapper.unwrap_or(defaults.wrapper()),
        )?
        .with_compression(self.compression.unwrap_or(defaults.compression())))
    }

    /// Refuses a parameter given that is not the store's own, as its
    /// descriptor records them.
    fn check_against(&self, recorded: &Params) -> Result<()> {
        let mut differ = Vec::new();
        if let Some(n) = self.chunk_size.filter(|n| *n != recorded.chunk_size()) {
            differ.push(format!(
                "--chunk-size {n} (the store's is {})",
                recorded.chunk_size()
            ));
        }
        if let Some(w) = self.wrapper.filter(|w| *w != recorded.wrapper()) {
            differ.push(format!(
                "--wrapper {w} (the store's is {})",
                recorded.wrapper()
            ));
        }
        if let Some(c) = self.compression.filter(|c| *c != recorded.compression()) {
            differ.push(format!(
                "--compression {c} (the store's is {})",
                recorded.compression()
            ));
        }
        if !differ.is_empty() {
            bail!(
                "{}: not what the store was made with, as its backend's descriptor records it \
                 (authenticated by the key); leave {} out, and the store's own are used. \
                 Nothing was written",
                differ.join(", "),
                if differ.len() == 1 { "it" } else { "them" }
            );
        }
        Ok(())
    }
}

/// What was attached: the store's parameters, and whether they came from
/// its backend's descriptor (else they are as given, unconfirmed).
pub struct Attached {
    pub params: Params,
    pub from_descriptor: bool,
    /// Why a descriptor the backend keeps was not used (it did not read
    /// as one, or the key did not authenticate it), if one was not.
    pub descriptor_note: Option<String>,
}

/// Makes `path/config.toml` for the existing store on `how.backend` whose
/// key `how.key` gives, once that key has opened the store; on any
/// failure, `path` is left as it was.
pub fn attach(path: &Path, mut how: Attach) -> Result<Attached> {
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
    // The backend before the directory: a wrong URL leaves nothing behind.
    let network = match embedded {
        true => None,
        false => Some(open::open_network_backend(&how.backend, Access::Write)?),
    };
    let stored = read_descriptor(path, network.as_deref(), &shown)?;
    let mut salt_from_descriptor = false;
    if let KeySource::Kms { salt, .. } = &mut how.key
        && salt.is_none()
    {
        match stored.claimed_kms_salt() {
            Some(claimed) => {
                *salt = Some(seccs_core::hexenc::encode(&claimed));
                salt_from_descriptor = true;
            }
            None => {
                let why = match &stored {
                    Stored::Unreadable(note) => {
                        format!("no store descriptor it can use ({note})")
                    }
                    Stored::Read(_) => "a store descriptor without a salt".to_owned(),
                    Stored::Absent => "no store descriptor (a store made before descriptors, \
                         whose last writer has not opened it since)"
                        .to_owned(),
                };
                bail!(
                    "--attach with --key-from-kms needs --kms-salt HEX here: backend {shown} \
                     keeps {why}. The salt is `salt` under [key] in the store's config.toml \
                     (32 hex digits); the store key is derived from the DEK with it"
                )
            }
        }
    }
    let key = load_key(path, &how)?;
    // The marker first: a wrong key is said as the marker says it.
    let marker = network
        .as_deref()
        .map(|backend| check_marker(backend, &shown, &key))
        .transpose()
        .map_err(|e| match salt_from_descriptor {
            // The salt is the one thing taken from the descriptor before
            // the key can authenticate it.
            true => e.context(format!(
                "the key-service salt was taken from the store descriptor on backend {shown}, \
                 which nothing authenticates before the key is known: if it was changed there, \
                 give the store's own salt with --kms-salt HEX"
            )),
            false => e,
        })?;
    // A descriptor that does not authenticate is not used, and no reason
    // to refuse on its own: the key still has to prove itself by the
    // marker or the store's records, and a descriptor a backend's owner
    // changed must not keep a store from being attached.
    let unauthenticated = format!(
        "backend {shown} keeps a store descriptor that the key given does not authenticate"
    );
    let (params, from_descriptor, descriptor_note) = match stored {
        Stored::Read(read) => match read.verify(&key) {
            Ok(recorded) => {
                how.given.check_against(&recorded.params)?;
                (recorded.params, true, None)
            }
            Err(_) => {
                let why = match marker {
                    Some(Marker::Ours) => {
                        ", though the key is the store's (its marker says so): the descriptor \
                         was changed on the backend"
                    }
                    _ => {
                        ": either the key is not this store's (a wrong key file, another KEK or \
                          salt, another share tag?), or the descriptor was changed on the backend"
                    }
                };
                let params = all_given(&how.given, &format!("{unauthenticated}{why}"))?;
                (
                    params,
                    false,
                    Some(format!("{unauthenticated}, so it is not used")),
                )
            }
        },
        Stored::Unreadable(note) => (all_given(&how.given, &note)?, false, Some(note)),
        Stored::Absent => (how.given.or_defaults()?, false, None),
    };
    let mut config = StoreConfig::new(params, shown.clone(), how.key.clone());
    if let Some(marker) = marker {
        match marker {
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
    if from_descriptor {
        // Authenticated by the key: what a clean verify would confirm.
        config.params_check = Some(dir::params_check(
            &key,
            params.chunk_size(),
            params.wrapper().name(),
        ));
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
    Ok(Attached {
        params,
        from_descriptor,
        descriptor_note,
    })
}

/// What the store's backend keeps where its descriptor would be.
enum Stored {
    /// Nothing: a store made before descriptors.
    Absent,
    /// Something that does not read as a descriptor, and why (a note).
    Unreadable(String),
    /// A descriptor, not yet authenticated.
    Read(Unverified),
}

impl Stored {
    /// The salt a descriptor claims, untrusted (see `Unverified`).
    fn claimed_kms_salt(&self) -> Option<[u8; 16]> {
        match self {
            Stored::Read(read) => read.claimed_kms_salt(),
            Stored::Absent | Stored::Unreadable(_) => None,
        }
    }
}

fn read_descriptor(path: &Path, network: Option<&dyn Backend>, shown: &str) -> Result<Stored> {
    let read = match network {
        Some(backend) => backend.read_descriptor(),
        None => seccs_store::backend::EmbeddedBackend::read_descriptor_in(&path.join("db")),
    };
    let bytes = read.with_context(|| format!("cannot read the store descriptor of {shown}"))?;
    Ok(match bytes.map(|bytes| Descriptor::parse(&bytes)) {
        None => Stored::Absent,
        Some(Ok(read)) => Stored::Read(read),
        Some(Err(e)) => Stored::Unreadable(format!("{e} (on backend {shown}), so it is not used")),
    })
}

/// The parameters given where a descriptor is there but not one to use:
/// the defaults may well not be the store's, and nodes put with others
/// would be another store's, so every parameter must be given.
fn all_given(given: &GivenParams, why: &str) -> Result<Params> {
    if !given.all() {
        bail!(
            "{why}. With the store's own key, give its --chunk-size, --wrapper and \
             --compression (all three) to attach it, then run `seccs verify`. Nothing was \
             written"
        );
    }
    given.or_defaults()
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
