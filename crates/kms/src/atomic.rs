//! Durable, atomic file writes: temp file (mode 0600), fsync, rename, fsync
//! of the directory. A reader sees the old file or the new one, never half
//! of one, and after the call returns the new one survives a crash.
//!
//! Seed flaw fixed here: keas.kmi wrote each key file in place with a plain
//! `open(..., 'wb')` and no fsync, with the process umask's mode, so a crash
//! could leave an empty or partial key file and other users could read it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::OFlags;

use crate::dir::DirFd;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Suffix of temporary files; such files are leftovers of a crash.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// Creates the empty file `.name.<pid>.<n>.<random>.tmp` in `dir` with
/// mode 0600; returns its name and open handle. The random part keeps it
/// apart from the leftover of a crashed process that had the same pid (a
/// server restarted in a container is pid 1 again, with its counter at 0),
/// which would otherwise make the write fail as the name exists.
fn create_temp(dir: &DirFd, name: &str) -> io::Result<(String, File)> {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut random = [0u8; 8];
    seccs_core::random_bytes(&mut random).map_err(io::Error::other)?;
    let tmp = format!(
        ".{name}.{}.{n}.{}{TEMP_SUFFIX}",
        std::process::id(),
        hex::encode(random)
    );

    let f = dir.open_file(
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
        0o600,
    )?;
    Ok((tmp, f))
}

/// Creates `.name.<pid>.<n>.<random>.tmp` in `dir` with mode 0600 and writes
/// `bytes` without syncing; returns its name and open handle.
pub(crate) fn write_temp(dir: &DirFd, name: &str, bytes: &[u8]) -> io::Result<(String, File)> {
    let (tmp, mut f) = create_temp(dir, name)?;
    if let Err(e) = f.write_all(bytes) {
        let _ = dir.remove(&tmp);
        return Err(e);
    }
    Ok((tmp, f))
}

/// A new file `name` of `dir` in the making: its empty temporary file
/// exists (so the directory is known to be writable) until
/// [`NewFile::commit`] fills, syncs and links it; dropped uncommitted, it
/// is removed.
#[derive(Debug)]
pub(crate) struct NewFile {
    dir: DirFd,
    name: String,
    tmp: String,
    tmp_path: PathBuf,
    file: Option<File>,
}

impl NewFile {
    /// Creates the temporary file of `name` in `dir` (mode 0600).
    pub(crate) fn create(dir: &DirFd, name: &str) -> io::Result<Self> {
        let (tmp, file) = create_temp(dir, name)?;
        Ok(Self {
            dir: dir.clone(),
            name: name.to_owned(),
            tmp_path: dir.join(&tmp),
            tmp,
            file: Some(file),
        })
    }

    /// The temporary file's path, until it is committed or dropped.
    pub(crate) fn temporary_path(&self) -> &Path {
        &self.tmp_path
    }

    /// Durably creates `name` holding `bytes`, never replacing
    /// anything: the temporary file is filled, synced, hard-linked to the
    /// final name (which fails with [`io::ErrorKind::AlreadyExists`] if
    /// that name exists, even as a dangling symbolic link), then removed.
    pub(crate) fn commit(mut self, bytes: &[u8]) -> io::Result<()> {
        let mut f = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("temporary file already used"))?;
        let result = f
            .write_all(bytes)
            .and_then(|()| f.sync_all())
            .and_then(|()| self.dir.link(&self.tmp, &self.name));
        drop(f);
        let removed = self.dir.remove(&self.tmp);
        result?;
        removed?;
        self.dir.sync()
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = self.dir.remove(&self.tmp);
        }
    }
}

/// Whether `name` is a temporary file of [`create_temp`] (or of its
/// earlier form, `.name.<pid>.<n>.tmp`): a dot, a name, and two or three
/// dot-separated hexadecimal parts before `.tmp`.
pub(crate) fn is_temp_name(name: &str) -> bool {
    let Some(middle) = name
        .strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
    else {
        return false;
    };
    let parts: Vec<&str> = middle.rsplitn(4, '.').collect();
    let hex = |part: &&str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() >= 3 && parts[..2].iter().all(hex)
}

/// Removes the temporary files [`create_temp`] left in `dir` (a crash
/// before their rename or link; they were never handed out). One in
/// `tls/` may hold the server's private key. Best effort: one that cannot
/// be removed is said in the log and left.
pub(crate) fn remove_leftovers(dir: &DirFd) -> Result<(), crate::error::KmsError> {
    for name in dir.names()? {
        if is_temp_name(&name)
            && let Err(error) = dir.remove(&name)
        {
            tracing::warn!(path = %dir.join(&name).display(), %error, "cannot remove a leftover temporary file");
        }
    }
    Ok(())
}

/// Makes renames and creations in the directory at `dir` durable (for
/// files written beside a path the user gave, not in a key directory).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically and durably replaces `name` in `dir` with `bytes` (mode
/// 0600).
pub(crate) fn write_atomic(dir: &DirFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    let (tmp, f) = write_temp(dir, name, bytes)?;
    let result = f.sync_all().and_then(|()| dir.rename(&tmp, name));
    if result.is_err() {
        let _ = dir.remove(&tmp);
    }
    result?;
    dir.sync()
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    // The error names the directory: callers report it as it is.
    b.create(dir).map_err(|e| {
        let why = if e.kind() == io::ErrorKind::AlreadyExists {
            "a file that is not a directory is in the way".to_owned()
        } else {
            e.to_string()
        };
        io::Error::new(
            e.kind(),
            format!("cannot create directory {}: {why}", dir.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
        NewFile::create(&open(dir)?, name)?.commit(bytes)
    }

    fn open(dir: &Path) -> io::Result<DirFd> {
        DirFd::open(dir).map_err(io::Error::other)
    }

    /// Leftovers of a crashed process that had this pid (a server in a
    /// container is pid 1 after each restart), named as the next writes
    /// would have named their temporary files before names had a random
    /// part, do not make those writes fail (they did, as the names
    /// existed). Leftover names are told from other files.
    #[test]
    fn leftovers_with_the_next_temporary_names_do_not_break_a_write() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let opened = open(dir.path())?;
        let pid = std::process::id();
        let next = TEMP_COUNTER.load(Ordering::Relaxed);
        // Other tests of this process may take a few numbers meanwhile.
        for n in next..next + 64 {
            for name in ["k", "n"] {
                fs::write(dir.path().join(format!(".{name}.{pid}.{n}.tmp")), b"old")?;
            }
        }
        write_atomic(&opened, "k", b"new")?;
        write_new(dir.path(), "n", b"new")?;
        assert_eq!(fs::read(dir.path().join("k"))?, b"new");
        assert_eq!(fs::read(dir.path().join("n"))?, b"new");
        assert!(is_temp_name(&format!(".k.{pid}.{next}.tmp")));
        assert!(is_temp_name(".tls.key.pem.1.0.0123abcd.tmp"));
        for other in [
            "k",
            ".k.tmp",
            ".k.x.1.tmp",
            "k.1.2.tmp",
            ".1.tmp",
            "audit.log",
        ] {
            assert!(!is_temp_name(other), "{other}");
        }
        Ok(())
    }

    #[test]
    fn atomic_write_replaces_content_with_mode_0600() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let opened = open(dir.path())?;
        write_atomic(&opened, "k", b"one")?;
        write_atomic(&opened, "k", b"two")?;
        assert_eq!(fs::read(dir.path().join("k"))?, b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("k"))?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path())?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(TEMP_SUFFIX))
            .collect();
        assert!(leftovers.is_empty());
        Ok(())
    }

    #[test]
    fn write_new_never_replaces_a_file_or_a_dangling_link() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        write_new(dir.path(), "k", b"one")?;
        let again = write_new(dir.path(), "k", b"two");
        assert_eq!(
            again.err().map(|e| e.kind()),
            Some(io::ErrorKind::AlreadyExists)
        );
        assert_eq!(fs::read(dir.path().join("k"))?, b"one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("k"))?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("l"))?;
            let through = write_new(dir.path(), "l", b"x");
            assert_eq!(
                through.err().map(|e| e.kind()),
                Some(io::ErrorKind::AlreadyExists)
            );
            assert!(!dir.path().join("nowhere").exists());
        }
        let names: Vec<_> = fs::read_dir(dir.path())?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(TEMP_SUFFIX)), "{names:?}");
        Ok(())
    }
}
