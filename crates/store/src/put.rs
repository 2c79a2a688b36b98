//! Putting a content: read, cut, seal and build the chunk tree bottom-up, then
//! commit new nodes and reference counts in batches.
//!
//! # Tree building with a height known only at the end
//! A content's height `H` follows from its length, which a stream reveals
//! only at its end. Nodes of height `h < H` are grouped by boundaries of
//! level `h`; the root (height `H`) takes every node of height `H - 1`. While
//! reading, `H(n_so_far)` is a lower bound of the final height, so nodes of
//! height below it are final and are sealed and written at once. Nodes that
//! might end up under the root wait, each tagged with the level of the
//! boundary that ended it, and are regrouped when the bound rises. The
//! tags make this regrouping give exactly the tree a one-shot build would.
//!
//! # Reference counts, bottom-up
//! A node's count is the number of stored parents listing it plus the number
//! of puts of it as a root. When a node is sealed it is either already
//! stored (then, since stored nodes have all their descendants, its children
//! are stored and already counted: nothing to do) or new (then it is written
//! and each child's count grows by one). The root's count grows by one per
//! put.
//!
//! # Batches and crash safety
//! A content that fits in one segment (4 MiB) reaches the backend as one
//! batch. A larger one is committed segment by segment, so memory stays
//! bounded; a journal file marks the put as in progress, and a store opened
//! after a crash removes the nodes left without a parent (count 0). Within a
//! batch, children come in earlier stages than their parents.

use std::collections::HashMap;
use std::io::Read;

use rayon::prelude::*;

use crate::backend::Batch;
use crate::chunker::END_LEVEL;
use crate::error::Result;
use crate::node;
use crate::params::ContentRef;
use crate::store::{Held, Store};
use crate::wrapper::NodeContext;

/// Bytes read and chunked per step of the pipeline.
const READ_BUF: usize = 2 << 20;
/// Content bytes per backend batch of a large put.
const SEGMENT: u64 = 4 << 20;

/// Run under the writer lock when a put's reference is known; says what the
/// put's last batch records besides its nodes. `Sync`: it runs where the
/// work under the lock runs (see [`Held::run`]).
pub(crate) type FinalHook<'a> = dyn Fn(&ContentRef) -> Result<FinalEntries> + Sync + 'a;

/// What a [`FinalHook`] decided.
pub(crate) struct FinalEntries {
    /// Whether the put counts as one more reference to its root. `false`
    /// when the put is already recorded (the name's newest version is this
    /// very content).
    pub count_put: bool,
    /// Entries to write in the put's last batch.
    pub entries: ExtraEntries,
}

/// Entries (key, value) a put writes besides its nodes.
pub(crate) type ExtraEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// A sealed node waiting to be committed.
pub(crate) struct SealedNode {
    pub digest: Vec<u8>,
    pub value: Vec<u8>,
    pub height: u8,
    pub children: Vec<Vec<u8>>,
}

/// A finished node not yet grouped into its parent.
struct Pending {
    digest: Vec<u8>,
    len: u64,
    /// Level of the boundary that ended it.
    tag: u8,
}

struct TreeBuilder<'s> {
    store: &'s Store,
    levels: Vec<Vec<Pending>>,
    /// Nodes may be grouped into parents of height below this.
    allowed: u8,
    n: u64,
    sealed: Vec<SealedNode>,
}

impl<'s> TreeBuilder<'s> {
    fn new(store: &'s Store) -> Self {
        Self {
            store,
            levels: Vec::new(),
            allowed: 0,
            n: 0,
            sealed: Vec::new(),
        }
    }

    fn push_leaf(&mut self, leaf: SealedNode, len: u64, tag: u8) {
        self.n += len;
        let pending = Pending {
            digest: leaf.digest.clone(),
            len,
            tag,
        };
        self.sealed.push(leaf);
        self.raise();
        self.push(0, pending);
    }

    /// Raises the grouping bound to the height of the content so far and
    /// regroups the nodes that waited below the old bound.
    fn raise(&mut self) {
        let target = self.store.params().height(self.n);
        while self.allowed < target {
            let top = usize::from(self.allowed.saturating_sub(1));
            self.allowed += 1;
            if top < self.levels.len() {
                let waiting = std::mem::take(&mut self.levels[top]);
                for p in waiting {
                    self.push(top, p);
                }
            }
        }
    }

    fn push(&mut self, h: usize, p: Pending) {
        if self.levels.len() <= h {
            self.levels.resize_with(h + 1, Vec::new);
        }
        let tag = p.tag;
        self.levels[h].push(p);
        if h + 1 >= usize::from(self.allowed) {
            return;
        }
        let natural = usize::from(tag) > h;
        if natural || self.levels[h].len() >= self.store.params().max_children() {
            let group = std::mem::take(&mut self.levels[h]);
            let parent_tag = if natural { tag } else { (h + 1) as u8 };
            let node = self.seal_superchunk((h + 1) as u8, &group, false);
            let len = group.iter().map(|c| c.len).sum();
            let pending = Pending {
                digest: node.digest.clone(),
                len,
                tag: parent_tag,
            };
            self.sealed.push(node);
            self.push(h + 1, pending);
        }
    }

    fn seal_superchunk(&self, height: u8, children: &[Pending], is_root: bool) -> SealedNode {
        let body = node::encode_superchunk(children.iter().map(|c| (c.digest.as_slice(), c.len)));
        let ctx = NodeContext {
            kind: node::SUPERCHUNK,
            height,
            is_root,
        };
        let (digest, value) = self.store.wrapper().seal(ctx, &body);
        SealedNode {
            digest,
            value,
            height,
            children: children.iter().map(|c| c.digest.clone()).collect(),
        }
    }

    /// The end of a content is a boundary of every level: its last leaf
    /// carries [`END_LEVEL`] and closes every group below `top` on its way
    /// up. A content that ends exactly where a read buffer ended (a file of
    /// zeros a multiple of 2 MiB long) has its last leaf cut before the end
    /// was seen, with its own level; the groups it left open are closed
    /// here, the lowest first, as that leaf would have closed them.
    fn close_open_groups(&mut self, top: usize) {
        if self.levels.len() <= top {
            self.levels.resize_with(top + 1, Vec::new);
        }
        if let Some(h) = (0..top).find(|&h| !self.levels[h].is_empty()) {
            let group = std::mem::take(&mut self.levels[h]);
            let node = self.seal_superchunk((h + 1) as u8, &group, false);
            let pending = Pending {
                digest: node.digest.clone(),
                len: group.iter().map(|c| c.len).sum(),
                tag: END_LEVEL,
            };
            self.sealed.push(node);
            self.push(h + 1, pending);
        }
    }

    /// Seals the root over everything left and returns its digest.
    fn finish(&mut self) -> Vec<u8> {
        let h = self.allowed;
        let top = usize::from(h - 1);
        self.close_open_groups(top);
        let children = std::mem::take(&mut self.levels[top]);
        let root = self.seal_superchunk(h, &children, true);
        let digest = root.digest.clone();
        self.sealed.push(root);
        digest
    }
}

/// One cut of a read buffer: a leaf's byte range and its boundary level.
#[derive(Clone, Copy)]
struct Cut {
    start: usize,
    end: usize,
    level: u8,
}

/// The outcome of a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The content's reference.
    pub content_ref: ContentRef,
    /// Whether the content was not stored before this put.
    pub is_new: bool,
}

impl Store {
    /// Stores a content read from `reader`, in memory bounded independently
    /// of its size.
    ///
    /// A large content is written in several batches, its root last. A put
    /// that fails part way (the reader, the backend) leaves the nodes of
    /// the batches already written, counted but reached by no root. With a
    /// put journal ([`Store::set_journal_dir`]) the failed put stays
    /// recorded: [`Store::needs_recovery`] says so and [`Store::recover`]
    /// removes them (the `seccs` CLI does both when it opens a store);
    /// without one, [`Store::gc`] does.
    pub fn put_reader(&self, reader: &mut dyn Read) -> Result<PutOutcome> {
        self.put_reader_with(reader, None)
    }

    /// Stores a content; `hook`, run under the writer lock once the
    /// reference is known, returns entries (catalog records) to write in the
    /// same batch as the put's last nodes and its root count.
    pub(crate) fn put_reader_with(
        &self,
        reader: &mut dyn Read,
        hook: Option<&FinalHook<'_>>,
    ) -> Result<PutOutcome> {
        let mut first = Vec::with_capacity(READ_BUF);
        let eof = fill(
            reader,
            &mut first,
            READ_BUF.max(self.params().chunk_size() + 1),
        )?;
        if eof && first.len() <= self.params().chunk_size() {
            return self.put_single_leaf(&first, hook);
        }
        let mut committer = Committer::new(self);
        let mut builder = TreeBuilder::new(self);
        // Held from the first of several batches to the last: between them,
        // nodes written earlier are assumed present, which no other writer
        // may undo meanwhile. While it is held, the backend and rayon are
        // called only through `Held::run` (reading and building the tree
        // between steps use neither).
        let mut held: Option<Held<'_>> = None;
        // A full segment waiting to be committed while the next one is cut
        // and sealed (the commit of segment k overlaps the work on k + 1;
        // commits still run one after another, in order).
        let mut to_commit: Option<Vec<SealedNode>> = None;
        let mut cur_buf = first;
        let mut cur_eof = eof;
        let mut cur_cuts = self.cut(&cur_buf, cur_eof);
        loop {
            let consumed = cur_cuts.last().map_or(0, |c| c.end);
            let mut next_buf = Vec::new();
            let mut next_eof = true;
            if !cur_eof {
                next_buf.reserve(READ_BUF + cur_buf.len() - consumed);
                next_buf.extend_from_slice(&cur_buf[consumed..]);
                next_eof = fill(reader, &mut next_buf, READ_BUF)?;
            }
            // Seals this buffer's leaves and cuts the next buffer, in
            // parallel with the commit of the segment before, if any.
            let mut pending = to_commit.take();
            let mut step = |parallel: bool| -> Result<(Vec<Cut>, Vec<SealedNode>)> {
                let work = || {
                    if parallel && !cur_eof {
                        rayon::join(
                            || self.cut(&next_buf, next_eof),
                            || self.seal_leaves(&cur_buf, &cur_cuts, true),
                        )
                    } else {
                        let leaves = self.seal_leaves(&cur_buf, &cur_cuts, parallel);
                        let cuts = if cur_eof {
                            Vec::new()
                        } else {
                            self.cut(&next_buf, next_eof)
                        };
                        (cuts, leaves)
                    }
                };
                Ok(match pending.take() {
                    Some(nodes) if parallel => {
                        let (done, committed) =
                            rayon::join(work, || committer.commit_locked(nodes, None));
                        committed?;
                        done
                    }
                    Some(nodes) => {
                        committer.commit_locked(nodes, None)?;
                        work()
                    }
                    None => work(),
                })
            };
            let (next_cuts, leaves) = match &held {
                Some(held) => held.run(|pool| step(pool && self.is_parallel()))?,
                None => step(self.is_parallel())?,
            };
            for (leaf, cut) in leaves.into_iter().zip(&cur_cuts) {
                builder.push_leaf(leaf, (cut.end - cut.start) as u64, cut.level);
            }
            if cur_eof {
                break;
            }
            if committer.segment_bytes(builder.n) >= SEGMENT {
                committer.begin()?;
                if held.is_none() {
                    held = Some(self.lock_writer());
                }
                to_commit = Some(std::mem::take(&mut builder.sealed));
                committer.committed_bytes = builder.n;
            }
            cur_buf = next_buf;
            cur_eof = next_eof;
            cur_cuts = next_cuts;
        }
        let root = builder.finish();
        let mut last = std::mem::take(&mut builder.sealed);
        let held = match held {
            Some(held) => held,
            None => self.lock_writer(),
        };
        let is_new = held.run_here(|| -> Result<bool> {
            if let Some(nodes) = to_commit.take() {
                committer.commit_locked(nodes, None)?;
            }
            let is_new =
                committer.commit_final(std::mem::take(&mut last), &root, builder.n, hook)?;
            committer.done()?;
            Ok(is_new)
        })?;
        Ok(PutOutcome {
            content_ref: ContentRef::new(&root, builder.n),
            is_new,
        })
    }

    fn put_single_leaf(&self, content: &[u8], hook: Option<&FinalHook<'_>>) -> Result<PutOutcome> {
        let (digest, value) = self.seal_leaf(content, true);
        let node = SealedNode {
            digest: digest.clone(),
            value,
            height: 0,
            children: Vec::new(),
        };
        let mut committer = Committer::new(self);
        let mut nodes = vec![node];
        let is_new = self.lock_writer().run_here(|| -> Result<bool> {
            let is_new = committer.commit_final(
                std::mem::take(&mut nodes),
                &digest,
                content.len() as u64,
                hook,
            )?;
            committer.done()?;
            Ok(is_new)
        })?;
        Ok(PutOutcome {
            content_ref: ContentRef::new(&digest, content.len() as u64),
            is_new,
        })
    }

    fn seal_leaf(&self, content: &[u8], is_root: bool) -> (Vec<u8>, Vec<u8>) {
        let packed = match self.params().compression() {
            crate::params::Compression::Zstd(level) => node::compress_leaf(content, level.get()),
            crate::params::Compression::None => None,
        };
        let (kind, body) = match &packed {
            Some(p) => (node::LEAF_ZSTD, p.as_slice()),
            None => (node::LEAF_RAW, content),
        };
        let ctx = NodeContext {
            kind,
            height: 0,
            is_root,
        };
        self.wrapper().seal(ctx, body)
    }

    /// Cuts a read buffer; at the end of the content the last cut takes the
    /// rest and is a boundary of every level.
    fn cut(&self, buf: &[u8], eof: bool) -> Vec<Cut> {
        let chunker = self.chunker();
        let mut cuts = Vec::with_capacity(buf.len() / self.params().chunk_size() + 1);
        let mut pos = 0;
        while pos < buf.len() {
            match chunker.next_boundary(&buf[pos..]) {
                Some((len, level)) => {
                    cuts.push(Cut {
                        start: pos,
                        end: pos + len,
                        level,
                    });
                    pos += len;
                }
                None if eof => {
                    cuts.push(Cut {
                        start: pos,
                        end: buf.len(),
                        level: END_LEVEL,
                    });
                    pos = buf.len();
                }
                None => break,
            }
        }
        if eof && let Some(last) = cuts.last_mut() {
            last.level = END_LEVEL;
        }
        cuts
    }

    fn seal_leaves(&self, buf: &[u8], cuts: &[Cut], parallel: bool) -> Vec<SealedNode> {
        let seal = |cut: &Cut| {
            let (digest, value) = self.seal_leaf(&buf[cut.start..cut.end], false);
            SealedNode {
                digest,
                value,
                height: 0,
                children: Vec::new(),
            }
        };
        if parallel {
            cuts.par_iter().map(seal).collect()
        } else {
            cuts.iter().map(seal).collect()
        }
    }
}

/// Reads until `buf` holds `want` more bytes or the reader ends; returns
/// whether it ended.
fn fill(reader: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> Result<bool> {
    let target = buf.len() + want;
    while buf.len() < target {
        let before = buf.len();
        let n = reader
            .take((target - before) as u64)
            .read_to_end(buf)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    Ok(0)
                } else {
                    Err(e)
                }
            })?;
        if n == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Commits a put's sealed nodes in one or more batches. The caller holds
/// the store's writer lock around every commit.
struct Committer<'s> {
    store: &'s Store,
    journal: Option<crate::store::JournalEntry>,
    committed_bytes: u64,
}

impl<'s> Committer<'s> {
    fn new(store: &'s Store) -> Self {
        Self {
            store,
            journal: None,
            committed_bytes: 0,
        }
    }

    fn segment_bytes(&self, n: u64) -> u64 {
        n - self.committed_bytes
    }

    /// Marks the put as in progress before its first intermediate batch.
    fn begin(&mut self) -> Result<()> {
        if self.journal.is_none() {
            self.journal = self.store.journal_begin()?;
        }
        Ok(())
    }

    /// Commits the last nodes; the root's count grows by one and `hook`'s
    /// entries join the batch. Returns whether the root was new.
    fn commit_final(
        &self,
        nodes: Vec<SealedNode>,
        root: &[u8],
        n: u64,
        hook: Option<&FinalHook<'_>>,
    ) -> Result<bool> {
        let content_ref = ContentRef::new(root, n);
        self.commit_locked(nodes, Some((root, &content_ref, hook)))
    }

    fn commit_locked(
        &self,
        nodes: Vec<SealedNode>,
        root: Option<(&[u8], &ContentRef, Option<&FinalHook<'_>>)>,
    ) -> Result<bool> {
        let backend = self.store.backend();
        // Look up every sealed node and every child they list.
        let mut index: HashMap<Vec<u8>, usize> = HashMap::with_capacity(nodes.len() * 2);
        let mut lookup: Vec<&[u8]> = Vec::with_capacity(nodes.len() * 2);
        for node in &nodes {
            for d in std::iter::once(&node.digest).chain(node.children.iter()) {
                if !index.contains_key(d) {
                    index.insert(d.clone(), lookup.len());
                    lookup.push(d.as_slice());
                }
            }
        }
        let counts = backend.get_counts(&lookup)?;
        // Per looked-up digest: (count, stored before this batch, changed).
        let mut state: Vec<Option<(u64, bool, bool)>> = counts
            .into_iter()
            .map(|c| c.map(|c| (c, true, false)))
            .collect();
        let mut is_new = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            let at = index[&node.digest];
            if state[at].is_some() {
                continue;
            }
            state[at] = Some((0, false, true));
            is_new[i] = true;
            for child in &node.children {
                let Some(entry) = state[index[child]].as_mut() else {
                    return Err(child_missing(backend, self.store.marker_at_open()));
                };
                entry.0 = one_more(entry.0, child)?;
                entry.2 = true;
            }
        }
        let mut root_is_new = false;
        let mut extra = Vec::new();
        if let Some((root, content_ref, hook)) = root {
            let mut count_put = true;
            if let Some(hook) = hook {
                let decided = hook(content_ref)?;
                count_put = decided.count_put;
                extra = decided.entries;
            }
            let entry = index
                .get(root)
                .and_then(|&at| state[at].as_mut())
                .ok_or_else(|| crate::StoreError::integrity("root missing after sealing"))?;
            root_is_new = !entry.1;
            if count_put {
                entry.0 = one_more(entry.0, root)?;
                entry.2 = true;
            }
        }
        let mut batch = Batch::new();
        let mut new_nodes: Vec<SealedNode> = nodes
            .into_iter()
            .zip(is_new)
            .filter_map(|(n, new)| new.then_some(n))
            .collect();
        new_nodes.sort_by_key(|n| n.height);
        let mut height = None;
        for node in new_nodes {
            if height.is_some_and(|h| h != node.height) {
                batch.barrier();
            }
            height = Some(node.height);
            let count = state[index[&node.digest]].map_or(0, |s| s.0);
            batch.put(node.digest, node.value, count);
        }
        batch.barrier();
        for (digest, at) in &index {
            if let Some((count, true, true)) = state[*at] {
                batch.set_count(digest.clone(), count);
            }
        }
        batch.barrier();
        for (key, value) in extra {
            batch.put(key, value, 1);
        }
        if root.is_none() {
            // Not the put's last batch: the last one (or the journal's
            // recovery after a crash) covers it.
            batch.defer_durability();
        }
        backend.apply_owned(batch)?;
        Ok(root_is_new)
    }

    /// Ends the put's journal entry, if it has one.
    fn done(&mut self) -> Result<()> {
        if let Some(j) = self.journal.take() {
            self.store.journal_end(j)?;
        }
        Ok(())
    }
}

/// A node's reference count plus one. The count comes from the backend: no
/// store reaches 2^64 references, so a count that cannot grow was tampered
/// with, and wrapping it to 0 would free a node still in use.
fn one_more(count: u64, digest: &[u8]) -> Result<u64> {
    count.checked_add(1).ok_or_else(|| {
        crate::StoreError::integrity(format!(
            "node {} has a reference count that cannot grow ({count}): the backend's count was \
             tampered with",
            seccs_core::hexenc::encode(digest)
        ))
    })
}

/// The error for a child that a batch's new node lists but the backend no
/// longer holds: this put wrote it in an earlier batch, so either the
/// backend lost the store meanwhile (emptied, restarted without
/// persistence: its marker is gone too, unless `marker_at_open` says the
/// backend held none when the store was opened) or something removed the
/// node.
fn child_missing(
    backend: &dyn crate::backend::Backend,
    marker_at_open: Option<bool>,
) -> crate::StoreError {
    if marker_at_open != Some(false)
        && backend.keeps_marker()
        && let Ok(None) = backend.read_marker()
    {
        return crate::backend::BackendError::marker_gone(backend.name()).into();
    }
    crate::StoreError::integrity(
        "a node listed by a new node is missing from the store: removed while the put ran, or \
         the backend lost the store's data (emptied, or restarted without persistence)",
    )
}
