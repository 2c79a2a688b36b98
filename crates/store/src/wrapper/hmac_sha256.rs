//! HMAC-SHA-256 digests over plaintext values: integrity and keyed
//! deduplication, no confidentiality. The digest is keyed, so someone without
//! the key cannot confirm a guess of a node's contents by hashing it, but the
//! stored values are the node plaintexts.

use hmac::{Hmac, KeyInit, Mac};
use seccs_core::SecretKey;
use seccs_core::kdf::{self, Label};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{CryptoWrapper, NodeContext, OpenError, split_kind, with_kind};

/// Authenticates nodes with HMAC-SHA-256.
pub struct HmacSha256Wrapper {
    mac: Hmac<Sha256>,
    distinguish_root: bool,
}

impl HmacSha256Wrapper {
    /// Derives the HMAC key from the store key.
    pub fn new(store_key: &SecretKey, distinguish_root: bool) -> Self {
        let key = kdf::derive(store_key, Label::NodeEncryption);
        // Cannot fail: HMAC takes keys of any length.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose_secret())
            .expect("HMAC accepts any key length");
        Self {
            mac,
            distinguish_root,
        }
    }

    fn digest(&self, ctx: NodeContext, value: &[u8]) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(&ctx.associated_data(self.distinguish_root));
        mac.update(value);
        mac.finalize().into_bytes().to_vec()
    }
}

impl std::fmt::Debug for HmacSha256Wrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacSha256Wrapper")
            .field("distinguish_root", &self.distinguish_root)
            .finish_non_exhaustive()
    }
}

impl CryptoWrapper for HmacSha256Wrapper {
    fn digest_len(&self) -> usize {
        32
    }

    fn seal(&self, ctx: NodeContext, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (self.digest(ctx, body), with_kind(ctx.kind, body))
    }

    fn open(
        &self,
        ctx: NodeContext,
        digest: &[u8],
        value: &[u8],
    ) -> Result<(u8, Vec<u8>), OpenError> {
        let (ctx, kind, value) = split_kind(ctx, value)?;
        if bool::from(self.digest(ctx, value).ct_eq(digest)) {
            Ok((kind, value.to_vec()))
        } else {
            Err(OpenError)
        }
    }
}
