//! The one key type of seccs: 32 secret bytes with the hygiene keys need.
//!
//! Design rules, each a past mistake elsewhere: no derived `Debug` (keys end up
//! in logs), no `Copy` (copies escape zeroization), `PartialEq` in constant
//! time (timing leaks key bytes), zeroized on drop.

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;

/// Length of every seccs key in bytes.
pub const KEY_LEN: usize = 32;

/// A 32-byte secret key, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self, Error> {
        let mut key = Self([0u8; KEY_LEN]);
        crate::random_bytes(&mut key.0)?;
        Ok(key)
    }

    /// Takes ownership of raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A key whose bytes `fill` writes in place, so that no copy of them is
    /// left outside the key (as a derived array passed by value would be).
    pub(crate) fn filled(fill: impl FnOnce(&mut [u8; KEY_LEN])) -> Self {
        let mut key = Self([0u8; KEY_LEN]);
        fill(&mut key.0);
        key
    }

    /// A key whose bytes `fill` writes in place, or `fill`'s error (the
    /// bytes written so far are then wiped): for a key decoded or
    /// decrypted straight into its final place, which leaves no copy on
    /// the stack as [`SecretKey::from_bytes`] of a local array does.
    pub fn try_filled<E>(
        fill: impl FnOnce(&mut [u8; KEY_LEN]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let mut key = Self([0u8; KEY_LEN]);
        fill(&mut key.0)?;
        Ok(key)
    }

    /// Copies a key out of a slice that must be exactly [`KEY_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != KEY_LEN {
            return Err(Error::KeyLength {
                expected: KEY_LEN,
                actual: bytes.len(),
            });
        }
        // Copied into its place: an array built here and moved into the
        // key would leave its bytes in this frame.
        Ok(Self::filled(|key| key.copy_from_slice(bytes)))
    }

    /// The raw key bytes. Callers must not copy them into unzeroized storage.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretKey {}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_key_bytes() {
        let key = SecretKey::from_bytes([0xab; KEY_LEN]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }

    #[test]
    fn generated_keys_differ() -> Result<(), Error> {
        assert_ne!(SecretKey::generate()?, SecretKey::generate()?);
        Ok(())
    }

    #[test]
    fn from_slice_rejects_wrong_length() {
        assert!(matches!(
            SecretKey::from_slice(&[0u8; 31]),
            Err(Error::KeyLength {
                expected: 32,
                actual: 31
            })
        ));
    }
}
