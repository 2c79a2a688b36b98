//! The per-file key: 16, 24 or 32 bytes for AES-128/192/256-GCM.

use seccs_core::SecretKey;
use seccs_core::kdf::{self, Label};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;

/// The AES key size of an ephemeral file, which picks the AEAD suite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeySize {
    /// 16 bytes: AES-128-GCM.
    Aes128,
    /// 24 bytes: AES-192-GCM.
    Aes192,
    /// 32 bytes: AES-256-GCM (the default).
    #[default]
    Aes256,
}

impl KeySize {
    /// The key length in bytes (16, 24 or 32).
    pub fn key_len(self) -> usize {
        match self {
            KeySize::Aes128 => 16,
            KeySize::Aes192 => 24,
            KeySize::Aes256 => 32,
        }
    }

    /// The key size for a length in bytes.
    pub fn from_len(len: usize) -> Result<Self, Error> {
        match len {
            16 => Ok(KeySize::Aes128),
            24 => Ok(KeySize::Aes192),
            32 => Ok(KeySize::Aes256),
            n => Err(Error::KeySize(n)),
        }
    }
}

/// The key of one ephemeral file: 16, 24 or 32 secret bytes.
///
/// Zeroized on drop, redacted in `Debug`, not `Copy`, compared in constant
/// time. A fresh random key is made for every file unless the caller brings
/// one with [`Builder::key`](crate::Builder::key); [`persist`] hands it back,
/// because the persisted file opens only with it.
///
/// [`persist`]: crate::NamedEphemeralFile::persist
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct FileKey {
    bytes: [u8; 32],
    #[zeroize(skip)]
    size: KeySize,
}

impl FileKey {
    /// A fresh key of the given size from the operating system's generator.
    pub fn generate(size: KeySize) -> Result<Self, Error> {
        let mut key = Self {
            bytes: [0; 32],
            size,
        };
        getrandom::fill(&mut key.bytes[..size.key_len()])?;
        Ok(key)
    }

    /// Copies a key out of a slice of 16, 24 or 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let size = KeySize::from_len(bytes.len())?;
        let mut key = Self {
            bytes: [0; 32],
            size,
        };
        key.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(key)
    }

    /// The key size, which picks the AEAD suite.
    pub fn size(&self) -> KeySize {
        self.size
    }

    /// The raw key bytes. Callers must not copy them into unzeroized storage.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes[..self.size.key_len()]
    }
}

/// The HKDF label of file keys derived from a seccs key; part of what
/// [`FileKey::derived`] promises (the same root and purpose give the same
/// key in every build).
const DERIVED_LABEL: Label = Label::Custom("seccs/v1/tempfile/file-key");

impl FileKey {
    /// An AES-256 file key of its own, derived from a seccs [`SecretKey`]
    /// (a store key, a DEK) for `purpose`: HKDF-SHA-256 of `root` under the
    /// label `seccs/v1/tempfile/file-key`, with `purpose` as HKDF's salt.
    /// Another purpose gives an unrelated key, and the root's own bytes
    /// never key a file, so a key that seals something else is not also
    /// used with AES-GCM's random nonces here. The same root and purpose
    /// give the same key, so a persisted file reopens with it.
    pub fn derived(root: &SecretKey, purpose: &[u8]) -> Self {
        let key = kdf::derive_salted(root, DERIVED_LABEL, purpose);
        Self {
            bytes: *key.expose_secret(),
            size: KeySize::Aes256,
        }
    }
}

impl PartialEq for FileKey {
    fn eq(&self, other: &Self) -> bool {
        self.size == other.size && bool::from(self.expose_secret().ct_eq(other.expose_secret()))
    }
}

impl Eq for FileKey {}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKey")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}
