//! Temporary files that are encrypted and authenticated on disk, with the
//! surface of the `tempfile` crate.
//!
//! - [`tempfile()`] / [`tempfile_in`]: an unnamed [`EphemeralFile`], unlinked
//!   at creation (Linux: `O_TMPFILE`), mode 0600.
//! - [`NamedEphemeralFile`]: a named one, removed on drop, that can be
//!   [`persist`](NamedEphemeralFile::persist)ed and reopened with its key
//!   ([`EphemeralFile::open_persisted`]).
//! - [`SpooledTempFile`] / [`spooled_tempfile`]: in memory (zeroizing buffer)
//!   up to a threshold, then an encrypted file.
//! - [`Builder`]: name parts, key size ([`KeySize`]: AES-128/192/256-GCM),
//!   caller's key ([`FileKey`]), block size.
//! - `AsyncEphemeralFile` (feature `tokio`): tokio's `AsyncRead`,
//!   `AsyncWrite` and `AsyncSeek`.
//! - [`format`](mod@format): the block format and the persisted footer.
//!
//! ```
//! use std::io::{Read, Seek, SeekFrom, Write};
//!
//! let mut f = seccs_tempfile::tempfile()?;
//! f.write_all(b"plaintext that never reaches the disk")?;
//! f.seek(SeekFrom::Start(10))?;
//! let mut s = String::new();
//! f.read_to_string(&mut s)?;
//! assert_eq!(s, "that never reaches the disk");
//!
//! // On disk: sealed blocks only.
//! let raw = f.read_ciphertext()?;
//! assert!(!raw.windows(10).any(|w| w == b"plaintext "));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # The seed's flaw, and the fix
//!
//! The Python seed (Ephemeral) encrypted with AES-CTR and authenticated
//! nothing; it assumed nobody modifies the ciphertext. Whoever could write
//! the file could flip plaintext bits, move or replay blocks, or cut the file
//! short, and the reader got wrong data. Here every block is sealed with
//! AES-GCM under a fresh random nonce, with the file's random id and the
//! block's index and version as associated data; the key, the length and the
//! block versions live only in memory. A modified, moved, swapped,
//! rolled-back, truncated or extended file makes the next read of the
//! affected block fail with [`std::io::ErrorKind::InvalidData`] (inner error
//! [`Error::Tampered`]) — never wrong data. See [`format`](mod@format) for the table of
//! attacks and what catches each.
//!
//! # Threads
//!
//! A file that reads or writes long runs (8 blocks or more in one call)
//! starts one I/O thread of its own, which ends with the file: it writes
//! sealed runs behind the caller and reads ahead of a sequential reader, so
//! that the kernel's copies run beside the cryptography. A write it fails
//! is reported by the next call on the file, and by every call after it, as
//! `std::io::BufWriter` reports a failed write on its next `flush`; call
//! `flush` or `sync_all` to know that everything written is on disk. If the
//! thread cannot be started, the work stays on the calling thread.
//!
//! # What stays in the clear
//!
//! The size of the file on disk (rounded up to whole blocks), the time of
//! each write and which blocks it touched. Keys and cached plaintext are
//! zeroized when dropped.

#[cfg(feature = "tokio")]
mod async_file;
mod background;
mod blocks;
mod builder;
mod error;
mod file;
pub mod format;
mod key;
mod named;
mod positional;
mod spooled;

use std::io;
use std::path::Path;

#[cfg(feature = "tokio")]
pub use async_file::AsyncEphemeralFile;
pub use builder::Builder;
pub use error::Error;
pub use file::{EphemeralFile, Metadata};
pub use key::{FileKey, KeySize};
pub use named::{NamedEphemeralFile, PersistError};
pub use spooled::{SpooledTempFile, spooled_tempfile};

/// An unnamed encrypted file in the system's temporary directory, unlinked
/// at creation, with a fresh AES-256 key and 4 KiB blocks.
pub fn tempfile() -> io::Result<EphemeralFile> {
    Builder::new().unnamed()
}

/// An unnamed encrypted file in `dir`, unlinked at creation.
pub fn tempfile_in<P: AsRef<Path>>(dir: P) -> io::Result<EphemeralFile> {
    Builder::new().unnamed_in(dir)
}
