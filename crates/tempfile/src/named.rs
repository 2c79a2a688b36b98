//! [`NamedEphemeralFile`]: an encrypted temporary file with a path, which can
//! be persisted and reopened with the key the caller holds.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use tempfile::TempPath;

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

impl NamedEphemeralFile {
    /// A named file in the system's temporary directory, with default options.
    pub fn new() -> io::Result<Self> {
        Builder::new().tempfile()
    }

    /// A named file in `dir`, with default options.
    pub fn new_in<P: AsRef<Path>>(dir: P) -> io::Result<Self> {
        Builder::new().tempfile_in(dir)
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
    pub fn persist<P: AsRef<Path>>(self, new_path: P) -> Result<FileKey, PersistError> {
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
        match path.persist(new_path) {
            Ok(()) => Ok(file.key().clone()),
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
