//! seccs key service: KEK/DEK key management after keas.kmi, with the
//! seed's flaws fixed and a NIST SP 800-57 key lifecycle added.
//!
//! - [`Facility`]: creates KEK/DEK pairs and stores each DEK sealed under its
//!   KEK (one file per key, written atomically, mode 0600); the caller keeps
//!   the KEK.
//! - [`server`]: the HTTPS server (`seccs kms serve`): the seed's `/`,
//!   `/new` and `/key` routes byte for byte, and a JSON API under `/v1/`.
//! - [`client`]: [`client::ClientConfig`] (HTTPS only, CA file or pinned
//!   fingerprint), [`client::KmsClient`], the
//!   [`client::LocalFacility`] that encrypts locally with DEKs it caches in
//!   the process's memory (never on disk), and [`client::fetch_store_key`]
//!   for content stores whose key lives here (fetched at each open of the
//!   store: the server must be up).
//! - [`lifecycle`]: named keys with versions and states.
//! - [`Encrypted`]: a serde wrapper for values stored encrypted.
//!
//! ```
//! use seccs_kms::{Facility, ciphertext::MessageCipher};
//!
//! let dir = tempfile::tempdir()?;
//! let facility = Facility::open(dir.path())?;
//! let kek = facility.generate()?;            // handed to the caller
//! let dek = facility.dek(&kek)?;             // whoever shows the KEK gets the DEK
//! let cipher = MessageCipher::new(&dek, 0);
//! let sealed = cipher.seal(b"card number", b"customer 42")?;
//! let opened = cipher.open(&sealed, b"customer 42")?; // zeroized on drop
//! assert_eq!(&opened[..], b"card number");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The seed's flaws and where each is fixed (each has a test named after it):
//!
//! | seed flaw | fix |
//! |---|---|
//! | RSA-2048 KEKs, PKCS#1 v1.5 (≈4 keys/s) | 32-byte random KEK, AEAD wrap ([`keyfile`]) |
//! | MD5-based key derivation, MD5 key ids | HKDF-SHA-256, SHA-256 key ids ([`keyfile`]) |
//! | AES-CBC, fixed IV, no authentication | AES-256-GCM under salted subkeys (each seals at most 2^30 messages), random nonce, context as AD ([`ciphertext`]) |
//! | `https://` silently sent over plain HTTP | TLS always; `http://` only to loopback with an explicit flag ([`client`]) |
//! | a 404 body cached as a DEK | only a 200 with exactly 32 bytes is a DEK; errors never cached ([`client`]) |
//! | `encrypt_file` space padding corrupts files | segmented stream format, exact lengths ([`seccs_core::stream`]) |
//! | key files written in place, umask mode | temp file, fsync, rename, mode 0600 (`atomic`) |

pub mod api;
mod atomic;
pub mod audit;
pub mod bench;
pub mod ciphertext;
pub mod client;
mod dir;
mod encrypted;
mod error;
pub mod facility;
mod files;
pub mod keyfile;
pub mod keyring;
pub mod lifecycle;
pub mod server;

pub use encrypted::Encrypted;
pub use error::KmsError;
pub use facility::Facility;
