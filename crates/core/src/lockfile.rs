//! A directory that one process at a time may use: an exclusive `flock` on
//! `DIR/lock`, whose text says who holds it, so that the process refused
//! can name the holder. The store directory, a key server's directory and
//! a share server's root each take one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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

/// Takes the lock of `dir`, held until the returned file is dropped (or the
/// process ends, however it ends).
pub fn lock_dir(dir: &Path) -> Result<File, LockError> {
    let path = dir.join("lock");
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).read(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|source| LockError::Io {
        action: "open",
        path: path.clone(),
        source,
    })?;
    match file.try_lock() {
        Ok(()) => {
            // Only for the message a second process gets; the flock is the
            // lock.
            let holder = format!("pid {} on {}\n", std::process::id(), host_name());
            let _ = file
                .set_len(0)
                .and_then(|()| file.write_all(holder.as_bytes()));
            Ok(file)
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
