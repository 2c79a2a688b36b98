//! [`NamedEphemeralFile`]: an encrypted temporary file with a path, which can
//! be persisted and reopened with the key the caller holds.

use std::ffi::OsStr;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tempfile::{PathPersistError, TempPath};

use crate::{Builder, EphemeralFile, FileKey};

/// An encrypted temporary file with a name in a directory; removed on drop.
///
/// The name is what the `tempfile` crate's `NamedTempFile` gives (mode 0600,
/// random characters); the contents are sealed blocks, exactly as in an
/// [`EphemeralFile`]. [`persist`](Self::persist) keeps the ciphertext under a
/// new name, with the in-memory state sealed into a footer, so that
/// [`EphemeralFile::open_persisted`] can read it back with the key.
///
/// ```
/// use std::io::{Read, Write};
/// use seccs_tempfile::{EphemeralFile, NamedEphemeralFile};
///
/// let dir = tempfile::tempdir()?;
/// let mut f = NamedEphemeralFile::new_in(dir.path())?;
/// f.write_all(b"kept, encrypted")?;
/// let key = f.persist(dir.path().join("kept.bin"))?;
///
/// let mut back = EphemeralFile::open_persisted(dir.path().join("kept.bin"), &key)?;
/// let mut s = String::new();
/// back.read_to_string(&mut s)?;
/// assert_eq!(s, "kept, encrypted");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct NamedEphemeralFile {
    file: EphemeralFile,
    path: TempPath,
}

/// A failed [`NamedEphemeralFile::persist`]: the error, and the file back.
#[derive(Debug, thiserror::Error)]
#[error("failed to persist ephemeral file: {error}")]
pub struct PersistError {
    /// Why it failed.
    #[source]
    pub error: io::Error,
    /// The file, still temporary and usable.
    pub file: NamedEphemeralFile,
}

impl From<PersistError> for io::Error {
    fn from(e: PersistError) -> Self {
        e.error
    }
}

/// The file back from a failed persist, as `tempfile` gives a
/// `NamedTempFile` back from its `PersistError`.
impl From<PersistError> for NamedEphemeralFile {
    fn from(e: PersistError) -> Self {
        e.file
    }
}

impl NamedEphemeralFile {
    /// A named file in the system's temporary directory, with default options.
    pub fn new() -> io::Result<Self> {
        Builder::new().tempfile()
    }

    /// A named file in `dir`, with default options.
    pub fn new_in<P: AsRef<Path>>(dir: P) -> io::Result<Self> {
        Builder::new().tempfile_in(dir)
    }

    /// A named file in the system's temporary directory whose name starts
    /// with `prefix`, with default options otherwise.
    ///
    /// ```
    /// let f = seccs_tempfile::NamedEphemeralFile::with_prefix("upload-")?;
    /// let name = f.path().file_name().and_then(|n| n.to_str()).unwrap_or_default();
    /// assert!(name.starts_with("upload-"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_prefix<S: AsRef<OsStr>>(prefix: S) -> io::Result<Self> {
        Builder::new().prefix(&prefix).tempfile()
    }

    /// A named file in the system's temporary directory whose name ends
    /// with `suffix`, with default options otherwise.
    ///
    /// ```
    /// let f = seccs_tempfile::NamedEphemeralFile::with_suffix(".part")?;
    /// let name = f.path().file_name().and_then(|n| n.to_str()).unwrap_or_default();
    /// assert!(name.ends_with(".part"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_suffix<S: AsRef<OsStr>>(suffix: S) -> io::Result<Self> {
        Builder::new().suffix(&suffix).tempfile()
    }

    /// A named file in `dir` whose name starts with `prefix`, with default
    /// options otherwise.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let f = seccs_tempfile::NamedEphemeralFile::with_prefix_in("upload-", dir.path())?;
    /// assert_eq!(f.path().parent(), Some(dir.path()));
    /// let name = f.path().file_name().and_then(|n| n.to_str()).unwrap_or_default();
    /// assert!(name.starts_with("upload-"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_prefix_in<S: AsRef<OsStr>, P: AsRef<Path>>(prefix: S, dir: P) -> io::Result<Self> {
        Builder::new().prefix(&prefix).tempfile_in(dir)
    }

    /// A named file in `dir` whose name ends with `suffix`, with default
    /// options otherwise.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let f = seccs_tempfile::NamedEphemeralFile::with_suffix_in(".part", dir.path())?;
    /// assert_eq!(f.path().parent(), Some(dir.path()));
    /// let name = f.path().file_name().and_then(|n| n.to_str()).unwrap_or_default();
    /// assert!(name.ends_with(".part"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_suffix_in<S: AsRef<OsStr>, P: AsRef<Path>>(suffix: S, dir: P) -> io::Result<Self> {
        Builder::new().suffix(&suffix).tempfile_in(dir)
    }

    pub(crate) fn from_parts(file: EphemeralFile, path: TempPath) -> Self {
        Self { file, path }
    }

    /// The file's path. What is there is ciphertext.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The encrypted file.
    pub fn as_file(&self) -> &EphemeralFile {
        &self.file
    }

    /// The encrypted file, mutably.
    pub fn as_file_mut(&mut self) -> &mut EphemeralFile {
        &mut self.file
    }

    /// Keeps the file under `new_path` (a rename: same file system) and
    /// returns the key it opens with. The blocks stay as they are; a footer
    /// sealed under the key holds the length, the file id and every block's
    /// version, so the persisted file detects the same tampering as a live
    /// one. Whoever replaces the whole file with another persisted under the
    /// same key is not detected: keep one key per persisted file.
    ///
    /// An existing file at `new_path` is replaced;
    /// [`persist_noclobber`](Self::persist_noclobber) refuses instead.
    ///
    /// # A failed persist
    ///
    /// The footer is written and synced before the path is made permanent.
    /// If that last step fails (the rename, or [`keep`](Self::keep)), the
    /// footer comes off again and the file is handed back in the error,
    /// but until then the temporary file was a complete persisted file of
    /// the contents at that moment, under the same key and file id the
    /// file keeps. Whoever copied it then holds a file that opens with the
    /// key returned by a later successful persist of the same file, as that
    /// earlier state: [`EphemeralFile::open_persisted`] cannot tell the two
    /// apart. Where that matters, do not persist the handed-back file
    /// again; copy its contents into a new file (which has a new key) and
    /// persist that one.
    pub fn persist<P: AsRef<Path>>(self, new_path: P) -> Result<FileKey, PersistError> {
        self.persist_with(|path| path.persist(new_path))
            .map(|((), key)| key)
    }

    /// As [`persist`](Self::persist), but fails (with the file back, still
    /// temporary) if `new_path` exists, as the `tempfile` crate's
    /// `persist_noclobber`.
    pub fn persist_noclobber<P: AsRef<Path>>(self, new_path: P) -> Result<FileKey, PersistError> {
        self.persist_with(|path| path.persist_noclobber(new_path))
            .map(|((), key)| key)
    }

    /// Keeps the file where it is, no longer removed on drop, and returns
    /// its path and the key it opens with
    /// ([`EphemeralFile::open_persisted`]). Unlike the `tempfile` crate's
    /// `keep`, what stays on disk is the encrypted file with its sealed
    /// footer, as [`persist`](Self::persist) leaves it, and no
    /// `std::fs::File` is returned: the bytes there are ciphertext.
    pub fn keep(self) -> Result<(PathBuf, FileKey), PersistError> {
        self.persist_with(TempPath::keep)
    }

    /// Appends the footer, then `how` makes the path permanent; if it
    /// fails, the footer comes off again and the file is handed back (see
    /// "A failed persist" in [`persist`](Self::persist) for what a copy of
    /// the file taken in between can do).
    fn persist_with<R>(
        self,
        how: impl FnOnce(TempPath) -> Result<R, PathPersistError>,
    ) -> Result<(R, FileKey), PersistError> {
        let Self { mut file, path } = self;
        let region = match file.append_footer() {
            Ok(at) => at,
            Err(e) => {
                return Err(PersistError {
                    error: e.into(),
                    file: Self { file, path },
                });
            }
        };
        match how(path) {
            Ok(r) => Ok((r, file.key().clone())),
            Err(e) => {
                // Still temporary: take the footer off again.
                let error = match file.truncate_raw(region) {
                    Ok(()) => e.error,
                    Err(t) => t,
                };
                Err(PersistError {
                    error,
                    file: Self { file, path: e.path },
                })
            }
        }
    }
}

impl Read for NamedEphemeralFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for NamedEphemeralFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for NamedEphemeralFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Its path, as `tempfile`'s `NamedTempFile` gives it to code that takes
/// `impl AsRef<Path>`.
impl AsRef<Path> for NamedEphemeralFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for NamedEphemeralFile {
    /// The file holding the ciphertext (see [`EphemeralFile`]'s `as_fd`).
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for NamedEphemeralFile {
    /// The descriptor of [`AsFd::as_fd`](std::os::fd::AsFd::as_fd).
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}
