//! Subkey derivation: HKDF-SHA-256 from one root key, one label per use.
//!
//! Every use of a key in seccs has its own [`Label`], so that a subkey for one
//! purpose (say, the chunker's hash table, whose effects an observer can see in
//! chunk lengths) never equals or reveals a subkey for another (node
//! encryption). Labels are part of the format: changing one changes every
//! derived key, so they are fixed strings, never renamed.
//!
//! # The derivation, as the formats' specs write it
//!
//! `HKDF(K, "label")` in a format's spec means [`derive()`]: HKDF-SHA-256
//! (RFC 5869) with input key material `K`, **salt the five ASCII bytes
//! `seccs`**, info the label's ASCII string, and 32 bytes of output unless
//! the spec gives another length ([`derive_into`]; AES-SIV's 64-byte key).
//! `HKDF(K, "label", salt = S)` is [`derive_salted`]: the same with salt `S`
//! in place of `seccs`. The labels in use, and where each is specified:
//!
//! ```text
//! seccs/v1/store/node-encryption     node sealing key (64 bytes for AES-SIV)   seccs-store wrapper
//! seccs/v1/store/chunker-seed        chunker's keyed hash table seed           seccs-store chunker
//! seccs/v1/store/catalog-encryption  catalog record AES-SIV key (64 bytes)     seccs-store catalog
//! seccs/v1/store/catalog-index       catalog index key (names to record keys)  seccs-store catalog
//! seccs/v1/store/key-check           config.toml key_check (16 bytes)          seccs-store dir
//! seccs/v1/store/params-check        config.toml params_check's HMAC key       seccs-store dir
//! seccs/v1/store/descriptor          the store descriptor's HMAC key           seccs-store descriptor
//! seccs/v1/store/key-from-kms        a store key from a KMS DEK, salted        seccs-store dir
//! seccs/v1/kms/kek-wrap              a DEK file's wrapping key                 seccs-kms keyfile
//! seccs/v1/kms/named-key-wrap        a named key file's wrapping key           seccs-kms keyfile
//! seccs/v1/kms/message               a message ciphertext's key                seccs-kms ciphertext
//! seccs/v1/kms/file                  `kms encrypt --kek`'s stream key          seccs-kms client
//! seccs/v1/stream                    a stream's key (see below)                seccs-core stream
//! ```
//!
//! The stream format ([`crate::stream`]) derives with its own info string
//! (`seccs/v1/stream` followed by the header and the caller's context) and
//! the share network (`seccs-net`) with HKDF of its own; their specs give
//! the details. The label `seccs/v1/share/data` ([`Label::ShareData`]) is
//! reserved and derives no key in any format yet.
//!
//! A known-answer test (`derivation_matches_its_spec`) pins these
//! definitions, so that a change of salt or label fails it.

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
    /// Reserved for the share network (`seccs/v1/share/data`); no format
    /// derives a key with it yet.
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

    /// `HKDF(0x42 × 32, "seccs/v1/kms/kek-wrap")`, computed outside seccs
    /// (Python's `hmac` and `hashlib`, RFC 5869 by hand).
    const KEK_WRAP_VECTOR: &str =
        "b22076d385e7928df07d31bcbe65bbd873cbd95ee2ff46bfe8ee81d944271334";

    /// The spec above, computed with the `hkdf` crate directly: a change
    /// of salt, hash or label string in `derive` fails this.
    #[test]
    fn derivation_matches_its_spec() {
        let root = SecretKey::from_bytes([0x42; KEY_LEN]);
        let spec = |salt: &[u8], info: &str, len: usize| {
            let mut out = vec![0; len];
            Hkdf::<Sha256>::new(Some(salt), &[0x42; KEY_LEN])
                .expand(info.as_bytes(), &mut out)
                .expect("length");
            out
        };
        for (label, info) in [
            (Label::NodeEncryption, "seccs/v1/store/node-encryption"),
            (Label::ChunkerSeed, "seccs/v1/store/chunker-seed"),
            (
                Label::CatalogEncryption,
                "seccs/v1/store/catalog-encryption",
            ),
            (Label::CatalogIndex, "seccs/v1/store/catalog-index"),
            (Label::KekWrap, "seccs/v1/kms/kek-wrap"),
            (Label::ShareData, "seccs/v1/share/data"),
        ] {
            assert_eq!(
                derive(&root, label).expose_secret()[..],
                spec(b"seccs", info, 32)[..]
            );
            let mut long = [0; 64];
            derive_into(&root, label, &mut long);
            assert_eq!(long[..], spec(b"seccs", info, 64)[..]);
            assert_eq!(
                derive_salted(&root, label, b"salt").expose_secret()[..],
                spec(b"salt", info, 32)[..]
            );
        }
        // One fixed vector, so that the hkdf crate itself is pinned too.
        assert_eq!(
            hex::encode(derive(&root, Label::KekWrap).expose_secret()),
            KEK_WRAP_VECTOR
        );
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
