//! Files the key service reads whole, each within a bound: a device such
//! as `/dev/zero`, or the wrong file, is refused once it passes the bound
//! instead of filling memory. And the management token, as read from a
//! file and as it may go in an HTTP header.
//!
//! The files of a key directory (`audit.log`, `token`, `root.key`, the key
//! files, the lock) are opened only as regular files, never through a
//! symbolic link ([`open_own`], with `O_NOFOLLOW` and `O_NONBLOCK`, then
//! the type of what was opened checked): anything else is
//! [`KmsError::NotAFile`]. Flaws fixed here: an `audit.log` that was a
//! named pipe made `kms serve` wait forever for a reader at start (as did
//! a named pipe among the key files), and a symbolic link in place of
//! `audit.log` or `token` was followed, so whoever could write the
//! directory once chose where the server appends its records or which
//! file's text becomes the management token.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use seccs_core::file_kind;

use crate::KmsError;
use crate::dir::DirFd;

/// The largest token file read.
pub(crate) const MAX_TOKEN_FILE: u64 = 4096;
/// The largest certificate or private key file (PEM) read.
pub(crate) const MAX_PEM_FILE: u64 = 4 << 20;
/// The shortest management token a server accepts, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// Reads `path` whole, refusing one longer than `limit` bytes
/// ([`KmsError::FileTooLarge`]).
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, KmsError> {
    let file = std::fs::File::open(path).map_err(|source| read_err(path, source))?;
    read_file(path, file, limit)
}

fn read_err(path: &Path, source: std::io::Error) -> KmsError {
    KmsError::File {
        action: "read",
        path: path.to_owned(),
        source,
    }
}

/// Reads the open `file` at `path` whole, within `limit` bytes.
fn read_file(path: &Path, file: std::fs::File, limit: u64) -> Result<Vec<u8>, KmsError> {
    // Room for the whole of a small file at once, so that a secret read is
    // not copied by the buffer growing.
    let room = usize::try_from(limit.min(64 << 10)).unwrap_or(64 << 10) + 1;
    let mut bytes = Vec::with_capacity(room);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| read_err(path, source))?;
    if bytes.len() as u64 > limit {
        zeroize::Zeroize::zeroize(&mut bytes);
        return Err(KmsError::FileTooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// How a file of the key directory is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Own {
    /// To read it.
    Read,
    /// To append to it, created (mode 0600) when missing.
    Append,
}

/// Opens `name`, a file of the key directory `dir` (or of one of its
/// directories), as `how` says: only a regular file, never through a
/// symbolic link, and never waiting (a named pipe is refused at once, with
/// or without a peer). `None` when there is nothing of that name to read.
pub(crate) fn open_own(dir: &DirFd, name: &str, how: Own) -> Result<Option<File>, KmsError> {
    let (flags, action) = match how {
        Own::Read => (OFlags::RDONLY, "read"),
        Own::Append => (OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE, "open"),
    };
    let path = dir.join(name);
    let refused = |what| KmsError::NotAFile {
        path: path.clone(),
        what,
    };
    let opened = dir.open_file(name, flags | OFlags::NOFOLLOW | OFlags::NONBLOCK, 0o600);
    let file = match opened {
        Ok(file) => file,
        Err(rustix::io::Errno::NOENT) if how == Own::Read => return Ok(None),
        // The refusals of what is not a file: the last component a link
        // (`O_NOFOLLOW`), a named pipe or socket with no reader (written
        // with `O_NONBLOCK`), a directory.
        Err(e)
            if e == rustix::io::Errno::LOOP
                || e == rustix::io::Errno::NXIO
                || e == rustix::io::Errno::ISDIR =>
        {
            let what = dir
                .kind_of(name)
                .ok()
                .flatten()
                .map(file_kind::Kind::in_words)
                .unwrap_or("not a regular file");
            return Err(refused(what));
        }
        Err(e) => {
            return Err(KmsError::File {
                action,
                path,
                source: e.into(),
            });
        }
    };
    let io_err = |source| KmsError::File {
        action,
        path: path.clone(),
        source,
    };
    let kind = file.metadata().map_err(io_err)?.file_type();
    if !kind.is_file() {
        return Err(refused(file_kind::in_words(kind)));
    }
    // A regular file: blocking as any other from here on.
    rustix::fs::fcntl_setfl(&file, flags).map_err(|e| io_err(e.into()))?;
    Ok(Some(file))
}

/// Reads `path`, a certificate or private key given to the server, whole
/// within `limit` bytes: a regular file, or a link to one (a certificate
/// renewed by a tool such as certbot is a link to its latest version), or
/// a pipe (`--key <(pass show …)`). It is opened without waiting, so a
/// named pipe no process writes to reads as empty at once
/// ([`KmsError::GivenPipeEmpty`]) where it held the start forever. A
/// device, a socket or a directory is [`KmsError::GivenNotAFile`].
pub(crate) fn read_given(path: &Path, limit: u64) -> Result<Vec<u8>, KmsError> {
    let read_err_of = |e: rustix::io::Errno| read_err(path, e.into());
    let refused = |what| KmsError::GivenNotAFile {
        path: path.to_owned(),
        what,
    };
    let fd = match rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) if e == rustix::io::Errno::NXIO || e == rustix::io::Errno::ISDIR => {
            let what = std::fs::metadata(path)
                .map(|m| file_kind::in_words(m.file_type()))
                .unwrap_or("not a regular file");
            return Err(refused(what));
        }
        Err(e) => return Err(read_err_of(e)),
    };
    let file = File::from(fd);
    let kind = file.metadata().map_err(|e| read_err(path, e))?.file_type();
    let pipe = {
        use std::os::unix::fs::FileTypeExt;
        kind.is_fifo()
    };
    if !kind.is_file() && !pipe {
        return Err(refused(file_kind::in_words(kind)));
    }
    // Blocking from here on: a pipe's writer is waited for once it is
    // there, as `cat` waits; with none, a read ends at once.
    rustix::fs::fcntl_setfl(&file, OFlags::RDONLY).map_err(read_err_of)?;
    let bytes = read_file(path, file, limit)?;
    if pipe && bytes.is_empty() {
        return Err(KmsError::GivenPipeEmpty {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// Reads `name`, a file of `dir`, whole within `limit` bytes (through
/// [`open_own`]); `None` if it does not exist.
pub(crate) fn read_own_opt(
    dir: &DirFd,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, KmsError> {
    match open_own(dir, name, Own::Read)? {
        Some(file) => read_file(&dir.join(name), file, limit).map(Some),
        None => Ok(None),
    }
}

/// [`read_own_opt`] of a file that must exist.
pub(crate) fn read_own(dir: &DirFd, name: &str, limit: u64) -> Result<Vec<u8>, KmsError> {
    read_own_opt(dir, name, limit)?.ok_or_else(|| {
        read_err(
            &dir.join(name),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })
}

/// Whether `token` can go in an HTTP header as a bearer token: printable
/// ASCII, no spaces or control characters.
pub(crate) fn token_fits_header(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_graphic())
}

/// What is wrong with a token that cannot go in an HTTP header, for
/// messages that say where it came from.
pub(crate) const TOKEN_CHARACTERS: &str = "holds a character that cannot go in an HTTP header \
     (a line break, a space, a control or non-ASCII character): a token is printable ASCII";

/// Reads a management token from `path` (at most 4 KiB), without the
/// whitespace around it (a trailing newline). Its content never appears in
/// an error. A file with nothing else is refused by its path: sent, its
/// empty token drew the server's "missing or wrong bearer token", which
/// sent the user looking for a token option already given.
pub fn read_token_file(path: &Path) -> Result<String, KmsError> {
    let bytes = zeroize::Zeroizing::new(read_bounded(path, MAX_TOKEN_FILE)?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| KmsError::Config(format!("{} {TOKEN_CHARACTERS}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(KmsError::Config(format!(
            "{} {EMPTY_TOKEN}",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

/// What is wrong with a token file that is empty or only whitespace,
/// said after its path.
const EMPTY_TOKEN: &str =
    "holds no token (it is empty or only whitespace): give the server's DIR/token";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_its_bound_is_refused_by_name() -> Result<(), KmsError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'a'; 100])?;
        assert_eq!(read_bounded(&path, 100)?.len(), 100);
        let err = read_bounded(&path, 99).err().map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!(
                "{} is larger than 99 bytes: not the file expected",
                path.display()
            ))
        );
        // A device that never ends is cut off at the bound.
        let zero = Path::new("/dev/zero");
        if zero.exists() {
            assert!(matches!(
                read_bounded(zero, 4096),
                Err(KmsError::FileTooLarge { limit: 4096, .. })
            ));
        }
        let opened = DirFd::open(dir.path())?;
        assert!(read_own_opt(&opened, "none", 10)?.is_none());
        Ok(())
    }

    /// A token file with nothing but whitespace is refused by its path,
    /// not read as an empty token; a token's surrounding whitespace is
    /// dropped.
    #[test]
    fn an_empty_token_file_is_refused_by_name() -> Result<(), KmsError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("token");
        for empty in [&b""[..], b"\n", b" \t\r\n  "] {
            std::fs::write(&path, empty)?;
            let err = read_token_file(&path).err().map(|e| e.to_string());
            assert_eq!(
                err,
                Some(format!("configuration: {} {EMPTY_TOKEN}", path.display())),
                "{empty:?}"
            );
        }
        std::fs::write(&path, b"  0123456789abcdef\n")?;
        assert_eq!(read_token_file(&path)?, "0123456789abcdef");
        Ok(())
    }

    /// A file of the key directory is opened only as a regular file: a
    /// link to one, a named pipe (which would block the open), a
    /// directory are refused by what they are, at once.
    #[test]
    fn own_files_are_regular_files_never_links_or_pipes() -> Result<(), KmsError> {
        let dir = tempfile::tempdir()?;
        let opened = DirFd::open(dir.path())?;
        let file = dir.path().join("file");
        std::fs::write(&file, b"text")?;
        assert_eq!(read_own(&opened, "file", 10)?, b"text");
        assert!(read_own_opt(&opened, "none", 10)?.is_none());
        std::fs::create_dir(dir.path().join("sub"))?;
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link)?;
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .map_err(std::io::Error::from)?;
        for (name, what) in [
            ("link", "a symbolic link"),
            ("fifo", "a named pipe"),
            ("sub", "a directory"),
        ] {
            let path = dir.path().join(name);
            for how in [Own::Read, Own::Append] {
                let refused = open_own(&opened, name, how).err().map(|e| e.to_string());
                let said = format!(
                    "{} is {what}, not a regular file: the key server opens the files of its \
                     directory only as regular files, never through a link (put the file itself \
                     there)",
                    path.display()
                );
                assert_eq!(refused, Some(said), "{how:?}");
            }
        }
        // Appending creates the file, 0600, and appends.
        let log = dir.path().join("log");
        let mut appended = open_own(&opened, "log", Own::Append)?.ok_or(KmsError::NotFound)?;
        std::io::Write::write_all(&mut appended, b"one")?;
        std::io::Write::write_all(
            &mut open_own(&opened, "log", Own::Append)?.ok_or(KmsError::NotFound)?,
            b"two",
        )?;
        assert_eq!(std::fs::read(&log)?, b"onetwo");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&log)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&file)?, b"text");
        Ok(())
    }
}
