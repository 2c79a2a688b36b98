//! The append-only audit log: one JSON line per operation, with the time,
//! the client's address, the operation, the key (a KEK's id — SHA-256 of
//! the KEK — or a key name), the result, and a detail where there is more
//! to say. Never key material: the record type has no field that could
//! hold any.
//!
//! The file is opened in append mode (records are written one at a time,
//! so they never interleave) with mode 0600, and is never rewritten by the
//! server: only the part of a record whose write failed part way (a full
//! disk) is cut back off, so that every line is a whole record. The server
//! records its own `start` (refusing to start when that record cannot be
//! written) and `stop`, with no peer.
//!
//! # Rotating
//!
//! The server never rotates the file; an operator (logrotate) moves it
//! away and has the server reopen its path ([`AuditLog::reopen`], on
//! SIGUSR1), as with nginx: no `copytruncate`, which loses the records
//! written between its copy and its truncate, and no restart. The moved
//! file ends with a [`REOPENED_OP`] record, the new one begins with a
//! [`REOPEN_OP`] record (both with no peer); no record is lost or split
//! between them. The summary of refusals counted but not yet written goes
//! to the old file, before its last record (if it cannot be written there,
//! its count is kept for a summary in the new file). The old file is
//! synced once writers have switched to the new one (they do not wait for
//! that sync), and the new one is not synced before the old one's sync has
//! settled, so that a record counts as synced only by a sync of the file
//! that holds it. A reopen that fails (the path now a directory or a link,
//! which are refused as at start; no room for the new file's first record)
//! keeps the old file in use, is logged with its cause, and can be tried
//! again.
//!
//! The log is bounded by what a client can make it write, since a server
//! whose log fills its disk answers every key request 503:
//!
//! - A batch is one record per outcome, not one per item: the items'
//!   count ([`AuditEvent::count`]) and their distinct KEK ids
//!   ([`AuditEvent::keys`]). The ids of KEKs given out or made are all
//!   listed (an auditor must be able to tell what left); a refusal lists
//!   at most [`MAX_LISTED_REFUSED`], and so does a batch of keys made
//!   without the management token ([`MAX_LISTED_MADE_UNPROVEN`]), with
//!   the SHA-256 of all its ids ([`AuditEvent::keys_sha256`]). So a
//!   batch's records are about as long as the ids it gave out, a batch of
//!   keys made by a client that showed no credential writes at most about
//!   1.4 KB, and a batch refused item by item writes one short line
//!   whatever its length.
//! - A refusal of a request that showed no credential (no or a wrong
//!   token, an unknown KEK, a malformed or oversized request, an unknown
//!   route, a timeout) takes a token of one bucket the whole server
//!   shares: [`REFUSAL_BURST`] at once, then [`REFUSALS_PER_SECOND`].
//!   Without a token it is counted, not written, and the count is written
//!   as one summary record (`op` `refusals`, with the count, the time of
//!   the first one counted, the count of each kind, and of each client
//!   address, the [`MAX_SUMMARY_PEERS`] with the most listed and the rest
//!   as one count) when the bucket has
//!   a token again, or at `stop`. So every refusal is in the log, one by
//!   one or in a summary, and the refused client is answered as before.
//! - What gives out or changes keys, and anything a request with the
//!   management token asks, is always written one by one: it is answered
//!   only once its record is (see [`AuditLog::write`]).
//!
//! # Durability
//!
//! A record written is in the page cache, not yet on disk: a power cut or
//! a kernel crash loses what was not synced, the records of keys already
//! handed out among them. Key files are synced before each answer; the
//! log is synced as [`AuditSync`] says:
//!
//! - [`AuditSync::Interval`] (the default): a background thread syncs the
//!   log (`fdatasync`) at most every [`AUDIT_SYNC_INTERVAL`] (or the
//!   interval given, `--audit-sync-interval`), when records
//!   were written since its last sync. A crash loses at most the records
//!   of about that last second (plus the time a sync takes), where
//!   without it the page cache could hold them for 30 s or more. Answers
//!   do not wait.
//! - [`AuditSync::Each`]: an answer that gives out or changes keys (any
//!   answer whose record is fail-closed, [`AuditLog::write_release`]) is
//!   given only once its record is on disk. Requests share syncs (group
//!   commit): one thread syncs, and each request waits for the first sync
//!   that started after its record was written, so that N requests
//!   arriving during one sync cost one more sync, not N. The cost is the
//!   latency of one or two syncs per such answer (well under a
//!   millisecond on a disk with a power-safe cache, several on one
//!   without) and the throughput the disk's syncs allow; refusals never
//!   wait.
//!
//! A sync that fails is logged (tracing, with its cause) and, in both
//! modes, makes every answer that would give out or change keys a 503, as
//! a record that cannot be written does, until a later sync succeeds
//! (retried every interval). This is the fail-closed rule
//! carried over to the disk: a disk that takes writes but fails syncs may
//! lose the records of what the server gives out, and an answer the log
//! may never show is the one the log exists to catch. Refusals are still
//! answered (nothing leaves the server). Reopening on a later success is
//! a choice for availability over a guarantee Linux does not give: after
//! a failed `fsync` the kernel may have dropped the dirty pages it could
//! not write, so a later sync that succeeds does not bring back the
//! records of before the failure. The server's log names the failure and
//! how many records it covered; an auditor should treat the log around it
//! as possibly incomplete. The records of answers given before the
//! failure was seen (in the default mode, up to one interval's) are not
//! undone.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::dir::DirFd;
use crate::error::Chain;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How many refusals of requests that showed no credential are written
/// one by one at once, after a quiet time. A fleet of clients restarted
/// with a stale token, or an operator trying routes by hand, is recorded
/// whole; a flood writes at most this many lines (of at most about 700
/// bytes: two fields of [`MAX_FIELD`] and the rest) before it is counted.
pub const REFUSAL_BURST: u32 = 100;

/// How many such refusals are written one by one each second once the
/// burst is spent (a summary takes one of them). A client probing slowly
/// is still recorded request by request, while a flood adds at most about
/// 1.4 KB a second to the log (≈120 MB a day at the longest lines, ≈50 MB
/// at a summary's usual ≈300 bytes): a day of it fits the room a daily
/// rotation leaves, where a line per refusal (thousands a second) filled
/// a disk in hours.
pub const REFUSALS_PER_SECOND: u32 = 2;

/// The most KEK ids a refusal record lists: enough to tell a client's
/// mistaken keys apart, while a batch of unknown KEKs writes one short
/// line. A cut list ends with `…`.
pub const MAX_LISTED_REFUSED: usize = 16;

/// The most KEK ids a record of keys made without the management token
/// lists (`/v1/new` on a server without `--new-needs-token`): past it the
/// list ends with `…` and the record holds the SHA-256 of all the ids
/// ([`AuditEvent::keys_sha256`]). Listing every id let a client that
/// showed no credential make the server write about 68 KB for a request
/// of 142 bytes (a batch of 1,024 keys); so bounded, such a record is at
/// most about 1.4 KB whatever the batch.
pub const MAX_LISTED_MADE_UNPROVEN: usize = 16;

/// The most client addresses a summary of refusals lists, those with the
/// most refusals; the rest are one count.
pub const MAX_SUMMARY_PEERS: usize = 16;

/// The most client addresses counted apart between two summaries, so that
/// counting costs bounded memory whatever the clients; refusals from
/// addresses beyond it are counted with the others.
const MAX_COUNTED_PEERS: usize = 256;

/// The `op` of a summary of refusals not written one by one.
pub const SUMMARY_OP: &str = "refusals";

/// The `op` of the first record of a file opened by [`AuditLog::reopen`]
/// (result `ok`), or of the record in the old file saying a reopen failed
/// and records stay there (result `failed`).
pub const REOPEN_OP: &str = "reopen";

/// The `op` of the last record of a file closed by [`AuditLog::reopen`].
pub const REOPENED_OP: &str = "reopened";

/// How often, at most, the default mode ([`AuditSync::Interval`]) syncs
/// the log, and how long a failed sync waits before it is tried again.
/// A second bounds what a crash can lose to about the records of the
/// last second while costing at most one `fdatasync` a second whatever
/// the load (and none while no records are written); shorter buys little
/// against a crash and costs a busy disk more syncs, longer widens the
/// window for every record. A client that needs its record on disk
/// before its key runs the server with [`AuditSync::Each`].
pub const AUDIT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The longest sync interval a server takes (`--audit-sync-interval`):
/// past a minute, a crash could lose more records than an audit log
/// should, and a failed sync would wait as long to be retried.
pub const MAX_AUDIT_SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// A sync interval that is no number of seconds, or not in (0,
/// [`MAX_AUDIT_SYNC_INTERVAL`]].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--audit-sync-interval {given:?}: {why}; give seconds above 0 and at most {max} \
     (decimals such as 0.25 are taken)",
    max = MAX_AUDIT_SYNC_INTERVAL.as_secs()
)]
pub struct BadSyncInterval {
    /// What was given.
    pub given: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Checks a sync interval: above zero, at most
/// [`MAX_AUDIT_SYNC_INTERVAL`].
pub fn check_audit_sync_interval(interval: Duration) -> Result<Duration, BadSyncInterval> {
    let bad = |why| BadSyncInterval {
        given: format!("{}", interval.as_secs_f64()),
        why,
    };
    if interval.is_zero() {
        return Err(bad("zero would sync without pause"));
    }
    if interval > MAX_AUDIT_SYNC_INTERVAL {
        return Err(bad("too long"));
    }
    Ok(interval)
}

/// Parses `--audit-sync-interval`: seconds, decimals allowed (`0.25`),
/// above zero and at most [`MAX_AUDIT_SYNC_INTERVAL`].
pub fn parse_audit_sync_interval(text: &str) -> Result<Duration, BadSyncInterval> {
    let bad = |why| BadSyncInterval {
        given: text.to_owned(),
        why,
    };
    // Digits and one point only: `f64` would take `inf`, `NaN`, `1e3`
    // and a sign.
    let trimmed = text.trim();
    let digits = trimmed.chars().filter(char::is_ascii_digit).count();
    let points = trimmed.chars().filter(|&c| c == '.').count();
    if trimmed.starts_with('-') {
        return Err(bad("a negative interval"));
    }
    if digits == 0 || points > 1 || digits + points != trimmed.len() {
        return Err(bad("not a number of seconds"));
    }
    let seconds: f64 = trimmed
        .parse()
        .map_err(|_| bad("not a number of seconds"))?;
    if seconds <= 0.0 {
        return Err(bad("zero would sync without pause"));
    }
    if seconds > MAX_AUDIT_SYNC_INTERVAL.as_secs_f64() {
        return Err(bad("too long"));
    }
    let interval = Duration::try_from_secs_f64(seconds).map_err(|_| bad("too long"))?;
    // Below a nanosecond rounds to zero.
    if interval.is_zero() {
        return Err(bad("zero would sync without pause"));
    }
    Ok(interval)
}

/// When the log's records are synced to disk (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuditSync {
    /// A background sync at most every [`AUDIT_SYNC_INTERVAL`]; answers do
    /// not wait.
    #[default]
    Interval,
    /// An answer that gives out or changes keys waits until its record is
    /// synced, sharing the sync with the requests of the same moment.
    Each,
}

impl AuditSync {
    /// The values `--audit-sync` takes.
    pub const VALUES: &'static str = "interval, each";

    /// Its name as `--audit-sync` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interval => "interval",
            Self::Each => "each",
        }
    }
}

impl std::fmt::Display for AuditSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`AuditSync`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is no audit sync mode: use one of {values}", values = AuditSync::VALUES)]
pub struct UnknownAuditSync(pub String);

impl std::str::FromStr for AuditSync {
    type Err = UnknownAuditSync;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "interval" => Ok(Self::Interval),
            "each" => Ok(Self::Each),
            other => Err(UnknownAuditSync(other.to_owned())),
        }
    }
}

/// Why an answer that gives out or changes keys is refused although its
/// record could be written: the log's last sync failed (see the module
/// docs), or the sync covering the record did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undurable {
    /// The last sync failed and none has succeeded since.
    #[error("the audit log's last sync failed and none has succeeded since")]
    Failing,
    /// The sync that covered the record failed.
    #[error("the sync of this record to the audit log failed")]
    SyncFailed,
    /// The log was closed before the record was synced.
    #[error("the audit log was closed before this record was synced")]
    Closed,
}

/// How the log is synced: `fdatasync` on the server, a counted or failing
/// sync in tests.
pub(crate) type SyncFn = Arc<dyn Fn(&File) -> std::io::Result<()> + Send + Sync>;

/// Where the syncing of a log stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStatus {
    /// The number of the newest record whose sync succeeded (records are
    /// numbered from 1 in the order they were written).
    pub synced: u64,
    /// The newest record covered by a sync that failed (0: none failed).
    pub failed_upto: u64,
    /// Whether the last sync failed.
    pub failing: bool,
    /// Syncs that succeeded.
    pub syncs: u64,
    /// Syncs that failed.
    pub failures: u64,
}

/// A record written by [`AuditLog::write_release`]: its number, which
/// [`AuditLog::durable`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "in the `each` mode the answer must wait for the record to be synced"]
pub struct Written(pub u64);

/// What writers and the syncer share.
struct Durability {
    mode: AuditSync,
    interval: Duration,
    sync: SyncFn,
    /// The file records go to, the newest record's number, and whether
    /// the log is closed; the syncer waits on `wake` for it to change.
    state: Mutex<Pending>,
    wake: Condvar,
    /// Published by the syncer only; answers wait on it.
    status: tokio::sync::watch::Sender<SyncStatus>,
}

#[derive(Debug)]
struct Pending {
    /// The file records numbered above those of any earlier file are
    /// written to. Under the one lock with `written`, so that a sync takes
    /// its file and the newest record in it together: a reopen switches
    /// both at once, and a sync of the old file never counts a record of
    /// the new one as synced, nor the reverse.
    file: Arc<File>,
    written: u64,
    closed: bool,
    /// Whether the syncer waits for a record with none to sync (then a
    /// writer wakes it, in either mode).
    idle: bool,
    /// Whether a reopen is syncing the file it closed: until that sync has
    /// settled, the syncer starts none, since a sync of the new file would
    /// count the old file's records (numbered below its own) as synced.
    closing_sync: bool,
}

impl Durability {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits on `wake` until `until` or the log is closed.
    fn pause<'a>(
        &self,
        mut pending: MutexGuard<'a, Pending>,
        until: Instant,
    ) -> MutexGuard<'a, Pending> {
        loop {
            let now = Instant::now();
            if pending.closed || now >= until {
                return pending;
            }
            pending = self
                .wake
                .wait_timeout(pending, until - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// The syncer: one thread per log, so that syncs are never run twice
    /// at once and the requests of one moment share one. Returns when the
    /// log is closed.
    fn run(&self) {
        let mut next = Instant::now() + self.interval;
        loop {
            let (file, target) = {
                let mut pending = self.lock();
                loop {
                    if pending.closed {
                        return;
                    }
                    if pending.closing_sync {
                        // The reopen wakes this thread once its sync settled.
                        pending = self
                            .wake
                            .wait(pending)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        continue;
                    }
                    let status = *self.status.borrow();
                    let behind = pending.written > status.synced;
                    // A failed sync is retried after an interval in both
                    // modes: at once, a failing disk would spin this thread.
                    let due = match self.mode {
                        AuditSync::Each if !status.failing => behind,
                        _ => behind && Instant::now() >= next,
                    };
                    if due {
                        break (Arc::clone(&pending.file), pending.written);
                    }
                    pending = match self.mode {
                        AuditSync::Each if !status.failing => self
                            .wake
                            .wait(pending)
                            .unwrap_or_else(std::sync::PoisonError::into_inner),
                        // Nothing to sync: no timer, until a record comes
                        // (whose writer wakes this thread). An idle server
                        // so does not wake every interval.
                        _ if !behind && !status.failing => {
                            pending.idle = true;
                            let mut woken = self
                                .wake
                                .wait(pending)
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            woken.idle = false;
                            woken
                        }
                        _ => {
                            if Instant::now() >= next {
                                next = Instant::now() + self.interval;
                            }
                            self.pause(pending, next)
                        }
                    };
                }
            };
            // Every record numbered up to `target` was written before this
            // sync started, to `file` or to a file a reopen closed and whose
            // sync settled before this one started, so it is on disk if the
            // sync succeeds.
            let result = (self.sync)(&file);
            next = Instant::now() + self.interval;
            self.settle(target, &result);
        }
    }

    /// Publishes the outcome of a sync that covered the records up to
    /// `target`, and logs a failure (or the first success after one).
    fn settle(&self, target: u64, result: &std::io::Result<()>) {
        let was_failing = self.status.borrow().failing;
        self.status.send_modify(|s| match result {
            Ok(()) => {
                s.synced = s.synced.max(target);
                s.failing = false;
                s.syncs += 1;
            }
            Err(_) => {
                s.failed_upto = s.failed_upto.max(target);
                s.failing = true;
                s.failures += 1;
            }
        });
        match result {
            Err(e) => tracing::error!(
                error = %Chain(e),
                records = target,
                "audit log sync failed: answers that give out or change keys are refused \
                 until a sync succeeds, and records up to this one may not be on disk"
            ),
            Ok(()) if was_failing => tracing::warn!(
                records = target,
                "audit log sync succeeded again: answers that give out keys are given again"
            ),
            Ok(()) => {}
        }
    }
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durability")
            .field("mode", &self.mode)
            .field("interval", &self.interval)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent<'a> {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// The client's address and port, as the server's socket saw it (a
    /// proxy in front of the server shows as the proxy); `null` where the
    /// server was not told it, and for the server's own records.
    pub peer: Option<SocketAddr>,
    /// The operation (`new`, `key`, `encrypt`, `state`, …; [`SUMMARY_OP`]
    /// for a summary of refusals).
    pub op: &'a str,
    /// The key: hex SHA-256 of a KEK, or a named key's name (as the
    /// client sent it: escaped and cut to [`MAX_FIELD`] bytes); `-` for
    /// none, or for several (then listed in `keys`).
    pub key: &'a str,
    /// `ok`, or the error's kind (for a refusal no handler recorded, the
    /// HTTP status; `summarized` for a summary).
    pub result: &'a str,
    /// What more the operation says: the state a key was moved to, the
    /// minimum decryption version set, or for a refusal the request's
    /// method and path (escaped and cut as `key` is). Left out when there
    /// is nothing more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// How many the record stands for, when more than one: a batch's
    /// items with this outcome, or a summary's refusals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The distinct KEK ids of a batch's items with this outcome, when
    /// more than one (one is said by `key`). A refusal's list is cut to
    /// [`MAX_LISTED_REFUSED`] ids and `…`.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub keys: &'a [String],
    /// When `keys` was cut although its ids are of keys made (a batch made
    /// without the management token, [`MAX_LISTED_MADE_UNPROVEN`]): the
    /// SHA-256, lowercase hex, of all the ids, sorted, each followed by a
    /// line feed (what `LC_ALL=C sort | sha256sum` gives of a list of
    /// them), so that a set of ids (a client's KEKs' ids, the names of the
    /// DEK files in `keys/`) can be checked to be the batch's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_sha256: Option<&'a str>,
    /// A summary's first refusal: seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// A summary's refusals by kind (`OP RESULT`, as their records would
    /// have said them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinds: Option<&'a BTreeMap<String, u64>>,
    /// A summary's refusals by the client's address (without its port),
    /// the [`MAX_SUMMARY_PEERS`] with the most; the others' refusals are
    /// counted in `other_peers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<&'a BTreeMap<String, u64>>,
    /// A summary's refusals from clients not listed in `peers` (and from
    /// none the server was told of).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_peers: Option<u64>,
}

/// What a caller records: a record but its time, which the log sets.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// See [`AuditEvent::peer`].
    pub peer: Option<SocketAddr>,
    /// See [`AuditEvent::op`].
    pub op: &'a str,
    /// See [`AuditEvent::key`]; escaped and cut when written.
    pub key: &'a str,
    /// See [`AuditEvent::result`].
    pub result: &'a str,
    /// See [`AuditEvent::detail`]; escaped and cut when written.
    pub detail: Option<&'a str>,
    /// See [`AuditEvent::count`]; 1 is left out.
    pub count: u64,
    /// See [`AuditEvent::keys`].
    pub keys: &'a [String],
    /// See [`AuditEvent::keys_sha256`].
    pub keys_sha256: Option<&'a str>,
}

impl<'a> Entry<'a> {
    /// A record of one operation, with no detail.
    pub fn new(peer: Option<SocketAddr>, op: &'a str, key: &'a str, result: &'a str) -> Self {
        Self {
            peer,
            op,
            key,
            result,
            detail: None,
            count: 1,
            keys: &[],
            keys_sha256: None,
        }
    }

    /// With `detail` (see [`AuditEvent::detail`]).
    pub fn detail(self, detail: Option<&'a str>) -> Self {
        Self { detail, ..self }
    }

    /// Standing for `count` items whose distinct KEK ids are `keys`.
    pub fn batch(self, count: u64, keys: &'a [String]) -> Self {
        Self {
            count,
            keys,
            ..self
        }
    }

    /// With the digest of all the ids of a cut `keys` (see
    /// [`AuditEvent::keys_sha256`]).
    pub fn keys_sha256(self, keys_sha256: Option<&'a str>) -> Self {
        Self {
            keys_sha256,
            ..self
        }
    }
}

/// What became of a refusal given to [`AuditLog::write_limited`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Written as a record of its own.
    Written,
    /// Counted for a summary: the bucket was empty, or its record could
    /// not be written.
    Counted,
}

/// The most bytes of a field a client chose (a key name, a path) that a
/// record keeps: a name or path longer than any valid one is cut, so that
/// a client cannot write a megabyte line.
pub const MAX_FIELD: usize = 256;

/// `text` as a record keeps a field a client chose: characters other than
/// printable ASCII (control characters, and others a terminal or a log
/// viewer would act on) escaped (`\u{1b}`), and cut to [`MAX_FIELD`] bytes
/// with `…` after.
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    let kept = |c: char| c.is_ascii_graphic() || c == ' ';
    if text.len() <= MAX_FIELD && text.chars().all(kept) {
        return text.into();
    }
    let mut out = String::new();
    for c in text.chars() {
        let len = if kept(c) { 1 } else { c.escape_unicode().len() };
        if out.len() + len > MAX_FIELD {
            out.push('…');
            break;
        }
        if kept(c) {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out.into()
}

/// A token bucket on a clock the caller gives: `burst` tokens at most,
/// one more every `every`.
#[derive(Debug)]
struct TokenBucket {
    tokens: u32,
    burst: u32,
    every: Duration,
    /// When the newest token came (or the bucket was last found full):
    /// the part of an interval since then is kept, not lost to rounding.
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    fn new(burst: u32, per_second: u32, now: Instant) -> Self {
        Self {
            tokens: burst,
            burst,
            every: Duration::from_secs(1) / per_second.max(1),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let due = now.saturating_duration_since(self.last).as_nanos() / self.every.as_nanos();
        let room = self.burst - self.tokens;
        match u32::try_from(due) {
            Ok(0) => {}
            Ok(due) if due < room => {
                self.tokens += due;
                self.last += self.every * due;
            }
            // Full: time spent full earns nothing.
            _ => {
                self.tokens = self.burst;
                self.last = now;
            }
        }
    }

    /// Takes a token if there is one at `now`.
    fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Refusals counted since the last summary.
#[derive(Debug, Default)]
struct Counted {
    count: u64,
    /// The first one's time (seconds since the Unix epoch).
    since: u64,
    /// By `OP RESULT`.
    kinds: BTreeMap<String, u64>,
    /// By the client's address, at most [`MAX_COUNTED_PEERS`] of them.
    peers: HashMap<IpAddr, u64>,
    /// Refusals from addresses not in `peers`, or from none.
    other_peers: u64,
}

impl Counted {
    fn add(&mut self, op: &str, result: &str, peer: Option<IpAddr>, count: u64) {
        if self.count == 0 {
            self.since = unix_now();
        }
        self.count += count;
        *self.kinds.entry(format!("{op} {result}")).or_default() += count;
        self.add_peer(peer, count);
    }

    fn add_peer(&mut self, peer: Option<IpAddr>, count: u64) {
        let known = self.peers.len() < MAX_COUNTED_PEERS;
        match peer {
            Some(ip) if known || self.peers.contains_key(&ip) => {
                *self.peers.entry(ip).or_default() += count;
            }
            _ => self.other_peers += count,
        }
    }

    /// The [`MAX_SUMMARY_PEERS`] addresses with the most refusals, and the
    /// count of all the others'.
    fn top_peers(&self) -> (BTreeMap<String, u64>, u64) {
        let mut by_count: Vec<(&IpAddr, &u64)> = self.peers.iter().collect();
        by_count.sort_unstable_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let rest: u64 = by_count
            .iter()
            .skip(MAX_SUMMARY_PEERS)
            .map(|(_, n)| **n)
            .sum();
        let top = by_count
            .into_iter()
            .take(MAX_SUMMARY_PEERS)
            .map(|(ip, n)| (ip.to_string(), *n))
            .collect();
        (top, rest + self.other_peers)
    }

    /// Adds `other`, counted before those here (a summary that could not
    /// be written).
    fn merge_earlier(&mut self, other: Counted) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 || other.since < self.since {
            self.since = other.since;
        }
        self.count += other.count;
        for (kind, n) in other.kinds {
            *self.kinds.entry(kind).or_default() += n;
        }
        for (ip, n) in other.peers {
            self.add_peer(Some(ip), n);
        }
        self.other_peers += other.other_peers;
    }
}

#[derive(Debug)]
struct Inner {
    /// Shared with the syncer, which syncs it without this lock.
    file: Arc<File>,
    bucket: TokenBucket,
    counted: Counted,
}

/// The audit log of one server.
#[derive(Debug)]
pub struct AuditLog {
    inner: Mutex<Inner>,
    durability: Arc<Durability>,
    /// Told when a refusal is counted, for the summaries' task.
    counted_one: tokio::sync::Notify,
    /// The directory, held open, where [`Self::reopen`] opens the file to
    /// write to, and that file's name there.
    dir: DirFd,
    name: String,
    /// The path of the log, for messages.
    path: PathBuf,
    /// Held through a reopen, its sync of the old file included, so that
    /// reopens follow one another (writers take `inner` only).
    reopening: Mutex<()>,
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.durability.lock().closed = true;
        self.durability.wake.notify_all();
    }
}

/// Appends `line` through `out` (a writer of `file`, opened to append)
/// whole or not at all: a write cut short (a full disk) is cut back off
/// `file`, since the next record would be glued onto its part and neither
/// would parse.
fn append_whole(out: &mut impl Write, file: &File, line: &[u8]) -> std::io::Result<()> {
    let mut written = 0;
    let result = loop {
        if written == line.len() {
            break Ok(());
        }
        match out.write(&line[written..]) {
            Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    if result.is_err() && written > 0 {
        let len = file.metadata()?.len();
        file.set_len(len.saturating_sub(written as u64))?;
    }
    result
}

/// Takes group and other access away from `file`, a log found at `path`
/// when it is reopened, as the server does of the log at start: a file
/// made there by another tool (logrotate's `create 0640`) may have wider
/// access than the 0600 the server gives the files it makes.
fn keep_own(file: &File, path: &Path) -> Result<(), crate::KmsError> {
    use std::os::unix::fs::PermissionsExt;
    let io_err = |source| crate::KmsError::File {
        action: "restrict the permissions of",
        path: path.to_owned(),
        source,
    };
    let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(io_err)?;
        tracing::warn!(
            path = %path.display(),
            "others could read it (mode {mode:o}): restricted to its owner ({:o})",
            mode & 0o700
        );
    }
    Ok(())
}

/// `event` as a line of the log.
fn line_of(event: &AuditEvent<'_>) -> std::io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    Ok(line)
}

/// `entry` as a line of the log, at `time`.
fn entry_line(entry: &Entry<'_>, time: u64) -> std::io::Result<Vec<u8>> {
    let key = shown(entry.key);
    let detail = entry.detail.map(shown);
    line_of(&AuditEvent {
        time,
        peer: entry.peer,
        op: entry.op,
        key: &key,
        result: entry.result,
        detail: detail.as_deref(),
        count: (entry.count != 1).then_some(entry.count),
        keys: entry.keys,
        keys_sha256: entry.keys_sha256,
        since: None,
        kinds: None,
        peers: None,
        other_peers: None,
    })
}

impl Inner {
    /// Appends `line`, the record of `op`, `key` and `result` (which a
    /// failure's log names).
    fn append(&self, line: &[u8], op: &str, key: &str, result: &str) -> std::io::Result<()> {
        let file: &File = &self.file;
        let written = append_whole(&mut { file }, file, line);
        if let Err(e) = &written {
            tracing::error!(error = %e, op, key = %shown(key), result, "audit log write failed");
        }
        written
    }

    /// Writes the summary of the refusals counted, if any (at `stop`, or
    /// when the bucket had a token for it). What it could not write stays
    /// counted.
    fn summarize(&mut self) -> std::io::Result<()> {
        if self.counted.count == 0 {
            return Ok(());
        }
        let counted = std::mem::take(&mut self.counted);
        let detail = format!(
            "{} refusals not recorded one by one since {}",
            counted.count, counted.since
        );
        let (peers, other_peers) = counted.top_peers();
        let written = line_of(&AuditEvent {
            time: unix_now(),
            peer: None,
            op: SUMMARY_OP,
            key: "-",
            result: "summarized",
            detail: Some(&detail),
            count: Some(counted.count),
            keys: &[],
            keys_sha256: None,
            since: Some(counted.since),
            kinds: Some(&counted.kinds),
            peers: Some(&peers),
            other_peers: (other_peers > 0).then_some(other_peers),
        })
        .and_then(|line| self.append(&line, SUMMARY_OP, "-", "summarized"));
        if written.is_err() {
            self.counted.merge_earlier(counted);
        }
        written
    }

    /// Writes the summary if there is one and the bucket has a token for
    /// it at `now`.
    fn summarize_due(&mut self, now: Instant) -> std::io::Result<()> {
        if self.counted.count == 0 || !self.bucket.take(now) {
            return Ok(());
        }
        self.summarize()
    }
}

impl AuditLog {
    /// Opens (creating, mode 0600) the log at `path` for appending, synced
    /// as `mode` says (see the module docs) by a thread of its own, which
    /// ends when the log is dropped.
    pub fn open(path: &Path, mode: AuditSync) -> std::io::Result<Self> {
        Self::open_with(path, mode, AUDIT_SYNC_INTERVAL, Arc::new(File::sync_data))
    }

    /// [`Self::open`] with the sync interval and the sync itself given.
    /// `fdatasync` is enough for an appended file: it writes the new
    /// length with the data, which is all a reader needs of the inode.
    pub(crate) fn open_with(
        path: &Path,
        mode: AuditSync,
        interval: Duration,
        sync: SyncFn,
    ) -> std::io::Result<Self> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} names no file for an audit log", path.display()),
            )
        })?;
        let dir = DirFd::open(parent).map_err(std::io::Error::other)?;
        let file = dir.open_file(
            name,
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::APPEND | rustix::fs::OFlags::CREATE,
            0o600,
        )?;
        Self::from_file(file, &dir, name, mode, interval, sync)
    }

    /// [`Self::open_with`] of a file opened for appending (the server's
    /// `audit.log`, opened only as a regular file) as `name` in `dir`,
    /// where [`Self::reopen`] opens its successor.
    pub(crate) fn from_file(
        file: File,
        dir: &DirFd,
        name: &str,
        mode: AuditSync,
        interval: Duration,
        sync: SyncFn,
    ) -> std::io::Result<Self> {
        let file = Arc::new(file);
        let durability = Arc::new(Durability {
            mode,
            interval,
            sync,
            state: Mutex::new(Pending {
                file: Arc::clone(&file),
                written: 0,
                closed: false,
                idle: false,
                closing_sync: false,
            }),
            wake: Condvar::new(),
            status: tokio::sync::watch::Sender::new(SyncStatus::default()),
        });
        let syncer = Arc::clone(&durability);
        std::thread::Builder::new()
            .name("audit-sync".into())
            .spawn(move || syncer.run())?;
        Ok(Self {
            inner: Mutex::new(Inner {
                file,
                bucket: TokenBucket::new(REFUSAL_BURST, REFUSALS_PER_SECOND, Instant::now()),
                counted: Counted::default(),
            }),
            durability,
            counted_one: tokio::sync::Notify::new(),
            dir: dir.clone(),
            name: name.to_owned(),
            path: dir.join(name),
            reopening: Mutex::new(()),
        })
    }

    /// How records are synced.
    pub fn mode(&self) -> AuditSync {
        self.durability.mode
    }

    /// Where the syncing stands.
    pub fn sync_status(&self) -> SyncStatus {
        *self.durability.status.borrow()
    }

    /// Where the syncing stands, to wait on.
    #[cfg(test)]
    pub(crate) fn durability_status(&self) -> tokio::sync::watch::Receiver<SyncStatus> {
        self.durability.status.subscribe()
    }

    /// The number of the newest record written.
    pub fn written(&self) -> u64 {
        self.durability.lock().written
    }

    /// Numbers the record just appended (under the lock of `inner`, so
    /// numbers follow the order of the file) and wakes the syncer in the
    /// `each` mode, or when it waits with nothing to sync.
    fn count_written(&self) -> Written {
        let (n, idle) = {
            let mut pending = self.durability.lock();
            pending.written += 1;
            (pending.written, pending.idle)
        };
        if idle || self.durability.mode == AuditSync::Each {
            self.durability.wake.notify_one();
        }
        Written(n)
    }

    /// Waits until a refusal is counted rather than written (at once if
    /// one was since the last wait), for the task that writes summaries:
    /// with none counted, it has nothing to do and no timer.
    pub(crate) async fn refusal_counted(&self) {
        self.counted_one.notified().await;
    }

    /// The refusals counted and not yet in a summary.
    pub(crate) fn counted(&self) -> u64 {
        self.lock().counted.count
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one record of an operation a client at `peer` asked for.
    ///
    /// A record that cannot be written is an error the caller must act on:
    /// the server answers such a request with 503 and no key (see
    /// [`crate::KmsError::AuditUnwritable`]), as an audit log that may miss
    /// records is no audit log.
    pub fn record(
        &self,
        peer: Option<SocketAddr>,
        op: &str,
        key: &str,
        result: &str,
    ) -> std::io::Result<()> {
        self.write(&Entry::new(peer, op, key, result))
    }

    /// [`Self::record`] with a detail (see [`AuditEvent::detail`]).
    pub fn record_with(
        &self,
        peer: Option<SocketAddr>,
        op: &str,
        key: &str,
        result: &str,
        detail: Option<&str>,
    ) -> std::io::Result<()> {
        self.write(&Entry::new(peer, op, key, result).detail(detail))
    }

    /// Appends the record `entry`, whatever the bucket of refusals holds:
    /// for what gives out or changes keys, and what a request with the
    /// management token asks. An error is to be acted on as
    /// [`Self::record`] says.
    pub fn write(&self, entry: &Entry<'_>) -> std::io::Result<()> {
        self.append_counted(entry).map(|_| ())
    }

    fn append_counted(&self, entry: &Entry<'_>) -> std::io::Result<Written> {
        let line = entry_line(entry, unix_now())?;
        let inner = self.lock();
        inner.append(&line, entry.op, entry.key, entry.result)?;
        Ok(self.count_written())
    }

    /// Appends the record of an answer that gives out or changes keys, as
    /// [`Self::write`] does, unless the log's last sync failed ([`Undurable::Failing`]:
    /// such answers are refused until a sync succeeds, and the record is
    /// not written, since its answer is not given). In the `each` mode the
    /// answer must then wait for [`Self::durable`].
    pub fn write_release(&self, entry: &Entry<'_>) -> std::io::Result<Written> {
        if self.durability.status.borrow().failing {
            return Err(std::io::Error::other(Undurable::Failing));
        }
        self.append_counted(entry)
    }

    /// Appends the record of a change already made, as [`Self::write`]
    /// does, even while the log's last sync has failed: the change cannot
    /// be taken back, and must not go unrecorded. Its number, and whether
    /// the log's last sync has failed (then its answer is refused, as
    /// [`Self::write_release`] refuses, since the record may not reach the
    /// disk). In the `each` mode the answer must wait for
    /// [`Self::durable`].
    pub fn write_made(&self, entry: &Entry<'_>) -> std::io::Result<(Written, bool)> {
        let written = self.append_counted(entry)?;
        Ok((written, self.durability.status.borrow().failing))
    }

    /// In the `each` mode, waits until the record `written` is synced, by
    /// the first sync that started after it was written (shared with every
    /// record written before that sync started); an error if that sync
    /// failed. In the default mode, at once.
    pub async fn durable(&self, written: Written) -> std::io::Result<()> {
        if self.durability.mode != AuditSync::Each {
            return Ok(());
        }
        let mut status = self.durability.status.subscribe();
        let seen = status
            .wait_for(|s| s.synced >= written.0 || s.failed_upto >= written.0)
            .await
            .map_err(|_| std::io::Error::other(Undurable::Closed))?;
        // A sync that failed may have dropped the pages it could not
        // write: a later success does not make the record durable.
        if seen.failed_upto >= written.0 {
            return Err(std::io::Error::other(Undurable::SyncFailed));
        }
        Ok(())
    }

    /// Appends the record of a refusal of a request that showed no
    /// credential if the bucket has a token for it, else counts it for a
    /// summary (a record that cannot be written is counted too). The
    /// refusal is answered either way.
    pub fn write_limited(&self, entry: &Entry<'_>) -> Refusal {
        self.write_limited_at(entry, Instant::now())
    }

    fn write_limited_at(&self, entry: &Entry<'_>, now: Instant) -> Refusal {
        let mut inner = self.lock();
        // The summary first, so that the log reads in order; a failure is
        // logged and its refusals stay counted.
        let before = inner.counted.count;
        let _unwritten = inner.summarize_due(now);
        self.count_summary(before, &inner);
        if inner.bucket.take(now) {
            let written = entry_line(entry, unix_now())
                .and_then(|line| inner.append(&line, entry.op, entry.key, entry.result));
            if written.is_ok() {
                let _numbered = self.count_written();
                return Refusal::Written;
            }
        }
        let peer = entry.peer.map(|p| p.ip());
        inner.counted.add(entry.op, entry.result, peer, entry.count);
        self.counted_one.notify_one();
        Refusal::Counted
    }

    /// Writes the summary of the refusals counted if the bucket has a
    /// token for it (the server calls it every second while refusals are
    /// counted, so that a summary does not wait for the next refusal).
    pub fn summarize_due(&self) -> std::io::Result<()> {
        let mut inner = self.lock();
        let before = inner.counted.count;
        let written = inner.summarize_due(Instant::now());
        self.count_summary(before, &inner);
        written
    }

    /// Numbers a summary if one was written since `inner` counted
    /// `before` refusals, so that the syncer syncs it too.
    fn count_summary(&self, before: u64, inner: &Inner) {
        if before > 0 && inner.counted.count == 0 {
            let _numbered = self.count_written();
        }
    }

    /// Writes the summary of the refusals counted, if any, token or not
    /// (at `stop`).
    pub fn summarize(&self) -> std::io::Result<()> {
        let mut inner = self.lock();
        let before = inner.counted.count;
        let written = inner.summarize();
        self.count_summary(before, &inner);
        written
    }

    /// Opens the file at the log's path anew and writes every later record
    /// there (the server does on SIGUSR1), so that a log moved away (by
    /// logrotate) is closed and a new one begun, without a restart and
    /// without losing or splitting a record. See the module docs.
    ///
    /// The file is opened as at start: created with mode 0600 (a file
    /// found there loses group and other access, which is logged),
    /// appended to, and refused when it is a link or not a regular file.
    /// Then, with writers held back (for writes, not for a sync):
    ///
    /// 1. the summary of the refusals counted, if any, is written to the
    ///    old file (if it cannot be, its count stays for a later summary,
    ///    in the new file);
    /// 2. the old file gets its last record, [`REOPENED_OP`];
    /// 3. the new one its first, [`REOPEN_OP`] (with no peer, as `start`);
    /// 4. the syncer and writers are switched to the new file together.
    ///
    /// Writers let go, the old file is synced, which settles its records
    /// as any sync does (synced, or failed and answers that give out keys
    /// refused until a sync succeeds); the syncer starts no sync until
    /// then, so that a sync of the new file never counts a record of the
    /// old one as synced. This returns once that sync has settled; reopens
    /// called at once follow one another.
    ///
    /// If the new file cannot be opened or its first record written, the
    /// old file stays in use (and, after step 2, gets a record saying the
    /// reopen failed), and the error names the path and the cause: the log
    /// is never left without a file, and a later call tries again.
    pub fn reopen(&self) -> Result<(), crate::KmsError> {
        let _one_at_a_time = self
            .reopening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let failed = |e: crate::KmsError| {
            tracing::error!(
                error = %Chain(&e),
                path = %self.path.display(),
                "audit log not reopened: records still go to the file it had open"
            );
            e
        };
        let io_err = |source| crate::KmsError::File {
            action: "write",
            path: self.path.clone(),
            source,
        };
        let new = crate::files::open_own(&self.dir, &self.name, crate::files::Own::Append)
            .map_err(failed)?
            .ok_or_else(|| {
                failed(crate::KmsError::File {
                    action: "open",
                    path: self.path.clone(),
                    source: std::io::ErrorKind::NotFound.into(),
                })
            })?;
        keep_own(&new, &self.path).map_err(failed)?;
        let mut inner = self.lock();
        let before = inner.counted.count;
        // Already logged when it cannot be written; its count is kept.
        let _unwritten = inner.summarize();
        self.count_summary(before, &inner);
        let closing = entry_line(
            &Entry::new(None, REOPENED_OP, "-", "ok").detail(Some(
                "closed for a reopen: later records are in the file now at this log's path",
            )),
            unix_now(),
        )
        .map_err(io_err)?;
        // The old file's end is best told; a disk too full for it does not
        // keep the new file from being used.
        if inner.append(&closing, REOPENED_OP, "-", "ok").is_ok() {
            let _numbered = self.count_written();
        }
        let opening = entry_line(
            &Entry::new(None, REOPEN_OP, "-", "ok").detail(Some(
                "opened at a reopen: earlier records are in the file that was at this path",
            )),
            unix_now(),
        )
        .map_err(io_err)?;
        if let Err(e) = append_whole(&mut { &new }, &new, &opening) {
            let still = Entry::new(None, REOPEN_OP, "-", "failed").detail(Some(
                "the file at this log's path could not be written: records stay in this file",
            ));
            if let Ok(line) = entry_line(&still, unix_now())
                && inner.append(&line, REOPEN_OP, "-", "failed").is_ok()
            {
                let _numbered = self.count_written();
            }
            return Err(failed(io_err(e)));
        }
        // Writers and the syncer switch to the new file together; the old
        // one is synced after, with writers let go (a slow disk's sync held
        // every request, refusals too, for its length) but the syncer held
        // back, so that no sync of the new file counts a record of the old
        // one as synced before the old file's sync has settled.
        let new = Arc::new(new);
        let old = std::mem::replace(&mut inner.file, Arc::clone(&new));
        let (upto, syncing) = {
            let mut pending = self.durability.lock();
            let upto = pending.written;
            let syncing = upto > self.durability.status.borrow().synced;
            pending.file = new;
            pending.written += 1;
            pending.closing_sync = syncing;
            (upto, syncing)
        };
        drop(inner);
        if syncing {
            let result = (self.durability.sync)(&old);
            self.durability.settle(upto, &result);
        }
        let idle = {
            let mut pending = self.durability.lock();
            pending.closing_sync = false;
            pending.idle
        };
        // Woken while it waits for this sync, or for records to sync.
        if syncing || idle || self.durability.mode == AuditSync::Each {
            self.durability.wake.notify_all();
        }
        tracing::info!(path = %self.path.display(), "audit log reopened");
        Ok(())
    }

    /// Syncs the log to disk (called at shutdown, after the last record).
    pub fn sync(&self) -> std::io::Result<()> {
        let file = Arc::clone(&self.lock().file);
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    /// A writer with room for `room` more bytes of `file`, then none, as a
    /// disk that fills up part way through a record.
    struct FillingUp<'a> {
        file: &'a File,
        room: usize,
    }

    impl Write for FillingUp<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            (&mut &*self.file).write(&buf[..n])
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn fields_a_client_chose_are_escaped_and_cut() {
        assert_eq!(shown("named-key_1.v2"), "named-key_1.v2");
        assert_eq!(
            shown("x\u{1b}[31m\u{9b}\u{2028}\u{202e}"),
            "x\\u{1b}[31m\\u{9b}\\u{2028}\\u{202e}"
        );
        let name = "n".repeat(900_000);
        let long = shown(&name);
        assert_eq!(long.len(), MAX_FIELD + '…'.len_utf8());
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_record_cut_short_by_a_full_disk_is_cut_back_off() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, AuditSync::Interval)?;
        log.record(None, "start", "-", "ok")?;
        let whole = std::fs::read(&path)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        let mut full = FillingUp {
            file: &file,
            room: 10,
        };
        let err = append_whole(&mut full, &file, b"{\"op\":\"key\",\"result\":\"ok\"}\n")
            .err()
            .ok_or_else(|| std::io::Error::other("a full disk took the record"))?;
        assert_eq!(err.raw_os_error(), Some(28));
        assert_eq!(
            std::fs::read(&path)?,
            whole,
            "no part of the record is left"
        );
        // The next record is a line of its own.
        log.record(None, "stop", "-", "ok")?;
        let text = std::fs::read_to_string(&path)?;
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .map_err(|e| std::io::Error::other(format!("{line}: {e}")))?;
        }
        assert_eq!(text.lines().count(), 2);
        Ok(())
    }

    #[test]
    fn the_bucket_gives_its_burst_then_one_token_per_interval() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut bucket = TokenBucket::new(3, 2, t0);
        assert_eq!((0..5).filter(|_| bucket.take(t0)).count(), 3);
        // Half an interval earns nothing, and is not lost: the other half
        // makes the token.
        assert!(!bucket.take(t0 + ms(250)));
        assert!(bucket.take(t0 + ms(500)));
        assert!(!bucket.take(t0 + ms(999)));
        assert!(bucket.take(t0 + ms(1000)));
        // A long quiet time fills it to its burst, no more.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| bucket.take(later)).count(), 3);
        // Time spent full earned nothing: the next token is one interval
        // after the bucket was found full.
        assert!(!bucket.take(later + ms(499)));
        assert!(bucket.take(later + ms(500)));
        // A clock read out of order (another thread's earlier instant)
        // takes nothing back.
        assert!(!bucket.take(later));
    }

    /// The log's lines as JSON.
    fn records(path: &Path) -> std::io::Result<Vec<serde_json::Value>> {
        std::fs::read_to_string(path)?
            .lines()
            .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
            .collect()
    }

    /// Beyond the burst, refusals are counted, not written, and the count
    /// is written as one summary when the bucket has a token again (or at
    /// stop), by kind: what is written one by one and what is summarized
    /// add up to every refusal. Records that must be written are written
    /// whatever the bucket holds.
    #[test]
    fn refusals_beyond_the_burst_are_summarized_and_all_accounted_for() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, AuditSync::Interval)?;
        let t0 = Instant::now();
        let burst = REFUSAL_BURST as usize;
        let auth = Entry::new(None, "auth", "-", "unauthorized").detail(Some("GET /v1/keys"));
        let lookup = Entry::new(None, "key", "-", "not-found");
        let mut counted = 0;
        for i in 0..burst + 50 {
            let entry = if i % 2 == 0 { auth } else { lookup };
            if log.write_limited_at(&entry, t0) == Refusal::Counted {
                counted += 1;
            }
        }
        assert_eq!(counted, 50);
        assert_eq!(records(&path)?.len(), burst);
        // A key given out is written with the bucket empty.
        log.record(None, "key", "ab", "ok")?;
        assert_eq!(records(&path)?.len(), burst + 1);
        // No token yet: no summary.
        log.lock().summarize_due(t0)?;
        assert_eq!(records(&path)?.len(), burst + 1);
        // A batch's refusal stands for its items.
        let ids = ["1".repeat(64), "2".repeat(64)];
        let batch = lookup.batch(7, &ids);
        assert_eq!(log.write_limited_at(&batch, t0), Refusal::Counted);
        let every = Duration::from_secs(1) / REFUSALS_PER_SECOND;
        log.lock().summarize_due(t0 + every)?;
        let all = records(&path)?;
        assert_eq!(all.len(), burst + 2);
        let summary = &all[burst + 1];
        assert_eq!(summary["op"], SUMMARY_OP);
        assert_eq!(summary["result"], "summarized");
        assert_eq!(summary["count"], 57);
        assert_eq!(summary["kinds"]["auth unauthorized"], 25);
        assert_eq!(summary["kinds"]["key not-found"], 32);
        assert!(summary["since"].as_u64().is_some_and(|t| t > 0));
        assert!(
            summary["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("57 refusals not recorded one by one since ")),
            "{summary}"
        );
        // The summary took the token: the next refusal is counted, and
        // written as a summary at stop, token or not.
        assert_eq!(log.write_limited_at(&auth, t0 + every), Refusal::Counted);
        log.summarize()?;
        log.summarize()?;
        let all = records(&path)?;
        assert_eq!(all.len(), burst + 3);
        assert_eq!(all[burst + 2]["count"], 1);
        // Written one by one, and summarized: every refusal.
        let one_by_one = all.iter().filter(|r| r["op"] != SUMMARY_OP).count() - 1;
        let summarized: u64 = all.iter().filter_map(|r| r["count"].as_u64()).sum();
        assert_eq!(one_by_one as u64 + summarized, burst as u64 + 50 + 7 + 1);
        Ok(())
    }

    /// A summary says whom the refusals came from: the addresses with the
    /// most (without their ports), and the rest as one count, so that an
    /// operator sees who is knocking however many knock.
    #[test]
    fn a_summary_names_the_clients_with_the_most_refusals() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, AuditSync::Interval)?;
        let t0 = Instant::now();
        let from = |ip: [u8; 4], port: u16| Some(SocketAddr::from((ip, port)));
        // The burst is written one by one.
        for _ in 0..REFUSAL_BURST {
            log.write_limited_at(&Entry::new(from([10, 0, 0, 1], 1), "auth", "-", "401"), t0);
        }
        // Then one address knocks 500 times, from many ports; 20 others
        // once each (address 20 twice); and one refusal had no address.
        for i in 0..500u16 {
            let e = Entry::new(from([192, 0, 2, 7], 1000 + i), "auth", "-", "401");
            assert_eq!(log.write_limited_at(&e, t0), Refusal::Counted);
        }
        for i in 1..=20u8 {
            let e = Entry::new(from([198, 51, 100, i], 5), "key", "-", "not-found");
            log.write_limited_at(&e, t0);
        }
        log.write_limited_at(
            &Entry::new(from([198, 51, 100, 20], 6), "key", "-", "not-found"),
            t0,
        );
        log.write_limited_at(&Entry::new(None, "key", "-", "not-found"), t0);
        log.summarize()?;
        let all = records(&path)?;
        let summary = all
            .last()
            .ok_or_else(|| std::io::Error::other("no summary"))?;
        assert_eq!(summary["count"], 522);
        let peers = summary["peers"]
            .as_object()
            .ok_or_else(|| std::io::Error::other(format!("no peers in {summary}")))?;
        assert_eq!(peers.len(), MAX_SUMMARY_PEERS);
        assert_eq!(peers["192.0.2.7"], 500);
        assert_eq!(peers["198.51.100.20"], 2);
        // Listed and not listed add up to every refusal summarized.
        let listed: u64 = peers.values().filter_map(|n| n.as_u64()).sum();
        assert_eq!(summary["other_peers"].as_u64(), Some(522 - listed));
        assert_eq!(
            522 - listed,
            6,
            "five addresses of one refusal, and one with none"
        );
        Ok(())
    }

    /// A summary that cannot be written (a full disk) keeps its count for
    /// the next one, and a refusal whose record cannot be written is
    /// counted, not lost.
    #[test]
    fn refusals_whose_records_fail_stay_counted() -> std::io::Result<()> {
        let log = AuditLog::open(Path::new("/dev/full"), AuditSync::Interval)?;
        let entry = Entry::new(None, "refused", "-", "404").detail(Some("GET /nowhere"));
        let t0 = Instant::now();
        assert_eq!(log.write_limited_at(&entry, t0), Refusal::Counted);
        assert!(log.summarize().is_err());
        assert_eq!(log.write_limited_at(&entry, t0), Refusal::Counted);
        let inner = log.lock();
        assert_eq!(inner.counted.count, 2);
        assert_eq!(inner.counted.kinds.get("refused 404"), Some(&2));
        Ok(())
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Waits (at most 20 s) until the log's status satisfies `done`.
    async fn status_until(
        log: &AuditLog,
        done: impl FnMut(&SyncStatus) -> bool,
    ) -> Result<SyncStatus, Box<dyn std::error::Error>> {
        let mut status = log.durability.status.subscribe();
        let seen = tokio::time::timeout(Duration::from_secs(20), status.wait_for(done)).await??;
        Ok(*seen)
    }

    fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }

    /// Many requests at once in the `each` mode share syncs (group
    /// commit): the first sync is held until every record is written, so
    /// all but the first record must share the next one; and each waiter
    /// returns only once a sync that started after its record was written
    /// has succeeded (the file as it was when that sync started holds the
    /// record).
    #[test]
    fn concurrent_writers_in_each_mode_share_syncs() -> TestResult {
        const WRITERS: usize = 48;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let syncs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // The file's text when the newest successful sync started.
        let synced_text = Arc::new(Mutex::new(String::new()));
        let (all_written, gate) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(Some(gate));
        let sync: SyncFn = {
            let (syncs, synced_text, path) =
                (Arc::clone(&syncs), Arc::clone(&synced_text), path.clone());
            Arc::new(move |file: &File| {
                let text = std::fs::read_to_string(&path)?;
                let first = gate.lock().ok().and_then(|mut g| g.take());
                if let Some(gate) = first {
                    gate.recv_timeout(Duration::from_secs(20))
                        .map_err(std::io::Error::other)?;
                }
                file.sync_data()?;
                syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if let Ok(mut t) = synced_text.lock() {
                    *t = text;
                }
                Ok(())
            })
        };
        let log = Arc::new(AuditLog::open_with(
            &path,
            AuditSync::Each,
            AUDIT_SYNC_INTERVAL,
            sync,
        )?);
        let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let all_written = Arc::new(Mutex::new(all_written));
        runtime()?.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..WRITERS {
                let (log, written, all_written, synced_text) = (
                    Arc::clone(&log),
                    Arc::clone(&written),
                    Arc::clone(&all_written),
                    Arc::clone(&synced_text),
                );
                tasks.push(tokio::spawn(async move {
                    let key = format!("k{i}");
                    let ticket = log.write_release(&Entry::new(None, "key", &key, "ok"))?;
                    if written.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == WRITERS {
                        all_written
                            .lock()
                            .map_err(|_| "poisoned")?
                            .send(())
                            .map_err(|_| "the first sync is gone")?;
                    }
                    tokio::time::timeout(Duration::from_secs(20), log.durable(ticket)).await??;
                    let text = synced_text.lock().map_err(|_| "poisoned")?.clone();
                    let mine = format!("\"key\":\"{key}\"");
                    if !text.contains(&mine) {
                        return Err(format!("{key} returned before a sync covered it").into());
                    }
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                }));
            }
            for t in tasks {
                t.await?.map_err(|e| e.to_string())?;
            }
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        let syncs = syncs.load(std::sync::atomic::Ordering::SeqCst);
        assert!(syncs >= 1, "no sync");
        assert!(
            syncs < WRITERS as u64,
            "{syncs} syncs for {WRITERS} records: none shared"
        );
        assert_eq!(records(&path)?.len(), WRITERS);
        let status = log.sync_status();
        assert_eq!(status.synced, WRITERS as u64);
        assert_eq!(status.failures, 0);
        Ok(())
    }

    /// A sync that fails refuses, in the default mode, every later record
    /// of something given out (refusals are still written) until a sync
    /// succeeds again; it is retried without a new record.
    #[test]
    fn a_failed_sync_refuses_what_gives_out_keys_until_one_succeeds() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sync: SyncFn = {
            let failing = Arc::clone(&failing);
            Arc::new(move |file: &File| {
                if failing.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(std::io::Error::from_raw_os_error(5));
                }
                file.sync_data()
            })
        };
        let log = AuditLog::open_with(&path, AuditSync::Interval, Duration::from_millis(20), sync)?;
        let key = Entry::new(None, "key", "ab", "ok");
        // Answers do not wait in the default mode.
        runtime()?.block_on(async {
            let ticket = log.write_release(&key)?;
            log.durable(ticket).await?;
            status_until(&log, |s| s.failing).await?;
            let refused = log
                .write_release(&key)
                .err()
                .ok_or("a key was given out after a failed sync")?;
            let why = refused
                .get_ref()
                .and_then(|e| e.downcast_ref::<Undurable>())
                .ok_or("no cause")?;
            assert_eq!(*why, Undurable::Failing);
            let refusal = Entry::new(None, "key", "cd", "not-found");
            assert_eq!(log.write_limited(&refusal), Refusal::Written);
            failing.store(false, std::sync::atomic::Ordering::SeqCst);
            let status = status_until(&log, |s| !s.failing).await?;
            assert_eq!(status.synced, 2, "the retry synced what was written");
            assert!(status.failures >= 1);
            let ticket = log.write_release(&key)?;
            assert_eq!(ticket, Written(3));
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        assert_eq!(records(&path)?.len(), 3);
        Ok(())
    }

    /// In the `each` mode, a record whose sync fails is not durable, even
    /// once a later sync succeeds, and its answer is refused.
    #[test]
    fn in_each_mode_a_record_whose_sync_failed_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sync: SyncFn = {
            let calls = Arc::clone(&calls);
            Arc::new(move |file: &File| {
                // Only the first sync fails.
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return Err(std::io::Error::from_raw_os_error(5));
                }
                file.sync_data()
            })
        };
        let log = AuditLog::open_with(&path, AuditSync::Each, Duration::from_millis(20), sync)?;
        runtime()?.block_on(async {
            let ticket = log.write_release(&Entry::new(None, "key", "ab", "ok"))?;
            let failed = tokio::time::timeout(Duration::from_secs(20), log.durable(ticket))
                .await?
                .err()
                .ok_or("a record whose sync failed was taken as durable")?;
            assert_eq!(
                failed.get_ref().and_then(|e| e.downcast_ref::<Undurable>()),
                Some(&Undurable::SyncFailed)
            );
            // The retry succeeds; the failed record stays undurable, the
            // next one is durable.
            status_until(&log, |s| s.syncs >= 1).await?;
            assert!(log.durable(ticket).await.is_err());
            let ticket = log.write_release(&Entry::new(None, "key", "cd", "ok"))?;
            tokio::time::timeout(Duration::from_secs(20), log.durable(ticket)).await??;
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        Ok(())
    }

    /// A log moved away (as logrotate moves it) and reopened: the moved
    /// file holds the records of before, the summary of the refusals
    /// counted and then its closing record; the file at the path begins
    /// with the `reopen` record and holds the records of after. Every line
    /// is a whole record, and the two files hold every record written.
    #[test]
    fn a_moved_log_is_reopened_at_its_path_and_no_record_is_lost_or_split() -> TestResult {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let moved = dir.path().join("audit.log.1");
        let log = AuditLog::open(&path, AuditSync::Interval)?;
        log.record(None, "start", "-", "ok")?;
        log.record(None, "key", "ab", "ok")?;
        let t0 = Instant::now();
        let refusal = Entry::new(None, "auth", "-", "unauthorized");
        for _ in 0..REFUSAL_BURST + 5 {
            log.write_limited_at(&refusal, t0);
        }
        assert_eq!(log.counted(), 5);
        std::fs::rename(&path, &moved)?;
        log.reopen()?;
        log.record(None, "key", "cd", "ok")?;
        log.record(None, "stop", "-", "ok")?;
        let old = records(&moved)?;
        let new = records(&path)?;
        let burst = REFUSAL_BURST as usize;
        assert_eq!(old.len(), 2 + burst + 2, "{old:?}");
        let summary = &old[old.len() - 2];
        assert_eq!(summary["op"], SUMMARY_OP);
        assert_eq!(summary["count"], 5);
        let closing = &old[old.len() - 1];
        assert_eq!(closing["op"], REOPENED_OP);
        assert_eq!(closing["result"], "ok");
        assert!(closing["peer"].is_null());
        assert_eq!(log.counted(), 0, "the summary went to the old file");
        assert_eq!(new.len(), 3, "{new:?}");
        assert_eq!(new[0]["op"], REOPEN_OP);
        assert_eq!(new[0]["result"], "ok");
        assert!(new[0]["peer"].is_null());
        assert_eq!(new[1]["key"], "cd");
        assert_eq!(new[2]["op"], "stop");
        assert_eq!((old.len() + new.len()) as u64, log.written());
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        Ok(())
    }

    /// A reopen onto a path that is now a directory, or a link, fails and
    /// leaves the file in use in use: its records keep coming, and a later
    /// reopen, once the path is free, begins a new file (one another tool
    /// made there is taken, its access restricted to its owner).
    #[test]
    fn a_reopen_that_fails_keeps_writing_to_the_file_in_use() -> TestResult {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let moved = dir.path().join("audit.log.1");
        let log = AuditLog::open(&path, AuditSync::Interval)?;
        log.record(None, "start", "-", "ok")?;
        std::fs::rename(&path, &moved)?;
        std::fs::create_dir(&path)?;
        let refused = log
            .reopen()
            .err()
            .ok_or("a directory was opened as the log")?;
        assert!(
            matches!(&refused, crate::KmsError::NotAFile { what, .. } if what.contains("directory")),
            "{refused}"
        );
        log.record(None, "key", "ab", "ok")?;
        std::fs::remove_dir(&path)?;
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path)?;
        let refused = log.reopen().err().ok_or("a link was followed to the log")?;
        assert!(
            matches!(&refused, crate::KmsError::NotAFile { .. }),
            "{refused}"
        );
        assert!(!dir.path().join("elsewhere").exists());
        log.record(None, "key", "cd", "ok")?;
        let old = records(&moved)?;
        let ops: Vec<_> = old.iter().map(|r| r["op"].clone()).collect();
        assert_eq!(ops, ["start", "key", "key"], "{old:?}");
        // A file made there by another tool, open to others: taken as
        // the log, and made its owner's only.
        std::fs::remove_file(&path)?;
        std::fs::File::create(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        log.reopen()?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        log.record(None, "key", "ef", "ok")?;
        assert_eq!(records(&moved)?.len(), 4);
        assert_eq!(records(&moved)?[3]["op"], REOPENED_OP);
        let new = records(&path)?;
        assert_eq!(new.len(), 2);
        assert_eq!(new[0]["op"], REOPEN_OP);
        assert_eq!(log.written(), 6);
        Ok(())
    }

    /// A sync that records which file it synced (by inode) and how many
    /// lines that file held, and fails for the files `fails` says.
    fn watched_sync(
        seen: &Arc<Mutex<Vec<(u64, usize)>>>,
        fails: impl Fn(u64) -> bool + Send + Sync + 'static,
    ) -> SyncFn {
        let seen = Arc::clone(seen);
        Arc::new(move |file: &File| {
            use std::os::fd::AsRawFd;
            use std::os::unix::fs::MetadataExt;
            let ino = file.metadata()?.ino();
            let text = std::fs::read_to_string(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
            if fails(ino) {
                return Err(std::io::Error::from_raw_os_error(5));
            }
            file.sync_data()?;
            if let Ok(mut seen) = seen.lock() {
                seen.push((ino, text.lines().count()));
            }
            Ok(())
        })
    }

    fn inode(path: &Path) -> std::io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(std::fs::metadata(path)?.ino())
    }

    /// Across a reopen, the records written before it are synced on the
    /// old file (by the reopen itself, before the switch), those after on
    /// the new one; and while the new file's syncs fail, `synced` stays at
    /// the old file's last record however well the old file syncs.
    #[test]
    fn records_are_synced_on_the_file_that_holds_them_across_a_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let old_ino = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let new_fails = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sync = {
            let (old_ino, new_fails) = (Arc::clone(&old_ino), Arc::clone(&new_fails));
            watched_sync(&seen, move |ino| {
                ino != old_ino.load(std::sync::atomic::Ordering::SeqCst)
                    && new_fails.load(std::sync::atomic::Ordering::SeqCst)
            })
        };
        let log = AuditLog::open_with(&path, AuditSync::Interval, Duration::from_millis(20), sync)?;
        let old = inode(&path)?;
        old_ino.store(old, std::sync::atomic::Ordering::SeqCst);
        runtime()?.block_on(async {
            for key in ["a", "b", "c"] {
                log.record(None, "key", key, "ok")?;
            }
            status_until(&log, |s| s.synced == 3).await?;
            log.record(None, "key", "d", "ok")?;
            std::fs::rename(&path, dir.path().join("audit.log.1"))?;
            log.reopen()?;
            // Records 1-4, and 5 (the closing one), on the old file.
            let status = log.sync_status();
            assert_eq!(status.synced, 5, "{status:?}");
            assert!(!status.failing);
            let last_old = seen.lock().map_err(|_| "poisoned")?.last().copied();
            assert_eq!(last_old, Some((old, 5)));
            let new = inode(&path)?;
            log.record(None, "key", "e", "ok")?;
            log.record(None, "key", "f", "ok")?;
            // The new file's syncs fail: nothing past 5 is synced.
            let status = status_until(&log, |s| s.failed_upto >= 6).await?;
            assert_eq!(status.synced, 5, "{status:?}");
            assert!(status.failing);
            new_fails.store(false, std::sync::atomic::Ordering::SeqCst);
            let status = status_until(&log, |s| s.synced == 8).await?;
            assert!(!status.failing);
            let seen = seen.lock().map_err(|_| "poisoned")?.clone();
            assert_eq!(seen.last(), Some(&(new, 3)), "{seen:?}");
            // Each sync saw no more lines than its file holds of the
            // records it covered.
            assert!(
                seen.iter()
                    .all(|&(ino, lines)| (ino == old && lines <= 5) || (ino == new && lines <= 3))
            );
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        Ok(())
    }

    /// In the `each` mode, an answer whose record was written before a
    /// reopen waits for a sync of the old file, and one written after it
    /// for a sync of the new file.
    #[test]
    fn in_each_mode_records_on_either_side_of_a_reopen_wait_for_their_own_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = AuditLog::open_with(
            &path,
            AuditSync::Each,
            Duration::from_millis(20),
            watched_sync(&seen, |_| false),
        )?;
        let old = inode(&path)?;
        runtime()?.block_on(async {
            let before = log.write_release(&Entry::new(None, "key", "a", "ok"))?;
            std::fs::rename(&path, dir.path().join("audit.log.1"))?;
            log.reopen()?;
            tokio::time::timeout(Duration::from_secs(20), log.durable(before)).await??;
            let new = inode(&path)?;
            let after = log.write_release(&Entry::new(None, "key", "b", "ok"))?;
            assert_eq!(after, Written(4), "a, reopened, reopen, b");
            tokio::time::timeout(Duration::from_secs(20), log.durable(after)).await??;
            let seen = seen.lock().map_err(|_| "poisoned")?.clone();
            assert!(seen.contains(&(old, 2)), "{seen:?}");
            assert_eq!(seen.last(), Some(&(new, 2)), "{seen:?}");
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        Ok(())
    }

    /// A reopen whose sync of the old file fails settles that file's
    /// records as a failed sync does: refused for what gives out keys
    /// until a sync (now of the new file) succeeds, and never counted as
    /// synced.
    #[test]
    fn a_failed_sync_of_the_old_file_at_a_reopen_is_a_failed_sync() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let old_ino = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sync = {
            let old_ino = Arc::clone(&old_ino);
            watched_sync(&seen, move |ino| {
                ino == old_ino.load(std::sync::atomic::Ordering::SeqCst)
            })
        };
        // A minute: the syncer does not sync before the reopen does.
        let log = AuditLog::open_with(&path, AuditSync::Interval, Duration::from_secs(60), sync)?;
        old_ino.store(inode(&path)?, std::sync::atomic::Ordering::SeqCst);
        log.record(None, "key", "a", "ok")?;
        log.record(None, "key", "b", "ok")?;
        std::fs::rename(&path, dir.path().join("audit.log.1"))?;
        log.reopen()?;
        let status = log.sync_status();
        assert_eq!(
            (status.synced, status.failed_upto, status.failing),
            (0, 3, true),
            "{status:?}"
        );
        let refused = log
            .write_release(&Entry::new(None, "key", "c", "ok"))
            .err()
            .ok_or("a key was given out after a failed sync")?;
        assert_eq!(
            refused
                .get_ref()
                .and_then(|e| e.downcast_ref::<Undurable>()),
            Some(&Undurable::Failing)
        );
        assert!(seen.lock().map_err(|_| "poisoned")?.is_empty());
        // Only the `reopen` record is in the new file.
        assert_eq!(records(&path)?.len(), 1);
        Ok(())
    }

    /// A sync that, of the file whose inode is `held` (0: none), waits
    /// until `open` is set (at most 10 s, then fails), telling `entered`
    /// each time it begins to wait.
    fn gated_sync(
        held: &Arc<std::sync::atomic::AtomicU64>,
        open: &Arc<(Mutex<bool>, Condvar)>,
        entered: std::sync::mpsc::Sender<()>,
    ) -> SyncFn {
        let (held, open) = (Arc::clone(held), Arc::clone(open));
        let entered = Mutex::new(entered);
        Arc::new(move |file: &File| {
            use std::os::unix::fs::MetadataExt;
            if file.metadata()?.ino() == held.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(entered) = entered.lock() {
                    let _gone = entered.send(());
                }
                let (lock, cvar) = &*open;
                let opened = lock.lock().map_err(|_| std::io::Error::other("poisoned"))?;
                let (opened, _) = cvar
                    .wait_timeout_while(opened, Duration::from_secs(10), |opened| !*opened)
                    .map_err(|_| std::io::Error::other("poisoned"))?;
                if !*opened {
                    return Err(std::io::Error::other("the gate was never opened"));
                }
            }
            file.sync_data()
        })
    }

    /// While a reopen syncs the file it closed (a slow disk's sync), a
    /// writer is not held back: its record goes to the new file at once.
    /// But no sync counts it, nor a record of the old file, as synced
    /// before the old file's sync ends: in the `each` mode its answer
    /// waits for that sync and then for one of the new file.
    #[test]
    fn writers_do_not_wait_for_a_reopen_to_sync_the_old_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let held = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let sync = gated_sync(&held, &open, entered_tx);
        let log = Arc::new(AuditLog::open_with(
            &path,
            AuditSync::Each,
            Duration::from_millis(20),
            sync,
        )?);
        runtime()?.block_on(async {
            let first = log.write_release(&Entry::new(None, "key", "a", "ok"))?;
            tokio::time::timeout(Duration::from_secs(20), log.durable(first)).await??;
            held.store(inode(&path)?, std::sync::atomic::Ordering::SeqCst);
            std::fs::rename(&path, dir.path().join("audit.log.1"))?;
            let reopening = {
                let log = Arc::clone(&log);
                std::thread::spawn(move || log.reopen().map_err(|e| e.to_string()))
            };
            // A sync of the old file waits (the reopen's, or the syncer's
            // of the closing record), and the new file has its first
            // record: the reopen is past its writes.
            entered.recv_timeout(Duration::from_secs(20))?;
            for _ in 0..400 {
                if records(&path).is_ok_and(|r| !r.is_empty()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let started = Instant::now();
            let second = log.write_release(&Entry::new(None, "key", "b", "ok"))?;
            log.record(None, "auth", "-", "unauthorized")?;
            let waited = started.elapsed();
            assert!(
                waited < Duration::from_secs(5),
                "writers waited {waited:?} for the old file's sync"
            );
            assert_eq!(second, Written(4), "a, reopened, reopen, b");
            let early = tokio::time::timeout(Duration::from_millis(300), log.durable(second)).await;
            assert!(early.is_err(), "b answered before the old file was synced");
            assert_eq!(log.sync_status().synced, 1, "{:?}", log.sync_status());
            {
                let (lock, cvar) = &*open;
                *lock.lock().map_err(|_| "poisoned")? = true;
                cvar.notify_all();
            }
            reopening.join().map_err(|_| "the reopen panicked")??;
            tokio::time::timeout(Duration::from_secs(20), log.durable(second)).await??;
            let status = log.sync_status();
            assert!(status.synced >= 5 && !status.failing, "{status:?}");
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        let old: Vec<_> = records(&dir.path().join("audit.log.1"))?
            .into_iter()
            .map(|r| r["op"].clone())
            .collect();
        assert_eq!(old, ["key", REOPENED_OP]);
        let new: Vec<_> = records(&path)?
            .into_iter()
            .map(|r| r["op"].clone())
            .collect();
        assert_eq!(new, [REOPEN_OP, "key", "auth"]);
        Ok(())
    }

    #[test]
    fn audit_sync_intervals_parse_in_seconds_and_bad_ones_are_refused() {
        let ms = Duration::from_millis;
        assert_eq!(parse_audit_sync_interval("1"), Ok(ms(1000)));
        assert_eq!(parse_audit_sync_interval("0.25"), Ok(ms(250)));
        assert_eq!(parse_audit_sync_interval("60"), Ok(ms(60_000)));
        assert_eq!(parse_audit_sync_interval(".5"), Ok(ms(500)));
        for (bad, why) in [
            ("0", "zero would sync without pause"),
            ("0.0", "zero would sync without pause"),
            ("0.0000000001", "zero would sync without pause"),
            ("-1", "a negative interval"),
            ("60.5", "too long"),
            ("3600", "too long"),
            ("", "not a number of seconds"),
            ("one", "not a number of seconds"),
            ("1e1", "not a number of seconds"),
            ("inf", "not a number of seconds"),
            ("NaN", "not a number of seconds"),
            ("1.2.3", "not a number of seconds"),
            (".", "not a number of seconds"),
        ] {
            let e = parse_audit_sync_interval(bad).err();
            assert_eq!(e.as_ref().map(|e| e.why), Some(why), "{bad:?}");
        }
        let e = parse_audit_sync_interval("0").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "--audit-sync-interval \"0\": zero would sync without pause; give seconds \
                 above 0 and at most 60 (decimals such as 0.25 are taken)"
            )
        );
        assert!(check_audit_sync_interval(Duration::ZERO).is_err());
        assert!(check_audit_sync_interval(ms(60_001)).is_err());
        assert_eq!(check_audit_sync_interval(ms(5)), Ok(ms(5)));
    }

    #[test]
    fn audit_sync_modes_parse_and_unknown_ones_are_named() {
        assert_eq!("each".parse(), Ok(AuditSync::Each));
        assert_eq!("interval".parse(), Ok(AuditSync::Interval));
        assert_eq!(AuditSync::default(), AuditSync::Interval);
        let e = "always".parse::<AuditSync>().err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("\"always\" is no audit sync mode: use one of interval, each")
        );
    }

    /// A batch's record lists its ids and count; one item is written as
    /// a record always was.
    #[test]
    fn a_batch_record_says_its_count_and_ids() -> std::io::Result<()> {
        let ids = ["a".repeat(64), "b".repeat(64)];
        let line = entry_line(&Entry::new(None, "key", "-", "ok").batch(3, &ids), 9)?;
        let record: serde_json::Value = serde_json::from_slice(&line)?;
        assert_eq!(record["count"], 3);
        assert_eq!(record["keys"][1], ids[1]);
        let line = entry_line(&Entry::new(None, "key", &ids[0], "ok"), 9)?;
        let text = String::from_utf8_lossy(&line);
        assert_eq!(
            text,
            format!(
                "{{\"time\":9,\"peer\":null,\"op\":\"key\",\"key\":\"{}\",\"result\":\"ok\"}}\n",
                ids[0]
            )
        );
        Ok(())
    }
}
