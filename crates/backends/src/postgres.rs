//! The PostgreSQL backend.
//!
//! # Layout
//!
//! One table per store, `key bytea PRIMARY KEY, value bytea NOT NULL, count
//! bigint NOT NULL`, created by [`PostgresBackend::create`] (`seccs init`);
//! opening a store whose table is missing is a clear error rather than a
//! silent creation. The value column is stored `EXTERNAL` (out of line,
//! uncompressed): sealed nodes do not compress, so trying is wasted work.
//!
//! # Round trips
//!
//! A batch is coalesced to one effect per key and sent as *one* statement:
//! a `DELETE … = ANY($1)` and an `UPDATE … FROM unnest(…)` as data-modifying
//! CTEs, then an `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE`, with
//! every key, value and count bound as arrays. A single statement is atomic on
//! its own, so a batch of up to [`CHUNK_BYTES`] of values costs one round
//! trip; a larger one is cut into several such statements inside one
//! `BEGIN`/`COMMIT`, so the count grows with the bytes of a batch, never with
//! its number of nodes. Reads of many keys are one `SELECT … = ANY($1)`.
//! Statements are prepared once per connection.
//!
//! # Connection and TLS
//!
//! `postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?table=T&sslmode=M&sslrootcert=PATH&connect_timeout=S]`.
//! The user and password may instead come from `PGUSER`/`PGPASSWORD` (then
//! `USER`). `sslmode` is `disable`, `prefer` (the default, as in libpq) or
//! `require` (`verify-full` is accepted as its other name). TLS is rustls
//! with the ring provider, and a TLS session always verifies the server's
//! certificate and host name against the system's roots, or against
//! `sslrootcert` when given, so `require` behaves like libpq's `verify-full`
//! and there is no unverified mode (libpq's `verify-ca`, `allow` and client
//! certificates are not supported).
//!
//! Only `require` protects against an active attacker on the network.
//! `prefer` falls back to plaintext whenever the answer to its TLS request
//! is "no", and anyone in the path can give that answer: the session then
//! runs in the clear, every key, count and (sealed) node crosses
//! unencrypted, and a server, or that attacker, asking for a cleartext
//! password is sent `PGPASSWORD` as it is. Give `sslmode=require` (or
//! `verify-full`) unless the network to the server is trusted.
//!
//! A host that starts with `/` (percent-encoded) is a Unix socket
//! directory.
//!
//! # Timeouts
//!
//! Connecting (TCP, TLS, log-in and preparing statements) and every request
//! must finish within the request timeout, 60 s unless
//! [`PostgresConfig::with_request_timeout`] says otherwise: far longer than
//! any statement of a batch takes, so that only a server that stopped
//! answering (paused, overloaded, cut off behind a firewall that drops
//! packets) makes a command fail instead of wait for ever. TCP keepalives
//! cannot tell this apart, since a paused server's kernel still answers
//! them. The client is `tokio-postgres` on a single-threaded runtime the
//! backend owns, so each request is one future under a timer.
//!
//! # Store marker
//!
//! The marker ([`Backend::read_marker`]) is a row of its own, key
//! `\0seccs:store-marker` (a zero byte, then that ASCII text) and count 0,
//! that walks and [`Backend::usage`] skip. Its value is the 32 lowercase
//! hex characters of config.toml's `key_check` (the store key's check
//! value), as ASCII, nothing else; it is written once, by `init` or the
//! first writer of a store made before markers. A table emptied behind
//! the store's back (`TRUNCATE`) loses it with the entries, so the store
//! reports the loss instead of reading as empty. (The writer lock is an
//! advisory lock, not a row: see *One writer*.)
//!
//! The store's descriptor ([`Backend::read_descriptor`]; its format is
//! `seccs_store::descriptor`'s) is a row like it, key
//! `\0seccs:store-descriptor` and count 0, that walks and
//! [`Backend::usage`] skip too, written by the first writer to open the
//! store with its parameters confirmed.
//!
//! # One writer
//!
//! [`PostgresBackend::connect_exclusive`] takes a session-level advisory
//! lock on the store's table, on the connection that does all of the
//! backend's writes, before that connection sends anything else. The lock
//! is keyed by the oid of the table the session's `search_path` finds,
//! never by its name: two roles whose search paths start differently (one
//! with a schema of its own first, as the default `"$user", public` gives)
//! may both find the same `public` table, and must share its lock. A second
//! process that opens the same table exclusively gets
//! [`BackendError::Locked`] naming the holder's backend pid.
//!
//! The lock lives exactly as long as that session: a holder that dies frees
//! it at once. A holder whose session ended (cut by an administrator or by
//! `idle_session_timeout`, lost with a restarted server, or given up for
//! want of an answer) has lost the lock for good, as a Redis or S3 writer
//! that lost its lease: another process may have taken the store, written
//! and let it go meanwhile, so the counts this one read are stale. It reads
//! on over new sessions, which take no lock, and every write fails with
//! [`BackendError::Locked`]. `seccs` opens every store this way.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::own_runtime::OwnRuntime;
use seccs_store::backend::{Backend, BackendError, Batch, Damaged, Entry, Usage, Visitor};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::batch::{Effect, RoundTrips, coalesce};

const NAME: &str = "postgres";

const DEFAULT_TABLE: &str = "seccs_nodes";
/// Bytes of values per statement of a batch.
pub const CHUNK_BYTES: usize = 32 << 20;
/// Rows per page of [`Backend::walk`].
const PAGE: i64 = 1000;
/// The high half of every seccs advisory lock's key (`SECC`); the low half
/// is the oid of the store's table.
const LOCK_CLASS: u32 = 0x5345_4343;
/// How long connecting, or one request, may take (see the module docs).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a dropped backend waits for its session to end cleanly.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The store marker's key: no node or catalog key starts with a zero byte
/// followed by this name.
const MARKER_KEY: &[u8] = b"\0seccs:store-marker";
/// The store descriptor's key (see [`Backend::read_descriptor`]): a row
/// beside the entries, as the marker's.
const DESCRIPTOR_KEY: &[u8] = b"\0seccs:store-descriptor";
/// Bytes read of a row beside the entries: one more than
/// [`MAX_BESIDE_ENTRIES`](seccs_store::backend::MAX_BESIDE_ENTRIES).
const BESIDE_ENTRIES_READ: i32 = seccs_store::backend::MAX_BESIDE_ENTRIES as i32 + 1;

/// Where a PostgreSQL-backed store lives and how to log in.
#[derive(Clone)]
pub struct PostgresConfig {
    config: tokio_postgres::Config,
    table: String,
    tls: Tls,
    request_timeout: Duration,
}

#[derive(Clone)]
enum Tls {
    Disable,
    Prefer(MakeRustlsConnect),
    Require(MakeRustlsConnect),
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("user", &self.config.get_user())
            .field("dbname", &self.config.get_dbname())
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl PostgresConfig {
    /// Parses `postgres://` (or `postgresql://`) URLs; see the module docs
    /// for the parameters. Unknown parameters are an error.
    pub fn parse(url: &str) -> Result<Self, BackendError> {
        let bad = |what: String| BackendError::Config(format!("postgres URL: {what}"));
        crate::check_user_info(url).map_err(bad)?;
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("{e}")))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(bad(format!(
                "scheme {:?} is not postgres or postgresql",
                parsed.scheme()
            )));
        }
        // The part is named, never quoted: it may be the password.
        let decode_part = |s: &str, part: &str| {
            crate::percent_decode(s)
                .ok_or_else(|| bad(format!("the {part} is not valid percent-encoded UTF-8")))
        };

        let mut config = tokio_postgres::Config::new();
        let host = decode_part(parsed.host_str().unwrap_or(""), "host")?;
        if host.is_empty() {
            return Err(bad("no host".into()));
        }
        if host.starts_with('/') {
            config.host_path(&host);
        } else {
            config.host(host.trim_start_matches('[').trim_end_matches(']'));
        }
        config.port(parsed.port().unwrap_or(5432));
        let db = decode_part(parsed.path().trim_start_matches('/'), "database name")?;
        if db.is_empty() || db.contains('/') {
            return Err(bad("the path must name one database".into()));
        }
        config.dbname(&db);
        if !parsed.username().is_empty() {
            config.user(&decode_part(parsed.username(), "user name")?);
        }
        if let Some(password) = parsed.password() {
            config.password(decode_part(password, "password")?);
        }
        config.connect_timeout(Duration::from_secs(5));
        config.keepalives(true);
        config.application_name("seccs");
        let mut table = DEFAULT_TABLE.to_owned();
        let mut sslmode = "prefer".to_owned();
        let mut rootcert = None;
        for (name, value) in crate::query_pairs_once(&parsed).map_err(bad)? {
            match name.as_ref() {
                "table" => table = value,
                "sslmode" => sslmode = value,
                "sslrootcert" => rootcert = Some(value),
                "connect_timeout" => {
                    let secs: u64 = value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        bad(format!(
                            "connect_timeout {value:?} is not a positive number of seconds"
                        ))
                    })?;
                    config.connect_timeout(Duration::from_secs(secs));
                }
                other => {
                    return Err(bad(format!(
                        "unknown parameter {other:?} (known: table, sslmode, sslrootcert, connect_timeout)"
                    )));
                }
            }
        }
        if !valid_table(&table) {
            return Err(bad(format!(
                "table {table:?} must be 1-63 letters, digits or '_', not starting with a digit"
            )));
        }
        let tls = match sslmode.as_str() {
            // A CA given beside `disable` says TLS was meant: refused
            // rather than ignored, as libpq would, and sent in the clear.
            "disable" if rootcert.is_some() => {
                return Err(bad(
                    "sslrootcert is given but sslmode \"disable\" turns TLS off: drop one \
                     (sslmode=require to verify the server with that CA)"
                        .into(),
                ));
            }
            "disable" => Tls::Disable,
            "prefer" => Tls::Prefer(tls_connector(rootcert.as_deref())?),
            "require" | "verify-full" => Tls::Require(tls_connector(rootcert.as_deref())?),
            "verify-ca" => {
                return Err(bad(
                    "sslmode \"verify-ca\" is not supported: `require` verifies the server's \
                     certificate and its name, as libpq's verify-full (give sslrootcert=FILE \
                     for a private CA)"
                        .into(),
                ));
            }
            other => {
                return Err(bad(format!(
                    "sslmode {other:?} is not supported (disable, prefer, require or its other name verify-full)"
                )));
            }
        };
        Ok(Self {
            config,
            table,
            tls,
            request_timeout: REQUEST_TIMEOUT,
        })
    }

    /// Fills a user and password missing from the URL from `PGUSER` (then
    /// `USER`) and `PGPASSWORD`.
    pub fn with_env_credentials(mut self) -> Self {
        if self.config.get_user().is_none()
            && let Some(user) = crate::env("PGUSER").or_else(|| crate::env("USER"))
        {
            self.config.user(&user);
        }
        if self.config.get_password().is_none()
            && let Some(password) = crate::env("PGPASSWORD")
        {
            self.config.password(password);
        }
        self
    }

    /// Sets the password.
    pub fn with_password(mut self, password: &str) -> Self {
        self.config.password(password);
        self
    }

    /// Sets how long connecting, or one request, may take before the
    /// server counts as not answering (60 s unless set).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The store's table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Logs in within `connect_timeout` (the request timeout when unset):
    /// as in libpq, it bounds the whole log-in (TCP, TLS, authentication),
    /// not only the TCP connect.
    async fn log_in(&self) -> Result<(Client, Driver), BackendError> {
        let limit = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(self.request_timeout);
        tokio::time::timeout(limit, self.connect())
            .await
            .map_err(|_| no_answer_connecting(limit))?
            .map_err(|e| map_err(e, &self.table))
    }

    /// Connects, and drives the connection on the current runtime until its
    /// [`Driver`] is dropped.
    async fn connect(&self) -> Result<(Client, Driver), tokio_postgres::Error> {
        // The session says which process it serves, so that a store found
        // locked names its holder as on the other backends.
        let mut named = self.clone();
        named.config.application_name(format!(
            "seccs pid {} on {}",
            std::process::id(),
            seccs_store::dir::host_name()
        ));
        named.connect_as_is().await
    }

    async fn connect_as_is(&self) -> Result<(Client, Driver), tokio_postgres::Error> {
        use tokio_postgres::config::SslMode;
        let (tls, mode) = match &self.tls {
            Tls::Disable => {
                let (client, connection) = self.config.connect(NoTls).await?;
                return Ok((client, Driver::spawn(connection)));
            }
            Tls::Require(tls) => (tls, SslMode::Require),
            Tls::Prefer(tls) => (tls, SslMode::Prefer),
        };
        let mut config = self.config.clone();
        config.ssl_mode(mode);
        let (client, connection) = config.connect(tls.clone()).await?;
        Ok((client, Driver::spawn(connection)))
    }
}

/// The task that drives one connection's socket; dropping it closes the
/// socket, which ends the server's session (and frees its advisory lock)
/// even when the session is stuck in a request.
struct Driver(JoinHandle<()>);

impl Driver {
    fn spawn<C>(connection: C) -> Self
    where
        C: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
    {
        // A broken connection shows as an error of the client's next
        // request, so the driver's own outcome adds nothing.
        Self(tokio::spawn(async move {
            let _ = connection.await;
        }))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A runtime of its own for a backend's connection: a single thread, which
/// runs only inside the backend's calls.
fn runtime() -> Result<OwnRuntime, BackendError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|runtime| OwnRuntime::new(runtime, NAME))
        .map_err(|e| BackendError::other(NAME, format!("cannot start the client runtime: {e}")))
}

/// Runs `work` on `runtime` within `timeout`.
fn block_on<T>(
    runtime: &OwnRuntime,
    timeout: Duration,
    work: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    // The timer is made inside the runtime: it needs the runtime's clock.
    runtime
        .block_on(async { tokio::time::timeout(timeout, work).await })?
        .unwrap_or_else(|_| Err(no_answer(timeout)))
}

fn no_answer_connecting(timeout: Duration) -> BackendError {
    BackendError::unavailable(
        NAME,
        format!(
            "no answer in {} s of connecting (connect_timeout): the server stopped answering, \
             paused, overloaded or cut off?",
            timeout.as_secs_f64()
        ),
    )
}

fn no_answer(timeout: Duration) -> BackendError {
    BackendError::unavailable(
        NAME,
        format!(
            "no answer in {} s: the server stopped answering, paused, overloaded or cut off?",
            timeout.as_secs_f64()
        ),
    )
}

fn valid_table(table: &str) -> bool {
    let mut chars = table.chars();
    table.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn tls_connector(rootcert: Option<&str>) -> Result<MakeRustlsConnect, BackendError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    crate::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| BackendError::Config(format!("postgres sslrootcert {path}: {e}")))?;
            roots.add_parsable_certificates(certs);
            if roots.is_empty() {
                return Err(BackendError::Config(format!(
                    "postgres sslrootcert {path}: no certificate"
                )));
            }
        }
        None => {
            // Machines without a certificate store can still connect without
            // TLS (`prefer` falls back) or with `sslrootcert`.
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| BackendError::Config(format!("postgres TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// A live connection and its prepared statements.
struct Conn {
    client: Client,
    driver: Driver,
    get: Statement,
    counts: Statement,
    write: Statement,
    /// The write that first checks the store marker, prepared at the first
    /// batch that needs it.
    write_guarded: Option<Statement>,
    page: Statement,
    /// Whether this session holds the store's writer lock: only the first
    /// session of an exclusive backend ever does.
    holds_lock: bool,
}

/// A content store's entries in a PostgreSQL table.
pub struct PostgresBackend {
    config: PostgresConfig,
    runtime: OwnRuntime,
    conn: Mutex<Option<Conn>>,
    round_trips: RoundTrips,
    exclusive: bool,
    /// The marker every batch must find (see
    /// [`Backend::guard_writes_with_marker`]).
    marker_guard: Mutex<Option<Vec<u8>>>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Connects to an existing store; its table must exist.
    pub fn connect(config: PostgresConfig) -> Result<Self, BackendError> {
        Self::connect_with(config, false)
    }

    /// Like [`PostgresBackend::connect`], and holds the store's advisory
    /// lock for as long as the backend lives: fails with
    /// [`BackendError::Locked`] if another session holds it.
    pub fn connect_exclusive(config: PostgresConfig) -> Result<Self, BackendError> {
        Self::connect_with(config, true)
    }

    fn connect_with(config: PostgresConfig, exclusive: bool) -> Result<Self, BackendError> {
        let timeout = config.request_timeout;
        let backend = Self {
            config,
            runtime: runtime()?,
            conn: Mutex::new(None),
            round_trips: RoundTrips::default(),
            exclusive,
            marker_guard: Mutex::new(None),
        };
        // The only session that takes the lock.
        let first = block_on(
            &backend.runtime,
            timeout,
            backend.open_conn(exclusive, false),
        )?;
        *backend.lock() = Some(first);
        Ok(backend)
    }

    /// Creates the store's table if it does not exist, then connects.
    pub fn create(config: PostgresConfig) -> Result<Self, BackendError> {
        Self::create_table(&config)?;
        Self::connect(config)
    }

    /// Creates the store's table if it does not exist.
    pub fn create_table(config: &PostgresConfig) -> Result<(), BackendError> {
        let table = &config.table;
        block_on(&runtime()?, config.request_timeout, async {
            let (client, _driver) = config.log_in().await?;
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS \"{table}\" (\
                       key bytea PRIMARY KEY, value bytea NOT NULL, count bigint NOT NULL);\
                     ALTER TABLE \"{table}\" ALTER COLUMN value SET STORAGE EXTERNAL;"
                ))
                .await
                .map_err(|e| map_err(e, table))
        })
    }

    /// Round trips (statements and prepares) sent to the server so far.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.get()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Conn>> {
        // Any error drops the connection below, so a poisoned lock guards
        // nothing half-done.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session, which first takes the writer lock if `take_lock`.
    /// `in_use`: the backend was opened on the table before (a session
    /// made again), so a table not found was dropped since.
    async fn open_conn(&self, take_lock: bool, in_use: bool) -> Result<Conn, BackendError> {
        let t = &self.config.table;
        let (client, driver) = self.config.log_in().await?;
        if take_lock {
            self.take_lock(&client).await?;
        }
        self.prepare(client, driver, take_lock).await.map_err(|e| {
            if in_use {
                map_err_in_use(e, t)
            } else {
                map_err(e, t)
            }
        })
    }

    /// Takes the table's advisory lock on `client`'s session, or says who
    /// holds it.
    async fn take_lock(&self, client: &Client) -> Result<(), BackendError> {
        let t = &self.config.table;
        self.round_trips.add(1);
        // The table is found as every statement of the session finds it
        // (`"{t}"`, through the search path), and the lock keyed by what
        // was found: no table, no oid, and no lock taken.
        let row = client
            .query_one(
                "SELECT found.oid, pg_try_advisory_lock($1::int8 | found.oid::int8) \
                 FROM (SELECT to_regclass(quote_ident($2))::oid AS oid) AS found",
                &[&(i64::from(LOCK_CLASS) << 32), t],
            )
            .await
            .map_err(|e| map_err(e, t))?;
        let oid: Option<u32> = answer(&row, 0, "the lock request")?;
        let taken: Option<bool> = answer(&row, 1, "the lock request")?;
        let oid = match (oid, taken) {
            (None, _) => return Err(table_missing(t)),
            (Some(_), Some(true)) => return Ok(()),
            (Some(oid), Some(false)) => oid,
            (Some(_), None) => {
                return Err(BackendError::other(
                    NAME,
                    "the server answered the lock request with neither yes nor no",
                ));
            }
        };
        self.round_trips.add(1);
        // Who holds it only names the holder: an unreadable answer names
        // nobody in particular.
        let holder: Option<(Option<i32>, Option<String>)> = client
            .query_opt(
                "SELECT l.pid, a.application_name FROM pg_locks l \
                   LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted \
                   AND l.objsubid = 1 AND l.classid = $1 AND l.objid = $2 \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 LIMIT 1",
                &[&LOCK_CLASS, &oid],
            )
            .await
            .ok()
            .flatten()
            .map(|row| {
                (
                    row.try_get(0).ok().flatten(),
                    row.try_get(1).ok().flatten(),
                )
            });
        let (holder, by_this_process) = match holder {
            Some((_, Some(name))) if name.starts_with("seccs pid ") => {
                let named = name["seccs ".len()..].escape_debug().to_string();
                (
                    crate::lease_state::name_holder(&named),
                    crate::lease_state::is_this_process(&named),
                )
            }
            Some((Some(pid), _)) => (format!("the session of server process {pid}"), false),
            _ => ("another session".to_owned(), false),
        };
        Err(BackendError::Locked {
            detail: format!(
                "postgres: table {t:?} is locked by {holder}; a holder that died frees it at once"
            ),
            by_this_process,
        })
    }

    /// Why an exclusive backend whose locked session ended writes no more.
    fn lock_lost(&self) -> BackendError {
        BackendError::Locked {
            detail: format!(
                "{NAME}: this process lost its writer lock on table {:?} when the session that \
                 held it ended (cut by the server or an administrator, idle_session_timeout, a \
                 restart, or given up for want of an answer); another process may have \
                 written since, so this one writes nothing more",
                self.config.table
            ),
            by_this_process: false,
        }
    }

    async fn prepare(
        &self,
        client: Client,
        driver: Driver,
        holds_lock: bool,
    ) -> Result<Conn, tokio_postgres::Error> {
        let t = &self.config.table;
        let prepare = async |sql: String| {
            self.round_trips.add(1);
            client.prepare(&sql).await
        };
        let get = prepare(format!(
            "SELECT key, value, count FROM \"{t}\" WHERE key = ANY($1)"
        ))
        .await?;
        let counts = prepare(format!(
            "SELECT key, count FROM \"{t}\" WHERE key = ANY($1)"
        ))
        .await?;
        let write = prepare(format!(
            "WITH del AS (DELETE FROM \"{t}\" WHERE key = ANY($1::bytea[])), \
             upd AS (UPDATE \"{t}\" SET count = u.count \
                     FROM unnest($2::bytea[], $3::int8[]) AS u(key, count) \
                     WHERE \"{t}\".key = u.key) \
             INSERT INTO \"{t}\" (key, value, count) \
             SELECT * FROM unnest($4::bytea[], $5::bytea[], $6::int8[]) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, count = EXCLUDED.count"
        ))
        .await?;
        let page = prepare(format!(
            "SELECT key, value, count FROM \"{t}\" WHERE key > $1 ORDER BY key LIMIT {PAGE}"
        ))
        .await?;
        Ok(Conn {
            write_guarded: None,
            client,
            driver,
            get,
            counts,
            write,
            page,
            holds_lock,
        })
    }

    /// Runs the read `work` on the connection (connecting first if there
    /// is none or it was closed), each within the request timeout; drops
    /// the connection after any error that ends the session.
    fn with_conn<T>(
        &self,
        work: impl AsyncFnOnce(&mut Conn, &RoundTrips) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, BackendError> {
        self.with_session(false, work)
    }

    /// Like [`Self::with_conn`] for a `work` that writes: on an exclusive
    /// backend, only on the session that took the writer lock, and never
    /// once that session has ended.
    fn with_writer<T>(
        &self,
        work: impl AsyncFnOnce(&mut Conn, &RoundTrips) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, BackendError> {
        self.with_session(true, work)
    }

    fn with_session<T>(
        &self,
        writes: bool,
        work: impl AsyncFnOnce(&mut Conn, &RoundTrips) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, BackendError> {
        let table = &self.config.table;
        let timeout = self.config.request_timeout;
        let mut guard = self.lock();
        if guard.as_ref().is_some_and(|c| c.client.is_closed()) {
            *guard = None;
        }
        // A new session never takes the lock back: only the first one held
        // it, and whoever held it in between may have changed the counts.
        if writes && self.exclusive && !guard.as_ref().is_some_and(|c| c.holds_lock) {
            return Err(self.lock_lost());
        }
        let conn = match guard.as_mut() {
            Some(conn) => conn,
            None => guard.insert(block_on(
                &self.runtime,
                timeout,
                self.open_conn(false, true),
            )?),
        };
        let outcome = self.runtime.block_on(async {
            tokio::time::timeout(timeout, work(conn, &self.round_trips)).await
        })?;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                // A plain database error leaves the session usable; a broken
                // connection, or a FATAL error (the session terminated by an
                // administrator or a shutdown), does not.
                if err
                    .as_db_error()
                    .is_none_or(|db| matches!(db.severity(), "FATAL" | "PANIC"))
                {
                    *guard = None;
                }
                Err(map_err_in_use(err, table))
            }
            // A request that timed out leaves its session mid-protocol: only
            // a new connection can be trusted after it.
            Err(_) => {
                *guard = None;
                Err(no_answer(timeout))
            }
        }
    }

    /// The entry of `key` in `row`, whose columns `value` and `count` follow
    /// the key's.
    fn row_entry(&self, row: &Row, key: &[u8]) -> Result<Entry, BackendError> {
        let value = column(row, 1, key, "value")?;
        let count = column(row, 2, key, "count")?;
        self.entry(value, count, key)
    }

    fn entry(&self, value: Vec<u8>, count: i64, key: &[u8]) -> Result<Entry, BackendError> {
        let count = u64::try_from(count).map_err(|_| BackendError::Corrupt {
            backend: NAME.into(),
            detail: format!("entry {} has a negative count", hex::encode(key)),
        })?;
        Ok(Entry { value, count })
    }

    /// Visits, a page at a time, the entries after key `after` in key order
    /// while their keys start with `prefix`.
    fn walk_after(
        &self,
        mut after: Vec<u8>,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
        mut damaged: Option<&mut Damaged<'_>>,
    ) -> Result<(), BackendError> {
        // Every page moves `after` strictly forward through a finite table.
        loop {
            let rows = self.with_conn(async |conn, rt| {
                rt.add(1);
                conn.client.query(&conn.page, &[&after]).await
            })?;
            let full = rows.len() as i64 == PAGE;
            for row in rows {
                let key: Vec<u8> = column(&row, 0, b"", "key")?;
                if !key.starts_with(prefix) {
                    return Ok(());
                }
                if key == MARKER_KEY || key == DESCRIPTOR_KEY {
                    after = key;
                    continue;
                }
                match (self.row_entry(&row, &key), damaged.as_mut()) {
                    // One damaged row is reported, and the walk goes on.
                    (Err(e), Some(damaged)) => damaged(&key, e),
                    (entry, _) => visit(&key, &entry?)?,
                }
                after = key;
            }
            if !full {
                return Ok(());
            }
        }
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(Conn {
            client,
            mut driver,
            holds_lock,
            ..
        }) = conn
        {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(CLOSE_TIMEOUT, async {
                    // The server frees a session's locks only once its
                    // process has ended, after this end of the socket has
                    // closed: a writer opened at once after this one (the
                    // next command of a script) would find the store still
                    // locked. The lock is let go first, and answered.
                    if holds_lock {
                        let _ = client
                            .batch_execute("SELECT pg_advisory_unlock_all()")
                            .await;
                    }
                    // Without a client, the driver ends the session
                    // politely (`Terminate`) and closes; a server that does
                    // not answer gets its socket closed when the driver is
                    // dropped.
                    drop(client);
                    (&mut driver.0).await
                })
                .await
            });
        }
    }
}

impl PostgresBackend {
    /// The value of the row `key` beside the entries (the marker or the
    /// descriptor), if there is one: its first [`BESIDE_ENTRIES_READ`]
    /// bytes.
    fn read_beside_entries(&self, key: &'static [u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let table = &self.config.table;
        let row = self.with_conn(async |conn, rt| {
            rt.add(1);
            conn.client
                .query_opt(
                    &format!(
                        "SELECT substring(value from 1 for $2) FROM \"{table}\" WHERE key = $1"
                    ),
                    &[&key, &BESIDE_ENTRIES_READ],
                )
                .await
        })?;
        row.map(|row| column(&row, 0, key, "value")).transpose()
    }

    /// Writes the row `key` beside the entries (count 0), as the writer.
    fn write_beside_entries(&self, key: &'static [u8], value: &[u8]) -> Result<(), BackendError> {
        let table = &self.config.table;
        self.with_writer(async |conn, rt| {
            rt.add(1);
            conn.client
                .execute(
                    &format!(
                        "INSERT INTO \"{table}\" (key, value, count) VALUES ($1, $2, 0) \
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                    ),
                    &[&key, &value],
                )
                .await
                .map(drop)
        })
    }

    /// The write statement gated on the store marker: every change happens
    /// only if the marker row holds the expected value (locked against a
    /// concurrent change until the transaction ends), and the statement
    /// answers how many marker rows it found.
    fn guarded_write_sql(&self) -> String {
        let t = &self.config.table;
        format!(
            "WITH m AS (SELECT 1 FROM \"{t}\" WHERE key = $7 AND value = $8 FOR KEY SHARE), \
             del AS (DELETE FROM \"{t}\" WHERE key = ANY($1::bytea[]) AND EXISTS (SELECT 1 FROM m)), \
             upd AS (UPDATE \"{t}\" SET count = u.count \
                     FROM unnest($2::bytea[], $3::int8[]) AS u(key, count) \
                     WHERE \"{t}\".key = u.key AND EXISTS (SELECT 1 FROM m)), \
             ins AS (INSERT INTO \"{t}\" (key, value, count) \
                     SELECT * FROM unnest($4::bytea[], $5::bytea[], $6::int8[]) \
                     WHERE EXISTS (SELECT 1 FROM m) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, count = EXCLUDED.count) \
             SELECT count(*) FROM m"
        )
    }

    /// Applies `chunks` (one transaction) only if the marker holds `marker`.
    fn apply_guarded(&self, chunks: &[Chunk<'_>], marker: &[u8]) -> Result<(), BackendError> {
        let sql = self.guarded_write_sql();
        let marker = marker.to_vec();
        let found = self.with_writer(async |conn, rt| {
            let statement = match &conn.write_guarded {
                Some(statement) => statement.clone(),
                None => {
                    rt.add(1);
                    let statement = conn.client.prepare(&sql).await?;
                    conn.write_guarded = Some(statement.clone());
                    statement
                }
            };
            // An unreadable answer is an error of its own, which leaves the
            // session (and its lock) as it is.
            match chunks {
                [] => Ok(Ok(true)),
                // One statement is its own transaction.
                [chunk] => {
                    rt.add(1);
                    let row = conn
                        .client
                        .query_one(&statement, &with_marker(chunk, &marker))
                        .await?;
                    Ok(marker_rows(&row).map(|found| found > 0))
                }
                chunks => {
                    rt.add(1);
                    let tx = conn.client.transaction().await?;
                    for chunk in chunks {
                        rt.add(1);
                        let row = tx
                            .query_one(&statement, &with_marker(chunk, &marker))
                            .await?;
                        // Dropped without a commit: rolled back.
                        match marker_rows(&row) {
                            Ok(0) => return Ok(Ok(false)),
                            Ok(_) => {}
                            Err(e) => return Ok(Err(e)),
                        }
                    }
                    rt.add(1);
                    tx.commit().await?;
                    Ok(Ok(true))
                }
            }
        })??;
        if found {
            Ok(())
        } else {
            Err(BackendError::StoreLost {
                backend: NAME.into(),
                detail: format!(
                    "the store's marker is gone from table {:?}: it was emptied (TRUNCATE) \
                     while this command wrote; nothing of this batch was written",
                    self.config.table
                ),
            })
        }
    }
}

/// How many marker rows a guarded write found.
fn marker_rows(row: &Row) -> Result<i64, BackendError> {
    answer(row, 0, "a write guarded by the store marker")
}

/// A chunk's parameters, then the marker's key and expected value.
fn with_marker<'a>(
    chunk: &'a Chunk<'a>,
    marker: &'a Vec<u8>,
) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    let mut params = chunk.params().to_vec();
    params.push(&MARKER_KEY);
    params.push(marker);
    params
}

fn count_param(count: u64) -> Result<i64, BackendError> {
    i64::try_from(count)
        .map_err(|_| BackendError::other(NAME, format!("count {count} exceeds a bigint")))
}

/// The arrays of one write statement.
#[derive(Default)]
struct Chunk<'a> {
    deletes: Vec<&'a [u8]>,
    update_keys: Vec<&'a [u8]>,
    update_counts: Vec<i64>,
    put_keys: Vec<&'a [u8]>,
    put_values: Vec<&'a [u8]>,
    put_counts: Vec<i64>,
    bytes: usize,
}

impl Chunk<'_> {
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 6] {
        [
            &self.deletes,
            &self.update_keys,
            &self.update_counts,
            &self.put_keys,
            &self.put_values,
            &self.put_counts,
        ]
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.with_conn(async |conn, rt| {
            rt.add(1);
            conn.client.query(&conn.get, &[&keys]).await
        })?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let key: Vec<u8> = column(&row, 0, b"", "key")?;
            let entry = self.row_entry(&row, &key)?;
            found.insert(key, entry);
        }
        // A key asked for twice gets its entry twice.
        Ok(keys.iter().map(|k| found.get(*k).cloned()).collect())
    }

    fn get_counts(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.with_conn(async |conn, rt| {
            rt.add(1);
            conn.client.query(&conn.counts, &[&keys]).await
        })?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let key: Vec<u8> = column(&row, 0, b"", "key")?;
            let count = column(&row, 1, &key, "count")?;
            let count = self.entry(Vec::new(), count, &key)?.count;
            found.insert(key, count);
        }
        Ok(keys.iter().map(|k| found.get(*k).copied()).collect())
    }

    fn apply(&self, batch: &Batch) -> Result<(), BackendError> {
        let mut chunks = vec![Chunk::default()];
        for (key, effect) in coalesce(batch.ops()) {
            let chunk = chunks
                .last_mut()
                .expect("chunks starts non-empty and only grows");
            match effect {
                Effect::Delete => chunk.deletes.push(key),
                Effect::SetCount { count } => {
                    chunk.update_keys.push(key);
                    chunk.update_counts.push(count_param(count)?);
                }
                Effect::Put { value, count } => {
                    chunk.put_keys.push(key);
                    chunk.put_values.push(value);
                    chunk.put_counts.push(count_param(count)?);
                    chunk.bytes += key.len() + value.len();
                }
            }
            if chunk.bytes >= CHUNK_BYTES {
                chunks.push(Chunk::default());
            }
        }
        chunks.retain(|c| {
            !(c.deletes.is_empty() && c.update_keys.is_empty() && c.put_keys.is_empty())
        });
        let guard = self
            .marker_guard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(marker) = guard {
            return self.apply_guarded(&chunks, &marker);
        }
        match chunks.as_slice() {
            [] => Ok(()),
            // One statement is its own transaction.
            [chunk] => self.with_writer(async |conn, rt| {
                rt.add(1);
                conn.client
                    .execute(&conn.write, &chunk.params())
                    .await
                    .map(drop)
            }),
            chunks => self.with_writer(async |conn, rt| {
                rt.add(1);
                let tx = conn.client.transaction().await?;
                for chunk in chunks {
                    rt.add(1);
                    tx.execute(&conn.write, &chunk.params()).await?;
                }
                rt.add(1);
                tx.commit().await
            }),
        }
    }

    fn is_transactional(&self) -> bool {
        true
    }

    fn keeps_marker(&self) -> bool {
        true
    }

    fn guard_writes_with_marker(&self, value: &[u8]) {
        *self.marker_guard.lock().unwrap_or_else(|p| p.into_inner()) = Some(value.to_vec());
    }

    fn read_marker(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.read_beside_entries(MARKER_KEY)
    }

    fn keeps_descriptor(&self) -> bool {
        true
    }

    fn read_descriptor(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.read_beside_entries(DESCRIPTOR_KEY)
    }

    fn write_descriptor(&self, value: &[u8]) -> Result<(), BackendError> {
        self.write_beside_entries(DESCRIPTOR_KEY, value)
    }

    fn write_marker(&self, value: &[u8]) -> Result<(), BackendError> {
        self.write_beside_entries(MARKER_KEY, value)
    }

    fn remove_marker(&self) -> Result<(), BackendError> {
        let table = &self.config.table;
        self.with_writer(async |conn, rt| {
            rt.add(1);
            conn.client
                .execute(
                    &format!("DELETE FROM \"{table}\" WHERE key = $1"),
                    &[&MARKER_KEY],
                )
                .await
                .map(drop)
        })
    }

    /// Visits the entries whose keys start with `prefix`, a page at a
    /// time. Keys are ordered bytewise (bytea): they are the prefix itself,
    /// then one run of keys right after it.
    fn walk(
        &self,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
        mut damaged: Option<&mut Damaged<'_>>,
    ) -> Result<(), BackendError> {
        // No entry has the empty key, and the marker and the descriptor
        // are not entries.
        if !prefix.is_empty() && prefix != MARKER_KEY && prefix != DESCRIPTOR_KEY {
            match (self.get(prefix), damaged.as_mut()) {
                (Ok(Some(entry)), _) => visit(prefix, &entry)?,
                (Ok(None), _) => {}
                (Err(e @ BackendError::Corrupt { .. }), Some(damaged)) => damaged(prefix, e),
                (Err(e), _) => return Err(e),
            }
        }
        self.walk_after(prefix.to_vec(), prefix, visit, damaged)
    }

    /// VACUUMs the table, so the rows `rm` and `gc` deleted become room
    /// the server reuses for later writes (not dead rows until autovacuum
    /// runs, which a full disk may keep from ever running). VACUUM runs
    /// outside any transaction, as a statement of its own. A role that may
    /// not VACUUM the table (neither its owner nor the database's), or a
    /// VACUUM that fails, gets a note, not an error: the space comes back
    /// when autovacuum runs.
    fn reclaim_space(&self) -> Result<Option<String>, BackendError> {
        let table = &self.config.table;
        let may = self.with_writer(async |conn, rt| {
            rt.add(1);
            conn.client
                .query_one(
                    "SELECT coalesce(pg_has_role(c.relowner, 'USAGE') \
                       OR pg_has_role(d.datdba, 'USAGE'), false) \
                     FROM pg_database d \
                     LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident($1)) \
                     WHERE d.datname = current_database()",
                    &[table],
                )
                .await
        })?;
        let may: bool = answer(&may, 0, "whether the role may VACUUM the table")?;
        if !may {
            return Ok(Some(format!(
                "the role may not VACUUM table {table:?} (only its owner or the database's \
                 may), so the space of removed entries is reused by the server once its \
                 autovacuum runs, or once the table's owner runs VACUUM on it"
            )));
        }
        // A VACUUM that fails (a large table that outlasts the request
        // timeout, a server short of room for its own bookkeeping) undoes
        // none of the removals before it: said, not a failed gc.
        let vacuumed = self.with_writer(async |conn, rt| {
            rt.add(1);
            conn.client
                .batch_execute(&format!("VACUUM \"{table}\""))
                .await
        });
        Ok(vacuumed.err().map(|e| {
            format!(
                "the VACUUM of table {table:?} did not finish ({e}), so the space of removed \
                 entries is reused by the server once its autovacuum runs, or once the table's \
                 owner runs VACUUM on it"
            )
        }))
    }

    fn usage(&self) -> Result<Usage, BackendError> {
        let table = &self.config.table;
        let row = self.with_conn(async |conn, rt| {
            rt.add(1);
            conn.client
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(sum(length(key)::int8 + length(value)::int8 + 8), 0)::int8 \
                         FROM \"{table}\" WHERE key <> $1 AND key <> $2"
                    ),
                    &[&MARKER_KEY, &DESCRIPTOR_KEY],
                )
                .await
        })?;
        let entries: i64 = column(&row, 0, b"", "count(*)")?;
        let bytes: i64 = column(&row, 1, b"", "sum of lengths")?;
        Ok(Usage {
            entries: entries.unsigned_abs(),
            bytes: bytes.unsigned_abs(),
        })
    }
}

/// Column `index` of a row of `key` (empty where the row's key is not known
/// yet), as a damaged row if it is NULL or not of the type the store made
/// it: a table made before (which `CREATE TABLE IF NOT EXISTS` takes as it
/// is) or altered since can hold anything.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
    key: &[u8],
    name: &str,
) -> Result<T, BackendError> {
    row.try_get(index).map_err(|err| BackendError::Corrupt {
        backend: NAME.into(),
        detail: if key.is_empty() {
            format!("a row's {name} cannot be read: {err}")
        } else {
            format!(
                "the {name} of entry {} cannot be read: {err}",
                hex::encode(key)
            )
        },
    })
}

/// Maps an error met while opening the backend on `table`: a table not
/// found was never made (or dropped before this command).
fn map_err(err: tokio_postgres::Error, table: &str) -> BackendError {
    if let Some(code) = err.code() {
        return map_code(code, db_message(&err), table, false);
    }
    map_client_err(err)
}

/// Maps an error met using a backend opened on `table`: a table not found
/// now was dropped while this command used it.
fn map_err_in_use(err: tokio_postgres::Error, table: &str) -> BackendError {
    if let Some(code) = err.code() {
        return map_code(code, db_message(&err), table, true);
    }
    map_client_err(err)
}

/// Maps the server's error `code`, said as `message`, of a request on
/// `table`; `in_use` as for [`map_err_in_use`].
fn map_code(code: &SqlState, message: String, table: &str, in_use: bool) -> BackendError {
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        return BackendError::Auth {
            backend: NAME.into(),
            detail: message,
        };
    }
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        // Every later request is refused the same way: a put DIR stops at
        // the first.
        return BackendError::Denied {
            backend: NAME.into(),
            detail: format!(
                "{message} (the role needs SELECT, INSERT, UPDATE and DELETE on table \
                 {table:?}: its owner can GRANT them)"
            ),
        };
    }
    if *code == SqlState::DISK_FULL {
        // Every later write would meet it too: a put DIR stops at the
        // first. The statement failed, so its transaction wrote nothing.
        return BackendError::StorageFull {
            backend: NAME.into(),
            detail: format!(
                "the PostgreSQL server's disk is full ({message}); nothing of this write was \
                 written. Free room on the server's disk; `seccs rm NAME` then `seccs gc` \
                 (which VACUUMs the table) makes the space of removed entries room the server \
                 reuses for the store's later writes"
            ),
        };
    }
    if *code == SqlState::UNDEFINED_TABLE {
        return if in_use {
            table_gone(table)
        } else {
            table_missing(table)
        };
    }
    if *code == SqlState::INVALID_CATALOG_NAME {
        return BackendError::Config(format!("postgres: {message}"));
    }
    if *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
    {
        return BackendError::unavailable(NAME, message);
    }
    BackendError::other(NAME, message)
}

/// Maps an error that is not the server's: the connection failed or broke,
/// or the client lacks what the server asked for.
fn map_client_err(err: tokio_postgres::Error) -> BackendError {
    // Not a database error: the connection failed or broke, or the client
    // lacks what the server asked for.
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    for _ in 0..8 {
        let Some(s) = source else { break };
        chain = format!("{chain}: {s}");
        source = s.source();
    }
    if chain.contains("password missing") {
        return BackendError::Auth {
            backend: NAME.into(),
            detail: "the server asks for a password and none was given: set PGPASSWORD (or \
                     give one in the URL for a one-off command)"
                .into(),
        };
    }
    if chain.contains("invalid peer certificate") {
        // TLS always verifies (even with `prefer`, which libpq does not).
        chain.push_str(
            " (the server's certificate is checked against the system's roots unless \
             sslrootcert=FILE names the CA that signed it)",
        );
    }
    BackendError::unavailable(NAME, chain)
}

/// The store's table went while this command used it.
fn table_gone(table: &str) -> BackendError {
    BackendError::StoreLost {
        backend: NAME.into(),
        detail: format!(
            "table {table:?} is gone: it was dropped while this command used it, and the \
             store's data with it; nothing of this request was done, and nothing of the \
             store is left to read or to add to (a new store needs `seccs init`)"
        ),
    }
}

fn table_missing(table: &str) -> BackendError {
    BackendError::Config(format!(
        "postgres table {table:?} does not exist (in the schemas of the role's search_path): \
         if the store was made on it, the table was dropped, and its data with it; otherwise \
         create the store first (seccs init)"
    ))
}

/// Column `index` of the server's answer to `what`, which can be anything:
/// a NULL or a value of another type is an error, not a panic.
fn answer<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
    what: &str,
) -> Result<T, BackendError> {
    row.try_get(index)
        .map_err(|err| BackendError::other(NAME, format!("unreadable answer to {what}: {err}")))
}

fn db_message(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map(|db| format!("{}: {}", db.severity(), db.message()))
        .unwrap_or_else(|| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_tls_and_credentials() -> Result<(), BackendError> {
        let c = PostgresConfig::parse(
            "postgresql://al%40ce:s3cret@127.0.0.1:6543/seccs?table=store_1&sslmode=disable",
        )?;
        assert_eq!(c.table(), "store_1");
        assert_eq!(c.config.get_user(), Some("al@ce"));
        assert_eq!(c.config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(c.config.get_ports(), &[6543]);
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = PostgresConfig::parse("postgres://u@127.0.0.1/db")?;
        assert_eq!(c.table(), DEFAULT_TABLE);
        Ok(())
    }

    /// The server's error codes that every later request would meet too
    /// are errors that stop a command at the first.
    #[test]
    fn maps_the_servers_error_codes() {
        let full = map_code(
            &SqlState::DISK_FULL,
            "ERROR: could not extend file \"base/5/16384\": No space left on device".into(),
            "t1",
            true,
        );
        assert!(
            matches!(&full, BackendError::StorageFull { detail, .. }
                if detail.contains("server's disk is full")
                    && detail.contains("nothing of this write was written")
                    && detail.contains("No space left on device")
                    && detail.contains("seccs gc")),
            "{full:?}"
        );
        assert!(full.fails_every_request());
        let denied = map_code(
            &SqlState::INSUFFICIENT_PRIVILEGE,
            "ERROR: permission denied for table t1".into(),
            "t1",
            true,
        );
        assert!(
            matches!(&denied, BackendError::Denied { detail, .. } if detail.contains("GRANT")),
            "{denied:?}"
        );
        assert!(denied.fails_every_request());
        let gone = map_code(&SqlState::UNDEFINED_TABLE, String::new(), "t1", true);
        assert!(
            matches!(&gone, BackendError::StoreLost { detail, .. } if detail.contains("dropped")),
            "{gone:?}"
        );
        let missing = map_code(&SqlState::UNDEFINED_TABLE, String::new(), "t1", false);
        assert!(matches!(missing, BackendError::Config(_)), "{missing:?}");
        let other = map_code(&SqlState::UNIQUE_VIOLATION, "ERROR: x".into(), "t1", true);
        assert!(!other.fails_every_request(), "{other:?}");
    }

    #[test]
    fn rejects_malformed_urls() {
        for url in [
            "postgres://u@127.0.0.1:5432/",
            "postgres://u@127.0.0.1:5432/db?tabel=x",
            "postgres://u@127.0.0.1:5432/db?table=drop;table",
            "postgres://u@127.0.0.1:5432/db?table=1abc",
            "postgres://u@127.0.0.1:5432/db?sslmode=allow",
            "postgres://u@127.0.0.1:5432/db?sslmode=verify-ca",
            "postgres://u@127.0.0.1:5432/db?sslmode=disable&sslrootcert=/etc/ca.pem",
            "mysql://u@127.0.0.1/db",
            "postgres:///db",
        ] {
            let err = PostgresConfig::parse(url).err();
            assert!(
                matches!(&err, Some(BackendError::Config(m)) if m.starts_with("postgres URL")),
                "{url}: {err:?}"
            );
        }
    }
}
