//! [`AsyncEphemeralFile`]: tokio's `AsyncRead`, `AsyncWrite` and `AsyncSeek`
//! over an [`EphemeralFile`] (cargo feature `tokio`).
//!
//! As `tokio::fs::File` does, every operation runs on tokio's blocking pool
//! (`spawn_blocking`), one at a time: the file moves into the blocking task
//! and comes back with the result. Writes are written behind: `poll_write`
//! returns as soon as the bytes are handed over, and a failure is kept until
//! it is said by the next write, by `flush` (and `shutdown`), or by the next
//! method that runs on the pool (`len`, `set_len`, `sync_all`, …), as
//! `tokio::fs::File` keeps it: a read or a seek in between does not take it,
//! so a `flush` always says a write that failed before it. Bytes read ahead
//! and bytes handed to a write sit in zeroizing buffers.

use std::any::Any;
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::EphemeralFile;

/// Most bytes one blocking read or write moves.
const MAX_CHUNK: usize = 2 << 20;

type Bytes = Zeroizing<Vec<u8>>;

enum Op {
    Read(io::Result<Bytes>),
    Write(io::Result<()>),
    Seek(io::Result<u64>),
    Flush(io::Result<()>),
    /// The outcome of a method that runs on the blocking pool.
    Other(io::Result<Box<dyn Any + Send>>),
}

/// What a blocking task gives back: what it did, the file, its position.
type Done = (Op, EphemeralFile, u64);

enum State {
    Idle(Option<EphemeralFile>),
    Busy(JoinHandle<Done>),
}

/// An [`EphemeralFile`] for tokio: `AsyncRead`, `AsyncWrite`, `AsyncSeek`.
///
/// ```
/// use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let mut f = seccs_tempfile::AsyncEphemeralFile::new().await?;
/// f.write_all(b"async and sealed").await?;
/// f.seek(std::io::SeekFrom::Start(10)).await?;
/// let mut s = String::new();
/// f.read_to_string(&mut s).await?;
/// assert_eq!(s, "sealed");
/// # Ok(())
/// # }
/// ```
pub struct AsyncEphemeralFile {
    state: State,
    /// Bytes read ahead of the caller, and how many of them were consumed.
    ahead: Bytes,
    ahead_used: usize,
    /// Position of the file in the blocking task, once it is idle.
    file_pos: u64,
    /// A read came back empty: end of file, for the pending `poll_read`.
    eof: bool,
    flushing: bool,
    /// A write behind that failed, not said yet (the first, if several).
    write_error: Option<io::Error>,
}

impl std::fmt::Debug for AsyncEphemeralFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncEphemeralFile")
            .field("busy", &matches!(self.state, State::Busy(_)))
            .finish_non_exhaustive()
    }
}

fn lost() -> io::Error {
    io::Error::other("the ephemeral file was lost when a blocking task failed")
}

impl AsyncEphemeralFile {
    /// A fresh unnamed file with default options (see
    /// [`tempfile`](crate::tempfile)), made on the blocking pool.
    pub async fn new() -> io::Result<Self> {
        let file = tokio::task::spawn_blocking(crate::tempfile)
            .await
            .map_err(io::Error::other)??;
        Ok(Self::from_std(file))
    }

    /// Wraps a file made synchronously (for example with a
    /// [`Builder`](crate::Builder)); keeps its position.
    pub fn from_std(mut file: EphemeralFile) -> Self {
        let file_pos = file.stream_position().unwrap_or(0);
        Self {
            state: State::Idle(Some(file)),
            ahead: Zeroizing::new(Vec::new()),
            ahead_used: 0,
            file_pos,
            eof: false,
            flushing: false,
            write_error: None,
        }
    }

    /// The write behind that failed and was not said yet, as an error.
    fn take_write_error(&mut self) -> io::Result<()> {
        self.write_error.take().map_or(Ok(()), Err)
    }

    fn ahead_left(&self) -> usize {
        self.ahead.len() - self.ahead_used
    }

    /// Drives a running operation to its end; `Ready(Ok(None))` when idle.
    fn poll_op(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Op>>> {
        match &mut self.state {
            State::Idle(_) => Poll::Ready(Ok(None)),
            State::Busy(handle) => {
                let done = ready!(Pin::new(handle).poll(cx));
                match done {
                    Ok((op, file, pos)) => {
                        self.state = State::Idle(Some(file));
                        self.file_pos = pos;
                        Poll::Ready(Ok(Some(op)))
                    }
                    Err(e) => {
                        self.state = State::Idle(None);
                        Poll::Ready(Err(io::Error::other(e)))
                    }
                }
            }
        }
    }

    /// Drives a running operation to its end and files its outcome: read
    /// bytes go ahead, a failed write is kept for the next write or flush,
    /// other errors are returned. `Ready(Ok(Some(op)))` hands back
    /// a finished flush or seek for their own poll functions.
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Op>>> {
        loop {
            match ready!(self.poll_op(cx))? {
                None => return Poll::Ready(Ok(None)),
                Some(Op::Read(r)) => {
                    let data = r?;
                    self.eof = data.is_empty();
                    self.ahead = data;
                    self.ahead_used = 0;
                }
                Some(Op::Write(r)) => {
                    if let Err(e) = r {
                        self.write_error.get_or_insert(e);
                    }
                }
                Some(op @ (Op::Seek(_) | Op::Flush(_) | Op::Other(_))) => {
                    return Poll::Ready(Ok(Some(op)));
                }
            }
        }
    }

    /// Starts `work` on the blocking pool with the idle file. The file is
    /// first moved back over bytes read ahead and not consumed.
    fn spawn<W>(&mut self, work: W) -> io::Result<()>
    where
        W: FnOnce(&mut EphemeralFile) -> Op + Send + 'static,
    {
        let State::Idle(slot) = &mut self.state else {
            return Err(io::Error::other("an ephemeral file operation is pending"));
        };
        let mut file = slot.take().ok_or_else(lost)?;
        let back = self.ahead_left() as i64;
        self.ahead = Zeroizing::new(Vec::new());
        self.ahead_used = 0;
        self.eof = false;
        self.state = State::Busy(tokio::task::spawn_blocking(move || {
            let op = match file.seek(SeekFrom::Current(-back)) {
                Ok(_) => work(&mut file),
                Err(e) => Op::Seek(Err(e)),
            };
            let pos = file.stream_position().unwrap_or(0);
            (op, file, pos)
        }));
        Ok(())
    }

    /// Runs `work` on the file once pending operations are done.
    async fn run<T, W>(&mut self, work: W) -> io::Result<T>
    where
        T: Send + 'static,
        W: FnOnce(&mut EphemeralFile) -> io::Result<T> + Send + 'static,
    {
        loop {
            match std::future::poll_fn(|cx| self.poll_settle(cx)).await? {
                None => break,
                Some(Op::Seek(r)) => drop(r?),
                Some(Op::Flush(r)) => {
                    self.flushing = false;
                    r?;
                }
                Some(_) => {}
            }
        }
        self.take_write_error()?;
        self.spawn(move |f| Op::Other(work(f).map(|t| Box::new(t) as Box<dyn Any + Send>)))?;
        match std::future::poll_fn(|cx| self.poll_op(cx)).await? {
            Some(Op::Other(r)) => r?
                .downcast::<T>()
                .map(|t| *t)
                .map_err(|_| io::Error::other("a blocking task returned the wrong type")),
            _ => Err(lost()),
        }
    }

    /// The plaintext length (after pending writes).
    pub async fn len(&mut self) -> io::Result<u64> {
        self.run(|f| Ok(f.len())).await
    }

    /// Truncates or extends the plaintext; see [`EphemeralFile::set_len`].
    pub async fn set_len(&mut self, size: u64) -> io::Result<()> {
        self.run(move |f| f.set_len(size)).await
    }

    /// Writes back and syncs to disk; see [`EphemeralFile::sync_all`].
    pub async fn sync_all(&mut self) -> io::Result<()> {
        self.run(|f| f.sync_all()).await
    }

    /// The raw bytes on disk; see [`EphemeralFile::read_ciphertext`].
    pub async fn read_ciphertext(&mut self) -> io::Result<Vec<u8>> {
        self.run(|f| f.read_ciphertext()).await
    }

    /// The synchronous file back, once pending operations are done, at the
    /// position this handle had.
    pub async fn into_std(mut self) -> io::Result<EphemeralFile> {
        self.run(|_| Ok(())).await?;
        match &mut self.state {
            State::Idle(f) => f.take().ok_or_else(lost),
            State::Busy(_) => Err(lost()),
        }
    }
}

impl AsyncRead for AsyncEphemeralFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ahead_left() > 0 {
                let n = this.ahead_left().min(buf.remaining());
                buf.put_slice(&this.ahead[this.ahead_used..this.ahead_used + n]);
                this.ahead_used += n;
                return Poll::Ready(Ok(()));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let busy = matches!(this.state, State::Busy(_));
            match ready!(this.poll_settle(cx))? {
                Some(Op::Flush(r)) => {
                    this.flushing = false;
                    r?;
                    continue;
                }
                Some(Op::Seek(r)) => {
                    r?;
                    continue;
                }
                Some(_) | None => {}
            }
            if busy && this.eof {
                this.eof = false;
                return Poll::Ready(Ok(()));
            }
            if this.ahead_left() > 0 {
                continue;
            }
            let want = buf.remaining().min(MAX_CHUNK);
            this.spawn(move |f| {
                let mut data = Zeroizing::new(vec![0u8; want]);
                Op::Read(f.read(&mut data).map(|n| {
                    data.truncate(n);
                    data
                }))
            })?;
        }
    }
}

impl AsyncWrite for AsyncEphemeralFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match ready!(this.poll_settle(cx))? {
            Some(Op::Flush(r)) => {
                this.flushing = false;
                r?;
            }
            Some(Op::Seek(r)) => {
                r?;
            }
            Some(_) | None => {}
        }
        this.take_write_error()?;
        let n = buf.len().min(MAX_CHUNK);
        let data: Bytes = Zeroizing::new(buf[..n].to_vec());
        this.spawn(move |f| Op::Write(f.write_all(&data)))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match ready!(this.poll_settle(cx))? {
                Some(Op::Flush(r)) => {
                    if this.flushing {
                        this.flushing = false;
                        return Poll::Ready(this.take_write_error().and(r));
                    }
                    r?;
                }
                Some(Op::Seek(r)) => {
                    r?;
                }
                Some(_) => {}
                None => {
                    this.take_write_error()?;
                    this.spawn(|f| Op::Flush(f.flush()))?;
                    this.flushing = true;
                }
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl AsyncSeek for AsyncEphemeralFile {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = &mut *self;
        if matches!(this.state, State::Busy(_)) {
            return Err(io::Error::other(
                "other file operation is pending, call poll_complete before start_seek",
            ));
        }
        this.spawn(move |f| Op::Seek(f.seek(position)))
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = &mut *self;
        loop {
            match ready!(this.poll_settle(cx))? {
                Some(Op::Seek(r)) => return Poll::Ready(r),
                Some(Op::Flush(r)) => {
                    this.flushing = false;
                    r?;
                }
                Some(_) => {}
                None => return Poll::Ready(Ok(this.file_pos - this.ahead_left() as u64)),
            }
        }
    }
}
