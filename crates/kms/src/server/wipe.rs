//! Wiping the copies of KEKs, DEKs and plaintexts that a request leaves
//! behind once it is answered.
//!
//! A key that passes through a request is copied where no key type owns
//! it: the request body, in the connection's read buffer (hyper's, which
//! the body shares), and the stack frames of the code that parsed,
//! hashed and used it. Measured with `gcore` on an idle server, these
//! held the last clients' KEKs (about ten copies) and a DEK it gave out
//! until later traffic overwrote them. So:
//!
//! - a handler reads a body that may hold secrets as a [`SecretBody`]: a
//!   copy of its own, wiped on drop; the body's own buffer is wiped once
//!   nothing else refers to it (at once, or when the connection drops
//!   its read buffer: [`sweep`]);
//! - every thread that runs requests wipes its stack below the frame it
//!   idles in ([`on_idle`], [`scrub_stack`]).
//!
//! What is left is out of reach of safe code: the TLS library's record
//! buffers, freed without wiping.

use std::ops::Deref;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use zeroize::{Zeroize, Zeroizing};

/// How much of the stack [`scrub_stack`] wipes (bytes): more than the
/// deepest request's frames below a worker's idle frame reach (a debug
/// build's included).
const SCRUB_LEN: usize = 128 * 1024;

/// The most request buffers waiting to be wiped ([`Pending`]); beyond it
/// the oldest is let go unwiped, so that connections that stay open do
/// not pin unbounded memory.
const MAX_PENDING: usize = 256;

/// Request buffers still shared with a connection's read buffer, wiped
/// once they are the last reference ([`Pending::sweep`]). While a buffer
/// is held here, the connection that shares it reads into a new one
/// rather than over it, so the old one becomes this list's alone.
struct Pending(Mutex<Vec<Bytes>>);

/// The server's buffers waiting to be wiped.
static PENDING: Pending = Pending(Mutex::new(Vec::new()));

impl Pending {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Bytes>> {
        // A list of buffers is consistent at every step.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wipes `bytes` now, or as soon as the connection that shares its
    /// memory lets it go; `wiped` gets what was wiped now.
    fn wipe_when_free(&self, bytes: Bytes, wiped: impl FnOnce(BytesMut)) {
        match try_wipe(bytes) {
            Ok(done) => wiped(done),
            Err(shared) => {
                let mut list = self.list();
                if list.len() >= MAX_PENDING {
                    list.remove(0);
                }
                list.push(shared);
            }
        }
    }

    /// Wipes the waiting buffers that are no longer shared, handing each
    /// to `wiped`.
    fn sweep(&self, wiped: impl FnMut(BytesMut)) {
        let waiting = std::mem::take(&mut *self.list());
        let mut still = Vec::new();
        waiting
            .into_iter()
            .filter_map(|b| match try_wipe(b) {
                Ok(done) => Some(done),
                Err(b) => {
                    still.push(b);
                    None
                }
            })
            .for_each(wiped);
        if !still.is_empty() {
            let mut list = self.list();
            list.extend(still);
            let excess = list.len().saturating_sub(MAX_PENDING);
            list.drain(..excess);
        }
    }
}

/// `bytes` wiped, if nothing else refers to its memory; else `bytes`.
fn try_wipe(bytes: Bytes) -> Result<BytesMut, Bytes> {
    let mut owned = bytes.try_into_mut()?;
    owned[..].zeroize();
    Ok(owned)
}

/// Wipes the server's request buffers that are no longer shared.
pub(crate) fn sweep() {
    PENDING.sweep(drop);
}

/// Overwrites [`SCRUB_LEN`] bytes of the stack below the caller's frame,
/// where the frames of the calls it made (a key parsed, hashed, used to
/// open a key file) left copies of what they held. Kept out of line so
/// that its array is a frame of its own below the caller's.
#[inline(never)]
pub(crate) fn scrub_stack() {
    let mut area = [0u64; SCRUB_LEN / 8];
    // Volatile writes: not optimised away although `area` is never read.
    area.zeroize();
    std::hint::black_box(&mut area);
}

/// What a thread that ran requests does as it goes idle: wipes the
/// request buffers it can and its own stack. Cheap (a few microseconds),
/// and an idle thread has nothing better to do.
pub(crate) fn on_idle() {
    sweep();
    scrub_stack();
}

/// A request body that may hold keys or plaintexts: a copy owned by the
/// handler, wiped on drop; the buffer it was read from is wiped as soon
/// as nothing else refers to it.
pub(crate) struct SecretBody(Zeroizing<Vec<u8>>);

impl SecretBody {
    /// The body `bytes`, whose buffer is wiped once it is free.
    pub(crate) fn new(bytes: Bytes) -> Self {
        let body = Self(Zeroizing::new(bytes.to_vec()));
        PENDING.wipe_when_free(bytes, drop);
        body
    }
}

impl Deref for SecretBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<S: Send + Sync> FromRequest<S> for SecretBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Also here, not only when a worker idles: a server on a runtime
        // of its caller's has no idle hook, and its waiting buffers
        // would stay pinned.
        sweep();
        // Read as `Bytes` is, with its limit and refusals.
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self::new(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body's copy is a zeroizing buffer: dropping it wipes it.
    #[test]
    fn a_secret_body_is_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<Zeroizing<Vec<u8>>>();
        let body = SecretBody::new(Bytes::from(vec![0x5a; 32]));
        assert_eq!(&body[..], &[0x5a; 32]);
    }

    /// A body's buffer that is not shared is wiped at once.
    #[test]
    fn an_unshared_request_buffer_is_wiped_at_once() {
        let pending = Pending(Mutex::new(Vec::new()));
        let mut seen = None;
        pending.wipe_when_free(Bytes::from(vec![0xa5; 32]), |b| seen = Some(b));
        let seen = seen.map(|b| b.to_vec());
        assert_eq!(seen, Some(vec![0; 32]));
        assert!(pending.list().is_empty());
    }

    /// A buffer the body shares with a connection's read buffer is wiped
    /// once the connection lets it go, not before.
    #[test]
    fn a_shared_request_buffer_is_wiped_once_it_is_free() {
        let pending = Pending(Mutex::new(Vec::new()));
        // The connection's read buffer: the request at its start, the
        // connection still holding the rest.
        let mut conn = BytesMut::with_capacity(64);
        conn.extend_from_slice(&[0xa5; 32]);
        conn.extend_from_slice(b"next request");
        let request = conn.split_to(32).freeze();
        let mut wiped = Vec::new();
        pending.wipe_when_free(request, |b| wiped.push(b));
        pending.sweep(|b| wiped.push(b));
        assert!(wiped.is_empty(), "wiped while the connection shares it");
        assert_eq!(pending.list().len(), 1);
        // The connection reads on into a buffer of its own.
        drop(conn);
        pending.sweep(|b| wiped.push(b));
        let wiped: Vec<Vec<u8>> = wiped.iter().map(|b| b.to_vec()).collect();
        assert_eq!(wiped, vec![vec![0; 32]]);
        assert!(pending.list().is_empty());
    }

    /// Connections that never let their buffers go pin at most
    /// [`MAX_PENDING`] of them.
    #[test]
    fn the_waiting_list_is_bounded() {
        let pending = Pending(Mutex::new(Vec::new()));
        let mut conns = Vec::new();
        for _ in 0..MAX_PENDING + 10 {
            let mut conn = BytesMut::with_capacity(8);
            conn.extend_from_slice(&[1; 8]);
            pending.wipe_when_free(conn.split_to(4).freeze(), drop);
            conns.push(conn);
        }
        pending.sweep(drop);
        assert_eq!(pending.list().len(), MAX_PENDING);
    }
}
