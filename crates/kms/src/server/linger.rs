//! Lingering close: a connection the server closes while its client may
//! still be sending is read, and what arrives dropped, for a while after
//! the server's last byte, so that the client can finish its write and
//! read the answer (as nginx's `lingering_close` does).
//!
//! Flaw fixed here: a request whose header block was larger than the HTTP
//! stack reads (hyper's default read buffer, 417,792 bytes, or more than
//! its 100 header fields) was answered `431 Request Header Fields Too
//! Large`, but the connection was closed with the rest of the header
//! unread, and a close with unread input is a reset: a client still
//! writing its header got the reset under its write and never read the
//! answer. A header block of 200 small headers, sent whole before the
//! server answered, got its 431.
//!
//! The lingering is bounded: at most [`LINGER_BYTES`] are read, for at
//! most [`LINGER_TIME`], and it ends once nothing has arrived for
//! [`LINGER_IDLE`] (or at the client's end of stream, which a client that
//! read the answer sends at once). It is done below TLS, on the bytes as
//! they arrive, after the server's TLS `close_notify` and TCP end of
//! stream are sent.
//!
//! The same wrapper bounds how long a connection is held by a client that
//! does not read its answers: a write (or flush) that makes no progress
//! for the server's write timeout fails, which ends the connection.
//! Progress, however slow, starts the timeout anew: a slow reader is
//! served, one that stopped reading is not. And it holds the connection's
//! place under the server's cap on connections, taken as it is accepted
//! (before its TLS handshake; a connection beyond the cap is closed at
//! once) and given back when it is dropped.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The most bytes read from a closing connection.
pub(crate) const LINGER_BYTES: u64 = 16 << 20;
/// The longest a closing connection is read.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(10);
/// How long a closing connection is read with nothing arriving.
pub(crate) const LINGER_IDLE: Duration = Duration::from_secs(1);

/// Where a lingering close stands.
#[derive(Debug)]
struct Drain {
    /// The end of the lingering.
    until: Pin<Box<Sleep>>,
    /// The end of the lingering unless more arrives.
    idle: Pin<Box<Sleep>>,
    /// The bytes it may still read.
    left: u64,
}

/// A connection that lingers when it is shut down (see the module docs).
#[derive(Debug)]
pub(crate) struct Lingering<S> {
    inner: S,
    drain: Option<Drain>,
    done: bool,
    /// How long writes may make no progress.
    write_timeout: Duration,
    /// The end of the writes' wait, set at a write that cannot proceed and
    /// cleared at one that does.
    stalled: Option<Pin<Box<Sleep>>>,
    /// The connection's place under the cap, given back when it is dropped.
    _slot: OwnedSemaphorePermit,
}

impl<S> Lingering<S> {
    fn new(inner: S, write_timeout: Duration, slot: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            drain: None,
            done: false,
            write_timeout,
            stalled: None,
            _slot: slot,
        }
    }

    /// `r`, the outcome of a write or flush, unless it has waited for
    /// longer than the write timeout since the writes last made progress:
    /// then an error, which ends the connection.
    fn progress<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of its answer within the write timeout",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> Lingering<S> {
    /// Reads and drops what arrives until the drain ends.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(drain) = &mut self.drain else {
            return Poll::Ready(());
        };
        let mut room = [0u8; 16 << 10];
        // Bounded: each round reads at least a byte of the `left` ones, or
        // ends the drain, or returns.
        loop {
            let mut buf = ReadBuf::new(&mut room);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    let read = buf.filled().len() as u64;
                    drain.left = drain.left.saturating_sub(read);
                    if drain.left == 0 {
                        break;
                    }
                    drain.idle.as_mut().reset(Instant::now() + LINGER_IDLE);
                }
                // The client's end of stream, or an error: nothing more
                // will arrive.
                Poll::Ready(_) => break,
                Poll::Pending => {
                    if drain.until.as_mut().poll(cx).is_ready()
                        || drain.idle.as_mut().poll(cx).is_ready()
                    {
                        break;
                    }
                    return Poll::Pending;
                }
            }
        }
        self.drain = None;
        self.done = true;
        Poll::Ready(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, r)
    }

    /// Ends the stream (the client reads its end), then lingers.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(Ok(()));
        }
        if this.drain.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            let now = Instant::now();
            this.drain = Some(Drain {
                until: Box::pin(tokio::time::sleep_until(now + LINGER_TIME)),
                idle: Box::pin(tokio::time::sleep_until(now + LINGER_IDLE)),
                left: LINGER_BYTES,
            });
        }
        ready!(this.poll_drain(cx));
        Poll::Ready(Ok(()))
    }
}

/// The acceptor that makes each TCP connection [`Lingering`], beneath TLS,
/// and closes those beyond the cap.
#[derive(Debug, Clone)]
pub(crate) struct LingeringAcceptor {
    write_timeout: Duration,
    /// A permit for each connection that may be open.
    slots: Arc<Semaphore>,
    /// Whether a connection was refused since the cap was last below
    /// reach: said once in the log, not once per connection.
    full: Arc<AtomicBool>,
}

impl LingeringAcceptor {
    /// An acceptor of at most `max_connections` connections at once, whose
    /// writes fail after `write_timeout` without progress.
    pub(crate) fn new(write_timeout: Duration, max_connections: usize) -> Self {
        Self {
            write_timeout,
            slots: Arc::new(Semaphore::new(max_connections)),
            full: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl<S> axum_server::accept::Accept<TcpStream, S> for LingeringAcceptor {
    type Stream = Lingering<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::warn!("connection cap reached: new connections are closed until one ends");
            }
            // Dropped: closed before its TLS handshake.
            return std::future::ready(Err(io::Error::other("connection cap reached")));
        };
        self.full.store(false, Ordering::Relaxed);
        std::future::ready(Ok((
            Lingering::new(stream, self.write_timeout, slot),
            service,
        )))
    }
}
