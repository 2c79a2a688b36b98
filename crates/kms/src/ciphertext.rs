//! The ciphertext format of messages sealed by the key service and the local
//! facility (`encrypt`/`decrypt` of bytes with an encryption context).
//!
//! ```text
//! version 2 (written):
//! magic "skmc" (4) | version 2 (1) | suite 2 = AES-256-GCM, salted subkey (1)
//! | key version (u32 BE) | subkey salt (16) | nonce (12, random) | ciphertext | tag (16)
//!
//! version 1 (read only):
//! magic "skmc" (4) | version 1 (1) | suite 1 = AES-256-GCM (1) | key version (u32 BE)
//! | nonce (12, random) | ciphertext | tag (16)
//! ```
//!
//! The AEAD's associated data is every header byte before the nonce (10
//! in version 1, 26 in version 2) followed by the caller's context (its
//! bytes as given, no length prefix), so a changed version, suite, salt or
//! context fails authentication. Each version has exactly one suite: a
//! version 1 header with a suite other than 1, or a version 2 header with
//! one other than 2, is malformed; a version above 2 is
//! [`KmsError::UnsupportedVersion`].
//!
//! Keys, where K is the DEK or the 32 bytes of the named key's version the
//! header names (`seccs_core::kdf`, HKDF-SHA-256):
//! - version 1: `HKDF(K, "seccs/v1/kms/message")`, salt `seccs`;
//! - version 2: `HKDF(K, "seccs/v2/kms/message")` with the header's 16-byte
//!   salt as HKDF's salt.
//!
//! So a DEK that is also a content store's store key never encrypts
//! messages directly.
//!
//! Why version 2: a key seals messages for as long as its DEK or named key
//! version lives, in every process that holds it, and nothing can count
//! them all. AES-GCM with random 96-bit nonces is safe for about 2^32
//! messages under one key (NIST SP 800-38D), which one client reaches in
//! under an hour at the measured rate; one nonce drawn twice reveals the
//! XOR of two plaintexts and GCM's authentication key. In version 2 each
//! [`MessageCipher`] seals under a subkey of its own (a random salt) and
//! draws a new one after [`SUBKEY_MESSAGES`] messages, so no AES-GCM key
//! ever sees more than that many random nonces, wherever and however long
//! K is used. A cipher derives a subkey once per salt, not per message:
//! the local facility keeps one cipher per cached key, so its sealing
//! costs what version 1 did; the server builds a cipher per request, so
//! each request derives one subkey, as version 1 derived its message key
//! per request. Version 1 ciphertexts still open.
//!
//! Seed flaw fixed here: keas.kmi encrypted with AES-CBC under a fixed IV
//! (`0123456789ABCDEF`) with no authentication, so equal plaintexts gave
//! equal ciphertexts and a modified ciphertext decrypted to garbage without
//! an error. Here every message has a random nonce and a tag, and any change
//! is [`KmsError::Tampered`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

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
pub const VERSION: u8 = 2;
/// Suite id of AES-256-GCM under the message key, with a random 96-bit
/// nonce (version 1, read only).
pub const SUITE_AES256GCM: u8 = 1;
/// Suite id of AES-256-GCM under a salted subkey of the message key, with a
/// random 96-bit nonce (version 2).
pub const SUITE_AES256GCM_SALTED: u8 = 2;
/// Length of the header of the version written, including the nonce.
pub const HEADER_LEN: usize = SALTED_FIXED_LEN + NONCE_LEN;
/// Magic, version, suite and key version.
const FIXED_LEN: usize = 10;
/// The version 2 header before the nonce: the fixed part and the salt.
const SALTED_FIXED_LEN: usize = FIXED_LEN + SALT_LEN;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// How many bytes a ciphertext of the version written adds to its
/// plaintext (header and tag); version 1 added 16 fewer.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The most messages one subkey seals before its cipher draws another:
/// 2^30 random 96-bit nonces repeat one with a probability of about 2^-37,
/// under NIST SP 800-38D's 2^32 limit with room to spare.
pub const SUBKEY_MESSAGES: u64 = 1 << 30;
/// How many subkeys of other salts a cipher keeps for opening, so that a
/// process opening what a few others sealed derives each subkey once.
const OPENING_SUBKEYS: usize = 8;
/// HKDF label of version 1 message keys; part of the format.
pub(crate) const MESSAGE_LABEL: Label = Label::Custom("seccs/v1/kms/message");
/// HKDF label of version 2 message subkeys; part of the format.
const SUBKEY_LABEL: Label = Label::Custom("seccs/v2/kms/message");

/// The parsed header of a message ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CiphertextHeader {
    /// Which key version sealed the message (0 for a KEK/DEK pair).
    pub key_version: u32,
    /// The salt of the subkey that sealed it; `None` in version 1, which
    /// sealed under the message key itself.
    pub salt: Option<[u8; SALT_LEN]>,
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
        if bytes.len() < FIXED_LEN + NONCE_LEN + TAG_LEN {
            return Err(KmsError::Malformed("ciphertext: too short"));
        }
        let (suite, before_nonce) = match bytes[4] {
            0 => return Err(KmsError::Malformed("ciphertext: version 0")),
            1 => (SUITE_AES256GCM, FIXED_LEN),
            2 => (SUITE_AES256GCM_SALTED, SALTED_FIXED_LEN),
            version => {
                return Err(KmsError::UnsupportedVersion {
                    what: "ciphertext",
                    version,
                    reads: VERSION,
                });
            }
        };
        if bytes[5] != suite {
            return Err(KmsError::Malformed("ciphertext: unknown suite"));
        }
        let header_len = before_nonce + NONCE_LEN;
        if bytes.len() < header_len + TAG_LEN {
            return Err(KmsError::Malformed("ciphertext: too short"));
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&bytes[6..FIXED_LEN]);
        let salt = (before_nonce == SALTED_FIXED_LEN).then(|| {
            let mut salt = [0u8; SALT_LEN];
            salt.copy_from_slice(&bytes[FIXED_LEN..SALTED_FIXED_LEN]);
            salt
        });
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[before_nonce..header_len]);
        Ok((
            Self {
                key_version: u32::from_be_bytes(v),
                salt,
                nonce,
            },
            &bytes[header_len..],
        ))
    }

    /// Encodes the header (22 bytes in version 1, 38 in version 2).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.before_nonce();
        out.extend_from_slice(&self.nonce);
        out
    }

    /// The header before the nonce, all of it bound as associated data.
    fn before_nonce(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(MAGIC);
        match &self.salt {
            None => out.extend_from_slice(&[1, SUITE_AES256GCM]),
            Some(_) => out.extend_from_slice(&[VERSION, SUITE_AES256GCM_SALTED]),
        }
        out.extend_from_slice(&self.key_version.to_be_bytes());
        if let Some(salt) = &self.salt {
            out.extend_from_slice(salt);
        }
        out
    }
}

/// One salted subkey of the message key, and how many messages it sealed.
struct Subkey {
    salt: [u8; SALT_LEN],
    aead: Aes256Gcm,
    sealed: AtomicU64,
}

impl Subkey {
    fn derive(message_root: &SecretKey, salt: [u8; SALT_LEN]) -> Self {
        let k = kdf::derive_salted(message_root, SUBKEY_LABEL, &salt);
        Self {
            salt,
            aead: aes256gcm(&k),
            sealed: AtomicU64::new(0),
        }
    }

    fn fresh(message_root: &SecretKey) -> Result<Self, KmsError> {
        let mut salt = [0u8; SALT_LEN];
        seccs_core::random_bytes(&mut salt)?;
        Ok(Self::derive(message_root, salt))
    }
}

fn aes256gcm(key: &SecretKey) -> Aes256Gcm {
    // Cannot fail: a SecretKey is 32 bytes, AES-256's key size.
    Aes256Gcm::new_from_slice(key.expose_secret()).expect("AES-256 takes 32 bytes")
}

/// The cipher of messages under one key version: it seals in version 2,
/// under subkeys it draws as it goes, and opens both versions. Build it
/// once per key and reuse it (the cache does); it may be shared between
/// threads.
pub struct MessageCipher {
    /// The key, K in the module docs, that every version 2 subkey is
    /// derived from.
    root: SecretKey,
    /// Version 1's cipher under `HKDF(K, "seccs/v1/kms/message")`, made
    /// at the first version 1 ciphertext opened (a server builds a cipher
    /// per request, and most never meet one).
    version_1: OnceLock<Aes256Gcm>,
    key_version: u32,
    /// The subkey that seals, drawn at the first seal.
    sealing: RwLock<Option<Arc<Subkey>>>,
    /// Subkeys of other salts, derived to open; the newest last.
    opening: Mutex<Vec<Arc<Subkey>>>,
    /// Messages a subkey seals before the next is drawn.
    budget: u64,
}

impl std::fmt::Debug for MessageCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCipher")
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// The AEAD's associated data: the header before the nonce, then the
/// context. Short contexts stay on the stack.
enum Ad {
    Stack([u8; 154], usize),
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

fn associated_data(before_nonce: &[u8], context: &[u8]) -> Ad {
    let h = before_nonce.len();
    let n = h + context.len();
    if n <= 154 {
        let mut b = [0u8; 154];
        b[..h].copy_from_slice(before_nonce);
        b[h..n].copy_from_slice(context);
        Ad::Stack(b, n)
    } else {
        let mut ad = Vec::with_capacity(n);
        ad.extend_from_slice(before_nonce);
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
        Self::with_budget(key, key_version, SUBKEY_MESSAGES)
    }

    /// A cipher whose subkeys each seal at most `budget` messages (at
    /// least one); for the tests that watch subkeys change.
    fn with_budget(key: &SecretKey, key_version: u32, budget: u64) -> Self {
        Self {
            root: key.clone(),
            version_1: OnceLock::new(),
            key_version,
            sealing: RwLock::new(None),
            opening: Mutex::new(Vec::new()),
            budget: budget.max(1),
        }
    }

    /// The key version written into ciphertexts.
    pub fn key_version(&self) -> u32 {
        self.key_version
    }

    /// The subkey to seal the next message with, counted against its
    /// budget; a spent one is replaced by a fresh subkey first.
    fn sealing_subkey(&self) -> Result<Arc<Subkey>, KmsError> {
        let current = self
            .sealing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(subkey) = current
            && subkey.sealed.fetch_add(1, Ordering::Relaxed) < self.budget
        {
            return Ok(subkey);
        }
        let mut sealing = self.sealing.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have drawn a fresh one meanwhile.
        if let Some(subkey) = sealing.as_ref()
            && subkey.sealed.fetch_add(1, Ordering::Relaxed) < self.budget
        {
            return Ok(Arc::clone(subkey));
        }
        let fresh = Arc::new(Subkey::fresh(&self.root)?);
        fresh.sealed.store(1, Ordering::Relaxed);
        *sealing = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// The subkey of `salt`, for opening, and whether it is kept already:
    /// the sealing one, one kept from an earlier open, or a new derivation
    /// (made outside the lock, and kept only once a message opened with
    /// it, so that forged salts do not push out the subkeys in use).
    fn opening_subkey(&self, salt: [u8; SALT_LEN]) -> (Arc<Subkey>, bool) {
        if let Some(subkey) = self
            .sealing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|s| s.salt == salt)
        {
            return (Arc::clone(subkey), true);
        }
        if let Some(subkey) = self
            .opening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|s| s.salt == salt)
        {
            return (Arc::clone(subkey), true);
        }
        (Arc::new(Subkey::derive(&self.root, salt)), false)
    }

    /// Keeps `subkey`, which opened a message, for the next opens.
    fn keep_opening_subkey(&self, subkey: Arc<Subkey>) {
        let mut opening = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
        if opening.iter().any(|s| s.salt == subkey.salt) {
            return;
        }
        if opening.len() == OPENING_SUBKEYS {
            opening.remove(0);
        }
        opening.push(subkey);
    }

    /// Seals `plaintext` bound to `context`, with a fresh random nonce, in
    /// format version 2.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, KmsError> {
        let subkey = self.sealing_subkey()?;
        let header = CiphertextHeader {
            key_version: self.key_version,
            salt: Some(subkey.salt),
            nonce: fresh_nonce()?,
        };
        seal_with(&subkey.aead, &header, plaintext, context)
    }

    /// Opens a ciphertext sealed by [`seal`](Self::seal) (or by a build
    /// that wrote version 1) with the same key and context. The caller
    /// checks the header's key version first. The plaintext is zeroized
    /// when dropped, and so is the buffer of a ciphertext that fails
    /// (AES-GCM decrypts before it checks the tag).
    pub fn open(&self, ciphertext: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let (header, body) = CiphertextHeader::parse(ciphertext)?;
        if header.key_version != self.key_version {
            return Err(KmsError::Tampered);
        }
        let ad = associated_data(&header.before_nonce(), context);
        let (ct, tag) = body.split_at(body.len() - TAG_LEN);
        let mut out = Zeroizing::new(ct.to_vec());
        let tag = aes_gcm::Tag::try_from(tag).map_err(|_| KmsError::Tampered)?;
        let mut to_keep = None;
        let aead = match header.salt {
            None => self.version_1(),
            Some(salt) => {
                let (subkey, kept) = self.opening_subkey(salt);
                &to_keep.insert((subkey, kept)).0.aead
            }
        };
        aead.decrypt_inout_detached(
            &header.nonce.into(),
            ad.as_slice(),
            (&mut out[..]).into(),
            &tag,
        )
        .map_err(|_| KmsError::Tampered)?;
        if let Some((subkey, false)) = to_keep {
            self.keep_opening_subkey(subkey);
        }
        Ok(out)
    }

    /// Version 1's cipher, made at its first use.
    fn version_1(&self) -> &Aes256Gcm {
        self.version_1
            .get_or_init(|| aes256gcm(&kdf::derive(&self.root, MESSAGE_LABEL)))
    }

    /// Seals as a build before format version 2 did, for the tests that
    /// check such ciphertexts still open.
    #[cfg(test)]
    fn seal_version_1(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, KmsError> {
        let header = CiphertextHeader {
            key_version: self.key_version,
            salt: None,
            nonce: fresh_nonce()?,
        };
        seal_with(self.version_1(), &header, plaintext, context)
    }
}

/// The ciphertext of `plaintext` under `aead`, with `header` before it.
fn seal_with(
    aead: &Aes256Gcm,
    header: &CiphertextHeader,
    plaintext: &[u8],
    context: &[u8],
) -> Result<Vec<u8>, KmsError> {
    let before_nonce = header.before_nonce();
    let header_len = before_nonce.len() + NONCE_LEN;
    let mut out = Vec::with_capacity(header_len + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&before_nonce);
    out.extend_from_slice(&header.nonce);
    out.extend_from_slice(plaintext);
    let ad = associated_data(&before_nonce, context);
    let tag = aead
        .encrypt_inout_detached(
            &header.nonce.into(),
            ad.as_slice(),
            (&mut out[header_len..]).into(),
        )
        .map_err(|_| KmsError::Malformed("plaintext too long for AES-GCM"))?;
    out.extend_from_slice(&tag);
    Ok(out)
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
        v[4] = 3;
        assert!(matches!(
            CiphertextHeader::parse(&v),
            Err(KmsError::UnsupportedVersion { version: 3, .. })
        ));
    }

    /// Messages are sealed in version 2, under a salted subkey whose salt
    /// the header carries and binds.
    #[test]
    fn messages_are_sealed_in_version_2_under_a_salted_subkey() -> Result<(), KmsError> {
        let c = cipher();
        let ct = c.seal(b"hello", b"ctx")?;
        assert_eq!(&ct[..6], b"skmc\x02\x02");
        assert_eq!(HEADER_LEN, 38);
        let (header, body) = CiphertextHeader::parse(&ct)?;
        assert_eq!(header.to_bytes(), ct[..HEADER_LEN]);
        assert_eq!(body.len(), 5 + TAG_LEN);
        // The next message of this cipher uses the same subkey.
        let next = CiphertextHeader::parse(&c.seal(b"again", b"ctx")?)?.0;
        assert_eq!(next.salt, header.salt);
        // Another cipher of the same key (another process) draws its own,
        // and each opens what the other sealed.
        let other = cipher();
        let theirs = other.seal(b"theirs", b"ctx")?;
        assert_ne!(CiphertextHeader::parse(&theirs)?.0.salt, header.salt);
        assert_eq!(&c.open(&theirs, b"ctx")?[..], b"theirs");
        assert_eq!(&other.open(&ct, b"ctx")?[..], b"hello");
        Ok(())
    }

    /// No subkey seals more than its budget: the message after it is
    /// sealed under a fresh salt, and every message still opens, in this
    /// cipher and in another of the same key.
    #[test]
    fn a_subkey_that_sealed_its_budget_is_replaced() -> Result<(), KmsError> {
        let key = SecretKey::from_bytes([9; 32]);
        let c = MessageCipher::with_budget(&key, 3, 3);
        let mut sealed = Vec::new();
        for i in 0..10u8 {
            sealed.push((i, c.seal(&[i; 7], b"ctx")?));
        }
        let salts: Vec<_> = sealed
            .iter()
            .map(|(_, ct)| CiphertextHeader::parse(ct).map(|(h, _)| h.salt))
            .collect::<Result<_, _>>()?;
        for (i, salt) in salts.iter().enumerate() {
            let same_as_first_of_its_three = salts[i - i % 3];
            assert_eq!(*salt, same_as_first_of_its_three, "message {i}");
            if i >= 3 {
                assert_ne!(*salt, salts[i - 3], "message {i} reused a spent subkey");
            }
        }
        let reader = MessageCipher::new(&key, 3);
        for (i, ct) in &sealed {
            assert_eq!(&c.open(ct, b"ctx")?[..], &[*i; 7]);
            assert_eq!(&reader.open(ct, b"ctx")?[..], &[*i; 7]);
        }
        Ok(())
    }

    /// Threads sharing one cipher never seal more than a subkey's budget
    /// under it.
    #[test]
    fn threads_sharing_a_cipher_keep_every_subkey_within_its_budget() -> Result<(), KmsError> {
        let c = MessageCipher::with_budget(&SecretKey::from_bytes([7; 32]), 0, 5);
        let per_thread: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..50).map(|_| c.seal(b"m", b"")).collect()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Result<Vec<_>, KmsError>>()
        })?;
        let mut uses = std::collections::HashMap::new();
        for ct in per_thread.iter().flatten() {
            *uses
                .entry(CiphertextHeader::parse(ct)?.0.salt)
                .or_insert(0u32) += 1;
        }
        assert!(uses.values().all(|&n| n <= 5), "{uses:?}");
        assert!(
            uses.len() >= 40,
            "200 messages under {} subkeys",
            uses.len()
        );
        Ok(())
    }

    /// The salt is bound: a ciphertext whose salt is changed is refused,
    /// as is one whose version byte says the other layout.
    #[test]
    fn a_changed_salt_or_layout_is_refused() -> Result<(), KmsError> {
        let c = cipher();
        let ct = c.seal(b"x", b"")?;
        for i in FIXED_LEN..SALTED_FIXED_LEN {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert!(
                matches!(c.open(&bad, b""), Err(KmsError::Tampered)),
                "byte {i}"
            );
        }
        let mut as_v1 = ct.clone();
        as_v1[4] = 1;
        assert!(matches!(c.open(&as_v1, b""), Err(KmsError::Malformed(_))));
        as_v1[5] = SUITE_AES256GCM;
        assert!(c.open(&as_v1, b"").is_err());
        let mut old = c.seal_version_1(b"x", b"")?;
        old[4] = 2;
        assert!(matches!(c.open(&old, b""), Err(KmsError::Malformed(_))));
        Ok(())
    }

    /// Ciphertexts written in version 1 (AES-256-GCM) by earlier builds
    /// still open, and are as tamper-evident as before.
    #[test]
    fn version_1_ciphertexts_still_open() -> Result<(), KmsError> {
        let c = cipher();
        let old = c.seal_version_1(b"from an older build", b"ctx")?;
        assert_eq!(&old[..6], b"skmc\x01\x01");
        assert_eq!(old.len(), 22 + 19 + TAG_LEN);
        assert_eq!(&c.open(&old, b"ctx")?[..], b"from an older build");
        for i in 0..old.len() {
            let mut bad = old.clone();
            bad[i] ^= 0x01;
            assert!(c.open(&bad, b"ctx").is_err(), "byte {i}");
        }
        assert!(matches!(c.open(&old, b"other"), Err(KmsError::Tampered)));
        Ok(())
    }

    /// A subkey is kept for later opens only once a message opened with
    /// it: ciphertexts under forged salts, however many, push out none of
    /// the subkeys in use.
    #[test]
    fn forged_salts_push_out_no_kept_subkey() -> Result<(), KmsError> {
        let key = SecretKey::from_bytes([9; 32]);
        let (reader, sealer) = (MessageCipher::new(&key, 3), MessageCipher::new(&key, 3));
        let real = sealer.seal(b"real", b"")?;
        assert_eq!(&reader.open(&real, b"")?[..], b"real");
        for i in 0..(OPENING_SUBKEYS as u8 * 3) {
            let mut forged = real.clone();
            forged[FIXED_LEN] ^= i.wrapping_add(1);
            assert!(matches!(reader.open(&forged, b""), Err(KmsError::Tampered)));
        }
        let kept = reader.opening.lock().map(|o| o.len()).unwrap_or_default();
        assert_eq!(kept, 1, "only the subkey that opened a message is kept");
        assert_eq!(&reader.open(&real, b"")?[..], b"real");
        Ok(())
    }

    /// Version 0 was never written: a header naming it is malformed, not
    /// a newer version.
    #[test]
    fn version_0_is_malformed() {
        let mut v = vec![0u8; 60];
        v[..4].copy_from_slice(MAGIC);
        assert!(matches!(
            CiphertextHeader::parse(&v),
            Err(KmsError::Malformed(_))
        ));
    }
}
