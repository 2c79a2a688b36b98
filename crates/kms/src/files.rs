//! Files the key service reads whole, each within a bound: a device such
//! as `/dev/zero`, or the wrong file, is refused once it passes the bound
//! instead of filling memory. And the management token, as read from a
//! file and as it may go in an HTTP header.

use std::io::Read;
use std::path::Path;

use crate::KmsError;

/// The largest token file read.
pub(crate) const MAX_TOKEN_FILE: u64 = 4096;
/// The largest certificate or private key file (PEM) read.
pub(crate) const MAX_PEM_FILE: u64 = 4 << 20;
/// The shortest management token a server accepts, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// Reads `path` whole, or `None` if it does not exist; one longer than
/// `limit` bytes is [`KmsError::FileTooLarge`], refused before it is all
/// in memory.
pub(crate) fn read_bounded_opt(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, KmsError> {
    match std::fs::File::open(path) {
        Ok(file) => read_file(path, file, limit).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(read_err(path, source)),
    }
}

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
/// an error.
pub fn read_token_file(path: &Path) -> Result<String, KmsError> {
    let bytes = zeroize::Zeroizing::new(read_bounded(path, MAX_TOKEN_FILE)?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| KmsError::Config(format!("{} {TOKEN_CHARACTERS}", path.display())))?;
    Ok(text.trim().to_owned())
}

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
        assert!(read_bounded_opt(&dir.path().join("none"), 10)?.is_none());
        Ok(())
    }
}
