//! Crypto wrappers: how a chunk-tree node becomes a (digest, stored value)
//! pair, and back.
//!
//! The digest is the node's key in the backend, so equal nodes deduplicate.
//! Every wrapper authenticates the node's [`NodeContext`] (its height, and for
//! the distinguished-root wrappers whether it is a root) along with its bytes:
//! a leaf cannot be passed off as a superchunk, and with a distinguished-root
//! wrapper an inner node's digest is not a valid content reference.
//!
//! | name | Python seccs | digest | value | confidentiality |
//! |---|---|---|---|---|
//! | `aes-siv` (default) | `AES_SIV_256` | SIV tag (16 B) | ciphertext | yes; reveals equality of whole nodes, their sizes and kinds (leaf, compressed leaf, superchunk) |
//! | `aes-siv-dr` | `AES_SIV_256_DISTINGUISHED_ROOT` | SIV tag | ciphertext | yes |
//! | `hmac-sha-256` | `HMAC_SHA_256` | HMAC (32 B) | plaintext | no |
//! | `hmac-sha-256-dr` | `HMAC_SHA_256_DISTINGUISHED_ROOT` | HMAC | plaintext | no |
//! | `sha-256` | `SHA_256` | SHA-256 (32 B) | plaintext | no; integrity relative to a trusted reference only |
//!
//! Exactly, for a node of kind `k` at height `h` (0 for leaves), with `r`
//! = 1 for a content's root under a `-dr` wrapper and 0 otherwise:
//!
//! ```text
//! body   k = 0x00 leaf: the content bytes
//!        k = 0x01 compressed leaf: one zstd frame of them (only when more than 8 bytes shorter)
//!        k = 0x02 superchunk: (child digest ‖ child content length u64 BE)*
//! AD     = [1, k, h, r]  (4 bytes; the 1 is this layout's version)
//! key    = HKDF(store key, "seccs/v1/store/node-encryption"), 64 bytes for AES-SIV, 32 for HMAC
//!          (seccs_core::kdf: HKDF-SHA-256, salt "seccs")
//! aes-siv       digest = SIV tag, value = k ‖ ciphertext, where (tag, ciphertext) =
//!               AES-256-SIV(key, associated data = [AD] as its one header, body)
//! hmac-sha-256  digest = HMAC-SHA-256(key, AD ‖ body), value = k ‖ body
//! sha-256       digest = SHA-256(AD ‖ body) (r always 0), value = k ‖ body
//! ```
//!
//! The backend holds each node's value under its digest; a content's
//! reference ([`crate::ContentRef`]) is its root's digest followed by its
//! length (u64 BE). The body never holds the kind byte; the AD carries it.
//! Any other kind, a leaf above height 0 or a superchunk at it, fails to
//! read. A content's height, which its reference does not carry, follows
//! from its length and the store's parameters ([`crate::Params::height`]).

mod aes_siv;
mod hmac_sha256;
mod sha256;

use std::fmt;
use std::str::FromStr;

use seccs_core::SecretKey;

pub use aes_siv::AesSivWrapper;
pub(crate) use aes_siv::SivPool;
pub use hmac_sha256::HmacSha256Wrapper;
pub use sha256::Sha256Wrapper;

/// Where a node sits in its tree and what kind it is; authenticated with the
/// node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeContext {
    /// The node kind byte (leaf, compressed leaf, superchunk). It is stored
    /// in the clear as the value's first byte, so that sealing needs no copy
    /// of the node's bytes, and authenticated here.
    pub kind: u8,
    /// 0 for a leaf, 1 for a superchunk of leaves, and so on.
    pub height: u8,
    /// Whether the node is the root of a content. Only distinguished-root
    /// wrappers authenticate it; others ignore it.
    pub is_root: bool,
}

impl NodeContext {
    /// The associated data for this node: format version, height, root flag.
    pub(crate) fn associated_data(&self, distinguish_root: bool) -> [u8; 4] {
        [
            1,
            self.kind,
            self.height,
            u8::from(distinguish_root && self.is_root),
        ]
    }
}

/// Opening a node failed: it is not the node its digest and context name.
/// Deliberately says nothing about why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

/// Splits a stored value into its kind byte and the rest, and puts the kind
/// into the context to authenticate.
pub(crate) fn split_kind(
    ctx: NodeContext,
    value: &[u8],
) -> Result<(NodeContext, u8, &[u8]), OpenError> {
    let (&kind, rest) = value.split_first().ok_or(OpenError)?;
    Ok((NodeContext { kind, ..ctx }, kind, rest))
}

/// A value buffer holding the kind byte followed by `body`.
pub(crate) fn with_kind(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 1);
    v.push(kind);
    v.extend_from_slice(body);
    v
}

/// Turns node plaintexts into (digest, value) pairs and back.
pub trait CryptoWrapper: Send + Sync {
    /// Length of the digests this wrapper produces.
    fn digest_len(&self) -> usize;

    /// Seals a node's `body`; returns `(digest, value)`, the value starting
    /// with `ctx.kind`. Deterministic: equal inputs give equal outputs.
    fn seal(&self, ctx: NodeContext, body: &[u8]) -> (Vec<u8>, Vec<u8>);

    /// Authenticates `value` against `digest` and `ctx` (whose `kind` is
    /// ignored: it is read from the value); returns the kind and the body.
    fn open(
        &self,
        ctx: NodeContext,
        digest: &[u8],
        value: &[u8],
    ) -> Result<(u8, Vec<u8>), OpenError>;
}

/// The wrappers a store can be created with; recorded in its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WrapperKind {
    /// AES-SIV (AES-256, CMAC): deterministic authenticated encryption.
    #[default]
    AesSiv,
    /// AES-SIV with roots authenticated as roots.
    AesSivDistinguishedRoot,
    /// HMAC-SHA-256 digests over plaintext values.
    HmacSha256,
    /// HMAC-SHA-256 with roots authenticated as roots.
    HmacSha256DistinguishedRoot,
    /// Unkeyed SHA-256 digests over plaintext values.
    Sha256,
}

impl WrapperKind {
    /// Every wrapper, for help texts and tests.
    pub const ALL: [WrapperKind; 5] = [
        WrapperKind::AesSiv,
        WrapperKind::AesSivDistinguishedRoot,
        WrapperKind::HmacSha256,
        WrapperKind::HmacSha256DistinguishedRoot,
        WrapperKind::Sha256,
    ];

    /// The wrapper's name in configs and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            WrapperKind::AesSiv => "aes-siv",
            WrapperKind::AesSivDistinguishedRoot => "aes-siv-dr",
            WrapperKind::HmacSha256 => "hmac-sha-256",
            WrapperKind::HmacSha256DistinguishedRoot => "hmac-sha-256-dr",
            WrapperKind::Sha256 => "sha-256",
        }
    }

    /// Length of this wrapper's digests.
    pub fn digest_len(&self) -> usize {
        match self {
            WrapperKind::AesSiv | WrapperKind::AesSivDistinguishedRoot => 16,
            _ => 32,
        }
    }

    /// Whether a content's root is authenticated as a root, so that it
    /// cannot stand in for a node inside another tree, nor one for it.
    pub fn distinguishes_root(&self) -> bool {
        matches!(
            self,
            WrapperKind::AesSivDistinguishedRoot | WrapperKind::HmacSha256DistinguishedRoot
        )
    }

    /// Whether stored values are encrypted.
    pub fn is_confidential(&self) -> bool {
        matches!(
            self,
            WrapperKind::AesSiv | WrapperKind::AesSivDistinguishedRoot
        )
    }

    /// Builds the wrapper, deriving its key from the store key.
    pub fn build(&self, store_key: &SecretKey) -> Box<dyn CryptoWrapper> {
        match self {
            WrapperKind::AesSiv => Box::new(AesSivWrapper::new(store_key, false)),
            WrapperKind::AesSivDistinguishedRoot => Box::new(AesSivWrapper::new(store_key, true)),
            WrapperKind::HmacSha256 => Box::new(HmacSha256Wrapper::new(store_key, false)),
            WrapperKind::HmacSha256DistinguishedRoot => {
                Box::new(HmacSha256Wrapper::new(store_key, true))
            }
            WrapperKind::Sha256 => Box::new(Sha256Wrapper),
        }
    }
}

impl fmt::Display for WrapperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WrapperKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WrapperKind::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = WrapperKind::ALL.iter().map(|w| w.name()).collect();
                format!("unknown wrapper {s:?}; choose one of {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::aes_siv::aead::KeyInit;
    use ::aes_siv::siv::Aes256Siv;
    use hmac::{Hmac, Mac};
    use seccs_core::kdf::{self, Label};
    use sha2::{Digest, Sha256};

    /// The module's spec, computed from the primitives directly: a change
    /// of associated data, key derivation or value layout fails this.
    #[test]
    fn every_wrapper_seals_as_its_spec_says() {
        let store_key = SecretKey::from_bytes([9; 32]);
        let body = b"a node's body".as_slice();
        let (kind, height) = (0x02, 3);
        for kind_of in WrapperKind::ALL {
            for is_root in [false, true] {
                let ctx = NodeContext {
                    kind,
                    height,
                    is_root,
                };
                let r = u8::from(is_root && kind_of.distinguishes_root());
                let ad = [1, kind, height, r];
                let (digest, value) = kind_of.build(&store_key).seal(ctx, body);
                let (want_digest, want_body) = match kind_of {
                    WrapperKind::AesSiv | WrapperKind::AesSivDistinguishedRoot => {
                        let mut key = [0; 64];
                        kdf::derive_into(&store_key, Label::NodeEncryption, &mut key);
                        let sealed = Aes256Siv::new((&key).into())
                            .encrypt([&ad[..]], body)
                            .expect("seal");
                        let (tag, ciphertext) = sealed.split_at(16);
                        (tag.to_vec(), ciphertext.to_vec())
                    }
                    WrapperKind::HmacSha256 | WrapperKind::HmacSha256DistinguishedRoot => {
                        let key = kdf::derive(&store_key, Label::NodeEncryption);
                        let mut mac =
                            <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key.expose_secret())
                                .expect("key");
                        mac.update(&ad);
                        mac.update(body);
                        (mac.finalize().into_bytes().to_vec(), body.to_vec())
                    }
                    WrapperKind::Sha256 => {
                        let mut h = Sha256::new();
                        h.update([1, kind, height, 0]);
                        h.update(body);
                        (h.finalize().to_vec(), body.to_vec())
                    }
                };
                assert_eq!(digest, want_digest, "{kind_of} root {is_root}");
                assert_eq!(value[0], kind, "{kind_of}");
                assert_eq!(value[1..], want_body[..], "{kind_of} root {is_root}");
            }
        }
    }
}
