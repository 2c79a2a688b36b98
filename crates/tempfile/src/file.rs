//! [`EphemeralFile`]: the unnamed encrypted temporary file, and its
//! `Read`/`Write`/`Seek` with plaintext semantics.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::blocks::{self, BlockFile};
use crate::{Error, FileKey, KeySize};

/// An encrypted, authenticated temporary file.
///
/// It behaves like the [`File`] that [`tempfile::tempfile`] returns: `Read`,
/// `Write` and `Seek` see the plaintext, seeking past the end and writing
/// leaves a gap that reads back as zeros, and [`set_len`](Self::set_len)
/// truncates or grows. On disk there are only sealed blocks (see
/// [`format`](mod@crate::format)); the key, the logical length and the version of
/// every block live only in this value, and the file is unlinked at creation
/// (Linux: `O_TMPFILE`), so it is gone when this value is dropped.
///
/// A block that does not authenticate when it is read makes the read fail
/// with [`io::ErrorKind::InvalidData`], whose inner error is
/// [`Error::Tampered`]; no byte of it is returned.
pub struct EphemeralFile {
    // Boxed so that handles stay small to move (enums, async tasks).
    inner: Box<BlockFile>,
    pos: u64,
}

impl std::fmt::Debug for EphemeralFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralFile")
            .field("len", &self.inner.len())
            .field("pos", &self.pos)
            .field("block_size", &self.inner.block_size())
            .finish_non_exhaustive()
    }
}

/// Plaintext metadata of an ephemeral file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    len: u64,
}

impl Metadata {
    /// The plaintext length in bytes (the file on disk is longer).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl EphemeralFile {
    /// An empty file over `file` (already unlinked or to be deleted by its
    /// owner), sealed under `key`.
    pub(crate) fn from_std(file: File, key: FileKey, block_size: usize) -> Result<Self, Error> {
        Ok(Self {
            inner: Box::new(BlockFile::new(file, key, block_size)?),
            pos: 0,
        })
    }

    /// An unlinked file in `dir` (the system's temporary directory if `None`).
    pub(crate) fn create(
        dir: Option<&Path>,
        key: FileKey,
        block_size: usize,
    ) -> Result<Self, Error> {
        crate::format::check_block_size(block_size)?;
        let file = match dir {
            Some(dir) => tempfile::tempfile_in(dir)?,
            None => tempfile::tempfile()?,
        };
        Self::from_std(file, key, block_size)
    }

    /// Opens a file that [`NamedEphemeralFile::persist`] wrote, read-only,
    /// with the key `persist` returned.
    ///
    /// The footer (length, file id, block versions) is authenticated under
    /// `key`, so a wrong key fails with [`Error::FooterTampered`], and every
    /// block is checked when it is read, as in a live file. Writes and
    /// [`set_len`](Self::set_len) fail with [`Error::ReadOnly`].
    ///
    /// [`NamedEphemeralFile::persist`]: crate::NamedEphemeralFile::persist
    pub fn open_persisted<P: AsRef<Path>>(path: P, key: &FileKey) -> io::Result<Self> {
        let file = File::open(path)?;
        let (footer, footer_len) = blocks::read_footer(&file, key)?;
        Ok(Self {
            inner: Box::new(BlockFile::from_footer(
                file,
                key.clone(),
                footer,
                footer_len,
            )?),
            pos: 0,
        })
    }

    /// The plaintext length in bytes.
    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }

    /// Plaintext metadata, as [`File::metadata`] would give for the plain file.
    pub fn metadata(&self) -> io::Result<Metadata> {
        Ok(Metadata {
            len: self.inner.len(),
        })
    }

    /// Truncates or extends the plaintext to `size` bytes; grown bytes read as
    /// zeros. The cursor does not move.
    pub fn set_len(&mut self, size: u64) -> io::Result<()> {
        Ok(self.inner.set_len(size)?)
    }

    /// Writes back cached blocks and syncs data and metadata to disk.
    pub fn sync_all(&mut self) -> io::Result<()> {
        Ok(self.inner.sync_all()?)
    }

    /// Writes back cached blocks and syncs the data to disk.
    pub fn sync_data(&mut self) -> io::Result<()> {
        Ok(self.inner.sync_data()?)
    }

    /// The raw bytes on disk, after writing back cached blocks: what a thief
    /// of the disk would see. For inspection and tests.
    pub fn read_ciphertext(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.inner.read_ciphertext()?)
    }

    /// The plaintext block size.
    pub fn block_size(&self) -> usize {
        self.inner.block_size()
    }

    /// The key size, which picks the AEAD suite.
    pub fn key_size(&self) -> KeySize {
        self.inner.key().size()
    }

    pub(crate) fn key(&self) -> &FileKey {
        self.inner.key()
    }

    pub(crate) fn append_footer(&mut self) -> Result<u64, Error> {
        self.inner.append_footer()
    }

    pub(crate) fn truncate_raw(&mut self, len: u64) -> io::Result<()> {
        self.inner.file().set_len(len)
    }
}

impl Read for EphemeralFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for EphemeralFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_at(self.pos, buf)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    /// Writes back cached blocks to disk and drops the cached plaintext, so
    /// the next read is authenticated against the disk again.
    fn flush(&mut self) -> io::Result<()> {
        Ok(self.inner.flush()?)
    }
}

impl Seek for EphemeralFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.inner.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid seek to a negative or overflowing position",
            )
        })?;
        self.pos = target;
        Ok(target)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for EphemeralFile {
    /// The file holding the ciphertext, for inspection (`/proc/self/fd`).
    /// Long writes may still be on their way to it: `flush` first.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.file().as_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for EphemeralFile {
    /// The descriptor of [`AsFd::as_fd`](std::os::fd::AsFd::as_fd).
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.as_fd().as_raw_fd()
    }
}
