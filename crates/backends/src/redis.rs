//! The Redis backend (also Valkey and other servers speaking RESP).
//!
//! # Layout
//!
//! One string per entry, at the store's key prefix followed by the node key
//! (binary). The value is the entry's count as 8 bytes big-endian followed by
//! the stored bytes: a count update is a `SETRANGE key 0 COUNT` that rewrites
//! those eight bytes in place without sending the node again, and reading a
//! count alone is a `GETRANGE key 0 7`. A plain `SETRANGE` on a missing key
//! would create an entry with an empty value, so a count update runs as a tiny
//! Lua script that checks `EXISTS` first (the trait allows a count update of a
//! missing key to be a no-op, and a stray header-only entry would look like a
//! node whose value is empty).
//!
//! Three strings under the prefix are not entries, and every walk and
//! [`Backend::usage`] skips them by name (a node or catalog key never has
//! their length):
//!
//! - `PREFIX\0seccs:store-marker`, the store marker
//!   ([`Backend::read_marker`]): the 32 lowercase hex characters of
//!   config.toml's `key_check` (the store key's check value), as ASCII,
//!   nothing else (no count header, no line ending). It is written once,
//!   by `init` or the first writer of a store made before markers, and
//!   every batch runs only while it holds that value.
//! - `PREFIX\0seccs:store-descriptor`, the store's descriptor
//!   ([`Backend::read_descriptor`]; its format is
//!   `seccs_store::descriptor`'s), written by the first writer to open the
//!   store with its parameters confirmed, under the writer lease.
//! - `PREFIX\0seccs:writer-lease`, the writer lease (see the `lease`
//!   module), held only while a process has the store open for writing:
//!   the ASCII text `TOKEN pid PID on HOST` (TOKEN 32 random lowercase hex
//!   characters, PID the holder's process id in decimal, HOST its host
//!   name), set with a TTL of 30 s (`PX 30000`) that the holder renews
//!   every 5 s, so a holder that died frees it within 30 s.
//!
//! (`\0` is one zero byte; PREFIX is the URL's `prefix`, empty without one.)
//!
//! # Round trips
//!
//! A batch is one command: a Lua script that applies the batch's net effect
//! on each key (puts as `MSET`s, deletes as `DEL`s, count updates), which
//! Redis runs atomically like `MULTI`/`EXEC`. A command that does not arrive whole is never run, so a
//! connection lost mid-batch applies nothing, and a put of any size costs
//! one round trip. Reads of many keys are one `MGET` (values and counts) or
//! one script of `GETRANGE`s (counts only).
//!
//! Every request is one command with one reply, never a pipeline of many:
//! the client waits for each reply of a pipeline in turn, each with its own
//! timeout, so a server that stopped answering would hold a pipeline of N
//! commands for N timeouts. One reply makes the request timeout (60 s unless
//! [`RedisConfig::with_request_timeout`] says otherwise) bound the request.
//!
//! # Connection
//!
//! `redis://HOST[:PORT][/DB][?prefix=P]`, or `rediss://` for TLS (rustls with
//! the ring provider, server certificates checked against the system's
//! roots). User name and password come from the URL's user info or from the
//! environment (`REDIS_USERNAME`, `REDIS_PASSWORD`); a store records its URL
//! without them. One connection is kept and re-established after an I/O
//! error, so a backend survives a server restart.
//!
//! Several stores can share one database through distinct prefixes; without
//! a prefix, the store expects the database to itself: [`Backend::for_each`]
//! takes every string key under the prefix for an entry (its first 8 bytes
//! for the count), but for the marker and the lease (see *Layout*), reports
//! one shorter than 8 bytes as corrupt, and skips keys that are not
//! strings; [`Backend::usage`] fails as corrupt on those (`init` then says
//! the place holds keys that are not a store's entries).
//!
//! # One writer
//!
//! [`RedisBackend::connect_exclusive`] also takes the store's writer lease
//! (see the `lease` module): a second process that opens the same prefix
//! exclusively gets [`BackendError::Locked`] naming the holder, and writes
//! stop if the lease cannot be renewed. Each batch checks on the server, in
//! its own atomic script, that the lease key still holds this writer's
//! token, so a writer that lost its lease writes nothing even before it
//! noticed. `seccs` opens every store this way.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::{Client, Connection, ErrorKind, IntoConnectionInfo, RedisError};
use seccs_store::backend::{Backend, BackendError, Batch, Damaged, Entry, Visitor};

use crate::batch::{Effect, RoundTrips, coalesce};

mod lease;

use lease::{LEASE_KEY, Lease};

/// The store marker's key after the prefix (see [`Backend::read_marker`]);
/// like the lease's, a length no entry has, and walks skip it.
const MARKER_KEY: &[u8] = b"\0seccs:store-marker";
/// The store descriptor's key after the prefix (see
/// [`Backend::read_descriptor`]); a length no entry has, and walks skip it.
const DESCRIPTOR_KEY: &[u8] = b"\0seccs:store-descriptor";

const NAME: &str = "redis";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for its answer: far longer than any batch takes
/// (a batch is at most a few 4 MiB segments), so that only a server that
/// stopped answering makes a command fail rather than wait for ever.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Keys per `SCAN` step and per `MGET` in [`Backend::walk`].
const SCAN_COUNT: usize = 1000;
/// Steps a `SCAN` may take beyond twice the database's size (see
/// [`scan_bound`]): each step that finds no key still covers at least
/// `SCAN_COUNT` buckets (the server looks at up to ten times that many
/// empty ones), so this many such steps cover a table of 10^9 buckets.
const SCAN_SPARE_STEPS: u64 = 1 << 20;

/// Applies a batch coalesced to one effect per key (so their order does
/// not matter). KEYS[1] is the store marker's key and KEYS[2] the writer
/// lease's; ARGV[1] is `1` if the marker must hold ARGV[2] for the batch to
/// be applied at all (see [`Backend::guard_writes_with_marker`]), and
/// ARGV[3] is `1` if the lease must hold this writer's token, ARGV[4] (a
/// backend opened with [`RedisBackend::connect_exclusive`]): both are
/// checked before anything is written, in the same atomic step as the
/// writes, so a writer that lost its lease (to another process, or to
/// expiry) writes nothing even if it has not noticed yet. The marker comes
/// first: a server that lost everything lost the lease too, and "the store
/// is lost" says more than "the lease is lost". Then KEYS holds
/// the keys put, those whose count is set, and those deleted; ARGV[5] and
/// ARGV[6] say how many are put and how many counted, and the stored bytes
/// of each put and the 8-byte count of each count update follow. Puts go
/// out as `MSET`s and deletes as `DEL`s of up to 512 keys (Lua passes at
/// most a few thousand values to one call); a count is set only where its
/// entry exists (see the module docs), as its type, read before anything is
/// written, says (a batch holds one effect per key, so its puts do not
/// change it). A count's key that holds another type than a string fails
/// the batch before anything is written: Redis keeps a script's writes made
/// before an error.
const APPLY_SCRIPT: &str = "if ARGV[1] == '1' and redis.call('GET', KEYS[1]) ~= ARGV[2] then \
       return redis.error_reply('SECCSMARKER the store marker is gone') \
     end \
     if ARGV[3] == '1' and redis.call('GET', KEYS[2]) ~= ARGV[4] then \
       return redis.error_reply('SECCSLEASE this process no longer holds the writer lease') \
     end \
     local puts, counts = tonumber(ARGV[5]), tonumber(ARGV[6]) \
     local counted = {} \
     for k = puts + 1, puts + counts do \
       local t = redis.call('TYPE', KEYS[2 + k]).ok \
       if t == 'string' then counted[k] = true \
       elseif t ~= 'none' then \
         return redis.error_reply('SECCSTYPE a key whose count the batch sets holds a ' .. t) \
       end \
     end \
     local i = 1 \
     while i <= puts do \
       local last, kv = math.min(i + 511, puts), {} \
       for k = i, last do kv[#kv + 1] = KEYS[2 + k]; kv[#kv + 1] = ARGV[6 + k] end \
       redis.call('MSET', unpack(kv)) \
       i = last + 1 \
     end \
     for k = puts + 1, puts + counts do \
       if counted[k] then \
         redis.call('SETRANGE', KEYS[2 + k], 0, ARGV[6 + k]) \
       end \
     end \
     i = puts + counts + 3 \
     while i <= #KEYS do \
       local last = math.min(i + 511, #KEYS) \
       redis.call('DEL', unpack(KEYS, i, last)) \
       i = last + 1 \
     end \
     return #KEYS";
/// The first line that lets a script run on a server at its `maxmemory`
/// limit with eviction off, which refuses every command that may need
/// more memory (`SET`, `SETRANGE`, a script whose first write is one).
/// Only Redis 7 and later read it; earlier servers fail to compile it.
/// Within a script without it, such a refusal comes only at the first
/// write, so a batch refused is never half written.
const ALLOW_OOM: &str = "#!lua flags=allow-oom\n";

/// Whether the server whose `INFO server` answer is `info` reads a
/// script's flags line ([`ALLOW_OOM`]): Redis 7 and later.
fn reads_script_flags(info: &str) -> bool {
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .and_then(|version| version.trim().split('.').next()?.parse::<u32>().ok())
        .is_some_and(|major| major >= 7)
}

/// Sets the store marker or descriptor (KEYS[1]) to ARGV[3], only while the writer lease
/// (KEYS[2]) holds this writer's token ARGV[2] if ARGV[1] is `1`.
const WRITE_MARKER_SCRIPT: &str = "if ARGV[1] == '1' and redis.call('GET', KEYS[2]) ~= ARGV[2] then \
       return redis.error_reply('SECCSLEASE this process no longer holds the writer lease') \
     end \
     redis.call('SET', KEYS[1], ARGV[3]) \
     return 1";
/// The first ARGV[1] + 1 bytes of the string KEYS[1] (the store marker or
/// descriptor), or nil where there is none (`GETRANGE` alone answers an
/// empty string for a missing key). A key of another type, which seccs
/// never writes there (and where `GETRANGE` would fail with `WRONGTYPE`),
/// reads as an empty string: a value that is not one, as damage, and a
/// writer's `SET` replaces it.
const GET_BOUNDED_SCRIPT: &str = "local t = redis.call('TYPE', KEYS[1]).ok \
     if t == 'none' then return false end \
     if t ~= 'string' then return '' end \
     return redis.call('GETRANGE', KEYS[1], 0, ARGV[1])";
/// Deletes the store marker (KEYS[1]), only while the writer lease
/// (KEYS[2]) holds this writer's token ARGV[2] if ARGV[1] is `1`.
const REMOVE_MARKER_SCRIPT: &str = "if ARGV[1] == '1' and redis.call('GET', KEYS[2]) ~= ARGV[2] then \
       return redis.error_reply('SECCSLEASE this process no longer holds the writer lease') \
     end \
     redis.call('DEL', KEYS[1]) \
     return 1";
/// The first 8 bytes (the count) of every key; nil for a missing key
/// (`GETRANGE` alone answers an empty string for it, as for an entry
/// whose value is empty, which is damage). A key of another type than a
/// string, which seccs never writes (and where `GETRANGE` would fail the
/// whole script with `WRONGTYPE`), counts as missing, as an entry deleted
/// would: a put of its content writes the entry over it, and a removal
/// goes past it; a walk (`verify`) reports it as damage.
const COUNTS_SCRIPT: &str = "local out = {} \
     for i, key in ipairs(KEYS) do \
       if redis.call('TYPE', key).ok == 'string' then out[i] = redis.call('GETRANGE', key, 0, 7) \
       else out[i] = false end \
     end \
     return out";

/// The length of every key (KEYS) as `STRLEN` gives it, [`MISSING`] for a
/// key that is gone and [`NOT_A_STRING`] for one of another type (where
/// `STRLEN` would fail the whole script with `WRONGTYPE`).
const LENGTHS_SCRIPT: &str = "local out = {} \
     for i, key in ipairs(KEYS) do \
       local t = redis.call('TYPE', key).ok \
       if t == 'string' then out[i] = redis.call('STRLEN', key) \
       elseif t == 'none' then out[i] = -1 \
       else out[i] = -2 end \
     end \
     return out";
/// [`LENGTHS_SCRIPT`]'s answer for a key that is gone.
const MISSING: i64 = -1;
/// [`LENGTHS_SCRIPT`]'s answer for a key that is not a string.
const NOT_A_STRING: i64 = -2;

/// Where a Redis-backed store lives and how to log in.
#[derive(Clone)]
pub struct RedisConfig {
    tls: bool,
    host: String,
    port: u16,
    db: i64,
    prefix: Vec<u8>,
    username: Option<String>,
    password: Option<String>,
    request_timeout: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Parses `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB][?prefix=P]` (or
    /// `rediss://` for TLS). Any other query parameter is an error.
    pub fn parse(url: &str) -> Result<Self, BackendError> {
        let bad = |what: String| BackendError::Config(format!("redis URL: {what}"));
        crate::check_user_info(url).map_err(bad)?;
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("{e}")))?;
        let tls = match parsed.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(bad(format!("scheme {other:?} is not redis or rediss"))),
        };
        // An IPv6 address comes in brackets, which `client` adds again.
        let host = parsed
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host".into()))?
            .to_owned();
        let port = parsed.port().unwrap_or(6379);
        let db = match parsed.path().trim_start_matches('/') {
            "" => 0,
            db => db
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| bad(format!("database {db:?} is not a number")))?,
        };
        let mut prefix = Vec::new();
        for (name, value) in crate::query_pairs_once(&parsed).map_err(bad)? {
            match name.as_ref() {
                "prefix" => prefix = value.as_bytes().to_vec(),
                other => return Err(bad(format!("unknown parameter {other:?} (known: prefix)"))),
            }
        }
        if parsed.fragment().is_some() {
            return Err(bad("fragments are not supported".into()));
        }
        let decode = |s: &str| {
            crate::percent_decode(s)
                .ok_or_else(|| bad("user info is not valid percent-encoded UTF-8".into()))
        };
        let username = match parsed.username() {
            "" => None,
            user => Some(decode(user)?),
        };
        let password = parsed.password().map(decode).transpose()?;
        Ok(Self {
            tls,
            host,
            port,
            db,
            prefix,
            username,
            password,
            request_timeout: IO_TIMEOUT,
        })
    }

    /// Fills a user name and password missing from the URL from
    /// `REDIS_USERNAME` and `REDIS_PASSWORD`.
    pub fn with_env_credentials(mut self) -> Self {
        if self.username.is_none() {
            self.username = crate::env("REDIS_USERNAME");
        }
        if self.password.is_none() {
            self.password = crate::env("REDIS_PASSWORD");
        }
        self
    }

    /// Sets how long a request waits for its reply before the server counts
    /// as not answering (60 s unless set).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the user name and password (`AUTH user password`).
    pub fn with_credentials(mut self, username: Option<&str>, password: Option<&str>) -> Self {
        self.username = username.map(str::to_owned);
        self.password = password.map(str::to_owned);
        self
    }

    /// The key prefix of every entry.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn client(&self) -> Result<Client, BackendError> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let url = format!("{scheme}://{host}:{}/{}", self.port, self.db);
        let info = url.as_str().into_connection_info().map_err(map_err)?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        if self.tls {
            crate::install_crypto_provider();
        }
        Client::open(info.set_redis_settings(settings)).map_err(map_err)
    }
}

/// A content store's entries in a Redis database.
pub struct RedisBackend {
    client: Client,
    prefix: Vec<u8>,
    /// The marker every batch must find (see
    /// [`Backend::guard_writes_with_marker`]).
    marker_guard: Mutex<Option<Vec<u8>>>,
    request_timeout: Duration,
    conn: Mutex<Option<Connection>>,
    round_trips: RoundTrips,
    lease: Option<Lease>,
    /// Whether the server reads a script's flags (Redis 7 and later), so
    /// that a writer's lease and its batches that put nothing run when the
    /// server is at its `maxmemory` limit (see [`ALLOW_OOM`]).
    scripts_take_flags: bool,
    /// What [`eviction_risk`] found at connect, which
    /// [`Backend::risks`] reports.
    eviction: Option<String>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field(
                "server",
                &self.client.get_connection_info().addr().to_string(),
            )
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects (and authenticates) to the server; fails if it does not
    /// answer a `PING`.
    pub fn connect(config: RedisConfig) -> Result<Self, BackendError> {
        let mut backend = Self {
            client: config.client()?,
            prefix: config.prefix,
            marker_guard: Mutex::new(None),
            request_timeout: config.request_timeout,
            conn: Mutex::new(None),
            round_trips: RoundTrips::default(),
            lease: None,
            scripts_take_flags: false,
            eviction: None,
        };
        // The first answer is waited for as long as connecting may take,
        // not a whole request timeout: a port that takes the connection
        // and never answers is not a Redis server.
        let mut conn = open_connection(&backend.client)?;
        set_timeouts(&mut conn, CONNECT_TIMEOUT)?;
        backend.round_trips.add(1);
        redis::cmd("PING").query::<()>(&mut conn).map_err(map_err)?;
        set_timeouts(&mut conn, backend.request_timeout)?;
        backend.round_trips.add(2);
        backend.eviction = eviction_risk(&mut conn);
        *backend.lock() = Some(conn);
        Ok(backend)
    }

    /// Like [`RedisBackend::connect`], and takes the store's writer lease:
    /// fails with [`BackendError::Locked`] if another process holds it.
    /// The lease is renewed in the background and released on drop; a
    /// write after it could not be renewed fails with the same error.
    pub fn connect_exclusive(config: RedisConfig) -> Result<Self, BackendError> {
        let mut backend = Self::connect(config)?;
        backend.scripts_take_flags = backend.with_conn(|conn| {
            match redis::cmd("INFO").arg("server").query::<String>(conn) {
                Ok(info) => Ok(reads_script_flags(&info)),
                // A user whose ACL leaves out INFO writes as on a server
                // before 7, without the flags, as it did before they were
                // used.
                Err(e) if e.code() == Some("NOPERM") => Ok(false),
                Err(e) => Err(e),
            }
        })?;
        let key = backend.key(LEASE_KEY);
        backend.lease = Some(Lease::acquire(
            &backend.client,
            key,
            backend.scripts_take_flags,
        )?);
        Ok(backend)
    }

    /// Round trips to the server so far (the initial `PING` included).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.get()
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key);
        full
    }

    /// The string `PREFIX ‖ name` beside the entries (the marker or the
    /// descriptor), if there is one: its first
    /// [`MAX_BESIDE_ENTRIES`](seccs_store::backend::MAX_BESIDE_ENTRIES) + 1
    /// bytes.
    fn get_beside_entries(&self, name: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.with_conn(|conn| {
            redis::cmd("EVAL")
                .arg(GET_BOUNDED_SCRIPT)
                .arg(1)
                .arg(self.key(name))
                .arg(seccs_store::backend::MAX_BESIDE_ENTRIES)
                .query(conn)
        })
    }

    /// Sets the string `PREFIX ‖ name` beside the entries (the marker or
    /// the descriptor), only while this writer holds the lease where it
    /// takes one.
    fn set_beside_entries(&self, name: &[u8], value: &[u8]) -> Result<(), BackendError> {
        if let Some(lease) = &self.lease {
            lease.check()?;
        }
        let (fence, token) = self.lease_fence();
        self.with_conn(|conn| {
            redis::cmd("EVAL")
                .arg(WRITE_MARKER_SCRIPT)
                .arg(2)
                .arg(self.key(name))
                .arg(self.key(LEASE_KEY))
                .arg(fence)
                .arg(token)
                .arg(value)
                .query::<()>(conn)
        })
    }

    /// The apply and marker scripts' lease arguments: `1` and this
    /// writer's token if it holds the lease (so the script writes only
    /// while the server's lease key still holds that token), else `0`.
    fn lease_fence(&self) -> (&'static str, &str) {
        match &self.lease {
            Some(lease) => ("1", lease.token()),
            None => ("0", ""),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        // The connection is dropped on any error below, so a panic elsewhere
        // while the lock was held leaves nothing half-used behind.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one request (one round trip) on the connection, connecting first
    /// if needed and dropping the connection after an I/O error.
    ///
    /// A request whose answer was interrupted ([`was_interrupted`]) is sent
    /// again on the same connection, up to [`INTERRUPTED_RETRIES`] times:
    /// the first reached the server, which runs a connection's requests in
    /// order, and the redis client skips its late answer. Sending it twice
    /// changes nothing, as every request seccs makes is a read or sets
    /// absolute values (a batch's counts were computed by this writer
    /// under its lease, which the script checks again), so both runs leave
    /// what one leaves.
    fn with_conn<T>(
        &self,
        mut request: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, BackendError> {
        let mut guard = self.lock();
        let conn = match guard.as_mut() {
            Some(conn) => conn,
            None => {
                let mut conn = open_connection(&self.client)?;
                set_timeouts(&mut conn, self.request_timeout)?;
                guard.insert(conn)
            }
        };
        self.round_trips.add(1);
        match again_if_interrupted(|| request(conn)) {
            Ok(value) => Ok(value),
            Err(err) => {
                if err.is_io_error() || err.is_connection_dropped() || err.is_timeout() {
                    *guard = None;
                }
                if err.is_timeout() {
                    return Err(BackendError::unavailable(
                        NAME,
                        format!(
                            "no answer in {} s: the server stopped answering, paused, \
                             overloaded or cut off?",
                            self.request_timeout.as_secs_f64()
                        ),
                    ));
                }
                Err(map_err(err))
            }
        }
    }

    /// Of the `full` keys that `MGET` answered with nothing (`raw`), those
    /// that hold another type than a string (which `MGET` answers so too)
    /// rather than nothing: asked only when one is missing, so that a walk
    /// of entries that are there costs no more. (A lookup of one key reads
    /// such a key as missing, as it reads a deleted entry.)
    fn not_strings<'k>(
        &self,
        full: &'k [Vec<u8>],
        raw: &[Option<Vec<u8>>],
    ) -> Result<Vec<&'k [u8]>, BackendError> {
        let missing: Vec<&[u8]> = full
            .iter()
            .zip(raw)
            .filter(|(_, raw)| raw.is_none())
            .map(|(key, _)| key.as_slice())
            .collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let lens: Vec<i64> = self.with_conn(|conn| {
            redis::cmd("EVAL")
                .arg(LENGTHS_SCRIPT)
                .arg(missing.len())
                .arg(&missing)
                .query(conn)
        })?;
        Ok(missing
            .into_iter()
            .zip(lens)
            .filter(|(_, len)| *len == NOT_A_STRING)
            .map(|(key, _)| key)
            .collect())
    }

    fn decode(&self, key: &[u8], raw: Vec<u8>) -> Result<Entry, BackendError> {
        if raw.len() < 8 {
            return Err(BackendError::Corrupt {
                backend: NAME.into(),
                detail: format!(
                    "entry {} is {} bytes, shorter than its 8-byte count",
                    hex::encode(key),
                    raw.len()
                ),
            });
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&raw[..8]);
        let mut value = raw;
        value.drain(..8);
        Ok(Entry {
            value,
            count: u64::from_be_bytes(count),
        })
    }

    /// Every key under the store's prefix followed by `under`, `SCAN_COUNT`
    /// at a time: the server matches the pattern, so a walk of a small part
    /// (the catalog) sends only that part's keys.
    fn scan(
        &self,
        under: &[u8],
        mut visit: impl FnMut(Vec<Vec<u8>>) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let mut pattern = glob_escaped(&[&self.prefix, under].concat());
        pattern.push(b'*');
        let (lease, marker) = (self.key(LEASE_KEY), self.key(MARKER_KEY));
        let descriptor = self.key(DESCRIPTOR_KEY);
        self.scan_matching(&pattern, |keys| {
            let keys: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| *k != lease && *k != marker && *k != descriptor)
                .collect();
            if keys.is_empty() {
                return Ok(());
            }
            visit(keys)
        })
    }

    /// Every key of the database that matches the glob `pattern`,
    /// `SCAN_COUNT` at a time, each once.
    fn scan_matching(
        &self,
        pattern: &[u8],
        visit: impl FnMut(Vec<Vec<u8>>) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let dbsize: u64 = self.with_conn(|conn| redis::cmd("DBSIZE").query(conn))?;
        scan_pages(
            scan_bound(dbsize),
            |cursor| {
                self.with_conn(|conn| {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query(conn)
                })
            },
            visit,
        )
    }
}

/// How many steps a `SCAN` of a database holding `dbsize` keys may take,
/// and how many distinct keys it may hand over, before the server is taken
/// to be looping: a step that finds a key is one of at most `dbsize` (twice
/// that, for keys a rehash returns again or a concurrent writer adds), and
/// a step that finds none still covers at least `SCAN_COUNT` buckets (a
/// `MATCH` filters after the buckets are read), so [`SCAN_SPARE_STEPS`]
/// more cover any table the server can have.
fn scan_bound(dbsize: u64) -> u64 {
    dbsize.saturating_mul(2).saturating_add(SCAN_SPARE_STEPS)
}

/// Follows a `SCAN` from cursor 0 until it returns to 0, `step` fetching
/// the page at a cursor (the next cursor and its keys), and hands `visit`
/// each page's keys that no earlier page had. `SCAN` may return a key more
/// than once (when the server rehashes its table between steps), and a key
/// visited twice would be an entry counted twice (by `verify`, `gc`, `ls`).
/// The keys seen are kept for the whole scan: a store's keys are short
/// (node digests, catalog records), so even millions fit in memory.
///
/// The server is not trusted to end the scan: a cursor it gave before
/// (a real scan's cursor only moves on, even across a rehash) or more than
/// `bound` steps or distinct keys (see [`scan_bound`]) end it with an
/// error, so that neither the time nor what is kept grows without bound.
fn scan_pages(
    bound: u64,
    mut step: impl FnMut(u64) -> Result<(u64, Vec<Vec<u8>>), BackendError>,
    mut visit: impl FnMut(Vec<Vec<u8>>) -> Result<(), BackendError>,
) -> Result<(), BackendError> {
    let looping = |detail: String| BackendError::Corrupt {
        backend: NAME.into(),
        detail: format!("SCAN does not finish: {detail}"),
    };
    let mut seen: HashSet<Box<[u8]>> = HashSet::new();
    let mut cursors: HashSet<u64> = HashSet::from([0]);
    let mut cursor: u64 = 0;
    for _ in 0..bound {
        let (next, mut keys) = step(cursor)?;
        keys.retain(|key| seen.insert(key.as_slice().into()));
        if u64::try_from(seen.len()).unwrap_or(u64::MAX) > bound {
            return Err(looping(format!(
                "the server returned more than {bound} distinct keys, far more than the \
                 database holds"
            )));
        }
        if !keys.is_empty() {
            visit(keys)?;
        }
        if next == 0 {
            return Ok(());
        }
        if !cursors.insert(next) {
            return Err(looping(format!(
                "the server returned cursor {next} a second time"
            )));
        }
        cursor = next;
    }
    Err(looping(format!(
        "{bound} steps, far more than the database's size needs"
    )))
}

/// `bytes` as a `MATCH` pattern that matches exactly them.
fn glob_escaped(bytes: &[u8]) -> Vec<u8> {
    let mut pattern = Vec::with_capacity(2 * bytes.len() + 1);
    for &b in bytes {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(b);
    }
    pattern
}

/// A store's prefix, for messages.
fn describe_prefix(prefix: &[u8]) -> String {
    if prefix.is_empty() {
        "the store without a prefix (the whole database)".into()
    } else {
        format!("the store at prefix {:?}", String::from_utf8_lossy(prefix))
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        let raw: Vec<Option<Vec<u8>>> = self.with_conn(|conn| {
            // MGET of one key still answers with an array.
            redis::cmd("MGET").arg(&full).query(conn)
        })?;
        if raw.len() != keys.len() {
            return Err(BackendError::other(
                NAME,
                "MGET answered the wrong number of values",
            ));
        }
        raw.into_iter()
            .zip(keys)
            .map(|(raw, key)| raw.map(|raw| self.decode(key, raw)).transpose())
            .collect()
    }

    fn get_counts(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        let raw: Vec<Option<Vec<u8>>> = self.with_conn(|conn| {
            redis::cmd("EVAL")
                .arg(COUNTS_SCRIPT)
                .arg(full.len())
                .arg(&full)
                .query(conn)
        })?;
        if raw.len() != keys.len() {
            return Err(BackendError::other(
                NAME,
                "the counts script answered the wrong number of values",
            ));
        }
        raw.into_iter()
            .zip(keys)
            .map(|(raw, key)| match raw {
                None => Ok(None),
                // An entry always has its 8-byte count; anything shorter
                // (an empty value too) is damage.
                Some(raw) if raw.len() == 8 => {
                    let mut count = [0u8; 8];
                    count.copy_from_slice(&raw);
                    Ok(Some(u64::from_be_bytes(count)))
                }
                Some(raw) => self.decode(key, raw).map(|e| Some(e.count)),
            })
            .collect()
    }

    fn apply(&self, batch: &Batch) -> Result<(), BackendError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(lease) = &self.lease {
            lease.check()?;
        }
        let effects = coalesce(batch.ops());
        if effects.is_empty() {
            return Ok(());
        }
        let (mut puts, mut counts, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
        let (mut put_values, mut count_values) = (Vec::new(), Vec::new());
        for (key, effect) in effects {
            match effect {
                Effect::Put { value, count } => {
                    let mut stored = Vec::with_capacity(8 + value.len());
                    stored.extend_from_slice(&count.to_be_bytes());
                    stored.extend_from_slice(value);
                    puts.push(self.key(key));
                    put_values.push(stored);
                }
                Effect::SetCount { count } => {
                    counts.push(self.key(key));
                    count_values.push(count.to_be_bytes().to_vec());
                }
                Effect::Delete => deletes.push(self.key(key)),
            }
        }
        let (put_count, count_count) = (puts.len(), counts.len());
        let keys = [
            vec![self.key(MARKER_KEY), self.key(LEASE_KEY)],
            puts,
            counts,
            deletes,
        ]
        .concat();
        let guard = self
            .marker_guard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (check, expected) = match guard {
            Some(value) => ("1", value),
            None => ("0", Vec::new()),
        };
        let (fence, token) = self.lease_fence();
        // A batch that puts nothing only deletes and rewrites counts in
        // place, so it needs no more memory: it may run on a full server,
        // which is how a full store is given room again.
        let script = if put_count == 0 && self.scripts_take_flags {
            format!("{ALLOW_OOM}{APPLY_SCRIPT}")
        } else {
            APPLY_SCRIPT.to_owned()
        };
        self.with_conn(|conn| {
            redis::cmd("EVAL")
                .arg(&script)
                .arg(keys.len())
                .arg(&keys)
                .arg(check)
                .arg(&expected)
                .arg(fence)
                .arg(token)
                .arg(put_count)
                .arg(count_count)
                .arg(&put_values)
                .arg(&count_values)
                .query::<()>(conn)
        })
    }

    fn is_transactional(&self) -> bool {
        true
    }

    fn release(&self) {
        if let Some(lease) = &self.lease {
            lease.release_now();
        }
    }

    fn risks(&self) -> Vec<String> {
        self.eviction.iter().cloned().collect()
    }

    fn keeps_marker(&self) -> bool {
        true
    }

    fn read_marker(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.get_beside_entries(MARKER_KEY)
    }

    fn guard_writes_with_marker(&self, value: &[u8]) {
        *self.marker_guard.lock().unwrap_or_else(|p| p.into_inner()) = Some(value.to_vec());
    }

    fn nested_stores(&self) -> Result<Vec<String>, BackendError> {
        let mut found = Vec::new();
        // Stores whose prefix this one's starts with: a marker at each
        // shorter prefix, read in one request.
        if !self.prefix.is_empty() {
            let outer: Vec<Vec<u8>> = (0..self.prefix.len())
                .map(|len| [&self.prefix[..len], MARKER_KEY].concat())
                .collect();
            let markers: Vec<Option<Vec<u8>>> =
                self.with_conn(|conn| redis::cmd("MGET").arg(&outer).query(conn))?;
            for (len, marker) in markers.iter().enumerate() {
                if marker.is_some() {
                    found.push(describe_prefix(&self.prefix[..len]));
                }
            }
        }
        // Stores whose prefix starts with this one's: markers under it.
        // (The marker's name has no glob character.)
        let own = self.key(MARKER_KEY);
        let mut pattern = glob_escaped(&self.prefix);
        pattern.push(b'*');
        pattern.extend_from_slice(MARKER_KEY);
        self.scan_matching(&pattern, |keys| {
            for key in keys {
                if key != own
                    && let Some(prefix) = key.strip_suffix(MARKER_KEY)
                {
                    found.push(describe_prefix(prefix));
                }
            }
            Ok(())
        })?;
        Ok(found)
    }

    fn keeps_descriptor(&self) -> bool {
        true
    }

    fn read_descriptor(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.get_beside_entries(DESCRIPTOR_KEY)
    }

    fn write_descriptor(&self, value: &[u8]) -> Result<(), BackendError> {
        self.set_beside_entries(DESCRIPTOR_KEY, value)
    }

    fn write_marker(&self, value: &[u8]) -> Result<(), BackendError> {
        self.set_beside_entries(MARKER_KEY, value)
    }

    fn remove_marker(&self) -> Result<(), BackendError> {
        if let Some(lease) = &self.lease {
            lease.check()?;
        }
        let (fence, token) = self.lease_fence();
        self.with_conn(|conn| {
            redis::cmd("EVAL")
                .arg(REMOVE_MARKER_SCRIPT)
                .arg(2)
                .arg(self.key(MARKER_KEY))
                .arg(self.key(LEASE_KEY))
                .arg(fence)
                .arg(token)
                .query::<()>(conn)
        })
    }

    /// Visits every entry under the store's prefix followed by `prefix`,
    /// a `SCAN` page at a time; an entry too short to hold its count is
    /// damaged.
    fn walk(
        &self,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
        mut damaged: Option<&mut Damaged<'_>>,
    ) -> Result<(), BackendError> {
        self.scan(prefix, |keys| {
            let raw: Vec<Option<Vec<u8>>> =
                self.with_conn(|conn| redis::cmd("MGET").arg(&keys).query(conn))?;
            if raw.len() == keys.len() {
                for full in self.not_strings(&keys, &raw)? {
                    let Some(key) = full.strip_prefix(self.prefix.as_slice()) else {
                        continue;
                    };
                    match damaged.as_mut() {
                        Some(damaged) => damaged(key, not_an_entry(full)),
                        None => return Err(not_an_entry(full)),
                    }
                }
            }
            for (key, raw) in walk_page(&self.prefix, &keys, raw)? {
                match (self.decode(key, raw), damaged.as_mut()) {
                    (Ok(entry), _) => visit(key, &entry)?,
                    (Err(e), Some(damaged)) => damaged(key, e),
                    (Err(e), None) => return Err(e),
                }
            }
            Ok(())
        })
    }

    /// One script per `SCAN` page measures its keys, so that a server that
    /// stops answering holds it for one request timeout (see the module
    /// docs).
    fn usage(&self) -> Result<seccs_store::backend::Usage, BackendError> {
        let mut usage = seccs_store::backend::Usage::default();
        self.scan(&[], |keys| {
            let lens: Vec<i64> = self.with_conn(|conn| {
                redis::cmd("EVAL")
                    .arg(LENGTHS_SCRIPT)
                    .arg(keys.len())
                    .arg(&keys)
                    .query(conn)
            })?;
            usage_page(&self.prefix, &keys, &lens, &mut usage)
        })?;
        Ok(usage)
    }
}

/// The error of a key under the store's prefix that holds another type
/// than a string: nothing seccs writes, so damage where an entry would be.
fn not_an_entry(full: &[u8]) -> BackendError {
    BackendError::Corrupt {
        backend: NAME.into(),
        detail: format!(
            "key {} holds another type than a string, so not a store's entry (delete it, or put \
             its content again to write the entry over it)",
            hex::encode(full)
        ),
    }
}

/// A key of a `SCAN` page after the store's prefix, and its stored bytes.
type PageEntry<'k> = (&'k [u8], Vec<u8>);

/// The entries of a `SCAN` page whose values `MGET` read: each key after
/// the store's `prefix`, with its value. A key gone since the scan is
/// skipped, and so is one not under the prefix (the server matched it,
/// but the listing is checked as S3's is, rather than trusted to slice).
fn walk_page<'k>(
    prefix: &[u8],
    keys: &'k [Vec<u8>],
    raw: Vec<Option<Vec<u8>>>,
) -> Result<Vec<PageEntry<'k>>, BackendError> {
    if raw.len() != keys.len() {
        return Err(BackendError::other(
            NAME,
            "MGET answered the wrong number of values",
        ));
    }
    Ok(keys
        .iter()
        .zip(raw)
        .filter_map(|(full, raw)| Some((full.strip_prefix(prefix)?, raw?)))
        .collect())
}

/// Adds the keys of a `SCAN` page to `usage`, given their lengths as
/// [`LENGTHS_SCRIPT`] answered them; a key that is not a string is not a
/// store's entry, and makes the usage fail as corrupt.
fn usage_page(
    prefix: &[u8],
    keys: &[Vec<u8>],
    lens: &[i64],
    usage: &mut seccs_store::backend::Usage,
) -> Result<(), BackendError> {
    if lens.len() != keys.len() {
        return Err(BackendError::other(
            NAME,
            "the lengths script answered the wrong number of values",
        ));
    }
    for (full, &len) in keys.iter().zip(lens) {
        let Some(key) = full.strip_prefix(prefix) else {
            continue;
        };
        match len {
            // Gone since the scan.
            MISSING => {}
            NOT_A_STRING => {
                return Err(BackendError::Corrupt {
                    backend: NAME.into(),
                    detail: format!(
                        "key {} is not a string, so not a store's entry",
                        hex::encode(full)
                    ),
                });
            }
            // Damaged (too short for its count): still an entry, counted
            // by its key as `Store::stats` counts it, rather than a failure
            // of every total (`verify` reports it).
            0..8 => usage.add(key.len(), 0),
            len => match usize::try_from(len - 8) {
                Ok(value) => usage.add(key.len(), value),
                Err(_) => {
                    return Err(BackendError::other(
                        NAME,
                        format!("the lengths script answered {len} for a key"),
                    ));
                }
            },
        }
    }
    Ok(())
}

/// Why the server may drop the store's keys on its own, if it may: a
/// `maxmemory` limit with an `allkeys-*` policy evicts keys that have no
/// expiry, as every store key has none (the `volatile-*` policies and
/// `noeviction` leave them, and writes fail when the server is full).
/// `None` also where `CONFIG GET` is not allowed (an ACL, a managed
/// service). Two requests, one command each (see the module docs).
fn eviction_risk(conn: &mut Connection) -> Option<String> {
    let mut config_get = |name: &str| -> Option<Vec<String>> {
        redis::cmd("CONFIG").arg("GET").arg(name).query(conn).ok()
    };
    let policy = config_get("maxmemory-policy")?;
    let limit = config_get("maxmemory")?;
    let policy = policy.get(1)?;
    let limit: u64 = limit.get(1)?.parse().ok()?;
    (policy.starts_with("allkeys-") && limit > 0).then(|| {
        format!(
            "the Redis server evicts keys when it is full (maxmemory-policy {policy}, maxmemory \
             {limit} bytes), so it can drop a store's entries and lose contents; set \
             maxmemory-policy noeviction (writes then fail when it is full) or maxmemory 0"
        )
    })
}

/// How many times [`RedisBackend::with_conn`] sends a request again whose
/// answer was interrupted: once per stop of the process while it waited
/// (a user's Ctrl-Z and `fg`, a debugger, a job control script).
const INTERRUPTED_RETRIES: usize = 100;

/// Runs `request` again while its answer was interrupted
/// ([`was_interrupted`]), at most [`INTERRUPTED_RETRIES`] more times; its
/// last answer.
fn again_if_interrupted<T>(
    mut request: impl FnMut() -> redis::RedisResult<T>,
) -> redis::RedisResult<T> {
    let mut answer = request();
    for _ in 0..INTERRUPTED_RETRIES {
        match &answer {
            Err(err) if was_interrupted(err) => answer = request(),
            _ => break,
        }
    }
    answer
}

/// Whether `err` is a read of an answer that the kernel interrupted
/// (`EINTR`). Linux does not restart a socket call that has a timeout
/// (`SO_RCVTIMEO`, which [`set_timeouts`] sets) after the process was
/// stopped and continued (Ctrl-Z then `fg`, `SIGSTOP` then `SIGCONT`), so a
/// request waiting for its answer then fails though the server and the
/// connection are well.
fn was_interrupted(err: &RedisError) -> bool {
    // The client keeps an I/O error behind an `Arc` it does not expose.
    std::error::Error::source(err)
        .and_then(|e| e.downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>())
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .is_some_and(|e| e.kind() == std::io::ErrorKind::Interrupted)
}

/// How long `conn` waits for a reply, and for a request to be sent.
fn set_timeouts(conn: &mut Connection, timeout: Duration) -> Result<(), BackendError> {
    conn.set_read_timeout(Some(timeout))
        .and_then(|()| conn.set_write_timeout(Some(timeout)))
        .map_err(map_err)
}

/// A new connection to the server of `client`, made (TCP, TLS, log-in)
/// within [`CONNECT_TIMEOUT`].
fn open_connection(client: &Client) -> Result<Connection, BackendError> {
    client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(|err| {
            let tls = matches!(
                client.get_connection_info().addr(),
                redis::ConnectionAddr::TcpTls { .. }
            );
            if tls && err.is_timeout() {
                // A server without TLS takes the TLS hello for the start of a
                // command and waits for its end: the handshake never ends.
                BackendError::unavailable(
                    NAME,
                    format!(
                        "no TLS answer in {} s: does the server speak TLS? A Redis without \
                         TLS never answers a TLS hello (use redis:// for it); or it stopped \
                         answering ({err})",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                )
            } else {
                map_err(err)
            }
        })
}

fn map_err(err: RedisError) -> BackendError {
    let auth = err.kind() == ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("WRONGPASS" | "NOAUTH"));
    if err.code() == Some("NOPERM") {
        // Logged in, but the user's ACL leaves out a command or key seccs
        // uses: `init` also reads the markers of the prefixes that would
        // nest with its own, outside it.
        // Every later command is refused the same way: a put DIR stops
        // at the first.
        BackendError::Denied {
            backend: NAME.to_owned(),
            detail: format!(
                "the user is logged in but may not run a command or reach a key seccs uses \
                 (its ACL needs +@all or the commands seccs runs, and read access to the \
                 store's prefix and to the keys `init` checks for stores nesting with it): \
                 {err}"
            ),
        }
    } else if auth {
        BackendError::Auth {
            backend: NAME.into(),
            detail: format!(
                "{err} (later commands take the password from REDIS_PASSWORD, and an ACL \
                 user from REDIS_USERNAME)"
            ),
        }
    } else if err.is_timeout() {
        BackendError::unavailable(
            NAME,
            format!(
                "no answer in time (connecting allows {} s): the server stopped answering, \
                 paused, overloaded or cut off? ({err})",
                CONNECT_TIMEOUT.as_secs()
            ),
        )
    } else if err.is_io_error() || err.is_connection_refusal() || err.is_connection_dropped() {
        BackendError::unavailable(NAME, err)
    } else if err.code() == Some("SECCSTYPE") {
        // Checked before any write: Redis keeps a script's writes made
        // before an error, so a count set on such a key (WRONGTYPE) would
        // have left the batch's puts without its deletes.
        BackendError::Corrupt {
            backend: NAME.to_owned(),
            detail: format!(
                "{}, which no store writes; nothing of this write was written",
                err.detail()
                    .unwrap_or("a key whose count the batch sets is not a string")
            ),
        }
    } else if err.code() == Some("SECCSLEASE") {
        // A write found the lease key gone or holding another's token.
        BackendError::Locked {
            detail: format!(
                "{NAME}: this process no longer holds the store's writer lease (another process \
                 took it, or it expired while this process could not renew it); nothing of \
                 this write was written"
            ),
            by_this_process: false,
        }
    } else if err.code() == Some("OOM") {
        // Every later put would be refused the same way: a put DIR stops
        // at the first.
        BackendError::StorageFull {
            backend: NAME.to_owned(),
            detail: "the Redis server is at its maxmemory limit and refuses writes that need more \
             memory; nothing of this write was written. Raise the limit on the server (CONFIG \
             SET maxmemory, and in its config file), or give the store room: `seccs rm NAME` \
             of whole names and `seccs gc` still run on a full Redis 7 or later"
                .to_owned(),
        }
    } else if err.code() == Some("SECCSMARKER") {
        // A batch found the store marker gone.
        BackendError::marker_gone(NAME)
    } else if err.kind() == ErrorKind::InvalidClientConfig {
        BackendError::Config(format!("redis: {err}"))
    } else {
        BackendError::other(NAME, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's errors are read as they are built: an interrupted read
    /// is told from a timeout and from a dropped connection, which are not
    /// sent again.
    #[test]
    fn only_an_interrupted_answer_is_asked_again() {
        let io = |kind: std::io::ErrorKind| RedisError::from(std::io::Error::from(kind));
        assert!(was_interrupted(&io(std::io::ErrorKind::Interrupted)));
        assert!(!was_interrupted(&io(std::io::ErrorKind::WouldBlock)));
        assert!(!was_interrupted(&io(std::io::ErrorKind::TimedOut)));
        assert!(!was_interrupted(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(!was_interrupted(&RedisError::from((
            ErrorKind::Client,
            "not an I/O error"
        ))));
    }

    #[test]
    fn script_flags_are_used_from_redis_7_on() {
        let info = |version: &str| {
            format!("# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n")
        };
        assert!(!reads_script_flags(&info("6.2.14")));
        assert!(reads_script_flags(&info("7.0.15")));
        assert!(reads_script_flags(&info("10.0.0")));
        assert!(!reads_script_flags("# Server\r\nredis_mode:standalone\r\n"));
        assert!(!reads_script_flags(&info("seven")));
    }

    #[test]
    fn parses_prefix_db_tls_and_credentials() -> Result<(), BackendError> {
        let c = RedisConfig::parse("rediss://al%40ce:p%3Ass@example.org:7000/3?prefix=s1:")?;
        assert!(c.tls);
        assert_eq!((c.host.as_str(), c.port, c.db), ("example.org", 7000, 3));
        assert_eq!(c.prefix(), b"s1:");
        assert_eq!(c.username.as_deref(), Some("al@ce"));
        assert_eq!(c.password.as_deref(), Some("p:ss"));
        assert!(!format!("{c:?}").contains("p:ss"));
        let c = RedisConfig::parse("redis://127.0.0.1")?;
        assert_eq!((c.port, c.db, c.prefix().len()), (6379, 0, 0));
        Ok(())
    }

    /// `SCAN` pages as a rehashing server may return them: a key again on
    /// a later page, and twice on one page. Each key reaches the visitor
    /// once, and the scan follows the cursor to its end.
    #[test]
    fn a_scan_hands_each_key_over_once_though_pages_repeat_it() -> Result<(), BackendError> {
        let key = |k: &str| k.as_bytes().to_vec();
        let pages = [
            (7, vec![key("a"), key("b")]),
            (3, vec![key("b"), key("c"), key("c")]),
            (9, vec![key("a")]),
            (0, vec![key("d"), key("a")]),
        ];
        let mut cursors = Vec::new();
        let mut visited = Vec::new();
        scan_pages(
            scan_bound(4),
            |cursor| {
                cursors.push(cursor);
                Ok(pages[cursors.len() - 1].clone())
            },
            |keys| {
                visited.push(keys);
                Ok(())
            },
        )?;
        assert_eq!(cursors, [0, 7, 3, 9]);
        assert_eq!(
            visited,
            [vec![key("a"), key("b")], vec![key("c")], vec![key("d")]]
        );
        Ok(())
    }

    /// A server that hands out a cursor it gave before, or keeps a scan
    /// going past what the database's size allows, ends the scan with an
    /// error rather than looping for ever.
    #[test]
    fn a_scan_that_repeats_a_cursor_or_outruns_its_bound_fails() {
        let mut steps = 0u64;
        let repeated = scan_pages(
            scan_bound(0),
            |cursor| {
                steps += 1;
                Ok((if cursor == 5 { 6 } else { 5 }, Vec::new()))
            },
            |_| Ok(()),
        );
        assert!(
            matches!(&repeated, Err(BackendError::Corrupt { detail, .. })
                if detail.contains("cursor 5 a second time")),
            "{repeated:?}"
        );
        assert_eq!(steps, 3);
        let mut next = 0u64;
        let endless = scan_pages(
            10,
            |_| {
                next += 1;
                Ok((next, Vec::new()))
            },
            |_| Ok(()),
        );
        assert!(
            matches!(&endless, Err(BackendError::Corrupt { detail, .. })
                if detail.contains("10 steps")),
            "{endless:?}"
        );
        let mut page = 0u32;
        let too_many_keys = scan_pages(
            10,
            |_| {
                page += 1;
                let keys = (0..5u32).map(|i| [page, i].map(u32::to_be_bytes).concat());
                Ok((u64::from(page), keys.collect()))
            },
            |_| Ok(()),
        );
        assert!(
            matches!(&too_many_keys, Err(BackendError::Corrupt { detail, .. })
                if detail.contains("more than 10 distinct keys")),
            "{too_many_keys:?}"
        );
    }

    /// An IPv6 address keeps its one pair of brackets in the client's URL.
    #[test]
    fn an_ipv6_host_makes_a_client() -> Result<(), BackendError> {
        let c = RedisConfig::parse("redis://[::1]:6379/0")?;
        assert_eq!(c.host, "::1");
        c.client()?;
        Ok(())
    }

    /// A `SCAN` page holding a key outside the prefix (shorter than it, or
    /// not starting with it) skips that key rather than panicking, and a
    /// reply of the wrong length is an error, not keys silently dropped.
    #[test]
    fn a_page_skips_keys_outside_the_prefix_and_checks_the_reply_length() -> Result<(), BackendError>
    {
        let keys = [
            b"p:a".to_vec(),
            b"p".to_vec(),
            b"q:bb".to_vec(),
            b"p:c".to_vec(),
        ];
        let raw = vec![
            Some(b"12345678x".to_vec()),
            Some(b"12345678y".to_vec()),
            Some(b"12345678z".to_vec()),
            None,
        ];
        let page = walk_page(b"p:", &keys, raw)?;
        assert_eq!(page, [(&b"a"[..], b"12345678x".to_vec())]);
        assert!(walk_page(b"p:", &keys, vec![None]).is_err());

        let mut usage = seccs_store::backend::Usage::default();
        usage_page(b"p:", &keys, &[9, 9, 9, MISSING], &mut usage)?;
        assert_eq!(usage.entries, 1);
        assert!(usage_page(b"p:", &keys, &[9], &mut usage).is_err());
        let err = usage_page(b"p:", &keys, &[NOT_A_STRING, 9, 9, 9], &mut usage).err();
        assert!(matches!(err, Some(BackendError::Corrupt { .. })), "{err:?}");
        // An empty value is a damaged entry, counted by its key.
        usage_page(b"p:", &keys, &[0, 9, 9, MISSING], &mut usage)?;
        assert_eq!(usage.entries, 2);
        Ok(())
    }

    #[test]
    fn rejects_malformed_urls() {
        for url in [
            "redis://127.0.0.1:6379/x",
            "redis://127.0.0.1:6379/0?prefx=a",
            "http://127.0.0.1:6379/0",
            "redis:///0",
            "redis://127.0.0.1:99999/0",
        ] {
            let err = RedisConfig::parse(url).err();
            assert!(
                matches!(&err, Some(BackendError::Config(msg)) if msg.starts_with("redis URL")),
                "{url}: {err:?}"
            );
        }
    }
}
