//! The body of a chunk-tree node, before sealing, and its kind byte.
//!
//! ```text
//! kind 0x00 leaf:            content bytes
//! kind 0x01 compressed leaf: one zstd frame of the content bytes (written only
//!                            when it is more than 8 bytes shorter than they are)
//! kind 0x02 superchunk:      (child digest ‖ child content length u64 BE)*
//! stored value = kind (1) ‖ the wrapper's sealing of the body (see `wrapper`)
//! content reference = root digest ‖ content length (u64 BE)
//! ```
//! The kind is stored in the clear as the first byte of the value and
//! authenticated by the wrapper together with the node's height, so neither
//! can be changed without detection. Any other kind byte, a leaf above
//! height 0 or a superchunk at it, is an integrity error. A content's
//! height, which the reference does not carry, follows from its length and
//! the store's parameters ([`crate::Params::height`]). Child lengths make
//! range reads possible without fetching the children, and let every read
//! check that a node covers exactly the bytes its parent says.

use crate::error::{Result, StoreError};

/// Kind byte of a leaf holding raw content.
pub const LEAF_RAW: u8 = 0x00;
/// Kind byte of a leaf compressed with zstd.
pub const LEAF_ZSTD: u8 = 0x01;
/// Kind byte of a superchunk.
pub const SUPERCHUNK: u8 = 0x02;

/// A child entry of a superchunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// The child's digest.
    pub digest: Vec<u8>,
    /// Content bytes under the child.
    pub len: u64,
}

/// Encodes a superchunk's body.
pub fn encode_superchunk<'a>(children: impl Iterator<Item = (&'a [u8], u64)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (digest, len) in children {
        out.extend_from_slice(digest);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out
}

/// Decodes a leaf that must hold exactly `expected_len` bytes.
pub fn decode_leaf((kind, plaintext): (u8, Vec<u8>), expected_len: u64) -> Result<Vec<u8>> {
    let plaintext = match kind {
        // Decompress into at most the length the parent promises, so a
        // forged compressed leaf cannot exhaust memory.
        LEAF_ZSTD => decompress(&plaintext, expected_len as usize)
            .map_err(|_| StoreError::integrity("compressed leaf does not decompress"))?,
        _ => plaintext,
    };
    match kind {
        LEAF_RAW | LEAF_ZSTD => {
            if plaintext.len() as u64 != expected_len {
                return Err(StoreError::integrity(format!(
                    "leaf holds {} bytes, its parent says {expected_len}",
                    plaintext.len()
                )));
            }
            Ok(plaintext)
        }
        _ => Err(StoreError::integrity("node of height 0 is not a leaf")),
    }
}

/// Decodes a superchunk whose children must cover exactly `expected_len`
/// bytes and have `digest_len`-byte digests.
pub fn decode_superchunk(
    node: (u8, Vec<u8>),
    digest_len: usize,
    expected_len: u64,
) -> Result<Vec<Child>> {
    let children = decode_children(node, digest_len)
        .ok_or_else(|| StoreError::integrity("inner node is not a well-formed superchunk"))?;
    // Summed without saturating: lengths whose true sum passes 2^64 would
    // saturate to u64::MAX and pass for a content of that length, and a
    // reader adding them up one by one would overflow.
    let total = children
        .iter()
        .try_fold(0u64, |sum, c| sum.checked_add(c.len))
        .ok_or_else(|| {
            StoreError::integrity(format!(
                "superchunk's child lengths add up to more than 2^64 bytes, its parent says \
                 {expected_len}"
            ))
        })?;
    if total != expected_len || children.iter().any(|c| c.len == 0) {
        return Err(StoreError::integrity(format!(
            "superchunk covers {total} bytes, its parent says {expected_len}"
        )));
    }
    Ok(children)
}

/// The children of a superchunk, without checking what its parent says of
/// its length; `None` if it is not a well-formed superchunk.
pub fn decode_children((kind, body): (u8, Vec<u8>), digest_len: usize) -> Option<Vec<Child>> {
    let entry = digest_len + 8;
    if kind != SUPERCHUNK || body.is_empty() || body.len() % entry != 0 {
        return None;
    }
    Some(
        body.chunks_exact(entry)
            .map(|c| {
                let mut len = [0u8; 8];
                len.copy_from_slice(&c[digest_len..]);
                Child {
                    digest: c[..digest_len].to_vec(),
                    len: u64::from_be_bytes(len),
                }
            })
            .collect(),
    )
}

/// Compresses a leaf if that makes it smaller; returns the kind and the
/// compressed bytes, or `None` to store it raw. A sample of the leaf is tried
/// first, so incompressible data (already compressed media, ciphertext)
/// costs little.
pub fn compress_leaf(content: &[u8], level: i32) -> Option<Vec<u8>> {
    const SAMPLE: usize = 512;
    if content.len() < 64 {
        return None;
    }
    if content.len() > 2 * SAMPLE {
        let sample = with_compressor(level, |c| c.compress(&content[..SAMPLE]))?;
        if sample.len() * 100 > SAMPLE * 95 {
            return None;
        }
    }
    let packed = with_compressor(level, |c| c.compress(content))?;
    (packed.len() + 8 < content.len()).then_some(packed)
}

thread_local! {
    /// One zstd context per thread and level: creating a context costs more
    /// than compressing a 4 KiB leaf.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// One zstd decompression context per thread: creating one (and
    /// clearing its tables) cost more than decompressing a 4 KiB leaf.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses `packed` into at most `capacity` bytes, with this thread's
/// context (a context of its own when that one is in use or cannot be made).
fn decompress(packed: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    let reused = DECOMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().ok()?);
        }
        Some(slot.as_mut()?.decompress(packed, capacity))
    });
    match reused {
        Some(result) => result,
        None => zstd::bulk::decompress(packed, capacity),
    }
}

fn with_compressor(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<Vec<u8>>,
) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, compressor) = slot.as_mut()?;
        f(compressor).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superchunk_round_trip_and_length_check() -> Result<()> {
        let d1 = [1u8; 16];
        let d2 = [2u8; 16];
        let pt = encode_superchunk([(&d1[..], 5u64), (&d2[..], 7u64)].into_iter());
        let kids = decode_superchunk((SUPERCHUNK, pt.clone()), 16, 12)?;
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[1].len, 7);
        assert!(decode_superchunk((SUPERCHUNK, pt.clone()), 16, 13).is_err());
        let cut = pt[..pt.len() - 1].to_vec();
        assert!(decode_superchunk((SUPERCHUNK, cut), 16, 12).is_err());
        assert!(decode_superchunk((LEAF_RAW, b"abc".to_vec()), 16, 3).is_err());
        Ok(())
    }

    #[test]
    fn superchunk_whose_child_lengths_add_up_past_u64_is_refused() {
        let body =
            encode_superchunk([(&[1u8; 16][..], u64::MAX - 4), (&[2u8; 16][..], 5)].into_iter());
        // The true sum is 2^64; saturated, it would equal u64::MAX.
        for expected in [u64::MAX, 0] {
            assert!(matches!(
                decode_superchunk((SUPERCHUNK, body.clone()), 16, expected),
                Err(StoreError::Integrity(_))
            ));
        }
        crate::fuzzing::node(SUPERCHUNK, &body, u64::MAX);
    }

    #[test]
    fn compressed_leaves_round_trip_and_are_bounded_by_the_parent_length() -> Result<()> {
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(100);
        let packed = compress_leaf(&text, 3).ok_or(StoreError::integrity("should compress"))?;
        assert!(packed.len() < text.len() / 4);
        assert_eq!(
            decode_leaf((LEAF_ZSTD, packed.clone()), text.len() as u64)?,
            text
        );
        assert!(decode_leaf((LEAF_ZSTD, packed.clone()), text.len() as u64 - 1).is_err());
        // The thread's decompression context is used again after a leaf
        // that failed (cut short, or not zstd at all), and still decodes a
        // good one.
        let cut = packed[..packed.len() / 2].to_vec();
        assert!(decode_leaf((LEAF_ZSTD, cut), text.len() as u64).is_err());
        assert!(decode_leaf((LEAF_ZSTD, b"not zstd".to_vec()), 8).is_err());
        assert_eq!(decode_leaf((LEAF_ZSTD, packed), text.len() as u64)?, text);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(compress_leaf(&noise, 3).is_none());
        Ok(())
    }

    #[test]
    fn leaf_length_must_match_parent() {
        assert!(decode_leaf((LEAF_RAW, b"abc".to_vec()), 3).is_ok());
        assert!(decode_leaf((LEAF_RAW, b"abc".to_vec()), 4).is_err());
        assert!(decode_leaf((SUPERCHUNK, vec![1]), 1).is_err());
    }
}
