//! [`SpooledTempFile`]: plaintext kept in memory, in a zeroizing buffer, up
//! to a threshold, then moved into an [`EphemeralFile`].

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use zeroize::{Zeroize, Zeroizing};

use crate::{Builder, EphemeralFile};

/// A growable buffer whose every copy is zeroized: it never lets `Vec` move
/// its bytes on its own (which would leave the old allocation unwiped), and
/// zeroes bytes it cuts off.
struct SecretBuf(Zeroizing<Vec<u8>>);

impl SecretBuf {
    fn new() -> Self {
        Self(Zeroizing::new(Vec::new()))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Makes room for `total` bytes; a size that does not fit the address
    /// space or that the allocator refuses is an `OutOfMemory` error, never
    /// a panic or an abort.
    fn reserve_total(&mut self, total: usize) -> io::Result<()> {
        if total > self.0.capacity() {
            let doubled = total.max(self.0.capacity().saturating_mul(2)).max(256);
            let mut grown = Zeroizing::new(Vec::new());
            if grown.try_reserve_exact(doubled).is_err() {
                grown.try_reserve_exact(total).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!("cannot hold {total} bytes in memory: {e}"),
                    )
                })?;
            }
            grown.extend_from_slice(&self.0);
            // The old allocation is zeroized as it drops here.
            self.0 = grown;
        }
        Ok(())
    }

    fn resize(&mut self, len: usize) -> io::Result<()> {
        if len < self.0.len() {
            self.0[len..].zeroize();
            self.0.truncate(len);
        } else {
            self.reserve_total(len)?;
            self.0.resize(len, 0);
        }
        Ok(())
    }

    fn write_at(&mut self, pos: usize, data: &[u8]) -> io::Result<()> {
        // Only a spool that never rolls over (`max_size` of `usize::MAX`)
        // can be asked for an end past the address space.
        let end = pos
            .checked_add(data.len())
            .ok_or_else(|| io::Error::other("write past the end of memory"))?;
        if end > self.0.len() {
            self.resize(end)?;
        }
        self.0[pos..end].copy_from_slice(data);
        Ok(())
    }
}

enum Inner {
    Memory { buf: SecretBuf, pos: u64 },
    Disk(EphemeralFile),
}

/// A temporary file that stays in memory until it grows past `max_size`
/// bytes, then moves to an encrypted [`EphemeralFile`] — in place of the
/// `tempfile` crate's `SpooledTempFile` wherever plaintext is spooled (a pipe
/// read twice, stdin saved to the share network). Same `new`, `is_rolled`,
/// `roll`, `set_len`, `Read`, `Write` and `Seek`; no `into_inner` or
/// `into_file` (they would hand out the plaintext buffer or a raw file).
///
/// In memory the plaintext sits in a buffer that is zeroized when it grows,
/// shrinks, rolls over or is dropped. A write or [`set_len`](Self::set_len)
/// that would need more memory than can be had while still under
/// `max_size` (a seek far past the end with a huge `max_size`) fails with
/// [`io::ErrorKind::OutOfMemory`] and leaves the data as it was.
///
/// ```
/// use std::io::{Read, Seek, SeekFrom, Write};
///
/// let mut f = seccs_tempfile::spooled_tempfile(16);
/// f.write_all(b"short")?;
/// assert!(!f.is_rolled());
/// f.write_all(b", then longer than sixteen bytes")?;
/// assert!(f.is_rolled());
/// f.seek(SeekFrom::Start(0))?;
/// let mut s = String::new();
/// f.read_to_string(&mut s)?;
/// assert_eq!(s, "short, then longer than sixteen bytes");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SpooledTempFile {
    max_size: usize,
    inner: Inner,
    builder: Builder,
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for SpooledTempFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpooledTempFile")
            .field("max_size", &self.max_size)
            .field("rolled", &self.is_rolled())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl SpooledTempFile {
    /// A spooled file with default options that rolls over past `max_size`.
    pub fn new(max_size: usize) -> Self {
        Self::with_builder(max_size, Builder::new(), None)
    }

    pub(crate) fn with_builder(max_size: usize, builder: Builder, dir: Option<PathBuf>) -> Self {
        Self {
            max_size,
            inner: Inner::Memory {
                buf: SecretBuf::new(),
                pos: 0,
            },
            builder,
            dir,
        }
    }

    /// Whether the data has moved to an encrypted file.
    pub fn is_rolled(&self) -> bool {
        matches!(self.inner, Inner::Disk(_))
    }

    /// The plaintext length.
    pub fn len(&self) -> u64 {
        match &self.inner {
            Inner::Memory { buf, .. } => buf.len() as u64,
            Inner::Disk(f) => f.len(),
        }
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the data to an encrypted file now (nothing happens if it is
    /// already there).
    pub fn roll(&mut self) -> io::Result<()> {
        if let Inner::Memory { buf, pos } = &self.inner {
            let mut file = match &self.dir {
                Some(dir) => self.builder.unnamed_in(dir)?,
                None => self.builder.unnamed()?,
            };
            file.write_all(&buf.0)?;
            file.seek(SeekFrom::Start(*pos))?;
            // Dropping the buffer zeroizes it.
            self.inner = Inner::Disk(file);
        }
        Ok(())
    }

    /// Truncates or extends to `size` bytes, rolling over if it exceeds the
    /// threshold.
    pub fn set_len(&mut self, size: u64) -> io::Result<()> {
        if size > self.max_size as u64 {
            self.roll()?;
        }
        match &mut self.inner {
            Inner::Memory { buf, .. } => {
                buf.resize(usize::try_from(size).map_err(io::Error::other)?)
            }
            Inner::Disk(f) => f.set_len(size),
        }
    }

    /// The encrypted file, once rolled over.
    pub fn as_file_mut(&mut self) -> Option<&mut EphemeralFile> {
        match &mut self.inner {
            Inner::Memory { .. } => None,
            Inner::Disk(f) => Some(f),
        }
    }
}

impl Read for SpooledTempFile {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Memory { buf, pos } => {
                let start = (*pos).min(buf.len() as u64) as usize;
                let n = out.len().min(buf.len() - start);
                out[..n].copy_from_slice(&buf.0[start..start + n]);
                *pos += n as u64;
                Ok(n)
            }
            Inner::Disk(f) => f.read(out),
        }
    }
}

impl Write for SpooledTempFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Inner::Memory { pos, .. } = &self.inner {
            let end = pos.saturating_add(data.len() as u64);
            if end > self.max_size as u64 {
                self.roll()?;
            }
        }
        match &mut self.inner {
            Inner::Memory { buf, pos } => {
                let at = usize::try_from(*pos).map_err(io::Error::other)?;
                buf.write_at(at, data)?;
                *pos += data.len() as u64;
                Ok(data.len())
            }
            Inner::Disk(f) => f.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Memory { .. } => Ok(()),
            Inner::Disk(f) => f.flush(),
        }
    }
}

impl Seek for SpooledTempFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match &mut self.inner {
            Inner::Memory { buf, pos } => {
                let target = match to {
                    SeekFrom::Start(p) => Some(p),
                    SeekFrom::End(d) => (buf.len() as u64).checked_add_signed(d),
                    SeekFrom::Current(d) => pos.checked_add_signed(d),
                };
                *pos = target.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "invalid seek to a negative or overflowing position",
                    )
                })?;
                Ok(*pos)
            }
            Inner::Disk(f) => f.seek(to),
        }
    }
}

/// A spooled file with default options: in memory up to `max_size` bytes.
pub fn spooled_tempfile(max_size: usize) -> SpooledTempFile {
    SpooledTempFile::new(max_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_far_past_the_end_in_memory_is_an_error_not_a_panic() -> io::Result<()> {
        let mut f = spooled_tempfile(usize::MAX);
        f.write_all(b"kept")?;
        for at in [u64::MAX - 1, 1 << 60, isize::MAX as u64] {
            f.seek(SeekFrom::Start(at))?;
            let e = f.write(b"a").err().map(|e| e.kind());
            assert_eq!(e, Some(io::ErrorKind::OutOfMemory), "at {at}");
            assert!(!f.is_rolled());
            assert_eq!(f.len(), 4);
        }
        for size in [u64::MAX - 1, 1 << 60] {
            let e = f.set_len(size).err().map(|e| e.kind());
            assert_eq!(e, Some(io::ErrorKind::OutOfMemory), "size {size}");
        }
        f.seek(SeekFrom::Start(0))?;
        let mut back = String::new();
        f.read_to_string(&mut back)?;
        assert_eq!(back, "kept");
        f.write_all(b", still usable")?;
        assert_eq!(f.len(), 18);
        Ok(())
    }

    #[test]
    fn a_write_far_past_a_small_threshold_rolls_over() -> io::Result<()> {
        let mut f = spooled_tempfile(1 << 20);
        f.seek(SeekFrom::Start(1 << 40))?;
        // Rolled over: the encrypted file answers (or refuses) the size.
        let r = f.write(b"a");
        assert!(f.is_rolled(), "{r:?}");
        Ok(())
    }
}
