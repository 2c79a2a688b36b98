//! A directory that one process at a time may use: an exclusive `flock` on
//! `DIR/lock`, whose text says who holds it, so that the process refused
//! can name the holder. The store directory, a key server's directory and
//! a share server's root each take one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::file_kind;

/// Why a directory's lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{} is locked by {holder}", dir.display())]
    Held {
        /// The directory.
        dir: PathBuf,
        /// Who holds it, as the holder wrote it (`pid N on HOST`), or
        /// "another process".
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What failed: "open" or "lock".
        action: &'static str,
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A directory's lock, held until dropped (or until the process ends,
/// however it ends).
///
/// Dropping it unlocks the file before closing it. Closing alone frees an
/// `flock` only once every descriptor of the open file is closed, and a
/// child that another thread forks holds a copy of each until it runs its
/// program: a lock dropped in that moment outlived its holder, and a store
/// or server reopened at once was refused as in use by itself.
#[derive(Debug)]
pub struct DirLock {
    file: File,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // On failure the close still frees it, as before.
        let _ = self.file.unlock();
    }
}

/// Takes the lock of `dir`, held until the returned [`DirLock`] is dropped
/// (or the process ends, however it ends).
///
/// `dir/lock` is opened only as a regular file, never through a symbolic
/// link and never waiting: anything else is a [`LockError::Io`] whose
/// cause says what is there ([`std::io::ErrorKind::InvalidInput`]).
/// Flaw fixed here: a link in place of the lock file was followed, so
/// whoever could write the directory once chose which file the holder's
/// text was written over (truncated first).
pub fn lock_dir(dir: &Path) -> Result<DirLock, LockError> {
    let path = dir.join("lock");
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let open_err = |source| LockError::Io {
        action: "open",
        path: path.clone(),
        source,
    };
    let mut file = match options.open(&path) {
        Ok(file) => file,
        // `O_NOFOLLOW` on a link; a socket, which cannot be opened; a
        // directory, which cannot be written.
        Err(e) if [ELOOP, ENXIO, EISDIR].map(Some).contains(&e.raw_os_error()) => {
            let what = std::fs::symlink_metadata(&path)
                .map(|m| file_kind::in_words(m.file_type()))
                .unwrap_or("not a regular file");
            return Err(open_err(not_a_file(what)));
        }
        Err(e) => return Err(open_err(e)),
    };
    let kind = file.metadata().map_err(open_err)?.file_type();
    if !kind.is_file() {
        return Err(open_err(not_a_file(file_kind::in_words(kind))));
    }
    match file.try_lock() {
        Ok(()) => {
            // Only for the message a second process gets; the flock is the
            // lock.
            let holder = format!("pid {} on {}\n", std::process::id(), host_name());
            let _ = file
                .set_len(0)
                .and_then(|()| file.write_all(holder.as_bytes()));
            Ok(DirLock { file })
        }
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = (&file).take(200).read_to_string(&mut text);
            let holder = match text.trim() {
                line if line.starts_with("pid ") && line.len() < 200 => {
                    line.escape_debug().to_string()
                }
                _ => "another process".to_owned(),
            };
            Err(LockError::Held {
                dir: dir.to_owned(),
                holder,
            })
        }
        Err(TryLockError::Error(source)) => Err(LockError::Io {
            action: "lock",
            path,
            source,
        }),
    }
}

#[cfg(unix)]
use libc::{EISDIR, ELOOP, ENXIO};
#[cfg(not(unix))]
const ELOOP: i32 = -1;
#[cfg(not(unix))]
const ENXIO: i32 = -1;
#[cfg(not(unix))]
const EISDIR: i32 = -1;

/// The cause of a refused lock file that is `what` instead of a file.
fn not_a_file(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "it is {what}, not a regular file: a lock file is opened only as a regular file, \
             never through a link (remove it; the lock makes a new one)"
        ),
    )
}

/// This machine's name, for messages that name a lock's holder.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".into())
}

#[cfg(test)]
mod tests {
    use super::{LockError, lock_dir};

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = lock_dir(dir.path()).expect("first");
        match lock_dir(dir.path()) {
            Err(LockError::Held { holder, .. }) => {
                assert!(
                    holder.starts_with(&format!("pid {} on ", std::process::id())),
                    "{holder}"
                )
            }
            other => panic!("a second lock was not refused: {other:?}"),
        }
        drop(first);
        assert!(lock_dir(dir.path()).is_ok());
    }

    /// A copy of the lock's descriptor, as a child forked by another
    /// thread holds until it runs its program, does not keep the lock once
    /// it is dropped.
    #[test]
    fn a_dropped_lock_is_free_while_a_copy_of_its_descriptor_lives() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = lock_dir(dir.path()).expect("first");
        let copy = first.file.try_clone().expect("dup");
        drop(first);
        assert!(lock_dir(dir.path()).is_ok(), "still held by the copy");
        drop(copy);
    }

    /// A link, a named pipe or a directory in place of the lock file is
    /// refused, saying what it is; a link's target is left as it was
    /// (it was followed, then truncated and written over).
    #[cfg(unix)]
    #[test]
    fn a_lock_file_that_is_not_a_regular_file_is_refused_as_what_it_is() {
        let dir = tempfile::tempdir().expect("tmp");
        let lock = dir.path().join("lock");
        let target = dir.path().join("target");
        std::fs::write(&target, "precious\n").expect("target");
        std::os::unix::fs::symlink(&target, &lock).expect("link");
        let said = |dir: &std::path::Path| match lock_dir(dir) {
            Err(LockError::Io {
                action: "open",
                path,
                source,
            }) if path == dir.join("lock") && source.kind() == std::io::ErrorKind::InvalidInput => {
                source.to_string()
            }
            other => panic!("not refused as it should be: {other:?}"),
        };
        assert!(
            said(dir.path()).starts_with("it is a symbolic link, not a regular file"),
            "{}",
            said(dir.path())
        );
        assert_eq!(
            std::fs::read_to_string(&target).expect("read"),
            "precious\n"
        );
        std::fs::remove_file(&lock).expect("rm");
        std::fs::create_dir(&lock).expect("dir");
        assert!(said(dir.path()).starts_with("it is a directory, not a regular file"));
        std::fs::remove_dir(&lock).expect("rmdir");
        let made = std::process::Command::new("mkfifo")
            .arg(&lock)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        assert!(said(dir.path()).starts_with("it is a named pipe, not a regular file"));
        std::fs::remove_file(&lock).expect("rm");
        assert!(lock_dir(dir.path()).is_ok());
    }

    #[test]
    fn a_directory_that_is_not_there_is_an_io_error_naming_the_lock_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let err = lock_dir(&dir.path().join("absent")).err();
        assert!(
            matches!(&err, Some(LockError::Io { action: "open", path, .. }) if path.ends_with("absent/lock")),
            "{err:?}"
        );
    }
}
