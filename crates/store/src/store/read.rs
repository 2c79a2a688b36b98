//! Reading: [`Store::get`], [`Store::get_to`] and [`Store::get_range`]
//! (and, by name, [`Store::get_named`] and [`Store::get_version_range`])
//! walk a content's tree from its root, fetching inner nodes in batches
//! and leaves in windows of [`READ_WINDOW`] bytes, and opening only the
//! nodes on the path to the range read. A read of a name's version that
//! finds a node missing asks the catalog again whether the version is still
//! there, and a read of a bare reference asks whether its root is, so that
//! a content removed by a writer while it was read is said as such, not as
//! damage.

use std::io::Write;

use rayon::prelude::*;

use super::{INNER_BATCH, Root, Store, missing};
use crate::catalog::{EntryKind, Version};
use crate::error::{Result, StoreError};
use crate::node::{self, Child};
use crate::params::ContentRef;

/// Leaf bytes fetched and opened per round trip of a read.
const READ_WINDOW: u64 = 4 << 20;

impl Store {
    /// Reads a whole content into memory (Python: `get_content`).
    pub fn get(&self, content_ref: &ContentRef) -> Result<Vec<u8>> {
        // The length is the reference's claim, read before anything is
        // authenticated: it sizes the first allocation only up to a bound.
        const FIRST_ALLOCATION: u64 = 64 << 20;
        let mut out = Vec::with_capacity(
            usize::try_from(content_ref.len().min(FIRST_ALLOCATION)).unwrap_or(0),
        );
        self.get_to(content_ref, &mut out)?;
        Ok(out)
    }

    /// Writes a whole content to `out`, in memory bounded independently of
    /// its size. On an integrity error, part of the content may have been
    /// written; callers writing files write to a temporary file first.
    pub fn get_to(&self, content_ref: &ContentRef, out: &mut dyn Write) -> Result<()> {
        self.get_range(content_ref, 0, content_ref.len(), out)
    }

    /// Writes version `number` of `name` (its newest version without a
    /// number) to `out`, in memory bounded independently of its size, and
    /// returns the version: [`Store::get_to`] of what [`Store::lookup`]
    /// finds, in one lookup. `name` is taken whole (`a@2` is the name
    /// `a@2`; [`Store::resolve_spec`] reads a spec typed as `NAME@N`).
    ///
    /// A name not in the catalog, a version it does not have, and the
    /// newest version of a gone name are [`StoreError::NotFound`], naming
    /// the name and version (see [`Store::resolve_named`]). A directory's
    /// version is refused with [`StoreError::IsDirectory`] before anything
    /// is written: it has no content of its own (the files under it are
    /// names of their own), and an empty output would pass for an empty
    /// file. A symlink's version writes the link's target, the content
    /// `put` stored for it; the version returned says which it was. A root
    /// node missing from the store is damage, an [`StoreError::Integrity`]
    /// error, as in [`Store::get_version_range`]. On an integrity error,
    /// part of the content may have been written.
    pub fn get_named(
        &self,
        name: &str,
        number: Option<u32>,
        out: &mut dyn Write,
    ) -> Result<Version> {
        let version = self.resolve_named(name, number)?;
        if version.kind == EntryKind::Directory {
            return Err(StoreError::IsDirectory(format!(
                "{:?} is a directory (version {}): it has no content of its own; the files \
                 under it are names of their own ({:?})",
                name,
                version.number,
                format!("{name}/")
            )));
        }
        self.get_version_range(name, &version, 0, version.content_ref.len(), out)?;
        Ok(version)
    }

    /// [`Store::get_range`] of `version`, a version of `name` (from
    /// [`Store::resolve_spec`] or [`Store::resolve_named`]). The root of a
    /// name's version is one the store holds a count for, so its absence is
    /// damage: an [`StoreError::Integrity`] error naming the version, where
    /// `get_range` of a reference says [`StoreError::NotFound`].
    ///
    /// Unless the version went while it was read: a writer's `rm` (or
    /// `rm --keep`) removes a version's catalog record and its nodes,
    /// which a reader beside it (a store opened for reading) may find
    /// gone. A node found missing is therefore damage only if the catalog,
    /// read again, still holds the version with this root; otherwise the
    /// read fails with [`StoreError::VersionRemoved`]. Either way part of
    /// the content may have been written to `out`.
    pub fn get_version_range(
        &self,
        name: &str,
        version: &Version,
        offset: u64,
        len: u64,
        out: &mut dyn Write,
    ) -> Result<()> {
        let r = &version.content_ref;
        let mut window = LeafWindow::default();
        let read = self.read_range(r, offset, len, out, &mut window);
        let err = match read {
            Ok(()) => return Ok(()),
            Err(StoreError::NotFound(_)) => {
                window.missing = true;
                StoreError::integrity(format!(
                    "the root node of {:?} version {} ({}) is missing from the store",
                    name,
                    version.number,
                    r.to_hex()
                ))
            }
            Err(other) => other,
        };
        if window.missing && self.removed_since(name, version) {
            return Err(StoreError::VersionRemoved {
                name: name.to_owned(),
                number: version.number,
            });
        }
        Err(err)
    }

    /// Whether the catalog no longer holds `version` of `name` with its
    /// root (read now). A catalog that cannot be read says nothing of it:
    /// false.
    fn removed_since(&self, name: &str, version: &Version) -> bool {
        match self.lookup(name) {
            Ok(Some(record)) => record
                .version(version.number)
                .is_none_or(|now| now.content_ref != version.content_ref),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Writes `len` bytes of a content from `offset` to `out`, fetching only
    /// the nodes on the paths to that range: O(height + len/S) nodes.
    ///
    /// A root not in the store is [`StoreError::NotFound`]. A node below
    /// the root found missing is damage (an [`StoreError::Integrity`]
    /// error) only if the root, looked up again, is still stored: a writer
    /// that removed the content while it was read (`rm REF`, or the last
    /// name that held it) took the root with it, and the read then fails
    /// with [`StoreError::ContentRemoved`]. Either way part of the content
    /// may have been written to `out`.
    pub fn get_range(
        &self,
        content_ref: &ContentRef,
        offset: u64,
        len: u64,
        out: &mut dyn Write,
    ) -> Result<()> {
        let mut window = LeafWindow::default();
        match self.read_range(content_ref, offset, len, out, &mut window) {
            Err(_) if window.missing && self.root_gone(content_ref) => {
                Err(StoreError::ContentRemoved {
                    reference: content_ref.to_hex(),
                })
            }
            read => read,
        }
    }

    /// Whether the root of `content_ref` is no longer stored (read now). A
    /// backend that cannot answer says nothing of it: false.
    fn root_gone(&self, content_ref: &ContentRef) -> bool {
        matches!(self.backend.get(content_ref.digest()), Ok(None))
    }

    /// [`Store::get_range`], reading leaves through `window`, which tells
    /// afterwards whether a node below the root was found missing.
    fn read_range(
        &self,
        content_ref: &ContentRef,
        offset: u64,
        len: u64,
        out: &mut dyn Write,
        window: &mut LeafWindow,
    ) -> Result<()> {
        self.check_ref(content_ref)?;
        let n = content_ref.len();
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= n)
            .ok_or(StoreError::RangeOutside {
                offset,
                len,
                size: n,
            })?;
        let (height, children) = match self.open_root(content_ref)? {
            Root::Leaf(leaf) => {
                out.write_all(&leaf[offset as usize..end as usize])?;
                return Ok(());
            }
            Root::Inner { height, children } => (height, children),
        };
        if len == 0 {
            return Ok(());
        }
        self.visit(&children, height - 1, offset, end, out, window)?;
        self.flush_window(window, out)
    }

    /// Visits the children (of height `height`) overlapping `[start, end)`,
    /// positions relative to the parent's first byte.
    fn visit(
        &self,
        children: &[Child],
        height: u8,
        start: u64,
        end: u64,
        out: &mut dyn Write,
        window: &mut LeafWindow,
    ) -> Result<()> {
        let mut pos = 0u64;
        let mut selected = Vec::new();
        for child in children {
            let (c_start, c_end) = (pos, pos + child.len);
            pos = c_end;
            if c_end <= start || c_start >= end {
                continue;
            }
            let from = start.saturating_sub(c_start);
            let to = end.min(c_end) - c_start;
            selected.push((child, from, to));
        }
        if height == 0 {
            for (child, from, to) in selected {
                window
                    .leaves
                    .push((child.digest.clone(), child.len, from, to));
                window.bytes += child.len;
                if window.bytes >= READ_WINDOW {
                    self.flush_window(window, out)?;
                }
            }
            return Ok(());
        }
        for group in selected.chunks(INNER_BATCH) {
            let keys: Vec<&[u8]> = group.iter().map(|(c, _, _)| c.digest.as_slice()).collect();
            let values = self.backend.get_values(&keys)?;
            for ((child, from, to), value) in group.iter().zip(values) {
                let Some(value) = value else {
                    window.missing = true;
                    return Err(missing(&child.digest));
                };
                let plaintext = self.open_sealed(height, false, &child.digest, &value)?;
                let grandchildren =
                    node::decode_superchunk(plaintext, self.wrapper.digest_len(), child.len)?;
                self.visit(&grandchildren, height - 1, *from, *to, out, window)?;
            }
        }
        Ok(())
    }

    fn flush_window(&self, window: &mut LeafWindow, out: &mut dyn Write) -> Result<()> {
        if window.leaves.is_empty() {
            return Ok(());
        }
        let leaves = std::mem::take(&mut window.leaves);
        window.bytes = 0;
        let keys: Vec<&[u8]> = leaves.iter().map(|l| l.0.as_slice()).collect();
        let entries = self.backend.get_values(&keys)?;
        window.missing |= entries.iter().any(Option::is_none);
        let open_one = |((digest, len, _, _), value): (&WindowLeaf, Option<Vec<u8>>)| {
            let value = value.ok_or_else(|| missing(digest))?;
            node::decode_leaf(self.open_sealed(0, false, digest, &value)?, *len)
        };
        let opened: Vec<Result<Vec<u8>>> = if self.parallel {
            leaves
                .par_iter()
                .zip(entries.into_par_iter())
                .map(open_one)
                .collect()
        } else {
            leaves.iter().zip(entries).map(open_one).collect()
        };
        for ((_, _, from, to), leaf) in leaves.iter().zip(opened) {
            out.write_all(&leaf?[*from as usize..*to as usize])?;
        }
        Ok(())
    }
}

/// A leaf to read: (digest, leaf length, from, to).
type WindowLeaf = (Vec<u8>, u64, u64, u64);

#[derive(Default)]
struct LeafWindow {
    leaves: Vec<WindowLeaf>,
    bytes: u64,
    /// Whether a node of the read was found missing (not: failed to
    /// authenticate).
    missing: bool,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use seccs_core::SecretKey;

    use crate::backend::{Backend, Batch, MemoryBackend};
    use crate::error::StoreError;
    use crate::node;
    use crate::params::ContentRef;
    use crate::wrapper::NodeContext;
    use crate::{Params, Store, WrapperKind};

    /// A root whose children's lengths add up past 2^64 is damage, not a
    /// panic. Under SHA-256 anyone can seal such a root: a child of 2^64 - 5
    /// bytes and one of 5 add up to 2^64, which a saturating sum took for a
    /// content of 2^64 - 1 bytes, and a read then overflowed adding them up.
    #[test]
    fn a_root_whose_child_lengths_overflow_is_refused_without_a_panic() -> crate::Result<()> {
        let params = Params::new(4096, WrapperKind::Sha256)?;
        let backend = Arc::new(MemoryBackend::new());
        let store = Store::new_unchecked(backend.clone(), params, &SecretKey::from_bytes([1; 32]));
        let len = u64::MAX;
        let height = params.height(len);
        let body = node::encode_superchunk(
            [(&[0xAA; 32][..], u64::MAX - 4), (&[0xBB; 32][..], 5)].into_iter(),
        );
        let ctx = NodeContext {
            kind: node::SUPERCHUNK,
            height,
            is_root: true,
        };
        let (root, value) = store.wrapper().seal(ctx, &body);
        let mut batch = Batch::new();
        batch.put(root.clone(), value, 1);
        backend.apply(&batch)?;
        let content_ref = ContentRef::new(&root, len);
        let mut out = Vec::new();
        let read = store.get_range(&content_ref, 0, 1, &mut out);
        // The node is refused as it is decoded; the read then tells why the
        // reference's root did not read (its length is not the node's),
        // as for any root that is stored yet does not decode at that length.
        assert!(
            matches!(
                read,
                Err(StoreError::Integrity(_) | StoreError::InvalidRef(_))
            ),
            "read gave {read:?}"
        );
        assert!(out.is_empty());
        Ok(())
    }
}
