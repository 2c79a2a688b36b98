//! Foundations shared by every part of seccs.
//!
//! - [`SecretKey`]: a 32-byte key that is zeroized on drop, redacted in
//!   `Debug`, never `Copy`, and compared in constant time.
//! - [`kdf`]: HKDF-SHA-256 subkey derivation with one [`kdf::Label`] per use,
//!   so that no two uses of the store key ever share a subkey.
//! - [`stream`]: the segmented stream format (STREAM, as in age and Tink)
//!   for files and streams of any length.
//! - [`hexenc`]: lowercase hex, the form in which references and key ids are
//!   shown to users.
//! - [`redact`]: URLs shown without their password.
//! - [`lockfile`]: a directory one process at a time may use.
//!
//! ```
//! use seccs_core::{SecretKey, kdf::{self, Label}};
//!
//! let store_key = SecretKey::generate()?;
//! let node_key = kdf::derive(&store_key, Label::NodeEncryption);
//! let chunker_key = kdf::derive(&store_key, Label::ChunkerSeed);
//! assert_ne!(node_key, chunker_key);
//! # Ok::<(), seccs_core::Error>(())
//! ```

mod error;
pub mod file_kind;
pub mod hexenc;
pub mod kdf;
mod key;
pub mod lockfile;
pub mod redact;
pub mod signals;
pub mod stream;

pub use error::Error;
pub use key::{KEY_LEN, SecretKey};

/// Fills `buf` from the operating system's random number generator.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|e| Error::Random(e.to_string()))
}
