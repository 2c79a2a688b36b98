//! Temporary files that are encrypted and authenticated on disk, modelled
//! on the `tempfile` crate (the same names where the meaning is the same)
//! but not a drop-in replacement for it.
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
//! # What mirrors the `tempfile` crate, and what does not
//!
//! The bytes on disk are ciphertext, and the key, the length and every
//! block's version live only in this process's memory. So no function here
//! hands out a `std::fs::File` (reading or writing one would bypass the
//! encryption and the authentication), and nothing makes a second handle
//! on the same data (it would need the first one's memory).
//!
//! | `tempfile` | here |
//! |---|---|
//! | `tempfile()`, `tempfile_in(dir)` | same names; return an [`EphemeralFile`] (`Read`, `Write`, `Seek`, `set_len`, `sync_all`, …), not a `std::fs::File` |
//! | `NamedTempFile::{new, new_in, with_prefix, with_prefix_in, with_suffix, with_suffix_in, path, as_file, as_file_mut, persist, persist_noclobber, keep}` | [`NamedEphemeralFile`], same methods and `AsRef<Path>`, `AsFd`, `AsRawFd` and `From<PersistError>`; `persist`, `persist_noclobber` and `keep` leave the ciphertext with a sealed footer and return the [`FileKey`] it reopens with ([`EphemeralFile::open_persisted`]), not a `File`; `keep` also returns the path |
//! | `SpooledTempFile::{new, is_rolled, roll, set_len}`, `spooled_tempfile` | [`SpooledTempFile`], same; `as_file_mut` gives the [`EphemeralFile`] once rolled |
//! | `Builder::{new, prefix, suffix, rand_bytes, tempfile, tempfile_in}` | [`Builder`], same; plus `key_size`, `key`, `block_size`, `unnamed[_in]`, `spooled[_in]` |
//!
//! Not provided: `try_clone` and `reopen` (a second handle would need the
//! in-memory state), `into_file`, `into_parts`, `into_temp_path`,
//! `SpooledTempFile::into_inner`/`into_file` (each hands out a raw `File`
//! or the plaintext buffer), `Builder::make` and `make_in` (they hand the
//! caller a path at which to create a file itself, which would be a plain
//! file, not an encrypted one), `Builder::append`, `permissions`,
//! `disable_cleanup` (files are always mode 0600 and removed unless
//! persisted or kept), `tempdir` and `TempDir` (a directory cannot be
//! encrypted: use the `tempfile` crate's).
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
//! starts one I/O thread of its own: it writes sealed runs behind the
//! caller and reads ahead of a sequential reader, so that the kernel's
//! copies run beside the cryptography. The thread ends once it has been
//! idle for 100 ms (or the file is dropped) and the next long run starts
//! another, so files left open hold no threads: 1000 files of 64 KiB each
//! written and read back, then left open, leave the process with its main
//! thread and rayon's pool (which opens long reads on all cores). A write it fails
//! is reported by the next call on the file, and by every call after it, as
//! `std::io::BufWriter` reports a failed write on its next `flush`; call
//! `flush` or `sync_all` to know that everything written is on disk. If the
//! thread cannot be started, the work stays on the calling thread.
//!
//! # Limits and failures
//!
//! A file holds at most [`format::MAX_FILE_SIZE`] (2^62) bytes: a write or
//! [`EphemeralFile::set_len`] that would reach past it fails in that call
//! with [`std::io::ErrorKind::FileTooLarge`] ([`Error::FileTooLarge`]), and
//! the file system's own limit on a file's size (or `RLIMIT_FSIZE`)
//! usually comes first: a write that reaches past the end of the file on
//! disk grows it first, so a write past that limit fails in that call and
//! changes nothing. A full disk is another matter: growing a file on disk
//! makes a sparse file and reserves no space (as with the `tempfile`
//! crate's files behind a `BufWriter`), so running out of space is
//! reported by the call that writes the bytes back, often a later one
//! (`flush`, `sync_all`, or a read or write that moves the window), and
//! from then on the file is failed, as below: keep what must survive a
//! full disk elsewhere, or check free space first. A hole (a write far past
//! the end, or `set_len`) costs no memory and, on file systems with sparse
//! files, no disk. A persisted file's footer lists every block slot, holes
//! included, so [`persist`](NamedEphemeralFile::persist) refuses a file of
//! more than [`format::MAX_PERSISTED_SLOTS`] slots.
//!
//! Each open file reserves a 1 MiB cache window of address space, touched
//! only as it is used, and keeps the buffers its reads and writes needed
//! until it is dropped: up to about 1 MiB of slots read through, and two
//! buffers of sealed slots for the background thread (up to 2 MiB each
//! while a file is read in order). Measured on Linux (x86-64, glibc), files
//! left open: 1000 files of 100 bytes, 25 MB resident and 1 GiB virtual in
//! all; 1000 files of 64 KiB, each written and read back, about 200 KiB
//! resident each (207 MB); 100 files of 4 MiB, about 6.4 MB resident each.
//! Drop a file, or keep it in a [`SpooledTempFile`] while it is small, when
//! many must be open at once.
//!
//! A call that fails leaves the file as it was, or, if it had already
//! changed part of it (a write whose later blocks could not be written),
//! marks the file failed: that call and every later one report the error,
//! and no read returns bytes that were never written.
//!
//! # Fork
//!
//! A file's key, block versions and pool of random nonces are process
//! memory: after `fork()` without `exec`, parent and child each hold a copy
//! and would seal blocks of the same file independently. Do not write a file
//! from both sides of a fork (reading it from one side only is fine). As a
//! defence, the nonce pool is refilled when the process id changes, so the
//! two sides never seal with the same buffered nonces.
//!
//! # What stays in the clear
//!
//! The size of the file on disk (rounded up to whole blocks), the time of
//! each write and which blocks it touched.
//!
//! In memory, the [`FileKey`], cached plaintext and the spooled buffer are
//! zeroized when dropped, and so is the AES-192 key schedule and the one
//! that seals and opens a persisted footer (RustCrypto's `aes-gcm`). The
//! blocks of AES-128 and AES-256 files are sealed with `ring`, about three
//! times as fast, whose expanded key schedule is **not** wiped when the file
//! is dropped: the key can be recovered from it (for AES-256 its first two
//! round keys are the key) in freed memory, and a scan of a test process
//! found copies in other memory its sealing threads had used, until that
//! memory is reused: whoever can read the process's memory or a core dump of
//! it may find the key after the file is gone. Choose
//! [`KeySize::Aes192`] where that matters more than throughput.

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
mod versions;

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
