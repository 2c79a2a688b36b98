//! The HTTP routes: the three seed routes, byte for byte, and `/v1/`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use seccs_core::SecretKey;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::wipe::SecretBody;
use crate::KmsError;
use crate::api::*;
use crate::audit::{
    AuditLog, Entry, MAX_LISTED_MADE_UNPROVEN, MAX_LISTED_REFUSED, Written, unix_now,
};
use crate::error::Chain;
use crate::facility::Facility;
use crate::keyfile::KeyId;
use crate::keyring::KeyRing;
use crate::lifecycle::{KeyState, Operation};

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) facility: Facility,
    pub(crate) ring: KeyRing,
    pub(crate) audit: AuditLog,
    pub(crate) token_hash: [u8; 32],
    /// The largest request body (bytes).
    pub(crate) max_body: usize,
    /// Whether `/new` and `/v1/new` need the management token.
    pub(crate) new_needs_token: bool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("facility", &self.facility)
            .finish_non_exhaustive()
    }
}

pub(crate) type Shared = Arc<AppState>;

/// What the audit log knows of a request; the request's extension, set
/// by [`audit_unrecorded`] and by [`Audit`].
#[derive(Clone, Default)]
pub(crate) struct AuditFlags(Arc<Flags>);

/// What [`AuditFlags`] shares between the middleware and the handler.
#[derive(Default)]
struct Flags {
    /// Whether a handler recorded it.
    recorded: AtomicBool,
    /// Whether it showed the management token: its refusals are then
    /// always written one by one.
    proven: AtomicBool,
    /// The newest record of something it gives out or changes (0: none),
    /// which the answer waits for in the `each` mode ([`await_durable`]).
    release: AtomicU64,
    /// Whether a change was made before that record.
    made: AtomicBool,
    /// Where its change stands, if it makes one ([`make_change`]).
    change: Mutex<ChangeState>,
}

/// Where a request's change stands between the blocking task that makes
/// and records it and the request, which may end first (its deadline; or
/// its client closed the connection, and the request was dropped).
#[derive(Default)]
enum ChangeState {
    /// No change was started.
    #[default]
    NotStarted,
    /// The change is being made; its record is not written yet.
    Running,
    /// The change and its record are done, and its outcome was handed to
    /// the request (which may still end before it answers).
    Handed,
    /// The request (`POST /v1/keys/k/rotate`) was answered `status`
    /// before the change ended: the task writes that after the change's
    /// record.
    Abandoned { request: String, status: StatusCode },
}

impl AuditFlags {
    fn change_state(&self) -> std::sync::MutexGuard<'_, ChangeState> {
        // A state is replaced whole, so a poisoned one is still consistent.
        self.0
            .change
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Says that the request, `request`, was answered `status` before its
    /// change ended, if one is being made: then its task says so after the
    /// change's record, and true is returned.
    fn abandon_change(&self, request: impl FnOnce() -> String, status: StatusCode) -> bool {
        let mut state = self.change_state();
        if matches!(*state, ChangeState::Running) {
            *state = ChangeState::Abandoned {
                request: request(),
                status,
            };
            return true;
        }
        false
    }

    /// Hands the change's outcome to the request; the request and what it
    /// was answered, if it was answered before.
    fn hand_over(&self) -> Option<(String, StatusCode)> {
        match std::mem::replace(&mut *self.change_state(), ChangeState::Handed) {
            ChangeState::Abandoned { request, status } => Some((request, status)),
            _ => None,
        }
    }
}

/// In the `each` mode, holds the answer of a request that gives out or
/// changes keys until its record is synced (see [`crate::audit`]), and
/// answers 503 instead when that sync fails, as a record that cannot be
/// written is answered. Inside the deadline, so that a disk that never
/// finishes a sync holds a request no longer than any other work.
pub(crate) async fn await_durable(
    State(s): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let flags = req.extensions().get::<AuditFlags>().cloned();
    let v1 = req.uri().path().starts_with("/v1/");
    let response = next.run(req).await;
    let Some(flags) = flags else {
        return response;
    };
    let release = flags.0.release.load(Ordering::Acquire);
    if release == 0 {
        return response;
    }
    match s.audit.durable(Written(release)).await {
        Ok(()) => response,
        // The syncer logged the failure, with its cause.
        Err(_) if v1 => ApiError(KmsError::AuditUnwritable {
            made: flags.0.made.load(Ordering::Acquire),
        })
        .into_response(),
        Err(_) => AUDIT_UNWRITABLE.into_response(),
    }
}

/// Records every refusal that no handler recorded (a body too large, a
/// malformed request, an unknown route, a timeout) with its method and
/// path, so that the log holds each refused request and not only the ones
/// a handler reached: one by one, or counted in a summary when the request
/// showed no token (see [`crate::audit`]).
pub(crate) async fn audit_unrecorded(
    State(s): State<Shared>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let flags = AuditFlags::default();
    req.extensions_mut().insert(flags.clone());
    let peer = peer_of(req.extensions());
    // Cheap to keep (the URI's bytes are shared); said only on a refusal.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let response = next.run(req).await;
    let status = response.status();
    let refused = status.is_client_error() || status.is_server_error();
    if refused && flags.abandon_change(|| format!("{method} {}", uri.path()), status) {
        // Refused before its change ended (the request's deadline): the
        // change goes on, and its task writes its record and then what
        // the client was answered. Not a refusal: the change may be made.
    } else if refused && flags.0.release.load(Ordering::Acquire) != 0 {
        // Its record says what it gives out or changes, but the answer
        // is a refusal: the deadline ended the wait for its record's sync
        // in the `each` mode, or for the handler once its change was
        // recorded, or the sync failed. The record is not
        // undone (the log is only appended to, and the record was
        // written first, so that nothing leaves without one): this line
        // says what the client was answered.
        let made = flags.0.made.load(Ordering::Acquire);
        let detail = format!(
            "{method} {}: answered {} after its record was written (its sync failed, or the \
             request's deadline passed first): {}",
            uri.path(),
            status.as_str(),
            if made {
                "the change it records was made, and not confirmed to the client"
            } else {
                "nothing it records was given out"
            }
        );
        let entry = Entry::new(peer, "withheld", "-", status.as_str()).detail(Some(&detail));
        // Already logged when it cannot be written.
        let _unrecorded = s.audit.write(&entry);
    } else if !flags.0.recorded.load(Ordering::Acquire) && refused {
        let request = format!("{method} {}", uri.path());
        let entry = Entry::new(peer, "refused", "-", status.as_str()).detail(Some(&request));
        // A refusal is answered whether or not its record is written (the
        // failure is in the server's own log).
        if flags.0.proven.load(Ordering::Acquire) {
            let _unrecorded = s.audit.write(&entry);
        } else {
            s.audit.write_limited(&entry);
        }
    }
    response
}

fn peer_of(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer)
}

/// The audit log as one request writes to it: each record names the
/// client's address (from the connection; the server is served with its
/// connect info).
#[derive(Clone)]
pub(crate) struct Audit {
    state: Shared,
    peer: Option<SocketAddr>,
    /// The request's method and URI, said by a refused token's record.
    request: (axum::http::Method, axum::http::Uri),
    flags: AuditFlags,
}

impl Audit {
    /// A record of this request's client.
    fn entry<'a>(&self, op: &'a str, key: &'a str, result: &'a str) -> Entry<'a> {
        Entry::new(self.peer, op, key, result)
    }

    /// Writes `entry` one by one, whatever the bucket of refusals holds.
    fn write(&self, entry: &Entry<'_>) -> std::io::Result<()> {
        self.flags.0.recorded.store(true, Ordering::Release);
        self.state.audit.write(entry)
    }

    /// Says that the request showed the management token.
    fn prove(&self) {
        self.flags.0.proven.store(true, Ordering::Release);
    }

    /// Records an answer that gives something out (a key, a plaintext, a
    /// ciphertext, the names of keys) for this request's client (see
    /// [`AuditLog`]). Without its record the answer is not given: the
    /// error makes it a 503.
    fn record(&self, op: &str, key: &str, result: &str) -> Result<(), KmsError> {
        self.record_entry(&self.entry(op, key, result))
    }

    /// [`Self::record`] of any entry (a batch's).
    fn record_entry(&self, entry: &Entry<'_>) -> Result<(), KmsError> {
        self.release(entry, false)
            .map_err(|_| KmsError::AuditUnwritable { made: false })
    }

    /// Writes the record of an answer that gives out or changes keys
    /// (`made`: a change made before it), which in the `each` mode waits
    /// for its sync before it is given ([`await_durable`]).
    ///
    /// The record of a change already made is written even while the
    /// log's last sync has failed (the change cannot be taken back, and
    /// must not go unrecorded); the answer is then refused all the same.
    fn release(&self, entry: &Entry<'_>, made: bool) -> std::io::Result<()> {
        self.flags.0.recorded.store(true, Ordering::Release);
        if !made {
            let Written(n) = self.state.audit.write_release(entry)?;
            self.flags.0.release.fetch_max(n, Ordering::AcqRel);
            return Ok(());
        }
        let (Written(n), failing) = self.state.audit.write_made(entry)?;
        self.flags.0.made.store(true, Ordering::Release);
        self.flags.0.release.fetch_max(n, Ordering::AcqRel);
        if failing {
            tracing::error!(
                op = entry.op,
                // Debug: escaped, as the record escapes it.
                key = ?entry.key,
                record = n,
                "a change was made and its record written while the audit log's last sync has \
                 failed: the record may not reach the disk; the request is answered 503"
            );
            return Err(std::io::Error::other(crate::audit::Undurable::Failing));
        }
        Ok(())
    }

    /// Records a refusal. It is answered whether or not its record is
    /// written: nothing leaves the server, and the failed write is in the
    /// server's own log. Unless the request showed the management token,
    /// the refusal may be counted for a summary instead (see
    /// [`crate::audit`]).
    fn record_refusal(&self, op: &str, key: &str, result: &str) {
        self.refuse(&self.entry(op, key, result));
    }

    /// [`Self::record_refusal`] of any entry.
    fn refuse(&self, entry: &Entry<'_>) {
        if self.flags.0.proven.load(Ordering::Acquire) {
            // Already logged by `AuditLog::write`.
            let _unrecorded = self.write(entry);
        } else {
            self.flags.0.recorded.store(true, Ordering::Release);
            self.state.audit.write_limited(entry);
        }
    }

    /// Records the outcome `r` of an operation, with `detail` (what a
    /// change sets): a refusal as [`Self::record_refusal`] does, a success
    /// as [`Self::record`] does. `made` says whether the success changed
    /// the server before its record (a management change), which the error
    /// then says.
    fn record_outcome<T>(
        &self,
        op: &str,
        key: &str,
        detail: Option<&str>,
        r: &Result<T, KmsError>,
        made: bool,
    ) -> Result<(), KmsError> {
        match r {
            Err(e) => {
                self.refuse(&self.entry(op, key, code(e).1).detail(detail));
                Ok(())
            }
            Ok(_) => self
                .release(&self.entry(op, key, "ok").detail(detail), made)
                .map_err(|_| KmsError::AuditUnwritable { made }),
        }
    }
}

/// The outcomes of a batch of KEKs, recorded as one record per outcome
/// rather than one per item (see [`crate::audit`]): a batch as long as
/// the server takes writes a few lines, and the ids of KEKs given out or
/// made are all listed.
#[derive(Default)]
struct Tally {
    /// By result (`ok` or the error's kind): the count and the ids.
    outcomes: std::collections::BTreeMap<&'static str, (u64, Vec<String>)>,
}

impl Tally {
    /// Counts an item whose result is `result`, of the KEK whose id is
    /// `id` (none for a malformed one).
    fn add(&mut self, result: &'static str, id: Option<String>) {
        let (count, ids) = self.outcomes.entry(result).or_default();
        *count += 1;
        ids.extend(id);
    }

    /// Records the batch of `op` for `audit`'s client: what it gave out
    /// (or made) as [`Audit::record`] does, its refusals as
    /// [`Audit::record_refusal`] does, the refusals' ids cut to
    /// [`MAX_LISTED_REFUSED`]. With `Made::Unproven` (keys made for a
    /// client that showed no credential), the ids of the keys made are cut
    /// to [`MAX_LISTED_MADE_UNPROVEN`], with the SHA-256 of them all.
    fn record(self, audit: &Audit, op: &str, made: Made) -> Result<(), KmsError> {
        let mut recorded = Ok(());
        for (result, (count, mut ids)) in self.outcomes {
            ids.sort_unstable();
            ids.dedup();
            let most = match (result, made) {
                ("ok", Made::Unproven) => Some(MAX_LISTED_MADE_UNPROVEN),
                ("ok", Made::Listed) => None,
                _ => Some(MAX_LISTED_REFUSED),
            };
            let mut digest = None;
            if let Some(most) = most.filter(|most| ids.len() > *most) {
                if result == "ok" {
                    digest = Some(ids_sha256(&ids));
                }
                ids.truncate(most);
                ids.push("…".to_owned());
            }
            let (key, listed) = match ids.as_slice() {
                [one] => (one.as_str(), &[][..]),
                many => ("-", many),
            };
            let entry = audit
                .entry(op, key, result)
                .batch(count, listed)
                .keys_sha256(digest.as_deref());
            if result == "ok" {
                // The other outcomes are still recorded; the batch is
                // answered 503.
                if let Err(e) = audit.record_entry(&entry) {
                    recorded = Err(e);
                }
            } else {
                audit.refuse(&entry);
            }
        }
        recorded
    }
}

/// How a batch's record lists the ids of what it gave out or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    /// Every one: the client showed the management token, or presented
    /// each KEK (a record about as long as the request).
    Listed,
    /// At most [`MAX_LISTED_MADE_UNPROVEN`], with the SHA-256 of them all:
    /// keys made for a client that showed no credential, whose short
    /// request would otherwise write a record hundreds of times longer.
    Unproven,
}

/// The SHA-256, lowercase hex, of `ids` (sorted), each followed by a line
/// feed: [`crate::audit::AuditEvent::keys_sha256`].
fn ids_sha256(ids: &[String]) -> String {
    let mut hash = Sha256::new();
    for id in ids {
        hash.update(id.as_bytes());
        hash.update(b"\n");
    }
    hex::encode(hash.finalize())
}

impl FromRequestParts<Shared> for Audit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        Ok(Audit {
            state: Arc::clone(state),
            peer: peer_of(&parts.extensions),
            request: (parts.method.clone(), parts.uri.clone()),
            flags: parts
                .extensions
                .get::<AuditFlags>()
                .cloned()
                .unwrap_or_default(),
        })
    }
}

const OCTETS: &str = "application/octet-stream";

/// An answer's body that holds keys or plaintexts: wiped once the answer
/// is done with it.
fn secret_body(bytes: Vec<u8>) -> Bytes {
    Bytes::from_owner(Zeroizing::new(bytes))
}

/// `value`, which holds keys or plaintexts, as a JSON answer: written
/// into a buffer of its exact length (one that grew would leave copies in
/// the memory it freed), wiped once the answer is done with it.
fn secret_json<T: serde::Serialize>(value: &T) -> Result<Response, ApiError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_err(KmsError::Json)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *buf, value).map_err(KmsError::Json)?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from_owner(buf),
    )
        .into_response())
}

/// The seed routes' plain-text answer when a key would leave without its
/// audit record.
const AUDIT_UNWRITABLE: (StatusCode, &str) = (
    StatusCode::SERVICE_UNAVAILABLE,
    "Audit log cannot be written",
);

/// What a malformed KEK is said to be: the forms a KEK takes.
pub const KEK_FORMS: &str = "KEK: 32 bytes or 64 hex digits";
/// What a batch whose count is out of bounds is said to be.
pub(crate) const BAD_COUNT: &str = "count: from 1 to 1024 (the most in one batch)";
/// What a batch of too many items is said to be.
pub(crate) const TOO_MANY_ITEMS: &str = "batch: at most 1024 items in one request";

/// Parses a KEK sent by a client: 32 raw bytes, or 64 hex digits with
/// optional surrounding whitespace (a KEK file edited by hand).
pub fn parse_kek(body: &[u8]) -> Result<SecretKey, KmsError> {
    if body.len() == 32 {
        return Ok(SecretKey::from_slice(body)?);
    }
    let text = body.trim_ascii();
    if text.len() == 64 {
        // Decoded into its place: no copy of the KEK is left behind.
        return SecretKey::try_filled(|raw| {
            hex::decode_to_slice(text, &mut raw[..]).map_err(|_| KmsError::Malformed(KEK_FORMS))
        });
    }
    Err(KmsError::Malformed(KEK_FORMS))
}

/// The error code of a full disk (answered 507), which a client turns
/// into [`KmsError::ServerStorageFull`].
pub(crate) const STORAGE_FULL: &str = "storage-full";

fn code(e: &KmsError) -> (StatusCode, &'static str) {
    match e {
        KmsError::NotFound => (StatusCode::NOT_FOUND, "not-found"),
        KmsError::Tampered => (StatusCode::UNPROCESSABLE_ENTITY, "tampered"),
        // A version this build does not read is not a malformed input: the
        // client says which version it is.
        KmsError::UnsupportedVersion { .. } => (StatusCode::BAD_REQUEST, "unsupported-version"),
        KmsError::UnknownFormat(_) | KmsError::Malformed(_) | KmsError::Json(_) => {
            (StatusCode::BAD_REQUEST, "malformed")
        }
        KmsError::StateForbids { .. } => (StatusCode::CONFLICT, "state"),
        KmsError::InvalidTransition { .. } | KmsError::InvalidInitialState(_) => {
            (StatusCode::CONFLICT, "transition")
        }
        KmsError::VersionRefused { .. } => (StatusCode::CONFLICT, "version"),
        KmsError::AlreadyExists => (StatusCode::CONFLICT, "exists"),
        KmsError::KeyLimit { .. } => (StatusCode::CONFLICT, "limit"),
        KmsError::InvalidName => (StatusCode::BAD_REQUEST, "name"),
        KmsError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
        KmsError::PlaintextTooLarge { .. } | KmsError::TooLarge(_) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too-large")
        }
        KmsError::CorruptKeyFile { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt-key"),
        KmsError::AuditUnwritable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "audit"),
        e if e.is_storage_full() => (StatusCode::INSUFFICIENT_STORAGE, STORAGE_FULL),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// An error answered as JSON.
pub(crate) struct ApiError(KmsError);

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = code(&self.0);
        if status == StatusCode::INTERNAL_SERVER_ERROR || status == StatusCode::INSUFFICIENT_STORAGE
        {
            tracing::error!(error = %Chain(&self.0), "request failed");
        }
        let message = message(&self.0);
        (
            status,
            Json(ErrorBody {
                error: code.to_owned(),
                message,
            }),
        )
            .into_response()
    }
}

/// What an error answer says: the error's text, except for internal errors
/// (whose details stay in the server's log).
fn message(e: &KmsError) -> String {
    match code(e) {
        (_, "internal") => "internal error".to_owned(),
        (_, STORAGE_FULL) => "the key service's storage is full".to_owned(),
        _ => e.to_string(),
    }
}

/// What a `withheld` record says of a change made but answered before it
/// ended: a management change.
const CHANGE_MADE: &str = "the change it records was made, and not confirmed to the client";
/// The same of keys made for `/new` and `/v1/new`.
const KEYS_MADE: &str = "the keys it records were made, and not given out";

/// Makes a change (`change`) and writes its record (`record`, of its
/// outcome) on a blocking thread whose work does not hang on the request:
/// if the request ends first (its deadline; or its client closed the
/// connection, and the request was dropped), the change is still made and
/// its record still says how it ended, followed, when the deadline's
/// answer went out first, by a `withheld` record saying what the client
/// was answered and `made` (what was made) if it succeeded. Before, the
/// change was made and its record never written, or the request logged
/// as refused. Its outcome is the record's error if there is one, else
/// the change's.
async fn make_change<T: Send + 'static>(
    audit: &Audit,
    made: &'static str,
    change: impl FnOnce() -> Result<T, KmsError> + Send + 'static,
    record: impl FnOnce(&Audit, &Result<T, KmsError>) -> Result<(), KmsError> + Send + 'static,
) -> Result<T, KmsError> {
    // Its record could not be released while the log's last sync has
    // failed: the change is refused before it is made, rather than made
    // and answered 503. One made as the sync fails still has its record
    // written ([`Audit::release`]).
    if audit.state.audit.sync_status().failing {
        return Err(KmsError::AuditUnwritable { made: false });
    }
    let audit = audit.clone();
    *audit.flags.change_state() = ChangeState::Running;
    off_worker(move || {
        let r = change();
        let recorded = record(&audit, &r);
        if let Some((request, status)) = audit.flags.hand_over()
            && r.is_ok()
        {
            let status = status.as_str();
            let detail = format!("{request}: answered {status} before its change ended: {made}");
            let entry = audit.entry("withheld", "-", status).detail(Some(&detail));
            // Already logged when it cannot be written.
            let _unrecorded = audit.write(&entry);
        }
        recorded.and(r)
    })
    .await
}

/// Runs `f`, which works on the key ring (and may wait for its lock, or
/// read a key file), on a blocking thread: a tokio worker never waits for
/// it, so that other connections, timers and deadlines go on meanwhile.
async fn off_worker<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KmsError> + Send + 'static,
) -> Result<T, KmsError> {
    tokio::task::spawn_blocking(|| {
        let r = f();
        // What `f` did with keys stays on this pooled thread's stack
        // otherwise; `r` is in this frame, above the wiped area.
        super::wipe::scrub_stack();
        r
    })
    .await
    .map_err(|e| KmsError::Io(std::io::Error::other(e.to_string())))?
}

// ---- seed routes -------------------------------------------------------

/// `GET /`: `KMS server holding N keys`, as the seed.
pub(crate) async fn seed_status(State(s): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain")],
        format!("KMS server holding {} keys", s.facility.len()),
    )
        .into_response()
}

/// `POST /new`: a new KEK, raw bytes. With `--new-needs-token`, only for
/// the management token (`401 Unauthorized` without it).
pub(crate) async fn seed_new(
    State(s): State<Shared>,
    audit: Audit,
    headers: HeaderMap,
) -> Response {
    if s.new_needs_token && authorize(&s, &audit, &headers).is_err() {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "Unauthorized",
        )
            .into_response();
    }
    let f = s.facility.clone();
    let r = make_change(
        &audit,
        KEYS_MADE,
        // Boxed: a key handed back by value would be copied through the
        // blocking pool's frames above the area that is wiped.
        move || f.generate().map(Box::new),
        |audit, r| match r {
            Ok(kek) => audit.record("new", &KeyId::of(kek).to_hex(), "ok"),
            Err(e) => {
                audit.record_refusal("new", "-", code(e).1);
                Ok(())
            }
        },
    )
    .await;
    match r {
        Ok(kek) => (
            [(header::CONTENT_TYPE, OCTETS)],
            secret_body(kek.expose_secret().to_vec()),
        )
            .into_response(),
        Err(e) => seed_new_failed(&e),
    }
}

/// The seed's answer to a `/new` that failed with `e`.
fn seed_new_failed(e: &KmsError) -> Response {
    match e {
        KmsError::AuditUnwritable { .. } => AUDIT_UNWRITABLE.into_response(),
        e if e.is_storage_full() => {
            tracing::error!(error = %Chain(e), "key generation failed: the disk is full");
            (StatusCode::INSUFFICIENT_STORAGE, "Key storage full").into_response()
        }
        e => {
            tracing::error!(error = %Chain(e), "key generation failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Key generation failed").into_response()
        }
    }
}

/// `POST /key`: the DEK of the KEK in the body; `404 Key not found`.
pub(crate) async fn seed_key(State(s): State<Shared>, audit: Audit, body: SecretBody) -> Response {
    let kek = match parse_kek(&body) {
        Ok(k) => k,
        Err(_) => {
            audit.record_refusal("key", "-", "malformed");
            return (StatusCode::BAD_REQUEST, "Malformed key").into_response();
        }
    };
    let id = KeyId::of(&kek).to_hex();
    let r = s.facility.dek(&kek);
    if audit.record_outcome("key", &id, None, &r, false).is_err() {
        return AUDIT_UNWRITABLE.into_response();
    }
    match r {
        Ok(dek) => (
            [(header::CONTENT_TYPE, OCTETS)],
            secret_body(dek.expose_secret().to_vec()),
        )
            .into_response(),
        Err(KmsError::NotFound) => (StatusCode::NOT_FOUND, "Key not found").into_response(),
        Err(KmsError::Tampered) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Key file failed authentication",
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %Chain(&e), "key lookup failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
        }
    }
}

// ---- /v1/ --------------------------------------------------------------

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError(KmsError::Json(e)))
}

fn unhex(text: &str) -> Result<Vec<u8>, KmsError> {
    hex::decode(text).map_err(|_| KmsError::Malformed("hex"))
}

fn item(r: Result<(String, Option<String>), KmsError>) -> Item {
    match r {
        Ok((value, wrapped)) => Item {
            value: Some(value),
            wrapped,
            error: None,
            message: None,
        },
        Err(e) => Item {
            value: None,
            wrapped: None,
            error: Some(code(&e).1.to_owned()),
            message: Some(message(&e)),
        },
    }
}

/// `GET /v1/status`. Takes no lock that a change holds: answered at once
/// whatever the key ring is doing.
pub(crate) async fn v1_status(State(s): State<Shared>) -> Json<StatusResponse> {
    Json(StatusResponse {
        keys: s.facility.len(),
        named_keys: s.ring.len(),
    })
}

/// `POST /v1/new`: a batch of KEKs (the management token with
/// `--new-needs-token`).
pub(crate) async fn v1_new(
    State(s): State<Shared>,
    audit: Audit,
    headers: HeaderMap,
    body: SecretBody,
) -> Result<Response, ApiError> {
    if s.new_needs_token {
        authorize(&s, &audit, &headers)?;
    }
    let req: NewRequest = parse_json(&body)?;
    if req.count == 0 || req.count > MAX_BATCH {
        return Err(KmsError::Malformed(BAD_COUNT).into());
    }
    let f = s.facility.clone();
    // Without the management token, a request of a few bytes must not
    // write a record of every id it made.
    let made = if s.new_needs_token {
        Made::Listed
    } else {
        Made::Unproven
    };
    let keks = make_change(
        &audit,
        KEYS_MADE,
        move || f.generate_many(req.count),
        move |audit, r| {
            let keks = match r {
                Ok(keks) => keks,
                Err(e) => {
                    audit.record_refusal("new", "-", code(e).1);
                    return Ok(());
                }
            };
            let mut tally = Tally::default();
            for k in keks {
                tally.add("ok", Some(KeyId::of(k).to_hex()));
            }
            tally.record(audit, "new", made)
        },
    )
    .await?;
    let answer = Zeroizing::new(NewResponse {
        keks: keks
            .iter()
            .map(|k| hex::encode(k.expose_secret()))
            .collect(),
    });
    secret_json(&*answer)
}

/// `POST /v1/key`: the DEKs of a batch of KEKs.
pub(crate) async fn v1_key(
    State(s): State<Shared>,
    audit: Audit,
    body: SecretBody,
) -> Result<Response, ApiError> {
    let req: Zeroizing<KeyRequest> = Zeroizing::new(parse_json(&body)?);
    if req.keks.len() > MAX_BATCH {
        return Err(KmsError::Malformed(TOO_MANY_ITEMS).into());
    }
    let mut tally = Tally::default();
    let results = req
        .keks
        .iter()
        .map(|k| {
            let (id, r) = match parse_kek(k.as_bytes()) {
                Ok(kek) => (Some(KeyId::of(&kek).to_hex()), s.facility.dek(&kek)),
                Err(e) => (None, Err(e)),
            };
            tally.add(r.as_ref().map_or_else(|e| code(e).1, |_| "ok"), id);
            item(r.map(|dek| (hex::encode(dek.expose_secret()), None)))
        })
        .collect();
    let answer = Zeroizing::new(BatchResponse { results });
    // The batch is answered 503 if what it gives out is not recorded.
    tally.record(&audit, "key", Made::Listed)?;
    secret_json(&*answer)
}

/// The token of an `Authorization` header, if it is of the bearer scheme
/// (whose name is case-insensitive, RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Checks the management bearer token (compared in constant time, by
/// its SHA-256).
pub(crate) fn authorize(s: &AppState, audit: &Audit, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    let h: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    if bool::from(h.ct_eq(&s.token_hash)) && !given.is_empty() {
        audit.prove();
        Ok(())
    } else {
        let (method, uri) = &audit.request;
        let request = format!("{method} {}", uri.path());
        audit.refuse(
            &audit
                .entry("auth", "-", "unauthorized")
                .detail(Some(&request)),
        );
        Err(KmsError::Unauthorized.into())
    }
}

/// `GET /v1/keys`.
pub(crate) async fn v1_list(
    State(s): State<Shared>,
    audit: Audit,
    headers: HeaderMap,
) -> Result<Json<ListResponse>, ApiError> {
    authorize(&s, &audit, &headers)?;
    audit.record("list", "-", "ok")?;
    let names = off_worker(move || Ok(s.ring.names())).await?;
    Ok(Json(ListResponse { names }))
}

/// `POST /v1/keys`: create a named key.
pub(crate) async fn v1_create(
    State(s): State<Shared>,
    audit: Audit,
    headers: HeaderMap,
    body: SecretBody,
) -> Result<Json<crate::lifecycle::KeyInfo>, ApiError> {
    authorize(&s, &audit, &headers)?;
    let req: CreateRequest = parse_json(&body)?;
    let state = req.state.unwrap_or(KeyState::Active);
    let name = req.name;
    let info = make_change(
        &audit,
        CHANGE_MADE,
        {
            let name = name.clone();
            move || s.ring.create(&name, state, unix_now())
        },
        move |audit, r| audit.record_outcome("create", &name, Some(&state.to_string()), r, true),
    )
    .await?;
    Ok(Json(info))
}

/// `GET /v1/keys/{name}`.
pub(crate) async fn v1_info(
    State(s): State<Shared>,
    audit: Audit,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<crate::lifecycle::KeyInfo>, ApiError> {
    authorize(&s, &audit, &headers)?;
    let r = {
        let name = name.clone();
        off_worker(move || s.ring.with_key(&name, |k| Ok(k.info().clone()))).await
    };
    audit.record_outcome("info", &name, None, &r, false)?;
    Ok(Json(r?))
}

/// What a management change does.
pub(crate) enum Change {
    Rotate,
    State(StateRequest),
    Config(ConfigRequest),
}

async fn change(
    s: Shared,
    audit: Audit,
    name: String,
    change: Change,
) -> Result<Json<crate::lifecycle::KeyInfo>, ApiError> {
    let (op, detail) = match &change {
        Change::Rotate => ("rotate", None),
        Change::State(req) => ("state", Some(req.state.to_string())),
        Change::Config(req) => (
            "config",
            Some(format!("min_decrypt_version={}", req.min_decrypt_version)),
        ),
    };
    let n = name.clone();
    let info = make_change(
        &audit,
        CHANGE_MADE,
        move || {
            let r = match change {
                Change::Rotate => s.ring.update(&n, |k| k.rotate(unix_now()).map(|_| ())),
                Change::State(req) => s.ring.update(&n, |k| k.transition(req.state, unix_now())),
                Change::Config(req) => s
                    .ring
                    .update(&n, |k| k.set_min_decrypt_version(req.min_decrypt_version)),
            };
            r.map(|((), info)| info)
        },
        move |audit, r| audit.record_outcome(op, &name, detail.as_deref(), r, true),
    )
    .await?;
    Ok(Json(info))
}

/// `POST /v1/keys/{name}/rotate`.
pub(crate) async fn v1_rotate(
    State(s): State<Shared>,
    audit: Audit,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<crate::lifecycle::KeyInfo>, ApiError> {
    authorize(&s, &audit, &headers)?;
    change(s, audit, name, Change::Rotate).await
}

/// `POST /v1/keys/{name}/state`.
pub(crate) async fn v1_state(
    State(s): State<Shared>,
    audit: Audit,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: SecretBody,
) -> Result<Json<crate::lifecycle::KeyInfo>, ApiError> {
    authorize(&s, &audit, &headers)?;
    change(s, audit, name, Change::State(parse_json(&body)?)).await
}

/// `POST /v1/keys/{name}/config`.
pub(crate) async fn v1_config(
    State(s): State<Shared>,
    audit: Audit,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: SecretBody,
) -> Result<Json<crate::lifecycle::KeyInfo>, ApiError> {
    authorize(&s, &audit, &headers)?;
    change(s, audit, name, Change::Config(parse_json(&body)?)).await
}

/// `POST /v1/keys/{name}/{encrypt|decrypt|rewrap}`.
pub(crate) async fn v1_data(
    State(s): State<Shared>,
    audit: Audit,
    headers: HeaderMap,
    Path((name, op)): Path<(String, String)>,
    body: SecretBody,
) -> Result<Response, ApiError> {
    authorize(&s, &audit, &headers)?;
    let op = match op.as_str() {
        "encrypt" => Operation::Encrypt,
        "decrypt" => Operation::Decrypt,
        "rewrap" => Operation::Rewrap,
        "datakey" => return datakey(s, &audit, name, &body).await,
        _ => return Err(KmsError::NotFound.into()),
    };
    // Its data may be plaintexts: wiped once done with.
    let req: Zeroizing<DataRequest> = Zeroizing::new(parse_json(&body)?);
    if req.items.len() > MAX_BATCH {
        return Err(KmsError::Malformed(TOO_MANY_ITEMS).into());
    }
    if matches!(op, Operation::Encrypt) {
        check_encrypt_sizes(&req, s.max_body)?;
    }
    let state = Arc::clone(&s);
    let key = name.clone();
    let r = off_worker(move || {
        state.ring.with_key(&key, |k| {
            let permit = k.permit(op)?;
            Ok(req
                .items
                .iter()
                .map(|it| {
                    let r = unhex(&it.data).and_then(|data| {
                        let data = Zeroizing::new(data);
                        let ctx = unhex(&it.context)?;
                        match op {
                            Operation::Encrypt => {
                                k.encrypt(&permit, &data, &ctx).map(Zeroizing::new)
                            }
                            Operation::Decrypt => k.decrypt(&permit, &data, &ctx),
                            _ => k.rewrap(&permit, &data, &ctx).map(Zeroizing::new),
                        }
                    });
                    item(r.map(|v| (hex::encode(&*v), None)))
                })
                .collect::<Vec<_>>())
        })
    })
    .await
    .map(|results| Zeroizing::new(BatchResponse { results }));
    let summary = match &r {
        Ok(answer) => batch_summary(&answer.results),
        Err(e) => code(e).1,
    };
    match &r {
        Ok(_) => audit.record(&op.to_string(), &name, summary)?,
        Err(_) => audit.record_refusal(&op.to_string(), &name, summary),
    }
    secret_json(&*r?)
}

/// What the audit log says of a batch: `ok` when every item succeeded
/// (or there was none), `failed` when every item failed, else `partial`.
fn batch_summary(items: &[Item]) -> &'static str {
    let failed = items.iter().filter(|i| i.error.is_some()).count();
    match failed {
        0 => "ok",
        n if n == items.len() => "failed",
        _ => "partial",
    }
}

/// Refuses an encrypt batch with a plaintext above
/// [`MAX_ITEM_PLAINTEXT`], or whose ciphertexts would not fit one decrypt
/// (or rewrap) request under `max_body`: that request is this one as a
/// client writes it (every item naming its context, which an encrypt
/// request may leave out), with each item's hex data longer by twice the
/// ciphertext overhead.
fn check_encrypt_sizes(req: &DataRequest, max_body: usize) -> Result<(), KmsError> {
    for it in &req.items {
        let len = it.data.len() / 2;
        if len > MAX_ITEM_PLAINTEXT {
            return Err(KmsError::PlaintextTooLarge {
                len,
                max: MAX_ITEM_PLAINTEXT,
            });
        }
    }
    let decrypt_len = req
        .items
        .len()
        .saturating_mul(2 * crate::ciphertext::OVERHEAD)
        .saturating_add(serde_json::to_vec(req)?.len());
    if decrypt_len > max_body {
        return Err(KmsError::TooLarge(format!(
            "the ciphertexts would make a {decrypt_len}-byte decrypt request, above this server's {max_body}-byte limit: send fewer or smaller items"
        )));
    }
    Ok(())
}

/// Refuses a data key whose wrapped form would not fit one decrypt (or
/// rewrap) request under `max_body`: that request is one item whose data
/// is the hex of the wrapped key (a sealed 32-byte key), and whose
/// context is `context_hex`. Without this, a long context would give a
/// wrapped key that this server can never unwrap.
fn check_datakey_size(context_hex: &str, max_body: usize) -> Result<(), KmsError> {
    let empty = DataRequest {
        items: vec![DataItem {
            data: String::new(),
            context: String::new(),
        }],
    };
    let frame = serde_json::to_vec(&empty)?.len();
    let decrypt_len = frame
        .saturating_add(2 * (seccs_core::KEY_LEN + crate::ciphertext::OVERHEAD))
        .saturating_add(context_hex.len());
    if decrypt_len > max_body {
        return Err(KmsError::TooLarge(format!(
            "the wrapped key would make a {decrypt_len}-byte decrypt request, above this server's {max_body}-byte limit: use a shorter context"
        )));
    }
    Ok(())
}

async fn datakey(
    s: Shared,
    audit: &Audit,
    name: String,
    body: &[u8],
) -> Result<Response, ApiError> {
    let req: DataKeyRequest = parse_json(body)?;
    if req.count == 0 || req.count > MAX_BATCH {
        return Err(KmsError::Malformed(BAD_COUNT).into());
    }
    let ctx = unhex(&req.context)?;
    check_datakey_size(&req.context, s.max_body)?;
    let key = name.clone();
    let r = off_worker(move || {
        s.ring.with_key(&key, |k| {
            let permit = k.permit(Operation::DataKey)?;
            (0..req.count)
                .map(|_| {
                    let (dk, wrapped) = k.datakey(&permit, &ctx)?;
                    Ok(item(Ok((
                        hex::encode(dk.expose_secret()),
                        Some(hex::encode(wrapped)),
                    ))))
                })
                .collect::<Result<Vec<_>, KmsError>>()
        })
    })
    .await
    .map(|results| Zeroizing::new(BatchResponse { results }));
    audit.record_outcome("datakey", &name, None, &r, false)?;
    secret_json(&*r?)
}

#[cfg(test)]
mod tests {
    /// A full disk (or quota) is answered 507, on the seed's `/new` and as
    /// a `/v1/` JSON error, which clients turn into "storage is full":
    /// it was a 500 "Key generation failed", the same as any fault.
    #[test]
    fn a_full_disk_is_answered_insufficient_storage() -> Result<(), Box<dyn std::error::Error>> {
        use super::*;
        let full = || KmsError::Io(std::io::Error::from_raw_os_error(28));
        assert_eq!(
            seed_new_failed(&full()).status(),
            StatusCode::INSUFFICIENT_STORAGE
        );
        let other = KmsError::Io(std::io::Error::from_raw_os_error(5));
        assert_eq!(
            seed_new_failed(&other).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            code(&full()),
            (StatusCode::INSUFFICIENT_STORAGE, STORAGE_FULL)
        );
        assert_eq!(message(&full()), "the key service's storage is full");
        assert_eq!(
            ApiError(full()).into_response().status(),
            StatusCode::INSUFFICIENT_STORAGE
        );
        Ok(())
    }

    use super::*;
    use crate::audit::AuditSync;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR  t0k "] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value}");
        }
        for value in ["Basic t0k", "Bearert0k", "t0k", ""] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }

    #[test]
    fn batch_limits_are_stated_in_their_messages() {
        let limit = MAX_BATCH.to_string();
        for text in [BAD_COUNT, TOO_MANY_ITEMS] {
            assert!(text.contains(&limit), "{text}");
        }
        let short = parse_kek(b"zz").err().map(|e| e.to_string());
        let bad_hex = parse_kek(&[b'g'; 64]).err().map(|e| e.to_string());
        let long = Some("malformed KEK: 32 bytes or 64 hex digits".to_owned());
        assert_eq!(short, long);
        assert_eq!(bad_hex, long);
    }

    #[test]
    fn a_batch_whose_every_item_failed_is_audited_as_failed() {
        let ok = item(Ok(("00".to_owned(), None)));
        let bad = item(Err(KmsError::Tampered));
        assert_eq!(batch_summary(&[]), "ok");
        assert_eq!(batch_summary(&[ok.clone(), ok.clone()]), "ok");
        assert_eq!(batch_summary(&[ok, bad.clone()]), "partial");
        assert_eq!(batch_summary(&[bad.clone(), bad]), "failed");
    }

    /// A server whose audit log fails after it started (a full disk;
    /// here `/dev/full`, which fails every write) gives out no key: every
    /// request that would is answered 503, a refusal is still answered as
    /// one, and a change made but not recorded says so.
    #[test]
    fn nothing_is_given_out_without_its_audit_record() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let token = "a-management-token-0123";
        let state: Shared = Arc::new(AppState {
            facility: Facility::open(dir.path().join("keys"))?,
            ring: KeyRing::open(dir.path())?,
            audit: AuditLog::open(std::path::Path::new("/dev/full"), AuditSync::Interval)?,
            token_hash: Sha256::digest(token.as_bytes()).into(),
            max_body: 64 * 1024,
            new_needs_token: false,
        });
        let audit = || Audit {
            state: Arc::clone(&state),
            peer: None,
            request: Default::default(),
            flags: AuditFlags::default(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse()?);
        let kek = state.facility.generate()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let r = seed_new(State(Arc::clone(&state)), audit(), HeaderMap::new()).await;
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body = SecretBody::new(Bytes::copy_from_slice(kek.expose_secret()));
            let r = seed_key(State(Arc::clone(&state)), audit(), body).await;
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            // A KEK the server does not hold is refused as before.
            let r = seed_key(
                State(Arc::clone(&state)),
                audit(),
                SecretBody::new(Bytes::from(vec![7u8; 32])),
            )
            .await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
            let batch = format!(r#"{{"keks":["{}"]}}"#, hex::encode(kek.expose_secret()));
            let r = v1_key(
                State(Arc::clone(&state)),
                audit(),
                SecretBody::new(Bytes::from(batch)),
            )
            .await;
            let r = r
                .map(IntoResponse::into_response)
                .unwrap_or_else(IntoResponse::into_response);
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            let r = v1_new(
                State(Arc::clone(&state)),
                audit(),
                HeaderMap::new(),
                SecretBody::new(Bytes::from(r#"{"count":1}"#)),
            )
            .await;
            let r = r
                .map(IntoResponse::into_response)
                .unwrap_or_else(IntoResponse::into_response);
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            // A wrong token is still a 401.
            let r = v1_list(State(Arc::clone(&state)), audit(), HeaderMap::new()).await;
            let r = r
                .map(IntoResponse::into_response)
                .unwrap_or_else(IntoResponse::into_response);
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            let create = SecretBody::new(Bytes::from(r#"{"name":"k"}"#));
            let r = v1_create(State(Arc::clone(&state)), audit(), headers.clone(), create).await;
            let Err(ApiError(e)) = r else {
                return Err("a change not recorded was answered as done".into());
            };
            assert!(matches!(e, KmsError::AuditUnwritable { made: true }), "{e}");
            assert!(
                e.to_string()
                    .contains("the change was made, but its record is not in the log"),
                "{e}"
            );
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        // The change was made: the key exists.
        assert_eq!(state.ring.len(), 1);
        Ok(())
    }

    /// While the audit log's last sync has failed, a management change is
    /// refused before it is made; one made as the sync failed still has
    /// its record written, and is answered 503.
    #[test]
    fn a_change_is_not_made_unrecorded_while_the_audit_log_is_failing()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let token = "a-management-token-0123";
        let failing: crate::audit::SyncFn =
            Arc::new(|_: &std::fs::File| Err(std::io::Error::from_raw_os_error(5)));
        let log = dir.path().join("audit.log");
        let state: Shared = Arc::new(AppState {
            facility: Facility::open(dir.path().join("keys"))?,
            ring: KeyRing::open(dir.path())?,
            audit: AuditLog::open_with(
                &log,
                AuditSync::Interval,
                std::time::Duration::from_millis(20),
                failing,
            )?,
            token_hash: Sha256::digest(token.as_bytes()).into(),
            max_body: 64 * 1024,
            new_needs_token: false,
        });
        state.ring.create("k", KeyState::Active, 1)?;
        state.audit.record(None, "start", "-", "ok")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut status = state.audit.durability_status();
        rt.block_on(status.wait_for(|s| s.failing))?;
        let audit = || Audit {
            state: Arc::clone(&state),
            peer: None,
            request: Default::default(),
            flags: AuditFlags::default(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse()?);
        let r = rt.block_on(v1_rotate(
            State(Arc::clone(&state)),
            audit(),
            headers,
            Path("k".to_owned()),
        ));
        let Err(ApiError(e)) = r else {
            return Err("a change was answered as done while the log was failing".into());
        };
        assert!(
            matches!(e, KmsError::AuditUnwritable { made: false }),
            "{e}"
        );
        let version = state.ring.with_key("k", |k| Ok(k.info().latest_version))?;
        assert_eq!(version, 1, "the refused change was made");
        // A change made before the failure was seen: its record is written.
        let r = audit().record_outcome("rotate", "k", None, &Ok(()), true);
        assert!(matches!(r, Err(KmsError::AuditUnwritable { made: true })));
        let text = std::fs::read_to_string(&log)?;
        assert!(
            text.lines()
                .any(|l| l.contains(r#""op":"rotate""#) && l.contains(r#""result":"ok""#)),
            "{text}"
        );
        Ok(())
    }

    /// An encrypt batch whose items leave out their context is answered
    /// only if the decrypt request a client builds of its ciphertexts,
    /// naming every context, fits the server's limit.
    #[test]
    fn an_encrypt_batch_is_sized_with_the_contexts_it_left_out()
    -> Result<(), Box<dyn std::error::Error>> {
        let body = format!(r#"{{"items":[{}]}}"#, [r#"{"data":"00"}"#; 11].join(","));
        let req: DataRequest = serde_json::from_str(&body)?;
        let ciphertexts = vec![
            format!(
                r#"{{"data":"{}","context":""}}"#,
                "00".repeat(1 + crate::ciphertext::OVERHEAD)
            );
            11
        ];
        let decrypt = format!(r#"{{"items":[{}]}}"#, ciphertexts.join(","));
        // Refused under the decrypt request's length, taken at it.
        assert!(check_encrypt_sizes(&req, decrypt.len() - 1).is_err());
        check_encrypt_sizes(&req, decrypt.len())?;
        Ok(())
    }
}
