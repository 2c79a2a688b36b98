//! Restored files keep their holes: a writer that seeks over whole blocks
//! of zeros instead of writing them, so a sparse file (a disk image, a
//! database with preallocated space) comes back taking the room it took
//! when it was put, not its full length. The bytes read back are the same
//! either way; only what the file system allocates differs.

use std::io::{self, Seek, SeekFrom, Write};

/// The unit of a hole: a block of this many zeros, at an offset that is a
/// multiple of it, is skipped. File systems allocate in blocks of 4 KiB.
const HOLE_BLOCK: usize = 4096;

/// How much is gathered before it is written: a multiple of
/// [`HOLE_BLOCK`], so that blocks stay aligned to the file's offsets.
const BUFFER: usize = 256 * HOLE_BLOCK;

/// Writes into a new, empty file, leaving holes where whole aligned blocks
/// are zero. [`SparseWriter::finish`] must be called to set the length
/// when the file ends in a hole, and to hand the file back.
pub struct SparseWriter<F: Write + Seek> {
    file: F,
    buffer: Vec<u8>,
    /// Bytes of the file before `buffer`.
    written: u64,
    /// Where the file's cursor is; behind `written` when holes were skipped.
    cursor: u64,
}

impl<F: Write + Seek> SparseWriter<F> {
    /// A writer into `file`, which must be empty and at offset 0.
    pub fn new(file: F) -> Self {
        Self {
            file,
            buffer: Vec::with_capacity(BUFFER),
            written: 0,
            cursor: 0,
        }
    }

    /// Writes what is buffered, gives the file its whole length (a trailing
    /// hole has written nothing), and returns the file.
    pub fn finish(mut self, set_len: impl FnOnce(&F, u64) -> io::Result<()>) -> io::Result<F> {
        self.write_buffer()?;
        if self.cursor < self.written {
            set_len(&self.file, self.written)?;
        }
        self.file.flush()?;
        Ok(self.file)
    }

    fn write_buffer(&mut self) -> io::Result<()> {
        let mut data = &self.buffer[..];
        while !data.is_empty() {
            let zeros = data
                .chunks(HOLE_BLOCK)
                .take_while(|b| b.len() == HOLE_BLOCK && b.iter().all(|&x| x == 0))
                .count()
                * HOLE_BLOCK;
            self.written += zeros as u64;
            data = &data[zeros..];
            let bytes = data
                .chunks(HOLE_BLOCK)
                .take_while(|b| b.len() < HOLE_BLOCK || b.iter().any(|&x| x != 0))
                .map(<[u8]>::len)
                .sum::<usize>();
            if bytes > 0 {
                if self.cursor != self.written {
                    self.file.seek(SeekFrom::Start(self.written))?;
                }
                self.file.write_all(&data[..bytes])?;
                self.written += bytes as u64;
                self.cursor = self.written;
                data = &data[bytes..];
            }
        }
        self.buffer.clear();
        Ok(())
    }
}

impl<F: Write + Seek> Write for SparseWriter<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BUFFER - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == BUFFER {
            self.write_buffer()?;
        }
        Ok(n)
    }

    /// Buffered bytes stay until the buffer is full or the writer is
    /// finished: a flush in the middle would break block alignment.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::MetadataExt;

    fn write_sparse(path: &std::path::Path, data: &[u8], piece: usize) -> io::Result<()> {
        let mut w = SparseWriter::new(File::create(path)?);
        for part in data.chunks(piece) {
            w.write_all(part)?;
        }
        w.finish(|f, len| f.set_len(len))?;
        Ok(())
    }

    /// Zero runs of every shape, aligned or not, at the start, in the
    /// middle and at the end, written in pieces of every size: the bytes
    /// read back are always the bytes written.
    #[test]
    fn what_is_read_back_is_what_was_written() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        let block = HOLE_BLOCK;
        let shapes: Vec<Vec<(usize, bool)>> = vec![
            vec![],
            vec![(1, false)],
            vec![(block, true)],
            vec![(block * 3 + 5, true)],
            vec![(7, false), (block * 2, true), (9, false)],
            vec![(block, true), (block, false), (BUFFER * 2 + 3, true)],
            vec![(BUFFER - 1, false), (BUFFER + block, true), (1, false)],
            vec![(block - 1, true), (2, false), (block * 5, true)],
        ];
        for shape in shapes {
            let mut data = Vec::new();
            for (i, (len, zero)) in shape.iter().enumerate() {
                data.extend((0..*len).map(|j| if *zero { 0 } else { (i + j % 250 + 1) as u8 }));
            }
            for piece in [1, 1000, block, BUFFER + 17] {
                write_sparse(&path, &data, piece)?;
                assert_eq!(
                    std::fs::read(&path)?,
                    data,
                    "{shape:?} in pieces of {piece}"
                );
            }
        }
        Ok(())
    }

    /// A file of 8 MiB with 8 KiB of data at each end takes a few blocks.
    #[test]
    fn zero_blocks_become_holes() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        let mut data = vec![0u8; 8 << 20];
        data[..8192].fill(0xAB);
        let len = data.len();
        data[len - 8192..].fill(0xCD);
        write_sparse(&path, &data, 1 << 16)?;
        let meta = std::fs::metadata(&path)?;
        assert_eq!(meta.len(), data.len() as u64);
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "{} bytes allocated for 16 KiB of data",
            meta.blocks() * 512
        );
        // A trailing hole still gives the file its length.
        let mut tail = vec![0x11u8; 100];
        tail.resize(3 << 20, 0);
        write_sparse(&path, &tail, 4096)?;
        assert_eq!(std::fs::read(&path)?, tail);
        Ok(())
    }
}
