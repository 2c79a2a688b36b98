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
    publish: Publish,
}

/// How a [`NewFile`] appears at its name without replacing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// A hard link, then the temporary name removed.
    Link,
    /// A rename that replaces nothing (`RENAME_NOREPLACE`), where the file
    /// system has no hard links (vfat, exFAT: a USB stick).
    RenameNoReplace,
}

#[cfg(test)]
thread_local! {
    /// Tests: this thread's links fail as on a file system without hard
    /// links, and, if the second is set, so do its renames that replace
    /// nothing.
    static UNSUPPORTED: std::cell::Cell<(bool, bool)> = const { std::cell::Cell::new((false, false)) };
}

/// Whether `e` says the file system (or kernel) cannot do what was asked
/// at all, rather than that this file or name is wrong: a link on vfat is
/// EPERM; a rename flag a file system lacks, EINVAL.
fn unsupported(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let Some(code) = e.raw_os_error() else {
        return false;
    };
    let errno = Errno::from_raw_os_error(code);
    [
        Errno::PERM,
        Errno::OPNOTSUPP,
        Errno::MLINK,
        Errno::INVAL,
        Errno::NOSYS,
    ]
    .contains(&errno)
}

/// [`DirFd::link`] of `from` to `to`.
fn link(dir: &DirFd, from: &str, to: &str) -> io::Result<()> {
    #[cfg(test)]
    if UNSUPPORTED.get().0 {
        return Err(rustix::io::Errno::PERM.into());
    }
    dir.link(from, to)
}

/// [`DirFd::rename_no_replace`] of `from` to `to`.
fn rename_no_replace(dir: &DirFd, from: &str, to: &str) -> io::Result<()> {
    #[cfg(test)]
    if UNSUPPORTED.get().1 {
        return Err(rustix::io::Errno::INVAL.into());
    }
    dir.rename_no_replace(from, to)
}

impl NewFile {
    /// Creates the temporary file of `name` in `dir` (mode 0600), and
    /// finds how it can be made to appear at `name` without replacing
    /// anything: a hard link, or where the file system has none (vfat,
    /// exFAT), a rename that replaces nothing. Where neither can be done
    /// it fails now, before the caller makes what the file is to hold (a
    /// key the server would keep while its file was never written).
    pub(crate) fn create(dir: &DirFd, name: &str) -> io::Result<Self> {
        let (tmp, file) = create_temp(dir, name)?;
        let mut new = Self {
            dir: dir.clone(),
            name: name.to_owned(),
            tmp_path: dir.join(&tmp),
            tmp,
            file: Some(file),
            publish: Publish::Link,
        };
        // Dropped on an error, `new` removes its temporary file.
        new.publish = new.probe()?;
        Ok(new)
    }

    /// How the temporary file can be published (see [`NewFile::create`]),
    /// found by linking it, or renaming it, to a second temporary name and
    /// back.
    fn probe(&self) -> io::Result<Publish> {
        let probe = format!("{}.probe", self.tmp);
        match link(&self.dir, &self.tmp, &probe) {
            Ok(()) => {
                self.dir.remove(&probe)?;
                return Ok(Publish::Link);
            }
            Err(e) if !unsupported(&e) => return Err(e),
            Err(_) => {}
        }
        match rename_no_replace(&self.dir, &self.tmp, &probe) {
            Ok(()) => {
                if let Err(e) = rename_no_replace(&self.dir, &probe, &self.tmp) {
                    let _ = self.dir.remove(&probe);
                    return Err(e);
                }
                Ok(Publish::RenameNoReplace)
            }
            Err(e) if unsupported(&e) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "its file system can neither link a file nor rename one without replacing \
                     another ({e}), so a file cannot be made there without the risk of \
                     replacing one"
                ),
            )),
            Err(e) => Err(e),
        }
    }

    /// Reserves `len` bytes: the temporary file is written with `len`
    /// zero bytes and synced, so that a file system without room for them
    /// (a full disk, a file size limit) fails now, before the caller makes
    /// what the file is to hold. [`NewFile::commit`] of as many bytes then
    /// writes over them and needs no more room.
    pub(crate) fn reserve(&mut self, len: usize) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("temporary file already used"))?;
        f.write_all(&vec![0u8; len])?;
        f.sync_all()?;
        f.seek(SeekFrom::Start(0))?;
        Ok(())
    }

    /// The temporary file's path, until it is committed or dropped.
    pub(crate) fn temporary_path(&self) -> &Path {
        &self.tmp_path
    }

    /// Durably creates `name` holding `bytes`, never replacing
    /// anything: the temporary file is filled, synced, hard-linked to the
    /// final name (which fails with [`io::ErrorKind::AlreadyExists`] if
    /// that name exists, even as a dangling symbolic link), then removed;
    /// where the file system has no hard links, renamed to it by a rename
    /// that fails alike.
    pub(crate) fn commit(mut self, bytes: &[u8]) -> io::Result<()> {
        let mut f = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("temporary file already used"))?;
        let written = f.write_all(bytes).and_then(|()| f.sync_all());
        drop(f);
        let result = written.and_then(|()| match self.publish {
            Publish::Link => link(&self.dir, &self.tmp, &self.name),
            Publish::RenameNoReplace => rename_no_replace(&self.dir, &self.tmp, &self.name),
        });
        let renamed = self.publish == Publish::RenameNoReplace && result.is_ok();
        let removed = if renamed {
            Ok(())
        } else {
            self.dir.remove(&self.tmp)
        };
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

    /// The names in `dir`.
    fn names(dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in fs::read_dir(dir)? {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// On a file system without hard links (vfat, exFAT: a USB stick;
    /// links fail as there, with EPERM) a new file appears by a rename
    /// that replaces nothing: it failed at its link, after the caller had
    /// made the key it was to hold. A taken name is still refused and kept.
    #[test]
    fn without_hard_links_a_new_file_appears_by_a_rename_that_replaces_nothing() -> io::Result<()> {
        UNSUPPORTED.set((true, false));
        let dir = tempfile::tempdir()?;
        write_new(dir.path(), "kek", b"one")?;
        assert_eq!(fs::read(dir.path().join("kek"))?, b"one");
        assert_eq!(names(dir.path())?, ["kek"]);
        let taken = write_new(dir.path(), "kek", b"two");
        UNSUPPORTED.set((false, false));
        assert_eq!(
            taken.err().map(|e| e.kind()),
            Some(io::ErrorKind::AlreadyExists)
        );
        assert_eq!(fs::read(dir.path().join("kek"))?, b"one");
        assert_eq!(names(dir.path())?, ["kek"]);
        Ok(())
    }

    /// Where neither a link nor a rename that replaces nothing can be
    /// done, a new file is refused when it is created (before what it is
    /// to hold exists), not when it is committed; nothing is left.
    #[test]
    fn without_links_or_safe_renames_a_new_file_is_refused_at_create() -> io::Result<()> {
        UNSUPPORTED.set((true, true));
        let dir = tempfile::tempdir()?;
        let created = NewFile::create(&open(dir.path())?, "kek");
        UNSUPPORTED.set((false, false));
        let err = created.err().ok_or_else(|| io::Error::other("created"))?;
        assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
        assert_eq!(names(dir.path())?, Vec::<String>::new());
        Ok(())
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
