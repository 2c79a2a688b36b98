//! Lingering close: a connection the server closes while its client may
//! still be sending is read, and what arrives dropped, for a while after
//! the server's last byte, so that the client can finish its write and
//! read the answer (as nginx's `lingering_close` does).
//!
//! Flaw fixed here: a request whose header block was larger than the HTTP
//! stack reads (about 400 KB) was answered `431 Request Header Fields Too
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

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
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
}

impl<S> Lingering<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            drain: None,
            done: false,
        }
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
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

/// The acceptor that makes each TCP connection [`Lingering`], beneath TLS.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LingeringAcceptor;

impl<S> axum_server::accept::Accept<TcpStream, S> for LingeringAcceptor {
    type Stream = Lingering<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(Ok((Lingering::new(stream), service)))
    }
}
