//! The version of every block slot, kept sparse: memory grows with the
//! blocks written, not with the offsets they were written at, so a write far
//! past the end (a hole) costs no memory for the hole.

use std::collections::BTreeMap;

/// Versions per page: 256 × 8 bytes (2 KiB) for 256 consecutive blocks.
const PAGE: u64 = 256;

/// Block versions (0: a hole) and how many slots the file on disk must have.
#[derive(Default)]
pub(crate) struct Versions {
    /// Pages holding at least one written block, by page index.
    pages: BTreeMap<u64, Box<[u64; PAGE as usize]>>,
    /// Slots on disk: one past the last block a write reached (the file is
    /// grown before the write, see `BlockFile::extend_disk`), or fewer
    /// after a truncation.
    slots: u64,
}

impl Versions {
    /// The versions of a persisted file's footer, one per slot.
    pub(crate) fn from_dense(dense: &[u64]) -> Self {
        let mut this = Self::default();
        for (p, chunk) in dense.chunks(PAGE as usize).enumerate() {
            if chunk.iter().any(|v| *v != 0) {
                let mut page = Box::new([0; PAGE as usize]);
                page[..chunk.len()].copy_from_slice(chunk);
                this.pages.insert(p as u64, page);
            }
        }
        this.slots = dense.len() as u64;
        this
    }

    /// Slots the file on disk must have.
    pub(crate) fn slots(&self) -> u64 {
        self.slots
    }

    /// The version of `block` (0 for a hole or a block past the slots).
    pub(crate) fn get(&self, block: u64) -> u64 {
        if block >= self.slots {
            return 0;
        }
        self.pages
            .get(&(block / PAGE))
            .map_or(0, |page| page[(block % PAGE) as usize])
    }

    /// Records that `block` was sealed at `version`; the file on disk now
    /// has its slot.
    pub(crate) fn set(&mut self, block: u64, version: u64) {
        let page = self
            .pages
            .entry(block / PAGE)
            .or_insert_with(|| Box::new([0; PAGE as usize]));
        page[(block % PAGE) as usize] = version;
        self.slots = self.slots.max(block.saturating_add(1));
    }

    /// Records that the file on disk has `slots` slots, the new ones holes
    /// until they are written.
    pub(crate) fn extend(&mut self, slots: u64) {
        self.slots = self.slots.max(slots);
    }

    /// Drops the versions of every slot from `slots` on.
    pub(crate) fn truncate(&mut self, slots: u64) {
        if slots >= self.slots {
            return;
        }
        // Whole pages past the cut go; the page the cut falls in is cleared
        // from the cut on.
        let _ = self.pages.split_off(&slots.div_ceil(PAGE));
        if !slots.is_multiple_of(PAGE)
            && let Some(page) = self.pages.get_mut(&(slots / PAGE))
        {
            page[(slots % PAGE) as usize..].fill(0);
        }
        self.slots = slots;
    }

    /// The highest version recorded (0 if none).
    pub(crate) fn max(&self) -> u64 {
        self.pages
            .values()
            .flat_map(|page| page.iter().copied())
            .max()
            .unwrap_or(0)
    }

    /// Every slot's version, holes included, as a persisted footer stores
    /// them. The caller bounds [`Versions::slots`] first: this allocates
    /// eight bytes per slot.
    pub(crate) fn to_dense(&self) -> Vec<u64> {
        let mut out = vec![0; self.slots as usize];
        for (&p, page) in &self.pages {
            let from = (p * PAGE) as usize;
            for (k, v) in page.iter().enumerate() {
                if let Some(slot) = out.get_mut(from + k) {
                    *slot = *v;
                }
            }
        }
        out
    }

    /// Bytes of memory the pages take (for tests of sparse files).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.pages.len() * PAGE as usize * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_far_block_costs_one_page_and_holes_read_as_zero() {
        let mut v = Versions::default();
        v.set(1 << 40, 7);
        assert_eq!(v.slots(), (1 << 40) + 1);
        assert_eq!(v.get(1 << 40), 7);
        assert_eq!(v.get(12345), 0);
        assert_eq!(v.heap_bytes(), PAGE as usize * 8);
    }

    #[test]
    fn truncate_clears_the_cut_page_and_drops_later_ones() {
        let mut v = Versions::from_dense(&[1, 2, 3, 0, 5]);
        v.set(1000, 9);
        v.truncate(2);
        assert_eq!(v.slots(), 2);
        assert_eq!(v.to_dense(), vec![1, 2]);
        // Growing again does not bring the old versions back.
        v.set(4, 11);
        assert_eq!(v.to_dense(), vec![1, 2, 0, 0, 11]);
        assert_eq!(v.get(1000), 0);
        assert_eq!(v.max(), 11);
    }
}
