//! A directory of the key service held open: the key directory, its
//! `keys/`, `named/` and `tls/`. The server checks each once (owner, mode,
//! that it is a directory and not a link), then reads, creates, renames,
//! removes and syncs its files relative to the descriptor it checked
//! (`openat`, `renameat`, `linkat`, …), so that what was checked is what is
//! used.
//!
//! Flaw fixed here: the server checked its directory by path at start, then
//! opened and created its files by path, so a directory renamed away and
//! replaced (by another directory, or a link to one) while the server ran
//! got the new keys and named keys, unchecked, in place of the one checked.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Mode, OFlags};
use seccs_core::file_kind::Kind;

use crate::KmsError;

/// An open directory and the path it was opened at (for messages: the
/// path may name another directory by now). Cheap to clone; clones share
/// the descriptor.
#[derive(Debug, Clone)]
pub(crate) struct DirFd {
    fd: Arc<OwnedFd>,
    path: PathBuf,
}

impl DirFd {
    /// Opens the directory at `path`, following a link to it (`--dir` may
    /// name one: its target is the directory used from then on).
    pub(crate) fn open(path: &Path) -> Result<Self, KmsError> {
        Self::open_io(path).map_err(|source| KmsError::File {
            action: "open",
            path: path.to_owned(),
            source,
        })
    }

    /// [`DirFd::open`], its error the system's alone (for callers that
    /// name the directory themselves).
    pub(crate) fn open_io(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd: Arc::new(fd),
            path: path.to_owned(),
        })
    }

    /// Opens the directory at `path`, never through a link: `None` if
    /// there is nothing there, [`KmsError::NotADirectory`] if it is a link
    /// (even to a directory) or anything else.
    pub(crate) fn open_own(path: &Path) -> Result<Option<Self>, KmsError> {
        open_dir_at(rustix::fs::CWD, path, path)
    }

    /// The directory `name` in this one, never through a link, as
    /// [`DirFd::open_own`].
    pub(crate) fn sub(&self, name: &str) -> Result<Option<Self>, KmsError> {
        open_dir_at(self.fd.as_fd(), Path::new(name), &self.join(name))
    }

    /// The directory `name` in this one, made (mode 0700) if missing.
    pub(crate) fn make_sub(&self, name: &str) -> Result<Self, KmsError> {
        match rustix::fs::mkdirat(&*self.fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(KmsError::File {
                    action: "create",
                    path: self.join(name),
                    source: e.into(),
                });
            }
        }
        self.sub(name)?.ok_or_else(|| KmsError::File {
            action: "open",
            path: self.join(name),
            source: io::ErrorKind::NotFound.into(),
        })
    }

    /// The path this directory was opened at.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory, for messages.
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// The descriptor, to lock the directory or use it with `*at` calls.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `name` in this directory with `flags` (`O_CLOEXEC` added),
    /// created with `mode` if the flags say so.
    pub(crate) fn open_file(
        &self,
        name: &str,
        flags: OFlags,
        mode: u32,
    ) -> rustix::io::Result<File> {
        let fd = rustix::fs::openat(
            &*self.fd,
            name,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok(File::from(fd))
    }

    /// What `name` in this directory is, a link not followed; `None` if
    /// there is nothing of that name.
    pub(crate) fn kind_of(&self, name: &str) -> io::Result<Option<Kind>> {
        match rustix::fs::statat(&*self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Kind::of_mode(stat.st_mode))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Renames `from` to `to`, both in this directory.
    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        Ok(rustix::fs::renameat(&*self.fd, from, &*self.fd, to)?)
    }

    /// Links `to` to the file `from`, both in this directory: fails with
    /// [`io::ErrorKind::AlreadyExists`] if `to` is taken.
    pub(crate) fn link(&self, from: &str, to: &str) -> io::Result<()> {
        Ok(rustix::fs::linkat(
            &*self.fd,
            from,
            &*self.fd,
            to,
            AtFlags::empty(),
        )?)
    }

    /// Renames `from` to `to`, both in this directory, failing with
    /// [`io::ErrorKind::AlreadyExists`] if `to` is taken
    /// (`RENAME_NOREPLACE`): for file systems without hard links (vfat,
    /// exFAT), where [`DirFd::link`] fails.
    pub(crate) fn rename_no_replace(&self, from: &str, to: &str) -> io::Result<()> {
        Ok(rustix::fs::renameat_with(
            &*self.fd,
            from,
            &*self.fd,
            to,
            rustix::fs::RenameFlags::NOREPLACE,
        )?)
    }

    /// Removes the file `name`.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&*self.fd, name, AtFlags::empty())?)
    }

    /// Removes the empty directory `name`.
    pub(crate) fn remove_dir(&self, name: &str) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&*self.fd, name, AtFlags::REMOVEDIR)?)
    }

    /// This directory, known from now on by `path` (it was renamed there).
    pub(crate) fn renamed(self, path: PathBuf) -> Self {
        Self { path, ..self }
    }

    /// Makes the creations, renames and removals in it durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&*self.fd)?)
    }

    /// The names of what is in it (`.` and `..` left out; a name that is
    /// not UTF-8 too: the service makes none).
    pub(crate) fn names(&self) -> Result<Vec<String>, KmsError> {
        let list_err = |e: rustix::io::Errno| KmsError::File {
            action: "list",
            path: self.path.clone(),
            source: e.into(),
        };
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&*self.fd).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let name: &CStr = entry.file_name();
            match name.to_str() {
                Ok("." | "..") | Err(_) => {}
                Ok(name) => names.push(name.to_owned()),
            }
        }
        Ok(names)
    }
}

/// Opens the directory `path` relative to `at`, never through a link;
/// `shown` names it in errors.
fn open_dir_at(at: BorrowedFd<'_>, path: &Path, shown: &Path) -> Result<Option<DirFd>, KmsError> {
    let opened = rustix::fs::openat(
        at,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    );
    match opened {
        Ok(fd) => Ok(Some(DirFd {
            fd: Arc::new(fd),
            path: shown.to_owned(),
        })),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        // A link (`O_NOFOLLOW` with `O_DIRECTORY` says either) or
        // something else than a directory.
        Err(e) if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR => {
            let what = rustix::fs::statat(at, path, AtFlags::SYMLINK_NOFOLLOW)
                .map(|stat| Kind::of_mode(stat.st_mode).in_words())
                .unwrap_or("not a directory");
            Err(KmsError::NotADirectory {
                path: shown.to_owned(),
                what,
            })
        }
        Err(e) => Err(KmsError::File {
            action: "open",
            path: shown.to_owned(),
            source: e.into(),
        }),
    }
}
