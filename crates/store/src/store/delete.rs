//! Deleting: [`Store::delete`] undoes one put of a content without a
//! name, and [`Store::release`] drops references level by level, removing
//! the nodes whose count reaches zero (what removing names and `gc` share).

use std::collections::HashMap;

use super::{INNER_BATCH, Store, missing};
use crate::backend::Batch;
use crate::error::{Result, StoreError};
use crate::node;
use crate::params::ContentRef;

impl Store {
    /// Undoes one put of a content without a name (Python:
    /// `delete_content`): its root's count drops by one, and nodes whose
    /// count reaches zero are removed, recursively, in one batch.
    ///
    /// The root is authenticated at the height the reference's length
    /// gives, and that length checked, before any count changes: a
    /// reference with a real digest and another length is refused, never
    /// taken for the content it is not. A content that only names'
    /// versions hold (each counts one put) is refused with
    /// [`StoreError::HeldByNames`]: remove the versions instead. That check
    /// reads the catalog, so a delete costs one pass over the names. With a
    /// wrapper that does not distinguish roots (the default `aes-siv`
    /// among them), it also reads every superchunk, since the root may be a
    /// leaf of other contents too (see `refuse_if_only_names_hold`): a
    /// pass over the store's tree nodes, though not its leaves. A
    /// superchunk that pass cannot read (it authenticates at no height, or
    /// the backend cannot decode it) may list the root, so the delete is
    /// refused with [`StoreError::Integrity`] naming it, unless it is one
    /// of the content's own nodes (met by the release, so no parent of its
    /// root): taking that hold for a put would remove a part another
    /// content needs once the damage is undone. (Only in a store whose key
    /// was proven when it was opened, [`Store::key_checked`]: under another
    /// key every node of the store's own would look so.)
    ///
    /// Damage elsewhere does not stop a delete; the report says what it
    /// met. A catalog record that fails to authenticate (or that the
    /// backend cannot decode) is not read as holding anything: its names
    /// and versions cannot be told, so it is counted in
    /// [`DeleteReport::damaged_records`] and the delete goes on by the
    /// records that do authenticate. A node below the root that is missing
    /// has nothing left to release, and one that does not authenticate is
    /// removed when its count reaches zero: both are listed, and the nodes
    /// only they listed cannot be told, so they keep their counts (space
    /// leaked, never a node another content needs removed).
    pub fn delete(&self, content_ref: &ContentRef) -> Result<DeleteReport> {
        self.check_ref(content_ref)?;
        self.with_writer_lock(|| self.delete_locked(content_ref))
    }

    /// [`Store::delete`] of a reference already checked, under the writer
    /// lock.
    fn delete_locked(&self, content_ref: &ContentRef) -> Result<DeleteReport> {
        self.open_root(content_ref)?;
        let (damaged_records, unwalked, unopened) = self.refuse_if_only_names_hold(content_ref)?;
        let mut releaser = Releaser {
            tolerate_missing: true,
            tolerate_unreadable: true,
            ..Releaser::default()
        };
        self.release(
            &mut releaser,
            vec![(content_ref.digest().to_vec(), content_ref.len())],
            self.params.height(content_ref.len()),
            true,
        )?;
        let hex = |d: &Vec<u8>| seccs_core::hexenc::encode(d);
        // A superchunk the walk for parents could not read may list the
        // root as a part of another content, which would lose that part
        // when the root's count is taken for a put's and released (and
        // find it gone once the damage is undone). Only the content's own
        // nodes, which the release met, cannot be its root's parents. Under
        // a key not proven the store's, a node that does not authenticate
        // may be another key's (a bench beside a store's entries), as a
        // record may be to verify: such a delete goes on, as it did.
        let unknown: Vec<&Vec<u8>> = unwalked
            .iter()
            .chain(&unopened)
            .filter(|key| !releaser.met(key))
            .collect();
        if !unknown.is_empty() && self.key_checked() {
            return Err(parents_unknown(content_ref, &unknown));
        }
        // A node of the content's tree that the walk for parents skipped is
        // met again by the release: listed once.
        let damaged: std::collections::BTreeSet<&Vec<u8>> =
            releaser.damaged.iter().chain(&unwalked).collect();
        let mut report = DeleteReport {
            removed: 0,
            missing: releaser.missing.iter().map(hex).collect(),
            unreadable: releaser.unreadable.iter().map(hex).collect(),
            damaged: damaged.into_iter().map(hex).collect(),
            damaged_records,
        };
        report.missing.sort();
        report.unreadable.sort();
        let batch = releaser.into_batch();
        report.removed = batch
            .ops()
            .iter()
            .filter(|op| matches!(op, crate::backend::Op::Delete { .. }))
            .count() as u64;
        self.backend.apply_owned(batch)?;
        Ok(report)
    }

    /// Fails with [`StoreError::HeldByNames`] when every put that the
    /// root's count holds is a name's version, and with
    /// [`StoreError::NotFound`] when no put of the content is left at all.
    /// Returns how many catalog records could not be read (they are not
    /// taken to hold anything), and the keys of the entries that the walk
    /// for parents could not decode (they are not taken to list the root).
    ///
    /// A root's count holds one per put of its content, named or not, and
    /// one per stored parent listing it. With a wrapper that distinguishes
    /// roots, a root is never another node's child. With one that does not,
    /// a short content's root may also be a leaf of a longer content (the
    /// same bytes, sealed alike), whose parent holds it too: those parents
    /// are counted, by reading every superchunk, so that a delete never
    /// takes the longer content's reference for a put of its own.
    #[allow(clippy::type_complexity)]
    fn refuse_if_only_names_hold(
        &self,
        content_ref: &ContentRef,
    ) -> Result<(usize, Vec<Vec<u8>>, Vec<Vec<u8>>)> {
        let listing = self.list_readable("")?;
        // A record a newer seccs wrote may hold this content, as a put this
        // build cannot see: undoing a put could take the content from it.
        if listing.newer > 0 {
            return Err(StoreError::NewerFormat {
                what: format!(
                    "{} catalog record(s), which may hold {} (their names cannot be read by \
                     this build, so deleting it by reference is left to that seccs)",
                    listing.newer,
                    content_ref.to_hex()
                ),
                found: listing.newer_format,
                oldest: crate::catalog::OLDEST_FORMAT,
                newest: crate::catalog::FORMAT,
            });
        }
        let holders: Vec<String> = listing
            .records
            .iter()
            .flat_map(|record| {
                record
                    .versions
                    .iter()
                    .filter(|v| v.content_ref == *content_ref)
                    .map(|v| format!("{}@{}", record.name, v.number))
            })
            .collect();
        let crate::verify::ParentsListing {
            parents,
            damaged: unwalked,
            unopened,
        } = if self.params.wrapper().distinguishes_root() {
            Default::default()
        } else {
            self.parents_listing(content_ref.digest())?
        };
        if holders.is_empty() && parents == 0 {
            return Ok((listing.damaged, unwalked, unopened));
        }
        let count = self
            .backend
            .get_counts(&[content_ref.digest()])?
            .pop()
            .flatten()
            .unwrap_or(0);
        if count > holders.len() as u64 + parents {
            return Ok((listing.damaged, unwalked, unopened));
        }
        if holders.is_empty() {
            return Err(StoreError::NotFound(format!(
                "no such content: {}: no put of it is left to undo (its root is also a part of {parents} other \
                 node(s), which hold it)",
                content_ref.to_hex()
            )));
        }
        Err(StoreError::HeldByNames {
            reference: content_ref.to_hex(),
            names: holders,
        })
    }

    /// Drops one reference to each listed node of `height`, removing nodes
    /// that reach zero and releasing their children, level by level. The
    /// releaser remembers counts already changed, so several releases can
    /// share one batch.
    pub(crate) fn release(
        &self,
        releaser: &mut Releaser,
        nodes: Vec<(Vec<u8>, u64)>,
        mut height: u8,
        roots: bool,
    ) -> Result<()> {
        let mut level: Vec<(Vec<u8>, u64)> = nodes;
        let mut is_root = roots;
        loop {
            let unknown: Vec<&[u8]> = {
                let mut seen = std::collections::HashSet::new();
                level
                    .iter()
                    .map(|(d, _)| d.as_slice())
                    .filter(|d| !releaser.counts.contains_key(*d) && seen.insert(*d))
                    .collect()
            };
            let counts = self.counts_for_release(&unknown, releaser)?;
            for (d, c) in unknown.iter().zip(counts) {
                releaser.counts.insert(d.to_vec(), (c, c, height));
            }
            let mut removed = Vec::new();
            for (digest, len) in level {
                let slot = releaser
                    .counts
                    .get_mut(&digest)
                    .ok_or_else(|| missing(&digest))?;
                let count = match slot.1 {
                    // An entry the backend cannot decode: its count and
                    // children cannot be told, so it stays as it is.
                    None if releaser.damaged.contains(&digest) => continue,
                    Some(c) if c > 0 => c,
                    // Cleaning up: what is already gone needs no release.
                    None if releaser.tolerate_missing && !is_root => {
                        releaser.missing.insert(digest);
                        continue;
                    }
                    None if releaser.tolerate_missing_roots && is_root => continue,
                    Some(_) | None if is_root => {
                        return Err(StoreError::NotFound(format!(
                            "no such content: {}",
                            ContentRef::new(&digest, len).to_hex()
                        )));
                    }
                    None => {
                        return Err(StoreError::integrity(format!(
                            "node {} is missing from the store (`seccs verify` lists what \
                             it breaks)",
                            seccs_core::hexenc::encode(&digest)
                        )));
                    }
                    Some(_) => {
                        return Err(StoreError::integrity(format!(
                            "node {} is released more often than it is referenced",
                            seccs_core::hexenc::encode(&digest)
                        )));
                    }
                };
                slot.1 = Some(count - 1);
                if count == 1 {
                    removed.push((digest, len));
                }
            }
            if height == 0 || removed.is_empty() {
                return Ok(());
            }
            // Children of removed nodes lose one reference each.
            let mut next = Vec::new();
            for group in removed.chunks(INNER_BATCH) {
                let keys: Vec<&[u8]> = group.iter().map(|(d, _)| d.as_slice()).collect();
                let entries = self.backend.get_many(&keys)?;
                for ((digest, len), entry) in group.iter().zip(entries) {
                    let entry = entry.ok_or_else(|| missing(digest))?;
                    let children = self
                        .open_sealed(height, is_root, digest, &entry.value)
                        .and_then(|plaintext| {
                            node::decode_superchunk(plaintext, self.wrapper.digest_len(), *len)
                        });
                    match children {
                        Ok(children) => {
                            next.extend(children.into_iter().map(|c| (c.digest, c.len)))
                        }
                        // A node of a removed name that does not
                        // authenticate is removed with it; the children it
                        // listed cannot be told, so they keep their counts
                        // (a leak, never a loss).
                        Err(StoreError::Integrity(_)) if releaser.tolerate_unreadable => {
                            releaser.unreadable.insert(digest.clone());
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            level = next;
            height -= 1;
            is_root = false;
        }
    }

    /// The counts of `keys`, for a release. A tolerant release (one that
    /// skips missing nodes) also goes on past an entry the backend cannot
    /// decode (a Redis value too short for its count), which fails a read
    /// of many keys at once: the keys are then read one at a time, and
    /// each that fails so is put in `releaser.damaged` and read as absent.
    fn counts_for_release(
        &self,
        keys: &[&[u8]],
        releaser: &mut Releaser,
    ) -> Result<Vec<Option<u64>>> {
        match self.backend.get_counts(keys) {
            Err(crate::backend::BackendError::Corrupt { .. }) if releaser.tolerate_missing => keys
                .iter()
                .map(|key| match self.backend.get_counts(&[key]) {
                    Ok(mut count) => Ok(count.pop().flatten()),
                    Err(crate::backend::BackendError::Corrupt { .. }) => {
                        releaser.damaged.insert(key.to_vec());
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                })
                .collect(),
            other => Ok(other?),
        }
    }
}

/// What [`Store::delete`] did, and the damage it went past.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteReport {
    /// Entries removed: the nodes whose count reached zero.
    pub removed: u64,
    /// Nodes of the content's tree that are not stored (hex): nothing was
    /// left of them to release. The nodes only they listed cannot be told,
    /// so they keep their counts; `verify` cannot tell those from contents
    /// put without a name.
    pub missing: Vec<String>,
    /// Nodes of the content's tree that did not authenticate (hex), removed
    /// as their count reached zero; the children they listed keep their
    /// counts, as under [`DeleteReport::missing`].
    pub unreadable: Vec<String>,
    /// Entries the backend holds but cannot decode (hex; a Redis value too
    /// short for its count), left as they are: nodes of the content's
    /// tree, whose counts cannot be read, so what they list keeps its
    /// counts too; and, with a wrapper that does not distinguish roots,
    /// entries met while counting the superchunks that list the content's
    /// root, which were not taken to list it (a key may then be the prefix
    /// of a range of entries that the backend could not read). `verify`
    /// reports them `unreadable`.
    pub damaged: Vec<String>,
    /// Catalog records that failed to authenticate, or that the backend
    /// could not decode, when the delete looked for the names that hold
    /// the content: they were not taken to hold it (their names and
    /// versions cannot be told). A range of entries the backend could not
    /// read (a damaged block) counts as one, though it may hold more
    /// records. `seccs verify` lists them and `gc` removes those that fail
    /// to authenticate.
    pub damaged_records: usize,
}

impl DeleteReport {
    /// Whether the delete met no damage.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.unreadable.is_empty()
            && self.damaged.is_empty()
            && self.damaged_records == 0
    }
}

/// Reference counts changed by releases not yet applied.
#[derive(Default)]
pub(crate) struct Releaser {
    /// digest -> (count before, count now (None: absent), height)
    counts: HashMap<Vec<u8>, (Option<u64>, Option<u64>, u8)>,
    /// Skip absent nodes instead of failing (gc of damaged stores).
    pub(crate) tolerate_missing: bool,
    /// Skip absent roots: a name's version whose content is gone (a store
    /// damaged, or one where an older build let `rm REF` take it) can
    /// still be removed; there is nothing left to release.
    pub(crate) tolerate_missing_roots: bool,
    /// Remove a node whose count reaches zero even if it does not
    /// authenticate, without releasing its children: a name whose content
    /// was tampered with can still be removed.
    pub(crate) tolerate_unreadable: bool,
    /// Nodes found missing (skipped under `tolerate_missing`).
    pub(crate) missing: std::collections::BTreeSet<Vec<u8>>,
    /// Entries the backend could not decode (skipped under
    /// `tolerate_missing`): left as they are, with their children's counts.
    pub(crate) damaged: std::collections::BTreeSet<Vec<u8>>,
    /// Nodes removed though they did not authenticate (under
    /// `tolerate_unreadable`): the children they listed keep their counts.
    pub(crate) unreadable: std::collections::BTreeSet<Vec<u8>>,
}

impl Releaser {
    /// Whether the release met the node `key`: it is in the released
    /// content's tree.
    fn met(&self, key: &[u8]) -> bool {
        self.counts.contains_key(key)
            || self.missing.contains(key)
            || self.damaged.contains(key)
            || self.unreadable.contains(key)
    }

    /// A releaser for removing names' versions and for gc, which skips absent nodes:
    /// a name whose content lost a node (a damaged store, or one where an
    /// older build let `rm REF` take it) can still be removed, and what is
    /// gone has nothing left to release. (What only the lost node held
    /// keeps its count: `verify` does not count that as a finding, as it
    /// cannot tell it from a content put without a name.) The same holds
    /// for a node that does not authenticate: it goes, and what it listed
    /// keeps its count.
    pub(crate) fn tolerant() -> Self {
        Self {
            tolerate_missing: true,
            tolerate_missing_roots: true,
            tolerate_unreadable: true,
            ..Self::default()
        }
    }

    /// The batch: parents before children, removals and count updates.
    pub(crate) fn into_batch(self) -> Batch {
        let mut changed: Vec<_> = self
            .counts
            .into_iter()
            .filter(|(_, (before, now, _))| before != now)
            .collect();
        changed.sort_by_key(|c| std::cmp::Reverse(c.1.2));
        let mut batch = Batch::new();
        let mut height = None;
        for (digest, (_, now, h)) in changed {
            if height.is_some_and(|x| x != h) {
                batch.barrier();
            }
            height = Some(h);
            match now {
                Some(0) | None => batch.delete(digest),
                Some(c) => batch.set_count(digest, c),
            }
        }
        batch
    }
}

/// The error of a delete of `content_ref` that found `unknown` superchunks
/// (or entries) it could not read, any of which may hold the root.
fn parents_unknown(content_ref: &ContentRef, unknown: &[&Vec<u8>]) -> StoreError {
    const SHOWN: usize = 3;
    let mut keys: Vec<String> = unknown
        .iter()
        .take(SHOWN)
        .map(|k| seccs_core::hexenc::encode(k))
        .collect();
    if unknown.len() > SHOWN {
        keys.push(format!("and {} more", unknown.len() - SHOWN));
    }
    StoreError::Integrity(format!(
        "not removing a put of {}: {} stored node(s) could not be read ({}: damaged or \
         tampered with), and any of them may hold this content's root as a part of another \
         content, whose count would then be taken for a put's; `seccs verify` lists them and \
         the names they break: remove those names, or put the damaged entries back from a \
         copy of the backend, then run this again",
        content_ref.to_hex(),
        unknown.len(),
        keys.join(", ")
    ))
}
