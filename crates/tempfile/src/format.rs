//! The block format, and the footer of a persisted file.
//!
//! # Why: the seed's flaw
//!
//! The Python seed (Ephemeral) encrypted temporary files with AES-CTR and no
//! authentication: its threat model assumed nobody would modify the
//! ciphertext. Under CTR whoever can write the file flips plaintext bits at
//! will (flip ciphertext bit *i*, plaintext bit *i* flips), and nothing noticed
//! a block copied from elsewhere, an old block written back, or a file cut
//! short. Here every block is sealed with an AEAD, and everything a block's
//! meaning depends on is either in its associated data or held in memory:
//!
//! | attack on the file on disk        | detected because                                        |
//! |-----------------------------------|---------------------------------------------------------|
//! | change a byte                     | the AES-GCM tag fails                                   |
//! | move or swap blocks               | the block index is associated data                      |
//! | splice a block from another file  | the file id is associated data (and keys differ)        |
//! | roll a block back to an old copy  | its version, known only in memory, is associated data   |
//! | cut the file short                | the block the reader needs is missing                   |
//! | append bytes                      | the reader of the last block finds bytes after it       |
//!
//! One change goes unnoticed, and harms nothing: the slot of a hole (a block
//! never written, version 0) is never read, since a hole reads as zeros from
//! memory, so bytes changed there change no byte read.
//!
//! # Blocks
//!
//! The plaintext is cut into blocks of a fixed power-of-two size (4 KiB by
//! default). Block *i* lives at offset *i* × (block size + 28) as
//!
//! ```text
//! slot  nonce (12, fresh from the OS generator at every write)
//!       | AES-GCM(key, nonce, block plaintext, padded with zeros) (block size)
//!       | tag (16)
//! AD    file id (16, random) | block index (u64 BE) | block version (u64 BE)
//! ```
//!
//! A block's version is the value of a per-file counter at the moment it was
//! sealed, so no (index, version) pair is ever sealed twice, even after a
//! truncation; version 0 means the block was never written (a hole that reads
//! as zeros and is never read from disk). The key, the file id, the logical
//! length and every block's version live only in memory. The AEAD suite is
//! AES-GCM with the file key's size (AES-128, AES-192 or AES-256). Random
//! 96-bit nonces are safe up to 2^32 seals under one key, a limit
//! [`Error::TooManyWrites`] enforces per file.
//!
//! # Footer of a persisted file
//!
//! [`persist`](crate::NamedEphemeralFile::persist) appends the state that
//! otherwise lives only in memory, sealed under the file key:
//!
//! ```text
//! header  magic "seccstmp" (8) | version 1 (1) | suite (1: 1 AES-128-GCM, 2 AES-192-GCM,
//!         3 AES-256-GCM) | log2 block size (1) | file id (16)
//! nonce   (12)
//! sealed  AES-GCM(key, nonce, AD = header, logical length (u64 BE) | block count n (u64 BE)
//!         | n block versions (u64 BE each)) ‖ tag (16)
//! length  of the whole footer, these 8 bytes included (u64 BE)
//! ```
//!
//! The footer's associated data (27 bytes) can never equal a block's (32
//! bytes), so a footer cannot pass for a block nor the reverse.

use aead::{AeadInOut, KeyInit, inout::InOutBuf};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce, Tag, aead::consts::U12, aes::Aes192};
use zeroize::Zeroizing;

use crate::{Error, FileKey, KeySize};

/// AES-192-GCM with a 96-bit nonce.
type Aes192Gcm = AesGcm<Aes192, U12>;

/// Length of the random nonce at the start of every block slot.
pub const NONCE_LEN: usize = 12;
/// Length of the AEAD tag at the end of every block slot.
pub const TAG_LEN: usize = 16;
/// Bytes a block slot adds to its block: nonce and tag.
pub const BLOCK_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Length of a file's random id.
pub const FILE_ID_LEN: usize = 16;
/// Smallest block size (1 KiB).
pub const MIN_BLOCK_SIZE: usize = 1 << 10;
/// Largest block size (1 MiB).
pub const MAX_BLOCK_SIZE: usize = 1 << 20;
/// Default block size (4 KiB).
pub const DEFAULT_BLOCK_SIZE: usize = 1 << 12;
/// Magic bytes a persisted file's footer starts with.
pub const MAGIC: &[u8; 8] = b"seccstmp";
/// Footer format version written by this code.
pub const VERSION: u8 = 1;
/// Most blocks a file may have sealed under one key (random nonces).
pub const MAX_SEALS: u64 = 1 << 32;
/// Largest plaintext length (and so the largest offset a write or
/// `set_len` may reach): 2^62 bytes, so that every slot offset, at most
/// 1.03 × this with 1 KiB blocks, fits in a signed 64-bit file offset. A
/// write or `set_len` beyond it fails with [`Error::FileTooLarge`]
/// ([`std::io::ErrorKind::FileTooLarge`]); the file system's own limit
/// (16 TiB on ext4) usually comes first.
pub const MAX_FILE_SIZE: u64 = 1 << 62;
/// Most block slots (holes included) a persisted file's footer may list:
/// 2^24, a footer of 128 MiB, whole in memory when it is sealed and when it
/// is opened (64 GiB of plaintext with 4 KiB blocks, 16 TiB with 1 MiB
/// blocks). `persist` of a file with more slots fails with
/// [`Error::PersistTooLarge`].
pub const MAX_PERSISTED_SLOTS: u64 = 1 << 24;

const FOOTER_HEADER_LEN: usize = 8 + 1 + 1 + 1 + FILE_ID_LEN;
const FOOTER_MIN_LEN: usize = FOOTER_HEADER_LEN + NONCE_LEN + 16 + TAG_LEN + 8;

/// The length a persisted file of `size` bytes must have as its footer, if
/// `claimed` can be it: some block size leaves exactly `n` slots before a
/// footer that lists `n` versions (`n` at most [`MAX_PERSISTED_SLOTS`]).
/// Checked before the footer is read, so that a file's last 8 bytes cannot
/// make the reader allocate more than the file could hold.
pub fn footer_len_fits(size: u64, claimed: u64) -> bool {
    let min = FOOTER_MIN_LEN as u64;
    let Some(n) = claimed
        .checked_sub(min)
        .filter(|extra| extra.is_multiple_of(8))
        .map(|extra| extra / 8)
    else {
        return false;
    };
    if n > MAX_PERSISTED_SLOTS {
        return false;
    }
    (MIN_BLOCK_SIZE.trailing_zeros()..=MAX_BLOCK_SIZE.trailing_zeros()).any(|log| {
        let slot = (1u64 << log) + BLOCK_OVERHEAD as u64;
        n.checked_mul(slot)
            .and_then(|region| region.checked_add(claimed))
            == Some(size)
    })
}

/// A file's random id, bound into every block's associated data.
pub type FileId = [u8; FILE_ID_LEN];

/// Checks that a block size is a power of two from 1 KiB to 1 MiB.
pub fn check_block_size(block_size: usize) -> Result<(), Error> {
    if block_size.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        Ok(())
    } else {
        Err(Error::BlockSize(block_size))
    }
}

/// The AEAD of one key size. AES-128 and AES-256 use `ring`, whose AES-GCM
/// runs several times faster here (VAES/VPCLMULQDQ, about 6 GiB/s against
/// about 2 GiB/s for RustCrypto's `aes-gcm`; sequential I/O through the
/// page cache is bound by it). `ring` has no AES-192, so that size keeps
/// RustCrypto. The wire format is the same AES-GCM either way. `ring` does
/// not wipe its key schedules when they are dropped, as RustCrypto's do with
/// the `zeroize` feature; the file key itself stays in a zeroizing type.
/// So an AES-128 or AES-256 file's key schedule (from which the key follows;
/// for AES-256 its first two round keys are the key) stays in freed memory
/// after the file is dropped, until that memory is reused. The footer, sealed
/// and opened once, uses RustCrypto at every size ([`Suite::zeroizing`]), so
/// persisting or opening a file leaves no other key schedule behind.
enum Suite {
    Aes128(ring::aead::LessSafeKey),
    Aes192(Box<Aes192Gcm>),
    Aes256(ring::aead::LessSafeKey),
    /// RustCrypto AES-128-GCM, wiped on drop.
    Rc128(Box<Aes128Gcm>),
    /// RustCrypto AES-256-GCM, wiped on drop.
    Rc256(Box<Aes256Gcm>),
}

/// Seals in place with a RustCrypto cipher.
fn rc_seal<C>(
    c: &C,
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    buf: InOutBuf<'_, '_, u8>,
) -> Option<[u8; TAG_LEN]>
where
    C: AeadInOut + aead::AeadCore<NonceSize = U12>,
{
    c.encrypt_inout_detached(&Nonce::from(*nonce), ad, buf)
        .ok()
        .and_then(|tag| tag.as_slice().try_into().ok())
}

/// Opens in place with a RustCrypto cipher.
fn rc_open<C>(
    c: &C,
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    buf: InOutBuf<'_, '_, u8>,
    tag: &[u8; TAG_LEN],
) -> Result<(), aead::Error>
where
    C: AeadInOut + aead::AeadCore<NonceSize = U12, TagSize = aead::consts::U16>,
{
    c.decrypt_inout_detached(&Nonce::from(*nonce), ad, buf, &Tag::from(*tag))
}

impl Suite {
    fn new(key: &FileKey) -> Result<Self, Error> {
        let bytes = key.expose_secret();
        let ring_key = |alg| {
            ring::aead::UnboundKey::new(alg, bytes)
                .map(ring::aead::LessSafeKey::new)
                .map_err(|_| Error::KeySize(bytes.len()))
        };
        Ok(match key.size() {
            KeySize::Aes128 => Suite::Aes128(ring_key(&ring::aead::AES_128_GCM)?),
            KeySize::Aes192 => Suite::Aes192(Box::new(
                Aes192Gcm::new_from_slice(bytes).map_err(|_| Error::KeySize(bytes.len()))?,
            )),
            KeySize::Aes256 => Suite::Aes256(ring_key(&ring::aead::AES_256_GCM)?),
        })
    }

    /// RustCrypto's AES-GCM at every key size: slower than `ring`, but its
    /// key schedule is wiped when it is dropped.
    fn zeroizing(key: &FileKey) -> Result<Self, Error> {
        let bytes = key.expose_secret();
        let bad = |_| Error::KeySize(bytes.len());
        Ok(match key.size() {
            KeySize::Aes128 => {
                Suite::Rc128(Box::new(Aes128Gcm::new_from_slice(bytes).map_err(bad)?))
            }
            KeySize::Aes192 => {
                Suite::Aes192(Box::new(Aes192Gcm::new_from_slice(bytes).map_err(bad)?))
            }
            KeySize::Aes256 => {
                Suite::Rc256(Box::new(Aes256Gcm::new_from_slice(bytes).map_err(bad)?))
            }
        })
    }

    fn seal(&self, nonce: &[u8; NONCE_LEN], ad: &[u8], buf: InOutBuf<'_, '_, u8>) -> [u8; TAG_LEN] {
        let sealed = match self {
            Suite::Aes128(k) | Suite::Aes256(k) => {
                let out = buf.into_out_with_copied_in();
                k.seal_in_place_separate_tag(
                    ring::aead::Nonce::assume_unique_for_key(*nonce),
                    ring::aead::Aad::from(ad),
                    out,
                )
                .ok()
                .and_then(|tag| tag.as_ref().try_into().ok())
            }
            Suite::Aes192(c) => rc_seal(c.as_ref(), nonce, ad, buf),
            Suite::Rc128(c) => rc_seal(c.as_ref(), nonce, ad, buf),
            Suite::Rc256(c) => rc_seal(c.as_ref(), nonce, ad, buf),
        };
        // AES-GCM refuses only messages over 64 GiB or AD over 2^61 bytes;
        // blocks are at most 1 MiB and our associated data is 27 or 32 bytes.
        sealed.expect("block and associated data lengths are far below the AES-GCM limits")
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        buf: InOutBuf<'_, '_, u8>,
        tag: &[u8; TAG_LEN],
    ) -> Result<(), aead::Error> {
        match self {
            Suite::Aes128(k) | Suite::Aes256(k) => {
                let out = buf.into_out_with_copied_in();
                k.open_in_place_separate_tag(
                    ring::aead::Nonce::assume_unique_for_key(*nonce),
                    ring::aead::Aad::from(ad),
                    ring::aead::Tag::from(*tag),
                    out,
                    0..,
                )
                .map(|_| ())
                .map_err(|_| aead::Error)
            }
            Suite::Aes192(c) => rc_open(c.as_ref(), nonce, ad, buf, tag),
            Suite::Rc128(c) => rc_open(c.as_ref(), nonce, ad, buf, tag),
            Suite::Rc256(c) => rc_open(c.as_ref(), nonce, ad, buf, tag),
        }
    }
}

fn suite_byte(size: KeySize) -> u8 {
    match size {
        KeySize::Aes128 => 1,
        KeySize::Aes192 => 2,
        KeySize::Aes256 => 3,
    }
}

/// Seals and opens the blocks of one file: its key schedule and its id.
pub struct BlockCipher {
    // Boxed: the key schedules are large and handles are moved around.
    suite: Box<Suite>,
    file_id: FileId,
}

impl std::fmt::Debug for BlockCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCipher")
            .field("file_id", &self.file_id)
            .finish_non_exhaustive()
    }
}

impl BlockCipher {
    /// A cipher for the file with this key and id.
    pub fn new(key: &FileKey, file_id: FileId) -> Result<Self, Error> {
        Ok(Self {
            suite: Box::new(Suite::new(key)?),
            file_id,
        })
    }

    /// The file's id.
    pub fn file_id(&self) -> &FileId {
        &self.file_id
    }

    fn block_ad(&self, index: u64, version: u64) -> [u8; FILE_ID_LEN + 16] {
        let mut ad = [0u8; FILE_ID_LEN + 16];
        ad[..FILE_ID_LEN].copy_from_slice(&self.file_id);
        ad[FILE_ID_LEN..FILE_ID_LEN + 8].copy_from_slice(&index.to_be_bytes());
        ad[FILE_ID_LEN + 8..].copy_from_slice(&version.to_be_bytes());
        ad
    }

    /// Seals block `index` at `version` into `slot`, which must be exactly
    /// `plaintext.len() + BLOCK_OVERHEAD` bytes (nonce, ciphertext, tag).
    ///
    /// # Panics
    /// If `slot` has the wrong length (a caller's bug, not a runtime condition).
    pub fn seal_block(
        &self,
        index: u64,
        version: u64,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
        slot: &mut [u8],
    ) {
        assert_eq!(slot.len(), plaintext.len() + BLOCK_OVERHEAD, "slot length");
        let ad = self.block_ad(index, version);
        let (head, rest) = slot.split_at_mut(NONCE_LEN);
        head.copy_from_slice(nonce);
        let (body, tag_out) = rest.split_at_mut(plaintext.len());
        let buf = InOutBuf::new(plaintext, body).expect("body was split to the plaintext's length");
        let tag = self.suite.seal(nonce, &ad, buf);
        tag_out.copy_from_slice(&tag);
    }

    /// Opens block `index`, expected at `version`, from `slot` into
    /// `plaintext` (`slot.len() - BLOCK_OVERHEAD` bytes). A slot of another
    /// length, or one that fails authentication, is [`Error::Tampered`]; then
    /// `plaintext` holds no plaintext.
    pub fn open_block(
        &self,
        index: u64,
        version: u64,
        slot: &[u8],
        plaintext: &mut [u8],
    ) -> Result<(), Error> {
        let tampered = Error::Tampered { block: index };
        if slot.len() != plaintext.len() + BLOCK_OVERHEAD {
            return Err(tampered);
        }
        let ad = self.block_ad(index, version);
        let (nonce, rest) = slot.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(plaintext.len());
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        let tag: &[u8; TAG_LEN] = tag.try_into().expect("the rest after the body is TAG_LEN");
        let buf = InOutBuf::new(body, plaintext).map_err(|_| Error::Tampered { block: index })?;
        if self.suite.open(nonce, &ad, buf, tag).is_err() {
            plaintext.fill(0);
            return Err(tampered);
        }
        Ok(())
    }
}

/// The in-memory state of a file, as sealed into a persisted file's footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// log2 of the block size.
    pub block_log2: u8,
    /// The file's id.
    pub file_id: FileId,
    /// The logical (plaintext) length.
    pub len: u64,
    /// The version of every block slot on disk (0: a hole).
    pub versions: Vec<u64>,
}

impl Footer {
    fn header(&self, size: KeySize) -> [u8; FOOTER_HEADER_LEN] {
        let mut h = [0u8; FOOTER_HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8] = VERSION;
        h[9] = suite_byte(size);
        h[10] = self.block_log2;
        h[11..].copy_from_slice(&self.file_id);
        h
    }

    /// Writes the footer sealed under `key` with `nonce`.
    pub fn seal(&self, key: &FileKey, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>, Error> {
        let header = self.header(key.size());
        let mut body = Vec::with_capacity(16 + 8 * self.versions.len());
        body.extend_from_slice(&self.len.to_be_bytes());
        body.extend_from_slice(&(self.versions.len() as u64).to_be_bytes());
        for v in &self.versions {
            body.extend_from_slice(&v.to_be_bytes());
        }
        let total = FOOTER_HEADER_LEN + NONCE_LEN + body.len() + TAG_LEN + 8;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&header);
        out.extend_from_slice(nonce);
        let start = out.len();
        out.resize(start + body.len(), 0);
        let buf = InOutBuf::new(&body, &mut out[start..]).expect("resized to the body's length");
        let tag = Suite::zeroizing(key)?.seal(nonce, &header, buf);
        out.extend_from_slice(&tag);
        out.extend_from_slice(&(total as u64).to_be_bytes());
        Ok(out)
    }

    /// Reads a footer (exactly its bytes, nothing before or after) and opens
    /// it under `key`. Bytes are untrusted: a wrong magic is
    /// [`Error::UnknownFormat`], another version [`Error::UnsupportedVersion`],
    /// a suite byte this code does not know (after a magic and version it
    /// reads) [`Error::UnknownSuite`], a wrong key or any modification
    /// [`Error::FooterTampered`].
    pub fn open(bytes: &[u8], key: &FileKey) -> Result<Self, Error> {
        if bytes.len() < FOOTER_MIN_LEN || &bytes[..8] != MAGIC {
            return Err(Error::UnknownFormat);
        }
        if bytes[8] != VERSION {
            return Err(Error::UnsupportedVersion(bytes[8]));
        }
        // The suite byte comes before anything whose meaning a suite may
        // change: a footer of this magic and version that names another
        // suite is said to, not taken for another format.
        if !matches!(bytes[9], 1..=3) {
            return Err(Error::UnknownSuite(bytes[9]));
        }
        let block_log2 = bytes[10];
        check_block_size(1usize.checked_shl(u32::from(block_log2)).unwrap_or(0))
            .map_err(|_| Error::UnknownFormat)?;
        if bytes[9] != suite_byte(key.size()) {
            return Err(Error::FooterTampered);
        }
        let (rest, total) = bytes.split_at(bytes.len() - 8);
        let total = u64::from_be_bytes(total.try_into().expect("split 8 bytes from the end"));
        if total != bytes.len() as u64 {
            return Err(Error::UnknownFormat);
        }
        let (header, rest) = rest.split_at(FOOTER_HEADER_LEN);
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (sealed, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        let tag: &[u8; TAG_LEN] = tag.try_into().expect("split TAG_LEN from the end");
        let mut body = Zeroizing::new(vec![0u8; sealed.len()]);
        let buf = InOutBuf::new(sealed, &mut body).map_err(|_| Error::UnknownFormat)?;
        Suite::zeroizing(key)?
            .open(nonce, header, buf, tag)
            .map_err(|_| Error::FooterTampered)?;
        let word = |i: usize| {
            u64::from_be_bytes(
                body[8 * i..8 * i + 8]
                    .try_into()
                    .expect("8-byte word in range"),
            )
        };
        if body.len() % 8 != 0 || body.len() < 16 {
            return Err(Error::UnknownFormat);
        }
        let len = word(0);
        let count = word(1);
        if count != (body.len() / 8 - 2) as u64 {
            return Err(Error::UnknownFormat);
        }
        let versions: Vec<u64> = (2..body.len() / 8).map(word).collect();
        let block_size = 1u64 << block_log2;
        if count > len.div_ceil(block_size) || len > MAX_FILE_SIZE || count > MAX_PERSISTED_SLOTS {
            return Err(Error::UnknownFormat);
        }
        let mut file_id = [0u8; FILE_ID_LEN];
        file_id.copy_from_slice(&header[11..]);
        Ok(Self {
            block_log2,
            file_id,
            len,
            versions,
        })
    }

    /// The length of the footer at the end of `tail`, read from its last 8
    /// bytes, if those bytes are there.
    pub fn trailing_len(tail: &[u8]) -> Option<u64> {
        let at = tail.len().checked_sub(8)?;
        Some(u64::from_be_bytes(tail[at..].try_into().ok()?))
    }
}

/// Random nonces, fetched from the OS generator a few hundred at a time.
///
/// The pool is process memory: a `fork()` without `exec` copies it, and
/// parent and child would hand out the same nonces — under the same key,
/// which breaks AES-GCM. So every [`NoncePool::take`] compares the process
/// id with the one the pool was filled in and refills it after a change.
/// That is a defence only: a file written from both sides of a fork is
/// corrupt anyway (each side keeps its own block versions), so it must not
/// be written from both sides.
pub(crate) struct NoncePool {
    buf: Box<[u8; NONCE_LEN * 256]>,
    next: usize,
    /// The process the buffered nonces were drawn in.
    pid: u32,
}

impl NoncePool {
    pub(crate) fn new() -> Self {
        Self {
            buf: Box::new([0; NONCE_LEN * 256]),
            next: NONCE_LEN * 256,
            pid: std::process::id(),
        }
    }

    /// `count` fresh nonces. One process-id check per call (a system call),
    /// not per nonce.
    pub(crate) fn take(&mut self, count: usize) -> Result<Vec<[u8; NONCE_LEN]>, Error> {
        let pid = std::process::id();
        if pid != self.pid {
            // Drawn before a fork: the other process has the same ones.
            self.buf.fill(0);
            self.next = self.buf.len();
            self.pid = pid;
        }
        (0..count).map(|_| self.next()).collect()
    }

    fn next(&mut self) -> Result<[u8; NONCE_LEN], Error> {
        if self.next == self.buf.len() {
            getrandom::fill(&mut self.buf[..])?;
            self.next = 0;
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&self.buf[self.next..self.next + NONCE_LEN]);
        // Each nonce is handed out once.
        self.buf[self.next..self.next + NONCE_LEN].fill(0);
        self.next += NONCE_LEN;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FileKey {
        FileKey::from_slice(&[9; 32]).expect("32 bytes is a valid key")
    }

    fn footer() -> Footer {
        Footer {
            block_log2: 12,
            file_id: [3; FILE_ID_LEN],
            len: 10_000,
            versions: vec![4, 0, 7],
        }
    }

    #[test]
    fn footer_round_trips() -> Result<(), Error> {
        let sealed = footer().seal(&key(), &[1; NONCE_LEN])?;
        assert_eq!(Footer::trailing_len(&sealed), Some(sealed.len() as u64));
        assert_eq!(Footer::open(&sealed, &key())?, footer());
        Ok(())
    }

    #[test]
    fn footer_rejects_every_single_bit_flip() -> Result<(), Error> {
        let sealed = footer().seal(&key(), &[1; NONCE_LEN])?;
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(Footer::open(&bad, &key()).is_err(), "bit {i}");
        }
        Ok(())
    }

    #[test]
    fn footer_names_an_unknown_version_and_rejects_trailing_bytes() -> Result<(), Error> {
        let mut sealed = footer().seal(&key(), &[1; NONCE_LEN])?;
        let mut other = sealed.clone();
        other[8] = 2;
        assert!(matches!(
            Footer::open(&other, &key()),
            Err(Error::UnsupportedVersion(2))
        ));
        sealed.push(0);
        assert!(matches!(
            Footer::open(&sealed, &key()),
            Err(Error::UnknownFormat)
        ));
        Ok(())
    }

    /// A footer of this magic and version whose suite byte is one this
    /// code does not know names that suite (it cannot be authenticated
    /// without it, so nothing more is claimed); 0 and 4 to 255 alike.
    #[test]
    fn footer_names_an_unknown_suite() -> Result<(), Error> {
        let sealed = footer().seal(&key(), &[1; NONCE_LEN])?;
        for suite in [0u8, 4, 9, 255] {
            let mut other = sealed.clone();
            other[9] = suite;
            let err = Footer::open(&other, &key()).expect_err("an unknown suite");
            assert!(
                matches!(err, Error::UnknownSuite(s) if s == suite),
                "{err:?}"
            );
            let said = err.to_string();
            assert!(
                said.contains(&format!(
                    "footer names cipher suite {suite}, which this build does not know"
                )),
                "{said}"
            );
            assert!(!said.contains("not a persisted"), "{said}");
            // Only a suite above the known ones may be a newer seccs's.
            assert_eq!(said.contains("newer seccs"), suite > 3, "{said}");
        }
        Ok(())
    }

    #[test]
    fn nonces_drawn_before_a_fork_are_not_handed_out_after_it() -> Result<(), Error> {
        let mut pool = NoncePool::new();
        let first = pool.take(1)?;
        // What the pool would hand out next, as a forked child would also.
        let buffered: [u8; NONCE_LEN] = pool.buf[NONCE_LEN..2 * NONCE_LEN]
            .try_into()
            .expect("NONCE_LEN bytes");
        // As if this were the child of a fork: another process id.
        pool.pid = pool.pid.wrapping_add(1);
        let after = pool.take(2)?;
        assert_ne!(
            after[0], buffered,
            "a nonce drawn before the fork was reused"
        );
        assert!(!after.contains(&first[0]));
        assert_eq!(pool.pid, std::process::id());
        Ok(())
    }

    #[test]
    fn footers_seal_the_same_bytes_with_either_implementation() -> Result<(), Error> {
        // The footer is sealed with RustCrypto (wiped on drop); the blocks of
        // AES-128/256 files with ring. Both must be the same AES-GCM.
        for len in [16usize, 24, 32] {
            let key = FileKey::from_slice(&vec![0x42; len])?;
            let header = [7u8; 27];
            let body = [0x5au8; 100];
            let mut out = [[0u8; 100]; 2];
            let mut tags = [[0u8; TAG_LEN]; 2];
            for (k, suite) in [Suite::new(&key)?, Suite::zeroizing(&key)?]
                .iter()
                .enumerate()
            {
                let buf = InOutBuf::new(&body[..], &mut out[k][..]).expect("same lengths");
                tags[k] = suite.seal(&[3; NONCE_LEN], &header, buf);
            }
            assert_eq!(out[0], out[1], "{len}");
            assert_eq!(tags[0], tags[1], "{len}");
            let sealed = footer().seal(&key, &[1; NONCE_LEN])?;
            assert_eq!(Footer::open(&sealed, &key)?, footer(), "{len}");
        }
        Ok(())
    }

    #[test]
    fn footer_length_is_bounded_by_what_the_file_can_hold() -> Result<(), Error> {
        let sealed = footer().seal(&key(), &[1; NONCE_LEN])?;
        let claimed = sealed.len() as u64;
        let region = 3 * (4096 + BLOCK_OVERHEAD as u64);
        assert!(footer_len_fits(region + claimed, claimed));
        // A claim the file's size cannot hold, or a huge one, is refused
        // without reading it.
        assert!(!footer_len_fits(region + claimed, claimed + 8));
        assert!(!footer_len_fits(3 << 30, 3 << 30));
        assert!(!footer_len_fits(u64::MAX, u64::MAX));
        assert!(!footer_len_fits(100, 7));
        let slots = MAX_PERSISTED_SLOTS + 1;
        let too_many = FOOTER_MIN_LEN as u64 + 8 * slots;
        assert!(!footer_len_fits(slots * (1024 + 28) + too_many, too_many));
        Ok(())
    }

    #[test]
    fn block_opens_only_at_its_index_and_version() -> Result<(), Error> {
        let cipher = BlockCipher::new(&key(), [5; FILE_ID_LEN])?;
        let plain = [0x5a; 1024];
        let mut slot = vec![0; 1024 + BLOCK_OVERHEAD];
        cipher.seal_block(2, 9, &[8; NONCE_LEN], &plain, &mut slot);
        let mut out = [0; 1024];
        cipher.open_block(2, 9, &slot, &mut out)?;
        assert_eq!(out, plain);
        assert!(cipher.open_block(3, 9, &slot, &mut out).is_err());
        assert!(cipher.open_block(2, 8, &slot, &mut out).is_err());
        assert!(
            out.iter().all(|b| *b == 0),
            "a failed open leaves no plaintext"
        );
        let other = BlockCipher::new(&key(), [6; FILE_ID_LEN])?;
        assert!(other.open_block(2, 9, &slot, &mut out).is_err());
        Ok(())
    }
}
