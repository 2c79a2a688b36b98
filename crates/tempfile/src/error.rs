//! The error type of `seccs-tempfile`, and how it maps onto [`std::io::Error`].

use std::io;

/// What can go wrong with an ephemeral file.
///
/// The `Read`/`Write`/`Seek` impls return [`io::Error`]; an [`Error`] converts
/// into one, and [`Error::Tampered`] becomes [`io::ErrorKind::InvalidData`], so
/// a caller that only sees `io::Error` can still tell tampering apart from an
/// I/O failure (and can get this enum back with [`io::Error::get_ref`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying file failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A block on disk did not authenticate: it was changed, moved, swapped,
    /// rolled back to an older version, cut off or appended to. A failed
    /// decryption never says which.
    ///
    /// A read that meets such a block fails whole: it returns none of the
    /// bytes it covered, those of sound blocks before the damaged one
    /// included, as `std::io::Read` returns an error or bytes, never both.
    /// Read in pieces of one block to get every sound one.
    #[error(
        "ephemeral file block {block} failed authentication: the ciphertext on disk was modified"
    )]
    Tampered {
        /// Index of the block that failed (one past the last block when
        /// bytes were added after the file's end).
        block: u64,
    },
    /// The footer of a persisted file did not authenticate under the given key
    /// (wrong key, or the footer was modified).
    #[error("persisted ephemeral file failed authentication: wrong key or modified file")]
    FooterTampered,
    /// The bytes are not a persisted ephemeral file.
    #[error("not a persisted seccs ephemeral file")]
    UnknownFormat,
    /// A persisted file of a format version this code does not read.
    #[error("unsupported persisted ephemeral file version {0}")]
    UnsupportedVersion(u8),
    /// A persisted file whose footer (magic and version this code reads)
    /// names a cipher suite it does not know. The footer is authenticated
    /// under its suite, so nothing more of it can be checked: a newer
    /// seccs may have written it, or the byte was altered.
    #[error(
        "the persisted ephemeral file's footer names cipher suite {suite}, which this build \
         does not know (it knows 1 to 3: AES-128/192/256-GCM): {why}",
        suite = .0,
        why = if *.0 > 3 { "written by a newer seccs, unless altered" } else { "altered or damaged" }
    )]
    UnknownSuite(u8),
    /// A key of a length other than 16, 24 or 32 bytes.
    #[error("an ephemeral file key must be 16, 24 or 32 bytes, got {0}")]
    KeySize(usize),
    /// A block size that is not a power of two between 1 KiB and 1 MiB.
    #[error("block size must be a power of two from 1 KiB to 1 MiB, got {0}")]
    BlockSize(usize),
    /// A write to a handle opened read-only (a reopened persisted file).
    #[error("this ephemeral file is read-only")]
    ReadOnly,
    /// The file sealed 2^32 blocks under one key, the limit for random
    /// 96-bit nonces; copy it into a fresh file.
    #[error("ephemeral file reached the limit of 2^32 block writes under one key")]
    TooManyWrites,
    /// A write or `set_len` would make the plaintext longer than
    /// [`format::MAX_FILE_SIZE`](crate::format::MAX_FILE_SIZE) bytes.
    #[error("ephemeral files are limited to {max} bytes; this call would reach {wanted}")]
    FileTooLarge {
        /// The offset or length the call asked for (saturated at `u64::MAX`).
        wanted: u64,
        /// The limit.
        max: u64,
    },
    /// The file has more block slots (holes included) than a persisted
    /// footer may list,
    /// [`format::MAX_PERSISTED_SLOTS`](crate::format::MAX_PERSISTED_SLOTS).
    #[error("cannot persist an ephemeral file of {slots} block slots; the limit is {max}")]
    PersistTooLarge {
        /// Slots the file has.
        slots: u64,
        /// The limit.
        max: u64,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            e @ (Error::Tampered { .. }
            | Error::FooterTampered
            | Error::UnknownFormat
            | Error::UnsupportedVersion(_)
            | Error::UnknownSuite(_)) => io::Error::new(io::ErrorKind::InvalidData, e),
            e @ (Error::KeySize(_) | Error::BlockSize(_)) => {
                io::Error::new(io::ErrorKind::InvalidInput, e)
            }
            e @ Error::ReadOnly => io::Error::new(io::ErrorKind::PermissionDenied, e),
            e @ (Error::FileTooLarge { .. } | Error::PersistTooLarge { .. }) => {
                io::Error::new(io::ErrorKind::FileTooLarge, e)
            }
            e @ (Error::TooManyWrites | Error::Random(_)) => io::Error::other(e),
        }
    }
}

impl From<getrandom::Error> for Error {
    fn from(e: getrandom::Error) -> Self {
        Error::Random(e.to_string())
    }
}
