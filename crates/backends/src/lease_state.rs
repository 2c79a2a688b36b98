//! What the holder of a writer lease knows of it, shared by the Redis and
//! S3 leases (each keeps the lease on its server its own way): whether it
//! is held and when it was last renewed, lost to another process, or let
//! go; the thread that renews it; and the token that names the holder in
//! the server's copy.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use seccs_store::backend::BackendError;

/// How long a lease outlives its last renewal on the server.
pub(crate) const TTL: Duration = Duration::from_secs(30);
/// How often the holder renews it.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A write is refused once the last renewal is older than this: a third of
/// the TTL short of it, so that nobody else can hold the lease yet.
pub(crate) const TRUST_FOR: Duration = Duration::from_secs(20);

/// The holder's view of its lease.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Ours, renewed at this instant.
    Held(Instant),
    /// Another holder took it.
    Lost,
    /// Let go by [`LeaseState::release`].
    Released,
}

/// A lease's state, shared between the backend and its renewal thread.
#[derive(Debug)]
pub(crate) struct LeaseState {
    state: Mutex<State>,
}

impl LeaseState {
    /// The state of a lease just taken.
    pub(crate) fn held_now() -> Self {
        Self {
            state: Mutex::new(State::Held(Instant::now())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A state is one word: whatever a panicking holder did, it is whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a renewal (unless the lease was let go meanwhile).
    pub(crate) fn renewed(&self) {
        let mut state = self.lock();
        if !matches!(*state, State::Released) {
            *state = State::Held(Instant::now());
        }
    }

    /// Records that another holder has the lease (unless let go meanwhile).
    pub(crate) fn lost(&self) {
        let mut state = self.lock();
        if !matches!(*state, State::Released) {
            *state = State::Lost;
        }
    }

    /// Lets the lease go; returns whether it was still ours (so that the
    /// server's copy should be removed).
    pub(crate) fn release(&self) -> bool {
        let was = std::mem::replace(&mut *self.lock(), State::Released);
        matches!(was, State::Held(_))
    }

    /// Whether the lease was let go (the renewal thread then stops).
    pub(crate) fn is_released(&self) -> bool {
        matches!(*self.lock(), State::Released)
    }

    /// Whether the lease is still ours as far as this process knows.
    pub(crate) fn is_held(&self) -> bool {
        matches!(*self.lock(), State::Held(_))
    }

    /// Whether a write may go ahead: the lease is ours and was renewed
    /// within [`TRUST_FOR`], so nobody else can hold it yet.
    pub(crate) fn check(&self, backend: &str) -> Result<(), BackendError> {
        self.check_within(backend, TRUST_FOR).map(drop)
    }

    /// Like [`LeaseState::check`], and says how much longer a write may
    /// go on: until [`TRUST_FOR`] after the last renewal. A write still
    /// running then may land after another process took the lease over.
    pub(crate) fn trusted_for(&self, backend: &str) -> Result<Duration, BackendError> {
        self.check_within(backend, TRUST_FOR)
    }

    fn check_within(&self, backend: &str, trust_for: Duration) -> Result<Duration, BackendError> {
        let detail = match *self.lock() {
            State::Held(at) if at.elapsed() < trust_for => return Ok(trust_for - at.elapsed()),
            State::Held(at) => format!(
                "{backend}: this process could not renew its writer lease for {} s, so another \
                 may hold it now; not writing",
                at.elapsed().as_secs()
            ),
            State::Lost => format!(
                "{backend}: this process lost its writer lease (it expired while this process \
                 could not renew it: the server out of reach or restarted, or this process \
                 stopped; another process may hold it now); not writing"
            ),
            State::Released => {
                format!("{backend}: this process let its writer lease go; not writing")
            }
        };
        Err(BackendError::Locked {
            detail,
            by_this_process: false,
        })
    }
}

/// What one renewal request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// The lease is ours, for another [`TTL`].
    Renewed,
    /// Another holder has it, or it is gone from the server: the lease is
    /// lost for good.
    Lost,
    /// The server did not answer; try again next turn (writes stop on
    /// their own once the last renewal is older than [`TRUST_FOR`]).
    Unreachable,
}

/// The thread that renews a lease every [`RENEW_EVERY`] until the lease is
/// let go or lost, or the renewer is stopped (or dropped).
#[derive(Debug)]
pub(crate) struct Renewer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Renewer {
    /// Starts the thread; `renew_once` makes one request, bounded in time.
    pub(crate) fn spawn(
        backend: &str,
        state: Arc<LeaseState>,
        mut renew_once: impl FnMut() -> Renewal + Send + 'static,
    ) -> Result<Self, BackendError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("seccs-{backend}-lease"))
            .spawn(move || {
                // Each turn waits at most RENEW_EVERY and makes one bounded
                // request; the loop ends when the channel closes.
                loop {
                    match stopped.recv_timeout(RENEW_EVERY) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if state.is_released() {
                        return;
                    }
                    match renew_once() {
                        Renewal::Renewed => state.renewed(),
                        Renewal::Lost => {
                            state.lost();
                            return;
                        }
                        Renewal::Unreachable => {}
                    }
                }
            })
            .map_err(|e| {
                BackendError::other(backend, format!("cannot start the lease thread: {e}"))
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it to end (at most one request).
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread waits on the channel just closed or on one bounded
            // request; a panic in it has nothing to hand back.
            let _ = thread.join();
        }
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `holder` (`pid N on HOST`, as a holder token or a PostgreSQL session's
/// name gives it) as a refusal names it: where it is this very process
/// (a second exclusive handle on one store in one process), it says so
/// rather than name its pid as another's.
pub(crate) fn name_holder(holder: &str) -> String {
    if !is_this_process(holder) {
        return holder.to_owned();
    }
    format!(
        "this process ({holder}), through another exclusive handle on the store: use that \
         one, or drop it before opening another"
    )
}

/// Whether `holder` (`pid N on HOST`) is this process: its pid, on this
/// machine (a name cut short, as PostgreSQL cuts a session's, counts).
pub(crate) fn is_this_process(holder: &str) -> bool {
    is_process_on(holder, std::process::id(), &seccs_store::dir::host_name())
}

/// Whether `holder` (`pid N on HOST`) is process `pid` on the machine
/// named `ours`.
fn is_process_on(holder: &str, pid: u32, ours: &str) -> bool {
    let Some((their_pid, host)) = holder
        .strip_prefix("pid ")
        .and_then(|rest| rest.split_once(" on "))
    else {
        return false;
    };
    // A PostgreSQL session's name is cut to 63 bytes, `seccs ` and the
    // holder; only a name cut there may end early, so that "worker-1" is
    // never taken for "worker-12".
    let cut = "seccs ".len() + holder.len() == POSTGRES_NAME_MAX;
    their_pid == pid.to_string()
        && !host.is_empty()
        && (host == ours || (cut && ours.starts_with(host)))
}

/// The longest session name PostgreSQL keeps (NAMEDATALEN − 1).
const POSTGRES_NAME_MAX: usize = 63;

/// A new holder token: 16 random bytes in hex, then `pid N on HOST` for the
/// message a second process sees.
pub(crate) fn holder_token(backend: &str) -> Result<String, BackendError> {
    let mut nonce = [0u8; 16];
    seccs_core::random_bytes(&mut nonce).map_err(|e| BackendError::other(backend, e))?;
    Ok(format!(
        "{} pid {} on {}",
        hex::encode(nonce),
        std::process::id(),
        seccs_store::dir::host_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_that_is_this_process_is_named_so() {
        let here = seccs_store::dir::host_name();
        let me = format!("pid {} on {here}", std::process::id());
        assert!(name_holder(&me).starts_with("this process (pid "));
        let other = format!("pid {} on {here}", std::process::id().wrapping_add(1));
        assert_eq!(name_holder(&other), other);
        let elsewhere = format!("pid {} on not-{here}", std::process::id());
        assert_eq!(name_holder(&elsewhere), elsewhere);
        // A host whose name begins ours is another ("worker-1" is not
        // "worker-12"), unless the name was cut as PostgreSQL cuts it.
        assert!(is_process_on("pid 7 on worker-12", 7, "worker-12"));
        assert!(!is_process_on("pid 7 on worker-1", 7, "worker-12"));
        assert!(!is_process_on("pid 8 on worker-12", 7, "worker-12"));
        let long = format!("host-{}", "a".repeat(80));
        let name = format!("seccs pid 7 on {long}");
        let cut = &name["seccs ".len()..POSTGRES_NAME_MAX];
        assert!(is_process_on(cut, 7, &long));
        assert!(!is_process_on(&cut[..cut.len() - 1], 7, &long));
        assert_eq!(name_holder("another process"), "another process");
    }

    #[test]
    fn a_lease_refuses_writes_once_stale_lost_or_let_go() {
        let lease = LeaseState::held_now();
        assert!(TRUST_FOR + RENEW_EVERY < TTL);
        assert!(lease.check("redis").is_ok());
        let left = lease.trusted_for("redis").expect("trusted");
        assert!(left <= TRUST_FOR && left > TRUST_FOR - Duration::from_secs(5));
        assert!(
            lease.check_within("redis", Duration::ZERO).is_err(),
            "stale"
        );
        lease.lost();
        assert!(!lease.is_held());
        assert!(lease.check("redis").is_err());
        lease.renewed();
        assert!(lease.release(), "it was ours again");
        lease.renewed();
        assert!(lease.is_released(), "a released lease stays released");
        assert!(!lease.release());
        let token = holder_token("redis").expect("token");
        assert!(token.contains(&format!(" pid {} on ", std::process::id())));
    }

    #[test]
    fn a_renewer_stops_when_stopped_and_a_lost_lease_stays_lost() {
        let state = Arc::new(LeaseState::held_now());
        let mut renewer =
            Renewer::spawn("redis", state.clone(), || Renewal::Lost).expect("thread starts");
        // Stopping before the first turn ends the thread without a request.
        renewer.stop();
        assert!(state.is_held());
        renewer.stop();
    }
}
