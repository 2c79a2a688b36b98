//! Store keys kept on the share network, so that no single machine holds a
//! content store's key (`seccs init --key-from-share TAG`).
//!
//! A key file is `"SCKF" | version u8 = 1 | key [32]`, saved like any file:
//! password layer, data key split t-of-n, erasure-coded.
//!
//! A key is saved as its tag's version 1, and a store loads that version,
//! whatever a later `share save` to the tag added. A save of a key is
//! stricter than a save of a file:
//! - the tag must be new ([`Error::TagExists`], [`Error::TagUsedBefore`]):
//!   a new version over another file or key would become that store's key.
//!   As with versions, what at least t servers say counts: a claim of fewer
//!   is passed over with a warning when the others are enough for the save,
//!   so that one faulty or forged server cannot refuse every new tag;
//! - at least 2 servers must be needed to rebuild it
//!   ([`Error::KeyThresholdTooLow`]), or one machine holds the key;
//! - under the default threshold, at least one server must be spare
//!   ([`Error::KeyNoSpareServer`]): a t-of-t key is lost with any one
//!   server's disk, and the store with it. A threshold set in the config
//!   is taken as the user's choice;
//! - the password may not be empty ([`Error::EmptyPassword`]), and the KDF
//!   must be at least [`Kdf::KEY_FLOOR`]'s cost ([`Error::WeakKdf`]).
//!
//! Loads check none of these, so keys saved before stay loadable.
//!
//! The blocking functions run their own single-threaded tokio runtime and must
//! not be called from inside a runtime; async code uses [`save_key_with`] and
//! [`load_key_with`].

use seccs_core::{KEY_LEN, SecretKey};
use zeroize::Zeroizing;

use crate::client::{Client, SaveReport, SaveRules, Secret};
use crate::config::Config;
use crate::crypto::{Kdf, Password};
use crate::error::Error;

const KEY_MAGIC: [u8; 4] = *b"SCKF";
const KEY_VERSION: u8 = 1;
/// The least threshold of a key: no single server's records rebuild it.
const MIN_KEY_THRESHOLD: usize = 2;

/// The checks of a key save that need no network: a non-empty password and
/// a KDF at or above the floor.
fn check_key_secrets(kdf: &Kdf, password: &Password) -> Result<(), Error> {
    if password.expose_secret().is_empty() {
        return Err(Error::EmptyPassword);
    }
    kdf.check_key_floor()
}

/// Refuses a blocking call, named `what`, on a thread inside a tokio
/// runtime: its own runtime's `block_on` would panic there.
fn ensure_not_in_runtime(what: &'static str) -> Result<(), Error> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Err(Error::InsideAsyncRuntime(what)),
        Err(_) => Ok(()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start tokio runtime", e))
}

/// Saves `key` under `tag`, which no server may hold yet, as version 1
/// (async). Refused, with nothing stored, when the tag exists, when fewer
/// than 2 servers would be needed to rebuild the key, when the default
/// threshold would need every server online, or when the password
/// is empty or the client's KDF below the floor (see the module docs).
pub async fn save_key_with(
    client: &Client,
    tag: &str,
    key: &SecretKey,
    password: &Password,
) -> Result<SaveReport, Error> {
    check_key_secrets(&client.options().kdf, password)?;
    let mut file = Zeroizing::new(Vec::with_capacity(5 + KEY_LEN));
    file.extend_from_slice(&KEY_MAGIC);
    file.push(KEY_VERSION);
    file.extend_from_slice(key.expose_secret());
    let rules = SaveRules {
        min_threshold: MIN_KEY_THRESHOLD,
        new_tag: true,
        spare_server: true,
    };
    client
        .save_with(
            tag,
            crate::sharing::split_buffer(&file),
            Secret::Password(password),
            rules,
        )
        .await
}

/// Loads the key saved under `tag` (async): version 1, the one
/// [`save_key_with`] saves, whatever was saved over it later (a `share
/// save` to the same tag must not change a store's key); for a key an
/// earlier build saved at a later version, when version 1 is absent or not
/// a key, the newest version that rebuilds, as [`Client::load`] finds it
/// (a newer one that did not is warned about, never passed over in
/// silence). When version 1 is absent and that newest version is not a key
/// either, the error is [`Error::KeyVersionMissing`]: version 1 is gone or
/// offline, which a file at a later version does not explain.
pub async fn load_key_with(
    client: &Client,
    tag: &str,
    password: &Password,
) -> Result<SecretKey, Error> {
    let first_missing = match client.load(tag, Some(1), password).await {
        Ok(report) => match key_of(report.data) {
            Err(Error::NotAKeyFile) => false,
            loaded => return loaded,
        },
        Err(Error::NotFound(_)) => true,
        Err(e) => return Err(e),
    };
    let report = client.load_or_older(tag, password).await?;
    for (newer, why) in &report.newer_failed {
        tracing::warn!(
            "key {tag}@{newer} could not be rebuilt ({why}); the older {tag}@{} was loaded",
            report.version
        );
    }
    let latest = report.version;
    match key_of(report.data) {
        Err(Error::NotAKeyFile) if first_missing => Err(Error::KeyVersionMissing {
            tag: tag.to_owned(),
            latest,
        }),
        loaded => loaded,
    }
}

/// The key a key file holds.
fn key_of(data: Vec<u8>) -> Result<SecretKey, Error> {
    let data = Zeroizing::new(data);
    if data.len() != 5 + KEY_LEN || data[..4] != KEY_MAGIC || data[4] != KEY_VERSION {
        return Err(Error::NotAKeyFile);
    }
    Ok(SecretKey::from_slice(&data[5..])?)
}

/// Saves `key` under `tag` on the network of `config` (blocking), with the
/// checks of [`save_key_with`]. On a thread inside a tokio runtime
/// (including `spawn_blocking`) it fails with
/// [`Error::InsideAsyncRuntime`]: use [`save_key_with`] there.
pub fn save_key(
    config: &Config,
    tag: &str,
    key: &SecretKey,
    password: &Password,
) -> Result<SaveReport, Error> {
    ensure_not_in_runtime("seccs_net::keyfile::save_key")?;
    // Before the broker is reached: these fail the same whatever it says.
    check_key_secrets(&config.kdf, password)?;
    runtime()?.block_on(async {
        let client = Client::connect(config).await?;
        save_key_with(&client, tag, key, password).await
    })
}

/// Loads the key saved under `tag` on the network of `config` (blocking),
/// as [`load_key_with`] chooses it. On a thread inside a tokio runtime
/// (including `spawn_blocking`) it fails with
/// [`Error::InsideAsyncRuntime`]: use [`load_key_with`] there.
pub fn load_key(config: &Config, tag: &str, password: &Password) -> Result<SecretKey, Error> {
    ensure_not_in_runtime("seccs_net::keyfile::load_key")?;
    runtime()?.block_on(async {
        let client = Client::connect(config).await?;
        load_key_with(&client, tag, password).await
    })
}
