//! The writer lease of a Redis-backed store: one key that says which process
//! has the store open, so that a second process (a second store directory
//! pointed at the same prefix, on this machine or another) is refused
//! instead of racing the first on reference counts.
//!
//! The lease is a string at the store's prefix followed by [`LEASE_KEY`],
//! set with `SET … NX PX` to a random token (and, for the error a second
//! process sees, the holder's pid and host). It expires [`TTL`] after its
//! last renewal, so a holder that dies without releasing it (SIGKILL, a lost
//! machine) blocks the store for at most that long. A thread renews it every
//! [`RENEW_EVERY`](crate::lease_state::RENEW_EVERY) on its own connection;
//! if another token is there, or the key is gone, the lease is lost for
//! good. A key that is gone is never taken again: another process may have
//! taken the expired lease, written and released it in between, and counts
//! this process read before would then be stale. (A server restarted
//! without persistence lost the lease and the store marker alike: a
//! store's writes stop on the marker, and the holder on its lost lease.)
//!
//! Every write is fenced by the lease on the server: the batch script (and
//! the marker write) checks, in the same atomic step as its writes, that
//! the lease key still holds this holder's token, and writes nothing
//! otherwise ([`BackendError::Locked`]). [`Lease::check`] also refuses
//! locally, before a request is sent, once the lease is lost or its last
//! renewal is older than [`TTL`] less a safety margin (a third of the TTL).

use std::sync::Arc;

use redis::{Client, Connection};
use seccs_store::backend::BackendError;

use super::{ALLOW_OOM, CONNECT_TIMEOUT, NAME, again_if_interrupted, map_err};
use crate::lease_state::{
    LeaseState, Renewal, Renewer, TTL, holder_token, is_this_process, name_holder,
};

/// The lease's key after the store's prefix. No store key has this length
/// (nodes are digests, catalog records 33 bytes), and walks skip it.
pub(super) const LEASE_KEY: &[u8] = b"\0seccs:writer-lease";

/// Renews the lease if the token is ours. Returns 1 if it was, 0 if the
/// key holds another holder's token or is gone (expired, released by a
/// holder that had it meanwhile, or lost with the server's data): never
/// taken again, see the module docs.
const RENEW_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
       redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
     return 0";
/// Takes the lease (KEYS[1]) for token ARGV[1] for ARGV[2] ms if nobody
/// holds it: `OK`, or nil when it is held.
const TAKE_SCRIPT: &str = "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])";
/// Deletes the lease if the token is ours.
const RELEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) end return 0";

/// A held writer lease; released when dropped.
pub(super) struct Lease {
    client: Client,
    key: Vec<u8>,
    token: String,
    state: Arc<LeaseState>,
    renewer: Renewer,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &String::from_utf8_lossy(&self.key))
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// Takes the lease at `key`, or fails with [`BackendError::Locked`]
    /// naming the holder. Where `scripts_take_flags` (Redis 7 and later),
    /// it is taken by a script that runs on a server at its `maxmemory`
    /// limit too: the writers that give a full store room (`rm`, `gc`)
    /// take the lease first.
    pub(super) fn acquire(
        client: &Client,
        key: Vec<u8>,
        scripts_take_flags: bool,
    ) -> Result<Self, BackendError> {
        let token = holder_token(NAME)?;
        let mut conn = connect(client)?;
        let ttl = TTL.as_millis() as u64;
        let take = |conn: &mut Connection| -> redis::RedisResult<Option<String>> {
            if scripts_take_flags {
                redis::cmd("EVAL")
                    .arg(format!("{ALLOW_OOM}{TAKE_SCRIPT}"))
                    .arg(1)
                    .arg(&key)
                    .arg(&token)
                    .arg(ttl)
                    .query(conn)
            } else {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query(conn)
            }
        };
        // A take whose answer was interrupted is sent again; if the first
        // took the lease, the second finds this process's own token there,
        // read below.
        if again_if_interrupted(|| take(&mut conn))
            .map_err(map_err)?
            .is_none()
        {
            let holder: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query(&mut conn)
                .map_err(map_err)?;
            // Its time left is unknown (the process may have been stopped
            // long): renewed before it counts as held from now.
            let mut conn = Some(conn);
            if holder.as_deref() == Some(token.as_bytes())
                && renew_once(client, &mut conn, &key, &token) == Renewal::Renewed
            {
                return Self::held(client, key, token, conn);
            }
            let described = holder.as_deref().map(describe_holder);
            return Err(BackendError::Locked {
                detail: format!(
                    "redis: its writer lease is held by {}; a holder that died frees it within {} s",
                    described
                        .as_deref()
                        .map(name_holder)
                        .unwrap_or_else(|| "a process that just released it".into()),
                    TTL.as_secs()
                ),
                by_this_process: described.as_deref().is_some_and(is_this_process),
            });
        }
        Self::held(client, key, token, Some(conn))
    }

    /// The lease at `key`, just taken (or renewed) for `token`, renewed
    /// from now on on `conn` (or a new connection).
    fn held(
        client: &Client,
        key: Vec<u8>,
        token: String,
        mut conn: Option<Connection>,
    ) -> Result<Self, BackendError> {
        let state = Arc::new(LeaseState::held_now());
        let renewer = {
            let (client, key, token) = (client.clone(), key.clone(), token.clone());
            Renewer::spawn(NAME, state.clone(), move || {
                renew_once(&client, &mut conn, &key, &token)
            })?
        };
        Ok(Self {
            client: client.clone(),
            key,
            token,
            state,
            renewer,
        })
    }

    /// Whether a write may go ahead: the lease is ours and was renewed
    /// recently enough that nobody else can hold it yet.
    pub(super) fn check(&self) -> Result<(), BackendError> {
        self.state.check(NAME)
    }

    /// The token the lease key holds while the lease is ours, which every
    /// write checks on the server.
    pub(super) fn token(&self) -> &str {
        &self.token
    }
}

impl Lease {
    /// Lets the lease go now, from any thread, for a process about to exit
    /// without dropping it: writes are refused from here on, the renewal
    /// thread stops at its next turn, and the key is deleted if ours.
    pub(super) fn release_now(&self) {
        if self.state.release() {
            self.delete_if_ours();
        }
    }

    fn delete_if_ours(&self) {
        // Best effort: a lease not released expires by itself after TTL.
        if let Ok(mut conn) = connect(&self.client) {
            let _: Result<i64, _> = redis::cmd("EVAL")
                .arg(RELEASE_SCRIPT)
                .arg(1)
                .arg(&self.key)
                .arg(&self.token)
                .query(&mut conn);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.stop();
        self.delete_if_ours();
    }
}

fn connect(client: &Client) -> Result<Connection, BackendError> {
    let conn = super::open_connection(client)?;
    conn.set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(map_err)?;
    conn.set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(map_err)?;
    Ok(conn)
}

/// One renewal on the lease thread's own connection (made again after
/// any failure), bounded by the connection's timeouts.
fn renew_once(client: &Client, conn: &mut Option<Connection>, key: &[u8], token: &str) -> Renewal {
    if conn.is_none() {
        *conn = connect(client).ok();
    }
    let Some(c) = conn.as_mut() else {
        return Renewal::Unreachable;
    };
    let renewed: redis::RedisResult<i64> = redis::cmd("EVAL")
        .arg(RENEW_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(token)
        .arg(TTL.as_millis() as u64)
        .query(c);
    match renewed {
        Ok(1) => Renewal::Renewed,
        Ok(_) => Renewal::Lost,
        Err(_) => {
            *conn = None;
            Renewal::Unreachable
        }
    }
}

/// The pid-and-host part of a holder's token, for messages.
fn describe_holder(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    match text.split_once(' ') {
        Some((_, who)) if who.starts_with("pid ") => who.escape_debug().to_string(),
        _ => "another process".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_described_by_pid_and_host_only() {
        assert_eq!(
            describe_holder(b"00ff pid 42 on build-1"),
            "pid 42 on build-1"
        );
        assert_eq!(describe_holder(b"junk"), "another process");
    }
}
