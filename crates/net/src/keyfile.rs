//! Store keys kept on the share network, so that no single machine holds a
//! content store's key (`seccs init --key-from-share TAG`).
//!
//! A key file is `"SCKF" | version u8 = 1 | key [32]`, saved like any file:
//! password layer, data key split t-of-n, erasure-coded.
//!
//! The blocking functions run their own single-threaded tokio runtime and must
//! not be called from inside a runtime; async code uses [`save_key_with`] and
//! [`load_key_with`].

use seccs_core::{KEY_LEN, SecretKey};
use zeroize::Zeroizing;

use crate::client::{Client, SaveReport};
use crate::config::Config;
use crate::crypto::Password;
use crate::error::Error;

const KEY_MAGIC: [u8; 4] = *b"SCKF";
const KEY_VERSION: u8 = 1;

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start tokio runtime", e))
}

/// Saves `key` under `tag` as a new version (async).
pub async fn save_key_with(
    client: &Client,
    tag: &str,
    key: &SecretKey,
    password: &Password,
) -> Result<SaveReport, Error> {
    let mut file = Zeroizing::new(Vec::with_capacity(5 + KEY_LEN));
    file.extend_from_slice(&KEY_MAGIC);
    file.push(KEY_VERSION);
    file.extend_from_slice(key.expose_secret());
    client.save(tag, &file, password).await
}

/// Loads the latest key saved under `tag` (async): the newest version that
/// rebuilds, as [`Client::load`] finds it; a newer one that did not is warned
/// about, never passed over in silence.
pub async fn load_key_with(
    client: &Client,
    tag: &str,
    password: &Password,
) -> Result<SecretKey, Error> {
    let report = client.load(tag, None, password).await?;
    for (newer, why) in &report.newer_failed {
        tracing::warn!(
            "key {tag}@{newer} could not be rebuilt ({why}); the older {tag}@{} was loaded",
            report.version
        );
    }
    let data = Zeroizing::new(report.data);
    if data.len() != 5 + KEY_LEN || data[..4] != KEY_MAGIC || data[4] != KEY_VERSION {
        return Err(Error::NotAKeyFile);
    }
    Ok(SecretKey::from_slice(&data[5..])?)
}

/// Saves `key` under `tag` on the network of `config` (blocking).
pub fn save_key(
    config: &Config,
    tag: &str,
    key: &SecretKey,
    password: &Password,
) -> Result<SaveReport, Error> {
    runtime()?.block_on(async {
        let client = Client::connect(config).await?;
        save_key_with(&client, tag, key, password).await
    })
}

/// Loads the latest key saved under `tag` on the network of `config` (blocking).
pub fn load_key(config: &Config, tag: &str, password: &Password) -> Result<SecretKey, Error> {
    runtime()?.block_on(async {
        let client = Client::connect(config).await?;
        load_key_with(&client, tag, password).await
    })
}
