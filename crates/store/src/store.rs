//! The [`Store`]: puts, gets and deletes contents over a [`Backend`].

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use rayon::prelude::*;
use seccs_core::SecretKey;

use crate::backend::{Backend, Batch, Usage};
use crate::chunker::Chunker;
use crate::error::{Result, StoreError};
use crate::node::{self, Child};
use crate::params::{ContentRef, Params};
use crate::put::PutOutcome;
use crate::wrapper::{CryptoWrapper, NodeContext};

/// Leaf bytes fetched and opened per round trip of a read.
const READ_WINDOW: u64 = 4 << 20;
/// Inner nodes fetched per round trip of a read.
const INNER_BATCH: usize = 256;

/// A content store over a backend.
///
/// `Store` is `Send + Sync`: puts, gets and deletes may run from many threads
/// at once. Sealing and reading run in parallel; the short phase of a write
/// that reads and updates reference counts is serialised.
pub struct Store {
    backend: Arc<dyn Backend>,
    params: Params,
    wrapper: Box<dyn CryptoWrapper>,
    chunker: Chunker,
    writer: Mutex<()>,
    parallel: bool,
    journal_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.name())
            .field("params", &self.params)
            .field("parallel", &self.parallel)
            .finish_non_exhaustive()
    }
}

/// A put in progress, recorded so that a crash can be cleaned up.
pub(crate) struct JournalEntry(PathBuf);

impl Store {
    /// A store over `backend` with `params`, its keys derived from
    /// `store_key`. Uses every core; see [`Store::set_parallel`].
    pub fn new(backend: Arc<dyn Backend>, params: Params, store_key: &SecretKey) -> Self {
        Self {
            backend,
            params,
            wrapper: params.wrapper().build(store_key),
            chunker: Chunker::new(store_key, params.chunk_size(), params.reference_len()),
            writer: Mutex::new(()),
            parallel: true,
            journal_dir: None,
        }
    }

    /// Whether to use every core (default) or one thread. Results are
    /// byte-identical either way.
    pub fn set_parallel(&mut self, parallel: bool) {
        self.parallel = parallel;
    }

    /// A directory where large puts record that they are in progress, so
    /// that [`Store::recover`] after a crash knows to clean up.
    pub fn set_journal_dir(&mut self, dir: PathBuf) {
        self.journal_dir = Some(dir);
    }

    /// The store's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub(crate) fn wrapper(&self) -> &dyn CryptoWrapper {
        self.wrapper.as_ref()
    }

    pub(crate) fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    pub(crate) fn is_parallel(&self) -> bool {
        self.parallel
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic elsewhere leaves nothing broken.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `content`; returns its reference (Python: `put_content`).
    pub fn put(&self, content: &[u8]) -> Result<ContentRef> {
        Ok(self.put_and_check_if_new(content)?.content_ref)
    }

    /// Stores `content`; returns its reference and whether it was new
    /// (Python: `put_content_and_check_if_new`).
    pub fn put_and_check_if_new(&self, content: &[u8]) -> Result<PutOutcome> {
        self.put_reader(&mut &content[..])
    }

    /// Reads a whole content into memory (Python: `get_content`).
    pub fn get(&self, content_ref: &ContentRef) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(content_ref.len()).unwrap_or(0));
        self.get_to(content_ref, &mut out)?;
        Ok(out)
    }

    /// Writes a whole content to `out`, in memory bounded independently of
    /// its size. On an integrity error, part of the content may have been
    /// written; callers writing files write to a temporary file first.
    pub fn get_to(&self, content_ref: &ContentRef, out: &mut dyn Write) -> Result<()> {
        self.get_range(content_ref, 0, content_ref.len(), out)
    }

    /// Writes `len` bytes of a content from `offset` to `out`, fetching only
    /// the nodes on the paths to that range: O(height + len/S) nodes.
    pub fn get_range(
        &self,
        content_ref: &ContentRef,
        offset: u64,
        len: u64,
        out: &mut dyn Write,
    ) -> Result<()> {
        self.check_ref(content_ref)?;
        let n = content_ref.len();
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= n)
            .ok_or_else(|| {
                StoreError::InvalidRef(format!(
                    "range {offset}+{len} is outside the content's {n} bytes"
                ))
            })?;
        let height = self.params.height(n);
        let root = self
            .backend
            .get(content_ref.digest())?
            .ok_or_else(|| StoreError::NotFound(content_ref.to_hex()))?;
        let ctx = NodeContext {
            height,
            is_root: true,
        };
        let plaintext = self.open(ctx, content_ref.digest(), &root.value)?;
        if height == 0 {
            let leaf = node::decode_leaf(plaintext, n)?;
            out.write_all(&leaf[offset as usize..end as usize])?;
            return Ok(());
        }
        if len == 0 {
            return Ok(());
        }
        let children = node::decode_superchunk(&plaintext, self.wrapper.digest_len(), n)?;
        let mut window = LeafWindow::default();
        self.visit(&children, height - 1, offset, end, out, &mut window)?;
        self.flush_window(&mut window, out)
    }

    fn check_ref(&self, r: &ContentRef) -> Result<()> {
        if r.digest().len() != self.wrapper.digest_len() {
            return Err(StoreError::InvalidRef(format!(
                "{} is {} bytes; this store's references are {}",
                r.to_hex(),
                r.as_bytes().len(),
                self.wrapper.digest_len() + 8
            )));
        }
        Ok(())
    }

    fn open(&self, ctx: NodeContext, digest: &[u8], value: &[u8]) -> Result<Vec<u8>> {
        self.wrapper.open(ctx, digest, value).map_err(|_| {
            StoreError::integrity(format!(
                "node {} (height {}) failed to authenticate",
                seccs_core::hexenc::encode(digest),
                ctx.height
            ))
        })
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
                window.leaves.push((child.digest.clone(), child.len, from, to));
                window.bytes += child.len;
                if window.bytes >= READ_WINDOW {
                    self.flush_window(window, out)?;
                }
            }
            return Ok(());
        }
        for group in selected.chunks(INNER_BATCH) {
            let keys: Vec<&[u8]> = group.iter().map(|(c, _, _)| c.digest.as_slice()).collect();
            let entries = self.backend.get_many(&keys)?;
            for ((child, from, to), entry) in group.iter().zip(entries) {
                let entry = entry.ok_or_else(|| missing(&child.digest))?;
                let ctx = NodeContext {
                    height,
                    is_root: false,
                };
                let plaintext = self.open(ctx, &child.digest, &entry.value)?;
                let grandchildren =
                    node::decode_superchunk(&plaintext, self.wrapper.digest_len(), child.len)?;
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
        let entries = self.backend.get_many(&keys)?;
        let open_one = |((digest, len, _, _), entry): (&(Vec<u8>, u64, u64, u64), Option<crate::backend::Entry>)| {
            let entry = entry.ok_or_else(|| missing(digest))?;
            let ctx = NodeContext {
                height: 0,
                is_root: false,
            };
            node::decode_leaf(self.open(ctx, digest, &entry.value)?, *len)
        };
        let opened: Vec<Result<Vec<u8>>> = if self.parallel {
            leaves.par_iter().zip(entries.into_par_iter()).map(open_one).collect()
        } else {
            leaves.iter().zip(entries).map(open_one).collect()
        };
        for ((_, _, from, to), leaf) in leaves.iter().zip(opened) {
            out.write_all(&leaf?[*from as usize..*to as usize])?;
        }
        Ok(())
    }

    /// Undoes one put of a content (Python: `delete_content`): its root's
    /// count drops by one, and nodes whose count reaches zero are removed,
    /// recursively, in one batch.
    pub fn delete(&self, content_ref: &ContentRef) -> Result<()> {
        self.check_ref(content_ref)?;
        let _guard = self.lock_writer();
        let mut batch = Batch::new();
        self.release(
            vec![(content_ref.digest().to_vec(), content_ref.len())],
            self.params.height(content_ref.len()),
            true,
            &mut batch,
        )?;
        self.backend.apply(&batch)?;
        Ok(())
    }

    /// Drops one reference to each listed node of `height`, removing nodes
    /// that reach zero and releasing their children, level by level
    /// (parents before children in `batch`).
    pub(crate) fn release(
        &self,
        nodes: Vec<(Vec<u8>, u64)>,
        mut height: u8,
        roots: bool,
        batch: &mut Batch,
    ) -> Result<()> {
        let mut level: Vec<(Vec<u8>, u64)> = nodes;
        let mut is_root = roots;
        loop {
            // Decrements per node at this level.
            let mut decs: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
            let mut order = Vec::new();
            for (digest, len) in level {
                let e = decs.entry(digest.clone()).or_insert_with(|| {
                    order.push(digest);
                    (0, len)
                });
                e.0 += 1;
            }
            let keys: Vec<&[u8]> = order.iter().map(Vec::as_slice).collect();
            let counts = self.backend.get_counts(&keys)?;
            let mut removed = Vec::new();
            for (digest, count) in order.iter().zip(counts) {
                let (dec, len) = decs[digest];
                let count = match count {
                    Some(c) => c,
                    None if is_root => {
                        return Err(StoreError::NotFound(
                            ContentRef::new(digest, len).to_hex(),
                        ));
                    }
                    None => return Err(missing(digest)),
                };
                if count < dec {
                    return Err(StoreError::integrity(format!(
                        "node {} has count {count} but {dec} references are released",
                        seccs_core::hexenc::encode(digest)
                    )));
                }
                if count == dec {
                    batch.delete(digest.clone());
                    removed.push((digest.clone(), len));
                } else {
                    batch.set_count(digest.clone(), count - dec);
                }
            }
            batch.barrier();
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
                    let ctx = NodeContext { height, is_root };
                    let plaintext = self.open(ctx, digest, &entry.value)?;
                    let children =
                        node::decode_superchunk(&plaintext, self.wrapper.digest_len(), *len)?;
                    next.extend(children.into_iter().map(|c| (c.digest, c.len)));
                }
            }
            level = next;
            height -= 1;
            is_root = false;
        }
    }

    /// Entries and bytes in the backend.
    pub fn usage(&self) -> Result<Usage> {
        Ok(self.backend.usage()?)
    }

    pub(crate) fn journal_begin(&self) -> Result<Option<JournalEntry>> {
        let Some(dir) = &self.journal_dir else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir)?;
        let mut id = [0u8; 16];
        seccs_core::random_bytes(&mut id).map_err(|e| StoreError::Config(e.to_string()))?;
        let path = dir.join(seccs_core::hexenc::encode(&id));
        std::fs::File::create(&path)?.sync_all()?;
        Ok(Some(JournalEntry(path)))
    }

    pub(crate) fn journal_end(&self, entry: JournalEntry) -> Result<()> {
        self.backend.flush()?;
        std::fs::remove_file(entry.0)?;
        Ok(())
    }

    /// Whether a put was interrupted (its journal entry is left).
    pub fn needs_recovery(&self) -> Result<bool> {
        match &self.journal_dir {
            Some(dir) if dir.exists() => Ok(std::fs::read_dir(dir)?.next().is_some()),
            _ => Ok(false),
        }
    }

    /// Removes the nodes an interrupted put left without a parent (count
    /// zero), releasing their children, then clears the journal. Returns the
    /// number of entries removed. Run only while no other writer is active.
    pub fn recover(&self) -> Result<u64> {
        let _guard = self.lock_writer();
        let mut zero = Vec::new();
        self.backend.for_each(&mut |key, entry| {
            if entry.count == 0 && key.len() == self.wrapper.digest_len() {
                zero.push((key.to_vec(), entry.value.clone()));
            }
            Ok(())
        })?;
        let mut removed = 0;
        for (digest, value) in zero {
            // A parentless node's height is unknown: try each until one
            // authenticates (heights are few).
            let mut batch = Batch::new();
            batch.delete(digest.clone());
            batch.barrier();
            if let Some((height, children)) = self.identify(&digest, &value) {
                if height > 0 {
                    self.release(children, height - 1, false, &mut batch)?;
                }
            }
            removed += batch.len() as u64;
            self.backend.apply(&batch)?;
        }
        if let Some(dir) = &self.journal_dir
            && dir.exists()
        {
            for entry in std::fs::read_dir(dir)? {
                std::fs::remove_file(entry?.path())?;
            }
        }
        Ok(removed)
    }

    /// Finds the height at which a node authenticates; returns its children.
    fn identify(&self, digest: &[u8], value: &[u8]) -> Option<(u8, Vec<(Vec<u8>, u64)>)> {
        for height in 0..=64u8 {
            let ctx = NodeContext {
                height,
                is_root: false,
            };
            if let Ok(pt) = self.wrapper.open(ctx, digest, value) {
                if height == 0 {
                    return Some((0, Vec::new()));
                }
                let body = pt.get(1..)?;
                let entry = self.wrapper.digest_len() + 8;
                let children = body
                    .chunks_exact(entry)
                    .map(|c| {
                        let mut len = [0u8; 8];
                        len.copy_from_slice(&c[entry - 8..]);
                        (c[..entry - 8].to_vec(), u64::from_be_bytes(len))
                    })
                    .collect();
                return Some((height, children));
            }
        }
        None
    }
}

#[derive(Default)]
struct LeafWindow {
    /// (digest, leaf length, from, to)
    leaves: Vec<(Vec<u8>, u64, u64, u64)>,
    bytes: u64,
}

fn missing(digest: &[u8]) -> StoreError {
    StoreError::integrity(format!(
        "node {} is missing from the store",
        seccs_core::hexenc::encode(digest)
    ))
}
