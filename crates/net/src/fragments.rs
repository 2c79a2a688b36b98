//! A save's erasure-coded fragments, made so that the save holds the file
//! once.
//!
//! The ciphertext is cut into t *data* fragments where it lies (zero-padded
//! to whole shards); any t of the n fragments rebuild it, the n − t others
//! being *recovery* fragments coded from the data ones (Reed-Solomon,
//! `reed-solomon-simd`). Holding the recovery fragments whole would cost a
//! save (n − t) / t times the file more memory (two thirds of it, 3-of-5).
//! So they are never held: a save codes them once to take their hashes for
//! the manifest, then again, a stripe at a time, as each frame that carries
//! them is sent ([`SavedFragment`]). The n − t senders read about the same
//! stripes at about the same time, so the last stripes coded are kept for
//! them ([`KEPT_STRIPES`]).
//!
//! Every fragment is one shard length: ⌈len / t⌉ bytes of the ciphertext,
//! at least 2, rounded up to even (the coder takes any even length, a
//! multiple of 64 or not). The code, the crate's and the layout of its
//! 16-bit elements in the shard bytes are in [`crate::sharing`].
//!
//! The code works on each 16-bit element of the shards apart, and the
//! crate keeps the elements of each whole 64-byte chunk within it (low
//! bytes first, high bytes from byte 32). So coding in stripes that start
//! at multiples of 64 bytes of each shard gives the bytes that coding the
//! shards whole gives: only the last stripe can end in a partial chunk,
//! and it ends where the shard does, so that chunk is laid out as in the
//! whole shard.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use reed_solomon_simd::ReedSolomonEncoder;

use crate::error::Error;
use crate::record::{FragmentHasher, ManifestFormat, fragment_hash};
use crate::tail::Tail;

/// Bytes of each shard coded at once while hashing: the coder's working
/// space, several times a whole shard when it codes them at once, is then a
/// few stripes.
const HASH_STRIPE: usize = 1 << 20;

/// Bytes of each shard coded at once for a sender: one frame's payload, so
/// that a frame needs at most two stripes.
const SEND_STRIPE: usize = crate::packet::MAX_FRAME_PAYLOAD;

/// Send stripes kept for the senders: two senders' windows of frames (8
/// MiB of each recovery fragment), so that senders as far apart as that
/// find the stripes that the first of them coded.
const KEPT_STRIPES: usize =
    2 * crate::packet::WINDOW * crate::packet::MAX_FRAME_PAYLOAD / SEND_STRIPE;

// Coding in stripes gives the bytes coding whole shards gives only for
// stripes of whole 64-byte chunks (all but the shard's last).
const _: () = assert!(SEND_STRIPE.is_multiple_of(64) && HASH_STRIPE.is_multiple_of(64));

/// The n fragments of one ciphertext, each `shard` bytes.
pub(crate) struct Fragments {
    n: usize,
    t: usize,
    shard: usize,
    /// Fragments `0..t`: the ciphertext itself, zero-padded to whole shards.
    data: Vec<u8>,
    /// Recovery stripes coded last, for the senders.
    kept: Mutex<KeptStripes>,
}

/// Recovery stripes coded for senders, the most recently read last.
#[derive(Default)]
struct KeptStripes {
    encoder: Option<ReedSolomonEncoder>,
    /// (stripe index, the n − t fragments' bytes in that stripe).
    stripes: VecDeque<(usize, Arc<Vec<Vec<u8>>>)>,
    /// Stripes coded for senders so far, counting those coded again.
    coded: usize,
}

impl Fragments {
    /// The fragments of `blob` (its buffer becomes the first t), any `t` of
    /// `n` of which rebuild it. A count the coder does not support fails
    /// here, before anything is coded.
    pub(crate) fn new(mut blob: Vec<u8>, n: usize, t: usize) -> Result<Self, Error> {
        check_threshold(n, t)?;
        // The coder takes shards of any even length, at least 2.
        let shard = blob.len().div_ceil(t).max(2).next_multiple_of(2);
        blob.resize(shard * t, 0);
        Ok(Self {
            n,
            t,
            shard,
            data: blob,
            kept: Mutex::default(),
        })
    }

    /// The length of every fragment.
    pub(crate) fn shard(&self) -> usize {
        self.shard
    }

    /// The ciphertext's buffer, zero-padded (the first t fragments).
    pub(crate) fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// The hash of every fragment in the format this build writes, in
    /// order: the data fragments one thread each, the recovery ones as one
    /// more thread codes them (hashing is a large share of a save).
    pub(crate) fn hashes(&self, file_id: &[u8; 16]) -> Result<Vec<[u8; 32]>, Error> {
        std::thread::scope(|scope| {
            let data: Vec<_> = self
                .data
                .chunks_exact(self.shard)
                .enumerate()
                .map(|(i, f)| {
                    scope.spawn(move || fragment_hash(ManifestFormat::CURRENT, file_id, i as u8, f))
                })
                .collect();
            let recovery = scope.spawn(|| self.recovery_hashes(file_id));
            let mut hashes: Vec<[u8; 32]> = data
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect();
            let recovery = recovery
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            hashes.extend(recovery);
            Ok(hashes)
        })
    }

    /// The recovery fragments' hashes, coded a stripe at a time.
    fn recovery_hashes(&self, file_id: &[u8; 16]) -> Result<Vec<[u8; 32]>, Error> {
        let mut hashers: Vec<FragmentHasher> = (self.t..self.n)
            .map(|i| FragmentHasher::new(file_id, i as u8))
            .collect();
        let mut encoder = None;
        let mut at = 0;
        while at < self.shard && !hashers.is_empty() {
            let len = (self.shard - at).min(HASH_STRIPE);
            self.code_stripe(&mut encoder, at..at + len, |j, part| {
                hashers[j].update(part)
            })?;
            at += len;
        }
        Ok(hashers.iter().map(FragmentHasher::finalize).collect())
    }

    /// Codes bytes `range` of every shard, handing each recovery fragment's
    /// part (by recovery index, 0 for fragment t) to `each`.
    fn code_stripe(
        &self,
        encoder: &mut Option<ReedSolomonEncoder>,
        range: Range<usize>,
        mut each: impl FnMut(usize, &[u8]),
    ) -> Result<(), Error> {
        let bad = |_| bad_threshold(self.n, self.t);
        let (t, recovery, len) = (self.t, self.n - self.t, range.len());
        let encoder = match encoder {
            Some(e) => {
                e.reset(t, recovery, len).map_err(bad)?;
                e
            }
            None => encoder.insert(ReedSolomonEncoder::new(t, recovery, len).map_err(bad)?),
        };
        for original in self.data.chunks_exact(self.shard) {
            encoder
                .add_original_shard(&original[range.clone()])
                .map_err(bad)?;
        }
        let coded = encoder.encode().map_err(bad)?;
        for (j, part) in coded.recovery_iter().enumerate() {
            each(j, part);
        }
        Ok(())
    }

    /// Bytes `range` of recovery fragment `j` (fragment t + j), coded from
    /// the stripes kept or coded now.
    fn recovery_bytes(&self, j: usize, range: Range<usize>) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(range.len());
        let mut at = range.start;
        while at < range.end {
            let stripe = at / SEND_STRIPE;
            let start = stripe * SEND_STRIPE;
            let parts = self.send_stripe(stripe)?;
            let part = parts.get(j).ok_or_else(|| bad_threshold(self.n, self.t))?;
            let end = range.end.min(start + part.len());
            out.extend_from_slice(&part[at - start..end - start]);
            at = end;
        }
        Ok(out)
    }

    /// The recovery fragments' bytes in send stripe `index`: kept, or coded
    /// now and kept (the stripe read least recently let go past
    /// [`KEPT_STRIPES`]).
    fn send_stripe(&self, index: usize) -> Result<Arc<Vec<Vec<u8>>>, Error> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let at = kept.stripes.iter().position(|(i, _)| *i == index);
        if let Some(found) = at.and_then(|at| kept.stripes.remove(at)) {
            let parts = found.1.clone();
            kept.stripes.push_back(found);
            return Ok(parts);
        }
        let start = index * SEND_STRIPE;
        let range = start..self.shard.min(start + SEND_STRIPE);
        let mut parts = Vec::with_capacity(self.n - self.t);
        let KeptStripes {
            encoder,
            stripes,
            coded,
        } = &mut *kept;
        self.code_stripe(encoder, range, |_, part| parts.push(part.to_vec()))?;
        *coded += 1;
        let parts = Arc::new(parts);
        stripes.push_back((index, parts.clone()));
        if stripes.len() > KEPT_STRIPES {
            stripes.pop_front();
        }
        Ok(parts)
    }

    /// Bytes of recovery stripes kept for senders now, and how many
    /// stripes were coded for them.
    #[cfg(test)]
    fn kept_and_coded(&self) -> (usize, usize) {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = kept.stripes.iter().flat_map(|(_, parts)| parts.iter());
        (bytes.map(Vec::len).sum(), kept.coded)
    }

    /// The most bytes of stripes kept: [`KEPT_STRIPES`] of every recovery
    /// fragment, or the whole fragments when shorter.
    #[cfg(test)]
    fn kept_budget(&self) -> usize {
        (self.n - self.t) * (KEPT_STRIPES * SEND_STRIPE).min(self.shard)
    }

    /// Fragment `index` as a sender reads it.
    pub(crate) fn fragment(&self, index: usize) -> Option<SavedFragment<'_>> {
        (index < self.n).then_some(SavedFragment {
            fragments: self,
            index,
        })
    }
}

impl std::fmt::Debug for Fragments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fragments")
            .field("n", &self.n)
            .field("t", &self.t)
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

/// Refuses a threshold outside 1..=n, more than 255 records, and counts the
/// coder does not support.
pub(crate) fn check_threshold(n: usize, t: usize) -> Result<(), Error> {
    match t == 0 || t > n || n > 255 || (n > t && !ReedSolomonEncoder::supports(t, n - t)) {
        true => Err(bad_threshold(n, t)),
        false => Ok(()),
    }
}

fn bad_threshold(n: usize, t: usize) -> Error {
    Error::BadThreshold {
        threshold: t,
        servers: n,
    }
}

/// One fragment of a save, as the tail of the message that stores it: a
/// data fragment is read where it lies in the ciphertext's buffer, a
/// recovery fragment is coded again for each read.
#[derive(Debug, Clone, Copy)]
pub struct SavedFragment<'a> {
    fragments: &'a Fragments,
    index: usize,
}

impl<'a> SavedFragment<'a> {
    /// The fragment in the ciphertext's buffer, for one of the first t;
    /// `None` for a recovery fragment, which lies nowhere whole.
    pub fn in_ciphertext(&self) -> Option<&'a [u8]> {
        let shard = self.fragments.shard;
        (self.index < self.fragments.t)
            .then(|| &self.fragments.data[self.index * shard..(self.index + 1) * shard])
    }

    /// The whole fragment in a buffer of its own.
    pub fn to_vec(&self) -> Result<Vec<u8>, Error> {
        Ok(self.bytes(0..self.fragments.shard)?.into_owned())
    }
}

impl Tail for SavedFragment<'_> {
    fn len(&self) -> usize {
        self.fragments.shard
    }

    fn bytes(&self, range: Range<usize>) -> Result<Cow<'_, [u8]>, Error> {
        match self.in_ciphertext() {
            Some(fragment) => Ok(Cow::Borrowed(&fragment[range])),
            None => Ok(Cow::Owned(
                self.fragments
                    .recovery_bytes(self.index - self.fragments.t, range)?,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    #[test]
    fn fragments_read_by_any_range_are_those_the_library_codes_whole() -> Result<(), Error> {
        for (len, t, n) in [
            (1, 1, 2),
            (100, 2, 3),
            (1000, 3, 5),
            (3 * SEND_STRIPE + 5000, 3, 5),
            (4 * SEND_STRIPE + 1, 4, 7),
        ] {
            let fragments = Fragments::new(blob(len), n, t)?;
            let shard = fragments.shard();
            let library = reed_solomon_simd::encode(t, n - t, fragments.data.chunks_exact(shard))
                .map_err(|_| Error::NoServers)?;
            // Ranges within a stripe, across stripe ends, and whole.
            let cuts = [0, 1, 63, 64, 1000, SEND_STRIPE - 3, SEND_STRIPE + 7, shard];
            for i in 0..n {
                let fragment = fragments.fragment(i).ok_or(Error::NoServers)?;
                let whole: &[u8] = match i < t {
                    true => &fragments.data[i * shard..(i + 1) * shard],
                    false => &library[i - t],
                };
                assert_eq!(fragment.len(), shard);
                assert!(fragment.to_vec()? == whole, "{len} bytes {t}-of-{n}, {i}");
                for &a in cuts.iter().filter(|&&c| c <= shard) {
                    for &b in cuts.iter().filter(|&&c| c >= a && c <= shard) {
                        let got = fragment.bytes(a..b)?;
                        assert!(*got == whole[a..b], "{len} bytes {t}-of-{n}, {i}, {a}..{b}");
                    }
                }
            }
            assert!(fragments.fragment(n).is_none());
        }
        Ok(())
    }

    #[test]
    fn hashes_taken_as_recovery_fragments_are_coded_are_those_of_the_whole_fragments()
    -> Result<(), Error> {
        let file_id = [5; 16];
        for (len, t, n) in [(10, 1, 1), (1000, 3, 5), (2 * HASH_STRIPE + 99, 2, 4)] {
            let fragments = Fragments::new(blob(len), n, t)?;
            let hashes = fragments.hashes(&file_id)?;
            assert_eq!(hashes.len(), n);
            for (i, hash) in hashes.iter().enumerate() {
                let whole = fragments.fragment(i).ok_or(Error::NoServers)?.to_vec()?;
                let expected = fragment_hash(ManifestFormat::CURRENT, &file_id, i as u8, &whole);
                assert_eq!(*hash, expected, "{len} bytes {t}-of-{n}, fragment {i}");
            }
        }
        Ok(())
    }

    #[test]
    fn a_save_keeps_a_bounded_few_recovery_stripes_however_large_the_file() -> Result<(), Error> {
        // 3-of-5 over 48 MiB: two recovery fragments of 16 MiB, 8 MiB of
        // each kept. 2-of-10 over 40 MiB: eight of 20 MiB, 8 MiB of each.
        for (len, t, n, budget) in [(48 << 20, 3, 5, 16 << 20), (40 << 20, 2, 10, 64 << 20)] {
            let fragments = Fragments::new(blob(len), n, t)?;
            let shard = fragments.shard();
            assert_eq!(fragments.kept_budget(), budget);
            let library = reed_solomon_simd::encode(t, n - t, fragments.data.chunks_exact(shard))
                .map_err(|_| Error::NoServers)?;
            // Each sender reads its fragment in frames, all side by side,
            // the frames offset by a head as a message's are.
            let mut most = 0;
            let mut at = 0;
            while at < shard {
                let end = shard.min(at + SEND_STRIPE - 100);
                for i in t..n {
                    let fragment = fragments.fragment(i).ok_or(Error::NoServers)?;
                    assert!(*fragment.bytes(at..end)? == library[i - t][at..end]);
                }
                most = most.max(fragments.kept_and_coded().0);
                at = end;
            }
            assert!(most <= budget, "{most} bytes kept");
            // Each stripe coded once for all the senders.
            assert_eq!(fragments.kept_and_coded().1, shard.div_ceil(SEND_STRIPE));
        }
        Ok(())
    }

    #[test]
    fn thresholds_outside_one_to_n_are_refused_before_anything_is_coded() {
        for (t, n) in [(0, 3), (4, 3), (0, 0)] {
            assert!(matches!(
                Fragments::new(vec![1; 100], n, t),
                Err(Error::BadThreshold { .. })
            ));
        }
    }

    #[test]
    fn a_hasher_fed_in_parts_gives_the_current_formats_fragment_hash() {
        let bytes = blob(10_000);
        let mut hasher = FragmentHasher::new(&[3; 16], 4);
        for part in bytes.chunks(777) {
            hasher.update(part);
        }
        assert_eq!(
            hasher.finalize(),
            fragment_hash(ManifestFormat::CURRENT, &[3; 16], 4, &bytes)
        );
    }
}
