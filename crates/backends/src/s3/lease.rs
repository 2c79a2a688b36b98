//! The writer lease of an S3-backed store: one object beside the entries
//! that says which process has the store open, so that a second process (a
//! second store directory on the same prefix, here or on another machine)
//! is refused instead of racing the first on reference counts.
//!
//! S3 has no locks, but it has conditional writes: a `PUT` with
//! `If-None-Match: *` creates an object only if there is none, and one with
//! `If-Match: ETAG` replaces it only if it is still the version we saw. The
//! lease object holds a random token, the holder's pid and host, and the
//! wall-clock time it expires ([`TTL`] after its last renewal):
//!
//! - taking it: create it with `If-None-Match: *`, then make sure a second
//!   such create is refused (a service that ignores the condition cannot
//!   keep a lease, and exclusive mode is refused on it), and read it back
//!   to see it is still ours (on a service that checks a condition, then
//!   writes, a create at the same instant can succeed too: this catches
//!   most such races, not all); if one is there and its
//!   time has passed (a holder that died), replace it with `If-Match` on the
//!   version read, so of two processes taking over at once only one wins;
//!   if it is gone by the time it is read (its holder let it go), create it
//!   again;
//! - holding it: a thread replaces it every [`RENEW_EVERY`](crate::lease_state::RENEW_EVERY) with `If-Match`
//!   on the version it last wrote; a refusal means another process took it
//!   (or the object is gone), and the lease is lost for good;
//! - writing: [`Lease::trusted_for`] refuses once the lease is lost or its last
//!   renewal is older than the shared trust period (see `lease_state`).
//!
//! Expiry is judged by the taker's clock against the holder's, so machines
//! sharing a store need clocks within a few seconds of each other (NTP).
//! Like every lease without fencing tokens, it leaves one window: a process
//! stopped for longer than the margin between its check and its writes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opendal::{ErrorKind, Operator, options};
use seccs_store::backend::BackendError;
use tokio::runtime::Handle;

use super::{NAME, map_err};
use crate::lease_state::{
    LeaseState, Renewal, Renewer, TTL, holder_token, is_this_process, name_holder,
};
use crate::own_runtime::{outside_runtime, refuse_inside_runtime};

/// The lease object's name under the store's prefix: not hex, so never an
/// entry's name, and listings skip it.
pub(super) const LEASE_OBJECT: &str = "writer-lease";
/// Bound on each lease request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A held writer lease; released when dropped.
pub(super) struct Lease {
    op: Operator,
    runtime: Handle,
    token: String,
    state: Arc<LeaseState>,
    renewer: Renewer,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

/// The lease object's text: token, holder, expiry in Unix milliseconds.
fn lease_text(token: &str) -> String {
    let until = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(TTL)
        .as_millis();
    format!("{token} until {until}")
}

/// The holder (`pid N on HOST`) and expiry of a lease object's text.
fn parse_lease(text: &str) -> Option<(String, u128)> {
    let (front, until) = text.rsplit_once(" until ")?;
    let (_, holder) = front.split_once(' ')?;
    Some((holder.escape_debug().to_string(), until.parse().ok()?))
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// Writes the lease with the given condition; returns the new version's
/// ETag, or `None` if the condition did not hold. An `If-Match` on a lease
/// that is gone fails too: `s3s-fs` and others answer 412, AWS S3 answers
/// 404, and both are `None` here.
async fn write(
    op: &Operator,
    text: String,
    condition: options::WriteOptions,
) -> Result<Option<String>, BackendError> {
    let written = tokio::time::timeout(
        REQUEST_TIMEOUT,
        op.write_options(LEASE_OBJECT, text, condition),
    )
    .await
    .map_err(|_| BackendError::unavailable(NAME, "the writer lease request timed out"))?;
    let meta = match written {
        Ok(meta) => meta,
        Err(e) if matches!(e.kind(), ErrorKind::ConditionNotMatch | ErrorKind::NotFound) => {
            return Ok(None);
        }
        Err(e) => return Err(map_err(e)),
    };
    match meta.etag() {
        Some(etag) => Ok(Some(etag.to_owned())),
        None => Ok(Some(
            op.stat(LEASE_OBJECT)
                .await
                .map_err(map_err)?
                .etag()
                .ok_or_else(|| {
                    BackendError::other(NAME, "the service gives no ETag; cannot hold a lease")
                })?
                .to_owned(),
        )),
    }
}

fn if_not_exists() -> options::WriteOptions {
    options::WriteOptions {
        if_not_exists: true,
        ..Default::default()
    }
}

fn if_match(etag: &str) -> options::WriteOptions {
    options::WriteOptions {
        if_match: Some(etag.to_owned()),
        ..Default::default()
    }
}

impl Lease {
    /// Takes the lease, or fails with [`BackendError::Locked`] naming the
    /// holder.
    pub(super) fn acquire(op: &Operator, runtime: Handle) -> Result<Self, BackendError> {
        let token = holder_token(NAME)?;
        refuse_inside_runtime(NAME)?;
        let etag = runtime.block_on(take(op, &token))?;
        let state = Arc::new(LeaseState::held_now());
        let renewer = {
            let (op, runtime, token) = (op.clone(), runtime.clone(), token.clone());
            let mut etag = etag;
            Renewer::spawn(NAME, state.clone(), move || {
                // Bounded by REQUEST_TIMEOUT inside `write`.
                match runtime.block_on(write(&op, lease_text(&token), if_match(&etag))) {
                    Ok(Some(new)) => {
                        etag = new;
                        Renewal::Renewed
                    }
                    Ok(None) => Renewal::Lost,
                    Err(_) => Renewal::Unreachable,
                }
            })?
        };
        Ok(Self {
            op: op.clone(),
            runtime,
            token,
            state,
            renewer,
        })
    }

    /// How much longer a write that starts now may run (see
    /// [`LeaseState::trusted_for`]), or why it may not start.
    pub(super) fn trusted_for(&self) -> Result<Duration, BackendError> {
        self.state.trusted_for(NAME)
    }
}

/// How many times [`take`] looks again when the lease changed under it
/// (let go between its requests, or taken over by another process first).
const TAKE_ATTEMPTS: usize = 3;

/// Creates the lease object, or takes over one whose time has passed.
async fn take(op: &Operator, token: &str) -> Result<String, BackendError> {
    let mut parsed = None;
    for _ in 0..TAKE_ATTEMPTS {
        if let Some(etag) = write(op, lease_text(token), if_not_exists()).await? {
            check_conditions_honoured(op, token).await?;
            confirm_ours(op, token).await?;
            return Ok(etag);
        }
        // The holder may let the lease go between the create that failed
        // and these reads: then it is free, and the create is tried again.
        let Some(seen) = found(op.stat(LEASE_OBJECT).await)? else {
            continue;
        };
        let Some(text) = found(op.read(LEASE_OBJECT).await)? else {
            continue;
        };
        let lease = parse_lease(&String::from_utf8_lossy(&text.to_vec()));
        let expired = lease.as_ref().is_some_and(|(_, until)| now_ms() > *until);
        parsed = Some(lease);
        if !expired {
            break;
        }
        // Of two processes taking over at once, the second's condition
        // fails: the first changed the version both read. Looking again
        // then finds the first's lease, live.
        let Some(etag) = seen.etag() else { break };
        if let Some(etag) = write(op, lease_text(token), if_match(etag)).await? {
            confirm_ours(op, token).await?;
            return Ok(etag);
        }
    }
    let by_this_process = matches!(&parsed, Some(Some((holder, _))) if is_this_process(holder));
    Err(BackendError::Locked {
        by_this_process,
        detail: match parsed {
            Some(Some((holder, until))) => format!(
                "s3: its writer lease is held by {} for {} s more; a holder that died \
                 frees it within {} s",
                name_holder(&holder),
                until.saturating_sub(now_ms()).div_ceil(1000),
                TTL.as_secs()
            ),
            Some(None) => format!(
                "s3: the object {LEASE_OBJECT:?} under its prefix is held by something that is \
                 not a seccs lease; remove it if no process has the store open"
            ),
            None => "s3: its writer lease changed hands while this process tried to take it; \
                     another process may hold it now"
                .to_owned(),
        },
    })
}

/// Checks, right after creating the lease object, that the service
/// refuses a second create of it: a service that ignores `If-None-Match`
/// (and so, most likely, `If-Match`) would let every process take the
/// lease, and the lease would keep nobody out. Such a service is refused,
/// and the lease object this process wrote is removed (best effort).
async fn check_conditions_honoured(op: &Operator, token: &str) -> Result<(), BackendError> {
    if write(op, lease_text(token), if_not_exists())
        .await?
        .is_none()
    {
        return Ok(());
    }
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, op.delete(LEASE_OBJECT)).await;
    Err(BackendError::Config(format!(
        "s3: the service does not support conditional writes (it accepted a PUT with \
         `If-None-Match: *` over the existing object {LEASE_OBJECT:?}), so it cannot keep a \
         writer lease and a second process could write beside this one: use a service that \
         honours `If-None-Match` and `If-Match` on PUT (AWS S3 does since 2024)"
    )))
}

/// Reads the lease back right after taking it, before any write: it must
/// be ours. On a service that honours conditions atomically it always is;
/// on one that checks, then writes, a second process's create (or
/// takeover) made at the same instant can succeed too and replace ours,
/// and the process that reads back the other's lease is refused instead of
/// writing beside it. This only narrows such a service's window: a racing
/// write that lands after this read goes unseen until this holder's next
/// renewal (its `If-Match` then fails), so such a service is still unfit
/// for a shared store.
async fn confirm_ours(op: &Operator, token: &str) -> Result<(), BackendError> {
    let read = tokio::time::timeout(REQUEST_TIMEOUT, op.read(LEASE_OBJECT))
        .await
        .map_err(|_| BackendError::unavailable(NAME, "the writer lease request timed out"))?;
    let Some(text) = found(read)? else {
        return Err(BackendError::Locked {
            detail: "s3: its writer lease was removed right after this process took it; \
                     another process may hold it now"
                .to_owned(),
            by_this_process: false,
        });
    };
    let text = String::from_utf8_lossy(&text.to_vec()).into_owned();
    if text
        .strip_prefix(token)
        .is_some_and(|rest| rest.starts_with(" until "))
    {
        return Ok(());
    }
    let (holder, by_this_process) = match parse_lease(&text) {
        Some((holder, _)) => (name_holder(&holder), is_this_process(&holder)),
        None => ("something that is not a seccs lease".to_owned(), false),
    };
    Err(BackendError::Locked {
        detail: format!(
            "s3: its writer lease was replaced by {holder} right after this process took it: \
             two processes took it at the same instant, which a service that applies \
             `If-None-Match` and `If-Match` atomically never allows; use such a service for a \
             store that more than one process opens"
        ),
        by_this_process,
    })
}

/// What a read of the lease object found: `None` if it is gone.
fn found<T>(result: opendal::Result<T>) -> Result<Option<T>, BackendError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(map_err(e)),
    }
}

impl Lease {
    /// Lets the lease go now, from any thread, for a process about to exit
    /// without dropping it: writes are refused from here on, the renewal
    /// thread stops at its next turn, and the object is deleted if ours.
    pub(super) fn release_now(&self) {
        if self.state.release() {
            self.delete_if_ours();
        }
    }

    /// Best effort: a lease not released expires by itself after TTL.
    /// Only ours is removed (S3 has no conditional delete, so a lease
    /// taken over in the instant between the read and the delete would go
    /// too: its holder's next renewal, within RENEW_EVERY, finds it gone,
    /// and that holder reports the lease lost and writes nothing more).
    fn delete_if_ours(&self) {
        let (op, token, runtime) = (&self.op, &self.token, &self.runtime);
        // A drop on a thread inside a tokio runtime, where blocking on this
        // one would panic, deletes it from a thread of its own.
        outside_runtime(|| {
            let _ = runtime.block_on(async {
                tokio::time::timeout(REQUEST_TIMEOUT, async {
                    let text = op.read(LEASE_OBJECT).await?.to_vec();
                    if String::from_utf8_lossy(&text).starts_with(token.as_str()) {
                        op.delete(LEASE_OBJECT).await?;
                    }
                    Ok::<(), opendal::Error>(())
                })
                .await
            });
        });
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.stop();
        if self.state.is_held() {
            self.delete_if_ours();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_text_names_its_holder_and_expiry() {
        let text = lease_text("00ff pid 42 on build-1");
        let (holder, until) = parse_lease(&text).expect("parses");
        assert_eq!(holder, "pid 42 on build-1");
        assert!(until > now_ms() && until <= now_ms() + TTL.as_millis());
        assert!(parse_lease("junk").is_none());
        assert!(LEASE_OBJECT.bytes().any(|b| !b.is_ascii_hexdigit()));
    }
}
