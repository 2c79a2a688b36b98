//! Subkey derivation: HKDF-SHA-256 from one root key, one label per use.
//!
//! Every use of a key in seccs has its own [`Label`], so that a subkey for one
//! purpose (say, the chunker's hash table, whose effects an observer can see in
//! chunk lengths) never equals or reveals a subkey for another (node
//! encryption). Labels are part of the format: changing one changes every
//! derived key, so they are fixed strings, never renamed.

use hkdf::Hkdf;
use sha2::Sha256;

use crate::key::SecretKey;

/// A use of a derived key. The string of each label is part of seccs' formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Label {
    /// Content store: node encryption / authentication (the crypto wrapper).
    NodeEncryption,
    /// Content store: the chunker's keyed rolling-hash table.
    ChunkerSeed,
    /// Content store: encryption of the name catalog.
    CatalogEncryption,
    /// Content store: keyed index of catalog names.
    CatalogIndex,
    /// Key service: the key that seals a DEK under its KEK.
    KekWrap,
    /// Share network: the data key layer.
    ShareData,
    /// A caller-defined use; the string must be unique to that use.
    Custom(&'static str),
}

impl Label {
    /// The HKDF `info` string of this label.
    pub fn info(&self) -> &'static str {
        match self {
            Label::NodeEncryption => "seccs/v1/store/node-encryption",
            Label::ChunkerSeed => "seccs/v1/store/chunker-seed",
            Label::CatalogEncryption => "seccs/v1/store/catalog-encryption",
            Label::CatalogIndex => "seccs/v1/store/catalog-index",
            Label::KekWrap => "seccs/v1/kms/kek-wrap",
            Label::ShareData => "seccs/v1/share/data",
            Label::Custom(s) => s,
        }
    }
}

/// Derives the 32-byte subkey of `root` for `label`.
pub fn derive(root: &SecretKey, label: Label) -> SecretKey {
    SecretKey::filled(|out| derive_into(root, label, out))
}

/// Derives `out.len()` bytes of key material of `root` for `label`.
///
/// Use this for keys that are not 32 bytes (AES-SIV with AES-256 takes 64).
/// `out` must be at most 8160 bytes (255 SHA-256 blocks), which every seccs
/// use is far below.
pub fn derive_into(root: &SecretKey, label: Label, out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(b"seccs"), root.expose_secret());
    // Cannot fail: every caller asks for far less than HKDF's 255-block limit.
    hk.expand(label.info().as_bytes(), out)
        .expect("HKDF output length is within 255 blocks");
}

/// Derives the 32-byte key of `root` for `label` with `salt` (HKDF's salt):
/// for one root shared by several users that must each get a key of their
/// own, such as one DEK of the key service behind several stores.
pub fn derive_salted(root: &SecretKey, label: Label, salt: &[u8]) -> SecretKey {
    let hk = Hkdf::<Sha256>::new(Some(salt), root.expose_secret());
    // Cannot fail: 32 bytes is one block.
    SecretKey::filled(|out| {
        hk.expand(label.info().as_bytes(), out)
            .expect("HKDF output length is within 255 blocks");
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KEY_LEN;

    /// HKDF keeps HMAC states, SHA-256 states that absorbed the root key:
    /// from them every label's subkey could be computed. With `sha2`'s
    /// `zeroize` feature (set in the workspace) they wipe themselves on drop.
    #[test]
    fn the_hash_states_that_absorb_a_key_are_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<Sha256>();
    }

    #[test]
    fn each_label_gives_a_different_key() {
        let root = SecretKey::from_bytes([7; KEY_LEN]);
        let labels = [
            Label::NodeEncryption,
            Label::ChunkerSeed,
            Label::CatalogEncryption,
            Label::CatalogIndex,
            Label::KekWrap,
            Label::ShareData,
            Label::Custom("test/other"),
        ];
        for (i, a) in labels.iter().enumerate() {
            for b in &labels[i + 1..] {
                assert_ne!(derive(&root, *a), derive(&root, *b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn a_salt_gives_each_user_of_one_root_a_key_of_its_own() {
        let root = SecretKey::from_bytes([3; KEY_LEN]);
        let label = Label::Custom("test/salted");
        let a = derive_salted(&root, label, b"store a");
        assert_eq!(a, derive_salted(&root, label, b"store a"));
        assert_ne!(a, derive_salted(&root, label, b"store b"));
        assert_ne!(a, derive(&root, label));
    }

    #[test]
    fn derivation_is_deterministic_and_depends_on_the_root() {
        let a = SecretKey::from_bytes([1; KEY_LEN]);
        let b = SecretKey::from_bytes([2; KEY_LEN]);
        assert_eq!(
            derive(&a, Label::ChunkerSeed),
            derive(&a, Label::ChunkerSeed)
        );
        assert_ne!(
            derive(&a, Label::ChunkerSeed),
            derive(&b, Label::ChunkerSeed)
        );
    }
}
