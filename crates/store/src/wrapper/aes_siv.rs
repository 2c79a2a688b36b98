//! AES-SIV (RFC 5297, AES-256 with CMAC): deterministic authenticated
//! encryption. The synthetic IV is the node's digest, so the value stored is
//! the bare ciphertext and the reference costs 16 bytes.

use std::sync::Mutex;

use aes_siv::Tag;
use aes_siv::aead::KeyInit;
use aes_siv::siv::Aes256Siv;
use seccs_core::SecretKey;
use seccs_core::kdf::{self, Label};
use zeroize::Zeroizing;

use super::{CryptoWrapper, NodeContext, OpenError, split_kind};

/// Keyed AES-256-SIV instances ready for use, for one derived key.
///
/// `Aes256Siv` needs `&mut self`, and its key schedule costs about as much
/// as sealing a small node, so threads borrow a keyed instance instead of
/// building one per use.
pub(crate) struct SivPool {
    key: Zeroizing<[u8; 64]>,
    pool: Mutex<Vec<Aes256Siv>>,
}

impl SivPool {
    /// Derives the 512-bit AES-SIV key for `label` from the store key.
    pub(crate) fn new(store_key: &SecretKey, label: Label) -> Self {
        let mut key = Zeroizing::new([0u8; 64]);
        kdf::derive_into(store_key, label, key.as_mut());
        Self {
            key,
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` with a keyed instance.
    pub(crate) fn with_cipher<T>(&self, f: impl FnOnce(&mut Aes256Siv) -> T) -> T {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut cipher = pooled.unwrap_or_else(|| Aes256Siv::new((&*self.key).into()));
        let out = f(&mut cipher);
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(cipher);
        out
    }
}

/// Seals nodes with AES-256-SIV.
pub struct AesSivWrapper {
    ciphers: SivPool,
    distinguish_root: bool,
}

impl AesSivWrapper {
    /// Derives the 512-bit AES-SIV key from the store key.
    pub fn new(store_key: &SecretKey, distinguish_root: bool) -> Self {
        Self {
            ciphers: SivPool::new(store_key, Label::NodeEncryption),
            distinguish_root,
        }
    }
}

impl std::fmt::Debug for AesSivWrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AesSivWrapper")
            .field("distinguish_root", &self.distinguish_root)
            .finish_non_exhaustive()
    }
}

impl CryptoWrapper for AesSivWrapper {
    fn digest_len(&self) -> usize {
        16
    }

    fn seal(&self, ctx: NodeContext, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let ad = ctx.associated_data(self.distinguish_root);
        let mut value = vec![0u8; body.len() + 1];
        value[0] = ctx.kind;
        let tag = self.ciphers.with_cipher(|c| {
            // Cannot fail: in and out have equal lengths, and one header is
            // far below the limit of 126.
            let buf = aes_siv::aead::inout::InOutBuf::new(body, &mut value[1..])
                .expect("buffers have equal length");
            c.encrypt_inout_detached([&ad], buf)
                .expect("one header is within the SIV header limit")
        });
        (tag.to_vec(), value)
    }

    fn open(
        &self,
        ctx: NodeContext,
        digest: &[u8],
        value: &[u8],
    ) -> Result<(u8, Vec<u8>), OpenError> {
        let tag = Tag::try_from(digest).map_err(|_| OpenError)?;
        let (ctx, kind, ciphertext) = split_kind(ctx, value)?;
        let ad = ctx.associated_data(self.distinguish_root);
        let mut plaintext = ciphertext.to_vec();
        self.ciphers.with_cipher(|c| {
            c.decrypt_inout_detached([&ad], plaintext.as_mut_slice().into(), &tag)
                .map_err(|_| OpenError)
        })?;
        Ok((kind, plaintext))
    }
}
