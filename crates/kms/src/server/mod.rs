//! The key server: axum over rustls (ring provider).
//!
//! Routes, the first three wire-compatible with keas.kmi so that its users'
//! `wget`/`curl` commands keep working:
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | `200 text/plain`, `KMS server holding N keys` |
//! | `POST /new` | `200`, a new KEK (32 raw bytes); bearer token with [`ServerConfig::new_needs_token`] |
//! | `POST /key` (body: KEK, raw or hex) | `200`, the DEK (32 raw bytes); `400 Malformed key` (not 32 bytes or 64 hex digits); `404 Key not found`; `500 Key file failed authentication` (its DEK file altered or unreadable); `503 Audit log cannot be written` |
//! | `GET /v1/status` | `{"keys": N, "named_keys": M}` |
//! | `POST /v1/new` `{"count"}` | `{"keks": [hex]}`; bearer token as `/new` |
//! | `POST /v1/key` `{"keks": [hex]}` | `{"results": [{"value"} or {"error", "message"}]}` |
//! | `GET /v1/keys` | `{"names": [NAME]}` (bearer token) |
//! | `POST /v1/keys` `{"name", "state"?}` | `200` (not `201`), the new key's info (bearer token) |
//! | `GET /v1/keys/{name}` | `200`, the key's info (bearer token) |
//! | `POST /v1/keys/{name}/rotate`, `/state`, `/config` | lifecycle: `200`, the key's info after the change (bearer token) |
//! | `POST /v1/keys/{name}/encrypt`, `/decrypt`, `/rewrap`, `/datakey` | batches (bearer token) |
//!
//! A seed route asked with a method it does not take (`GET /key`, `GET
//! /new`, `POST /`) is answered `405` with an empty body (and `Allow`); the
//! seed routes' answers are plain text or raw bytes, never JSON.
//!
//! A key's info, every answer of the create, info and lifecycle routes, is
//! the JSON of [`KeyInfo`](crate::lifecycle::KeyInfo):
//! `{"name", "state", "latest_version", "min_decrypt_version",
//! "versions": [{"version", "created", "destroyed"}],
//! "transitions": [{"state", "at"}]}`, `created` and `at` in whole
//! seconds since the Unix epoch (see [`crate::api::CreateRequest`]).
//!
//! [`ROUTES_HELP`] lists them for `seccs kms serve --help`.
//!
//! Hardening: request bodies above [`ServerConfig::max_body`] are answered
//! `413` (a declared one after it is read and dropped, up to 16 MiB, so the
//! client sees the answer rather than a reset); an encrypt batch with a
//! plaintext above [`crate::api::MAX_ITEM_PLAINTEXT`], or whose ciphertexts
//! would not fit one decrypt request, `413` `too-large` (what the server
//! encrypts it can always decrypt and rewrap); malformed bodies `400`;
//! every request has a deadline ([`ServerConfig::request_timeout`], then
//! `503`); a connection must send
//! its first request within 10 s and each header within 10 s; one whose
//! client reads nothing of its answers for [`ServerConfig::write_timeout`]
//! is closed; at most [`ServerConfig::max_connections`] are open at once
//! (one more is closed as it is accepted); SIGINT,
//! SIGTERM and SIGHUP (each unless started with it ignored, as under
//! `nohup` or in a shell's background job) stop accepting and let requests in flight finish. Logs (tracing)
//! carry key ids (SHA-256 of the KEK) and names, never key material. The
//! audit log takes a batch as one record per outcome, lists at most a
//! few ids of the keys a batch made without the management token (with
//! the SHA-256 of them all), and counts rather than writes refusals of
//! requests without a credential beyond a rate (see [`crate::audit`]): a
//! client without one cannot fill the disk through it, which would have
//! the server answer every key request 503.
//!
//! The audit log is synced to disk as [`ServerConfig::audit_sync`] says
//! (see [`crate::audit`]): by default a background sync at most every
//! [`AUDIT_SYNC_INTERVAL`] bounds what a crash can lose of it to about a
//! second; with [`AuditSync::Each`] an answer that gives out or changes
//! keys waits for its record's sync, which concurrent requests share. A
//! failed sync makes such answers 503 until a sync succeeds.
//! [`ServerConfig::audit_sync_interval`] sets that interval (and how long
//! a failed sync waits to be retried).
//!
//! The audit log is rotated by moving it away and asking the server to
//! reopen it ([`RunningServer::reopen_audit_log`]; `kill -USR1 PID` for
//! [`serve_blocking`], as in logrotate's `postrotate`): the moved file
//! ends with a `reopened` record and `audit.log` is opened anew, as
//! at start, beginning with a `reopen` record. A reopen that fails keeps
//! the file in use and is logged.
//!
//! The key directory is held open from start (see `dir.rs`): every file
//! of it is opened relative to the directory checked, never by its path
//! again, so a directory put in its place while the server runs is never
//! used.
//!
//! Seed flaw fixed here: the seed's server ran one worker over plain HTTP as
//! shipped; this one is HTTPS only, multi-threaded, with a certificate made
//! on first start whose fingerprint it prints for pinning.

mod linger;
mod routes;
pub mod tls;
mod wipe;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use crate::files::MIN_TOKEN_LEN;
pub(crate) use routes::STORAGE_FULL;
pub use routes::{KEK_FORMS, parse_kek};
pub use tls::{CertInfo, Validity};

use crate::KmsError;
use crate::atomic;
pub use crate::audit::{
    AUDIT_SYNC_INTERVAL, AuditSync, BadSyncInterval, MAX_AUDIT_SYNC_INTERVAL, SyncStatus,
    check_audit_sync_interval, parse_audit_sync_interval,
};
use crate::audit::{AuditLog, SyncFn};
use crate::dir::DirFd;
use crate::facility::Facility;
use crate::files::{self, MAX_TOKEN_FILE, TOKEN_CHARACTERS, read_own_opt, token_fits_header};
use crate::keyring::KeyRing;

/// The routes, for `seccs kms serve --help`: method, path, what it does,
/// and whether it needs the management token.
pub const ROUTES_HELP: &str = "\
Routes (HTTPS; \"token\": the management token, as `Authorization: Bearer TOKEN`):
  GET  /                          status line, \"KMS server holding N keys\"  (keas.kmi)
  POST /new                       a new KEK/DEK pair; answers the KEK, 32 raw bytes  (keas.kmi;
                                  token only with --new-needs-token)
  POST /key                       body: a KEK (32 bytes or 64 hex digits); answers its DEK,
                                  32 raw bytes; 400 \"Malformed key\" (not a KEK), 404 \"Key not
                                  found\", 500 \"Key file failed authentication\" (its DEK file
                                  altered), 503 \"Audit log cannot be written\"  (keas.kmi; the KEK
                                  is the credential)
  GET  /v1/status                 {\"keys\": N, \"named_keys\": M}
  POST /v1/new                    {\"count\": N} (1-1024): {\"keks\": [hex]}  (token only with
                                  --new-needs-token)
  POST /v1/key                    {\"keks\": [hex]} (at most 1024): {\"results\": [{\"value\"} or
                                  {\"error\", \"message\"}]}  (the KEKs are the credential)
  GET  /v1/keys                   the named keys' names: {\"names\": [NAME]}  (token)
  POST /v1/keys                   {\"name\", \"state\"?}: create a named key; 200 with its INFO  (token)
  GET  /v1/keys/NAME              a named key's INFO  (token)
  POST /v1/keys/NAME/rotate       add a version; new ciphertexts use it; INFO  (token)
  POST /v1/keys/NAME/state        {\"state\"}: move it in its lifecycle; INFO  (token)
  POST /v1/keys/NAME/config       {\"min_decrypt_version\"}; INFO  (token)
  POST /v1/keys/NAME/encrypt      {\"items\": [{\"data\", \"context\"}]} (hex): ciphertexts  (token)
  POST /v1/keys/NAME/decrypt      the same with ciphertexts: plaintexts  (token)
  POST /v1/keys/NAME/rewrap       the same: ciphertexts under the newest version  (token)
  POST /v1/keys/NAME/datakey      {\"count\", \"context\"}: data keys and their wrapped forms  (token)
INFO (200, not 201, for a create too): {\"name\", \"state\", \"latest_version\",
\"min_decrypt_version\", \"versions\": [{\"version\", \"created\", \"destroyed\"}],
\"transitions\": [{\"state\", \"at\"}]}, \"created\" and \"at\" in seconds since the Unix epoch,
transitions oldest first.
A seed route (/, /new, /key) asked with another method answers 405 with an empty body.
Errors of /v1/ are JSON: {\"error\": CODE, \"message\": TEXT}, the refusals of the layers
before the routes too (413 too-large, 404 not-found, 405 method-not-allowed, 503 timeout);
only a header block too large is refused (431) before its path is read, without a body.";

/// How long a connection may make no progress writing before it is closed,
/// by default.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most connections served at once, by default.
pub const MAX_CONNECTIONS: usize = 4096;
/// File descriptors the connection cap leaves for the rest of the server
/// (the listener, the runtime's, the directory, the audit log, key files
/// opened while a request is served): with no room for those, a request
/// would fail for want of one (`500`), and new connections would wait
/// unaccepted in the backlog instead of being closed at the cap.
pub const DESCRIPTORS_KEPT: u64 = 64;

/// The connection cap that fits `wanted` to the process's open-file limit
/// as it is now, [`DESCRIPTORS_KEPT`] kept beside it; an error when the
/// limit leaves no room for one connection.
fn cap_within_open_files(wanted: usize) -> Result<usize, KmsError> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let Some(limit) = limit else {
        return Ok(wanted);
    };
    let room = limit.saturating_sub(DESCRIPTORS_KEPT);
    if room == 0 {
        return Err(KmsError::Config(format!(
            "the open-file limit of {limit} leaves no room for connections beside the \
             {DESCRIPTORS_KEPT} descriptors the server keeps: raise it (`ulimit -n`)"
        )));
    }
    Ok(usize::try_from(room).map_or(wanted, |room| wanted.min(room)))
}

/// The audit log's file in the key directory.
const AUDIT_FILE: &str = "audit.log";

/// The smallest request body limit a server takes: room for any request
/// of a KEK, and for small batches.
pub const MIN_MAX_BODY: usize = 1024;
/// How to run a server. `Debug` shows whether there is a token, never the
/// token.
#[derive(Clone)]
pub struct ServerConfig {
    /// The storage directory: `keys/` (DEK files), `named/`, `root.key`,
    /// `token`, `audit.log`, `tls/`.
    pub dir: PathBuf,
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The certificate chain (PEM); with `key`, or neither to self-sign.
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of `cert`.
    pub key: Option<PathBuf>,
    /// The management bearer token; `None` reads `DIR/token`, creating a
    /// random one (mode 0600) on first start. Either way it is read at
    /// start only (a changed token needs a restart) and must be at least
    /// [`MIN_TOKEN_LEN`] bytes of printable ASCII.
    pub token: Option<String>,
    /// Whether `POST /new` and `POST /v1/new` need the management token.
    /// Off by default, as keas.kmi: then anyone who reaches the server can
    /// create keys (a file each), and fill its disk.
    pub new_needs_token: bool,
    /// Largest request body in bytes; larger ones get `413`. At least
    /// [`MIN_MAX_BODY`].
    pub max_body: usize,
    /// Deadline of one request.
    pub request_timeout: Duration,
    /// How long a connection may make no progress writing its answers
    /// (its client reads none of them) before it is closed.
    pub write_timeout: Duration,
    /// The most connections served at once; one beyond it is closed as it
    /// is accepted, before its TLS handshake. Lowered at start to what the
    /// process's open-file limit leaves room for beside
    /// [`DESCRIPTORS_KEPT`] ([`RunningServer::max_connections`] says the
    /// cap in force); the limit itself is the caller's to raise.
    pub max_connections: usize,
    /// When audit records are synced to disk: at most every
    /// [`AUDIT_SYNC_INTERVAL`] (the default), or before each answer that
    /// gives out or changes keys (see [`crate::audit`]).
    pub audit_sync: AuditSync,
    /// How often, at most, the `interval` mode syncs the audit log, and
    /// how long a failed sync waits before it is tried again (in both
    /// modes): more than zero and at most [`MAX_AUDIT_SYNC_INTERVAL`];
    /// [`AUDIT_SYNC_INTERVAL`] by default.
    pub audit_sync_interval: Duration,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("dir", &self.dir)
            .field("listen", &self.listen)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("new_needs_token", &self.new_needs_token)
            .field("max_body", &self.max_body)
            .field("request_timeout", &self.request_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_connections", &self.max_connections)
            .field("audit_sync", &self.audit_sync)
            .field("audit_sync_interval", &self.audit_sync_interval)
            .finish()
    }
}

impl ServerConfig {
    /// Defaults: listen on `127.0.0.1:8080`, self-signed certificate,
    /// 1 MiB bodies, 30 s per request, the audit log synced every
    /// [`AUDIT_SYNC_INTERVAL`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cert: None,
            key: None,
            token: None,
            new_needs_token: false,
            max_body: 1 << 20,
            request_timeout: Duration::from_secs(30),
            write_timeout: WRITE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            audit_sync: AuditSync::Interval,
            audit_sync_interval: AUDIT_SYNC_INTERVAL,
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    /// The connection cap, fitted to the open-file limit.
    max_connections: usize,
    cert: CertInfo,
    token_path: Option<PathBuf>,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Writes the audit log's summary of refusals once it is due.
    summaries: tokio::task::JoinHandle<()>,
    state: Arc<routes::AppState>,
    /// The directory's lock, held while the server runs.
    _lock: DirLock,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The most connections it serves at once: [`ServerConfig::max_connections`],
    /// or fewer when the process's open-file limit leaves room for fewer
    /// beside the [`DESCRIPTORS_KEPT`].
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// `https://ADDR`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// How many connections are open (in their TLS handshake, or served).
    pub fn connections(&self) -> usize {
        self.handle.connection_count()
    }

    /// The certificate in use and its fingerprint.
    pub fn cert(&self) -> &CertInfo {
        &self.cert
    }

    /// Where the syncing of the audit log stands: how many records were
    /// written and synced, and how many syncs succeeded and failed.
    pub fn audit_sync_status(&self) -> (u64, SyncStatus) {
        (self.state.audit.written(), self.state.audit.sync_status())
    }

    /// Opens the audit log anew as `audit.log` of the key directory the
    /// server holds open and writes every later
    /// record there, as SIGUSR1 has [`serve_blocking`] do: after logrotate
    /// (or an operator) moved the file away, the moved file ends with a
    /// `reopened` record and the new one begins with a `reopen` record.
    /// A failure (the path now a directory or a link, no room for the
    /// first record) is logged and returned, and the file in use stays in
    /// use. See [`crate::audit::AuditLog::reopen`].
    pub async fn reopen_audit_log(&self) -> Result<(), KmsError> {
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || state.audit.reopen())
            .await
            .map_err(|e| KmsError::Io(std::io::Error::other(e.to_string())))?
    }

    /// The file holding the management token, if the server created or read
    /// one.
    pub fn token_path(&self) -> Option<&Path> {
        self.token_path.as_deref()
    }

    /// Stops accepting, lets requests in flight finish (up to `grace`), and
    /// waits for the server to end.
    pub async fn shutdown(self, grace: Duration) -> Result<(), KmsError> {
        self.handle.graceful_shutdown(Some(grace));
        let r = self
            .task
            .await
            .map_err(|e| KmsError::Io(std::io::Error::other(e.to_string())))?;
        self.summaries.abort();
        // Each already logged when it cannot be written; the stop is not
        // undone. The requests have ended: the summary counts them all.
        let _unrecorded = self.state.audit.summarize();
        let _unrecorded = self.state.audit.record(None, "stop", "-", "ok");
        self.state.audit.sync()?;
        tracing::info!("server stopped");
        Ok(r?)
    }
}

/// The management token: the one given, or `DIR/token` (at most 4 KiB,
/// without the whitespace around it), made on first start. A token shorter
/// than [`MIN_TOKEN_LEN`] bytes, or that cannot go in an HTTP header, is
/// refused.
fn load_token(
    dir: &DirFd,
    given: Option<&str>,
) -> Result<(Zeroizing<String>, Option<PathBuf>), KmsError> {
    let (token, path) = match given {
        Some(t) => (Zeroizing::new(t.trim().to_owned()), None),
        None => {
            let path = dir.join("token");
            match read_own_opt(dir, "token", MAX_TOKEN_FILE)? {
                Some(bytes) => {
                    let bytes = zeroize::Zeroizing::new(bytes);
                    let text = std::str::from_utf8(&bytes).map_err(|_| {
                        KmsError::Config(format!("{} {TOKEN_CHARACTERS}", path.display()))
                    })?;
                    (Zeroizing::new(text.trim().to_owned()), Some(path))
                }
                None => {
                    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
                    seccs_core::random_bytes(&mut raw[..])?;
                    let token = Zeroizing::new(hex::encode(&raw[..]));
                    atomic::write_atomic(dir, "token", token.as_bytes())?;
                    return Ok((token, Some(path)));
                }
            }
        }
    };
    let whose = match &path {
        Some(p) => format!("the management token in {}", p.display()),
        None => "the management token".to_owned(),
    };
    if token.len() < MIN_TOKEN_LEN {
        return Err(KmsError::Config(format!(
            "{whose} is {} bytes long: it must be at least {MIN_TOKEN_LEN} (remove the file to \
             have the server make a random one)",
            token.len()
        )));
    }
    if !token_fits_header(&token) {
        return Err(KmsError::Config(format!("{whose} {TOKEN_CHARACTERS}")));
    }
    Ok((token, path))
}

/// Declared bodies above the limit are read and dropped up to this many
/// bytes before the `413` (a lingering close, as nginx does): a client
/// still sending its body then reads the answer instead of a connection
/// reset under its write. Larger ones are refused at once.
const DRAIN_LIMIT: u64 = 16 << 20;

/// An error answer of a `/v1/` path, as [`crate::api::ErrorBody`] says.
fn v1_error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(crate::api::ErrorBody {
            error: code.to_owned(),
            message,
        }),
    )
        .into_response()
}

/// Whether `req` is of a `/v1/` path, whose errors are JSON.
fn is_v1(req: &Request) -> bool {
    req.uri().path().starts_with("/v1/")
}

/// Makes every error answer of a `/v1/` path that is not JSON yet (those
/// of axum itself: a method the route does not take, a body beyond the
/// limit as it is read, a path it cannot take apart) an
/// [`crate::api::ErrorBody`], as the routes' own are, with a code for its
/// status and its text as the message. The seed routes' answers are
/// left as they are, byte for byte.
async fn json_errors(req: Request, next: Next) -> Response {
    if !is_v1(&req) {
        return next.run(req).await;
    }
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => "timeout",
        s if s.is_client_error() => "malformed",
        _ => "internal",
    };
    let (mut parts, body) = response.into_parts();
    // Its text is short (axum's rejections are a line); a longer one, or
    // one that is not text, is not said.
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let rebuilt = v1_error(status, code, text);
    // Its other headers (405's `Allow`) are kept; its length and type are
    // the new body's.
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    let (new_parts, new_body) = rebuilt.into_parts();
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, new_body)
}

async fn refuse_oversized(State(max_body): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let v1 = is_v1(&req);
    match declared {
        Some(len) if len > max_body as u64 => {
            if len <= DRAIN_LIMIT {
                use futures::StreamExt;
                let mut body = req.into_body().into_data_stream();
                while let Some(Ok(_)) = body.next().await {}
            }
            if v1 {
                return v1_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    format!("a body of {len} bytes, above this server's {max_body}-byte limit"),
                );
            }
            (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large").into_response()
        }
        // Bodies without a declared length are cut off by the body limit.
        _ => next.run(req).await,
    }
}

async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let v1 = is_v1(&req);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) if v1 => v1_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request did not end within this server's deadline of {limit:?}"),
        ),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "Request timed out").into_response(),
    }
}

/// How often the audit log is asked whether a summary of refusals is due:
/// a summary is written about this long after the bucket has a token for
/// it, rather than waiting for the next refusal (which, once a flood has
/// ended, may not come before `stop`).
const SUMMARY_CHECK: Duration = Duration::from_secs(1);

/// Writes the audit log's summary of refusals when it is due, until the
/// server stops (which aborts it). It waits with no timer until a refusal
/// is counted, then asks every [`SUMMARY_CHECK`] until none is left
/// unsummarized: an idle server does not wake for it (before, it woke
/// every second whatever happened, as the syncer did on its interval).
async fn write_summaries(state: Arc<routes::AppState>) {
    loop {
        state.audit.refusal_counted().await;
        // Bounded by the bucket: it has a token for the summary within a
        // second, unless the summary cannot be written (a full disk),
        // which is retried every second as before.
        loop {
            tokio::time::sleep(SUMMARY_CHECK).await;
            // Already logged when it cannot be written; its count is kept.
            let _unwritten = state.audit.summarize_due();
            if state.audit.counted() == 0 {
                break;
            }
        }
    }
}

/// Starts a server on the current tokio runtime.
pub async fn start(config: ServerConfig) -> Result<RunningServer, KmsError> {
    start_with(config, Arc::new(std::fs::File::sync_data)).await
}

/// [`start`] with the audit log synced by `sync` (a failing one in tests).
pub(crate) async fn start_with(
    config: ServerConfig,
    sync: SyncFn,
) -> Result<RunningServer, KmsError> {
    check_audit_sync_interval(config.audit_sync_interval)
        .map_err(|e| KmsError::Config(e.to_string()))?;
    if config.max_connections == 0 || config.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
        return Err(KmsError::Config(format!(
            "a cap of {} connections: give from 1 to {}",
            config.max_connections,
            tokio::sync::Semaphore::MAX_PERMITS
        )));
    }
    let max_connections = cap_within_open_files(config.max_connections)?;
    if config.write_timeout.is_zero() {
        return Err(KmsError::Config(
            "a write timeout of zero would close every connection".into(),
        ));
    }
    if config.max_body < MIN_MAX_BODY {
        return Err(KmsError::Config(format!(
            "a body limit of {} bytes leaves no room for a request: give at least {MIN_MAX_BODY}",
            config.max_body
        )));
    }
    // The address first: a port in use fails the start before a key
    // directory is made for a server that never ran.
    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| KmsError::Listen {
            addr: config.listen,
            source,
        })?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    // So is a certificate or key given that cannot be read, or that do
    // not belong together: all of it is checked before anything is made.
    let given_tls = match (config.cert.as_deref(), config.key.as_deref()) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(tls::server_config(
            tls::CertSource::Given { cert, key },
            addr.ip(),
        )?),
        _ => {
            return Err(KmsError::Config(
                "--cert and --key must be given together".into(),
            ));
        }
    };
    // Named by an absolute path (links not resolved) in every message and
    // log line: an operator reads them, or copies a path from them to a
    // client, from elsewhere than the directory the server started in.
    let dir_path = std::path::absolute(&config.dir).unwrap_or_else(|_| config.dir.clone());
    atomic::create_private_dir(&dir_path)?;
    // The directory is held open from here on, and all that the server
    // reads and writes in it is opened relative to it: a directory put in
    // its place later (renamed over it, or a link) is never used.
    let dir = DirFd::open(&dir_path)?;
    // Each server keeps the directory's keys in memory and writes new ones
    // from there: a second server on the same directory would not see the
    // first one's keys, and could overwrite a named key's file with another.
    let lock = lock_dir(&dir)?;
    // Its directories as they are, never through a link: refused before
    // anything is made in them.
    let keys_dir = dir.sub("keys")?;
    let tls_dir = dir.sub("tls")?;
    let named_dir = dir.sub("named")?;
    keep_private(&dir)?;
    // Temporary files a crash left before their rename (`keys/` is cleaned
    // as its keys are read): one in `tls/` may hold the TLS private key,
    // one here `root.key`. Under this server's lock no write is under way.
    for leftovers in [Some(&dir), tls_dir.as_ref(), named_dir.as_ref()]
        .into_iter()
        .flatten()
    {
        atomic::remove_leftovers(leftovers)?;
    }
    // So is the directory a first start was making `tls/` in, when it
    // stopped before the certificate was whole.
    tls::remove_leftovers(&dir)?;
    let (tls, cert) = match given_tls {
        Some(given) => given,
        None => tls::server_config(
            tls::CertSource::Own {
                dir: &dir,
                tls: tls_dir.as_ref(),
            },
            addr.ip(),
        )?,
    };
    let (token, token_path) = load_token(&dir, config.token.as_deref())?;
    // Only a regular file, never through a link: a named pipe would hold
    // the start until a reader came.
    let audit_file =
        files::open_own(&dir, AUDIT_FILE, files::Own::Append)?.ok_or_else(|| KmsError::File {
            action: "open",
            path: dir.join(AUDIT_FILE),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    let state = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || -> Result<routes::AppState, KmsError> {
            let keys_dir = match keys_dir {
                Some(keys_dir) => keys_dir,
                None => dir.make_sub("keys")?,
            };
            Ok(routes::AppState {
                facility: Facility::open_in(keys_dir)?,
                ring: KeyRing::open_in(&dir)?,
                audit: AuditLog::from_file(
                    audit_file,
                    &dir,
                    AUDIT_FILE,
                    config.audit_sync,
                    config.audit_sync_interval,
                    sync,
                )?,
                token_hash: Sha256::digest(token.as_bytes()).into(),
                max_body: config.max_body,
                new_needs_token: config.new_needs_token,
            })
        })
        .await
        .map_err(|e| KmsError::Io(std::io::Error::other(e.to_string())))??
    };
    // A server that cannot write its audit log would refuse every request
    // that needs a record: it refuses to start instead.
    state
        .audit
        .record(None, "start", "-", "ok")
        .map_err(|source| KmsError::File {
            action: "write",
            path: dir.join(AUDIT_FILE),
            source,
        })?;
    let state = Arc::new(state);
    let app = Router::new()
        .route("/", get(routes::seed_status))
        .route("/new", post(routes::seed_new))
        .route("/key", post(routes::seed_key))
        .route("/v1/status", get(routes::v1_status))
        .route("/v1/new", post(routes::v1_new))
        .route("/v1/key", post(routes::v1_key))
        .route("/v1/keys", get(routes::v1_list).post(routes::v1_create))
        .route("/v1/keys/{name}", get(routes::v1_info))
        .route("/v1/keys/{name}/rotate", post(routes::v1_rotate))
        .route("/v1/keys/{name}/state", post(routes::v1_state))
        .route("/v1/keys/{name}/config", post(routes::v1_config))
        .route("/v1/keys/{name}/{op}", post(routes::v1_data))
        // Before the layers, so that they see an unknown route too.
        .fallback(|req: Request| async move {
            if is_v1(&req) {
                return v1_error(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("no route {} {}", req.method(), req.uri().path()),
                );
            }
            (StatusCode::NOT_FOUND, "Not Found").into_response()
        })
        // Inside the deadline: a sync that never ends is a timeout.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            routes::await_durable,
        ))
        .layer(DefaultBodyLimit::max(config.max_body))
        .layer(middleware::from_fn_with_state(
            config.max_body,
            refuse_oversized,
        ))
        .layer(middleware::from_fn_with_state(
            config.request_timeout,
            deadline,
        ))
        // Around every layer that refuses, so that a /v1/ refusal is JSON
        // whichever made it.
        .layer(middleware::from_fn(json_errors))
        // Outermost: it sees every refusal, the layers' own too.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            routes::audit_unrecorded,
        ))
        .with_state(Arc::clone(&state));

    let handle = axum_server::Handle::new();
    let mut server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )?
    // A connection closed with input unread is read a while longer, so
    // that a client still sending (a header block too large) reads its
    // 431 rather than a reset.
    // And a connection whose client reads none of its answers is closed
    // after the write timeout, as is one beyond the cap, at once.
    .map(|tls| {
        tls.acceptor(linger::LingeringAcceptor::new(
            config.write_timeout,
            max_connections,
        ))
    })
    .handle(handle.clone())
    // HTTP/1 only, as ALPN says: the timeouts below are HTTP/1's, and an
    // HTTP/2 connection (its preface sent over an HTTP/1.1 handshake)
    // would be held open with none of them.
    .http1_only()
    .first_request_timeout(Duration::from_secs(10));
    server
        .http_builder()
        .http1()
        .header_read_timeout(Some(Duration::from_secs(10)));
    // With each connection's address, which the audit log records.
    let task = tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
    let summaries = tokio::spawn(write_summaries(Arc::clone(&state)));
    tracing::info!(%addr, fingerprint = %cert.fingerprint, "kms server listening");
    Ok(RunningServer {
        addr,
        max_connections,
        cert,
        token_path,
        handle,
        task,
        summaries,
        state,
        _lock: lock,
    })
}

/// Takes group and other access away from the key directory, its
/// directories (`keys/`, `named/`, `tls/`: 0700) and its private files (the
/// root key, the token, the TLS key, the audit log: 0600), as the server
/// made them: a copy or a restore from a backup may have widened them.
/// Each change is logged. A `dir` that is a symbolic link has its
/// target's mode restricted (before, the link was passed over and the
/// directory kept whatever mode it had).
fn keep_private(dir: &DirFd) -> Result<(), KmsError> {
    let tls = dir.sub("tls")?;
    restrict(dir.fd(), dir.path())?;
    for (at, name) in [
        (Some(dir), "keys"),
        (Some(dir), "named"),
        (Some(dir), "tls"),
        (Some(dir), "root.key"),
        (Some(dir), "token"),
        (tls.as_ref(), "server.key"),
        (Some(dir), AUDIT_FILE),
    ] {
        let Some(at) = at else { continue };
        // What is in it, never through a link (a link in place of a file
        // is refused when it is opened), and never waiting on a named
        // pipe (refused when it is opened too).
        let opened = at.open_file(
            name,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::NONBLOCK,
            0,
        );
        if let Ok(file) = opened {
            restrict(std::os::fd::AsFd::as_fd(&file), &at.join(name))?;
        }
    }
    Ok(())
}

/// Takes group and other access away from the open `fd`, found at `path`.
fn restrict(fd: std::os::fd::BorrowedFd<'_>, path: &Path) -> Result<(), KmsError> {
    let failed = |e: rustix::io::Errno| KmsError::File {
        action: "restrict the permissions of",
        path: path.to_owned(),
        source: e.into(),
    };
    let mode = rustix::fs::fstat(fd).map_err(failed)?.st_mode & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(mode & 0o700)).map_err(failed)?;
    tracing::warn!(
        path = %path.display(),
        "others could read it (mode {mode:o}): restricted to its owner ({:o})",
        mode & 0o700
    );
    Ok(())
}

/// The lock of a key directory, held until dropped.
#[derive(Debug)]
struct DirLock {
    /// The directory itself, open and locked.
    dir: std::os::fd::OwnedFd,
    /// `DIR/lock`, locked too, which names the holder.
    _file: seccs_core::lockfile::DirLock,
}

impl Drop for DirLock {
    /// Unlocks the directory before closing it, as
    /// [`seccs_core::lockfile::DirLock`] does its file and for the same
    /// reason: a child forked meanwhile holds a copy of the descriptor.
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.dir, rustix::fs::FlockOperation::Unlock);
    }
}

/// Takes the lock of the key directory `dir`, or fails with
/// [`KmsError::DirInUse`] naming the holder: an exclusive `flock` on the
/// directory itself, open for as long as the server runs, so that removing
/// or replacing `dir/lock` frees nothing; then one on `dir/lock` too, which
/// says who holds the directory (and which servers of earlier builds
/// take).
///
/// Flaw fixed here: the lock was `dir/lock`'s alone, so once that file was
/// removed (by hand, by a clean-up of the directory) while a server ran, a
/// second server made a new one, locked it and started on the same keys.
fn lock_dir(opened: &DirFd) -> Result<DirLock, KmsError> {
    let dir = opened.path();
    use rustix::fs::FlockOperation;
    use seccs_core::lockfile::{self, LockError};
    let in_use = |holder: &str| {
        KmsError::DirInUse(format!(
            "{} is in use by another key server ({holder}): one server per key directory",
            dir.display()
        ))
    };
    let io_err = |action, source: rustix::io::Errno| KmsError::File {
        action,
        path: dir.to_owned(),
        source: source.into(),
    };
    // A descriptor of its own, on the directory checked: the lock goes
    // with it when the server is dropped, while the clones of `opened`
    // that the key stores hold may outlive it a moment.
    let locked = rustix::fs::openat(
        opened.fd(),
        ".",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| io_err("open", e))?;
    match rustix::fs::flock(&locked, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            // Who holds it, as `dir/lock` says, if it is still there.
            let text = files::read_own_opt(opened, "lock", 200)
                .ok()
                .flatten()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .unwrap_or_default();
            let holder = match text.trim() {
                line if line.starts_with("pid ") => line.escape_debug().to_string(),
                _ => "another process".to_owned(),
            };
            return Err(in_use(&holder));
        }
        Err(e) => return Err(io_err("lock", e)),
    }
    let file = lockfile::lock_dir(dir).map_err(|e| match e {
        LockError::Held { holder, .. } => in_use(&holder),
        LockError::Io {
            action,
            path,
            source,
        } => KmsError::File {
            action,
            path,
            source,
        },
    })?;
    Ok(DirLock {
        dir: locked,
        _file: file,
    })
}

/// Runs a server until SIGINT, SIGTERM or SIGHUP, on its own multi-threaded
/// runtime, reopening its audit log on each SIGUSR1
/// ([`RunningServer::reopen_audit_log`]; unless the process was started
/// with SIGUSR1 ignored); calls `ready` once it listens (to print its
/// address and fingerprint). For the CLI. On a thread inside a tokio runtime it fails
/// with [`KmsError::InsideAsyncRuntime`]: use [`start`] there.
pub fn serve_blocking(
    config: ServerConfig,
    ready: impl FnOnce(&RunningServer),
) -> Result<(), KmsError> {
    crate::client::ensure_not_in_runtime("serve_blocking")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A worker going idle wipes the keys its requests left on its
        // stack and in freed request buffers.
        .on_thread_park(wipe::on_idle)
        .build()?;
    rt.block_on(async move {
        // SIGHUP too stops the server as SIGTERM does (each unless it was
        // ignored at start), so that its audit log gets its summary of
        // refusals and its `stop`.
        let stop = seccs_core::signals::stop_signals(&mut |name, error| {
            tracing::error!(%error, "cannot listen for {name}");
        });
        // Listened for before the server says it is ready, as the stop
        // signals are: SIGUSR1's default action would end the process.
        let mut reopen = seccs_core::signals::reopen_signal(&mut |name, error| {
            tracing::error!(%error, "cannot listen for {name}: the audit log cannot be reopened");
        });
        let server = start(config).await?;
        ready(&server);
        let mut stop = std::pin::pin!(stop);
        loop {
            let signalled = async {
                match reopen.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut stop => break,
                got = signalled => match got {
                    // Already logged with its cause; the old file stays in use.
                    Some(()) => {
                        let _kept = server.reopen_audit_log().await;
                    }
                    // The listener is gone (never, with tokio's): no spin.
                    None => reopen = None,
                },
            }
        }
        tracing::info!("shutting down");
        server.shutdown(Duration::from_secs(10)).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Temporary files a crash left in `named/`, `tls/` (where one may
    /// hold the TLS private key) and the directory itself are removed when
    /// a server starts, as those in `keys/` were; other files stay.
    #[test]
    fn a_start_removes_leftover_temporary_files() -> Result<(), Box<dyn std::error::Error>> {
        let (dir, rt, cfg) = loopback_parts()?;
        rt.block_on(async { start(cfg.clone()).await?.shutdown(Duration::ZERO).await })?;
        let leftovers = [
            "named/.k.1.0.tmp",
            "tls/.key.pem.1.3.0011223344556677.tmp",
            ".root.key.1.2.tmp",
        ];
        for leftover in leftovers {
            std::fs::write(dir.path().join(leftover), b"crashed")?;
        }
        std::fs::write(dir.path().join("named/.kept"), b"not ours")?;
        rt.block_on(async { start(cfg).await?.shutdown(Duration::ZERO).await })?;
        for leftover in leftovers {
            assert!(!dir.path().join(leftover).exists(), "{leftover} is left");
        }
        assert!(dir.path().join("named/.kept").exists());
        Ok(())
    }

    /// A directory `tls.new-<random>` that a first start left when it
    /// stopped before its certificate was whole (it may hold the TLS
    /// private key) is removed at the next start; a link of that name is
    /// not followed (what it points to stays), and other names stay.
    #[test]
    fn a_start_removes_the_certificate_directory_a_failed_first_start_left()
    -> Result<(), Box<dyn std::error::Error>> {
        let (dir, rt, cfg) = loopback_parts()?;
        let left = dir.path().join("tls.new-0123456789abcdef");
        std::fs::create_dir_all(&left)?;
        std::fs::write(left.join("ca.pem"), b"crashed")?;
        std::fs::write(left.join("server.key"), b"crashed")?;
        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("server.key"), b"not ours")?;
        let link = dir.path().join("tls.new-fedcba9876543210");
        std::os::unix::fs::symlink(outside.path(), &link)?;
        let other = dir.path().join("tls.new-kept");
        std::fs::create_dir(&other)?;
        let server = rt.block_on(start(cfg))?;
        assert!(server.cert().created);
        rt.block_on(server.shutdown(Duration::ZERO))?;
        assert!(!left.exists(), "the leftover is still there");
        assert!(link.symlink_metadata()?.file_type().is_symlink());
        assert_eq!(
            std::fs::read(outside.path().join("server.key"))?,
            b"not ours"
        );
        assert!(other.is_dir());
        for file in ["ca.pem", "server.key", "server.pem"] {
            assert!(dir.path().join("tls").join(file).is_file(), "{file}");
        }
        Ok(())
    }

    #[test]
    fn debug_redacts_the_token() {
        let mut cfg = ServerConfig::new("/srv/kms");
        cfg.token = Some("s3cret-management-token-0123456789".into());
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret-management-token"), "{shown}");
        assert!(shown.contains("token: Some(\"<redacted>\")"), "{shown}");
        assert!(shown.contains("/srv/kms"), "{shown}");
        cfg.token = None;
        assert!(format!("{cfg:?}").contains("token: None"));
    }

    /// A key directory's lock, once dropped, is free at once, though a
    /// copy of the directory's descriptor lives on (as in a child another
    /// thread has forked and not yet run its program in). The lock file's
    /// own copy is `seccs_core::lockfile`'s test.
    #[test]
    fn a_dropped_directory_lock_is_free_while_a_copy_of_its_descriptor_lives()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let opened = DirFd::open(tmp.path())?;
        let first = lock_dir(&opened)?;
        let copy = first.dir.try_clone()?;
        drop(first);
        let again = lock_dir(&opened);
        assert!(again.is_ok(), "still held by the copy: {again:?}");
        drop(copy);
        Ok(())
    }
}

/// What the in-crate server tests start from: a scratch directory, a
/// runtime on two workers (a 2-core machine's), and the config of a server
/// on a loopback port whose files are in that directory.
#[cfg(test)]
fn loopback_parts()
-> Result<(tempfile::TempDir, tokio::runtime::Runtime, ServerConfig), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut cfg = ServerConfig::new(dir.path());
    cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    Ok((dir, rt, cfg))
}

#[cfg(test)]
mod sync_tests {
    use super::*;
    use crate::client::{ClientConfig, KmsClient};

    /// What a test of the `each` mode starts from: a scratch directory, a
    /// runtime, the config of a loopback server in that mode, and a KEK
    /// made before the server starts, so that only the sync stands between
    /// a client and its DEK.
    #[allow(clippy::type_complexity)]
    fn each_mode_parts() -> Result<
        (
            tempfile::TempDir,
            tokio::runtime::Runtime,
            ServerConfig,
            seccs_core::SecretKey,
        ),
        Box<dyn std::error::Error>,
    > {
        let (dir, rt, mut cfg) = loopback_parts()?;
        cfg.audit_sync = AuditSync::Each;
        let kek = Facility::open(dir.path().join("keys"))?.generate()?;
        Ok((dir, rt, cfg, kek))
    }

    /// Over real TLS, in the `each` mode, on a disk whose syncs fail: a
    /// key is answered 503 (seed and `/v1/` routes), never given out,
    /// while a refusal (an unknown KEK) is answered at once as before.
    #[test]
    fn in_each_mode_a_failed_sync_answers_a_key_request_503()
    -> Result<(), Box<dyn std::error::Error>> {
        let (dir, rt, cfg, kek) = each_mode_parts()?;
        // The first sync (of the `start` record) succeeds, every later
        // one fails: the first key waits for a sync that fails, and the
        // next ones are refused before they wait.
        let calls = std::sync::atomic::AtomicU64::new(0);
        let failing: SyncFn = Arc::new(move |file: &std::fs::File| {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                return file.sync_data();
            }
            Err(std::io::Error::from_raw_os_error(5))
        });
        let server = rt.block_on(start_with(cfg, failing))?;
        let client_cfg = ClientConfig::new(server.url()).with_pin(&server.cert().fingerprint)?;
        rt.block_on(async {
            let mut status = server.state.audit.durability_status();
            tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| s.syncs >= 1))
                .await??;
            let client = KmsClient::new(&client_cfg)?;
            let refused = client.dek(&kek).await.err().ok_or("a DEK left without a synced record")?;
            assert!(
                matches!(&refused, KmsError::Server { status: 503, body } if body.contains("Audit log cannot be written")),
                "{refused}"
            );
            let batch = client.deks(std::slice::from_ref(&kek)).await;
            let refused = batch.err().ok_or("a batch left without a synced record")?;
            assert!(
                matches!(&refused, KmsError::Server { status: 503, body } if body.starts_with("audit:")),
                "{refused}"
            );
            let unknown = seccs_core::SecretKey::from_bytes([7u8; 32]);
            assert!(matches!(client.dek(&unknown).await, Err(KmsError::NotFound)));
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        let status = server.state.audit.sync_status();
        assert!(status.failing && status.syncs == 1, "{status:?}");
        let log = std::fs::read_to_string(dir.path().join("audit.log"))?;
        assert!(log.contains("\"result\":\"not-found\""), "{log}");
        rt.block_on(server.shutdown(Duration::from_secs(5)))?;
        Ok(())
    }

    /// In the `each` mode, a key whose record's sync outlasts the
    /// request's deadline is answered 503, and the log says so after its
    /// record: the record of the key is followed by one saying it was
    /// withheld.
    #[test]
    fn in_each_mode_a_key_whose_sync_outlasts_the_deadline_is_logged_as_withheld()
    -> Result<(), Box<dyn std::error::Error>> {
        let (dir, rt, mut cfg, kek) = each_mode_parts()?;
        cfg.request_timeout = Duration::from_millis(500);
        // The first sync (of the `start` record) is quick, the next ones
        // take 2 s, four times the deadline.
        let calls = std::sync::atomic::AtomicU64::new(0);
        let slow: SyncFn = Arc::new(move |file: &std::fs::File| {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            file.sync_data()
        });
        let server = rt.block_on(start_with(cfg, slow))?;
        let client_cfg = ClientConfig::new(server.url()).with_pin(&server.cert().fingerprint)?;
        rt.block_on(async {
            // The quick sync is the start record's own: asked before it
            // ends, the key's record was synced with it, quickly, and the
            // DEK left (one run in five on a loaded machine).
            let mut status = server.state.audit.durability_status();
            tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| s.syncs >= 1))
                .await??;
            let client = KmsClient::new(&client_cfg)?;
            let refused = client.dek(&kek).await.err().ok_or("a DEK left before its sync")?;
            assert!(
                matches!(&refused, KmsError::Server { status: 503, body } if body.contains("timed out")),
                "{refused}"
            );
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        rt.block_on(server.shutdown(Duration::from_secs(10)))?;
        let log = std::fs::read_to_string(dir.path().join("audit.log"))?;
        let records: Vec<serde_json::Value> = log
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let key = records
            .iter()
            .position(|r| r["op"] == "key")
            .ok_or(format!("no key record: {log}"))?;
        assert_eq!(records[key]["result"], "ok", "{log}");
        let next = &records[key + 1];
        assert_eq!(next["op"], "withheld", "{log}");
        assert_eq!(next["result"], "503", "{log}");
        let detail = next["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("POST /key: answered 503 after its record was written")
                && detail.ends_with("nothing it records was given out"),
            "{detail}"
        );
        Ok(())
    }
}

/// What the tests that hold the key ring share: a server on two workers
/// with the named key `k`, and a thread that holds the ring.
#[cfg(test)]
mod held_ring {
    use super::*;
    use crate::client::{ClientConfig, KmsClient};
    use crate::lifecycle::KeyState;

    const TOKEN: &str = "a-management-token-0123";

    /// A running server, its directory and runtime, and a client
    /// configuration with its pin and token.
    pub(super) struct WithKey {
        pub(super) server: RunningServer,
        pub(super) rt: tokio::runtime::Runtime,
        pub(super) client_cfg: ClientConfig,
        /// The server's directory, removed when this is dropped.
        pub(super) dir: tempfile::TempDir,
    }

    /// A server on two workers (a 2-core machine's), its requests given
    /// `deadline`, with the named key `k` made through `clients` (the
    /// server's own runtime when `None`).
    pub(super) fn server_with_key(
        deadline: Option<Duration>,
        clients: Option<&tokio::runtime::Runtime>,
    ) -> Result<WithKey, Box<dyn std::error::Error>> {
        let (dir, rt, mut cfg) = loopback_parts()?;
        cfg.token = Some(TOKEN.into());
        if let Some(deadline) = deadline {
            cfg.request_timeout = deadline;
        }
        let server = rt.block_on(start(cfg))?;
        let client_cfg = ClientConfig::new(server.url())
            .with_pin(&server.cert().fingerprint)?
            .with_token(TOKEN);
        clients.unwrap_or(&rt).block_on(async {
            KmsClient::new(&client_cfg)?
                .create_key("k", KeyState::Active)
                .await
        })?;
        Ok(WithKey {
            server,
            rt,
            client_cfg,
            dir,
        })
    }

    /// Runs `f` while a thread holds `server`'s key ring for `held` (it
    /// is held before `f` starts), and returns what `f` returned once the
    /// ring is let go.
    pub(super) fn while_held<R>(
        server: &RunningServer,
        held: Duration,
        f: impl FnOnce() -> R,
    ) -> Result<R, Box<dyn std::error::Error>> {
        std::thread::scope(|scope| {
            let (held_tx, held_rx) = std::sync::mpsc::channel();
            let state = Arc::clone(&server.state);
            let holder = scope.spawn(move || {
                state.ring.hold(|| {
                    let _ = held_tx.send(());
                    std::thread::sleep(held);
                })
            });
            held_rx.recv_timeout(Duration::from_secs(10))?;
            let r = f();
            holder.join().map_err(|_| "the holder panicked")?;
            Ok(r)
        })
    }
}

#[cfg(test)]
mod dropped_request_tests {
    use super::held_ring::{WithKey, server_with_key, while_held};
    use super::*;
    use crate::client::KmsClient;

    /// How long the key ring is held, so that a rotate waits for it.
    const HELD: Duration = Duration::from_millis(1200);

    /// Starts a server whose requests have `deadline`, creates the named
    /// key `k`, then asks for its rotation with a client that gives up
    /// after `client_timeout` while the key map is held for [`HELD`].
    /// Returns, once the map is free and the rotation is recorded (or 20 s
    /// have passed), the key's newest version and the audit log's
    /// records.
    fn rotate_while_held(
        deadline: Duration,
        client_timeout: Duration,
    ) -> Result<(u32, Vec<serde_json::Value>, String), Box<dyn std::error::Error>> {
        let WithKey {
            server,
            rt,
            mut client_cfg,
            dir,
        } = server_with_key(Some(deadline), None)?;
        client_cfg.timeout = client_timeout;
        let answered = while_held(&server, HELD, || {
            rt.block_on(async { KmsClient::new(&client_cfg)?.rotate("k").await })
        })?;
        let answered = answered
            .err()
            .ok_or("a rotation held back was answered as done")?;
        let log_path = dir.path().join("audit.log");
        let rotated = |log: &str| log.contains("\"op\":\"rotate\"");
        let waited = std::time::Instant::now();
        while !rotated(&std::fs::read_to_string(&log_path)?)
            && waited.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let version = server
            .state
            .ring
            .with_key("k", |k| Ok(k.info().latest_version))?;
        rt.block_on(server.shutdown(Duration::from_secs(10)))?;
        let log = std::fs::read_to_string(&log_path)?;
        let records = log
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        Ok((version, records, format!("{answered} | {log}")))
    }

    /// A rotation whose client closed its connection while the rotation
    /// waited (so that the request was dropped) is made and recorded as
    /// made: before, it was made and never in the log.
    #[test]
    fn a_change_whose_client_went_away_is_still_recorded() -> Result<(), Box<dyn std::error::Error>>
    {
        let (version, records, said) =
            rotate_while_held(Duration::from_secs(30), Duration::from_millis(200))?;
        assert_eq!(version, 2, "{said}");
        let rotate = records
            .iter()
            .position(|r| r["op"] == "rotate")
            .ok_or(format!("no rotate record: {said}"))?;
        assert_eq!(records[rotate]["result"], "ok", "{said}");
        assert_eq!(records[rotate]["key"], "k", "{said}");
        // Dropped, not refused by the deadline: nothing says otherwise.
        assert!(
            records
                .iter()
                .all(|r| r["op"] != "refused" && r["op"] != "withheld"),
            "{said}"
        );
        Ok(())
    }

    /// A rotation that outlasts the request's deadline is made, recorded
    /// as made, and followed by a record of the 503 its client was
    /// answered: before, the log said only that the request was refused.
    #[test]
    fn a_change_that_outlasts_the_deadline_is_recorded_then_withheld()
    -> Result<(), Box<dyn std::error::Error>> {
        let (version, records, said) =
            rotate_while_held(Duration::from_millis(300), Duration::from_secs(10))?;
        assert!(said.contains("503"), "{said}");
        assert_eq!(version, 2, "{said}");
        assert!(records.iter().all(|r| r["op"] != "refused"), "{said}");
        let rotate = records
            .iter()
            .position(|r| r["op"] == "rotate")
            .ok_or(format!("no rotate record: {said}"))?;
        assert_eq!(records[rotate]["result"], "ok", "{said}");
        let next = records
            .get(rotate + 1)
            .ok_or(format!("no withheld record: {said}"))?;
        assert_eq!(next["op"], "withheld", "{said}");
        assert_eq!(
            next["detail"],
            "POST /v1/keys/k/rotate: answered 503 before its change ended: the change it \
             records was made, and not confirmed to the client",
            "{said}"
        );
        Ok(())
    }
}

#[cfg(test)]
mod ring_lock_tests {
    use super::held_ring::{WithKey, server_with_key, while_held};
    use super::*;
    use crate::client::KmsClient;
    use std::time::Instant;

    /// How long the key ring's locks are held: long enough that a loaded
    /// machine still answers the requests that must not wait well within it.
    const HELD: Duration = Duration::from_secs(8);

    /// While the key ring's locks are held (as a slow change or a key
    /// file read again would), anonymous `GET /v1/status` requests and
    /// requests of a key's info, each kind more than the server has
    /// workers, hold up no other request: `GET /` and the status are
    /// answered while the ring is still held. Before, each of them waited
    /// for the lock on a worker, and with both workers of a 2-worker
    /// runtime waiting, no connection was served until the lock was let go.
    #[test]
    fn requests_that_wait_for_the_key_ring_hold_up_no_other()
    -> Result<(), Box<dyn std::error::Error>> {
        // The clients' own runtime: only the server's workers can stall.
        let clients = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let WithKey {
            server,
            rt,
            client_cfg,
            dir: _dir,
        } = server_with_key(None, Some(&clients))?;
        let mut quick_cfg = client_cfg.clone();
        quick_cfg.timeout = Duration::from_secs(5);
        while_held(&server, HELD, || {
            let held_at = Instant::now();
            clients.block_on(async {
                let mut statuses = Vec::new();
                for _ in 0..3 {
                    let client = KmsClient::new(&client_cfg)?;
                    statuses.push(tokio::spawn(async move {
                        let r = client.status().await;
                        (r, held_at.elapsed())
                    }));
                }
                let mut infos = Vec::new();
                for _ in 0..2 {
                    let client = KmsClient::new(&client_cfg)?;
                    infos.push(tokio::spawn(async move { client.key_info("k").await }));
                }
                // Time for each to reach its handler (where, before, it
                // held a worker).
                tokio::time::sleep(Duration::from_millis(400)).await;
                let line = KmsClient::new(&quick_cfg)?.status_text().await;
                let line_at = held_at.elapsed();
                let line = line.map_err(|e| format!("GET / while the ring was held: {e}"))?;
                assert!(line.starts_with("KMS server holding"), "{line}");
                assert!(
                    line_at < HELD,
                    "answered after the ring was let go: {line_at:?}"
                );
                for status in statuses {
                    let (r, at) = status.await?;
                    assert_eq!(r?.named_keys, 1);
                    assert!(
                        at < HELD,
                        "status answered after the ring was let go: {at:?}"
                    );
                }
                for info in infos {
                    let info = info.await??;
                    assert_eq!((info.name.as_str(), info.latest_version), ("k", 1));
                }
                Ok::<_, Box<dyn std::error::Error>>(())
            })
        })??;
        rt.block_on(server.shutdown(Duration::from_secs(10)))?;
        Ok(())
    }
}
