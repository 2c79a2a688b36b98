//! [`Builder`]: the options of a new file, as in the `tempfile` crate.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;

use crate::format::{DEFAULT_BLOCK_SIZE, check_block_size};
use crate::{EphemeralFile, FileKey, KeySize, NamedEphemeralFile, SpooledTempFile};

/// Options for a new ephemeral file: name parts (for named files), key and
/// block size.
///
/// ```
/// use std::io::{Read, Seek, SeekFrom, Write};
/// use seccs_tempfile::{Builder, KeySize};
///
/// let mut f = Builder::new()
///     .prefix("upload-")
///     .key_size(KeySize::Aes128)
///     .block_size(16 * 1024)
///     .tempfile()?;
/// f.write_all(b"some bytes")?;
/// f.seek(SeekFrom::Start(5))?;
/// let mut s = String::new();
/// f.read_to_string(&mut s)?;
/// assert_eq!(s, "bytes");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    prefix: OsString,
    suffix: OsString,
    rand_bytes: usize,
    key_size: KeySize,
    key: Option<FileKey>,
    block_size: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            prefix: OsString::from(".tmp"),
            suffix: OsString::new(),
            rand_bytes: 6,
            key_size: KeySize::default(),
            key: None,
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

impl Builder {
    /// Default options: prefix `.tmp`, 6 random name characters, a fresh
    /// AES-256 key per file, 4 KiB blocks.
    pub fn new() -> Self {
        Self::default()
    }

    /// The start of a named file's name.
    pub fn prefix<S: AsRef<OsStr> + ?Sized>(&mut self, prefix: &S) -> &mut Self {
        self.prefix = prefix.as_ref().to_owned();
        self
    }

    /// The end of a named file's name.
    pub fn suffix<S: AsRef<OsStr> + ?Sized>(&mut self, suffix: &S) -> &mut Self {
        self.suffix = suffix.as_ref().to_owned();
        self
    }

    /// How many random characters a named file's name has.
    pub fn rand_bytes(&mut self, rand: usize) -> &mut Self {
        self.rand_bytes = rand;
        self
    }

    /// The size of the fresh random key each file gets: 16, 24 or 32 bytes
    /// (AES-128/192/256-GCM). Ignored if [`key`](Self::key) is set.
    pub fn key_size(&mut self, size: KeySize) -> &mut Self {
        self.key_size = size;
        self
    }

    /// Seal files under this key instead of a fresh random one, so that a
    /// persisted file can be reopened with a key the caller already holds.
    /// Every file still has its own random id, so blocks cannot move from one
    /// file to another; but the limit of 2^32 block writes counts per file,
    /// so don't share one key among very many files.
    pub fn key(&mut self, key: FileKey) -> &mut Self {
        self.key = Some(key);
        self
    }

    /// The plaintext block size: a power of two from 1 KiB to 1 MiB (default
    /// 4 KiB). Checked when a file is made.
    pub fn block_size(&mut self, size: usize) -> &mut Self {
        self.block_size = size;
        self
    }

    pub(crate) fn file_key(&self) -> io::Result<FileKey> {
        match &self.key {
            Some(k) => Ok(k.clone()),
            None => Ok(FileKey::generate(self.key_size)?),
        }
    }

    pub(crate) fn checked_block_size(&self) -> io::Result<usize> {
        check_block_size(self.block_size)?;
        Ok(self.block_size)
    }

    /// A named file in the system's temporary directory, removed on drop.
    pub fn tempfile(&self) -> io::Result<NamedEphemeralFile> {
        self.tempfile_in(std::env::temp_dir())
    }

    /// A named file in `dir`, removed on drop.
    pub fn tempfile_in<P: AsRef<Path>>(&self, dir: P) -> io::Result<NamedEphemeralFile> {
        let block_size = self.checked_block_size()?;
        let named = tempfile::Builder::new()
            .prefix(&self.prefix)
            .suffix(&self.suffix)
            .rand_bytes(self.rand_bytes)
            .tempfile_in(dir)?;
        let (file, path) = named.into_parts();
        let file = EphemeralFile::from_std(file, self.file_key()?, block_size)?;
        Ok(NamedEphemeralFile::from_parts(file, path))
    }

    /// An unnamed file in the system's temporary directory, unlinked at
    /// creation (the name options do not apply).
    pub fn unnamed(&self) -> io::Result<EphemeralFile> {
        Ok(EphemeralFile::create(
            None,
            self.file_key()?,
            self.checked_block_size()?,
        )?)
    }

    /// An unnamed file in `dir`, unlinked at creation.
    pub fn unnamed_in<P: AsRef<Path>>(&self, dir: P) -> io::Result<EphemeralFile> {
        Ok(EphemeralFile::create(
            Some(dir.as_ref()),
            self.file_key()?,
            self.checked_block_size()?,
        )?)
    }

    /// A spooled file: in memory up to `max_size` bytes, then an unnamed
    /// encrypted file made with these options.
    pub fn spooled(&self, max_size: usize) -> SpooledTempFile {
        SpooledTempFile::with_builder(max_size, self.clone(), None)
    }

    /// A spooled file that rolls over into `dir`.
    pub fn spooled_in<P: AsRef<Path>>(&self, max_size: usize, dir: P) -> SpooledTempFile {
        SpooledTempFile::with_builder(max_size, self.clone(), Some(dir.as_ref().to_owned()))
    }
}
