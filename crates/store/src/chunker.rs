//! Multi-level content-defined chunking (ML-CDC) with a keyed Gear hash.
//!
//! One pass of a rolling hash over the content yields the boundaries of every
//! level of the chunk tree. A position is a boundary of level `i` when the
//! hash there falls below threshold `t_i`; thresholds shrink by `R/S` per
//! level, so a boundary of level `i` is a boundary of every level below it and
//! level `i` chunks average `S^(i+1)/R^i` bytes.
//!
//! Design reasons:
//! - **Keyed.** The Gear table is derived from the store key
//!   (HKDF label `ChunkerSeed`). The Python package's Rabin-Karp chunker is
//!   unkeyed, so anyone who sees chunk lengths (every backend operator) can
//!   test whether a known file is stored by chunking it himself. With a keyed
//!   table, boundaries cannot be computed without the key. That makes
//!   fingerprinting from leaf lengths harder, not impossible: published
//!   attacks (Truong et al., "Breaking and Fixing Content-Defined
//!   Chunking", 2025) recover enough of a keyed chunker's secret from the
//!   lengths of chunks of chosen or known contents; see the README.
//! - **48-byte window**, as in the seed: `h = (h << 1) + G[byte]`, and only the
//!   low 48 bits are compared. Bit `k` of a Gear hash depends on the last
//!   `k + 1` bytes only, so the low 48 bits are exactly a 48-byte rolling
//!   window, and boundaries after an edit resynchronise within 48 bytes.
//! - **Minimum chunk size** `S/4`: without it 1–2 byte leaves appear. A
//!   suppressed position is suppressed at every level, which keeps levels
//!   nested. Hashing starts 48 bytes before the minimum, so the skipped bytes
//!   cost nothing and boundaries still depend only on the content.
//! - **Maximum leaf size** `8·S`: bounds a node on low-entropy data (a forced
//!   cut is a boundary of level 0 only, which keeps nesting).
//! - **Restart at every boundary**: the chunk's end is a function of the bytes
//!   from its start, so boundaries do not depend on how the input was read.

use seccs_core::SecretKey;
use seccs_core::kdf::{self, Label};
use zeroize::Zeroize;

/// Bytes of content that determine whether a position is a boundary.
pub const WINDOW: usize = 48;

/// Level given to the end of a content: a boundary of every level.
pub const END_LEVEL: u8 = u8::MAX;

/// A keyed multi-level content-defined chunker.
pub struct Chunker {
    table: Box<[u64; 256]>,
    min: usize,
    max: usize,
    /// `thresholds[i]`: boundary of level `i` when `(h << 16) < thresholds[i]`
    /// (compared in the top 48 bits so no mask is needed). Decreasing.
    thresholds: Vec<u64>,
}

impl Drop for Chunker {
    fn drop(&mut self) {
        self.table.zeroize();
    }
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// Sizes [`Chunker::try_new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported chunker sizes: chunk size {chunk_size} with reference size {reference_len}; \
     the reference size must be at least 1 and the chunk size at least twice it"
)]
pub struct ChunkerError {
    /// The chunk size (S) asked for.
    pub chunk_size: usize,
    /// The reference size (R) asked for.
    pub reference_len: usize,
}

impl Chunker {
    /// A chunker for chunk size `chunk_size` (S) and child reference size
    /// `reference_len` (R), after checking `R >= 1` and `S >= 2R` (what
    /// [`crate::Params`] guarantees): other sizes are a [`ChunkerError`].
    pub fn try_new(
        store_key: &SecretKey,
        chunk_size: usize,
        reference_len: usize,
    ) -> Result<Self, ChunkerError> {
        let valid = reference_len >= 1
            && reference_len
                .checked_mul(2)
                .is_some_and(|least| chunk_size >= least);
        if !valid {
            return Err(ChunkerError {
                chunk_size,
                reference_len,
            });
        }
        Ok(Self::new(store_key, chunk_size, reference_len))
    }

    /// A chunker for chunk size `chunk_size` (S) and child reference size
    /// `reference_len` (R). The sizes should satisfy `R >= 1` and `S >= 2R`
    /// (the caller has checked, as [`crate::Params`] does; or use
    /// [`try_new`](Self::try_new), which checks). Other sizes never panic
    /// but give a degenerate chunker: the minimum leaf is at least 1 byte,
    /// the maximum at least the minimum, and levels stop where they would
    /// no longer thin out (with `R >= S`, every boundary is of level 0).
    pub fn new(store_key: &SecretKey, chunk_size: usize, reference_len: usize) -> Self {
        let mut seed = zeroize::Zeroizing::new([0u8; 256 * 8]);
        kdf::derive_into(store_key, Label::ChunkerSeed, seed.as_mut());
        let mut table = Box::new([0u64; 256]);
        for (slot, bytes) in table.iter_mut().zip(seed.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            *slot = u64::from_le_bytes(word);
        }
        let min = (chunk_size / 4).max(1);
        let max = chunk_size.saturating_mul(8).max(min);
        // Level 0: a boundary every (S - min) bytes on average after the
        // minimum, so leaves average S. Each higher level keeps a fraction
        // R/S of the boundaries of the level below.
        let space = 1u128 << 64;
        let mut t = space / chunk_size.saturating_sub(min).max(1) as u128;
        let mut thresholds = Vec::new();
        while t > 0 && thresholds.len() < usize::from(END_LEVEL) - 1 {
            let stored = t.min(u64::MAX as u128) as u64;
            // Thresholds must decrease (R < S); equal or growing ones
            // (degenerate sizes) would add levels that keep every boundary.
            if thresholds.last().is_some_and(|&last| stored >= last) {
                break;
            }
            thresholds.push(stored);
            t = t
                .checked_mul(reference_len as u128)
                .map_or(u128::MAX, |v| v / chunk_size.max(1) as u128);
        }
        Self {
            table,
            min,
            max,
            thresholds,
        }
    }

    /// The smallest leaf the chunker cuts (except at the end of a content).
    pub fn min_size(&self) -> usize {
        self.min
    }

    /// The largest leaf the chunker cuts.
    pub fn max_size(&self) -> usize {
        self.max
    }

    /// Finds the end of the chunk that starts at `data[0]`.
    ///
    /// Returns `Some((len, level))` when a boundary lies within `data` (a
    /// forced cut at the maximum size has level 0), and `None` when `data`
    /// ends first: the caller supplies more bytes, or at the end of the
    /// content takes all of `data` as the last chunk.
    pub fn next_boundary(&self, data: &[u8]) -> Option<(usize, u8)> {
        let end = data.len().min(self.max);
        if end < self.min {
            return None;
        }
        let t0 = self.thresholds[0];
        let mut h: u64 = 0;
        // Warm up the window so the first tested position sees 48 bytes.
        for &b in &data[self.min.saturating_sub(WINDOW)..self.min - 1] {
            h = (h << 1).wrapping_add(self.table[usize::from(b)]);
        }
        for (i, &b) in data[self.min - 1..end].iter().enumerate() {
            h = (h << 1).wrapping_add(self.table[usize::from(b)]);
            if (h << 16) < t0 {
                return Some((self.min + i, self.level_of(h << 16)));
            }
        }
        (end == self.max).then_some((self.max, 0))
    }

    fn level_of(&self, hv: u64) -> u8 {
        // Thresholds decrease; count how many the value is below.
        let below = self.thresholds.iter().take_while(|&&t| hv < t).count();
        (below - 1) as u8
    }

    /// Cuts all of `data` (a whole content) into `(len, level)` chunks; the
    /// last chunk has [`END_LEVEL`].
    pub fn cut_all(&self, data: &[u8]) -> Vec<(usize, u8)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            match self.next_boundary(&data[pos..]) {
                Some((len, level)) => {
                    out.push((len, level));
                    pos += len;
                }
                None => {
                    out.push((data.len() - pos, END_LEVEL));
                    pos = data.len();
                }
            }
        }
        if let Some(last) = out.last_mut() {
            last.1 = END_LEVEL;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes([b; 32])
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Cuts like a streaming reader that hands over `step` bytes at a time.
    fn cut_streaming(c: &Chunker, data: &[u8], step: usize) -> Vec<(usize, u8)> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut avail = 0;
        loop {
            avail = (avail + step).min(data.len());
            let eof = avail == data.len();
            while let Some((len, level)) = c.next_boundary(&data[start..avail]) {
                out.push((len, level));
                start += len;
            }
            if eof {
                if start < data.len() {
                    out.push((data.len() - start, END_LEVEL));
                }
                break;
            }
        }
        if let Some(last) = out.last_mut() {
            last.1 = END_LEVEL;
        }
        out
    }

    #[test]
    fn boundaries_do_not_depend_on_read_buffer_sizes() {
        let c = Chunker::new(&key(1), 256, 24);
        let data = pseudo_random(300_000, 7);
        let whole = c.cut_all(&data);
        for step in [1, 7, 48, 255, 256, 4096, 65_537] {
            assert_eq!(cut_streaming(&c, &data, step), whole, "step {step}");
        }
    }

    #[test]
    fn chunks_cover_the_content_and_respect_min_and_max() {
        let c = Chunker::new(&key(2), 256, 24);
        let data = pseudo_random(200_000, 3);
        let cuts = c.cut_all(&data);
        assert_eq!(cuts.iter().map(|c| c.0).sum::<usize>(), data.len());
        for &(len, _) in &cuts[..cuts.len() - 1] {
            assert!((c.min_size()..=c.max_size()).contains(&len), "{len}");
        }
        let mean = data.len() / cuts.len();
        assert!((180..=340).contains(&mean), "mean leaf {mean}");
    }

    #[test]
    fn levels_are_nested_and_thin_out_by_s_over_r() {
        let c = Chunker::new(&key(3), 256, 24);
        let data = pseudo_random(4_000_000, 5);
        let cuts = c.cut_all(&data);
        let at_least = |l: u8| cuts[..cuts.len() - 1].iter().filter(|c| c.1 >= l).count();
        let (l0, l1, l2) = (at_least(0), at_least(1), at_least(2));
        // Nesting is structural (a level-i boundary counts at every lower
        // level); the ratio shows each level keeps about R/S of the one below.
        let ratio = l0 as f64 / l1 as f64;
        assert!((7.0..15.0).contains(&ratio), "l0/l1 = {ratio}");
        assert!(l2 < l1 && l2 > 0);
        let thresholds_decrease = c.thresholds.windows(2).all(|w| w[0] > w[1]);
        assert!(thresholds_decrease);
    }

    #[test]
    fn a_different_key_gives_different_boundaries() {
        let data = pseudo_random(100_000, 9);
        let a = Chunker::new(&key(4), 256, 24).cut_all(&data);
        let b = Chunker::new(&key(5), 256, 24).cut_all(&data);
        assert_ne!(a, b);
    }

    #[test]
    fn an_edit_changes_only_nearby_boundaries() {
        let c = Chunker::new(&key(6), 256, 24);
        let data = pseudo_random(100_000, 11);
        let mut edited = data.clone();
        edited[50_000] ^= 0xff;
        let positions = |cuts: &[(usize, u8)]| {
            let mut p = 0;
            cuts.iter()
                .map(|c| {
                    p += c.0;
                    p
                })
                .collect::<std::collections::BTreeSet<_>>()
        };
        let (a, b) = (positions(&c.cut_all(&data)), positions(&c.cut_all(&edited)));
        let differing = a.symmetric_difference(&b).count();
        assert!(differing <= 4, "{differing} boundaries moved");
    }

    #[test]
    fn degenerate_sizes_never_panic_and_try_new_refuses_them() {
        let data = pseudo_random(20_000, 13);
        let degenerate = [
            (0, 24),
            (0, 0),
            (1, 24),
            (1, 0),
            (24, 24),
            (47, 24),
            (256, 0),
            (2, usize::MAX),
            (usize::MAX, usize::MAX),
            (usize::MAX, usize::MAX / 2 + 1),
        ];
        for (s, r) in degenerate {
            assert_eq!(
                Chunker::try_new(&key(8), s, r).err(),
                Some(ChunkerError {
                    chunk_size: s,
                    reference_len: r
                }),
                "S={s} R={r}"
            );
        }
        for (s, r) in degenerate.into_iter().chain([(usize::MAX, 1), (48, 24)]) {
            let c = Chunker::new(&key(8), s, r);
            assert!(
                c.min_size() >= 1 && c.min_size() <= c.max_size(),
                "S={s} R={r}"
            );
            assert!(c.thresholds.windows(2).all(|w| w[0] > w[1]), "S={s} R={r}");
            let cuts = c.cut_all(&data);
            assert_eq!(cuts.iter().map(|c| c.0).sum::<usize>(), data.len());
            assert!(cuts.iter().all(|&(len, _)| len >= 1));
        }
        assert!(Chunker::try_new(&key(8), 48, 24).is_ok());
        assert!(Chunker::try_new(&key(8), 256, 24).is_ok());
        let shown = ChunkerError {
            chunk_size: 0,
            reference_len: 24,
        }
        .to_string();
        assert!(shown.contains("chunk size 0"), "{shown}");
    }

    #[test]
    fn low_entropy_input_is_bounded_by_the_maximum() {
        let c = Chunker::new(&key(7), 256, 24);
        let cuts = c.cut_all(&vec![0u8; 100_000]);
        assert!(cuts.iter().all(|&(len, _)| len <= c.max_size()));
    }
}
