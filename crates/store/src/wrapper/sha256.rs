//! Unkeyed SHA-256 digests over plaintext values: integrity relative to a
//! trusted content reference, nothing more. Anyone can compute digests, so the
//! backend's operator can confirm guesses of node contents. Use it only for
//! data that is not secret.

use sha2::{Digest, Sha256};

use super::{CryptoWrapper, NodeContext, OpenError, split_kind, with_kind};

/// Hashes nodes with SHA-256.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sha256Wrapper;

impl Sha256Wrapper {
    fn digest(ctx: NodeContext, value: &[u8]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(ctx.associated_data(false));
        h.update(value);
        h.finalize().to_vec()
    }
}

impl CryptoWrapper for Sha256Wrapper {
    fn digest_len(&self) -> usize {
        32
    }

    fn seal(&self, ctx: NodeContext, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (Self::digest(ctx, body), with_kind(ctx.kind, body))
    }

    fn open(
        &self,
        ctx: NodeContext,
        digest: &[u8],
        value: &[u8],
    ) -> Result<(u8, Vec<u8>), OpenError> {
        let (ctx, kind, value) = split_kind(ctx, value)?;
        // Digests are public here; a plain comparison leaks nothing.
        if Self::digest(ctx, value) == digest {
            Ok((kind, value.to_vec()))
        } else {
            Err(OpenError)
        }
    }
}
