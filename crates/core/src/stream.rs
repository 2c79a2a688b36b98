//! The segmented stream format: authenticated encryption of files and streams
//! of any length in constant memory.
//!
//! This is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015)
//! as used by age and Tink. A stream is a header followed by segments:
//!
//! ```text
//! header   magic "seccsstm" (8) | version 1 (1) | suite (1) | log2 segment size (1)
//!          | salt (32) | nonce prefix (7, or 19 for XChaCha20-Poly1305)
//! segment  AEAD(stream key, nonce, plaintext of exactly 2^log2 bytes) = ciphertext ‖ tag (16)
//! last     AEAD(stream key, nonce', plaintext of 0..=2^log2 bytes)
//! nonce    prefix ‖ segment counter (u32, big-endian) ‖ last flag (0 or 1)
//! ```
//!
//! The stream key is HKDF-SHA-256 of the caller's key with the header's salt,
//! and with the whole header and the caller's associated data (the
//! "encryption context") in the `info`: a changed header byte, a different
//! context or a different key all give a different stream key, so every
//! segment fails to open. Exactly:
//!
//! ```text
//! stream key = HKDF-SHA-256(ikm = caller's key (32), salt = header's salt (32),
//!                           info = "seccs/v1/stream" ‖ header (all of it, nonce prefix
//!                                  included) ‖ len(context) (u64 BE) ‖ context), 32 bytes
//! suite      1 = AES-256-GCM (prefix 7), 2 = ChaCha20-Poly1305 (prefix 7),
//!            3 = XChaCha20-Poly1305 (prefix 19); every suite's nonce is prefix ‖ 4 ‖ 1 bytes
//! segment    the AEAD's associated data is empty; log2 segment size is 10..=24 (1 KiB to
//!            16 MiB), 16 by default
//! ```
//!
//! A reader refuses a version other than 1 ([`StreamError::UnsupportedVersion`]),
//! an unknown suite ([`StreamError::UnknownSuite`]) and a segment size out of
//! range before it reads a segment. The key service's `kms encrypt --kek`
//! (`seccs-kms`) writes this format under `HKDF(DEK, "seccs/v1/kms/file")`
//! ([`crate::kdf`]: salt `seccs`) with the context given on its command line.
//!
//! What the construction detects, and how:
//! - **reordering or dropping a segment**: the counter is in the nonce;
//! - **truncation** at a segment boundary: the last segment is sealed with the
//!   last flag set, so a stream that ends on a segment sealed without it is
//!   [`StreamError::Truncated`];
//! - **appending**: bytes after the last segment make it open as a non-last
//!   segment, which fails ([`StreamError::Tampered`]);
//! - **splicing** segments of two streams: each stream has its own salt and so
//!   its own key.
//!
//! A full-size final segment is only known to be final once the reader sees
//! the end of input, so both the [`EncryptingWriter`] and the
//! [`DecryptingReader`] hold one segment back. An empty stream has one empty
//! last segment. [`StreamEncryptor::encrypt_last`] and
//! [`StreamDecryptor::decrypt_last`] consume their value, so "last" can be set
//! only once, and at most 2^32 segments are sealed under one nonce prefix.
//!
//! ```
//! use std::io::{Read, Write};
//! use seccs_core::{SecretKey, stream::{DecryptingReader, EncryptingWriter, StreamParams}};
//!
//! let key = SecretKey::generate()?;
//! let mut w = EncryptingWriter::new(Vec::new(), &key, StreamParams::default(), b"ctx")?;
//! w.write_all(b"hello, stream")?;
//! let sealed = w.finish()?;
//!
//! let mut r = DecryptingReader::new(&sealed[..], &key, b"ctx")?;
//! let mut back = Vec::new();
//! r.read_to_end(&mut back)?;
//! assert_eq!(back, b"hello, stream");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, Read, Write};

use aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::key::{KEY_LEN, SecretKey};

/// The magic bytes every stream starts with.
pub const MAGIC: &[u8; 8] = b"seccsstm";
/// The format version written by this code.
pub const VERSION: u8 = 1;
/// Length of an AEAD tag appended to every segment.
pub const TAG_LEN: usize = 16;
/// Length of the random salt in the header.
pub const SALT_LEN: usize = 32;
/// Smallest accepted `log2` of the segment size (1 KiB).
pub const MIN_SEGMENT_LOG2: u8 = 10;
/// Largest accepted `log2` of the segment size (16 MiB): bounds a reader's memory.
pub const MAX_SEGMENT_LOG2: u8 = 24;
/// Default `log2` of the segment size (64 KiB).
pub const DEFAULT_SEGMENT_LOG2: u8 = 16;
/// Length of the header before the nonce prefix.
const FIXED_HEADER_LEN: usize = 8 + 3 + SALT_LEN;
/// The longest header (XChaCha20-Poly1305).
pub const MAX_HEADER_LEN: usize = FIXED_HEADER_LEN + 19;
/// HKDF info prefix of the stream key; part of the format.
const KDF_LABEL: &[u8] = b"seccs/v1/stream";

/// What can go wrong reading or writing a stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The input does not start with the stream magic: not a seccs stream.
    #[error("not a seccs stream (unknown magic)")]
    UnknownFormat,
    /// The stream was written by a newer version of the format.
    #[error("unsupported stream format version {0}")]
    UnsupportedVersion(u8),
    /// The header names an AEAD suite this code does not know.
    #[error("unknown stream cipher suite {0}")]
    UnknownSuite(u8),
    /// The header's segment size is outside the accepted range.
    #[error("invalid segment size 2^{0}")]
    InvalidSegmentSize(u8),
    /// The stream ends early: a header cut short, or no final segment.
    #[error("the stream is truncated")]
    Truncated,
    /// A segment failed authentication: wrong key or context, or the stream
    /// was modified, reordered or extended.
    #[error("the stream failed authentication (wrong key or context, or tampered)")]
    Tampered,
    /// More than 2^32 segments: the nonce counter would wrap.
    #[error("the stream is too long for one nonce prefix")]
    TooLong,
    /// A caller passed a segment of the wrong length.
    #[error("segment of {actual} bytes where {expected} were required")]
    SegmentLength {
        /// The length the call requires (the maximum, for a last segment).
        expected: usize,
        /// The length that was passed.
        actual: usize,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// Reading or writing the underlying stream failed (the cause is the
    /// source, not repeated here: `{:#}` would print it twice).
    #[error("stream I/O failed")]
    Io(#[from] io::Error),
    /// An earlier call on this [`EncryptingWriter`] or [`DecryptingReader`]
    /// failed, and a stream is not taken up again after a failure: the
    /// writer may have sealed a segment it could not write, the reader may
    /// have consumed bytes of a segment it could not open.
    #[error("an earlier error ended this stream")]
    AfterError,
}

impl StreamError {
    /// Finds the [`StreamError`] inside an [`io::Error`] returned by a
    /// [`DecryptingReader`] or [`EncryptingWriter`], if there is one.
    pub fn from_io(err: &io::Error) -> Option<&StreamError> {
        err.get_ref().and_then(|e| e.downcast_ref::<StreamError>())
    }

    fn into_io(self) -> io::Error {
        match self {
            StreamError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// The AEAD that seals each segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Suite {
    /// AES-256-GCM (the default: fastest where AES-NI is present).
    Aes256Gcm,
    /// ChaCha20-Poly1305 (fast without AES hardware).
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305 (a 19-byte random nonce prefix).
    XChaCha20Poly1305,
}

impl Suite {
    /// The identifier of the suite in the header.
    pub fn id(self) -> u8 {
        match self {
            Suite::Aes256Gcm => 1,
            Suite::ChaCha20Poly1305 => 2,
            Suite::XChaCha20Poly1305 => 3,
        }
    }

    /// The suite with header identifier `id`.
    pub fn from_id(id: u8) -> Result<Self, StreamError> {
        match id {
            1 => Ok(Suite::Aes256Gcm),
            2 => Ok(Suite::ChaCha20Poly1305),
            3 => Ok(Suite::XChaCha20Poly1305),
            other => Err(StreamError::UnknownSuite(other)),
        }
    }

    /// Length of the random nonce prefix: the AEAD nonce less the 4-byte
    /// counter and the 1-byte last flag.
    pub fn prefix_len(self) -> usize {
        match self {
            Suite::Aes256Gcm | Suite::ChaCha20Poly1305 => 7,
            Suite::XChaCha20Poly1305 => 19,
        }
    }
}

/// The choices a writer makes for a new stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamParams {
    /// The AEAD suite.
    pub suite: Suite,
    /// `log2` of the segment size, in `MIN_SEGMENT_LOG2..=MAX_SEGMENT_LOG2`.
    pub segment_log2: u8,
}

impl Default for StreamParams {
    fn default() -> Self {
        Self {
            suite: Suite::Aes256Gcm,
            segment_log2: DEFAULT_SEGMENT_LOG2,
        }
    }
}

/// A parsed stream header.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    suite: Suite,
    segment_log2: u8,
    salt: [u8; SALT_LEN],
    prefix: [u8; 19],
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field("suite", &self.suite)
            .field("segment_log2", &self.segment_log2)
            .finish_non_exhaustive()
    }
}

impl Header {
    /// A header with a fresh random salt and nonce prefix.
    pub fn generate(params: StreamParams) -> Result<Self, StreamError> {
        check_segment_log2(params.segment_log2)?;
        let mut salt = [0u8; SALT_LEN];
        let mut prefix = [0u8; 19];
        getrandom::fill(&mut salt).map_err(|e| StreamError::Random(e.to_string()))?;
        getrandom::fill(&mut prefix[..params.suite.prefix_len()])
            .map_err(|e| StreamError::Random(e.to_string()))?;
        Ok(Self {
            suite: params.suite,
            segment_log2: params.segment_log2,
            salt,
            prefix,
        })
    }

    /// The AEAD suite of the stream.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The plaintext length of every segment but the last.
    pub fn segment_size(&self) -> usize {
        1usize << self.segment_log2
    }

    /// Length of the encoded header.
    pub fn encoded_len(&self) -> usize {
        FIXED_HEADER_LEN + self.suite.prefix_len()
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.suite.id());
        out.push(self.segment_log2);
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.prefix[..self.suite.prefix_len()]);
        out
    }

    /// Parses a header at the start of `bytes`; returns it and its length.
    /// Bytes after the header (the segments) are left to the caller.
    pub fn parse(bytes: &[u8]) -> Result<(Self, usize), StreamError> {
        let fixed = bytes.get(..FIXED_HEADER_LEN);
        // Check the magic on what there is, so a short non-stream input is
        // reported as the wrong format rather than as truncated.
        let magic_part = &bytes[..bytes.len().min(MAGIC.len())];
        if magic_part != &MAGIC[..magic_part.len()] {
            return Err(StreamError::UnknownFormat);
        }
        let fixed = fixed.ok_or(StreamError::Truncated)?;
        if fixed[8] != VERSION {
            return Err(StreamError::UnsupportedVersion(fixed[8]));
        }
        let suite = Suite::from_id(fixed[9])?;
        let segment_log2 = fixed[10];
        check_segment_log2(segment_log2)?;
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&fixed[11..11 + SALT_LEN]);
        let len = FIXED_HEADER_LEN + suite.prefix_len();
        let prefix_bytes = bytes
            .get(FIXED_HEADER_LEN..len)
            .ok_or(StreamError::Truncated)?;
        let mut prefix = [0u8; 19];
        prefix[..prefix_bytes.len()].copy_from_slice(prefix_bytes);
        Ok((
            Self {
                suite,
                segment_log2,
                salt,
                prefix,
            },
            len,
        ))
    }

    /// Reads exactly one header from `reader`.
    pub fn read_from<R: Read + ?Sized>(reader: &mut R) -> Result<Self, StreamError> {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let got = read_full(reader, &mut buf[..FIXED_HEADER_LEN])?;
        if got < FIXED_HEADER_LEN {
            // Reports a wrong magic before a short read.
            Self::parse(&buf[..got])?;
            return Err(StreamError::Truncated);
        }
        let suite = match Self::parse(&buf[..FIXED_HEADER_LEN]) {
            Err(StreamError::Truncated) => Suite::from_id(buf[9])?,
            Err(e) => return Err(e),
            Ok((h, _)) => h.suite,
        };
        let total = FIXED_HEADER_LEN + suite.prefix_len();
        let got = read_full(reader, &mut buf[FIXED_HEADER_LEN..total])?;
        if got < total - FIXED_HEADER_LEN {
            return Err(StreamError::Truncated);
        }
        Self::parse(&buf[..total]).map(|(h, _)| h)
    }
}

fn check_segment_log2(log2: u8) -> Result<(), StreamError> {
    if (MIN_SEGMENT_LOG2..=MAX_SEGMENT_LOG2).contains(&log2) {
        Ok(())
    } else {
        Err(StreamError::InvalidSegmentSize(log2))
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The nonce of one segment: the header's prefix, the counter, the last flag.
#[derive(Clone, Copy)]
struct SegmentNonce {
    counter: u32,
    last: bool,
}

impl SegmentNonce {
    fn bytes(self, prefix: &[u8]) -> ([u8; 24], usize) {
        let mut out = [0u8; 24];
        let p = prefix.len();
        out[..p].copy_from_slice(prefix);
        out[p..p + 4].copy_from_slice(&self.counter.to_be_bytes());
        out[p + 4] = u8::from(self.last);
        (out, p + 5)
    }
}

/// One AEAD instance keyed with the stream key.
enum SegmentCipher {
    Aes(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
    XChaCha(Box<XChaCha20Poly1305>),
}

impl SegmentCipher {
    fn new(key: &SecretKey, header: &Header, ad: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(&header.salt), key.expose_secret());
        let header_bytes = header.to_bytes();
        let ad_len = (ad.len() as u64).to_be_bytes();
        let mut okm = Zeroizing::new([0u8; KEY_LEN]);
        // Cannot fail: 32 bytes is far below HKDF-SHA-256's 8160-byte limit.
        hk.expand_multi_info(&[KDF_LABEL, &header_bytes, &ad_len, ad], okm.as_mut())
            .expect("32 bytes is within HKDF's output limit");
        let k: &[u8] = okm.as_ref();
        // Cannot fail: every suite takes a 32-byte key.
        match header.suite {
            Suite::Aes256Gcm => Self::Aes(Box::new(
                Aes256Gcm::new_from_slice(k).expect("AES-256-GCM takes 32-byte keys"),
            )),
            Suite::ChaCha20Poly1305 => Self::ChaCha(Box::new(
                ChaCha20Poly1305::new_from_slice(k).expect("ChaCha20-Poly1305 takes 32-byte keys"),
            )),
            Suite::XChaCha20Poly1305 => Self::XChaCha(Box::new(
                XChaCha20Poly1305::new_from_slice(k)
                    .expect("XChaCha20-Poly1305 takes 32-byte keys"),
            )),
        }
    }

    fn seal(&self, nonce: &[u8], buf: &mut Vec<u8>) -> Result<(), StreamError> {
        match self {
            Self::Aes(c) => nonce_of::<Aes256Gcm>(nonce).and_then(|n| {
                c.encrypt_in_place(&n, &[], buf)
                    .map_err(|_| StreamError::TooLong)
            }),
            Self::ChaCha(c) => nonce_of::<ChaCha20Poly1305>(nonce).and_then(|n| {
                c.encrypt_in_place(&n, &[], buf)
                    .map_err(|_| StreamError::TooLong)
            }),
            Self::XChaCha(c) => nonce_of::<XChaCha20Poly1305>(nonce).and_then(|n| {
                c.encrypt_in_place(&n, &[], buf)
                    .map_err(|_| StreamError::TooLong)
            }),
        }
    }

    fn open(&self, nonce: &[u8], buf: &mut Vec<u8>) -> Result<(), StreamError> {
        match self {
            Self::Aes(c) => nonce_of::<Aes256Gcm>(nonce).and_then(|n| {
                c.decrypt_in_place(&n, &[], buf)
                    .map_err(|_| StreamError::Tampered)
            }),
            Self::ChaCha(c) => nonce_of::<ChaCha20Poly1305>(nonce).and_then(|n| {
                c.decrypt_in_place(&n, &[], buf)
                    .map_err(|_| StreamError::Tampered)
            }),
            Self::XChaCha(c) => nonce_of::<XChaCha20Poly1305>(nonce).and_then(|n| {
                c.decrypt_in_place(&n, &[], buf)
                    .map_err(|_| StreamError::Tampered)
            }),
        }
    }
}

fn nonce_of<A: aead::AeadCore>(bytes: &[u8]) -> Result<aead::Nonce<A>, StreamError> {
    // The suite fixes both the prefix length and the AEAD, so this only
    // fails if the two disagree, which `Header` rules out.
    aead::Nonce::<A>::try_from(bytes).map_err(|_| StreamError::Tampered)
}

/// Seals segments one at a time. [`StreamEncryptor::encrypt_last`] consumes
/// it, so a stream has exactly one last segment.
pub struct StreamEncryptor {
    cipher: SegmentCipher,
    header: Header,
    counter: u32,
}

impl std::fmt::Debug for StreamEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamEncryptor")
            .field("header", &self.header)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl StreamEncryptor {
    /// A new stream under `key` bound to the associated data `ad`; returns
    /// the encryptor and the header to write before the first segment.
    pub fn new(
        key: &SecretKey,
        params: StreamParams,
        ad: &[u8],
    ) -> Result<(Self, Vec<u8>), StreamError> {
        let header = Header::generate(params)?;
        let bytes = header.to_bytes();
        let cipher = SegmentCipher::new(key, &header, ad);
        Ok((
            Self {
                cipher,
                header,
                counter: 0,
            },
            bytes,
        ))
    }

    /// The plaintext length of every segment but the last.
    pub fn segment_size(&self) -> usize {
        self.header.segment_size()
    }

    /// Seals a segment that is not the last; `segment` must hold exactly
    /// [`segment_size`](Self::segment_size) bytes and is replaced by its
    /// ciphertext and tag.
    pub fn encrypt_next(&mut self, segment: &mut Vec<u8>) -> Result<(), StreamError> {
        if segment.len() != self.segment_size() {
            return Err(StreamError::SegmentLength {
                expected: self.segment_size(),
                actual: segment.len(),
            });
        }
        let nonce = SegmentNonce {
            counter: self.counter,
            last: false,
        };
        // Spent before the seal: a counter is never handed out twice, even
        // after a call that failed.
        self.counter = self.counter.checked_add(1).ok_or(StreamError::TooLong)?;
        let (n, len) = nonce.bytes(&self.header.prefix[..self.header.suite.prefix_len()]);
        self.cipher.seal(&n[..len], segment)
    }

    /// Seals several full segments that are not the last, in order, using
    /// up to `threads` threads (each segment as [`encrypt_next`](Self::encrypt_next)).
    pub fn encrypt_next_many(
        &mut self,
        segments: &mut [Vec<u8>],
        threads: usize,
    ) -> Result<(), StreamError> {
        self.encrypt_next_many_during(segments, threads, || Ok(()))
    }

    /// As [`encrypt_next_many`](Self::encrypt_next_many), while the calling
    /// thread runs `io` (writing the previous batch, reading the next): the
    /// other threads start sealing at once, and the calling thread joins them
    /// when `io` returns. Segments are claimed one at a time, so the work
    /// splits by whoever is free. Returns `io`'s error if it fails.
    fn encrypt_next_many_during(
        &mut self,
        segments: &mut [Vec<u8>],
        threads: usize,
        io: impl FnOnce() -> Result<(), StreamError>,
    ) -> Result<(), StreamError> {
        let seg = self.segment_size();
        if let Some(bad) = segments.iter().find(|s| s.len() != seg) {
            return Err(StreamError::SegmentLength {
                expected: seg,
                actual: bad.len(),
            });
        }
        let n = u32::try_from(segments.len()).map_err(|_| StreamError::TooLong)?;
        let first = self.counter;
        let next = first.checked_add(n).ok_or(StreamError::TooLong)?;
        // Spent before any is sealed: a batch that fails part way (its `io`,
        // a helper) has sealed some segments under them, and a later call
        // must not seal others under the same nonces.
        self.counter = next;
        let prefix = &self.header.prefix[..self.header.suite.prefix_len()];
        let cipher = &self.cipher;
        let helpers = threads.clamp(1, segments.len().max(1)) - 1;
        let work = std::sync::Mutex::new(segments.iter_mut().zip(first..next));
        let seal_claimed = || -> Result<(), StreamError> {
            loop {
                // The guarded iterator stays consistent whatever a panicking
                // holder did: it only hands out disjoint segments.
                let claimed = work.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some((segment, counter)) = claimed else {
                    return Ok(());
                };
                let nonce = SegmentNonce {
                    counter,
                    last: false,
                };
                let (bytes, len) = nonce.bytes(prefix);
                cipher.seal(&bytes[..len], segment)?;
            }
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..helpers).map(|_| scope.spawn(seal_claimed)).collect();
            let io_result = io();
            let mine = seal_claimed();
            let joined = handles
                .into_iter()
                .try_for_each(|h| h.join().unwrap_or(Err(StreamError::TooLong)));
            io_result.and(mine).and(joined)
        })
    }

    /// Seals the last segment (at most one segment size, possibly empty) and
    /// ends the stream.
    pub fn encrypt_last(self, segment: &mut Vec<u8>) -> Result<(), StreamError> {
        if segment.len() > self.segment_size() {
            return Err(StreamError::SegmentLength {
                expected: self.segment_size(),
                actual: segment.len(),
            });
        }
        let nonce = SegmentNonce {
            counter: self.counter,
            last: true,
        };
        let (n, len) = nonce.bytes(&self.header.prefix[..self.header.suite.prefix_len()]);
        self.cipher.seal(&n[..len], segment)
    }
}

/// Opens segments one at a time, in order.
/// [`StreamDecryptor::decrypt_last`] consumes it.
pub struct StreamDecryptor {
    cipher: SegmentCipher,
    header: Header,
    counter: u32,
}

impl std::fmt::Debug for StreamDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDecryptor")
            .field("header", &self.header)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl StreamDecryptor {
    /// A decryptor for the stream with `header`, under `key` and `ad`.
    pub fn new(key: &SecretKey, header: &Header, ad: &[u8]) -> Self {
        Self {
            cipher: SegmentCipher::new(key, header, ad),
            header: header.clone(),
            counter: 0,
        }
    }

    /// The plaintext length of every segment but the last.
    pub fn segment_size(&self) -> usize {
        self.header.segment_size()
    }

    /// Opens a segment that is not the last: `segment` must hold exactly one
    /// segment size plus the tag, and is replaced by its plaintext.
    pub fn decrypt_next(&mut self, segment: &mut Vec<u8>) -> Result<(), StreamError> {
        if segment.len() != self.segment_size() + TAG_LEN {
            return Err(StreamError::SegmentLength {
                expected: self.segment_size() + TAG_LEN,
                actual: segment.len(),
            });
        }
        let next = self.counter.checked_add(1).ok_or(StreamError::TooLong)?;
        self.open(segment, false)?;
        self.counter = next;
        Ok(())
    }

    /// Opens the last segment and ends the stream. If it fails to open as a
    /// last segment but opens as a middle one, the stream was cut at a
    /// segment boundary: [`StreamError::Truncated`].
    pub fn decrypt_last(self, segment: &mut Vec<u8>) -> Result<(), StreamError> {
        if segment.len() < TAG_LEN || segment.len() > self.segment_size() + TAG_LEN {
            return Err(if segment.len() < TAG_LEN {
                StreamError::Truncated
            } else {
                StreamError::SegmentLength {
                    expected: self.segment_size() + TAG_LEN,
                    actual: segment.len(),
                }
            });
        }
        let saved = (segment.len() == self.segment_size() + TAG_LEN).then(|| segment.clone());
        let Err(e) = self.open(segment, true) else {
            return Ok(());
        };
        if let Some(mut copy) = saved
            && self.open(&mut copy, false).is_ok()
        {
            return Err(StreamError::Truncated);
        }
        Err(e)
    }

    fn open(&self, segment: &mut Vec<u8>, last: bool) -> Result<(), StreamError> {
        let nonce = SegmentNonce {
            counter: self.counter,
            last,
        };
        let (n, len) = nonce.bytes(&self.header.prefix[..self.header.suite.prefix_len()]);
        self.cipher.open(&n[..len], segment)
    }
}

/// An [`io::Write`] that encrypts into an inner writer. Call
/// [`finish`](Self::finish) to seal the last segment: a writer dropped
/// without it leaves a stream that decrypts as [`StreamError::Truncated`].
///
/// After an error every later `write` and `finish` fails with
/// [`StreamError::AfterError`]: a segment sealed but not written cannot be
/// sealed again under its nonce, so the stream cannot go on.
pub struct EncryptingWriter<W: Write> {
    inner: W,
    enc: StreamEncryptor,
    buf: Vec<u8>,
    failed: bool,
}

impl<W: Write> std::fmt::Debug for EncryptingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptingWriter")
            .field("enc", &self.enc)
            .finish_non_exhaustive()
    }
}

impl<W: Write> EncryptingWriter<W> {
    /// Writes the header of a new stream to `inner`.
    pub fn new(
        mut inner: W,
        key: &SecretKey,
        params: StreamParams,
        ad: &[u8],
    ) -> Result<Self, StreamError> {
        let (enc, header) = StreamEncryptor::new(key, params, ad)?;
        inner.write_all(&header)?;
        let buf = Vec::with_capacity(enc.segment_size() + TAG_LEN);
        Ok(Self {
            inner,
            enc,
            buf,
            failed: false,
        })
    }

    /// Seals the last segment, flushes, and returns the inner writer.
    pub fn finish(mut self) -> Result<W, StreamError> {
        if self.failed {
            return Err(StreamError::AfterError);
        }
        self.enc.encrypt_last(&mut self.buf)?;
        self.inner.write_all(&self.buf)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    fn write_inner(&mut self, data: &[u8]) -> Result<usize, StreamError> {
        if self.failed {
            return Err(StreamError::AfterError);
        }
        let seg = self.enc.segment_size();
        if data.is_empty() {
            return Ok(0);
        }
        if self.buf.len() == seg {
            // More data follows, so the held segment is not the last.
            self.failed = true;
            self.enc.encrypt_next(&mut self.buf)?;
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
            self.failed = false;
        }
        let take = (seg - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        Ok(take)
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_inner(data).map_err(StreamError::into_io)
    }

    /// Flushes the inner writer. The held-back segment is only written by
    /// [`finish`](Self::finish) or once more data arrives.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An [`io::Read`] that decrypts a stream from an inner reader. Errors are
/// [`io::Error`]s of kind `InvalidData` wrapping a [`StreamError`]; see
/// [`StreamError::from_io`].
///
/// Each segment is authenticated before any of its bytes are returned, but
/// a stream cut short or with segments dropped from its end is found out
/// only at the end: the segments before were returned already. A reader
/// that must act only on a whole authentic stream (write a file, run a
/// command) holds what it reads until `read` returns 0, as the `seccs` CLI
/// writes to a temporary file and renames it.
///
/// After an error every later `read` fails with [`StreamError::AfterError`],
/// never reports a clean end: the bytes of the segment that failed are
/// spent, so what would follow could not be trusted to be the rest.
pub struct DecryptingReader<R: Read> {
    inner: R,
    dec: Option<StreamDecryptor>,
    segment_size: usize,
    /// Ciphertext being collected, then plaintext being served.
    buf: Vec<u8>,
    /// The byte read ahead of a full segment, proving it is not the last.
    ahead: Option<u8>,
    pos: usize,
    serving: bool,
    failed: bool,
}

impl<R: Read> std::fmt::Debug for DecryptingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptingReader")
            .field("segment_size", &self.segment_size)
            .field("done", &self.dec.is_none())
            .finish_non_exhaustive()
    }
}

impl<R: Read> DecryptingReader<R> {
    /// Reads and checks the header of the stream in `inner`.
    pub fn new(mut inner: R, key: &SecretKey, ad: &[u8]) -> Result<Self, StreamError> {
        let header = Header::read_from(&mut inner)?;
        let dec = StreamDecryptor::new(key, &header, ad);
        let segment_size = header.segment_size();
        Ok(Self {
            inner,
            dec: Some(dec),
            segment_size,
            buf: Vec::with_capacity(segment_size + TAG_LEN + 1),
            ahead: None,
            pos: 0,
            serving: false,
            failed: false,
        })
    }

    /// Returns the inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Decrypts the next segment into `buf`; `false` at the end of the stream.
    fn next_segment(&mut self) -> Result<bool, StreamError> {
        if self.failed {
            return Err(StreamError::AfterError);
        }
        self.failed = true;
        let more = self.open_next_segment()?;
        self.failed = false;
        Ok(more)
    }

    fn open_next_segment(&mut self) -> Result<bool, StreamError> {
        let Some(dec) = self.dec.as_mut() else {
            return Ok(false);
        };
        let full = self.segment_size + TAG_LEN;
        self.buf.clear();
        self.pos = 0;
        if let Some(b) = self.ahead.take() {
            self.buf.push(b);
        }
        let start = self.buf.len();
        self.buf.resize(full + 1, 0);
        let got = read_full(&mut self.inner, &mut self.buf[start..])?;
        self.buf.truncate(start + got);
        if self.buf.len() == full + 1 {
            self.ahead = self.buf.pop();
            dec.decrypt_next(&mut self.buf)?;
        } else {
            let dec = self.dec.take().ok_or(StreamError::Truncated)?;
            dec.decrypt_last(&mut self.buf)?;
        }
        self.serving = true;
        Ok(true)
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.serving && self.pos < self.buf.len() {
                let n = (self.buf.len() - self.pos).min(out.len());
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            self.serving = false;
            if !self.next_segment().map_err(StreamError::into_io)? {
                return Ok(0);
            }
        }
    }
}

/// Segments sealed per batch by [`encrypt_stream`].
const BATCH_SEGMENTS: usize = 32;

/// Encrypts all of `reader` into `writer` as one stream; returns the
/// plaintext length. Holds one batch of segments in memory (32 segments)
/// and seals each batch on all available cores.
pub fn encrypt_stream<R: Read + ?Sized, W: Write + ?Sized>(
    key: &SecretKey,
    params: StreamParams,
    ad: &[u8],
    reader: &mut R,
    writer: &mut W,
) -> Result<u64, StreamError> {
    let (mut enc, header) = StreamEncryptor::new(key, params, ad)?;
    writer.write_all(&header)?;
    let seg = enc.segment_size();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    // Two batches: while one is sealed, the calling thread writes the other
    // (sealed the round before) and reads the next plaintext into it.
    let mut sealing: Vec<Vec<u8>> = Vec::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut ahead: Option<u8> = None;
    let mut batch = read_batch(reader, &mut sealing, seg, &mut ahead)?;
    let mut to_write = 0;
    let mut total = 0u64;
    loop {
        let (full, last) = batch;
        let mut next = (0, None);
        let more = last.is_none();
        enc.encrypt_next_many_during(&mut sealing[..full], threads, || {
            for s in &spare[..to_write] {
                writer.write_all(s)?;
            }
            if more {
                next = read_batch(reader, &mut spare, seg, &mut ahead)?;
            }
            Ok(())
        })?;
        total += (full * seg) as u64;
        if let Some(mut l) = last {
            for s in &sealing[..full] {
                writer.write_all(s)?;
            }
            total += l.len() as u64;
            enc.encrypt_last(&mut l)?;
            writer.write_all(&l)?;
            writer.flush()?;
            return Ok(total);
        }
        to_write = full;
        std::mem::swap(&mut sealing, &mut spare);
        batch = next;
    }
}

/// Reads up to [`BATCH_SEGMENTS`] full segments into `segs` (reusing its
/// buffers); returns how many were full and, once the reader ends, the last
/// (short or empty) segment. One byte is read ahead, so a full segment is
/// known not to be the last.
fn read_batch<R: Read + ?Sized>(
    reader: &mut R,
    segs: &mut Vec<Vec<u8>>,
    seg: usize,
    ahead: &mut Option<u8>,
) -> Result<(usize, Option<Vec<u8>>), StreamError> {
    let mut full = 0;
    while full < BATCH_SEGMENTS {
        if segs.len() == full {
            segs.push(Vec::with_capacity(seg + TAG_LEN + 1));
        }
        let buf = &mut segs[full];
        buf.clear();
        buf.extend(ahead.take());
        let start = buf.len();
        buf.resize(seg + 1, 0);
        let got = start + read_full(reader, &mut buf[start..])?;
        if got == seg + 1 {
            *ahead = buf.pop();
            full += 1;
        } else {
            buf.truncate(got);
            return Ok((full, Some(std::mem::take(buf))));
        }
    }
    Ok((full, None))
}

/// Decrypts one stream from `reader` into `writer`; returns the plaintext
/// length. Plaintext of a segment is written only after it authenticates,
/// but a stream that fails later leaves its earlier segments written: callers
/// that need all-or-nothing write to a temporary file and rename on success.
pub fn decrypt_stream<R: Read, W: Write + ?Sized>(
    key: &SecretKey,
    ad: &[u8],
    reader: R,
    writer: &mut W,
) -> Result<u64, StreamError> {
    let mut r = DecryptingReader::new(reader, key, ad)?;
    let mut total = 0u64;
    while r.next_segment()? {
        writer.write_all(&r.buf)?;
        total += r.buf.len() as u64;
        r.serving = false;
    }
    writer.flush()?;
    Ok(total)
}

/// Encrypts `plaintext` into one stream held in memory.
pub fn seal_bytes(
    key: &SecretKey,
    params: StreamParams,
    ad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, StreamError> {
    let mut out = Vec::with_capacity(plaintext.len() + MAX_HEADER_LEN + TAG_LEN);
    encrypt_stream(key, params, ad, &mut &plaintext[..], &mut out)?;
    Ok(out)
}

/// Decrypts a stream held in memory.
pub fn open_bytes(key: &SecretKey, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StreamError> {
    let mut out = Vec::new();
    decrypt_stream(key, ad, sealed, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_states_its_cause_once_in_the_chain() {
        let e = StreamError::from(io::Error::from_raw_os_error(21));
        let cause = io::Error::from_raw_os_error(21).to_string();
        let mut chain = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        assert_eq!(chain, format!("stream I/O failed: {cause}"));
    }

    fn key() -> SecretKey {
        SecretKey::from_bytes([0x42; KEY_LEN])
    }

    fn small(suite: Suite) -> StreamParams {
        StreamParams {
            suite,
            segment_log2: MIN_SEGMENT_LOG2,
        }
    }

    const SUITES: [Suite; 3] = [
        Suite::Aes256Gcm,
        Suite::ChaCha20Poly1305,
        Suite::XChaCha20Poly1305,
    ];

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_every_length_around_segment_boundaries() -> Result<(), StreamError> {
        for suite in SUITES {
            // 32 segments make a batch: lengths around one, two and three
            // batches cross the overlap of sealing, writing and reading.
            for len in [
                0, 1, 1023, 1024, 1025, 2048, 3000, 32_767, 32_768, 32_769, 40_000, 65_536, 65_537,
                100_000,
            ] {
                let data = sample(len);
                let sealed = seal_bytes(&key(), small(suite), b"ad", &data)?;
                let segments = len.div_ceil(1024).max(1);
                assert_eq!(
                    sealed.len(),
                    len + segments * TAG_LEN + FIXED_HEADER_LEN + suite.prefix_len()
                );
                assert_eq!(open_bytes(&key(), b"ad", &sealed)?, data, "{suite:?} {len}");
            }
        }
        Ok(())
    }

    #[test]
    fn writer_and_reader_adapters_round_trip_with_odd_write_sizes() -> Result<(), StreamError> {
        let data = sample(5000);
        let mut w = EncryptingWriter::new(Vec::new(), &key(), small(Suite::Aes256Gcm), b"")?;
        for piece in data.chunks(333) {
            w.write_all(piece)?;
        }
        let sealed = w.finish()?;
        assert_eq!(open_bytes(&key(), b"", &sealed)?, data);
        let mut r = DecryptingReader::new(&sealed[..], &key(), b"")?;
        let mut back = Vec::new();
        let mut chunk = [0u8; 77];
        loop {
            let n = r.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            back.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(back, data);
        Ok(())
    }

    /// A sink that takes `ok` writes, then fails every one.
    struct FailingAfter {
        ok: usize,
        written: Vec<u8>,
    }

    impl Write for FailingAfter {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::other("disk full"));
            }
            self.ok -= 1;
            self.written.extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn after_error(e: &io::Error) -> bool {
        matches!(StreamError::from_io(e), Some(StreamError::AfterError))
    }

    #[test]
    fn a_writer_whose_sink_failed_refuses_every_later_write_and_its_finish()
    -> Result<(), StreamError> {
        // The header is the one write allowed; the first full segment's
        // write fails after it was sealed under its nonce.
        let sink = FailingAfter {
            ok: 1,
            written: Vec::new(),
        };
        let mut w = EncryptingWriter::new(sink, &key(), small(Suite::Aes256Gcm), b"")?;
        w.write_all(&[0; 1024])?;
        let first = w.write(&[1]).err();
        assert!(first.is_some_and(|e| e.to_string() == "disk full"));
        for _ in 0..3 {
            assert!(w.write(&[1]).is_err_and(|e| after_error(&e)));
        }
        assert!(matches!(w.finish(), Err(StreamError::AfterError)));
        Ok(())
    }

    #[test]
    fn a_batch_that_failed_spends_its_counters() -> Result<(), StreamError> {
        let (mut enc, header) = StreamEncryptor::new(&key(), small(Suite::Aes256Gcm), b"")?;
        let data = sample(3 * 1024 + 10);
        let mut batch: Vec<Vec<u8>> = data[..2048].chunks(1024).map(<[u8]>::to_vec).collect();
        let failed = enc.encrypt_next_many_during(&mut batch, 2, || {
            Err(StreamError::Io(io::Error::other("disk full")))
        });
        assert!(matches!(failed, Err(StreamError::Io(_))));
        // The batch's segments were sealed; the next ones follow them, not
        // reuse their nonces, so the whole stream opens.
        let mut third = data[2048..3072].to_vec();
        enc.encrypt_next(&mut third)?;
        let mut last = data[3072..].to_vec();
        enc.encrypt_last(&mut last)?;
        let stream: Vec<u8> = [header.as_slice()]
            .into_iter()
            .chain(batch.iter().map(Vec::as_slice))
            .chain([third.as_slice(), last.as_slice()])
            .flatten()
            .copied()
            .collect();
        assert_eq!(open_bytes(&key(), b"", &stream)?, data);
        Ok(())
    }

    /// Reads `r` to its end or its first error, in reads of 100 bytes.
    fn read_until_error<R: Read>(r: &mut DecryptingReader<R>) -> (Vec<u8>, Option<io::Error>) {
        let mut back = Vec::new();
        let mut chunk = [0u8; 100];
        loop {
            match r.read(&mut chunk) {
                Ok(0) => return (back, None),
                Ok(n) => back.extend_from_slice(&chunk[..n]),
                Err(e) => return (back, Some(e)),
            }
        }
    }

    #[test]
    fn a_reader_that_failed_never_reports_a_clean_end() -> Result<(), StreamError> {
        let data = sample(3000);
        let sealed = seal_bytes(&key(), small(Suite::Aes256Gcm), b"", &data)?;
        let header = FIXED_HEADER_LEN + Suite::Aes256Gcm.prefix_len();
        let segment = 1024 + TAG_LEN;
        // Cut after two whole segments: the second is read as the last,
        // and fails; so does a middle segment with a flipped byte.
        let cut = &sealed[..header + 2 * segment];
        let mut flipped = sealed.clone();
        flipped[header + segment + 5] ^= 1;
        for (stream, expected) in [(cut, "truncated"), (&flipped[..], "tampered")] {
            let mut r = DecryptingReader::new(stream, &key(), b"")?;
            let (got, err) = read_until_error(&mut r);
            assert_eq!(got, data[..1024], "{expected}");
            let first = err.map(|e| StreamError::from_io(&e).map(ToString::to_string));
            assert!(
                first.flatten().is_some_and(|m| m.contains(expected)),
                "{expected}"
            );
            let mut chunk = [0u8; 100];
            for _ in 0..4 {
                assert!(
                    r.read(&mut chunk).is_err_and(|e| after_error(&e)),
                    "{expected}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn wrong_key_or_context_is_tampered() -> Result<(), StreamError> {
        let sealed = seal_bytes(&key(), small(Suite::Aes256Gcm), b"ctx", b"secret")?;
        let other = SecretKey::from_bytes([1; KEY_LEN]);
        assert!(matches!(
            open_bytes(&other, b"ctx", &sealed),
            Err(StreamError::Tampered)
        ));
        assert!(matches!(
            open_bytes(&key(), b"other", &sealed),
            Err(StreamError::Tampered)
        ));
        Ok(())
    }

    #[test]
    fn every_flipped_byte_is_detected() -> Result<(), StreamError> {
        let sealed = seal_bytes(&key(), small(Suite::ChaCha20Poly1305), b"", &sample(1500))?;
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open_bytes(&key(), b"", &bad).is_err(), "byte {i}");
        }
        Ok(())
    }

    #[test]
    fn truncation_at_a_segment_boundary_is_truncated() -> Result<(), StreamError> {
        let sealed = seal_bytes(&key(), small(Suite::Aes256Gcm), b"", &sample(3000))?;
        let hl = FIXED_HEADER_LEN + 7;
        let cut = &sealed[..hl + 2 * (1024 + TAG_LEN)];
        assert!(matches!(
            open_bytes(&key(), b"", cut),
            Err(StreamError::Truncated)
        ));
        assert!(matches!(
            open_bytes(&key(), b"", &sealed[..hl]),
            Err(StreamError::Truncated)
        ));
        assert!(matches!(
            open_bytes(&key(), b"", &sealed[..20]),
            Err(StreamError::Truncated)
        ));
        Ok(())
    }

    #[test]
    fn reordered_segments_are_tampered() -> Result<(), StreamError> {
        let sealed = seal_bytes(&key(), small(Suite::Aes256Gcm), b"", &sample(3000))?;
        let hl = FIXED_HEADER_LEN + 7;
        let s = 1024 + TAG_LEN;
        let mut swapped = sealed[..hl].to_vec();
        swapped.extend_from_slice(&sealed[hl + s..hl + 2 * s]);
        swapped.extend_from_slice(&sealed[hl..hl + s]);
        swapped.extend_from_slice(&sealed[hl + 2 * s..]);
        assert!(matches!(
            open_bytes(&key(), b"", &swapped),
            Err(StreamError::Tampered)
        ));
        Ok(())
    }

    #[test]
    fn appended_bytes_or_segments_are_tampered() -> Result<(), StreamError> {
        let a = seal_bytes(&key(), small(Suite::Aes256Gcm), b"", &sample(2048))?;
        let mut longer = a.clone();
        longer.push(0);
        assert!(matches!(
            open_bytes(&key(), b"", &longer),
            Err(StreamError::Tampered)
        ));
        let mut doubled = a.clone();
        doubled.extend_from_slice(&a[FIXED_HEADER_LEN + 7..]);
        assert!(open_bytes(&key(), b"", &doubled).is_err());
        Ok(())
    }

    #[test]
    fn header_parser_rejects_unknown_magic_version_suite_and_size() -> Result<(), StreamError> {
        let good = Header::generate(StreamParams::default())?.to_bytes();
        assert!(matches!(
            Header::parse(b"nope"),
            Err(StreamError::UnknownFormat)
        ));
        let mut v = good.clone();
        v[8] = 9;
        assert!(matches!(
            Header::parse(&v),
            Err(StreamError::UnsupportedVersion(9))
        ));
        let mut s = good.clone();
        s[9] = 77;
        assert!(matches!(
            Header::parse(&s),
            Err(StreamError::UnknownSuite(77))
        ));
        let mut z = good.clone();
        z[10] = 40;
        assert!(matches!(
            Header::parse(&z),
            Err(StreamError::InvalidSegmentSize(40))
        ));
        let (h, n) = Header::parse(&good)?;
        assert_eq!(n, good.len());
        assert_eq!(h.to_bytes(), good);
        assert!(matches!(
            Header::parse(&good[..good.len() - 1]),
            Err(StreamError::Truncated)
        ));
        Ok(())
    }

    #[test]
    fn encryptor_refuses_wrong_segment_lengths() -> Result<(), StreamError> {
        let (mut enc, _) = StreamEncryptor::new(&key(), small(Suite::Aes256Gcm), b"")?;
        let mut short = vec![0u8; 10];
        assert!(matches!(
            enc.encrypt_next(&mut short),
            Err(StreamError::SegmentLength { .. })
        ));
        let mut long = vec![0u8; 1025];
        assert!(matches!(
            enc.encrypt_last(&mut long),
            Err(StreamError::SegmentLength { .. })
        ));
        Ok(())
    }

    #[test]
    fn dropped_writer_without_finish_reads_as_truncated() -> Result<(), StreamError> {
        let mut out = Vec::new();
        {
            let mut w = EncryptingWriter::new(&mut out, &key(), small(Suite::Aes256Gcm), b"")?;
            w.write_all(&sample(4096))?;
        }
        let mut r = DecryptingReader::new(&out[..], &key(), b"")?;
        let mut back = Vec::new();
        let err = r.read_to_end(&mut back).err();
        assert!(matches!(
            err.as_ref().and_then(StreamError::from_io),
            Some(StreamError::Truncated)
        ));
        Ok(())
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]
            #[test]
            fn any_plaintext_round_trips(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
                let sealed = seal_bytes(&key(), small(Suite::Aes256Gcm), b"p", &data)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let back = open_bytes(&key(), b"p", &sealed)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(back, data);
            }

            #[test]
            fn header_parse_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
                if let Ok((h, n)) = Header::parse(&bytes) {
                    prop_assert_eq!(h.to_bytes(), bytes[..n].to_vec());
                }
            }
        }
    }
}
