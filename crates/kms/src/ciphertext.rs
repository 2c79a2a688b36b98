//! The ciphertext format of messages sealed by the key service and the local
//! facility (`encrypt`/`decrypt` of bytes with an encryption context).
//!
//! ```text
//! magic "skmc" (4) | version 1 (1) | suite 1 = AES-256-GCM (1) | key version (u32 BE)
//! | nonce (12, random) | ciphertext | tag (16)
//! ```
//!
//! The AEAD's associated data is the 10 header bytes before the nonce
//! followed by the caller's context (its bytes as given, no length
//! prefix), so a changed version, suite or context fails authentication.
//! The key is `HKDF(K, "seccs/v1/kms/message")` (`seccs_core::kdf`:
//! HKDF-SHA-256, salt `seccs`, 32 bytes), where K is the DEK, or the 32
//! bytes of the named key's version the header names; so a DEK that is
//! also a content store's store key never encrypts messages directly. A
//! version byte other than 1 is [`KmsError::UnsupportedVersion`], a suite
//! other than 1 malformed.
//!
//! Seed flaw fixed here: keas.kmi encrypted with AES-CBC under a fixed IV
//! (`0123456789ABCDEF`) with no authentication, so equal plaintexts gave
//! equal ciphertexts and a modified ciphertext decrypted to garbage without
//! an error. Here every message has a random nonce and a tag, and any change
//! is [`KmsError::Tampered`].

use aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use seccs_core::{
    SecretKey,
    kdf::{self, Label},
};

use zeroize::Zeroizing;

use crate::KmsError;

/// Magic bytes of a message ciphertext.
pub const MAGIC: &[u8; 4] = b"skmc";
/// Format version written by this code.
pub const VERSION: u8 = 1;
/// Suite id of AES-256-GCM with a random 96-bit nonce.
pub const SUITE_AES256GCM: u8 = 1;
/// Length of the header including the nonce.
pub const HEADER_LEN: usize = 10 + NONCE_LEN;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// How many bytes a ciphertext adds to its plaintext (header and tag).
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// HKDF label of message keys; part of the format.
pub(crate) const MESSAGE_LABEL: Label = Label::Custom("seccs/v1/kms/message");

/// The parsed header of a message ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CiphertextHeader {
    /// Which key version sealed the message (0 for a KEK/DEK pair).
    pub key_version: u32,
    /// The random nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl CiphertextHeader {
    /// Parses the header of `bytes`; returns it and the sealed body
    /// (ciphertext and tag), which must be at least one tag long.
    pub fn parse(bytes: &[u8]) -> Result<(Self, &[u8]), KmsError> {
        let magic_part = &bytes[..bytes.len().min(MAGIC.len())];
        if magic_part != &MAGIC[..magic_part.len()] {
            return Err(KmsError::UnknownFormat("not a seccs-kms ciphertext"));
        }
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return Err(KmsError::Malformed("ciphertext: too short"));
        }
        if bytes[4] != VERSION {
            return Err(KmsError::UnsupportedVersion {
                what: "ciphertext",
                version: bytes[4],
                reads: VERSION,
            });
        }
        if bytes[5] != SUITE_AES256GCM {
            return Err(KmsError::Malformed("ciphertext: unknown suite"));
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&bytes[6..10]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[10..HEADER_LEN]);
        Ok((
            Self {
                key_version: u32::from_be_bytes(v),
                nonce,
            },
            &bytes[HEADER_LEN..],
        ))
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5] = SUITE_AES256GCM;
        out[6..10].copy_from_slice(&self.key_version.to_be_bytes());
        out[10..].copy_from_slice(&self.nonce);
        out
    }
}

/// An AES-256-GCM instance keyed for messages of one key version; build it
/// once per key and reuse it (the cache does).
pub struct MessageCipher {
    aead: Aes256Gcm,
    key_version: u32,
}

impl std::fmt::Debug for MessageCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCipher")
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// The AEAD's associated data: 10 header bytes, then the context. Short
/// contexts stay on the stack.
enum Ad {
    Stack([u8; 138], usize),
    Heap(Vec<u8>),
}

impl Ad {
    fn as_slice(&self) -> &[u8] {
        match self {
            Ad::Stack(b, n) => &b[..*n],
            Ad::Heap(v) => v,
        }
    }
}

fn associated_data(header: &[u8; HEADER_LEN], context: &[u8]) -> Ad {
    let n = 10 + context.len();
    if n <= 138 {
        let mut b = [0u8; 138];
        b[..10].copy_from_slice(&header[..10]);
        b[10..n].copy_from_slice(context);
        Ad::Stack(b, n)
    } else {
        let mut ad = Vec::with_capacity(n);
        ad.extend_from_slice(&header[..10]);
        ad.extend_from_slice(context);
        Ad::Heap(ad)
    }
}

/// Fresh random nonces from a per-thread pool of OS randomness, refilled
/// 4 KiB at a time (one system call per 341 nonces). The pool is tagged
/// with the process id and discarded in a forked child, so parent and
/// child never draw the same nonces.
fn fresh_nonce() -> Result<[u8; NONCE_LEN], KmsError> {
    use std::cell::RefCell;
    const POOL: usize = 4092;
    struct Pool {
        bytes: [u8; POOL],
        pos: usize,
        pid: u32,
    }
    thread_local! {
        static NONCES: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; POOL], pos: POOL, pid: 0 }) };
    }
    NONCES.with(|cell| {
        let mut p = cell.borrow_mut();
        let pid = std::process::id();
        if p.pos + NONCE_LEN > POOL || p.pid != pid {
            seccs_core::random_bytes(&mut p.bytes)?;
            p.pos = 0;
            p.pid = pid;
        }
        let mut n = [0u8; NONCE_LEN];
        let start = p.pos;
        n.copy_from_slice(&p.bytes[start..start + NONCE_LEN]);
        // Each nonce is used once: erase it from the pool.
        p.bytes[start..start + NONCE_LEN].fill(0);
        p.pos += NONCE_LEN;
        Ok(n)
    })
}

impl MessageCipher {
    /// The cipher for messages under `key` (a DEK or a named key's version).
    pub fn new(key: &SecretKey, key_version: u32) -> Self {
        let k = kdf::derive(key, MESSAGE_LABEL);
        // Cannot fail: the derived key is 32 bytes, AES-256's key size.
        let aead = Aes256Gcm::new_from_slice(k.expose_secret()).expect("AES-256 takes 32 bytes");
        Self { aead, key_version }
    }

    /// The key version written into ciphertexts.
    pub fn key_version(&self) -> u32 {
        self.key_version
    }

    /// Seals `plaintext` bound to `context`, with a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, KmsError> {
        let nonce = fresh_nonce()?;
        let header = CiphertextHeader {
            key_version: self.key_version,
            nonce,
        }
        .to_bytes();
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&header);
        out.extend_from_slice(plaintext);
        let ad = associated_data(&header, context);
        let tag = self
            .aead
            .encrypt_inout_detached(
                &nonce.into(),
                ad.as_slice(),
                (&mut out[HEADER_LEN..]).into(),
            )
            .map_err(|_| KmsError::Malformed("plaintext too long for AES-GCM"))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a ciphertext sealed by [`seal`](Self::seal) with the same key
    /// and context. The caller checks the header's key version first. The
    /// plaintext is zeroized when dropped, and so is the buffer of a
    /// ciphertext that fails (AES-GCM decrypts before it checks the tag).
    pub fn open(&self, ciphertext: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let (header, body) = CiphertextHeader::parse(ciphertext)?;
        if header.key_version != self.key_version {
            return Err(KmsError::Tampered);
        }
        let ad = associated_data(&header.to_bytes(), context);
        let (ct, tag) = body.split_at(body.len() - TAG_LEN);
        let mut out = Zeroizing::new(ct.to_vec());
        let tag = aes_gcm::Tag::try_from(tag).map_err(|_| KmsError::Tampered)?;
        self.aead
            .decrypt_inout_detached(
                &header.nonce.into(),
                ad.as_slice(),
                (&mut out[..]).into(),
                &tag,
            )
            .map_err(|_| KmsError::Tampered)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> MessageCipher {
        MessageCipher::new(&SecretKey::from_bytes([9; 32]), 3)
    }

    #[test]
    fn seal_open_round_trip_with_context() -> Result<(), KmsError> {
        let c = cipher();
        let ct = c.seal(b"hello", b"ctx")?;
        assert_eq!(ct.len(), HEADER_LEN + 5 + TAG_LEN);
        let plain: Zeroizing<Vec<u8>> = c.open(&ct, b"ctx")?;
        assert_eq!(&plain[..], b"hello");
        assert_eq!(CiphertextHeader::parse(&ct)?.0.key_version, 3);
        Ok(())
    }

    #[test]
    fn equal_plaintexts_give_different_ciphertexts_seed_fixed_iv_flaw() -> Result<(), KmsError> {
        let c = cipher();
        assert_ne!(c.seal(b"same", b"")?, c.seal(b"same", b"")?);
        Ok(())
    }

    #[test]
    fn tampered_ciphertext_is_rejected_not_garbage_seed_cbc_flaw() -> Result<(), KmsError> {
        let c = cipher();
        let ct = c.seal(b"attack at dawn", b"ctx")?;
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x80;
            assert!(c.open(&bad, b"ctx").is_err(), "byte {i}");
        }
        assert!(matches!(c.open(&ct, b"other"), Err(KmsError::Tampered)));
        let other = MessageCipher::new(&SecretKey::from_bytes([8; 32]), 3);
        assert!(matches!(other.open(&ct, b"ctx"), Err(KmsError::Tampered)));
        Ok(())
    }

    #[test]
    fn parser_rejects_short_unknown_and_future_inputs() {
        assert!(matches!(
            CiphertextHeader::parse(b"nope"),
            Err(KmsError::UnknownFormat(_))
        ));
        assert!(matches!(
            CiphertextHeader::parse(b"skmc\x01"),
            Err(KmsError::Malformed(_))
        ));
        let mut v = vec![0u8; 40];
        v[..4].copy_from_slice(MAGIC);
        v[4] = 2;
        assert!(matches!(
            CiphertextHeader::parse(&v),
            Err(KmsError::UnsupportedVersion { version: 2, .. })
        ));
    }
}
