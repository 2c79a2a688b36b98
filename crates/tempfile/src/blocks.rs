//! The block engine under every file handle: a window of cached plaintext
//! blocks over the sealed slots on disk.
//!
//! Reads and writes touch only the blocks they cover. The window holds up to
//! [`WINDOW_BYTES`] of consecutive blocks: a write fills it and it is sealed
//! and written back when the handle moves on, is flushed or is synced; a read
//! that continues the previous one loads a whole window (read-ahead), a read
//! elsewhere loads only the blocks it covers. A write that covers every live
//! byte of a block never reads the old block.
//!
//! Large requests skip the window: a read of whole blocks opens them straight
//! into the caller's buffer (when the window holds nothing newer than the
//! disk), and a write of at least [`LONG_RUN_BLOCKS`] whole blocks is sealed
//! straight from it. Long runs overlap the kernel's copies with the
//! cryptography through the file's [`Background`] thread: a sealed run is
//! written behind the caller's back while it seals the next, and a
//! sequential reader's next run is read ahead while it opens the current one.
//! A long read that does not continue the previous one is read and opened
//! in parts on all cores. `seccs bench tempfile` measured sequential
//! write/read at 0.40–0.45× / 0.46–0.53× of plain `tempfile` with parts
//! sealed on a thread pool and written in order by the caller, and
//! 0.47× / 0.36× sealing or opening and copying on one thread; with the
//! background thread, 0.59–0.68× / 0.57–0.59×.
//!
//! A write-behind that fails leaves the disk behind the versions this handle
//! recorded; the failure is reported by the next call that touches the file
//! and by every call after it, as `BufWriter` reports a failed flush, so no
//! later read can return what the disk lacks.
//!
//! Invariant: every plaintext byte at or past the logical length is zero, so a
//! file grown by `set_len` or a write past the end reads back zeros.

use std::fs::File;
use std::io;
use std::sync::Arc;

use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::background::{Background, Done, Job};
use crate::format::{
    BLOCK_OVERHEAD, BlockCipher, FileId, Footer, MAX_FILE_SIZE, MAX_PERSISTED_SLOTS, MAX_SEALS,
    NONCE_LEN, NoncePool,
};
use crate::positional::{read_full_at, write_all_at};
use crate::versions::Versions;
use crate::{Error, FileKey};

/// Bytes of plaintext the cache window holds (at least one block). 1 MiB:
/// `seccs bench tempfile` measured sequential write/read at 0.37×/0.23× of
/// plain `tempfile` with 256 KiB windows, 0.47×/0.29× with 1 MiB and no
/// better with 4 MiB (which halved random I/O); a window sealed or opened on
/// both cores needs enough blocks to pay for waking the second one.
pub(crate) const WINDOW_BYTES: usize = 1 << 20;
/// Runs of at least this many blocks are long: written behind, read ahead,
/// or opened on all cores (rayon's pool). Shorter runs, such as random
/// 4 KiB I/O, stay on the calling thread.
const LONG_RUN_BLOCKS: usize = 8;
/// Plaintext bytes a sequential reader reads ahead (at least what it asked
/// for last): several calls' worth, so that the caller and the background
/// thread hand work to each other once per several calls. `seccs bench
/// tempfile` (1 MiB reads) measured sequential read at 0.49–0.52× of plain
/// `tempfile` reading ahead one call, 0.55–0.58× with 4 MiB and 0.57–0.59×
/// with 2 MiB (two buffers of this size while a file is read in order).
const READ_AHEAD_BYTES: usize = 2 << 20;
/// Plaintext bytes per part of a long read that is opened on all cores:
/// each part is read and opened as one task, so that the parts' system calls
/// overlap the other parts' cryptography.
const PART_BYTES: usize = 256 << 10;

/// Blocks per part (see [`PART_BYTES`]).
fn part_blocks(block_size: usize) -> usize {
    (PART_BYTES / block_size).max(1)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Not in memory.
    Absent,
    /// In memory, same as on disk.
    Clean,
    /// In memory, newer than on disk.
    Dirty,
}

/// The job the background thread has, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inflight {
    Idle,
    /// A sealed run being written.
    Write,
    /// The slots of blocks ahead of a sequential reader being read.
    ReadAhead(Span),
}

/// Slots read for the blocks `block..block + count`: `slots` of them are on
/// disk, and `probe` bytes past them were asked for (see `slots_to_read`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Span {
    block: u64,
    count: usize,
    slots: usize,
    probe: usize,
}

/// A finished read-ahead: the blocks of `span` not opened yet, whose slots
/// start at byte `skip` of `buf`, and how many bytes of `buf` the read
/// filled.
struct Ahead {
    span: Span,
    buf: Vec<u8>,
    skip: usize,
    got: usize,
}

pub(crate) struct BlockFile {
    /// Shared with the background thread.
    file: Arc<File>,
    /// Long runs' I/O; its thread runs only while there is work.
    background: Background,
    inflight: Inflight,
    /// A finished read-ahead not yet opened to its end.
    ahead: Option<Ahead>,
    /// Slot buffers not in use, kept for the next long runs: one is filled
    /// here while the background thread has the other.
    spares: Vec<Vec<u8>>,
    /// A write-behind that failed: every later call reports it.
    failed: Option<(io::ErrorKind, String)>,
    key: FileKey,
    cipher: BlockCipher,
    block_size: usize,
    slot_size: usize,
    /// Version of every slot on disk; 0 is a hole. Its `slots()` is the
    /// number of slots the file on disk must have. Sparse: a hole costs no
    /// memory.
    versions: Versions,
    /// The last version handed out (used up whether or not its write
    /// succeeded).
    counter: u64,
    len: u64,
    read_only: bool,
    /// Bytes after the block region: the footer of a persisted file.
    trailer: u64,
    nonces: NoncePool,
    win_start: u64,
    win: Zeroizing<Vec<u8>>,
    state: Vec<Slot>,
    /// Slots read from disk before they are opened: grown to the longest
    /// run read so far (see [`staging_len`]), so a file that never reads
    /// a long run never holds a window's worth.
    staging: Vec<u8>,
    /// The block a sequential reader would ask for next.
    next_seq: u64,
}

impl BlockFile {
    /// An empty file over `file`, which must be empty.
    pub(crate) fn new(file: File, key: FileKey, block_size: usize) -> Result<Self, Error> {
        let mut file_id: FileId = [0; 16];
        getrandom::fill(&mut file_id)?;
        Self::from_parts(
            file,
            key,
            block_size,
            file_id,
            Versions::default(),
            0,
            false,
        )
    }

    /// A read-only handle on a persisted file whose footer was opened.
    pub(crate) fn from_footer(
        file: File,
        key: FileKey,
        footer: Footer,
        footer_len: u64,
    ) -> Result<Self, Error> {
        let block_size = 1usize << footer.block_log2;
        let mut this = Self::from_parts(
            file,
            key,
            block_size,
            footer.file_id,
            Versions::from_dense(&footer.versions),
            footer.len,
            true,
        )?;
        this.trailer = footer_len;
        Ok(this)
    }

    fn from_parts(
        file: File,
        key: FileKey,
        block_size: usize,
        file_id: FileId,
        versions: Versions,
        len: u64,
        read_only: bool,
    ) -> Result<Self, Error> {
        crate::format::check_block_size(block_size)?;
        let cipher = BlockCipher::new(&key, file_id)?;
        let blocks = (WINDOW_BYTES / block_size).max(1);
        let slot_size = block_size + BLOCK_OVERHEAD;
        let counter = versions.max();
        let file = Arc::new(file);
        Ok(Self {
            background: Background::new(Arc::clone(&file)),
            file,
            inflight: Inflight::Idle,
            ahead: None,
            spares: Vec::new(),
            failed: None,
            key,
            cipher,
            block_size,
            slot_size,
            versions,
            counter,
            len,
            read_only,
            trailer: 0,
            nonces: NoncePool::new(),
            win_start: 0,
            win: Zeroizing::new(vec![0; blocks * block_size]),
            state: vec![Slot::Absent; blocks],
            staging: Vec::new(),
            next_seq: 0,
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn block_size(&self) -> usize {
        self.block_size
    }

    pub(crate) fn key(&self) -> &FileKey {
        &self.key
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    fn window_blocks(&self) -> u64 {
        self.state.len() as u64
    }

    fn version(&self, block: u64) -> u64 {
        self.versions.get(block)
    }

    /// Moves the window so that it holds `block`, writing back what it held
    /// if it must move; returns the block's index in the window.
    fn window_index(&mut self, block: u64) -> Result<usize, Error> {
        if block < self.win_start || block - self.win_start >= self.window_blocks() {
            self.write_back()?;
            self.state.fill(Slot::Absent);
            self.win_start = block;
        }
        Ok((block - self.win_start) as usize)
    }

    /// Loads `count` blocks from `block` into the window, in which they must
    /// all be absent.
    fn load(&mut self, block: u64, count: u64) -> Result<(), Error> {
        self.settle()?;
        let bs = self.block_size;
        let first = (block - self.win_start) as usize;
        self.grow_staging(count as usize);
        let out = &mut self.win[first * bs..(first + count as usize) * bs];
        open_run(
            &self.file,
            &self.cipher,
            &self.versions,
            self.trailer,
            self.slot_size,
            &mut self.staging,
            block,
            out,
        )?;
        self.state[first..first + count as usize].fill(Slot::Clean);
        Ok(())
    }

    /// Seals the window's dirty blocks and writes each run of them back.
    fn write_back(&mut self) -> Result<(), Error> {
        let bs = self.block_size;
        let mut i = 0;
        while i < self.state.len() {
            if self.state[i] != Slot::Dirty {
                i += 1;
                continue;
            }
            let mut end = i;
            while end < self.state.len() && self.state[end] == Slot::Dirty {
                end += 1;
            }
            let first = self.win_start + i as u64;
            let count = end - i;
            let (counter, nonces) = self.next_versions(count)?;
            let mut slots = self.slot_buffer(count * self.slot_size);
            seal_run(
                &self.cipher,
                &nonces,
                counter,
                first,
                &self.win[i * bs..end * bs],
                &mut slots,
            );
            self.write_slots(first, slots)?;
            self.record_versions(first, counter, count);
            self.state[i..end].fill(Slot::Clean);
            i = end;
        }
        Ok(())
    }

    /// Drops the window's plaintext of blocks `block..block + count`.
    fn forget(&mut self, block: u64, count: u64) {
        let (start, end) = (self.win_start, self.win_start + self.window_blocks());
        for b in block.max(start)..(block + count).min(end) {
            self.state[(b - start) as usize] = Slot::Absent;
        }
    }

    /// The version before the next `count` seals, and a fresh nonce for each.
    ///
    /// The versions are used up here, not when the write succeeds: a write
    /// that fails part way may leave slots sealed with them on disk, and a
    /// later seal of the same block at the same version would let such a
    /// slot be put back in its place and read as valid.
    fn next_versions(&mut self, count: usize) -> Result<(u64, Vec<[u8; NONCE_LEN]>), Error> {
        if self.counter + count as u64 > MAX_SEALS {
            return Err(Error::TooManyWrites);
        }
        let nonces = self.nonces.take(count)?;
        let base = self.counter;
        self.counter += count as u64;
        Ok((base, nonces))
    }

    /// Records that blocks `first..first + count` were sealed with the
    /// versions after `base` that [`BlockFile::next_versions`] handed out.
    fn record_versions(&mut self, first: u64, base: u64, count: usize) {
        for k in 0..count as u64 {
            self.versions.set(first + k, base + 1 + k);
        }
    }

    /// Makes `staging` long enough to read `count` blocks through.
    fn grow_staging(&mut self, count: usize) {
        let len = staging_len(self.slot_size, count);
        if self.staging.len() < len {
            self.staging.resize(len, 0);
        }
    }

    /// A buffer of `len` bytes for slots, reused when one is spare.
    fn slot_buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self.spares.pop().unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// Keeps `buf` for a later [`BlockFile::slot_buffer`].
    fn keep_buffer(&mut self, buf: Vec<u8>) {
        if self.spares.len() < 2 && buf.capacity() > 0 {
            self.spares.push(buf);
        }
    }

    /// Marks the file failed with `e`, so that every later call reports it:
    /// for a call that failed after it had changed the window or the disk,
    /// whose state no longer matches the length this handle keeps.
    fn fail(&mut self, e: &Error) {
        if self.failed.is_none() {
            let kind = match e {
                Error::Io(e) => e.kind(),
                Error::Tampered { .. } => io::ErrorKind::InvalidData,
                _ => io::ErrorKind::Other,
            };
            self.failed = Some((kind, e.to_string()));
        }
    }

    /// The failure of an earlier write-behind, if one failed.
    fn check(&self) -> Result<(), Error> {
        match &self.failed {
            None => Ok(()),
            Some((kind, message)) => Err(Error::Io(io::Error::new(
                *kind,
                format!("an earlier write to the file failed: {message}"),
            ))),
        }
    }

    /// Waits for the background job, if one is out: a write's failure is
    /// kept and reported, a read-ahead is dropped. Afterwards the disk holds
    /// everything submitted and the thread is idle.
    fn settle(&mut self) -> Result<(), Error> {
        if let Some(ahead) = self.ahead.take() {
            self.keep_buffer(ahead.buf);
        }
        if let Some(done) = self.background.wait() {
            let job = std::mem::replace(&mut self.inflight, Inflight::Idle);
            let Done { buf, result } = done;
            self.keep_buffer(buf);
            if let (Inflight::Write, Err(e)) = (job, result) {
                self.failed = Some((e.kind(), e.to_string()));
            }
        }
        self.check()
    }

    /// Writes sealed `slots` from block `first`: a long run behind the
    /// caller's back, once the previous one is on disk; a short one here.
    fn write_slots(&mut self, first: u64, slots: Vec<u8>) -> Result<(), Error> {
        let offset = slot_offset(first, self.slot_size)?;
        let long = slots.len() >= LONG_RUN_BLOCKS * self.slot_size;
        self.settle()?;
        let slots = if long {
            match self.background.submit(Job::Write { buf: slots, offset }) {
                Ok(()) => {
                    self.inflight = Inflight::Write;
                    return Ok(());
                }
                // No thread could be started: the work stays here.
                Err(Job::Write { buf, .. } | Job::Read { buf, .. }) => buf,
            }
        } else {
            slots
        };
        write_all_at(&self.file, &slots, offset)?;
        self.keep_buffer(slots);
        Ok(())
    }

    /// Opens the `out.len() / block_size` blocks from `block` into `out`,
    /// from the read-ahead if it holds them, and keeps a long sequential
    /// reader's next blocks read ahead.
    fn read_run(&mut self, block: u64, out: &mut [u8]) -> Result<(), Error> {
        let count = out.len() / self.block_size;
        if self.ahead.as_ref().is_none_or(|a| a.span.block != block) {
            self.take_read_ahead(block)?;
        }
        let Some(ahead) = self.ahead.take() else {
            return self.read_here(block, out);
        };
        let (slots, probe) = slots_to_read(&self.versions, self.trailer, block, count);
        let len = slots * self.slot_size + probe;
        let ins = match ahead.buf.get(ahead.skip..ahead.skip + len) {
            Some(ins) if count <= ahead.span.count => ins,
            _ => {
                // More than was read ahead: read it all here.
                self.keep_buffer(ahead.buf);
                return self.read_here(block, out);
            }
        };
        let got = ahead.got.saturating_sub(ahead.skip).min(len);
        let result = open_slots(
            &self.file,
            &self.cipher,
            &self.versions,
            self.trailer,
            self.slot_size,
            block,
            ins,
            got,
            out,
        );
        // Keep the rest for the next call.
        let rest = ahead.span.count - count;
        if rest > 0 && result.is_ok() {
            let next = block + count as u64;
            let (slots, probe) = slots_to_read(&self.versions, self.trailer, next, rest);
            self.ahead = Some(Ahead {
                span: Span {
                    block: next,
                    count: rest,
                    slots,
                    probe,
                },
                skip: ahead.skip + count * self.slot_size,
                ..ahead
            });
        } else {
            self.keep_buffer(ahead.buf);
        }
        result
    }

    /// Reads and opens `out` here (nothing read ahead serves it), then
    /// reads ahead after it.
    fn read_here(&mut self, block: u64, out: &mut [u8]) -> Result<(), Error> {
        let count = out.len() / self.block_size;
        self.settle()?;
        self.grow_staging(count);
        open_run(
            &self.file,
            &self.cipher,
            &self.versions,
            self.trailer,
            self.slot_size,
            &mut self.staging,
            block,
            out,
        )?;
        if count >= LONG_RUN_BLOCKS {
            self.read_ahead(block + count as u64, count);
        }
        Ok(())
    }

    /// Makes the read-ahead that starts at `block`, if one is out, the
    /// finished one (and starts reading the blocks after it); drops any
    /// other. A write that is out is waited for.
    fn take_read_ahead(&mut self, block: u64) -> Result<(), Error> {
        let span = match self.inflight {
            Inflight::ReadAhead(span)
                if span.block == block
                    && (span.slots, span.probe)
                        == slots_to_read(&self.versions, self.trailer, block, span.count) =>
            {
                span
            }
            // A write in flight must reach the disk first; a read-ahead of
            // other blocks is dropped.
            _ => return self.settle(),
        };
        if let Some(ahead) = self.ahead.take() {
            self.keep_buffer(ahead.buf);
        }
        self.inflight = Inflight::Idle;
        match self.background.wait() {
            Some(Done {
                buf,
                result: Ok(got),
            }) => {
                self.ahead = Some(Ahead {
                    span,
                    buf,
                    skip: 0,
                    got,
                });
                // The thread reads the next blocks while these are opened.
                self.read_ahead(block + span.count as u64, span.count);
            }
            // The read failed: the caller reads here, and reports it if it
            // fails again.
            Some(Done { buf, .. }) => self.keep_buffer(buf),
            None => {}
        }
        Ok(())
    }

    /// Starts reading the slots of the blocks from `block` on the
    /// background thread (at least `count` of them, and at least
    /// [`READ_AHEAD_BYTES`]), if any of them are on disk.
    fn read_ahead(&mut self, block: u64, count: usize) {
        let count = count.max(READ_AHEAD_BYTES / self.block_size);
        let (slots, probe) = slots_to_read(&self.versions, self.trailer, block, count);
        if slots == 0 {
            return;
        }
        let buf = self.slot_buffer(slots * self.slot_size + probe);
        let offset = block * self.slot_size as u64;
        match self.background.submit(Job::Read { buf, offset }) {
            Ok(()) => {
                self.inflight = Inflight::ReadAhead(Span {
                    block,
                    count,
                    slots,
                    probe,
                });
            }
            // No thread could be started: the reader reads here.
            Err(Job::Read { buf, .. } | Job::Write { buf, .. }) => self.keep_buffer(buf),
        }
    }

    /// Reads from plaintext offset `pos`; returns the bytes read (0 at the end).
    pub(crate) fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> Result<usize, Error> {
        self.check()?;
        if pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let bs = self.block_size as u64;
        let n = (buf.len() as u64).min(self.len - pos) as usize;
        let end = pos + n as u64;
        let blocks_in_file = self.len.div_ceil(bs);
        let mut done = 0;
        while done < n {
            let at = pos + done as u64;
            let block = at / bs;
            let off = (at % bs) as usize;
            let take = (self.block_size - off).min(n - done);
            // Whole blocks open straight into the caller's buffer (one copy
            // fewer), unless the window holds newer plaintext than the disk.
            let whole = if off == 0 {
                (n - done) / self.block_size
            } else {
                0
            };
            if whole > 0 && !self.state.contains(&Slot::Dirty) {
                let blocks = whole.min(self.state.len());
                let bytes = blocks * self.block_size;
                self.read_run(block, &mut buf[done..done + bytes])?;
                done += bytes;
                continue;
            }
            let i = self.window_index(block)?;
            if self.state[i] == Slot::Absent {
                let wanted = if block == self.next_seq {
                    self.window_blocks()
                } else {
                    (end - 1) / bs - block + 1
                };
                let mut count = wanted
                    .min(self.window_blocks() - i as u64)
                    .min(blocks_in_file - block);
                let absent_run = self.state[i..]
                    .iter()
                    .take_while(|s| **s == Slot::Absent)
                    .count() as u64;
                count = count.min(absent_run).max(1);
                self.load(block, count)?;
            }
            let from = i * self.block_size + off;
            buf[done..done + take].copy_from_slice(&self.win[from..from + take]);
            done += take;
        }
        self.next_seq = end.div_ceil(bs);
        Ok(n)
    }

    /// Writes all of `buf` at plaintext offset `pos`, growing the file.
    ///
    /// A call that fails before it changed anything leaves the file as it
    /// was; one that fails after it copied part of `buf` into the window or
    /// onto the disk marks the file failed (every later call reports it),
    /// because those bytes may lie past the length it keeps and would
    /// otherwise read back where zeros belong.
    pub(crate) fn write_at(&mut self, pos: u64, buf: &[u8]) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.check()?;
        if buf.is_empty() {
            return Ok(());
        }
        let end = check_size(pos.saturating_add(buf.len() as u64))?;
        self.extend_disk(end.div_ceil(self.block_size as u64))?;
        let mut changed = false;
        match self.write_blocks(pos, buf, &mut changed) {
            Ok(()) => {
                self.len = self.len.max(end);
                Ok(())
            }
            Err(e) => {
                if changed {
                    self.fail(&e);
                }
                Err(e)
            }
        }
    }

    /// Makes the file on disk at least `slots` slots long before a write
    /// reaches them, so that a file too large for the file system (or for
    /// `RLIMIT_FSIZE`) fails the write itself, before anything changed (it
    /// reserves no space: a full disk still fails a later write-back): the write once filled only the
    /// window, returned `Ok`, and the file system's refusal came from a later
    /// write-back, in whatever unrelated call moved the window. The new
    /// slots are holes (version 0) until written, so the disk always holds
    /// exactly the slots [`Versions`] counts, and a write-back that fails
    /// part way leaves no bytes past them.
    fn extend_disk(&mut self, slots: u64) -> Result<(), Error> {
        if slots <= self.versions.slots() {
            return Ok(());
        }
        let end = slot_offset(slots, self.slot_size)?;
        // A file already that long (a write-back in flight may have made
        // it so) needs no truncate.
        if self.file.metadata()?.len() < end {
            self.file.set_len(end)?;
        }
        self.versions.extend(slots);
        Ok(())
    }

    /// The body of [`BlockFile::write_at`]; sets `changed` before its first
    /// change to the window or the disk.
    fn write_blocks(&mut self, pos: u64, buf: &[u8], changed: &mut bool) -> Result<(), Error> {
        let bs = self.block_size as u64;
        let mut done = 0;
        while done < buf.len() {
            let at = pos + done as u64;
            let block = at / bs;
            let off = (at % bs) as usize;
            let take = (self.block_size - off).min(buf.len() - done);
            // A long run of whole blocks is sealed straight from the
            // caller's buffer (one copy fewer); the window forgets any older
            // plaintext of those blocks.
            let whole = if off == 0 {
                (buf.len() - done) / self.block_size
            } else {
                0
            };
            if whole >= LONG_RUN_BLOCKS {
                let blocks = whole.min(self.state.len());
                let bytes = blocks * self.block_size;
                let (counter, nonces) = self.next_versions(blocks)?;
                *changed = true;
                self.forget(block, blocks as u64);
                let mut slots = self.slot_buffer(blocks * self.slot_size);
                seal_run(
                    &self.cipher,
                    &nonces,
                    counter,
                    block,
                    &buf[done..done + bytes],
                    &mut slots,
                );
                self.write_slots(block, slots)?;
                self.record_versions(block, counter, blocks);
                done += bytes;
                continue;
            }
            let i = self.window_index(block)?;
            if self.state[i] == Slot::Absent {
                let live = self.len.saturating_sub(block * bs).min(bs) as usize;
                let covers_live = off == 0 && take >= live;
                if self.version(block) != 0 && live > 0 && !covers_live {
                    self.load(block, 1)?;
                } else if take < self.block_size {
                    self.win[i * self.block_size..(i + 1) * self.block_size].fill(0);
                }
            }
            *changed = true;
            let from = i * self.block_size + off;
            self.win[from..from + take].copy_from_slice(&buf[done..done + take]);
            self.state[i] = Slot::Dirty;
            done += take;
        }
        Ok(())
    }

    /// Truncates or extends the plaintext to `size` bytes.
    ///
    /// Everything that can fail (loading the block the cut falls in,
    /// writing back, truncating the file on disk) comes before the first
    /// change, so a failed call leaves the file as it was.
    pub(crate) fn set_len(&mut self, size: u64) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        check_size(size)?;
        self.settle()?;
        if size >= self.len {
            self.len = size;
            return Ok(());
        }
        let bs = self.block_size as u64;
        let blocks = size.div_ceil(bs);
        let cut = (size % bs) as usize;
        let cut_at = if cut != 0 {
            let block = size / bs;
            let i = self.window_index(block)?;
            if self.state[i] == Slot::Absent {
                self.load(block, 1)?;
            }
            Some(i)
        } else {
            None
        };
        let slots = self.versions.slots().min(blocks);
        self.settle()?;
        self.file.set_len(slot_offset(slots, self.slot_size)?)?;
        // Nothing fails from here on.
        if let Some(i) = cut_at {
            self.win[i * self.block_size + cut..(i + 1) * self.block_size].fill(0);
            // A cut past the slots on disk falls in zeros, and writing that
            // block back would grow the file past what `extend_disk` made.
            if self.win_start + (i as u64) < slots {
                self.state[i] = Slot::Dirty;
            }
        }
        for (i, s) in self.state.iter_mut().enumerate() {
            if self.win_start + i as u64 >= blocks {
                *s = Slot::Absent;
            }
        }
        self.versions.truncate(slots);
        self.len = size;
        Ok(())
    }

    /// Writes back the window and forgets its plaintext, so the next read
    /// comes from disk and is authenticated again.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        self.check()?;
        self.write_back()?;
        self.settle()?;
        self.state.fill(Slot::Absent);
        Ok(())
    }

    pub(crate) fn sync_all(&mut self) -> Result<(), Error> {
        self.flush()?;
        self.file.sync_all()?;
        Ok(())
    }

    pub(crate) fn sync_data(&mut self) -> Result<(), Error> {
        self.flush()?;
        self.file.sync_data()?;
        Ok(())
    }

    /// The bytes on disk, after writing back the window.
    pub(crate) fn read_ciphertext(&mut self) -> Result<Vec<u8>, Error> {
        self.flush()?;
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = read_full_at(&self.file, &mut chunk, out.len() as u64)?;
            out.extend_from_slice(&chunk[..n]);
            if n < chunk.len() {
                return Ok(out);
            }
        }
    }

    /// Writes back the window and appends the footer; returns the length of
    /// the block region, where the footer starts.
    pub(crate) fn append_footer(&mut self) -> Result<u64, Error> {
        self.flush()?;
        // The footer lists every slot, holes included: bounded before it is
        // built, as the reader bounds it before it reads it.
        let slots = self.versions.slots();
        if slots > MAX_PERSISTED_SLOTS {
            return Err(Error::PersistTooLarge {
                slots,
                max: MAX_PERSISTED_SLOTS,
            });
        }
        let footer = Footer {
            block_log2: self.block_size.trailing_zeros() as u8,
            file_id: *self.cipher.file_id(),
            len: self.len,
            versions: self.versions.to_dense(),
        };
        let nonce = self.nonces.take(1)?;
        let nonce = nonce.first().ok_or(Error::Random("no nonce".into()))?;
        let bytes = footer.seal(&self.key, nonce)?;
        let at = slot_offset(slots, self.slot_size)?;
        self.file.set_len(at)?;
        let written = write_all_at(&self.file, &bytes, at).and_then(|()| self.file.sync_all());
        if let Err(e) = written {
            // The file is handed back still temporary: a partial footer left
            // after the last slot would make its reads report tampering.
            if let Err(t) = self.file.set_len(at) {
                let t = Error::from(t);
                self.fail(&t);
                return Err(t);
            }
            return Err(e.into());
        }
        Ok(at)
    }
}

/// `size` if a file may reach it (at most [`MAX_FILE_SIZE`] bytes), else
/// [`Error::FileTooLarge`].
fn check_size(size: u64) -> Result<u64, Error> {
    if size > MAX_FILE_SIZE {
        return Err(Error::FileTooLarge {
            wanted: size,
            max: MAX_FILE_SIZE,
        });
    }
    Ok(size)
}

/// The disk offset of slot `block`, checked: [`MAX_FILE_SIZE`] keeps every
/// slot a file can reach far below the overflow.
fn slot_offset(block: u64, slot_size: usize) -> Result<u64, Error> {
    block
        .checked_mul(slot_size as u64)
        .filter(|offset| *offset <= i64::MAX as u64)
        .ok_or(Error::FileTooLarge {
            wanted: u64::MAX,
            max: MAX_FILE_SIZE,
        })
}

/// Seals `plains` as the blocks from `first` (versions `counter + 1`..,
/// one nonce each) into `slots`.
fn seal_run(
    cipher: &BlockCipher,
    nonces: &[[u8; NONCE_LEN]],
    counter: u64,
    first: u64,
    plains: &[u8],
    slots: &mut [u8],
) {
    let bs = plains.len() / nonces.len().max(1);
    let slot_size = bs + BLOCK_OVERHEAD;
    for (k, (plain, slot)) in plains
        .chunks(bs)
        .zip(slots.chunks_mut(slot_size))
        .enumerate()
    {
        let version = counter + 1 + k as u64;
        cipher.seal_block(first + k as u64, version, &nonces[k], plain, slot);
    }
}

/// How many of the `count` blocks from `block` have slots on disk, and
/// whether reading them asks for one byte more: reading the last slot of a
/// live file does, and if that byte comes, bytes were appended. A persisted
/// file (`trailer > 0`) has its footer there, so its length is checked
/// instead (in [`open_slots`]).
fn slots_to_read(versions: &Versions, trailer: u64, block: u64, count: usize) -> (usize, usize) {
    let on_disk = versions.slots();
    let slots = on_disk.saturating_sub(block).min(count as u64) as usize;
    let probe = usize::from(slots > 0 && block + slots as u64 == on_disk && trailer == 0);
    (slots, probe)
}

/// Opens the `out.len() / block_size` blocks from `block` into `out` from
/// `ins`, their slots as read from disk ([`slots_to_read`] says how many,
/// and `got` says how many bytes the read returned): blocks past the slots
/// on disk, and holes, read as zeros; the first block that fails is the
/// error.
#[allow(clippy::too_many_arguments)]
fn open_slots(
    file: &File,
    cipher: &BlockCipher,
    versions: &Versions,
    trailer: u64,
    slot_size: usize,
    block: u64,
    ins: &[u8],
    got: usize,
    out: &mut [u8],
) -> Result<(), Error> {
    let bs = slot_size - BLOCK_OVERHEAD;
    let on_disk = versions.slots();
    let (slots, probe) = slots_to_read(versions, trailer, block, out.len() / bs);
    let (from_disk, past_end) = out.split_at_mut(slots * bs);
    past_end.fill(0);
    if slots == 0 {
        return Ok(());
    }
    if ins.len() != slots * slot_size + probe {
        return Err(Error::Io(io::Error::other(
            "slot buffer of the wrong length",
        )));
    }
    if block + slots as u64 == on_disk && trailer > 0 {
        let expected = on_disk * slot_size as u64 + trailer;
        if file.metadata()?.len() != expected {
            return Err(Error::Tampered { block: on_disk });
        }
    }
    if probe > 0 && got == ins.len() {
        return Err(Error::Tampered { block: on_disk });
    }
    for (k, (plain, slot)) in from_disk
        .chunks_mut(bs)
        .zip(ins.chunks(slot_size))
        .enumerate()
    {
        let index = block + k as u64;
        let version = versions.get(index);
        if version == 0 {
            plain.fill(0);
            continue;
        }
        if got < (k + 1) * slot_size {
            return Err(Error::Tampered { block: index });
        }
        cipher.open_block(index, version, &slot[..slot_size], plain)?;
    }
    Ok(())
}

/// Bytes of staging [`open_run`] needs for `count` blocks: their slots
/// and a probe byte per part.
fn staging_len(slot_size: usize, count: usize) -> usize {
    let part = part_blocks(slot_size - BLOCK_OVERHEAD);
    if count <= part {
        count * slot_size + 1
    } else {
        count.div_ceil(part) * (part * slot_size + 1)
    }
}

/// Reads and opens the `out.len() / block_size` blocks from `block` into
/// `out` through `staging` (at least [`staging_len`] bytes) (see [`open_slots`]). Long runs are read and
/// opened in parts on all cores, so that one part's read overlaps another's
/// opening.
#[allow(clippy::too_many_arguments)]
fn open_run(
    file: &File,
    cipher: &BlockCipher,
    versions: &Versions,
    trailer: u64,
    slot_size: usize,
    staging: &mut [u8],
    block: u64,
    out: &mut [u8],
) -> Result<(), Error> {
    let bs = slot_size - BLOCK_OVERHEAD;
    let part = part_blocks(bs);
    let count = out.len() / bs;
    // Too short a staging would leave parts of `out` unread.
    if staging.len() < staging_len(slot_size, count) {
        return Err(Error::Io(io::Error::other("staging buffer too short")));
    }
    let (slots, _) = slots_to_read(versions, trailer, block, count);
    let open_part = |p: usize, outs: &mut [u8], ins: &mut [u8]| -> Result<(), Error> {
        let first = block + (p * part) as u64;
        let (slots, probe) = slots_to_read(versions, trailer, first, outs.len() / bs);
        let ins = &mut ins[..slots * slot_size + probe];
        let got = read_full_at(file, ins, first * slot_size as u64)?;
        open_slots(
            file, cipher, versions, trailer, slot_size, first, ins, got, outs,
        )
    };
    let parts = out
        .chunks_mut(part * bs)
        .zip(staging.chunks_mut(part * slot_size + 1));
    if slots >= LONG_RUN_BLOCKS {
        let results: Vec<Result<(), Error>> = parts
            .collect::<Vec<_>>()
            .into_par_iter()
            .enumerate()
            .map(|(p, (outs, ins))| open_part(p, outs, ins))
            .collect();
        results.into_iter().collect()
    } else {
        parts
            .enumerate()
            .try_for_each(|(p, (outs, ins))| open_part(p, outs, ins))
    }
}

/// Reads the footer at the end of a persisted file and checks that the block
/// region before it has exactly the length the footer says.
pub(crate) fn read_footer(file: &File, key: &FileKey) -> Result<(Footer, u64), Error> {
    let size = file.metadata()?.len();
    let mut tail = [0u8; 8];
    if size < 8 || read_full_at(file, &mut tail, size - 8)? != 8 {
        return Err(Error::UnknownFormat);
    }
    let footer_len = Footer::trailing_len(&tail).ok_or(Error::UnknownFormat)?;
    // Untrusted: bounded by what a file of this size can hold before it is
    // allocated.
    if !crate::format::footer_len_fits(size, footer_len) {
        return Err(Error::UnknownFormat);
    }
    let mut bytes = vec![0u8; footer_len as usize];
    let at = size - footer_len;
    if read_full_at(file, &mut bytes, at)? != bytes.len() {
        return Err(Error::UnknownFormat);
    }
    let footer = Footer::open(&bytes, key)?;
    let slot = (1u64 << footer.block_log2) + BLOCK_OVERHEAD as u64;
    if footer.versions.len() as u64 * slot != at {
        return Err(Error::FooterTampered);
    }
    Ok((footer, footer_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeySize;

    const BS: usize = 4096;

    fn block_file() -> Result<BlockFile, Error> {
        BlockFile::new(
            tempfile::tempfile()?,
            FileKey::generate(KeySize::Aes256)?,
            BS,
        )
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    fn read(f: &mut BlockFile, pos: u64, len: usize) -> Result<Vec<u8>, Error> {
        let mut out = vec![0; len];
        let n = f.read_at(pos, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// A sequential reader's next run is read ahead; every change to the
    /// file after that (a small write written back, a long write, a
    /// truncation) must be what the next read returns.
    #[test]
    fn a_read_ahead_never_returns_what_a_later_change_replaced() -> Result<(), Error> {
        let run = 16 * BS;
        let mut f = block_file()?;
        let mut model = pattern(8 * run, 1);
        f.write_at(0, &model)?;
        f.flush()?;

        assert_eq!(read(&mut f, 0, run)?, model[..run]);
        // The run after it is being read ahead; change one byte of it.
        f.write_at(run as u64 + 5, b"x")?;
        model[run + 5] = b'x';
        f.flush()?;
        assert_eq!(read(&mut f, run as u64, run)?, model[run..2 * run]);

        // Replace the next run with a long write while it is read ahead.
        let new = pattern(run, 2);
        f.write_at(2 * run as u64, &new)?;
        model[2 * run..3 * run].copy_from_slice(&new);
        assert_eq!(read(&mut f, 2 * run as u64, run)?, model[2 * run..3 * run]);

        // Cut the file in the middle of the run being read ahead.
        f.set_len(3 * run as u64 + 100)?;
        model.truncate(3 * run + 100);
        assert_eq!(read(&mut f, 3 * run as u64, run)?, model[3 * run..]);

        // A finished read-ahead serves the next call and keeps the rest; a
        // change to the rest is what the call after returns.
        let mut f = block_file()?;
        let mut model = pattern(8 * run, 6);
        f.write_at(0, &model)?;
        f.flush()?;
        assert_eq!(read(&mut f, 0, run)?, model[..run]);
        assert_eq!(read(&mut f, run as u64, run)?, model[run..2 * run]);
        assert!(f.ahead.as_ref().is_some_and(|a| a.span.block == 2 * 16));
        f.write_at(2 * run as u64 + 7, b"y")?;
        model[2 * run + 7] = b'y';
        f.flush()?;
        assert_eq!(read(&mut f, 2 * run as u64, run)?, model[2 * run..3 * run]);
        assert_eq!(read(&mut f, 3 * run as u64, run)?, model[3 * run..4 * run]);
        let new = pattern(run, 7);
        f.write_at(4 * run as u64, &new)?;
        model[4 * run..5 * run].copy_from_slice(&new);
        assert_eq!(read(&mut f, 4 * run as u64, run)?, model[4 * run..5 * run]);

        // Reads that continue one another to the end see everything.
        let mut f = block_file()?;
        let model = pattern(8 * run + 123, 3);
        f.write_at(0, &model)?;
        f.flush()?;
        let mut back = Vec::new();
        loop {
            let chunk = read(&mut f, back.len() as u64, run)?;
            if chunk.is_empty() {
                break;
            }
            back.extend_from_slice(&chunk);
        }
        assert_eq!(back, model);
        Ok(())
    }

    /// Bytes appended to the file on disk are found by a read that comes
    /// from the read-ahead too.
    #[test]
    fn bytes_appended_behind_a_read_ahead_fail_the_read() -> Result<(), Error> {
        let run = 16 * BS;
        let mut f = block_file()?;
        f.write_at(0, &pattern(2 * run, 4))?;
        f.flush()?;
        let end = f.file().metadata()?.len();
        write_all_at(f.file(), b"!", end)?;
        // The first run does not reach the end; the read-ahead of the last
        // run asks for the byte after it.
        read(&mut f, 0, run)?;
        assert!(matches!(
            f.inflight,
            Inflight::ReadAhead(Span { probe: 1, .. })
        ));
        let err = read(&mut f, run as u64, run).err();
        assert!(
            matches!(err, Some(Error::Tampered { .. })),
            "appended bytes went unnoticed: {err:?}"
        );
        Ok(())
    }

    /// A write handed to the background thread that fails (here: the file
    /// is open read-only) is reported by the next call and every call
    /// after it, so the file never serves blocks the disk does not hold.
    #[test]
    fn a_failed_write_behind_is_reported_by_every_later_call() -> Result<(), Error> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        // Long enough already: the write need not grow it (it could not).
        std::fs::write(&path, vec![0; 16 * (BS + BLOCK_OVERHEAD)])?;
        let read_only = File::open(&path)?;
        let mut f = BlockFile::new(read_only, FileKey::generate(KeySize::Aes128)?, BS)?;
        // A long run is written behind: the call itself succeeds.
        f.write_at(0, &pattern(16 * BS, 5))?;
        assert!(f.flush().is_err(), "flush hid the failed write");
        assert!(f.write_at(0, b"more").is_err());
        assert!(read(&mut f, 0, 10).is_err());
        assert!(f.set_len(0).is_err());
        assert!(f.flush().is_err());
        Ok(())
    }

    /// A 1-byte write far past the end makes a hole that costs no memory:
    /// the versions of unwritten blocks take none (it took 8 bytes a block).
    #[test]
    fn a_hole_costs_no_memory_for_its_blocks() -> Result<(), Error> {
        let mut f = block_file()?;
        f.write_at(0, b"start")?;
        let far = 1u64 << 34;
        f.write_at(far, b"x")?;
        f.flush()?;
        assert!(
            f.versions.heap_bytes() <= 8 << 10,
            "{} bytes of versions for two blocks",
            f.versions.heap_bytes()
        );
        assert_eq!(f.len(), far + 1);
        assert_eq!(read(&mut f, far, 10)?, b"x");
        assert_eq!(read(&mut f, 0, 5)?, b"start");
        assert_eq!(read(&mut f, far / 2, 3 * BS)?, vec![0; 3 * BS]);
        Ok(())
    }

    /// A write that fails after it copied its first blocks into the window
    /// (here the window moves and writing it back fails) must not leave
    /// those bytes past the length, where a later write that grows the file
    /// would expose them instead of zeros: the file is marked failed.
    #[test]
    fn a_write_that_fails_part_way_never_exposes_its_bytes() -> Result<(), Error> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        let window = (WINDOW_BYTES / BS) as u64;
        // Long enough already for every write here: none need grow it (it
        // could not).
        std::fs::write(
            &path,
            vec![0; (window as usize + 2) * (BS + BLOCK_OVERHEAD)],
        )?;
        let mut f = BlockFile::new(File::open(&path)?, FileKey::generate(KeySize::Aes256)?, BS)?;
        f.write_at(0, b"A")?;
        let end = (window - 2) * BS as u64 + 100;
        f.set_len(end)?;
        // Blocks window-2 and window-1 go into the window; the next one
        // moves it, and the write-back fails (the file is read-only).
        let err = f.write_at(end - 50, &vec![0xee; 3 * BS]);
        assert!(err.is_err(), "the write-back cannot succeed");
        assert_eq!(f.len(), end);
        // Growing the file by one byte further on must not bring them back.
        match f.write_at(end + 2900, b"Z") {
            Ok(()) => assert_eq!(read(&mut f, end, 2900)?, vec![0; 2900]),
            Err(_) => assert!(read(&mut f, end - 100, 10).is_err(), "not marked failed"),
        }
        assert!(f.check().is_err(), "the file was not marked failed");
        Ok(())
    }

    /// A write that fails before it changed anything (its first block
    /// moves the window, and writing the window back fails) leaves the file
    /// as it was, and usable.
    #[test]
    fn a_write_that_fails_before_any_change_leaves_the_file_as_it_was() -> Result<(), Error> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0; BS + BLOCK_OVERHEAD])?;
        let mut f = BlockFile::new(File::open(&path)?, FileKey::generate(KeySize::Aes256)?, BS)?;
        f.write_at(0, b"kept")?;
        let far = 10 * f.window_blocks() * BS as u64;
        assert!(f.write_at(far, b"lost").is_err());
        assert_eq!(f.len(), 4);
        assert_eq!(read(&mut f, 0, 10)?, b"kept");
        f.write_at(4, b"!")?;
        assert_eq!(read(&mut f, 0, 10)?, b"kept!");
        Ok(())
    }

    /// A `set_len` that fails (the block the cut falls in does not
    /// authenticate) keeps the length and every byte, including blocks past
    /// the cut whose newest bytes are only in the window.
    #[test]
    fn a_failed_set_len_loses_no_written_data() -> Result<(), Error> {
        let mut f = block_file()?;
        f.write_at(0, &pattern(4 * BS, 1))?;
        f.flush()?;
        let newer = pattern(BS, 2);
        f.write_at(2 * BS as u64, &newer)?;
        // Break block 1 on disk.
        let slot = (BS + BLOCK_OVERHEAD) as u64;
        write_all_at(f.file(), b"garbage", slot + 20)?;
        let err = f.set_len(BS as u64 + 10).err();
        assert!(matches!(err, Some(Error::Tampered { block: 1 })), "{err:?}");
        assert_eq!(f.len(), 4 * BS as u64);
        assert_eq!(read(&mut f, 2 * BS as u64, BS)?, newer);
        f.flush()?;
        assert_eq!(read(&mut f, 2 * BS as u64, BS)?, newer);
        Ok(())
    }

    /// Offsets the format cannot address fail in the call itself, and
    /// change nothing: before, the slot offset wrapped to block 0's slot.
    #[test]
    fn offsets_past_the_largest_file_size_fail_at_once() -> Result<(), Error> {
        let mut f = block_file()?;
        f.write_at(0, &pattern(BS, 3))?;
        f.flush()?;
        let before = f.read_ciphertext()?;
        // The block whose slot offset wraps past 2^64 to a small value.
        let slot = (BS + BLOCK_OVERHEAD) as u128;
        let wraps = (1u128 << 64).div_ceil(slot);
        let pos = u64::try_from(wraps * BS as u128).map_err(|e| Error::Io(io::Error::other(e)))?;
        for at in [pos, MAX_FILE_SIZE, u64::MAX - 1] {
            let err = f.write_at(at, &pattern(BS, 4)).err();
            assert!(
                matches!(err, Some(Error::FileTooLarge { .. })),
                "{at}: {err:?}"
            );
        }
        for size in [u64::MAX, MAX_FILE_SIZE + 1] {
            let err = f.set_len(size).err();
            assert!(
                matches!(err, Some(Error::FileTooLarge { .. })),
                "{size}: {err:?}"
            );
        }
        assert_eq!(f.len(), BS as u64);
        assert_eq!(f.read_ciphertext()?, before);
        assert_eq!(read(&mut f, 0, BS)?, pattern(BS, 3));
        // Up to the limit itself is fine (a hole: nothing on disk).
        f.set_len(MAX_FILE_SIZE)?;
        assert_eq!(read(&mut f, MAX_FILE_SIZE - 3, 10)?, vec![0; 3]);
        assert_eq!(read(&mut f, 0, BS)?, pattern(BS, 3));
        Ok(())
    }
}
