//! Store parameters (chunk size, wrapper), the tree height rule, and content
//! references.

use std::fmt;
use std::str::FromStr;

use crate::error::{Result, StoreError};
use crate::wrapper::WrapperKind;

/// The default chunk size S. Chosen by measurement (`seccs bench` over chunk
/// sizes, see the README): at 4 KiB sealing runs near the AES-SIV floor while
/// a one-byte edit of a 1 MiB content costs about 14 KiB of new nodes; at 256 B
/// an edit costs ~2 KiB but per-node costs halve throughput.
pub const DEFAULT_CHUNK_SIZE: usize = 4096;
/// The largest chunk size S: leaves reach 8 S, and a streaming put holds a
/// few of them at once, so a larger S would break its memory bound (and a
/// config file naming a huge S must not make a put allocate it).
pub const MAX_CHUNK_SIZE: usize = 1 << 20;

/// Length of the content length that follows the digest in references.
pub const LENGTH_LEN: usize = 8;

/// Whether leaves are compressed before sealing.
///
/// Compression is decided per leaf and marked in the node's authenticated
/// kind byte. As in restic and borg, a compressed node's length reveals how
/// well that node compresses; `none` avoids that leak at the cost of space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Store leaves as they are.
    None,
    /// zstd at the given level, for leaves it makes smaller.
    Zstd(ZstdLevel),
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd(ZstdLevel::DEFAULT)
    }
}

/// A zstd compression level from 1 to 19, the levels `seccs init` offers.
/// (zstd also has negative and "ultra" levels up to 22; the first give up
/// most of the gain and the second need tens of MiB per worker, so a store
/// never records them.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ZstdLevel(u8);

impl ZstdLevel {
    /// The lowest level.
    pub const MIN: ZstdLevel = ZstdLevel(1);
    /// The highest level.
    pub const MAX: ZstdLevel = ZstdLevel(19);
    /// Level 3, zstd's own default and `seccs init`'s.
    pub const DEFAULT: ZstdLevel = ZstdLevel(3);

    /// The level `level`, if it lies from 1 to 19.
    pub fn new(level: i32) -> Option<ZstdLevel> {
        u8::try_from(level)
            .ok()
            .map(ZstdLevel)
            .filter(|l| (ZstdLevel::MIN..=ZstdLevel::MAX).contains(l))
    }

    /// The level as zstd takes it.
    pub fn get(self) -> i32 {
        i32::from(self.0)
    }
}

impl fmt::Display for ZstdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Zstd(level) => write!(f, "zstd:{level}"),
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::default()),
            _ => {
                let level = s
                    .strip_prefix("zstd:")
                    .and_then(|l| l.parse::<i32>().ok())
                    .and_then(ZstdLevel::new)
                    .ok_or_else(|| format!("{s:?}: choose none, zstd or zstd:LEVEL (1-19)"))?;
                Ok(Compression::Zstd(level))
            }
        }
    }
}

/// How a store cuts and seals contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    chunk_size: usize,
    wrapper: WrapperKind,
    compression: Compression,
}

impl Params {
    /// Checks `2R <= chunk_size <= MAX_CHUNK_SIZE`, R being the wrapper's
    /// child reference size. Leaves are not compressed (the Python
    /// package's format); [`Params::with_compression`] sets it, and
    /// [`Params::default`] (as `seccs init`) compresses with zstd level 3.
    ///
    /// The compression setting is part of what a leaf's reference depends
    /// on (a leaf is sealed as it is stored, compressed or not): the same
    /// content put with another setting gets another reference wherever
    /// compression shrinks a leaf, and is stored again beside the first.
    /// Keep one setting per store; a store made by `seccs init` uses
    /// zstd level 3 unless told otherwise.
    pub fn new(chunk_size: usize, wrapper: WrapperKind) -> Result<Self> {
        if chunk_size > MAX_CHUNK_SIZE {
            return Err(StoreError::ChunkSizeTooLarge {
                chunk_size,
                max: MAX_CHUNK_SIZE,
            });
        }
        let reference_len = wrapper.digest_len() + LENGTH_LEN;
        if chunk_size < Self::min_chunk_size(wrapper) {
            return Err(StoreError::UnsupportedChunkSize {
                chunk_size,
                min: Self::min_chunk_size(wrapper),
                reference_len,
            });
        }
        Ok(Self {
            chunk_size,
            wrapper,
            compression: Compression::None,
        })
    }

    /// The smallest chunk size [`Params::new`] takes with `wrapper`:
    /// twice its reference size, so that a superchunk holds two
    /// references.
    pub fn min_chunk_size(wrapper: WrapperKind) -> usize {
        2 * (wrapper.digest_len() + LENGTH_LEN)
    }

    /// The same parameters with leaf compression set. Every setting reads
    /// every leaf, but a leaf's reference depends on the setting it was put
    /// with: the same content put with another one gets another reference
    /// (where compression shrinks a leaf) and is stored again, not
    /// deduplicated.
    pub fn with_compression(self, compression: Compression) -> Self {
        Self {
            compression,
            ..self
        }
    }

    /// Leaf compression.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Chunk size S.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// The crypto wrapper.
    pub fn wrapper(&self) -> WrapperKind {
        self.wrapper
    }

    /// Size R of one child reference in a superchunk: digest and length.
    pub fn reference_len(&self) -> usize {
        self.wrapper.digest_len() + LENGTH_LEN
    }

    /// The most children a superchunk gets before a cut is forced.
    pub fn max_children(&self) -> usize {
        (8 * self.chunk_size / self.reference_len()).max(2)
    }

    /// Height of the tree of a content of `len` bytes:
    /// `ceil(log(n/S) / log(S/R))`, 0 when `n <= S`; computed exactly as the
    /// least `H` with `n · R^H <= S^(H+1)`.
    pub fn height(&self, len: u64) -> u8 {
        let (s, r, n) = (
            self.chunk_size as u128,
            self.reference_len() as u128,
            len as u128,
        );
        let (mut lhs, mut rhs, mut h) = (n, s, 0u8);
        while lhs > rhs {
            if lhs > 1 << 100 {
                // Keep the ratio, drop low bits: exact for every real size,
                // and no overflow near u64::MAX.
                lhs >>= 32;
                rhs >>= 32;
            }
            lhs *= r;
            rhs *= s;
            h += 1;
        }
        h
    }
}

impl Default for Params {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            wrapper: WrapperKind::default(),
            compression: Compression::default(),
        }
    }
}

/// A content reference: the root node's digest followed by the content length
/// (u64 big-endian); 24 bytes with AES-SIV. Shown as lowercase hex.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ContentRef(Vec<u8>);

impl ContentRef {
    pub(crate) fn new(digest: &[u8], len: u64) -> Self {
        let mut bytes = Vec::with_capacity(digest.len() + LENGTH_LEN);
        bytes.extend_from_slice(digest);
        bytes.extend_from_slice(&len.to_be_bytes());
        Self(bytes)
    }

    /// Parses raw reference bytes; needs at least one digest byte.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() <= LENGTH_LEN {
            return Err(StoreError::InvalidRef(format!(
                "{} bytes is too short",
                bytes.len()
            )));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The root node's digest.
    pub fn digest(&self) -> &[u8] {
        &self.0[..self.0.len() - LENGTH_LEN]
    }

    /// The content's length in bytes.
    pub fn len(&self) -> u64 {
        let mut b = [0u8; LENGTH_LEN];
        b.copy_from_slice(&self.0[self.0.len() - LENGTH_LEN..]);
        u64::from_be_bytes(b)
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        seccs_core::hexenc::encode(&self.0)
    }
}

impl fmt::Display for ContentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentRef({})", self.to_hex())
    }
}

impl FromStr for ContentRef {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        let bytes = seccs_core::hexenc::decode(s)
            .map_err(|e| StoreError::InvalidRef(format!("{s:?}: {e}")))?;
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_below_twice_the_reference_is_refused() {
        assert!(Params::new(47, WrapperKind::AesSiv).is_err());
        assert!(Params::new(48, WrapperKind::AesSiv).is_ok());
        assert!(matches!(
            Params::new(79, WrapperKind::Sha256),
            Err(StoreError::UnsupportedChunkSize { min: 80, .. })
        ));
    }

    #[test]
    fn chunk_size_beyond_the_memory_bound_is_refused() {
        assert!(Params::new(MAX_CHUNK_SIZE, WrapperKind::AesSiv).is_ok());
        assert!(matches!(
            Params::new(MAX_CHUNK_SIZE + 1, WrapperKind::AesSiv),
            Err(StoreError::ChunkSizeTooLarge {
                max: MAX_CHUNK_SIZE,
                ..
            })
        ));
        assert!(Params::new(usize::MAX, WrapperKind::Sha256).is_err());
    }

    #[test]
    fn only_zstd_levels_one_to_nineteen_can_be_named() {
        for level in [i32::MIN, -5, 0, 20, 22, 256, i32::MAX] {
            assert_eq!(ZstdLevel::new(level), None, "level {level}");
            assert!(format!("zstd:{level}").parse::<Compression>().is_err());
        }
        for level in 1..=19 {
            let parsed: Compression = format!("zstd:{level}").parse().expect("a level 1-19");
            assert_eq!(
                parsed,
                Compression::Zstd(ZstdLevel::new(level).expect("1-19"))
            );
            assert_eq!(parsed.to_string(), format!("zstd:{level}"));
        }
        assert_eq!("zstd".parse(), Ok(Compression::Zstd(ZstdLevel::DEFAULT)));
        assert_eq!(ZstdLevel::DEFAULT.get(), 3);
    }

    #[test]
    fn height_follows_the_formula() -> Result<()> {
        let p = Params::new(256, WrapperKind::AesSiv)?;
        for n in [
            0u64,
            1,
            255,
            256,
            257,
            2730,
            2731,
            1 << 20,
            5 << 20,
            u64::MAX,
        ] {
            let expected = if n <= 256 {
                0
            } else {
                ((n as f64 / 256.0).ln() / (256.0f64 / 24.0).ln()).ceil() as u8
            };
            assert_eq!(p.height(n), expected, "n = {n}");
        }
        Ok(())
    }

    #[test]
    fn reference_is_digest_then_big_endian_length() -> Result<()> {
        let r = ContentRef::new(&[0xaa; 16], 258);
        assert_eq!(r.as_bytes().len(), 24);
        assert_eq!(&r.as_bytes()[16..], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(r.to_hex().parse::<ContentRef>()?, r);
        assert_eq!(r.len(), 258);
        Ok(())
    }
}
